/* session.c - the live generation session: worker thread, event and command queues,
 * roles and thinking modes, KV policy enforcement/shadowing, branch and prune.
 * See session.h for the DESIGN block (threads, roles, positions). */
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "attn_blob.h"
#include "log.h"
#include "mem.h"
#include "probe.h"

#define CMD_QUEUE_MAX 256
#define EV_MAX 1024
#define EV_BYTES_MAX (32u << 20)

struct pd_session_params pd_session_default_params(void)
{
    struct pd_session_params p;
    memset(&p, 0, sizeof p);
    p.ctx = pd_ctx_default_params();
    p.sampling = pd_sampler_default_params();
    p.topk = 5;
    p.capture = PD_CAPTURE_LEVEL_SUMMARY;
    p.summary_top_n = 8;
    pd_chat_format_default(PD_CHAT_FAMILY_RAW, &p.chat);
    p.mode = PD_MODE_LONG;
    return p;
}

void pd_event_free(struct pd_event *ev)
{
    if (!ev) {
        return;
    }
    pd_token_rec_free(&ev->tok);
    pd_attn_rows_free(ev->rows);
    ev->rows = NULL;
}

/* ---- the session object ------------------------------------------------------------- */

struct pd_session {
    const struct pd_model *model; /* borrowed */
    const struct pd_tok *tok;     /* borrowed */
    struct pd_session_params p;
    struct pd_ctx *ctx;
    struct pd_sampler *sampler;
    struct pd_kv_policy *policy;  /* owned */
    struct pd_capture_state cap;
    bool cap_ready;

    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    atomic_bool running;
    pthread_mutex_t lock;
    pthread_cond_t cond;          /* commands arrived (pause wait) */
    pthread_cond_t space;         /* the consumer took events (backpressure wait) */
    int pipe_fd[2];

    /* events FIFO (guarded by lock), bounded: EV_MAX events and EV_BYTES_MAX bytes of
     * owned payload (text, blobs, full rows); the worker waits for room (backpressure) */
    struct pd_event *ev;
    size_t ev_head, ev_len, ev_cap;
    size_t ev_bytes;
    /* commands FIFO (guarded by lock) */
    struct pd_cmd *cmd;
    size_t cmd_head, cmd_len;

    /* ---- worker-only state ---- */
    int32_t *seq;                 /* [seq_cap] token ids by position - seq_base */
    uint32_t *seq_think;          /* [seq_cap] thinking state after each token: bit 31 open,
                                   * bit 30 closed once, low bits thinking tokens so far */
    size_t n_seq, seq_cap;
    size_t seq_base;              /* positions before it are forgotten (no_history) */
    int32_t *prompt;              /* initial prompt tokens (owned) */
    size_t n_prompt;
    int32_t *forced;              /* pending forced tokens */
    size_t n_forced, i_forced, forced_cap;
    bool paused;
    struct pd_think_state th;     /* thinking state after the latest token (modes.h) */
    uint32_t n_generated;         /* in this leg (since the start, a branch or a continue) */
    uint32_t leg_predict;         /* this leg's n_predict (0: until the end) */
    bool done;                    /* keep_alive: parked after an end, waiting for a command */
    uint8_t *hist_roles;          /* pd_session_start_history: roles of the prompt tokens */
    double prefill_t0;            /* progress events of the current prefill */
    double prefill_shown;
    struct pd_modes_state modes;   /* the thinking controller (modes.h) */
    const struct pd_modes_texts *texts; /* static: the chat family's mode texts */
    bool in_prefill;
    int64_t prefill_end;
    int64_t min_evicted_pos;      /* smallest position ever evicted (INT64_MAX: none) */
    uint8_t **shadow;             /* [n_layer][cap]: shadow-evicted flags (shadow mode) */
    float *rowbuf;                /* [n_head][n_ctx] compacted rows for the policy */
    int64_t *posbuf;              /* [n_ctx] */
    uint8_t *maskbuf;             /* [n_ctx] */
    uint8_t *maskbuf2;            /* [n_ctx] */
    struct pd_token_rec *recs;    /* prefill probes [n] */
    double t_decode0;
    double paused_s;              /* time spent paused since t_decode0 (not decoding) */
    double paused_at;             /* when the current pause began (0: not paused) */
    uint32_t n_decode;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- queues ------------------------------------------------------------------------- */

static void wake(struct pd_session *s)
{
    char c = 1;
    ssize_t r = write(s->pipe_fd[1], &c, 1);
    (void)r; /* a full pipe already wakes the reader */
}

/* Pushes ev (ownership moves to the queue). On allocation failure the event is dropped
 * (its owned parts freed) — the worker never blocks on the UI. */
/* Bytes an event holds beyond its struct: what the queue's byte bound counts. */
static size_t event_bytes(const struct pd_event *ev)
{
    size_t n = ev->tok.text_len + ev->tok.attn_len;
    const struct pd_attn_rows *r = ev->rows;
    for (uint32_t l = 0; r && l < r->n_layer; l++) {
        n += (size_t)r->n_slots[l] * (sizeof(int64_t) + (size_t)r->n_head * sizeof(float));
    }
    return n;
}

static void push_event(struct pd_session *s, struct pd_event *ev)
{
    ev->kv_cap = s->ctx ? s->ctx->kv->cap : 0;
    ev->kv_used = s->ctx ? s->ctx->kv->cap - pd_ctx_kv_free(s->ctx) : 0;
    size_t bytes = event_bytes(ev);
    pthread_mutex_lock(&s->lock);
    /* Backpressure: a consumer that stops reading stops the worker instead of letting the
     * queue grow. One event always fits an empty queue; stop ends the wait. */
    while (s->ev_len > 0 && (s->ev_len >= EV_MAX || s->ev_bytes + bytes > EV_BYTES_MAX) &&
           !atomic_load(&s->stop)) {
        pthread_cond_wait(&s->space, &s->lock);
    }
    if (s->ev_len == s->ev_cap) {
        size_t cap = s->ev_cap ? s->ev_cap * 2 : 256;
        struct pd_event *n = pd_malloc_array(cap, sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&s->lock);
            pd_event_free(ev);
            return;
        }
        for (size_t i = 0; i < s->ev_len; i++) {
            n[i] = s->ev[(s->ev_head + i) % s->ev_cap];
        }
        free(s->ev);
        s->ev = n;
        s->ev_cap = cap;
        s->ev_head = 0;
    }
    s->ev[(s->ev_head + s->ev_len) % s->ev_cap] = *ev;
    s->ev_len++;
    s->ev_bytes += bytes;
    pthread_mutex_unlock(&s->lock);
    wake(s);
}

static void push_simple(struct pd_session *s, enum pd_event_kind kind, int64_t pos,
                        int64_t pos_end, const char *text)
{
    struct pd_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    ev.pos = pos;
    ev.pos_end = pos_end;
    if (text) {
        snprintf(ev.text, sizeof ev.text, "%s", text);
    }
    push_event(s, &ev);
}

bool pd_session_poll(struct pd_session *s, struct pd_event *ev)
{
    bool got = false;
    pthread_mutex_lock(&s->lock);
    if (s->ev_len > 0) {
        *ev = s->ev[s->ev_head];
        s->ev_head = (s->ev_head + 1) % s->ev_cap;
        s->ev_len--;
        size_t b = event_bytes(ev);
        s->ev_bytes = b > s->ev_bytes ? 0 : s->ev_bytes - b;
        pthread_cond_signal(&s->space);
        got = true;
    }
    if (s->ev_len == 0) {
        char buf[256];
        while (read(s->pipe_fd[0], buf, sizeof buf) > 0) {
        }
    }
    pthread_mutex_unlock(&s->lock);
    return got;
}

void pd_session_queued(struct pd_session *s, size_t *n_events, size_t *bytes)
{
    pthread_mutex_lock(&s->lock);
    *n_events = s->ev_len;
    *bytes = s->ev_bytes;
    pthread_mutex_unlock(&s->lock);
}

