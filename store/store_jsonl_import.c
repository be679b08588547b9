/* store_jsonl_import.c - JSONL trace import: line reading with a length bound, shape
 * detection, thinking split, and storage as unscored segment rows.
 *
 * DESIGN
 * - Lines are read through a fixed chunk buffer; a line longer than line_max is skipped
 *   to its newline without being held in memory, and reported.
 * - Each record is parsed into `struct parsed` whose strings borrow from the jansson tree,
 *   then stored inside one savepoint (session, messages, rows): a record is all or
 *   nothing. Savepoints sit inside a transaction committed every batch_records records
 *   (non-strict) or once at the end (strict, so a bad line discards the whole file).
 * - Thinking split (canonical form "<think>\n{T}\n</think>\n\n{A}"): the first closing
 *   marker ends the thinking; an opening marker before it must be preceded only by
 *   whitespace (otherwise nothing is split); without an opening marker the thinking starts
 *   at the beginning (chat templates that put the opener in the prompt). One "\n" is
 *   removed after the opener and before the closer; after the closer "\n\n" is removed if
 *   present, otherwise all leading whitespace. So canonical text round-trips exactly and
 *   other spacings are normalised. */
#include "store_jsonl.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mem.h"
#include "utf8.h"
#include "store_internal.h"
#include "store_labels.h"

#define WHERE_MAX 600
#define PATH_SHOWN_MAX 160 /* bytes of a path kept in messages (its end) */

struct slice {
    const char *p;
    size_t n;
};

struct parsed {
    struct pd_message *ctx;     /* owned array; contents borrowed from the JSON tree */
    size_t n_ctx, cap_ctx;
    bool has_final;             /* the record ends with an assistant turn */
    bool has_think;
    struct slice think;
    struct slice answer;
    const char *used[8];        /* top-level keys consumed (the rest becomes meta) */
    size_t n_used;
};

static void parsed_free(struct parsed *p)
{
    free(p->ctx);
    memset(p, 0, sizeof *p);
}

static enum pd_status add_ctx(struct parsed *p, enum pd_store_msg_role role, const char *content,
                              const char *where, struct pd_err *err)
{
    struct pd_message *na = pd_grow_array(p->ctx, &p->cap_ctx, p->n_ctx + 1, sizeof *na);
    if (!na) {
        return pd_err_set(err, PD_ENOMEM, "%s: out of memory", where);
    }
    p->ctx = na;
    p->ctx[p->n_ctx].role = role;
    p->ctx[p->n_ctx].content = (char *)content; /* borrowed; never freed through ctx */
    p->n_ctx++;
    return PD_OK;
}

/* ---- thinking split --------------------------------------------------------------- */

struct think_markers {
    const char *open;
    const char *close;
    const char *answer_open;    /* optional wrapper around the answer, removed */
    const char *answer_close;
};

