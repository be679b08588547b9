/* pd_quant_dev.h - the bit-level helpers the GPU kernels share with the host: half/bf16
 * conversion, GGUF block decoding, the activation quantisers (q8_0, q8_K), the per-lane
 * integer block dots and their float combines, RoPE angles, and the tie-break comparators.
 *
 * Every function here is `__host__ __device__` under nvcc and plain C elsewhere, so
 * tests/test_gpu_host.c checks each one bit-exact against the CPU engine (engine/quant.c,
 * dtype.c, forward.c, probe.c) on the host, in every CI run, and the device runs exactly
 * the same arithmetic. The formulas are the CPU engine's, operation for operation: the
 * kernels are built without FMA contraction (--fmad=false, -ffp-contract=off), so the
 * GPU differs from the CPU only in the order it sums block results (docs/gpu.md).
 *
 * Block dots are split across lanes exactly as the matvec kernel splits them: a group of
 * PD_DEV_LANES_<type> lanes covers one weight block; each lane forms exact integer partial
 * sums (pd_dev_*_lane), the group adds them (integers: any order is exact), and one lane
 * applies the block's float combine in the CPU's order (pd_dev_*_combine). So one block's
 * contribution is bit-identical to the CPU's; only the sum over blocks is reordered.
 *
 * Byte layouts are GGUF's (engine/quant.h). Loads go through byte offsets: q8_0, q4_0 and
 * q6_K blocks are only 2-byte aligned (pd_dev_ld_u32_a2), q4_K/q5_K blocks and q8_K
 * activation blocks are 4-byte aligned in ponder's device buffers (pd_dev_ld_u32_a4).
 * Little-endian host and device. Pure functions. */
#ifndef PD_QUANT_DEV_H
#define PD_QUANT_DEV_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define PD_HD __host__ __device__
#else
#define PD_HD
#endif

#ifdef __cplusplus
#define PD_DEV_INLINE static inline
#else
#define PD_DEV_INLINE static inline
#endif

/* GGUF block sizes (elements and bytes) and field offsets, as engine/quant_blocks.h. */
enum {
    PD_DEV_QK = 32,      /* q8_0 / q4_0 block */
    PD_DEV_QKK = 256,    /* K-quant super-block */
    PD_DEV_Q8_0_BYTES = 34,
    PD_DEV_Q4_0_BYTES = 18,
    PD_DEV_Q4_K_BYTES = 144,
    PD_DEV_Q5_K_BYTES = 176,
    PD_DEV_Q6_K_BYTES = 210,
    PD_DEV_Q8_K_BYTES = 292,
    PD_DEV_KQ_SCALES = 4,
    PD_DEV_Q4_K_QS = 16,
    PD_DEV_Q5_K_QH = 16,
    PD_DEV_Q5_K_QS = 48,
    PD_DEV_Q6_K_QH = 128,
    PD_DEV_Q6_K_SCALES = 192,
    PD_DEV_Q6_K_D = 208,
    PD_DEV_Q8_K_QS = 4,
    PD_DEV_Q8_K_BSUMS = 260,
};

/* Lanes per weight block in the matvec kernel (each lane covers 8 or 32 values). */
enum {
    PD_DEV_LANES_Q8_0 = 4,
    PD_DEV_LANES_Q4_0 = 4,
    PD_DEV_LANES_KQ = 8,
};

#define PD_DEV_F16_MAX 65504.0f

/* ---- scalar bits ---------------------------------------------------------------------- */

PD_HD PD_DEV_INLINE uint32_t pd_dev_f32_bits(float f)
{
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
#endif
}

