/* quant_x86.c - the AVX2+FMA+F16C kernels: block dot products, tiled weight products,
 * activation quantisers, half-float row conversion and the attention kernels (the table
 * pd_simd_ops_avx2).
 *
 * DESIGN
 * - Every function carries __attribute__((target(...))) instead of the file being built
 *   with -mavx2, so the build stays baseline x86-64 and nothing here runs unless
 *   pd_cpu_simd_best() found the features (simd.c picks the table).
 * - Block layouts are those of quant.h, read through byte offsets and unaligned loads
 *   (GGUF rows are only 2-byte aligned).
 * - Integer sums are exact for any block contents. Signed-by-signed q8_0 products are
 *   widened to 16 bits in the dot product (the sign trick for _mm256_maddubs_epi16
 *   overflows on -128 * -128); the batched q8_0 tile uses the sign trick with the weight's
 *   sign, exact while the activation has no -128 (the quantiser gives one only for
 *   inputs past the half range, or NaN), and widens the blocks where it has.
 *   Unsigned-code-by-signed products use maddubs only where each pair sum stays below
 *   2^15 (codes <= 63 times |q8| <= 128: 16128), and q4_0's offset of 8 is subtracted as
 *   a second maddubs so no product is ever signed-by-signed.
 * - K-quant dot products reduce each super-block's integer sums horizontally and then
 *   evaluate the portable kernel's float expression, operation by operation, so they are
 *   bit-identical to it. Products that must round on their own are written as separate
 *   statements so no compiler contracts them into fused multiply-adds.
 * - q8_0/q4_0 and the float dot products accumulate in 8-lane FMA registers: equal to
 *   the portable order up to float rounding.
 * - Weight products over a batch (gemm) run in tiles of RM rows x RN tokens (RM * RN <= 8,
 *   f16/bf16 4 x 3; one 8-lane accumulator per pair, reduced together at the end by
 *   transposing add trees): each weight block is loaded and widened once for RN tokens,
 *   each activation block once for RM rows. q8_0, q4_0 and f16/bf16 tiles sum in another
 *   order than the portable dot (float rounding only); the q4_K, q5_K and q6_K tiles form
 *   each pair's exact super-block integers and evaluate the portable float expression on
 *   the 8 lanes at once, so they are bit-identical to the portable dot. A single token
 *   (decode) takes 8 x 1 tiles that fetch the next 8 rows ahead (q5_K: one dot product
 *   per row, which was faster).
 * - q4_K and q5_K weights are packed at load (avx2_q4_k_pack, avx2_q5_k_pack) into blocks
 *   of 8 rows whose super-blocks are transposed 4 bytes at a time, so one register holds 4
 *   codes (or fifth-bit bytes) of each of 8 rows: the product then puts rows in lanes
 *   (kq8_block: no horizontal sums, the headers unpacked for 8 rows at once, one stream
 *   per block) and stays bit-identical (q5_K, 1536 x 1536, 64 tokens: 42-43 -> 55-59
 *   GMAC/s; one token of 4096 x 4096: 20 -> 30).
 *   The tiles keep the file's layout (PONDER_PACK=0) and the rows past the last block.
 *   q4_0, q5_0, q4_1 and q5_1 are packed too (pack8_q_0: 8-row blocks, per block of 32
 *   the rows' scales, offsets and fifth bits (rearranged so one shift places them), and
 *   one register per 4 code bytes of each row), their product (q_0x8_block) likewise in
 *   lanes (1536 x 1536, 64 tokens: q5_0 29 -> 61 GMAC/s, q4_1 27 -> 74, q5_1 28 -> 58;
 *   one token of 4096 x 4096 18 -> 40, 22 -> 45, 17 -> 35), q8_0
 *   (avx2_q8_0_pack, the same layout with 8 code registers per block; q80x8_block: the
 *   sign trick per register, each register's magnitudes shared by 4 tokens; 1536 x 512,
 *   64 tokens: 38 -> 57 GMAC/s, one token of 4096 x 4096: 29 -> 42), and q6_K
 *   (avx2_q6_k_pack: per super-block the scale registers, three registers per 4 codes of
 *   each row (ql's two nibble sets and qh's bit pairs), the d halves; q6k8_block builds
 *   each register of codes once for up to 4 tokens). f16/bf16 rows a whole number of
 *   16-byte steps apart are packed per 8-row block and step of 8 elements
 *   (avx2_f16_pack), read by the same tiles in one stream (bit-identical); in prefill
 *   each 8-row block is widened to floats once for all tokens (half8_wide, the same bits).
 * - The quantisers reproduce the portable rounding exactly: round-half-away for q8_0 is
 *   built from truncation (exact), round-half-even for q8_K is the default rounding
 *   mode, and the clamps use max/min operand order so a NaN lands on the lower bound as
 *   fmaxf does. F16C converts with round-to-nearest-even like pd_f32_to_f16.
 * All functions are pure and thread-safe. */
#include "simd.h"

#if defined(__x86_64__)

#include <assert.h>
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "quant.h"
#include "simd_exp.h"

#define AVX2_FN __attribute__((target("avx2,fma,f16c")))

/* ---- helpers ----------------------------------------------------------------------- */

static inline AVX2_FN float hsum_f32x8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline AVX2_FN int32_t hsum_i32x8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* Largest lane; the lanes hold no NaN. */
static inline AVX2_FN float hmax_f32x8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline AVX2_FN float f16_load(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline float f32_load(const uint8_t *p)
{
    float f;
    memcpy(&f, p, 4);
    return f;
}

static inline AVX2_FN __m128i load128(const void *p)
{
    return _mm_loadu_si128((const __m128i *)p);
}

static inline AVX2_FN __m256i load256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* Eight halves at p as floats. */
static inline AVX2_FN __m256 load_f16x8(const void *p)
{
    return _mm256_cvtph_ps(load128(p));
}

/* Eight bfloat16 at p as floats (the high half of each float's bits). */
static inline AVX2_FN __m256 load_bf16x8(const void *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(p)), 16));
}

/* |v| per lane. */
static inline AVX2_FN __m256 abs_f32x8(__m256 v)
{
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

/* Clamps each lane to [lo, hi]; a NaN lane becomes lo (as fmaxf then fminf do). */
static inline AVX2_FN __m256 clamp_f32x8(__m256 v, float lo, float hi)
{
    /* maxps returns its second operand when either is NaN. */
    v = _mm256_max_ps(v, _mm256_set1_ps(lo));
    return _mm256_min_ps(v, _mm256_set1_ps(hi));
}

/* Narrows four vectors of int32 (each in [-128, 127]) to 32 int8 in lane order. */
static inline AVX2_FN __m256i pack_i32_to_i8(__m256i a, __m256i b, __m256i c, __m256i d)
{
    /* The packs work within 128-bit halves; the permute restores element order. */
    __m256i ab = _mm256_packs_epi32(a, b);
    __m256i cd = _mm256_packs_epi32(c, d);
    __m256i abcd = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* ---- f32 / f16 / bf16 ------------------------------------------------------------- */

static AVX2_FN float avx2_f32_vec_dot(const void *w, const void *x, size_t n)
{
    const float *a = w;
    const float *b = x;
    __m256 acc0 = _mm256_setzero_ps();
    __m256 acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps();
    __m256 acc3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    }
    float sum = hsum_f32x8(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; i++) {
        sum += a[i] * b[i];
    }
    return sum;
}

/* f16 and bf16 share the dot product; `bf16` is a constant at both calls, so each
 * format gets its own inlined copy with no branch in the loops. */
static inline AVX2_FN __m256 half_load8(const uint8_t *p, bool bf16)
{
    return bf16 ? load_bf16x8(p) : load_f16x8(p);
}

static inline AVX2_FN float half_load1(const uint8_t *p, bool bf16)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return bf16 ? pd_bf16_to_f32(h) : _cvtsh_ss(h);
}

static inline AVX2_FN __attribute__((always_inline)) float
half_vec_dot(const void *w, const void *x, size_t n, bool bf16)
{
    const uint8_t *a = w;
    const uint8_t *b = x;
    __m256 acc0 = _mm256_setzero_ps();
    __m256 acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(half_load8(a + 2 * i, bf16), half_load8(b + 2 * i, bf16), acc0);
        acc1 = _mm256_fmadd_ps(half_load8(a + 2 * i + 16, bf16),
                               half_load8(b + 2 * i + 16, bf16), acc1);
    }
    for (; i + 8 <= n; i += 8) {
        acc0 = _mm256_fmadd_ps(half_load8(a + 2 * i, bf16), half_load8(b + 2 * i, bf16), acc0);
    }
    float sum = hsum_f32x8(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) {
        sum += half_load1(a + 2 * i, bf16) * half_load1(b + 2 * i, bf16);
    }
    return sum;
}

static AVX2_FN float avx2_f16_vec_dot(const void *w, const void *x, size_t n)
{
    return half_vec_dot(w, x, n, false);
}

static AVX2_FN float avx2_bf16_vec_dot(const void *w, const void *x, size_t n)
{
    return half_vec_dot(w, x, n, true);
}

static AVX2_FN void avx2_f16_row_to_f32(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(dst + i, load_f16x8(s + 2 * i));
    }
    for (; i < n; i++) {
        dst[i] = f16_load(s + 2 * i);
    }
}

static AVX2_FN void avx2_f16_row_from_f32(const float *src, void *dst, size_t n)
{
    uint8_t *d = dst;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(d + 2 * i), h);
    }
    for (; i < n; i++) {
        uint16_t h = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
        memcpy(d + 2 * i, &h, 2);
    }
}

/* ---- q8_0 / q4_0 ------------------------------------------------------------------ */

/* Round half away from zero, exactly: trunc(v) is exact and so is v - trunc(v). NaN
 * stays NaN and infinities stay infinite. */
static inline AVX2_FN __m256 round_away_f32x8(__m256 v)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 one = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f)); /* +-1 */
    return _mm256_add_ps(t, _mm256_and_ps(up, one));
}

/* One block of the portable rule (quant.c): d = amax / 127 (clamped to the half range),
 * stored as a half at b; q = round-half-away(x * (1 / d)) with the unrounded d, clamped
 * to [-128, 127], stored at b + qs. Returns d; *sum (when set) gets sum(q). */
static inline AVX2_FN float q8_block(const float *x, uint8_t *b, size_t qs, int32_t *sum)
{
    __m256 v[4];
    __m256 vmax = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        vmax = _mm256_max_ps(abs_f32x8(v[k]), vmax); /* a NaN lane keeps vmax */
    }
    /* the portable fminf(fmaxf(amax / 127, -F16_MAX), F16_MAX): amax is never NaN (maxps
     * skips NaN lanes) nor negative, so one compare gives it without two library calls */
    float d = hmax_f32x8(vmax) / 127.0f;
    d = d < F16_MAX ? d : F16_MAX;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t h = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
    memcpy(b, &h, 2);
    __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; k++) {
        __m256 r = clamp_f32x8(round_away_f32x8(_mm256_mul_ps(v[k], vid)), -128.0f, 127.0f);
        q[k] = _mm256_cvttps_epi32(r);
    }
    _mm256_storeu_si256((__m256i *)(b + qs), pack_i32_to_i8(q[0], q[1], q[2], q[3]));
    if (sum) {
        __m256i t = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0x4E));
        u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0xB1));
        *sum = _mm_cvtsi128_si32(u);
    }
    return d;
}

static AVX2_FN void avx2_q8_0_from_f32(const float *src, void *dst, size_t n)
{
    assert(n % PD_QK8_0 == 0);
    uint8_t *b = dst;
    for (size_t i = 0; i < n / PD_QK8_0; i++, b += Q8_0_BYTES) {
        q8_block(src + i * PD_QK8_0, b, 2, NULL);
    }
}

/* q8_1: q8_0's rule with the codes at byte 4 and s = d * sum(q) from the float d, clamped
 * to the half range, as a half at byte 2. */
static AVX2_FN void avx2_q8_1_from_f32(const float *src, void *dst, size_t n)
{
    assert(n % PD_QK8_0 == 0);
    uint8_t *b = dst;
    for (size_t i = 0; i < n / PD_QK8_0; i++, b += Q8_1_BYTES) {
        int32_t sum;
        float d = q8_block(src + i * PD_QK8_0, b, 4, &sum);
        float sd = fminf(fmaxf((float)sum * d, -F16_MAX), F16_MAX);
        uint16_t h = _cvtss_sh(sd, _MM_FROUND_TO_NEAREST_INT);
        memcpy(b + 2, &h, 2);
    }
}

/* Sum of the products of 32 signed bytes at x and y, as 8 int32 lanes (exact). */
static inline AVX2_FN __m256i dot_i8x32(const uint8_t *x, const uint8_t *y)
{
    __m256i x0 = _mm256_cvtepi8_epi16(load128(x));
    __m256i y0 = _mm256_cvtepi8_epi16(load128(y));
    __m256i x1 = _mm256_cvtepi8_epi16(load128(x + 16));
    __m256i y1 = _mm256_cvtepi8_epi16(load128(y + 16));
    return _mm256_add_epi32(_mm256_madd_epi16(x0, y0), _mm256_madd_epi16(x1, y1));
}

static AVX2_FN float avx2_q8_0_vec_dot(const void *w, const void *x, size_t n)
{
    assert(n % PD_QK8_0 == 0);
    const uint8_t *a = w;
    const uint8_t *b = x;
    size_t nb = n / PD_QK8_0;
    /* Two accumulators so consecutive blocks do not wait on each other's FMA. */
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (size_t i = 0; i < nb; i++, a += Q8_0_BYTES, b += Q8_0_BYTES) {
        __m256 p = _mm256_cvtepi32_ps(dot_i8x32(a + 2, b + 2));
        float d = f16_load(a) * f16_load(b);
        acc[i & 1] = _mm256_fmadd_ps(p, _mm256_set1_ps(d), acc[i & 1]);
    }
    return hsum_f32x8(_mm256_add_ps(acc[0], acc[1]));
}

/* Byte l of a q4_0 block holds element l in its low nibble and l + 16 in its high one:
 * the codes 0..15 are multiplied unsigned, and 8 * y is subtracted in 16 bits. */
static AVX2_FN float avx2_q4_0_vec_dot(const void *w, const void *x, size_t n)
{
    assert(n % PD_QK4_0 == 0);
    const uint8_t *a = w;
    const uint8_t *b = x;
    size_t nb = n / PD_QK4_0;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m256i eight = _mm256_set1_epi8(8);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (size_t i = 0; i < nb; i++, a += Q4_0_BYTES, b += Q8_0_BYTES) {
        __m128i q = load128(a + 2);
        __m128i lo = _mm_and_si128(q, m4);
        __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
        __m256i codes = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
        __m256i y = load256(b + 2);
        /* Pair sums: |code * y| pairs <= 3840, |8 * y| pairs <= 2048: no saturation. */
        __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(codes, y),
                                       _mm256_maddubs_epi16(eight, y));
        __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
        float d = f16_load(a) * f16_load(b);
        acc[i & 1] = _mm256_fmadd_ps(p, _mm256_set1_ps(d), acc[i & 1]);
    }
    return hsum_f32x8(_mm256_add_ps(acc[0], acc[1]));
}

/* ---- K-quants ---------------------------------------------------------------------- */

/* The 8 six-bit scales and mins of q4_K/q5_K packed in 12 bytes p (see quant.c): for
 * j < 4, sc[j] and m[j] are the low 6 bits of p[j] and p[j + 4]; sc[j + 4] and m[j + 4]
 * have their low 4 bits in the low and high nibble of p[j + 8] and their top 2 bits in
 * the top bits of p[j] and p[j + 4]. Unpacked four bytes at a time: returns sc[0..7] in
 * bytes 0..7 and m[0..7] in bytes 8..15. */
static inline AVX2_FN __m128i kq_unpack_scales(const uint8_t *p)
{
    uint32_t w[3];
    memcpy(w, p, sizeof w);
    const uint32_t low6 = 0x3F3F3F3Fu, low4 = 0x0F0F0F0Fu, low2 = 0x03030303u;
    uint32_t sc_lo = w[0] & low6;
    uint32_t m_lo = w[1] & low6;
    uint32_t sc_hi = (w[2] & low4) | (((w[0] >> 6) & low2) << 4);
    uint32_t m_hi = ((w[2] >> 4) & low4) | (((w[1] >> 6) & low2) << 4);
    return _mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)m_lo, (int)m_hi);
}

/* Shuffle controls that broadcast the 16-bit lane k (0..7) of a 128-bit value to all 16
 * lanes of a 256-bit one (after it is copied to both halves). */
static inline AVX2_FN __m256i bcast16_ctrl(int k)
{
    return _mm256_set1_epi16((short)((2 * k) | ((2 * k + 1) << 8)));
}

