/* store_jsonl_ponder.c - importing `ponder` records (the full format `export --format
 * ponder` writes): session settings and model, messages, tokens with their metrics and
 * blobs, steps and annotations.
 *
 * An exported record leaves pruned tokens out, so its positions may have gaps; on import
 * the tokens are renumbered 0..n-1 in order and step and annotation spans are mapped onto
 * the new positions (a span keeps the tokens it covered that are still there). Branch
 * links are not restored: the record holds the whole sequence, so it becomes a root
 * session. Prunes are not restored either (what they removed is not in the record).
 * Every field is validated; errors name the field path ("tokens[12].top[3]"). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_blob.h"
#include "mem.h"
#include "utf8.h"
#include "store_blob.h"
#include "store_internal.h"

#define FIELD_MAX 96

/* Strict base64 (standard alphabet, padded, no whitespace) into an owned buffer. */
static bool b64_decode(const char *s, size_t n, uint8_t **out, size_t *out_n)
{
    if (n % 4 != 0) {
        return false;
    }
    uint8_t *buf = malloc(n / 4 * 3 + 1);
    if (!buf) {
        return false;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = s[i + (size_t)k];
            int d;
            if (c >= 'A' && c <= 'Z') {
                d = c - 'A';
            } else if (c >= 'a' && c <= 'z') {
                d = c - 'a' + 26;
            } else if (c >= '0' && c <= '9') {
                d = c - '0' + 52;
            } else if (c == '+') {
                d = 62;
            } else if (c == '/') {
                d = 63;
            } else if (c == '=' && i + 4 == n && k >= 2 && (k == 3 || s[i + 3] == '=')) {
                d = 0;
                pad++;
            } else {
                free(buf);
                return false;
            }
            if (pad && c != '=') {
                free(buf);
                return false;
            }
            v = v << 6 | (uint32_t)d;
        }
        buf[o++] = (uint8_t)(v >> 16);
        if (pad < 2) {
            buf[o++] = (uint8_t)(v >> 8);
        }
        if (pad < 1) {
            buf[o++] = (uint8_t)v;
        }
    }
    *out = buf;
    *out_n = o;
    return true;
}

/* Shared state of one record's import. */
struct pctx {
    const char *where;
    struct pd_err *err;
    char field[FIELD_MAX];
};

static enum pd_status bad(struct pctx *c, const char *what)
{
    return pd_err_set(c->err, PD_EFORMAT, "%s: %s: %s", c->where, c->field, what);
}

