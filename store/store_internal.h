/* store_internal.h - private to store/: the connection handle, cached statements,
 * transaction helpers and error mapping shared by the store's source files.
 *
 * Not part of the module's interface; nothing outside store/ includes it. */
#ifndef PD_STORE_INTERNAL_H
#define PD_STORE_INTERNAL_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "mem.h"
#include "status.h"
#include "store.h"

/* The columns pd_store_session_info is read from (store_sessions.c read_session_row). */
#define PD_SESSION_SELECT \
    "SELECT s.id, coalesce(s.model_id, 0), m.file_name, m.arch, m.sha256, m.file_size," \
    " s.chat_template, s.mode, s.kv_policy, s.temperature, s.top_p, s.top_k, s.min_p, s.seed," \
    " s.source, s.meta," \
    " (SELECT substr(content, 1, 200) FROM messages" \
    "   WHERE session_id = s.id AND role = 'user' ORDER BY idx DESC LIMIT 1)," \
    " coalesce(s.parent_id, 0), s.fork_pos, s.created_ms, s.updated_ms, s.n_tokens," \
    " s.finished," \
    " (SELECT count(*) FROM steps WHERE session_id = s.id)," \
    " (SELECT count(*) FROM prunes WHERE session_id = s.id)," \
    " (SELECT group_concat(tag, ',') FROM" \
    "   (SELECT DISTINCT tag FROM annotations WHERE session_id = s.id ORDER BY tag))," \
    " s.reference" \
    " FROM sessions s LEFT JOIN models m ON m.id = s.model_id"

/* Statements prepared once per connection (the hot and the frequent ones). */
enum pd_store_stmt_id {
    PD_STMT_TOKEN_INSERT,
    PD_STMT_SESSION_GROW,
    PD_STMT_SESSION_FORK,
    PD_STMT_TOKEN_LAST_POS,
    PD_STMT_KV_INSERT,
    PD_STMT_STEP_UPSERT,
    PD_STMT_SESSION_INSERT,
    PD_STMT_MESSAGE_INSERT,
    PD_STMT_MESSAGES_GET,
    PD_STMT_PRUNES_GET,
    PD_STMT_SESSION_GET,
    PD_STMT_SESSION_FINISH,
    PD_STMT_STEPS_GET,
    PD_STMT_ANNOTATIONS_GET,
    PD_STMT_COUNT
};

struct pd_store {
    sqlite3 *db;                         /* owned connection */
    char *path;                          /* owned copy of the file name */
    int version;                         /* user_version after migration */
    bool in_txn;                         /* inside pd_store_begin ... commit */
    bool read_only;                      /* opened with params.read_only */
    int busy_ms;                         /* how long a lock is waited for */
    unsigned op_depth;                   /* open pd_store_op_begin levels */
    sqlite3_stmt *stmts[PD_STMT_COUNT];  /* owned, prepared lazily */
};

/* One forward migration: the SQL that takes a database from version - 1 to version. */
struct pd_store_migration {
    int version;
    const char *what;   /* one line for messages */
    const char *sql;
};

/* Every migration, version 1 .. PD_STORE_SCHEMA_VERSION in order (store_schema.c). */
extern const struct pd_store_migration pd_store_migrations[PD_STORE_SCHEMA_VERSION];

/* Returns the cached statement, prepared on first use, reset and with bindings cleared;
 * NULL with err set (PD_EDB) on failure. Borrowed: valid until pd_store_close. */
sqlite3_stmt *pd_store_stmt(struct pd_store *st, enum pd_store_stmt_id id, struct pd_err *err);

/* Prepares a one-off statement; NULL with err set on failure. Caller finalizes it. */
sqlite3_stmt *pd_store_prepare(struct pd_store *st, const char *sql, struct pd_err *err);

/* Sets err to PD_EDB "<path>: <what>: <sqlite message>" and returns PD_EDB, or PD_EFORMAT
 * when SQLite reports a corrupt or non-database file. */
enum pd_status pd_store_dberr(struct pd_store *st, struct pd_err *err, const char *what);

/* Runs SQL text without results. */
enum pd_status pd_store_exec(struct pd_store *st, const char *sql, struct pd_err *err);

