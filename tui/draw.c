/* draw.c - the draw pass, one per loop iteration: repaints the dirty panes (panes.h). */
#include "draw.h"

#include <curses.h>
#include <stdio.h>
#include <string.h>

#include "paint.h"
#include "panes.h"
#include "term.h"

static void draw_too_small(const struct pd_layout *l)
{
    erase();
    char msg[96];
    snprintf(msg, sizeof msg, "ponder needs %dx%d (now %dx%d)", PD_LAYOUT_MIN_COLS,
             PD_LAYOUT_MIN_ROWS, l->cols, l->rows);
    int y = l->rows > 2 ? (l->rows - 2) / 2 : 0;
    int w = (int)strlen(msg);
    int x = l->cols > w ? (l->cols - w) / 2 : 0;
    if (l->rows > 0) {
        pd_draw_text(y, x, l->cols - x, msg, strlen(msg), pd_term_style(PD_STYLE_ERROR));
    }
}

void pd_draw_frame(struct pd_app *a, const struct pd_layout *l)
{
    unsigned d = a->dirty;
    if (d & PD_DIRTY_LAYOUT) {
        erase();
        d = PD_DIRTY_ALL;
    }
    if (l->too_small) {
        draw_too_small(l);
        if (l->status.h) {
            pd_draw_status(a, &l->status);
        }
    } else {
        if (d & PD_DIRTY_TRACE) {
            pd_app_colour_prepare(a);
            pd_draw_trace(a, &l->trace, a->focus == PD_PANE_TRACE);
        }
        if ((d & PD_DIRTY_STEPS) && l->show_steps) {
            pd_draw_steps(a, &l->steps, a->focus == PD_PANE_STEPS);
        }
        if ((d & PD_DIRTY_INSPECT) && l->inspect.h) {
            pd_draw_inspector(a, &l->inspect, a->focus == PD_PANE_INSPECT);
        }
        if ((d & PD_DIRTY_KV) && l->show_kv) {
            pd_draw_kv(a, &l->kv, a->focus == PD_PANE_KV);
        }
        if ((d & PD_DIRTY_LAYOUT) && l->vsep.w) {
            attrset(pd_term_style(PD_STYLE_DIM));
            mvvline(l->vsep.y, l->vsep.x, ACS_VLINE, l->vsep.h);
            attrset(A_NORMAL);
        }
        if (d & PD_DIRTY_STATUS) {
            pd_draw_status(a, &l->status);
        }
        if (a->help && (d & (PD_DIRTY_HELP | PD_DIRTY_TRACE | PD_DIRTY_STEPS |
                             PD_DIRTY_INSPECT | PD_DIRTY_KV))) {
            pd_draw_help(a, &l->help);
        }
    }
    int cx = -1;
    if (l->cmdline.h) {
        cx = pd_draw_cmdline(a, &l->cmdline);
    }
    if (a->cmd_active && cx >= 0) {
        curs_set(1);
        move(l->cmdline.y, cx);
    } else {
        curs_set(0);
    }
    a->dirty = 0;
    wnoutrefresh(stdscr);
    doupdate();
}
