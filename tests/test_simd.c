/* test_simd.c - engine/cpu + engine/simd + engine/quant_x86: the PONDER_SIMD override
 * (parsed values, and a child process started with PONDER_SIMD=scalar really runs the
 * portable kernels), the dtype traits carrying the chosen level's kernels, and every
 * kernel of each accelerated level against the portable one:
 * - block dot products on random blocks of every count 1..9: K-quants bit-identical on
 *   any contents; q8_0/q4_0 bit-identical when every scale is a power of two (so the
 *   integer block sums are shown exact, -128 codes included) and within a float
 *   summation bound otherwise;
 * - float dot products and the attention dot for every length 0..300 (all tails):
 *   bit-identical on small integers, within the summation bound on random values;
 * - quantisers (f32 -> q8_0, q8_K, f16), f16 -> f32 and the attention axpy: identical
 *   bytes, including ties, NaN, infinities, subnormals and zero blocks;
 * - the tiled matrix products (gemm) against the portable dot of every (row, token), for
 *   every tile shape and remainder: K-quants bit-identical, the rest within the bound;
 *   the same from a level's packed layout of the weights (pack), row ranges that cut
 *   its blocks included.
 * Without an accelerated level (another CPU or architecture) the comparisons cannot run:
 * the dispatch tests still do, and the program exits 77 (SKIP) saying so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cpu.h"
#include "dtype.h"
#include "half.h"
#include "quant.h"
#include "simd.h"

/* ---- helpers ----------------------------------------------------------------------- */

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint64_t rng_next(void)
{
    /* splitmix64: deterministic across platforms */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_uniform(void) /* [0, 1) */
{
    return (double)(rng_next() >> 11) * 0x1p-53;
}

static float rng_gauss(void)
{
    double u1 = rng_uniform();
    double u2 = rng_uniform();
    if (u1 < 1e-300) {
        u1 = 1e-300;
    }
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

/* A random integer in [lo, hi]. */
static int rng_int(int lo, int hi)
{
    return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1));
}

static uint32_t f32_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

static float f32_from_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* The same float, bit for bit (any two NaNs count as the same). */
static bool same_float(float a, float b)
{
    return (isnan(a) && isnan(b)) || f32_bits(a) == f32_bits(b);
}

/* The portable functions of quant.c, per type: what every level is compared against and
 * what the dtype traits must carry at the scalar level. */
static const pd_vec_dot_fn ref_vec_dot[PD_DTYPE_COUNT] = {
    [PD_DTYPE_F32] = pd_f32_vec_dot,   [PD_DTYPE_F16] = pd_f16_vec_dot,
    [PD_DTYPE_BF16] = pd_bf16_vec_dot, [PD_DTYPE_Q8_0] = pd_q8_0_vec_dot,
    [PD_DTYPE_Q4_0] = pd_q4_0_vec_dot, [PD_DTYPE_Q4_K] = pd_q4_k_vec_dot,
    [PD_DTYPE_Q5_K] = pd_q5_k_vec_dot, [PD_DTYPE_Q6_K] = pd_q6_k_vec_dot,
    [PD_DTYPE_Q5_0] = pd_q5_0_vec_dot, [PD_DTYPE_Q4_1] = pd_q4_1_vec_dot,
    [PD_DTYPE_Q5_1] = pd_q5_1_vec_dot,
};
static const pd_from_f32_fn ref_from_f32[PD_DTYPE_COUNT] = {
    [PD_DTYPE_F32] = pd_f32_from_f32,      [PD_DTYPE_F16] = pd_f16_row_from_f32,
    [PD_DTYPE_BF16] = pd_bf16_row_from_f32, [PD_DTYPE_Q8_0] = pd_q8_0_from_f32,
    [PD_DTYPE_Q4_0] = pd_q4_0_from_f32,    [PD_DTYPE_Q4_K] = pd_q4_k_from_f32,
    [PD_DTYPE_Q5_K] = pd_q5_k_from_f32,    [PD_DTYPE_Q6_K] = pd_q6_k_from_f32,
    [PD_DTYPE_Q8_K] = pd_q8_k_from_f32,    [PD_DTYPE_Q5_0] = pd_q5_0_from_f32,
    [PD_DTYPE_Q4_1] = pd_q4_1_from_f32,    [PD_DTYPE_Q5_1] = pd_q5_1_from_f32,
    [PD_DTYPE_Q8_1] = pd_q8_1_from_f32,
};
static const pd_to_f32_fn ref_to_f32[PD_DTYPE_COUNT] = {
    [PD_DTYPE_F32] = pd_f32_to_f32,      [PD_DTYPE_F16] = pd_f16_row_to_f32,
    [PD_DTYPE_BF16] = pd_bf16_row_to_f32, [PD_DTYPE_Q8_0] = pd_q8_0_to_f32,
    [PD_DTYPE_Q4_0] = pd_q4_0_to_f32,    [PD_DTYPE_Q4_K] = pd_q4_k_to_f32,
    [PD_DTYPE_Q5_K] = pd_q5_k_to_f32,    [PD_DTYPE_Q6_K] = pd_q6_k_to_f32,
    [PD_DTYPE_Q8_K] = pd_q8_k_to_f32,    [PD_DTYPE_Q5_0] = pd_q5_0_to_f32,
    [PD_DTYPE_Q4_1] = pd_q4_1_to_f32,    [PD_DTYPE_Q5_1] = pd_q5_1_to_f32,
    [PD_DTYPE_Q8_1] = pd_q8_1_to_f32,
};

/* The accelerated levels this CPU can run (each test loops over them). */
static enum pd_simd_level fast_levels[PD_SIMD_LEVEL_COUNT];
static int n_fast_levels;

static void find_fast_levels(void)
{
    n_fast_levels = 0;
    for (int l = PD_SIMD_SCALAR + 1; l < PD_SIMD_LEVEL_COUNT; l++) {
        if (l <= (int)pd_cpu_simd_best() && pd_simd_ops_for((enum pd_simd_level)l)) {
            fast_levels[n_fast_levels++] = (enum pd_simd_level)l;
        }
    }
}

/* ---- random operands ----------------------------------------------------------------- */

static void put_f16(uint8_t *p, float f)
{
    uint16_t h = pd_f32_to_f16(f);
    memcpy(p, &h, 2);
}

/* A block scale: +-1 or +-1/2 when `exact` (+-1 for activations, `act`), else a random
 * finite value of either sign. Exact scales keep every partial sum of a q8_0 row (at most
 * 9 * 32 * 128 * 128 in units of 1/2) an integer multiple of 1/2 below 2^24, so any
 * summation order gives the same float. */
static float rand_scale(bool exact, bool act)
{
    if (exact) {
        return ldexpf(rng_next() & 1 ? 1.0f : -1.0f, act ? 0 : -rng_int(0, 1));
    }
    return (float)(rng_uniform() * 2.0 - 1.0) * 0.05f;
}

static void fill_bytes(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)rng_next();
    }
}

/* Fills n elements of type t at p: every code, nibble and packed-scale byte random (so
 * extreme codes such as q8_0's -128 occur), the float scale fields finite, q8_K's bsums
 * consistent with its codes (as the quantiser writes them). With `exact`, scales are
 * powers of two (see rand_scale; `act`: the activation operand) and float elements small
 * integers. */
static void fill_random(enum pd_dtype t, uint8_t *p, size_t n, bool exact, bool act)
{
    const struct pd_dtype_traits *tr = pd_dtype_traits(t);
    size_t nb = n / tr->block_size;
    for (size_t i = 0; i < nb; i++) {
        uint8_t *b = p + i * tr->type_size;
        float v = exact ? (float)rng_int(-8, 8) : rng_gauss();
        fill_bytes(b, tr->type_size);
        switch (t) {
        case PD_DTYPE_F32:
            memcpy(b, &v, 4);
            break;
        case PD_DTYPE_F16:
            put_f16(b, v);
            break;
        case PD_DTYPE_BF16: {
            uint16_t h = pd_f32_to_bf16(v);
            memcpy(b, &h, 2);
            break;
        }
        case PD_DTYPE_Q8_0:
        case PD_DTYPE_Q4_0:
        case PD_DTYPE_Q5_0:
            put_f16(b, rand_scale(exact, act));
            break;
        case PD_DTYPE_Q4_1:
        case PD_DTYPE_Q5_1:
            put_f16(b, rand_scale(exact, act));
            put_f16(b + 2, rand_scale(exact, act));
            break;
        case PD_DTYPE_Q4_K:
        case PD_DTYPE_Q5_K:
            put_f16(b, rand_scale(exact, act));
            put_f16(b + 2, fabsf(rand_scale(exact, act)));
            break;
        case PD_DTYPE_Q6_K:
            put_f16(b + 208, rand_scale(exact, act));
            break;
        case PD_DTYPE_Q8_1: { /* s = d * sum(qs) as the quantiser writes it */
            float d = rand_scale(exact, act);
            put_f16(b, d);
            int sum = 0;
            for (int l = 0; l < 32; l++) {
                sum += (int8_t)b[4 + l];
            }
            put_f16(b + 2, d * (float)sum);
            break;
        }
        case PD_DTYPE_Q8_K: {
            float d = rand_scale(exact, act);
            memcpy(b, &d, 4);
            for (int j = 0; j < 16; j++) {
                int16_t s = 0;
                for (int l = 0; l < 16; l++) {
                    s = (int16_t)(s + (int8_t)b[4 + 16 * j + l]);
                }
                memcpy(b + 260 + 2 * j, &s, 2);
            }
            break;
        }
        default:
            fail_msg("fill_random: no generator for %s", tr->name);
        }
    }
}

