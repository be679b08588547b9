/* remote_session.c - live generation from a remote engine (DESIGN in remote_session.h). */
#include "remote_session.h"

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

#include "jsonw.h"
#include "log.h"
#include "mem.h"

#define CMD_QUEUE_MAX 256
#define EV_MAX 1024             /* as a local session: a bounded event queue */
#define EV_BYTES_MAX (32u << 20)

enum flow {
    FLOW_GO,       /* the stream goes on */
    FLOW_RESTART,  /* a command or the controller ended the stream: edit, then a new request */
    FLOW_EOG,      /* the model produced an end-of-generation token */
};

struct piece {
    int32_t id;
    char *text;               /* owned */
};

struct pd_rsession {
    struct pd_remote *r;          /* owned */
    const struct pd_tok *tok;     /* borrowed; NULL: the server tokenizes */
    struct pd_rsession_params p;
    const struct pd_modes_texts *texts; /* static */
    struct pd_modes_state modes;

    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    atomic_bool running;
    pthread_mutex_t lock;         /* queues and spans */
    pthread_cond_t cond;
    pthread_cond_t space;         /* the consumer took events (backpressure wait) */
    int pipe_fd[2];
    struct pd_event *ev;          /* events FIFO, bounded: EV_MAX events, EV_BYTES_MAX bytes
                                   * of owned text and blobs; the worker waits for room */
    size_t ev_head, ev_len, ev_cap;
    size_t ev_bytes;
    struct pd_cmd *cmd;           /* commands FIFO */
    size_t cmd_head, cmd_len;
    struct pd_rsession_span *spans;
    size_t n_spans, cap_spans;
    bool span_open;               /* the last span's request is in flight */

    /* ---- worker-only state ---- */
    int32_t *seq;                 /* [n_seq] token ids by position */
    uint32_t *seq_think;          /* thinking state after each token (as in session.c) */
    size_t n_seq, seq_cap;
    int32_t *prompt;
    size_t n_prompt;
    int32_t *forced;              /* tokens to insert before the next request */
    size_t n_forced, cap_forced;
    bool paused;
    bool done;                    /* keep_alive: parked after an end, waiting for a command */
    double parked_at;             /* when it parked or paused (now_s; 0: neither) */
    double idle_s;                /* parked and paused time, left out of tokens/s */
    uint32_t leg_predict;         /* this leg's n_predict (0: until the end) */
    struct pd_think_state th;     /* thinking state after the latest token (modes.h) */
    uint32_t n_generated;         /* in this leg (since the start, a branch or a continue) */
    uint32_t n_requests;
    double t0;
    uint32_t n_decode;
    enum flow flow;
    bool warned_no_score;
    struct piece pieces[64];      /* small cache of detokenized ids (no local vocabulary) */
    size_t n_pieces;
};

