/* gemm.c - fork-join pool and deterministic SGEMM for the trainer (see gemm.h). */
#include "gemm.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define TR_HAVE_X86 1
#else
#define TR_HAVE_X86 0
#endif

/* ---- pool ---------------------------------------------------------------------------------- */

struct tr_pool {
    int n;                 /* threads including the caller */
    pthread_t *th;         /* owned [n - 1] */
    pthread_mutex_t lock;
    pthread_cond_t go;
    pthread_cond_t done;
    uint64_t gen;          /* job generation, bumped per run */
    int pending;           /* workers still running the current job */
    bool quit;
    tr_range_fn fn;
    void *ctx;
    size_t n_items;
};

struct worker_arg {
    struct tr_pool *p;
    int index;
};

static void run_share(struct tr_pool *p, int t)
{
    size_t i0 = p->n_items * (size_t)t / (size_t)p->n;
    size_t i1 = p->n_items * (size_t)(t + 1) / (size_t)p->n;
    if (i1 > i0) {
        p->fn(p->ctx, i0, i1, t);
    }
}

static void *worker(void *arg)
{
    struct worker_arg *wa = arg;
    struct tr_pool *p = wa->p;
    int t = wa->index;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->quit && p->gen == seen) {
            pthread_cond_wait(&p->go, &p->lock);
        }
        if (p->quit) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        seen = p->gen;
        pthread_mutex_unlock(&p->lock);
        run_share(p, t);
        pthread_mutex_lock(&p->lock);
        if (--p->pending == 0) {
            pthread_cond_signal(&p->done);
        }
        pthread_mutex_unlock(&p->lock);
    }
}

struct tr_pool *tr_pool_open(int n_threads)
{
    struct tr_pool *p = calloc(1, sizeof *p);
    if (!p) {
        return NULL;
    }
    p->n = n_threads < 1 ? 1 : n_threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    if (p->n > 1) {
        p->th = calloc((size_t)p->n - 1, sizeof *p->th);
        if (!p->th) {
            p->n = 1;
        }
    }
    for (int i = 1; i < p->n; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->p = p;
            wa->index = i;
        }
        if (!wa || pthread_create(&p->th[i - 1], NULL, worker, wa) != 0) {
            free(wa);
            p->n = i; /* run with the threads we have */
            break;
        }
    }
    return p;
}

void tr_pool_close(struct tr_pool **pp)
{
    if (!pp || !*pp) {
        return;
    }
    struct tr_pool *p = *pp;
    pthread_mutex_lock(&p->lock);
    p->quit = true;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n; i++) {
        pthread_join(p->th[i - 1], NULL);
    }
    free(p->th);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p);
    *pp = NULL;
}

int tr_pool_threads(const struct tr_pool *p)
{
    return p ? p->n : 1;
}

