/* mkmodel.c - writes tiny random-weight GGUF models for tests and golden files.
 *
 *   mkmodel --arch llama|qwen2|qwen3 --type f32|f16|bf16|q8_0|q4_0|q5_0|q4_1|q5_1|q4_k|q5_k|
 *                                          q6_k|q4_k_m
 *           [--seed N] [--vocab spm|bpe] [--shape tiny|bench|1b|8b|1.5b] [--vocab-from GGUF]
 *           [--chat-template deepseek-r1|qwen3|chatml] [--rope-freqs 1] --out FILE
 *
 * The same arguments always give the same bytes. Shapes are small but exercise every
 * feature of the architecture: GQA (n_head 4, n_head_kv 2), q/k/v biases for qwen2, per-head
 * q/k norms and a head size different from n_embd/n_head for qwen3, untied output for
 * llama and tied for qwen. Matrices use the requested type (K-quants need rows of 256, so
 * those models are 256 wide); norms and biases stay f32 as in real files.
 * Vocabulary: a small SentencePiece-style vocab (byte pieces + words) for llama and a
 * byte-level BPE vocab with merges and Qwen-style special tokens for qwen.
 * --vocab-from copies every tokenizer.* key of another GGUF (e.g. the real Qwen vocabulary
 * written by mkqwenvocab) instead. --chat-template stores a short template text carrying
 * the markers ponder's detector keys on (engine/chat.h), so templated generation paths
 * can be exercised end to end.
 * --type q4_k_m mixes q4_K and q6_K matrices as llama.cpp's Q4_K_M files do (matrix_type).
 * --rope-freqs 1 adds a rope_freqs.weight tensor (llama only, as in Llama 3.1 files).
 * --shape bench makes a larger model with a realistic head size (n_embd 512, 8 heads of
 * 64, 2 KV heads, ffn 1536, 8 layers) for `ponder bench`; --shape 1b one of Llama-3.2-1B's
 * layer shapes (n_embd 2048, 32 heads of 64, 8 KV heads, ffn 8192, 16 layers; ~0.55 GB in
 * q4_k) for the memory-bound decode figures. Both declare a 4096-token context (tiny: 512).
 * --shape 8b and --shape 1.5b make models of real sizes for the GPU benchmarks
 * (tests/gpu/check.sh): Llama-3-8B's shapes (4096 wide, 32 layers of 32 query and 8 KV
 * heads of 128, ffn 14336, vocabulary 128256) and Qwen2-1.5B's (1536 wide, 28 layers of 12
 * and 2 heads of 128, ffn 8960, vocabulary 151936), with a 32768-token context. They are
 * written fast: random blocks straight in the type's layout (scales chosen for the usual
 * 1/sqrt(width) magnitudes) instead of quantising random floats, and the vocabulary padded
 * with synthetic tokens. Only their speed matters, not their text.
 * --name TEXT sets general.name (any bytes, for tests of how ponder prints it).
 * --constant PIECE (llama only) makes a model whose greedy choice is always the token
 * PIECE, whatever the context: every token has the same embedding u, the attention and
 * feed-forward outputs are zero (the residual stream stays u), and only PIECE's output row
 * is non-zero (u scaled), so its logit is positive and every other logit is 0. Tests use
 * it to drive the thinking controller with a known token stream. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "dtype.h"
#include "half.h"
#include "gguf_writer.h"

struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-a, a). */
static float rng_uniform(struct rng *r, float a)
{
    return (float)((double)(rng_next(r) >> 11) / 9007199254740992.0 * 2.0 - 1.0) * a;
}

struct spec {
    const char *name;
    const char *constant;
    int rope_freqs;
    const char *vocab_from;
    const char *chat_template;
    const char *arch;
    enum pd_dtype type;
    uint64_t seed;
    int bpe;
    uint32_t n_embd, n_ff, n_head, n_head_kv, head_dim, n_layer;
    uint32_t n_ctx_train;
    int big;              /* real-size shape: fast random blocks */
    uint64_t n_vocab_pad; /* pad the vocabulary to this many tokens (0: none) */
    float rope_base;      /* 0: the architecture's usual */
    int q4_k_m;           /* --type q4_k_m: q4_K with llama.cpp's Q4_K_M choice of q6_K */
};

/* The type of a weight matrix: sp->type, except in a q4_k_m model, which keeps (as
 * llama.cpp's Q4_K_M files do) the output matrix (or the embedding it is tied to) in
 * q6_K, and attn_v and ffn_down in q6_K in the first and last eighth of the layers and in
 * every third layer between. role: "output", "attn_v", "ffn_down" or NULL. */
