/* app.c - the workbench's view model: tokens, steps, tags, KV events, view state, and the
 * pure handlers for actions, commands and session events (DESIGN in app.h). */
#include "app.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_blob.h"
#include "mem.h"
#include "policies.h"
#include "kvsim.h"

static const char *const pane_names[PD_PANE_COUNT] = {"trace", "steps", "inspector", "kv"};
_Static_assert(sizeof pane_names / sizeof pane_names[0] == PD_PANE_COUNT, "pane table");

const char *pd_pane_name(enum pd_pane p)
{
    return (unsigned)p < PD_PANE_COUNT ? pane_names[p] : NULL;
}

static void kv_sync(struct pd_app *a);

/* ---- messages and effects ------------------------------------------------------------ */

void pd_app_msg(struct pd_app *a, bool error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->msg, sizeof a->msg, fmt, ap);
    va_end(ap);
    a->msg_error = error;
    a->dirty |= PD_DIRTY_CMDLINE;
}

static struct pd_app_fx *fx_push(struct pd_app *a, enum pd_fx_kind kind)
{
    if (a->n_fx >= PD_APP_FX_MAX) {
        pd_app_msg(a, true, "too many pending actions; try again");
        return NULL;
    }
    struct pd_app_fx *f = &a->fx[a->n_fx++];
    memset(f, 0, sizeof *f);
    f->kind = kind;
    return f;
}

static struct pd_cmd *fx_cmd(struct pd_app *a, enum pd_cmd_kind kind)
{
    struct pd_app_fx *f = fx_push(a, PD_FX_SESSION);
    if (!f) {
        return NULL;
    }
    f->cmd.kind = kind;
    f->cmd.token = -1;
    return &f->cmd;
}

bool pd_app_fx_pop(struct pd_app *a, struct pd_app_fx *out)
{
    if (a->n_fx == 0) {
        return false;
    }
    *out = a->fx[0];
    memmove(a->fx, a->fx + 1, (a->n_fx - 1) * sizeof a->fx[0]);
    a->n_fx--;
    return true;
}

static void open_cmdline(struct pd_app *a, char kind, const char *init)
{
    struct pd_app_fx *f = fx_push(a, PD_FX_CMDLINE);
    if (f) {
        f->cmdline_kind = kind;
        snprintf(f->text, sizeof f->text, "%s", init);
    }
}

/* ---- init ---------------------------------------------------------------------------- */

enum pd_status pd_app_init(struct pd_app *a, enum pd_app_kind kind, struct pd_err *err)
{
    memset(a, 0, sizeof *a);
    a->kind = kind;
    a->dirty = PD_DIRTY_ALL;
    a->follow = true;
    a->alt_sel = -1;
    a->speed = 20.0;
    a->short_budget = 256;
    a->mode = PD_MODE_LONG;
    snprintf(a->kv_policy, sizeof a->kv_policy, "full");
    snprintf(a->backend, sizeof a->backend, "cpu");
    pd_wrap_init(&a->wrap, 80);
    pd_steps_list_init(&a->seg_out);
    if (kind == PD_APP_LIVE) {
        enum pd_status st = pd_steps_seg_open(NULL, &a->seg, err);
        if (st) {
            return st;
        }
    }
    return PD_OK;
}

void pd_app_deinit(struct pd_app *a)
{
    for (size_t i = 0; i < a->n_toks; i++) {
        pd_token_rec_free(&a->toks[i]);
    }
    free(a->toks);
    free(a->tok_step);
    free(a->steps);
    free(a->tags);
    free(a->kv);
    free(a->kv_map);
    free(a->matches);
    pd_steps_seg_close(&a->seg);
    pd_steps_list_deinit(&a->seg_out);
    pd_wrap_deinit(&a->wrap);
    memset(a, 0, sizeof *a);
}

/* ---- queries ------------------------------------------------------------------------- */

float pd_app_surprisal(const struct pd_app *a, size_t i)
{
    if (i >= a->n_toks || isnan(a->toks[i].logprob)) {
        return NAN;
    }
    return (float)(-a->toks[i].logprob / M_LN2);
}

int32_t pd_app_step_of(const struct pd_app *a, size_t i)
{
    return i < a->n_toks ? a->tok_step[i] : -1;
}

const char *pd_app_piece(const struct pd_app *a, int32_t id, size_t *len)
{
    if (!a->piece || id < 0) {
        return NULL;
    }
    return a->piece(a->piece_ud, id, len);
}

bool pd_app_unsaved(const struct pd_app *a)
{
    for (size_t i = 0; i < a->n_steps; i++) {
        if (a->steps[i].rec.pruned != a->steps[i].pruned_saved) {
            return true;
        }
    }
    for (size_t i = 0; i < a->n_tags; i++) {
        if (!a->tags[i].saved) {
            return true;
        }
    }
    return false; /* the recording itself is committed on exit, so it never counts */
}

void pd_app_mode_text(const struct pd_app *a, char *buf, size_t n)
{
    if (a->mode == PD_MODE_SHORT) {
        snprintf(buf, n, "short:%u", a->short_budget);
    } else {
        snprintf(buf, n, "%s", pd_think_mode_name(a->mode));
    }
}

bool pd_app_attn_dims(const struct pd_app *a, size_t i, int *n_layer, int *n_top)
{
    if (i >= a->n_toks) {
        return false;
    }
    const struct pd_token_rec *t = &a->toks[i];
    struct pd_attn_view v;
    if (!pd_attn_blob_layout(t->attn, t->attn_len, &v)) {
        return false;
    }
    *n_layer = (int)v.n_layer;
    *n_top = (int)v.n_top;
    return true;
}

bool pd_app_attn_entry(const struct pd_app *a, size_t i, int layer, int k, uint32_t *pos,
                       float *w)
{
    if (i >= a->n_toks || layer < 0 || k < 0) {
        return false;
    }
    const struct pd_token_rec *t = &a->toks[i];
    struct pd_attn_view v;
    if (!pd_attn_blob_layout(t->attn, t->attn_len, &v) ||
        !pd_attn_view_entry(&v, (uint32_t)layer, (uint32_t)k, pos, w)) {
        return false;
    }
    return *pos < (uint32_t)t->pos && isfinite(*w) && *w >= 0.0f;
}

/* ---- wrap source ----------------------------------------------------------------------- */

#define MARK_STEP "\xe2\x96\xb8"                       /* ▸ */
#define MARK_GEN "\xe2\x94\x82"                        /* │ */
#define MARK_ANSWER "\n\xe2\x80\x94 answer \xe2\x80\x94\n" /* — answer — */

static const char *src_bytes(const void *ud, size_t i, size_t *len)
{
    const struct pd_app *a = ud;
    *len = a->toks[i].text_len;
    return a->toks[i].text ? a->toks[i].text : "";
}

static const char *src_prefix(const void *ud, size_t i)
{
    const struct pd_app *a = ud;
    const struct pd_token_rec *t = &a->toks[i];
    if (i > 0) {
        enum pd_role prev = a->toks[i - 1].role;
        if (t->role == PD_ROLE_ANSWER && prev != PD_ROLE_ANSWER) {
            return MARK_ANSWER;
        }
    }
    int32_t s = a->tok_step[i];
    if (s >= 0 && a->steps[s].rec.pos_begin == t->pos) {
        return MARK_STEP;
    }
    if (i > 0 && t->role != PD_ROLE_PROMPT && a->toks[i - 1].role == PD_ROLE_PROMPT) {
        return MARK_GEN;
    }
    return "";
}

struct pd_wrap_src pd_app_wrap_src(const struct pd_app *a)
{
    struct pd_wrap_src s = {a->n_visible, src_bytes, src_prefix, a};
    return s;
}

/* ---- view helpers ------------------------------------------------------------------------ */

static void rewrap(struct pd_app *a)
{
    struct pd_wrap_src src = pd_app_wrap_src(a);
    if (pd_wrap_update(&a->wrap, &src) != PD_OK) {
        pd_app_msg(a, true, "out of memory laying out the trace");
    }
}

/* Keeps the cursor's line on screen (and the end of the trace when following). */
static void scroll_to_cursor(struct pd_app *a)
{
    if (a->trace_rows <= 0 || a->wrap.n_lines == 0) {
        a->trace_top = 0;
        return;
    }
    struct pd_wrap_src src = pd_app_wrap_src(a);
    size_t rows = (size_t)a->trace_rows;
    size_t line = pd_wrap_line_of(&a->wrap, &src, a->cursor);
    if (a->follow && a->n_visible > 0) {
        line = a->wrap.n_lines - 1;
    }
    if (line < a->trace_top) {
        a->trace_top = line;
    } else if (line >= a->trace_top + rows) {
        a->trace_top = line - rows + 1;
    }
    if (a->trace_top >= a->wrap.n_lines) {
        a->trace_top = a->wrap.n_lines - 1;
    }
}

static void steps_scroll(struct pd_app *a)
{
    int32_t s = pd_app_step_of(a, a->cursor);
    if (s < 0 || a->steps_rows <= 0) {
        return;
    }
    size_t rows = (size_t)a->steps_rows;
    if ((size_t)s < a->steps_top) {
        a->steps_top = (size_t)s;
    } else if ((size_t)s >= a->steps_top + rows) {
        a->steps_top = (size_t)s - rows + 1;
    }
}

