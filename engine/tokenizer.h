/* tokenizer.h - text <-> token ids from a GGUF file's tokenizer metadata.
 *
 * Two algorithms, chosen by `tokenizer.ggml.model`:
 *   "llama" - SentencePiece-style BPE over scores (SPM): spaces become U+2581, a space is
 *             prefixed to each text run that starts the input or follows a special token
 *             (when add_space_prefix), adjacent symbols merge highest score first, and
 *             symbols that are not tokens fall back to <0xNN> byte tokens.
 *   "gpt2"  - byte-level BPE: the text is split by the pre-tokenizer named in
 *             `tokenizer.ggml.pre` (qwen2 / deepseek-r1-qwen, llama3 / llama-bpe,
 *             gpt-2, default), each piece is mapped byte-wise to the GPT-2 printable
 *             alphabet and merged by `tokenizer.ggml.merges` rank, lowest first.
 * Special tokens (types CONTROL and UNKNOWN when parse_special, USER_DEFINED always) are
 * cut out of the text first, longest first. Token ids match llama.cpp's tokenizer on the
 * same file; tests/golden/tokenizer/ holds ids produced by it. Known differences, all
 * outside what the supported models use: the per-model lstrip/rstrip attributes the
 * reference gives special tokens of a few other families are not applied; add_eos_token
 * is not applied; code point classes come from Unicode 15.0 (the reference's table may be
 * a slightly newer version, which matters only for characters assigned since); a 4-byte
 * sequence decoding above U+10FFFF reads as U+FFFD (the reference stops with an error).
 *
 * Ownership: struct pd_tok copies everything it needs out of the GGUF (the pd_gguf may
 * be closed afterwards) and is freed with pd_tok_close. Strings returned by accessors
 * are borrowed from it and stay valid until pd_tok_close.
 * Thread-safety: immutable after open; concurrent encode/decode calls are fine. */
#ifndef PD_TOKENIZER_H
#define PD_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"
#include "status.h"
#include "gguf.h"

struct pd_tok;

enum pd_tok_model {
    PD_TOK_MODEL_SPM, /* "llama" */
    PD_TOK_MODEL_BPE, /* "gpt2" */
    PD_TOK_MODEL_COUNT
};

/* Pre-tokenizer of a byte-level BPE vocabulary (SPM vocabularies report NONE). */
enum pd_tok_pre {
    PD_TOK_PRE_NONE,
    PD_TOK_PRE_DEFAULT, /* missing key or "default" */
    PD_TOK_PRE_GPT2,    /* "gpt-2" */
    PD_TOK_PRE_LLAMA3,  /* "llama3", "llama-v3", "llama-bpe" */
    PD_TOK_PRE_QWEN2,   /* "qwen2", "deepseek-r1-qwen" */
    PD_TOK_PRE_COUNT
};

/* Token types as stored in `tokenizer.ggml.token_type`. */
enum pd_tok_type {
    PD_TOK_TYPE_UNDEFINED = 0,
    PD_TOK_TYPE_NORMAL = 1,
    PD_TOK_TYPE_UNKNOWN = 2,
    PD_TOK_TYPE_CONTROL = 3,
    PD_TOK_TYPE_USER_DEFINED = 4,
    PD_TOK_TYPE_UNUSED = 5,
    PD_TOK_TYPE_BYTE = 6,
    PD_TOK_TYPE_COUNT
};

/* Hard limits on untrusted tokenizer metadata. */
#define PD_TOK_VOCAB_MAX (1u << 22)
#define PD_TOK_MERGES_MAX (1u << 22)
#define PD_TOK_TEXT_MAX 65535u /* bytes in one token's text */

/* Builds a tokenizer from g's `tokenizer.ggml.*` metadata. Validates everything: the
 * model name, token list (count bounded, no duplicates), scores and token types
 * (arrays of the right element type and exactly one per token, types in range, no NaN
 * scores), byte tokens of the form <0xNN>, merges ("left right", both parts and their
 * concatenation tokens of the vocabulary), special token ids (in range), and the
 * pre-tokenizer name. Errors are PD_EFORMAT / PD_EUNSUPPORTED with a message naming g's
 * path and the key (and element index), e.g.
 *     "m.gguf: tokenizer.ggml.merges[12]: 'Ġ x': 'x' is not a token".
 * On success *out is owned by the caller (pd_tok_close); on failure *out is NULL. */
enum pd_status pd_tok_open_gguf(const struct pd_gguf *g, struct pd_tok **out,
                                struct pd_err *err);

/* Frees t; accepts NULL and *t == NULL; sets *t to NULL. */
void pd_tok_close(struct pd_tok **t);

/* Tokenizes text[0..len) (any bytes; malformed UTF-8 is tokenized the way the reference
 * tokenizer does, see unicode.h). add_bos prepends the BOS token (PD_EINVAL if the
 * vocabulary has none); pass pd_tok_add_bos(t) to follow the model's preference.
 * parse_special turns the text of CONTROL/UNKNOWN tokens ("<|im_start|>") into those
 * tokens; USER_DEFINED tokens ("<think>" in Qwen3) are always matched. On success *ids
 * is a malloc'd array of *n ids owned by the caller (free()); it may be NULL when *n is
 * 0. On failure *ids is NULL and *n is 0. Errors: PD_ENOMEM; PD_EFORMAT when an SPM
 * vocabulary lacks the byte token a character needs. EOS is never appended. */