static const struct think_markers markers[] = {
    {"<think>", "</think>", NULL, NULL},
    {"<|begin_of_thought|>", "<|end_of_thought|>", "<|begin_of_solution|>",
     "<|end_of_solution|>"},
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Finds needle in s[0..n) (memmem without the GNU dependency in the prototype). */
static const char *find(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    if (k > n) {
        return NULL;
    }
    for (size_t i = 0; i + k <= n; i++) {
        if (s[i] == needle[0] && memcmp(s + i, needle, k) == 0) {
            return s + i;
        }
    }
    return NULL;
}

static bool starts_with(struct slice s, const char *pre)
{
    size_t k = strlen(pre);
    return s.n >= k && memcmp(s.p, pre, k) == 0;
}

static bool ends_with(struct slice s, const char *suf)
{
    size_t k = strlen(suf);
    return s.n >= k && memcmp(s.p + s.n - k, suf, k) == 0;
}

static struct slice trim(struct slice s)
{
    while (s.n > 0 && is_space(s.p[0])) {
        s.p++;
        s.n--;
    }
    while (s.n > 0 && is_space(s.p[s.n - 1])) {
        s.n--;
    }
    return s;
}

/* Splits content c into thinking and answer (see DESIGN). Returns false (answer = c)
 * when c has no recognised thinking block. */
static bool split_think(struct slice c, struct slice *think, struct slice *answer)
{
    for (size_t m = 0; m < sizeof markers / sizeof markers[0]; m++) {
        const struct think_markers *mk = &markers[m];
        const char *close = find(c.p, c.n, mk->close);
        if (!close) {
            continue;
        }
        const char *open = find(c.p, (size_t)(close - c.p), mk->open);
        struct slice t = {c.p, (size_t)(close - c.p)};
        if (open) {
            for (const char *q = c.p; q < open; q++) {
                if (!is_space(*q)) {
                    *answer = c;
                    return false;
                }
            }
            t.p = open + strlen(mk->open);
            t.n = (size_t)(close - t.p);
        }
        if (t.n > 0 && t.p[0] == '\n') {
            t.p++;
            t.n--;
        }
        if (t.n > 0 && t.p[t.n - 1] == '\n') {
            t.n--;
        }
        const char *rest = close + strlen(mk->close);
        struct slice a = {rest, (size_t)(c.p + c.n - rest)};
        if (starts_with(a, "\n\n")) {
            a.p += 2;
            a.n -= 2;
        } else {
            while (a.n > 0 && is_space(a.p[0])) {
                a.p++;
                a.n--;
            }
        }
        if (mk->answer_open) {
            struct slice w = trim(a);
            if (starts_with(w, mk->answer_open) && ends_with(w, mk->answer_close)) {
                w.p += strlen(mk->answer_open);
                w.n -= strlen(mk->answer_open) + strlen(mk->answer_close);
                a = trim(w);
            }
        }
        *think = t;
        *answer = a;
        return true;
    }
    *answer = c;
    return false;
}

/* ---- record shapes ---------------------------------------------------------------- */

struct role_name {
    const char *name;
    enum pd_store_msg_role role;
};

static const struct role_name trl_roles[] = {
    {"system", PD_STORE_MSG_SYSTEM}, {"user", PD_STORE_MSG_USER}, {"assistant", PD_STORE_MSG_ASSISTANT},
    {"developer", PD_STORE_MSG_SYSTEM},
};

static const struct role_name sharegpt_roles[] = {
    {"system", PD_STORE_MSG_SYSTEM}, {"human", PD_STORE_MSG_USER},         {"user", PD_STORE_MSG_USER},
    {"gpt", PD_STORE_MSG_ASSISTANT}, {"assistant", PD_STORE_MSG_ASSISTANT}, {"chatgpt", PD_STORE_MSG_ASSISTANT},
};

static bool role_lookup(const struct role_name *t, size_t n, const char *s,
                        enum pd_store_msg_role *out)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(t[i].name, s) == 0) {
            *out = t[i].role;
            return true;
        }
    }
    return false;
}

/* A string member; PD_EFORMAT naming field when present with another type. Missing or
 * JSON null gives *out = NULL. */
static enum pd_status get_str(json_t *obj, const char *key, const char **out, size_t *len,
                              const char *where, const char *field, struct pd_err *err)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (len) {
        *len = 0;
    }
    if (!v || json_is_null(v)) {
        return PD_OK;
    }
    if (!json_is_string(v)) {
        return pd_err_set(err, PD_EFORMAT, "%s: %s: expected a string", where, field);
    }
    *out = json_string_value(v);
    if (len) {
        *len = json_string_length(v);
    }
    return PD_OK;
}

static void use_key(struct parsed *p, const char *key)
{
    if (p->n_used < sizeof p->used / sizeof p->used[0]) {
        p->used[p->n_used++] = key;
    }
}

/* Sets the final turn from assistant content (and optional separate reasoning). */
static void set_final(struct parsed *p, const char *content, size_t n, const char *reasoning,
                      size_t rn)
{
    struct slice c = {content, n};
    p->has_final = true;
    if (reasoning) {
        p->has_think = true;
        p->think = (struct slice){reasoning, rn};
        p->answer = c;
    } else {
        p->has_think = split_think(c, &p->think, &p->answer);
    }
}

