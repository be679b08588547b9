/* cli_analysis.c - headless analysis commands: analyze, prune, and batch scoring of
 * stored or imported traces (`score --in / --session / --all`, reached from `score`).
 *
 * Contracts (docs/analysis.md, "Command line"):
 *   analyze (--session ID... | --all | --in FILE) [--db F] [-m MODEL]
 *           [--sensitivity [--greedy N]] [--markers] [--min-chars N] [--resegment] [--save]
 *           [--json]
 *       steps with kinds and metrics per trace; text table or one JSON object per line.
 *       A trace with a reference answer: --sensitivity grades the greedy answer with each
 *       step removed against it (prune --verify: from the full and pruned reasoning).
 *   prune --strategy manual|asap|redundant|budget [--keep R | --budget N]
 *         [--threshold T] [--steps I,J,...] [--verify [--verify-steps]] [-m MODEL]
 *         [--greedy N] (--session ID... | --all | --in FILE) [--out FILE] [--format F]
 *         [--db F] [--markers] [--resegment] [--dry-run] [--json]
 *       selects steps, records them as prunes (replacing the session's earlier ones),
 *       optionally verifies with the model and stores the check (store_labels.h; with
 *       --verify-steps also each pruned step removed alone), and with --out exports the
 *       pruned traces (format messages by default). --in needs --out.
 *   score -m MODEL (--in FILE | --session ID... | --all) [--db F] [--force] [--topk K]
 *         [--no-attn] [--chat FAMILY] [--markers] [--json]
 *       --in imports FILE into the database first; each trace is rebuilt with the model's
 *       chat template, teacher-forced, its tokens replaced by the scored ones, and its
 *       steps segmented and stored with their metrics. --all scores the sessions that
 *       still have unscored tokens (--force: every session).
 * --in FILE for analyze and prune works on a temporary database that is removed
 * afterwards. Exit status: 0 ok, 1 when any trace failed (the others are still done),
 * 2 usage. A progress bar goes to stderr when it is a terminal. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jsonw.h"
#include "mem.h"
#include "backend.h"
#include "chat.h"
#include "cli.h"
#include "cli_progress.h"
#include "cli_remote.h"
#include "metrics.h"
#include "lm.h"
#include "pairs.h"
#include "prune.h"
#include "score.h"
#include "steps.h"
#include "store.h"
#include "model_id.h"
#include "store_jsonl.h"
#include "store_labels.h"
#include "store_replay.h"
#include "tokenizer.h"
#include "answer.h"

#define PATH_MAX_LEN 4096
#define PREVIEW_CHARS 60


/* ---- database, temporary database, session selection -------------------------------- */


/* A database in a fresh temporary folder, for --in with analyze and prune. */
struct tmp_db {
    char dir[PATH_MAX_LEN];
    char path[PATH_MAX_LEN];
    bool made;
};

static struct pd_store *tmp_db_open(struct tmp_db *t)
{
    const char *base = getenv("TMPDIR");
    snprintf(t->dir, sizeof t->dir, "%s/ponder-XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(t->dir) == NULL) {
        pd_cli_fail(1, "cannot create a temporary folder under %s", base && *base ? base : "/tmp");
        return NULL;
    }
    t->made = true;
    snprintf(t->path, sizeof t->path, "%s/in.db", t->dir);
    return pd_cli_open_db(t->path, PD_CLI_DB_CREATE);
}

static void tmp_db_remove(struct tmp_db *t)
{
    if (!t->made) {
        return;
    }
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    char p[PATH_MAX_LEN + 16];
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        snprintf(p, sizeof p, "%s%s", t->path, suffix[i]);
        unlink(p);
    }
    rmdir(t->dir);
    t->made = false;
}

static void on_import_error(void *ud, const struct pd_err *e)
{
    pd_progress_clear(ud);
    pd_cli_print_err(e);
}

static void on_import_progress(void *ud, uint64_t done, uint64_t total)
{
    pd_progress_update(ud, done, total);
}

/* Imports file; appends the new session ids to *ids. Returns false on a file-level error
 * (printed); bad lines are printed and counted in *n_bad. dups: repeated traces are
 * imported too (a temporary database: every line is a trace to work on); otherwise a trace
 * the database holds is skipped and counted on stderr. */
static bool import_file(struct pd_store *st, const char *file, bool dups, int64_t **ids,
                        size_t *n_ids, uint64_t *n_bad)
{
    struct pd_progress b;
    pd_progress_start(&b, file, NULL, 0);
    struct pd_import_params p = {.on_error = on_import_error, .on_progress = on_import_progress,
                                 .allow_duplicates = dups, .ud = &b};
    struct pd_import_result r;
    struct pd_err err;
    pd_err_clear(&err);
    enum pd_status s = pd_jsonl_import_file(st, file, &p, &r, &err);
    pd_progress_clear(&b);
    if (s != PD_OK) {
        if (!(s == PD_EFORMAT && r.n_failed > 0)) {
            pd_cli_print_err(&err);
        }
        return false;
    }
    *n_bad += r.n_failed;
    if (r.n_duplicates) {
        fprintf(stderr, "%s: %llu trace%s already in the database, skipped\n", file,
                (unsigned long long)r.n_duplicates, r.n_duplicates == 1 ? "" : "s");
    }
    if (r.n_imported == 0) {
        return true;
    }
    size_t n_new = (size_t)(r.last_id - r.first_id + 1);
    int64_t *grown = pd_realloc_array(*ids, *n_ids + n_new, sizeof **ids);
    if (!grown) {
        pd_cli_fail(1, "out of memory");
        return false;
    }
    *ids = grown;
    for (int64_t id = r.first_id; id <= r.last_id; id++) {
        struct pd_store_session_info info;
        struct pd_err e2;
        if (pd_store_session_get(st, id, &info, &e2) == PD_OK) {
            (*ids)[(*n_ids)++] = id;
            pd_store_session_info_free(&info);
        }
    }
    return true;
}

/* All session ids of the database, oldest first. */
static bool all_sessions(struct pd_store *st, int64_t **ids, size_t *n_ids)
{
    struct pd_store_session_info *list = NULL;
    size_t n = 0;
    struct pd_err err;
    pd_err_clear(&err);
    if (pd_store_session_list(st, &list, &n, &err) != PD_OK) {
        pd_cli_print_err(&err);
        return false;
    }
    int64_t *grown = pd_realloc_array(*ids, *n_ids + n + 1, sizeof **ids);
    if (grown) {
        *ids = grown;
        for (size_t i = 0; i < n; i++) {
            (*ids)[(*n_ids)++] = list[i].id;
        }
    }
    for (size_t i = 0; i < n; i++) {
        pd_store_session_info_free(&list[i]);
    }
    free(list);
    if (!grown) {
        pd_cli_fail(1, "out of memory");
    }
    return grown != NULL;
}

/* ---- a trace read from the store ---------------------------------------------------- */

struct trace {
    int64_t id;
    int64_t parent_id;
    char *reference;            /* owned: the session's reference answer, or NULL */
    struct pd_token_rec *toks;  /* owned [n] */
    size_t n;
    struct pd_step_rec *stored; /* owned copy of the stored steps [n_stored] */
    size_t n_stored;
};

static void trace_free(struct trace *t)
{
    pd_score_tokens_free(t->toks, t->n);
    free(t->stored);
    free(t->reference);
    memset(t, 0, sizeof *t);
}

static enum pd_status trace_load(struct pd_store *st, int64_t id, struct trace *t,
                                 struct pd_err *err)
{
    memset(t, 0, sizeof *t);
    t->id = id;
    struct pd_replay *r = NULL;
    enum pd_status s = pd_replay_open(st, id, &r, err);
    if (s != PD_OK) {
        return s;
    }
    t->parent_id = pd_replay_info(r)->parent_id;
    if (pd_replay_info(r)->reference &&
        !(t->reference = pd_strdup(pd_replay_info(r)->reference))) {
        s = pd_err_set(err, PD_ENOMEM, "session %lld: out of memory", (long long)id);
        goto done;
    }
    int64_t len = pd_replay_length(r);
    t->toks = pd_calloc(len > 0 ? (size_t)len : 1, sizeof *t->toks);
    if (!t->toks) {
        s = pd_err_set(err, PD_ENOMEM, "session %lld: out of memory", (long long)id);
        goto done;
    }
    while (t->n < (size_t)len) {
        size_t got = 0;
        s = pd_replay_read(r, t->toks + t->n, (size_t)len - t->n, &got, err);
        t->n += got;
        if (s != PD_OK || got == 0) {
            break;
        }
    }
    if (s != PD_OK) {
        goto done;
    }
    size_t ns = 0;
    const struct pd_step_rec *steps = pd_replay_steps(r, &ns);
    if (ns > 0) {
        t->stored = pd_malloc_array(ns, sizeof *t->stored);
        if (!t->stored) {
            s = pd_err_set(err, PD_ENOMEM, "session %lld: out of memory", (long long)id);
            goto done;
        }
        memcpy(t->stored, steps, ns * sizeof *steps);
        t->n_stored = ns;
    }
done:
    pd_replay_close(&r);
    if (s != PD_OK) {
        trace_free(t);
    }
    return s;
}

/* True when the trace has tokens and every one has an id and metrics (token 0 aside). */
static bool trace_scored(const struct trace *t)
{
    if (t->n == 0) {
        return false;
    }
    for (size_t i = 0; i < t->n; i++) {
        if (t->toks[i].id < 0 || (t->toks[i].flags & PD_TOKF_NO_METRICS) ||
            (i > 0 && isnan(t->toks[i].logprob))) {
            return false;
        }
    }
    return true;
}

/* ---- the model --------------------------------------------------------------------- */

struct model_opts {
    const char *path;
    const char *chat;       /* family override, or NULL: detect */
    struct pd_cli_engine eng; /* eng.url: score on a remote engine */
    uint32_t retries;       /* with eng.url: extra attempts for transient failures */
    int n_threads;
    uint32_t n_ctx;
    enum pd_backend_kind backend; /* where the scorer's forward pass runs */
    uint32_t topk;
    bool attn;
};

/* The model that scores: loaded in this process, or a remote engine driven with the
 * vocabulary and chat template of the local GGUF (-m). */
struct model_ctx {
    const char *path; /* borrowed from the options */
    struct pd_lm lm;  /* local model */
    struct pd_cli_vocab voc; /* remote: the vocabulary and template */
    const struct pd_tok *tok;          /* lm.tok or voc.tok */
    const struct pd_chat_format *chat; /* lm.chat or voc.chat */
    struct pd_scorer *sc;
#if HAVE_REMOTE
    struct pd_remote *r;               /* owned: the client sc uses */
#endif
};

static void model_close(struct model_ctx *mc)
{
    pd_scorer_close(&mc->sc);
#if HAVE_REMOTE
    pd_remote_close(&mc->r);
#endif
    pd_lm_close(&mc->lm);
    pd_cli_vocab_close(&mc->voc);
}

static bool model_open(const struct model_opts *o, struct model_ctx *mc)
{
    memset(mc, 0, sizeof *mc);
    struct pd_err err;
    pd_err_clear(&err);
    mc->path = o->path;
    enum pd_chat_family f = PD_CHAT_FAMILY_COUNT;
    if (o->chat && pd_chat_family_parse(o->chat, &f, &err) != PD_OK) {
        pd_cli_fail(2, "--chat: %s", err.msg);
        return false;
    }
    struct pd_score_params sp = pd_score_default_params();
    sp.ctx.n_threads = o->n_threads;
    sp.ctx.n_ctx = o->n_ctx;
    sp.ctx.backend = o->backend;
    sp.topk = o->topk;
    sp.capture_attn = o->attn;
    if (o->eng.url) {
#if HAVE_REMOTE
        /* transient failures (429, 5xx, timeouts) are retried with backoff: bulk work */
        if (pd_cli_vocab_open(o->path, o->chat, &mc->voc, &err) != PD_OK ||
            pd_cli_engine_open(&o->eng, o->retries, mc->voc.tok, &mc->r, &err) != PD_OK) {
            pd_cli_print_err(&err);
            model_close(mc);
            return false;
        }
        struct pd_score_engine e = pd_cli_score_engine(mc->r, pd_tok_n_vocab(mc->voc.tok));
        if (pd_scorer_open_engine(&e, mc->voc.tok, &sp, &mc->sc, &err) != PD_OK) {
            pd_cli_print_err(&err);
            model_close(mc);
            return false;
        }
        mc->tok = mc->voc.tok;
        mc->chat = &mc->voc.chat;
        return true;
#endif
    }
    if (pd_lm_open(o->path, f, &mc->lm, &err) != PD_OK ||
        pd_scorer_open(mc->lm.model, mc->lm.tok, &sp, &mc->sc, &err) != PD_OK) {
        pd_cli_print_err(&err);
        model_close(mc);
        return false;
    }
    mc->tok = mc->lm.tok;
    mc->chat = &mc->lm.chat;
    return true;
}

