/* test_gpu_host.c - the GPU kernels' shared __host__ __device__ helpers
 * (kernels/pd_quant_dev.h) against the CPU engine, bit for bit, on the host: half and
 * bfloat16 conversion (every half; a stride of all floats), the q8_0 and q8_K activation
 * quantisers, the lane-split block dots of every quantised type, element dequantisation,
 * RoPE angles and rotation (both pairings, rope_freqs, large positions), and the probe
 * comparator. Random blocks plus adversarial ones: zero blocks, scales at the f16
 * limits, exact .5 rounding ties, signed maxima of equal magnitude, subnormals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "half.h"
#include "forward.h"
#include "pd_quant_dev.h"
#include "probe.h"
#include "quant.h"
#include "sampler.h"

#define N_RANDOM 20000 /* random blocks per case (each also checked in adversarial shapes) */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float urand(float a)
{
    return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0) * a;
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* An activation row of n floats in one of several adversarial shapes (by kind). */
static void fill_row(float *x, int n, int kind)
{
    float scale = kind % 5 == 0 ? 1e-30f : kind % 5 == 1 ? 1e30f : kind % 5 == 2 ? 1.0f : 3e4f;
    for (int i = 0; i < n; i++) {
        x[i] = urand(scale);
    }
    switch (kind % 9) {
    case 3: /* zero block */
        memset(x, 0, (size_t)n * sizeof *x);
        break;
    case 4: /* +max and -max of equal magnitude: the first one wins */
        x[rnd() % (uint64_t)n] = 7.0f;
        x[rnd() % (uint64_t)n] = -7.0f;
        break;
    case 5: /* exact .5 ties after scaling: values k/2 with max 127/2 */
        for (int i = 0; i < n; i++) {
            x[i] = (float)((int)(rnd() % 255) - 127) * 0.5f;
        }
        x[0] = 63.5f;
        break;
    case 6: /* all equal */
        for (int i = 0; i < n; i++) {
            x[i] = -2.5f;
        }
        break;
    case 7: /* subnormals */
        for (int i = 0; i < n; i++) {
            x[i] = urand(1e-39f);
        }
        break;
    case 8: /* values at the f16 scale limit */
        for (int i = 0; i < n; i++) {
            x[i] = urand(65504.0f * 127.0f);
        }
        break;
    default:
        break;
    }
}

static void test_half_conversions(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = pd_f16_to_f32((uint16_t)h), b = pd_dev_f16_to_f32((uint16_t)h);
        assert_int_equal(fbits(a), fbits(b));
        assert_int_equal(pd_f32_to_bf16(pd_bf16_to_f32((uint16_t)h)),
                         pd_dev_f32_to_bf16(pd_dev_bf16_to_f32((uint16_t)h)));
        assert_int_equal(fbits(pd_bf16_to_f32((uint16_t)h)), fbits(pd_dev_bf16_to_f32((uint16_t)h)));
    }
    /* every 251st float bit pattern (both signs, all exponents), plus the edges */
    for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += 251) {
        float f;
        uint32_t b = (uint32_t)u;
        memcpy(&f, &b, 4);
        assert_int_equal(pd_f32_to_f16(f), pd_dev_f32_to_f16(f));
        assert_int_equal(pd_f32_to_bf16(f), pd_dev_f32_to_bf16(f));
    }
    static const float edges[] = {0.0f, -0.0f, 65504.0f, 65519.996f, 65520.0f, 0x1p-24f,
                                  0x1p-25f, 0x1.8p-25f, 0x1p-14f, 0x1.ffcp-15f, 1.00048828125f,
                                  1.00146484375f, INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        assert_int_equal(pd_f32_to_f16(edges[i]), pd_dev_f32_to_f16(edges[i]));
        assert_int_equal(pd_f32_to_bf16(edges[i]), pd_dev_f32_to_bf16(edges[i]));
    }
}

