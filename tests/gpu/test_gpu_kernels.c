/* test_gpu_kernels.c - one test per kernel against the CPU engine, with the criteria of
 * docs/gpu.md (GPU.md section 9.2), on a kernel provider:
 *
 *   test_gpu_kernels [emu|cuda] [--json FILE]
 *
 * "emu" (default) runs the kernel sources on the CPU emulator (every CI run); "cuda" runs
 * them on the device and exits 77 without one. Every output buffer sits between 256-byte
 * sentinel guards that must come back unchanged; NaN where none is expected fails. Each
 * case prints "name shape metric value bound PASS/FAIL"; --json writes the same records
 * (the GPU check script keeps them as gpu-kernels.json).
 *
 * Criteria (u = 2^-24): activation quantisers, embed, KV store/moves: bit-exact;
 * rmsnorm: <= 4 ulp; matvec: |y - ref| <= n_blocks * u * sum|c_b| (c_b the CPU's per-block
 * terms, ref their exact sum) plus the epilogue's rounding; rope: |d| <= 1e-6 (|x0|+|x1|);
 * attention: NMSE(o) <= 1e-8 against a double reference and |dp| <= p (2 delta + 1e-6) +
 * 1e-9; capture: fed the device's own probabilities, capture.c gives bit-identical summary
 * entries,
 * cum and rows, step mass within 1e-6; probe: |dlse| <= 1e-6 (1 + |lse|), |dentropy| <=
 * 1e-5 bits, identical top-k ids and argmax (ties to the lowest id); GEMM: NMSE <= 1e-7. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_blob.h"
#include "capture.h"
#include "dtype.h"
#include "half.h"
#include "forward.h"
#include "gpu_common.h"
#include "model.h"
#include "pd_cuda.h"
#include "pd_quant_dev.h"
#include "probe.h"
#include "quant.h"
#include "sampler.h"

#define U 5.9604644775390625e-8 /* 2^-24 */
#define GUARD 256

static const struct pd_kernels *K;
static int g_fail;
static int g_cases;
static FILE *g_json;

/* ---- reporting ------------------------------------------------------------------------- */

static void report(const char *name, const char *shape, const char *metric, double value,
                   double bound, bool pass)
{
    g_cases++;
    if (!pass) {
        g_fail++;
    }
    if (!pass || getenv("PD_TEST_VERBOSE")) {
        printf("%-14s %-34s %-10s %-12.4g %-12.4g %s\n", name, shape, metric, value, bound,
               pass ? "PASS" : "FAIL");
    }
    if (g_json) {
        fprintf(g_json, "%s{\"name\":\"%s\",\"shape\":\"%s\",\"metric\":\"%s\",\"value\":%.6g,"
                        "\"bound\":%.6g,\"pass\":%s}",
                g_cases > 1 ? ",\n" : "", name, shape, metric, isfinite(value) ? value : -1.0,
                bound, pass ? "true" : "false");
    }
}

/* ---- guarded device buffers ----------------------------------------------------------- */

struct dbuf {
    uint8_t *base;
    size_t bytes;
};
static struct dbuf g_bufs[128];
static int g_nbufs;
static uint8_t g_pattern[GUARD];

static void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, K->last_error());
    exit(1);
}

static void *dalloc(size_t bytes)
{
    uint8_t *p;
    if (K->dev_alloc((void **)&p, bytes + 2 * GUARD)) {
        die("dev_alloc");
    }
    if (K->upload(p, g_pattern, GUARD) || K->upload(p + GUARD + bytes, g_pattern, GUARD) ||
        K->sync()) {
        die("upload");
    }
    g_bufs[g_nbufs].base = p;
    g_bufs[g_nbufs].bytes = bytes;
    g_nbufs++;
    return p + GUARD;
}

static void up(void *d, const void *h, size_t n)
{
    if (K->upload(d, h, n) || K->sync()) {
        die("upload");
    }
}

static void down(void *h, const void *d, size_t n)
{
    if (K->download(h, d, n) || K->sync()) {
        die("download");
    }
}

static void dzero(void *d, size_t n)
{
    if (K->memset(d, 0, n) || K->sync()) {
        die("memset");
    }
}

/* Checks every buffer's guards and frees them all (end of a case). */
static void release(const char *name)
{
    uint8_t g[GUARD];
    bool ok = true;
    for (int i = 0; i < g_nbufs; i++) {
        down(g, g_bufs[i].base, GUARD);
        ok = ok && memcmp(g, g_pattern, GUARD) == 0;
        down(g, g_bufs[i].base + GUARD + g_bufs[i].bytes, GUARD);
        ok = ok && memcmp(g, g_pattern, GUARD) == 0;
        K->dev_free(g_bufs[i].base);
    }
    g_nbufs = 0;
    report(name, "sentinel guards", "intact", ok ? 1 : 0, 1, ok);
}

static int32_t *g_dpar;
static int32_t g_par[4096];

static void par_upload(void)
{
    up(g_dpar, g_par, sizeof g_par);
}

static void kcheck(int rc, const char *what)
{
    if (rc) {
        die(what);
    }
    if (K->sync()) {
        die(what);
    }
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Distance in units in the last place (same-sign finite floats). */
static double ulps(float a, float b)
{
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    if ((ia < 0) != (ib < 0)) {
        return a == b ? 0 : 1e9;
    }
    return fabs((double)ia - (double)ib);
}

/* ---- activation quantisers ---------------------------------------------------------- */

static void test_quant(void)
{
    static const int types[] = {PD_K_F32, PD_K_F16, PD_K_BF16, PD_K_Q8_0, PD_K_Q8_K};
    static const int sizes[] = {256, 512, 4096, 1536};
    for (size_t ti = 0; ti < 5; ti++) {
        for (size_t si = 0; si < 4; si++) {
            int t = types[ti], n = sizes[si], rows = 3;
            size_t rb = (size_t)pd_dtype_row_size((enum pd_dtype)t, (uint64_t)n);
            float *x = malloc((size_t)rows * n * sizeof *x);
            uint8_t *a = malloc(rows * rb), *b = malloc(rows * rb);
            for (int r = 0; r < rows; r++) {
                fill_adversarial(x + (size_t)r * n, n, t == PD_K_Q8_K ? 256 : 32, r + (int)si);
                pd_dtype_traits((enum pd_dtype)t)->from_f32(x + (size_t)r * n, a + r * rb, (size_t)n);
            }
            float *dx = dalloc((size_t)rows * n * sizeof *x);
            uint8_t *dq = dalloc(rows * rb);
            up(dx, x, (size_t)rows * n * sizeof *x);
            kcheck(K->quant(t, dx, (size_t)n, dq, rb, n, rows), "quant");
            down(b, dq, rows * rb);
            size_t diff = 0;
            for (size_t i = 0; i < rows * rb; i++) {
                diff += a[i] != b[i];
            }
            char shape[64];
            snprintf(shape, sizeof shape, "%s n=%d rows=%d", pd_dtype_traits(t)->name, n, rows);
            report("quant", shape, "bytes_diff", (double)diff, 0, diff == 0);
            release("quant");
            free(x);
            free(a);
            free(b);
        }
    }
}

/* ---- rmsnorm ------------------------------------------------------------------------------ */

static void test_rmsnorm(void)
{
    static const int sizes[] = {8, 64, 1000, 4096, 5120};
    for (size_t si = 0; si < 5; si++) {
        int n = sizes[si], rows = 4;
        float *x = malloc((size_t)rows * n * 4), *w = malloc((size_t)n * 4);
        float *a = malloc((size_t)rows * n * 4), *b = malloc((size_t)rows * n * 4);
        for (int i = 0; i < rows * n; i++) {
            x[i] = urand(si % 2 ? 30.0f : 1.0f);
        }
        for (int i = 0; i < n; i++) {
            w[i] = 1.0f + urand(0.2f);
        }
        for (int r = 0; r < rows; r++) {
            pd_rmsnorm(a + (size_t)r * n, x + (size_t)r * n, w, (uint32_t)n, 1e-6f);
        }
        float *dx = dalloc((size_t)rows * n * 4), *dw = dalloc((size_t)n * 4);
        float *dy = dalloc((size_t)rows * n * 4);
        up(dx, x, (size_t)rows * n * 4);
        up(dw, w, (size_t)n * 4);
        kcheck(K->rmsnorm(dx, (size_t)n, dw, dy, (size_t)n, n, rows, 1e-6f), "rmsnorm");
        down(b, dy, (size_t)rows * n * 4);
        double worst = 0;
        for (int i = 0; i < rows * n; i++) {
            worst = fmax(worst, ulps(a[i], b[i]));
        }
        char shape[64];
        snprintf(shape, sizeof shape, "n=%d rows=%d", n, rows);
        report("rmsnorm", shape, "max_ulp", worst, 4, worst <= 4);
        release("rmsnorm");
        free(x);
        free(w);
        free(a);
        free(b);
    }
}

/* ---- weights ----------------------------------------------------------------------------- */

static const int wtypes[] = {PD_K_F32, PD_K_F16, PD_K_BF16, PD_K_Q8_0,
                             PD_K_Q4_0, PD_K_Q4_K, PD_K_Q5_K, PD_K_Q6_K};

/* A random [rows][cols] matrix of type t (host bytes, malloc'd). */
static uint8_t *make_matrix(int t, int rows, int cols, size_t *row_bytes)
{
    *row_bytes = (size_t)pd_dtype_row_size((enum pd_dtype)t, (uint64_t)cols);
    uint8_t *m = malloc((size_t)rows * *row_bytes);
    float *row = malloc((size_t)cols * 4);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) {
            row[c] = urand(1.0f) * (r % 5 == 4 ? 100.0f : 1.0f);
        }
        pd_dtype_traits((enum pd_dtype)t)->from_f32(row, m + (size_t)r * *row_bytes, (size_t)cols);
    }
    free(row);
    return m;
}

