/* panes.h - one function per pane (draw_<pane>.c): each reads the app and paints its
 * rectangle of stdscr with the helpers of paint.h. Drawing never changes the app (it is
 * const everywhere here). Thread-safety: UI thread only (curses). */
#ifndef PD_PANES_H
#define PD_PANES_H

#include <stdbool.h>

#include "app.h"
#include "layout.h"

void pd_draw_trace(const struct pd_app *a, const struct pd_rect *r, bool focus);
void pd_draw_steps(const struct pd_app *a, const struct pd_rect *r, bool focus);
void pd_draw_inspector(const struct pd_app *a, const struct pd_rect *r, bool focus);
void pd_draw_kv(const struct pd_app *a, const struct pd_rect *r, bool focus);
void pd_draw_status(const struct pd_app *a, const struct pd_rect *r);
/* Returns the screen column of the command line's cursor (or -1 when closed). */
int pd_draw_cmdline(const struct pd_app *a, const struct pd_rect *r);
void pd_draw_help(const struct pd_app *a, const struct pd_rect *r);
/* Lines the open overlay wants (the layout sizes its box from them). */
int pd_draw_overlay_lines(const struct pd_app *a);

#endif
