/* store_problems.h - problem sets for evaluation: JSONL files with one problem per line.
 *
 * A line is a JSON object with
 *   "question" (or "problem", or "prompt"): a non-empty string, what the model is asked;
 *   "answer": the reference, a string or a number (numbers keep their JSON text, so 831
 *             and "831" read the same; GSM8K-style "... #### 72" strings are kept whole:
 *             the answer matcher takes the part after "####");
 *   optional "id" (string or integer; default: the line number) and "type" (string: a
 *   problem category that evaluation reports separately).
 * Other fields are ignored. Blank lines are skipped. Anything else is an error that names
 * the file, the line and the field, e.g. "p.jsonl:7: answer: missing".
 *
 * Ownership: pd_problems_read returns an owned array (pd_problems_free).
 * Thread-safety: reentrant. */
#ifndef PD_STORE_PROBLEMS_H
#define PD_STORE_PROBLEMS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define PD_PROBLEMS_LINE_MAX ((size_t)1 << 20) /* bytes in one line */
#define PD_PROBLEMS_MAX ((size_t)1 << 22)      /* problems in one file */

struct pd_problem {
    char *id;        /* owned */
    char *question;  /* owned */
    char *answer;    /* owned: the reference as text */
    char *type;      /* owned, or NULL when the line has none */
    int64_t line;    /* 1-based line number in the file */
};

/* Reads every problem of path. On success *out (owned, *n entries) may be NULL when the
 * file has none. Errors: PD_EIO (cannot open or read), PD_EFORMAT (a bad line: invalid
 * UTF-8, invalid JSON, not an object, a missing or mistyped field, a line over
 * PD_PROBLEMS_LINE_MAX, more than PD_PROBLEMS_MAX problems), PD_ENOMEM. */
enum pd_status pd_problems_read(const char *path, struct pd_problem **out, size_t *n,
                                struct pd_err *err);

/* Frees every problem and the array; accepts NULL. */
void pd_problems_free(struct pd_problem *p, size_t n);

#endif
