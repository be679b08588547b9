/* mkqwenvocab.c - writes a vocabulary-only Qwen GGUF (see qwen_vocab.h) for the golden
 * script tests/golden/make_tokenizer_goldens.mjs.
 *
 * Usage: mkqwenvocab TOKENIZER_DIR PRE OUT.gguf
 *   TOKENIZER_DIR holds vocab.json and merges.txt (shared/tokenizers/qwen);
 *   PRE is the tokenizer.ggml.pre value ("qwen2", "llama-bpe", "gpt-2", "default"). */
#include <stdio.h>

#include "qwen_vocab.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s TOKENIZER_DIR PRE OUT.gguf\n", argv[0]);
        return 2;
    }
    struct pd_err err;
    pd_err_clear(&err);
    if (pd_qwen_vocab_write(argv[1], argv[2], argv[3], &err) != PD_OK) {
        fprintf(stderr, "mkqwenvocab: %s\n", err.msg);
        return 1;
    }
    return 0;
}
