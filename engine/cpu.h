/* cpu.h - which SIMD level the engine's kernels run at.
 *
 * The build targets baseline x86-64 (SSE2); faster kernels are compiled for AVX2+FMA+F16C
 * and for AVX-512 (F, BW, VL, DQ) with VNNI per function and chosen at run time. The level
 * is the best this CPU and build support, unless the environment variable PONDER_SIMD
 * lowers it:
 *   PONDER_SIMD=scalar      the portable C kernels (the reference)
 *   PONDER_SIMD=avx2        the AVX2 kernels (falls back to scalar, with a warning, when the
 *                           CPU lacks AVX2, FMA or F16C)
 *   PONDER_SIMD=avx512vnni  the AVX-512 kernels (scalar, with a warning, when the CPU lacks
 *                           one of the features above or the OS does not save ZMM state)
 *   PONDER_SIMD=auto        or unset or empty: the best supported level
 * Names are case-insensitive; any other value is ignored with a warning (logged through
 * base/log.h).
 *
 * Thread-safety: every function may be called from any thread; the level is decided
 * once per process, on first use. */
#ifndef PD_CPU_H
#define PD_CPU_H

#include <stdbool.h>

enum pd_simd_level {
    PD_SIMD_SCALAR, /* portable C, any CPU */
    PD_SIMD_AVX2,   /* x86-64 with AVX2, FMA and F16C */
    PD_SIMD_AVX512, /* the above plus AVX-512 F, BW, VL, DQ and VNNI ("avx512vnni") */
    PD_SIMD_LEVEL_COUNT
};

/* The name of a level ("scalar", "avx2", "avx512vnni"), as PONDER_SIMD spells it and as `ponder info`
 * and `ponder bench` show it; "?" for an out-of-range value. Static storage. */
const char *pd_cpu_simd_name(enum pd_simd_level level);

/* The best level this CPU supports and this build contains (SCALAR on non-x86 builds). */
enum pd_simd_level pd_cpu_simd_best(void);

/* Resolves an override: `env` is PONDER_SIMD's value (NULL when unset), `best` the
 * supported level. Returns the level to use; *valid (optional) is set to false when env
 * names no level ("auto" and "" are valid) or names one above `best`, in which case the
 * result is `best` for an unknown name and SCALAR for an unsupported one. Pure. */
enum pd_simd_level pd_cpu_simd_choose(const char *env, enum pd_simd_level best, bool *valid);

/* The level the kernels use in this process: pd_cpu_simd_choose(getenv("PONDER_SIMD"),
 * pd_cpu_simd_best()), decided on the first call (which logs a warning for a bad value)
 * and fixed afterwards. */
enum pd_simd_level pd_cpu_simd_level(void);

/* Whether the packed decode products fetch a large matrix's stream ahead into the
 * second-level cache instead of the first (simd.h pd_pf_l2; the AVX2 f16/bf16 product
 * for every matrix, quant_x86.c half_tile8): yes on Intel CPUs, whose
 * first level keeps few misses in flight (0.55 GB q4_K decode +7-29%), no elsewhere (an
 * AMD EPYC decoded 5-10% slower that way). PONDER_PREFETCH=l1 or l2 in the environment
 * overrides it, for comparing the two (any other value is ignored with a warning).
 * Decided on the first call. */
bool pd_cpu_prefetch_l2(void);

/* Resolves PONDER_PREFETCH's value `env` (NULL when unset) against the CPU's default
 * `l2`: "l1" or "l2" (any case) choose, NULL, "" or anything else keep `l2`, the last
 * setting *valid (optional) to false. Pure. */
bool pd_cpu_prefetch_choose(const char *env, bool l2, bool *valid);

#endif