/* Records which model the session's scores come from. */
static enum pd_status put_model(struct pd_store *st, const struct model_ctx *mc, int64_t sid,
                                struct pd_err *err)
{
    int64_t model_id = 0;
    enum pd_status s;
#if HAVE_REMOTE
    if (mc->r) {
        s = pd_cli_remote_model_put(st, pd_remote_info(mc->r), &model_id, err);
    } else
#endif
    {
        s = pd_cli_model_put(st, mc->lm.model, mc->path, &model_id, err);
    }
    return s == PD_OK ? pd_store_session_set_model(st, sid, model_id, err) : s;
}

/* ---- segmentation and metrics -------------------------------------------------------- */

struct seg_opts {
    bool markers;
    long long min_chars;
    bool resegment;
};

/* The trace's steps: the stored ones, or (none stored / resegment) a fresh segmentation.
 * *fresh says which. Metrics are filled either way. *out owned (free()). */
static enum pd_status trace_steps(const struct trace *t, const struct seg_opts *so,
                                  struct pd_step_rec **out, size_t *n_out, bool *fresh,
                                  struct pd_err *err)
{
    *out = NULL;
    *n_out = 0;
    *fresh = so->resegment || t->n_stored == 0;
    enum pd_status s = PD_OK;
    if (*fresh) {
        struct pd_steps_params sp = pd_steps_default_params();
        sp.split_markers = so->markers;
        sp.min_chars = (int32_t)so->min_chars;
        struct pd_steps_list l;
        pd_steps_list_init(&l);
        s = pd_steps_segment(t->toks, t->n, &sp, &l, err);
        if (s != PD_OK) {
            pd_steps_list_deinit(&l);
            return s;
        }
        *out = l.items;
        *n_out = l.n;
    } else {
        *out = pd_malloc_array(t->n_stored, sizeof **out);
        if (!*out) {
            return pd_err_set(err, PD_ENOMEM, "out of memory");
        }
        memcpy(*out, t->stored, t->n_stored * sizeof **out);
        *n_out = t->n_stored;
    }
    if ((s = pd_metrics_steps(t->toks, t->n, *out, *n_out, NULL, err)) != PD_OK) {
        free(*out);
        *out = NULL;
        *n_out = 0;
    }
    return s;
}

/* ---- scoring a stored session --------------------------------------------------------- */

static const enum pd_chat_role k_msg_roles[] = {
    [PD_STORE_MSG_SYSTEM] = PD_CHAT_ROLE_SYSTEM,
    [PD_STORE_MSG_USER] = PD_CHAT_ROLE_USER,
    [PD_STORE_MSG_ASSISTANT] = PD_CHAT_ROLE_ASSISTANT,
};
_Static_assert(sizeof k_msg_roles / sizeof k_msg_roles[0] == PD_STORE_MSG_ROLE_COUNT,
               "one chat role per stored message role");

/* Rebuilds an imported trace (text segments) as model tokens into *toks. */
static enum pd_status rebuild_tokens(struct pd_store *st, const struct trace *t,
                                     const struct model_ctx *mc, struct pd_token_rec **toks,
                                     size_t *n, struct pd_err *err)
{
    struct pd_message *msgs = NULL;
    size_t n_msgs = 0;
    enum pd_status s = pd_store_messages_get(st, t->id, &msgs, &n_msgs, err);
    if (s != PD_OK) {
        return s;
    }
    struct pd_chat_msg *cm = pd_calloc(n_msgs ? n_msgs : 1, sizeof *cm);
    struct pd_buf think, answer;
    pd_buf_init(&think);
    pd_buf_init(&answer);
    bool has_think = false, ok = cm != NULL;
    for (size_t i = 0; ok && i < n_msgs; i++) {
        cm[i].role = k_msg_roles[msgs[i].role];
        cm[i].content = msgs[i].content;
    }
    for (size_t i = 0; ok && i < t->n; i++) {
        const struct pd_token_rec *k = &t->toks[i];
        if (k->role == PD_ROLE_THINK) {
            has_think = true;
            ok = k->text_len == 0 || pd_buf_append(&think, k->text, k->text_len);
        } else if (k->role == PD_ROLE_ANSWER) {
            ok = k->text_len == 0 || pd_buf_append(&answer, k->text, k->text_len);
        }
    }
    if (!ok) {
        s = pd_err_set(err, PD_ENOMEM, "out of memory");
    } else {
        struct pd_score_input in = {cm, n_msgs, has_think, think.data, think.len, answer.data,
                                    answer.len};
        s = pd_score_build(mc->tok, mc->chat, &in, toks, n, err);
    }
    pd_buf_deinit(&think);
    pd_buf_deinit(&answer);
    free(cm);
    pd_store_messages_free(msgs, n_msgs);
    return s;
}

/* The model tokens trace t is scored as (*toks owned, positions 0..n-1): its own ids
 * (a live or ponder-record trace; taken out of t) or its text rebuilt with the model's
 * chat template. */
static enum pd_status prepare_tokens(struct pd_store *st, struct trace *t,
                                     const struct model_ctx *mc, struct pd_token_rec **toks_out,
                                     size_t *n_out, struct pd_err *err)
{
    *toks_out = NULL;
    *n_out = 0;
    if (t->parent_id != 0) {
        return pd_err_set(err, PD_EUNSUPPORTED, "session %lld is a branch; score its parent "
                          "instead", (long long)t->id);
    }
    struct pd_token_rec *toks = NULL;
    size_t n = 0;
    enum pd_status s = PD_OK;
    bool has_ids = t->n > 0;
    for (size_t i = 0; i < t->n; i++) {
        has_ids = has_ids && t->toks[i].id >= 0;
    }
    if (has_ids) {
        /* a live or ponder-record trace: re-score its own ids, positions from 0 */
        toks = t->toks;
        n = t->n;
        t->toks = NULL;
        t->n = 0;
        for (size_t i = 0; i < n; i++) {
            toks[i].pos = (int64_t)i;
            toks[i].flags &= ~(uint32_t)PD_TOKF_PRUNED;
        }
    } else {
        s = rebuild_tokens(st, t, mc, &toks, &n, err);
    }
    *toks_out = toks;
    *n_out = n;
    return s;
}

/* Puts scored tokens into t: its stored steps are dropped (their positions no longer
 * apply). Takes toks. */
static void take_scored(struct trace *t, struct pd_token_rec *toks, size_t n)
{
    pd_score_tokens_free(t->toks, t->n);
    t->toks = toks;
    t->n = n;
    free(t->stored);
    t->stored = NULL;
    t->n_stored = 0;
}

/* Scores trace t with the model: t's tokens become the scored model tokens (positions
 * 0..n-1). */
static enum pd_status score_tokens(struct pd_store *st, struct trace *t,
                                   const struct model_ctx *mc, struct pd_err *err)
{
    struct pd_token_rec *toks = NULL;
    size_t n = 0;
    enum pd_status s = prepare_tokens(st, t, mc, &toks, &n, err);
    if (s == PD_OK) {
        s = pd_score_trace(mc->sc, toks, n, err);
    }
    if (s != PD_OK) {
        pd_score_tokens_free(toks, n);
        return s;
    }
    take_scored(t, toks, n);
    return PD_OK;
}

/* Stores the scored tokens of t, the model they come from, and fresh steps with metrics;
 * t is reloaded afterwards so it holds what the store now has. */
static enum pd_status store_scored(struct pd_store *st, struct trace *t,
                                   const struct model_ctx *mc, const struct seg_opts *so,
                                   struct pd_err *err)
{
    enum pd_status s = pd_store_tokens_replace(st, t->id, t->toks, t->n, err);
    if (s == PD_OK) {
        s = put_model(st, mc, t->id, err); /* the scores' model */
    }
    int64_t id = t->id;
    if (s != PD_OK) {
        return s;
    }
    trace_free(t);
    if ((s = trace_load(st, id, t, err)) != PD_OK) {
        return s;
    }
    struct pd_step_rec *steps = NULL;
    size_t n_steps = 0;
    bool fresh;
    struct seg_opts so2 = *so;
    so2.resegment = true;
    if ((s = trace_steps(t, &so2, &steps, &n_steps, &fresh, err)) == PD_OK) {
        s = pd_store_steps_replace(st, t->id, steps, n_steps, err);
    }
    free(steps);
    if (s == PD_OK) {
        trace_free(t);
        s = trace_load(st, id, t, err);
    }
    return s;
}

/* Scores session t->id with the model and stores the result (store_scored). */
static enum pd_status score_session(struct pd_store *st, struct trace *t,
                                    const struct model_ctx *mc, const struct seg_opts *so,
                                    struct pd_err *err)
{
    enum pd_status s = score_tokens(st, t, mc, err);
    return s == PD_OK ? store_scored(st, t, mc, so, err) : s;
}

/* ---- JSON helpers ---------------------------------------------------------------------- */

static bool json_key(struct pd_buf *b, const char *k)
{
    return pd_buf_puts(b, ",\"") && pd_buf_puts(b, k) && pd_buf_puts(b, "\":");
}

static bool json_kn(struct pd_buf *b, const char *k, double v)
{
    return json_key(b, k) && pd_json_num(b, v);
}

static bool json_ki(struct pd_buf *b, const char *k, long long v)
{
    return json_key(b, k) && pd_buf_printf(b, "%lld", v);
}

static bool json_kb(struct pd_buf *b, const char *k, bool v)
{
    return json_key(b, k) && pd_buf_puts(b, v ? "true" : "false");
}

static bool json_ks(struct pd_buf *b, const char *k, const char *s)
{
    return json_key(b, k) && pd_json_str(b, s, strlen(s));
}

/* The text of a step (its tokens' bytes) appended to b. */
static bool step_text(const struct trace *t, const struct pd_step_span *sp, struct pd_buf *b)
{
    for (size_t i = sp->i_begin; i < sp->i_end; i++) {
        if (t->toks[i].text_len && !pd_buf_append(b, t->toks[i].text, t->toks[i].text_len)) {
            return false;
        }
    }
    return pd_buf_append(b, "", 0);
}

/* A one-line preview: whitespace runs as one space, at most PREVIEW_CHARS bytes, cut at a
 * character boundary. */
static void preview(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    bool space = false;
    for (size_t i = 0; i < n && k + 4 < cap && k < PREVIEW_CHARS; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
            space = k > 0;
            continue;
        }
        if (space) {
            out[k++] = ' ';
            space = false;
        }
        out[k++] = (char)c;
    }
    while (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0x80) {
        k--; /* drop a cut-off UTF-8 tail (conservative) */
    }
    if (k > 0 && (unsigned char)out[k - 1] >= 0xC0) {
        k--;
    }
    out[k] = '\0';
}

/* ---- analyze ------------------------------------------------------------------------- */

