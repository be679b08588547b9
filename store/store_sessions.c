/* store_sessions.c - models, sessions (with branches) and their conversations.
 *
 * A session row carries the run's model and settings; its messages are the conversation
 * given to the model; a branch names its parent and the number of tokens it shares with
 * it (fork_pos). The list/get readers also gather the summary the front end shows (title,
 * step and prune counts, tags) in the same query. */
#include "store_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "utf8.h"
#include "store_labels.h"

static const char *const msg_role_names[PD_STORE_MSG_ROLE_COUNT] = {"system", "user", "assistant"};
_Static_assert(sizeof msg_role_names / sizeof msg_role_names[0] == PD_STORE_MSG_ROLE_COUNT,
               "message role table");

const char *pd_store_msg_role_name(enum pd_store_msg_role r)
{
    return (unsigned)r < PD_STORE_MSG_ROLE_COUNT ? msg_role_names[r] : NULL;
}

enum pd_store_msg_role pd_store_msg_role_parse(const char *s)
{
    for (int i = 0; i < PD_STORE_MSG_ROLE_COUNT; i++) {
        if (strcmp(s, msg_role_names[i]) == 0) {
            return (enum pd_store_msg_role)i;
        }
    }
    return PD_STORE_MSG_ROLE_COUNT;
}

void pd_store_messages_free(struct pd_message *msgs, size_t n)
{
    if (!msgs) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(msgs[i].content);
    }
    free(msgs);
}

static bool is_hex64(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return i == 64;
}

