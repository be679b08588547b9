/* status.h - ponder's status codes and error record.
 *
 * Every fallible function below tui/ returns an enum pd_status (0 = ok) and, when the
 * caller passes a non-NULL struct pd_err, fills it with one human-readable message that
 * says what went wrong and where (file, field, line). Nothing below tui/ prints errors
 * or exits; the edge prints the message once.
 *
 * Ownership: struct pd_err is caller-owned, fixed-size, no heap. */
#ifndef PD_STATUS_H
#define PD_STATUS_H

#include <stddef.h>

enum pd_status {
    PD_OK = 0,
    PD_ENOMEM = -1,      /* allocation failed */
    PD_EIO = -2,         /* read/write/open failed */
    PD_EFORMAT = -3,     /* malformed input (file, JSON, GGUF, database) */
    PD_EUNSUPPORTED = -4,/* well-formed but not something ponder handles */
    PD_EINVAL = -5,      /* bad argument from a caller or user */
    PD_ECUDA = -6,       /* GPU backend failure */
    PD_EDB = -7,         /* SQLite failure */
    PD_ECANCELLED = -8,  /* stopped on request */
};

#define PD_ERR_MSG_MAX 512

struct pd_err {
    enum pd_status status;
    char msg[PD_ERR_MSG_MAX];
};

/* Returns a short constant name for a status ("ok", "out of memory", ...). */
const char *pd_status_str(enum pd_status st);

/* Records st and a printf-style message in err (if err is non-NULL) and returns st,
 * so call sites can write `return pd_err_set(err, PD_EFORMAT, "%s: bad magic", path);`.
 * A message already present is overwritten. */
enum pd_status pd_err_set(struct pd_err *err, enum pd_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to the message already in err (no-op on NULL err). Used to add
 * context (a file name) while an error travels up. Returns err's status. */
enum pd_status pd_err_prefix(struct pd_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clears err to PD_OK with an empty message. NULL is accepted. */
void pd_err_clear(struct pd_err *err);

#endif
