/* bench_kernels.c - `bench-kernels`: the speed of the weight-product kernels alone.
 *
 *   bench-kernels [--type T] [--rows R] [--cols K] [--tokens N] [--level L] [--secs S]
 *   bench-kernels --attn SLOTS [--queries Q] [--head-dim D] [--level L] [--secs S]
 *   bench-kernels --probe VOCAB [--level L] [--secs S]
 *
 * Times pd_simd_gemm (one thread, rows 0..R) on random weights of type T (default: q8_0,
 * q4_k and f16) against N activation rows in the type's dot format, at every SIMD level
 * this CPU runs (or only L), and prints multiply-adds per second and weight bytes read
 * per second. Each figure is the best of several runs of about S seconds / 5 (default
 * S = 1); a level that packs the type (simd.h pack) is timed on its packed layout too.
 * With --attn, times pd_simd_attn instead: Q queries (default 32: 8 tokens of a 4-head
 * group, as the forward pass hands a prefill block to it) over SLOTS slots of an f16 KV
 * head of D (default 64) dimensions, every query seeing them all; it prints the score and
 * value multiply-adds per second (2 x Q x SLOTS x D per call). With --probe, times the
 * per-token probe over VOCAB random logits: the log-softmax sums (pd_simd_logit_sums) at
 * each level and the top-5 selection (pd_probe_topk).
 * A number for comparing kernels on one machine, not a model speed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu.h"
#include "dtype.h"
#include "probe.h"
#include "simd.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static float rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int run(enum pd_dtype t, size_t rows, size_t cols, size_t n_tok, int level_only,
               double secs)
{
    const struct pd_dtype_traits *tr = pd_dtype_traits(t);
    enum pd_dtype vt = tr->vec_dot_type;
    size_t wrow = (size_t)pd_dtype_row_size(t, cols), xrow = (size_t)pd_dtype_row_size(vt, cols);
    if (wrow == 0 || xrow == 0) {
        fprintf(stderr, "bench-kernels: %zu columns are not whole %s blocks\n", cols, tr->name);
        return 1;
    }
    float *f = malloc(cols * sizeof *f);
    uint8_t *w = malloc(rows * wrow);
    uint8_t *x = malloc(n_tok * xrow);
    float *y = malloc(rows * n_tok * sizeof *y);
    if (!f || !w || !x || !y) {
        fprintf(stderr, "bench-kernels: out of memory\n");
        return 1;
    }
    for (size_t r = 0; r < rows; r++) {
        for (size_t k = 0; k < cols; k++) {
            f[k] = rnd();
        }
        tr->from_f32(f, w + r * wrow, cols);
    }
    for (size_t i = 0; i < n_tok; i++) {
        for (size_t k = 0; k < cols; k++) {
            f[k] = rnd();
        }
        pd_dtype_traits(vt)->from_f32(f, x + i * xrow, cols);
    }
    uint8_t *wp = malloc(rows * wrow);
    if (!wp) {
        fprintf(stderr, "bench-kernels: out of memory\n");
        return 1;
    }
    for (int l = 0; l < PD_SIMD_LEVEL_COUNT; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for((enum pd_simd_level)l);
        if (!ops || l > (int)pd_cpu_simd_best() || (level_only >= 0 && l != level_only)) {
            continue;
        }
        /* the file's layout, then the level's packed one where it has one */
        for (int pk = 0; pk < (ops->pack[t] ? 2 : 1); pk++) {
            if (pk) {
                ops->pack[t](w, rows, wrow, wp);
            }
            struct pd_gemm_args g = {pk ? wp : w, wrow, x, xrow, y, rows, cols, n_tok, rows,
                                     pk == 1};
            double best = 1e30;
            for (int rep = 0; rep < 5; rep++) {
                int calls = 0;
                double t0 = now_s(), t1 = t0;
                while (t1 - t0 < secs / 5 || calls < 2) {
                    pd_simd_gemm(ops, t, &g, 0, rows);
                    calls++;
                    t1 = now_s();
                }
                double per = (t1 - t0) / calls;
                best = per < best ? per : best;
            }
            double macs = (double)rows * cols * n_tok;
            printf("%-5s %-10s%s %6zu x %6zu x %4zu tokens: %7.2f GMAC/s  %6.2f GB/s of "
                   "weights  %8.1f us\n", tr->name, pd_cpu_simd_name((enum pd_simd_level)l),
                   pk ? " packed" : "", rows, cols, n_tok, macs / best / 1e9,
                   (double)rows * wrow / best / 1e9, best * 1e6);
        }
    }
    free(wp);
    free(f);
    free(w);
    free(x);
    free(y);
    return 0;
}

