/* quant.c - GGUF tensor block formats: dequantisation, reference quantisers and the
 * block dot products that are the inner loops of the engine's matrix-vector products.
 *
 * DESIGN
 * - Blocks are read through byte offsets, never through struct pointers: GGUF rows of
 *   34- or 210-byte blocks are only 2-byte aligned, and the 4-byte f32 scale of q8_K is
 *   loaded with memcpy. The byte layouts are the GGUF ones (see quant.h and docs/gguf.md).
 * - Dequantisation is the exact reference arithmetic: x = d * q for symmetric types,
 *   x = (d * sc) * q - (dmin * m) for q4_K/q5_K, x = d * sc * (q - 32) for q6_K.
 * - Dot products first form exact integer sums per (sub-)block of weight quants times
 *   activation quants, then scale by the float block scales, as GGUF's CPU kernels do,
 *   so results agree with them to float rounding. The q4_K/q5_K min term uses the
 *   activation's per-16 sums (bsums) so it costs 16 multiplies per 256 elements.
 *   Float dot products (f32, f16, bf16) accumulate in float over 16 independent lanes
 *   (the same association as an 8- or 16-wide SIMD kernel), which lets the compiler
 *   vectorise them without -ffast-math.
 * - Quantisers: q8_0, q4_0, q5_0, q4_1 and q5_1 follow the reference rules exactly. The
 *   K-quant quantisers are ponder's own: per sub-block a least-squares fit over a small set of
 *   candidate scales, then the sub-block scales are quantised to 6 (q4_K/q5_K) or 8
 *   (q6_K) bits and the values are re-quantised against the scales as stored. They need
 *   not match other tools byte for byte; any valid block decodes identically everywhere.
 * - Every float-to-int conversion is clamped first (fmaxf/fminf also map NaN to the
 *   clamp bound), so no input value can cause undefined behaviour.
 * All functions are pure and thread-safe. */
#include "quant.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "half.h"

/* Float accumulation lanes of the float dot products. */
#define DOT_LANES 16

/* ---- scalar helpers -------------------------------------------------------------- */

/* Half to float without branches on the value (vectorisable). Scaling the shifted
 * exponent+mantissa by 2^112 rebiases normals and, being exact, also normalises
 * subnormals; inf/NaN keep an all-ones exponent. Bit-identical to pd_f16_to_f32. */
static inline float half_to_float(uint16_t h)
{
    uint32_t em = (uint32_t)(h & 0x7FFF) << 13;
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    float f;
    memcpy(&f, &em, 4);
    f *= 0x1p112f;
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint32_t special = 0u - (uint32_t)(em >= (0x7C00u << 13)); /* all ones for inf/NaN */
    bits = (bits & ~special) | ((em | 0x7F800000u) & special) | sign;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float load_f16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return half_to_float(h);
}

/* Stores f as a half and returns the value actually stored (callers quantise against
 * the stored scale, not the ideal one). */
static inline float store_f16(uint8_t *p, float f)
{
    uint16_t h = pd_f32_to_f16(f);
    memcpy(p, &h, 2);
    return half_to_float(h);
}

static inline float load_f32(const uint8_t *p)
{
    float f;
    memcpy(&f, p, 4);
    return f;
}

static inline float bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Clamps v to [lo, hi] (NaN goes to lo) and converts; r is already integral. */
static inline int clamp_to_int(float r, int lo, int hi)
{
    r = fmaxf(r, (float)lo);
    r = fminf(r, (float)hi);
    return (int)r;
}

/* Round half to even (the default FP mode), clamped to [lo, hi]. */
static inline int round_even_clamp(float v, int lo, int hi)
{
    return clamp_to_int(rintf(v), lo, hi);
}

/* Round half away from zero, clamped to [lo, hi]. */
static inline int round_away_clamp(float v, int lo, int hi)
{
    return clamp_to_int(roundf(v), lo, hi);
}

static inline float clamp_scale(float d)
{
    return fminf(fmaxf(d, -F16_MAX), F16_MAX);
}

/* Sums DOT_LANES partial sums pairwise (the order of a SIMD horizontal add). */
static inline float sum_lanes(float *acc)
{
    for (int w = DOT_LANES / 2; w > 0; w /= 2) {
        for (int k = 0; k < w; k++) {
            acc[k] += acc[k + w];
        }
    }
    return acc[0];
}

/* ---- f32 / f16 / bf16 ----------------------------------------------------------- */

void pd_f32_to_f32(const void *src, float *dst, size_t n)
{
    memcpy(dst, src, n * sizeof(float));
}

void pd_f32_from_f32(const float *src, void *dst, size_t n)
{
    memcpy(dst, src, n * sizeof(float));
}

float pd_f32_vec_dot(const void *w, const void *x, size_t n)
{
    const float *a = w;
    const float *b = x;
    float acc[DOT_LANES] = {0};
    size_t i = 0;
    for (; i + DOT_LANES <= n; i += DOT_LANES) {
        for (int k = 0; k < DOT_LANES; k++) {
            acc[k] += a[i + k] * b[i + k];
        }
    }
    for (; i < n; i++) {
        acc[i % DOT_LANES] += a[i] * b[i];
    }
    return sum_lanes(acc);
}