struct pd_rsession_params pd_rsession_default_params(void)
{
    struct pd_rsession_params p;
    memset(&p, 0, sizeof p);
    p.sampling = pd_sampler_default_params();
    p.topk = 5;
    pd_chat_format_default(PD_CHAT_FAMILY_RAW, &p.chat);
    p.mode = PD_MODE_LONG;
    p.score_prompt = true;
    return p;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- queues (as in session.c) -------------------------------------------------------------- */

static void wake(struct pd_rsession *s)
{
    char c = 1;
    ssize_t r = write(s->pipe_fd[1], &c, 1);
    (void)r; /* a full pipe already wakes the reader */
}

static size_t event_bytes(const struct pd_event *ev)
{
    return ev->tok.text_len + ev->tok.attn_len;
}

static void push_event(struct pd_rsession *s, struct pd_event *ev)
{
    size_t bytes = event_bytes(ev);
    pthread_mutex_lock(&s->lock);
    /* Backpressure: a consumer that stops reading stops the worker (and so the transfer,
     * and the server's stream) instead of letting the queue grow; stop ends the wait. */
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

static void push_simple(struct pd_rsession *s, enum pd_event_kind kind, const char *text)
{
    struct pd_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    ev.pos = (int64_t)s->n_seq;
    ev.pos_end = (int64_t)s->n_seq;
    if (text) {
        snprintf(ev.text, sizeof ev.text, "%s", text);
    }
    push_event(s, &ev);
}

bool pd_rsession_poll(struct pd_rsession *s, struct pd_event *ev)
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

bool pd_rsession_wait(struct pd_rsession *s, struct pd_event *ev, int timeout_ms)
{
    if (pd_rsession_poll(s, ev)) {
        return true;
    }
    struct pollfd pfd = {s->pipe_fd[0], POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) <= 0) {
        return false;
    }
    return pd_rsession_poll(s, ev);
}

int pd_rsession_fd(const struct pd_rsession *s)
{
    return s->pipe_fd[0];
}

bool pd_rsession_running(const struct pd_rsession *s)
{
    return atomic_load(&s->running);
}

const struct pd_remote_info *pd_rsession_info(const struct pd_rsession *s)
{
    return pd_remote_info(s->r);
}

enum pd_status pd_rsession_send(struct pd_rsession *s, const struct pd_cmd *cmd,
                                struct pd_err *err)
{
    struct pd_cmd c = *cmd;
    if (c.kind == PD_CMD_SET_POLICY) {
        pd_kv_policy_close(&c.policy); /* a remote engine takes no policy */
    }
    if (!atomic_load(&s->running)) {
        return pd_err_set(err, PD_EINVAL, "the session is not running");
    }
    if ((unsigned)c.kind >= PD_CMD_KIND_COUNT) {
        return pd_err_set(err, PD_EINVAL, "unknown command %d", (int)c.kind);
    }
    if (c.kind == PD_CMD_STOP) {
        atomic_store(&s->stop, true);
    }
    pthread_mutex_lock(&s->lock);
    if (s->cmd_len == CMD_QUEUE_MAX) {
        pthread_mutex_unlock(&s->lock);
        return pd_err_set(err, PD_EINVAL, "command queue full");
    }
    s->cmd[(s->cmd_head + s->cmd_len) % CMD_QUEUE_MAX] = c;
    s->cmd_len++;
    pthread_cond_signal(&s->cond);
    if (c.kind == PD_CMD_STOP) {
        pthread_cond_broadcast(&s->space); /* a worker waiting for room stops too */
    }
    pthread_mutex_unlock(&s->lock);
    /* Ends the stream in flight so the worker takes the command now; mode changes and
     * refused commands do not need a new request, but taking them at once is harmless. */
    pd_remote_cancel(s->r);
    return PD_OK;
}

static bool take_cmd(struct pd_rsession *s, struct pd_cmd *out)
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

static bool cmd_pending(struct pd_rsession *s)
{
    pthread_mutex_lock(&s->lock);
    bool p = s->cmd_len > 0;
    pthread_mutex_unlock(&s->lock);
    return p;
}

/* ---- spans ---------------------------------------------------------------------------------- */

static void span_begin(struct pd_rsession *s, const struct pd_sampler_params *sp)
{
    pthread_mutex_lock(&s->lock);
    struct pd_rsession_span *n = pd_grow_array(s->spans, &s->cap_spans, s->n_spans + 1,
                                               sizeof *n);
    if (n) {
        s->spans = n;
        s->spans[s->n_spans++] = (struct pd_rsession_span){(int64_t)s->n_seq, (int64_t)s->n_seq,
                                                           sp->seed, s->n_requests, *sp};
        s->span_open = true;
    }
    pthread_mutex_unlock(&s->lock);
}

static void span_end(struct pd_rsession *s)
{
    pthread_mutex_lock(&s->lock);
    if (s->n_spans > 0 && s->span_open) {
        s->span_open = false;
        struct pd_rsession_span *sp = &s->spans[s->n_spans - 1];
        sp->pos_end = (int64_t)s->n_seq;
        if (sp->pos_end <= sp->pos_begin) {
            s->n_spans--; /* produced nothing */
        }
    }
    pthread_mutex_unlock(&s->lock);
}

size_t pd_rsession_spans(struct pd_rsession *s, struct pd_rsession_span *out, size_t cap)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->n_spans - (s->span_open ? 1 : 0); /* the finished requests' spans */
    for (size_t i = 0; i < n && i < cap; i++) {
        out[i] = s->spans[i];
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* ---- sequence and text --------------------------------------------------------------------- */

static bool seq_push(struct pd_rsession *s, int32_t id)
{
    if (s->n_seq == s->seq_cap) {
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
    s->seq_think[s->n_seq] = pd_think_pack(&s->th);
    s->seq[s->n_seq++] = id;
    return true;
}

static void think_state_set(struct pd_rsession *s, uint32_t v)
{
    pd_think_unpack(&s->th, v);
    s->modes.closed = !s->th.open;
}

static void update_think_state(struct pd_rsession *s, const struct pd_token_rec *r)
{
    if (pd_think_feed(&s->th, s->texts, r->text, r->text ? r->text_len : 0)) {
        s->modes.closed = false;
    }
}

/* The text of a token the stream did not give: the local vocabulary's piece, or (no
 * local vocabulary) the server's detokenization, cached. */
static void fill_text(struct pd_rsession *s, struct pd_token_rec *r)
{
    if (s->tok) {
        size_t len = 0;
        const char *piece = pd_tok_piece(s->tok, r->id, &len);
        free(r->text);
        r->text = pd_strndup(piece ? piece : "", piece ? len : 0);
        r->text_len = r->text && piece ? len : 0;
        return;
    }
    if (r->text) {
        return;
    }
    for (size_t i = 0; i < s->n_pieces; i++) {
        if (s->pieces[i].id == r->id) {
            r->text = pd_strdup(s->pieces[i].text);
            r->text_len = r->text ? strlen(r->text) : 0;
            return;
        }
    }
    char *text = NULL;
    struct pd_err e;
    if (pd_remote_detokenize(s->r, &r->id, 1, &text, &e) != PD_OK) {
        text = pd_strdup("");
    }
    r->text = text;
    r->text_len = text ? strlen(text) : 0;
    if (text && s->n_pieces < sizeof s->pieces / sizeof s->pieces[0]) {
        s->pieces[s->n_pieces].id = r->id;
        s->pieces[s->n_pieces++].text = pd_strdup(text);
    }
}

static void emit_token(struct pd_rsession *s, struct pd_token_rec *r)
{
    if (s->p.steps.feed) {
        int64_t begin;
        if (s->p.steps.feed(s->p.steps.ud, r, &begin)) {
            struct pd_event ev;
            memset(&ev, 0, sizeof ev);
            ev.kind = PD_EV_STEP;
            ev.pos = ev.pos_end = begin;
            push_event(s, &ev);
        }
    }
    struct pd_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = PD_EV_TOKEN;
    ev.pos = r->pos;
    ev.tok = *r;
    r->text = NULL;
    r->attn = NULL;
    if (s->n_decode > 0) {
        ev.tok_per_s = s->n_decode / (now_s() - s->t0 - s->idle_s + 1e-9);
    }
    push_event(s, &ev);
}

/* Encodes text with the local vocabulary or the server's tokenizer (no BOS). */
static enum pd_status encode(struct pd_rsession *s, const char *text, int32_t **ids, size_t *n,
                             struct pd_err *err)
{
    if (s->tok) {
        return pd_tok_encode(s->tok, text, strlen(text), false, true, ids, n, err);
    }
    return pd_remote_tokenize(s->r, text, ids, n, err);
}

static enum pd_status force_text(struct pd_rsession *s, const char *text, struct pd_err *err)
{
    int32_t *ids = NULL;
    size_t n = 0;
    enum pd_status st = encode(s, text, &ids, &n, err);
    if (st == PD_OK && n > 0) {
        int32_t *f = pd_grow_array(s->forced, &s->cap_forced, s->n_forced + n, sizeof *f);
        if (!f) {
            st = pd_err_set(err, PD_ENOMEM, "out of memory (injection)");
        } else {
            s->forced = f;
            memcpy(s->forced + s->n_forced, ids, n * sizeof *ids);
            s->n_forced += n;
        }
    }
    free(ids);
    return st;
}

/* Appends ids[0..n) to the sequence with role, scoring them teacher-forced when the
 * server can (the tokens before them give the context), and emits them. Nothing changes
 * on failure: PD_ECANCELLED (a command interrupted the scoring request) leaves the tokens
 * to be added again. */
static enum pd_status add_forced(struct pd_rsession *s, const int32_t *ids, size_t n,
                                 enum pd_role role, struct pd_err *err)
{
    size_t from = s->n_seq, total = s->n_seq + n;
    struct pd_token_rec *recs = pd_calloc(total ? total : 1, sizeof *recs);
    int32_t *all = pd_malloc_array(total ? total : 1, sizeof *all);
    if (!recs || !all) {
        free(recs);
        free(all);
        return pd_err_set(err, PD_ENOMEM, "out of memory (scoring)");
    }
    if (from > 0) {
        memcpy(all, s->seq, from * sizeof *all);
    }
    if (n > 0) {
        memcpy(all + from, ids, n * sizeof *ids);
    }
    for (size_t i = 0; i < total; i++) {
        recs[i].pos = (int64_t)i;
        recs[i].id = all[i];
        recs[i].logprob = NAN;
        recs[i].entropy = NAN;
    }
    enum pd_status st = PD_OK;
    if (s->p.score_prompt && pd_remote_info(s->r)->server != PD_REMOTE_LLAMACPP) {
        st = pd_remote_score(s->r, all, total, s->p.topk, s->p.attn, recs, err);
        if (st == PD_EUNSUPPORTED) {
            st = PD_OK;
        }
    } else if (!s->warned_no_score && s->p.score_prompt) {
        s->warned_no_score = true;
        pd_log(PD_LOG_INFO, "%s scores only by decoding one token at a time: prompt and "
               "injected tokens have no log-probabilities in a live session",
               pd_remote_server_name(pd_remote_info(s->r)->server));
    }
    for (size_t i = 0; st == PD_OK && i < n; i++) {
        if (!seq_push(s, ids[i])) {
            st = pd_err_set(err, PD_ENOMEM, "out of memory (sequence)");
        }
    }
    /* thinking state: walk the added tokens so markers in injected text count */
    for (size_t i = from; st == PD_OK && i < total; i++) {
        struct pd_token_rec *r = &recs[i];
        r->role = role;
        r->flags |= PD_TOKF_FORCED;
        fill_text(s, r);
        if (role != PD_ROLE_PROMPT) {
            update_think_state(s, r);
            s->seq_think[i] = pd_think_pack(&s->th);
        }
        emit_token(s, r);
    }
    for (size_t i = 0; i < total; i++) {
        pd_token_rec_free(&recs[i]);
    }
    free(recs);
    free(all);
    return st;
}

/* ---- the end of a leg (keep_alive) ------------------------------------------------------------ */

static void idle_begin(struct pd_rsession *s)
{
    if (s->parked_at == 0) {
        s->parked_at = now_s();
    }
}

static void idle_end(struct pd_rsession *s)
{
    if (s->parked_at != 0 && !s->paused && !s->done) {
        s->idle_s += now_s() - s->parked_at;
        s->parked_at = 0;
    }
}

/* The generation reached an end: parked until a command starts a new leg. */
static void park(struct pd_rsession *s, const char *reason)
{
    s->done = true;
    idle_begin(s);
    push_simple(s, PD_EV_FINISHED, reason);
}

/* A command that generates again after an end: a new leg of budget tokens (0: the
 * session's n_predict). */
static void unpark(struct pd_rsession *s, uint32_t budget)
{
    if (!s->done) {
        return;
    }
    s->done = false;
    idle_end(s);
    s->n_generated = 0;
    s->leg_predict = budget ? budget : s->p.n_predict;
    push_simple(s, PD_EV_RESUMED, "continue");
}

/* ---- commands --------------------------------------------------------------------------------- */

/* Reports a command the remote engine cannot carry out, saying which (pd_event.refused). */
static void refuse(struct pd_rsession *s, enum pd_cmd_kind kind, const char *what)
{
    struct pd_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = PD_EV_MODE;
    ev.pos = ev.pos_end = (int64_t)s->n_seq;
    ev.refused = true;
    ev.refused_cmd = kind;
    snprintf(ev.text, sizeof ev.text, "%s: a remote engine does not expose its KV cache or "
             "attention", what);
    push_event(s, &ev);
}

static void answer_now(struct pd_rsession *s, const char *text)
{
    struct pd_err err;
    if (!s->th.open) {
        push_simple(s, PD_EV_MODE, "already answering");
        return;
    }
    if (force_text(s, text && *text ? text : s->texts->end_think, &err)) {
        push_simple(s, PD_EV_MODE, err.msg);
        return;
    }
    push_simple(s, PD_EV_MODE, "answer now");
}

static enum pd_status apply_branch(struct pd_rsession *s, const struct pd_cmd *c,
                                   struct pd_err *err)
{
    int64_t pos = c->pos;
    if (pos < 1 || (size_t)pos > s->n_seq) {
        return pd_err_set(err, PD_EINVAL, "branch: position %lld outside [1, %zu]",
                          (long long)pos, s->n_seq);
    }
    s->n_forced = 0;
    unpark(s, 0);
    s->n_generated = 0; /* each branch generates its own n_predict tokens */
    s->leg_predict = s->p.n_predict;
    think_state_set(s, s->seq_think[pos - 1]);
    s->n_seq = (size_t)pos;
    if (s->p.steps.reset) {
        s->p.steps.reset(s->p.steps.ud, pos);
    }
    push_simple(s, PD_EV_BRANCHED, c->token >= 0 ? "alternative" : "resample");
    if (c->token >= 0) {
        int32_t *f = pd_grow_array(s->forced, &s->cap_forced, 1, sizeof *f);
        if (!f) {
            return pd_err_set(err, PD_ENOMEM, "out of memory (branch)");
        }
        s->forced = f;
        s->forced[0] = c->token;
        s->n_forced = 1;
    }
    return PD_OK;
}

static enum pd_status apply_prune(struct pd_rsession *s, const struct pd_cmd *c,
                                  struct pd_err *err)
{
    int64_t b = c->pos, e = c->pos_end;
    int64_t last = (int64_t)s->n_seq - 1;
    if (b < 0 || e <= b || e > last) {
        return pd_err_set(err, PD_EINVAL,
                          "prune: span [%lld, %lld) must lie before the newest token %lld",
                          (long long)b, (long long)e, (long long)last);
    }
    /* a remote engine has no cache to cut slots from: the sequence is re-encoded */
    memmove(s->seq + b, s->seq + e, (s->n_seq - (size_t)e) * sizeof *s->seq);
    memmove(s->seq_think + b, s->seq_think + e, (s->n_seq - (size_t)e) * sizeof *s->seq_think);
    s->n_seq -= (size_t)(e - b);
    struct pd_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = PD_EV_PRUNED;
    ev.pos = b;
    ev.pos_end = e;
    snprintf(ev.text, sizeof ev.text, "reencode");
    push_event(s, &ev);
    if (!c->reencode) {
        push_simple(s, PD_EV_MODE, "prune: a remote engine has no cache to prune; the "
                                   "sequence was re-encoded");
    }
    return PD_OK;
}

static void set_mode(struct pd_rsession *s, enum pd_think_mode m, uint32_t budget, bool close)
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
    push_simple(s, PD_EV_MODE, msg);
}

/* Applies the queued commands; false when the worker must stop. */
static bool drain_commands(struct pd_rsession *s)
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
                idle_begin(s);
                push_simple(s, PD_EV_PAUSED, NULL);
            }
            break;
        case PD_CMD_RESUME:
            if (s->paused) {
                s->paused = false;
                idle_end(s);
                push_simple(s, PD_EV_RESUMED, NULL);
            }
            break;
        case PD_CMD_STOP:
            return false;
        case PD_CMD_CONTINUE:
            if (s->done) {
                unpark(s, c.budget);
            } else if (s->paused) {
                s->paused = false;
                idle_end(s);
                push_simple(s, PD_EV_RESUMED, NULL);
            }
            break;
        case PD_CMD_SET_SAMPLING:
            s->p.sampling = c.sampling; /* the next request samples with it */
            if (c.sampling.temperature <= 0) {
                push_simple(s, PD_EV_MODE, "sampling: greedy");
            } else {
                char msg[160];
                snprintf(msg, sizeof msg, "sampling: temp %g top-k %d top-p %g min-p %g "
                         "seed %llu", (double)c.sampling.temperature, (int)c.sampling.top_k,
                         (double)c.sampling.top_p, (double)c.sampling.min_p,
                         (unsigned long long)c.sampling.seed);
                push_simple(s, PD_EV_MODE, msg);
            }
            break;
        case PD_CMD_INJECT:
        case PD_CMD_NEW_TURN:
            c.text[sizeof c.text - 1] = '\0';
            unpark(s, 0);
            if (c.kind == PD_CMD_NEW_TURN) {
                think_state_set(s, 0); /* the answer closed thinking for its turn only */
            }
            st = force_text(s, c.text, &err); /* forced tokens do not count against -n */
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
            refuse(s, PD_CMD_SET_BUDGET, "kv budget");
            break;
        case PD_CMD_SET_POLICY:
            refuse(s, PD_CMD_SET_POLICY, "kv policy");
            break;
        case PD_CMD_DIVERGENCE:
            refuse(s, PD_CMD_DIVERGENCE, "shadow divergence");
            break;
        case PD_CMD_ATTN:
            refuse(s, PD_CMD_ATTN, "attention rows");
            break;
        case PD_CMD_BRANCH:
            st = apply_branch(s, &c, &err);
            break;
        case PD_CMD_PRUNE:
            st = apply_prune(s, &c, &err);
            break;
        case PD_CMD_KIND_COUNT:
            break;
        }
        if (atomic_load(&s->stop)) {
            return false;
        }
        if (st != PD_OK) {
            push_simple(s, PD_EV_MODE, err.msg); /* rejected; the session goes on */
        }
    }
    return !atomic_load(&s->stop);
}

