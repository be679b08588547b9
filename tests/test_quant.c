/* test_quant.c - engine/dtype + engine/quant: the type-traits table, half/bfloat16
 * conversions (exhaustive), each block format's bit layout (hand-built blocks with known
 * bytes), the reference quantisers, quantisation error bounds, and the key property of
 * the dot products: vec_dot(w, x) equals the double-precision dot of the dequantised
 * operands to float rounding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "half.h"
#include "quant.h"
#include "simd.h"

/* ---- helpers --------------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void)
{
    /* splitmix64: deterministic across platforms */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_uniform(void) /* [0, 1) */
{
    return (double)(rng_next() >> 11) * 0x1p-53;
}

static float rng_gauss(void)
{
    double u1 = rng_uniform();
    double u2 = rng_uniform();
    if (u1 < 1e-300) {
        u1 = 1e-300;
    }
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

static float f32_from_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    assert_non_null(p);
    return p;
}

/* Quantises x (n floats) to t and dequantises back into y. */
static void round_trip(enum pd_dtype t, const float *x, float *y, size_t n)
{
    const struct pd_dtype_traits *tr = pd_simd_traits(t);
    size_t bytes = (size_t)pd_dtype_row_size(t, n);
    assert_true(bytes > 0);
    void *buf = xmalloc(bytes);
    tr->from_f32(x, buf, n);
    tr->to_f32(buf, y, n);
    free(buf);
}