PD_HD PD_DEV_INLINE float pd_dev_bits_f32(uint32_t u)
{
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

/* Half to float, bit-identical to pd_f16_to_f32 (scaling the shifted exponent+mantissa by
 * 2^112 rebiases normals and, being exact, normalises subnormals). */
PD_HD PD_DEV_INLINE float pd_dev_f16_to_f32(uint16_t h)
{
    uint32_t em = (uint32_t)(h & 0x7FFF) << 13;
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    float f = pd_dev_bits_f32(em) * 0x1p112f;
    uint32_t bits = pd_dev_f32_bits(f);
    if (em >= (0x7C00u << 13)) { /* inf / NaN keep an all-ones exponent */
        bits = em | 0x7F800000u;
    }
    return pd_dev_bits_f32(bits | sign);
}

/* Float to half, round to nearest even, bit-identical to pd_f32_to_f16 (NaN stays quiet). */
PD_HD PD_DEV_INLINE uint16_t pd_dev_f32_to_f16(float f)
{
    uint32_t x = pd_dev_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t a = x & 0x7FFFFFFF;
    if (a > 0x7F800000) {
        return (uint16_t)(sign | 0x7E00 | ((a >> 13) & 0x3FF));
    }
    if (a >= 0x477FF000) {
        return (uint16_t)(sign | 0x7C00);
    }
    if (a < 0x38800000) {
        if (a < 0x33000000) {
            return (uint16_t)sign;
        }
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7FFFFF) | 0x800000;
        uint32_t shift = 126 - e;
        uint32_t half = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) {
            half++;
        }
        return (uint16_t)(sign | half);
    }
    uint32_t h = (a >> 13) - ((127 - 15) << 10);
    uint32_t rem = a & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) {
        h++;
    }
    return (uint16_t)(sign | h);
}

PD_HD PD_DEV_INLINE float pd_dev_bf16_to_f32(uint16_t h)
{
    return pd_dev_bits_f32((uint32_t)h << 16);
}

/* Float to bfloat16, round to nearest even, bit-identical to pd_f32_to_bf16. */
PD_HD PD_DEV_INLINE uint16_t pd_dev_f32_to_bf16(float f)
{
    uint32_t x = pd_dev_f32_bits(f);
    if ((x & 0x7FFFFFFF) > 0x7F800000) {
        return (uint16_t)((x >> 16) | 64);
    }
    return (uint16_t)((x + (0x7FFF + ((x >> 16) & 1))) >> 16);
}

/* ---- loads ---------------------------------------------------------------------------- */

PD_HD PD_DEV_INLINE uint32_t pd_dev_ld_u16(const uint8_t *p)
{
#if defined(__CUDA_ARCH__)
    return *(const uint16_t *)p;
#else
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
#endif
}

/* 4 bytes at a 2-byte aligned address. */
PD_HD PD_DEV_INLINE uint32_t pd_dev_ld_u32_a2(const uint8_t *p)
{
#if defined(__CUDA_ARCH__)
    const uint16_t *q = (const uint16_t *)p;
    return (uint32_t)q[0] | ((uint32_t)q[1] << 16);
#else
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#endif
}

/* 4 bytes at a 4-byte aligned address. */
PD_HD PD_DEV_INLINE uint32_t pd_dev_ld_u32_a4(const uint8_t *p)
{
#if defined(__CUDA_ARCH__)
    return *(const uint32_t *)p;
#else
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#endif
}

PD_HD PD_DEV_INLINE float pd_dev_ld_f16(const uint8_t *p)
{
    return pd_dev_f16_to_f32((uint16_t)pd_dev_ld_u16(p));
}

PD_HD PD_DEV_INLINE float pd_dev_ld_f32(const uint8_t *p)
{
    return pd_dev_bits_f32(pd_dev_ld_u32_a4(p));
}

PD_HD PD_DEV_INLINE void pd_dev_st_u16(uint8_t *p, uint16_t v)
{
#if defined(__CUDA_ARCH__)
    *(uint16_t *)p = v;
#else
    memcpy(p, &v, 2);
#endif
}

/* Four signed byte products plus c (dp4a). */
PD_HD PD_DEV_INLINE int32_t pd_dev_dp4a(uint32_t a, uint32_t b, int32_t c)
{
#if defined(__CUDA_ARCH__)
    return __dp4a((int)a, (int)b, c);
#else
    for (int k = 0; k < 4; k++) {
        c += (int32_t)(int8_t)(uint8_t)(a >> (8 * k)) * (int32_t)(int8_t)(uint8_t)(b >> (8 * k));
    }
    return c;
#endif
}

/* ---- rounding (engine/quant.c's helpers) ---------------------------------------------- */

PD_HD PD_DEV_INLINE int pd_dev_clamp_to_int(float r, int lo, int hi)
{
    r = fmaxf(r, (float)lo);
    r = fminf(r, (float)hi);
    return (int)r;
}

