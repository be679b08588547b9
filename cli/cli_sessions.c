/* cli_sessions.c - finding and managing saved sessions: ls, search, rm, tag.
 *
 * Contracts:
 *   ls [--tag T] [--model M] [--source S] [--since WHEN] [--limit N] [--json] [--db F]
 *       one line per session, oldest first (--limit: the newest N) / a JSON array
 *   search QUERY... [--phrase | --fts] [filters as ls] [--limit N] [--json] [--db F]
 *       the sessions whose conversation or trace match (SQLite FTS5), best first, each
 *       with a snippet; --json: [{"session":{as ls},"snippet":S}]
 *   rm SESSION|A-B... [filters as ls] [--branches] [--dry-run] [--db F]
 *       deletes the sessions in one transaction (all or nothing); a session with branches
 *       needs --branches (its branches go too) or its branches in the selection
 *   tag SESSION TAG [NOTE] [--db F], tag --rm SESSION TAG [--db F]
 *       tags a whole session / removes every annotation with that tag from it
 * Usage errors exit 2 with the command's name; a missing session or database exits 1. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonw.h"
#include "mem.h"
#include "utf8.h"
#include "cli.h"
#include "store.h"
#include "store_find.h"
#include "termsafe.h"

void pd_cli_fmt_time(int64_t ms, char *buf, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!localtime_r(&t, &tm) || strftime(buf, n, "%Y-%m-%d %H:%M", &tm) == 0) {
        snprintf(buf, n, "?");
    }
}

/* Copies s into out as one printable line of at most max_cols code points: controls and
 * invalid bytes become spaces / U+FFFD, a cut is marked with "...". */
void pd_cli_one_line(const char *s, size_t n, char *out, size_t out_n, size_t max_cols)
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
bool pd_cli_session_json(struct pd_buf *b, const struct pd_store_session_info *s)
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
    pd_cli_one_line(s->title, strlen(s->title), title, sizeof title, 200);
    return ok && pd_buf_puts(b, "],\"title\":") && pd_json_str(b, title, strlen(title)) &&
           pd_buf_puts(b, "}");
}


/* ---- filters ---------------------------------------------------------------------- */

/* Parses --since: an age ("30m", "12h", "7d", "2w") or a local date ("2026-12-05",
 * "2026-12-05 14:30", "2026-12-05T14:30"). */
