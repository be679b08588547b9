/* test_model_fuzz.c - hostile model files past the GGUF reader: mutates the metadata and
 * tensor tables of valid tiny models (three architectures, several tensor types) and runs
 * each mutant through the whole loading path — GGUF validation, model binding, tokenizer,
 * chat template detection, a context and a short forward pass. Nothing may crash, hang
 * or read out of bounds (ASan); every rejection must carry a message. Deterministic
 * (fixed-seed generator). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "engine_common.h"
#include "forward.h"
#include "gguf.h"
#include "model.h"
#include "tokenizer.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

struct stats {
    int gguf_rejected, model_rejected, tok_rejected, evaluated;
};

/* Runs one mutant through everything. */
static void try_load(const uint8_t *buf, size_t len, struct stats *st)
{
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_gguf *g = NULL;
    if (pd_gguf_open_mem(buf, len, "mutant.gguf", &g, &err)) {
        assert_true(err.msg[0] != '\0');
        st->gguf_rejected++;
        return;
    }
    struct pd_model *m = NULL;
    if (pd_model_open_gguf_take(g, &m, &err)) {
        assert_true(err.msg[0] != '\0');
        st->model_rejected++;
        return;
    }
    struct pd_tok *t = NULL;
    if (pd_tok_open_gguf(m->gguf, &t, &err)) {
        assert_true(err.msg[0] != '\0');
        st->tok_rejected++;
        pd_model_close(&m);
        return;
    }
    struct pd_chat_format fmt;
    (void)pd_chat_detect(m->gguf, &fmt, &err);
    int32_t *ids = NULL;
    size_t n = 0;
    (void)pd_tok_encode(t, "Once upon a time, 123 <think>", 29, pd_tok_add_bos(t), true, &ids,
                        &n, &err);
    struct pd_ctx_params p = pd_ctx_default_params();
    p.n_threads = 1;
    p.n_ctx = 32;
    struct pd_ctx *c = NULL;
    if (pd_ctx_open(m, &p, &c, &err) == PD_OK) {
        int32_t toks[4];
        for (int i = 0; i < 4; i++) {
            toks[i] = ids && (size_t)i < n ? ids[i] : i;
            if (toks[i] < 0 || (uint32_t)toks[i] >= m->hp.n_vocab) {
                toks[i] = 0;
            }
        }
        (void)pd_ctx_eval(c, toks, 4, NULL, NULL, &err);
        st->evaluated++;
        pd_ctx_close(&c);
    }
    free(ids);
    pd_tok_close(&t);
    pd_model_close(&m);
}

static void fuzz_model(const char *arch, const char *type, int n_mut)
{
    char *dir = test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/fuzz-%s-%s.gguf", dir, arch, type);
    const char *args[] = {"--arch", arch, "--type", type, "--seed", "5", NULL};
    assert_int_equal(test_mkmodel(args, path), 0);
    size_t len = 0;
    uint8_t *orig = read_file(path, &len);
    assert_non_null(orig);
    remove(path);
    free(dir);
    struct pd_gguf *g = NULL;
    struct pd_err err;
    assert_int_equal(pd_gguf_open_mem(orig, len, "orig", &g, &err), PD_OK);
    size_t meta_end = (size_t)g->data_offset; /* header, metadata, tensor table */
    pd_gguf_close(&g);
    struct stats st = {0};
    uint8_t *m = malloc(len);
    /* Targeted: every 4-byte scalar value (u32/i32/f32 keys: dimensions, counts, ids,
     * epsilons, rope base) set to each hostile value. */
    static const uint32_t hostile[] = {0, 1, 2, 3, 7, 0x7FFFFFFFu, 0xFFFFFFFFu, 0x80000000u,
                                       65536, 0x7F800000u /* +inf */, 0x7FC00000u /* NaN */,
                                       0xFF800000u /* -inf */};
    int targeted = 0;
    assert_int_equal(pd_gguf_open_mem(orig, len, "orig", &g, &err), PD_OK);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct pd_gguf_kv *kv = &g->kv[i];
        if (kv->type != PD_GGUF_UINT32 && kv->type != PD_GGUF_INT32 &&
            kv->type != PD_GGUF_FLOAT32) {
            continue;
        }
        size_t off = (size_t)((const uint8_t *)kv->key.s - orig) + kv->key.n + 4;
        for (size_t h = 0; h < sizeof hostile / sizeof hostile[0]; h++) {
            memcpy(m, orig, len);
            memcpy(m + off, &hostile[h], 4); /* little-endian host */
            try_load(m, len, &st);
            targeted++;
        }
    }
    pd_gguf_close(&g);
    printf("%s/%s: %d targeted scalar mutants\n", arch, type, targeted);
    assert_true(targeted > 50);
    for (int k = 0; k < n_mut; k++) {
        memcpy(m, orig, len);
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits; e++) {
            /* Mostly the metadata/tables; sometimes the weights (NaN, inf, garbage). */
            size_t at = (rnd() % 8) ? (size_t)(rnd() % meta_end) : (size_t)(rnd() % len);
            static const uint8_t vals[] = {0x00, 0xFF, 0x7F, 0x80, 0x01, 0x7C, 0xFE};
            switch (rnd() % 4) {
            case 0:
                m[at] ^= (uint8_t)(1u << (rnd() % 8));
                break;
            case 1:
                m[at] = vals[rnd() % sizeof vals];
                break;
            case 2: { /* a small integer field: shift a count or dimension by a little */
                m[at] = (uint8_t)(m[at] + (int)(rnd() % 5) - 2);
                break;
            }
            default:
                m[at] = (uint8_t)rnd();
            }
        }
        try_load(m, len, &st);
    }
    printf("%s/%s: %d mutants: gguf rejected %d, model rejected %d, tokenizer rejected %d, "
           "evaluated %d\n",
           arch, type, n_mut, st.gguf_rejected, st.model_rejected, st.tok_rejected,
           st.evaluated);
    /* Both the rejection paths and the full path must have been exercised. */
    assert_true(st.model_rejected + st.tok_rejected > 0);
    assert_true(st.evaluated > 0);
    free(m);
    free(orig);
}

static void test_fuzz_llama_f32(void **state)
{
    (void)state;
    fuzz_model("llama", "f32", 1500);
}

static void test_fuzz_qwen2_q4_0(void **state)
{
    (void)state;
    fuzz_model("qwen2", "q4_0", 1500);
}

/* q5_1: the fifth bits and the q8_1 activations (offset term) of the 32-element types */
static void test_fuzz_llama_q5_1(void **state)
{
    (void)state;
    fuzz_model("llama", "q5_1", 800);
}

static void test_fuzz_qwen3_q4_k(void **state)
{
    (void)state;
    fuzz_model("qwen3", "q4_k", 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fuzz_llama_f32),
        cmocka_unit_test(test_fuzz_qwen2_q4_0),
        cmocka_unit_test(test_fuzz_llama_q5_1),
        cmocka_unit_test(test_fuzz_qwen3_q4_k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