bool pd_session_wait(struct pd_session *s, struct pd_event *ev, int timeout_ms)
{
    if (pd_session_poll(s, ev)) {
        return true;
    }
    struct pollfd pfd = {s->pipe_fd[0], POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) <= 0) {
        return false;
    }
    return pd_session_poll(s, ev);
}

int pd_session_fd(const struct pd_session *s)
{
    return s->pipe_fd[0];
}

bool pd_session_running(const struct pd_session *s)
{
    return atomic_load(&s->running);
}

enum pd_status pd_session_send(struct pd_session *s, const struct pd_cmd *cmd,
                               struct pd_err *err)
{
    if (!atomic_load(&s->running)) {
        return pd_err_set(err, PD_EINVAL, "the session is not running");
    }
    if ((unsigned)cmd->kind >= PD_CMD_KIND_COUNT) {
        return pd_err_set(err, PD_EINVAL, "unknown command %d", (int)cmd->kind);
    }
    if (cmd->kind == PD_CMD_STOP) {
        atomic_store(&s->stop, true);
    }
    pthread_mutex_lock(&s->lock);
    if (s->cmd_len == CMD_QUEUE_MAX) {
        pthread_mutex_unlock(&s->lock);
        return pd_err_set(err, PD_EINVAL, "command queue full");
    }
    s->cmd[(s->cmd_head + s->cmd_len) % CMD_QUEUE_MAX] = *cmd;
    s->cmd_len++;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return PD_OK;
}

static bool take_cmd(struct pd_session *s, struct pd_cmd *out)
{
    bool got = false;
    pthread_mutex_lock(&s->lock);
    if (s->cmd_len > 0) {
        *out = s->cmd[s->cmd_head];
        s->cmd_head = (s->cmd_head + 1) % CMD_QUEUE_MAX;
        s->cmd_len--;
        got = true;
    }
    pthread_mutex_unlock(&s->lock);
    return got;
}

/* ---- sequence bookkeeping ------------------------------------------------------------ */

/* Without history the arrays hold at most no_history_keep positions (default
 * NO_HISTORY_KEEP): when full, the older half is dropped. */
#define NO_HISTORY_KEEP 4096

static bool seq_push(struct pd_session *s, int32_t id)
{
    size_t keep = s->p.no_history_keep >= 2 ? s->p.no_history_keep : NO_HISTORY_KEEP;
    if (s->p.no_history && s->n_seq - s->seq_base == keep) {
        size_t half = keep / 2;
        memmove(s->seq, s->seq + half, half * sizeof *s->seq);
        memmove(s->seq_think, s->seq_think + half, half * sizeof *s->seq_think);
        s->seq_base += half;
    }
    if (s->n_seq - s->seq_base == s->seq_cap) {
        size_t cap = s->seq_cap ? s->seq_cap * 2 : 1024;
        int32_t *n = pd_realloc_array(s->seq, cap, sizeof *n);
        if (!n) {
            return false;
        }
        s->seq = n;
        uint32_t *t = pd_realloc_array(s->seq_think, cap, sizeof *t);
        if (!t) {
            return false;
        }
        s->seq_think = t;
        s->seq_cap = cap;
    }
    size_t i = s->n_seq++ - s->seq_base;
    s->seq_think[i] = pd_think_pack(&s->th);
    s->seq[i] = id;
    return true;
}

/* Commands that need every position's token refuse a session without history. */
static enum pd_status need_history(const struct pd_session *s, const char *what,
                                   struct pd_err *err)
{
    if (s->p.no_history) {
        return pd_err_set(err, PD_EINVAL, "%s: this session keeps no token history", what);
    }
    return PD_OK;
}

/* Restores a thinking state recorded by seq_push. */
static void think_state_set(struct pd_session *s, uint32_t v)
{
    pd_think_unpack(&s->th, v);
    s->modes.closed = !s->th.open;
}

/* Queues ids[0..n) to be fed before anything is sampled again. */
static enum pd_status force_ids(struct pd_session *s, const int32_t *ids, size_t n,
                                struct pd_err *err)
{
    size_t pending = s->n_forced - s->i_forced;
    if (pending + n > s->forced_cap) {
        size_t cap = pending + n + 64;
        int32_t *f = pd_malloc_array(cap, sizeof *f);
        if (!f) {
            return pd_err_set(err, PD_ENOMEM, "out of memory (injection)");
        }
        if (pending) {
            memcpy(f, s->forced + s->i_forced, pending * sizeof *f);
        }
        free(s->forced);
        s->forced = f;
        s->forced_cap = cap;
    } else if (pending) {
        memmove(s->forced, s->forced + s->i_forced, pending * sizeof *s->forced);
    }
    s->i_forced = 0;
    if (n) {
        memcpy(s->forced + pending, ids, n * sizeof *ids);
    }
    s->n_forced = pending + n;
    return PD_OK;
}

static enum pd_status force_text(struct pd_session *s, const char *text, struct pd_err *err)
{
    int32_t *ids = NULL;
    size_t n = 0;
    enum pd_status st = pd_tok_encode_cont(s->tok, text, strlen(text), true, &ids, &n, err);
    if (!st) {
        st = force_ids(s, ids, n, err);
    }
    free(ids);
    return st;
}

/* ---- KV policy plumbing -------------------------------------------------------------- */

static bool shadow_mode(const struct pd_session *s)
{
    return s->policy && s->policy->mode == PD_KV_MODE_SHADOW;
}

/* Builds the policy's view of layer il: positions (and the map from view to cache slot
 * through maskbuf2 = 1 for slots in the view). Returns the view size. */
static int64_t policy_view(struct pd_session *s, uint32_t il, uint32_t n_slots,
                           const int64_t *slot_pos)
{
    int64_t nv = 0;
    const uint8_t *sh = shadow_mode(s) ? s->shadow[il] : NULL;
    for (uint32_t k = 0; k < n_slots; k++) {
        bool in = !sh || !sh[k];
        s->maskbuf2[k] = in;
        if (in) {
            s->posbuf[nv++] = slot_pos[k];
        }
    }
    return nv;
}

static void policy_observer(void *ud, uint32_t il, int64_t pos, const float *probs,
                            uint32_t n_head, uint32_t n_slots, const int64_t *slot_pos)
{
    struct pd_session *s = ud;
    struct pd_kv_policy *p = s->policy;
    if (!p) {
        return;
    }
    bool want = s->in_prefill ? (p->n_prefill_rows != 0 &&
                                 (p->n_prefill_rows == PD_KV_ROWS_ALL ||
                                  pos >= s->prefill_end - p->n_prefill_rows))
                              : p->needs_decode_attn;
    if (!want) {
        return;
    }
    int64_t nv = policy_view(s, il, n_slots, slot_pos);
    uint32_t n_ctx = s->ctx->params.n_ctx;
    bool mean = p->agg == PD_KV_AGG_MEAN;
    uint32_t rows = mean ? 1 : n_head;
    for (uint32_t r = 0; r < rows; r++) {
        float *dst = s->rowbuf + (size_t)r * nv;
        int64_t v = 0;
        for (uint32_t k = 0; k < n_slots; k++) {
            if (!s->maskbuf2[k]) {
                continue;
            }
            float acc;
            if (mean) {
                acc = 0.0f;
                for (uint32_t h = 0; h < n_head; h++) {
                    acc += probs[(size_t)h * n_ctx + k];
                }
                acc /= (float)n_head;
            } else {
                acc = probs[(size_t)r * n_ctx + k];
            }
            dst[v++] = acc;
        }
    }
    struct pd_err err;
    enum pd_status st;
    if (s->in_prefill) {
        st = p->ops->observe_prefill(p, (int32_t)il, s->rowbuf, (int32_t)rows, 1, nv, s->posbuf,
                                     pos, s->prefill_end, &err);
    } else {
        st = p->ops->observe(p, (int32_t)il, s->rowbuf, (int32_t)rows, nv, s->posbuf, pos,
                             &err);
    }
    if (st) {
        pd_log(PD_LOG_WARN, "kv policy observe: %s", err.msg);
    }
}

