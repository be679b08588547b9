/* store_writer.c - the streaming writer: a queue the generation fills, a thread that
 * commits it in small transactions.
 *
 * DESIGN
 * - Two sets of arrays (tokens, KV events, steps): `pending`, filled by producers under
 *   the mutex, and `draining`, owned by the writer thread. The writer swaps them under the
 *   mutex (O(1)) and then talks to SQLite without holding it, so a producer waits at most
 *   for a swap, never for SQLite. Swapped-back arrays keep their capacity: in steady state
 *   a push allocates only the token's text/blob copies (none with push_token_take).
 * - Ordering: tokens commit in push order in chunks of at most batch_max per transaction;
 *   a chunk's transaction also carries the KV events and steps queued with it. Each
 *   commit publishes the session length through an atomic for pd_store_writer_committed.
 * - Failure keeps the records: a failed transaction is rolled back and its error kept
 *   (pd_store_writer_status); its records stay in `draining` (from `drain_from` on) and
 *   later pushes keep queueing in memory (up to queue_max), so nothing is lost while
 *   the database is locked or the disk is full. The thread then waits until
 *   pd_store_writer_retry clears the error and resumes where the commit failed. Closing
 *   a failed writer drops what is still unsaved and says how much.
 * - The thread blocks all signals, so a terminal's signals reach the owner thread. */
#include "store_writer.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mem.h"
#include "store_internal.h"

struct wqueue {
    struct pd_token_rec *tok;   /* owned records (text/attn owned too) */
    size_t n_tok, cap_tok;
    struct pd_kv_event_rec *kv;
    size_t n_kv, cap_kv;
    struct pd_step_rec *step;
    size_t n_step, cap_step;
};

struct pd_store_writer {
    struct pd_store *st;        /* owned: the writer thread's connection */
    int64_t session_id;
    struct pd_store_writer_params p;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t wake;        /* writer waits for work */
    pthread_cond_t done;        /* flush waits for progress */
    struct wqueue pending;      /* guarded by mu */
    struct wqueue draining;     /* writer thread only */
    size_t drain_from;          /* first token of draining not committed (after a failure) */
    bool drain_left;            /* draining holds records a failed commit left; guarded by mu */
    uint64_t n_pushed;          /* records pushed; guarded by mu */
    uint64_t n_done;            /* records committed or dropped; guarded by mu */
    bool stop;                  /* guarded by mu */
    bool hurry;                 /* a flush waits: skip the batching delay; guarded by mu */
    enum pd_status status;      /* the last commit's failure, until a retry; guarded by mu */
    uint64_t n_tok_pushed;      /* tokens pushed; guarded by mu */
    _Atomic uint64_t n_tok_saved; /* tokens committed */
    struct pd_err err;          /* guarded by mu */
    _Atomic int64_t committed;
};

struct pd_store_writer_params pd_store_writer_default_params(void)
{
    struct pd_store_writer_params p = {.batch_max = 64, .flush_ms = 50, .queue_max = 1u << 20};
    return p;
}

static size_t queue_len(const struct wqueue *q)
{
    return q->n_tok + q->n_kv + q->n_step;
}

static void queue_clear(struct wqueue *q)
{
    for (size_t i = 0; i < q->n_tok; i++) {
        pd_token_rec_free(&q->tok[i]);
    }
    q->n_tok = q->n_kv = q->n_step = 0;
}

static void queue_free(struct wqueue *q)
{
    queue_clear(q);
    free(q->tok);
    free(q->kv);
    free(q->step);
    memset(q, 0, sizeof *q);
}

/* Commits draining[tok_from .. tok_from + n_tok) and, when `with_rest`, all queued KV
 * events and steps, in one transaction. */
