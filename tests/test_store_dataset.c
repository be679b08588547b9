/* test_store_dataset.c - store/store_dataset.h: every preference format and variant
 * checked against its field definitions (TRL "Dataset formats and types": preference
 * {prompt, chosen, rejected} and unpaired preference {prompt, completion, label}, standard
 * as strings and conversational as lists of {role, content}; Step-DPO's {prompt,
 * initial_reason_steps, chosen, rejected}), the texts that go into them (whole or pruned
 * completions, step spans of a branch and its parent), skips and filters, byte-identical
 * repeats, the dataset card's header, and the temporary-file commit. */
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
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "store_dataset.h"
#include "store_labels.h"

struct fx {
    char dir[64];
    char path[128];
    struct pd_store *st;
    int64_t a, b, c, multi, other;  /* sessions, see fx_setup */
};

/* Appends tokens with ids (scored) of the given role and texts at *pos. */
static void put_tokens(struct pd_store *st, int64_t sid, int64_t *pos, enum pd_role role,
                       const char *const *texts)
{
    struct pd_err err;
    for (size_t i = 0; texts[i]; i++) {
        struct pd_token_rec t = {.pos = *pos, .id = (int32_t)(100 + *pos), .role = role,
                                 .text = (char *)texts[i], .text_len = strlen(texts[i]),
                                 .logprob = -1.0f, .entropy = 1.0f};
        if (pd_store_tokens_append(st, sid, &t, 1, &err) != PD_OK) {
            fail_msg("%s", err.msg);
        }
        (*pos)++;
    }
}

/* Session a: [system, user] "What is 2+2?", thinking in three steps (positions 1..6),
 * answer "It is 4." (7..8); reference "4". Session b: a branch of a at position 3 (the
 * start of step 1) with its own step and answer. Session c: a root with the same
 * conversation and a wrong answer. Session multi: two user turns. other: another prompt. */
static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/pd_dataset_XXXXXX");
    if (!f || !mkdtemp(f->dir)) {
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/t.db", f->dir);
    struct pd_err err;
    if (pd_store_open(f->path, NULL, &f->st, &err) != PD_OK) {
        return -1;
    }
    struct pd_message m[2] = {{PD_STORE_MSG_SYSTEM, "Be brief."},
                              {PD_STORE_MSG_USER, "What is 2+2?"}};
    struct pd_session_new sn = {.messages = m, .n_messages = 2, .source = "t", .reference = "4"};
    if (pd_store_session_create(f->st, &sn, &f->a, &err) != PD_OK) {
        return -1;
    }
    int64_t pos = 0;
    put_tokens(f->st, f->a, &pos, PD_ROLE_PROMPT, (const char *const[]){"<prompt>", NULL});
    put_tokens(f->st, f->a, &pos, PD_ROLE_THINK,
               (const char *const[]){"<think>\n", "Add them.", "\n\n", "Wait,", " check it.",
                                     "\n\n", "So 4.", "\n</think>", NULL});
    put_tokens(f->st, f->a, &pos, PD_ROLE_ANSWER, (const char *const[]){"\n\nIt is", " 4.", NULL});
    struct pd_step_rec st[3] = {{.index = 0, .pos_begin = 1, .pos_end = 4},
                                {.index = 1, .pos_begin = 4, .pos_end = 7},
                                {.index = 2, .pos_begin = 7, .pos_end = 9}};
    for (int i = 0; i < 3; i++) {
        st[i].mean_surprisal = st[i].first_surprisal = st[i].mean_entropy = NAN;
        st[i].attn_received = NAN;
    }
    if (pd_store_steps_put(f->st, f->a, st, 3, &err) != PD_OK) {
        return -1;
    }
    /* the branch: forks where step 1 ("Wait, check it.") begins */
    struct pd_session_new bn = {.source = "t", .parent_id = f->a, .fork_pos = 4};
    if (pd_store_session_create(f->st, &bn, &f->b, &err) != PD_OK) {
        return -1;
    }
    pos = 4;
    put_tokens(f->st, f->b, &pos, PD_ROLE_INJECTED, (const char *const[]){"Double", NULL});
    put_tokens(f->st, f->b, &pos, PD_ROLE_THINK,
               (const char *const[]){" 2 is 4.", "\n\n", "Done.", "\n</think>", NULL});
    put_tokens(f->st, f->b, &pos, PD_ROLE_ANSWER, (const char *const[]){"\n\n4", NULL});
    struct pd_step_rec bs[2] = {{.index = 0, .pos_begin = 4, .pos_end = 7},
                                {.index = 1, .pos_begin = 7, .pos_end = 9}};
    if (pd_store_steps_put(f->st, f->b, bs, 2, &err) != PD_OK) {
        return -1;
    }
    sn.reference = NULL;
    if (pd_store_session_create(f->st, &sn, &f->c, &err) != PD_OK) {
        return -1;
    }
    pos = 0;
    put_tokens(f->st, f->c, &pos, PD_ROLE_ANSWER, (const char *const[]){"It is 5.", NULL});
    struct pd_message mm[3] = {{PD_STORE_MSG_USER, "Hi"}, {PD_STORE_MSG_ASSISTANT, "Hello"},
                               {PD_STORE_MSG_USER, "What is 2+2?"}};
    struct pd_session_new mn = {.messages = mm, .n_messages = 3, .source = "t"};
    if (pd_store_session_create(f->st, &mn, &f->multi, &err) != PD_OK) {
        return -1;
    }
    pos = 0;
    put_tokens(f->st, f->multi, &pos, PD_ROLE_ANSWER, (const char *const[]){"4", NULL});
    struct pd_message om = {PD_STORE_MSG_USER, "Other?"};
    struct pd_session_new on = {.messages = &om, .n_messages = 1, .source = "t"};
    if (pd_store_session_create(f->st, &on, &f->other, &err) != PD_OK) {
        return -1;
    }
    pos = 0;
    put_tokens(f->st, f->other, &pos, PD_ROLE_ANSWER, (const char *const[]){"x", NULL});
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    pd_store_close(&f->st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* Reads a whole file (owned), or NULL when it does not exist. */
static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        return NULL;
    }
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, fp), (size_t)n);
    s[n] = '\0';
    fclose(fp);
    return s;
}