static enum pd_dtype matrix_type(const struct spec *sp, const char *role, uint32_t il)
{
    if (!sp->q4_k_m || !role) {
        return sp->type;
    }
    if (strcmp(role, "output") == 0) {
        return PD_DTYPE_Q6_K;
    }
    uint32_t n = sp->n_layer;
    bool more = il < n / 8 || il >= 7 * n / 8 || (il - n / 8) % 3 == 2;
    return more ? PD_DTYPE_Q6_K : sp->type;
}

/* ---- vocabularies -------------------------------------------------------------------- */

static const char *const words[] = {
    "the", "a", "and", "to", "of", "in", "is", "it", "that", "was", "he", "she", "for", "on",
    "with", "as", "his", "her", "they", "at", "be", "this", "have", "from", "or", "one", "had",
    "by", "but", "not", "what", "all", "were", "we", "when", "your", "can", "said", "there",
    "use", "an", "each", "which", "do", "how", "their", "if", "will", "up", "other", "about",
    "out", "many", "then", "them", "these", "so", "some", "would", "make", "like", "him",
    "into", "time", "has", "look", "two", "more", "write", "go", "see", "number", "no", "way",
    "could", "people", "my", "than", "first", "water", "been", "call", "who", "its", "now",
    "find", "long", "down", "day", "did", "get", "come", "made", "may", "part", "think",
    "answer", "wait", "so", "therefore"};

struct vocab {
    char **tok;
    float *score;
    int32_t *type;
    size_t n, cap;
    char **merges;
    size_t n_merges, cap_merges;
};

static void vocab_add(struct vocab *v, const char *s, float score, int32_t type)
{
    for (size_t i = 0; i < v->n; i++) {
        if (strcmp(v->tok[i], s) == 0) {
            return;
        }
    }
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 512;
        v->tok = realloc(v->tok, v->cap * sizeof *v->tok);
        v->score = realloc(v->score, v->cap * sizeof *v->score);
        v->type = realloc(v->type, v->cap * sizeof *v->type);
    }
    v->tok[v->n] = pd_strdup(s);
    v->score[v->n] = score;
    v->type[v->n] = type;
    v->n++;
}

static void vocab_merge(struct vocab *v, const char *a, const char *b)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s %s", a, b);
    if (v->n_merges == v->cap_merges) {
        v->cap_merges = v->cap_merges ? v->cap_merges * 2 : 256;
        v->merges = realloc(v->merges, v->cap_merges * sizeof *v->merges);
    }
    v->merges[v->n_merges++] = pd_strdup(buf);
    snprintf(buf, sizeof buf, "%s%s", a, b);
    vocab_add(v, buf, 0.0f, 1);
}

/* GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte. */
static void build_spm(struct vocab *v)
{
    vocab_add(v, "<unk>", 0.0f, 2);
    vocab_add(v, "<s>", 0.0f, 3);
    vocab_add(v, "</s>", 0.0f, 3);
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        vocab_add(v, s, 0.0f, 6);
    }
    /* single characters, then whole words with the word-start marker U+2581 */
    const char *chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\"";
    float score = -1.0f;
    vocab_add(v, "\xE2\x96\x81", score, 1);
    for (const char *c = chars; *c; c++) {
        char s[2] = {*c, 0};
        vocab_add(v, s, score -= 0.01f, 1);
    }
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        char s[64];
        snprintf(s, sizeof s, "\xE2\x96\x81%s", words[i]);
        vocab_add(v, s, score -= 0.01f, 1);
        if (strlen(words[i]) > 3) {
            vocab_add(v, words[i] + 1, score -= 0.01f, 1); /* a suffix piece */
        }
    }
}

/* The GPT-2 byte alphabet: printable bytes map to themselves, the rest to U+0100.. */
static void byte_char(int b, char *out)
{
    int cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
        cp = b;
    } else {
        int n = 0;
        for (int x = 0; x < b; x++) {
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) {
                n++;
            }
        }
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

static void build_bpe(struct vocab *v)
{
    for (int b = 0; b < 256; b++) {
        char s[4];
        byte_char(b, s);
        vocab_add(v, s, 0.0f, 1);
    }
    /* Merges that build "Ġ" + word for the word list, letter by letter. */
    char sp[4];
    byte_char(' ', sp);
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        char acc[64];
        snprintf(acc, sizeof acc, "%s", sp);
        for (const char *c = words[i]; *c; c++) {
            char ch[2] = {*c, 0};
            char prev[64];
            snprintf(prev, sizeof prev, "%s", acc);
            vocab_merge(v, prev, ch);
            snprintf(acc, sizeof acc, "%s%s", prev, ch);
        }
    }
    static const char *const specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>",
                                           "<think>", "</think>"};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
        vocab_add(v, specials[i], 0.0f, i < 3 ? 3 : 4);
    }
}

