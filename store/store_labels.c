/* store_labels.c - preferences, reference answers, questions with pass rates, sample
 * grades and prune verifications (store_labels.h; tables of schema version 4). */
#include "store_labels.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "utf8.h"
#include "store_internal.h"

/* ---- helpers -------------------------------------------------------------------------- */

/* Runs a prepared one-row-or-none statement to completion; PD_EDB naming `what`. */
static enum pd_status step_done(struct pd_store *st, sqlite3_stmt *s, const char *what,
                                struct pd_err *err)
{
    int r = sqlite3_step(s);
    return r == SQLITE_DONE || r == SQLITE_ROW ? PD_OK : pd_store_dberr(st, err, what);
}

static double col_real_or_nan(sqlite3_stmt *s, int i)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? NAN : sqlite3_column_double(s, i);
}

static void bind_real_or_null(sqlite3_stmt *s, int i, double v)
{
    if (isfinite(v)) {
        sqlite3_bind_double(s, i, v);
    } else {
        sqlite3_bind_null(s, i);
    }
}

/* ---- preferences ---------------------------------------------------------------------- */

void pd_store_prefs_free(struct pd_pref *p, size_t n)
{
    for (size_t i = 0; p && i < n; i++) {
        free(p[i].note);
    }
    free(p);
}

/* Compares the conversations of a and b; *same true when equal. */
static enum pd_status same_messages(struct pd_store *st, int64_t a, int64_t b, bool *same,
                                    struct pd_err *err)
{
    struct pd_message *ma = NULL, *mb = NULL;
    size_t na = 0, nb = 0;
    enum pd_status rc = pd_store_messages_get(st, a, &ma, &na, err);
    if (rc == PD_OK) {
        rc = pd_store_messages_get(st, b, &mb, &nb, err);
    }
    *same = rc == PD_OK && na == nb;
    for (size_t i = 0; *same && i < na; i++) {
        *same = ma[i].role == mb[i].role && strcmp(ma[i].content, mb[i].content) == 0;
    }
    pd_store_messages_free(ma, na);
    pd_store_messages_free(mb, nb);
    return rc;
}

enum pd_status pd_store_prefer(struct pd_store *st, int64_t chosen, int64_t rejected,
                               const char *note, int64_t *id, struct pd_err *err)
{
    if (chosen == rejected) {
        return pd_err_set(err, PD_EINVAL, "%s: a session cannot be preferred over itself (%lld)",
                          st->path, (long long)chosen);
    }
    if (note && !pd_utf8_valid(note, strlen(note))) {
        return pd_err_set(err, PD_EINVAL, "%s: preference note is not UTF-8", st->path);
    }
    enum pd_status rc = pd_store_session_exists(st, chosen, NULL, NULL, err);
    if (rc == PD_OK) {
        rc = pd_store_session_exists(st, rejected, NULL, NULL, err);
    }
    bool same = false;
    if (rc == PD_OK) {
        rc = same_messages(st, chosen, rejected, &same, err);
    }
    if (rc == PD_OK && !same) {
        rc = pd_err_set(err, PD_EINVAL,
                        "%s: sessions %lld and %lld answer different conversations; a "
                        "preference compares two traces of one prompt",
                        st->path, (long long)chosen, (long long)rejected);
    }
    if (rc != PD_OK) {
        return rc;
    }
    rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    sqlite3_stmt *s = pd_store_prepare(
        st, "DELETE FROM preferences WHERE chosen_id = ?2 AND rejected_id = ?1", err);
    rc = s ? PD_OK : PD_EDB;
    if (s) {
        sqlite3_bind_int64(s, 1, chosen);
        sqlite3_bind_int64(s, 2, rejected);
        rc = step_done(st, s, "preference", err);
        sqlite3_finalize(s);
    }
    if (rc == PD_OK) {
        s = pd_store_prepare(st,
                             "INSERT INTO preferences (chosen_id, rejected_id, note, created_ms)"
                             " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (chosen_id, rejected_id)"
                             " DO UPDATE SET note = excluded.note RETURNING id",
                             err);
        rc = s ? PD_OK : PD_EDB;
    }
    if (rc == PD_OK) {
        sqlite3_bind_int64(s, 1, chosen);
        sqlite3_bind_int64(s, 2, rejected);
        sqlite3_bind_text(s, 3, note ? note : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, pd_store_now_ms());
        if (sqlite3_step(s) != SQLITE_ROW) {
            rc = pd_store_dberr(st, err, "preference insert");
        } else if (id) {
            *id = sqlite3_column_int64(s, 0);
        }
        sqlite3_finalize(s);
    }
    return pd_store_op_end(st, rc, err);
}