/* TRL "messages" or ShareGPT "conversations". */
static enum pd_status parse_turns(json_t *arr, const char *key, bool sharegpt, struct parsed *p,
                                  const char *where, struct pd_err *err)
{
    if (!json_is_array(arr)) {
        return pd_err_set(err, PD_EFORMAT, "%s: %s: expected an array", where, key);
    }
    size_t n = json_array_size(arr);
    if (n == 0) {
        return pd_err_set(err, PD_EFORMAT, "%s: %s: empty conversation", where, key);
    }
    const char *role_key = sharegpt ? "from" : "role";
    const char *text_key = sharegpt ? "value" : "content";
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(arr, i);
        char field[64];
        if (!json_is_object(m)) {
            return pd_err_set(err, PD_EFORMAT, "%s: %s[%zu]: expected an object", where, key, i);
        }
        /* some ShareGPT files use role/content inside "conversations" */
        const char *rk = role_key, *tk = text_key;
        if (sharegpt && !json_object_get(m, "from") && json_object_get(m, "role")) {
            rk = "role";
            tk = "content";
        }
        const char *role_s, *content, *reasoning = NULL;
        size_t content_n, reasoning_n = 0;
        snprintf(field, sizeof field, "%s[%zu].%s", key, i, rk);
        enum pd_status rc = get_str(m, rk, &role_s, NULL, where, field, err);
        if (rc == PD_OK && !role_s) {
            rc = pd_err_set(err, PD_EFORMAT, "%s: %s: missing", where, field);
        }
        if (rc != PD_OK) {
            return rc;
        }
        enum pd_store_msg_role role;
        bool known = sharegpt ? role_lookup(sharegpt_roles,
                                            sizeof sharegpt_roles / sizeof sharegpt_roles[0],
                                            role_s, &role)
                              : role_lookup(trl_roles, sizeof trl_roles / sizeof trl_roles[0],
                                            role_s, &role);
        if (!known) {
            return pd_err_set(err, PD_EFORMAT, "%s: %s: unsupported role '%.40s'", where, field,
                              role_s);
        }
        snprintf(field, sizeof field, "%s[%zu].%s", key, i, tk);
        rc = get_str(m, tk, &content, &content_n, where, field, err);
        if (rc == PD_OK && !content) {
            rc = pd_err_set(err, PD_EFORMAT, "%s: %s: missing (a string is required)", where,
                            field);
        }
        if (rc == PD_OK) {
            snprintf(field, sizeof field, "%s[%zu].reasoning_content", key, i);
            rc = get_str(m, "reasoning_content", &reasoning, &reasoning_n, where, field, err);
        }
        if (rc != PD_OK) {
            return rc;
        }
        if (i + 1 == n && role == PD_STORE_MSG_ASSISTANT) {
            set_final(p, content, content_n, reasoning, reasoning_n);
        } else {
            rc = add_ctx(p, role, content, where, err);
            if (rc != PD_OK) {
                return rc;
            }
        }
    }
    use_key(p, key);
    return PD_OK;
}

static const char *const prompt_keys[] = {"problem", "question", "prompt"};
static const char *const completion_keys[] = {"generation", "response", "completion",
                                              "solution", "answer"};

/* problem/question/prompt + generation/response/completion/solution/answer. Returns
 * PD_EUNSUPPORTED (no message) when no prompt key is present. */