/* sum |w_i * x_i| over the dequantised operands, in double: the scale of the rounding
 * error any summation order may make. */
static double abs_dot(enum pd_dtype t, const void *w, const void *x, size_t n)
{
    enum pd_dtype vt = pd_dtype_traits(t)->vec_dot_type;
    float *fw = xmalloc(n * sizeof(float));
    float *fx = xmalloc(n * sizeof(float));
    ref_to_f32[t](w, fw, n);
    ref_to_f32[vt](x, fx, n);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        s += fabs((double)fw[i] * (double)fx[i]);
    }
    free(fw);
    free(fx);
    return s;
}

/* ---- override and dispatch ----------------------------------------------------------- */

static void test_choose(void **state)
{
    (void)state;
    static const struct {
        const char *env;
        enum pd_simd_level best, want;
        bool valid;
    } cases[] = {
        {NULL, PD_SIMD_AVX2, PD_SIMD_AVX2, true},
        {NULL, PD_SIMD_SCALAR, PD_SIMD_SCALAR, true},
        {"", PD_SIMD_AVX2, PD_SIMD_AVX2, true},
        {"auto", PD_SIMD_AVX2, PD_SIMD_AVX2, true},
        {"scalar", PD_SIMD_AVX2, PD_SIMD_SCALAR, true},
        {"SCALAR", PD_SIMD_AVX2, PD_SIMD_SCALAR, true},
        {"scalar", PD_SIMD_SCALAR, PD_SIMD_SCALAR, true},
        {"avx2", PD_SIMD_AVX2, PD_SIMD_AVX2, true},
        {"avx2", PD_SIMD_SCALAR, PD_SIMD_SCALAR, false}, /* CPU lacks it: portable */
        {"avx512", PD_SIMD_AVX2, PD_SIMD_AVX2, false},   /* unknown: the best */
        {"scalar ", PD_SIMD_AVX2, PD_SIMD_AVX2, false},
        {"1", PD_SIMD_SCALAR, PD_SIMD_SCALAR, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool valid = !cases[i].valid;
        enum pd_simd_level got = pd_cpu_simd_choose(cases[i].env, cases[i].best, &valid);
        if (got != cases[i].want || valid != cases[i].valid) {
            fail_msg("PONDER_SIMD=%s with best %s: got %s (valid %d), want %s (valid %d)",
                     cases[i].env ? cases[i].env : "(unset)", pd_cpu_simd_name(cases[i].best),
                     pd_cpu_simd_name(got), valid, pd_cpu_simd_name(cases[i].want),
                     cases[i].valid);
        }
    }
    assert_int_equal(pd_cpu_simd_choose("scalar", PD_SIMD_AVX2, NULL), PD_SIMD_SCALAR);
    assert_string_equal(pd_cpu_simd_name(PD_SIMD_SCALAR), "scalar");
    assert_string_equal(pd_cpu_simd_name(PD_SIMD_AVX2), "avx2");
    assert_string_equal(pd_cpu_simd_name(PD_SIMD_LEVEL_COUNT), "?");
}

/* PONDER_PREFETCH: l1 and l2 in any case choose, unset and empty keep the CPU's default,
 * anything else keeps it and is reported. */
static void test_prefetch_choose(void **state)
{
    (void)state;
    static const struct {
        const char *env;
        bool l2, want, valid;
    } cases[] = {
        {NULL, false, false, true}, {NULL, true, true, true},  {"", true, true, true},
        {"l1", true, false, true},  {"L2", false, true, true}, {"l3", true, true, false},
        {"l2 ", false, false, false}, {"2", true, true, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool valid = !cases[i].valid;
        bool got = pd_cpu_prefetch_choose(cases[i].env, cases[i].l2, &valid);
        if (got != cases[i].want || valid != cases[i].valid) {
            fail_msg("PONDER_PREFETCH=%s with default l2=%d: got %d (valid %d), want %d "
                     "(valid %d)", cases[i].env ? cases[i].env : "(unset)", cases[i].l2, got,
                     valid, cases[i].want, cases[i].valid);
        }
    }
    assert_true(pd_cpu_prefetch_choose("l2", false, NULL));
}

/* Every pointer in the SIMD traits is the chosen level's kernel where it has one and the
 * portable function otherwise; the dtype traits stay the portable ones with the same
 * geometry; returns a description of the first mismatch. */
static const char *traits_mismatch(const struct pd_simd_ops *ops)
{
    static char msg[128];
    for (int t = 0; t < PD_DTYPE_COUNT; t++) {
        const struct pd_dtype_traits *tr = pd_simd_traits((enum pd_dtype)t);
        pd_vec_dot_fn dot = ops->vec_dot[t] ? ops->vec_dot[t] : ref_vec_dot[t];
        pd_from_f32_fn from = ops->from_f32[t] ? ops->from_f32[t] : ref_from_f32[t];
        pd_to_f32_fn to = ops->to_f32[t] ? ops->to_f32[t] : ref_to_f32[t];
        const struct pd_dtype_traits *ref = pd_dtype_traits((enum pd_dtype)t);
        const char *what = NULL;
        if (ref->vec_dot != ref_vec_dot[t] || ref->from_f32 != ref_from_f32[t] ||
            ref->to_f32 != ref_to_f32[t]) {
            what = "reference traits";
        } else if (strcmp(ref->name, tr->name) != 0 || ref->block_size != tr->block_size ||
                   ref->type_size != tr->type_size || ref->vec_dot_type != tr->vec_dot_type) {
            what = "geometry";
        } else if (tr->vec_dot != dot) {
            what = "vec_dot";
        } else if (tr->from_f32 != from) {
            what = "from_f32";
        } else if (tr->to_f32 != to) {
            what = "to_f32";
        }
        if (what) {
            snprintf(msg, sizeof msg, "%s of %s is not the %s kernel", what, tr->name,
                     pd_cpu_simd_name(ops->level));
            return msg;
        }
    }
    return NULL;
}

static void test_dispatch(void **state)
{
    (void)state;
    const struct pd_simd_ops *ops = pd_simd_ops();
    enum pd_simd_level level = pd_cpu_simd_level();
    assert_true(level <= pd_cpu_simd_best());
    assert_ptr_equal(ops, pd_simd_ops_for(level));
    assert_int_equal(ops->level, level);
    if (!getenv("PONDER_SIMD")) {
        assert_int_equal(level, pd_cpu_simd_best());
    }
    const char *bad = traits_mismatch(ops);
    if (bad) {
        fail_msg("%s", bad);
    }
    /* The scalar table replaces nothing: the portable functions are the reference. */
    const struct pd_simd_ops *scalar = pd_simd_ops_for(PD_SIMD_SCALAR);
    assert_non_null(scalar);
    for (int t = 0; t < PD_DTYPE_COUNT; t++) {
        assert_null(scalar->vec_dot[t]);
        assert_null(scalar->from_f32[t]);
        assert_null(scalar->to_f32[t]);
    }
    assert_null(pd_simd_ops_for(PD_SIMD_LEVEL_COUNT));
    /* Every table is complete where it must be, and replaces only what exists. */
    for (int l = 0; l < PD_SIMD_LEVEL_COUNT; l++) {
        const struct pd_simd_ops *o = pd_simd_ops_for((enum pd_simd_level)l);
        if (!o) {
            continue;
        }
        assert_int_equal(o->level, l);
        assert_true(o->kv_dot_f32 && o->kv_dot_f16 && o->kv_axpy_f32 && o->kv_axpy_f16);
        for (int t = 0; t < PD_DTYPE_COUNT; t++) {
            assert_true(!o->vec_dot[t] || ref_vec_dot[t]);
        }
    }
}

/* Child mode (main): the process was started with some PONDER_SIMD and checks that it
 * runs at level `want`. Returns 0 when it does, else prints why and returns 1. */
static int child_check(const char *want)
{
    enum pd_simd_level level = pd_cpu_simd_level();
    const struct pd_simd_ops *ops = pd_simd_ops();
    const char *bad = NULL;
    if (strcmp(pd_cpu_simd_name(level), want) != 0) {
        bad = "level";
    } else if (ops != pd_simd_ops_for(level) || ops->level != level) {
        bad = "kernel table";
    } else {
        bad = traits_mismatch(ops);
    }
    if (!bad && level == PD_SIMD_SCALAR) {
        /* The portable path end to end: traits and attention kernels. */
        const struct pd_simd_ops *scalar = pd_simd_ops_for(PD_SIMD_SCALAR);
        for (int t = 0; t < PD_DTYPE_COUNT && !bad; t++) {
            const struct pd_dtype_traits *tr = pd_simd_traits((enum pd_dtype)t);
            if (tr->vec_dot != ref_vec_dot[t] || tr->from_f32 != ref_from_f32[t] ||
                tr->to_f32 != ref_to_f32[t]) {
                bad = "dtype traits not portable";
            }
        }
        if (ops->kv_dot_f16 != scalar->kv_dot_f16 || ops->kv_axpy_f16 != scalar->kv_axpy_f16 ||
            ops->kv_dot_f32 != scalar->kv_dot_f32 || ops->kv_axpy_f32 != scalar->kv_axpy_f32) {
            bad = "attention kernels not portable";
        }
    }
    if (bad) {
        fprintf(stderr, "child (PONDER_SIMD=%s): expected %s, runs %s: %s\n",
                getenv("PONDER_SIMD") ? getenv("PONDER_SIMD") : "(unset)", want,
                pd_cpu_simd_name(level), bad);
        return 1;
    }
    return 0;
}

/* Runs this program again with PONDER_SIMD=env (NULL: unset) in child mode; returns its
 * exit status. */
static int run_child(const char *env, const char *want)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (env) {
            setenv("PONDER_SIMD", env, 1);
        } else {
            unsetenv("PONDER_SIMD");
        }
        execl("/proc/self/exe", "test_simd", "--child-expect", want, (char *)NULL);
        _exit(126);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void test_override_in_process(void **state)
{
    (void)state;
    const char *best = pd_cpu_simd_name(pd_cpu_simd_best());
    assert_int_equal(run_child("scalar", "scalar"), 0);
    assert_int_equal(run_child(NULL, best), 0);
    assert_int_equal(run_child("auto", best), 0);
    assert_int_equal(run_child("bogus", best), 0); /* ignored, with a warning */
    assert_int_equal(run_child("avx2", pd_cpu_simd_best() >= PD_SIMD_AVX2 ? "avx2" : "scalar"),
                     0);
    /* and the check can fail: a scalar process is not an accelerated one */
    if (pd_cpu_simd_best() > PD_SIMD_SCALAR) {
        fprintf(stderr, "(the next child is meant to report a mismatch)\n");
        assert_int_equal(run_child("scalar", best), 1);
    }
}

/* ---- block dot products ---------------------------------------------------------------- */

static const enum pd_dtype dot_types[] = {
    PD_DTYPE_F32, PD_DTYPE_F16, PD_DTYPE_BF16, PD_DTYPE_Q8_0,
    PD_DTYPE_Q4_0, PD_DTYPE_Q4_K, PD_DTYPE_Q5_K, PD_DTYPE_Q6_K, PD_DTYPE_Q5_0,
    PD_DTYPE_Q4_1, PD_DTYPE_Q5_1,
};
#define N_DOT_TYPES (sizeof dot_types / sizeof dot_types[0])

static bool is_k_quant(enum pd_dtype t)
{
    return t == PD_DTYPE_Q4_K || t == PD_DTYPE_Q5_K || t == PD_DTYPE_Q6_K;
}

/* The AVX-512 level's packed products of the 32-element types repeat the portable dot's
 * float steps per block (quant_avx512.c, q_0_term): bit-identical in the rows of whole
 * 16-row blocks (the rows past them run in tiles, as do rows of more than PD_PACKED_SX
 * blocks, which the pack leaves as they are). */
static bool packed_identical(const struct pd_simd_ops *ops, enum pd_dtype t, size_t r,
                             size_t rows, size_t n)
{
    return ops->level == PD_SIMD_AVX512 && r < rows / 16 * 16 && n / 32 <= PD_PACKED_SX &&
           (t == PD_DTYPE_Q8_0 || t == PD_DTYPE_Q4_0 || t == PD_DTYPE_Q5_0 ||
            t == PD_DTYPE_Q4_1 || t == PD_DTYPE_Q5_1);
}

/* Compares level `ops`'s vec_dot for t with the portable one on n random elements.
 * Bit-identical for K-quants and for exact operands; otherwise within the rounding
 * bound of two summation orders of n products (n_sums: blocks or elements). */
static void check_dot(const struct pd_simd_ops *ops, enum pd_dtype t, size_t n, bool exact)
{
    const struct pd_dtype_traits *tr = pd_dtype_traits(t);
    size_t wb = (size_t)pd_dtype_row_size(t, n);
    size_t xb = (size_t)pd_dtype_row_size(tr->vec_dot_type, n);
    uint8_t *w = xmalloc(wb);
    uint8_t *x = xmalloc(xb);
    fill_random(t, w, n, exact, false);
    fill_random(tr->vec_dot_type, x, n, exact, true);
    float want = ref_vec_dot[t](w, x, n);
    float got = ops->vec_dot[t](w, x, n);
    if (exact || is_k_quant(t)) {
        if (!same_float(got, want)) {
            fail_msg("%s %s n=%zu%s: %.9g, portable %.9g (must be identical)",
                     pd_cpu_simd_name(ops->level), tr->name, n, exact ? " exact" : "",
                     (double)got, (double)want);
        }
    } else {
        /* Each order's error is at most (its longest chain of additions) * eps * sum|.|;
         * chains: n/16 + 4 (portable lanes) and n/8 + 3 for floats, nb for blocks. */
        size_t chain = tr->block_size == 1 ? n / 8 + 16 : n / tr->block_size + 16;
        double bound = (double)chain * 0x1p-23 * abs_dot(t, w, x, n);
        double diff = fabs((double)got - (double)want);
        if (!(diff <= bound)) {
            fail_msg("%s %s n=%zu: %.9g, portable %.9g (diff %.3g > bound %.3g)",
                     pd_cpu_simd_name(ops->level), tr->name, n, (double)got, (double)want,
                     diff, bound);
        }
    }
    free(w);
    free(x);
}

static void test_vec_dot_blocks(void **state)
{
    (void)state;
    for (int l = 0; l < n_fast_levels; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for(fast_levels[l]);
        for (size_t c = 0; c < N_DOT_TYPES; c++) {
            enum pd_dtype t = dot_types[c];
            uint32_t bs = pd_dtype_traits(t)->block_size;
            if (!ops->vec_dot[t] || bs == 1) {
                continue;
            }
            for (size_t nb = 1; nb <= 9; nb++) {
                for (int rep = 0; rep < 8; rep++) {
                    check_dot(ops, t, nb * bs, false);
                    check_dot(ops, t, nb * bs, true);
                }
            }
        }
    }
}

/* The extreme codes on purpose: q8_0 blocks of all -128 (where a sign-trick kernel
 * overflows 16 bits) and all 127, q4_0 all 0 and all 15, K-quants all-ones bytes. */
static void test_vec_dot_extremes(void **state)
{
    (void)state;
    static const uint8_t fills[] = {0x80, 0x7F, 0x00, 0xFF};
    for (int l = 0; l < n_fast_levels; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for(fast_levels[l]);
        for (size_t c = 0; c < N_DOT_TYPES; c++) {
            enum pd_dtype t = dot_types[c];
            const struct pd_dtype_traits *tr = pd_dtype_traits(t);
            const struct pd_dtype_traits *vt = pd_dtype_traits(tr->vec_dot_type);
            if (!ops->vec_dot[t] || tr->block_size == 1) {
                continue;
            }
            size_t n = 3 * (size_t)tr->block_size;
            uint8_t w[3 * 292];
            uint8_t x[3 * 292];
            for (size_t fw = 0; fw < sizeof fills; fw++) {
                for (size_t fx = 0; fx < sizeof fills; fx++) {
                    memset(w, fills[fw], sizeof w);
                    memset(x, fills[fx], sizeof x);
                    for (int b = 0; b < 3; b++) { /* scales 1.0: every product exact */
                        uint8_t *wb = w + b * tr->type_size;
                        uint8_t *xb = x + b * vt->type_size;
                        if (t == PD_DTYPE_Q6_K) {
                            put_f16(wb + 208, 1.0f);
                        } else {
                            put_f16(wb, 1.0f);
                        }
                        if (t == PD_DTYPE_Q4_K || t == PD_DTYPE_Q5_K) {
                            put_f16(wb + 2, 1.0f); /* dmin */
                        }
                        if (is_k_quant(t)) {
                            float one = 1.0f;
                            memcpy(xb, &one, 4);
                            int16_t s = (int16_t)(16 * (int8_t)fills[fx]);
                            for (int j = 0; j < 16; j++) {
                                memcpy(xb + 260 + 2 * j, &s, 2);
                            }
                        } else {
                            put_f16(xb, 1.0f);
                        }
                    }
                    float want = ref_vec_dot[t](w, x, n);
                    float got = ops->vec_dot[t](w, x, n);
                    if (!same_float(got, want)) {
                        fail_msg("%s %s bytes %02x x %02x: %.9g, portable %.9g",
                                 pd_cpu_simd_name(ops->level), tr->name, fills[fw], fills[fx],
                                 (double)got, (double)want);
                    }
                }
            }
        }
    }
}

/* Float types: every length 0..300 (all tails of every unrolled loop). */
static void test_vec_dot_float(void **state)
{
    (void)state;
    for (int l = 0; l < n_fast_levels; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for(fast_levels[l]);
        for (size_t c = 0; c < N_DOT_TYPES; c++) {
            enum pd_dtype t = dot_types[c];
            if (!ops->vec_dot[t] || pd_dtype_traits(t)->block_size != 1) {
                continue;
            }
            for (size_t n = 0; n <= 300; n++) {
                check_dot(ops, t, n, false);
                check_dot(ops, t, n, true);
            }
        }
    }
}

/* ---- tiled matrix products ------------------------------------------------------------ */

/* Level `ops`'s gemm for type t against the portable vec_dot of every (row, token): rows
 * [r0, r1) of a rows x n_tok product, outputs at a stride wider than the rows; every
 * other output must stay untouched. Activation rows come from the portable quantiser of
 * random floats (as the forward pass makes them), weights are random blocks. */
static void check_gemm(const struct pd_simd_ops *ops, enum pd_dtype t, size_t rows,
                       size_t n_tok, size_t n, size_t r0, size_t r1, bool exact)
{
    const struct pd_dtype_traits *tr = pd_dtype_traits(t);
    enum pd_dtype vt = tr->vec_dot_type;
    size_t wrow = (size_t)pd_dtype_row_size(t, n), xrow = (size_t)pd_dtype_row_size(vt, n);
    /* rows wider than their data, as in a strided view, kept 4-byte aligned as GGUF
     * tensors are (a float row at an odd address would be undefined behaviour) */
    size_t w_stride = wrow + 8, x_stride = xrow + 12, y_stride = rows + 3;
    if (tr->block_size == 1 && n_tok % 2 == 0) {
        /* every other batch of half (and float) rows at a stride of whole 32-byte steps,
         * which the AVX-512 level packs, tails and all (odd strides stay in the file's
         * layout) */
        w_stride = (wrow + 31) / 32 * 32 + 32;
    }
    uint8_t *w = xmalloc(rows * w_stride);
    uint8_t *x = xmalloc(n_tok * x_stride);
    float *y = xmalloc(n_tok * y_stride * sizeof(float));
    float *xf = xmalloc(n * sizeof(float));
    for (size_t r = 0; r < rows; r++) {
        fill_random(t, w + r * w_stride, n, exact, false);
    }
    for (size_t i = 0; i < n_tok; i++) {
        if (exact && tr->block_size > 1) {
            fill_random(vt, x + i * x_stride, n, true, true);
        } else {
            for (size_t k = 0; k < n; k++) {
                xf[k] = exact ? (float)rng_int(-8, 8) : rng_gauss();
            }
            ref_from_f32[vt](xf, x + i * x_stride, n);
        }
    }
    /* and again from the level's packed layout of the same weights, where it has one */
    uint8_t *wp = ops->pack[t] ? xmalloc(rows * w_stride) : NULL;
    if (wp) {
        ops->pack[t](w, rows, w_stride, wp);
    }
    for (int pk = 0; pk < (wp ? 2 : 1); pk++) {
        for (size_t k = 0; k < n_tok * y_stride; k++) {
            y[k] = -12345.0f;
        }
        struct pd_gemm_args g = {pk ? wp : w, w_stride, x, x_stride, y, y_stride, n, n_tok, rows,
                                 pk == 1};
        pd_simd_gemm(ops, t, &g, r0, r1);
        for (size_t i = 0; i < n_tok; i++) {
            for (size_t r = 0; r < y_stride; r++) {
                float got = y[i * y_stride + r];
                if (r < r0 || r >= r1) {
                    if (got != -12345.0f) {
                        fail_msg("%s %s gemm: output (%zu, %zu) outside rows [%zu, %zu) written",
                                 pd_cpu_simd_name(ops->level), tr->name, r, i, r0, r1);
                    }
                    continue;
                }
                const uint8_t *wr = w + r * w_stride, *xr = x + i * x_stride;
                float want = ref_vec_dot[t](wr, xr, n);
                if (exact || is_k_quant(t) || (pk && packed_identical(ops, t, r, rows, n))) {
                    if (!same_float(got, want)) {
                        fail_msg("%s %s gemm %zux%zu n=%zu (row %zu, token %zu)%s%s: %.9g, "
                                 "portable %.9g (must be identical)", pd_cpu_simd_name(ops->level),
                                 tr->name, rows, n_tok, n, r, i, exact ? " exact" : "",
                                 pk ? " packed" : "", (double)got, (double)want);
                    }
                } else {
                    size_t chain = tr->block_size == 1 ? n / 8 + 16 : n / tr->block_size + 16;
                    double bound = (double)chain * 0x1p-23 * abs_dot(t, wr, xr, n);
                    if (!(fabs((double)got - (double)want) <= bound)) {
                        fail_msg("%s %s gemm %zux%zu n=%zu (row %zu, token %zu): %.9g, portable "
                                 "%.9g (bound %.3g)", pd_cpu_simd_name(ops->level), tr->name, rows,
                                 n_tok, n, r, i, (double)got, (double)want, bound);
                    }
                }
            }
        }
    }
    free(wp);
    free(w);
    free(x);
    free(y);
    free(xf);
}

/* Every tile shape and remainder: token counts 1..9 (4-token tiles and the 1-3 token
 * remainders) and prefill batches, row counts around the tile heights, row ranges that start inside the
 * matrix, block counts odd and even (q8_0 pairs blocks), float lengths with tails. */
static void test_gemm(void **state)
{
    (void)state;
    static const size_t row_counts[] = {1, 3, 4, 5, 8, 15, 16, 17, 33};
    for (int l = 0; l < n_fast_levels; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for(fast_levels[l]);
        for (size_t c = 0; c < N_DOT_TYPES; c++) {
            enum pd_dtype t = dot_types[c];
            uint32_t bs = pd_dtype_traits(t)->block_size;
            size_t lens[3] = {bs == 1 ? 40 : bs, bs == 1 ? 64 : 2 * bs, bs == 1 ? 83 : 3 * bs};
            for (size_t ri = 0; ri < sizeof row_counts / sizeof row_counts[0]; ri++) {
                for (size_t nt = 1; nt <= 9; nt++) {
                    size_t rows = row_counts[ri];
                    size_t n = lens[(ri + nt) % 3];
                    check_gemm(ops, t, rows, nt, n, 0, rows, false);
                    check_gemm(ops, t, rows, nt, n, rows / 3, rows - rows / 4, false);
                    check_gemm(ops, t, rows, nt, n, 0, rows, true);
                }
            }
            /* rows longer than one pass of the packed q4_0 kernel (256 blocks) */
            check_gemm(ops, t, 17, 3, bs == 1 ? 8200 : 33 * 256, 0, 17, false);
            /* and longer than the packed 32-element products' activation sums hold
             * (PD_PACKED_SX blocks): left in the file's layout by the pack, for the
             * tiles */
            if (bs == 32) {
                check_gemm(ops, t, 17, 2, (PD_PACKED_SX + 1) * 32, 0, 17, false);
            }
            /* batches as prefill makes them (q4_K in lanes keeps sums for 64 tokens at
             * a time) */
            static const size_t batch_tok[] = {16, 70};
            for (size_t bi = 0; bi < 2; bi++) {
                check_gemm(ops, t, 33, batch_tok[bi], lens[bi + 1], 0, 33, false);
                check_gemm(ops, t, 48, batch_tok[bi], lens[bi], 16, 48, true);
            }
        }
    }
}

/* The extreme codes through the tiles: every weight and activation byte 0x80, 0x7F, 0x00
 * or 0xFF with unit scales (bsums consistent), against the portable dot, bit for bit. */
static void test_gemm_extremes(void **state)
{
    (void)state;
    static const uint8_t fills[] = {0x80, 0x7F, 0x00, 0xFF};
    enum { ROWS = 17, TOK = 5 };
    for (int l = 0; l < n_fast_levels; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for(fast_levels[l]);
        for (size_t c = 0; c < N_DOT_TYPES; c++) {
            enum pd_dtype t = dot_types[c];
            const struct pd_dtype_traits *tr = pd_dtype_traits(t);
            const struct pd_dtype_traits *vt = pd_dtype_traits(tr->vec_dot_type);
            if (tr->block_size == 1) {
                continue;
            }
            size_t n = 3 * (size_t)tr->block_size;
            size_t wrow = 3 * tr->type_size, xrow = 3 * vt->type_size;
            uint8_t *w = xmalloc(ROWS * wrow), *wp = xmalloc(ROWS * wrow);
            uint8_t *x = xmalloc(TOK * xrow);
            float y[TOK * ROWS];
            for (size_t fw = 0; fw < sizeof fills; fw++) {
                for (size_t fx = 0; fx < sizeof fills; fx++) {
                    memset(w, fills[fw], ROWS * wrow);
                    memset(x, fills[fx], TOK * xrow);
                    for (size_t b = 0; b < 3 * ROWS; b++) {
                        uint8_t *wb = w + b * tr->type_size;
                        put_f16(t == PD_DTYPE_Q6_K ? wb + 208 : wb, 1.0f);
                        if (t == PD_DTYPE_Q4_K || t == PD_DTYPE_Q5_K) {
                            put_f16(wb + 2, 1.0f);
                        }
                    }
                    for (size_t b = 0; b < 3 * TOK; b++) {
                        uint8_t *xb = x + b * vt->type_size;
                        if (is_k_quant(t)) {
                            float one = 1.0f;
                            memcpy(xb, &one, 4);
                            int16_t s = (int16_t)(16 * (int8_t)fills[fx]);
                            for (int j = 0; j < 16; j++) {
                                memcpy(xb + 260 + 2 * j, &s, 2);
                            }
                        } else {
                            put_f16(xb, 1.0f);
                        }
                    }
                    for (int pk = 0; pk < (ops->pack[t] ? 2 : 1); pk++) {
                        if (pk) {
                            ops->pack[t](w, ROWS, wrow, wp);
                        }
                        struct pd_gemm_args g = {pk ? wp : w, wrow, x, xrow, y, ROWS, n, TOK,
                                                 ROWS, pk == 1};
                        pd_simd_gemm(ops, t, &g, 0, ROWS);
                        for (size_t i = 0; i < TOK * ROWS; i++) {
                            float want = ref_vec_dot[t](w + (i % ROWS) * wrow,
                                                        x + (i / ROWS) * xrow, n);
                            if (!same_float(y[i], want)) {
                                fail_msg("%s %s gemm%s bytes %02x x %02x: %.9g, portable %.9g",
                                         pd_cpu_simd_name(ops->level), tr->name,
                                         pk ? " packed" : "", fills[fw], fills[fx],
                                         (double)y[i], (double)want);
                            }
                        }
                    }
                }
            }
            free(w);
            free(wp);
            free(x);
        }
    }
}

/* ---- quantisers and conversions --------------------------------------------------------- */

/* Blocks of 32 values that probe the quantisers' rounding and special cases; block k of
 * the returned pattern set fills x[0..32). Returns false past the last pattern. */
static bool special_block(int k, float *x)
{
    for (int l = 0; l < 32; l++) {
        x[l] = rng_gauss();
    }
    switch (k) {
    case 0: /* zero block, with negative zeros */
        for (int l = 0; l < 32; l++) {
            x[l] = l & 1 ? -0.0f : 0.0f;
        }
        return true;
    case 1: /* amax 127 -> d = 1: exact .5 ties, both signs */
        for (int l = 0; l < 32; l++) {
            x[l] = (float)(l - 16) + 0.5f;
        }
        x[5] = 127.0f;
        return true;
    case 2: /* max -127: q8_K's iscale is exactly 1, ties to even */
        for (int l = 0; l < 32; l++) {
            x[l] = (float)(16 - l) - 0.5f;
        }
        x[3] = -127.0f;
        return true;
    case 3: /* equal magnitudes of both signs: the first is the signed max */
        x[7] = 3.0f;
        x[9] = -3.0f;
        return true;
    case 4:
        x[7] = -3.0f;
        x[9] = 3.0f;
        return true;
    case 5:
        x[11] = NAN;
        return true;
    case 6:
        x[0] = NAN;
        x[1] = -NAN;
        return true;
    case 7:
        x[4] = INFINITY;
        return true;
    case 8:
        x[4] = -INFINITY;
        x[5] = NAN;
        return true;
    case 9: /* past the half range: the scale clamps */
        x[2] = 3e38f;
        x[3] = -1e30f;
        return true;
    case 10: /* subnormal magnitudes: infinite inverse scales */
        for (int l = 0; l < 32; l++) {
            x[l] = x[l] * 1e-40f;
        }
        x[6] = 0.0f;
        return true;
    case 11: /* tiny but normal, with zeros */
        for (int l = 0; l < 32; l++) {
            x[l] = l % 3 ? x[l] * 1e-30f : 0.0f;
        }
        return true;
    case 12: /* all NaN */
        for (int l = 0; l < 32; l++) {
            x[l] = NAN;
        }
        return true;
    case 13: /* huge values, one spike */
        for (int l = 0; l < 32; l++) {
            x[l] = x[l] * 1e4f;
        }
        x[31] = 6e4f;
        return true;
    default:
        return k < 40; /* plain gaussian blocks */
    }
}

/* Quantises n floats with the portable and the level's from_f32 and compares bytes. */
static void check_from_f32(const struct pd_simd_ops *ops, enum pd_dtype t, const float *x,
                           size_t n, const char *what)
{
    size_t bytes = (size_t)pd_dtype_row_size(t, n);
    uint8_t *a = xmalloc(bytes);
    uint8_t *b = xmalloc(bytes);
    memset(a, 0xA5, bytes);
    memset(b, 0x5A, bytes); /* every byte must be written */
    ref_from_f32[t](x, a, n);
    ops->from_f32[t](x, b, n);
    for (size_t i = 0; i < bytes; i++) {
        if (a[i] != b[i]) {
            fail_msg("%s %s from_f32 (%s, n=%zu): byte %zu is %02x, portable %02x",
                     pd_cpu_simd_name(ops->level), pd_dtype_traits(t)->name, what, n, i, b[i],
                     a[i]);
        }
    }
    free(a);
    free(b);
}

static void test_quantisers(void **state)
{
    (void)state;
    enum { N = 9 * 256 };
    float *x = xmalloc(N * sizeof(float));
    for (int l = 0; l < n_fast_levels; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for(fast_levels[l]);
        for (int t = 0; t < PD_DTYPE_COUNT; t++) {
            if (!ops->from_f32[t]) {
                continue;
            }
            uint32_t bs = pd_dtype_traits((enum pd_dtype)t)->block_size;
            /* Each special pattern alone (in every 32-slot of a whole block) ... */
            for (int k = 0; special_block(k, x); k++) {
                for (size_t o = 32; o < 256; o += 32) {
                    special_block(k, x + o);
                }
                check_from_f32(ops, (enum pd_dtype)t, x, bs == 1 ? 256 : bs, "pattern");
            }
            /* ... and mixed over every block count 1..9 (and odd lengths for f16). */
            for (size_t nb = 1; nb <= 9; nb++) {
                for (size_t o = 0; o < N; o += 32) {
                    special_block(rng_int(0, 39), x + o);
                }
                size_t n = bs == 1 ? nb * 37 : nb * bs;
                check_from_f32(ops, (enum pd_dtype)t, x, n, "mixed");
            }
        }
    }
    free(x);
}

/* f32 -> f16 on random bit patterns (every class of float) and f16 -> f32 on every half. */
static void test_f16_rows(void **state)
{
    (void)state;
    enum { N = 1 << 16 };
    float *x = xmalloc(N * sizeof(float));
    float *a = xmalloc(N * sizeof(float));
    float *b = xmalloc(N * sizeof(float));
    uint16_t *h = xmalloc(N * sizeof(uint16_t));
    for (int l = 0; l < n_fast_levels; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for(fast_levels[l]);
        if (ops->from_f32[PD_DTYPE_F16]) {
            for (int rep = 0; rep < 16; rep++) {
                for (size_t i = 0; i < N; i++) {
                    /* Exponents concentrated around the half range and its edges. */
                    uint32_t bits = (uint32_t)rng_next();
                    if (rep & 1) {
                        bits = (bits & 0x807FFFFFu) | ((uint32_t)rng_int(96, 144) << 23);
                    }
                    x[i] = f32_from_bits(bits);
                }
                check_from_f32(ops, PD_DTYPE_F16, x, N - rep, "bit patterns");
            }
        }
        if (ops->to_f32[PD_DTYPE_F16]) {
            for (size_t i = 0; i < N; i++) {
                h[i] = (uint16_t)i;
            }
            for (size_t n = N - 9; n <= N; n++) { /* every tail length 0..7 */
                memset(a, 0, N * sizeof(float));
                memset(b, 0xFF, N * sizeof(float));
                ref_to_f32[PD_DTYPE_F16](h, a, n);
                ops->to_f32[PD_DTYPE_F16](h, b, n);
                for (size_t i = 0; i < n; i++) {
                    if (!same_float(a[i], b[i])) {
                        fail_msg("%s f16 0x%04zx -> %.9g, portable %.9g",
                                 pd_cpu_simd_name(ops->level), i, (double)b[i], (double)a[i]);
                    }
                }
            }
        }
    }
    free(x);
    free(a);
    free(b);
    free(h);
}

/* ---- attention kernels -------------------------------------------------------------------- */

static void test_kv_kernels(void **state)
{
    (void)state;
    enum { N = 300 };
    float q[N], k[N], acc_a[N], acc_b[N];
    uint16_t kh[N];
    const struct pd_simd_ops *ref = pd_simd_ops_for(PD_SIMD_SCALAR);
    for (int l = 0; l < n_fast_levels; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for(fast_levels[l]);
        const char *lv = pd_cpu_simd_name(ops->level);
        for (size_t n = 0; n <= N; n++) {
            for (int exact = 0; exact < 2; exact++) {
                double mag32 = 0.0, mag16 = 0.0;
                for (size_t i = 0; i < n; i++) {
                    q[i] = exact ? (float)rng_int(-8, 8) : rng_gauss();
                    k[i] = exact ? (float)rng_int(-8, 8) : rng_gauss();
                    kh[i] = pd_f32_to_f16(exact ? (float)rng_int(-8, 8) : rng_gauss());
                    mag32 += fabs((double)q[i] * k[i]);
                    mag16 += fabs((double)q[i] * pd_f16_to_f32(kh[i]));
                }
                /* Portable: one sequential chain of n additions. */
                double bound = exact ? 0.0 : (double)(n + 16) * 0x1p-23;
                float want = ref->kv_dot_f32(q, k, n), got = ops->kv_dot_f32(q, k, n);
                if (!(fabs((double)got - want) <= bound * mag32)) {
                    fail_msg("%s kv_dot_f32 n=%zu: %.9g, portable %.9g", lv, n, (double)got,
                             (double)want);
                }
                want = ref->kv_dot_f16(q, kh, n);
                got = ops->kv_dot_f16(q, kh, n);
                if (!(fabs((double)got - want) <= bound * mag16)) {
                    fail_msg("%s kv_dot_f16 n=%zu: %.9g, portable %.9g", lv, n, (double)got,
                             (double)want);
                }
            }
            /* axpy: identical bits (one fused multiply-add per element at every level). */
            float w = rng_gauss();
            for (size_t i = 0; i < N; i++) {
                acc_a[i] = acc_b[i] = rng_gauss();
            }
            ref->kv_axpy_f32(w, k, acc_a, n);
            ops->kv_axpy_f32(w, k, acc_b, n);
            ref->kv_axpy_f16(w, kh, acc_a, n);
            ops->kv_axpy_f16(w, kh, acc_b, n);
            for (size_t i = 0; i < N; i++) {
                if (f32_bits(acc_a[i]) != f32_bits(acc_b[i])) {
                    fail_msg("%s kv_axpy n=%zu: element %zu is %.9g, portable %.9g", lv, n, i,
                             (double)acc_b[i], (double)acc_a[i]);
                }
            }
        }
    }
}

/* Blocked attention against the reference loop (pd_simd_attn with the scalar table):
 * query groups of 1..40 with their own visible prefixes (1..70 slots, not multiples of
 * the kernels' blocks), both cache types, head sizes 16..208. Probabilities must agree
 * within their size times the scores' rounding bound (E: the dot products' summation
 * bound, through exp and the normalisation), outputs within that plus the summation bound
 * of n_vis products, relative to sum(p * |v|).
 * Against the per-query loop of its own level (the same table without .attn) a blocked
 * kernel must agree bit for bit: switching it on must not change a model's output. A
 * difference of one float step is enough to move the f16 scale of a q8_0 block of the
 * next layer's input across a rounding midpoint; with the earlier kernel (its own
 * summation order, a vector exp, a float sum) that moved a log-probability of the q8_0
 * llama model with rope_freqs by 5e-2 at position 7 (test_cuda's llama-ropefreqs case). */
static void check_attn(const struct pd_simd_ops *ops, bool f16, uint32_t hd, uint32_t hdv,
                       uint32_t n_q, uint32_t n_slots)
{
    const struct pd_simd_ops *ref = pd_simd_ops_for(PD_SIMD_SCALAR);
    size_t ks = hd + 8, vs = hdv + 24; /* rows of a wider cache (other heads) */
    float *kf = xmalloc(n_slots * ks * sizeof(float)), *vf = xmalloc(n_slots * vs * sizeof(float));
    uint16_t *kh = xmalloc(n_slots * ks * 2), *vh = xmalloc(n_slots * vs * 2);
    for (size_t i = 0; i < n_slots * ks; i++) {
        kh[i] = pd_f32_to_f16(rng_gauss());
        kf[i] = f16 ? pd_f16_to_f32(kh[i]) : rng_gauss();
    }
    for (size_t i = 0; i < n_slots * vs; i++) {
        vh[i] = pd_f32_to_f16(rng_gauss());
        vf[i] = f16 ? pd_f16_to_f32(vh[i]) : rng_gauss();
    }
    float *qbuf = xmalloc(n_q * hd * sizeof(float));
    float *pa = xmalloc(n_q * n_slots * sizeof(float)), *pb = xmalloc(n_q * n_slots * sizeof(float));
    float *oa = xmalloc(n_q * hdv * sizeof(float)), *ob = xmalloc(n_q * hdv * sizeof(float));
    float *pc = xmalloc(n_q * n_slots * sizeof(float)), *oc = xmalloc(n_q * hdv * sizeof(float));
    const float *qp[40];
    float *ppa[40], *ppb[40], *ppc[40], *opa[40], *opb[40], *opc[40];
    uint32_t nv[40];
    for (uint32_t i = 0; i < n_q; i++) {
        for (uint32_t d = 0; d < hd; d++) {
            qbuf[i * hd + d] = rng_gauss() * 0.5f;
        }
        qp[i] = qbuf + i * hd;
        ppa[i] = pa + i * n_slots;
        ppb[i] = pb + i * n_slots;
        ppc[i] = pc + i * n_slots;
        opa[i] = oa + i * hdv;
        opb[i] = ob + i * hdv;
        opc[i] = oc + i * hdv;
        /* groups of 4 queries share a prefix, as the heads of one token do */
        nv[i] = i / 4 == 0 ? n_slots : (uint32_t)rng_int(1, (int)n_slots);
    }
    for (size_t i = 0; i < n_q * n_slots; i++) {
        pa[i] = pb[i] = -7.0f; /* entries past n_vis stay untouched */
    }
    struct pd_attn_args a = {n_q, qp, ppa, opa, nv, f16 ? (const void *)kh : (const void *)kf,
                             f16 ? (const void *)vh : (const void *)vf, ks, vs, hd, hdv,
                             1.0f / sqrtf((float)hd), f16};
    pd_simd_attn(ref, &a);
    a.p = ppb;
    a.o = opb;
    if (ops->attn && hd % 16 == 0 && hdv % 16 == 0 &&
        (f16 || ops->level == PD_SIMD_AVX512)) {
        /* the blocked kernels take every head size of whole 16s up to 256: AVX-512 for f16
         * and f32 rows, AVX2 for f16 (f32 takes its per-query loop) */
        if (!ops->attn(&a)) {
            fail_msg("%s attn: the blocked kernel refused head sizes %u/%u",
                     pd_cpu_simd_name(ops->level), hd, hdv);
        }
    } else {
        pd_simd_attn(ops, &a);
    }
    struct pd_simd_ops loop = *ops;
    loop.attn = NULL;
    a.p = ppc;
    a.o = opc;
    pd_simd_attn(&loop, &a);
    for (uint32_t i = 0; i < n_q; i++) {
        for (uint32_t s = 0; s < nv[i]; s++) {
            if (f32_bits(ppb[i][s]) != f32_bits(ppc[i][s])) {
                fail_msg("%s attn %s hd %u: query %u slot %u of %u: p %a, the level's loop %a",
                         pd_cpu_simd_name(ops->level), f16 ? "f16" : "f32", hd, i, s, nv[i],
                         (double)ppb[i][s], (double)ppc[i][s]);
            }
        }
        for (uint32_t d = 0; d < hdv; d++) {
            if (f32_bits(opb[i][d]) != f32_bits(opc[i][d])) {
                fail_msg("%s attn %s hd %u/%u: query %u (%u slots) output %u: %a, the level's "
                         "loop %a", pd_cpu_simd_name(ops->level), f16 ? "f16" : "f32", hd, hdv,
                         i, nv[i], d, (double)opb[i][d], (double)opc[i][d]);
            }
        }
    }
    for (uint32_t i = 0; i < n_q; i++) {
        double e = 0.0; /* the largest score's rounding bound */
        for (uint32_t s = 0; s < nv[i]; s++) {
            double m = 0.0;
            for (uint32_t d = 0; d < hd; d++) {
                m += fabs((double)qp[i][d] * kf[s * ks + d]);
            }
            m *= (double)(hd + 16) * 0x1p-23 * a.scale;
            e = m > e ? m : e;
        }
        double rel = 4.0 * e + 1e-6;
        for (uint32_t s = 0; s < n_slots; s++) {
            float want = ppa[i][s], got = ppb[i][s];
            if (s >= nv[i]) {
                if (got != -7.0f) {
                    fail_msg("%s attn: query %u wrote probability %u past its %u visible slots",
                             pd_cpu_simd_name(ops->level), i, s, nv[i]);
                }
                continue;
            }
            if (!(fabs((double)got - want) <= rel * want + 1e-30)) {
                fail_msg("%s attn %s hd %u: query %u slot %u of %u: p %.9g, reference %.9g",
                         pd_cpu_simd_name(ops->level), f16 ? "f16" : "f32", hd, i, s, nv[i],
                         (double)got, (double)want);
            }
        }
        for (uint32_t d = 0; d < hdv; d++) {
            double mag = 0.0;
            for (uint32_t s = 0; s < nv[i]; s++) {
                mag += ppa[i][s] * fabs((double)vf[s * vs + d]);
            }
            double bound = (rel + (double)(nv[i] + 16) * 0x1p-23) * mag + 1e-30;
            if (!(fabs((double)opb[i][d] - opa[i][d]) <= bound)) {
                fail_msg("%s attn %s hd %u/%u: query %u (%u slots) output %u: %.9g, reference "
                         "%.9g (bound %.3g)", pd_cpu_simd_name(ops->level), f16 ? "f16" : "f32",
                         hd, hdv, i, nv[i], d, (double)opb[i][d], (double)opa[i][d], bound);
            }
        }
    }
    free(kf);
    free(vf);
    free(kh);
    free(vh);
    free(qbuf);
    free(pa);
    free(pb);
    free(oa);
    free(ob);
    free(pc);
    free(oc);
}

static void test_attn(void **state)
{
    (void)state;
    /* head sizes 32 m + 16 take the remainder steps of the f32 dot (m = 0, 1, 6); V heads
     * over 64 take the blocked kernel's 64-column passes (and a last one of 16) */
    static const uint32_t dims[][2] = {{64, 64}, {128, 64}, {32, 32}, {16, 48}, {48, 64},
                                       {208, 32}, {40, 40}, {128, 128}, {80, 80}, {256, 208}};
    static const uint32_t queries[] = {1, 3, 4, 8, 9, 32, 40};
    static const uint32_t slots[] = {1, 15, 16, 17, 70};
    for (int l = 0; l < n_fast_levels; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for(fast_levels[l]);
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
            for (size_t qi = 0; qi < sizeof queries / sizeof queries[0]; qi++) {
                for (size_t si = 0; si < sizeof slots / sizeof slots[0]; si++) {
                    for (int f16 = 0; f16 < 2; f16++) {
                        check_attn(ops, f16, dims[di][0], dims[di][1], queries[qi], slots[si]);
                    }
                }
            }
        }
    }
}

/* Hidden slots (a shadow policy's divergence, pd_attn_args.hide): at every level, each
 * query's probabilities are 0 on the slots hidden from it (every hidden slot but the one at
 * the query's own position) and, with its outputs, agree within float rounding with the
 * same query over a cache holding only the slots it sees; the blocked kernels must leave
 * such calls to the per-query loop. */
static void test_attn_hide(void **state)
{
    (void)state;
    enum { HD = 64, NS = 70, NQ = 8 };
    uint16_t *k = xmalloc(NS * HD * 2), *v = xmalloc(NS * HD * 2);
    uint16_t *kc = xmalloc(NS * HD * 2), *vc = xmalloc(NS * HD * 2);
    for (size_t i = 0; i < NS * HD; i++) {
        k[i] = pd_f32_to_f16(rng_gauss());
        v[i] = pd_f32_to_f16(rng_gauss());
    }
    float q[NQ][HD], p[NQ][NS], o[NQ][HD], pc[NS], oc[HD];
    const float *qp[NQ];
    float *pp[NQ], *op[NQ];
    uint32_t nv[NQ];
    int64_t slot_pos[NS], q_pos[NQ];
    uint8_t hide[NS];
    for (uint32_t s = 0; s < NS; s++) {
        slot_pos[s] = 3 * (int64_t)s; /* positions need not be slot indices */
        hide[s] = (uint8_t)(rng_int(0, 2) == 0);
    }
    for (uint32_t i = 0; i < NQ; i++) {
        for (uint32_t d = 0; d < HD; d++) {
            q[i][d] = rng_gauss() * 0.5f;
        }
        qp[i] = q[i];
        pp[i] = p[i];
        op[i] = o[i];
        nv[i] = i < 4 ? NS : (uint32_t)rng_int(1, NS);
        q_pos[i] = slot_pos[nv[i] - 1]; /* the query's own slot is its last visible one */
        hide[nv[i] - 1] = 1;            /* hidden from the others, never from itself */
    }
    for (int l = 0; l < PD_SIMD_LEVEL_COUNT; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for((enum pd_simd_level)l);
        if (!ops || l > (int)pd_cpu_simd_best()) {
            continue;
        }
        struct pd_attn_args a = {NQ, qp, pp, op, nv, k, v, HD, HD, HD, HD, 0.125f, true,
                                 hide, slot_pos, q_pos};
        pd_simd_attn(ops, &a);
        for (uint32_t i = 0; i < NQ; i++) {
            uint32_t n = 0;
            int32_t at[NS];
            for (uint32_t s = 0; s < nv[i]; s++) {
                if (hide[s] && slot_pos[s] != q_pos[i]) {
                    if (p[i][s] != 0.0f) {
                        fail_msg("%s: query %u sees hidden slot %u (p %g)",
                                 pd_cpu_simd_name(ops->level), i, s, (double)p[i][s]);
                    }
                    continue;
                }
                memcpy(kc + n * HD, k + s * HD, HD * 2);
                memcpy(vc + n * HD, v + s * HD, HD * 2);
                at[n++] = (int32_t)s;
            }
            const float *q1 = q[i];
            float *pc1 = pc, *oc1 = oc;
            struct pd_attn_args b = {1, &q1, &pc1, &oc1, &n, kc, vc, HD, HD, HD, HD, 0.125f,
                                     true};
            pd_simd_attn(ops, &b);
            float onorm = 0;
            for (uint32_t s = 0; s < n; s++) {
                if (fabsf(pc[s] - p[i][at[s]]) > 1e-6f * fabsf(pc[s]) + 1e-30f) {
                    fail_msg("%s: query %u slot %d: p %a, over the visible slots alone %a",
                             pd_cpu_simd_name(ops->level), i, at[s], (double)p[i][at[s]],
                             (double)pc[s]);
                }
                onorm += pc[s] * 4.0f; /* |v| of a gaussian f16 row stays well under 4 */
            }
            for (uint32_t d = 0; d < HD; d++) {
                if (fabsf(oc[d] - o[i][d]) > 1e-5f * onorm) {
                    fail_msg("%s: query %u output %u: %a, over the visible slots alone %a",
                             pd_cpu_simd_name(ops->level), i, d, (double)o[i][d], (double)oc[d]);
                }
            }
        }
    }
    free(k);
    free(v);
    free(kc);
    free(vc);
}

/* Units in the last place between two floats of the same sign (0 when equal). */
static uint32_t ulp_diff(float a, float b)
{
    uint32_t ua, ub;
    memcpy(&ua, &a, 4);
    memcpy(&ub, &b, 4);
    return ua > ub ? ua - ub : ub - ua;
}

/* True where the C library's expf is the algorithm the vector versions follow (glibc
 * 2.27+ picks it on FMA machines, which every level with exp_sum has). */
static bool expf_is_glibc(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 27))
    return true;
