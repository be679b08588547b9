/* store_vocab.c - vocabularies and imported pieces (store_vocab.h). */
#include "store_vocab.h"

#include <stdlib.h>
#include <string.h>

#include "le.h"
#include "mem.h"
#include "store_internal.h"

/* A model's vocabulary, decoded from its blob; cached by the store. */
struct pd_vocab {
    int64_t model_id;
    uint32_t n;
    uint32_t *end;          /* owned [n] */
    uint8_t *bytes;         /* owned */
};

/* Imported pieces of a session, sorted by id, plus the model's vocabulary. */
struct pd_pieces {
    const struct pd_vocab *vocab;   /* borrowed from the store's cache, or NULL */
    size_t n;
    int32_t *ids;                   /* owned [n], ascending */
    size_t *off;                    /* owned [n + 1] into text */
    char *text;                     /* owned */
};

static void vocab_free(struct pd_vocab *v)
{
    if (v) {
        free(v->end);
        free(v->bytes);
        free(v);
    }
}

void pd_store_vocab_cache_free(struct pd_store *st)
{
    for (size_t i = 0; i < st->n_vocabs; i++) {
        vocab_free(st->vocabs[i]);
    }
    free(st->vocabs);
    st->vocabs = NULL;
    st->n_vocabs = 0;
    for (size_t i = 0; i < st->n_kept; i++) {
        pd_pieces_close(&st->kept[i]);
    }
    free(st->kept);
    st->kept = NULL;
    st->n_kept = 0;
}

enum pd_status pd_vocab_blob_encode(uint32_t n,
                                    const char *(*piece)(void *ud, int32_t id, size_t *len),
                                    void *ud, uint8_t **out, size_t *len, struct pd_err *err)
{
    *out = NULL;
    *len = 0;
    if (n == 0 || n > PD_VOCAB_MAX) {
        return pd_err_set(err, PD_EINVAL, "vocabulary: %u pieces (1..%u)", n, PD_VOCAB_MAX);
    }
    size_t bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t l = 0;
        if (piece(ud, (int32_t)i, &l) == NULL) {
            l = 0;
        }
        if (l > PD_PIECE_MAX) {
            return pd_err_set(err, PD_EINVAL, "vocabulary: piece %u is %zu bytes (at most %u)",
                              i, l, PD_PIECE_MAX);
        }
        bytes += l;
    }
    size_t head = 8 + 4 * (size_t)n;
    uint8_t *b = malloc(head + bytes + 1);
    if (!b) {
        return pd_err_set(err, PD_ENOMEM, "vocabulary: out of memory");
    }
    b[0] = PD_VOCAB_BLOB_VERSION;
    b[1] = b[2] = b[3] = 0;
    pd_le_put_u32(b + 4, n);
    size_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t l = 0;
        const char *p = piece(ud, (int32_t)i, &l);
        if (!p) {
            l = 0;
        }
        memcpy(b + head + at, p ? p : "", l);
        at += l;
        pd_le_put_u32(b + 8 + 4 * (size_t)i, (uint32_t)at);
    }
    *out = b;
    *len = head + bytes;
    return PD_OK;
}

enum pd_status pd_vocab_blob_check(const uint8_t *b, size_t len, uint32_t *n_vocab,
                                   struct pd_err *err)
{
    if (len < 8 || b[0] != PD_VOCAB_BLOB_VERSION || b[1] || b[2] || b[3]) {
        return pd_err_set(err, PD_EFORMAT, "vocabulary blob: bad header");
    }
    uint32_t n = pd_le_get_u32(b + 4);
    if (n == 0 || n > PD_VOCAB_MAX || (len - 8) / 4 < n) {
        return pd_err_set(err, PD_EFORMAT, "vocabulary blob: %u pieces in %zu bytes", n, len);
    }
    size_t head = 8 + 4 * (size_t)n, prev = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t e = pd_le_get_u32(b + 8 + 4 * (size_t)i);
        if (e < prev || e - prev > PD_PIECE_MAX) {
            return pd_err_set(err, PD_EFORMAT, "vocabulary blob: piece %u: bad end %zu", i, e);
        }
        prev = e;
    }
    if (prev != len - head) {
        return pd_err_set(err, PD_EFORMAT, "vocabulary blob: %zu bytes of pieces, %zu present",
                          prev, len - head);
    }
    *n_vocab = n;
    return PD_OK;
}

