/* draw_status.c - the status bar: model, backend, mode, phase, tokens, speed, KV use,
 * recording / saved state; replay position and speed in replay. */
#include <curses.h>
#include <stdarg.h>
#include <stdbool.h>
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

/* A status-bar field: its text, how much it matters (0 = always kept; larger numbers go
 * first when the bar is too narrow), its style, and whether it sits at the right end. */
struct field {
    char text[128];
    int prio;
    unsigned long attr;
    bool right;
    bool sep;      /* joined to the previous field of its side with " | " */
    bool state;    /* the run state (PAUSED, done, ERROR) */
};

#define FIELDS_MAX 16

static struct field *add(struct field *f, int *n, int prio, unsigned long attr, bool right,
                         bool sep, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static struct field *add(struct field *f, int *n, int prio, unsigned long attr, bool right,
                         bool sep, const char *fmt, ...)
{
    if (*n >= FIELDS_MAX) {
        return NULL;
    }
    struct field *x = &f[(*n)++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->text, sizeof x->text, fmt, ap);
    va_end(ap);
    x->prio = prio;
    x->attr = attr;
    x->right = right;
    x->sep = sep;
    x->state = false;
    return x;
}

/* Lays out one side's kept fields from column x (draw: also paints them); returns the
 * columns used. A field with sep follows the previous one after " | ", a field after the
 * run state directly (the state is padded); the left side begins with a space unless it
 * begins with the state. */
static int side(const struct field *f, int n, const bool *on, bool right, bool draw, int y,
                int x, unsigned long st)
{
    int w = 0;
    const struct field *prev = NULL;
    for (int i = 0; i < n; i++) {
        if (!on[i] || f[i].right != right) {
            continue;
        }
        const char *gap = "";
        if (!prev) {
            gap = !right && !f[i].state ? " " : "";
        } else if (prev->state) {
            gap = ""; /* the state's own padding separates it */
        } else if (f[i].sep) {
            gap = " | ";
        }
        if (draw) {
            pd_draw_text(y, x + w, (int)strlen(gap), gap, strlen(gap), st);
            pd_draw_text(y, x + w + (int)strlen(gap), (int)strlen(f[i].text), f[i].text,
                         strlen(f[i].text), f[i].attr);
        }
        w += (int)strlen(gap) + (int)strlen(f[i].text);
        prev = &f[i];
    }
    return w;
}

void pd_draw_status(const struct pd_app *a, const struct pd_rect *r)
{
    unsigned long st = pd_term_style(PD_STYLE_STATUS);
    unsigned long hot = pd_term_style(PD_STYLE_STATUS_HOT);
    pd_draw_fill(r->y, r->x, r->w, st);
    struct field f[FIELDS_MAX];
    int n = 0;
    char mode[32];
    pd_app_mode_text(a, mode, sizeof mode);
    /* The run state (paused, done, error) comes first so narrow screens keep it. */
    if (a->kind == PD_APP_LIVE && a->error[0]) {
        add(f, &n, 0, hot, false, false, " ERROR ")->state = true;
    } else if (a->kind == PD_APP_LIVE && (a->paused || a->pause_pending)) {
        add(f, &n, 0, hot, false, false, "%s", a->paused ? " PAUSED " : " pausing ")->state = true;
    } else if (a->kind == PD_APP_LIVE && a->finished) {
        add(f, &n, 0, st, false, false, " done:%s ", a->finish_reason)->state = true;
    }
    if (a->kind == PD_APP_LIVE) {
        size_t gen = a->n_toks - a->n_prompt;
        add(f, &n, 6, st, false, true, "%.*s", model_len(a->model), a->model);
        add(f, &n, 8, st, false, true, "%s", a->backend);
        add(f, &n, 3, st, false, true, "%s", mode);
        add(f, &n, 4, st, false, true, "%s", phase(a));
        if (a->prefill_total > 0) {
            double eta = a->prefill_rate > 0
                             ? (double)(a->prefill_total - a->prefill_done) / a->prefill_rate
                             : 0;
            add(f, &n, 1, hot, false, true, "encoding %lld/%lld", (long long)a->prefill_done,
                (long long)a->prefill_total);
            add(f, &n, 5, st, false, true, "%.0f tok/s ETA %.0fs", a->prefill_rate, eta);
        } else {
            add(f, &n, 1, st, false, true, "%zu tok (%zu gen)", a->n_toks, gen);
            add(f, &n, 5, st, false, true, "%.1f tok/s", a->tok_per_s);
        }
        if (a->kv_cap) {
            add(f, &n, 2, st, false, true, "KV %u/%u", a->kv_used, a->kv_cap);
            if (a->kv_budget) {
                add(f, &n, 7, st, false, true, "budget %lld", (long long)a->kv_budget);
            }
        }
    } else {
        add(f, &n, 0, st, false, false, "replay #%lld", (long long)a->session_id);
        add(f, &n, 6, st, false, true, "%s", a->model[0] ? a->model : "no model");
        add(f, &n, 1, st, false, true, "%zu/%zu tok", a->n_visible, a->n_toks);
        add(f, &n, 5, st, false, true, "%s %.0f tok/s", a->playing ? "playing" : "paused",
            a->speed);
    }
    bool unsaved = pd_app_unsaved(a);
    char pref[40] = "";
    if (a->pref_over) {
        snprintf(pref, sizeof pref, " chosen>#%lld", (long long)a->pref_over);
    }
    if (a->rec_failed) {
        add(f, &n, 0, hot, true, false, " REC FAILED #%lld %llu unsaved ",
            (long long)a->session_id, (unsigned long long)a->rec_unsaved);
    } else if (a->recording) {
        add(f, &n, 0, unsaved ? hot : st, true, false, " rec #%lld%s%s ",
            (long long)a->session_id, pref, unsaved ? " unsaved" : "");
        add(f, &n, 7, st, true, false, "%lld/%zu saved ", (long long)a->n_committed, a->n_toks);
    } else if (a->session_id) {
        add(f, &n, 0, unsaved ? hot : st, true, false, " #%lld%s %s ", (long long)a->session_id,
            pref, unsaved ? "unsaved" : "saved");
    } else {
        add(f, &n, 0, st, true, false, " not recorded ");
    }
    add(f, &n, 9, st, true, false, "| ? help ");
    /* Drop whole fields, least important first (the rightmost of equals), until the bar
     * fits with a space between the sides; never part of one. */
    bool on[FIELDS_MAX];
    for (int i = 0; i < n; i++) {
        on[i] = true;
    }
    while (side(f, n, on, false, false, 0, 0, st) + 1 + side(f, n, on, true, false, 0, 0, st) >
           r->w) {
        int drop = -1;
        for (int i = 0; i < n; i++) {
            if (on[i] && f[i].prio > 0 && (drop < 0 || f[i].prio >= f[drop].prio)) {
                drop = i;
            }
        }
        if (drop < 0) {
            break;
        }
        on[drop] = false;
    }
    int lw = side(f, n, on, false, false, 0, 0, st);
    int rw = side(f, n, on, true, false, 0, 0, st);
    if (lw > r->w) {
        return; /* even the essential fields do not fit: show none rather than a part */
    }
    side(f, n, on, false, true, r->y, r->x, st);
    if (lw + 1 + rw <= r->w) {
        side(f, n, on, true, true, r->y, r->x + r->w - rw, st);
    }
}
