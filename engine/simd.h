/* simd.h - the engine's inner-loop kernels, one table per SIMD level.
 *
 * The forward pass spends its time in two places: the weight products (a weight matrix
 * times a batch of activation rows: pd_simd_gemm, built on the dtype traits' block dot
 * products, dtype.h) and the attention loops over the KV cache (kvcache.h). Both go
 * through the table of the level chosen at run time (cpu.h): the portable C kernels of
 * quant.c and simd.c, the AVX2+FMA+F16C kernels of quant_x86.c, or the AVX-512+VNNI ones
 * of quant_avx512.c (which inherits the AVX2 kernels it does not replace). Each is
 * compiled per function for its target so the rest of the build stays baseline x86-64.
 *
 * Contract of every kernel against its portable counterpart (tests/test_simd.c):
 * - integer work is identical: the q8_0/q4_0 block sums and K-quant sub-block sums are
 *   exact integers at every level (no saturating shortcuts), for any block contents;
 * - the K-quant dot products combine those integers with the block scales in the same
 *   float operations in the same order, so they are bit-identical;
 * - the float dot products (f32, f16, bf16, q8_0, q4_0, KV dot) may sum in another
 *   order and use fused multiply-adds: equal to float rounding, not bit for bit;
 * - activation quantisers and conversions (f32 -> q8_0, q8_K, f16; f16 -> f32) and the
 *   KV axpy are bit-identical (f16 -> f32 may differ only in a NaN's payload);
 * - a tiled matrix product (gemm) gives, for every (row, token), what the level's vec_dot
 *   gives for that pair under the same rules: bit-identical to the portable dot for the
 *   K-quants (so the batch a token is evaluated in never changes its K-quant products),
 *   within the float summation bound for the other types.
 *
 * Ownership: the tables are static and immutable. Thread-safety: all functions are
 * pure; pd_simd_ops() decides once (thread-safe) and then only reads. */
#ifndef PD_SIMD_H
#define PD_SIMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu.h"
#include "dtype.h"

/* Returns sum(q[i] * k[i]) for i < n (any n, including 0). q, k borrowed for the call. */
typedef float (*pd_simd_dot_f32_fn)(const float *q, const float *k, size_t n);
/* As above with k stored as IEEE halves. */
typedef float (*pd_simd_dot_f16_fn)(const float *q, const uint16_t *k, size_t n);
/* acc[i] = fmaf(w, v[i], acc[i]) for i < n: one rounding per element, at every level. */
typedef void (*pd_simd_axpy_f32_fn)(float w, const float *v, float *acc, size_t n);
/* As above with v stored as IEEE halves. */
typedef void (*pd_simd_axpy_f16_fn)(float w, const uint16_t *v, float *acc, size_t n);

/* p[s] = expf(p[s] - mx) for s < n (a slot holding -inf becomes 0); returns the sum of
 * the new p[s] in double, added in slot order. p borrowed for the call. */
typedef double (*pd_simd_exp_sum_fn)(float *p, uint32_t n, float mx);
/* h[i] = g[i] / (1 + expf(-g[i])) * u[i] for i < n (SwiGLU). Pointers borrowed. */
typedef void (*pd_simd_swiglu_fn)(float *h, const float *g, const float *u, size_t n);

/* The sums of a log-softmax over the logits x[0..n): returns mx, the largest x (NaN
 * ignored; -inf for n = 0 or no finite value, and then both sums are 0); with e_i =
 * expf(x_i - mx) (the difference and the exponential in float) and d_i = (double)x_i - mx,
 * *sum = sum(e_i) and *wsum = sum(e_i * d_i) over the terms with e_i > 0, each added in
 * double in pd_sum16_tree's order (element i to part i % 16). x borrowed for the call. */
typedef float (*pd_simd_logit_sums_fn)(const float *x, size_t n, double *sum, double *wsum);

/* The sum of the squares x[i] * x[i] (each rounded to float) for i < n, added in double
 * in pd_sum16_tree's order: the RMS norm's mean square. x borrowed for the call. */
typedef double (*pd_simd_sum_sq_fn)(const float *x, size_t n);

/* m[s] = (rows[s] + rows[stride + s] + ... over n_head rows, added in row order) times
 * (1 / n_head) for s < n: the head-mean attention row of the capture. Pointers borrowed;
 * m must not overlap rows. */
typedef void (*pd_simd_head_mean_fn)(float *m, const float *rows, size_t stride,
                                     uint32_t n_head, uint32_t n);

/* One weight matrix times a batch of activation rows: y[t * y_stride + r] = dot(row r of w,
 * row t of x). Pointers are borrowed for the call. */
