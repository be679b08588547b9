/* pd_cuda.h - the C ABI of ponder's kernel library: a table of entry points for device,
 * memory, stream, graphs, and one entry per kernel over raw device pointers.
 *
 * Two providers fill the table from the same kernel sources (docs/gpu.md):
 *   pd_kernels_cuda()  the kernels/ .cu sources built by nvcc, cuBLAS for the GEMMs, in the
 *                      module ponder-cuda.so opened on the first call
 *                      (kernels/pd_kernels_load.c); NULL when ponder was built without CUDA
 *                      or the module does not load (pd_kernels_cuda_why() says which);
 *   pd_kernels_emu()   the same sources built by g++ against kernels/emu/pd_emu.h and run
 *                      on the CPU (a CPU stand-in replaces cuBLAS): tests, CI, and
 *                      `--backend cuda` with PONDER_CUDA_EMULATE=1 on machines without a GPU.
 * Both can be linked into one program (their C++ symbols live in different namespaces).
 * Only engine/backend_cuda*.c and the kernel tests include this header.
 *
 * Conventions. Pointers named d_* (and every pointer inside the pd_k_* descriptors) are
 * device pointers; h_* are host pointers (pinned when from host_alloc). Entries return 0
 * on success and -1 on a CUDA/cuBLAS error, with the message in last_error(). Work is
 * queued on the provider's one stream in call order; sync() waits for it. Values that
 * change per token (positions, slot counts, the token id) are read by the kernels from a
 * device int32 parameter array (d_par) at the indices the descriptors name, so a captured
 * CUDA graph replays correctly with new parameters. Not thread-safe: the engine worker
 * owns the device. */
#ifndef PD_CUDA_H
#define PD_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct pd_cuda_device {
    char name[256];
    size_t total_mem;       /* bytes */
    int sm_count;
    int cc_major, cc_minor; /* compute capability (0.0 on the emulator) */
    int emulated;           /* 1: the CPU emulator */
};

struct pd_cuda_graph;

/* Tensor element types, in the order of engine/dtype.h's enum pd_dtype. */
enum pd_k_type {
    PD_K_F32,
    PD_K_F16,
    PD_K_BF16,
    PD_K_Q8_0,
    PD_K_Q4_0,
    PD_K_Q4_K,
    PD_K_Q5_K,
    PD_K_Q6_K,
    PD_K_Q8_K,
    PD_K_Q5_0, /* not read on the device: the engine refuses these three */
    PD_K_Q4_1,
    PD_K_Q5_1,
    PD_K_Q8_1,
    PD_K_TYPE_COUNT
};

struct pd_k_mat {
    const void *w;    /* [rows][row_bytes] GGUF blocks */
    size_t row_bytes;
    int rows;
    float *y;         /* [rows] output */
    const float *bias;/* [rows] or NULL */
};

enum pd_k_mv_mode {
    PD_K_MV_SET,      /* y = W x (+ bias) for each matrix */
    PD_K_MV_ADD,      /* y += W x: the residual add, read and written by one thread */
    PD_K_MV_SWIGLU,   /* m[0] gate, m[1] up (same rows): m[0].y = g / (1 + expf(-g)) * u */
};

/* Up to 3 matrices of the same type and width sharing activation rows xq (already in the
 * type's dot format), one launch; each output element is one block's dot products summed
 * by a tree, every block's contribution bit-identical to the CPU's vec_dot. n_col token
 * columns (0 counts as 1, at most PD_K_MV_COLS): column c reads xq + c * xq_stride bytes
 * and writes y + c * y_stride floats of each matrix, with exactly the arithmetic of a
 * one-column launch, so a batch equals its tokens one at a time bit for bit. */
#define PD_K_MV_COLS 8
struct pd_k_matvec {
    int type;          /* weight type (enum pd_k_type, not Q8_K) */
    int cols;
    const void *xq;    /* activation in vec_dot format */
    struct pd_k_mat m[3];
    int n_mat;
    int mode;          /* enum pd_k_mv_mode */
    int n_col;
    size_t xq_stride, y_stride;
};

/* Per-head RMSNorm (Qwen3, when q_norm/k_norm), RoPE and the KV store for n_tok tokens
 * (0 counts as 1): token t's q [n_head][hd] (row t of q, stride q_stride floats) is rotated
 * in place; its k [n_head_kv][hd] is rotated and written with its v [n_head_kv][hd_v] as f16
 * into slot s = d_par[slot_index] + t of the layer's cache, and pos_cache[s] =
 * d_par[pos_index] + t. */
