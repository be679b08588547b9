/* app_events.c - the workbench's handlers for live session events (pd_app_on_event). */
#include "app.h"
#include "app_internal.h"

#include <stdio.h>
#include <string.h>

/* ---- session events ---------------------------------------------------------------------- */

static void finish_segmentation(struct pd_app *a)
{
    if (!a->seg || a->seg_failed) {
        return;
    }
    struct pd_err e2;
    if (pd_steps_seg_finish(a->seg, &a->seg_out, &e2) || pd_app_seg_apply(a, &e2)) {
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
    if (ev->rows) { /* --capture full: every head's rows of this token */
        if (a->follow || !pd_app_heads_ready(a)) {
            pd_app_heads_take(a, ev->rows, ev->tok.pos);
        } else {
            pd_attn_rows_free(ev->rows); /* the cursor's own rows stay */
        }
        ev->rows = NULL;
    }
    return pd_app_push_token_take(a, &ev->tok, err);
}

static enum pd_status ev_attn(struct pd_app *a, struct pd_event *ev, const char *text,
                              struct pd_err *err)
{
    (void)text, (void)err;
    a->heads_pending = false;
    pd_app_heads_take(a, ev->rows, ev->pos);
    ev->rows = NULL;
    return PD_OK;
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
    (void)err;
    if (ev->refused) { /* the session refused a command: say why, change nothing */
        if (ev->refused_cmd == PD_CMD_ATTN) {
            a->heads_pending = false;
            a->heads_refused = true;
        }
        pd_app_msg(a, true, "%s", text);
        return PD_OK;
    }
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
        struct pd_err e2;
        if (pd_app_set_policy_budget(a, (int64_t)kb, &e2)) {
            a->kv_budget = (int64_t)kb; /* the text could not follow; the number does */
        }
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
    (void)ev, (void)err;
    a->paused = false;
    a->pause_pending = false;
    if (strcmp(text, "continue") == 0) {
        pd_app_reopen(a); /* a new leg after an end */
        pd_app_msg(a, false, "continuing");
        return PD_OK;
    }
    pd_app_msg(a, false, "resumed");
    return PD_OK;
}

static enum pd_status ev_progress(struct pd_app *a, struct pd_event *ev, const char *text,
                                  struct pd_err *err)
{
    (void)text, (void)err;
    a->prefill_done = ev->pos;
    a->prefill_total = ev->pos_end;
    a->prefill_rate = ev->rate;
    if (ev->pos >= ev->pos_end) {
        a->prefill_total = 0; /* done: the status bar shows the generation again */
    }
    a->dirty |= PD_DIRTY_STATUS | PD_DIRTY_TRACE;
    return PD_OK;
}

static enum pd_status ev_branched(struct pd_app *a, struct pd_event *ev, const char *text,
                                  struct pd_err *err)
{
    (void)err;
    if (ev->pos >= 0) {
        pd_app_truncate_to(a, (size_t)ev->pos);
    }
    a->n_branches++;
    a->follow = true;
    pd_app_msg(a, false, "branched at %lld (%s)", (long long)ev->pos, text);
    return PD_OK;
}

static enum pd_status ev_pruned(struct pd_app *a, struct pd_event *ev, const char *text,
                                struct pd_err *err)
{
    if (a->n_drops == a->cap_drops) {
        size_t nc = a->cap_drops ? a->cap_drops * 2 : 8;
        struct pd_app_drop *d = pd_realloc_array(a->drops, nc, sizeof *d);
        if (!d) {
            return pd_err_set(err, PD_ENOMEM, "out of memory (pruned spans)");
        }
        a->drops = d;
        a->cap_drops = nc;
    }
    a->drops[a->n_drops++] =
        (struct pd_app_drop){.begin = ev->pos, .end = ev->pos_end, .at_pos = (int64_t)a->n_toks};
    a->dirty |= PD_DIRTY_KV;
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
    (void)err;
    a->finished = true;
    a->paused = false;
    a->pause_pending = false;
    snprintf(a->finish_reason, sizeof a->finish_reason, "%s", text);
    finish_segmentation(a);
    pd_app_recompute_importance(a);
    if (strcmp(text, "loaded") == 0) {
        pd_app_msg(a, false, "re-encoded %lld tokens: c continues; b or Enter on an "
                   "alternative branches at the cursor", (long long)ev->pos);
    } else if (strcmp(text, "stopped") == 0) {
        pd_app_msg(a, false, "generation stopped");
    } else {
        pd_app_msg(a, false, "generation finished (%s): c continues", text);
    }
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
    [PD_EV_ERROR] = ev_error,         [PD_EV_PROGRESS] = ev_progress,
    [PD_EV_ATTN] = ev_attn,
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
    enum pd_status st = event_handlers[ev->kind](a, ev, text, err);
    pd_app_heads_want(a); /* a pause or an end lets the head view ask for rows */
    return st;
}