static void test_embed(void)
{
    for (size_t ti = 0; ti < 8; ti++) {
        int t = wtypes[ti], rows = 11, cols = 512;
        size_t rb;
        uint8_t *m = make_matrix(t, rows, cols, &rb);
        struct pd_weight w = {(enum pd_dtype)t, (uint64_t)cols, (uint64_t)rows, rb, m};
        uint8_t *dm = dalloc((size_t)rows * rb);
        up(dm, m, (size_t)rows * rb);
        int ids[3] = {0, 10, 4};
        for (int i = 0; i < 3; i++) {
            g_par[100 + i] = ids[i];
        }
        par_upload();
        float *dx = dalloc(3 * (size_t)cols * 4);
        kcheck(K->embed(t, dm, rb, cols, g_dpar, 100, 3, dx, (size_t)cols), "embed");
        float *a = malloc(3 * (size_t)cols * 4), *b = malloc(3 * (size_t)cols * 4);
        down(b, dx, 3 * (size_t)cols * 4);
        size_t diff = 0;
        for (int i = 0; i < 3; i++) {
            pd_weight_row_f32(&w, (uint64_t)ids[i], a + (size_t)i * cols);
        }
        for (int i = 0; i < 3 * cols; i++) {
            diff += fbits(a[i]) != fbits(b[i]);
        }
        report("embed", pd_dtype_traits(t)->name, "elems_diff", (double)diff, 0, diff == 0);
        release("embed");
        free(m);
        free(a);
        free(b);
    }
}

/* Weight rows dequantised to f16 for the prefill GEMMs: the CPU's values, rounded. */
static void test_dequant_f16(void)
{
    for (size_t ti = 0; ti < 8; ti++) {
        int t = wtypes[ti], rows = 37, cols = 768;
        size_t rb;
        uint8_t *m = make_matrix(t, rows, cols, &rb);
        struct pd_weight w = {(enum pd_dtype)t, (uint64_t)cols, (uint64_t)rows, rb, m};
        uint8_t *dm = dalloc((size_t)rows * rb);
        up(dm, m, (size_t)rows * rb);
        size_t stride = (size_t)cols + 5;
        uint16_t *dout = dalloc((size_t)rows * stride * 2);
        kcheck(K->dequant_f16(t, dm, rb, rows, cols, dout, stride), "dequant_f16");
        uint16_t *got = malloc((size_t)rows * stride * 2);
        float *row = malloc((size_t)cols * 4);
        down(got, dout, (size_t)rows * stride * 2);
        size_t diff = 0;
        for (int r = 0; r < rows; r++) {
            pd_weight_row_f32(&w, (uint64_t)r, row);
            for (int c = 0; c < cols; c++) {
                diff += got[(size_t)r * stride + c] != pd_f32_to_f16(row[c]);
            }
        }
        report("dequant_f16", pd_dtype_traits(t)->name, "elems_diff", (double)diff, 0, diff == 0);
        release("dequant_f16");
        free(m);
        free(got);
        free(row);
    }
}

/* ---- matvec -------------------------------------------------------------------------------- */

/* Exact reference and error bound of row r of m (type t) dotted with xq. */
static void row_ref(int t, const uint8_t *wrow, const uint8_t *xq, int cols, const float *x,
                    double *ref, double *bound)
{
    const struct pd_dtype_traits *tr = pd_dtype_traits((enum pd_dtype)t);
    const struct pd_dtype_traits *xt = pd_dtype_traits(tr->vec_dot_type);
    double sum = 0, mag = 0;
    int nb;
    if (t == PD_K_F32 || t == PD_K_F16 || t == PD_K_BF16) {
        float wv[8192], xv[8192];
        tr->to_f32(wrow, wv, (size_t)cols);
        xt->to_f32(xq, xv, (size_t)cols);
        for (int i = 0; i < cols; i++) {
            double p = (double)wv[i] * xv[i];
            sum += p;
            mag += fabs(p);
        }
        nb = cols + 1;
    } else {
        int bs = (int)tr->block_size;
        nb = cols / bs;
        for (int b = 0; b < nb; b++) {
            /* the CPU's own per-block term (portable kernels, one block) */
            static const pd_vec_dot_fn dots[] = {NULL, NULL, NULL, pd_q8_0_vec_dot,
                                                 pd_q4_0_vec_dot, pd_q4_k_vec_dot,
                                                 pd_q5_k_vec_dot, pd_q6_k_vec_dot};
            double c = dots[t](wrow + (size_t)b * tr->type_size, xq + (size_t)b * xt->type_size,
                               (size_t)bs);
            sum += c;
            mag += fabs(c);
        }
    }
    (void)x;
    *ref = sum;
    *bound = nb * U * mag + 1e-30;
}

static double silu_h(double g, double u)
{
    return g / (1.0 + exp(-g)) * u;
}

