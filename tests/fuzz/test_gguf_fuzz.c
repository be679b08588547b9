/* test_gguf_fuzz.c - deterministic mutation fuzzing of the GGUF reader.
 *
 * A small valid model (tensors of several dtypes, metadata including string and numeric
 * arrays) is built with the test writer, then mutated: every byte set to boundary values,
 * every numeric header field set to huge or edge values, and thousands of random stacked
 * mutations (bit flips, byte overwrites, truncations, insertions, deletions, splices,
 * huge u64s at field offsets) from a fixed-seed PRNG. Each mutant is copied into a buffer
 * of exactly its length so ASan catches any read past it. pd_gguf_open_mem must either
 * succeed, in which case every string, array element and tensor byte range it reports is
 * walked and checked to lie inside the buffer, or fail with PD_EFORMAT/PD_EUNSUPPORTED and
 * a message naming the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "gguf.h"
#include "gguf_writer.h"

#define NAME "fuzz.gguf"
#define RANDOM_ROUNDS 150000

struct base {
    uint8_t *buf; /* owned */
    size_t len;
    struct pd_gguf_writer_field *fields; /* owned copy */
    size_t n_fields;
};

struct stats {
    unsigned ok, format, unsupported;
};

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/* splitmix64: small, fixed-seed, good enough to spread mutations. */
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t rnd_below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

static void build_base(struct base *b, uint32_t version)
{
    struct pd_gguf_writer *w = NULL;
    assert_int_equal(pd_gguf_writer_open(&w, NULL), PD_OK);
    pd_gguf_writer_set_version(w, version);
    assert_int_equal(pd_gguf_writer_add_str(w, "general.architecture", "llama", NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_u32(w, "llama.block_count", 2, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_f32(w, "llama.rope.freq_base", 10000.0f, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_bool(w, "general.flag", true, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_i64(w, "general.count", -42, NULL), PD_OK);
    const char *toks[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81the", "a", "b", "<0x0A>", ""};
    assert_int_equal(pd_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 8, NULL),
                     PD_OK);
    const float scores[] = {0, -1, -2, -3.5f, -4, -5, -6, -7};
    assert_int_equal(pd_gguf_writer_add_arr(w, "tokenizer.ggml.scores", PD_GGUF_FLOAT32, scores,
                                            8, NULL), PD_OK);
    const int32_t types[] = {2, 3, 3, 1, 1, 1, 6, 1};
    assert_int_equal(pd_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", PD_GGUF_INT32, types,
                                            8, NULL), PD_OK);
    const bool flags[] = {true, false, true};
    assert_int_equal(pd_gguf_writer_add_arr(w, "x.flags", PD_GGUF_BOOL, flags, 3, NULL), PD_OK);

    uint8_t data[512];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)(i * 37 + 11);
    }
    const struct {
        const char *name;
        uint32_t n_dims;
        uint64_t ne[2];
        enum pd_dtype t;
    } tensors[] = {
        {"token_embd.weight", 2, {8, 2}, PD_DTYPE_F32},
        {"blk.0.attn_norm.weight", 1, {16}, PD_DTYPE_F16},
        {"blk.0.attn_q.weight", 2, {32, 2}, PD_DTYPE_Q8_0},
        {"blk.0.ffn_down.weight", 1, {256}, PD_DTYPE_Q4_K},
        {"output.weight", 1, {256}, PD_DTYPE_Q6_K},
        {"blk.1.attn_k.weight", 1, {64}, PD_DTYPE_Q4_0},
    };
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++) {
        uint64_t bytes = pd_dtype_row_size(tensors[i].t, tensors[i].ne[0]) *
                         (tensors[i].n_dims > 1 ? tensors[i].ne[1] : 1);
        assert_true(bytes <= sizeof data);
        assert_int_equal(pd_gguf_writer_add_tensor(w, tensors[i].name, tensors[i].n_dims,
                                                   tensors[i].ne, tensors[i].t, data,
                                                   (size_t)bytes, NULL), PD_OK);
    }
    void *buf;
    assert_int_equal(pd_gguf_writer_write_mem(w, &buf, &b->len, NULL), PD_OK);
    b->buf = buf;
    const struct pd_gguf_writer_field *fields;
    b->n_fields = pd_gguf_writer_fields(w, &fields);
    b->fields = malloc(b->n_fields * sizeof *fields);
    assert_non_null(b->fields);
    memcpy(b->fields, fields, b->n_fields * sizeof *fields);
    pd_gguf_writer_close(&w);
}

static void free_base(struct base *b)
{
    free(b->buf);
    free(b->fields);
}

static bool inside(const void *p, uint64_t n, const uint8_t *buf, size_t len)
{
    const uint8_t *q = p;
    return q >= buf && q <= buf + len && n <= (uint64_t)(buf + len - q);
}

/* Walks everything a successfully opened file reports; returns a checksum so the reads
 * are not optimised away. */
