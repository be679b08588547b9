/* test_reasoner.c - the shipped reasoner (samples/models/reasoner.gguf) end to end:
 *   - the trainer's forward pass equals ponder's engine on held-out traces (1e-4 per token);
 *   - llama.cpp (tests/golden/reasoner/, made by make_reasoner_goldens.mjs) tokenizes the
 *     same way, gives the same log-probabilities and the same greedy continuation, for the
 *     f32 and the q8_0 file;
 *   - ponder treats it as Qwen3: the chat format detected, <think> markers, thinking off;
 *   - answer now closes thinking and the model answers;
 *   - the short mode ("/short") thinks less than the long mode on the same question;
 *   - pruning the self-check step keeps the answer.
 * The model is committed: its absence is a failure, not a skip (docs/testing.md). */
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
#include <jansson.h>

#include "answer.h"
#include "chat.h"
#include "data.h"
#include "forward.h"
#include "lm.h"
#include "metrics.h"
#include "modes.h"
#include "problems.h"
#include "prune.h"
#include "score.h"
#include "session.h"
#include "steps.h"
#include "train.h"

static char g_model[4096], g_model_q8[4096], g_golden[4096];
static struct pd_lm g_lm;

/* ---- helpers ------------------------------------------------------------------------- */

/* Log-probabilities of ids[1..n) from ponder's engine (f32 KV cache). */
struct lp_cap {
    const int32_t *ids;
    double *lp;
    uint32_t n_vocab;
};

static void on_logits(void *ud, size_t i, int64_t pos, const float *lg)
{
    (void)pos;
    struct lp_cap *c = ud;
    float mx = lg[0];
    for (uint32_t k = 1; k < c->n_vocab; k++) {
        mx = fmaxf(mx, lg[k]);
    }
    double s = 0;
    for (uint32_t k = 0; k < c->n_vocab; k++) {
        s += exp((double)lg[k] - mx);
    }
    c->lp[i + 1] = (double)lg[c->ids[i + 1]] - (mx + log(s));
}

static void engine_logprobs(const struct pd_model *m, const int32_t *ids, size_t n, double *lp)
{
    struct pd_ctx_params cp = pd_ctx_default_params();
    cp.kv_type = PD_KV_F32;
    cp.n_threads = 1;
    struct pd_ctx *ctx = NULL;
    struct pd_err err;
    assert_int_equal(pd_ctx_open(m, &cp, &ctx, &err), PD_OK);
    struct lp_cap c = {ids, lp, m->hp.n_vocab};
    lp[0] = NAN;
    assert_int_equal(pd_ctx_eval(ctx, ids, n - 1, on_logits, &c, &err), PD_OK);
    pd_ctx_close(&ctx);
}

/* A held-out problem (seed 2, the held-out stream) by index. */
static void heldout(size_t i, struct rz_problem *p)
{
    struct rz_rng r;
    rz_rng_seed(&r, 2);
    struct rz_params pp = rz_default_params();
    for (size_t k = 0; k <= i; k++) {
        assert_true(rz_problem_draw(&r, &pp, p));
    }
}

struct trace {
    struct pd_token_rec *t;
    size_t n, cap;
    size_t n_think;
    bool closed;          /* thinking ended (the close marker was produced or injected) */
    char text[8192];      /* the completion */
    size_t len;
};

static void trace_free(struct trace *tr)
{
    for (size_t i = 0; i < tr->n; i++) {
        pd_token_rec_free(&tr->t[i]);
    }
    free(tr->t);
}

/* Runs a greedy session on user text; answer_now_after > 0 sends "answer now" after that
 * many thinking tokens. */
