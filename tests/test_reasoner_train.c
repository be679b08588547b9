/* test_reasoner_train.c - the reasoner's trainer (samples/reasoner/train.h, gemm.h):
 * gradients of every layer type against central finite differences, one AdamW step
 * against a hand-computed update, the learning-rate schedule, determinism across thread
 * counts and kernels, checkpoint resume, and GGUF output read back by ponder's engine
 * (f32 and q8_0) with the same log-probabilities. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "forward.h"
#include "gemm.h"
#include "gguf_writer.h"
#include "model.h"
#include "train.h"

/* A tiny model with every layer type: 2 layers, grouped-query attention (4 heads, 2 kv
 * heads), an odd vocabulary and FFN width, so no size is a SIMD multiple. */
static struct tr_config tiny_config(void)
{
    return (struct tr_config){37, 16, 2, 4, 2, 24, 16, 1e-5f, 10000.0f};
}

/* Two sequences (7 and 5 tokens); the second masks two of its targets. */
static const int32_t k_ids[12] = {3, 17, 29, 5, 36, 0, 11, 8, 21, 4, 33, 19};
static const uint8_t k_mask[12] = {0, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 1};
static const size_t k_lens[2] = {7, 5};

static struct tr_batch tiny_batch(void)
{
    return (struct tr_batch){k_ids, k_mask, 12, k_lens, 2};
}

/* Weights scaled up from the N(0, 0.02) init so activations and gradients are not tiny;
 * norm gains moved off 1 so their gradients matter. */
static struct tr_model *tiny_model(uint64_t seed)
{
    struct tr_config c = tiny_config();
    struct tr_model *m = NULL;
    struct pd_err err;
    assert_int_equal(tr_model_new(&c, seed, &m, &err), PD_OK);
    for (size_t k = 0; k < m->n_tensors; k++) {
        const struct tr_tensor *t = &m->tensors[k];
        for (size_t i = 0; i < (size_t)t->rows * t->cols; i++) {
            float *w = &m->w[t->off + i];
            *w = t->is_norm ? 1.0f + 0.3f * sinf((float)(i + 7 * k)) : *w * 20.0f;
        }
    }
    return m;
}

static double batch_loss(struct tr_run *r, const struct tr_batch *b)
{
    struct tr_loss l;
    struct pd_err err;
    assert_int_equal(tr_forward(r, b, &l, NULL, &err), PD_OK);
    return l.sum / (double)l.n;
}

static void test_gradients(void **state)
{
    (void)state;
    struct tr_model *m = tiny_model(11);
    struct tr_run *r = NULL;
    struct pd_err err;
    assert_int_equal(tr_run_open(m, 12, 1, &r, &err), PD_OK);
    struct tr_batch b = tiny_batch();
    batch_loss(r, &b);
    tr_backward(r);
    float *g = malloc(m->n_params * sizeof *g);
    assert_non_null(g);
    memcpy(g, m->g, m->n_params * sizeof *g);
    /* every tensor: embedding (input and tied output), norms, q/k/v/o, gate/up/down */
    int checked = 0;
    for (size_t k = 0; k < m->n_tensors; k++) {
        const struct tr_tensor *t = &m->tensors[k];
        size_t n = (size_t)t->rows * t->cols;
        double worst = 0;
        for (int s = 0; s < 6; s++) {
            /* token_embd: rows of tokens in the batch as well as rows only the output uses */
            size_t i = (size_t)(s * 7919 + 13 * k) % n;
            if (k == 0 && s < 3) {
                i = (size_t)k_ids[s * 3] * t->cols + (size_t)s;
            }
            float *w = &m->w[t->off + i];
            float w0 = *w, h = 1e-2f;
            *w = w0 + h;
            double lp = batch_loss(r, &b);
            *w = w0 - h;
            double lm = batch_loss(r, &b);
            *w = w0;
            double fd = (lp - lm) / (2.0 * (double)h);
            double an = g[t->off + i];
            double diff = fabs(fd - an);
            if (diff > 2e-2 * fabs(fd) + 3e-4) {
                fail_msg("%s[%zu]: backward %.6g, finite difference %.6g", t->name, i, an, fd);
            }
            worst = fmax(worst, diff);
            checked++;
        }
        assert_true(worst < 1e-2);
    }
    assert_int_equal(checked, 6 * (int)m->n_tensors);
    /* gradients are not trivially zero */
    double norm = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        norm += (double)g[i] * g[i];
    }
    assert_true(norm > 1e-4);
    free(g);
    tr_run_close(&r);
    tr_model_free(&m);
}

