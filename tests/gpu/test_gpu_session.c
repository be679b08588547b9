/* test_gpu_session.c - live sessions on the device engine against the same sessions on
 * the CPU (docs/gpu.md, GPU.md section 9.3):
 *
 *   test_gpu_session [emu|cuda]
 *
 * stories260K, greedy: every KV policy (window, h2o, snapkv, tova, lazy; enforce and
 * shadow; head mean and max aggregation) gives identical tokens and identical eviction
 * events (layer, position, step, kind); attention summaries agree (weights within 5e-3,
 * positions identical unless two weights are that close, or at the last entry, where the
 * swap partner is outside the list; step masses within 5e-3: the CPU and the device
 * compute K in different f32 orders, and a flipped f16 rounding of one K entry moves a
 * logit by up to 2^-11 |q.k|, |q.k| up to ~10 on stories260K); and
 * scripted commands (inject, answer now, branch, prune from the cache and by re-encoding,
 * a policy change, shadow divergence) produce the same event streams, as do parked
 * (keep_alive) sessions continued with a new sampler and a trace re-opened with
 * pd_session_start_history. Commands are sent
 * from the session's step observer, which runs on the worker between tokens, so they
 * land at the same positions in both runs. "cuda" exits 77 without a device; the model
 * missing is a SKIP too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policies.h"
#include "attn_blob.h"
#include "backend.h"
#include "capture.h"
#include "engine_common.h"
#include "session.h"
#include "tokenizer.h"

#define MAX_EV 4096

static bool g_emulate;
static struct pd_model *g_model;
static struct pd_tok *g_tok;

struct ev_rec {
    enum pd_event_kind kind;
    int64_t pos, pos_end;
    int32_t id;
    enum pd_role role;
    float logprob, entropy;
    int32_t kv_layer;
    int64_t kv_pos, kv_at;
    int kv_kind;
    uint8_t *attn;
    size_t attn_len;
    char text[64];
};

struct run {
    struct ev_rec ev[MAX_EV];
    size_t n;
    size_t n_progress;             /* PD_EV_PROGRESS events (not in ev) */
    int64_t progress_last, progress_total;
};

/* Commands sent when the token at `at` is fed to the step observer. */
struct script {
    struct pd_session *s;
    int64_t at[8];
    struct pd_cmd cmd[8];
    int n;
};

static bool feed(void *ud, const struct pd_token_rec *tok, int64_t *begin)
{
    struct script *sc = ud;
    for (int i = 0; i < sc->n; i++) {
        if (sc->at[i] == tok->pos && sc->s) {
            struct pd_err err;
            if (pd_session_send(sc->s, &sc->cmd[i], &err)) {
                fprintf(stderr, "send: %s\n", err.msg);
            }
            sc->at[i] = -1; /* once */
        }
    }
    /* a step every 16 positions, so summaries carry step masses */
    if (tok->pos > 0 && tok->pos % 16 == 0) {
        *begin = tok->pos;
        return true;
    }
    return false;
}

