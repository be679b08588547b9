/* run.c - the interactive subcommands: `run` (live workbench on a model), `replay`
 * (a saved session), `keys` (the key reference), and what `ponder` does with no
 * arguments (the workbench on $PONDER_MODEL, else on the reasoner shipped in
 * samples/models thinking about a sample question, else on the first model of the test
 * models folder, else the recorded sample session from samples/, loaded into a temporary
 * database).
 *
 * Contracts:
 *   run -m MODEL (-p PROMPT | -f FILE | --from SESSION[@POS]) [--system TEXT]
 *       [--mode long|short[:N]|none]
 *       [--kv SPEC] [--capture off|summary|full] [--db FILE | --no-record] [-n N]
 *       [--topk K] [--ctx N] [-t N] [--greedy | --temp T --top-k K --top-p P --min-p P
 *       --seed S] [--chat FAMILY] [--throttle MS] [--stats]
 *   replay [SESSION] [--db FILE] [--speed TOK/S] [--play] [--stats]
 *          [-m MODEL [-n N] [--ctx N] [-t N] [--no-record]]
 *       SESSION defaults to the newest session. With -m the session is re-opened live
 *       (as run --from SESSION). --from re-encodes the saved trace (up to POS) with the
 *       model; what is generated from it records as a branch of that session.
 *   keys [--markdown]
 * Exit status: 0 ok, 1 runtime failure, 2 usage, 130 quit by Ctrl-C with unsaved edits
 * (they are listed on stderr). On exit the live workbench prints which
 * session it recorded to stderr; --stats prints frame and key-latency numbers there. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "app.h"
#include "mem.h"
#include "utf8.h"
#include "cli.h"
#include "tui.h"
#include "keys.h"
#include "live.h"
#include "loop.h"
#include "store.h"
#include "store_io.h"
#include "store_jsonl.h"
#include "term.h"

#define DEFAULT_PROMPT "Once upon a time, there was a girl who asked why the sky is blue."
/* The model ponder ships (samples/models, docs/reasoner.md) and the question its demo asks. */
#define REASONER_MODEL "models/reasoner.gguf"
#define REASONER_QUESTION "What is 47 * 36?"

static void print_stats(const struct pd_app *a)
{
    const struct pd_app_stats *s = &a->stats;
    fprintf(stderr,
            "ponder: stats: %llu frames, draw %.3f ms mean / %.3f ms max; %llu keys, key to "
            "frame %.3f ms mean / %.3f ms max\n",
            (unsigned long long)s->frames, s->frames ? s->draw_ms_sum / (double)s->frames : 0.0,
            s->draw_ms_max, (unsigned long long)s->keys,
            s->key_frames ? s->key_lat_ms_sum / (double)s->key_frames : 0.0, s->key_lat_ms_max);
}

/* Opens the terminal, runs the loop, restores the terminal. */
static int workbench(struct pd_app *a, const struct pd_loop_source *src)
{
    struct pd_err err;
    pd_err_clear(&err);
    if (pd_term_open(&err)) {
        pd_cli_print_err(&err);
        return 1;
    }
    pd_loop_run(a, src);
    pd_term_close();
    if (a->quit_discarded) {
        size_t prunes, tags, prefs;
        pd_app_unsaved_counts(a, &prunes, &tags, &prefs);
        fprintf(stderr, "ponder: quit without saving: %zu prune%s, %zu tag%s%s discarded\n",
                prunes, prunes == 1 ? "" : "s", tags, tags == 1 ? "" : "s",
                prefs ? " and a preference" : "");
        return a->interrupted ? 130 : 0; /* Ctrl-C that dropped edits: as an interrupt */
    }
    return 0;
}

/* ---- run ----------------------------------------------------------------------------- */

