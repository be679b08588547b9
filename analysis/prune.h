/* prune.h - choosing reasoning steps to prune, and checking that the pruned trace still
 * supports its answer.
 *
 * Strategies (exact rules, formulas and sources in docs/analysis.md, "Pruning"):
 *   manual     prune exactly the listed step indices
 *   asap       keep the anchor steps (the first, the last, and every "conclude" step),
 *              then keep the other steps in descending order of first-token surprisal
 *              while the kept steps' tokens fit the budget B; equivalently remove the
 *              lowest-surprisal non-anchor steps first until the total is <= B (stage 2
 *              of ASAP, arXiv 2508.05988, with ponder's keyword anchors standing in for
 *              its LLM-made anchor). B = --budget tokens, or floor(keep * T) where T is
 *              the thinking tokens in steps (keep default 0.8, ASAP's default ratio).
 *   redundant  walking the steps in order, drop a step (never the first or the last)
 *              whose word-set Jaccard similarity with an earlier KEPT step is >= the
 *              threshold (default 0.6): repeated verification loops and restatements.
 *   budget     estimate difficulty d in [0, 1] from the trace itself (share of check /
 *              backtrack steps and mean thinking entropy), map it to a budget
 *              B = ceil(T * (r_min + (1 - r_min) * d)), then select as asap does (by
 *              first-token surprisal; in step order when the trace is unscored).
 *              ponder's own heuristic, not from a paper.
 * Selection works on struct pd_step_rec.pruned; token counts are counts of trace tokens
 * inside each step's span. Verification re-scores the answer with the model (score.h).
 *
 * Ownership: arguments are borrowed for the call. Thread-safety: the selection
 * functions are pure and reentrant; verification uses a scorer (one thread). */
#ifndef PD_PRUNE_H
#define PD_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "trace.h"
#include "score.h"

enum pd_prune_strategy {
    PD_PRUNE_MANUAL,
    PD_PRUNE_ASAP,
    PD_PRUNE_REDUNDANT,
    PD_PRUNE_BUDGET,
    PD_PRUNE_STRATEGY_COUNT
};

/* "manual", "asap", "redundant", "budget"; NULL when out of range. */
const char *pd_prune_strategy_name(enum pd_prune_strategy s);
/* PD_PRUNE_STRATEGY_COUNT when unknown or NULL. */
enum pd_prune_strategy pd_prune_strategy_parse(const char *s);

struct pd_prune_params {
    enum pd_prune_strategy strategy;
    double keep;               /* asap: budget ratio in (0, 1] (default 0.8) */
    uint64_t budget;           /* asap: budget in tokens; > 0 overrides keep (default 0) */
    double threshold;          /* redundant: Jaccard threshold in (0, 1] (default 0.6) */
    double r_min;              /* budget: ratio kept at difficulty 0, in (0, 1] (0.25) */
    double entropy_ref;        /* budget: entropy (bits) that counts as maximal (3.0) */
    double w_revisit;          /* budget: weight of the check/backtrack share (0.5) */
    const int32_t *manual;     /* manual: step indices to prune (borrowed) */
    size_t n_manual;
};

/* Defaults for strategy s (see the field comments). */
struct pd_prune_params pd_prune_default_params(enum pd_prune_strategy s);

struct pd_prune_result {
    size_t n_steps;
    size_t n_pruned;
    uint64_t tokens_before;    /* thinking tokens in steps */
    uint64_t tokens_after;     /* of the kept steps */
    uint64_t budget;           /* asap / budget: B; 0 for the others */
    bool budget_met;           /* tokens_after <= budget (true for manual / redundant) */
    double difficulty;         /* budget: d; NAN for the others */
    bool used_surprisal;       /* asap / budget ranked by first-token surprisal */
    char spec[96];             /* what was done, for the prunes table: "asap:keep=0.5",
                                * "asap:budget=512", "redundant:threshold=0.6",
                                * "budget:d=0.42,budget=300", "manual" */
};

