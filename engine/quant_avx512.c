/* quant_avx512.c - the AVX-512 (F, BW, VL, DQ) + VNNI kernels: register-tiled weight
 * products for q8_0, q4_0, q4_K, q5_K, q6_K and f16/bf16 weights and blocked attention
 * (the table pd_simd_ops_avx512_own; simd.c completes the level with the AVX2 kernels
 * this file does not replace).
 *
 * DESIGN
 * - Every function carries a target attribute (AVX512_FN) instead of the file being built
 *   with -mavx512f: the build stays baseline x86-64 and nothing here runs unless
 *   pd_cpu_simd_best() found the features.
 * - A product is computed in tiles of RM weight rows x RN tokens (RM * RN <= 16
 *   accumulators, one 512-bit register each). Each weight block loaded (and unpacked) is
 *   used for RN tokens, each activation block for RM rows, and the horizontal sums are
 *   taken once per tile: the 16 accumulators are reduced together by a transposing add
 *   tree (hsum16), which leaves output i in lane i, i = t * RM + r.
 * - q8_0: weights x activations as exact int32 lane sums with VNNI's unsigned-by-signed
 *   vpdpbusd: the weight bytes are offset by 128 (w ^ 0x80 = w + 128 as unsigned) and the
 *   accumulator starts at -128 * (the activation's 4-byte group sums), so each lane holds
 *   the exact sum of 4 products for any bytes (-128 included). Two blocks fill a register;
 *   each lane is converted to float and scaled by its block's d_w * d_x with an FMA: the
 *   float sum differs from the portable order only by rounding (simd.h).
 * - q4_K: exactly the portable kernel's integers and float operations, lane by lane, so
 *   every output is bit-identical to pd_q4_k_vec_dot. Per super-block and (row, token):
 *   codes (unsigned nibbles) x q8 via vpmaddubsw (pair sums <= 2 * 15 * 128, no
 *   saturation), weighted by the 6-bit sub-block scales with vpdpwssd into int32 lanes;
 *   the tile's 16 lane sets are reduced to 16 exact super-block sums (isum), the min term
 *   sum(bsums[j] * m[j / 2]) is formed for all 16 at once with vpdpwssd, and the float
 *   combination sum += (d * dy) * isum - (dmin * dy) * msum runs on the 16 lanes in the
 *   portable order (separate multiplies; ISO C mode keeps GCC from contracting them and
 *   clang contracts only within one expression).
 * - q4_0: the q8_0 tile's scheme with the unsigned codes (nibbles unpacked two blocks to
 *   a register) and an accumulator at -8 * the activation's group sums.
 * - The 32-element types (q8_0, q4_0, q5_0, q4_1, q5_1) are packed at load
 *   (avx512_q8_0_pack, ...) into 16-row blocks for a rows-in-lanes product
 *   (q_0_packed_rows): one vpdpbusd per 4 codes of the 16 rows against the token's
 *   broadcast activation bytes, exact int32 block sums from an accumulator at -offset *
 *   the block's activation sum (q5's fifth bits rearranged at load so that one shift
 *   places them), then per block and lane the portable dot's float steps (q_0_term), so
 *   bit-identical to it; no horizontal sums (bench-kernels, 1536 x 1536, 64 tokens: q8_0
 *   58 -> 163 GMAC/s against the tiles, q5_0 53 -> 170, q4_1 48 -> 149, q5_1 44 -> 154;
 *   one token of 4096 x 4096: q8_0 35 -> 50, q5_0 29 -> 51, q4_1 27 -> 72, q5_1 22 ->
 *   49). The portable float steps cost ~6% against one FMA per block (173 GMAC/s).
 * - q5_K: packed at load (avx512_q5_k_pack) into q4_K's rows-in-lanes layout with the
 *   16 rows' qh bytes in 8 registers more; each code register's nibbles take their fifth
 *   bits by one test and one masked add (kq45_lane_codes), the rest is q4_K's kernel, so
 *   bit-identical to pd_q5_k_vec_dot (bench-kernels, 1536 x 1536, 64 tokens: 62 -> 144
 *   GMAC/s against the tiles; one token of 4096 x 4096: 21 -> 61). Rows past the last
 *   whole block of 16 and weights in the file's layout: the q4_K tile with the fifth bit
 *   from qh (kq45_codes); a single token there keeps the per-row dot product, which was
 *   faster than the 16 x 1 tile.
 * - q6_K: packed at load (avx512_q6_k_pack) into 16-row blocks for a rows-in-lanes
 *   product like q4_K's: per 4 codes of the 16 rows one vpdpbusd against the token's
 *   broadcast activation bytes, the codes rebuilt from three packed registers (ql's two
 *   nibble sets, qh's bit pairs), the signed sub-block scales applied per lane, the codes'
 *   offset of 32 as one vpdpwssd per pair of sub-blocks; exact integers per super-block and
 *   the portable float expression, so bit-identical to pd_q6_k_vec_dot. Batches of 16
 *   tokens and more lay each super-block out once for all of them (q6k_lanes_block);
 *   fewer build the codes in registers for up to 3 tokens at a time (q6k_packed_few).
 *   Against the tiles (bench-kernels, 8960 x 1536): 32 tokens 104 -> 139 GMAC/s, 1 token
 *   30 -> 45; a weight matrix in the file's layout and the rows past the last whole block
 *   keep the tiles (the q4_K tile's scheme, codes rebuilt 64 to a register).
 * - f16/bf16: both operands widened to float, 16 per register, FMAs per tile element;
 *   the order differs from the portable one by rounding only. In prefill each 16-row
 *   block is widened once for all tokens (half_wide), the tiles then converting only the
 *   activations (the same bits).
 * - q4_K puts rows in lanes instead (prefill and decode alike; the tiles above keep the
 *   rows past the last block of 16): a block of 16 rows is transposed once per
 *   super-block (one register per 4 codes of each row, the rows' 16-byte headers
 *   transposed and unpacked one row per lane) and serves every token of the batch, one
 *   vpdpbusd per 4 codes against the token's broadcast activation bytes, the sub-block
 *   scales, mins and the float combination per lane: no horizontal sums, and still
 *   bit-identical to the portable dot. (The same layout for f16, one FMA per element
 *   against a broadcast activation, was measured 20-30% slower in the model than the
 *   tiles at 32-token batches: the transposition and the broadcasts cost more than the
 *   tiles' conversions.)
 * - q4_K weights are packed at load (avx512_q4_k_pack, through pd_model_pack_cpu) into
 *   that transposed layout, so a 16-row block is one stream of 2304 bytes per super-block
 *   that needs no transposes: decode reads each code register straight into its two
 *   vpdpbusd and fetches two super-blocks ahead. The file's layout keeps its kernel (for
 *   PONDER_PACK=0 and row ranges a caller passes in that layout).
 * - Each 16-row block prefetches the next block's weights while it runs.
 * - exp16: the C library's expf on 16 lanes, its algorithm step for step (test_simd
 *   compares every float), for the softmax and SwiGLU (ops exp_sum, swiglu).
 * - Row remainders run as single-row tiles; token remainders as tiles of 1-3 tokens with
 *   more rows (16 x 1, 8 x 2, 4 x 3) so that decode (one token) still reduces 16 rows at
 *   once.
 * - Attention (avx512_attn): 16 K rows at a time are widened and transposed into a stack
 *   tile that serves every query of the call (the query heads of one KV head, for a block
 *   of tokens), 4 queries' scores per pass; V rows are read once for up to 4 queries over
 *   the prefix they all see. Every result is bit-identical to the level's per-query loop
 *   (pd_simd_attn without .attn, over the AVX2 kv_dot/kv_axpy this level inherits): each
 *   lane's dot product repeats kv_dot's FMA chains and horizontal-add tree, the softmax
 *   calls expf and sums in double in the reference's order (pd_sum16_tree), and V is added
 *   with one FMA per element. A
 *   result one float step away is not harmless: it can move the f16 scale of a q8_0 block
 *   of the next layer's input across a rounding midpoint (test_simd's test_attn). The
 *   order is tied to quant_x86.c's kernels; test_simd compares the two bit for bit.
 * All functions are pure and thread-safe. */
#include "simd.h"

#if defined(__x86_64__)

#include <assert.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant_blocks.h"
#include "simd_exp.h"

#define AVX512_FN                                                                         \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define INLINE512 static inline AVX512_FN __attribute__((always_inline))

/* ---- helpers ----------------------------------------------------------------------- */

INLINE512 uint16_t load_u16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

INLINE512 __m256i load256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

INLINE512 __m512i load512(const void *p)
{
    return _mm512_loadu_si512(p);
}

/* 32 bytes at p in the low half and 32 at q in the high half. */
INLINE512 __m512i load_2x256(const uint8_t *p, const uint8_t *q)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(load256(p)), load256(q), 1);
}

/* Lane i of the result is the sum of the 16 lanes of v[i] (a transposing add tree:
 * 45 shuffles and adds for 16 sums). Float version; the tree's order is fixed. */
INLINE512 __m512 hsum16_ps(const __m512 *v)
{
    __m512 s[8], u[4], w[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        /* per 128-bit chunk: a0+a2, b0+b2, a1+a3, b1+b3 */
        s[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                             _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        /* per chunk: the four inputs' partial sums in order */
        __m512d a = _mm512_castps_pd(s[2 * i]), b = _mm512_castps_pd(s[2 * i + 1]);
        u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0xDD));
    }
    return _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], 0x88),
                         _mm512_shuffle_f32x4(w[0], w[1], 0xDD));
}

/* The same tree on int32 lanes (exact). */
INLINE512 __m512i hsum16_epi32(const __m512i *v)
{
    __m512i s[8], u[4], w[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        s[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                                _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        u[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(s[2 * i], s[2 * i + 1]),
                                _mm512_unpackhi_epi64(s[2 * i], s[2 * i + 1]));
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        w[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(u[2 * i], u[2 * i + 1], 0x88),
                                _mm512_shuffle_i32x4(u[2 * i], u[2 * i + 1], 0xDD));
    }
    return _mm512_add_epi32(_mm512_shuffle_i32x4(w[0], w[1], 0x88),
                            _mm512_shuffle_i32x4(w[0], w[1], 0xDD));
}

/* Stores the tile's outputs: lane t * RM + r goes to y[t * y_stride + r0 + r]. */
INLINE512 void store_tile(const struct pd_gemm_args *g, size_t r0, size_t t0, __m512 out,
                          const int RM, const int RN)
{
#pragma GCC unroll 16
    for (int t = 0; t < RN; t++) {
        float *dst = g->y + (t0 + (size_t)t) * g->y_stride + r0;
        /* Masked store of lanes [t * RM, t * RM + RM) to dst[0..RM): the base lies t * RM
         * floats before dst, inside the output (y_stride >= rows >= RM). */
        __mmask16 m = (__mmask16)(((1u << RM) - 1u) << (t * RM));
        _mm512_mask_storeu_ps(dst - t * RM, m, out);
    }
}

/* Single-token tiles (decode) fetch the next 16-row block as they go: bytes [off, off +
 * len) of each of its rows, when the matrix has them (g->w_rows). */
INLINE512 void prefetch_next_rows(const struct pd_gemm_args *g, size_t r0, size_t off,
                                  size_t len)
{
    if (r0 + 32 > g->w_rows) {
        return;
    }
    const uint8_t *p = g->w + (r0 + 16) * g->w_stride + off;
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++) {
        for (size_t b = 0; b < len; b += 64) {
            _mm_prefetch((const char *)p + (size_t)r * g->w_stride + b, _MM_HINT_T0);
        }
    }
}

/* Fetches the packed super-block of `bytes` at address pf into the first-level cache, or
 * with L2 into the second-level one, also past the end of its matrix: the packed matrices
 * lie one after another, so the next one's first super-blocks arrive in time (a prefetch
 * never faults; the address stays an integer). A decode stream from a large matrix
 * fetches into L2 (pd_pf_l2). */
INLINE512 void prefetch_packed(uintptr_t pf, const int bytes, const bool L2)
{
    if (L2) { /* the test outside the loop: -O2 does not move it there */
#pragma GCC unroll 53
        for (int l = 0; l < (bytes + 63) / 64; l++) {
            _mm_prefetch((const char *)(pf + 64 * (uintptr_t)l), _MM_HINT_T1);
        }
    } else {
#pragma GCC unroll 53
        for (int l = 0; l < (bytes + 63) / 64; l++) {
            _mm_prefetch((const char *)(pf + 64 * (uintptr_t)l), _MM_HINT_T0);
        }
    }
}

/* ---- q8_0 and q4_0 (q8_0 activations) ------------------------------------------------- */

/* Two half scales at p and p + bytes (the blocks' first bytes) as [d0 x 8 | d1 x 8] (d1 =
 * 0 when `one`). */
INLINE512 __m512 block_scales2(const uint8_t *p, size_t bytes, bool one)
{
    uint32_t h = (uint32_t)load_u16(p) | (one ? 0u : (uint32_t)load_u16(p + bytes) << 16);
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)h));
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

/* The codes of two 32-byte activation blocks of `bytes` bytes, their codes at byte q (only
 * the first, high half zero, when `one`). */
INLINE512 __m512i act_codes2(const uint8_t *p, size_t bytes, size_t q, bool one)
{
    if (one) {
        return _mm512_zextsi256_si512(load256(p + q));
    }
    return load_2x256(p + q, p + q + bytes);
}

/* The nibble codes (0..15) of two blocks of `bytes` bytes whose 16 code bytes start at qs,
 * in element order as act_codes2 gives the activations: [low nibbles | high nibbles] per
 * block (byte l holds elements l and l + 16); only the first block, the high half zero,
 * when `one`. */
INLINE512 __m512i nibble_codes2(const uint8_t *qs, size_t bytes, bool one)
{
    __m256i a = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    __m256i b = one ? _mm256_setzero_si256()
                    : _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(qs + bytes)));
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    /* lanes 1 and 3 (each block's second 16 bytes) take the high nibbles */
    const __m512i shift = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
    return _mm512_and_si512(_mm512_srlv_epi64(v, shift), _mm512_set1_epi8(0x0F));
}

/* The block geometry of the 32-element weight types (T a constant at every use). */
INLINE512 size_t q_0_bytes(const enum pd_dtype T)
{
    return T == PD_DTYPE_Q8_0 ? Q8_0_BYTES : T == PD_DTYPE_Q4_0 ? Q4_0_BYTES
           : T == PD_DTYPE_Q5_0 ? Q5_0_BYTES : T == PD_DTYPE_Q4_1 ? Q4_1_BYTES : Q5_1_BYTES;
}

/* The weight operand of two blocks at p for vpdpbusd, unsigned bytes: q8_0's codes + 128
 * (w ^ 0x80; an unused high half stays 0x80 against x = 0); q4_0's and q4_1's nibbles;
 * q5_0's and q5_1's nibbles with their fifth bits (bit i of the block's qh, element i) as
 * 16 by one masked move. */
INLINE512 __m512i w_codes2(const uint8_t *p, bool one, const enum pd_dtype T)
{
    const size_t bytes = q_0_bytes(T);
    switch (T) {
    case PD_DTYPE_Q8_0:
        return _mm512_xor_si512(act_codes2(p, Q8_0_BYTES, 2, one), _mm512_set1_epi8((char)0x80));
    case PD_DTYPE_Q4_0:
        return nibble_codes2(p + 2, bytes, one);
    case PD_DTYPE_Q4_1:
        return nibble_codes2(p + 4, bytes, one);
    default: {
        const size_t qh = T == PD_DTYPE_Q5_0 ? 2 : 4;
        uint32_t h0, h1 = 0;
        memcpy(&h0, p + qh, 4);
        if (!one) {
            memcpy(&h1, p + bytes + qh, 4);
        }
        __mmask64 k = (__mmask64)h0 | (__mmask64)h1 << 32;
        return _mm512_or_si512(nibble_codes2(p + qh + 4, bytes, one),
                               _mm512_maskz_set1_epi8(k, 0x10));
    }
    }
}

/* Accumulates block pair (or last single block) b of the tile into acc: T (a constant in
 * each copy) one of q8_0, q4_0, q5_0 (against q8_0 activations), q4_1, q5_1 (against
 * q8_1). Each lane is the exact sum of 4 products, vpdpbusd of the unsigned weight bytes
 * from an accumulator at -128 (q8_0: the offset the +128 adds), -8 (q4_0) or -16 (q5_0)
 * times the activation's 4-byte group sums, or 0; then one FMA by d_w * d_x, and for q4_1
 * and q5_1 one more of m_w * s_x into each block's first lane (the float order differs
 * from the portable dot by rounding only). Tiles taller than 4 rows (one or two tokens)
 * load each row's blocks where they are used instead of holding all rows in registers. */
INLINE512 void q_0_step(const struct pd_gemm_args *g, size_t r0, size_t t0, size_t b,
                        bool one, __m512 *acc, const int RM, const int RN, const enum pd_dtype T)
{
    const size_t wbytes = q_0_bytes(T);
    const bool MIN = T == PD_DTYPE_Q4_1 || T == PD_DTYPE_Q5_1;
    const size_t xbytes = MIN ? Q8_1_BYTES : Q8_0_BYTES, xq = MIN ? 4 : 2;
    const int off = T == PD_DTYPE_Q8_0   ? 0x80
                    : T == PD_DTYPE_Q4_0 ? 8
                    : T == PD_DTYPE_Q5_0 ? 16
                                         : 0;
    const __m512i offset = _mm512_set1_epi8((char)off);
    const bool tall = RM > 4;
    __m512i wq[4];
    __m512 wd[4], wm[4];
    const uint8_t *wrow = g->w + r0 * g->w_stride + b * wbytes;
    if (!tall) {
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            const uint8_t *wb = wrow + (size_t)r * g->w_stride;
            wq[r] = w_codes2(wb, one, T);
            wd[r] = block_scales2(wb, wbytes, one);
            if (MIN) {
                wm[r] = _mm512_maskz_mov_ps(0x0101, block_scales2(wb + 2, wbytes, one));
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < RN; t++) {
        const uint8_t *xb = g->x + (t0 + (size_t)t) * g->x_stride + b * xbytes;
        __m512i xq4 = act_codes2(xb, xbytes, xq, one);
        __m512i nc = off ? _mm512_sub_epi32(_mm512_setzero_si512(),
                                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset,
                                                                xq4))
                         : _mm512_setzero_si512();
        __m512 xd = block_scales2(xb, xbytes, one);
        __m512 xs = MIN ? block_scales2(xb + 2, xbytes, one) : _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++) {
            __m512i wqr;
            __m512 wdr, wmr = _mm512_setzero_ps();
            if (tall) {
                const uint8_t *wb = wrow + (size_t)r * g->w_stride;
                wqr = w_codes2(wb, one, T);
                wdr = block_scales2(wb, wbytes, one);
                if (MIN) {
                    wmr = _mm512_maskz_mov_ps(0x0101, block_scales2(wb + 2, wbytes, one));
                }
            } else {
                wqr = wq[r];
                wdr = wd[r];
                if (MIN) {
                    wmr = wm[r];
                }
            }
            __m512i s = _mm512_dpbusd_epi32(nc, wqr, xq4);
            __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(s), xd);
            acc[t * RM + r] = _mm512_fmadd_ps(p, wdr, acc[t * RM + r]);
            if (MIN) {
                acc[t * RM + r] = _mm512_fmadd_ps(wmr, xs, acc[t * RM + r]);
            }
        }
    }
}

