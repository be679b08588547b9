/* test_tokenizer.c - engine/tokenizer and engine/unicode.
 *
 * Exactness: token ids are compared with goldens made by llama.cpp (the JSON files in
 * tests/golden/tokenizer/, see tests/golden/make_tokenizer_goldens.mjs) for
 * stories260K.gguf (SPM) and for the real Qwen vocabulary (shared/tokenizers/qwen) built
 * into vocab-only GGUFs at test time with each pre-tokenizer (qwen2, llama-bpe, gpt-2,
 * default, and the deepseek-r1-qwen alias). Also: decode(encode(x)) round trips on the
 * corpus and on random input, pieces that end inside a UTF-8 sequence and the streaming
 * decoder, accessors, small hand-made vocabularies that pin merge order and byte
 * fallback, and one named test per rejected kind of corrupt tokenizer metadata.
 *
 * Data: stories260K.gguf from $PONDER_TEST_MODELS or $PONDER_SOURCE_ROOT/../shared/models;
 * the Qwen files from $PONDER_TEST_MODELS/../tokenizers/qwen or
 * $PONDER_SOURCE_ROOT/../shared/tokenizers/qwen. Tests whose data is absent are skipped
 * with a loud message, and the program then exits 77 (meson SKIP) if nothing failed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"
#include "utf8.h"
#include "gguf.h"
#include "gguf_writer.h"
#include "qwen_vocab.h"
#include "tokenizer.h"
#include "unicode.h"

static int n_skipped;
static char tmp_dir[4096];

/* ---- locating data ---- */

static bool find_file(char *out, size_t cap, const char *env, const char *rel_env,
                      const char *rel_root, const char *name)
{
    const char *dir = getenv(env);
    if (dir && dir[0]) {
        snprintf(out, cap, "%s/%s/%s", dir, rel_env, name);
        if (access(out, R_OK) == 0) {
            return true;
        }
    }
    const char *root = getenv("PONDER_SOURCE_ROOT");
    snprintf(out, cap, "%s/%s/%s", root && root[0] ? root : ".", rel_root, name);
    return access(out, R_OK) == 0;
}

static bool stories_path(char *out, size_t cap)
{
    return find_file(out, cap, "PONDER_TEST_MODELS", ".", "../shared/models",
                     "stories260K.gguf");
}

static bool qwen_dir(char *out, size_t cap)
{
    char probe[4096];
    if (!find_file(probe, sizeof probe, "PONDER_TEST_MODELS", "../tokenizers/qwen",
                   "../shared/tokenizers/qwen", "vocab.json")) {
        return false;
    }
    snprintf(out, cap, "%.*s", (int)(strlen(probe) - strlen("/vocab.json")), probe);
    return true;
}

static void skip_loudly(const char *what)
{
    fprintf(stderr, "SKIP: %s not found; this tokenizer check did not run\n", what);
    n_skipped++;
    skip();
}

static json_t *load_golden(const char *name)
{
    char path[4096];
    const char *root = getenv("PONDER_SOURCE_ROOT");
    snprintf(path, sizeof path, "%s/tests/golden/tokenizer/%s", root && root[0] ? root : ".",
             name);
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (!j) {
        print_error("%s: line %d: %s\n", path, jerr.line, jerr.text);
    }
    assert_non_null(j);
    return j;
}

static struct pd_tok *open_tok(const char *path, struct pd_gguf **g)
{
    struct pd_err err = {0};
    struct pd_tok *t = NULL;
    enum pd_status rc = pd_gguf_open(path, g, &err);
    if (rc == PD_OK) {
        rc = pd_tok_open_gguf(*g, &t, &err);
    }
    if (rc != PD_OK) {
        print_error("%s\n", err.msg);
    }
    assert_int_equal(rc, PD_OK);
    return t;
}

/* Builds the Qwen vocab GGUF with `pre` in tmp_dir and opens it; NULL (skipped) when the
 * Qwen files are absent. */
static struct pd_tok *open_qwen(const char *pre, struct pd_gguf **g)
{
    char dir[4096];
    if (!qwen_dir(dir, sizeof dir)) {
        skip_loudly("shared/tokenizers/qwen/vocab.json");
        return NULL;
    }
    char path[4096 + 64];
    snprintf(path, sizeof path, "%s/qwen-%s.gguf", tmp_dir, pre);
    struct pd_err err = {0};
    enum pd_status rc = pd_qwen_vocab_write(dir, pre, path, &err);
    if (rc != PD_OK) {
        print_error("%s\n", err.msg);
    }
    assert_int_equal(rc, PD_OK);
    struct pd_tok *t = open_tok(path, g);
    unlink(path);
    return t;
}

/* ---- golden comparison ---- */

static void print_ids(const char *label, const int32_t *ids, size_t n)
{
    print_error("  %s [", label);
    for (size_t i = 0; i < n; i++) {
        print_error("%s%d", i ? "," : "", ids[i]);
    }
    print_error("]\n");
}

static bool ids_match(const json_t *want, const int32_t *ids, size_t n, size_t skip_first)
{
    if (json_array_size(want) + skip_first != n) {
        return false;
    }
    for (size_t i = 0; i < json_array_size(want); i++) {
        if (json_integer_value(json_array_get(want, i)) != ids[i + skip_first]) {
            return false;
        }
    }
    return true;
}

/* Checks every case of golden file `name` against t; returns the number of mismatches
 * after printing each one. */