static void test_matvec(void)
{
    static const int rows_list[] = {1, 7, 33, 130};
    for (size_t ti = 0; ti < 8; ti++) {
        int t = wtypes[ti];
        int bs = (int)pd_dtype_traits((enum pd_dtype)t)->block_size;
        enum pd_dtype vdt = pd_dtype_traits((enum pd_dtype)t)->vec_dot_type;
        int cols_list[3] = {bs == 256 ? 256 : 64, bs == 256 ? 512 : 96,
                            bs == 256 ? 2304 : (bs == 32 ? 2080 : 4104)};
        for (int ci = 0; ci < 3; ci++) {
            int cols = cols_list[ci];
            int rr[3] = {rows_list[ci % 4], rows_list[(ci + 1) % 4], rows_list[(ci + 3) % 4]};
            size_t rb;
            uint8_t *m[3];
            uint8_t *dm[3];
            for (int k = 0; k < 3; k++) {
                m[k] = make_matrix(t, rr[k], cols, &rb);
                dm[k] = dalloc((size_t)rr[k] * rb);
                up(dm[k], m[k], (size_t)rr[k] * rb);
            }
            float *x = malloc((size_t)cols * 4);
            fill_adversarial(x, cols, 32, ci);
            size_t xb = (size_t)pd_dtype_row_size(vdt, (uint64_t)cols);
            uint8_t *xq = malloc(xb);
            pd_dtype_traits(vdt)->from_f32(x, xq, (size_t)cols);
            uint8_t *dxq = dalloc(xb);
            up(dxq, xq, xb);
            int rmax = 130;
            float *bias = malloc((size_t)rmax * 4), *y0 = malloc((size_t)rmax * 4);
            for (int i = 0; i < rmax; i++) {
                bias[i] = urand(0.5f);
                y0[i] = urand(2.0f);
            }
            float *dbias = dalloc((size_t)rmax * 4);
            up(dbias, bias, (size_t)rmax * 4);
            float *dy[3];
            for (int k = 0; k < 3; k++) {
                dy[k] = dalloc((size_t)rr[k] * 4);
            }
            float *y = malloc((size_t)rmax * 4);
            char shape[96];
            /* mode SET: three matrices in one launch, with bias */
            struct pd_k_matvec mv;
            memset(&mv, 0, sizeof mv);
            mv.type = t;
            mv.cols = cols;
            mv.xq = dxq;
            mv.n_mat = 3;
            mv.mode = PD_K_MV_SET;
            for (int k = 0; k < 3; k++) {
                mv.m[k] = (struct pd_k_mat){dm[k], rb, rr[k], dy[k], k == 1 ? NULL : dbias};
            }
            kcheck(K->matvec(&mv), "matvec");
            double worst = 0;
            bool ok = true;
            for (int k = 0; k < 3; k++) {
                down(y, dy[k], (size_t)rr[k] * 4);
                for (int r = 0; r < rr[k]; r++) {
                    double ref, bound;
                    row_ref(t, m[k] + (size_t)r * rb, xq, cols, x, &ref, &bound);
                    if (k != 1) {
                        ref += bias[r];
                        bound += 2 * U * fabs(ref);
                    }
                    double err = fabs(y[r] - ref);
                    worst = fmax(worst, err / bound);
                    ok = ok && err <= bound && !isnan(y[r]);
                }
            }
            snprintf(shape, sizeof shape, "%s set3 cols=%d rows=%d,%d,%d",
                     pd_dtype_traits(t)->name, cols, rr[0], rr[1], rr[2]);
            report("matvec", shape, "err/bound", worst, 1, ok);
            /* mode ADD: y += W x */
            up(dy[0], y0, (size_t)rr[0] * 4);
            mv.n_mat = 1;
            mv.mode = PD_K_MV_ADD;
            mv.m[0].bias = NULL;
            kcheck(K->matvec(&mv), "matvec add");
            down(y, dy[0], (size_t)rr[0] * 4);
            worst = 0;
            ok = true;
            for (int r = 0; r < rr[0]; r++) {
                double ref, bound;
                row_ref(t, m[0] + (size_t)r * rb, xq, cols, x, &ref, &bound);
                ref += y0[r];
                bound += 2 * U * fabs(ref);
                double err = fabs(y[r] - ref);
                worst = fmax(worst, err / bound);
                ok = ok && err <= bound;
            }
            snprintf(shape, sizeof shape, "%s add cols=%d rows=%d", pd_dtype_traits(t)->name,
                     cols, rr[0]);
            report("matvec", shape, "err/bound", worst, 1, ok);
            /* mode SWIGLU: gate = m[0], up = a second matrix of the same rows */
            size_t rb2;
            uint8_t *mu = make_matrix(t, rr[0], cols, &rb2);
            uint8_t *dmu = dalloc((size_t)rr[0] * rb2);
            up(dmu, mu, (size_t)rr[0] * rb2);
            mv.n_mat = 2;
            mv.mode = PD_K_MV_SWIGLU;
            mv.m[1] = (struct pd_k_mat){dmu, rb2, rr[0], NULL, NULL};
            kcheck(K->matvec(&mv), "matvec swiglu");
            down(y, dy[0], (size_t)rr[0] * 4);
            worst = 0;
            ok = true;
            for (int r = 0; r < rr[0]; r++) {
                double g, bg, u, bu;
                row_ref(t, m[0] + (size_t)r * rb, xq, cols, x, &g, &bg);
                row_ref(t, mu + (size_t)r * rb2, xq, cols, x, &u, &bu);
                double sg = 1.0 / (1.0 + exp(-g));
                double h = silu_h(g, u);
                double bound = fabs(u * sg * (1 + g * (1 - sg))) * bg + fabs(g * sg) * bu +
                               8 * U * fabs(h) + 1e-30;
                double err = fabs(y[r] - h);
                worst = fmax(worst, err / bound);
                ok = ok && err <= bound;
            }
            snprintf(shape, sizeof shape, "%s swiglu cols=%d rows=%d", pd_dtype_traits(t)->name,
                     cols, rr[0]);
            report("matvec", shape, "err/bound", worst, 1, ok);
            /* several token columns in one launch equal one launch per column, bit for
             * bit (the prefill relies on it) */
            {
                enum { NC = 5 };
                size_t cstride = xb + 64;
                uint8_t *xqs = calloc(NC, cstride);
                float *xs = malloc((size_t)cols * 4);
                for (int c = 0; c < NC; c++) {
                    fill_adversarial(xs, cols, 32, c + 3);
                    pd_dtype_traits(vdt)->from_f32(xs, xqs + (size_t)c * cstride, (size_t)cols);
                }
                uint8_t *dxqs = dalloc(NC * cstride);
                up(dxqs, xqs, NC * cstride);
                size_t ys = (size_t)rr[0] + 3;
                float *dys = dalloc(NC * ys * 4);
                float *one = malloc((size_t)rr[0] * 4), *many = malloc(NC * ys * 4);
                mv.n_mat = 1;
                mv.mode = PD_K_MV_SET;
                mv.m[0] = (struct pd_k_mat){dm[0], rb, rr[0], dys, dbias};
                mv.xq = dxqs;
                mv.n_col = NC;
                mv.xq_stride = cstride;
                mv.y_stride = ys;
                kcheck(K->matvec(&mv), "matvec columns");
                down(many, dys, NC * ys * 4);
                mv.n_col = 1;
                bool same = true;
                for (int c = 0; c < NC; c++) {
                    mv.xq = dxqs + (size_t)c * cstride;
                    mv.m[0].y = dy[0];
                    kcheck(K->matvec(&mv), "matvec column");
                    down(one, dy[0], (size_t)rr[0] * 4);
                    same = same && memcmp(one, many + (size_t)c * ys, (size_t)rr[0] * 4) == 0;
                }
                mv.xq = dxq;
                snprintf(shape, sizeof shape, "%s %d columns cols=%d rows=%d",
                         pd_dtype_traits(t)->name, NC, cols, rr[0]);
                report("matvec", shape, "bit_equal", same, 1, same);
                free(xqs);
                free(xs);
                free(one);
                free(many);
            }
            release("matvec");
            for (int k = 0; k < 3; k++) {
                free(m[k]);
            }
            free(mu);
            free(x);
            free(xq);
            free(bias);
            free(y0);
            free(y);
        }
    }
}

