/* store_replay.c - the replay reader: segment chain of a branch, chunked token reads, the
 * merged token/KV-event iterator.
 *
 * DESIGN
 * - At open the branch chain is resolved into segments: segment i is session sid[i]
 *   serving positions [from[i], to[i]); the root starts at 0, each branch at its fork_pos,
 *   the last segment ends at the session's length. A read at pos finds its segment and
 *   asks that session's rows from pos on (index (session_id, pos)), stopping at the
 *   segment end; a missing row is corruption.
 * - The merged iterator keeps a chunk of tokens and the KV events whose at_pos falls in
 *   that chunk's positions, and interleaves them (events at p before token p). */
#include "store_replay.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_blob.h"
#include "mem.h"
#include "store_blob.h"
#include "store_internal.h"

#define CHAIN_MAX 1024      /* deeper branch chains are treated as corrupt */
#define CHUNK 256           /* tokens per iterator refill */

struct segment {
    int64_t sid;
    int64_t from, to;       /* positions [from, to) come from sid */
};

struct pd_replay {
    struct pd_store *st;            /* borrowed */
    struct pd_store_session_info info;    /* owned */
    struct segment *seg;            /* owned, root first */
    size_t n_seg;
    int64_t length;
    int64_t pos;                    /* cursor */
    struct pd_step_rec *steps;      /* owned */
    size_t n_steps;
    struct pd_annotation *ann;      /* owned */
    size_t n_ann;
    int64_t *pruned;                /* owned: [begin, end) pairs of pruned steps, by begin */
    int64_t *max_span_end_before;   /* owned [n_pruned]: max end of the spans before i */
    size_t n_pruned;
    sqlite3_stmt *tok_stmt;         /* owned */
    sqlite3_stmt *kv_stmt;          /* owned */
    /* merged iterator state */
    struct pd_token_rec *tokbuf;    /* owned [CHUNK]; entries [tok_i, tok_n) still owned */
    size_t tok_i, tok_n;
    struct pd_kv_event_rec *kvbuf;  /* owned */
    size_t kv_i, kv_n;
    bool tail_loaded;
};

/* Builds r->seg from the chain of parents. */
static enum pd_status build_chain(struct pd_replay *r, struct pd_err *err)
{
    int64_t ids[CHAIN_MAX];
    int64_t forks[CHAIN_MAX];
    size_t n = 0;
    int64_t sid = r->info.id;
    while (sid != 0) {
        if (n == CHAIN_MAX) {
            return pd_err_set(err, PD_EFORMAT, "%s: session %lld: branch chain deeper than %d",
                              r->st->path, (long long)r->info.id, CHAIN_MAX);
        }
        for (size_t i = 0; i < n; i++) {
            if (ids[i] == sid) {
                return pd_err_set(err, PD_EFORMAT, "%s: session %lld: branch chain has a cycle",
                                  r->st->path, (long long)r->info.id);
            }
        }
        int64_t parent = 0, fork = 0;
        enum pd_status rc = pd_store_session_exists(r->st, sid, &parent, &fork, err);
        if (rc != PD_OK) {
            return rc == PD_EINVAL ? pd_err_set(err, PD_EFORMAT,
                                                "%s: session %lld: ancestor %lld is missing",
                                                r->st->path, (long long)r->info.id,
                                                (long long)sid)
                                   : rc;
        }
        if (fork < 0 || (parent == 0 && fork != 0)) {
            return pd_err_set(err, PD_EFORMAT, "%s: session %lld: bad fork position %lld",
                              r->st->path, (long long)sid, (long long)fork);
        }
        ids[n] = sid;
        forks[n] = fork;
        n++;
        sid = parent;
    }
    r->seg = pd_calloc(n, sizeof *r->seg);
    if (!r->seg) {
        return pd_err_set(err, PD_ENOMEM, "replay: out of memory");
    }
    r->n_seg = n;
    /* ids[0] is the session itself, ids[n-1] the root: reverse into root-first order */
    for (size_t i = 0; i < n; i++) {
        struct segment *g = &r->seg[i];
        g->sid = ids[n - 1 - i];
        g->from = forks[n - 1 - i];
        if (i > 0 && g->from < r->seg[i - 1].from) {
            return pd_err_set(err, PD_EFORMAT,
                              "%s: session %lld forks at %lld, before its parent's own %lld",
                              r->st->path, (long long)g->sid, (long long)g->from,
                              (long long)r->seg[i - 1].from);
        }
        if (i > 0) {
            r->seg[i - 1].to = g->from;
        }
    }
    enum pd_status rc = pd_store_session_len(r->st, r->info.id, forks[0], &r->length, err);
    r->seg[n - 1].to = r->length;
    return rc;
}