static double rel_rms(const float *x, const float *y, size_t n)
{
    double num = 0.0;
    double den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)y[i] - (double)x[i];
        num += e * e;
        den += (double)x[i] * (double)x[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static void put_f16(uint8_t *p, uint16_t h)
{
    memcpy(p, &h, 2);
}

/* ---- traits ---------------------------------------------------------------------- */

static void test_traits_table(void **state)
{
    (void)state;
    static const struct {
        enum pd_dtype t;
        const char *name;
        uint32_t ggml_id, block, bytes;
        enum pd_dtype vdt;
    } want[] = {
        {PD_DTYPE_F32, "f32", 0, 1, 4, PD_DTYPE_F32},
        {PD_DTYPE_F16, "f16", 1, 1, 2, PD_DTYPE_F16},
        {PD_DTYPE_BF16, "bf16", 30, 1, 2, PD_DTYPE_BF16},
        {PD_DTYPE_Q8_0, "q8_0", 8, 32, 34, PD_DTYPE_Q8_0},
        {PD_DTYPE_Q4_0, "q4_0", 2, 32, 18, PD_DTYPE_Q8_0},
        {PD_DTYPE_Q4_K, "q4_k", 12, 256, 144, PD_DTYPE_Q8_K},
        {PD_DTYPE_Q5_K, "q5_k", 13, 256, 176, PD_DTYPE_Q8_K},
        {PD_DTYPE_Q6_K, "q6_k", 14, 256, 210, PD_DTYPE_Q8_K},
        {PD_DTYPE_Q8_K, "q8_k", 15, 256, 292, PD_DTYPE_Q8_K},
        {PD_DTYPE_Q5_0, "q5_0", 6, 32, 22, PD_DTYPE_Q8_0},
        {PD_DTYPE_Q4_1, "q4_1", 3, 32, 20, PD_DTYPE_Q8_1},
        {PD_DTYPE_Q5_1, "q5_1", 7, 32, 24, PD_DTYPE_Q8_1},
        {PD_DTYPE_Q8_1, "q8_1", 9, 32, 36, PD_DTYPE_Q8_1},
    };
    _Static_assert(sizeof want / sizeof want[0] == PD_DTYPE_COUNT, "all types listed");
    for (size_t i = 0; i < PD_DTYPE_COUNT; i++) {
        const struct pd_dtype_traits *tr = pd_simd_traits(want[i].t);
        assert_string_equal(tr->name, want[i].name);
        assert_int_equal(tr->ggml_id, want[i].ggml_id);
        assert_int_equal(tr->block_size, want[i].block);
        assert_int_equal(tr->type_size, want[i].bytes);
        assert_int_equal(tr->vec_dot_type, want[i].vdt);
        assert_non_null(tr->to_f32);
        assert_non_null(tr->from_f32);
        assert_true((tr->vec_dot == NULL) == pd_dtype_activation_only(want[i].t));
        assert_int_equal(pd_dtype_parse(want[i].name), want[i].t);
        enum pd_dtype got;
        if (pd_dtype_activation_only(want[i].t)) {
            assert_int_equal(pd_dtype_from_ggml(want[i].ggml_id, &got), -1);
        } else {
            assert_int_equal(pd_dtype_from_ggml(want[i].ggml_id, &got), 0);
            assert_int_equal(got, want[i].t);
        }
    }
    assert_int_equal(pd_dtype_parse("Q4_K"), PD_DTYPE_Q4_K);
    assert_int_equal(pd_dtype_parse("q3_k"), PD_DTYPE_COUNT);
    enum pd_dtype got;
    assert_int_equal(pd_dtype_from_ggml(10, &got), -1);   /* q2_K: unsupported */
    assert_int_equal(pd_dtype_from_ggml(9999, &got), -1);
    assert_true(pd_dtype_row_size(PD_DTYPE_Q4_K, 4096) == 16 * 144);
    assert_true(pd_dtype_row_size(PD_DTYPE_Q8_0, 64) == 68);
    assert_true(pd_dtype_row_size(PD_DTYPE_Q4_K, 100) == 0);   /* not a block multiple */
    assert_true(pd_dtype_row_size(PD_DTYPE_F32, UINT64_MAX / 2) == 0); /* overflow */
}

/* ---- half / bfloat16 ------------------------------------------------------------- */

/* Independent reference: the value of a half computed with ldexp. */
static double half_value(uint16_t h)
{
    int sign = h >> 15;
    int exp = (h >> 10) & 31;
    int mant = h & 1023;
    double v;
    if (exp == 0) {
        v = ldexp((double)mant, -24);
    } else if (exp == 31) {
        v = mant ? NAN : INFINITY;
    } else {
        v = ldexp((double)(mant + 1024), exp - 25);
    }
    return sign ? -v : v;
}

static void test_f16_exhaustive(void **state)
{
    (void)state;
    float *row = xmalloc(65536 * sizeof(float));
    uint16_t *halves = xmalloc(65536 * sizeof(uint16_t));
    for (uint32_t h = 0; h < 65536; h++) {
        halves[h] = (uint16_t)h;
    }
    pd_f16_row_to_f32(halves, row, 65536);
    for (uint32_t h = 0; h < 65536; h++) {
        float f = pd_f16_to_f32((uint16_t)h);
        double ref = half_value((uint16_t)h);
        /* the row path (branch-free) is bit-identical to the scalar one */
        assert_true(f32_bits(row[h]) == f32_bits(f));
        if (isnan(ref)) {
            assert_true(isnan(f));
            uint16_t back = pd_f32_to_f16(f);
            assert_true((back & 0x7C00) == 0x7C00 && (back & 0x3FF) != 0); /* still NaN */
            assert_true((back & 0x8000) == (h & 0x8000));
            continue;
        }
        assert_true((double)f == ref);
        assert_true(!signbit(f) == !signbit(ref));
        assert_int_equal(pd_f32_to_f16(f), h); /* exact round trip */
#ifdef __FLT16_MAX__
        _Float16 hf;
        uint16_t hb = (uint16_t)h;
        memcpy(&hf, &hb, 2);
        assert_true(f32_bits((float)hf) == f32_bits(f));
#endif
    }
    /* row from_f32 agrees with the scalar conversion */
    uint16_t *back = xmalloc(65536 * sizeof(uint16_t));
    pd_f16_row_from_f32(row, back, 65536);
    for (uint32_t h = 0; h < 65536; h++) {
        if (!isnan(row[h])) {
            assert_int_equal(back[h], h);
        }
    }
    free(back);
    free(halves);
    free(row);
}

/* f32 -> f16 rounding: ties to even at every midpoint between adjacent finite halves,
 * one float ulp either side of it goes to the nearer half, overflow to infinity. */
static void test_f16_rounding(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x7BFF; h++) {
        double lo = half_value((uint16_t)h);
        double hi = half_value((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2.0); /* exact: halves have 11 significant bits */
        assert_true((double)mid == (lo + hi) / 2.0);
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        assert_int_equal(pd_f32_to_f16(mid), even);
        assert_int_equal(pd_f32_to_f16(-mid), even | 0x8000);
        assert_int_equal(pd_f32_to_f16(nextafterf(mid, 0.0f)), h);
        assert_int_equal(pd_f32_to_f16(nextafterf(mid, INFINITY)), h + 1);
    }
    /* beyond the largest half: 65504 + half an ulp (65520) rounds to infinity */
    assert_int_equal(pd_f32_to_f16(65519.996f), 0x7BFF);
    assert_int_equal(pd_f32_to_f16(65520.0f), 0x7C00);
    assert_int_equal(pd_f32_to_f16(-1e10f), 0xFC00);
    assert_int_equal(pd_f32_to_f16(INFINITY), 0x7C00);
    assert_int_equal(pd_f32_to_f16(0x1p-25f), 0);           /* tie below min subnormal */
    assert_int_equal(pd_f32_to_f16(nextafterf(0x1p-25f, 1.0f)), 1);
    assert_int_equal(pd_f32_to_f16(-0.0f), 0x8000);
#ifdef __FLT16_MAX__
    /* random float bit patterns against the compiler's conversion */
    for (int i = 0; i < 1000000; i++) {
        float f = f32_from_bits((uint32_t)rng_next());
        if (isnan(f)) {
            continue;
        }
        _Float16 hf = (_Float16)f;
        uint16_t want;
        memcpy(&want, &hf, 2);
        assert_int_equal(pd_f32_to_f16(f), want);
    }
#endif
}

static void test_bf16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = pd_bf16_to_f32((uint16_t)h);
        assert_true(f32_bits(f) == h << 16);
        uint16_t back = pd_f32_to_bf16(f);
        if (isnan(f)) {
            assert_true(isnan(pd_bf16_to_f32(back)));
            assert_true((back & 0x8000) == (h & 0x8000));
        } else {
            assert_int_equal(back, h);
        }
        uint16_t hb = (uint16_t)h;
        float row;
        pd_bf16_row_to_f32(&hb, &row, 1);
        assert_true(f32_bits(row) == f32_bits(f));
    }
    /* rounding against a double-precision nearest-even reference */
    for (int i = 0; i < 1000000; i++) {
        uint32_t bits = (uint32_t)rng_next();
        if (i < 1000) {
            bits = (bits & 0xFFFF0000u) | 0x8000u; /* exact ties */
        }
        float f = f32_from_bits(bits);
        if (isnan(f)) {
            continue;
        }
        uint16_t down = (uint16_t)(bits >> 16);
        double a = (double)pd_bf16_to_f32(down);
        double b = (double)pd_bf16_to_f32((uint16_t)(down + 1)); /* next away from zero */
        double da = fabs((double)f - a);
        double db = isinf(b) ? INFINITY : fabs(b - (double)f);
        if ((down & 0x7F80) == 0x7F00 && (down & 0x7F) == 0x7F) {
            /* largest finite: the value above is infinity, the tie point is its midpoint */
            db = fabs(ldexp(1.0, 128) - fabs((double)f));
        }
        uint16_t want = (da < db || (da == db && !(down & 1))) ? down : (uint16_t)(down + 1);
        assert_int_equal(pd_f32_to_bf16(f), want);
    }
}