/* ---- rope + store ---------------------------------------------------------------------- */

static void test_rope_store(void)
{
    static const int hds[] = {8, 16, 32, 48, 64, 128};
    static const int64_t positions[] = {0, 1, 4095, 32767, 131071};
    int case_no = 0;
    for (size_t hi = 0; hi < 6; hi++) {
        for (int neox = 0; neox < 2; neox++) {
            for (int norm = 0; norm < 2; norm++) {
                int hd = hds[hi], hd_v = hd, n_kv = 2, n_head = n_kv * (1 + (int)hi % 3);
                int n_rot = (case_no % 3 == 2) ? hd / 2 : hd;
                int use_freq = case_no % 2;
                int64_t pos = positions[case_no % 5];
                case_no++;
                int cap = 8, slot = 5;
                struct pd_hparams hp;
                memset(&hp, 0, sizeof hp);
                hp.rope_base = 10000.0f;
                hp.rope_freq_scale = use_freq ? 0.5f : 1.0f;
                hp.rope_type = neox ? PD_ROPE_NEOX : PD_ROPE_NORM;
                float theta_scale = powf(hp.rope_base, -2.0f / (float)n_rot);
                size_t qn = (size_t)n_head * hd, kn = (size_t)n_kv * hd, vn = (size_t)n_kv * hd_v;
                float *q = malloc(qn * 4), *k = malloc(kn * 4), *v = malloc(vn * 4);
                float *qn_w = malloc((size_t)hd * 4), *kn_w = malloc((size_t)hd * 4);
                float freq[64];
                for (int i = 0; i < 64; i++) {
                    freq[i] = 1.0f + (float)i * 0.37f;
                }
                for (size_t i = 0; i < qn; i++) {
                    q[i] = urand(2.0f);
                }
                for (size_t i = 0; i < kn; i++) {
                    k[i] = urand(2.0f);
                }
                for (size_t i = 0; i < vn; i++) {
                    v[i] = urand(2.0f);
                }
                for (int i = 0; i < hd; i++) {
                    qn_w[i] = 1.0f + urand(0.3f);
                    kn_w[i] = 1.0f + urand(0.3f);
                }
                float *dq = dalloc(qn * 4), *dk = dalloc(kn * 4), *dv = dalloc(vn * 4);
                float *dqn = dalloc((size_t)hd * 4), *dkn = dalloc((size_t)hd * 4);
                float *dfreq = dalloc(64 * 4);
                uint16_t *dkc = dalloc((size_t)cap * kn * 2), *dvc = dalloc((size_t)cap * vn * 2);
                int32_t *dpos = dalloc((size_t)cap * 4);
                up(dq, q, qn * 4);
                up(dk, k, kn * 4);
                up(dv, v, vn * 4);
                up(dqn, qn_w, (size_t)hd * 4);
                up(dkn, kn_w, (size_t)hd * 4);
                up(dfreq, freq, 64 * 4);
                g_par[0] = slot;
                g_par[1] = (int32_t)pos;
                par_upload();
                struct pd_k_rope r = {dq, dk, dv, norm ? dqn : NULL, norm ? dkn : NULL,
                                      use_freq ? dfreq : NULL, dkc, dvc, dpos, g_dpar, 0, 1,
                                      n_head, n_kv, hd, hd_v, n_rot, neox, theta_scale,
                                      hp.rope_freq_scale, 1e-6f};
                kcheck(K->rope_store(&r), "rope_store");
                /* CPU reference */
                for (int h = 0; h < n_head; h++) {
                    if (norm) {
                        pd_rmsnorm(q + (size_t)h * hd, q + (size_t)h * hd, qn_w, (uint32_t)hd, 1e-6f);
                    }
                    pd_rope_head(q + (size_t)h * hd, (uint32_t)n_rot, pos, &hp, use_freq ? freq : NULL);
                }
                for (int h = 0; h < n_kv; h++) {
                    if (norm) {
                        pd_rmsnorm(k + (size_t)h * hd, k + (size_t)h * hd, kn_w, (uint32_t)hd, 1e-6f);
                    }
                    pd_rope_head(k + (size_t)h * hd, (uint32_t)n_rot, pos, &hp, use_freq ? freq : NULL);
                }
                float *qd = malloc(qn * 4);
                uint16_t *kc = malloc(kn * 2), *vc = malloc(vn * 2);
                int32_t pslot;
                down(qd, dq, qn * 4);
                down(kc, dkc + (size_t)slot * kn, kn * 2);
                down(vc, dvc + (size_t)slot * vn, vn * 2);
                down(&pslot, dpos + slot, 4);
                double worst = 0;
                bool ok = pslot == (int32_t)pos;
                for (int h = 0; h < n_head; h++) {
                    for (int d = 0; d < hd; d++) {
                        int half = n_rot / 2;
                        int pair = d < n_rot ? (neox ? (d < half ? d + half : d - half) : d ^ 1) : d;
                        float a = q[(size_t)h * hd + d], b = q[(size_t)h * hd + pair];
                        double bound = 1e-6 * (fabs(a) + fabs(b)) + 8 * U * fabs(a) + 1e-30;
                        double err = fabs(qd[(size_t)h * hd + d] - a);
                        worst = fmax(worst, err / bound);
                        ok = ok && err <= bound;
                    }
                }
                for (size_t i = 0; i < kn; i++) {
                    uint16_t want = pd_f32_to_f16(k[i]);
                    int dist = abs((int)want - (int)kc[i]);
                    ok = ok && dist <= 1; /* f16 of an f32 that may differ by an ulp */
                }
                for (size_t i = 0; i < vn; i++) {
                    ok = ok && vc[i] == pd_f32_to_f16(v[i]);
                }
                char shape[96];
                snprintf(shape, sizeof shape, "hd=%d heads=%d/%d rot=%d %s%s%s pos=%lld", hd,
                         n_head, n_kv, n_rot, neox ? "neox" : "norm", norm ? " qknorm" : "",
                         use_freq ? " freqs" : "", (long long)pos);
                report("rope_store", shape, "err/bound", worst, 1, ok);
                release("rope_store");
                free(q);
                free(k);
                free(v);
                free(qn_w);
                free(kn_w);
                free(qd);
                free(kc);
                free(vc);
            }
        }
    }
}

/* ---- attention and capture -------------------------------------------------------------- */

struct attn_layer {
    int n_slots;        /* physical slots in use */
    int32_t *pos;       /* [cap] (-1 evicted) */
    uint16_t *k, *v;    /* [cap][n_kv * hd] */
    float *q;           /* [n_head][hd] */
    uint8_t *hide;      /* [cap] or NULL */
};