/* The member names of an object, in order, joined by ",". */
static void keys_of(json_t *o, char *buf, size_t n)
{
    buf[0] = '\0';
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        (void)v;
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s%s", l ? "," : "", k);
    }
}

/* TRL conversational: a list of {"role", "content"} with known roles. */
static void assert_messages(json_t *v, const char *only_role)
{
    assert_true(json_is_array(v));
    assert_true(json_array_size(v) > 0);
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m) {
        char keys[64];
        keys_of(m, keys, sizeof keys);
        assert_string_equal(keys, "role,content");
        const char *r = json_string_value(json_object_get(m, "role"));
        assert_non_null(r);
        assert_true(strcmp(r, "system") == 0 || strcmp(r, "user") == 0 ||
                    strcmp(r, "assistant") == 0);
        if (only_role) {
            assert_string_equal(r, only_role);
        }
        assert_true(json_is_string(json_object_get(m, "content")));
    }
}

/* One record checked against its format's field definitions; returns it (owned). */
static json_t *check_record(const char *line, enum pd_dataset_format f, bool conv)
{
    json_error_t je;
    json_t *r = json_loads(line, JSON_REJECT_DUPLICATES, &je);
    if (!r) {
        fail_msg("not JSON: %s: %s", line, je.text);
    }
    char keys[256];
    keys_of(r, keys, sizeof keys);
    const char *want = f == PD_DATASET_DPO   ? "prompt,chosen,rejected,metadata"
                       : f == PD_DATASET_KTO ? "prompt,completion,label,metadata"
                       : "prompt,initial_reason_steps,chosen,rejected,metadata";
    /* the standard variant puts a system prompt first, as prompt-completion does */
    const char *k = strncmp(keys, "system,", 7) == 0 ? keys + 7 : keys;
    assert_string_equal(k, want);
    if (k != keys) {
        assert_false(conv);
        assert_true(json_is_string(json_object_get(r, "system")));
    }
    if (conv) {
        assert_messages(json_object_get(r, "prompt"), NULL);
        if (f == PD_DATASET_DPO) {
            assert_messages(json_object_get(r, "chosen"), "assistant");
            assert_messages(json_object_get(r, "rejected"), "assistant");
        } else {
            assert_messages(json_object_get(r, "completion"), "assistant");
        }
    } else {
        const char *const str[] = {"prompt", "chosen", "rejected", "completion",
                                   "initial_reason_steps"};
        for (size_t i = 0; i < sizeof str / sizeof str[0]; i++) {
            json_t *v = json_object_get(r, str[i]);
            assert_true(!v || json_is_string(v));
        }
    }
    if (f == PD_DATASET_KTO) {
        assert_true(json_is_boolean(json_object_get(r, "label")));
    }
    json_t *m = json_object_get(r, "metadata");
    assert_true(json_is_object(m));
    assert_true(json_is_string(json_object_get(m, "source")));
    json_t *d = json_object_get(m, "difficulty");
    assert_true(json_is_null(d) || json_is_real(d));
    return r;
}

