/* gemm.h - the trainer's compute kernels: a fork-join thread pool and a single-precision
 * matrix product whose results do not depend on the thread count or the SIMD path.
 *
 * DESIGN
 * Determinism.  Every output element C[i][j] is one sequential chain of fused
 *   multiply-adds over k = 0..K-1 (acc = fma(A[i][k], B[k][j], acc)), computed by exactly
 *   one thread. The AVX2 kernel runs eight such chains side by side in the lanes of a
 *   register (8 in AVX2, 16 in AVX-512, chosen at run time); the portable kernel runs them
 *   one by one with fmaf. All round the same way (an FMA rounds once), so a seed gives
 *   bit-identical training on any machine with any number of threads and any kernel.
 * Pool.  tr_pool_run(pool, n, fn, ctx) calls fn(ctx, i0, i1, thread) on disjoint ranges
 *   covering [0, n), the calling thread taking part; it returns when all are done. Ranges
 *   are fixed by (n, thread count) but fn must not depend on them for its results.
 *
 * Ownership: the pool owns its threads (tr_pool_close joins them).
 * Thread-safety: one thread drives a pool; kernels are reentrant. */
#ifndef TR_GEMM_H
#define TR_GEMM_H

#include <stdbool.h>
#include <stddef.h>

struct tr_pool;

/* n_threads >= 1 (1: no extra threads). NULL on failure. */
struct tr_pool *tr_pool_open(int n_threads);
void tr_pool_close(struct tr_pool **p);
int tr_pool_threads(const struct tr_pool *p);

typedef void (*tr_range_fn)(void *ctx, size_t i0, size_t i1, int thread);

/* Runs fn over [0, n) split into one contiguous range per thread. */
void tr_pool_run(struct tr_pool *p, size_t n, tr_range_fn fn, void *ctx);

/* C[M][N] = A[M][K] B[K][N] (acc: C += A B), row-major with leading dimensions lda, ldb,
 * ldc (in floats). serial: on the calling thread only; otherwise split over the pool.
 * Sizes may be anything >= 0 (K = 0 leaves C, or sets it to 0 without acc). */
void tr_gemm(struct tr_pool *p, size_t M, size_t N, size_t K, const float *A, size_t lda,
             const float *B, size_t ldb, float *C, size_t ldc, bool acc);
void tr_gemm_serial(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                    size_t ldb, float *C, size_t ldc, bool acc);

/* C[M][N] (+)= A^T B where A is stored [K][M] with leading dimension lda: the products
 * with a transposed left operand (weight gradients dY^T X, attention's P^T dO) without a
 * transposed copy. Same chains and determinism as tr_gemm. */
void tr_gemm_at(struct tr_pool *p, size_t M, size_t N, size_t K, const float *A, size_t lda,
                const float *B, size_t ldb, float *C, size_t ldc, bool acc);
void tr_gemm_at_serial(size_t M, size_t N, size_t K, const float *A, size_t lda,
                       const float *B, size_t ldb, float *C, size_t ldc, bool acc);

/* out[c][r] = in[r][c] for an R x C matrix with leading dimensions ld_in, ld_out. */
void tr_transpose(size_t R, size_t C, const float *in, size_t ld_in, float *out, size_t ld_out);

/* "avx2" or "portable": the kernel in use. */
const char *tr_gemm_kernel_name(void);
/* Forces the portable kernel (tests compare the two). */
void tr_gemm_force_portable(bool on);

#endif