/* Sequences longer than the trainer's causal row block (32): the blocked attention
 * products, forward and backward, against finite differences and against the engine. */
static void test_gradients_long(void **state)
{
    (void)state;
    struct tr_config c = tiny_config();
    c.n_ctx = 96;
    struct tr_model *m = NULL;
    struct pd_err err;
    assert_int_equal(tr_model_new(&c, 17, &m, &err), PD_OK);
    for (size_t i = 0; i < m->n_params; i++) {
        m->w[i] *= 20.0f;
    }
    for (size_t k = 0; k < m->n_tensors; k++) {
        if (m->tensors[k].is_norm) {
            for (size_t i = 0; i < m->tensors[k].cols; i++) {
                m->w[m->tensors[k].off + i] = 1.0f + 0.2f * cosf((float)i);
            }
        }
    }
    int32_t ids[150];
    size_t lens[2] = {77, 73};
    for (size_t i = 0; i < 150; i++) {
        ids[i] = (int32_t)((i * 7 + i * i / 3) % 37);
    }
    struct tr_batch b = {ids, NULL, 150, lens, 2};
    struct tr_run *r = NULL;
    assert_int_equal(tr_run_open(m, 150, 2, &r, &err), PD_OK);
    batch_loss(r, &b);
    tr_backward(r);
    float *g = malloc(m->n_params * sizeof *g);
    memcpy(g, m->g, m->n_params * sizeof *g);
    for (size_t k = 0; k < m->n_tensors; k++) {
        const struct tr_tensor *t = &m->tensors[k];
        size_t n = (size_t)t->rows * t->cols;
        for (int s = 0; s < 3; s++) {
            size_t i = (size_t)(s * 4099 + 31 * k) % n;
            float *w = &m->w[t->off + i];
            float w0 = *w, h = 2e-3f;
            *w = w0 + h;
            double lp = batch_loss(r, &b);
            *w = w0 - h;
            double lm = batch_loss(r, &b);
            *w = w0;
            double fd = (lp - lm) / (2.0 * (double)h), an = g[t->off + i];
            if (fabs(fd - an) > 2e-2 * fabs(fd) + 3e-4) {
                fail_msg("%s[%zu]: backward %.6g, finite difference %.6g", t->name, i, an, fd);
            }
        }
    }
    free(g);
    tr_run_close(&r);
    tr_model_free(&m);
}

