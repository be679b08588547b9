/* remote_serve.c - ponder serve (remote_serve.h).
 *
 * DESIGN
 * Threads.  libmicrohttpd runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION);
 *   a request's whole life (reading the body, waiting for the engine, generating,
 *   writing the stream) happens on its connection's thread, so blocking is allowed and
 *   no work crosses threads except through the engine lock.
 * Engine lock.  A ticket lock (mutex + condition + two counters) admits requests to the
 *   model one at a time in arrival order. Before taking a ticket a request checks that
 *   fewer than 1 + queue_max requests hold or wait for the engine, else it gets 429 at
 *   once. The lock is a ticket, not a mutex, because a streaming request takes it in the
 *   access handler and gives it back in the response's free callback.
 * Generation.  Each generation is a pd_session (engine/session.h) over the prompt ids with
 *   the RAW chat family (the client rendered the template) and the requested sampling:
 *   the same code path `ponder generate` runs in process, so ids and log-probabilities
 *   through HTTP equal the in-process ones. Its token events become server-sent events
 *   in the response callback (streams) or one JSON body. A client that goes away ends
 *   the response; the free callback closes the session, which stops its worker.
 * Scoring.  A request with echo and max_tokens 0 is teacher-forced on a context kept for
 *   scoring (made on first use): every position's distribution gives the next token's
 *   log-probability, rank, top-k and exact entropy (probe.h), and with
 *   {"ponder": {"attn": true}} the attention summaries of the capture (capture.h). The
 *   context remembers the ids it holds and each token's metrics, so a request sharing a
 *   prefix with the previous one evaluates only from the first differing token (pruning
 *   checks and sensitivities score many variants of one trace); attention summaries need
 *   the whole sequence evaluated, so such requests start from scratch.
 * Greedy.  A non-streaming greedy request without attention or KV policy (the answer
 *   checks of prune --verify) decodes on the scoring context with the same prefix reuse
 *   and the same argmax and probe as a session.
 * Untrusted input.  Bodies are bounded while they arrive; JSON is parsed with jansson and
 *   every field is type- and range-checked with a 400 that names it; token ids are
 *   checked against the vocabulary; prompts against the context. */
#include "remote_serve.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>

#include "attn_blob.h"
#include "capture.h"
#include "jsonw.h"
#include "log.h"
#include "kvcache.h"
#include "probe.h"
#include "remote_proto.h"
#include "sampler.h"
#include "session.h"

#define BODY_MAX_DEFAULT (8u << 20)
#define WAIT_SLICE_MS 100

struct pd_serve {
    const struct pd_model *model;  /* borrowed */
    const struct pd_tok *tok;      /* borrowed */
    struct pd_serve_params p;      /* strings point at the copies below */
    char *host, *api_key, *model_name, *policy_name; /* owned copies */
    uint32_t n_ctx;
    struct MHD_Daemon *d;
    uint16_t port;
    atomic_bool stopping;
    /* engine lock (FIFO tickets) */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    uint64_t next_ticket;
    uint64_t serving;
    uint32_t in_system;            /* requests holding or waiting for the engine */
    struct pd_ctx *score_ctx;      /* owned; used by the engine lock's holder only */
    int32_t *cache_ids;            /* owned [cap_cache]: the ids score_ctx holds */
    struct pd_token_rec *cache_recs; /* owned [cap_cache]: token i's metrics given [0, i)
                                      * (no text, no blob) */
    int32_t *cache_rank;           /* owned [cap_cache]: token i's rank given [0, i) */
    size_t n_cache, cap_cache;
    uint32_t cache_topk;           /* alternatives the cached metrics have */
    pthread_mutex_t slock;
    struct pd_serve_stats stats;
    atomic_uint_fast64_t seq;
    time_t started;
};

struct pd_serve_params pd_serve_default_params(void)
{
    struct pd_serve_params p;
    memset(&p, 0, sizeof p);
    p.host = "127.0.0.1";
    p.port = 8080;
    p.queue_max = 8;
    p.attn_top_n = 8;
    p.ctx = pd_ctx_default_params();
    pd_chat_format_default(PD_CHAT_FAMILY_RAW, &p.chat);
    return p;
}

bool pd_serve_secret_eq(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    unsigned char diff = (unsigned char)(na != nb);
    /* walk the expected secret's length whatever the input, so the time does not tell
     * where the first difference is */
    for (size_t i = 0; i < nb; i++) {
        unsigned char x = i < na ? (unsigned char)a[i] : 0;
        diff |= (unsigned char)(x ^ (unsigned char)b[i]);
    }
    return diff == 0;
}

uint16_t pd_serve_port(const struct pd_serve *s)
{
    return s->port;
}

uint32_t pd_serve_n_ctx(const struct pd_serve *s)
{
    return s->n_ctx;
}

void pd_serve_stats(struct pd_serve *s, struct pd_serve_stats *out)
{
    pthread_mutex_lock(&s->slock);
    *out = s->stats;
    pthread_mutex_unlock(&s->slock);
}

static void stat_add(struct pd_serve *s, uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&s->slock);
    *field += n;
    pthread_mutex_unlock(&s->slock);
}

/* ---- engine lock ------------------------------------------------------------------------ */

/* Takes the engine, waiting behind earlier requests; false (429) when the queue is full
 * or the server is stopping. */
static bool engine_acquire(struct pd_serve *s)
{
    pthread_mutex_lock(&s->qlock);
    if (s->in_system >= 1 + s->p.queue_max || atomic_load(&s->stopping)) {
        pthread_mutex_unlock(&s->qlock);
        return false;
    }
    uint64_t t = s->next_ticket++;
    s->in_system++;
    while (s->serving != t && !atomic_load(&s->stopping)) {
        pthread_cond_wait(&s->qcond, &s->qlock);
    }
    bool got = s->serving == t && !atomic_load(&s->stopping);
    if (!got) {
        s->in_system--; /* shutting down: nobody will be served after this */
    }
    pthread_mutex_unlock(&s->qlock);
    return got;
}