/* The 2-byte float formats (f16, bf16) share these loops; cvt is a compile-time constant
 * at every call, so each format gets its own inlined copy. */
typedef float (*half_cvt)(uint16_t);

static inline void half_row_to_f32(const void *src, float *dst, size_t n, half_cvt cvt)
{
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = cvt(h);
    }
}

static inline void half_row_from_f32(const float *src, void *dst, size_t n,
                                     uint16_t (*cvt)(float))
{
    uint8_t *d = dst;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = cvt(src[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}

static inline float half_vec_dot(const void *w, const void *x, size_t n, half_cvt cvt)
{
    const uint8_t *a = w;
    const uint8_t *b = x;
    float acc[DOT_LANES] = {0};
    size_t i = 0;
    for (; i + DOT_LANES <= n; i += DOT_LANES) {
        uint16_t ha[DOT_LANES];
        uint16_t hb[DOT_LANES];
        memcpy(ha, a + 2 * i, sizeof ha);
        memcpy(hb, b + 2 * i, sizeof hb);
        for (int k = 0; k < DOT_LANES; k++) {
            acc[k] += cvt(ha[k]) * cvt(hb[k]);
        }
    }
    for (; i < n; i++) {
        uint16_t ha;
        uint16_t hb;
        memcpy(&ha, a + 2 * i, 2);
        memcpy(&hb, b + 2 * i, 2);
        acc[i % DOT_LANES] += cvt(ha) * cvt(hb);
    }
    return sum_lanes(acc);
}

void pd_f16_row_to_f32(const void *src, float *dst, size_t n)
{
    half_row_to_f32(src, dst, n, half_to_float);
}

void pd_f16_row_from_f32(const float *src, void *dst, size_t n)
{
    half_row_from_f32(src, dst, n, pd_f32_to_f16);
}

float pd_f16_vec_dot(const void *w, const void *x, size_t n)
{
    return half_vec_dot(w, x, n, half_to_float);
}

void pd_bf16_row_to_f32(const void *src, float *dst, size_t n)
{
    half_row_to_f32(src, dst, n, bf16_to_float);
}

void pd_bf16_row_from_f32(const float *src, void *dst, size_t n)
{
    half_row_from_f32(src, dst, n, pd_f32_to_bf16);
}

float pd_bf16_vec_dot(const void *w, const void *x, size_t n)
{
    return half_vec_dot(w, x, n, bf16_to_float);
}

/* ---- q8_0 ------------------------------------------------------------------------ */

void pd_q8_0_to_f32(const void *src, float *dst, size_t n)
{
    assert(n % PD_QK8_0 == 0);
    const uint8_t *b = src;
    for (size_t i = 0; i < n / PD_QK8_0; i++, b += Q8_0_BYTES) {
        float d = load_f16(b);
        const int8_t *qs = (const int8_t *)(b + 2);
        for (int l = 0; l < PD_QK8_0; l++) {
            dst[i * PD_QK8_0 + l] = (float)qs[l] * d;
        }
    }
}

/* Reference rule: d = amax / 127, q = round-half-away(x / d) computed with the unrounded
 * d; the stored d is its half rounding. */
/* One q8_0-rule block: d = amax / 127 (clamped) stored as a half at b, q = round-half-
 * away(x / d) with the unrounded d at b + qs. Returns d; *sum gets sum(q). */
static float q8_block(const float *x, uint8_t *b, size_t qs, int32_t *sum)
{
    float amax = 0.0f;
    for (int l = 0; l < PD_QK8_0; l++) {
        amax = fmaxf(amax, fabsf(x[l]));
    }
    float d = clamp_scale(amax / 127.0f);
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(b, d);
    int8_t *q = (int8_t *)(b + qs);
    *sum = 0;
    for (int l = 0; l < PD_QK8_0; l++) {
        q[l] = (int8_t)round_away_clamp(x[l] * id, -128, 127);
        *sum += q[l];
    }
    return d;
}

void pd_q8_0_from_f32(const float *src, void *dst, size_t n)
{
    assert(n % PD_QK8_0 == 0);
    uint8_t *b = dst;
    int32_t sum;
    for (size_t i = 0; i < n / PD_QK8_0; i++, b += Q8_0_BYTES) {
        q8_block(src + i * PD_QK8_0, b, 2, &sum);
    }
}

float pd_q8_0_vec_dot(const void *w, const void *x, size_t n)
{
    assert(n % PD_QK8_0 == 0);
    const uint8_t *a = w;
    const uint8_t *b = x;
    float sum = 0.0f;
    for (size_t i = 0; i < n / PD_QK8_0; i++, a += Q8_0_BYTES, b += Q8_0_BYTES) {
        const int8_t *qa = (const int8_t *)(a + 2);
        const int8_t *qb = (const int8_t *)(b + 2);
        int32_t isum = 0;
        for (int l = 0; l < PD_QK8_0; l++) {
            isum += (int32_t)qa[l] * qb[l];
        }
        sum += (float)isum * (load_f16(a) * load_f16(b));
    }
    return sum;
}

/* ---- q4_0, q5_0, q4_1, q5_1 ---------------------------------------------------------- */

/* Blocks of 32 codes: a half scale d at byte 0; q4_1/q5_1 a half offset m at byte 2; q5_0/
 * q5_1 the fifth bits in a little-endian u32 qh (bit l for element l); 16 code bytes qs,
 * byte l holding element l in its low nibble and element l + 16 in its high one.
 * x = (code - offset) * d, or code * d + m for the offset types. */
struct q32_format {
    size_t bytes, qs, qh; /* qh 0: no fifth bits */
    int offset;           /* subtracted from the code (q4_0 8, q5_0 16) */
    bool min;             /* q4_1/q5_1: m at byte 2, activations in q8_1 */
};
static const struct q32_format Q4_0 = {Q4_0_BYTES, 2, 0, 8, false};
static const struct q32_format Q5_0 = {Q5_0_BYTES, 6, 2, 16, false};
static const struct q32_format Q4_1 = {Q4_1_BYTES, 4, 0, 0, true};
static const struct q32_format Q5_1 = {Q5_1_BYTES, 8, 4, 0, true};

/* The 32 codes of block b in element order. */
static void q32_codes(const struct q32_format *f, const uint8_t *b, uint8_t *c)
{
    uint32_t qh = 0;
    if (f->qh) {
        memcpy(&qh, b + f->qh, 4);
    }
    const uint8_t *qs = b + f->qs;
    for (int l = 0; l < 16; l++) {
        c[l] = (uint8_t)((qs[l] & 0x0F) | ((qh >> l) & 1) << 4);
        c[l + 16] = (uint8_t)((qs[l] >> 4) | ((qh >> (l + 16)) & 1) << 4);
    }
}

/* Stores 32 codes (< 32, or < 16 without fifth bits) into block b. */
static void q32_pack(const struct q32_format *f, const int *q, uint8_t *b)
{
    uint32_t qh = 0;
    uint8_t *qs = b + f->qs;
    for (int l = 0; l < 16; l++) {
        qs[l] = (uint8_t)((q[l] & 0x0F) | (q[l + 16] & 0x0F) << 4);
        qh |= (uint32_t)(q[l] >> 4 & 1) << l | (uint32_t)(q[l + 16] >> 4 & 1) << (l + 16);
    }
    if (f->qh) {
        memcpy(b + f->qh, &qh, 4);
    }
}

static void q32_to_f32(const struct q32_format *f, const void *src, float *dst, size_t n)
{
    assert(n % PD_QK4_0 == 0);
    const uint8_t *b = src;
    for (size_t i = 0; i < n / PD_QK4_0; i++, b += f->bytes) {
        float d = load_f16(b), m = f->min ? load_f16(b + 2) : 0.0f;
        uint8_t c[32];
        q32_codes(f, b, c);
        float *y = dst + i * PD_QK4_0;
        for (int l = 0; l < 32; l++) {
            y[l] = f->min ? (float)c[l] * d + m : (float)(c[l] - f->offset) * d;
        }
    }
}

/* Reference rules. q4_0/q5_0: d = max / -offset where max is the signed value of largest
 * magnitude (it maps to code 0), q = min(2 offset - 1, trunc(x / d + offset + 0.5)).
 * q4_1/q5_1: d = (max - min) / top (top = 15 or 31), m = min, q = min(top, trunc((x -
 * min) / d + 0.5)). x / d + offset + 0.5 >= 0.5 - rounding (and (x - min) / d + 0.5 >= 0),
 * so floor equals the reference truncation. */
static void q32_from_f32(const struct q32_format *f, const float *src, void *dst, size_t n)
{
    assert(n % PD_QK4_0 == 0);
    uint8_t *b = dst;
    int top = f->qh ? 31 : 15;
    for (size_t i = 0; i < n / PD_QK4_0; i++, b += f->bytes) {
        const float *x = src + i * PD_QK4_0;
        float d, base, bias;
        if (f->min) {
            float min = x[0], max = x[0];
            for (int l = 1; l < 32; l++) {
                min = x[l] < min ? x[l] : min;
                max = x[l] > max ? x[l] : max;
            }
            d = clamp_scale((max - min) / (float)top);
            store_f16(b + 2, clamp_scale(min));
            base = min;
            bias = 0.5f;
        } else {
            float amax = 0.0f, max = 0.0f;
            for (int l = 0; l < 32; l++) {
                if (fabsf(x[l]) > amax) {
                    amax = fabsf(x[l]);
                    max = x[l];
                }
            }
            d = clamp_scale(max / (float)-f->offset);
            base = 0.0f;
            bias = (float)f->offset + 0.5f;
        }
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_f16(b, d);
        int q[32];
        for (int l = 0; l < 32; l++) {
            q[l] = clamp_to_int(floorf((f->min ? x[l] - base : x[l]) * id + bias), 0, top);
        }
        q32_pack(f, q, b);
    }
}

/* Against q8_0 (q4_0, q5_0): per block (float)sum((code - offset) * q) * (d_w * d_x).
 * Against q8_1 (q4_1, q5_1): (d_w * d_x) * sum(code * q) + m_w * s_x. */
static float q32_vec_dot(const struct q32_format *f, const void *w, const void *x, size_t n)
{
    assert(n % PD_QK4_0 == 0);
    const uint8_t *a = w;
    const uint8_t *b = x;
    size_t xbytes = f->min ? Q8_1_BYTES : Q8_0_BYTES, xq = f->min ? 4 : 2;
    float sum = 0.0f;
    for (size_t i = 0; i < n / PD_QK4_0; i++, a += f->bytes, b += xbytes) {
        uint8_t c[32];
        q32_codes(f, a, c);
        const int8_t *qb = (const int8_t *)(b + xq);
        int32_t isum = 0;
        for (int l = 0; l < 32; l++) {
            isum += (c[l] - f->offset) * qb[l];
        }
        if (f->min) {
            sum += (load_f16(a) * load_f16(b)) * (float)isum + load_f16(a + 2) * load_f16(b + 2);
        } else {
            sum += (float)isum * (load_f16(a) * load_f16(b));
        }
    }
    return sum;
}

#define Q32_TYPE(name, F)                                                                 \
    void pd_##name##_to_f32(const void *src, float *dst, size_t n)                        \
    {                                                                                     \
        q32_to_f32(&F, src, dst, n);                                                      \
    }                                                                                     \
    void pd_##name##_from_f32(const float *src, void *dst, size_t n)                      \
    {                                                                                     \
        q32_from_f32(&F, src, dst, n);                                                    \
    }                                                                                     \
    float pd_##name##_vec_dot(const void *w, const void *x, size_t n)                     \
    {                                                                                     \
        return q32_vec_dot(&F, w, x, n);                                                  \
    }
Q32_TYPE(q4_0, Q4_0)
Q32_TYPE(q5_0, Q5_0)
Q32_TYPE(q4_1, Q4_1)
Q32_TYPE(q5_1, Q5_1)
#undef Q32_TYPE

/* ---- q8_1 (activations of q4_1 and q5_1) ------------------------------------------- */

void pd_q8_1_from_f32(const float *src, void *dst, size_t n)
{
    assert(n % PD_QK8_0 == 0);
    uint8_t *b = dst;
    for (size_t i = 0; i < n / PD_QK8_0; i++, b += Q8_1_BYTES) {
        int32_t sum;
        float d = q8_block(src + i * PD_QK8_0, b, 4, &sum);
        store_f16(b + 2, clamp_scale((float)sum * d));
    }
}

void pd_q8_1_to_f32(const void *src, float *dst, size_t n)
{
    assert(n % PD_QK8_0 == 0);
    const uint8_t *b = src;
    for (size_t i = 0; i < n / PD_QK8_0; i++, b += Q8_1_BYTES) {
        float d = load_f16(b);
        const int8_t *qs = (const int8_t *)(b + 4);
        for (int l = 0; l < PD_QK8_0; l++) {
            dst[i * PD_QK8_0 + (size_t)l] = (float)qs[l] * d;
        }
    }
}

/* ---- K-quant shared helpers ------------------------------------------------------ */

/* The 8 six-bit scales and mins of q4_K/q5_K packed in 12 bytes. For j < 4:
 *   byte j     = sc[j]   | (sc[j+4] >> 4) << 6
 *   byte j + 4 = m[j]    | (m[j+4]  >> 4) << 6
 *   byte j + 8 = (sc[j+4] & 15) | (m[j+4] & 15) << 4 */
static void kq_unpack_scales(const uint8_t *p, uint8_t *sc, uint8_t *m)
{
    for (int j = 0; j < 4; j++) {
        sc[j] = p[j] & 63;
        m[j] = p[j + 4] & 63;
        sc[j + 4] = (uint8_t)((p[j + 8] & 15) | ((p[j] >> 6) << 4));
        m[j + 4] = (uint8_t)((p[j + 8] >> 4) | ((p[j + 4] >> 6) << 4));
    }
}

static void kq_pack_scales(uint8_t *p, const uint8_t *sc, const uint8_t *m)
{
    for (int j = 0; j < 4; j++) {
        p[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        p[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
        p[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
}

/* Squared error of coding x[0..n) as scale * q + off, q = round((x - off) / scale) in
 * [0, nmax]. */
static float affine_err(const float *x, int n, int nmax, float scale, float off)
{
    float inv = 1.0f / scale;
    float err = 0.0f;
    for (int i = 0; i < n; i++) {
        int q = round_even_clamp((x[i] - off) * inv, 0, nmax);
        float e = scale * (float)q + off - x[i];
        err += e * e;
    }
    return err;
}

/* Fits x[0..n) ~ scale * q - min with integer q in [0, nmax], scale >= 0, min >= 0
 * (the K-quant form; the offset is never positive). Tries codes spread over a few
 * ranges around the full [lo, hi] span, refits scale and offset by least squares for
 * each, and keeps the pair with the least squared error. Returns scale; *min_out = min. */
static float fit_affine(const float *x, int n, int nmax, float *min_out)
{
    float lo = x[0];
    float hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    lo = fminf(lo, 0.0f);
    if (!(hi > lo) || !isfinite(hi - lo)) {
        *min_out = isfinite(lo) ? -lo : 0.0f;
        return 0.0f;
    }
    float best_scale = (hi - lo) / (float)nmax;
    float best_off = lo;
    float best_err = affine_err(x, n, nmax, best_scale, best_off);
    for (int k = -5; k <= 10; k++) {
        float iscale = ((float)nmax + 0.1f * (float)k) / (hi - lo);
        float sq = 0.0f, sq2 = 0.0f, sx = 0.0f, sqx = 0.0f;
        for (int i = 0; i < n; i++) {
            float q = (float)round_even_clamp((x[i] - lo) * iscale, 0, nmax);
            sq += q;
            sq2 += q * q;
            sx += x[i];
            sqx += q * x[i];
        }
        float det = (float)n * sq2 - sq * sq;
        if (!(det > 0.0f)) {
            continue;
        }
        float scale = ((float)n * sqx - sq * sx) / det;
        float off = (sq2 * sx - sq * sqx) / det;
        if (off > 0.0f) { /* the format cannot add: pin the offset at zero */
            off = 0.0f;
            scale = sqx / sq2;
        }
        if (!(scale > 0.0f)) {
            continue;
        }
        float err = affine_err(x, n, nmax, scale, off);
        if (err < best_err) {
            best_err = err;
            best_scale = scale;
            best_off = off;
        }
    }
    *min_out = -best_off;
    return best_scale;
}

/* Squared error of coding x[0..n) as scale * q, q = round(x / scale) in [-nmax, nmax-1]. */
static float sym_err(const float *x, int n, int nmax, float scale)
{
    float inv = 1.0f / scale;
    float err = 0.0f;
    for (int i = 0; i < n; i++) {
        int q = round_even_clamp(x[i] * inv, -nmax, nmax - 1);
        float e = scale * (float)q - x[i];
        err += e * e;
    }
    return err;
}

/* Fits x[0..n) ~ scale * q with q in [-nmax, nmax - 1]. The scale is signed so that the
 * value of largest magnitude can use the extra code -nmax. Returns 0 for a zero block. */
static float fit_symmetric(const float *x, int n, int nmax)
{
    float amax = 0.0f;
    float max = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (!(amax > 0.0f) || !isfinite(amax)) {
        return 0.0f;
    }
    float best_scale = max / -(float)nmax;
    float best_err = sym_err(x, n, nmax, best_scale);
    for (int k = -8; k <= 8; k++) {
        float iscale = -((float)nmax + 0.1f * (float)k) / max;
        float sqx = 0.0f, sq2 = 0.0f;
        for (int i = 0; i < n; i++) {
            float q = (float)round_even_clamp(x[i] * iscale, -nmax, nmax - 1);
            sqx += q * x[i];
            sq2 += q * q;
        }
        if (!(sq2 > 0.0f)) {
            continue;
        }
        float scale = sqx / sq2;
        if (scale == 0.0f) {
            continue;
        }
        float err = sym_err(x, n, nmax, scale);
        if (err < best_err) {
            best_err = err;
            best_scale = scale;
        }
    }
    return best_scale;
}

/* Quantises one 256-element q4_K/q5_K super-block: fits the 8 sub-blocks, stores d, dmin
 * and the 6-bit scales/mins at b, and writes each element's code (0..nmax) to q. */
static void kq_quantize_super(const float *x, uint8_t *b, int nmax, uint8_t *q)
{
    float scale[8];
    float min[8];
    float max_scale = 0.0f;
    float max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        scale[j] = fit_affine(x + 32 * j, 32, nmax, &min[j]);
        max_scale = fmaxf(max_scale, scale[j]);
        max_min = fmaxf(max_min, min[j]);
    }
    float d = store_f16(b, clamp_scale(max_scale / 63.0f));
    float dmin = store_f16(b + 2, clamp_scale(max_min / 63.0f));
    uint8_t ls[8];
    uint8_t lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)(d > 0.0f ? round_even_clamp(scale[j] / d, 0, 63) : 0);
        lm[j] = (uint8_t)(dmin > 0.0f ? round_even_clamp(min[j] / dmin, 0, 63) : 0);
    }
    kq_pack_scales(b + KQ_SCALES, ls, lm);
    /* Re-quantise against the scales as stored. */
    for (int j = 0; j < 8; j++) {
        float ds = d * (float)ls[j];
        float dm = dmin * (float)lm[j];
        float inv = ds > 0.0f ? 1.0f / ds : 0.0f;
        for (int l = 0; l < 32; l++) {
            q[32 * j + l] = (uint8_t)round_even_clamp((x[32 * j + l] + dm) * inv, 0, nmax);
        }
    }
}

/* ---- q4_K ------------------------------------------------------------------------ */

/* Group g (0..3) of 64 elements uses qs[32g .. 32g+31]: low nibbles are its first 32
 * elements (sub-block 2g), high nibbles the next 32 (sub-block 2g+1). */
void pd_q4_k_to_f32(const void *src, float *dst, size_t n)
{
    assert(n % PD_QK_K == 0);
    const uint8_t *b = src;
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q4_K_BYTES) {
        float d = load_f16(b);
        float dmin = load_f16(b + 2);
        uint8_t sc[8];
        uint8_t m[8];
        kq_unpack_scales(b + KQ_SCALES, sc, m);
        const uint8_t *qs = b + Q4_K_QS;
        float *y = dst + i * PD_QK_K;
        for (int g = 0; g < 4; g++) {
            float d1 = d * (float)sc[2 * g], m1 = dmin * (float)m[2 * g];
            float d2 = d * (float)sc[2 * g + 1], m2 = dmin * (float)m[2 * g + 1];
            for (int l = 0; l < 32; l++) {
                y[64 * g + l] = d1 * (float)(qs[32 * g + l] & 0x0F) - m1;
                y[64 * g + 32 + l] = d2 * (float)(qs[32 * g + l] >> 4) - m2;
            }
        }
    }
}

void pd_q4_k_from_f32(const float *src, void *dst, size_t n)
{
    assert(n % PD_QK_K == 0);
    uint8_t *b = dst;
    uint8_t q[PD_QK_K];
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q4_K_BYTES) {
        kq_quantize_super(src + i * PD_QK_K, b, 15, q);
        uint8_t *qs = b + Q4_K_QS;
        for (int g = 0; g < 4; g++) {
            for (int l = 0; l < 32; l++) {
                qs[32 * g + l] = (uint8_t)(q[64 * g + l] | (q[64 * g + 32 + l] << 4));
            }
        }
    }
}

static inline void load_bsums(const uint8_t *y, int16_t *bsums)
{
    memcpy(bsums, y + Q8_K_BSUMS, 2 * (PD_QK_K / 16));
}

float pd_q4_k_vec_dot(const void *w, const void *x, size_t n)
{
    assert(n % PD_QK_K == 0);
    const uint8_t *b = w;
    const uint8_t *y = x;
    float sum = 0.0f;
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q4_K_BYTES, y += Q8_K_BYTES) {
        uint8_t sc[8];
        uint8_t m[8];
        kq_unpack_scales(b + KQ_SCALES, sc, m);
        const uint8_t *qs = b + Q4_K_QS;
        const int8_t *q8 = (const int8_t *)(y + Q8_K_QS);
        int32_t isum = 0;
        for (int g = 0; g < 4; g++) {
            int32_t s1 = 0;
            int32_t s2 = 0;
            for (int l = 0; l < 32; l++) {
                s1 += (qs[32 * g + l] & 0x0F) * q8[64 * g + l];
                s2 += (qs[32 * g + l] >> 4) * q8[64 * g + 32 + l];
            }
            isum += s1 * sc[2 * g] + s2 * sc[2 * g + 1];
        }
        int16_t bsums[PD_QK_K / 16];
        load_bsums(y, bsums);
        int32_t msum = 0;
        for (int j = 0; j < PD_QK_K / 16; j++) {
            msum += bsums[j] * m[j / 2];
        }
        float dy = load_f32(y);
        sum += load_f16(b) * dy * (float)isum - load_f16(b + 2) * dy * (float)msum;
    }
    return sum;
}

