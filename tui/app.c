/* app.c - the workbench's view model: tokens, steps, tags, KV events, view state, the
 * replay clock and search (DESIGN in app.h). Its handlers live beside it: session events
 * in app_events.c, key actions in app_actions.c, `:` commands in app_commands.c; what
 * they share is in app_internal.h. */
#include "app.h"
#include "app_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_blob.h"
#include "mem.h"
#include "policies.h"
#include "metrics.h"
#include "kvsim.h"

static const char *const pane_names[PD_PANE_COUNT] = {"trace", "steps", "inspector", "kv"};
_Static_assert(sizeof pane_names / sizeof pane_names[0] == PD_PANE_COUNT, "pane table");

const char *pd_pane_name(enum pd_pane p)
{
    return (unsigned)p < PD_PANE_COUNT ? pane_names[p] : NULL;
}


/* ---- messages and effects ------------------------------------------------------------ */

void pd_app_msg(struct pd_app *a, bool error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->msg, sizeof a->msg, fmt, ap);
    va_end(ap);
    a->msg_error = error;
    a->msg_at = a->clock;
    a->dirty |= PD_DIRTY_CMDLINE;
}

struct pd_app_fx *pd_app_fx_push(struct pd_app *a, enum pd_fx_kind kind)
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

struct pd_cmd *pd_app_fx_cmd(struct pd_app *a, enum pd_cmd_kind kind)
{
    struct pd_app_fx *f = pd_app_fx_push(a, PD_FX_SESSION);
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

void pd_app_open_cmdline(struct pd_app *a, char kind, const char *init)
{
    struct pd_app_fx *f = pd_app_fx_push(a, PD_FX_CMDLINE);
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
    a->sampling = pd_sampler_default_params();
    a->colour_layer = -1;
    a->colour_head = -1;
    a->heads_pos = -1;
    a->tok_recv_for = SIZE_MAX;
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
    free(a->drops);
    free(a->recv_acc);
    free(a->tok_recv);
    free(a->tree);
    free(a->diff_text[0]);
    free(a->diff_text[1]);
    free(a->recv_recs);
    free(a->matches);
    pd_attn_rows_free(a->heads);
    free(a->head_w);
    free(a->question);
    free(a->system);
    free(a->rerun_question);
    free(a->rerun_system);
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

void pd_app_new_session(struct pd_app *a)
{
    for (size_t k = 0; k < a->n_steps; k++) {
        a->steps[k].in_db = false;
        a->steps[k].pruned_saved = false;
        a->steps[k].rec.pruned = false;
    }
    a->n_tags = 0;
    pd_app_count_step_tags(a);
    a->quit_armed = false;
    a->dirty |= PD_DIRTY_TRACE | PD_DIRTY_STEPS | PD_DIRTY_STATUS;
}

void pd_app_unsaved_counts(const struct pd_app *a, size_t *prunes, size_t *tags,
                           size_t *prefs)
{
    *prunes = *tags = 0;
    for (size_t i = 0; i < a->n_steps; i++) {
        *prunes += a->steps[i].rec.pruned != a->steps[i].pruned_saved;
    }
    for (size_t i = 0; i < a->n_tags; i++) {
        *tags += !a->tags[i].saved;
    }
    *prefs = a->pref_over && !a->pref_saved;
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
    if (a->pref_over && !a->pref_saved) {
        return true;
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

void pd_app_set_cursor(struct pd_app *a, size_t i)
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
    pd_app_heads_want(a);
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
    if (a->cap_steps > a->cap_recv) {
        double *acc = pd_realloc_array(a->recv_acc, a->cap_steps, sizeof *acc);
        if (acc) {
            a->recv_acc = acc;
        }
        struct pd_step_rec *r = pd_realloc_array(a->recv_recs, a->cap_steps, sizeof *r);
        if (r) {
            a->recv_recs = r;
        }
        if (!acc || !r) {
            return false;
        }
        a->cap_recv = a->cap_steps;
    }
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
/* Importance (analysis/metrics.h, attn_received): token i of step k credits steps 0..k-1
 * through the one definition pd_metrics_credit holds; tokens outside steps credit none. */
static void recv_publish(struct pd_app *a)
{
    for (size_t k = 0; k < a->n_steps; k++) {
        struct pd_app_step *s = &a->steps[k];
        s->recv = (int32_t)k < a->recv_last ? (float)a->recv_acc[k] : NAN;
        s->rec.attn_received = s->recv;
    }
}

static bool attn_attribute(struct pd_app *a, size_t i)
{
    int32_t k = a->tok_step[i];
    const struct pd_token_rec *t = &a->toks[i];
    if (k < 0 || (size_t)k >= a->cap_recv || !t->attn) {
        return false;
    }
    for (int32_t j = 0; j <= k; j++) {
        a->recv_recs[j] = a->steps[j].rec;
    }
    bool had = pd_metrics_credit(t->attn, t->attn_len, a->recv_recs, (size_t)k, a->recv_acc);
    if (had && k > a->recv_last) {
        a->recv_last = k;
    }
    return had;
}

void pd_app_recompute_importance(struct pd_app *a)
{
    a->recv_gen++;
    a->recv_last = -1;
    for (size_t k = 0; k < a->n_steps; k++) {
        a->recv_acc[k] = 0.0;
    }
    for (size_t i = 0; i < a->n_toks; i++) {
        attn_attribute(a, i);
    }
    recv_publish(a);
}

/* Applies the segmenter's output after token `tok` was fed. */
enum pd_status pd_app_seg_apply(struct pd_app *a, struct pd_err *err)
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
        pd_app_recompute_importance(a); /* steps moved: credit again from scratch */
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
        uint64_t recv_gen = a->recv_gen;
        if (a->seg && !a->seg_failed) {
            struct pd_err e2;
            if (pd_steps_seg_feed(a->seg, &a->toks[i], &a->seg_out, &e2) ||
                pd_app_seg_apply(a, &e2)) {
                a->seg_failed = true;
                pd_app_msg(a, true, "step segmentation stopped: %s", e2.msg);
            }
        }
        if (a->recv_gen == recv_gen && attn_attribute(a, i)) { /* else recomputed with it */
            recv_publish(a);
        }
        a->n_visible = a->n_toks;
        pd_app_kv_sync(a);
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
    pd_app_kv_sync(a);
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

void pd_app_kv_sync(struct pd_app *a)
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
    for (size_t i = 0; i < a->n_drops; i++) {
        const struct pd_app_drop *d = &a->drops[i];
        if (pos >= d->begin && pos < d->end && d->at_pos <= (int64_t)a->n_visible) {
            return PD_KV_CELL_PRUNED;
        }
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

enum pd_status pd_app_set_policy_budget(struct pd_app *a, int64_t slots, struct pd_err *err)
{
    struct pd_policy_spec sp;
    enum pd_status st = pd_policy_parse(a->kv_policy, &sp, err);
    if (st) {
        return st;
    }
    sp.has_budget = true;
    sp.budget.is_ratio = false;
    sp.budget.slots = slots;
    char text[sizeof a->kv_policy];
    st = pd_policy_format(&sp, text, sizeof text, err);
    return st ? st : pd_app_set_policy(a, text, err);
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

void pd_app_count_step_tags(struct pd_app *a)
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
    pd_app_recompute_importance(a);
    for (size_t k = 0; stored && k < a->n_steps; k++) {
        /* No attention blobs: keep what the database computed, if anything. */
        a->steps[k].recv = isfinite(stored[k]) ? stored[k] : NAN;
        a->steps[k].rec.attn_received = a->steps[k].recv;
    }
    free(stored);
    pd_app_kv_sync(a);
    pd_app_count_step_tags(a);
    pd_wrap_reset(&a->wrap, a->wrap.width);
    rewrap(a);
    a->dirty = PD_DIRTY_ALL;
    return PD_OK;
}

/* Rebuilds the live segmenter over the tokens held, so its open step matches them (after
 * a branch rewound the trace, or a continue reopened a finished one). Steps that begin
 * where they began before keep their prune state, database state and text. */
static void resegment(struct pd_app *a)
{
    if (!a->seg) {
        return;
    }
    size_t n_old = a->n_steps;
    struct pd_app_step *old = n_old ? pd_malloc_array(n_old, sizeof *old) : NULL;
    if (old) {
        memcpy(old, a->steps, n_old * sizeof *old);
    }
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
                pd_app_seg_apply(a, &e2)) {
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
    for (size_t k = 0, j = 0; old && k < a->n_steps; k++) {
        while (j < n_old && old[j].rec.pos_begin < a->steps[k].rec.pos_begin) {
            j++;
        }
        if (j < n_old && old[j].rec.pos_begin == a->steps[k].rec.pos_begin) {
            a->steps[k].rec.pruned = old[j].rec.pruned;
            a->steps[k].pruned_saved = old[j].pruned_saved;
            a->steps[k].in_db = old[j].in_db && old[j].rec.pos_end == a->steps[k].rec.pos_end;
        }
    }
    free(old);
}

void pd_app_reopen(struct pd_app *a)
{
    a->finished = false;
    a->finish_reason[0] = '\0';
    a->paused = false;
    resegment(a);
    if (a->n_toks > 0) {
        assign_tok_steps(a, 0);
    }
    pd_app_recompute_importance(a);
    a->follow = true;
    a->dirty = PD_DIRTY_ALL;
}

/* Drops tokens at positions >= pos (a branch rewinds the trace). */
void pd_app_truncate_to(struct pd_app *a, size_t pos)
{
    if (pos >= a->n_toks) {
        return;
    }
    if (a->heads && a->heads_pos >= (int64_t)pos) { /* another token will hold that position */
        pd_attn_rows_free(a->heads);
        a->heads = NULL;
        a->heads_pos = -1;
        a->heads_gen++;
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
    if (a->seg) {
        resegment(a);
    } else if (a->n_steps > 0 && a->steps[a->n_steps - 1].rec.pos_end > (int64_t)pos) {
        a->steps[a->n_steps - 1].rec.pos_end = (int64_t)pos;
    }
    if (a->n_toks > 0) {
        assign_tok_steps(a, 0);
    }
    pd_app_recompute_importance(a);
    size_t k = 0;
    for (size_t j = 0; j < a->n_kv; j++) {
        if (a->kv[j].at_pos <= (int64_t)pos && a->kv[j].slot_pos < (int64_t)pos) {
            a->kv[k++] = a->kv[j];
        }
    }
    a->n_kv = k;
    k = 0;
    for (size_t j = 0; j < a->n_drops; j++) {
        /* a span dropped before the fork stays dropped in the branch's cache */
        struct pd_app_drop d = a->drops[j];
        if (d.begin < (int64_t)pos) {
            d.end = d.end < (int64_t)pos ? d.end : (int64_t)pos;
            d.at_pos = d.at_pos < (int64_t)pos ? d.at_pos : (int64_t)pos;
            a->drops[k++] = d;
        }
    }
    a->n_drops = k;
    a->tok_recv_for = SIZE_MAX;
    a->n_visible = a->n_toks;
    a->kv_map_visible = SIZE_MAX;
    pd_app_kv_sync(a);
    if (a->cursor >= a->n_visible) {
        a->cursor = a->n_visible ? a->n_visible - 1 : 0;
    }
    pd_wrap_reset(&a->wrap, a->wrap.width);
    rewrap(a);
    a->n_matches = 0;
    a->dirty = PD_DIRTY_ALL;
}

/* ---- replay clock -------------------------------------------------------------------------- */

void pd_app_set_visible(struct pd_app *a, size_t n)
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
    pd_app_kv_sync(a);
    if (a->n_visible == a->n_toks && a->playing) {
        a->playing = false;
        pd_app_msg(a, false, "end of the session");
    }
    a->dirty |= PD_DIRTY_STATUS | PD_DIRTY_STEPS;
}

void pd_app_seek(struct pd_app *a, size_t n)
{
    pd_app_set_visible(a, n);
}

#define MODE_SETTLE_S 0.6 /* m presses closer than this count as one choice */

void pd_app_tick(struct pd_app *a, double dt_s)
{
    if (dt_s > 0) {
        a->clock += dt_s;
    }
    if (a->msg[0] && !a->msg_error && a->clock - a->msg_at >= MSG_TTL_S) {
        a->msg[0] = '\0';
        a->dirty |= PD_DIRTY_CMDLINE;
    }
    if (a->kind == PD_APP_LIVE && a->mode_pending && !a->paused && !a->pause_pending &&
        !a->finished && a->clock - a->mode_chosen_at >= MODE_SETTLE_S) {
        pd_app_send_mode(a, false);
    }
    if (a->kind != PD_APP_REPLAY || !a->playing || dt_s <= 0) {
        return;
    }
    a->play_acc += a->speed * dt_s;
    if (a->play_acc >= 1.0) {
        double whole = floor(a->play_acc);
        a->play_acc -= whole;
        size_t add = whole > (double)a->n_toks ? a->n_toks : (size_t)whole;
        pd_app_set_visible(a, a->n_visible + add);
    }
}

/* ---- search ---------------------------------------------------------------------------------- */

void pd_app_jump_to_match(struct pd_app *a, size_t k)
{
    if (a->n_matches == 0) {
        return;
    }
    a->match_i = k % a->n_matches;
    a->follow = false;
    pd_app_set_cursor(a, a->matches[a->match_i]);
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
    pd_app_jump_to_match(a, k);
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
    a->pref_saved = true;
    a->quit_armed = false;
    a->dirty |= PD_DIRTY_STATUS | PD_DIRTY_STEPS;
}

/* ---- branch tree and diff overlays ---------------------------------------------------- */

enum pd_status pd_app_set_question(struct pd_app *a, const char *question, const char *system,
                                   struct pd_err *err)
{
    char *q = question ? strdup(question) : NULL;
    char *sy = system ? strdup(system) : NULL;
    if ((question && !q) || (system && !sy)) {
        free(q);
        free(sy);
        return pd_err_set(err, PD_ENOMEM, "out of memory (the question)");
    }
    pd_attn_rows_free(a->heads);
    free(a->head_w);
    free(a->question);
    free(a->system);
    a->question = q;
    a->system = sy;
    return PD_OK;
}

void pd_app_set_tree(struct pd_app *a, struct pd_app_branch *tree, size_t n)
{
    free(a->tree);
    a->tree = tree;
    a->n_tree = n;
    a->tree_sel = 0;
    for (size_t i = 0; i < n; i++) {
        if (tree[i].id == a->session_id) {
            a->tree_sel = i;
        }
    }
    a->help = true;
    a->overlay = PD_OVERLAY_BRANCHES;
    a->help_top = 0;
    a->dirty = PD_DIRTY_ALL | PD_DIRTY_LAYOUT;
}

void pd_app_set_diff(struct pd_app *a, int64_t parent, int64_t branch, int64_t fork,
                     char *parent_text, char *branch_text)
{
    free(a->diff_text[0]);
    free(a->diff_text[1]);
    a->diff_text[0] = parent_text;
    a->diff_text[1] = branch_text;
    a->diff_id[0] = parent;
    a->diff_id[1] = branch;
    a->diff_fork = fork;
    a->help = true;
    a->overlay = PD_OVERLAY_DIFF;
    a->help_top = 0;
    a->dirty = PD_DIRTY_ALL | PD_DIRTY_LAYOUT;
}

