/* simd.c - the portable kernel table (the attention kernels in plain C; the dtype
 * functions stay the reference ones of quant.c) and the choice of table (see simd.h). */
#include "simd.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "half.h"

/* The portable attention kernels sum strictly left to right, in float. */

static float scalar_kv_dot_f32(const float *q, const float *k, size_t n)
{
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        sum += q[i] * k[i];
    }
    return sum;
}

static float scalar_kv_dot_f16(const float *q, const uint16_t *k, size_t n)
{
    const float *tab = pd_f16_table();
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        sum += q[i] * tab[k[i]];
    }
    return sum;
}

static void scalar_kv_axpy_f32(float w, const float *v, float *acc, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        acc[i] = fmaf(w, v[i], acc[i]);
    }
}

static void scalar_kv_axpy_f16(float w, const uint16_t *v, float *acc, size_t n)
{
    const float *tab = pd_f16_table();
    for (size_t i = 0; i < n; i++) {
        acc[i] = fmaf(w, tab[v[i]], acc[i]);
    }
}

static const struct pd_simd_ops scalar_ops = {
    .level = PD_SIMD_SCALAR,
    .kv_dot_f32 = scalar_kv_dot_f32,
    .kv_dot_f16 = scalar_kv_dot_f16,
    .kv_axpy_f32 = scalar_kv_axpy_f32,
    .kv_axpy_f16 = scalar_kv_axpy_f16,
};

#if defined(__x86_64__)
/* The AVX-512 level: its own kernels over the AVX2 table (built once). */
static struct pd_simd_ops avx512_ops;
static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;

#define INHERIT(field)                                                                   \
    do {                                                                                 \
        if (!avx512_ops.field) {                                                         \
            avx512_ops.field = pd_simd_ops_avx2.field;                                   \
        }                                                                                \
    } while (0)

static void avx512_init(void)
{
    avx512_ops = pd_simd_ops_avx512_own;
    avx512_ops.level = PD_SIMD_AVX512;
    for (int t = 0; t < PD_DTYPE_COUNT; t++) {
        INHERIT(vec_dot[t]);
        INHERIT(from_f32[t]);
        INHERIT(to_f32[t]);
        INHERIT(gemm[t]);
    }
    INHERIT(kv_dot_f32);
    INHERIT(kv_dot_f16);
    INHERIT(kv_axpy_f32);
    INHERIT(kv_axpy_f16);
    INHERIT(attn);
}
#undef INHERIT
#endif

/* Indexed by level; NULL where this build has no kernels for it. */
static const struct pd_simd_ops *const ops_by_level[PD_SIMD_LEVEL_COUNT] = {
    [PD_SIMD_SCALAR] = &scalar_ops,
#if defined(__x86_64__)
    [PD_SIMD_AVX2] = &pd_simd_ops_avx2,
    [PD_SIMD_AVX512] = &avx512_ops,
#endif
};
_Static_assert(sizeof ops_by_level / sizeof ops_by_level[0] == PD_SIMD_LEVEL_COUNT,
               "one kernel table per simd level");

const struct pd_simd_ops *pd_simd_ops_for(enum pd_simd_level level)
{
#if defined(__x86_64__)
    pthread_once(&avx512_once, avx512_init);
#endif
    return (unsigned)level < PD_SIMD_LEVEL_COUNT ? ops_by_level[level] : NULL;
}

void pd_simd_gemm(const struct pd_simd_ops *ops, enum pd_dtype t, const struct pd_gemm_args *g,
                  size_t r0, size_t r1)
{
    if (ops->gemm[t]) {
        ops->gemm[t](g, r0, r1);
        return;
    }
    assert(!g->packed);
    pd_vec_dot_fn dot = ops->vec_dot[t] ? ops->vec_dot[t] : pd_dtype_traits(t)->vec_dot;
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *w = g->w + r * g->w_stride;
        for (size_t i = 0; i < g->n_tok; i++) {
            g->y[i * g->y_stride + r] = dot(w, g->x + i * g->x_stride, g->n);
        }
    }
}

double pd_simd_exp_sum(const struct pd_simd_ops *ops, float *p, uint32_t n, float mx)
{
    if (ops->exp_sum) {
        return ops->exp_sum(p, n, mx);
    }
    double part[16] = {0};
    for (uint32_t s = 0; s < n; s++) {
        p[s] = expf(p[s] - mx);
        part[s % 16] += p[s];
    }
    return pd_sum16_tree(part);
}

