/* remote.c - the inference server client (remote.h).
 *
 * DESIGN
 * Requests go through one pd_http handle (keep-alive). Non-streaming requests
 * (models, scoring, greedy, tokenize) go through request_json, which retries transient
 * failures: no response (connection refused, reset, timeout) or HTTP 429 / 500 / 502 /
 * 503 / 504, waiting backoff * 2^attempt (at most 30 s, +-25% jitter) in 50 ms slices so
 * a cancel cuts the wait short. A streaming generation parses server-sent events as they
 * arrive (remote_sse.h) and hands each event's data to the response parser
 * (remote_proto.h); it is retried only while no token has been delivered, and a stream
 * that ends without the server's end marker is reported as cut off, after the tokens it
 * did deliver. */
#include "remote.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonw.h"
#include "log.h"
#include "remote_http.h"
#include "remote_sse.h"

#define BACKOFF_MAX_MS 30000u

struct pd_remote {
    struct pd_remote_params p;
    struct pd_remote_info info;
    struct pd_http *http;         /* owned */
    uint64_t n_retries;
    uint64_t rng;                 /* jitter */
};

struct pd_remote_params pd_remote_default_params(void)
{
    struct pd_remote_params p;
    memset(&p, 0, sizeof p);
    p.server = PD_REMOTE_SERVER_COUNT;
    return p;
}

enum pd_status pd_remote_base_url(const char *url, char *out, size_t cap, struct pd_err *err)
{
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        return pd_err_set(err, PD_EINVAL, "--engine: '%s' is not an http:// or https:// URL",
                          url ? url : "");
    }
    size_t n = strlen(url);
    if (n + 1 > cap) {
        return pd_err_set(err, PD_EINVAL, "--engine: URL longer than %zu bytes", cap - 1);
    }
    memcpy(out, url, n + 1);
    while (n > 0 && out[n - 1] == '/') {
        out[--n] = '\0';
    }
    if (n >= 3 && strcmp(out + n - 3, "/v1") == 0) {
        out[n - 3] = '\0';
    }
    const char *host = strstr(out, "://") + 3;
    if (*host == '\0' || *host == '/') {
        return pd_err_set(err, PD_EINVAL, "--engine: '%s' names no host", url);
    }
    return PD_OK;
}

const struct pd_remote_info *pd_remote_info(const struct pd_remote *r)
{
    return &r->info;
}

void pd_remote_cancel(struct pd_remote *r)
{
    pd_http_cancel(r->http);
}

void pd_remote_uncancel(struct pd_remote *r)
{
    pd_http_uncancel(r->http);
}

uint64_t pd_remote_retries(const struct pd_remote *r)
{
    return r->n_retries;
}

/* ---- requests with retries ------------------------------------------------------------ */

