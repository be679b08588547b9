/* test_session.c - the live session: commands from a second thread (pause, resume, inject,
 * answer now, branch, prune and continue in both variants, stop), KV policies end to end
 * (a budget at least the sequence length changes nothing; window sinks 4 / recent 60
 * equals an independent recomputation; shadow mode never changes the output).
 * Runs on a random-weight llama model made by mkmodel, and also on stories260K when
 * present. */
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
#include "kvsim.h"
#include "steps_live.h"
#include "attn_blob.h"
#include "capture.h"
#include "chat.h"
#include "engine_common.h"
#include "forward.h"
#include "model.h"
#include "session.h"
#include "tokenizer.h"

static char *g_tmp;
static struct pd_model *g_model;    /* random llama f32 */
static struct pd_tok *g_tok;
static struct pd_model *g_stories;  /* NULL when absent */
static struct pd_tok *g_stories_tok;

#define MAX_TOK 2048

/* Everything a run produced, in order. */
struct run {
    int32_t id[MAX_TOK];
    int64_t pos[MAX_TOK];
    enum pd_role role[MAX_TOK];
    float logprob[MAX_TOK];
    size_t n;
    size_t n_evict, n_shadow_evict;
    int64_t evicted[MAX_TOK * 8];
    int32_t shadow_layer[MAX_TOK * 8]; /* the first MAX_TOK * 8 shadow evictions */
    int64_t shadow_pos[MAX_TOK * 8];
    char finish[64];
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static struct pd_session *open_session(struct pd_model *m, struct pd_tok *t, const char *kv,
                                       uint32_t n_predict, double throttle_ms,
                                       uint32_t top_n)
{
    struct pd_session_params p = pd_session_default_params();
    p.ctx.n_ctx = 512;
    p.ctx.n_threads = 2;
    p.ctx.kv_type = PD_KV_F32;
    p.n_predict = n_predict;
    p.throttle_ms = throttle_ms;
    p.summary_top_n = top_n;
    struct pd_err err;
    if (kv && pd_policy_create_str(kv, (int32_t)m->hp.n_layer, 0, &p.policy, &err)) {
        fail_msg("%s", err.msg);
    }
    struct pd_session *s = NULL;
    if (pd_session_open(m, t, &p, &s, &err)) {
        fail_msg("%s", err.msg);
    }
    return s;
}

static void start(struct pd_session *s, const char *prompt)
{
    struct pd_err err;
    if (pd_session_start(s, NULL, prompt, &err)) {
        fail_msg("%s", err.msg);
    }
}

/* Records one event into r; returns true when the run ended. */
static bool record(struct run *r, struct pd_event *ev)
{
    bool end = false;
    if (ev->kind == PD_EV_TOKEN && r->n < MAX_TOK) {
        r->id[r->n] = ev->tok.id;
        r->pos[r->n] = ev->tok.pos;
        r->role[r->n] = ev->tok.role;
        r->logprob[r->n] = ev->tok.logprob;
        r->n++;
    } else if (ev->kind == PD_EV_EVICT) {
        if (ev->kv.kind == PD_KV_SHADOW_EVICT) {
            if (r->n_shadow_evict < MAX_TOK * 8) {
                r->shadow_layer[r->n_shadow_evict] = ev->kv.layer;
                r->shadow_pos[r->n_shadow_evict] = ev->kv.slot_pos;
            }
            r->n_shadow_evict++;
        } else if (r->n_evict < MAX_TOK * 8) {
            r->evicted[r->n_evict++] = ev->kv.layer == 0 ? ev->kv.slot_pos : -1;
        }
    } else if (ev->kind == PD_EV_FINISHED || ev->kind == PD_EV_ERROR) {
        snprintf(r->finish, sizeof r->finish, "%s%s", ev->kind == PD_EV_ERROR ? "error: " : "",
                 ev->text);
        end = true;
    }
    return end;
}

static void run_to_end(struct pd_session *s, struct run *r)
{
    struct pd_event ev;
    double t0 = now_ms();
    for (;;) {
        assert_true(now_ms() - t0 < 60000);
        if (!pd_session_wait(s, &ev, 200)) {
            continue;
        }
        bool end = record(r, &ev);
        pd_event_free(&ev);
        if (end) {
            return;
        }
    }
}

/* Waits for an event of the given kind, recording everything before it. */
static void wait_for(struct pd_session *s, struct run *r, enum pd_event_kind kind,
                     struct pd_event *out)
{
    struct pd_event ev;
    double t0 = now_ms();
    for (;;) {
        if (now_ms() - t0 > 20000) {
            fail_msg("timed out waiting for event %d", (int)kind);
        }
        if (!pd_session_wait(s, &ev, 200)) {
            continue;
        }
        bool hit = ev.kind == kind;
        record(r, &ev);
        if (hit) {
            if (out) {
                *out = ev;
            } else {
                pd_event_free(&ev);
            }
            return;
        }
        pd_event_free(&ev);
        assert_true(ev.kind != PD_EV_ERROR);
    }
}

static void send(struct pd_session *s, struct pd_cmd c)
{
    struct pd_err err;
    if (pd_session_send(s, &c, &err)) {
        fail_msg("%s", err.msg);
    }
}

static struct pd_cmd cmd(enum pd_cmd_kind k)
{
    struct pd_cmd c;
    memset(&c, 0, sizeof c);
    c.kind = k;
    c.token = -1;
    return c;
}

static size_t count_generated(const struct run *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++) {
        n += r->role[i] != PD_ROLE_PROMPT;
    }
    return n;
}

/* ---- policies end to end ------------------------------------------------------------- */

static void budget_covers_all(struct pd_model *m, struct pd_tok *t, const char *prompt)
{
    struct run *full = calloc(1, sizeof *full);
    struct pd_session *s = open_session(m, t, NULL, 80, 0, 8);
    start(s, prompt);
    run_to_end(s, full);
    pd_session_close(&s);
    assert_string_equal(full->finish, "length");
    static const char *const specs[] = {"full", "window:1000", "h2o:1000", "snapkv:1000,w=4",
                                        "tova:1000", "lazy:1000,w=8", "h2o:1.0"};
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        struct run *r = calloc(1, sizeof *r);
        s = open_session(m, t, specs[k], 80, 0, 8);
        start(s, prompt);
        run_to_end(s, r);
        pd_session_close(&s);
        assert_int_equal(r->n, full->n);
        assert_int_equal(r->n_evict, 0);
        for (size_t i = 0; i < r->n; i++) {
            if (r->id[i] != full->id[i]) {
                fail_msg("%s: token %zu differs from the full cache", specs[k], i);
            }
        }
        free(r);
    }
    free(full);
}

static void test_budget_ge_length_equals_full(void **state)
{
    (void)state;
    budget_covers_all(g_model, g_tok, "the time");
    if (g_stories) {
        budget_covers_all(g_stories, g_stories_tok, "Once upon a time");
    }
}

struct window_hide {
    int64_t q;
};

/* Independent recomputation of window (sinks 4, recent 60): a full cache where every
 * query position q sees positions 0..3 and q-60..q only. */
static void window_recompute(struct pd_model *m, struct pd_tok *t, const char *prompt)
{
    struct run *r = calloc(1, sizeof *r);
    struct pd_session *s = open_session(m, t, "window:64,sinks=4", 200, 0, 8);
    start(s, prompt);
    run_to_end(s, r);
    pd_session_close(&s);
    assert_string_equal(r->finish, "length");
    size_t n_prompt = r->n - count_generated(r);
    assert_true(n_prompt < 60);
    struct pd_ctx_params cp = pd_ctx_default_params();
    cp.n_ctx = 512;
    cp.kv_type = PD_KV_F32;
    cp.n_threads = 2;
    struct pd_ctx *c = NULL;
    struct pd_err err;
    assert_int_equal(pd_ctx_open(m, &cp, &c, &err), PD_OK);
    uint8_t **hide = calloc(m->hp.n_layer, sizeof *hide);
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        hide[il] = calloc(512, 1);
    }
    c->hide = (const uint8_t *const *)hide;
    assert_int_equal(pd_ctx_eval(c, r->id, n_prompt, NULL, NULL, &err), PD_OK);
    double worst = 0;
    for (size_t i = n_prompt; i < r->n; i++) {
        int32_t want = pd_argmax(c->logits, m->hp.n_vocab);
        if (want != r->id[i]) {
            fail_msg("window: token at position %zu is %d, recomputation gives %d", i, r->id[i],
                     want);
        }
        /* logprob of the token under the recomputed distribution */
        double mx = -INFINITY, z = 0;
        for (uint32_t v = 0; v < m->hp.n_vocab; v++) {
            mx = fmax(mx, c->logits[v]);
        }
        for (uint32_t v = 0; v < m->hp.n_vocab; v++) {
            z += exp(c->logits[v] - mx);
        }
        worst = fmax(worst, fabs(r->logprob[i] - (c->logits[want] - mx - log(z))));
        int64_t q = (int64_t)i; /* the position being evaluated next */
        for (uint32_t il = 0; il < m->hp.n_layer; il++) {
            for (int64_t p = 0; p < q; p++) {
                hide[il][p] = p >= 4 && p < q - 60;
            }
        }
        assert_int_equal(pd_ctx_eval(c, &r->id[i], 1, NULL, NULL, &err), PD_OK);
    }
    assert_true(worst < 1e-4);
    /* The evicted positions of layer 0 are exactly 4 .. last-61, each once. */
    int64_t last = (int64_t)r->n - 1;
    size_t k = 0;
    for (size_t e = 0; e < r->n_evict; e++) {
        if (r->evicted[e] < 0) {
            continue;
        }
        assert_int_equal(r->evicted[e], 4 + (int64_t)k);
        k++;
    }
    assert_int_equal((int64_t)k, last - 60 - 4 + 1);
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        free(hide[il]);
    }
    free(hide);
    pd_ctx_close(&c);
    free(r);
}

