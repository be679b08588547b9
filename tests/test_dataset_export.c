/* test_dataset_export.c - `ponder export --format dpo|step-dpo|kto` through the real binary
 * ($PONDER_BIN) on a database built here with the store API, so every rule of
 * docs/export.md "Where the pairs come from" is checked without a model: marked pairs from
 * preferences and chosen/rejected tags (the explicit mark wins, no duplicates), step pairs
 * of branches that part at a step boundary (branch and parent, siblings) and not elsewhere,
 * verified prunes under both verification rules (stale checks and wrong answers left out,
 * the minimum saving), step checks, graded samples (correctness and length), the kto
 * sources, the filters, the JSON summary, and the usage errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "store_labels.h"

static const char *bin;
static char dir[64];
static char db[128];

/* the sessions of the fixture database */
static int64_t R, X, Y, Z, P, Q, W;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Runs "ponder export --db DB ARGS"; stdout in *out (owned), the exit status returned. */
static int export(const char *args, char **out)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' export --db '%s' %s >'%s/stdout' 2>'%s/stderr'",
             dir, bin, db, args, dir, dir);
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    char p[160];
    snprintf(p, sizeof p, "%s/stdout", dir);
    if (out) {
        *out = slurp(p);
    }
    return WEXITSTATUS(st);
}

/* The records of a JSONL text as a JSON array (owned). */
static json_t *records(const char *text)
{
    json_t *arr = json_array();
    for (const char *l = text; *l;) {
        const char *e = strchr(l, '\n');
        assert_non_null(e);
        json_error_t je;
        json_t *r = json_loadb(l, (size_t)(e - l), 0, &je);
        if (!r) {
            fail_msg("bad line: %s", je.text);
        }
        json_array_append_new(arr, r);
        l = e + 1;
    }
    return arr;
}

static const char *str(json_t *rec, const char *key)
{
    const char *s = json_string_value(json_object_get(rec, key));
    assert_non_null(s);
    return s;
}