void tr_pool_run(struct tr_pool *p, size_t n, tr_range_fn fn, void *ctx)
{
    if (!p || p->n == 1 || n < 2) {
        if (n > 0) {
            fn(ctx, 0, n, 0);
        }
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n_items = n;
    p->pending = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->lock);
    run_share(p, 0);
    pthread_mutex_lock(&p->lock);
    while (p->pending > 0) {
        pthread_cond_wait(&p->done, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
}

/* ---- kernels ------------------------------------------------------------------------------- */

#define MR 6  /* rows of a register tile */
#define NR 16 /* columns of a register tile (two AVX2 registers) */
#define RB 24 /* rows of a parallel task: whole AVX2 (6) and AVX-512 (8) tiles */

static atomic_bool g_force_portable;

void tr_gemm_force_portable(bool on)
{
    atomic_store(&g_force_portable, on);
}

enum kernel {
    K_PORTABLE,
    K_AVX2,   /* AVX2 + FMA */
    K_AVX512, /* AVX-512F, with the AVX2 tiles for the columns left over */
};

static enum kernel pick_kernel(void)
{
#if TR_HAVE_X86
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        have = !avx2 ? K_PORTABLE : __builtin_cpu_supports("avx512f") ? K_AVX512 : K_AVX2;
        /* REASONER_GEMM=avx2 or portable picks a narrower kernel (same results, for
         * timing comparisons) */
        const char *env = getenv("REASONER_GEMM");
        if (env && strcmp(env, "avx2") == 0 && have == K_AVX512) {
            have = K_AVX2;
        } else if (env && strcmp(env, "portable") == 0) {
            have = K_PORTABLE;
        }
    }
    return atomic_load(&g_force_portable) ? K_PORTABLE : (enum kernel)have;
#else
    return K_PORTABLE;
#endif
}

const char *tr_gemm_kernel_name(void)
{
    static const char *const names[] = {"portable", "avx2", "avx512"};
    return names[pick_kernel()];
}

/* The tiles read A through two strides: element (row i, k) of the logical A is
 * A[i * ar + k * ak] (ar = lda, ak = 1 for A itself; ar = 1, ak = lda for the transpose of
 * a stored [K][M] matrix), so C = A^T B needs no transposed copy. */

/* The reference: each C element one fmaf chain over k. */
static void tile_portable(size_t mr, size_t nr, size_t K, const float *A, size_t ar, size_t ak,
                          const float *B, size_t ldb, float *C, size_t ldc, bool acc)
{
    for (size_t i = 0; i < mr; i++) {
        for (size_t j = 0; j < nr; j++) {
            float c = acc ? C[i * ldc + j] : 0.0f;
            for (size_t k = 0; k < K; k++) {
                c = fmaf(A[i * ar + k * ak], B[k * ldb + j], c);
            }
            C[i * ldc + j] = c;
        }
    }
}

#if TR_HAVE_X86
/* MR x NR tile: 12 accumulators, lane j of c<r><h> holds C[r][8h + j]. Named variables,
 * not an array, so that they stay in registers. */
__attribute__((target("avx2,fma"))) static void tile_avx2_6x16(size_t K, const float *A,
                                                                size_t ar, size_t ak,
                                                                const float *B, size_t ldb,
                                                                float *C, size_t ldc, bool acc)
{
#define LD(r, h) (acc ? _mm256_loadu_ps(C + (r) * ldc + 8 * (h)) : _mm256_setzero_ps())
    __m256 c00 = LD(0, 0), c01 = LD(0, 1), c10 = LD(1, 0), c11 = LD(1, 1);
    __m256 c20 = LD(2, 0), c21 = LD(2, 1), c30 = LD(3, 0), c31 = LD(3, 1);
    __m256 c40 = LD(4, 0), c41 = LD(4, 1), c50 = LD(5, 0), c51 = LD(5, 1);
#undef LD
    const float *ap = A;
    for (size_t k = 0; k < K; k++, ap += ak) {
        __m256 b0 = _mm256_loadu_ps(B + k * ldb);
        __m256 b1 = _mm256_loadu_ps(B + k * ldb + 8);
        __m256 a;
#define ROW(r)                                  \
    a = _mm256_broadcast_ss(ap + (r) * ar);     \
    c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);  \
    c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1)
        ROW(0);
        ROW(1);
        ROW(2);
        ROW(3);
        ROW(4);
        ROW(5);
#undef ROW
    }
#define ST(r)                                        \
    _mm256_storeu_ps(C + (r) * ldc, c##r##0);       \
    _mm256_storeu_ps(C + (r) * ldc + 8, c##r##1)
    ST(0);
    ST(1);
    ST(2);
    ST(3);
    ST(4);
    ST(5);
#undef ST
}

/* One row by NR columns (the rows left over below a multiple of MR). */
__attribute__((target("avx2,fma"))) static void tile_avx2_1x16(size_t K, const float *A,
                                                                size_t ak, const float *B,
                                                                size_t ldb, float *C, bool acc)
{
    __m256 c0 = acc ? _mm256_loadu_ps(C) : _mm256_setzero_ps();
    __m256 c1 = acc ? _mm256_loadu_ps(C + 8) : _mm256_setzero_ps();
    for (size_t k = 0; k < K; k++) {
        __m256 a = _mm256_broadcast_ss(A + k * ak);
        c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(B + k * ldb), c0);
        c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(B + k * ldb + 8), c1);
    }
    _mm256_storeu_ps(C, c0);
    _mm256_storeu_ps(C + 8, c1);
}

/* Columns left over right of a multiple of NR: scalar FMAs, same chains. */
__attribute__((target("avx2,fma"))) static void tile_fma_scalar(size_t mr, size_t nr, size_t K,
                                                                 const float *A, size_t ar,
                                                                 size_t ak, const float *B,
                                                                 size_t ldb, float *C,
                                                                 size_t ldc, bool acc)
{
    for (size_t i = 0; i < mr; i++) {
        for (size_t j = 0; j < nr; j++) {
            float c = acc ? C[i * ldc + j] : 0.0f;
            for (size_t k = 0; k < K; k++) {
                c = fmaf(A[i * ar + k * ak], B[k * ldb + j], c);
            }
            C[i * ldc + j] = c;
        }
    }
}

