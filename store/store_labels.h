/* store_labels.h - what distillation datasets are drawn from (schema version 4):
 * preferences between sessions, reference answers, questions with their pass rates and
 * the grade of each sample, and stored prune verifications.
 *
 * A *preference* says that one session's trace is better than another's for the same
 * conversation: a branch chosen over its parent or a sibling, marked in the workbench
 * (`:prefer`) or through the session tags `chosen` / `rejected` (docs/export.md gives the
 * rules). A *question* is the conversation before a trace; every root session with the
 * same conversation is a sample of it. `ponder analyze --pass-rate` grades each sample's
 * final answer against its reference answer and stores the question's pass rate
 * (difficulty = 1 - pass rate). A *prune check* is `ponder prune --verify`'s result for the
 * session's current prunes; a *step check* the same for one pruned step removed alone.
 *
 * Errors: enum pd_status with a message naming the database and the session or question.
 * Ownership: strings passed in are borrowed for the call; records returned are owned by
 * the caller (the matching *_free). Threads: as struct pd_store (one owner). */
#ifndef PD_STORE_LABELS_H
#define PD_STORE_LABELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "store.h"

/* Longest reference answer kept (bytes); a longer one is refused (PD_EINVAL). */
#define PD_REFERENCE_MAX 65536

/* ---- preferences ------------------------------------------------------------------ */

struct pd_pref {
    int64_t id;
    int64_t chosen_id;
    int64_t rejected_id;
    char *note;              /* owned when read back; "" when none */
    int64_t created_ms;
};

void pd_store_prefs_free(struct pd_pref *p, size_t n);

/* Records that session chosen is preferred over session rejected. Both must exist, differ
 * and have the same conversation (messages); a preference the other way round between the
 * two is replaced (the latest mark wins); marking the same pair again only updates the
 * note. note may be NULL. *id may be NULL. PD_EINVAL naming the sessions otherwise. */
enum pd_status pd_store_prefer(struct pd_store *st, int64_t chosen, int64_t rejected,
                               const char *note, int64_t *id, struct pd_err *err);

/* Removes any preference between a and b (either direction); a no-op when none. */
enum pd_status pd_store_unprefer(struct pd_store *st, int64_t a, int64_t b,
                                 struct pd_err *err);

/* The preferences that involve session_id on either side, or all of them when session_id
 * is 0, ordered by (chosen_id, rejected_id). *out owned (pd_store_prefs_free). */
enum pd_status pd_store_prefs_get(struct pd_store *st, int64_t session_id, struct pd_pref **out,
                                  size_t *n, struct pd_err *err);

/* ---- reference answers and questions ----------------------------------------------- */

/* Sets (or with ref NULL clears) a session's reference answer: non-empty UTF-8 without
 * NUL, at most PD_REFERENCE_MAX bytes. Reading it back: pd_store_session_info.reference. */
enum pd_status pd_store_reference_set(struct pd_store *st, int64_t session_id, const char *ref,
                                      struct pd_err *err);

/* The canonical key of a session's question: its messages as compact JSON,
 * [{"role":"user","content":"..."},...] (the conversational prompt of the preference
 * formats). *out owned (free()). */
enum pd_status pd_store_prompt_key(struct pd_store *st, int64_t session_id, char **out,
                                   struct pd_err *err);

/* One sample's grade, as analyze --pass-rate computed it. */
struct pd_sample_grade {
    int64_t session_id;
    const char *answer;      /* borrowed: the extracted final answer, NULL when none */
    int correct;             /* 1 correct, 0 wrong, -1 not graded (no reference) */
};

/* Stores a question (found or added by its prompt key) with its reference (NULL: none) and
 * the grades of all its samples, in one transaction: the question's counts are set from
 * g[0..n) and every sample points at the question with its answer and grade. Samples of
 * the question not in g keep their link but are not counted. *id (may be NULL) receives
 * the question's id. PD_EINVAL for an unknown session or a session that is a branch. */
enum pd_status pd_store_question_put(struct pd_store *st, const char *prompt_key,
                                     const char *reference, const struct pd_sample_grade *g,
                                     size_t n, int64_t *id, struct pd_err *err);

struct pd_question {
    int64_t id;
    char *prompt;            /* owned: the prompt key */
    char *reference;         /* owned, NULL when none */
    int64_t n_samples;
    int64_t n_graded;        /* samples with a reference answer */
    int64_t n_correct;
    double pass_rate;        /* n_correct / n_graded; NAN when nothing is graded */
};