static void check_golden(const struct pd_tok *t, const char *name)
{
    json_t *doc = load_golden(name);
    json_t *cases = json_object_get(doc, "cases");
    bool add_bos = json_is_true(json_object_get(doc, "add_bos"));
    int32_t bos = (int32_t)json_integer_value(json_object_get(doc, "bos"));
    assert_true(json_array_size(cases) > 50);
    assert_int_equal(add_bos, pd_tok_add_bos(t));
    size_t bad = 0;
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *cs = json_array_get(cases, c);
        const char *text = json_string_value(json_object_get(cs, "text"));
        size_t len = json_string_length(json_object_get(cs, "text"));
        static const char *const keys[2] = {"tokens_plain", "tokens"};
        for (int special = 0; special < 2; special++) {
            json_t *want = json_object_get(cs, keys[special]);
            int32_t *ids = NULL;
            size_t n = 0;
            struct pd_err err = {0};
            assert_int_equal(pd_tok_encode(t, text, len, false, special, &ids, &n, &err), PD_OK);
            if (!ids_match(want, ids, n, 0)) {
                bad++;
                print_error("%s: case %zu (%s) differs: '%s'\n", name, c, keys[special], text);
                print_ids("ponder:  ", ids, n);
                int32_t *w = calloc(json_array_size(want) + 1, sizeof *w);
                for (size_t i = 0; i < json_array_size(want); i++) {
                    w[i] = (int32_t)json_integer_value(json_array_get(want, i));
                }
                print_ids("llama.cpp", w, json_array_size(want));
                free(w);
            }
            /* Round trip: byte-level BPE gives the text back exactly; SPM adds the
             * leading space (special tokens off, so there is one text run). */
            struct pd_buf b;
            pd_buf_init(&b);
            assert_int_equal(pd_tok_decode(t, ids, n, &b, &err), PD_OK);
            if (pd_tok_model(t) == PD_TOK_MODEL_BPE) {
                assert_int_equal(b.len, len);
                assert_memory_equal(b.len ? b.data : "", text, len);
            } else if (!special && len > 0 && !strstr(text, "\xE2\x96\x81")) {
                assert_int_equal(b.len, len + 1); /* (a literal U+2581 decodes as ' ') */
                assert_int_equal(b.data[0], ' ');
                assert_memory_equal(b.data + 1, text, len);
            }
            pd_buf_deinit(&b);
            free(ids);
            if (special && add_bos) {
                assert_int_equal(pd_tok_encode(t, text, len, true, true, &ids, &n, &err), PD_OK);
                assert_true(n >= 1);
                assert_int_equal(ids[0], bos);
                if (!ids_match(want, ids, n, 1)) {
                    bad++;
                    print_error("%s: case %zu with BOS differs\n", name, c);
                }
                free(ids);
            }
        }
    }
    json_decref(doc);
    assert_int_equal(bad, 0);
}

/* ---- unicode ---- */

