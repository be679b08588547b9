/* cli_store.c - headless store commands: import, export, ls, show.
 *
 * Contracts:
 *   import FILE... [--db F] [--strict] [--json]
 *       each bad line: "ponder: FILE:LINE: reason" on stderr; exit 1 when any line or
 *       file failed (the good records of a non-strict import are kept).
 *       --json: {"imported":N,"rejected":K,"files":[{"file","lines","imported","rejected",
 *                "first_id","last_id"}],"errors":["FILE:LINE: reason",...]}
 *   export --format messages|sharegpt|prompt-completion|ponder|dpo|step-dpo|kto [--tag T]
 *          [--session ID]... [--pruned] [--min-difficulty D] [--max-difficulty D]
 *          [--conversational] [--sources LIST] [--pairs correctness|length|both]
 *          [--min-saving F] [--verify-rule greedy|logprob:D] [--card]
 *          [--out FILE] [--db F] [--json]
 *       JSONL to FILE (written to a temporary and renamed) or stdout; --json (with --out)
 *       prints {"written":N,"skipped":K,"out":FILE} on stdout. The preference formats
 *       (dpo, step-dpo, kto) are chosen by cli_dataset.c; --card writes README.md beside
 *       FILE.
 *   ls [--json] [--db F]          one line per session / a JSON array
 *   show SESSION [--json] [--db F] the session as text / its ponder record
 * The database is --db or the default ($XDG_DATA_HOME/ponder/ponder.db). A progress bar
 * goes to stderr when stderr is a terminal. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jsonw.h"
#include "mem.h"
#include "utf8.h"
#include "cli.h"
#include "cli_dataset.h"
#include "config.h"
#include "termsafe.h"
#include "store.h"
#include "store_jsonl.h"
#include "store_labels.h"
#include "store_replay.h"

/* ---- import ----------------------------------------------------------------------- */

static void import_usage(FILE *f)
{
    fprintf(f,
            "usage: ponder import FILE... [--db F] [--strict] [--json]\n"
            "\n"
            "Imports JSONL reasoning traces as sessions (TRL messages, ShareGPT conversations,\n"
            "or problem/question/prompt + generation/response/completion/solution/answer).\n"
            "Bad lines are reported as FILE:LINE: reason and skipped; --strict stops at the\n"
            "first one and keeps nothing of that file. Exit status 1 when any line failed.\n"
            "\n"
            "  --db F     database file (default $XDG_DATA_HOME/ponder/ponder.db)\n"
            "  --strict   stop at the first bad line\n"
            "  --json     print a JSON summary on stdout\n");
}

struct import_ctx {
    struct pd_cli_progress bar;
    bool json;
    struct pd_buf errors;   /* --json: the first 1000 messages as JSON strings, comma-joined */
    size_t n_errors;
    bool oom;
};

static void import_on_error(void *ud, const struct pd_err *e)
{
    struct import_ctx *c = ud;
    pd_cli_progress_clear(&c->bar);
    pd_cli_print_err(e);
    if (c->json && c->n_errors < 1000) {
        c->oom |= !(pd_buf_puts(&c->errors, c->n_errors ? "," : "") &&
                    pd_json_str(&c->errors, e->msg, strlen(e->msg)));
    }
    c->n_errors++;
}

static void import_on_progress(void *ud, uint64_t done, uint64_t total)
{
    struct import_ctx *c = ud;
    pd_cli_progress_draw(&c->bar, done, total);
}