static int run_attn(size_t slots, size_t n_q, size_t hd, int level_only, double secs)
{
    float *q = malloc(n_q * hd * sizeof *q), *p = malloc(n_q * slots * sizeof *p);
    float *o = malloc(n_q * hd * sizeof *o), *f = malloc(hd * sizeof *f);
    uint16_t *kv = malloc(2 * slots * hd * sizeof *kv);
    const float **qp = malloc(n_q * sizeof *qp);
    float **pp = malloc(n_q * sizeof *pp), **op = malloc(n_q * sizeof *op);
    uint32_t *nv = malloc(n_q * sizeof *nv);
    if (!q || !p || !o || !f || !kv || !qp || !pp || !op || !nv) {
        fprintf(stderr, "bench-kernels: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n_q * hd; i++) {
        q[i] = rnd();
    }
    for (size_t s = 0; s < 2 * slots; s++) {
        for (size_t d = 0; d < hd; d++) {
            f[d] = rnd();
        }
        pd_dtype_traits(PD_DTYPE_F16)->from_f32(f, kv + s * hd, hd);
    }
    for (size_t i = 0; i < n_q; i++) {
        qp[i] = q + i * hd;
        pp[i] = p + i * slots;
        op[i] = o + i * hd;
        nv[i] = (uint32_t)slots;
    }
    struct pd_attn_args a = {(uint32_t)n_q, qp, pp, op, nv, kv, kv + slots * hd, hd, hd,
                             (uint32_t)hd, (uint32_t)hd, 0.125f, true};
    for (int l = 0; l < PD_SIMD_LEVEL_COUNT; l++) {
        const struct pd_simd_ops *ops = pd_simd_ops_for((enum pd_simd_level)l);
        if (!ops || l > (int)pd_cpu_simd_best() || (level_only >= 0 && l != level_only)) {
            continue;
        }
        double best = 1e30;
        for (int rep = 0; rep < 5; rep++) {
            int calls = 0;
            double t0 = now_s(), t1 = t0;
            while (t1 - t0 < secs / 5 || calls < 2) {
                pd_simd_attn(ops, &a);
                calls++;
                t1 = now_s();
            }
            double per = (t1 - t0) / calls;
            best = per < best ? per : best;
        }
        double macs = 2.0 * (double)n_q * (double)slots * (double)hd;
        printf("attn  %-10s %4zu queries x %6zu slots x %3zu dims (f16 KV): %7.2f GMAC/s  "
               "%8.1f us\n", pd_cpu_simd_name((enum pd_simd_level)l), n_q, slots, hd,
               macs / best / 1e9, best * 1e6);
    }
    free(q);
    free(p);
    free(o);
    free(f);
    free(kv);
    free(qp);
    free(pp);
    free(op);
    free(nv);
    return 0;
}

/* Best time per call of fn(ud) over 5 runs of about secs / 5 each. */
static double best_time(void (*fn)(void *), void *ud, double secs)
{
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        int calls = 0;
        double t0 = now_s(), t1 = t0;
        while (t1 - t0 < secs / 5 || calls < 2) {
            fn(ud);
            calls++;
            t1 = now_s();
        }
        double per = (t1 - t0) / calls;
        best = per < best ? per : best;
    }
    return best;
}

struct probe_run {
    const struct pd_simd_ops *ops;
    const float *logits;
    size_t n;
    double sum, wsum;
    struct pd_topk top[PD_TOPK_MAX];
};

static void probe_sums_once(void *ud)
{
    struct probe_run *r = ud;
    pd_simd_logit_sums(r->ops, r->logits, r->n, &r->sum, &r->wsum);
}

static void probe_topk_once(void *ud)
{
    struct probe_run *r = ud;
    struct pd_dist_stats st = {0, 0};
    pd_probe_topk(r->logits, r->n, st, 5, r->top);
}

/* The probe over a vocabulary of n random logits: the log-softmax sums at each level and
 * the top-5 selection (the same at every level). */