enum pd_status pd_store_unprefer(struct pd_store *st, int64_t a, int64_t b, struct pd_err *err)
{
    sqlite3_stmt *s = pd_store_prepare(
        st,
        "DELETE FROM preferences WHERE (chosen_id = ?1 AND rejected_id = ?2)"
        " OR (chosen_id = ?2 AND rejected_id = ?1)",
        err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, a);
    sqlite3_bind_int64(s, 2, b);
    enum pd_status rc = step_done(st, s, "preference delete", err);
    sqlite3_finalize(s);
    return rc;
}

enum pd_status pd_store_prefs_get(struct pd_store *st, int64_t session_id, struct pd_pref **out,
                                  size_t *n, struct pd_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = pd_store_prepare(
        st,
        "SELECT id, chosen_id, rejected_id, note, created_ms FROM preferences"
        " WHERE ?1 = 0 OR chosen_id = ?1 OR rejected_id = ?1 ORDER BY chosen_id, rejected_id",
        err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    struct pd_pref *arr = NULL;
    size_t len = 0, cap = 0;
    enum pd_status rc = PD_OK;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        struct pd_pref *na = pd_grow_array(arr, &cap, len + 1, sizeof *arr);
        bool ok = na != NULL;
        if (ok) {
            arr = na;
            arr[len].id = sqlite3_column_int64(s, 0);
            arr[len].chosen_id = sqlite3_column_int64(s, 1);
            arr[len].rejected_id = sqlite3_column_int64(s, 2);
            arr[len].note = pd_store_col_strdup(s, 3, &ok);
            arr[len].created_ms = sqlite3_column_int64(s, 4);
            len += ok;
        }
        if (!ok) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory reading preferences", st->path);
            break;
        }
    }
    if (rc == PD_OK && r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "preferences read");
    }
    sqlite3_finalize(s);
    if (rc != PD_OK) {
        pd_store_prefs_free(arr, len);
        return rc;
    }
    *out = arr;
    *n = len;
    return PD_OK;
}

/* ---- references and questions --------------------------------------------------------- */

enum pd_status pd_store_reference_set(struct pd_store *st, int64_t session_id, const char *ref,
                                      struct pd_err *err)
{
    if (ref && (!*ref || strlen(ref) > PD_REFERENCE_MAX || !pd_utf8_valid(ref, strlen(ref)))) {
        return pd_err_set(err, PD_EINVAL,
                          "%s: session %lld: a reference answer is 1..%d bytes of UTF-8",
                          st->path, (long long)session_id, PD_REFERENCE_MAX);
    }
    enum pd_status rc = pd_store_session_exists(st, session_id, NULL, NULL, err);
    if (rc != PD_OK) {
        return rc;
    }
    sqlite3_stmt *s = pd_store_prepare(st, "UPDATE sessions SET reference = ?2 WHERE id = ?1",
                                       err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    if (ref) {
        sqlite3_bind_text(s, 2, ref, -1, SQLITE_STATIC);
    }
    rc = step_done(st, s, "reference", err);
    sqlite3_finalize(s);
    return rc;
}

enum pd_status pd_store_prompt_key(struct pd_store *st, int64_t session_id, char **out,
                                   struct pd_err *err)
{
    *out = NULL;
    struct pd_message *m = NULL;
    size_t n = 0;
    enum pd_status rc = pd_store_messages_get(st, session_id, &m, &n, err);
    if (rc != PD_OK) {
        return rc;
    }
    json_t *arr = json_array();
    bool ok = arr != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *o = json_object();
        ok = o && json_array_append_new(arr, o) == 0 &&
             json_object_set_new(o, "role", json_string(pd_store_msg_role_name(m[i].role))) ==
                 0 &&
             json_object_set_new(o, "content", json_string(m[i].content)) == 0;
    }
    if (ok) {
        *out = json_dumps(arr, JSON_COMPACT | JSON_PRESERVE_ORDER);
        ok = *out != NULL;
    }
    json_decref(arr);
    pd_store_messages_free(m, n);
    return ok ? PD_OK : pd_err_set(err, PD_ENOMEM, "%s: out of memory", st->path);
}

