/* store_find.c - session filters, the full-text index and content hashes (store_find.h). */
#include "store_find.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"
#include "store_internal.h"

/* ---- filters and search ----------------------------------------------------------- */

/* Parameters: ?1 match, ?2 tag, ?3 model, ?4 source, ?5 since, ?6 limit. */
static void append_conditions(struct pd_buf *q, const struct pd_session_filter *f, bool *ok)
{
    *ok = *ok && pd_buf_puts(q, " WHERE 1");
    if (f->tag) {
        *ok = *ok && pd_buf_puts(q, " AND EXISTS (SELECT 1 FROM annotations a"
                                    " WHERE a.session_id = s.id AND a.tag = ?2)");
    }
    if (f->model) {
        *ok = *ok && pd_buf_puts(q, " AND (instr(lower(m.file_name), lower(?3)) > 0"
                                    " OR substr(m.sha256, 1, length(?3)) = lower(?3))");
    }
    if (f->source) {
        *ok = *ok && pd_buf_puts(q, " AND substr(s.source, 1, length(?4)) = ?4");
    }
    if (f->since_ms) {
        *ok = *ok && pd_buf_puts(q, " AND s.created_ms >= ?5");
    }
}

static void infos_free(struct pd_store_session_info *a, char **snip, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pd_store_session_info_free(&a[i]);
        if (snip) {
            free(snip[i]);
        }
    }
    free(a);
    free(snip);
}

/* The snippet of one hit: the text around the query's terms. */
static enum pd_status snippet_of(struct pd_store *st, const char *match, int64_t id, char **out,
                                 struct pd_err *err)
{
    *out = NULL;
    sqlite3_stmt *s = pd_store_prepare(st,
                                       "SELECT snippet(session_text, 0, '[', ']', '...', 12)"
                                       " FROM session_text WHERE session_text MATCH ?1"
                                       " AND rowid = ?2",
                                       err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_text(s, 1, match, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, id);
    enum pd_status rc = PD_OK;
    int r = sqlite3_step(s);
    const char *t = r == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : "";
    if (r != SQLITE_ROW && r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "search snippet");
    } else if (!(*out = strdup(t ? t : ""))) {
        rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory", st->path);
    }
    sqlite3_finalize(s);
    return rc;
}

enum pd_status pd_store_sessions_find(struct pd_store *st, const struct pd_session_filter *f,
                                      struct pd_store_session_info **out, char ***snippets,
                                      size_t *n, struct pd_err *err)
{
    *out = NULL;
    *n = 0;
    if (snippets) {
        *snippets = NULL;
    }
    struct pd_buf q;
    pd_buf_init(&q);
    bool ok = pd_buf_puts(&q, PD_SESSION_SELECT);
    if (f->match) {
        ok = ok && pd_buf_puts(&q, " JOIN (SELECT rowid AS hit_id, rank AS hit_rank"
                                   " FROM session_text WHERE session_text MATCH ?1) h"
                                   " ON h.hit_id = s.id");
    }
    append_conditions(&q, f, &ok);
    ok = ok && pd_buf_puts(&q, f->match ? " ORDER BY h.hit_rank, s.id LIMIT ?6"
                                        : " ORDER BY s.id DESC LIMIT ?6");
    if (!ok) {
        pd_buf_deinit(&q);
        return pd_err_set(err, PD_ENOMEM, "%s: out of memory", st->path);
    }
    sqlite3_stmt *s = NULL;
    int prc = sqlite3_prepare_v2(st->db, q.data, -1, &s, NULL);
    pd_buf_deinit(&q);
    if (prc != SQLITE_OK) {
        return pd_store_dberr(st, err, "session search");
    }
    /* unused numbers are not in the statement: binding them is a harmless SQLITE_RANGE */
    sqlite3_bind_text(s, 1, f->match ? f->match : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, f->tag ? f->tag : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, f->model ? f->model : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, f->source ? f->source : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, f->since_ms);
    sqlite3_bind_int64(s, 6, f->limit ? (int64_t)f->limit : -1);
    struct pd_store_session_info *arr = NULL;
    size_t len = 0, cap = 0;
    enum pd_status rc = PD_OK;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        struct pd_store_session_info *na = pd_grow_array(arr, &cap, len + 1, sizeof *arr);
        if (!na) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory listing sessions", st->path);
            break;
        }
        arr = na;
        rc = pd_store_read_session_row(st, s, &arr[len], err);
        if (rc != PD_OK) {
            break;
        }
        len++;
    }
    if (rc == PD_OK && r != SQLITE_DONE) {
        /* FTS5 reports a malformed query as a plain SQL error (the statement itself is
         * fixed and prepared): the query's fault */
        rc = f->match && r == SQLITE_ERROR
                 ? pd_err_set(err, PD_EINVAL, "bad search query '%s': %s", f->match,
                              sqlite3_errmsg(st->db))
                 : pd_store_dberr(st, err, "session search");
    }
    sqlite3_finalize(s);
    char **snip = NULL;
    if (rc == PD_OK && snippets && f->match && len > 0) {
        snip = pd_calloc(len, sizeof *snip);
        if (!snip) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory", st->path);
        }
        for (size_t i = 0; rc == PD_OK && i < len; i++) {
            rc = snippet_of(st, f->match, arr[i].id, &snip[i], err);
        }
    }
    if (rc != PD_OK) {
        infos_free(arr, snip, len);
        return rc;
    }
    if (!f->match) { /* newest first from the query: oldest first for the caller */
        for (size_t i = 0; i < len / 2; i++) {
            struct pd_store_session_info t = arr[i];
            arr[i] = arr[len - 1 - i];
            arr[len - 1 - i] = t;
        }
    }
    *out = arr;
    *n = len;
    if (snippets) {
        *snippets = snip;
    }
    return PD_OK;
}