enum pd_status pd_store_model_put(struct pd_store *st, const struct pd_model_ident *m,
                                  int64_t *id, struct pd_err *err)
{
    if (!m->file_name || !*m->file_name || !m->arch || !*m->arch) {
        return pd_err_set(err, PD_EINVAL, "model: file name and architecture are required");
    }
    if (!m->sha256 || !is_hex64(m->sha256)) {
        return pd_err_set(err, PD_EINVAL, "model %s: sha256 must be 64 lowercase hex digits",
                          m->file_name);
    }
    if (m->file_size > INT64_MAX) {
        return pd_err_set(err, PD_EINVAL, "model %s: file size too large", m->file_name);
    }
    sqlite3_stmt *s = pd_store_prepare(
        st,
        "INSERT INTO models (file_name, file_size, sha256, arch) VALUES (?1, ?2, ?3, ?4)"
        " ON CONFLICT (sha256) DO UPDATE SET file_name = excluded.file_name,"
        " file_size = excluded.file_size, arch = excluded.arch RETURNING id",
        err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_text(s, 1, m->file_name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (int64_t)m->file_size);
    sqlite3_bind_text(s, 3, m->sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, m->arch, -1, SQLITE_STATIC);
    enum pd_status rc = PD_OK;
    if (sqlite3_step(s) == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        if (sqlite3_step(s) != SQLITE_DONE) {
            rc = pd_store_dberr(st, err, "model insert");
        }
    } else {
        rc = pd_store_dberr(st, err, "model insert");
    }
    sqlite3_finalize(s);
    return rc;
}

enum pd_status pd_store_session_exists(struct pd_store *st, int64_t session_id,
                                       int64_t *parent_id, int64_t *fork_pos,
                                       struct pd_err *err)
{
    sqlite3_stmt *s = pd_store_stmt(st, PD_STMT_SESSION_FORK, err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    int r = sqlite3_step(s);
    enum pd_status rc = PD_OK;
    if (r == SQLITE_ROW) {
        if (parent_id) {
            *parent_id = sqlite3_column_int64(s, 0);
        }
        if (fork_pos) {
            *fork_pos = sqlite3_column_int64(s, 1);
        }
    } else if (r == SQLITE_DONE) {
        rc = pd_err_set(err, PD_EINVAL, "%s: no session %lld", st->path, (long long)session_id);
    } else {
        rc = pd_store_dberr(st, err, "session lookup");
    }
    sqlite3_reset(s);
    return rc;
}

static enum pd_status check_settings(const struct pd_run_settings *r, struct pd_err *err)
{
    if (!isfinite(r->temperature) || r->temperature < 0) {
        return pd_err_set(err, PD_EINVAL, "settings: temperature %g must be >= 0",
                          (double)r->temperature);
    }
    if (!(r->top_p >= 0 && r->top_p <= 1) || !(r->min_p >= 0 && r->min_p <= 1)) {
        return pd_err_set(err, PD_EINVAL, "settings: top_p %g and min_p %g must be in [0, 1]",
                          (double)r->top_p, (double)r->min_p);
    }
    if (r->top_k < 0) {
        return pd_err_set(err, PD_EINVAL, "settings: top_k %d must be >= 0", (int)r->top_k);
    }
    return PD_OK;
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *t)
{
    if (t) {
        sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(s, i);
    }
}

static enum pd_status check_new_session(struct pd_store *st, const struct pd_session_new *p,
                                        struct pd_err *err)
{
    if (p->settings) {
        enum pd_status rc = check_settings(p->settings, err);
        if (rc != PD_OK) {
            return rc;
        }
    }
    if (p->n_messages > 0 && !p->messages) {
        return pd_err_set(err, PD_EINVAL, "session: %zu messages but no array", p->n_messages);
    }
    for (size_t i = 0; i < p->n_messages; i++) {
        if ((unsigned)p->messages[i].role >= PD_STORE_MSG_ROLE_COUNT || !p->messages[i].content) {
            return pd_err_set(err, PD_EINVAL, "session: message %zu: bad role or no content",
                              i);
        }
    }
    if (p->meta) {
        json_error_t je;
        json_t *j = json_loads(p->meta, JSON_REJECT_DUPLICATES, &je);
        bool ok = j && json_is_object(j);
        json_decref(j);
        if (!ok) {
            return pd_err_set(err, PD_EINVAL, "session: meta is not a JSON object");
        }
    }
    if (p->reference && (!*p->reference || strlen(p->reference) > PD_REFERENCE_MAX ||
                         !pd_utf8_valid(p->reference, strlen(p->reference)))) {
        return pd_err_set(err, PD_EINVAL, "session: a reference answer is 1..%d bytes of UTF-8",
                          PD_REFERENCE_MAX);
    }
    if (p->parent_id == 0) {
        if (p->fork_pos != 0) {
            return pd_err_set(err, PD_EINVAL, "session: fork_pos %lld without a parent",
                              (long long)p->fork_pos);
        }
        return PD_OK;
    }
    struct pd_store_session_info parent;
    enum pd_status rc = pd_store_session_get(st, p->parent_id, &parent, err);
    if (rc != PD_OK) {
        return rc;
    }
    int64_t n_parent = parent.n_tokens;
    pd_store_session_info_free(&parent);
    if (p->fork_pos < 0 || p->fork_pos > n_parent) {
        return pd_err_set(err, PD_EINVAL,
                          "session: fork position %lld outside parent %lld's 0..%lld",
                          (long long)p->fork_pos, (long long)p->parent_id,
                          (long long)n_parent);
    }
    return PD_OK;
}

enum pd_status pd_store_session_create(struct pd_store *st, const struct pd_session_new *p,
                                       int64_t *id, struct pd_err *err)
{
    enum pd_status rc = check_new_session(st, p, err);
    if (rc != PD_OK) {
        return rc;
    }
    rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    sqlite3_stmt *s = pd_store_stmt(st, PD_STMT_SESSION_INSERT, err);
    if (!s) {
        return pd_store_op_end(st, PD_EDB, err);
    }
    if (p->model_id) {
        sqlite3_bind_int64(s, 1, p->model_id);
    }
    if (p->parent_id) {
        sqlite3_bind_int64(s, 2, p->parent_id);
    }
    sqlite3_bind_int64(s, 3, p->fork_pos);
    sqlite3_bind_text(s, 4, p->source ? p->source : "", -1, SQLITE_STATIC);
    bind_text_or_null(s, 5, p->meta);
    const struct pd_run_settings *r = p->settings;
    if (r) {
        bind_text_or_null(s, 6, r->chat_template);
        bind_text_or_null(s, 7, r->mode);
        bind_text_or_null(s, 8, r->kv_policy);
        sqlite3_bind_double(s, 9, r->temperature);
        sqlite3_bind_double(s, 10, r->top_p);
        sqlite3_bind_int64(s, 11, r->top_k);
        sqlite3_bind_double(s, 12, r->min_p);
        sqlite3_bind_int64(s, 13, (int64_t)r->seed); /* bit pattern of the u64 */
    }
    sqlite3_bind_int64(s, 14, p->fork_pos);
    sqlite3_bind_int64(s, 15, pd_store_now_ms());
    bind_text_or_null(s, 16, p->reference);
    if (sqlite3_step(s) != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "session insert");
    }
    sqlite3_reset(s);
    int64_t sid = sqlite3_last_insert_rowid(st->db);
    for (size_t i = 0; rc == PD_OK && i < p->n_messages; i++) {
        s = pd_store_stmt(st, PD_STMT_MESSAGE_INSERT, err);
        if (!s) {
            rc = PD_EDB;
            break;
        }
        sqlite3_bind_int64(s, 1, sid);
        sqlite3_bind_int64(s, 2, (int64_t)i);
        sqlite3_bind_text(s, 3, msg_role_names[p->messages[i].role], -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, p->messages[i].content, -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE) {
            rc = pd_store_dberr(st, err, "message insert");
        }
        sqlite3_reset(s);
    }
    if (rc == PD_OK && p->n_messages == 0 && p->parent_id != 0) {
        /* a branch continues its parent's conversation unless told otherwise */
        s = pd_store_prepare(st,
                             "INSERT INTO messages (session_id, idx, role, content)"
                             " SELECT ?1, idx, role, content FROM messages WHERE session_id = ?2",
                             err);
        rc = s ? PD_OK : PD_EDB;
        if (s) {
            sqlite3_bind_int64(s, 1, sid);
            sqlite3_bind_int64(s, 2, p->parent_id);
            if (sqlite3_step(s) != SQLITE_DONE) {
                rc = pd_store_dberr(st, err, "message copy");
            }
            sqlite3_finalize(s);
        }
    }
    rc = pd_store_op_end(st, rc, err);
    if (rc == PD_OK) {
        *id = sid;
    }
    return rc;
}

void pd_store_session_info_free(struct pd_store_session_info *s)
{
    if (!s) {
        return;
    }
    free(s->model_name);
    free(s->model_arch);
    free(s->model_sha256);
    pd_run_settings_free(&s->settings);
    free(s->source);
    free(s->meta);
    free(s->title);
    free(s->tags);
    free(s->reference);
    memset(s, 0, sizeof *s);
}


/* Fills *o from the current row of a session_select statement. */
static enum pd_status read_session_row(struct pd_store *st, sqlite3_stmt *s,
                                       struct pd_store_session_info *o, struct pd_err *err)
{
    bool ok = true;
    memset(o, 0, sizeof *o);
    o->id = sqlite3_column_int64(s, 0);
    o->model_id = sqlite3_column_int64(s, 1);
    o->model_name = pd_store_col_strdup(s, 2, &ok);
    o->model_arch = pd_store_col_strdup(s, 3, &ok);
    o->model_sha256 = pd_store_col_strdup(s, 4, &ok);
    o->model_size = (uint64_t)sqlite3_column_int64(s, 5);
    o->settings.chat_template = pd_store_col_strdup(s, 6, &ok);
    o->settings.mode = pd_store_col_strdup(s, 7, &ok);
    o->settings.kv_policy = pd_store_col_strdup(s, 8, &ok);
    o->has_settings = sqlite3_column_type(s, 9) != SQLITE_NULL;
    o->settings.temperature = (float)sqlite3_column_double(s, 9);
    o->settings.top_p = (float)sqlite3_column_double(s, 10);
    o->settings.top_k = (int32_t)sqlite3_column_int64(s, 11);
    o->settings.min_p = (float)sqlite3_column_double(s, 12);
    o->settings.seed = (uint64_t)sqlite3_column_int64(s, 13);
    o->source = pd_store_col_strdup(s, 14, &ok);
    o->meta = pd_store_col_strdup(s, 15, &ok);
    o->title = pd_store_col_strdup(s, 16, &ok);
    o->parent_id = sqlite3_column_int64(s, 17);
    o->fork_pos = sqlite3_column_int64(s, 18);
    o->created_ms = sqlite3_column_int64(s, 19);
    o->updated_ms = sqlite3_column_int64(s, 20);
    o->n_tokens = sqlite3_column_int64(s, 21);
    o->finished = sqlite3_column_int64(s, 22) != 0;
    o->n_steps = sqlite3_column_int64(s, 23);
    o->n_pruned = sqlite3_column_int64(s, 24);
    o->tags = pd_store_col_strdup(s, 25, &ok);
    o->reference = pd_store_col_strdup(s, 26, &ok);
    if (ok && !o->source) {
        ok = (o->source = pd_strdup("")) != NULL;
    }
    if (ok && !o->title) {
        ok = (o->title = pd_strdup("")) != NULL;
    }
    if (ok && !o->tags) {
        ok = (o->tags = pd_strdup("")) != NULL;
    }
    if (!ok) {
        pd_store_session_info_free(o);
        return pd_err_set(err, PD_ENOMEM, "%s: out of memory reading session", st->path);
    }
    if (o->n_tokens < o->fork_pos || o->fork_pos < 0) {
        enum pd_status rc = pd_err_set(err, PD_EFORMAT,
                                       "%s: session %lld: n_tokens %lld below fork_pos %lld",
                                       st->path, (long long)o->id, (long long)o->n_tokens,
                                       (long long)o->fork_pos);
        pd_store_session_info_free(o);
        return rc;
    }
    return PD_OK;
}

enum pd_status pd_store_session_get(struct pd_store *st, int64_t id,
                                    struct pd_store_session_info *out, struct pd_err *err)
{
    sqlite3_stmt *s = pd_store_stmt(st, PD_STMT_SESSION_GET, err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, id);
    enum pd_status rc;
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        rc = read_session_row(st, s, out, err);
    } else if (r == SQLITE_DONE) {
        rc = pd_err_set(err, PD_EINVAL, "%s: no session %lld", st->path, (long long)id);
    } else {
        rc = pd_store_dberr(st, err, "session read");
    }
    sqlite3_reset(s);
    return rc;
}