static void set_cursor(struct pd_app *a, size_t i)
{
    if (a->n_visible == 0) {
        a->cursor = 0;
        return;
    }
    if (i >= a->n_visible) {
        i = a->n_visible - 1;
    }
    if (i != a->cursor) {
        int32_t old = pd_app_step_of(a, a->cursor);
        a->cursor = i;
        a->alt_sel = -1;
        a->dirty |= PD_DIRTY_TRACE | PD_DIRTY_INSPECT | PD_DIRTY_STATUS | PD_DIRTY_KV;
        if (old != pd_app_step_of(a, i)) {
            a->dirty |= PD_DIRTY_STEPS;
        }
    }
    scroll_to_cursor(a);
    steps_scroll(a);
}

void pd_app_resize(struct pd_app *a, int trace_rows, int trace_cols, int steps_rows,
                   bool narrow)
{
    a->trace_rows = trace_rows < 0 ? 0 : trace_rows;
    a->steps_rows = steps_rows < 0 ? 0 : steps_rows;
    a->narrow = narrow;
    int w = trace_cols < 1 ? 1 : trace_cols;
    if (w != a->wrap.width) {
        pd_wrap_reset(&a->wrap, w);
    }
    rewrap(a);
    scroll_to_cursor(a);
    steps_scroll(a);
    a->dirty = PD_DIRTY_ALL;
}

/* ---- steps ------------------------------------------------------------------------------- */

static bool steps_reserve(struct pd_app *a, size_t n)
{
    struct pd_app_step *ns = pd_grow_array(a->steps, &a->cap_steps, n, sizeof *ns);
    if (!ns) {
        return false;
    }
    a->steps = ns;
    return true;
}

/* Mean/first surprisal and mean entropy over the step's tokens. */
static void step_means(struct pd_app_step *s)
{
    s->rec.mean_surprisal = s->n_s ? (float)(s->sum_s / (double)s->n_s) : NAN;
    s->rec.mean_entropy = s->n_h ? (float)(s->sum_h / (double)s->n_h) : NAN;
}

/* Adds token i (inside the step) to the step's running sums. */
static void step_add_token(struct pd_app *a, struct pd_app_step *s, size_t i)
{
    float x = pd_app_surprisal(a, i);
    if (!isnan(x)) {
        if ((int64_t)i == s->rec.pos_begin) {
            s->rec.first_surprisal = x;
        }
        s->sum_s += x;
        s->n_s++;
    }
    float h = a->toks[i].entropy;
    if (!isnan(h)) {
        s->sum_h += h;
        s->n_h++;
    }
    step_means(s);
}

static void step_metrics(struct pd_app *a, struct pd_app_step *s)
{
    int64_t e = s->rec.pos_end < (int64_t)a->n_toks ? s->rec.pos_end : (int64_t)a->n_toks;
    s->rec.first_surprisal = NAN;
    s->sum_s = s->sum_h = 0;
    s->n_s = s->n_h = 0;
    for (int64_t p = s->rec.pos_begin; p < e; p++) {
        step_add_token(a, s, (size_t)p);
    }
    step_means(s);
}

/* Reassigns tok_step for tokens [from, n_toks) from the step list. */
static void assign_tok_steps(struct pd_app *a, size_t from)
{
    for (size_t i = from; i < a->n_toks; i++) {
        a->tok_step[i] = -1;
    }
    for (size_t k = 0; k < a->n_steps; k++) {
        const struct pd_step_rec *r = &a->steps[k].rec;
        int64_t b = r->pos_begin < (int64_t)from ? (int64_t)from : r->pos_begin;
        int64_t e = r->pos_end < (int64_t)a->n_toks ? r->pos_end : (int64_t)a->n_toks;
        for (int64_t p = b; p < e; p++) {
            a->tok_step[p] = (int32_t)k;
        }
    }
}

/* Attention of token i to earlier steps (not its own): the importance of those steps. */
static void attn_attribute(struct pd_app *a, size_t i)
{
    int nl, nt;
    if (!pd_app_attn_dims(a, i, &nl, &nt)) {
        return;
    }
    int32_t own = a->tok_step[i];
    for (int l = 0; l < nl; l++) {
        for (int k = 0; k < nt; k++) {
            uint32_t q;
            float w;
            if (!pd_app_attn_entry(a, i, l, k, &q, &w)) {
                continue;
            }
            int32_t s = a->tok_step[q];
            if (s >= 0 && s != own) {
                a->steps[s].recv += w / (float)nl;
            }
        }
    }
}

static void recompute_importance(struct pd_app *a)
{
    for (size_t k = 0; k < a->n_steps; k++) {
        a->steps[k].recv = 0.0f;
    }
    for (size_t i = 0; i < a->n_toks; i++) {
        attn_attribute(a, i);
    }
    for (size_t k = 0; k < a->n_steps; k++) {
        a->steps[k].rec.attn_received = a->steps[k].recv;
    }
}

/* Applies the segmenter's output after token `tok` was fed. */
static enum pd_status seg_apply(struct pd_app *a, struct pd_err *err)
{
    /* The common case: no step closed and the open step just grew by the newest token;
     * O(1) instead of re-deriving the open step. */
    if (a->seg_out.n == 0 && a->n_steps > 0 && a->steps[a->n_steps - 1].open && a->n_toks) {
        int64_t b;
        struct pd_app_step *s = &a->steps[a->n_steps - 1];
        if (pd_steps_seg_open_step(a->seg, &b) && b == s->rec.pos_begin) {
            size_t i = a->n_toks - 1;
            s->rec.pos_end = (int64_t)a->n_toks;
            a->tok_step[i] = s->rec.index;
            step_add_token(a, s, i);
            a->dirty |= PD_DIRTY_STEPS;
            return PD_OK;
        }
    }
    size_t first_changed = a->n_toks;
    bool had_open = a->n_steps > 0 && a->steps[a->n_steps - 1].open;
    int64_t old_open_begin = had_open ? a->steps[a->n_steps - 1].rec.pos_begin : -1;
    struct pd_app_step old_open;
    memset(&old_open, 0, sizeof old_open);
    if (had_open) {
        old_open = a->steps[a->n_steps - 1];
        a->n_steps--;
        first_changed = (size_t)old_open_begin;
    }
    if (!steps_reserve(a, a->n_steps + a->seg_out.n + 1)) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (steps)");
    }
    for (size_t k = 0; k < a->seg_out.n; k++) {
        struct pd_app_step *s = &a->steps[a->n_steps++];
        memset(s, 0, sizeof *s);
        s->rec = a->seg_out.items[k];
        s->rec.index = (int32_t)(a->n_steps - 1);
        if (had_open && s->rec.pos_begin == old_open_begin) {
            s->recv = old_open.recv;
            s->n_tags = old_open.n_tags;
        }
        if ((size_t)s->rec.pos_begin < first_changed) {
            first_changed = (size_t)s->rec.pos_begin;
        }
    }
    int64_t begin;
    bool open = a->seg && pd_steps_seg_open_step(a->seg, &begin);
    if (open) {
        struct pd_app_step *s = &a->steps[a->n_steps++];
        memset(s, 0, sizeof *s);
        s->open = true;
        s->rec.index = (int32_t)(a->n_steps - 1);
        s->rec.pos_begin = begin;
        s->rec.pos_end = (int64_t)a->n_toks;
        s->rec.attn_received = NAN;
        if (begin == old_open_begin) {
            s->recv = old_open.recv;
            s->n_tags = old_open.n_tags;
        }
        if (begin != old_open_begin && (size_t)begin < first_changed) {
            first_changed = (size_t)begin;
        }
    }
    /* Carry pruned marks and importance of steps that kept their index. */
    if (first_changed < a->n_toks || a->seg_out.n > 0 || open != had_open) {
        size_t from = first_changed < a->n_toks ? first_changed : a->n_toks - 1;
        assign_tok_steps(a, from);
        for (size_t k = 0; k < a->n_steps; k++) {
            if (a->steps[k].open || a->steps[k].rec.pos_end > (int64_t)from) {
                step_metrics(a, &a->steps[k]);
            }
        }
        if (a->seg_out.n > 0 || (open && begin != old_open_begin)) {
            /* Step markers changed the text before `from`: lay it out again now, since
             * no further token may arrive to do it (the end of a generation). */
            pd_wrap_invalidate(&a->wrap, from);
            rewrap(a);
            scroll_to_cursor(a);
            a->dirty |= PD_DIRTY_TRACE;
        }
        a->dirty |= PD_DIRTY_STEPS;
    }
    a->seg_out.n = 0;
    return PD_OK;
}

/* ---- tokens -------------------------------------------------------------------------------- */

static bool toks_reserve(struct pd_app *a, size_t n)
{
    if (n <= a->cap_toks) {
        return true;
    }
    size_t nc = a->cap_toks ? a->cap_toks * 2 : 1024;
    while (nc < n) {
        nc *= 2;
    }
    struct pd_token_rec *nt = pd_realloc_array(a->toks, nc, sizeof *nt);
    if (!nt) {
        return false;
    }
    a->toks = nt;
    int32_t *ns = pd_realloc_array(a->tok_step, nc, sizeof *ns);
    if (!ns) {
        return false;
    }
    a->tok_step = ns;
    a->cap_toks = nc;
    return true;
}

static void after_visible_grew(struct pd_app *a)
{
    rewrap(a);
    if (a->follow && a->n_visible > 0) {
        a->cursor = a->n_visible - 1;
        a->dirty |= PD_DIRTY_INSPECT;
    }
    scroll_to_cursor(a);
    steps_scroll(a);
    a->dirty |= PD_DIRTY_TRACE | PD_DIRTY_STATUS | PD_DIRTY_KV | PD_DIRTY_STEPS;
}

