/* half.h - IEEE half and bfloat16 <-> float conversions (a leaf: GGUF f16/bf16 tensors,
 * block scales, the f16 KV cache and the kernels all convert through these).
 * Pure and thread-safe (the table is built once). */
#ifndef PD_HALF_H
#define PD_HALF_H

#include <stdint.h>

/* IEEE half <-> float, round-to-nearest-even like the hardware/F16C path. */
float pd_f16_to_f32(uint16_t h);
uint16_t pd_f32_to_f16(float f);
/* A 65536-entry table of every half's float value (built once, thread-safe), for hot
 * loops that convert halves one at a time. */
const float *pd_f16_table(void);

/* bfloat16 <-> float (round-to-nearest-even, NaN preserved). */
float pd_bf16_to_f32(uint16_t h);
uint16_t pd_f32_to_bf16(float f);

#endif