static size_t vocab_find(const struct vocab *v, const char *s)
{
    for (size_t i = 0; i < v->n; i++) {
        if (strcmp(v->tok[i], s) == 0) {
            return i;
        }
    }
    return (size_t)-1;
}

/* Appends synthetic tokens "<|pNNNNNNN|>" (all distinct, so no duplicate scan) until the
 * vocabulary holds n tokens. */
static void vocab_pad(struct vocab *v, uint64_t n)
{
    if (v->n >= n) {
        return;
    }
    char **tok = realloc(v->tok, n * sizeof *tok);
    float *score = realloc(v->score, n * sizeof *score);
    int32_t *type = realloc(v->type, n * sizeof *type);
    if (tok) {
        v->tok = tok;
    }
    if (score) {
        v->score = score;
    }
    if (type) {
        v->type = type;
    }
    if (!tok || !score || !type) {
        return;
    }
    v->cap = n;
    while (v->n < n) {
        char buf[32];
        snprintf(buf, sizeof buf, "<|p%07zu|>", v->n);
        v->tok[v->n] = pd_strdup(buf);
        v->score[v->n] = -1000.0f;
        v->type[v->n] = 1;
        v->n++;
    }
}

/* ---- tensors ------------------------------------------------------------------------- */

static uint16_t rnd_f16(float v)
{
    return pd_f32_to_f16(v);
}

/* n elements of type t as random valid blocks whose values have magnitude about scale,
 * written straight in the type's layout (the real-size shapes: no quantiser search). */
static void fill_fast(struct rng *r, enum pd_dtype t, uint8_t *dst, uint64_t n, float scale)
{
    const struct pd_dtype_traits *tr = pd_dtype_traits(t);
    uint64_t nb = n / tr->block_size;
    for (uint64_t b = 0; b < nb; b++) {
        uint8_t *p = dst + b * tr->type_size;
        uint64_t bits = 0;
        for (uint32_t i = 0; i < tr->type_size; i++) {
            if (i % 8 == 0) {
                bits = rng_next(r);
            }
            p[i] = (uint8_t)(bits >> (8 * (i % 8)));
        }
        uint16_t h;
        switch (t) {
        case PD_DTYPE_F32: {
            float f = rng_uniform(r, scale);
            memcpy(p, &f, 4);
            break;
        }
        case PD_DTYPE_F16:
            h = rnd_f16(rng_uniform(r, scale));
            memcpy(p, &h, 2);
            break;
        case PD_DTYPE_BF16:
            h = pd_f32_to_bf16(rng_uniform(r, scale));
            memcpy(p, &h, 2);
            break;
        case PD_DTYPE_Q8_0:
            h = rnd_f16(scale / 127.0f);
            memcpy(p, &h, 2);
            break;
        case PD_DTYPE_Q4_0:
            h = rnd_f16(scale / 8.0f);
            memcpy(p, &h, 2);
            break;
        case PD_DTYPE_Q5_0:
            h = rnd_f16(scale / 16.0f);
            memcpy(p, &h, 2);
            break;
        case PD_DTYPE_Q4_1: /* c * d + m, c 0..15 (0..31): centred on 0 */
        case PD_DTYPE_Q5_1:
            h = rnd_f16(scale / (t == PD_DTYPE_Q4_1 ? 7.5f : 15.5f));
            memcpy(p, &h, 2);
            h = rnd_f16(-scale);
            memcpy(p + 2, &h, 2);
            break;
        case PD_DTYPE_Q4_K: /* d*sc*q - dmin*m, q 0..15, sc and m 0..63: centred on 0 */
        case PD_DTYPE_Q5_K: /* q 0..31 */
            h = rnd_f16(scale / (t == PD_DTYPE_Q4_K ? 472.0f : 976.0f));
            memcpy(p, &h, 2);
            h = rnd_f16(scale / 63.0f);
            memcpy(p + 2, &h, 2);
            break;
        case PD_DTYPE_Q6_K: /* d*sc*(q-32), sc -128..127 */
            h = rnd_f16(scale / 2048.0f);
            memcpy(p + 208, &h, 2);
            break;
        default:
            break;
        }
    }
}

