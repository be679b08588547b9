/* steps.h - reasoning-step segmentation and step kinds.
 *
 * Splits the thinking span of a trace into steps (token spans [pos_begin, pos_end)) at
 * blank lines and, optionally, at sentence-initial discourse markers, merging fragments
 * shorter than min_chars into the following step; tags each step plan / compute / check
 * / backtrack / conclude by keyword rules. Two entry points give identical steps: a batch
 * function over a whole trace and an incremental segmenter fed one token at a time as
 * tokens stream. The exact rules (span, split points, where a boundary falls when "\n\n"
 * sits inside a token, merging, kinds) are in docs/analysis.md; summary:
 *   - span: THINK tokens (plus INJECTED tokens between two THINK tokens) when the first
 *     non-prompt, non-injected token is THINK; otherwise every non-PROMPT token. Tokens
 *     outside the span split the span into runs; a step never crosses a run.
 *   - split points are byte offsets s of a non-whitespace byte: the first byte after a
 *     whitespace run holding >= 2 '\n', or the first letter of a marker at a sentence
 *     start. The new step begins at the token that contains byte s.
 *   - a closed step whose trimmed text has < min_chars characters is not closed (it
 *     merges into the next); the last step of a run always stands.
 *
 * Thread-safety: all functions are reentrant; a segmenter has one owner thread. */
#ifndef PD_STEPS_H
#define PD_STEPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "trace.h"

#define PD_STEPS_MARKERS_MAX 32   /* markers in a custom list */
#define PD_STEPS_MARKER_LEN_MAX 31 /* bytes per marker */
#define PD_STEPS_MAX_TOKENS 2048   /* a step that reaches this many tokens closes before
                                    * the next one (a wall of text still gives steps, and
                                    * the open step's memory is bounded) */

enum pd_steps_span {
    PD_STEPS_SPAN_AUTO,       /* decided by the first non-prompt, non-injected token */
    PD_STEPS_SPAN_THINK,      /* THINK tokens (and INJECTED between THINK tokens) */
    PD_STEPS_SPAN_COMPLETION, /* every non-PROMPT token */
    PD_STEPS_SPAN_COUNT
};

struct pd_steps_params {
    enum pd_steps_span span;
    bool split_blank_lines;     /* split at "\n\n" (default true) */
    bool split_markers;         /* split at sentence-initial markers (default false) */
    int32_t min_chars;          /* merge steps with fewer trimmed characters (default 10) */
    const char *const *markers; /* borrowed for the call / the segmenter's lifetime:
                                 * NULL-terminated list, or NULL for the built-in list
                                 * (wait, but, alternatively, hmm, let me, so, therefore,
                                 * actually, oh). ASCII letters, single spaces, '\'' and
                                 * '-'; first and last byte a letter; matched
                                 * case-insensitively. */
    float compute_density;      /* kind rule: digit/operator share that makes a step
                                 * "compute" ahead of the plan rule (default 0.2) */
};

/* The defaults listed above. */
struct pd_steps_params pd_steps_default_params(void);

/* A growable list of steps. init zeroes; deinit frees; items owned by the list. */
struct pd_steps_list {
    struct pd_step_rec *items; /* owned: [n] */
    size_t n;
    size_t cap;
};

void pd_steps_list_init(struct pd_steps_list *l);
void pd_steps_list_deinit(struct pd_steps_list *l);

/* Batch segmentation of toks[0..n_tok) (a whole trace, any roles, positions strictly
 * increasing). Appends the steps to out (index numbering starts at 0 for this call);
 * fields beyond index/pos_begin/pos_end/kind are pruned=false and NAN metrics. params may
 * be NULL (defaults). Returns PD_EINVAL for bad params or tokens (message names the token
 * index and position), PD_ENOMEM on allocation failure; out may then hold a prefix. */
enum pd_status pd_steps_segment(const struct pd_token_rec *toks, size_t n_tok,
                                const struct pd_steps_params *params,
                                struct pd_steps_list *out, struct pd_err *err);

/* Incremental segmenter. */
struct pd_steps_seg;

/* Creates a segmenter (params copied; custom markers copied too). *out is owned by the
 * caller; release with pd_steps_seg_close. */
enum pd_status pd_steps_seg_open(const struct pd_steps_params *params,
                                 struct pd_steps_seg **out, struct pd_err *err);

/* Frees *s (NULL and *s == NULL accepted) and sets *s to NULL. */
void pd_steps_seg_close(struct pd_steps_seg **s);

/* Feeds the next token (only pos, role, text, text_len are read; the record is borrowed
 * for the call). Appends every step that this token closes to out (possibly none, possibly
 * several; a step closes once the token holding the next step's first byte has arrived
 * and any marker look-ahead is resolved). Returns PD_EINVAL for a position not above the
 * previous one, a bad role or text (the segmenter is unchanged), PD_ENOMEM on allocation
 * failure. */
enum pd_status pd_steps_seg_feed(struct pd_steps_seg *s, const struct pd_token_rec *tok,
                                 struct pd_steps_list *out, struct pd_err *err);

/* Ends the trace: appends the remaining open step(s) to out. Further feeds start a new
 * trace (positions must still increase). */
enum pd_status pd_steps_seg_finish(struct pd_steps_seg *s, struct pd_steps_list *out,
                                   struct pd_err *err);

/* True while a step is open; *pos_begin receives its first token's position. */
bool pd_steps_seg_open_step(const struct pd_steps_seg *s, int64_t *pos_begin);

/* The kind of a step with text text[0..len) (see docs/analysis.md for the rules, tried in
 * order: conclude, check, backtrack, compute by density, plan, compute by default).
 * params may be NULL (defaults). Pure. */
enum pd_step_kind pd_steps_classify(const char *text, size_t len,
                                    const struct pd_steps_params *params);

#endif