static void make_layer(struct attn_layer *L, int cap, int n_slots, int n_head, int n_kv, int hd,
                       int evict_every, bool hide)
{
    L->n_slots = n_slots;
    L->pos = malloc((size_t)cap * 4);
    L->k = malloc((size_t)cap * n_kv * hd * 2);
    L->v = malloc((size_t)cap * n_kv * hd * 2);
    L->q = malloc((size_t)n_head * hd * 4);
    L->hide = hide ? calloc((size_t)cap, 1) : NULL;
    int32_t p = 3;
    for (int s = 0; s < cap; s++) {
        p += 1 + (int)(rnd() % 3);
        L->pos[s] = s < n_slots ? p : -1;
        if (evict_every && s % evict_every == 1 && s + 1 < n_slots) {
            L->pos[s] = -1;
        }
        if (L->hide && s % 5 == 3) {
            L->hide[s] = 1;
        }
    }
    for (size_t i = 0; i < (size_t)cap * n_kv * hd; i++) {
        L->k[i] = pd_f32_to_f16(urand(1.0f));
        L->v[i] = pd_f32_to_f16(urand(1.0f));
    }
    for (int i = 0; i < n_head * hd; i++) {
        L->q[i] = urand(1.0f) * (hd <= 16 ? 4.0f : 1.0f);
    }
}

static void free_layer(struct attn_layer *L)
{
    free(L->pos);
    free(L->k);
    free(L->v);
    free(L->q);
    free(L->hide);
}

/* Double-precision attention of head h: probs p[cap] (0 where invisible) and o[hd]; also
 * delta[s], the logit error bound hd * u * scale * sum|q k|. */
static void attn_ref(const struct attn_layer *L, int h, int G, int n_kv, int hd, int32_t pos_q,
                     double *p, double *o, double *delta)
{
    int g = h / G;
    double scale = 1.0 / sqrt((double)hd);
    float fscale = 1.0f / sqrtf((float)hd);
    double mx = -INFINITY;
    for (int s = 0; s < L->n_slots; s++) {
        int32_t ps = L->pos[s];
        bool vis = ps >= 0 && ps <= pos_q && !(L->hide && L->hide[s] && ps != pos_q);
        p[s] = -INFINITY;
        delta[s] = 0;
        if (!vis) {
            continue;
        }
        double d = 0, mag = 0;
        for (int i = 0; i < hd; i++) {
            double qk = (double)L->q[(size_t)h * hd + i] *
                        pd_f16_to_f32(L->k[(size_t)s * n_kv * hd + (size_t)g * hd + i]);
            d += qk;
            mag += fabs(qk);
        }
        p[s] = d * (double)fscale;
        delta[s] = hd * U * scale * mag + 2 * U * fabs(p[s]);
        mx = fmax(mx, p[s]);
    }
    double sum = 0;
    for (int s = 0; s < L->n_slots; s++) {
        p[s] = p[s] == -INFINITY ? 0 : exp(p[s] - mx);
        sum += p[s];
    }
    for (int i = 0; i < hd; i++) {
        o[i] = 0;
    }
    for (int s = 0; s < L->n_slots; s++) {
        p[s] /= sum;
        for (int i = 0; i < hd; i++) {
            o[i] += p[s] * pd_f16_to_f32(L->v[(size_t)s * n_kv * hd + (size_t)g * hd + i]);
        }
    }
}

struct dev_layer {
    float *q, *o, *e, *c, *opart, *mpart;
    double *lpart;
    uint16_t *k, *v;
    int32_t *pos;
    uint8_t *hide;
};

static void run_attn(const struct attn_layer *L, struct dev_layer *D, int cap, int n_head,
                     int n_kv, int hd, int n_part, float *e_all, float *c_all, int32_t pos_q)
{
    size_t kvn = (size_t)cap * n_kv * hd;
    D->q = dalloc((size_t)n_head * hd * 4);
    D->o = dalloc((size_t)n_head * hd * 4);
    D->k = dalloc(kvn * 2);
    D->v = dalloc(kvn * 2);
    D->pos = dalloc((size_t)cap * 4);
    D->hide = L->hide ? dalloc((size_t)cap) : NULL;
    D->opart = dalloc((size_t)n_head * n_part * hd * 4);
    D->mpart = dalloc((size_t)n_head * n_part * 4);
    D->lpart = dalloc((size_t)n_head * n_part * 8);
    D->e = e_all;
    D->c = c_all;
    up(D->q, L->q, (size_t)n_head * hd * 4);
    up(D->k, L->k, kvn * 2);
    up(D->v, L->v, kvn * 2);
    up(D->pos, L->pos, (size_t)cap * 4);
    if (L->hide) {
        up(D->hide, L->hide, (size_t)cap);
    }
    g_par[10] = L->n_slots;
    g_par[11] = pos_q;
    par_upload();
    struct pd_k_attn a = {D->q, D->k, D->v, D->pos, D->hide, g_dpar, 10, 11, D->o, D->e,
                          (size_t)cap, D->c, D->opart, D->mpart, D->lpart, n_head, n_kv, hd, hd,
                          n_part, 1.0f / sqrtf((float)hd)};
    kcheck(K->attn_decode(&a), "attn_decode");
}

static void test_attention(void)
{
    static const int slots[] = {1, 37, 256, 257, 600};
    static const int gs[] = {1, 2, 4, 6, 7, 8};
    static const int hds[] = {8, 32, 48, 64, 128};
    int case_no = 0;
    for (size_t si = 0; si < 5; si++) {
        for (size_t gi = 0; gi < 6; gi++) {
            int n = slots[si], G = gs[gi], hd = hds[(si + gi) % 5], n_kv = 1 + (int)(gi % 2);
            int n_head = G * n_kv, cap = n + 3, n_part = (cap + 255) / 256 + (int)(si % 2);
            bool hide = case_no % 3 == 1;
            int evict = case_no % 4 == 2 ? 3 : 0;
            case_no++;
            struct attn_layer L;
            make_layer(&L, cap, n, n_head, n_kv, hd, evict, hide);
            int32_t pos_q = L.pos[n - 1];
            float *de = dalloc((size_t)n_head * cap * 4);
            float *dc = dalloc((size_t)n_head * n_part * 4);
            struct dev_layer D;
            run_attn(&L, &D, cap, n_head, n_kv, hd, n_part, de, dc, pos_q);
            float *o = malloc((size_t)n_head * hd * 4), *e = malloc((size_t)n_head * cap * 4);
            float *c = malloc((size_t)n_head * n_part * 4);
            down(o, D.o, (size_t)n_head * hd * 4);
            down(e, de, (size_t)n_head * cap * 4);
            down(c, dc, (size_t)n_head * n_part * 4);
            double *p = malloc((size_t)cap * 8), *orf = malloc((size_t)hd * 8);
            double *delta = malloc((size_t)cap * 8);
            double num = 0, den = 0, worst_p = 0, sum_err = 0;
            bool ok = true;
            for (int h = 0; h < n_head; h++) {
                attn_ref(&L, h, G, n_kv, hd, pos_q, p, orf, delta);
                double dmax = 0;
                for (int s = 0; s < n; s++) {
                    dmax = fmax(dmax, delta[s]);
                }
                double rowsum = 0;
                for (int s = 0; s < n; s++) {
                    float pv = e[(size_t)h * cap + s] * c[(size_t)h * n_part + s / PD_K_ATTN_PART];
                    bool vis = L.pos[s] >= 0 && L.pos[s] <= pos_q &&
                               !(L.hide && L.hide[s] && L.pos[s] != pos_q);
                    if (!vis) {
                        ok = ok && pv == 0.0f;
                        continue;
                    }
                    double bound = p[s] * (2 * dmax + 1e-6) + 1e-9;
                    double err = fabs(pv - p[s]);
                    worst_p = fmax(worst_p, err / bound);
                    ok = ok && err <= bound && !isnan(pv);
                    rowsum += pv;
                }
                sum_err = fmax(sum_err, fabs(rowsum - 1.0));
                for (int i = 0; i < hd; i++) {
                    double d = o[(size_t)h * hd + i] - orf[i];
                    num += d * d;
                    den += orf[i] * orf[i];
                }
            }
            double nmse = den > 0 ? num / den : num;
            ok = ok && nmse <= 1e-8 && sum_err <= 1e-6;
            char shape[96];
            snprintf(shape, sizeof shape, "slots=%d G=%d kv=%d hd=%d parts=%d%s%s", n, G, n_kv, hd,
                     n_part, hide ? " hide" : "", evict ? " holes" : "");
            report("attention", shape, "nmse_o", nmse, 1e-8, nmse <= 1e-8);
            report("attention", shape, "p_err/bound", worst_p, 1, ok);
            release("attention");
            free_layer(&L);
            free(o);
            free(e);
            free(c);
            free(p);
            free(orf);
            free(delta);
        }
    }
}