struct pd_k_rope {
    float *q;
    const float *k, *v;
    const float *q_norm, *k_norm; /* [hd] or NULL */
    const float *freq_div;        /* [n_rot/2] rope_freqs, or NULL */
    uint16_t *k_cache, *v_cache;  /* [cap][n_head_kv * hd], [cap][n_head_kv * hd_v] */
    int32_t *pos_cache;           /* [cap] */
    const int32_t *d_par;
    int slot_index, pos_index;
    int n_head, n_head_kv, hd, hd_v, n_rot;
    int neox;                     /* 1: pairs (i, i + n_rot/2); 0: (2i, 2i+1) */
    float theta_scale;            /* powf(base, -2/n_rot) computed on the host */
    float freq_scale, eps;
    int n_tok;
    size_t q_stride, k_stride, v_stride; /* floats between tokens' rows (n_tok > 1) */
};

#define PD_K_ATTN_PART 256 /* slots per split-KV partition */

/* Split-KV attention for n_tok query tokens (0 counts as 1) over physical slots of a
 * layer: query t sees slots [0, n_t), n_t = d_par[nslots_index] + t, at position pos_t =
 * d_par[pos_index] + t; slots with pos < 0 (evicted), pos > pos_t, or hide[s] != 0 (other
 * than the query's own) get no weight. Writes o [n_head][hd_v] per query (row t at
 * t * o_stride); when e is set also e[h][s] = expf(s_hs - m_hp) (the partition's
 * unnormalised weights) and always c[h][p] such that prob(h, s) = e[h][s] * c[h][s / PART]
 * (query t's e and c at t * e_tstride and t * c_tstride floats). The scratch holds
 * n_tok * n_head * n_part entries. n_part partitions are launched (the graph bucket);
 * those past n_t exit at once. Limits: n_head / n_head_kv <= 16, (n_head / n_head_kv) *
 * hd <= 4096. */
struct pd_k_attn {
    const float *q;               /* [n_head][hd] */
    const uint16_t *k_cache, *v_cache;
    const int32_t *pos_cache;
    const uint8_t *hide;          /* [cap] or NULL */
    const int32_t *d_par;
    int nslots_index, pos_index;
    float *o;                     /* [n_head][hd_v] */
    float *e;                     /* [n_head][e_stride] or NULL */
    size_t e_stride;
    float *c;                     /* [n_head][n_part] */
    float *opart;                 /* scratch [n_head][n_part][hd_v] */
    float *mpart;                 /* scratch [n_head][n_part] */
    double *lpart;                /* scratch [n_head][n_part] */
    int n_head, n_head_kv, hd, hd_v, n_part;
    float scale;
    int n_tok;
    size_t q_stride, o_stride;    /* floats between queries' rows */
    size_t e_tstride, c_tstride;  /* floats between queries' e and c */
};

/* One summary entry: a position and its head-mean attention weight. */
struct pd_k_top {
    uint32_t pos;
    float weight;
};

/* Per layer l < n_layer, from the decode attention's e/c of that layer (probabilities
 * prob(h, s) = e[h][s] * c[h][s / PART] over slots s < n_l = d_par[nslots_index + l]):
 *   mean(s) = (sum over h ascending of prob) * (1/n_head)   (capture.c's head-mean row)
 *   top:   the top_n (position, mean) pairs, weight > 0, weight descending then position
 *          ascending (capture.c's order); unused entries are (0xFFFFFFFF, 0). The host
 *          writes them into the summary blob through the blob codec (attn_blob.h).
 *   cum:   cum[l][pos(s)] += mean(s) (positions < cum_cap)
 *   smass: smass[l][k] = sum of mean(s) * (1/n_layer) over the slots of step k (steps[k] <=
 *          pos < steps[k+1]; n_steps = d_par[nsteps_index])
 *   rows_mean: [l][s] = (sum of prob) / n_head (the policy's head mean; 0 for invalid slots)
 *   rows_head: [l][h][s] = prob; full: [l][h][s] = prob for layers in full_mask (all
 *          layers, also those >= 64, when full_mask is all ones)
 * Each output is skipped when its pointer is NULL. */
