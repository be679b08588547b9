/* cli_samples.c - `ponder generate --in PROMPTS.jsonl --samples K`: K recorded generations
 * per prompt, the samples `analyze --pass-rate` grades (docs/export.md, "Samples and
 * difficulty"). pd_cli_generate (cli_model.c) hands over when --in is given.
 *
 * Contract:
 *   generate -m MODEL --in FILE [--samples K] [-n N] [--temp T] [--top-k K] [--top-p P]
 *            [--min-p P] [--seed S] [--mode M] [-t N] [-c N] [--db F] [--json]
 *       FILE holds prompts in any shape `ponder import` reads (a completion, if present,
 *       is ignored, except that a completion without thinking is the reference answer of a
 *       prompt that has none: {"question": Q, "answer": "24"}); each prompt's conversation
 *       must be [system] user. It is read through a temporary database. For every
 *       prompt, K sessions are generated with seeds S, S+1, ..., S+K-1 and recorded in
 *       --db (the default database) with the prompt's conversation, its reference answer
 *       (answer / solution / gold), the model and the settings, source
 *       "generate:FILE:LINE#k"; each finished sample's steps are segmented and stored
 *       with their metrics. One line per sample: text, or
 *       {"line","sample","session","tokens","stop"}. K > 1 needs --temp > 0 (greedy
 *       samples are all the same). Exit 1 when any prompt or sample failed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"
#include "chat.h"
#include "cli.h"
#include "lm.h"
#include "metrics.h"
#include "model_id.h"
#include "modes.h"
#include "session.h"
#include "steps.h"
#include "store.h"
#include "store_jsonl.h"
#include "store_replay.h"
#include "store_writer.h"

#define SAMPLES_MAX 1000

struct samples_opts {
    const char *model, *in, *db, *mode;
    long long k, n_gen, threads, n_ctx;
    struct pd_sampler_params sp;
    bool json;
};

bool pd_cli_generate_in_wanted(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--in") == 0 || strncmp(argv[i], "--in=", 5) == 0) {
            return true;
        }
    }
    return false;
}

static const char usage[] =
    "usage: ponder generate -m MODEL --in FILE [--samples K] [-n N] [--temp T]\n"
    "                       [--top-k K] [--top-p P] [--min-p P] [--seed S] [--mode M]\n"
    "                       [-t N] [-c N] [--db F] [--json]\n"
    "\n"
    "Generates K samples for every prompt of FILE (JSONL as 'ponder import' reads it,\n"
    "[system] user; reference answers from answer/solution/gold) and records each as a\n"
    "session with its steps, for 'ponder analyze --pass-rate'. Seeds S, S+1, ...\n"
    "\n"
    "  --samples K   samples per prompt (default 1, at most 1000; K > 1 needs --temp > 0)\n"
    "  -n N          tokens per sample (default 256; 0 = until end of generation)\n"
    "  --db F        database the samples go to (default $XDG_DATA_HOME/ponder/ponder.db)\n"
    "  --json        one JSON object per sample\n";

/* Parses the options; returns 0 ok, or the exit status of a usage error or --help. */
static int parse(int argc, char **argv, struct samples_opts *o, bool *help)
{
    memset(o, 0, sizeof *o);
    o->k = 1;
    o->n_gen = 256;
    o->sp = pd_sampler_default_params();
    struct pd_argv a = {argc, argv, 1, "generate"};
    bool bad = false;
    double d;
    long long ll;
    while (a.i < argc && !bad) {
        const char *v = NULL;
        if (strcmp(argv[a.i], "--help") == 0 || strcmp(argv[a.i], "-h") == 0) {
            *help = true;
            return 0;
        }
        if (pd_arg_match(&a, "--model", "-m", &o->model, &bad) ||
            pd_arg_match(&a, "--in", NULL, &o->in, &bad) ||
            pd_arg_match(&a, "--db", NULL, &o->db, &bad) ||
            pd_arg_match(&a, "--mode", NULL, &o->mode, &bad)) {
            continue;
        } else if (pd_arg_match(&a, "--samples", NULL, &v, &bad)) {
            bad = bad || !pd_arg_long("generate", "--samples", v, 1, SAMPLES_MAX, &o->k);
        } else if (pd_arg_match(&a, "--n-predict", "-n", &v, &bad)) {
            bad = bad || !pd_arg_long("generate", "-n", v, 0, 1 << 22, &o->n_gen);
        } else if (pd_arg_match(&a, "--threads", "-t", &v, &bad)) {
            bad = bad || !pd_arg_long("generate", "--threads", v, 1, 1024, &o->threads);
        } else if (pd_arg_match(&a, "--ctx", "-c", &v, &bad)) {
            bad = bad || !pd_arg_long("generate", "--ctx", v, 16, 1 << 22, &o->n_ctx);
        } else if (pd_arg_match(&a, "--temp", NULL, &v, &bad)) {
            if (!bad && (!pd_arg_double("generate", "--temp", v, &d) || d < 0 || d > 100)) {
                return pd_cli_fail(2, "generate: --temp: expected a number in [0, 100]");
            }
            o->sp.temperature = (float)d;
        } else if (pd_arg_match(&a, "--top-p", NULL, &v, &bad)) {
            if (!bad && (!pd_arg_double("generate", "--top-p", v, &d) || d <= 0 || d > 1)) {
                return pd_cli_fail(2, "generate: --top-p: expected a number in (0, 1]");
            }
            o->sp.top_p = (float)d;
        } else if (pd_arg_match(&a, "--min-p", NULL, &v, &bad)) {
            if (!bad && (!pd_arg_double("generate", "--min-p", v, &d) || d < 0 || d > 1)) {
                return pd_cli_fail(2, "generate: --min-p: expected a number in [0, 1]");
            }
            o->sp.min_p = (float)d;
        } else if (pd_arg_match(&a, "--top-k", NULL, &v, &bad)) {
            bad = bad || !pd_arg_long("generate", "--top-k", v, 0, 1 << 24, &ll);
            o->sp.top_k = (int32_t)ll;
        } else if (pd_arg_match(&a, "--seed", NULL, &v, &bad)) {
            bad = bad || !pd_arg_long("generate", "--seed", v, 0, INT64_MAX, &ll);
            o->sp.seed = (uint64_t)ll;
        } else if (pd_arg_match(&a, "--json", NULL, NULL, &bad)) {
            o->json = true;
        } else {
            return pd_cli_fail(2, "generate: --in: unknown option '%s' (see 'ponder generate "
                                  "--in x --help')", argv[a.i]);
        }
    }
    if (bad) {
        return 2;
    }
    if (!o->model || !o->in) {
        return pd_cli_fail(2, "generate: -m MODEL and --in FILE are required");
    }
    if (o->k > 1 && !(o->sp.temperature > 0)) {
        return pd_cli_fail(2, "generate: --samples %lld needs --temp > 0 (greedy samples are "
                              "all the same)", o->k);
    }
    return 0;
}

