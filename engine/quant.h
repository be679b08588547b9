/* quant.h - GGUF block formats: conversion to/from f32 and dot products.
 *
 * Block layouts are bit-compatible with GGUF files (see docs/gguf.md):
 *   q8_0: { f16 d; i8 qs[32]; }                                         34 bytes / 32
 *   q4_0: { f16 d; u8 qs[16]; }  x = (nibble - 8) * d                   18 bytes / 32
 *   q5_0: { f16 d; u8 qh[4]; u8 qs[16]; }  x = (5-bit code - 16) * d    22 bytes / 32
 *   q4_1: { f16 d; f16 m; u8 qs[16]; }  x = nibble * d + m              20 bytes / 32
 *   q5_1: { f16 d; f16 m; u8 qh[4]; u8 qs[16]; }  x = code * d + m      24 bytes / 32
 *   q4_K: { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }              144 bytes / 256
 *   q5_K: { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }   176 bytes / 256
 *   q6_K: { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }             210 bytes / 256
 *   q8_K: { f32 d; i8 qs[256]; i16 bsums[16]; }  (activations only)   292 bytes / 256
 *   q8_1: { f16 d; f16 s; i8 qs[32]; }  s = d * sum(qs)  (activations)  36 bytes / 32
 * Dot products take the activation in the weight type's vec_dot_type (dtype.h).
 * Pure functions, thread-safe; n must be a multiple of the block size. */
#ifndef PD_QUANT_H
#define PD_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "quant_blocks.h"

void pd_f32_to_f32(const void *src, float *dst, size_t n);
void pd_f32_from_f32(const float *src, void *dst, size_t n);
float pd_f32_vec_dot(const void *w, const void *x, size_t n);

void pd_f16_row_to_f32(const void *src, float *dst, size_t n);
void pd_f16_row_from_f32(const float *src, void *dst, size_t n);
float pd_f16_vec_dot(const void *w, const void *x, size_t n); /* x: f16 */

void pd_bf16_row_to_f32(const void *src, float *dst, size_t n);
void pd_bf16_row_from_f32(const float *src, void *dst, size_t n);
float pd_bf16_vec_dot(const void *w, const void *x, size_t n); /* x: bf16 */

void pd_q8_0_to_f32(const void *src, float *dst, size_t n);
void pd_q8_0_from_f32(const float *src, void *dst, size_t n);
float pd_q8_0_vec_dot(const void *w, const void *x, size_t n); /* x: q8_0 */

void pd_q4_0_to_f32(const void *src, float *dst, size_t n);
void pd_q4_0_from_f32(const float *src, void *dst, size_t n);
float pd_q4_0_vec_dot(const void *w, const void *x, size_t n); /* x: q8_0 */

void pd_q5_0_to_f32(const void *src, float *dst, size_t n);
void pd_q5_0_from_f32(const float *src, void *dst, size_t n);
float pd_q5_0_vec_dot(const void *w, const void *x, size_t n); /* x: q8_0 */

void pd_q4_1_to_f32(const void *src, float *dst, size_t n);
void pd_q4_1_from_f32(const float *src, void *dst, size_t n);
float pd_q4_1_vec_dot(const void *w, const void *x, size_t n); /* x: q8_1 */

void pd_q5_1_to_f32(const void *src, float *dst, size_t n);
void pd_q5_1_from_f32(const float *src, void *dst, size_t n);
float pd_q5_1_vec_dot(const void *w, const void *x, size_t n); /* x: q8_1 */

/* q8_0's codes and scale plus s = d * sum(qs) as a half, from the float d (the
 * activation format of q4_1/q5_1, as in llama.cpp: its offset term reads s). */
void pd_q8_1_to_f32(const void *src, float *dst, size_t n);
void pd_q8_1_from_f32(const float *src, void *dst, size_t n);

void pd_q4_k_to_f32(const void *src, float *dst, size_t n);
void pd_q4_k_from_f32(const float *src, void *dst, size_t n);
float pd_q4_k_vec_dot(const void *w, const void *x, size_t n); /* x: q8_K */

void pd_q5_k_to_f32(const void *src, float *dst, size_t n);
void pd_q5_k_from_f32(const float *src, void *dst, size_t n);
float pd_q5_k_vec_dot(const void *w, const void *x, size_t n); /* x: q8_K */

void pd_q6_k_to_f32(const void *src, float *dst, size_t n);
void pd_q6_k_from_f32(const float *src, void *dst, size_t n);
float pd_q6_k_vec_dot(const void *w, const void *x, size_t n); /* x: q8_K */

void pd_q8_k_to_f32(const void *src, float *dst, size_t n);
void pd_q8_k_from_f32(const float *src, void *dst, size_t n);

#endif
