/* draw.h - the draw pass: pd_draw_frame repaints the panes (panes.h) whose dirty bits
 * are set, then updates the terminal once.
 * Thread-safety: UI thread only (curses). */
#ifndef PD_DRAW_H
#define PD_DRAW_H

#include "app.h"
#include "layout.h"

/* Repaints the dirty panes of a for layout l, clears a->dirty's drawn bits, positions
 * the terminal cursor (visible only while the command line is open), and refreshes. */
void pd_draw_frame(struct pd_app *a, const struct pd_layout *l);

#endif