static void test_activation_quantisers(void **state)
{
    (void)state;
    float x[PD_QK_K];
    uint8_t a[292], b[292];
    for (int it = 0; it < N_RANDOM; it++) {
        fill_row(x, PD_QK_K, it);
        pd_q8_0_from_f32(x, a, PD_QK8_0);
        pd_dev_quant_q8_0_block(x, b);
        assert_memory_equal(a, b, PD_DEV_Q8_0_BYTES);
        pd_q8_k_from_f32(x, a, PD_QK_K);
        pd_dev_quant_q8_k_block(x, b);
        assert_memory_equal(a, b, PD_DEV_Q8_K_BYTES);
    }
}

typedef void (*quant_fn)(const float *, void *, size_t);
typedef float (*dot_fn)(const void *, const void *, size_t);
typedef float (*dev_dot_fn)(const uint8_t *, const uint8_t *);
typedef void (*to_f32_fn)(const void *, float *, size_t);

struct qcase {
    const char *name;
    int block, wbytes, xbytes;
    quant_fn quant;      /* CPU weight quantiser */
    quant_fn xquant;     /* CPU activation quantiser (the dot format) */
    dot_fn dot;          /* CPU vec_dot (portable) */
    dev_dot_fn dev_dot;  /* lanes + combine */
    to_f32_fn to_f32;
    float (*value)(const uint8_t *, int);
    int d_off;           /* byte offset of the f16 scale(s) to keep finite in random blocks */
    int n_d;
};

static const struct qcase qcases[] = {
    {"q8_0", 32, 34, 34, pd_q8_0_from_f32, pd_q8_0_from_f32, pd_q8_0_vec_dot,
     pd_dev_q8_0_block_dot, pd_q8_0_to_f32, pd_dev_q8_0_value, 0, 1},
    {"q4_0", 32, 18, 34, pd_q4_0_from_f32, pd_q8_0_from_f32, pd_q4_0_vec_dot,
     pd_dev_q4_0_block_dot, pd_q4_0_to_f32, pd_dev_q4_0_value, 0, 1},
    {"q4_k", 256, 144, 292, pd_q4_k_from_f32, pd_q8_k_from_f32, pd_q4_k_vec_dot,
     pd_dev_q4_k_block_dot, pd_q4_k_to_f32, pd_dev_q4_k_value, 0, 2},
    {"q5_k", 256, 176, 292, pd_q5_k_from_f32, pd_q8_k_from_f32, pd_q5_k_vec_dot,
     pd_dev_q5_k_block_dot, pd_q5_k_to_f32, pd_dev_q5_k_value, 0, 2},
    {"q6_k", 256, 210, 292, pd_q6_k_from_f32, pd_q8_k_from_f32, pd_q6_k_vec_dot,
     pd_dev_q6_k_block_dot, pd_q6_k_to_f32, pd_dev_q6_k_value, 208, 1},
};

/* Random bytes with finite f16 scales (any other byte pattern is a valid block). */
static void random_block(const struct qcase *c, uint8_t *w)
{
    for (int i = 0; i < c->wbytes; i++) {
        w[i] = (uint8_t)rnd();
    }
    for (int k = 0; k < c->n_d; k++) {
        uint16_t h = pd_f32_to_f16(urand(2.0f));
        memcpy(w + c->d_off + 2 * k, &h, 2);
    }
}

static void test_block_dots(void **state)
{
    (void)state;
    float wf[256], xf[256], ya[256], yb[256];
    uint8_t w[256], xq[292];
    for (size_t ci = 0; ci < sizeof qcases / sizeof qcases[0]; ci++) {
        const struct qcase *c = &qcases[ci];
        for (int it = 0; it < N_RANDOM / 4; it++) {
            if (it % 2) {
                fill_row(wf, c->block, it / 2);
                c->quant(wf, w, (size_t)c->block);
            } else {
                random_block(c, w);
            }
            fill_row(xf, c->block, it + 1);
            c->xquant(xf, xq, (size_t)c->block);
            /* the CPU's sum starts at +0.0f, which also turns a -0 block into +0 */
            float a = c->dot(w, xq, (size_t)c->block);
            float b = 0.0f + c->dev_dot(w, xq);
            if (fbits(a) != fbits(b) && !(isnan(a) && isnan(b))) {
                fail_msg("%s block %d: cpu %.9g != device %.9g", c->name, it, a, b);
            }
            c->to_f32(w, ya, (size_t)c->block);
            for (int i = 0; i < c->block; i++) {
                yb[i] = c->value(w, i);
                if (fbits(ya[i]) != fbits(yb[i])) {
                    fail_msg("%s dequant block %d elem %d: %.9g != %.9g", c->name, it, i, ya[i],
                             yb[i]);
                }
            }
        }
    }
}

