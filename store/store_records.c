/* store_records.c - a session's tokens, steps, prunes, KV events and annotations.
 *
 * Tokens of a session are contiguous: each append must continue at the next position
 * (fork_pos for a branch's first token), which keeps the replay reader and the crash
 * guarantee ("tokens 0..k, no holes") simple. PD_TOKF_PRUNED is not stored; the replay
 * reader derives it from the prunes table so pruning never rewrites token rows. */
#include "store_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_blob.h"
#include "mem.h"
#include "utf8.h"
#include "store_blob.h"

#define TAG_LEN_MAX 100
#define NOTE_LEN_MAX (64 * 1024)
#define STRATEGY_LEN_MAX 200

static void bind_float_or_null(sqlite3_stmt *s, int i, float v)
{
    if (isnan(v)) {
        sqlite3_bind_null(s, i);
    } else {
        sqlite3_bind_double(s, i, v);
    }
}

/* Validates one token record; `what` prefixes messages. */
static enum pd_status check_token(struct pd_store *st, int64_t sid, const struct pd_token_rec *t,
                                  struct pd_err *err)
{
    if ((unsigned)t->role >= PD_ROLE_COUNT) {
        return pd_err_set(err, PD_EINVAL, "%s: session %lld pos %lld: role %d out of range",
                          st->path, (long long)sid, (long long)t->pos, (int)t->role);
    }
    if (t->id < -1) {
        return pd_err_set(err, PD_EINVAL, "%s: session %lld pos %lld: token id %d", st->path,
                          (long long)sid, (long long)t->pos, (int)t->id);
    }
    if (t->n_top > PD_TOPK_MAX) {
        return pd_err_set(err, PD_EINVAL, "%s: session %lld pos %lld: n_top %u above %d",
                          st->path, (long long)sid, (long long)t->pos, t->n_top, PD_TOPK_MAX);
    }
    if (t->text_len > 0 && !t->text) {
        return pd_err_set(err, PD_EINVAL, "%s: session %lld pos %lld: text_len without text",
                          st->path, (long long)sid, (long long)t->pos);
    }
    if (t->text_len > PD_TEXT_ROW_MAX || t->attn_len > INT32_MAX) {
        return pd_err_set(err, PD_EINVAL, "%s: session %lld pos %lld: %s too large (text at "
                          "most %u bytes)", st->path, (long long)sid, (long long)t->pos,
                          t->text_len > PD_TEXT_ROW_MAX ? "text" : "blob", PD_TEXT_ROW_MAX);
    }
    if (t->attn) {
        struct pd_err e2;
        if (pd_attn_blob_check(t->attn, t->attn_len, NULL, &e2) != PD_OK) {
            return pd_err_set(err, PD_EINVAL, "%s: session %lld pos %lld: %s", st->path,
                              (long long)sid, (long long)t->pos, e2.msg);
        }
    }
    return PD_OK;
}