static void test_unicode_classes(void **state)
{
    (void)state;
    assert_true(pd_unicode_is_letter('a'));
    assert_true(pd_unicode_is_letter(0x00E9));  /* é */
    assert_true(pd_unicode_is_letter(0x4F60));  /* 你 */
    assert_true(pd_unicode_is_letter(0x1D400)); /* mathematical bold A */
    assert_false(pd_unicode_is_letter('1'));
    assert_false(pd_unicode_is_letter(0x0301)); /* combining acute: a mark */
    assert_true(pd_unicode_class(0x0301) & PD_UNICODE_MARK);
    assert_true(pd_unicode_is_number('7'));
    assert_true(pd_unicode_is_number(0x0663)); /* Arabic-Indic three */
    assert_true(pd_unicode_is_number(0x2460)); /* circled one */
    assert_true(pd_unicode_is_number(0x216B)); /* roman numeral twelve */
    assert_true(pd_unicode_class('!') & PD_UNICODE_PUNCT);
    assert_true(pd_unicode_class('$') & PD_UNICODE_SYMBOL);
    assert_true(pd_unicode_class(0x1F389) & PD_UNICODE_SYMBOL); /* 🎉 */
    static const uint32_t spaces[] = {'\t', '\n', 0x0B, 0x0C, '\r', ' ', 0x85, 0xA0, 0x1680,
                                      0x2000, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    for (size_t i = 0; i < sizeof spaces / sizeof spaces[0]; i++) {
        assert_true(pd_unicode_is_space(spaces[i]));
    }
    assert_false(pd_unicode_is_space(0x200B)); /* zero width space is a format char */
    assert_false(pd_unicode_is_space(0x1C));
    assert_int_equal(pd_unicode_class(0x0001), 0);
    assert_int_equal(pd_unicode_class(0x0378), 0); /* unassigned */
    assert_int_equal(pd_unicode_class(0x110000), 0);
    assert_string_equal(pd_unicode_version(), "15.0.0");
}

static void test_unicode_decode_lenient(void **state)
{
    (void)state;
    uint32_t cp;
    assert_int_equal(pd_unicode_decode_lenient("A", 1, &cp), 1);
    assert_int_equal(cp, 'A');
    assert_int_equal(pd_unicode_decode_lenient("\xE2\x96\x81", 3, &cp), 3);
    assert_int_equal(cp, 0x2581);
    assert_int_equal(pd_unicode_decode_lenient("\xF0\x9F\x8E\x89", 4, &cp), 4);
    assert_int_equal(cp, 0x1F389);
    /* Overlong and surrogate forms are taken as written. */
    assert_int_equal(pd_unicode_decode_lenient("\xC0\x80", 2, &cp), 2);
    assert_int_equal(cp, 0);
    assert_int_equal(pd_unicode_decode_lenient("\xED\xA0\x80", 3, &cp), 3);
    assert_int_equal(cp, 0xD800);
    /* Everything else: one byte, U+FFFD. */
    static const char *const bad[] = {"\x80", "\xFF", "\xF8\x80\x80\x80", "\xE2\x96",
                                      "\xE2\x41\x41", "\xF5\x80\x80\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(pd_unicode_decode_lenient(bad[i], strlen(bad[i]), &cp), 1);
        assert_int_equal(cp, PD_UNICODE_REPLACEMENT);
    }
    char out[4];
    assert_int_equal(pd_unicode_encode(0xD800, out), 3);
    assert_memory_equal(out, "\xED\xA0\x80", 3);
    assert_int_equal(pd_unicode_encode(0x110000, out), 0);
}

/* ---- SPM on stories260K ---- */

static void test_spm_goldens(void **state)
{
    (void)state;
    char path[4096];
    if (!stories_path(path, sizeof path)) {
        skip_loudly("stories260K.gguf");
        return;
    }
    struct pd_gguf *g = NULL;
    struct pd_tok *t = open_tok(path, &g);
    check_golden(t, "stories260k.json");
    pd_tok_close(&t);
    pd_gguf_close(&g);
}

static void test_spm_accessors(void **state)
{
    (void)state;
    char path[4096];
    if (!stories_path(path, sizeof path)) {
        skip_loudly("stories260K.gguf");
        return;
    }
    struct pd_gguf *g = NULL;
    struct pd_tok *t = open_tok(path, &g);
    pd_gguf_close(&g); /* the tokenizer owns copies of everything */
    assert_int_equal(pd_tok_model(t), PD_TOK_MODEL_SPM);
    assert_string_equal(pd_tok_model_name(pd_tok_model(t)), "llama");
    assert_int_equal(pd_tok_pre(t), PD_TOK_PRE_NONE);
    assert_int_equal(pd_tok_n_vocab(t), 512);
    assert_int_equal(pd_tok_bos(t), 1);
    assert_int_equal(pd_tok_eos(t), 2);
    assert_int_equal(pd_tok_unk(t), 0);
    assert_int_equal(pd_tok_pad(t), -1); /* stored as 0xFFFFFFFF: none */
    assert_true(pd_tok_add_bos(t));
    assert_true(pd_tok_is_control(t, 1));
    assert_true(pd_tok_is_eog(t, 2));
    assert_false(pd_tok_is_eog(t, 1));
    assert_int_equal(pd_tok_type(t, 0), PD_TOK_TYPE_UNKNOWN);
    assert_int_equal(pd_tok_type(t, 13), PD_TOK_TYPE_BYTE);
    assert_int_equal(pd_tok_type(t, 600), PD_TOK_TYPE_UNDEFINED);
    size_t len;
    const char *p = pd_tok_piece(t, 13, &len); /* <0x0A> */
    assert_int_equal(len, 1);
    assert_int_equal(p[0], '\n');
    p = pd_tok_piece(t, 1, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(p, "<s>", 3);
    int32_t id = pd_tok_find(t, "\xE2\x96\x81" "the", 6);
    assert_true(id > 0);
    p = pd_tok_piece(t, id, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(p, " the", 4);
    p = pd_tok_text(t, id, &len);
    assert_memory_equal(p, "\xE2\x96\x81" "the", 6);
    assert_null(pd_tok_piece(t, 512, &len));
    assert_int_equal(len, 0);
    assert_null(pd_tok_piece(t, -1, &len));
    assert_int_equal(pd_tok_find(t, "no such token", 13), -1);
    /* Empty input: nothing, or BOS alone. */
    int32_t *ids;
    size_t n;
    struct pd_err err = {0};
    assert_int_equal(pd_tok_encode(t, "", 0, true, true, &ids, &n, &err), PD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 1);
    free(ids);
    /* Bytes the vocabulary cannot spell come back through <0xNN> tokens. */
    const char weird[] = "\xC3\x28 \xFF\xFE";
    assert_int_equal(pd_tok_encode(t, weird, 5, false, false, &ids, &n, &err), PD_OK);
    struct pd_buf b;
    pd_buf_init(&b);
    assert_int_equal(pd_tok_decode(t, ids, n, &b, &err), PD_OK);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, " \xC3\x28 \xFF\xFE", 6);
    pd_buf_deinit(&b);
    free(ids);
    /* Text that continues a sequence (an injection) gets no space prefix: it decodes to
     * exactly what was typed, and a leading space the user typed is kept. */
    static const char *const cont[] = {"Wait", " let me check", "x"};
    for (size_t k = 0; k < sizeof cont / sizeof cont[0]; k++) {
        assert_int_equal(pd_tok_encode_cont(t, cont[k], strlen(cont[k]), true, &ids, &n, &err),
                         PD_OK);
        pd_buf_init(&b);
        assert_int_equal(pd_tok_decode(t, ids, n, &b, &err), PD_OK);
        assert_int_equal(b.len, strlen(cont[k]));
        assert_memory_equal(b.data, cont[k], b.len);
        pd_buf_deinit(&b);
        free(ids);
    }
    int32_t bad_ids[] = {5, 512};
    pd_buf_init(&b);
    assert_int_equal(pd_tok_decode(t, bad_ids, 2, &b, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "ids[1] = 512"));
    pd_buf_deinit(&b);
    pd_tok_close(&t);
    assert_null(t);
    pd_tok_close(&t); /* NULL is fine */
}

/* ---- byte-level BPE on the Qwen vocabulary ---- */

static void golden_for_pre(const char *pre, const char *golden)
{
    struct pd_gguf *g = NULL;
    struct pd_tok *t = open_qwen(pre, &g);
    if (!t) {
        return;
    }
    check_golden(t, golden);
    pd_tok_close(&t);
    pd_gguf_close(&g);
}

static void test_qwen2_goldens(void **state)
{
    (void)state;
    golden_for_pre("qwen2", "qwen-qwen2.json");
}

static void test_deepseek_r1_qwen_is_qwen2(void **state)
{
    (void)state;
    golden_for_pre("deepseek-r1-qwen", "qwen-qwen2.json");
}

static void test_llama_bpe_goldens(void **state)
{
    (void)state;
    golden_for_pre("llama-bpe", "qwen-llama-bpe.json");
}

static void test_gpt2_goldens(void **state)
{
    (void)state;
    golden_for_pre("gpt-2", "qwen-gpt-2.json");
}

static void test_default_goldens(void **state)
{
    (void)state;
    golden_for_pre("default", "qwen-default.json");
}

static void test_qwen_accessors(void **state)
{
    (void)state;
    struct pd_gguf *g = NULL;
    struct pd_tok *t = open_qwen("qwen2", &g);
    if (!t) {
        return;
    }
    assert_int_equal(pd_tok_model(t), PD_TOK_MODEL_BPE);
    assert_int_equal(pd_tok_pre(t), PD_TOK_PRE_QWEN2);
    assert_string_equal(pd_tok_pre_name(pd_tok_pre(t)), "qwen2");
    assert_int_equal(pd_tok_n_vocab(t), PD_QWEN_VOCAB_N);
    assert_int_equal(pd_tok_bos(t), 151643);
    assert_int_equal(pd_tok_eos(t), 151645);
    assert_int_equal(pd_tok_eot(t), 151645); /* <|im_end|> found by its text */
    assert_int_equal(pd_tok_pad(t), 151643);
    assert_int_equal(pd_tok_unk(t), -1);
    assert_false(pd_tok_add_bos(t));
    assert_true(pd_tok_is_eog(t, 151643));
    assert_true(pd_tok_is_eog(t, 151645));
    assert_false(pd_tok_is_eog(t, 151644));
    assert_false(pd_tok_is_eog(t, 151667));
    assert_int_equal(pd_tok_find(t, "<think>", 7), 151667);
    assert_int_equal(pd_tok_find(t, "</think>", 8), 151668);
    assert_int_equal(pd_tok_type(t, 151667), PD_TOK_TYPE_USER_DEFINED);
    assert_true(pd_tok_is_special(t, 151667));
    assert_false(pd_tok_is_control(t, 151667));
    assert_true(pd_tok_is_control(t, 151644));
    assert_false(pd_tok_is_special(t, 279));
    size_t len;
    const char *p = pd_tok_text(t, 279, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(p, "\xC4\xA0the", 5); /* "Ġthe" */
    p = pd_tok_piece(t, 279, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(p, " the", 4);
    p = pd_tok_piece(t, 151667, &len);
    assert_int_equal(len, 7);
    assert_memory_equal(p, "<think>", 7);
    p = pd_tok_piece(t, 151700, &len); /* [PAD151700]: unused, empty */
    assert_non_null(p);
    assert_int_equal(len, 0);
    /* USER_DEFINED tokens are cut out even without parse_special; CONTROL ones not. */
    int32_t *ids;
    size_t n;
    struct pd_err err = {0};
    assert_int_equal(pd_tok_encode(t, "<think>", 7, false, false, &ids, &n, &err), PD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 151667);
    free(ids);
    assert_int_equal(pd_tok_encode(t, "<|im_end|>", 10, false, false, &ids, &n, &err), PD_OK);
    assert_true(n > 1);
    free(ids);
    assert_int_equal(pd_tok_encode(t, "<|im_end|>", 10, true, true, &ids, &n, &err), PD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 151643);
    assert_int_equal(ids[1], 151645);
    free(ids);
    /* Malformed UTF-8 is read as U+FFFD, as the reference tokenizer reads it. */
    assert_int_equal(pd_tok_encode(t, "a\xFFz", 3, false, true, &ids, &n, &err), PD_OK);
    struct pd_buf b;
    pd_buf_init(&b);
    assert_int_equal(pd_tok_decode(t, ids, n, &b, &err), PD_OK);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "a\xEF\xBF\xBDz", 5);
    pd_buf_deinit(&b);
    free(ids);
    pd_tok_close(&t);
    pd_gguf_close(&g);
}

static void test_stream_holds_back_partial_utf8(void **state)
{
    (void)state;
    struct pd_gguf *g = NULL;
    struct pd_tok *t = open_qwen("qwen2", &g);
    if (!t) {
        return;
    }
    /* "ok 👋🌍 你好" */
    const char text[] = "ok \xF0\x9F\x91\x8B\xF0\x9F\x8C\x8D \xE4\xBD\xA0\xE5\xA5\xBD";
    int32_t *ids;
    size_t n;
    struct pd_err err = {0};
    assert_int_equal(pd_tok_encode(t, text, strlen(text), false, true, &ids, &n, &err), PD_OK);
    size_t n_partial = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *p = pd_tok_piece(t, ids[i], &len);
        n_partial += !pd_utf8_valid(p, len);
    }
    assert_true(n_partial > 0); /* the emoji split into pieces that end mid-sequence */
    struct pd_tok_stream s;
    pd_tok_stream_init(&s);
    struct pd_buf out;
    pd_buf_init(&out);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(pd_tok_stream_push(&s, t, ids[i], &out, &err), PD_OK);
        assert_true(pd_utf8_valid(out.data ? out.data : "", out.len));
    }
    assert_int_equal(pd_tok_stream_flush(&s, &out, &err), PD_OK);
    assert_int_equal(out.len, strlen(text));
    assert_memory_equal(out.data, text, out.len);
    free(ids);
    /* A lone lead byte is held back, then flushed as U+FFFD. */
    out.len = 0;
    int32_t e6 = pd_tok_find(t, "\xC3\xA6", 2); /* 'æ' stands for byte 0xE6 */
    assert_true(e6 >= 0);
    assert_int_equal(pd_tok_stream_push(&s, t, e6, &out, &err), PD_OK);
    assert_int_equal(out.len, 0);
    assert_int_equal(pd_tok_stream_flush(&s, &out, &err), PD_OK);
    assert_int_equal(out.len, 3);
    assert_memory_equal(out.data, "\xEF\xBF\xBD", 3);
    /* A byte that can never start a sequence is replaced at once. */
    out.len = 0;
    int32_t ff = pd_tok_find(t, "\xC3\xBF", 2); /* 'ÿ' stands for byte 0xFF */
    assert_int_equal(pd_tok_stream_push(&s, t, ff, &out, &err), PD_OK);
    assert_int_equal(out.len, 3);
    assert_int_equal(pd_tok_stream_push(&s, t, PD_QWEN_VOCAB_N, &out, &err), PD_EINVAL);
    pd_buf_deinit(&out);
    pd_tok_stream_deinit(&s);
    pd_tok_close(&t);
    pd_gguf_close(&g);
}

/* ---- random input ---- */

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random text mixing arbitrary bytes, ASCII, multi-byte characters, white space runs and
 * special token spellings. */
static size_t random_text(uint64_t *seed, char *buf, size_t cap)
{
    static const char *const bits[] = {
        "a", "Z", "0", "7", " ", "  ", "\t", "\n", "\r\n", "'s", "'LL", "!", ".", "<", ">",
        "\xC3\xA9", "\xE4\xBD\xA0", "\xF0\x9F\x8E\x89", "\xE2\x80\x83", "\xD9\xA3", "\xCC\x81",
        "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<s>", "</s>", "<unk>",
        "\xE2\x96", "\x80", "\xFF", "\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80",
    };
    size_t n = 0;
    size_t parts = rng(seed) % 40;
    for (size_t i = 0; i < parts; i++) {
        uint64_t r = rng(seed);
        if (r % 4 == 0) {
            if (n < cap) {
                buf[n++] = (char)(r >> 8);
            }
            continue;
        }
        const char *b = bits[(r >> 8) % (sizeof bits / sizeof bits[0])];
        size_t len = strlen(b);
        if (n + len <= cap) {
            memcpy(buf + n, b, len);
            n += len;
        }
    }
    return n;
}

/* What byte-level BPE must give back: the text as the lenient decoder reads it. */
static size_t lenient_normal(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += pd_unicode_decode_lenient(s + i, n - i, &cp);
        o += pd_unicode_encode(cp, out + o);
    }
    return o;
}

