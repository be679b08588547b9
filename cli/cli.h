/* cli.h - the headless subcommands and the helpers they share (the workbench's commands
 * use the helpers too; their entry points are in tui/tui.h).
 *
 * Each subcommand is `int pd_cli_<name>(int argc, char **argv)` taking argv after the
 * subcommand name (argv[0] is the subcommand) and returning the process exit status:
 * 0 ok, 1 runtime failure (bad file, model error), 2 usage error. Errors are printed
 * once, to stderr, as "ponder: <message>" (usage errors: "ponder <command>: <message>").
 * Machine output (--json) goes to stdout. A "--help" or "-h" anywhere among the arguments
 * is moved to argv[1] by main.c, so each command only looks for it first. */
#ifndef PD_CLI_H
#define PD_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli_progress.h"
#include "status.h"

struct pd_subcmd {
    const char *name;
    const char *summary;                 /* one line for --help */
    int (*run)(int argc, char **argv);
};

/* The subcommand table (terminated by a NULL name). */
extern const struct pd_subcmd pd_subcmds[];

/* Model commands (cli_model.c). */
int pd_cli_info(int argc, char **argv);
int pd_cli_tokenize(int argc, char **argv);
int pd_cli_score(int argc, char **argv);
int pd_cli_generate(int argc, char **argv);
int pd_cli_bench(int argc, char **argv);

/* Store commands (cli_store.c). */
int pd_cli_import(int argc, char **argv);
int pd_cli_export(int argc, char **argv);
int pd_cli_show(int argc, char **argv);

/* Session commands (cli_sessions.c): list with filters, full-text search, delete, tag. */
int pd_cli_ls(int argc, char **argv);
int pd_cli_search(int argc, char **argv);
int pd_cli_rm(int argc, char **argv);
int pd_cli_tag(int argc, char **argv);

struct pd_buf;
struct pd_store_session_info;

/* A session as the JSON object ls --json prints (id, source, created_ms, model, counts,
 * parent, fork_pos, tags, title, ...), appended to b; false when out of memory. */
bool pd_cli_session_json(struct pd_buf *b, const struct pd_store_session_info *s);
/* "YYYY-MM-DD HH:MM" in local time of a Unix time in milliseconds ("?" if it has none). */
void pd_cli_fmt_time(int64_t ms, char *buf, size_t n);
/* Copies s[0..n) into out as one printable line of at most max_cols code points: controls
 * and invalid bytes become spaces / U+FFFD, a cut is marked with "...". */
void pd_cli_one_line(const char *s, size_t n, char *out, size_t out_n, size_t max_cols);

/* Analysis commands (cli_analysis.c). pd_cli_score_in is `score` over stored or imported
 * traces; pd_cli_score calls it when pd_cli_score_batch_wanted(argc, argv) (an --in,
 * --session or --all option is present). */
int pd_cli_analyze(int argc, char **argv);
int pd_cli_prune(int argc, char **argv);
int pd_cli_score_in(int argc, char **argv);
bool pd_cli_score_batch_wanted(int argc, char **argv);

/* Accuracy against cost on a problem set under a grid of settings (cli_eval.c). */
int pd_cli_eval(int argc, char **argv);

/* `generate --in PROMPTS --samples K` (cli_samples.c): recorded samples per prompt;
 * pd_cli_generate calls it when pd_cli_generate_in_wanted(argc, argv) (--in is given). */
int pd_cli_generate_in(int argc, char **argv);
bool pd_cli_generate_in_wanted(int argc, char **argv);

/* An SVG figure of a saved session (cli_plot.c). */
int pd_cli_plot(int argc, char **argv);

/* Writes s[0..n) to stdout: exactly when json (its escaping makes it safe), else through
 * the terminal filter with lines kept (termsafe.h: text holds untrusted pieces). */
void pd_cli_put(const char *s, size_t n, bool json);