static void reset(void *ud, int64_t pos)
{
    (void)ud;
    (void)pos;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static struct pd_session *open_run(bool device, const char *policy, uint32_t n_predict,
                                   bool keep_alive, struct script *sc)
{
    struct pd_session_params p = pd_session_default_params();
    p.ctx.n_ctx = 256;
    p.ctx.n_threads = 2;
    p.ctx.kv_type = PD_KV_F16;
    p.ctx.backend = device ? PD_BACKEND_CUDA : PD_BACKEND_CPU;
    p.ctx.cuda_emulate = g_emulate;
    p.n_predict = n_predict;
    p.keep_alive = keep_alive;
    p.summary_top_n = 8;
    p.steps.feed = feed;
    p.steps.reset = reset;
    p.steps.ud = sc;
    struct pd_err err;
    if (policy && pd_policy_create_str(policy, (int32_t)g_model->hp.n_layer, 0, &p.policy, &err)) {
        fail_msg("%s", err.msg);
    }
    struct pd_session *s = NULL;
    if (pd_session_open(g_model, g_tok, &p, &s, &err)) {
        fail_msg("%s", err.msg);
    }
    sc->s = s;
    return s;
}

/* Records events up to the next end (PD_EV_FINISHED; an error fails the test). Progress
 * events depend on the clock: they are counted, not recorded. */
static void record_leg(struct pd_session *s, struct run *r)
{
    double t0 = now_ms();
    for (;;) {
        assert_true(now_ms() - t0 < 300000);
        struct pd_event ev;
        if (!pd_session_wait(s, &ev, 200)) {
            continue;
        }
        bool end = ev.kind == PD_EV_FINISHED || ev.kind == PD_EV_ERROR;
        if (ev.kind == PD_EV_PROGRESS) {
            r->n_progress++;
            r->progress_last = ev.pos;
            r->progress_total = ev.pos_end;
        } else if (r->n < MAX_EV && ev.kind != PD_EV_ATTN) {
            struct ev_rec *e = &r->ev[r->n++];
            memset(e, 0, sizeof *e);
            e->kind = ev.kind;
            e->pos = ev.pos;
            e->pos_end = ev.pos_end;
            snprintf(e->text, sizeof e->text, "%s", ev.text);
            if (ev.kind == PD_EV_TOKEN) {
                e->id = ev.tok.id;
                e->role = ev.tok.role;
                e->logprob = ev.tok.logprob;
                e->entropy = ev.tok.entropy;
                e->attn = ev.tok.attn;
                e->attn_len = ev.tok.attn_len;
                ev.tok.attn = NULL;
            } else if (ev.kind == PD_EV_EVICT) {
                e->kv_layer = ev.kv.layer;
                e->kv_pos = ev.kv.slot_pos;
                e->kv_at = ev.kv.at_pos;
                e->kv_kind = (int)ev.kv.kind;
            }
        }
        if (ev.kind == PD_EV_ERROR) {
            fail_msg("session error: %s", ev.text);
        }
        pd_event_free(&ev);
        if (end) {
            break;
        }
    }
}

static void run_session(bool device, const char *policy, uint32_t n_predict, struct script *sc,
                        struct run *r)
{
    struct pd_session *s = open_run(device, policy, n_predict, false, sc);
    struct pd_err err;
    if (pd_session_start(s, NULL, "Once upon a time", &err)) {
        fail_msg("%s", err.msg);
    }
    r->n = 0;
    record_leg(s, r);
    sc->s = NULL;
    pd_session_close(&s);
}

static void free_run(struct run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->ev[i].attn);
    }
}

#define W_TOL 5e-3f /* attention weight bar: 2^-11 |q.k| with |q.k| up to ~10 here */

