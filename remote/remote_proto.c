/* remote_proto.c - request bodies and response parsing for the openai, llamacpp and
 * sglang shapes (remote_proto.h).
 *
 * DESIGN
 * Requests are written with jsonw (numbers as %.9g, so a float travels exactly). Every
 * response is parsed with jansson into a tree and walked with checked accessors; nothing
 * is trusted: arrays that must be parallel are checked for equal lengths, ids for range,
 * log-probabilities for being numbers. The top alternatives of one token are sorted by
 * log-probability (ties: lower id first) and cut to the k asked for, because servers
 * send them in any order and may add the chosen token (vLLM lists k+1 then). */
#include "remote_proto.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "attn_blob.h"
#include "jsonw.h"

#define ID_MAX (1 << 24) /* larger vocabularies than any model ponder knows */

/* ---- names ------------------------------------------------------------------------- */

static const char *const k_server_names[] = {"ponder", "vllm", "sglang", "llama.cpp", "openai"};
_Static_assert(sizeof k_server_names / sizeof k_server_names[0] == PD_REMOTE_SERVER_COUNT,
               "one name per server kind");

const char *pd_remote_server_name(enum pd_remote_server s)
{
    return (unsigned)s < PD_REMOTE_SERVER_COUNT ? k_server_names[s] : "?";
}

enum pd_status pd_remote_server_parse(const char *s, enum pd_remote_server *out,
                                      struct pd_err *err)
{
    for (int i = 0; s && i < PD_REMOTE_SERVER_COUNT; i++) {
        if (strcmp(s, k_server_names[i]) == 0) {
            *out = (enum pd_remote_server)i;
            return PD_OK;
        }
    }
    if (s && (strcmp(s, "llama-server") == 0 || strcmp(s, "llamacpp") == 0)) {
        *out = PD_REMOTE_LLAMACPP;
        return PD_OK;
    }
    return pd_err_set(err, PD_EINVAL, "unknown server kind '%s' (ponder, vllm, sglang, "
                      "llama.cpp, openai)", s ? s : "");
}

enum pd_remote_server pd_remote_server_from_owner(const char *o)
{
    if (!o) {
        return PD_REMOTE_OPENAI;
    }
    if (strcmp(o, "ponder") == 0) {
        return PD_REMOTE_PONDER;
    }
    if (strcmp(o, "vllm") == 0) {
        return PD_REMOTE_VLLM;
    }
    if (strcmp(o, "sglang") == 0) {
        return PD_REMOTE_SGLANG;
    }
    if (strcmp(o, "llamacpp") == 0 || strcmp(o, "llama.cpp") == 0) {
        return PD_REMOTE_LLAMACPP;
    }
    return PD_REMOTE_OPENAI;
}

/* ---- base64 ----------------------------------------------------------------------- */

static const char k_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

bool pd_base64_encode(struct pd_buf *out, const uint8_t *p, size_t n)
{
    char q[4];
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= p[i + 2];
        }
        q[0] = k_b64[(v >> 18) & 63];
        q[1] = k_b64[(v >> 12) & 63];
        q[2] = i + 1 < n ? k_b64[(v >> 6) & 63] : '=';
        q[3] = i + 2 < n ? k_b64[v & 63] : '=';
        if (!pd_buf_append(out, q, 4)) {
            return false;
        }
    }
    return true;
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

bool pd_base64_decode(const char *s, size_t len, uint8_t **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (len % 4 != 0) {
        return false;
    }
    uint8_t *b = malloc(len / 4 * 3 + 1);
    if (!b) {
        return false;
    }
    size_t k = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            if (s[i + j] == '=' && i + 4 == len && j >= 2) {
                v[j] = 0;
                pad++;
            } else if (pad || (v[j] = b64_val(s[i + j])) < 0) {
                free(b);
                return false;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        b[k++] = (uint8_t)(w >> 16);
        if (pad < 2) {
            b[k++] = (uint8_t)(w >> 8);
        }
        if (pad < 1) {
            b[k++] = (uint8_t)w;
        }
    }
    *out = b;
    *n_out = k;
    return true;
}

/* ---- requests ---------------------------------------------------------------------- */

static bool put_ids(struct pd_buf *b, const int32_t *ids, size_t n)
{
    bool ok = pd_buf_puts(b, "[");
    for (size_t i = 0; ok && i < n; i++) {
        ok = pd_buf_printf(b, i ? ",%d" : "%d", ids[i]);
    }
    return ok && pd_buf_puts(b, "]");
}

static bool put_model(struct pd_buf *b, const char *model)
{
    if (!model) {
        return true;
    }
    return pd_buf_puts(b, "\"model\":") && pd_json_str(b, model, strlen(model)) &&
           pd_buf_puts(b, ",");
}

/* The sampling fields in the names vLLM, ponder and llama-server share. */
static bool put_sampling(struct pd_buf *b, const struct pd_rproto_gen *g, bool llama)
{
    bool ok = pd_buf_puts(b, ",\"temperature\":") &&
              pd_json_num(b, g->temperature > 0 ? g->temperature : 0.0) &&
              pd_buf_puts(b, ",\"top_p\":") && pd_json_num(b, g->top_p < 1 ? g->top_p : 1.0) &&
              pd_buf_puts(b, ",\"min_p\":") && pd_json_num(b, g->min_p > 0 ? g->min_p : 0.0);
    /* top_k: vLLM takes -1 or 0 as off, llama-server 0; both default to other values */
    ok = ok && pd_buf_printf(b, ",\"top_k\":%d", g->top_k > 0 ? g->top_k : (llama ? 0 : -1));
    if (ok && g->has_seed) {
        ok = pd_buf_printf(b, ",\"seed\":%llu", (unsigned long long)(g->seed & INT64_MAX));
    }
    return ok;
}