static void analyze_usage(FILE *f)
{
    fprintf(f,
            "usage: ponder analyze (--session ID... | --all | --in FILE) [--db F] [-m MODEL]\n"
            "                      [--sensitivity [--greedy N]] [--markers] [--min-chars N]\n"
            "                      [--resegment] [--save] [--json]\n"
            "\n"
            "Segments each trace into reasoning steps and prints each step's kind, tokens,\n"
            "first-token surprisal, mean surprisal, mean entropy (bits) and attention received\n"
            "from later steps. Definitions: docs/analysis.md.\n"
            "\n"
            "  --session ID    a stored session (repeatable)\n"
            "  --all           every stored session\n"
            "  --in FILE       traces from a JSONL file (a temporary database, nothing kept)\n"
            "  --db F          database (default $XDG_DATA_HOME/ponder/ponder.db)\n"
            "  -m, --model F   score unscored traces first (stored only with --save), and\n"
            "                  the model for --sensitivity\n"
            "  --sensitivity   answer logprob with each step removed vs kept (needs -m);\n"
            "                  a trace with a reference answer also gets the greedy answer\n"
            "                  with each step removed checked against it (right / WRONG /\n"
            "                  no answer in the greedy tokens)\n"
            "  --greedy N      greedy answer tokens decoded for that check (default 32, at\n"
            "                  most %d)\n"
            "  --markers       also split at sentence-initial discourse markers\n"
            "  --min-chars N   merge steps shorter than N characters (default 10)\n"
            "  --resegment     segment again even when steps are stored\n"
            "  --save          store the steps and metrics (replaces stored steps and prunes\n"
            "                  when segmenting again)\n"
            "  --pass-rate     instead: group the sessions by question, grade each final\n"
            "                  answer against the reference answer, store each question's\n"
            "                  pass rate (difficulty = 1 - pass rate; for export filters)\n"
            "  --chat F        chat family for scoring (default: from the model)\n"
            "  -t, --threads N, -c, --ctx N, --backend B   as for score\n"
            "  --engine URL    score on a remote engine (-m: its vocabulary and template)\n"
            "  --json          one JSON object per trace and line\n",
            PD_SCORE_GREEDY_MAX);
}

struct common_opts {
    const char *db;
    const char *in;
    bool all;
    int64_t *ids;
    size_t n_ids;
    bool json;
    struct model_opts mo;
    struct seg_opts so;
};

/* Parses an option shared by analyze, prune and score. Returns 1 consumed, 0 not ours,
 * -1 usage error (printed). */
static int parse_common(struct pd_argv *a, struct common_opts *o)
{
    const char *v = NULL;
    bool bad = false;
    long long n = 0;
    int er = pd_cli_engine_opt(a, &o->mo.eng);
    if (er != 0) {
        return er;
    }
    if (pd_arg_match(a, "--db", NULL, &v, &bad)) {
        o->db = v;
    } else if (pd_arg_match(a, "--in", NULL, &v, &bad)) {
        o->in = v;
    } else if (pd_arg_match(a, "--all", NULL, NULL, &bad)) {
        o->all = true;
    } else if (pd_arg_match(a, "--session", NULL, &v, &bad)) {
        if (!bad && !pd_arg_long(a->cmd, "--session", v, 1, INT64_MAX, &n)) {
            return -1;
        }
        o->ids[o->n_ids++] = n;
    } else if (pd_arg_match(a, "--json", NULL, NULL, &bad)) {
        o->json = true;
    } else if (pd_arg_match(a, "--model", "-m", &v, &bad)) {
        o->mo.path = v;
    } else if (pd_arg_match(a, "--chat", NULL, &v, &bad)) {
        if (!bad && !pd_cli_check_chat(a->cmd, "--chat", v)) {
            return -1;
        }
        o->mo.chat = v;
    } else if (pd_arg_match(a, "--threads", "-t", &v, &bad)) {
        if (!bad && !pd_arg_long(a->cmd, "--threads", v, 1, 1024, &n)) {
            return -1;
        }
        o->mo.n_threads = (int)n;
    } else if (pd_arg_match(a, "--ctx", "-c", &v, &bad)) {
        if (!bad && !pd_arg_long(a->cmd, "--ctx", v, 16, 1 << 22, &n)) {
            return -1;
        }
        o->mo.n_ctx = (uint32_t)n;
    } else if (pd_arg_match(a, "--backend", NULL, &v, &bad)) {
        if (!bad && (o->mo.backend = pd_backend_parse(v)) == PD_BACKEND_KIND_COUNT) {
            pd_cli_fail(2, "%s: --backend: expected cpu, cuda or auto, got '%s'", a->cmd, v);
            return -1;
        }
    } else if (pd_arg_match(a, "--markers", NULL, NULL, &bad)) {
        o->so.markers = true;
    } else if (pd_arg_match(a, "--min-chars", NULL, &v, &bad)) {
        if (!bad && !pd_arg_long(a->cmd, "--min-chars", v, 0, 100000, &o->so.min_chars)) {
            return -1;
        }
    } else if (pd_arg_match(a, "--resegment", NULL, NULL, &bad)) {
        o->so.resegment = true;
    } else {
        return 0;
    }
    return bad ? -1 : 1;
}

static bool common_init(struct common_opts *o, int argc)
{
    memset(o, 0, sizeof *o);
    o->ids = pd_calloc((size_t)argc + 1, sizeof *o->ids);
    pd_cli_engine_init(&o->mo.eng);
    o->mo.retries = 8; /* bulk work against a busy server: up to ~90 s of backoff */
    o->mo.topk = 5;
    o->mo.attn = true;
    o->so.min_chars = 10;
    return o->ids != NULL;
}

/* Exactly one source: --session, --all or --in. */
static bool common_check_source(const struct common_opts *o, const char *cmd)
{
    int n = (o->n_ids > 0) + o->all + (o->in != NULL);
    if (n != 1) {
        pd_cli_fail(2, "%s: give exactly one of --session ID, --all or --in FILE", cmd);
        return false;
    }
    return true;
}

/* Opens the store named by the options: a temporary one for --in (after importing the
 * file), else --db / the default. Fills o->ids for --in and --all. */
static struct pd_store *common_open(struct common_opts *o, struct tmp_db *tmp, bool keep_in,
                                    int *rc)
{
    struct pd_store *st = NULL;
    if (o->in && !keep_in) {
        st = tmp_db_open(tmp);
    } else {
        st = pd_cli_open_db(o->db, o->in ? PD_CLI_DB_CREATE : PD_CLI_DB_UPDATE);
    }
    if (!st) {
        *rc = 1;
        return NULL;
    }
    uint64_t n_bad = 0;
    if (o->in) {
        if (!import_file(st, o->in, !keep_in, &o->ids, &o->n_ids, &n_bad)) {
            *rc = 1;
            pd_store_close(&st);
            return NULL;
        }
        if (n_bad) {
            *rc = 1;
        }
    } else if (o->all && !all_sessions(st, &o->ids, &o->n_ids)) {
        *rc = 1;
        pd_store_close(&st);
        return NULL;
    }
    return st;
}

/* ---- reference answers ------------------------------------------------------------ */

/* How a greedy answer compares with the trace's reference answer (answer.h). */
struct ref_check {
    char answer[PD_ANSWER_MAX];  /* what was extracted, "" when nothing */
    int verdict;                 /* 1 right, 0 wrong, -1 no answer in the greedy text */
};

/* Checks the greedy continuation ids[0..n) (its pieces; special and end-of-generation
 * tokens left out) against reference, graded as `ponder analyze --pass-rate` grades
 * (pd_pairs_grade: the last \boxed{} or number against the reference's). */
static bool ref_check(const struct pd_tok *tok, const int32_t *ids, size_t n,
                      const char *reference, struct ref_check *out)
{
    struct pd_buf text;
    pd_buf_init(&text);
    bool ok = pd_buf_puts(&text, "");
    for (size_t i = 0; ok && i < n; i++) {
        size_t len = 0;
        const char *p = pd_tok_is_special(tok, ids[i]) || pd_tok_is_eog(tok, ids[i])
                            ? NULL
                            : pd_tok_piece(tok, ids[i], &len);
        ok = !p || pd_buf_append(&text, p, len);
    }
    if (ok) {
        int g = pd_pairs_grade(text.data ? text.data : "", text.len, reference, out->answer);
        out->verdict = g == 0 && !out->answer[0] ? -1 : g;
    }
    pd_buf_deinit(&text);
    return ok;
}

static const char *verdict_name(int v)
{
    return v > 0 ? "right" : v == 0 ? "WRONG" : "no answer";
}

static bool json_verdict(struct pd_buf *b, const char *key, const struct ref_check *r)
{
    return json_key(b, key) &&
           (r->verdict < 0 ? pd_buf_puts(b, "null")
                           : pd_json_str(b, r->answer, strlen(r->answer))) &&
           pd_buf_printf(b, ",\"%s_correct\":%s", key,
                         r->verdict < 0 ? "null" : r->verdict ? "true" : "false");
}

/* Answer sensitivity of each step (as pd_score_sensitivity) plus, for a trace with a
 * reference answer, the greedy answer (n_greedy tokens) under the full trace (*full_ref)
 * and with each step removed (step_ref[j]) checked against it. A step without tokens
 * leaves the answer as it is. */
static enum pd_status sensitivity_ref(const struct model_ctx *mc, const struct trace *t,
                                      const struct pd_step_rec *steps, size_t n_steps,
                                      uint32_t n_greedy, double *sens, double *lp_full,
                                      struct ref_check *full_ref, struct ref_check *step_ref,
                                      struct pd_err *err)
{
    struct pd_score_answer *full = pd_calloc(1, sizeof *full);
    struct pd_score_answer *part = pd_calloc(1, sizeof *part);
    struct pd_step_rec *one = pd_malloc_array(n_steps ? n_steps : 1, sizeof *one);
    uint8_t *drop = pd_calloc(t->n ? t->n : 1, 1);
    enum pd_status s = full && part && one && drop ? PD_OK
                                                   : pd_err_set(err, PD_ENOMEM, "out of memory");
    if (s == PD_OK) {
        s = pd_score_answer(mc->sc, t->toks, t->n, NULL, n_greedy, full, err);
    }
    if (s == PD_OK) {
        *lp_full = full->logprob;
        if (!ref_check(mc->tok, full->greedy, full->n_greedy, t->reference, full_ref)) {
            s = pd_err_set(err, PD_ENOMEM, "out of memory");
        }
    }
    for (size_t j = 0; s == PD_OK && j < n_steps; j++) {
        memcpy(one, steps, n_steps * sizeof *one);
        bool any = false;
        for (size_t i = 0; i < n_steps; i++) {
            one[i].pruned = i == j;
        }
        s = pd_prune_token_mask(t->toks, t->n, one, n_steps, drop, err);
        for (size_t i = 0; s == PD_OK && i < t->n && !any; i++) {
            any = drop[i] != 0;
        }
        sens[j] = 0.0;
        step_ref[j] = *full_ref;
        if (s != PD_OK || !any) {
            continue;
        }
        s = pd_score_answer(mc->sc, t->toks, t->n, drop, n_greedy, part, err);
        if (s != PD_OK) {
            pd_err_prefix(err, "step %zu", j);
        } else {
            sens[j] = full->logprob - part->logprob;
            if (!ref_check(mc->tok, part->greedy, part->n_greedy, t->reference,
                           &step_ref[j])) {
                s = pd_err_set(err, PD_ENOMEM, "out of memory");
            }
        }
    }
    free(full);
    free(part);
    free(one);
    free(drop);
    return s;
}

