/* store_dataset.c - the dpo, step-dpo and kto writers, their session filters, the dataset
 * card, and the temporary-file-then-rename commit (store_dataset.h; formats in
 * docs/export.md).
 *
 * DESIGN
 * Records.  Each add_* call reads what the record needs (messages, the final message of
 *   one or two sessions, or the thinking text of three position ranges) through the replay
 *   reader, builds one JSON object with jansson (keys in insertion order, compact, reals
 *   with 9 significant digits - the export's settings) and writes it with a newline. A
 *   record the format cannot express is counted with its reason, never half written.
 * Card.  While writing, the writer counts records per source, token lengths in
 *   power-of-two bins, the models and prune strategies of the sessions used; the card is
 *   made from those counts and the params only, so it is as reproducible as the data.
 * Files.  Data and card are written through engine/base/afile (a temporary file beside
 *   the target, renamed over it on commit); close without commit removes it. */
#include "store_dataset.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "afile.h"
#include "mem.h"
#include "utf8.h"
#include "store_internal.h"
#include "store_jsonl.h"
#include "store_labels.h"
#include "store_replay.h"

#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))
#define HIST_BINS 22      /* 0, then [2^k, 2^(k+1)) for k = 0..19, then >= 2^20 */
#define NAMES_MAX 32      /* distinct models / strategies listed in the card */

static const char *const format_names[PD_DATASET_FORMAT_COUNT] = {"dpo", "step-dpo", "kto"};
_Static_assert(sizeof format_names / sizeof format_names[0] == PD_DATASET_FORMAT_COUNT,
               "format table");

static const char *const source_names[PD_SRC_COUNT] = {
    "marked", "pruned", "correctness", "length", "pruned-step", "reference", "verified"};
_Static_assert(sizeof source_names / sizeof source_names[0] == PD_SRC_COUNT, "source table");

/* What the card says each source is. */
static const char *const source_text[PD_SRC_COUNT] = {
    ("a trace marked as preferred over another trace of the same prompt (workbench :prefer, "
     "or the tags chosen / rejected)"),
    "a pruned trace whose verification passed (chosen) over the whole original trace",
    "a sample whose final answer matches the reference (chosen) over one that does not",
    "a shorter correct sample (chosen) over a longer correct one",
    "the step whose removal alone changed the answer (chosen) over the step that follows it",
    "a sample labelled by comparing its final answer with the reference answer",
    "a pruned trace labelled by its verification (answer kept under the pruned reasoning)",
};

const char *pd_dataset_format_name(enum pd_dataset_format f)
{
    return (unsigned)f < PD_DATASET_FORMAT_COUNT ? format_names[f] : NULL;
}

enum pd_dataset_format pd_dataset_format_parse(const char *s)
{
    for (int i = 0; s && i < PD_DATASET_FORMAT_COUNT; i++) {
        if (strcmp(s, format_names[i]) == 0) {
            return (enum pd_dataset_format)i;
        }
    }
    return PD_DATASET_FORMAT_COUNT;
}

const char *pd_dataset_source_name(enum pd_dataset_source s)
{
    return (unsigned)s < PD_SRC_COUNT ? source_names[s] : NULL;
}

/* ---- the writer ----------------------------------------------------------------------- */

struct name_count {
    char *name;              /* owned */
    uint64_t n;
};

struct pd_dataset {
    struct pd_store *st;                 /* borrowed */
    enum pd_dataset_format format;
    bool conversational;
    bool card;
    char *path;                          /* owned; NULL in out mode */
    struct pd_afile af;                  /* file mode: the data file being written */
    bool has_af;                         /* af is open (until commit or abort) */
    FILE *f;                             /* the data stream: af.f, or the caller's */
    bool committed;
    bool read_txn;                       /* a read transaction of ours is open */
    struct pd_export_params sel;         /* the session filters (ids below) */
    int64_t *ids;                        /* owned: selected session ids, ascending */
    size_t n_ids;
    char *generator, *settings, *command;/* owned copies */
    struct pd_dataset_result res;
    uint64_t bytes;                      /* bytes of data written */
    /* card counters */
    uint64_t hist[2][HIST_BINS];         /* token lengths: [0] chosen / completion, [1] rejected */
    uint64_t hist_unknown[2];
    struct name_count models[NAMES_MAX];
    size_t n_models;
    uint64_t models_more;
    struct name_count strategies[NAMES_MAX];
    size_t n_strategies;
    uint64_t strategies_more;
};

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static char *dup_or_null(const char *s, bool *ok)
{
    if (!s) {
        return NULL;
    }
    char *r = pd_strdup(s);
    *ok = *ok && r;
    return r;
}