enum pd_status pd_rproto_gen_request(enum pd_remote_server s, const struct pd_rproto_gen *g,
                                     struct pd_buf *out, const char **path,
                                     struct pd_err *err)
{
    bool ok = true;
    uint32_t topk = g->topk > PD_TOPK_MAX ? PD_TOPK_MAX : g->topk;
    if (s == PD_REMOTE_LLAMACPP) {
        /* llama-server /completion (tools/server/README.md, "POST /completion") */
        *path = "/completion";
        ok = pd_buf_puts(out, "{\"prompt\":") && put_ids(out, g->prompt, g->n_prompt) &&
             pd_buf_printf(out, ",\"n_predict\":%u", g->max_tokens) &&
             put_sampling(out, g, true) &&
             pd_buf_puts(out, ",\"repeat_penalty\":1.0,\"presence_penalty\":0.0,"
                              "\"frequency_penalty\":0.0,\"dry_multiplier\":0.0,"
                              "\"xtc_probability\":0.0,\"typical_p\":1.0,"
                              "\"cache_prompt\":true,\"return_tokens\":true") &&
             pd_buf_printf(out, ",\"n_probs\":%u", topk ? topk : 1) &&
             pd_buf_printf(out, ",\"stream\":%s}", g->stream ? "true" : "false");
    } else if (s == PD_REMOTE_SGLANG) {
        /* SGLang /generate (docs: sampling_params, native API) */
        *path = "/generate";
        ok = pd_buf_puts(out, "{\"input_ids\":") && put_ids(out, g->prompt, g->n_prompt) &&
             pd_buf_printf(out, ",\"sampling_params\":{\"max_new_tokens\":%u", g->max_tokens) &&
             pd_buf_puts(out, ",\"temperature\":") &&
             pd_json_num(out, g->temperature > 0 ? g->temperature : 0.0) &&
             pd_buf_puts(out, ",\"top_p\":") && pd_json_num(out, g->top_p < 1 ? g->top_p : 1.0) &&
             pd_buf_puts(out, ",\"min_p\":") && pd_json_num(out, g->min_p > 0 ? g->min_p : 0.0) &&
             pd_buf_printf(out, ",\"top_k\":%d}", g->top_k > 0 ? g->top_k : -1) &&
             pd_buf_puts(out, ",\"return_logprob\":true") &&
             pd_buf_printf(out, ",\"top_logprobs_num\":%u", topk) &&
             pd_buf_puts(out, ",\"logprob_start_len\":-1,\"return_text_in_logprobs\":true") &&
             pd_buf_printf(out, ",\"stream\":%s}", g->stream ? "true" : "false");
    } else {
        /* /v1/completions as vLLM serves it (protocol.py CompletionRequest) */
        *path = "/v1/completions";
        ok = pd_buf_puts(out, "{") && put_model(out, g->model) && pd_buf_puts(out, "\"prompt\":") &&
             put_ids(out, g->prompt, g->n_prompt) &&
             pd_buf_printf(out, ",\"max_tokens\":%u", g->max_tokens) &&
             put_sampling(out, g, false) &&
             pd_buf_puts(out, ",\"skip_special_tokens\":false");
        /* logprobs always: with token ids they are how ponder learns which tokens came */
        ok = ok && pd_buf_printf(out, ",\"logprobs\":%u,\"return_tokens_as_token_ids\":true",
                                 topk);
        if (ok && s == PD_REMOTE_PONDER) {
            ok = pd_buf_printf(out, ",\"ponder\":{\"attn\":%s}", g->ponder_attn ? "true" : "false");
        }
        ok = ok && pd_buf_printf(out, ",\"stream\":%s}", g->stream ? "true" : "false");
    }
    return ok ? PD_OK : pd_err_set(err, PD_ENOMEM, "request: out of memory");
}

enum pd_status pd_rproto_score_request(enum pd_remote_server s, const char *model,
                                       const int32_t *ids, size_t n, uint32_t topk,
                                       bool ponder_attn, struct pd_buf *out, const char **path,
                                       struct pd_err *err)
{
    bool ok;
    topk = topk > PD_TOPK_MAX ? PD_TOPK_MAX : topk;
    if (s == PD_REMOTE_LLAMACPP) {
        /* llama-server returns no prompt log-probabilities (its /v1/completions ignores
         * echo), so ids[1..n) are generated instead, forced one by one by a grammar of
         * token ids (grammars/README.md, "<[id]>"); n_probs reports the probabilities
         * before sampling (post_sampling_probs false), which the grammar does not touch,
         * and the chosen token's even when it is outside the top n_probs. The grammar
         * accepts an end-of-generation token only where it is complete, so the last token
         * is optional in it and a logit bias picks it: that way a sequence may end with
         * one (EOS, <|im_end|>); the bias acts in the sampler, not on the reported values.
         * One before the last cannot be forced: the server answers an error. */
        if (n < 2) {
            return pd_err_set(err, PD_EINVAL, "llama-server scoring needs at least 2 tokens");
        }
        *path = "/completion";
        ok = pd_buf_printf(out, "{\"prompt\":[%d],\"n_predict\":%zu", ids[0], n - 1) &&
             pd_buf_puts(out, ",\"temperature\":0,\"top_k\":0,\"top_p\":1.0,\"min_p\":0.0"
                              ",\"repeat_penalty\":1.0,\"presence_penalty\":0.0,"
                              "\"frequency_penalty\":0.0,\"dry_multiplier\":0.0,"
                              "\"xtc_probability\":0.0,\"typical_p\":1.0,"
                              "\"cache_prompt\":true,\"return_tokens\":true,"
                              "\"post_sampling_probs\":false") &&
             pd_buf_printf(out, ",\"n_probs\":%u,\"logit_bias\":[[%d,100]]", topk ? topk : 1,
                           ids[n - 1]) &&
             pd_buf_puts(out, ",\"grammar\":\"root ::=");
        for (size_t i = 1; ok && i < n; i++) {
            ok = pd_buf_printf(out, i + 1 < n ? " <[%d]>" : " <[%d]>?", ids[i]);
        }
        ok = ok && pd_buf_puts(out, "\",\"stream\":false}");
        return ok ? PD_OK : pd_err_set(err, PD_ENOMEM, "request: out of memory");
    }
    if (s == PD_REMOTE_SGLANG) {
        *path = "/generate";
        ok = pd_buf_puts(out, "{\"input_ids\":") && put_ids(out, ids, n) &&
             pd_buf_puts(out, ",\"sampling_params\":{\"max_new_tokens\":1,\"temperature\":0}"
                              ",\"return_logprob\":true,\"logprob_start_len\":0") &&
             pd_buf_printf(out, ",\"top_logprobs_num\":%u", topk) &&
             pd_buf_puts(out, ",\"return_text_in_logprobs\":true,\"stream\":false}");
    } else {
        *path = "/v1/completions";
        ok = pd_buf_puts(out, "{") && put_model(out, model) && pd_buf_puts(out, "\"prompt\":") &&
             put_ids(out, ids, n) &&
             pd_buf_printf(out, ",\"max_tokens\":0,\"echo\":true,\"logprobs\":%u", topk) &&
             pd_buf_puts(out, ",\"return_tokens_as_token_ids\":true,\"temperature\":0");
        if (ok && s == PD_REMOTE_PONDER) {
            ok = pd_buf_printf(out, ",\"ponder\":{\"attn\":%s}", ponder_attn ? "true" : "false");
        }
        ok = ok && pd_buf_puts(out, ",\"stream\":false}");
    }
    return ok ? PD_OK : pd_err_set(err, PD_ENOMEM, "request: out of memory");
}