/* Runs one export into `out` (a path) through the callbacks; returns the data. */
typedef void (*fill_fn)(struct fx *f, struct pd_dataset *d);

static char *run_export(struct fx *f, const struct pd_dataset_params *p, fill_fn fill,
                        const char *name, struct pd_dataset_result *res)
{
    char out[200];
    snprintf(out, sizeof out, "%s/%s", f->dir, name);
    struct pd_dataset *d;
    struct pd_err err;
    if (pd_dataset_open(f->st, out, NULL, p, &d, &err) != PD_OK) {
        fail_msg("%s", err.msg);
    }
    fill(f, d);
    if (pd_dataset_commit(d, &err) != PD_OK) {
        fail_msg("%s", err.msg);
    }
    if (res) {
        *res = *pd_dataset_result(d);
    }
    pd_dataset_close(&d);
    return slurp(out);
}

static void add(struct pd_dataset *d, enum pd_dataset_source s, int64_t c, bool cp, int64_t r,
                bool rp)
{
    struct pd_err err;
    if (pd_dataset_add_pair(d, s, (struct pd_dataset_side){c, cp}, (struct pd_dataset_side){r, rp},
                            &err) != PD_OK) {
        fail_msg("%s", err.msg);
    }
}

static void fill_dpo(struct fx *f, struct pd_dataset *d)
{
    add(d, PD_SRC_MARKED, f->b, false, f->a, false);       /* branch over parent */
    add(d, PD_SRC_CORRECTNESS, f->a, false, f->c, false);  /* roots of one prompt */
    add(d, PD_SRC_MARKED, f->a, false, f->other, false);   /* skipped: other prompt */
    add(d, PD_SRC_MARKED, f->a, false, f->a, false);       /* skipped: same text */
}

static void test_dpo_standard(void **state)
{
    struct fx *f = *state;
    struct pd_dataset_params p = {.format = PD_DATASET_DPO};
    struct pd_dataset_result r;
    char *data = run_export(f, &p, fill_dpo, "dpo.jsonl", &r);
    assert_int_equal(r.n_written, 2);
    assert_int_equal(r.n_skipped, 2);
    assert_non_null(strstr(r.skip_reason, "different conversations"));
    assert_int_equal(r.per_source[PD_SRC_MARKED], 1);
    assert_int_equal(r.per_source[PD_SRC_CORRECTNESS], 1);
    char *nl = strchr(data, '\n');
    assert_non_null(nl);
    *nl = '\0';
    json_t *rec = check_record(data, PD_DATASET_DPO, false);
    assert_string_equal(json_string_value(json_object_get(rec, "system")), "Be brief.");
    assert_string_equal(json_string_value(json_object_get(rec, "prompt")), "What is 2+2?");
    /* the branch's completion: the parent's first step, then its own text */
    assert_string_equal(json_string_value(json_object_get(rec, "chosen")),
                        "<think>\nAdd them.\n\nDouble 2 is 4.\n\nDone.\n</think>\n\n4");
    assert_string_equal(json_string_value(json_object_get(rec, "rejected")),
                        "<think>\nAdd them.\n\nWait, check it.\n\nSo 4.\n</think>\n\nIt is 4.");
    json_t *m = json_object_get(rec, "metadata");
    char keys[256];
    keys_of(m, keys, sizeof keys);
    assert_string_equal(keys, "source,chosen_session,rejected_session,chosen_pruned,"
                              "rejected_pruned,chosen_tokens,rejected_tokens,difficulty");
    assert_string_equal(json_string_value(json_object_get(m, "source")), "marked");
    assert_int_equal(json_integer_value(json_object_get(m, "chosen_session")), f->b);
    assert_int_equal(json_integer_value(json_object_get(m, "chosen_tokens")), 9);
    assert_int_equal(json_integer_value(json_object_get(m, "rejected_tokens")), 10);
    json_decref(rec);
    /* a repeat gives the same bytes */
    char *again = run_export(f, &p, fill_dpo, "dpo2.jsonl", NULL);
    *nl = '\n';
    assert_string_equal(data, again);
    free(again);
    free(data);
}