enum pd_status pd_store_session_list(struct pd_store *st, struct pd_store_session_info **out,
                                     size_t *n, struct pd_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = pd_store_prepare(st, PD_SESSION_SELECT " ORDER BY s.id", err);
    if (!s) {
        return PD_EDB;
    }
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
        rc = read_session_row(st, s, &arr[len], err);
        if (rc != PD_OK) {
            break;
        }
        len++;
    }
    if (rc == PD_OK && r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "session list");
    }
    sqlite3_finalize(s);
    if (rc != PD_OK) {
        for (size_t i = 0; i < len; i++) {
            pd_store_session_info_free(&arr[i]);
        }
        free(arr);
        return rc;
    }
    *out = arr;
    *n = len;
    return PD_OK;
}

enum pd_status pd_store_finish_nolock(struct pd_store *st, int64_t session_id,
                                      struct pd_err *err)
{
    sqlite3_stmt *s = pd_store_stmt(st, PD_STMT_SESSION_FINISH, err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    sqlite3_bind_int64(s, 2, pd_store_now_ms());
    enum pd_status rc = PD_OK;
    if (sqlite3_step(s) != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "session finish");
    } else if (sqlite3_changes(st->db) != 1) {
        rc = pd_err_set(err, PD_EINVAL, "%s: no session %lld", st->path,
                        (long long)session_id);
    }
    sqlite3_reset(s);
    return rc;
}

