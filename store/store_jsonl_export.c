/* store_jsonl_export.c - JSONL export: session selection, rebuilding the final assistant
 * message from tokens (pruned steps left out), the four line formats, and the
 * temporary-file-then-rename write.
 *
 * Final message rule (shared by every format but ponder): thinking T = the text of the
 * think tokens (and of injected tokens before the first answer token), answer A = the
 * text of the answer tokens (and injected tokens after), tokens in pruned steps skipped.
 * Tokens from a live run may carry the markers themselves: a leading "<think>" (plus one
 * "\n") and a trailing "</think>" (plus one "\n" before it) are removed from T, and after
 * such a closer, or a "</think>" opening A, A's leading whitespace is removed. When
 * pruning removed think text, T's trailing whitespace is trimmed. The message is then
 * "<think>\n" T "\n</think>\n\n" A when the session has think tokens, else A. */
#include "store_jsonl.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "afile.h"
#include "mem.h"
#include "utf8.h"
#include "store_internal.h"
#include "store_labels.h"
#include "store_replay.h"

#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))

static const char *const format_names[PD_JSONL_FORMAT_COUNT] = {
    "messages", "sharegpt", "prompt-completion", "ponder"};
_Static_assert(sizeof format_names / sizeof format_names[0] == PD_JSONL_FORMAT_COUNT,
               "format table");

const char *pd_jsonl_format_name(enum pd_jsonl_format f)
{
    return (unsigned)f < PD_JSONL_FORMAT_COUNT ? format_names[f] : NULL;
}

enum pd_jsonl_format pd_jsonl_format_parse(const char *s)
{
    for (int i = 0; i < PD_JSONL_FORMAT_COUNT; i++) {
        if (strcmp(s, format_names[i]) == 0) {
            return (enum pd_jsonl_format)i;
        }
    }
    return PD_JSONL_FORMAT_COUNT;
}

/* ---- JSON building with one failure flag ------------------------------------------ */

struct jb {
    bool ok;            /* false after any allocation failure */
};

static void jset(struct jb *b, json_t *obj, const char *key, json_t *val)
{
    if (!val || json_object_set_new(obj, key, val) != 0) {
        b->ok = false;
    }
}

static void jpush(struct jb *b, json_t *arr, json_t *val)
{
    if (!val || json_array_append_new(arr, val) != 0) {
        b->ok = false;
    }
}