struct pd_gemm_args {
    const uint8_t *w;  /* weight rows in the weight type, w_stride bytes apart */
    size_t w_stride;
    const uint8_t *x;  /* n_tok activation rows in the type's vec_dot_type, x_stride apart */
    size_t x_stride;
    float *y;          /* outputs; rows of different calls may share a y row */
    size_t y_stride;   /* floats between the outputs of consecutive tokens */
    size_t n;          /* elements per row (a multiple of the type's block size) */
    size_t n_tok;
    size_t w_rows;     /* rows of the whole weight matrix, for fetching ahead (0: unknown,
                        * nothing past the computed rows is fetched) */
    bool packed;       /* w is in the level's packed layout of the type (pack below), made
                        * by pack(w_rows rows); row ranges then need not be whole blocks */
};

/* The most blocks per row the packed products of the 32-element types (q8_0, q4_0, q5_0,
 * q4_1, q5_1) take on either x86 level: their activation sums, one int32 per block and
 * token, live on the stack (64 KiB). Longer rows stay in the file's layout, for the
 * tiles. */
#define PD_PACKED_SX 16384

/* Whether a packed decode stream fetches ahead into the second-level cache instead of the
 * first: where the CPU gains from it (pd_cpu_prefetch_l2), for a matrix of PD_PF_L2_BYTES
 * or more, which does not stay in a core's near caches between tokens and comes from far
 * away, where the more misses the second level keeps in flight pay (0.55 GB q4_K model, 2
 * threads: AVX2 decode +29%, AVX-512 +7-19%); a smaller one (the bench models') is read
 * from the last-level cache, where fetching into the first level was 5-14% faster. Only
 * for decode-sized batches (PD_PF_L2_TOKENS): a prefill product waits on arithmetic, not
 * memory, and the AVX2 one ran 2-6% slower fetching into L2. */
#define PD_PF_L2_BYTES ((size_t)1 << 20)
#define PD_PF_L2_TOKENS 4
static inline bool pd_pf_l2(const struct pd_gemm_args *g)
{
    return g->n_tok <= PD_PF_L2_TOKENS && g->w_rows * g->w_stride >= PD_PF_L2_BYTES &&
           pd_cpu_prefetch_l2();
}

/* The f16/bf16 prefill products widen whole blocks of `block` rows to floats once for all
 * tokens (quant_avx512.c's half_wide, quant_x86.c's half8_wide). The rows [r0, end) they
 * take: whole blocks from r0 in the file's layout, or from r0 on a block boundary up to
 * the last whole block in a packed one; none (end = r0) for fewer than 4 tokens. */
static inline size_t pd_half_wide_end(const struct pd_gemm_args *g, size_t r0, size_t r1,
                                      size_t block, bool packed)
{
    size_t whole = g->w_rows / block * block;
    size_t end = packed && r1 > whole ? whole : r1;
    if (g->n_tok < 4 || r0 + block > end || (packed && r0 % block)) {
        return r0;
    }
    return r0 + (end - r0) / block * block;
}

/* g with the widened block wf (`block` rows) as its weights and its outputs from row r. */
static inline struct pd_gemm_args pd_half_wide_args(const struct pd_gemm_args *g,
                                                    const float *wf, size_t r, size_t block)
{
    struct pd_gemm_args h = *g;
    h.w = (const uint8_t *)wf;
    h.w_rows = block;
    h.y = g->y + r;
    return h;
}

/* Attention of a few queries that read the same KV head (the query heads of a GQA group,
 * for one or more tokens). Query i sees slots [0, n_vis[i]) (the caller has already
 * excluded later positions: slots are sorted by position). For each query it writes the
 * softmax of scale * (q . k_s) over its visible slots to p[i][0 .. n_vis[i]) and the
 * probability-weighted sum of the V rows to o[i][0 .. head_dim_v). Pointers are borrowed
 * for the call; rows of different queries never overlap. */
/* Slots ahead of the one being read whose K and V rows every attention loop prefetches:
 * decode reads one KV head's slice of every slot, a strided walk the hardware fetches too
 * late (16 and 64 were no faster than 32 on the development machine). */
#define PD_ATTN_PF_SLOTS 32

/* Prefetches the n bytes at p (a K or V row of one head) into the near caches. */
static inline void pd_prefetch(const void *p, size_t n)
{
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)63, e = (uintptr_t)p + n;
    for (; a < e; a += 64) {
        __builtin_prefetch((const void *)a, 0, 3);
    }
}

/* x[i] += y[i] for i < n; the rows must not overlap. Blocks of 16 the compiler vectorises
 * at -O2 (its cheapest cost model takes only loops with no remainder), then the rest. */