/* Removes the cache slots of layer il marked in mask (over cache slots) and keeps the
 * policy state and shadow flags aligned. */
static void remove_slots(struct pd_session *s, uint32_t il, const uint8_t *mask)
{
    struct pd_kv_layer *L = &s->ctx->kv->layers[il];
    struct pd_err err;
    if (s->policy) {
        if (shadow_mode(s)) {
            int64_t nv = 0;
            for (uint32_t k = 0; k < L->n; k++) {
                if (!s->shadow[il][k]) {
                    s->maskbuf2[nv++] = mask[k];
                }
            }
            if (nv > 0) {
                s->policy->ops->on_evicted(s->policy, (int32_t)il, nv, s->maskbuf2, &err);
            }
            uint32_t w = 0;
            for (uint32_t k = 0; k < L->n; k++) {
                if (!mask[k]) {
                    s->shadow[il][w++] = s->shadow[il][k];
                }
            }
        } else if (L->n > 0) {
            s->policy->ops->on_evicted(s->policy, (int32_t)il, L->n, mask, &err);
        }
    }
    pd_kvcache_evict(s->ctx->kv, il, mask);
}

/* Tells a backend that computes attention on its own device which rows the policy
 * observer will want in the next eval call starting at pos0 (capture.h). */
static void observer_need(struct pd_session *s, int64_t pos0)
{
    struct pd_kv_policy *p = s->policy;
    int64_t from = INT64_MAX;
    if (p && s->in_prefill) {
        if (p->n_prefill_rows == PD_KV_ROWS_ALL) {
            from = pos0;
        } else if (p->n_prefill_rows > 0) {
            from = s->prefill_end - p->n_prefill_rows;
        }
    } else if (p && p->needs_decode_attn) {
        from = pos0;
    }
    s->cap.observer_from = from;
    s->cap.observer_mean = p && p->agg == PD_KV_AGG_MEAN;
}

/* Asks the policy which slots to evict after an eval and applies the answer. */
static void policy_step(struct pd_session *s)
{
    struct pd_kv_policy *p = s->policy;
    if (!p) {
        return;
    }
    int64_t cur = s->ctx->n_past - 1;
    int64_t budget = pd_kv_budget_slots(&p->budget, cur + 1);
    for (uint32_t il = 0; il < s->ctx->kv->n_layer; il++) {
        struct pd_kv_layer *L = &s->ctx->kv->layers[il];
        int64_t nv = policy_view(s, il, L->n, L->pos);
        int64_t n_ev = 0;
        struct pd_err err;
        if (p->ops->select(p, (int32_t)il, nv, s->posbuf, cur, budget, s->maskbuf, &n_ev,
                           &err)) {
            pd_log(PD_LOG_WARN, "kv policy select: %s", err.msg);
            continue;
        }
        if (n_ev == 0) {
            continue;
        }
        bool shadow = shadow_mode(s);
        for (int64_t v = 0; v < nv; v++) {
            if (!s->maskbuf[v]) {
                continue;
            }
            struct pd_event ev;
            memset(&ev, 0, sizeof ev);
            ev.kind = PD_EV_EVICT;
            ev.pos = cur;
            ev.kv.at_pos = cur + 1;
            ev.kv.layer = (int32_t)il;
            ev.kv.slot_pos = s->posbuf[v];
            ev.kv.kind = shadow ? PD_KV_SHADOW_EVICT : PD_KV_EVICT;
            push_event(s, &ev);
            if (s->posbuf[v] < s->min_evicted_pos) {
                s->min_evicted_pos = s->posbuf[v];
            }
        }
        p->ops->on_evicted(p, (int32_t)il, nv, s->maskbuf, &err);
        if (shadow) {
            int64_t v = 0;
            for (uint32_t k = 0; k < L->n; k++) {
                if (!s->shadow[il][k]) {
                    s->shadow[il][k] = s->maskbuf[v++];
                }
            }
        } else {
            pd_kvcache_evict(s->ctx->kv, il, s->maskbuf);
        }
    }
}

/* Forgets every slot of every layer from the policy (before a re-encode). */
static void policy_forget_all(struct pd_session *s)
{
    if (!s->policy) {
        return;
    }
    struct pd_err err;
    for (uint32_t il = 0; il < s->ctx->kv->n_layer; il++) {
        struct pd_kv_layer *L = &s->ctx->kv->layers[il];
        int64_t nv = policy_view(s, il, L->n, L->pos);
        if (nv > 0) {
            memset(s->maskbuf, 1, (size_t)nv);
            s->policy->ops->on_evicted(s->policy, (int32_t)il, nv, s->maskbuf, &err);
        }
        if (s->shadow) {
            memset(s->shadow[il], 0, s->ctx->kv->cap);
        }
    }
}

/* ---- evaluation with probes ---------------------------------------------------------- */

struct prefill_cb {
    struct pd_session *s;
    const int32_t *tokens;
    size_t n;
};

#define PROGRESS_MIN_TOKENS 64   /* shorter prompts encode without progress events */
#define PROGRESS_EVERY_S 0.1

/* Prompt-encoding progress: done of total tokens, at most every PROGRESS_EVERY_S, and
 * once at the end. */
static void prefill_progress(struct pd_session *s, size_t done, size_t total)
{
    if (total < PROGRESS_MIN_TOKENS) {
        return;
    }
    double t = now_s();
    if (done < total && t - s->prefill_shown < PROGRESS_EVERY_S) {
        return;
    }
    s->prefill_shown = t;
    struct pd_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = PD_EV_PROGRESS;
    ev.pos = (int64_t)done;
    ev.pos_end = (int64_t)total;
    ev.rate = t > s->prefill_t0 ? (double)done / (t - s->prefill_t0) : 0;
    push_event(s, &ev);
}

static void prefill_logits(void *ud, size_t i, int64_t pos, const float *logits)
{
    (void)pos;
    struct prefill_cb *cb = ud;
    if (i + 1 < cb->n && cb->s->recs) {
        pd_probe_fill(logits, cb->s->model->hp.n_vocab, cb->tokens[i + 1], cb->s->p.topk,
                      &cb->s->recs[i + 1]);
    }
    prefill_progress(cb->s, i + 1, cb->n);
}

static void fill_text(struct pd_session *s, struct pd_token_rec *r)
{
    size_t len = 0;
    const char *piece = pd_tok_piece(s->tok, r->id, &len);
    r->text = pd_strndup(piece ? piece : "", len);
    r->text_len = r->text ? len : 0;
}

/* Copies token i's summary out of the capture: version 1, or version 3 with the mass on
 * each reasoning step it attends to (attn_blob.h: the steps whose slots were all evicted
 * are left out, so the summary is bounded by the cache, not by the number of steps). */
static void attach_blob(struct pd_session *s, struct pd_token_rec *r, size_t i)
{
    const uint8_t *b = s->cap_ready ? pd_capture_blob(&s->cap, i) : NULL;
    if (!b) {
        return;
    }
    uint32_t n_known = 0;
    const float *mass = pd_capture_step_mass(&s->cap, i, &n_known);
    uint32_t n_listed = pd_attn_blob_steps_listed(n_known, s->cap.steps, mass, r->pos);
    size_t len = pd_attn_blob_size(s->cap.n_layer, s->cap.top_n, n_listed);
    r->attn = len ? malloc(len) : NULL;
    if (!r->attn) {
        return;
    }
    memcpy(r->attn, b, s->cap.blob_len);
    if (n_listed) {
        pd_attn_blob_put_steps(r->attn, n_known, s->cap.steps, mass, r->pos);
    }
    r->attn_len = len;
}