static enum pd_status commit_chunk(struct pd_store_writer *w, size_t tok_from, size_t n_tok,
                                   bool with_rest, struct pd_err *err)
{
    struct wqueue *q = &w->draining;
    enum pd_status rc = pd_store_op_begin(w->st, err);
    if (rc != PD_OK) {
        return rc;
    }
    if (n_tok > 0) {
        rc = pd_store_tokens_insert(w->st, w->session_id, q->tok + tok_from, n_tok, err);
    }
    if (rc == PD_OK && with_rest && q->n_kv > 0) {
        rc = pd_store_kv_insert(w->st, w->session_id, q->kv, q->n_kv, err);
    }
    if (rc == PD_OK && with_rest && q->n_step > 0) {
        rc = pd_store_steps_upsert(w->st, w->session_id, q->step, q->n_step, err);
    }
    rc = pd_store_op_end(w->st, rc, err);
    if (rc == PD_OK && n_tok > 0) {
        int64_t n = q->tok[tok_from + n_tok - 1].pos + 1;
        atomic_store(&w->committed, n);
        if (w->p.on_commit) {
            w->p.on_commit(w->p.ud, n);
        }
    }
    return rc;
}

/* Writes draining from drain_from on. On success it is emptied; on failure it keeps the
 * uncommitted records (and the error) until a retry. */
static void drain(struct pd_store_writer *w)
{
    struct wqueue *q = &w->draining;
    struct pd_err e;
    pd_err_clear(&e);
    enum pd_status rc = PD_OK;
    size_t from = w->drain_from;
    do {
        size_t n = q->n_tok - from;
        if (n > w->p.batch_max) {
            n = w->p.batch_max;
        }
        bool last = from + n == q->n_tok;
        rc = commit_chunk(w, from, n, last, &e);
        if (rc == PD_OK) {
            from += n;
            atomic_fetch_add(&w->n_tok_saved, n);
        }
    } while (rc == PD_OK && from < q->n_tok);
    size_t n_items = queue_len(q);
    if (rc == PD_OK) {
        queue_clear(q);
        w->drain_from = 0;
    } else {
        w->drain_from = from;
    }
    pthread_mutex_lock(&w->mu);
    if (rc != PD_OK) {
        w->status = rc;
        w->err = e;
        w->drain_left = true;
    } else {
        w->drain_left = false;
        w->n_done += n_items;
    }
    pthread_cond_broadcast(&w->done);
    pthread_mutex_unlock(&w->mu);
}

