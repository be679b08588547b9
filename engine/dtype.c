/* dtype.c - the tensor type-traits table and half/bfloat16 conversions.
 *
 * `traits` holds the portable reference functions; pd_dtype_traits() hands out a copy
 * whose kernels are those of the SIMD level chosen at run time (simd.h), made once. */
#include "dtype.h"

#include <ctype.h>
#include <pthread.h>
#include <string.h>

#include "mem.h"
#include "quant.h"
#include "simd.h"

static const struct pd_dtype_traits traits[PD_DTYPE_COUNT] = {
    [PD_DTYPE_F32] = {"f32", 0, 1, 4, PD_DTYPE_F32, pd_f32_to_f32, pd_f32_from_f32,
                      pd_f32_vec_dot},
    [PD_DTYPE_F16] = {"f16", 1, 1, 2, PD_DTYPE_F16, pd_f16_row_to_f32, pd_f16_row_from_f32,
                      pd_f16_vec_dot},
    [PD_DTYPE_BF16] = {"bf16", 30, 1, 2, PD_DTYPE_BF16, pd_bf16_row_to_f32,
                       pd_bf16_row_from_f32, pd_bf16_vec_dot},
    [PD_DTYPE_Q8_0] = {"q8_0", 8, PD_QK8_0, 34, PD_DTYPE_Q8_0, pd_q8_0_to_f32, pd_q8_0_from_f32,
                       pd_q8_0_vec_dot},
    [PD_DTYPE_Q4_0] = {"q4_0", 2, PD_QK4_0, 18, PD_DTYPE_Q8_0, pd_q4_0_to_f32, pd_q4_0_from_f32,
                       pd_q4_0_vec_dot},
    [PD_DTYPE_Q4_K] = {"q4_k", 12, PD_QK_K, 144, PD_DTYPE_Q8_K, pd_q4_k_to_f32,
                       pd_q4_k_from_f32, pd_q4_k_vec_dot},
    [PD_DTYPE_Q5_K] = {"q5_k", 13, PD_QK_K, 176, PD_DTYPE_Q8_K, pd_q5_k_to_f32,
                       pd_q5_k_from_f32, pd_q5_k_vec_dot},
    [PD_DTYPE_Q6_K] = {"q6_k", 14, PD_QK_K, 210, PD_DTYPE_Q8_K, pd_q6_k_to_f32,
                       pd_q6_k_from_f32, pd_q6_k_vec_dot},
    [PD_DTYPE_Q8_K] = {"q8_k", 15, PD_QK_K, 292, PD_DTYPE_Q8_K, pd_q8_k_to_f32,
                       pd_q8_k_from_f32, NULL},
};
_Static_assert(sizeof traits / sizeof traits[0] == PD_DTYPE_COUNT, "dtype traits table");

static struct pd_dtype_traits dispatched[PD_DTYPE_COUNT];
static pthread_once_t dispatched_once = PTHREAD_ONCE_INIT;

static void dispatched_init(void)
{
    const struct pd_simd_ops *ops = pd_simd_ops();
    for (int i = 0; i < PD_DTYPE_COUNT; i++) {
        dispatched[i] = traits[i];
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

const struct pd_dtype_traits *pd_dtype_traits(enum pd_dtype t)
{
    pthread_once(&dispatched_once, dispatched_init);
    return &dispatched[t];
}

int pd_dtype_from_ggml(uint32_t ggml_id, enum pd_dtype *out)
{
    for (int i = 0; i < PD_DTYPE_COUNT; i++) {
        /* Q8_K is an activation format, never a stored tensor type. */
        if (traits[i].ggml_id == ggml_id && i != PD_DTYPE_Q8_K) {
            *out = (enum pd_dtype)i;
            return 0;
        }
    }
    return -1;
}

enum pd_dtype pd_dtype_parse(const char *name)
{
    for (int i = 0; i < PD_DTYPE_COUNT; i++) {
        if (strcasecmp(name, traits[i].name) == 0) {
            return (enum pd_dtype)i;
        }
    }
    return PD_DTYPE_COUNT;
}

uint64_t pd_dtype_row_size(enum pd_dtype t, uint64_t n)
{
    const struct pd_dtype_traits *tr = &traits[t];
    if (n % tr->block_size) {
        return 0;
    }
    uint64_t bytes;
    if (!pd_mul(n / tr->block_size, tr->type_size, &bytes)) {
        return 0;
    }
    return bytes;
}

float pd_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400));
            mant &= 0x3FF;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t pd_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t abs = x & 0x7FFFFFFF;
    if (abs > 0x7F800000) { /* NaN: keep it quiet */
        return (uint16_t)(sign | 0x7E00 | ((abs >> 13) & 0x3FF));
    }
    if (abs >= 0x477FF000) { /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7C00);
    }
    if (abs < 0x38800000) { /* below the smallest normal half: subnormal or zero */
        if (abs < 0x33000000) { /* < 2^-25 rounds to zero */
            return (uint16_t)sign;
        }
        uint32_t e = abs >> 23;
        uint32_t m = (abs & 0x7FFFFF) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t half = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) {
            half++;
        }
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((abs >> 13) - ((127 - 15) << 10));
    uint32_t rem = abs & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) {
        h++;
    }
    return (uint16_t)(sign | h);
}

static float f16_table[65536];
static pthread_once_t f16_table_once = PTHREAD_ONCE_INIT;

static void f16_table_init(void)
{
    for (uint32_t i = 0; i < 65536; i++) {
        f16_table[i] = pd_f16_to_f32((uint16_t)i);
    }
}

const float *pd_f16_table(void)
{
    pthread_once(&f16_table_once, f16_table_init);
    return f16_table;
}

float pd_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t pd_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFF) > 0x7F800000) {
        return (uint16_t)((x >> 16) | 64); /* quiet NaN */
    }
    return (uint16_t)((x + (0x7FFF + ((x >> 16) & 1))) >> 16);
}
