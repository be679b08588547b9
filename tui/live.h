/* live.h - the workbench's live source: a model, an engine session streaming a generation,
 * and a store writer recording it.
 *
 * DESIGN
 * The engine session's worker thread owns the model state; this object lives on the UI
 * thread and only polls the session's event queue (pd_live_pump, non-blocking) and sends
 * commands (pd_live_exec). Each event is copied to the store writer first (its own thread
 * commits in small transactions) and then handed to the app. Closed steps are pushed to
 * the writer as the app's segmenter closes them. A branch event closes the current
 * recording and opens a new session in the database whose parent is the old one and
 * whose fork position is the branch point. When the generation ends, the writer commits
 * the rest and marks the session finished. A save flushes the writer and writes steps,
 * prunes and tags through the UI thread's own store connection.
 * Re-opening. With from_session the saved trace (up to from_pos) is loaded into the app
 * and re-encoded by the engine (pd_session_start_history); nothing is recorded until
 * the model generates: continuing records a branch of the saved session at its end, a
 * branch at the cursor records a branch there (parent: the session that holds the
 * position).
 * Failed recording. When a commit fails (the database locked past its busy timeout, the
 * disk full), the writer keeps the tokens in memory; the pump shows the failure at once
 * (message + status bar), `s` and resuming from pause retry, and closing retries once
 * more and reports what was and was not saved (run exits non-zero when tokens were
 * lost).
 *
 * Ownership: pd_live_open returns an owned object (pd_live_close); it borrows the app
 * between calls. Thread-safety: UI thread only. */
#ifndef PD_LIVE_H
#define PD_LIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "app.h"
#include "backend.h"
#include "capture.h"
#include "sampler.h"

struct pd_live_opts {
    const char *model_path;
    const char *prompt;          /* user text (borrowed) */
    const char *system;          /* NULL: none */
    const char *db_path;         /* NULL: the default database */
    bool no_record;              /* run without a database */
    const char *kv_spec;         /* NULL: full cache */
    const char *mode_spec;       /* NULL: long */
    const char *chat;            /* family override, NULL: detect */
    enum pd_capture_level capture;
    uint32_t n_predict;          /* 0: until end of generation */
    uint32_t topk;
    uint32_t n_ctx;              /* 0: default */
    int n_threads;               /* 0: all */
    enum pd_backend_kind backend;/* where weight products run (default cpu) */
    double throttle_ms;
    struct pd_sampler_params sampling;
    int64_t from_session;        /* re-open this saved session (prompt unused), 0: none */
    int64_t from_pos;            /* ... up to this position (0: all of it) */
};

void pd_live_opts_default(struct pd_live_opts *o);

struct pd_live;

/* Loads the model, opens the database and the recording, starts the generation, and
 * fills the app's run fields (model, backend, policy, mode, session id, vocabulary). */
enum pd_status pd_live_open(const struct pd_live_opts *o, struct pd_app *a,
                            struct pd_live **out, struct pd_err *err);

/* What the recording saved, for the exit message. */
struct pd_live_report {
    int64_t session_id;          /* the last recorded session (0: none) */
    int64_t n_saved;             /* its committed length */
    uint64_t n_lost;             /* tokens never committed, over every session of the run */
    char why[256];               /* the error that lost them */
};

/* Stops the generation, commits the recording (retrying a failed one once more), frees
 * everything and fills *report (may be NULL); NULL-safe. */
void pd_live_close(struct pd_live **l, struct pd_app *a, struct pd_live_report *report);

/* Loop source callbacks (struct pd_loop_source). */
int pd_live_fd(void *ud);
void pd_live_pump(void *ud, struct pd_app *a);
void pd_live_exec(void *ud, struct pd_app *a, const struct pd_app_fx *fx);

/* The database path in use ("" without recording). */
const char *pd_live_db_path(const struct pd_live *l);

#endif