struct pd_k_capture {
    const float *e;               /* [n_layer][n_head][e_stride] */
    const float *c;               /* [n_layer][n_head][n_part] */
    size_t e_stride;
    int n_part;
    const int32_t *pos_cache;     /* [n_layer][cap] */
    size_t cap;
    const int32_t *d_par;
    int nslots_index, nsteps_index;
    int n_layer, n_head;
    struct pd_k_top *top;         /* [n_layer][top_n] */
    int top_n;                    /* 1..64 */
    float *cum;                   /* [n_layer][cum_cap] */
    size_t cum_cap;
    const int32_t *steps;         /* [n_steps] ascending first positions */
    float *smass;                 /* [n_layer][steps_cap] */
    size_t steps_cap;
    float *rows_mean;             /* [n_layer][cap] */
    float *rows_head;             /* [n_layer][n_head][cap] */
    float *full;                  /* [n_layer][n_head][cap] */
    uint64_t full_mask;
    /* Several queries per launch (prefill; n_tok 0 counts as 1): query t uses e and c at
     * t * e_tstride / c_tstride, sees n_l + t slots, writes top and smass at t * top_tstride
     * / smass_tstride, head-mean rows at t * rows_tstride (required then), and adds to cum
     * with atomics (the queries share positions); per-head rows and full rows are not
     * supported then. n_layer_total: the model's layers when a launch covers fewer (its
     * pointers and nslots_index already offset to the first one); the step mass divides by
     * it (0: n_layer). */
    int n_tok;
    size_t e_tstride, c_tstride, top_tstride, smass_tstride;
    int n_layer_total;
    size_t rows_tstride;
};

#define PD_K_TOPK_MAX 20
#define PD_K_PROBE_BLOCKS 64

/* The distribution of one logits row (temperature 1): the CPU probe's quantities. */
struct pd_k_probe_out {
    double lse;          /* max + log(sum exp(x - max)), sums in double */
    double entropy;      /* bits, >= 0 */
    float max;
    int32_t argmax;      /* lowest id among the maxima */
    float target_logit;  /* logits[target] (NAN without a target) */
    int32_t n_top;
    int32_t top_id[PD_K_TOPK_MAX];      /* highest logits, lowest id first on ties */
    float top_logit[PD_K_TOPK_MAX];
};

struct pd_kernels {
    const char *build; /* "cuda" or "emulator" */

    /* ---- device, memory, stream ---- */
    /* Number of usable devices; 0 without a driver or device. */
    int (*device_count)(void);
    int (*device_query)(int dev, struct pd_cuda_device *out);
    /* Last error message (static storage, overwritten by the next failure). */
    const char *(*last_error)(void);
    /* Creates the stream (and the cuBLAS handle) on device dev; idempotent. */
    int (*init)(int dev);
    void (*shutdown)(void);
    int (*mem_info)(size_t *free_bytes, size_t *total_bytes);
    int (*dev_alloc)(void **d_ptr, size_t bytes);
    void (*dev_free)(void *d_ptr);                  /* NULL accepted */
    int (*host_alloc)(void **h_ptr, size_t bytes);  /* pinned host memory */
    void (*host_free)(void *h_ptr);                 /* NULL accepted */
    int (*upload)(void *d_dst, const void *h_src, size_t bytes);   /* queued */
    int (*download)(void *h_dst, const void *d_src, size_t bytes); /* queued */
    int (*copy)(void *d_dst, const void *d_src, size_t bytes);     /* queued */
    int (*memset)(void *d_dst, int byte, size_t bytes);            /* queued */
    int (*sync)(void);

    /* ---- graphs and timing ---- */
    /* Starts recording the stream's work into a graph (nothing runs until launched). */
    int (*graph_begin)(void);
    /* Ends the recording and instantiates it; *g is owned by the caller. */
    int (*graph_end)(struct pd_cuda_graph **g);
    int (*graph_launch)(struct pd_cuda_graph *g);
    size_t (*graph_nodes)(const struct pd_cuda_graph *g);
    void (*graph_free)(struct pd_cuda_graph **g); /* NULL accepted; NULLs *g */
    /* Milliseconds of stream time between the two calls (timer_stop synchronises). */
    int (*timer_start)(void);
    int (*timer_stop)(float *ms);
    /* Device memory bandwidth from a copy kernel over 2 * bytes (read + write), best of
     * reps after a warm-up. */
    int (*bandwidth)(size_t bytes, int reps, double *bytes_per_s);

