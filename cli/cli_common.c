/* cli_common.c - argument parsing and error printing shared by the subcommands. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chat.h"
#include "cli_progress.h"
#include "modes.h"
#include "policies.h"
#include "store.h"
#include "termsafe.h"
#include "utf8.h"

void pd_cli_put(const char *s, size_t n, bool json)
{
    if (n == 0) {
        return;
    }
    if (json) {
        fwrite(s, 1, n, stdout);
    } else {
        pd_termsafe_write(stdout, s, n, PD_TERMSAFE_KEEP_LINES);
    }
}

/* Messages quote file names, keys and values from untrusted input: they reach the
 * terminal through the filter (termsafe.h). */
void pd_cli_print_err(const struct pd_err *err)
{
    const char *m = err->msg[0] ? err->msg : pd_status_str(err->status);
    fputs("ponder: ", stderr);
    pd_termsafe_write(stderr, m, strlen(m), 0);
    fputc('\n', stderr);
}

/* The subcommand being run, for the prefix of usage errors (main.c sets it), and whether
 * a usage error was printed: a command stops at its first one, so a second message about
 * the same mistake (a parser's, then its caller's range) is dropped. */
static const char *cli_command;
static bool cli_usage_printed;

void pd_cli_set_command(const char *name)
{
    cli_command = name;
}

int pd_cli_fail(int code, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *m = msg;
    if (code == 2 && cli_usage_printed) {
        return code;
    }
    cli_usage_printed |= code == 2;
    if (code == 2 && cli_command) {
        /* "ponder score: --kv: ...": messages written as "score: why" read the same */
        size_t n = strlen(cli_command);
        if (strncmp(m, cli_command, n) == 0 && m[n] == ':' && m[n + 1] == ' ') {
            m += n + 2;
        }
        fprintf(stderr, "ponder %s: ", cli_command);
    } else {
        fputs("ponder: ", stderr);
    }
    pd_termsafe_write(stderr, m, strlen(m), 0);
    fputc('\n', stderr);
    return code;
}

bool pd_arg_match(struct pd_argv *a, const char *lname, const char *sname, const char **val,
                  bool *bad)
{
    const char *arg = a->argv[a->i];
    size_t ll = lname ? strlen(lname) : 0;
    const char *inline_val = NULL;
    bool hit = false;
    if (lname && strncmp(arg, lname, ll) == 0 && (arg[ll] == '\0' || arg[ll] == '=')) {
        hit = true;
        if (arg[ll] == '=') {
            inline_val = arg + ll + 1;
        }
    } else if (sname && strcmp(arg, sname) == 0) {
        hit = true;
    }
    if (!hit) {
        return false;
    }
    a->i++;
    if (!val) {
        if (inline_val) {
            pd_cli_fail(2, "%s: option %s takes no value", a->cmd, lname);
            *bad = true;
        }
        return true;
    }
    if (inline_val) {
        *val = inline_val;
    } else if (a->i < a->argc) {
        *val = a->argv[a->i++];
    } else {
        pd_cli_fail(2, "%s: option %s needs a value", a->cmd, lname ? lname : sname);
        *bad = true;
        return true;
    }
    /* options naming files: an empty name is a usage error, not a file called "" */
    static const char *const path_opts[] = {"--out", "--db", "--model", "--in", "--file"};
    for (size_t k = 0; lname && k < sizeof path_opts / sizeof path_opts[0]; k++) {
        if (strcmp(lname, path_opts[k]) == 0 && **val == '\0') {
            pd_cli_fail(2, "%s: option %s: empty file name", a->cmd, lname);
            *bad = true;
        }
    }
    return true;
}

bool pd_arg_long(const char *cmd, const char *opt, const char *s, long long lo, long long hi,
                 long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        pd_cli_fail(2, "%s: %s: expected an integer in [%lld, %lld], got '%s'", cmd, opt, lo, hi,
                    s);
        return false;
    }
    *out = v;
    return true;
}

bool pd_arg_double(const char *cmd, const char *opt, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        pd_cli_fail(2, "%s: %s: expected a number, got '%s'", cmd, opt, s);
        return false;
    }
    *out = v;
    return true;
}