static void deadline_after_ms(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *writer_main(void *arg)
{
    struct pd_store_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        /* After a failure: wait for a retry (or the end), then resume the failed batch. */
        while (w->status != PD_OK && !w->stop) {
            pthread_cond_wait(&w->wake, &w->mu);
        }
        if (w->status != PD_OK) {
            break; /* closing a failed writer: what is unsaved is dropped */
        }
        if (w->drain_left) {
            pthread_mutex_unlock(&w->mu);
            drain(w);
            pthread_mutex_lock(&w->mu);
            continue;
        }
        while (queue_len(&w->pending) == 0 && !w->stop) {
            pthread_cond_wait(&w->wake, &w->mu);
        }
        if (queue_len(&w->pending) == 0) {
            break; /* stop requested and nothing left */
        }
        if (queue_len(&w->pending) < w->p.batch_max && !w->stop && !w->hurry) {
            struct timespec dl;
            deadline_after_ms(&dl, w->p.flush_ms);
            while (queue_len(&w->pending) < w->p.batch_max && !w->stop && !w->hurry) {
                if (pthread_cond_timedwait(&w->wake, &w->mu, &dl) == ETIMEDOUT) {
                    break;
                }
            }
        }
        struct wqueue tmp = w->pending;
        w->pending = w->draining;
        w->draining = tmp;
        w->drain_from = 0;
        pthread_mutex_unlock(&w->mu);
        drain(w);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

enum pd_status pd_store_writer_open(struct pd_store *st, int64_t session_id,
                                    const struct pd_store_writer_params *params,
                                    struct pd_store_writer **out, struct pd_err *err)
{
    *out = NULL;
    int64_t fork_pos = 0, n_next = 0;
    enum pd_status rc = pd_store_session_exists(st, session_id, NULL, &fork_pos, err);
    if (rc != PD_OK) {
        return rc;
    }
    struct pd_store_writer *w = calloc(1, sizeof *w);
    if (!w) {
        return pd_err_set(err, PD_ENOMEM, "writer: out of memory");
    }
    w->p = params ? *params : pd_store_writer_default_params();
    if (w->p.batch_max == 0) {
        w->p.batch_max = 64;
    }
    if (w->p.flush_ms <= 0) {
        w->p.flush_ms = 50;
    }
    if (w->p.queue_max == 0) {
        w->p.queue_max = 1u << 20;
    }
    w->session_id = session_id;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake, &ca);
    pthread_cond_init(&w->done, NULL);
    pthread_condattr_destroy(&ca);
    struct pd_store_params sp = pd_store_default_params();
    sp.create = false;
    sp.busy_ms = w->p.busy_ms;
    rc = pd_store_open(pd_store_path(st), &sp, &w->st, err);
    if (rc == PD_OK) {
        rc = pd_store_session_exists(w->st, session_id, NULL, &fork_pos, err);
    }
    if (rc == PD_OK) {
        /* where the session stands now: a writer may continue an earlier one */
        sqlite3_stmt *s = pd_store_prepare(
            w->st, "SELECT coalesce(max(pos) + 1, ?2) FROM tokens WHERE session_id = ?1", err);
        rc = s ? PD_OK : PD_EDB;
        if (s) {
            sqlite3_bind_int64(s, 1, session_id);
            sqlite3_bind_int64(s, 2, fork_pos);
            if (sqlite3_step(s) == SQLITE_ROW) {
                n_next = sqlite3_column_int64(s, 0);
            } else {
                rc = pd_store_dberr(w->st, err, "writer open");
            }
            sqlite3_finalize(s);
        }
    }
    if (rc != PD_OK) {
        goto fail;
    }
    atomic_init(&w->committed, n_next);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int perr = pthread_create(&w->thread, NULL, writer_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (perr != 0) {
        rc = pd_err_set(err, PD_ENOMEM, "writer: cannot start thread: %s", strerror(perr));
        goto fail;
    }
    w->thread_started = true;
    *out = w;
    return PD_OK;
fail:
    pd_store_close(&w->st);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->done);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return rc;
}

/* Common front of the push functions: the queue bound (a failed writer keeps queueing in
 * memory until a retry; the failure is reported by pd_store_writer_status). Called locked. */
static enum pd_status push_check(struct pd_store_writer *w, struct pd_err *err)
{
    if (queue_len(&w->pending) >= w->p.queue_max) {
        return pd_err_set(err, PD_ENOMEM, "writer: %zu records queued; the database is not "
                          "keeping up", queue_len(&w->pending));
    }
    return PD_OK;
}

/* Wakes the writer when the queue just became non-empty or reached a batch. */
static void push_done(struct pd_store_writer *w)
{
    size_t n = queue_len(&w->pending);
    w->n_pushed++;
    if (n == 1 || n >= w->p.batch_max) {
        pthread_cond_signal(&w->wake);
    }
}

enum pd_status pd_store_writer_push_token_take(struct pd_store_writer *w,
                                               struct pd_token_rec *t, struct pd_err *err)
{
    pthread_mutex_lock(&w->mu);
    enum pd_status rc = push_check(w, err);
    struct pd_token_rec *na = NULL;
    if (rc == PD_OK && !(na = pd_grow_array(w->pending.tok, &w->pending.cap_tok,
                                            w->pending.n_tok + 1, sizeof *t))) {
        rc = pd_err_set(err, PD_ENOMEM, "writer: out of memory");
    }
    if (rc == PD_OK) {
        w->pending.tok = na;
        w->pending.tok[w->pending.n_tok++] = *t;
        t->text = NULL;
        t->attn = NULL;
        w->n_tok_pushed++;
        push_done(w);
    }
    pthread_mutex_unlock(&w->mu);
    if (rc != PD_OK) {
        pd_token_rec_free(t);
    }
    return rc;
}

enum pd_status pd_store_writer_push_token(struct pd_store_writer *w,
                                          const struct pd_token_rec *t, struct pd_err *err)
{
    struct pd_token_rec c = *t;
    c.text = pd_strndup(t->text ? t->text : "", t->text ? t->text_len : 0);
    c.text_len = t->text ? t->text_len : 0;
    c.attn = NULL;
    if (c.text && t->attn) {
        c.attn = malloc(t->attn_len ? t->attn_len : 1);
        if (c.attn) {
            memcpy(c.attn, t->attn, t->attn_len);
        }
    }
    if (!c.text || (t->attn && !c.attn)) {
        pd_token_rec_free(&c);
        return pd_err_set(err, PD_ENOMEM, "writer: out of memory");
    }
    return pd_store_writer_push_token_take(w, &c, err);
}

enum pd_status pd_store_writer_push_kv(struct pd_store_writer *w,
                                       const struct pd_kv_event_rec *ev, struct pd_err *err)
{
    pthread_mutex_lock(&w->mu);
    enum pd_status rc = push_check(w, err);
    struct pd_kv_event_rec *na = NULL;
    if (rc == PD_OK && !(na = pd_grow_array(w->pending.kv, &w->pending.cap_kv,
                                            w->pending.n_kv + 1, sizeof *ev))) {
        rc = pd_err_set(err, PD_ENOMEM, "writer: out of memory");
    }
    if (rc == PD_OK) {
        w->pending.kv = na;
        w->pending.kv[w->pending.n_kv++] = *ev;
        push_done(w);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

enum pd_status pd_store_writer_push_step(struct pd_store_writer *w, const struct pd_step_rec *s,
                                         struct pd_err *err)
{
    pthread_mutex_lock(&w->mu);
    enum pd_status rc = push_check(w, err);
    struct pd_step_rec *na = NULL;
    if (rc == PD_OK && !(na = pd_grow_array(w->pending.step, &w->pending.cap_step,
                                            w->pending.n_step + 1, sizeof *s))) {
        rc = pd_err_set(err, PD_ENOMEM, "writer: out of memory");
    }
    if (rc == PD_OK) {
        w->pending.step = na;
        w->pending.step[w->pending.n_step++] = *s;
        push_done(w);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

enum pd_status pd_store_writer_status(struct pd_store_writer *w, struct pd_err *err)
{
    pthread_mutex_lock(&w->mu);
    enum pd_status rc = w->status;
    if (rc != PD_OK && err) {
        *err = w->err;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void pd_store_writer_retry(struct pd_store_writer *w)
{
    pthread_mutex_lock(&w->mu);
    if (w->status != PD_OK) {
        w->status = PD_OK;
        pd_err_clear(&w->err);
        pthread_cond_signal(&w->wake);
    }
    pthread_mutex_unlock(&w->mu);
}

uint64_t pd_store_writer_unsaved(struct pd_store_writer *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t n = w->n_tok_pushed - atomic_load(&w->n_tok_saved);
    pthread_mutex_unlock(&w->mu);
    return n;
}

int64_t pd_store_writer_committed(const struct pd_store_writer *w)
{
    return atomic_load(&((struct pd_store_writer *)w)->committed);
}

enum pd_status pd_store_writer_flush(struct pd_store_writer *w, struct pd_err *err)
{
    pthread_mutex_lock(&w->mu);
    uint64_t target = w->n_pushed;
    w->hurry = true;
    pthread_cond_signal(&w->wake);
    while (w->n_done < target && w->status == PD_OK) {
        pthread_cond_wait(&w->done, &w->mu);
    }
    w->hurry = false;
    enum pd_status rc = w->status;
    if (rc != PD_OK && err) {
        *err = w->err;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

enum pd_status pd_store_writer_close(struct pd_store_writer **wp, bool finished,
                                     struct pd_err *err)
{
    if (!wp || !*wp) {
        return PD_OK;
    }
    struct pd_store_writer *w = *wp;
    *wp = NULL;
    if (w->thread_started) {
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    enum pd_status rc = w->status;
    if (rc != PD_OK && err) {
        *err = w->err;
    }
    if (rc == PD_OK && finished) {
        rc = pd_store_session_finish(w->st, w->session_id, err);
    }
    queue_free(&w->pending);
    queue_free(&w->draining);
    pd_store_close(&w->st);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->done);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return rc;
}