void pd_simd_swiglu(const struct pd_simd_ops *ops, float *h, const float *g, const float *u,
                    size_t n)
{
    if (ops->swiglu) {
        ops->swiglu(h, g, u, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
}

float pd_simd_logit_sums(const struct pd_simd_ops *ops, const float *x, size_t n, double *sum,
                         double *wsum)
{
    if (ops->logit_sums) {
        return ops->logit_sums(x, n, sum, wsum);
    }
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (x[i] > mx) {
            mx = x[i];
        }
    }
    double part[16] = {0}, wpart[16] = {0};
    if (mx > -INFINITY) {
        for (size_t i = 0; i < n; i++) {
            float e = expf(x[i] - mx);
            part[i % 16] += e;
            if (e > 0) {
                wpart[i % 16] += (double)e * ((double)x[i] - mx);
            }
        }
    }
    *sum = pd_sum16_tree(part);
    *wsum = pd_sum16_tree(wpart);
    return mx;
}

double pd_simd_sum_sq(const struct pd_simd_ops *ops, const float *x, size_t n)
{
    if (ops->sum_sq) {
        return ops->sum_sq(x, n);
    }
    double part[16] = {0};
    for (size_t i = 0; i < n; i++) {
        part[i % 16] += (double)(x[i] * x[i]);
    }
    return pd_sum16_tree(part);
}

void pd_simd_head_mean(const struct pd_simd_ops *ops, float *m, const float *rows,
                       size_t stride, uint32_t n_head, uint32_t n)
{
    if (ops->head_mean) {
        ops->head_mean(m, rows, stride, n_head, n);
        return;
    }
    memcpy(m, rows, n * sizeof(float));
    for (uint32_t h = 1; h < n_head; h++) {
        const float *row = rows + (size_t)h * stride;
        for (uint32_t s = 0; s < n; s++) {
            m[s] += row[s];
        }
    }
    float inv = 1.0f / (float)n_head;
    for (uint32_t s = 0; s < n; s++) {
        m[s] *= inv;
    }
}

void pd_simd_attn(const struct pd_simd_ops *ops, const struct pd_attn_args *a)
{
    if (ops->attn && ops->attn(a)) {
        return;
    }
    const uint16_t *k16 = a->k, *v16 = a->v;
    const float *k32 = a->k, *v32 = a->v;
    size_t es = a->f16 ? 2 : 4;
    const char *kb = a->k, *vb = a->v;
    for (uint32_t i = 0; i < a->n_q; i++) {
        const float *q = a->q[i];
        float *p = a->p[i];
        float *o = a->o[i];
        uint32_t n = a->n_vis[i];
        float mx = -INFINITY;
        for (uint32_t s = 0; s < n; s++) {
            if (s + PD_ATTN_PF_SLOTS < n) {
                pd_prefetch(kb + (s + PD_ATTN_PF_SLOTS) * a->k_stride * es, a->head_dim * es);
            }
            if (a->hide && a->hide[s] && a->slot_pos[s] != a->q_pos[i]) {
                p[s] = -INFINITY; /* exp(-inf) = 0 below */
                continue;
            }
            float d = a->f16 ? ops->kv_dot_f16(q, k16 + s * a->k_stride, a->head_dim)
                             : ops->kv_dot_f32(q, k32 + s * a->k_stride, a->head_dim);
            p[s] = d * a->scale;
            if (p[s] > mx) {
                mx = p[s];
            }
        }
        double sum = pd_simd_exp_sum(ops, p, n, mx);
        float inv = (float)(1.0 / sum);
        memset(o, 0, a->head_dim_v * sizeof(float));
        for (uint32_t s = 0; s < n; s++) {
            if (s + PD_ATTN_PF_SLOTS < n) {
                pd_prefetch(vb + (s + PD_ATTN_PF_SLOTS) * a->v_stride * es, a->head_dim_v * es);
            }
            p[s] *= inv;
            if (a->f16) {
                ops->kv_axpy_f16(p[s], v16 + s * a->v_stride, o, a->head_dim_v);
            } else {
                ops->kv_axpy_f32(p[s], v32 + s * a->v_stride, o, a->head_dim_v);
            }
        }
    }
}

static const struct pd_simd_ops *chosen_ops;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose_once(void)
{
    /* pd_cpu_simd_best() only reports levels this build contains, so the entry exists;
     * the fallback keeps a missing one from ever being called. */
    const struct pd_simd_ops *ops = pd_simd_ops_for(pd_cpu_simd_level());
    chosen_ops = ops ? ops : &scalar_ops;
}

const struct pd_simd_ops *pd_simd_ops(void)
{
    pthread_once(&chosen_once, choose_once);
    return chosen_ops;
}

static struct pd_dtype_traits dispatched[PD_DTYPE_COUNT];
static pthread_once_t dispatched_once = PTHREAD_ONCE_INIT;

static void dispatched_init(void)
{
    const struct pd_simd_ops *ops = pd_simd_ops();
    for (int i = 0; i < PD_DTYPE_COUNT; i++) {
        dispatched[i] = *pd_dtype_traits((enum pd_dtype)i);
        if (ops->vec_dot[i]) {
            dispatched[i].vec_dot = ops->vec_dot[i];
        }
        if (ops->from_f32[i]) {
            dispatched[i].from_f32 = ops->from_f32[i];
        }
        if (ops->to_f32[i]) {
            dispatched[i].to_f32 = ops->to_f32[i];
        }
    }
}

const struct pd_dtype_traits *pd_simd_traits(enum pd_dtype t)
{
    pthread_once(&dispatched_once, dispatched_init);
    return &dispatched[t];
}
