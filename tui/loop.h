/* loop.h - the workbench's event loop: poll() on stdin and the data source's wake fd,
 * keys to actions, source events into the app, effects out, one draw pass per iteration.
 *
 * DESIGN
 * One thread. Each iteration: wait in poll() for a key, the source's fd (the engine
 * session's wake pipe), a signal (SIGWINCH interrupts poll; curses then reports
 * KEY_RESIZE) or a timeout; read every pending key (a key becomes an action through the
 * key table, or goes to the command line while it is open; KEY_RESIZE recomputes the
 * layout); let the source pump its queued events into the app (never blocking); advance
 * the replay clock; execute queued effects; draw the dirty panes. Frames are limited to
 * one per 33 ms (~30 fps) while only streamed data changed; a key press is drawn at once.
 * Key latency (key read to the end of the frame that shows it) and draw cost are
 * measured into app->stats (":stats" shows them; --stats prints them at exit).
 * Thread-safety: UI thread only. */
#ifndef PD_LOOP_H
#define PD_LOOP_H

#include <stdbool.h>

#include "app.h"

/* Where the app's data comes from (the live session or a replay), as callbacks. */
struct pd_loop_source {
    int (*fd)(void *ud);                          /* fd to poll, -1 none; may change */
    void (*pump)(void *ud, struct pd_app *a);     /* move queued events into the app */
    void (*exec)(void *ud, struct pd_app *a, const struct pd_app_fx *fx); /* session / save */
    void *ud;                                     /* borrowed */
};

/* Runs until the app quits or a terminating signal arrives. The terminal must be open
 * (pd_term_open). Returns 0. */
int pd_loop_run(struct pd_app *a, const struct pd_loop_source *src);

/* Monotonic seconds. */
double pd_loop_now(void);

#endif
