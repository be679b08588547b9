/* test_eval.c - what `ponder eval` is built on: answer extraction and matching
 * (analysis/answer.h) and problem-set files (store/store_problems.h), with a named test per
 * rejected input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "answer.h"
#include "store_problems.h"

static const char *extract(const char *text)
{
    static char out[PD_ANSWER_MAX];
    return pd_answer_extract(text, strlen(text), "<think>", "</think>", out) ? out : NULL;
}

static void test_extract(void **state)
{
    (void)state;
    /* the text after the last close marker, its last number */
    assert_string_equal(extract("<think>\n2+9=11, so 831.\n</think>\n\n472 + 359 = 831"), "831");
    assert_string_equal(extract("<think>\nx</think>\n\n472 - 859 = -387<|im_end|>"), "-387");
    assert_string_equal(extract("The larger number is 4721."), "4721");
    assert_string_equal(extract("x = 7"), "7");
    assert_string_equal(extract("It costs 1,250 dollars"), "1,250");
    assert_string_equal(extract("pi is about 3.14."), "3.14");
    /* a minus between digits is subtraction, not a sign */
    assert_string_equal(extract("20-80"), "80");
    /* numbers inside the thinking do not count */
    assert_null(extract("<think>\nSo far: 31."));
    assert_null(extract("<think>\n12\n</think>\n\nno idea"));
    /* \boxed wins over later numbers, nested braces kept */
    assert_string_equal(extract("</think>\\boxed{\\frac{1}{2}} (step 3)"), "\\frac{1}{2}");
    assert_string_equal(extract("\\boxed{B}"), "B");
    /* an unclosed box falls back to an earlier one, then to numbers */
    assert_string_equal(extract("\\boxed{5} and \\boxed{6"), "5");
    /* families without markers: the whole completion */
    char out[PD_ANSWER_MAX];
    assert_true(pd_answer_extract("so 12", 5, NULL, NULL, out));
    assert_string_equal(out, "12");
}

static void test_match(void **state)
{
    (void)state;
    assert_true(pd_answer_match("831", "831"));
    assert_true(pd_answer_match("1,250", "1250"));
    assert_true(pd_answer_match("3.50", "3.5"));
    assert_true(pd_answer_match("72", "Natalia sold 48+24 = 72 clips.\n#### 72"));
    assert_true(pd_answer_match("-387", "-387"));
    assert_true(pd_answer_match("b", " B "));
    assert_false(pd_answer_match("387", "-387"));
    assert_false(pd_answer_match("831", "832"));
    assert_false(pd_answer_match("", "0"));
    assert_false(pd_answer_match(NULL, "1"));
    assert_false(pd_answer_match("12", "twelve"));
}

/* Writes text to a temporary file; returns its path (static buffer). */
static const char *tmp_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/pd-problems-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_problems_read(void **state)
{
    (void)state;
    const char *p = tmp_file("{\"id\":1,\"type\":\"add\",\"question\":\"What is 2 + 3?\","
                             "\"answer\":5}\n"
                             "\n"
                             "{\"problem\":\"Q2\",\"answer\":\"x #### 12\",\"extra\":[1]}\n"
                             "{\"prompt\":\"Q3\",\"answer\":2.5,\"id\":\"p3\"}\n");
    struct pd_problem *v = NULL;
    size_t n = 0;
    struct pd_err err;
    assert_int_equal(pd_problems_read(p, &v, &n, &err), PD_OK);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].question, "What is 2 + 3?");
    assert_string_equal(v[0].answer, "5");
    assert_string_equal(v[0].type, "add");
    assert_string_equal(v[0].id, "1");
    assert_string_equal(v[1].question, "Q2");
    assert_null(v[1].type);
    assert_string_equal(v[1].id, "3"); /* the line number */
    assert_int_equal(v[1].line, 3);
    assert_string_equal(v[2].answer, "2.5");
    assert_string_equal(v[2].id, "p3");
    pd_problems_free(v, n);
    unlink(p);
}

/* Each bad line is rejected with the file, line and field in the message. */
static void expect_reject(const char *text, const char *needle)
{
    const char *p = tmp_file(text);
    struct pd_problem *v = (struct pd_problem *)1;
    size_t n = 7;
    struct pd_err err;
    assert_int_equal(pd_problems_read(p, &v, &n, &err), PD_EFORMAT);
    assert_null(v);
    assert_int_equal(n, 0);
    if (!strstr(err.msg, needle) || !strstr(err.msg, p)) {
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
    }
    unlink(p);
}

static void test_problems_reject_missing_question(void **state)
{
    (void)state;
    expect_reject("{\"answer\":1}\n", ":1: question: missing");
}

static void test_problems_reject_missing_answer(void **state)
{
    (void)state;
    expect_reject("{\"question\":\"q\",\"answer\":1}\n{\"question\":\"q\"}\n",
                  ":2: answer: missing");
}

static void test_problems_reject_bad_types(void **state)
{
    (void)state;
    expect_reject("{\"question\":3,\"answer\":1}\n", "question: expected a non-empty string");
    expect_reject("{\"question\":\"\",\"answer\":1}\n", "expected a non-empty string");
    expect_reject("{\"question\":\"q\",\"answer\":[1]}\n", "answer: expected a string or a");
    expect_reject("{\"question\":\"q\",\"answer\":1,\"id\":1.5}\n", "id: expected");
    expect_reject("{\"question\":\"q\",\"answer\":1,\"type\":2}\n", "type: expected a string");
}

static void test_problems_reject_bad_json(void **state)
{
    (void)state;
    expect_reject("{\"question\":\"q\",\"answer\":1\n", ":1: invalid JSON");
    expect_reject("[1,2]\n", ":1: not a JSON object");
    expect_reject("{\"question\":\"q\",\"question\":\"r\",\"answer\":1}\n", "invalid JSON");
    expect_reject("{\"question\":\"\xff\",\"answer\":1}\n", ":1: invalid UTF-8");
    expect_reject("{\"question\":\"a\\u0000b\",\"answer\":1}\n", "1:");
}

static void test_problems_missing_file(void **state)
{
    (void)state;
    struct pd_problem *v = NULL;
    size_t n = 0;
    struct pd_err err;
    assert_int_equal(pd_problems_read("/nonexistent/p.jsonl", &v, &n, &err), PD_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/p.jsonl"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extract),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_problems_read),
        cmocka_unit_test(test_problems_reject_missing_question),
        cmocka_unit_test(test_problems_reject_missing_answer),
        cmocka_unit_test(test_problems_reject_bad_types),
        cmocka_unit_test(test_problems_reject_bad_json),
        cmocka_unit_test(test_problems_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