static const char run_usage[] =
    "usage: ponder run -m MODEL (-p PROMPT | -f FILE) [options]\n"
    "       ponder run --engine URL (-m MODEL | --chat FAMILY) (-p PROMPT | -f FILE) ...\n"
    "  -m, --model FILE      GGUF model\n"
    "  -p, --prompt TEXT     the user's question\n"
    "  -f, --file FILE       read the prompt from a file (UTF-8, at most 1 MiB)\n"
    "  --from SESSION[@POS]  re-open a saved session (up to position POS) with the model:\n"
    "                        continue, branch or steer it; new tokens record as a branch\n"
    "  --system TEXT         system message\n"
    "  --mode M              long | long:MIN | short | short:BUDGET | none\n"
    "  --kv SPEC             KV policy, e.g. h2o:64 or window:128,shadow\n"
    "  --capture LEVEL       attention capture: off | summary (default) | full\n"
    "  --db FILE             database to record into (default: the user database)\n"
    "  --no-record           do not record\n"
    "  -n, --n-predict N     stop after N generated tokens (default: end of generation)\n"
    "  --topk K              alternatives kept per token (default 5, at most 20)\n"
    "  -c, --ctx N           KV cache slots\n"
    "  -t, --threads N       CPU threads\n"
    "  --greedy | --temp T --top-k K --top-p P --min-p P --seed S   sampling\n"
    "  --chat FAMILY         chat template override (raw, chatml, qwen3, deepseek-r1, llama3)\n"
    "  --backend B           weight products on cpu (default) or cuda\n"
    "  --throttle MS         sleep between tokens (demos, tests)\n"
    "  --engine URL          run on a remote engine (docs/remote.md): -m (or --chat) gives\n"
    "                        the vocabulary and template; entropy is estimated from the\n"
    "                        engine's top-k, the KV and attention views need ponder serve\n"
    "  --api-key K, --remote-model N, --server KIND, --timeout S   as for generate\n";


/* One live run in the workbench; *rerun gets the question (and system message) to ask
 * next when the user ended it with :question or :system (owned by the caller). */
static int run_live_once(const struct pd_live_opts *o, bool stats, char **rerun_q,
                         char **rerun_sys)
{
    struct pd_app app;
    struct pd_err err;
    pd_err_clear(&err);
    if (pd_app_init(&app, PD_APP_LIVE, &err) ||
        pd_app_set_question(&app, o->from_session ? NULL : o->prompt, o->system, &err)) {
        pd_cli_print_err(&err);
        pd_app_deinit(&app);
        return 1;
    }
    struct pd_live *live = NULL;
    if (pd_live_open(o, &app, &live, &err)) {
        pd_cli_print_err(&err);
        pd_app_deinit(&app);
        return 1;
    }
    struct pd_loop_source src = {pd_live_fd, pd_live_pump, pd_live_exec, live};
    int rc = workbench(&app, &src);
    char db[PATH_MAX];
    snprintf(db, sizeof db, "%s", pd_live_db_path(live));
    struct pd_live_report rep;
    pd_live_close(&live, &app, &rep);
    if (db[0] && rep.n_lost > 0) {
        pd_cli_fail(1, "session %lld in %s: %lld tokens recorded, %llu NOT saved: %s",
                    (long long)rep.session_id, db, (long long)rep.n_saved,
                    (unsigned long long)rep.n_lost, rep.why);
        rc = rc ? rc : 1;
    } else if ((rc == 0 || rc == 130) && db[0]) {
        fprintf(stderr, "ponder: session %lld recorded in %s (%lld tokens)\n",
                (long long)rep.session_id, db, (long long)rep.n_saved);
    }
    if (stats) {
        print_stats(&app);
    }
    if (rc == 0 && app.rerun) {
        *rerun_q = app.rerun_question;
        *rerun_sys = app.rerun_system;
        app.rerun_question = app.rerun_system = NULL;
    }
    pd_app_deinit(&app);
    return rc;
}

/* Runs the workbench until it ends without asking again (:question / :system start the
 * next run as a new root session with the same model, database and settings). */
static int run_live(struct pd_live_opts *o, bool stats)
{
    char *q = NULL, *sys = NULL;
    int rc;
    for (;;) {
        char *nq = NULL, *nsys = NULL;
        rc = run_live_once(o, stats, &nq, &nsys);
        if (!nq) {
            break;
        }
        free(q);
        free(sys);
        q = nq;
        sys = nsys;
        o->prompt = q;
        o->system = sys;
        o->from_session = 0;
        o->from_pos = 0;
        fprintf(stderr, "ponder: asking again as a new session\n");
    }
    free(q);
    free(sys);
    return rc;
}