/* Sets steps[j].pruned for every step by the strategy (all other fields untouched) and
 * fills *res. Tokens are needed for span sizes, texts (redundant) and metrics; steps must
 * have their metrics filled (pd_metrics_steps) for asap and budget. Errors (steps left
 * unchanged): PD_EINVAL for bad params (message names the field), a manual index out of
 * range or repeated, asap on a trace where a non-anchor step has no first-token
 * surprisal ("score the trace first"), and the span errors of pd_metrics_spans;
 * PD_ENOMEM. */
enum pd_status pd_prune_select(const struct pd_token_rec *toks, size_t n_tok,
                               struct pd_step_rec *steps, size_t n_steps,
                               const struct pd_prune_params *params,
                               struct pd_prune_result *res, struct pd_err *err);

/* True for the steps asap and budget never prune: the first, the last, and conclude
 * steps. */
bool pd_prune_is_anchor(const struct pd_step_rec *steps, size_t n_steps, size_t j);

/* Word-set Jaccard similarity of two texts: words are maximal runs of ASCII letters and
 * digits and bytes >= 0x80, ASCII lowercased; |A & B| / |A | B|, 1 when both are empty.
 * Returns NAN on allocation failure. */
double pd_prune_jaccard(const char *a, size_t a_len, const char *b, size_t b_len);

/* The budget strategy's difficulty estimate (docs/analysis.md):
 *   rev = (check + backtrack steps) / steps,  h = min(1, mean_entropy / entropy_ref),
 *   d = w_revisit * rev + (1 - w_revisit) * h, or d = rev when the entropy is unknown.
 * 0 for a trace without steps. */
double pd_prune_difficulty(const struct pd_step_rec *steps, size_t n_steps,
                           double mean_entropy, const struct pd_prune_params *params);

/* Marks drop[i] = 1 for every token inside a pruned step, 0 otherwise (drop has n_tok
 * entries). Same span errors as pd_metrics_spans. */
enum pd_status pd_prune_token_mask(const struct pd_token_rec *toks, size_t n_tok,
                                   const struct pd_step_rec *steps, size_t n_steps,
                                   uint8_t *drop, struct pd_err *err);

/* Verification of a pruned trace against its full version. */
struct pd_prune_check {
    size_t n_answer;           /* answer tokens scored */
    double logprob_full;       /* sum ln p(answer | full reasoning), nats */
    double logprob_pruned;     /* sum ln p(answer | pruned reasoning), nats */
    double delta;              /* logprob_pruned - logprob_full */
    size_t n_compare;          /* tokens compared: min(n_greedy, trace answer tokens) */
    bool greedy_same;          /* greedy answers from pruned and full reasoning agree on
                                * their first n_compare tokens */
    bool greedy_full_matches;  /* greedy from full reasoning == the trace's answer tokens */
    bool greedy_pruned_matches;/* greedy from pruned reasoning == the trace's answer tokens */
    size_t n_greedy;           /* greedy tokens produced from the pruned reasoning */
    int32_t greedy_pruned[PD_SCORE_GREEDY_MAX];
    size_t n_greedy_full;      /* greedy tokens produced from the full reasoning */
    int32_t greedy_full[PD_SCORE_GREEDY_MAX];
};

/* Scores the answer under the full and the pruned reasoning (steps[].pruned) and decodes
 * n_greedy tokens greedily from both (see docs/analysis.md, "Verification"). Tokens need
 * ids (a scored trace). Errors: those of pd_score_answer and pd_prune_token_mask. */
enum pd_status pd_prune_verify(struct pd_scorer *s, const struct pd_token_rec *toks,
                               size_t n_tok, const struct pd_step_rec *steps, size_t n_steps,
                               uint32_t n_greedy, struct pd_prune_check *out,
                               struct pd_err *err);

#endif
