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

#include "store.h"
#include "termsafe.h"

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

int pd_cli_fail(int code, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fputs("ponder: ", stderr);
    pd_termsafe_write(stderr, msg, strlen(msg), 0);
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

const char *pd_cli_models_dir(void)
{
    const char *d = getenv("PONDER_TEST_MODELS");
    return (d && *d) ? d : "../shared/models";
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void pd_cli_progress_init(struct pd_cli_progress *p, const char *label)
{
    p->on = isatty(STDERR_FILENO);
    p->drawn = false;
    p->label = label;
    p->last = 0;
}

void pd_cli_progress_draw(struct pd_cli_progress *p, uint64_t done, uint64_t total)
{
    if (!p->on) {
        return;
    }
    double now = mono_s();
    if (now - p->last < 0.1 && done != total) {
        return;
    }
    p->last = now;
    enum { W = 30 };
    char bar[W + 1];
    int fill = total ? (int)((double)done / (double)total * W) : 0;
    for (int i = 0; i < W; i++) {
        bar[i] = i < fill ? '#' : '.';
    }
    bar[W] = '\0';
    if (total) {
        fprintf(stderr, "\r%-.40s [%s] %3d%%  %llu/%llu", p->label, bar,
                (int)(100.0 * (double)done / (double)total), (unsigned long long)done,
                (unsigned long long)total);
    } else {
        fprintf(stderr, "\r%-.40s %llu", p->label, (unsigned long long)done);
    }
    fflush(stderr);
    p->drawn = true;
}

void pd_cli_progress_clear(struct pd_cli_progress *p)
{
    if (p->drawn) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
        p->drawn = false;
    }
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
    if (pd_store_open(db, &p, &st, &err) != PD_OK) {
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
