/* qwen_vocab.c - vocab-only Qwen GGUF builder for tokenizer tests; see qwen_vocab.h. */
#include "qwen_vocab.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "gguf_writer.h"
#include "tokenizer.h"

struct added {
    const char *text;
    enum pd_tok_type type;
};

/* Qwen2.5 added tokens 151643..151664 and Qwen3's 151665..151668, typed as the GGUF
 * converter types them: "<|...|>" or special -> CONTROL, the rest USER_DEFINED. */
static const struct added added_tokens[] = {
    {"<|endoftext|>", PD_TOK_TYPE_CONTROL},       {"<|im_start|>", PD_TOK_TYPE_CONTROL},
    {"<|im_end|>", PD_TOK_TYPE_CONTROL},          {"<|object_ref_start|>", PD_TOK_TYPE_CONTROL},
    {"<|object_ref_end|>", PD_TOK_TYPE_CONTROL},  {"<|box_start|>", PD_TOK_TYPE_CONTROL},
    {"<|box_end|>", PD_TOK_TYPE_CONTROL},         {"<|quad_start|>", PD_TOK_TYPE_CONTROL},
    {"<|quad_end|>", PD_TOK_TYPE_CONTROL},        {"<|vision_start|>", PD_TOK_TYPE_CONTROL},
    {"<|vision_end|>", PD_TOK_TYPE_CONTROL},      {"<|vision_pad|>", PD_TOK_TYPE_CONTROL},
    {"<|image_pad|>", PD_TOK_TYPE_CONTROL},       {"<|video_pad|>", PD_TOK_TYPE_CONTROL},
    {"<tool_call>", PD_TOK_TYPE_USER_DEFINED},    {"</tool_call>", PD_TOK_TYPE_USER_DEFINED},
    {"<|fim_prefix|>", PD_TOK_TYPE_CONTROL},      {"<|fim_middle|>", PD_TOK_TYPE_CONTROL},
    {"<|fim_suffix|>", PD_TOK_TYPE_CONTROL},      {"<|fim_pad|>", PD_TOK_TYPE_CONTROL},
    {"<|repo_name|>", PD_TOK_TYPE_CONTROL},       {"<|file_sep|>", PD_TOK_TYPE_CONTROL},
    {"<tool_response>", PD_TOK_TYPE_USER_DEFINED}, {"</tool_response>", PD_TOK_TYPE_USER_DEFINED},
    {"<think>", PD_TOK_TYPE_USER_DEFINED},        {"</think>", PD_TOK_TYPE_USER_DEFINED},
};
#define N_ADDED (sizeof added_tokens / sizeof added_tokens[0])
_Static_assert(PD_QWEN_VOCAB_N_BASE + N_ADDED == 151669u, "added token ids");

static char *read_file(const char *path, size_t *len, struct pd_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        pd_err_set(err, PD_EIO, "%s: cannot open", path);
        return NULL;
    }
    struct pd_buf b;
    pd_buf_init(&b);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (!pd_buf_append(&b, chunk, n)) {
            fclose(f);
            pd_buf_deinit(&b);
            pd_err_set(err, PD_ENOMEM, "%s: out of memory", path);
            return NULL;
        }
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad) {
        pd_buf_deinit(&b);
        pd_err_set(err, PD_EIO, "%s: read error", path);
        return NULL;
    }
    *len = b.len;
    return b.data ? pd_buf_take(&b) : calloc(1, 1);
}

enum pd_status pd_qwen_vocab_write(const char *dir, const char *pre, const char *out_path,
                                   struct pd_err *err)
{
    enum pd_status rc = PD_OK;
    char path[4096];
    json_t *vocab = NULL;
    char *merges_txt = NULL;
    const char **toks = NULL;
    size_t *tok_lens = NULL;
    char (*pads)[16] = NULL;
    int32_t *types = NULL;
    const char **merges = NULL;
    size_t *merge_lens = NULL;
    struct pd_gguf_writer *w = NULL;

