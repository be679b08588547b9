/* store.c - opening a ponder database: pragmas, identity checks, forward migrations; the
 * statement cache, transaction helpers and error mapping the other store files use.
 *
 * DESIGN
 * - One struct pd_store = one SQLite connection, one owner thread.
 * - Every connection runs with journal_mode=WAL (readers never block the writer),
 *   synchronous=NORMAL (a commit reaches the WAL file before COMMIT returns, so a killed
 *   process loses nothing it committed; only an OS crash or power loss may lose the last
 *   commits), foreign_keys=ON and a busy timeout.
 * - A ponder database carries PRAGMA application_id = PD_STORE_APPLICATION_ID and its
 *   schema version in PRAGMA user_version. An empty file (both 0, no tables) is new; a
 *   file with tables but another id is refused rather than modified.
 * - Migrations run one per transaction, re-reading user_version inside the transaction
 *   so two processes opening an old file at once do not apply a step twice. */
#include "store_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"

static const char *const stmt_sql[PD_STMT_COUNT] = {
    [PD_STMT_TOKEN_INSERT] =
        "INSERT INTO tokens (session_id, pos, tok, role, flags, text, logprob, entropy, topk,"
        " attn) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [PD_STMT_SESSION_GROW] =
        "UPDATE sessions SET n_tokens = max(n_tokens, ?2), updated_ms = ?3 WHERE id = ?1",
    [PD_STMT_SESSION_FORK] = "SELECT coalesce(parent_id, 0), fork_pos FROM sessions WHERE id = ?1",
    [PD_STMT_TOKEN_LAST_POS] = "SELECT max(pos) FROM tokens WHERE session_id = ?1",
    [PD_STMT_KV_INSERT] =
        "INSERT INTO kv_events (session_id, at_pos, layer, slot_pos, kind)"
        " VALUES (?1, ?2, ?3, ?4, ?5)",
    [PD_STMT_STEP_UPSERT] =
        "INSERT INTO steps (session_id, idx, pos_begin, pos_end, kind, mean_surprisal,"
        " first_surprisal, mean_entropy, attn_received) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
        " ?8, ?9) ON CONFLICT (session_id, idx) DO UPDATE SET pos_begin = excluded.pos_begin,"
        " pos_end = excluded.pos_end, kind = excluded.kind,"
        " mean_surprisal = excluded.mean_surprisal, first_surprisal = excluded.first_surprisal,"
        " mean_entropy = excluded.mean_entropy, attn_received = excluded.attn_received",
    [PD_STMT_SESSION_INSERT] =
        "INSERT INTO sessions (model_id, parent_id, fork_pos, source, meta, chat_template, mode,"
        " kv_policy, temperature, top_p, top_k, min_p, seed, n_tokens, created_ms, updated_ms,"
        " reference)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15, ?16)",
    [PD_STMT_MESSAGE_INSERT] =
        "INSERT INTO messages (session_id, idx, role, content) VALUES (?1, ?2, ?3, ?4)",
    [PD_STMT_MESSAGES_GET] =
        "SELECT role, content FROM messages WHERE session_id = ?1 ORDER BY idx",
    [PD_STMT_PRUNES_GET] =
        "SELECT p.step_idx, s.pos_begin, s.pos_end, p.strategy, p.pruned_by, p.created_ms"
        " FROM prunes p JOIN steps s ON s.session_id = p.session_id AND s.idx = p.step_idx"
        " WHERE p.session_id = ?1 ORDER BY p.step_idx",
    [PD_STMT_SESSION_GET] = PD_SESSION_SELECT " WHERE s.id = ?1",
    [PD_STMT_SESSION_FINISH] =
        "UPDATE sessions SET finished = 1, updated_ms = ?2 WHERE id = ?1",
    [PD_STMT_STEPS_GET] =
        "SELECT s.idx, s.pos_begin, s.pos_end, s.kind, s.mean_surprisal, s.first_surprisal,"
        " s.mean_entropy, s.attn_received, p.step_idx IS NOT NULL FROM steps s"
        " LEFT JOIN prunes p ON p.session_id = s.session_id AND p.step_idx = s.idx"
        " WHERE s.session_id = ?1 ORDER BY s.idx",
    [PD_STMT_ANNOTATIONS_GET] =
        "SELECT id, pos_begin, pos_end, tag, note, created_ms FROM annotations"
        " WHERE session_id = ?1 ORDER BY pos_begin IS NOT NULL, pos_begin, id",
};
_Static_assert(sizeof stmt_sql / sizeof stmt_sql[0] == PD_STMT_COUNT, "statement table");