static enum pd_status parse_prompt_style(json_t *root, struct parsed *p, const char *where,
                                         struct pd_err *err)
{
    const char *pk = NULL;
    for (size_t i = 0; i < sizeof prompt_keys / sizeof prompt_keys[0] && !pk; i++) {
        if (json_object_get(root, prompt_keys[i])) {
            pk = prompt_keys[i];
        }
    }
    if (!pk) {
        return PD_EUNSUPPORTED;
    }
    const char *system, *prompt, *completion = NULL, *reasoning;
    size_t completion_n = 0, reasoning_n;
    enum pd_status rc = get_str(root, "system", &system, NULL, where, "system", err);
    if (rc == PD_OK) {
        rc = get_str(root, pk, &prompt, NULL, where, pk, err);
    }
    if (rc == PD_OK && !prompt) {
        rc = pd_err_set(err, PD_EFORMAT, "%s: %s: expected a string", where, pk);
    }
    if (rc == PD_OK) {
        rc = get_str(root, "reasoning_content", &reasoning, &reasoning_n, where,
                     "reasoning_content", err);
    }
    for (size_t i = 0; rc == PD_OK && !completion &&
                       i < sizeof completion_keys / sizeof completion_keys[0];
         i++) {
        json_t *v = json_object_get(root, completion_keys[i]);
        /* a number under answer or solution is a reference answer, never a completion */
        bool ref_number = json_is_number(v) && (strcmp(completion_keys[i], "answer") == 0 ||
                                                strcmp(completion_keys[i], "solution") == 0);
        if (v && !json_is_null(v) && !ref_number) {
            rc = get_str(root, completion_keys[i], &completion, &completion_n, where,
                         completion_keys[i], err);
            use_key(p, completion_keys[i]);
        }
    }
    if (rc != PD_OK) {
        return rc;
    }
    if (system) {
        use_key(p, "system");
        rc = add_ctx(p, PD_STORE_MSG_SYSTEM, system, where, err);
    }
    use_key(p, pk);
    if (rc == PD_OK) {
        rc = add_ctx(p, PD_STORE_MSG_USER, prompt, where, err);
    }
    if (rc == PD_OK && completion) {
        if (reasoning) {
            use_key(p, "reasoning_content");
        }
        set_final(p, completion, completion_n, reasoning, reasoning_n);
    } else if (rc == PD_OK && reasoning) {
        rc = pd_err_set(err, PD_EFORMAT, "%s: reasoning_content without a completion field",
                        where);
    }
    return rc;
}

static enum pd_status parse_record(json_t *root, struct parsed *p, const char *where,
                                   struct pd_err *err)
{
    if (!json_is_object(root)) {
        return pd_err_set(err, PD_EFORMAT, "%s: expected a JSON object", where);
    }
    json_t *v;
    if ((v = json_object_get(root, "messages"))) {
        return parse_turns(v, "messages", false, p, where, err);
    }
    if ((v = json_object_get(root, "conversations"))) {
        const char *system;
        enum pd_status rc = get_str(root, "system", &system, NULL, where, "system", err);
        if (rc == PD_OK && system) {
            use_key(p, "system");
            rc = add_ctx(p, PD_STORE_MSG_SYSTEM, system, where, err);
        }
        return rc == PD_OK ? parse_turns(v, "conversations", true, p, where, err) : rc;
    }
    enum pd_status rc = parse_prompt_style(root, p, where, err);
    if (rc == PD_EUNSUPPORTED) {
        return pd_err_set(err, PD_EFORMAT,
                          "%s: no trace fields (expected messages, conversations, or "
                          "problem/question/prompt with generation/response/completion/"
                          "solution/answer)",
                          where);
    }
    return rc;
}

/* The top-level members not consumed, as compact JSON text (owned), or NULL if none. */
static enum pd_status meta_of(json_t *root, const struct parsed *p, char **out,
                              const char *where, struct pd_err *err)
{
    *out = NULL;
    json_t *meta = json_object();
    if (!meta) {
        return pd_err_set(err, PD_ENOMEM, "%s: out of memory", where);
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        bool used = false;
        for (size_t i = 0; i < p->n_used && !used; i++) {
            used = strcmp(p->used[i], key) == 0;
        }
        if (!used && json_object_set(meta, key, val) != 0) {
            json_decref(meta);
            return pd_err_set(err, PD_ENOMEM, "%s: out of memory", where);
        }
    }
    if (json_object_size(meta) > 0) {
        *out = json_dumps(meta, JSON_COMPACT);
        if (!*out) {
            json_decref(meta);
            return pd_err_set(err, PD_ENOMEM, "%s: out of memory", where);
        }
    }
    json_decref(meta);
    return PD_OK;
}

