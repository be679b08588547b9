/* mouse.c - clicks and wheel turns on the workbench's panes (see mouse.h). */
#include "mouse.h"

#include "app_internal.h"
#include "wrap.h"

#define WHEEL_LINES 3

static bool inside(const struct pd_rect *r, int y, int x)
{
    return r->w > 0 && r->h > 0 && y >= r->y && y < r->y + r->h && x >= r->x &&
           x < r->x + r->w;
}

/* The token drawn at column col of trace line `line` (the last one left of col when col
 * is past the line's end); false on a line without token cells. */
static bool trace_token_at(const struct pd_app *a, size_t line, int col, size_t *out)
{
    if (line >= a->wrap.n_lines) {
        return false;
    }
    struct pd_wrap_src src = pd_app_wrap_src(a);
    struct pd_wrap_iter it;
    struct pd_wrap_cell c;
    pd_wrap_iter_line(&a->wrap, &src, line, &it);
    int x = 0;
    bool any = false;
    while (pd_wrap_iter_next(&it, &c)) {
        if (!c.in_prefix && c.width > 0) {
            *out = c.item;
            any = true;
            if (col < x + c.width) {
                return true;
            }
        }
        x += c.width;
    }
    return any;
}

static void click_trace(struct pd_app *a, const struct pd_rect *r, int y, int x)
{
    size_t tok;
    int row = y - r->y - 1; /* below the title */
    if (row >= 0 && trace_token_at(a, a->trace_top + (size_t)row, x - r->x, &tok) &&
        tok < a->n_visible) {
        a->follow = false;
        pd_app_set_cursor(a, tok);
    }
}

static void click_steps(struct pd_app *a, const struct pd_rect *r, int y)
{
    int row = y - r->y - 2; /* below the title and the column header */
    if (row < 0) {
        return;
    }
    size_t k = a->steps_top + (size_t)row;
    if (k < a->n_steps && a->steps[k].rec.pos_begin < (int64_t)a->n_visible) {
        a->follow = false;
        pd_app_set_cursor(a, (size_t)a->steps[k].rec.pos_begin);
    }
}

void pd_mouse(struct pd_app *a, const struct pd_layout *l, int y, int x, enum pd_mouse_kind k)
{
    if (l->too_small || a->cmd_active) {
        return;
    }
    if (a->help) {
        if (k != PD_MOUSE_CLICK) {
            a->help_top += k == PD_MOUSE_WHEEL_UP ? -WHEEL_LINES : WHEEL_LINES;
            a->help_top = a->help_top < 0 ? 0 : a->help_top;
            a->dirty = PD_DIRTY_ALL;
        }
        return;
    }
    enum pd_pane pane;
    if (inside(&l->trace, y, x)) {
        pane = PD_PANE_TRACE;
    } else if (l->show_steps && inside(&l->steps, y, x)) {
        pane = PD_PANE_STEPS;
    } else if (inside(&l->inspect, y, x)) {
        pane = PD_PANE_INSPECT;
    } else if (l->show_kv && inside(&l->kv, y, x)) {
        pane = PD_PANE_KV;
    } else {
        return;
    }
    a->focus = pane;
    a->dirty = PD_DIRTY_ALL;
    if (k == PD_MOUSE_CLICK) {
        if (pane == PD_PANE_TRACE) {
            click_trace(a, &l->trace, y, x);
        } else if (pane == PD_PANE_STEPS) {
            click_steps(a, &l->steps, y);
        }
        return;
    }
    /* The wheel moves like the arrow keys in that pane: lines in the trace, steps in the
     * step list, alternatives in the inspector. */
    int n = pane == PD_PANE_TRACE ? WHEEL_LINES : 1;
    for (int i = 0; i < n; i++) {
        pd_app_do(a, k == PD_MOUSE_WHEEL_UP ? PD_ACT_UP : PD_ACT_DOWN);
    }
}