/* Reads an optional member; JSON null counts as absent. */
static json_t *member(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static enum pd_status get_int(struct pctx *c, json_t *obj, const char *key, int64_t lo,
                              int64_t hi, bool required, int64_t *out)
{
    json_t *v = member(obj, key);
    if (!v) {
        return required ? bad(c, "missing") : PD_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        return bad(c, "expected an integer in range");
    }
    *out = json_integer_value(v);
    return PD_OK;
}

/* A number or null (-> NAN); anything else is an error. */
/* A metric: null (NAN), or a number that is finite as a float and within [lo, hi]. */
static enum pd_status get_num(struct pctx *c, json_t *v, double lo, double hi, float *out)
{
    if (!v || json_is_null(v)) {
        *out = NAN;
        return PD_OK;
    }
    if (!json_is_number(v)) {
        return bad(c, "expected a number or null");
    }
    double d = json_number_value(v);
    float f = (float)d;
    if (!isfinite(f)) {
        return bad(c, "not a finite number");
    }
    if (d < lo || d > hi) {
        char msg[96];
        snprintf(msg, sizeof msg, "%g is outside [%g, %g]", d, lo, hi);
        return bad(c, msg);
    }
    *out = f;
    return PD_OK;
}

/* Ranges of imported metrics (the slack admits rounding): a logprob is at most 0, an
 * entropy, a surprisal and an attention mass at least 0, a mass at most 1. */
#define LP_MAX 1e-3
#define NONNEG_MIN (-1e-3)

static enum pd_status get_opt_str(struct pctx *c, json_t *obj, const char *key,
                                  const char **out)
{
    json_t *v = member(obj, key);
    *out = NULL;
    if (v && !json_is_string(v)) {
        return bad(c, "expected a string or null");
    }
    *out = v ? json_string_value(v) : NULL;
    return PD_OK;
}

static enum pd_status parse_settings(struct pctx *c, json_t *js, struct pd_run_settings *rs)
{
    static const char *const num_keys[] = {"temperature", "top_p", "min_p"};
    static const double num_hi[] = {100.0, 1.0, 1.0}; /* the ranges run/generate accept */
    float *num_dst[] = {&rs->temperature, &rs->top_p, &rs->min_p};
    enum pd_status rc = PD_OK;
    for (size_t i = 0; rc == PD_OK && i < 3; i++) {
        snprintf(c->field, sizeof c->field, "session.settings.%s", num_keys[i]);
        rc = get_num(c, json_object_get(js, num_keys[i]), 0.0, num_hi[i], num_dst[i]);
        if (rc == PD_OK && isnan(*num_dst[i])) {
            rc = bad(c, "missing");
        }
    }
    int64_t top_k = 0;
    snprintf(c->field, sizeof c->field, "session.settings.top_k");
    if (rc == PD_OK) {
        rc = get_int(c, js, "top_k", 0, INT32_MAX, false, &top_k);
        rs->top_k = (int32_t)top_k;
    }
    json_t *seed = member(js, "seed");
    snprintf(c->field, sizeof c->field, "session.settings.seed");
    if (rc == PD_OK && seed) {
        char *end = NULL;
        const char *s = json_string_value(seed);
        if (s && *s >= '0' && *s <= '9') {
            rs->seed = strtoull(s, &end, 10);
        }
        if (!s || !end || *end) {
            rc = bad(c, "expected a decimal string");
        }
    }
    static const char *const str_keys[] = {"mode", "kv_policy", "chat_template"};
    char **str_dst[] = {&rs->mode, &rs->kv_policy, &rs->chat_template};
    for (size_t i = 0; rc == PD_OK && i < 3; i++) {
        snprintf(c->field, sizeof c->field, "session.settings.%s", str_keys[i]);
        const char *v;
        rc = get_opt_str(c, js, str_keys[i], &v);
        *str_dst[i] = (char *)v; /* borrowed from the tree; never freed through rs */
    }
    return rc;
}

static enum pd_status parse_model(struct pd_store *st, struct pctx *c, json_t *jm,
                                  int64_t *model_id)
{
    struct pd_model_ident m = {0};
    int64_t size = 0;
    snprintf(c->field, sizeof c->field, "session.model");
    enum pd_status rc = get_opt_str(c, jm, "file_name", &m.file_name);
    if (rc == PD_OK) {
        rc = get_opt_str(c, jm, "sha256", &m.sha256);
    }
    if (rc == PD_OK) {
        rc = get_opt_str(c, jm, "arch", &m.arch);
    }
    if (rc == PD_OK) {
        rc = get_int(c, jm, "file_size", 0, INT64_MAX, true, &size);
    }
    if (rc != PD_OK) {
        return rc;
    }
    m.file_size = (uint64_t)size;
    struct pd_err e2;
    if (pd_store_model_put(st, &m, model_id, &e2) != PD_OK) {
        return pd_err_set(c->err, e2.status == PD_EINVAL ? PD_EFORMAT : e2.status, "%s: %s",
                          c->where, e2.msg);
    }
    return PD_OK;
}

static enum pd_status parse_messages(struct pctx *c, json_t *arr, struct pd_message **out,
                                     size_t *n)
{
    *out = NULL;
    *n = 0;
    snprintf(c->field, sizeof c->field, "messages");
    if (!arr) {
        return PD_OK;
    }
    if (!json_is_array(arr)) {
        return bad(c, "expected an array");
    }
    size_t len = json_array_size(arr);
    struct pd_message *m = pd_calloc(len ? len : 1, sizeof *m);
    if (!m) {
        return pd_err_set(c->err, PD_ENOMEM, "%s: out of memory", c->where);
    }
    for (size_t i = 0; i < len; i++) {
        json_t *o = json_array_get(arr, i);
        const char *role = json_string_value(json_object_get(o, "role"));
        const char *content = json_string_value(json_object_get(o, "content"));
        snprintf(c->field, sizeof c->field, "messages[%zu]", i);
        if (!json_is_object(o) || !role || !content) {
            free(m);
            return bad(c, "expected {\"role\": string, \"content\": string}");
        }
        m[i].role = pd_store_msg_role_parse(role);
        if (m[i].role == PD_STORE_MSG_ROLE_COUNT) {
            free(m);
            return bad(c, "unknown role");
        }
        m[i].content = (char *)content; /* borrowed from the tree */
    }
    *out = m;
    *n = len;
    return PD_OK;
}

/* Fills t from a token object; old position in *pos. Owned text/attn on success. */
static enum pd_status parse_token(struct pctx *c, json_t *o, size_t i, struct pd_token_rec *t,
                                  int64_t *pos)
{
    memset(t, 0, sizeof *t);
    snprintf(c->field, sizeof c->field, "tokens[%zu]", i);
    if (!json_is_object(o)) {
        return bad(c, "expected an object");
    }
    int64_t id = -1, flags = 0;
    enum pd_status rc = get_int(c, o, "pos", 0, INT64_MAX, true, pos);
    if (rc == PD_OK) {
        rc = get_int(c, o, "id", -1, INT32_MAX, true, &id);
    }
    if (rc == PD_OK) {
        rc = get_int(c, o, "flags", 0, UINT32_MAX, false, &flags);
    }
    const char *role = json_string_value(json_object_get(o, "role"));
    if (rc == PD_OK && (!role || pd_role_parse(role) == PD_ROLE_COUNT)) {
        rc = bad(c, "role: expected prompt, think, answer or injected");
    }
    if (rc != PD_OK) {
        return rc;
    }
    t->id = (int32_t)id;
    t->role = pd_role_parse(role);
    t->flags = (uint32_t)flags & ~(uint32_t)PD_TOKF_PRUNED;
    snprintf(c->field, sizeof c->field, "tokens[%zu].logprob", i);
    rc = get_num(c, json_object_get(o, "logprob"), -HUGE_VAL, LP_MAX, &t->logprob);
    snprintf(c->field, sizeof c->field, "tokens[%zu].entropy", i);
    if (rc == PD_OK) {
        rc = get_num(c, json_object_get(o, "entropy"), NONNEG_MIN, HUGE_VAL, &t->entropy);
    }
    json_t *top = member(o, "top");
    if (rc == PD_OK && top) {
        snprintf(c->field, sizeof c->field, "tokens[%zu].top", i);
        if (!json_is_array(top) || json_array_size(top) > PD_TOPK_MAX) {
            return bad(c, "expected an array of at most 20 [id, logprob] pairs");
        }
        for (size_t k = 0; k < json_array_size(top); k++) {
            json_t *pair = json_array_get(top, k);
            json_t *jid = json_array_get(pair, 0);
            json_t *jlp = json_array_get(pair, 1);
            snprintf(c->field, sizeof c->field, "tokens[%zu].top[%zu]", i, k);
            if (!json_is_array(pair) || json_array_size(pair) != 2 || !json_is_integer(jid) ||
                json_integer_value(jid) < 0 || json_integer_value(jid) > INT32_MAX ||
                !(json_is_number(jlp) || json_is_null(jlp))) {
                return bad(c, "expected [token id, logprob or null]");
            }
            t->top[k].id = (int32_t)json_integer_value(jid);
            t->top[k].logprob = json_is_null(jlp) ? -INFINITY : (float)json_number_value(jlp);
            if (t->top[k].logprob > LP_MAX || isnan(t->top[k].logprob) ||
                (!json_is_null(jlp) && isinf(t->top[k].logprob))) {
                return bad(c, "logprob above 0 or not finite");
            }
        }
        t->n_top = (uint8_t)json_array_size(top);
    }
    if (rc != PD_OK) {
        return rc;
    }
    json_t *text = json_object_get(o, "text");
    json_t *bytes = json_object_get(o, "bytes");
    snprintf(c->field, sizeof c->field, "tokens[%zu].text", i);
    if (json_is_string(text) && !bytes) {
        t->text = pd_strndup(json_string_value(text), json_string_length(text));
        t->text_len = json_string_length(text);
    } else if (json_is_string(bytes) && !text) {
        uint8_t *b;
        size_t bn;
        if (!b64_decode(json_string_value(bytes), json_string_length(bytes), &b, &bn)) {
            snprintf(c->field, sizeof c->field, "tokens[%zu].bytes", i);
            return bad(c, "invalid base64");
        }
        t->text = pd_strndup((const char *)b, bn);
        t->text_len = bn;
        free(b);
    } else {
        return bad(c, "expected one of text (string) or bytes (base64)");
    }
    if (!t->text) {
        return pd_err_set(c->err, PD_ENOMEM, "%s: out of memory", c->where);
    }
    json_t *attn = member(o, "attn");
    if (attn) {
        snprintf(c->field, sizeof c->field, "tokens[%zu].attn", i);
        struct pd_err e2;
        if (!json_is_string(attn) ||
            !b64_decode(json_string_value(attn), json_string_length(attn), &t->attn,
                        &t->attn_len)) {
            pd_token_rec_free(t);
            return bad(c, "expected base64 or null");
        }
        if (pd_attn_blob_check(t->attn, t->attn_len, NULL, &e2) != PD_OK) {
            pd_token_rec_free(t);
            return bad(c, e2.msg);
        }
    }
    return PD_OK;
}

/* Index of the first old position >= p (new position of p). */
static int64_t remap(const int64_t *old, size_t n, int64_t p)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (old[mid] < p) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return (int64_t)lo;
}