/* ---- hand-built blocks: pin the bit layouts ------------------------------------- */

static void test_q8_0_layout(void **state)
{
    (void)state;
    uint8_t blk[34];
    put_f16(blk, 0x3400); /* 0.25 */
    for (int i = 0; i < 32; i++) {
        blk[2 + i] = (uint8_t)(int8_t)(i - 16);
    }
    float y[32];
    pd_q8_0_to_f32(blk, y, 32);
    for (int i = 0; i < 32; i++) {
        assert_true(y[i] == 0.25f * (float)(i - 16));
    }
    /* reference quantiser: d = amax/127, ties away from zero */
    float x[32] = {0};
    x[0] = 127.0f;
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = -0.4f;
    pd_q8_0_from_f32(x, blk, 32);
    assert_int_equal(blk[0] | (blk[1] << 8), 0x3C00); /* d = 1.0 */
    assert_int_equal((int8_t)blk[2], 127);
    assert_int_equal((int8_t)blk[3], 3);
    assert_int_equal((int8_t)blk[4], -3);
    assert_int_equal((int8_t)blk[5], 0);
}

static void test_q4_0_layout(void **state)
{
    (void)state;
    uint8_t blk[18];
    put_f16(blk, 0x4000); /* 2.0 */
    for (int i = 0; i < 16; i++) {
        blk[2 + i] = (uint8_t)(i | ((15 - i) << 4));
    }
    float y[32];
    pd_q4_0_to_f32(blk, y, 32);
    for (int i = 0; i < 16; i++) {
        assert_true(y[i] == 2.0f * (float)(i - 8));       /* low nibble: element i */
        assert_true(y[i + 16] == 2.0f * (float)(7 - i));  /* high nibble: element i+16 */
    }
    /* reference quantiser: the largest-magnitude value (-4) maps to code 0, d = 0.5 */
    float x[32];
    for (int i = 0; i < 32; i++) {
        x[i] = 0.5f * (float)((i % 16) - 8);
    }
    x[31] = 3.0f;
    pd_q4_0_from_f32(x, blk, 32);
    assert_int_equal(blk[0] | (blk[1] << 8), 0x3800); /* 0.5 */
    pd_q4_0_to_f32(blk, y, 32);
    for (int i = 0; i < 32; i++) {
        assert_true(y[i] == x[i]);
    }
    assert_int_equal(blk[2] & 0x0F, 0);  /* x[0] = -4 -> code 0 */
    assert_int_equal(blk[2 + 15] >> 4, 14); /* x[31] = 3 -> code 14 */
    /* a positive maximum gives a negative d; +4 also maps to code 0 */
    for (int i = 0; i < 32; i++) {
        x[i] = -x[i];
    }
    pd_q4_0_from_f32(x, blk, 32);
    assert_int_equal(blk[0] | (blk[1] << 8), 0xB800); /* -0.5 */
    pd_q4_0_to_f32(blk, y, 32);
    for (int i = 0; i < 32; i++) {
        assert_true(y[i] == x[i]);
    }
}