static void random_roundtrips(const struct pd_tok *t, uint64_t seed)
{
    char text[512];
    char want[2048];
    struct pd_buf b;
    pd_buf_init(&b);
    for (int iter = 0; iter < 400; iter++) {
        size_t len = random_text(&seed, text, sizeof text);
        for (int special = 0; special < 2; special++) {
            int32_t *ids;
            size_t n;
            struct pd_err err = {0};
            assert_int_equal(pd_tok_encode(t, text, len, false, special, &ids, &n, &err), PD_OK);
            for (size_t i = 0; i < n; i++) {
                assert_true(ids[i] >= 0 && (uint32_t)ids[i] < pd_tok_n_vocab(t));
            }
            b.len = 0;
            assert_int_equal(pd_tok_decode(t, ids, n, &b, &err), PD_OK);
            free(ids);
            if (pd_tok_model(t) == PD_TOK_MODEL_BPE) {
                size_t wn = lenient_normal(text, len, want);
                assert_int_equal(b.len, wn);
                assert_memory_equal(b.len ? b.data : "", want, wn);
            } else if (!special && len > 0 && !memmem(text, len, "\xE2\x96\x81", 3) &&
                       pd_utf8_valid(text, len)) {
                /* SPM: exact for valid UTF-8. (Malformed input can swallow part of an
                 * escaped space into a byte-fallback unit, as in the reference.) */
                assert_int_equal(b.len, len + 1);
                assert_memory_equal(b.data + 1, text, len);
            }
        }
    }
    pd_buf_deinit(&b);
}