/* sum over j < 16 of bsums[j] * m[j / 2]: the q4_K/q5_K min term; m16 holds m[0..7]
 * as 16-bit lanes. */
static inline AVX2_FN int32_t kq_min_sum(const uint8_t *y, __m128i m16)
{
    __m256i pairs = _mm256_madd_epi16(load256(y + Q8_K_BSUMS), _mm256_set1_epi16(1));
    return hsum_i32x8(_mm256_mullo_epi32(pairs, _mm256_cvtepu16_epi32(m16)));
}

/* 32 unsigned codes times 32 q8 values, each pair's sum times `scale`: 8 int32 lanes. */
static inline AVX2_FN __m256i dot_u8i8_scaled(__m256i codes, const uint8_t *q8, __m256i scale)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(codes, load256(q8)), scale);
}

/* The portable kernel's float combination: sum + d*dy*isum - dmin*dy*msum, each product
 * its own statement so it rounds as there. */
static inline float kq_combine(float sum, float d, float dmin, float dy, int32_t isum,
                               int32_t msum)
{
    float dd = d * dy;
    float dm = dmin * dy;
    float a = dd * (float)isum;
    float c = dm * (float)msum;
    float t = a - c;
    return sum + t;
}

static AVX2_FN float avx2_q4_k_vec_dot(const void *w, const void *x, size_t n)
{
    assert(n % PD_QK_K == 0);
    const uint8_t *b = w;
    const uint8_t *y = x;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float sum = 0.0f;
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q4_K_BYTES, y += Q8_K_BYTES) {
        __m128i scm = kq_unpack_scales(b + KQ_SCALES);
        __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scm));
        const uint8_t *qs = b + Q4_K_QS;
        const uint8_t *q8 = y + Q8_K_QS;
        __m256i acc = _mm256_setzero_si256();
        for (int g = 0; g < 4; g++) {
            /* Group g: low nibbles are sub-block 2g, high nibbles sub-block 2g + 1. */
            __m256i q4 = load256(qs + 32 * g);
            __m256i lo = _mm256_and_si256(q4, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            __m256i s1 = _mm256_shuffle_epi8(sc16, bcast16_ctrl(2 * g));
            __m256i s2 = _mm256_shuffle_epi8(sc16, bcast16_ctrl(2 * g + 1));
            acc = _mm256_add_epi32(acc, dot_u8i8_scaled(lo, q8 + 64 * g, s1));
            acc = _mm256_add_epi32(acc, dot_u8i8_scaled(hi, q8 + 64 * g + 32, s2));
        }
        __m128i m16 = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(scm, scm));
        sum = kq_combine(sum, f16_load(b), f16_load(b + 2), f32_load(y), hsum_i32x8(acc),
                         kq_min_sum(y, m16));
    }
    return sum;
}

/* q5_K adds a fifth bit: bit 2g of qh[l] for element l of group g's first half, bit
 * 2g + 1 for its second half. */
static AVX2_FN float avx2_q5_k_vec_dot(const void *w, const void *x, size_t n)
{
    assert(n % PD_QK_K == 0);
    const uint8_t *b = w;
    const uint8_t *y = x;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i bit4 = _mm256_set1_epi8(0x10);
    float sum = 0.0f;
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q5_K_BYTES, y += Q8_K_BYTES) {
        __m128i scm = kq_unpack_scales(b + KQ_SCALES);
        __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scm));
        const uint8_t *qs = b + Q5_K_QS;
        const uint8_t *q8 = y + Q8_K_QS;
        /* Shifted right by 2 per group, so the group's two bits are always bits 0 and 1
         * of each byte (the 16-bit shifts move bits across bytes only into bits never
         * read). */
        __m256i qh = load256(b + Q5_K_QH);
        __m256i acc = _mm256_setzero_si256();
        for (int g = 0; g < 4; g++) {
            __m256i q4 = load256(qs + 32 * g);
            __m256i lo = _mm256_and_si256(q4, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(qh, 4), bit4));
            hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(qh, 3), bit4));
            __m256i s1 = _mm256_shuffle_epi8(sc16, bcast16_ctrl(2 * g));
            __m256i s2 = _mm256_shuffle_epi8(sc16, bcast16_ctrl(2 * g + 1));
            acc = _mm256_add_epi32(acc, dot_u8i8_scaled(lo, q8 + 64 * g, s1));
            acc = _mm256_add_epi32(acc, dot_u8i8_scaled(hi, q8 + 64 * g + 32, s2));
            qh = _mm256_srli_epi16(qh, 2);
        }
        __m128i m16 = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(scm, scm));
        sum = kq_combine(sum, f16_load(b), f16_load(b + 2), f32_load(y), hsum_i32x8(acc),
                         kq_min_sum(y, m16));
    }
    return sum;
}

/* q6_K: each half h of 128 elements has ql[64h ..] and qh[32h ..]; quarter k (32
 * elements) takes its low 4 bits from ql[l + 32 (k & 1)] (low nibble for k < 2) and its
 * high 2 bits from bits 2k, 2k+1 of qh[l]; its two 16-element sub-blocks have signed
 * scales sc[8h + 2k] and sc[8h + 2k + 1]. As in the portable kernel the codes are used
 * unsigned and 32 * sum(sc * bsum) is subtracted once. */
/* Half h of the q6_K super-block at b: its 128 six-bit codes, 32 per register (q[k]:
 * elements 128 h + 32 k ..), and each register's two sub-block scales as 16-bit lanes
 * (scale[k]: lanes 0..7 sc[8 h + 2 k], lanes 8..15 sc[8 h + 2 k + 1]). The 16-bit shifts
 * carry bits across bytes only outside the 0x30 mask. */
static inline AVX2_FN __attribute__((always_inline)) void
q6_k_half(const uint8_t *b, int h, __m256i q[4], __m256i scale[4])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i m2 = _mm256_set1_epi8(0x30);
    __m256i sc16 = _mm256_broadcastsi128_si256(
        _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(b + Q6_K_SCALES + 8 * h))));
    __m256i l0 = load256(b + Q6_K_QL + 64 * h);
    __m256i l1 = load256(b + Q6_K_QL + 64 * h + 32);
    __m256i hb = load256(b + Q6_K_QH + 32 * h);
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                           _mm256_and_si256(_mm256_slli_epi16(hb, 4), m2));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                           _mm256_and_si256(_mm256_slli_epi16(hb, 2), m2));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                           _mm256_and_si256(hb, m2));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_and_si256(_mm256_srli_epi16(hb, 2), m2));
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m256i ctrl = _mm256_setr_m128i(
            _mm_set1_epi16((short)((4 * k) | ((4 * k + 1) << 8))),
            _mm_set1_epi16((short)((4 * k + 2) | ((4 * k + 3) << 8))));
        scale[k] = _mm256_shuffle_epi8(sc16, ctrl);
    }
}

static AVX2_FN float avx2_q6_k_vec_dot(const void *w, const void *x, size_t n)
{
    assert(n % PD_QK_K == 0);
    const uint8_t *b = w;
    const uint8_t *y = x;
    float sum = 0.0f;
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q6_K_BYTES, y += Q8_K_BYTES) {
        const int8_t *sc = (const int8_t *)(b + Q6_K_SCALES);
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q[4], scale[4];
            q6_k_half(b, h, q, scale);
            for (int k = 0; k < 4; k++) {
                acc = _mm256_add_epi32(
                    acc, dot_u8i8_scaled(q[k], y + Q8_K_QS + 128 * h + 32 * k, scale[k]));
            }
        }
        __m256i sc_all = _mm256_cvtepi8_epi16(load128(sc));
        int32_t bias = hsum_i32x8(_mm256_madd_epi16(load256(y + Q8_K_BSUMS), sc_all));
        int32_t isum = hsum_i32x8(acc) - 32 * bias;
        float dd = f16_load(b + Q6_K_D) * f32_load(y);
        float t = dd * (float)isum;
        sum += t;
    }
    return sum;
}

/* The portable rule (quant.c): max = the first value of largest magnitude (NaN ignored);
 * if finite and non-zero, iscale = -127 / max, q = round-half-even(iscale * x) clamped
 * to [-127, 127], d = 1 / iscale; else all zero. bsums[j] = sum of q[16j .. 16j + 15]. */
static AVX2_FN void avx2_q8_k_from_f32(const float *src, void *dst, size_t n)
{
    assert(n % PD_QK_K == 0);
    uint8_t *b = dst;
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q8_K_BYTES) {
        const float *x = src + i * PD_QK_K;
        __m256 vmax = _mm256_setzero_ps();
        for (int k = 0; k < PD_QK_K; k += 8) {
            vmax = _mm256_max_ps(abs_f32x8(_mm256_loadu_ps(x + k)), vmax);
        }
        float amax = hmax_f32x8(vmax);
        uint8_t *qs = b + Q8_K_QS;
        int16_t bsums[PD_QK_K / 16] = {0};
        float d = 0.0f;
        if (amax > 0.0f && isfinite(amax)) {
            int first = 0;
            __m256 vamax = _mm256_set1_ps(amax);
            for (int k = 0; k < PD_QK_K; k += 8) {
                __m256 eq = _mm256_cmp_ps(abs_f32x8(_mm256_loadu_ps(x + k)), vamax, _CMP_EQ_OQ);
                int mask = _mm256_movemask_ps(eq);
                if (mask) {
                    first = k + __builtin_ctz((unsigned)mask);
                    break;
                }
            }
            float iscale = -127.0f / x[first];
            __m256 vis = _mm256_set1_ps(iscale);
            for (int k = 0; k < PD_QK_K; k += 32) {
                __m256i q[4];
                for (int l = 0; l < 4; l++) {
                    __m256 r = _mm256_round_ps(_mm256_mul_ps(vis, _mm256_loadu_ps(x + k + 8 * l)),
                                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                    q[l] = _mm256_cvttps_epi32(clamp_f32x8(r, -127.0f, 127.0f));
                }
                _mm256_storeu_si256((__m256i *)(qs + k), pack_i32_to_i8(q[0], q[1], q[2], q[3]));
                bsums[k / 16] = (int16_t)hsum_i32x8(_mm256_add_epi32(q[0], q[1]));
                bsums[k / 16 + 1] = (int16_t)hsum_i32x8(_mm256_add_epi32(q[2], q[3]));
            }
            d = 1.0f / iscale;
        } else {
            memset(qs, 0, PD_QK_K);
        }
        memcpy(b, &d, 4);
        memcpy(b + Q8_K_BSUMS, bsums, sizeof bsums);
    }
}

/* ---- attention ---------------------------------------------------------------------- */

static AVX2_FN float avx2_kv_dot_f32(const float *q, const float *k, size_t n)
{
    return avx2_f32_vec_dot(q, k, n);
}

static AVX2_FN float avx2_kv_dot_f16(const float *q, const uint16_t *k, size_t n)
{
    __m256 acc0 = _mm256_setzero_ps();
    __m256 acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_f16x8(k + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load_f16x8(k + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_f16x8(k + i), acc0);
    }
    float sum = hsum_f32x8(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) {
        sum += q[i] * _cvtsh_ss(k[i]);
    }
    return sum;
}

/* acc = fma(w, v, acc), one rounding per element like the portable loop's fmaf. */
static AVX2_FN void avx2_kv_axpy_f32(float w, const float *v, float *acc, size_t n)
{
    __m256 vw = _mm256_set1_ps(w);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(acc + i,
                         _mm256_fmadd_ps(vw, _mm256_loadu_ps(v + i), _mm256_loadu_ps(acc + i)));
    }
    for (; i < n; i++) {
        acc[i] = fmaf(w, v[i], acc[i]);
    }
}

static AVX2_FN void avx2_kv_axpy_f16(float w, const uint16_t *v, float *acc, size_t n)
{
    __m256 vw = _mm256_set1_ps(w);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(acc + i,
                         _mm256_fmadd_ps(vw, load_f16x8(v + i), _mm256_loadu_ps(acc + i)));
    }
    for (; i < n; i++) {
        acc[i] = fmaf(w, _cvtsh_ss(v[i]), acc[i]);
    }
}

/* ---- exp ------------------------------------------------------------------------------ */

/* expf of 4 floats in double, simd_exp.h's algorithm step for step (the C library's on FMA
 * machines); lanes outside the main range are replaced by exp8. */
static inline AVX2_FN __m128 exp4_main(__m128 x)
{
    const __m256d inv = _mm256_set1_pd(PD_EXP_INV_LN2_32);
    const __m256d shift = _mm256_set1_pd(PD_EXP_SHIFT);
    __m256d xd = _mm256_cvtps_pd(x);
    __m256d kds = _mm256_fmadd_pd(inv, xd, shift); /* k + shift, rounded once */
    __m256i ki = _mm256_castpd_si256(kds);
    __m256d kd = _mm256_sub_pd(kds, shift);
    __m256d r = _mm256_fmsub_pd(inv, xd, kd);
    __m256i t = _mm256_i64gather_epi64((const long long *)pd_exp_tab,
                                       _mm256_and_si256(ki, _mm256_set1_epi64x(31)), 8);
    __m256d sc = _mm256_castsi256_pd(_mm256_add_epi64(t, _mm256_slli_epi64(ki, 47)));
    __m256d z = _mm256_fmadd_pd(r, _mm256_set1_pd(PD_EXP_C0), _mm256_set1_pd(PD_EXP_C1));
    __m256d r2 = _mm256_mul_pd(r, r);
    __m256d y = _mm256_fmadd_pd(r, _mm256_set1_pd(PD_EXP_C2), _mm256_set1_pd(1.0));
    y = _mm256_fmadd_pd(z, r2, y);
    return _mm256_cvtpd_ps(_mm256_mul_pd(y, sc));
}

/* expf of 8 floats, lane by lane what the C library returns, the edges included: +inf
 * above log(FLT_MAX), 0 below log(2^-150) (and for -inf), the smallest subnormal just
 * above that, NaN for NaN. */
static inline AVX2_FN __m256 exp8(__m256 x)
{
    __m256 y = _mm256_set_m128(exp4_main(_mm256_extractf128_ps(x, 1)),
                               exp4_main(_mm256_castps256_ps128(x)));
    __m256 over = _mm256_cmp_ps(x, _mm256_set1_ps(PD_EXP_OVER), _CMP_GT_OQ);
    __m256 zero = _mm256_cmp_ps(x, _mm256_set1_ps(PD_EXP_ZERO_BELOW), _CMP_LT_OQ);
    __m256 tiny = _mm256_andnot_ps(
        zero, _mm256_cmp_ps(x, _mm256_set1_ps(PD_EXP_TINY_BELOW), _CMP_LT_OQ));
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), over);
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), zero);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(0x1p-149f), tiny);
    return _mm256_blendv_ps(y, _mm256_add_ps(x, x), nan);
}

/* Adds 16 floats (e0: elements 0..7, e1: 8..15 of a run of 16) to the parts of
 * pd_sum16_tree in double: elements 4 c .. 4 c + 3 to part[c]. */
static inline AVX2_FN void sum16_add8x2(__m256 e0, __m256 e1, __m256d *part)
{
    part[0] = _mm256_add_pd(part[0], _mm256_cvtps_pd(_mm256_castps256_ps128(e0)));
    part[1] = _mm256_add_pd(part[1], _mm256_cvtps_pd(_mm256_extractf128_ps(e0, 1)));
    part[2] = _mm256_add_pd(part[2], _mm256_cvtps_pd(_mm256_castps256_ps128(e1)));
    part[3] = _mm256_add_pd(part[3], _mm256_cvtps_pd(_mm256_extractf128_ps(e1, 1)));
}

/* p[s] = expf(p[s] - mx) for s < n, and their sum in double in pd_sum16_tree's order:
 * slots 16 b + 4 c .. 16 b + 4 c + 3 go to the parts in sum[c], the last n % 16 one by
 * one through expf (the same values). */
static AVX2_FN double avx2_exp_sum(float *p, uint32_t n, float mx)
{
    const __m256 m = _mm256_set1_ps(mx);
    __m256d sum[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                      _mm256_setzero_pd()};
    uint32_t s = 0;
    for (; s + 16 <= n; s += 16) {
        __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(p + s), m));
        __m256 e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(p + s + 8), m));
        _mm256_storeu_ps(p + s, e0);
        _mm256_storeu_ps(p + s + 8, e1);
        sum16_add8x2(e0, e1, sum);
    }
    double part[16];
    for (int c = 0; c < 4; c++) {
        _mm256_storeu_pd(part + 4 * c, sum[c]);
    }
    for (; s < n; s++) {
        p[s] = expf(p[s] - mx);
        part[s % 16] += p[s];
    }
    return pd_sum16_tree(part);
}

/* pd_simd_sum_sq: 16 squares per step, elements 16 b + 4 c .. + 3 into the parts in
 * part[c] (as avx2_exp_sum lays them out), the last n % 16 one by one. */
