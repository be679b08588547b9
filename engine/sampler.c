/* sampler.c - seeded sampling with top-k / top-p / min-p filters. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

#include "base/mem.h"

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

int32_t pd_sampler_sample(struct pd_sampler *s, const float *logits)
{
    if (s->p.temperature <= 0) {
        return pd_argmax(logits, s->n_vocab);
    }
    size_t n = s->n_vocab;
    for (size_t i = 0; i < n; i++) {
        s->cands[i].id = (int32_t)i;
        s->cands[i].logit = logits[i];
    }
    qsort(s->cands, n, sizeof *s->cands, cand_cmp);
    if (s->p.top_k > 0 && (size_t)s->p.top_k < n) {
        n = (size_t)s->p.top_k;
    }
    double sum = 0.0;
    float mx = s->cands[0].logit;
    for (size_t i = 0; i < n; i++) {
        s->cands[i].p = exp(((double)s->cands[i].logit - mx) / s->p.temperature);
        sum += s->cands[i].p;
    }
    for (size_t i = 0; i < n; i++) {
        s->cands[i].p /= sum;
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