/* ---- the full-text index ---------------------------------------------------------- */

static enum pd_status count_of(struct pd_store *st, const char *sql, int64_t *n,
                               struct pd_err *err)
{
    sqlite3_stmt *s = pd_store_prepare(st, sql, err);
    if (!s) {
        return PD_EDB;
    }
    enum pd_status rc = PD_OK;
    if (sqlite3_step(s) == SQLITE_ROW) {
        *n = sqlite3_column_int64(s, 0);
    } else {
        rc = pd_store_dberr(st, err, "index check");
    }
    sqlite3_finalize(s);
    return rc;
}

enum pd_status pd_store_text_sync(struct pd_store *st, size_t *stale, struct pd_err *err)
{
    int64_t n = 0;
    enum pd_status rc =
        count_of(st, "SELECT count(*) FROM sessions WHERE indexed_ms IS NULL", &n, err);
    if (stale) {
        *stale = (size_t)n;
    }
    if (rc != PD_OK || pd_store_read_only(st)) {
        return rc;
    }
    rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    rc = pd_store_exec(st,
                       "DELETE FROM session_text WHERE rowid NOT IN (SELECT id FROM sessions);"
                       "DELETE FROM session_text WHERE rowid IN"
                       " (SELECT id FROM sessions WHERE indexed_ms IS NULL);"
                       "INSERT INTO session_text (rowid, body) SELECT id, "
                       PD_SESSION_TEXT_SQL("sessions.id")
                       " FROM sessions WHERE indexed_ms IS NULL;",
                       err);
    sqlite3_stmt *s = NULL;
    if (rc == PD_OK) {
        s = pd_store_prepare(st, "UPDATE sessions SET indexed_ms = ?1 WHERE indexed_ms IS NULL",
                             err);
        rc = s ? PD_OK : PD_EDB;
    }
    if (rc == PD_OK) {
        sqlite3_bind_int64(s, 1, pd_store_now_ms());
        if (sqlite3_step(s) != SQLITE_DONE) {
            rc = pd_store_dberr(st, err, "index update");
        }
    }
    sqlite3_finalize(s);
    return pd_store_op_end(st, rc, err);
}

/* ---- content hashes --------------------------------------------------------------- */

static void put_u64(struct pd_sha256 *h, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(v >> (8 * i));
    }
    pd_sha256_update(h, b, sizeof b);
}

