/* qwen_vocab.h - builds a vocabulary-only GGUF of the Qwen2/2.5/3 byte-level BPE
 * tokenizer from the files in shared/tokenizers/qwen (vocab.json, merges.txt).
 *
 * The file carries what a converted Qwen3 GGUF carries for its tokenizer:
 * general.architecture "qwen2" plus minimal qwen2.* hyperparameters (so llama.cpp can
 * open it with vocab_only), tokenizer.ggml.model "gpt2", the given pre-tokenizer name,
 * tokens 0..151642 from vocab.json (NORMAL), the added tokens 151643..151668
 * (<|endoftext|> .. </think>; CONTROL when they look special, USER_DEFINED otherwise,
 * as the converter types them), padding tokens "[PAD151669]".."[PAD151935]" (UNUSED),
 * the merges in file order, bos = pad = 151643, eos = 151645, add_bos_token false.
 *
 * Used by tests/test_tokenizer.c at test time and by tests/tools/mkqwenvocab.c for the
 * golden-making script. Not thread-safe (jansson is, but the function uses one writer). */
#ifndef PD_QWEN_VOCAB_H
#define PD_QWEN_VOCAB_H

#include "status.h"

#define PD_QWEN_VOCAB_N_BASE 151643u
#define PD_QWEN_VOCAB_N 151936u

/* Reads dir/vocab.json and dir/merges.txt and writes the GGUF to out_path with
 * tokenizer.ggml.pre = pre ("qwen2", "llama-bpe", ...). PD_EIO when a file cannot be
 * read or written, PD_EFORMAT when vocab.json / merges.txt are not what is expected
 * (the message names the file and line). */
enum pd_status pd_qwen_vocab_write(const char *dir, const char *pre, const char *out_path,
                                   struct pd_err *err);

#endif