static void test_rope(void **state)
{
    (void)state;
    static const int64_t positions[] = {0, 1, 7, 4095, 32767, 131071};
    static const uint32_t hds[] = {8, 16, 32, 48, 64, 128};
    float freq[64];
    for (int i = 0; i < 64; i++) {
        freq[i] = i < 16 ? 1.0f : 1.0f + (float)(i - 16) * 1.5f;
    }
    for (int neox = 0; neox < 2; neox++) {
        for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++) {
            for (int use_freq = 0; use_freq < 2; use_freq++) {
                uint32_t hd = hds[hi];
                uint32_t n_rot = hi % 2 ? hd : hd / 2; /* partial rotation too */
                struct pd_hparams hp;
                memset(&hp, 0, sizeof hp);
                hp.rope_base = neox ? 1000000.0f : 10000.0f;
                hp.rope_freq_scale = use_freq ? 0.25f : 1.0f;
                hp.rope_type = neox ? PD_ROPE_NEOX : PD_ROPE_NORM;
                float theta_scale = powf(hp.rope_base, -2.0f / (float)n_rot);
                for (size_t pi = 0; pi < sizeof positions / sizeof positions[0]; pi++) {
                    float a[128], b[128];
                    for (uint32_t d = 0; d < hd; d++) {
                        a[d] = b[d] = urand(3.0f);
                    }
                    const float *fd = use_freq ? freq : NULL;
                    pd_rope_head(a, n_rot, positions[pi], &hp, fd);
                    uint32_t half = n_rot / 2;
                    for (uint32_t i = 0; i < half; i++) {
                        float th = pd_dev_rope_theta(positions[pi], (int)i, theta_scale,
                                                     fd ? fd[i] : 0.0f, hp.rope_freq_scale);
                        uint32_t p0 = neox ? i : 2 * i, p1 = neox ? i + half : 2 * i + 1;
                        pd_dev_rope_rotate(&b[p0], &b[p1], th);
                    }
                    for (uint32_t d = 0; d < hd; d++) {
                        if (fbits(a[d]) != fbits(b[d])) {
                            fail_msg("rope neox %d hd %u n_rot %u pos %lld dim %u: %.9g != %.9g",
                                     neox, hd, n_rot, (long long)positions[pi], d, a[d], b[d]);
                        }
                    }
                }
            }
        }
    }
}

static void test_comparator(void **state)
{
    (void)state;
    enum { N = 4096, K = 20 };
    static float logits[N];
    for (int it = 0; it < 50; it++) {
        for (int i = 0; i < N; i++) {
            logits[i] = (float)(int)(rnd() % 64) * 0.25f; /* many ties */
        }
        struct pd_dist_stats st = pd_probe_stats(logits, N);
        struct pd_topk top[K];
        size_t k = pd_probe_topk(logits, N, st, K, top);
        /* the device comparator orders the CPU's list strictly, and nothing outside it
         * beats its last entry */
        for (size_t j = 1; j < k; j++) {
            assert_true(pd_dev_better(logits[top[j - 1].id], top[j - 1].id, logits[top[j].id],
                                      top[j].id));
        }
        int32_t last = top[k - 1].id;
        for (int i = 0; i < N; i++) {
            int in = 0;
            for (size_t j = 0; j < k; j++) {
                in |= top[j].id == i;
            }
            if (!in) {
                assert_false(pd_dev_better(logits[i], i, logits[last], last));
            }
        }
        assert_int_equal(pd_argmax(logits, N), top[0].id);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_activation_quantisers),
        cmocka_unit_test(test_block_dots),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_comparator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
