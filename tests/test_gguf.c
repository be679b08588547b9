/* test_gguf.c - engine/gguf (reader) against tests/tools/gguf_writer: round trips of every
 * value type and tensor type, v2 and v3, typed getters, the writer's own checks, and one
 * named corrupt-input test per validation rule, each asserting the status and that the
 * message names the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mem.h"
#include "dtype.h"
#include "half.h"
#include "gguf.h"
#include "gguf_writer.h"

#define NAME "t.gguf"

/* ---- helpers ---- */

struct file {
    uint8_t *buf; /* owned (free) */
    size_t len;
    struct pd_gguf_writer_layout layout;
};

static struct pd_gguf_writer *writer(void)
{
    struct pd_gguf_writer *w = NULL;
    assert_int_equal(pd_gguf_writer_open(&w, NULL), PD_OK);
    assert_non_null(w);
    return w;
}

/* Serialises w into f (and closes w). */
static void finish(struct pd_gguf_writer **w, struct file *f)
{
    struct pd_err err = {0};
    void *buf = NULL;
    enum pd_status rc = pd_gguf_writer_write_mem(*w, &buf, &f->len, &err);
    if (rc != PD_OK) {
        print_error("writer: %s\n", err.msg);
    }
    assert_int_equal(rc, PD_OK);
    f->buf = buf;
    pd_gguf_writer_layout(*w, &f->layout);
    assert_int_equal(f->layout.size, f->len);
    pd_gguf_writer_close(w);
    assert_null(*w);
}

static struct pd_gguf *open_ok(const struct file *f)
{
    struct pd_gguf *g = NULL;
    struct pd_err err = {0};
    enum pd_status rc = pd_gguf_open_mem(f->buf, f->len, NAME, &g, &err);
    if (rc != PD_OK) {
        print_error("reader: %s\n", err.msg);
    }
    assert_int_equal(rc, PD_OK);
    assert_non_null(g);
    return g;
}

/* Opens buf[0..len) and asserts it is rejected with `want`, a message that starts with the
 * name and contains every needle (NULL-terminated list). */
static void expect_reject_n(const void *buf, size_t len, enum pd_status want, ...)
{
    struct pd_gguf *g = (struct pd_gguf *)1;
    struct pd_err err = {0};
    enum pd_status rc = pd_gguf_open_mem(buf, len, NAME, &g, &err);
    if (rc != want) {
        print_error("status %d, wanted %d; message: %s\n", rc, want, err.msg);
    }
    assert_int_equal(rc, want);
    assert_null(g);
    assert_int_equal(err.status, want);
    assert_true(strncmp(err.msg, NAME ": ", strlen(NAME) + 2) == 0);
    va_list ap;
    va_start(ap, want);
    for (const char *needle = va_arg(ap, const char *); needle;
         needle = va_arg(ap, const char *)) {
        if (!strstr(err.msg, needle)) {
            print_error("message '%s' lacks '%s'\n", err.msg, needle);
            fail();
        }
    }
    va_end(ap);
}
#define expect_reject(f, want, ...) expect_reject_n((f)->buf, (f)->len, want, __VA_ARGS__, NULL)

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* Position of the n-th (0-based) field of kind `what` in the last write of w. */
static uint64_t field_pos(const struct pd_gguf_writer *w, const char *what, int nth)
{
    const struct pd_gguf_writer_field *fields;
    size_t n = pd_gguf_writer_fields(w, &fields);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(fields[i].what, what) == 0 && nth-- == 0) {
            return fields[i].pos;
        }
    }
    fail_msg("no field '%s'", what);
    return 0;
}

