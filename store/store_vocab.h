/* store_vocab.h - the text of the token ids a saved session mentions, so that replay,
 * show and export print an alternative as its piece ("the") rather than its id (#432)
 * without the model file (schema version 5).
 *
 * Two sources, in this order:
 *   - pieces an imported record carried (`ponder` records: top entries [id, logprob,
 *     piece]) for a session whose model's vocabulary this database lacks, or that has no
 *     model: the `pieces` table, per session (a branch sees its ancestors' too);
 *   - the vocabulary of the session's model: one blob per model in `vocab`, written the
 *     first time a session is recorded or scored with it (pd_store_vocab_put).
 *
 * Vocabulary blob (version 1, little-endian):
 *   u8  version (=1), u8 reserved[3] (=0)
 *   u32 n_vocab                    1..PD_TOK_VOCAB_MAX (4M)
 *   u32 end[n_vocab]               piece i is bytes[end[i-1] .. end[i]) (end[-1] = 0);
 *                                  non-decreasing, each piece at most PD_PIECE_MAX bytes
 *   bytes                          the pieces, concatenated; the blob ends with them
 * A piece is the bytes the token stands for (pd_tok_piece: SentencePiece's U+2581 read as a
 * space, byte tokens as their byte), possibly a partial UTF-8 sequence. Blobs read back
 * are validated (any other size, version, order or length is corrupt).
 *
 * Ownership and lifetimes: the store caches each model's vocabulary it reads until
 * pd_store_close; a struct pd_pieces borrows from that cache, so close it before the
 * store. Thread-safety: as struct pd_store (its owner thread). */
#ifndef PD_STORE_VOCAB_H
#define PD_STORE_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "store.h"

#define PD_VOCAB_BLOB_VERSION 1
#define PD_VOCAB_MAX (1u << 22)
#define PD_PIECE_MAX 1024u  /* bytes of one piece */

/* *has: the model (models.id) has a stored vocabulary. */
enum pd_status pd_store_vocab_has(struct pd_store *st, int64_t model_id, bool *has,
                                  struct pd_err *err);

/* Stores the vocabulary of model_id: n pieces, piece(ud, i, &len) returning piece i
 * (borrowed; NULL reads as empty). Does nothing when the model already has one (a model's
 * vocabulary never changes: its id is the digest of the file's header). PD_EINVAL for n
 * out of 1..PD_VOCAB_MAX, a piece longer than PD_PIECE_MAX or an unknown model. Atomic. */
enum pd_status pd_store_vocab_put(struct pd_store *st, int64_t model_id, uint32_t n,
                                  const char *(*piece)(void *ud, int32_t id, size_t *len),
                                  void *ud, struct pd_err *err);

/* Encodes / checks a vocabulary blob (the layout above). encode: *out owned (free()). */
enum pd_status pd_vocab_blob_encode(uint32_t n,
                                    const char *(*piece)(void *ud, int32_t id, size_t *len),
                                    void *ud, uint8_t **out, size_t *len, struct pd_err *err);
enum pd_status pd_vocab_blob_check(const uint8_t *blob, size_t len, uint32_t *n_vocab,
                                   struct pd_err *err);

/* One imported piece: the text a record gave token id. */
struct pd_piece {
    int32_t id;
    const char *text;   /* borrowed */
    size_t len;         /* at most PD_PIECE_MAX */
};

/* Stores imported pieces of a session (ids >= 0; a repeated id keeps its first text).
 * Inside the caller's transaction or one of its own. PD_EINVAL for a bad id or length. */
enum pd_status pd_store_pieces_put(struct pd_store *st, int64_t session_id,
                                   const struct pd_piece *p, size_t n, struct pd_err *err);

struct pd_pieces;

/* The pieces a session's ids read as: its (and its ancestors') imported pieces, then its
 * model's vocabulary. A session with neither gives an empty map (every lookup NULL).
 * PD_EINVAL for an unknown session, PD_EFORMAT for a corrupt blob. *out owned
 * (pd_pieces_close, before the store closes). */
enum pd_status pd_store_pieces_open(struct pd_store *st, int64_t session_id,
                                    struct pd_pieces **out, struct pd_err *err);
void pd_pieces_close(struct pd_pieces **p);

/* The same, owned by the store until pd_store_close (for a view that lives as long as the
 * store, e.g. the workbench replaying a session); *out borrowed. */
enum pd_status pd_store_pieces_keep(struct pd_store *st, int64_t session_id,
                                    const struct pd_pieces **out, struct pd_err *err);

/* True when the map knows no piece at all. */
bool pd_pieces_empty(const struct pd_pieces *p);

/* Piece of id (borrowed from p, not NUL-terminated; *len set), or NULL when unknown. */
const char *pd_pieces_get(const struct pd_pieces *p, int32_t id, size_t *len);

/* pd_pieces_get in the shape of a lookup callback: ud is a const struct pd_pieces *. */
const char *pd_pieces_lookup(void *ud, int32_t id, size_t *len);

#endif