INLINE512 void q_0_tile(const struct pd_gemm_args *g, size_t r0, size_t t0,
                        const enum pd_dtype T, const int RM, const int RN)
{
    const size_t wbytes = q_0_bytes(T);
    __m512 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        acc[i] = _mm512_setzero_ps();
    }
    size_t nb = g->n / PD_QK8_0, b = 0;
    for (; b + 2 <= nb; b += 2) {
        if (RM == 16 && RN == 1) {
            prefetch_next_rows(g, r0, b * wbytes, 2 * wbytes);
        }
        q_0_step(g, r0, t0, b, false, acc, RM, RN, T);
    }
    if (b < nb) {
        q_0_step(g, r0, t0, b, true, acc, RM, RN, T);
    }
    store_tile(g, r0, t0, hsum16_ps(acc), RM, RN);
}

/* ---- q4_K --------------------------------------------------------------------------- */

/* The 8 sub-block scales (bytes 0..7) and 8 mins (bytes 8..15) packed in the 12 bytes at
 * p (layout in quant.c). */
INLINE512 __m128i q4_k_unpack(const uint8_t *p)
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

/* log2 of a tile height (1, 4, 8 or 16). */
#define LOG2_RM(RM) ((RM) == 16 ? 4 : (RM) == 8 ? 3 : (RM) == 4 ? 2 : 0)

/* Group grp's 64 codes of a q4_K (or, five, q5_K) super-block at b: sub-block 2 grp's
 * in the low 256 bits, 2 grp + 1's in the high ones; q5_K adds bit 2 grp (low half) or
 * 2 grp + 1 (high half) of qh[l] as bit 4 (the 64-bit shifts move bits across bytes
 * only into bits never read). */
INLINE512 __m512i kq45_codes(const uint8_t *b, size_t qs, int grp, bool five, __m512i shift,
                             __m512i m4, __m512i bit4)
{
    __m512i q = _mm512_broadcast_i64x4(load256(b + qs + 32 * grp));
    __m512i c = _mm512_and_si512(_mm512_srlv_epi64(q, shift), m4);
    if (five) {
        const __m512i hs = _mm512_setr_epi64(2 * grp, 2 * grp, 2 * grp, 2 * grp, 2 * grp + 1,
                                             2 * grp + 1, 2 * grp + 1, 2 * grp + 1);
        __m512i qh = _mm512_broadcast_i64x4(load256(b + Q5_K_QH));
        c = _mm512_or_si512(c, _mm512_and_si512(_mm512_slli_epi64(_mm512_srlv_epi64(qh, hs), 4),
                                                bit4));
    }
    return c;
}

/* Super-block i of the tile: accumulates into *sum (lane t * RM + r) exactly what the
 * portable kernel adds for each (row, token). */
INLINE512 void q4_k_step(const struct pd_gemm_args *g, size_t r0, size_t t0, size_t i,
                         bool five, __m512 *sum, const int RM, const int RN)
{
    const size_t bytes = five ? Q5_K_BYTES : Q4_K_BYTES;
    const size_t qs = five ? Q5_K_QS : Q4_K_QS;
    const __m512i bit4 = _mm512_set1_epi8(0x10);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    /* the low half of a group register takes the low nibbles, the high half the high */
    const __m512i shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i lane_r = _mm512_and_si512(iota, _mm512_set1_epi32(RM - 1));
    const __m512i lane_t = _mm512_srli_epi32(iota, LOG2_RM(RM));
    const uint8_t *wb[16];
    const uint8_t *yb[4];
    __m256i sc[16]; /* per row: its scales and mins as int16 */
    /* Tables the per-lane operands are permuted from: mins (int16, 8 per row), the
     * (d, dmin) halves of each row, bsums (16 int16 per token) and dy of each token. */
    int16_t mtab[16 * 8];
    uint32_t dtab[16];
    int32_t btab[4 * 8];
    float ytab[4];
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++) {
        wb[r] = g->w + (r0 + (size_t)r) * g->w_stride + i * bytes;
        __m256i s16 = _mm256_cvtepu8_epi16(q4_k_unpack(wb[r] + KQ_SCALES));
        sc[r] = s16;
        _mm_storeu_si128((__m128i *)(mtab + 8 * r), _mm256_extracti128_si256(s16, 1));
        memcpy(&dtab[r], wb[r], 4);
    }
#pragma GCC unroll 4
    for (int t = 0; t < RN; t++) {
        yb[t] = g->x + (t0 + (size_t)t) * g->x_stride + i * Q8_K_BYTES;
        _mm256_storeu_si256((__m256i *)(btab + 8 * t), load256(yb[t] + Q8_K_BSUMS));
        memcpy(&ytab[t], yb[t], 4);
    }
    __m512i acc[16];
#pragma GCC unroll 16
    for (int k = 0; k < 16; k++) {
        acc[k] = _mm512_setzero_si512();
    }
    const bool tall = RM > 4;
#pragma GCC unroll 16
    for (int grp = 0; grp < 4; grp++) {
        /* int16 lanes 0..15 take scale 2 grp, lanes 16..31 scale 2 grp + 1 */
        const __m512i sel = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_set1_epi16((short)(2 * grp))),
            _mm256_set1_epi16((short)(2 * grp + 1)), 1);
        __m512i codes[4], scale[4];
        if (!tall) {
#pragma GCC unroll 4
            for (int r = 0; r < RM; r++) {
                codes[r] = kq45_codes(wb[r], qs, grp, five, shift, m4, bit4);
                scale[r] = _mm512_permutexvar_epi16(sel, _mm512_broadcast_i64x4(sc[r]));
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < RN; t++) {
            __m512i q8 = load512(yb[t] + Q8_K_QS + 64 * grp);
#pragma GCC unroll 16
            for (int r = 0; r < RM; r++) {
                __m512i cr, sr;
                if (tall) {
                    cr = kq45_codes(wb[r], qs, grp, five, shift, m4, bit4);
                    sr = _mm512_permutexvar_epi16(sel, _mm512_broadcast_i64x4(sc[r]));
                } else {
                    cr = codes[r];
                    sr = scale[r];
                }
                __m512i p = _mm512_maddubs_epi16(cr, q8);
                acc[t * RM + r] = _mm512_dpwssd_epi32(acc[t * RM + r], p, sr);
            }
        }
    }
    __m512i isum = hsum16_epi32(acc);
    /* msum of lane l: sum over j < 8 of (bsums[2j], bsums[2j + 1]) of token t(l) times
     * (m[j], m[j]) of row r(l), one vpdpwssd per j. The tables hold unused lanes where
     * the tile is smaller; they are only ever multiplied into lanes that are dropped. */
    __m512i msum = _mm512_setzero_si512();
    {
        __m512i mt[4], bt[2];
#pragma GCC unroll 16
        for (int q = 0; q < 4; q++) {
            mt[q] = q * 4 < RM ? _mm512_loadu_si512(mtab + 32 * q) : _mm512_setzero_si512();
        }
#pragma GCC unroll 16
        for (int q = 0; q < 2; q++) {
            bt[q] = q * 2 < RN ? _mm512_loadu_si512(btab + 16 * q) : _mm512_setzero_si512();
        }
        /* int16 index of (row r(l), min j) in mtab, in both halves of dword l */
        __m512i ia = _mm512_mullo_epi32(_mm512_slli_epi32(lane_r, 3),
                                        _mm512_set1_epi32(0x10001));
        __m512i ib = _mm512_slli_epi32(lane_t, 3);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m512i ja = _mm512_add_epi32(ia, _mm512_set1_epi32(j * 0x10001));
            __m512i a = _mm512_permutex2var_epi16(mt[0], ja, mt[1]);
            if (RM > 8) {
                /* rows 8..15: index bit 6 picks the second pair of registers */
                __m512i a2 = _mm512_permutex2var_epi16(mt[2], ja, mt[3]);
                __mmask32 hi = _mm512_test_epi16_mask(ja, _mm512_set1_epi16(64));
                a = _mm512_mask_mov_epi16(a, hi, a2);
            }
            __m512i b = _mm512_permutex2var_epi32(bt[0], _mm512_add_epi32(ib, _mm512_set1_epi32(j)),
                                                  bt[1]);
            msum = _mm512_dpwssd_epi32(msum, a, b);
        }
    }
    /* d, dmin of each lane's row and dy of its token */
    __m512i dt = _mm512_loadu_si512(dtab);
    __m512 dlo = _mm512_cvtph_ps(_mm512_castsi512_si256(dt));       /* rows 0..7 */
    __m512 dhi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dt, 1)); /* rows 8..15 */
    __m512i ir2 = _mm512_slli_epi32(lane_r, 1);
    __m512 d = _mm512_permutex2var_ps(dlo, ir2, dhi);
    __m512 dmin = _mm512_permutex2var_ps(dlo, _mm512_add_epi32(ir2, _mm512_set1_epi32(1)), dhi);
    __m512 dy = _mm512_permutexvar_ps(lane_t, _mm512_castps128_ps512(_mm_loadu_ps(ytab)));
    /* the portable float expression, lane by lane */
    __m512 dd = _mm512_mul_ps(d, dy);
    __m512 dm = _mm512_mul_ps(dmin, dy);
    __m512 a = _mm512_mul_ps(dd, _mm512_cvtepi32_ps(isum));
    __m512 c = _mm512_mul_ps(dm, _mm512_cvtepi32_ps(msum));
    __m512 t = _mm512_sub_ps(a, c);
    *sum = _mm512_add_ps(*sum, t);
}

INLINE512 void q4_k_tile(const struct pd_gemm_args *g, size_t r0, size_t t0, bool five,
                         const int RM, const int RN)
{
    const size_t bytes = five ? Q5_K_BYTES : Q4_K_BYTES;
    __m512 sum = _mm512_setzero_ps();
    for (size_t i = 0; i < g->n / PD_QK_K; i++) {
        if (RM == 16 && RN == 1) {
            prefetch_next_rows(g, r0, i * bytes, bytes);
        }
        q4_k_step(g, r0, t0, i, five, &sum, RM, RN);
    }
    store_tile(g, r0, t0, sum, RM, RN);
}

/* ---- q6_K ---------------------------------------------------------------------------- */

/* Super-block i of a q6_K tile: accumulates into *sum (lane t * RM + r) exactly what the
 * portable kernel adds for each (row, token). Per half h of the super-block, the 128
 * six-bit codes are rebuilt in two registers (ql's 64 bytes hold elements 0..63 in their
 * low nibbles and 64..127 in their high ones; qh's 32 bytes, repeated in both halves and
 * shifted per half, supply bits 4-5), multiplied with the token's q8 bytes by vpmaddubsw
 * (pair sums <= 2 * 63 * 128) and weighted by the signed sub-block scales with vpdpwssd;
 * the bias sum(bsums[j] * sc[j]) comes from one vpmaddwd per pair; then the portable
 * float expression sum + (d * dy) * isum per lane. */
INLINE512 void q6_k_step(const struct pd_gemm_args *g, size_t r0, size_t t0, size_t i,
                         __m512 *sum, const int RM, const int RN)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i m2 = _mm512_set1_epi8(0x30);
    /* qh's bits for elements 0..31 | 32..63 sit at bits 0-1 | 2-3, for 64..95 | 96..127
     * at bits 4-5 | 6-7: shifted per 256-bit half to bits 4-5 */
    const __m512i sh_lo = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2);
    const __m512i sh_hi = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
    const uint8_t *wb[16];
    const uint8_t *yb[4];
    float dtab[16], ytab[16];
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++) {
        wb[r] = g->w + (r0 + (size_t)r) * g->w_stride + i * Q6_K_BYTES;
    }
#pragma GCC unroll 4
    for (int t = 0; t < RN; t++) {
        yb[t] = g->x + (t0 + (size_t)t) * g->x_stride + i * Q8_K_BYTES;
    }
    __m512i acc[16];
#pragma GCC unroll 16
    for (int k = 0; k < 16; k++) {
        acc[k] = _mm512_setzero_si512();
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        /* int16 lane l of the scale register for codes 64 p .. 64 p + 63 of this half:
         * sc[8 h + 4 p + l / 8] */
        const __m512i sel0 = _mm512_add_epi16(
            _mm512_setr_epi32(0, 0, 0, 0, 0x10001, 0x10001, 0x10001, 0x10001, 0x20002, 0x20002,
                              0x20002, 0x20002, 0x30003, 0x30003, 0x30003, 0x30003),
            _mm512_set1_epi16((short)(8 * h)));
        const __m512i sel1 = _mm512_add_epi16(sel0, _mm512_set1_epi16(4));
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++) {
            const uint8_t *b = wb[r];
            __m512i sc16 = _mm512_zextsi256_si512(
                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + Q6_K_SCALES))));
            __m512i l = load512(b + Q6_K_QL + 64 * h);
            __m512i hb = _mm512_broadcast_i64x4(load256(b + Q6_K_QH + 32 * h));
            __m512i c0 = _mm512_or_si512(_mm512_and_si512(l, m4),
                                         _mm512_and_si512(_mm512_sllv_epi64(hb, sh_lo), m2));
            __m512i c1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                         _mm512_and_si512(_mm512_srlv_epi64(hb, sh_hi), m2));
            __m512i s0 = _mm512_permutexvar_epi16(sel0, sc16);
            __m512i s1 = _mm512_permutexvar_epi16(sel1, sc16);
#pragma GCC unroll 4
            for (int t = 0; t < RN; t++) {
                const uint8_t *q8 = yb[t] + Q8_K_QS + 128 * h;
                __m512i p0 = _mm512_maddubs_epi16(c0, load512(q8));
                __m512i p1 = _mm512_maddubs_epi16(c1, load512(q8 + 64));
                acc[t * RM + r] = _mm512_dpwssd_epi32(acc[t * RM + r], p0, s0);
                acc[t * RM + r] = _mm512_dpwssd_epi32(acc[t * RM + r], p1, s1);
            }
        }
    }
    __m512i isum = hsum16_epi32(acc);
#pragma GCC unroll 4
    for (int t = 0; t < RN; t++) {
        __m256i bs = load256(yb[t] + Q8_K_BSUMS);
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++) {
            __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wb[r] + Q6_K_SCALES)));
            acc[t * RM + r] = _mm512_zextsi256_si512(_mm256_madd_epi16(bs, sc));
            dtab[t * RM + r] = _cvtsh_ss(load_u16(wb[r] + Q6_K_D));
            memcpy(&ytab[t * RM + r], yb[t], 4);
        }
    }
    for (int k = RM * RN; k < 16; k++) {
        dtab[k] = 0.0f;
        ytab[k] = 0.0f;
    }
    __m512i bias = hsum16_epi32(acc);
    isum = _mm512_sub_epi32(isum, _mm512_slli_epi32(bias, 5)); /* isum - 32 * bias */
    __m512 dd = _mm512_mul_ps(_mm512_loadu_ps(dtab), _mm512_loadu_ps(ytab));
    __m512 t = _mm512_mul_ps(dd, _mm512_cvtepi32_ps(isum));
    *sum = _mm512_add_ps(*sum, t);
}

INLINE512 void q6_k_tile(const struct pd_gemm_args *g, size_t r0, size_t t0, const int RM,
                         const int RN)
{
    __m512 sum = _mm512_setzero_ps();
    for (size_t i = 0; i < g->n / PD_QK_K; i++) {
        if (RM == 16 && RN == 1) {
            prefetch_next_rows(g, r0, i * Q6_K_BYTES, Q6_K_BYTES);
        }
        q6_k_step(g, r0, t0, i, &sum, RM, RN);
    }
    store_tile(g, r0, t0, sum, RM, RN);
}

/* ---- f16 / bf16 ----------------------------------------------------------------------- */

INLINE512 __m512 half16(const uint8_t *p, bool bf16)
{
    __m256i h = load256(p);
    if (bf16) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_cvtph_ps(h);
}

/* The last n < 16 halves at p, zero-extended. */
INLINE512 __m512 half_tail(const uint8_t *p, size_t n, bool bf16)
{
    __m256i h = _mm256_maskz_loadu_epi16((__mmask16)((1u << n) - 1u), p);
    if (bf16) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_cvtph_ps(h);
}

/* Where a half tile's weights are: the file's layout, one packed 16-row block
 * (avx512_f16_pack), or one 16-row block widened to floats (half_wide). */
enum { HALF_FILE, HALF_PACKED, HALF_WIDE };

/* Row r's weights at step k, as floats: a step of halves at wr[r] + WK * k (the last n - k
 * < 16 when `full` is false, zero-extended), or with WIDE the 16 floats there. */
INLINE512 __m512 half_w(const uint8_t *wr, size_t k, size_t rest, bool full, bool bf16,
                        const int WK, const bool WIDE)
{
    if (WIDE) {
        return _mm512_load_ps(wr + WK * k);
    }
    return full ? half16(wr + WK * k, bf16) : half_tail(wr + WK * k, rest, bf16);
}