enum pd_status pd_store_question_put(struct pd_store *st, const char *prompt_key,
                                     const char *reference, const struct pd_sample_grade *g,
                                     size_t n, int64_t *id, struct pd_err *err)
{
    int64_t n_graded = 0, n_correct = 0;
    for (size_t i = 0; i < n; i++) {
        if (g[i].correct < -1 || g[i].correct > 1) {
            return pd_err_set(err, PD_EINVAL, "%s: session %lld: grade %d out of range",
                              st->path, (long long)g[i].session_id, g[i].correct);
        }
        n_graded += g[i].correct >= 0;
        n_correct += g[i].correct == 1;
        int64_t parent = 0;
        enum pd_status rc = pd_store_session_exists(st, g[i].session_id, &parent, NULL, err);
        if (rc != PD_OK) {
            return rc;
        }
        if (parent != 0) {
            return pd_err_set(err, PD_EINVAL,
                              "%s: session %lld is a branch, not a sample of its question",
                              st->path, (long long)g[i].session_id);
        }
    }
    enum pd_status rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    sqlite3_stmt *s = pd_store_prepare(
        st,
        "INSERT INTO questions (prompt, reference, n_samples, n_graded, n_correct, updated_ms)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (prompt) DO UPDATE SET"
        " reference = excluded.reference, n_samples = excluded.n_samples,"
        " n_graded = excluded.n_graded, n_correct = excluded.n_correct,"
        " updated_ms = excluded.updated_ms RETURNING id",
        err);
    int64_t qid = 0;
    rc = s ? PD_OK : PD_EDB;
    if (s) {
        sqlite3_bind_text(s, 1, prompt_key, -1, SQLITE_STATIC);
        if (reference) {
            sqlite3_bind_text(s, 2, reference, -1, SQLITE_STATIC);
        }
        sqlite3_bind_int64(s, 3, (int64_t)n);
        sqlite3_bind_int64(s, 4, n_graded);
        sqlite3_bind_int64(s, 5, n_correct);
        sqlite3_bind_int64(s, 6, pd_store_now_ms());
        if (sqlite3_step(s) != SQLITE_ROW) {
            rc = pd_store_dberr(st, err, "question");
        } else {
            qid = sqlite3_column_int64(s, 0);
        }
        sqlite3_finalize(s);
    }
    s = NULL;
    if (rc == PD_OK) {
        s = pd_store_prepare(st,
                             "UPDATE sessions SET question_id = ?2, answer = ?3, correct = ?4"
                             " WHERE id = ?1",
                             err);
        rc = s ? PD_OK : PD_EDB;
    }
    for (size_t i = 0; rc == PD_OK && i < n; i++) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        sqlite3_bind_int64(s, 1, g[i].session_id);
        sqlite3_bind_int64(s, 2, qid);
        if (g[i].answer) {
            sqlite3_bind_text(s, 3, g[i].answer, -1, SQLITE_STATIC);
        }
        if (g[i].correct >= 0) {
            sqlite3_bind_int(s, 4, g[i].correct);
        }
        rc = step_done(st, s, "sample grade", err);
    }
    sqlite3_finalize(s);
    rc = pd_store_op_end(st, rc, err);
    if (rc == PD_OK && id) {
        *id = qid;
    }
    return rc;
}