#else
    return false;
#endif
}

/* A level's exp_sum and swiglu against expf: every float bit pattern with a stride of
 * 1021 (over 4 million values, all signs and exponents, NaNs and infinities), the range
 * edges and their neighbours, and odd lengths for the tails. With glibc each result
 * equals expf's bit for bit (a 1-ulp difference moved a q8_0 scale of the next layer's
 * input once, see test_attn); elsewhere within 1 ulp. The sum must be the slot-order
 * double sum of the results. PONDER_EXP_STRIDE=1 checks all 2^32 floats. */
static void test_exp(void **state)
{
    (void)state;
    const char *env = getenv("PONDER_EXP_STRIDE");
    uint64_t stride = env ? strtoull(env, NULL, 10) : 1021;
    if (stride == 0) {
        stride = 1;
    }
    bool exact = expf_is_glibc();
    enum { CHUNK = 4093 }; /* odd: every call has a tail */
    static float in[CHUNK], out[CHUNK], g[CHUNK], u[CHUNK], h[CHUNK];
    static const float edges[] = {0x1.62e42ep6f,  0x1.62e430p6f, -0x1.9fe368p6f,
                                  -0x1.9fe366p6f, -0x1.9d1d9ep6f, -0x1.9d1da0p6f,
                                  -0x1.9d1d9cp6f, 88.0f,          -88.0f,
                                  -104.0f,        0.0f,           -0.0f,
                                  INFINITY,       -INFINITY,      NAN,
                                  0x1p-149f,      -0x1p-149f,     1e-30f};
    for (int l = 0; l < n_fast_levels; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for(fast_levels[l]);
        if (!ops->exp_sum && !ops->swiglu) {
            continue;
        }
        uint64_t bits = 0, mismatches = 0;
        bool done = false;
        size_t n_edges = sizeof edges / sizeof edges[0];
        while (!done) {
            size_t n = 0;
            if (bits == 0) {
                for (; n < n_edges; n++) {
                    in[n] = edges[n];
                }
            }
            for (; n < CHUNK && !done; n++) {
                uint32_t b = (uint32_t)bits;
                memcpy(&in[n], &b, 4);
                bits += stride;
                done = bits > UINT32_MAX;
            }
            memcpy(out, in, n * sizeof(float));
            double sum = pd_simd_exp_sum(ops, out, (uint32_t)n, 0.0f);
            double part[16] = {0};
            for (size_t i = 0; i < n; i++) {
                float want = expf(in[i] - 0.0f);
                part[i % 16] += want;
                bool same = isnan(want) ? isnan(out[i]) : out[i] == want;
                if (!same && (exact || ulp_diff(out[i], want) > 1)) {
                    if (mismatches++ < 5) {
                        print_error("%s exp_sum: expf(%a) = %a, kernel %a\n",
                                    pd_cpu_simd_name(ops->level), (double)in[i], (double)want,
                                    (double)out[i]);
                    }
                }
                g[i] = in[i];
                u[i] = (float)(i % 7) - 3.0f;
            }
            double want_sum = pd_sum16_tree(part);
            if (exact && !(isnan(want_sum) ? isnan(sum) : sum == want_sum)) {
                if (mismatches++ < 5) {
                    print_error("%s exp_sum: sum %a, want %a\n", pd_cpu_simd_name(ops->level),
                                sum, want_sum);
                }
            }
            pd_simd_swiglu(ops, h, g, u, n);
            for (size_t i = 0; i < n; i++) {
                float want = g[i] / (1.0f + expf(-g[i])) * u[i];
                bool same = isnan(want) ? isnan(h[i]) : h[i] == want;
                if (!same && (exact || ulp_diff(h[i], want) > 2)) {
                    if (mismatches++ < 5) {
                        print_error("%s swiglu: g %a u %a: %a, kernel %a\n",
                                    pd_cpu_simd_name(ops->level), (double)g[i], (double)u[i],
                                    (double)want, (double)h[i]);
                    }
                }
            }
        }
        assert_int_equal(mismatches, 0);
    }
}