static int cmp_span(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static enum pd_status load_pruned(struct pd_replay *r, struct pd_err *err)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_steps; i++) {
        n += r->steps[i].pruned;
    }
    if (n == 0) {
        return PD_OK;
    }
    r->pruned = pd_malloc_array(n, 2 * sizeof *r->pruned);
    if (!r->pruned) {
        return pd_err_set(err, PD_ENOMEM, "replay: out of memory");
    }
    for (size_t i = 0; i < r->n_steps; i++) {
        if (r->steps[i].pruned) {
            r->pruned[2 * r->n_pruned] = r->steps[i].pos_begin;
            r->pruned[2 * r->n_pruned + 1] = r->steps[i].pos_end;
            r->n_pruned++;
        }
    }
    qsort(r->pruned, r->n_pruned, 2 * sizeof *r->pruned, cmp_span);
    r->max_span_end_before = pd_malloc_array(r->n_pruned, sizeof *r->max_span_end_before);
    if (!r->max_span_end_before) {
        return pd_err_set(err, PD_ENOMEM, "replay: out of memory");
    }
    int64_t m = INT64_MIN;
    for (size_t i = 0; i < r->n_pruned; i++) {
        r->max_span_end_before[i] = m; /* largest end among spans [0, i) */
        m = r->pruned[2 * i + 1] > m ? r->pruned[2 * i + 1] : m;
    }
    return PD_OK;
}

enum pd_status pd_replay_open(struct pd_store *st, int64_t session_id, struct pd_replay **out,
                              struct pd_err *err)
{
    *out = NULL;
    struct pd_replay *r = calloc(1, sizeof *r);
    if (!r) {
        return pd_err_set(err, PD_ENOMEM, "replay: out of memory");
    }
    r->st = st;
    enum pd_status rc = pd_store_session_get(st, session_id, &r->info, err);
    if (rc == PD_OK) {
        rc = build_chain(r, err);
    }
    if (rc == PD_OK) {
        rc = pd_store_steps_get(st, session_id, &r->steps, &r->n_steps, err);
    }
    if (rc == PD_OK) {
        rc = load_pruned(r, err);
    }
    if (rc == PD_OK) {
        rc = pd_store_annotations_get(st, session_id, &r->ann, &r->n_ann, err);
    }
    if (rc == PD_OK) {
        r->tok_stmt = pd_store_prepare(
            st,
            "SELECT pos, tok, role, flags, text, logprob, entropy, topk, attn FROM tokens"
            " WHERE session_id = ?1 AND pos >= ?2 AND pos < ?3 ORDER BY pos LIMIT ?4",
            err);
        r->kv_stmt = r->tok_stmt ? pd_store_prepare(st,
                                                    "SELECT at_pos, layer, slot_pos, kind"
                                                    " FROM kv_events WHERE session_id = ?1"
                                                    " AND at_pos >= ?2 AND at_pos < ?3"
                                                    " ORDER BY at_pos, id",
                                                    err)
                                 : NULL;
        r->tokbuf = pd_calloc(CHUNK, sizeof *r->tokbuf);
        if (!r->tok_stmt || !r->kv_stmt) {
            rc = PD_EDB;
        } else if (!r->tokbuf) {
            rc = pd_err_set(err, PD_ENOMEM, "replay: out of memory");
        }
    }
    if (rc != PD_OK) {
        pd_replay_close(&r);
        return rc;
    }
    *out = r;
    return PD_OK;
}

static void drop_buffers(struct pd_replay *r)
{
    for (size_t i = r->tok_i; i < r->tok_n; i++) {
        pd_token_rec_free(&r->tokbuf[i]);
    }
    r->tok_i = r->tok_n = 0;
    free(r->kvbuf);
    r->kvbuf = NULL;
    r->kv_i = r->kv_n = 0;
    r->tail_loaded = false;
}

