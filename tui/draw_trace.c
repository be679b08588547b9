/* draw_trace.c - the trace pane: wrapped token text coloured by the chosen measure
 * (colour.c: surprisal by default), step and role markers, pruned steps dimmed, search
 * matches, the token cursor, and the colour legend in the title. */
#include <curses.h>
#include <stdio.h>
#include <string.h>

#include "paint.h"
#include "panes.h"
#include "term.h"

static bool is_match(const struct pd_app *a, size_t tok)
{
    size_t lo = 0, hi = a->n_matches;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a->matches[mid] < tok) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < a->n_matches && a->matches[lo] == tok;
}

static bool tok_pruned(const struct pd_app *a, size_t i)
{
    int32_t s = pd_app_step_of(a, i);
    return (s >= 0 && a->steps[s].rec.pruned) || (a->toks[i].flags & PD_TOKF_PRUNED);
}

static unsigned long token_attr(const struct pd_app *a, size_t i)
{
    const struct pd_token_rec *t = &a->toks[i];
    unsigned long at;
    if (tok_pruned(a, i)) {
        at = pd_term_style(PD_STYLE_PRUNED);
    } else if (t->role == PD_ROLE_PROMPT) {
        at = pd_term_style(PD_STYLE_PROMPT);
    } else if (t->role == PD_ROLE_INJECTED) {
        at = pd_term_style(PD_STYLE_INJECTED);
    } else {
        at = pd_term_heat(pd_app_colour_level(a, i));
    }
    if (a->n_matches && is_match(a, i)) {
        at = pd_term_style(PD_STYLE_MATCH);
    }
    if (i == a->cursor) {
        at |= A_REVERSE;
    }
    return at;
}

_Static_assert(PD_APP_LEVELS == PD_HEAT_LEVELS, "one heat style per colour level");

/* Legend: what the colour shows ("surprisal bits", "attn from 41 L3", ...) and one swatch
 * per level with its label (the lower bound, or a step kind), right-aligned after the
 * title (which ends at x_min); just the name when the swatches do not fit. */
static void draw_legend(const struct pd_app *a, const struct pd_rect *r, int x_min, int x_end)
{
    char name[64];
    const char *labels[PD_APP_LEVELS];
    pd_app_colour_legend(a, name, sizeof name, labels);
    int need = (int)strlen(name) + 1;
    for (int l = 0; l < PD_APP_LEVELS; l++) {
        need += labels[l] ? (int)strlen(labels[l]) + 1 : 0;
    }
    bool swatches = x_end - need > x_min;
    if (!swatches) {
        need = (int)strlen(name) + 1;
    }
    int x = x_end - need;
    if (x <= x_min) {
        return;
    }
    unsigned long st = pd_term_style(PD_STYLE_TITLE);
    x += pd_draw_text(r->y, x, (int)strlen(name), name, strlen(name), st);
    x += pd_draw_text(r->y, x, 1, " ", 1, st);
    for (int l = 0; swatches && l < PD_APP_LEVELS; l++) {
        if (!labels[l]) {
            continue;
        }
        unsigned long at = l == 0 ? A_NORMAL : pd_term_heat(l);
        x += pd_draw_text(r->y, x, 12, labels[l], strlen(labels[l]), at);
        x += pd_draw_text(r->y, x, 1, " ", 1, st);
    }
}

void pd_draw_trace(const struct pd_app *a, const struct pd_rect *r, bool focus)
{
    char title[160];
    const char *state = a->follow ? "following" : "browsing";
    if (a->n_visible) {
        /* the cursor's token index is its position (positions are contiguous from 0) */
        snprintf(title, sizeof title, " trace  %zu/%zu  %s", a->cursor + 1, a->n_visible,
                 state);
    } else {
        snprintf(title, sizeof title, " trace  (no tokens yet)");
    }
    pd_draw_title(r, title, focus);
    draw_legend(a, r, r->x + (int)strlen(title) + 1, r->x + r->w);
    int rows = r->h - 1;
    struct pd_wrap_src src = pd_app_wrap_src(a);
    unsigned long marker = pd_term_style(PD_STYLE_MARKER);
    for (int row = 0; row < rows; row++) {
        size_t line = a->trace_top + (size_t)row;
        int y = r->y + 1 + row;
        if (line >= a->wrap.n_lines) {
            continue;
        }
        struct pd_wrap_iter it;
        struct pd_wrap_cell c;
        pd_wrap_iter_line(&a->wrap, &src, line, &it);
        int x = 0, last_w = 0;
        while (pd_wrap_iter_next(&it, &c) && x <= r->w) {
            if (c.width == 0) {
                if (x > 0 && !c.newline) {
                    pd_draw_attach(y, r->x + x - last_w, c.cp); /* a mark: onto its base */
                }
                continue;
            }
            if (x + c.width > r->w) {
                break;
            }
            last_w = c.width;
            unsigned long at;
            if (c.in_prefix) {
                at = tok_pruned(a, c.item) ? pd_term_style(PD_STYLE_PRUNED) : marker;
            } else {
                at = token_attr(a, c.item);
            }
            if (c.cp == ' ' || c.newline) {
                pd_draw_fill(y, r->x + x, c.width, at);
            } else {
                pd_draw_cp(y, r->x + x, c.cp, at);
            }
            x += c.width;
        }
    }
}