static void engine_release(struct pd_serve *s)
{
    pthread_mutex_lock(&s->qlock);
    s->serving++;
    s->in_system--;
    pthread_cond_broadcast(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
}

/* ---- responses --------------------------------------------------------------------------- */

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *ctype,
                               const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (!r) {
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    if (status == 401) {
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    }
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_json(struct MHD_Connection *c, unsigned status,
                                    const struct pd_buf *b)
{
    return respond(c, status, "application/json", b->data, b->len);
}

static const char *error_type(unsigned status)
{
    switch (status) {
    case 400:
        return "BadRequestError";
    case 401:
        return "AuthenticationError";
    case 404:
        return "NotFoundError";
    case 405:
        return "MethodNotAllowed";
    case 413:
        return "RequestTooLarge";
    case 429:
        return "RateLimitError";
    default:
        return "InternalServerError";
    }
}

/* {"error": {"message", "type", "param", "code"}} as vLLM answers errors. */
static enum MHD_Result respond_error(struct MHD_Connection *c, unsigned status, const char *fmt,
                                     ...) __attribute__((format(printf, 3, 4)));
static enum MHD_Result respond_error(struct MHD_Connection *c, unsigned status, const char *fmt,
                                     ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct pd_buf b;
    pd_buf_init(&b);
    bool ok = pd_buf_puts(&b, "{\"error\":{\"message\":") &&
              pd_json_str(&b, msg, strlen(msg)) &&
              pd_buf_printf(&b, ",\"type\":\"%s\",\"param\":null,\"code\":%u}}", error_type(status),
                            status);
    enum MHD_Result r = ok ? respond_json(c, status, &b) : MHD_NO;
    pd_buf_deinit(&b);
    return r;
}

/* ---- request fields ---------------------------------------------------------------------- */

/* Reads an optional integer field in [lo, hi]; false with msg set when present but bad. */
static bool get_int(json_t *o, const char *key, long long def, long long lo, long long hi,
                    long long *out, char *msg, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(msg, cap, "'%s' must be an integer in [%lld, %lld]", key, lo, hi);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

static bool get_num(json_t *o, const char *key, double def, double lo, double hi, double *out,
                    char *msg, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_number(v) || !(json_number_value(v) >= lo && json_number_value(v) <= hi)) {
        snprintf(msg, cap, "'%s' must be a number in [%g, %g]", key, lo, hi);
        return false;
    }
    *out = json_number_value(v);
    return true;
}

static bool get_bool(json_t *o, const char *key, bool def, bool *out, char *msg, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_boolean(v)) {
        snprintf(msg, cap, "'%s' must be true or false", key);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

/* ---- what a generation or scoring request asks for --------------------------------------- */

struct req {
    int32_t *ids;                 /* owned: prompt token ids */
    size_t n;
    uint32_t max_tokens;
    struct pd_sampler_params sp;
    int logprobs;                 /* -1: none, else top-k (0..20) */
    int prompt_logprobs;          /* -1: none */
    bool echo, stream, as_ids, return_ids, attn;
    bool chat;                    /* /v1/chat/completions */
    char id[48];
};

static void req_free(struct req *q)
{
    free(q->ids);
    q->ids = NULL;
}

/* Fields that change results but ponder serve does not implement: refused, not ignored. */
static bool refuse_unsupported(json_t *o, char *msg, size_t cap)
{
    static const char *const keys[] = {"stop", "suffix", "logit_bias", "best_of", "n",
                                       "presence_penalty", "frequency_penalty",
                                       "repetition_penalty", "use_beam_search", "tools",
                                       "response_format"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = json_object_get(o, keys[i]);
        if (!v || json_is_null(v) || (json_is_array(v) && json_array_size(v) == 0)) {
            continue;
        }
        if ((strcmp(keys[i], "n") == 0 || strcmp(keys[i], "best_of") == 0) &&
            json_is_integer(v) && json_integer_value(v) == 1) {
            continue;
        }
        if (strstr(keys[i], "penalty") && json_is_number(v) &&
            json_number_value(v) == (strcmp(keys[i], "repetition_penalty") == 0 ? 1.0 : 0.0)) {
            continue;
        }
        if (strcmp(keys[i], "use_beam_search") == 0 && json_is_false(v)) {
            continue;
        }
        snprintf(msg, cap, "'%s' is not supported by ponder serve", keys[i]);
        return false;
    }
    return true;
}

static bool encode_text(const struct pd_serve *s, const char *text, size_t len, bool add_bos,
                        int32_t **ids, size_t *n, char *msg, size_t cap)
{
    struct pd_err e;
    if (pd_tok_encode(s->tok, text, len, add_bos && pd_tok_bos(s->tok) >= 0, true, ids, n, &e)) {
        snprintf(msg, cap, "prompt: %s", e.msg);
        return false;
    }
    return true;
}

/* prompt: a string, token ids, or a one-element list of either. */
static bool parse_prompt(const struct pd_serve *s, json_t *o, struct req *q, char *msg,
                         size_t cap)
{
    json_t *p = json_object_get(o, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0)))) {
        p = json_array_get(p, 0);
    }
    if (json_is_string(p)) {
        return encode_text(s, json_string_value(p), json_string_length(p),
                           pd_tok_add_bos(s->tok), &q->ids, &q->n, msg, cap);
    }
    if (!json_is_array(p)) {
        snprintf(msg, cap, "'prompt' must be a string or an array of token ids (one prompt "
                 "per request)");
        return false;
    }
    size_t n = json_array_size(p);
    q->ids = pd_malloc_array(n ? n : 1, sizeof *q->ids);
    if (!q->ids) {
        snprintf(msg, cap, "out of memory");
        return false;
    }
    uint32_t nv = pd_tok_n_vocab(s->tok);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(p, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 ||
            json_integer_value(t) >= (json_int_t)nv) {
            snprintf(msg, cap, "prompt[%zu] is not a token id of this model (0..%u)", i,
                     nv - 1);
            return false;
        }
        q->ids[i] = (int32_t)json_integer_value(t);
    }
    q->n = n;
    return true;
}

/* messages: [{"role": "system"|"user"|"assistant", "content": "..."}] rendered with the
 * server's chat template and the generation prompt. */
static bool parse_messages(const struct pd_serve *s, json_t *o, struct req *q, char *msg,
                           size_t cap)
{
    json_t *ms = json_object_get(o, "messages");
    if (!json_is_array(ms) || json_array_size(ms) == 0 || json_array_size(ms) > 4096) {
        snprintf(msg, cap, "'messages' must be a non-empty array");
        return false;
    }
    size_t n = json_array_size(ms);
    struct pd_chat_msg *cm = pd_calloc(n, sizeof *cm);
    if (!cm) {
        snprintf(msg, cap, "out of memory");
        return false;
    }
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *m = json_array_get(ms, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = json_object_get(m, "content");
        struct pd_err e;
        if (!role || pd_chat_role_parse(role, &cm[i].role, &e) != PD_OK) {
            snprintf(msg, cap, "messages[%zu].role must be system, user or assistant", i);
            ok = false;
        } else if (!json_is_string(content)) {
            snprintf(msg, cap, "messages[%zu].content must be a string", i);
            ok = false;
        } else {
            cm[i].content = json_string_value(content);
        }
    }
    struct pd_buf text;
    pd_buf_init(&text);
    struct pd_err e;
    if (ok && pd_chat_render(&s->p.chat, cm, n, true, PD_CHAT_THINK_DEFAULT, &text, &e)) {
        snprintf(msg, cap, "messages: %s", e.msg);
        ok = false;
    }
    if (ok) {
        const struct pd_chat_traits *ft = pd_chat_family_traits(s->p.chat.family);
        bool add_bos = pd_tok_add_bos(s->tok) || (ft && ft->template_bos);
        ok = encode_text(s, text.data ? text.data : "", text.len, add_bos, &q->ids, &q->n, msg,
                         cap);
    }
    pd_buf_deinit(&text);
    free(cm);
    return ok;
}

/* Parses a completions or chat request body into q. Returns 0 or the HTTP status of the
 * error (msg says why). */
static unsigned parse_request(struct pd_serve *s, const char *body, size_t len, bool chat,
                              struct req *q, char *msg, size_t cap)
{
    memset(q, 0, sizeof *q);
    q->chat = chat;
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) {
        snprintf(msg, cap, o ? "the body must be a JSON object"
                             : "malformed JSON at byte %d: %s", je.position, je.text);
        json_decref(o);
        return 400;
    }
    unsigned status = 400;
    long long li;
    double d;
    bool b;
    json_t *model = json_object_get(o, "model");
    if (model && !json_is_null(model) &&
        (!json_is_string(model) || strcmp(json_string_value(model), s->model_name) != 0)) {
        snprintf(msg, cap, "The model '%s' does not exist (this server serves '%s')",
                 json_is_string(model) ? json_string_value(model) : "?", s->model_name);
        status = 404;
        goto fail;
    }
    if (!refuse_unsupported(o, msg, cap)) {
        goto fail;
    }
    if (!(chat ? parse_messages(s, o, q, msg, cap) : parse_prompt(s, o, q, msg, cap))) {
        goto fail;
    }
    if (q->n == 0) {
        snprintf(msg, cap, "the prompt has no tokens");
        goto fail;
    }
    if (q->n >= s->n_ctx) {
        snprintf(msg, cap, "This model's maximum context length is %u tokens. However, your "
                 "prompt has %zu tokens.", s->n_ctx, q->n);
        goto fail;
    }
    const char *mt_key = chat && json_object_get(o, "max_completion_tokens")
                             ? "max_completion_tokens" : "max_tokens";
    if (!get_int(o, mt_key, chat ? (long long)(s->n_ctx - q->n) : 16, 0, 1 << 22, &li, msg,
                 cap)) {
        goto fail;
    }
    q->max_tokens = (uint32_t)li;
    if (q->n + q->max_tokens > s->n_ctx) {
        snprintf(msg, cap, "This model's maximum context length is %u tokens. However, you "
                 "requested %zu tokens (%zu in the prompt, %u for the completion).", s->n_ctx,
                 q->n + q->max_tokens, q->n, q->max_tokens);
        goto fail;
    }
    q->sp = pd_sampler_default_params();
    if (!get_num(o, "temperature", 1.0, 0.0, 100.0, &d, msg, cap)) {
        goto fail;
    }
    q->sp.temperature = (float)d;
    if (!get_num(o, "top_p", 1.0, 0.0, 1.0, &d, msg, cap)) {
        goto fail;
    }
    q->sp.top_p = d > 0 ? (float)d : 1.0f;
    if (!get_num(o, "min_p", 0.0, 0.0, 1.0, &d, msg, cap)) {
        goto fail;
    }
    q->sp.min_p = (float)d;
    if (!get_int(o, "top_k", -1, -1, 1 << 24, &li, msg, cap)) {
        goto fail;
    }
    q->sp.top_k = li > 0 ? (int32_t)li : 0;
    if (!get_int(o, "seed", (long long)(time(NULL) ^ (long long)atomic_load(&s->seq)), INT64_MIN,
                 INT64_MAX, &li, msg, cap)) {
        goto fail;
    }
    q->sp.seed = (uint64_t)li;
    if (!get_bool(o, "stream", false, &q->stream, msg, cap) ||
        !get_bool(o, "echo", false, &q->echo, msg, cap) ||
        !get_bool(o, "return_tokens_as_token_ids", false, &q->as_ids, msg, cap) ||
        !get_bool(o, "return_token_ids", false, &q->return_ids, msg, cap)) {
        goto fail;
    }
    q->logprobs = -1;
    q->prompt_logprobs = -1;
    if (chat) {
        if (!get_bool(o, "logprobs", false, &b, msg, cap) ||
            !get_int(o, "top_logprobs", 0, 0, PD_TOPK_MAX, &li, msg, cap)) {
            goto fail;
        }
        q->logprobs = b ? (int)li : -1;
        q->echo = false;
    } else {
        if (!get_int(o, "logprobs", -1, -1, PD_TOPK_MAX, &li, msg, cap)) {
            goto fail;
        }
        q->logprobs = (int)li;
        if (!get_int(o, "prompt_logprobs", -1, -1, PD_TOPK_MAX, &li, msg, cap)) {
            goto fail;
        }
        q->prompt_logprobs = (int)li;
    }
    if (q->prompt_logprobs >= 0 && (q->stream || q->max_tokens != 0)) {
        snprintf(msg, cap, "'prompt_logprobs' needs stream false and max_tokens 0 on ponder "
                 "serve");
        goto fail;
    }
    if (q->max_tokens == 0 && !q->echo && q->prompt_logprobs < 0) {
        snprintf(msg, cap, "max_tokens 0 returns nothing without echo or prompt_logprobs");
        goto fail;
    }
    json_t *ext = json_object_get(o, "ponder");
    if (ext && !json_is_null(ext)) {
        if (!json_is_object(ext) || !get_bool(ext, "attn", false, &q->attn, msg, cap)) {
            snprintf(msg, cap, "'ponder' must be an object like {\"attn\": true}");
            goto fail;
        }
    }
    snprintf(q->id, sizeof q->id, "%s-%llu", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)atomic_fetch_add(&s->seq, 1));
    json_decref(o);
    return 0;