enum pd_status pd_app_push_token_take(struct pd_app *a, struct pd_token_rec *t,
                                      struct pd_err *err)
{
    struct pd_token_rec r = *t;
    t->text = NULL;
    t->attn = NULL;
    if (r.pos != (int64_t)a->n_toks) {
        pd_token_rec_free(&r);
        return pd_err_set(err, PD_EFORMAT, "token at position %lld, expected %zu",
                          (long long)r.pos, a->n_toks);
    }
    if ((unsigned)r.role >= PD_ROLE_COUNT || r.n_top > PD_TOPK_MAX ||
        (r.text == NULL && r.text_len != 0)) {
        pd_token_rec_free(&r);
        return pd_err_set(err, PD_EFORMAT, "token at position %lld: bad role, top-k or text",
                          (long long)r.pos);
    }
    if (!toks_reserve(a, a->n_toks + 1)) {
        pd_token_rec_free(&r);
        return pd_err_set(err, PD_ENOMEM, "out of memory (tokens)");
    }
    size_t i = a->n_toks++;
    a->toks[i] = r;
    a->tok_step[i] = -1;
    if (r.role == PD_ROLE_PROMPT && a->n_prompt == i) {
        a->n_prompt = i + 1;
    }
    int nl, nt;
    if (a->n_layer == 0 && pd_app_attn_dims(a, i, &nl, &nt)) {
        a->n_layer = nl;
    }
    if (a->kind == PD_APP_LIVE) {
        if (a->seg && !a->seg_failed) {
            struct pd_err e2;
            if (pd_steps_seg_feed(a->seg, &a->toks[i], &a->seg_out, &e2) ||
                seg_apply(a, &e2)) {
                a->seg_failed = true;
                pd_app_msg(a, true, "step segmentation stopped: %s", e2.msg);
            }
        }
        attn_attribute(a, i);
        a->n_visible = a->n_toks;
        kv_sync(a);
        after_visible_grew(a);
    }
    return PD_OK;
}

enum pd_status pd_app_push_kv(struct pd_app *a, const struct pd_kv_event_rec *ev,
                              struct pd_err *err)
{
    if ((unsigned)ev->kind >= PD_KV_EVENT_KIND_COUNT || ev->layer < -1 || ev->slot_pos < 0 ||
        ev->at_pos < 0) {
        return pd_err_set(err, PD_EFORMAT, "KV event: bad kind, layer or position");
    }
    struct pd_kv_event_rec *nk = pd_grow_array(a->kv, &a->cap_kv, a->n_kv + 1, sizeof *nk);
    if (!nk) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (KV events)");
    }
    a->kv = nk;
    a->kv[a->n_kv++] = *ev;
    if (ev->layer >= a->n_layer) {
        a->n_layer = ev->layer + 1;
    }
    kv_sync(a);
    a->dirty |= PD_DIRTY_KV;
    return PD_OK;
}

/* The eviction map [pos][layer] (1 = evicted) as of the playhead, kept in step with the
 * events: appended events apply in O(1); a playhead moving back rebuilds it. */
static bool kv_map_fit(struct pd_app *a)
{
    int32_t nl = a->n_layer > 0 ? a->n_layer : 1;
    size_t need = a->n_toks + 1;
    if (nl != a->kv_map_layers) {
        free(a->kv_map);
        a->kv_map = NULL;
        a->kv_map_cap = 0;
        a->kv_map_layers = nl;
        a->kv_map_applied = 0;
    }
    if (need > a->kv_map_cap) {
        size_t nc = a->kv_map_cap ? a->kv_map_cap * 2 : 1024;
        while (nc < need) {
            nc *= 2;
        }
        uint64_t bytes;
        if (!pd_mul(nc, (uint64_t)nl, &bytes)) {
            return false;
        }
        uint8_t *m = realloc(a->kv_map, (size_t)bytes);
        if (!m) {
            return false;
        }
        memset(m + a->kv_map_cap * (size_t)nl, 0, (nc - a->kv_map_cap) * (size_t)nl);
        a->kv_map = m;
        a->kv_map_cap = nc;
    }
    return true;
}

static void kv_apply(struct pd_app *a, const struct pd_kv_event_rec *e)
{
    if (e->slot_pos < 0 || (uint64_t)e->slot_pos >= a->kv_map_cap) {
        return;
    }
    uint8_t *row = a->kv_map + (size_t)e->slot_pos * (size_t)a->kv_map_layers;
    if (e->layer < 0) {
        memset(row, 1, (size_t)a->kv_map_layers);
    } else if (e->layer < a->kv_map_layers) {
        row[e->layer] = 1;
    }
}

static void kv_sync(struct pd_app *a)
{
    if (!kv_map_fit(a)) {
        pd_app_msg(a, true, "out of memory (KV map)");
        return;
    }
    if (a->kv_map_visible > a->n_visible || a->kv_map_applied > a->n_kv) {
        memset(a->kv_map, 0, a->kv_map_cap * (size_t)a->kv_map_layers);
        a->kv_map_applied = 0;
    }
    while (a->kv_map_applied < a->n_kv &&
           a->kv[a->kv_map_applied].at_pos <= (int64_t)a->n_visible) {
        kv_apply(a, &a->kv[a->kv_map_applied++]);
    }
    a->kv_map_visible = a->n_visible;
}

enum pd_kv_cell pd_app_kv_cell(const struct pd_app *a, int32_t layer, int64_t pos)
{
    if (pos < 0 || pos >= (int64_t)a->n_visible) {
        return PD_KV_CELL_NONE;
    }
    if ((uint64_t)pos < a->kv_map_cap && layer >= 0 && layer < a->kv_map_layers &&
        a->kv_map[(size_t)pos * (size_t)a->kv_map_layers + (size_t)layer]) {
        return PD_KV_CELL_EVICTED;
    }
    if (pos < a->kv_sinks) {
        return PD_KV_CELL_SINK;
    }
    if (a->kv_recent > 0 && pos >= (int64_t)a->n_visible - a->kv_recent) {
        return PD_KV_CELL_PROTECTED;
    }
    return PD_KV_CELL_KEPT;
}

enum pd_status pd_app_set_policy(struct pd_app *a, const char *spec, struct pd_err *err)
{
    struct pd_policy_spec sp;
    enum pd_status st = pd_policy_parse(spec, &sp, err);
    if (st) {
        return st;
    }
    st = pd_policy_format(&sp, a->kv_policy, sizeof a->kv_policy, err);
    if (st) {
        return st;
    }
    a->kv_shadow = sp.mode == PD_KV_MODE_SHADOW;
    a->kv_sinks = sp.n_sink;
    a->kv_budget = sp.has_budget && !sp.budget.is_ratio ? sp.budget.slots : 0;
    a->kv_recent = 0;
    if (sp.kind == PD_POLICY_WINDOW && a->kv_budget > sp.n_sink) {
        a->kv_recent = a->kv_budget - sp.n_sink;
    } else if (sp.kind == PD_POLICY_H2O) {
        a->kv_recent = sp.n_recent ? sp.n_recent
                                   : (int64_t)ceil(sp.recent_ratio * (double)a->kv_budget);
    }
    a->dirty |= PD_DIRTY_KV | PD_DIRTY_STATUS;
    return PD_OK;
}

enum pd_status pd_app_push_step(struct pd_app *a, const struct pd_step_rec *rec,
                                struct pd_err *err)
{
    if (rec->index != (int32_t)a->n_steps || rec->pos_begin < 0 ||
        rec->pos_end < rec->pos_begin || (unsigned)rec->kind >= PD_STEP_KIND_COUNT) {
        return pd_err_set(err, PD_EFORMAT, "step %d: bad index, span or kind", rec->index);
    }
    if (a->n_steps > 0 && rec->pos_begin < a->steps[a->n_steps - 1].rec.pos_end) {
        return pd_err_set(err, PD_EFORMAT, "step %d overlaps the previous step", rec->index);
    }
    if (!steps_reserve(a, a->n_steps + 1)) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (steps)");
    }
    struct pd_app_step *s = &a->steps[a->n_steps++];
    memset(s, 0, sizeof *s);
    s->rec = *rec;
    s->pruned_saved = rec->pruned;
    s->in_db = true;
    return PD_OK;
}

enum pd_status pd_app_push_tag(struct pd_app *a, const struct pd_app_tag *t, struct pd_err *err)
{
    struct pd_app_tag *ntg = pd_grow_array(a->tags, &a->cap_tags, a->n_tags + 1, sizeof *ntg);
    if (!ntg) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (tags)");
    }
    a->tags = ntg;
    a->tags[a->n_tags++] = *t;
    a->dirty |= PD_DIRTY_STEPS | PD_DIRTY_INSPECT;
    return PD_OK;
}

static void count_step_tags(struct pd_app *a)
{
    for (size_t k = 0; k < a->n_steps; k++) {
        a->steps[k].n_tags = 0;
        for (size_t t = 0; t < a->n_tags; t++) {
            const struct pd_app_tag *g = &a->tags[t];
            if (!g->whole && g->pos_begin < a->steps[k].rec.pos_end &&
                g->pos_end > a->steps[k].rec.pos_begin) {
                a->steps[k].n_tags++;
            }
        }
    }
}

