/* paint.h - the helpers every pane draws with.
 *
 * Text from tokens and users is untrusted: pd_draw_text decodes UTF-8, shows invalid
 * bytes as U+FFFD and control characters as Control Pictures, draws combining marks with
 * their base character, never writes a wide character across the right edge, and clips
 * to the given width.
 * Thread-safety: UI thread only (curses). */
#ifndef PD_PAINT_H
#define PD_PAINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"

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
/* Combining marks (zero-width code points other than format characters) belong to the
 * character before them: pd_draw_attach adds cp to the cell at (y, x), which holds that
 * base character (at most CCHARW_MAX - 1 marks a cell; more are dropped). Zero-width
 * format characters never take a column and are not drawn. */
bool pd_draw_is_mark(uint32_t cp);
void pd_draw_attach(int y, int x, uint32_t cp);

#endif