/* ---- q5_K ------------------------------------------------------------------------ */

/* As q4_K, plus a fifth bit: element l of group g's first half has its high bit in bit
 * 2g of qh[l], element l of the second half in bit 2g+1. */
void pd_q5_k_to_f32(const void *src, float *dst, size_t n)
{
    assert(n % PD_QK_K == 0);
    const uint8_t *b = src;
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q5_K_BYTES) {
        float d = load_f16(b);
        float dmin = load_f16(b + 2);
        uint8_t sc[8];
        uint8_t m[8];
        kq_unpack_scales(b + KQ_SCALES, sc, m);
        const uint8_t *qh = b + Q5_K_QH;
        const uint8_t *qs = b + Q5_K_QS;
        float *y = dst + i * PD_QK_K;
        for (int g = 0; g < 4; g++) {
            float d1 = d * (float)sc[2 * g], m1 = dmin * (float)m[2 * g];
            float d2 = d * (float)sc[2 * g + 1], m2 = dmin * (float)m[2 * g + 1];
            for (int l = 0; l < 32; l++) {
                int q1 = (qs[32 * g + l] & 0x0F) | (((qh[l] >> (2 * g)) & 1) << 4);
                int q2 = (qs[32 * g + l] >> 4) | (((qh[l] >> (2 * g + 1)) & 1) << 4);
                y[64 * g + l] = d1 * (float)q1 - m1;
                y[64 * g + 32 + l] = d2 * (float)q2 - m2;
            }
        }
    }
}