static int add_matrix_fast(struct pd_gguf_writer *w, struct rng *r, const char *name,
                           uint64_t cols, uint64_t rows, enum pd_dtype type, float scale)
{
    uint64_t rb = pd_dtype_row_size(type, cols);
    uint8_t *d = malloc(rb * rows);
    if (!d) {
        fprintf(stderr, "mkmodel: out of memory (%s)\n", name);
        return -1;
    }
    fill_fast(r, type, d, cols * rows, scale);
    uint64_t ne[2] = {cols, rows};
    struct pd_err err;
    enum pd_status st = pd_gguf_writer_add_tensor(w, name, rows > 1 ? 2 : 1, ne, type, d,
                                                  rb * rows, &err);
    free(d);
    if (st) {
        fprintf(stderr, "mkmodel: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int g_big; /* the real-size shapes (fast random blocks) */

static int add_matrix(struct pd_gguf_writer *w, struct rng *r, const char *name, uint64_t cols,
                      uint64_t rows, enum pd_dtype type, float scale)
{
    if (g_big) {
        return add_matrix_fast(w, r, name, cols, rows, type, scale);
    }
    float *d = malloc(cols * rows * sizeof *d);
    for (uint64_t i = 0; i < cols * rows; i++) {
        d[i] = rng_uniform(r, scale);
    }
    uint64_t ne[2] = {cols, rows};
    struct pd_err err;
    enum pd_status st = pd_gguf_writer_add_tensor_f32(w, name, rows > 1 ? 2 : 1, ne, type, d,
                                                      &err);
    free(d);
    if (st) {
        fprintf(stderr, "mkmodel: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int add_vector(struct pd_gguf_writer *w, struct rng *r, const char *name, uint64_t n,
                      float center, float spread)
{
    float *d = malloc(n * sizeof *d);
    for (uint64_t i = 0; i < n; i++) {
        d[i] = center + rng_uniform(r, spread);
    }
    uint64_t ne[1] = {n};
    struct pd_err err;
    enum pd_status st = pd_gguf_writer_add_tensor_f32(w, name, 1, ne, PD_DTYPE_F32, d, &err);
    free(d);
    if (st) {
        fprintf(stderr, "mkmodel: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* Fills a matrix with zeros (constant models: outputs that must not disturb the stream). */
static int add_zeros(struct pd_gguf_writer *w, const char *name, uint64_t cols, uint64_t rows,
                     enum pd_dtype type, struct pd_err *err)
{
    float *d = calloc(cols * rows, sizeof *d);
    uint64_t ne[2] = {cols, rows};
    enum pd_status st = d ? pd_gguf_writer_add_tensor_f32(w, name, 2, ne, type, d, err)
                          : PD_ENOMEM;
    free(d);
    return st ? -1 : 0;
}

struct spec;
static int add_constant(struct pd_gguf_writer *w, struct rng *r, const struct spec *sp,
                        uint64_t n_vocab, size_t x, struct pd_err *err);

#define CHECK(x)                                  \
    do {                                          \
        if ((x) != 0) {                           \
            goto fail;                            \
        }                                         \
    } while (0)

/* Copies every key of g that starts with prefix into w. */
static int copy_keys(struct pd_gguf_writer *w, const struct pd_gguf *g, const char *prefix,
                     struct pd_err *err)
{
    size_t pl = strlen(prefix);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct pd_gguf_kv *kv = &g->kv[i];
        if (kv->key.n < pl || memcmp(kv->key.s, prefix, pl) != 0) {
            continue;
        }
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.n, kv->key.s);
        enum pd_status st = PD_OK;
        switch (kv->type) {
        case PD_GGUF_UINT8:
        case PD_GGUF_UINT16:
        case PD_GGUF_UINT32:
            st = pd_gguf_writer_add_u32(w, key, (uint32_t)kv->v.u, err);
            break;
        case PD_GGUF_UINT64:
            st = pd_gguf_writer_add_u64(w, key, kv->v.u, err);
            break;
        case PD_GGUF_INT8:
        case PD_GGUF_INT16:
        case PD_GGUF_INT32:
            st = pd_gguf_writer_add_i32(w, key, (int32_t)kv->v.i, err);
            break;
        case PD_GGUF_INT64:
            st = pd_gguf_writer_add_i64(w, key, kv->v.i, err);
            break;
        case PD_GGUF_FLOAT32:
            st = pd_gguf_writer_add_f32(w, key, (float)kv->v.f, err);
            break;
        case PD_GGUF_FLOAT64:
            st = pd_gguf_writer_add_f64(w, key, kv->v.f, err);
            break;
        case PD_GGUF_BOOL:
            st = pd_gguf_writer_add_bool(w, key, kv->v.u != 0, err);
            break;
        case PD_GGUF_STRING:
            st = pd_gguf_writer_add_str_n(w, key, kv->v.str.s, kv->v.str.n, err);
            break;
        case PD_GGUF_ARRAY:
            if (kv->v.arr.elem == PD_GGUF_STRING) {
                size_t n = kv->v.arr.n;
                const char **strs = malloc((n ? n : 1) * sizeof *strs);
                size_t *lens = malloc((n ? n : 1) * sizeof *lens);
                for (size_t k = 0; strs && lens && k < n; k++) {
                    strs[k] = kv->v.arr.strs[k].s;
                    lens[k] = kv->v.arr.strs[k].n;
                }
                st = strs && lens ? pd_gguf_writer_add_arr_str(w, key, strs, lens, n, err)
                                  : PD_ENOMEM;
                free(strs);
                free(lens);
            } else {
                /* little-endian host: the raw elements are the C values */
                st = pd_gguf_writer_add_arr(w, key, kv->v.arr.elem, kv->v.arr.data,
                                            kv->v.arr.n, err);
            }
            break;
        default:
            break;
        }
        if (st) {
            return -1;
        }
    }
    return 0;
}

/* Short template texts with the markers the detector looks for (not full templates). */
static const char *template_text(const char *name)
{
    if (strcmp(name, "deepseek-r1") == 0) {
        return "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
               "{{ '<\xEF\xBD\x9CUser\xEF\xBD\x9C>' + m['content'] }}{% endif %}{% endfor %}"
               "{% if add_generation_prompt %}"
               "{{ '<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C><think>\\n' }}{% endif %}";
    }
    if (strcmp(name, "qwen3") == 0) {
        return "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
               "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
               "{{ '<|im_start|>assistant\\n' }}{% if enable_thinking is defined and "
               "enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
               "{% endif %}";
    }
    if (strcmp(name, "chatml") == 0) {
        return "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
               "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
               "{{ '<|im_start|>assistant\\n' }}{% endif %}";
    }
    return NULL;
}

static int build(const struct spec *sp, const char *out)
{
    struct pd_err err;
    struct pd_gguf_writer *w = NULL;
    struct vocab v = {0};
    int rc = 1;
    struct rng r = {sp->seed * 7919 + 17};
    if (pd_gguf_writer_open(&w, &err)) {
        fprintf(stderr, "mkmodel: %s\n", err.msg);
        return 1;
    }
    struct pd_gguf *vg = NULL;
    uint64_t n_vocab_from = 0;
    if (sp->vocab_from) {
        if (pd_gguf_open(sp->vocab_from, &vg, &err)) {
            fprintf(stderr, "mkmodel: %s\n", err.msg);
            pd_gguf_writer_close(&w);
            return 1;
        }
    } else if (sp->bpe) {
        build_bpe(&v);
    } else {
        build_spm(&v);
    }
    vocab_pad(&v, sp->n_vocab_pad);
    g_big = sp->big;
    const char *a = sp->arch;
    char key[128];
#define KU32(suffix, val)                                                         \
    do {                                                                         \
        snprintf(key, sizeof key, "%s.%s", a, suffix);                           \
        CHECK(pd_gguf_writer_add_u32(w, key, (val), &err));                      \
    } while (0)
#define KF32(suffix, val)                                                         \
    do {                                                                         \
        snprintf(key, sizeof key, "%s.%s", a, suffix);                           \
        CHECK(pd_gguf_writer_add_f32(w, key, (val), &err));                      \
    } while (0)
    CHECK(pd_gguf_writer_add_str(w, "general.architecture", a, &err));
    CHECK(pd_gguf_writer_add_str(w, "general.name", sp->name ? sp->name : "ponder-tiny", &err));
    KU32("context_length", sp->n_ctx_train);
    KU32("embedding_length", sp->n_embd);
    KU32("block_count", sp->n_layer);
    KU32("feed_forward_length", sp->n_ff);
    KU32("attention.head_count", sp->n_head);
    KU32("attention.head_count_kv", sp->n_head_kv);
    KF32("attention.layer_norm_rms_epsilon", 1e-6f);
    KF32("rope.freq_base", sp->rope_base > 0   ? sp->rope_base
                           : strcmp(a, "llama") == 0 ? 10000.0f
                                                     : 1000000.0f);
    if (strcmp(a, "qwen3") == 0) {
        KU32("attention.key_length", sp->head_dim);
        KU32("attention.value_length", sp->head_dim);
    }
    KU32("rope.dimension_count", sp->head_dim);
    if (sp->chat_template) {
        CHECK(pd_gguf_writer_add_str(w, "tokenizer.chat_template",
                                     template_text(sp->chat_template), &err));
    }
    if (vg) {
        CHECK(copy_keys(w, vg, "tokenizer.ggml.", &err));
        const struct pd_gguf_kv *toks = pd_gguf_find(vg, "tokenizer.ggml.tokens");
        if (!toks || toks->type != PD_GGUF_ARRAY) {
            fprintf(stderr, "mkmodel: %s: no tokenizer.ggml.tokens\n", sp->vocab_from);
            goto done;
        }
        n_vocab_from = toks->v.arr.n;
        goto tensors;
    }
    CHECK(pd_gguf_writer_add_str(w, "tokenizer.ggml.model", sp->bpe ? "gpt2" : "llama", &err));
    if (sp->bpe) {
        CHECK(pd_gguf_writer_add_str(w, "tokenizer.ggml.pre", "qwen2", &err));
    }
    CHECK(pd_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.tok,
                                     NULL, v.n, &err));
    CHECK(pd_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", PD_GGUF_INT32, v.type, v.n,
                                 &err));
    if (sp->bpe) {
        CHECK(pd_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges",
                                         (const char *const *)v.merges, NULL, v.n_merges, &err));
        uint32_t eos = (uint32_t)vocab_find(&v, "<|endoftext|>");
        CHECK(pd_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", eos, &err));
        CHECK(pd_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", eos, &err));
        CHECK(pd_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false, &err));
    } else {
        CHECK(pd_gguf_writer_add_arr(w, "tokenizer.ggml.scores", PD_GGUF_FLOAT32, v.score, v.n,
                                     &err));
        CHECK(pd_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1, &err));
        CHECK(pd_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2, &err));
        CHECK(pd_gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0, &err));
        CHECK(pd_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true, &err));
    }
tensors:;
    uint64_t n_vocab = vg ? n_vocab_from : v.n;
    uint32_t E = sp->n_embd, F = sp->n_ff, hd = sp->head_dim;
    uint64_t qd = (uint64_t)sp->n_head * hd, kd = (uint64_t)sp->n_head_kv * hd;
    float ws = 1.0f / sqrtf((float)E);
    if (sp->constant) {
        size_t x = vocab_find(&v, sp->constant);
        if (x == (size_t)-1) {
            fprintf(stderr, "mkmodel: --constant: no token '%s' in the vocabulary\n",
                    sp->constant);
            goto done;
        }
        CHECK(add_constant(w, &r, sp, n_vocab, x, &err));
        goto write;
    }
    /* Embeddings stay in the requested type too (scaled so tied logits stay moderate);
     * llama gets an untied output. */
    bool tied = strcmp(a, "llama") != 0;
    CHECK(add_matrix(w, &r, "token_embd.weight", E, n_vocab,
                     matrix_type(sp, tied ? "output" : NULL, 0), ws * 4));
    CHECK(add_vector(w, &r, "output_norm.weight", E, 1.0f, 0.2f));
    if (!tied) {
        CHECK(add_matrix(w, &r, "output.weight", E, n_vocab, matrix_type(sp, "output", 0),
                         ws * 4));
    }
    if (sp->rope_freqs) {
        /* Llama 3.1-style divisors: 1 for the fast pairs, growing for the slow ones. */
        float *ff = malloc(hd / 2 * sizeof *ff);
        for (uint32_t i = 0; i < hd / 2; i++) {
            ff[i] = i < hd / 4 ? 1.0f : 1.0f + (float)(i - hd / 4) * 1.5f;
        }
        uint64_t ne[1] = {hd / 2};
        enum pd_status rst = pd_gguf_writer_add_tensor_f32(w, "rope_freqs.weight", 1, ne,
                                                          PD_DTYPE_F32, ff, &err);
        free(ff);
        CHECK(rst);
    }
    for (uint32_t il = 0; il < sp->n_layer; il++) {
        char n[96];
#define NAME(suffix) (snprintf(n, sizeof n, "blk.%u.%s", il, suffix), n)
        CHECK(add_vector(w, &r, NAME("attn_norm.weight"), E, 1.0f, 0.2f));
        CHECK(add_matrix(w, &r, NAME("attn_q.weight"), E, qd, sp->type, ws * 2));
        CHECK(add_matrix(w, &r, NAME("attn_k.weight"), E, kd, sp->type, ws * 2));
        CHECK(add_matrix(w, &r, NAME("attn_v.weight"), E, kd, matrix_type(sp, "attn_v", il), ws));
        CHECK(add_matrix(w, &r, NAME("attn_output.weight"), qd, E, sp->type, ws));
        if (strcmp(a, "qwen2") == 0) {
            CHECK(add_vector(w, &r, NAME("attn_q.bias"), qd, 0.0f, 0.1f));
            CHECK(add_vector(w, &r, NAME("attn_k.bias"), kd, 0.0f, 0.1f));
            CHECK(add_vector(w, &r, NAME("attn_v.bias"), kd, 0.0f, 0.1f));
        }
        if (strcmp(a, "qwen3") == 0) {
            CHECK(add_vector(w, &r, NAME("attn_q_norm.weight"), hd, 1.0f, 0.2f));
            CHECK(add_vector(w, &r, NAME("attn_k_norm.weight"), hd, 1.0f, 0.2f));
        }
        CHECK(add_vector(w, &r, NAME("ffn_norm.weight"), E, 1.0f, 0.2f));
        CHECK(add_matrix(w, &r, NAME("ffn_gate.weight"), E, F, sp->type, ws * 2));
        CHECK(add_matrix(w, &r, NAME("ffn_up.weight"), E, F, sp->type, ws * 2));
        CHECK(add_matrix(w, &r, NAME("ffn_down.weight"), F, E, matrix_type(sp, "ffn_down", il),
                         1.0f / sqrtf((float)F)));
#undef NAME
    }
write:
    if (pd_gguf_writer_write_file(w, out, &err)) {
        fprintf(stderr, "mkmodel: %s\n", err.msg);
        goto done;
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "mkmodel: %s\n", err.msg);
done:
    for (size_t i = 0; i < v.n; i++) {
        free(v.tok[i]);
    }
    for (size_t i = 0; i < v.n_merges; i++) {
        free(v.merges[i]);
    }
    free(v.tok);
    free(v.score);
    free(v.type);
    free(v.merges);
    pd_gguf_close(&vg);
    pd_gguf_writer_close(&w);
    return rc;
}