void pd_store_question_free(struct pd_question *q)
{
    if (q) {
        free(q->prompt);
        free(q->reference);
        memset(q, 0, sizeof *q);
    }
}

enum pd_status pd_store_question_get(struct pd_store *st, int64_t id, struct pd_question *out,
                                     struct pd_err *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = pd_store_prepare(st,
                                       "SELECT prompt, reference, n_samples, n_graded, n_correct"
                                       " FROM questions WHERE id = ?1",
                                       err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, id);
    enum pd_status rc = PD_OK;
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        bool ok = true;
        out->id = id;
        out->prompt = pd_store_col_strdup(s, 0, &ok);
        out->reference = pd_store_col_strdup(s, 1, &ok);
        out->n_samples = sqlite3_column_int64(s, 2);
        out->n_graded = sqlite3_column_int64(s, 3);
        out->n_correct = sqlite3_column_int64(s, 4);
        out->pass_rate = out->n_graded > 0 ? (double)out->n_correct / (double)out->n_graded
                                           : NAN;
        if (!ok || !out->prompt) {
            rc = pd_err_set(err, ok ? PD_EFORMAT : PD_ENOMEM, "%s: question %lld: no prompt",
                            st->path, (long long)id);
        }
    } else if (r == SQLITE_DONE) {
        rc = pd_err_set(err, PD_EINVAL, "%s: no question %lld", st->path, (long long)id);
    } else {
        rc = pd_store_dberr(st, err, "question read");
    }
    sqlite3_finalize(s);
    if (rc != PD_OK) {
        pd_store_question_free(out);
    }
    return rc;
}

/* Reads a one-column integer query into an owned array. */
static enum pd_status read_ids(struct pd_store *st, sqlite3_stmt *s, int64_t **out, size_t *n,
                               const char *what, struct pd_err *err)
{
    int64_t *arr = NULL;
    size_t len = 0, cap = 0;
    enum pd_status rc = PD_OK;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t *na = pd_grow_array(arr, &cap, len + 1, sizeof *arr);
        if (!na) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory reading %s", st->path, what);
            break;
        }
        arr = na;
        arr[len++] = sqlite3_column_int64(s, 0);
    }
    if (rc == PD_OK && r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, what);
    }
    sqlite3_finalize(s);
    if (rc != PD_OK) {
        free(arr);
        return rc;
    }
    *out = arr;
    *n = len;
    return PD_OK;
}

enum pd_status pd_store_question_ids(struct pd_store *st, int64_t **out, size_t *n,
                                     struct pd_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = pd_store_prepare(st,
                                       "SELECT q.id FROM questions q WHERE EXISTS (SELECT 1 FROM"
                                       " sessions s WHERE s.question_id = q.id) ORDER BY q.id",
                                       err);
    return s ? read_ids(st, s, out, n, "questions", err) : PD_EDB;
}

enum pd_status pd_store_question_samples(struct pd_store *st, int64_t id, struct pd_sample **out,
                                         size_t *n, struct pd_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = pd_store_prepare(st,
                                       "SELECT id, coalesce(correct, -1) FROM sessions"
                                       " WHERE question_id = ?1 ORDER BY id",
                                       err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, id);
    struct pd_sample *arr = NULL;
    size_t len = 0, cap = 0;
    enum pd_status rc = PD_OK;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        struct pd_sample *na = pd_grow_array(arr, &cap, len + 1, sizeof *arr);
        if (!na) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory reading samples", st->path);
            break;
        }
        arr = na;
        arr[len].session_id = sqlite3_column_int64(s, 0);
        arr[len].correct = (int)sqlite3_column_int64(s, 1);
        if (arr[len].correct < -1 || arr[len].correct > 1) {
            rc = pd_err_set(err, PD_EFORMAT, "%s: session %lld: grade out of range", st->path,
                            (long long)arr[len].session_id);
            break;
        }
        len++;
    }
    if (rc == PD_OK && r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "samples read");
    }
    sqlite3_finalize(s);
    if (rc != PD_OK) {
        free(arr);
        return rc;
    }
    *out = arr;
    *n = len;
    return PD_OK;
}