enum pd_status pd_app_finish_load(struct pd_app *a, struct pd_err *err)
{
    if (a->n_steps == 0 && a->n_toks > 0) {
        struct pd_steps_list l;
        pd_steps_list_init(&l);
        enum pd_status st = pd_steps_segment(a->toks, a->n_toks, NULL, &l, err);
        if (st == PD_OK && !steps_reserve(a, l.n)) {
            st = pd_err_set(err, PD_ENOMEM, "out of memory (steps)");
        }
        for (size_t k = 0; st == PD_OK && k < l.n; k++) {
            struct pd_app_step *s = &a->steps[a->n_steps++];
            memset(s, 0, sizeof *s);
            s->rec = l.items[k];
        }
        pd_steps_list_deinit(&l);
        if (st) {
            return st;
        }
    }
    for (size_t k = 0; k < a->n_steps; k++) {
        if (a->steps[k].rec.pos_end > (int64_t)a->n_toks) {
            return pd_err_set(err, PD_EFORMAT, "step %zu ends at %lld past the trace (%zu)",
                              k, (long long)a->steps[k].rec.pos_end, a->n_toks);
        }
    }
    if (a->n_toks > 0) {
        assign_tok_steps(a, 0);
    }
    for (size_t k = 0; k < a->n_steps; k++) {
        step_metrics(a, &a->steps[k]);
    }
    bool have_attn = a->n_layer > 0;
    float *stored = NULL;
    if (!have_attn && a->n_steps > 0) {
        stored = pd_malloc_array(a->n_steps, sizeof *stored);
        for (size_t k = 0; stored && k < a->n_steps; k++) {
            stored[k] = a->steps[k].rec.attn_received;
        }
    }
    recompute_importance(a);
    for (size_t k = 0; stored && k < a->n_steps; k++) {
        /* No attention blobs: keep what the database computed, if anything. */
        a->steps[k].recv = isfinite(stored[k]) ? stored[k] : NAN;
        a->steps[k].rec.attn_received = a->steps[k].recv;
    }
    free(stored);
    kv_sync(a);
    count_step_tags(a);
    pd_wrap_reset(&a->wrap, a->wrap.width);
    rewrap(a);
    a->dirty = PD_DIRTY_ALL;
    return PD_OK;
}

/* Drops tokens at positions >= pos (a branch rewinds the trace). */
static void truncate_to(struct pd_app *a, size_t pos)
{
    if (pos >= a->n_toks) {
        return;
    }
    for (size_t i = pos; i < a->n_toks; i++) {
        pd_token_rec_free(&a->toks[i]);
    }
    a->n_toks = pos;
    if (a->n_prompt > pos) {
        a->n_prompt = pos;
    }
    while (a->n_steps > 0 && a->steps[a->n_steps - 1].rec.pos_begin >= (int64_t)pos) {
        a->n_steps--;
    }
    /* Re-segment the kept tokens so the open step matches what the segmenter knows. */
    if (a->seg) {
        pd_steps_seg_close(&a->seg);
        struct pd_err e2;
        a->n_steps = 0;
        if (pd_steps_seg_open(NULL, &a->seg, &e2) == PD_OK) {
            a->seg_failed = false;
            size_t n = a->n_toks;
            a->n_toks = 0;
            for (size_t i = 0; i < n && !a->seg_failed; i++) {
                a->n_toks = i + 1;
                if (pd_steps_seg_feed(a->seg, &a->toks[i], &a->seg_out, &e2) ||
                    seg_apply(a, &e2)) {
                    a->seg_failed = true;
                }
            }
            a->n_toks = n;
            if (a->n_steps > 0 && a->steps[a->n_steps - 1].open) {
                a->steps[a->n_steps - 1].rec.pos_end = (int64_t)n;
            }
        } else {
            a->seg_failed = true;
        }
    } else if (a->n_steps > 0 && a->steps[a->n_steps - 1].rec.pos_end > (int64_t)pos) {
        a->steps[a->n_steps - 1].rec.pos_end = (int64_t)pos;
    }
    if (a->n_toks > 0) {
        assign_tok_steps(a, 0);
    }
    recompute_importance(a);
    size_t k = 0;
    for (size_t j = 0; j < a->n_kv; j++) {
        if (a->kv[j].at_pos <= (int64_t)pos && a->kv[j].slot_pos < (int64_t)pos) {
            a->kv[k++] = a->kv[j];
        }
    }
    a->n_kv = k;
    a->n_visible = a->n_toks;
    a->kv_map_visible = SIZE_MAX;
    kv_sync(a);
    if (a->cursor >= a->n_visible) {
        a->cursor = a->n_visible ? a->n_visible - 1 : 0;
    }
    pd_wrap_reset(&a->wrap, a->wrap.width);
    rewrap(a);
    a->n_matches = 0;
    a->dirty = PD_DIRTY_ALL;
}

/* ---- session events ---------------------------------------------------------------------- */

static void finish_segmentation(struct pd_app *a)
{
    if (!a->seg || a->seg_failed) {
        return;
    }
    struct pd_err e2;
    if (pd_steps_seg_finish(a->seg, &a->seg_out, &e2) || seg_apply(a, &e2)) {
        a->seg_failed = true;
        pd_app_msg(a, true, "step segmentation stopped: %s", e2.msg);
    }
}

/* Session event handlers, one per kind (text: the event's message, NUL-terminated). */
typedef enum pd_status (*event_fn)(struct pd_app *a, struct pd_event *ev, const char *text,
                                   struct pd_err *err);

static enum pd_status ev_token(struct pd_app *a, struct pd_event *ev, const char *text,
                               struct pd_err *err)
{
    (void)text;
    return pd_app_push_token_take(a, &ev->tok, err);
}

static enum pd_status ev_step(struct pd_app *a, struct pd_event *ev, const char *text,
                              struct pd_err *err)
{
    (void)a, (void)ev, (void)text, (void)err;
    return PD_OK; /* the app segments the stream itself (same rules) */
}

static enum pd_status ev_evict(struct pd_app *a, struct pd_event *ev, const char *text,
                               struct pd_err *err)
{
    (void)text;
    return pd_app_push_kv(a, &ev->kv, err);
}

static enum pd_status ev_mode(struct pd_app *a, struct pd_event *ev, const char *text,
                              struct pd_err *err)
{
    (void)ev, (void)err;
    enum pd_think_mode m;
    uint32_t budget = 0;
    if (pd_think_mode_parse(text, &m, &budget, NULL) == PD_OK) {
        a->mode = m;
        if (m == PD_MODE_SHORT && budget) {
            a->short_budget = budget;
        }
    }
    unsigned long long kb;
    if (sscanf(text, "kv budget %llu", &kb) == 1) {
        a->kv_budget = (int64_t)kb;
    }
    pd_app_msg(a, false, "%s", text);
    return PD_OK;
}

static enum pd_status ev_paused(struct pd_app *a, struct pd_event *ev, const char *text,
                                struct pd_err *err)
{
    (void)text, (void)err;
    a->paused = true;
    a->pause_pending = false;
    pd_app_msg(a, false, "paused at %lld tokens", (long long)ev->pos);
    return PD_OK;
}

static enum pd_status ev_resumed(struct pd_app *a, struct pd_event *ev, const char *text,
                                 struct pd_err *err)
{
    (void)ev, (void)text, (void)err;
    a->paused = false;
    a->pause_pending = false;
    pd_app_msg(a, false, "resumed");
    return PD_OK;
}

static enum pd_status ev_branched(struct pd_app *a, struct pd_event *ev, const char *text,
                                  struct pd_err *err)
{
    (void)err;
    if (ev->pos >= 0) {
        truncate_to(a, (size_t)ev->pos);
    }
    a->n_branches++;
    a->follow = true;
    pd_app_msg(a, false, "branched at %lld (%s)", (long long)ev->pos, text);
    return PD_OK;
}

static enum pd_status ev_pruned(struct pd_app *a, struct pd_event *ev, const char *text,
                                struct pd_err *err)
{
    (void)err;
    pd_app_msg(a, false, "pruned [%lld, %lld) from the model's %s", (long long)ev->pos,
               (long long)ev->pos_end, strcmp(text, "cache") == 0 ? "cache" : "sequence");
    return PD_OK;
}

static enum pd_status ev_divergence(struct pd_app *a, struct pd_event *ev, const char *text,
                                    struct pd_err *err)
{
    (void)text, (void)err;
    a->has_div = true;
    a->div_kl_bits = ev->kl_bits;
    a->div_top1 = ev->top1_agree;
    pd_app_msg(a, false, "shadow divergence: KL %.4f bits, top-1 %s", ev->kl_bits,
               ev->top1_agree ? "agrees" : "differs");
    return PD_OK;
}

static enum pd_status ev_finished(struct pd_app *a, struct pd_event *ev, const char *text,
                                  struct pd_err *err)
{
    (void)ev, (void)err;
    a->finished = true;
    a->paused = false;
    snprintf(a->finish_reason, sizeof a->finish_reason, "%s", text);
    finish_segmentation(a);
    recompute_importance(a);
    pd_app_msg(a, false, "generation finished (%s)", text);
    return PD_OK;
}

static enum pd_status ev_error(struct pd_app *a, struct pd_event *ev, const char *text,
                               struct pd_err *err)
{
    (void)ev, (void)err;
    a->finished = true;
    snprintf(a->error, sizeof a->error, "%s", text);
    snprintf(a->finish_reason, sizeof a->finish_reason, "error");
    finish_segmentation(a);
    pd_app_msg(a, true, "engine: %s", text);
    return PD_OK;
}