/* full_ref / step_ref: NULL, or the reference checks of sensitivity_ref. */
static bool print_analysis(const struct trace *t, const struct pd_step_rec *steps,
                           size_t n_steps, const double *sens, double lp_full,
                           const struct ref_check *full_ref, const struct ref_check *step_ref,
                           bool json, struct pd_buf *b)
{
    struct pd_step_span *spans = pd_calloc(n_steps ? n_steps : 1, sizeof *spans);
    struct pd_err err;
    if (!spans || pd_metrics_spans(t->toks, t->n, steps, n_steps, spans, &err) != PD_OK) {
        free(spans);
        return false;
    }
    struct pd_trace_stats ts;
    pd_metrics_trace(t->toks, t->n, steps, spans, n_steps, &ts);
    struct pd_prune_params pp = pd_prune_default_params(PD_PRUNE_BUDGET);
    double d = pd_prune_difficulty(steps, n_steps, ts.mean_entropy, &pp);
    bool scored = trace_scored(t);
    struct pd_buf txt;
    pd_buf_init(&txt);
    bool ok = true;
    b->len = 0;
    if (json) {
        ok = pd_buf_printf(b, "{\"session\":%lld", (long long)t->id) &&
             json_ki(b, "tokens", (long long)ts.n_tokens) &&
             json_ki(b, "think_tokens", (long long)ts.n_role[PD_ROLE_THINK]) &&
             json_ki(b, "answer_tokens", (long long)ts.n_role[PD_ROLE_ANSWER]) &&
             json_ki(b, "step_tokens", (long long)ts.n_step_tokens) &&
             json_kb(b, "scored", scored) && json_kn(b, "mean_surprisal", ts.mean_surprisal) &&
             json_kn(b, "mean_entropy", ts.mean_entropy) && json_kn(b, "difficulty", d);
        if (sens) {
            ok = ok && json_kn(b, "answer_logprob", lp_full);
        }
        if (full_ref) {
            ok = ok && json_ks(b, "reference", t->reference) &&
                 json_verdict(b, "answer_full", full_ref);
        }
        ok = ok && pd_buf_puts(b, ",\"steps\":[");
        for (size_t j = 0; ok && j < n_steps; j++) {
            const struct pd_step_rec *s = &steps[j];
            txt.len = 0;
            ok = step_text(t, &spans[j], &txt) &&
                 pd_buf_printf(b, "%s{\"index\":%d", j ? "," : "", s->index) &&
                 json_ks(b, "kind", pd_step_kind_name(s->kind)) &&
                 json_ki(b, "pos_begin", (long long)s->pos_begin) &&
                 json_ki(b, "pos_end", (long long)s->pos_end) &&
                 json_ki(b, "tokens", (long long)(spans[j].i_end - spans[j].i_begin)) &&
                 json_kn(b, "first_surprisal", s->first_surprisal) &&
                 json_kn(b, "mean_surprisal", s->mean_surprisal) &&
                 json_kn(b, "mean_entropy", s->mean_entropy) &&
                 json_kn(b, "attn_received", s->attn_received) &&
                 json_kb(b, "pruned", s->pruned);
            if (ok && sens) {
                ok = json_kn(b, "sensitivity", sens[j]);
            }
            if (ok && step_ref) {
                ok = json_verdict(b, "answer_without", &step_ref[j]);
            }
            ok = ok && json_key(b, "text") && pd_json_str(b, txt.data, txt.len) &&
                 pd_buf_puts(b, "}");
        }
        ok = ok && pd_buf_puts(b, "]}\n");
    } else {
        ok = pd_buf_printf(b, "session %lld: %zu tokens (think %zu, answer %zu), %zu steps "
                           "over %zu tokens, %s", (long long)t->id, ts.n_tokens,
                           ts.n_role[PD_ROLE_THINK], ts.n_role[PD_ROLE_ANSWER], n_steps,
                           ts.n_step_tokens, scored ? "scored" : "not scored");
        if (ok && scored) {
            ok = pd_buf_printf(b, ", mean surprisal %.3f bits, mean entropy %.3f bits",
                               ts.mean_surprisal, ts.mean_entropy);
        }
        ok = ok && pd_buf_printf(b, ", difficulty %.3f\n", d);
        if (ok && sens) {
            ok = pd_buf_printf(b, "  answer logprob %.4f nats\n", lp_full);
        }
        if (ok && full_ref) {
            char r0[PD_ANSWER_MAX + 8], rf[64];
            pd_cli_one_line(full_ref->answer, strlen(full_ref->answer), r0, sizeof r0, 40);
            pd_cli_one_line(t->reference, strlen(t->reference), rf, sizeof rf, 40);
            ok = pd_buf_printf(b, "  reference %s: greedy answer %s (%s); column ref: the "
                               "greedy answer with the step removed\n",
                               rf, full_ref->verdict < 0 ? "-" : r0,
                               verdict_name(full_ref->verdict));
        }
        ok = ok && pd_buf_printf(b, "  %4s %-9s %6s %8s %8s %8s %8s%s%s  %s\n", "step", "kind",
                                 "tokens", "1st-s", "mean-s", "entropy", "imp",
                                 sens ? "    sens" : "", step_ref ? " ref      " : "", "text");
        for (size_t j = 0; ok && j < n_steps; j++) {
            const struct pd_step_rec *s = &steps[j];
            char pv[PREVIEW_CHARS + 8];
            txt.len = 0;
            ok = step_text(t, &spans[j], &txt);
            if (!ok) {
                break;
            }
            preview(txt.data ? txt.data : "", txt.len, pv, sizeof pv);
            char fs[16], ms[16], es[16], im[16];
            ok = pd_buf_printf(b, "  %4d %-9s %6zu %8s %8s %8s %8s", s->index,
                               pd_step_kind_name(s->kind), spans[j].i_end - spans[j].i_begin,
                               pd_cli_num(fs, sizeof fs, "%.3f", s->first_surprisal),
                               pd_cli_num(ms, sizeof ms, "%.3f", s->mean_surprisal),
                               pd_cli_num(es, sizeof es, "%.3f", s->mean_entropy),
                               pd_cli_num(im, sizeof im, "%.3f", s->attn_received));
            if (ok && sens) {
                ok = pd_buf_printf(b, " %8.4f", sens[j]);
            }
            if (ok && step_ref) {
                ok = pd_buf_printf(b, " %-9s", verdict_name(step_ref[j].verdict));
            }
            ok = ok && pd_buf_printf(b, "%s %s\n", s->pruned ? " x" : "  ", pv);
        }
        if (ok && n_steps > 0) {
            ok = pd_buf_printf(b, "  (1st-s, mean-s: surprisal in bits; entropy in bits; imp: "
                                  "attention mass received from later steps%s%s; -: not "
                                  "defined)\n",
                               sens ? "; sens: answer logprob change in nats without the step"
                                    : "",
                               step_ref ? "; ref: the greedy answer without the step graded "
                                          "against the reference"
                                        : "");
        }
    }
    pd_buf_deinit(&txt);
    free(spans);
    return ok;
}

/* ---- analyze --pass-rate --------------------------------------------------------------- */

struct graded {
    char *key;                  /* owned: the prompt key (question) */
    int64_t id;
    char *reference;            /* owned, NULL when none */
    char title[PREVIEW_CHARS + 8]; /* the question, for the text output */
    char answer[PD_ANSWER_MAX];
    int correct;
};

static int cmp_graded(const void *a, const void *b)
{
    const struct graded *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->id > y->id) - (x->id < y->id);
}

/* Grades one root session with a completion; *skip when it is a branch or has none. */
static enum pd_status grade_session(struct pd_store *st, int64_t id, struct graded *g,
                                    bool *skip, struct pd_err *err)
{
    memset(g, 0, sizeof *g);
    g->id = id;
    *skip = false;
    struct pd_store_session_info info;
    enum pd_status s = pd_store_session_get(st, id, &info, err);
    if (s != PD_OK) {
        return s;
    }
    char *text = NULL;
    size_t len = 0;
    if (info.parent_id != 0) {
        *skip = true; /* a branch is not an independent sample */
    } else {
        s = pd_jsonl_session_final(st, id, true, &text, &len, NULL, NULL, err);
        *skip = s == PD_OK && !text;
    }
    if (s == PD_OK && !*skip) {
        s = pd_store_prompt_key(st, id, &g->key, err);
        preview(info.title, strlen(info.title), g->title, sizeof g->title);
    }
    if (s == PD_OK && !*skip && info.reference) {
        g->reference = pd_strdup(info.reference);
        if (!g->reference) {
            s = pd_err_set(err, PD_ENOMEM, "out of memory");
        }
    }
    pd_store_session_info_free(&info);
    free(text);
    return s;
}

/* One question: samples g[0..n) share a key. The question's reference is the first
 * sample's that has one; a sample without its own is graded against it. */
static enum pd_status store_question(struct pd_store *st, struct graded *g, size_t n,
                                     int64_t *qid, const char **ref_out, struct pd_err *err)
{
    const char *ref = NULL;
    for (size_t i = 0; i < n && !ref; i++) {
        ref = g[i].reference;
    }
    *ref_out = ref;
    struct pd_sample_grade *sg = pd_calloc(n, sizeof *sg);
    if (!sg) {
        return pd_err_set(err, PD_ENOMEM, "out of memory");
    }
    enum pd_status s = PD_OK;
    for (size_t i = 0; s == PD_OK && i < n; i++) {
        char *text = NULL;
        size_t len = 0;
        s = pd_jsonl_session_final(st, g[i].id, true, &text, &len, NULL, NULL, err);
        if (s == PD_OK) {
            g[i].correct = pd_pairs_grade(text ? text : "", len,
                                          g[i].reference ? g[i].reference : ref, g[i].answer);
            sg[i] = (struct pd_sample_grade){g[i].id, g[i].answer[0] ? g[i].answer : NULL,
                                             g[i].correct};
        }
        free(text);
    }
    if (s == PD_OK) {
        s = pd_store_question_put(st, g[0].key, ref, sg, n, qid, err);
    }
    free(sg);
    return s;
}

static bool print_question(int64_t qid, const struct graded *g, size_t n, const char *ref,
                           bool json, struct pd_buf *b)
{
    size_t graded = 0, correct = 0;
    for (size_t i = 0; i < n; i++) {
        graded += g[i].correct >= 0;
        correct += g[i].correct == 1;
    }
    double rate = graded ? (double)correct / (double)graded : NAN;
    b->len = 0;
    if (!json) {
        bool ok = pd_buf_printf(b, "question %lld: %zu samples, %zu graded, %zu correct",
                                (long long)qid, n, graded, correct);
        if (ok && graded) {
            ok = pd_buf_printf(b, ", pass rate %.3f, difficulty %.3f", rate, 1.0 - rate);
        }
        return ok && pd_buf_printf(b, "  %s\n", g[0].title);
    }
    bool ok = pd_buf_printf(b, "{\"question\":%lld", (long long)qid) &&
              json_ki(b, "samples", (long long)n) && json_ki(b, "graded", (long long)graded) &&
              json_ki(b, "correct", (long long)correct) && json_kn(b, "pass_rate", rate) &&
              json_kn(b, "difficulty", 1.0 - rate) && json_key(b, "reference") &&
              (ref ? pd_json_str(b, ref, strlen(ref)) : pd_buf_puts(b, "null")) &&
              json_ks(b, "prompt", g[0].key) && pd_buf_puts(b, ",\"sessions\":[");
    for (size_t i = 0; ok && i < n; i++) {
        ok = pd_buf_printf(b, "%s{\"session\":%lld", i ? "," : "", (long long)g[i].id) &&
             json_key(b, "answer") &&
             (g[i].answer[0] ? pd_json_str(b, g[i].answer, strlen(g[i].answer))
                             : pd_buf_puts(b, "null")) &&
             json_key(b, "correct") &&
             pd_buf_puts(b, g[i].correct < 0 ? "null" : g[i].correct ? "true" : "false") &&
             pd_buf_puts(b, "}");
    }
    return ok && pd_buf_puts(b, "]}\n");
}

/* analyze --pass-rate: groups the selected root sessions by question, grades each one's
 * final answer against the reference answer and stores every question's pass rate. */
static int pass_rate_run(struct pd_store *st, const struct common_opts *o)
{
    struct graded *g = pd_calloc(o->n_ids ? o->n_ids : 1, sizeof *g);
    if (!g) {
        return pd_cli_fail(1, "analyze: out of memory");
    }
    int rc = 0;
    size_t n = 0;
    for (size_t k = 0; k < o->n_ids; k++) {
        struct pd_err err;
        pd_err_clear(&err);
        bool skip = false;
        if (grade_session(st, o->ids[k], &g[n], &skip, &err) != PD_OK) {
            pd_err_prefix(&err, "session %lld", (long long)o->ids[k]);
            pd_cli_print_err(&err);
            rc = 1;
            free(g[n].key);
            free(g[n].reference);
        } else if (skip) {
            free(g[n].key);
            free(g[n].reference);
        } else {
            n++;
        }
    }
    qsort(g, n, sizeof *g, cmp_graded);
    struct pd_buf out;
    pd_buf_init(&out);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && strcmp(g[j].key, g[i].key) == 0) {
            j++;
        }
        struct pd_err err;
        pd_err_clear(&err);
        int64_t qid = 0;
        const char *ref = NULL;
        if (store_question(st, g + i, j - i, &qid, &ref, &err) != PD_OK) {
            pd_err_prefix(&err, "session %lld", (long long)g[i].id);
            pd_cli_print_err(&err);
            rc = 1;
        } else if (print_question(qid, g + i, j - i, ref, o->json, &out)) {
            pd_cli_put(out.data, out.len, o->json);
        } else {
            rc = pd_cli_fail(1, "analyze: out of memory");
        }
        i = j;
    }
    fflush(stdout);
    pd_buf_deinit(&out);
    for (size_t i = 0; i < n; i++) {
        free(g[i].key);
        free(g[i].reference);
    }
    free(g);
    return rc;
}