/* ---- the stream ----------------------------------------------------------------------------- */

/* KV events of a ponder server's policy: the same events a local policy produces. */
static void on_kv_fn(void *ud, const struct pd_kv_event_rec *kv)
{
    struct pd_rsession *s = ud;
    struct pd_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = PD_EV_EVICT;
    ev.pos = kv->at_pos;
    ev.kv = *kv;
    push_event(s, &ev);
}

static enum pd_status on_token(void *ud, struct pd_token_rec *tok, struct pd_err *err)
{
    struct pd_rsession *s = ud;
    if (atomic_load(&s->stop) || cmd_pending(s)) {
        s->flow = FLOW_RESTART;
        return pd_err_set(err, PD_ECANCELLED, "interrupted by a command");
    }
    struct pd_token_rec r = *tok;
    tok->text = NULL;
    tok->attn = NULL;
    r.pos = (int64_t)s->n_seq;
    r.role = s->th.open ? PD_ROLE_THINK : PD_ROLE_ANSWER;
    r.flags &= PD_TOKF_ENTROPY_EST;
    fill_text(s, &r);
    struct pd_modes_decision d = {PD_MODES_ACT_NONE, NULL};
    if (s->th.open) {
        bool closes = pd_modes_text_closes(s->texts, r.text, r.text_len);
        d = pd_modes_on_think_token(&s->modes, s->texts, s->th.n_think + 1, closes);
    }
    if (d.action == PD_MODES_ACT_REPLACE_CLOSE) {
        pd_token_rec_free(&r);
        if (force_text(s, d.text, err) != PD_OK) {
            return err->status;
        }
        push_simple(s, PD_EV_MODE, "minimum thinking: Wait");
        s->flow = FLOW_RESTART;
        return pd_err_set(err, PD_ECANCELLED, "thinking controller");
    }
    bool was_thinking = s->th.open;
    update_think_state(s, &r);
    if (was_thinking) {
        s->th.n_think++;
    }
    if (!seq_push(s, r.id)) {
        pd_token_rec_free(&r);
        return pd_err_set(err, PD_ENOMEM, "out of memory (sequence)");
    }
    s->n_generated++;
    s->n_decode++;
    bool eog = s->tok && pd_tok_is_eog(s->tok, r.id);
    emit_token(s, &r);
    if (eog) {
        s->flow = FLOW_EOG;
        return pd_err_set(err, PD_ECANCELLED, "end of generation");
    }
    if (d.action == PD_MODES_ACT_CLOSE) {
        if (force_text(s, d.text, err) != PD_OK) {
            return err->status;
        }
        push_simple(s, PD_EV_MODE, s->modes.mode == PD_MODE_NONE ? "mode none: thinking ends"
                                                                 : "thinking budget reached");
        s->flow = FLOW_RESTART;
        return pd_err_set(err, PD_ECANCELLED, "thinking controller");
    }
    if (s->p.throttle_ms > 0) {
        struct timespec ts = {(time_t)(s->p.throttle_ms / 1000),
                              (long)(fmod(s->p.throttle_ms, 1000.0) * 1e6)};
        nanosleep(&ts, NULL);
    }
    return PD_OK;
}