void pd_replay_close(struct pd_replay **rp)
{
    if (!rp || !*rp) {
        return;
    }
    struct pd_replay *r = *rp;
    if (r->tokbuf) {
        drop_buffers(r);
    }
    free(r->tokbuf);
    sqlite3_finalize(r->tok_stmt);
    sqlite3_finalize(r->kv_stmt);
    pd_store_session_info_free(&r->info);
    free(r->seg);
    free(r->steps);
    pd_store_annotations_free(r->ann, r->n_ann);
    free(r->pruned);
    free(r->max_span_end_before);
    free(r);
    *rp = NULL;
}

const struct pd_store_session_info *pd_replay_info(const struct pd_replay *r)
{
    return &r->info;
}

int64_t pd_replay_length(const struct pd_replay *r)
{
    return r->length;
}

int64_t pd_replay_tell(const struct pd_replay *r)
{
    /* the iterator may have read ahead; those tokens are not consumed yet */
    return r->pos - (int64_t)(r->tok_n - r->tok_i);
}

const struct pd_step_rec *pd_replay_steps(const struct pd_replay *r, size_t *n)
{
    *n = r->n_steps;
    return r->steps;
}

const struct pd_annotation *pd_replay_annotations(const struct pd_replay *r, size_t *n)
{
    *n = r->n_ann;
    return r->ann;
}

enum pd_status pd_replay_seek(struct pd_replay *r, int64_t pos, struct pd_err *err)
{
    if (pos < 0 || pos > r->length) {
        return pd_err_set(err, PD_EINVAL, "replay: position %lld outside 0..%lld",
                          (long long)pos, (long long)r->length);
    }
    drop_buffers(r);
    r->pos = pos;
    return PD_OK;
}

/* Binary search over the pruned spans (sorted by start; they may overlap when the
 * database is odd, so the scan looks back over the spans that start before pos). */