int pd_cli_analyze(int argc, char **argv)
{
    struct common_opts o;
    if (!common_init(&o, argc)) {
        return pd_cli_fail(1, "analyze: out of memory");
    }
    bool sensitivity = false, save = false, pass_rate = false, bad = false;
    long long n_greedy = 32;
    const char *greedy_s = NULL;
    struct pd_argv a = {argc, argv, 1, "analyze"};
    while (a.i < argc && !bad) {
        if (strcmp(argv[a.i], "--help") == 0 || strcmp(argv[a.i], "-h") == 0) {
            analyze_usage(stdout);
            free(o.ids);
            return 0;
        }
        int r = parse_common(&a, &o);
        if (r < 0) {
            bad = true;
        } else if (r == 0) {
            if (pd_arg_match(&a, "--sensitivity", NULL, NULL, &bad)) {
                sensitivity = true;
            } else if (pd_arg_match(&a, "--greedy", NULL, &greedy_s, &bad)) {
                bad = bad || !pd_arg_long("analyze", "--greedy", greedy_s, 1,
                                          PD_SCORE_GREEDY_MAX, &n_greedy);
            } else if (pd_arg_match(&a, "--save", NULL, NULL, &bad)) {
                save = true;
            } else if (pd_arg_match(&a, "--pass-rate", NULL, NULL, &bad)) {
                pass_rate = true;
            } else {
                pd_cli_fail(2, "analyze: unexpected argument '%s'", argv[a.i]);
                bad = true;
            }
        }
    }
    if (!bad && !common_check_source(&o, "analyze")) {
        bad = true;
    }
    if (!bad && sensitivity && !o.mo.path) {
        pd_cli_fail(2, "analyze: --sensitivity needs -m MODEL");
        bad = true;
    }
    if (!bad && greedy_s && !sensitivity) {
        bad = pd_cli_fail(2, "analyze: --greedy goes with --sensitivity") != 0;
    }
    if (!bad && save && o.in) {
        pd_cli_fail(2, "analyze: --save does not apply to --in (use 'ponder score --in')");
        bad = true;
    }
    if (!bad && pass_rate && (o.in || sensitivity || save || o.mo.path)) {
        pd_cli_fail(2, "analyze: --pass-rate grades stored sessions (--all or --session; "
                       "'ponder import' the file first) and takes no -m, --sensitivity or "
                       "--save");
        bad = true;
    }
    if (bad) {
        free(o.ids);
        return 2;
    }
    int rc = 0;
    struct tmp_db tmp = {0};
    struct model_ctx mc = {0};
    struct pd_store *st = common_open(&o, &tmp, false, &rc);
    if (!st) {
        goto out;
    }
    if (pass_rate) {
        rc = pass_rate_run(st, &o);
        goto out;
    }
    if (o.mo.path && !model_open(&o.mo, &mc)) {
        rc = 1;
        goto out;
    }
    struct pd_progress bar;
    pd_progress_start(&bar, "analyze", "traces", o.n_ids);
    struct {
        size_t n_ref, right, n_steps, flipped;
    } rt = {0};
    size_t n_failed = 0;
    struct pd_buf out;
    pd_buf_init(&out);
    for (size_t k = 0; k < o.n_ids; k++) {
        pd_progress_update(&bar, k, o.n_ids);
        struct pd_err err;
        pd_err_clear(&err);
        struct trace t;
        struct pd_step_rec *steps = NULL;
        size_t n_steps = 0;
        double *sens = NULL, lp_full = NAN;
        struct ref_check full_ref, *step_ref = NULL;
        bool fresh = false;
        enum pd_status s = trace_load(st, o.ids[k], &t, &err);
        if (s == PD_OK && mc.sc && !trace_scored(&t)) {
            /* stored only in the temporary database or with --save */
            s = (o.in || save) ? score_session(st, &t, &mc, &o.so, &err)
                               : score_tokens(st, &t, &mc, &err);
        }
        if (s == PD_OK) {
            s = trace_steps(&t, &o.so, &steps, &n_steps, &fresh, &err);
        }
        if (s == PD_OK && sensitivity) {
            sens = pd_calloc(n_steps ? n_steps : 1, sizeof *sens);
            step_ref = t.reference && mc.tok
                           ? pd_calloc(n_steps ? n_steps : 1, sizeof *step_ref)
                           : NULL;
            if (!sens || (t.reference && mc.tok && !step_ref)) {
                s = pd_err_set(&err, PD_ENOMEM, "out of memory");
            } else if (step_ref) {
                s = sensitivity_ref(&mc, &t, steps, n_steps, (uint32_t)n_greedy, sens, &lp_full,
                                    &full_ref, step_ref, &err);
            } else {
                s = pd_score_sensitivity(mc.sc, t.toks, t.n, steps, n_steps, sens, &lp_full,
                                         &err);
            }
        }
        if (s == PD_OK && save) {
            s = fresh ? pd_store_steps_replace(st, t.id, steps, n_steps, &err)
                      : pd_store_steps_put(st, t.id, steps, n_steps, &err);
        }
        pd_progress_clear(&bar);
        if (s == PD_OK) {
            if (step_ref) {
                rt.n_ref++;
                rt.right += full_ref.verdict > 0;
                for (size_t j = 0; j < n_steps; j++) {
                    rt.n_steps++;
                    rt.flipped += (step_ref[j].verdict > 0) != (full_ref.verdict > 0);
                }
            }
            if (print_analysis(&t, steps, n_steps, sens, lp_full, step_ref ? &full_ref : NULL,
                               step_ref, o.json, &out)) {
                pd_cli_put(out.data, out.len, o.json);
                fflush(stdout);
            } else {
                s = pd_err_set(&err, PD_ENOMEM, "out of memory");
            }
        }
        if (s != PD_OK) {
            pd_err_prefix(&err, "session %lld", (long long)o.ids[k]);
            pd_cli_print_err(&err);
            rc = 1;
            n_failed++;
        }
        free(sens);
        free(step_ref);
        free(steps);
        trace_free(&t);
    }
    pd_progress_update(&bar, o.n_ids, o.n_ids);
    char rsum[256] = "";
    if (rt.n_ref) {
        snprintf(rsum, sizeof rsum, "; reference answers: %zu of %zu right, removing one step "
                 "changes that in %zu of %zu steps", rt.right, rt.n_ref, rt.flipped,
                 rt.n_steps);
    }
    pd_progress_summary(&bar, "%zu trace%s analyzed, %zu failed%s", o.n_ids - n_failed,
                        o.n_ids - n_failed == 1 ? "" : "s", n_failed, rsum);
    pd_buf_deinit(&out);
out:
    model_close(&mc);
    pd_store_close(&st);
    tmp_db_remove(&tmp);
    free(o.ids);
    return rc;
}

/* ---- prune ------------------------------------------------------------------------- */

/* What prune --verify found over all traces, for the summary line. */
struct verify_tally {
    size_t n;           /* traces verified */
    size_t n_changed;   /* their greedy answer changed */
    size_t n_delta;     /* with a finite answer logprob delta */
    double sum_delta;
    size_t n_ref;       /* traces with a reference answer */
    size_t ref_right[2];/* greedy answer right, from the full [0] / pruned [1] reasoning */
    size_t ref_none[2]; /* no answer in the greedy tokens */
};

static void verify_tally_text(const struct verify_tally *v, char *out, size_t n)
{
    if (v->n == 0) {
        snprintf(out, n, "; nothing verified");
        return;
    }
    int k = snprintf(out, n, "; greedy answer changed in %zu of %zu", v->n_changed, v->n);
    if (k > 0 && (size_t)k < n) {
        if (v->n_delta) {
            snprintf(out + k, n - (size_t)k, ", mean answer logprob delta %+.4f nats",
                     v->sum_delta / (double)v->n_delta);
        } else {
            snprintf(out + k, n - (size_t)k, ", mean answer logprob delta -");
        }
    }
    k = (int)strlen(out);
    if (v->n_ref && (size_t)k < n) {
        snprintf(out + k, n - (size_t)k,
                 "; reference answers: %zu of %zu right from the full reasoning, %zu from the "
                 "pruned (no answer in the greedy tokens: %zu, %zu)",
                 v->ref_right[0], v->n_ref, v->ref_right[1], v->ref_none[0], v->ref_none[1]);
    }
}

static void prune_usage(FILE *f)
{
    fprintf(f,
            "usage: ponder prune --strategy S [--keep R | --budget N] [--threshold T]\n"
            "                    [--steps I,J,...] [--verify [--verify-steps]] [-m MODEL]\n"
            "                    [--greedy N]\n"
            "                    (--session ID... | --all | --in FILE) [--out FILE]\n"
            "                    [--format F] [--db F] [--markers] [--resegment] [--dry-run]\n"
            "                    [--json]\n"
            "\n"
            "Chooses reasoning steps to prune, records them (replacing the trace's earlier\n"
            "prunes), optionally verifies the pruned trace with the model, and exports the\n"
            "pruned traces. Strategies (docs/analysis.md):\n"
            "  manual     prune the steps listed by --steps\n"
            "  asap       keep the first, last and concluding steps, then the steps with the\n"
            "             highest first-token surprisal within the budget (needs scores)\n"
            "  redundant  drop steps whose words repeat an earlier kept step (Jaccard >= T)\n"
            "  budget     a length budget from the trace's estimated difficulty\n"
            "\n"
            "  --keep R        asap: keep R of the thinking tokens (default 0.8)\n"
            "  --budget N      asap: keep at most N thinking tokens\n"
            "  --threshold T   redundant: Jaccard threshold in (0, 1] (default 0.6)\n"
            "  --steps LIST    manual: step indices, comma-separated\n"
            "  --verify        re-score the answer under the pruned reasoning and compare\n"
            "                  greedy answers (needs -m); the result is stored for\n"
            "                  'export --format dpo/kto'\n"
            "  --verify-steps  with --verify: also check each pruned step removed alone from\n"
            "                  the full trace (for 'export --format step-dpo')\n"
            "  -m, --model F   model for --verify; unscored traces are scored first and the\n"
            "                  scores stored\n"
            "  --greedy N      answer tokens compared by --verify (default 16, at most %d)\n"
            "  --out FILE      export the pruned traces (required with --in)\n"
            "  --format F      export format: messages (default), sharegpt,\n"
            "                  prompt-completion, ponder\n"
            "  --dry-run       report only; record nothing\n"
            "  --session, --all, --in, --db, --markers, --resegment, --chat, -t, -c, --json,\n"
            "  --engine URL    as for analyze (--verify on a remote engine: teacher-forced\n"
            "                  answer log-probabilities and greedy answers over HTTP)\n",
            PD_SCORE_GREEDY_MAX);
}

/* Parses "1,3,5" into a malloc'd array. */
static bool parse_steps(const char *s, int32_t **out, size_t *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++) {
        cap += *p == ',';
    }
    int32_t *v = pd_calloc(cap, sizeof *v);
    if (!v) {
        pd_cli_fail(1, "prune: out of memory");
        return false;
    }
    size_t k = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            free(v);
            pd_cli_fail(2, "prune: --steps: expected step indices like 1,3,5, got '%s'", s);
            return false;
        }
        v[k++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (k == 0) {
        free(v);
        pd_cli_fail(2, "prune: --steps: empty list");
        return false;
    }
    *out = v;
    *n = k;
    return true;
}

/* Records the selection: every step unpruned, then the chosen ones pruned, in one
 * transaction. */
static enum pd_status record_prunes(struct pd_store *st, int64_t id,
                                    const struct pd_step_rec *steps, size_t n_steps,
                                    const char *spec, const char *by, struct pd_err *err)
{
    enum pd_status s = pd_store_begin(st, err);
    for (size_t j = 0; s == PD_OK && j < n_steps; j++) {
        s = steps[j].pruned ? pd_store_prune(st, id, steps[j].index, spec, by, err)
                            : pd_store_unprune(st, id, steps[j].index, err);
    }
    if (s == PD_OK) {
        return pd_store_commit(st, err);
    }
    pd_store_rollback(st);
    return s;
}