fail:
    json_decref(o);
    req_free(q);
    return status;
}

/* ---- JSON pieces of a response ------------------------------------------------------------ */

static bool put_piece(struct pd_buf *b, const struct pd_tok *tok, int32_t id)
{
    size_t len = 0;
    const char *p = pd_tok_piece(tok, id, &len);
    return pd_json_str(b, p ? p : "", p ? len : 0);
}

static bool put_key(struct pd_buf *b, const struct pd_tok *tok, int32_t id, bool as_ids)
{
    return as_ids ? pd_buf_printf(b, "\"token_id:%d\"", id) : put_piece(b, tok, id);
}

static bool dup_id(const int32_t *ids, size_t n, int32_t id)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == id) {
            return true;
        }
    }
    return false;
}

/* True when an earlier entry of the dict has the same text key (text-keyed dicts only). */
static bool dup_key(const struct pd_tok *tok, const int32_t *ids, size_t n, int32_t id)
{
    size_t la, lb;
    const char *a = pd_tok_piece(tok, id, &la);
    for (size_t i = 0; i < n; i++) {
        const char *p = pd_tok_piece(tok, ids[i], &lb);
        if (ids[i] == id || (la == lb && a && p && memcmp(a, p, la) == 0)) {
            return true;
        }
    }
    return false;
}

/* The top_logprobs entry of one token: the top-k and the chosen token, as vLLM lists
 * them (text keys that repeat are listed once). */
static bool put_top_dict(struct pd_buf *b, const struct pd_tok *tok, const struct pd_token_rec *t,
                         bool as_ids)
{
    if (isnan(t->logprob)) {
        return pd_buf_puts(b, "null");
    }
    int32_t seen[PD_TOPK_MAX + 1];
    size_t n_seen = 0;
    bool ok = pd_buf_puts(b, "{");
    for (size_t k = 0; ok && k <= t->n_top; k++) {
        int32_t id = k < t->n_top ? t->top[k].id : t->id;
        float lp = k < t->n_top ? t->top[k].logprob : t->logprob;
        if (as_ids ? dup_id(seen, n_seen, id) : dup_key(tok, seen, n_seen, id)) {
            continue;
        }
        ok = (n_seen ? pd_buf_puts(b, ",") : true) && put_key(b, tok, id, as_ids) &&
             pd_buf_puts(b, ":") && pd_json_num(b, lp);
        seen[n_seen++] = id;
    }
    return ok && pd_buf_puts(b, "}");
}

/* "logprobs": {"tokens", "token_logprobs", "top_logprobs", "text_offset"} of t[0..n). */
static bool put_cmpl_logprobs(struct pd_buf *b, const struct pd_tok *tok,
                              const struct pd_token_rec *t, size_t n, bool as_ids,
                              uint64_t *text_off)
{
    bool ok = pd_buf_puts(b, "{\"tokens\":[");
    for (size_t k = 0; ok && k < n; k++) {
        ok = (k ? pd_buf_puts(b, ",") : true) && put_key(b, tok, t[k].id, as_ids);
    }
    ok = ok && pd_buf_puts(b, "],\"token_logprobs\":[");
    for (size_t k = 0; ok && k < n; k++) {
        ok = (k ? pd_buf_puts(b, ",") : true) && pd_json_num(b, t[k].logprob);
    }
    ok = ok && pd_buf_puts(b, "],\"top_logprobs\":[");
    for (size_t k = 0; ok && k < n; k++) {
        ok = (k ? pd_buf_puts(b, ",") : true) && put_top_dict(b, tok, &t[k], as_ids);
    }
    ok = ok && pd_buf_puts(b, "],\"text_offset\":[");
    for (size_t k = 0; ok && k < n; k++) {
        size_t len = 0;
        pd_tok_piece(tok, t[k].id, &len);
        ok = pd_buf_printf(b, k ? ",%llu" : "%llu", (unsigned long long)*text_off);
        *text_off += len;
    }
    return ok && pd_buf_puts(b, "]}");
}

static bool put_bytes(struct pd_buf *b, const struct pd_tok *tok, int32_t id)
{
    size_t len = 0;
    const char *p = pd_tok_piece(tok, id, &len);
    bool ok = pd_buf_puts(b, "[");
    for (size_t i = 0; ok && p && i < len; i++) {
        ok = pd_buf_printf(b, i ? ",%u" : "%u", (unsigned)(unsigned char)p[i]);
    }
    return ok && pd_buf_puts(b, "]");
}

/* Chat "logprobs": {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}. */
static bool put_chat_logprobs(struct pd_buf *b, const struct pd_tok *tok,
                              const struct pd_token_rec *t, size_t n)
{
    bool ok = pd_buf_puts(b, "{\"content\":[");
    for (size_t k = 0; ok && k < n; k++) {
        ok = (k ? pd_buf_puts(b, ",") : true) && pd_buf_puts(b, "{\"token\":") &&
             put_piece(b, tok, t[k].id) && pd_buf_puts(b, ",\"logprob\":") &&
             pd_json_num(b, t[k].logprob) && pd_buf_puts(b, ",\"bytes\":") &&
             put_bytes(b, tok, t[k].id) && pd_buf_puts(b, ",\"top_logprobs\":[");
        for (size_t j = 0; ok && j < t[k].n_top; j++) {
            ok = (j ? pd_buf_puts(b, ",") : true) && pd_buf_puts(b, "{\"token\":") &&
                 put_piece(b, tok, t[k].top[j].id) && pd_buf_puts(b, ",\"logprob\":") &&
                 pd_json_num(b, t[k].top[j].logprob) && pd_buf_puts(b, ",\"bytes\":") &&
                 put_bytes(b, tok, t[k].top[j].id) && pd_buf_puts(b, "}");
        }
        ok = ok && pd_buf_puts(b, "]}");
    }
    return ok && pd_buf_puts(b, "]}");
}

/* ,"ponder": {"tokens": [{"id", "entropy", "attn"}], "kv": [...]} */
static bool put_ponder(struct pd_buf *b, const struct pd_token_rec *t, size_t n,
                       const struct pd_buf *kv)
{
    bool ok = pd_buf_puts(b, ",\"ponder\":{\"tokens\":[");
    for (size_t k = 0; ok && k < n; k++) {
        ok = pd_buf_printf(b, "%s{\"id\":%d,\"entropy\":", k ? "," : "", t[k].id) &&
             pd_json_num(b, t[k].entropy);
        if (ok && t[k].attn) {
            ok = pd_buf_puts(b, ",\"attn\":\"") && pd_base64_encode(b, t[k].attn, t[k].attn_len) &&
                 pd_buf_puts(b, "\"");
        }
        ok = ok && pd_buf_puts(b, "}");
    }
    ok = ok && pd_buf_puts(b, "]");
    if (ok && kv && kv->len) {
        ok = pd_buf_puts(b, ",\"kv\":[") && pd_buf_append(b, kv->data, kv->len) &&
             pd_buf_puts(b, "]");
    }
    return ok && pd_buf_puts(b, "}");
}