static bool in_pruned(const struct pd_replay *r, int64_t pos)
{
    size_t lo = 0, hi = r->n_pruned;
    while (lo < hi) { /* first span starting after pos */
        size_t mid = lo + (hi - lo) / 2;
        if (r->pruned[2 * mid] <= pos) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for (size_t i = lo; i-- > 0;) {
        if (pos < r->pruned[2 * i + 1]) {
            return true;
        }
        if (r->max_span_end_before[i] <= pos) {
            return false;
        }
    }
    return false;
}

/* Fills *t from the current row of tok_stmt, validating it. */
static enum pd_status read_token_row(struct pd_replay *r, int64_t sid, int64_t want,
                                     struct pd_token_rec *t, struct pd_err *err)
{
    sqlite3_stmt *s = r->tok_stmt;
    memset(t, 0, sizeof *t);
    t->pos = sqlite3_column_int64(s, 0);
    int64_t id = sqlite3_column_int64(s, 1);
    int64_t role = sqlite3_column_int64(s, 2);
    int64_t flags = sqlite3_column_int64(s, 3);
    const char *where = r->st->path;
    if (t->pos != want) {
        return pd_err_set(err, PD_EFORMAT, "%s: session %lld: token position %lld missing",
                          where, (long long)sid, (long long)want);
    }
    if (id < -1 || id > INT32_MAX || role < 0 || role >= PD_ROLE_COUNT || flags < 0 ||
        flags > UINT32_MAX) {
        return pd_err_set(err, PD_EFORMAT, "%s: session %lld pos %lld: bad id, role or flags",
                          where, (long long)sid, (long long)want);
    }
    t->id = (int32_t)id;
    t->role = (enum pd_role)role;
    t->flags = (uint32_t)flags & ~(uint32_t)PD_TOKF_PRUNED;
    if (in_pruned(r, want)) {
        t->flags |= PD_TOKF_PRUNED;
    }
    t->logprob = sqlite3_column_type(s, 5) == SQLITE_NULL ? NAN
                                                         : (float)sqlite3_column_double(s, 5);
    t->entropy = sqlite3_column_type(s, 6) == SQLITE_NULL ? NAN
                                                         : (float)sqlite3_column_double(s, 6);
    struct pd_err e2;
    if (sqlite3_column_type(s, 7) != SQLITE_NULL) {
        const uint8_t *b = sqlite3_column_blob(s, 7);
        size_t bl = (size_t)sqlite3_column_bytes(s, 7);
        if (!b || pd_topk_blob_decode(b, bl, t->top, &t->n_top, &e2) != PD_OK) {
            return pd_err_set(err, PD_EFORMAT, "%s: session %lld pos %lld: %s", where,
                              (long long)sid, (long long)want, b ? e2.msg : "empty top-k blob");
        }
    }
    const void *txt = sqlite3_column_blob(s, 4);
    size_t tl = (size_t)sqlite3_column_bytes(s, 4);
    t->text = pd_strndup(txt ? txt : "", tl);
    t->text_len = tl;
    if (!t->text) {
        return pd_err_set(err, PD_ENOMEM, "replay: out of memory");
    }
    if (sqlite3_column_type(s, 8) != SQLITE_NULL) {
        const uint8_t *b = sqlite3_column_blob(s, 8);
        size_t bl = (size_t)sqlite3_column_bytes(s, 8);
        if (!b || pd_attn_blob_check(b, bl, NULL, &e2) != PD_OK) {
            pd_token_rec_free(t);
            return pd_err_set(err, PD_EFORMAT, "%s: session %lld pos %lld: %s", where,
                              (long long)sid, (long long)want,
                              b ? e2.msg : "empty attention blob");
        }
        t->attn = malloc(bl);
        if (!t->attn) {
            pd_token_rec_free(t);
            return pd_err_set(err, PD_ENOMEM, "replay: out of memory");
        }
        memcpy(t->attn, b, bl);
        t->attn_len = bl;
    }
    return PD_OK;
}

static const struct segment *segment_at(const struct pd_replay *r, int64_t pos)
{
    for (size_t i = r->n_seg; i-- > 0;) {
        if (pos >= r->seg[i].from && pos < r->seg[i].to) {
            return &r->seg[i];
        }
    }
    return NULL;
}

/* Reads tokens [r->pos, ...) without touching the iterator buffers. */
static enum pd_status read_tokens(struct pd_replay *r, struct pd_token_rec *out, size_t n,
                                  size_t *n_read, struct pd_err *err)
{
    *n_read = 0;
    enum pd_status rc = PD_OK;
    while (rc == PD_OK && *n_read < n && r->pos < r->length) {
        const struct segment *g = segment_at(r, r->pos);
        if (!g) {
            return pd_err_set(err, PD_EFORMAT, "%s: session %lld: no segment holds position %lld",
                              r->st->path, (long long)r->info.id, (long long)r->pos);
        }
        sqlite3_stmt *s = r->tok_stmt;
        sqlite3_reset(s);
        size_t want_n = n - *n_read;
        if ((int64_t)want_n > g->to - r->pos) {
            want_n = (size_t)(g->to - r->pos);
        }
        sqlite3_bind_int64(s, 1, g->sid);
        sqlite3_bind_int64(s, 2, r->pos);
        sqlite3_bind_int64(s, 3, g->to);
        sqlite3_bind_int64(s, 4, (int64_t)want_n);
        size_t got = 0;
        int sr = SQLITE_DONE;
        while (got < want_n && (sr = sqlite3_step(s)) == SQLITE_ROW) {
            rc = read_token_row(r, g->sid, r->pos, &out[*n_read], err);
            if (rc != PD_OK) {
                break;
            }
            (*n_read)++;
            got++;
            r->pos++;
        }
        if (rc == PD_OK && got < want_n) {
            rc = sr == SQLITE_DONE
                     ? pd_err_set(err, PD_EFORMAT, "%s: session %lld: token position %lld missing",
                                  r->st->path, (long long)g->sid, (long long)r->pos)
                     : pd_store_dberr(r->st, err, "token read");
        }
        sqlite3_reset(s);
    }
    return rc;
}

enum pd_status pd_replay_read(struct pd_replay *r, struct pd_token_rec *out, size_t n,
                              size_t *n_read, struct pd_err *err)
{
    /* the iterator may hold tokens read ahead: rewind to the first one it has not given */
    int64_t pos = pd_replay_tell(r);
    drop_buffers(r);
    r->pos = pos;
    return read_tokens(r, out, n, n_read, err);
}

/* Appends KV events with lo <= at_pos < hi to a growable array. */
static enum pd_status kv_range(struct pd_replay *r, int64_t lo, int64_t hi,
                               struct pd_kv_event_rec **arr, size_t *len, size_t *cap,
                               struct pd_err *err)
{
    for (size_t i = 0; i < r->n_seg; i++) {
        const struct segment *g = &r->seg[i];
        int64_t a = lo > g->from ? lo : g->from;
        /* the last segment also owns events past its last token */
        int64_t b = i + 1 == r->n_seg ? hi : (hi < g->to ? hi : g->to);
        if (a >= b) {
            continue;
        }
        sqlite3_stmt *s = r->kv_stmt;
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, g->sid);
        sqlite3_bind_int64(s, 2, a);
        sqlite3_bind_int64(s, 3, b);
        int sr;
        while ((sr = sqlite3_step(s)) == SQLITE_ROW) {
            int64_t layer = sqlite3_column_int64(s, 1);
            int64_t kind = sqlite3_column_int64(s, 3);
            int64_t slot = sqlite3_column_int64(s, 2);
            if (layer < -1 || layer > INT32_MAX || kind < 0 || kind >= PD_KV_EVENT_KIND_COUNT ||
                slot < 0) {
                sqlite3_reset(s);
                return pd_err_set(err, PD_EFORMAT, "%s: session %lld: corrupt KV event row",
                                  r->st->path, (long long)g->sid);
            }
            struct pd_kv_event_rec *na = pd_grow_array(*arr, cap, *len + 1, sizeof **arr);
            if (!na) {
                sqlite3_reset(s);
                return pd_err_set(err, PD_ENOMEM, "replay: out of memory");
            }
            *arr = na;
            struct pd_kv_event_rec *e = &(*arr)[(*len)++];
            e->at_pos = sqlite3_column_int64(s, 0);
            e->layer = (int32_t)layer;
            e->slot_pos = slot;
            e->kind = (enum pd_kv_event_kind)kind;
        }
        sqlite3_reset(s);
        if (sr != SQLITE_DONE) {
            return pd_store_dberr(r->st, err, "KV event read");
        }
    }
    return PD_OK;
}

