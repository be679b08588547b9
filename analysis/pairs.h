/* pairs.h - choosing what preference datasets contrast (docs/export.md, "Where the pairs
 * come from"):
 *   grading      a sample's final answer against its reference answer (answer.h), which
 *                gives each question's pass rate and so its difficulty (1 - pass rate);
 *   verification whether a pruned trace, or a trace with one step removed, still supports
 *                its answer, by one of two rules over prune.h's check: the greedy answers
 *                agree, or the answer's log-probability drops by at most D nats;
 *   samples      from the samples of one question: correct over wrong, and shorter correct
 *                over longer correct (with a minimum saving);
 *   step forks   where two continuations of one trace part at a step boundary, and where
 *                each one's next step ends.
 * Pure functions over plain values; the store reads the data and writes the records.
 *
 * Thread-safety: reentrant. Ownership: arguments are borrowed for the call. */
#ifndef PD_PAIRS_H
#define PD_PAIRS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "answer.h"
#include "status.h"
#include "trace.h"

/* ---- grading -------------------------------------------------------------------------- */

/* Grades a completion ("<think>...</think>\n\nanswer" or the answer alone) against a
 * reference answer: the answer is extracted from the text after "</think>"
 * (pd_answer_extract) into `answer`; the reference is taken as its last \boxed{...} when it
 * has one (a worked solution), otherwise whole (pd_answer_match handles "#### x").
 * Returns 1 (match), 0 (no match, or no answer found) or -1 (reference NULL or empty:
 * not graded). */
int pd_pairs_grade(const char *completion, size_t len, const char *reference,
                   char answer[PD_ANSWER_MAX]);

/* ---- verification rule ------------------------------------------------------------------ */

enum pd_verify_rule_kind {
    PD_VERIFY_GREEDY,   /* the greedy answers with and without the removed steps agree */
    PD_VERIFY_LOGPROB,  /* logprob(answer | without) >= logprob(answer | with) - max_drop */
    PD_VERIFY_RULE_COUNT
};

struct pd_verify_rule {
    enum pd_verify_rule_kind kind;
    double max_drop;    /* nats, >= 0 (logprob) */
};

/* Parses "greedy" or "logprob:D" (D >= 0 nats, finite; "logprob" alone means 0).
 * PD_EINVAL with a message naming the text otherwise. */
enum pd_status pd_verify_rule_parse(const char *s, struct pd_verify_rule *out,
                                    struct pd_err *err);

/* Whether a check passes: greedy_same for the greedy rule; for the logprob rule both
 * log-probabilities must be finite and without >= with - max_drop. */
bool pd_verify_passes(const struct pd_verify_rule *r, bool greedy_same, double lp_with,
                      double lp_without);

/* ---- samples of one question ------------------------------------------------------------- */

enum {
    PD_PAIRS_CORRECTNESS = 1u << 0,
    PD_PAIRS_LENGTH = 1u << 1,
    PD_PAIRS_BOTH = PD_PAIRS_CORRECTNESS | PD_PAIRS_LENGTH,
};

/* Parses "correctness", "length" or "both" into *modes; false when unknown. */
bool pd_pairs_mode_parse(const char *s, unsigned *modes);

struct pd_pair_sample {
    int64_t id;          /* the session */
    int correct;         /* 1, 0, or -1 (not graded: never paired) */
    int64_t tokens;      /* completion length in tokens; < 0 when unknown */
};

enum pd_pair_kind {
    PD_PAIR_CORRECTNESS,
    PD_PAIR_LENGTH,
    PD_PAIR_KIND_COUNT
};

struct pd_pair {
    int64_t chosen;
    int64_t rejected;
    enum pd_pair_kind kind;
};

/* 1 - shorter / longer: the share of tokens the shorter one saves (0 when longer is 0). */
double pd_pairs_saving(int64_t shorter, int64_t longer);

/* Pairs the samples of one question (duplicate ids are not allowed):
 *   correctness (modes & PD_PAIRS_CORRECTNESS): the correct samples ordered by length (known
 *     lengths first, shortest first; then by id) against the wrong ones ordered by id; the
 *     i-th of each makes a pair: min(correct, wrong) pairs, each sample in at most one;
 *   length (modes & PD_PAIRS_LENGTH): the correct samples with known lengths ordered by
 *     (tokens, id); the i-th shortest against the i-th longest while the shortest comes
 *     before the longest in that order, is strictly shorter, and saves at least min_saving
 *     (pd_pairs_saving): at most floor(correct / 2) pairs.
 * Correctness pairs come first, then length pairs, each in the order made. out needs room
 * for n entries (enough for both). Returns the number of pairs, or 0 with nothing written
 * when scratch memory cannot be had (*oom set). */
size_t pd_pairs_from_samples(const struct pd_pair_sample *s, size_t n, unsigned modes,
                             double min_saving, struct pd_pair *out, bool *oom);

/* ---- step forks --------------------------------------------------------------------------- */

/* The index into steps[0..n) of the step that begins exactly at pos, or -1. */
int32_t pd_pairs_step_at(const struct pd_step_rec *steps, size_t n, int64_t pos);

/* Where the step of a trace that starts at pos ends: the smallest step begin > pos, or
 * think_end when there is none or think_end comes first. Steps need not be sorted. */
int64_t pd_pairs_next_step_end(const struct pd_step_rec *steps, size_t n, int64_t pos,
                               int64_t think_end);

/* The end of a trace's thinking: the position of its first ANSWER token, or its length
 * when it has none (toks in position order). */
int64_t pd_pairs_think_end(const struct pd_token_rec *toks, size_t n);

#endif
