/* metrics.h - per-step metrics over a trace's per-token records.
 *
 * Given a trace (token records with logprob, entropy and optional attention summary
 * blobs) and its steps (from analysis/steps.h), fills each step's metric fields:
 *   tokens            count of trace tokens inside [pos_begin, pos_end)
 *   mean_surprisal    mean of -logprob/ln 2 over the step's scored tokens (bits)
 *   first_surprisal   -logprob/ln 2 of the step's first token (bits): the surprisal of
 *                     the step's opening given everything before it (ASAP, arXiv
 *                     2508.05988, read from the logged logprob instead of re-scoring)
 *   mean_entropy      mean of the logged entropy over the step's scored tokens (bits)
 *   attn_received     (1/L) * sum over the tokens of LATER steps, over their summary
 *                     entries (layer l, position p, weight w) with p inside this step,
 *                     of w; L is the token's layer count. Unit: attention mass (a full
 *                     row of one layer sums to 1). NAN when no token of a later step
 *                     carries a blob (unscored traces, capture off, the last step).
 * A token is "scored" when its logprob is not NAN. Exact definitions, including what
 * happens with partial data, are in docs/analysis.md ("Step metrics").
 *
 * Ownership: every pointer argument is borrowed for the call. Pure, reentrant. */
#ifndef PD_METRICS_H
#define PD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "trace.h"

/* Where a step's tokens sit in the token array, and how many were scored. */
struct pd_step_span {
    size_t i_begin;   /* first token index with pos >= pos_begin */
    size_t i_end;     /* one past the last token index with pos < pos_end */
    size_t n_scored;  /* tokens in the span with a logprob */
};

/* Surprisal in bits of a natural-log probability (NAN stays NAN). */
static inline double pd_metrics_bits(double logprob)
{
    return -logprob / 0.69314718055994530942;
}

/* Maps steps onto token indices: spans[j] for steps[j]. Tokens must have strictly
 * increasing positions; steps must be non-empty-or-empty spans (pos_begin <= pos_end)
 * in increasing, non-overlapping order. PD_EINVAL naming the token index / step index
 * otherwise. */
enum pd_status pd_metrics_spans(const struct pd_token_rec *toks, size_t n_tok,
                                const struct pd_step_rec *steps, size_t n_steps,
                                struct pd_step_span *spans, struct pd_err *err);

/* Fills mean_surprisal, first_surprisal, mean_entropy and attn_received of steps[0..n)
 * (other fields untouched). spans may be NULL; when given it receives each step's span
 * ([n_steps] entries). Validates every token it reads: a logprob above 0.001 or
 * infinite, an entropy that is negative or infinite, or a malformed attention blob is
 * PD_EFORMAT naming the token's position. On error the steps are left unchanged. */
enum pd_status pd_metrics_steps(const struct pd_token_rec *toks, size_t n_tok,
                                struct pd_step_rec *steps, size_t n_steps,
                                struct pd_step_span *spans, struct pd_err *err);

/* The same metrics over a trace read in pieces (closing a long recording reads it from
 * the database a chunk at a time): memory O(steps), whatever the trace's length.
 *   open   checks the steps as pd_metrics_spans does; steps is borrowed until close
 *   add    the next tokens, positions strictly increasing across calls; validates what it
 *          reads as pd_metrics_steps does (same errors; a token's index counts from the
 *          first token added); tokens are borrowed for the call
 *   finish fills the metric fields of steps[0..n_steps) (the same values as
 *          pd_metrics_steps over all the tokens added)
 * *out is owned by the caller: pd_metrics_acc_close (NULL accepted) frees it. */
struct pd_metrics_acc;
enum pd_status pd_metrics_acc_open(const struct pd_step_rec *steps, size_t n_steps,
                                   struct pd_metrics_acc **out, struct pd_err *err);
enum pd_status pd_metrics_acc_add(struct pd_metrics_acc *a, const struct pd_token_rec *toks,
                                  size_t n_tok, struct pd_err *err);
void pd_metrics_acc_finish(const struct pd_metrics_acc *a, struct pd_step_rec *steps);
void pd_metrics_acc_close(struct pd_metrics_acc **a);

/* The attn_received definition for one token, for callers that accumulate it as tokens
 * arrive (the workbench): adds to attn[0..k) what a token of step k, whose summary is
 * blob[0..len), pays to steps 0..k-1 (exact per-step masses when the summary carries
 * them for these steps, else its top-N entries). Reads steps[0..k] only. Returns false
 * (adding nothing) when the token has no valid summary. A step j's attn_received is
 * attn[j] once a token of a later step had a summary, NAN before. */
bool pd_metrics_credit(const uint8_t *blob, size_t len, const struct pd_step_rec *steps,
                       size_t k, double *attn);

/* Whole-trace figures used by reports and by the budget strategy's difficulty estimate. */
struct pd_trace_stats {
    size_t n_tokens;            /* all tokens */
    size_t n_role[PD_ROLE_COUNT];
    size_t n_scored;            /* tokens with a logprob */
    size_t n_step_tokens;       /* tokens inside steps (the thinking that pruning acts on) */
    size_t n_steps;
    size_t n_kind[PD_STEP_KIND_COUNT];
    double mean_surprisal;      /* bits, over scored step tokens; NAN when none */
    double mean_entropy;        /* bits, over step tokens with an entropy; NAN when none */
};

/* Computes the figures above. spans are the ones pd_metrics_spans gave for these
 * steps. Never fails (inputs were validated by pd_metrics_spans / pd_metrics_steps). */
void pd_metrics_trace(const struct pd_token_rec *toks, size_t n_tok,
                      const struct pd_step_rec *steps, const struct pd_step_span *spans,
                      size_t n_steps, struct pd_trace_stats *out);

#endif