/* A temporary database for the prompt file; removed by tmp_remove. */
struct tmp_db {
    char dir[4096];
    char path[4200];
};

static void tmp_remove(struct tmp_db *t)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; t->dir[0] && i < sizeof suffix / sizeof suffix[0]; i++) {
        char p[4300];
        snprintf(p, sizeof p, "%s%s", t->path, suffix[i]);
        unlink(p);
    }
    if (t->dir[0]) {
        rmdir(t->dir);
    }
}

static void on_import_error(void *ud, const struct pd_err *e)
{
    (void)ud;
    pd_cli_print_err(e);
}

/* Segments a recorded sample's tokens and stores its steps with their metrics. */
static enum pd_status store_steps(struct pd_store *st, int64_t sid, struct pd_err *err)
{
    struct pd_replay *r = NULL;
    enum pd_status rc = pd_replay_open(st, sid, &r, err);
    if (rc != PD_OK) {
        return rc;
    }
    int64_t len = pd_replay_length(r);
    struct pd_token_rec *t = pd_calloc(len > 0 ? (size_t)len : 1, sizeof *t);
    size_t n = 0;
    rc = t ? PD_OK : pd_err_set(err, PD_ENOMEM, "out of memory");
    while (rc == PD_OK && n < (size_t)len) {
        size_t got = 0;
        rc = pd_replay_read(r, t + n, (size_t)len - n, &got, err);
        n += got;
        if (got == 0) {
            break;
        }
    }
    pd_replay_close(&r);
    struct pd_steps_list l;
    pd_steps_list_init(&l);
    struct pd_steps_params sp = pd_steps_default_params();
    if (rc == PD_OK) {
        rc = pd_steps_segment(t, n, &sp, &l, err);
    }
    if (rc == PD_OK) {
        rc = pd_metrics_steps(t, n, l.items, l.n, NULL, err);
    }
    if (rc == PD_OK) {
        rc = pd_store_steps_replace(st, sid, l.items, l.n, err);
    }
    pd_steps_list_deinit(&l);
    for (size_t i = 0; i < n; i++) {
        pd_token_rec_free(&t[i]);
    }
    free(t);
    return rc;
}

/* The reference answer of prompt session id: its own, or else its completion when that has
 * no thinking (the record's answer field was taken as the completion). *out owned. */