/* SESSION or SESSION@POS (POS >= 1: the tokens kept). */
static bool parse_from(const char *s, int64_t *id, int64_t *pos)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    char *at = strchr(buf, '@');
    long long v = 0, p = 0;
    if (at) {
        *at = '\0';
    }
    if (!pd_arg_long("run", "--from", buf, 1, INT64_MAX, &v) ||
        (at && !pd_arg_long("run", "--from (@POS)", at + 1, 1, INT64_MAX, &p))) {
        return false;
    }
    *id = v;
    *pos = p;
    return true;
}

int pd_cli_run(int argc, char **argv)
{
    struct pd_live_opts o;
    pd_live_opts_default(&o);
    const char *file = NULL, *v = NULL, *cap = NULL, *from = NULL;
    bool bad = false, stats = false;
    long long ll;
    double d;
    struct pd_argv a = {argc, argv, 1, "run"};
    pd_cli_engine_init(&o.engine);
    while (a.i < argc) {
        int er = pd_cli_engine_opt(&a, &o.engine);
        if (er < 0) {
            return 2;
        }
        if (er > 0) {
            continue;
        }
        if (strcmp(argv[a.i], "--help") == 0 || strcmp(argv[a.i], "-h") == 0) {
            fputs(run_usage, stdout);
            return 0;
        }
        if (pd_arg_match(&a, "--model", "-m", &o.model_path, &bad) ||
            pd_arg_match(&a, "--prompt", "-p", &o.prompt, &bad) ||
            pd_arg_match(&a, "--file", "-f", &file, &bad) ||
            pd_arg_match(&a, "--from", NULL, &from, &bad) ||
            pd_arg_match(&a, "--system", NULL, &o.system, &bad) ||
            pd_arg_match(&a, "--mode", NULL, &o.mode_spec, &bad) ||
            pd_arg_match(&a, "--kv", NULL, &o.kv_spec, &bad) ||
            pd_arg_match(&a, "--db", NULL, &o.db_path, &bad) ||
            pd_arg_match(&a, "--chat", NULL, &o.chat, &bad) ||
            pd_arg_match(&a, "--capture", NULL, &cap, &bad)) {
        } else if (pd_arg_match(&a, "--no-record", NULL, NULL, &bad)) {
            o.no_record = true;
        } else if (pd_arg_match(&a, "--stats", NULL, NULL, &bad)) {
            stats = true;
        } else if (pd_arg_match(&a, "--greedy", NULL, NULL, &bad)) {
            o.sampling.temperature = 0;
        } else if (pd_arg_match(&a, "--n-predict", "-n", &v, &bad)) {
            if (!bad && !pd_arg_long("run", "-n", v, 0, 1 << 22, &ll)) {
                return 2;
            }
            o.n_predict = (uint32_t)ll;
        } else if (pd_arg_match(&a, "--topk", NULL, &v, &bad)) {
            if (!bad && !pd_arg_long("run", "--topk", v, 0, PD_TOPK_MAX, &ll)) {
                return 2;
            }
            o.topk = (uint32_t)ll;
        } else if (pd_arg_match(&a, "--ctx", "-c", &v, &bad)) {
            if (!bad && !pd_arg_long("run", "--ctx", v, 16, 1 << 22, &ll)) {
                return 2;
            }
            o.n_ctx = (uint32_t)ll;
        } else if (pd_arg_match(&a, "--threads", "-t", &v, &bad)) {
            if (!bad && !pd_arg_long("run", "--threads", v, 1, 1024, &ll)) {
                return 2;
            }
            o.n_threads = (int)ll;
        } else if (pd_arg_match(&a, "--temp", NULL, &v, &bad)) {
            if (!bad && (!pd_arg_double("run", "--temp", v, &d) || d < 0 || d > 100)) {
                return pd_cli_fail(2, "run: --temp: expected a number in [0, 100]");
            }
            o.sampling.temperature = (float)d;
        } else if (pd_arg_match(&a, "--top-p", NULL, &v, &bad)) {
            if (!bad && (!pd_arg_double("run", "--top-p", v, &d) || d <= 0 || d > 1)) {
                return pd_cli_fail(2, "run: --top-p: expected a number in (0, 1]");
            }
            o.sampling.top_p = (float)d;
        } else if (pd_arg_match(&a, "--min-p", NULL, &v, &bad)) {
            if (!bad && (!pd_arg_double("run", "--min-p", v, &d) || d < 0 || d > 1)) {
                return pd_cli_fail(2, "run: --min-p: expected a number in [0, 1]");
            }
            o.sampling.min_p = (float)d;
        } else if (pd_arg_match(&a, "--top-k", NULL, &v, &bad)) {
            if (!bad && !pd_arg_long("run", "--top-k", v, 0, 1 << 24, &ll)) {
                return 2;
            }
            o.sampling.top_k = (int32_t)ll;
        } else if (pd_arg_match(&a, "--seed", NULL, &v, &bad)) {
            if (!bad && !pd_arg_long("run", "--seed", v, 0, INT64_MAX, &ll)) {
                return 2;
            }
            o.sampling.seed = (uint64_t)ll;
        } else if (pd_arg_match(&a, "--backend", NULL, &v, &bad)) {
            if (!bad && (o.backend = pd_backend_parse(v)) == PD_BACKEND_KIND_COUNT) {
                return pd_cli_fail(2, "run: --backend: expected cpu or cuda, got '%s'", v);
            }
        } else if (pd_arg_match(&a, "--throttle", NULL, &v, &bad)) {
            if (!bad && (!pd_arg_double("run", "--throttle", v, &d) || d < 0 || d > 10000)) {
                return pd_cli_fail(2, "run: --throttle: expected milliseconds in [0, 10000]");
            }
            o.throttle_ms = d;
        } else {
            return pd_cli_fail(2, "run: unknown option '%s' (see 'ponder run --help')",
                               argv[a.i]);
        }
        if (bad) {
            return 2;
        }
    }
    if (!o.model_path && !o.engine.url) {
        return pd_cli_fail(2, "run: -m MODEL is required (see 'ponder run --help')");
    }
    if ((o.prompt != NULL) + (file != NULL) + (from != NULL) != 1) {
        return pd_cli_fail(2, "run: give exactly one of -p PROMPT, -f FILE or --from SESSION");
    }
    if (from && !parse_from(from, &o.from_session, &o.from_pos)) {
        return 2;
    }
    if (from && o.engine.url) {
        return pd_cli_fail(2, "run: --from re-encodes the saved trace with the model in this "
                           "process: not available with --engine");
    }
    if (cap && (o.capture = pd_capture_level_parse(cap)) == PD_CAPTURE_LEVEL_COUNT) {
        return pd_cli_fail(2, "run: --capture: expected off, summary or full, got '%s'", cap);
    }
    if (o.no_record && o.db_path && !from) {
        return pd_cli_fail(2, "run: --db and --no-record exclude each other");
    }
    char *text = NULL;
    if (file) {
        if (!(text = pd_cli_read_prompt(file))) {
            return 1;
        }
        o.prompt = text;
    } else if (o.prompt && !pd_utf8_valid(o.prompt, strlen(o.prompt))) {
        return pd_cli_fail(2, "run: -p: the prompt is not UTF-8 text");
    }
    int rc = run_live(&o, stats);
    free(text);
    return rc;
}