/* ---- response helpers ---------------------------------------------------------------- */

void pd_rproto_entropy_estimate(struct pd_token_rec *r)
{
    r->flags &= ~(uint32_t)PD_TOKF_ENTROPY_EST;
    if (isnan(r->logprob)) {
        r->entropy = NAN;
        return;
    }
    double h = 0.0, mass = 0.0;
    bool chosen_in = false;
    for (size_t k = 0; k < r->n_top; k++) {
        double p = exp((double)r->top[k].logprob);
        if (p > 0) {
            h -= p * log2(p);
        }
        mass += p;
        chosen_in = chosen_in || r->top[k].id == r->id;
    }
    if (!chosen_in) {
        double p = exp((double)r->logprob);
        if (p > 0) {
            h -= p * log2(p);
        }
        mass += p;
    }
    double rest = 1.0 - mass;
    if (rest > 1e-12) {
        h -= rest * log2(rest);
    }
    r->entropy = (float)(h > 0 ? h : 0.0);
    r->flags |= PD_TOKF_ENTROPY_EST;
}

/* "token_id:N" (vLLM's return_tokens_as_token_ids) -> N. */
static bool token_id_str(const char *s, int32_t *id)
{
    if (!s || strncmp(s, "token_id:", 9) != 0) {
        return false;
    }
    char *end;
    errno = 0;
    long v = strtol(s + 9, &end, 10);
    if (errno || end == s + 9 || *end || v < 0 || v >= ID_MAX) {
        return false;
    }
    *id = (int32_t)v;
    return true;
}

static bool json_id(const json_t *v, int32_t *id)
{
    if (!json_is_integer(v)) {
        return false;
    }
    json_int_t x = json_integer_value(v);
    if (x < 0 || x >= ID_MAX) {
        return false;
    }
    *id = (int32_t)x;
    return true;
}

/* A log-probability: a number (float), or null / absent (NAN). */
static bool json_lp(const json_t *v, float *out)
{
    if (!v || json_is_null(v)) {
        *out = NAN;
        return true;
    }
    if (!json_is_number(v)) {
        return false;
    }
    double d = json_number_value(v);
    if (isnan(d) || d > 1e-3) {
        return false; /* log-probabilities are <= 0 (a little rounding allowed) */
    }
    *out = (float)d;
    return true;
}

static int top_cmp(const void *a, const void *b)
{
    const struct pd_topk *x = a, *y = b;
    if (x->logprob != y->logprob) {
        return x->logprob > y->logprob ? -1 : 1;
    }
    return (x->id > y->id) - (x->id < y->id);
}

/* Sorts cand[0..n) and keeps the best topk in r->top. */
static void put_top(struct pd_token_rec *r, struct pd_topk *cand, size_t n, uint32_t topk)
{
    qsort(cand, n, sizeof *cand, top_cmp);
    size_t k = n < topk ? n : topk;
    if (k > PD_TOPK_MAX) {
        k = PD_TOPK_MAX;
    }
    memcpy(r->top, cand, k * sizeof *cand);
    r->n_top = (uint8_t)k;
}

static bool set_text(struct pd_token_rec *r, const char *s, size_t n)
{
    free(r->text);
    r->text = pd_strndup(s ? s : "", s ? n : 0);
    r->text_len = r->text ? (s ? n : 0) : 0;
    return r->text != NULL;
}

static void rec_reset(struct pd_token_rec *r)
{
    pd_token_rec_free(r);
    memset(r, 0, sizeof *r);
    r->id = -1;
    r->logprob = NAN;
    r->entropy = NAN;
}

/* The message of an error object in a 200 body: {"error": {...}} / {"object": "error"}. */
static bool error_object(json_t *root, char *msg, size_t cap)
{
    json_t *e = json_object_get(root, "error");
    const char *m = NULL;
    if (json_is_object(e)) {
        m = json_string_value(json_object_get(e, "message"));
    } else if (json_is_string(e)) {
        m = json_string_value(e);
    } else if (json_is_string(json_object_get(root, "object")) &&
               strcmp(json_string_value(json_object_get(root, "object")), "error") == 0) {
        m = json_string_value(json_object_get(root, "message"));
    } else {
        return false;
    }
    snprintf(msg, cap, "%s", m ? m : "(no message)");
    return true;
}

static enum pd_status load(const char *data, size_t len, json_t **root, const char *what,
                           struct pd_err *err)
{
    json_error_t je;
    /* token texts may hold NUL bytes (a byte token), escaped as \u0000 */
    *root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!*root) {
        return pd_err_set(err, PD_EFORMAT, "%s: malformed JSON at byte %d: %s", what,
                          je.position, je.text);
    }
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return pd_err_set(err, PD_EFORMAT, "%s: expected a JSON object", what);
    }
    return PD_OK;
}

/* ---- the ponder extension ------------------------------------------------------------ */

/* ext.tokens[k]: {"id", "entropy", "attn"}: exact entropy and the attention blob. */
static enum pd_status ponder_token(json_t *ext, size_t k, struct pd_token_rec *r,
                                   struct pd_err *err)
{
    json_t *arr = json_object_get(ext, "tokens");
    json_t *t = json_array_get(arr, k);
    if (!json_is_object(t)) {
        return pd_err_set(err, PD_EFORMAT, "ponder.tokens[%zu]: missing", k);
    }
    int32_t id;
    if (!json_id(json_object_get(t, "id"), &id) || (r->id >= 0 && id != r->id)) {
        return pd_err_set(err, PD_EFORMAT, "ponder.tokens[%zu].id: does not match the token",
                          k);
    }
    r->id = id;
    json_t *h = json_object_get(t, "entropy");
    if (json_is_number(h)) {
        r->entropy = (float)json_number_value(h);
        r->flags &= ~(uint32_t)PD_TOKF_ENTROPY_EST;
    } else if (h && !json_is_null(h)) {
        return pd_err_set(err, PD_EFORMAT, "ponder.tokens[%zu].entropy: not a number", k);
    }
    json_t *a = json_object_get(t, "attn");
    if (json_is_string(a)) {
        uint8_t *blob;
        size_t n;
        struct pd_attn_view v;
        if (!pd_base64_decode(json_string_value(a), json_string_length(a), &blob, &n)) {
            return pd_err_set(err, PD_EFORMAT, "ponder.tokens[%zu].attn: bad base64", k);
        }
        if (!pd_attn_blob_layout(blob, n, &v)) {
            free(blob);
            return pd_err_set(err, PD_EFORMAT, "ponder.tokens[%zu].attn: not an attention "
                              "summary", k);
        }
        free(r->attn);
        r->attn = blob;
        r->attn_len = n;
    }
    return PD_OK;
}

