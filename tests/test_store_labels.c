/* test_store_labels.c - store/store_labels.h: preferences, reference answers (set, imported,
 * round-tripped through the ponder record), question keys and pass rates, prune checks that
 * go stale when the prunes change, and step checks that go with their steps. */
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

#include "mem.h"
#include "store.h"
#include "store_jsonl.h"
#include "store_labels.h"
#include "store_fixture.h"

STORE_FX("labels")

/* A root session asking `user`, with n_tok think tokens "t0 " "t1 " ... */
static int64_t root(struct pd_store *st, const char *user, int n_tok)
{
    struct pd_message m = {PD_STORE_MSG_USER, (char *)user};
    struct pd_session_new sn = {.messages = &m, .n_messages = 1, .source = "test"};
    int64_t id = 0;
    struct pd_err err;
    assert_int_equal(pd_store_session_create(st, &sn, &id, &err), PD_OK);
    for (int i = 0; i < n_tok; i++) {
        char text[16];
        snprintf(text, sizeof text, "t%d ", i);
        struct pd_token_rec t = {.pos = i, .id = i, .role = PD_ROLE_THINK, .text = text,
                                 .text_len = strlen(text), .logprob = NAN, .entropy = NAN};
        assert_int_equal(pd_store_tokens_append(st, id, &t, 1, &err), PD_OK);
    }
    return id;
}

static int64_t branch(struct pd_store *st, int64_t parent, int64_t fork)
{
    struct pd_session_new sn = {.source = "test", .parent_id = parent, .fork_pos = fork};
    int64_t id = 0;
    struct pd_err err;
    assert_int_equal(pd_store_session_create(st, &sn, &id, &err), PD_OK);
    return id;
}

