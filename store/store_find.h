/* store_find.h - finding sessions: filters (tag, model, source, age, count), full-text
 * search over conversations and traces (SQLite FTS5, table session_text), and the
 * content hash that lets an import skip a trace the database already holds (schema 5).
 *
 * The full-text index is refreshed lazily: a session that grew since its row was made
 * (sessions.indexed_ms NULL) is re-indexed by pd_store_text_sync, which a search calls
 * first. The content hash is the SHA-256 of the session's conversation and its own
 * tokens' text by role (pd_store_content_hash), so the same trace imported from another
 * file, another JSONL shape or a ponder record hashes alike.
 *
 * Ownership: results are owned by the caller (see each function). Thread-safety: as
 * struct pd_store (its owner thread). */
#ifndef PD_STORE_FIND_H
#define PD_STORE_FIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "store.h"

/* Which sessions to list. Zero / NULL members do not filter. */
struct pd_session_filter {
    const char *tag;        /* borrowed: has an annotation with this tag */
    const char *model;      /* borrowed: model file name contains it (any case), or its
                             * sha256 starts with it */
    const char *source;     /* borrowed: source starts with it ("import", "live", ...) */
    int64_t since_ms;       /* created at or after (Unix ms) */
    size_t limit;           /* at most this many: the newest, or the best matches */
    const char *match;      /* borrowed: an FTS5 query over the text; NULL: no search */
};

/* The sessions the filter selects: oldest first, or with `match` best match first (FTS5
 * rank), each with a snippet of the matching text (terms in [ ], "..." at cuts) in
 * (*snippets)[i] when snippets is non-NULL. *out owned (pd_store_session_info_free each,
 * then free()); *snippets owned (free each, then free()). A bad FTS5 query is PD_EINVAL
 * with SQLite's reason. Call pd_store_text_sync first for an up-to-date search. */
enum pd_status pd_store_sessions_find(struct pd_store *st, const struct pd_session_filter *f,
                                      struct pd_store_session_info **out, char ***snippets,
                                      size_t *n, struct pd_err *err);

/* Brings the full-text index up to date: rows of deleted sessions dropped, sessions that
 * changed since they were indexed (re)indexed. *stale (may be NULL) receives how many
 * sessions it had to index; on a read-only store nothing is written and *stale says how
 * many rows are out of date. Atomic. */
enum pd_status pd_store_text_sync(struct pd_store *st, size_t *stale, struct pd_err *err);

/* SHA-256 (lowercase hex) of a session's conversation (role, content of each message)
 * and its own tokens' text in runs of one role; token ids, metrics and how the text is
 * cut into tokens do not enter it. */
enum pd_status pd_store_content_hash(struct pd_store *st, int64_t session_id, char hex[65],
                                     struct pd_err *err);

/* Hashes session_id and records the hash; *dup receives the oldest other session with the
 * same hash, 0 when none. */
enum pd_status pd_store_content_hash_put(struct pd_store *st, int64_t session_id,
                                         int64_t *dup, struct pd_err *err);

/* Hashes every finished root session that has no hash yet (made by run or generate, or
 * imported before schema 5), so that imports see them. *n (may be NULL) receives how
 * many. Atomic. */
enum pd_status pd_store_content_hash_missing(struct pd_store *st, size_t *n,
                                             struct pd_err *err);

#endif