static enum pd_status ponder_kv(struct pd_rproto_stream *st, json_t *ext, struct pd_err *err)
{
    json_t *kv = json_object_get(ext, "kv");
    if (!kv || !st->on_kv) {
        return PD_OK;
    }
    if (!json_is_array(kv)) {
        return pd_err_set(err, PD_EFORMAT, "ponder.kv: not an array");
    }
    for (size_t i = 0; i < json_array_size(kv); i++) {
        json_t *e = json_array_get(kv, i);
        json_t *at = json_object_get(e, "at"), *layer = json_object_get(e, "layer");
        json_t *pos = json_object_get(e, "slot_pos");
        if (!json_is_integer(at) || !json_is_integer(layer) || !json_is_integer(pos)) {
            return pd_err_set(err, PD_EFORMAT, "ponder.kv[%zu]: needs integer at, layer, "
                              "slot_pos", i);
        }
        struct pd_kv_event_rec ev = {json_integer_value(at), (int32_t)json_integer_value(layer),
                                     json_integer_value(pos),
                                     json_is_true(json_object_get(e, "shadow"))
                                         ? PD_KV_SHADOW_EVICT : PD_KV_EVICT};
        st->on_kv(st->ud, &ev);
    }
    return PD_OK;
}

/* ---- openai shape -------------------------------------------------------------------- */

/* One entry of top_logprobs: {"token_id:N": lp, ...} (or plain text keys: no ids). */
static enum pd_status openai_top(json_t *dict, size_t k, uint32_t topk,
                                 struct pd_token_rec *r, struct pd_err *err)
{
    if (!dict || json_is_null(dict)) {
        return PD_OK;
    }
    if (!json_is_object(dict)) {
        return pd_err_set(err, PD_EFORMAT, "logprobs.top_logprobs[%zu]: not an object", k);
    }
    struct pd_topk cand[PD_TOPK_MAX + 2];
    size_t n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(dict, key, v) {
        int32_t id;
        float lp;
        if (!json_lp(v, &lp) || isnan(lp)) {
            return pd_err_set(err, PD_EFORMAT, "logprobs.top_logprobs[%zu]['%s']: not a "
                              "log-probability", k, key);
        }
        if (!token_id_str(key, &id)) {
            continue; /* a text key: no id to record */
        }
        if (n == sizeof cand / sizeof cand[0]) {
            return pd_err_set(err, PD_EFORMAT, "logprobs.top_logprobs[%zu]: more than %d "
                              "entries", k, PD_TOPK_MAX + 2);
        }
        cand[n++] = (struct pd_topk){id, lp};
    }
    put_top(r, cand, n, topk);
    return PD_OK;
}

/* One entry of vLLM's prompt_logprobs: {"<id>": {"logprob", "rank", "decoded_token"}}. */
static enum pd_status openai_prompt_entry(json_t *dict, size_t k, uint32_t topk,
                                          struct pd_token_rec *r, struct pd_err *err)
{
    if (json_is_null(dict)) {
        return PD_OK;
    }
    if (!json_is_object(dict)) {
        return pd_err_set(err, PD_EFORMAT, "prompt_logprobs[%zu]: not an object", k);
    }
    struct pd_topk cand[PD_TOPK_MAX + 2];
    size_t n = 0;
    bool found = false;
    const char *key;
    json_t *v;
    json_object_foreach(dict, key, v) {
        char *end;
        errno = 0;
        long id = strtol(key, &end, 10);
        float lp;
        if (errno || end == key || *end || id < 0 || id >= ID_MAX || !json_is_object(v) ||
            !json_lp(json_object_get(v, "logprob"), &lp) || isnan(lp)) {
            return pd_err_set(err, PD_EFORMAT, "prompt_logprobs[%zu]['%s']: expected a token "
                              "id with a logprob", k, key);
        }
        if ((int32_t)id == r->id) {
            r->logprob = lp;
            found = true;
        }
        json_t *rank = json_object_get(v, "rank");
        bool in_top = !json_is_integer(rank) || json_integer_value(rank) <= (json_int_t)topk;
        if (in_top && n < sizeof cand / sizeof cand[0]) {
            cand[n++] = (struct pd_topk){(int32_t)id, lp};
        }
    }
    if (!found) {
        return pd_err_set(err, PD_EFORMAT, "prompt_logprobs[%zu]: no entry for token %d", k,
                          r->id);
    }
    put_top(r, cand, n, topk);
    return PD_OK;
}