static void test_random_input_roundtrips(void **state)
{
    (void)state;
    char path[4096];
    if (stories_path(path, sizeof path)) {
        struct pd_gguf *g = NULL;
        struct pd_tok *t = open_tok(path, &g);
        random_roundtrips(t, 0x9E3779B97F4A7C15ull);
        pd_tok_close(&t);
        pd_gguf_close(&g);
    }
    static const char *const pres[] = {"qwen2", "llama-bpe", "gpt-2", "default"};
    for (size_t i = 0; i < sizeof pres / sizeof pres[0]; i++) {
        struct pd_gguf *g = NULL;
        struct pd_tok *t = open_qwen(pres[i], &g);
        if (!t) {
            return;
        }
        random_roundtrips(t, 0xD1B54A32D192ED03ull + i);
        pd_tok_close(&t);
        pd_gguf_close(&g);
    }
    if (!stories_path(path, sizeof path)) {
        skip_loudly("stories260K.gguf");
    }
}

/* ---- hand-made vocabularies ---- */

struct tiny {
    const char *model;               /* NULL: no tokenizer.ggml.model */
    const char *pre;                 /* NULL: no pre */
    const char *const *tokens;       /* NULL: no tokens array */
    size_t n_tokens;
    const int32_t *types;            /* NULL: none */
    size_t n_types;
    const float *scores;             /* NULL: none */
    size_t n_scores;
    const char *const *merges;       /* NULL: none */
    size_t n_merges;
    int64_t bos;                     /* < 0: no key */
    int add_bos;                     /* -1: no key */
    bool types_as_u8;                /* write token_type with the wrong element type */
};

