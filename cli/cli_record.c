/* cli_record.c - recording a headless generation (cli_record.h). */
#include "cli_record.h"

#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "metrics.h"
#include "steps.h"
#include "store_replay.h"
#include "store_writer.h"

struct pd_cli_rec {
    struct pd_store *st;           /* borrowed */
    struct pd_store_writer *w;     /* owned */
    int64_t sid;
};

enum pd_status pd_cli_rec_open(struct pd_store *st, const struct pd_session_new *sn,
                               struct pd_cli_rec **out, struct pd_err *err)
{
    *out = NULL;
    struct pd_cli_rec *r = pd_calloc(1, sizeof *r);
    if (!r) {
        return pd_err_set(err, PD_ENOMEM, "out of memory");
    }
    r->st = st;
    enum pd_status rc = pd_store_session_create(st, sn, &r->sid, err);
    if (rc == PD_OK) {
        rc = pd_store_writer_open(st, r->sid, NULL, &r->w, err);
    }
    if (rc != PD_OK) {
        free(r);
        return rc;
    }
    *out = r;
    return PD_OK;
}

int64_t pd_cli_rec_session(const struct pd_cli_rec *r)
{
    return r->sid;
}

enum pd_status pd_cli_rec_push(struct pd_cli_rec *r, const struct pd_event *ev,
                               struct pd_err *err)
{
    if (ev->kind == PD_EV_TOKEN) {
        return pd_store_writer_push_token(r->w, &ev->tok, err);
    }
    if (ev->kind == PD_EV_EVICT) {
        return pd_store_writer_push_kv(r->w, &ev->kv, err);
    }
    return PD_OK;
}

/* Segments a recorded session's tokens and stores its steps with their metrics. */
static enum pd_status store_steps(struct pd_store *st, int64_t sid, struct pd_err *err)
{
    struct pd_replay *r = NULL;
    enum pd_status rc = pd_replay_open(st, sid, &r, err);
    if (rc != PD_OK) {
        return rc;
    }
    int64_t len = pd_replay_length(r);
    struct pd_token_rec *t = pd_calloc(len > 0 ? (size_t)len : 1, sizeof *t);
    size_t n = 0;
    rc = t ? PD_OK : pd_err_set(err, PD_ENOMEM, "out of memory");
    while (rc == PD_OK && n < (size_t)len) {
        size_t got = 0;
        rc = pd_replay_read(r, t + n, (size_t)len - n, &got, err);
        n += got;
        if (got == 0) {
            break;
        }
    }
    pd_replay_close(&r);
    struct pd_steps_list l;
    pd_steps_list_init(&l);
    struct pd_steps_params sp = pd_steps_default_params();
    if (rc == PD_OK) {
        rc = pd_steps_segment(t, n, &sp, &l, err);
    }
    if (rc == PD_OK) {
        rc = pd_metrics_steps(t, n, l.items, l.n, NULL, err);
    }
    if (rc == PD_OK) {
        rc = pd_store_steps_replace(st, sid, l.items, l.n, err);
    }
    pd_steps_list_deinit(&l);
    for (size_t i = 0; i < n; i++) {
        pd_token_rec_free(&t[i]);
    }
    free(t);
    return rc;
}

enum pd_status pd_cli_rec_close(struct pd_cli_rec **rp, bool finished, struct pd_err *err)
{
    struct pd_cli_rec *r = rp ? *rp : NULL;
    if (!r) {
        return PD_OK;
    }
    *rp = NULL;
    enum pd_status rc = pd_store_writer_close(&r->w, finished, err);
    if (rc == PD_OK) {
        rc = store_steps(r->st, r->sid, err);
    }
    free(r);
    return rc;
}

const char *pd_cli_stop_name(const char *t)
{
    return strcmp(t, "eog") == 0       ? "eog"
           : strcmp(t, "length") == 0  ? "length"
           : strcmp(t, "context") == 0 ? "context"
                                       : "stopped";
}