PD_HD PD_DEV_INLINE int pd_dev_round_even_clamp(float v, int lo, int hi)
{
    return pd_dev_clamp_to_int(rintf(v), lo, hi);
}

PD_HD PD_DEV_INLINE int pd_dev_round_away_clamp(float v, int lo, int hi)
{
    return pd_dev_clamp_to_int(roundf(v), lo, hi);
}

PD_HD PD_DEV_INLINE float pd_dev_clamp_scale(float d)
{
    return fminf(fmaxf(d, -PD_DEV_F16_MAX), PD_DEV_F16_MAX);
}

/* ---- activation quantisers ------------------------------------------------------------ */

/* q8_0: d = amax/127 (clamped), stored as half; codes use the unrounded d's inverse.
 * amax is the largest |x| of the block (fmaxf over fabsf: NaN ignored). Writes the half's
 * bits to *d_bits and returns the inverse scale the codes use. */
PD_HD PD_DEV_INLINE float pd_dev_q8_0_scale(float amax, uint16_t *d_bits)
{
    float d = pd_dev_clamp_scale(amax / 127.0f);
    *d_bits = pd_dev_f32_to_f16(d);
    return d != 0.0f ? 1.0f / d : 0.0f;
}

PD_HD PD_DEV_INLINE int8_t pd_dev_q8_0_code(float x, float id)
{
    return (int8_t)pd_dev_round_away_clamp(x * id, -128, 127);
}

/* q8_K: max is the signed value of largest magnitude (the first one in index order; NaN
 * never wins); iscale = -127/max, code = round-half-even(iscale * x) in [-127, 127],
 * d = 1/iscale stored as f32. A block whose amax is 0 or not finite is all zero. */
PD_HD PD_DEV_INLINE int pd_dev_q8_k_live(float amax)
{
    return amax > 0.0f && isfinite(amax);
}

PD_HD PD_DEV_INLINE float pd_dev_q8_k_iscale(float max)
{
    return -127.0f / max;
}

PD_HD PD_DEV_INLINE int8_t pd_dev_q8_k_code(float x, float iscale)
{
    return (int8_t)pd_dev_round_even_clamp(iscale * x, -127, 127);
}

/* Reference block quantisers (the kernels compute the same values split across lanes). */
PD_HD PD_DEV_INLINE void pd_dev_quant_q8_0_block(const float *x, uint8_t *b)
{
    float amax = 0.0f;
    for (int l = 0; l < PD_DEV_QK; l++) {
        amax = fmaxf(amax, fabsf(x[l]));
    }
    uint16_t d;
    float id = pd_dev_q8_0_scale(amax, &d);
    pd_dev_st_u16(b, d);
    for (int l = 0; l < PD_DEV_QK; l++) {
        b[2 + l] = (uint8_t)pd_dev_q8_0_code(x[l], id);
    }
}

PD_HD PD_DEV_INLINE void pd_dev_quant_q8_k_block(const float *x, uint8_t *b)
{
    float amax = 0.0f, max = 0.0f;
    for (int l = 0; l < PD_DEV_QKK; l++) {
        if (fabsf(x[l]) > amax) {
            amax = fabsf(x[l]);
            max = x[l];
        }
    }
    float d = 0.0f;
    int8_t *qs = (int8_t *)(b + PD_DEV_Q8_K_QS);
    if (pd_dev_q8_k_live(amax)) {
        float iscale = pd_dev_q8_k_iscale(max);
        for (int l = 0; l < PD_DEV_QKK; l++) {
            qs[l] = pd_dev_q8_k_code(x[l], iscale);
        }
        d = 1.0f / iscale;
    } else {
        for (int l = 0; l < PD_DEV_QKK; l++) {
            qs[l] = 0;
        }
    }
    for (int j = 0; j < PD_DEV_QKK / 16; j++) {
        int s = 0;
        for (int l = 0; l < 16; l++) {
            s += qs[16 * j + l];
        }
        int16_t s16 = (int16_t)s;
        memcpy(b + PD_DEV_Q8_K_BSUMS + 2 * j, &s16, 2);
    }
    memcpy(b, &d, 4);
}

/* ---- K-quant scales --------------------------------------------------------------------- */