static AVX2_FN double avx2_sum_sq(const float *x, size_t n)
{
    __m256d part[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                       _mm256_setzero_pd()};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        sum16_add8x2(_mm256_mul_ps(v0, v0), _mm256_mul_ps(v1, v1), part);
    }
    double p[16];
    for (int c = 0; c < 4; c++) {
        _mm256_storeu_pd(p + 4 * c, part[c]);
    }
    for (; i < n; i++) {
        p[i % 16] += (double)(x[i] * x[i]);
    }
    return pd_sum16_tree(p);
}

/* Adds e (4 floats) to *sum and e * (x - mx) to *wsum where e > 0, in double. */
static inline AVX2_FN void logit_sums4(__m128 e, __m128 x, __m256d mx, __m256d *sum,
                                       __m256d *wsum)
{
    __m256d ed = _mm256_cvtps_pd(e);
    __m256d t = _mm256_mul_pd(ed, _mm256_sub_pd(_mm256_cvtps_pd(x), mx));
    *sum = _mm256_add_pd(*sum, ed);
    *wsum = _mm256_add_pd(
        *wsum, _mm256_and_pd(t, _mm256_cmp_pd(ed, _mm256_setzero_pd(), _CMP_GT_OQ)));
}

/* pd_simd_logit_sums, 16 logits at a time as avx2_exp_sum lays them out, the last n % 16
 * one by one through expf (the same values). */
static AVX2_FN float avx2_logit_sums(const float *x, size_t n, double *sum, double *wsum)
{
    __m256 mv = _mm256_set1_ps(-INFINITY);
    size_t s = 0;
    for (; s + 8 <= n; s += 8) {
        mv = _mm256_max_ps(_mm256_loadu_ps(x + s), mv); /* maxps keeps mv for NaN */
    }
    float lanes[8], mx = -INFINITY;
    _mm256_storeu_ps(lanes, mv);
    for (int i = 0; i < 8; i++) {
        mx = lanes[i] > mx ? lanes[i] : mx;
    }
    for (; s < n; s++) {
        mx = x[s] > mx ? x[s] : mx;
    }
    double part[16] = {0}, wpart[16] = {0};
    if (mx > -INFINITY) {
        const __m256 m = _mm256_set1_ps(mx);
        const __m256d md = _mm256_set1_pd(mx);
        __m256d sv[4], wv[4];
        for (int c = 0; c < 4; c++) {
            sv[c] = wv[c] = _mm256_setzero_pd();
        }
        for (s = 0; s + 16 <= n; s += 16) {
            __m256 x0 = _mm256_loadu_ps(x + s), x1 = _mm256_loadu_ps(x + s + 8);
            __m256 e0 = exp8(_mm256_sub_ps(x0, m)), e1 = exp8(_mm256_sub_ps(x1, m));
            logit_sums4(_mm256_castps256_ps128(e0), _mm256_castps256_ps128(x0), md, &sv[0],
                        &wv[0]);
            logit_sums4(_mm256_extractf128_ps(e0, 1), _mm256_extractf128_ps(x0, 1), md,
                        &sv[1], &wv[1]);
            logit_sums4(_mm256_castps256_ps128(e1), _mm256_castps256_ps128(x1), md, &sv[2],
                        &wv[2]);
            logit_sums4(_mm256_extractf128_ps(e1, 1), _mm256_extractf128_ps(x1, 1), md,
                        &sv[3], &wv[3]);
        }
        for (int c = 0; c < 4; c++) {
            _mm256_storeu_pd(part + 4 * c, sv[c]);
            _mm256_storeu_pd(wpart + 4 * c, wv[c]);
        }
        for (; s < n; s++) {
            float e = expf(x[s] - mx);
            part[s % 16] += e;
            if (e > 0) {
                wpart[s % 16] += (double)e * ((double)x[s] - mx);
            }
        }
    }
    *sum = pd_sum16_tree(part);
    *wsum = pd_sum16_tree(wpart);
    return mx;
}

/* h[i] = g[i] / (1 + expf(-g[i])) * u[i], the reference's expression per lane. */
static AVX2_FN void avx2_swiglu(float *h, const float *g, const float *u, size_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i);
        __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv));
        __m256 sg = _mm256_div_ps(gv, _mm256_add_ps(one, e));
        _mm256_storeu_ps(h + i, _mm256_mul_ps(sg, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) {
        h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
}

/* ---- blocked attention ------------------------------------------------------------------ */

/* The AVX2 level's attention for a query group (ops.attn) over an f16 cache with head
 * sizes of whole 16s (the default cache; f32 rows take the per-query loop), bit for bit
 * that per-query loop over this level's kernels (pd_simd_attn without .attn): the same
 * kv_dot per (query, slot), written as one pass over each K row for up to 4 queries (the
 * FMA chains and horizontal sums of avx2_kv_dot_f16, lane by lane); the same exp_sum; and
 * the V sums in registers, one fused multiply-add per element in slot order as kv_axpy
 * gives, up to 3 queries and 32 columns per pass so each V row loaded serves several
 * queries. */

/* Inlined into avx2_attn, so nq and DV are constants in each copy. */
#define ATTN_INLINE static inline AVX2_FN __attribute__((always_inline))

/* p[i][s] = kv_dot(q_i, K[s]) * scale for nq <= 4 queries over slots [s0, s1), head size
 * a multiple of 16: avx2_kv_dot_f16's two chains and hsum_f32x8 per query. */
ATTN_INLINE void attn_scores_f16(const struct pd_attn_args *a, uint32_t q0, const int nq,
                                 uint32_t s0, uint32_t s1)
{
    const uint8_t *kb = a->k;
    size_t krow = 2 * a->k_stride;
    const float *q[4];
    float *pr[4];
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        q[i] = a->q[q0 + i];
        pr[i] = a->p[q0 + i];
    }
    for (uint32_t s = s0; s < s1; s++) {
        const uint8_t *k = kb + s * krow;
        if (s + PD_ATTN_PF_SLOTS < s1) {
            pd_prefetch(k + PD_ATTN_PF_SLOTS * krow, 2 * (size_t)a->head_dim);
        }
        __m256 acc0[4], acc1[4];
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++) {
            acc0[i] = _mm256_setzero_ps();
            acc1[i] = _mm256_setzero_ps();
        }
        for (uint32_t d = 0; d < a->head_dim; d += 16) {
            __m256 k0 = load_f16x8(k + 2 * d), k1 = load_f16x8(k + 2 * (d + 8));
#pragma GCC unroll 4
            for (int i = 0; i < nq; i++) {
                acc0[i] = _mm256_fmadd_ps(_mm256_loadu_ps(q[i] + d), k0, acc0[i]);
                acc1[i] = _mm256_fmadd_ps(_mm256_loadu_ps(q[i] + d + 8), k1, acc1[i]);
            }
        }
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++) {
            pr[i][s] = hsum_f32x8(_mm256_add_ps(acc0[i], acc1[i])) * a->scale;
        }
    }
}

/* o[i][col ..] = fma(p[i][s], V[s][col ..], o[i][col ..]) over slots [s0, s1) in slot
 * order, DV registers (8 columns each) per query, nq queries, nq * DV <= 12. */
ATTN_INLINE void attn_values8(const struct pd_attn_args *a, uint32_t q0, uint32_t col,
                              uint32_t s0, uint32_t s1, __m256 *acc, const int nq,
                              const int DV)
{
    const size_t vrow = 2 * a->v_stride;
    const float *pr[3];
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        pr[i] = a->p[q0 + i];
    }
    const uint8_t *row = (const uint8_t *)a->v + (size_t)s0 * vrow + 2 * (size_t)col;
    for (uint32_t s = s0; s < s1; s++, row += vrow) {
        if (s + PD_ATTN_PF_SLOTS < s1) {
            pd_prefetch(row + PD_ATTN_PF_SLOTS * vrow, (size_t)DV * 16);
        }
        /* the queries' weights first, then one V register at a time: 12 accumulators,
         * 3 weights and the V register fill the 16 registers exactly (with the 4 V
         * registers loaded first one accumulator lived on the stack, a store and a
         * reload in every slot's chain: 36% of the kernel's time) */
        __m256 w[3];
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++) {
            w[i] = _mm256_set1_ps(pr[i][s]);
        }
#pragma GCC unroll 4
        for (int c = 0; c < DV; c++) {
            __m256 vv = load_f16x8(row + (size_t)c * 16);
#pragma GCC unroll 4
            for (int i = 0; i < nq; i++) {
                acc[i * DV + c] = _mm256_fmadd_ps(w[i], vv, acc[i * DV + c]);
            }
        }
    }
}

/* Columns [col, col + 8 DV) of the outputs of queries [q0, q0 + nq): the slots all of
 * them see together, then each query's own remainder. */
ATTN_INLINE void attn_outputs8(const struct pd_attn_args *a, uint32_t q0, uint32_t col,
                               const int nq, const int DV)
{
    __m256 acc[12];
#pragma GCC unroll 12
    for (int i = 0; i < nq * DV; i++) {
        acc[i] = _mm256_setzero_ps();
    }
    uint32_t common = pd_attn_common(a, q0, (uint32_t)nq);
    attn_values8(a, q0, col, 0, common, acc, nq, DV);
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        if (a->n_vis[q0 + i] > common) {
            attn_values8(a, q0 + i, col, common, a->n_vis[q0 + i], acc + i * DV, 1, DV);
        }
#pragma GCC unroll 4
        for (int c = 0; c < DV; c++) {
            _mm256_storeu_ps(a->o[q0 + i] + col + 8 * c, acc[i * DV + c]);
        }
    }
}

/* attn_outputs8 with constant nq (1..3) and DV (1..4). */
ATTN_INLINE void attn_outputs8_dv(const struct pd_attn_args *a, uint32_t q0, uint32_t col,
                                  uint32_t nq, int dv)
{
#define AVX2_OUT(NQ, DV)                                                                  \
    case (NQ) * 4 + (DV) - 1: attn_outputs8(a, q0, col, NQ, DV); break
    switch (nq * 4 + (uint32_t)dv - 1) {
    AVX2_OUT(1, 1); AVX2_OUT(1, 2); AVX2_OUT(1, 3); AVX2_OUT(1, 4);
    AVX2_OUT(2, 1); AVX2_OUT(2, 2); AVX2_OUT(2, 3); AVX2_OUT(2, 4);
    AVX2_OUT(3, 1); AVX2_OUT(3, 2); AVX2_OUT(3, 3); AVX2_OUT(3, 4);
    default: break;
    }
#undef AVX2_OUT
}

static AVX2_FN bool avx2_attn(const struct pd_attn_args *a)
{
    /* f32 rows and head sizes not of whole 16s stay with the per-query loop */
    if (!a->f16 || a->head_dim % 16 || a->head_dim_v % 8 || a->n_q == 0 || a->hide) {
        return false;
    }
    /* scores: 4 queries per pass over the K rows they all see, then each one's remainder */
    for (uint32_t q0 = 0; q0 < a->n_q; q0 += 4) {
        uint32_t nq = a->n_q - q0 < 4 ? a->n_q - q0 : 4, common = pd_attn_common(a, q0, nq);
        switch (nq) {
        case 1: attn_scores_f16(a, q0, 1, 0, common); break;
        case 2: attn_scores_f16(a, q0, 2, 0, common); break;
        case 3: attn_scores_f16(a, q0, 3, 0, common); break;
        default: attn_scores_f16(a, q0, 4, 0, common); break;
        }
        for (uint32_t i = 0; i < nq; i++) {
            attn_scores_f16(a, q0 + i, 1, common, a->n_vis[q0 + i]);
        }
    }
    /* softmax per query: the largest score (NaN ignored, as `p > mx` ignores it), expf of
     * the differences summed in double, one multiply by the float reciprocal */
    for (uint32_t i = 0; i < a->n_q; i++) {
        float *p = a->p[i], mx = -INFINITY;
        uint32_t n = a->n_vis[i], s = 0;
        __m256 m8 = _mm256_set1_ps(-INFINITY);
        for (; s + 8 <= n; s += 8) {
            m8 = _mm256_max_ps(_mm256_loadu_ps(p + s), m8); /* maxps keeps m8 for NaN */
        }
        mx = hmax_f32x8(m8);
        for (; s < n; s++) {
            mx = p[s] > mx ? p[s] : mx;
        }
        float inv = (float)(1.0 / avx2_exp_sum(p, n, mx));
        __m256 inv8 = _mm256_set1_ps(inv);
        for (s = 0; s + 8 <= n; s += 8) {
            _mm256_storeu_ps(p + s, _mm256_mul_ps(_mm256_loadu_ps(p + s), inv8));
        }
        for (; s < n; s++) {
            p[s] *= inv;
        }
    }
    /* outputs: 3 queries and 32 columns per pass (12 accumulators) */
    uint32_t hdv = a->head_dim_v;
    for (uint32_t col = 0; col < hdv; col += 32) {
        int dv = (int)((hdv - col < 32 ? hdv - col : 32) / 8);
        for (uint32_t q0 = 0; q0 < a->n_q; q0 += 3) {
            uint32_t nq = a->n_q - q0 < 3 ? a->n_q - q0 : 3;
            attn_outputs8_dv(a, q0, col, nq, dv);
        }
    }
    return true;
}
#undef ATTN_INLINE

/* ---- tiled weight products ------------------------------------------------------------ */

/* Lane i of the result is the sum of the 8 lanes of v[i] (a transposing add tree: 6
 * horizontal adds, 2 lane swaps and an add for 8 sums; its order is fixed). */
static inline AVX2_FN __m256 hsum8x8_ps(const __m256 *v)
{
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* The same tree on int32 lanes (exact). */
static inline AVX2_FN __m256i hsum8x8_epi32(const __m256i *v)
{
    __m256i u0 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    __m256i u1 = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                            _mm256_permute2x128_si256(u0, u1, 0x31));
}

#define TILE8 static inline AVX2_FN __attribute__((always_inline))

/* Stores a tile's outputs: lane t * RM + r goes to y[t * y_stride + r0 + r]. */
TILE8 void store_tile8(const struct pd_gemm_args *g, size_t r0, size_t t0, __m256 out,
                       const int RM, const int RN)
{
    float o[8];
    _mm256_storeu_ps(o, out);
#pragma GCC unroll 8
    for (int t = 0; t < RN; t++) {
        float *dst = g->y + (t0 + (size_t)t) * g->y_stride + r0;
#pragma GCC unroll 8
        for (int r = 0; r < RM; r++) {
            dst[r] = o[t * RM + r];
        }
    }
}

/* Prefetches the `bytes` bytes at p (weights further on; past the matrix's end too, as a
 * prefetch never faults) into the first-level cache, or with l2 (pd_pf_l2: a large
 * matrix) into the second. */
TILE8 void prefetch_block(const uint8_t *p, size_t bytes, bool l2)
{
    if (l2) { /* the test outside the loop: -O2 does not move it there */
        for (size_t l = 0; l < bytes; l += 64) {
            _mm_prefetch((const char *)p + l, _MM_HINT_T1);
        }
    } else {
        for (size_t l = 0; l < bytes; l += 64) {
            _mm_prefetch((const char *)p + l, _MM_HINT_T0);
        }
    }
}

/* Single-token tiles (decode) fetch the next 8-row block as they go: bytes [off, off +
 * len) of each of its rows, when the matrix has them (g->w_rows). Without it the eight
 * short row streams of a tile wait on memory (f16 decode ran at 0.57x of one row at a
 * time). */
TILE8 void prefetch_rows8(const struct pd_gemm_args *g, size_t r0, size_t off, size_t len)
{
    if (r0 + 16 > g->w_rows) {
        return;
    }
    const uint8_t *p = g->w + (r0 + 8) * g->w_stride + off;
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) {
        prefetch_block(p + (size_t)r * g->w_stride, len, false);
    }
}

/* The half scales at byte 0 of the RM (<= 8) blocks p, p + stride, ... as floats in
 * lanes 0 .. RM - 1 (the rest 0): the halves gathered into two 64-bit words on the
 * integer side, one conversion for all of them. */
TILE8 __m256 block_scales8(const uint8_t *p, size_t stride, const int RM)
{
    uint64_t lo = 0, hi = 0;
#pragma GCC unroll 8
    for (int r = 0; r < RM; r++) {
        uint16_t h;
        memcpy(&h, p + (size_t)r * stride, 2);
        if (r < 4) {
            lo |= (uint64_t)h << (16 * r);
        } else {
            hi |= (uint64_t)h << (16 * (r - 4));
        }
    }
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)hi, (long long)lo));
}

/* The 32 fifth bits of a q5_0/q5_1 block (qh, little-endian) as 0x10 in byte j where bit
 * j is set: each byte of qh spread over 8 lanes, then one bit per lane tested. */
