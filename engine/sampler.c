/* sampler.c - seeded sampling with top-k / top-p / min-p filters. */
#include "sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "mem.h"

struct cand {
    int32_t id;
    float logit;
    double p;
};

struct pd_sampler {
    struct pd_sampler_params p;
    size_t n_vocab;
    uint64_t rng[4];     /* xoshiro256** state */
    struct cand *cands;  /* [n_vocab] */
};

struct pd_sampler_params pd_sampler_default_params(void)
{
    struct pd_sampler_params p = {0.0f, 0, 1.0f, 0.0f, 0};
    return p;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_u64(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

enum pd_status pd_sampler_open(const struct pd_sampler_params *p, size_t n_vocab,
                               struct pd_sampler **out, struct pd_err *err)
{
    *out = NULL;
    if (n_vocab == 0) {
        return pd_err_set(err, PD_EINVAL, "sampler: empty vocabulary");
    }
    if (!(p->temperature >= 0 && p->temperature <= 100) || !(p->top_p > 0) ||
        !(p->min_p >= 0 && p->min_p <= 1)) {
        return pd_err_set(err, PD_EINVAL, "sampler: temperature/top-p/min-p out of range");
    }
    struct pd_sampler *s = calloc(1, sizeof *s);
    if (!s) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (sampler)");
    }
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cands = pd_malloc_array(n_vocab, sizeof *s->cands);
    if (!s->cands) {
        free(s);
        return pd_err_set(err, PD_ENOMEM, "out of memory (sampler)");
    }
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) {
        s->rng[i] = splitmix64(&x);
    }
    *out = s;
    return PD_OK;
}

void pd_sampler_close(struct pd_sampler **sp)
{
    if (!sp || !*sp) {
        return;
    }
    free((*sp)->cands);
    free(*sp);
    *sp = NULL;
}

int32_t pd_argmax(const float *logits, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++) {
        if (logits[i] > logits[best]) {
            best = i;
        }
    }
    return (int32_t)best;
}

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->logit != y->logit) {
        return x->logit > y->logit ? -1 : 1;
    }
    return x->id < y->id ? -1 : x->id > y->id;
}

/* "a ranks after b": lower logit, or the same logit and a higher id. */
static bool after(const struct cand *a, const struct cand *b)
{
    return a->logit < b->logit || (a->logit == b->logit && a->id > b->id);
}

/* The k best tokens into cands[0..k), best first, with a min-heap of the k best so far:
 * O(V log k) instead of sorting the vocabulary. */
static size_t select_top_k(struct pd_sampler *s, const float *logits, size_t k)
{
    struct cand *h = s->cands;
    size_t n = 0;
    for (size_t i = 0; i < s->n_vocab; i++) {
        struct cand c = {(int32_t)i, logits[i], 0.0};
        if (n < k) { /* sift up */
            size_t j = n++;
            while (j > 0 && after(&c, &h[(j - 1) / 2])) {
                h[j] = h[(j - 1) / 2];
                j = (j - 1) / 2;
            }
            h[j] = c;
        } else if (after(&h[0], &c)) { /* replace the worst, sift down */
            size_t j = 0;
            for (;;) {
                size_t l = 2 * j + 1, r = l + 1, m = j;
                const struct cand *mv = &c;
                if (l < n && after(&h[l], mv)) {
                    m = l;
                    mv = &h[l];
                }
                if (r < n && after(&h[r], mv)) {
                    m = r;
                }
                if (m == j) {
                    break;
                }
                h[j] = h[m];
                j = m;
            }
            h[j] = c;
        }
    }
    qsort(h, n, sizeof *h, cand_cmp);
    return n;
}

bool pd_sampler_greedy(const struct pd_sampler *s)
{
    return s->p.temperature <= 0;
}

int32_t pd_sampler_sample(struct pd_sampler *s, const float *logits)
{
    if (s->p.temperature <= 0) {
        return pd_argmax(logits, s->n_vocab);
    }
    double inv_t = 1.0 / s->p.temperature;
    size_t n;
    if (s->p.top_k > 0 && (size_t)s->p.top_k < s->n_vocab) {
        /* softmax over the k best */
        n = select_top_k(s, logits, (size_t)s->p.top_k);
        double sum = 0.0;
        float mx = s->cands[0].logit;
        for (size_t i = 0; i < n; i++) {
            s->cands[i].p = exp(((double)s->cands[i].logit - mx) * inv_t);
            sum += s->cands[i].p;
        }
        for (size_t i = 0; i < n; i++) {
            s->cands[i].p /= sum;
        }
    } else {
        /* softmax over the whole vocabulary */
        float mx = logits[pd_argmax(logits, s->n_vocab)];
        double z = 0.0;
        for (size_t i = 0; i < s->n_vocab; i++) {
            z += exp(((double)logits[i] - mx) * inv_t);
        }
        if (s->p.top_p >= 1.0f && s->p.min_p <= 0.0f) {
            /* no filter: draw in id order, nothing to sort */
            double r = (double)(next_u64(s->rng) >> 11) * (1.0 / 9007199254740992.0) * z;
            double acc = 0.0;
            for (size_t i = 0; i < s->n_vocab; i++) {
                acc += exp(((double)logits[i] - mx) * inv_t);
                if (r < acc) {
                    return (int32_t)i;
                }
            }
            return pd_argmax(logits, s->n_vocab);
        }
        /* The top-p set (and the min-p set) is a prefix of the tokens sorted by
         * probability: gather every token above a relative threshold, lowering it until
         * the gathered mass reaches top-p (or, for min-p alone, at min-p itself), and sort
         * only those. */
        double thr = s->p.top_p >= 1.0f ? (double)s->p.min_p : 1e-3;
        for (;;) {
            double mass = 0.0;
            n = 0;
            for (size_t i = 0; i < s->n_vocab; i++) {
                double q = exp(((double)logits[i] - mx) * inv_t);
                if (q >= thr) {
                    s->cands[n++] = (struct cand){(int32_t)i, logits[i], q / z};
                    mass += q;
                }
            }
            if (s->p.top_p >= 1.0f || mass >= s->p.top_p * z || thr < 1e-300) {
                break;
            }
            thr *= 1e-3;
        }
        qsort(s->cands, n, sizeof *s->cands, cand_cmp);
    }
    if (s->p.top_p < 1.0f) {
        double cum = 0.0;
        size_t keep = n;
        for (size_t i = 0; i < n; i++) {
            cum += s->cands[i].p;
            if (cum >= s->p.top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (s->p.min_p > 0.0f) {
        double floor_p = s->cands[0].p * s->p.min_p;
        size_t keep = 1;
        while (keep < n && s->cands[keep].p >= floor_p) {
            keep++;
        }
        n = keep;
    }
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        total += s->cands[i].p;
    }
    double r = (double)(next_u64(s->rng) >> 11) * (1.0 / 9007199254740992.0) * total;
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        acc += s->cands[i].p;
        if (r < acc) {
            return s->cands[i].id;
        }
    }
    return s->cands[n - 1].id;
}