/* Six-bit scale and min j (0..7) of a q4_K/q5_K block's 12 packed bytes p. */
PD_HD PD_DEV_INLINE void pd_dev_kq_scale_min(const uint8_t *p, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = p[j] & 63;
        *m = p[j + 4] & 63;
    } else {
        *sc = (p[j + 4] & 15) | ((p[j - 4] >> 6) << 4);
        *m = (p[j + 4] >> 4) | ((p[j] >> 6) << 4);
    }
}

/* ---- dequantisation (one element, the CPU's arithmetic) ----------------------------------- */

/* Element l (0..31) of a q8_0 / q4_0 block. */
PD_HD PD_DEV_INLINE float pd_dev_q8_0_value(const uint8_t *b, int l)
{
    return (float)(int8_t)b[2 + l] * pd_dev_ld_f16(b);
}

PD_HD PD_DEV_INLINE float pd_dev_q4_0_value(const uint8_t *b, int l)
{
    int q = l < 16 ? (b[2 + l] & 0x0F) : (b[2 + l - 16] >> 4);
    return (float)(q - 8) * pd_dev_ld_f16(b);
}

/* Element i (0..255) of a q4_K / q5_K / q6_K block. */
PD_HD PD_DEV_INLINE float pd_dev_q4_k_value(const uint8_t *b, int i)
{
    int g = i / 64, hi = (i / 32) & 1, l = i % 32;
    int sc, m;
    pd_dev_kq_scale_min(b + PD_DEV_KQ_SCALES, 2 * g + hi, &sc, &m);
    float d = pd_dev_ld_f16(b) * (float)sc, mn = pd_dev_ld_f16(b + 2) * (float)m;
    int byte = b[PD_DEV_Q4_K_QS + 32 * g + l];
    int q = hi ? byte >> 4 : byte & 0x0F;
    return d * (float)q - mn;
}

PD_HD PD_DEV_INLINE float pd_dev_q5_k_value(const uint8_t *b, int i)
{
    int g = i / 64, hi = (i / 32) & 1, l = i % 32;
    int sc, m;
    pd_dev_kq_scale_min(b + PD_DEV_KQ_SCALES, 2 * g + hi, &sc, &m);
    float d = pd_dev_ld_f16(b) * (float)sc, mn = pd_dev_ld_f16(b + 2) * (float)m;
    int byte = b[PD_DEV_Q5_K_QS + 32 * g + l];
    int q = (hi ? byte >> 4 : byte & 0x0F) | (((b[PD_DEV_Q5_K_QH + l] >> (2 * g + hi)) & 1) << 4);
    return d * (float)q - mn;
}

PD_HD PD_DEV_INLINE float pd_dev_q6_k_value(const uint8_t *b, int i)
{
    int h = i / 128, k = (i / 32) & 3, l = i % 32;
    const uint8_t *ql = b + 64 * h;
    const uint8_t *qh = b + PD_DEV_Q6_K_QH + 32 * h;
    int lo = ql[l + 32 * (k & 1)];
    lo = k < 2 ? (lo & 0x0F) : (lo >> 4);
    int q = lo | (((qh[l] >> (2 * k)) & 3) << 4);
    float s = pd_dev_ld_f16(b + PD_DEV_Q6_K_D) * (float)(int8_t)b[PD_DEV_Q6_K_SCALES + 8 * h + 2 * k + l / 16];
    return s * (float)(q - 32);
}

/* ---- block dots, split by lanes ------------------------------------------------------------- */

/* q8_0 weights x q8_0 activations: lane t (0..3) covers values 8t..8t+7. */
PD_HD PD_DEV_INLINE int32_t pd_dev_q8_0_lane(const uint8_t *w, const uint8_t *x, int t)
{
    int32_t s = 0;
    for (int k = 0; k < 2; k++) {
        int o = 2 + 8 * t + 4 * k;
        s = pd_dev_dp4a(pd_dev_ld_u32_a2(w + o), pd_dev_ld_u32_a2(x + o), s);
    }
    return s;
}

/* q8_0 and q4_0: (float)isum * (d_w * d_x). */
PD_HD PD_DEV_INLINE float pd_dev_q8_0_combine(const uint8_t *w, const uint8_t *x, int32_t isum)
{
    return (float)isum * (pd_dev_ld_f16(w) * pd_dev_ld_f16(x));
}

