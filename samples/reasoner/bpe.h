/* bpe.h - the reasoner's vocabulary: byte-level BPE (GPT-2 alphabet, Qwen2 pre-tokenizer)
 * learned from generated samples, plus Qwen3's chat special tokens, written as GGUF
 * tokenizer metadata that ponder and llama.cpp read as a Qwen3 tokenizer.
 *
 * Layout of the vocabulary: ids 0..255 the 256 byte tokens (byte b is token b), then one
 * token per merge in the order learned, then the special tokens <|endoftext|>,
 * <|im_start|>, <|im_end|> (CONTROL) and <think>, </think> (USER_DEFINED). Digits are
 * never merged (the Qwen2 pre-tokenizer splits numbers into single digits).
 *
 * Training: text between special tokens is split by an ASCII rendering of the Qwen2
 * pre-tokenizer expression; the most frequent adjacent pair over all words (weighted by
 * word count) is merged, ties broken by the smaller (left id, right id), until the
 * vocabulary reaches its size or no pair occurs twice. The split only steers which merges
 * are learned; the shipped tokenization is always ponder's own tokenizer on the result.
 *
 * Ownership: struct rz_vocab owns its strings (rz_vocab_deinit).
 * Thread-safety: none needed (single-threaded tools). */
#ifndef RZ_BPE_H
#define RZ_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

struct pd_gguf_writer;

#define RZ_N_SPECIAL 5

struct rz_vocab {
    char **tokens;      /* owned [n_tokens], each owned: GPT-2 alphabet text (UTF-8) */
    int32_t *types;     /* owned [n_tokens]: tokenizer.ggml.token_type values */
    size_t n_tokens;
    char **merges;      /* owned [n_merges]: "left right" */
    size_t n_merges;
    int32_t id_endoftext, id_im_start, id_im_end, id_think, id_think_end;
};

void rz_vocab_deinit(struct rz_vocab *v);

/* Learns a vocabulary of at most n_vocab tokens (>= 256 + RZ_N_SPECIAL) from texts[0..n)
 * (special token texts inside them are recognised and not split). PD_EINVAL for a size too
 * small, PD_ENOMEM. */
enum pd_status rz_bpe_train(const char *const *texts, size_t n, uint32_t n_vocab,
                            struct rz_vocab *out, struct pd_err *err);

/* Adds the tokenizer metadata of v to w: model "gpt2", pre "qwen2", tokens, token types,
 * merges, BOS = padding = <|endoftext|>, EOS = <|im_end|>, add_bos_token false, and
 * chat_template (NUL-terminated). */
enum pd_status rz_vocab_write_meta(const struct rz_vocab *v, const char *chat_template,
                                   struct pd_gguf_writer *w, struct pd_err *err);

#endif