    snprintf(path, sizeof path, "%s/vocab.json", dir);
    json_error_t jerr;
    vocab = json_load_file(path, 0, &jerr);
    if (!vocab || !json_is_object(vocab)) {
        rc = pd_err_set(err, vocab ? PD_EFORMAT : PD_EIO, "%s: line %d: %s", path, jerr.line,
                        vocab ? "not a JSON object" : jerr.text);
        goto done;
    }
    if (json_object_size(vocab) != PD_QWEN_VOCAB_N_BASE) {
        rc = pd_err_set(err, PD_EFORMAT, "%s: %zu entries, expected %u", path,
                        json_object_size(vocab), PD_QWEN_VOCAB_N_BASE);
        goto done;
    }
    toks = calloc(PD_QWEN_VOCAB_N, sizeof *toks);
    tok_lens = calloc(PD_QWEN_VOCAB_N, sizeof *tok_lens);
    pads = calloc(PD_QWEN_VOCAB_N, sizeof *pads);
    types = calloc(PD_QWEN_VOCAB_N, sizeof *types);
    if (!toks || !tok_lens || !pads || !types) {
        rc = pd_err_set(err, PD_ENOMEM, "out of memory");
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || id >= (json_int_t)PD_QWEN_VOCAB_N_BASE || toks[id]) {
            rc = pd_err_set(err, PD_EFORMAT, "%s: entry '%s': bad or repeated id", path, key);
            goto done;
        }
        toks[id] = key;
        tok_lens[id] = strlen(key);
        types[id] = PD_TOK_TYPE_NORMAL;
    }
    for (size_t i = 0; i < N_ADDED; i++) {
        toks[PD_QWEN_VOCAB_N_BASE + i] = added_tokens[i].text;
        tok_lens[PD_QWEN_VOCAB_N_BASE + i] = strlen(added_tokens[i].text);
        types[PD_QWEN_VOCAB_N_BASE + i] = added_tokens[i].type;
    }
    for (uint32_t i = PD_QWEN_VOCAB_N_BASE + (uint32_t)N_ADDED; i < PD_QWEN_VOCAB_N; i++) {
        snprintf(pads[i], sizeof pads[i], "[PAD%u]", i);
        toks[i] = pads[i];
        tok_lens[i] = strlen(pads[i]);
        types[i] = PD_TOK_TYPE_UNUSED;
    }

    snprintf(path, sizeof path, "%s/merges.txt", dir);
    size_t mlen;
    merges_txt = read_file(path, &mlen, err);
    if (!merges_txt) {
        rc = err ? err->status : PD_EIO;
        goto done;
    }
    size_t n_lines = 0;
    for (size_t i = 0; i < mlen; i++) {
        n_lines += merges_txt[i] == '\n';
    }
    merges = calloc(n_lines + 1, sizeof *merges);
    merge_lens = calloc(n_lines + 1, sizeof *merge_lens);
    if (!merges || !merge_lens) {
        rc = pd_err_set(err, PD_ENOMEM, "out of memory");
        goto done;
    }
    size_t n_merges = 0;
    size_t line = 0;
    for (size_t i = 0; i < mlen;) {
        size_t end = i;
        while (end < mlen && merges_txt[end] != '\n') {
            end++;
        }
        line++;
        size_t len = end - i;
        if (len > 0 && merges_txt[i + len - 1] == '\r') {
            len--;
        }
        if (line == 1 && len >= 8 && memcmp(merges_txt + i, "#version", 8) == 0) {
            i = end + 1;
            continue;
        }
        if (len > 0) {
            if (!memchr(merges_txt + i, ' ', len)) {
                rc = pd_err_set(err, PD_EFORMAT, "%s: line %zu: not 'left right'", path, line);
                goto done;
            }
            merges[n_merges] = merges_txt + i;
            merge_lens[n_merges] = len;
            n_merges++;
        }
        i = end + 1;
    }

    if ((rc = pd_gguf_writer_open(&w, err)) != PD_OK) {
        goto done;
    }
    static const char *const arch_keys_u32[] = {
        "qwen2.context_length",   "qwen2.embedding_length",    "qwen2.block_count",
        "qwen2.feed_forward_length", "qwen2.attention.head_count",
        "qwen2.attention.head_count_kv",
    };
    static const uint32_t arch_vals[] = {32768, 64, 1, 128, 4, 4};
    if ((rc = pd_gguf_writer_add_str(w, "general.architecture", "qwen2", err)) != PD_OK ||
        (rc = pd_gguf_writer_add_str(w, "general.name", "Qwen vocab", err)) != PD_OK) {
        goto done;
    }
    for (size_t i = 0; i < sizeof arch_vals / sizeof arch_vals[0]; i++) {
        if ((rc = pd_gguf_writer_add_u32(w, arch_keys_u32[i], arch_vals[i], err)) != PD_OK) {
            goto done;
        }
    }
    if ((rc = pd_gguf_writer_add_f32(w, "qwen2.attention.layer_norm_rms_epsilon", 1e-6f, err)) !=
            PD_OK ||
        (rc = pd_gguf_writer_add_f32(w, "qwen2.rope.freq_base", 1000000.0f, err)) != PD_OK ||
        (rc = pd_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2", err)) != PD_OK ||
        (rc = pd_gguf_writer_add_str(w, "tokenizer.ggml.pre", pre, err)) != PD_OK ||
        (rc = pd_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, tok_lens,
                                         PD_QWEN_VOCAB_N, err)) != PD_OK ||
        (rc = pd_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", PD_GGUF_INT32, types,
                                     PD_QWEN_VOCAB_N, err)) != PD_OK ||
        (rc = pd_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges, merge_lens,
                                         n_merges, err)) != PD_OK ||
        (rc = pd_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 151645, err)) != PD_OK ||
        (rc = pd_gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", 151643, err)) !=
            PD_OK ||
        (rc = pd_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 151643, err)) != PD_OK ||
        (rc = pd_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false, err)) != PD_OK) {
        goto done;
    }
    rc = pd_gguf_writer_write_file(w, out_path, err);
done:
    pd_gguf_writer_close(&w);
    free(merges);
    free(merge_lens);
    free(merges_txt);
    free(toks);
    free(tok_lens);
    free(pads);
    free(types);
    json_decref(vocab);
    return rc;
}