/* Scales sc = {1,2,3,4,5,6,7,63}, mins m = {0,1,2,3,10,20,33,63} packed by hand. */
static const uint8_t kq_scales_bytes[12] = {
    0x01, 0x02, 0x03, 0xC4, 0x00, 0x41, 0x82, 0xC3, 0xA5, 0x46, 0x17, 0xFF,
};
static const int kq_sc[8] = {1, 2, 3, 4, 5, 6, 7, 63};
static const int kq_m[8] = {0, 1, 2, 3, 10, 20, 33, 63};

static void test_q4_k_layout(void **state)
{
    (void)state;
    uint8_t blk[144];
    put_f16(blk, 0x3C00);     /* d = 1 */
    put_f16(blk + 2, 0x3800); /* dmin = 0.5 */
    memcpy(blk + 4, kq_scales_bytes, 12);
    for (int i = 0; i < 128; i++) {
        blk[16 + i] = (uint8_t)i;
    }
    float y[256];
    pd_q4_k_to_f32(blk, y, 256);
    /* spot values worked out by hand */
    assert_true(y[0] == 0.0f);
    assert_true(y[33] == -0.5f);    /* qs[1] >> 4 = 0, sub-block 1: -0.5 * 1 */
    assert_true(y[100] == 6.5f);    /* qs[36] >> 4 = 2, sub-block 3: 4*2 - 0.5*3 */
    assert_true(y[200] == 39.5f);   /* qs[104] & 15 = 8, sub-block 6: 7*8 - 0.5*33 */
    assert_true(y[255] == 409.5f);  /* qs[127] >> 4 = 7, sub-block 7: 63*7 - 0.5*63 */
    for (int e = 0; e < 256; e++) {
        int g = e / 64, r = e % 64;
        int q = r < 32 ? (blk[16 + 32 * g + r] & 15) : (blk[16 + 32 * g + r - 32] >> 4);
        int sub = 2 * g + (r >= 32);
        assert_true(y[e] == (float)(kq_sc[sub] * q) - 0.5f * (float)kq_m[sub]);
    }
}

static void test_q5_k_layout(void **state)
{
    (void)state;
    uint8_t blk[176];
    put_f16(blk, 0x3C00);
    put_f16(blk + 2, 0x3800);
    memcpy(blk + 4, kq_scales_bytes, 12);
    for (int l = 0; l < 32; l++) {
        blk[16 + l] = (uint8_t)(1u << (l % 8)); /* qh */
    }
    for (int i = 0; i < 128; i++) {
        blk[48 + i] = (uint8_t)i;
    }
    float y[256];
    pd_q5_k_to_f32(blk, y, 256);
    assert_true(y[0] == 16.0f);      /* qh[0] bit 0 set: code 16, sub-block 0 scale 1 */
    assert_true(y[1] == 1.0f);       /* qh[1] bit 0 clear: code 1 */
    assert_true(y[255] == 1417.5f);  /* qh[31] bit 7 set: code 7+16, 63*23 - 31.5 */
    for (int e = 0; e < 256; e++) {
        int g = e / 64, r = e % 64, l = r % 32;
        int half = r >= 32;
        int q = half ? (blk[48 + 32 * g + l] >> 4) : (blk[48 + 32 * g + l] & 15);
        q += ((blk[16 + l] >> (2 * g + half)) & 1) * 16;
        int sub = 2 * g + half;
        assert_true(y[e] == (float)(kq_sc[sub] * q) - 0.5f * (float)kq_m[sub]);
    }
}

static void test_q6_k_layout(void **state)
{
    (void)state;
    uint8_t blk[210];
    for (int i = 0; i < 128; i++) {
        blk[i] = (uint8_t)(i * 7 + 3); /* ql */
    }
    for (int i = 0; i < 64; i++) {
        blk[128 + i] = (uint8_t)(i * 37 + 11); /* qh */
    }
    for (int j = 0; j < 16; j++) {
        blk[192 + j] = (uint8_t)(int8_t)((j % 2 ? -1 : 1) * (j + 1)); /* scales */
    }
    put_f16(blk + 208, 0x3800); /* d = 0.5 */
    float y[256];
    pd_q6_k_to_f32(blk, y, 256);
    /* element 0: ql[0]=3 low nibble 3, qh[0]=11 bits 0-1 = 3 -> q = 3|48 = 51,
     * scale[0] = 1: 0.5 * 1 * (51 - 32) = 9.5 */
    assert_true(y[0] == 9.5f);
    /* element 200: h=1, k=2, l=8: ql[64+8]=(72*7+3)&255=251 high nibble 15, qh[32+8]=
     * (40*37+11)&255=211 bits 4-5 = 1 -> q = 15|16 = 31; scale[8+4+0] = 13:
     * 0.5 * 13 * (31 - 32) = -6.5 */
    assert_true(y[200] == -6.5f);
    for (int e = 0; e < 256; e++) {
        int h = e / 128, k = (e % 128) / 32, l = e % 32;
        int lo = blk[64 * h + l + 32 * (k & 1)];
        lo = k < 2 ? (lo & 15) : (lo >> 4);
        int q = lo | (((blk[128 + 32 * h + l] >> (2 * k)) & 3) << 4);
        int sc = (int8_t)blk[192 + 8 * h + 2 * k + l / 16];
        assert_true(y[e] == 0.5f * (float)sc * (float)(q - 32));
    }
}

