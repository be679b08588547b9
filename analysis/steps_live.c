/* steps_live.c - the session-facing adapter over the incremental segmenter. */
#include "steps_live.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"

struct fed {
    int64_t pos;
    enum pd_role role;
    char *text;
    size_t text_len;
};

struct pd_steps_live {
    struct pd_steps_params params;
    struct pd_steps_seg *seg;
    struct pd_steps_list closed; /* scratch for feed output */
    struct fed *toks;            /* everything fed, for rewinds */
    size_t n, cap;
    bool announced_first;        /* the first step's begin was reported */
};

enum pd_status pd_steps_live_open(const struct pd_steps_params *params,
                                      struct pd_steps_live **out, struct pd_err *err)
{
    *out = NULL;
    struct pd_steps_live *o = calloc(1, sizeof *o);
    if (!o) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (step observer)");
    }
    o->params = params ? *params : pd_steps_default_params();
    pd_steps_list_init(&o->closed);
    enum pd_status st = pd_steps_seg_open(&o->params, &o->seg, err);
    if (st) {
        free(o);
        return st;
    }
    *out = o;
    return PD_OK;
}

void pd_steps_live_close(struct pd_steps_live **op)
{
    if (!op || !*op) {
        return;
    }
    struct pd_steps_live *o = *op;
    for (size_t i = 0; i < o->n; i++) {
        free(o->toks[i].text);
    }
    free(o->toks);
    pd_steps_seg_close(&o->seg);
    pd_steps_list_deinit(&o->closed);
    free(o);
    *op = NULL;
}

static bool remember(struct pd_steps_live *o, const struct pd_token_rec *t)
{
    struct fed *n = pd_grow_array(o->toks, &o->cap, o->n + 1, sizeof *n);
    if (!n) {
        return false;
    }
    o->toks = n;
    char *copy = pd_strndup(t->text ? t->text : "", t->text ? t->text_len : 0);
    if (!copy) {
        return false;
    }
    o->toks[o->n++] = (struct fed){t->pos, t->role, copy, t->text ? t->text_len : 0};
    return true;
}

static bool feed(void *ud, const struct pd_token_rec *tok, int64_t *step_begin)
{
    struct pd_steps_live *o = ud;
    struct pd_err err;
    o->closed.n = 0;
    if (pd_steps_seg_feed(o->seg, tok, &o->closed, &err)) {
        pd_log(PD_LOG_WARN, "step segmentation: %s", err.msg);
        return false;
    }
    if (!remember(o, tok)) {
        pd_log(PD_LOG_WARN, "step segmentation: out of memory");
    }
    if (o->closed.n > 0) {
        /* The last closed step ends where the newest step begins. */
        *step_begin = o->closed.items[o->closed.n - 1].pos_end;
        return true;
    }
    int64_t begin;
    if (!o->announced_first && pd_steps_seg_open_step(o->seg, &begin)) {
        o->announced_first = true;
        *step_begin = begin;
        return true;
    }
    return false;
}

static void reset(void *ud, int64_t pos)
{
    struct pd_steps_live *o = ud;
    struct pd_err err;
    pd_steps_seg_close(&o->seg);
    if (pd_steps_seg_open(&o->params, &o->seg, &err)) {
        pd_log(PD_LOG_WARN, "step segmentation: %s", err.msg);
        return;
    }
    o->announced_first = false;
    size_t keep = 0;
    int64_t dummy;
    for (size_t i = 0; i < o->n; i++) {
        if (o->toks[i].pos >= pos) {
            free(o->toks[i].text);
            continue;
        }
        o->toks[keep++] = o->toks[i];
    }
    size_t n = keep;
    o->n = 0;
    struct fed *old = o->toks;
    o->toks = NULL;
    o->cap = 0;
    for (size_t i = 0; i < n; i++) {
        struct pd_token_rec t;
        memset(&t, 0, sizeof t);
        t.pos = old[i].pos;
        t.role = old[i].role;
        t.text = old[i].text;
        t.text_len = old[i].text_len;
        feed(o, &t, &dummy);
        free(old[i].text);
    }
    free(old);
}

struct pd_step_observer pd_steps_live_iface(struct pd_steps_live *o)
{
    struct pd_step_observer it = {feed, reset, o};
    return it;
}