/* For each pruned step, the verification of removing that step alone from the full trace
 * (store_labels.h step checks). *out owned (free()), one entry per pruned step. */
static enum pd_status verify_each_step(const struct model_ctx *mc, const struct trace *t,
                                       const struct pd_step_rec *steps, size_t n_steps,
                                       uint32_t n_greedy, struct pd_step_check_rec **out,
                                       size_t *n_out, struct pd_err *err)
{
    *out = NULL;
    *n_out = 0;
    struct pd_step_rec *one = pd_malloc_array(n_steps ? n_steps : 1, sizeof *one);
    struct pd_step_check_rec *sc = pd_calloc(n_steps ? n_steps : 1, sizeof *sc);
    if (!one || !sc) {
        free(one);
        free(sc);
        return pd_err_set(err, PD_ENOMEM, "out of memory");
    }
    enum pd_status s = PD_OK;
    size_t n = 0;
    for (size_t j = 0; s == PD_OK && j < n_steps; j++) {
        if (!steps[j].pruned) {
            continue;
        }
        memcpy(one, steps, n_steps * sizeof *one);
        for (size_t i = 0; i < n_steps; i++) {
            one[i].pruned = i == j;
        }
        struct pd_prune_check chk;
        s = pd_prune_verify(mc->sc, t->toks, t->n, one, n_steps, n_greedy, &chk, err);
        if (s == PD_OK) {
            sc[n++] = (struct pd_step_check_rec){
                .step_index = steps[j].index, .logprob_full = chk.logprob_full,
                .logprob_without = chk.logprob_pruned, .greedy_compared = (int64_t)chk.n_compare,
                .greedy_same = chk.greedy_same};
        }
    }
    free(one);
    if (s != PD_OK) {
        free(sc);
        return s;
    }
    *out = sc;
    *n_out = n;
    return PD_OK;
}

/* ref: NULL, or the greedy answers from the full [0] and the pruned [1] reasoning checked
 * against t->reference. */
static bool print_prune(const struct trace *t, const struct pd_step_rec *steps,
                        size_t n_steps, const struct pd_prune_result *r,
                        const struct pd_prune_check *chk, const struct ref_check *ref,
                        const struct pd_step_check_rec *sc, size_t n_sc, bool json,
                        struct pd_buf *b)
{
    b->len = 0;
    bool ok;
    if (json) {
        ok = pd_buf_printf(b, "{\"session\":%lld", (long long)t->id) &&
             json_ks(b, "spec", r->spec) && json_ki(b, "steps", (long long)r->n_steps) &&
             pd_buf_puts(b, ",\"pruned\":[");
        for (size_t j = 0, k = 0; ok && j < n_steps; j++) {
            if (steps[j].pruned) {
                ok = pd_buf_printf(b, "%s%d", k++ ? "," : "", steps[j].index);
            }
        }
        ok = ok && pd_buf_puts(b, "]") &&
             json_ki(b, "tokens_before", (long long)r->tokens_before) &&
             json_ki(b, "tokens_after", (long long)r->tokens_after) &&
             json_ki(b, "budget", (long long)r->budget) &&
             json_kb(b, "budget_met", r->budget_met) && json_kn(b, "difficulty", r->difficulty);
        if (ok && chk) {
            ok = pd_buf_puts(b, ",\"verify\":{") &&
                 pd_buf_printf(b, "\"answer_tokens\":%zu", chk->n_answer) &&
                 json_kn(b, "logprob_full", chk->logprob_full) &&
                 json_kn(b, "logprob_pruned", chk->logprob_pruned) &&
                 json_kn(b, "delta", chk->delta) &&
                 json_ki(b, "greedy_compared", (long long)chk->n_compare) &&
                 json_kb(b, "greedy_same", chk->greedy_same) &&
                 json_kb(b, "greedy_full_matches", chk->greedy_full_matches) &&
                 json_kb(b, "greedy_pruned_matches", chk->greedy_pruned_matches);
            if (ok && ref) {
                ok = json_ks(b, "reference", t->reference) &&
                     json_verdict(b, "answer_full", &ref[0]) &&
                     json_verdict(b, "answer_pruned", &ref[1]);
            }
            ok = ok && pd_buf_puts(b, "}");
        }
        if (ok && sc) {
            ok = pd_buf_puts(b, ",\"step_checks\":[");
            for (size_t i = 0; ok && i < n_sc; i++) {
                ok = pd_buf_printf(b, "%s{\"step\":%d", i ? "," : "", (int)sc[i].step_index) &&
                     json_kn(b, "delta", sc[i].logprob_without - sc[i].logprob_full) &&
                     json_kb(b, "greedy_same", sc[i].greedy_same) && pd_buf_puts(b, "}");
            }
            ok = ok && pd_buf_puts(b, "]");
        }
        return ok && pd_buf_puts(b, "}\n");
    }
    ok = pd_buf_printf(b, "session %lld: %s: pruned %zu of %zu steps, %llu -> %llu step tokens",
                       (long long)t->id, r->spec, r->n_pruned, r->n_steps,
                       (unsigned long long)r->tokens_before,
                       (unsigned long long)r->tokens_after);
    if (ok && r->budget) {
        ok = pd_buf_printf(b, " (budget %llu%s)", (unsigned long long)r->budget,
                           r->budget_met ? "" : ", not met: anchors exceed it");
    }
    if (ok && chk) {
        ok = pd_buf_printf(b, "\n  verify: answer logprob %.4f -> %.4f nats (delta %+.4f over "
                           "%zu tokens); greedy answer %s over %zu tokens",
                           chk->logprob_full, chk->logprob_pruned, chk->delta, chk->n_answer,
                           chk->greedy_same ? "unchanged" : "CHANGED", chk->n_compare);
    }
    if (ok && chk && ref) {
        char r0[PD_ANSWER_MAX + 8], r1[PD_ANSWER_MAX + 8], rf[64];
        pd_cli_one_line(ref[0].answer, strlen(ref[0].answer), r0, sizeof r0, 40);
        pd_cli_one_line(ref[1].answer, strlen(ref[1].answer), r1, sizeof r1, 40);
        pd_cli_one_line(t->reference, strlen(t->reference), rf, sizeof rf, 40);
        ok = pd_buf_printf(b, "\n  reference %s: greedy answer from the full reasoning %s "
                           "(%s), from the pruned reasoning %s (%s)",
                           rf, ref[0].verdict < 0 ? "-" : r0, verdict_name(ref[0].verdict),
                           ref[1].verdict < 0 ? "-" : r1, verdict_name(ref[1].verdict));
    }
    for (size_t i = 0; ok && sc && i < n_sc; i++) {
        ok = pd_buf_printf(b, "\n  step %d alone: answer logprob delta %+.4f nats, greedy "
                           "answer %s",
                           (int)sc[i].step_index, sc[i].logprob_without - sc[i].logprob_full,
                           sc[i].greedy_same ? "unchanged" : "CHANGED");
    }
    return ok && pd_buf_puts(b, "\n");
}