enum pd_status pd_replay_kv_events(struct pd_replay *r, int64_t pos_begin, int64_t pos_end,
                                   struct pd_kv_event_rec **out, size_t *n, struct pd_err *err)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    enum pd_status rc = kv_range(r, pos_begin, pos_end, out, n, &cap, err);
    if (rc != PD_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

enum pd_status pd_replay_next(struct pd_replay *r, struct pd_replay_item *item,
                              struct pd_err *err)
{
    memset(item, 0, sizeof *item);
    for (;;) {
        /* r->pos is the position of the next token not yet returned */
        int64_t next_tok = r->pos - (int64_t)(r->tok_n - r->tok_i);
        if (r->kv_i < r->kv_n &&
            (r->kvbuf[r->kv_i].at_pos <= next_tok || next_tok >= r->length)) {
            item->kind = PD_REPLAY_KV_EVENT;
            item->kv = r->kvbuf[r->kv_i++];
            return PD_OK;
        }
        if (r->tok_i < r->tok_n) {
            item->kind = PD_REPLAY_TOKEN;
            item->token = r->tokbuf[r->tok_i];
            memset(&r->tokbuf[r->tok_i], 0, sizeof r->tokbuf[r->tok_i]);
            r->tok_i++;
            return PD_OK;
        }
        size_t cap = 0;
        free(r->kvbuf);
        r->kvbuf = NULL;
        r->kv_i = r->kv_n = 0;
        if (r->pos >= r->length) {
            if (r->tail_loaded) {
                item->kind = PD_REPLAY_END;
                return PD_OK;
            }
            r->tail_loaded = true;
            enum pd_status rc = kv_range(r, r->length, INT64_MAX, &r->kvbuf, &r->kv_n, &cap, err);
            if (rc != PD_OK) {
                return rc;
            }
            continue;
        }
        int64_t from = r->pos;
        size_t got = 0;
        r->tok_i = r->tok_n = 0;
        enum pd_status rc = read_tokens(r, r->tokbuf, CHUNK, &got, err);
        r->tok_n = got;
        if (rc == PD_OK) {
            rc = kv_range(r, from, from + (int64_t)got, &r->kvbuf, &r->kv_n, &cap, err);
        }
        if (rc != PD_OK) {
            return rc;
        }
    }
}