static void run(const char *user, enum pd_think_mode mode, uint32_t answer_now_after,
                struct trace *tr)
{
    memset(tr, 0, sizeof *tr);
    struct pd_session_params sp = pd_session_default_params();
    sp.ctx.n_threads = 1;
    sp.sampling.temperature = 0;
    sp.capture = PD_CAPTURE_LEVEL_OFF;
    sp.chat = g_lm.chat;
    sp.mode = mode;
    sp.throttle_ms = answer_now_after ? 2 : 0; /* so the command lands while thinking */
    struct pd_session *s = NULL;
    struct pd_err err;
    assert_int_equal(pd_session_open(g_lm.model, g_lm.tok, &sp, &s, &err), PD_OK);
    assert_int_equal(pd_session_start(s, NULL, user, &err), PD_OK);
    bool sent = false;
    for (;;) {
        struct pd_event ev;
        if (!pd_session_wait(s, &ev, 1000)) {
            continue;
        }
        bool end = ev.kind == PD_EV_FINISHED || ev.kind == PD_EV_ERROR;
        assert_int_not_equal(ev.kind, PD_EV_ERROR);
        if (ev.kind == PD_EV_TOKEN) {
            tr->n_think += ev.tok.role == PD_ROLE_THINK;
            if (ev.tok.role != PD_ROLE_PROMPT && ev.tok.text_len &&
                tr->len + ev.tok.text_len < sizeof tr->text) {
                memcpy(tr->text + tr->len, ev.tok.text, ev.tok.text_len);
                tr->len += ev.tok.text_len;
                tr->text[tr->len] = '\0';
            }
            if (tr->n == tr->cap) {
                tr->cap = tr->cap ? 2 * tr->cap : 256;
                tr->t = realloc(tr->t, tr->cap * sizeof *tr->t);
                assert_non_null(tr->t);
            }
            tr->t[tr->n++] = ev.tok;
            ev.tok.text = NULL;
            ev.tok.attn = NULL;
            if (answer_now_after && !sent && tr->n_think >= answer_now_after) {
                struct pd_cmd c;
                memset(&c, 0, sizeof c);
                c.kind = PD_CMD_ANSWER_NOW;
                snprintf(c.text, sizeof c.text, "%s",
                         pd_modes_answer_now(pd_modes_texts(g_lm.chat.family), false));
                assert_int_equal(pd_session_send(s, &c, &err), PD_OK);
                sent = true;
            }
        }
        pd_event_free(&ev);
        if (end) {
            break;
        }
    }
    pd_session_close(&s);
    tr->closed = strstr(tr->text, "</think>") != NULL;
}

static const char *answer_of(const struct trace *tr)
{
    static char out[PD_ANSWER_MAX];
    return pd_answer_extract(tr->text, tr->len, "<think>", "</think>", out) ? out : NULL;
}

/* ---- the tests ------------------------------------------------------------------------- */

/* The model writes <think> itself (thinking on): that token is the first of the thinking
 * span, the close marker its last, then the answer. */
static void test_roles(void **state)
{
    (void)state;
    struct rz_problem *p = malloc(sizeof *p);
    heldout(0, p);
    struct trace tr;
    run(p->question, PD_MODE_LONG, 0, &tr);
    size_t i = 0;
    while (i < tr.n && tr.t[i].role == PD_ROLE_PROMPT) {
        i++;
    }
    assert_true(i < tr.n);
    assert_string_equal(tr.t[i].text, "<think>");
    assert_int_equal(tr.t[i].role, PD_ROLE_THINK);
    size_t close = tr.n;
    for (size_t k = i; k < tr.n; k++) {
        if (strcmp(tr.t[k].text, "</think>") == 0) {
            close = k;
        }
    }
    assert_true(close < tr.n);
    for (size_t k = i; k < tr.n; k++) {
        assert_int_equal(tr.t[k].role, k <= close ? PD_ROLE_THINK : PD_ROLE_ANSWER);
    }
    trace_free(&tr);
    free(p);
}

static void test_qwen3_format(void **state)
{
    (void)state;
    assert_int_equal(g_lm.chat.family, PD_CHAT_FAMILY_QWEN3);
    assert_false(g_lm.chat.gen_opens_think);
    assert_true(pd_tok_find(g_lm.tok, "<think>", 7) >= 0);
    assert_true(pd_tok_find(g_lm.tok, "</think>", 8) >= 0);
    assert_int_equal(pd_tok_type(g_lm.tok, pd_tok_find(g_lm.tok, "<|im_end|>", 10)),
                     PD_TOK_TYPE_CONTROL);
    assert_true(pd_tok_is_eog(g_lm.tok, pd_tok_find(g_lm.tok, "<|im_end|>", 10)));
    assert_false(pd_tok_add_bos(g_lm.tok));
    /* digits are single tokens */
    int32_t *ids = NULL;
    size_t n = 0;
    struct pd_err err;
    assert_int_equal(pd_tok_encode(g_lm.tok, "4951", 4, false, true, &ids, &n, &err), PD_OK);
    assert_int_equal(n, 4);
    free(ids);
    /* the vocabulary size is in the range the issue asks for */
    assert_true(pd_tok_n_vocab(g_lm.tok) >= 256 && pd_tok_n_vocab(g_lm.tok) <= 4096);
    /* parameters */
    assert_true(g_lm.model->n_params <= 5000000);
}