static bool put_ids(struct pd_buf *b, const char *key, const int32_t *ids, size_t n)
{
    bool ok = pd_buf_printf(b, ",\"%s\":[", key);
    for (size_t i = 0; ok && i < n; i++) {
        ok = pd_buf_printf(b, i ? ",%d" : "%d", ids[i]);
    }
    return ok && pd_buf_puts(b, "]");
}

static void recs_free(struct pd_token_rec *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++) {
        pd_token_rec_free(&t[i]);
    }
    free(t);
}

/* ---- scoring (echo + max_tokens 0) ------------------------------------------------------- */

struct score_cb {
    const struct pd_model *m;
    const int32_t *ids;
    size_t n;
    size_t offset;               /* index in ids of the call's token 0 */
    uint32_t topk;
    struct pd_token_rec *recs;   /* [n] */
    int32_t *rank;               /* [n] rank of the actual token (1 = most likely) */
};

static void score_logits(void *ud, size_t i, int64_t pos, const float *logits)
{
    (void)pos;
    struct score_cb *c = ud;
    size_t at = c->offset + i;
    if (at + 1 >= c->n) {
        return;
    }
    uint32_t nv = c->m->hp.n_vocab;
    int32_t id = c->ids[at + 1];
    pd_probe_fill(logits, nv, id, c->topk, &c->recs[at + 1]);
    int32_t r = 1;
    for (uint32_t j = 0; j < nv; j++) {
        r += logits[j] > logits[id] || (logits[j] == logits[id] && (int32_t)j < id);
    }
    c->rank[at + 1] = r;
}

/* Makes the scoring context exist and have room for n ids in its cache. */
static enum pd_status score_ctx_ready(struct pd_serve *s, size_t n, struct pd_err *err)
{
    if (!s->score_ctx) {
        struct pd_ctx_params cp = s->p.ctx;
        cp.n_ctx = s->n_ctx;
        enum pd_status st = pd_ctx_open(s->model, &cp, &s->score_ctx, err);
        if (st != PD_OK) {
            return st;
        }
    }
    if (n > s->cap_cache) {
        size_t cap = s->n_ctx;
        int32_t *ids = pd_realloc_array(s->cache_ids, cap, sizeof *ids);
        if (!ids) {
            return pd_err_set(err, PD_ENOMEM, "out of memory");
        }
        s->cache_ids = ids;
        struct pd_token_rec *r = pd_realloc_array(s->cache_recs, cap, sizeof *r);
        if (!r) {
            return pd_err_set(err, PD_ENOMEM, "out of memory");
        }
        s->cache_recs = r;
        int32_t *rk = pd_realloc_array(s->cache_rank, cap, sizeof *rk);
        if (!rk) {
            return pd_err_set(err, PD_ENOMEM, "out of memory");
        }
        s->cache_rank = rk;
        s->cap_cache = cap;
    }
    return PD_OK;
}

/* Makes the scoring context hold ids[0..n) (its logits those after ids[n - 1]) and fills
 * recs[1..n) / rank[1..n) with each token's metrics (topk alternatives), reusing the
 * evaluated prefix the context already holds unless `fresh`. With cap (attention), the
 * whole sequence is evaluated and each token's summary copied into recs[i].attn. */
static enum pd_status score_eval(struct pd_serve *s, const int32_t *ids, size_t n,
                                 uint32_t topk, struct pd_capture_state *cap,
                                 struct pd_token_rec *recs, int32_t *rank, struct pd_err *err)
{
    enum pd_status st = score_ctx_ready(s, n, err);
    if (st != PD_OK) {
        return st;
    }
    struct pd_ctx *ctx = s->score_ctx;
    size_t k = 0;
    if (!cap && topk <= s->cache_topk) {
        while (k < s->n_cache && k < n && s->cache_ids[k] == ids[k]) {
            k++;
        }
    }
    /* position k - 1 is evaluated again: its logits score token k */
    size_t from = k > 0 ? k - 1 : 0;
    if (from == 0) {
        pd_ctx_reset(ctx);
    } else {
        pd_kvcache_truncate(ctx->kv, (int64_t)from);
        ctx->n_past = (int64_t)from;
    }
    s->n_cache = from;
    for (size_t i = 0; i < n; i++) {
        recs[i].pos = (int64_t)i;
        recs[i].id = ids[i];
        rank[i] = 0;
        if (i >= 1 && i < k) {
            const struct pd_token_rec *c = &s->cache_recs[i];
            recs[i].logprob = c->logprob;
            recs[i].entropy = c->entropy;
            recs[i].n_top = (uint8_t)(c->n_top < topk ? c->n_top : topk);
            memcpy(recs[i].top, c->top, sizeof recs[i].top);
            rank[i] = s->cache_rank[i];
        } else {
            recs[i].logprob = NAN;
            recs[i].entropy = NAN;
        }
    }
    uint32_t ktop = topk > s->cache_topk || from == 0 ? topk : s->cache_topk;
    struct score_cb cb = {s->model, ids, n, from, ktop, recs, rank};
    if (cap && (st = pd_capture_begin(cap, (int64_t)from, n - from, err)) != PD_OK) {
        return st;
    }
    st = pd_ctx_eval(ctx, ids + from, n - from, score_logits, &cb, err);
    if (st != PD_OK) {
        pd_ctx_reset(ctx);
        s->n_cache = 0;
        return st;
    }
    if (n > from) {
        memcpy(s->cache_ids + from, ids + from, (n - from) * sizeof *ids);
    }
    for (size_t i = from > 0 ? from : 1; i < n; i++) {
        if (i >= k) {
            struct pd_token_rec c = recs[i];
            c.text = NULL;
            c.attn = NULL;
            s->cache_recs[i] = c;
            s->cache_rank[i] = rank[i];
        }
        if (recs[i].n_top > topk) {
            recs[i].n_top = (uint8_t)topk;
        }
    }
    s->n_cache = n;
    s->cache_topk = ktop;
    for (size_t i = from; cap && i < n; i++) {
        const uint8_t *blob = pd_capture_blob(cap, i - from);
        if (blob) {
            recs[i].attn = malloc(cap->blob_len);
            if (!recs[i].attn) {
                return pd_err_set(err, PD_ENOMEM, "out of memory");
            }
            memcpy(recs[i].attn, blob, cap->blob_len);
            recs[i].attn_len = cap->blob_len;
        }
    }
    return PD_OK;
}

/* Teacher-forces q->ids on the scoring context: recs[1..n) metrics, blobs when asked. */
static enum pd_status score_run(struct pd_serve *s, const struct req *q, struct pd_token_rec *recs,
                                int32_t *rank, struct pd_err *err)
{
    enum pd_status st = score_ctx_ready(s, q->n, err);
    if (st != PD_OK) {
        return st;
    }
    uint32_t topk = (uint32_t)(q->logprobs > q->prompt_logprobs ? q->logprobs
                                                                : q->prompt_logprobs);
    if ((int)topk < 0) {
        topk = 0;
    }
    if (!q->attn) {
        return score_eval(s, q->ids, q->n, topk, NULL, recs, rank, err);
    }
    struct pd_capture_state cap;
    struct pd_ctx *ctx = s->score_ctx;
    if ((st = pd_capture_init(&cap, ctx, PD_CAPTURE_LEVEL_SUMMARY, s->p.attn_top_n, 0, err))) {
        return st;
    }
    st = score_eval(s, q->ids, q->n, topk, &cap, recs, rank, err);
    pd_capture_deinit(&cap);
    ctx->attn_hook = NULL;
    ctx->attn_hook_ud = NULL;
    return st;
}

