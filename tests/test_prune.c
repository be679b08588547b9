/* test_prune.c - analysis/prune: the selection rule of each strategy (manual, asap,
 * redundant, budget) on hand-written traces, the word-set Jaccard similarity, the
 * difficulty estimate, token masks, parameter and input errors, and an equivalence check
 * of the asap rule against its "add in descending surprisal" formulation on random traces.
 *
 *   test_prune           the above
 *   test_prune stories   verification with stories260K (answer logprob under pruned vs full
 *                        reasoning, greedy comparison); exits 77 (SKIP) without the model */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"
#include "prune.h"
#include "score.h"
#include "steps.h"
#include "mem.h"
#include "chat.h"
#include "model.h"
#include "tokenizer.h"

#define TMAX 512
#define SMAX 32

/* A trace of steps: step j has len[j] THINK tokens with text text[j] on its first token,
 * first-token surprisal fs[j] (bits; NAN: unscored) and kind kind[j]. A prompt token
 * comes first and an answer token last. */
struct fx {
    struct pd_token_rec tok[TMAX];
    size_t n;
    struct pd_step_rec steps[SMAX];
    size_t n_steps;
};

static void fx_build(struct fx *f, size_t n_steps, const size_t *len, const double *fs,
                     const enum pd_step_kind *kind, const char *const *text)
{
    memset(f, 0, sizeof *f);
    f->tok[f->n] = (struct pd_token_rec){.pos = 0, .id = 1, .role = PD_ROLE_PROMPT,
                                         .text = "Q", .text_len = 1, .logprob = NAN,
                                         .entropy = NAN};
    f->n++;
    for (size_t j = 0; j < n_steps; j++) {
        struct pd_step_rec *s = &f->steps[j];
        memset(s, 0, sizeof *s);
        s->index = (int32_t)j;
        s->pos_begin = (int64_t)f->n;
        s->kind = kind ? kind[j] : PD_STEP_COMPUTE;
        s->first_surprisal = fs ? (float)fs[j] : NAN;
        s->mean_surprisal = s->mean_entropy = s->attn_received = NAN;
        for (size_t k = 0; k < len[j]; k++) {
            assert_true(f->n < TMAX - 1);
            const char *tx = (k == 0 && text) ? text[j] : " x";
            f->tok[f->n] = (struct pd_token_rec){.pos = (int64_t)f->n, .id = 2,
                                                 .role = PD_ROLE_THINK, .text = (char *)tx,
                                                 .text_len = strlen(tx), .logprob = -1.0f,
                                                 .entropy = 1.0f};
            f->n++;
        }
        s->pos_end = (int64_t)f->n;
    }
    f->n_steps = n_steps;
    f->tok[f->n] = (struct pd_token_rec){.pos = (int64_t)f->n, .id = 3, .role = PD_ROLE_ANSWER,
                                         .text = "A", .text_len = 1, .logprob = -1.0f,
                                         .entropy = 1.0f};
    f->n++;
}

/* "x..x" marks: x pruned, . kept. */
static void expect_pruned(const struct fx *f, const char *want)
{
    char got[SMAX + 1];
    for (size_t j = 0; j < f->n_steps; j++) {
        got[j] = f->steps[j].pruned ? 'x' : '.';
    }
    got[f->n_steps] = '\0';
    assert_string_equal(got, want);
}

static struct pd_prune_result run(struct fx *f, const struct pd_prune_params *p)
{
    struct pd_prune_result r;
    struct pd_err err;
    pd_err_clear(&err);
    if (pd_prune_select(f->tok, f->n, f->steps, f->n_steps, p, &r, &err) != PD_OK) {
        fail_msg("select: %s", err.msg);
    }
    return r;
}

static void test_names(void **state)
{
    (void)state;
    for (int s = 0; s < PD_PRUNE_STRATEGY_COUNT; s++) {
        assert_int_equal(pd_prune_strategy_parse(pd_prune_strategy_name(s)), s);
    }
    assert_int_equal(pd_prune_strategy_parse("ASAP"), PD_PRUNE_STRATEGY_COUNT);
    assert_int_equal(pd_prune_strategy_parse(NULL), PD_PRUNE_STRATEGY_COUNT);
    assert_null(pd_prune_strategy_name(PD_PRUNE_STRATEGY_COUNT));
}