static const event_fn event_handlers[PD_EV_KIND_COUNT] = {
    [PD_EV_TOKEN] = ev_token,         [PD_EV_STEP] = ev_step,
    [PD_EV_EVICT] = ev_evict,         [PD_EV_MODE] = ev_mode,
    [PD_EV_PAUSED] = ev_paused,       [PD_EV_RESUMED] = ev_resumed,
    [PD_EV_BRANCHED] = ev_branched,   [PD_EV_PRUNED] = ev_pruned,
    [PD_EV_DIVERGENCE] = ev_divergence, [PD_EV_FINISHED] = ev_finished,
    [PD_EV_ERROR] = ev_error,
};
_Static_assert(sizeof event_handlers / sizeof event_handlers[0] == PD_EV_KIND_COUNT,
               "event table");

enum pd_status pd_app_on_event(struct pd_app *a, struct pd_event *ev, struct pd_err *err)
{
    if (ev->tok_per_s > 0) {
        a->tok_per_s = ev->tok_per_s;
    }
    if (ev->kv_cap > 0) {
        a->kv_used = ev->kv_used;
        a->kv_cap = ev->kv_cap;
    }
    char text[sizeof ev->text];
    memcpy(text, ev->text, sizeof text);
    text[sizeof text - 1] = '\0';
    a->dirty |= PD_DIRTY_STATUS | PD_DIRTY_KV;
    if ((unsigned)ev->kind >= PD_EV_KIND_COUNT || !event_handlers[ev->kind]) {
        return pd_err_set(err, PD_EFORMAT, "unknown session event %d", (int)ev->kind);
    }
    return event_handlers[ev->kind](a, ev, text, err);
}

/* ---- replay clock -------------------------------------------------------------------------- */

static void set_visible(struct pd_app *a, size_t n)
{
    if (n > a->n_toks) {
        n = a->n_toks;
    }
    if (n == a->n_visible) {
        return;
    }
    if (n < a->n_visible) {
        a->n_visible = n;
        pd_wrap_invalidate(&a->wrap, n);
        rewrap(a);
        if (a->cursor >= n) {
            a->cursor = n ? n - 1 : 0;
        }
        scroll_to_cursor(a);
        a->dirty = PD_DIRTY_ALL;
    } else {
        a->n_visible = n;
        after_visible_grew(a);
        a->dirty |= PD_DIRTY_INSPECT;
    }
    kv_sync(a);
    if (a->n_visible == a->n_toks && a->playing) {
        a->playing = false;
        pd_app_msg(a, false, "end of the session");
    }
    a->dirty |= PD_DIRTY_STATUS | PD_DIRTY_STEPS;
}

void pd_app_seek(struct pd_app *a, size_t n)
{
    set_visible(a, n);
}

void pd_app_tick(struct pd_app *a, double dt_s)
{
    if (a->kind != PD_APP_REPLAY || !a->playing || dt_s <= 0) {
        return;
    }
    a->play_acc += a->speed * dt_s;
    if (a->play_acc >= 1.0) {
        double whole = floor(a->play_acc);
        a->play_acc -= whole;
        size_t add = whole > (double)a->n_toks ? a->n_toks : (size_t)whole;
        set_visible(a, a->n_visible + add);
    }
}

/* ---- search ---------------------------------------------------------------------------------- */

static void jump_to_match(struct pd_app *a, size_t k)
{
    if (a->n_matches == 0) {
        return;
    }
    a->match_i = k % a->n_matches;
    a->follow = false;
    set_cursor(a, a->matches[a->match_i]);
    pd_app_msg(a, false, "/%s: match %zu of %zu", a->search, a->match_i + 1, a->n_matches);
}

void pd_app_search(struct pd_app *a, const char *query)
{
    snprintf(a->search, sizeof a->search, "%s", query);
    a->n_matches = 0;
    a->match_i = 0;
    a->dirty |= PD_DIRTY_TRACE;
    size_t qn = strlen(a->search);
    if (qn == 0) {
        pd_app_msg(a, false, "search cleared");
        return;
    }
    /* The visible text with each byte's token, searched once. */
    size_t total = 0;
    for (size_t i = 0; i < a->n_visible; i++) {
        total += a->toks[i].text_len;
    }
    char *text = malloc(total + 1);
    size_t *owner = pd_malloc_array(total + 1, sizeof *owner);
    if (!text || !owner) {
        free(text);
        free(owner);
        pd_app_msg(a, true, "out of memory (search)");
        return;
    }
    size_t o = 0;
    for (size_t i = 0; i < a->n_visible; i++) {
        for (size_t b = 0; b < a->toks[i].text_len; b++) {
            text[o] = (char)tolower((unsigned char)a->toks[i].text[b]);
            owner[o++] = i;
        }
    }
    char q[sizeof a->search];
    for (size_t b = 0; b <= qn; b++) {
        q[b] = (char)tolower((unsigned char)a->search[b]);
    }
    for (size_t p = 0; p + qn <= total; p++) {
        if (memcmp(text + p, q, qn) != 0) {
            continue;
        }
        size_t tok = owner[p];
        if (a->n_matches > 0 && a->matches[a->n_matches - 1] == tok) {
            continue;
        }
        size_t *nm = pd_grow_array(a->matches, &a->cap_matches, a->n_matches + 1, sizeof *nm);
        if (!nm) {
            break;
        }
        a->matches = nm;
        a->matches[a->n_matches++] = tok;
    }
    free(text);
    free(owner);
    if (a->n_matches == 0) {
        pd_app_msg(a, true, "/%s: not found", a->search);
        return;
    }
    size_t k = 0;
    while (k < a->n_matches && a->matches[k] < a->cursor) {
        k++;
    }
    jump_to_match(a, k);
}

/* ---- actions --------------------------------------------------------------------------------- */

static bool session_live(struct pd_app *a)
{
    if (a->finished) {
        pd_app_msg(a, true, "the generation has ended (%s)", a->finish_reason);
        return false;
    }
    return true;
}

static void act_pause(struct pd_app *a)
{
    if (a->kind == PD_APP_REPLAY) {
        if (!a->playing && a->n_visible == a->n_toks) {
            set_visible(a, 0);
        }
        a->playing = !a->playing;
        a->play_acc = 0;
        if (a->playing) {
            a->follow = true; /* the cursor rides the playhead */
        }
        pd_app_msg(a, false, a->playing ? "playing at %.0f tok/s" : "replay paused at %.0f tok/s",
                   a->speed);
        a->dirty |= PD_DIRTY_STATUS;
        return;
    }
    if (!session_live(a)) {
        return;
    }
    bool want_pause = !(a->paused || a->pause_pending);
    struct pd_cmd *c = fx_cmd(a, want_pause ? PD_CMD_PAUSE : PD_CMD_RESUME);
    if (c) {
        a->pause_pending = want_pause;
        if (!want_pause) {
            a->paused = false;
        }
        pd_app_msg(a, false, want_pause ? "pausing..." : "resuming...");
        a->dirty |= PD_DIRTY_STATUS;
    }
}

static void act_answer_now(struct pd_app *a)
{
    if (session_live(a) && fx_cmd(a, PD_CMD_ANSWER_NOW)) {
        pd_app_msg(a, false, "answer now: closing the thinking span");
    }
}

static void act_mode_cycle(struct pd_app *a)
{
    if (!session_live(a)) {
        return;
    }
    enum pd_think_mode next = (enum pd_think_mode)((a->mode + 1) % PD_MODE_COUNT);
    struct pd_cmd *c = fx_cmd(a, PD_CMD_SET_MODE);
    if (c) {
        c->mode = next;
        c->budget = next == PD_MODE_SHORT ? a->short_budget : 0;
        a->mode = next;
        a->dirty |= PD_DIRTY_STATUS;
    }
}

static void act_inject(struct pd_app *a)
{
    if (session_live(a)) {
        open_cmdline(a, ':', "inject ");
    }
}

static void act_branch(struct pd_app *a)
{
    if (!session_live(a) || a->n_visible == 0) {
        return;
    }
    struct pd_cmd *c = fx_cmd(a, PD_CMD_BRANCH);
    if (c) {
        c->pos = a->toks[a->cursor].pos + 1;
        pd_app_msg(a, false, "branching after position %lld", (long long)a->toks[a->cursor].pos);
    }
}

static struct pd_app_step *cursor_step(struct pd_app *a)
{
    int32_t s = pd_app_step_of(a, a->cursor);
    if (s < 0 || a->n_visible == 0) {
        pd_app_msg(a, true, "the cursor is not inside a reasoning step");
        return NULL;
    }
    return &a->steps[s];
}

static void act_prune(struct pd_app *a)
{
    struct pd_app_step *s = cursor_step(a);
    if (!s) {
        return;
    }
    if (s->open) {
        pd_app_msg(a, true, "step %d is still being written; prune it when it closes",
                   s->rec.index);
        return;
    }
    s->rec.pruned = !s->rec.pruned;
    pd_app_msg(a, false, "step %d %s", s->rec.index, s->rec.pruned ? "pruned" : "restored");
    a->dirty |= PD_DIRTY_TRACE | PD_DIRTY_STEPS | PD_DIRTY_STATUS | PD_DIRTY_INSPECT;
}