/* Starts one store operation atomically: a transaction when none is open, otherwise a
 * savepoint inside the caller's transaction. Pair every successful call with
 * pd_store_op_end, passing the operation's status: it commits/releases on PD_OK and rolls
 * back otherwise, returning the final status (a failed COMMIT becomes PD_EDB). */
enum pd_status pd_store_op_begin(struct pd_store *st, struct pd_err *err);
enum pd_status pd_store_op_end(struct pd_store *st, enum pd_status rc, struct pd_err *err);

/* Unix time in milliseconds. */
int64_t pd_store_now_ms(void);

/* Inserts tokens (no transaction of its own): checks order against the session's last
 * position and fork_pos, encodes the blobs, grows sessions.n_tokens. */
enum pd_status pd_store_tokens_insert(struct pd_store *st, int64_t session_id,
                                      const struct pd_token_rec *t, size_t n,
                                      struct pd_err *err);

/* Inserts KV events / upserts steps (no transaction of their own). */
enum pd_status pd_store_kv_insert(struct pd_store *st, int64_t session_id,
                                  const struct pd_kv_event_rec *ev, size_t n,
                                  struct pd_err *err);
enum pd_status pd_store_steps_upsert(struct pd_store *st, int64_t session_id,
                                     const struct pd_step_rec *s, size_t n, struct pd_err *err);

/* Marks a session finished (no transaction of its own). */
enum pd_status pd_store_finish_nolock(struct pd_store *st, int64_t session_id,
                                      struct pd_err *err);

/* Checks a session exists; PD_EINVAL naming the id otherwise. Fills fork_pos and
 * parent_id when non-NULL. */
enum pd_status pd_store_session_exists(struct pd_store *st, int64_t session_id,
                                       int64_t *parent_id, int64_t *fork_pos,
                                       struct pd_err *err);

/* The session's length: one past its last own token's position, or fork_pos when it has
 * no token of its own yet (the position its next token must have). */
enum pd_status pd_store_session_len(struct pd_store *st, int64_t session_id, int64_t fork_pos,
                                    int64_t *len, struct pd_err *err);

struct json_t;

/* Imports one `ponder` record (store_jsonl_ponder.c): validated, renumbered, stored in
 * one savepoint. PD_EFORMAT naming "where: field: reason" for bad records. */
enum pd_status pd_jsonl_import_ponder(struct pd_store *st, struct json_t *root,
                                      const char *where, int64_t *id, struct pd_err *err);

struct pd_replay;

/* A session's final assistant message as every export writes it (store_jsonl_export.c):
 * "<think>\n{T}\n</think>\n\n{A}" or "{A}", UTF-8 cleaned. */
struct pd_final {
    struct pd_buf text;     /* owned (pd_buf_deinit) */
    bool has;               /* the session has think or answer tokens */
    bool has_think;
    size_t n_tokens;        /* think, answer and injected tokens included */
    bool scored;            /* every one of them has a token id (counts are model tokens) */
};

/* Builds it from the reader's tokens (the reader is rewound); keep_pruned includes the
 * tokens of pruned steps (the original trace), otherwise they are left out. */
enum pd_status pd_jsonl_final(struct pd_replay *r, bool keep_pruned, struct pd_final *out,
                              struct pd_err *err);

struct pd_export_params;

/* The session ids export params select (tag, ids, pruned only; not the difficulty),
 * ascending; PD_EINVAL for an unknown id in p->session_ids. *ids owned (free()). */
enum pd_status pd_jsonl_select_ids(struct pd_store *st, const struct pd_export_params *p,
                                   int64_t **ids, size_t *n, struct pd_err *err);

/* *keep: the session passes p's difficulty filter (always true without one). */
enum pd_status pd_jsonl_difficulty_ok(struct pd_store *st, const struct pd_export_params *p,
                                      int64_t sid, bool *keep, struct pd_err *err);

/* Copies a column as an owned NUL-terminated string (NULL column -> NULL, *ok stays
 * true); *ok becomes false on allocation failure. */
char *pd_store_col_strdup(sqlite3_stmt *s, int col, bool *ok);

#endif