/* A level's head-mean row equals the scalar table's bit for bit (the same adds per slot)
 * for head counts 1..9 and row lengths around the vector width, rows strided apart. */
static void test_head_mean(void **state)
{
    (void)state;
    const struct pd_simd_ops *ref = pd_simd_ops_for(PD_SIMD_SCALAR);
    enum { STRIDE = 80 };
    static float rows[9 * STRIDE], want[STRIDE + 1], got[STRIDE + 1];
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        rows[i] = rng_gauss() * rng_gauss();
    }
    for (int l = 0; l < n_fast_levels; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for(fast_levels[l]);
        for (uint32_t heads = 1; heads <= 9; heads++) {
            for (uint32_t n = 0; n <= 70; n++) {
                want[n] = got[n] = 42.0f; /* past the row: untouched */
                pd_simd_head_mean(ref, want, rows, STRIDE, heads, n);
                pd_simd_head_mean(ops, got, rows, STRIDE, heads, n);
                for (uint32_t s = 0; s <= n; s++) {
                    if (!same_float(got[s], want[s])) {
                        fail_msg("%s head_mean %u heads, %u slots: slot %u %a, want %a",
                                 pd_cpu_simd_name(ops->level), heads, n, s, (double)got[s],
                                 (double)want[s]);
                    }
                }
            }
        }
    }
}