static void emit_token(struct pd_session *s, struct pd_token_rec *r, bool with_rows)
{
    if (s->p.steps.feed) {
        int64_t begin;
        if (s->p.steps.feed(s->p.steps.ud, r, &begin)) {
            struct pd_err err;
            if (s->cap_ready && pd_capture_add_step(&s->cap, begin, &err)) {
                pd_log(PD_LOG_WARN, "%s", err.msg);
            }
            push_simple(s, PD_EV_STEP, begin, begin, NULL);
        }
    }
    struct pd_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = PD_EV_TOKEN;
    ev.pos = r->pos;
    ev.tok = *r;
    r->text = NULL;
    r->attn = NULL;
    if (with_rows) {
        ev.rows = s->cap_ready ? pd_capture_copy_rows(&s->cap) : NULL;
    }
    if (s->n_decode > 0) {
        /* decode speed over the time spent generating: pauses do not count */
        double gen = now_s() - s->t_decode0 - s->paused_s;
        ev.tok_per_s = s->n_decode / (gen > 1e-9 ? gen : 1e-9);
    }
    push_event(s, &ev);
}

/* Teacher-forces tokens[0..n) (prompt or re-encode), with probes; emits token events
 * when emit is set. The first token overall has no prediction (logprob NAN). */
static enum pd_status prefill(struct pd_session *s, const int32_t *tokens, size_t n,
                              enum pd_role role, bool emit, struct pd_err *err)
{
    if (n == 0) {
        return PD_OK;
    }
    struct pd_token_rec *recs = pd_calloc(n, sizeof *recs);
    if (!recs) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (prefill)");
    }
    int64_t pos0 = s->ctx->n_past;
    for (size_t i = 0; i < n; i++) {
        recs[i].pos = pos0 + (int64_t)i;
        recs[i].id = tokens[i];
        recs[i].role = role;
        recs[i].flags = PD_TOKF_FORCED;
        recs[i].logprob = NAN;
        recs[i].entropy = NAN;
    }
    /* The first token is predicted by the logits left by the previous eval, if any. */
    if (pos0 > 0 && s->ctx->has_logits) {
        struct pd_err perr;
        if (pd_ctx_probe(s->ctx, tokens[0], s->p.topk, &recs[0], &perr)) {
            pd_log(PD_LOG_WARN, "%s", perr.msg);
        }
    }
    s->recs = recs;
    struct prefill_cb cb = {s, tokens, n};
    enum pd_status st = PD_OK;
    if (s->cap_ready) {
        st = pd_capture_begin(&s->cap, pos0, n, err);
    }
    s->in_prefill = true;
    s->prefill_end = pos0 + (int64_t)n;
    if (s->cap_ready) {
        observer_need(s, pos0);
    }
    s->prefill_t0 = now_s();
    s->prefill_shown = s->prefill_t0;
    if (!st) {
        st = pd_ctx_eval(s->ctx, tokens, n, prefill_logits, &cb, err);
    }
    s->in_prefill = false;
    if (!st) {
        for (size_t i = 0; i < n && !st; i++) {
            if (!seq_push(s, tokens[i])) {
                st = pd_err_set(err, PD_ENOMEM, "out of memory (sequence)");
            }
        }
        policy_step(s);
    }
    for (size_t i = 0; i < n; i++) {
        if (!st && emit) {
            fill_text(s, &recs[i]);
            attach_blob(s, &recs[i], i);
            emit_token(s, &recs[i], false);
        }
        pd_token_rec_free(&recs[i]);
    }
    free(recs);
    s->recs = NULL;
    return st;
}

/* Appends one decoded token (sampled or forced) to the cache. */
static enum pd_status eval_one(struct pd_session *s, int32_t id, struct pd_err *err)
{
    enum pd_status st = PD_OK;
    if (s->cap_ready) {
        st = pd_capture_begin(&s->cap, s->ctx->n_past, 1, err);
        observer_need(s, s->ctx->n_past);
    }
    if (!st) {
        st = pd_ctx_eval(s->ctx, &id, 1, NULL, NULL, err);
    }
    if (!st && !seq_push(s, id)) {
        st = pd_err_set(err, PD_ENOMEM, "out of memory (sequence)");
    }
    if (!st) {
        policy_step(s);
    }
    return st;
}

/* Rebuilds the cache from scratch over tokens[0..n) (positions renumbered from 0). */
static enum pd_status reencode(struct pd_session *s, const int32_t *tokens, size_t n,
                               struct pd_err *err)
{
    policy_forget_all(s);
    pd_ctx_reset(s->ctx);
    if (s->cap_ready) {
        pd_capture_rewind(&s->cap, 0);
    }
    s->n_seq = 0;
    s->seq_base = 0;
    s->min_evicted_pos = INT64_MAX;
    return prefill(s, tokens, n, PD_ROLE_PROMPT, false, err);
}

/* ---- the end of a leg (keep_alive) ---------------------------------------------------- */

/* The generation reached an end: parked until a command starts a new leg. The parked time
 * does not count as decoding time. */
static void park(struct pd_session *s, const char *reason)
{
    s->done = true;
    s->paused_at = now_s();
    push_simple(s, PD_EV_FINISHED, s->ctx->n_past, s->ctx->n_past, reason);
}

/* A command that generates again after an end: a new leg of budget tokens (0: the
 * session's n_predict). */
static void unpark(struct pd_session *s, uint32_t budget)
{
    if (!s->done) {
        return;
    }
    s->done = false;
    s->paused_s += now_s() - s->paused_at;
    s->paused_at = 0;
    s->n_generated = 0;
    s->leg_predict = budget ? budget : s->p.n_predict;
    push_simple(s, PD_EV_RESUMED, s->ctx->n_past, s->ctx->n_past, "continue");
}

/* ---- commands ------------------------------------------------------------------------- */

static void answer_now(struct pd_session *s, const char *text)
{
    struct pd_err err;
    if (!s->th.open) {
        push_simple(s, PD_EV_MODE, s->ctx->n_past, s->ctx->n_past, "already answering");
        return;
    }
    if (force_text(s, text && *text ? text : s->texts->end_think, &err)) {
        push_simple(s, PD_EV_ERROR, s->ctx->n_past, s->ctx->n_past, err.msg);
        return;
    }
    push_simple(s, PD_EV_MODE, s->ctx->n_past, s->ctx->n_past, "answer now");
}

static enum pd_status apply_branch(struct pd_session *s, const struct pd_cmd *c,
                                   struct pd_err *err)
{
    int64_t pos = c->pos;
    enum pd_status hs = need_history(s, "branch", err);
    if (hs) {
        return hs;
    }
    if (pos < 1 || (size_t)pos > s->n_seq) {
        return pd_err_set(err, PD_EINVAL, "branch: position %lld outside [1, %zu]",
                          (long long)pos, s->n_seq);
    }
    if (c->token >= 0 && (uint32_t)c->token >= s->model->hp.n_vocab) {
        return pd_err_set(err, PD_EINVAL, "branch: token %d out of range", c->token);
    }
    s->n_forced = s->i_forced = 0;
    unpark(s, 0);
    s->n_generated = 0; /* each branch generates its own n_predict tokens */
    s->leg_predict = s->p.n_predict;
    uint32_t think = s->seq_think[pos - 1]; /* as it was after the token before the fork */
    if (s->min_evicted_pos < pos || (size_t)s->ctx->n_past != s->n_seq) {
        /* Evicted slots before the fork: rebuild the state the fork point had. */
        int32_t *copy = pd_malloc_array((size_t)pos, sizeof *copy);
        if (!copy) {
            return pd_err_set(err, PD_ENOMEM, "out of memory (branch)");
        }
        memcpy(copy, s->seq, (size_t)pos * sizeof *copy);
        enum pd_status st = reencode(s, copy, (size_t)pos, err);
        free(copy);
        if (st) {
            return st;
        }
    } else {
        for (uint32_t il = 0; il < s->ctx->kv->n_layer; il++) {
            struct pd_kv_layer *L = &s->ctx->kv->layers[il];
            for (uint32_t k = 0; k < L->n; k++) {
                s->maskbuf[k] = L->pos[k] >= pos - 1;
            }
            remove_slots(s, il, s->maskbuf);
        }
        s->ctx->n_past = pos - 1;
        s->n_seq = (size_t)pos - 1;
        if (s->cap_ready) {
            pd_capture_rewind(&s->cap, pos - 1);
        }
        /* Re-evaluate the token before the fork so its logits predict position pos. */
        enum pd_status st = eval_one(s, s->seq[pos - 1], err);
        if (st) {
            return st;
        }
    }
    think_state_set(s, think);
    if (s->p.steps.reset) {
        s->p.steps.reset(s->p.steps.ud, pos);
    }
    push_simple(s, PD_EV_BRANCHED, pos, pos, c->token >= 0 ? "alternative" : "resample");
    return c->token >= 0 ? force_ids(s, &c->token, 1, err) : PD_OK;
}