static enum MHD_Result handle_score(struct pd_serve *s, struct MHD_Connection *c, struct req *q)
{
    struct pd_token_rec *recs = pd_calloc(q->n, sizeof *recs);
    int32_t *rank = pd_calloc(q->n, sizeof *rank);
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_buf b;
    pd_buf_init(&b);
    if (!recs || !rank) {
        free(recs);
        free(rank);
        return respond_error(c, 500, "out of memory");
    }
    if (!engine_acquire(s)) {
        free(recs);
        free(rank);
        stat_add(s, &s->stats.rejected_busy, 1);
        return respond_error(c, 429, "the engine is busy: %u requests are already queued",
                             s->p.queue_max);
    }
    enum pd_status st = score_run(s, q, recs, rank, &err);
    engine_release(s);
    enum MHD_Result ret;
    if (st != PD_OK) {
        ret = respond_error(c, 500, "scoring failed: %s", err.msg);
        goto done;
    }
    struct pd_buf text;
    pd_buf_init(&text);
    pd_tok_decode(s->tok, q->ids, q->n, &text, &err);
    uint64_t off = 0;
    bool ok = pd_buf_printf(&b, "{\"id\":\"%s\",\"object\":\"text_completion\",\"created\":%lld,"
                                "\"model\":", q->id, (long long)time(NULL)) &&
              pd_json_str(&b, s->model_name, strlen(s->model_name)) &&
              pd_buf_puts(&b, ",\"choices\":[{\"index\":0,\"text\":") &&
              pd_json_str(&b, text.data ? text.data : "", text.len) &&
              pd_buf_puts(&b, ",\"logprobs\":");
    pd_buf_deinit(&text);
    ok = ok && (q->echo && q->logprobs >= 0
                    ? put_cmpl_logprobs(&b, s->tok, recs, q->n, q->as_ids, &off)
                    : pd_buf_puts(&b, "null"));
    ok = ok && pd_buf_puts(&b, ",\"finish_reason\":\"length\",\"stop_reason\":null");
    if (ok && q->prompt_logprobs >= 0) {
        /* vLLM's prompt_logprobs: null, then {"<id>": {logprob, rank, decoded_token}} */
        ok = pd_buf_puts(&b, ",\"prompt_logprobs\":[null");
        for (size_t i = 1; ok && i < q->n; i++) {
            const struct pd_token_rec *t = &recs[i];
            ok = pd_buf_printf(&b, ",{\"%d\":{\"logprob\":", t->id) && pd_json_num(&b, t->logprob) &&
                 pd_buf_printf(&b, ",\"rank\":%d,\"decoded_token\":", rank[i]) &&
                 put_piece(&b, s->tok, t->id) && pd_buf_puts(&b, "}");
            for (size_t k = 0; ok && k < t->n_top && k < (size_t)q->prompt_logprobs; k++) {
                if (t->top[k].id == t->id) {
                    continue;
                }
                ok = pd_buf_printf(&b, ",\"%d\":{\"logprob\":", t->top[k].id) &&
                     pd_json_num(&b, t->top[k].logprob) &&
                     pd_buf_printf(&b, ",\"rank\":%zu,\"decoded_token\":", k + 1) &&
                     put_piece(&b, s->tok, t->top[k].id) && pd_buf_puts(&b, "}");
            }
            ok = ok && pd_buf_puts(&b, "}");
        }
        ok = ok && pd_buf_puts(&b, "]");
    }
    if (ok && q->return_ids) {
        ok = put_ids(&b, "prompt_token_ids", q->ids, q->n);
    }
    ok = ok && put_ponder(&b, recs, q->n, NULL) &&
         pd_buf_printf(&b, "}],\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":0,"
                           "\"total_tokens\":%zu}}", q->n, q->n);
    stat_add(s, &s->stats.tokens_out, q->n);
    ret = ok ? respond_json(c, 200, &b) : respond_error(c, 500, "out of memory");
done:
    recs_free(recs, q->n);
    free(rank);
    pd_buf_deinit(&b);
    return ret;
}

/* ---- generation ---------------------------------------------------------------------------- */

/* One generation request: its session, and the output not yet written. */
struct job {
    struct pd_serve *s;
    struct req q;
    struct pd_session *sess;      /* owned */
    bool holds_engine;
    struct pd_tok_stream ts;      /* owned: text deltas that never split a character */
    struct pd_buf out;            /* owned: stream bytes not yet handed to MHD */
    size_t out_off;
    struct pd_buf kv;             /* owned: KV events since the last token (JSON objects) */
    bool ended;                   /* the session finished or failed */
    bool final_written;           /* the stream's last chunk (and [DONE]) is in out */
    char finish[16];
    char error[256];
    uint64_t text_off;
    size_t n_prompt_seen;
    size_t n_gen;
    struct pd_token_rec *toks;    /* owned: prompt tokens (echo) and generated tokens */
    size_t n_toks, cap_toks;
    struct pd_buf text;           /* owned: the whole text (non-streaming responses) */
    bool role_sent;
    long long created;
};

static void job_end_engine(struct job *j)
{
    pd_session_close(&j->sess);
    if (j->holds_engine) {
        j->holds_engine = false;
        engine_release(j->s);
    }
}

static void job_free(struct job *j)
{
    if (!j) {
        return;
    }
    job_end_engine(j);
    pd_tok_stream_deinit(&j->ts);
    pd_buf_deinit(&j->out);
    pd_buf_deinit(&j->kv);
    pd_buf_deinit(&j->text);
    recs_free(j->toks, j->n_toks);
    req_free(&j->q);
    free(j);
}

static enum pd_status job_start(struct job *j, struct pd_err *err)
{
    struct pd_serve *s = j->s;
    struct pd_session_params sp = pd_session_default_params();
    sp.ctx = s->p.ctx;
    sp.ctx.n_ctx = s->n_ctx;
    sp.sampling = j->q.sp;
    sp.n_predict = j->q.max_tokens;
    sp.topk = j->q.logprobs > 0 ? (uint32_t)j->q.logprobs : 0;
    sp.capture = j->q.attn ? PD_CAPTURE_LEVEL_SUMMARY : PD_CAPTURE_LEVEL_OFF;
    sp.summary_top_n = s->p.attn_top_n;
    pd_chat_format_default(PD_CHAT_FAMILY_RAW, &sp.chat); /* the prompt is final */
    sp.mode = PD_MODE_LONG;
    sp.policy = s->p.make_policy ? s->p.make_policy(s->p.policy_ud) : NULL;
    sp.throttle_ms = s->p.throttle_ms;
    enum pd_status st = pd_session_open(s->model, s->tok, &sp, &j->sess, err);
    if (st == PD_OK) {
        st = pd_session_start_tokens(j->sess, j->q.ids, j->q.n, err);
    }
    return st;
}

static bool keep_tok(struct job *j, struct pd_token_rec *t)
{
    struct pd_token_rec *n = pd_grow_array(j->toks, &j->cap_toks, j->n_toks + 1, sizeof *n);
    if (!n) {
        return false;
    }
    j->toks = n;
    struct pd_token_rec *d = &j->toks[j->n_toks++];
    *d = *t;
    d->text = NULL;
    d->text_len = 0;
    t->attn = NULL; /* moved */
    return true;
}

static const char *finish_reason(const char *session_finish)
{
    if (strcmp(session_finish, "eog") == 0) {
        return "stop";
    }
    if (strcmp(session_finish, "stopped") == 0) {
        return "abort";
    }
    return "length"; /* "length", "context" */
}

/* The text a token adds: control tokens (BOS, EOS, chat markers) are left out of text as
 * servers do by default; their ids are in the logprobs. */
static bool push_text(struct job *j, int32_t id, struct pd_buf *delta)
{
    if (pd_tok_is_control(j->s->tok, id)) {
        return true;
    }
    struct pd_err e;
    return pd_tok_stream_push(&j->ts, j->s->tok, id, delta, &e) == PD_OK;
}

static bool chunk_head(struct job *j, struct pd_buf *b)
{
    const char *name = j->s->model_name;
    return pd_buf_printf(b, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":",
                         j->q.id, j->q.chat ? "chat.completion.chunk" : "text_completion",
                         j->created) &&
           pd_json_str(b, name, strlen(name)) && pd_buf_puts(b, ",\"choices\":[{\"index\":0,");
}