static void test_window_matches_recomputation(void **state)
{
    (void)state;
    window_recompute(g_model, g_tok, "the time");
    if (g_stories) {
        window_recompute(g_stories, g_stories_tok, "Once upon a time");
    }
}

/* The divergence of a shadow policy computed independently: a fresh context evaluates the
 * run's tokens, then the last token twice, once with the shadow-evicted positions of each
 * layer hidden; KL(full || hidden) in bits, in double, and top-1 agreement. */
static void independent_divergence(const struct run *r, size_t n, double *kl_bits, bool *top1)
{
    struct pd_ctx_params cp = pd_ctx_default_params();
    cp.n_ctx = 512;
    cp.n_threads = 2;
    cp.kv_type = PD_KV_F32;
    struct pd_ctx *c = NULL;
    struct pd_err err;
    assert_int_equal(pd_ctx_open(g_model, &cp, &c, &err), PD_OK);
    uint32_t nl = g_model->hp.n_layer, nv = g_model->hp.n_vocab;
    uint8_t **hide = calloc(nl, sizeof *hide);
    for (uint32_t il = 0; il < nl; il++) {
        hide[il] = calloc(cp.n_ctx, 1);
    }
    assert_true(r->n_shadow_evict <= MAX_TOK * 8);
    for (size_t e = 0; e < r->n_shadow_evict; e++) {
        int32_t l = r->shadow_layer[e];
        for (uint32_t il = 0; il < nl; il++) {
            if (l < 0 || (uint32_t)l == il) {
                hide[il][r->shadow_pos[e]] = 1; /* no eviction: slot index = position */
            }
        }
    }
    int64_t p = (int64_t)n - 1;
    assert_int_equal(pd_ctx_eval(c, r->id, (size_t)p, NULL, NULL, &err), PD_OK);
    double *lf = malloc(nv * sizeof *lf), *lh = malloc(nv * sizeof *lh);
    c->hide = (const uint8_t *const *)hide;
    assert_int_equal(pd_ctx_eval(c, &r->id[p], 1, NULL, NULL, &err), PD_OK);
    for (uint32_t i = 0; i < nv; i++) {
        lh[i] = c->logits[i];
    }
    c->hide = NULL;
    pd_kvcache_truncate(c->kv, p);
    c->n_past = p;
    assert_int_equal(pd_ctx_eval(c, &r->id[p], 1, NULL, NULL, &err), PD_OK);
    for (uint32_t i = 0; i < nv; i++) {
        lf[i] = c->logits[i];
    }
    double mf = lf[0], mh = lh[0];
    uint32_t af = 0, ah = 0;
    for (uint32_t i = 1; i < nv; i++) {
        if (lf[i] > mf) {
            mf = lf[i];
            af = i;
        }
        if (lh[i] > mh) {
            mh = lh[i];
            ah = i;
        }
    }
    double zf = 0, zh = 0;
    for (uint32_t i = 0; i < nv; i++) {
        zf += exp(lf[i] - mf);
        zh += exp(lh[i] - mh);
    }
    double kl = 0;
    for (uint32_t i = 0; i < nv; i++) {
        double a = lf[i] - mf - log(zf), b = lh[i] - mh - log(zh);
        kl += exp(a) * (a - b);
    }
    *kl_bits = kl / log(2.0);
    *top1 = af == ah;
    free(lf);
    free(lh);
    for (uint32_t il = 0; il < nl; il++) {
        free(hide[il]);
    }
    free(hide);
    pd_ctx_close(&c);
}

static void test_shadow_keeps_output(void **state)
{
    (void)state;
    struct run *full = calloc(1, sizeof *full), *sh = calloc(1, sizeof *sh);
    struct pd_session *s = open_session(g_model, g_tok, NULL, 60, 0, 8);
    start(s, "the time");
    run_to_end(s, full);
    pd_session_close(&s);
    s = open_session(g_model, g_tok, "h2o:16,shadow", 1000, 1, 8);
    start(s, "the time");
    struct pd_event ev;
    while (count_generated(sh) < 60) {
        wait_for(s, sh, PD_EV_TOKEN, NULL);
    }
    send(s, cmd(PD_CMD_PAUSE));
    wait_for(s, sh, PD_EV_PAUSED, NULL);
    send(s, cmd(PD_CMD_DIVERGENCE));
    wait_for(s, sh, PD_EV_DIVERGENCE, &ev);
    double want_kl;
    bool want_top1;
    independent_divergence(sh, sh->n, &want_kl, &want_top1);
    printf("shadow divergence: session %.6g bits, independent %.6g bits\n", ev.kl_bits,
           want_kl);
    assert_true(want_kl > 1e-4); /* hiding 16-slot h2o's evictions changes the distribution */
    assert_float_equal(ev.kl_bits, want_kl, 1e-5 + 1e-3 * want_kl);
    assert_int_equal(ev.top1_agree, want_top1);
    pd_event_free(&ev);
    pd_session_close(&s);
    assert_true(sh->n_shadow_evict > 0);
    assert_int_equal(sh->n_evict, 0);
    for (size_t i = 0; i < full->n; i++) {
        assert_int_equal(sh->id[i], full->id[i]);
    }
    free(full);
    free(sh);
}

/* Top-1 agreement as well as the KL: a tight shadow window, divergence asked every few
 * tokens, each checked against the independent computation until one disagrees (the
 * hidden slots change the argmax). */
static void test_shadow_top1(void **state)
{
    (void)state;
    struct run *r = calloc(1, sizeof *r);
    struct pd_session *s = open_session(g_model, g_tok, "window:4,sinks=1,shadow", 1000, 1, 8);
    start(s, "the time");
    size_t agree = 0, disagree = 0;
    for (int round = 0; round < 40 && disagree == 0; round++) {
        size_t want_n = count_generated(r) + 3;
        while (count_generated(r) < want_n) {
            wait_for(s, r, PD_EV_TOKEN, NULL);
        }
        send(s, cmd(PD_CMD_PAUSE));
        wait_for(s, r, PD_EV_PAUSED, NULL);
        struct pd_event ev;
        send(s, cmd(PD_CMD_DIVERGENCE));
        wait_for(s, r, PD_EV_DIVERGENCE, &ev);
        double want_kl;
        bool want_top1;
        independent_divergence(r, r->n, &want_kl, &want_top1);
        assert_float_equal(ev.kl_bits, want_kl, 1e-5 + 1e-3 * want_kl);
        assert_int_equal(ev.top1_agree, want_top1);
        agree += want_top1;
        disagree += !want_top1;
        pd_event_free(&ev);
        send(s, cmd(PD_CMD_RESUME));
        wait_for(s, r, PD_EV_RESUMED, NULL);
    }
    printf("shadow window:4,sinks=1: %zu divergences with the same top-1, %zu without\n", agree,
           disagree);
    assert_true(disagree > 0);
    pd_session_close(&s);
    free(r);
}

/* ---- commands from this thread -------------------------------------------------------- */

static void test_pause_resume_stop(void **state)
{
    (void)state;
    struct run *r = calloc(1, sizeof *r);
    struct pd_session *s = open_session(g_model, g_tok, NULL, 0, 2, 8);
    start(s, "the time");
    while (count_generated(r) < 5) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    double t0 = now_ms();
    send(s, cmd(PD_CMD_PAUSE));
    wait_for(s, r, PD_EV_PAUSED, NULL);
    double pause_latency = now_ms() - t0;
    size_t before = r->n;
    struct pd_event ev;
    double t1 = now_ms();
    while (now_ms() - t1 < 300) {
        if (pd_session_wait(s, &ev, 50)) {
            record(r, &ev);
            pd_event_free(&ev);
        }
    }
    assert_int_equal(r->n, before); /* nothing generated while paused */
    assert_true(pd_session_running(s));
    send(s, cmd(PD_CMD_RESUME));
    wait_for(s, r, PD_EV_RESUMED, NULL);
    wait_for(s, r, PD_EV_TOKEN, NULL);
    assert_true(r->n > before);
    t0 = now_ms();
    send(s, cmd(PD_CMD_STOP));
    wait_for(s, r, PD_EV_FINISHED, NULL);
    double stop_latency = now_ms() - t0;
    assert_string_equal(r->finish, "stopped");
    /* Both answers were waited for as events (wait_for fails after 20 s); the latencies
     * are printed for the record, not asserted (machines are noisy). */
    printf("pause answered in %.1f ms, stop in %.1f ms\n", pause_latency, stop_latency);
    pd_session_close(&s);
    assert_null(s);
    free(r);
}

/* The decode speed counts the time spent generating, not the time paused: after a pause
 * far longer than the generation so far, tok/s stays where it was. The pause is at least
 * 8 times the generation's wall time, so a rate that counted it would fall below 1/9 of
 * the one before; the bound, 1/4, leaves room for a loaded machine slowing the next
 * token (a bound of 1/2 failed once with the whole suite running beside it). */