TILE8 __m256i q5_high_bits(const uint8_t *qh4)
{
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                             0x0101010101010101, 0x0000000000000000);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i b = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), spread), bit);
    return _mm256_and_si256(_mm256_cmpeq_epi8(b, bit), _mm256_set1_epi8(0x10));
}

/* The 32-element types (T a constant of each copy: q8_0, q4_0, q5_0, q4_1, q5_1): a tile of
 * RM rows x RN tokens (RM * RN <= 12), one accumulator per pair. q5_0 and q5_1 take 4 x 3
 * tiles, so each row's fifth-bit spread serves 3 tokens (pp512 of the bench models at
 * this level +8% and +18% against 4 x 2); q8_0 was 9% slower in 4 x 3 and keeps 4 x 2. The 32 products of a block
 * pair:
 * - q8_0 from the sign trick: maddubs(|w|, sign(x, w)) then a vpmaddwd by ones, exact
 *   while no activation byte is -128 (each pair of products is at most 2 * 128 * 127 in
 *   size); a block where some token's activation has a -128 takes the widened 16-bit
 *   products instead (dot_i8x32, exact for any bytes), so the tile is exact for every
 *   input;
 * - the others from maddubs of the unsigned codes (nibbles, or nibbles and fifth bits:
 *   pair sums <= 2 * 31 * 128), for q4_0 and q5_0 less the token's maddubs of 8 * x or
 *   16 * x (<= 2 * 16 * 128), all exact in 16 bits, then the vpmaddwd by ones.
 * Each pair's int32 lanes are converted and added with one FMA by d_w * d_x. q4_1 and q5_1
 * add m_w * s_x per block (q8_1 activations: s = d * sum(q)) in a float per pair, added to
 * the pair's sum at the end (the reference adds both terms block by block: the same
 * products in another order). In a batch tile the row scales are converted together,
 * multiplied by each token's scale and read back one broadcast load per pair from a stack
 * copy (no register held per pair: with them in registers the accumulators spilled); a
 * single token (decode) multiplies each row's scale on its own (the shared conversion was
 * 3-5% slower there in the bench model's decode). */
TILE8 void q_0_tile8(const struct pd_gemm_args *g, size_t r0, size_t t0, const enum pd_dtype T,
                     const int RM, const int RN)
{
    const bool Q8 = T == PD_DTYPE_Q8_0, MIN = T == PD_DTYPE_Q4_1 || T == PD_DTYPE_Q5_1;
    const bool FIVE = T == PD_DTYPE_Q5_0 || T == PD_DTYPE_Q5_1;
    const size_t wbytes = Q8 ? Q8_0_BYTES : T == PD_DTYPE_Q4_0 ? Q4_0_BYTES
                          : T == PD_DTYPE_Q5_0 ? Q5_0_BYTES : T == PD_DTYPE_Q4_1 ? Q4_1_BYTES
                                                                                : Q5_1_BYTES;
    const size_t qs = Q8 || T == PD_DTYPE_Q4_0 ? 2 : T == PD_DTYPE_Q4_1 ? 4 : FIVE && !MIN ? 6 : 8;
    const size_t qh = MIN ? 4 : 2;                   /* q5_0 / q5_1 fifth bits */
    const size_t xbytes = MIN ? Q8_1_BYTES : Q8_0_BYTES, xq = MIN ? 4 : 2;
    const int offset = T == PD_DTYPE_Q4_0 ? 8 : T == PD_DTYPE_Q5_0 ? 16 : 0;
    const int per_line = (int)(64 / wbytes) + 1; /* blocks of a row per prefetched stretch */
    __m256 acc[12];
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) {
        acc[i] = _mm256_setzero_ps();
    }
    float mterm[12] = {0};
    const __m256i ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(-128);
    const __m256i off8 = _mm256_set1_epi8((char)offset);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const uint8_t *wrow = g->w + r0 * g->w_stride;
    const uint8_t *xrow = g->x + t0 * g->x_stride;
    __attribute__((aligned(32))) float dm[8 * 8];
    __attribute__((aligned(32))) float mw[8];
    for (size_t b = 0; b < g->n / PD_QK8_0; b++) {
        if (RM == 8 && b % (size_t)per_line == 0) {
            prefetch_rows8(g, r0, b * wbytes, (size_t)per_line * wbytes);
        }
        const uint8_t *wb = wrow + b * wbytes, *xb = xrow + b * xbytes;
        __m256 wd = RN > 1 ? block_scales8(wb, g->w_stride, RM) : _mm256_setzero_ps();
        if (MIN) {
            _mm256_store_ps(mw, block_scales8(wb + 2, g->w_stride, RM));
        }
        __m256i xv[8], x8[8];
        float xd1 = 0.0f, sx[8];
        int extreme = 0;
#pragma GCC unroll 8
        for (int t = 0; t < RN; t++) {
            const uint8_t *p = xb + (size_t)t * g->x_stride;
            xv[t] = load256(p + xq);
            if (offset) {
                x8[t] = _mm256_maddubs_epi16(off8, xv[t]);
            }
            if (Q8) {
                extreme |= _mm256_movemask_epi8(_mm256_cmpeq_epi8(xv[t], low));
            }
            if (MIN) {
                sx[t] = f16_load(p + 2);
            }
            if (RN > 1) {
                _mm256_store_ps(dm + 8 * t, _mm256_mul_ps(wd, _mm256_set1_ps(f16_load(p))));
            } else {
                xd1 = f16_load(p);
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < RM; r++) {
            const uint8_t *wr = wb + (size_t)r * g->w_stride;
            __m256i w, wabs;
            if (Q8) {
                w = load256(wr + 2);
                wabs = _mm256_sign_epi8(w, w);
            } else {
                __m128i q = load128(wr + qs);
                w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4),
                                     _mm_and_si128(q, m4));
                if (FIVE) {
                    w = _mm256_or_si256(w, q5_high_bits(wr + qh));
                }
                wabs = w;
            }
#pragma GCC unroll 8
            for (int t = 0; t < RN; t++) {
                __m256i s;
                if (!Q8) {
                    s = _mm256_maddubs_epi16(w, xv[t]);
                    if (offset) {
                        s = _mm256_sub_epi16(s, x8[t]);
                    }
                } else if (__builtin_expect(extreme != 0, 0)) {
                    s = dot_i8x32(wr + 2, xb + (size_t)t * g->x_stride + 2);
                } else {
                    s = _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(xv[t], w));
                }
                if (!Q8 || !extreme) {
                    s = _mm256_madd_epi16(s, ones);
                }
                __m256 d = RN > 1 ? _mm256_broadcast_ss(dm + 8 * t + r)
                                  : _mm256_set1_ps(f16_load(wr) * xd1);
                acc[t * RM + r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc[t * RM + r]);
                if (MIN) {
                    mterm[t * RM + r] += mw[r] * sx[t];
                }
            }
        }
    }
    if (RM * RN <= 8) {
        __m256 out = hsum8x8_ps(acc);
        if (MIN) {
            out = _mm256_add_ps(out, _mm256_loadu_ps(mterm));
        }
        store_tile8(g, r0, t0, out, RM, RN);
        return;
    }
    /* pairs 0..7, then 8..11 (the unused accumulators are zero) */
    float o[16];
    _mm256_storeu_ps(o, hsum8x8_ps(acc));
    __m256 rest[8] = {acc[8], acc[9], acc[10], acc[11], _mm256_setzero_ps(), _mm256_setzero_ps(),
                      _mm256_setzero_ps(), _mm256_setzero_ps()};
    _mm256_storeu_ps(o + 8, hsum8x8_ps(rest));
#pragma GCC unroll 4
    for (int t = 0; t < RN; t++) {
#pragma GCC unroll 8
        for (int r = 0; r < RM; r++) {
            g->y[(t0 + (size_t)t) * g->y_stride + r0 + (size_t)r] =
                o[t * RM + r] + (MIN ? mterm[t * RM + r] : 0.0f);
        }
    }
}

/* The last n < 8 halves at p, zero-extended (no 16-bit masked load below AVX-512). */
TILE8 __m256 half_tail8(const uint8_t *p, size_t n, bool bf16)
{
    uint8_t buf[16] = {0};
    memcpy(buf, p, 2 * n);
    return half_load8(buf, bf16);
}

/* Where a half tile's weights are: the file's layout, one packed 8-row block
 * (avx2_f16_pack), or one 8-row block widened to floats (half8_wide). */
enum { HALF8_FILE, HALF8_PACKED, HALF8_WIDE };

/* One step of the f16/bf16 tile: n (<= 8) elements at element k of every row, a row's
 * elements k .. k + 7 at wrow + r * w_stride + 2 k in the file's layout, at wrow + 16 r +
 * 16 k in a packed 8-row block (avx2_f16_pack), as floats at wrow + 32 r + 32 k in a
 * widened one (zero past the row's end). */
TILE8 void half_step8(const struct pd_gemm_args *g, const uint8_t *wrow, const uint8_t *xrow,
                      size_t k, size_t n, bool bf16, __m256 *acc, const int RM,
                      const int RN, const int L)
{
    __m256 xv[8];
#pragma GCC unroll 8
    for (int t = 0; t < RN; t++) {
        const uint8_t *p = xrow + (size_t)t * g->x_stride + 2 * k;
        xv[t] = n == 8 ? half_load8(p, bf16) : half_tail8(p, n, bf16);
    }
#pragma GCC unroll 8
    for (int r = 0; r < RM; r++) {
        __m256 wv;
        if (L == HALF8_WIDE) {
            wv = _mm256_load_ps((const float *)(const void *)(wrow + 32 * (size_t)r + 32 * k));
        } else {
            const uint8_t *p = L == HALF8_PACKED ? wrow + 16 * (size_t)r + 16 * k
                                                 : wrow + (size_t)r * g->w_stride + 2 * k;
            wv = n == 8 ? half_load8(p, bf16) : half_tail8(p, n, bf16);
        }
#pragma GCC unroll 8
        for (int t = 0; t < RN; t++) {
            acc[t * RM + r] = _mm256_fmadd_ps(wv, xv[t], acc[t * RM + r]);
        }
    }
}

/* f16/bf16: RM rows x RN tokens (RM * RN <= 12), 8 elements per step, one FMA per (row,
 * token): each step converts RM + RN vectors for RM * RN FMAs, so the 4 x 3 tile of
 * batches (12 accumulators, the 3 tokens' vectors and one row's: all 16 registers)
 * converts 0.58 vectors per FMA against 4 x 2's 0.75. */
/* Rows [r0, r0 + RM) x tokens [t0, t0 + RN); with P, rows of one packed 8-row block whose
 * start g->w is (r0 + RM <= 8), the same operations (so the same bits), its single
 * stream fetched PF_HALF8 bytes ahead in decode into the second-level cache: fetched
 * into the first (8 KiB ahead), a single stream waited on memory, its misses bounded by
 * the first level's fill buffers (1.95 GB f16 model, AVX2 decode, 2 threads: 9.3-9.7 tok/s
 * against 13.4 from the file's 8 row streams; to the second level 8 KiB ahead 13.4, 4 KiB
 * ahead 14.5-14.6; one thread on 8192 x 8192: 10.0, 14.9 and 15.2 GB/s, the file's layout
 * 17.5). Measured on an Intel CPU: elsewhere (pd_cpu_prefetch_l2 false, or
 * PONDER_PREFETCH=l1) the stream is fetched into the first level PF_HALF8_L1 ahead, as
 * before. */
#define PF_HALF8 4096
#define PF_HALF8_L1 8192
TILE8 void half_tile8(const struct pd_gemm_args *g, size_t r0, size_t t0, bool bf16,
                      const int RM, const int RN, const int L)
{
    const bool P = L == HALF8_PACKED;
    const bool l2 = P && RM == 8 && pd_cpu_prefetch_l2();
    __m256 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        acc[i] = _mm256_setzero_ps();
    }
    const uint8_t *wrow =
        g->w + r0 * (L == HALF8_FILE ? g->w_stride : L == HALF8_PACKED ? 16 : 32);
    const uint8_t *xrow = g->x + t0 * g->x_stride;
    size_t k = 0;
    for (; k + 8 <= g->n; k += 8) {
        if (RM == 8 && k % 32 == 0 && L != HALF8_WIDE) {
            if (P) { /* 4 steps of the block's stream */
                prefetch_block(g->w + 16 * k + (l2 ? PF_HALF8 : PF_HALF8_L1), 512, l2);
            } else {
                prefetch_rows8(g, r0, 2 * k, 64);
            }
        }
        half_step8(g, wrow, xrow, k, 8, bf16, acc, RM, RN, L);
    }
    if (k < g->n) {
        half_step8(g, wrow, xrow, k, g->n - k, bf16, acc, RM, RN, L);
    }
    if (RM * RN <= 8) {
        store_tile8(g, r0, t0, hsum8x8_ps(acc), RM, RN);
        return;
    }
    /* pairs 0..7, then 8.. (the unused accumulators are zero) */
    float o[16];
    _mm256_storeu_ps(o, hsum8x8_ps(acc));
    _mm256_storeu_ps(o + 8, hsum8x8_ps(acc + 8));
#pragma GCC unroll 8
    for (int t = 0; t < RN; t++) {
#pragma GCC unroll 8
        for (int r = 0; r < RM; r++) {
            g->y[(t0 + (size_t)t) * g->y_stride + r0 + (size_t)r] = o[t * RM + r];
        }
    }
}

/* q4_K and (five) q5_K: RM rows x RN tokens. Per super-block every (row, token) gets
 * exactly the portable kernel's integers: the codes times q8 with vpmaddubsw (unsigned
 * nibbles, with q5_K's fifth bit from qh as in its vec_dot; pair sums <= 2 * 31 * 128), weighted by the sub-block scales with vpmaddwd into int32
 * lanes, the 8 pairs' lanes reduced together (hsum8x8_epi32), the min term
 * sum(bsums[j] * m[j / 2]) likewise from one vpmaddwd per pair; then the portable float
 * combination (kq_combine) on the 8 lanes at once, each product its own statement, so
 * every output is bit-identical to pd_q4_k_vec_dot (pd_q5_k_vec_dot). */
TILE8 void kq45_tile8(const struct pd_gemm_args *g, size_t r0, size_t t0, bool five,
                      const int RM, const int RN)
{
    const size_t bytes = five ? Q5_K_BYTES : Q4_K_BYTES;
    const size_t qs = five ? Q5_K_QS : Q4_K_QS;
    const __m256i bit4 = _mm256_set1_epi8(0x10);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    /* int16 lane l of a min register pairs with bsums[l]: m[l / 2] */
    const __m256i mdup = _mm256_setr_epi8(8, -1, 8, -1, 9, -1, 9, -1, 10, -1, 10, -1, 11, -1,
                                          11, -1, 12, -1, 12, -1, 13, -1, 13, -1, 14, -1, 14,
                                          -1, 15, -1, 15, -1);
    __m256 sum = _mm256_setzero_ps();
    float d[8] = {0}, dmin[8] = {0}, dy[8] = {0};
    for (size_t i = 0; i < g->n / PD_QK_K; i++) {
        if (RM == 8) {
            prefetch_rows8(g, r0, i * bytes, bytes);
        }
        const uint8_t *wb[8], *yb[8];
        __m256i sc16[8], mins[8];
#pragma GCC unroll 8
        for (int r = 0; r < RM; r++) {
            wb[r] = g->w + (r0 + (size_t)r) * g->w_stride + i * bytes;
            __m128i scm = kq_unpack_scales(wb[r] + KQ_SCALES);
            /* the 8 scales as int16 in both halves; the mins (bytes 8..15) widened to 16
             * bits and each repeated for its two bsums */
            sc16[r] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scm));
            mins[r] = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(scm), mdup);
        }
#pragma GCC unroll 8
        for (int t = 0; t < RN; t++) {
            yb[t] = g->x + (t0 + (size_t)t) * g->x_stride + i * Q8_K_BYTES;
        }
        __m256i acc[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            acc[k] = _mm256_setzero_si256();
        }
#pragma GCC unroll 8
        for (int grp = 0; grp < 4; grp++) {
#pragma GCC unroll 8
            for (int r = 0; r < RM; r++) {
                __m256i q4 = load256(wb[r] + qs + 32 * grp);
                __m256i lo = _mm256_and_si256(q4, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
                if (five) {
                    /* the group's two bits of qh brought to bits 0 and 1 (the 16-bit
                     * shift moves bits across bytes only into bits never read) */
                    __m256i qh = _mm256_srli_epi16(load256(wb[r] + Q5_K_QH), 2 * grp);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(qh, 4), bit4));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(qh, 3), bit4));
                }
                __m256i s1 = _mm256_shuffle_epi8(sc16[r], bcast16_ctrl(2 * grp));
                __m256i s2 = _mm256_shuffle_epi8(sc16[r], bcast16_ctrl(2 * grp + 1));