static bool parse_since(const char *cmd, const char *v, int64_t *ms)
{
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    static const struct {
        char unit;
        long long s;
    } ages[] = {{'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 7 * 86400}};
    for (size_t i = 0; end && end != v && n >= 0 && i < sizeof ages / sizeof ages[0]; i++) {
        if (end[0] == ages[i].unit && end[1] == '\0' && n <= 100LL * 365 * 86400 / ages[i].s) {
            *ms = ((long long)time(NULL) - n * ages[i].s) * 1000;
            return true;
        }
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int y, mo, d, h = 0, mi = 0, used = 0;
    char sep = 0;
    bool ok = (sscanf(v, "%4d-%2d-%2d%n", &y, &mo, &d, &used) == 3 && v[used] == '\0') ||
              (sscanf(v, "%4d-%2d-%2d%c%2d:%2d%n", &y, &mo, &d, &sep, &h, &mi, &used) == 6 &&
               v[used] == '\0' && (sep == ' ' || sep == 'T'));
    ok = ok && y >= 1970 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59;
    if (ok) {
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_isdst = -1;
        time_t t = mktime(&tm);
        ok = t != (time_t)-1;
        *ms = (int64_t)t * 1000;
    }
    if (!ok) {
        pd_cli_fail(2, "%s: --since: expected an age (30m, 12h, 7d, 2w) or a date "
                       "(2026-12-05, '2026-12-05 14:30'), got '%s'", cmd, v);
    }
    return ok;
}

/* Matches one filter option at a->i into f; false when argv[a->i] is none of them. */
static bool filter_arg(struct pd_argv *a, struct pd_session_filter *f, bool *bad)
{
    const char *v = NULL;
    long long n = 0;
    if (pd_arg_match(a, "--tag", NULL, &v, bad)) {
        f->tag = v;
    } else if (pd_arg_match(a, "--model", NULL, &v, bad)) {
        f->model = v;
    } else if (pd_arg_match(a, "--source", NULL, &v, bad)) {
        f->source = v;
    } else if (pd_arg_match(a, "--since", NULL, &v, bad)) {
        *bad = *bad || !parse_since(a->cmd, v, &f->since_ms);
    } else if (pd_arg_match(a, "--limit", NULL, &v, bad)) {
        *bad = *bad || !pd_arg_long(a->cmd, "--limit", v, 1, 1000000000, &n);
        f->limit = (size_t)n;
    } else {
        return false;
    }
    if (!*bad && v && !*v) {
        *bad = pd_cli_fail(2, "%s: %s: empty value", a->cmd, a->argv[a->i - 1]) != 0;
    }
    return true;
}

#define FILTER_HELP \
    "  --tag T        sessions with an annotation tagged T (ponder tag, or the workbench)\n" \
    "  --model M      model file name containing M (any case), or sha256 starting with M\n" \
    "  --source S     source starting with S: live, generate, import, import:FILE\n" \
    "  --since WHEN   created since an age (30m, 12h, 7d, 2w) or a local date\n" \
    "                 (2026-12-05, '2026-12-05 14:30')\n"

static void infos_free(struct pd_store_session_info *all, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pd_store_session_info_free(&all[i]);
    }
    free(all);
}

/* ---- ls --------------------------------------------------------------------------- */

static void ls_row(const struct pd_store_session_info *s)
{
    char when[32], title[256], model[64], state[32], steps[16];
    pd_cli_fmt_time(s->created_ms, when, sizeof when);
    pd_cli_one_line(s->title, strlen(s->title), title, sizeof title, 36);
    pd_cli_one_line(s->model_name ? s->model_name : "-",
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
           (long long)s->n_tokens, steps, state, model, title, *s->tags ? " [" : "", s->tags,
           *s->tags ? "]" : "");
}

static void ls_header(void)
{
    printf("%6s  %-16s %8s %6s  %-8s %-20s %s\n", "ID", "CREATED", "TOKENS", "STEPS", "STATE",
           "MODEL", "TITLE [TAGS]");
}

int pd_cli_ls(int argc, char **argv)
{
    struct pd_argv a = {argc, argv, 1, "ls"};
    const char *db = NULL;
    bool json = false, bad = false;
    struct pd_session_filter f = {0};
    while (a.i < argc && !bad) {
        const char *v = NULL;
        if (strcmp(argv[a.i], "--help") == 0 || strcmp(argv[a.i], "-h") == 0) {
            printf("usage: ponder ls [--tag T] [--model M] [--source S] [--since WHEN]\n"
                   "                 [--limit N] [--json] [--db F]\n\n"
                   "Lists the saved sessions, oldest first: id, creation time, tokens, steps\n"
                   "(-pruned), state (done, partial, or <PARENT@POS for a branch), model, the\n"
                   "last user message and the tags. Filters combine (all must hold).\n"
                   FILTER_HELP
                   "  --limit N      only the newest N\n"
                   "  --json         a JSON array of the sessions\n"
                   "  --db F         database file (default $XDG_DATA_HOME/ponder/ponder.db)\n");
            return 0;
        }
        if (pd_arg_match(&a, "--db", NULL, &v, &bad)) {
            db = v;
        } else if (pd_arg_match(&a, "--json", NULL, NULL, &bad)) {
            json = true;
        } else if (!filter_arg(&a, &f, &bad)) {
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
    if (pd_store_sessions_find(st, &f, &all, NULL, &n, &err) != PD_OK) {
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
            ok = pd_buf_puts(&b, i ? "," : "") && pd_cli_session_json(&b, &all[i]);
        }
        if (ok && pd_buf_puts(&b, "]")) {
            puts(b.data);
        } else {
            rc = pd_cli_fail(1, "ls: out of memory");
        }
        pd_buf_deinit(&b);
    } else {
        ls_header();
        for (size_t i = 0; i < n; i++) {
            ls_row(&all[i]);
        }
        if (n == 0 && (f.tag || f.model || f.source || f.since_ms)) {
            fprintf(stderr, "ls: no session matches the filters\n");
        }
    }
    infos_free(all, n);
    pd_store_close(&st);
    return rc;
}

/* ---- search ----------------------------------------------------------------------- */

/* The FTS5 query for the words of argv: each word a quoted string (all must occur), or
 * the whole text one phrase, or (raw) the text as FTS5 syntax. Owned, NULL on no memory. */
static char *build_query(char **words, int n, bool phrase, bool raw)
{
    struct pd_buf q;
    pd_buf_init(&q);
    bool ok = true;
    for (int i = 0; ok && i < n; i++) {
        const char *w = words[i];
        if (raw) {
            ok = pd_buf_puts(&q, i ? " " : "") && pd_buf_puts(&q, w);
            continue;
        }
        /* split on spaces too ("ponder search 'wait let me'" is three words) */
        while (ok && *w) {
            while (*w && isspace((unsigned char)*w)) {
                w++;
            }
            size_t len = 0;
            while (w[len] && !isspace((unsigned char)w[len])) {
                len++;
            }
            if (len == 0) {
                break;
            }
            bool first = q.len == 0;
            ok = (phrase ? pd_buf_puts(&q, first ? "\"" : " ")
                         : pd_buf_puts(&q, first ? "\"" : " \""));
            for (size_t k = 0; ok && k < len; k++) {
                ok = w[k] == '"' ? pd_buf_puts(&q, "\"\"") : pd_buf_printf(&q, "%c", w[k]);
            }
            ok = ok && (phrase || pd_buf_puts(&q, "\""));
            w += len;
        }
    }
    if (ok && phrase && q.len) {
        ok = pd_buf_puts(&q, "\"");
    }
    if (!ok || !q.data) {
        pd_buf_deinit(&q);
        return NULL;
    }
    return q.data;
}

int pd_cli_search(int argc, char **argv)
{
    struct pd_argv a = {argc, argv, 1, "search"};
    const char *db = NULL;
    bool json = false, bad = false, phrase = false, raw = false;
    struct pd_session_filter f = {.limit = 20};
    char **words = pd_calloc((size_t)argc, sizeof *words);
    int n_words = 0;
    if (!words) {
        return pd_cli_fail(1, "search: out of memory");
    }
    while (a.i < argc && !bad) {
        const char *v = NULL;
        if (strcmp(argv[a.i], "--help") == 0 || strcmp(argv[a.i], "-h") == 0) {
            printf("usage: ponder search QUERY... [--phrase | --fts] [--tag T] [--model M]\n"
                   "                     [--source S] [--since WHEN] [--limit N] [--json]\n"
                   "                     [--db F]\n\n"
                   "Full-text search (SQLite FTS5) over every session's conversation and\n"
                   "trace (thinking, answer, injected text). Prints the matching sessions,\n"
                   "best match first, each with a snippet ([term] marks a match). By default\n"
                   "every word must occur (any case, anywhere in the session).\n"
                   "  --phrase       the words in this order, next to each other\n"
                   "  --fts          QUERY is FTS5 syntax: AND, OR, NOT, NEAR(a b, 5),\n"
                   "                 prefix*, \"a phrase\"\n"
                   FILTER_HELP
                   "  --limit N      at most N sessions (default 20)\n"
                   "  --json         [{\"session\": {as ls --json}, \"snippet\": S}]\n"
                   "  --db F         database file (default $XDG_DATA_HOME/ponder/ponder.db)\n"
                   "Sessions recorded or imported since the last search are indexed first.\n");
            free(words);
            return 0;
        }
        if (pd_arg_match(&a, "--db", NULL, &v, &bad)) {
            db = v;
        } else if (pd_arg_match(&a, "--json", NULL, NULL, &bad)) {
            json = true;
        } else if (pd_arg_match(&a, "--phrase", NULL, NULL, &bad)) {
            phrase = true;
        } else if (pd_arg_match(&a, "--fts", NULL, NULL, &bad)) {
            raw = true;
        } else if (filter_arg(&a, &f, &bad)) {
            continue;
        } else if (argv[a.i][0] == '-' && argv[a.i][1] != '\0') {
            pd_cli_fail(2, "search: unknown option '%s'", argv[a.i]);
            bad = true;
        } else {
            words[n_words++] = argv[a.i++];
        }
    }
    if (!bad && phrase && raw) {
        bad = pd_cli_fail(2, "search: --phrase and --fts exclude each other") != 0;
    }
    char *query = bad ? NULL : build_query(words, n_words, phrase, raw);
    free(words);
    if (!bad && (!query || !*query)) {
        bad = pd_cli_fail(2, "search: nothing to search for (see 'ponder search --help')") != 0;
    }
    if (bad) {
        free(query);
        return 2;
    }
    /* the index is brought up to date where the database can be written */
    struct pd_store *st = pd_cli_open_db(db, PD_CLI_DB_BROWSE);
    if (!st) {
        free(query);
        return 1;
    }
    struct pd_err err;
    pd_err_clear(&err);
    size_t stale = 0;
    struct pd_store_session_info *all = NULL;
    char **snip = NULL;
    size_t n = 0;
    enum pd_status s = pd_store_text_sync(st, &stale, &err);
    if (s == PD_OK && stale && pd_store_read_only(st)) {
        fprintf(stderr, "ponder: search: %zu session%s changed since the database was last "
                        "indexed and cannot be indexed now (read-only): searched as they were\n",
                stale, stale == 1 ? "" : "s");
    }
    f.match = query;
    if (s == PD_OK) {
        s = pd_store_sessions_find(st, &f, &all, &snip, &n, &err);
    }
    int rc = 0;
    if (s == PD_EINVAL) {
        rc = pd_cli_fail(2, "search: %s", err.msg);
    } else if (s != PD_OK) {
        pd_cli_print_err(&err);
        rc = 1;
    } else if (json) {
        struct pd_buf b;
        pd_buf_init(&b);
        bool ok = pd_buf_puts(&b, "[");
        for (size_t i = 0; ok && i < n; i++) {
            ok = pd_buf_puts(&b, i ? ",{\"session\":" : "{\"session\":") &&
                 pd_cli_session_json(&b, &all[i]) && pd_buf_puts(&b, ",\"snippet\":") &&
                 pd_json_str(&b, snip[i], strlen(snip[i])) && pd_buf_puts(&b, "}");
        }
        if (ok && pd_buf_puts(&b, "]")) {
            puts(b.data);
        } else {
            rc = pd_cli_fail(1, "search: out of memory");
        }
        pd_buf_deinit(&b);
    } else {
        ls_header();
        for (size_t i = 0; i < n; i++) {
            char line[1024];
            ls_row(&all[i]);
            pd_cli_one_line(snip[i], strlen(snip[i]), line, sizeof line, 110);
            printf("        %s\n", line);
        }
        if (n == 0) {
            fprintf(stderr, "search: no session matches %s\n", query);
        }
    }
    for (size_t i = 0; snip && i < n; i++) {
        free(snip[i]);
    }
    free(snip);
    infos_free(all, n);
    pd_store_close(&st);
    free(query);
    return rc;
}

/* ---- rm --------------------------------------------------------------------------- */

static int cmp_id_desc(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? 1 : a > b ? -1 : 0;
}

/* Adds id to the set (a sorted-later array) unless present. */
static bool id_add(int64_t **ids, size_t *n, size_t *cap, int64_t id)
{
    for (size_t i = 0; i < *n; i++) {
        if ((*ids)[i] == id) {
            return true;
        }
    }
    int64_t *g = pd_grow_array(*ids, cap, *n + 1, sizeof **ids);
    if (!g) {
        return false;
    }
    *ids = g;
    (*ids)[(*n)++] = id;
    return true;
}

/* Parses "N" or "A-B" (A <= B, at most 100000 ids). */
static bool parse_ids(const char *v, int64_t *lo, int64_t *hi)
{
    char *end = NULL;
    long long a = strtoll(v, &end, 10);
    long long b = a;
    if (end && *end == '-') {
        const char *s = end + 1;
        b = strtoll(s, &end, 10);
        if (end == s) {
            return false;
        }
    }
    if (!end || end == v || *end || a < 1 || b < a || b - a >= 100000) {
        return false;
    }
    *lo = a;
    *hi = b;
    return true;
}

int pd_cli_rm(int argc, char **argv)
{
    struct pd_argv a = {argc, argv, 1, "rm"};
    const char *db = NULL;
    bool bad = false, branches = false, dry = false, filtered = false;
    struct pd_session_filter f = {0};
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    while (a.i < argc && !bad) {
        const char *v = NULL;
        if (strcmp(argv[a.i], "--help") == 0 || strcmp(argv[a.i], "-h") == 0) {
            printf("usage: ponder rm SESSION|A-B... [--tag T] [--model M] [--source S]\n"
                   "                [--since WHEN] [--branches] [--dry-run] [--db F]\n\n"
                   "Deletes sessions with everything they hold (tokens, steps, prunes, tags,\n"
                   "labels), all in one transaction: if one cannot go, none goes. Sessions are\n"
                   "named by id or range (3 7 10-20) and/or by the filters of ponder ls (all\n"
                   "must hold).\n"
                   FILTER_HELP
                   "  --branches     also delete the branches of the selected sessions (a\n"
                   "                 session with branches is refused without it, unless its\n"
                   "                 branches are selected too)\n"
                   "  --dry-run      list what would be deleted, delete nothing\n"
                   "  --db F         database file (default $XDG_DATA_HOME/ponder/ponder.db)\n");
            free(ids);
            return 0;
        }
        int64_t lo = 0, hi = 0;
        if (pd_arg_match(&a, "--db", NULL, &v, &bad)) {
            db = v;
        } else if (pd_arg_match(&a, "--branches", NULL, NULL, &bad)) {
            branches = true;
        } else if (pd_arg_match(&a, "--dry-run", NULL, NULL, &bad)) {
            dry = true;
        } else if (filter_arg(&a, &f, &bad)) {
            filtered = true;
        } else if (argv[a.i][0] == '-' && !isdigit((unsigned char)argv[a.i][1])) {
            pd_cli_fail(2, "rm: unknown option '%s'", argv[a.i]);
            bad = true;
        } else if (!parse_ids(argv[a.i], &lo, &hi)) {
            pd_cli_fail(2, "rm: expected a session id or a range A-B, got '%s'", argv[a.i]);
            bad = true;
        } else {
            for (int64_t id = lo; id <= hi && !bad; id++) {
                bad = !id_add(&ids, &n, &cap, id) && pd_cli_fail(1, "rm: out of memory");
            }
            a.i++;
        }
    }
    if (!bad && n == 0 && !filtered) {
        bad = pd_cli_fail(2, "rm: name sessions (ids, A-B) or a filter "
                             "(see 'ponder rm --help')") != 0;
    }
    if (bad) {
        free(ids);
        return 2;
    }
    if (f.limit) {
        free(ids);
        return pd_cli_fail(2, "rm: --limit does not apply");
    }
    struct pd_store *st = pd_cli_open_db(db, dry ? PD_CLI_DB_READ : PD_CLI_DB_UPDATE);
    if (!st) {
        free(ids);
        return 1;
    }
    struct pd_err err;
    pd_err_clear(&err);
    enum pd_status s = PD_OK;
    /* ids given: each must exist; with filters too, only those the filters keep */
    struct pd_store_session_info *sel = NULL;
    size_t n_sel = 0;
    for (size_t i = 0; s == PD_OK && i < n; i++) {
        struct pd_store_session_info in;
        s = pd_store_session_get(st, ids[i], &in, &err);
        if (s == PD_OK) {
            pd_store_session_info_free(&in);
        }
    }
    if (s == PD_OK && filtered) {
        s = pd_store_sessions_find(st, &f, &sel, NULL, &n_sel, &err);
        if (s == PD_OK && n > 0) { /* ids and filters: the ids the filters keep */
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                bool keep = false;
                for (size_t j = 0; j < n_sel && !keep; j++) {
                    keep = sel[j].id == ids[i];
                }
                if (keep) {
                    ids[k++] = ids[i];
                }
            }
            n = k;
        } else {
            for (size_t j = 0; s == PD_OK && j < n_sel; j++) {
                if (!id_add(&ids, &n, &cap, sel[j].id)) {
                    s = pd_err_set(&err, PD_ENOMEM, "rm: out of memory");
                }
            }
        }
        infos_free(sel, n_sel);
    }
    /* --branches: every descendant; a branch is newer than its parent, so one pass in id
     * order meets each parent before its branches */
    if (s == PD_OK && branches && n > 0) {
        struct pd_store_session_info *all = NULL;
        size_t n_all = 0;
        s = pd_store_session_list(st, &all, &n_all, &err);
        for (size_t j = 0; s == PD_OK && j < n_all; j++) {
            bool in = false;
            for (size_t i = 0; i < n && !in && all[j].parent_id; i++) {
                in = ids[i] == all[j].parent_id;
            }
            if (in && !id_add(&ids, &n, &cap, all[j].id)) {
                s = pd_err_set(&err, PD_ENOMEM, "rm: out of memory");
            }
        }
        infos_free(all, n_all);
    }
    int rc = 0;
    if (s != PD_OK) {
        pd_cli_print_err(&err);
        rc = 1;
    } else if (n == 0) {
        fprintf(stderr, "rm: no session matches; nothing deleted\n");
    } else {
        /* newest first: branches go before the sessions they hang off */
        qsort(ids, n, sizeof *ids, cmp_id_desc);
        if (!dry) {
            s = pd_store_begin(st, &err);
            for (size_t i = 0; s == PD_OK && i < n; i++) {
                s = pd_store_session_delete(st, ids[i], &err);
            }
            if (s == PD_OK) {
                s = pd_store_commit(st, &err);
            } else {
                pd_store_rollback(st);
            }
        }
        if (s != PD_OK) {
            pd_cli_print_err(&err);
            fprintf(stderr, "ponder: rm: nothing deleted%s\n",
                    strstr(err.msg, "branches") ? " (--branches deletes them too)" : "");
            rc = 1;
        } else {
            printf("%s %zu session%s:", dry ? "would delete" : "deleted", n, n == 1 ? "" : "s");
            for (size_t i = n; i-- > 0;) {
                if (n - 1 - i == 50) {
                    printf(" ... (%zu more)", i + 1);
                    break;
                }
                printf(" %lld", (long long)ids[i]);
            }
            putchar('\n');
        }
    }
    free(ids);
    pd_store_close(&st);
    return rc;
}

/* ---- tag -------------------------------------------------------------------------- */

int pd_cli_tag(int argc, char **argv)
{
    struct pd_argv a = {argc, argv, 1, "tag"};
    const char *db = NULL, *pos[3] = {NULL, NULL, NULL};
    int n_pos = 0;
    bool bad = false, rm = false;
    while (a.i < argc && !bad) {
        const char *v = NULL;
        if (strcmp(argv[a.i], "--help") == 0 || strcmp(argv[a.i], "-h") == 0) {
            printf("usage: ponder tag SESSION TAG [NOTE] [--db F]\n"
                   "       ponder tag --rm SESSION TAG [--db F]\n\n"
                   "Tags a whole session (as the workbench's t does for a span), with an\n"
                   "optional note; ponder ls --tag, search --tag and export --tag select by\n"
                   "tag. A tag is 1..100 bytes of printable UTF-8 without ','. Tagging again\n"
                   "with the same tag changes nothing. --rm removes every annotation with\n"
                   "that tag from the session, spans included.\n");
            return 0;
        }
        if (pd_arg_match(&a, "--db", NULL, &v, &bad)) {
            db = v;
        } else if (pd_arg_match(&a, "--rm", NULL, NULL, &bad)) {
            rm = true;
        } else if (argv[a.i][0] == '-' && argv[a.i][1] != '\0' && n_pos != 2) {
            pd_cli_fail(2, "tag: unknown option '%s'", argv[a.i]);
            bad = true;
        } else if (n_pos < (rm ? 2 : 3)) {
            pos[n_pos++] = argv[a.i++];
        } else {
            pd_cli_fail(2, "tag: unexpected argument '%s' (quote a note with spaces)",
                        argv[a.i]);
            bad = true;
        }
    }
    long long id = 0;
    if (!bad && n_pos < 2) {
        bad = pd_cli_fail(2, "tag: expected SESSION TAG (see 'ponder tag --help')") != 0;
    }
    if (!bad && rm && n_pos > 2) {
        bad = pd_cli_fail(2, "tag: --rm takes SESSION TAG, no note") != 0;
    }
    if (!bad && !pd_arg_long("tag", "SESSION", pos[0], 1, INT64_MAX, &id)) {
        bad = true;
    }
    if (!bad && (!*pos[1] || strlen(pos[1]) > 100 || strchr(pos[1], ',') ||
                 !pd_utf8_valid(pos[1], strlen(pos[1])))) {
        bad = pd_cli_fail(2, "tag: a tag is 1..100 bytes of printable UTF-8 without ','; "
                             "got '%s'", pos[1]) != 0;
    }
    if (bad) {
        return 2;
    }
    struct pd_store *st = pd_cli_open_db(db, PD_CLI_DB_UPDATE);
    if (!st) {
        return 1;
    }
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_annotation *an = NULL;
    size_t n_an = 0;
    enum pd_status s = pd_store_annotations_get(st, id, &an, &n_an, &err);
    struct pd_store_session_info in;
    if (s == PD_OK && (s = pd_store_session_get(st, id, &in, &err)) == PD_OK) {
        pd_store_session_info_free(&in);
    }
    int rc = 0;
    size_t n_same = 0;
    bool whole = false;
    for (size_t i = 0; s == PD_OK && i < n_an; i++) {
        if (strcmp(an[i].tag, pos[1]) == 0) {
            n_same++;
            whole = whole || an[i].whole_session;
        }
    }
    if (s == PD_OK && rm) {
        if (n_same == 0) {
            rc = pd_cli_fail(1, "tag: session %lld has no tag '%s'", id, pos[1]);
        } else {
            s = pd_store_begin(st, &err);
            for (size_t i = 0; s == PD_OK && i < n_an; i++) {
                if (strcmp(an[i].tag, pos[1]) == 0) {
                    s = pd_store_annotation_delete(st, id, an[i].id, &err);
                }
            }
            s = s == PD_OK ? pd_store_commit(st, &err) : (pd_store_rollback(st), s);
            if (s == PD_OK) {
                printf("session %lld: removed %zu annotation%s tagged %s\n", id, n_same,
                       n_same == 1 ? "" : "s", pos[1]);
            }
        }
    } else if (s == PD_OK && whole) {
        printf("session %lld: already tagged %s\n", id, pos[1]);
    } else if (s == PD_OK) {
        struct pd_annotation t = {.whole_session = true, .tag = (char *)pos[1],
                                  .note = (char *)(pos[2] ? pos[2] : "")};
        s = pd_store_annotate(st, id, &t, NULL, &err);
        if (s == PD_EINVAL) {
            rc = pd_cli_fail(2, "tag: %s", err.msg);
            s = PD_OK;
        } else if (s == PD_OK) {
            printf("session %lld: tagged %s\n", id, pos[1]);
        }
    }
    if (s != PD_OK) {
        pd_cli_print_err(&err);
        rc = 1;
    }
    pd_store_annotations_free(an, n_an);
    pd_store_close(&st);
    return rc;
}