/* ---- replay -------------------------------------------------------------------------- */


/* Shows session id in place of the one on screen (from the branch tree). Unsaved edits
 * are saved first, so nothing is lost by moving around the family. */
static void replay_open(struct pd_store *st, struct pd_app *a, int64_t id)
{
    struct pd_err err;
    pd_err_clear(&err);
    if (pd_app_unsaved(a) && pd_io_save(st, a->session_id, a, &err)) {
        pd_app_msg(a, true, "open #%lld: saving #%lld first failed: %s", (long long)id,
                   (long long)a->session_id, err.msg);
        return;
    }
    struct pd_app next;
    if (pd_app_init(&next, PD_APP_REPLAY, &err) || pd_io_load(st, id, &next, &err)) {
        pd_app_deinit(&next);
        pd_app_msg(a, true, "open #%lld: %s", (long long)id, err.msg);
        return;
    }
    /* Keep the view's settings; take everything about the session from the new one. */
    next.speed = a->speed;
    next.focus = a->focus;
    next.colour = a->colour;
    next.colour_layer = a->colour_layer;
    next.stats = a->stats;
    int rows = a->trace_rows, cols = a->wrap.width, srows = a->steps_rows;
    bool narrow = a->narrow;
    pd_app_deinit(a);
    *a = next;
    pd_app_resize(a, rows, cols, srows, narrow);
    pd_app_msg(a, false, "showing #%lld", (long long)id);
}