/* 8 x 32 tile for AVX-512: 16 accumulators, lane j of c<r><h> holds C[r][16h + j]. */
__attribute__((target("avx512f"))) static void tile_avx512_8x32(size_t K, const float *A,
                                                                 size_t ar, size_t ak,
                                                                 const float *B, size_t ldb,
                                                                 float *C, size_t ldc, bool acc)
{
#define LD(r, h) (acc ? _mm512_loadu_ps(C + (r) * ldc + 16 * (h)) : _mm512_setzero_ps())
    __m512 c00 = LD(0, 0), c01 = LD(0, 1), c10 = LD(1, 0), c11 = LD(1, 1);
    __m512 c20 = LD(2, 0), c21 = LD(2, 1), c30 = LD(3, 0), c31 = LD(3, 1);
    __m512 c40 = LD(4, 0), c41 = LD(4, 1), c50 = LD(5, 0), c51 = LD(5, 1);
    __m512 c60 = LD(6, 0), c61 = LD(6, 1), c70 = LD(7, 0), c71 = LD(7, 1);
#undef LD
    const float *ap = A;
    for (size_t k = 0; k < K; k++, ap += ak) {
        __m512 b0 = _mm512_loadu_ps(B + k * ldb);
        __m512 b1 = _mm512_loadu_ps(B + k * ldb + 16);
        __m512 a;
#define ROW(r)                                  \
    a = _mm512_set1_ps(ap[(r) * ar]);           \
    c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0);  \
    c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1)
        ROW(0);
        ROW(1);
        ROW(2);
        ROW(3);
        ROW(4);
        ROW(5);
        ROW(6);
        ROW(7);
#undef ROW
    }