static void test_tok_per_s_ignores_pauses(void **state)
{
    (void)state;
    struct run *r = calloc(1, sizeof *r);
    struct pd_session *s = open_session(g_model, g_tok, NULL, 0, 2, 8);
    double t0 = now_ms();
    start(s, "the time");
    struct pd_event ev;
    double before = 0;
    while (count_generated(r) < 30) {
        wait_for(s, r, PD_EV_TOKEN, &ev);
        before = ev.tok_per_s;
        pd_event_free(&ev);
    }
    double gen_ms = now_ms() - t0;
    send(s, cmd(PD_CMD_PAUSE));
    wait_for(s, r, PD_EV_PAUSED, NULL);
    double pause_ms = 8 * gen_ms > 1000 ? 8 * gen_ms : 1000;
    pause_ms = pause_ms < 60000 ? pause_ms : 60000;
    struct timespec d = {(time_t)(pause_ms / 1000), (long)(fmod(pause_ms, 1000) * 1e6)};
    nanosleep(&d, NULL);
    send(s, cmd(PD_CMD_RESUME));
    wait_for(s, r, PD_EV_RESUMED, NULL);
    wait_for(s, r, PD_EV_TOKEN, &ev);
    double after = ev.tok_per_s;
    pd_event_free(&ev);
    printf("tok/s %.1f before a pause of %.0f ms (30 tokens in %.0f ms), %.1f after it\n",
           before, pause_ms, gen_ms, after);
    assert_true(before > 0 && after > 0.25 * before);
    send(s, cmd(PD_CMD_STOP));
    wait_for(s, r, PD_EV_FINISHED, NULL);
    pd_session_close(&s);
    free(r);
}

static void expect_injected(const struct run *r, size_t from, const char *text)
{
    int32_t *ids = NULL;
    size_t n = 0;
    struct pd_err err;
    assert_int_equal(pd_tok_encode_cont(g_tok, text, strlen(text), true, &ids, &n, &err),
                     PD_OK);
    assert_true(n > 0);
    size_t i = from;
    while (i < r->n && r->role[i] != PD_ROLE_INJECTED) {
        i++;
    }
    assert_true(i + n <= r->n);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(r->role[i + k], PD_ROLE_INJECTED);
        assert_int_equal(r->id[i + k], ids[k]);
    }
    free(ids);
}

static void test_inject_and_answer_now(void **state)
{
    (void)state;
    struct run *r = calloc(1, sizeof *r);
    struct pd_session *s = open_session(g_model, g_tok, NULL, 0, 1, 8);
    start(s, "the time");
    while (count_generated(r) < 4) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    /* No template: the completion counts as thinking until the close marker. */
    assert_int_equal(r->role[r->n - 1], PD_ROLE_THINK);
    send(s, cmd(PD_CMD_PAUSE));
    wait_for(s, r, PD_EV_PAUSED, NULL);
    size_t mark = r->n;
    struct pd_cmd c = cmd(PD_CMD_INJECT);
    snprintf(c.text, sizeof c.text, " and then");
    send(s, c);
    send(s, cmd(PD_CMD_RESUME));
    while (r->n < mark + 8) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    expect_injected(r, mark, " and then");
    mark = r->n;
    send(s, cmd(PD_CMD_ANSWER_NOW));
    wait_for(s, r, PD_EV_MODE, NULL);
    while (r->n < mark + 40) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    expect_injected(r, mark, "\n</think>\n\n");
    /* Everything the model generates after the injected close marker is the answer. */
    size_t last_inj = 0;
    for (size_t i = mark; i < r->n; i++) {
        if (r->role[i] == PD_ROLE_INJECTED) {
            last_inj = i;
        }
    }
    assert_true(last_inj + 1 < r->n);
    for (size_t i = last_inj + 1; i < r->n; i++) {
        assert_int_equal(r->role[i], PD_ROLE_ANSWER);
    }
    pd_session_close(&s);
    free(r);
}

static void test_branch(void **state)
{
    (void)state;
    struct run *r = calloc(1, sizeof *r);
    struct pd_session *s = open_session(g_model, g_tok, NULL, 0, 1, 8);
    start(s, "the time");
    while (count_generated(r) < 20) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    send(s, cmd(PD_CMD_PAUSE));
    wait_for(s, r, PD_EV_PAUSED, NULL);
    size_t n0 = r->n;
    int32_t orig[MAX_TOK];
    memcpy(orig, r->id, n0 * sizeof *orig);
    /* Resample from position 10: greedy gives back the same tokens. */
    struct pd_cmd c = cmd(PD_CMD_BRANCH);
    c.pos = 10;
    send(s, c);
    send(s, cmd(PD_CMD_RESUME));
    struct pd_event ev;
    wait_for(s, r, PD_EV_BRANCHED, &ev);
    assert_int_equal(ev.pos, 10);
    pd_event_free(&ev);
    size_t b0 = r->n;
    while (r->n < b0 + 5) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    for (size_t k = 0; k < 5; k++) {
        assert_int_equal(r->pos[b0 + k], 10 + (int64_t)k);
        assert_int_equal(r->id[b0 + k], orig[10 + k]);
        assert_int_equal(r->role[b0 + k], PD_ROLE_THINK);
    }
    /* Steer with an alternative token at position 12. */
    send(s, cmd(PD_CMD_PAUSE));
    wait_for(s, r, PD_EV_PAUSED, NULL);
    c.pos = 12;
    c.token = (orig[12] + 1) % (int32_t)g_model->hp.n_vocab;
    send(s, c);
    send(s, cmd(PD_CMD_RESUME));
    wait_for(s, r, PD_EV_BRANCHED, NULL);
    wait_for(s, r, PD_EV_TOKEN, NULL);
    assert_int_equal(r->pos[r->n - 1], 12);
    assert_int_equal(r->id[r->n - 1], c.token);
    /* An out-of-range fork is refused and the session goes on. */
    c.pos = 100000;
    c.token = -1;
    send(s, c);
    wait_for(s, r, PD_EV_MODE, NULL);
    wait_for(s, r, PD_EV_TOKEN, NULL);
    pd_session_close(&s);
    free(r);
}

static bool blob_has_pos_in(const struct pd_event *ev, int64_t b, int64_t e)
{
    struct pd_attn_view v;
    assert_true(pd_attn_blob_layout(ev->tok.attn, ev->tok.attn_len, &v));
    for (uint32_t il = 0; il < v.n_layer; il++) {
        for (uint32_t k = 0; k < v.n_top; k++) {
            uint32_t pos;
            float w;
            if (pd_attn_view_entry(&v, il, k, &pos, &w) &&
                (int64_t)pos >= b && (int64_t)pos < e) {
                return true;
            }
        }
    }
    return false;
}

static void test_prune_cache(void **state)
{
    (void)state;
    struct run *r = calloc(1, sizeof *r);
    struct pd_session *s = open_session(g_model, g_tok, NULL, 0, 1, 64);
    start(s, "the time");
    while (count_generated(r) < 20) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    send(s, cmd(PD_CMD_PAUSE));
    wait_for(s, r, PD_EV_PAUSED, NULL);
    struct pd_cmd c = cmd(PD_CMD_PRUNE);
    c.pos = 5;
    c.pos_end = 12;
    send(s, c);
    send(s, cmd(PD_CMD_RESUME));
    struct pd_event ev;
    wait_for(s, r, PD_EV_PRUNED, &ev);
    assert_string_equal(ev.text, "cache");
    pd_event_free(&ev);
    /* 64 summary entries cover the whole cache: no later token attends to 5..11. */
    int seen = 0;
    double t0 = now_ms();
    while (seen < 10 && now_ms() - t0 < 20000) {
        if (!pd_session_wait(s, &ev, 200)) {
            continue;
        }
        if (ev.kind == PD_EV_TOKEN) {
            assert_non_null(ev.tok.attn);
            assert_false(blob_has_pos_in(&ev, 5, 12));
            assert_true(blob_has_pos_in(&ev, 0, 5)); /* the rest is still there */
            seen++;
        }
        pd_event_free(&ev);
    }
    assert_int_equal(seen, 10);
    pd_session_close(&s);
    free(r);
}

static void test_prune_reencode_equals_fresh_run(void **state)
{
    (void)state;
    struct run *r = calloc(1, sizeof *r);
    struct pd_session *s = open_session(g_model, g_tok, NULL, 0, 1, 8);
    start(s, "the time");
    while (count_generated(r) < 20) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    send(s, cmd(PD_CMD_PAUSE));
    wait_for(s, r, PD_EV_PAUSED, NULL);
    size_t n0 = r->n;
    int32_t pruned[MAX_TOK];
    size_t np = 0;
    for (size_t i = 0; i < n0; i++) {
        if (i < 6 || i >= 14) {
            pruned[np++] = r->id[i];
        }
    }
    struct pd_cmd c = cmd(PD_CMD_PRUNE);
    c.pos = 6;
    c.pos_end = 14;
    c.reencode = true;
    send(s, c);
    send(s, cmd(PD_CMD_RESUME));
    wait_for(s, r, PD_EV_PRUNED, NULL);
    size_t m0 = r->n;
    while (r->n < m0 + 15) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    pd_session_close(&s);
    /* A fresh session on the pruned text, greedy, 15 tokens. */
    struct run *f = calloc(1, sizeof *f);
    s = open_session(g_model, g_tok, NULL, 15, 0, 8);
    struct pd_err err;
    assert_int_equal(pd_session_start_tokens(s, pruned, np, &err), PD_OK);
    run_to_end(s, f);
    pd_session_close(&s);
    assert_int_equal(f->n, np + 15);
    for (size_t k = 0; k < 15; k++) {
        assert_int_equal(r->pos[m0 + k], (int64_t)(np + k)); /* renumbered */
        assert_int_equal(r->id[m0 + k], f->id[np + k]);
    }
    free(r);
    free(f);
}