enum pd_status pd_tok_encode(const struct pd_tok *t, const char *text, size_t len,
                             bool add_bos, bool parse_special, int32_t **ids, size_t *n,
                             struct pd_err *err);

/* The bytes a token stands for: SPM U+2581 becomes a space and <0xNN> that byte;
 * byte-level BPE text is mapped back from the GPT-2 alphabet; CONTROL, UNKNOWN and
 * USER_DEFINED tokens render as their text; UNUSED and UNDEFINED tokens are empty.
 * A piece may end (or start) in the middle of a UTF-8 sequence. Returns a pointer
 * borrowed from t (not NUL-terminated) and sets *len; NULL (and *len = 0) for an id out
 * of range. */
const char *pd_tok_piece(const struct pd_tok *t, int32_t id, size_t *len);

/* Appends the pieces of ids[0..n) to out: decode(encode(x)) == x byte for byte for
 * valid UTF-8 x (SPM: after the added leading space, and with U+2581, SentencePiece's
 * own space mark, reading back as a space, as in llama.cpp). PD_EINVAL (naming the position)
 * for an id out of range, PD_ENOMEM; on error out keeps what was appended before. */
enum pd_status pd_tok_decode(const struct pd_tok *t, const int32_t *ids, size_t n,
                             struct pd_buf *out, struct pd_err *err);

/* The token's text as stored in the vocabulary (e.g. "Ġthe", "▁the", "<0x0A>"),
 * borrowed; NULL for an id out of range. */
const char *pd_tok_text(const struct pd_tok *t, int32_t id, size_t *len);

/* Id of the token whose vocabulary text is exactly s[0..len), or -1. */
int32_t pd_tok_find(const struct pd_tok *t, const char *s, size_t len);

uint32_t pd_tok_n_vocab(const struct pd_tok *t);
enum pd_tok_model pd_tok_model(const struct pd_tok *t);
enum pd_tok_pre pd_tok_pre(const struct pd_tok *t);
/* "llama" / "gpt2"; pre-tokenizer names "none", "default", "gpt-2", "llama3", "qwen2". */
const char *pd_tok_model_name(enum pd_tok_model m);
const char *pd_tok_pre_name(enum pd_tok_pre p);

/* Special ids; -1 when the vocabulary has none. EOT comes from
 * `tokenizer.ggml.eot_token_id` or, absent that, a token with a known end-of-turn text
 * ("<|im_end|>", "<|eot_id|>", ...). */
int32_t pd_tok_bos(const struct pd_tok *t);
int32_t pd_tok_eos(const struct pd_tok *t);
int32_t pd_tok_eot(const struct pd_tok *t);
int32_t pd_tok_unk(const struct pd_tok *t);
int32_t pd_tok_pad(const struct pd_tok *t);
/* Whether the model wants BOS prepended (`tokenizer.ggml.add_bos_token`, else the
 * model's default: true for SPM and llama3, false otherwise). */
bool pd_tok_add_bos(const struct pd_tok *t);

/* Type of id (PD_TOK_TYPE_UNDEFINED for an id out of range). Tokens whose text marks
 * the end of a turn ("<|im_end|>", "<|endoftext|>", ...) report CONTROL even when the
 * file says otherwise, as the reference tokenizer treats them. */
enum pd_tok_type pd_tok_type(const struct pd_tok *t, int32_t id);
/* CONTROL tokens (chat markers, BOS/EOS). */
bool pd_tok_is_control(const struct pd_tok *t, int32_t id);
/* CONTROL, USER_DEFINED or UNKNOWN: tokens cut out of text before tokenization. */
bool pd_tok_is_special(const struct pd_tok *t, int32_t id);
/* End of generation: EOS, EOT, or another end-of-turn token of the vocabulary. */
bool pd_tok_is_eog(const struct pd_tok *t, int32_t id);

/* Streaming detokenizer: turns a stream of ids into text that never contains broken
 * UTF-8. Bytes of an incomplete (so far valid) UTF-8 sequence at the end are held back
 * until the next piece completes them; bytes that can never become valid are replaced
 * by U+FFFD. Caller-owned: init, push per token, flush at the end, deinit. Allocates
 * only while its scratch buffer grows (not per token once warm). Not thread-safe. */
struct pd_tok_stream {
    struct pd_buf scratch; /* owned: held-back bytes + the incoming piece */
};

void pd_tok_stream_init(struct pd_tok_stream *s);
void pd_tok_stream_deinit(struct pd_tok_stream *s);
/* Appends id's piece; appends the newly complete text to out (possibly nothing).
 * PD_EINVAL for an id out of range, PD_ENOMEM. */
enum pd_status pd_tok_stream_push(struct pd_tok_stream *s, const struct pd_tok *t,
                                  int32_t id, struct pd_buf *out, struct pd_err *err);
/* Appends whatever is held back (an incomplete sequence becomes U+FFFD) and resets. */
enum pd_status pd_tok_stream_flush(struct pd_tok_stream *s, struct pd_buf *out,
                                   struct pd_err *err);

#endif