    /* ---- elementwise and conversions ---- */
    /* Rows i < n_rows: out[i][0..n) = x[i] * (1/sqrtf(mean(x[i]^2) + eps)) * w (squares in
     * float, sum in double, as the CPU). Strides in floats. */
    int (*rmsnorm)(const float *d_x, size_t x_stride, const float *d_w, float *d_out,
                   size_t out_stride, int n, int n_rows, float eps);
    /* Converts rows of n floats to a dot format (F32, F16, BF16, Q8_0, Q8_K)
     * byte-identical to the CPU's
     * quantiser (dtype.h from_f32); n is a multiple of the format's block. */
    int (*quant)(int dot_type, const float *d_x, size_t x_stride, void *d_q, size_t q_stride,
                 int n, int n_rows);
    /* x[t][0..n_embd) = row d_par[id_index + t] of the embedding table (any weight type)
     * in the CPU's dequantisation arithmetic, t < n_tok. */
    int (*embed)(int type, const void *d_table, size_t row_bytes, int n_embd,
                 const int32_t *d_par, int id_index, int n_tok, float *d_x, size_t x_stride);
    /* Dequantises rows [0, rows) of a weight matrix to f16 (prefill GEMM operand). */
    int (*dequant_f16)(int type, const void *d_w, size_t row_bytes, int rows, int cols,
                       uint16_t *d_out, size_t out_stride);
    /* The same to f32 (the CPU's values exactly); type may also be a dot format (Q8_0,
     * Q8_K: activations the CPU would have used, turned back into floats). */
    int (*dequant_f32)(int type, const void *d_w, size_t row_bytes, int rows, int cols,
                       float *d_out, size_t out_stride);
    /* f16 (or bf16) rounding of f32 rows of n (GEMM operand). */
    int (*round_f16)(const float *d_x, size_t x_stride, uint16_t *d_out, size_t out_stride,
                     int n, int n_rows, int bf16);
    /* h = g / (1 + expf(-g)) * u, rows of n. */
    int (*swiglu)(const float *d_g, const float *d_u, size_t in_stride, float *d_h,
                  size_t h_stride, int n, int n_rows);
    /* y[r][i] += x[r][i] (when x) + b[i] (when b), rows of n. */
    int (*add)(float *d_y, size_t y_stride, const float *d_x, size_t x_stride,
               const float *d_b, int n, int n_rows);

    /* ---- decode ---- */
    int (*matvec)(const struct pd_k_matvec *mv);
    int (*rope_store)(const struct pd_k_rope *r);
    int (*attn_decode)(const struct pd_k_attn *a);
    int (*capture)(const struct pd_k_capture *cp);
    /* Probes rows r < n_rows of logits [n_rows][n_vocab]: out[r]; the target of row r is
     * d_par[target_index + r] (< 0: none; d_par NULL: none). The scratch holds
     * probe_scratch_bytes(n_rows) bytes and must be zeroed once before first use (its
     * tickets return to zero after every launch). */
    size_t (*probe_scratch_bytes)(int n_rows);
    int (*probe)(const float *d_logits, int n_vocab, int n_rows, int top_k,
                 const int32_t *d_par, int target_index, void *d_scratch,
                 struct pd_k_probe_out *d_out);

    /* ---- KV cache ---- */
    /* For each layer l < n_layer, pos[l * cap + slot] = -1 for the d_par[list_index + l *
     * list_stride] slots listed after that count. */
    int (*kv_invalidate)(int32_t *d_pos, size_t cap, int n_layer, const int32_t *d_par,
                         int list_index, int list_stride);
    /* Moves n rows of one layer, row src[i] -> dst[i] for K (dim_k halves), V (dim_v) and
     * pos, through the scratch (overlapping moves are safe). */
    int (*kv_move)(uint16_t *d_k, uint16_t *d_v, int32_t *d_pos, int dim_k, int dim_v,
                   const int32_t *d_src, const int32_t *d_dst, int n, uint16_t *d_scratch_k,
                   uint16_t *d_scratch_v, int32_t *d_scratch_pos);

    /* ---- GEMM (prefill) ---- */
    /* C[n][m] (row stride ldc floats) = beta * C + A[m][k] . B[n][k]^T: for each of the n
     * activation rows, the m outputs of the weight rows. A and B f16 (bf16 when bf16 is
     * set), f32 accumulation (cublasGemmEx, CUBLAS_COMPUTE_32F); beta is 0 or 1. */
    int (*gemm_f16)(const uint16_t *d_a, size_t lda, const uint16_t *d_b, size_t ldb,
                    float *d_c, size_t ldc, int m, int n, int k, float beta, int bf16);
    /* Same with f32 operands (cublasSgemm in pedantic math: no TF32). */
    int (*gemm_f32)(const float *d_a, size_t lda, const float *d_b, size_t ldb, float *d_c,
                    size_t ldc, int m, int n, int k, float beta);
};

/* The providers (static tables; NULL when that provider was not built or not loaded). */
const struct pd_kernels *pd_kernels_cuda(void);
const struct pd_kernels *pd_kernels_emu(void);
/* Why pd_kernels_cuda() returned NULL ("" when it did not). */
const char *pd_kernels_cuda_why(void);
/* The CUDA module's one entry (table.cu in the nvcc build), found by pd_kernels_cuda(). */
const struct pd_kernels *pd_kernels_cuda_module(void);

#ifdef __cplusplus
}
#endif

#endif