static void test_q8_k_reference(void **state)
{
    (void)state;
    float x[256];
    for (int i = 0; i < 256; i++) {
        x[i] = (float)(i - 128);
    }
    uint8_t blk[292];
    pd_q8_k_from_f32(x, blk, 256);
    float d;
    memcpy(&d, blk, 4);
    /* max = -128: iscale = -127/-128, d = 128/127 exactly as an f32 reciprocal */
    assert_true(d == 1.0f / (127.0f / 128.0f));
    const int8_t *qs = (const int8_t *)(blk + 4);
    assert_int_equal(qs[0], -127);
    assert_int_equal(qs[128], 0);
    assert_int_equal(qs[255], 126); /* 127 * 127/128 = 126.008 */
    for (int i = 0; i < 256; i++) {
        assert_int_equal(qs[i], (int)rint((double)(127.0f / 128.0f) * (i - 128)));
    }
    for (int j = 0; j < 16; j++) {
        int16_t b;
        memcpy(&b, blk + 260 + 2 * j, 2);
        int s = 0;
        for (int l = 0; l < 16; l++) {
            s += qs[16 * j + l];
        }
        assert_int_equal(b, s);
    }
    float y[256];
    pd_q8_k_to_f32(blk, y, 256);
    for (int i = 0; i < 256; i++) {
        assert_true(y[i] == d * (float)qs[i]);
    }
    /* sign convention: a positive largest-magnitude value gets code -127 and d < 0 */
    for (int i = 0; i < 256; i++) {
        x[i] = (float)(128 - i) * 0.5f;
    }
    pd_q8_k_from_f32(x, blk, 256);
    memcpy(&d, blk, 4);
    assert_true(d == 1.0f / (-127.0f / 64.0f));
    assert_int_equal(qs[0], -127);
    assert_int_equal(qs[255], 126); /* -127/64 * -63.5 = 126.008 */
    pd_q8_k_to_f32(blk, y, 256);
    for (int i = 0; i < 256; i++) {
        assert_true(fabsf(y[i] - x[i]) <= fabsf(d) * 0.5f * 1.0001f);
    }
}

/* ---- quantiser round trips -------------------------------------------------------- */

struct err_case {
    enum pd_dtype t;
    double max_gauss; /* bound on relative RMS error for N(0,1) data */
    double max_unif;  /* and for uniform [-1, 1) data */
};

/* Bounds sit a few percent above what the quantisers achieve (printed by the test; the
 * data are deterministic), so a quantiser regression fails: e.g. dropping the K-quant
 * scale search raises q4_K to 0.077, q5_K to 0.038 and q6_K to 0.019 on Gaussian data.
 * These are the errors 4.5/5.5/6.6 bits per weight give on Gaussian data. */
static const struct err_case err_cases[] = {
    {PD_DTYPE_F16, 0.0005, 0.0005},
    {PD_DTYPE_BF16, 0.004, 0.004},
    {PD_DTYPE_Q8_0, 0.006, 0.0042},
    {PD_DTYPE_Q8_K, 0.0075, 0.0044},
    {PD_DTYPE_Q8_1, 0.006, 0.0042},
    {PD_DTYPE_Q4_0, 0.09, 0.068},
    {PD_DTYPE_Q5_0, 0.045, 0.034},
    {PD_DTYPE_Q4_1, 0.082, 0.063},
    {PD_DTYPE_Q5_1, 0.040, 0.031},
    {PD_DTYPE_Q4_K, 0.074, 0.058},
    {PD_DTYPE_Q5_K, 0.0375, 0.029},
    {PD_DTYPE_Q6_K, 0.018, 0.014},
};