static enum pd_status prompt_reference(struct pd_store *pst,
                                       const struct pd_store_session_info *prompt, char **out,
                                       struct pd_err *err)
{
    *out = NULL;
    if (prompt->reference) {
        *out = pd_strdup(prompt->reference);
        return *out ? PD_OK : pd_err_set(err, PD_ENOMEM, "out of memory");
    }
    char *text = NULL;
    size_t len = 0;
    enum pd_status rc = pd_jsonl_session_final(pst, prompt->id, true, &text, &len, NULL, NULL,
                                               err);
    if (rc == PD_OK && text && len > 0 && strncmp(text, "<think>", 7) != 0) {
        *out = text;
        text = NULL;
    }
    free(text);
    return rc;
}

/* One sample of one prompt, recorded as a new session; *sid, *n_tok and stop filled. */
static enum pd_status sample(const struct samples_opts *o, const struct pd_lm *lm,
                             struct pd_store *st, int64_t model_id,
                             const struct pd_store_session_info *prompt, const char *reference,
                             const struct pd_message *msgs, size_t n_msgs, int k,
                             int64_t *sid, long long *n_tok, char stop[16], struct pd_err *err)
{
    const char *system = n_msgs == 2 ? msgs[0].content : NULL;
    const char *user = msgs[n_msgs - 1].content;
    struct pd_session_params sp = pd_session_default_params();
    sp.ctx.n_threads = (int)o->threads;
    sp.ctx.n_ctx = (uint32_t)o->n_ctx;
    sp.sampling = o->sp;
    sp.sampling.seed = o->sp.seed + (uint64_t)k;
    sp.n_predict = (uint32_t)o->n_gen;
    sp.chat = lm->chat;
    uint32_t budget = 0;
    enum pd_status rc = o->mode ? pd_think_mode_parse(o->mode, &sp.mode, &budget, err) : PD_OK;
    sp.think_budget = sp.mode == PD_MODE_SHORT ? (budget ? budget : 512) : 0;
    sp.min_think = sp.mode == PD_MODE_LONG ? budget : 0;
    char mode_text[32];
    if (sp.mode == PD_MODE_SHORT) {
        snprintf(mode_text, sizeof mode_text, "short:%u", sp.think_budget);
    } else {
        snprintf(mode_text, sizeof mode_text, "%s", pd_think_mode_name(sp.mode));
    }
    struct pd_run_settings rs = {.temperature = sp.sampling.temperature,
                                 .top_p = sp.sampling.top_p, .top_k = sp.sampling.top_k,
                                 .min_p = sp.sampling.min_p, .seed = sp.sampling.seed,
                                 .mode = mode_text, .kv_policy = "full",
                                 .chat_template = (char *)pd_chat_family_name(lm->chat.family)};
    char source[700];
    const char *where = strncmp(prompt->source, "import:", 7) == 0 ? prompt->source + 7
                                                                    : prompt->source;
    snprintf(source, sizeof source, "generate:%s#%d", where, k);
    struct pd_session_new sn = {.model_id = model_id, .settings = &rs, .messages = msgs,
                                .n_messages = n_msgs, .source = source,
                                .reference = reference};
    struct pd_session *sess = NULL;
    struct pd_store_writer *w = NULL;
    if (rc == PD_OK) {
        rc = pd_store_session_create(st, &sn, sid, err);
    }
    if (rc == PD_OK) {
        rc = pd_store_writer_open(st, *sid, NULL, &w, err);
    }
    if (rc == PD_OK) {
        rc = pd_session_open(lm->model, lm->tok, &sp, &sess, err);
    }
    if (rc == PD_OK) {
        rc = pd_session_start(sess, system, user, err);
    }
    snprintf(stop, 16, "stopped");
    *n_tok = 0;
    bool done = rc != PD_OK;
    while (!done) {
        struct pd_event ev;
        if (!pd_session_wait(sess, &ev, 1000)) {
            continue;
        }
        if (ev.kind == PD_EV_TOKEN) {
            (*n_tok)++;
            rc = pd_store_writer_push_token(w, &ev.tok, err);
        } else if (ev.kind == PD_EV_EVICT) {
            rc = pd_store_writer_push_kv(w, &ev.kv, err);
        } else if (ev.kind == PD_EV_ERROR) {
            rc = pd_err_set(err, PD_EINVAL, "generation failed: %s", ev.text);
        } else if (ev.kind == PD_EV_FINISHED) {
            snprintf(stop, 16, "%s", strcmp(ev.text, "eog") == 0       ? "eog"
                                     : strcmp(ev.text, "length") == 0  ? "length"
                                     : strcmp(ev.text, "context") == 0 ? "context"
                                                                       : "stopped");
            done = true;
        }
        done = done || rc != PD_OK;
        pd_event_free(&ev);
    }
    pd_session_close(&sess);
    bool finished = rc == PD_OK && (strcmp(stop, "eog") == 0 || strcmp(stop, "length") == 0);
    struct pd_err e2;
    if (w && pd_store_writer_close(&w, finished, &e2) != PD_OK && rc == PD_OK) {
        rc = e2.status;
        *err = e2;
    }
    if (rc == PD_OK) {
        rc = store_steps(st, *sid, err);
    }
    return rc;
}

