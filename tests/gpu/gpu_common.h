/* gpu_common.h - helpers shared by the GPU engine's C tests: a seeded generator, the
 * adversarial activation rows, and choosing the kernel provider (emulator or device).
 * Header-only (static functions) for test programs. */
#ifndef PD_TEST_GPU_COMMON_H
#define PD_TEST_GPU_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pd_cuda.h"

static uint64_t g_rng_state = 0x9E3779B97F4A7C15ull;

static inline void rng_seed(uint64_t s)
{
    g_rng_state = s * 0x9E3779B97F4A7C15ull + 1;
}

static inline uint64_t rnd(void)
{
    uint64_t z = (g_rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-a, a). */
static inline float urand(float a)
{
    return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0) * a;
}

/* Activation values in [-1, 1] with adversarial blocks mixed in by kind: zero blocks,
 * equal-magnitude signed maxima, exact .5 ties, all-equal runs, large magnitudes. */
static inline void fill_adversarial(float *x, int n, int block, int kind)
{
    for (int i = 0; i < n; i++) {
        x[i] = urand(1.0f);
    }
    for (int b0 = 0; b0 + block <= n; b0 += block) {
        float *y = x + b0;
        switch ((kind + b0 / block) % 7) {
        case 1:
            memset(y, 0, (size_t)block * sizeof *y);
            break;
        case 2:
            y[rnd() % (uint64_t)block] = 0.75f;
            y[rnd() % (uint64_t)block] = -0.75f;
            break;
        case 3:
            for (int i = 0; i < block; i++) {
                y[i] = (float)((int)(rnd() % 255) - 127) * (1.0f / 254.0f);
            }
            y[0] = 0.5f;
            break;
        case 4:
            for (int i = 0; i < block; i++) {
                y[i] = 0.3125f;
            }
            break;
        case 5:
            for (int i = 0; i < block; i++) {
                y[i] *= 1000.0f;
            }
            break;
        default:
            break;
        }
    }
}

/* The provider named by argv[1]: "emu" (default) or "cuda". NULL (with a message) when
 * "cuda" is asked for and there is no device: the caller exits 77. */
static inline const struct pd_kernels *gpu_test_provider(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "emu";
    if (strcmp(which, "cuda") == 0) {
        const struct pd_kernels *k = pd_kernels_cuda();
        if (!k) {
            fprintf(stderr, "SKIP: %s\n", pd_kernels_cuda_why());
            return NULL;
        }
        if (k->device_count() <= 0) {
            fprintf(stderr, "SKIP: no CUDA device\n");
            return NULL;
        }
        return k;
    }
    return pd_kernels_emu();
}

#endif