enum pd_status pd_store_session_len(struct pd_store *st, int64_t session_id, int64_t fork_pos,
                                    int64_t *len, struct pd_err *err)
{
    sqlite3_stmt *s = pd_store_stmt(st, PD_STMT_TOKEN_LAST_POS, err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    enum pd_status rc = PD_OK;
    if (sqlite3_step(s) != SQLITE_ROW) {
        rc = pd_store_dberr(st, err, "session length");
    } else {
        *len = sqlite3_column_type(s, 0) == SQLITE_NULL ? fork_pos
                                                        : sqlite3_column_int64(s, 0) + 1;
    }
    sqlite3_reset(s);
    return rc;
}

enum pd_status pd_store_tokens_insert(struct pd_store *st, int64_t session_id,
                                      const struct pd_token_rec *t, size_t n,
                                      struct pd_err *err)
{
    int64_t fork_pos = 0, want = 0;
    enum pd_status rc = pd_store_session_exists(st, session_id, NULL, &fork_pos, err);
    if (rc == PD_OK) {
        rc = pd_store_session_len(st, session_id, fork_pos, &want, err);
    }
    for (size_t i = 0; rc == PD_OK && i < n; i++, want++) {
        const struct pd_token_rec *k = &t[i];
        if (k->pos != want) {
            return pd_err_set(err, PD_EINVAL,
                              "%s: session %lld: token position %lld, expected %lld "
                              "(tokens are contiguous)",
                              st->path, (long long)session_id, (long long)k->pos,
                              (long long)want);
        }
        rc = check_token(st, session_id, k, err);
        if (rc != PD_OK) {
            return rc;
        }
        sqlite3_stmt *s = pd_store_stmt(st, PD_STMT_TOKEN_INSERT, err);
        if (!s) {
            return PD_EDB;
        }
        uint8_t topk[PD_TOPK_BLOB_MAX];
        size_t topk_len = pd_topk_blob_encode(k->top, k->n_top, topk);
        sqlite3_bind_int64(s, 1, session_id);
        sqlite3_bind_int64(s, 2, k->pos);
        sqlite3_bind_int64(s, 3, k->id);
        sqlite3_bind_int64(s, 4, (int64_t)k->role);
        sqlite3_bind_int64(s, 5, (int64_t)(k->flags & ~(uint32_t)PD_TOKF_PRUNED));
        sqlite3_bind_blob(s, 6, k->text ? (const void *)k->text : "", (int)k->text_len,
                          SQLITE_STATIC);
        bind_float_or_null(s, 7, k->logprob);
        bind_float_or_null(s, 8, k->entropy);
        if (topk_len) {
            sqlite3_bind_blob(s, 9, topk, (int)topk_len, SQLITE_STATIC);
        }
        if (k->attn) {
            sqlite3_bind_blob(s, 10, k->attn, (int)k->attn_len, SQLITE_STATIC);
        }
        if (sqlite3_step(s) != SQLITE_DONE) {
            rc = pd_store_dberr(st, err, "token insert");
        }
        sqlite3_reset(s);
    }
    if (rc != PD_OK || n == 0) {
        return rc;
    }
    sqlite3_stmt *s = pd_store_stmt(st, PD_STMT_SESSION_GROW, err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    sqlite3_bind_int64(s, 2, want);
    sqlite3_bind_int64(s, 3, pd_store_now_ms());
    if (sqlite3_step(s) != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "session update");
    }
    sqlite3_reset(s);
    return rc;
}

enum pd_status pd_store_tokens_append(struct pd_store *st, int64_t session_id,
                                      const struct pd_token_rec *t, size_t n,
                                      struct pd_err *err)
{
    enum pd_status rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    return pd_store_op_end(st, pd_store_tokens_insert(st, session_id, t, n, err), err);
}

/* Runs a statement whose only parameter is the session id. */
static enum pd_status exec_sid(struct pd_store *st, const char *sql, int64_t sid,
                               struct pd_err *err)
{
    sqlite3_stmt *s = pd_store_prepare(st, sql, err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, sid);
    enum pd_status rc = PD_OK;
    if (sqlite3_step(s) != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "update");
    }
    sqlite3_finalize(s);
    return rc;
}

enum pd_status pd_store_tokens_replace(struct pd_store *st, int64_t session_id,
                                       const struct pd_token_rec *t, size_t n,
                                       struct pd_err *err)
{
    enum pd_status rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    rc = pd_store_session_exists(st, session_id, NULL, NULL, err);
    if (rc == PD_OK) {
        sqlite3_stmt *s =
            pd_store_prepare(st, "SELECT count(*) FROM sessions WHERE parent_id = ?1", err);
        rc = s ? PD_OK : PD_EDB;
        if (s) {
            sqlite3_bind_int64(s, 1, session_id);
            if (sqlite3_step(s) != SQLITE_ROW) {
                rc = pd_store_dberr(st, err, "branch count");
            } else if (sqlite3_column_int64(s, 0) > 0) {
                rc = pd_err_set(err, PD_EINVAL,
                                "%s: session %lld has branches; its tokens cannot be replaced",
                                st->path, (long long)session_id);
            }
            sqlite3_finalize(s);
        }
    }
    static const char *const clear[] = {
        "DELETE FROM steps WHERE session_id = ?1",
        "DELETE FROM annotations WHERE session_id = ?1 AND pos_begin IS NOT NULL",
        "DELETE FROM tokens WHERE session_id = ?1",
        ("UPDATE sessions SET n_tokens = fork_pos, indexed_ms = NULL, content_hash = NULL"
         " WHERE id = ?1"),
    };
    for (size_t i = 0; rc == PD_OK && i < sizeof clear / sizeof clear[0]; i++) {
        rc = exec_sid(st, clear[i], session_id, err);
    }
    if (rc == PD_OK) {
        rc = pd_store_tokens_insert(st, session_id, t, n, err);
    }
    return pd_store_op_end(st, rc, err);
}

