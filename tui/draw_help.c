/* draw_help.c - the help overlay: the key table's lines (keys.c) in a box, scrollable,
 * with the colour legend on top. */
#include <curses.h>
#include <stdio.h>
#include <string.h>

#include "paint.h"
#include "panes.h"
#include "keys.h"
#include "term.h"

void pd_draw_help(const struct pd_app *a, const struct pd_rect *r)
{
    if (r->h < 3 || r->w < 10) {
        return;
    }
    for (int row = 0; row < r->h; row++) {
        pd_draw_fill(r->y + row, r->x, r->w, A_NORMAL);
    }
    attrset(pd_term_style(PD_STYLE_MARKER));
    mvhline(r->y, r->x, ACS_HLINE, r->w);
    mvhline(r->y + r->h - 1, r->x, ACS_HLINE, r->w);
    attrset(A_NORMAL);
    char title[96];
    snprintf(title, sizeof title, " keys (%s) - Esc or ? closes, j/k scroll ",
             a->kind == PD_APP_LIVE ? "live" : "replay");
    pd_draw_text(r->y, r->x + 2, r->w - 4, title, strlen(title), A_BOLD);
    int inner = r->h - 2;
    int y = r->y + 1;
    /* Legend line. */
    char legend[160];
    snprintf(legend, sizeof legend, "colours: %s; prompt, injected, pruned (dim), match, cursor",
             pd_tier_name(pd_term_tier()));
    pd_draw_text(y, r->x + 1, r->w - 2, legend, strlen(legend), pd_term_style(PD_STYLE_DIM));
    y++;
    inner--;
    size_t n = pd_keys_help_count();
    size_t top = a->help_top > 0 ? (size_t)a->help_top : 0;
    if (top + (size_t)inner > n) {
        top = n > (size_t)inner ? n - (size_t)inner : 0;
    }
    for (int row = 0; row < inner; row++) {
        char line[256];
        if (!pd_keys_help_line(top + (size_t)row, line, sizeof line)) {
            break;
        }
        pd_draw_text(y + row, r->x + 1, r->w - 2, line, strlen(line), A_NORMAL);
    }
}