enum pd_status pd_store_session_grade(struct pd_store *st, int64_t session_id,
                                      struct pd_session_grade *out, struct pd_err *err)
{
    memset(out, 0, sizeof *out);
    out->correct = -1;
    out->pass_rate = NAN;
    sqlite3_stmt *s = pd_store_prepare(
        st,
        "SELECT coalesce(s.question_id, 0), s.answer, coalesce(s.correct, -1), q.n_graded,"
        " q.n_correct, q.n_samples FROM sessions s LEFT JOIN questions q"
        " ON q.id = s.question_id WHERE s.id = ?1",
        err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    enum pd_status rc = PD_OK;
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        bool ok = true;
        out->question_id = sqlite3_column_int64(s, 0);
        out->answer = pd_store_col_strdup(s, 1, &ok);
        out->correct = (int)sqlite3_column_int64(s, 2);
        int64_t graded = sqlite3_column_int64(s, 3);
        if (out->question_id && graded > 0) {
            out->pass_rate = (double)sqlite3_column_int64(s, 4) / (double)graded;
        }
        out->n_samples = sqlite3_column_int64(s, 5);
        if (!ok) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory", st->path);
        }
    } else if (r == SQLITE_DONE) {
        rc = pd_err_set(err, PD_EINVAL, "%s: no session %lld", st->path, (long long)session_id);
    } else {
        rc = pd_store_dberr(st, err, "session grade");
    }
    sqlite3_finalize(s);
    if (rc != PD_OK) {
        pd_store_session_grade_free(out);
    }
    return rc;
}

void pd_store_session_grade_free(struct pd_session_grade *g)
{
    if (g) {
        free(g->answer);
        g->answer = NULL;
    }
}

enum pd_status pd_store_difficulty(struct pd_store *st, int64_t session_id, double *difficulty,
                                   double *pass_rate, int64_t *n_graded, struct pd_err *err)
{
    *difficulty = NAN;
    if (pass_rate) {
        *pass_rate = NAN;
    }
    if (n_graded) {
        *n_graded = 0;
    }
    char *key = NULL;
    enum pd_status rc = pd_store_prompt_key(st, session_id, &key, err);
    if (rc != PD_OK) {
        return rc;
    }
    sqlite3_stmt *s = pd_store_prepare(st,
                                       "SELECT n_graded, n_correct FROM questions"
                                       " WHERE prompt = ?1 AND n_graded > 0",
                                       err);
    rc = s ? PD_OK : PD_EDB;
    if (s) {
        sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
        int r = sqlite3_step(s);
        if (r == SQLITE_ROW) {
            int64_t g = sqlite3_column_int64(s, 0), c = sqlite3_column_int64(s, 1);
            double p = (double)c / (double)g;
            *difficulty = 1.0 - p;
            if (pass_rate) {
                *pass_rate = p;
            }
            if (n_graded) {
                *n_graded = g;
            }
        } else if (r != SQLITE_DONE) {
            rc = pd_store_dberr(st, err, "difficulty");
        }
        sqlite3_finalize(s);
    }
    free(key);
    return rc;
}

/* ---- prune verifications -------------------------------------------------------------- */

void pd_store_prune_check_free(struct pd_prune_check_rec *c)
{
    if (c) {
        free(c->pruned);
        free(c->strategy);
        memset(c, 0, sizeof *c);
    }
}