/* The tensors of a --constant model (see the top of the file). */
static int add_constant(struct pd_gguf_writer *w, struct rng *r, const struct spec *sp,
                        uint64_t n_vocab, size_t x, struct pd_err *err)
{
    uint32_t E = sp->n_embd, F = sp->n_ff;
    uint64_t qd = (uint64_t)sp->n_head * sp->head_dim, kd = (uint64_t)sp->n_head_kv * sp->head_dim;
    float *u = malloc(E * sizeof *u);
    float *emb = malloc(E * n_vocab * sizeof *emb);
    float *out = calloc(E * n_vocab, sizeof *out);
    int rc = -1;
    if (!u || !emb || !out) {
        goto done;
    }
    for (uint32_t i = 0; i < E; i++) {
        u[i] = rng_uniform(r, 1.0f);
    }
    for (uint64_t t = 0; t < n_vocab; t++) {
        memcpy(emb + t * E, u, E * sizeof *u);
    }
    for (uint32_t i = 0; i < E; i++) {
        out[x * E + i] = u[i];
    }
    uint64_t ne[2] = {E, n_vocab};
    if (pd_gguf_writer_add_tensor_f32(w, "token_embd.weight", 2, ne, sp->type, emb, err) ||
        add_vector(w, r, "output_norm.weight", E, 1.0f, 0.2f) ||
        pd_gguf_writer_add_tensor_f32(w, "output.weight", 2, ne, sp->type, out, err)) {
        goto done;
    }
    for (uint32_t il = 0; il < sp->n_layer; il++) {
        char n[96];
#define NAME(suffix) (snprintf(n, sizeof n, "blk.%u.%s", il, suffix), n)
        if (add_vector(w, r, NAME("attn_norm.weight"), E, 1.0f, 0.2f) ||
            add_matrix(w, r, NAME("attn_q.weight"), E, qd, sp->type, 0.1f) ||
            add_matrix(w, r, NAME("attn_k.weight"), E, kd, sp->type, 0.1f) ||
            add_matrix(w, r, NAME("attn_v.weight"), E, kd, sp->type, 0.1f) ||
            add_zeros(w, NAME("attn_output.weight"), qd, E, sp->type, err) ||
            add_vector(w, r, NAME("ffn_norm.weight"), E, 1.0f, 0.2f) ||
            add_matrix(w, r, NAME("ffn_gate.weight"), E, F, sp->type, 0.1f) ||
            add_matrix(w, r, NAME("ffn_up.weight"), E, F, sp->type, 0.1f) ||
            add_zeros(w, NAME("ffn_down.weight"), F, E, sp->type, err)) {
            goto done;
        }
#undef NAME
    }
    rc = 0;
done:
    free(u);
    free(emb);
    free(out);
    return rc;
}