/* Prints "ponder: <err message>" to stderr (through the terminal filter). */
void pd_cli_print_err(const struct pd_err *err);
/* Prints "ponder: <fmt...>" to stderr and returns `code`. A usage error (code 2) while a
 * subcommand runs reads "ponder <command>: <fmt...>" instead (a message that already
 * starts with "<command>: " loses that part), so every usage error names its command.
 * Only the first usage error of a process is printed (the command stops there). */
int pd_cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Names the running subcommand for pd_cli_fail's usage errors (main.c, before dispatch;
 * name borrowed for the process's life, NULL for none). */
void pd_cli_set_command(const char *name);

/* Option parsing helpers for "--name value" / "--name=value" / "-x value". */
struct pd_argv {
    int argc;
    char **argv;
    int i;          /* next index to read */
    const char *cmd;/* subcommand name for messages */
};

/* Returns true when argv[i] matches one of the names (long "--x" or short "-x").
 * When it takes a value, stores it in *val (from "--x=v" or the next argument) and
 * advances; a missing value prints a usage error and sets *bad. */
bool pd_arg_match(struct pd_argv *a, const char *lname, const char *sname, const char **val,
                  bool *bad);
/* Parses an integer / float option value; prints an error naming the option on failure. */
bool pd_arg_long(const char *cmd, const char *opt, const char *s, long long lo, long long hi,
                 long long *out);
bool pd_arg_double(const char *cmd, const char *opt, const char *s, double *out);

/* Checks an option value before anything is loaded, so a typo is a usage error (exit 2)
 * rather than a failure after the model loaded: a KV policy spec (--kv), a thinking mode
 * (--mode), a chat family (--chat / --template; opt names the option). Print the error as
 * "ponder <cmd>: <opt>: why" and return false when the value is bad. */
bool pd_cli_check_kv(const char *cmd, const char *spec);
bool pd_cli_check_mode(const char *cmd, const char *spec);
bool pd_cli_check_chat(const char *cmd, const char *opt, const char *name);

/* The longest prompt -f FILE may hold. */
#define PD_CLI_PROMPT_MAX ((size_t)1 << 20)

/* Reads a prompt file (-f FILE): at most PD_CLI_PROMPT_MAX bytes of UTF-8 text without
 * NUL. Returns an owned NUL-terminated copy (free()), or NULL after printing the error
 * naming the file (a runtime error: exit 1). */
char *pd_cli_read_prompt(const char *path);

/* The first progress interface, kept for callers not yet moved to cli_progress.h (which
 * the bulk commands use: rate, ETA and a summary line): a progress line on stderr when it
 * is a terminal (or PONDER_PROGRESS says so). */
struct pd_cli_progress {
    struct pd_progress p;
};

void pd_cli_progress_init(struct pd_cli_progress *p, const char *label);
/* total 0: only the count is shown. */
void pd_cli_progress_draw(struct pd_cli_progress *p, uint64_t done, uint64_t total);
void pd_cli_progress_clear(struct pd_cli_progress *p);

struct pd_store;

/* How a command uses its database. */
enum pd_cli_db {
    PD_CLI_DB_READ,   /* read only (ls, show, plot, export): opened read-only, never created */
    PD_CLI_DB_UPDATE, /* writes into existing sessions (score, analyze, prune): must exist */
    PD_CLI_DB_CREATE, /* records new sessions (import, run): created (and its folder) */
    PD_CLI_DB_BROWSE, /* replay: UPDATE where the file and folder are writable, else READ */
};

/* Opens --db, or the default database when db is NULL, as `mode` says. Prints the error
 * (naming the file; "no such database" rather than creating an empty one) and returns
 * NULL on failure; the caller closes the store. */
struct pd_store *pd_cli_open_db(const char *db, enum pd_cli_db mode);

/* Path of the test/demo models folder: $PONDER_TEST_MODELS or ../shared/models. */
/* Formats x with fmt (one double conversion) into buf, or "-" when x is NAN (a metric
 * that is not defined for this row); returns buf. */
const char *pd_cli_num(char *buf, size_t n, const char *fmt, double x)
    __attribute__((format(printf, 3, 0)));

const char *pd_cli_models_dir(void);

#endif