/* A small valid model: metadata with a string array and three tensors. */
static struct pd_gguf_writer *small_model(void)
{
    struct pd_gguf_writer *w = writer();
    assert_int_equal(pd_gguf_writer_add_str(w, "general.architecture", "llama", NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_u32(w, "llama.block_count", 2, NULL), PD_OK);
    const char *toks[] = {"<unk>", "a", "b"};
    assert_int_equal(pd_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 3, NULL),
                     PD_OK);
    float data[64];
    for (int i = 0; i < 64; i++) {
        data[i] = (float)i;
    }
    uint64_t ne_a[2] = {8, 2};
    uint64_t ne_b[1] = {16};
    assert_int_equal(pd_gguf_writer_add_tensor(w, "a.weight", 2, ne_a, PD_DTYPE_F32, data,
                                               64, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_tensor(w, "b.weight", 1, ne_b, PD_DTYPE_F16, data, 32,
                                               NULL), PD_OK);
    uint64_t ne_c[1] = {32};
    assert_int_equal(pd_gguf_writer_add_tensor(w, "c.weight", 1, ne_c, PD_DTYPE_Q8_0, data, 34,
                                               NULL), PD_OK);
    return w;
}

/* ---- round trips ---- */

static void test_roundtrip_value_types(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = writer();
    assert_int_equal(pd_gguf_writer_add_u8(w, "v.u8", 200, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_i8(w, "v.i8", -5, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_u16(w, "v.u16", 65000, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_i16(w, "v.i16", -30000, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_u32(w, "v.u32", 4000000000u, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_i32(w, "v.i32", -2000000000, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_u64(w, "v.u64", UINT64_MAX - 1, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_i64(w, "v.i64", INT64_MIN + 3, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_f32(w, "v.f32", 1.5f, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_f64(w, "v.f64", 3.141592653589793, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_bool(w, "v.bool", true, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_str(w, "v.str", "h\xc3\xa9llo", NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_str_n(w, "v.bytes", "a\0b\xff", 4, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_str(w, "v.empty", "", NULL), PD_OK);

    const uint8_t a_u8[] = {0, 1, 255};
    const int8_t a_i8[] = {-128, 0, 127};
    const uint16_t a_u16[] = {1, 65535};
    const int16_t a_i16[] = {-32768, 32767};
    const uint32_t a_u32[] = {7, 4294967295u};
    const int32_t a_i32[] = {-1, 2147483647, -2147483647 - 1};
    const uint64_t a_u64[] = {UINT64_MAX, 0, 1ull << 40};
    const int64_t a_i64[] = {INT64_MIN, -1};
    const float a_f32[] = {-0.25f, 1e30f, 3.0f};
    const double a_f64[] = {1e-300, -2.5};
    const bool a_bool[] = {true, false, true, true};
    assert_int_equal(pd_gguf_writer_add_arr(w, "a.u8", PD_GGUF_UINT8, a_u8, 3, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr(w, "a.i8", PD_GGUF_INT8, a_i8, 3, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr(w, "a.u16", PD_GGUF_UINT16, a_u16, 2, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr(w, "a.i16", PD_GGUF_INT16, a_i16, 2, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr(w, "a.u32", PD_GGUF_UINT32, a_u32, 2, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr(w, "a.i32", PD_GGUF_INT32, a_i32, 3, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr(w, "a.u64", PD_GGUF_UINT64, a_u64, 3, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr(w, "a.i64", PD_GGUF_INT64, a_i64, 2, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr(w, "a.f32", PD_GGUF_FLOAT32, a_f32, 3, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr(w, "a.f64", PD_GGUF_FLOAT64, a_f64, 2, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr(w, "a.bool", PD_GGUF_BOOL, a_bool, 4, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr(w, "a.none", PD_GGUF_INT32, NULL, 0, NULL), PD_OK);
    const char *strs[] = {"x", "", "\xe2\x82\xac", "tail"};
    const size_t lens[] = {1, 0, 3, 2};
    assert_int_equal(pd_gguf_writer_add_arr_str(w, "a.str", strs, lens, 4, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr_str(w, "a.str0", NULL, NULL, 0, NULL), PD_OK);
    struct file f;
    finish(&w, &f);

    struct pd_gguf *g = open_ok(&f);
    assert_int_equal(g->version, 3);
    assert_int_equal(g->n_kv, 28);
    assert_int_equal(g->n_tensors, 0);
    assert_int_equal(g->alignment, 32);
    const struct pd_gguf_kv *kv;
    struct {
        const char *key;
        enum pd_gguf_vtype type;
    } scalars[] = {
        {"v.u8", PD_GGUF_UINT8},    {"v.i8", PD_GGUF_INT8},     {"v.u16", PD_GGUF_UINT16},
        {"v.i16", PD_GGUF_INT16},   {"v.u32", PD_GGUF_UINT32},  {"v.i32", PD_GGUF_INT32},
        {"v.u64", PD_GGUF_UINT64},  {"v.i64", PD_GGUF_INT64},   {"v.f32", PD_GGUF_FLOAT32},
        {"v.f64", PD_GGUF_FLOAT64}, {"v.bool", PD_GGUF_BOOL},   {"v.str", PD_GGUF_STRING},
    };
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
        kv = pd_gguf_find(g, scalars[i].key);
        assert_non_null(kv);
        assert_int_equal(kv->type, scalars[i].type);
    }
    assert_int_equal(pd_gguf_find(g, "v.u8")->v.u, 200);
    assert_int_equal(pd_gguf_find(g, "v.i8")->v.i, -5);
    assert_int_equal(pd_gguf_find(g, "v.u16")->v.u, 65000);
    assert_int_equal(pd_gguf_find(g, "v.i16")->v.i, -30000);
    assert_int_equal(pd_gguf_find(g, "v.u32")->v.u, 4000000000u);
    assert_int_equal(pd_gguf_find(g, "v.i32")->v.i, -2000000000);
    assert_true(pd_gguf_find(g, "v.u64")->v.u == UINT64_MAX - 1);
    assert_true(pd_gguf_find(g, "v.i64")->v.i == INT64_MIN + 3);
    assert_true(pd_gguf_find(g, "v.f32")->v.f == 1.5);
    assert_true(pd_gguf_find(g, "v.f64")->v.f == 3.141592653589793);
    assert_int_equal(pd_gguf_find(g, "v.bool")->v.u, 1);
    assert_true(pd_gguf_str_eq(pd_gguf_find(g, "v.str")->v.str, "h\xc3\xa9llo"));
    kv = pd_gguf_find(g, "v.bytes");
    assert_int_equal(kv->v.str.n, 4);
    assert_memory_equal(kv->v.str.s, "a\0b\xff", 4);
    assert_int_equal(pd_gguf_find(g, "v.empty")->v.str.n, 0);
    assert_null(pd_gguf_find(g, "v.absent"));

    assert_int_equal(pd_gguf_get_arr(g, "a.u8", PD_GGUF_UINT8, &kv, NULL), PD_OK);
    assert_int_equal(kv->v.arr.n, 3);
    assert_int_equal(pd_gguf_arr_u64(kv, 2), 255);
    assert_int_equal(pd_gguf_get_arr(g, "a.i8", PD_GGUF_INT8, &kv, NULL), PD_OK);
    assert_int_equal(pd_gguf_arr_i64(kv, 0), -128);
    assert_int_equal(pd_gguf_arr_i64(kv, 2), 127);
    assert_int_equal(pd_gguf_get_arr(g, "a.u16", PD_GGUF_UINT16, &kv, NULL), PD_OK);
    assert_int_equal(pd_gguf_arr_u64(kv, 1), 65535);
    assert_int_equal(pd_gguf_get_arr(g, "a.i16", PD_GGUF_INT16, &kv, NULL), PD_OK);
    assert_int_equal(pd_gguf_arr_i64(kv, 0), -32768);
    assert_int_equal(pd_gguf_get_arr(g, "a.u32", PD_GGUF_UINT32, &kv, NULL), PD_OK);
    assert_int_equal(pd_gguf_arr_u64(kv, 1), 4294967295u);
    assert_int_equal(pd_gguf_get_arr(g, "a.i32", PD_GGUF_INT32, &kv, NULL), PD_OK);
    assert_int_equal(pd_gguf_arr_i64(kv, 0), -1);
    assert_true(pd_gguf_arr_i64(kv, 2) == -2147483647 - 1);
    assert_true(pd_gguf_arr_f64(kv, 1) == 2147483647.0);
    assert_int_equal(pd_gguf_get_arr(g, "a.u64", PD_GGUF_UINT64, &kv, NULL), PD_OK);
    assert_true(pd_gguf_arr_u64(kv, 0) == UINT64_MAX);
    assert_true(pd_gguf_arr_u64(kv, 2) == 1ull << 40);
    assert_int_equal(pd_gguf_get_arr(g, "a.i64", PD_GGUF_INT64, &kv, NULL), PD_OK);
    assert_true(pd_gguf_arr_i64(kv, 0) == INT64_MIN);
    assert_int_equal(pd_gguf_get_arr(g, "a.f32", PD_GGUF_FLOAT32, &kv, NULL), PD_OK);
    assert_true(pd_gguf_arr_f64(kv, 0) == -0.25);
    assert_true(pd_gguf_arr_f64(kv, 1) == (double)1e30f);
    assert_int_equal(pd_gguf_get_arr(g, "a.f64", PD_GGUF_FLOAT64, &kv, NULL), PD_OK);
    assert_true(pd_gguf_arr_f64(kv, 0) == 1e-300);
    assert_true(pd_gguf_arr_f64(kv, 1) == -2.5);
    assert_int_equal(pd_gguf_get_arr(g, "a.bool", PD_GGUF_BOOL, &kv, NULL), PD_OK);
    assert_int_equal(kv->v.arr.n, 4);
    assert_int_equal(pd_gguf_arr_u64(kv, 0), 1);
    assert_int_equal(pd_gguf_arr_u64(kv, 1), 0);
    assert_int_equal(pd_gguf_get_arr(g, "a.none", PD_GGUF_INT32, &kv, NULL), PD_OK);
    assert_int_equal(kv->v.arr.n, 0);
    assert_int_equal(pd_gguf_get_arr(g, "a.str", PD_GGUF_STRING, &kv, NULL), PD_OK);
    assert_int_equal(kv->v.arr.n, 4);
    assert_non_null(kv->v.arr.strs);
    assert_true(pd_gguf_str_eq(kv->v.arr.strs[0], "x"));
    assert_true(pd_gguf_str_eq(kv->v.arr.strs[1], ""));
    assert_true(pd_gguf_str_eq(kv->v.arr.strs[2], "\xe2\x82\xac"));
    assert_true(pd_gguf_str_eq(kv->v.arr.strs[3], "ta"));
    assert_int_equal(pd_gguf_get_arr(g, "a.str0", PD_GGUF_STRING, &kv, NULL), PD_OK);
    assert_int_equal(kv->v.arr.n, 0);
    /* Strings point into the buffer, they are not copies. */
    const uint8_t *s = (const uint8_t *)pd_gguf_find(g, "v.str")->v.str.s;
    assert_true(s > f.buf && s < f.buf + f.len);
    pd_gguf_close(&g);
    assert_null(g);
    pd_gguf_close(&g); /* NULL-safe */
    pd_gguf_close(NULL);
    free(f.buf);
}

static void check_tensors_every_dtype(uint32_t version, uint32_t alignment)
{
    struct pd_gguf_writer *w = writer();
    pd_gguf_writer_set_version(w, version);
    if (alignment != 32) {
        assert_int_equal(pd_gguf_writer_set_alignment(w, alignment, NULL), PD_OK);
    }
    assert_int_equal(pd_gguf_writer_add_str(w, "general.name", "dtypes", NULL), PD_OK);
    uint8_t *payload[PD_DTYPE_COUNT] = {0};
    size_t sizes[PD_DTYPE_COUNT] = {0};
    uint64_t ne[PD_DTYPE_COUNT][4];
    uint32_t seed = 12345;
    for (int t = 0; t < PD_DTYPE_COUNT; t++) {
        if (pd_dtype_activation_only((enum pd_dtype)t)) {
            continue;
        }
        const struct pd_dtype_traits *tr = pd_dtype_traits((enum pd_dtype)t);
        uint32_t n_dims = t % 3 == 0 ? 4 : (t % 3 == 1 ? 2 : 3);
        ne[t][0] = 2 * (uint64_t)tr->block_size;
        ne[t][1] = 3;
        ne[t][2] = n_dims >= 3 ? (uint64_t)(t % 2 + 2) : 1;
        ne[t][3] = 1;
        sizes[t] = pd_dtype_row_size((enum pd_dtype)t, ne[t][0]) * 3 * ne[t][2];
        payload[t] = malloc(sizes[t]);
        assert_non_null(payload[t]);
        for (size_t i = 0; i < sizes[t]; i++) {
            seed = seed * 1664525u + 1013904223u;
            payload[t][i] = (uint8_t)(seed >> 24);
        }
        char name[32];
        snprintf(name, sizeof name, "t.%s", tr->name);
        assert_int_equal(pd_gguf_writer_add_tensor(w, name, n_dims, ne[t], (enum pd_dtype)t,
                                                   payload[t], sizes[t], NULL), PD_OK);
    }
    struct file f;
    finish(&w, &f);
    struct pd_gguf *g = open_ok(&f);
    assert_int_equal(g->version, version);
    assert_int_equal(g->alignment, alignment);
    assert_int_equal(g->n_tensors, PD_DTYPE_COUNT - 2); /* all but q8_K and q8_1 */
    assert_int_equal(g->data_offset, f.layout.data_start);
    assert_int_equal(g->data_offset % alignment, 0);
    if (alignment != 32) {
        uint32_t a = 0;
        assert_int_equal(pd_gguf_get_u32(g, "general.alignment", &a, NULL), PD_OK);
        assert_int_equal(a, alignment);
    }
    for (int t = 0; t < PD_DTYPE_COUNT; t++) {
        if (pd_dtype_activation_only((enum pd_dtype)t)) {
            continue;
        }
        const struct pd_dtype_traits *tr = pd_dtype_traits((enum pd_dtype)t);
        char name[32];
        snprintf(name, sizeof name, "t.%s", tr->name);
        const struct pd_gguf_tensor *ti = pd_gguf_find_tensor(g, name);
        assert_non_null(ti);
        assert_int_equal(ti->type, t);
        assert_int_equal(ti->n_dims, t % 3 == 0 ? 4 : (t % 3 == 1 ? 2 : 3));
        assert_int_equal(ti->ne[0], ne[t][0]);
        assert_int_equal(ti->ne[1], 3);
        assert_int_equal(ti->ne[2], ne[t][2]);
        assert_int_equal(ti->ne[3], 1);
        assert_int_equal(ti->size, sizes[t]);
        assert_int_equal(ti->offset % alignment, 0);
        assert_ptr_equal(ti->data, f.buf + g->data_offset + ti->offset);
        assert_memory_equal(ti->data, payload[t], sizes[t]);
        free(payload[t]);
    }
    assert_null(pd_gguf_find_tensor(g, "t.absent"));
    pd_gguf_close(&g);
    free(f.buf);
}

static void test_roundtrip_tensors_v3(void **state)
{
    (void)state;
    check_tensors_every_dtype(3, 32);
}

static void test_roundtrip_tensors_v2(void **state)
{
    (void)state;
    check_tensors_every_dtype(2, 32);
}

static void test_roundtrip_alignment_64_and_1(void **state)
{
    (void)state;
    check_tensors_every_dtype(3, 64);
    check_tensors_every_dtype(3, 1);
}

/* Floats through the writer's reference quantiser and back through the dtype table. */
static void test_roundtrip_tensor_from_f32(void **state)
{
    (void)state;
    float src[512];
    for (int i = 0; i < 512; i++) {
        src[i] = sinf((float)i * 0.1f);
    }
    struct pd_gguf_writer *w = writer();
    uint64_t ne[2] = {256, 2};
    assert_int_equal(pd_gguf_writer_add_tensor_f32(w, "f32", 2, ne, PD_DTYPE_F32, src, NULL),
                     PD_OK);
    assert_int_equal(pd_gguf_writer_add_tensor_f32(w, "f16", 2, ne, PD_DTYPE_F16, src, NULL),
                     PD_OK);
    assert_int_equal(pd_gguf_writer_add_tensor_f32(w, "q8_0", 2, ne, PD_DTYPE_Q8_0, src, NULL),
                     PD_OK);
    struct file f;
    finish(&w, &f);
    struct pd_gguf *g = open_ok(&f);
    const struct pd_gguf_tensor *t = pd_gguf_find_tensor(g, "f32");
    assert_int_equal(t->size, 2048);
    assert_memory_equal(t->data, src, sizeof src);
    t = pd_gguf_find_tensor(g, "f16");
    assert_int_equal(t->size, 1024);
    const uint8_t *h = t->data;
    for (int i = 0; i < 512; i++) {
        uint16_t bits = (uint16_t)(h[2 * i] | h[2 * i + 1] << 8);
        assert_true(fabsf(pd_f16_to_f32(bits) - src[i]) < 1e-3f);
    }
    t = pd_gguf_find_tensor(g, "q8_0");
    assert_int_equal(t->size, 16 * 34);
    float back[512];
    pd_dtype_traits(PD_DTYPE_Q8_0)->to_f32(t->data, back, 512);
    for (int i = 0; i < 512; i++) {
        assert_true(fabsf(back[i] - src[i]) < 0.01f);
    }
    pd_gguf_close(&g);
    free(f.buf);
}

static void test_write_file_and_open(void **state)
{
    (void)state;
    char dir[] = "/tmp/pd_test_gguf_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    struct pd_gguf_writer *w = small_model();
    struct pd_err err = {0};
    assert_int_equal(pd_gguf_writer_write_file(w, path, &err), PD_OK);
    /* Writing again replaces the file atomically. */
    assert_int_equal(pd_gguf_writer_write_file(w, path, &err), PD_OK);
    char bad[160];
    snprintf(bad, sizeof bad, "%s/missing/m.gguf", dir);
    assert_int_equal(pd_gguf_writer_write_file(w, bad, &err), PD_EIO);
    assert_non_null(strstr(err.msg, "missing/m.gguf"));
    pd_gguf_writer_close(&w);

    struct pd_gguf *g = NULL;
    assert_int_equal(pd_gguf_open(path, &g, &err), PD_OK);
    assert_int_equal(g->owns_map, 1);
    assert_string_equal(g->path, path);
    struct pd_gguf_str arch;
    assert_int_equal(pd_gguf_get_str(g, "general.architecture", &arch, NULL), PD_OK);
    assert_true(pd_gguf_str_eq(arch, "llama"));
    const struct pd_gguf_tensor *t = pd_gguf_find_tensor(g, "a.weight");
    assert_non_null(t);
    assert_true(((const float *)t->data)[5] == 5.0f);
    pd_gguf_close(&g);

    /* Only m.gguf is left: no temp files. */
    char cmd[200];
    snprintf(cmd, sizeof cmd, "test \"$(ls %s)\" = m.gguf", dir);
    assert_int_equal(system(cmd), 0);

    /* Open errors: missing file, directory, empty file. */
    assert_int_equal(pd_gguf_open(bad, &g, &err), PD_EIO);
    assert_null(g);
    assert_non_null(strstr(err.msg, bad));
    assert_int_equal(pd_gguf_open(dir, &g, &err), PD_EIO);
    assert_non_null(strstr(err.msg, "not a regular file"));
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(pd_gguf_open(path, &g, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "header: truncated"));
    unlink(path);
    rmdir(dir);
}

/* ---- typed getters ---- */

static void test_getters(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = writer();
    assert_int_equal(pd_gguf_writer_add_u8(w, "k.u8", 7, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_i32(w, "k.neg", -1, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_i64(w, "k.i64", 1ll << 40, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_u64(w, "k.u64", 1ull << 63, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_f32(w, "k.f32", 0.5f, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_f64(w, "k.f64", 1e10, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_f64(w, "k.f64big", 1e300, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_bool(w, "k.bool", false, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_str(w, "k.str", "s", NULL), PD_OK);
    const int32_t ints[] = {1, 2};
    assert_int_equal(pd_gguf_writer_add_arr(w, "k.arr", PD_GGUF_INT32, ints, 2, NULL), PD_OK);
    struct file f;
    finish(&w, &f);
    struct pd_gguf *g = open_ok(&f);
    struct pd_err err;
    uint32_t u32 = 0;
    uint64_t u64 = 0;
    float f32 = 0;
    bool b = true;
    struct pd_gguf_str s;
    const struct pd_gguf_kv *kv;

    assert_int_equal(pd_gguf_get_u32(g, "k.u8", &u32, &err), PD_OK);
    assert_int_equal(u32, 7);
    assert_int_equal(pd_gguf_get_u64(g, "k.i64", &u64, &err), PD_OK);
    assert_true(u64 == 1ull << 40);
    assert_int_equal(pd_gguf_get_u64(g, "k.u64", &u64, &err), PD_OK);
    assert_true(u64 == 1ull << 63);
    assert_int_equal(pd_gguf_get_f32(g, "k.f32", &f32, &err), PD_OK);
    assert_true(f32 == 0.5f);
    assert_int_equal(pd_gguf_get_f32(g, "k.f64", &f32, &err), PD_OK);
    assert_true(f32 == 1e10f);
    assert_int_equal(pd_gguf_get_f32(g, "k.u8", &f32, &err), PD_OK);
    assert_true(f32 == 7.0f);
    assert_int_equal(pd_gguf_get_bool(g, "k.bool", &b, &err), PD_OK);
    assert_false(b);
    assert_int_equal(pd_gguf_get_str(g, "k.str", &s, &err), PD_OK);
    assert_true(pd_gguf_str_eq(s, "s"));
    assert_int_equal(pd_gguf_get_arr(g, "k.arr", PD_GGUF_INT32, &kv, &err), PD_OK);
    assert_int_equal(kv->v.arr.n, 2);

    /* Absent: PD_EINVAL with err untouched. */
    strcpy(err.msg, "sentinel");
    err.status = PD_OK;
    assert_int_equal(pd_gguf_get_u32(g, "k.absent", &u32, &err), PD_EINVAL);
    assert_int_equal(pd_gguf_get_u64(g, "k.absent", &u64, &err), PD_EINVAL);
    assert_int_equal(pd_gguf_get_f32(g, "k.absent", &f32, &err), PD_EINVAL);
    assert_int_equal(pd_gguf_get_bool(g, "k.absent", &b, &err), PD_EINVAL);
    assert_int_equal(pd_gguf_get_str(g, "k.absent", &s, &err), PD_EINVAL);
    assert_int_equal(pd_gguf_get_arr(g, "k.absent", PD_GGUF_INT32, &kv, &err), PD_EINVAL);
    assert_string_equal(err.msg, "sentinel");
    assert_int_equal(u32, 7); /* outputs untouched too */

    /* Wrong type or out of range: PD_EFORMAT naming the file and the key. */
    u32 = 99;
    assert_int_equal(pd_gguf_get_u32(g, "k.neg", &u32, &err), PD_EFORMAT);
    assert_string_equal(err.msg, "t.gguf: key 'k.neg': value -1 does not fit uint32");
    assert_int_equal(u32, 99);
    assert_int_equal(pd_gguf_get_u32(g, "k.i64", &u32, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "key 'k.i64'"));
    assert_int_equal(pd_gguf_get_u32(g, "k.str", &u32, &err), PD_EFORMAT);
    assert_string_equal(err.msg, "t.gguf: key 'k.str': type string, expected an integer (uint32)");
    assert_int_equal(pd_gguf_get_u64(g, "k.f32", &u64, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "key 'k.f32': type float32"));
    assert_int_equal(pd_gguf_get_u64(g, "k.bool", &u64, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "key 'k.bool'"));
    assert_int_equal(pd_gguf_get_f32(g, "k.str", &f32, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "key 'k.str'"));
    assert_int_equal(pd_gguf_get_f32(g, "k.f64big", &f32, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "key 'k.f64big': value 1e+300 does not fit float32"));
    assert_int_equal(pd_gguf_get_bool(g, "k.u8", &b, &err), PD_EFORMAT);
    assert_string_equal(err.msg, "t.gguf: key 'k.u8': type uint8, expected bool");
    assert_int_equal(pd_gguf_get_str(g, "k.arr", &s, &err), PD_EFORMAT);
    assert_string_equal(err.msg, "t.gguf: key 'k.arr': type array, expected string");
    assert_int_equal(pd_gguf_get_arr(g, "k.arr", PD_GGUF_STRING, &kv, &err), PD_EFORMAT);
    assert_string_equal(err.msg,
                        "t.gguf: key 'k.arr': array of int32, expected array of string");
    assert_int_equal(pd_gguf_get_arr(g, "k.u8", PD_GGUF_UINT8, &kv, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "key 'k.u8': type uint8, expected array of uint8"));

    assert_string_equal(pd_gguf_vtype_name(PD_GGUF_FLOAT64), "float64");
    assert_string_equal(pd_gguf_vtype_name(PD_GGUF_VTYPE_COUNT), "?");
    pd_gguf_close(&g);
    free(f.buf);
}

/* ---- the writer's own checks ---- */

static void test_writer_rejects_bad_input(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = writer();
    struct pd_err err;
    float data[64] = {0};
    uint64_t ne[5] = {32, 1, 1, 1, 1};
    assert_int_equal(pd_gguf_writer_add_u32(w, "k", 1, &err), PD_OK);
    assert_int_equal(pd_gguf_writer_add_str(w, "k", "again", &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "key 'k': already present"));
    assert_int_equal(pd_gguf_writer_add_u8(w, "", 1, &err), PD_EINVAL);
    assert_int_equal(pd_gguf_writer_add_arr(w, "arr", PD_GGUF_STRING, data, 1, &err), PD_EINVAL);
    assert_int_equal(pd_gguf_writer_add_arr(w, "arr", PD_GGUF_ARRAY, data, 1, &err), PD_EINVAL);
    assert_int_equal(pd_gguf_writer_set_alignment(w, 48, &err), PD_EINVAL);
    assert_int_equal(pd_gguf_writer_set_alignment(w, 0, &err), PD_EINVAL);
    assert_int_equal(pd_gguf_writer_add_u32(w, "general.alignment", 24, &err), PD_EINVAL);
    assert_int_equal(pd_gguf_writer_add_u64(w, "general.alignment", 64, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "must be uint32"));
    assert_int_equal(pd_gguf_writer_add_tensor(w, "t", 1, ne, PD_DTYPE_F32, data, 128, &err),
                     PD_OK);
    assert_int_equal(pd_gguf_writer_add_tensor(w, "t", 1, ne, PD_DTYPE_F32, data, 128, &err),
                     PD_EINVAL);
    assert_non_null(strstr(err.msg, "tensor 't': already present"));
    assert_int_equal(pd_gguf_writer_add_tensor(w, "u", 1, ne, PD_DTYPE_F32, data, 127, &err),
                     PD_EINVAL);
    assert_non_null(strstr(err.msg, "tensor 'u': 127 data bytes given, f32 needs 128"));
    assert_int_equal(pd_gguf_writer_add_tensor(w, "u", 0, ne, PD_DTYPE_F32, data, 128, &err),
                     PD_EINVAL);
    assert_int_equal(pd_gguf_writer_add_tensor(w, "u", 5, ne, PD_DTYPE_F32, data, 128, &err),
                     PD_EINVAL);
    assert_non_null(strstr(err.msg, "n_dims 5"));
    assert_int_equal(pd_gguf_writer_add_tensor(w, "u", 1, ne, PD_DTYPE_Q8_K, data, 128, &err),
                     PD_EINVAL);
    uint64_t ne_bad[2] = {16, 1};
    assert_int_equal(pd_gguf_writer_add_tensor(w, "u", 2, ne_bad, PD_DTYPE_Q8_0, data, 17,
                                               &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "block size 32"));
    uint64_t ne_zero[2] = {32, 0};
    assert_int_equal(pd_gguf_writer_add_tensor(w, "u", 2, ne_zero, PD_DTYPE_F32, data, 0, &err),
                     PD_EINVAL);
    assert_int_equal(pd_gguf_writer_set_tensor_offset(w, 1, 0, &err), PD_EINVAL);
    /* The accepted parts still make a valid file. */
    assert_int_equal(pd_gguf_writer_add_u32(w, "general.alignment", 16, &err), PD_OK);
    struct file f;
    finish(&w, &f);
    struct pd_gguf *g = open_ok(&f);
    assert_int_equal(g->n_kv, 2);
    assert_int_equal(g->n_tensors, 1);
    assert_int_equal(g->alignment, 16);
    pd_gguf_close(&g);
    free(f.buf);
}

/* The writer's layout report matches what it wrote. */
static void test_writer_layout_and_fields(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = small_model();
    struct file f;
    void *buf;
    size_t len;
    assert_int_equal(pd_gguf_writer_write_mem(w, &buf, &len, NULL), PD_OK);
    f.buf = buf;
    f.len = len;
    pd_gguf_writer_layout(w, &f.layout);
    assert_int_equal(f.layout.kv_start, 24);
    assert_memory_equal(f.buf, "GGUF", 4);
    assert_int_equal(f.buf[4], 3);
    assert_int_equal(f.buf[8], 3);  /* n_tensors */
    assert_int_equal(f.buf[16], 3); /* n_kv */
    assert_true(f.layout.tensor_info_start < f.layout.padding_start);
    assert_int_equal(f.layout.data_start % 32, 0);
    assert_int_equal(f.len % 32, 0);
    const struct pd_gguf_writer_field *fields;
    size_t n = pd_gguf_writer_fields(w, &fields);
    assert_true(n > 10);
    assert_string_equal(fields[0].what, "version");
    assert_int_equal(fields[0].pos, 4);
    uint64_t pos = field_pos(w, "tensor offset", 1);
    assert_int_equal(f.buf[pos], 64); /* a.weight: 64 bytes at 0, b.weight at 64 */
    pd_gguf_writer_close(&w);
    free(f.buf);
}

/* ---- corrupt input: one test per rule ---- */

static void test_reject_bad_magic(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = small_model();
    struct file f;
    finish(&w, &f);
    f.buf[0] = 'X';
    expect_reject(&f, PD_EFORMAT, "magic", "not a GGUF file", "58 47 55 46");
    expect_reject_n("GGU", 3, PD_EFORMAT, "header: truncated", NULL);
    expect_reject_n("", 0, PD_EFORMAT, "header: truncated", NULL);
    free(f.buf);
}

static void test_reject_version_1(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = small_model();
    pd_gguf_writer_set_version(w, 1);
    struct file f;
    finish(&w, &f);
    expect_reject(&f, PD_EUNSUPPORTED, "version: 1 is not supported");
    put_u32(f.buf + 4, 4);
    expect_reject(&f, PD_EUNSUPPORTED, "version: 4 is not supported");
    put_u32(f.buf + 4, 0x03000000); /* a big-endian v3 file */
    expect_reject(&f, PD_EUNSUPPORTED, "version", "big-endian");
    free(f.buf);
}

/* Every truncation of a valid file before the end of the last tensor's data fails cleanly;
 * each section's truncation names the section's field. */
static void test_reject_truncated_each_section(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = small_model();
    struct file f;
    finish(&w, &f);
    struct pd_gguf *g = open_ok(&f);
    const struct pd_gguf_tensor *last = pd_gguf_find_tensor(g, "c.weight");
    size_t data_end = (size_t)(g->data_offset + last->offset + last->size);
    pd_gguf_close(&g);
    for (size_t len = 0; len < data_end; len++) {
        /* A fresh copy of exactly len bytes so ASan catches any read past it. */
        uint8_t *cut = malloc(len ? len : 1);
        assert_non_null(cut);
        memcpy(cut, f.buf, len);
        struct pd_err err = {0};
        enum pd_status rc = pd_gguf_open_mem(cut, len, NAME, &g, &err);
        assert_int_equal(rc, PD_EFORMAT);
        assert_null(g);
        assert_true(strlen(err.msg) > strlen(NAME) + 2);
        free(cut);
    }
    /* Trailing padding after the last tensor is optional. */
    struct pd_err err = {0};
    assert_int_equal(pd_gguf_open_mem(f.buf, data_end, NAME, &g, &err), PD_OK);
    pd_gguf_close(&g);

    expect_reject_n(f.buf, 20, PD_EFORMAT, "header: truncated", NULL);
    expect_reject_n(f.buf, f.layout.kv_start + 4, PD_EFORMAT, "n_kv", "cannot fit", NULL);
    expect_reject_n(f.buf, f.layout.tensor_info_start - 2, PD_EFORMAT,
                    "key 'tokenizer.ggml.tokens': element 2: truncated", NULL);
    expect_reject_n(f.buf, f.layout.padding_start - 3, PD_EFORMAT, "tensor 'c.weight': offset",
                    "truncated", NULL);
    expect_reject_n(f.buf, f.layout.data_start - 1, PD_EFORMAT, "data section", "past end",
                    NULL);
    expect_reject_n(f.buf, f.layout.data_start + 10, PD_EFORMAT,
                    "tensor 'a.weight': offset 0: data runs past end of file (needs 64 bytes, "
                    "10 left)", NULL);
    free(f.buf);
}

/* Truncation inside the metadata when the counts still fit: the failing field is named. */
static void test_reject_truncated_metadata_field(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = writer();
    assert_int_equal(pd_gguf_writer_add_u64(w, "first", 1, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_str(w, "second.key", "0123456789abcdef0123456789", NULL),
                     PD_OK);
    struct file f;
    finish(&w, &f);
    /* Cut in the middle of the second value's string bytes. */
    expect_reject_n(f.buf, f.layout.padding_start - 10, PD_EFORMAT, "key 'second.key': value",
                    "string length 26 runs past end of file", NULL);
    free(f.buf);
}

static void test_reject_huge_counts(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = small_model();
    struct file f;
    finish(&w, &f);
    uint8_t *orig = malloc(f.len);
    memcpy(orig, f.buf, f.len);
    put_u64(f.buf + 16, UINT64_MAX);
    expect_reject(&f, PD_EFORMAT, "n_kv", "exceeds the maximum");
    put_u64(f.buf + 16, 1000);
    expect_reject(&f, PD_EFORMAT, "n_kv: 1000 pairs cannot fit");
    memcpy(f.buf, orig, f.len);
    put_u64(f.buf + 8, 1ull << 40);
    expect_reject(&f, PD_EFORMAT, "n_tensors", "exceeds the maximum");
    put_u64(f.buf + 8, 4000);
    expect_reject(&f, PD_EFORMAT, "n_tensors: 4000 tensor infos cannot fit");
    put_u64(f.buf + 8, 4); /* one more than present: runs into the padding/data */
    expect_reject(&f, PD_EFORMAT, "tensor[3]");
    memcpy(f.buf, orig, f.len);
    free(orig);
    free(f.buf);

    /* Array counts: beyond the maximum and beyond the bytes left. */
    w = small_model();
    finish(&w, &f);
    w = small_model();
    void *tmp;
    size_t tl;
    assert_int_equal(pd_gguf_writer_write_mem(w, &tmp, &tl, NULL), PD_OK);
    uint64_t pos = field_pos(w, "array count", 0);
    free(tmp);
    pd_gguf_writer_close(&w);
    put_u64(f.buf + pos, UINT64_MAX);
    expect_reject(&f, PD_EFORMAT, "key 'tokenizer.ggml.tokens': array count", "maximum");
    put_u64(f.buf + pos, 1u << 29);
    expect_reject(&f, PD_EFORMAT, "key 'tokenizer.ggml.tokens': array count",
                  "run past end of file");
    put_u64(f.buf + pos, 40); /* fits the byte bound, runs into the tensor infos */
    expect_reject(&f, PD_EFORMAT, "key 'tokenizer.ggml.tokens': element");
    free(f.buf);
}

static void test_reject_string_length_past_end(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = small_model();
    void *tmp;
    size_t tl;
    assert_int_equal(pd_gguf_writer_write_mem(w, &tmp, &tl, NULL), PD_OK);
    struct file f = {.buf = tmp, .len = tl};
    uint8_t *orig = malloc(f.len);
    memcpy(orig, f.buf, f.len);
    /* The value of general.architecture: string length 1 of the file. */
    uint64_t pos = field_pos(w, "string length", 0);
    put_u64(f.buf + pos, f.len);
    expect_reject(&f, PD_EFORMAT, "key 'general.architecture': value",
                  "runs past end of file");
    put_u64(f.buf + pos, UINT64_MAX);
    expect_reject(&f, PD_EFORMAT, "key 'general.architecture': value",
                  "exceeds the maximum");
    /* A key length. */
    memcpy(f.buf, orig, f.len);
    put_u64(f.buf + field_pos(w, "key length", 1), 1ull << 32);
    expect_reject(&f, PD_EFORMAT, "kv[1]: key", "string length");
    /* A string inside a string array. */
    memcpy(f.buf, orig, f.len);
    put_u64(f.buf + field_pos(w, "string length", 2), 5000);
    expect_reject(&f, PD_EFORMAT, "key 'tokenizer.ggml.tokens': element 1",
                  "string length 5000 runs past end of file");
    /* A tensor name. */
    memcpy(f.buf, orig, f.len);
    put_u64(f.buf + field_pos(w, "string length", 4), 1ull << 31);
    expect_reject(&f, PD_EFORMAT, "tensor[0]: name");
    pd_gguf_writer_close(&w);
    free(orig);
    free(f.buf);
}

static void test_reject_bad_alignment(void **state)
{
    (void)state;
    static const struct {
        uint32_t type;
        uint8_t value[8];
        size_t n;
        const char *needle;
    } cases[] = {
        {PD_GGUF_UINT32, {48}, 4, "'general.alignment': 48 is not a power of two"},
        {PD_GGUF_UINT32, {0}, 4, "'general.alignment': 0 is not a power of two"},
        {PD_GGUF_UINT64, {32}, 8, "'general.alignment': type uint64, expected uint32"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pd_gguf_writer *w = small_model();
        assert_int_equal(pd_gguf_writer_add_kv_raw(w, "general.alignment", 17, cases[i].type,
                                                   cases[i].value, cases[i].n, NULL), PD_OK);
        struct file f;
        finish(&w, &f);
        expect_reject(&f, PD_EFORMAT, cases[i].needle);
        free(f.buf);
    }
}

static void test_reject_misaligned_offset(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = small_model();
    assert_int_equal(pd_gguf_writer_set_tensor_offset(w, 1, 72, NULL), PD_OK);
    struct file f;
    finish(&w, &f);
    expect_reject(&f, PD_EFORMAT,
                  "tensor 'b.weight': offset: 72 is not a multiple of the alignment 32");
    free(f.buf);
}

static void test_reject_tensor_past_end(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = small_model();
    assert_int_equal(pd_gguf_writer_set_tensor_offset(w, 2, 1ull << 40, NULL), PD_OK);
    struct file f;
    finish(&w, &f);
    expect_reject(&f, PD_EFORMAT, "tensor 'c.weight': offset 1099511627776: data runs past end "
                  "of file (needs 34 bytes, 0 left)");
    free(f.buf);
    /* Offset near UINT64_MAX: offset + size must not wrap. */
    w = small_model();
    assert_int_equal(pd_gguf_writer_set_tensor_offset(w, 2, UINT64_MAX - 31, NULL), PD_OK);
    finish(&w, &f);
    expect_reject(&f, PD_EFORMAT, "tensor 'c.weight'", "past end of file");
    free(f.buf);
    /* Just one byte short. */
    w = small_model();
    assert_int_equal(pd_gguf_writer_set_tensor_offset(w, 2, 128, NULL), PD_OK);
    finish(&w, &f);
    size_t data_len = f.len - f.layout.data_start; /* a 0..64, b 64..96, c 96..130, pad */
    assert_int_equal(data_len, 160);
    expect_reject(&f, PD_EFORMAT, "tensor 'c.weight': offset 128", "(needs 34 bytes, 32 left)");
    free(f.buf);
}

static void test_reject_overlapping_tensors(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = small_model();
    /* b.weight (32 bytes) moved inside a.weight (64 bytes at 0). */
    assert_int_equal(pd_gguf_writer_set_tensor_offset(w, 1, 32, NULL), PD_OK);
    struct file f;
    finish(&w, &f);
    expect_reject(&f, PD_EFORMAT, "tensor 'b.weight': offset 32: overlaps tensor 'a.weight' "
                  "(offset 0, 64 bytes)");
    free(f.buf);
    /* Same offset. */
    w = small_model();
    assert_int_equal(pd_gguf_writer_set_tensor_offset(w, 0, 96, NULL), PD_OK);
    finish(&w, &f);
    expect_reject(&f, PD_EFORMAT, "overlaps", "a.weight", "c.weight");
    free(f.buf);
}

static void test_reject_duplicate_key(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = small_model();
    uint8_t v[4] = {1};
    assert_int_equal(pd_gguf_writer_add_kv_raw(w, "llama.block_count", 17, PD_GGUF_UINT32, v, 4,
                                               NULL), PD_OK);
    struct file f;
    finish(&w, &f);
    expect_reject(&f, PD_EFORMAT, "key 'llama.block_count': duplicate key (kv[1] and kv[3])");
    free(f.buf);
}

static void test_reject_duplicate_tensor(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = small_model();
    uint64_t ne[1] = {8};
    float data[8] = {0};
    assert_int_equal(pd_gguf_writer_add_tensor_raw(w, "b.weight", 8, 1, ne, 0, data, 32, NULL),
                     PD_OK);
    struct file f;
    finish(&w, &f);
    expect_reject(&f, PD_EFORMAT, "tensor 'b.weight': duplicate tensor name");
    free(f.buf);
}

static void reject_raw_tensor(uint32_t n_dims, const uint64_t *ne, uint32_t type,
                              enum pd_status want, const char *needle)
{
    struct pd_gguf_writer *w = small_model();
    uint8_t data[64] = {0};
    assert_int_equal(pd_gguf_writer_add_tensor_raw(w, "blk.0.bad", 9, n_dims, ne, type, data,
                                                   sizeof data, NULL), PD_OK);
    struct file f;
    finish(&w, &f);
    expect_reject(&f, want, needle);
    free(f.buf);
}

static void test_reject_n_dims_0(void **state)
{
    (void)state;
    reject_raw_tensor(0, NULL, 0, PD_EFORMAT, "tensor 'blk.0.bad': n_dims: 0 is not in 1..4");
}

static void test_reject_n_dims_5(void **state)
{
    (void)state;
    uint64_t ne[5] = {2, 2, 2, 1, 1};
    reject_raw_tensor(5, ne, 0, PD_EFORMAT, "tensor 'blk.0.bad': n_dims: 5 is not in 1..4");
}

static void test_reject_ne_0(void **state)
{
    (void)state;
    uint64_t ne[3] = {4, 0, 2};
    reject_raw_tensor(3, ne, 0, PD_EFORMAT, "tensor 'blk.0.bad': ne[1]: is 0");
}

static void test_reject_ne_overflow(void **state)
{
    (void)state;
    uint64_t ne[4] = {1ull << 32, 1ull << 32, 1, 1};
    reject_raw_tensor(4, ne, 0, PD_EFORMAT, "tensor 'blk.0.bad': ne[1]: element count overflows");
    uint64_t ne2[2] = {1ull << 62, 2}; /* 2^63 elements fit int64? no: rejected */
    reject_raw_tensor(2, ne2, 0, PD_EFORMAT, "ne[1]: element count overflows");
    uint64_t ne3[1] = {1ull << 62}; /* 2^62 f32 elements: 2^64 bytes */
    reject_raw_tensor(1, ne3, 0, PD_EFORMAT, "tensor 'blk.0.bad': size in bytes overflows");
}

static void test_reject_ne0_not_block_multiple(void **state)
{
    (void)state;
    uint64_t ne[2] = {48, 1};
    reject_raw_tensor(2, ne, 8, PD_EFORMAT,
                      "tensor 'blk.0.bad': ne[0] 48 is not a multiple of the q8_0 block size 32");
}

static void test_reject_unsupported_type_id(void **state)
{
    (void)state;
    uint64_t ne[1] = {32};
    reject_raw_tensor(1, ne, 11, PD_EUNSUPPORTED, "tensor 'blk.0.bad': type: type id 11 (q3_K)");
    reject_raw_tensor(1, ne, 15, PD_EUNSUPPORTED, "tensor 'blk.0.bad': type: type id 15 (q8_K)");
    reject_raw_tensor(1, ne, 4000, PD_EUNSUPPORTED, "type id 4000 (unknown) is not supported");
}

static void test_reject_nested_array(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = small_model();
    uint8_t v[12 + 12 + 4]; /* elem ARRAY, count 1, then an inner array of u32 [1] */
    put_u32(v, PD_GGUF_ARRAY);
    put_u64(v + 4, 1);
    put_u32(v + 12, PD_GGUF_UINT32);
    put_u64(v + 16, 1);
    put_u32(v + 24, 7);
    assert_int_equal(pd_gguf_writer_add_kv_raw(w, "x.nested", 8, PD_GGUF_ARRAY, v, sizeof v,
                                               NULL), PD_OK);
    struct file f;
    finish(&w, &f);
    expect_reject(&f, PD_EUNSUPPORTED, "key 'x.nested': nested arrays are not supported");
    free(f.buf);
}

static void test_reject_invalid_value_type(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = small_model();
    uint8_t v[4] = {0};
    assert_int_equal(pd_gguf_writer_add_kv_raw(w, "x.bad", 5, 13, v, 4, NULL), PD_OK);
    struct file f;
    finish(&w, &f);
    expect_reject(&f, PD_EFORMAT, "key 'x.bad': value type: unknown value type 13");
    free(f.buf);
    /* An unknown array element type. */
    w = small_model();
    uint8_t a[12];
    put_u32(a, 0xFFFFFFFF);
    put_u64(a + 4, 0);
    assert_int_equal(pd_gguf_writer_add_kv_raw(w, "x.arr", 5, PD_GGUF_ARRAY, a, sizeof a, NULL),
                     PD_OK);
    finish(&w, &f);
    expect_reject(&f, PD_EFORMAT,
                  "key 'x.arr': array element type: unknown value type 4294967295");
    free(f.buf);
}

static void test_reject_bad_bool(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = small_model();
    uint8_t v = 2;
    assert_int_equal(pd_gguf_writer_add_kv_raw(w, "x.flag", 6, PD_GGUF_BOOL, &v, 1, NULL),
                     PD_OK);
    struct file f;
    finish(&w, &f);
    expect_reject(&f, PD_EFORMAT, "key 'x.flag': value: bool value 2 is not 0 or 1");
    free(f.buf);
    w = small_model();
    uint8_t a[12 + 3];
    put_u32(a, PD_GGUF_BOOL);
    put_u64(a + 4, 3);
    a[12] = 0;
    a[13] = 1;
    a[14] = 0xFF;
    assert_int_equal(pd_gguf_writer_add_kv_raw(w, "x.flags", 7, PD_GGUF_ARRAY, a, sizeof a,
                                               NULL), PD_OK);
    finish(&w, &f);
    expect_reject(&f, PD_EFORMAT, "key 'x.flags': element 2: bool value 255 is not 0 or 1");
    free(f.buf);
}

static void test_reject_bad_names(void **state)
{
    (void)state;
    uint8_t v[4] = {0};
    static const struct {
        const char *key;
        size_t n;
        const char *needle;
    } keys[] = {
        {"", 0, "kv[3]: key: empty"},
        {"bad\xff", 4, "kv[3]: key 'bad?': not valid UTF-8"},
        {"a\0b", 3, "kv[3]: key 'a?b': contains a NUL byte"},
        {"\xc0\xaf", 2, "not valid UTF-8"}, /* overlong encoding */
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        struct pd_gguf_writer *w = small_model();
        assert_int_equal(pd_gguf_writer_add_kv_raw(w, keys[i].key, keys[i].n, PD_GGUF_UINT32, v,
                                                   4, NULL), PD_OK);
        struct file f;
        finish(&w, &f);
        expect_reject(&f, PD_EFORMAT, keys[i].needle);
        free(f.buf);
    }
    static const struct {
        const char *name;
        size_t n;
        const char *needle;
    } names[] = {
        {"", 0, "tensor[3]: name: empty"},
        {"w\xed\xa0\x80", 4, "tensor[3]: name 'w\?\?\?': not valid UTF-8"}, /* surrogate */
    };
    uint64_t ne[1] = {8};
    float data[8] = {0};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct pd_gguf_writer *w = small_model();
        assert_int_equal(pd_gguf_writer_add_tensor_raw(w, names[i].name, names[i].n, 1, ne, 0,
                                                       data, sizeof data, NULL), PD_OK);
        struct file f;
        finish(&w, &f);
        expect_reject(&f, PD_EFORMAT, names[i].needle);
        free(f.buf);
    }
}

/* A vocabulary-only file (no tensors) may end right after its metadata. */
static void test_accept_no_tensors_without_padding(void **state)
{
    (void)state;
    struct pd_gguf_writer *w = writer();
    assert_int_equal(pd_gguf_writer_add_str(w, "general.architecture", "llama", NULL), PD_OK);
    struct file f;
    finish(&w, &f);
    size_t unpadded = (size_t)f.layout.padding_start;
    assert_true(unpadded < f.len);
    expect_reject_n(f.buf, unpadded - 1, PD_EFORMAT, "key 'general.architecture'", NULL);
    struct pd_gguf *g = NULL;
    assert_int_equal(pd_gguf_open_mem(f.buf, unpadded, NAME, &g, NULL), PD_OK);
    assert_int_equal(g->n_tensors, 0);
    assert_int_equal(g->data_offset, unpadded);
    pd_gguf_close(&g);
    /* With a large alignment the padded start lies past the end: still fine. */
    w = writer();
    assert_int_equal(pd_gguf_writer_set_alignment(w, 4096, NULL), PD_OK);
    free(f.buf);
    finish(&w, &f);
    assert_int_equal(pd_gguf_open_mem(f.buf, (size_t)f.layout.padding_start, NAME, &g, NULL),
                     PD_OK);
    assert_int_equal(g->data_offset, f.layout.padding_start);
    pd_gguf_close(&g);
    free(f.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_value_types),
        cmocka_unit_test(test_roundtrip_tensors_v3),
        cmocka_unit_test(test_roundtrip_tensors_v2),
        cmocka_unit_test(test_roundtrip_alignment_64_and_1),
        cmocka_unit_test(test_roundtrip_tensor_from_f32),
        cmocka_unit_test(test_write_file_and_open),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_writer_rejects_bad_input),
        cmocka_unit_test(test_writer_layout_and_fields),
        cmocka_unit_test(test_reject_bad_magic),
        cmocka_unit_test(test_reject_version_1),
        cmocka_unit_test(test_reject_truncated_each_section),
        cmocka_unit_test(test_reject_truncated_metadata_field),
        cmocka_unit_test(test_reject_huge_counts),
        cmocka_unit_test(test_reject_string_length_past_end),
        cmocka_unit_test(test_reject_bad_alignment),
        cmocka_unit_test(test_reject_misaligned_offset),
        cmocka_unit_test(test_reject_tensor_past_end),
        cmocka_unit_test(test_reject_overlapping_tensors),
        cmocka_unit_test(test_reject_duplicate_key),
        cmocka_unit_test(test_reject_duplicate_tensor),
        cmocka_unit_test(test_reject_n_dims_0),
        cmocka_unit_test(test_reject_n_dims_5),
        cmocka_unit_test(test_reject_ne_0),
        cmocka_unit_test(test_reject_ne_overflow),
        cmocka_unit_test(test_reject_ne0_not_block_multiple),
        cmocka_unit_test(test_reject_unsupported_type_id),
        cmocka_unit_test(test_reject_nested_array),
        cmocka_unit_test(test_reject_invalid_value_type),
        cmocka_unit_test(test_reject_bad_bool),
        cmocka_unit_test(test_reject_bad_names),
        cmocka_unit_test(test_accept_no_tensors_without_padding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