static void fill_dpo_conv(struct fx *f, struct pd_dataset *d)
{
    add(d, PD_SRC_MARKED, f->b, false, f->a, false);
    add(d, PD_SRC_MARKED, f->multi, false, f->a, false); /* skipped: other conversation */
}

static void test_dpo_conversational(void **state)
{
    struct fx *f = *state;
    struct pd_dataset_params p = {.format = PD_DATASET_DPO, .conversational = true};
    struct pd_dataset_result r;
    char *data = run_export(f, &p, fill_dpo_conv, "c.jsonl", &r);
    assert_int_equal(r.n_written, 1);
    json_t *rec = check_record(data, PD_DATASET_DPO, true);
    json_t *pr = json_object_get(rec, "prompt");
    assert_int_equal(json_array_size(pr), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(pr, 0), "role")),
                        "system");
    assert_string_equal(json_string_value(json_object_get(json_array_get(pr, 1), "content")),
                        "What is 2+2?");
    assert_int_equal(json_array_size(json_object_get(rec, "chosen")), 1);
    json_decref(rec);
    free(data);
}

static void test_dpo_pruned(void **state)
{
    struct fx *f = *state;
    struct pd_err err;
    /* prune step 1 of a: the chosen completion leaves it out, the rejected one keeps it */
    assert_int_equal(pd_store_prune(f->st, f->a, 1, "manual", "user", &err), PD_OK);
    struct pd_dataset_params p = {.format = PD_DATASET_DPO, .pruned_only = true};
    struct pd_dataset_result r;
    char *data = run_export(f, &p, fill_dpo, "p.jsonl", &r);
    /* pruned_only: only a has prunes, so b, c and other are filtered */
    assert_int_equal(r.n_filtered, 3);
    assert_int_equal(r.n_written, 0);
    free(data);
    struct pd_dataset_params q = {.format = PD_DATASET_DPO};
    struct pd_dataset *d;
    char out[200];
    snprintf(out, sizeof out, "%s/q.jsonl", f->dir);
    assert_int_equal(pd_dataset_open(f->st, out, NULL, &q, &d, &err), PD_OK);
    add(d, PD_SRC_PRUNED, f->a, true, f->a, false);
    assert_int_equal(pd_dataset_commit(d, &err), PD_OK);
    pd_dataset_close(&d);
    data = slurp(out);
    json_t *rec = check_record(data, PD_DATASET_DPO, false);
    assert_string_equal(json_string_value(json_object_get(rec, "chosen")),
                        "<think>\nAdd them.\n\nSo 4.\n</think>\n\nIt is 4.");
    assert_string_equal(json_string_value(json_object_get(rec, "rejected")),
                        "<think>\nAdd them.\n\nWait, check it.\n\nSo 4.\n</think>\n\nIt is 4.");
    json_t *m = json_object_get(rec, "metadata");
    assert_true(json_is_true(json_object_get(m, "chosen_pruned")));
    assert_int_equal(json_integer_value(json_object_get(m, "chosen_tokens")), 7);
    json_decref(rec);
    free(data);
}