void pd_q5_k_from_f32(const float *src, void *dst, size_t n)
{
    assert(n % PD_QK_K == 0);
    uint8_t *b = dst;
    uint8_t q[PD_QK_K];
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q5_K_BYTES) {
        kq_quantize_super(src + i * PD_QK_K, b, 31, q);
        uint8_t *qh = b + Q5_K_QH;
        uint8_t *qs = b + Q5_K_QS;
        memset(qh, 0, PD_QK_K / 8);
        for (int g = 0; g < 4; g++) {
            for (int l = 0; l < 32; l++) {
                int q1 = q[64 * g + l];
                int q2 = q[64 * g + 32 + l];
                qs[32 * g + l] = (uint8_t)((q1 & 0x0F) | ((q2 & 0x0F) << 4));
                qh[l] |= (uint8_t)(((q1 >> 4) << (2 * g)) | ((q2 >> 4) << (2 * g + 1)));
            }
        }
    }
}

/* Integer dot of group g (64 elements, sub-blocks 2g and 2g+1) with q8, each sub-block
 * sum weighted by its 6-bit scale. */
static inline int32_t q5_group_dot(const uint8_t *qs, const uint8_t *qh, const int8_t *q8,
                                   int g, const uint8_t *sc)
{
    const uint8_t m1 = (uint8_t)(1u << (2 * g));
    const uint8_t m2 = (uint8_t)(2u << (2 * g));
    int32_t s1 = 0;
    int32_t s2 = 0;
    for (int l = 0; l < 32; l++) {
        int q1 = (qs[32 * g + l] & 0x0F) | ((qh[l] & m1) ? 16 : 0);
        int q2 = (qs[32 * g + l] >> 4) | ((qh[l] & m2) ? 16 : 0);
        s1 += q1 * q8[64 * g + l];
        s2 += q2 * q8[64 * g + 32 + l];
    }
    return s1 * sc[2 * g] + s2 * sc[2 * g + 1];
}