#pragma GCC unroll 8
                for (int t = 0; t < RN; t++) {
                    const uint8_t *q8 = yb[t] + Q8_K_QS + 64 * grp;
                    __m256i a = dot_u8i8_scaled(lo, q8, s1);
                    __m256i c = dot_u8i8_scaled(hi, q8 + 32, s2);
                    acc[t * RM + r] = _mm256_add_epi32(acc[t * RM + r], _mm256_add_epi32(a, c));
                }
            }
        }
        __m256i isum = hsum8x8_epi32(acc);
#pragma GCC unroll 8
        for (int t = 0; t < RN; t++) {
            __m256i bs = load256(yb[t] + Q8_K_BSUMS);
#pragma GCC unroll 8
            for (int r = 0; r < RM; r++) {
                acc[t * RM + r] = _mm256_madd_epi16(bs, mins[r]);
                d[t * RM + r] = f16_load(wb[r]);
                dmin[t * RM + r] = f16_load(wb[r] + 2);
                dy[t * RM + r] = f32_load(yb[t]);
            }
        }
        __m256i msum = hsum8x8_epi32(acc);
        /* kq_combine lane by lane: sum + (d * dy) * isum - (dmin * dy) * msum */
        __m256 dd = _mm256_mul_ps(_mm256_loadu_ps(d), _mm256_loadu_ps(dy));
        __m256 dm = _mm256_mul_ps(_mm256_loadu_ps(dmin), _mm256_loadu_ps(dy));
        __m256 a = _mm256_mul_ps(dd, _mm256_cvtepi32_ps(isum));
        __m256 c = _mm256_mul_ps(dm, _mm256_cvtepi32_ps(msum));
        __m256 tt = _mm256_sub_ps(a, c);
        sum = _mm256_add_ps(sum, tt);
    }
    store_tile8(g, r0, t0, sum, RM, RN);
}

/* q6_K: RM rows x RN tokens, the same scheme as q4_K: per super-block the portable
 * kernel's integers for every (row, token) (6-bit codes x q8 with vpmaddubsw, pair sums
 * <= 2 * 63 * 128; signed 8-bit scales with vpmaddwd; the bias sum(bsums[j] * sc[j])),
 * then its float expression sum + (d * dy) * isum on the 8 lanes: bit-identical to
 * pd_q6_k_vec_dot. */
TILE8 void q6_k_tile8(const struct pd_gemm_args *g, size_t r0, size_t t0, const int RM,
                      const int RN)
{
    __m256 sum = _mm256_setzero_ps();
    float d[8] = {0}, dy[8] = {0};
    for (size_t i = 0; i < g->n / PD_QK_K; i++) {
        if (RM == 8) {
            prefetch_rows8(g, r0, i * Q6_K_BYTES, Q6_K_BYTES);
        }
        const uint8_t *wb[8], *yb[8];
#pragma GCC unroll 8
        for (int r = 0; r < RM; r++) {
            wb[r] = g->w + (r0 + (size_t)r) * g->w_stride + i * Q6_K_BYTES;
        }
#pragma GCC unroll 8
        for (int t = 0; t < RN; t++) {
            yb[t] = g->x + (t0 + (size_t)t) * g->x_stride + i * Q8_K_BYTES;
        }
        __m256i acc[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            acc[k] = _mm256_setzero_si256();
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
#pragma GCC unroll 8
            for (int r = 0; r < RM; r++) {
                __m256i q[4], scale[4];
                q6_k_half(wb[r], h, q, scale);
#pragma GCC unroll 8
                for (int t = 0; t < RN; t++) {
                    const uint8_t *q8 = yb[t] + Q8_K_QS + 128 * h;
                    __m256i s01 = _mm256_add_epi32(dot_u8i8_scaled(q[0], q8, scale[0]),
                                                   dot_u8i8_scaled(q[1], q8 + 32, scale[1]));
                    __m256i s23 = _mm256_add_epi32(dot_u8i8_scaled(q[2], q8 + 64, scale[2]),
                                                   dot_u8i8_scaled(q[3], q8 + 96, scale[3]));
                    acc[t * RM + r] = _mm256_add_epi32(acc[t * RM + r], _mm256_add_epi32(s01, s23));
                }
            }
        }
        __m256i isum = hsum8x8_epi32(acc);
#pragma GCC unroll 8
        for (int t = 0; t < RN; t++) {
            __m256i bs = load256(yb[t] + Q8_K_BSUMS);
#pragma GCC unroll 8
            for (int r = 0; r < RM; r++) {
                __m256i sc_all = _mm256_cvtepi8_epi16(load128(wb[r] + Q6_K_SCALES));
                acc[t * RM + r] = _mm256_madd_epi16(bs, sc_all);
                d[t * RM + r] = f16_load(wb[r] + Q6_K_D);
                dy[t * RM + r] = f32_load(yb[t]);
            }
        }
        __m256i bias = hsum8x8_epi32(acc);
        isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(bias, 5)); /* isum - 32 * bias */
        __m256 dd = _mm256_mul_ps(_mm256_loadu_ps(d), _mm256_loadu_ps(dy));
        __m256 tt = _mm256_mul_ps(dd, _mm256_cvtepi32_ps(isum));
        sum = _mm256_add_ps(sum, tt);
    }
    store_tile8(g, r0, t0, sum, RM, RN);
}

/* ---- q4_K and q5_K packed, rows in lanes --------------------------------------------- */

/* The packed layout (avx2_q4_k_pack, avx2_q5_k_pack): each block of 8 rows holds, per
 * super-block, one register of 32 bytes per 4 bytes of a row's super-block, register k
 * holding in dword lane r the bytes 4k .. 4k + 3 of row r's super-block: for q4_K (36
 * registers) registers 0..3 the 16-byte headers (d and dmin, the 12 scale bytes),
 * registers 4..35 the 128 code bytes; q5_K (44) has its 32 fifth-bit bytes (qh) in
 * registers 4..11 between them. The same bytes as the 8 rows (8 blocks' bytes per
 * super-block), so rows past the last whole block keep the file's layout in place. */
#define KQ8_PACKED(five) (8 * ((five) ? Q5_K_BYTES : Q4_K_BYTES))
#define KQ8_CODES(five) ((five) ? 32 * (4 + 8) : 32 * 4)
/* Tokens one pass over a block's weights serves (q4_K, 2: 70-72 GMAC/s in bench-kernels
 * at 32 tokens, 3: 68, 4: 65-66; more sums than registers). q5_K's fifth bit costs 8
 * operations more per code register, shared by more tokens (1536 x 1536, 64 tokens: 2:
 * 46-47 GMAC/s, 3: 50-52, 4: 55-56, 5: 56-57, 6: 38). */
#define Q4K8_TOK 2
#define Q5K8_TOK 4
#define KQ8_TOK_MAX 4

/* The dword interleave above for blocks of `bytes` bytes (a multiple of 4). */
static void pack8_dwords(const uint8_t *w, size_t rows, size_t row_bytes, uint8_t *out,
                         size_t bytes)
{
    size_t nsb = row_bytes / bytes;
    size_t whole = rows / 8 * 8;
    for (size_t r0 = 0; r0 < whole; r0 += 8) {
        for (size_t i = 0; i < nsb; i++) {
            uint8_t *o = out + r0 * row_bytes + i * 8 * bytes;
            const uint8_t *src = w + r0 * row_bytes + i * bytes;
            for (size_t k = 0; k < bytes / 4; k++) {
                for (size_t r = 0; r < 8; r++) {
                    memcpy(o + 32 * k + 4 * r, src + r * row_bytes + 4 * k, 4);
                }
            }
        }
    }
    memcpy(out + whole * row_bytes, w + whole * row_bytes, (rows - whole) * row_bytes);
}

static void avx2_q4_k_pack(const uint8_t *w, size_t rows, size_t row_bytes, uint8_t *out)
{
    pack8_dwords(w, rows, row_bytes, out, Q4_K_BYTES);
}

static void avx2_q5_k_pack(const uint8_t *w, size_t rows, size_t row_bytes, uint8_t *out)
{
    pack8_dwords(w, rows, row_bytes, out, Q5_K_BYTES);
}

/* A packed super-block's headers, unpacked per lane (row): sc[j] and mn[j] hold sub-block
 * j's 6-bit scale and min in both 16-bit halves of the row's dword (for vpmaddwd against
 * pairs of 16-bit sums); d and dmin as floats. */
struct q4k8_head {
    __m256i sc[8], mn[8];
    __m256 d, dmin;
};

TILE8 void q4k8_head_unpack(const uint8_t *h, struct q4k8_head *H)
{
    const __m256i low6 = _mm256_set1_epi32(0x3F3F3F3F), low4 = _mm256_set1_epi32(0x0F0F0F0F);
    const __m256i low2 = _mm256_set1_epi32(0x03030303);
    __m256i dm = load256(h), w0 = load256(h + 32), w1 = load256(h + 64), w2 = load256(h + 96);
    /* kq_unpack_scales per lane: sc[0..3] | sc[4..7] | m[0..3] | m[4..7] as bytes */
    __m256i part[4] = {
        _mm256_and_si256(w0, low6),
        _mm256_or_si256(_mm256_and_si256(w2, low4),
                        _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w0, 6), low2), 4)),
        _mm256_and_si256(w1, low6),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(w2, 4), low4),
                        _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(w1, 6), low2), 4)),
    };
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        /* byte j % 4 of each dword into both of its 16-bit halves */
        const __m256i ctrl = _mm256_setr_epi8(
            (char)(j % 4), -1, (char)(j % 4), -1, (char)(4 + j % 4), -1, (char)(4 + j % 4), -1,
            (char)(8 + j % 4), -1, (char)(8 + j % 4), -1, (char)(12 + j % 4), -1,
            (char)(12 + j % 4), -1, (char)(j % 4), -1, (char)(j % 4), -1, (char)(4 + j % 4), -1,
            (char)(4 + j % 4), -1, (char)(8 + j % 4), -1, (char)(8 + j % 4), -1,
            (char)(12 + j % 4), -1, (char)(12 + j % 4), -1);
        H->sc[j] = _mm256_shuffle_epi8(part[j / 4], ctrl);
        H->mn[j] = _mm256_shuffle_epi8(part[2 + j / 4], ctrl);
    }
    /* d (low half of each dword) and dmin (high half): the 8 halves gathered, widened */
    const __m256i lo = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                        0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    __m256i g = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(dm, lo), 0xD8); /* q0 q2 q1 q3 */
    H->d = _mm256_cvtph_ps(_mm256_castsi256_si128(g));
    H->dmin = _mm256_cvtph_ps(_mm256_extracti128_si256(g, 1));
}

/* Group grp (sub-blocks 2 grp and 2 grp + 1) of packed super-block i at h for kq8_block:
 * each code register's products for the T tokens, into isum[t]. */
TILE8 void kq8_group(const uint8_t *h, const uint8_t *const *xr, size_t i, int grp,
                     const struct q4k8_head *H, __m256i *isum, const int T, const bool FIVE)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
    const uint8_t *codes = h + KQ8_CODES(FIVE);
    /* registers per 16-bit sum: all 8 of the sub-block (q4_K), or halves (q5_K) */
    const int run = FIVE ? 4 : 8;
#pragma GCC unroll 2
    for (int k0 = 0; k0 < 8; k0 += run) {
        __m256i al[KQ8_TOK_MAX], ah[KQ8_TOK_MAX];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            al[t] = _mm256_setzero_si256();
            ah[t] = _mm256_setzero_si256();
        }
#pragma GCC unroll 8
        for (int k = k0; k < k0 + run; k++) {
            __m256i c = load256(codes + 32 * (8 * grp + k));
            __m256i lo = _mm256_and_si256(c, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), m4);
            if (FIVE) {
                /* bits 2 grp and 2 grp + 1 of the lane's qh bytes 4k .. 4k + 3 */
                __m256i qh = _mm256_srli_epi16(load256(h + 128 + 32 * k), 2 * grp);
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(qh, 4), bit4));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(qh, 3), bit4));
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const uint8_t *q8 =
                    xr[t] + i * Q8_K_BYTES + Q8_K_QS + 64 * grp + 4 * k;
                int32_t xl, xh;
                memcpy(&xl, q8, 4);
                memcpy(&xh, q8 + 32, 4);
                al[t] = _mm256_add_epi16(
                    al[t], _mm256_maddubs_epi16(lo, _mm256_set1_epi32(xl)));
                ah[t] = _mm256_add_epi16(
                    ah[t], _mm256_maddubs_epi16(hi, _mm256_set1_epi32(xh)));
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            isum[t] = _mm256_add_epi32(
                isum[t], _mm256_add_epi32(_mm256_madd_epi16(al[t], H->sc[2 * grp]),
                                          _mm256_madd_epi16(ah[t], H->sc[2 * grp + 1])));
        }
    }
}

/* Rows [b, b + 8) (a packed block) for tokens [t0, t0 + T): y[t * y_stride + r] for
 * r < 8. Per super-block, each code register serves the T tokens: its nibbles (q5_K,
 * FIVE: with the fifth bit from the lane's qh bytes, as avx2_q5_k_vec_dot places it) times
 * the token's 4 broadcast activation bytes with vpmaddubsw, summed in 16 bits over a
 * sub-block's 8 registers (q4_K: 8 * 2 * 15 * 128 < 2^15) or 4 (q5_K: 4 * 2 * 31 * 128 <
 * 2^15), so exact, then weighted by the lane's sub-block scale with vpmaddwd into int32;
 * the min term likewise from the bsums; then the portable float expression per lane.
 * Bit-identical to pd_q4_k_vec_dot and pd_q5_k_vec_dot. */
TILE8 void kq8_block(const struct pd_gemm_args *g, size_t b, size_t t0, float *y,
                     size_t y_stride, const int T, const bool FIVE)
{
    const size_t packed = KQ8_PACKED(FIVE);
    const uint8_t *blk = g->w + b * g->w_stride;
    const uint8_t *xr[KQ8_TOK_MAX];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        xr[t] = g->x + (t0 + (size_t)t) * g->x_stride;
    }
    __m256 sum[KQ8_TOK_MAX];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        sum[t] = _mm256_setzero_ps();
    }
    size_t nsb = g->n / PD_QK_K;
    const bool l2 = pd_pf_l2(g);
    for (size_t i = 0; i < nsb; i++) {
        const uint8_t *h = blk + i * packed;
        /* 8 super-blocks (9-11 KiB) ahead, past the block's and the matrix's end too (a
         * prefetch never faults): 2 ahead, stopping at the block's end, left a single
         * token's stream waiting on memory (q4_K, one token of 16384 x 8192: 43-44 -> 49
         * GMAC/s; 0.55 GB decode 67 -> 74 tok/s) */
        prefetch_block(h + 8 * packed, packed, l2);
        struct q4k8_head H;
        q4k8_head_unpack(h, &H);
        __m256i isum[KQ8_TOK_MAX];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            isum[t] = _mm256_setzero_si256();
        }
        /* q5_K's shifts by group are constants when the loop is unrolled (55-59 against
         * 50-54 GMAC/s); q4_K keeps the loop (one token ran slower unrolled) */
        if (FIVE) {
#pragma GCC unroll 4
            for (int grp = 0; grp < 4; grp++) {
                kq8_group(h, xr, i, grp, &H, isum, T, true);
            }
        } else {
            for (int grp = 0; grp < 4; grp++) {
                kq8_group(h, xr, i, grp, &H, isum, T, false);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const uint8_t *yb = xr[t] + i * Q8_K_BYTES;
            __m256i msum = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                int32_t pair; /* bsums[2j], bsums[2j + 1] */
                memcpy(&pair, yb + Q8_K_BSUMS + 4 * j, 4);
                msum = _mm256_add_epi32(msum, _mm256_madd_epi16(H.mn[j], _mm256_set1_epi32(pair)));
            }
            __m256 dy = _mm256_set1_ps(f32_load(yb));
            /* kq_combine per lane */
            __m256 dd = _mm256_mul_ps(H.d, dy);
            __m256 dm = _mm256_mul_ps(H.dmin, dy);
            __m256 a = _mm256_mul_ps(dd, _mm256_cvtepi32_ps(isum[t]));
            __m256 c = _mm256_mul_ps(dm, _mm256_cvtepi32_ps(msum));
            __m256 tt = _mm256_sub_ps(a, c);
            sum[t] = _mm256_add_ps(sum[t], tt);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        _mm256_storeu_ps(y + (size_t)t * y_stride, sum[t]);
    }
}

/* name(g, b, y, y_stride): every token of g for the packed block at row b, into y (rows
 * b .. b + 7 at y[0..8)), TOK tokens per call of BLOCK and the rest one at a time. */