enum pd_status pd_dataset_open(struct pd_store *st, const char *path, FILE *out,
                               const struct pd_dataset_params *p, struct pd_dataset **dp,
                               struct pd_err *err)
{
    *dp = NULL;
    if ((unsigned)p->format >= PD_DATASET_FORMAT_COUNT) {
        return pd_err_set(err, PD_EINVAL, "export: dataset format %d out of range",
                          (int)p->format);
    }
    if (p->conversational && p->format == PD_DATASET_STEP_DPO) {
        return pd_err_set(err, PD_EINVAL, "export: step-dpo records are strings only "
                                          "(Step-DPO defines no conversational variant)");
    }
    if (p->card && !path) {
        return pd_err_set(err, PD_EINVAL, "export: a dataset card needs an output file");
    }
    if (!path && !out) {
        return pd_err_set(err, PD_EINVAL, "export: no output");
    }
    if (p->difficulty_filter && !(p->difficulty_min <= p->difficulty_max)) {
        return pd_err_set(err, PD_EINVAL, "export: empty difficulty range [%g, %g]",
                          p->difficulty_min, p->difficulty_max);
    }
    struct pd_dataset *d = pd_calloc(1, sizeof *d);
    if (!d) {
        return pd_err_set(err, PD_ENOMEM, "export: out of memory");
    }
    d->st = st;
    d->format = p->format;
    d->conversational = p->conversational;
    d->card = p->card;
    d->sel = (struct pd_export_params){.tag = p->tag, .session_ids = p->session_ids,
                                       .n_session_ids = p->n_session_ids,
                                       .pruned_only = p->pruned_only,
                                       .difficulty_filter = p->difficulty_filter,
                                       .difficulty_min = p->difficulty_min,
                                       .difficulty_max = p->difficulty_max};
    bool ok = true;
    d->generator = dup_or_null(p->generator ? p->generator : "ponder", &ok);
    d->settings = dup_or_null(p->settings ? p->settings : "", &ok);
    d->command = dup_or_null(p->command, &ok);
    d->path = dup_or_null(path, &ok);
    enum pd_status rc = ok ? pd_jsonl_select_ids(st, &d->sel, &d->ids, &d->n_ids, err)
                           : pd_err_set(err, PD_ENOMEM, "export: out of memory");
    /* the filter keeps no borrowed pointers beyond open */
    d->sel.tag = NULL;
    d->sel.session_ids = NULL;
    d->sel.n_session_ids = 0;
    /* one read transaction for the whole export: a consistent snapshot, and much faster
     * than one per query; ended before the export row is written */
    if (rc == PD_OK && !st->in_txn && st->op_depth == 0 && sqlite3_get_autocommit(st->db)) {
        rc = pd_store_exec(st, "BEGIN", err);
        d->read_txn = rc == PD_OK;
    }
    if (rc == PD_OK && path) {
        rc = pd_afile_open(&d->af, path, err);
        d->has_af = rc == PD_OK;
        d->f = d->has_af ? d->af.f : NULL;
    } else if (rc == PD_OK) {
        d->f = out;
    }
    if (rc != PD_OK) {
        pd_dataset_close(&d);
        return rc;
    }
    *dp = d;
    return PD_OK;
}

void pd_dataset_close(struct pd_dataset **dp)
{
    struct pd_dataset *d = dp ? *dp : NULL;
    if (!d) {
        return;
    }
    if (d->read_txn) {
        sqlite3_exec(d->st->db, "COMMIT", NULL, NULL, NULL); /* read only: nothing to lose */
    }
    if (d->has_af) {
        pd_afile_abort(&d->af);
    }
    free(d->path);
    free(d->ids);
    free(d->generator);
    free(d->settings);
    free(d->command);
    for (size_t i = 0; i < d->n_models; i++) {
        free(d->models[i].name);
    }
    for (size_t i = 0; i < d->n_strategies; i++) {
        free(d->strategies[i].name);
    }
    free(d);
    *dp = NULL;
}

const struct pd_dataset_result *pd_dataset_result(const struct pd_dataset *d)
{
    return &d->res;
}

/* ---- small pieces ----------------------------------------------------------------------- */

static void skip(struct pd_dataset *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void skip(struct pd_dataset *d, const char *fmt, ...)
{
    if (d->res.n_skipped++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->res.skip_reason, sizeof d->res.skip_reason, fmt, ap);
        va_end(ap);
    }
}

/* *ok: the session is selected (ids and difficulty). */
static enum pd_status selected(struct pd_dataset *d, int64_t sid, bool *ok, struct pd_err *err)
{
    *ok = d->n_ids > 0 && bsearch(&sid, d->ids, d->n_ids, sizeof *d->ids, cmp_i64) != NULL;
    if (!*ok) {
        return PD_OK;
    }
    return pd_jsonl_difficulty_ok(d->st, &d->sel, sid, ok, err);
}

static void count_name(struct name_count *arr, size_t *n, uint64_t *more, const char *name)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(arr[i].name, name) == 0) {
            arr[i].n++;
            return;
        }
    }
    char *c = *n < NAMES_MAX ? pd_strdup(name) : NULL;
    if (!c) {
        (*more)++; /* beyond the list (or out of memory): counted, not named */
        return;
    }
    arr[*n].name = c;
    arr[(*n)++].n = 1;
}