static bool transient_status(long s)
{
    return s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Waits ms milliseconds in slices; false when cancelled meanwhile. */
static bool backoff_wait(struct pd_remote *r, uint32_t attempt)
{
    uint64_t ms = r->p.backoff_ms ? r->p.backoff_ms : 500;
    for (uint32_t i = 0; i < attempt && ms < BACKOFF_MAX_MS; i++) {
        ms *= 2;
    }
    if (ms > BACKOFF_MAX_MS) {
        ms = BACKOFF_MAX_MS;
    }
    ms = ms * 3 / 4 + rng_next(&r->rng) % (ms / 2 + 1);
    while (ms > 0) {
        if (pd_http_cancelled(r->http)) {
            return false;
        }
        uint64_t step = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
    return !pd_http_cancelled(r->http);
}

/* The error of a non-2xx response: "METHOD URL: HTTP 400: <server message>". */
static enum pd_status status_error(const char *method, const char *url,
                                   const struct pd_http_resp *resp, struct pd_err *err)
{
    char msg[400];
    pd_rproto_error_message(resp->body.data, resp->body.len, msg, sizeof msg);
    enum pd_status st = resp->status == 404 || resp->status == 405 ? PD_EUNSUPPORTED : PD_EIO;
    return pd_err_set(err, st, "%s %s: HTTP %ld%s%s", method, url, resp->status,
                      msg[0] ? ": " : "", msg);
}

/* One handle, two kinds of request: a stream may run for hours, so only silence ends
 * it; anything else also has a total limit. */
static void set_timeouts(struct pd_remote *r, bool stream)
{
    long idle = r->p.idle_timeout_ms ? r->p.idle_timeout_ms : 120000;
    long total = r->p.timeout_ms ? r->p.timeout_ms : 600000;
    pd_http_set_timeouts(r->http, stream ? 0 : total, idle);
}

/* Sends a request to base + path and collects a 2xx body in resp, retrying transient
 * failures. */
static enum pd_status request_json(struct pd_remote *r, const char *method, const char *path,
                                   const char *body, size_t len, struct pd_http_resp *resp,
                                   struct pd_err *err)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", r->info.base, path);
    set_timeouts(r, false);
    for (uint32_t attempt = 0;; attempt++) {
        enum pd_status st = pd_http_request(r->http, method, url, body, len, NULL, NULL, resp,
                                            err);
        bool transient;
        if (st == PD_OK) {
            if (resp->status >= 200 && resp->status < 300) {
                return PD_OK;
            }
            st = status_error(method, url, resp, err);
            transient = transient_status(resp->status);
        } else {
            transient = st == PD_EIO && resp->fail != PD_HTTP_FAIL_NONE;
        }
        if (!transient || attempt >= r->p.retries) {
            if (transient && attempt > 0) {
                pd_err_prefix(err, "after %u attempts", attempt + 1);
            }
            return st;
        }
        r->n_retries++;
        pd_log(PD_LOG_INFO, "%s; retrying (%u of %u)", err ? err->msg : url, attempt + 1,
               r->p.retries);
        if (!backoff_wait(r, attempt)) {
            return pd_err_set(err, PD_ECANCELLED, "%s: cancelled", url);
        }
    }
}

/* ---- open ----------------------------------------------------------------------------- */

enum pd_status pd_remote_open(const struct pd_remote_params *params, struct pd_remote **out,
                              struct pd_err *err)
{
    *out = NULL;
    struct pd_remote *r = calloc(1, sizeof *r);
    if (!r) {
        return pd_err_set(err, PD_ENOMEM, "remote: out of memory");
    }
    r->p = params ? *params : pd_remote_default_params();
    r->rng = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull | 1;
    struct pd_http_resp resp;
    pd_http_resp_init(&resp);
    enum pd_status st = pd_remote_base_url(r->p.url, r->info.base, sizeof r->info.base, err);
    if (st != PD_OK) {
        goto fail;
    }
    struct pd_http_params hp = pd_http_default_params();
    hp.connect_timeout_ms = r->p.connect_timeout_ms ? r->p.connect_timeout_ms : 10000;
    hp.api_key = r->p.api_key;
    if ((st = pd_http_open(&hp, &r->http, err)) != PD_OK) {
        goto fail;
    }
    /* timeouts are set per request kind below; the handle keeps the connect one */
    if ((st = request_json(r, "GET", "/v1/models", NULL, 0, &resp, err)) != PD_OK) {
        pd_err_prefix(err, "cannot use the engine at %s", r->info.base);
        goto fail;
    }
    struct pd_rproto_models m;
    if ((st = pd_rproto_models_parse(resp.body.data, resp.body.len, r->p.model, &m, err))) {
        pd_err_prefix(err, "%s", r->info.base);
        goto fail;
    }
    if (!m.found) {
        st = r->p.model ? pd_err_set(err, PD_EINVAL, "%s does not serve a model named '%s'; "
                                     "GET /v1/models lists %zu model%s", r->info.base,
                                     r->p.model, m.n_models, m.n_models == 1 ? "" : "s")
                        : pd_err_set(err, PD_EINVAL, "%s serves no model", r->info.base);
        goto fail;
    }
    snprintf(r->info.model, sizeof r->info.model, "%s", m.model);
    r->info.max_model_len = m.max_model_len;
    r->info.server = r->p.server < PD_REMOTE_SERVER_COUNT
                         ? r->p.server : pd_remote_server_from_owner(m.owned_by);
    r->p.url = NULL;
    r->p.api_key = NULL;
    r->p.model = NULL;
    pd_http_resp_deinit(&resp);
    pd_log(PD_LOG_INFO, "engine %s: %s serving '%s' (context %u)", r->info.base,
           pd_remote_server_name(r->info.server), r->info.model, r->info.max_model_len);
    *out = r;
    return PD_OK;
fail:
    pd_http_resp_deinit(&resp);
    pd_remote_close(&r);
    return st;
}

void pd_remote_close(struct pd_remote **rp)
{
    if (!rp || !*rp) {
        return;
    }
    pd_http_close(&(*rp)->http);
    free(*rp);
    *rp = NULL;
}

/* The model name to send (the openai shape names it; the others serve one model). */
static const char *send_model(const struct pd_remote *r)
{
    return r->info.model[0] ? r->info.model : NULL;
}

/* ---- generation ----------------------------------------------------------------------- */

struct gen_state {
    struct pd_rproto_stream ps;
    struct pd_sse sse;
    enum pd_status cb_status;
};

static enum pd_status on_sse(void *ud, const char *event, const char *data, size_t len,
                             struct pd_err *err)
{
    (void)event;
    struct gen_state *g = ud;
    return pd_rproto_stream_data(&g->ps, data, len, err);
}

static enum pd_status on_bytes(void *ud, const char *p, size_t n, struct pd_err *err)
{
    struct gen_state *g = ud;
    return pd_sse_feed(&g->sse, p, n, on_sse, g, err);
}

enum pd_status pd_remote_generate(struct pd_remote *r, const struct pd_remote_gen *g,
                                  pd_rproto_token_fn on_token, pd_rproto_kv_fn on_kv,
                                  void *ud, struct pd_remote_gen_result *res,
                                  struct pd_err *err)
{
    memset(res, 0, sizeof *res);
    if (g->n_prompt == 0 || g->max_tokens == 0) {
        return pd_err_set(err, PD_EINVAL, "generate: empty prompt or max_tokens 0");
    }
    struct pd_rproto_gen rg = {
        .model = send_model(r), .prompt = g->prompt, .n_prompt = g->n_prompt,
        .max_tokens = g->max_tokens, .temperature = g->sampling.temperature,
        .top_k = g->sampling.top_k, .top_p = g->sampling.top_p, .min_p = g->sampling.min_p,
        .seed = g->sampling.seed, .has_seed = true, .topk = g->topk, .stream = g->stream,
        .ponder_attn = g->attn,
    };
    struct pd_buf body;
    pd_buf_init(&body);
    const char *path;
    enum pd_status st = pd_rproto_gen_request(r->info.server, &rg, &body, &path, err);
    if (st != PD_OK) {
        pd_buf_deinit(&body);
        return st;
    }
    char url[1024];
    snprintf(url, sizeof url, "%s%s", r->info.base, path);
    set_timeouts(r, g->stream);
    struct pd_http_resp resp;
    pd_http_resp_init(&resp);
    struct gen_state gs;
    for (uint32_t attempt = 0;; attempt++) {
        pd_rproto_stream_init(&gs.ps, r->info.server, g->topk, on_token, on_kv, ud);
        pd_sse_init(&gs.sse, 0);
        if (g->stream) {
            st = pd_http_request(r->http, "POST", url, body.data, body.len, on_bytes, &gs,
                                 &resp, err);
        } else {
            st = pd_http_request(r->http, "POST", url, body.data, body.len, NULL, NULL, &resp,
                                 err);
            if (st == PD_OK && resp.status >= 200 && resp.status < 300) {
                st = pd_rproto_stream_data(&gs.ps, resp.body.data ? resp.body.data : "",
                                           resp.body.len, err);
                gs.ps.done = gs.ps.done || st == PD_OK;
            }
        }
        bool transient = false;
        if (st == PD_OK && (resp.status < 200 || resp.status >= 300)) {
            st = status_error("POST", url, &resp, err);
            transient = transient_status(resp.status);
        } else if (st == PD_EIO && resp.fail != PD_HTTP_FAIL_NONE) {
            transient = true;
        }
        bool delivered = gs.ps.n_tokens > 0;
        res->n_tokens = gs.ps.n_tokens;
        res->done = gs.ps.done;
        snprintf(res->finish, sizeof res->finish, "%s", gs.ps.finish);
        res->seconds = resp.seconds;
        bool cut = st == PD_OK && g->stream && (!gs.ps.done || !pd_sse_idle(&gs.sse));
        pd_sse_deinit(&gs.sse);
        if (cut) {
            st = pd_err_set(err, PD_EFORMAT, "%s: the stream ended before the server finished "
                            "(cut off after %llu token%s; what arrived is kept)", url,
                            (unsigned long long)res->n_tokens, res->n_tokens == 1 ? "" : "s");
            break;
        }
        if (st == PD_OK || !transient || delivered || attempt >= r->p.retries) {
            if (st != PD_OK && delivered && st != PD_ECANCELLED) {
                pd_err_prefix(err, "cut off after %llu token%s (what arrived is kept)",
                              (unsigned long long)res->n_tokens, res->n_tokens == 1 ? "" : "s");
            }
            break;
        }
        r->n_retries++;
        if (!backoff_wait(r, attempt)) {
            st = pd_err_set(err, PD_ECANCELLED, "%s: cancelled", url);
            break;
        }
    }
    pd_http_resp_deinit(&resp);
    pd_buf_deinit(&body);
    return st;
}

/* ---- scoring, greedy ------------------------------------------------------------------ */

enum pd_status pd_remote_score(struct pd_remote *r, const int32_t *ids, size_t n,
                               uint32_t topk, bool attn, struct pd_token_rec *out,
                               struct pd_err *err)
{
    if (n == 0 || (n == 1 && r->info.server == PD_REMOTE_LLAMACPP)) {
        return PD_OK; /* nothing to score (llama-server has no attention to report) */
    }
    struct pd_buf body;
    pd_buf_init(&body);
    const char *path;
    enum pd_status st = pd_rproto_score_request(r->info.server, send_model(r), ids, n, topk,
                                                attn, &body, &path, err);
    struct pd_http_resp resp;
    pd_http_resp_init(&resp);
    if (st == PD_OK) {
        st = request_json(r, "POST", path, body.data, body.len, &resp, err);
    }
    if (st == PD_OK) {
        st = pd_rproto_score_response(r->info.server, resp.body.data ? resp.body.data : "",
                                      resp.body.len, ids, n, topk, out, err);
        if (st != PD_OK) {
            pd_err_prefix(err, "%s%s", r->info.base, path);
        }
    }
    pd_http_resp_deinit(&resp);
    pd_buf_deinit(&body);
    return st;
}

struct greedy_fill {
    int32_t *out;
    size_t n_max;
    size_t n;
};

static enum pd_status greedy_token(void *ud, struct pd_token_rec *tok, struct pd_err *err)
{
    (void)err;
    struct greedy_fill *f = ud;
    if (f->n < f->n_max) {
        f->out[f->n++] = tok->id;
    }
    return PD_OK;
}

enum pd_status pd_remote_greedy(struct pd_remote *r, const int32_t *ids, size_t n,
                                uint32_t n_max, int32_t *out, size_t *n_out,
                                struct pd_err *err)
{
    *n_out = 0;
    if (n_max == 0) {
        return PD_OK;
    }
    struct pd_remote_gen g;
    memset(&g, 0, sizeof g);
    g.prompt = ids;
    g.n_prompt = n;
    g.max_tokens = n_max;
    g.sampling = pd_sampler_default_params();
    g.sampling.temperature = 0;
    g.sampling.top_k = 0;
    g.sampling.top_p = 1;
    g.sampling.min_p = 0;
    struct greedy_fill f = {out, n_max, 0};
    struct pd_remote_gen_result res;
    enum pd_status st = pd_remote_generate(r, &g, greedy_token, NULL, &f, &res, err);
    *n_out = f.n;
    return st;
}

/* ---- tokenizer ------------------------------------------------------------------------ */

enum pd_status pd_remote_tokenize(struct pd_remote *r, const char *text, int32_t **ids,
                                  size_t *n, struct pd_err *err)
{
    *ids = NULL;
    *n = 0;
    struct pd_buf body;
    pd_buf_init(&body);
    bool llama = r->info.server == PD_REMOTE_LLAMACPP;
    bool ok;
    if (llama) {
        ok = pd_buf_puts(&body, "{\"content\":") && pd_json_str(&body, text, strlen(text)) &&
             pd_buf_puts(&body, ",\"add_special\":false,\"parse_special\":true}");
    } else {
        ok = pd_buf_puts(&body, "{\"model\":") &&
             pd_json_str(&body, r->info.model, strlen(r->info.model)) &&
             pd_buf_puts(&body, ",\"prompt\":") && pd_json_str(&body, text, strlen(text)) &&
             pd_buf_puts(&body, ",\"add_special_tokens\":false}");
    }
    if (!ok) {
        pd_buf_deinit(&body);
        return pd_err_set(err, PD_ENOMEM, "tokenize: out of memory");
    }
    struct pd_http_resp resp;
    pd_http_resp_init(&resp);
    enum pd_status st = request_json(r, "POST", "/tokenize", body.data, body.len, &resp, err);
    if (st == PD_EUNSUPPORTED && r->info.server == PD_REMOTE_SGLANG) {
        st = request_json(r, "POST", "/v1/tokenize", body.data, body.len, &resp, err);
    }
    if (st == PD_OK) {
        st = pd_rproto_tokens_parse(resp.body.data ? resp.body.data : "", resp.body.len, ids, n,
                                    err);
    }
    pd_http_resp_deinit(&resp);
    pd_buf_deinit(&body);
    return st;
}

enum pd_status pd_remote_detokenize(struct pd_remote *r, const int32_t *ids, size_t n,
                                    char **text, struct pd_err *err)
{
    *text = NULL;
    struct pd_buf body;
    pd_buf_init(&body);
    bool ok = pd_buf_puts(&body, "{");
    if (ok && r->info.server != PD_REMOTE_LLAMACPP) {
        ok = pd_buf_puts(&body, "\"model\":") &&
             pd_json_str(&body, r->info.model, strlen(r->info.model)) && pd_buf_puts(&body, ",");
    }
    ok = ok && pd_buf_puts(&body, "\"tokens\":[");
    for (size_t i = 0; ok && i < n; i++) {
        ok = pd_buf_printf(&body, i ? ",%d" : "%d", ids[i]);
    }
    ok = ok && pd_buf_puts(&body, "]}");
    if (!ok) {
        pd_buf_deinit(&body);
        return pd_err_set(err, PD_ENOMEM, "detokenize: out of memory");
    }
    struct pd_http_resp resp;
    pd_http_resp_init(&resp);
    enum pd_status st = request_json(r, "POST", "/detokenize", body.data, body.len, &resp, err);
    if (st == PD_OK) {
        st = pd_rproto_text_parse(resp.body.data ? resp.body.data : "", resp.body.len, text,
                                  err);
    }
    pd_http_resp_deinit(&resp);
    pd_buf_deinit(&body);
    return st;
}

enum pd_status pd_remote_check_tokenizer(struct pd_remote *r, const struct pd_tok *tok,
                                         bool *checked, struct pd_err *err)
{
    *checked = false;
    struct pd_buf text;
    pd_buf_init(&text);
    bool ok = pd_buf_puts(&text, "ponder probe: Hello, world! 3.14 + 2 = 5.14\n\n"
                                 "  Wait, caf\xc3\xa9 na\xc3\xafve \xe6\xbc\xa2\xe5\xad\x97 -- ok.");
    static const char *const markers[] = {"<think>", "</think>", "<|im_start|>", "<|im_end|>"};
    for (size_t i = 0; ok && i < sizeof markers / sizeof markers[0]; i++) {
        if (pd_tok_find(tok, markers[i], strlen(markers[i])) >= 0) {
            ok = pd_buf_puts(&text, markers[i]) && pd_buf_puts(&text, "x");
        }
    }
    if (!ok) {
        pd_buf_deinit(&text);
        return pd_err_set(err, PD_ENOMEM, "tokenizer check: out of memory");
    }
    int32_t *loc = NULL, *rem = NULL;
    size_t n_loc = 0, n_rem = 0;
    enum pd_status st = pd_tok_encode(tok, text.data, text.len, false, true, &loc, &n_loc, err);
    if (st == PD_OK) {
        st = pd_remote_tokenize(r, text.data, &rem, &n_rem, err);
        if (st == PD_EUNSUPPORTED) {
            pd_log(PD_LOG_WARN, "%s has no tokenize endpoint: its tokenizer cannot be checked "
                   "against the local model", r->info.base);
            st = PD_OK;
            goto done;
        }
    }
    if (st != PD_OK) {
        goto done;
    }
    *checked = true;
    for (size_t i = 0; i < n_loc || i < n_rem; i++) {
        if (i >= n_loc || i >= n_rem || loc[i] != rem[i]) {
            size_t len = 0;
            const char *piece = i < n_loc ? pd_tok_piece(tok, loc[i], &len) : NULL;
            st = pd_err_set(err, PD_EFORMAT,
                            "the tokenizer of %s ('%s') disagrees with the local model at token "
                            "%zu of a probe text: the server says %d, the local vocabulary %d "
                            "('%.*s'); ponder sends token ids, so both must be the same model",
                            r->info.base, r->info.model, i, i < n_rem ? rem[i] : -1,
                            i < n_loc ? loc[i] : -1, (int)(len < 40 ? len : 40),
                            piece ? piece : "");
            break;
        }
    }
done:
    free(loc);
    free(rem);
    pd_buf_deinit(&text);
    return st;
}
