/* quant_blocks.h - block geometry of the GGUF formats: elements per block, byte sizes and
 * field offsets (layouts in quant.h and docs/gguf.md), shared by the portable kernels
 * (quant.c), the AVX2 ones (quant_x86.c) and the type-traits table (dtype.c). A leaf. */
#ifndef PD_QUANT_BLOCKS_H
#define PD_QUANT_BLOCKS_H

#define PD_QK8_0 32
#define PD_QK4_0 32
#define PD_QK_K 256

/* Largest finite half; block scales are clamped to it so a block never stores inf. */
#define F16_MAX 65504.0f

enum {
    Q8_0_BYTES = 34,
    Q4_0_BYTES = 18,
    Q5_0_BYTES = 22,  /* d, qh[4], qs[16] */
    Q4_1_BYTES = 20,  /* d, m, qs[16] */
    Q5_1_BYTES = 24,  /* d, m, qh[4], qs[16] */
    Q4_K_BYTES = 144,
    Q5_K_BYTES = 176,
    Q6_K_BYTES = 210,
    Q8_K_BYTES = 292,
    Q8_1_BYTES = 36,  /* d, s, qs[32] */

    KQ_SCALES = 4,    /* q4_K/q5_K: after d and dmin */
    Q4_K_QS = 16,
    Q5_K_QH = 16,
    Q5_K_QS = 48,
    Q6_K_QL = 0,
    Q6_K_QH = 128,
    Q6_K_SCALES = 192,
    Q6_K_D = 208,
    Q8_K_QS = 4,
    Q8_K_BSUMS = 260,
};
_Static_assert(Q8_0_BYTES == 2 + PD_QK8_0, "q8_0 block size");
_Static_assert(Q4_0_BYTES == 2 + PD_QK4_0 / 2, "q4_0 block size");
_Static_assert(Q5_0_BYTES == 2 + 4 + PD_QK4_0 / 2, "q5_0 block size");
_Static_assert(Q4_1_BYTES == 4 + PD_QK4_0 / 2, "q4_1 block size");
_Static_assert(Q5_1_BYTES == 4 + 4 + PD_QK4_0 / 2, "q5_1 block size");
_Static_assert(Q8_1_BYTES == 4 + PD_QK8_0, "q8_1 block size");
_Static_assert(Q4_K_BYTES == Q4_K_QS + PD_QK_K / 2, "q4_K block size");
_Static_assert(Q5_K_BYTES == Q5_K_QS + PD_QK_K / 2, "q5_K block size");
_Static_assert(Q5_K_QS == Q5_K_QH + PD_QK_K / 8, "q5_K qh size");
_Static_assert(Q6_K_BYTES == Q6_K_D + 2, "q6_K block size");
_Static_assert(Q6_K_SCALES == Q6_K_QH + PD_QK_K / 4, "q6_K qh size");
_Static_assert(Q6_K_D == Q6_K_SCALES + PD_QK_K / 16, "q6_K scales size");
_Static_assert(Q8_K_BSUMS == Q8_K_QS + PD_QK_K, "q8_K qs size");
_Static_assert(Q8_K_BYTES == Q8_K_BSUMS + 2 * (PD_QK_K / 16), "q8_K block size");

#endif