static enum pd_status parse_steps(struct pctx *c, json_t *arr, const int64_t *old, size_t n_old,
                                  struct pd_step_rec **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    snprintf(c->field, sizeof c->field, "steps");
    if (!arr) {
        return PD_OK;
    }
    if (!json_is_array(arr)) {
        return bad(c, "expected an array");
    }
    size_t len = json_array_size(arr);
    struct pd_step_rec *s = pd_calloc(len ? len : 1, sizeof *s);
    if (!s) {
        return pd_err_set(c->err, PD_ENOMEM, "%s: out of memory", c->where);
    }
    enum pd_status rc = PD_OK;
    for (size_t i = 0; rc == PD_OK && i < len; i++) {
        json_t *o = json_array_get(arr, i);
        int64_t idx = 0, b = 0, e = 0;
        snprintf(c->field, sizeof c->field, "steps[%zu]", i);
        const char *kind = json_string_value(json_object_get(o, "kind"));
        if (!json_is_object(o) || !kind || pd_step_kind_parse(kind) == PD_STEP_KIND_COUNT) {
            rc = bad(c, "expected an object with a known kind");
            break;
        }
        rc = get_int(c, o, "index", 0, INT32_MAX, true, &idx);
        if (rc == PD_OK && i > 0 && idx <= s[i - 1].index) {
            /* a repeated index would silently merge two steps into one row */
            snprintf(c->field, sizeof c->field, "steps[%zu].index", i);
            char msg[96];
            snprintf(msg, sizeof msg, "%lld repeats or comes before the previous step's %d",
                     (long long)idx, (int)s[i - 1].index);
            rc = bad(c, msg);
        }
        if (rc == PD_OK) {
            rc = get_int(c, o, "pos_begin", 0, INT64_MAX, true, &b);
        }
        if (rc == PD_OK) {
            rc = get_int(c, o, "pos_end", b, INT64_MAX, true, &e);
        }
        static const char *const keys[] = {"mean_surprisal", "first_surprisal", "mean_entropy",
                                           "attn_received"};
        float *dst[] = {&s[i].mean_surprisal, &s[i].first_surprisal, &s[i].mean_entropy,
                        &s[i].attn_received};
        static const double hi[] = {HUGE_VAL, HUGE_VAL, HUGE_VAL, 1.0 - NONNEG_MIN};
        for (size_t k = 0; rc == PD_OK && k < 4; k++) {
            snprintf(c->field, sizeof c->field, "steps[%zu].%s", i, keys[k]);
            rc = get_num(c, json_object_get(o, keys[k]), NONNEG_MIN, hi[k], dst[k]);
        }
        s[i].index = (int32_t)idx;
        s[i].kind = pd_step_kind_parse(kind);
        s[i].pos_begin = remap(old, n_old, b);
        s[i].pos_end = remap(old, n_old, e);
    }
    if (rc != PD_OK) {
        free(s);
        return rc;
    }
    *out = s;
    *n = len;
    return PD_OK;
}