static void fill_kto(struct fx *f, struct pd_dataset *d)
{
    struct pd_err err;
    assert_int_equal(pd_dataset_add_unpaired(d, PD_SRC_REFERENCE,
                                             (struct pd_dataset_side){f->a, false}, true, &err),
                     PD_OK);
    assert_int_equal(pd_dataset_add_unpaired(d, PD_SRC_REFERENCE,
                                             (struct pd_dataset_side){f->c, false}, false, &err),
                     PD_OK);
}

static void test_kto(void **state)
{
    struct fx *f = *state;
    for (int conv = 0; conv < 2; conv++) {
        struct pd_dataset_params p = {.format = PD_DATASET_KTO, .conversational = conv};
        struct pd_dataset_result r;
        char *data = run_export(f, &p, fill_kto, conv ? "kc.jsonl" : "k.jsonl", &r);
        assert_int_equal(r.n_written, 2);
        char *second = strchr(data, '\n') + 1;
        second[-1] = '\0';
        json_t *a = check_record(data, PD_DATASET_KTO, conv);
        json_t *c = check_record(second, PD_DATASET_KTO, conv);
        assert_true(json_is_true(json_object_get(a, "label")));
        assert_true(json_is_false(json_object_get(c, "label")));
        char keys[128];
        keys_of(json_object_get(c, "metadata"), keys, sizeof keys);
        assert_string_equal(keys, "source,session,pruned,tokens,difficulty");
        json_t *comp = json_object_get(c, "completion");
        const char *text = conv ? json_string_value(json_object_get(json_array_get(comp, 0),
                                                                    "content"))
                                : json_string_value(comp);
        assert_string_equal(text, "It is 5.");
        json_decref(a);
        json_decref(c);
        free(data);
    }
}

static void fill_step(struct fx *f, struct pd_dataset *d)
{
    struct pd_err err;
    /* branch b (chosen) and parent a part at position 4, where a's step 1 begins */
    struct pd_dataset_step s = {.prompt_of = f->a, .prefix = {f->a, 0, 4},
                                .chosen = {f->b, 4, 7}, .rejected = {f->a, 4, 7},
                                .step_index = 1};
    assert_int_equal(pd_dataset_add_step(d, PD_SRC_MARKED, &s, &err), PD_OK);
    /* skipped: a span past the end, an empty step, equal steps */
    s.rejected.pos_end = 99;
    assert_int_equal(pd_dataset_add_step(d, PD_SRC_MARKED, &s, &err), PD_OK);
    s.rejected = (struct pd_dataset_span){f->a, 4, 4};
    assert_int_equal(pd_dataset_add_step(d, PD_SRC_MARKED, &s, &err), PD_OK);
    s.rejected = s.chosen;
    assert_int_equal(pd_dataset_add_step(d, PD_SRC_MARKED, &s, &err), PD_OK);
    /* the last step of a: its span runs into the marker, which is not reasoning */
    struct pd_dataset_step t = {.prompt_of = f->a, .prefix = {f->a, 0, 4},
                                .chosen = {f->a, 4, 7}, .rejected = {f->a, 7, 9},
                                .step_index = 1};
    assert_int_equal(pd_dataset_add_step(d, PD_SRC_PRUNED_STEP, &t, &err), PD_OK);
}

static void test_step_dpo(void **state)
{
    struct fx *f = *state;
    struct pd_dataset_params p = {.format = PD_DATASET_STEP_DPO};
    struct pd_dataset_result r;
    char *data = run_export(f, &p, fill_step, "s.jsonl", &r);
    assert_int_equal(r.n_written, 2);
    assert_int_equal(r.n_skipped, 3);
    char *second = strchr(data, '\n') + 1;
    second[-1] = '\0';
    json_t *rec = check_record(data, PD_DATASET_STEP_DPO, false);
    /* the shared steps: the parent's thinking before the fork, marker removed, bytes kept */
    assert_string_equal(json_string_value(json_object_get(rec, "initial_reason_steps")),
                        "Add them.\n\n");
    assert_string_equal(json_string_value(json_object_get(rec, "chosen")), "Double 2 is 4.");
    assert_string_equal(json_string_value(json_object_get(rec, "rejected")), "Wait, check it.");
    assert_string_equal(json_string_value(json_object_get(rec, "prompt")), "What is 2+2?");
    json_t *m = json_object_get(rec, "metadata");
    assert_int_equal(json_integer_value(json_object_get(m, "step")), 1);
    assert_int_equal(json_integer_value(json_object_get(m, "prefix_tokens")), 3);
    json_decref(rec);
    rec = check_record(second, PD_DATASET_STEP_DPO, false);
    assert_string_equal(json_string_value(json_object_get(rec, "rejected")), "So 4.");
    json_decref(rec);
    free(data);
}