int pd_cli_prune(int argc, char **argv)
{
    struct common_opts o;
    if (!common_init(&o, argc)) {
        return pd_cli_fail(1, "prune: out of memory");
    }
    const char *strategy = NULL, *out_path = NULL, *fmt = "messages", *v = NULL;
    const char *keep_s = NULL, *budget_s = NULL, *thr_s = NULL, *steps_s = NULL;
    bool verify = false, verify_steps = false, dry = false, bad = false;
    long long n_greedy = 16;
    struct pd_argv a = {argc, argv, 1, "prune"};
    while (a.i < argc && !bad) {
        if (strcmp(argv[a.i], "--help") == 0 || strcmp(argv[a.i], "-h") == 0) {
            prune_usage(stdout);
            free(o.ids);
            return 0;
        }
        int r = parse_common(&a, &o);
        if (r < 0) {
            bad = true;
        } else if (r > 0) {
            continue;
        } else if (pd_arg_match(&a, "--strategy", "-s", &strategy, &bad) ||
                   pd_arg_match(&a, "--keep", NULL, &keep_s, &bad) ||
                   pd_arg_match(&a, "--budget", NULL, &budget_s, &bad) ||
                   pd_arg_match(&a, "--threshold", NULL, &thr_s, &bad) ||
                   pd_arg_match(&a, "--steps", NULL, &steps_s, &bad) ||
                   pd_arg_match(&a, "--out", "-o", &out_path, &bad) ||
                   pd_arg_match(&a, "--format", "-f", &fmt, &bad)) {
            continue;
        } else if (pd_arg_match(&a, "--verify", NULL, NULL, &bad)) {
            verify = true;
        } else if (pd_arg_match(&a, "--verify-steps", NULL, NULL, &bad)) {
            verify_steps = true;
        } else if (pd_arg_match(&a, "--dry-run", NULL, NULL, &bad)) {
            dry = true;
        } else if (pd_arg_match(&a, "--greedy", NULL, &v, &bad)) {
            if (!bad && !pd_arg_long("prune", "--greedy", v, 0, PD_SCORE_GREEDY_MAX,
                                     &n_greedy)) {
                bad = true;
            }
        } else {
            pd_cli_fail(2, "prune: unexpected argument '%s'", argv[a.i]);
            bad = true;
        }
    }
    enum pd_prune_strategy sk = pd_prune_strategy_parse(strategy);
    struct pd_prune_params pp = pd_prune_default_params(sk);
    int32_t *manual = NULL;
    enum pd_jsonl_format format = pd_jsonl_format_parse(fmt);
    if (!bad && !strategy) {
        bad = pd_cli_fail(2, "prune: --strategy is required (manual, asap, redundant, "
                             "budget)") != 0;
    } else if (!bad && sk == PD_PRUNE_STRATEGY_COUNT) {
        bad = pd_cli_fail(2, "prune: unknown strategy '%s' (manual, asap, redundant, budget)",
                          strategy) != 0;
    }
    if (!bad && !common_check_source(&o, "prune")) {
        bad = true;
    }
    if (!bad && keep_s && budget_s) {
        bad = pd_cli_fail(2, "prune: give --keep or --budget, not both") != 0;
    }
    if (!bad && (keep_s || budget_s) && sk != PD_PRUNE_ASAP) {
        bad = pd_cli_fail(2, "prune: --keep and --budget apply to asap") != 0;
    }
    if (!bad && thr_s && sk != PD_PRUNE_REDUNDANT) {
        bad = pd_cli_fail(2, "prune: --threshold applies to redundant") != 0;
    }
    if (!bad && (steps_s != NULL) != (sk == PD_PRUNE_MANUAL)) {
        bad = pd_cli_fail(2, "prune: --steps %s", steps_s ? "applies to manual only"
                                                          : "is required by manual") != 0;
    }
    double dv = 0;
    long long lv = 0;
    if (!bad && keep_s) {
        if (!pd_arg_double("prune", "--keep", keep_s, &dv)) {
            bad = true;
        } else if (!(dv > 0 && dv <= 1)) {
            bad = pd_cli_fail(2, "prune: --keep: expected a ratio in (0, 1], got '%s'",
                              keep_s) != 0;
        }
        pp.keep = dv;
    }
    if (!bad && budget_s) {
        bad = !pd_arg_long("prune", "--budget", budget_s, 1, INT64_MAX, &lv);
        pp.budget = (uint64_t)lv;
    }
    if (!bad && thr_s) {
        if (!pd_arg_double("prune", "--threshold", thr_s, &dv)) {
            bad = true;
        } else if (!(dv > 0 && dv <= 1)) {
            bad = pd_cli_fail(2, "prune: --threshold: expected a number in (0, 1], got '%s'",
                              thr_s) != 0;
        }
        pp.threshold = dv;
    }
    if (!bad && steps_s && !parse_steps(steps_s, &manual, &pp.n_manual)) {
        bad = true;
    }
    pp.manual = manual;
    if (!bad && verify && !o.mo.path) {
        bad = pd_cli_fail(2, "prune: --verify needs -m MODEL") != 0;
    }
    if (!bad && verify_steps && !verify) {
        bad = pd_cli_fail(2, "prune: --verify-steps goes with --verify") != 0;
    }
    if (!bad && format == PD_JSONL_FORMAT_COUNT) {
        bad = pd_cli_fail(2, "prune: unknown format '%s' (messages, sharegpt, "
                             "prompt-completion, ponder)", fmt) != 0;
    }
    if (!bad && o.in && !out_path) {
        bad = pd_cli_fail(2, "prune: --in needs --out FILE (the pruned traces go there)") != 0;
    }
    if (!bad && dry && out_path) {
        bad = pd_cli_fail(2, "prune: --dry-run records nothing, so there is nothing to "
                             "--out") != 0;
    }
    if (bad) {
        free(manual);
        free(o.ids);
        return 2;
    }
    int rc = 0;
    struct tmp_db tmp = {0};
    struct model_ctx mc = {0};
    int64_t *done = NULL;
    size_t n_done = 0;
    struct pd_buf out;
    pd_buf_init(&out);
    struct pd_store *st = common_open(&o, &tmp, false, &rc);
    if (!st) {
        goto finish;
    }
    if (o.mo.path && !model_open(&o.mo, &mc)) {
        rc = 1;
        goto finish;
    }
    done = pd_calloc(o.n_ids + 1, sizeof *done);
    if (!done) {
        rc = pd_cli_fail(1, "prune: out of memory");
        goto finish;
    }
    struct pd_progress bar;
    pd_progress_start(&bar, "prune", "traces", o.n_ids);
    struct verify_tally vt = {0};
    for (size_t k = 0; k < o.n_ids; k++) {
        pd_progress_update(&bar, k, o.n_ids);
        struct pd_err err;
        pd_err_clear(&err);
        struct trace t;
        struct pd_step_rec *steps = NULL;
        size_t n_steps = 0;
        bool fresh = false;
        struct pd_prune_result res;
        struct pd_prune_check chk;
        enum pd_status s = trace_load(st, o.ids[k], &t, &err);
        if (s == PD_OK && mc.sc && !trace_scored(&t)) {
            s = dry ? score_tokens(st, &t, &mc, &err) : score_session(st, &t, &mc, &o.so, &err);
        }
        if (s == PD_OK) {
            s = trace_steps(&t, &o.so, &steps, &n_steps, &fresh, &err);
        }
        if (s == PD_OK && !dry) {
            /* prunes refer to stored steps; fresh metrics go in with them */
            s = fresh ? pd_store_steps_replace(st, t.id, steps, n_steps, &err)
                      : pd_store_steps_put(st, t.id, steps, n_steps, &err);
        }
        if (s == PD_OK) {
            s = pd_prune_select(t.toks, t.n, steps, n_steps, &pp, &res, &err);
        }
        if (s == PD_OK && !dry) {
            s = record_prunes(st, t.id, steps, n_steps, res.spec,
                              sk == PD_PRUNE_MANUAL ? "user" : "auto", &err);
        }
        if (s == PD_OK && verify) {
            if (!trace_scored(&t)) {
                s = pd_err_set(&err, PD_EINVAL, "verification needs a scored trace");
            } else {
                s = pd_prune_verify(mc.sc, t.toks, t.n, steps, n_steps, (uint32_t)n_greedy,
                                    &chk, &err);
            }
        }
        if (s == PD_OK && verify && !dry) {
            struct pd_prune_check_rec rec = {
                .strategy = res.spec, .answer_tokens = (int64_t)chk.n_answer,
                .logprob_full = chk.logprob_full, .logprob_pruned = chk.logprob_pruned,
                .greedy_compared = (int64_t)chk.n_compare, .greedy_same = chk.greedy_same};
            s = pd_store_prune_check_put(st, t.id, &rec, &err);
        }
        struct ref_check ref[2];
        bool has_ref = s == PD_OK && verify && t.reference && mc.tok;
        if (has_ref && (!ref_check(mc.tok, chk.greedy_full, chk.n_greedy_full, t.reference,
                                   &ref[0]) ||
                        !ref_check(mc.tok, chk.greedy_pruned, chk.n_greedy, t.reference,
                                   &ref[1]))) {
            s = pd_err_set(&err, PD_ENOMEM, "out of memory");
        }
        struct pd_step_check_rec *sc = NULL;
        size_t n_sc = 0;
        if (s == PD_OK && verify_steps) {
            s = verify_each_step(&mc, &t, steps, n_steps, (uint32_t)n_greedy, &sc, &n_sc, &err);
        }
        if (s == PD_OK && verify_steps && !dry) {
            s = pd_store_step_checks_put(st, t.id, sc, n_sc, &err);
        }
        pd_progress_clear(&bar);
        if (s == PD_OK && verify) {
            vt.n++;
            vt.n_changed += !chk.greedy_same;
            if (has_ref) {
                vt.n_ref++;
                for (int i = 0; i < 2; i++) {
                    vt.ref_right[i] += ref[i].verdict > 0;
                    vt.ref_none[i] += ref[i].verdict < 0;
                }
            }
            if (isfinite(chk.delta)) {
                vt.sum_delta += chk.delta;
                vt.n_delta++;
            }
        }
        if (s == PD_OK) {
            if (print_prune(&t, steps, n_steps, &res, verify ? &chk : NULL,
                            has_ref ? ref : NULL, sc, n_sc, o.json, &out)) {
                pd_cli_put(out.data, out.len, o.json);
                fflush(stdout);
                done[n_done++] = t.id;
            } else {
                s = pd_err_set(&err, PD_ENOMEM, "out of memory");
            }
        }
        if (s != PD_OK) {
            pd_err_prefix(&err, "session %lld", (long long)o.ids[k]);
            pd_cli_print_err(&err);
            rc = 1;
        }
        free(sc);
        free(steps);
        trace_free(&t);
    }
    pd_progress_update(&bar, o.n_ids, o.n_ids);
    char vsum[512] = "";
    if (verify) {
        verify_tally_text(&vt, vsum, sizeof vsum);
    }
    pd_progress_summary(&bar, "%zu trace%s pruned%s, %zu failed%s", n_done,
                        n_done == 1 ? "" : "s", dry ? " (dry run)" : "", o.n_ids - n_done,
                        vsum);
    if (out_path && n_done > 0) {
        struct pd_export_params ep = {.format = format, .session_ids = done,
                                      .n_session_ids = n_done};
        struct pd_export_result er;
        struct pd_err err;
        pd_err_clear(&err);
        if (pd_jsonl_export_file(st, out_path, &ep, &er, &err) != PD_OK) {
            pd_cli_print_err(&err);
            rc = 1;
        } else if (!o.json) {
            fprintf(stderr, "wrote %llu pruned trace%s to %s", (unsigned long long)er.n_written,
                    er.n_written == 1 ? "" : "s", out_path);
            if (er.n_skipped) {
                fprintf(stderr, " (%llu skipped: %s)", (unsigned long long)er.n_skipped,
                        er.skip_reason);
            }
            fputc('\n', stderr);
        }
    } else if (out_path) {
        rc = pd_cli_fail(1, "prune: no trace could be processed; %s not written", out_path);
    }
finish:
    pd_buf_deinit(&out);
    model_close(&mc);
    pd_store_close(&st);
    tmp_db_remove(&tmp);
    free(done);
    free(manual);
    free(o.ids);
    return rc;
}

/* ---- score --in / --session / --all --------------------------------------------------- */

static void score_usage(FILE *f)
{
    fprintf(f,
            "usage: ponder score -m MODEL (--in FILE | --session ID... | --all) [--db F]\n"
            "                    [--engine URL [--jobs N] [--retries N]]\n"
            "                    [--force] [--topk K] [--no-attn] [--chat FAMILY] [--markers]\n"
            "                    [--min-chars N] [-t N] [-c N] [--backend B] [--json]\n"
            "\n"
            "Scores stored reasoning traces with a model: each trace is rebuilt with the\n"
            "model's chat template (prompt, <think> thinking </think>, answer), teacher-forced,\n"
            "and its tokens are replaced by the model's tokens with logprob, entropy, top-k\n"
            "and an attention summary; its steps are segmented again and stored with their\n"
            "metrics (earlier steps and prunes of the trace are dropped).\n"
            "\n"
            "  --in FILE       import FILE (JSONL) into the database, then score those traces\n"
            "  --session ID    a stored session (repeatable)\n"
            "  --all           every stored session that has unscored tokens\n"
            "  --force         with --all: score every session again\n"
            "  --db F          database (default $XDG_DATA_HOME/ponder/ponder.db)\n"
            "  --topk K        alternatives kept per token (default 5, at most %d)\n"
            "  --no-attn       do not store attention summaries\n"
            "  --chat F        chat family (default: detected from the model)\n"
            "  --markers, --min-chars N   step segmentation as for analyze\n"
            "  -t, --threads N CPU threads;  -c, --ctx N  context slots (the longest trace)\n"
            "  --backend B     where the forward pass runs: cpu (default), cuda (the device\n"
            "                  engine) or auto (cuda when a GPU is present)\n"
            "  --jobs N        with --engine: N requests in flight at once (default 1)\n"
            "  --retries N     with --engine: attempts after a transient failure (default 8:\n"
            "                  backoff from 0.5 s, doubling up to 30 s, about 90 s in all)\n"
            "  --json          one JSON object per trace and line\n"
            "\n"
            "With --engine URL the traces are scored by a remote engine (-m gives the vocabulary\n"
            "and chat template): 429, 5xx and timeouts are retried with backoff, each session is\n"
            "stored as soon as it is scored (an interrupted --all resumes where it stopped), and\n"
            "a summary with tokens/s goes to stderr. Entropy from a remote engine is estimated\n"
            "from its top-k unless it is ponder serve.\n%s",
            PD_TOPK_MAX, pd_cli_engine_help);
}

bool pd_cli_score_batch_wanted(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--in") == 0 || strncmp(s, "--in=", 5) == 0 ||
            strcmp(s, "--session") == 0 || strncmp(s, "--session=", 10) == 0 ||
            strcmp(s, "--all") == 0) {
            return true;
        }
    }
    return false;
}

/* ---- score with concurrent requests ------------------------------------------------------

 * DESIGN
 * The main thread owns the store: it loads each trace, builds its model tokens, hands them
 * to a worker, and stores what comes back (tokens, model, steps) in completion order, one
 * session per transaction, so an interrupted run keeps every session finished so far and
 * `score --all` resumes with the rest. Each of the N workers owns a scorer (for a remote
 * engine: its own client and connection, so N requests are in flight at once; transient
 * failures are retried by the client with backoff). Jobs cross in two mutex-protected
 * lists; at most 2N are outstanding, which bounds memory. Ctrl-C stops handing out work,
 * cancels the requests in flight and reports what was done. */

struct score_job {
    struct trace t;               /* loaded by the main thread */
    struct pd_token_rec *toks;    /* owned: prepared, then scored by a worker */
    size_t n;
    enum pd_status st;
    struct pd_err err;
};

struct score_pool {
    pthread_mutex_t lock;
    pthread_cond_t todo_cond;
    pthread_cond_t done_cond;
    struct score_job **todo, **done; /* FIFOs of capacity cap */
    size_t n_todo, n_done, cap;
    bool closing;
    atomic_bool cancel;
};

struct score_worker {
    struct score_pool *pool;
    struct model_ctx mc;
    pthread_t thread;
    bool started;
};

static void *score_worker_main(void *arg)
{
    struct score_worker *w = arg;
    struct score_pool *p = w->pool;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (p->n_todo == 0 && !p->closing) {
            pthread_cond_wait(&p->todo_cond, &p->lock);
        }
        if (p->n_todo == 0) {
            pthread_mutex_unlock(&p->lock);
            break;
        }
        struct score_job *j = p->todo[0];
        memmove(p->todo, p->todo + 1, --p->n_todo * sizeof *p->todo);
        pthread_mutex_unlock(&p->lock);
        pd_err_clear(&j->err);
        j->st = atomic_load(&p->cancel)
                    ? pd_err_set(&j->err, PD_ECANCELLED, "interrupted")
                    : pd_score_trace(w->mc.sc, j->toks, j->n, &j->err);
        pthread_mutex_lock(&p->lock);
        p->done[p->n_done++] = j;
        pthread_cond_signal(&p->done_cond);
        pthread_mutex_unlock(&p->lock);
    }
    return NULL;
}