float pd_q5_k_vec_dot(const void *w, const void *x, size_t n)
{
    assert(n % PD_QK_K == 0);
    const uint8_t *b = w;
    const uint8_t *y = x;
    float sum = 0.0f;
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q5_K_BYTES, y += Q8_K_BYTES) {
        uint8_t sc[8];
        uint8_t m[8];
        kq_unpack_scales(b + KQ_SCALES, sc, m);
        const uint8_t *qh = b + Q5_K_QH;
        const uint8_t *qs = b + Q5_K_QS;
        const int8_t *q8 = (const int8_t *)(y + Q8_K_QS);
        /* Constant group numbers: after inlining the bit masks are immediates. */
        int32_t isum = q5_group_dot(qs, qh, q8, 0, sc) + q5_group_dot(qs, qh, q8, 1, sc) +
                       q5_group_dot(qs, qh, q8, 2, sc) + q5_group_dot(qs, qh, q8, 3, sc);
        int16_t bsums[PD_QK_K / 16];
        load_bsums(y, bsums);
        int32_t msum = 0;
        for (int j = 0; j < PD_QK_K / 16; j++) {
            msum += bsums[j] * m[j / 2];
        }
        float dy = load_f32(y);
        sum += load_f16(b) * dy * (float)isum - load_f16(b + 2) * dy * (float)msum;
    }
    return sum;
}