void pd_store_question_free(struct pd_question *q);

/* Reads question id. PD_EINVAL when there is none. */
enum pd_status pd_store_question_get(struct pd_store *st, int64_t id, struct pd_question *out,
                                     struct pd_err *err);

/* A graded sample of a question. */
struct pd_sample {
    int64_t session_id;
    int correct;             /* 1, 0, or -1 (not graded) */
};

/* The question ids that have samples, ascending. *out owned (free()). */
enum pd_status pd_store_question_ids(struct pd_store *st, int64_t **out, size_t *n,
                                     struct pd_err *err);

/* The samples linked to question id, by session id. *out owned (free()). */
enum pd_status pd_store_question_samples(struct pd_store *st, int64_t id, struct pd_sample **out,
                                         size_t *n, struct pd_err *err);

/* A session's grade: its question (0: not graded), extracted answer (owned, may be NULL),
 * correct (1, 0, -1) and the question's pass rate (NAN when unknown). */
struct pd_session_grade {
    int64_t question_id;
    char *answer;
    int correct;
    double pass_rate;
    int64_t n_samples;
};

enum pd_status pd_store_session_grade(struct pd_store *st, int64_t session_id,
                                      struct pd_session_grade *out, struct pd_err *err);
void pd_store_session_grade_free(struct pd_session_grade *g);

/* A session's difficulty: 1 - the pass rate of the question with its conversation (its
 * prompt key), as analyze --pass-rate stored it; NAN (and *pass_rate NAN, *n_graded 0)
 * when no graded question has that conversation. Any pointer but the first may be NULL. */
enum pd_status pd_store_difficulty(struct pd_store *st, int64_t session_id, double *difficulty,
                                   double *pass_rate, int64_t *n_graded, struct pd_err *err);

/* ---- prune verifications ------------------------------------------------------------- */

/* `prune --verify`'s result for a session's prunes. */
struct pd_prune_check_rec {
    char *pruned;            /* owned when read back: the prunes it checked, as
                              * "step:begin-end" joined by "," (pd_store_prunes_signature) */
    char *strategy;          /* owned when read back: the prune spec ("asap:keep=0.5") */
    int64_t answer_tokens;
    double logprob_full;     /* nats; NAN when unknown */
    double logprob_pruned;
    int64_t greedy_compared;
    bool greedy_same;
    bool current;            /* read back: `pruned` equals the session's prunes now */
};

void pd_store_prune_check_free(struct pd_prune_check_rec *c);

/* The session's current prunes as "step:begin-end,..." (ascending step index; "" when
 * nothing is pruned). *out owned (free()). */
enum pd_status pd_store_prunes_signature(struct pd_store *st, int64_t session_id, char **out,
                                         struct pd_err *err);

/* Stores c (pruned and current ignored: the session's current prunes are recorded) as the
 * session's prune check, replacing an earlier one. strategy must be non-empty. */
enum pd_status pd_store_prune_check_put(struct pd_store *st, int64_t session_id,
                                        const struct pd_prune_check_rec *c, struct pd_err *err);

/* Reads the session's prune check; *found false (and *out zeroed) when there is none. */
enum pd_status pd_store_prune_check_get(struct pd_store *st, int64_t session_id,
                                        struct pd_prune_check_rec *out, bool *found,
                                        struct pd_err *err);

/* The check of one step removed alone from the full trace. */
struct pd_step_check_rec {
    int32_t step_index;
    double logprob_full;     /* nats, answer under the full reasoning; NAN when unknown */
    double logprob_without;  /* nats, answer without this step */
    int64_t greedy_compared;
    bool greedy_same;        /* greedy answers with and without the step agree */
};

/* Replaces the session's step checks with c[0..n) (n may be 0) in one transaction. Every
 * step must exist (PD_EINVAL naming it). */
enum pd_status pd_store_step_checks_put(struct pd_store *st, int64_t session_id,
                                        const struct pd_step_check_rec *c, size_t n,
                                        struct pd_err *err);

/* The session's step checks by step index. *out owned (free()). */
enum pd_status pd_store_step_checks_get(struct pd_store *st, int64_t session_id,
                                        struct pd_step_check_rec **out, size_t *n,
                                        struct pd_err *err);

#endif