static enum pd_status apply_prune(struct pd_session *s, const struct pd_cmd *c,
                                  struct pd_err *err)
{
    int64_t b = c->pos, e = c->pos_end;
    int64_t last = s->ctx->n_past - 1;
    enum pd_status hs = need_history(s, "prune", err);
    if (hs) {
        return hs;
    }
    if (b < 0 || e <= b || e > last) {
        return pd_err_set(err, PD_EINVAL,
                          "prune: span [%lld, %lld) must lie before the newest token %lld",
                          (long long)b, (long long)e, (long long)last);
    }
    if (!c->reencode) {
        for (uint32_t il = 0; il < s->ctx->kv->n_layer; il++) {
            struct pd_kv_layer *L = &s->ctx->kv->layers[il];
            for (uint32_t k = 0; k < L->n; k++) {
                s->maskbuf[k] = L->pos[k] >= b && L->pos[k] < e;
            }
            remove_slots(s, il, s->maskbuf);
        }
        push_simple(s, PD_EV_PRUNED, b, e, "cache");
        return PD_OK;
    }
    if ((size_t)s->ctx->n_past != s->n_seq) {
        return pd_err_set(err, PD_EINVAL, "prune: re-encoding needs an unrenumbered sequence");
    }
    size_t n = s->n_seq - (size_t)(e - b);
    int32_t *copy = pd_malloc_array(n ? n : 1, sizeof *copy);
    if (!copy) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (prune)");
    }
    memcpy(copy, s->seq, (size_t)b * sizeof *copy);
    memcpy(copy + b, s->seq + e, (s->n_seq - (size_t)e) * sizeof *copy);
    enum pd_status st = reencode(s, copy, n, err);
    free(copy);
    if (!st) {
        push_simple(s, PD_EV_PRUNED, b, e, "reencode");
    }
    return st;
}

static enum pd_status divergence(struct pd_session *s, struct pd_err *err)
{
    if (!shadow_mode(s)) {
        return pd_err_set(err, PD_EINVAL, "divergence needs a KV policy in shadow mode");
    }
    int64_t p = s->ctx->n_past - 1;
    if (p < 1) {
        return pd_err_set(err, PD_EINVAL, "divergence: nothing generated yet");
    }
    int32_t id = s->seq[s->n_seq - 1 - s->seq_base];
    uint32_t nv = s->model->hp.n_vocab;
    float *masked = pd_malloc_array(nv, sizeof *masked);
    float *full = pd_malloc_array(nv, sizeof *full);
    if (!masked || !full) {
        free(masked);
        free(full);
        return pd_err_set(err, PD_ENOMEM, "out of memory (divergence)");
    }
    pd_attn_hook_fn hook = s->ctx->attn_hook;
    s->ctx->attn_hook = NULL;
    enum pd_status st;
    pd_kvcache_truncate(s->ctx->kv, p);
    s->ctx->n_past = p;
    s->ctx->hide = (const uint8_t *const *)s->shadow;
    st = pd_ctx_eval(s->ctx, &id, 1, NULL, NULL, err);
    s->ctx->hide = NULL;
    const float *lg = st ? NULL : pd_ctx_logits(s->ctx);
    if (!st && !lg) {
        st = pd_err_set(err, PD_ECUDA, "divergence: the logits are unavailable");
    }
    if (!st) {
        memcpy(masked, lg, nv * sizeof *masked);
        pd_kvcache_truncate(s->ctx->kv, p);
        s->ctx->n_past = p;
        st = pd_ctx_eval(s->ctx, &id, 1, NULL, NULL, err);
    }
    s->ctx->attn_hook = hook;
    lg = st ? NULL : pd_ctx_logits(s->ctx);
    if (!st && !lg) {
        st = pd_err_set(err, PD_ECUDA, "divergence: the logits are unavailable");
    }
    if (!st) {
        memcpy(full, lg, nv * sizeof *full);
        struct pd_dist_stats a = pd_probe_stats(full, nv), b = pd_probe_stats(masked, nv);
        double kl = 0.0;
        for (uint32_t i = 0; i < nv; i++) {
            double la = full[i] - a.lse, lb = masked[i] - b.lse;
            kl += exp(la) * (la - lb);
        }
        struct pd_event ev;
        memset(&ev, 0, sizeof ev);
        ev.kind = PD_EV_DIVERGENCE;
        ev.pos = p;
        ev.kl_bits = (kl < 0 ? 0 : kl) / M_LN2;
        ev.top1_agree = pd_argmax(full, nv) == pd_argmax(masked, nv);
        push_event(s, &ev);
    }
    free(masked);
    free(full);
    return st;
}

static enum pd_status recompute_attn(struct pd_session *s, int64_t pos, struct pd_err *err)
{
    enum pd_status hs = need_history(s, "attention", err);
    if (hs) {
        return hs;
    }
    if (pos < 0 || (size_t)pos >= s->n_seq || (size_t)s->ctx->n_past != s->n_seq) {
        return pd_err_set(err, PD_EINVAL, "attention: position %lld is not in the sequence",
                          (long long)pos);
    }
    struct pd_event ev;
    memset(&ev, 0, sizeof ev);
    enum pd_status st = pd_capture_recompute(s->model, s->seq, (size_t)pos + 1,
                                             s->ctx->params.n_threads, s->p.full_layers,
                                             &ev.rows, err);
    if (!st) {
        ev.kind = PD_EV_ATTN;
        ev.pos = pos;
        push_event(s, &ev);
    }
    return st;
}

/* Installs a new KV policy between tokens (takes ownership of np, which may be NULL). */
static enum pd_status set_policy(struct pd_session *s, struct pd_kv_policy *np,
                                 struct pd_err *err)
{
    uint32_t n_layer = s->model->hp.n_layer;
    uint32_t cap = s->ctx->kv->cap;
    if (np && np->n_layer != (int32_t)n_layer) {
        int32_t got = np->n_layer;
        pd_kv_policy_close(&np);
        return pd_err_set(err, PD_EINVAL, "kv policy: made for %d layers, the model has %u",
                          got, n_layer);
    }
    if (np && np->mode == PD_KV_MODE_SHADOW && !s->shadow) {
        s->shadow = pd_calloc(n_layer, sizeof *s->shadow);
        for (uint32_t il = 0; s->shadow && il < n_layer; il++) {
            if (!(s->shadow[il] = calloc(cap, 1))) {
                pd_kv_policy_close(&np);
                return pd_err_set(err, PD_ENOMEM, "out of memory (shadow)");
            }
        }
        if (!s->shadow) {
            pd_kv_policy_close(&np);
            return pd_err_set(err, PD_ENOMEM, "out of memory (shadow)");
        }
    }
    if (np && !s->cap_ready) {
        /* Capture was off and there was no policy: the hook still has to feed it. */
        enum pd_status st = pd_capture_init(&s->cap, s->ctx, PD_CAPTURE_LEVEL_OFF,
                                            s->p.summary_top_n ? s->p.summary_top_n : 8,
                                            s->p.full_layers, err);
        if (st) {
            pd_kv_policy_close(&np);
            return st;
        }
        s->cap_ready = true;
    }
    for (uint32_t il = 0; s->shadow && il < n_layer; il++) {
        memset(s->shadow[il], 0, cap);
    }
    pd_kv_policy_close(&s->policy);
    s->policy = np;
    if (s->cap_ready) {
        s->cap.observer = np ? policy_observer : NULL;
        s->cap.observer_ud = np ? s : NULL;
    }
    char msg[64];
    snprintf(msg, sizeof msg, "kv policy %s%s", np ? np->ops->name : "full",
             np && np->mode == PD_KV_MODE_SHADOW ? " (shadow)" : "");
    push_simple(s, PD_EV_MODE, s->ctx->n_past, s->ctx->n_past, msg);
    return PD_OK;
}