static enum pd_status open_tiny(const struct tiny *d, struct pd_gguf **g, struct pd_tok **t,
                                void **mem, struct pd_err *err)
{
    struct pd_gguf_writer *w = NULL;
    assert_int_equal(pd_gguf_writer_open(&w, err), PD_OK);
    assert_int_equal(pd_gguf_writer_add_str(w, "general.architecture", "llama", err), PD_OK);
    if (d->model) {
        assert_int_equal(pd_gguf_writer_add_str(w, "tokenizer.ggml.model", d->model, err), PD_OK);
    }
    if (d->pre) {
        assert_int_equal(pd_gguf_writer_add_str(w, "tokenizer.ggml.pre", d->pre, err), PD_OK);
    }
    if (d->tokens) {
        assert_int_equal(pd_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", d->tokens, NULL,
                                                    d->n_tokens, err),
                         PD_OK);
    }
    if (d->types && d->types_as_u8) {
        uint8_t u[16];
        for (size_t i = 0; i < d->n_types; i++) {
            u[i] = (uint8_t)d->types[i];
        }
        assert_int_equal(pd_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", PD_GGUF_UINT8, u,
                                                d->n_types, err),
                         PD_OK);
    } else if (d->types) {
        assert_int_equal(pd_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", PD_GGUF_INT32,
                                                d->types, d->n_types, err),
                         PD_OK);
    }
    if (d->scores) {
        assert_int_equal(pd_gguf_writer_add_arr(w, "tokenizer.ggml.scores", PD_GGUF_FLOAT32,
                                                d->scores, d->n_scores, err),
                         PD_OK);
    }
    if (d->merges) {
        assert_int_equal(pd_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", d->merges, NULL,
                                                    d->n_merges, err),
                         PD_OK);
    }
    if (d->bos >= 0) {
        assert_int_equal(pd_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id",
                                                (uint32_t)d->bos, err),
                         PD_OK);
    }
    if (d->add_bos >= 0) {
        assert_int_equal(pd_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token",
                                                 d->add_bos != 0, err),
                         PD_OK);
    }
    size_t len;
    assert_int_equal(pd_gguf_writer_write_mem(w, mem, &len, err), PD_OK);
    pd_gguf_writer_close(&w);
    assert_int_equal(pd_gguf_open_mem(*mem, len, "tiny.gguf", g, err), PD_OK);
    return pd_tok_open_gguf(*g, t, err);
}

static void encode_expect(const struct pd_tok *t, const char *text, bool special,
                          const int32_t *want, size_t n_want)
{
    int32_t *ids;
    size_t n;
    struct pd_err err = {0};
    assert_int_equal(pd_tok_encode(t, text, strlen(text), false, special, &ids, &n, &err), PD_OK);
    if (n != n_want || (n && memcmp(ids, want, n * sizeof *ids) != 0)) {
        print_error("'%s':\n", text);
        print_ids("got ", ids, n);
        print_ids("want", want, n_want);
    }
    assert_int_equal(n, n_want);
    assert_memory_equal(ids, want, n * sizeof *ids);
    free(ids);
}

static const char *const bpe_tokens[] = {"a", "b", "c", "ab", "bc", "abc", "<|end|>", "\xC4\xA0"};
static const int32_t bpe_types[] = {1, 1, 1, 1, 1, 1, 3, 1};