int pd_cli_import(int argc, char **argv)
{
    struct pd_argv a = {argc, argv, 1, "import"};
    const char *db = NULL;
    bool strict = false, json = false, bad = false;
    const char **files = pd_calloc((size_t)argc, sizeof *files);
    size_t n_files = 0;
    if (!files) {
        return pd_cli_fail(1, "import: out of memory");
    }
    while (a.i < argc && !bad) {
        const char *v = NULL;
        if (strcmp(argv[a.i], "--help") == 0 || strcmp(argv[a.i], "-h") == 0) {
            import_usage(stdout);
            free(files);
            return 0;
        }
        if (pd_arg_match(&a, "--db", NULL, &v, &bad)) {
            db = v;
        } else if (pd_arg_match(&a, "--strict", NULL, NULL, &bad)) {
            strict = true;
        } else if (pd_arg_match(&a, "--json", NULL, NULL, &bad)) {
            json = true;
        } else if (argv[a.i][0] == '-' && argv[a.i][1] != '\0') {
            pd_cli_fail(2, "import: unknown option '%s'", argv[a.i]);
            bad = true;
        } else {
            files[n_files++] = argv[a.i++];
        }
    }
    if (!bad && n_files == 0) {
        pd_cli_fail(2, "import: no input files (see 'ponder import --help')");
        bad = true;
    }
    if (bad) {
        free(files);
        return 2;
    }
    struct pd_store *st = pd_cli_open_db(db, PD_CLI_DB_CREATE);
    if (!st) {
        free(files);
        return 1;
    }
    struct import_ctx c = {.json = json};
    pd_buf_init(&c.errors);
    struct pd_buf jfiles;
    pd_buf_init(&jfiles);
    uint64_t total_imported = 0, total_rejected = 0;
    int rc = 0;
    for (size_t i = 0; i < n_files; i++) {
        pd_cli_progress_init(&c.bar, files[i]);
        struct pd_import_params p = {.strict = strict, .on_error = import_on_error,
                                     .on_progress = import_on_progress, .ud = &c};
        struct pd_import_result r;
        struct pd_err err;
        pd_err_clear(&err);
        size_t errors_before = c.n_errors;
        enum pd_status s = pd_jsonl_import_file(st, files[i], &p, &r, &err);
        pd_cli_progress_clear(&c.bar);
        /* line errors were already printed through on_error; print the rest */
        if (s != PD_OK && !(s == PD_EFORMAT && c.n_errors > errors_before)) {
            import_on_error(&c, &err);
        }
        if (s != PD_OK || r.n_failed > 0) {
            rc = 1;
        }
        total_imported += r.n_imported;
        total_rejected += r.n_failed;
        if (json) {
            c.oom |= !(pd_buf_puts(&jfiles, i ? ",{\"file\":" : "{\"file\":") &&
                       pd_json_str(&jfiles, files[i], strlen(files[i])) &&
                       pd_buf_printf(&jfiles,
                                     ",\"lines\":%llu,\"imported\":%llu,\"rejected\":%llu,"
                                     "\"first_id\":%lld,\"last_id\":%lld}",
                                     (unsigned long long)r.n_lines,
                                     (unsigned long long)r.n_imported,
                                     (unsigned long long)r.n_failed, (long long)r.first_id,
                                     (long long)r.last_id));
        } else {
            fprintf(stderr, "%s: imported %llu trace%s", files[i],
                    (unsigned long long)r.n_imported, r.n_imported == 1 ? "" : "s");
            if (r.n_imported) {
                fprintf(stderr, " (sessions %lld..%lld)", (long long)r.first_id,
                        (long long)r.last_id);
            }
            if (r.n_failed) {
                fprintf(stderr, ", %llu line%s rejected%s", (unsigned long long)r.n_failed,
                        r.n_failed == 1 ? "" : "s", strict ? ", nothing kept" : "");
            }
            fputc('\n', stderr);
        }
        if (s != PD_OK && s != PD_EFORMAT) {
            break; /* database or I/O trouble: later files would fail the same way */
        }
    }
    if (json && c.oom) {
        rc = pd_cli_fail(1, "import: out of memory building the summary");
    } else if (json) {
        printf("{\"imported\":%llu,\"rejected\":%llu,\"files\":[%s],\"errors\":[%s]}\n",
               (unsigned long long)total_imported, (unsigned long long)total_rejected,
               jfiles.data ? jfiles.data : "", c.errors.data ? c.errors.data : "");
    }
    pd_buf_deinit(&jfiles);
    pd_buf_deinit(&c.errors);
    pd_store_close(&st);
    free(files);
    return rc;
}

/* ---- export ----------------------------------------------------------------------- */

static void export_usage(FILE *f)
{
    fprintf(f,
            "usage: ponder export --format F [--tag T] [--session ID]... [--pruned]\n"
            "                     [--min-difficulty D] [--max-difficulty D]\n"
            "                     [--conversational] [--sources LIST] [--pairs P]\n"
            "                     [--min-saving F] [--verify-rule R] [--card]\n"
            "                     [--out FILE] [--db F] [--json]\n"
            "\n"
            "Writes sessions as JSONL. Supervised formats (one line per session, pruned steps\n"
            "left out): messages, sharegpt, prompt-completion, ponder (everything: tokens\n"
            "with metrics, steps, prunes, annotations). The final assistant message is\n"
            "\"<think>\\n{thinking}\\n</think>\\n\\n{answer}\".\n"
            "Preference formats (docs/export.md):\n"
            "  dpo       TRL preference pairs: prompt, chosen, rejected\n"
            "  step-dpo  Step-DPO: prompt, initial_reason_steps, chosen and rejected next step\n"
            "  kto       TRL unpaired: prompt, completion, label\n"
            "\n"
            "  --format F          output format (required)\n"
            "  --tag T             only sessions tagged T\n"
            "  --session ID        only this session (repeatable)\n"
            "  --pruned            only sessions with pruned steps\n"
            "  --min-difficulty D, --max-difficulty D\n"
            "                      only sessions whose question's difficulty (1 - pass rate,\n"
            "                      from 'ponder analyze --pass-rate') is in [D, D']\n"
            "  --conversational    dpo, kto: prompt and completions as message lists\n"
            "  --sources LIST      where records come from (default all): marked, pruned,\n"
            "                      samples (dpo); marked, pruned (step-dpo); reference,\n"
            "                      verified (kto)\n"
            "  --pairs P           dpo samples: correctness, length or both (default)\n"
            "  --min-saving F      dpo pruned and length pairs: the chosen completion is at\n"
            "                      least F shorter (0 <= F < 1, default 0)\n"
            "  --verify-rule R     pruned sources: greedy (default: greedy answers agree) or\n"
            "                      logprob:D (the answer's logprob drops by at most D nats)\n"
            "  --card              also write a dataset card, README.md beside FILE\n"
            "  --out FILE          write FILE through a temporary file (default: stdout)\n"
            "  --db F              database file\n"
            "  --json              print a JSON summary on stdout (needs --out)\n");
}