static void test_asap_rule(void **state)
{
    (void)state;
    /* 6 steps of 10 tokens; anchors 0 (first), 3 (conclude), 5 (last) */
    const size_t len[6] = {10, 10, 10, 10, 10, 10};
    const double fs[6] = {0.5, 3.0, 1.0, 0.1, 2.0, 0.2};
    const enum pd_step_kind kind[6] = {PD_STEP_PLAN, PD_STEP_COMPUTE, PD_STEP_CHECK,
                                       PD_STEP_CONCLUDE, PD_STEP_BACKTRACK, PD_STEP_COMPUTE};
    struct fx f;
    fx_build(&f, 6, len, fs, kind, NULL);
    struct pd_prune_params p = pd_prune_default_params(PD_PRUNE_ASAP);
    /* keep 0.5: B = 30; anchors 30 tokens; remove 2 (1.0), 4 (2.0), 1 (3.0) */
    p.keep = 0.5;
    struct pd_prune_result r = run(&f, &p);
    expect_pruned(&f, ".xx.x.");
    assert_int_equal(r.budget, 30);
    assert_int_equal(r.tokens_before, 60);
    assert_int_equal(r.tokens_after, 30);
    assert_true(r.budget_met);
    assert_int_equal(r.n_pruned, 3);
    assert_true(r.used_surprisal);
    assert_string_equal(r.spec, "asap:keep=0.5");
    assert_true(isnan(r.difficulty));
    /* keep 0.75: B = 45: removing step 2 (lowest non-anchor surprisal) leaves 50, then
     * step 4 leaves 40 <= 45 */
    p.keep = 0.75;
    r = run(&f, &p);
    expect_pruned(&f, "..x.x.");
    assert_int_equal(r.budget, 45);
    assert_int_equal(r.tokens_after, 40);
    /* fits already: nothing pruned (and earlier flags are cleared) */
    p.keep = 1.0;
    r = run(&f, &p);
    expect_pruned(&f, "......");
    assert_int_equal(r.n_pruned, 0);
    /* absolute budget wins over the ratio; below the anchors: all non-anchors go, not met */
    p.keep = 0.9;
    p.budget = 25;
    r = run(&f, &p);
    expect_pruned(&f, ".xx.x.");
    assert_false(r.budget_met);
    assert_int_equal(r.budget, 25);
    assert_string_equal(r.spec, "asap:budget=25");
    /* ties: the lower index goes first */
    const double tie[6] = {0.5, 1.0, 1.0, 0.1, 1.0, 0.2};
    fx_build(&f, 6, len, tie, kind, NULL);
    p.budget = 50;
    r = run(&f, &p);
    expect_pruned(&f, ".x....");
    /* step sizes matter: removing a big low-surprisal step can be enough */
    const size_t len2[5] = {5, 40, 5, 5, 5};
    const double fs2[5] = {9, 0.5, 4, 6, 9};
    fx_build(&f, 5, len2, fs2, NULL, NULL);
    p.budget = 0;
    p.keep = 0.5; /* B = 30: drop step 1 (40 tokens) -> 20 */
    r = run(&f, &p);
    expect_pruned(&f, ".x...");
    assert_int_equal(r.tokens_after, 20);
}

static void test_asap_needs_scores(void **state)
{
    (void)state;
    const size_t len[4] = {3, 3, 3, 3};
    const double fs[4] = {NAN, 1.0, NAN, NAN}; /* anchors may be unscored, step 2 may not */
    struct fx f;
    fx_build(&f, 4, len, fs, NULL, NULL);
    f.steps[1].pruned = true;
    struct pd_prune_params p = pd_prune_default_params(PD_PRUNE_ASAP);
    struct pd_prune_result r;
    struct pd_err err;
    assert_int_equal(pd_prune_select(f.tok, f.n, f.steps, f.n_steps, &p, &r, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "score the trace first"));
    assert_true(f.steps[1].pruned); /* unchanged on error */
    f.steps[2].first_surprisal = 0.5f;
    assert_int_equal(pd_prune_select(f.tok, f.n, f.steps, f.n_steps, &p, &r, &err), PD_OK);
}

/* The removal rule equals "keep the longest prefix of the non-anchor steps in descending
 * surprisal that fits next to the anchors" (both with ties to the lower index). */