static uint64_t walk(const struct pd_gguf *g, const uint8_t *buf, size_t len)
{
    uint64_t sum = 0;
    assert_true(g->alignment > 0 && (g->alignment & (g->alignment - 1)) == 0);
    assert_true(g->data_offset <= len);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct pd_gguf_kv *kv = &g->kv[i];
        assert_true(kv->key.n > 0 && inside(kv->key.s, kv->key.n, buf, len));
        sum += (unsigned char)kv->key.s[kv->key.n - 1];
        assert_true(kv->type < PD_GGUF_VTYPE_COUNT);
        if (kv->type == PD_GGUF_STRING) {
            assert_true(inside(kv->v.str.s, kv->v.str.n, buf, len));
            for (uint64_t k = 0; k < kv->v.str.n; k++) {
                sum += (unsigned char)kv->v.str.s[k];
            }
        } else if (kv->type == PD_GGUF_ARRAY) {
            assert_true(kv->v.arr.elem != PD_GGUF_ARRAY && kv->v.arr.elem < PD_GGUF_VTYPE_COUNT);
            for (uint64_t k = 0; k < kv->v.arr.n; k++) {
                if (kv->v.arr.elem == PD_GGUF_STRING) {
                    struct pd_gguf_str s = kv->v.arr.strs[k];
                    assert_true(inside(s.s, s.n, buf, len));
                    sum += s.n ? (unsigned char)s.s[s.n - 1] : 0;
                } else {
                    sum += pd_gguf_arr_u64(kv, k);
                }
            }
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct pd_gguf_tensor *t = &g->tensors[i];
        assert_true(t->n_dims >= 1 && t->n_dims <= PD_GGUF_MAX_DIMS);
        assert_true(t->type < PD_DTYPE_COUNT && !pd_dtype_activation_only(t->type));
        assert_int_equal(t->offset % g->alignment, 0);
        uint64_t size = pd_dtype_row_size(t->type, t->ne[0]);
        for (uint32_t d = 0; d < PD_GGUF_MAX_DIMS; d++) {
            assert_true(t->ne[d] > 0);
            assert_true(d < t->n_dims || t->ne[d] == 1);
            if (d > 0) {
                size *= t->ne[d];
            }
        }
        assert_true(size == t->size && size > 0);
        assert_true(inside(t->data, t->size, buf, len));
        assert_ptr_equal(t->data, buf + g->data_offset + t->offset);
        const uint8_t *d = t->data;
        sum += d[0] + d[t->size - 1];
    }
    return sum;
}

/* Opens a copy of m[0..len) in an exact-size allocation and checks the outcome. */
static void try_one(const uint8_t *m, size_t len, struct stats *st)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, m, len);
    struct pd_gguf *g = NULL;
    struct pd_err err = {0};
    enum pd_status rc = pd_gguf_open_mem(copy, len, NAME, &g, &err);
    if (rc == PD_OK) {
        assert_non_null(g);
        (void)walk(g, copy, len);
        pd_gguf_close(&g);
        st->ok++;
    } else {
        if (rc != PD_EFORMAT && rc != PD_EUNSUPPORTED) {
            fail_msg("status %d (%s)", rc, err.msg);
        }
        assert_null(g);
        assert_int_equal(err.status, rc);
        assert_true(strncmp(err.msg, NAME ": ", strlen(NAME) + 2) == 0);
        assert_true(strlen(err.msg) > strlen(NAME) + 2);
        if (rc == PD_EFORMAT) {
            st->format++;
        } else {
            st->unsupported++;
        }
    }
    free(copy);
}

static const uint8_t boundary_bytes[] = {0x00, 0xFF, 0x7F, 0x80, 0x01};
static const uint64_t huge_u64[] = {
    UINT64_MAX, UINT64_MAX - 7, 1ull << 63, 1ull << 40, 1ull << 32, 1ull << 30,
    (1ull << 20) + 1, 0x100, 1, 0,
};
static const uint32_t edge_u32[] = {UINT32_MAX, 0x80000000u, 13, 9, 8, 5, 4, 3, 1, 0};