static void export_on_progress(void *ud, uint64_t done, uint64_t total)
{
    pd_cli_progress_draw(ud, done, total);
}

/* The command line as one string for the dataset card ("ponder export ..."). */
static bool command_text(int argc, char **argv, struct pd_buf *b)
{
    bool ok = pd_buf_puts(b, "ponder");
    for (int i = 0; ok && i < argc; i++) {
        bool quote = strpbrk(argv[i], " \t\"'$\\") != NULL || !argv[i][0];
        ok = pd_buf_puts(b, " ") && (!quote || pd_buf_puts(b, "'")) && pd_buf_puts(b, argv[i]) &&
             (!quote || pd_buf_puts(b, "'"));
    }
    return ok;
}

/* Options of the preference formats, parsed by pd_cli_export. */
struct dataset_flags {
    bool conversational, card;
    const char *sources, *pairs, *min_saving, *rule;
};

/* Checks and converts the preference-format options into o. Prints usage errors. */
static bool dataset_opts(enum pd_dataset_format df, const struct dataset_flags *fl,
                         struct pd_cli_dataset_opts *o)
{
    o->dp.format = df;
    o->dp.conversational = fl->conversational;
    o->dp.card = fl->card;
    o->sources = pd_cli_dataset_sources_all(df);
    o->pair_modes = PD_PAIRS_BOTH;
    if (fl->conversational && df == PD_DATASET_STEP_DPO) {
        pd_cli_fail(2, "export: step-dpo has no conversational variant (Step-DPO's records "
                       "are strings)");
        return false;
    }
    if (fl->sources && !pd_cli_dataset_sources_parse(df, fl->sources, &o->sources)) {
        return false;
    }
    if (fl->pairs && (df != PD_DATASET_DPO || !pd_pairs_mode_parse(fl->pairs, &o->pair_modes))) {
        pd_cli_fail(2, "export: --pairs: expected correctness, length or both (dpo only), "
                       "got '%s'", fl->pairs);
        return false;
    }
    if (fl->min_saving) {
        if (df != PD_DATASET_DPO) {
            pd_cli_fail(2, "export: --min-saving applies to dpo");
            return false;
        }
        if (!pd_arg_double("export", "--min-saving", fl->min_saving, &o->min_saving)) {
            return false;
        }
        if (!(o->min_saving >= 0 && o->min_saving < 1)) {
            pd_cli_fail(2, "export: --min-saving: expected a fraction in [0, 1), got '%s'",
                        fl->min_saving);
            return false;
        }
    }
    struct pd_err err;
    if (pd_verify_rule_parse(fl->rule ? fl->rule : "greedy", &o->rule, &err) != PD_OK) {
        pd_cli_fail(2, "export: --verify-rule: %s", err.msg);
        return false;
    }
    return true;
}

/* "name: value" lines describing the dataset selection, for the card. */
static bool settings_text(const struct pd_cli_dataset_opts *o, const struct dataset_flags *fl,
                          struct pd_buf *b)
{
    bool ok = pd_buf_printf(b, "format: %s (%s)\n", pd_dataset_format_name(o->dp.format),
                            o->dp.conversational ? "conversational" : "standard") &&
              pd_buf_puts(b, "sources:");
    static const char *const names[] = {"marked", "pruned", "samples", "reference", "verified"};
    for (unsigned i = 0, k = 0; ok && i < 5; i++) {
        if (o->sources & (1u << i)) {
            ok = pd_buf_printf(b, "%s %s", k++ ? "," : "", names[i]);
        }
    }
    ok = ok && pd_buf_puts(b, "\n");
    if (ok && o->dp.format == PD_DATASET_DPO) {
        ok = pd_buf_printf(b, "sample pairs: %s\nminimum saving: %g\n",
                           fl->pairs ? fl->pairs : "both", o->min_saving);
    }
    if (ok && (o->sources & (PD_CLI_SRC_PRUNED | PD_CLI_SRC_VERIFIED))) {
        ok = o->rule.kind == PD_VERIFY_GREEDY
                 ? pd_buf_puts(b, "verification rule: greedy answers agree\n")
                 : pd_buf_printf(b, "verification rule: answer logprob drops by at most %g "
                                    "nats\n", o->rule.max_drop);
    }
    if (ok && o->dp.difficulty_filter) {
        ok = pd_buf_printf(b, "difficulty: %g to %g\n", o->dp.difficulty_min,
                           o->dp.difficulty_max);
    }
    if (ok && o->dp.tag) {
        ok = pd_buf_printf(b, "sessions tagged: %s\n", o->dp.tag);
    }
    if (ok && o->dp.pruned_only) {
        ok = pd_buf_puts(b, "sessions with pruned steps only\n");
    }
    for (size_t i = 0; ok && i < o->dp.n_session_ids; i++) {
        ok = pd_buf_printf(b, "%s%lld%s", i ? "," : "sessions: ", (long long)o->dp.session_ids[i],
                           i + 1 == o->dp.n_session_ids ? "\n" : "");
    }
    return ok;
}

