/* fuzz_tokenizer.c - both tokenizer families on arbitrary bytes: SentencePiece
 * (stories260K's vocabulary) and byte-level BPE (the real Qwen vocabulary, built from
 * ../shared/tokenizers/qwen at start-up). Valid UTF-8 always encodes, and decoding gives
 * it back byte for byte when special tokens are not parsed (SentencePiece: after the
 * space it adds in front, with its space
 * mark U+2581 reading back as a space); invalid bytes
 * are read as U+FFFD, as llama.cpp does, so only valid text has to come back. The data paths
 * come from PONDER_TEST_MODELS / PONDER_SOURCE_ROOT like the tests'; without them the
 * target stops at start-up with a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "gguf.h"
#include "mem.h"
#include "qwen_vocab.h"
#include "tokenizer.h"
#include "utf8.h"

static struct pd_gguf *g_spm_g, *g_bpe_g;
static struct pd_tok *g_spm, *g_bpe;

static void open_tok(const char *path, struct pd_gguf **g, struct pd_tok **t)
{
    struct pd_err err;
    if (pd_gguf_open(path, g, &err) != PD_OK || pd_tok_open_gguf(*g, t, &err) != PD_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        exit(1);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *models = getenv("PONDER_TEST_MODELS");
    const char *root = getenv("PONDER_SOURCE_ROOT");
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s", models && *models ? models : "");
    if (!*dir) {
        snprintf(dir, sizeof dir, "%s/../shared/models", root ? root : ".");
    }
    snprintf(path, sizeof path, "%s/stories260K.gguf", dir);
    char qdir[4200], out[64];
    snprintf(qdir, sizeof qdir, "%s/../tokenizers/qwen", dir);
    /* the test data is absent: a skip (77 passes through run.sh to meson), not a failure */
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "SKIP: fuzz_tokenizer: %s not found (set PONDER_TEST_MODELS)\n", path);
        exit(77);
    }
    if (access(qdir, R_OK) != 0) {
        fprintf(stderr, "SKIP: fuzz_tokenizer: %s not found (the tokenizer data)\n", qdir);
        exit(77);
    }
    open_tok(path, &g_spm_g, &g_spm);
    snprintf(out, sizeof out, "/tmp/pd-fuzz-qwen-%ld.gguf", (long)getpid());
    struct pd_err err;
    if (pd_qwen_vocab_write(qdir, "qwen2", out, &err) != PD_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        exit(1);
    }
    open_tok(out, &g_bpe_g, &g_bpe);
    unlink(out);
    return 0;
}

static void round_trip(const struct pd_tok *t, const char *s, size_t n, bool special)
{
    int32_t *ids = NULL;
    size_t n_ids = 0;
    struct pd_err err;
    enum pd_status st = pd_tok_encode(t, s, n, false, special, &ids, &n_ids, &err);
    if (st != PD_OK) {
        FUZZ_CHECK(!pd_utf8_valid(s, n), "valid text encodes");
        FUZZ_CHECK(err.msg[0] != '\0', "a refusal has a message");
        return;
    }
    struct pd_buf b;
    pd_buf_init(&b);
    st = pd_tok_decode(t, ids, n_ids, &b, &err);
    FUZZ_CHECK(st == PD_OK, "ids decode");
    if (pd_utf8_valid(s, n) && !special) { /* special tokens may render differently */
        struct pd_buf want; /* what must come back: SPM's space mark reads as a space */
        pd_buf_init(&want);
        for (size_t i = 0; i < n; i++) {
            if (t == g_spm && i + 2 < n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                pd_buf_append(&want, " ", 1);
                i += 2;
            } else {
                pd_buf_append(&want, s + i, 1);
            }
        }
        bool same = b.len == want.len && (want.len == 0 || memcmp(b.data, want.data, b.len) == 0);
        bool spaced = t == g_spm && b.len == want.len + 1 && b.data[0] == ' ' &&
                      (want.len == 0 || memcmp(b.data + 1, want.data, want.len) == 0);
        FUZZ_CHECK(same || spaced, "decode(encode(text)) == text");
        pd_buf_deinit(&want);
    }
    pd_buf_deinit(&b);
    free(ids);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size > 4096) {
        return 0; /* long inputs add time, not paths */
    }
    const char *s = (const char *)data;
    for (int special = 0; special < 2; special++) {
        round_trip(g_spm, s, size, special);
        round_trip(g_bpe, s, size, special);
    }
    return 0;
}