static int run_probe(size_t n, int level_only, double secs)
{
    float *lg = malloc(n * sizeof *lg);
    if (!lg) {
        fprintf(stderr, "bench-kernels: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        lg[i] = 4.0f * (rnd() + rnd() + rnd()); /* roughly bell-shaped, like logits */
    }
    struct probe_run r = {NULL, lg, n, 0, 0, {{0, 0}}};
    for (int l = 0; l < PD_SIMD_LEVEL_COUNT; l++) {
        r.ops = pd_simd_ops_for((enum pd_simd_level)l);
        if (!r.ops || l > (int)pd_cpu_simd_best() || (level_only >= 0 && l != level_only)) {
            continue;
        }
        double t = best_time(probe_sums_once, &r, secs);
        printf("probe %-10s log-softmax sums over %7zu logits: %8.1f us  %6.2f ns/logit\n",
               pd_cpu_simd_name((enum pd_simd_level)l), n, t * 1e6, t * 1e9 / (double)n);
    }
    double t = best_time(probe_topk_once, &r, secs);
    printf("probe top-5 of %7zu logits: %8.1f us  %6.2f ns/logit\n", n, t * 1e6,
           t * 1e9 / (double)n);
    free(lg);
    return 0;
}

int main(int argc, char **argv)
{
    size_t attn_slots = 0, n_q = 32, head_dim = 64, probe = 0;
    const char *type = NULL;
    size_t rows = 1536, cols = 512, n_tok = 32;
    int level = -1;
    double secs = 1.0;
    const struct {
        const char *name;
        size_t *v;
    } counts[] = {{"--rows", &rows},        {"--cols", &cols},    {"--tokens", &n_tok},
                  {"--attn", &attn_slots},  {"--queries", &n_q},  {"--head-dim", &head_dim},
                  {"--probe", &probe}};
    for (int i = 1; i < argc; i += 2) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        size_t k = 0;
        while (k < sizeof counts / sizeof counts[0] && strcmp(opt, counts[k].name) != 0) {
            k++;
        }
        char *end = NULL;
        if (!val) {
            fprintf(stderr, "bench-kernels: %s needs a value\n", opt);
            return 2;
        } else if (k < sizeof counts / sizeof counts[0]) {
            unsigned long long n = strtoull(val, &end, 10);
            if (end == val || *end || val[0] == '-') {
                fprintf(stderr, "bench-kernels: %s: '%s' is not a count\n", opt, val);
                return 2;
            }
            *counts[k].v = (size_t)n;
        } else if (strcmp(opt, "--type") == 0) {
            type = val;
        } else if (strcmp(opt, "--secs") == 0) {
            secs = strtod(val, &end);
            if (end == val || *end) {
                fprintf(stderr, "bench-kernels: --secs: '%s' is not a number\n", val);
                return 2;
            }
        } else if (strcmp(opt, "--level") == 0) {
            for (int l = 0; l < PD_SIMD_LEVEL_COUNT; l++) {
                if (strcmp(val, pd_cpu_simd_name((enum pd_simd_level)l)) == 0) {
                    level = l;
                }
            }
            if (level < 0) {
                fprintf(stderr, "bench-kernels: unknown level '%s'\n", val);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench-kernels [--type T] [--rows R] [--cols K] "
                            "[--tokens N] [--level L] [--secs S]\n"
                            "       bench-kernels --attn SLOTS [--queries Q] [--head-dim D] "
                            "[--level L] [--secs S]\n"
                            "       bench-kernels --probe VOCAB [--level L] [--secs S]\n");
            return 2;
        }
    }
    if (rows == 0 || cols == 0 || n_tok == 0 || !(secs > 0)) {
        fprintf(stderr, "bench-kernels: rows, cols, tokens and secs must be positive\n");
        return 2;
    }
    if (probe > 0) {
        return run_probe(probe, level, secs);
    }
    if (attn_slots > 0) {
        if (n_q == 0 || head_dim == 0 || head_dim % 16 || !(secs > 0)) {
            fprintf(stderr, "bench-kernels: queries must be positive and the head size a "
                            "positive multiple of 16\n");
            return 2;
        }
        return run_attn(attn_slots, n_q, head_dim, level, secs);
    }
    static const char *const all[] = {"q8_0", "q4_k", "f16"};
    for (size_t i = 0; i < 3; i++) {
        if (type && strcmp(type, all[i]) != 0 && i > 0) {
            break;
        }
        enum pd_dtype t = pd_dtype_parse(type ? type : all[i]);
        if (t == PD_DTYPE_COUNT || pd_dtype_activation_only(t)) {
            fprintf(stderr, "bench-kernels: unknown weight type '%s'\n", type);
            return 2;
        }
        if (run(t, rows, cols, n_tok, level, secs)) {
            return 1;
        }
        if (type) {
            break;
        }
    }
    return 0;
}