static void test_modes(void **state)
{
    (void)state;
    /* short:8 with no template: after 8 thinking tokens the close marker is injected and
     * the rest is the answer. */
    struct pd_session_params p = pd_session_default_params();
    p.ctx.n_ctx = 256;
    p.ctx.kv_type = PD_KV_F32;
    p.n_predict = 40;
    p.mode = PD_MODE_SHORT;
    p.think_budget = 8;
    struct pd_session *s = NULL;
    struct pd_err err;
    assert_int_equal(pd_session_open(g_model, g_tok, &p, &s, &err), PD_OK);
    start(s, "the time");
    struct run *r = calloc(1, sizeof *r);
    run_to_end(s, r);
    pd_session_close(&s);
    size_t think = 0, first_answer = 0;
    for (size_t i = 0; i < r->n; i++) {
        think += r->role[i] == PD_ROLE_THINK;
        if (r->role[i] == PD_ROLE_ANSWER && !first_answer) {
            first_answer = i;
        }
    }
    assert_int_equal(think, 8);
    assert_true(first_answer > 0);
    assert_int_equal(r->role[first_answer - 1], PD_ROLE_INJECTED);
    free(r);
    /* Bad mode strings are named. */
    enum pd_think_mode m;
    uint32_t b;
    assert_int_equal(pd_think_mode_parse("short:12", &m, &b, &err), PD_OK);
    assert_int_equal(m, PD_MODE_SHORT);
    assert_int_equal(b, 12);
    assert_int_equal(pd_think_mode_parse("none:3", &m, &b, &err), PD_EINVAL);
    assert_int_equal(pd_think_mode_parse("medium", &m, &b, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "medium"));
}

/* ---- the thinking controller in the live loop ---------------------------------------- */

/* A --constant model (always chooses `piece`) with the deepseek-r1 template, so thinking
 * is open from the first generated token. */
static void open_constant(const char *piece, struct pd_model **m, struct pd_tok **t,
                          struct pd_chat_format *chat)
{
    char path[512];
    snprintf(path, sizeof path, "%s/const-%s.gguf", g_tmp, piece[0] == '<' ? "close" : "word");
    const char *args[] = {"--arch", "llama", "--vocab", "bpe", "--chat-template", "deepseek-r1",
                          "--constant", piece, NULL};
    assert_int_equal(test_mkmodel(args, path), 0);
    struct pd_err err;
    if (pd_model_open(path, m, &err) || pd_tok_open_gguf((*m)->gguf, t, &err) ||
        pd_chat_detect((*m)->gguf, chat, &err)) {
        fail_msg("%s", err.msg);
    }
    assert_int_equal(chat->family, PD_CHAT_FAMILY_DEEPSEEK_R1);
}

/* Generated tokens and the MODE event texts of a run, in order. */
struct trail {
    enum pd_role role[256];
    char text[256][16];
    size_t n;
    char modes[32][64];
    size_t n_modes;
    size_t n_think_at_pause;
};

static void trail_add(struct trail *tr, const struct pd_event *ev)
{
    if (ev->kind == PD_EV_TOKEN && ev->tok.role != PD_ROLE_PROMPT && tr->n < 256) {
        tr->role[tr->n] = ev->tok.role;
        snprintf(tr->text[tr->n], sizeof tr->text[0], "%.*s", (int)ev->tok.text_len,
                 ev->tok.text ? ev->tok.text : "");
        tr->n++;
    } else if (ev->kind == PD_EV_MODE && tr->n_modes < 32) {
        snprintf(tr->modes[tr->n_modes++], sizeof tr->modes[0], "%s", ev->text);
    }
}

/* Reads events into tr until one of `kind` (included); fails after 20 s. */
static void trail_until(struct pd_session *s, struct trail *tr, enum pd_event_kind kind)
{
    double t0 = now_ms();
    for (;;) {
        if (now_ms() - t0 > 20000) {
            fail_msg("timed out waiting for event %d", (int)kind);
        }
        struct pd_event ev;
        if (!pd_session_wait(s, &ev, 200)) {
            continue;
        }
        trail_add(tr, &ev);
        bool hit = ev.kind == kind;
        assert_true(ev.kind != PD_EV_ERROR);
        pd_event_free(&ev);
        if (hit) {
            return;
        }
    }
}

static size_t trail_count(const struct trail *tr, enum pd_role role)
{
    size_t n = 0;
    for (size_t i = 0; i < tr->n; i++) {
        n += tr->role[i] == role;
    }
    return n;
}

static size_t trail_modes(const struct trail *tr, const char *text)
{
    size_t n = 0;
    for (size_t i = 0; i < tr->n_modes; i++) {
        n += strcmp(tr->modes[i], text) == 0;
    }
    return n;
}

/* Injected text from token i on, up to the next non-injected token. */
static void trail_injected(const struct trail *tr, size_t i, char *out, size_t cap)
{
    out[0] = '\0';
    for (; i < tr->n && tr->role[i] == PD_ROLE_INJECTED; i++) {
        strncat(out, tr->text[i], cap - strlen(out) - 1);
    }
}

static struct pd_session *open_mode_session(struct pd_model *m, struct pd_tok *t,
                                            const struct pd_chat_format *chat,
                                            enum pd_think_mode mode, uint32_t param,
                                            uint32_t n_predict, double throttle_ms)
{
    struct pd_session_params p = pd_session_default_params();
    p.ctx.n_ctx = 256;
    p.ctx.kv_type = PD_KV_F32;
    p.n_predict = n_predict;
    p.throttle_ms = throttle_ms;
    p.chat = *chat;
    p.mode = mode;
    p.think_budget = mode == PD_MODE_SHORT ? param : 0;
    p.min_think = mode == PD_MODE_LONG ? param : 0;
    struct pd_session *s = NULL;
    struct pd_err err;
    if (pd_session_open(m, t, &p, &s, &err)) {
        fail_msg("%s", err.msg);
    }
    start(s, "hi");
    return s;
}

/* Minimum thinking: a model that ends thinking at once has every "</think>" replaced by
 * the family's "Wait" while fewer than MIN thinking tokens exist; without a minimum its
 * first "</think>" stands and the rest is the answer. */
static void test_min_think_wait(void **state)
{
    (void)state;
    struct pd_model *m = NULL;
    struct pd_tok *t = NULL;
    struct pd_chat_format chat;
    open_constant("</think>", &m, &t, &chat);
    struct trail *tr = calloc(1, sizeof *tr);
    struct pd_session *s = open_mode_session(m, t, &chat, PD_MODE_LONG, 4, 12, 0);
    trail_until(s, tr, PD_EV_FINISHED);
    pd_session_close(&s);
    assert_int_equal(tr->n, 12);
    assert_int_equal(trail_count(tr, PD_ROLE_INJECTED), 12); /* nothing the model chose stays */
    assert_int_equal(trail_modes(tr, "minimum thinking: Wait"), 3);
    char inj[256];
    trail_injected(tr, 0, inj, sizeof inj);
    assert_string_equal(inj, "WaitWaitWait");
    memset(tr, 0, sizeof *tr);
    s = open_mode_session(m, t, &chat, PD_MODE_LONG, 0, 4, 0);
    trail_until(s, tr, PD_EV_FINISHED);
    pd_session_close(&s);
    assert_int_equal(tr->n, 4);
    assert_int_equal(tr->role[0], PD_ROLE_THINK);
    assert_string_equal(tr->text[0], "</think>");
    for (size_t i = 1; i < tr->n; i++) {
        assert_int_equal(tr->role[i], PD_ROLE_ANSWER);
    }
    assert_int_equal(trail_modes(tr, "minimum thinking: Wait"), 0);
    free(tr);
    pd_tok_close(&t);
    pd_model_close(&m);
}

/* A mode change sent while paused takes effect on the first token after resume: switching
 * to short with the budget already spent, or to none, lets exactly one more thinking token
 * through, then the end marker is injected and the model answers. */
