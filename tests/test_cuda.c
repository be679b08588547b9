/* test_cuda.c - the GPU backend against the CPU reference.
 *
 *   test_cuda          backend names and the clear refusal when CUDA is unavailable
 *                      (always runs)
 *   test_cuda parity   CPU vs CUDA logits on random models of every architecture and
 *                      several types, and stories260K's greedy text; exits 77 (SKIP) when
 *                      ponder was built without CUDA or no device is present */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "engine_common.h"
#include "forward.h"
#include "probe.h"
#include "sampler.h"

static char *g_tmp;

static struct pd_model *make_model(const char *arch, const char *type)
{
    char path[512];
    snprintf(path, sizeof path, "%s/cuda-%s-%s.gguf", g_tmp, arch, type);
    const char *args[] = {"--arch", arch, "--type", type, "--seed", "2", NULL};
    assert_int_equal(test_mkmodel(args, path), 0);
    struct pd_model *m = NULL;
    struct pd_err err;
    if (pd_model_open(path, &m, &err)) {
        fail_msg("%s", err.msg);
    }
    return m;
}

static struct pd_ctx *ctx_for(const struct pd_model *m, enum pd_backend_kind b)
{
    struct pd_ctx_params p = pd_ctx_default_params();
    p.kv_type = PD_KV_F32;
    p.n_ctx = 128;
    p.backend = b;
    struct pd_ctx *c = NULL;
    struct pd_err err;
    if (pd_ctx_open(m, &p, &c, &err)) {
        fail_msg("%s", err.msg);
    }
    return c;
}

static void test_names_and_refusal(void **state)
{
    (void)state;
    assert_int_equal(pd_backend_parse("cpu"), PD_BACKEND_CPU);
    assert_int_equal(pd_backend_parse("cuda"), PD_BACKEND_CUDA);
    assert_int_equal(pd_backend_parse("tpu"), PD_BACKEND_KIND_COUNT);
    assert_string_equal(pd_backend_name(PD_BACKEND_CUDA), "cuda");
    struct pd_model *m = make_model("llama", "f32");
    struct pd_backend *b = NULL;
    struct pd_err err;
    enum pd_status st = pd_backend_cuda_open(m, &b, &err);
    if (st == PD_OK) {
        printf("a CUDA device is present: the refusal path is not exercised here\n");
        pd_backend_close(&b);
    } else {
        /* Without CUDA (build or device) the answer is a clear refusal, and a context asked
         * for the GPU fails instead of silently running on the CPU. */
        assert_int_equal(st, PD_EUNSUPPORTED);
        assert_null(b);
        assert_true(strstr(err.msg, "built without CUDA") || strstr(err.msg, "no CUDA device"));
        struct pd_ctx_params p = pd_ctx_default_params();
        p.backend = PD_BACKEND_CUDA;
        struct pd_ctx *c = NULL;
        assert_int_equal(pd_ctx_open(m, &p, &c, &err), PD_EUNSUPPORTED);
        assert_null(c);
    }
    pd_model_close(&m);
}

static double max_logprob_diff(const float *a, const float *b, size_t V)
{
    struct pd_dist_stats sa = pd_probe_stats(a, V), sb = pd_probe_stats(b, V);
    double d = 0;
    for (size_t i = 0; i < V; i++) {
        d = fmax(d, fabs(pd_probe_logprob(a, sa, (int32_t)i) - pd_probe_logprob(b, sb, (int32_t)i)));
    }
    return d;
}

