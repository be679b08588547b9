/* store_writer.h - streaming saves: a live generation feeds records, a thread commits them.
 *
 * The producer (the generation loop, or the UI relaying its events) pushes tokens, KV
 * events and steps; a writer thread with its own SQLite connection commits them in small
 * transactions. The producer only ever takes a mutex held for a pointer swap: it never
 * waits on SQLite, disk or locks held by other connections. After a crash or kill -9, the
 * database holds every batch whose commit finished, and a session's tokens are contiguous
 * from its first position up to the last committed one.
 *
 * Batching: the writer wakes when a batch of batch_max records is queued or flush_ms after
 * the first queued record, whichever comes first, and commits at most batch_max tokens
 * per transaction (KV events and steps ride in the same transactions, in order).
 *
 * Threads: push functions and pd_store_writer_committed may be called from one producer
 * thread (or several, serialised by the queue mutex); open/close from the owner thread.
 * The on_commit callback runs on the writer thread. */
#ifndef PD_STORE_WRITER_H
#define PD_STORE_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "trace.h"
#include "store.h"

struct pd_store_writer;

struct pd_store_writer_params {
    size_t batch_max;       /* records per transaction (default 64) */
    int flush_ms;           /* longest a queued record waits before a commit (default 50) */
    size_t queue_max;       /* pushes fail with PD_ENOMEM beyond this many queued records
                             * (default 1<<20): a stalled disk must not eat all memory */
    /* Called on the writer thread after each commit with the session's length so far
     * (last committed token position + 1). Optional. */
    void (*on_commit)(void *ud, int64_t n_committed);
    void *ud;               /* borrowed: passed to the callbacks */
    int busy_ms;            /* how long a commit waits for a locked database before it
                             * fails (0 = PD_STORE_BUSY_MS) */
};

/* Defaults: batch_max 64, flush_ms 50, queue_max 1<<20, no callback. */
struct pd_store_writer_params pd_store_writer_default_params(void);

/* Opens a writer for an existing session of the database st is open on (st itself is
 * not used after the call; the writer opens its own connection to the same file) and
 * starts its thread. params may be NULL. *out is owned (pd_store_writer_close).
 * PD_EINVAL when the session does not exist. */
enum pd_status pd_store_writer_open(struct pd_store *st, int64_t session_id,
                                    const struct pd_store_writer_params *params,
                                    struct pd_store_writer **out, struct pd_err *err);

/* Queues a copy of *t (text and attention blob are copied). Returns immediately; the
 * position check happens on the writer thread (a gap or repeat makes the writer fail).
 * A failed writer keeps queueing (see pd_store_writer_status). PD_ENOMEM on allocation
 * failure or a full queue (queue_max records waiting). */
enum pd_status pd_store_writer_push_token(struct pd_store_writer *w,
                                          const struct pd_token_rec *t, struct pd_err *err);

/* Like push_token but takes ownership of t->text and t->attn (no copy); they are
 * NULLed in *t, also on failure (then freed). */
enum pd_status pd_store_writer_push_token_take(struct pd_store_writer *w,
                                               struct pd_token_rec *t, struct pd_err *err);

/* Queues a KV event / a step upsert (by index). */
enum pd_status pd_store_writer_push_kv(struct pd_store_writer *w,
                                       const struct pd_kv_event_rec *ev, struct pd_err *err);
enum pd_status pd_store_writer_push_step(struct pd_store_writer *w, const struct pd_step_rec *s,
                                         struct pd_err *err);

/* PD_OK, or the error of the commit that failed (database locked past the busy timeout,
 * disk full, ...) with its message in *err (may be NULL). The failed batch and everything
 * pushed since stay in memory, unsaved, until pd_store_writer_retry. Any thread. */
enum pd_status pd_store_writer_status(struct pd_store_writer *w, struct pd_err *err);

/* After a failure: clears it and lets the writer resume with the batch that failed (it
 * may fail again, e.g. while the disk is still full). No-op otherwise. Any thread. */
void pd_store_writer_retry(struct pd_store_writer *w);

/* Tokens pushed but not committed yet (queued, or held after a failure). Any thread. */
uint64_t pd_store_writer_unsaved(struct pd_store_writer *w);

/* Session length committed so far (last committed position + 1; fork_pos or 0 before
 * the first commit). Lock-free; any thread. */
int64_t pd_store_writer_committed(const struct pd_store_writer *w);

/* Blocks until everything pushed before the call is committed, or a commit fails.
 * Returns the writer's status. For the owner thread, not the generation loop. */
enum pd_status pd_store_writer_flush(struct pd_store_writer *w, struct pd_err *err);

/* Commits what is queued, optionally marks the session finished (generation ended
 * normally), stops the thread and closes the connection. A writer whose last commit
 * failed (and was not retried) commits nothing more: its unsaved records are dropped
 * (ask pd_store_writer_unsaved first) and its error returned. Accepts NULL and
 * *w == NULL; NULLs *w. */
enum pd_status pd_store_writer_close(struct pd_store_writer **w, bool finished,
                                     struct pd_err *err);

#endif