#define ROWS8(name, BLOCK, TOK)                                                          \
    static AVX2_FN void name(const struct pd_gemm_args *g, size_t b, float *y,           \
                             size_t y_stride)                                            \
    {                                                                                    \
        size_t t = 0;                                                                    \
        for (; t + (TOK) <= g->n_tok; t += (TOK)) {                                      \
            BLOCK(g, b, t, y + t * y_stride, y_stride, TOK);                             \
        }                                                                                \
        for (; t < g->n_tok; t++) {                                                      \
            BLOCK(g, b, t, y + t * y_stride, y_stride, 1);                               \
        }                                                                                \
    }
#define Q4K8_BLOCK(g, b, t0, y, ys, T) kq8_block(g, b, t0, y, ys, T, false)
#define Q5K8_BLOCK(g, b, t0, y, ys, T) kq8_block(g, b, t0, y, ys, T, true)
ROWS8(q4k8_rows, Q4K8_BLOCK, Q4K8_TOK)
ROWS8(q5k8_rows, Q5K8_BLOCK, Q5K8_TOK)

/* ---- q6_K packed, rows in lanes ------------------------------------------------------ */

/* The packed layout (avx2_q6_k_pack): each block of 8 rows holds, per super-block, 52
 * registers of 32 bytes and the 8 rows' d halves, register k holding in dword lane r 4
 * bytes of row r: registers 0..3 the 16 scale bytes (4 k .. 4 k + 3), then for half h
 * and m < 8 three registers: A = ql[64 h + 4 m ..], B = ql[64 h + 32 + 4 m ..] and H =
 * qh[32 h + 4 m ..], so that A's and B's nibbles with H's bit pairs give the codes of
 * elements 128 h + 32 k + 4 m .. + 3 of each row (k < 4: A low, B low, A high, B high,
 * with H's bits 2k, 2k + 1); then the 8 d halves. The same bytes as the 8 rows (8 *
 * Q6_K_BYTES per super-block), so rows past the last whole block keep the file's layout
 * in place. */
#define Q6K8_PACKED (8 * Q6_K_BYTES)
#define Q6K8_CODES 128
#define Q6K8_D (Q6K8_CODES + 48 * 32)
_Static_assert(Q6K8_D + 16 == Q6K8_PACKED, "q6_K packed block: scales, codes, d");
/* Tokens one pass over a block's weights serves. */
#define Q6K8_TOK 4

static AVX2_FN void avx2_q6_k_pack(const uint8_t *w, size_t rows, size_t row_bytes,
                                   uint8_t *out)
{
    size_t nsb = row_bytes / Q6_K_BYTES;
    size_t whole = rows / 8 * 8;
    for (size_t r0 = 0; r0 < whole; r0 += 8) {
        for (size_t i = 0; i < nsb; i++) {
            uint8_t *o = out + r0 * row_bytes + i * Q6K8_PACKED;
            const uint8_t *src = w + r0 * row_bytes + i * Q6_K_BYTES;
            for (size_t r = 0; r < 8; r++) {
                const uint8_t *s = src + r * row_bytes;
                for (size_t k = 0; k < 4; k++) {
                    memcpy(o + 32 * k + 4 * r, s + Q6_K_SCALES + 4 * k, 4);
                }
                for (size_t h = 0; h < 2; h++) {
                    for (size_t m = 0; m < 8; m++) {
                        uint8_t *reg = o + Q6K8_CODES + 32 * 3 * (8 * h + m) + 4 * r;
                        memcpy(reg, s + Q6_K_QL + 64 * h + 4 * m, 4);
                        memcpy(reg + 32, s + Q6_K_QL + 64 * h + 32 + 4 * m, 4);
                        memcpy(reg + 64, s + Q6_K_QH + 32 * h + 4 * m, 4);
                    }
                }
                memcpy(o + Q6K8_D + 2 * r, s + Q6_K_D, 2);
            }
        }
    }
    memcpy(out + whole * row_bytes, w + whole * row_bytes, (rows - whole) * row_bytes);
}

/* Sub-block j's signed scale of each lane (row) in both 16-bit halves of its dword, from
 * the packed scale registers s[4]. */
TILE8 __m256i q6k8_scale(const __m256i *s, int j)
{
    /* dword q of each 128-bit half: byte 4 q + j % 4 into bytes 1 and 3, zeros below */
    unsigned v[4];
    for (unsigned q = 0; q < 4; q++) {
        unsigned c = 4 * q + (unsigned)(j % 4);
        v[q] = 0x80u | c << 8 | 0x80u << 16 | c << 24;
    }
    const __m256i ctrl = _mm256_setr_epi32((int)v[0], (int)v[1], (int)v[2], (int)v[3],
                                           (int)v[0], (int)v[1], (int)v[2], (int)v[3]);
    return _mm256_srai_epi16(_mm256_shuffle_epi8(s[j / 4], ctrl), 8);
}

/* Rows [b, b + 8) (a packed block) for tokens [t0, t0 + T): y[t * y_stride + r] for
 * r < 8. Per super-block and quarter of a half (32 elements), each register of 4 codes
 * per row serves the T tokens: the codes times the token's 4 broadcast activation bytes
 * with vpmaddubsw, two registers summed in 16 bits (2 * 2 * 63 * 128 < 2^15: exact),
 * then weighted by the lane's signed sub-block scale with vpmaddwd into int32; the offset
 * of 32 as 32 * sum(sc * bsums) from scale pairs; then the portable float expression per
 * lane. Bit-identical to pd_q6_k_vec_dot. */
TILE8 void q6k8_block(const struct pd_gemm_args *g, size_t b, size_t t0, float *y,
                      size_t y_stride, const int T)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    /* bsums reordered per 128-bit half as pairs (0, 2) (1, 3) (4, 6) (5, 7) */
    const __m256i pairs = _mm256_setr_epi8(0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15,
                                           0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15);
    const uint8_t *blk = g->w + b * g->w_stride;
    const uint8_t *xr[Q6K8_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        xr[t] = g->x + (t0 + (size_t)t) * g->x_stride;
    }
    __m256 sum[Q6K8_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        sum[t] = _mm256_setzero_ps();
    }
    size_t nsb = g->n / PD_QK_K;
    const bool l2 = pd_pf_l2(g);
    for (size_t i = 0; i < nsb; i++) {
        const uint8_t *p = blk + i * Q6K8_PACKED;
        prefetch_block(p + 6 * Q6K8_PACKED, Q6K8_PACKED, l2);
        __m256i s[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            s[k] = load256(p + 32 * k);
        }
        __m256i isum[Q6K8_TOK];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            isum[t] = _mm256_setzero_si256();
        }
        for (int h = 0; h < 2; h++) {
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                /* register A (k even) or B (k odd), nibble k / 2, H's bits 2k, 2k + 1 */
                const uint8_t *reg = p + Q6K8_CODES + 32 * 3 * 8 * h + 32 * (k & 1);
#pragma GCC unroll 2
                for (int half = 0; half < 2; half++) {
                    __m256i sc = q6k8_scale(s, 8 * h + 2 * k + half);
#pragma GCC unroll 2
                    for (int mp = 0; mp < 2; mp++) {
                        __m256i a16[Q6K8_TOK];
#pragma GCC unroll 4
                        for (int t = 0; t < T; t++) {
                            a16[t] = _mm256_setzero_si256();
                        }
#pragma GCC unroll 2
                        for (int mm = 0; mm < 2; mm++) {
                            int m = 4 * half + 2 * mp + mm;
                            __m256i lq = load256(reg + 32 * 3 * m);
                            __m256i hq = load256(p + Q6K8_CODES + 32 * (3 * (8 * h + m) + 2));
                            lq = k < 2 ? lq : _mm256_srli_epi16(lq, 4);
                            hq = k == 0 ? _mm256_slli_epi16(hq, 4)
                               : k == 1 ? _mm256_slli_epi16(hq, 2)
                               : k == 2 ? hq
                                        : _mm256_srli_epi16(hq, 2);
                            __m256i q = _mm256_or_si256(_mm256_and_si256(lq, m4),
                                                        _mm256_and_si256(hq, m2));
#pragma GCC unroll 4
                            for (int t = 0; t < T; t++) {
                                int32_t xb;
                                memcpy(&xb, xr[t] + i * Q8_K_BYTES + Q8_K_QS + 128 * h + 32 * k +
                                                4 * m, 4);
                                a16[t] = _mm256_add_epi16(
                                    a16[t], _mm256_maddubs_epi16(q, _mm256_set1_epi32(xb)));
                            }
                        }
#pragma GCC unroll 4
                        for (int t = 0; t < T; t++) {
                            isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(a16[t], sc));
                        }
                    }
                }
            }
        }
        /* the scales as signed 16-bit pairs: even bytes (sc[4k], sc[4k + 2]), odd bytes
         * (sc[4k + 1], sc[4k + 3]) */
        __m256i se[4], so[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            se[k] = _mm256_srai_epi16(_mm256_slli_epi16(s[k], 8), 8);
            so[k] = _mm256_srai_epi16(s[k], 8);
        }
        __m256 d = _mm256_cvtph_ps(load128(p + Q6K8_D));
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const uint8_t *yb = xr[t] + i * Q8_K_BYTES;
            int32_t bp[8]; /* (bsums[4k], [4k + 2]), (bsums[4k + 1], [4k + 3]) for k < 4 */
            _mm256_storeu_si256((__m256i *)bp,
                                _mm256_shuffle_epi8(load256(yb + Q8_K_BSUMS), pairs));
            __m256i bias = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i ev = _mm256_madd_epi16(se[k], _mm256_set1_epi32(bp[2 * k]));
                __m256i od = _mm256_madd_epi16(so[k], _mm256_set1_epi32(bp[2 * k + 1]));
                bias = _mm256_add_epi32(bias, _mm256_add_epi32(ev, od));
            }
            __m256i is = _mm256_sub_epi32(isum[t], _mm256_slli_epi32(bias, 5));
            __m256 dd = _mm256_mul_ps(d, _mm256_set1_ps(f32_load(yb)));
            __m256 tt = _mm256_mul_ps(dd, _mm256_cvtepi32_ps(is));
            sum[t] = _mm256_add_ps(sum[t], tt);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        _mm256_storeu_ps(y + (size_t)t * y_stride, sum[t]);
    }
}

ROWS8(q6k8_rows, q6k8_block, Q6K8_TOK)

/* ---- q4_0, q5_0, q4_1, q5_1 packed, rows in lanes ------------------------------------- */

/* The packed layout (avx2_q4_0_pack and the others of the 32-element types): each block of
 * 8 rows holds, per block of 32 elements, the 8 rows' half scales d (16 bytes); for q4_1
 * and q5_1 their half offsets m (16 bytes); for q5_0 and q5_1 one register of the rows'
 * fifth bits, rearranged (q8_qh); then 4 registers of 32 bytes, register j holding in
 * dword lane r row r's code bytes 4 j .. 4 j + 3 (each byte: element l in its low nibble,
 * l + 16 in its high one). The same bytes as the 8 rows, in the same place as a whole;
 * rows past the last whole block keep the file's layout. */
#define Q40X8_PACKED (8 * Q4_0_BYTES)
_Static_assert(Q40X8_PACKED == 16 + 4 * 32, "q4_0 packed block: scales and 4 registers");
_Static_assert(8 * Q5_0_BYTES == 16 + 32 + 4 * 32, "q5_0 packed block");
_Static_assert(8 * Q4_1_BYTES == 16 + 16 + 4 * 32, "q4_1 packed block");
_Static_assert(8 * Q5_1_BYTES == 16 + 16 + 32 + 4 * 32, "q5_1 packed block");
/* The activation sums a product keeps on the stack (PD_PACKED_SX): a pass takes as many
 * tokens as fit, at most Q40X8_PASS; tokens go over a block's weights Q40X8_TOK at a
 * time. */
#define Q40X8_PASS 64
#define Q40X8_TOK 2

/* A 32-element type's block in the file (quant.c's q32_format) and in the packed layout:
 * bytes per block, where m, qh (0: none) and the codes are in the file's block, the
 * offset subtracted from each code (q4_0 8, q5_0 16, else 0), and in the packed block of
 * 8 rows where m, qh and the code registers start. Constant in each inlined use. */
struct q8_fmt {
    size_t bytes, m, qh, qs;
    int offset;
    size_t pm, pqh, pqs;
};

static inline __attribute__((always_inline)) struct q8_fmt q8_fmt(const enum pd_dtype T)
{
    switch (T) {
    case PD_DTYPE_Q5_0: return (struct q8_fmt){Q5_0_BYTES, 0, 2, 6, 16, 0, 16, 48};
    case PD_DTYPE_Q4_1: return (struct q8_fmt){Q4_1_BYTES, 2, 0, 4, 0, 16, 0, 32};
    case PD_DTYPE_Q5_1: return (struct q8_fmt){Q5_1_BYTES, 2, 4, 8, 0, 16, 32, 64};
    case PD_DTYPE_Q8_0: return (struct q8_fmt){Q8_0_BYTES, 0, 0, 2, 0, 0, 0, 16};
    default: return (struct q8_fmt){Q4_0_BYTES, 0, 0, 2, 8, 0, 0, 16};
    }
}

/* Rows too long for the packed q4_0/q5_0 product's activation sums: the pack leaves them
 * in the file's layout and the gemm hands them to the tiles (the offset-free q4_1 and
 * q5_1 need no sums but keep the same rule). */
static inline bool q40x8_too_long(size_t row_bytes, size_t bytes)
{
    return row_bytes / bytes > PD_PACKED_SX;
}

/* A row's fifth bits qh (bit l for element l) rearranged so that bit j of byte b is
 * element 4 j + b's (the low nibble of code byte 4 j + b) and bit 4 + j element 16 + 4 j +
 * b's (its high nibble): code register j then takes its bits by one shift each way. */
static uint32_t q8_qh(uint32_t qh)
{
    uint32_t r = 0;
    for (int b = 0; b < 4; b++) {
        for (int j = 0; j < 4; j++) {
            r |= ((qh >> (4 * j + b)) & 1u) << (8 * b + j);
            r |= ((qh >> (16 + 4 * j + b)) & 1u) << (8 * b + 4 + j);
        }
    }
    return r;
}

/* The 8-row packed layout of the 32-element types (q8_0: 8 code registers, the rest 4). */
static void pack8_q_0(const uint8_t *w, size_t rows, size_t row_bytes, uint8_t *out,
                      const enum pd_dtype T)
{
    const struct q8_fmt f = q8_fmt(T);
    size_t regs = T == PD_DTYPE_Q8_0 ? 8 : 4;
    if (T != PD_DTYPE_Q8_0 && q40x8_too_long(row_bytes, f.bytes)) {
        memcpy(out, w, rows * row_bytes);
        return;
    }
    size_t nb = row_bytes / f.bytes;
    size_t whole = rows / 8 * 8;
    for (size_t r0 = 0; r0 < whole; r0 += 8) {
        for (size_t b = 0; b < nb; b++) {
            uint8_t *o = out + r0 * row_bytes + b * 8 * f.bytes;
            for (size_t r = 0; r < 8; r++) {
                const uint8_t *src = w + (r0 + r) * row_bytes + b * f.bytes;
                memcpy(o + 2 * r, src, 2);
                if (f.m) {
                    memcpy(o + f.pm + 2 * r, src + f.m, 2);
                }
                if (f.qh) {
                    uint32_t qh;
                    memcpy(&qh, src + f.qh, 4);
                    qh = q8_qh(qh);
                    memcpy(o + f.pqh + 4 * r, &qh, 4);
                }
                for (size_t j = 0; j < regs; j++) {
                    memcpy(o + f.pqs + 32 * j + 4 * r, src + f.qs + 4 * j, 4);
                }
            }
        }
    }
    memcpy(out + whole * row_bytes, w + whole * row_bytes, (rows - whole) * row_bytes);
}

static void avx2_q4_0_pack(const uint8_t *w, size_t rows, size_t row_bytes, uint8_t *out)
{
    pack8_q_0(w, rows, row_bytes, out, PD_DTYPE_Q4_0);
}

static void avx2_q5_0_pack(const uint8_t *w, size_t rows, size_t row_bytes, uint8_t *out)
{
    pack8_q_0(w, rows, row_bytes, out, PD_DTYPE_Q5_0);
}

static void avx2_q4_1_pack(const uint8_t *w, size_t rows, size_t row_bytes, uint8_t *out)
{
    pack8_q_0(w, rows, row_bytes, out, PD_DTYPE_Q4_1);
}

static void avx2_q5_1_pack(const uint8_t *w, size_t rows, size_t row_bytes, uint8_t *out)
{
    pack8_q_0(w, rows, row_bytes, out, PD_DTYPE_Q5_1);
}