#define ST(r)                                        \
    _mm512_storeu_ps(C + (r) * ldc, c##r##0);       \
    _mm512_storeu_ps(C + (r) * ldc + 16, c##r##1)
    ST(0);
    ST(1);
    ST(2);
    ST(3);
    ST(4);
    ST(5);
    ST(6);
    ST(7);
#undef ST
}

__attribute__((target("avx512f"))) static void tile_avx512_1x32(size_t K, const float *A,
                                                                 size_t ak, const float *B,
                                                                 size_t ldb, float *C, bool acc)
{
    __m512 c0 = acc ? _mm512_loadu_ps(C) : _mm512_setzero_ps();
    __m512 c1 = acc ? _mm512_loadu_ps(C + 16) : _mm512_setzero_ps();
    for (size_t k = 0; k < K; k++) {
        __m512 a = _mm512_set1_ps(A[k * ak]);
        c0 = _mm512_fmadd_ps(a, _mm512_loadu_ps(B + k * ldb), c0);
        c1 = _mm512_fmadd_ps(a, _mm512_loadu_ps(B + k * ldb + 16), c1);
    }
    _mm512_storeu_ps(C, c0);
    _mm512_storeu_ps(C + 16, c1);
}
#endif

/* A block of tiles: rows [i0, i1) x columns [j0, j1) of C. */
static void gemm_block(size_t i0, size_t i1, size_t j0, size_t j1, size_t K, const float *A,
                       size_t ar, size_t ak, const float *B, size_t ldb, float *C, size_t ldc,
                       bool acc, enum kernel kern)
{
#if TR_HAVE_X86
    if (kern == K_AVX512) {
        size_t jv = j0 + (j1 - j0) / 32 * 32;
        for (size_t j = j0; j < jv; j += 32) {
            size_t i = i0;
            for (; i + 8 <= i1; i += 8) {
                tile_avx512_8x32(K, A + i * ar, ar, ak, B + j, ldb, C + i * ldc + j, ldc, acc);
            }
            for (; i < i1; i++) {
                tile_avx512_1x32(K, A + i * ar, ak, B + j, ldb, C + i * ldc + j, acc);
            }
        }
        j0 = jv; /* the columns left over go through the AVX2 tiles */
        if (j0 == j1) {
            return;
        }
    }
    if (kern != K_PORTABLE) {
        size_t jv = j0 + (j1 - j0) / NR * NR;
        for (size_t j = j0; j < jv; j += NR) {
            size_t i = i0;
            for (; i + MR <= i1; i += MR) {
                tile_avx2_6x16(K, A + i * ar, ar, ak, B + j, ldb, C + i * ldc + j, ldc, acc);
            }
            for (; i < i1; i++) {
                tile_avx2_1x16(K, A + i * ar, ak, B + j, ldb, C + i * ldc + j, acc);
            }
        }
        if (jv < j1) {
            tile_fma_scalar(i1 - i0, j1 - jv, K, A + i0 * ar, ar, ak, B + jv, ldb,
                            C + i0 * ldc + jv, ldc, acc);
        }
        return;
    }
#else
    (void)kern;
#endif
    tile_portable(i1 - i0, j1 - j0, K, A + i0 * ar, ar, ak, B + j0, ldb, C + i0 * ldc + j0, ldc,
                  acc);
}

static void gemm_zero_k(size_t M, size_t N, float *C, size_t ldc, bool acc)
{
    if (!acc) {
        for (size_t i = 0; i < M; i++) {
            memset(C + i * ldc, 0, N * sizeof *C);
        }
    }
}

static void gemm_serial(size_t M, size_t N, size_t K, const float *A, size_t ar, size_t ak,
                        const float *B, size_t ldb, float *C, size_t ldc, bool acc)
{
    if (M == 0 || N == 0) {
        return;
    }
    if (K == 0) {
        gemm_zero_k(M, N, C, ldc, acc);
        return;
    }
    gemm_block(0, M, 0, N, K, A, ar, ak, B, ldb, C, ldc, acc, pick_kernel());
}

void tr_gemm_serial(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                    size_t ldb, float *C, size_t ldc, bool acc)
{
    gemm_serial(M, N, K, A, lda, 1, B, ldb, C, ldc, acc);
}

void tr_gemm_at_serial(size_t M, size_t N, size_t K, const float *A, size_t lda,
                       const float *B, size_t ldb, float *C, size_t ldc, bool acc)
{
    gemm_serial(M, N, K, A, 1, lda, B, ldb, C, ldc, acc);
}

struct gemm_job {
    size_t M, N, K, ar, ak, ldb, ldc;
    const float *A, *B;
    float *C;
    bool acc;
    enum kernel kern;
    size_t n_rb;      /* row blocks of RB rows */
    size_t n_cp;      /* column panels */
    size_t panel;     /* columns per panel (a multiple of NR) */
};

/* Tile t = (panel, row block), panel-major so that consecutive tiles share B's panel. */
static void gemm_tiles(void *ctx, size_t t0, size_t t1, int thread)
{
    (void)thread;
    const struct gemm_job *g = ctx;
    for (size_t t = t0; t < t1; t++) {
        size_t cp = t / g->n_rb, rb = t % g->n_rb;
        size_t i0 = rb * RB, i1 = i0 + RB < g->M ? i0 + RB : g->M;
        size_t j0 = cp * g->panel, j1 = j0 + g->panel < g->N ? j0 + g->panel : g->N;
        gemm_block(i0, i1, j0, j1, g->K, g->A, g->ar, g->ak, g->B, g->ldb, g->C, g->ldc, g->acc,
                   g->kern);
    }
}

static void gemm_par(struct tr_pool *p, size_t M, size_t N, size_t K, const float *A, size_t ar,
                     size_t ak, const float *B, size_t ldb, float *C, size_t ldc, bool acc)
{
    if (M == 0 || N == 0) {
        return;
    }
    if (K == 0) {
        gemm_zero_k(M, N, C, ldc, acc);
        return;
    }
    struct gemm_job g = {M, N, K, ar, ak, ldb, ldc, A, B, C, acc, pick_kernel(), 0, 0, 0};
    g.panel = 4 * NR;
    g.n_rb = (M + RB - 1) / RB;
    g.n_cp = (N + g.panel - 1) / g.panel;
    tr_pool_run(p, g.n_rb * g.n_cp, gemm_tiles, &g);
}

void tr_gemm(struct tr_pool *p, size_t M, size_t N, size_t K, const float *A, size_t lda,
             const float *B, size_t ldb, float *C, size_t ldc, bool acc)
{
    gemm_par(p, M, N, K, A, lda, 1, B, ldb, C, ldc, acc);
}

void tr_gemm_at(struct tr_pool *p, size_t M, size_t N, size_t K, const float *A, size_t lda,
                const float *B, size_t ldb, float *C, size_t ldc, bool acc)
{
    gemm_par(p, M, N, K, A, 1, lda, B, ldb, C, ldc, acc);
}

void tr_transpose(size_t R, size_t C, const float *in, size_t ld_in, float *out, size_t ld_out)
{
    const size_t bs = 32;
    for (size_t r0 = 0; r0 < R; r0 += bs) {
        for (size_t c0 = 0; c0 < C; c0 += bs) {
            size_t r1 = r0 + bs < R ? r0 + bs : R, c1 = c0 + bs < C ? c0 + bs : C;
            for (size_t r = r0; r < r1; r++) {
                for (size_t c = c0; c < c1; c++) {
                    out[c * ld_out + r] = in[r * ld_in + c];
                }
            }
        }
    }
}