/* One step of 16 elements at k (the last n - k < 16 when `full` is false). Tiles taller
 * than 4 rows load each row's halves where they are used. Row r's elements k .. k + 15
 * lie at wr[r] + WK * k: WK 2 in the file's layout, 32 in the packed one, 64 (floats) in
 * the widened one. */
INLINE512 void half_step(const uint8_t *const *wr, const uint8_t *const *xr, size_t k,
                         size_t rest, bool full, bool bf16, __m512 *acc, const int RM,
                         const int RN, const int WK, const bool WIDE)
{
    const bool tall = RM > 4;
    __m512 wv[4];
    if (!tall) {
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            wv[r] = half_w(wr[r], k, rest, full, bf16, WK, WIDE);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < RN; t++) {
        __m512 xv = full ? half16(xr[t] + 2 * k, bf16) : half_tail(xr[t] + 2 * k, rest, bf16);
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++) {
            __m512 w = wv[r & 3];
            if (tall) {
                w = half_w(wr[r], k, rest, full, bf16, WK, WIDE);
            }
            acc[t * RM + r] = _mm512_fmadd_ps(w, xv, acc[t * RM + r]);
        }
    }
}

/* Rows [r0, r0 + RM) x tokens [t0, t0 + RN) with the weights where L says (HALF_PACKED,
 * HALF_WIDE: rows of the one 16-row block at g->w, r0 + RM <= 16): the same operations in
 * each layout, so the same bits, with a packed block's single stream fetched PF_HALF bytes
 * ahead in decode. */
#define PF_HALF 8192 /* into L2 instead (4, 8 or 16 KiB ahead): no faster, 1.95 GB model */
INLINE512 void half_tile(const struct pd_gemm_args *g, size_t r0, size_t t0, bool bf16,
                         const int RM, const int RN, const int L)
{
    const bool P = L == HALF_PACKED, WIDE = L == HALF_WIDE;
    const int WK = WIDE ? 64 : P ? 32 : 2;
    __m512 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        acc[i] = _mm512_setzero_ps();
    }
    const uint8_t *wr[16];
    const uint8_t *xr[4];
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++) {
        wr[r] = g->w + (r0 + (size_t)r) * (L == HALF_FILE ? g->w_stride : (size_t)WK);
    }
#pragma GCC unroll 4
    for (int t = 0; t < RN; t++) {
        xr[t] = g->x + (t0 + (size_t)t) * g->x_stride;
    }
    size_t k = 0;
    for (; k + 16 <= g->n; k += 16) {
        if (RM == 16 && RN == 1 && !WIDE) {
            if (P) { /* past the block's and the matrix's end too: never faults */
                prefetch_packed((uintptr_t)g->w + 32 * k + PF_HALF, 512, false);
            } else if (k % 32 == 0) {
                prefetch_next_rows(g, r0, 2 * k, 64);
            }
        }
        half_step(wr, xr, k, 16, true, bf16, acc, RM, RN, WK, WIDE);
    }
    if (k < g->n) {
        half_step(wr, xr, k, g->n - k, false, bf16, acc, RM, RN, WK, WIDE);
    }
    store_tile(g, r0, t0, hsum16_ps(acc), RM, RN);
}

/* ---- exp ------------------------------------------------------------------------------ */

/* expf of 8 floats, widened to double: simd_exp.h's algorithm, the C library's steps and
 * constants on FMA machines, so each lane equals what expf returns (test_simd checks that
 * against the library itself). Lanes outside the main range are replaced by exp16. */
INLINE512 __m256 exp8_main(__m256 x)
{
    const __m512d inv = _mm512_set1_pd(PD_EXP_INV_LN2_32);
    const __m512d shift = _mm512_set1_pd(PD_EXP_SHIFT);
    const __m512d c0 = _mm512_set1_pd(PD_EXP_C0);
    const __m512d c1 = _mm512_set1_pd(PD_EXP_C1);
    const __m512d c2 = _mm512_set1_pd(PD_EXP_C2);
    const __m512i t0 = _mm512_loadu_si512(pd_exp_tab), t1 = _mm512_loadu_si512(pd_exp_tab + 8);
    const __m512i t2 = _mm512_loadu_si512(pd_exp_tab + 16), t3 = _mm512_loadu_si512(pd_exp_tab + 24);
    __m512d xd = _mm512_cvtps_pd(x);
    __m512d kds = _mm512_fmadd_pd(inv, xd, shift); /* k + shift, rounded once */
    __m512i ki = _mm512_castpd_si512(kds);
    __m512d kd = _mm512_sub_pd(kds, shift);
    __m512d r = _mm512_fmsub_pd(inv, xd, kd);
    /* table entry k mod 32: bits 0..3 pick within a pair of registers, bit 4 the pair */
    __m512i lo = _mm512_permutex2var_epi64(t0, ki, t1);
    __m512i hi = _mm512_permutex2var_epi64(t2, ki, t3);
    __mmask8 upper = _mm512_test_epi64_mask(ki, _mm512_set1_epi64(16));
    __m512i t = _mm512_mask_mov_epi64(lo, upper, hi);
    __m512d s = _mm512_castsi512_pd(_mm512_add_epi64(t, _mm512_slli_epi64(ki, 47)));
    __m512d z = _mm512_fmadd_pd(r, c0, c1);
    __m512d r2 = _mm512_mul_pd(r, r);
    __m512d y = _mm512_fmadd_pd(r, c2, _mm512_set1_pd(1.0));
    y = _mm512_fmadd_pd(z, r2, y);
    return _mm512_cvtpd_ps(_mm512_mul_pd(y, s));
}

/* expf of 16 floats, lane by lane what the C library returns (see exp8_main), the edges
 * included: +inf above log(FLT_MAX), 0 below log(2^-150) (and for -inf), the smallest
 * subnormal just above that, NaN for NaN. */
INLINE512 __m512 exp16(__m512 x)
{
    __m512 y = _mm512_insertf32x8(_mm512_castps256_ps512(exp8_main(_mm512_castps512_ps256(x))),
                                  exp8_main(_mm512_extractf32x8_ps(x, 1)), 1);
    const __m512 big = _mm512_set1_ps(PD_EXP_OVER);
    const __m512 zero_below = _mm512_set1_ps(PD_EXP_ZERO_BELOW);
    const __m512 tiny_below = _mm512_set1_ps(PD_EXP_TINY_BELOW);
    __mmask16 over = _mm512_cmp_ps_mask(x, big, _CMP_GT_OQ);
    __mmask16 zero = _mm512_cmp_ps_mask(x, zero_below, _CMP_LT_OQ);
    __mmask16 tiny = _mm512_cmp_ps_mask(x, tiny_below, _CMP_LT_OQ) & (__mmask16)~zero;
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    y = _mm512_mask_mov_ps(y, over, _mm512_set1_ps(INFINITY));
    y = _mm512_mask_mov_ps(y, zero, _mm512_setzero_ps());
    y = _mm512_mask_mov_ps(y, tiny, _mm512_set1_ps(0x1p-149f));
    return _mm512_mask_add_ps(y, nan, x, x);
}

/* p[s] = expf(p[s] - mx) for s < n, 16 at a time. */
/* Adds the 16 floats e to the parts lo (slots 0..7 of 16) and hi (8..15) in double. */
INLINE512 void sum16_add(__m512 e, __m512d *lo, __m512d *hi)
{
    *lo = _mm512_add_pd(*lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    *hi = _mm512_add_pd(*hi, _mm512_cvtps_pd(_mm256_castpd_ps(
                                 _mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
}

/* pd_sum16_tree of the parts lo, hi: lanes i and i + 8, then the halves. */
INLINE512 double sum16_tree(__m512d lo, __m512d hi)
{
    __m512d q8 = _mm512_add_pd(lo, hi);
    __m256d q4 = _mm256_add_pd(_mm512_castpd512_pd256(q8), _mm512_extractf64x4_pd(q8, 1));
    __m128d q2 = _mm_add_pd(_mm256_castpd256_pd128(q4), _mm256_extractf128_pd(q4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q2, _mm_unpackhi_pd(q2, q2)));
}

/* p[s] = expf(p[s] - mx) for s < n, and their sum in double in pd_sum16_tree's order
 * (the masked tail adds +0.0, which changes no part). */
INLINE512 double attn_exp(float *p, uint32_t n, float mx)
{
    const __m512 m = _mm512_set1_ps(mx);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    uint32_t s = 0;
    for (; s + 16 <= n; s += 16) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(p + s), m));
        _mm512_storeu_ps(p + s, e);
        sum16_add(e, &lo, &hi);
    }
    if (s < n) {
        __mmask16 tail = (__mmask16)((1u << (n - s)) - 1u);
        __m512 e = _mm512_maskz_mov_ps(
            tail, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, p + s), m)));
        _mm512_mask_storeu_ps(p + s, tail, e);
        sum16_add(e, &lo, &hi);
    }
    return sum16_tree(lo, hi);
}

/* pd_simd_sum_sq: 16 squares per step into the parts lo and hi (the masked tail adds
 * +0.0, which changes no part). */
static AVX512_FN double avx512_sum_sq(const float *x, size_t n)
{
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        sum16_add(_mm512_mul_ps(v, v), &lo, &hi);
    }
    if (i < n) {
        __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << (n - i)) - 1u), x + i);
        sum16_add(_mm512_mul_ps(v, v), &lo, &hi);
    }
    return sum16_tree(lo, hi);
}

/* The reference's exp_sum, 16 exponentials at a time. */
static AVX512_FN double avx512_exp_sum(float *p, uint32_t n, float mx)
{
    return attn_exp(p, n, mx);
}

/* Adds e * (x - mx) in double to the parts lo (lanes 0..7) and hi (8..15) where e > 0. */
INLINE512 void wsum16_add(__m512 e, __m512 x, __m512d mx, __m512d *lo, __m512d *hi)
{
    const __m512d zero = _mm512_setzero_pd();
    __m512d el = _mm512_cvtps_pd(_mm512_castps512_ps256(e));
    __m512d eh = _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1));
    __m512d dl = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(x)), mx);
    __m512d dh = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1)), mx);
    __m512d tl = _mm512_maskz_mul_pd(_mm512_cmp_pd_mask(el, zero, _CMP_GT_OQ), el, dl);
    __m512d th = _mm512_maskz_mul_pd(_mm512_cmp_pd_mask(eh, zero, _CMP_GT_OQ), eh, dh);
    *lo = _mm512_add_pd(*lo, tl);
    *hi = _mm512_add_pd(*hi, th);
}

/* pd_simd_logit_sums, 16 logits at a time (masked lanes of the tail add +0.0 to both
 * sums, which changes no part). */
static AVX512_FN float avx512_logit_sums(const float *x, size_t n, double *sum, double *wsum)
{
    __m512 mv = _mm512_set1_ps(-INFINITY);
    size_t s = 0;
    for (; s + 16 <= n; s += 16) {
        mv = _mm512_max_ps(_mm512_loadu_ps(x + s), mv); /* maxps keeps mv for NaN */
    }
    __mmask16 tail = (__mmask16)((1u << (n - s)) - 1u);
    if (s < n) {
        mv = _mm512_mask_max_ps(mv, tail, _mm512_maskz_loadu_ps(tail, x + s), mv);
    }
    float mx = _mm512_reduce_max_ps(mv);
    __m512d lo = _mm512_setzero_pd(), hi = lo, wlo = lo, whi = lo;
    if (mx > -INFINITY) {
        const __m512 m = _mm512_set1_ps(mx);
        const __m512d md = _mm512_set1_pd(mx);
        for (s = 0; s + 16 <= n; s += 16) {
            __m512 xv = _mm512_loadu_ps(x + s);
            __m512 e = exp16(_mm512_sub_ps(xv, m));
            sum16_add(e, &lo, &hi);
            wsum16_add(e, xv, md, &wlo, &whi);
        }
        if (s < n) {
            __m512 xv = _mm512_maskz_loadu_ps(tail, x + s);
            __m512 e = _mm512_maskz_mov_ps(tail, exp16(_mm512_sub_ps(xv, m)));
            sum16_add(e, &lo, &hi);
            wsum16_add(e, xv, md, &wlo, &whi);
        }
    }
    *sum = sum16_tree(lo, hi);
    *wsum = sum16_tree(wlo, whi);
    return mx;
}

/* h[i] = g[i] / (1 + expf(-g[i])) * u[i], the reference's expression per lane. */
static AVX512_FN void avx512_swiglu(float *h, const float *g, const float *u, size_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 gv = _mm512_loadu_ps(g + i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        __m512 sg = _mm512_div_ps(gv, _mm512_add_ps(one, e));
        _mm512_storeu_ps(h + i, _mm512_mul_ps(sg, _mm512_loadu_ps(u + i)));
    }
    if (i < n) {
        __mmask16 tail = (__mmask16)((1u << (n - i)) - 1u);
        __m512 gv = _mm512_maskz_loadu_ps(tail, g + i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        __m512 sg = _mm512_div_ps(gv, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(h + i, tail, _mm512_mul_ps(sg, _mm512_maskz_loadu_ps(tail, u + i)));
    }
}

/* ---- capture ------------------------------------------------------------------------- */

/* The head-mean row, 16 slots at a time, the heads added in order (pd_simd_head_mean). */
static AVX512_FN void avx512_head_mean(float *m, const float *rows, size_t stride,
                                       uint32_t n_head, uint32_t n)
{
    const __m512 inv = _mm512_set1_ps(1.0f / (float)n_head);
    for (uint32_t s = 0; s < n; s += 16) {
        __mmask16 k = n - s >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - s)) - 1u);
        __m512 a = _mm512_maskz_loadu_ps(k, rows + s);
        for (uint32_t h = 1; h < n_head; h++) {
            a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(k, rows + (size_t)h * stride + s));
        }
        _mm512_mask_storeu_ps(m + s, k, _mm512_mul_ps(a, inv));
    }
}

/* ---- activation quantisers --------------------------------------------------------------- */

/* Clamps each lane to [lo, hi]; a NaN lane becomes lo (maxps returns its second operand
 * when either is NaN, as fmaxf then fminf give). */
INLINE512 __m512 clamp16(__m512 v, float lo, float hi)
{
    return _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(lo)), _mm512_set1_ps(hi));
}

/* Round half away from zero, exactly: truncate, then step away where the dropped fraction
 * is at least 1/2. */
INLINE512 __m512 round_away16(__m512 v)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m512 frac = _mm512_andnot_ps(sign, _mm512_sub_ps(v, t));
    __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    __m512 one = _mm512_or_ps(_mm512_and_ps(v, sign), _mm512_set1_ps(1.0f)); /* +-1 */
    return _mm512_mask_add_ps(t, up, t, one);
}

/* q8_0, the portable rule (quant.c) two registers per block: d = amax / 127 (NaN lanes
 * skipped, clamped to the half range) as a half, q = round-half-away(x / d) clamped to
 * [-128, 127]. */
static AVX512_FN void avx512_q8_0_from_f32(const float *src, void *dst, size_t n)
{
    assert(n % PD_QK8_0 == 0);
    uint8_t *b = dst;
    for (size_t i = 0; i < n / PD_QK8_0; i++, b += Q8_0_BYTES) {
        const float *x = src + i * PD_QK8_0;
        __m512 v[2] = {_mm512_loadu_ps(x), _mm512_loadu_ps(x + 16)};
        __m512 vmax = _mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_setzero_ps());
        vmax = _mm512_max_ps(_mm512_abs_ps(v[1]), vmax); /* a NaN lane keeps vmax */
        float d = _mm512_reduce_max_ps(vmax) / 127.0f; /* never NaN nor negative */
        d = d < F16_MAX ? d : F16_MAX;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        memcpy(b, &h, 2);
        __m512 vid = _mm512_set1_ps(id);
        for (int k = 0; k < 2; k++) {
            __m512 r = clamp16(round_away16(_mm512_mul_ps(v[k], vid)), -128.0f, 127.0f);
            _mm_storeu_si128((__m128i *)(b + 2 + 16 * k),
                             _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(r)));
        }
    }
}

/* q8_K, the portable rule: amax the largest magnitude (NaN skipped); if finite and not 0,
 * iscale = -127 / (the first value of that magnitude), q = round-half-even(iscale * x)
 * clamped to [-127, 127], d = 1 / iscale; else all 0. bsums[j] = sum of q[16 j .. + 15],
 * one register of codes each. */
static AVX512_FN void avx512_q8_k_from_f32(const float *src, void *dst, size_t n)
{
    assert(n % PD_QK_K == 0);
    uint8_t *b = dst;
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q8_K_BYTES) {
        const float *x = src + i * PD_QK_K;
        __m512 vmax = _mm512_setzero_ps();
        for (int k = 0; k < PD_QK_K / 16; k++) {
            vmax = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * k)), vmax);
        }
        float amax = _mm512_reduce_max_ps(vmax);
        uint8_t *qs = b + Q8_K_QS;
        int16_t bsums[PD_QK_K / 16] = {0};
        float d = 0.0f;
        if (amax > 0.0f && isfinite(amax)) {
            int first = 0;
            __m512 va = _mm512_set1_ps(amax);
            for (int k = 0; k < PD_QK_K / 16; k++) {
                __mmask16 eq = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * k)), va,
                                                  _CMP_EQ_OQ);
                if (eq) {
                    first = 16 * k + __builtin_ctz((unsigned)eq);
                    break;
                }
            }
            float iscale = -127.0f / x[first];
            __m512 vis = _mm512_set1_ps(iscale);
            for (int k = 0; k < PD_QK_K / 16; k++) {
                __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(vis, _mm512_loadu_ps(x + 16 * k)),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                __m512i q = _mm512_cvttps_epi32(clamp16(r, -127.0f, 127.0f));
                _mm_storeu_si128((__m128i *)(qs + 16 * k), _mm512_cvtepi32_epi8(q));
                bsums[k] = (int16_t)_mm512_reduce_add_epi32(q);
            }
            d = 1.0f / iscale;
        } else {
            memset(qs, 0, PD_QK_K);
        }
        memcpy(b, &d, 4);
        memcpy(b + Q8_K_BSUMS, bsums, sizeof bsums);
    }
}

/* ---- attention ------------------------------------------------------------------------ */