static void put_le(uint8_t *p, uint64_t v, unsigned width)
{
    for (unsigned i = 0; i < width; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* Exhaustive single-byte boundary overwrites and edge values at every header field. */
static void run_exhaustive(const struct base *b, struct stats *st)
{
    uint8_t *m = malloc(b->len);
    assert_non_null(m);
    for (size_t pos = 0; pos < b->len; pos++) {
        for (size_t k = 0; k < sizeof boundary_bytes; k++) {
            if (b->buf[pos] == boundary_bytes[k]) {
                continue;
            }
            memcpy(m, b->buf, b->len);
            m[pos] = boundary_bytes[k];
            try_one(m, b->len, st);
        }
    }
    for (size_t i = 0; i < b->n_fields; i++) {
        const struct pd_gguf_writer_field *f = &b->fields[i];
        size_t n = f->width == 8 ? sizeof huge_u64 / sizeof huge_u64[0]
                                 : sizeof edge_u32 / sizeof edge_u32[0];
        for (size_t k = 0; k < n; k++) {
            memcpy(m, b->buf, b->len);
            put_le(m + f->pos, f->width == 8 ? huge_u64[k] : edge_u32[k], f->width);
            try_one(m, b->len, st);
        }
    }
    free(m);
}

/* Applies one random mutation to m (len *len, capacity cap). */
static void mutate(uint8_t *m, size_t *len, size_t cap, const struct base *b)
{
    size_t n = *len;
    switch (rnd() % 8) {
    case 0: /* bit flips */
        for (int k = 1 + (int)rnd_below(8); k > 0 && n > 0; k--) {
            m[rnd_below(n)] ^= (uint8_t)(1u << rnd_below(8));
        }
        break;
    case 1: /* boundary byte overwrites */
        for (int k = 1 + (int)rnd_below(4); k > 0 && n > 0; k--) {
            m[rnd_below(n)] = boundary_bytes[rnd_below(sizeof boundary_bytes)];
        }
        break;
    case 2: /* truncation */
        *len = rnd_below(n + 1);
        break;
    case 3: /* a huge or edge value at a header field */
    case 4: {
        const struct pd_gguf_writer_field *f = &b->fields[rnd_below(b->n_fields)];
        if (f->pos + f->width <= n) {
            uint64_t v = f->width == 8
                             ? huge_u64[rnd_below(sizeof huge_u64 / sizeof huge_u64[0])]
                             : edge_u32[rnd_below(sizeof edge_u32 / sizeof edge_u32[0])];
            if (rnd() % 4 == 0) {
                v = rnd() >> rnd_below(64);
            }
            put_le(m + f->pos, v, f->width);
        }
        break;
    }
    case 5: { /* insertion of random bytes, sometimes a huge u64 at a header field */
        size_t k = 1 + rnd_below(16);
        if (n + k <= cap) {
            size_t at = rnd_below(n + 1);
            if (rnd() % 2) {
                uint64_t pos = b->fields[rnd_below(b->n_fields)].pos;
                at = pos <= n ? (size_t)pos : at;
            }
            memmove(m + at + k, m + at, n - at);
            for (size_t i = 0; i < k; i++) {
                m[at + i] = (uint8_t)rnd();
            }
            if (k >= 8 && rnd() % 2) {
                put_le(m + at, huge_u64[rnd_below(sizeof huge_u64 / sizeof huge_u64[0])], 8);
            }
            *len = n + k;
        }
        break;
    }
    case 6: { /* deletion */
        if (n > 0) {
            size_t at = rnd_below(n);
            size_t k = 1 + rnd_below(n - at < 16 ? n - at : 16);
            memmove(m + at, m + at + k, n - at - k);
            *len = n - k;
        }
        break;
    }
    default: { /* splice: copy a chunk of the file over another place */
        if (n > 1) {
            size_t k = 1 + rnd_below(n / 2);
            size_t from = rnd_below(n - k + 1);
            size_t to = rnd_below(n - k + 1);
            memmove(m + to, m + from, k);
        }
        break;
    }
    }
}

/* Random stacked mutations of the base file. */
static void run_random(const struct base *b, struct stats *st, unsigned rounds)
{
    size_t cap = b->len + 16 * 4;
    uint8_t *m = malloc(cap);
    assert_non_null(m);
    for (unsigned r = 0; r < rounds; r++) {
        size_t len = b->len;
        memcpy(m, b->buf, len);
        for (int k = 1 + (int)rnd_below(3); k > 0; k--) {
            mutate(m, &len, cap, b);
        }
        try_one(m, len, st);
    }
    free(m);
}

static void check_stats(const char *what, const struct stats *st)
{
    print_message("%s: %u accepted, %u rejected as malformed, %u as unsupported\n", what,
                  st->ok, st->format, st->unsupported);
    /* The fuzzer must reach both outcomes, or it is not exercising the reader. */
    assert_true(st->ok > 0);
    assert_true(st->format > 0);
    assert_true(st->unsupported > 0);
}

static void test_fuzz_exhaustive_v3(void **state)
{
    (void)state;
    struct base b;
    build_base(&b, 3);
    struct stats st = {0};
    try_one(b.buf, b.len, &st);
    assert_int_equal(st.ok, 1); /* the unmutated file is valid */
    run_exhaustive(&b, &st);
    check_stats("exhaustive v3", &st);
    free_base(&b);
}

static void test_fuzz_random_v3(void **state)
{
    (void)state;
    struct base b;
    build_base(&b, 3);
    struct stats st = {0};
    run_random(&b, &st, RANDOM_ROUNDS);
    check_stats("random v3", &st);
    free_base(&b);
}

static void test_fuzz_random_v2(void **state)
{
    (void)state;
    struct base b;
    build_base(&b, 2);
    struct stats st = {0};
    try_one(b.buf, b.len, &st);
    assert_int_equal(st.ok, 1);
    run_random(&b, &st, RANDOM_ROUNDS / 4);
    check_stats("random v2", &st);
    free_base(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fuzz_exhaustive_v3),
        cmocka_unit_test(test_fuzz_random_v3),
        cmocka_unit_test(test_fuzz_random_v2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
