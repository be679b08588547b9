/* store_replay.h - reading a saved session back: tokens and KV events in order, seek,
 * steps and annotations.
 *
 * A reader resolves a branch's inherited prefix: positions below the session's fork_pos
 * come from its parent (recursively), the rest from the session itself, so a reader
 * always sees one contiguous sequence 0 .. length-1. KV events follow the same rule by
 * their at_pos. Steps and annotations are the session's own (loaded at open); a token's
 * PD_TOKF_PRUNED flag is set from the session's pruned steps.
 *
 * Cost: open runs a handful of indexed queries plus the session's steps and annotations;
 * reads fetch rows by (session, pos) from the index, so opening a long session and reading
 * its first screen does not depend on the session's length.
 *
 * Threads: a reader uses the connection of the pd_store it was opened on and has the
 * same single owner; it must be closed before that store. Several readers may share one
 * store. Rows read are validated (positions contiguous, roles and blobs well-formed);
 * corruption gives PD_EFORMAT naming the session and position. */
#ifndef PD_STORE_REPLAY_H
#define PD_STORE_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "trace.h"
#include "store.h"

struct pd_replay;

/* Opens a reader on a session; the cursor starts at position 0. st is borrowed and must
 * outlive the reader. *out owned (pd_replay_close). PD_EINVAL for an unknown session,
 * PD_EFORMAT for a broken branch chain (missing parent, cycle). */
enum pd_status pd_replay_open(struct pd_store *st, int64_t session_id, struct pd_replay **out,
                              struct pd_err *err);

/* Frees the reader; accepts NULL and *r == NULL; NULLs *r. */
void pd_replay_close(struct pd_replay **r);

/* The session's summary (borrowed, valid until close). */
const struct pd_store_session_info *pd_replay_info(const struct pd_replay *r);

/* Number of positions in the whole sequence (inherited prefix included), as read at open. */
int64_t pd_replay_length(const struct pd_replay *r);

/* The cursor: the position the next token read returns. */
int64_t pd_replay_tell(const struct pd_replay *r);

/* Moves the cursor to pos (0 .. length). PD_EINVAL outside that range. */
enum pd_status pd_replay_seek(struct pd_replay *r, int64_t pos, struct pd_err *err);

/* Reads up to n tokens from the cursor into out[0..*n_read) and advances the cursor;
 * *n_read is 0 at the end. Each out[i] owns its text and attention blob: release with
 * pd_token_rec_free (also on error, entries below *n_read are filled). */
enum pd_status pd_replay_read(struct pd_replay *r, struct pd_token_rec *out, size_t n,
                              size_t *n_read, struct pd_err *err);

enum pd_replay_item_kind {
    PD_REPLAY_TOKEN,
    PD_REPLAY_KV_EVENT,
    PD_REPLAY_END,
    PD_REPLAY_ITEM_KIND_COUNT
};

struct pd_replay_item {
    enum pd_replay_item_kind kind;
    struct pd_token_rec token;      /* PD_REPLAY_TOKEN: owned by the caller afterwards */
    struct pd_kv_event_rec kv;      /* PD_REPLAY_KV_EVENT */
};

/* The next item in playback order: for each position p, the KV events with at_pos == p
 * (they happened before token p was appended), then token p; after the last token, the
 * events at the final length; then PD_REPLAY_END (repeatable). Shares the cursor with
 * pd_replay_read / pd_replay_seek. */
enum pd_status pd_replay_next(struct pd_replay *r, struct pd_replay_item *item,
                              struct pd_err *err);

/* KV events with pos_begin <= at_pos < pos_end, in playback order. *out owned (free()). */
enum pd_status pd_replay_kv_events(struct pd_replay *r, int64_t pos_begin, int64_t pos_end,
                                   struct pd_kv_event_rec **out, size_t *n,
                                   struct pd_err *err);

/* The session's steps ordered by index (pruned flags set) and annotations (session-level
 * first, then by span start). Borrowed, valid until close. */
const struct pd_step_rec *pd_replay_steps(const struct pd_replay *r, size_t *n);
const struct pd_annotation *pd_replay_annotations(const struct pd_replay *r, size_t *n);

#endif