/* Transposes the 16 x 16 floats in r[] (row i = r[i]) in place: 64 shuffles. */
INLINE512 void transpose16(__m512 *r)
{
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
        __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    /* r[4 i + j], 128-bit chunk c, now holds rows 4 i .. 4 i + 3 of column 4 c + j */
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m512 ul = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44);
        __m512 uh = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);
        __m512 wl = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44);
        __m512 wh = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
        t[j] = _mm512_shuffle_f32x4(ul, wl, 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(ul, wl, 0xDD);
        t[8 + j] = _mm512_shuffle_f32x4(uh, wh, 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(uh, wh, 0xDD);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        r[i] = t[i];
    }
}

/* 16 consecutive K or V elements at p as floats. */
INLINE512 __m512 kv_load16(const void *p, bool f16)
{
    return f16 ? _mm512_cvtph_ps(load256(p)) : _mm512_loadu_ps(p);
}

/* Largest head sizes the blocked kernel takes (its stack tile is head_dim x 16 floats). */
#define ATT_DIM_MAX 256

/* acc[i] += q_i[d] * K[d] (one FMA each, in this order) for d = d0, d0 + step, ..., count
 * terms, nq queries q[], K the transposed block kt (lane = slot). */
INLINE512 void attn_chain(const float *const *q, const float *kt, const int nq, uint32_t d0,
                          uint32_t step, uint32_t count, __m512 *acc)
{
    for (uint32_t t = 0; t < count; t++) {
        uint32_t d = d0 + t * step;
        __m512 k = _mm512_load_ps(kt + 16 * d);
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++) {
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(q[i][d]), k, acc[i]);
        }
    }
}

/* u[i] = lane j of the level's kv_dot accumulators after its loop, summed as it sums them
 * before the horizontal add: for f16 rows (avx2_kv_dot_f16) acc0 + acc1, acc0 lane j
 * holding the FMA chain over d = 16 b + j and acc1 over d = 16 b + 8 + j; for f32 rows
 * (avx2_f32_vec_dot) (acc0 + acc1) + (acc2 + acc3), acc c over d = 32 b + 8 c + j, acc0
 * then taking d = 32 m + j and 32 m + 8 + j when head_dim = 32 m + 16. */
INLINE512 void attn_lane(const float *const *q, const float *kt, const int nq, uint32_t hd,
                         bool f16, uint32_t j, __m512 *u)
{
    __m512 c0[4], c1[4];
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        c0[i] = _mm512_setzero_ps();
        c1[i] = _mm512_setzero_ps();
    }
    if (f16) {
        attn_chain(q, kt, nq, j, 16, hd / 16, c0);
        attn_chain(q, kt, nq, 8 + j, 16, hd / 16, c1);
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++) {
            u[i] = _mm512_add_ps(c0[i], c1[i]);
        }
        return;
    }
    __m512 c2[4], c3[4];
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        c2[i] = _mm512_setzero_ps();
        c3[i] = _mm512_setzero_ps();
    }
    uint32_t m = hd / 32;
    attn_chain(q, kt, nq, j, 32, m, c0);
    attn_chain(q, kt, nq, 32 * m + j, 8, (hd % 32) / 8, c0);
    attn_chain(q, kt, nq, 8 + j, 32, m, c1);
    attn_chain(q, kt, nq, 16 + j, 32, m, c2);
    attn_chain(q, kt, nq, 24 + j, 32, m, c3);
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        u[i] = _mm512_add_ps(_mm512_add_ps(c0[i], c1[i]), _mm512_add_ps(c2[i], c3[i]));
    }
}

/* Scores of queries [q0, q0 + nq) (nq <= 4) against the transposed K block kt (head_dim x
 * 16 floats, slots s0 ..), written scaled to p[i][s0 ..] for the query's visible lanes.
 * F16 (a constant in each copy) says how K is stored.
 * Each lane's dot product is the level's kv_dot bit for bit: the accumulator lanes of
 * attn_lane, then hsum_f32x8's tree ((u0 + u4) + (u2 + u6)) + ((u1 + u5) + (u3 + u7)). */
INLINE512 void attn_scores(const struct pd_attn_args *a, const float *kt, uint32_t s0,
                           uint32_t q0, const int nq, const bool F16)
{
    __m512 u0[4], u1[4], w0[4], w1[4], x0[4], x1[4];
    const float *q[4];
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        q[i] = a->q[q0 + i];
    }
    uint32_t hd = a->head_dim;
    attn_lane(q, kt, nq, hd, F16, 0, u0);
    attn_lane(q, kt, nq, hd, F16, 4, u1);
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        w0[i] = _mm512_add_ps(u0[i], u1[i]);
    }
    attn_lane(q, kt, nq, hd, F16, 2, u0);
    attn_lane(q, kt, nq, hd, F16, 6, u1);
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        w1[i] = _mm512_add_ps(u0[i], u1[i]);
        x0[i] = _mm512_add_ps(w0[i], w1[i]);
    }
    attn_lane(q, kt, nq, hd, F16, 1, u0);
    attn_lane(q, kt, nq, hd, F16, 5, u1);
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        w0[i] = _mm512_add_ps(u0[i], u1[i]);
    }
    attn_lane(q, kt, nq, hd, F16, 3, u0);
    attn_lane(q, kt, nq, hd, F16, 7, u1);
    __m512 sc = _mm512_set1_ps(a->scale);
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        w1[i] = _mm512_add_ps(u0[i], u1[i]);
        x1[i] = _mm512_add_ps(w0[i], w1[i]);
        __m512 dot = _mm512_add_ps(x0[i], x1[i]);
        uint32_t n = a->n_vis[q0 + i];
        if (n > s0) {
            uint32_t nm = n - s0 < 16 ? n - s0 : 16;
            _mm512_mask_storeu_ps(a->p[q0 + i] + s0, (__mmask16)((1u << nm) - 1u),
                                  _mm512_mul_ps(dot, sc));
        }
    }
}

/* Softmax of the rows p[i][0 .. n[i]) of nq <= 4 queries in place, as the per-query loop
 * computes each: the largest score (NaN scores ignored, as `p > mx` ignores them), expf
 * of each difference summed in double (pd_sum16_tree's order), then one multiply by the
 * float reciprocal. */
INLINE512 void attn_softmax(float *const *p, const uint32_t *n, uint32_t nq)
{
    double sum[4] = {0, 0, 0, 0};
    for (uint32_t i = 0; i < nq; i++) {
        __m512 mx = _mm512_set1_ps(-INFINITY);
        uint32_t s = 0;
        for (; s + 16 <= n[i]; s += 16) {
            mx = _mm512_max_ps(_mm512_loadu_ps(p[i] + s), mx); /* maxps keeps mx for NaN */
        }
        if (n[i] > s) {
            __mmask16 tail = (__mmask16)((1u << (n[i] - s)) - 1u);
            mx = _mm512_mask_max_ps(mx, tail, _mm512_maskz_loadu_ps(tail, p[i] + s), mx);
        }
        sum[i] = attn_exp(p[i], n[i], _mm512_reduce_max_ps(mx));
    }
    for (uint32_t i = 0; i < nq; i++) {
        __m512 inv = _mm512_set1_ps((float)(1.0 / sum[i]));
        uint32_t k = 0;
        for (; k + 16 <= n[i]; k += 16) {
            _mm512_storeu_ps(p[i] + k, _mm512_mul_ps(_mm512_loadu_ps(p[i] + k), inv));
        }
        if (n[i] > k) {
            __mmask16 tail = (__mmask16)((1u << (n[i] - k)) - 1u);
            _mm512_mask_storeu_ps(p[i] + k, tail,
                                  _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, p[i] + k), inv));
        }
    }
}

/* o[i][col ..] = fma(p[i][s], V[s][col ..], o[i][col ..]) over slots [s0, s1) (as the
 * level's kv_axpy), in slot order; DV registers (16 columns each) per query, nq queries,
 * nq * DV <= 16; F16 (a constant, so each instance loads one way) says how V is stored. */
INLINE512 void attn_values(const struct pd_attn_args *a, uint32_t q0, uint32_t col,
                           uint32_t s0, uint32_t s1, __m512 *acc, const int nq, const int DV,
                           const bool F16)
{
    const size_t eb = F16 ? 2 : 4, vb = eb * a->v_stride;
    const float *pr[4];
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        pr[i] = a->p[q0 + i];
    }
    const uint8_t *row = (const uint8_t *)a->v + (size_t)s0 * vb + col * eb;
    for (uint32_t s = s0; s < s1; s++, row += vb) {
        if (s + PD_ATTN_PF_SLOTS < s1) {
            pd_prefetch(row + PD_ATTN_PF_SLOTS * vb, (size_t)DV * 16 * eb);
        }
        __m512 vv[4];
#pragma GCC unroll 4
        for (int c = 0; c < DV; c++) {
            vv[c] = kv_load16(row + (size_t)c * 16 * eb, F16);
        }
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++) {
            __m512 w = _mm512_set1_ps(pr[i][s]);
#pragma GCC unroll 4
            for (int c = 0; c < DV; c++) {
                acc[i * DV + c] = _mm512_fmadd_ps(w, vv[c], acc[i * DV + c]);
            }
        }
    }
}

/* Columns [col, col + 16 DV) of the outputs of queries [q0, q0 + nq): the common visible
 * slots together, then each query's own remainder. */
INLINE512 void attn_outputs(const struct pd_attn_args *a, uint32_t q0, uint32_t col,
                            const int nq, const int DV, const bool F16)
{
    __m512 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < nq * DV; i++) {
        acc[i] = _mm512_setzero_ps();
    }
    uint32_t common = pd_attn_common(a, q0, (uint32_t)nq);
    attn_values(a, q0, col, 0, common, acc, nq, DV, F16);
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        if (a->n_vis[q0 + i] > common) {
            attn_values(a, q0 + i, col, common, a->n_vis[q0 + i], acc + i * DV, 1, DV, F16);
        }
#pragma GCC unroll 4
        for (int c = 0; c < DV; c++) {
            _mm512_storeu_ps(a->o[q0 + i] + col + 16 * c, acc[i * DV + c]);
        }
    }
}

/* CALL(N) with the constant N equal to nq, for nq in 1..4. */
#define ATT_FOR_NQ4(nq, CALL)                                                            \
    do {                                                                                 \
        switch (nq) {                                                                    \
        case 1: CALL(1); break;                                                          \
        case 2: CALL(2); break;                                                          \
        case 3: CALL(3); break;                                                          \
        case 4: CALL(4); break;                                                          \
        default: break;                                                                  \
        }                                                                                \
    } while (0)

/* attn_outputs with constant nq (1..4) and DV (1..4). */
INLINE512 void attn_outputs_dv(const struct pd_attn_args *a, uint32_t q0, uint32_t col,
                               uint32_t nq, int dv, const bool F16)
{
    switch (dv) {
    case 1:
#define OUT1(N) attn_outputs(a, q0, col, N, 1, F16)
        ATT_FOR_NQ4(nq, OUT1);
        break;
    case 2:
#define OUT2(N) attn_outputs(a, q0, col, N, 2, F16)
        ATT_FOR_NQ4(nq, OUT2);
        break;
    case 3:
#define OUT3(N) attn_outputs(a, q0, col, N, 3, F16)
        ATT_FOR_NQ4(nq, OUT3);
        break;
    default:
#define OUT4(N) attn_outputs(a, q0, col, N, 4, F16)
        ATT_FOR_NQ4(nq, OUT4);
        break;
    }
}

static AVX512_FN bool avx512_attn(const struct pd_attn_args *a)
{
    uint32_t hd = a->head_dim, hdv = a->head_dim_v;
    if (hd % 16 || hdv % 16 || hd > ATT_DIM_MAX || hdv > ATT_DIM_MAX || a->n_q == 0 || a->hide) {
        return false;
    }
    uint32_t most = 0;
    for (uint32_t i = 0; i < a->n_q; i++) {
        most = a->n_vis[i] > most ? a->n_vis[i] : most;
    }
    __attribute__((aligned(64))) float kt[ATT_DIM_MAX * 16];
    const uint8_t *k = a->k;
    size_t eb = a->f16 ? 2 : 4, kb = eb * a->k_stride;
    /* scores, 16 slots at a time: the block's K rows are widened and transposed once and
     * serve every query that sees any of them */
    for (uint32_t s0 = 0; s0 < most; s0 += 16) {
        uint32_t ns = most - s0 < 16 ? most - s0 : 16;
        /* the K rows PD_ATTN_PF_SLOTS on (simd.h) */
        for (uint32_t i = s0 + PD_ATTN_PF_SLOTS; i < s0 + PD_ATTN_PF_SLOTS + 16 && i < most;
             i++) {
            pd_prefetch(k + (size_t)i * kb, eb * hd);
        }
        for (uint32_t d0 = 0; d0 < hd; d0 += 16) {
            __m512 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                r[i] = (uint32_t)i < ns ? kv_load16(k + (s0 + (size_t)i) * kb + d0 * eb, a->f16)
                                        : _mm512_setzero_ps();
            }
            transpose16(r);
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                _mm512_store_ps(kt + 16 * (d0 + (uint32_t)i), r[i]);
            }
        }
        for (uint32_t q0 = 0; q0 < a->n_q; q0 += 4) {
            uint32_t nq = a->n_q - q0 < 4 ? a->n_q - q0 : 4;
            if (a->f16) {
#define SCORES(N) attn_scores(a, kt, s0, q0, N, true)
                ATT_FOR_NQ4(nq, SCORES);
#undef SCORES
            } else {
#define SCORES(N) attn_scores(a, kt, s0, q0, N, false)
                ATT_FOR_NQ4(nq, SCORES);
#undef SCORES
            }
        }
    }
    for (uint32_t i = 0; i < a->n_q; i += 4) {
        attn_softmax(a->p + i, a->n_vis + i, a->n_q - i < 4 ? a->n_q - i : 4);
    }
    /* outputs: as many queries at once as 16 accumulators hold, 64 columns at a time (each
     * column is its own chain over the slots, so the split changes no result) */
    for (uint32_t col = 0; col < hdv; col += 64) {
        int dv = (int)((hdv - col < 64 ? hdv - col : 64) / 16);
        for (uint32_t q0 = 0; q0 < a->n_q; q0 += 4) {
            uint32_t nq = a->n_q - q0 < 4 ? a->n_q - q0 : 4;
            if (a->f16) {
                attn_outputs_dv(a, q0, col, nq, dv, true);
            } else {
                attn_outputs_dv(a, q0, col, nq, dv, false);
            }
        }
    }
    return true;
}
#undef OUT1
#undef OUT2
#undef OUT3
#undef OUT4
#undef ATT_FOR_NQ4

/* Prefetches part `part` of `parts` of the bytes [p, p + n) into the near caches. */
INLINE512 void prefetch_part(const uint8_t *p, size_t n, size_t part, size_t parts)
{
    size_t lines = (n + 63) / 64;
    size_t a = lines * part / parts, b = lines * (part + 1) / parts;
    for (size_t l = a; l < b; l++) {
        _mm_prefetch((const char *)p + 64 * l, _MM_HINT_T0);
    }
}

/* ---- q4_K, rows in lanes ---------------------------------------------------------------- */

/* Tokens from which a product takes the rows-in-lanes kernel: every batch, decode
 * included (with the 16 rows' headers unpacked in lanes it beat the 16 x 1 tile on a
 * single token too); the tiles keep the rows past the last whole block of 16. */
#define Q4K_LANES_MIN_TOK 1
/* Most tokens the rows-in-lanes kernel keeps sums for at once. */
#define Q4K_LANES_TOK 64

/* One super-block of 16 weight rows laid out for rows-in-lanes products: lane r of
 * lo[w] holds the low nibbles of the 4 code bytes at qs + 4 w of row r (elements
 * 64 (w / 8) + 4 (w % 8) .. + 3 as unsigned bytes), hi[w] the high nibbles (the same
 * elements + 32); sc[j] the 6-bit scale of sub-block j per row, m[j] its min in both
 * 16-bit halves of the lane (a vpdpwssd operand: the min times a q8_K bsum pair); d and
 * dmin the rows' f16 scales as floats. */
struct q4k_lanes {
    __m512i lo[32], hi[32];
    __m512i sc[8], m[8];
    __m512 d, dmin;
};

/* Transposes the 16 x 16 dwords in r[] (row i = r[i]) in place. */
INLINE512 void transpose16_epi32(__m512i *r)
{
    __m512 f[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        f[i] = _mm512_castsi512_ps(r[i]);
    }
    transpose16(f);
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        r[i] = _mm512_castps_si512(f[i]);
    }
}

/* The header fields of L (sc, m, d, dmin) for a super-block of 16 rows from h[k] (lane
 * r: bytes 4 k .. 4 k + 3 of row r's 16-byte header), unpacked as q4_k_unpack reads a
 * header, lane by lane. */
INLINE512 void q4k_lanes_header(const __m512i *h, struct q4k_lanes *L)
{
    _Static_assert(KQ_SCALES == 4 && Q4_K_QS == KQ_SCALES + 12,
                   "q4_K header: d, dmin, then 12 scale bytes");
    __m512i hd = h[0], w0 = h[1], w1 = h[2], w2 = h[3];
    const __m512i low6 = _mm512_set1_epi32(0x3F3F3F3F), low4 = _mm512_set1_epi32(0x0F0F0F0F);
    const __m512i low2 = _mm512_set1_epi32(0x03030303), byte = _mm512_set1_epi32(0xFF);
    __m512i sc_lo = _mm512_and_si512(w0, low6);
    __m512i m_lo = _mm512_and_si512(w1, low6);
    __m512i sc_hi = _mm512_or_si512(
        _mm512_and_si512(w2, low4),
        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w0, 6), low2), 4));
    __m512i m_hi = _mm512_or_si512(
        _mm512_and_si512(_mm512_srli_epi32(w2, 4), low4),
        _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w1, 6), low2), 4));
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        L->sc[j] = _mm512_and_si512(_mm512_srli_epi32(sc_lo, 8 * j), byte);
        L->sc[4 + j] = _mm512_and_si512(_mm512_srli_epi32(sc_hi, 8 * j), byte);
        __m512i ml = _mm512_and_si512(_mm512_srli_epi32(m_lo, 8 * j), byte);
        __m512i mh = _mm512_and_si512(_mm512_srli_epi32(m_hi, 8 * j), byte);
        L->m[j] = _mm512_or_si512(ml, _mm512_slli_epi32(ml, 16));
        L->m[4 + j] = _mm512_or_si512(mh, _mm512_slli_epi32(mh, 16));
    }
    L->d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(hd));
    L->dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(hd, 16)));
}