/* Maps the server's finish reason to the session's ("eog", "length", "context"). */
static const char *finish_of(const struct pd_rsession *s, const char *server_finish)
{
    if (strcmp(server_finish, "length") == 0 || strcmp(server_finish, "limit") == 0) {
        if (s->leg_predict && s->n_generated >= s->leg_predict) {
            return "length";
        }
        uint32_t ctx = pd_remote_info(s->r)->max_model_len;
        return ctx && s->n_seq >= ctx ? "context" : "length";
    }
    return "eog"; /* "stop", "eos", "word" and the like */
}

static void *worker_main(void *arg)
{
    struct pd_rsession *s = arg;
    struct pd_err err;
    pd_err_clear(&err);
    const char *finish = "length";
    s->n_seq = 0;
    enum pd_status st = PD_OK;
    bool prompt_done = false;
    s->t0 = now_s();
    s->leg_predict = s->p.n_predict;
    const struct pd_remote_info *info = pd_remote_info(s->r);
    while (st == PD_OK) {
        /* uncancel before draining: a command sent after this point cancels the next
         * request, one sent before is drained now */
        pd_remote_uncancel(s->r);
        if (!prompt_done) {
            /* the prompt's metrics first (a command arriving meanwhile retries it) */
            st = add_forced(s, s->prompt, s->n_prompt, PD_ROLE_PROMPT, &err);
            if (st == PD_ECANCELLED && !atomic_load(&s->stop)) {
                st = PD_OK;
            } else if (st == PD_OK) {
                prompt_done = true;
            }
            if (st != PD_OK || !prompt_done) {
                if (atomic_load(&s->stop)) {
                    st = PD_OK;
                    finish = "stopped";
                    break;
                }
                continue;
            }
        }
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
        if (s->n_forced > 0) {
            st = add_forced(s, s->forced, s->n_forced, PD_ROLE_INJECTED, &err);
            if (st == PD_ECANCELLED && !atomic_load(&s->stop)) {
                st = PD_OK; /* a command came in: drain it, then add them again */
            } else if (st == PD_OK) {
                s->n_forced = 0;
            } else if (st == PD_ECANCELLED) {
                st = PD_OK;
                finish = "stopped";
                break;
            }
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
        uint32_t ctx = info->max_model_len;
        if (ctx && s->n_seq >= ctx) {
            finish = "context";
            if (s->p.keep_alive) {
                park(s, finish);
                continue;
            }
            break;
        }
        uint32_t room = ctx ? ctx - (uint32_t)s->n_seq : 4096;
        uint32_t want = s->leg_predict ? s->leg_predict - s->n_generated : room;
        struct pd_remote_gen g;
        memset(&g, 0, sizeof g);
        g.prompt = s->seq;
        g.n_prompt = s->n_seq;
        g.max_tokens = want < room ? want : room;
        g.sampling = s->p.sampling;
        g.sampling.seed = s->p.sampling.seed + s->n_requests;
        g.topk = s->p.topk;
        g.stream = true;
        g.attn = s->p.attn;
        s->n_requests++;
        s->flow = FLOW_GO;
        span_begin(s, &g.sampling);
        struct pd_remote_gen_result res;
        st = pd_remote_generate(s->r, &g, on_token, on_kv_fn, s, &res, &err);
        span_end(s);
        if (st == PD_ECANCELLED) {
            st = PD_OK;
            if (atomic_load(&s->stop)) {
                finish = "stopped";
                break;
            }
            if (s->flow == FLOW_EOG) {
                finish = "eog";
                if (s->p.keep_alive) {
                    park(s, finish);
                    continue;
                }
                break;
            }
            continue; /* a command, the controller or the length: edit and go on */
        }
        if (st != PD_OK) {
            break;
        }
        finish = finish_of(s, res.finish);
        if (strcmp(finish, "length") == 0 && !(s->leg_predict &&
                                               s->n_generated >= s->leg_predict) &&
            res.n_tokens > 0 && !ctx) {
            continue; /* the server's own per-request limit: ask for more */
        }
        if (s->p.keep_alive) {
            park(s, finish);
            continue;
        }
        break;
    }
    if (st != PD_OK) {
        push_simple(s, PD_EV_ERROR, err.msg);
    } else if (!s->done) { /* a parked session has announced its end */
        push_simple(s, PD_EV_FINISHED, finish);
    }
    atomic_store(&s->running, false);
    wake(s);
    return NULL;
}

/* ---- lifecycle -------------------------------------------------------------------------------- */

enum pd_status pd_rsession_open(struct pd_remote *r, const struct pd_tok *tok,
                                const struct pd_rsession_params *params,
                                struct pd_rsession **out, struct pd_err *err)
{
    *out = NULL;
    struct pd_rsession_params p = params ? *params : pd_rsession_default_params();
    if (p.topk > PD_TOPK_MAX || p.mode >= PD_MODE_COUNT || !pd_modes_texts(p.chat.family)) {
        pd_remote_close(&r);
        return pd_err_set(err, PD_EINVAL, "remote session: top-k, mode or chat family out of "
                          "range");
    }
    struct pd_rsession *s = calloc(1, sizeof *s);
    if (!s) {
        pd_remote_close(&r);
        return pd_err_set(err, PD_ENOMEM, "out of memory (remote session)");
    }
    s->r = r;
    s->tok = tok;
    s->p = p;
    s->pipe_fd[0] = s->pipe_fd[1] = -1;
    s->modes = pd_modes_state_init(p.mode, 0, 0, 0);
    pd_modes_set(&s->modes, p.mode, p.mode == PD_MODE_SHORT ? p.think_budget : p.min_think,
                 true);
    s->texts = pd_modes_texts(p.chat.family);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_cond_init(&s->space, NULL);
    enum pd_status st = PD_OK;
    if (pipe(s->pipe_fd) != 0) {
        st = pd_err_set(err, PD_EIO, "remote session: pipe: %s", strerror(errno));
        goto fail;
    }
    fcntl(s->pipe_fd[0], F_SETFL, O_NONBLOCK);
    fcntl(s->pipe_fd[1], F_SETFL, O_NONBLOCK);
    s->cmd = calloc(CMD_QUEUE_MAX, sizeof *s->cmd);
    if (!s->cmd) {
        st = pd_err_set(err, PD_ENOMEM, "out of memory (remote session)");
        goto fail;
    }
    *out = s;
    return PD_OK;
fail:
    pd_rsession_close(&s);
    return st;
}

static enum pd_status start_with(struct pd_rsession *s, const int32_t *tokens, size_t n,
                                 bool think_open, struct pd_err *err)
{
    if (s->thread_started) {
        return pd_err_set(err, PD_EINVAL, "session already started");
    }
    if (n == 0) {
        return pd_err_set(err, PD_EINVAL, "the prompt has no tokens");
    }
    uint32_t ctx = pd_remote_info(s->r)->max_model_len;
    if (ctx && n >= ctx) {
        return pd_err_set(err, PD_EINVAL, "the prompt (%zu tokens) does not fit the engine's "
                          "context (%u)", n, ctx);
    }
    free(s->prompt);
    s->prompt = pd_malloc_array(n, sizeof *s->prompt);
    if (!s->prompt) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (prompt)");
    }
    memcpy(s->prompt, tokens, n * sizeof *tokens);
    s->n_prompt = n;
    s->th.open = think_open;
    s->modes.closed = !think_open;
    atomic_store(&s->running, true);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, worker_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        atomic_store(&s->running, false);
        return pd_err_set(err, PD_ENOMEM, "remote session: cannot start the worker thread");
    }
    s->thread_started = true;
    return PD_OK;
}