/* The tokens of one choice object, in order, to fn. */
static enum pd_status openai_choice(json_t *ch, uint32_t topk, pd_rproto_token_fn fn,
                                    void *ud, size_t *n_out, struct pd_err *err)
{
    *n_out = 0;
    json_t *text = json_object_get(ch, "text");
    json_t *lps = json_object_get(ch, "logprobs");
    json_t *ids = json_object_get(ch, "token_ids");
    json_t *ext = json_object_get(ch, "ponder");
    if (text && !json_is_string(text)) {
        return pd_err_set(err, PD_EFORMAT, "choices[0].text: not a string");
    }
    if (ext && !json_is_object(ext)) {
        return pd_err_set(err, PD_EFORMAT, "choices[0].ponder: not an object");
    }
    json_t *toks = NULL, *tlps = NULL, *tops = NULL;
    size_t n = 0;
    if (lps && !json_is_null(lps)) {
        toks = json_object_get(lps, "tokens");
        tlps = json_object_get(lps, "token_logprobs");
        tops = json_object_get(lps, "top_logprobs");
        if (!json_is_array(toks) || !json_is_array(tlps) ||
            json_array_size(toks) != json_array_size(tlps) ||
            (tops && !json_is_null(tops) &&
             (!json_is_array(tops) || json_array_size(tops) != json_array_size(toks)))) {
            return pd_err_set(err, PD_EFORMAT, "choices[0].logprobs: tokens, token_logprobs "
                              "and top_logprobs must be arrays of one length");
        }
        n = json_array_size(toks);
    } else if (json_is_array(ids)) {
        n = json_array_size(ids);
    }
    if (ids && !json_is_null(ids) && (!json_is_array(ids) || json_array_size(ids) != n)) {
        return pd_err_set(err, PD_EFORMAT, "choices[0].token_ids: %zu ids for %zu tokens",
                          json_is_array(ids) ? json_array_size(ids) : 0, n);
    }
    if (ext && n > 0 && json_array_size(json_object_get(ext, "tokens")) != n) {
        return pd_err_set(err, PD_EFORMAT, "choices[0].ponder.tokens: not one per token");
    }
    struct pd_token_rec r;
    memset(&r, 0, sizeof r);
    for (size_t k = 0; k < n; k++) {
        rec_reset(&r);
        enum pd_status st = PD_OK;
        if (json_is_array(ids) && !json_id(json_array_get(ids, k), &r.id)) {
            st = pd_err_set(err, PD_EFORMAT, "choices[0].token_ids[%zu]: not a token id", k);
        } else if (toks && r.id < 0 &&
                   !token_id_str(json_string_value(json_array_get(toks, k)), &r.id) && !ext) {
            st = pd_err_set(err, PD_EFORMAT, "choices[0].logprobs.tokens[%zu]: no token id "
                            "(the server sent text; ponder asks for "
                            "return_tokens_as_token_ids, vLLM >= 0.4.3)", k);
        } else if (tlps && !json_lp(json_array_get(tlps, k), &r.logprob)) {
            st = pd_err_set(err, PD_EFORMAT, "choices[0].logprobs.token_logprobs[%zu]: not a "
                            "log-probability", k);
        } else if (tops && !json_is_null(tops)) {
            st = openai_top(json_array_get(tops, k), k, topk, &r, err);
        }
        if (st == PD_OK) {
            pd_rproto_entropy_estimate(&r);
            if (ext) {
                st = ponder_token(ext, k, &r, err);
            }
        }
        if (st == PD_OK && r.id < 0) {
            st = pd_err_set(err, PD_EFORMAT, "choices[0]: token %zu has no id", k);
        }
        /* the delta text belongs to the chunk's last token (vLLM streams one token per
         * chunk; its text offsets do not describe id-form tokens) */
        if (st == PD_OK) {
            bool last = k + 1 == n;
            const char *s = last && text ? json_string_value(text) : "";
            size_t len = last && text ? json_string_length(text) : 0;
            if (!set_text(&r, s, len)) {
                st = pd_err_set(err, PD_ENOMEM, "response: out of memory");
            }
        }
        if (st == PD_OK) {
            st = fn(ud, &r, err);
        }
        if (st != PD_OK) {
            pd_token_rec_free(&r);
            return st;
        }
        (*n_out)++;
    }
    pd_token_rec_free(&r);
    return PD_OK;
}

/* ---- llamacpp shape ------------------------------------------------------------------ */

/* The bytes of a probability entry: "bytes" (exact) or "token" (text). */
static bool llama_text(json_t *e, struct pd_token_rec *r)
{
    json_t *bytes = json_object_get(e, "bytes");
    if (json_is_array(bytes)) {
        size_t n = json_array_size(bytes);
        char *s = malloc(n + 1);
        if (!s) {
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *b = json_array_get(bytes, i);
            json_int_t v = json_is_integer(b) ? json_integer_value(b) : -1;
            if (v < 0 || v > 255) {
                free(s);
                return set_text(r, "", 0);
            }
            s[i] = (char)v;
        }
        s[n] = '\0';
        free(r->text);
        r->text = s;
        r->text_len = n;
        return true;
    }
    json_t *t = json_object_get(e, "token");
    return set_text(r, json_string_value(t), json_is_string(t) ? json_string_length(t) : 0);
}

static enum pd_status llama_tokens(json_t *root, uint32_t topk, pd_rproto_token_fn fn,
                                   void *ud, size_t *n_out, struct pd_err *err)
{
    *n_out = 0;
    json_t *probs = json_object_get(root, "completion_probabilities");
    json_t *toks = json_object_get(root, "tokens");
    json_t *content = json_object_get(root, "content");
    if (probs && !json_is_array(probs)) {
        return pd_err_set(err, PD_EFORMAT, "completion_probabilities: not an array");
    }
    if (toks && !json_is_array(toks)) {
        return pd_err_set(err, PD_EFORMAT, "tokens: not an array");
    }
    size_t n = probs ? json_array_size(probs) : toks ? json_array_size(toks) : 0;
    if (probs && toks && json_array_size(toks) > 0 && json_array_size(toks) != n) {
        return pd_err_set(err, PD_EFORMAT, "tokens: %zu ids for %zu probability entries",
                          json_array_size(toks), n);
    }
    struct pd_token_rec r;
    memset(&r, 0, sizeof r);
    for (size_t k = 0; k < n; k++) {
        rec_reset(&r);
        enum pd_status st = PD_OK;
        json_t *e = probs ? json_array_get(probs, k) : NULL;
        if (e) {
            json_t *top = json_object_get(e, "top_logprobs");
            if (!json_is_object(e) || !json_id(json_object_get(e, "id"), &r.id) ||
                !json_lp(json_object_get(e, "logprob"), &r.logprob) ||
                (top && !json_is_array(top))) {
                st = pd_err_set(err, PD_EFORMAT, "completion_probabilities[%zu]: needs id, "
                                "logprob and top_logprobs", k);
            }
            struct pd_topk cand[PD_TOPK_MAX + 2];
            size_t nc = 0;
            for (size_t j = 0; st == PD_OK && top && j < json_array_size(top); j++) {
                json_t *t = json_array_get(top, j);
                int32_t id;
                float lp;
                if (!json_id(json_object_get(t, "id"), &id) ||
                    !json_lp(json_object_get(t, "logprob"), &lp) || isnan(lp)) {
                    st = pd_err_set(err, PD_EFORMAT, "completion_probabilities[%zu]."
                                    "top_logprobs[%zu]: needs id and logprob", k, j);
                } else if (nc < sizeof cand / sizeof cand[0]) {
                    cand[nc++] = (struct pd_topk){id, lp};
                }
            }
            if (st == PD_OK) {
                put_top(&r, cand, nc, topk);
                pd_rproto_entropy_estimate(&r);
                if (!llama_text(e, &r)) {
                    st = pd_err_set(err, PD_ENOMEM, "response: out of memory");
                }
            }
        } else if (!json_id(json_array_get(toks, k), &r.id)) {
            st = pd_err_set(err, PD_EFORMAT, "tokens[%zu]: not a token id", k);
        } else {
            bool last = k + 1 == n;
            const char *s = last && json_is_string(content) ? json_string_value(content) : "";
            if (!set_text(&r, s, last && json_is_string(content) ? json_string_length(content)
                                                                 : 0)) {
                st = pd_err_set(err, PD_ENOMEM, "response: out of memory");
            }
        }
        if (st == PD_OK) {
            st = fn(ud, &r, err);
        }
        if (st != PD_OK) {
            pd_token_rec_free(&r);
            return st;
        }
        (*n_out)++;
    }
    pd_token_rec_free(&r);
    return PD_OK;
}