/* v with 16 added to each byte whose bit `bit` is set in the same byte of qh: q5_K's
 * fifth code bit. */
INLINE512 __m512i q5k_bit4(__m512i v, __m512i qh, int bit)
{
    __mmask64 k = _mm512_test_epi8_mask(qh, _mm512_set1_epi8((char)(1 << bit)));
    return _mm512_mask_add_epi8(v, k, v, _mm512_set1_epi8(0x10));
}

/* The low (hi: high) code nibbles of code register k of a q4_K super-block, or with
 * `five` q5_K's codes: the nibbles with their fifth bits from qh register k % 8 (lane r:
 * qh[4 (k % 8) .. + 3] of row r; sub-block 2 (k / 8) takes bit 2 (k / 8) of each byte,
 * 2 (k / 8) + 1 the next bit). */
INLINE512 __m512i kq45_lane_codes(__m512i c, const __m512i *qh, int k, bool hi, bool five)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i v = _mm512_and_si512(hi ? _mm512_srli_epi16(c, 4) : c, m4);
    return five ? q5k_bit4(v, qh[k % 8], 2 * (k / 8) + (int)hi) : v;
}

/* All of L from the header registers h[4] (q4k_lanes_header) and the code registers
 * c[k] (lane r: code bytes qs[4 k .. 4 k + 3] of row r), k < 32; with `five`, q5_K's
 * with its qh registers (kq45_lane_codes). */
INLINE512 void q4k_lanes_unpack(const __m512i *h, const __m512i *qh, const __m512i *c,
                                struct q4k_lanes *L, const bool five)
{
    q4k_lanes_header(h, L);
#pragma GCC unroll 32
    for (int k = 0; k < 32; k++) {
        L->lo[k] = kq45_lane_codes(c[k], qh, k, false, five);
        L->hi[k] = kq45_lane_codes(c[k], qh, k, true, five);
    }
}

/* The header registers h[4] and code registers c[32] of q4k_lanes_unpack for the
 * super-block at b0 of 16 rows `stride` bytes apart, in the file's layout, the codes at
 * byte qs (Q4_K_QS, Q5_K_QS). */
INLINE512 void q4k_lanes_gather(const uint8_t *b0, size_t stride, size_t qs_at, __m512i *h,
                                __m512i *c)
{
    /* the 16 rows' headers, one row per lane: 16 bytes per row, 4 rows per register,
     * then dword k of every row into h[k] (a 16 x 4 transpose, cheaper than 4 gathers) */
    __m512i z[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
        const uint8_t *p = b0 + (size_t)(4 * q) * stride;
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + stride)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 2 * stride)), 2);
        z[q] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 3 * stride)), 3);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        /* dword k of rows 0..7 (from z[0], z[1]) and of rows 8..15 (z[2], z[3]) */
        const __m512i idx = _mm512_setr_epi32(k, 4 + k, 8 + k, 12 + k, 16 + k, 20 + k, 24 + k,
                                              28 + k, 0, 0, 0, 0, 0, 0, 0, 0);
        __m512i a = _mm512_permutex2var_epi32(z[0], idx, z[1]);
        __m512i b = _mm512_permutex2var_epi32(z[2], idx, z[3]);
        h[k] = _mm512_shuffle_i64x2(a, b, 0x44);
    }
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++) {
        const uint8_t *qs = b0 + (size_t)r * stride + qs_at;
        c[r] = load512(qs);
        c[16 + r] = load512(qs + 64);
    }
    transpose16_epi32(c);
    transpose16_epi32(c + 16);
}

/* Lays out super-block i of rows [r0, r0 + 16) from the file's layout. */
INLINE512 void q4k_lanes_load(const struct pd_gemm_args *g, size_t r0, size_t i,
                              struct q4k_lanes *L)
{
    __m512i h[4], c[32];
    q4k_lanes_gather(g->w + r0 * g->w_stride + i * Q4_K_BYTES, g->w_stride, Q4_K_QS, h, c);
    q4k_lanes_unpack(h, NULL, c, L, false);
}

/* The packed layouts (avx512_q4_k_pack, avx512_q5_k_pack): each block of 16 rows is
 * Q4K_PACKED (Q5K_PACKED) bytes per super-block, super-blocks in order, blocks in order:
 * the 4 header registers h[k], for q5_K the 8 qh registers of kq45_lane_codes, then the 32
 * code registers c[k] of q4k_lanes_unpack, 64 bytes each. The same bytes as the 16 rows,
 * in the same place as a whole; rows past the last whole block stay as they were. */
#define Q4K_PACKED (16 * Q4_K_BYTES)
#define Q5K_PACKED (16 * Q5_K_BYTES)
_Static_assert(Q4K_PACKED == 64 * (4 + 32), "q4_K packed block: 36 registers");
_Static_assert(Q5K_PACKED == 64 * (4 + 8 + 32), "q5_K packed block: 44 registers");
#define KQ45_PACKED(five) ((five) ? Q5K_PACKED : Q4K_PACKED)
/* Registers of a packed super-block before its codes. */
#define KQ45_CODES_AT(five) ((five) ? 12 : 4)

INLINE512 void kq45_pack(const uint8_t *w, size_t rows, size_t row_bytes, uint8_t *out,
                         const bool five)
{
    const size_t bytes = five ? Q5_K_BYTES : Q4_K_BYTES, nsb = row_bytes / bytes;
    const int at = KQ45_CODES_AT(five);
    size_t whole = rows / 16 * 16;
    for (size_t r0 = 0; r0 < whole; r0 += 16) {
        for (size_t i = 0; i < nsb; i++) {
            const uint8_t *b0 = w + r0 * row_bytes + i * bytes;
            __m512i regs[44];
            q4k_lanes_gather(b0, row_bytes, five ? Q5_K_QS : Q4_K_QS, regs, regs + at);
            if (five) { /* row r's 32 qh bytes in register r, then dword k of each in k */
                __m512i q[16];
#pragma GCC unroll 16
                for (int r = 0; r < 16; r++) {
                    q[r] = _mm512_zextsi256_si512(load256(b0 + (size_t)r * row_bytes + Q5_K_QH));
                }
                transpose16_epi32(q);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    regs[4 + k] = q[k];
                }
            }
            uint8_t *o = out + r0 * row_bytes + i * KQ45_PACKED(five);
#pragma GCC unroll 44
            for (int k = 0; k < at + 32; k++) {
                _mm512_storeu_si512(o + 64 * k, regs[k]);
            }
        }
    }
    memcpy(out + whole * row_bytes, w + whole * row_bytes, (rows - whole) * row_bytes);
}

static AVX512_FN void avx512_q4_k_pack(const uint8_t *w, size_t rows, size_t row_bytes,
                                       uint8_t *out)
{
    kq45_pack(w, rows, row_bytes, out, false);
}

static AVX512_FN void avx512_q5_k_pack(const uint8_t *w, size_t rows, size_t row_bytes,
                                       uint8_t *out)
{
    kq45_pack(w, rows, row_bytes, out, true);
}

/* Lays out the packed super-block at blk (q5_K's with `five`). */
INLINE512 void q4k_lanes_load_packed(const uint8_t *blk, struct q4k_lanes *L, const bool five)
{
    __m512i h[4], qh[8], c[32];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        h[k] = load512(blk + 64 * k);
    }
    if (five) {
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            qh[k] = load512(blk + 64 * (4 + k));
        }
    }
#pragma GCC unroll 32
    for (int k = 0; k < 32; k++) {
        c[k] = load512(blk + 64 * (KQ45_CODES_AT(five) + k));
    }
    q4k_lanes_unpack(h, qh, c, L, five);
}

/* sum + the 16 rows' term of super-block L for the q8_K block y whose code products
 * with the sub-block scales are isum: the mins' term sum(bsums * m) per lane and the
 * float combination (d * dy) * isum - (dmin * dy) * msum, as pd_q4_k_vec_dot does. */
INLINE512 __m512 q4k_lanes_finish(const struct q4k_lanes *L, const uint8_t *y, __m512i isum,
                                  __m512 sum)
{
    __m512i msum = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        int32_t b2; /* bsums[2 j] and bsums[2 j + 1], the halves of sub-block j */
        memcpy(&b2, y + Q8_K_BSUMS + 4 * j, 4);
        msum = _mm512_dpwssd_epi32(msum, L->m[j], _mm512_set1_epi32(b2));
    }
    float dyf;
    memcpy(&dyf, y, 4);
    __m512 dy = _mm512_set1_ps(dyf);
    __m512 a = _mm512_mul_ps(_mm512_mul_ps(L->d, dy), _mm512_cvtepi32_ps(isum));
    __m512 c = _mm512_mul_ps(_mm512_mul_ps(L->dmin, dy), _mm512_cvtepi32_ps(msum));
    return _mm512_add_ps(sum, _mm512_sub_ps(a, c));
}

/* The 16 rows' term of super-block L for RN (1, 2 or 4) tokens whose q8_K blocks are y[],
 * added to sum[]: exactly pd_q4_k_vec_dot's integers and float operations, one row per
 * lane; each code register serves all RN tokens. The steps of a sub-block are unrolled
 * by 2, not 8: with 4 tokens the fully unrolled loop ran slower (bench-kernels). */
INLINE512 void q4k_lanes_tokens(const struct q4k_lanes *L, const uint8_t *const *y,
                                __m512 *sum, const int RN)
{
    __m512i isum[4];
#pragma GCC unroll 4
    for (int t = 0; t < RN; t++) {
        isum[t] = _mm512_setzero_si512();
    }
#pragma GCC unroll 4
    for (int grp = 0; grp < 4; grp++) {
        __m512i s1[4], s2[4];
#pragma GCC unroll 4
        for (int t = 0; t < RN; t++) {
            s1[t] = _mm512_setzero_si512();
            s2[t] = _mm512_setzero_si512();
        }
#pragma GCC unroll 2
        for (int k = 0; k < 8; k++) {
            __m512i lo = L->lo[8 * grp + k], hi = L->hi[8 * grp + k];
#pragma GCC unroll 4
            for (int t = 0; t < RN; t++) {
                const uint8_t *q8 = y[t] + Q8_K_QS + 64 * grp + 4 * k;
                int32_t xl, xh;
                memcpy(&xl, q8, 4);
                memcpy(&xh, q8 + 32, 4);
                s1[t] = _mm512_dpbusd_epi32(s1[t], lo, _mm512_set1_epi32(xl));
                s2[t] = _mm512_dpbusd_epi32(s2[t], hi, _mm512_set1_epi32(xh));
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < RN; t++) {
            isum[t] = _mm512_add_epi32(
                isum[t], _mm512_add_epi32(_mm512_mullo_epi32(s1[t], L->sc[2 * grp]),
                                          _mm512_mullo_epi32(s2[t], L->sc[2 * grp + 1])));
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < RN; t++) {
        sum[t] = q4k_lanes_finish(L, y[t], isum[t], sum[t]);
    }
}

/* TOKENS(L, y, sum, RN) over the nt tokens whose q8_K blocks start at xb, stride bytes
 * apart: 4 at a time, then 2, then 1 (the rows-in-lanes kernels' passes). */
#define LANES_TOKENS(TOKENS, L, xb, stride, nt, sum)                                      \
    do {                                                                                 \
        size_t t_ = 0;                                                                   \
        for (; t_ + 4 <= (nt); t_ += 4) {                                                \
            const uint8_t *y_[4] = {(xb) + t_ * (stride), (xb) + (t_ + 1) * (stride),    \
                                    (xb) + (t_ + 2) * (stride), (xb) + (t_ + 3) * (stride)}; \
            TOKENS(L, y_, (sum) + t_, 4);                                                \
        }                                                                                \
        for (; t_ + 2 <= (nt); t_ += 2) {                                                \
            const uint8_t *y_[2] = {(xb) + t_ * (stride), (xb) + (t_ + 1) * (stride)};   \
            TOKENS(L, y_, (sum) + t_, 2);                                                \
        }                                                                                \
        if (t_ < (nt)) {                                                                 \
            const uint8_t *y_[1] = {(xb) + t_ * (stride)};                               \
            TOKENS(L, y_, (sum) + t_, 1);                                                \
        }                                                                                \
    } while (0)

/* Rows [r0, r0 + 16) for every token, written to y[t * y_stride + r - r0]: super-block
 * by super-block, each laid out once for up to Q4K_LANES_TOK tokens, so one instruction
 * multiplies 4 codes of each of the 16 rows (vpdpbusd with the token's 4 activation bytes
 * broadcast) and no horizontal sums remain. Bit-identical to pd_q4_k_vec_dot per (row,
 * token), like the tiles. From the packed layout when `packed`, which is one stream: the
 * next super-block is fetched while this one runs; from the file's layout the next
 * block's 16 rows are (r1 bounds them). `five`: packed q5_K (bit-identical to
 * pd_q5_k_vec_dot, the same integers and float expression). */
INLINE512 void q4k_lanes_block(const struct pd_gemm_args *g, size_t r0, size_t r1, float *y,
                               size_t y_stride, const bool packed, const bool five)
{
    struct q4k_lanes L;
    __m512 sum[Q4K_LANES_TOK];
    size_t nsb = g->n / PD_QK_K;
    size_t next = r0 + 32 <= r1 ? 16 : r1 - (r0 + 16 < r1 ? r0 + 16 : r1);
    const uint8_t *nw = g->w + (r0 + 16) * g->w_stride;
    const uint8_t *blk = g->w + r0 * g->w_stride;
    for (size_t t0 = 0; t0 < g->n_tok; t0 += Q4K_LANES_TOK) {
        size_t nt = g->n_tok - t0 < Q4K_LANES_TOK ? g->n_tok - t0 : Q4K_LANES_TOK;
        for (size_t t = 0; t < nt; t++) {
            sum[t] = _mm512_setzero_ps();
        }
        for (size_t i = 0; i < nsb; i++) {
            if (packed) {
                const uint8_t *b = blk + i * KQ45_PACKED(five);
                if (t0 == 0) { /* the next super-block, past the matrix too (as decode) */
                    prefetch_packed((uintptr_t)b + KQ45_PACKED(five), KQ45_PACKED(five), false);
                }
                q4k_lanes_load_packed(b, &L, five);
            } else {
                if (t0 == 0) {
                    prefetch_part(nw, next * g->w_stride, i, nsb);
                }
                q4k_lanes_load(g, r0, i, &L);
            }
            const uint8_t *xb = g->x + t0 * g->x_stride + i * Q8_K_BYTES;
            LANES_TOKENS(q4k_lanes_tokens, &L, xb, g->x_stride, nt, sum);
        }
        for (size_t t = 0; t < nt; t++) {
            _mm512_storeu_ps(y + (t0 + t) * y_stride, sum[t]);
        }
    }
}

static AVX512_FN void q4k_lanes_rows(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    q4k_lanes_block(g, r0, r1, g->y + r0, g->y_stride, false, false);
}

/* One token (decode) from the packed layout, each code register used as it is loaded
 * (q4k_lanes_block lays a super-block out in memory for its token loop: 64 stores and
 * 64 loads more per super-block): the integers and float operations of
 * q4k_lanes_tokens, so bit-identical to it. The super-block Q4K_PF_AHEAD ahead is
 * fetched into L1, or Q4K_PF_FAR ahead into L2 for a large matrix (pd_pf_l2). Into L1, 1
 * ahead was slower in the model's decode, 4 and 8 no faster than 2; into L2, 4 ahead gave
 * the 0.55 GB model 40 tok/s against 37 from L1 2 ahead, 2 / 6 / 8 ahead and L3 within 2%
 * of 4; not stopping at the matrix's end gained 1-9% in 8 alternating runs. */
#define Q4K_PF_AHEAD 2
#define Q4K_PF_FAR 4
/* How far ahead a packed K-quant decode stream of `bytes` per super-block fetches. */
INLINE512 uintptr_t kq_pf_ahead(bool l2, size_t bytes)
{
    return (l2 ? Q4K_PF_FAR : Q4K_PF_AHEAD) * (uintptr_t)bytes;
}
INLINE512 void q4k_packed_one(const struct pd_gemm_args *g, size_t r0, float *y, const bool five)
{
    const int bytes = KQ45_PACKED(five), at = KQ45_CODES_AT(five);
    __m512 sum = _mm512_setzero_ps();
    size_t nsb = g->n / PD_QK_K;
    const uint8_t *blk = g->w + r0 * g->w_stride;
    const bool l2 = pd_pf_l2(g);
    const uintptr_t ahead = kq_pf_ahead(l2, (size_t)bytes);
    for (size_t i = 0; i < nsb; i++) {
        const uint8_t *b = blk + i * (size_t)bytes;
        prefetch_packed((uintptr_t)b + ahead, bytes, l2);
        const uint8_t *q8 = g->x + i * Q8_K_BYTES;
        struct q4k_lanes L; /* only its header fields are used */
        __m512i h[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            h[k] = load512(b + 64 * k);
        }
        q4k_lanes_header(h, &L);
        __m512i qh[8];
        if (five) {
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                qh[k] = load512(b + 64 * (4 + k));
            }
        }
        __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int grp = 0; grp < 4; grp++) {
            __m512i s1 = _mm512_setzero_si512(), s2 = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                __m512i c = load512(b + 64 * (at + 8 * grp + k));
                int32_t xl, xh;
                memcpy(&xl, q8 + Q8_K_QS + 64 * grp + 4 * k, 4);
                memcpy(&xh, q8 + Q8_K_QS + 64 * grp + 4 * k + 32, 4);
                s1 = _mm512_dpbusd_epi32(s1, kq45_lane_codes(c, qh, 8 * grp + k, false, five),
                                         _mm512_set1_epi32(xl));
                s2 = _mm512_dpbusd_epi32(s2, kq45_lane_codes(c, qh, 8 * grp + k, true, five),
                                         _mm512_set1_epi32(xh));
            }
            isum = _mm512_add_epi32(isum,
                                    _mm512_add_epi32(_mm512_mullo_epi32(s1, L.sc[2 * grp]),
                                                     _mm512_mullo_epi32(s2, L.sc[2 * grp + 1])));
        }
        sum = q4k_lanes_finish(&L, q8, isum, sum);
    }
    _mm512_storeu_ps(y, sum);
}