static void act_prune_continue(struct pd_app *a)
{
    if (!session_live(a)) {
        return;
    }
    struct pd_app_step *s = cursor_step(a);
    if (!s) {
        return;
    }
    if (s->open) {
        pd_app_msg(a, true, "step %d is still being written", s->rec.index);
        return;
    }
    struct pd_cmd *c = fx_cmd(a, PD_CMD_PRUNE);
    if (c) {
        c->pos = s->rec.pos_begin;
        c->pos_end = s->rec.pos_end;
        c->reencode = false;
        s->rec.pruned = true;
        pd_app_msg(a, false, "step %d pruned; dropping it from the model's cache", s->rec.index);
        a->dirty |= PD_DIRTY_TRACE | PD_DIRTY_STEPS | PD_DIRTY_STATUS;
    }
}

static void act_tag(struct pd_app *a)
{
    if (a->n_visible > 0) {
        open_cmdline(a, ':', "tag ");
    }
}

static void act_kv_budget(struct pd_app *a)
{
    if (session_live(a)) {
        open_cmdline(a, ':', "budget ");
    }
}

static void act_divergence(struct pd_app *a)
{
    if (!session_live(a)) {
        return;
    }
    if (!a->kv_shadow) {
        pd_app_msg(a, true, "divergence needs a KV policy in shadow mode (--kv SPEC,shadow)");
        return;
    }
    if (fx_cmd(a, PD_CMD_DIVERGENCE)) {
        pd_app_msg(a, false, "measuring shadow divergence...");
    }
}

static void act_search(struct pd_app *a)
{
    open_cmdline(a, '/', "");
}

static void act_search_next(struct pd_app *a)
{
    if (a->n_matches == 0) {
        pd_app_msg(a, true, a->search[0] ? "/%s: no matches" : "no search (press /)%s", a->search);
        return;
    }
    jump_to_match(a, a->match_i + 1);
}

static void act_search_prev(struct pd_app *a)
{
    if (a->n_matches == 0) {
        pd_app_msg(a, true, a->search[0] ? "/%s: no matches" : "no search (press /)%s", a->search);
        return;
    }
    jump_to_match(a, a->match_i + a->n_matches - 1);
}

static void move_to(struct pd_app *a, size_t i)
{
    a->follow = false;
    set_cursor(a, i);
}

static void act_step_prev(struct pd_app *a)
{
    /* To the start of the cursor's step, or of the step before when already there. */
    for (size_t k = a->n_steps; k-- > 0;) {
        int64_t b = a->steps[k].rec.pos_begin;
        if (b < (int64_t)a->cursor && b < (int64_t)a->n_visible) {
            move_to(a, (size_t)b);
            return;
        }
    }
    pd_app_msg(a, true, "no earlier step");
}

static void act_step_next(struct pd_app *a)
{
    for (size_t k = 0; k < a->n_steps; k++) {
        int64_t b = a->steps[k].rec.pos_begin;
        if (b > (int64_t)a->cursor && b < (int64_t)a->n_visible) {
            move_to(a, (size_t)b);
            return;
        }
    }
    pd_app_msg(a, true, "no later step");
}

static void act_left(struct pd_app *a)
{
    if (a->focus == PD_PANE_INSPECT) {
        return;
    }
    if (a->cursor > 0) {
        move_to(a, a->cursor - 1);
    }
}

static void act_right(struct pd_app *a)
{
    if (a->focus == PD_PANE_INSPECT) {
        return;
    }
    move_to(a, a->cursor + 1);
}

/* Column of the first cell of token i on its line, and that line. */
static int cursor_col(struct pd_app *a, size_t *line)
{
    struct pd_wrap_src src = pd_app_wrap_src(a);
    *line = pd_wrap_line_of(&a->wrap, &src, a->cursor);
    struct pd_wrap_iter it;
    struct pd_wrap_cell c;
    pd_wrap_iter_line(&a->wrap, &src, *line, &it);
    int col = 0;
    while (pd_wrap_iter_next(&it, &c)) {
        if (c.item >= a->cursor && !c.in_prefix) {
            return col;
        }
        col += c.width;
    }
    return col;
}

/* The token at (line, col) or the nearest on that line. */
static bool token_at(struct pd_app *a, size_t line, int col, size_t *out)
{
    struct pd_wrap_src src = pd_app_wrap_src(a);
    struct pd_wrap_iter it;
    struct pd_wrap_cell c;
    pd_wrap_iter_line(&a->wrap, &src, line, &it);
    int x = 0;
    bool any = false;
    while (pd_wrap_iter_next(&it, &c)) {
        /* Only tokens that start on this line: a line holding just the tail of a
         * multi-line token (a blank line after "\n\n") has no token of its own. */
        if (!c.in_prefix && pd_wrap_line_of(&a->wrap, &src, c.item) == line) {
            *out = c.item;
            any = true;
            if (x + c.width > col) {
                return true;
            }
        }
        x += c.width;
    }
    return any;
}

static void move_lines(struct pd_app *a, long delta)
{
    if (a->focus == PD_PANE_INSPECT) {
        int n = a->n_visible ? a->toks[a->cursor].n_top : 0;
        if (n == 0) {
            return;
        }
        int s = a->alt_sel < 0 ? (delta > 0 ? -1 : n) : a->alt_sel;
        s += delta > 0 ? 1 : -1;
        a->alt_sel = s < 0 ? 0 : s >= n ? n - 1 : s;
        a->dirty |= PD_DIRTY_INSPECT;
        return;
    }
    if (a->focus == PD_PANE_STEPS) {
        if (delta < 0) {
            act_step_prev(a);
        } else {
            act_step_next(a);
        }
        return;
    }
    if (a->wrap.n_lines == 0 || a->n_visible == 0) {
        return;
    }
    size_t line;
    int col = cursor_col(a, &line);
    long target = (long)line + delta;
    if (target < 0) {
        target = 0;
    }
    if ((size_t)target >= a->wrap.n_lines) {
        target = (long)a->wrap.n_lines - 1;
    }
    /* Skip lines with no token cells (marker-only lines). */
    size_t tok;
    long step = delta > 0 ? 1 : -1;
    while (target >= 0 && (size_t)target < a->wrap.n_lines) {
        if (token_at(a, (size_t)target, col, &tok)) {
            if (tok < a->n_visible) {
                move_to(a, tok);
            }
            return;
        }
        target += step;
    }
}

static void act_up(struct pd_app *a)
{
    move_lines(a, -1);
}

static void act_down(struct pd_app *a)
{
    move_lines(a, 1);
}

static void act_page_up(struct pd_app *a)
{
    move_lines(a, -(long)(a->trace_rows > 2 ? a->trace_rows - 1 : 1));
}

static void act_page_down(struct pd_app *a)
{
    move_lines(a, (long)(a->trace_rows > 2 ? a->trace_rows - 1 : 1));
}

static void act_home(struct pd_app *a)
{
    move_to(a, 0);
}

static void act_end(struct pd_app *a)
{
    a->follow = true;
    set_cursor(a, a->n_visible ? a->n_visible - 1 : 0);
    pd_app_msg(a, false, "following new tokens");
}

static void act_focus_next(struct pd_app *a)
{
    a->focus = (enum pd_pane)((a->focus + 1) % PD_PANE_COUNT);
    a->dirty = PD_DIRTY_ALL;
}

static void act_select(struct pd_app *a)
{
    if (a->focus != PD_PANE_INSPECT || a->alt_sel < 0 || a->n_visible == 0) {
        pd_app_msg(a, true, "select an alternative in the inspector first (Tab, then j/k)");
        return;
    }
    if (a->kind != PD_APP_LIVE || !session_live(a)) {
        if (a->kind != PD_APP_LIVE) {
            pd_app_msg(a, true, "steering needs a live model (this is a replay)");
        }
        return;
    }
    const struct pd_token_rec *t = &a->toks[a->cursor];
    if (a->alt_sel >= t->n_top || t->pos < 1) {
        return;
    }
    struct pd_cmd *c = fx_cmd(a, PD_CMD_BRANCH);
    if (c) {
        c->pos = t->pos;
        c->token = t->top[a->alt_sel].id;
        pd_app_msg(a, false, "steering: branch at %lld with alternative #%d", (long long)t->pos,
                   a->alt_sel + 1);
    }
}

static void act_play_step(struct pd_app *a)
{
    a->playing = false;
    set_visible(a, a->n_visible + 1);
    a->follow = true;
    set_cursor(a, a->n_visible ? a->n_visible - 1 : 0);
}

static void act_play_back(struct pd_app *a)
{
    a->playing = false;
    if (a->n_visible > 0) {
        set_visible(a, a->n_visible - 1);
    }
}

static void act_faster(struct pd_app *a)
{
    if (a->speed < 10000) {
        a->speed *= 2;
    }
    pd_app_msg(a, false, "replay speed %.1f tok/s", a->speed);
    a->dirty |= PD_DIRTY_STATUS;
}

static void act_slower(struct pd_app *a)
{
    if (a->speed > 0.25) {
        a->speed /= 2;
    }
    pd_app_msg(a, false, "replay speed %.1f tok/s", a->speed);
    a->dirty |= PD_DIRTY_STATUS;
}

static void act_save(struct pd_app *a)
{
    fx_push(a, PD_FX_SAVE);
}

static void act_command(struct pd_app *a)
{
    open_cmdline(a, ':', "");
}

static void act_help(struct pd_app *a)
{
    a->help = !a->help;
    a->help_top = 0;
    a->dirty = PD_DIRTY_ALL;
}

