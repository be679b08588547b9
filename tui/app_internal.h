/* app_internal.h - what the view model (app.c) shares with its event handlers
 * (app_events.c), key actions (app_actions.c) and `:` commands (app_commands.c).
 * Private to tui/. */
#ifndef PD_APP_INTERNAL_H
#define PD_APP_INTERNAL_H

#include "app.h"

/* True when a live session can take commands (says why in the message line if not). */
bool pd_app_session_live(struct pd_app *a);
/* Feeds the tokens not yet segmented to the step segmenter and applies its steps. */
enum pd_status pd_app_seg_apply(struct pd_app *a, struct pd_err *err);
/* Queues an effect for the front end; NULL (with a message) when the queue is full. */
struct pd_app_fx *pd_app_fx_push(struct pd_app *a, enum pd_fx_kind kind);
/* Queues a session command effect and returns it to fill in (NULL when full). */
struct pd_cmd *pd_app_fx_cmd(struct pd_app *a, enum pd_cmd_kind kind);
/* Recounts each step's tags after tags changed. */
void pd_app_count_step_tags(struct pd_app *a);
/* Moves the cursor to search match k. */
void pd_app_jump_to_match(struct pd_app *a, size_t k);
/* Rebuilds the KV map from the events up to the visible length. */
void pd_app_kv_sync(struct pd_app *a);
/* Moves the cursor to token i and focuses the trace. */
void pd_app_move_to(struct pd_app *a, size_t i);
/* Opens the command line (`:` or `/`) with an initial text. */
void pd_app_open_cmdline(struct pd_app *a, char kind, const char *init);
/* Recomputes every step's attention received (importance). */
void pd_app_recompute_importance(struct pd_app *a);
/* Puts the cursor on token i (clamped) and scrolls it into view. */
void pd_app_set_cursor(struct pd_app *a, size_t i);
/* Replay: shows the first n tokens (the playhead). */
void pd_app_set_visible(struct pd_app *a, size_t n);
/* Tells the session the mode shown (a->mode): close_thinking for an explicit none. */
void pd_app_send_mode(struct pd_app *a, bool close_thinking);
/* A finished generation goes on (continue, or an action after the end): re-opens the
 * last step and follows new tokens. */
void pd_app_reopen(struct pd_app *a);
/* Drops tokens from position pos on (a branch rewinds), with their steps and events. */
void pd_app_truncate_to(struct pd_app *a, size_t pos);

#endif