static void test_adamw_by_hand(void **state)
{
    (void)state;
    struct tr_model *m = tiny_model(3);
    struct tr_run *r = NULL;
    struct pd_err err;
    assert_int_equal(tr_run_open(m, 12, 1, &r, &err), PD_OK);
    double *w0 = malloc(m->n_params * sizeof *w0), *g0 = malloc(m->n_params * sizeof *g0);
    assert_true(w0 && g0);
    double sq = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        m->g[i] = 0.05f * sinf((float)i * 0.37f);
        g0[i] = m->g[i];
        w0[i] = m->w[i];
        sq += g0[i] * g0[i];
    }
    struct tr_adamw o = {0.01f, 0.9f, 0.99f, 1e-8f, 0.1f, 0.5f};
    double norm = tr_adamw_step(r, &o);
    assert_true(fabs(norm - sqrt(sq)) < 1e-9 * sqrt(sq));
    assert_true(norm > 0.5); /* so clipping applies */
    double scale = 0.5 / sqrt(sq);
    for (size_t k = 0; k < m->n_tensors; k++) {
        const struct tr_tensor *t = &m->tensors[k];
        for (size_t i = t->off; i < t->off + (size_t)t->rows * t->cols; i++) {
            /* step 1: m = (1-b1) g, v = (1-b2) g^2, bias corrections give mhat = g, vhat = g^2 */
            double gg = g0[i] * scale;
            double mh = (0.1 * gg) / 0.1, vh = (0.01 * gg * gg) / 0.01;
            double decay = t->decay ? 1.0 - 0.01 * 0.1 : 1.0;
            double want = w0[i] * decay - 0.01 * mh / (sqrt(vh) + 1e-8);
            if (fabs(m->w[i] - want) > 1e-6 + 1e-5 * fabs(want)) {
                fail_msg("%s: w %.9g, by hand %.9g", t->name, (double)m->w[i], want);
            }
            assert_true(fabs(m->m[i] - 0.1 * gg) < 1e-7);
            assert_true(fabs(m->v[i] - 0.01 * gg * gg) < 1e-9);
        }
    }
    assert_int_equal(m->step, 1);
    free(w0);
    free(g0);
    tr_run_close(&r);
    tr_model_free(&m);
}

static void test_lr_schedule(void **state)
{
    (void)state;
    assert_float_equal(tr_lr_at(0, 100, 10, 1.0f, 0.1f), 0.1f, 1e-6);
    assert_float_equal(tr_lr_at(9, 100, 10, 1.0f, 0.1f), 1.0f, 1e-6);
    assert_float_equal(tr_lr_at(10, 100, 10, 1.0f, 0.1f), 1.0f, 1e-6);
    assert_float_equal(tr_lr_at(55, 100, 10, 1.0f, 0.1f), 0.55f, 1e-6); /* cosine midpoint */
    assert_float_equal(tr_lr_at(100, 100, 10, 1.0f, 0.1f), 0.1f, 1e-6);
    assert_true(tr_lr_at(30, 100, 10, 1.0f, 0.1f) > tr_lr_at(31, 100, 10, 1.0f, 0.1f));
}

/* Two optimizer steps on the tiny batch; returns a copy of the weights (free()). */
static float *two_steps(int threads, bool portable)
{
    tr_gemm_force_portable(portable);
    struct tr_model *m = tiny_model(5);
    struct tr_run *r = NULL;
    struct pd_err err;
    assert_int_equal(tr_run_open(m, 12, threads, &r, &err), PD_OK);
    struct tr_batch b = tiny_batch();
    struct tr_adamw o = {0.01f, 0.9f, 0.99f, 1e-8f, 0.1f, 1.0f};
    for (int s = 0; s < 2; s++) {
        batch_loss(r, &b);
        tr_backward(r);
        tr_adamw_step(r, &o);
    }
    float *w = malloc(m->n_params * sizeof *w);
    assert_non_null(w);
    memcpy(w, m->w, m->n_params * sizeof *w);
    tr_run_close(&r);
    tr_model_free(&m);
    tr_gemm_force_portable(false);
    return w;
}

static void test_deterministic(void **state)
{
    (void)state;
    struct tr_config c = tiny_config();
    struct tr_model *m = NULL;
    struct pd_err err;
    assert_int_equal(tr_model_new(&c, 5, &m, &err), PD_OK);
    size_t n = m->n_params;
    tr_model_free(&m);
    float *a = two_steps(1, false), *b = two_steps(3, false), *p = two_steps(2, true);
    assert_memory_equal(a, b, n * sizeof *a);
    assert_memory_equal(a, p, n * sizeof *a); /* the portable kernel gives the same bits */
    free(a);
    free(b);
    free(p);
}