static void act_cancel(struct pd_app *a)
{
    if (a->help) {
        a->help = false;
        a->dirty = PD_DIRTY_ALL;
    }
    a->quit_armed = false;
    a->alt_sel = -1;
    a->msg[0] = '\0';
    a->dirty |= PD_DIRTY_CMDLINE | PD_DIRTY_INSPECT;
}

static void act_quit(struct pd_app *a)
{
    if (a->help) {
        act_help(a);
        return;
    }
    if (pd_app_unsaved(a) && !a->quit_armed) {
        a->quit_armed = true;
        pd_app_msg(a, true, "unsaved changes: q again to quit without saving, s to save");
        return;
    }
    fx_push(a, PD_FX_QUIT);
}

static void act_redraw(struct pd_app *a)
{
    a->dirty = PD_DIRTY_ALL;
}

enum { WHERE_LIVE = 1, WHERE_REPLAY = 2, WHERE_BOTH = 3 };

struct action_info {
    const char *name;
    void (*fn)(struct pd_app *a);
    unsigned where;
};

static const struct action_info actions[PD_ACT_COUNT] = {
    [PD_ACT_NONE] = {"none", NULL, WHERE_BOTH},
    [PD_ACT_PAUSE] = {"pause", act_pause, WHERE_BOTH},
    [PD_ACT_ANSWER_NOW] = {"answer-now", act_answer_now, WHERE_LIVE},
    [PD_ACT_MODE_CYCLE] = {"mode-cycle", act_mode_cycle, WHERE_LIVE},
    [PD_ACT_INJECT] = {"inject", act_inject, WHERE_LIVE},
    [PD_ACT_BRANCH] = {"branch", act_branch, WHERE_LIVE},
    [PD_ACT_PRUNE] = {"prune", act_prune, WHERE_BOTH},
    [PD_ACT_PRUNE_CONTINUE] = {"prune-continue", act_prune_continue, WHERE_LIVE},
    [PD_ACT_TAG] = {"tag", act_tag, WHERE_BOTH},
    [PD_ACT_KV_BUDGET] = {"kv-budget", act_kv_budget, WHERE_LIVE},
    [PD_ACT_DIVERGENCE] = {"divergence", act_divergence, WHERE_LIVE},
    [PD_ACT_SEARCH] = {"search", act_search, WHERE_BOTH},
    [PD_ACT_SEARCH_NEXT] = {"search-next", act_search_next, WHERE_BOTH},
    [PD_ACT_SEARCH_PREV] = {"search-prev", act_search_prev, WHERE_BOTH},
    [PD_ACT_STEP_PREV] = {"step-prev", act_step_prev, WHERE_BOTH},
    [PD_ACT_STEP_NEXT] = {"step-next", act_step_next, WHERE_BOTH},
    [PD_ACT_LEFT] = {"left", act_left, WHERE_BOTH},
    [PD_ACT_RIGHT] = {"right", act_right, WHERE_BOTH},
    [PD_ACT_UP] = {"up", act_up, WHERE_BOTH},
    [PD_ACT_DOWN] = {"down", act_down, WHERE_BOTH},
    [PD_ACT_PAGE_UP] = {"page-up", act_page_up, WHERE_BOTH},
    [PD_ACT_PAGE_DOWN] = {"page-down", act_page_down, WHERE_BOTH},
    [PD_ACT_HOME] = {"home", act_home, WHERE_BOTH},
    [PD_ACT_END] = {"end", act_end, WHERE_BOTH},
    [PD_ACT_FOCUS_NEXT] = {"focus-next", act_focus_next, WHERE_BOTH},
    [PD_ACT_SELECT] = {"select", act_select, WHERE_BOTH},
    [PD_ACT_PLAY_STEP] = {"play-step", act_play_step, WHERE_REPLAY},
    [PD_ACT_PLAY_BACK] = {"play-back", act_play_back, WHERE_REPLAY},
    [PD_ACT_FASTER] = {"faster", act_faster, WHERE_REPLAY},
    [PD_ACT_SLOWER] = {"slower", act_slower, WHERE_REPLAY},
    [PD_ACT_SAVE] = {"save", act_save, WHERE_BOTH},
    [PD_ACT_COMMAND] = {"command", act_command, WHERE_BOTH},
    [PD_ACT_HELP] = {"help", act_help, WHERE_BOTH},
    [PD_ACT_CANCEL] = {"cancel", act_cancel, WHERE_BOTH},
    [PD_ACT_QUIT] = {"quit", act_quit, WHERE_BOTH},
    [PD_ACT_REDRAW] = {"redraw", act_redraw, WHERE_BOTH},
};
_Static_assert(sizeof actions / sizeof actions[0] == PD_ACT_COUNT, "action table");

const char *pd_action_name(enum pd_action act)
{
    return (unsigned)act < PD_ACT_COUNT ? actions[act].name : NULL;
}

bool pd_action_allowed(enum pd_action act, enum pd_app_kind kind)
{
    if ((unsigned)act >= PD_ACT_COUNT) {
        return false;
    }
    return (actions[act].where & (kind == PD_APP_LIVE ? WHERE_LIVE : WHERE_REPLAY)) != 0;
}

void pd_app_do(struct pd_app *a, enum pd_action act)
{
    if ((unsigned)act >= PD_ACT_COUNT || !actions[act].fn) {
        return;
    }
    if (act != PD_ACT_QUIT && act != PD_ACT_CANCEL) {
        a->quit_armed = false;
    }
    if (a->help && act != PD_ACT_HELP && act != PD_ACT_QUIT && act != PD_ACT_CANCEL &&
        act != PD_ACT_REDRAW) {
        /* In the help overlay, movement keys scroll it; everything else closes it. */
        if (act == PD_ACT_DOWN || act == PD_ACT_PAGE_DOWN) {
            a->help_top += act == PD_ACT_DOWN ? 1 : 10;
            a->dirty |= PD_DIRTY_HELP;
            return;
        }
        if (act == PD_ACT_UP || act == PD_ACT_PAGE_UP) {
            a->help_top -= act == PD_ACT_UP ? 1 : 10;
            if (a->help_top < 0) {
                a->help_top = 0;
            }
            a->dirty |= PD_DIRTY_HELP;
            return;
        }
        a->help = false;
        a->dirty = PD_DIRTY_ALL;
    }
    if (!pd_action_allowed(act, a->kind)) {
        pd_app_msg(a, true, "%s: %s", actions[act].name,
                   a->kind == PD_APP_REPLAY ? "needs a live model (this is a replay)"
                                            : "only in replay");
        return;
    }
    actions[act].fn(a);
}

/* ---- command line -------------------------------------------------------------------------- */

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    while (*end == ' ') {
        end++;
    }
    if (errno || end == s || *end || v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

static void cmd_inject(struct pd_app *a, const char *arg)
{
    if (a->kind != PD_APP_LIVE || !session_live(a)) {
        if (a->kind != PD_APP_LIVE) {
            pd_app_msg(a, true, "inject: needs a live model");
        }
        return;
    }
    if (!*arg) {
        pd_app_msg(a, true, "inject: nothing to inject (usage: inject TEXT)");
        return;
    }
    struct pd_cmd *c = fx_cmd(a, PD_CMD_INJECT);
    if (c) {
        /* \n, \t and \\ are unescaped so a line can inject paragraph breaks. */
        size_t o = 0;
        for (const char *p = arg; *p && o + 1 < sizeof c->text; p++) {
            if (p[0] == '\\' && (p[1] == 'n' || p[1] == 't' || p[1] == '\\')) {
                c->text[o++] = p[1] == 'n' ? '\n' : p[1] == 't' ? '\t' : '\\';
                p++;
            } else {
                c->text[o++] = *p;
            }
        }
        c->text[o] = '\0';
        pd_app_msg(a, false, "injecting %zu bytes", o);
    }
}

static bool tag_valid(const char *t)
{
    if (!*t) {
        return false;
    }
    for (const unsigned char *p = (const unsigned char *)t; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == ',') {
            return false;
        }
    }
    return true;
}

static void cmd_tag(struct pd_app *a, const char *arg)
{
    char name[64];
    size_t n = strcspn(arg, " ");
    if (n == 0 || n >= sizeof name) {
        pd_app_msg(a, true, "tag: usage: tag NAME [NOTE] (name up to 63 bytes)");
        return;
    }
    memcpy(name, arg, n);
    name[n] = '\0';
    if (!tag_valid(name)) {
        pd_app_msg(a, true, "tag: '%s' has a comma or a control character", name);
        return;
    }
    const char *note = arg + n;
    while (*note == ' ') {
        note++;
    }
    if (a->n_visible == 0) {
        pd_app_msg(a, true, "tag: nothing to tag yet");
        return;
    }
    struct pd_app_tag t;
    memset(&t, 0, sizeof t);
    int32_t s = pd_app_step_of(a, a->cursor);
    if (s >= 0) {
        t.pos_begin = a->steps[s].rec.pos_begin;
        t.pos_end = a->steps[s].open ? (int64_t)a->n_toks : a->steps[s].rec.pos_end;
    } else {
        t.pos_begin = a->toks[a->cursor].pos;
        t.pos_end = t.pos_begin + 1;
    }
    snprintf(t.tag, sizeof t.tag, "%s", name);
    snprintf(t.note, sizeof t.note, "%s", note);
    struct pd_err e2;
    if (pd_app_push_tag(a, &t, &e2)) {
        pd_app_msg(a, true, "tag: %s", e2.msg);
        return;
    }
    count_step_tags(a);
    if (s >= 0) {
        pd_app_msg(a, false, "tagged step %d '%s'", s, name);
    } else {
        pd_app_msg(a, false, "tagged token %lld '%s'", (long long)t.pos_begin, name);
    }
}