static void replay_exec(void *ud, struct pd_app *a, const struct pd_app_fx *fx)
{
    struct pd_store *st = ud;
    if (fx->kind == PD_FX_BRANCHES || fx->kind == PD_FX_DIFF) {
        pd_io_fx(st, a, fx);
        return;
    }
    if (fx->kind == PD_FX_OPEN) {
        replay_open(st, a, fx->id);
        return;
    }
    if (fx->kind != PD_FX_SAVE) {
        pd_app_msg(a, true, "this is a replay: no model is running");
        return;
    }
    struct pd_err err;
    pd_err_clear(&err);
    if (pd_io_save(st, a->session_id, a, &err)) {
        pd_app_msg(a, true, "save: %s", err.msg);
    } else {
        pd_app_msg(a, false, "saved session %lld", (long long)a->session_id);
    }
}

static int replay_session(struct pd_store *st, int64_t id, double speed, bool play, bool stats)
{
    struct pd_app app;
    struct pd_err err;
    pd_err_clear(&err);
    if (pd_app_init(&app, PD_APP_REPLAY, &err) || pd_io_load(st, id, &app, &err)) {
        pd_cli_print_err(&err);
        pd_app_deinit(&app);
        return 1;
    }
    if (speed > 0) {
        app.speed = speed;
    }
    if (play) {
        pd_app_seek(&app, 0);
        app.playing = true;
        app.follow = true;
    }
    struct pd_loop_source src = {NULL, NULL, replay_exec, st};
    int rc = workbench(&app, &src);
    if (stats) {
        print_stats(&app);
    }
    pd_app_deinit(&app);
    return rc;
}

static bool newest_session(struct pd_store *st, int64_t *id)
{
    struct pd_store_session_info *list = NULL;
    size_t n = 0;
    struct pd_err err;
    if (pd_store_session_list(st, &list, &n, &err)) {
        pd_cli_print_err(&err);
        return false;
    }
    *id = 0;
    for (size_t i = 0; i < n; i++) {
        if (list[i].id > *id) {
            *id = list[i].id;
        }
        pd_store_session_info_free(&list[i]);
    }
    free(list);
    if (*id == 0) {
        pd_cli_fail(1, "replay: the database has no sessions");
        return false;
    }
    return true;
}