static void test_gemm_shapes(void **state)
{
    (void)state;
    /* odd shapes through the tiled kernel against a plain triple loop of fmaf */
    size_t M = 13, N = 37, K = 19;
    float A[13 * 19], B[19 * 37], C[13 * 37], R[13 * 37];
    for (size_t i = 0; i < M * K; i++) {
        A[i] = sinf((float)i);
    }
    for (size_t i = 0; i < K * N; i++) {
        B[i] = cosf((float)i * 0.7f);
    }
    for (size_t i = 0; i < M * N; i++) {
        C[i] = R[i] = 0.25f * (float)i;
    }
    struct tr_pool *p = tr_pool_open(2);
    tr_gemm(p, M, N, K, A, K, B, N, C, N, true);
    for (size_t i = 0; i < M; i++) {
        for (size_t j = 0; j < N; j++) {
            float acc = R[i * N + j];
            for (size_t k = 0; k < K; k++) {
                acc = fmaf(A[i * K + k], B[k * N + j], acc);
            }
            R[i * N + j] = acc;
        }
    }
    assert_memory_equal(C, R, sizeof C);
    tr_pool_close(&p);
    assert_null(p);
}

static void test_checkpoint_resume(void **state)
{
    (void)state;
    char path[] = "/tmp/pd-ckpt-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct pd_err err;
    struct tr_adamw o = {0.01f, 0.9f, 0.99f, 1e-8f, 0.1f, 1.0f};
    struct tr_batch b = tiny_batch();
    /* three steps straight through */
    float *straight;
    size_t n;
    {
        struct tr_model *m = tiny_model(9);
        struct tr_run *r = NULL;
        assert_int_equal(tr_run_open(m, 12, 2, &r, &err), PD_OK);
        for (int s = 0; s < 3; s++) {
            batch_loss(r, &b);
            tr_backward(r);
            tr_adamw_step(r, &o);
        }
        n = m->n_params;
        straight = malloc(n * sizeof *straight);
        memcpy(straight, m->w, n * sizeof *straight);
        tr_run_close(&r);
        tr_model_free(&m);
    }
    /* two steps, checkpoint, load, one more */
    struct tr_model *m = tiny_model(9);
    struct tr_run *r = NULL;
    assert_int_equal(tr_run_open(m, 12, 2, &r, &err), PD_OK);
    for (int s = 0; s < 2; s++) {
        batch_loss(r, &b);
        tr_backward(r);
        tr_adamw_step(r, &o);
    }
    assert_int_equal(tr_checkpoint_save(m, path, &err), PD_OK);
    tr_run_close(&r);
    tr_model_free(&m);
    assert_int_equal(tr_checkpoint_load(path, &m, &err), PD_OK);
    assert_int_equal(m->step, 2);
    assert_int_equal(tr_run_open(m, 12, 1, &r, &err), PD_OK);
    batch_loss(r, &b);
    tr_backward(r);
    tr_adamw_step(r, &o);
    assert_memory_equal(m->w, straight, n * sizeof *straight);
    tr_run_close(&r);
    tr_model_free(&m);
    /* a truncated checkpoint is rejected by name */
    assert_int_equal(truncate(path, 100), 0);
    assert_int_equal(tr_checkpoint_load(path, &m, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "truncated"));
    assert_null(m);
    unlink(path);
    free(straight);
}

struct lp_capture {
    const int32_t *ids;
    double *lp;
};

static void on_logits(void *ud, size_t i, int64_t pos, const float *logits)
{
    (void)pos;
    struct lp_capture *c = ud;
    float mx = logits[0];
    for (int k = 1; k < 37; k++) {
        mx = fmaxf(mx, logits[k]);
    }
    double s = 0;
    for (int k = 0; k < 37; k++) {
        s += exp((double)logits[k] - mx);
    }
    c->lp[i + 1] = (double)logits[c->ids[i + 1]] - (mx + log(s));
}

/* Writes the tiny model as wtype, opens it with ponder's engine, compares logprobs of the
 * first sequence with the trainer's forward. Returns the largest difference. */