static enum pd_status store_annotations(struct pd_store *st, struct pctx *c, json_t *arr,
                                        int64_t sid, const int64_t *old, size_t n_old)
{
    snprintf(c->field, sizeof c->field, "annotations");
    if (!arr) {
        return PD_OK;
    }
    if (!json_is_array(arr)) {
        return bad(c, "expected an array");
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        snprintf(c->field, sizeof c->field, "annotations[%zu]", i);
        const char *tag = json_string_value(json_object_get(o, "tag"));
        const char *note = NULL;
        if (!json_is_object(o) || !tag) {
            return bad(c, "expected an object with a tag");
        }
        enum pd_status rc = get_opt_str(c, o, "note", &note);
        struct pd_annotation a = {.tag = (char *)tag, .note = (char *)note};
        int64_t b = -1, e = -1;
        if (rc == PD_OK) {
            rc = get_int(c, o, "pos_begin", 0, INT64_MAX, false, &b);
        }
        if (rc == PD_OK) {
            rc = get_int(c, o, "pos_end", 0, INT64_MAX, false, &e);
        }
        if (rc != PD_OK) {
            return rc;
        }
        if ((b < 0) != (e < 0) || e < b) {
            return bad(c, "span needs pos_begin <= pos_end, or both null");
        }
        a.whole_session = b < 0;
        a.pos_begin = a.whole_session ? 0 : remap(old, n_old, b);
        a.pos_end = a.whole_session ? 0 : remap(old, n_old, e);
        struct pd_err e2;
        rc = pd_store_annotate(st, sid, &a, NULL, &e2);
        if (rc != PD_OK) {
            return pd_err_set(c->err, rc == PD_EINVAL ? PD_EFORMAT : rc, "%s: %s: %s",
                              c->where, c->field, e2.msg);
        }
    }
    return PD_OK;
}