static void test_round_trip_error(void **state)
{
    (void)state;
    const size_t n = 8192;
    float *x = xmalloc(n * sizeof(float));
    float *y = xmalloc(n * sizeof(float));
    for (size_t c = 0; c < sizeof err_cases / sizeof err_cases[0]; c++) {
        for (int dist = 0; dist < 2; dist++) {
            for (size_t i = 0; i < n; i++) {
                x[i] = dist == 0 ? rng_gauss() : (float)(2.0 * rng_uniform() - 1.0);
            }
            round_trip(err_cases[c].t, x, y, n);
            double e = rel_rms(x, y, n);
            double bound = dist == 0 ? err_cases[c].max_gauss : err_cases[c].max_unif;
            printf("  %-5s %-8s rel rms %.5f (bound %.4f)\n", pd_simd_traits(err_cases[c].t)->name,
                   dist == 0 ? "gauss" : "uniform", e, bound);
            assert_true(e < bound);
            /* scaled data: same relative error (no absolute thresholds hiding inside) */
            for (size_t i = 0; i < n; i++) {
                x[i] *= 1000.0f;
            }
            round_trip(err_cases[c].t, x, y, n);
            assert_true(rel_rms(x, y, n) < bound);
        }
    }
    free(y);
    free(x);
}

/* Types with blocks (all but f32, which is exact). */
static const enum pd_dtype quant_types[] = {
    PD_DTYPE_F16, PD_DTYPE_BF16, PD_DTYPE_Q8_0, PD_DTYPE_Q4_0, PD_DTYPE_Q5_0,
    PD_DTYPE_Q4_1, PD_DTYPE_Q5_1, PD_DTYPE_Q4_K, PD_DTYPE_Q5_K, PD_DTYPE_Q6_K, PD_DTYPE_Q8_K,
    PD_DTYPE_Q8_1,
};
#define N_QUANT_TYPES (sizeof quant_types / sizeof quant_types[0])

static void test_edge_zero(void **state)
{
    (void)state;
    const size_t n = 512;
    float x[512] = {0};
    float y[512];
    for (size_t c = 0; c < N_QUANT_TYPES; c++) {
        memset(y, 0xFF, sizeof y); /* NaN pattern: every element must be written */
        round_trip(quant_types[c], x, y, n);
        for (size_t i = 0; i < n; i++) {
            assert_true(y[i] == 0.0f);
        }
    }
    /* a zero weight row dots to exactly zero with any activation */
    float a[512];
    for (size_t i = 0; i < n; i++) {
        a[i] = rng_gauss();
    }
    for (int t = 0; t < PD_DTYPE_COUNT; t++) {
        const struct pd_dtype_traits *tr = pd_simd_traits((enum pd_dtype)t);
        if (!tr->vec_dot) {
            continue;
        }
        uint8_t w[2048], xa[2048];
        assert_true(pd_dtype_row_size((enum pd_dtype)t, n) <= sizeof w);
        tr->from_f32(x, w, n);
        pd_simd_traits(tr->vec_dot_type)->from_f32(a, xa, n);
        assert_true(tr->vec_dot(w, xa, n) == 0.0f);
        /* and a zero activation too */
        tr->from_f32(a, w, n);
        pd_simd_traits(tr->vec_dot_type)->from_f32(x, xa, n);
        assert_true(tr->vec_dot(w, xa, n) == 0.0f);
    }
}

/* Negative-only, positive-only, constant, one spike, large and small magnitudes: every
 * type decodes without NaN/inf and within a bound relative to the block's scale. */
static void test_edge_shapes(void **state)
{
    (void)state;
    const size_t n = 512;
    float x[512];
    float y[512];
    for (int shape = 0; shape < 7; shape++) {
        for (size_t i = 0; i < n; i++) {
            float g = rng_gauss();
            switch (shape) {
            case 0: x[i] = -fabsf(g) - 0.5f; break;            /* negative only */
            case 1: x[i] = fabsf(g) + 3.0f; break;             /* positive, offset */
            case 2: x[i] = -2.75f; break;                      /* constant */
            case 3: x[i] = i % 97 == 0 ? 50.0f : 0.01f * g; break; /* spikes */
            case 4: x[i] = 5e3f * g; break;                    /* large */
            case 5: x[i] = 1e-3f * g; break;                   /* small */
            default: x[i] = (i & 1) ? 1.0f : -1.0f; break;     /* two levels */
            }
        }
        for (size_t c = 0; c < N_QUANT_TYPES; c++) {
            enum pd_dtype t = quant_types[c];
            round_trip(t, x, y, n);
            double amax = 0.0;
            for (size_t i = 0; i < n; i++) {
                assert_true(isfinite(y[i]));
                amax = fmax(amax, fabs(x[i]));
            }
            /* loosest type (q4_0) has 16 levels over [-amax, amax] */
            for (size_t i = 0; i < n; i++) {
                assert_true(fabs((double)y[i] - x[i]) <= amax * 0.16);
            }
            if (shape == 0 || shape == 2) {
                for (size_t i = 0; i < n; i++) {
                    assert_true(y[i] <= 0.0f);
                }
            }
            /* q4_0 and q5_0 cannot hold +amax when the largest magnitude is negative
             * (their grids are -8..7 and -16..15 steps), so two symmetric levels are not
             * exact there */
            if (shape == 2 || (shape == 6 && t != PD_DTYPE_Q4_0 && t != PD_DTYPE_Q5_0)) {
                /* a couple of levels are represented exactly (or nearly) by every type */
                assert_true(rel_rms(x, y, n) < 0.01);
            }
        }
    }
    /* saturating values do not produce inf/NaN scales */
    for (size_t i = 0; i < n; i++) {
        x[i] = (i % 2 ? 1.0f : -1.0f) * 1e30f;
    }
    static const enum pd_dtype sat[] = {PD_DTYPE_Q8_0, PD_DTYPE_Q4_0, PD_DTYPE_Q5_0,
                                        PD_DTYPE_Q4_1, PD_DTYPE_Q5_1, PD_DTYPE_Q4_K,
                                        PD_DTYPE_Q5_K, PD_DTYPE_Q6_K};
    for (size_t c = 0; c < sizeof sat / sizeof sat[0]; c++) {
        round_trip(sat[c], x, y, n);
        for (size_t i = 0; i < n; i++) {
            assert_true(isfinite(y[i]));
            assert_true(y[i] == 0.0f || (y[i] > 0.0f) == (x[i] > 0.0f));
        }
    }
    /* NaN input must not crash or hit undefined conversions; the output is unspecified */
    for (size_t i = 0; i < n; i++) {
        x[i] = i == 7 ? NAN : rng_gauss();
    }
    for (size_t c = 0; c < N_QUANT_TYPES; c++) {
        round_trip(quant_types[c], x, y, n);
    }
}

