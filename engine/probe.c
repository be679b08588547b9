/* probe.c - log-softmax statistics and top-k selection. */
#include "probe.h"

#include <math.h>
#include <stdbool.h>

#include "simd.h"

struct pd_dist_stats pd_probe_stats(const float *logits, size_t n)
{
    double sum, wsum;
    float mx = pd_simd_logit_sums(pd_simd_ops(), logits, n, &sum, &wsum);
    struct pd_dist_stats st;
    st.lse = mx + log(sum);
    /* H = lse - E[l] = log(sum) - wsum/sum (nats) */
    double h = log(sum) - wsum / sum;
    st.entropy = (h < 0 ? 0 : h) / M_LN2;
    return st;
}

/* Whether any of x[0..16) is above t: one fixed-length loop the compiler vectorises, so
 * the scan past the bulk of the vocabulary costs a compare per element and no branch. */
static inline bool any_above(const float *x, float t)
{
    int any = 0;
    for (int j = 0; j < 16; j++) {
        any |= x[j] > t;
    }
    return any != 0;
}

static int better(const float *logits, int32_t a, int32_t b)
{
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
}

size_t pd_probe_topk(const float *logits, size_t n, struct pd_dist_stats st, size_t k,
                     struct pd_topk *top)
{
    if (k > PD_TOPK_MAX) {
        k = PD_TOPK_MAX;
    }
    if (k > n) {
        k = n;
    }
    if (k == 0) {
        return 0; /* no alternatives asked for */
    }
    size_t have = 0;
    /* once the list is full, only a logit above its last one enters: ids come in
     * ascending order, so an equal logit loses the tie (NaN never enters) */
    float last = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (have == k) {
            if (i % 16 == 0) {
                while (i + 16 <= n && !any_above(logits + i, last)) {
                    i += 16;
                }
                if (i == n) {
                    break;
                }
            }
            if (!(logits[i] > last)) {
                continue;
            }
        }
        int32_t id = (int32_t)i;
        size_t j = have < k ? have++ : k - 1;
        /* insertion into the sorted list */
        while (j > 0 && better(logits, id, top[j - 1].id)) {
            top[j] = top[j - 1];
            j--;
        }
        top[j].id = id;
        if (have == k) {
            last = logits[top[k - 1].id];
        }
    }
    for (size_t i = 0; i < k; i++) {
        top[i].logprob = pd_probe_logprob(logits, st, top[i].id);
    }
    return k;
}

void pd_probe_fill(const float *logits, size_t n_vocab, int32_t id, size_t k,
                   struct pd_token_rec *rec)
{
    struct pd_dist_stats st = pd_probe_stats(logits, n_vocab);
    rec->id = id;
    rec->logprob = pd_probe_logprob(logits, st, id);
    rec->entropy = (float)st.entropy;
    rec->n_top = (uint8_t)pd_probe_topk(logits, n_vocab, st, k, rec->top);
}