bool pd_cli_check_kv(const char *cmd, const char *spec)
{
    struct pd_policy_spec ps;
    struct pd_err err;
    pd_err_clear(&err);
    if (pd_policy_parse(spec, &ps, &err) != PD_OK) {
        pd_cli_fail(2, "%s: --kv: %s", cmd, err.msg);
        return false;
    }
    return true;
}

bool pd_cli_check_mode(const char *cmd, const char *spec)
{
    enum pd_think_mode m;
    uint32_t budget;
    struct pd_err err;
    pd_err_clear(&err);
    if (pd_think_mode_parse(spec, &m, &budget, &err) != PD_OK) {
        pd_cli_fail(2, "%s: --mode: %s", cmd, err.msg);
        return false;
    }
    return true;
}

bool pd_cli_check_chat(const char *cmd, const char *opt, const char *name)
{
    enum pd_chat_family f;
    struct pd_err err;
    pd_err_clear(&err);
    if (pd_chat_family_parse(name, &f, &err) != PD_OK) {
        pd_cli_fail(2, "%s: %s: %s", cmd, opt, err.msg);
        return false;
    }
    return true;
}

char *pd_cli_read_prompt(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        pd_cli_fail(1, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(PD_CLI_PROMPT_MAX + 1);
    size_t n = buf ? fread(buf, 1, PD_CLI_PROMPT_MAX + 1, f) : 0;
    bool err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        pd_cli_fail(1, "%s: cannot read", path);
        return NULL;
    }
    if (n > PD_CLI_PROMPT_MAX) {
        free(buf);
        pd_cli_fail(1, "%s: prompt longer than 1 MiB", path);
        return NULL;
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n) || !pd_utf8_valid(buf, n)) {
        free(buf);
        pd_cli_fail(1, "%s: the prompt is not UTF-8 text", path);
        return NULL;
    }
    return buf;
}

const char *pd_cli_models_dir(void)
{
    const char *d = getenv("PONDER_TEST_MODELS");
    return (d && *d) ? d : "../shared/models";
}

/* The old progress interface, over cli_progress.h. */
void pd_cli_progress_init(struct pd_cli_progress *p, const char *label)
{
    pd_progress_start(&p->p, label, "items", 0);
}

void pd_cli_progress_draw(struct pd_cli_progress *p, uint64_t done, uint64_t total)
{
    pd_progress_update(&p->p, done, total);
}

void pd_cli_progress_clear(struct pd_cli_progress *p)
{
    pd_progress_clear(&p->p);
}

/* True when path and its folder may be written. */
static bool writable(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else {
        slash[slash == dir ? 1 : 0] = '\0';
    }
    return access(path, W_OK) == 0 && access(dir, W_OK) == 0;
}

struct pd_store *pd_cli_open_db(const char *db, enum pd_cli_db mode)
{
    char path[4096];
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_store_params p = pd_store_default_params();
    if (!db) {
        if (pd_store_default_path(path, sizeof path, &err) != PD_OK) {
            pd_cli_print_err(&err);
            return NULL;
        }
        db = path;
        p.create_parent_dirs = mode == PD_CLI_DB_CREATE;
    }
    if (mode == PD_CLI_DB_BROWSE) {
        mode = access(db, F_OK) == 0 && !writable(db) ? PD_CLI_DB_READ : PD_CLI_DB_UPDATE;
    }
    p.create = mode == PD_CLI_DB_CREATE;
    p.read_only = mode == PD_CLI_DB_READ;
    struct pd_store *st = NULL;
    enum pd_status rc = pd_store_open(db, &p, &st, &err);
    if (rc == PD_EUNSUPPORTED && p.read_only && strstr(err.msg, "needs upgrading") &&
        writable(db)) {
        /* an older database that can be written: upgraded in place, then read */
        p.read_only = false;
        pd_err_clear(&err);
        rc = pd_store_open(db, &p, &st, &err);
    }
    if (rc != PD_OK) {
        if (db == path && access(db, F_OK) != 0) {
            pd_cli_fail(1, "no database yet at %s: record a session (ponder run) or import "
                           "traces (ponder import) first, or name one with --db", db);
        } else {
            pd_cli_print_err(&err);
        }
        return NULL;
    }
    return st;
}

const char *pd_cli_num(char *buf, size_t n, const char *fmt, double x)
{
    if (isnan(x)) {
        snprintf(buf, n, "-");
    } else {
        snprintf(buf, n, fmt, x);
    }
    return buf;
}