static void cmd_budget(struct pd_app *a, const char *arg)
{
    int64_t v;
    if (a->kind != PD_APP_LIVE) {
        pd_app_msg(a, true, "budget: needs a live model");
        return;
    }
    if (!parse_i64(arg, 1, UINT32_MAX, &v)) {
        pd_app_msg(a, true, "budget: expected a slot count >= 1, got '%s'", arg);
        return;
    }
    if (strcmp(a->kv_policy, "full") == 0) {
        pd_app_msg(a, true, "budget: no KV policy (start with --kv, e.g. h2o:64)");
        return;
    }
    struct pd_cmd *c = session_live(a) ? fx_cmd(a, PD_CMD_SET_BUDGET) : NULL;
    if (c) {
        c->budget = (uint32_t)v;
    }
}

/* In replay: runs the policy after the fact over the saved attention summaries and shows
 * its decisions as shadow evictions in place of the recorded ones (analysis/kvsim.h). */
static void simulate_policy(struct pd_app *a, const char *spec)
{
    struct pd_kv_event_rec *ev = NULL;
    size_t n_ev = 0;
    struct pd_err e2;
    int32_t n_layer = a->n_layer > 0 ? a->n_layer : 1;
    if (pd_kvsim_run(spec, a->toks, a->n_toks, n_layer, &ev, &n_ev, &e2)) {
        pd_app_msg(a, true, "policy: %s", e2.msg);
        return;
    }
    free(a->kv);
    a->kv = ev;
    a->n_kv = a->cap_kv = n_ev;
    a->kv_map_applied = a->n_kv + 1; /* forces kv_sync to rebuild the map */
    if (pd_app_set_policy(a, spec, &e2) == PD_OK) {
        a->kv_shadow = true;
    }
    kv_sync(a);
    a->dirty |= PD_DIRTY_KV | PD_DIRTY_STATUS;
    pd_app_msg(a, false, "policy %s simulated over the saved attention summaries: %zu evictions",
               spec, n_ev);
}

/* :policy SPEC - live: replace the KV policy (the engine side builds it); replay:
 * simulate it over the saved summaries. */
static void cmd_policy(struct pd_app *a, const char *arg)
{
    struct pd_policy_spec sp;
    struct pd_err e2;
    if (pd_policy_parse(arg, &sp, &e2)) {
        pd_app_msg(a, true, "policy: %s", e2.msg);
        return;
    }
    if (a->kind != PD_APP_LIVE || a->finished) {
        simulate_policy(a, arg); /* a finished live run is a trace like a replay */
        return;
    }
    struct pd_cmd *c = fx_cmd(a, PD_CMD_SET_POLICY);
    if (c) {
        snprintf(c->text, sizeof c->text, "%s", arg);
    }
}

static void cmd_mode(struct pd_app *a, const char *arg)
{
    enum pd_think_mode m;
    uint32_t budget = 0;
    struct pd_err e2;
    if (a->kind != PD_APP_LIVE) {
        pd_app_msg(a, true, "mode: needs a live model");
        return;
    }
    if (pd_think_mode_parse(arg, &m, &budget, &e2)) {
        pd_app_msg(a, true, "mode: %s", e2.msg);
        return;
    }
    struct pd_cmd *c = session_live(a) ? fx_cmd(a, PD_CMD_SET_MODE) : NULL;
    if (c) {
        c->mode = m;
        if (m == PD_MODE_SHORT) {
            if (budget) {
                a->short_budget = budget;
            }
            budget = a->short_budget;
        }
        c->budget = budget;
        a->mode = m;
        a->dirty |= PD_DIRTY_STATUS;
    }
}

static void cmd_goto(struct pd_app *a, const char *arg)
{
    int64_t v;
    if (a->n_visible == 0 || !parse_i64(arg, 0, (int64_t)a->n_visible - 1, &v)) {
        pd_app_msg(a, true, "goto: expected a position in [0, %zu)", a->n_visible);
        return;
    }
    move_to(a, (size_t)v);
}

static void cmd_seek(struct pd_app *a, const char *arg)
{
    int64_t v;
    if (a->kind != PD_APP_REPLAY) {
        pd_app_msg(a, true, "seek: only in replay");
        return;
    }
    if (!parse_i64(arg, 0, (int64_t)a->n_toks, &v)) {
        pd_app_msg(a, true, "seek: expected a token count in [0, %zu]", a->n_toks);
        return;
    }
    set_visible(a, (size_t)v);
    pd_app_msg(a, false, "at %zu of %zu tokens", a->n_visible, a->n_toks);
}

static void cmd_speed(struct pd_app *a, const char *arg)
{
    char *end;
    double v = strtod(arg, &end);
    if (a->kind != PD_APP_REPLAY) {
        pd_app_msg(a, true, "speed: only in replay");
        return;
    }
    if (end == arg || *end || !(v >= 0.25 && v <= 10000)) {
        pd_app_msg(a, true, "speed: expected tokens per second in [0.25, 10000], got '%s'", arg);
        return;
    }
    a->speed = v;
    a->dirty |= PD_DIRTY_STATUS;
    pd_app_msg(a, false, "replay speed %.1f tok/s", v);
}

static void cmd_save(struct pd_app *a, const char *arg)
{
    (void)arg;
    act_save(a);
}

static void cmd_quit(struct pd_app *a, const char *arg)
{
    (void)arg;
    act_quit(a);
}

static void cmd_quit_force(struct pd_app *a, const char *arg)
{
    (void)arg;
    fx_push(a, PD_FX_QUIT);
}

static void cmd_wq(struct pd_app *a, const char *arg)
{
    (void)arg;
    act_save(a);
    fx_push(a, PD_FX_QUIT);
}

static void cmd_prune(struct pd_app *a, const char *arg)
{
    (void)arg;
    act_prune(a);
}

static void cmd_branch(struct pd_app *a, const char *arg)
{
    (void)arg;
    if (a->kind == PD_APP_LIVE) {
        act_branch(a);
    } else {
        pd_app_msg(a, true, "branch: needs a live model");
    }
}

static void cmd_divergence(struct pd_app *a, const char *arg)
{
    (void)arg;
    if (a->kind == PD_APP_LIVE) {
        act_divergence(a);
    } else {
        pd_app_msg(a, true, "divergence: needs a live model");
    }
}

static void cmd_stats(struct pd_app *a, const char *arg)
{
    (void)arg;
    const struct pd_app_stats *s = &a->stats;
    pd_app_msg(a, false,
               "frames %llu, draw %.2f ms mean / %.2f max; keys %llu, key->frame %.2f ms mean "
               "/ %.2f max",
               (unsigned long long)s->frames, s->frames ? s->draw_ms_sum / (double)s->frames : 0,
               s->draw_ms_max, (unsigned long long)s->keys,
               s->key_frames ? s->key_lat_ms_sum / (double)s->key_frames : 0, s->key_lat_ms_max);
}

static void cmd_help(struct pd_app *a, const char *arg)
{
    (void)arg;
    if (!a->help) {
        act_help(a);
    }
}

struct command_info {
    const char *name;
    void (*fn)(struct pd_app *a, const char *arg);
};

static const struct command_info commands[] = {
    {"inject", cmd_inject},     {"tag", cmd_tag},         {"budget", cmd_budget},
    {"policy", cmd_policy},
    {"mode", cmd_mode},         {"goto", cmd_goto},       {"seek", cmd_seek},
    {"speed", cmd_speed},       {"save", cmd_save},       {"w", cmd_save},
    {"quit", cmd_quit},         {"q", cmd_quit},          {"q!", cmd_quit_force},
    {"wq", cmd_wq},             {"prune", cmd_prune},     {"branch", cmd_branch},
    {"divergence", cmd_divergence}, {"stats", cmd_stats}, {"help", cmd_help},
    {NULL, NULL},
};

void pd_app_command(struct pd_app *a, const char *line)
{
    while (*line == ' ' || *line == ':') {
        line++;
    }
    if (!*line) {
        return;
    }
    size_t n = strcspn(line, " ");
    const char *arg = line + n;
    while (*arg == ' ') {
        arg++;
    }
    for (const struct command_info *c = commands; c->name; c++) {
        if (strlen(c->name) == n && strncmp(line, c->name, n) == 0) {
            c->fn(a, arg);
            return;
        }
    }
    pd_app_msg(a, true, "unknown command '%.*s' (? for help)", (int)(n > 40 ? 40 : n), line);
}

static const char *const command_names[] = {
    "inject", "tag", "budget", "policy", "mode", "goto", "seek", "speed", "save", "quit", "q!",
    "wq", "prune", "branch", "divergence", "stats", "help", NULL,
};

const char *const *pd_app_command_names(void)
{
    return command_names;
}

void pd_app_mark_saved(struct pd_app *a)
{
    for (size_t i = 0; i < a->n_steps; i++) {
        a->steps[i].pruned_saved = a->steps[i].rec.pruned;
        if (!a->steps[i].open) {
            a->steps[i].in_db = true;
        }
    }
    for (size_t i = 0; i < a->n_tags; i++) {
        a->tags[i].saved = true;
    }
    a->quit_armed = false;
    a->dirty |= PD_DIRTY_STATUS | PD_DIRTY_STEPS;
}