static void test_asap_equivalence(void **state)
{
    (void)state;
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    struct fx f;
    for (int trial = 0; trial < 500; trial++) {
        size_t n = 1 + (size_t)(rng % 12);
        size_t len[SMAX];
        double fs[SMAX];
        enum pd_step_kind kind[SMAX];
        for (size_t j = 0; j < n; j++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            len[j] = 1 + (size_t)(rng % 30);
            fs[j] = (double)((rng >> 8) % 8); /* small range: many ties */
            kind[j] = (rng >> 20) % 7 == 0 ? PD_STEP_CONCLUDE : PD_STEP_COMPUTE;
        }
        fx_build(&f, n, len, fs, kind, NULL);
        struct pd_prune_params p = pd_prune_default_params(PD_PRUNE_ASAP);
        p.keep = 0.1 + 0.9 * (double)((rng >> 30) % 100) / 100.0;
        struct pd_prune_result r = run(&f, &p);
        /* the other formulation */
        uint64_t anchors = 0, total = 0;
        size_t order[SMAX], m = 0;
        for (size_t j = 0; j < n; j++) {
            total += len[j];
            if (pd_prune_is_anchor(f.steps, n, j)) {
                anchors += len[j];
            } else {
                order[m++] = j;
            }
        }
        /* descending surprisal; among equals the higher index first (it is removed last) */
        for (size_t a = 1; a < m; a++) {
            for (size_t b = a; b > 0; b--) {
                size_t x = order[b - 1], y = order[b];
                if (fs[x] < fs[y] || (fs[x] == fs[y] && x < y)) {
                    order[b - 1] = y;
                    order[b] = x;
                }
            }
        }
        bool keep[SMAX];
        for (size_t j = 0; j < n; j++) {
            keep[j] = true;
        }
        if (total > r.budget) {
            uint64_t used = anchors;
            size_t k = 0;
            while (k < m && used + len[order[k]] <= r.budget) {
                used += len[order[k++]];
            }
            /* the prefix [0, k) fits; everything after it goes */
            for (size_t q = k; q < m; q++) {
                keep[order[q]] = false;
            }
        }
        for (size_t j = 0; j < n; j++) {
            if (f.steps[j].pruned == keep[j]) {
                fail_msg("trial %d, step %zu: select %s, formulation %s", trial, j,
                         f.steps[j].pruned ? "pruned" : "kept", keep[j] ? "keeps" : "prunes");
            }
        }
    }
}

static void test_jaccard(void **state)
{
    (void)state;
    assert_float_equal(pd_prune_jaccard("a b c", 5, "c b a", 5), 1.0, 1e-12);
    assert_float_equal(pd_prune_jaccard("The cat", 7, "the CAT!", 8), 1.0, 1e-12);
    assert_float_equal(pd_prune_jaccard("a b", 3, "b c", 3), 1.0 / 3.0, 1e-12);
    assert_float_equal(pd_prune_jaccard("12 - 5 = 7", 10, "12-5=7.", 7), 1.0, 1e-12);
    assert_float_equal(pd_prune_jaccard("a a a b", 7, "a b b", 5), 1.0, 1e-12); /* sets */
    assert_float_equal(pd_prune_jaccard("", 0, "", 0), 1.0, 1e-12);
    assert_float_equal(pd_prune_jaccard("x", 1, "", 0), 0.0, 1e-12);
    /* bytes >= 0x80 are word bytes: "caf\xc3\xa9" is one word, different from "caf" */
    assert_float_equal(pd_prune_jaccard("caf\xc3\xa9", 5, "caf", 3), 0.0, 1e-12);
}

static void test_redundant_rule(void **state)
{
    (void)state;
    const char *text[7] = {
        "We need 3 * 4 and then subtract 2.",
        "3 * 4 = 12.",
        "Let me check: 3 * 4 = 12.",          /* shares 3, 4, 12 with step 1 */
        "3 * 4 = 12",                         /* repeats step 1 exactly: J = 1 */
        "12 - 2 = 10.",
        "12 - 2 = 10, so 10.",                /* repeats step 4: {12,2,10,so}: J = 3/4 */
        "12 - 2 = 10.",                       /* last step: never dropped */
    };
    const size_t len[7] = {2, 2, 2, 2, 2, 2, 2};
    struct fx f;
    fx_build(&f, 7, len, NULL, NULL, text);
    /* the step texts are "<text> x" (second token " x"): every set gains the word x */
    struct pd_prune_params p = pd_prune_default_params(PD_PRUNE_REDUNDANT);
    struct pd_prune_result r = run(&f, &p);
    /* step 2: {let,me,check,3,4,12,x} vs step1 {3,4,12,x}: 4/7 < 0.6 kept;
     * step 3 = step 1: dropped; step 5: {12,2,10,so,x} vs step 4 {12,2,10,x}: 4/5 dropped */
    expect_pruned(&f, "...x.x.");
    assert_string_equal(r.spec, "redundant:threshold=0.6");
    assert_int_equal(r.budget, 0);
    assert_true(r.budget_met);
    assert_int_equal(r.tokens_after, 10);
    /* a lower threshold also drops the check step */
    p.threshold = 0.5;
    run(&f, &p);
    expect_pruned(&f, "..xx.x.");
    /* compared with KEPT steps only: A, A, A -> the third is compared with the first */
    const char *rep[4] = {"plan it", "same words here", "same words here", "end"};
    const size_t len4[4] = {1, 1, 1, 1};
    fx_build(&f, 4, len4, NULL, NULL, rep);
    p.threshold = 1.0;
    run(&f, &p);
    expect_pruned(&f, "..x.");
    /* first and last never go, even when identical to something */
    const char *same[3] = {"same", "same", "same"};
    const size_t len3[3] = {1, 1, 1};
    fx_build(&f, 3, len3, NULL, NULL, same);
    run(&f, &p);
    expect_pruned(&f, ".x.");
}