/* The device capture kernel against capture.c fed the device's own probabilities. */
static void test_capture(void)
{
    enum { NL = 3 };
    static const int slot_cases[] = {5, 300, 700};
    for (int ci = 0; ci < 3; ci++) {
        int n = slot_cases[ci], cap = n + 8, n_kv = 2, G = 2, n_head = n_kv * G, hd = 16;
        int n_part = (cap + 255) / 256, top_n = ci == 0 ? 8 : ci == 1 ? 3 : 64;
        size_t cum_cap = 4096, steps_cap = 16;
        float *de = dalloc((size_t)NL * n_head * cap * 4);
        float *dc = dalloc((size_t)NL * n_head * n_part * 4);
        int32_t *dpos = dalloc((size_t)NL * cap * 4);
        struct attn_layer L[NL];
        int32_t pos_q = 0;
        rng_seed(100 + (uint64_t)ci);
        for (int l = 0; l < NL; l++) {
            make_layer(&L[l], cap, n, n_head, n_kv, hd, 0, false);
            /* same positions in every layer (one token sequence), layer 1 with holes */
            if (l > 0) {
                memcpy(L[l].pos, L[0].pos, (size_t)cap * 4);
                for (int s = 1; l == 1 && s + 1 < n; s += 4) {
                    L[l].pos[s] = -1;
                }
            }
            pos_q = L[0].pos[n - 1];
            struct dev_layer D;
            run_attn(&L[l], &D, cap, n_head, n_kv, hd, n_part, de + (size_t)l * n_head * cap,
                     dc + (size_t)l * n_head * n_part, pos_q);
            up(dpos + (size_t)l * cap, L[l].pos, (size_t)cap * 4);
            g_par[200 + l] = n;
        }
        int32_t steps[5] = {0, L[0].pos[n / 3], L[0].pos[n / 2], L[0].pos[n - 1] + 1, 0};
        int n_steps = n >= 6 ? 4 : 1;
        g_par[210] = n_steps;
        par_upload();
        int32_t *dsteps = dalloc(16 * 4);
        up(dsteps, steps, sizeof steps);
        struct pd_k_top *dtop = dalloc((size_t)NL * top_n * sizeof *dtop);
        float *dcum = dalloc((size_t)NL * cum_cap * 4);
        dzero(dcum, (size_t)NL * cum_cap * 4);
        float *dsm = dalloc((size_t)NL * steps_cap * 4);
        float *drm = dalloc((size_t)NL * cap * 4);
        float *drh = dalloc((size_t)NL * n_head * cap * 4);
        float *dfull = dalloc((size_t)NL * n_head * cap * 4);
        struct pd_k_capture cp = {de, dc, (size_t)cap, n_part, dpos, (size_t)cap, g_dpar, 200, 210,
                                  NL, n_head, dtop, top_n, dcum, cum_cap, dsteps, dsm,
                                  steps_cap, drm, drh, dfull, 5 /* layers 0 and 2 */};
        kcheck(K->capture(&cp), "capture");
        /* host side: the device's probabilities through capture.c */
        float *e = malloc((size_t)NL * n_head * cap * 4), *c = malloc((size_t)NL * n_head * n_part * 4);
        down(e, de, (size_t)NL * n_head * cap * 4);
        down(c, dc, (size_t)NL * n_head * n_part * 4);
        struct pd_model fm;
        memset(&fm, 0, sizeof fm);
        fm.hp.n_layer = NL;
        fm.hp.n_head = (uint32_t)n_head;
        struct pd_ctx fc;
        memset(&fc, 0, sizeof fc);
        fc.model = &fm;
        fc.params.n_ctx = (uint32_t)cap;
        struct pd_capture_state cs;
        struct pd_err err;
        if (pd_capture_init(&cs, &fc, PD_CAPTURE_LEVEL_SUMMARY, (uint32_t)top_n, 0, &err)) {
            die(err.msg);
        }
        for (int k = 0; k < n_steps; k++) {
            pd_capture_add_step(&cs, steps[k], &err);
        }
        pd_capture_begin(&cs, pos_q, 1, &err);
        float *rows = malloc((size_t)n_head * cap * 4);
        int64_t *vpos = malloc((size_t)cap * 8);
        float *rm_ref = calloc((size_t)NL * cap, 4), *rh_ref = calloc((size_t)NL * n_head * cap, 4);
        for (int l = 0; l < NL; l++) {
            int nv = 0;
            for (int s = 0; s < n; s++) {
                if (L[l].pos[s] < 0) {
                    continue;
                }
                float acc = 0.0f;
                for (int h = 0; h < n_head; h++) {
                    size_t lh = (size_t)l * n_head + h;
                    float pv = e[lh * cap + s] * c[lh * n_part + s / PD_K_ATTN_PART];
                    rows[(size_t)h * cap + nv] = pv;
                    rh_ref[lh * cap + s] = pv;
                    acc += pv;
                }
                rm_ref[(size_t)l * cap + s] = acc / (float)n_head;
                vpos[nv++] = L[l].pos[s];
            }
            pd_capture_hook(&cs, (uint32_t)l, pos_q, rows, (uint32_t)n_head, (uint32_t)nv, vpos);
        }
        struct pd_k_top *top = malloc((size_t)NL * top_n * sizeof *top);
        down(top, dtop, (size_t)NL * top_n * sizeof *top);
        const uint8_t *ref_blob = pd_capture_blob(&cs, 0);
        struct pd_attn_view view;
        bool blob_ok = pd_attn_blob_layout(ref_blob, cs.blob_len, &view);
        for (int l = 0; l < NL && blob_ok; l++) {
            for (int k = 0; k < top_n; k++) {
                uint32_t pos;
                float w;
                pd_attn_view_get(&view, (uint32_t)l, (uint32_t)k, &pos, &w);
                const struct pd_k_top *e = top + (size_t)l * top_n + k;
                blob_ok = blob_ok && e->pos == pos && fbits(e->weight) == fbits(w);
            }
        }
        float *cum = malloc((size_t)NL * cum_cap * 4);
        down(cum, dcum, (size_t)NL * cum_cap * 4);
        bool cum_ok = true;
        for (int l = 0; l < NL; l++) {
            for (size_t p = 0; p < cum_cap; p++) {
                float want = pd_capture_received(&cs, (uint32_t)l, (int64_t)p);
                cum_ok = cum_ok && fbits(want) == fbits(cum[(size_t)l * cum_cap + p]);
            }
        }
        uint32_t nsm = 0;
        const float *sm_ref = pd_capture_step_mass(&cs, 0, &nsm);
        float *sm = malloc((size_t)NL * steps_cap * 4);
        down(sm, dsm, (size_t)NL * steps_cap * 4);
        double sm_err = nsm == (uint32_t)n_steps ? 0 : 1;
        for (int k = 0; k < n_steps && sm_ref; k++) {
            float tot = 0;
            for (int l = 0; l < NL; l++) {
                tot += sm[(size_t)l * steps_cap + k];
            }
            sm_err = fmax(sm_err, fabs(tot - sm_ref[k]));
            if (getenv("PD_DBG")) {
                printf("step %d: dev %g (%g %g %g) cpu %g\n", k, tot, sm[k], sm[steps_cap + k], sm[2 * steps_cap + k], sm_ref[k]);
            }
        }
        float *rm = malloc((size_t)NL * cap * 4), *rh = malloc((size_t)NL * n_head * cap * 4);
        float *full = malloc((size_t)NL * n_head * cap * 4);
        down(rm, drm, (size_t)NL * cap * 4);
        down(rh, drh, (size_t)NL * n_head * cap * 4);
        down(full, dfull, (size_t)NL * n_head * cap * 4);
        bool rows_ok = true;
        for (int l = 0; l < NL; l++) {
            for (int s = 0; s < n; s++) {
                rows_ok = rows_ok && fbits(rm[(size_t)l * cap + s]) == fbits(rm_ref[(size_t)l * cap + s]);
                for (int h = 0; h < n_head; h++) {
                    size_t i = ((size_t)l * n_head + h) * cap + s;
                    rows_ok = rows_ok && fbits(rh[i]) == fbits(rh_ref[i]);
                    if (l != 1) {
                        rows_ok = rows_ok && fbits(full[i]) == fbits(rh_ref[i]);
                    }
                }
            }
        }
        char shape[64];
        snprintf(shape, sizeof shape, "layers=%d slots=%d top=%d steps=%d", NL, n, top_n, n_steps);
        report("capture", shape, "blob_equal", blob_ok, 1, blob_ok);
        report("capture", shape, "cum_equal", cum_ok, 1, cum_ok);
        report("capture", shape, "rows_equal", rows_ok, 1, rows_ok);
        report("capture", shape, "smass_err", sm_err, 1e-6, sm_err <= 1e-6);
        release("capture");
        pd_capture_deinit(&cs);
        for (int l = 0; l < NL; l++) {
            free_layer(&L[l]);
        }
        free(e);
        free(c);
        free(rows);
        free(vpos);
        free(rm_ref);
        free(rh_ref);
        free(top);
        free(cum);
        free(sm);
        free(rm);
        free(rh);
        free(full);
    }
}