static AVX512_FN void q4k_packed_rows(const struct pd_gemm_args *g, size_t r0, float *y,
                                      size_t y_stride)
{
    if (g->n_tok == 1) {
        q4k_packed_one(g, r0, y, false);
    } else {
        q4k_lanes_block(g, r0, r0 + 16, y, y_stride, true, false);
    }
}

static AVX512_FN void q5k_packed_rows(const struct pd_gemm_args *g, size_t r0, float *y,
                                      size_t y_stride)
{
    if (g->n_tok == 1) {
        q4k_packed_one(g, r0, y, true);
    } else {
        q4k_lanes_block(g, r0, r0 + 16, y, y_stride, true, true);
    }
}

/* Rows [r0, r1) of packed weights, all inside the block of 16 that starts at b: the
 * whole block is computed by `rows` into a scratch row per token and the asked rows
 * copied. */
typedef void (*packed_rows_fn)(const struct pd_gemm_args *g, size_t r0, float *y,
                               size_t y_stride);
static AVX512_FN void packed_part(const struct pd_gemm_args *g, size_t b, size_t r0, size_t r1,
                                  packed_rows_fn rows)
{
    enum { TOK = 64 };
    float tmp[TOK * 16];
    for (size_t t0 = 0; t0 < g->n_tok; t0 += TOK) {
        struct pd_gemm_args part = *g;
        part.x = g->x + t0 * g->x_stride;
        part.n_tok = g->n_tok - t0 < TOK ? g->n_tok - t0 : TOK;
        rows(&part, b, tmp, 16);
        for (size_t t = 0; t < part.n_tok; t++) {
            memcpy(g->y + (t0 + t) * g->y_stride + r0, tmp + t * 16 + (r0 - b),
                   (r1 - r0) * sizeof(float));
        }
    }
}

/* Rows [r0, r1) of a packed matrix: whole blocks of 16 by `rows`, a block cut by the range
 * through packed_part; returns the first row past the last whole block it reached. */
static AVX512_FN size_t packed_blocks(const struct pd_gemm_args *g, size_t r0, size_t r1,
                                      packed_rows_fn rows)
{
    size_t r = r0, whole = g->w_rows / 16 * 16;
    while (r < r1 && r < whole) {
        size_t b = r / 16 * 16, e = b + 16 < r1 ? b + 16 : r1;
        if (r == b && e == b + 16) {
            rows(g, b, g->y + b, g->y_stride);
        } else {
            packed_part(g, b, r, e, rows);
        }
        r = e;
    }
    return r;
}

/* ---- q6_K, rows in lanes -------------------------------------------------------------- */

/* The packed layout (avx512_q6_k_pack): each block of 16 rows is Q6K_PACKED bytes per
 * super-block, super-blocks in order, blocks in order, each read front to back: 4 scale
 * registers (lane r: scales[4 q .. 4 q + 3] of row r in register q); per half n of the
 * super-block and k < 8, three code registers (lane r: 4 bytes of row r): A = ql[64 n +
 * 4 k ..], B = ql[64 n + 32 + 4 k ..], H = qh[32 n + 4 k ..]; then the 16 rows' d. The
 * same bytes as the 16 rows, in the same place as a whole; rows past the last whole block
 * stay as they were. */
#define Q6K_PACKED (16 * Q6_K_BYTES)
#define Q6K_CODES_AT (64 * 4)
#define Q6K_D_AT (Q6K_CODES_AT + 64 * 48)
_Static_assert(Q6K_PACKED == Q6K_D_AT + 32, "q6_K packed block: 52 registers and the d");

/* Most tokens the rows-in-lanes kernel keeps sums for at once. */
#define Q6K_LANES_TOK 64

/* Dword r of the result: the 4 bytes at p + off[r / 8] lane r % 8 (two gathers of 8 with
 * 64-bit offsets, so any row length). */
INLINE512 __m512i gather16_dwords(const uint8_t *p, __m512i off_lo, __m512i off_hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_i64gather_epi32(off_lo, p, 1)),
                              _mm512_i64gather_epi32(off_hi, p, 1), 1);
}

static AVX512_FN void avx512_q6_k_pack(const uint8_t *w, size_t rows, size_t row_bytes,
                                       uint8_t *out)
{
    size_t nsb = row_bytes / Q6_K_BYTES;
    size_t whole = rows / 16 * 16;
    /* lane r of a register: 4 bytes of row r */
    const __m512i lo = _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm512_set1_epi64((long long)row_bytes));
    const __m512i hi = _mm512_add_epi64(lo, _mm512_set1_epi64((long long)(8 * row_bytes)));
    for (size_t r0 = 0; r0 < whole; r0 += 16) {
        for (size_t i = 0; i < nsb; i++) {
            const uint8_t *b = w + r0 * row_bytes + i * Q6_K_BYTES;
            uint8_t *o = out + r0 * row_bytes + i * Q6K_PACKED;
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) {
                _mm512_storeu_si512(o + 64 * q, gather16_dwords(b + Q6_K_SCALES + 4 * q, lo, hi));
            }
            for (int n = 0; n < 2; n++) {
                for (int k = 0; k < 8; k++) {
                    uint8_t *reg = o + Q6K_CODES_AT + 64 * (24 * n + 3 * k);
                    _mm512_storeu_si512(reg, gather16_dwords(b + Q6_K_QL + 64 * n + 4 * k, lo, hi));
                    _mm512_storeu_si512(
                        reg + 64, gather16_dwords(b + Q6_K_QL + 64 * n + 32 + 4 * k, lo, hi));
                    _mm512_storeu_si512(reg + 128,
                                        gather16_dwords(b + Q6_K_QH + 32 * n + 4 * k, lo, hi));
                }
            }
            /* the d halves: the high 16 bits of the dwords ending at Q6_K_D + 2 */
            __m512i d = gather16_dwords(b + Q6_K_D - 2, lo, hi);
            _mm256_storeu_si256((__m256i *)(o + Q6K_D_AT),
                                _mm512_cvtepi32_epi16(_mm512_srli_epi32(d, 16)));
        }
    }
    memcpy(out + whole * row_bytes, w + whole * row_bytes, (rows - whole) * row_bytes);
}

/* The four code registers of packed registers A, B, H (lane r: codes 4 g .. 4 g + 3 of
 * row r, g = 32 n + 8 Q + k for quarter Q of half n): the low nibbles of A, of B, the
 * high nibbles of A, of B, each with bits 4-5 from H's bit pair 2 Q (as the portable dot
 * builds (ql & 0x0F) | ((qh >> 2 Q) & 3) << 4). */
INLINE512 void q6k_codes4(__m512i a, __m512i b, __m512i h, __m512i *c0, __m512i *c1,
                          __m512i *c2, __m512i *c3)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30);
    /* (x & m4) | y as one ternary-logic operation: m4 ? x : y */
    *c0 = _mm512_ternarylogic_epi32(m4, a, _mm512_and_si512(_mm512_slli_epi16(h, 4), m2), 0xCA);
    *c1 = _mm512_ternarylogic_epi32(m4, b, _mm512_and_si512(_mm512_slli_epi16(h, 2), m2), 0xCA);
    *c2 = _mm512_ternarylogic_epi32(m4, _mm512_srli_epi16(a, 4), _mm512_and_si512(h, m2), 0xCA);
    *c3 = _mm512_ternarylogic_epi32(m4, _mm512_srli_epi16(b, 4),
                                    _mm512_and_si512(_mm512_srli_epi16(h, 2), m2), 0xCA);
}

/* A packed super-block's scales: per sub-block j the 16 rows' signed scales as int32
 * lanes, per pair m the scales 2 m and 2 m + 1 times 32 as the int16 halves of each lane
 * (for the codes' offset: |32 sc| <= 4096). */
struct q6k_head {
    __m512i sc[16], sc32[8];
};

INLINE512 void q6k_header(const uint8_t *blk, struct q6k_head *H)
{
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
        __m512i s = load512(blk + 64 * q);
#pragma GCC unroll 4
        for (int b = 0; b < 4; b++) {
            H->sc[4 * q + b] = _mm512_srai_epi32(_mm512_slli_epi32(s, 24 - 8 * b), 24);
        }
    }
#pragma GCC unroll 8
    for (int m = 0; m < 8; m++) {
        H->sc32[m] = _mm512_or_si512(
            _mm512_and_si512(_mm512_slli_epi32(H->sc[2 * m], 5), _mm512_set1_epi32(0xFFFF)),
            _mm512_slli_epi32(H->sc[2 * m + 1], 21));
    }
}

/* The 16 rows' d of the packed super-block blk (read last: it ends the block). */
INLINE512 __m512 q6k_d(const uint8_t *blk)
{
    return _mm512_cvtph_ps(load256(blk + Q6K_D_AT));
}

/* sum + the 16 rows' term of a packed super-block (scales H, d) for the q8_K block y whose
 * code products with the sub-block scales are isum: minus 32 * sum(bsums[j] * sc[j]) (one
 * vpdpwssd per pair of sub-blocks), then (d * dy) * isum as pd_q6_k_vec_dot. */
INLINE512 __m512 q6k_finish(const struct q6k_head *H, __m512 d, const uint8_t *y,
                            __m512i isum, __m512 sum)
{
    __m512i bias = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int m = 0; m < 8; m++) {
        int32_t pair;
        memcpy(&pair, y + Q8_K_BSUMS + 4 * m, 4);
        bias = _mm512_dpwssd_epi32(bias, H->sc32[m], _mm512_set1_epi32(pair));
    }
    float dyf;
    memcpy(&dyf, y, 4);
    __m512 dd = _mm512_mul_ps(d, _mm512_set1_ps(dyf));
    __m512 t = _mm512_mul_ps(dd, _mm512_cvtepi32_ps(_mm512_sub_epi32(isum, bias)));
    return _mm512_add_ps(sum, t);
}

/* One packed super-block of 16 rows laid out for a batch of tokens: c[g] (lane r: codes
 * 4 g .. 4 g + 3 of row r, g = 4 j + u for sub-block j), the scales and d. */
struct q6k_lanes {
    __m512i c[64];
    struct q6k_head h;
    __m512 d;
};

INLINE512 void q6k_lanes_load(const uint8_t *blk, struct q6k_lanes *L)
{
#pragma GCC unroll 2
    for (int n = 0; n < 2; n++) {
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const uint8_t *p = blk + Q6K_CODES_AT + 64 * (24 * n + 3 * k);
            q6k_codes4(load512(p), load512(p + 64), load512(p + 128), &L->c[32 * n + k],
                       &L->c[32 * n + 8 + k], &L->c[32 * n + 16 + k], &L->c[32 * n + 24 + k]);
        }
    }
    q6k_header(blk, &L->h);
    L->d = q6k_d(blk);
}

/* The 16 rows' term of super-block L for RN (1, 2 or 4) tokens whose q8_K blocks are y[],
 * added to sum[]: pd_q6_k_vec_dot's integers and float operations, one row per lane (each
 * code register serves all RN tokens; sub-blocks unrolled by 2, as q4k_lanes_tokens). */
INLINE512 void q6k_lanes_tokens(const struct q6k_lanes *L, const uint8_t *const *y,
                                __m512 *sum, const int RN)
{
    __m512i isum[4];
#pragma GCC unroll 4
    for (int t = 0; t < RN; t++) {
        isum[t] = _mm512_setzero_si512();
    }
#pragma GCC unroll 2
    for (int j = 0; j < 16; j++) {
        __m512i s[4];
#pragma GCC unroll 4
        for (int t = 0; t < RN; t++) {
            s[t] = _mm512_setzero_si512();
        }
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
#pragma GCC unroll 4
            for (int t = 0; t < RN; t++) {
                int32_t x;
                memcpy(&x, y[t] + Q8_K_QS + 16 * j + 4 * u, 4);
                s[t] = _mm512_dpbusd_epi32(s[t], L->c[4 * j + u], _mm512_set1_epi32(x));
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < RN; t++) {
            isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s[t], L->h.sc[j]));
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < RN; t++) {
        sum[t] = q6k_finish(&L->h, L->d, y[t], isum[t], sum[t]);
    }
}

/* Rows [r0, r0 + 16) of packed weights for every token, written to y[t * y_stride + r -
 * r0]: super-block by super-block, each laid out once for up to Q6K_LANES_TOK tokens. */
INLINE512 void q6k_lanes_block(const struct pd_gemm_args *g, size_t r0, float *y,
                               size_t y_stride)
{
    struct q6k_lanes L;
    __m512 sum[Q6K_LANES_TOK];
    size_t nsb = g->n / PD_QK_K;
    const uint8_t *blk = g->w + r0 * g->w_stride;
    for (size_t t0 = 0; t0 < g->n_tok; t0 += Q6K_LANES_TOK) {
        size_t nt = g->n_tok - t0 < Q6K_LANES_TOK ? g->n_tok - t0 : Q6K_LANES_TOK;
        for (size_t t = 0; t < nt; t++) {
            sum[t] = _mm512_setzero_ps();
        }
        for (size_t i = 0; i < nsb; i++) {
            const uint8_t *b = blk + i * Q6K_PACKED;
            if (t0 == 0) {
                prefetch_packed((uintptr_t)b + Q6K_PACKED, Q6K_PACKED, false);
            }
            q6k_lanes_load(b, &L);
            const uint8_t *xb = g->x + t0 * g->x_stride + i * Q8_K_BYTES;
            LANES_TOKENS(q6k_lanes_tokens, &L, xb, g->x_stride, nt, sum);
        }
        for (size_t t = 0; t < nt; t++) {
            _mm512_storeu_ps(y + (t0 + t) * y_stride, sum[t]);
        }
    }
}

#undef LANES_TOKENS

/* Tokens [t0, t0 + RN) (RN <= 4; decode, small batches): the codes built in registers
 * as the packed stream is read, each serving the RN tokens (q6k_lanes_tokens' integers and
 * float operations, so bit-identical to it); the first pass fetches ahead as
 * q4k_packed_one does (0.8 GB q6_K model: +2.5% from L2). */
