/* draw_steps.c - the steps pane: one line per step with kind, length, first-token
 * surprisal, importance, and marks (x pruned, # tagged, ~ open); the cursor's step
 * highlighted. */
#include <curses.h>
#include <math.h>
#include <stdio.h>

#include "paint.h"
#include "panes.h"
#include "term.h"

void pd_draw_steps(const struct pd_app *a, const struct pd_rect *r, bool focus)
{
    size_t shown = 0;
    for (size_t k = 0; k < a->n_steps; k++) {
        if (a->steps[k].rec.pos_begin < (int64_t)a->n_visible) {
            shown++;
        }
    }
    size_t pruned = 0;
    for (size_t k = 0; k < shown; k++) {
        pruned += a->steps[k].rec.pruned;
    }
    char title[96];
    snprintf(title, sizeof title, " steps  %zu  (%zu pruned)", shown, pruned);
    pd_draw_title(r, title, focus);
    int rows = r->h - 1;
    if (rows <= 0) {
        return;
    }
    if (shown == 0) {
        pd_draw_printf(r->y + 1, r->x + 1, r->w - 1, pd_term_style(PD_STYLE_DIM),
                       "no steps yet");
        return;
    }
    pd_draw_printf(r->y + 1, r->x, r->w, pd_term_style(PD_STYLE_DIM),
                   "  #    kind        len 1st-s  mean   imp");
    int32_t cur = pd_app_step_of(a, a->cursor);
    size_t top = a->steps_top;
    if (top >= shown) {
        top = shown - 1;
    }
    for (int row = 1; row < rows && top + (size_t)row - 1 < shown; row++) {
        size_t k = top + (size_t)row - 1;
        const struct pd_app_step *s = &a->steps[k];
        int64_t end = s->rec.pos_end < (int64_t)a->n_visible ? s->rec.pos_end
                                                             : (int64_t)a->n_visible;
        unsigned long at = A_NORMAL;
        if (s->rec.pruned) {
            at = pd_term_style(PD_STYLE_PRUNED);
        }
        if ((int32_t)k == cur) {
            at |= pd_term_style(PD_STYLE_SELECTED);
        }
        char fs[8], ms[8], im[8];
        snprintf(fs, sizeof fs, isnan(s->rec.first_surprisal) ? "  -" : "%5.1f",
                 s->rec.first_surprisal);
        snprintf(ms, sizeof ms, isnan(s->rec.mean_surprisal) ? "  -" : "%5.2f",
                 s->rec.mean_surprisal);
        snprintf(im, sizeof im, isnan(s->recv) ? "  -" : "%5.2f", s->recv);
        /* Marks: x = pruned, # = tagged, ~ = still open. */
        char m1 = s->rec.pruned ? 'x' : ' ', m2 = s->n_tags ? '#' : s->open ? '~' : ' ';
        int y = r->y + 1 + row;
        pd_draw_fill(y, r->x, r->w, at);
        pd_draw_printf(y, r->x, r->w, at, "%3zu %c%c %-9s %5lld %5s %5s %5s", k, m1, m2,
                       pd_step_kind_name(s->rec.kind), (long long)(end - s->rec.pos_begin), fs,
                       ms, im);
    }
}
