/* simd_exp.h - the constants of the C library's expf algorithm (glibc 2.27 and later on
 * FMA machines), which the x86 levels' vector exp repeats step for step so each lane
 * equals expf (quant_x86.c, quant_avx512.c; test_simd compares them with expf):
 * x / ln2 * 32 = k + r with k the nearest integer and |r| <= 1/2, exp(x) = 2^(k/32) *
 * 2^(r/32), 2^(k/32) from the table and the exponent bits, 2^(r/32) ~ 1 + C2 r + C1 r^2 +
 * C0 r^3 in double, rounded once to float. Inputs past the edges take the edge values
 * (PD_EXP_*). A leaf. */
#ifndef PD_SIMD_EXP_H
#define PD_SIMD_EXP_H

#include <stdint.h>

/* exp2(i / 32) for i < 32 as IEEE doubles, minus i << 47 (the bits the exponent field
 * gains from k are added back per lane). */
static const uint64_t pd_exp_tab[32] = {
    0x3ff0000000000000ULL, 0x3fefd9b0d3158574ULL, 0x3fefb5586cf9890fULL, 0x3fef9301d0125b51ULL,
    0x3fef72b83c7d517bULL, 0x3fef54873168b9aaULL, 0x3fef387a6e756238ULL, 0x3fef1e9df51fdee1ULL,
    0x3fef06fe0a31b715ULL, 0x3feef1a7373aa9cbULL, 0x3feedea64c123422ULL, 0x3feece086061892dULL,
    0x3feebfdad5362a27ULL, 0x3feeb42b569d4f82ULL, 0x3feeab07dd485429ULL, 0x3feea47eb03a5585ULL,
    0x3feea09e667f3bcdULL, 0x3fee9f75e8ec5f74ULL, 0x3feea11473eb0187ULL, 0x3feea589994cce13ULL,
    0x3feeace5422aa0dbULL, 0x3feeb737b0cdc5e5ULL, 0x3feec49182a3f090ULL, 0x3feed503b23e255dULL,
    0x3feee89f995ad3adULL, 0x3feeff76f2fb5e47ULL, 0x3fef199bdd85529cULL, 0x3fef3720dcef9069ULL,
    0x3fef5818dcfba487ULL, 0x3fef7c97337b9b5fULL, 0x3fefa4afa2a490daULL, 0x3fefd0765b6e4540ULL,
};

#define PD_EXP_INV_LN2_32 0x1.71547652b82fep+5 /* 32 / ln 2 */
#define PD_EXP_SHIFT 0x1.8p52                  /* k + SHIFT rounds x * 32 / ln 2 to k */
#define PD_EXP_C0 0x1.c6af84b912394p-20
#define PD_EXP_C1 0x1.ebfce50fac4f3p-13
#define PD_EXP_C2 0x1.62e42ff0c52d6p-6
#define PD_EXP_OVER 0x1.62e42ep6f        /* above: +inf */
#define PD_EXP_ZERO_BELOW -0x1.9fe368p6f /* below: 0 (and for -inf) */
#define PD_EXP_TINY_BELOW -0x1.9d1d9ep6f /* below (and not under ZERO_BELOW): 2^-149 */

#endif /* PD_SIMD_EXP_H */