enum pd_status pd_store_vocab_has(struct pd_store *st, int64_t model_id, bool *has,
                                  struct pd_err *err)
{
    *has = false;
    sqlite3_stmt *s = pd_store_prepare(st, "SELECT 1 FROM vocab WHERE model_id = ?1", err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, model_id);
    int r = sqlite3_step(s);
    enum pd_status rc = PD_OK;
    if (r == SQLITE_ROW) {
        *has = true;
    } else if (r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "vocabulary lookup");
    }
    sqlite3_finalize(s);
    return rc;
}

enum pd_status pd_store_vocab_put(struct pd_store *st, int64_t model_id, uint32_t n,
                                  const char *(*piece)(void *ud, int32_t id, size_t *len),
                                  void *ud, struct pd_err *err)
{
    bool has = false;
    enum pd_status rc = pd_store_vocab_has(st, model_id, &has, err);
    if (rc != PD_OK || has) {
        return rc;
    }
    uint8_t *blob = NULL;
    size_t len = 0;
    rc = pd_vocab_blob_encode(n, piece, ud, &blob, &len, err);
    if (rc != PD_OK) {
        return rc;
    }
    rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        free(blob);
        return rc;
    }
    sqlite3_stmt *s = pd_store_prepare(st,
                                       "INSERT OR IGNORE INTO vocab (model_id, n_vocab, pieces)"
                                       " VALUES (?1, ?2, ?3)",
                                       err);
    rc = s ? PD_OK : PD_EDB;
    if (s) {
        sqlite3_bind_int64(s, 1, model_id);
        sqlite3_bind_int64(s, 2, n);
        sqlite3_bind_blob(s, 3, blob, (int)len, SQLITE_STATIC);
        int step = sqlite3_step(s);
        if ((step & 0xff) == SQLITE_CONSTRAINT) {
            rc = pd_err_set(err, PD_EINVAL, "%s: no model %lld", st->path, (long long)model_id);
        } else if (step != SQLITE_DONE) {
            rc = pd_store_dberr(st, err, "vocabulary insert");
        }
        sqlite3_finalize(s);
    }
    free(blob);
    return pd_store_op_end(st, rc, err);
}

enum pd_status pd_store_pieces_put(struct pd_store *st, int64_t session_id,
                                   const struct pd_piece *p, size_t n, struct pd_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i].id < 0 || p[i].len > PD_PIECE_MAX || (p[i].len && !p[i].text)) {
            return pd_err_set(err, PD_EINVAL, "piece %zu: id %d, %zu bytes", i, (int)p[i].id,
                              p[i].len);
        }
    }
    if (n == 0) {
        return PD_OK;
    }
    enum pd_status rc = pd_store_op_begin(st, err);
    if (rc != PD_OK) {
        return rc;
    }
    sqlite3_stmt *s = pd_store_prepare(st,
                                       "INSERT OR IGNORE INTO pieces (session_id, tok, text)"
                                       " VALUES (?1, ?2, ?3)",
                                       err);
    rc = s ? PD_OK : PD_EDB;
    for (size_t i = 0; rc == PD_OK && i < n; i++) {
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, session_id);
        sqlite3_bind_int64(s, 2, p[i].id);
        sqlite3_bind_blob(s, 3, p[i].len ? p[i].text : "", (int)p[i].len, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE) {
            rc = pd_store_dberr(st, err, "piece insert");
        }
    }
    sqlite3_finalize(s);
    return pd_store_op_end(st, rc, err);
}