/* q4_0 weights x q8_0 activations: lane t (0..3) covers values 4t..4t+3 and 16+4t..16+4t+3
 * (the low and high nibbles of bytes 4t..4t+3). */
PD_HD PD_DEV_INLINE int32_t pd_dev_q4_0_lane(const uint8_t *w, const uint8_t *x, int t)
{
    uint32_t q = pd_dev_ld_u32_a2(w + 2 + 4 * t);
    uint32_t lo = q & 0x0F0F0F0Fu, hi = (q >> 4) & 0x0F0F0F0Fu;
    int32_t s = pd_dev_dp4a(lo, pd_dev_ld_u32_a2(x + 2 + 4 * t), 0);
    s = pd_dev_dp4a(hi, pd_dev_ld_u32_a2(x + 2 + 16 + 4 * t), s);
    /* (q - 8) * y summed: subtract 8 * sum(y) of the same 8 activations */
    int32_t ys = pd_dev_dp4a(0x01010101u, pd_dev_ld_u32_a2(x + 2 + 4 * t), 0);
    ys = pd_dev_dp4a(0x01010101u, pd_dev_ld_u32_a2(x + 2 + 16 + 4 * t), ys);
    return s - 8 * ys;
}

/* q4_K weights x q8_K activations: lane t (0..7) covers qs bytes 16t..16t+15 of group
 * g = t/2: low nibbles are values 64g+16(t%2)+[0,16) (sub-block 2g), high nibbles
 * 64g+32+16(t%2)+[0,16) (sub-block 2g+1); it also takes bsums 2t, 2t+1 (whose min is m[t]).
 * Adds its share of the scaled sum to *isum and of the min sum to *msum. */
PD_HD PD_DEV_INLINE void pd_dev_q4_k_lane(const uint8_t *w, const uint8_t *x, int t,
                                          int32_t *isum, int32_t *msum)
{
    int g = t / 2, h = t % 2;
    const uint8_t *qs = w + PD_DEV_Q4_K_QS + 32 * g + 16 * h;
    const uint8_t *y0 = x + PD_DEV_Q8_K_QS + 64 * g + 16 * h;
    const uint8_t *y1 = y0 + 32;
    int32_t s0 = 0, s1 = 0;
    for (int k = 0; k < 4; k++) {
        uint32_t q = pd_dev_ld_u32_a4(qs + 4 * k);
        s0 = pd_dev_dp4a(q & 0x0F0F0F0Fu, pd_dev_ld_u32_a4(y0 + 4 * k), s0);
        s1 = pd_dev_dp4a((q >> 4) & 0x0F0F0F0Fu, pd_dev_ld_u32_a4(y1 + 4 * k), s1);
    }
    int sc0, m0, sc1, m1, scm, mt;
    pd_dev_kq_scale_min(w + PD_DEV_KQ_SCALES, 2 * g, &sc0, &m0);
    pd_dev_kq_scale_min(w + PD_DEV_KQ_SCALES, 2 * g + 1, &sc1, &m1);
    pd_dev_kq_scale_min(w + PD_DEV_KQ_SCALES, t, &scm, &mt);
    *isum += s0 * sc0 + s1 * sc1;
    uint32_t bs = pd_dev_ld_u32_a4(x + PD_DEV_Q8_K_BSUMS + 4 * t);
    *msum += ((int32_t)(int16_t)(bs & 0xFFFF) + (int32_t)(int16_t)(bs >> 16)) * mt;
}

/* q5_K: as q4_K plus the fifth bit: value l of group g's first half has its high bit in
 * bit 2g of qh[l], of the second half in bit 2g+1. */