AVX2_FN void pd_avx2_q8_0_sums(const uint8_t *x, size_t x_stride, size_t nt, size_t nb,
                               int32_t *sx)
{
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (size_t t = 0; t < nt; t++) {
        const uint8_t *b = x + t * x_stride + 2;
        for (size_t i = 0; i < nb; i++, b += Q8_0_BYTES) {
            /* x + 128 as unsigned bytes, summed 8 at a time, less 32 * 128 */
            __m256i s = _mm256_sad_epu8(_mm256_xor_si256(load256(b), flip),
                                        _mm256_setzero_si256());
            __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            h = _mm_add_epi64(h, _mm_unpackhi_epi64(h, h));
            sx[t * nb + i] = (int32_t)_mm_cvtsi128_si32(h) - 32 * 128;
        }
    }
}

/* Rows [b, b + 8) (a packed block of type TYPE: q4_0, q5_0, q4_1 or q5_1) for tokens [t0,
 * t0 + T) (sx: their activation sums, nb per token, for the types with an offset), to y[t *
 * y_stride + r]. Per block each code register serves the T tokens: its nibbles (with their
 * fifth bits for q5_0/q5_1) times the token's 4 broadcast activation bytes with
 * vpmaddubsw, summed in 16 bits over 8 products (4 for five-bit codes: 4 * 2 * 31 * 128 <
 * 2^15, as 8 * 2 * 15 * 128 is for four: exact), added to int32 lanes by vpmaddwd, less
 * offset * sum(x); then one FMA by d_w * d_x per lane and, for q4_1/q5_1, one by m_w * s_x
 * (the float order differs from the portable dot by rounding only). */
TILE8 void q_0x8_block(const struct pd_gemm_args *g, size_t b, size_t t0, const int32_t *sx,
                       float *y, size_t y_stride, const int T, const enum pd_dtype TYPE)
{
    const struct q8_fmt f = q8_fmt(TYPE);
    const bool five = f.qh != 0, min = f.m != 0;
    const size_t packed = 8 * f.bytes, xb = min ? Q8_1_BYTES : Q8_0_BYTES, xq = min ? 4 : 2;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const __m256i bit4 = _mm256_set1_epi8(0x10);
    const uint8_t *blk = g->w + b * g->w_stride;
    size_t nb = g->n / PD_QK4_0;
    __m256 sum[Q40X8_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        sum[t] = _mm256_setzero_ps();
    }
    const bool l2 = pd_pf_l2(g);
    for (size_t i = 0; i < nb; i++) {
        const uint8_t *h = blk + i * packed;
        /* 64 blocks (9-12 KiB) ahead, past the block's and the matrix's end too (a prefetch
         * never faults): 4 ahead left a single token's stream waiting on memory (q4_0, one
         * token of 16384 x 8192, packed: 33 -> 51-58 GMAC/s; 32 ahead 51) */
        prefetch_block(h + 64 * packed, packed, l2);
        __m256 d = _mm256_cvtph_ps(load128(h));
        __m256i lo[4], hi[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m256i c = load256(h + f.pqs + 32 * j);
            lo[j] = _mm256_and_si256(c, m4);
            hi[j] = _mm256_and_si256(_mm256_srli_epi16(c, 4), m4);
            if (five) {
                /* bit j of each byte of the rearranged qh to bit 4 (low nibbles), bit 4 + j
                 * likewise (high nibbles); no byte takes another's bit 4 */
                __m256i q = load256(h + f.pqh);
                lo[j] = _mm256_or_si256(lo[j], _mm256_and_si256(_mm256_slli_epi32(q, 4 - j), bit4));
                hi[j] = _mm256_or_si256(hi[j], _mm256_and_si256(_mm256_srli_epi32(q, j), bit4));
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const uint8_t *x = g->x + (t0 + (size_t)t) * g->x_stride + i * xb;
            __m256i s = _mm256_setzero_si256();
            const int run = five ? 2 : 4; /* registers per 16-bit sum */
#pragma GCC unroll 2
            for (int j0 = 0; j0 < 4; j0 += run) {
                __m256i a = _mm256_setzero_si256();
#pragma GCC unroll 4
                for (int j = j0; j < j0 + run; j++) {
                    int32_t xl, xh;
                    memcpy(&xl, x + xq + 4 * j, 4);
                    memcpy(&xh, x + xq + 16 + 4 * j, 4);
                    a = _mm256_add_epi16(a, _mm256_maddubs_epi16(lo[j], _mm256_set1_epi32(xl)));
                    a = _mm256_add_epi16(a, _mm256_maddubs_epi16(hi[j], _mm256_set1_epi32(xh)));
                }
                s = _mm256_add_epi32(s, _mm256_madd_epi16(a, ones));
            }
            if (f.offset) {
                s = _mm256_sub_epi32(s, _mm256_set1_epi32(f.offset * sx[(size_t)t * nb + i]));
            }
            __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(f16_load(x)));
            sum[t] = _mm256_fmadd_ps(p, d, sum[t]);
            if (min) {
                sum[t] = _mm256_fmadd_ps(_mm256_cvtph_ps(load128(h + f.pm)),
                                         _mm256_set1_ps(f16_load(x + 2)), sum[t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        _mm256_storeu_ps(y + (size_t)t * y_stride, sum[t]);
    }
}

/* Tokens [t0, t0 + nt) for the packed block at row b, into y (rows b .. b + 7 at
 * y[0..8), token t0 + t at row t of y). */
#define Q_0X8_ROWS(name, TYPE)                                                            \
    static AVX2_FN void name(const struct pd_gemm_args *g, size_t b, size_t t0, size_t nt, \
                             const int32_t *sx, float *y, size_t y_stride)               \
    {                                                                                    \
        size_t nb = g->n / PD_QK4_0, t = 0;                                              \
        for (; t + Q40X8_TOK <= nt; t += Q40X8_TOK) {                                    \
            q_0x8_block(g, b, t0 + t, sx + t * nb, y + t * y_stride, y_stride, Q40X8_TOK, \
                        TYPE);                                                           \
        }                                                                                \
        for (; t < nt; t++) {                                                            \
            q_0x8_block(g, b, t0 + t, sx + t * nb, y + t * y_stride, y_stride, 1, TYPE);  \
        }                                                                                \
    }
Q_0X8_ROWS(q40x8_rows, PD_DTYPE_Q4_0)
Q_0X8_ROWS(q50x8_rows, PD_DTYPE_Q5_0)
Q_0X8_ROWS(q41x8_rows, PD_DTYPE_Q4_1)
Q_0X8_ROWS(q51x8_rows, PD_DTYPE_Q5_1)
#undef Q_0X8_ROWS

/* ---- q8_0 packed, rows in lanes --------------------------------------------------------- */

/* The packed layout (avx2_q8_0_pack): each block of 8 rows holds, per q8_0 block, the 8
 * rows' half scales (16 bytes) and 8 registers of 32 bytes, register j holding in dword
 * lane r row r's code bytes 4 j .. 4 j + 3. The same bytes as the 8 rows, in the same
 * place as a whole; rows past the last whole block keep the file's layout. */
#define Q80X8_PACKED (8 * Q8_0_BYTES)
_Static_assert(Q80X8_PACKED == 16 + 8 * 32, "q8_0 packed block: scales and 8 registers");
/* Tokens that go over a block's weights at a time; a part-block's scratch rows. */
#define Q80X8_TOK 4
#define Q80X8_PASS 64

static void avx2_q8_0_pack(const uint8_t *w, size_t rows, size_t row_bytes, uint8_t *out)
{
    pack8_q_0(w, rows, row_bytes, out, PD_DTYPE_Q8_0);
}

/* Whether some activation byte of g (q8_0 blocks) is -128, which the sign trick below
 * cannot multiply (the quantiser gives one only for inputs past the half range, or NaN). */
static AVX2_FN bool q8_0_has_min(const struct pd_gemm_args *g)
{
    const __m256i min = _mm256_set1_epi8((char)0x80);
    __m256i any = _mm256_setzero_si256();
    for (size_t t = 0; t < g->n_tok; t++) {
        const uint8_t *x = g->x + t * g->x_stride + 2;
        for (size_t i = 0; i < g->n / PD_QK8_0; i++) {
            any = _mm256_or_si256(any, _mm256_cmpeq_epi8(load256(x + i * Q8_0_BYTES), min));
        }
    }
    return !_mm256_testz_si256(any, any);
}

/* Rows [b, b + 8) (a packed block) for tokens [t0, t0 + T), to y[t * y_stride + r]. Per
 * q8_0 block each code register's magnitudes serve the T tokens: |w| times the token's 4
 * broadcast activation bytes with w's signs (vpsignb; with |x| <= 127 each pair sum fits
 * 16 bits), widened to int32 lanes by one vpmaddwd per register: exact; then one FMA by
 * d_w * d_x per lane (the float order differs from the portable dot by rounding only).
 * MIN (some activation byte is -128, q8_0_has_min): such bytes are multiplied as -127
 * and w once more subtracted (a vpmaddubsw of the 0/1 bytes by w), still exact. */
TILE8 void q80x8_block(const struct pd_gemm_args *g, size_t b, size_t t0, float *y,
                       size_t y_stride, const int T, const bool MIN)
{
    const __m256i min = _mm256_set1_epi8((char)0x80), one8 = _mm256_set1_epi8(1);
    const __m256i ones = _mm256_set1_epi16(1);
    const uint8_t *blk = g->w + b * g->w_stride;
    size_t nb = g->n / PD_QK8_0;
    __m256 sum[Q80X8_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        sum[t] = _mm256_setzero_ps();
    }
    const bool l2 = pd_pf_l2(g);
    for (size_t i = 0; i < nb; i++) {
        const uint8_t *h = blk + i * Q80X8_PACKED;
        /* 9 KiB ahead, as q4_0's packed product fetches */
        prefetch_block(h + 32 * Q80X8_PACKED, Q80X8_PACKED, l2);
        __m256 d = _mm256_cvtph_ps(load128(h));
        __m256i c[8], m[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            c[j] = load256(h + 16 + 32 * j);
            m[j] = _mm256_abs_epi8(c[j]);
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const uint8_t *x = g->x + (t0 + (size_t)t) * g->x_stride + i * Q8_0_BYTES;
            __m256i s = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                int32_t xj;
                memcpy(&xj, x + 2 + 4 * j, 4);
                __m256i xv = _mm256_set1_epi32(xj);
                if (MIN) {
                    __m256i e = _mm256_and_si256(_mm256_cmpeq_epi8(xv, min), one8);
                    xv = _mm256_add_epi8(xv, e);
                    s = _mm256_sub_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(e, c[j]),
                                                              ones));
                }
                __m256i p = _mm256_maddubs_epi16(m[j], _mm256_sign_epi8(xv, c[j]));
                s = _mm256_add_epi32(s, _mm256_madd_epi16(p, ones));
            }
            __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(f16_load(x)));
            sum[t] = _mm256_fmadd_ps(p, d, sum[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        _mm256_storeu_ps(y + (size_t)t * y_stride, sum[t]);
    }
}

/* Tokens [t0, t0 + nt) for the packed block at row b, into y (rows b .. b + 7 at
 * y[0..8), token t0 + t at row t of y). */
static AVX2_FN void q80x8_rows(const struct pd_gemm_args *g, size_t b, size_t t0, size_t nt,
                               float *y, size_t y_stride, bool min)
{
    size_t t = 0;
    for (; t + Q80X8_TOK <= nt; t += Q80X8_TOK) {
        if (min) {
            q80x8_block(g, b, t0 + t, y + t * y_stride, y_stride, Q80X8_TOK, true);
        } else {
            q80x8_block(g, b, t0 + t, y + t * y_stride, y_stride, Q80X8_TOK, false);
        }
    }
    for (; t < nt; t++) {
        if (min) {
            q80x8_block(g, b, t0 + t, y + t * y_stride, y_stride, 1, true);
        } else {
            q80x8_block(g, b, t0 + t, y + t * y_stride, y_stride, 1, false);
        }
    }
}

/* Rows [r0, r1) of every token: RM x RN tiles with 1-token and 1-row remainders; a single
 * token (decode) takes 8 x 1 tiles. */
#define GEMM8_DRIVER(name, TILE, RM, RN) GEMM_DRIVER_N(name, TILE, RM, RN, 8)
/* The driver for tiles of up to MAXP accumulators; token remainders of a tile wider than
 * 2 take a 2-token tile first. */
#define GEMM_DRIVER_N(name, TILE, RM, RN, MAXP)                                           \
    static AVX2_FN void name(const struct pd_gemm_args *g, size_t r0, size_t r1)         \
    {                                                                                    \
        _Static_assert((RM) * (RN) <= (MAXP), "the tile's accumulators fit");           \
        size_t nt = g->n_tok, r = r0;                                                    \
        if (nt == 1) {                                                                   \
            for (; r + 8 <= r1; r += 8) {                                                \
                TILE(g, r, 0, 8, 1);                                                     \
            }                                                                            \
        }                                                                                \
        for (; r + (RM) <= r1; r += (RM)) {                                              \
            size_t t = 0;                                                                \
            for (; t + (RN) <= nt; t += (RN)) {                                          \
                TILE(g, r, t, RM, RN);                                                   \
            }                                                                            \
            if ((RN) > 2 && t + 2 <= nt) {                                               \
                TILE(g, r, t, RM, 2);                                                    \
                t += 2;                                                                  \
            }                                                                            \
            for (; t < nt; t++) {                                                        \
                TILE(g, r, t, RM, 1);                                                    \
            }                                                                            \
        }                                                                                \
        for (; r < r1; r++) {                                                            \
            size_t t = 0;                                                                \
            for (; t + (RN) <= nt; t += (RN)) {                                          \
                TILE(g, r, t, 1, RN);                                                    \
            }                                                                            \
            for (; t < nt; t++) {                                                        \
                TILE(g, r, t, 1, 1);                                                     \
            }                                                                            \
        }                                                                                \
    }

#define F16_TILE8(g, r, t, RM, RN) half_tile8(g, r, t, false, RM, RN, HALF8_FILE)
#define BF16_TILE8(g, r, t, RM, RN) half_tile8(g, r, t, true, RM, RN, HALF8_FILE)
#define F16P_TILE8(g, r, t, RM, RN) half_tile8(g, r, t, false, RM, RN, HALF8_PACKED)
#define BF16P_TILE8(g, r, t, RM, RN) half_tile8(g, r, t, true, RM, RN, HALF8_PACKED)
#define F16W_TILE8(g, r, t, RM, RN) half_tile8(g, r, t, false, RM, RN, HALF8_WIDE)
#define BF16W_TILE8(g, r, t, RM, RN) half_tile8(g, r, t, true, RM, RN, HALF8_WIDE)

#define Q8_0_TILE8(g, r, t, RM, RN) q_0_tile8(g, r, t, PD_DTYPE_Q8_0, RM, RN)
#define Q4_0_TILE8(g, r, t, RM, RN) q_0_tile8(g, r, t, PD_DTYPE_Q4_0, RM, RN)
#define Q5_0_TILE8(g, r, t, RM, RN) q_0_tile8(g, r, t, PD_DTYPE_Q5_0, RM, RN)
#define Q4_1_TILE8(g, r, t, RM, RN) q_0_tile8(g, r, t, PD_DTYPE_Q4_1, RM, RN)
#define Q5_1_TILE8(g, r, t, RM, RN) q_0_tile8(g, r, t, PD_DTYPE_Q5_1, RM, RN)
GEMM8_DRIVER(q8_0_tiles, Q8_0_TILE8, 4, 2)
GEMM8_DRIVER(q4_0_tiles, Q4_0_TILE8, 4, 2)
GEMM_DRIVER_N(q5_0_tiles, Q5_0_TILE8, 4, 3, 12)
GEMM8_DRIVER(q4_1_tiles, Q4_1_TILE8, 4, 2)
GEMM_DRIVER_N(q5_1_tiles, Q5_1_TILE8, 4, 3, 12)

/* The packed q4_0/q5_0/q4_1/q5_1 rows of one type (q40x8_rows and the others). */
typedef void (*q_0x8_rows_fn)(const struct pd_gemm_args *g, size_t b, size_t t0, size_t nt,
                              const int32_t *sx, float *y, size_t y_stride);

/* The 32-element types but q8_0: packed weights in lanes, 8 rows at a time, the tokens in
 * passes that share one computation of their activation sums (types with an offset; a
 * block only partly in [r0, r1) computed whole into a scratch row per token, the asked
 * rows copied); rows past the last whole block, weights in the file's layout and rows
 * too long for the sums' stack room, in tiles. */
static AVX2_FN void q_0x8_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1,
                               enum pd_dtype type, q_0x8_rows_fn rows, pd_gemm_fn tiles)
{
    size_t nb = g->n / PD_QK4_0, whole = g->w_rows / 8 * 8;
    size_t bytes = q8_fmt(type).bytes;
    bool sums = type == PD_DTYPE_Q4_0 || type == PD_DTYPE_Q5_0;
    if (g->packed && !q40x8_too_long(g->w_stride, bytes) && r0 < whole) {
        int32_t sx[PD_PACKED_SX];
        float tmp[Q40X8_PASS * 8];
        size_t pass = PD_PACKED_SX / nb < Q40X8_PASS ? PD_PACKED_SX / nb : Q40X8_PASS;
        size_t end = r1 < whole ? r1 : whole;
        for (size_t t0 = 0; t0 < g->n_tok; t0 += pass) {
            size_t nt = g->n_tok - t0 < pass ? g->n_tok - t0 : pass;
            if (sums) {
                pd_avx2_q8_0_sums(g->x + t0 * g->x_stride, g->x_stride, nt, nb, sx);
            }
            for (size_t r = r0; r < end;) {
                size_t b = r / 8 * 8, e = b + 8 < end ? b + 8 : end;
                float *y = g->y + t0 * g->y_stride;
                if (r == b && e == b + 8) {
                    rows(g, b, t0, nt, sx, y + b, g->y_stride);
                } else {
                    rows(g, b, t0, nt, sx, tmp, 8);
                    for (size_t t = 0; t < nt; t++) {
                        memcpy(y + t * g->y_stride + r, tmp + t * 8 + (r - b),
                               (e - r) * sizeof(float));
                    }
                }
                r = e;
            }
        }
        r0 = end;
    }
    if (r0 < r1) {
        tiles(g, r0, r1);
    }
}

static AVX2_FN void avx2_q4_0_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    q_0x8_gemm(g, r0, r1, PD_DTYPE_Q4_0, q40x8_rows, q4_0_tiles);
}

static AVX2_FN void avx2_q5_0_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    q_0x8_gemm(g, r0, r1, PD_DTYPE_Q5_0, q50x8_rows, q5_0_tiles);
}

