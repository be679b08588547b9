/* draw.c - the draw pass (one per loop iteration) and the text helpers panes share. */
#include "draw.h"

#include <curses.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <wchar.h>

#include "utf8.h"
#include "term.h"
#include "wrap.h"

void pd_draw_cp(int y, int x, uint32_t cp, unsigned long attr)
{
    cchar_t cc;
    wchar_t wc[2] = {(wchar_t)cp, 0};
    if (setcchar(&cc, wc, (attr_t)attr & ~A_COLOR, (short)PAIR_NUMBER(attr), NULL) == OK) {
        mvadd_wch(y, x, &cc);
    }
}

int pd_draw_text(int y, int x, int w, const char *s, size_t n, unsigned long attr)
{
    int col = 0;
    size_t i = 0;
    while (i < n && col < w) {
        uint32_t cp;
        size_t l = pd_utf8_decode(s + i, n - i, &cp);
        if (l == 0) {
            cp = 0xFFFD;
            l = 1;
        }
        i += l;
        int cw;
        uint32_t g = cp == '\n' ? 0x21B5u : pd_wrap_glyph(cp, col, &cw);
        if (cp == '\n') {
            cw = 1;
        }
        if (cw == 0) {
            continue;
        }
        if (col + cw > w) {
            break;
        }
        if (g == ' ' && cw > 1) {
            pd_draw_fill(y, x + col, cw, attr);
        } else {
            pd_draw_cp(y, x + col, g, attr);
        }
        col += cw;
    }
    return col;
}

int pd_draw_printf(int y, int x, int w, unsigned long attr, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return 0;
    }
    size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    return pd_draw_text(y, x, w, buf, len, attr);
}

void pd_draw_fill(int y, int x, int w, unsigned long attr)
{
    if (w <= 0) {
        return;
    }
    attrset((attr_t)attr);
    mvhline(y, x, ' ', w);
    attrset(A_NORMAL);
}

void pd_draw_title(const struct pd_rect *r, const char *title, bool focus)
{
    for (int row = 0; row < r->h; row++) {
        pd_draw_fill(r->y + row, r->x, r->w, A_NORMAL);
    }
    if (r->h <= 0) {
        return;
    }
    unsigned long st = pd_term_style(focus ? PD_STYLE_TITLE_FOCUS : PD_STYLE_TITLE);
    pd_draw_fill(r->y, r->x, r->w, st);
    pd_draw_text(r->y, r->x, r->w, title, strlen(title), st);
}

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