enum pd_status pd_store_content_hash(struct pd_store *st, int64_t session_id, char hex[65],
                                     struct pd_err *err)
{
    hex[0] = '\0';
    enum pd_status rc = pd_store_session_exists(st, session_id, NULL, NULL, err);
    if (rc != PD_OK) {
        return rc;
    }
    struct pd_sha256 h;
    pd_sha256_init(&h);
    /* each item is followed by its length and kind, so the stream reads back one way */
    sqlite3_stmt *s = pd_store_prepare(st,
                                       "SELECT role, content FROM messages WHERE session_id = ?1"
                                       " ORDER BY idx",
                                       err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        const void *c = sqlite3_column_blob(s, 1);
        size_t len = (size_t)sqlite3_column_bytes(s, 1);
        const char *role = (const char *)sqlite3_column_text(s, 0);
        pd_sha256_update(&h, c ? c : "", len);
        put_u64(&h, len);
        pd_sha256_update(&h, role ? role : "", strlen(role ? role : "") + 1);
    }
    if (r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "content hash");
    }
    sqlite3_finalize(s);
    pd_sha256_update(&h, "\xff", 1);
    /* the trace: the text of the tokens after the prompt (whose text, under a chat
     * template, is the conversation above plus markup), in runs of one role */
    s = rc == PD_OK ? pd_store_prepare(st,
                                       "SELECT role, text FROM tokens WHERE session_id = ?1"
                                       " AND role <> 0 ORDER BY pos",
                                       err)
                    : NULL;
    if (rc == PD_OK && !s) {
        rc = PD_EDB;
    }
    int run_role = -1;
    uint64_t run_len = 0;
    if (s) {
        sqlite3_bind_int64(s, 1, session_id);
    }
    while (rc == PD_OK && (r = sqlite3_step(s)) == SQLITE_ROW) {
        int role = sqlite3_column_int(s, 0);
        if (role != run_role && run_role >= 0) {
            put_u64(&h, run_len);
            pd_sha256_update(&h, (uint8_t[]){(uint8_t)run_role}, 1);
            run_len = 0;
        }
        run_role = role;
        const void *t = sqlite3_column_blob(s, 1);
        size_t len = (size_t)sqlite3_column_bytes(s, 1);
        pd_sha256_update(&h, t ? t : "", len);
        run_len += len;
    }
    if (rc == PD_OK && r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "content hash");
    }
    sqlite3_finalize(s);
    if (run_role >= 0) {
        put_u64(&h, run_len);
        pd_sha256_update(&h, (uint8_t[]){(uint8_t)run_role}, 1);
    }
    if (rc == PD_OK) {
        pd_sha256_final_hex(&h, hex);
    }
    return rc;
}

static enum pd_status hash_store(struct pd_store *st, int64_t id, const char *hex,
                                 struct pd_err *err)
{
    sqlite3_stmt *s = pd_store_prepare(st, "UPDATE sessions SET content_hash = ?2 WHERE id = ?1",
                                       err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, hex, 64, SQLITE_STATIC);
    enum pd_status rc = sqlite3_step(s) == SQLITE_DONE ? PD_OK
                                                       : pd_store_dberr(st, err, "content hash");
    sqlite3_finalize(s);
    return rc;
}

enum pd_status pd_store_content_hash_put(struct pd_store *st, int64_t session_id,
                                         int64_t *dup, struct pd_err *err)
{
    *dup = 0;
    char hex[65];
    enum pd_status rc = pd_store_content_hash(st, session_id, hex, err);
    if (rc != PD_OK) {
        return rc;
    }
    rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    rc = hash_store(st, session_id, hex, err);
    sqlite3_stmt *s = NULL;
    if (rc == PD_OK) {
        s = pd_store_prepare(st,
                             "SELECT min(id) FROM sessions WHERE content_hash = ?1 AND id <> ?2",
                             err);
        rc = s ? PD_OK : PD_EDB;
    }
    if (rc == PD_OK) {
        sqlite3_bind_text(s, 1, hex, 64, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, session_id);
        if (sqlite3_step(s) == SQLITE_ROW) {
            *dup = sqlite3_column_int64(s, 0);
        } else {
            rc = pd_store_dberr(st, err, "duplicate lookup");
        }
    }
    sqlite3_finalize(s);
    return pd_store_op_end(st, rc, err);
}

enum pd_status pd_store_content_hash_missing(struct pd_store *st, size_t *n,
                                             struct pd_err *err)
{
    if (n) {
        *n = 0;
    }
    sqlite3_stmt *s = pd_store_prepare(st,
                                       "SELECT id FROM sessions WHERE content_hash IS NULL"
                                       " AND finished = 1 AND parent_id IS NULL ORDER BY id",
                                       err);
    if (!s) {
        return PD_EDB;
    }
    int64_t *ids = NULL;
    size_t len = 0, cap = 0;
    enum pd_status rc = PD_OK;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t *g = pd_grow_array(ids, &cap, len + 1, sizeof *ids);
        if (!g) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory", st->path);
            break;
        }
        ids = g;
        ids[len++] = sqlite3_column_int64(s, 0);
    }
    if (rc == PD_OK && r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "content hash");
    }
    sqlite3_finalize(s);
    if (rc == PD_OK && len > 0 && (rc = pd_store_op_begin(st, err)) == PD_OK) {
        for (size_t i = 0; rc == PD_OK && i < len; i++) {
            char hex[65];
            rc = pd_store_content_hash(st, ids[i], hex, err);
            if (rc == PD_OK) {
                rc = hash_store(st, ids[i], hex, err);
            }
        }
        rc = pd_store_op_end(st, rc, err);
    }
    free(ids);
    if (rc == PD_OK && n) {
        *n = len;
    }
    return rc;
}