static void test_budget_rule(void **state)
{
    (void)state;
    const size_t len[5] = {10, 10, 10, 10, 10};
    const double fs[5] = {1, 5, 2, 4, 1};
    const enum pd_step_kind kind[5] = {PD_STEP_PLAN, PD_STEP_CHECK, PD_STEP_COMPUTE,
                                       PD_STEP_BACKTRACK, PD_STEP_COMPUTE};
    struct fx f;
    fx_build(&f, 5, len, fs, kind, NULL);
    struct pd_prune_params p = pd_prune_default_params(PD_PRUNE_BUDGET);
    /* rev = 2/5; all entropies 1 bit, ref 3 bits: h = 1/3; d = 0.5*0.4 + 0.5/3 */
    double d = 0.5 * 0.4 + 0.5 / 3.0;
    assert_float_equal(pd_prune_difficulty(f.steps, 5, 1.0, &p), d, 1e-12);
    assert_float_equal(pd_prune_difficulty(f.steps, 5, NAN, &p), 0.4, 1e-12);
    assert_float_equal(pd_prune_difficulty(f.steps, 5, 100.0, &p), 0.5 * 0.4 + 0.5, 1e-12);
    assert_float_equal(pd_prune_difficulty(f.steps, 0, 1.0, &p), 0.0, 1e-12);
    struct pd_prune_result r = run(&f, &p);
    uint64_t b = (uint64_t)ceil(50.0 * (0.25 + 0.75 * d)); /* 50 * 0.525 -> 27 */
    assert_int_equal(r.budget, b);
    assert_float_equal(r.difficulty, d, 1e-9);
    assert_true(r.used_surprisal);
    /* anchors 0 and 4; remove 2 (2.0), 3 (4.0), 1 (5.0) until <= 27 */
    expect_pruned(&f, ".xxx.");
    assert_int_equal(b, 27);
    assert_int_equal(r.tokens_after, 20);
    assert_true(r.budget_met);
    char want[96];
    snprintf(want, sizeof want, "budget:d=%.3f,budget=%llu", d, (unsigned long long)b);
    assert_string_equal(r.spec, want);
    /* unscored: latest non-anchor step first */
    const double none[5] = {NAN, NAN, NAN, NAN, NAN};
    fx_build(&f, 5, len, none, kind, NULL);
    for (size_t i = 0; i < f.n; i++) {
        f.tok[i].entropy = NAN;
    }
    p.r_min = 0.5; /* d = rev = 0.4 -> ratio 0.7 -> B = 35 */
    r = run(&f, &p);
    assert_int_equal(r.budget, 35);
    assert_false(r.used_surprisal);
    expect_pruned(&f, "..xx.");
}

