/* draw_cmdline.c - the bottom line: the command line being edited (':' or '/'), else the
 * last message (errors highlighted; other messages fade after MSG_TTL_S), else the hint
 * bar: the keys that apply to the focused pane and the run state. */
#include <curses.h>
#include <string.h>

#include "keys.h"
#include "paint.h"
#include "panes.h"
#include "term.h"

int pd_draw_cmdline(const struct pd_app *a, const struct pd_rect *r)
{
    pd_draw_fill(r->y, r->x, r->w, A_NORMAL);
    if (a->cmd_active) {
        char k[2] = {a->cmd_kind, 0};
        int x = r->x + pd_draw_text(r->y, r->x, r->w, k, 1, A_BOLD);
        size_t n = strlen(a->cmd_text);
        size_t point = (size_t)a->cmd_point <= n ? (size_t)a->cmd_point : n;
        /* Scroll so the cursor stays visible: drop leading characters until it fits. */
        int room = r->x + r->w - x - 1;
        int wdt = 0;
        for (size_t i = 0; i < point; i++) {
            wdt += ((unsigned char)a->cmd_text[i] & 0xc0) != 0x80;
        }
        size_t start = 0;
        while (wdt > room && start < point) {
            start++;
            while (start < point && ((unsigned char)a->cmd_text[start] & 0xc0) == 0x80) {
                start++;
            }
            wdt--;
        }
        int cx = x + pd_draw_text(r->y, x, room + 1, a->cmd_text + start, point - start,
                                  A_NORMAL);
        pd_draw_text(r->y, cx, r->x + r->w - cx, a->cmd_text + point, n - point, A_NORMAL);
        return cx;
    }
    if (a->msg[0]) {
        unsigned long at = a->msg_error ? pd_term_style(PD_STYLE_ERROR) : A_NORMAL;
        pd_draw_text(r->y, r->x, r->w, a->msg, strlen(a->msg), at);
    } else {
        char hint[256];
        size_t n = pd_keys_hint(a, hint, sizeof hint, r->w);
        pd_draw_text(r->y, r->x, r->w, hint, n, pd_term_style(PD_STYLE_DIM));
    }
    return -1;
}