/* ---- q6_K ------------------------------------------------------------------------ */

/* Each half h (0..1) of 128 elements uses ql[64h .. 64h+63] and qh[32h .. 32h+31]. For
 * l < 32 and quarter k (0..3), element 128h + 32k + l has
 *   low 4 bits : ql[64h + l + 32*(k & 1)], low nibble for k < 2, high nibble for k >= 2
 *   high 2 bits: bits 2k, 2k+1 of qh[32h + l]
 * and signed 8-bit scale scales[8h + 2k + l/16]; x = d * scale * (q - 32). */
static inline int q6_code(const uint8_t *ql, const uint8_t *qh, int k, int l)
{
    int lo = ql[l + 32 * (k & 1)];
    lo = k < 2 ? (lo & 0x0F) : (lo >> 4);
    return lo | (((qh[l] >> (2 * k)) & 3) << 4);
}

void pd_q6_k_to_f32(const void *src, float *dst, size_t n)
{
    assert(n % PD_QK_K == 0);
    const uint8_t *b = src;
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q6_K_BYTES) {
        float d = load_f16(b + Q6_K_D);
        const int8_t *sc = (const int8_t *)(b + Q6_K_SCALES);
        float *y = dst + i * PD_QK_K;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b + Q6_K_QL + 64 * h;
            const uint8_t *qh = b + Q6_K_QH + 32 * h;
            for (int k = 0; k < 4; k++) {
                for (int l = 0; l < 32; l++) {
                    float s = d * (float)sc[8 * h + 2 * k + l / 16];
                    y[128 * h + 32 * k + l] = s * (float)(q6_code(ql, qh, k, l) - 32);
                }
            }
        }
    }
}