enum pd_status pd_store_session_finish(struct pd_store *st, int64_t id, struct pd_err *err)
{
    enum pd_status rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    return pd_store_op_end(st, pd_store_finish_nolock(st, id, err), err);
}

enum pd_status pd_store_session_set_model(struct pd_store *st, int64_t id, int64_t model_id,
                                          struct pd_err *err)
{
    enum pd_status rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    sqlite3_stmt *s = pd_store_prepare(st, "UPDATE sessions SET model_id = ?2 WHERE id = ?1",
                                       err);
    rc = s ? PD_OK : PD_EDB;
    if (rc == PD_OK) {
        sqlite3_bind_int64(s, 1, id);
        if (model_id > 0) {
            sqlite3_bind_int64(s, 2, model_id);
        } else {
            sqlite3_bind_null(s, 2);
        }
        int step = sqlite3_step(s);
        if ((step & 0xff) == SQLITE_CONSTRAINT) {
            rc = pd_err_set(err, PD_EINVAL, "%s: no model %lld", st->path, (long long)model_id);
        } else if (step != SQLITE_DONE) {
            rc = pd_store_dberr(st, err, "session model");
        } else if (sqlite3_changes(st->db) != 1) {
            rc = pd_err_set(err, PD_EINVAL, "%s: no session %lld", st->path, (long long)id);
        }
        sqlite3_finalize(s);
    }
    return pd_store_op_end(st, rc, err);
}