static void test_bpe_merge_order(void **state)
{
    (void)state;
    /* Rank decides, not position: "b c" (rank 0) beats "a b" (rank 1). */
    static const char *const m1[] = {"b c", "a b"};
    struct tiny d = {"gpt2", "gpt-2", bpe_tokens, 6, bpe_types, 6, NULL, 0, m1, 2, -1, -1, false};
    struct pd_gguf *g = NULL;
    struct pd_tok *t = NULL;
    void *mem = NULL;
    struct pd_err err = {0};
    assert_int_equal(open_tiny(&d, &g, &t, &mem, &err), PD_OK);
    encode_expect(t, "abc", true, (const int32_t[]){0, 4}, 2);
    encode_expect(t, "abab", true, (const int32_t[]){3, 3}, 2);
    pd_tok_close(&t);
    pd_gguf_close(&g);
    free(mem);
    /* Swapped ranks, and a second-level merge to the whole word. */
    static const char *const m2[] = {"a b", "b c", "ab c"};
    d.merges = m2;
    d.n_merges = 3;
    assert_int_equal(open_tiny(&d, &g, &t, &mem, &err), PD_OK);
    encode_expect(t, "abc", true, (const int32_t[]){5}, 1);
    encode_expect(t, "cab", true, (const int32_t[]){2, 3}, 2);
    encode_expect(t, "bcab", true, (const int32_t[]){4, 3}, 2);
    pd_tok_close(&t);
    pd_gguf_close(&g);
    free(mem);
    /* Special tokens inline, and the default BOS absent for gpt2 vocabularies. */
    d.n_tokens = d.n_types = 8;
    assert_int_equal(open_tiny(&d, &g, &t, &mem, &err), PD_OK);
    encode_expect(t, "ab<|end|>c", true, (const int32_t[]){3, 6, 2}, 3);
    assert_int_equal(pd_tok_bos(t), -1);
    assert_true(pd_tok_is_eog(t, 6)); /* "<|end|>" ends a turn */
    int32_t *ids;
    size_t n;
    assert_int_equal(pd_tok_encode(t, "a", 1, true, true, &ids, &n, &err), PD_EINVAL);
    assert_null(ids);
    pd_tok_close(&t);
    pd_gguf_close(&g);
    free(mem);
}

static void test_spm_merge_order_and_bytes(void **state)
{
    (void)state;
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "<0x41>", "\xE2\x96\x81",
                                       "a", "b", "ab", "ba", "\xE2\x96\x81\x61"};
    static const int32_t types[] = {2, 3, 3, 6, 1, 1, 1, 1, 1, 1};
    float scores[] = {0, 0, 0, 0, -1, -2, -2, -5, -5, -9};
    struct tiny d = {"llama", NULL, toks, 10, types, 10, scores, 10, NULL, 0, -1, -1, false};
    struct pd_gguf *g = NULL;
    struct pd_tok *t = NULL;
    void *mem = NULL;
    struct pd_err err = {0};
    /* Equal scores: the leftmost pair merges first ("ab" before "ba"); "▁a" scores lowest
     * so it loses to "ab". */
    assert_int_equal(open_tiny(&d, &g, &t, &mem, &err), PD_OK);
    encode_expect(t, "aba", false, (const int32_t[]){4, 7, 5}, 3);
    /* Bytes without a token fall back to <0xNN>. */
    encode_expect(t, "bA", false, (const int32_t[]){4, 6, 3}, 3);
    /* Each text run after a special token gets its own leading space. */
    encode_expect(t, "a</s>b", true, (const int32_t[]){9, 2, 4, 6}, 4);
    int32_t *ids;
    size_t n;
    assert_int_equal(pd_tok_encode(t, "aZ", 2, false, false, &ids, &n, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "<0x5A>"));
    pd_tok_close(&t);
    pd_gguf_close(&g);
    free(mem);
    /* A higher score wins over position. */
    scores[8] = -4;
    assert_int_equal(open_tiny(&d, &g, &t, &mem, &err), PD_OK);
    encode_expect(t, "aba", false, (const int32_t[]){9, 8}, 2);
    pd_tok_close(&t);
    pd_gguf_close(&g);
    free(mem);
}

/* ---- corrupt metadata: one named case each ---- */

struct corrupt_case {
    const char *name;
    struct tiny d;
    enum pd_status status;
    const char *msg; /* substring of the error message */
};

static const char *const dup_tokens[] = {"a", "b", "a"};
static const char *const byte_bad[] = {"<unk>", "<0xZZ>"};
static const int32_t byte_bad_types[] = {2, 6};
static const int32_t bad_types[] = {1, 1, 9};
static const float nan_scores[] = {0, NAN, 0};
static const char *const merges_unknown[] = {"a b", "a z"};
static const char *const merges_nospace[] = {"ab"};
static const char *const merges_noresult[] = {"c a"};
static const float three_scores[] = {0, 0, 0};