static void mode_switch(struct pd_model *m, struct pd_tok *t, const struct pd_chat_format *chat,
                        enum pd_think_mode to, uint32_t param, const char *want_mode,
                        const char *want_close)
{
    struct trail *tr = calloc(1, sizeof *tr);
    struct pd_session *s = open_mode_session(m, t, chat, PD_MODE_LONG, 0, 40, 1);
    while (trail_count(tr, PD_ROLE_THINK) < 5) {
        trail_until(s, tr, PD_EV_TOKEN);
    }
    send(s, cmd(PD_CMD_PAUSE));
    trail_until(s, tr, PD_EV_PAUSED);
    size_t think = trail_count(tr, PD_ROLE_THINK), n_before = tr->n;
    assert_true(think >= 5);
    assert_int_equal(trail_count(tr, PD_ROLE_INJECTED), 0);
    struct pd_cmd c = cmd(PD_CMD_SET_MODE);
    c.mode = to;
    c.budget = param;
    c.close_thinking = true;
    send(s, c);
    trail_until(s, tr, PD_EV_MODE);
    assert_string_equal(tr->modes[tr->n_modes - 1], want_mode);
    assert_int_equal(tr->n, n_before); /* nothing happens while paused */
    send(s, cmd(PD_CMD_RESUME));
    trail_until(s, tr, PD_EV_FINISHED);
    pd_session_close(&s);
    assert_int_equal(trail_count(tr, PD_ROLE_THINK), think + 1);
    assert_int_equal(tr->role[n_before], PD_ROLE_THINK);
    char inj[256];
    trail_injected(tr, n_before + 1, inj, sizeof inj);
    assert_string_equal(inj, "\n</think>\n\n");
    assert_int_equal(trail_modes(tr, want_close), 1);
    assert_int_equal(tr->role[tr->n - 1], PD_ROLE_ANSWER);
    free(tr);
}

static void test_mode_switch_midstream(void **state)
{
    (void)state;
    struct pd_model *m = NULL;
    struct pd_tok *t = NULL;
    struct pd_chat_format chat;
    open_constant("\xc4\xa0the", &m, &t, &chat);
    mode_switch(m, t, &chat, PD_MODE_SHORT, 2, "short:2", "thinking budget reached");
    mode_switch(m, t, &chat, PD_MODE_NONE, 0, "none", "mode none: thinking ends");
    /* short from the start: exactly the budget of thinking tokens */
    struct trail *tr = calloc(1, sizeof *tr);
    struct pd_session *s = open_mode_session(m, t, &chat, PD_MODE_SHORT, 3, 12, 0);
    trail_until(s, tr, PD_EV_FINISHED);
    pd_session_close(&s);
    assert_int_equal(trail_count(tr, PD_ROLE_THINK), 3);
    char inj[256];
    trail_injected(tr, 3, inj, sizeof inj);
    assert_string_equal(inj, "\n</think>\n\n");
    free(tr);
    pd_tok_close(&t);
    pd_model_close(&m);
}

/* The KV budget command: the policy's budget changes live (no layer holds more slots
 * afterwards); without a policy, or with budget 0, the command is refused by name and
 * the run goes on. */
static void test_kv_budget_command(void **state)
{
    (void)state;
    struct pd_session *s = open_session(g_model, g_tok, "window:200", 120, 1, 8);
    start(s, "the time");
    struct run *r = calloc(1, sizeof *r);
    while (count_generated(r) < 30) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    struct pd_cmd c = cmd(PD_CMD_SET_BUDGET);
    c.budget = 16;
    send(s, c);
    struct pd_event ev;
    wait_for(s, r, PD_EV_MODE, &ev);
    assert_string_equal(ev.text, "kv budget 16");
    pd_event_free(&ev);
    /* From the next token on, no layer holds more than the new budget. */
    wait_for(s, r, PD_EV_TOKEN, NULL);
    size_t seen = 0;
    for (;;) {
        wait_for(s, r, PD_EV_TOKEN, &ev);
        assert_true(ev.kv_used <= 16);
        pd_event_free(&ev);
        if (++seen == 20) {
            break;
        }
    }
    assert_true(r->n_evict > 0);
    c.budget = 0;
    send(s, c);
    wait_for(s, r, PD_EV_MODE, &ev);
    assert_string_equal(ev.text, "KV budget must be at least 1 slot");
    pd_event_free(&ev);
    send(s, cmd(PD_CMD_STOP));
    wait_for(s, r, PD_EV_FINISHED, NULL);
    pd_session_close(&s);
    memset(r, 0, sizeof *r);
    s = open_session(g_model, g_tok, NULL, 0, 1, 8);
    start(s, "the time");
    wait_for(s, r, PD_EV_TOKEN, NULL);
    c.budget = 16;
    send(s, c);
    wait_for(s, r, PD_EV_MODE, &ev);
    assert_string_equal(ev.text, "no KV policy to set a budget for");
    pd_event_free(&ev);
    wait_for(s, r, PD_EV_TOKEN, NULL); /* still running */
    send(s, cmd(PD_CMD_STOP));
    wait_for(s, r, PD_EV_FINISHED, NULL);
    pd_session_close(&s);
    free(r);
}

static void test_attention_recompute(void **state)
{
    (void)state;
    struct run *r = calloc(1, sizeof *r);
    struct pd_session *s = open_session(g_model, g_tok, "window:12", 0, 1, 8);
    start(s, "the time");
    while (count_generated(r) < 20) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    /* Token 10's rows over its full prefix, although the window evicted most of it. */
    struct pd_cmd c = cmd(PD_CMD_ATTN);
    c.pos = 10;
    send(s, c);
    struct pd_event ev;
    wait_for(s, r, PD_EV_ATTN, &ev);
    assert_int_equal(ev.pos, 10);
    assert_non_null(ev.rows);
    assert_int_equal(ev.rows->n_layer, g_model->hp.n_layer);
    assert_int_equal(ev.rows->n_head, g_model->hp.n_head);
    for (uint32_t l = 0; l < ev.rows->n_layer; l++) {
        assert_int_equal(ev.rows->n_slots[l], 11);
        for (uint32_t h = 0; h < ev.rows->n_head; h++) {
            double sum = 0;
            for (uint32_t k = 0; k < 11; k++) {
                assert_int_equal(ev.rows->slot_pos[l][k], k);
                sum += ev.rows->w[l][h * 11 + k];
            }
            assert_float_equal(sum, 1.0, 1e-5);
        }
    }
    pd_event_free(&ev);
    pd_session_close(&s);
    /* With a full cache the recomputed rows are the ones the live token attended with: their
     * head mean equals the token's summary, which holds whole rows here (top_n 64 > the
     * 11 slots) and was captured while it was decoded one token at a time. */
    memset(r, 0, sizeof *r);
    s = open_session(g_model, g_tok, NULL, 0, 1, 64);
    start(s, "the time");
    uint8_t *blob = NULL;
    size_t blob_len = 0;
    while (!blob) {
        wait_for(s, r, PD_EV_TOKEN, &ev);
        if (ev.tok.pos == 10) {
            assert_int_equal(ev.tok.role, PD_ROLE_THINK); /* generated, not the prompt */
            blob = ev.tok.attn;
            blob_len = ev.tok.attn_len;
            ev.tok.attn = NULL;
        }
        pd_event_free(&ev);
    }
    assert_non_null(blob);
    send(s, cmd(PD_CMD_PAUSE));
    wait_for(s, r, PD_EV_PAUSED, NULL);
    c = cmd(PD_CMD_ATTN);
    c.pos = 10;
    send(s, c);
    wait_for(s, r, PD_EV_ATTN, &ev);
    struct pd_attn_view v;
    assert_true(pd_attn_blob_layout(blob, blob_len, &v));
    assert_int_equal(v.n_layer, ev.rows->n_layer);
    uint32_t checked = 0;
    for (uint32_t l = 0; l < v.n_layer; l++) {
        for (uint32_t k = 0; k < v.n_top; k++) {
            uint32_t pos;
            float w;
            if (!pd_attn_view_entry(&v, l, k, &pos, &w)) {
                continue;
            }
            assert_true(pos <= 10);
            double mean = 0;
            for (uint32_t h = 0; h < ev.rows->n_head; h++) {
                mean += ev.rows->w[l][h * 11 + pos];
            }
            mean /= ev.rows->n_head;
            assert_float_equal(mean, w, 1e-4);
            checked++;
        }
    }
    assert_int_equal(checked, v.n_layer * 11);
    free(blob);
    pd_event_free(&ev);
    pd_session_close(&s);
    free(r);
}

/* Runs a keep_alive session of model m with a window policy and live steps to the end of
 * its first leg (at most n tokens), collecting the generated ids and step starts (up to
 * cap each). */
static struct pd_session *run_history(struct pd_model *m, struct pd_tok *tok, bool no_history,
                                      uint32_t n, int32_t *ids,
                                      int64_t *steps, size_t cap, size_t *n_ids,
                                      size_t *n_steps, struct pd_steps_live **obs)
{
    struct pd_err err;
    assert_int_equal(pd_steps_live_open(NULL, obs, &err), PD_OK);
    if (no_history) {
        pd_steps_live_no_rewind(*obs);
    }
    struct pd_session_params p = pd_session_default_params();
    p.ctx.n_ctx = n + 64; /* the shadow policy evicts nothing: room for every token */
    p.ctx.n_threads = 2;
    p.ctx.kv_type = PD_KV_F32;
    p.n_predict = n;
    p.keep_alive = true;
    p.no_history = no_history;
    p.no_history_keep = 64; /* so that a few hundred tokens slide the kept ids */
    p.sampling.seed = 7;
    p.steps = pd_steps_live_iface(*obs);
    if (pd_policy_create_str("window:128,shadow", (int32_t)m->hp.n_layer, 0, &p.policy, &err)) {
        fail_msg("%s", err.msg);
    }
    struct pd_session *s = NULL;
    assert_int_equal(pd_session_open(m, tok, &p, &s, &err), PD_OK);
    start(s, "the time");
    *n_ids = *n_steps = 0;
    double t0 = now_ms();
    for (;;) {
        struct pd_event ev;
        assert_true(now_ms() - t0 < 120000);
        if (!pd_session_wait(s, &ev, 200)) {
            continue;
        }
        enum pd_event_kind k = ev.kind;
        if (k == PD_EV_TOKEN && ev.tok.role != PD_ROLE_PROMPT && *n_ids < cap) {
            ids[(*n_ids)++] = ev.tok.id;
        }
        if (k == PD_EV_STEP && *n_steps < cap) {
            steps[(*n_steps)++] = ev.pos;
        }
        assert_true(k != PD_EV_ERROR);
        pd_event_free(&ev);
        if (k == PD_EV_FINISHED) {
            return s;
        }
    }
}