static void test_filters_and_difficulty(void **state)
{
    struct fx *f = *state;
    struct pd_err err;
    /* grade a's question: a right, c wrong: pass rate 0.5 */
    char *key = NULL;
    assert_int_equal(pd_store_prompt_key(f->st, f->a, &key, &err), PD_OK);
    struct pd_sample_grade g[2] = {{f->a, "4", 1}, {f->c, "5", 0}};
    assert_int_equal(pd_store_question_put(f->st, key, "4", g, 2, NULL, &err), PD_OK);
    free(key);
    int64_t only[2] = {f->b, f->a};
    struct pd_dataset_params p = {.format = PD_DATASET_DPO, .session_ids = only,
                                  .n_session_ids = 2};
    struct pd_dataset_result r;
    char *data = run_export(f, &p, fill_dpo, "f.jsonl", &r);
    assert_int_equal(r.n_written, 1); /* b over a; a over c needs c */
    assert_int_equal(r.n_filtered, 2);
    json_t *rec = check_record(data, PD_DATASET_DPO, false);
    json_t *d = json_object_get(json_object_get(rec, "metadata"), "difficulty");
    assert_float_equal(json_real_value(d), 0.5, 1e-9); /* the branch shares a's question */
    json_decref(rec);
    free(data);
    struct pd_dataset_params q = {.format = PD_DATASET_DPO, .difficulty_filter = true,
                                  .difficulty_min = 0.6, .difficulty_max = 1};
    data = run_export(f, &q, fill_dpo, "g.jsonl", &r);
    assert_int_equal(r.n_written, 0);
    assert_string_equal(data, "");
    free(data);
    q.difficulty_min = 0.5;
    data = run_export(f, &q, fill_dpo, "h.jsonl", &r);
    assert_int_equal(r.n_written, 2);
    free(data);
}

static void test_card(void **state)
{
    struct fx *f = *state;
    struct pd_dataset_params p = {.format = PD_DATASET_DPO, .conversational = true, .card = true,
                                  .generator = "ponder 9.9", .settings = "sources: marked\n",
                                  .command = "ponder export --format dpo --card"};
    char *data = run_export(f, &p, fill_dpo, "card.jsonl", NULL);
    char path[200];
    snprintf(path, sizeof path, "%s/README.md", f->dir);
    char *card = slurp(path);
    assert_non_null(card);
    if (getenv("PD_SHOW_CARD")) {
        fputs(card, stderr);
    }
    assert_int_equal(strncmp(card, "---\n", 4), 0);
    char *end = strstr(card + 4, "\n---\n");
    assert_non_null(end);
    end[1] = '\0'; /* the header with its last newline */
    /* the YAML header: the data file, the features of the records, the split size */
    assert_non_null(strstr(card, "\nlicense:\n"));
    assert_non_null(strstr(card, "    path: card.jsonl\n"));
    assert_non_null(strstr(card, "  - name: prompt\n    list:\n    - name: role\n"));
    assert_non_null(strstr(card, "  - name: rejected\n    list:\n"));
    assert_non_null(strstr(card, "  - name: metadata\n    struct:\n    - name: source\n"));
    assert_null(strstr(card, "name: system")); /* conversational: no system column */
    assert_non_null(strstr(card, "    num_examples: 2\n"));
    char nb[64];
    snprintf(nb, sizeof nb, "    num_bytes: %zu\n", strlen(data));
    assert_non_null(strstr(card, nb));
    const char *body = end + 5;
    assert_non_null(strstr(body, "ponder 9.9"));
    assert_non_null(strstr(body, "ponder export --format dpo --card"));
    assert_non_null(strstr(body, "| marked | 1 |"));
    assert_non_null(strstr(body, "| correctness | 1 |"));
    assert_non_null(strstr(body, "  - sources: marked\n"));
    /* tokens: chosen 9 and 10, rejected 10 and 1 */
    assert_non_null(strstr(body, "| 1 | 0 | 1 |"));
    assert_non_null(strstr(body, "| 8-15 | 2 | 1 |"));
    free(card);
    free(data);
}