static void test_trainer_equals_engine(void **state)
{
    (void)state;
    struct tr_model *tm = NULL;
    struct pd_err err;
    assert_int_equal(tr_model_load_gguf(g_model, &tm, &err), PD_OK);
    struct tr_run *run = NULL;
    assert_int_equal(tr_run_open(tm, tm->cfg.n_ctx, 1, &run, &err), PD_OK);
    struct rz_problem *p = malloc(sizeof *p);
    struct rz_pieces x;
    rz_pieces_init(&x);
    struct rz_sample smp;
    rz_sample_init(&smp);
    double worst = 0, sum_tr = 0, sum_pd = 0;
    size_t n_tok = 0;
    for (size_t i = 0; i < 12; i++) {
        heldout(i, p);
        assert_int_equal(rz_render(p, RZ_STYLE_LONG, NULL, &x, &err), PD_OK);
        assert_int_equal(rz_encode(g_lm.tok, &x, &smp, &err), PD_OK);
        double *a = malloc(smp.n * sizeof *a), *b = malloc(smp.n * sizeof *b);
        size_t len = smp.n;
        struct tr_batch tb = {smp.ids, smp.mask, smp.n, &len, 1};
        struct tr_loss l;
        assert_int_equal(tr_forward(run, &tb, &l, a, &err), PD_OK);
        engine_logprobs(g_lm.model, smp.ids, smp.n, b);
        for (size_t k = 1; k < smp.n; k++) {
            worst = fmax(worst, fabs(a[k] - b[k]));
            if (smp.mask[k]) {
                sum_tr -= a[k];
                sum_pd -= b[k];
                n_tok++;
            }
        }
        free(a);
        free(b);
    }
    printf("trainer vs engine: %zu scored tokens, max |d logprob| %.3g, mean loss %.6f vs "
           "%.6f\n", n_tok, worst, sum_tr / n_tok, sum_pd / n_tok);
    assert_true(worst < 1e-4);
    assert_true(fabs(sum_tr - sum_pd) / n_tok < 1e-4);
    rz_sample_deinit(&smp);
    rz_pieces_deinit(&x);
    free(p);
    tr_run_close(&run);
    tr_model_free(&tm);
}

/* The golden file's model entry: tokens of a prompt, per-position logprobs and a greedy
 * continuation from llama.cpp. */