static enum pd_status set_sampling(struct pd_session *s, const struct pd_sampler_params *sp,
                                   struct pd_err *err)
{
    struct pd_sampler *ns = NULL;
    enum pd_status st = pd_sampler_open(sp, s->model->hp.n_vocab, &ns, err);
    if (st) {
        return st;
    }
    pd_sampler_close(&s->sampler);
    s->sampler = ns;
    char msg[160];
    if (sp->temperature <= 0) {
        snprintf(msg, sizeof msg, "sampling: greedy");
    } else {
        snprintf(msg, sizeof msg, "sampling: temp %g top-k %d top-p %g min-p %g seed %llu",
                 (double)sp->temperature, (int)sp->top_k, (double)sp->top_p,
                 (double)sp->min_p, (unsigned long long)sp->seed);
    }
    push_simple(s, PD_EV_MODE, s->ctx->n_past, s->ctx->n_past, msg);
    return PD_OK;
}

static void set_mode(struct pd_session *s, enum pd_think_mode m, uint32_t budget, bool close)
{
    pd_modes_set(&s->modes, m, budget, close);
    char msg[96];
    if (m == PD_MODE_SHORT) {
        snprintf(msg, sizeof msg, "short:%u", s->modes.think_budget);
    } else if (m == PD_MODE_LONG) {
        snprintf(msg, sizeof msg, budget ? "long:%u" : "long", budget);
    } else {
        snprintf(msg, sizeof msg, close ? "none" : "none (thinking goes on; a ends it)");
    }
    push_simple(s, PD_EV_MODE, s->ctx->n_past, s->ctx->n_past, msg);
}

/* Applies the queued commands; returns false when the worker must stop. */
static bool drain_commands(struct pd_session *s)
{
    struct pd_cmd c;
    struct pd_err err;
    pd_err_clear(&err);
    while (take_cmd(s, &c)) {
        enum pd_status st = PD_OK;
        switch (c.kind) {
        case PD_CMD_PAUSE:
            if (!s->paused && !s->done) {
                s->paused = true;
                s->paused_at = now_s();
                push_simple(s, PD_EV_PAUSED, s->ctx->n_past, s->ctx->n_past, NULL);
            }
            break;
        case PD_CMD_RESUME:
            if (s->paused) {
                s->paused = false;
                s->paused_s += now_s() - s->paused_at;
                s->paused_at = 0;
                push_simple(s, PD_EV_RESUMED, s->ctx->n_past, s->ctx->n_past, NULL);
            }
            break;
        case PD_CMD_STOP:
            return false;
        case PD_CMD_CONTINUE:
            if (s->done) {
                unpark(s, c.budget);
            } else if (s->paused) {
                s->paused = false;
                s->paused_s += now_s() - s->paused_at;
                s->paused_at = 0;
                push_simple(s, PD_EV_RESUMED, s->ctx->n_past, s->ctx->n_past, NULL);
            }
            break;
        case PD_CMD_SET_SAMPLING:
            st = set_sampling(s, &c.sampling, &err);
            break;
        case PD_CMD_INJECT:
        case PD_CMD_NEW_TURN:
            c.text[sizeof c.text - 1] = '\0';
            unpark(s, 0);
            if (c.kind == PD_CMD_NEW_TURN) {
                think_state_set(s, 0); /* the answer closed thinking for its turn only */
            }
            size_t before = s->n_forced - s->i_forced;
            st = force_text(s, c.text, &err);
            if (!st && s->leg_predict) {
                /* what the user typed is not the model's: the leg still generates -n */
                s->leg_predict += (uint32_t)(s->n_forced - s->i_forced - before);
            }
            break;
        case PD_CMD_ANSWER_NOW:
            c.text[sizeof c.text - 1] = '\0';
            unpark(s, 0);
            answer_now(s, c.text);
            break;
        case PD_CMD_SET_MODE:
            set_mode(s, c.mode, c.budget, c.close_thinking);
            break;
        case PD_CMD_SET_BUDGET:
            if (!s->policy) {
                st = pd_err_set(&err, PD_EINVAL, "no KV policy to set a budget for");
            } else if (c.budget < 1) {
                st = pd_err_set(&err, PD_EINVAL, "KV budget must be at least 1 slot");
            } else {
                s->policy->budget.is_ratio = false;
                s->policy->budget.slots = c.budget;
                char msg[64];
                snprintf(msg, sizeof msg, "kv budget %u", c.budget);
                push_simple(s, PD_EV_MODE, s->ctx->n_past, s->ctx->n_past, msg);
            }
            break;
        case PD_CMD_SET_POLICY:
            st = set_policy(s, c.policy, &err);
            break;
        case PD_CMD_BRANCH:
            st = apply_branch(s, &c, &err);
            break;
        case PD_CMD_PRUNE:
            st = apply_prune(s, &c, &err);
            break;
        case PD_CMD_DIVERGENCE:
            st = divergence(s, &err);
            break;
        case PD_CMD_ATTN:
            st = recompute_attn(s, c.pos, &err);
            break;
        case PD_CMD_KIND_COUNT:
            break;
        }
        if (st == PD_ECANCELLED || atomic_load(&s->stop)) {
            return false;
        }
        if (st) {
            /* A rejected command is reported, saying which; the session goes on. */
            struct pd_event ev;
            memset(&ev, 0, sizeof ev);
            ev.kind = PD_EV_MODE;
            ev.pos = ev.pos_end = s->ctx->n_past;
            ev.refused = true;
            ev.refused_cmd = c.kind;
            snprintf(ev.text, sizeof ev.text, "%s", err.msg);
            push_event(s, &ev);
        }
    }
    return !atomic_load(&s->stop);
}

/* ---- the worker ------------------------------------------------------------------------ */

static void update_think_state(struct pd_session *s, const struct pd_token_rec *r)
{
    if (pd_think_feed(&s->th, s->texts, r->text, r->text ? r->text_len : 0)) {
        s->modes.closed = false;
    }
}

/* The thinking state after each re-encoded token, from the roles the tokens were saved
 * with: thinking is open after token i when the next generated token (think or answer)
 * is a thinking token, and after the last generated token as that token was; it has
 * closed once when an answer token came at or before i. */
static void history_think(struct pd_session *s, const uint8_t *roles, size_t n)
{
    size_t m = n < s->n_seq ? n : s->n_seq;
    uint32_t n_think = 0;
    bool closed_once = false;
    for (size_t i = 0; i < m; i++) {
        n_think += roles[i] == PD_ROLE_THINK;
        closed_once |= roles[i] == PD_ROLE_ANSWER;
        s->seq_think[i] = pd_think_word(false, closed_once, n_think);
    }
    bool open = s->th.open; /* nothing generated: as the prompt left it */
    for (size_t i = m; i-- > 0;) {
        if (roles[i] == PD_ROLE_THINK || roles[i] == PD_ROLE_ANSWER) {
            open = roles[i] == PD_ROLE_THINK;
            break;
        }
    }
    for (size_t i = m; i-- > 0;) {
        s->seq_think[i] |= pd_think_word(open, false, 0);
        if (roles[i] == PD_ROLE_THINK || roles[i] == PD_ROLE_ANSWER) {
            open = roles[i] == PD_ROLE_THINK; /* the next generated token of token i - 1 */
        }
    }
    if (m > 0) {
        think_state_set(s, s->seq_think[m - 1]);
    }
}