/* ---- sglang shape -------------------------------------------------------------------- */

/* [logprob|null, id, text|null] */
static bool sgl_triple(json_t *t, float *lp, int32_t *id, const char **text, size_t *len)
{
    if (!json_is_array(t) || json_array_size(t) < 2 || !json_lp(json_array_get(t, 0), lp) ||
        !json_id(json_array_get(t, 1), id)) {
        return false;
    }
    json_t *s = json_array_get(t, 2);
    *text = json_is_string(s) ? json_string_value(s) : NULL;
    *len = json_is_string(s) ? json_string_length(s) : 0;
    return true;
}

/* Fills r from entry i of a token list and its top list (both sglang meta_info arrays). */
static enum pd_status sgl_token(json_t *lps, json_t *tops, size_t i, const char *what,
                                uint32_t topk, struct pd_token_rec *r, struct pd_err *err)
{
    const char *text;
    size_t len;
    if (!sgl_triple(json_array_get(lps, i), &r->logprob, &r->id, &text, &len)) {
        return pd_err_set(err, PD_EFORMAT, "meta_info.%s_token_logprobs[%zu]: expected "
                          "[logprob, id, text]", what, i);
    }
    json_t *tl = tops ? json_array_get(tops, i) : NULL;
    if (tl && !json_is_null(tl)) {
        if (!json_is_array(tl)) {
            return pd_err_set(err, PD_EFORMAT, "meta_info.%s_top_logprobs[%zu]: not an array",
                              what, i);
        }
        struct pd_topk cand[PD_TOPK_MAX + 2];
        size_t nc = 0;
        for (size_t j = 0; j < json_array_size(tl); j++) {
            float lp;
            int32_t id;
            const char *t2;
            size_t l2;
            if (!sgl_triple(json_array_get(tl, j), &lp, &id, &t2, &l2) || isnan(lp)) {
                return pd_err_set(err, PD_EFORMAT, "meta_info.%s_top_logprobs[%zu][%zu]: "
                                  "expected [logprob, id, text]", what, i, j);
            }
            if (nc < sizeof cand / sizeof cand[0]) {
                cand[nc++] = (struct pd_topk){id, lp};
            }
        }
        put_top(r, cand, nc, topk);
    }
    pd_rproto_entropy_estimate(r);
    if (!set_text(r, text, len)) {
        return pd_err_set(err, PD_ENOMEM, "response: out of memory");
    }
    return PD_OK;
}

static enum pd_status sgl_tokens(struct pd_rproto_stream *st, json_t *root, size_t *n_out,
                                 struct pd_err *err)
{
    *n_out = 0;
    json_t *meta = json_object_get(root, "meta_info");
    if (!json_is_object(meta)) {
        return pd_err_set(err, PD_EFORMAT, "meta_info: missing");
    }
    json_t *lps = json_object_get(meta, "output_token_logprobs");
    json_t *tops = json_object_get(meta, "output_top_logprobs");
    json_t *ctok = json_object_get(meta, "completion_tokens");
    if (lps && !json_is_array(lps)) {
        return pd_err_set(err, PD_EFORMAT, "meta_info.output_token_logprobs: not an array");
    }
    if (tops && !json_is_null(tops) && !json_is_array(tops)) {
        return pd_err_set(err, PD_EFORMAT, "meta_info.output_top_logprobs: not an array");
    }
    size_t L = lps ? json_array_size(lps) : 0;
    if (tops && json_is_array(tops) && json_array_size(tops) != L) {
        return pd_err_set(err, PD_EFORMAT, "meta_info.output_top_logprobs: %zu entries for %zu "
                          "tokens", json_array_size(tops), L);
    }
    /* Streams repeat all tokens so far (default) or only the new ones
     * (--incremental-streaming-output); completion_tokens tells which. */
    uint64_t C = json_is_integer(ctok) ? (uint64_t)json_integer_value(ctok) : L;
    size_t from;
    if (C == L && L >= st->n_tokens) {
        from = (size_t)st->n_tokens;
    } else if (C >= st->n_tokens && L == C - st->n_tokens) {
        from = 0;
    } else {
        return pd_err_set(err, PD_EFORMAT, "meta_info: %zu token log-probabilities do not fit "
                          "completion_tokens %llu after %llu tokens", L, (unsigned long long)C,
                          (unsigned long long)st->n_tokens);
    }
    struct pd_token_rec r;
    memset(&r, 0, sizeof r);
    for (size_t i = from; i < L; i++) {
        rec_reset(&r);
        enum pd_status s = sgl_token(lps, json_is_array(tops) ? tops : NULL, i, "output",
                                     st->topk, &r, err);
        if (s == PD_OK) {
            s = st->on_token(st->ud, &r, err);
        }
        if (s != PD_OK) {
            pd_token_rec_free(&r);
            return s;
        }
        (*n_out)++;
    }
    pd_token_rec_free(&r);
    json_t *fr = json_object_get(meta, "finish_reason");
    if (json_is_object(fr)) {
        const char *type = json_string_value(json_object_get(fr, "type"));
        snprintf(st->finish, sizeof st->finish, "%s", type ? type : "stop");
        st->done = true;
        if (type && strcmp(type, "abort") == 0) {
            const char *m = json_string_value(json_object_get(fr, "message"));
            return pd_err_set(err, PD_EIO, "server aborted the generation: %s",
                              m ? m : "(no message)");
        }
    }
    return PD_OK;
}

/* ---- streams ------------------------------------------------------------------------- */

void pd_rproto_stream_init(struct pd_rproto_stream *st, enum pd_remote_server s,
                           uint32_t topk, pd_rproto_token_fn on_token, pd_rproto_kv_fn on_kv,
                           void *ud)
{
    memset(st, 0, sizeof *st);
    st->server = s;
    st->topk = topk > PD_TOPK_MAX ? PD_TOPK_MAX : topk;
    st->on_token = on_token;
    st->on_kv = on_kv;
    st->ud = ud;
}

static enum pd_status count_token(void *ud, struct pd_token_rec *tok, struct pd_err *err)
{
    struct pd_rproto_stream *st = ud;
    enum pd_status s = st->on_token(st->ud, tok, err);
    if (s == PD_OK) {
        st->n_tokens++;
    }
    return s;
}