int pd_cli_generate_in(int argc, char **argv)
{
    struct samples_opts o;
    bool help = false;
    int prc = parse(argc, argv, &o, &help);
    if (help) {
        fputs(usage, stdout);
        return 0;
    }
    if (prc) {
        return prc;
    }
    struct tmp_db tmp = {{0}, {0}};
    const char *base = getenv("TMPDIR");
    snprintf(tmp.dir, sizeof tmp.dir, "%s/ponder-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp.dir)) {
        return pd_cli_fail(1, "generate: cannot create a temporary folder under %s",
                           base && *base ? base : "/tmp");
    }
    snprintf(tmp.path, sizeof tmp.path, "%s/prompts.db", tmp.dir);
    int rc = 0;
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_store *pst = pd_cli_open_db(tmp.path, PD_CLI_DB_CREATE);
    struct pd_store *st = NULL;
    struct pd_lm lm = {0};
    struct pd_store_session_info *prompts = NULL;
    size_t n_prompts = 0;
    int64_t model_id = 0;
    struct pd_import_params ip = {.on_error = on_import_error};
    struct pd_import_result ir;
    if (!pst) {
        rc = 1;
        goto out;
    }
    if (pd_jsonl_import_file(pst, o.in, &ip, &ir, &err) != PD_OK ||
        pd_store_session_list(pst, &prompts, &n_prompts, &err) != PD_OK) {
        if (err.msg[0]) {
            pd_cli_print_err(&err);
        }
        rc = 1;
        goto out;
    }
    rc = ir.n_failed ? 1 : 0;
    if (!(st = pd_cli_open_db(o.db, PD_CLI_DB_CREATE))) {
        rc = 1;
        goto out;
    }
    if (pd_lm_open(o.model, PD_CHAT_FAMILY_COUNT, &lm, &err) != PD_OK ||
        pd_cli_model_put(st, lm.model, o.model, &model_id, &err) != PD_OK) {
        pd_cli_print_err(&err);
        rc = 1;
        goto out;
    }
    for (size_t i = 0; i < n_prompts; i++) {
        struct pd_message *msgs = NULL;
        size_t n_msgs = 0;
        pd_err_clear(&err);
        if (pd_store_messages_get(pst, prompts[i].id, &msgs, &n_msgs, &err) != PD_OK ||
            !(n_msgs == 1 || (n_msgs == 2 && msgs[0].role == PD_STORE_MSG_SYSTEM)) ||
            msgs[n_msgs - 1].role != PD_STORE_MSG_USER) {
            if (!err.msg[0]) {
                pd_err_set(&err, PD_EINVAL, "%s: a prompt is [system] user", prompts[i].source);
            }
            pd_cli_print_err(&err);
            pd_store_messages_free(msgs, n_msgs);
            rc = 1;
            continue;
        }
        char *ref = NULL;
        if (prompt_reference(pst, &prompts[i], &ref, &err) != PD_OK) {
            pd_cli_print_err(&err);
            rc = 1;
        }
        for (int k = 0; k < (int)o.k; k++) {
            int64_t sid = 0;
            long long n_tok = 0;
            char stop[16];
            pd_err_clear(&err);
            if (sample(&o, &lm, st, model_id, &prompts[i], ref, msgs, n_msgs, k, &sid, &n_tok,
                       stop, &err) != PD_OK) {
                pd_err_prefix(&err, "%s sample %d", prompts[i].source, k);
                pd_cli_print_err(&err);
                rc = 1;
                continue;
            }
            const char *where = prompts[i].source + (strncmp(prompts[i].source, "import:", 7)
                                                         ? 0 : 7);
            const char *colon = strrchr(where, ':');
            long long line = colon ? atoll(colon + 1) : 0;
            if (o.json) {
                printf("{\"line\":%lld,\"sample\":%d,\"session\":%lld,\"tokens\":%lld,"
                       "\"stop\":\"%s\"}\n", line, k, (long long)sid, n_tok, stop);
            } else {
                printf("line %lld sample %d: session %lld, %lld tokens (%s)\n", line, k,
                       (long long)sid, n_tok, stop);
            }
            fflush(stdout);
        }
        free(ref);
        pd_store_messages_free(msgs, n_msgs);
    }
out:
    for (size_t i = 0; i < n_prompts; i++) {
        pd_store_session_info_free(&prompts[i]);
    }
    free(prompts);
    pd_lm_close(&lm);
    pd_store_close(&st);
    pd_store_close(&pst);
    tmp_remove(&tmp);
    return rc;
}