static void test_open_errors_and_atomicity(void **state)
{
    struct fx *f = *state;
    struct pd_err err;
    struct pd_dataset *d = NULL;
    struct pd_dataset_params p = {.format = PD_DATASET_DPO, .card = true};
    assert_int_equal(pd_dataset_open(f->st, NULL, stdout, &p, &d, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "card"));
    p = (struct pd_dataset_params){.format = PD_DATASET_STEP_DPO, .conversational = true};
    assert_int_equal(pd_dataset_open(f->st, NULL, stdout, &p, &d, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "step-dpo"));
    p = (struct pd_dataset_params){.format = PD_DATASET_FORMAT_COUNT};
    assert_int_equal(pd_dataset_open(f->st, NULL, stdout, &p, &d, &err), PD_EINVAL);
    int64_t bad = 999;
    p = (struct pd_dataset_params){.format = PD_DATASET_DPO, .session_ids = &bad,
                                   .n_session_ids = 1};
    assert_int_equal(pd_dataset_open(f->st, NULL, stdout, &p, &d, &err), PD_EINVAL);
    p = (struct pd_dataset_params){.format = PD_DATASET_DPO};
    char out[200];
    snprintf(out, sizeof out, "%s/missing/x.jsonl", f->dir);
    assert_int_equal(pd_dataset_open(f->st, out, NULL, &p, &d, &err), PD_EIO);
    assert_null(d);
    /* the wrong kind of record for the format */
    snprintf(out, sizeof out, "%s/a.jsonl", f->dir);
    FILE *old = fopen(out, "w");
    fputs("old\n", old);
    fclose(old);
    assert_int_equal(pd_dataset_open(f->st, out, NULL, &p, &d, &err), PD_OK);
    assert_int_equal(pd_dataset_add_unpaired(d, PD_SRC_REFERENCE,
                                             (struct pd_dataset_side){f->a, false}, true, &err),
                     PD_EINVAL);
    add(d, PD_SRC_MARKED, f->b, false, f->a, false);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c '\\.tmp\\.' | grep -qx 1", f->dir);
    assert_int_equal(system(cmd), 0); /* the records go to a temporary file */
    /* closed without commit: the old file stays, no temporary file is left */
    pd_dataset_close(&d);
    assert_null(d);
    char *s = slurp(out);
    assert_string_equal(s, "old\n");
    free(s);
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c '\\.tmp\\.' | grep -qx 0", f->dir);
    assert_int_equal(system(cmd), 0);
    /* committed: replaced */
    assert_int_equal(pd_dataset_open(f->st, out, NULL, &p, &d, &err), PD_OK);
    add(d, PD_SRC_MARKED, f->b, false, f->a, false);
    assert_int_equal(pd_dataset_commit(d, &err), PD_OK);
    assert_int_equal(pd_dataset_commit(d, &err), PD_EINVAL);
    pd_dataset_close(&d);
    s = slurp(out);
    assert_non_null(strstr(s, "\"source\":\"marked\""));
    free(s);
    assert_int_equal(system(cmd), 0);
    assert_string_equal(pd_dataset_format_name(PD_DATASET_STEP_DPO), "step-dpo");
    assert_int_equal(pd_dataset_format_parse("kto"), PD_DATASET_KTO);
    assert_int_equal(pd_dataset_format_parse("sft"), PD_DATASET_FORMAT_COUNT);
    assert_string_equal(pd_dataset_source_name(PD_SRC_PRUNED_STEP), "pruned-step");
    assert_null(pd_dataset_source_name(PD_SRC_COUNT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dpo_standard, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dpo_conversational, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dpo_pruned, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_kto, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_step_dpo, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_filters_and_difficulty, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_card, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_open_errors_and_atomicity, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