/* ---- steps ------------------------------------------------------------------------ */

enum pd_status pd_store_steps_upsert(struct pd_store *st, int64_t session_id,
                                     const struct pd_step_rec *r, size_t n, struct pd_err *err)
{
    enum pd_status rc = pd_store_session_exists(st, session_id, NULL, NULL, err);
    for (size_t i = 0; rc == PD_OK && i < n; i++) {
        const struct pd_step_rec *k = &r[i];
        if (k->index < 0 || k->pos_begin < 0 || k->pos_end < k->pos_begin ||
            (unsigned)k->kind >= PD_STEP_KIND_COUNT) {
            return pd_err_set(err, PD_EINVAL,
                              "%s: session %lld step %d: bad index, span [%lld, %lld) or "
                              "kind %d",
                              st->path, (long long)session_id, (int)k->index,
                              (long long)k->pos_begin, (long long)k->pos_end, (int)k->kind);
        }
        sqlite3_stmt *s = pd_store_stmt(st, PD_STMT_STEP_UPSERT, err);
        if (!s) {
            return PD_EDB;
        }
        sqlite3_bind_int64(s, 1, session_id);
        sqlite3_bind_int64(s, 2, k->index);
        sqlite3_bind_int64(s, 3, k->pos_begin);
        sqlite3_bind_int64(s, 4, k->pos_end);
        sqlite3_bind_int64(s, 5, (int64_t)k->kind);
        bind_float_or_null(s, 6, k->mean_surprisal);
        bind_float_or_null(s, 7, k->first_surprisal);
        bind_float_or_null(s, 8, k->mean_entropy);
        bind_float_or_null(s, 9, k->attn_received);
        if (sqlite3_step(s) != SQLITE_DONE) {
            rc = pd_store_dberr(st, err, "step insert");
        }
        sqlite3_reset(s);
    }
    return rc;
}

enum pd_status pd_store_steps_put(struct pd_store *st, int64_t session_id,
                                  const struct pd_step_rec *s, size_t n, struct pd_err *err)
{
    enum pd_status rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    return pd_store_op_end(st, pd_store_steps_upsert(st, session_id, s, n, err), err);
}

enum pd_status pd_store_steps_replace(struct pd_store *st, int64_t session_id,
                                      const struct pd_step_rec *s, size_t n,
                                      struct pd_err *err)
{
    enum pd_status rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    rc = pd_store_session_exists(st, session_id, NULL, NULL, err);
    if (rc == PD_OK) {
        rc = exec_sid(st, "DELETE FROM steps WHERE session_id = ?1", session_id, err);
    }
    if (rc == PD_OK) {
        rc = pd_store_steps_upsert(st, session_id, s, n, err);
    }
    return pd_store_op_end(st, rc, err);
}

static float col_float(sqlite3_stmt *s, int i)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? NAN : (float)sqlite3_column_double(s, i);
}

