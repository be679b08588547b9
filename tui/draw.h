/* draw.h - the draw pass: each pane's function reads the app and paints its rectangle of
 * stdscr; pd_draw_frame repaints the panes whose dirty bits are set, then updates the
 * terminal once. Drawing never changes the app (it is const everywhere here).
 *
 * Text from tokens and users is untrusted: pd_draw_text decodes UTF-8, shows invalid
 * bytes as U+FFFD and control characters as Control Pictures, never writes a wide
 * character across the right edge, and clips to the given width.
 * Thread-safety: UI thread only (curses). */
#ifndef PD_DRAW_H
#define PD_DRAW_H

#include <stdbool.h>
#include <stddef.h>

#include "app.h"
#include "layout.h"

/* Repaints the dirty panes of a for layout l, clears a->dirty's drawn bits, positions
 * the terminal cursor (visible only while the command line is open), and refreshes. */
void pd_draw_frame(struct pd_app *a, const struct pd_layout *l);

void pd_draw_trace(const struct pd_app *a, const struct pd_rect *r, bool focus);
void pd_draw_steps(const struct pd_app *a, const struct pd_rect *r, bool focus);
void pd_draw_inspector(const struct pd_app *a, const struct pd_rect *r, bool focus);
void pd_draw_kv(const struct pd_app *a, const struct pd_rect *r, bool focus);
void pd_draw_status(const struct pd_app *a, const struct pd_rect *r);
/* Returns the screen column of the command line's cursor (or -1 when closed). */
int pd_draw_cmdline(const struct pd_app *a, const struct pd_rect *r);
void pd_draw_help(const struct pd_app *a, const struct pd_rect *r);

/* ---- helpers shared by the panes ---- */

/* Writes s[0..n) at (y, x) in at most w columns with attribute attr; returns the columns
 * used. */
int pd_draw_text(int y, int x, int w, const char *s, size_t n, unsigned long attr);
/* printf into at most w columns. */
int pd_draw_printf(int y, int x, int w, unsigned long attr, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Fills w columns at (y, x) with spaces. */
void pd_draw_fill(int y, int x, int w, unsigned long attr);
/* Clears the rectangle and draws a one-row title (focus highlights it). */
void pd_draw_title(const struct pd_rect *r, const char *title, bool focus);
/* Draws one code point (width already known from pd_wrap_glyph) at (y, x). */
void pd_draw_cp(int y, int x, uint32_t cp, unsigned long attr);

#endif