/* Waits for the next PD_EV_MODE (a refused command's message) and checks its text. */
static void expect_refusal(struct pd_session *s, const char *want)
{
    struct run *r = calloc(1, sizeof *r);
    struct pd_event ev;
    wait_for(s, r, PD_EV_MODE, &ev);
    assert_string_equal(ev.text, want);
    pd_event_free(&ev);
    free(r);
}

/* no_history: the same tokens and step starts as a session with history; on a model that
 * never ends its text, a generation several times longer than the ids it keeps (64 here)
 * runs on, shadow divergence still works on the newest token, and branch, prune and
 * attention recompute are refused with the reason. */
static void test_no_history(void **state)
{
    (void)state;
    enum { N = 600 };
    int32_t *ids[2];
    int64_t *steps[2];
    size_t n_ids[2], n_steps[2];
    struct pd_steps_live *obs[2];
    struct pd_session *s[2];
    for (int k = 0; k < 2; k++) {
        ids[k] = calloc(N, sizeof *ids[k]);
        steps[k] = calloc(N, sizeof *steps[k]);
        s[k] = run_history(g_model, g_tok, k == 1, 300, ids[k], steps[k], N, &n_ids[k],
                           &n_steps[k], &obs[k]);
    }
    assert_int_equal(n_ids[0], n_ids[1]);
    assert_true(n_ids[0] > 100);
    assert_memory_equal(ids[0], ids[1], n_ids[0] * sizeof *ids[0]);
    assert_int_equal(n_steps[0], n_steps[1]);
    assert_memory_equal(steps[0], steps[1], n_steps[0] * sizeof *steps[0]);
    for (int k = 0; k < 2; k++) {
        pd_session_close(&s[k]);
        pd_steps_live_close(&obs[k]);
    }
    /* past the kept window */
    char path[512];
    snprintf(path, sizeof path, "%s/session-constant.gguf", g_tmp);
    const char *args[] = {"--arch", "llama", "--vocab", "bpe", "--constant", "\xc4\xa0the", NULL};
    assert_int_equal(test_mkmodel(args, path), 0);
    struct pd_model *m = NULL;
    struct pd_tok *tok = NULL;
    struct pd_err err;
    assert_int_equal(pd_model_open(path, &m, &err), PD_OK);
    assert_int_equal(pd_tok_open_gguf(m->gguf, &tok, &err), PD_OK);
    struct pd_session *c1 = run_history(m, tok, true, N, ids[1], steps[1], N, &n_ids[1],
                                        &n_steps[1], &obs[1]);
    assert_int_equal(n_ids[1], N);
    struct pd_event ev;
    struct run *r = calloc(1, sizeof *r);
    send(c1, cmd(PD_CMD_DIVERGENCE));
    wait_for(c1, r, PD_EV_DIVERGENCE, &ev);
    assert_true(ev.kl_bits >= 0);
    pd_event_free(&ev);
    struct pd_cmd c = cmd(PD_CMD_BRANCH);
    c.pos = 100;
    send(c1, c);
    expect_refusal(c1, "branch: this session keeps no token history");
    c = cmd(PD_CMD_PRUNE);
    c.pos = 500;
    c.pos_end = 510;
    send(c1, c);
    expect_refusal(c1, "prune: this session keeps no token history");
    c = cmd(PD_CMD_ATTN);
    c.pos = 500;
    send(c1, c);
    expect_refusal(c1, "attention: this session keeps no token history");
    c = cmd(PD_CMD_CONTINUE); /* and it goes on */
    send(c1, c);
    wait_for(c1, r, PD_EV_TOKEN, NULL);
    pd_session_close(&c1);
    pd_steps_live_close(&obs[1]);
    pd_tok_close(&tok);
    pd_model_close(&m);
    for (int k = 0; k < 2; k++) {
        free(ids[k]);
        free(steps[k]);
    }
    free(r);
}

static void test_step_events(void **state)
{
    (void)state;
    struct pd_steps_live *obs = NULL;
    struct pd_err err;
    assert_int_equal(pd_steps_live_open(NULL, &obs, &err), PD_OK);
    struct pd_session_params p = pd_session_default_params();
    p.ctx.n_ctx = 256;
    p.throttle_ms = 1;
    p.summary_top_n = 64; /* more than the slots: the summary holds whole rows */
    p.steps = pd_steps_live_iface(obs);
    struct pd_session *s = NULL;
    assert_int_equal(pd_session_open(g_model, g_tok, &p, &s, &err), PD_OK);
    start(s, "the time");
    struct run *r = calloc(1, sizeof *r);
    struct pd_event ev;
    wait_for(s, r, PD_EV_STEP, &ev); /* the first step opens with the first thought */
    int64_t first = ev.pos;
    pd_event_free(&ev);
    while (count_generated(r) < 6) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    assert_int_equal(first, r->pos[r->n - count_generated(r)]);
    send(s, cmd(PD_CMD_PAUSE));
    wait_for(s, r, PD_EV_PAUSED, NULL);
    size_t mark = r->n;
    struct pd_cmd c = cmd(PD_CMD_INJECT);
    snprintf(c.text, sizeof c.text, " done.\n\nSo then we see");
    send(s, c);
    send(s, cmd(PD_CMD_RESUME));
    wait_for(s, r, PD_EV_STEP, &ev);
    /* The new step begins at the injected token that holds the 'S'. */
    size_t i = mark;
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(pd_tok_encode_cont(g_tok, c.text, strlen(c.text), true, &ids, &n, &err),
                     PD_OK);
    size_t k = 0, off = 0;
    for (; k < n; k++) {
        size_t len;
        const char *piece = pd_tok_piece(g_tok, ids[k], &len);
        if (memchr(piece, 'S', len) && off + len > strlen(" done.\n\n")) {
            break;
        }
        off += len;
    }
    assert_true(k < n);
    while (i < r->n && r->role[i] != PD_ROLE_INJECTED) {
        i++;
    }
    assert_int_equal(ev.pos, r->pos[i] + (int64_t)k);
    int64_t second = ev.pos;
    pd_event_free(&ev);
    free(ids);
    /* Later tokens' summaries carry their attention mass on both steps (version 3, full
     * cache: both listed, with their extents); with every slot in the summary, the masses
     * equal the entries summed per step. */
    int checked = 0;
    double t0 = now_ms();
    while (checked < 5 && now_ms() - t0 < 20000) {
        if (!pd_session_wait(s, &ev, 200)) {
            continue;
        }
        if (ev.kind == PD_EV_TOKEN && ev.tok.attn && ev.tok.attn[0] == 3) {
            struct pd_attn_view v;
            assert_true(pd_attn_blob_layout(ev.tok.attn, ev.tok.attn_len, &v));
            uint32_t nl = v.n_layer;
            assert_true(v.n_steps == 1 || v.n_steps == 2);
            if (v.n_steps == 1) { /* the token whose arrival announced the step came before it */
                pd_event_free(&ev);
                continue;
            }
            double want[2] = {0, 0};
            for (uint32_t l = 0; l < nl; l++) {
                for (uint32_t e = 0; e < v.n_top; e++) {
                    uint32_t pos;
                    float w;
                    if (pd_attn_view_entry(&v, l, e, &pos, &w) &&
                        (int64_t)pos >= first) {
                        want[(int64_t)pos >= second ? 1 : 0] += w / nl;
                    }
                }
            }
            assert_int_equal(v.n_known, 2);
            assert_int_equal(pd_attn_view_first_step(&v), first);
            assert_int_equal(pd_attn_view_step_begin(&v, 0), first);
            assert_int_equal(pd_attn_view_step_end(&v, 0), second);
            assert_int_equal(pd_attn_view_step_begin(&v, 1), second);
            assert_int_equal(pd_attn_view_step_end(&v, 1), ev.pos + 1);
            for (uint32_t k2 = 0; k2 < 2; k2++) {
                assert_float_equal(pd_attn_view_step_mass(&v, k2), want[k2], 1e-5);
            }
            checked++;
        }
        pd_event_free(&ev);
    }
    assert_int_equal(checked, 5);
    pd_session_close(&s);
    pd_steps_live_close(&obs);
    free(r);
}

/* Switching policies mid-run: enforce a window, then go back to the full cache, then
 * shadow h2o; evictions follow whichever policy is installed. */