PD_HD PD_DEV_INLINE void pd_dev_q5_k_lane(const uint8_t *w, const uint8_t *x, int t,
                                          int32_t *isum, int32_t *msum)
{
    int g = t / 2, h = t % 2;
    const uint8_t *qs = w + PD_DEV_Q5_K_QS + 32 * g + 16 * h;
    const uint8_t *qh = w + PD_DEV_Q5_K_QH + 16 * h;
    const uint8_t *y0 = x + PD_DEV_Q8_K_QS + 64 * g + 16 * h;
    const uint8_t *y1 = y0 + 32;
    int32_t s0 = 0, s1 = 0;
    for (int k = 0; k < 4; k++) {
        uint32_t q = pd_dev_ld_u32_a4(qs + 4 * k);
        uint32_t hb = pd_dev_ld_u32_a4(qh + 4 * k);
        uint32_t h0 = ((hb >> (2 * g)) & 0x01010101u) << 4;
        uint32_t h1 = ((hb >> (2 * g + 1)) & 0x01010101u) << 4;
        s0 = pd_dev_dp4a((q & 0x0F0F0F0Fu) | h0, pd_dev_ld_u32_a4(y0 + 4 * k), s0);
        s1 = pd_dev_dp4a(((q >> 4) & 0x0F0F0F0Fu) | h1, pd_dev_ld_u32_a4(y1 + 4 * k), s1);
    }
    int sc0, m0, sc1, m1, scm, mt;
    pd_dev_kq_scale_min(w + PD_DEV_KQ_SCALES, 2 * g, &sc0, &m0);
    pd_dev_kq_scale_min(w + PD_DEV_KQ_SCALES, 2 * g + 1, &sc1, &m1);
    pd_dev_kq_scale_min(w + PD_DEV_KQ_SCALES, t, &scm, &mt);
    *isum += s0 * sc0 + s1 * sc1;
    uint32_t bs = pd_dev_ld_u32_a4(x + PD_DEV_Q8_K_BSUMS + 4 * t);
    *msum += ((int32_t)(int16_t)(bs & 0xFFFF) + (int32_t)(int16_t)(bs >> 16)) * mt;
}

/* q4_K and q5_K: d*dy*isum - dmin*dy*msum, in the CPU's order. */
PD_HD PD_DEV_INLINE float pd_dev_q4_k_combine(const uint8_t *w, const uint8_t *x, int32_t isum,
                                              int32_t msum)
{
    float dy = pd_dev_ld_f32(x);
    return pd_dev_ld_f16(w) * dy * (float)isum - pd_dev_ld_f16(w + 2) * dy * (float)msum;
}

/* q6_K weights x q8_K activations: lane t (0..7) covers half hh = t/4 and quarter k = t%4:
 * values 128hh+32k+[0,32), whose sub-blocks are j = 8hh+2k and j+1. The codes are used
 * unsigned and 32*sum(scale*bsum) is subtracted (identical integers). *isum receives the
 * lane's share of both terms. */
PD_HD PD_DEV_INLINE int32_t pd_dev_q6_k_lane(const uint8_t *w, const uint8_t *x, int t)
{
    int hh = t / 4, k = t % 4;
    const uint8_t *ql = w + 64 * hh + 32 * (k & 1);
    const uint8_t *qh = w + PD_DEV_Q6_K_QH + 32 * hh;
    const uint8_t *y = x + PD_DEV_Q8_K_QS + 128 * hh + 32 * k;
    int shift_l = k < 2 ? 0 : 4;
    int32_t s0 = 0, s1 = 0;
    for (int q4 = 0; q4 < 8; q4++) {
        uint32_t lo = (pd_dev_ld_u32_a2(ql + 4 * q4) >> shift_l) & 0x0F0F0F0Fu;
        uint32_t hi = ((pd_dev_ld_u32_a2(qh + 4 * q4) >> (2 * k)) & 0x03030303u) << 4;
        uint32_t yv = pd_dev_ld_u32_a4(y + 4 * q4);
        if (q4 < 4) {
            s0 = pd_dev_dp4a(lo | hi, yv, s0);
        } else {
            s1 = pd_dev_dp4a(lo | hi, yv, s1);
        }
    }
    int j = 8 * hh + 2 * k;
    int sc0 = (int8_t)w[PD_DEV_Q6_K_SCALES + j], sc1 = (int8_t)w[PD_DEV_Q6_K_SCALES + j + 1];
    uint32_t bs = pd_dev_ld_u32_a4(x + PD_DEV_Q8_K_BSUMS + 2 * j);
    int32_t bias = (int32_t)(int16_t)(bs & 0xFFFF) * sc0 + (int32_t)(int16_t)(bs >> 16) * sc1;
    return s0 * sc0 + s1 * sc1 - 32 * bias;
}