int pd_cli_export(int argc, char **argv)
{
    struct pd_argv a = {argc, argv, 1, "export"};
    const char *db = NULL, *fmt = NULL, *tag = NULL, *out = NULL;
    const char *dmin_s = NULL, *dmax_s = NULL;
    struct dataset_flags fl = {0};
    bool pruned = false, json = false, bad = false;
    int64_t *ids = pd_calloc((size_t)argc, sizeof *ids);
    size_t n_ids = 0;
    if (!ids) {
        return pd_cli_fail(1, "export: out of memory");
    }
    while (a.i < argc && !bad) {
        const char *v = NULL;
        if (strcmp(argv[a.i], "--help") == 0 || strcmp(argv[a.i], "-h") == 0) {
            export_usage(stdout);
            free(ids);
            return 0;
        }
        if (pd_arg_match(&a, "--db", NULL, &v, &bad)) {
            db = v;
        } else if (pd_arg_match(&a, "--format", "-f", &v, &bad)) {
            fmt = v;
        } else if (pd_arg_match(&a, "--tag", NULL, &v, &bad)) {
            tag = v;
        } else if (pd_arg_match(&a, "--out", "-o", &v, &bad)) {
            out = v;
        } else if (pd_arg_match(&a, "--session", NULL, &v, &bad)) {
            long long id;
            if (!bad && pd_arg_long("export", "--session", v, 1, INT64_MAX, &id)) {
                ids[n_ids++] = id;
            } else {
                bad = true;
            }
        } else if (pd_arg_match(&a, "--pruned", NULL, NULL, &bad)) {
            pruned = true;
        } else if (pd_arg_match(&a, "--json", NULL, NULL, &bad)) {
            json = true;
        } else if (pd_arg_match(&a, "--min-difficulty", NULL, &dmin_s, &bad) ||
                   pd_arg_match(&a, "--max-difficulty", NULL, &dmax_s, &bad) ||
                   pd_arg_match(&a, "--sources", NULL, &fl.sources, &bad) ||
                   pd_arg_match(&a, "--pairs", NULL, &fl.pairs, &bad) ||
                   pd_arg_match(&a, "--min-saving", NULL, &fl.min_saving, &bad) ||
                   pd_arg_match(&a, "--verify-rule", NULL, &fl.rule, &bad)) {
            continue;
        } else if (pd_arg_match(&a, "--conversational", NULL, NULL, &bad)) {
            fl.conversational = true;
        } else if (pd_arg_match(&a, "--card", NULL, NULL, &bad)) {
            fl.card = true;
        } else {
            pd_cli_fail(2, "export: unexpected argument '%s'", argv[a.i]);
            bad = true;
        }
    }
    enum pd_jsonl_format format = PD_JSONL_FORMAT_COUNT;
    enum pd_dataset_format df = PD_DATASET_FORMAT_COUNT;
    static const char formats[] = "messages, sharegpt, prompt-completion, ponder, dpo, step-dpo, "
                                  "kto";
    if (!bad && !fmt) {
        pd_cli_fail(2, "export: --format is required (%s)", formats);
        bad = true;
    } else if (!bad && (format = pd_jsonl_format_parse(fmt)) == PD_JSONL_FORMAT_COUNT &&
               (df = pd_dataset_format_parse(fmt)) == PD_DATASET_FORMAT_COUNT) {
        pd_cli_fail(2, "export: unknown format '%s' (%s)", fmt, formats);
        bad = true;
    }
    bool dataset = df != PD_DATASET_FORMAT_COUNT;
    if (!bad && !dataset &&
        (fl.conversational || fl.card || fl.sources || fl.pairs || fl.min_saving || fl.rule)) {
        pd_cli_fail(2, "export: --conversational, --card, --sources, --pairs, --min-saving and "
                       "--verify-rule apply to dpo, step-dpo and kto");
        bad = true;
    }
    if (!bad && json && !out) {
        pd_cli_fail(2, "export: --json needs --out (stdout carries the data)");
        bad = true;
    }
    if (!bad && fl.card && !out) {
        pd_cli_fail(2, "export: --card needs --out (the card goes beside the file)");
        bad = true;
    }
    double dmin = 0, dmax = 1;
    if (!bad && dmin_s && (!pd_arg_double("export", "--min-difficulty", dmin_s, &dmin) ||
                           dmin < 0 || dmin > 1)) {
        bad = true;
        if (dmin < 0 || dmin > 1) {
            pd_cli_fail(2, "export: --min-difficulty: expected a number in [0, 1]");
        }
    }
    if (!bad && dmax_s && (!pd_arg_double("export", "--max-difficulty", dmax_s, &dmax) ||
                           dmax < 0 || dmax > 1)) {
        bad = true;
        if (dmax < 0 || dmax > 1) {
            pd_cli_fail(2, "export: --max-difficulty: expected a number in [0, 1]");
        }
    }
    if (!bad && dmin > dmax) {
        pd_cli_fail(2, "export: --min-difficulty %g is above --max-difficulty %g", dmin, dmax);
        bad = true;
    }
    struct pd_cli_dataset_opts dopt = {0};
    if (!bad && dataset && !dataset_opts(df, &fl, &dopt)) {
        bad = true;
    }
    if (bad) {
        free(ids);
        return 2;
    }
    struct pd_store *st = pd_cli_open_db(db, PD_CLI_DB_BROWSE); /* the export record */
    if (!st) {
        free(ids);
        return 1;
    }
    bool dfilter = dmin_s || dmax_s;
    if (dataset) {
        struct pd_buf cmd, set;
        pd_buf_init(&cmd);
        pd_buf_init(&set);
        dopt.dp.tag = tag;
        dopt.dp.session_ids = n_ids ? ids : NULL;
        dopt.dp.n_session_ids = n_ids;
        dopt.dp.pruned_only = pruned;
        dopt.dp.difficulty_filter = dfilter;
        dopt.dp.difficulty_min = dmin;
        dopt.dp.difficulty_max = dmax;
        dopt.dp.generator = "ponder " PONDER_VERSION;
        dopt.out = out;
        dopt.json = json;
        int rc;
        if (!command_text(argc, argv, &cmd) || !settings_text(&dopt, &fl, &set)) {
            rc = pd_cli_fail(1, "export: out of memory");
        } else {
            dopt.dp.command = cmd.data;
            dopt.dp.settings = set.data;
            rc = pd_cli_dataset_export(st, &dopt);
        }
        pd_buf_deinit(&cmd);
        pd_buf_deinit(&set);
        pd_store_close(&st);
        free(ids);
        return rc;
    }
    struct pd_cli_progress bar;
    pd_cli_progress_init(&bar, out ? out : "export");
    if (!out && isatty(STDOUT_FILENO)) {
        bar.on = false; /* the data itself is on the terminal */
    }
    struct pd_export_params p = {.format = format, .tag = tag, .session_ids = n_ids ? ids : NULL,
                                 .n_session_ids = n_ids, .pruned_only = pruned,
                                 .difficulty_filter = dfilter, .difficulty_min = dmin,
                                 .difficulty_max = dmax,
                                 .on_progress = export_on_progress, .ud = &bar};
    struct pd_export_result r;
    struct pd_err err;
    pd_err_clear(&err);
    enum pd_status s = out ? pd_jsonl_export_file(st, out, &p, &r, &err)
                           : pd_jsonl_export(st, stdout, &p, &r, &err);
    pd_cli_progress_clear(&bar);
    int rc = 0;
    if (s != PD_OK) {
        pd_cli_print_err(&err);
        rc = 1;
    } else if (json) {
        struct pd_buf b;
        pd_buf_init(&b);
        bool ok = pd_buf_printf(&b, "{\"written\":%llu,\"skipped\":%llu,\"filtered\":%llu,"
                                    "\"out\":",
                                (unsigned long long)r.n_written,
                                (unsigned long long)r.n_skipped,
                                (unsigned long long)r.n_filtered) &&
                  pd_json_str(&b, out, strlen(out)) && pd_buf_puts(&b, ",\"skip_reason\":") &&
                  pd_json_str(&b, r.skip_reason, strlen(r.skip_reason)) && pd_buf_puts(&b, "}");
        if (ok) {
            puts(b.data);
        } else {
            rc = pd_cli_fail(1, "export: out of memory");
        }
        pd_buf_deinit(&b);
    } else {
        fprintf(stderr, "exported %llu trace%s to %s", (unsigned long long)r.n_written,
                r.n_written == 1 ? "" : "s", out ? out : "stdout");
        if (r.n_skipped) {
            fprintf(stderr, " (%llu skipped, e.g. %s)", (unsigned long long)r.n_skipped,
                    r.skip_reason);
        }
        if (r.n_filtered) {
            fprintf(stderr, " (%llu outside the difficulty range)",
                    (unsigned long long)r.n_filtered);
        }
        fputc('\n', stderr);
    }
    pd_store_close(&st);
    free(ids);
    return rc;
}