static inline void pd_add_row(float *restrict x, const float *restrict y, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int j = 0; j < 16; j++) {
            x[i + j] += y[i + j];
        }
    }
    for (; i < n; i++) {
        x[i] += y[i];
    }
}

struct pd_attn_args {
    uint32_t n_q;
    const float *const *q;   /* [n_q] query rows of head_dim floats */
    float *const *p;         /* [n_q] probability rows */
    float *const *o;         /* [n_q] output rows of head_dim_v floats */
    const uint32_t *n_vis;   /* [n_q] visible slots, each >= 1 */
    const void *k;           /* slot 0's K row of this head (f16 or f32, see f16) */
    const void *v;           /* slot 0's V row of this head */
    size_t k_stride;         /* elements between the K rows of consecutive slots */
    size_t v_stride;
    uint32_t head_dim;
    uint32_t head_dim_v;
    float scale;
    bool f16;                /* K/V stored as IEEE halves, else floats */
    /* Slots hidden from the queries (a shadow policy's divergence): NULL, or per slot
     * nonzero where slot s is hidden from every query at another position (slot_pos[s] !=
     * q_pos[i]); a hidden slot's probability is 0. The blocked kernels decline such
     * calls. */
    const uint8_t *hide;
    const int64_t *slot_pos; /* [slots] with hide */
    const int64_t *q_pos;    /* [n_q] with hide */
};

/* Returns false, having written nothing, for a shape it does not handle. */
typedef bool (*pd_simd_attn_fn)(const struct pd_attn_args *a);

/* The slots every one of queries [q0, q0 + nq) sees (nq >= 1): the blocked kernels sum
 * that prefix for the queries together and each query's remainder alone. */
static inline uint32_t pd_attn_common(const struct pd_attn_args *a, uint32_t q0, uint32_t nq)
{
    uint32_t common = a->n_vis[q0];
    for (uint32_t i = 1; i < nq; i++) {
        common = a->n_vis[q0 + i] < common ? a->n_vis[q0 + i] : common;
    }
    return common;
}

/* Computes the outputs of weight rows [r0, r1) for every token of g. Pure apart from the
 * writes to those outputs, so threads may run disjoint row ranges at once. */
typedef void (*pd_gemm_fn)(const struct pd_gemm_args *g, size_t r0, size_t r1);

/* Rewrites `rows` weight rows of row_bytes bytes each (the file's layout, at w) into the
 * level's packed layout at out: the same number of bytes, which its gemm reads in one
 * stream instead of one stream per row (pd_gemm_args.packed). */
typedef void (*pd_pack_fn)(const uint8_t *w, size_t rows, size_t row_bytes, uint8_t *out);

struct pd_simd_ops {
    enum pd_simd_level level;
    /* Per tensor type, replacements for the reference functions of the dtype traits;
     * NULL keeps the reference (pd_simd_traits applies them once). */
    pd_vec_dot_fn vec_dot[PD_DTYPE_COUNT];
    pd_from_f32_fn from_f32[PD_DTYPE_COUNT];
    pd_to_f32_fn to_f32[PD_DTYPE_COUNT];
    /* Per weight type, a register-tiled matrix product; NULL: one vec_dot per (row, token)
     * (pd_simd_gemm supplies that loop). */
    pd_gemm_fn gemm[PD_DTYPE_COUNT];
    /* Per weight type, a packed layout for gemm (NULL: gemm reads the file's layout; a
     * type with a pack has a gemm). */
    pd_pack_fn pack[PD_DTYPE_COUNT];
    /* Attention over the KV cache (kvcache.h); never NULL. */
    pd_simd_dot_f32_fn kv_dot_f32;
    pd_simd_dot_f16_fn kv_dot_f16;
    pd_simd_axpy_f32_fn kv_axpy_f32;
    pd_simd_axpy_f16_fn kv_axpy_f16;
    /* Blocked attention for a query group; NULL: pd_simd_attn's per-query loop over the
     * kernels above. */
    pd_simd_attn_fn attn;
    /* The softmax's exponentials and the SwiGLU, vectorised; NULL: expf per element
     * (pd_simd_exp_sum, pd_simd_swiglu). A level's version returns what the C library's
     * expf gives, element by element, so both are bit-identical to the reference where
     * the library is the one they follow (glibc on FMA machines; test_simd) and within
     * an ulp of expf elsewhere. */
    pd_simd_exp_sum_fn exp_sum;
    pd_simd_swiglu_fn swiglu;
    /* The capture's head-mean row, vectorised (the same adds per slot, so bit-identical);
     * NULL: pd_simd_head_mean's loop. */
    pd_simd_head_mean_fn head_mean;
    /* The probe's log-softmax sums over the vocabulary, vectorised (the same exponentials
     * as the exp_sum above, the same double adds, so bit-identical); NULL:
     * pd_simd_logit_sums' loop. */
    pd_simd_logit_sums_fn logit_sums;
    /* The RMS norm's sum of squares, vectorised (the same double adds, so bit-identical);
     * NULL: pd_simd_sum_sq's loop. */
    pd_simd_sum_sq_fn sum_sq;
};