/* The cached vocabulary of model_id, read (and checked) on first use; *out NULL when the
 * model has none. */
static enum pd_status vocab_get(struct pd_store *st, int64_t model_id,
                                const struct pd_vocab **out, struct pd_err *err)
{
    *out = NULL;
    for (size_t i = 0; i < st->n_vocabs; i++) {
        if (st->vocabs[i]->model_id == model_id) {
            *out = st->vocabs[i];
            return PD_OK;
        }
    }
    sqlite3_stmt *s = pd_store_prepare(st, "SELECT pieces FROM vocab WHERE model_id = ?1", err);
    if (!s) {
        return PD_EDB;
    }
    sqlite3_bind_int64(s, 1, model_id);
    int r = sqlite3_step(s);
    enum pd_status rc = PD_OK;
    struct pd_vocab *v = NULL;
    if (r == SQLITE_ROW) {
        const uint8_t *b = sqlite3_column_blob(s, 0);
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        uint32_t n = 0;
        rc = b ? pd_vocab_blob_check(b, len, &n, err)
               : pd_err_set(err, PD_EFORMAT, "vocabulary blob: empty");
        if (rc == PD_OK) {
            size_t head = 8 + 4 * (size_t)n;
            v = pd_calloc(1, sizeof *v);
            if (v) {
                v->model_id = model_id;
                v->n = n;
                v->end = pd_malloc_array(n, sizeof *v->end);
                v->bytes = malloc(len - head + 1);
            }
            if (!v || !v->end || !v->bytes) {
                rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory", st->path);
            } else {
                for (uint32_t i = 0; i < n; i++) {
                    v->end[i] = pd_le_get_u32(b + 8 + 4 * (size_t)i);
                }
                memcpy(v->bytes, b + head, len - head);
                v->bytes[len - head] = 0; /* not part of any piece; a guard */
            }
        }
        if (rc == PD_EFORMAT) {
            pd_err_prefix(err, "%s: model %lld", st->path, (long long)model_id);
        }
    } else if (r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "vocabulary read");
    }
    sqlite3_finalize(s);
    if (rc == PD_OK && v) {
        struct pd_vocab **grown = pd_realloc_array(st->vocabs, st->n_vocabs + 1,
                                                   sizeof *grown);
        if (!grown) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory", st->path);
        } else {
            st->vocabs = grown;
            st->vocabs[st->n_vocabs++] = v;
            *out = v;
            v = NULL;
        }
    }
    vocab_free(v);
    return rc;
}

void pd_pieces_close(struct pd_pieces **pp)
{
    if (!pp || !*pp) {
        return;
    }
    struct pd_pieces *p = *pp;
    free(p->ids);
    free(p->off);
    free(p->text);
    free(p);
    *pp = NULL;
}