/* ---- ls --------------------------------------------------------------------------- */

static void fmt_time(int64_t ms, char *buf, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!localtime_r(&t, &tm) || strftime(buf, n, "%Y-%m-%d %H:%M", &tm) == 0) {
        snprintf(buf, n, "?");
    }
}

/* Copies s into out as one printable line of at most max_cols code points: controls and
 * invalid bytes become spaces / U+FFFD, a cut is marked with "...". */
static void one_line(const char *s, size_t n, char *out, size_t out_n, size_t max_cols)
{
    size_t o = 0, cols = 0, i = 0;
    while (i < n && o + 8 < out_n) {
        if (cols == max_cols) {
            if (o >= 3) {
                memcpy(out + o - 3, "...", 3);
            }
            break;
        }
        uint32_t cp;
        size_t k = pd_utf8_decode(s + i, n - i, &cp);
        if (k == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            /* line breaks and tabs become spaces, other controls visible (termsafe.h) */
            uint32_t safe = cp == '\n' || cp == '\t' || cp == '\r' ? ' '
                                                                  : pd_termsafe_cp(cp, 0);
            o += pd_utf8_encode(safe, out + o);
            i += k;
        }
        cols++;
    }
    out[o] = '\0';
}

/* Appends one session as a JSON object. */
static bool session_json(struct pd_buf *b, const struct pd_store_session_info *s)
{
    bool ok = pd_buf_printf(b, "{\"id\":%lld,\"created_ms\":%lld,\"updated_ms\":%lld,"
                               "\"source\":",
                            (long long)s->id, (long long)s->created_ms,
                            (long long)s->updated_ms) &&
              pd_json_str(b, s->source, strlen(s->source)) && pd_buf_puts(b, ",\"model\":") &&
              (s->model_name ? pd_json_str(b, s->model_name, strlen(s->model_name))
                             : pd_buf_puts(b, "null")) &&
              pd_buf_printf(b,
                            ",\"n_tokens\":%lld,\"n_steps\":%lld,\"n_pruned\":%lld,"
                            "\"finished\":%s,\"parent\":",
                            (long long)s->n_tokens, (long long)s->n_steps,
                            (long long)s->n_pruned, s->finished ? "true" : "false") &&
              (s->parent_id ? pd_buf_printf(b, "%lld", (long long)s->parent_id)
                            : pd_buf_puts(b, "null")) &&
              pd_buf_printf(b, ",\"fork_pos\":%lld,\"tags\":[", (long long)s->fork_pos);
    const char *t = s->tags;
    for (bool first = true; ok && *t; first = false) {
        const char *c = strchr(t, ',');
        size_t len = c ? (size_t)(c - t) : strlen(t);
        ok = pd_buf_puts(b, first ? "" : ",") && pd_json_str(b, t, len);
        t += len + (c ? 1 : 0);
    }
    /* titles are cut at 200 characters: one line, valid UTF-8 */
    char title[1024];
    one_line(s->title, strlen(s->title), title, sizeof title, 200);
    return ok && pd_buf_puts(b, "],\"title\":") && pd_json_str(b, title, strlen(title)) &&
           pd_buf_puts(b, "}");
}