enum pd_status pd_store_prunes_signature(struct pd_store *st, int64_t session_id, char **out,
                                         struct pd_err *err)
{
    *out = NULL;
    struct pd_prune *p = NULL;
    size_t n = 0;
    enum pd_status rc = pd_store_prunes_get(st, session_id, &p, &n, err);
    if (rc != PD_OK) {
        return rc;
    }
    struct pd_buf b;
    pd_buf_init(&b);
    bool ok = pd_buf_append(&b, "", 0);
    for (size_t i = 0; ok && i < n; i++) {
        ok = pd_buf_printf(&b, "%s%d:%lld-%lld", i ? "," : "", (int)p[i].step_index,
                           (long long)p[i].pos_begin, (long long)p[i].pos_end);
    }
    pd_store_prunes_free(p, n);
    if (!ok) {
        pd_buf_deinit(&b);
        return pd_err_set(err, PD_ENOMEM, "%s: out of memory", st->path);
    }
    *out = pd_buf_take(&b);
    return PD_OK;
}

enum pd_status pd_store_prune_check_put(struct pd_store *st, int64_t session_id,
                                        const struct pd_prune_check_rec *c, struct pd_err *err)
{
    if (!c->strategy || !*c->strategy || c->answer_tokens < 0 || c->greedy_compared < 0) {
        return pd_err_set(err, PD_EINVAL, "%s: session %lld: prune check without a strategy or"
                          " with negative counts", st->path, (long long)session_id);
    }
    enum pd_status rc = pd_store_session_exists(st, session_id, NULL, NULL, err);
    char *sig = NULL;
    if (rc == PD_OK) {
        rc = pd_store_prunes_signature(st, session_id, &sig, err);
    }
    if (rc != PD_OK) {
        return rc;
    }
    sqlite3_stmt *s = pd_store_prepare(
        st,
        "INSERT OR REPLACE INTO prune_checks (session_id, pruned, strategy, answer_tokens,"
        " logprob_full, logprob_pruned, greedy_compared, greedy_same, created_ms)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        err);
    rc = s ? PD_OK : PD_EDB;
    if (s) {
        sqlite3_bind_int64(s, 1, session_id);
        sqlite3_bind_text(s, 2, sig, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, c->strategy, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, c->answer_tokens);
        bind_real_or_null(s, 5, c->logprob_full);
        bind_real_or_null(s, 6, c->logprob_pruned);
        sqlite3_bind_int64(s, 7, c->greedy_compared);
        sqlite3_bind_int(s, 8, c->greedy_same);
        sqlite3_bind_int64(s, 9, pd_store_now_ms());
        rc = step_done(st, s, "prune check", err);
        sqlite3_finalize(s);
    }
    free(sig);
    return rc;
}

enum pd_status pd_store_prune_check_get(struct pd_store *st, int64_t session_id,
                                        struct pd_prune_check_rec *out, bool *found,
                                        struct pd_err *err)
{
    memset(out, 0, sizeof *out);
    *found = false;
    sqlite3_stmt *s = pd_store_prepare(
        st,
        "SELECT pruned, strategy, answer_tokens, logprob_full, logprob_pruned, greedy_compared,"
        " greedy_same FROM prune_checks WHERE session_id = ?1",
        err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    enum pd_status rc = PD_OK;
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        bool ok = true;
        out->pruned = pd_store_col_strdup(s, 0, &ok);
        out->strategy = pd_store_col_strdup(s, 1, &ok);
        out->answer_tokens = sqlite3_column_int64(s, 2);
        out->logprob_full = col_real_or_nan(s, 3);
        out->logprob_pruned = col_real_or_nan(s, 4);
        out->greedy_compared = sqlite3_column_int64(s, 5);
        out->greedy_same = sqlite3_column_int64(s, 6) != 0;
        *found = true;
        if (!ok || !out->pruned || !out->strategy) {
            rc = pd_err_set(err, ok ? PD_EFORMAT : PD_ENOMEM, "%s: session %lld: prune check"
                            " unreadable", st->path, (long long)session_id);
        }
    } else if (r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "prune check read");
    }
    sqlite3_finalize(s);
    char *sig = NULL;
    if (rc == PD_OK && *found && (rc = pd_store_prunes_signature(st, session_id, &sig, err)) ==
                                     PD_OK) {
        out->current = strcmp(sig, out->pruned) == 0;
    }
    free(sig);
    if (rc != PD_OK) {
        pd_store_prune_check_free(out);
        *found = false;
    }
    return rc;
}