/* One stream chunk carrying toks[0..n) and their text delta. */
static bool chunk_tokens(struct job *j, const struct pd_token_rec *t, size_t n,
                         const struct pd_buf *delta)
{
    struct pd_buf *b = &j->out;
    const char *d = delta->data ? delta->data : "";
    bool ok = chunk_head(j, b);
    if (j->q.chat) {
        ok = ok && pd_buf_puts(b, j->role_sent ? "\"delta\":{\"content\":"
                                               : "\"delta\":{\"role\":\"assistant\",\"content\":") &&
             pd_json_str(b, d, delta->len) && pd_buf_puts(b, "},\"logprobs\":");
        ok = ok && (j->q.logprobs >= 0 ? put_chat_logprobs(b, j->s->tok, t, n)
                                       : pd_buf_puts(b, "null"));
        j->role_sent = true;
    } else {
        ok = ok && pd_buf_puts(b, "\"text\":") && pd_json_str(b, d, delta->len) &&
             pd_buf_puts(b, ",\"logprobs\":");
        ok = ok && (j->q.logprobs >= 0
                        ? put_cmpl_logprobs(b, j->s->tok, t, n, j->q.as_ids, &j->text_off)
                        : pd_buf_puts(b, "null"));
    }
    ok = ok && pd_buf_puts(b, ",\"finish_reason\":null");
    if (ok && j->q.return_ids) {
        int32_t ids[64];
        for (size_t i = 0; ok && i < n; i += 64) {
            size_t m = n - i < 64 ? n - i : 64;
            for (size_t k = 0; k < m; k++) {
                ids[k] = t[i + k].id;
            }
            ok = i == 0 ? put_ids(b, "token_ids", ids, m) : true;
        }
    }
    ok = ok && put_ponder(b, t, n, &j->kv) && pd_buf_puts(b, "}]}\n\n");
    j->kv.len = 0;
    return ok;
}

static bool chunk_final(struct job *j)
{
    struct pd_buf *b = &j->out;
    struct pd_buf rest;
    pd_buf_init(&rest);
    struct pd_err e;
    pd_tok_stream_flush(&j->ts, &rest, &e);
    bool ok = true;
    if (j->error[0]) {
        ok = pd_buf_puts(b, "data: {\"error\":{\"message\":") &&
             pd_json_str(b, j->error, strlen(j->error)) &&
             pd_buf_puts(b, ",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}\n\n");
    } else {
        ok = chunk_head(j, b);
        if (j->q.chat) {
            ok = ok && pd_buf_puts(b, "\"delta\":{\"content\":") &&
                 pd_json_str(b, rest.data ? rest.data : "", rest.len) &&
                 pd_buf_puts(b, "},\"logprobs\":null");
        } else {
            ok = ok && pd_buf_puts(b, "\"text\":") &&
                 pd_json_str(b, rest.data ? rest.data : "", rest.len) &&
                 pd_buf_puts(b, ",\"logprobs\":null");
        }
        ok = ok && pd_buf_printf(b, ",\"finish_reason\":\"%s\"", j->finish);
        if (ok && j->kv.len) {
            ok = put_ponder(b, NULL, 0, &j->kv);
        }
        ok = ok && pd_buf_printf(b, "}],\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,"
                                    "\"total_tokens\":%zu}}\n\n",
                                 j->q.n, j->n_gen, j->q.n + j->n_gen);
    }
    ok = ok && pd_buf_puts(b, "data: [DONE]\n\n");
    pd_buf_deinit(&rest);
    j->final_written = true;
    return ok;
}

/* Handles one session event (waiting up to a slice for it). Streams get their chunks
 * in j->out; whole responses keep the tokens. */
static void job_pump(struct job *j)
{
    if (j->ended) {
        if (j->q.stream && !j->final_written && !chunk_final(j)) {
            j->final_written = true;
        }
        return;
    }
    struct pd_event ev;
    if (!pd_session_wait(j->sess, &ev, WAIT_SLICE_MS)) {
        return;
    }
    struct pd_buf delta;
    pd_buf_init(&delta);
    bool ok = true;
    if (ev.kind == PD_EV_TOKEN && ev.tok.role == PD_ROLE_PROMPT) {
        j->n_prompt_seen++;
        if (j->q.echo) {
            ok = keep_tok(j, &ev.tok);
            if (ok && j->q.stream && j->n_prompt_seen == j->q.n) {
                for (size_t i = 0; ok && i < j->n_toks; i++) {
                    ok = push_text(j, j->toks[i].id, &delta);
                }
                ok = ok && chunk_tokens(j, j->toks, j->n_toks, &delta);
            }
        }
    } else if (ev.kind == PD_EV_TOKEN) {
        j->n_gen++;
        stat_add(j->s, &j->s->stats.tokens_out, 1);
        if (j->q.stream) {
            ok = push_text(j, ev.tok.id, &delta) && chunk_tokens(j, &ev.tok, 1, &delta);
        } else {
            ok = push_text(j, ev.tok.id, &j->text) && keep_tok(j, &ev.tok);
        }
    } else if (ev.kind == PD_EV_EVICT) {
        ok = pd_buf_printf(&j->kv, "%s{\"at\":%lld,\"layer\":%d,\"slot_pos\":%lld,\"shadow\":%s}",
                           j->kv.len ? "," : "", (long long)ev.kv.at_pos, ev.kv.layer,
                           (long long)ev.kv.slot_pos,
                           ev.kv.kind == PD_KV_SHADOW_EVICT ? "true" : "false");
    } else if (ev.kind == PD_EV_FINISHED) {
        snprintf(j->finish, sizeof j->finish, "%s", finish_reason(ev.text));
        j->ended = true;
    } else if (ev.kind == PD_EV_ERROR) {
        snprintf(j->error, sizeof j->error, "%s", ev.text);
        j->ended = true;
    }
    pd_event_free(&ev);
    pd_buf_deinit(&delta);
    if (!ok && !j->ended) {
        snprintf(j->error, sizeof j->error, "out of memory");
        j->ended = true;
    }
    if (j->ended) {
        job_end_engine(j); /* the next request may start while this one writes its tail */
    }
}

static ssize_t job_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct job *j = cls;
    while (j->out_off == j->out.len) {
        j->out.len = 0;
        j->out_off = 0;
        if (j->final_written) {
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (atomic_load(&j->s->stopping)) {
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        job_pump(j);
    }
    size_t n = j->out.len - j->out_off;
    if (n > max) {
        n = max;
    }
    if (n > 0) {
        memcpy(buf, j->out.data + j->out_off, n);
    }
    j->out_off += n;
    return (ssize_t)n;
}

static void job_read_free(void *cls)
{
    job_free(cls);
}

/* The whole response of a non-streaming generation. */
static bool whole_body(struct job *j, struct pd_buf *b)
{
    struct pd_serve *s = j->s;
    struct pd_err e;
    pd_tok_stream_flush(&j->ts, &j->text, &e);
    const struct pd_token_rec *t = j->toks;
    size_t n = j->n_toks;
    bool ok = pd_buf_printf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":",
                            j->q.id, j->q.chat ? "chat.completion" : "text_completion",
                            j->created) &&
              pd_json_str(b, s->model_name, strlen(s->model_name)) &&
              pd_buf_puts(b, ",\"choices\":[{\"index\":0,");
    if (j->q.chat) {
        ok = ok && pd_buf_puts(b, "\"message\":{\"role\":\"assistant\",\"content\":") &&
             pd_json_str(b, j->text.data ? j->text.data : "", j->text.len) &&
             pd_buf_puts(b, "},\"logprobs\":") &&
             (j->q.logprobs >= 0 ? put_chat_logprobs(b, s->tok, t, n) : pd_buf_puts(b, "null"));
    } else {
        struct pd_buf full;
        pd_buf_init(&full);
        if (j->q.echo) {
            pd_tok_decode(s->tok, j->q.ids, j->q.n, &full, &e);
        }
        ok = ok && pd_buf_append(&full, j->text.data ? j->text.data : "", j->text.len) &&
             pd_buf_puts(b, "\"text\":") && pd_json_str(b, full.data ? full.data : "", full.len) &&
             pd_buf_puts(b, ",\"logprobs\":") &&
             (j->q.logprobs >= 0 ? put_cmpl_logprobs(b, s->tok, t, n, j->q.as_ids, &j->text_off)
                                 : pd_buf_puts(b, "null"));
        pd_buf_deinit(&full);
    }
    ok = ok && pd_buf_printf(b, ",\"finish_reason\":\"%s\"", j->finish);
    if (ok && j->q.return_ids) {
        size_t np = j->q.echo ? j->q.n : 0;
        int32_t *ids = pd_malloc_array(n ? n : 1, sizeof *ids);
        ok = ids != NULL;
        for (size_t i = 0; ok && i < n; i++) {
            ids[i] = t[i].id;
        }
        ok = ok && put_ids(b, "prompt_token_ids", j->q.ids, j->q.n) &&
             put_ids(b, "token_ids", ids + np, n - np);
        free(ids);
    }
    ok = ok && put_ponder(b, t, n, &j->kv) &&
         pd_buf_printf(b, "}],\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,"
                          "\"total_tokens\":%zu}}", j->q.n, j->n_gen, j->q.n + j->n_gen);
    return ok;
}