static double engine_diff(enum tr_wtype wtype)
{
    struct tr_model *m = tiny_model(21);
    struct pd_err err;
    struct pd_gguf_writer *w = NULL;
    assert_int_equal(pd_gguf_writer_open(&w, &err), PD_OK);
    assert_int_equal(pd_gguf_writer_add_str(w, "general.architecture", "llama", &err), PD_OK);
    assert_int_equal(tr_model_write_tensors(m, wtype, w, &err), PD_OK);
    char path[] = "/tmp/pd-trgguf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pd_gguf_writer_write_file(w, path, &err), PD_OK);
    pd_gguf_writer_close(&w);
    /* the trainer's own log-probabilities of sequence 0 */
    struct tr_run *r = NULL;
    assert_int_equal(tr_run_open(m, 12, 1, &r, &err), PD_OK);
    size_t len = 7;
    struct tr_batch b = {k_ids, NULL, len, &len, 1};
    double lp_tr[7], lp_pd[7];
    assert_int_equal(tr_forward(r, &b, NULL, lp_tr, &err), PD_OK);
    tr_run_close(&r);
    /* ponder's engine on the written file, f32 KV cache */
    struct pd_model *pm = NULL;
    assert_int_equal(pd_model_open(path, &pm, &err), PD_OK);
    assert_int_equal(pm->hp.n_layer, 2);
    assert_int_equal(pm->hp.n_head_kv, 2);
    assert_true(pm->hp.tied_output);
    struct pd_ctx_params cp = pd_ctx_default_params();
    cp.kv_type = PD_KV_F32;
    cp.n_threads = 1;
    struct pd_ctx *ctx = NULL;
    assert_int_equal(pd_ctx_open(pm, &cp, &ctx, &err), PD_OK);
    struct lp_capture cap = {k_ids, lp_pd};
    assert_int_equal(pd_ctx_eval(ctx, k_ids, len - 1, on_logits, &cap, &err), PD_OK);
    double worst = 0;
    for (size_t i = 1; i < len; i++) {
        worst = fmax(worst, fabs(lp_tr[i] - lp_pd[i]));
    }
    pd_ctx_close(&ctx);
    pd_model_close(&pm);
    tr_model_free(&m);
    unlink(path);
    return worst;
}

static void test_gguf_in_engine(void **state)
{
    (void)state;
    double f32 = engine_diff(TR_WTYPE_F32);
    assert_true(f32 < 1e-5);
    /* q8_0 matrices: the engine reads them; the quantisation error stays small */
    double q8 = engine_diff(TR_WTYPE_Q8_0);
    assert_true(q8 > 0 && q8 < 0.05);
}

static void test_bad_batches(void **state)
{
    (void)state;
    struct tr_model *m = tiny_model(1);
    struct tr_run *r = NULL;
    struct pd_err err;
    assert_int_equal(tr_run_open(m, 12, 1, &r, &err), PD_OK);
    int32_t ids[3] = {1, 99, 2};
    size_t len = 3;
    struct tr_batch b = {ids, NULL, 3, &len, 1};
    assert_int_equal(tr_forward(r, &b, NULL, NULL, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "id 99 out of range"));
    size_t too_long = 17; /* ctx 16 */
    int32_t many[17] = {0};
    struct tr_batch b2 = {many, NULL, 17, &too_long, 1};
    assert_int_equal(tr_forward(r, &b2, NULL, NULL, &err), PD_EINVAL);
    struct tr_config bad = tiny_config();
    bad.n_head = 3;
    struct tr_model *m2 = NULL;
    assert_int_equal(tr_model_new(&bad, 1, &m2, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "heads"));
    tr_run_close(&r);
    tr_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_gradients_long),
        cmocka_unit_test(test_adamw_by_hand),
        cmocka_unit_test(test_lr_schedule),
        cmocka_unit_test(test_gemm_shapes),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_checkpoint_resume),
        cmocka_unit_test(test_gguf_in_engine),
        cmocka_unit_test(test_bad_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