/* ---- probe ---------------------------------------------------------------------------------- */

static void test_probe(void)
{
    static const int vocab[] = {1, 5, 100, 32000, 151936};
    static const int ks[] = {1, 5, 20};
    void *scratch = NULL;
    for (size_t vi = 0; vi < 5; vi++) {
        for (size_t ki = 0; ki < 3; ki++) {
            int V = vocab[vi], k = ks[ki] < V ? ks[ki] : V, rows = 2;
            float *x = malloc((size_t)rows * V * 4);
            for (int r = 0; r < rows; r++) {
                float *xr = x + (size_t)r * V;
                for (int i = 0; i < V; i++) {
                    xr[i] = r == 0 ? urand(8.0f) : (float)(int)(rnd() % 40) * 0.5f;
                }
                if (V > 50) { /* planted ties at the top, across slices */
                    xr[V - 1] = xr[V / 2] = xr[3] = 30.0f;
                    xr[V / 3] = 29.0f;
                    xr[7] = 29.0f;
                }
            }
            float *dx = dalloc((size_t)rows * V * 4);
            up(dx, x, (size_t)rows * V * 4);
            size_t sb = K->probe_scratch_bytes(rows);
            scratch = dalloc(sb);
            dzero(scratch, sb);
            struct pd_k_probe_out *dout = dalloc((size_t)rows * sizeof *dout);
            g_par[300] = V > 10 ? 9 : 0;
            g_par[301] = -1;
            par_upload();
            kcheck(K->probe(dx, V, rows, k, g_dpar, 300, scratch, dout), "probe");
            /* twice, the output wiped between: the tickets must have been reset */
            if (K->memset(dout, 0xFF, (size_t)rows * sizeof *dout) || K->sync()) {
                die("memset");
            }
            kcheck(K->probe(dx, V, rows, k, g_dpar, 300, scratch, dout), "probe");
            struct pd_k_probe_out out[2];
            down(out, dout, sizeof out);
            bool ok = true;
            double dl = 0, de = 0;
            for (int r = 0; r < rows; r++) {
                const float *xr = x + (size_t)r * V;
                struct pd_dist_stats st = pd_probe_stats(xr, (size_t)V);
                struct pd_topk top[PD_TOPK_MAX];
                size_t nk = pd_probe_topk(xr, (size_t)V, st, (size_t)k, top);
                dl = fmax(dl, fabs(out[r].lse - st.lse) / (1 + fabs(st.lse)));
                de = fmax(de, fabs(out[r].entropy - st.entropy));
                ok = ok && out[r].n_top == (int32_t)nk && out[r].argmax == pd_argmax(xr, (size_t)V);
                for (size_t j = 0; j < nk && ok; j++) {
                    ok = out[r].top_id[j] == top[j].id &&
                         fbits(out[r].top_logit[j]) == fbits(xr[top[j].id]);
                }
                int32_t t = r == 0 ? g_par[300] : -1;
                ok = ok && (t < 0 ? isnan(out[r].target_logit)
                                  : fbits(out[r].target_logit) == fbits(xr[t]));
            }
            char shape[48];
            snprintf(shape, sizeof shape, "vocab=%d k=%d", V, k);
            report("probe", shape, "lse_rel", dl, 1e-6, dl <= 1e-6);
            report("probe", shape, "entropy", de, 1e-5, de <= 1e-5);
            report("probe", shape, "ids_equal", ok, 1, ok);
            release("probe");
            free(x);
        }
    }
}

/* ---- KV slot operations ------------------------------------------------------------------ */