static void test_parity(void **state)
{
    (void)state;
    static const char *const archs[] = {"llama", "qwen2", "qwen3"};
    static const char *const types[] = {"f32", "f16", "q8_0", "q4_k", "q6_k"};
    for (size_t ai = 0; ai < 3; ai++) {
        for (size_t ti = 0; ti < 5; ti++) {
            struct pd_model *m = make_model(archs[ai], types[ti]);
            struct pd_ctx *cpu = ctx_for(m, PD_BACKEND_CPU);
            struct pd_ctx *gpu = ctx_for(m, PD_BACKEND_CUDA);
            size_t V = m->hp.n_vocab;
            int32_t toks[40];
            for (int i = 0; i < 40; i++) {
                toks[i] = (int32_t)((i * 29 + 7) % V);
            }
            double worst = 0;
            struct pd_err err;
            /* A 40-token batch, then 8 single tokens (prefill GEMM and decode shapes). */
            assert_int_equal(pd_ctx_eval(cpu, toks, 32, NULL, NULL, &err), PD_OK);
            assert_int_equal(pd_ctx_eval(gpu, toks, 32, NULL, NULL, &err), PD_OK);
            assert_non_null(gpu->backend); /* still on the device */
            worst = fmax(worst, max_logprob_diff(cpu->logits, gpu->logits, V));
            for (int i = 32; i < 40; i++) {
                assert_int_equal(pd_ctx_eval(cpu, &toks[i], 1, NULL, NULL, &err), PD_OK);
                assert_int_equal(pd_ctx_eval(gpu, &toks[i], 1, NULL, NULL, &err), PD_OK);
                worst = fmax(worst, max_logprob_diff(cpu->logits, gpu->logits, V));
            }
            /* f32 weights: both exact but for summation order; otherwise the CPU rounds
             * activations to the dot format and the GPU does not. */
            double tol = strcmp(types[ti], "f32") == 0 ? 1e-3 : 0.15;
            printf("cuda parity %s-%s: max |logprob cpu - cuda| = %.3g (tol %g)\n", archs[ai],
                   types[ti], worst, tol);
            assert_true(worst <= tol);
            pd_ctx_close(&cpu);
            pd_ctx_close(&gpu);
            pd_model_close(&m);
        }
    }
    char *sp = test_shared_model("stories260K.gguf");
    if (sp) {
        struct pd_model *m = NULL;
        struct pd_err err;
        assert_int_equal(pd_model_open(sp, &m, &err), PD_OK);
        struct pd_ctx *cpu = ctx_for(m, PD_BACKEND_CPU);
        struct pd_ctx *gpu = ctx_for(m, PD_BACKEND_CUDA);
        int32_t prompt[5] = {1, 403, 407, 261, 378}; /* "Once upon a time" */
        assert_int_equal(pd_ctx_eval(cpu, prompt, 5, NULL, NULL, &err), PD_OK);
        assert_int_equal(pd_ctx_eval(gpu, prompt, 5, NULL, NULL, &err), PD_OK);
        for (int k = 0; k < 100; k++) {
            int32_t a = pd_argmax(cpu->logits, m->hp.n_vocab);
            int32_t b = pd_argmax(gpu->logits, m->hp.n_vocab);
            assert_int_equal(a, b);
            assert_int_equal(pd_ctx_eval(cpu, &a, 1, NULL, NULL, &err), PD_OK);
            assert_int_equal(pd_ctx_eval(gpu, &b, 1, NULL, NULL, &err), PD_OK);
        }
        pd_ctx_close(&cpu);
        pd_ctx_close(&gpu);
        pd_model_close(&m);
        free(sp);
    }
}

int main(int argc, char **argv)
{
    g_tmp = test_tmpdir();
    if (argc > 1 && strcmp(argv[1], "parity") == 0) {
        if (!HAVE_CUDA) {
            fprintf(stderr, "SKIP: ponder was built without CUDA\n");
            return 77;
        }
        const char *args[] = {"--arch", "llama", "--type", "f32", "--seed", "2", NULL};
        char path[512];
        snprintf(path, sizeof path, "%s/probe.gguf", g_tmp);
        struct pd_model *m = NULL;
        struct pd_backend *b = NULL;
        struct pd_err err;
        if (test_mkmodel(args, path) || pd_model_open(path, &m, &err)) {
            fprintf(stderr, "cannot make a test model\n");
            return 1;
        }
        enum pd_status st = pd_backend_cuda_open(m, &b, &err);
        pd_backend_close(&b);
        pd_model_close(&m);
        if (st == PD_EUNSUPPORTED) {
            fprintf(stderr, "SKIP: %s\n", err.msg);
            return 77;
        }
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_parity)};
        return cmocka_run_group_tests(tests, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_names_and_refusal)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