int pd_cli_replay(int argc, char **argv)
{
    static const char usage[] =
        "usage: ponder replay [SESSION] [--db FILE] [--speed TOK/S] [--play]\n"
        "  SESSION      session id (default: the newest)\n"
        "  --db FILE    database (default: the user database)\n"
        "  --speed X    replay speed in tokens per second (default 20)\n"
        "  --play       start playing from the beginning\n"
        "  -m MODEL     re-open the session live with this model (as run --from SESSION):\n"
        "               continue, branch or steer it; with -n N, --ctx N, -t N, --no-record\n";
    const char *db = NULL, *v = NULL, *sess = NULL;
    double speed = 0;
    bool bad = false, play = false, stats = false;
    struct pd_live_opts lo;
    pd_live_opts_default(&lo);
    long long ll;
    struct pd_argv a = {argc, argv, 1, "replay"};
    while (a.i < argc) {
        if (strcmp(argv[a.i], "--help") == 0 || strcmp(argv[a.i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (pd_arg_match(&a, "--db", NULL, &db, &bad) ||
            pd_arg_match(&a, "--model", "-m", &lo.model_path, &bad)) {
        } else if (pd_arg_match(&a, "--n-predict", "-n", &v, &bad)) {
            if (!bad && !pd_arg_long("replay", "-n", v, 0, 1 << 22, &ll)) {
                return 2;
            }
            lo.n_predict = (uint32_t)ll;
        } else if (pd_arg_match(&a, "--ctx", "-c", &v, &bad)) {
            if (!bad && !pd_arg_long("replay", "--ctx", v, 16, 1 << 22, &ll)) {
                return 2;
            }
            lo.n_ctx = (uint32_t)ll;
        } else if (pd_arg_match(&a, "--threads", "-t", &v, &bad)) {
            if (!bad && !pd_arg_long("replay", "--threads", v, 1, 1024, &ll)) {
                return 2;
            }
            lo.n_threads = (int)ll;
        } else if (pd_arg_match(&a, "--no-record", NULL, NULL, &bad)) {
            lo.no_record = true;
        } else if (pd_arg_match(&a, "--speed", NULL, &v, &bad)) {
            if (!bad && (!pd_arg_double("replay", "--speed", v, &speed) || speed < 0.25 ||
                         speed > 10000)) {
                return pd_cli_fail(2, "replay: --speed: expected tokens/s in [0.25, 10000]");
            }
        } else if (pd_arg_match(&a, "--play", NULL, NULL, &bad)) {
            play = true;
        } else if (pd_arg_match(&a, "--stats", NULL, NULL, &bad)) {
            stats = true;
        } else if (argv[a.i][0] != '-' && !sess) {
            sess = argv[a.i++];
        } else {
            return pd_cli_fail(2, "replay: unknown argument '%s'", argv[a.i]);
        }
        if (bad) {
            return 2;
        }
    }
    long long id = 0;
    if (sess && !pd_arg_long("replay", "SESSION", sess, 1, INT64_MAX, &id)) {
        return 2;
    }
    if (!lo.model_path && (lo.n_predict || lo.n_ctx || lo.n_threads || lo.no_record)) {
        return pd_cli_fail(2, "replay: -n, --ctx, -t and --no-record need -m MODEL");
    }
    /* writable where it can be (edits are saved), read-only otherwise */
    struct pd_store *st = pd_cli_open_db(db, PD_CLI_DB_BROWSE);
    if (!st) {
        return 1;
    }
    int64_t sid = id;
    int rc = 1;
    if (lo.model_path) {
        /* live: the session is re-opened with the model (the live side opens the store) */
        bool found = sid || newest_session(st, &sid);
        pd_store_close(&st);
        if (!found) {
            return 1;
        }
        lo.from_session = sid;
        lo.db_path = db;
        return run_live(&lo, stats);
    }
    if (sid || newest_session(st, &sid)) {
        rc = replay_session(st, sid, speed, play, stats);
    }
    pd_store_close(&st);
    return rc;
}

/* ---- keys ---------------------------------------------------------------------------- */

int pd_cli_keys(int argc, char **argv)
{
    bool md = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--markdown") == 0) {
            md = true;
        } else if (strcmp(argv[i], "--help") == 0) {
            fputs("usage: ponder keys [--markdown]\n", stdout);
            return 0;
        } else {
            return pd_cli_fail(2, "keys: unknown argument '%s'", argv[i]);
        }
    }
    struct pd_buf b;
    pd_buf_init(&b);
    bool ok = true;
    if (md) {
        ok = pd_keys_markdown(&b);
    } else {
        char line[256];
        for (size_t i = 0; ok && pd_keys_help_line(i, line, sizeof line); i++) {
            ok = pd_buf_printf(&b, "%s\n", line);
        }
    }
    if (!ok) {
        pd_buf_deinit(&b);
        return pd_cli_fail(1, "out of memory");
    }
    fwrite(b.data, 1, b.len, stdout);
    pd_buf_deinit(&b);
    return 0;
}

/* ---- no arguments -------------------------------------------------------------------- */

/* First *.gguf (by name) in dir, into out. */
static bool find_model(const char *dir, char *out, size_t n)
{
    DIR *d = opendir(dir);
    if (!d) {
        return false;
    }
    char best[NAME_MAX + 1] = "";
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".gguf") == 0 &&
            (!best[0] || strcmp(e->d_name, best) < 0)) {
            snprintf(best, sizeof best, "%s", e->d_name);
        }
    }
    closedir(d);
    if (!best[0]) {
        return false;
    }
    snprintf(out, n, "%s/%s", dir, best);
    return true;
}

/* A file of samples/ (name relative to it): under $PONDER_SAMPLES when that is set (and
 * only there), else under $PONDER_SOURCE_ROOT/samples, samples/ next to the source tree of
 * this binary (<exe>/../samples or <exe>/../../samples in a build folder), or where meson
 * installs the samples (<exe>/../share/ponder/samples). On failure *tried lists the paths
 * looked at. */