INLINE512 void q6k_packed_few(const struct pd_gemm_args *g, size_t r0, size_t t0, float *y,
                              size_t y_stride, const int RN)
{
    __m512 sum[4];
    const uint8_t *yt[4];
#pragma GCC unroll 4
    for (int t = 0; t < RN; t++) {
        sum[t] = _mm512_setzero_ps();
        yt[t] = g->x + (t0 + (size_t)t) * g->x_stride;
    }
    size_t nsb = g->n / PD_QK_K;
    const uint8_t *blk = g->w + r0 * g->w_stride;
    const bool l2 = pd_pf_l2(g);
    const uintptr_t ahead = kq_pf_ahead(l2, Q6K_PACKED);
    for (size_t i = 0; i < nsb; i++) {
        const uint8_t *b = blk + i * Q6K_PACKED;
        if (t0 == 0) {
            prefetch_packed((uintptr_t)b + ahead, Q6K_PACKED, l2);
        }
        struct q6k_head H;
        q6k_header(b, &H);
        __m512i isum[4];
#pragma GCC unroll 4
        for (int t = 0; t < RN; t++) {
            isum[t] = _mm512_setzero_si512();
        }
#pragma GCC unroll 2
        for (int n = 0; n < 2; n++) {
#pragma GCC unroll 2
            for (int kk = 0; kk < 2; kk++) {
                /* sub-blocks 8 n + 2 Q + kk of the four quarters Q */
                __m512i s[4][4];
#pragma GCC unroll 4
                for (int Q = 0; Q < 4; Q++) {
#pragma GCC unroll 4
                    for (int t = 0; t < RN; t++) {
                        s[Q][t] = _mm512_setzero_si512();
                    }
                }
#pragma GCC unroll 4
                for (int k = 4 * kk; k < 4 * kk + 4; k++) {
                    const uint8_t *p = b + Q6K_CODES_AT + 64 * (24 * n + 3 * k);
                    __m512i c[4];
                    q6k_codes4(load512(p), load512(p + 64), load512(p + 128), &c[0], &c[1],
                               &c[2], &c[3]);
#pragma GCC unroll 4
                    for (int Q = 0; Q < 4; Q++) {
#pragma GCC unroll 4
                        for (int t = 0; t < RN; t++) {
                            int32_t x;
                            memcpy(&x, yt[t] + i * Q8_K_BYTES + Q8_K_QS + 4 * (32 * n + 8 * Q + k),
                                   4);
                            s[Q][t] = _mm512_dpbusd_epi32(s[Q][t], c[Q], _mm512_set1_epi32(x));
                        }
                    }
                }
#pragma GCC unroll 4
                for (int Q = 0; Q < 4; Q++) {
#pragma GCC unroll 4
                    for (int t = 0; t < RN; t++) {
                        isum[t] = _mm512_add_epi32(
                            isum[t], _mm512_mullo_epi32(s[Q][t], H.sc[8 * n + 2 * Q + kk]));
                    }
                }
            }
        }
        __m512 d = q6k_d(b);
#pragma GCC unroll 4
        for (int t = 0; t < RN; t++) {
            sum[t] = q6k_finish(&H, d, yt[t] + i * Q8_K_BYTES, isum[t], sum[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < RN; t++) {
        _mm512_storeu_ps(y + (t0 + (size_t)t) * y_stride, sum[t]);
    }
}

/* Fewer tokens than this take q6k_packed_few in passes of 4 (the lanes kernel's layout
 * costs more than it saves below: 2 to 8 tokens of an 8960 x 1536 matrix ran at half
 * the tiles' rate through it). */
#define Q6K_LANES_MIN_TOK 16

static AVX512_FN void q6k_packed_rows(const struct pd_gemm_args *g, size_t r0, float *y,
                                      size_t y_stride)
{
    if (g->n_tok >= Q6K_LANES_MIN_TOK) {
        q6k_lanes_block(g, r0, y, y_stride);
        return;
    }
    size_t t0 = 0;
    for (; t0 + 3 <= g->n_tok; t0 += 3) {
        q6k_packed_few(g, r0, t0, y, y_stride, 3);
    }
    switch (g->n_tok - t0) {
    case 1: q6k_packed_few(g, r0, t0, y, y_stride, 1); break;
    case 2: q6k_packed_few(g, r0, t0, y, y_stride, 2); break;
    default: break;
    }
}

/* ---- the 32-element types, rows in lanes ------------------------------------------------ */

/* The packed layout (avx512_q8_0_pack, avx512_q4_0_pack, ... q5_1): each block of 16 rows
 * is laid out group by group, a group being 2 blocks of the 16 rows (32 blocks' bytes,
 * whole 64-byte registers: q4_0 576, q4_1 640, q5_0 704, q5_1 768, q8_0 1088; the last
 * group of an odd block count 1 block, half that). In a group of nk blocks: the 16 rows'
 * half scales d of block k at 32 k; for q4_1 and q5_1 their half mins m at 32 nk + 32 k;
 * for q5_0 and q5_1 one register of fifth bits per block (lane r: row r's qh, its bits
 * rearranged, q_0_pack_qh); then one register per 4 code bytes of each row, lane r
 * holding row r's bytes 4 j .. 4 j + 3 of block k in register R k + j, R the block's code
 * registers (nibble types 4: each byte element l in its low nibble, l + 16 in its high
 * one; q8_0 8: byte l element l, stored + 128 (w ^ 0x80) as vpdpbusd's unsigned
 * operand). The same number of bytes as the 16 rows, in the same place as a whole; rows
 * past the last whole block stay as they were. */
INLINE512 size_t q_0_group(const enum pd_dtype T)
{
    return 32 * q_0_bytes(T);
}

/* Code registers per block of the packed layout (4 or 8). */
INLINE512 size_t q_0_regs(const enum pd_dtype T)
{
    return T == PD_DTYPE_Q8_0 ? 8 : 4;
}

/* The weights' code offset the activation sums take away (q4_0 8, q5_0 16, q8_0 128; the
 * types with a min none). */
INLINE512 int32_t q_0_offset(const enum pd_dtype T)
{
    return T == PD_DTYPE_Q8_0 ? 128 : T == PD_DTYPE_Q4_0 ? 8 : T == PD_DTYPE_Q5_0 ? 16 : 0;
}

INLINE512 bool q_0_min(const enum pd_dtype T)
{
    return T == PD_DTYPE_Q4_1 || T == PD_DTYPE_Q5_1;
}

INLINE512 bool q_0_five(const enum pd_dtype T)
{
    return T == PD_DTYPE_Q5_0 || T == PD_DTYPE_Q5_1;
}

/* Where a group of nk blocks keeps its mins, fifth bits and codes (bytes from its
 * start). */
INLINE512 size_t q_0_m_at(size_t nk)
{
    return 32 * nk;
}

INLINE512 size_t q_0_qh_at(size_t nk, const enum pd_dtype T)
{
    return 32 * nk * (q_0_min(T) ? 2 : 1);
}

INLINE512 size_t q_0_codes_at(size_t nk, const enum pd_dtype T)
{
    return q_0_qh_at(nk, T) + (q_0_five(T) ? 64 * nk : 0);
}

/* A block's fifth bits (bit e: element e) rearranged so that each code register takes
 * its bits with one shift: element 4 j + l (j, l < 4) to bit 8 l + j, element 16 + 4 j +
 * l to bit 8 l + 4 + j (q_0_codes). */
static uint32_t q_0_pack_qh(uint32_t qh)
{
    uint32_t out = 0;
    for (uint32_t e = 0; e < 32; e++) {
        uint32_t j = (e % 16) / 4, l = e % 4;
        out |= ((qh >> e) & 1u) << (8 * l + (e < 16 ? 0 : 4) + j);
    }
    return out;
}

/* The activation sums the packed product keeps on the stack (PD_PACKED_SX): a pass takes
 * as many tokens as fit, at most Q_0_TOK. */
#define Q_0_TOK 64

/* Whether rows `stride` bytes apart are too long for the packed product (its activation
 * sums' stack room): such matrices stay in the file's layout, for the tiles. */
INLINE512 bool q_0_too_long(size_t stride, const enum pd_dtype T)
{
    return stride / q_0_bytes(T) > PD_PACKED_SX;
}

static AVX512_FN void q_0_pack(const uint8_t *w, size_t rows, size_t row_bytes, uint8_t *out,
                               const enum pd_dtype T)
{
    const size_t bytes = q_0_bytes(T), regs = q_0_regs(T);
    if (q_0_too_long(row_bytes, T)) {
        memcpy(out, w, rows * row_bytes);
        return;
    }
    const size_t qh = q_0_min(T) ? 4 : 2, qs = qh + (q_0_five(T) ? 4 : 0);
    const uint8_t flip = T == PD_DTYPE_Q8_0 ? 0x80 : 0;
    size_t nb = row_bytes / bytes;
    size_t whole = rows / 16 * 16;
    for (size_t r0 = 0; r0 < whole; r0 += 16) {
        for (size_t b = 0; b < nb; b += 2) {
            size_t nk = b + 1 < nb ? 2 : 1;
            uint8_t *o = out + r0 * row_bytes + b / 2 * q_0_group(T);
            uint8_t *codes = o + q_0_codes_at(nk, T);
            for (size_t k = 0; k < nk; k++) {
                for (size_t r = 0; r < 16; r++) {
                    const uint8_t *src = w + (r0 + r) * row_bytes + (b + k) * bytes;
                    memcpy(o + 32 * k + 2 * r, src, 2);
                    if (q_0_min(T)) {
                        memcpy(o + q_0_m_at(nk) + 32 * k + 2 * r, src + 2, 2);
                    }
                    if (q_0_five(T)) {
                        uint32_t h;
                        memcpy(&h, src + qh, 4);
                        h = q_0_pack_qh(h);
                        memcpy(o + q_0_qh_at(nk, T) + 64 * k + 4 * r, &h, 4);
                    }
                    for (size_t j = 0; j < regs; j++) {
                        for (size_t l = 0; l < 4; l++) {
                            codes[64 * (regs * k + j) + 4 * r + l] = src[qs + 4 * j + l] ^ flip;
                        }
                    }
                }
            }
        }
    }
    memcpy(out + whole * row_bytes, w + whole * row_bytes, (rows - whole) * row_bytes);
}

#define Q_0_PACK(name, T)                                                                 \
    static AVX512_FN void name(const uint8_t *w, size_t rows, size_t row_bytes,         \
                               uint8_t *out)                                             \
    {                                                                                    \
        q_0_pack(w, rows, row_bytes, out, T);                                            \
    }
Q_0_PACK(avx512_q8_0_pack, PD_DTYPE_Q8_0)
Q_0_PACK(avx512_q4_0_pack, PD_DTYPE_Q4_0)
Q_0_PACK(avx512_q5_0_pack, PD_DTYPE_Q5_0)
Q_0_PACK(avx512_q4_1_pack, PD_DTYPE_Q4_1)
Q_0_PACK(avx512_q5_1_pack, PD_DTYPE_Q5_1)
#undef Q_0_PACK

/* Bytes ahead a single token's product fetches (9 KiB; past the block's and the matrix's
 * end too): 2 q4_0 groups ahead left the stream waiting on memory (one token of 16384 x
 * 8192, packed: 38-41 GMAC/s against 52-65 at 16 and 32 ahead). */
#define Q_0_PF_AHEAD (16 * 576)

/* Codes j (elements 4 j .. 4 j + 3) or, hi, 16 + 4 j .. of the 16 rows' block whose code
 * registers start at c (fifth bits qh, rearranged by q_0_pack_qh), as vpdpbusd's
 * unsigned operand. */
INLINE512 __m512i q_0_codes(const uint8_t *c, __m512i qh, int j, bool hi,
                            const enum pd_dtype T)
{
    if (T == PD_DTYPE_Q8_0) {
        return load512(c + 64 * (4 * (int)hi + j));
    }
    __m512i v = load512(c + 64 * j);
    v = _mm512_and_si512(hi ? _mm512_srli_epi16(v, 4) : v, _mm512_set1_epi8(0x0F));
    if (q_0_five(T)) { /* bit j (hi: 4 + j) of each byte to bit 4 */
        __m512i b = hi ? _mm512_srli_epi32(qh, (unsigned)j) : _mm512_slli_epi32(qh, 4u - (unsigned)j);
        v = _mm512_or_si512(v, _mm512_and_si512(b, _mm512_set1_epi8(0x10)));
    }
    return v;
}

/* The activation block's layout: q8_1 (d, s, codes) against the types with a min, else
 * q8_0 (d, codes). */
INLINE512 size_t q_0_xbytes(const enum pd_dtype T)
{
    return q_0_min(T) ? Q8_1_BYTES : Q8_0_BYTES;
}

INLINE512 size_t q_0_xq(const enum pd_dtype T)
{
    return q_0_min(T) ? 4 : 2;
}

/* sum + one block's term for the 16 rows, lane by lane the portable dot's float steps
 * (q32_vec_dot): (float)isum * (d_w * d_x), or with a min (d_w * d_x) * (float)isum +
 * m_w * s_x, each product rounded on its own, so bit-identical to it. x: the token's
 * activation block. */
INLINE512 __m512 q_0_term(__m512 sum, __m512i isum, __m512 d, __m512 m, const uint8_t *x,
                          const enum pd_dtype T)
{
    __m512 dd = _mm512_mul_ps(d, _mm512_set1_ps(_cvtsh_ss(load_u16(x))));
    __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), dd);
    if (q_0_min(T)) {
        t = _mm512_add_ps(t, _mm512_mul_ps(m, _mm512_set1_ps(_cvtsh_ss(load_u16(x + 2)))));
    }
    return _mm512_add_ps(sum, t);
}

/* One block (blk) of the 16 rows (codes lo/hi, scales d, mins m) for tokens [t0, t0 +
 * nt): each lane the exact sum of (c - offset) * x over the block, vpdpbusd of the
 * unsigned codes against the token's broadcast activation bytes from an accumulator at
 * -offset * sum(x), then the portable dot's float steps (q_0_term). */
INLINE512 void q_0_block_tokens(const struct pd_gemm_args *g, const __m512i *lo,
                                const __m512i *hi, __m512 d, __m512 m, size_t t0, size_t nt,
                                size_t blk, const int32_t *sx, size_t nb, __m512 *sum,
                                const enum pd_dtype T)
{
    const size_t xq = q_0_xq(T);
    for (size_t t = 0; t < nt; t++) {
        const uint8_t *x = g->x + (t0 + t) * g->x_stride + blk * q_0_xbytes(T);
        __m512i s0 = q_0_offset(T) ? _mm512_set1_epi32(-q_0_offset(T) * sx[t * nb + blk])
                                   : _mm512_setzero_si512();
        __m512i s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            int32_t xl, xh;
            memcpy(&xl, x + xq + 4 * j, 4);
            memcpy(&xh, x + xq + 16 + 4 * j, 4);
            s0 = _mm512_dpbusd_epi32(s0, lo[j], _mm512_set1_epi32(xl));
            s1 = _mm512_dpbusd_epi32(s1, hi[j], _mm512_set1_epi32(xh));
        }
        sum[t] = q_0_term(sum[t], _mm512_add_epi32(s0, s1), d, m, x, T);
    }
}

/* Block k of the group at gp (of nk blocks): its scales, mins, fifth bits and code
 * registers' start. */
INLINE512 void q_0_block_at(const uint8_t *gp, size_t nk, size_t k, __m512 *d, __m512 *m,
                            __m512i *qh, const uint8_t **c, const enum pd_dtype T)
{
    *d = _mm512_cvtph_ps(load256(gp + 32 * k));
    *m = q_0_min(T) ? _mm512_cvtph_ps(load256(gp + q_0_m_at(nk) + 32 * k)) : _mm512_setzero_ps();
    *qh = q_0_five(T) ? load512(gp + q_0_qh_at(nk, T) + 64 * k) : _mm512_setzero_si512();
    *c = gp + q_0_codes_at(nk, T) + 64 * q_0_regs(T) * k;
}

/* One token (decode): q_0_packed_rows with the sum in a register and each block's
 * products in four independent chains of two vpdpbusd (the integers are the same:
 * exact; 69 -> 77 GMAC/s for one token of a q4_0 4096 x 4096 against two chains). */
INLINE512 void q_0_packed_one(const struct pd_gemm_args *g, size_t b, size_t t0,
                              const int32_t *sx, float *y, const enum pd_dtype T)
{
    const size_t group = q_0_group(T), xq = q_0_xq(T);
    size_t nb = g->n / PD_QK8_0;
    const uint8_t *blk16 = g->w + b * g->w_stride;
    const uint8_t *x = g->x + t0 * g->x_stride;
    __m512 sum = _mm512_setzero_ps();
    for (size_t blk = 0; blk < nb; blk += 2) {
        const uint8_t *gp = blk16 + blk / 2 * group;
        const uint8_t *pf = gp + Q_0_PF_AHEAD;
        for (size_t l = 0; l < group / 64; l++) {
            _mm_prefetch((const char *)pf + 64 * l, _MM_HINT_T0);
        }
        size_t nk = blk + 1 < nb ? 2 : 1;
        for (size_t k = 0; k < nk; k++) {
            __m512 d, m;
            __m512i qh;
            const uint8_t *c;
            q_0_block_at(gp, nk, k, &d, &m, &qh, &c, T);
            const uint8_t *xb = x + (blk + k) * q_0_xbytes(T);
            __m512i s[4] = {q_0_offset(T) ? _mm512_set1_epi32(-q_0_offset(T) * sx[blk + k])
                                          : _mm512_setzero_si512(),
                            _mm512_setzero_si512(), _mm512_setzero_si512(),
                            _mm512_setzero_si512()};
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                int32_t xl, xh;
                memcpy(&xl, xb + xq + 4 * j, 4);
                memcpy(&xh, xb + xq + 16 + 4 * j, 4);
                s[j % 2] = _mm512_dpbusd_epi32(s[j % 2], q_0_codes(c, qh, j, false, T),
                                               _mm512_set1_epi32(xl));
                s[2 + j % 2] = _mm512_dpbusd_epi32(s[2 + j % 2], q_0_codes(c, qh, j, true, T),
                                                   _mm512_set1_epi32(xh));
            }
            __m512i t = _mm512_add_epi32(_mm512_add_epi32(s[0], s[1]),
                                         _mm512_add_epi32(s[2], s[3]));
            sum = q_0_term(sum, t, d, m, xb, T);
        }
    }
    _mm512_storeu_ps(y, sum);
}

/* Rows [b, b + 16) of packed weights for tokens [t0, t0 + nt) (nt <= Q_0_TOK, sx their
 * activation sums), to y[t * y_stride + r - b]: group by group, each block's codes
 * loaded (nibble types: unpacked) once for all the tokens, one vpdpbusd per 4 codes of
 * all 16 rows, no horizontal sums. The group two ahead is fetched. */
INLINE512 void q_0_packed_rows(const struct pd_gemm_args *g, size_t b, size_t t0, size_t nt,
                               const int32_t *sx, float *y, size_t y_stride,
                               const enum pd_dtype T)
{
    if (nt == 1) {
        q_0_packed_one(g, b, t0, sx, y, T);
        return;
    }
    const size_t group = q_0_group(T);
    size_t nb = g->n / PD_QK8_0;
    const uint8_t *blk16 = g->w + b * g->w_stride;
    __m512 sum[Q_0_TOK];
    for (size_t t = 0; t < nt; t++) {
        sum[t] = _mm512_setzero_ps();
    }
    for (size_t blk = 0; blk < nb; blk += 2) {
        const uint8_t *gp = blk16 + blk / 2 * group;
        const uint8_t *pf = gp + 2 * group;
        for (size_t l = 0; l < group / 64; l++) {
            _mm_prefetch((const char *)pf + 64 * l, _MM_HINT_T0);
        }
        size_t nk = blk + 1 < nb ? 2 : 1;
        for (size_t k = 0; k < nk; k++) {
            __m512 d, m;
            __m512i qh, lo[4], hi[4];
            const uint8_t *c;
            q_0_block_at(gp, nk, k, &d, &m, &qh, &c, T);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                lo[j] = q_0_codes(c, qh, j, false, T);
                hi[j] = q_0_codes(c, qh, j, true, T);
            }
            q_0_block_tokens(g, lo, hi, d, m, t0, nt, blk + k, sx, nb, sum, T);
        }
    }
    for (size_t t = 0; t < nt; t++) {
        _mm512_storeu_ps(y + t * y_stride, sum[t]);
    }
}

/* Rows [r0, r1) of packed weights of a 32-element type in lanes, 16 rows at a time, the
 * tokens in passes that share one computation of their activation sums (a block only
 * partly in [r0, r1) computed whole into a scratch row per token, the asked rows copied);
 * returns the first row it left (rows past the last whole block, and all of them for
 * weights in the file's layout, rows too long included) for the tiles. */
INLINE512 size_t q_0_packed_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1,
                                 const enum pd_dtype T)
{
    size_t nb = g->n / PD_QK8_0, whole = g->w_rows / 16 * 16;
    if (!g->packed || q_0_too_long(g->w_stride, T) || r0 >= whole) {
        return r0;
    }
    int32_t sx[PD_PACKED_SX];
    float tmp[Q_0_TOK * 16];
    size_t pass = PD_PACKED_SX / nb < Q_0_TOK ? PD_PACKED_SX / nb : Q_0_TOK;
    size_t end = r1 < whole ? r1 : whole;
    for (size_t t0 = 0; t0 < g->n_tok; t0 += pass) {
        size_t nt = g->n_tok - t0 < pass ? g->n_tok - t0 : pass;
        if (q_0_offset(T)) {
            pd_avx2_q8_0_sums(g->x + t0 * g->x_stride, g->x_stride, nt, nb, sx);
        }
        for (size_t r = r0; r < end;) {
            size_t b = r / 16 * 16, e = b + 16 < end ? b + 16 : end;
            float *y = g->y + t0 * g->y_stride;
            if (r == b && e == b + 16) {
                q_0_packed_rows(g, b, t0, nt, sx, y + b, g->y_stride, T);
            } else {
                q_0_packed_rows(g, b, t0, nt, sx, tmp, 16, T);
                for (size_t t = 0; t < nt; t++) {
                    memcpy(y + t * g->y_stride + r, tmp + t * 16 + (r - b),
                           (e - r) * sizeof(float));
                }
            }
            r = e;
        }
    }
    return end;
}