/* The reference answer: the first of answer, solution, gold that the record did not use
 * as its completion and that is a non-empty string or a number (kept as its JSON text).
 * The field also stays in meta. *out owned, NULL when none. */
static enum pd_status reference_of(json_t *root, const struct parsed *p, char **out,
                                   const char *where, struct pd_err *err)
{
    static const char *const keys[] = {"answer", "solution", "gold"};
    *out = NULL;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        bool used = false;
        for (size_t i = 0; i < p->n_used && !used; i++) {
            used = strcmp(p->used[i], keys[k]) == 0;
        }
        json_t *v = json_object_get(root, keys[k]);
        if (used || !v || !(json_is_string(v) || json_is_number(v)) ||
            (json_is_string(v) && json_string_length(v) == 0)) {
            continue;
        }
        if (json_is_string(v)) {
            if (json_string_length(v) > PD_REFERENCE_MAX ||
                memchr(json_string_value(v), 0, json_string_length(v))) {
                return pd_err_set(err, PD_EFORMAT,
                                  "%s: %s: a reference answer is at most %d bytes without NUL",
                                  where, keys[k], PD_REFERENCE_MAX);
            }
            *out = pd_strdup(json_string_value(v));
        } else {
            *out = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        }
        return *out ? PD_OK : pd_err_set(err, PD_ENOMEM, "%s: out of memory", where);
    }
    return PD_OK;
}

/* ---- storage ---------------------------------------------------------------------- */

/* Rows of an imported trace go to the database in chunks of this many, so a record of
 * many tiny paragraphs costs memory in proportion to its own size, not to its rows. */
#define ROW_CHUNK 1024

/* Where a trace's rows are gathered and flushed, in the session's transaction. */
struct row_sink {
    struct pd_store *st;
    int64_t sid;
    struct pd_token_rec rows[ROW_CHUNK];
    size_t n;            /* rows waiting */
    int64_t pos;         /* position of the next row */
    size_t n_paragraphs; /* rows made from the completion so far */
    const char *where;
    struct pd_err *err;
};

static enum pd_status sink_flush(struct row_sink *k)
{
    enum pd_status rc = k->n ? pd_store_tokens_insert(k->st, k->sid, k->rows, k->n, k->err)
                             : PD_OK;
    k->n = 0;
    return rc;
}

/* One row of text s[0..n) (borrowed until the next flush). */
static enum pd_status sink_row(struct row_sink *k, const char *s, size_t n, enum pd_role role)
{
    if (n > PD_TEXT_ROW_MAX) {
        return pd_err_set(k->err, PD_EINVAL, "%s: a paragraph of %zu bytes (at position %lld);"
                          " a paragraph may have at most %u bytes", k->where, n,
                          (long long)k->pos, PD_TEXT_ROW_MAX);
    }
    if (role != PD_ROLE_PROMPT && ++k->n_paragraphs > PD_IMPORT_PARAGRAPHS_MAX) {
        return pd_err_set(k->err, PD_EINVAL, "%s: more than %u paragraphs in one trace",
                          k->where, PD_IMPORT_PARAGRAPHS_MAX);
    }
    struct pd_token_rec *r = &k->rows[k->n++];
    memset(r, 0, sizeof *r);
    r->pos = k->pos++;
    r->id = -1;
    r->role = role;
    r->flags = PD_TOKF_NO_METRICS;
    r->logprob = __builtin_nanf("");
    r->entropy = __builtin_nanf("");
    r->text = (char *)(n ? s : ""); /* borrowed; never freed */
    r->text_len = n;
    return k->n == ROW_CHUNK ? sink_flush(k) : PD_OK;
}

/* The paragraphs of s as rows of the given role (one empty row when s is empty): cut
 * after each run of two or more newlines. */