static const struct corrupt_case corrupt_cases[] = {
    {"missing tokens array",
     {"gpt2", "qwen2", NULL, 0, NULL, 0, NULL, 0, bpe_tokens, 0, -1, -1, false},
     PD_EFORMAT, "tokenizer.ggml.tokens: missing"},
    {"missing model",
     {NULL, NULL, bpe_tokens, 6, NULL, 0, NULL, 0, NULL, 0, -1, -1, false},
     PD_EFORMAT, "tokenizer.ggml.model: missing"},
    {"unknown model",
     {"bert", NULL, bpe_tokens, 6, NULL, 0, NULL, 0, NULL, 0, -1, -1, false},
     PD_EUNSUPPORTED, "tokenizer.ggml.model: 'bert' is not supported"},
    {"unknown pre-tokenizer",
     {"gpt2", "klingon", bpe_tokens, 6, NULL, 0, NULL, 0, NULL, 0, -1, -1, false},
     PD_EUNSUPPORTED, "tokenizer.ggml.pre: 'klingon' is not supported"},
    {"scores length mismatch",
     {"llama", NULL, bpe_tokens, 4, NULL, 0, three_scores, 3, NULL, 0, -1, -1, false},
     PD_EFORMAT, "tokenizer.ggml.scores: 3 scores for 4 tokens"},
    {"NaN score",
     {"llama", NULL, bpe_tokens, 3, NULL, 0, nan_scores, 3, NULL, 0, -1, -1, false},
     PD_EFORMAT, "tokenizer.ggml.scores[1]: NaN"},
    {"token types length mismatch",
     {"gpt2", NULL, bpe_tokens, 6, bpe_types, 5, NULL, 0, NULL, 0, -1, -1, false},
     PD_EFORMAT, "tokenizer.ggml.token_type: 5 types for 6 tokens"},
    {"token type out of range",
     {"gpt2", NULL, bpe_tokens, 3, bad_types, 3, NULL, 0, NULL, 0, -1, -1, false},
     PD_EFORMAT, "tokenizer.ggml.token_type[2]: 9 is not a token type"},
    {"token types of the wrong element type",
     {"gpt2", NULL, bpe_tokens, 6, bpe_types, 6, NULL, 0, NULL, 0, -1, -1, true},
     PD_EFORMAT, "tokenizer.ggml.token_type: expected an array of int32"},
    {"duplicate token",
     {"gpt2", NULL, dup_tokens, 3, NULL, 0, NULL, 0, NULL, 0, -1, -1, false},
     PD_EFORMAT, "tokenizer.ggml.tokens[2]: 'a' duplicates token 0"},
    {"malformed byte token",
     {"llama", NULL, byte_bad, 2, byte_bad_types, 2, NULL, 0, NULL, 0, -1, -1, false},
     PD_EFORMAT, "tokenizer.ggml.tokens[1]: byte token '<0xZZ>' is not <0xNN>"},
    {"missing merges",
     {"gpt2", "qwen2", bpe_tokens, 6, NULL, 0, NULL, 0, NULL, 0, -1, -1, false},
     PD_EFORMAT, "tokenizer.ggml.merges: missing"},
    {"merge naming an unknown token",
     {"gpt2", NULL, bpe_tokens, 6, NULL, 0, NULL, 0, merges_unknown, 2, -1, -1, false},
     PD_EFORMAT, "tokenizer.ggml.merges[1]: 'a z': 'z' is not a token"},
    {"merge without a space",
     {"gpt2", NULL, bpe_tokens, 6, NULL, 0, NULL, 0, merges_nospace, 1, -1, -1, false},
     PD_EFORMAT, "tokenizer.ggml.merges[0]: 'ab' is not 'left right'"},
    {"merge whose result is not a token",
     {"gpt2", NULL, bpe_tokens, 6, NULL, 0, NULL, 0, merges_noresult, 1, -1, -1, false},
     PD_EFORMAT, "tokenizer.ggml.merges[0]: 'c a': the merged text is not a token"},
    {"bos id out of range",
     {"gpt2", NULL, bpe_tokens, 6, NULL, 0, NULL, 0, merges_nospace, 0, 99, -1, false},
     PD_EFORMAT, "tokenizer.ggml.bos_token_id: 99 is out of range (the vocabulary has 6"},
    {"add_bos_token without a BOS token",
     {"gpt2", NULL, bpe_tokens, 6, NULL, 0, NULL, 0, merges_nospace, 0, -1, 1, false},
     PD_EFORMAT, "tokenizer.ggml.add_bos_token is true but there is no BOS token"},
};

static void test_corrupt_metadata(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof corrupt_cases / sizeof corrupt_cases[0]; i++) {
        const struct corrupt_case *c = &corrupt_cases[i];
        struct pd_gguf *g = NULL;
        struct pd_tok *t = NULL;
        void *mem = NULL;
        struct pd_err err = {0};
        enum pd_status rc = open_tiny(&c->d, &g, &t, &mem, &err);
        if (rc != c->status || !strstr(err.msg, c->msg)) {
            print_error("case '%s': status %d, message '%s'\n  expected %d, '%s'\n", c->name,
                        rc, err.msg, c->status, c->msg);
        }
        assert_int_equal(rc, c->status);
        assert_non_null(strstr(err.msg, c->msg));
        assert_non_null(strstr(err.msg, "tiny.gguf"));
        assert_null(t);
        pd_gguf_close(&g);
        free(mem);
    }
}

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/ponder-tok-XXXXXX", base && base[0] ? base : "/tmp");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rmdir(tmp_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unicode_classes),
        cmocka_unit_test(test_unicode_decode_lenient),
        cmocka_unit_test(test_bpe_merge_order),
        cmocka_unit_test(test_spm_merge_order_and_bytes),
        cmocka_unit_test(test_corrupt_metadata),
        cmocka_unit_test(test_spm_goldens),
        cmocka_unit_test(test_spm_accessors),
        cmocka_unit_test(test_qwen2_goldens),
        cmocka_unit_test(test_deepseek_r1_qwen_is_qwen2),
        cmocka_unit_test(test_llama_bpe_goldens),
        cmocka_unit_test(test_gpt2_goldens),
        cmocka_unit_test(test_default_goldens),
        cmocka_unit_test(test_qwen_accessors),
        cmocka_unit_test(test_stream_holds_back_partial_utf8),
        cmocka_unit_test(test_random_input_roundtrips),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    if (rc == 0 && n_skipped > 0) {
        fprintf(stderr, "SKIP: %d tokenizer test(s) lacked their data (see above)\n", n_skipped);
        return 77;
    }
    return rc;
}