int pd_cli_ls(int argc, char **argv)
{
    struct pd_argv a = {argc, argv, 1, "ls"};
    const char *db = NULL;
    bool json = false, bad = false;
    while (a.i < argc && !bad) {
        const char *v = NULL;
        if (strcmp(argv[a.i], "--help") == 0 || strcmp(argv[a.i], "-h") == 0) {
            printf("usage: ponder ls [--json] [--db F]\n\nLists the saved sessions.\n");
            return 0;
        }
        if (pd_arg_match(&a, "--db", NULL, &v, &bad)) {
            db = v;
        } else if (pd_arg_match(&a, "--json", NULL, NULL, &bad)) {
            json = true;
        } else {
            pd_cli_fail(2, "ls: unexpected argument '%s'", argv[a.i]);
            bad = true;
        }
    }
    if (bad) {
        return 2;
    }
    struct pd_store *st = pd_cli_open_db(db, PD_CLI_DB_READ);
    if (!st) {
        return 1;
    }
    struct pd_store_session_info *all = NULL;
    size_t n = 0;
    struct pd_err err;
    pd_err_clear(&err);
    if (pd_store_session_list(st, &all, &n, &err) != PD_OK) {
        pd_cli_print_err(&err);
        pd_store_close(&st);
        return 1;
    }
    int rc = 0;
    if (json) {
        struct pd_buf b;
        pd_buf_init(&b);
        bool ok = pd_buf_puts(&b, "[");
        for (size_t i = 0; ok && i < n; i++) {
            ok = pd_buf_puts(&b, i ? "," : "") && session_json(&b, &all[i]);
        }
        if (ok && pd_buf_puts(&b, "]")) {
            puts(b.data);
        } else {
            rc = pd_cli_fail(1, "ls: out of memory");
        }
        pd_buf_deinit(&b);
    } else {
        printf("%6s  %-16s %8s %6s  %-8s %-20s %s\n", "ID", "CREATED", "TOKENS", "STEPS",
               "STATE", "MODEL", "TITLE [TAGS]");
        for (size_t i = 0; i < n; i++) {
            const struct pd_store_session_info *s = &all[i];
            char when[32], title[256], model[64], state[32], steps[16];
            fmt_time(s->created_ms, when, sizeof when);
            one_line(s->title, strlen(s->title), title, sizeof title, 36);
            one_line(s->model_name ? s->model_name : "-",
                     strlen(s->model_name ? s->model_name : "-"), model, sizeof model, 20);
            if (s->parent_id) {
                snprintf(state, sizeof state, "<%lld@%lld", (long long)s->parent_id,
                         (long long)s->fork_pos);
            } else {
                snprintf(state, sizeof state, "%s", s->finished ? "done" : "partial");
            }
            if (s->n_pruned) {
                snprintf(steps, sizeof steps, "%lld-%lld", (long long)s->n_steps,
                         (long long)s->n_pruned);
            } else {
                snprintf(steps, sizeof steps, "%lld", (long long)s->n_steps);
            }
            printf("%6lld  %-16s %8lld %6s  %-8s %-20s %s%s%s%s\n", (long long)s->id, when,
                   (long long)s->n_tokens, steps, state, model, title, *s->tags ? " [" : "",
                   s->tags, *s->tags ? "]" : "");
        }
    }
    for (size_t i = 0; i < n; i++) {
        pd_store_session_info_free(&all[i]);
    }
    free(all);
    pd_store_close(&st);
    return rc;
}

/* ---- show ------------------------------------------------------------------------- */

/* Prints untrusted text with its lines kept (termsafe.h). */
static void print_clean(const char *s, size_t n)
{
    pd_termsafe_write(stdout, s, n, PD_TERMSAFE_KEEP_LINES);
}