static bool find_sample_file(const char *name, char *out, size_t n, char *tried,
                             size_t tried_n)
{
    char exe[PATH_MAX];
    const char *env;
    char cand[5][PATH_MAX];
    int k = 0;
    bool only_env = (env = getenv("PONDER_SAMPLES")) && *env;
    if (only_env) {
        snprintf(cand[k++], PATH_MAX, "%s/%s", env, name);
    } else if ((env = getenv("PONDER_SOURCE_ROOT")) && *env) {
        snprintf(cand[k++], PATH_MAX, "%s/samples/%s", env, name);
    }
    ssize_t l = only_env ? -1 : readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (l > 0) {
        exe[l] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(cand[k++], PATH_MAX, "%.3800s/../samples/%s", exe, name);
            snprintf(cand[k++], PATH_MAX, "%.3800s/../../samples/%s", exe, name);
            snprintf(cand[k++], PATH_MAX, "%.3800s/../share/ponder/samples/%s", exe, name);
        }
    }
    size_t o = 0;
    tried[0] = '\0';
    for (int i = 0; i < k; i++) {
        if (access(cand[i], R_OK) == 0) {
            snprintf(out, n, "%s", cand[i]);
            return true;
        }
        if (o < tried_n) {
            o += (size_t)snprintf(tried + o, tried_n - o, "%s%s", i ? ", " : "", cand[i]);
        }
    }
    return false;
}

static int replay_sample(bool stats)
{
    char sample[PATH_MAX];
    char tried[5 * 256];
    if (!find_sample_file("sample-session.jsonl", sample, sizeof sample, tried,
                          sizeof tried)) {
        return pd_cli_fail(1, "no model found ($PONDER_MODEL, %s) and no sample session "
                              "(looked for %s); see 'ponder --help'",
                           pd_cli_models_dir(), tried);
    }
    const char *tmp = getenv("TMPDIR");
    char db[PATH_MAX];
    snprintf(db, sizeof db, "%s/ponder-sample-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(db);
    if (fd < 0) {
        return pd_cli_fail(1, "%s: %s", db, strerror(errno));
    }
    close(fd);
    unlink(db); /* the store creates the file itself */
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_store *st = NULL;
    struct pd_import_result res;
    int rc = 1;
    if (pd_store_open(db, NULL, &st, &err) ||
        pd_jsonl_import_file(st, sample, NULL, &res, &err)) {
        pd_cli_print_err(&err);
    } else if (res.n_imported == 0) {
        pd_cli_fail(1, "%s: no session in the sample file", sample);
    } else {
        rc = replay_session(st, res.first_id, 0, true, stats);
    }
    pd_store_close(&st);
    char side[PATH_MAX + 8];
    unlink(db);
    snprintf(side, sizeof side, "%s-wal", db);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", db);
    unlink(side);
    return rc;
}

int pd_cli_default(int argc, char **argv)
{
    (void)argv;
    if (argc > 0) {
        return pd_cli_fail(2, "unexpected arguments (see 'ponder --help')");
    }
    char model[PATH_MAX], tried[5 * 256];
    const char *env = getenv("PONDER_MODEL");
    bool have = false, reasoner = false;
    if (env && *env) {
        snprintf(model, sizeof model, "%s", env);
        have = true;
    } else if (find_sample_file(REASONER_MODEL, model, sizeof model, tried, sizeof tried)) {
        have = reasoner = true;
    } else {
        have = find_model(pd_cli_models_dir(), model, sizeof model);
    }
    if (!have) {
        return replay_sample(false);
    }
    struct pd_live_opts o;
    pd_live_opts_default(&o);
    o.model_path = model;
    o.prompt = getenv("PONDER_PROMPT") && *getenv("PONDER_PROMPT") ? getenv("PONDER_PROMPT")
               : reasoner                                          ? REASONER_QUESTION
                                                                   : DEFAULT_PROMPT;
    /* The no-argument demo streams at a pace one can watch (~30 tokens/s) and stops after
     * 400 tokens; `ponder run` runs at full speed until the model ends. */
    o.throttle_ms = 30;
    o.n_predict = 400;
    return run_live(&o, false);
}
