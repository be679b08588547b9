/* store_io.h - between the workbench and the store: loading a saved session into the app
 * (replay) and writing the app's edits (steps, prunes, tags) back.
 *
 * Ownership: the store is borrowed for each call. Thread-safety: UI thread (the store
 * connection's owner). */
#ifndef PD_STORE_IO_H
#define PD_STORE_IO_H

#include <stdint.h>

#include "app.h"
#include "status.h"
#include "store.h"

/* Loads session id (tokens with metrics, KV events, steps, tags, model and settings) into
 * a, an app initialised as PD_APP_REPLAY, and shows all of it (playhead at the end).
 * The app may hold a prefix on failure. Errors name the database and session. */
enum pd_status pd_io_load(struct pd_store *st, int64_t id, struct pd_app *a,
                          struct pd_err *err);

/* Re-opening a saved session with a model: pushes its tokens at positions below upto
 * (0 or past the end: all) into a (a live app segments them as they come) and returns
 * their ids and roles (owned, free()) for the engine to re-encode. Errors name the
 * database and session; PD_EINVAL when the session has no tokens there. */
enum pd_status pd_io_load_prefix(struct pd_store *st, int64_t id, int64_t upto,
                                 struct pd_app *a, int32_t **ids, uint8_t **roles, size_t *n,
                                 struct pd_err *err);

/* In one transaction: puts every closed step (upsert), applies prunes / unprunes whose
 * state differs from the database ("manual", "user"), adds unsaved tags and an unsaved
 * preference (:prefer); then marks the app saved. Nothing is written on failure. */
enum pd_status pd_io_save(struct pd_store *st, int64_t id, struct pd_app *a,
                          struct pd_err *err);

#endif