/* Greedy decoding on the scoring context (see DESIGN): what a session with temperature 0
 * produces, token for token, with the evaluated prefix reused. Fills j's tokens, text,
 * count and finish reason. */
static enum pd_status greedy_run(struct job *j, struct pd_err *err)
{
    struct pd_serve *s = j->s;
    const struct req *q = &j->q;
    uint32_t topk = q->logprobs > 0 ? (uint32_t)q->logprobs : 0;
    struct pd_token_rec *recs = pd_calloc(q->n, sizeof *recs);
    int32_t *rank = pd_calloc(q->n, sizeof *rank);
    enum pd_status st = recs && rank ? score_eval(s, q->ids, q->n, topk, NULL, recs, rank, err)
                                     : pd_err_set(err, PD_ENOMEM, "out of memory");
    recs_free(recs, q->n);
    free(rank);
    if (st != PD_OK) {
        return st;
    }
    struct pd_ctx *ctx = s->score_ctx;
    uint32_t nv = s->model->hp.n_vocab;
    snprintf(j->finish, sizeof j->finish, "length");
    for (uint32_t g = 0; g < q->max_tokens; g++) {
        int32_t id = pd_argmax(ctx->logits, nv);
        struct pd_token_rec r;
        memset(&r, 0, sizeof r);
        r.pos = (int64_t)s->n_cache;
        pd_probe_fill(ctx->logits, nv, id, topk, &r);
        int32_t rk = 1;
        for (uint32_t v = 0; v < nv; v++) {
            rk += ctx->logits[v] > ctx->logits[id] ||
                  (ctx->logits[v] == ctx->logits[id] && (int32_t)v < id);
        }
        if (!push_text(j, id, &j->text) || !keep_tok(j, &r)) {
            return pd_err_set(err, PD_ENOMEM, "out of memory");
        }
        j->n_gen++;
        stat_add(s, &s->stats.tokens_out, 1);
        if (pd_tok_is_eog(s->tok, id)) {
            snprintf(j->finish, sizeof j->finish, "stop");
            break;
        }
        if (g + 1 == q->max_tokens) {
            break;
        }
        if ((st = pd_ctx_eval(ctx, &id, 1, NULL, NULL, err)) != PD_OK) {
            pd_ctx_reset(ctx);
            s->n_cache = 0;
            return st;
        }
        s->cache_ids[s->n_cache] = id;
        s->cache_recs[s->n_cache] = r;
        s->cache_rank[s->n_cache] = rk;
        s->n_cache++;
    }
    return PD_OK;
}

static enum MHD_Result handle_generate(struct pd_serve *s, struct MHD_Connection *c,
                                       struct req *q)
{
    if (q->max_tokens == 0) {
        enum MHD_Result r = handle_score(s, c, q);
        req_free(q);
        return r;
    }
    struct job *j = calloc(1, sizeof *j);
    if (!j) {
        req_free(q);
        return respond_error(c, 500, "out of memory");
    }
    j->s = s;
    j->q = *q;
    memset(q, 0, sizeof *q); /* the job owns the ids now */
    j->created = (long long)time(NULL);
    pd_tok_stream_init(&j->ts);
    pd_buf_init(&j->out);
    pd_buf_init(&j->kv);
    pd_buf_init(&j->text);
    if (!engine_acquire(s)) {
        job_free(j);
        stat_add(s, &s->stats.rejected_busy, 1);
        return respond_error(c, 429, "the engine is busy: %u requests are already queued",
                             s->p.queue_max);
    }
    j->holds_engine = true;
    struct pd_err err;
    pd_err_clear(&err);
    if (!j->q.stream && j->q.sp.temperature <= 0 && !j->q.attn && !j->q.echo && !j->q.chat &&
        !s->p.make_policy && s->p.throttle_ms <= 0) {
        enum pd_status st = greedy_run(j, &err);
        job_end_engine(j);
        enum MHD_Result ret;
        if (st != PD_OK) {
            ret = respond_error(c, 500, "generation failed: %s", err.msg);
        } else {
            struct pd_buf b;
            pd_buf_init(&b);
            ret = whole_body(j, &b) ? respond_json(c, 200, &b)
                                    : respond_error(c, 500, "out of memory");
            pd_buf_deinit(&b);
        }
        job_free(j);
        return ret;
    }
    if (job_start(j, &err) != PD_OK) {
        job_free(j);
        return respond_error(c, 500, "generation failed: %s", err.msg);
    }
    if (j->q.stream) {
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, job_read, j, job_read_free);
        if (!r) {
            job_free(j);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r); /* the job lives until MHD is done with the response */
        return ret;
    }
    while (!j->ended && !atomic_load(&s->stopping)) {
        job_pump(j);
    }
    enum MHD_Result ret;
    if (j->error[0] || !j->ended) {
        ret = respond_error(c, 500, "generation failed: %s",
                            j->error[0] ? j->error : "the server is stopping");
    } else {
        struct pd_buf b;
        pd_buf_init(&b);
        ret = whole_body(j, &b) ? respond_json(c, 200, &b) : respond_error(c, 500, "out of memory");
        pd_buf_deinit(&b);
    }
    job_free(j);
    return ret;
}

/* ---- small endpoints ------------------------------------------------------------------- */

static enum MHD_Result handle_models(struct pd_serve *s, struct MHD_Connection *c)
{
    struct pd_buf b;
    pd_buf_init(&b);
    bool ok = pd_buf_puts(&b, "{\"object\":\"list\",\"data\":[{\"id\":") &&
              pd_json_str(&b, s->model_name, strlen(s->model_name)) &&
              pd_buf_printf(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"ponder\","
                                "\"root\":", (long long)s->started) &&
              pd_json_str(&b, s->model_name, strlen(s->model_name)) &&
              pd_buf_printf(&b, ",\"max_model_len\":%u,\"ponder\":{\"arch\":\"%s\","
                                "\"n_layer\":%u,\"n_vocab\":%u,\"kv_policy\":",
                            s->n_ctx, pd_arch_name(s->model->hp.arch), s->model->hp.n_layer,
                            pd_tok_n_vocab(s->tok)) &&
              pd_json_str(&b, s->policy_name ? s->policy_name : "full",
                          strlen(s->policy_name ? s->policy_name : "full")) &&
              pd_buf_puts(&b, "}}]}");
    enum MHD_Result r = ok ? respond_json(c, 200, &b) : respond_error(c, 500, "out of memory");
    pd_buf_deinit(&b);
    return r;
}

static enum MHD_Result handle_tokenize(struct pd_serve *s, struct MHD_Connection *c,
                                       const struct pd_buf *body)
{
    json_error_t je;
    json_t *o = json_loadb(body->data ? body->data : "", body->len, 0, &je);
    json_t *prompt = json_object_get(o, "prompt");
    bool llama = false;
    if (!prompt) {
        prompt = json_object_get(o, "content");
        llama = prompt != NULL;
    }
    char msg[256];
    bool add = !llama;
    if (!json_is_string(prompt) ||
        !get_bool(o, llama ? "add_special" : "add_special_tokens", !llama, &add, msg, sizeof msg)) {
        json_decref(o);
        return respond_error(c, 400, "tokenize: needs {\"prompt\": TEXT} (or {\"content\": TEXT})");
    }
    int32_t *ids = NULL;
    size_t n = 0;
    bool ok = encode_text(s, json_string_value(prompt), json_string_length(prompt), add, &ids, &n,
                          msg, sizeof msg);
    json_decref(o);
    if (!ok) {
        return respond_error(c, 400, "%s", msg);
    }
    struct pd_buf b;
    pd_buf_init(&b);
    ok = pd_buf_puts(&b, "{\"count\":") && pd_buf_printf(&b, "%zu", n) &&
         pd_buf_printf(&b, ",\"max_model_len\":%u", s->n_ctx) && put_ids(&b, "tokens", ids, n) &&
         pd_buf_puts(&b, "}");
    free(ids);
    enum MHD_Result r = ok ? respond_json(c, 200, &b) : respond_error(c, 500, "out of memory");
    pd_buf_deinit(&b);
    return r;
}

