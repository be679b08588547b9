/* status.c - status names and the error record helpers. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *pd_status_str(enum pd_status st)
{
    switch (st) {
    case PD_OK: return "ok";
    case PD_ENOMEM: return "out of memory";
    case PD_EIO: return "i/o error";
    case PD_EFORMAT: return "bad format";
    case PD_EUNSUPPORTED: return "unsupported";
    case PD_EINVAL: return "invalid argument";
    case PD_ECUDA: return "cuda error";
    case PD_EDB: return "database error";
    case PD_ECANCELLED: return "cancelled";
    }
    return "unknown status";
}

enum pd_status pd_err_set(struct pd_err *err, enum pd_status st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->status = st;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

enum pd_status pd_err_prefix(struct pd_err *err, const char *fmt, ...)
{
    if (!err) {
        return PD_OK;
    }
    char prefix[PD_ERR_MSG_MAX];
    char old[PD_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
    return err->status;
}

void pd_err_clear(struct pd_err *err)
{
    if (err) {
        err->status = PD_OK;
        err->msg[0] = '\0';
    }
}