/* The dataset labels of a session: preferences, reference answer and grade, prune check.
 * False after printing an error. */
static bool show_labels(struct pd_store *st, const struct pd_store_session_info *s)
{
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_pref *p = NULL;
    size_t n = 0;
    struct pd_session_grade g;
    struct pd_prune_check_rec chk;
    bool found = false;
    if (pd_store_prefs_get(st, s->id, &p, &n, &err) != PD_OK ||
        pd_store_session_grade(st, s->id, &g, &err) != PD_OK) {
        pd_store_prefs_free(p, n);
        pd_cli_print_err(&err);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        bool chosen = p[i].chosen_id == s->id;
        printf("prefer   %s session %lld%s", chosen ? "chosen over" : "rejected for",
               (long long)(chosen ? p[i].rejected_id : p[i].chosen_id), *p[i].note ? ": " : "");
        print_clean(p[i].note, strlen(p[i].note));
        fputc('\n', stdout);
    }
    pd_store_prefs_free(p, n);
    if (s->reference || g.question_id) {
        fputs("answer   ", stdout);
        if (s->reference) {
            fputs("reference ", stdout);
            print_clean(s->reference, strlen(s->reference) > 80 ? 80 : strlen(s->reference));
        }
        if (g.question_id) {
            printf("%sgraded %s (answer ", s->reference ? ", " : "",
                   g.correct < 0 ? "-" : g.correct ? "correct" : "wrong");
            print_clean(g.answer ? g.answer : "-", strlen(g.answer ? g.answer : "-"));
            printf("), question %lld pass rate ", (long long)g.question_id);
            if (isnan(g.pass_rate)) {
                fputs("-", stdout);
            } else {
                printf("%.3f", g.pass_rate);
            }
        }
        fputc('\n', stdout);
    }
    pd_store_session_grade_free(&g);
    if (pd_store_prune_check_get(st, s->id, &chk, &found, &err) != PD_OK) {
        pd_cli_print_err(&err);
        return false;
    }
    if (found) {
        fputs("verified ", stdout);
        print_clean(chk.strategy, strlen(chk.strategy));
        printf(": answer logprob %.4f -> %.4f nats, greedy answer %s over %lld "
               "tokens%s\n", chk.logprob_full, chk.logprob_pruned,
               chk.greedy_same ? "unchanged" : "changed", (long long)chk.greedy_compared,
               chk.current ? "" : " (stale: the prunes changed since)");
        pd_store_prune_check_free(&chk);
    }
    return true;
}