int main(int argc, char **argv)
{
    struct spec sp = {NULL, NULL, 0, NULL, NULL, "llama", PD_DTYPE_F32, 1, -1, 64, 128, 4, 2, 16,
                      2, 512, 0, 0, 0.0f};
    const char *out = NULL;
    int bench = 0; /* 1 bench, 2 1b */
    const char *big = NULL;
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) {
            fprintf(stderr, "mkmodel: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--arch") == 0) {
            sp.arch = val;
        } else if (strcmp(a, "--type") == 0) {
            sp.q4_k_m = strcmp(val, "q4_k_m") == 0;
            sp.type = pd_dtype_parse(sp.q4_k_m ? "q4_k" : val);
            if (sp.type == PD_DTYPE_COUNT || pd_dtype_activation_only(sp.type)) {
                fprintf(stderr, "mkmodel: --type: unknown type '%s'\n", val);
                return 2;
            }
        } else if (strcmp(a, "--seed") == 0) {
            sp.seed = strtoull(val, NULL, 10);
        } else if (strcmp(a, "--vocab") == 0) {
            sp.bpe = strcmp(val, "bpe") == 0;
        } else if (strcmp(a, "--rope-freqs") == 0) {
            sp.rope_freqs = strcmp(val, "1") == 0;
        } else if (strcmp(a, "--vocab-from") == 0) {
            sp.vocab_from = val;
        } else if (strcmp(a, "--chat-template") == 0) {
            if (!template_text(val)) {
                fprintf(stderr, "mkmodel: --chat-template: expected deepseek-r1, qwen3 or "
                                "chatml, got '%s'\n", val);
                return 2;
            }
            sp.chat_template = val;
        } else if (strcmp(a, "--shape") == 0) {
            if (strcmp(val, "bench") == 0) {
                bench = 1;
            } else if (strcmp(val, "1b") == 0) {
                bench = 2;
            } else if (strcmp(val, "8b") == 0 || strcmp(val, "1.5b") == 0) {
                big = val;
            } else if (strcmp(val, "tiny") != 0) {
                fprintf(stderr, "mkmodel: --shape: expected tiny, bench, 1b, 8b or 1.5b, got "
                                "'%s'\n",
                        val);
                return 2;
            }
        } else if (strcmp(a, "--name") == 0) {
            sp.name = val;
        } else if (strcmp(a, "--constant") == 0) {
            sp.constant = val;
        } else if (strcmp(a, "--out") == 0) {
            out = val;
        } else {
            fprintf(stderr, "mkmodel: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "usage: mkmodel --arch A --type T [--seed N] [--vocab spm|bpe] --out F\n");
        return 2;
    }
    if (strcmp(sp.arch, "llama") && strcmp(sp.arch, "qwen2") && strcmp(sp.arch, "qwen3")) {
        fprintf(stderr, "mkmodel: --arch: unknown architecture '%s'\n", sp.arch);
        return 2;
    }
    if (sp.bpe < 0) {
        sp.bpe = strcmp(sp.arch, "llama") != 0;
    }
    if (sp.constant && (strcmp(sp.arch, "llama") != 0 || sp.vocab_from)) {
        fprintf(stderr, "mkmodel: --constant needs --arch llama and the built-in vocabulary\n");
        return 2;
    }
    uint32_t blk = pd_dtype_traits(sp.type)->block_size;
    if (big && strcmp(big, "8b") == 0) { /* Llama-3-8B */
        sp.n_embd = 4096;
        sp.n_ff = 14336;
        sp.n_head = 32;
        sp.n_head_kv = 8;
        sp.head_dim = 128;
        sp.n_layer = 32;
        sp.n_vocab_pad = 128256;
        sp.rope_base = 500000.0f;
        sp.n_ctx_train = 32768;
        sp.big = 1;
        return build(&sp, out);
    }
    if (big) { /* Qwen2-1.5B */
        sp.n_embd = 1536;
        sp.n_ff = 8960;
        sp.n_head = 12;
        sp.n_head_kv = 2;
        sp.head_dim = 128;
        sp.n_layer = 28;
        sp.n_vocab_pad = 151936;
        sp.n_ctx_train = 32768;
        sp.big = 1;
        return build(&sp, out);
    }
    if (bench == 1) {
        sp.n_embd = 512;
        sp.n_ff = 1536;
        sp.n_head = 8;
        sp.n_head_kv = 2;
        sp.head_dim = 64;
        sp.n_layer = 8;
        sp.n_ctx_train = 4096;
    } else if (bench == 2) {
        sp.n_embd = 2048;
        sp.n_ff = 8192;
        sp.n_head = 32;
        sp.n_head_kv = 8;
        sp.head_dim = 64;
        sp.n_layer = 16;
        sp.n_ctx_train = 4096;
    } else if (blk == 256) { /* K-quants: every matrix row must hold whole 256-blocks */
        sp.n_embd = 256;
        sp.n_ff = 512;
        sp.head_dim = 64;
    }
    if (strcmp(sp.arch, "qwen3") == 0 && blk < 256 && !bench) {
        sp.head_dim = 32; /* n_head * head_dim = 128 != n_embd 64 */
    }
    return build(&sp, out);
}
