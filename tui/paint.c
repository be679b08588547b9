/* paint.c - the text and box helpers every pane draws with (paint.h). */
#include "paint.h"

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

bool pd_draw_is_mark(uint32_t cp)
{
    /* zero-width format characters (spaces, joiners, direction marks, BOM) stand alone */
    return cp >= 0x300 && !(cp >= 0x200B && cp <= 0x200F) && !(cp >= 0x2028 && cp <= 0x202E) &&
           !(cp >= 0x2060 && cp <= 0x206F) && cp != 0xFEFF && cp != 0x180E;
}

void pd_draw_attach(int y, int x, uint32_t cp)
{
    if (x < 0 || !pd_draw_is_mark(cp)) {
        return;
    }
    cchar_t cc;
    if (mvin_wch(y, x, &cc) == ERR) {
        return;
    }
    wchar_t wc[CCHARW_MAX + 1];
    attr_t at;
    short pair;
    if (getcchar(&cc, wc, &at, &pair, NULL) == ERR) {
        return;
    }
    size_t n = wcslen(wc);
    if (n == 0 || n >= CCHARW_MAX) {
        return; /* no base, or no room for another mark */
    }
    wc[n] = (wchar_t)cp;
    wc[n + 1] = 0;
    if (setcchar(&cc, wc, at, pair, NULL) == OK) {
        mvadd_wch(y, x, &cc);
    }
}

int pd_draw_text(int y, int x, int w, const char *s, size_t n, unsigned long attr)
{
    int col = 0, last_w = 0;
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
            if (col > 0) {
                pd_draw_attach(y, x + col - last_w, cp); /* onto its base character */
            }
            continue;
        }
        if (col + cw > w) {
            break;
        }
        last_w = cw;
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
