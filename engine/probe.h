/* probe.h - per-token instrumentation computed from a next-token distribution.
 *
 * From raw logits (temperature 1, before any sampling filter): the log-probability of a
 * token (natural log), the entropy of the distribution (bits), and the top-k alternatives.
 * Log-softmax: each exp(logit - max) in float (expf, vectorised: simd.h's logit_sums),
 * summed in float64.
 * Pure functions, no allocation (top-k uses the caller's array), thread-safe. */
#ifndef PD_PROBE_H
#define PD_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "trace.h"

struct pd_dist_stats {
    double lse;        /* log-sum-exp of the logits */
    double entropy;    /* bits */
};

/* Computes the log-sum-exp and entropy of logits[n]. */
struct pd_dist_stats pd_probe_stats(const float *logits, size_t n);

/* ln p(id) given the stats of the same logits. */
static inline float pd_probe_logprob(const float *logits, struct pd_dist_stats st, int32_t id)
{
    return (float)((double)logits[id] - st.lse);
}

/* Fills top[0..k) with the k most likely ids (ties: lower id first) and their logprobs,
 * most likely first. k is clamped to PD_TOPK_MAX and n; k 0 asks for no alternatives
 * (top is not touched). Returns the clamped k. */
size_t pd_probe_topk(const float *logits, size_t n, struct pd_dist_stats st, size_t k,
                     struct pd_topk *top);

/* Fills a token record's metric fields (logprob of `id`, entropy, top-k). */
void pd_probe_fill(const float *logits, size_t n_vocab, int32_t id, size_t k,
                   struct pd_token_rec *rec);

#endif