enum pd_status pd_store_pieces_open(struct pd_store *st, int64_t session_id,
                                    struct pd_pieces **out, struct pd_err *err)
{
    *out = NULL;
    struct pd_store_session_info info;
    enum pd_status rc = pd_store_session_get(st, session_id, &info, err);
    if (rc != PD_OK) {
        return rc;
    }
    int64_t model_id = info.model_id;
    pd_store_session_info_free(&info);
    struct pd_pieces *p = pd_calloc(1, sizeof *p);
    if (!p) {
        return pd_err_set(err, PD_ENOMEM, "%s: out of memory", st->path);
    }
    if (model_id) {
        rc = vocab_get(st, model_id, &p->vocab, err);
    }
    /* the session's and its ancestors' pieces, nearest first for each id */
    sqlite3_stmt *s = rc == PD_OK ? pd_store_prepare(
                                        st,
                                        "WITH RECURSIVE chain(id, depth) AS (SELECT ?1, 0"
                                        " UNION SELECT s.parent_id, c.depth + 1 FROM sessions s"
                                        " JOIN chain c ON s.id = c.id"
                                        " WHERE s.parent_id IS NOT NULL AND c.depth < 10000)"
                                        " SELECT p.tok, p.text FROM pieces p"
                                        " JOIN chain c ON p.session_id = c.id"
                                        " ORDER BY p.tok, c.depth",
                                        err)
                                  : NULL;
    if (rc == PD_OK && !s) {
        rc = PD_EDB;
    }
    size_t cap = 0, tcap = 0, tlen = 0;
    int r = SQLITE_DONE;
    if (s) {
        sqlite3_bind_int64(s, 1, session_id);
    }
    while (rc == PD_OK && (r = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(s, 0);
        const void *t = sqlite3_column_blob(s, 1);
        size_t len = (size_t)sqlite3_column_bytes(s, 1);
        if (id < 0 || id > INT32_MAX || len > PD_PIECE_MAX) {
            rc = pd_err_set(err, PD_EFORMAT, "%s: session %lld: piece of token %lld: bad row",
                            st->path, (long long)session_id, (long long)id);
            break;
        }
        if (p->n > 0 && p->ids[p->n - 1] == (int32_t)id) {
            continue; /* an ancestor's text for an id the session has */
        }
        if (p->n + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 64;
            int32_t *ni = pd_realloc_array(p->ids, ncap, sizeof *ni);
            if (ni) {
                p->ids = ni;
            }
            size_t *no = ni ? pd_realloc_array(p->off, ncap + 1, sizeof *no) : NULL;
            if (no) {
                p->off = no;
                cap = ncap;
            }
        }
        char *nt = tlen + len + 1 > tcap ? pd_grow_array(p->text, &tcap, tlen + len + 1, 1)
                                         : p->text;
        if (p->n + 1 > cap || !nt) {
            rc = pd_err_set(err, PD_ENOMEM, "%s: out of memory", st->path);
            break;
        }
        p->text = nt;
        p->ids[p->n] = (int32_t)id;
        p->off[p->n] = tlen;
        if (len) {
            memcpy(p->text + tlen, t, len);
        }
        tlen += len;
        p->n++;
        p->off[p->n] = tlen;
    }
    if (rc == PD_OK && r != SQLITE_DONE) {
        rc = pd_store_dberr(st, err, "pieces read");
    }
    sqlite3_finalize(s);
    if (rc != PD_OK) {
        pd_pieces_close(&p);
        return rc;
    }
    *out = p;
    return PD_OK;
}

enum pd_status pd_store_pieces_keep(struct pd_store *st, int64_t session_id,
                                    const struct pd_pieces **out, struct pd_err *err)
{
    *out = NULL;
    struct pd_pieces *p = NULL;
    enum pd_status rc = pd_store_pieces_open(st, session_id, &p, err);
    if (rc != PD_OK) {
        return rc;
    }
    struct pd_pieces **grown = pd_realloc_array(st->kept, st->n_kept + 1, sizeof *grown);
    if (!grown) {
        pd_pieces_close(&p);
        return pd_err_set(err, PD_ENOMEM, "%s: out of memory", st->path);
    }
    st->kept = grown;
    st->kept[st->n_kept++] = p;
    *out = p;
    return PD_OK;
}

bool pd_pieces_empty(const struct pd_pieces *p)
{
    return !p || (p->n == 0 && !p->vocab);
}

const char *pd_pieces_get(const struct pd_pieces *p, int32_t id, size_t *len)
{
    *len = 0;
    if (!p || id < 0) {
        return NULL;
    }
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->ids[mid] < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < p->n && p->ids[lo] == id) {
        *len = p->off[lo + 1] - p->off[lo];
        return p->text + p->off[lo];
    }
    const struct pd_vocab *v = p->vocab;
    if (v && (uint32_t)id < v->n) {
        uint32_t b = id ? v->end[id - 1] : 0;
        *len = v->end[id] - b;
        return (const char *)v->bytes + b;
    }
    return NULL;
}

const char *pd_pieces_lookup(void *ud, int32_t id, size_t *len)
{
    return pd_pieces_get(ud, id, len);
}
