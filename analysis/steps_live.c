/* steps_live.c - the session-facing adapter over the incremental segmenter. */
#include "steps_live.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"

/* Everything fed, for rewinds, packed: one text buffer and per token its position, role
 * and where its text starts (about 17 bytes a token plus its text: a long live session
 * keeps this for every token it generated). */
struct pd_steps_live {
    struct pd_steps_params params;
    struct pd_steps_seg *seg;
    struct pd_steps_list closed; /* scratch for feed output */
    int64_t *pos;                /* [cap] */
    uint8_t *role;               /* [cap] */
    size_t *off;                 /* [cap + 1]: token i's text is text[off[i], off[i + 1]) */
    struct pd_buf text;
    size_t n, cap;
    bool announced_first;        /* the first step's begin was reported */
    bool no_rewind;              /* keep no copy: nothing rewinds */
};

void pd_steps_live_no_rewind(struct pd_steps_live *o)
{
    o->no_rewind = true;
}

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
    pd_buf_init(&o->text);
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
    free(o->pos);
    free(o->role);
    free(o->off);
    pd_buf_deinit(&o->text);
    pd_steps_seg_close(&o->seg);
    pd_steps_list_deinit(&o->closed);
    free(o);
    *op = NULL;
}

static bool remember(struct pd_steps_live *o, const struct pd_token_rec *t)
{
    if (o->no_rewind) {
        return true;
    }
    if (o->n + 1 >= o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 1024;
        int64_t *p = pd_realloc_array(o->pos, cap, sizeof *p);
        if (p) {
            o->pos = p;
        }
        uint8_t *r = pd_realloc_array(o->role, cap, sizeof *r);
        if (r) {
            o->role = r;
        }
        size_t *f = pd_realloc_array(o->off, cap + 1, sizeof *f);
        if (f) {
            o->off = f;
        }
        if (!p || !r || !f) {
            return false;
        }
        o->cap = cap;
    }
    if (o->n == 0) {
        o->off[0] = 0;
    }
    size_t len = t->text ? t->text_len : 0;
    if (len && !pd_buf_append(&o->text, t->text, len)) {
        return false;
    }
    o->pos[o->n] = t->pos;
    o->role[o->n] = (uint8_t)t->role;
    o->off[o->n + 1] = o->text.len;
    o->n++;
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
    /* keep the tokens before pos, then feed them again (remember appends them anew:
     * move the kept ones aside first) */
    size_t keep = 0;
    while (keep < o->n && o->pos[keep] < pos) {
        keep++;
    }
    size_t n_bytes = keep ? o->off[keep] : 0;
    char *text = n_bytes ? pd_strndup(o->text.data, n_bytes) : NULL;
    int64_t *kpos = keep ? pd_malloc_array(keep, sizeof *kpos) : NULL;
    uint8_t *krole = keep ? pd_malloc_array(keep, sizeof *krole) : NULL;
    size_t *koff = keep ? pd_malloc_array(keep + 1, sizeof *koff) : NULL;
    if (keep && (!kpos || !krole || !koff || (n_bytes && !text))) {
        pd_log(PD_LOG_WARN, "step segmentation: out of memory");
        keep = 0;
    } else if (keep) {
        memcpy(kpos, o->pos, keep * sizeof *kpos);
        memcpy(krole, o->role, keep * sizeof *krole);
        memcpy(koff, o->off, (keep + 1) * sizeof *koff);
    }
    o->n = 0;
    o->text.len = 0;
    int64_t dummy;
    for (size_t i = 0; i < keep; i++) {
        struct pd_token_rec t;
        memset(&t, 0, sizeof t);
        t.pos = kpos[i];
        t.role = (enum pd_role)krole[i];
        t.text = text ? text + koff[i] : NULL;
        t.text_len = koff[i + 1] - koff[i];
        feed(o, &t, &dummy);
    }
    free(text);
    free(kpos);
    free(krole);
    free(koff);
}

struct pd_step_observer pd_steps_live_iface(struct pd_steps_live *o)
{
    struct pd_step_observer it = {feed, reset, o};
    return it;
}