static void *worker_main(void *arg)
{
    struct pd_session *s = arg;
    struct pd_err err;
    pd_err_clear(&err);
    const char *finish = "length";
    bool history = s->hist_roles != NULL;
    enum pd_status st = prefill(s, s->prompt, s->n_prompt, PD_ROLE_PROMPT, !history, &err);
    s->t_decode0 = now_s();
    s->paused_s = 0;
    s->leg_predict = s->p.n_predict;
    if (!st && history) {
        history_think(s, s->hist_roles, s->n_prompt);
        park(s, "loaded");
    }
    while (!st) {
        if (!drain_commands(s)) {
            finish = "stopped";
            break;
        }
        if (s->paused || s->done) {
            pthread_mutex_lock(&s->lock);
            while (s->cmd_len == 0 && !atomic_load(&s->stop)) {
                pthread_cond_wait(&s->cond, &s->lock);
            }
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        if (s->leg_predict && s->n_generated >= s->leg_predict) {
            finish = "length";
            if (s->p.keep_alive) {
                park(s, finish);
                continue;
            }
            break;
        }
        if (pd_ctx_kv_free(s->ctx) == 0) {
            finish = "context";
            if (s->p.keep_alive) {
                park(s, finish);
                continue;
            }
            break;
        }
        bool forced_pending = s->i_forced < s->n_forced;
        struct pd_token_rec r;
        memset(&r, 0, sizeof r);
        int32_t id;
        if (forced_pending) {
            id = s->forced[s->i_forced++];
            r.role = PD_ROLE_INJECTED;
            r.flags = PD_TOKF_FORCED;
        } else {
            id = pd_ctx_sample(s->ctx, s->sampler);
            if (id < 0) {
                st = pd_err_set(&err, PD_ECUDA, "sampling: the logits are unavailable");
                break;
            }
            r.role = s->th.open ? PD_ROLE_THINK : PD_ROLE_ANSWER;
        }
        r.pos = s->ctx->n_past;
        if ((st = pd_ctx_probe(s->ctx, id, s->p.topk, &r, &err))) {
            break;
        }
        fill_text(s, &r);
        /* The thinking controller (modes.h) sees every token the model chose while
         * thinking: an early end becomes "Wait", a spent budget or mode none ends it. */
        struct pd_modes_decision d = {PD_MODES_ACT_NONE, NULL};
        if (!forced_pending && s->th.open) {
            bool closes = pd_modes_text_closes(s->texts, r.text, r.text_len);
            d = pd_modes_on_think_token(&s->modes, s->texts, s->th.n_think + 1, closes);
        }
        if (d.action == PD_MODES_ACT_REPLACE_CLOSE) {
            pd_token_rec_free(&r);
            if ((st = force_text(s, d.text, &err))) {
                break;
            }
            push_simple(s, PD_EV_MODE, s->ctx->n_past, s->ctx->n_past, "minimum thinking: Wait");
            continue;
        }
        bool was_thinking = s->th.open;
        update_think_state(s, &r);
        if (was_thinking && r.role != PD_ROLE_INJECTED) {
            s->th.n_think++;
        }
        if (!was_thinking && s->th.open && r.role == PD_ROLE_ANSWER) {
            /* the model opened thinking itself (Qwen3 with thinking on): its opener starts
             * the thinking span, as the close marker ends it */
            r.role = PD_ROLE_THINK;
        }
        bool eog = !forced_pending && pd_tok_is_eog(s->tok, id);
        if ((st = eval_one(s, id, &err))) {
            pd_token_rec_free(&r);
            break;
        }
        s->n_generated++;
        s->n_decode++;
        attach_blob(s, &r, 0);
        emit_token(s, &r, true);
        if (eog) {
            finish = "eog";
            if (s->p.keep_alive) {
                park(s, finish);
                continue;
            }
            break;
        }
        if (d.action == PD_MODES_ACT_CLOSE) {
            if ((st = force_text(s, d.text, &err))) {
                break;
            }
            push_simple(s, PD_EV_MODE, s->ctx->n_past, s->ctx->n_past,
                        s->modes.mode == PD_MODE_NONE ? "mode none: thinking ends"
                                                      : "thinking budget reached");
        }
        if (s->p.throttle_ms > 0) {
            struct timespec d = {(time_t)(s->p.throttle_ms / 1000),
                                 (long)(fmod(s->p.throttle_ms, 1000.0) * 1e6)};
            nanosleep(&d, NULL);
        }
    }
    if (st == PD_ECANCELLED || (st == PD_OK && atomic_load(&s->stop))) {
        finish = "stopped";
        st = PD_OK;
    }
    if (st) {
        push_simple(s, PD_EV_ERROR, s->ctx->n_past, s->ctx->n_past, err.msg);
    } else if (!s->done) { /* a parked session has announced its end */
        push_simple(s, PD_EV_FINISHED, s->ctx->n_past, s->ctx->n_past, finish);
    }
    atomic_store(&s->running, false);
    wake(s);
    return NULL;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

enum pd_status pd_session_open(const struct pd_model *m, const struct pd_tok *tok,
                               const struct pd_session_params *params,
                               struct pd_session **out, struct pd_err *err)
{
    *out = NULL;
    struct pd_session_params p = params ? *params : pd_session_default_params();
    struct pd_kv_policy *policy = p.policy;
    if (p.topk > PD_TOPK_MAX || p.capture >= PD_CAPTURE_LEVEL_COUNT ||
        p.mode >= PD_MODE_COUNT || !pd_modes_texts(p.chat.family)) {
        pd_kv_policy_close(&policy);
        return pd_err_set(err, PD_EINVAL, "session: top-k, capture, mode or chat family out of range");
    }
    struct pd_session *s = calloc(1, sizeof *s);
    if (!s) {
        pd_kv_policy_close(&policy);
        return pd_err_set(err, PD_ENOMEM, "out of memory (session)");
    }
    s->model = m;
    s->tok = tok;
    s->p = p;
    s->policy = policy;
    s->p.policy = NULL;
    s->pipe_fd[0] = s->pipe_fd[1] = -1;
    s->min_evicted_pos = INT64_MAX;
    s->modes = pd_modes_state_init(p.mode, 0, 0, 0);
    pd_modes_set(&s->modes, p.mode, p.mode == PD_MODE_SHORT ? p.think_budget : p.min_think,
                 true);
    s->texts = pd_modes_texts(p.chat.family);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_cond_init(&s->space, NULL);
    enum pd_status st;
    if (pipe(s->pipe_fd) != 0) {
        st = pd_err_set(err, PD_EIO, "session: pipe: %s", strerror(errno));
        goto fail;
    }
    fcntl(s->pipe_fd[0], F_SETFL, O_NONBLOCK);
    fcntl(s->pipe_fd[1], F_SETFL, O_NONBLOCK);
    s->cmd = calloc(CMD_QUEUE_MAX, sizeof *s->cmd);
    if (!s->cmd) {
        st = pd_err_set(err, PD_ENOMEM, "out of memory (session)");
        goto fail;
    }
    if ((st = pd_ctx_open(m, &p.ctx, &s->ctx, err)) ||
        (st = pd_sampler_open(&p.sampling, m->hp.n_vocab, &s->sampler, err))) {
        goto fail;
    }
    s->ctx->cancel = &s->stop;
    s->ctx->logits_lazy = true; /* sampling and probes go through pd_ctx_sample/_probe */
    uint32_t n_ctx = s->ctx->params.n_ctx;
    s->rowbuf = pd_malloc_array((size_t)m->hp.n_head * n_ctx, sizeof(float));
    s->posbuf = pd_malloc_array(n_ctx, sizeof(int64_t));
    s->maskbuf = pd_malloc_array(n_ctx, 1);
    s->maskbuf2 = pd_malloc_array(n_ctx, 1);
    if (!s->rowbuf || !s->posbuf || !s->maskbuf || !s->maskbuf2) {
        st = pd_err_set(err, PD_ENOMEM, "out of memory (session buffers)");
        goto fail;
    }
    if (s->policy && s->policy->mode == PD_KV_MODE_SHADOW) {
        s->shadow = pd_calloc(m->hp.n_layer, sizeof *s->shadow);
        for (uint32_t il = 0; s->shadow && il < m->hp.n_layer; il++) {
            if (!(s->shadow[il] = calloc(n_ctx, 1))) {
                st = pd_err_set(err, PD_ENOMEM, "out of memory (shadow)");
                goto fail;
            }
        }
        if (!s->shadow) {
            st = pd_err_set(err, PD_ENOMEM, "out of memory (shadow)");
            goto fail;
        }
    }
    if (p.capture != PD_CAPTURE_LEVEL_OFF || s->policy) {
        uint32_t top_n = p.summary_top_n ? p.summary_top_n : 8;
        if ((st = pd_capture_init(&s->cap, s->ctx, p.capture, top_n, p.full_layers, err))) {
            goto fail;
        }
        s->cap_ready = true;
        s->cap.keep_received = !p.no_history; /* nothing reads it; it grows by position */
        if (s->policy) {
            s->cap.observer = policy_observer;
            s->cap.observer_ud = s;
        }
    }
    *out = s;
    return PD_OK;
fail:
    pd_session_close(&s);
    return st;
}

static enum pd_status start_worker(struct pd_session *s, struct pd_err *err)
{
    if (s->thread_started) {
        return pd_err_set(err, PD_EINVAL, "session already started");
    }
    if (s->n_prompt == 0) {
        return pd_err_set(err, PD_EINVAL, "the prompt has no tokens");
    }
    if (s->n_prompt >= s->ctx->kv->cap) {
        return pd_err_set(err, PD_EINVAL, "the prompt (%zu tokens) does not fit the context (%u)",
                          s->n_prompt, s->ctx->kv->cap);
    }
    atomic_store(&s->running, true);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, worker_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        atomic_store(&s->running, false);
        return pd_err_set(err, PD_ENOMEM, "session: cannot start the worker thread");
    }
    s->thread_started = true;
    return PD_OK;
}

static enum pd_status start_with(struct pd_session *s, const int32_t *tokens, size_t n,
                                 bool think_open, struct pd_err *err)
{
    free(s->prompt);
    s->prompt = pd_malloc_array(n ? n : 1, sizeof *s->prompt);
    if (!s->prompt) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (prompt)");
    }
    memcpy(s->prompt, tokens, n * sizeof *tokens);
    s->n_prompt = n;
    s->th.open = think_open;
    s->modes.closed = !think_open;
    return start_worker(s, err);
}