/* Summary blobs: same layout, weights within W_TOL, positions equal unless near-tied. */
static void compare_blobs(const struct ev_rec *a, const struct ev_rec *b, const char *what)
{
    assert_int_equal(a->attn_len, b->attn_len);
    if (!a->attn) {
        return;
    }
    struct pd_attn_view va, vb;
    assert_true(pd_attn_blob_layout(a->attn, a->attn_len, &va));
    assert_true(pd_attn_blob_layout(b->attn, b->attn_len, &vb));
    assert_int_equal(va.n_layer, vb.n_layer);
    assert_int_equal(va.n_top, vb.n_top);
    assert_int_equal(va.n_steps, vb.n_steps);
    uint32_t top = va.n_top;
    for (uint32_t il = 0; il < va.n_layer; il++) {
        for (uint32_t k = 0; k < top; k++) {
            uint32_t pa, pb;
            float wa, wb;
            pd_attn_view_get(&va, il, k, &pa, &wa);
            pd_attn_view_get(&vb, il, k, &pb, &wb);
            if ((pa == PD_ATTN_POS_PAD) != (pb == PD_ATTN_POS_PAD) || fabsf(wa - wb) > W_TOL) {
                fail_msg("%s: token %lld layer %u entry %u: weight %g vs %g", what,
                         (long long)a->pos, il, k, wa, wb);
            }
            if (pa != pb) {
                /* a legitimate swap only between near-equal weights, or at the last entry
                 * (its partner is the (N+1)-th, not listed) */
                uint32_t pn;
                float wn;
                bool near = k + 1 == top;
                if (!near && k + 1 < top) {
                    pd_attn_view_get(&va, il, k + 1, &pn, &wn);
                    near = fabsf(wn - wa) <= 2 * W_TOL;
                }
                if (!near && k > 0) {
                    pd_attn_view_get(&va, il, k - 1, &pn, &wn);
                    near = fabsf(wn - wa) <= 2 * W_TOL;
                }
                if (!near) {
                    fail_msg("%s: token %lld layer %u entry %u: position %u vs %u", what,
                             (long long)a->pos, il, k, pa, pb);
                }
            }
        }
    }
    for (uint32_t j = 0; j < va.n_steps; j++) {
        assert_int_equal(pd_attn_view_step_begin(&va, j), pd_attn_view_step_begin(&vb, j));
        float ma = pd_attn_view_step_mass(&va, j), mb = pd_attn_view_step_mass(&vb, j);
        if (fabsf(ma - mb) > W_TOL) {
            fail_msg("%s: token %lld step %u mass %g vs %g", what, (long long)a->pos, j, ma, mb);
        }
    }
}

static void compare_runs(const struct run *a, const struct run *b, const char *what)
{
    size_t n = a->n < b->n ? a->n : b->n;
    size_t n_evict = 0;
    for (size_t i = 0; i < n; i++) {
        const struct ev_rec *x = &a->ev[i], *y = &b->ev[i];
        if (x->kind != y->kind || x->pos != y->pos || x->pos_end != y->pos_end) {
            fail_msg("%s: event %zu: cpu kind %d pos %lld, device kind %d pos %lld", what, i,
                     (int)x->kind, (long long)x->pos, (int)y->kind, (long long)y->pos);
        }
        if (x->kind == PD_EV_TOKEN) {
            if (x->id != y->id || x->role != y->role) {
                fail_msg("%s: token at %lld: cpu %d, device %d", what, (long long)x->pos, x->id,
                         y->id);
            }
            /* 5e-3: on these runs the CPU's own scalar and AVX2 paths already differ by up
             * to 2.2e-3 (stories260K is f32 with an f16 KV cache; docs/gpu.md) */
            if (!(isnan(x->logprob) && isnan(y->logprob)) &&
                fabsf(x->logprob - y->logprob) > 5e-3f) {
                fail_msg("%s: logprob at %lld: %g vs %g", what, (long long)x->pos, x->logprob,
                         y->logprob);
            }
            compare_blobs(x, y, what);
        } else if (x->kind == PD_EV_EVICT) {
            n_evict++;
            if (x->kv_layer != y->kv_layer || x->kv_pos != y->kv_pos || x->kv_at != y->kv_at ||
                x->kv_kind != y->kv_kind) {
                fail_msg("%s: eviction %zu: cpu layer %d pos %lld, device layer %d pos %lld", what,
                         i, x->kv_layer, (long long)x->kv_pos, y->kv_layer, (long long)y->kv_pos);
            }
        } else if (x->kind == PD_EV_MODE || x->kind == PD_EV_FINISHED ||
                   x->kind == PD_EV_BRANCHED || x->kind == PD_EV_PRUNED) {
            assert_string_equal(x->text, y->text);
        }
    }
    assert_int_equal(a->n, b->n);
    printf("%-24s %zu events identical (%zu evictions)\n", what, a->n, n_evict);
}

static struct run g_a, g_b;