enum pd_status pd_store_steps_get(struct pd_store *st, int64_t session_id,
                                  struct pd_step_rec **out, size_t *n, struct pd_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = pd_store_stmt(st, PD_STMT_STEPS_GET, err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    struct pd_step_rec *arr = NULL;
    size_t len = 0, cap = 0;
    enum pd_status rc = PD_OK;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        struct pd_step_rec *na = pd_grow_array(arr, &cap, len + 1, sizeof *arr);
        if (!na) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory reading steps", st->path);
            break;
        }
        arr = na;
        struct pd_step_rec *k = &arr[len];
        int64_t idx = sqlite3_column_int64(s, 0);
        int64_t kind = sqlite3_column_int64(s, 3);
        k->pos_begin = sqlite3_column_int64(s, 1);
        k->pos_end = sqlite3_column_int64(s, 2);
        if (idx < 0 || idx > INT32_MAX || kind < 0 || kind >= PD_STEP_KIND_COUNT ||
            k->pos_begin < 0 || k->pos_end < k->pos_begin) {
            rc = pd_err_set(err, PD_EFORMAT, "%s: session %lld: step row %zu is corrupt",
                            st->path, (long long)session_id, len);
            break;
        }
        k->index = (int32_t)idx;
        k->kind = (enum pd_step_kind)kind;
        k->mean_surprisal = col_float(s, 4);
        k->first_surprisal = col_float(s, 5);
        k->mean_entropy = col_float(s, 6);
        k->attn_received = col_float(s, 7);
        k->pruned = sqlite3_column_int64(s, 8) != 0;
        len++;
    }
    if (rc == PD_OK && r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "steps read");
    }
    sqlite3_reset(s);
    if (rc != PD_OK) {
        free(arr);
        return rc;
    }
    *out = arr;
    *n = len;
    return PD_OK;
}

/* ---- prunes ----------------------------------------------------------------------- */

void pd_store_prunes_free(struct pd_prune *p, size_t n)
{
    if (!p) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(p[i].strategy);
        free(p[i].by);
    }
    free(p);
}

static bool printable_utf8(const char *s, size_t max_len, bool allow_newline)
{
    size_t n = strlen(s);
    if (n == 0 || n > max_len || !pd_utf8_valid(s, n)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && !(allow_newline && (c == '\n' || c == '\t'))) || c == 0x7f) {
            return false;
        }
    }
    return true;
}

enum pd_status pd_store_prune(struct pd_store *st, int64_t session_id, int32_t step_index,
                              const char *strategy, const char *by, struct pd_err *err)
{
    if (!strategy || !printable_utf8(strategy, STRATEGY_LEN_MAX, false)) {
        return pd_err_set(err, PD_EINVAL, "prune: strategy must be 1..%d printable bytes",
                          STRATEGY_LEN_MAX);
    }
    if (!by || (strcmp(by, "user") != 0 && strcmp(by, "auto") != 0)) {
        return pd_err_set(err, PD_EINVAL, "prune: 'by' must be user or auto");
    }
    enum pd_status rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    sqlite3_stmt *s = pd_store_prepare(
        st,
        "INSERT INTO prunes (session_id, step_idx, strategy, pruned_by, created_ms)"
        " SELECT session_id, idx, ?3, ?4, ?5 FROM steps WHERE session_id = ?1 AND idx = ?2"
        " ON CONFLICT (session_id, step_idx) DO UPDATE SET strategy = excluded.strategy,"
        " pruned_by = excluded.pruned_by, created_ms = excluded.created_ms",
        err);
    if (!s) {
        return pd_store_op_end(st, PD_EDB, err);
    }
    sqlite3_bind_int64(s, 1, session_id);
    sqlite3_bind_int64(s, 2, step_index);
    sqlite3_bind_text(s, 3, strategy, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, by, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, pd_store_now_ms());
    if (sqlite3_step(s) != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "prune");
    } else if (sqlite3_changes(st->db) != 1) {
        rc = pd_err_set(err, PD_EINVAL, "%s: session %lld has no step %d", st->path,
                        (long long)session_id, (int)step_index);
    }
    sqlite3_finalize(s);
    return pd_store_op_end(st, rc, err);
}

enum pd_status pd_store_unprune(struct pd_store *st, int64_t session_id, int32_t step_index,
                                struct pd_err *err)
{
    sqlite3_stmt *s = pd_store_prepare(
        st, "DELETE FROM prunes WHERE session_id = ?1 AND step_idx = ?2", err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    sqlite3_bind_int64(s, 2, step_index);
    enum pd_status rc = PD_OK;
    if (sqlite3_step(s) != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "unprune");
    }
    sqlite3_finalize(s);
    return rc;
}