/* The same double, bit for bit (any two NaNs count as the same). */
static bool same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

/* A level's sum of squares (the RMS norm's) against the scalar table's, bit for bit, for
 * lengths 0..70 (every tail) and model-row sizes; values spread over many magnitudes (so
 * the order of the double adds shows in the last bits), with an infinity, a NaN and
 * squares that overflow float. Also against an independent sum in pd_sum16_tree's order
 * (element i into part i % 16). */
static void test_sum_sq(void **state)
{
    (void)state;
    const struct pd_simd_ops *ref = pd_simd_ops_for(PD_SIMD_SCALAR);
    enum { N_MAX = 8960 };
    float *x = xmalloc(N_MAX * sizeof *x);
    static const size_t big[] = {512, 1536, 2048, 4099, 8960};
    for (int kind = 0; kind < 4; kind++) {
        for (size_t c = 0; c < 71 + sizeof big / sizeof big[0]; c++) {
            size_t n = c < 71 ? c : big[c - 71];
            for (size_t i = 0; i < n; i++) {
                x[i] = rng_gauss() * ldexpf(1.0f, rng_int(-20, 20));
            }
            if (kind == 1 && n > 0) {
                x[rng_int(0, (int)n - 1)] = -INFINITY;
            } else if (kind == 2 && n > 0) {
                x[rng_int(0, (int)n - 1)] = NAN;
            } else if (kind == 3 && n > 0) {
                x[rng_int(0, (int)n - 1)] = 3e20f; /* its square is +inf in float */
            }
            double part[16] = {0};
            for (size_t i = 0; i < n; i++) {
                part[i % 16] += (double)(x[i] * x[i]);
            }
            double want = pd_sum16_tree(part);
            assert_true(same_double(pd_simd_sum_sq(ref, x, n), want));
            if (kind == 0) {
                assert_true(n == 0 ? want == 0.0 : want > 0.0 && isfinite(want));
            } else if (n > 0) {
                assert_true(kind == 2 ? isnan(want) : want == INFINITY);
            }
            for (int l = 0; l < n_fast_levels; l++) {
                const struct pd_simd_ops *ops = pd_simd_ops_for(fast_levels[l]);
                double got = pd_simd_sum_sq(ops, x, n);
                if (!same_double(got, want)) {
                    fail_msg("%s sum_sq, kind %d, %zu values: %a, want %a",
                             pd_cpu_simd_name(ops->level), kind, n, got, want);
                }
            }
        }
    }
    free(x);
}