static enum MHD_Result handle_detokenize(struct pd_serve *s, struct MHD_Connection *c,
                                         const struct pd_buf *body)
{
    json_error_t je;
    json_t *o = json_loadb(body->data ? body->data : "", body->len, 0, &je);
    json_t *toks = json_object_get(o, "tokens");
    if (!json_is_array(toks)) {
        json_decref(o);
        return respond_error(c, 400, "detokenize: needs {\"tokens\": [ids]}");
    }
    size_t n = json_array_size(toks);
    int32_t *ids = pd_malloc_array(n ? n : 1, sizeof *ids);
    uint32_t nv = pd_tok_n_vocab(s->tok);
    for (size_t i = 0; ids && i < n; i++) {
        json_t *t = json_array_get(toks, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 ||
            json_integer_value(t) >= (json_int_t)nv) {
            free(ids);
            json_decref(o);
            return respond_error(c, 400, "detokenize: tokens[%zu] is not a token id", i);
        }
        ids[i] = (int32_t)json_integer_value(t);
    }
    json_decref(o);
    if (!ids) {
        return respond_error(c, 500, "out of memory");
    }
    struct pd_buf text, b;
    pd_buf_init(&text);
    pd_buf_init(&b);
    struct pd_err e;
    bool ok = pd_tok_decode(s->tok, ids, n, &text, &e) == PD_OK &&
              pd_buf_puts(&b, "{\"prompt\":") &&
              pd_json_str(&b, text.data ? text.data : "", text.len) &&
              pd_buf_puts(&b, ",\"content\":") &&
              pd_json_str(&b, text.data ? text.data : "", text.len) && pd_buf_puts(&b, "}");
    free(ids);
    enum MHD_Result r = ok ? respond_json(c, 200, &b) : respond_error(c, 500, "out of memory");
    pd_buf_deinit(&text);
    pd_buf_deinit(&b);
    return r;
}

/* ---- the access handler -------------------------------------------------------------------- */

struct conn {
    struct pd_buf body;           /* owned */
    bool too_big;
    bool denied;                  /* the API key is missing or wrong */
};

static bool authorised(const struct pd_serve *s, struct MHD_Connection *c)
{
    if (!s->api_key) {
        return true;
    }
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) {
        return false;
    }
    return pd_serve_secret_eq(h + 7, s->api_key);
}

static enum MHD_Result route(struct pd_serve *s, struct MHD_Connection *c, const char *url,
                             const char *method, struct conn *cn)
{
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (strcmp(url, "/health") == 0 || strcmp(url, "/v1/health") == 0) {
        return get ? respond(c, 200, "application/json", "{\"status\":\"ok\"}", 15)
                   : respond_error(c, 405, "%s: use GET", url);
    }
    if (strcmp(url, "/v1/models") == 0 || strcmp(url, "/models") == 0) {
        return get ? handle_models(s, c) : respond_error(c, 405, "%s: use GET", url);
    }
    bool cmpl = strcmp(url, "/v1/completions") == 0;
    bool chat = strcmp(url, "/v1/chat/completions") == 0;
    bool tok = strcmp(url, "/tokenize") == 0 || strcmp(url, "/v1/tokenize") == 0;
    bool detok = strcmp(url, "/detokenize") == 0 || strcmp(url, "/v1/detokenize") == 0;
    if (!cmpl && !chat && !tok && !detok) {
        return respond_error(c, 404, "no such endpoint: %s %s", method, url);
    }
    if (!post) {
        return respond_error(c, 405, "%s: use POST", url);
    }
    if (tok) {
        return handle_tokenize(s, c, &cn->body);
    }
    if (detok) {
        return handle_detokenize(s, c, &cn->body);
    }
    struct req q;
    char msg[600];
    unsigned status = parse_request(s, cn->body.data ? cn->body.data : "", cn->body.len, chat, &q,
                                    msg, sizeof msg);
    if (status) {
        return respond_error(c, status, "%s", msg);
    }
    return handle_generate(s, c, &q);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    struct pd_serve *s = cls;
    struct conn *cn = *con_cls;
    if (!cn) {
        cn = calloc(1, sizeof *cn);
        if (!cn) {
            return MHD_NO;
        }
        pd_buf_init(&cn->body);
        *con_cls = cn;
        stat_add(s, &s->stats.requests, 1);
        cn->denied = !authorised(s, c);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->p.max_body) {
            cn->too_big = true;
        }
        return MHD_YES;
    }
    if (*upload_size) {
        /* nothing is kept for a request that will be refused anyway */
        if (!cn->denied && !cn->too_big) {
            if (cn->body.len + *upload_size > s->p.max_body) {
                cn->too_big = true;
            } else if (!pd_buf_append(&cn->body, upload, *upload_size)) {
                cn->too_big = true;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cn->denied) {
        stat_add(s, &s->stats.rejected_auth, 1);
        return respond_error(c, 401, "missing or wrong API key (send \"Authorization: Bearer "
                             "KEY\")");
    }
    if (cn->too_big) {
        return respond_error(c, 413, "request body larger than %zu bytes", s->p.max_body);
    }
    return route(s, c, url, method, cn);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct conn *cn = *con_cls;
    if (cn) {
        pd_buf_deinit(&cn->body);
        free(cn);
        *con_cls = NULL;
    }
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s && *s ? pd_strdup(s) : NULL;
}

enum pd_status pd_serve_open(const struct pd_model *m, const struct pd_tok *tok,
                             const struct pd_serve_params *params, struct pd_serve **out,
                             struct pd_err *err)
{
    *out = NULL;
    struct pd_serve_params p = params ? *params : pd_serve_default_params();
    if (!m || !tok || !p.model_name || !*p.model_name) {
        return pd_err_set(err, PD_EINVAL, "serve: needs a model, its tokenizer and a name");
    }
    struct pd_serve *s = calloc(1, sizeof *s);
    if (!s) {
        return pd_err_set(err, PD_ENOMEM, "serve: out of memory");
    }
    pthread_mutex_init(&s->qlock, NULL);
    pthread_cond_init(&s->qcond, NULL);
    pthread_mutex_init(&s->slock, NULL);
    atomic_init(&s->stopping, false);
    atomic_init(&s->seq, 1);
    s->model = m;
    s->tok = tok;
    s->started = time(NULL);
    s->host = dup_or_null(p.host ? p.host : "127.0.0.1");
    s->api_key = dup_or_null(p.api_key);
    s->model_name = dup_or_null(p.model_name);
    s->policy_name = dup_or_null(p.policy_name);
    enum pd_status st = PD_OK;
    if (!s->host || !s->model_name || (p.api_key && *p.api_key && !s->api_key) ||
        (p.policy_name && *p.policy_name && !s->policy_name)) {
        st = pd_err_set(err, PD_ENOMEM, "serve: out of memory");
        goto fail;
    }
    p.host = s->host;
    p.api_key = s->api_key;
    p.model_name = s->model_name;
    p.policy_name = s->policy_name;
    if (p.max_body == 0) {
        p.max_body = BODY_MAX_DEFAULT;
    }
    if (p.attn_top_n == 0 || p.attn_top_n > 64) {
        p.attn_top_n = 8;
    }
    s->n_ctx = p.ctx.n_ctx ? p.ctx.n_ctx
                           : (m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096);
    if (s->n_ctx < 2) {
        st = pd_err_set(err, PD_EINVAL, "serve: a context of %u tokens is too small", s->n_ctx);
        goto fail;
    }
    p.ctx.n_ctx = s->n_ctx;
    s->p = p;
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)p.port);
    int gai = getaddrinfo(s->host, port, &hints, &ai);
    if (gai != 0 || !ai) {
        st = pd_err_set(err, PD_EINVAL, "serve: --host '%s': %s", s->host, gai_strerror(gai));
        goto fail;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
    if (ai->ai_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    s->d = MHD_start_daemon(flags, p.port, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)(p.queue_max + 32),
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        st = pd_err_set(err, PD_EIO, "serve: cannot listen on %s port %u (in use, or not an "
                        "address of this machine)", s->host, (unsigned)p.port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : p.port;
    *out = s;
    return PD_OK;
fail:
    pd_serve_close(&s);
    return st;
}

void pd_serve_close(struct pd_serve **sp)
{
    if (!sp || !*sp) {
        return;
    }
    struct pd_serve *s = *sp;
    atomic_store(&s->stopping, true);
    pthread_mutex_lock(&s->qlock);
    pthread_cond_broadcast(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
    if (s->d) {
        MHD_stop_daemon(s->d);
    }
    pd_ctx_close(&s->score_ctx);
    free(s->cache_ids);
    free(s->cache_recs);
    free(s->cache_rank);
    pthread_mutex_destroy(&s->qlock);
    pthread_cond_destroy(&s->qcond);
    pthread_mutex_destroy(&s->slock);
    free(s->host);
    if (s->api_key) {
        memset(s->api_key, 0, strlen(s->api_key));
        free(s->api_key);
    }
    free(s->model_name);
    free(s->policy_name);
    free(s);
    *sp = NULL;
}