static enum pd_status add_segments(struct row_sink *k, struct slice s, enum pd_role role)
{
    size_t i = 0;
    enum pd_status rc = PD_OK;
    do {
        size_t j = i;
        while (j < s.n) {
            if (s.p[j] == '\n' && j + 1 < s.n && s.p[j + 1] == '\n') {
                while (j < s.n && s.p[j] == '\n') {
                    j++;
                }
                break;
            }
            j++;
        }
        rc = sink_row(k, s.p + i, j - i, role);
        i = j;
    } while (rc == PD_OK && i < s.n);
    return rc;
}

static enum pd_status store_parsed(struct pd_store *st, const struct parsed *p,
                                   const char *meta, const char *reference, const char *where,
                                   int64_t *id, struct pd_err *err)
{
    char source[WHERE_MAX + 16];
    snprintf(source, sizeof source, "import:%s", where);
    struct row_sink *k = calloc(1, sizeof *k);
    if (!k) {
        return pd_err_set(err, PD_ENOMEM, "%s: out of memory", where);
    }
    k->st = st;
    k->where = where;
    k->err = err;
    enum pd_status rc = pd_store_op_begin(st, err);
    if (rc == PD_OK) {
        struct pd_session_new sn = {
            .messages = p->ctx, .n_messages = p->n_ctx, .source = source, .meta = meta,
            .reference = reference};
        rc = pd_store_session_create(st, &sn, &k->sid, err);
        for (size_t i = 0; rc == PD_OK && i < p->n_ctx; i++) {
            rc = sink_row(k, p->ctx[i].content, strlen(p->ctx[i].content), PD_ROLE_PROMPT);
        }
        if (rc == PD_OK && p->has_final && p->has_think) {
            rc = add_segments(k, p->think, PD_ROLE_THINK);
        }
        if (rc == PD_OK && p->has_final) {
            rc = add_segments(k, p->answer, PD_ROLE_ANSWER);
        }
        if (rc == PD_OK) {
            rc = sink_flush(k);
        }
        if (rc == PD_OK && p->has_final) {
            rc = pd_store_finish_nolock(st, k->sid, err); /* the trace is complete */
        }
        rc = pd_store_op_end(st, rc, err);
        if (rc == PD_OK && id) {
            *id = k->sid;
        }
    }
    free(k);
    return rc;
}

/* Nesting depth of v (a scalar is 0), looking no deeper than limit + 1 levels (so the
 * recursion is bounded by the limit, whatever the record). */
static int json_depth(json_t *v, int limit)
{
    if (!json_is_object(v) && !json_is_array(v)) {
        return 0;
    }
    if (limit < 0) {
        return 1;
    }
    int most = 0;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v) && most <= limit; i++) {
            int d = json_depth(json_array_get(v, i), limit - 1);
            most = d > most ? d : most;
        }
    } else {
        const char *k;
        json_t *c;
        json_object_foreach(v, k, c) {
            int d = json_depth(c, limit - 1);
            most = d > most ? d : most;
            if (most > limit) {
                break;
            }
        }
    }
    return most + 1;
}

