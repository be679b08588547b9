/* steps_live.h - attaches incremental step segmentation to a live session.
 *
 * Wraps a pd_steps_seg (steps.h) in the engine's struct pd_step_observer interface so the
 * session worker can emit a step-boundary event the moment a new step begins. It keeps a
 * copy of the tokens it was fed so that a branch (the session rewinds to an earlier
 * position) can rebuild the segmenter's state up to the fork (unless told not to:
 * pd_steps_live_no_rewind).
 *
 * Ownership: the observer owns its segmenter and token copies; the interface struct it
 * hands out borrows the observer, which must outlive the session using it.
 * Thread-safety: used by the session worker only (one owner thread). */
#ifndef PD_STEPS_LIVE_H
#define PD_STEPS_LIVE_H

#include "status.h"
#include "session.h"
#include "steps.h"

struct pd_steps_live;

/* params may be NULL (defaults); they are copied. */
enum pd_status pd_steps_live_open(const struct pd_steps_params *params,
                                      struct pd_steps_live **out, struct pd_err *err);
void pd_steps_live_close(struct pd_steps_live **o);

/* Keeps no copy of the tokens fed (for a session with no_history, which never rewinds):
 * memory stays flat; a reset then starts the segmentation afresh at the fork. */
void pd_steps_live_no_rewind(struct pd_steps_live *o);

/* The engine-side interface to put into pd_session_params.steps. */
struct pd_step_observer pd_steps_live_iface(struct pd_steps_live *o);

#endif