/* ---- tiling over the whole product ------------------------------------------------------ */

/* Runs TILE(g, r, t, RM, RN) over rows [r0, r1) x all tokens, in blocks of 16 rows (so
 * a block's weights stay in the near caches while every token passes over them): 4 x 4
 * tiles over groups of 4 tokens, the token remainder as 16 x 1, 8 x 2 or 4 x 3 tiles;
 * rows past the last whole block in 4-row, then 1-row tiles. */
#define GEMM_TAIL(g, TILE, r, RM, nt)                                                     \
    do {                                                                                 \
        size_t t_ = (nt) / 4 * 4;                                                        \
        switch ((nt) - t_) {                                                             \
        case 1:                                                                          \
            TILE(g, r, t_, RM, 1);                                                       \
            break;                                                                       \
        case 2:                                                                          \
            for (size_t q_ = 0; q_ < (RM); q_ += 8) {                                    \
                TILE(g, (r) + q_, t_, (RM) < 8 ? (RM) : 8, 2);                           \
            }                                                                            \
            break;                                                                       \
        case 3:                                                                          \
            for (size_t q_ = 0; q_ < (RM); q_ += 4) {                                    \
                TILE(g, (r) + q_, t_, (RM) < 4 ? (RM) : 4, 3);                           \
            }                                                                            \
            break;                                                                       \
        default:                                                                         \
            break;                                                                       \
        }                                                                                \
    } while (0)

#define GEMM_ROWS(g, TILE, r, RM, nt)                                                     \
    do {                                                                                 \
        for (size_t t_ = 0; t_ + 4 <= (nt); t_ += 4) {                                   \
            for (size_t q_ = 0; q_ < (RM); q_ += 4) {                                    \
                TILE(g, (r) + q_, t_, (RM) < 4 ? (RM) : 4, 4);                           \
            }                                                                            \
        }                                                                                \
        GEMM_TAIL(g, TILE, r, RM, nt);                                                   \
    } while (0)

/* Each 16-row block fetches the next block's weights while its token groups run (a
 * block's rows are contiguous and short: the hardware prefetcher alone leaves the tiles
 * waiting on the shared cache); a single token's 16 x 1 tiles fetch them step by step
 * instead (prefetch_next_rows: a burst of a whole block stalled decode). */
#define GEMM_DRIVER(name, TILE)                                                           \
    static AVX512_FN void name(const struct pd_gemm_args *g, size_t r0, size_t r1)       \
    {                                                                                    \
        size_t nt = g->n_tok, r = r0;                                                    \
        size_t groups = nt / 4 > 0 ? nt / 4 : 1;                                         \
        for (; r + 16 <= r1; r += 16) {                                                  \
            size_t next = r + 32 <= r1 ? 16 : r1 - (r + 16);                             \
            const uint8_t *nw = g->w + (r + 16) * g->w_stride;                           \
            size_t t_ = 0;                                                               \
            for (size_t grp = 0; grp < groups; grp++, t_ += 4) {                         \
                if (nt >= 4) {                                                           \
                    prefetch_part(nw, next * g->w_stride, grp, groups);                  \
                }                                                                        \
                if (t_ + 4 <= nt) {                                                      \
                    for (size_t q_ = 0; q_ < 16; q_ += 4) {                              \
                        TILE(g, r + q_, t_, 4, 4);                                       \
                    }                                                                    \
                }                                                                        \
            }                                                                            \
            GEMM_TAIL(g, TILE, r, 16, nt);                                               \
        }                                                                                \
        for (; r + 4 <= r1; r += 4) {                                                    \
            GEMM_ROWS(g, TILE, r, 4, nt);                                                \
        }                                                                                \
        for (; r < r1; r++) {                                                            \
            GEMM_ROWS(g, TILE, r, 1, nt);                                                \
        }                                                                                \
    }

#define F16_TILE(g, r, t, RM, RN) half_tile(g, r, t, false, RM, RN, HALF_FILE)
#define BF16_TILE(g, r, t, RM, RN) half_tile(g, r, t, true, RM, RN, HALF_FILE)
#define F16P_TILE(g, r, t, RM, RN) half_tile(g, r, t, false, RM, RN, HALF_PACKED)
#define BF16P_TILE(g, r, t, RM, RN) half_tile(g, r, t, true, RM, RN, HALF_PACKED)
#define F16W_TILE(g, r, t, RM, RN) half_tile(g, r, t, false, RM, RN, HALF_WIDE)
#define BF16W_TILE(g, r, t, RM, RN) half_tile(g, r, t, true, RM, RN, HALF_WIDE)

#define Q8_0_TILE(g, r, t, RM, RN) q_0_tile(g, r, t, PD_DTYPE_Q8_0, RM, RN)
#define Q4_0_TILE(g, r, t, RM, RN) q_0_tile(g, r, t, PD_DTYPE_Q4_0, RM, RN)
#define Q5_0_TILE(g, r, t, RM, RN) q_0_tile(g, r, t, PD_DTYPE_Q5_0, RM, RN)
#define Q4_1_TILE(g, r, t, RM, RN) q_0_tile(g, r, t, PD_DTYPE_Q4_1, RM, RN)
#define Q5_1_TILE(g, r, t, RM, RN) q_0_tile(g, r, t, PD_DTYPE_Q5_1, RM, RN)
GEMM_DRIVER(q8_0_tiles, Q8_0_TILE)
GEMM_DRIVER(q4_0_tiles, Q4_0_TILE)
GEMM_DRIVER(q5_0_tiles, Q5_0_TILE)
GEMM_DRIVER(q4_1_tiles, Q4_1_TILE)
GEMM_DRIVER(q5_1_tiles, Q5_1_TILE)
#define Q4_K_TILE(g, r, t, RM, RN) q4_k_tile(g, r, t, false, RM, RN)
#define Q5_K_TILE(g, r, t, RM, RN) q4_k_tile(g, r, t, true, RM, RN)
GEMM_DRIVER(q4_k_tiles, Q4_K_TILE)
GEMM_DRIVER(q5_k_tiles, Q5_K_TILE)

/* q5_K: packed weights in lanes, 16 rows at a time; the rest in tiles, except that a
 * single token keeps the inherited AVX2 dot product per row (the 16 x 1 tile was 17%
 * slower on an 8192 x 4096 matrix). */
static AVX512_FN void avx512_q5_k_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    r0 = g->packed ? packed_blocks(g, r0, r1, q5k_packed_rows) : r0;
    if (r0 >= r1) {
        return;
    }
    if (g->n_tok == 1) {
        pd_vec_dot_fn dot = pd_simd_ops_avx2.vec_dot[PD_DTYPE_Q5_K];
        for (size_t r = r0; r < r1; r++) {
            g->y[r] = dot(g->w + r * g->w_stride, g->x, g->n);
        }
        return;
    }
    q5_k_tiles(g, r0, r1);
}
GEMM_DRIVER(q6_k_tiles, q6_k_tile)

/* q6_K: packed weights in lanes, 16 rows at a time; rows past the last whole block and
 * weights in the file's layout in tiles. */
static AVX512_FN void avx512_q6_k_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    size_t r = g->packed ? packed_blocks(g, r0, r1, q6k_packed_rows) : r0;
    if (r < r1) {
        q6_k_tiles(g, r, r1);
    }
}

/* q4_K: rows in lanes in blocks of 16 rows, the tiles for the rows past the last whole
 * block (and below Q4K_LANES_MIN_TOK tokens); packed weights always in lanes. */
static AVX512_FN void avx512_q4_k_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    size_t r = r0;
    if (g->packed) {
        r = packed_blocks(g, r0, r1, q4k_packed_rows);
    } else if (g->n_tok >= Q4K_LANES_MIN_TOK) {
        for (; r + 16 <= r1; r += 16) {
            q4k_lanes_rows(g, r, r1);
        }
    }
    if (r < r1) {
        q4_k_tiles(g, r, r1);
    }
}

/* The 32-element types: packed weights in lanes (q_0_packed_gemm), the rest in tiles. */
#define Q_0_GEMM(name, tiles, T)                                                          \
    static AVX512_FN void name(const struct pd_gemm_args *g, size_t r0, size_t r1)       \
    {                                                                                    \
        r0 = q_0_packed_gemm(g, r0, r1, T);                                              \
        if (r0 < r1) {                                                                   \
            tiles(g, r0, r1);                                                            \
        }                                                                                \
    }
Q_0_GEMM(avx512_q8_0_gemm, q8_0_tiles, PD_DTYPE_Q8_0)
Q_0_GEMM(avx512_q4_0_gemm, q4_0_tiles, PD_DTYPE_Q4_0)
Q_0_GEMM(avx512_q5_0_gemm, q5_0_tiles, PD_DTYPE_Q5_0)
Q_0_GEMM(avx512_q4_1_gemm, q4_1_tiles, PD_DTYPE_Q4_1)
Q_0_GEMM(avx512_q5_1_gemm, q5_1_tiles, PD_DTYPE_Q5_1)
#undef Q_0_GEMM
GEMM_DRIVER(f16_tiles, F16_TILE)
GEMM_DRIVER(bf16_tiles, BF16_TILE)

/* Packed f16/bf16 weights (avx512_f16_pack) when the rows are whole steps of 32 bytes
 * apart (else the pack copied them as they are): each block of 16 rows holds, per step of
 * 16 elements, the 16 rows' 32 bytes of it (512 bytes; the last step of a row shorter
 * than its stride, its first bytes), steps in order, so decode reads one stream instead
 * of 16 rows at once (one token of 4096 x 4096, one thread: 15 -> 35-45 GB/s). Rows past
 * the last whole block stay as they were. */
INLINE512 bool half_packs(size_t row_bytes)
{
    return row_bytes % 32 == 0;
}

INLINE512 bool half_packed(const struct pd_gemm_args *g)
{
    return g->packed && half_packs(g->w_stride);
}

static AVX512_FN void avx512_f16_pack(const uint8_t *w, size_t rows, size_t row_bytes,
                                      uint8_t *out)
{
    size_t whole = half_packs(row_bytes) ? rows / 16 * 16 : 0;
    for (size_t r0 = 0; r0 < whole; r0 += 16) {
        for (size_t c = 0; c < row_bytes / 32; c++) {
            for (size_t r = 0; r < 16; r++) {
                memcpy(out + r0 * row_bytes + 512 * c + 32 * r,
                       w + (r0 + r) * row_bytes + 32 * c, 32);
            }
        }
    }
    memcpy(out + whole * row_bytes, w + whole * row_bytes, (rows - whole) * row_bytes);
}

/* The 16 rows of the packed block at row b for every token, to y[t * y_stride + r - b]:
 * the tiles of GEMM_DRIVER's 16-row blocks over the block's layout, so bit-identical to
 * them, and as there the next block fetched while the token groups run. */
#define HALF_PACKED_BLOCK(g, TILE)                                                        \
    do {                                                                                 \
        size_t nt = (g)->n_tok, groups = nt / 4 > 0 ? nt / 4 : 1, t_ = 0;                 \
        for (size_t grp = 0; grp < groups; grp++, t_ += 4) {                             \
            if (nt >= 4) { /* past the matrix too: never faults */                       \
                prefetch_part((g)->w + 16 * (g)->w_stride, 16 * (g)->w_stride, grp, groups); \
            }                                                                            \
            if (t_ + 4 <= nt) {                                                          \
                for (size_t q_ = 0; q_ < 16; q_ += 4) {                                  \
                    TILE(g, q_, t_, 4, 4);                                               \
                }                                                                        \
            }                                                                            \
        }                                                                                \
        GEMM_TAIL(g, TILE, 0, 16, nt);                                                   \
    } while (0)

INLINE512 void half_packed_rows(const struct pd_gemm_args *g, size_t b, float *y,
                                size_t y_stride, const bool bf16)
{
    struct pd_gemm_args h = *g;
    h.w = g->w + b * g->w_stride;
    h.w_rows = 16;
    h.y = y;
    h.y_stride = y_stride;
    if (bf16) {
        HALF_PACKED_BLOCK(&h, BF16P_TILE);
    } else {
        HALF_PACKED_BLOCK(&h, F16P_TILE);
    }
}
#undef HALF_PACKED_BLOCK

static AVX512_FN void f16_packed_rows(const struct pd_gemm_args *g, size_t b, float *y,
                                      size_t y_stride)
{
    half_packed_rows(g, b, y, y_stride, false);
}

static AVX512_FN void bf16_packed_rows(const struct pd_gemm_args *g, size_t b, float *y,
                                       size_t y_stride)
{
    half_packed_rows(g, b, y, y_stride, true);
}

/* Prefill (4 tokens or more): each whole 16-row block from r0 (the file's layout) or
 * from r0 on a block boundary (the packed one) is widened to floats once, into wf (per
 * step of 16 elements the 16 rows' 16 floats, zero past n), and the token groups' tiles
 * read it there, converting only the activations: the tiles' operations in the same
 * order, so the same bits as over the halves. Returns the first row not computed. */
INLINE512 size_t half_wide(const struct pd_gemm_args *g, size_t r0, size_t r1, const bool bf16)
{
    bool packed = half_packed(g);
    size_t end = pd_half_wide_end(g, r0, r1, 16, packed);
    size_t steps = (g->n + 15) / 16;
    float *wf = end > r0 ? aligned_alloc(64, steps * 16 * 16 * sizeof(float)) : NULL;
    if (!wf) {
        return r0; /* the tiles over the halves */
    }
    size_t nt = g->n_tok, groups = nt / 4;
    for (size_t r = r0; r < end; r += 16) {
        for (size_t st = 0; st < steps; st++) {
            size_t k = 16 * st, rest = g->n - k < 16 ? g->n - k : 16;
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++) {
                const uint8_t *src = packed ? g->w + r * g->w_stride + 32 * k + 32 * (size_t)q
                                            : g->w + (r + (size_t)q) * g->w_stride + 2 * k;
                __m512 v = rest == 16 ? half16(src, bf16) : half_tail(src, rest, bf16);
                _mm512_store_ps(wf + 256 * st + 16 * (size_t)q, v);
            }
        }
        struct pd_gemm_args h = pd_half_wide_args(g, wf, r, 16);
        const uint8_t *nw = g->w + (r + 16) * g->w_stride; /* never faults past the end */
        for (size_t grp = 0, t_ = 0; grp < groups; grp++, t_ += 4) {
            prefetch_part(nw, 16 * g->w_stride, grp, groups);
            for (size_t q_ = 0; q_ < 16; q_ += 4) {
                if (bf16) {
                    BF16W_TILE(&h, q_, t_, 4, 4);
                } else {
                    F16W_TILE(&h, q_, t_, 4, 4);
                }
            }
        }
        if (bf16) {
            GEMM_TAIL(&h, BF16W_TILE, 0, 16, nt);
        } else {
            GEMM_TAIL(&h, F16W_TILE, 0, 16, nt);
        }
    }
    free(wf);
    return end;
}

static AVX512_FN void avx512_f16_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    r0 = half_wide(g, r0, r1, false);
    r0 = half_packed(g) ? packed_blocks(g, r0, r1, f16_packed_rows) : r0;
    if (r0 < r1) {
        f16_tiles(g, r0, r1);
    }
}

static AVX512_FN void avx512_bf16_gemm(const struct pd_gemm_args *g, size_t r0, size_t r1)
{
    r0 = half_wide(g, r0, r1, true);
    r0 = half_packed(g) ? packed_blocks(g, r0, r1, bf16_packed_rows) : r0;
    if (r0 < r1) {
        bf16_tiles(g, r0, r1);
    }
}

const struct pd_simd_ops pd_simd_ops_avx512_own = {
    .level = PD_SIMD_AVX512,
    .from_f32 = {
        [PD_DTYPE_Q8_0] = avx512_q8_0_from_f32,
        [PD_DTYPE_Q8_K] = avx512_q8_k_from_f32,
    },
    .gemm = {
        [PD_DTYPE_F16] = avx512_f16_gemm,
        [PD_DTYPE_BF16] = avx512_bf16_gemm,
        [PD_DTYPE_Q8_0] = avx512_q8_0_gemm,
        [PD_DTYPE_Q4_0] = avx512_q4_0_gemm,
        [PD_DTYPE_Q5_0] = avx512_q5_0_gemm,
        [PD_DTYPE_Q4_1] = avx512_q4_1_gemm,
        [PD_DTYPE_Q5_1] = avx512_q5_1_gemm,
        [PD_DTYPE_Q4_K] = avx512_q4_k_gemm,
        [PD_DTYPE_Q5_K] = avx512_q5_k_gemm,
        [PD_DTYPE_Q6_K] = avx512_q6_k_gemm,
    },
    .pack = {
        [PD_DTYPE_F16] = avx512_f16_pack,
        [PD_DTYPE_BF16] = avx512_f16_pack,
        [PD_DTYPE_Q8_0] = avx512_q8_0_pack,
        [PD_DTYPE_Q4_0] = avx512_q4_0_pack,
        [PD_DTYPE_Q5_0] = avx512_q5_0_pack,
        [PD_DTYPE_Q4_1] = avx512_q4_1_pack,
        [PD_DTYPE_Q5_1] = avx512_q5_1_pack,
        [PD_DTYPE_Q4_K] = avx512_q4_k_pack,
        [PD_DTYPE_Q5_K] = avx512_q5_k_pack,
        [PD_DTYPE_Q6_K] = avx512_q6_k_pack,
    },
    .attn = avx512_attn,
    .exp_sum = avx512_exp_sum,
    .swiglu = avx512_swiglu,
    .head_mean = avx512_head_mean,
    .logit_sums = avx512_logit_sums,
    .sum_sq = avx512_sum_sq,
};

#endif /* __x86_64__ */