static AVX2_FN void avx2_q4_1_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    q_0x8_gemm(g, r0, r1, PD_DTYPE_Q4_1, q41x8_rows, q4_1_tiles);
}

static AVX2_FN void avx2_q5_1_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    q_0x8_gemm(g, r0, r1, PD_DTYPE_Q5_1, q51x8_rows, q5_1_tiles);
}

/* q8_0: packed weights in lanes, 8 rows at a time (a block only partly in [r0, r1)
 * computed whole into scratch rows, the asked rows copied); rows past the last whole
 * block and weights in the file's layout in tiles. */
static AVX2_FN void avx2_q8_0_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    size_t whole = g->w_rows / 8 * 8;
    if (g->packed && r0 < whole) {
        size_t end = r1 < whole ? r1 : whole;
        bool min = q8_0_has_min(g);
        for (size_t r = r0; r < end;) {
            size_t b = r / 8 * 8, e = b + 8 < end ? b + 8 : end;
            if (r == b && e == b + 8) {
                q80x8_rows(g, b, 0, g->n_tok, g->y + b, g->y_stride, min);
            } else {
                float tmp[Q80X8_PASS * 8];
                for (size_t t0 = 0; t0 < g->n_tok; t0 += Q80X8_PASS) {
                    size_t nt = g->n_tok - t0 < Q80X8_PASS ? g->n_tok - t0 : Q80X8_PASS;
                    q80x8_rows(g, b, t0, nt, tmp, 8, min);
                    for (size_t t = 0; t < nt; t++) {
                        memcpy(g->y + (t0 + t) * g->y_stride + r, tmp + t * 8 + (r - b),
                               (e - r) * sizeof(float));
                    }
                }
            }
            r = e;
        }
        r0 = end;
    }
    if (r0 < r1) {
        q8_0_tiles(g, r0, r1);
    }
}

/* q4_K, q5_K: each row's scale unpacking serves 4 tokens (q4_K: 53 against 42 GMAC/s at
 * 4 x 2) */
#define Q4_K_TILE8(g, r, t, RM, RN) kq45_tile8(g, r, t, false, RM, RN)
#define Q5_K_TILE8(g, r, t, RM, RN) kq45_tile8(g, r, t, true, RM, RN)
GEMM8_DRIVER(q4_k_tiles, Q4_K_TILE8, 2, 4)
/* The rows of one packed 8-row block for every token of g (q4k8_rows, q5k8_rows, q6k8_rows). */
typedef void (*rows8_fn)(const struct pd_gemm_args *g, size_t b, float *y, size_t y_stride);

/* Rows [r0, r1) of the packed block at row b, r0 > b or r1 < b + 8: the block computed
 * whole for `pass` tokens at a time into a scratch row, the wanted rows copied out. */
static AVX2_FN void rows8_part(const struct pd_gemm_args *g, size_t b, size_t r0, size_t r1,
                               rows8_fn rows, size_t pass)
{
    float tmp[8 * 8];
    assert(pass <= 8);
    for (size_t t0 = 0; t0 < g->n_tok; t0 += pass) {
        struct pd_gemm_args part = *g;
        part.x = g->x + t0 * g->x_stride;
        part.n_tok = g->n_tok - t0 < pass ? g->n_tok - t0 : pass;
        rows(&part, b, tmp, 8);
        for (size_t t = 0; t < part.n_tok; t++) {
            memcpy(g->y + (t0 + t) * g->y_stride + r0, tmp + t * 8 + (r0 - b),
                   (r1 - r0) * sizeof(float));
        }
    }
}

/* Rows [r0, r1) of a packed product: whole 8-row blocks in lanes through `rows` (a block
 * only partly in [r0, r1) through rows8_part); rows past the last whole block, and
 * weights in the file's layout, through `tiles`. */
static AVX2_FN void rows8_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1,
                               rows8_fn rows, size_t pass, pd_gemm_fn tiles)
{
    size_t r = r0;
    if (g->packed) {
        size_t whole = g->w_rows / 8 * 8;
        while (r < r1 && r < whole) {
            size_t b = r / 8 * 8, e = b + 8 < r1 ? b + 8 : r1;
            if (r == b && e == b + 8) {
                rows(g, b, g->y + b, g->y_stride);
            } else {
                rows8_part(g, b, r, e, rows, pass);
            }
            r = e;
        }
    }
    if (r < r1) {
        tiles(g, r, r1);
    }
}

/* q4_K: packed weights in lanes, 8 rows at a time; the rest in tiles. */
static AVX2_FN void avx2_q4_k_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    rows8_gemm(g, r0, r1, q4k8_rows, Q4K8_TOK, q4_k_tiles);
}
GEMM8_DRIVER(q5_k_tiles, Q5_K_TILE8, 2, 4)

/* q5_K in the file's layout: a single token keeps one dot product per row (the 8 x 1 tile
 * ran 25% slower on an 8192 x 4096 matrix, the 4 x 1 tile 10%). */
static AVX2_FN void q5_k_file(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    if (g->n_tok == 1) {
        for (size_t r = r0; r < r1; r++) {
            g->y[r] = avx2_q5_k_vec_dot(g->w + r * g->w_stride, g->x, g->n);
        }
        return;
    }
    q5_k_tiles(g, r0, r1);
}

/* q5_K: packed weights in lanes, 8 rows at a time; the rest as above. */
static AVX2_FN void avx2_q5_k_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    rows8_gemm(g, r0, r1, q5k8_rows, Q5K8_TOK, q5_k_file);
}
GEMM8_DRIVER(q6_k_tiles, q6_k_tile8, 2, 4)

/* q6_K: packed weights in lanes, 8 rows at a time; the rest in tiles. */
static AVX2_FN void avx2_q6_k_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    rows8_gemm(g, r0, r1, q6k8_rows, Q6K8_TOK, q6_k_tiles);
}
GEMM_DRIVER_N(f16_tiles, F16_TILE8, 4, 3, 12)
GEMM_DRIVER_N(bf16_tiles, BF16_TILE8, 4, 3, 12)

/* Packed f16/bf16 weights (avx2_f16_pack) when the rows are a whole number of 16-byte
 * steps apart (else the pack copied them as they are): each block of 8 rows holds, per
 * step of 8 elements, the 8 rows' 16 bytes of it (128 bytes; the last step of a row
 * shorter than its stride, its first bytes), steps in order, so decode reads one stream
 * instead of 8 rows at once. Rows past the last whole block stay as they were. */
static inline bool half8_packs(size_t row_bytes)
{
    return row_bytes % 16 == 0;
}

static void avx2_f16_pack(const uint8_t *w, size_t rows, size_t row_bytes, uint8_t *out)
{
    size_t whole = half8_packs(row_bytes) ? rows / 8 * 8 : 0;
    for (size_t r0 = 0; r0 < whole; r0 += 8) {
        for (size_t c = 0; c < row_bytes / 16; c++) {
            for (size_t r = 0; r < 8; r++) {
                memcpy(out + r0 * row_bytes + 128 * c + 16 * r,
                       w + (r0 + r) * row_bytes + 16 * c, 16);
            }
        }
    }
    memcpy(out + whole * row_bytes, w + whole * row_bytes, (rows - whole) * row_bytes);
}

/* The 8 rows of the packed block at row b for every token, to y[t * y_stride + r - b]:
 * the tiles f16_tiles runs over those rows (GEMM_DRIVER_N's shapes), from the block's
 * layout, so bit-identical to them. */
#define HALF8_PACKED_BLOCK(g, TILE)                                                       \
    do {                                                                                 \
        size_t nt = (g)->n_tok;                                                          \
        if (nt == 1) {                                                                   \
            TILE(g, 0, 0, 8, 1);                                                         \
            break;                                                                       \
        }                                                                                \
        for (size_t r_ = 0; r_ < 8; r_ += 4) {                                           \
            size_t t = 0;                                                                \
            for (; t + 3 <= nt; t += 3) {                                                \
                TILE(g, r_, t, 4, 3);                                                    \
            }                                                                            \
            if (t + 2 <= nt) {                                                           \
                TILE(g, r_, t, 4, 2);                                                    \
                t += 2;                                                                  \
            }                                                                            \
            for (; t < nt; t++) {                                                        \
                TILE(g, r_, t, 4, 1);                                                    \
            }                                                                            \
        }                                                                                \
    } while (0)

TILE8 void half8_packed_rows(const struct pd_gemm_args *g, size_t b, float *y,
                             size_t y_stride, const bool bf16)
{
    struct pd_gemm_args h = *g;
    h.w = g->w + b * g->w_stride;
    h.w_rows = 8;
    h.y = y;
    h.y_stride = y_stride;
    if (bf16) {
        HALF8_PACKED_BLOCK(&h, BF16P_TILE8);
    } else {
        HALF8_PACKED_BLOCK(&h, F16P_TILE8);
    }
}

/* Prefill (4 tokens or more): each whole 8-row block from r0 (the file's layout) or from
 * r0 on a block boundary (the packed one) is widened to floats once, into wf (per step of
 * 8 elements the 8 rows' 8 floats, zero past n), and the tiles read it there, converting
 * only the activations: the same tiles (4 rows at a time, as f16_tiles walks them) in
 * the same order, so the same bits as over the halves. Returns the first row not
 * computed. */
static AVX2_FN size_t half8_wide(const struct pd_gemm_args *g, size_t r0, size_t r1, bool bf16)
{
    bool packed = g->packed && half8_packs(g->w_stride);
    size_t end = pd_half_wide_end(g, r0, r1, 8, packed);
    size_t steps = (g->n + 7) / 8;
    float *wf = end > r0 ? aligned_alloc(64, steps * 8 * 8 * sizeof(float)) : NULL;
    if (!wf) {
        return r0; /* the tiles over the halves */
    }
    for (size_t r = r0; r < end; r += 8) {
        for (size_t st = 0; st < steps; st++) {
            size_t k = 8 * st, rest = g->n - k < 8 ? g->n - k : 8;
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) {
                const uint8_t *src = packed ? g->w + r * g->w_stride + 16 * k + 16 * (size_t)q
                                            : g->w + (r + (size_t)q) * g->w_stride + 2 * k;
                __m256 v = rest == 8 ? half_load8(src, bf16) : half_tail8(src, rest, bf16);
                _mm256_store_ps(wf + 64 * st + 8 * (size_t)q, v);
            }
        }
        struct pd_gemm_args h = pd_half_wide_args(g, wf, r, 8);
        if (bf16) {
            HALF8_PACKED_BLOCK(&h, BF16W_TILE8);
        } else {
            HALF8_PACKED_BLOCK(&h, F16W_TILE8);
        }
    }
    free(wf);
    return end;
}
#undef HALF8_PACKED_BLOCK

static AVX2_FN void f16_rows8(const struct pd_gemm_args *g, size_t b, float *y,
                              size_t y_stride)
{
    half8_packed_rows(g, b, y, y_stride, false);
}

static AVX2_FN void bf16_rows8(const struct pd_gemm_args *g, size_t b, float *y,
                               size_t y_stride)
{
    half8_packed_rows(g, b, y, y_stride, true);
}

/* f16/bf16: packed weights (rows 16-byte steps apart) in 8-row blocks, the rest in tiles. */
static AVX2_FN void avx2_f16_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    r0 = half8_wide(g, r0, r1, false);
    if (half8_packs(g->w_stride)) {
        rows8_gemm(g, r0, r1, f16_rows8, 8, f16_tiles);
    } else {
        f16_tiles(g, r0, r1);
    }
}

static AVX2_FN void avx2_bf16_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    r0 = half8_wide(g, r0, r1, true);
    if (half8_packs(g->w_stride)) {
        rows8_gemm(g, r0, r1, bf16_rows8, 8, bf16_tiles);
    } else {
        bf16_tiles(g, r0, r1);
    }
}

const struct pd_simd_ops pd_simd_ops_avx2 = {
    .level = PD_SIMD_AVX2,
    .vec_dot = {
        [PD_DTYPE_F32] = avx2_f32_vec_dot,
        [PD_DTYPE_F16] = avx2_f16_vec_dot,
        [PD_DTYPE_BF16] = avx2_bf16_vec_dot,
        [PD_DTYPE_Q8_0] = avx2_q8_0_vec_dot,
        [PD_DTYPE_Q4_0] = avx2_q4_0_vec_dot,
        [PD_DTYPE_Q4_K] = avx2_q4_k_vec_dot,
        [PD_DTYPE_Q5_K] = avx2_q5_k_vec_dot,
        [PD_DTYPE_Q6_K] = avx2_q6_k_vec_dot,
    },
    .gemm = {
        [PD_DTYPE_F16] = avx2_f16_gemm,
        [PD_DTYPE_BF16] = avx2_bf16_gemm,
        [PD_DTYPE_Q8_0] = avx2_q8_0_gemm,
        [PD_DTYPE_Q4_0] = avx2_q4_0_gemm,
        [PD_DTYPE_Q5_0] = avx2_q5_0_gemm,
        [PD_DTYPE_Q4_1] = avx2_q4_1_gemm,
        [PD_DTYPE_Q5_1] = avx2_q5_1_gemm,
        [PD_DTYPE_Q4_K] = avx2_q4_k_gemm,
        [PD_DTYPE_Q5_K] = avx2_q5_k_gemm,
        [PD_DTYPE_Q6_K] = avx2_q6_k_gemm,
    },
    .pack = {
        [PD_DTYPE_F16] = avx2_f16_pack,
        [PD_DTYPE_BF16] = avx2_f16_pack,
        [PD_DTYPE_Q8_0] = avx2_q8_0_pack,
        [PD_DTYPE_Q4_0] = avx2_q4_0_pack,
        [PD_DTYPE_Q5_0] = avx2_q5_0_pack,
        [PD_DTYPE_Q4_1] = avx2_q4_1_pack,
        [PD_DTYPE_Q5_1] = avx2_q5_1_pack,
        [PD_DTYPE_Q4_K] = avx2_q4_k_pack,
        [PD_DTYPE_Q5_K] = avx2_q5_k_pack,
        [PD_DTYPE_Q6_K] = avx2_q6_k_pack,
    },
    .from_f32 = {
        [PD_DTYPE_F16] = avx2_f16_row_from_f32,
        [PD_DTYPE_Q8_0] = avx2_q8_0_from_f32,
        [PD_DTYPE_Q8_1] = avx2_q8_1_from_f32,
        [PD_DTYPE_Q8_K] = avx2_q8_k_from_f32,
    },
    .to_f32 = {
        [PD_DTYPE_F16] = avx2_f16_row_to_f32,
    },
    .kv_dot_f32 = avx2_kv_dot_f32,
    .kv_dot_f16 = avx2_kv_dot_f16,
    .kv_axpy_f32 = avx2_kv_axpy_f32,
    .kv_axpy_f16 = avx2_kv_axpy_f16,
    .attn = avx2_attn,
    .exp_sum = avx2_exp_sum,
    .swiglu = avx2_swiglu,
    .logit_sums = avx2_logit_sums,
    .sum_sq = avx2_sum_sq,
};

#endif /* __x86_64__ */