struct pd_store_params pd_store_default_params(void)
{
    struct pd_store_params p = {.create = true};
    return p;
}

int64_t pd_store_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum pd_status pd_store_dberr(struct pd_store *st, struct pd_err *err, const char *what)
{
    int code = sqlite3_errcode(st->db) & 0xff;
    enum pd_status s = (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) ? PD_EFORMAT : PD_EDB;
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED) {
        return pd_err_set(err, s, "%s: %s: the database is locked by another process (waited "
                          "%.1f s for it); try again when that one is done", st->path, what,
                          st->busy_ms / 1000.0);
    }
    return pd_err_set(err, s, "%s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
}

enum pd_status pd_store_exec(struct pd_store *st, const char *sql, struct pd_err *err)
{
    if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        return pd_store_dberr(st, err, "exec");
    }
    return PD_OK;
}

sqlite3_stmt *pd_store_prepare(struct pd_store *st, const char *sql, struct pd_err *err)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        pd_store_dberr(st, err, "prepare");
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

sqlite3_stmt *pd_store_stmt(struct pd_store *st, enum pd_store_stmt_id id, struct pd_err *err)
{
    sqlite3_stmt *s = st->stmts[id];
    if (!s) {
        s = pd_store_prepare(st, stmt_sql[id], err);
        st->stmts[id] = s;
        return s;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

char *pd_store_col_strdup(sqlite3_stmt *s, int col, bool *ok)
{
    if (sqlite3_column_type(s, col) == SQLITE_NULL) {
        return NULL;
    }
    const unsigned char *t = sqlite3_column_text(s, col);
    int n = sqlite3_column_bytes(s, col);
    char *r = t ? pd_strndup((const char *)t, (size_t)n) : pd_strdup("");
    if (!r) {
        *ok = false;
    }
    return r;
}

enum pd_status pd_store_op_begin(struct pd_store *st, struct pd_err *err)
{
    enum pd_status rc;
    if (st->read_only) {
        return pd_err_set(err, PD_EINVAL, "%s: opened read-only; nothing can be saved", st->path);
    }
    if (st->in_txn || st->op_depth > 0) {
        rc = pd_store_exec(st, "SAVEPOINT pd_op", err);
    } else {
        /* IMMEDIATE takes the write lock up front, so a busy database waits (busy
         * timeout) here instead of failing later with a deadlock on lock upgrade. */
        rc = pd_store_exec(st, "BEGIN IMMEDIATE", err);
    }
    if (rc == PD_OK) {
        st->op_depth++;
    }
    return rc;
}

enum pd_status pd_store_op_end(struct pd_store *st, enum pd_status rc, struct pd_err *err)
{
    st->op_depth--;
    if (st->in_txn || st->op_depth > 0) {
        if (rc != PD_OK) {
            sqlite3_exec(st->db, "ROLLBACK TO pd_op; RELEASE pd_op", NULL, NULL, NULL);
            return rc;
        }
        return pd_store_exec(st, "RELEASE pd_op", err);
    }
    if (rc != PD_OK) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        rc = pd_store_dberr(st, err, "commit");
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

enum pd_status pd_store_begin(struct pd_store *st, struct pd_err *err)
{
    if (st->in_txn) {
        return pd_err_set(err, PD_EINVAL, "%s: transaction already open", st->path);
    }
    if (st->read_only) {
        return pd_err_set(err, PD_EINVAL, "%s: opened read-only; nothing can be saved", st->path);
    }
    enum pd_status rc = pd_store_exec(st, "BEGIN IMMEDIATE", err);
    if (rc == PD_OK) {
        st->in_txn = true;
    }
    return rc;
}

enum pd_status pd_store_commit(struct pd_store *st, struct pd_err *err)
{
    if (!st->in_txn) {
        return pd_err_set(err, PD_EINVAL, "%s: commit without a transaction", st->path);
    }
    st->in_txn = false;
    enum pd_status rc = pd_store_exec(st, "COMMIT", err);
    if (rc != PD_OK) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

void pd_store_rollback(struct pd_store *st)
{
    if (st && st->in_txn) {
        st->in_txn = false;
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

/* Reads a one-integer PRAGMA. */
static enum pd_status pragma_int(struct pd_store *st, const char *sql, int64_t *out,
                                 struct pd_err *err)
{
    sqlite3_stmt *s = pd_store_prepare(st, sql, err);
    if (!s) {
        return err ? err->status : PD_EDB;
    }
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        enum pd_status r = pd_store_dberr(st, err, sql);
        sqlite3_finalize(s);
        return r;
    }
    *out = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return PD_OK;
}

/* Applies migration m inside its own transaction, unless another connection got there
 * first. */
static enum pd_status migrate_one(struct pd_store *st, const struct pd_store_migration *m,
                                  struct pd_err *err)
{
    enum pd_status rc = pd_store_exec(st, "BEGIN IMMEDIATE", err);
    if (rc != PD_OK) {
        return rc;
    }
    int64_t cur = 0;
    rc = pragma_int(st, "PRAGMA user_version", &cur, err);
    if (rc == PD_OK && cur == m->version - 1) {
        char sql[96];
        rc = pd_store_exec(st, m->sql, err);
        if (rc == PD_OK && m->version == 1) {
            snprintf(sql, sizeof sql, "PRAGMA application_id = %d", PD_STORE_APPLICATION_ID);
            rc = pd_store_exec(st, sql, err);
        }
        if (rc == PD_OK) {
            snprintf(sql, sizeof sql, "PRAGMA user_version = %d", m->version);
            rc = pd_store_exec(st, sql, err);
        }
        if (rc != PD_OK) {
            pd_err_prefix(err, "migration %d (%s)", m->version, m->what);
        }
    } else if (rc == PD_OK && cur != m->version - 1 && cur < m->version) {
        rc = pd_err_set(err, PD_EFORMAT, "%s: schema version %lld, expected %d", st->path,
                        (long long)cur, m->version - 1);
    }
    if (rc != PD_OK) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        rc = pd_store_dberr(st, err, "commit migration");
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

/* mkdir -p of the folder part of path. */
static enum pd_status make_parent_dirs(const char *path, struct pd_err *err)
{
    char *dir = pd_strdup(path);
    if (!dir) {
        return pd_err_set(err, PD_ENOMEM, "%s: out of memory", path);
    }
    char *slash = strrchr(dir, '/');
    enum pd_status rc = PD_OK;
    if (slash && slash != dir) {
        *slash = '\0';
        for (char *p = dir + 1; rc == PD_OK; p++) {
            bool end = *p == '\0';
            if (*p == '/' || end) {
                char keep = *p;
                *p = '\0';
                if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
                    rc = pd_err_set(err, PD_EIO, "%s: cannot create folder: %s", dir,
                                    strerror(errno));
                }
                *p = keep;
            }
            if (end) {
                break;
            }
        }
    }
    free(dir);
    return rc;
}

/* Checks identity and version; applies migrations. */
static enum pd_status open_checks(struct pd_store *st, int target, bool read_only,
                                  struct pd_err *err)
{
    int64_t app_id = 0, version = 0, n_objects = 0;
    enum pd_status rc = pragma_int(st, "PRAGMA application_id", &app_id, err);
    if (rc == PD_OK) {
        rc = pragma_int(st, "PRAGMA user_version", &version, err);
    }
    if (rc == PD_OK) {
        rc = pragma_int(st, "SELECT count(*) FROM sqlite_schema", &n_objects, err);
    }
    if (rc != PD_OK) {
        return rc;
    }
    if (app_id != PD_STORE_APPLICATION_ID && (app_id != 0 || version != 0 || n_objects != 0)) {
        return pd_err_set(err, PD_EFORMAT,
                          "%s: not a ponder database (application_id 0x%llx, %lld schema "
                          "objects)",
                          st->path, (unsigned long long)app_id, (long long)n_objects);
    }
    if (version > PD_STORE_SCHEMA_VERSION) {
        return pd_err_set(err, PD_EUNSUPPORTED,
                          "%s: schema version %lld is newer than this ponder reads (%d); "
                          "upgrade ponder",
                          st->path, (long long)version, PD_STORE_SCHEMA_VERSION);
    }
    if (version < 0) {
        return pd_err_set(err, PD_EFORMAT, "%s: negative schema version %lld", st->path,
                          (long long)version);
    }
    if (read_only) {
        /* nothing may be written: no journal mode change, no migration */
        if (version != PD_STORE_SCHEMA_VERSION && !(version == 0 && n_objects == 0)) {
            return pd_err_set(err, PD_EUNSUPPORTED,
                              "%s: schema version %lld needs upgrading to %d, which a read-only "
                              "open cannot do; run a command that writes (e.g. ponder import) "
                              "on it once where it is writable", st->path, (long long)version,
                              PD_STORE_SCHEMA_VERSION);
        }
        if (n_objects == 0) {
            return pd_err_set(err, PD_EFORMAT, "%s: an empty file, not a ponder database",
                              st->path);
        }
        rc = pd_store_exec(st, "PRAGMA foreign_keys = ON", err);
        st->version = (int)version;
        return rc;
    }
    /* WAL is a property of the file; setting it on an open WAL file is a no-op. */
    int64_t dummy = 0;
    sqlite3_stmt *s = pd_store_prepare(st, "PRAGMA journal_mode = WAL", err);
    if (!s) {
        return err ? err->status : PD_EDB;
    }
    int src = sqlite3_step(s);
    const char *mode = src == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
    bool wal = mode && strcmp(mode, "wal") == 0;
    sqlite3_finalize(s);
    if (!wal) {
        return pd_store_dberr(st, err, "cannot switch to WAL journal mode");
    }
    rc = pd_store_exec(st, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL", err);
    if (rc != PD_OK) {
        return rc;
    }
    rc = pragma_int(st, "PRAGMA foreign_keys", &dummy, err);
    if (rc == PD_OK && dummy != 1) {
        return pd_err_set(err, PD_EUNSUPPORTED, "%s: SQLite without foreign keys", st->path);
    }
    for (int v = (int)version + 1; rc == PD_OK && v <= target; v++) {
        rc = migrate_one(st, &pd_store_migrations[v - 1], err);
    }
    if (rc == PD_OK) {
        rc = pragma_int(st, "PRAGMA user_version", &version, err);
        st->version = (int)version;
    }
    return rc;
}

/* Reopens st->path read-only as an immutable file (SQLite URI "immutable=1": no locks,
 * no -shm), the path percent-encoded. */
static enum pd_status open_immutable(struct pd_store *st, struct pd_err *err)
{
    struct pd_buf uri;
    pd_buf_init(&uri);
    bool ok = pd_buf_puts(&uri, "file:");
    for (const unsigned char *c = (const unsigned char *)st->path; ok && *c; c++) {
        bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || strchr("/-._~", *c);
        ok = plain ? pd_buf_append(&uri, c, 1) : pd_buf_printf(&uri, "%%%02X", *c);
    }
    ok = ok && pd_buf_puts(&uri, "?immutable=1");
    if (!ok) {
        pd_buf_deinit(&uri);
        return pd_err_set(err, PD_ENOMEM, "%s: out of memory", st->path);
    }
    enum pd_status rc = PD_OK;
    if (sqlite3_open_v2(uri.data, &st->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) !=
        SQLITE_OK) {
        rc = pd_err_set(err, PD_EIO, "%s: cannot open database: %s", st->path,
                        st->db ? sqlite3_errmsg(st->db) : "out of memory");
    } else {
        sqlite3_extended_result_codes(st->db, 1);
    }
    pd_buf_deinit(&uri);
    return rc;
}

/* True when the failed read-only open of a WAL database came from its missing -shm: the
 * folder refuses new files. */
static bool wal_needs_folder(const struct pd_store *st)
{
    int ext = sqlite3_extended_errcode(st->db);
    if ((ext & 0xff) != SQLITE_CANTOPEN && (ext & 0xff) != SQLITE_READONLY) {
        return false;
    }
    char shm[4200];
    snprintf(shm, sizeof shm, "%s-shm", st->path);
    if (access(shm, F_OK) == 0) {
        return false;
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", st->path);
    char *slash = strrchr(dir, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else {
        slash[slash == dir ? 1 : 0] = '\0'; /* "/x.db" -> "/", "a/x.db" -> "a" */
    }
    return access(dir, W_OK) != 0;
}

enum pd_status pd_store_open(const char *path, const struct pd_store_params *params,
                             struct pd_store **out, struct pd_err *err)
{
    struct pd_store_params p = params ? *params : pd_store_default_params();
    *out = NULL;
    if (!path || !*path) {
        return pd_err_set(err, PD_EINVAL, "database path is empty");
    }
    int target = p.target_version == 0 ? PD_STORE_SCHEMA_VERSION : p.target_version;
    if (target < 0 || target > PD_STORE_SCHEMA_VERSION) {
        return pd_err_set(err, PD_EINVAL, "%s: target schema version %d outside 0..%d", path,
                          target, PD_STORE_SCHEMA_VERSION);
    }
    if (p.create_parent_dirs) {
        enum pd_status rc = make_parent_dirs(path, err);
        if (rc != PD_OK) {
            return rc;
        }
    }
    struct stat sb;
    if ((p.read_only || !p.create) && stat(path, &sb) != 0) {
        return pd_err_set(err, PD_EIO, "%s: %s", path,
                          errno == ENOENT ? "no such database" : strerror(errno));
    }
    struct pd_store *st = calloc(1, sizeof *st);
    if (!st || !(st->path = pd_strdup(path))) {
        free(st);
        return pd_err_set(err, PD_ENOMEM, "%s: out of memory", path);
    }
    int flags = p.read_only ? SQLITE_OPEN_READONLY
                            : SQLITE_OPEN_READWRITE | (p.create ? SQLITE_OPEN_CREATE : 0);
    enum pd_status rc = PD_OK;
    if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
        rc = pd_err_set(err, PD_EIO, "%s: cannot open database: %s", path,
                        st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(st->db, 1);
    st->busy_ms = p.busy_ms > 0 ? p.busy_ms : PD_STORE_BUSY_MS;
    sqlite3_busy_timeout(st->db, st->busy_ms);
    st->read_only = p.read_only;
    rc = open_checks(st, target, p.read_only, err);
    if (rc != PD_OK && p.read_only && wal_needs_folder(st)) {
        /* A WAL database is read through its -shm file, which SQLite must create next to
         * it when absent. Without a -wal file every change is in the database itself, and
         * in a folder nobody can add a -wal to, nobody can write it either: it can be read
         * as immutable. With a -wal file its changes need the -shm: say so. */
        char wal[4200];
        snprintf(wal, sizeof wal, "%s-wal", path);
        struct stat wb;
        if (stat(wal, &wb) != 0 || wb.st_size == 0) {
            sqlite3_close_v2(st->db);
            st->db = NULL;
            rc = open_immutable(st, err);
            if (rc == PD_OK) {
                rc = open_checks(st, target, true, err);
            }
        } else {
            rc = pd_err_set(err, PD_EIO, "%s: a WAL-mode database with changes in %s-wal, in "
                            "a folder that is not writable: reading it needs %s-shm next to it "
                            "(copy the database and its -wal file to a writable folder)",
                            path, path, path);
        }
    }
    if (rc != PD_OK) {
        goto fail;
    }
    *out = st;
    return PD_OK;
fail:
    pd_store_close(&st);
    return rc;
}

void pd_store_close(struct pd_store **stp)
{
    if (!stp || !*stp) {
        return;
    }
    struct pd_store *st = *stp;
    for (int i = 0; i < PD_STMT_COUNT; i++) {
        sqlite3_finalize(st->stmts[i]);
    }
    if (st->db) {
        if (st->in_txn) {
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        }
        sqlite3_close_v2(st->db);
    }
    free(st->path);
    free(st);
    *stp = NULL;
}

bool pd_store_read_only(const struct pd_store *st)
{
    return st->read_only;
}

const char *pd_store_path(const struct pd_store *st)
{
    return st->path;
}

int pd_store_schema_version(const struct pd_store *st)
{
    return st->version;
}

enum pd_status pd_store_default_path(char *buf, size_t n, struct pd_err *err)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    int len;
    if (xdg && xdg[0] == '/') {
        len = snprintf(buf, n, "%s/ponder/ponder.db", xdg);
    } else {
        const char *home = getenv("HOME");
        if (!home || home[0] != '/') {
            return pd_err_set(err, PD_EINVAL,
                              "no database location: set XDG_DATA_HOME or HOME, or use --db");
        }
        len = snprintf(buf, n, "%s/.local/share/ponder/ponder.db", home);
    }
    if (len < 0 || (size_t)len >= n) {
        return pd_err_set(err, PD_EINVAL, "default database path is too long");
    }
    return PD_OK;
}

enum pd_status pd_store_check(struct pd_store *st, struct pd_err *err)
{
    sqlite3_stmt *s = pd_store_prepare(st, "PRAGMA integrity_check", err);
    if (!s) {
        return err ? err->status : PD_EDB;
    }
    enum pd_status rc = PD_OK;
    int r = sqlite3_step(s);
    if (r != SQLITE_ROW) {
        rc = pd_store_dberr(st, err, "integrity check");
    } else if (!sqlite3_column_text(s, 0) ||
               strcmp((const char *)sqlite3_column_text(s, 0), "ok") != 0) {
        const unsigned char *what = sqlite3_column_text(s, 0);
        rc = pd_err_set(err, PD_EFORMAT, "%s: integrity check: %s", st->path,
                        what ? (const char *)what : "no result");
    }
    sqlite3_finalize(s);
    if (rc != PD_OK) {
        return rc;
    }
    s = pd_store_prepare(st, "PRAGMA foreign_key_check", err);
    if (!s) {
        return err ? err->status : PD_EDB;
    }
    r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        rc = pd_err_set(err, PD_EFORMAT, "%s: foreign key check: row %lld of %s has no %s",
                        st->path, (long long)sqlite3_column_int64(s, 1),
                        (const char *)sqlite3_column_text(s, 0),
                        (const char *)sqlite3_column_text(s, 2));
    } else if (r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "foreign key check");
    }
    sqlite3_finalize(s);
    return rc;
}