static void test_kv(void)
{
    enum { NL = 3, CAP = 40, DK = 24, DV = 16 };
    int32_t pos[NL * CAP];
    for (int i = 0; i < NL * CAP; i++) {
        pos[i] = i % CAP;
    }
    int32_t *dpos = dalloc(sizeof pos);
    up(dpos, pos, sizeof pos);
    /* evict lists: layer l drops slots l, l + 7, ... */
    int stride = 8;
    for (int l = 0; l < NL; l++) {
        int32_t *list = g_par + 400 + l * stride;
        list[0] = l + 1;
        for (int i = 0; i < l + 1; i++) {
            list[1 + i] = l + 7 * i;
            pos[l * CAP + l + 7 * i] = -1;
        }
    }
    par_upload();
    kcheck(K->kv_invalidate(dpos, CAP, NL, g_dpar, 400, stride), "kv_invalidate");
    int32_t got[NL * CAP];
    down(got, dpos, sizeof got);
    bool ok = memcmp(got, pos, sizeof got) == 0;
    report("kv_invalidate", "layers=3 cap=40", "equal", ok, 1, ok);
    /* moves with overlapping source and destination ranges */
    uint16_t k[CAP * DK], v[CAP * DV];
    for (int i = 0; i < CAP * DK; i++) {
        k[i] = (uint16_t)rnd();
    }
    for (int i = 0; i < CAP * DV; i++) {
        v[i] = (uint16_t)rnd();
    }
    uint16_t *dk = dalloc(sizeof k), *dv = dalloc(sizeof v);
    up(dk, k, sizeof k);
    up(dv, v, sizeof v);
    int32_t src[CAP], dst[CAP];
    int n = 0;
    for (int s = 0; s < CAP; s++) {
        if (s % 3 != 0 && s > 2) {
            src[n] = s;
            dst[n] = n; /* unique, below the source: the compaction pattern */
            n++;
        }
    }
    int32_t *dsrc = dalloc(sizeof src), *ddst = dalloc(sizeof dst);
    up(dsrc, src, sizeof src);
    up(ddst, dst, sizeof dst);
    uint16_t *sk = dalloc(sizeof k), *sv = dalloc(sizeof v);
    int32_t *sp = dalloc(CAP * 4);
    kcheck(K->kv_move(dk, dv, dpos, DK, DV, dsrc, ddst, n, sk, sv, sp), "kv_move");
    uint16_t k2[CAP * DK], v2[CAP * DV];
    int32_t p2[CAP];
    memcpy(k2, k, sizeof k);
    memcpy(v2, v, sizeof v);
    memcpy(p2, pos, sizeof p2);
    /* reference: all reads before all writes */
    uint16_t tk[CAP * DK], tv[CAP * DV];
    int32_t tp[CAP];
    for (int i = 0; i < n; i++) {
        memcpy(tk + i * DK, k + src[i] * DK, DK * 2);
        memcpy(tv + i * DV, v + src[i] * DV, DV * 2);
        tp[i] = pos[src[i]];
    }
    for (int i = 0; i < n; i++) {
        memcpy(k2 + dst[i] * DK, tk + i * DK, DK * 2);
        memcpy(v2 + dst[i] * DV, tv + i * DV, DV * 2);
        p2[dst[i]] = tp[i];
    }
    uint16_t gk[CAP * DK], gv[CAP * DV];
    int32_t gp[CAP];
    down(gk, dk, sizeof gk);
    down(gv, dv, sizeof gv);
    down(gp, dpos, sizeof gp);
    ok = memcmp(gk, k2, sizeof gk) == 0 && memcmp(gv, v2, sizeof gv) == 0 &&
         memcmp(gp, p2, sizeof gp) == 0;
    report("kv_move", "rows=overlapping", "equal", ok, 1, ok);
    release("kv");
}

/* ---- GEMM ------------------------------------------------------------------------------------ */

static void test_gemm(void)
{
    static const int shapes[][3] = {{64, 1, 32}, {96, 9, 64}, {33, 17, 256}, {256, 33, 128}};
    for (int si = 0; si < 4; si++) {
        for (int kind = 0; kind < 3; kind++) { /* f16, bf16, f32 */
            int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
            size_t lda = (size_t)k + 8, ldb = (size_t)k, ldc = (size_t)m + 3;
            float *a = malloc((size_t)m * lda * 4), *b = malloc((size_t)n * ldb * 4);
            uint16_t *ah = malloc((size_t)m * lda * 2), *bh = malloc((size_t)n * ldb * 2);
            for (size_t i = 0; i < (size_t)m * lda; i++) {
                a[i] = urand(1.0f);
                ah[i] = kind == 1 ? pd_f32_to_bf16(a[i]) : pd_f32_to_f16(a[i]);
                if (kind < 2) {
                    a[i] = kind == 1 ? pd_bf16_to_f32(ah[i]) : pd_f16_to_f32(ah[i]);
                }
            }
            for (size_t i = 0; i < (size_t)n * ldb; i++) {
                b[i] = urand(1.0f);
                bh[i] = kind == 1 ? pd_f32_to_bf16(b[i]) : pd_f32_to_f16(b[i]);
                if (kind < 2) {
                    b[i] = kind == 1 ? pd_bf16_to_f32(bh[i]) : pd_f16_to_f32(bh[i]);
                }
            }
            float *c0 = malloc((size_t)n * ldc * 4), *c = malloc((size_t)n * ldc * 4);
            for (size_t i = 0; i < (size_t)n * ldc; i++) {
                c0[i] = urand(1.0f);
            }
            float beta = si % 2 ? 1.0f : 0.0f;
            float *dc = dalloc((size_t)n * ldc * 4);
            up(dc, c0, (size_t)n * ldc * 4);
            if (kind < 2) {
                uint16_t *da = dalloc((size_t)m * lda * 2), *db = dalloc((size_t)n * ldb * 2);
                up(da, ah, (size_t)m * lda * 2);
                up(db, bh, (size_t)n * ldb * 2);
                kcheck(K->gemm_f16(da, lda, db, ldb, dc, ldc, m, n, k, beta, kind == 1), "gemm_f16");
            } else {
                float *da = dalloc((size_t)m * lda * 4), *db = dalloc((size_t)n * ldb * 4);
                up(da, a, (size_t)m * lda * 4);
                up(db, b, (size_t)n * ldb * 4);
                kcheck(K->gemm_f32(da, lda, db, ldb, dc, ldc, m, n, k, beta), "gemm_f32");
            }
            down(c, dc, (size_t)n * ldc * 4);
            double num = 0, den = 0;
            bool pad_ok = true;
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < m; j++) {
                    double ref = beta * c0[(size_t)i * ldc + j];
                    for (int kk = 0; kk < k; kk++) {
                        ref += (double)a[(size_t)j * lda + kk] * b[(size_t)i * ldb + kk];
                    }
                    double d = c[(size_t)i * ldc + j] - ref;
                    num += d * d;
                    den += ref * ref;
                }
                for (size_t j = (size_t)m; j < ldc; j++) {
                    pad_ok = pad_ok && fbits(c[(size_t)i * ldc + j]) == fbits(c0[(size_t)i * ldc + j]);
                }
            }
            double nmse = num / den;
            char shape[64];
            snprintf(shape, sizeof shape, "%s m=%d n=%d k=%d beta=%g",
                     kind == 0 ? "f16" : kind == 1 ? "bf16" : "f32", m, n, k, beta);
            report("gemm", shape, "nmse", nmse, 1e-7, nmse <= 1e-7 && pad_ok);
            release("gemm");
            free(a);
            free(b);
            free(ah);
            free(bh);
            free(c0);
            free(c);
        }
    }
}

int main(int argc, char **argv)
{
    K = gpu_test_provider(argc, argv);
    if (!K) {
        return 77;
    }
    for (int i = 2; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            g_json = fopen(argv[i + 1], "w");
        }
    }
    if (K->init(0)) {
        die("init");
    }
    struct pd_cuda_device dev;
    K->device_query(0, &dev);
    for (int i = 0; i < GUARD; i++) {
        g_pattern[i] = (uint8_t)(0xA5 ^ i);
    }
    if (K->dev_alloc((void **)&g_dpar, sizeof g_par)) {
        die("dev_alloc");
    }
    if (g_json) {
        fprintf(g_json, "{\"device\":\"%s\",\"provider\":\"%s\",\"cases\":[\n", dev.name, K->build);
    }
    rng_seed(1);
    test_quant();
    test_rmsnorm();
    test_embed();
    test_dequant_f16();
    test_matvec();
    test_rope_store();
    test_attention();
    test_capture();
    test_probe();
    test_kv();
    test_gemm();
    K->dev_free(g_dpar);
    if (g_json) {
        fprintf(g_json, "\n],\"cases_run\":%d,\"failed\":%d}\n", g_cases, g_fail);
        fclose(g_json);
    }
    printf("%s (%s): %d checks, %d failed\n", dev.name, K->build, g_cases, g_fail);
    return g_fail ? 1 : 0;
}
