/* draw_trace.c - the trace pane: wrapped token text coloured by surprisal, step and role
 * markers, pruned steps dimmed, search matches, the token cursor, and the heat legend in
 * the title. */
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
        at = pd_term_heat(pd_heat_level(pd_app_surprisal(a, i)));
    }
    if (a->n_matches && is_match(a, i)) {
        at = pd_term_style(PD_STYLE_MATCH);
    }
    if (i == a->cursor) {
        at |= A_REVERSE;
    }
    return at;
}

/* Legend: "surprisal bits" and one swatch per level with its lower threshold. */
static void draw_legend(const struct pd_rect *r, int x_end)
{
    static const char *const labels[PD_HEAT_LEVELS] = {"<1", "1", "2", "3.5", "5",
                                                        "7",  "9", "12+"};
    int need = 10;
    for (int l = 0; l < PD_HEAT_LEVELS; l++) {
        need += (int)strlen(labels[l]) + 1;
    }
    int x = x_end - need;
    if (x < r->x + 30) {
        return;
    }
    unsigned long st = pd_term_style(PD_STYLE_TITLE);
    x += pd_draw_text(r->y, x, 10, "surprisal ", 10, st);
    for (int l = 0; l < PD_HEAT_LEVELS; l++) {
        unsigned long at = l == 0 ? A_NORMAL : pd_term_heat(l);
        x += pd_draw_text(r->y, x, 8, labels[l], strlen(labels[l]), at);
        x += pd_draw_text(r->y, x, 1, " ", 1, st);
    }
}

void pd_draw_trace(const struct pd_app *a, const struct pd_rect *r, bool focus)
{
    char title[160];
    const char *state = a->follow ? "following" : "browsing";
    if (a->n_visible) {
        snprintf(title, sizeof title, " trace  %zu/%zu  %s  pos %lld", a->cursor + 1,
                 a->n_visible, state, (long long)a->toks[a->cursor].pos);
    } else {
        snprintf(title, sizeof title, " trace  (no tokens yet)");
    }
    pd_draw_title(r, title, focus);
    draw_legend(r, r->x + r->w);
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