static void test_manual_and_errors(void **state)
{
    (void)state;
    const size_t len[4] = {2, 2, 2, 2};
    struct fx f;
    fx_build(&f, 4, len, NULL, NULL, NULL);
    const int32_t idx[2] = {3, 1};
    struct pd_prune_params p = pd_prune_default_params(PD_PRUNE_MANUAL);
    p.manual = idx;
    p.n_manual = 2;
    struct pd_prune_result r = run(&f, &p);
    expect_pruned(&f, ".x.x");
    assert_string_equal(r.spec, "manual");
    assert_int_equal(r.tokens_after, 4);
    struct pd_err err;
    const int32_t out_of_range[1] = {4};
    p.manual = out_of_range;
    p.n_manual = 1;
    assert_int_equal(pd_prune_select(f.tok, f.n, f.steps, 4, &p, &r, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "step 4 does not exist (the trace has 4 steps)"));
    const int32_t twice[2] = {1, 1};
    p.manual = twice;
    p.n_manual = 2;
    assert_int_equal(pd_prune_select(f.tok, f.n, f.steps, 4, &p, &r, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "step 1 listed twice"));
    /* parameter ranges */
    p = pd_prune_default_params(PD_PRUNE_ASAP);
    p.keep = 0;
    assert_int_equal(pd_prune_select(f.tok, f.n, f.steps, 4, &p, &r, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "keep 0 outside (0, 1]"));
    p.keep = 1.5;
    assert_int_equal(pd_prune_select(f.tok, f.n, f.steps, 4, &p, &r, &err), PD_EINVAL);
    p = pd_prune_default_params(PD_PRUNE_REDUNDANT);
    p.threshold = NAN;
    assert_int_equal(pd_prune_select(f.tok, f.n, f.steps, 4, &p, &r, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "threshold"));
    p = pd_prune_default_params(PD_PRUNE_BUDGET);
    p.entropy_ref = 0;
    assert_int_equal(pd_prune_select(f.tok, f.n, f.steps, 4, &p, &r, &err), PD_EINVAL);
    p = pd_prune_default_params(PD_PRUNE_BUDGET);
    p.w_revisit = 2;
    assert_int_equal(pd_prune_select(f.tok, f.n, f.steps, 4, &p, &r, &err), PD_EINVAL);
    p = pd_prune_default_params(PD_PRUNE_BUDGET);
    p.strategy = PD_PRUNE_STRATEGY_COUNT;
    assert_int_equal(pd_prune_select(f.tok, f.n, f.steps, 4, &p, &r, &err), PD_EINVAL);
    /* corrupt spans */
    p = pd_prune_default_params(PD_PRUNE_REDUNDANT);
    f.steps[2].pos_begin = f.steps[1].pos_begin;
    assert_int_equal(pd_prune_select(f.tok, f.n, f.steps, 4, &p, &r, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "step 2"));
    /* no steps at all */
    assert_int_equal(pd_prune_select(f.tok, f.n, f.steps, 0, &p, &r, &err), PD_OK);
    assert_int_equal(r.n_steps, 0);
    assert_int_equal(r.tokens_before, 0);
}

static void test_token_mask(void **state)
{
    (void)state;
    const size_t len[3] = {2, 3, 1};
    struct fx f;
    fx_build(&f, 3, len, NULL, NULL, NULL);
    f.steps[1].pruned = true;
    uint8_t drop[TMAX];
    memset(drop, 7, sizeof drop);
    assert_int_equal(pd_prune_token_mask(f.tok, f.n, f.steps, 3, drop, NULL), PD_OK);
    const uint8_t want[8] = {0, 0, 0, 1, 1, 1, 0, 0};
    assert_int_equal(f.n, 8);
    assert_memory_equal(drop, want, 8);
    f.steps[0].pos_end = 10;
    assert_int_equal(pd_prune_token_mask(f.tok, f.n, f.steps, 3, drop, NULL), PD_EINVAL);
}

/* ---- verification with stories260K -------------------------------------------------- */

static char *model_path(void)
{
    const char *dir = getenv("PONDER_TEST_MODELS");
    const char *root = getenv("PONDER_SOURCE_ROOT");
    char p[4096];
    if (dir && *dir) {
        snprintf(p, sizeof p, "%s/stories260K.gguf", dir);
        if (access(p, R_OK) == 0) {
            return pd_strdup(p);
        }
    }
    snprintf(p, sizeof p, "%s/../shared/models/stories260K.gguf", root && *root ? root : ".");
    return access(p, R_OK) == 0 ? pd_strdup(p) : NULL;
}