static void test_preferences(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t a = root(f->st, "q", 4), b = branch(f->st, a, 2), c = branch(f->st, a, 2);
    int64_t other = root(f->st, "another question", 2);
    int64_t id = 0;
    assert_int_equal(pd_store_prefer(f->st, b, a, "steered well", &id, &err), PD_OK);
    assert_true(id > 0);
    /* refused: itself, unknown sessions, another conversation */
    assert_int_equal(pd_store_prefer(f->st, a, a, NULL, NULL, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "itself"));
    assert_int_equal(pd_store_prefer(f->st, a, 999, NULL, NULL, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "999"));
    assert_int_equal(pd_store_prefer(f->st, other, a, NULL, NULL, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "different conversations"));
    /* siblings; the same mark again updates the note */
    assert_int_equal(pd_store_prefer(f->st, c, b, NULL, NULL, &err), PD_OK);
    assert_int_equal(pd_store_prefer(f->st, b, a, "still", NULL, &err), PD_OK);
    struct pd_pref *p;
    size_t n;
    assert_int_equal(pd_store_prefs_get(f->st, 0, &p, &n, &err), PD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(p[0].chosen_id, b);
    assert_int_equal(p[0].rejected_id, a);
    assert_string_equal(p[0].note, "still");
    assert_int_equal(p[1].chosen_id, c);
    pd_store_prefs_free(p, n);
    /* the other way round replaces it */
    assert_int_equal(pd_store_prefer(f->st, a, b, NULL, NULL, &err), PD_OK);
    assert_int_equal(pd_store_prefs_get(f->st, a, &p, &n, &err), PD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(p[0].chosen_id, a);
    assert_int_equal(p[0].rejected_id, b);
    assert_string_equal(p[0].note, "");
    pd_store_prefs_free(p, n);
    assert_int_equal(pd_store_unprefer(f->st, b, a, &err), PD_OK);
    assert_int_equal(pd_store_prefs_get(f->st, a, &p, &n, &err), PD_OK);
    assert_int_equal(n, 0);
    pd_store_prefs_free(p, n);
    /* deleting a session deletes its preferences */
    assert_int_equal(pd_store_session_delete(f->st, c, &err), PD_OK);
    assert_int_equal(pd_store_prefs_get(f->st, 0, &p, &n, &err), PD_OK);
    assert_int_equal(n, 0);
    pd_store_prefs_free(p, n);
}

static void test_references(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t a = root(f->st, "q", 1);
    assert_int_equal(pd_store_reference_set(f->st, a, "42", &err), PD_OK);
    struct pd_store_session_info info;
    assert_int_equal(pd_store_session_get(f->st, a, &info, &err), PD_OK);
    assert_string_equal(info.reference, "42");
    pd_store_session_info_free(&info);
    assert_int_equal(pd_store_reference_set(f->st, a, "", &err), PD_EINVAL);
    assert_int_equal(pd_store_reference_set(f->st, a, "\xff", &err), PD_EINVAL);
    assert_int_equal(pd_store_reference_set(f->st, 999, "1", &err), PD_EINVAL);
    char *big = malloc(PD_REFERENCE_MAX + 2);
    memset(big, 'x', PD_REFERENCE_MAX + 1);
    big[PD_REFERENCE_MAX + 1] = '\0';
    assert_int_equal(pd_store_reference_set(f->st, a, big, &err), PD_EINVAL);
    struct pd_message m = {PD_STORE_MSG_USER, "q"};
    struct pd_session_new sn = {.messages = &m, .n_messages = 1, .reference = big};
    int64_t id;
    assert_int_equal(pd_store_session_create(f->st, &sn, &id, &err), PD_EINVAL);
    free(big);
    assert_int_equal(pd_store_reference_set(f->st, a, NULL, &err), PD_OK);
    assert_int_equal(pd_store_session_get(f->st, a, &info, &err), PD_OK);
    assert_null(info.reference);
    pd_store_session_info_free(&info);
}

/* Imports one JSONL line; returns the session id. */
static int64_t import_line(struct pd_store *st, const char *line, enum pd_status want)
{
    int64_t id = 0;
    struct pd_err err;
    enum pd_status rc = pd_jsonl_import_record(st, line, strlen(line), "t.jsonl:1", &id, &err);
    if (rc != want) {
        fail_msg("%s: %s", line, err.msg);
    }
    return id;
}

static void assert_reference(struct pd_store *st, int64_t id, const char *want)
{
    struct pd_store_session_info info;
    struct pd_err err;
    assert_int_equal(pd_store_session_get(st, id, &info, &err), PD_OK);
    if (want) {
        assert_non_null(info.reference);
        assert_string_equal(info.reference, want);
    } else {
        assert_null(info.reference);
    }
    pd_store_session_info_free(&info);
}

static void test_import_reference(void **state)
{
    struct store_fx *f = *state;
    /* answer next to a generation: the reference, and kept in meta */
    int64_t a = import_line(f->st, "{\"problem\":\"p\",\"generation\":\"g 16\",\"answer\":\"16\"}",
                            PD_OK);
    assert_reference(f->st, a, "16");
    struct pd_store_session_info info;
    struct pd_err err;
    assert_int_equal(pd_store_session_get(f->st, a, &info, &err), PD_OK);
    assert_string_equal(info.meta, "{\"answer\":\"16\"}");
    pd_store_session_info_free(&info);
    /* answer used as the completion: solution, then gold, are the reference */
    int64_t b = import_line(f->st, "{\"question\":\"p\",\"answer\":\"it is 3\",\"gold\":3}",
                            PD_OK);
    assert_reference(f->st, b, "3");
    int64_t c = import_line(f->st, "{\"question\":\"p\",\"response\":\"r\",\"solution\":2.5,"
                                   "\"gold\":\"x\"}",
                            PD_OK);
    assert_reference(f->st, c, "2.5");
    /* a number under answer is a reference, not a completion: a prompt to generate from */
    int64_t n = import_line(f->st, "{\"question\":\"p\",\"answer\":45}", PD_OK);
    assert_reference(f->st, n, "45");
    assert_int_equal(pd_store_session_get(f->st, n, &info, &err), PD_OK);
    assert_false(info.finished); /* no final turn */
    pd_store_session_info_free(&info);
    /* messages records take a top-level answer; empty strings and objects are no answer */
    int64_t d = import_line(f->st, "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],"
                                   "\"answer\":\"\",\"gold\":{\"x\":1}}",
                            PD_OK);
    assert_reference(f->st, d, NULL);
    int64_t e = import_line(f->st, "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],"
                                   "\"gold\":\"B\"}",
                            PD_OK);
    assert_reference(f->st, e, "B");
    /* the ponder record carries it and gives it back */
    char *line = NULL;
    assert_int_equal(pd_jsonl_session_record(f->st, e, PD_JSONL_PONDER, &line, &err), PD_OK);
    assert_non_null(strstr(line, "\"reference\":\"B\""));
    int64_t e2 = import_line(f->st, line, PD_OK);
    free(line);
    assert_reference(f->st, e2, "B");
    import_line(f->st, "{\"ponder\":1,\"session\":{\"reference\":7},\"tokens\":[]}", PD_EFORMAT);
}

static void test_questions(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t a = root(f->st, "2+2?", 1), b = root(f->st, "2+2?", 1), c = root(f->st, "2+2?", 1);
    int64_t br = branch(f->st, a, 1);
    char *ka, *kb;
    assert_int_equal(pd_store_prompt_key(f->st, a, &ka, &err), PD_OK);
    assert_int_equal(pd_store_prompt_key(f->st, b, &kb, &err), PD_OK);
    assert_string_equal(ka, "[{\"role\":\"user\",\"content\":\"2+2?\"}]");
    assert_string_equal(ka, kb);
    free(kb);
    struct pd_sample_grade g[3] = {{a, "4", 1}, {b, "5", 0}, {c, NULL, -1}};
    int64_t q = 0;
    assert_int_equal(pd_store_question_put(f->st, ka, "4", g, 3, &q, &err), PD_OK);
    struct pd_question qq;
    assert_int_equal(pd_store_question_get(f->st, q, &qq, &err), PD_OK);
    assert_int_equal(qq.n_samples, 3);
    assert_int_equal(qq.n_graded, 2);
    assert_int_equal(qq.n_correct, 1);
    assert_float_equal(qq.pass_rate, 0.5, 1e-12);
    assert_string_equal(qq.reference, "4");
    pd_store_question_free(&qq);
    struct pd_session_grade sg;
    assert_int_equal(pd_store_session_grade(f->st, b, &sg, &err), PD_OK);
    assert_int_equal(sg.question_id, q);
    assert_string_equal(sg.answer, "5");
    assert_int_equal(sg.correct, 0);
    assert_float_equal(sg.pass_rate, 0.5, 1e-12);
    pd_store_session_grade_free(&sg);
    struct pd_sample *s;
    size_t n;
    assert_int_equal(pd_store_question_samples(f->st, q, &s, &n, &err), PD_OK);
    assert_int_equal(n, 3);
    assert_int_equal(s[2].session_id, c);
    assert_int_equal(s[2].correct, -1);
    free(s);
    /* grading again updates the same question */
    g[1].correct = 1;
    int64_t q2 = 0;
    assert_int_equal(pd_store_question_put(f->st, ka, "4", g, 3, &q2, &err), PD_OK);
    assert_int_equal(q2, q);
    assert_int_equal(pd_store_session_grade(f->st, b, &sg, &err), PD_OK);
    assert_float_equal(sg.pass_rate, 1.0, 1e-12);
    pd_store_session_grade_free(&sg);
    int64_t *ids;
    assert_int_equal(pd_store_question_ids(f->st, &ids, &n, &err), PD_OK);
    assert_int_equal(n, 1);
    free(ids);
    /* branches are no samples; bad grades and unknown sessions are refused */
    struct pd_sample_grade bad = {br, NULL, -1};
    assert_int_equal(pd_store_question_put(f->st, ka, NULL, &bad, 1, NULL, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "branch"));
    bad = (struct pd_sample_grade){a, NULL, 2};
    assert_int_equal(pd_store_question_put(f->st, ka, NULL, &bad, 1, NULL, &err), PD_EINVAL);
    bad = (struct pd_sample_grade){999, NULL, 1};
    assert_int_equal(pd_store_question_put(f->st, ka, NULL, &bad, 1, NULL, &err), PD_EINVAL);
    assert_int_equal(pd_store_question_get(f->st, 999, &qq, &err), PD_EINVAL);
    free(ka);
    /* an ungraded session */
    int64_t d = root(f->st, "other", 1);
    assert_int_equal(pd_store_session_grade(f->st, d, &sg, &err), PD_OK);
    assert_int_equal(sg.question_id, 0);
    assert_int_equal(sg.correct, -1);
    assert_true(isnan(sg.pass_rate));
    pd_store_session_grade_free(&sg);
}

static void test_prune_checks(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t a = root(f->st, "q", 6);
    struct pd_step_rec steps[3] = {{.index = 0, .pos_begin = 0, .pos_end = 2},
                                   {.index = 1, .pos_begin = 2, .pos_end = 4},
                                   {.index = 2, .pos_begin = 4, .pos_end = 6}};
    assert_int_equal(pd_store_steps_put(f->st, a, steps, 3, &err), PD_OK);
    assert_int_equal(pd_store_prune(f->st, a, 1, "asap:keep=0.5", "auto", &err), PD_OK);
    char *sig;
    assert_int_equal(pd_store_prunes_signature(f->st, a, &sig, &err), PD_OK);
    assert_string_equal(sig, "1:2-4");
    free(sig);
    struct pd_prune_check_rec c = {.strategy = "asap:keep=0.5", .answer_tokens = 3,
                                   .logprob_full = -2.5, .logprob_pruned = NAN,
                                   .greedy_compared = 3, .greedy_same = true};
    assert_int_equal(pd_store_prune_check_put(f->st, a, &c, &err), PD_OK);
    struct pd_prune_check_rec got;
    bool found;
    assert_int_equal(pd_store_prune_check_get(f->st, a, &got, &found, &err), PD_OK);
    assert_true(found);
    assert_true(got.current);
    assert_string_equal(got.pruned, "1:2-4");
    assert_string_equal(got.strategy, "asap:keep=0.5");
    assert_float_equal(got.logprob_full, -2.5, 0);
    assert_true(isnan(got.logprob_pruned));
    assert_true(got.greedy_same);
    pd_store_prune_check_free(&got);
    /* another prune makes the check stale */
    assert_int_equal(pd_store_prune(f->st, a, 2, "manual", "user", &err), PD_OK);
    assert_int_equal(pd_store_prune_check_get(f->st, a, &got, &found, &err), PD_OK);
    assert_true(found);
    assert_false(got.current);
    pd_store_prune_check_free(&got);
    c.strategy = "";
    assert_int_equal(pd_store_prune_check_put(f->st, a, &c, &err), PD_EINVAL);
    int64_t b = root(f->st, "q2", 1);
    assert_int_equal(pd_store_prune_check_get(f->st, b, &got, &found, &err), PD_OK);
    assert_false(found);
    /* step checks: only for existing steps; they go with their steps */
    struct pd_step_check_rec sc[2] = {{.step_index = 1, .logprob_full = -1,
                                       .logprob_without = -3, .greedy_compared = 2},
                                      {.step_index = 2, .logprob_full = NAN,
                                       .logprob_without = NAN, .greedy_same = true}};
    assert_int_equal(pd_store_step_checks_put(f->st, a, sc, 2, &err), PD_OK);
    struct pd_step_check_rec *r;
    size_t n;
    assert_int_equal(pd_store_step_checks_get(f->st, a, &r, &n, &err), PD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].step_index, 1);
    assert_false(r[0].greedy_same);
    assert_float_equal(r[0].logprob_without, -3, 0);
    assert_true(r[1].greedy_same);
    assert_true(isnan(r[1].logprob_full));
    free(r);
    sc[0].step_index = 7;
    assert_int_equal(pd_store_step_checks_put(f->st, a, sc, 2, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "step 7"));
    assert_int_equal(pd_store_step_checks_get(f->st, a, &r, &n, &err), PD_OK);
    assert_int_equal(n, 2); /* the failed put changed nothing */
    free(r);
    assert_int_equal(pd_store_steps_replace(f->st, a, steps, 3, &err), PD_OK);
    assert_int_equal(pd_store_step_checks_get(f->st, a, &r, &n, &err), PD_OK);
    assert_int_equal(n, 0);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_preferences, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_references, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_import_reference, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_questions, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_prune_checks, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
