/* cpu.c - CPU feature detection and the PONDER_SIMD override (see cpu.h). */
#include "cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#include "log.h"

static const char *const level_names[PD_SIMD_LEVEL_COUNT] = {
    [PD_SIMD_SCALAR] = "scalar",
    [PD_SIMD_AVX2] = "avx2",
    [PD_SIMD_AVX512] = "avx512vnni",
};
_Static_assert(sizeof level_names / sizeof level_names[0] == PD_SIMD_LEVEL_COUNT,
               "simd level names");

const char *pd_cpu_simd_name(enum pd_simd_level level)
{
    return (unsigned)level < PD_SIMD_LEVEL_COUNT ? level_names[level] : "?";
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_KERNELS 1

/* AVX2, FMA and F16C, and an OS that saves the YMM registers across context switches
 * (XCR0 bits 1 and 2). Read from CPUID directly: compilers disagree on which feature
 * names __builtin_cpu_supports accepts (f16c among them). */
static bool x86_has_avx2_fma_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) {
        return false;
    }
    const unsigned need1 = bit_AVX | bit_OSXSAVE | bit_FMA | bit_F16C;
    if ((c & need1) != need1) {
        return false;
    }
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    if ((xcr0_lo & 6) != 6) {
        return false;
    }
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        return false;
    }
    return (b & bit_AVX2) != 0;
}

/* AVX-512 F, BW, VL, DQ and VNNI (CPUID leaf 7), and an OS that saves the opmask and all
 * 32 ZMM registers (XCR0 bits 5, 6 and 7). Called only when the AVX2 level is there. */
static bool x86_has_avx512_vnni(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        return false;
    }
    const unsigned need_b = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31); /* F DQ BW VL */
    const unsigned need_c = 1u << 11;                                           /* VNNI */
    if ((b & need_b) != need_b || (c & need_c) != need_c) {
        return false;
    }
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    return (xcr0_lo & 0xE6) == 0xE6;
}
#endif

enum pd_simd_level pd_cpu_simd_best(void)
{
#ifdef HAVE_X86_KERNELS
    if (x86_has_avx2_fma_f16c()) {
        return x86_has_avx512_vnni() ? PD_SIMD_AVX512 : PD_SIMD_AVX2;
    }
#endif
    return PD_SIMD_SCALAR;
}

enum pd_simd_level pd_cpu_simd_choose(const char *env, enum pd_simd_level best, bool *valid)
{
    bool ok = true;
    enum pd_simd_level level = best;
    if (env && *env && strcasecmp(env, "auto") != 0) {
        ok = false;
        for (int i = 0; i < PD_SIMD_LEVEL_COUNT; i++) {
            if (strcasecmp(env, level_names[i]) == 0) {
                /* A level the CPU cannot run is never chosen: fall back to portable. */
                ok = i <= (int)best;
                level = ok ? (enum pd_simd_level)i : PD_SIMD_SCALAR;
                break;
            }
        }
    }
    if (valid) {
        *valid = ok;
    }
    return level;
}

static enum pd_simd_level chosen_level;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose_once(void)
{
    const char *env = getenv("PONDER_SIMD");
    enum pd_simd_level best = pd_cpu_simd_best();
    bool valid;
    chosen_level = pd_cpu_simd_choose(env, best, &valid);
    if (!valid) {
        pd_log(PD_LOG_WARN, "PONDER_SIMD=%s: expected scalar, avx2, avx512vnni or auto (this "
               "CPU supports up to %s); using %s", env, pd_cpu_simd_name(best),
               pd_cpu_simd_name(chosen_level));
    }
}

enum pd_simd_level pd_cpu_simd_level(void)
{
    pthread_once(&chosen_once, choose_once);
    return chosen_level;
}

bool pd_cpu_prefetch_choose(const char *env, bool l2, bool *valid)
{
    bool ok = true;
    if (env && *env) {
        ok = strcasecmp(env, "l1") == 0 || strcasecmp(env, "l2") == 0;
        l2 = ok ? strcasecmp(env, "l2") == 0 : l2;
    }
    if (valid) {
        *valid = ok;
    }
    return l2;
}

/* -1 until decided, then 0 (l1) or 1 (l2): the decode products ask per weight block, so
 * after the first call the answer is one load. */
static _Atomic int prefetch_l2 = -1;
static pthread_once_t prefetch_once = PTHREAD_ONCE_INIT;

static void prefetch_choose_once(void)
{
    bool intel = false;
#ifdef HAVE_X86_KERNELS
    unsigned a, b, c, d;
    intel = __get_cpuid(0, &a, &b, &c, &d) && b == 0x756e6547u && d == 0x49656e69u &&
            c == 0x6c65746eu; /* "GenuineIntel" */
#endif
    const char *env = getenv("PONDER_PREFETCH");
    bool valid;
    bool l2 = pd_cpu_prefetch_choose(env, intel, &valid);
    if (!valid) {
        pd_log(PD_LOG_WARN, "PONDER_PREFETCH=%s: expected l1 or l2; using %s", env,
               l2 ? "l2" : "l1");
    }
    atomic_store_explicit(&prefetch_l2, l2, memory_order_release);
}

bool pd_cpu_prefetch_l2(void)
{
    int v = atomic_load_explicit(&prefetch_l2, memory_order_acquire);
    if (v < 0) {
        pthread_once(&prefetch_once, prefetch_choose_once);
        v = atomic_load_explicit(&prefetch_l2, memory_order_acquire);
    }
    return v == 1;
}