static void pool_cancel(struct score_pool *p, struct score_worker *w, size_t n)
{
    atomic_store(&p->cancel, true);
#if HAVE_REMOTE
    for (size_t i = 0; i < n; i++) {
        if (w[i].mc.r) {
            pd_remote_cancel(w[i].mc.r);
        }
    }
#else
    (void)w, (void)n;
#endif
}

static volatile sig_atomic_t g_score_interrupted;

static void on_score_sigint(int sig)
{
    (void)sig;
    g_score_interrupted = 1;
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Prints one scored session's line. */
static bool print_scored(const struct trace *t, bool json, struct pd_buf *out,
                         struct pd_err *err)
{
    struct pd_step_span *spans = pd_calloc(t->n_stored + 1, sizeof *spans);
    struct pd_trace_stats ts;
    bool ok = spans && pd_metrics_spans(t->toks, t->n, t->stored, t->n_stored, spans,
                                        err) == PD_OK;
    bool est = false;
    for (size_t i = 0; i < t->n; i++) {
        est = est || (t->toks[i].flags & PD_TOKF_ENTROPY_EST);
    }
    if (ok) {
        pd_metrics_trace(t->toks, t->n, t->stored, spans, t->n_stored, &ts);
        out->len = 0;
        if (json) {
            ok = pd_buf_printf(out, "{\"session\":%lld", (long long)t->id) &&
                 json_ki(out, "tokens", (long long)t->n) &&
                 json_ki(out, "steps", (long long)t->n_stored) &&
                 json_kn(out, "mean_surprisal", ts.mean_surprisal) &&
                 json_kn(out, "mean_entropy", ts.mean_entropy) &&
                 (!est || json_kb(out, "entropy_est", true)) && pd_buf_puts(out, "}\n");
        } else {
            ok = pd_buf_printf(out, "session %lld: scored %zu tokens, %zu steps, thinking mean "
                               "surprisal %.3f bits, mean entropy %.3f bits%s\n",
                               (long long)t->id, t->n, t->n_stored, ts.mean_surprisal,
                               ts.mean_entropy, est ? " (estimated from the top-k)" : "");
        }
        if (ok) {
            pd_cli_put(out->data, out->len, json);
            fflush(stdout);
        }
    }
    free(spans);
    if (!ok && !err->msg[0]) {
        pd_err_set(err, PD_ENOMEM, "out of memory");
    }
    return ok;
}

int pd_cli_score_in(int argc, char **argv)
{
    struct common_opts o;
    if (!common_init(&o, argc)) {
        return pd_cli_fail(1, "score: out of memory");
    }
    bool force = false, bad = false;
    const char *v = NULL;
    long long topk = 5, jobs = 1;
    struct pd_argv a = {argc, argv, 1, "score"};
    while (a.i < argc && !bad) {
        if (strcmp(argv[a.i], "--help") == 0 || strcmp(argv[a.i], "-h") == 0) {
            score_usage(stdout);
            free(o.ids);
            return 0;
        }
        int r = parse_common(&a, &o);
        if (r < 0) {
            bad = true;
        } else if (r > 0) {
            continue;
        } else if (pd_arg_match(&a, "--force", NULL, NULL, &bad)) {
            force = true;
        } else if (pd_arg_match(&a, "--no-attn", NULL, NULL, &bad)) {
            o.mo.attn = false;
        } else if (pd_arg_match(&a, "--topk", "-k", &v, &bad)) {
            if (!bad && !pd_arg_long("score", "--topk", v, 0, PD_TOPK_MAX, &topk)) {
                bad = true;
            }
        } else if (pd_arg_match(&a, "--jobs", "-j", &v, &bad)) {
            if (!bad && !pd_arg_long("score", "--jobs", v, 1, 256, &jobs)) {
                bad = true;
            }
        } else if (pd_arg_match(&a, "--retries", NULL, &v, &bad)) {
            long long n = 0;
            if (!bad && !pd_arg_long("score", "--retries", v, 0, 30, &n)) {
                bad = true;
            }
            o.mo.retries = (uint32_t)n;
        } else {
            pd_cli_fail(2, "score: unexpected argument '%s'", argv[a.i]);
            bad = true;
        }
    }
    o.mo.topk = (uint32_t)topk;
    if (!bad && !common_check_source(&o, "score")) {
        bad = true;
    }
    if (!bad && !o.mo.path) {
        bad = pd_cli_fail(2, "score: -m MODEL is required (with --engine: its vocabulary and "
                             "chat template)") != 0;
    }
    if (!bad && force && !o.all) {
        bad = pd_cli_fail(2, "score: --force applies to --all") != 0;
    }
    if (!bad && jobs > 1 && !o.mo.eng.url) {
        bad = pd_cli_fail(2, "score: --jobs needs --engine URL (in this process one scorer "
                             "already uses every core)") != 0;
    }
    if (bad) {
        free(o.ids);
        return 2;
    }
    int rc = 0;
    struct pd_buf out;
    pd_buf_init(&out);
    struct score_pool pool;
    memset(&pool, 0, sizeof pool);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.todo_cond, NULL);
    pthread_cond_init(&pool.done_cond, NULL);
    atomic_init(&pool.cancel, false);
    size_t n_workers = (size_t)jobs;
    struct score_worker *w = pd_calloc(n_workers, sizeof *w);
    pool.cap = 2 * n_workers + 1;
    pool.todo = pd_calloc(pool.cap, sizeof *pool.todo);
    pool.done = pd_calloc(pool.cap, sizeof *pool.done);
    struct pd_store *st = NULL;
    if (!w || !pool.todo || !pool.done) {
        rc = pd_cli_fail(1, "score: out of memory");
        goto finish;
    }
    st = common_open(&o, NULL, true, &rc);
    if (!st) {
        goto finish;
    }
    for (size_t i = 0; i < n_workers; i++) {
        w[i].pool = &pool;
        if (!model_open(&o.mo, &w[i].mc)) {
            rc = 1;
            goto finish;
        }
    }
    for (size_t i = 0; i < n_workers; i++) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        w[i].started = pthread_create(&w[i].thread, NULL, score_worker_main, &w[i]) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!w[i].started) {
            rc = pd_cli_fail(1, "score: cannot start a worker thread");
            goto finish;
        }
    }
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_score_sigint;
    sigemptyset(&sa.sa_mask);
    g_score_interrupted = 0;
    sigaction(SIGINT, &sa, &old_sa);
    struct pd_cli_progress bar;
    pd_cli_progress_init(&bar, "score");
    size_t next = 0, in_flight = 0, n_scored = 0, n_failed = 0, n_seen = 0;
    uint64_t n_tokens = 0;
    double t0 = now_mono();
    while (next < o.n_ids || in_flight > 0) {
        if (g_score_interrupted && !atomic_load(&pool.cancel)) {
            pool_cancel(&pool, w, n_workers);
        }
        /* hand out work while there is room */
        while (next < o.n_ids && in_flight < 2 * n_workers && !atomic_load(&pool.cancel)) {
            struct pd_err err;
            pd_err_clear(&err);
            struct score_job *j = calloc(1, sizeof *j);
            int64_t id = o.ids[next++];
            enum pd_status s = j ? trace_load(st, id, &j->t, &err)
                                 : pd_err_set(&err, PD_ENOMEM, "out of memory");
            if (s == PD_OK && o.all && !force && (trace_scored(&j->t) || j->t.n == 0)) {
                trace_free(&j->t);
                free(j);
                n_seen++;
                continue;
            }
            if (s == PD_OK) {
                s = prepare_tokens(st, &j->t, &w[0].mc, &j->toks, &j->n, &err);
            }
            if (s != PD_OK) {
                pd_cli_progress_clear(&bar);
                pd_err_prefix(&err, "session %lld", (long long)id);
                pd_cli_print_err(&err);
                rc = 1;
                n_failed++;
                n_seen++;
                if (j) {
                    pd_score_tokens_free(j->toks, j->n);
                    trace_free(&j->t);
                    free(j);
                }
                continue;
            }
            pthread_mutex_lock(&pool.lock);
            pool.todo[pool.n_todo++] = j;
            pthread_cond_signal(&pool.todo_cond);
            pthread_mutex_unlock(&pool.lock);
            in_flight++;
        }
        if (in_flight == 0) {
            break;
        }
        /* take one finished job (waking up now and then for Ctrl-C) */
        pthread_mutex_lock(&pool.lock);
        if (pool.n_done == 0) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 200000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&pool.done_cond, &pool.lock, &until);
        }
        struct score_job *j = NULL;
        if (pool.n_done > 0) {
            j = pool.done[0];
            memmove(pool.done, pool.done + 1, --pool.n_done * sizeof *pool.done);
        }
        pthread_mutex_unlock(&pool.lock);
        if (!j) {
            continue;
        }
        in_flight--;
        n_seen++;
        enum pd_status s = j->st;
        if (s == PD_OK) {
            take_scored(&j->t, j->toks, j->n);
            j->toks = NULL;
            s = store_scored(st, &j->t, &w[0].mc, &o.so, &j->err);
        }
        pd_cli_progress_clear(&bar);
        if (s == PD_OK && print_scored(&j->t, o.json, &out, &j->err)) {
            n_scored++;
            n_tokens += j->t.n;
        } else if (s != PD_ECANCELLED) {
            pd_err_prefix(&j->err, "session %lld", (long long)j->t.id);
            pd_cli_print_err(&j->err);
            rc = 1;
            n_failed++;
        }
        pd_score_tokens_free(j->toks, j->n);
        trace_free(&j->t);
        free(j);
        pd_cli_progress_draw(&bar, n_seen, o.n_ids);
    }
    pd_cli_progress_clear(&bar);
    sigaction(SIGINT, &old_sa, NULL);
    double secs = now_mono() - t0;
    uint64_t retries = 0;
#if HAVE_REMOTE
    for (size_t i = 0; i < n_workers; i++) {
        retries += w[i].mc.r ? pd_remote_retries(w[i].mc.r) : 0;
    }
#endif
    if (g_score_interrupted) {
        fprintf(stderr, "score: interrupted; %zu sessions were scored and stored (run the same "
                        "command again to score the rest)\n", n_scored);
        rc = 130;
    } else if (n_scored == 0 && rc == 0 && !o.json) {
        fprintf(stderr, "score: nothing to score\n");
    }
    if (n_scored > 0) {
        fprintf(stderr, "score: %zu session%s, %llu tokens in %.2f s: %.1f tokens/s, %.3g "
                        "sessions/s (%lld job%s%s%s), %llu retries, %zu failed\n",
                n_scored, n_scored == 1 ? "" : "s", (unsigned long long)n_tokens, secs,
                secs > 0 ? (double)n_tokens / secs : 0.0,
                secs > 0 ? (double)n_scored / secs : 0.0, jobs, jobs == 1 ? "" : "s",
                o.mo.eng.url ? ", engine " : "", o.mo.eng.url ? o.mo.eng.url : "",
                (unsigned long long)retries, n_failed);
    }
finish:
    pthread_mutex_lock(&pool.lock);
    pool.closing = true;
    pthread_cond_broadcast(&pool.todo_cond);
    pthread_mutex_unlock(&pool.lock);
    for (size_t i = 0; w && i < n_workers; i++) {
        if (w[i].started) {
            pthread_join(w[i].thread, NULL);
        }
        model_close(&w[i].mc);
    }
    /* jobs left in the lists (an early failure) */
    for (size_t i = 0; i < pool.n_todo; i++) {
        pd_score_tokens_free(pool.todo[i]->toks, pool.todo[i]->n);
        trace_free(&pool.todo[i]->t);
        free(pool.todo[i]);
    }
    for (size_t i = 0; i < pool.n_done; i++) {
        pd_score_tokens_free(pool.done[i]->toks, pool.done[i]->n);
        trace_free(&pool.done[i]->t);
        free(pool.done[i]);
    }
    free(pool.todo);
    free(pool.done);
    free(w);
    pthread_mutex_destroy(&pool.lock);
    pthread_cond_destroy(&pool.todo_cond);
    pthread_cond_destroy(&pool.done_cond);
    pd_buf_deinit(&out);
    pd_store_close(&st);
    free(o.ids);
    return rc;
}