static void test_policies(void **state)
{
    (void)state;
    /* Cases without near-ties (GPU.md 12): h2o:24,agg=max is not among them because at
     * step 52 its layer-3 scores of positions 7 and 37 are so close that the CPU's own
     * scalar and AVX2 paths evict different ones (the device agrees with the scalar). */
    static const char *const specs[] = {
        NULL,         "window:24,sinks=4", "h2o:24",   "h2o:20,agg=max", "snapkv:24,w=4",
        "tova:24",    "lazy:24,w=8",       "h2o:24,shadow", "tova:24,shadow",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        struct script sc;
        memset(&sc, 0, sizeof sc);
        run_session(false, specs[i], 48, &sc, &g_a);
        memset(&sc, 0, sizeof sc);
        run_session(true, specs[i], 48, &sc, &g_b);
        compare_runs(&g_a, &g_b, specs[i] ? specs[i] : "full cache");
        free_run(&g_a);
        free_run(&g_b);
    }
}

static struct script commands(void)
{
    struct script sc;
    memset(&sc, 0, sizeof sc);
    int k = 0;
    sc.at[k] = 12;
    sc.cmd[k].kind = PD_CMD_INJECT;
    snprintf(sc.cmd[k].text, sizeof sc.cmd[k].text, " and a dog");
    sc.cmd[k++].token = -1;
    sc.at[k] = 20;
    sc.cmd[k].kind = PD_CMD_PRUNE;
    sc.cmd[k].pos = 6;
    sc.cmd[k].pos_end = 9;
    sc.cmd[k++].token = -1;
    sc.at[k] = 28;
    sc.cmd[k].kind = PD_CMD_BRANCH;
    sc.cmd[k].pos = 25;
    sc.cmd[k++].token = 300;
    sc.at[k] = 34;
    sc.cmd[k].kind = PD_CMD_PRUNE;
    sc.cmd[k].pos = 2;
    sc.cmd[k].pos_end = 5;
    sc.cmd[k].reencode = true;
    sc.cmd[k++].token = -1;
    sc.at[k] = 40;
    sc.cmd[k].kind = PD_CMD_DIVERGENCE;
    sc.cmd[k++].token = -1;
    sc.at[k] = 44;
    sc.cmd[k].kind = PD_CMD_ANSWER_NOW;
    sc.cmd[k++].token = -1;
    sc.n = k;
    return sc;
}

static void test_commands(void **state)
{
    (void)state;
    struct script sc = commands();
    run_session(false, "h2o:32,shadow", 56, &sc, &g_a);
    sc = commands();
    run_session(true, "h2o:32,shadow", 56, &sc, &g_b);
    compare_runs(&g_a, &g_b, "commands (shadow h2o)");
    free_run(&g_a);
    free_run(&g_b);
    sc = commands();
    sc.n = 4; /* no divergence (needs shadow) */
    run_session(false, "window:20,sinks=2", 56, &sc, &g_a);
    sc = commands();
    sc.n = 4;
    run_session(true, "window:20,sinks=2", 56, &sc, &g_b);
    compare_runs(&g_a, &g_b, "commands (window)");
    free_run(&g_a);
    free_run(&g_b);
}

/* keep_alive (GPU.md 9.3's session level, for the parked sessions): a first leg of 72
 * greedy tokens under h2o:24 parks, a sampling change (temperature 0.8, top-k 20, seed 7)
 * and a continue of 8 tokens run a second leg; then the first leg's trace (77 tokens) is
 * re-opened with pd_session_start_history: one prefill with policy rows and per-token
 * logits (GEMM chunks on the device), progress events up to the whole trace, the
 * evictions the policy makes of it, "loaded", and a continue of 8. The device's event
 * streams equal the CPU's. */
static struct run g_h[2];