enum pd_status pd_store_prunes_get(struct pd_store *st, int64_t session_id,
                                   struct pd_prune **out, size_t *n, struct pd_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = pd_store_stmt(st, PD_STMT_PRUNES_GET, err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    struct pd_prune *arr = NULL;
    size_t len = 0, cap = 0;
    enum pd_status rc = PD_OK;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        struct pd_prune *na = pd_grow_array(arr, &cap, len + 1, sizeof *arr);
        if (!na) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory reading prunes", st->path);
            break;
        }
        arr = na;
        struct pd_prune *p = &arr[len];
        bool ok = true;
        p->step_index = (int32_t)sqlite3_column_int64(s, 0);
        p->pos_begin = sqlite3_column_int64(s, 1);
        p->pos_end = sqlite3_column_int64(s, 2);
        p->strategy = pd_store_col_strdup(s, 3, &ok);
        p->by = pd_store_col_strdup(s, 4, &ok);
        p->created_ms = sqlite3_column_int64(s, 5);
        len++;
        if (!ok || !p->strategy || !p->by) {
            rc = pd_err_set(err, ok ? PD_EFORMAT : PD_ENOMEM,
                            "%s: session %lld: prune of step %d unreadable", st->path,
                            (long long)session_id, (int)p->step_index);
            break;
        }
    }
    if (rc == PD_OK && r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "prunes read");
    }
    sqlite3_reset(s);
    if (rc != PD_OK) {
        pd_store_prunes_free(arr, len);
        return rc;
    }
    *out = arr;
    *n = len;
    return PD_OK;
}

/* ---- KV events -------------------------------------------------------------------- */

enum pd_status pd_store_kv_insert(struct pd_store *st, int64_t session_id,
                                  const struct pd_kv_event_rec *ev, size_t n,
                                  struct pd_err *err)
{
    enum pd_status rc = pd_store_session_exists(st, session_id, NULL, NULL, err);
    for (size_t i = 0; rc == PD_OK && i < n; i++) {
        const struct pd_kv_event_rec *e = &ev[i];
        if (e->at_pos < 0 || e->slot_pos < 0 || e->layer < -1 ||
            (unsigned)e->kind >= PD_KV_EVENT_KIND_COUNT) {
            return pd_err_set(err, PD_EINVAL,
                              "%s: session %lld: KV event %zu: bad position, layer %d or kind "
                              "%d",
                              st->path, (long long)session_id, i, (int)e->layer, (int)e->kind);
        }
        sqlite3_stmt *s = pd_store_stmt(st, PD_STMT_KV_INSERT, err);
        if (!s) {
            return PD_EDB;
        }
        sqlite3_bind_int64(s, 1, session_id);
        sqlite3_bind_int64(s, 2, e->at_pos);
        sqlite3_bind_int64(s, 3, e->layer);
        sqlite3_bind_int64(s, 4, e->slot_pos);
        sqlite3_bind_int64(s, 5, (int64_t)e->kind);
        if (sqlite3_step(s) != SQLITE_DONE) {
            rc = pd_store_dberr(st, err, "KV event insert");
        }
        sqlite3_reset(s);
    }
    return rc;
}

enum pd_status pd_store_kv_append(struct pd_store *st, int64_t session_id,
                                  const struct pd_kv_event_rec *ev, size_t n,
                                  struct pd_err *err)
{
    enum pd_status rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    return pd_store_op_end(st, pd_store_kv_insert(st, session_id, ev, n, err), err);
}

/* ---- annotations ------------------------------------------------------------------ */

void pd_store_annotations_free(struct pd_annotation *a, size_t n)
{
    if (!a) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(a[i].tag);
        free(a[i].note);
    }
    free(a);
}