/* ---- dot products ------------------------------------------------------------------ */

/* vec_dot(w, x) against sum(deq(w) * deq(x)) in double, for every weight type. The
 * tolerance scales with sum |deq(w) * deq(x)| so cancellation cannot hide errors. */
static void check_vec_dot(enum pd_dtype t, size_t n, int data)
{
    const struct pd_dtype_traits *tr = pd_simd_traits(t);
    const struct pd_dtype_traits *vt = pd_simd_traits(tr->vec_dot_type);
    float *w = xmalloc(n * sizeof(float));
    float *a = xmalloc(n * sizeof(float));
    float *wd = xmalloc(n * sizeof(float));
    float *ad = xmalloc(n * sizeof(float));
    void *wq = xmalloc((size_t)pd_dtype_row_size(t, n));
    void *aq = xmalloc((size_t)pd_dtype_row_size(tr->vec_dot_type, n));
    for (size_t i = 0; i < n; i++) {
        w[i] = data == 0 ? rng_gauss() : (float)(rng_uniform() - 0.3);
        a[i] = data == 0 ? 3.0f * rng_gauss() : (float)(rng_uniform() * 5.0);
    }
    tr->from_f32(w, wq, n);
    pd_simd_traits(tr->vec_dot_type)->from_f32(a, aq, n);
    tr->to_f32(wq, wd, n);
    vt->to_f32(aq, ad, n);
    double ref = 0.0;
    double mag = 0.0;
    double raw = 0.0;
    for (size_t i = 0; i < n; i++) {
        ref += (double)wd[i] * (double)ad[i];
        mag += fabs((double)wd[i] * (double)ad[i]);
        raw += (double)w[i] * (double)a[i];
    }
    double got = (double)tr->vec_dot(wq, aq, n);
    /* q4_1/q5_1: the offset term takes q8_1's s, a half of d * sum(qs) from the float d,
     * within 2^-10 of sum(deq(x)) relative (the half d and the half s) */
    double slack = 0.0;
    if (t == PD_DTYPE_Q4_1 || t == PD_DTYPE_Q5_1) {
        for (size_t b = 0; b < n / 32; b++) {
            double xs = 0.0;
            for (size_t l = 0; l < 32; l++) {
                xs += ad[b * 32 + l];
            }
            uint16_t mh;
            memcpy(&mh, (const uint8_t *)wq + b * tr->type_size + 2, 2);
            slack += 0x1p-10 * fabs((double)pd_f16_to_f32(mh) * xs);
        }
    }
    if (!(fabs(got - ref) <= 5e-7 * mag + slack + 1e-30)) {
        fail_msg("%s n=%zu: vec_dot %.9g, dequantised dot %.9g (|.| sum %.6g)", tr->name, n,
                 got, ref, mag);
    }
    /* and the quantised dot is near the exact one (quantisation error, loosely) */
    assert_true(fabs(got - raw) <= 0.15 * mag);
    free(aq);
    free(wq);
    free(ad);
    free(wd);
    free(a);
    free(w);
}