static void test_set_policy(void **state)
{
    (void)state;
    struct run *r = calloc(1, sizeof *r);
    struct pd_session *s = open_session(g_model, g_tok, NULL, 0, 1, 8);
    start(s, "the time");
    while (count_generated(r) < 20) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    assert_int_equal(r->n_evict, 0);
    struct pd_err err;
    struct pd_cmd c = cmd(PD_CMD_SET_POLICY);
    assert_int_equal(pd_policy_create_str("window:12", (int32_t)g_model->hp.n_layer, 0,
                                            &c.policy, &err),
                     PD_OK);
    send(s, c);
    struct pd_event ev;
    wait_for(s, r, PD_EV_MODE, &ev);
    assert_non_null(strstr(ev.text, "window"));
    pd_event_free(&ev);
    size_t mark = r->n;
    while (r->n < mark + 5) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    assert_true(r->n_evict > 0); /* the window trimmed the cache to 12 slots */
    size_t ev_before = r->n_evict;
    c = cmd(PD_CMD_SET_POLICY); /* policy NULL: back to the full cache */
    send(s, c);
    wait_for(s, r, PD_EV_MODE, NULL);
    mark = r->n;
    while (r->n < mark + 5) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    /* a few evictions may have been queued before the switch took effect */
    size_t ev_after_full = r->n_evict;
    mark = r->n;
    while (r->n < mark + 5) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    assert_int_equal(r->n_evict, ev_after_full);
    assert_true(ev_after_full >= ev_before);
    c = cmd(PD_CMD_SET_POLICY);
    assert_int_equal(pd_policy_create_str("h2o:8,shadow", (int32_t)g_model->hp.n_layer, 0,
                                            &c.policy, &err),
                     PD_OK);
    send(s, c);
    wait_for(s, r, PD_EV_MODE, NULL);
    mark = r->n;
    while (r->n < mark + 5) {
        wait_for(s, r, PD_EV_TOKEN, NULL);
    }
    assert_true(r->n_shadow_evict > 0);
    send(s, cmd(PD_CMD_DIVERGENCE));
    wait_for(s, r, PD_EV_DIVERGENCE, NULL);
    /* A policy for the wrong number of layers is refused, and freed. */
    c = cmd(PD_CMD_SET_POLICY);
    assert_int_equal(pd_policy_create_str("tova:8", (int32_t)g_model->hp.n_layer + 1, 0,
                                            &c.policy, &err),
                     PD_OK);
    send(s, c);
    wait_for(s, r, PD_EV_MODE, &ev);
    assert_non_null(strstr(ev.text, "layers"));
    pd_event_free(&ev);
    /* A policy queued behind a stop is never applied; the session frees it on close, or
     * the send fails and it stays ours (ASan checks there is no leak either way). */
    send(s, cmd(PD_CMD_STOP));
    c = cmd(PD_CMD_SET_POLICY);
    assert_int_equal(pd_policy_create_str("tova:8", (int32_t)g_model->hp.n_layer, 0,
                                            &c.policy, &err),
                     PD_OK);
    if (pd_session_send(s, &c, &err) != PD_OK) {
        pd_kv_policy_close(&c.policy);
    }
    pd_session_close(&s);
    free(r);
}

/* Offline simulation over saved summaries reproduces a live shadow run when the summary
 * holds every slot (top-N >= context), and a window's rule exactly. */
static void test_kvsim(void **state)
{
    (void)state;
    /* Live: h2o:16 in shadow, summaries of 64 entries (more than the 45 positions). */
    struct pd_session *s = open_session(g_model, g_tok, "h2o:16,shadow", 40, 0, 64);
    start(s, "the time");
    struct pd_token_rec toks[64];
    size_t n = 0;
    struct pd_kv_event_rec live[4096];
    size_t n_live = 0;
    struct pd_event ev;
    double t0 = now_ms();
    for (;;) {
        assert_true(now_ms() - t0 < 20000);
        if (!pd_session_wait(s, &ev, 200)) {
            continue;
        }
        bool end = ev.kind == PD_EV_FINISHED || ev.kind == PD_EV_ERROR;
        if (ev.kind == PD_EV_TOKEN && n < 64) {
            toks[n++] = ev.tok; /* takes the owned text and blob */
            memset(&ev.tok, 0, sizeof ev.tok);
        } else if (ev.kind == PD_EV_EVICT && n_live < 4096) {
            live[n_live++] = ev.kv;
        }
        pd_event_free(&ev);
        if (end) {
            break;
        }
    }
    pd_session_close(&s);
    assert_true(n_live > 0);
    struct pd_kv_event_rec *sim = NULL;
    size_t n_sim = 0;
    struct pd_err err;
    assert_int_equal(pd_kvsim_run("h2o:16", toks, n, (int32_t)g_model->hp.n_layer, &sim,
                                  &n_sim, &err),
                     PD_OK);
    /* Same evictions (layer, position) at the same step, allowing rounding to reorder a
     * near tie: at least 95% match exactly. */
    size_t same = 0;
    for (size_t i = 0; i < n_live; i++) {
        for (size_t j = 0; j < n_sim; j++) {
            if (sim[j].layer == live[i].layer && sim[j].slot_pos == live[i].slot_pos &&
                sim[j].at_pos == live[i].at_pos) {
                same++;
                break;
            }
        }
    }
    printf("kvsim: %zu live shadow evictions, %zu simulated, %zu identical\n", n_live, n_sim,
           same);
    assert_true(n_sim >= n_live * 95 / 100 && n_sim <= n_live * 105 / 100 + 1);
    assert_true(same * 100 >= n_live * 95);
    free(sim);
    /* window:12,sinks=4 needs no attention: position p leaves after token p + 8. */
    assert_int_equal(pd_kvsim_run("window:12,sinks=4", toks, n, 2, &sim, &n_sim, &err), PD_OK);
    size_t k = 0;
    for (size_t p = 4; p + 8 < n; p++) {
        for (int32_t l = 0; l < 2; l++, k++) {
            assert_true(k < n_sim);
            assert_int_equal(sim[k].layer, l);
            assert_int_equal(sim[k].slot_pos, (int64_t)p);
            assert_int_equal(sim[k].at_pos, (int64_t)p + 9);
        }
    }
    assert_int_equal(k, n_sim);
    free(sim);
    assert_int_equal(pd_kvsim_run("h2o", toks, n, 2, &sim, &n_sim, &err), PD_EINVAL);
    for (size_t i = 0; i < n; i++) {
        pd_token_rec_free(&toks[i]);
    }
}

/* A consumer that stops reading does not make the queue grow: with full capture (rows on
 * every token) and nothing read, the queue stays within its bounds while the worker
 * waits; reading again lets the run finish, every token delivered once, in order. */
