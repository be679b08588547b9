/* mouse.h - what a click or a wheel turn does: a click on a token moves the cursor to it,
 * on a step row to that step, on a pane focuses it; the wheel scrolls the pane under the
 * pointer (the help overlay when it is open).
 * Pure view model (no curses): the loop turns curses' mouse events into these calls.
 * Thread-safety: UI thread only. */
#ifndef PD_MOUSE_H
#define PD_MOUSE_H

#include "app.h"
#include "layout.h"

enum pd_mouse_kind {
    PD_MOUSE_CLICK,
    PD_MOUSE_WHEEL_UP,
    PD_MOUSE_WHEEL_DOWN,
};

/* Screen cell (y, x) under layout l. */
void pd_mouse(struct pd_app *a, const struct pd_layout *l, int y, int x, enum pd_mouse_kind k);

#endif