enum pd_status pd_store_session_delete(struct pd_store *st, int64_t id, struct pd_err *err)
{
    enum pd_status rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    rc = pd_store_session_exists(st, id, NULL, NULL, err);
    sqlite3_stmt *s = NULL;
    if (rc == PD_OK) {
        s = pd_store_prepare(st, "SELECT count(*) FROM sessions WHERE parent_id = ?1", err);
        rc = s ? PD_OK : PD_EDB;
    }
    if (rc == PD_OK) {
        sqlite3_bind_int64(s, 1, id);
        if (sqlite3_step(s) != SQLITE_ROW) {
            rc = pd_store_dberr(st, err, "session delete");
        } else if (sqlite3_column_int64(s, 0) > 0) {
            rc = pd_err_set(err, PD_EINVAL, "%s: session %lld has %lld branches; delete them first",
                            st->path, (long long)id, (long long)sqlite3_column_int64(s, 0));
        }
        sqlite3_finalize(s);
        s = NULL;
    }
    if (rc == PD_OK) {
        s = pd_store_prepare(st, "DELETE FROM sessions WHERE id = ?1", err);
        rc = s ? PD_OK : PD_EDB;
    }
    if (rc == PD_OK) {
        sqlite3_bind_int64(s, 1, id);
        if (sqlite3_step(s) != SQLITE_DONE) {
            rc = pd_store_dberr(st, err, "session delete");
        }
    }
    sqlite3_finalize(s);
    return pd_store_op_end(st, rc, err);
}

enum pd_status pd_store_messages_get(struct pd_store *st, int64_t session_id,
                                     struct pd_message **out, size_t *n, struct pd_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = pd_store_stmt(st, PD_STMT_MESSAGES_GET, err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    struct pd_message *arr = NULL;
    size_t len = 0, cap = 0;
    enum pd_status rc = PD_OK;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        const char *role = (const char *)sqlite3_column_text(s, 0);
        enum pd_store_msg_role mr = role ? pd_store_msg_role_parse(role) : PD_STORE_MSG_ROLE_COUNT;
        if (mr == PD_STORE_MSG_ROLE_COUNT) {
            rc = pd_err_set(err, PD_EFORMAT, "%s: session %lld: message %zu: bad role",
                            st->path, (long long)session_id, len);
            break;
        }
        struct pd_message *na = pd_grow_array(arr, &cap, len + 1, sizeof *arr);
        if (!na) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory", st->path);
            break;
        }
        arr = na;
        bool ok = true;
        arr[len].role = mr;
        arr[len].content = pd_store_col_strdup(s, 1, &ok);
        if (!ok || !arr[len].content) {
            rc = pd_err_set(err, ok ? PD_EFORMAT : PD_ENOMEM,
                            "%s: session %lld: message %zu: no content", st->path,
                            (long long)session_id, len);
            break;
        }
        len++;
    }
    if (rc == PD_OK && r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "messages read");
    }
    sqlite3_reset(s);
    if (rc != PD_OK) {
        pd_store_messages_free(arr, len);
        return rc;
    }
    *out = arr;
    *n = len;
    return PD_OK;
}