static void check_golden(json_t *g, const char *path)
{
    struct pd_lm lm;
    struct pd_err err;
    assert_int_equal(pd_lm_open(path, PD_CHAT_FAMILY_COUNT, &lm, &err), PD_OK);
    /* tokenization of the prompt text */
    const char *text = json_string_value(json_object_get(g, "prompt"));
    json_t *pt = json_object_get(g, "prompt_tokens");
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(pd_tok_encode(lm.tok, text, strlen(text), false, true, &ids, &n, &err),
                     PD_OK);
    assert_int_equal(n, json_array_size(pt));
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ids[i], json_integer_value(json_array_get(pt, i)));
    }
    free(ids);
    /* log-probabilities of every position of the scored sequence */
    json_t *toks = json_object_get(g, "tokens"), *pos = json_object_get(g, "positions");
    size_t nt = json_array_size(toks);
    int32_t *seq = malloc(nt * sizeof *seq);
    double *lp = malloc(nt * sizeof *lp);
    for (size_t i = 0; i < nt; i++) {
        seq[i] = (int32_t)json_integer_value(json_array_get(toks, i));
    }
    engine_logprobs(lm.model, seq, nt, lp);
    /* every position within "tolerance", the greedy answer's within "answer_tolerance"
     * (make_reasoner_goldens.mjs says why they differ for q8_0) */
    double worst = 0, worst_ans = 0, tol = json_real_value(json_object_get(g, "tolerance"));
    double tol_ans = json_real_value(json_object_get(g, "answer_tolerance"));
    size_t ans_from = (size_t)json_integer_value(json_object_get(g, "answer_from"));
    assert_true(tol > 0 && tol_ans > 0 && ans_from > 0);
    for (size_t k = 0; k < json_array_size(pos); k++) {
        json_t *e = json_array_get(pos, k);
        size_t at = (size_t)json_integer_value(json_object_get(e, "pos"));
        double d = fabs(lp[at] - json_real_value(json_object_get(e, "logprob")));
        worst = fmax(worst, d);
        worst_ans = at >= ans_from ? fmax(worst_ans, d) : worst_ans;
    }
    printf("llama.cpp golden %s: %zu positions, max |d logprob| %.3g (tolerance %g), answer "
           "%.3g (tolerance %g)\n", json_string_value(json_object_get(g, "file")),
           json_array_size(pos), worst, tol, worst_ans, tol_ans);
    assert_true(worst <= tol);
    assert_true(worst_ans <= tol_ans);
    free(lp);
    /* greedy continuation of the prompt, ponder's own decoding */
    json_t *greedy = json_object_get(g, "greedy");
    size_t np = json_array_size(pt), ng = json_array_size(greedy);
    struct pd_ctx_params cp = pd_ctx_default_params();
    cp.kv_type = PD_KV_F32;
    cp.n_threads = 1;
    struct pd_ctx *ctx = NULL;
    assert_int_equal(pd_ctx_open(lm.model, &cp, &ctx, &err), PD_OK);
    assert_int_equal(pd_ctx_eval(ctx, seq, np, NULL, NULL, &err), PD_OK);
    for (size_t k = 0; k < ng; k++) {
        int32_t best = 0;
        for (uint32_t v = 1; v < lm.model->hp.n_vocab; v++) {
            best = ctx->logits[v] > ctx->logits[best] ? (int32_t)v : best;
        }
        assert_int_equal(best, json_integer_value(json_array_get(greedy, k)));
        assert_int_equal(pd_ctx_eval(ctx, &best, 1, NULL, NULL, &err), PD_OK);
    }
    pd_ctx_close(&ctx);
    free(seq);
    pd_lm_close(&lm);
}

static void test_llama_cpp_golden(void **state)
{
    (void)state;
    json_error_t je;
    json_t *root = json_load_file(g_golden, 0, &je);
    if (!root) {
        fail_msg("%s: %s (make it with tests/golden/make_reasoner_goldens.mjs)", g_golden,
                 je.text);
    }
    json_t *models = json_object_get(root, "models");
    assert_int_equal(json_array_size(models), 2);
    check_golden(json_array_get(models, 0), g_model);
    check_golden(json_array_get(models, 1), g_model_q8);
    json_decref(root);
}

static void test_answer_now(void **state)
{
    (void)state;
    struct rz_problem *p = malloc(sizeof *p);
    heldout(2, p);
    struct trace tr;
    run(p->question, PD_MODE_LONG, 30, &tr);
    /* the injected text closed thinking, then the model answered with a number */
    size_t i_inj = tr.n, i_ans = tr.n;
    for (size_t i = 0; i < tr.n; i++) {
        if (tr.t[i].role == PD_ROLE_INJECTED && i_inj == tr.n) {
            i_inj = i;
        }
        if (tr.t[i].role == PD_ROLE_ANSWER && i_inj < tr.n && i_ans == tr.n) {
            i_ans = i;
        }
    }
    assert_true(i_inj < tr.n);
    assert_true(i_ans < tr.n);
    assert_true(tr.closed);
    assert_true(tr.n_think < 80); /* it did not think the whole trace through */
    const char *a = answer_of(&tr);
    assert_non_null(a);
    printf("answer now after %zu thinking tokens: '%s' (reference %s)\n", tr.n_think, a,
           p->answer);
    trace_free(&tr);
    free(p);
}

