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

/* Tokens read from the database at a time when the steps are stored. */
#define REC_CHUNK 1024

/* Reads the session's tokens in chunks: each chunk goes to the segmenter (pass 0) or the
 * metrics accumulator (pass 1), then is freed. */
static enum pd_status read_pass(struct pd_replay *r, int pass, struct pd_token_rec *buf,
                                struct pd_steps_seg *seg, struct pd_steps_list *l,
                                struct pd_metrics_acc *acc, struct pd_err *err)
{
    enum pd_status rc = pd_replay_seek(r, 0, err);
    while (rc == PD_OK) {
        size_t got = 0;
        rc = pd_replay_read(r, buf, REC_CHUNK, &got, err);
        for (size_t i = 0; rc == PD_OK && i < got; i++) {
            rc = pass == 0 ? pd_steps_seg_feed(seg, &buf[i], l, err) : PD_OK;
        }
        if (rc == PD_OK && pass == 1) {
            rc = pd_metrics_acc_add(acc, buf, got, err);
        }
        for (size_t i = 0; i < got; i++) {
            pd_token_rec_free(&buf[i]);
        }
        if (got == 0) {
            break;
        }
    }
    return rc;
}

/* Segments a recorded session's tokens and stores its steps with their metrics. The
 * trace is read twice, a chunk at a time (segmentation, then metrics), so closing a long
 * recording holds its steps, not its tokens. */
static enum pd_status store_steps(struct pd_store *st, int64_t sid, struct pd_err *err)
{
    struct pd_replay *r = NULL;
    enum pd_status rc = pd_replay_open(st, sid, &r, err);
    if (rc != PD_OK) {
        return rc;
    }
    struct pd_token_rec *buf = pd_calloc(REC_CHUNK, sizeof *buf);
    struct pd_steps_params sp = pd_steps_default_params();
    struct pd_steps_seg *seg = NULL;
    struct pd_metrics_acc *acc = NULL;
    struct pd_steps_list l;
    pd_steps_list_init(&l);
    rc = buf ? pd_steps_seg_open(&sp, &seg, err) : pd_err_set(err, PD_ENOMEM, "out of memory");
    if (rc == PD_OK) {
        rc = read_pass(r, 0, buf, seg, &l, NULL, err);
    }
    if (rc == PD_OK) {
        rc = pd_steps_seg_finish(seg, &l, err);
    }
    if (rc == PD_OK) {
        rc = pd_metrics_acc_open(l.items, l.n, &acc, err);
    }
    if (rc == PD_OK) {
        rc = read_pass(r, 1, buf, NULL, NULL, acc, err);
    }
    if (rc == PD_OK) {
        pd_metrics_acc_finish(acc, l.items);
        rc = pd_store_steps_replace(st, sid, l.items, l.n, err);
    }
    pd_metrics_acc_close(&acc);
    pd_steps_seg_close(&seg);
    pd_steps_list_deinit(&l);
    pd_replay_close(&r);
    free(buf);
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