enum pd_status pd_jsonl_import_record(struct pd_store *st, const char *line, size_t len,
                                      const char *where, int64_t *id, struct pd_err *err)
{
    /* checked first so the message can say so (the JSON parser would name a byte) */
    if (!pd_utf8_valid(line, len)) {
        size_t bad = 0;
        while (bad < len) {
            uint32_t cp;
            size_t k = pd_utf8_decode(line + bad, len - bad, &cp);
            if (k == 0) {
                break;
            }
            bad += k;
        }
        return pd_err_set(err, PD_EFORMAT, "%s: invalid UTF-8 at byte %zu", where, bad + 1);
    }
    json_error_t je;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (strstr(je.text, "JSON_ALLOW_NUL")) {
            return pd_err_set(err, PD_EFORMAT, "%s: NUL character (\\u0000) in a string at "
                              "column %d", where, je.column);
        }
        return pd_err_set(err, PD_EFORMAT, "%s: invalid JSON at column %d: %s", where,
                          je.column, je.text);
    }
    /* Deeper records would come back deeper still inside ponder's own export (its meta
     * field), past what the reader accepts: refuse them here, once. */
    if (json_depth(root, PD_JSONL_DEPTH_MAX) > PD_JSONL_DEPTH_MAX) {
        json_decref(root);
        return pd_err_set(err, PD_EFORMAT, "%s: nested deeper than %d levels", where,
                          PD_JSONL_DEPTH_MAX);
    }
    if (json_is_object(root) && json_object_get(root, "ponder")) {
        enum pd_status rc = pd_jsonl_import_ponder(st, root, where, id, err);
        json_decref(root);
        return rc;
    }
    struct parsed p;
    memset(&p, 0, sizeof p);
    char *meta = NULL, *reference = NULL;
    enum pd_status rc = parse_record(root, &p, where, err);
    if (rc == PD_OK) {
        rc = meta_of(root, &p, &meta, where, err);
    }
    if (rc == PD_OK) {
        rc = reference_of(root, &p, &reference, where, err);
    }
    if (rc == PD_OK) {
        rc = store_parsed(st, &p, meta, reference, where, id, err);
    }
    free(reference);
    free(meta);
    parsed_free(&p);
    json_decref(root);
    return rc;
}

/* ---- files ------------------------------------------------------------------------ */

struct line_reader {
    FILE *f;
    char chunk[1 << 16];
    size_t c_pos, c_len;
    bool eof;
    uint64_t bytes;         /* read so far */
    struct pd_buf line;
};

/* Reads the next line (without '\n') into lr->line. Returns 1 with a line, 0 at the end,
 * -1 on a read error. A line over line_max sets *too_long and is consumed, not kept. */
static int next_line(struct line_reader *lr, size_t line_max, bool *too_long)
{
    lr->line.len = 0;
    if (lr->line.data) {
        lr->line.data[0] = '\0';
    }
    *too_long = false;
    bool any = false;
    for (;;) {
        if (lr->c_pos == lr->c_len) {
            if (lr->eof) {
                return any ? 1 : 0;
            }
            lr->c_len = fread(lr->chunk, 1, sizeof lr->chunk, lr->f);
            lr->c_pos = 0;
            if (lr->c_len == 0) {
                if (ferror(lr->f)) {
                    return -1;
                }
                lr->eof = true;
            }
            lr->bytes += lr->c_len;
            continue;
        }
        any = true;
        const char *start = lr->chunk + lr->c_pos;
        size_t avail = lr->c_len - lr->c_pos;
        const char *nl = memchr(start, '\n', avail);
        size_t take = nl ? (size_t)(nl - start) : avail;
        if (!*too_long) {
            if (take > line_max - lr->line.len) {
                *too_long = true;
            } else if (!pd_buf_append(&lr->line, start, take)) {
                return -2;
            }
        }
        lr->c_pos += take + (nl ? 1 : 0);
        if (nl) {
            return 1;
        }
    }
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_space(s[i])) {
            return false;
        }
    }
    return true;
}