static void test_backpressure(void **state)
{
    (void)state;
    struct pd_model *m = NULL;
    struct pd_tok *t = NULL;
    struct pd_chat_format chat;
    open_constant("\xc4\xa0the", &m, &t, &chat); /* never ends by itself */
    struct pd_session_params p = pd_session_default_params();
    p.ctx.n_ctx = 2048;
    p.ctx.kv_type = PD_KV_F32;
    p.n_predict = 1900;
    p.capture = PD_CAPTURE_LEVEL_FULL;
    p.chat = chat;
    struct pd_session *s = NULL;
    struct pd_err err;
    assert_int_equal(pd_session_open(m, t, &p, &s, &err), PD_OK);
    start(s, "hi");
    size_t n = 0, bytes = 0, most = 0, most_bytes = 0;
    /* Nobody reads until the queue is full (or a generous time has passed). */
    double t0 = now_ms();
    while (now_ms() - t0 < 90000) { /* sanitizer builds on a loaded machine are slow */
        pd_session_queued(s, &n, &bytes);
        assert_true(n <= 1024);
        assert_true(bytes <= (32u << 20) + (1u << 20)); /* one event may top it up */
        most = n > most ? n : most;
        most_bytes = bytes > most_bytes ? bytes : most_bytes;
        if (n == 1024 || bytes > (31u << 20)) {
            break;
        }
        struct timespec d = {0, 2 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    printf("queue held at most %zu events, %.1f MiB while nobody read\n", most,
           most_bytes / 1048576.0);
    assert_true(most == 1024 || most_bytes > (31u << 20)); /* the bound was reached */
    struct timespec d = {0, 50 * 1000 * 1000};
    nanosleep(&d, NULL); /* the worker, if it did not wait, would now overflow it */
    pd_session_queued(s, &n, &bytes);
    assert_true(n <= 1024 && bytes <= (32u << 20) + (1u << 20));
    struct run *r = calloc(1, sizeof *r);
    run_to_end(s, r);
    pd_session_close(&s);
    assert_string_equal(r->finish, "length");
    assert_int_equal(count_generated(r), 1900);
    for (size_t i = 1; i < r->n; i++) {
        assert_int_equal(r->pos[i], r->pos[i - 1] + 1);
    }
    free(r);
    pd_tok_close(&t);
    pd_model_close(&m);
}

static void test_close_while_running(void **state)
{
    (void)state;
    /* Closing a running (or paused) session stops and joins the worker; no leaks. */
    for (int k = 0; k < 3; k++) {
        struct pd_session *s = open_session(g_model, g_tok, "h2o:8", 0, 1, 8);
        start(s, "the time");
        if (k == 1) {
            send(s, cmd(PD_CMD_PAUSE));
        }
        struct pd_event ev;
        if (pd_session_wait(s, &ev, 50)) {
            pd_event_free(&ev);
        }
        pd_session_close(&s);
        assert_null(s);
    }
}

static struct pd_session *open_keep_alive(uint32_t n_predict)
{
    struct pd_session_params p = pd_session_default_params();
    p.ctx.n_ctx = 512;
    p.ctx.n_threads = 2;
    p.ctx.kv_type = PD_KV_F32;
    p.n_predict = n_predict;
    p.keep_alive = true;
    struct pd_err err;
    struct pd_session *s = NULL;
    if (pd_session_open(g_model, g_tok, &p, &s, &err)) {
        fail_msg("%s", err.msg);
    }
    return s;
}

/* Events until the next end (FINISHED), recorded; returns the reason in r->finish. */
static void leg_to_end(struct pd_session *s, struct run *r)
{
    r->finish[0] = '\0';
    run_to_end(s, r);
}

/* keep_alive: an end parks the worker; continue runs a new leg of its own length, a
 * branch after the end generates its own n_predict tokens (not what the run had left),
 * pause after the end does nothing, sampling changes take effect, and a trace re-opened
 * with pd_session_start_history continues exactly like the session that made it. */
static void test_keep_alive_continue_branch_history(void **state)
{
    (void)state;
    struct run *r = calloc(1, sizeof *r);
    struct pd_session *s = open_keep_alive(70);
    start(s, "the time");
    leg_to_end(s, r);
    assert_string_equal(r->finish, "length");
    size_t n_prompt = r->n - count_generated(r);
    assert_int_equal(count_generated(r), 70);
    assert_true(pd_session_running(s));
    /* Pause after the end: nothing happens (no PAUSED), the session still takes commands. */
    send(s, cmd(PD_CMD_PAUSE));
    struct pd_cmd c = cmd(PD_CMD_CONTINUE);
    c.budget = 5;
    send(s, c);
    struct pd_event ev;
    wait_for(s, r, PD_EV_RESUMED, &ev);
    assert_string_equal(ev.text, "continue");
    pd_event_free(&ev);
    size_t before = r->n;
    leg_to_end(s, r);
    assert_string_equal(r->finish, "length");
    assert_int_equal(r->n - before, 5);
    size_t n_all = r->n;
    assert_int_equal(r->pos[n_all - 1], (int64_t)n_all - 1);
    /* The same 75 tokens as one uninterrupted greedy run. */
    struct run *one = calloc(1, sizeof *one);
    struct pd_session *s1 = open_session(g_model, g_tok, NULL, 75, 0, 8);
    start(s1, "the time");
    run_to_end(s1, one);
    pd_session_close(&s1);
    assert_int_equal(one->n, n_all);
    for (size_t i = 0; i < n_all; i++) {
        assert_int_equal(one->id[i], r->id[i]);
    }
    /* A branch after the end: n_predict (70) new tokens from the fork, not 0 or 5. */
    c = cmd(PD_CMD_BRANCH);
    c.pos = (int64_t)n_prompt + 3;
    send(s, c);
    wait_for(s, r, PD_EV_BRANCHED, NULL);
    before = r->n;
    leg_to_end(s, r);
    assert_string_equal(r->finish, "length");
    assert_int_equal(r->n - before, 70);
    assert_int_equal(r->pos[before], (int64_t)n_prompt + 3);
    /* Sampling changes are accepted and reported. */
    c = cmd(PD_CMD_SET_SAMPLING);
    c.sampling = pd_sampler_default_params();
    c.sampling.temperature = 1.0f;
    c.sampling.seed = 7;
    send(s, c);
    wait_for(s, r, PD_EV_MODE, &ev);
    assert_non_null(strstr(ev.text, "temp 1"));
    pd_event_free(&ev);
    pd_session_close(&s);

    /* Re-open the first 70 generated tokens' trace and continue: the same 5 tokens. */
    size_t n_hist = n_prompt + 70;
    uint8_t roles[MAX_TOK];
    for (size_t i = 0; i < n_hist; i++) {
        roles[i] = (uint8_t)one->role[i];
    }
    s = open_keep_alive(70);
    struct pd_err err;
    if (pd_session_start_history(s, one->id, roles, n_hist, &err)) {
        fail_msg("%s", err.msg);
    }
    struct run *h = calloc(1, sizeof *h);
    wait_for(s, h, PD_EV_FINISHED, &ev);
    assert_string_equal(ev.text, "loaded");
    assert_int_equal(ev.pos, (int64_t)n_hist);
    pd_event_free(&ev);
    assert_int_equal(h->n, 0); /* no token events for the re-encoded trace */
    c = cmd(PD_CMD_CONTINUE);
    c.budget = 5;
    send(s, c);
    leg_to_end(s, h);
    assert_int_equal(h->n, 5);
    for (size_t k = 0; k < 5; k++) {
        assert_int_equal(h->pos[k], (int64_t)(n_hist + k));
        assert_int_equal(h->id[k], one->id[n_hist + k]);
        assert_int_equal(h->role[k], one->role[n_hist + k]);
    }
    /* Steer at a middle position of the re-opened trace. */
    c = cmd(PD_CMD_BRANCH);
    c.pos = (int64_t)n_prompt + 10;
    c.token = (one->id[c.pos] + 1) % (int32_t)g_model->hp.n_vocab;
    send(s, c);
    wait_for(s, h, PD_EV_BRANCHED, NULL);
    wait_for(s, h, PD_EV_TOKEN, NULL);
    assert_int_equal(h->pos[h->n - 1], c.pos);
    assert_int_equal(h->id[h->n - 1], c.token);
    pd_session_close(&s);
    /* Without keep_alive a history start is refused. */
    s = open_session(g_model, g_tok, NULL, 5, 0, 8);
    assert_int_not_equal(pd_session_start_history(s, one->id, roles, n_hist, &err), PD_OK);
    assert_non_null(strstr(err.msg, "keep_alive"));
    pd_session_close(&s);
    free(h);
    free(one);
    free(r);
}

/* A long prompt reports its encoding: PD_EV_PROGRESS events with growing counts, the last
 * one complete, all before the first generated token. */
static void test_prefill_progress(void **state)
{
    (void)state;
    struct pd_session *s = open_session(g_model, g_tok, NULL, 2, 0, 8);
    char prompt[4096];
    size_t n = 0;
    for (int k = 0; k < 40; k++) { /* ~360 tokens of the random model's vocabulary */
        n += (size_t)snprintf(prompt + n, sizeof prompt - n, "the time ");
    }
    start(s, prompt);
    struct pd_event ev;
    int64_t last = -1, total = -1;
    size_t n_progress = 0;
    bool generated = false;
    double t0 = now_ms();
    for (;;) {
        assert_true(now_ms() - t0 < 60000);
        if (!pd_session_wait(s, &ev, 200)) {
            continue;
        }
        if (ev.kind == PD_EV_PROGRESS) {
            assert_false(generated);
            assert_true(ev.pos > last);
            assert_true(ev.pos <= ev.pos_end);
            assert_true(ev.rate > 0);
            last = ev.pos;
            total = ev.pos_end;
            n_progress++;
        } else if (ev.kind == PD_EV_TOKEN && ev.tok.role != PD_ROLE_PROMPT) {
            generated = true;
        }
        bool end = ev.kind == PD_EV_FINISHED || ev.kind == PD_EV_ERROR;
        pd_event_free(&ev);
        if (end) {
            break;
        }
    }
    pd_session_close(&s);
    assert_true(n_progress >= 1);
    assert_true(total >= 100);
    assert_int_equal(last, total);
}

static int setup(void **state)
{
    (void)state;
    g_tmp = test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/session-llama.gguf", g_tmp);
    const char *args[] = {"--arch", "llama", "--type", "f32", "--seed", "3", NULL};
    if (test_mkmodel(args, path)) {
        return -1;
    }
    struct pd_err err;
    if (pd_model_open(path, &g_model, &err) || pd_tok_open_gguf(g_model->gguf, &g_tok, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    char *sp = test_shared_model("stories260K.gguf");
    if (sp) {
        if (pd_model_open(sp, &g_stories, &err) ||
            pd_tok_open_gguf(g_stories->gguf, &g_stories_tok, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            free(sp);
            return -1;
        }
        free(sp);
    } else {
        printf("note: stories260K.gguf absent; session tests run on the random model only\n");
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pd_tok_close(&g_tok);
    pd_model_close(&g_model);
    pd_tok_close(&g_stories_tok);
    pd_model_close(&g_stories);
    free(g_tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_ge_length_equals_full),
        cmocka_unit_test(test_window_matches_recomputation),
        cmocka_unit_test(test_shadow_keeps_output),
        cmocka_unit_test(test_shadow_top1),
        cmocka_unit_test(test_pause_resume_stop),
        cmocka_unit_test(test_tok_per_s_ignores_pauses),
        cmocka_unit_test(test_inject_and_answer_now),
        cmocka_unit_test(test_branch),
        cmocka_unit_test(test_prune_cache),
        cmocka_unit_test(test_prune_reencode_equals_fresh_run),
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_min_think_wait),
        cmocka_unit_test(test_mode_switch_midstream),
        cmocka_unit_test(test_kv_budget_command),
        cmocka_unit_test(test_attention_recompute),
        cmocka_unit_test(test_no_history),
        cmocka_unit_test(test_step_events),
        cmocka_unit_test(test_set_policy),
        cmocka_unit_test(test_kvsim),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_close_while_running),
        cmocka_unit_test(test_keep_alive_continue_branch_history),
        cmocka_unit_test(test_prefill_progress),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