PD_HD PD_DEV_INLINE float pd_dev_q6_k_combine(const uint8_t *w, const uint8_t *x, int32_t isum)
{
    return pd_dev_ld_f16(w + PD_DEV_Q6_K_D) * pd_dev_ld_f32(x) * (float)isum;
}

/* Whole-block dots assembled from the lanes (reference for the tests; the kernel adds the
 * lanes' integers with shuffles, which is the same integer). */
PD_HD PD_DEV_INLINE float pd_dev_q8_0_block_dot(const uint8_t *w, const uint8_t *x)
{
    int32_t s = 0;
    for (int t = 0; t < PD_DEV_LANES_Q8_0; t++) {
        s += pd_dev_q8_0_lane(w, x, t);
    }
    return pd_dev_q8_0_combine(w, x, s);
}

PD_HD PD_DEV_INLINE float pd_dev_q4_0_block_dot(const uint8_t *w, const uint8_t *x)
{
    int32_t s = 0;
    for (int t = 0; t < PD_DEV_LANES_Q4_0; t++) {
        s += pd_dev_q4_0_lane(w, x, t);
    }
    return pd_dev_q8_0_combine(w, x, s);
}

PD_HD PD_DEV_INLINE float pd_dev_q4_k_block_dot(const uint8_t *w, const uint8_t *x)
{
    int32_t is = 0, ms = 0;
    for (int t = 0; t < PD_DEV_LANES_KQ; t++) {
        pd_dev_q4_k_lane(w, x, t, &is, &ms);
    }
    return pd_dev_q4_k_combine(w, x, is, ms);
}

PD_HD PD_DEV_INLINE float pd_dev_q5_k_block_dot(const uint8_t *w, const uint8_t *x)
{
    int32_t is = 0, ms = 0;
    for (int t = 0; t < PD_DEV_LANES_KQ; t++) {
        pd_dev_q5_k_lane(w, x, t, &is, &ms);
    }
    return pd_dev_q4_k_combine(w, x, is, ms);
}

PD_HD PD_DEV_INLINE float pd_dev_q6_k_block_dot(const uint8_t *w, const uint8_t *x)
{
    int32_t is = 0;
    for (int t = 0; t < PD_DEV_LANES_KQ; t++) {
        is += pd_dev_q6_k_lane(w, x, t);
    }
    return pd_dev_q6_k_combine(w, x, is);
}

/* ---- RoPE ------------------------------------------------------------------------------ */

/* Angle of rotation pair i at position pos, as forward.c computes it: theta starts at
 * (float)pos and is multiplied by theta_scale = powf(base, -2/n_rot) (computed once on
 * the host) i times, then divided by freq_div (rope_freqs.weight, 1 when absent: pass 0)
 * and scaled by freq_scale. */
PD_HD PD_DEV_INLINE float pd_dev_rope_theta(int64_t pos, int i, float theta_scale,
                                            float freq_div, float freq_scale)
{
    float theta = (float)pos;
    for (int k = 0; k < i; k++) {
        theta *= theta_scale;
    }
    return (freq_div != 0.0f ? theta / freq_div : theta) * freq_scale;
}

/* Rotates (*a, *b) by th: a' = a cos - b sin, b' = a sin + b cos. */
PD_HD PD_DEV_INLINE void pd_dev_rope_rotate(float *a, float *b, float th)
{
    float cs, sn;
#if defined(__CUDA_ARCH__)
    sincosf(th, &sn, &cs);
#else
    cs = cosf(th);
    sn = sinf(th);
#endif
    float x0 = *a, x1 = *b;
    *a = x0 * cs - x1 * sn;
    *b = x0 * sn + x1 * cs;
}

/* ---- comparators ------------------------------------------------------------------------- */

/* Probe order: higher logit first, the lower id on ties (engine/probe.c). */
PD_HD PD_DEV_INLINE int pd_dev_better(float xa, int32_t ia, float xb, int32_t ib)
{
    return xa > xb || (xa == xb && ia < ib);
}

/* Capture order: higher weight first, the lower position on ties (engine/capture.c). */
PD_HD PD_DEV_INLINE int pd_dev_capture_better(float wa, int32_t pa, float wb, int32_t pb)
{
    return wa > wb || (wa == wb && pa < pb);
}

#endif