enum pd_status pd_rsession_start_tokens(struct pd_rsession *s, const int32_t *tokens, size_t n,
                                        struct pd_err *err)
{
    bool think_open = s->p.chat.family == PD_CHAT_FAMILY_RAW && s->modes.mode != PD_MODE_NONE;
    return start_with(s, tokens, n, think_open, err);
}

enum pd_status pd_rsession_start(struct pd_rsession *s, const char *system, const char *prompt,
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
        struct pd_modes_controls ctl = {-1, -1};
        if (s->tok) {
            pd_modes_find_controls(s->tok, &ctl);
        }
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
    const struct pd_chat_traits *ft = pd_chat_family_traits(s->p.chat.family);
    if (s->tok) {
        bool add_bos = pd_tok_add_bos(s->tok) ||
                       (ft && ft->template_bos && pd_tok_bos(s->tok) >= 0);
        st = pd_tok_encode(s->tok, text.data ? text.data : "", text.len, add_bos, true, &ids,
                           &n_ids, err);
    } else {
        /* the server's tokenizer; BOS is the server's business (vLLM adds it for text
         * prompts, its /tokenize with add_special_tokens false does not) */
        st = pd_remote_tokenize(s->r, text.data ? text.data : "", &ids, &n_ids, err);
        if (st == PD_EUNSUPPORTED) {
            pd_err_prefix(err, "no local model (-m) and the server cannot tokenize");
        }
    }
    pd_buf_deinit(&text);
    if (st != PD_OK) {
        return st;
    }
    st = s->p.chat.family == PD_CHAT_FAMILY_RAW ? pd_rsession_start_tokens(s, ids, n_ids, err)
                                                : start_with(s, ids, n_ids, opens_think, err);
    free(ids);
    return st;
}

void pd_rsession_close(struct pd_rsession **sp)
{
    if (!sp || !*sp) {
        return;
    }
    struct pd_rsession *s = *sp;
    if (s->thread_started) {
        atomic_store(&s->stop, true);
        pd_remote_cancel(s->r);
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
    free(s->cmd);
    free(s->spans);
    free(s->seq);
    free(s->seq_think);
    free(s->prompt);
    free(s->forced);
    for (size_t i = 0; i < s->n_pieces; i++) {
        free(s->pieces[i].text);
    }
    pd_remote_close(&s->r);
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