/* A level's log-softmax sums (the probe's) against the scalar table's: the largest logit
 * equal, both sums bit for bit where the C library's expf is the one the kernels follow
 * (else within 1e-6 relative), for lengths 0..70 (every tail) and vocabulary-sized ones,
 * logits spread like a model's, with -inf entries (a masked token adds nothing), a NaN
 * (the sum NaN), all -inf (mx -inf, sums 0) and a spread wide enough that some
 * exponentials underflow to 0. */
static void test_logit_sums(void **state)
{
    (void)state;
    const struct pd_simd_ops *ref = pd_simd_ops_for(PD_SIMD_SCALAR);
    bool exact = expf_is_glibc();
    enum { N_MAX = 4099 };
    float *x = xmalloc(N_MAX * sizeof *x);
    static const size_t big[] = {1000, 4096, 4099};
    for (int l = 0; l < n_fast_levels; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for(fast_levels[l]);
        for (int kind = 0; kind < 5; kind++) {
            for (size_t c = 0; c < 71 + sizeof big / sizeof big[0]; c++) {
                size_t n = c < 71 ? c : big[c - 71];
                for (size_t i = 0; i < n; i++) {
                    float g = rng_gauss();
                    x[i] = kind == 4 ? 40.0f * g : 3.0f * g + 1.0f;
                    if (kind == 1 && rng_int(0, 3) == 0) {
                        x[i] = -INFINITY;
                    } else if (kind == 3) {
                        x[i] = -INFINITY;
                    }
                }
                if (kind == 2 && n > 0) {
                    x[rng_int(0, (int)n - 1)] = NAN;
                }
                double ws, ww, gs, gw;
                float wm = pd_simd_logit_sums(ref, x, n, &ws, &ww);
                float gm = pd_simd_logit_sums(ops, x, n, &gs, &gw);
                bool ok = wm == gm || (isnan(wm) && isnan(gm));
                if (exact) {
                    ok = ok && same_double(gs, ws) && same_double(gw, ww);
                } else {
                    ok = ok && fabs(gs - ws) <= 1e-6 * fabs(ws) &&
                         fabs(gw - ww) <= 1e-6 * fabs(ww);
                }
                if (!ok) {
                    fail_msg("%s logit_sums, kind %d, %zu logits: mx %a sum %a wsum %a, want "
                             "%a %a %a", pd_cpu_simd_name(ops->level), kind, n, (double)gm,
                             gs, gw, (double)wm, ws, ww);
                }
                if (kind == 3 || n == 0) {
                    assert_true(gm == -INFINITY);
                }
                if (gm == -INFINITY) { /* no finite logit (or a lone NaN): nothing summed */
                    assert_true(gs == 0.0 && gw == 0.0);
                } else if (kind == 2) {
                    assert_true(isnan(gs));
                } else {
                    assert_true(gs >= 1.0 && gw <= 0.0);
                }
            }
        }
    }
    free(x);
}