/* t's traits (dtype.h) with the kernels of pd_simd_ops() in place of the reference ones
 * where that table has them; built once, thread-safe. t must be < PD_DTYPE_COUNT. */
const struct pd_dtype_traits *pd_simd_traits(enum pd_dtype t);

/* Computes rows [r0, r1) of the product g for weights of type t with the kernels of `ops`
 * (a level's table): its tiled gemm where it has one, else one vec_dot per (row, token).
 * Thread-safe for disjoint row ranges. */
void pd_simd_gemm(const struct pd_simd_ops *ops, enum pd_dtype t, const struct pd_gemm_args *g,
                  size_t r0, size_t r1);

/* Runs a with the kernels of `ops`: its blocked attention where it has one for the shape,
 * else, per query, one kv_dot per slot, the level's exp_sum (expf in float, the sum in
 * double in pd_sum16_tree's order), and one kv_axpy per slot (the reference). A blocked kernel gives bit for bit the results of
 * that per-query loop over its own table's kernels, so switching it on or off changes no
 * output; against the scalar table both agree within float rounding (probabilities
 * relative to their size, outputs relative to sum(p * |v|)). Thread-safe for disjoint
 * outputs. */
void pd_simd_attn(const struct pd_simd_ops *ops, const struct pd_attn_args *a);

/* The order in which every level sums a row in double (the softmax's denominator, the
 * RMS norm's squares): element i is added to part[i % 16] (all 16 start at +0.0), then
 * part[i] += part[i + w] for i < w, w = 8, 4, 2, 1, and part[0] is the sum. An AVX-512
 * level holds the parts in two registers of 8 doubles and halves them the same way; 16
 * independent chains also keep the portable loop from waiting on one add after another.
 * Consumes part. */
static inline double pd_sum16_tree(double part[16])
{
    for (int w = 8; w >= 1; w /= 2) {
        for (int i = 0; i < w; i++) {
            part[i] += part[i + w];
        }
    }
    return part[0];
}

/* The softmax exponentials and SwiGLU of `ops` (see its exp_sum and swiglu). */
double pd_simd_exp_sum(const struct pd_simd_ops *ops, float *p, uint32_t n, float mx);
void pd_simd_swiglu(const struct pd_simd_ops *ops, float *h, const float *g, const float *u,
                    size_t n);

void pd_simd_head_mean(const struct pd_simd_ops *ops, float *m, const float *rows,
                       size_t stride, uint32_t n_head, uint32_t n);

/* The log-softmax sums of `ops` (see pd_simd_logit_sums_fn and its logit_sums). */
float pd_simd_logit_sums(const struct pd_simd_ops *ops, const float *x, size_t n, double *sum,
                         double *wsum);

/* The sum of squares of `ops` (see pd_simd_sum_sq_fn and its sum_sq). */
double pd_simd_sum_sq(const struct pd_simd_ops *ops, const float *x, size_t n);

/* The table of pd_cpu_simd_level(); never NULL. Decided on the first call. */
const struct pd_simd_ops *pd_simd_ops(void);

/* The table of `level` if this build contains it, else NULL. Running its kernels needs
 * pd_cpu_simd_best() >= level (tests compare levels through this). */
const struct pd_simd_ops *pd_simd_ops_for(enum pd_simd_level level);

#if defined(__x86_64__)
/* The AVX2+FMA+F16C table, defined in quant_x86.c (reach it through the functions above). */
extern const struct pd_simd_ops pd_simd_ops_avx2;
/* The kernels the AVX-512 level adds, defined in quant_avx512.c; NULL entries are filled
 * from the AVX2 table when simd.c builds the level's table (reach it through
 * pd_simd_ops_for). */
extern const struct pd_simd_ops pd_simd_ops_avx512_own;
/* sx[t * nb + i] = the sum of the 32 codes of q8_0 block i of activation row t, for nt
 * rows of nb blocks (stride x_stride bytes) at x: the activation sums of the packed q4_0
 * products of both x86 levels (an AVX2 function: call it only where that level runs). */
void pd_avx2_q8_0_sums(const uint8_t *x, size_t x_stride, size_t nt, size_t nb, int32_t *sx);
#endif

#endif