enum pd_status pd_jsonl_import_ponder(struct pd_store *st, struct json_t *root,
                                      const char *where, int64_t *id, struct pd_err *err)
{
    struct pctx c = {.where = where, .err = err};
    snprintf(c.field, sizeof c.field, "ponder");
    json_t *ver = json_object_get(root, "ponder");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1) {
        return bad(&c, "unsupported record version (this ponder reads 1)");
    }
    json_t *sess = json_object_get(root, "session");
    snprintf(c.field, sizeof c.field, "session");
    if (!json_is_object(sess)) {
        return bad(&c, "expected an object");
    }
    json_t *toks = json_object_get(root, "tokens");
    snprintf(c.field, sizeof c.field, "tokens");
    if (!json_is_array(toks)) {
        return bad(&c, "expected an array");
    }
    size_t n_tok = json_array_size(toks);
    struct pd_token_rec *t = pd_calloc(n_tok ? n_tok : 1, sizeof *t);
    int64_t *old = pd_calloc(n_tok ? n_tok : 1, sizeof *old);
    struct pd_message *msgs = NULL;
    struct pd_step_rec *steps = NULL;
    size_t n_msgs = 0, n_steps = 0, n_done = 0;
    char *meta = NULL;
    enum pd_status rc = (t && old) ? PD_OK : pd_err_set(err, PD_ENOMEM, "%s: out of memory",
                                                         where);
    for (; rc == PD_OK && n_done < n_tok; n_done++) {
        rc = parse_token(&c, json_array_get(toks, n_done), n_done, &t[n_done], &old[n_done]);
        if (rc == PD_OK && n_done > 0 && old[n_done] <= old[n_done - 1]) {
            pd_token_rec_free(&t[n_done]);
            snprintf(c.field, sizeof c.field, "tokens[%zu].pos", n_done);
            rc = bad(&c, "positions must increase");
        }
        if (rc == PD_OK) {
            t[n_done].pos = (int64_t)n_done;
        }
    }
    if (rc == PD_OK) {
        rc = parse_messages(&c, member(root, "messages"), &msgs, &n_msgs);
    }
    if (rc == PD_OK) {
        rc = parse_steps(&c, member(root, "steps"), old, n_tok, &steps, &n_steps);
    }
    struct pd_run_settings rs = {0};
    json_t *js = member(sess, "settings");
    if (rc == PD_OK && js) {
        snprintf(c.field, sizeof c.field, "session.settings");
        rc = json_is_object(js) ? parse_settings(&c, js, &rs) : bad(&c, "expected an object");
    }
    json_t *jmeta = member(sess, "meta");
    if (rc == PD_OK && jmeta) {
        snprintf(c.field, sizeof c.field, "session.meta");
        if (!json_is_object(jmeta)) {
            rc = bad(&c, "expected an object or null");
        } else if (!(meta = json_dumps(jmeta, JSON_COMPACT))) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory", where);
        }
    }
    json_t *jref = member(sess, "reference");
    if (rc == PD_OK && jref && (!json_is_string(jref) || json_string_length(jref) == 0)) {
        snprintf(c.field, sizeof c.field, "session.reference");
        rc = bad(&c, "expected a non-empty string or null");
    }
    json_t *fin = json_object_get(sess, "finished");
    if (rc == PD_OK && fin && !json_is_boolean(fin)) {
        snprintf(c.field, sizeof c.field, "session.finished");
        rc = bad(&c, "expected true or false");
    }
    char source[600];
    snprintf(source, sizeof source, "import:%s", where);
    if (rc == PD_OK) {
        rc = pd_store_op_begin(st, err);
        if (rc == PD_OK) {
            int64_t model_id = 0, sid = 0;
            json_t *jm = member(sess, "model");
            if (jm) {
                rc = json_is_object(jm) ? parse_model(st, &c, jm, &model_id)
                                        : bad(&c, "session.model: expected an object");
            }
            struct pd_session_new sn = {.model_id = model_id, .settings = js ? &rs : NULL,
                                        .messages = msgs, .n_messages = n_msgs,
                                        .source = source, .meta = meta,
                                        .reference = jref ? json_string_value(jref) : NULL};
            struct pd_err e2;
            if (rc == PD_OK && pd_store_session_create(st, &sn, &sid, &e2) != PD_OK) {
                rc = pd_err_set(err, e2.status == PD_EINVAL ? PD_EFORMAT : e2.status,
                                "%s: session: %s", where, e2.msg);
            }
            if (rc == PD_OK) {
                rc = pd_store_tokens_insert(st, sid, t, n_tok, err);
            }
            if (rc == PD_OK) {
                rc = pd_store_steps_upsert(st, sid, steps, n_steps, err);
            }
            if (rc == PD_OK) {
                rc = store_annotations(st, &c, member(root, "annotations"), sid, old, n_tok);
            }
            if (rc == PD_OK && json_is_true(fin)) {
                rc = pd_store_finish_nolock(st, sid, err);
            }
            rc = pd_store_op_end(st, rc, err);
            if (rc == PD_OK && id) {
                *id = sid;
            }
        }
    }
    for (size_t i = 0; t && i < n_done; i++) {
        pd_token_rec_free(&t[i]);
    }
    free(t);
    free(old);
    free(msgs);
    free(steps);
    free(meta);
    return rc;
}