static int show_text(struct pd_store *st, int64_t id)
{
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_replay *r = NULL;
    if (pd_replay_open(st, id, &r, &err) != PD_OK) {
        pd_cli_print_err(&err);
        return 1;
    }
    const struct pd_store_session_info *s = pd_replay_info(r);
    char when[32];
    fmt_time(s->created_ms, when, sizeof when);
    /* every string from the database goes through the terminal filter (termsafe.h) */
    char t1[512], t2[256], t3[256], t4[256];
    printf("session %lld  created %s  source %s  %s\n", (long long)s->id, when,
           pd_termsafe_str(s->source, t1, sizeof t1), s->finished ? "finished" : "not finished");
    if (s->model_name) {
        printf("model    %s (%s, %llu bytes, sha256 %s...)\n",
               pd_termsafe_str(s->model_name, t1, sizeof t1),
               pd_termsafe_str(s->model_arch, t2, sizeof t2), (unsigned long long)s->model_size,
               pd_termsafe_str(s->model_sha256, t3, 17));
    }
    if (s->has_settings) {
        const struct pd_run_settings *rs = &s->settings;
        printf("settings temperature %g top_p %g top_k %d min_p %g seed %llu mode %s kv %s "
               "template %s\n",
               (double)rs->temperature, (double)rs->top_p, (int)rs->top_k, (double)rs->min_p,
               (unsigned long long)rs->seed, pd_termsafe_str(rs->mode ? rs->mode : "-", t2, sizeof t2),
               pd_termsafe_str(rs->kv_policy ? rs->kv_policy : "-", t3, sizeof t3),
               pd_termsafe_str(rs->chat_template ? rs->chat_template : "-", t4, sizeof t4));
    }
    if (s->parent_id) {
        printf("branch   of session %lld at position %lld\n", (long long)s->parent_id,
               (long long)s->fork_pos);
    }
    if (s->meta) {
        fputs("meta     ", stdout);
        pd_termsafe_write(stdout, s->meta, strlen(s->meta), 0);
        fputc('\n', stdout);
    }
    printf("tokens   %lld  steps %lld (%lld pruned)%s%s\n", (long long)pd_replay_length(r),
           (long long)s->n_steps, (long long)s->n_pruned, *s->tags ? "  tags " : "",
           pd_termsafe_str(s->tags, t1, sizeof t1));
    int rc = show_labels(st, s) ? 0 : 1;
    struct pd_message *msgs = NULL;
    size_t n_msgs = 0;
    if (pd_store_messages_get(st, id, &msgs, &n_msgs, &err) != PD_OK) {
        pd_cli_print_err(&err);
        pd_replay_close(&r);
        return 1;
    }
    for (size_t i = 0; i < n_msgs; i++) {
        printf("\n== %s ==\n", pd_store_msg_role_name(msgs[i].role));
        print_clean(msgs[i].content, strlen(msgs[i].content));
        fputc('\n', stdout);
    }
    pd_store_messages_free(msgs, n_msgs);
    /* the trace, a heading at each change of role or pruned state */
    struct pd_token_rec tok[256];
    int last_role = -1;
    bool last_pruned = false;
    for (;;) {
        size_t got = 0;
        if (pd_replay_read(r, tok, 256, &got, &err) != PD_OK) {
            fputc('\n', stdout);
            pd_cli_print_err(&err);
            rc = 1;
        }
        for (size_t i = 0; i < got; i++) {
            bool pruned = (tok[i].flags & PD_TOKF_PRUNED) != 0;
            if ((int)tok[i].role != last_role || pruned != last_pruned) {
                printf("\n== %s%s (from %lld) ==\n", pd_role_name(tok[i].role),
                       pruned ? ", pruned" : "", (long long)tok[i].pos);
                last_role = (int)tok[i].role;
                last_pruned = pruned;
            } else if (tok[i].id < 0 && tok[i].role == PD_ROLE_PROMPT) {
                fputc('\n', stdout); /* imported: one prompt row per message */
            }
            print_clean(tok[i].text, tok[i].text_len);
            pd_token_rec_free(&tok[i]);
        }
        if (got == 0 || rc) {
            break;
        }
    }
    fputc('\n', stdout);
    size_t n_steps, n_ann;
    const struct pd_step_rec *steps = pd_replay_steps(r, &n_steps);
    if (n_steps) {
        printf("\n== steps ==\n%5s %-9s %13s %8s %8s %8s %s\n", "STEP", "KIND", "SPAN", "SURPR",
               "FIRST", "ENTROPY", "");
        for (size_t i = 0; i < n_steps; i++) {
            const struct pd_step_rec *k = &steps[i];
            char span[32];
            snprintf(span, sizeof span, "%lld-%lld", (long long)k->pos_begin,
                     (long long)k->pos_end);
            printf("%5d %-9s %13s %8.2f %8.2f %8.2f %s\n", (int)k->index,
                   pd_step_kind_name(k->kind), span, (double)k->mean_surprisal,
                   (double)k->first_surprisal, (double)k->mean_entropy,
                   k->pruned ? "pruned" : "");
        }
    }
    const struct pd_annotation *ann = pd_replay_annotations(r, &n_ann);
    if (n_ann) {
        printf("\n== annotations ==\n");
        for (size_t i = 0; i < n_ann; i++) {
            if (ann[i].whole_session) {
                printf("%-13s ", "session");
            } else {
                char span[32];
                snprintf(span, sizeof span, "%lld-%lld", (long long)ann[i].pos_begin,
                         (long long)ann[i].pos_end);
                printf("%-13s ", span);
            }
            print_clean(ann[i].tag, strlen(ann[i].tag));
            if (*ann[i].note) {
                fputs(": ", stdout);
                print_clean(ann[i].note, strlen(ann[i].note));
            }
            fputc('\n', stdout);
        }
    }
    pd_replay_close(&r);
    return rc;
}

int pd_cli_show(int argc, char **argv)
{
    struct pd_argv a = {argc, argv, 1, "show"};
    const char *db = NULL, *sid = NULL;
    bool json = false, bad = false;
    while (a.i < argc && !bad) {
        const char *v = NULL;
        if (strcmp(argv[a.i], "--help") == 0 || strcmp(argv[a.i], "-h") == 0) {
            printf("usage: ponder show SESSION [--json] [--db F]\n\n"
                   "Prints a session: settings, conversation, the trace by role, steps and\n"
                   "annotations; --json prints its ponder record (as export --format ponder).\n");
            return 0;
        }
        if (pd_arg_match(&a, "--db", NULL, &v, &bad)) {
            db = v;
        } else if (pd_arg_match(&a, "--json", NULL, NULL, &bad)) {
            json = true;
        } else if (argv[a.i][0] != '-' && !sid) {
            sid = argv[a.i++];
        } else {
            pd_cli_fail(2, "show: unexpected argument '%s'", argv[a.i]);
            bad = true;
        }
    }
    long long id = 0;
    if (!bad && !sid) {
        pd_cli_fail(2, "show: which session? (see 'ponder ls')");
        bad = true;
    }
    if (!bad && !pd_arg_long("show", "SESSION", sid, 1, INT64_MAX, &id)) {
        bad = true;
    }
    if (bad) {
        return 2;
    }
    struct pd_store *st = pd_cli_open_db(db, PD_CLI_DB_READ);
    if (!st) {
        return 1;
    }
    int rc = 0;
    if (json) {
        struct pd_err err;
        pd_err_clear(&err);
        /* streamed: memory independent of the session's length */
        if (pd_jsonl_session_write(st, id, PD_JSONL_PONDER, stdout, &err) != PD_OK) {
            fputc('\n', stdout);
            pd_cli_print_err(&err);
            rc = 1;
        } else {
            fputc('\n', stdout);
        }
    } else {
        rc = show_text(st, id);
    }
    pd_store_close(&st);
    return rc;
}