static void test_short_thinks_less(void **state)
{
    (void)state;
    struct rz_problem *p = malloc(sizeof *p);
    for (size_t i = 0; i < 3; i++) {
        heldout(i, p);
        char q[300];
        snprintf(q, sizeof q, "%s /short", p->question);
        struct trace lg, sh, none;
        run(p->question, PD_MODE_LONG, 0, &lg);
        run(q, PD_MODE_LONG, 0, &sh);
        run(p->question, PD_MODE_NONE, 0, &none);
        printf("%s long %zu, short %zu, none %zu thinking tokens; answers %s %s %s\n",
               p->question, lg.n_think, sh.n_think, none.n_think, answer_of(&lg),
               answer_of(&sh), answer_of(&none));
        assert_true(sh.n_think > 0);
        assert_true(sh.n_think * 2 < lg.n_think);
        assert_int_equal(none.n_think, 0);
        assert_non_null(answer_of(&lg));
        assert_non_null(answer_of(&sh));
        assert_non_null(answer_of(&none));
        assert_true(pd_answer_match(answer_of(&lg), p->answer));
        trace_free(&lg);
        trace_free(&sh);
        trace_free(&none);
    }
    free(p);
}

static void test_prune_check_keeps_answer(void **state)
{
    (void)state;
    struct rz_problem *p = malloc(sizeof *p);
    struct pd_err err;
    struct pd_score_params sp = pd_score_default_params();
    sp.ctx.n_threads = 1;
    sp.capture_attn = false;
    struct pd_scorer *sc = NULL;
    assert_int_equal(pd_scorer_open(g_lm.model, g_lm.tok, &sp, &sc, &err), PD_OK);
    int checked = 0;
    for (size_t i = 0; i < 4; i++) {
        heldout(i, p);
        struct trace tr;
        run(p->question, PD_MODE_LONG, 0, &tr);
        struct pd_steps_params stp = pd_steps_default_params();
        struct pd_steps_list l;
        pd_steps_list_init(&l);
        assert_int_equal(pd_steps_segment(tr.t, tr.n, &stp, &l, &err), PD_OK);
        assert_int_equal(pd_metrics_steps(tr.t, tr.n, l.items, l.n, NULL, &err), PD_OK);
        size_t check = l.n;
        for (size_t k = 0; k < l.n; k++) {
            if (l.items[k].kind == PD_STEP_CHECK) {
                check = k;
            }
        }
        /* the close marker ends the last step's span; it is not part of the check */
        assert_true(check < l.n);
        struct pd_step_rec *cs = &l.items[check];
        for (size_t k = 0; k < tr.n; k++) {
            if (tr.t[k].pos == cs->pos_end - 1 && strstr(tr.t[k].text, "</think>")) {
                cs->pos_end--;
            }
        }
        assert_true(check < l.n); /* every long trace has its self-check */
        l.items[check].pruned = true;
        struct pd_prune_check pc;
        assert_int_equal(pd_prune_verify(sc, tr.t, tr.n, l.items, l.n, 32, &pc, &err), PD_OK);
        printf("%s: %zu steps, check step %zu pruned: greedy answer %s\n", p->question, l.n,
               check, pc.greedy_pruned_matches ? "unchanged" : "changed");
        assert_true(pc.greedy_full_matches);
        assert_true(pc.greedy_pruned_matches);
        checked++;
        pd_steps_list_deinit(&l);
        trace_free(&tr);
    }
    assert_int_equal(checked, 4);
    pd_scorer_close(&sc);
    free(p);
}

int main(void)
{
    const char *root = getenv("PONDER_SOURCE_ROOT");
    snprintf(g_model, sizeof g_model, "%s/samples/models/reasoner.gguf", root ? root : ".");
    snprintf(g_model_q8, sizeof g_model_q8, "%s/samples/models/reasoner-q8_0.gguf",
             root ? root : ".");
    snprintf(g_golden, sizeof g_golden, "%s/tests/golden/reasoner/reasoner.json",
             root ? root : ".");
    if (access(g_model, R_OK) != 0) {
        fprintf(stderr, "FAIL: %s not found (the model is committed in samples/models)\n",
                g_model);
        return 1;
    }
    struct pd_err err;
    if (pd_lm_open(g_model, PD_CHAT_FAMILY_COUNT, &g_lm, &err) != PD_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen3_format),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_trainer_equals_engine),
        cmocka_unit_test(test_llama_cpp_golden),
        cmocka_unit_test(test_answer_now),
        cmocka_unit_test(test_short_thinks_less),
        cmocka_unit_test(test_prune_check_keeps_answer),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pd_lm_close(&g_lm);
    return rc;
}
