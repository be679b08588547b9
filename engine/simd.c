/* simd.c - the portable kernel table (the attention kernels in plain C; the dtype
 * functions stay the reference ones of quant.c) and the choice of table (see simd.h). */
#include "simd.h"

#include <pthread.h>

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
        acc[i] += w * v[i];
    }
}

static void scalar_kv_axpy_f16(float w, const uint16_t *v, float *acc, size_t n)
{
    const float *tab = pd_f16_table();
    for (size_t i = 0; i < n; i++) {
        acc[i] += w * tab[v[i]];
    }
}

static const struct pd_simd_ops scalar_ops = {
    .level = PD_SIMD_SCALAR,
    .kv_dot_f32 = scalar_kv_dot_f32,
    .kv_dot_f16 = scalar_kv_dot_f16,
    .kv_axpy_f32 = scalar_kv_axpy_f32,
    .kv_axpy_f16 = scalar_kv_axpy_f16,
};

/* Indexed by level; NULL where this build has no kernels for it. */
static const struct pd_simd_ops *const ops_by_level[PD_SIMD_LEVEL_COUNT] = {
    [PD_SIMD_SCALAR] = &scalar_ops,
#if defined(__x86_64__)
    [PD_SIMD_AVX2] = &pd_simd_ops_avx2,
#endif
};
_Static_assert(sizeof ops_by_level / sizeof ops_by_level[0] == PD_SIMD_LEVEL_COUNT,
               "one kernel table per simd level");

const struct pd_simd_ops *pd_simd_ops_for(enum pd_simd_level level)
{
    return (unsigned)level < PD_SIMD_LEVEL_COUNT ? ops_by_level[level] : NULL;
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