static void keep_alive_run(bool device, struct run *r, struct run *h, const int32_t *ids,
                           const uint8_t *roles, size_t n_hist)
{
    struct script sc;
    memset(&sc, 0, sizeof sc);
    struct pd_session *s = open_run(device, "h2o:24", 72, true, &sc);
    struct pd_err err;
    if (pd_session_start(s, NULL, "Once upon a time", &err)) {
        fail_msg("%s", err.msg);
    }
    record_leg(s, r);
    assert_string_equal(r->ev[r->n - 1].text, "length");
    struct pd_cmd c;
    memset(&c, 0, sizeof c);
    c.token = -1;
    c.kind = PD_CMD_SET_SAMPLING;
    c.sampling = pd_sampler_default_params();
    c.sampling.temperature = 0.8f;
    c.sampling.top_k = 20;
    c.sampling.seed = 7;
    assert_int_equal(pd_session_send(s, &c, &err), PD_OK);
    c.kind = PD_CMD_CONTINUE;
    c.budget = 8;
    assert_int_equal(pd_session_send(s, &c, &err), PD_OK);
    record_leg(s, r);
    assert_string_equal(r->ev[r->n - 1].text, "length");
    sc.s = NULL;
    pd_session_close(&s);
    if (!ids) {
        return;
    }
    memset(&sc, 0, sizeof sc);
    s = open_run(device, "h2o:24", 72, true, &sc);
    if (pd_session_start_history(s, ids, roles, n_hist, &err)) {
        fail_msg("%s", err.msg);
    }
    record_leg(s, h);
    assert_string_equal(h->ev[h->n - 1].text, "loaded");
    assert_true(h->n_progress >= 1);
    assert_int_equal(h->progress_last, (int64_t)n_hist);
    assert_int_equal(h->progress_total, (int64_t)n_hist);
    c.kind = PD_CMD_CONTINUE;
    c.budget = 8;
    assert_int_equal(pd_session_send(s, &c, &err), PD_OK);
    record_leg(s, h);
    assert_string_equal(h->ev[h->n - 1].text, "length");
    sc.s = NULL;
    pd_session_close(&s);
}

static void test_keep_alive_history(void **state)
{
    (void)state;
    memset(&g_a, 0, sizeof g_a);
    memset(&g_b, 0, sizeof g_b);
    memset(g_h, 0, sizeof g_h);
    keep_alive_run(false, &g_a, NULL, NULL, NULL, 0);
    /* the first leg's trace: its tokens in position order, up to the first end */
    int32_t ids[256];
    uint8_t roles[256];
    size_t n_hist = 0;
    for (size_t i = 0; i < g_a.n && g_a.ev[i].kind != PD_EV_FINISHED; i++) {
        const struct ev_rec *e = &g_a.ev[i];
        if (e->kind == PD_EV_TOKEN) {
            assert_int_equal(e->pos, (int64_t)n_hist);
            ids[n_hist] = e->id;
            roles[n_hist++] = (uint8_t)e->role;
        }
    }
    assert_true(n_hist >= 64); /* long enough for progress events */
    free_run(&g_a);
    memset(&g_a, 0, sizeof g_a);
    keep_alive_run(false, &g_a, &g_h[0], ids, roles, n_hist);
    keep_alive_run(true, &g_b, &g_h[1], ids, roles, n_hist);
    compare_runs(&g_a, &g_b, "keep_alive legs (h2o)");
    compare_runs(&g_h[0], &g_h[1], "history re-opened (h2o)");
    free_run(&g_a);
    free_run(&g_b);
    free_run(&g_h[0]);
    free_run(&g_h[1]);
}

int main(int argc, char **argv)
{
    const char *provider = argc > 1 ? argv[1] : "emu";
    if (strcmp(provider, "cuda") == 0) {
        if (!pd_backend_cuda_available()) {
            fprintf(stderr, "SKIP: no CUDA device (or a build without CUDA)\n");
            return 77;
        }
    } else {
        g_emulate = true;
    }
    char *path = test_shared_model("stories260K.gguf");
    if (!path) {
        fprintf(stderr, "SKIP: stories260K.gguf not found\n");
        return 77;
    }
    struct pd_err err;
    if (pd_model_open(path, &g_model, &err) || pd_tok_open_gguf(g_model->gguf, &g_tok, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    free(path);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policies),
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_keep_alive_history),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pd_tok_close(&g_tok);
    pd_model_close(&g_model);
    return rc;
}