enum pd_status pd_store_annotate(struct pd_store *st, int64_t session_id,
                                 const struct pd_annotation *a, int64_t *id,
                                 struct pd_err *err)
{
    if (!a->tag || !printable_utf8(a->tag, TAG_LEN_MAX, false) || strchr(a->tag, ',')) {
        return pd_err_set(err, PD_EINVAL,
                          "annotation: tag must be 1..%d printable UTF-8 bytes without ','",
                          TAG_LEN_MAX);
    }
    const char *note = a->note ? a->note : "";
    if (*note && !printable_utf8(note, NOTE_LEN_MAX, true)) {
        return pd_err_set(err, PD_EINVAL, "annotation: note must be valid UTF-8 text up to %d "
                          "bytes", NOTE_LEN_MAX);
    }
    if (!a->whole_session && (a->pos_begin < 0 || a->pos_end < a->pos_begin)) {
        return pd_err_set(err, PD_EINVAL, "annotation: bad span [%lld, %lld)",
                          (long long)a->pos_begin, (long long)a->pos_end);
    }
    enum pd_status rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    rc = pd_store_session_exists(st, session_id, NULL, NULL, err);
    sqlite3_stmt *s = NULL;
    if (rc == PD_OK) {
        s = pd_store_prepare(st,
                             "INSERT INTO annotations (session_id, pos_begin, pos_end, tag,"
                             " note, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                             err);
        rc = s ? PD_OK : PD_EDB;
    }
    if (rc == PD_OK) {
        sqlite3_bind_int64(s, 1, session_id);
        if (!a->whole_session) {
            sqlite3_bind_int64(s, 2, a->pos_begin);
            sqlite3_bind_int64(s, 3, a->pos_end);
        }
        sqlite3_bind_text(s, 4, a->tag, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, note, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 6, pd_store_now_ms());
        if (sqlite3_step(s) != SQLITE_DONE) {
            rc = pd_store_dberr(st, err, "annotation insert");
        } else if (id) {
            *id = sqlite3_last_insert_rowid(st->db);
        }
    }
    sqlite3_finalize(s);
    return pd_store_op_end(st, rc, err);
}

enum pd_status pd_store_annotation_delete(struct pd_store *st, int64_t session_id, int64_t id,
                                          struct pd_err *err)
{
    sqlite3_stmt *s = pd_store_prepare(
        st, "DELETE FROM annotations WHERE id = ?2 AND session_id = ?1", err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    sqlite3_bind_int64(s, 2, id);
    enum pd_status rc = PD_OK;
    if (sqlite3_step(s) != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "annotation delete");
    } else if (sqlite3_changes(st->db) != 1) {
        rc = pd_err_set(err, PD_EINVAL, "%s: session %lld has no annotation %lld", st->path,
                        (long long)session_id, (long long)id);
    }
    sqlite3_finalize(s);
    return rc;
}

enum pd_status pd_store_annotations_get(struct pd_store *st, int64_t session_id,
                                        struct pd_annotation **out, size_t *n,
                                        struct pd_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = pd_store_stmt(st, PD_STMT_ANNOTATIONS_GET, err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    struct pd_annotation *arr = NULL;
    size_t len = 0, cap = 0;
    enum pd_status rc = PD_OK;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        struct pd_annotation *na = pd_grow_array(arr, &cap, len + 1, sizeof *arr);
        if (!na) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory reading annotations",
                            st->path);
            break;
        }
        arr = na;
        struct pd_annotation *a = &arr[len];
        bool ok = true;
        a->id = sqlite3_column_int64(s, 0);
        a->whole_session = sqlite3_column_type(s, 1) == SQLITE_NULL;
        a->pos_begin = a->whole_session ? 0 : sqlite3_column_int64(s, 1);
        a->pos_end = a->whole_session ? 0 : sqlite3_column_int64(s, 2);
        a->tag = pd_store_col_strdup(s, 3, &ok);
        a->note = pd_store_col_strdup(s, 4, &ok);
        a->created_ms = sqlite3_column_int64(s, 5);
        len++;
        if (!ok || !a->tag || !a->note) {
            rc = pd_err_set(err, ok ? PD_EFORMAT : PD_ENOMEM,
                            "%s: session %lld: annotation %lld unreadable", st->path,
                            (long long)session_id, (long long)a->id);
            break;
        }
    }
    if (rc == PD_OK && r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "annotations read");
    }
    sqlite3_reset(s);
    if (rc != PD_OK) {
        pd_store_annotations_free(arr, len);
        return rc;
    }
    *out = arr;
    *n = len;
    return PD_OK;
}
