/* dtype.c - the tensor type-traits table: names, block geometry, GGUF ids and the
 * portable reference kernels (simd.c overlays the kernels of the level chosen at run
 * time: pd_simd_traits). */
#include "dtype.h"

#include <ctype.h>
#include <string.h>

#include "mem.h"
#include "quant.h"

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
    [PD_DTYPE_Q5_0] = {"q5_0", 6, PD_QK4_0, Q5_0_BYTES, PD_DTYPE_Q8_0, pd_q5_0_to_f32,
                       pd_q5_0_from_f32, pd_q5_0_vec_dot},
    [PD_DTYPE_Q4_1] = {"q4_1", 3, PD_QK4_0, Q4_1_BYTES, PD_DTYPE_Q8_1, pd_q4_1_to_f32,
                       pd_q4_1_from_f32, pd_q4_1_vec_dot},
    [PD_DTYPE_Q5_1] = {"q5_1", 7, PD_QK4_0, Q5_1_BYTES, PD_DTYPE_Q8_1, pd_q5_1_to_f32,
                       pd_q5_1_from_f32, pd_q5_1_vec_dot},
    [PD_DTYPE_Q8_1] = {"q8_1", 9, PD_QK8_0, Q8_1_BYTES, PD_DTYPE_Q8_1, pd_q8_1_to_f32,
                       pd_q8_1_from_f32, NULL},
};
_Static_assert(sizeof traits / sizeof traits[0] == PD_DTYPE_COUNT, "dtype traits table");

const struct pd_dtype_traits *pd_dtype_traits(enum pd_dtype t)
{
    return &traits[t];
}

int pd_dtype_from_ggml(uint32_t ggml_id, enum pd_dtype *out)
{
    for (int i = 0; i < PD_DTYPE_COUNT; i++) {
        /* Q8_K and Q8_1 are activation formats, never stored tensor types here. */
        if (traits[i].ggml_id == ggml_id && !pd_dtype_activation_only((enum pd_dtype)i)) {
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