static int64_t meta_int(json_t *rec, const char *key)
{
    json_t *v = json_object_get(json_object_get(rec, "metadata"), key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static const char *meta_str(json_t *rec, const char *key)
{
    return json_string_value(json_object_get(json_object_get(rec, "metadata"), key));
}

/* ---- the fixture ---------------------------------------------------------------------- */

static int64_t session(struct pd_store *st, int64_t parent, int64_t fork)
{
    struct pd_message m = {PD_STORE_MSG_USER, "What is 2+2?"};
    struct pd_session_new sn = {.messages = parent ? NULL : &m, .n_messages = parent ? 0 : 1,
                                .source = "t", .parent_id = parent, .fork_pos = fork};
    int64_t id = 0;
    struct pd_err err;
    assert_int_equal(pd_store_session_create(st, &sn, &id, &err), PD_OK);
    return id;
}

/* Tokens from position pos: "T:" think, "A:" answer, "P:" prompt. */
static void tokens(struct pd_store *st, int64_t sid, int64_t pos, const char *const *t)
{
    struct pd_err err;
    for (size_t i = 0; t[i]; i++, pos++) {
        enum pd_role role = t[i][0] == 'T' ? PD_ROLE_THINK
                            : t[i][0] == 'A' ? PD_ROLE_ANSWER : PD_ROLE_PROMPT;
        struct pd_token_rec r = {.pos = pos, .id = 7, .role = role, .text = (char *)t[i] + 2,
                                 .text_len = strlen(t[i] + 2), .logprob = -1, .entropy = 1};
        if (pd_store_tokens_append(st, sid, &r, 1, &err) != PD_OK) {
            fail_msg("%s", err.msg);
        }
    }
}

/* Steps with the given begins (ascending); each ends where the next begins, the last at
 * end. */
static void steps(struct pd_store *st, int64_t sid, const int64_t *begin, size_t n, int64_t end)
{
    struct pd_step_rec s[8];
    for (size_t i = 0; i < n; i++) {
        s[i] = (struct pd_step_rec){.index = (int32_t)i, .pos_begin = begin[i],
                                    .pos_end = i + 1 < n ? begin[i + 1] : end,
                                    .mean_surprisal = NAN, .first_surprisal = NAN,
                                    .mean_entropy = NAN, .attn_received = NAN};
    }
    struct pd_err err;
    assert_int_equal(pd_store_steps_put(st, sid, s, n, &err), PD_OK);
}

static void tag(struct pd_store *st, int64_t sid, const char *t)
{
    struct pd_annotation a = {.whole_session = true, .tag = (char *)t};
    struct pd_err err;
    assert_int_equal(pd_store_annotate(st, sid, &a, NULL, &err), PD_OK);
}

static void check(struct pd_store *st, int64_t sid, bool same, double full, double pruned)
{
    struct pd_prune_check_rec c = {.strategy = "asap:keep=0.5", .answer_tokens = 1,
                                   .logprob_full = full, .logprob_pruned = pruned,
                                   .greedy_compared = 1, .greedy_same = same};
    struct pd_err err;
    assert_int_equal(pd_store_prune_check_put(st, sid, &c, &err), PD_OK);
}

/* R: the root, three steps. X, Y: branches of R where its step 1 begins (siblings); Z: a
 * branch inside step 0. Tags: X chosen, Y rejected; preferences: Y over X (it overrides
 * the tags' X over Y) and Z over R. P, Q, W: more roots of the same prompt with prunes and
 * checks; the question is graded: R, P right, Q wrong, W ungraded. */
static void build(void)
{
    struct pd_store *st;
    struct pd_err err;
    assert_int_equal(pd_store_open(db, NULL, &st, &err), PD_OK);
    const int64_t b3[] = {1, 3, 5};
    R = session(st, 0, 0);
    tokens(st, R, 0, (const char *const[]){"P:<p>", "T:Step A.", "T:\n\n", "T:Step B.", "T:\n\n",
                                          "T:Step C.", "A:It is 4.", NULL});
    steps(st, R, b3, 3, 6);
    X = session(st, R, 3);
    tokens(st, X, 3, (const char *const[]){"T:Other B.", "T:\n\n", "T:Step C2.",
                                          "A:It is 4.", NULL});
    steps(st, X, b3, 3, 6);
    Y = session(st, R, 3);
    tokens(st, Y, 3, (const char *const[]){"T:Third B.", "T:\n\n", "A:It is 5.", NULL});
    steps(st, Y, b3, 2, 5);
    Z = session(st, R, 2);
    tokens(st, Z, 2, (const char *const[]){"T: more.", "A:It is 4.", NULL});
    tag(st, X, "chosen");
    tag(st, Y, "rejected");
    assert_int_equal(pd_store_prefer(st, Y, X, NULL, NULL, &err), PD_OK);
    assert_int_equal(pd_store_prefer(st, Z, R, NULL, NULL, &err), PD_OK);
    /* P: step 1 pruned; the pruned trace keeps the answer (greedy), logprob -5 -> -5.5;
     * removing step 1 alone changed the greedy answer, removing step 2 did not */
    P = session(st, 0, 0);
    tokens(st, P, 0, (const char *const[]){"P:<p>", "T:Long one.", "T:\n\n", "T:Extra.",
                                          "T: more.", "T: more.", "T:\n\n", "T:Done.",
                                          "A:It is 4.", NULL});
    const int64_t bp[] = {1, 3, 7};
    steps(st, P, bp, 3, 8);
    assert_int_equal(pd_store_prune(st, P, 1, "asap:keep=0.5", "auto", &err), PD_OK);
    check(st, P, true, -5, -5.5);
    struct pd_step_check_rec sc[2] = {{1, -5, -9, 1, false}, {2, -5, -5, 1, true}};
    assert_int_equal(pd_store_step_checks_put(st, P, sc, 2, &err), PD_OK);
    /* Q: a passing check, but the trace is graded wrong; W: a check made stale */
    Q = session(st, 0, 0);
    tokens(st, Q, 0, (const char *const[]){"P:<p>", "T:Guess.", "T:\n\n", "T:Again.",
                                          "A:It is 5.", NULL});
    const int64_t b2[] = {1, 3};
    steps(st, Q, b2, 2, 4);
    assert_int_equal(pd_store_prune(st, Q, 1, "manual", "user", &err), PD_OK);
    check(st, Q, true, -1, -1);
    W = session(st, 0, 0);
    tokens(st, W, 0, (const char *const[]){"P:<p>", "T:Hm.", "T:\n\n", "T:Hm hm.",
                                          "A:It is 4.", NULL});
    steps(st, W, b2, 2, 4);
    assert_int_equal(pd_store_prune(st, W, 1, "manual", "user", &err), PD_OK);
    check(st, W, true, -1, -1);
    assert_int_equal(pd_store_unprune(st, W, 1, &err), PD_OK);
    assert_int_equal(pd_store_prune(st, W, 0, "manual", "user", &err), PD_OK);
    char *key = NULL;
    assert_int_equal(pd_store_prompt_key(st, R, &key, &err), PD_OK);
    struct pd_sample_grade g[4] = {{R, "4", 1}, {P, "4", 1}, {Q, "5", 0}, {W, NULL, -1}};
    assert_int_equal(pd_store_question_put(st, key, "4", g, 4, NULL, &err), PD_OK);
    free(key);
    pd_store_close(&st);
}

static int setup(void **state)
{
    (void)state;
    bin = getenv("PONDER_BIN");
    if (!bin) {
        fprintf(stderr, "PONDER_BIN is not set (run through meson test)\n");
        return -1;
    }
    snprintf(dir, sizeof dir, "/tmp/pd_dscli_XXXXXX");
    if (!mkdtemp(dir)) {
        return -1;
    }
    snprintf(db, sizeof db, "%s/t.db", dir);
    build();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void assert_pair(json_t *rec, const char *source, int64_t chosen, int64_t rejected)
{
    assert_string_equal(meta_str(rec, "source"), source);
    assert_int_equal(meta_int(rec, "chosen_session"), chosen);
    assert_int_equal(meta_int(rec, "rejected_session"), rejected);
}

static void test_dpo_marked(void **state)
{
    (void)state;
    char *out;
    assert_int_equal(export("--format dpo --sources marked", &out), 0);
    json_t *r = records(out);
    /* preferences Y>X, Z>R; tags X>R (chosen branch), R>Y (rejected branch); the tags'
     * X>Y gives way to the stored Y>X; sorted by (chosen, rejected) */
    assert_int_equal(json_array_size(r), 4);
    assert_pair(json_array_get(r, 0), "marked", R, Y);
    assert_pair(json_array_get(r, 1), "marked", X, R);
    assert_pair(json_array_get(r, 2), "marked", Y, X);
    assert_pair(json_array_get(r, 3), "marked", Z, R);
    assert_string_equal(str(json_array_get(r, 1), "chosen"),
                        "<think>\nStep A.\n\nOther B.\n\nStep C2.\n</think>\n\nIt is 4.");
    assert_string_equal(str(json_array_get(r, 1), "prompt"), "What is 2+2?");
    json_decref(r);
    free(out);
}

static void test_step_marked(void **state)
{
    (void)state;
    char *out;
    assert_int_equal(export("--format step-dpo --sources marked --out s.jsonl --json", &out), 0);
    assert_non_null(strstr(out, "\"written\":3"));
    assert_non_null(strstr(out, "\"not_at_step\":1")); /* Z forks inside step 0 */
    free(out);
    char p[160];
    snprintf(p, sizeof p, "%s/s.jsonl", dir);
    out = slurp(p);
    json_t *r = records(out);
    assert_int_equal(json_array_size(r), 3);
    /* R over Y: parent and branch part where R's step 1 begins */
    json_t *a = json_array_get(r, 0);
    assert_string_equal(str(a, "initial_reason_steps"), "Step A.\n\n");
    assert_string_equal(str(a, "chosen"), "Step B.");
    assert_string_equal(str(a, "rejected"), "Third B.");
    assert_int_equal(meta_int(a, "step"), 1);
    /* X over R */
    json_t *b = json_array_get(r, 1);
    assert_string_equal(str(b, "chosen"), "Other B.");
    assert_string_equal(str(b, "rejected"), "Step B.");
    /* Y over X: siblings forked at the same step boundary */
    json_t *c = json_array_get(r, 2);
    assert_string_equal(str(c, "initial_reason_steps"), "Step A.\n\n");
    assert_string_equal(str(c, "chosen"), "Third B.");
    assert_string_equal(str(c, "rejected"), "Other B.");
    json_decref(r);
    free(out);
}

static void test_dpo_pruned_rules(void **state)
{
    (void)state;
    char *out;
    /* greedy: P's check passes; Q is graded wrong, W's check is stale */
    assert_int_equal(export("--format dpo --sources pruned", &out), 0);
    json_t *r = records(out);
    assert_int_equal(json_array_size(r), 1);
    json_t *a = json_array_get(r, 0);
    assert_pair(a, "pruned", P, P);
    assert_string_equal(str(a, "chosen"),
                        "<think>\nLong one.\n\nDone.\n</think>\n\nIt is 4.");
    assert_string_equal(str(a, "rejected"),
                        "<think>\nLong one.\n\nExtra. more. more.\n\nDone.\n</think>\n\nIt is 4.");
    assert_int_equal(meta_int(a, "chosen_tokens"), 4);
    assert_int_equal(meta_int(a, "rejected_tokens"), 8);
    json_decref(r);
    free(out);
    /* a logprob drop of 0.5 nats passes at 0.5, fails at 0.4 */
    assert_int_equal(export("--format dpo --sources pruned --verify-rule logprob:0.5", &out), 0);
    assert_non_null(strstr(out, "\"source\":\"pruned\""));
    free(out);
    assert_int_equal(export("--format dpo --sources pruned --verify-rule logprob:0.4", &out), 0);
    assert_string_equal(out, "");
    free(out);
    /* the pruned trace saves 4 of 8 tokens */
    assert_int_equal(export("--format dpo --sources pruned --min-saving 0.5", &out), 0);
    assert_non_null(strstr(out, "\"source\":\"pruned\""));
    free(out);
    assert_int_equal(export("--format dpo --sources pruned --min-saving 0.51", &out), 0);
    assert_string_equal(out, "");
    free(out);
}

static void test_dpo_samples(void **state)
{
    (void)state;
    char *out;
    assert_int_equal(export("--format dpo --sources samples", &out), 0);
    json_t *r = records(out);
    /* correct R (6 tokens), P (8); wrong Q: R over Q; shorter R over longer P */
    assert_int_equal(json_array_size(r), 2);
    assert_pair(json_array_get(r, 0), "correctness", R, Q);
    assert_pair(json_array_get(r, 1), "length", R, P);
    json_t *d = json_object_get(json_object_get(json_array_get(r, 0), "metadata"), "difficulty");
    assert_float_equal(json_real_value(d), 1.0 / 3.0, 1e-6);
    json_decref(r);
    free(out);
    assert_int_equal(export("--format dpo --sources samples --pairs correctness", &out), 0);
    assert_null(strstr(out, "\"length\""));
    free(out);
    assert_int_equal(export("--format dpo --sources samples --pairs length --min-saving 0.3",
                            &out), 0);
    assert_string_equal(out, ""); /* 6 over 8 saves 0.25 */
    free(out);
    /* difficulty filters: the question's difficulty is 1/3 */
    assert_int_equal(export("--format dpo --sources samples --min-difficulty 0.5", &out), 0);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(export("--format dpo --sources samples --max-difficulty 0.5", &out), 0);
    assert_non_null(strstr(out, "correctness"));
    free(out);
    /* session filter: a pair needs both of its sessions */
    char args[128];
    snprintf(args, sizeof args, "--format dpo --sources samples --session %lld", (long long)R);
    assert_int_equal(export(args, &out), 0);
    assert_string_equal(out, "");
    free(out);
}

static void test_step_pruned_and_kto(void **state)
{
    (void)state;
    char *out;
    assert_int_equal(export("--format step-dpo --sources pruned", &out), 0);
    json_t *r = records(out);
    /* removing P's step 1 alone changed the answer: keep it over skipping to step 2 */
    assert_int_equal(json_array_size(r), 1);
    json_t *a = json_array_get(r, 0);
    assert_string_equal(meta_str(a, "source"), "pruned-step");
    assert_string_equal(str(a, "initial_reason_steps"), "Long one.\n\n");
    assert_string_equal(str(a, "chosen"), "Extra. more. more.");
    assert_string_equal(str(a, "rejected"), "Done.");
    json_decref(r);
    free(out);
    assert_int_equal(export("--format kto", &out), 0);
    r = records(out);
    /* reference: R true, P true, Q false (by session); verified: P (pruned) true */
    assert_int_equal(json_array_size(r), 4);
    const int64_t sid[] = {R, P, Q, P};
    const bool label[] = {true, true, false, true};
    const char *src[] = {"reference", "reference", "reference", "verified"};
    for (size_t i = 0; i < 4; i++) {
        json_t *k = json_array_get(r, i);
        assert_int_equal(meta_int(k, "session"), sid[i]);
        assert_int_equal(json_is_true(json_object_get(k, "label")), label[i]);
        assert_string_equal(meta_str(k, "source"), src[i]);
    }
    json_decref(r);
    free(out);
    assert_int_equal(export("--format kto --sources verified --verify-rule logprob:0.1", &out), 0);
    assert_non_null(strstr(out, "\"label\":false"));
    free(out);
}

static void test_summary_card_and_errors(void **state)
{
    (void)state;
    char *out;
    assert_int_equal(export("--format dpo --out d.jsonl --card --json", &out), 0);
    assert_non_null(strstr(out, "\"written\":7"));
    assert_non_null(strstr(out, "\"sources\":{\"marked\":4,\"pruned\":1,\"correctness\":1,"
                                "\"length\":1}"));
    free(out);
    char p[160];
    snprintf(p, sizeof p, "%s/README.md", dir);
    char *card = slurp(p);
    assert_non_null(strstr(card, "    num_examples: 7\n"));
    assert_non_null(strstr(card, "--format dpo --out d.jsonl --card --json"));
    free(card);
    /* usage errors: exit 2, nothing written */
    const char *bad[] = {
        "--format step-dpo --conversational",
        "--format dpo --card",
        "--format messages --card --out x.jsonl",
        "--format messages --conversational",
        "--format kto --sources samples",
        "--format kto --pairs length",
        "--format dpo --sources nope",
        "--format dpo --pairs most",
        "--format dpo --min-saving 1",
        "--format step-dpo --min-saving 0.2",
        "--format dpo --verify-rule logprob:-1",
        "--format dpo --min-difficulty 0.8 --max-difficulty 0.2",
        "--format dpo --min-difficulty 2",
        "--format sft",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = export(bad[i], NULL);
        if (rc != 2) {
            fail_msg("'%s' exited %d, want 2", bad[i], rc);
        }
    }
    /* an output folder that does not exist: exit 1 */
    assert_int_equal(export("--format dpo --out missing/x.jsonl", NULL), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dpo_marked),
        cmocka_unit_test(test_step_marked),
        cmocka_unit_test(test_dpo_pruned_rules),
        cmocka_unit_test(test_dpo_samples),
        cmocka_unit_test(test_step_pruned_and_kto),
        cmocka_unit_test(test_summary_card_and_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