static json_t *jreal(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *jstr_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* ---- the final assistant message -------------------------------------------------- */

struct final_turn {
    struct pd_buf think;
    struct pd_buf answer;
    bool has_think;
    bool has_answer;
    bool pruned_think;      /* pruning removed think text */
};

static void final_turn_free(struct final_turn *ft)
{
    pd_buf_deinit(&ft->think);
    pd_buf_deinit(&ft->answer);
}

/* Collects T and A from the session's tokens; pruned steps are skipped unless
 * keep_pruned. *n_tokens counts the tokens collected; *scored says every one has an id. */
static enum pd_status collect_final(struct pd_replay *r, bool keep_pruned, struct final_turn *ft,
                                    size_t *n_tokens, bool *scored, struct pd_err *err)
{
    *n_tokens = 0;
    *scored = true;
    enum { CH = 512 };
    struct pd_token_rec *tok = pd_calloc(CH, sizeof *tok);
    if (!tok) {
        return pd_err_set(err, PD_ENOMEM, "export: out of memory");
    }
    bool seen_answer = false;
    enum pd_status rc = pd_replay_seek(r, 0, err);
    while (rc == PD_OK) {
        size_t got = 0;
        rc = pd_replay_read(r, tok, CH, &got, err);
        for (size_t i = 0; i < got; i++) {
            struct pd_token_rec *t = &tok[i];
            bool to_think = t->role == PD_ROLE_THINK ||
                            (t->role == PD_ROLE_INJECTED && !seen_answer);
            bool to_answer = t->role == PD_ROLE_ANSWER ||
                             (t->role == PD_ROLE_INJECTED && seen_answer);
            seen_answer = seen_answer || t->role == PD_ROLE_ANSWER;
            if (to_think) {
                ft->has_think = true;
            } else if (to_answer) {
                ft->has_answer = true;
            }
            if (!keep_pruned && (t->flags & PD_TOKF_PRUNED) && (to_think || to_answer)) {
                ft->pruned_think = ft->pruned_think || to_think;
            } else if (rc == PD_OK && (to_think || to_answer)) {
                (*n_tokens)++;
                *scored = *scored && t->id >= 0;
                struct pd_buf *b = to_think ? &ft->think : &ft->answer;
                if (!pd_buf_append(b, t->text, t->text_len)) {
                    rc = pd_err_set(err, PD_ENOMEM, "export: out of memory");
                }
            }
            pd_token_rec_free(t);
        }
        if (got == 0) {
            break;
        }
    }
    free(tok);
    return rc;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool buf_starts(const struct pd_buf *b, size_t off, size_t len, const char *pre)
{
    size_t k = strlen(pre);
    return len >= k && memcmp(b->data + off, pre, k) == 0;
}

/* Composes the canonical assistant content (see the file comment) into out. */
static bool compose_final(const struct final_turn *ft, struct pd_buf *out)
{
    size_t t0 = 0, tn = ft->think.len;
    size_t a0 = 0, an = ft->answer.len;
    bool closed = false;
    if (buf_starts(&ft->think, t0, tn, "<think>")) {
        t0 += 7;
        tn -= 7;
        if (tn > 0 && ft->think.data[t0] == '\n') {
            t0++;
            tn--;
        }
    }
    if (tn >= 8 && memcmp(ft->think.data + t0 + tn - 8, "</think>", 8) == 0) {
        tn -= 8;
        closed = true;
        if (tn > 0 && ft->think.data[t0 + tn - 1] == '\n') {
            tn--;
        }
    }
    if (ft->pruned_think) {
        while (tn > 0 && is_space(ft->think.data[t0 + tn - 1])) {
            tn--;
        }
    }
    if (buf_starts(&ft->answer, a0, an, "</think>")) {
        a0 += 8;
        an -= 8;
        closed = true;
    }
    if (closed) {
        while (an > 0 && is_space(ft->answer.data[a0])) {
            a0++;
            an--;
        }
    }
    bool ok = true;
    if (ft->has_think) {
        ok = pd_buf_puts(out, "<think>\n") &&
             pd_buf_append(out, ft->think.data ? ft->think.data + t0 : "", tn) &&
             pd_buf_puts(out, "\n</think>\n\n");
    }
    ok = ok && pd_buf_append(out, ft->answer.data ? ft->answer.data + a0 : "", an);
    if (ok && !out->data) {
        ok = pd_buf_append(out, "", 0) && out->data;
    }
    return ok;
}

/* Copies s[0..n) as valid UTF-8: a sequence cut off at the very end (a generation stopped
 * inside a character) is dropped, any other invalid byte becomes U+FFFD. */
static bool clean_utf8(const char *s, size_t n, struct pd_buf *out)
{
    n -= pd_utf8_incomplete_tail(s, n);
    size_t i = 0;
    bool ok = pd_buf_append(out, "", 0);
    while (ok && i < n) {
        size_t run = 0;
        uint32_t cp;
        size_t k;
        while (i + run < n && (k = pd_utf8_decode(s + i + run, n - i - run, &cp)) > 0) {
            run += k;
        }
        ok = pd_buf_append(out, s + i, run);
        i += run;
        if (ok && i < n) {
            ok = pd_buf_append(out, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
    return ok;
}

/* ---- records ---------------------------------------------------------------------- */

struct session_data {
    struct pd_message *msgs;
    size_t n_msgs;
    struct pd_buf final;        /* canonical assistant content */
    bool has_final;
};

static void session_data_free(struct session_data *d)
{
    pd_store_messages_free(d->msgs, d->n_msgs);
    pd_buf_deinit(&d->final);
}

enum pd_status pd_jsonl_final(struct pd_replay *r, bool keep_pruned, struct pd_final *out,
                              struct pd_err *err)
{
    memset(out, 0, sizeof *out);
    pd_buf_init(&out->text);
    struct final_turn ft;
    memset(&ft, 0, sizeof ft);
    bool scored = true;
    enum pd_status rc = collect_final(r, keep_pruned, &ft, &out->n_tokens, &scored, err);
    if (rc == PD_OK && (ft.has_think || ft.has_answer)) {
        out->has = true;
        out->scored = scored;
        out->has_think = ft.has_think;
        struct pd_buf raw;
        pd_buf_init(&raw);
        if (!compose_final(&ft, &raw) || !clean_utf8(raw.data, raw.len, &out->text)) {
            rc = pd_err_set(err, PD_ENOMEM, "export: out of memory");
        }
        pd_buf_deinit(&raw);
    }
    final_turn_free(&ft);
    if (rc != PD_OK) {
        pd_buf_deinit(&out->text);
    }
    return rc;
}

static enum pd_status load_session_data(struct pd_store *st, struct pd_replay *r,
                                        struct session_data *d, struct pd_err *err)
{
    int64_t sid = pd_replay_info(r)->id;
    enum pd_status rc = pd_store_messages_get(st, sid, &d->msgs, &d->n_msgs, err);
    if (rc != PD_OK) {
        return rc;
    }
    for (size_t i = 0; i < d->n_msgs; i++) {
        if (!pd_utf8_valid(d->msgs[i].content, strlen(d->msgs[i].content))) {
            return pd_err_set(err, PD_EUNSUPPORTED, "session %lld: message %zu is not UTF-8",
                              (long long)sid, i);
        }
    }
    struct pd_final fin;
    rc = pd_jsonl_final(r, false, &fin, err);
    if (rc == PD_OK) {
        d->has_final = fin.has;
        pd_buf_deinit(&d->final);
        d->final = fin.text; /* moved */
    }
    return rc;
}

static json_t *chat_record(const struct session_data *d, bool sharegpt, struct jb *b)
{
    static const char *const sharegpt_from[PD_STORE_MSG_ROLE_COUNT] = {"system", "human", "gpt"};
    json_t *root = json_object();
    json_t *arr = json_array();
    jset(b, root, sharegpt ? "conversations" : "messages", arr);
    if (!arr) {
        return root;
    }
    const char *rk = sharegpt ? "from" : "role";
    const char *tk = sharegpt ? "value" : "content";
    for (size_t i = 0; i <= d->n_msgs; i++) {
        if (i == d->n_msgs && !d->has_final) {
            break;
        }
        enum pd_store_msg_role role = i < d->n_msgs ? d->msgs[i].role : PD_STORE_MSG_ASSISTANT;
        json_t *m = json_object();
        jpush(b, arr, m);
        if (!m) {
            break;
        }
        jset(b, m, rk, json_string(sharegpt ? sharegpt_from[role] : pd_store_msg_role_name(role)));
        if (i < d->n_msgs) {
            jset(b, m, tk, json_string(d->msgs[i].content));
        } else {
            jset(b, m, tk, json_stringn(d->final.data, d->final.len));
        }
    }
    return root;
}

static enum pd_status prompt_completion_record(const struct session_data *d, int64_t sid,
                                               json_t **out, struct jb *b, struct pd_err *err)
{
    const char *system = NULL, *user = NULL;
    size_t i = 0;
    if (i < d->n_msgs && d->msgs[i].role == PD_STORE_MSG_SYSTEM) {
        system = d->msgs[i++].content;
    }
    if (i < d->n_msgs && d->msgs[i].role == PD_STORE_MSG_USER) {
        user = d->msgs[i++].content;
    }
    if (!user || i != d->n_msgs || !d->has_final) {
        return pd_err_set(err, PD_EUNSUPPORTED,
                          "session %lld: prompt-completion needs [system] user + a completion",
                          (long long)sid);
    }
    json_t *root = json_object();
    if (system) {
        jset(b, root, "system", json_string(system));
    }
    jset(b, root, "prompt", json_string(user));
    jset(b, root, "completion", json_stringn(d->final.data, d->final.len));
    *out = root;
    return PD_OK;
}

static const char b64_digits[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 (with padding) of p[0..n) as a JSON string. */
static json_t *jbase64(const uint8_t *p, size_t n)
{
    size_t out_n = (n + 2) / 3 * 4;
    char *s = malloc(out_n + 1);
    if (!s) {
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= p[i + 2];
        }
        s[o++] = b64_digits[v >> 18 & 63];
        s[o++] = b64_digits[v >> 12 & 63];
        s[o++] = i + 1 < n ? b64_digits[v >> 6 & 63] : '=';
        s[o++] = i + 2 < n ? b64_digits[v & 63] : '=';
    }
    json_t *j = json_stringn(s, o);
    free(s);
    return j;
}

static json_t *ponder_session(const struct pd_store_session_info *in, struct jb *b)
{
    json_t *s = json_object();
    jset(b, s, "id", json_integer(in->id));
    jset(b, s, "source", json_string(in->source));
    jset(b, s, "created_ms", json_integer(in->created_ms));
    jset(b, s, "updated_ms", json_integer(in->updated_ms));
    jset(b, s, "finished", json_boolean(in->finished));
    jset(b, s, "parent", in->parent_id ? json_integer(in->parent_id) : json_null());
    jset(b, s, "fork_pos", json_integer(in->fork_pos));
    jset(b, s, "n_tokens", json_integer(in->n_tokens));
    json_t *meta = NULL;
    if (in->meta) {
        meta = json_loads(in->meta, 0, NULL);
    }
    jset(b, s, "meta", meta ? meta : json_null());
    jset(b, s, "reference", jstr_or_null(in->reference));
    if (in->model_id) {
        json_t *m = json_object();
        jset(b, m, "file_name", jstr_or_null(in->model_name));
        jset(b, m, "file_size", json_integer((json_int_t)in->model_size));
        jset(b, m, "sha256", jstr_or_null(in->model_sha256));
        jset(b, m, "arch", jstr_or_null(in->model_arch));
        jset(b, s, "model", m);
    } else {
        jset(b, s, "model", json_null());
    }
    if (in->has_settings) {
        const struct pd_run_settings *r = &in->settings;
        json_t *m = json_object();
        jset(b, m, "temperature", jreal(r->temperature));
        jset(b, m, "top_p", jreal(r->top_p));
        jset(b, m, "top_k", json_integer(r->top_k));
        jset(b, m, "min_p", jreal(r->min_p));
        char seed[24];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->seed);
        jset(b, m, "seed", json_string(seed)); /* u64 does not fit every JSON reader */
        jset(b, m, "mode", jstr_or_null(r->mode));
        jset(b, m, "kv_policy", jstr_or_null(r->kv_policy));
        jset(b, m, "chat_template", jstr_or_null(r->chat_template));
        jset(b, s, "settings", m);
    } else {
        jset(b, s, "settings", json_null());
    }
    return s;
}

static json_t *ponder_token(const struct pd_token_rec *t, struct jb *b)
{
    json_t *o = json_object();
    jset(b, o, "pos", json_integer(t->pos));
    jset(b, o, "id", json_integer(t->id));
    jset(b, o, "role", json_string(pd_role_name(t->role)));
    jset(b, o, "flags", json_integer(t->flags));
    if (pd_utf8_valid(t->text, t->text_len)) {
        jset(b, o, "text", json_stringn(t->text, t->text_len));
    } else {
        jset(b, o, "bytes", jbase64((const uint8_t *)t->text, t->text_len));
    }
    jset(b, o, "logprob", jreal(t->logprob));
    jset(b, o, "entropy", jreal(t->entropy));
    json_t *top = json_array();
    for (size_t i = 0; top && i < t->n_top; i++) {
        json_t *pair = json_array();
        jpush(b, pair, json_integer(t->top[i].id));
        jpush(b, pair, jreal(t->top[i].logprob));
        jpush(b, top, pair);
    }
    jset(b, o, "top", top);
    jset(b, o, "attn", t->attn ? jbase64(t->attn, t->attn_len) : json_null());
    return o;
}

/* Writes j (any JSON value) to f as the export does, and drops it; false on failure. */
static bool put_json(FILE *f, json_t *j, struct jb *b)
{
    bool ok = j && b->ok && json_dumpf(j, f, DUMP_FLAGS | JSON_ENCODE_ANY) == 0;
    json_decref(j);
    b->ok = b->ok && ok;
    return b->ok;
}

static bool put_s(FILE *f, const char *s, struct jb *b)
{
    b->ok = b->ok && fputs(s, f) != EOF;
    return b->ok;
}

/* The ponder record, written as it is read: the session, messages and final text, then
 * tokens, steps, prunes and annotations one JSON value at a time, so memory stays that of
 * a chunk of tokens whatever the session's length. The bytes are those a whole-tree dump
 * would write (same key order, same number formatting). */
static enum pd_status ponder_write(FILE *f, struct pd_store *st, struct pd_replay *r,
                                   const struct session_data *d, struct jb *b,
                                   struct pd_err *err)
{
    const struct pd_store_session_info *in = pd_replay_info(r);
    put_s(f, "{\"ponder\":1,\"session\":", b);
    put_json(f, ponder_session(in, b), b);
    put_s(f, ",\"messages\":", b);
    json_t *msgs = json_array();
    for (size_t i = 0; msgs && i < d->n_msgs; i++) {
        json_t *m = json_object();
        jset(b, m, "role", json_string(pd_store_msg_role_name(d->msgs[i].role)));
        jset(b, m, "content", json_string(d->msgs[i].content));
        jpush(b, msgs, m);
    }
    put_json(f, msgs, b);
    put_s(f, ",\"final\":", b);
    put_json(f, d->has_final ? json_stringn(d->final.data, d->final.len) : json_null(), b);
    put_s(f, ",\"tokens\":[", b);
    enum { CH = 512 };
    struct pd_token_rec *tok = pd_calloc(CH, sizeof *tok);
    enum pd_status rc = tok ? pd_replay_seek(r, 0, err)
                            : pd_err_set(err, PD_ENOMEM, "export: out of memory");
    bool first = true;
    while (rc == PD_OK && b->ok) {
        size_t got = 0;
        rc = pd_replay_read(r, tok, CH, &got, err);
        for (size_t i = 0; i < got; i++) {
            if (!(tok[i].flags & PD_TOKF_PRUNED) && b->ok) {
                put_s(f, first ? "" : ",", b);
                put_json(f, ponder_token(&tok[i], b), b);
                first = false;
            }
            pd_token_rec_free(&tok[i]);
        }
        if (got == 0) {
            break;
        }
    }
    free(tok);
    if (rc != PD_OK) {
        return rc;
    }
    put_s(f, "],\"steps\":[", b);
    size_t n_steps;
    const struct pd_step_rec *steps = pd_replay_steps(r, &n_steps);
    first = true;
    for (size_t i = 0; i < n_steps && b->ok; i++) {
        const struct pd_step_rec *k = &steps[i];
        if (k->pruned) {
            continue;
        }
        json_t *o = json_object();
        jset(b, o, "index", json_integer(k->index));
        jset(b, o, "pos_begin", json_integer(k->pos_begin));
        jset(b, o, "pos_end", json_integer(k->pos_end));
        jset(b, o, "kind", json_string(pd_step_kind_name(k->kind)));
        jset(b, o, "mean_surprisal", jreal(k->mean_surprisal));
        jset(b, o, "first_surprisal", jreal(k->first_surprisal));
        jset(b, o, "mean_entropy", jreal(k->mean_entropy));
        jset(b, o, "attn_received", jreal(k->attn_received));
        put_s(f, first ? "" : ",", b);
        put_json(f, o, b);
        first = false;
    }
    struct pd_prune *pr = NULL;
    size_t n_pr = 0;
    rc = pd_store_prunes_get(st, in->id, &pr, &n_pr, err);
    if (rc != PD_OK) {
        return rc;
    }
    put_s(f, "],\"prunes\":[", b);
    for (size_t i = 0; i < n_pr && b->ok; i++) {
        json_t *o = json_object();
        jset(b, o, "step", json_integer(pr[i].step_index));
        jset(b, o, "pos_begin", json_integer(pr[i].pos_begin));
        jset(b, o, "pos_end", json_integer(pr[i].pos_end));
        jset(b, o, "strategy", json_string(pr[i].strategy));
        jset(b, o, "by", json_string(pr[i].by));
        put_s(f, i ? "," : "", b);
        put_json(f, o, b);
    }
    pd_store_prunes_free(pr, n_pr);
    put_s(f, "],\"annotations\":[", b);
    size_t n_ann;
    const struct pd_annotation *ann = pd_replay_annotations(r, &n_ann);
    for (size_t i = 0; i < n_ann && b->ok; i++) {
        json_t *o = json_object();
        jset(b, o, "pos_begin", ann[i].whole_session ? json_null()
                                                     : json_integer(ann[i].pos_begin));
        jset(b, o, "pos_end", ann[i].whole_session ? json_null() : json_integer(ann[i].pos_end));
        jset(b, o, "tag", json_string(ann[i].tag));
        jset(b, o, "note", json_string(ann[i].note));
        put_s(f, i ? "," : "", b);
        put_json(f, o, b);
    }
    put_s(f, "]}", b);
    return PD_OK;
}

/* Writes one session in `format` to f, without a newline. PD_EUNSUPPORTED: the format
 * cannot express it (nothing written); PD_EIO / PD_ENOMEM on a failed write. */
static enum pd_status write_record(struct pd_store *st, int64_t sid, enum pd_jsonl_format format,
                                   FILE *f, struct pd_err *err)
{
    struct pd_replay *r = NULL;
    enum pd_status rc = pd_replay_open(st, sid, &r, err);
    if (rc != PD_OK) {
        return rc;
    }
    struct session_data d;
    memset(&d, 0, sizeof d);
    rc = load_session_data(st, r, &d, err);
    struct jb b = {true};
    json_t *root = NULL;
    if (rc == PD_OK) {
        switch (format) {
        case PD_JSONL_MESSAGES:
        case PD_JSONL_SHAREGPT:
            if (d.n_msgs == 0 && !d.has_final) {
                rc = pd_err_set(err, PD_EUNSUPPORTED, "session %lld: no messages",
                                (long long)sid);
            } else {
                root = chat_record(&d, format == PD_JSONL_SHAREGPT, &b);
            }
            break;
        case PD_JSONL_PROMPT_COMPLETION:
            rc = prompt_completion_record(&d, sid, &root, &b, err);
            break;
        case PD_JSONL_PONDER:
            rc = ponder_write(f, st, r, &d, &b, err);
            break;
        default:
            rc = pd_err_set(err, PD_EINVAL, "export: format %d out of range", (int)format);
            break;
        }
    }
    double diff = NAN, pass = NAN;
    int64_t graded = 0;
    if (rc == PD_OK && root) {
        rc = pd_store_difficulty(st, sid, &diff, &pass, &graded, err);
    }
    if (rc == PD_OK && root && isfinite(diff)) {
        /* only sessions graded by analyze --pass-rate carry it, so the canonical forms of
         * ungraded data stay as they were (the ponder record, a full dump, has none) */
        json_t *m = json_object();
        jset(&b, m, "session", json_integer(sid));
        jset(&b, m, "difficulty", json_real(diff));
        jset(&b, m, "pass_rate", json_real(pass));
        jset(&b, m, "graded", json_integer(graded));
        jset(&b, root, "metadata", m);
    }
    if (rc == PD_OK && root) {
        put_json(f, root, &b);
        root = NULL;
    }
    if (rc == PD_OK && !b.ok) {
        rc = pd_err_set(err, ferror(f) ? PD_EIO : PD_ENOMEM, "export: session %lld: %s",
                        (long long)sid, ferror(f) ? strerror(errno) : "out of memory");
    }
    json_decref(root);
    session_data_free(&d);
    pd_replay_close(&r);
    return rc;
}

enum pd_status pd_jsonl_session_write(struct pd_store *st, int64_t session_id,
                                      enum pd_jsonl_format format, FILE *out,
                                      struct pd_err *err)
{
    return write_record(st, session_id, format, out, err);
}

enum pd_status pd_jsonl_session_final(struct pd_store *st, int64_t session_id, bool keep_pruned,
                                      char **text, size_t *len, size_t *n_tokens, bool *scored,
                                      struct pd_err *err)
{
    *text = NULL;
    struct pd_replay *r = NULL;
    enum pd_status rc = pd_replay_open(st, session_id, &r, err);
    struct pd_final fin;
    if (rc == PD_OK && (rc = pd_jsonl_final(r, keep_pruned, &fin, err)) == PD_OK) {
        if (len) {
            *len = fin.has ? fin.text.len : 0;
        }
        if (n_tokens) {
            *n_tokens = fin.n_tokens;
        }
        if (scored) {
            *scored = fin.has && fin.scored;
        }
        if (fin.has) {
            *text = pd_buf_take(&fin.text);
        }
        pd_buf_deinit(&fin.text);
    }
    pd_replay_close(&r);
    return rc;
}

enum pd_status pd_jsonl_session_record(struct pd_store *st, int64_t session_id,
                                       enum pd_jsonl_format format, char **out,
                                       struct pd_err *err)
{
    *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(out, &len);
    if (!f) {
        return pd_err_set(err, PD_ENOMEM, "export: out of memory");
    }
    enum pd_status rc = write_record(st, session_id, format, f, err);
    if (fclose(f) != 0 && rc == PD_OK) {
        rc = pd_err_set(err, PD_ENOMEM, "export: out of memory");
    }
    if (rc != PD_OK) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- selection and files ---------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

enum pd_status pd_jsonl_select_ids(struct pd_store *st, const struct pd_export_params *p,
                                   int64_t **ids, size_t *n, struct pd_err *err)
{
    *ids = NULL;
    *n = 0;
    for (size_t i = 0; i < p->n_session_ids; i++) {
        enum pd_status rc = pd_store_session_exists(st, p->session_ids[i], NULL, NULL, err);
        if (rc != PD_OK) {
            return rc;
        }
    }
    sqlite3_stmt *s = pd_store_prepare(
        st,
        "SELECT s.id FROM sessions s WHERE (?1 IS NULL OR EXISTS (SELECT 1 FROM annotations a"
        " WHERE a.tag = ?1 AND a.session_id = s.id)) AND (?2 = 0 OR EXISTS (SELECT 1 FROM"
        " prunes p WHERE p.session_id = s.id)) ORDER BY s.id",
        err);
    if (!s) {
        return PD_EDB;
    }
    if (p->tag) {
        sqlite3_bind_text(s, 1, p->tag, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int(s, 2, p->pruned_only);
    int64_t *want = NULL;
    if (p->n_session_ids) {
        want = pd_malloc_array(p->n_session_ids, sizeof *want);
        if (!want) {
            sqlite3_finalize(s);
            return pd_err_set(err, PD_ENOMEM, "export: out of memory");
        }
        memcpy(want, p->session_ids, p->n_session_ids * sizeof *want);
        qsort(want, p->n_session_ids, sizeof *want, cmp_i64);
    }
    int64_t *arr = NULL;
    size_t len = 0, cap = 0;
    enum pd_status rc = PD_OK;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(s, 0);
        if (want && !bsearch(&id, want, p->n_session_ids, sizeof *want, cmp_i64)) {
            continue;
        }
        int64_t *na = pd_grow_array(arr, &cap, len + 1, sizeof *na);
        if (!na) {
            rc = pd_err_set(err, PD_ENOMEM, "export: out of memory");
            break;
        }
        arr = na;
        arr[len++] = id;
    }
    if (rc == PD_OK && r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "export selection");
    }
    sqlite3_finalize(s);
    free(want);
    if (rc != PD_OK) {
        free(arr);
        return rc;
    }
    *ids = arr;
    *n = len;
    return PD_OK;
}

enum pd_status pd_jsonl_difficulty_ok(struct pd_store *st, const struct pd_export_params *p,
                                      int64_t sid, bool *keep, struct pd_err *err)
{
    *keep = true;
    if (!p->difficulty_filter) {
        return PD_OK;
    }
    double d = NAN;
    enum pd_status rc = pd_store_difficulty(st, sid, &d, NULL, NULL, err);
    *keep = rc == PD_OK && isfinite(d) && d >= p->difficulty_min && d <= p->difficulty_max;
    return rc;
}

enum pd_status pd_jsonl_export(struct pd_store *st, FILE *out,
                               const struct pd_export_params *p, struct pd_export_result *res,
                               struct pd_err *err)
{
    struct pd_export_result r;
    memset(&r, 0, sizeof r);
    if ((unsigned)p->format >= PD_JSONL_FORMAT_COUNT) {
        return pd_err_set(err, PD_EINVAL, "export: format %d out of range", (int)p->format);
    }
    int64_t *ids;
    size_t n;
    enum pd_status rc = pd_jsonl_select_ids(st, p, &ids, &n, err);
    /* one read transaction: a consistent snapshot, and much faster than one per query */
    bool own_txn = rc == PD_OK && !st->in_txn && st->op_depth == 0 &&
                   sqlite3_get_autocommit(st->db);
    if (own_txn) {
        rc = pd_store_exec(st, "BEGIN", err);
    }
    for (size_t i = 0; rc == PD_OK && i < n; i++) {
        struct pd_err e2;
        bool keep = true;
        enum pd_status brc = pd_jsonl_difficulty_ok(st, p, ids[i], &keep, &e2);
        if (brc == PD_OK && keep) {
            brc = write_record(st, ids[i], p->format, out, &e2);
        }
        if (brc == PD_OK && !keep) {
            r.n_filtered++; /* nothing was written: no line end */
        } else if (brc == PD_EUNSUPPORTED) {
            if (r.n_skipped++ == 0) {
                snprintf(r.skip_reason, sizeof r.skip_reason, "%s", e2.msg);
            }
        } else if (brc != PD_OK) {
            rc = brc;
            if (err) {
                *err = e2;
            }
        } else if (fputc('\n', out) == EOF) {
            rc = pd_err_set(err, PD_EIO, "export: write failed: %s", strerror(errno));
        } else {
            r.n_written++;
        }
        if (p->on_progress) {
            p->on_progress(p->ud, i + 1, n);
        }
    }
    if (own_txn) {
        sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
    }
    if (rc == PD_OK && fflush(out) != 0) {
        rc = pd_err_set(err, PD_EIO, "export: write failed: %s", strerror(errno));
    }
    free(ids);
    if (res) {
        *res = r;
    }
    return rc;
}

/* Adds a row to the exports table (not for a database opened read-only: an export only
 * reads, the record is a courtesy). */
static enum pd_status record_export(struct pd_store *st, const char *path,
                                    const struct pd_export_params *p, uint64_t n,
                                    struct pd_err *err)
{
    if (pd_store_read_only(st)) {
        return PD_OK;
    }
    char filter[256];
    int len = snprintf(filter, sizeof filter, "%s%s%s%s", p->tag ? "tag=" : "",
                       p->tag ? p->tag : "", p->pruned_only ? (p->tag ? " pruned" : "pruned") : "",
                       p->n_session_ids ? " sessions=" : "");
    for (size_t i = 0; i < p->n_session_ids && len > 0 && (size_t)len < sizeof filter; i++) {
        len += snprintf(filter + len, sizeof filter - (size_t)len, "%s%lld", i ? "," : "",
                        (long long)p->session_ids[i]);
    }
    sqlite3_stmt *s = pd_store_prepare(st,
                                       "INSERT INTO exports (created_ms, format, path, filter,"
                                       " n_sessions) VALUES (?1, ?2, ?3, ?4, ?5)",
                                       err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, pd_store_now_ms());
    sqlite3_bind_text(s, 2, format_names[p->format], -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, path, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, filter, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, (int64_t)n);
    enum pd_status rc = PD_OK;
    if (sqlite3_step(s) != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "export record");
    }
    sqlite3_finalize(s);
    return rc;
}

enum pd_status pd_jsonl_export_file(struct pd_store *st, const char *path,
                                    const struct pd_export_params *p,
                                    struct pd_export_result *res, struct pd_err *err)
{
    struct pd_afile af;
    enum pd_status rc = pd_afile_open(&af, path, err);
    if (rc != PD_OK) {
        return rc;
    }
    struct pd_export_result r;
    memset(&r, 0, sizeof r);
    rc = pd_jsonl_export(st, af.f, p, &r, err);
    if (rc == PD_OK) {
        rc = pd_afile_commit(&af, err);
    } else {
        pd_afile_abort(&af);
    }
    if (rc == PD_OK) {
        rc = record_export(st, path, p, r.n_written, err);
    }
    if (res) {
        *res = r;
    }
    return rc;
}
