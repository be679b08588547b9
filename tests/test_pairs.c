/* test_pairs.c - analysis/pairs.h: grading against reference answers (with the answer
 * extraction it builds on), the verification rules, pairs from the samples of one question
 * (checked against a brute-force statement of the rules on random groups) and step forks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pairs.h"

static int grade(const char *completion, const char *reference)
{
    char ans[PD_ANSWER_MAX];
    return pd_pairs_grade(completion, strlen(completion), reference, ans);
}

static void test_grade(void **state)
{
    (void)state;
    char ans[PD_ANSWER_MAX];
    const char *t = "<think>\nA dog has 4 legs, 3 * 4 = 12.\n</think>\n\nThey have 16 legs.";
    assert_int_equal(pd_pairs_grade(t, strlen(t), "16", ans), 1);
    assert_string_equal(ans, "16");
    /* numbers in the thinking are not the answer */
    assert_int_equal(grade("<think>\n16\n</think>\n\nThey have 12 legs.", "16"), 0);
    /* thinking never closed: no answer */
    assert_int_equal(grade("<think>\nso 16", "16"), 0);
    /* a worked solution as reference: its last \boxed{} */
    assert_int_equal(grade("The answer is \\boxed{\\frac{1}{2}}.",
                           "We halve it, so $\\boxed{\\frac{1}{2}}$."), 1);
    assert_int_equal(grade("x = 5", "Natalia sold 48+24 = 72 clips.\n#### 72"), 0);
    assert_int_equal(grade("so 72", "Natalia sold 48+24 = 72 clips.\n#### 72"), 1);
    assert_int_equal(grade("It costs 1,250 dollars", "1250"), 1);
    /* no reference: not graded */
    assert_int_equal(grade("16", NULL), -1);
    assert_int_equal(grade("16", ""), -1);
}

static void test_verify_rule(void **state)
{
    (void)state;
    struct pd_verify_rule r;
    struct pd_err err;
    assert_int_equal(pd_verify_rule_parse("greedy", &r, &err), PD_OK);
    assert_int_equal(r.kind, PD_VERIFY_GREEDY);
    assert_true(pd_verify_passes(&r, true, -1, -100));
    assert_false(pd_verify_passes(&r, false, -1, 0));
    assert_int_equal(pd_verify_rule_parse("logprob:0.5", &r, &err), PD_OK);
    assert_int_equal(r.kind, PD_VERIFY_LOGPROB);
    assert_float_equal(r.max_drop, 0.5, 0);
    assert_true(pd_verify_passes(&r, false, -10, -10.5));   /* drop 0.5: at the limit */
    assert_false(pd_verify_passes(&r, true, -10, -10.51));  /* greedy does not matter */
    assert_true(pd_verify_passes(&r, false, -10, -3));      /* more likely: passes */
    assert_false(pd_verify_passes(&r, true, NAN, -3));
    assert_int_equal(pd_verify_rule_parse("logprob", &r, &err), PD_OK);
    assert_float_equal(r.max_drop, 0, 0);
    const char *bad[] = {"", "greed", "logprob:", "logprob:-1", "logprob:x", "logprob:inf",
                         "logprob:1e999", "logprob1", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(pd_verify_rule_parse(bad[i], &r, &err), PD_EINVAL);
        assert_non_null(strstr(err.msg, "logprob:D"));
    }
}

static void test_samples_fixed(void **state)
{
    (void)state;
    unsigned m;
    assert_true(pd_pairs_mode_parse("both", &m) && m == PD_PAIRS_BOTH);
    assert_true(pd_pairs_mode_parse("length", &m) && m == PD_PAIRS_LENGTH);
    assert_false(pd_pairs_mode_parse("all", &m));
    /* 3 correct (300, 100, 200 tokens), 2 wrong, 1 ungraded */
    struct pd_pair_sample s[6] = {{10, 1, 300}, {11, 0, 50}, {12, 1, 100},
                                  {13, -1, 10}, {14, 0, 80}, {15, 1, 200}};
    struct pd_pair out[6];
    bool oom;
    size_t n = pd_pairs_from_samples(s, 6, PD_PAIRS_BOTH, 0.0, out, &oom);
    assert_false(oom);
    assert_int_equal(n, 3);
    /* shortest correct over the first wrong, next shortest over the next wrong */
    assert_int_equal(out[0].chosen, 12);
    assert_int_equal(out[0].rejected, 11);
    assert_int_equal(out[0].kind, PD_PAIR_CORRECTNESS);
    assert_int_equal(out[1].chosen, 15);
    assert_int_equal(out[1].rejected, 14);
    /* shortest correct over longest correct */
    assert_int_equal(out[2].chosen, 12);
    assert_int_equal(out[2].rejected, 10);
    assert_int_equal(out[2].kind, PD_PAIR_LENGTH);
    /* a saving of 2/3 is needed at least: 100 over 300 saves exactly 2/3 */
    n = pd_pairs_from_samples(s, 6, PD_PAIRS_LENGTH, 2.0 / 3.0, out, &oom);
    assert_int_equal(n, 1);
    n = pd_pairs_from_samples(s, 6, PD_PAIRS_LENGTH, 0.67, out, &oom);
    assert_int_equal(n, 0);
    /* equal lengths never pair; unknown lengths never pair by length */
    struct pd_pair_sample e[3] = {{1, 1, 40}, {2, 1, 40}, {3, 1, -1}};
    assert_int_equal(pd_pairs_from_samples(e, 3, PD_PAIRS_LENGTH, 0.0, out, &oom), 0);
    assert_int_equal(pd_pairs_from_samples(e, 3, PD_PAIRS_CORRECTNESS, 0.0, out, &oom), 0);
    assert_int_equal(pd_pairs_from_samples(NULL, 0, PD_PAIRS_BOTH, 0.0, out, &oom), 0);
    assert_float_equal(pd_pairs_saving(25, 100), 0.75, 1e-12);
    assert_float_equal(pd_pairs_saving(0, 0), 0.0, 0);
}