enum pd_status pd_rproto_stream_data(struct pd_rproto_stream *st, const char *data, size_t len,
                                     struct pd_err *err)
{
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == ' ')) {
        len--;
    }
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        st->got_done_marker = true;
        st->done = true;
        return PD_OK;
    }
    json_t *root;
    enum pd_status s = load(data, len, &root, "response", err);
    if (s != PD_OK) {
        return s;
    }
    char msg[400];
    if (error_object(root, msg, sizeof msg)) {
        json_decref(root);
        return pd_err_set(err, PD_EIO, "server error: %s", msg);
    }
    size_t n = 0;
    if (st->server == PD_REMOTE_LLAMACPP) {
        s = llama_tokens(root, st->topk, count_token, st, &n, err);
        json_t *stop = json_object_get(root, "stop");
        if (s == PD_OK && json_is_true(stop)) {
            const char *type = json_string_value(json_object_get(root, "stop_type"));
            snprintf(st->finish, sizeof st->finish, "%s", type ? type : "eos");
            st->done = true;
        }
    } else if (st->server == PD_REMOTE_SGLANG) {
        uint64_t before = st->n_tokens;
        s = sgl_tokens(st, root, &n, err);
        st->n_tokens = before + n;
    } else {
        json_t *choices = json_object_get(root, "choices");
        if (!json_is_array(choices)) {
            s = pd_err_set(err, PD_EFORMAT, "response: no choices array");
        } else if (json_array_size(choices) > 0) {
            json_t *ch = json_array_get(choices, 0);
            if (!json_is_object(ch)) {
                s = pd_err_set(err, PD_EFORMAT, "choices[0]: not an object");
            } else {
                s = openai_choice(ch, st->topk, count_token, st, &n, err);
                json_t *ext = json_object_get(ch, "ponder");
                if (s == PD_OK && json_is_object(ext)) {
                    s = ponder_kv(st, ext, err);
                }
                json_t *fr = json_object_get(ch, "finish_reason");
                if (s == PD_OK && json_is_string(fr)) {
                    snprintf(st->finish, sizeof st->finish, "%s", json_string_value(fr));
                    st->done = true;
                }
            }
        }
    }
    json_decref(root);
    return s;
}

/* ---- scoring responses ---------------------------------------------------------------- */

struct score_fill {
    const int32_t *ids;
    size_t n;
    size_t i;
    struct pd_token_rec *out;
};

static enum pd_status score_token(void *ud, struct pd_token_rec *tok, struct pd_err *err)
{
    struct score_fill *f = ud;
    if (f->i >= f->n) {
        f->i++;
        return PD_OK; /* a generated token after the prompt: not ours */
    }
    if (tok->id != f->ids[f->i]) {
        return pd_err_set(err, PD_EFORMAT, "the server's token %zu is %d, ponder sent %d: the "
                          "server did not score the tokens it was given", f->i, tok->id,
                          f->ids[f->i]);
    }
    struct pd_token_rec *o = &f->out[f->i];
    if (f->i > 0) {
        o->logprob = tok->logprob;
        o->entropy = tok->entropy;
        o->n_top = tok->n_top;
        memcpy(o->top, tok->top, sizeof o->top);
        o->flags = (o->flags & ~(uint32_t)PD_TOKF_ENTROPY_EST) |
                   (tok->flags & PD_TOKF_ENTROPY_EST);
    }
    if (tok->attn) {
        free(o->attn);
        o->attn = tok->attn;
        o->attn_len = tok->attn_len;
        tok->attn = NULL;
    }
    f->i++;
    return PD_OK;
}

static enum pd_status openai_prompt_logprobs(json_t *pl, const int32_t *ids, size_t n,
                                             uint32_t topk, struct pd_token_rec *out,
                                             struct pd_err *err)
{
    if (!json_is_array(pl) || json_array_size(pl) < n) {
        return pd_err_set(err, PD_EFORMAT, "choices[0].prompt_logprobs: expected %zu entries",
                          n);
    }
    for (size_t i = 1; i < n; i++) {
        struct pd_token_rec r;
        memset(&r, 0, sizeof r);
        r.id = ids[i];
        r.logprob = NAN;
        enum pd_status st = openai_prompt_entry(json_array_get(pl, i), i, topk, &r, err);
        if (st != PD_OK) {
            return st;
        }
        pd_rproto_entropy_estimate(&r);
        out[i].logprob = r.logprob;
        out[i].entropy = r.entropy;
        out[i].n_top = r.n_top;
        memcpy(out[i].top, r.top, sizeof r.top);
        out[i].flags |= r.flags & PD_TOKF_ENTROPY_EST;
    }
    return PD_OK;
}

enum pd_status pd_rproto_score_response(enum pd_remote_server s, const char *body, size_t len,
                                        const int32_t *ids, size_t n, uint32_t topk,
                                        struct pd_token_rec *out, struct pd_err *err)
{
    topk = topk > PD_TOPK_MAX ? PD_TOPK_MAX : topk;
    for (size_t i = 0; i < n; i++) {
        out[i].logprob = NAN;
        out[i].entropy = NAN;
        out[i].n_top = 0;
        out[i].flags &= ~(uint32_t)(PD_TOKF_ENTROPY_EST | PD_TOKF_NO_METRICS);
    }
    json_t *root;
    enum pd_status st = load(body, len, &root, "scoring response", err);
    if (st != PD_OK) {
        return st;
    }
    char msg[400];
    struct score_fill f = {ids, n, 0, out};
    if (error_object(root, msg, sizeof msg)) {
        st = pd_err_set(err, PD_EIO, "server error: %s", msg);
    } else if (s == PD_REMOTE_LLAMACPP) {
        /* the generated tokens are ids[1..n) (see pd_rproto_score_request) */
        size_t got = 0;
        f.i = 1;
        st = llama_tokens(root, topk, score_token, &f, &got, err);
        if (st == PD_OK && f.i != n) {
            const char *why = json_string_value(json_object_get(root, "stop_type"));
            st = pd_err_set(err, PD_EFORMAT, "scoring response: %zu of the %zu tokens after the "
                            "first came back (the server stopped: %s)", f.i - 1, n - 1,
                            why ? why : "no stop_type");
        }
    } else if (s == PD_REMOTE_SGLANG) {
        json_t *meta = json_object_get(root, "meta_info");
        json_t *lps = json_object_get(meta, "input_token_logprobs");
        json_t *tops = json_object_get(meta, "input_top_logprobs");
        if (!json_is_array(lps) || json_array_size(lps) != n ||
            (tops && !json_is_null(tops) &&
             (!json_is_array(tops) || json_array_size(tops) != n))) {
            st = pd_err_set(err, PD_EFORMAT, "meta_info.input_token_logprobs: expected %zu "
                            "entries", n);
        }
        struct pd_token_rec r;
        memset(&r, 0, sizeof r);
        for (size_t i = 0; st == PD_OK && i < n; i++) {
            rec_reset(&r);
            st = sgl_token(lps, json_is_array(tops) ? tops : NULL, i, "input", topk, &r, err);
            if (st == PD_OK) {
                st = score_token(&f, &r, err);
            }
        }
        pd_token_rec_free(&r);
    } else {
        json_t *choices = json_object_get(root, "choices");
        json_t *ch = json_array_get(choices, 0);
        json_t *lps = json_object_get(ch, "logprobs");
        size_t got = 0;
        if (!json_is_object(ch)) {
            st = pd_err_set(err, PD_EFORMAT, "scoring response: no choices[0]");
        } else if (json_is_object(lps)) {
            st = openai_choice(ch, topk, score_token, &f, &got, err);
            if (st == PD_OK && f.i < n) {
                st = pd_err_set(err, PD_EFORMAT, "scoring response: %zu echoed tokens for %zu "
                                "sent (is echo supported?)", f.i, n);
            }
        } else if (json_object_get(ch, "prompt_logprobs")) {
            st = openai_prompt_logprobs(json_object_get(ch, "prompt_logprobs"), ids, n, topk,
                                        out, err);
        } else {
            st = pd_err_set(err, PD_EFORMAT, "scoring response: neither logprobs nor "
                            "prompt_logprobs in choices[0]");
        }
    }
    json_decref(root);
    return st;
}