/* Every replaced function of every accelerated table is one that the tests above cover. */
static void test_coverage(void **state)
{
    (void)state;
    for (int l = 0; l < n_fast_levels; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for(fast_levels[l]);
        for (int t = 0; t < PD_DTYPE_COUNT; t++) {
            bool dot_covered = false;
            for (size_t c = 0; c < N_DOT_TYPES; c++) {
                dot_covered = dot_covered || dot_types[c] == (enum pd_dtype)t;
            }
            assert_true(!ops->vec_dot[t] || dot_covered);
            assert_true(!ops->gemm[t] || dot_covered);
            assert_true(!ops->pack[t] || ops->gemm[t]); /* check_gemm runs packed too */
            /* from_f32 is compared for any type; to_f32 only for f16 (test_f16_rows). */
            assert_true(!ops->to_f32[t] || t == PD_DTYPE_F16);
            assert_true(!ops->from_f32[t] || t == PD_DTYPE_F16 || t == PD_DTYPE_Q8_0 ||
                        t == PD_DTYPE_Q8_1 || t == PD_DTYPE_Q8_K);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child-expect") == 0) {
        return child_check(argv[2]);
    }
    find_fast_levels();
    const struct CMUnitTest dispatch_tests[] = {
        cmocka_unit_test(test_choose),
        cmocka_unit_test(test_prefetch_choose),
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_override_in_process),
    };
    const struct CMUnitTest kernel_tests[] = {
        cmocka_unit_test(test_coverage),
        cmocka_unit_test(test_vec_dot_blocks),
        cmocka_unit_test(test_vec_dot_extremes),
        cmocka_unit_test(test_vec_dot_float),
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_gemm_extremes),
        cmocka_unit_test(test_quantisers),
        cmocka_unit_test(test_f16_rows),
        cmocka_unit_test(test_kv_kernels),
        cmocka_unit_test(test_attn),
        cmocka_unit_test(test_attn_hide),
        cmocka_unit_test(test_exp),
        cmocka_unit_test(test_head_mean),
        cmocka_unit_test(test_logit_sums),
        cmocka_unit_test(test_sum_sq),
    };
    int failed = cmocka_run_group_tests_name("dispatch", dispatch_tests, NULL, NULL);
    if (n_fast_levels == 0) {
        fprintf(stderr, "SKIP: this CPU/build has no accelerated SIMD level (best: %s); "
                "the kernel comparisons did not run\n", pd_cpu_simd_name(pd_cpu_simd_best()));
        return failed ? 1 : 77;
    }
    failed += cmocka_run_group_tests_name("kernels", kernel_tests, NULL, NULL);
    return failed ? 1 : 0;
}