static void count_tokens(struct pd_dataset *d, int which, bool known, size_t n)
{
    if (!known) {
        d->hist_unknown[which]++;
        return;
    }
    int bin = 0;
    if (n > 0) {
        bin = 1;
        while (bin < HIST_BINS - 1 && n >= ((size_t)1 << bin)) {
            bin++;
        }
    }
    d->hist[which][bin]++;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Copies s[0..n) as valid UTF-8 (a cut-off last character dropped, other bad bytes as
 * U+FFFD) into out (appended). */
static bool clean_append(struct pd_buf *out, const char *s, size_t n)
{
    n -= pd_utf8_incomplete_tail(s, n);
    size_t i = 0;
    bool ok = pd_buf_append(out, "", 0);
    while (ok && i < n) {
        size_t run = 0, k;
        uint32_t cp;
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

/* ---- one session's side of a record ------------------------------------------------------ */

struct side_text {
    struct pd_message *msgs;
    size_t n_msgs;
    struct pd_final fin;
    int64_t model_id;
    char model[200];          /* "file (arch, sha256 0123456789abcdef)" or "" */
};

static void side_text_free(struct side_text *s)
{
    pd_store_messages_free(s->msgs, s->n_msgs);
    if (s->fin.text.data) {
        pd_buf_deinit(&s->fin.text);
    }
    memset(s, 0, sizeof *s);
}

static enum pd_status load_side(struct pd_dataset *d, int64_t sid, bool pruned_out,
                                bool want_final, struct side_text *out, struct pd_err *err)
{
    memset(out, 0, sizeof *out);
    struct pd_replay *r = NULL;
    enum pd_status rc = pd_replay_open(d->st, sid, &r, err);
    if (rc != PD_OK) {
        return rc;
    }
    const struct pd_store_session_info *in = pd_replay_info(r);
    if (in->model_id && in->model_name && in->model_sha256) {
        snprintf(out->model, sizeof out->model, "%s (%s, sha256 %.16s)", in->model_name,
                 in->model_arch ? in->model_arch : "?", in->model_sha256);
        out->model_id = in->model_id;
    }
    rc = pd_store_messages_get(d->st, sid, &out->msgs, &out->n_msgs, err);
    if (rc == PD_OK && want_final) {
        rc = pd_jsonl_final(r, !pruned_out, &out->fin, err);
    }
    pd_replay_close(&r);
    if (rc != PD_OK) {
        side_text_free(out);
    }
    return rc;
}

static bool same_conversation(const struct side_text *a, const struct side_text *b)
{
    if (a->n_msgs != b->n_msgs) {
        return false;
    }
    for (size_t i = 0; i < a->n_msgs; i++) {
        if (a->msgs[i].role != b->msgs[i].role || strcmp(a->msgs[i].content, b->msgs[i].content)) {
            return false;
        }
    }
    return true;
}

/* The record's first members: "system" (standard, when present) and "prompt". Returns
 * false with *why set when the conversation cannot be expressed. */
static bool put_prompt(struct pd_dataset *d, json_t *root, const struct side_text *s, bool *ok,
                       const char **why)
{
    for (size_t i = 0; i < s->n_msgs; i++) {
        if (!pd_utf8_valid(s->msgs[i].content, strlen(s->msgs[i].content))) {
            *why = "a message is not UTF-8";
            return false;
        }
    }
    if (d->conversational) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < s->n_msgs; i++) {
            json_t *m = json_object();
            *ok = *ok && m && json_array_append_new(arr, m) == 0 &&
                  json_object_set_new(m, "role",
                                      json_string(pd_store_msg_role_name(s->msgs[i].role))) == 0 &&
                  json_object_set_new(m, "content", json_string(s->msgs[i].content)) == 0;
        }
        if (s->n_msgs == 0) {
            json_decref(arr);
            *why = "no conversation";
            return false;
        }
        *ok = *ok && arr && json_object_set_new(root, "prompt", arr) == 0;
        return true;
    }
    size_t i = 0;
    const char *system = NULL;
    if (i < s->n_msgs && s->msgs[i].role == PD_STORE_MSG_SYSTEM) {
        system = s->msgs[i++].content;
    }
    if (i + 1 != s->n_msgs || s->msgs[i].role != PD_STORE_MSG_USER) {
        *why = "the standard variant needs [system] user (use --conversational)";
        return false;
    }
    if (system) {
        *ok = *ok && json_object_set_new(root, "system", json_string(system)) == 0;
    }
    *ok = *ok && json_object_set_new(root, "prompt", json_string(s->msgs[i].content)) == 0;
    return true;
}

/* A completion as a string, or as [{"role":"assistant","content":...}]. NULL when out of
 * memory. */
static json_t *completion_json(const struct pd_dataset *d, const char *text, size_t n)
{
    json_t *s = json_stringn(text ? text : "", n);
    if (!d->conversational || !s) {
        return s;
    }
    json_t *m = json_object(), *arr = json_array();
    if (!m || !arr) {
        json_decref(s);
        json_decref(m);
        json_decref(arr);
        return NULL;
    }
    /* the _new setters take their value even when they fail */
    bool ok = json_object_set_new(m, "role", json_string("assistant")) == 0;
    ok = json_object_set_new(m, "content", s) == 0 && ok;
    ok = json_array_append_new(arr, m) == 0 && ok;
    if (!ok) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

static json_t *jtokens(const struct pd_final *f)
{
    return f->scored ? json_integer((json_int_t)f->n_tokens) : json_null();
}

/* Difficulty of the record (of session sid's conversation) as a JSON number or null. */
static enum pd_status jdifficulty(struct pd_dataset *d, int64_t sid, json_t **out,
                                  struct pd_err *err)
{
    double v = NAN;
    enum pd_status rc = pd_store_difficulty(d->st, sid, &v, NULL, NULL, err);
    *out = rc == PD_OK && isfinite(v) ? json_real(v) : json_null();
    return rc;
}

/* Counts the session's model and, for a pruned completion, its prune strategies. */
static enum pd_status note_session(struct pd_dataset *d, int64_t sid, const struct side_text *s,
                                   bool pruned_out, struct pd_err *err)
{
    if (s->model[0]) {
        count_name(d->models, &d->n_models, &d->models_more, s->model);
    }
    if (!pruned_out) {
        return PD_OK;
    }
    struct pd_prune *p = NULL;
    size_t n = 0;
    enum pd_status rc = pd_store_prunes_get(d->st, sid, &p, &n, err);
    /* one count per session: the strategy of its first prune (all share one spec when
     * `ponder prune` made them) */
    if (rc == PD_OK && n > 0) {
        count_name(d->strategies, &d->n_strategies, &d->strategies_more, p[0].strategy);
    }
    pd_store_prunes_free(p, n);
    return rc;
}

/* Writes root (consumed) as one line. */
static enum pd_status emit(struct pd_dataset *d, json_t *root, enum pd_dataset_source src,
                           struct pd_err *err)
{
    char *line = json_dumps(root, DUMP_FLAGS);
    json_decref(root);
    if (!line) {
        return pd_err_set(err, PD_ENOMEM, "export: out of memory");
    }
    size_t n = strlen(line);
    enum pd_status rc = PD_OK;
    if (fwrite(line, 1, n, d->f) != n || fputc('\n', d->f) == EOF) {
        rc = pd_err_set(err, PD_EIO, "%s: write failed: %s", d->path ? d->path : "export",
                        strerror(errno));
    } else {
        d->bytes += n + 1;
        d->res.n_written++;
        d->res.per_source[src]++;
    }
    free(line);
    return rc;
}

/* ---- dpo and kto ------------------------------------------------------------------------ */

enum pd_status pd_dataset_add_pair(struct pd_dataset *d, enum pd_dataset_source src,
                                   struct pd_dataset_side chosen,
                                   struct pd_dataset_side rejected, struct pd_err *err)
{
    if (d->format != PD_DATASET_DPO || (unsigned)src >= PD_SRC_COUNT) {
        return pd_err_set(err, PD_EINVAL, "export: a pair needs format dpo and a source");
    }
    bool sel_c = false, sel_r = false;
    enum pd_status rc = selected(d, chosen.session_id, &sel_c, err);
    if (rc == PD_OK) {
        rc = selected(d, rejected.session_id, &sel_r, err);
    }
    if (rc != PD_OK) {
        return rc;
    }
    if (!sel_c || !sel_r) {
        d->res.n_filtered++;
        return PD_OK;
    }
    struct side_text c, r;
    rc = load_side(d, chosen.session_id, chosen.pruned_out, true, &c, err);
    if (rc != PD_OK) {
        return rc;
    }
    rc = load_side(d, rejected.session_id, rejected.pruned_out, true, &r, err);
    if (rc != PD_OK) {
        side_text_free(&c);
        return rc;
    }
    const char *why = NULL;
    json_t *root = NULL;
    bool ok = true;
    if (!c.fin.has || !r.fin.has) {
        why = "a session has no completion";
    } else if (!same_conversation(&c, &r)) {
        why = "the two sessions answer different conversations";
    } else if (c.fin.text.len == r.fin.text.len &&
               memcmp(c.fin.text.data, r.fin.text.data, c.fin.text.len) == 0) {
        why = "chosen and rejected are the same text";
    } else {
        root = json_object();
        ok = root != NULL;
        if (ok && put_prompt(d, root, &c, &ok, &why)) {
            json_t *m = json_object(), *diff = NULL;
            rc = jdifficulty(d, chosen.session_id, &diff, err);
            ok = ok && m &&
                 json_object_set_new(root, "chosen",
                                     completion_json(d, c.fin.text.data, c.fin.text.len)) == 0 &&
                 json_object_set_new(root, "rejected",
                                     completion_json(d, r.fin.text.data, r.fin.text.len)) == 0 &&
                 json_object_set_new(m, "source", json_string(source_names[src])) == 0 &&
                 json_object_set_new(m, "chosen_session", json_integer(chosen.session_id)) == 0 &&
                 json_object_set_new(m, "rejected_session",
                                     json_integer(rejected.session_id)) == 0 &&
                 json_object_set_new(m, "chosen_pruned", json_boolean(chosen.pruned_out)) == 0 &&
                 json_object_set_new(m, "rejected_pruned",
                                     json_boolean(rejected.pruned_out)) == 0 &&
                 json_object_set_new(m, "chosen_tokens", jtokens(&c.fin)) == 0 &&
                 json_object_set_new(m, "rejected_tokens", jtokens(&r.fin)) == 0 &&
                 json_object_set_new(m, "difficulty", diff) == 0;
            diff = NULL;
            ok = ok && json_object_set_new(root, "metadata", m) == 0;
        }
    }
    if (rc == PD_OK && !ok) {
        rc = pd_err_set(err, PD_ENOMEM, "export: out of memory");
    }
    if (rc == PD_OK && why) {
        skip(d, "sessions %lld over %lld: %s", (long long)chosen.session_id,
             (long long)rejected.session_id, why);
    } else if (rc == PD_OK) {
        count_tokens(d, 0, c.fin.scored, c.fin.n_tokens);
        count_tokens(d, 1, r.fin.scored, r.fin.n_tokens);
        rc = note_session(d, chosen.session_id, &c, chosen.pruned_out, err);
        if (rc == PD_OK && rejected.session_id != chosen.session_id) {
            rc = note_session(d, rejected.session_id, &r, rejected.pruned_out, err);
        }
        if (rc == PD_OK) {
            rc = emit(d, root, src, err);
            root = NULL;
        }
    }
    json_decref(root);
    side_text_free(&c);
    side_text_free(&r);
    return rc;
}

enum pd_status pd_dataset_add_unpaired(struct pd_dataset *d, enum pd_dataset_source src,
                                       struct pd_dataset_side side, bool label,
                                       struct pd_err *err)
{
    if (d->format != PD_DATASET_KTO || (unsigned)src >= PD_SRC_COUNT) {
        return pd_err_set(err, PD_EINVAL, "export: an unpaired record needs format kto");
    }
    bool sel = false;
    enum pd_status rc = selected(d, side.session_id, &sel, err);
    if (rc != PD_OK || !sel) {
        d->res.n_filtered += rc == PD_OK;
        return rc;
    }
    struct side_text s;
    rc = load_side(d, side.session_id, side.pruned_out, true, &s, err);
    if (rc != PD_OK) {
        return rc;
    }
    const char *why = NULL;
    bool ok = true;
    json_t *root = NULL;
    if (!s.fin.has) {
        why = "no completion";
    } else {
        root = json_object();
        ok = root != NULL;
        if (ok && put_prompt(d, root, &s, &ok, &why)) {
            json_t *m = json_object(), *diff = NULL;
            rc = jdifficulty(d, side.session_id, &diff, err);
            ok = ok && m &&
                 json_object_set_new(root, "completion",
                                     completion_json(d, s.fin.text.data, s.fin.text.len)) == 0 &&
                 json_object_set_new(root, "label", json_boolean(label)) == 0 &&
                 json_object_set_new(m, "source", json_string(source_names[src])) == 0 &&
                 json_object_set_new(m, "session", json_integer(side.session_id)) == 0 &&
                 json_object_set_new(m, "pruned", json_boolean(side.pruned_out)) == 0 &&
                 json_object_set_new(m, "tokens", jtokens(&s.fin)) == 0 &&
                 json_object_set_new(m, "difficulty", diff) == 0;
            ok = ok && json_object_set_new(root, "metadata", m) == 0;
        }
    }
    if (rc == PD_OK && !ok) {
        rc = pd_err_set(err, PD_ENOMEM, "export: out of memory");
    }
    if (rc == PD_OK && why) {
        skip(d, "session %lld: %s", (long long)side.session_id, why);
    } else if (rc == PD_OK) {
        count_tokens(d, label ? 0 : 1, s.fin.scored, s.fin.n_tokens);
        rc = note_session(d, side.session_id, &s, side.pruned_out, err);
        if (rc == PD_OK) {
            rc = emit(d, root, src, err);
            root = NULL;
        }
    }
    json_decref(root);
    side_text_free(&s);
    return rc;
}

/* ---- step-dpo ------------------------------------------------------------------------- */

struct span_text {
    struct pd_buf text;
    size_t n_tokens;
    bool scored;
};

/* The thinking text of a span: THINK and INJECTED tokens before the session's first ANSWER
 * token, cleaned to UTF-8. *bad set when the span is outside the session. */
static enum pd_status read_span(struct pd_dataset *d, const struct pd_dataset_span *sp,
                                struct span_text *out, bool *bad, struct pd_err *err)
{
    memset(out, 0, sizeof *out);
    pd_buf_init(&out->text);
    out->scored = true;
    *bad = false;
    struct pd_replay *r = NULL;
    enum pd_status rc = pd_replay_open(d->st, sp->session_id, &r, err);
    if (rc != PD_OK) {
        return rc;
    }
    if (sp->pos_begin < 0 || sp->pos_end < sp->pos_begin || sp->pos_end > pd_replay_length(r)) {
        *bad = true;
        pd_replay_close(&r);
        return PD_OK;
    }
    enum { CH = 256 };
    struct pd_token_rec *tok = pd_calloc(CH, sizeof *tok);
    struct pd_buf raw;
    pd_buf_init(&raw);
    bool answered = false;
    rc = tok ? pd_replay_seek(r, 0, err) : pd_err_set(err, PD_ENOMEM, "export: out of memory");
    int64_t pos = 0;
    while (rc == PD_OK && pos < sp->pos_end) {
        size_t got = 0;
        rc = pd_replay_read(r, tok, CH, &got, err);
        for (size_t i = 0; i < got; i++) {
            const struct pd_token_rec *t = &tok[i];
            answered = answered || t->role == PD_ROLE_ANSWER;
            bool thinking = !answered && (t->role == PD_ROLE_THINK || t->role == PD_ROLE_INJECTED);
            if (rc == PD_OK && thinking && t->pos >= sp->pos_begin && t->pos < sp->pos_end) {
                out->n_tokens++;
                out->scored = out->scored && t->id >= 0;
                if (!pd_buf_append(&raw, t->text, t->text_len)) {
                    rc = pd_err_set(err, PD_ENOMEM, "export: out of memory");
                }
            }
            pos = t->pos + 1;
            pd_token_rec_free(&tok[i]);
        }
        if (got == 0) {
            break;
        }
    }
    free(tok);
    pd_replay_close(&r);
    if (rc == PD_OK && !clean_append(&out->text, raw.data ? raw.data : "", raw.len)) {
        rc = pd_err_set(err, PD_ENOMEM, "export: out of memory");
    }
    pd_buf_deinit(&raw);
    if (rc != PD_OK) {
        pd_buf_deinit(&out->text);
    }
    return rc;
}

/* A leading "<think>" (and one "\n") of the prefix and a trailing "</think>" of a step are
 * the family's markers, not reasoning (the export's final-message rule). */
static void strip_open_marker(struct pd_buf *b)
{
    if (b->len >= 7 && memcmp(b->data, "<think>", 7) == 0) {
        size_t k = 7 + (b->len > 7 && b->data[7] == '\n');
        memmove(b->data, b->data + k, b->len - k + 1);
        b->len -= k;
    }
}

static void trim_step(struct pd_buf *b)
{
    while (b->len > 0 && is_space(b->data[b->len - 1])) {
        b->len--;
    }
    if (b->len >= 8 && memcmp(b->data + b->len - 8, "</think>", 8) == 0) {
        b->len -= 8;
        while (b->len > 0 && is_space(b->data[b->len - 1])) {
            b->len--;
        }
    }
    if (b->data) {
        b->data[b->len] = '\0';
    }
}

enum pd_status pd_dataset_add_step(struct pd_dataset *d, enum pd_dataset_source src,
                                   const struct pd_dataset_step *s, struct pd_err *err)
{
    if (d->format != PD_DATASET_STEP_DPO || (unsigned)src >= PD_SRC_COUNT) {
        return pd_err_set(err, PD_EINVAL, "export: a step pair needs format step-dpo");
    }
    const int64_t sids[] = {s->prompt_of, s->prefix.session_id, s->chosen.session_id,
                            s->rejected.session_id};
    for (size_t i = 0; i < sizeof sids / sizeof sids[0]; i++) {
        bool sel = false;
        enum pd_status rc = selected(d, sids[i], &sel, err);
        if (rc != PD_OK || !sel) {
            d->res.n_filtered += rc == PD_OK;
            return rc;
        }
    }
    struct side_text p;
    enum pd_status rc = load_side(d, s->prompt_of, false, false, &p, err);
    if (rc != PD_OK) {
        return rc;
    }
    struct span_text t[3];
    memset(t, 0, sizeof t);
    const struct pd_dataset_span *spans[3] = {&s->prefix, &s->chosen, &s->rejected};
    bool bad = false;
    size_t n_read = 0;
    for (; rc == PD_OK && !bad && n_read < 3; n_read++) {
        rc = read_span(d, spans[n_read], &t[n_read], &bad, err);
        if (rc != PD_OK) {
            break;
        }
        if (bad) {
            pd_buf_deinit(&t[n_read].text);
        }
    }
    const char *why = NULL;
    json_t *root = NULL;
    bool ok = true;
    if (rc == PD_OK && bad) {
        why = "a step span lies outside its session";
    } else if (rc == PD_OK) {
        strip_open_marker(&t[0].text);
        trim_step(&t[1].text);
        trim_step(&t[2].text);
        if (t[1].text.len == 0 || t[2].text.len == 0) {
            why = "an empty next step";
        } else if (t[1].text.len == t[2].text.len &&
                   memcmp(t[1].text.data, t[2].text.data, t[1].text.len) == 0) {
            why = "chosen and rejected are the same step";
        } else {
            root = json_object();
            ok = root != NULL;
            if (ok && put_prompt(d, root, &p, &ok, &why)) {
                json_t *m = json_object(), *diff = NULL;
                rc = jdifficulty(d, s->prompt_of, &diff, err);
                json_t *pt = t[0].scored ? json_integer((json_int_t)t[0].n_tokens) : json_null();
                json_t *ct = t[1].scored ? json_integer((json_int_t)t[1].n_tokens) : json_null();
                json_t *rt = t[2].scored ? json_integer((json_int_t)t[2].n_tokens) : json_null();
                ok = ok && m &&
                     json_object_set_new(root, "initial_reason_steps",
                                         json_stringn(t[0].text.data ? t[0].text.data : "",
                                                      t[0].text.len)) == 0 &&
                     json_object_set_new(root, "chosen",
                                         json_stringn(t[1].text.data, t[1].text.len)) == 0 &&
                     json_object_set_new(root, "rejected",
                                         json_stringn(t[2].text.data, t[2].text.len)) == 0 &&
                     json_object_set_new(m, "source", json_string(source_names[src])) == 0 &&
                     json_object_set_new(m, "chosen_session",
                                         json_integer(s->chosen.session_id)) == 0 &&
                     json_object_set_new(m, "rejected_session",
                                         json_integer(s->rejected.session_id)) == 0 &&
                     json_object_set_new(m, "step", json_integer(s->step_index)) == 0 &&
                     json_object_set_new(m, "prefix_tokens", pt) == 0 &&
                     json_object_set_new(m, "chosen_tokens", ct) == 0 &&
                     json_object_set_new(m, "rejected_tokens", rt) == 0 &&
                     json_object_set_new(m, "difficulty", diff) == 0;
                ok = ok && json_object_set_new(root, "metadata", m) == 0;
            }
        }
    }
    if (rc == PD_OK && !ok) {
        rc = pd_err_set(err, PD_ENOMEM, "export: out of memory");
    }
    if (rc == PD_OK && why) {
        skip(d, "sessions %lld over %lld at step %d: %s", (long long)s->chosen.session_id,
             (long long)s->rejected.session_id, (int)s->step_index, why);
    } else if (rc == PD_OK) {
        count_tokens(d, 0, t[1].scored, t[1].n_tokens);
        count_tokens(d, 1, t[2].scored, t[2].n_tokens);
        if (p.model[0]) {
            count_name(d->models, &d->n_models, &d->models_more, p.model);
        }
        rc = emit(d, root, src, err);
        root = NULL;
    }
    json_decref(root);
    for (size_t i = 0; i < 3; i++) {
        if (t[i].text.data) {
            pd_buf_deinit(&t[i].text);
        }
    }
    side_text_free(&p);
    return rc;
}

/* ---- the card ----------------------------------------------------------------------------- */

/* Appends a YAML feature list entry. */
static bool feat(struct pd_buf *b, const char *name, const char *dtype)
{
    return pd_buf_printf(b, "  - name: %s\n    dtype: %s\n", name, dtype);
}

static bool feat_messages(struct pd_buf *b, const char *name)
{
    return pd_buf_printf(b,
                         "  - name: %s\n    list:\n    - name: role\n      dtype: string\n"
                         "    - name: content\n      dtype: string\n",
                         name);
}

static bool feat_text_or_messages(const struct pd_dataset *d, struct pd_buf *b, const char *name)
{
    return d->conversational ? feat_messages(b, name) : feat(b, name, "string");
}

/* The metadata struct's fields per format (name, dtype), as the writers set them. */
static bool feat_metadata(const struct pd_dataset *d, struct pd_buf *b)
{
    static const char *const dpo[] = {"source", "string", "chosen_session", "int64",
                                       "rejected_session", "int64", "chosen_pruned", "bool",
                                       "rejected_pruned", "bool", "chosen_tokens", "int64",
                                       "rejected_tokens", "int64", "difficulty", "float64", NULL};
    static const char *const step[] = {"source", "string", "chosen_session", "int64",
                                        "rejected_session", "int64", "step", "int64",
                                        "prefix_tokens", "int64", "chosen_tokens", "int64",
                                        "rejected_tokens", "int64", "difficulty", "float64",
                                        NULL};
    static const char *const kto[] = {"source", "string", "session", "int64", "pruned", "bool",
                                       "tokens", "int64", "difficulty", "float64", NULL};
    const char *const *f = d->format == PD_DATASET_DPO ? dpo
                           : d->format == PD_DATASET_STEP_DPO ? step : kto;
    bool ok = pd_buf_puts(b, "  - name: metadata\n    struct:\n");
    for (size_t i = 0; ok && f[i]; i += 2) {
        ok = pd_buf_printf(b, "    - name: %s\n      dtype: %s\n", f[i], f[i + 1]);
    }
    return ok;
}

/* Markdown-safe one line: '|' and newlines would break a table row. */
static bool md_cell(struct pd_buf *b, const char *s)
{
    bool ok = true;
    for (; ok && *s; s++) {
        ok = *s == '|' ? pd_buf_puts(b, "\\|")
             : (*s == '\n' || *s == '\r') ? pd_buf_puts(b, " ")
                                           : pd_buf_append(b, s, 1);
    }
    return ok;
}

static const char *const format_refs[PD_DATASET_FORMAT_COUNT] = {
    "TRL's preference format (Hugging Face TRL documentation, \"Dataset formats and types\")",
    "the Step-DPO data format (the Step-DPO GitHub repository, dvlab-research/Step-DPO)",
    ("TRL's unpaired preference format (Hugging Face TRL documentation, \"Dataset formats "
     "and types\")"),
};

enum pd_status pd_dataset_card(const struct pd_dataset *d, const char *data_file, char **out,
                               struct pd_err *err)
{
    *out = NULL;
    struct pd_buf b;
    pd_buf_init(&b);
    const char *fmt = format_names[d->format];
    const char *variant = d->format == PD_DATASET_STEP_DPO ? "standard"
                          : d->conversational ? "conversational" : "standard";
    bool ok = pd_buf_printf(&b,
                            "---\n"
                            "# license: fill in the license your source traces allow, e.g.\n"
                            "# apache-2.0 (https://huggingface.co/docs/hub/repositories-licenses)\n"
                            "license:\n"
                            "pretty_name: ponder %s dataset\n"
                            "tags:\n- ponder\n- %s\n- reasoning\n- distillation\n"
                            "configs:\n- config_name: default\n  data_files:\n"
                            "  - split: train\n    path: %s\n"
                            "dataset_info:\n  features:\n",
                            fmt, fmt, data_file);
    /* the standard variant writes "system" only for conversations that have one; it is
     * listed so that loaders know its type */
    if (ok && !d->conversational) {
        ok = feat(&b, "system", "string");
    }
    if (ok && d->format == PD_DATASET_DPO) {
        ok = feat_text_or_messages(d, &b, "prompt") && feat_text_or_messages(d, &b, "chosen") &&
             feat_text_or_messages(d, &b, "rejected");
    } else if (ok && d->format == PD_DATASET_STEP_DPO) {
        ok = feat(&b, "prompt", "string") && feat(&b, "initial_reason_steps", "string") &&
             feat(&b, "chosen", "string") && feat(&b, "rejected", "string");
    } else if (ok) {
        ok = feat_text_or_messages(d, &b, "prompt") &&
             feat_text_or_messages(d, &b, "completion") && feat(&b, "label", "bool");
    }
    ok = ok && feat_metadata(d, &b) &&
         pd_buf_printf(&b,
                       "  splits:\n  - name: train\n    num_bytes: %llu\n"
                       "    num_examples: %llu\n---\n\n",
                       (unsigned long long)d->bytes, (unsigned long long)d->res.n_written);
    ok = ok && pd_buf_printf(&b,
                             "# ponder %s dataset\n\n"
                             "%llu records in `%s`, written by %s from reasoning traces in its "
                             "database. Format: %s, %s variant; field definitions and examples "
                             "in ponder's docs/export.md.\n\n",
                             fmt, (unsigned long long)d->res.n_written, data_file,
                             d->generator, format_refs[d->format], variant);
    if (ok && d->command) {
        ok = pd_buf_puts(&b, "Made with:\n\n```\n") && pd_buf_puts(&b, d->command) &&
             pd_buf_puts(&b, "\n```\n\n");
    }
    ok = ok && pd_buf_puts(&b, "## Records per source\n\n| source | records | what it is |\n"
                               "|---|---|---|\n");
    for (int i = 0; ok && i < PD_SRC_COUNT; i++) {
        if (d->res.per_source[i]) {
            ok = pd_buf_printf(&b, "| %s | %llu | %s |\n", source_names[i],
                               (unsigned long long)d->res.per_source[i], source_text[i]);
        }
    }
    if (ok && d->res.n_skipped) {
        ok = pd_buf_printf(&b, "\n%llu candidate records were skipped (the first because: ",
                           (unsigned long long)d->res.n_skipped) &&
             md_cell(&b, d->res.skip_reason) && pd_buf_puts(&b, ").\n");
    }
    if (ok && d->res.n_filtered) {
        ok = pd_buf_printf(&b, "\n%llu candidate records were left out by the session "
                               "filters.\n", (unsigned long long)d->res.n_filtered);
    }
    ok = ok && pd_buf_puts(&b, "\n## How it was made\n\n") &&
         pd_buf_printf(&b, "- generator: %s\n", d->generator);
    ok = ok && pd_buf_puts(&b, "- models (of the sessions used):");
    if (ok && d->n_models == 0) {
        ok = pd_buf_puts(&b, " none recorded (imported traces never scored)");
    }
    ok = ok && pd_buf_puts(&b, "\n");
    for (size_t i = 0; ok && i < d->n_models; i++) {
        ok = pd_buf_puts(&b, "  - ") && md_cell(&b, d->models[i].name) &&
             pd_buf_printf(&b, ": %llu session uses\n", (unsigned long long)d->models[i].n);
    }
    if (ok && d->models_more) {
        ok = pd_buf_printf(&b, "  - and %llu uses of other models\n",
                           (unsigned long long)d->models_more);
    }
    if (ok && d->n_strategies) {
        ok = pd_buf_puts(&b, "- prune strategies (of the pruned completions):\n");
        for (size_t i = 0; ok && i < d->n_strategies; i++) {
            ok = pd_buf_puts(&b, "  - `") && md_cell(&b, d->strategies[i].name) &&
                 pd_buf_printf(&b, "`: %llu\n", (unsigned long long)d->strategies[i].n);
        }
        if (ok && d->strategies_more) {
            ok = pd_buf_printf(&b, "  - and %llu more\n", (unsigned long long)d->strategies_more);
        }
    }
    if (ok && d->settings[0]) {
        ok = pd_buf_puts(&b, "- selection and thresholds:\n");
        for (const char *l = d->settings; ok && *l;) {
            const char *e = strchr(l, '\n');
            size_t n = e ? (size_t)(e - l) : strlen(l);
            ok = pd_buf_puts(&b, "  - ") && pd_buf_append(&b, l, n) && pd_buf_puts(&b, "\n");
            l += n + (e != NULL);
        }
    }
    const char *c0 = d->format == PD_DATASET_KTO ? "label true" : "chosen";
    const char *c1 = d->format == PD_DATASET_KTO ? "label false" : "rejected";
    const char *what = d->format == PD_DATASET_STEP_DPO ? "next steps" : "completions";
    ok = ok && pd_buf_printf(&b,
                             "\n## Lengths\n\nTokens of the %s (the model's tokens of the "
                             "scored sessions):\n\n| tokens | %s | %s |\n|---|---|---|\n",
                             what, c0, c1);
    for (int k = 0; ok && k < HIST_BINS; k++) {
        if (!d->hist[0][k] && !d->hist[1][k]) {
            continue;
        }
        char range[48];
        if (k <= 1) {
            snprintf(range, sizeof range, "%d", k); /* the bins of 0 and of 1 token */
        } else if (k == HIST_BINS - 1) {
            snprintf(range, sizeof range, "%zu and more", (size_t)1 << (k - 1));
        } else {
            snprintf(range, sizeof range, "%zu-%zu", (size_t)1 << (k - 1),
                     ((size_t)1 << k) - 1);
        }
        ok = pd_buf_printf(&b, "| %s | %llu | %llu |\n", range, (unsigned long long)d->hist[0][k],
                           (unsigned long long)d->hist[1][k]);
    }
    if (ok && (d->hist_unknown[0] || d->hist_unknown[1])) {
        ok = pd_buf_printf(&b, "| not scored | %llu | %llu |\n",
                           (unsigned long long)d->hist_unknown[0],
                           (unsigned long long)d->hist_unknown[1]);
    }
    if (!ok) {
        pd_buf_deinit(&b);
        return pd_err_set(err, PD_ENOMEM, "export: out of memory writing the card");
    }
    *out = pd_buf_take(&b);
    return PD_OK;
}

/* ---- commit ------------------------------------------------------------------------------- */

/* Writes text to path whole or not at all (afile.h). */
static enum pd_status write_file_atomic(const char *path, const char *text, struct pd_err *err)
{
    struct pd_afile a;
    enum pd_status rc = pd_afile_open(&a, path, err);
    if (rc != PD_OK) {
        return rc;
    }
    size_t n = strlen(text);
    if (fwrite(text, 1, n, a.f) != n) {
        enum pd_status w = pd_err_set(err, PD_EIO, "%s: write failed: %s", path,
                                      strerror(errno));
        pd_afile_abort(&a);
        return w;
    }
    return pd_afile_commit(&a, err);
}

/* Adds a row to the exports table (not for a database opened read-only: an export only
 * reads, the record is a courtesy). */
static enum pd_status record_export(struct pd_dataset *d, struct pd_err *err)
{
    if (pd_store_read_only(d->st)) {
        return PD_OK;
    }
    struct pd_buf filter;
    pd_buf_init(&filter);
    bool ok = pd_buf_append(&filter, "", 0);
    for (const char *s = d->settings; ok && *s; s++) {
        ok = pd_buf_puts(&filter, *s == '\n' ? (s[1] ? "; " : "") : (char[2]){*s, 0});
    }
    if (!ok) {
        pd_buf_deinit(&filter);
        return pd_err_set(err, PD_ENOMEM, "export: out of memory");
    }
    sqlite3_stmt *s = pd_store_prepare(d->st,
                                       "INSERT INTO exports (created_ms, format, path, filter,"
                                       " n_sessions) VALUES (?1, ?2, ?3, ?4, ?5)",
                                       err);
    enum pd_status rc = s ? PD_OK : PD_EDB;
    if (s) {
        sqlite3_bind_int64(s, 1, pd_store_now_ms());
        sqlite3_bind_text(s, 2, format_names[d->format], -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, d->path, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, filter.data, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, (int64_t)d->res.n_written);
        if (sqlite3_step(s) != SQLITE_DONE) {
            rc = pd_store_dberr(d->st, err, "export record");
        }
        sqlite3_finalize(s);
    }
    pd_buf_deinit(&filter);
    return rc;
}

enum pd_status pd_dataset_commit(struct pd_dataset *d, struct pd_err *err)
{
    if (d->committed) {
        return pd_err_set(err, PD_EINVAL, "export: already committed");
    }
    enum pd_status rc = PD_OK;
    if (!d->has_af) {
        if (fflush(d->f) != 0) {
            return pd_err_set(err, PD_EIO, "export: write failed: %s", strerror(errno));
        }
        d->committed = true;
        return PD_OK;
    }
    char *card = NULL;
    const char *slash = strrchr(d->path, '/');
    const char *base = slash ? slash + 1 : d->path;
    if (d->card) {
        rc = pd_dataset_card(d, base, &card, err);
    }
    if (rc == PD_OK) {
        d->has_af = false; /* finished by commit, either way */
        rc = pd_afile_commit(&d->af, err);
    }
    if (rc == PD_OK) {
        d->committed = true;
    }
    if (rc == PD_OK && card) {
        size_t dn = slash ? (size_t)(slash - d->path) : 0;
        char *readme = malloc(dn + 16);
        if (!readme) {
            rc = pd_err_set(err, PD_ENOMEM, "export: out of memory");
        } else {
            snprintf(readme, dn + 16, "%.*s%sREADME.md", (int)dn, d->path,
                     slash ? "/" : "");
            rc = write_file_atomic(readme, card, err);
            free(readme);
        }
        if (rc != PD_OK) {
            pd_err_prefix(err, "%s written, but its card failed", d->path);
        }
    }
    free(card);
    if (d->read_txn) {
        sqlite3_exec(d->st->db, "COMMIT", NULL, NULL, NULL);
        d->read_txn = false;
    }
    if (rc == PD_OK) {
        rc = record_export(d, err);
    }
    return rc;
}