enum pd_status pd_jsonl_import_file(struct pd_store *st, const char *path,
                                    const struct pd_import_params *params,
                                    struct pd_import_result *res, struct pd_err *err)
{
    struct pd_import_params p = params ? *params : (struct pd_import_params){0};
    struct pd_import_result r = {0};
    size_t line_max = p.line_max ? p.line_max : PD_JSONL_LINE_MAX_DEFAULT;
    size_t batch = p.batch_records ? p.batch_records : 256;
    if (res) {
        *res = r;
    }
    if (st->in_txn) {
        return pd_err_set(err, PD_EINVAL, "%s: import inside an open transaction", path);
    }
    struct line_reader *lr = calloc(1, sizeof *lr);
    if (!lr) {
        return pd_err_set(err, PD_ENOMEM, "%s: out of memory", path);
    }
    pd_buf_init(&lr->line);
    lr->f = fopen(path, "rb");
    if (!lr->f) {
        enum pd_status rc = pd_err_set(err, PD_EIO, "%s: cannot open: %s", path, strerror(errno));
        free(lr);
        return rc;
    }
    struct stat sb;
    uint64_t total = (fstat(fileno(lr->f), &sb) == 0 && S_ISREG(sb.st_mode)) ? (uint64_t)sb.st_size
                                                                            : 0;
    enum pd_status rc = pd_store_begin(st, err);
    size_t since_commit = 0;
    struct pd_import_result committed = r; /* what the last commit made durable */
    /* Messages name the file and line; a very long path keeps its end (the file name)
     * so the line number and the reason always fit the message. */
    char shown_path[PATH_SHOWN_MAX + 8];
    size_t plen = strlen(path);
    if (plen <= PATH_SHOWN_MAX) {
        snprintf(shown_path, sizeof shown_path, "%s", path);
    } else {
        const char *tail = path + plen - PATH_SHOWN_MAX;
        while ((*tail & 0xC0) == 0x80) {
            tail++; /* start at a whole UTF-8 character */
        }
        snprintf(shown_path, sizeof shown_path, "...%s", tail);
    }
    uint64_t last_progress = 0;
    while (rc == PD_OK) {
        bool too_long;
        int got = next_line(lr, line_max, &too_long);
        if (got == 0) {
            break;
        }
        if (got < 0) {
            rc = got == -2 ? pd_err_set(err, PD_ENOMEM, "%s: out of memory", path)
                           : pd_err_set(err, PD_EIO, "%s: read error: %s", path, strerror(errno));
            break;
        }
        r.n_lines++;
        char where[WHERE_MAX];
        snprintf(where, sizeof where, "%s:%llu", shown_path, (unsigned long long)r.n_lines);
        char *s = lr->line.data ? lr->line.data : "";
        size_t n = lr->line.len;
        if (r.n_lines == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
            s += 3; /* UTF-8 byte order mark */
            n -= 3;
        }
        if (n > 0 && s[n - 1] == '\r') {
            n--;
        }
        if (!too_long && blank(s, n)) {
            continue;
        }
        struct pd_err lerr;
        pd_err_clear(&lerr);
        int64_t id = 0;
        enum pd_status lrc =
            too_long ? pd_err_set(&lerr, PD_EFORMAT, "%s: line longer than %zu bytes", where,
                                  line_max)
                     : pd_jsonl_import_record(st, s, n, where, &id, &lerr);
        if (lrc == PD_OK) {
            r.n_imported++;
            r.first_id = r.first_id ? r.first_id : id;
            r.last_id = id;
        } else if (lrc == PD_EFORMAT || lrc == PD_EINVAL) {
            r.n_failed++;
            if (p.on_error) {
                p.on_error(p.ud, &lerr);
            }
            if (p.strict) {
                if (err) {
                    *err = lerr;
                }
                rc = PD_EFORMAT;
                break;
            }
        } else {
            if (err) {
                *err = lerr;
            }
            rc = lrc; /* database or memory failure: not the line's fault, stop */
            break;
        }
        if (!p.strict && ++since_commit >= batch) {
            since_commit = 0;
            rc = pd_store_commit(st, err);
            if (rc == PD_OK) {
                committed = r;
                rc = pd_store_begin(st, err);
            }
        }
        if (p.on_progress && lr->bytes - last_progress >= (1u << 20)) {
            last_progress = lr->bytes;
            p.on_progress(p.ud, lr->bytes, total);
        }
    }
    if (rc == PD_OK) {
        rc = pd_store_commit(st, err);
    } else {
        pd_store_rollback(st);
        /* the open batch is gone: report only what was committed (nothing when strict) */
        r.n_imported = committed.n_imported;
        r.first_id = committed.first_id;
        r.last_id = committed.last_id;
    }
    if (rc == PD_OK && p.on_progress) {
        p.on_progress(p.ud, lr->bytes, total);
    }
    fclose(lr->f);
    pd_buf_deinit(&lr->line);
    free(lr);
    if (res) {
        *res = r;
    }
    return rc;
}