static void test_verify(void **state)
{
    (void)state;
    char *path = model_path();
    struct pd_model *m = NULL;
    struct pd_tok *tok = NULL;
    assert_int_equal(pd_model_open(path, &m, NULL), PD_OK);
    assert_int_equal(pd_tok_open_gguf(m->gguf, &tok, NULL), PD_OK);
    free(path);
    struct pd_score_params sp = pd_score_default_params();
    sp.ctx.n_threads = 2;
    struct pd_scorer *sc = NULL;
    assert_int_equal(pd_scorer_open(m, tok, &sp, &sc, NULL), PD_OK);
    struct pd_chat_msg msgs[1] = {{PD_CHAT_ROLE_USER, "Once upon a time there was a dog."}};
    const char *think = "The dog was big.\n\nThe dog liked to play in the park.\n\n"
                        "One day the dog saw a cat.\n\nSo the dog ran.";
    const char *ans = "The dog ran to the cat and they played.";
    struct pd_score_input in = {msgs, 1, true, think, strlen(think), ans, strlen(ans)};
    struct pd_chat_format f;
    pd_chat_format_default(PD_CHAT_FAMILY_RAW, &f);
    struct pd_token_rec *t = NULL;
    size_t n = 0;
    assert_int_equal(pd_score_build(tok, &f, &in, &t, &n, NULL), PD_OK);
    assert_int_equal(pd_score_trace(sc, t, n, NULL), PD_OK);
    struct pd_steps_list l;
    pd_steps_list_init(&l);
    assert_int_equal(pd_steps_segment(t, n, NULL, &l, NULL), PD_OK);
    assert_int_equal(l.n, 4);
    assert_int_equal(pd_metrics_steps(t, n, l.items, l.n, NULL, NULL), PD_OK);
    struct pd_prune_check *c = calloc(1, sizeof *c);
    /* nothing pruned: identical answers */
    assert_int_equal(pd_prune_verify(sc, t, n, l.items, l.n, 12, c, NULL), PD_OK);
    assert_float_equal(c->delta, 0.0, 1e-6);
    assert_true(c->greedy_same);
    assert_int_equal(c->n_compare, 12);
    assert_int_equal(c->greedy_full_matches, c->greedy_pruned_matches);
    double answer_sum = 0;
    size_t n_ans = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i].role == PD_ROLE_ANSWER) {
            answer_sum += t[i].logprob;
            n_ans++;
        }
    }
    assert_int_equal(c->n_answer, n_ans);
    assert_float_equal(c->logprob_full, answer_sum, 1e-3);
    /* asap at 0.5, then verify: the pruned answer logprob is the full one minus the
     * sensitivity of the pruned step when exactly one step goes */
    struct pd_prune_params pp = pd_prune_default_params(PD_PRUNE_MANUAL);
    const int32_t one[1] = {1};
    pp.manual = one;
    pp.n_manual = 1;
    struct pd_prune_result r;
    assert_int_equal(pd_prune_select(t, n, l.items, l.n, &pp, &r, NULL), PD_OK);
    assert_int_equal(pd_prune_verify(sc, t, n, l.items, l.n, 12, c, NULL), PD_OK);
    double sens[4];
    assert_int_equal(pd_score_sensitivity(sc, t, n, l.items, l.n, sens, NULL, NULL), PD_OK);
    assert_float_equal(c->delta, -sens[1], 1e-3);
    assert_true(c->logprob_pruned != c->logprob_full);
    assert_true(c->n_greedy > 0);
    pp = pd_prune_default_params(PD_PRUNE_ASAP);
    pp.keep = 0.5;
    assert_int_equal(pd_prune_select(t, n, l.items, l.n, &pp, &r, NULL), PD_OK);
    assert_true(r.n_pruned >= 1);
    assert_int_equal(pd_prune_verify(sc, t, n, l.items, l.n, 0, c, NULL), PD_OK);
    assert_int_equal(c->n_compare, 0);
    assert_true(c->greedy_same);
    assert_true(isfinite(c->logprob_pruned));
    /* a trace without token ids cannot be verified */
    int32_t saved = t[2].id;
    t[2].id = -1;
    struct pd_err err;
    assert_int_equal(pd_prune_verify(sc, t, n, l.items, l.n, 4, c, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "full trace: token at position 2 has no id"));
    t[2].id = saved;
    free(c);
    pd_steps_list_deinit(&l);
    pd_score_tokens_free(t, n);
    pd_scorer_close(&sc);
    pd_tok_close(&tok);
    pd_model_close(&m);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "stories") == 0) {
        char *p = model_path();
        if (!p) {
            fprintf(stderr, "SKIP: stories260K.gguf not found (set PONDER_TEST_MODELS or put "
                            "it in ../shared/models)\n");
            return 77;
        }
        free(p);
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_verify)};
        return cmocka_run_group_tests(tests, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_asap_rule),
        cmocka_unit_test(test_asap_needs_scores),
        cmocka_unit_test(test_asap_equivalence),
        cmocka_unit_test(test_jaccard),
        cmocka_unit_test(test_redundant_rule),
        cmocka_unit_test(test_budget_rule),
        cmocka_unit_test(test_manual_and_errors),
        cmocka_unit_test(test_token_mask),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