void pd_q6_k_from_f32(const float *src, void *dst, size_t n)
{
    assert(n % PD_QK_K == 0);
    uint8_t *b = dst;
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q6_K_BYTES) {
        const float *x = src + i * PD_QK_K;
        float scale[16];
        float max_scale = 0.0f; /* signed, largest magnitude */
        for (int j = 0; j < 16; j++) {
            scale[j] = fit_symmetric(x + 16 * j, 16, 32);
            if (fabsf(scale[j]) > fabsf(max_scale)) {
                max_scale = scale[j];
            }
        }
        /* The largest scale maps to -128 so its sign uses the extra negative code. */
        float d = store_f16(b + Q6_K_D, clamp_scale(max_scale / -128.0f));
        int8_t *sc = (int8_t *)(b + Q6_K_SCALES);
        for (int j = 0; j < 16; j++) {
            sc[j] = (int8_t)(d != 0.0f ? round_even_clamp(scale[j] / d, -128, 127) : 0);
        }
        uint8_t q[PD_QK_K];
        for (int j = 0; j < 16; j++) {
            float s = d * (float)sc[j];
            float inv = s != 0.0f ? 1.0f / s : 0.0f;
            for (int l = 0; l < 16; l++) {
                q[16 * j + l] = (uint8_t)(round_even_clamp(x[16 * j + l] * inv, -32, 31) + 32);
            }
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = b + Q6_K_QL + 64 * h;
            uint8_t *qh = b + Q6_K_QH + 32 * h;
            const uint8_t *qq = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                int q0 = qq[l], q1 = qq[32 + l], q2 = qq[64 + l], q3 = qq[96 + l];
                ql[l] = (uint8_t)((q0 & 0x0F) | ((q2 & 0x0F) << 4));
                ql[l + 32] = (uint8_t)((q1 & 0x0F) | ((q3 & 0x0F) << 4));
                qh[l] = (uint8_t)((q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) |
                                  ((q3 >> 4) << 6));
            }
        }
    }
}