static void test_vec_dot_matches_dequant(void **state)
{
    (void)state;
    static const size_t sizes[] = {256, 512, 1280, 4096};
    for (int t = 0; t < PD_DTYPE_COUNT; t++) {
        if (!pd_simd_traits((enum pd_dtype)t)->vec_dot) {
            continue;
        }
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            for (int data = 0; data < 2; data++) {
                check_vec_dot((enum pd_dtype)t, sizes[s], data);
            }
        }
    }
    /* float types also for lengths that are not multiples of the 16 lanes */
    check_vec_dot(PD_DTYPE_F32, 37, 0);
    check_vec_dot(PD_DTYPE_F16, 5, 0);
    check_vec_dot(PD_DTYPE_BF16, 1, 1);
}

/* The dot of hand-built blocks with a one-hot q8_K activation picks out single decoded
 * weights times d: pins that vec_dot reads the same layout as to_f32 (incl. mins). */
static void test_vec_dot_one_hot(void **state)
{
    (void)state;
    static const enum pd_dtype kt[] = {PD_DTYPE_Q4_K, PD_DTYPE_Q5_K, PD_DTYPE_Q6_K};
    for (size_t c = 0; c < 3; c++) {
        const struct pd_dtype_traits *tr = pd_simd_traits(kt[c]);
        uint8_t w[210];
        for (size_t i = 0; i < tr->type_size; i++) {
            w[i] = (uint8_t)rng_next();
        }
        /* keep the f16 scales finite and modest */
        size_t doff = kt[c] == PD_DTYPE_Q6_K ? 208 : 0;
        put_f16(w + doff, 0x2E66);
        if (kt[c] != PD_DTYPE_Q6_K) {
            put_f16(w + 2, 0x2A66);
        }
        float wd[256];
        tr->to_f32(w, wd, 256);
        float wmax = 0.0f;
        for (int e = 0; e < 256; e++) {
            wmax = fmaxf(wmax, fabsf(wd[e]));
        }
        for (int e = 0; e < 256; e += 17) {
            float a[256] = {0};
            a[e] = 2.0f;
            uint8_t aq[292];
            pd_simd_traits(PD_DTYPE_Q8_K)->from_f32(a, aq, 256);
            float got = tr->vec_dot(w, aq, 256);
            /* q8_K codes the 2 as -127 with d = 1/-63.5; the tolerance is relative to the
             * block's largest value since q4_K/q5_K subtract a min (cancellation). */
            assert_true(fabsf(got - wd[e] * 2.0f) <= 1e-5f * wmax * 2.0f);
        }
    }
}

static void test_quant_row_for_dot(void **state)
{
    (void)state;
    static const enum pd_dtype vdts[] = {PD_DTYPE_F32, PD_DTYPE_F16, PD_DTYPE_BF16,
                                         PD_DTYPE_Q8_0, PD_DTYPE_Q8_K};
    float x[512];
    for (int i = 0; i < 512; i++) {
        x[i] = rng_gauss();
    }
    for (size_t c = 0; c < 5; c++) {
        size_t bytes = (size_t)pd_dtype_row_size(vdts[c], 512);
        uint8_t *a = xmalloc(bytes);
        uint8_t *b = xmalloc(bytes);
        pd_simd_traits(vdts[c])->from_f32(x, a, 512);
        pd_simd_traits(vdts[c])->from_f32(x, b, 512);
        assert_memory_equal(a, b, bytes);
        free(b);
        free(a);
    }
}

/* Quantisers are deterministic and idempotent on what they produced for the exact
 * types: re-quantising decoded q8_0 data reproduces the same bytes. */
static void test_q8_0_idempotent(void **state)
{
    (void)state;
    float x[256];
    float y[256];
    uint8_t a[8 * 34], b[8 * 34];
    for (int i = 0; i < 256; i++) {
        x[i] = rng_gauss();
    }
    pd_q8_0_from_f32(x, a, 256);
    pd_q8_0_to_f32(a, y, 256);
    pd_q8_0_from_f32(y, b, 256);
    for (int blk = 0; blk < 8; blk++) {
        /* the scale may move by one half-ulp rounding; the codes must not */
        assert_memory_equal(a + 34 * blk + 2, b + 34 * blk + 2, 32);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traits_table),
        cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_f16_rounding),
        cmocka_unit_test(test_bf16_exhaustive),
        cmocka_unit_test(test_q8_0_layout),
        cmocka_unit_test(test_q4_0_layout),
        cmocka_unit_test(test_q4_k_layout),
        cmocka_unit_test(test_q5_k_layout),
        cmocka_unit_test(test_q6_k_layout),
        cmocka_unit_test(test_q8_k_reference),
        cmocka_unit_test(test_round_trip_error),
        cmocka_unit_test(test_edge_zero),
        cmocka_unit_test(test_edge_shapes),
        cmocka_unit_test(test_vec_dot_matches_dequant),
        cmocka_unit_test(test_vec_dot_one_hot),
        cmocka_unit_test(test_quant_row_for_dot),
        cmocka_unit_test(test_q8_0_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