enum pd_status pd_session_start_history(struct pd_session *s, const int32_t *ids,
                                        const uint8_t *roles, size_t n, struct pd_err *err)
{
    if (!s->p.keep_alive || s->p.no_history) {
        return pd_err_set(err, PD_EINVAL, "session: re-opening a trace needs keep_alive and "
                                          "the token history");
    }
    for (size_t i = 0; i < n; i++) {
        if (roles[i] >= PD_ROLE_COUNT) {
            return pd_err_set(err, PD_EINVAL, "session: token %zu has role %u", i,
                              (unsigned)roles[i]);
        }
    }
    free(s->hist_roles);
    s->hist_roles = pd_malloc_array(n ? n : 1, 1);
    if (!s->hist_roles) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (history)");
    }
    memcpy(s->hist_roles, roles, n);
    /* before the first generated token: open as the raw family counts a completion */
    bool think_open = s->p.chat.family == PD_CHAT_FAMILY_RAW && s->modes.mode != PD_MODE_NONE;
    for (size_t i = 0; i < n; i++) {
        if (roles[i] == PD_ROLE_THINK) {
            think_open = true; /* the template opened it (or the model did) */
            break;
        }
        if (roles[i] == PD_ROLE_ANSWER) {
            break;
        }
    }
    return start_with(s, ids, n, think_open, err);
}

enum pd_status pd_session_start_tokens(struct pd_session *s, const int32_t *tokens, size_t n,
                                       struct pd_err *err)
{
    /* Without a template, a family without markers counts the whole completion as
     * thinking (until the close marker text appears). */
    bool think_open = s->p.chat.family == PD_CHAT_FAMILY_RAW && s->modes.mode != PD_MODE_NONE;
    return start_with(s, tokens, n, think_open, err);
}

enum pd_status pd_session_start(struct pd_session *s, const char *system, const char *prompt,
                                struct pd_err *err)
{
    struct pd_buf text;
    pd_buf_init(&text);
    enum pd_status st;
    bool opens_think = false;
    if (s->p.chat.family == PD_CHAT_FAMILY_RAW) {
        if (!pd_buf_puts(&text, prompt)) {
            return pd_err_set(err, PD_ENOMEM, "out of memory (prompt)");
        }
    } else {
        struct pd_chat_msg msgs[2];
        size_t n = 0;
        if (system) {
            msgs[n].role = PD_CHAT_ROLE_SYSTEM;
            msgs[n++].content = system;
        }
        msgs[n].role = PD_CHAT_ROLE_USER;
        msgs[n++].content = prompt;
        /* The mode's prompt (modes.h): the family's switch, or a control token. */
        struct pd_modes_controls ctl;
        pd_modes_find_controls(s->tok, &ctl);
        struct pd_modes_prefill pf;
        if ((st = pd_modes_prefill_for(&s->p.chat, &ctl, s->modes.mode, false, &pf, err)) ||
            (st = pd_chat_render(&s->p.chat, msgs, n, true, pf.chat_think, &text, err))) {
            pd_buf_deinit(&text);
            return st;
        }
        if (!pd_buf_puts(&text, pf.extra)) {
            pd_buf_deinit(&text);
            return pd_err_set(err, PD_ENOMEM, "out of memory (prompt)");
        }
        opens_think = pf.thinking_open;
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    /* BOS as the vocabulary asks, or as the template starts with it (R1, Llama 3). */
    const struct pd_chat_traits *ft = pd_chat_family_traits(s->p.chat.family);
    bool add_bos = pd_tok_add_bos(s->tok) || (ft && ft->template_bos && pd_tok_bos(s->tok) >= 0);
    st = pd_tok_encode(s->tok, text.data ? text.data : "", text.len, add_bos, true, &ids, &n_ids,
                       err);
    pd_buf_deinit(&text);
    if (st) {
        return st;
    }
    if (s->p.chat.family == PD_CHAT_FAMILY_RAW) {
        st = pd_session_start_tokens(s, ids, n_ids, err);
    } else {
        st = start_with(s, ids, n_ids, opens_think, err);
    }
    free(ids);
    return st;
}

void pd_session_close(struct pd_session **sp)
{
    if (!sp || !*sp) {
        return;
    }
    struct pd_session *s = *sp;
    if (s->thread_started) {
        atomic_store(&s->stop, true);
        pthread_mutex_lock(&s->lock);
        pthread_cond_broadcast(&s->cond);
        pthread_cond_broadcast(&s->space);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    for (size_t i = 0; i < s->ev_len; i++) {
        pd_event_free(&s->ev[(s->ev_head + i) % s->ev_cap]);
    }
    free(s->ev);
    for (size_t i = 0; s->cmd && i < s->cmd_len; i++) {
        struct pd_cmd *c = &s->cmd[(s->cmd_head + i) % CMD_QUEUE_MAX];
        if (c->kind == PD_CMD_SET_POLICY) {
            pd_kv_policy_close(&c->policy); /* never applied: still ours */
        }
    }
    free(s->cmd);
    if (s->cap_ready) {
        pd_capture_deinit(&s->cap);
    }
    if (s->shadow) {
        for (uint32_t il = 0; il < s->model->hp.n_layer; il++) {
            free(s->shadow[il]);
        }
        free(s->shadow);
    }
    pd_kv_policy_close(&s->policy);
    pd_sampler_close(&s->sampler);
    pd_ctx_close(&s->ctx);
    free(s->rowbuf);
    free(s->posbuf);
    free(s->maskbuf);
    free(s->maskbuf2);
    free(s->seq);
    free(s->seq_think);
    free(s->hist_roles);
    free(s->prompt);
    free(s->forced);
    if (s->pipe_fd[0] >= 0) {
        close(s->pipe_fd[0]);
    }
    if (s->pipe_fd[1] >= 0) {
        close(s->pipe_fd[1]);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    pthread_cond_destroy(&s->space);
    free(s);
    *sp = NULL;
}