/* Sum over sub-blocks of scale * sum((q - 32) * y) is computed as
 * sum(scale * sum(q * y)) - 32 * sum(scale * bsum): identical integers, but the inner
 * loop multiplies unsigned codes directly. */
float pd_q6_k_vec_dot(const void *w, const void *x, size_t n)
{
    assert(n % PD_QK_K == 0);
    const uint8_t *b = w;
    const uint8_t *y = x;
    float sum = 0.0f;
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q6_K_BYTES, y += Q8_K_BYTES) {
        const int8_t *sc = (const int8_t *)(b + Q6_K_SCALES);
        const int8_t *q8 = (const int8_t *)(y + Q8_K_QS);
        int32_t isum = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b + Q6_K_QL + 64 * h;
            const uint8_t *qh = b + Q6_K_QH + 32 * h;
            const int8_t *yq = q8 + 128 * h;
            int32_t s[8] = {0};
            for (int l = 0; l < 16; l++) {
                s[0] += ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) * yq[l];
                s[2] += ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) * yq[32 + l];
                s[4] += ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) * yq[64 + l];
                s[6] += ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) * yq[96 + l];
            }
            for (int l = 16; l < 32; l++) {
                s[1] += ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) * yq[l];
                s[3] += ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) * yq[32 + l];
                s[5] += ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) * yq[64 + l];
                s[7] += ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) * yq[96 + l];
            }
            for (int j = 0; j < 8; j++) {
                isum += s[j] * sc[8 * h + j];
            }
        }
        int16_t bsums[PD_QK_K / 16];
        load_bsums(y, bsums);
        int32_t bias = 0;
        for (int j = 0; j < PD_QK_K / 16; j++) {
            bias += bsums[j] * sc[j];
        }
        isum -= 32 * bias;
        sum += load_f16(b + Q6_K_D) * load_f32(y) * (float)isum;
    }
    return sum;
}

/* ---- q8_K (activations) ---------------------------------------------------------- */

void pd_q8_k_to_f32(const void *src, float *dst, size_t n)
{
    assert(n % PD_QK_K == 0);
    const uint8_t *b = src;
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q8_K_BYTES) {
        float d = load_f32(b);
        const int8_t *qs = (const int8_t *)(b + Q8_K_QS);
        for (int l = 0; l < PD_QK_K; l++) {
            dst[i * PD_QK_K + l] = d * (float)qs[l];
        }
    }
}

/* Reference rule: iscale = -127 / max (max: signed value of largest magnitude), q =
 * round-half-even(iscale * x) capped at 127, d = 1 / iscale (an f32, so no half
 * rounding), bsums[j] = sum of q[16j .. 16j+15]. */
void pd_q8_k_from_f32(const float *src, void *dst, size_t n)
{
    assert(n % PD_QK_K == 0);
    uint8_t *b = dst;
    for (size_t i = 0; i < n / PD_QK_K; i++, b += Q8_K_BYTES) {
        const float *x = src + i * PD_QK_K;
        float amax = 0.0f;
        float max = 0.0f;
        for (int l = 0; l < PD_QK_K; l++) {
            if (fabsf(x[l]) > amax) {
                amax = fabsf(x[l]);
                max = x[l];
            }
        }
        int8_t *qs = (int8_t *)(b + Q8_K_QS);
        int16_t bsums[PD_QK_K / 16] = {0};
        float d = 0.0f;
        if (amax > 0.0f && isfinite(amax)) {
            float iscale = -127.0f / max;
            for (int l = 0; l < PD_QK_K; l++) {
                qs[l] = (int8_t)round_even_clamp(iscale * x[l], -127, 127);
            }
            for (int j = 0; j < PD_QK_K / 16; j++) {
                int s = 0;
                for (int l = 0; l < 16; l++) {
                    s += qs[16 * j + l];
                }
                bsums[j] = (int16_t)s;
            }
            d = 1.0f / iscale;
        } else {
            memset(qs, 0, PD_QK_K);
        }
        memcpy(b, &d, 4);
        memcpy(b + Q8_K_BSUMS, bsums, sizeof bsums);
    }
}

/* ---- activation conversion ------------------------------------------------------- */