/* The rules restated naively: every valid pair set checked by its defining properties. */
static void check_group(const struct pd_pair_sample *s, size_t n, double min_saving)
{
    struct pd_pair out[64];
    bool oom;
    size_t np = pd_pairs_from_samples(s, n, PD_PAIRS_BOTH, min_saving, out, &oom);
    size_t n_good = 0, n_bad = 0, n_known = 0;
    for (size_t i = 0; i < n; i++) {
        n_good += s[i].correct == 1;
        n_bad += s[i].correct == 0;
        n_known += s[i].correct == 1 && s[i].tokens >= 0;
    }
    size_t n_corr = 0, n_len = 0;
    int used_c[64] = {0}, used_l[64] = {0};
    for (size_t k = 0; k < np; k++) {
        const struct pd_pair_sample *c = NULL, *r = NULL;
        size_t ci = 0, ri = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i].id == out[k].chosen) {
                c = &s[i];
                ci = i;
            }
            if (s[i].id == out[k].rejected) {
                r = &s[i];
                ri = i;
            }
        }
        assert_non_null(c);
        assert_non_null(r);
        if (out[k].kind == PD_PAIR_CORRECTNESS) {
            assert_int_equal(n_len, 0); /* correctness pairs come first */
            n_corr++;
            assert_int_equal(c->correct, 1);
            assert_int_equal(r->correct, 0);
            assert_int_equal(used_c[ci]++, 0);
            assert_int_equal(used_c[ri]++, 0);
        } else {
            n_len++;
            assert_int_equal(c->correct, 1);
            assert_int_equal(r->correct, 1);
            assert_true(c->tokens >= 0 && c->tokens < r->tokens);
            assert_true(pd_pairs_saving(c->tokens, r->tokens) >= min_saving);
            assert_int_equal(used_l[ci]++, 0);
            assert_int_equal(used_l[ri]++, 0);
        }
    }
    assert_int_equal(n_corr, n_good < n_bad ? n_good : n_bad);
    assert_true(n_len <= n_known / 2);
    /* the length pairs are the extremes: with no threshold, pairs exist exactly when the
     * shortest and the longest known correct samples differ */
    if (min_saving <= 0 && n_known >= 2) {
        int64_t lo = INT64_MAX, hi = -1;
        for (size_t i = 0; i < n; i++) {
            if (s[i].correct == 1 && s[i].tokens >= 0) {
                lo = s[i].tokens < lo ? s[i].tokens : lo;
                hi = s[i].tokens > hi ? s[i].tokens : hi;
            }
        }
        assert_int_equal(n_len > 0, lo < hi);
    }
}

static void test_samples_random(void **state)
{
    (void)state;
    srand(7);
    for (int it = 0; it < 2000; it++) {
        struct pd_pair_sample s[16];
        size_t n = (size_t)(rand() % 16);
        for (size_t i = 0; i < n; i++) {
            s[i].id = (int64_t)(100 + i * 3);
            s[i].correct = rand() % 3 - 1;
            s[i].tokens = rand() % 5 == 0 ? -1 : rand() % 40;
        }
        check_group(s, n, (double)(rand() % 4) * 0.25);
    }
}

static void test_step_forks(void **state)
{
    (void)state;
    struct pd_step_rec st[3] = {{.index = 0, .pos_begin = 5, .pos_end = 9},
                                {.index = 1, .pos_begin = 9, .pos_end = 15},
                                {.index = 2, .pos_begin = 15, .pos_end = 20}};
    assert_int_equal(pd_pairs_step_at(st, 3, 9), 1);
    assert_int_equal(pd_pairs_step_at(st, 3, 10), -1);
    assert_int_equal(pd_pairs_next_step_end(st, 3, 9, 22), 15);
    assert_int_equal(pd_pairs_next_step_end(st, 3, 10, 22), 15);
    assert_int_equal(pd_pairs_next_step_end(st, 3, 15, 22), 22);
    assert_int_equal(pd_pairs_next_step_end(st, 3, 9, 12), 12);
    assert_int_equal(pd_pairs_next_step_end(NULL, 0, 3, 7), 7);
    struct pd_token_rec t[4] = {{.pos = 0, .role = PD_ROLE_PROMPT},
                                {.pos = 1, .role = PD_ROLE_THINK},
                                {.pos = 2, .role = PD_ROLE_INJECTED},
                                {.pos = 3, .role = PD_ROLE_ANSWER}};
    assert_int_equal(pd_pairs_think_end(t, 4), 3);
    assert_int_equal(pd_pairs_think_end(t, 3), 3);
    assert_int_equal(pd_pairs_think_end(NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grade),
        cmocka_unit_test(test_verify_rule),
        cmocka_unit_test(test_samples_fixed),
        cmocka_unit_test(test_samples_random),
        cmocka_unit_test(test_step_forks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
