/* draw_status.c - the status bar: model, backend, mode, phase, tokens, speed, KV use,
 * recording / saved state; replay position and speed in replay. */
#include <curses.h>
#include <stdio.h>
#include <string.h>

#include "paint.h"
#include "panes.h"
#include "term.h"

static const char *phase(const struct pd_app *a)
{
    if (a->n_toks == 0) {
        return "prompt";
    }
    return pd_role_name(a->toks[a->n_toks - 1].role);
}

/* The model's file name without ".gguf". */
static int model_len(const char *m)
{
    size_t n = strlen(m);
    if (n > 5 && strcmp(m + n - 5, ".gguf") == 0) {
        n -= 5;
    }
    return (int)n;
}

void pd_draw_status(const struct pd_app *a, const struct pd_rect *r)
{
    unsigned long st = pd_term_style(PD_STYLE_STATUS);
    unsigned long hot = pd_term_style(PD_STYLE_STATUS_HOT);
    pd_draw_fill(r->y, r->x, r->w, st);
    char left[320];
    char mode[32];
    pd_app_mode_text(a, mode, sizeof mode);
    size_t gen = a->n_toks - a->n_prompt;
    if (a->kind == PD_APP_LIVE) {
        char kv[48] = "";
        if (a->kv_cap) {
            snprintf(kv, sizeof kv, " | KV %u/%u", a->kv_used, a->kv_cap);
        }
        if (a->kv_budget) {
            size_t l = strlen(kv);
            snprintf(kv + l, sizeof kv - l, " b%lld", (long long)a->kv_budget);
        }
        snprintf(left, sizeof left, " %.*s | %s | %s | %s | %zu tok (%zu gen) | %.1f tok/s%s",
                 model_len(a->model), a->model, a->backend, mode, phase(a), a->n_toks, gen,
                 a->tok_per_s, kv);
    } else {
        snprintf(left, sizeof left, " replay #%lld | %s | %zu/%zu tok | %s %.0f tok/s",
                 (long long)a->session_id, a->model[0] ? a->model : "no model", a->n_visible,
                 a->n_toks, a->playing ? "playing" : "paused", a->speed);
    }
    /* The run state (paused, done, error) comes first so narrow screens keep it. */
    char state[96];
    unsigned long sat = st;
    if (a->kind == PD_APP_LIVE && a->error[0]) {
        snprintf(state, sizeof state, " ERROR ");
        sat = hot;
    } else if (a->kind == PD_APP_LIVE && (a->paused || a->pause_pending)) {
        snprintf(state, sizeof state, a->paused ? " PAUSED " : " pausing ");
        sat = hot;
    } else if (a->kind == PD_APP_LIVE && a->finished) {
        snprintf(state, sizeof state, " done:%s ", a->finish_reason);
    } else {
        state[0] = '\0';
    }
    int x = r->x;
    if (state[0]) {
        x += pd_draw_text(r->y, x, r->w, state, strlen(state), sat);
    }
    x += pd_draw_text(r->y, x, r->x + r->w - x, left, strlen(left), st);
    char rec[128], pref[40] = "";
    bool unsaved = pd_app_unsaved(a);
    if (a->pref_over) {
        snprintf(pref, sizeof pref, " chosen>#%lld", (long long)a->pref_over);
    }
    if (a->rec_failed) {
        snprintf(rec, sizeof rec, " REC FAILED #%lld %llu unsaved ", (long long)a->session_id,
                 (unsigned long long)a->rec_unsaved);
        unsaved = true;
    } else if (a->recording) {
        snprintf(rec, sizeof rec, " rec #%lld %lld/%zu%s%s ", (long long)a->session_id,
                 (long long)a->n_committed, a->n_toks, pref, unsaved ? " unsaved" : "");
    } else if (a->session_id) {
        snprintf(rec, sizeof rec, " #%lld%s %s ", (long long)a->session_id, pref,
                 unsaved ? "unsaved" : "saved");
    } else {
        snprintf(rec, sizeof rec, " not recorded ");
    }
    /* The recording state has priority over the end of the left part; the help hint
     * only shows when there is room. */
    char right[160];
    int room = r->x + r->w - x - 1;
    snprintf(right, sizeof right, "%s%s", rec, (int)strlen(rec) + 9 <= room ? "| ? help " : "");
    int rw = (int)strlen(right);
    if (rw > r->w) {
        rw = r->w;
    }
    pd_draw_text(r->y, r->x + r->w - rw, rw, right, strlen(right), unsaved ? hot : st);
}