/* ---- errors, models, tokens ---------------------------------------------------------- */

static void clean_copy(char *out, size_t cap, const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[k++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    out[k] = '\0';
}

void pd_rproto_error_message(const char *body, size_t len, char *out, size_t cap)
{
    if (cap == 0) {
        return;
    }
    out[0] = '\0';
    if (!body || len == 0) {
        return;
    }
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_ALLOW_NUL, &je);
    const char *m = NULL;
    char tmp[512];
    if (json_is_object(root)) {
        json_t *e = json_object_get(root, "error");
        json_t *detail = json_object_get(root, "detail");
        if (json_is_object(e)) {
            m = json_string_value(json_object_get(e, "message"));
        } else if (json_is_string(e)) {
            m = json_string_value(e);
        } else if (json_is_string(json_object_get(root, "message"))) {
            m = json_string_value(json_object_get(root, "message"));
        } else if (json_is_string(detail)) {
            m = json_string_value(detail);
        } else if (json_is_array(detail)) {
            /* FastAPI validation errors: [{"loc": [...], "msg": "..."}] */
            json_t *d0 = json_array_get(detail, 0);
            const char *msg = json_string_value(json_object_get(d0, "msg"));
            json_t *loc = json_object_get(d0, "loc");
            const char *field = json_string_value(json_array_get(loc, json_array_size(loc) - 1));
            snprintf(tmp, sizeof tmp, "%s%s%s", field ? field : "", field ? ": " : "",
                     msg ? msg : "invalid request");
            m = tmp;
        }
    }
    if (m) {
        clean_copy(out, cap, m, strlen(m));
    } else {
        clean_copy(out, cap < 201 ? cap : 201, body, len);
    }
    json_decref(root);
}

enum pd_status pd_rproto_models_parse(const char *body, size_t len, const char *want,
                                      struct pd_rproto_models *out, struct pd_err *err)
{
    memset(out, 0, sizeof *out);
    json_t *root;
    enum pd_status st = load(body, len, &root, "/v1/models", err);
    if (st != PD_OK) {
        return st;
    }
    json_t *data = json_object_get(root, "data");
    if (!json_is_array(data)) {
        json_decref(root);
        return pd_err_set(err, PD_EFORMAT, "/v1/models: no data array");
    }
    out->n_models = json_array_size(data);
    for (size_t i = 0; i < out->n_models; i++) {
        json_t *m = json_array_get(data, i);
        const char *id = json_string_value(json_object_get(m, "id"));
        if (!id || (want && strcmp(id, want) != 0)) {
            continue;
        }
        snprintf(out->model, sizeof out->model, "%s", id);
        const char *own = json_string_value(json_object_get(m, "owned_by"));
        snprintf(out->owned_by, sizeof out->owned_by, "%s", own ? own : "");
        json_t *ml = json_object_get(m, "max_model_len");
        if (json_is_integer(ml) && json_integer_value(ml) > 0 &&
            json_integer_value(ml) < (1ll << 31)) {
            out->max_model_len = (uint32_t)json_integer_value(ml);
        }
        out->found = true;
        break;
    }
    json_decref(root);
    return PD_OK;
}

enum pd_status pd_rproto_tokens_parse(const char *body, size_t len, int32_t **ids, size_t *n,
                                      struct pd_err *err)
{
    *ids = NULL;
    *n = 0;
    json_t *root;
    enum pd_status st = load(body, len, &root, "tokenize response", err);
    if (st != PD_OK) {
        return st;
    }
    json_t *toks = json_object_get(root, "tokens");
    if (!json_is_array(toks)) {
        json_decref(root);
        return pd_err_set(err, PD_EFORMAT, "tokenize response: no tokens array");
    }
    size_t k = json_array_size(toks);
    int32_t *v = pd_malloc_array(k ? k : 1, sizeof *v);
    if (!v) {
        json_decref(root);
        return pd_err_set(err, PD_ENOMEM, "tokenize response: out of memory");
    }
    for (size_t i = 0; i < k; i++) {
        json_t *t = json_array_get(toks, i);
        if (json_is_object(t)) {
            t = json_object_get(t, "id"); /* llama-server with_pieces */
        }
        if (!json_id(t, &v[i])) {
            free(v);
            json_decref(root);
            return pd_err_set(err, PD_EFORMAT, "tokenize response: tokens[%zu] is not a token "
                              "id", i);
        }
    }
    json_decref(root);
    *ids = v;
    *n = k;
    return PD_OK;
}

enum pd_status pd_rproto_text_parse(const char *body, size_t len, char **text,
                                    struct pd_err *err)
{
    *text = NULL;
    json_t *root;
    enum pd_status st = load(body, len, &root, "detokenize response", err);
    if (st != PD_OK) {
        return st;
    }
    static const char *const keys[] = {"prompt", "content", "text"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = json_object_get(root, keys[i]);
        if (json_is_string(v)) {
            *text = pd_strndup(json_string_value(v), json_string_length(v));
            json_decref(root);
            return *text ? PD_OK : pd_err_set(err, PD_ENOMEM, "out of memory");
        }
    }
    json_decref(root);
    return pd_err_set(err, PD_EFORMAT, "detokenize response: no prompt, content or text");
}