enum pd_status pd_store_step_checks_put(struct pd_store *st, int64_t session_id,
                                        const struct pd_step_check_rec *c, size_t n,
                                        struct pd_err *err)
{
    enum pd_status rc = pd_store_session_exists(st, session_id, NULL, NULL, err);
    if (rc == PD_OK) {
        rc = pd_store_op_begin(st, err);
    }
    if (rc != PD_OK) {
        return rc;
    }
    sqlite3_stmt *s = pd_store_prepare(st, "DELETE FROM step_checks WHERE session_id = ?1", err);
    rc = s ? PD_OK : PD_EDB;
    if (s) {
        sqlite3_bind_int64(s, 1, session_id);
        rc = step_done(st, s, "step checks", err);
        sqlite3_finalize(s);
        s = NULL;
    }
    if (rc == PD_OK && n > 0) {
        s = pd_store_prepare(st,
                             "INSERT INTO step_checks (session_id, step_idx, logprob_full,"
                             " logprob_without, greedy_compared, greedy_same, created_ms)"
                             " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS (SELECT 1 FROM"
                             " steps WHERE session_id = ?1 AND idx = ?2)",
                             err);
        rc = s ? PD_OK : PD_EDB;
    }
    int64_t now = pd_store_now_ms();
    for (size_t i = 0; rc == PD_OK && i < n; i++) {
        if (c[i].greedy_compared < 0) {
            rc = pd_err_set(err, PD_EINVAL, "%s: session %lld: step %d: negative count",
                            st->path, (long long)session_id, (int)c[i].step_index);
            break;
        }
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        sqlite3_bind_int64(s, 1, session_id);
        sqlite3_bind_int(s, 2, c[i].step_index);
        bind_real_or_null(s, 3, c[i].logprob_full);
        bind_real_or_null(s, 4, c[i].logprob_without);
        sqlite3_bind_int64(s, 5, c[i].greedy_compared);
        sqlite3_bind_int(s, 6, c[i].greedy_same);
        sqlite3_bind_int64(s, 7, now);
        rc = step_done(st, s, "step check", err);
        if (rc == PD_OK && sqlite3_changes(st->db) != 1) {
            rc = pd_err_set(err, PD_EINVAL, "%s: session %lld: step %d does not exist",
                            st->path, (long long)session_id, (int)c[i].step_index);
        }
    }
    sqlite3_finalize(s);
    return pd_store_op_end(st, rc, err);
}

enum pd_status pd_store_step_checks_get(struct pd_store *st, int64_t session_id,
                                        struct pd_step_check_rec **out, size_t *n,
                                        struct pd_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = pd_store_prepare(
        st,
        "SELECT step_idx, logprob_full, logprob_without, greedy_compared, greedy_same"
        " FROM step_checks WHERE session_id = ?1 ORDER BY step_idx",
        err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, session_id);
    struct pd_step_check_rec *arr = NULL;
    size_t len = 0, cap = 0;
    enum pd_status rc = PD_OK;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        struct pd_step_check_rec *na = pd_grow_array(arr, &cap, len + 1, sizeof *arr);
        if (!na) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory reading step checks", st->path);
            break;
        }
        arr = na;
        arr[len].step_index = (int32_t)sqlite3_column_int64(s, 0);
        arr[len].logprob_full = col_real_or_nan(s, 1);
        arr[len].logprob_without = col_real_or_nan(s, 2);
        arr[len].greedy_compared = sqlite3_column_int64(s, 3);
        arr[len].greedy_same = sqlite3_column_int64(s, 4) != 0;
        len++;
    }
    if (rc == PD_OK && r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "step checks read");
    }
    sqlite3_finalize(s);
    if (rc != PD_OK) {
        free(arr);
        return rc;
    }
    *out = arr;
    *n = len;
    return PD_OK;
}
