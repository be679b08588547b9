/* test_store_jsonl.c - store/ JSONL import and export: shape detection, thinking split,
 * unscored segment rows, byte-exact round trips of the canonical form (messages,
 * sharegpt, prompt-completion), malformed input (truncated JSON, wrong types, invalid
 * UTF-8, NUL, a 10 MB line, empty files), strict mode, export filters, pruned steps left
 * out, the ponder record, the temporary-file-then-rename write, and a 10k-trace round
 * trip. Fixtures: tests/fixtures/jsonl/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "store_jsonl.h"
#include "store_replay.h"
#include "store_fixture.h"

static char fixtures[512];

STORE_FX("jsonl")

static char *read_all(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fail_msg("cannot open %s", path);
    }
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
    buf[len] = '\0';
    fclose(fp);
    *n = (size_t)len;
    return buf;
}

static void write_all(const char *path, const char *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    fclose(fp);
}

static void fixture(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", fixtures, name);
}

struct errs {
    int n;
    char msgs[32][PD_ERR_MSG_MAX];
};

static void on_error(void *ud, const struct pd_err *e)
{
    struct errs *x = ud;
    if (x->n < 32) {
        snprintf(x->msgs[x->n], PD_ERR_MSG_MAX, "%s", e->msg);
    }
    x->n++;
}

static size_t count_sessions(struct pd_store *st)
{
    struct pd_store_session_info *all;
    size_t n;
    struct pd_err err;
    assert_int_equal(pd_store_session_list(st, &all, &n, &err), PD_OK);
    for (size_t i = 0; i < n; i++) {
        pd_store_session_info_free(&all[i]);
    }
    free(all);
    return n;
}

static void import_ok(struct pd_store *st, const char *path, struct pd_import_result *res)
{
    struct pd_err err;
    struct errs e = {0};
    struct pd_import_params p = {.on_error = on_error, .ud = &e};
    enum pd_status rc = pd_jsonl_import_file(st, path, &p, res, &err);
    if (rc != PD_OK || e.n) {
        fail_msg("import %s: %s / %s", path, err.msg, e.n ? e.msgs[0] : "");
    }
}

/* Exports everything in `format` to a file and compares it with `want_path`. */
static void expect_export_equals(struct store_fx *f, enum pd_jsonl_format format,
                                 const char *want_path)
{
    char out[160];
    snprintf(out, sizeof out, "%s/out.jsonl", f->dir);
    struct pd_export_params p = {.format = format};
    struct pd_export_result r;
    struct pd_err err;
    assert_int_equal(pd_jsonl_export_file(f->st, out, &p, &r, &err), PD_OK);
    size_t n1, n2;
    char *got = read_all(out, &n1);
    char *want = read_all(want_path, &n2);
    if (n1 != n2 || memcmp(got, want, n1) != 0) {
        fail_msg("export differs from %s:\n--- got ---\n%s\n--- want ---\n%s", want_path, got,
                 want);
    }
    free(got);
    free(want);
}

static void test_roundtrip_messages(void **state)
{
    struct store_fx *f = *state;
    char in[600];
    fixture(in, sizeof in, "messages_canonical.jsonl");
    struct pd_import_result res;
    import_ok(f->st, in, &res);
    assert_int_equal(res.n_imported, 7);
    assert_int_equal(res.n_failed, 0);
    assert_int_equal(res.n_lines, 7);
    assert_int_equal(res.last_id - res.first_id, 6);
    expect_export_equals(f, PD_JSONL_MESSAGES, in);
}

static void test_roundtrip_sharegpt_and_prompt_completion(void **state)
{
    struct store_fx *f = *state;
    char in[600];
    fixture(in, sizeof in, "sharegpt_canonical.jsonl");
    struct pd_import_result res;
    import_ok(f->st, in, &res);
    assert_int_equal(res.n_imported, 2);
    expect_export_equals(f, PD_JSONL_SHAREGPT, in);
    /* the same sessions as messages: the conversation is the same */
    char *line;
    struct pd_err err;
    assert_int_equal(pd_jsonl_session_record(f->st, res.first_id, PD_JSONL_MESSAGES, &line, &err),
                     PD_OK);
    assert_string_equal(line, "{\"messages\":[{\"role\":\"user\",\"content\":\"Is 7 prime?\"},"
                              "{\"role\":\"assistant\",\"content\":\"<think>\\n7 has no divisors "
                              "besides 1 and 7.\\n</think>\\n\\nYes.\"}]}");
    free(line);

    pd_store_close(&f->st);
    unlink(f->path);
    assert_int_equal(pd_store_open(f->path, NULL, &f->st, &err), PD_OK);
    fixture(in, sizeof in, "prompt_completion_canonical.jsonl");
    import_ok(f->st, in, &res);
    assert_int_equal(res.n_imported, 2);
    expect_export_equals(f, PD_JSONL_PROMPT_COMPLETION, in);
}

/* Reads the rows of a session as "role:text|..." for compact assertions. */
static char *rows_of(struct pd_store *st, int64_t sid)
{
    struct pd_err err;
    struct pd_replay *r;
    assert_int_equal(pd_replay_open(st, sid, &r, &err), PD_OK);
    static char buf[4096];
    size_t o = 0;
    struct pd_token_rec t[64];
    size_t got;
    assert_int_equal(pd_replay_read(r, t, 64, &got, &err), PD_OK);
    for (size_t i = 0; i < got; i++) {
        assert_int_equal(t[i].id, -1);
        assert_int_equal(t[i].flags, PD_TOKF_NO_METRICS);
        assert_true(isnan(t[i].logprob));
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s:%s", i ? "|" : "",
                              pd_role_name(t[i].role), t[i].text);
        pd_token_rec_free(&t[i]);
    }
    pd_replay_close(&r);
    return buf;
}

static char *record(struct pd_store *st, int64_t sid, enum pd_jsonl_format fmt)
{
    char *line;
    struct pd_err err;
    enum pd_status rc = pd_jsonl_session_record(st, sid, fmt, &line, &err);
    if (rc != PD_OK) {
        fail_msg("session %lld: %s", (long long)sid, err.msg);
    }
    return line;
}

static void expect_record(struct pd_store *st, int64_t sid, enum pd_jsonl_format fmt,
                          const char *want)
{
    char *got = record(st, sid, fmt);
    if (strcmp(got, want) != 0) {
        fail_msg("session %lld:\n got %s\nwant %s", (long long)sid, got, want);
    }
    free(got);
}

static void test_import_shapes(void **state)
{
    struct store_fx *f = *state;
    char in[600];
    fixture(in, sizeof in, "mixed.jsonl");
    struct pd_import_result res;
    import_ok(f->st, in, &res);
    assert_int_equal(res.n_imported, 6);
    int64_t s = res.first_id;

    /* problem + generation, R1 style (no opener): split at </think>, extra fields -> meta */
    assert_string_equal(rows_of(f->st, s),
                        "prompt:Solve x+1=3.|think:Subtract 1 from both sides.\nx = 2.|"
                        "answer:x = 2");
    expect_record(f->st, s, PD_JSONL_PROMPT_COMPLETION,
                  "{\"prompt\":\"Solve x+1=3.\",\"completion\":\"<think>\\nSubtract 1 from both "
                  "sides.\\nx = 2.\\n</think>\\n\\nx = 2\"}");
    struct pd_store_session_info info;
    struct pd_err err;
    assert_int_equal(pd_store_session_get(f->st, s, &info, &err), PD_OK);
    assert_string_equal(info.meta, "{\"id\":\"r1-0001\",\"source\":\"synthetic\"}");
    assert_non_null(strstr(info.source, "mixed.jsonl:1"));
    assert_string_equal(info.title, "Solve x+1=3.");
    pd_store_session_info_free(&info);

    /* question + response, markers without newlines: normalised */
    expect_record(f->st, s + 1, PD_JSONL_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"What is the capital of "
                  "Japan?\"},{\"role\":\"assistant\",\"content\":\"<think>\\nTokyo is the "
                  "capital.\\n</think>\\n\\nTokyo.\"}]}");

    /* ShareGPT with top-level system and the begin/end_of_thought markers */
    assert_string_equal(rows_of(f->st, s + 2),
                        "prompt:Be careful.|prompt:2*3?|think:\n2 times 3 is 6.\n|answer:6");
    expect_record(f->st, s + 2, PD_JSONL_SHAREGPT,
                  "{\"conversations\":[{\"from\":\"system\",\"value\":\"Be careful.\"},"
                  "{\"from\":\"human\",\"value\":\"2*3?\"},{\"from\":\"gpt\",\"value\":"
                  "\"<think>\\n\\n2 times 3 is 6.\\n\\n</think>\\n\\n6\"}]}");

    /* Qwen3 reasoning_content */
    assert_string_equal(rows_of(f->st, s + 3),
                        "prompt:Qwen3 style|think:separate reasoning|answer:final answer");

    /* prompt + solution + answer: solution wins, answer goes to meta */
    assert_string_equal(rows_of(f->st, s + 4), "prompt:Solve|answer:worked solution");
    assert_int_equal(pd_store_session_get(f->st, s + 4, &info, &err), PD_OK);
    assert_string_equal(info.meta, "{\"answer\":\"42\"}");
    pd_store_session_info_free(&info);

    /* a prompt alone is a session waiting for a generation */
    assert_string_equal(rows_of(f->st, s + 5), "prompt:only a prompt, to be generated later");
    expect_record(f->st, s + 5, PD_JSONL_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"only a prompt, to be generated "
                  "later\"}]}");
    char *line;
    assert_int_equal(pd_jsonl_session_record(f->st, s + 5, PD_JSONL_PROMPT_COMPLETION, &line,
                                             &err),
                     PD_EUNSUPPORTED);
}

static void test_thinking_segments(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t id;
    const char *line =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
        "\"content\":\"<think>\\nA one.\\n\\nB two.\\nB more.\\n\\n\\nC three.\\n</think>\\n\\n"
        "Ans.\\n\\nMore ans.\"}]}";
    assert_int_equal(pd_jsonl_import_record(f->st, line, strlen(line), "mem:1", &id, &err), PD_OK);
    /* cut after each blank-line run; the rows concatenate back to the text */
    assert_string_equal(rows_of(f->st, id),
                        "prompt:q|think:A one.\n\n|think:B two.\nB more.\n\n\n|think:C three.|"
                        "answer:Ans.\n\n|answer:More ans.");
    struct pd_store_session_info in;
    assert_int_equal(pd_store_session_get(f->st, id, &in, &err), PD_OK);
    assert_string_equal(in.source, "import:mem:1");
    assert_int_equal(in.n_tokens, 6);
    pd_store_session_info_free(&in);
    /* text before <think> that is not whitespace: no split */
    line = "{\"prompt\":\"p\",\"response\":\"Sure. <think>x</think> y\"}";
    assert_int_equal(pd_jsonl_import_record(f->st, line, strlen(line), "mem:2", &id, &err), PD_OK);
    assert_string_equal(rows_of(f->st, id), "prompt:p|answer:Sure. <think>x</think> y");
    /* an unclosed <think> is not thinking either */
    line = "{\"prompt\":\"p\",\"response\":\"<think>never closed\"}";
    assert_int_equal(pd_jsonl_import_record(f->st, line, strlen(line), "mem:3", &id, &err), PD_OK);
    assert_string_equal(rows_of(f->st, id), "prompt:p|answer:<think>never closed");
}

static void test_malformed_lines(void **state)
{
    struct store_fx *f = *state;
    char in[600];
    fixture(in, sizeof in, "malformed.jsonl");
    struct errs e = {0};
    struct pd_import_params p = {.on_error = on_error, .ud = &e};
    struct pd_import_result res;
    struct pd_err err;
    assert_int_equal(pd_jsonl_import_file(f->st, in, &p, &res, &err), PD_OK);
    assert_int_equal(res.n_lines, 17);
    assert_int_equal(res.n_imported, 3);
    assert_int_equal(res.n_failed, 12);
    assert_int_equal(e.n, 12);
    assert_int_equal(count_sessions(f->st), 3);
    /* each message names the file and line, then the reason */
    static const struct {
        int line;
        const char *reason;
    } want[] = {
        {2, "invalid JSON"},
        {3, "messages: expected an array"},
        {4, "messages[0].role: unsupported role 'tool'"},
        {5, "messages[0].content: expected a string"},
        {6, "expected a JSON object"},
        {7, "no trace fields"},
        {8, "duplicate"},
        {9, "completion: expected a string"},
        {12, "conversations[0].from: unsupported role 'alien'"},
        {13, "messages: empty conversation"},
        {14, "NUL character (\\u0000) in a string"},
        {16, "invalid UTF-8 at byte 44"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char prefix[700];
        snprintf(prefix, sizeof prefix, "%s:%d: ", in, want[i].line);
        if (strncmp(e.msgs[i], prefix, strlen(prefix)) != 0 || !strstr(e.msgs[i], want[i].reason)) {
            fail_msg("error %zu: '%s', want '%s' ... '%s'", i, e.msgs[i], prefix, want[i].reason);
        }
    }
    /* the good lines are complete sessions */
    char *line = record(f->st, res.last_id, PD_JSONL_MESSAGES);
    assert_string_equal(line, "{\"messages\":[{\"role\":\"user\",\"content\":\"good line 3\"},"
                              "{\"role\":\"assistant\",\"content\":\"ok\"}]}");
    free(line);

    /* strict: the first bad line stops the import and nothing of the file is kept */
    memset(&e, 0, sizeof e);
    p.strict = true;
    assert_int_equal(pd_jsonl_import_file(f->st, in, &p, &res, &err), PD_EFORMAT);
    char prefix[700];
    snprintf(prefix, sizeof prefix, "%s:2: invalid JSON", in);
    assert_memory_equal(err.msg, prefix, strlen(prefix));
    assert_int_equal(res.n_imported, 0);
    assert_int_equal(res.n_failed, 1);
    assert_int_equal(e.n, 1);
    assert_int_equal(count_sessions(f->st), 3);
}

static void test_binary_and_empty_files(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    struct pd_import_result res;
    char p[160];
    /* empty file, only blank lines, no trailing newline, CRLF and a byte order mark */
    snprintf(p, sizeof p, "%s/empty.jsonl", f->dir);
    write_all(p, "", 0);
    assert_int_equal(pd_jsonl_import_file(f->st, p, NULL, &res, &err), PD_OK);
    assert_int_equal(res.n_lines, 0);
    assert_int_equal(res.n_imported, 0);
    write_all(p, "\n\n  \n\t\n", 6);
    assert_int_equal(pd_jsonl_import_file(f->st, p, NULL, &res, &err), PD_OK);
    assert_int_equal(res.n_lines, 4);
    assert_int_equal(res.n_imported, 0);
    const char crlf[] = "\xEF\xBB\xBF{\"prompt\":\"a\",\"answer\":\"b\"}\r\n"
                        "{\"prompt\":\"c\",\"answer\":\"d\"}";
    write_all(p, crlf, sizeof crlf - 1);
    assert_int_equal(pd_jsonl_import_file(f->st, p, NULL, &res, &err), PD_OK);
    assert_int_equal(res.n_imported, 2);
    assert_string_equal(rows_of(f->st, res.first_id), "prompt:a|answer:b");
    assert_string_equal(rows_of(f->st, res.last_id), "prompt:c|answer:d");
    /* random binary: every line rejected, nothing crashes */
    char junk[8192];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (char)(x >> 16);
    }
    write_all(p, junk, sizeof junk);
    struct errs e = {0};
    struct pd_import_params prm = {.on_error = on_error, .ud = &e};
    assert_int_equal(pd_jsonl_import_file(f->st, p, &prm, &res, &err), PD_OK);
    assert_int_equal(res.n_imported, 0);
    assert_true(res.n_failed > 0);
    assert_int_equal((int)res.n_failed, e.n);
    /* a missing file is an I/O error naming it */
    snprintf(p, sizeof p, "%s/missing.jsonl", f->dir);
    assert_int_equal(pd_jsonl_import_file(f->st, p, NULL, &res, &err), PD_EIO);
    assert_non_null(strstr(err.msg, "missing.jsonl"));
    /* a directory cannot be read as lines */
    assert_int_equal(pd_jsonl_import_file(f->st, f->dir, NULL, &res, &err), PD_EIO);
    /* import refuses to run inside the caller's transaction */
    assert_int_equal(pd_store_begin(f->st, &err), PD_OK);
    fixture(p, sizeof p, "mixed.jsonl");
    assert_int_equal(pd_jsonl_import_file(f->st, p, NULL, &res, &err), PD_EINVAL);
    pd_store_rollback(f->st);
}

static void test_ten_megabyte_line(void **state)
{
    struct store_fx *f = *state;
    size_t big = 10u << 20;
    char *line = malloc(big + 256);
    size_t o = (size_t)sprintf(line, "{\"prompt\":\"long\",\"generation\":\"<think>\\n");
    for (size_t i = 0; o < big; i++) { /* ~200-byte paragraphs: ~52k of them */
        o += (size_t)sprintf(line + o, "step %zu is fine: the reasoning goes on for a while, "
                             "restating the question, checking the arithmetic once more and "
                             "writing down what it found before moving on to the next part."
                             "\\n\\n", i);
    }
    o += (size_t)sprintf(line + o, "\\n</think>\\n\\ndone\"}\n");
    const char tail[] = "{\"prompt\":\"after\",\"answer\":\"x\"}\n";
    memcpy(line + o, tail, sizeof tail);
    o += sizeof tail - 1;
    char p[160];
    snprintf(p, sizeof p, "%s/big.jsonl", f->dir);
    write_all(p, line, o);
    free(line);
    struct pd_err err;
    struct pd_import_result res;
    struct errs e = {0};
    /* within the default bound: imported whole */
    struct pd_import_params prm = {.on_error = on_error, .ud = &e};
    assert_int_equal(pd_jsonl_import_file(f->st, p, &prm, &res, &err), PD_OK);
    assert_int_equal(res.n_imported, 2);
    struct pd_store_session_info in;
    assert_int_equal(pd_store_session_get(f->st, res.first_id, &in, &err), PD_OK);
    assert_true(in.n_tokens > 40000); /* one row per paragraph */
    pd_store_session_info_free(&in);
    /* over a 1 MiB bound: reported, skipped without being held, the next line imports
     * (again: the same file, so duplicates are allowed) */
    prm.line_max = 1u << 20;
    prm.allow_duplicates = true;
    assert_int_equal(pd_jsonl_import_file(f->st, p, &prm, &res, &err), PD_OK);
    assert_int_equal(res.n_imported, 1);
    assert_int_equal(res.n_failed, 1);
    assert_non_null(strstr(e.msgs[0], "big.jsonl:1: line longer than 1048576 bytes"));
}

/* Marks steps on an imported session and prunes one. */
static void test_export_pruned_and_filters(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    char in[600];
    fixture(in, sizeof in, "messages_canonical.jsonl");
    struct pd_import_result res;
    import_ok(f->st, in, &res);
    int64_t s = res.first_id; /* think rows 1..3: "I add..", "Wait..", "So it is 4." */
    struct pd_step_rec steps[3] = {
        {.index = 0, .pos_begin = 1, .pos_end = 2, .kind = PD_STEP_PLAN},
        {.index = 1, .pos_begin = 2, .pos_end = 3, .kind = PD_STEP_CHECK},
        {.index = 2, .pos_begin = 3, .pos_end = 4, .kind = PD_STEP_CONCLUDE},
    };
    assert_int_equal(pd_store_steps_put(f->st, s, steps, 3, &err), PD_OK);
    assert_int_equal(pd_store_prune(f->st, s, 1, "manual", "user", &err), PD_OK);
    expect_record(f->st, s, PD_JSONL_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"What is 2+2?\"},"
                  "{\"role\":\"assistant\",\"content\":\"<think>\\nI add 2 and 2.\\n\\nSo it is "
                  "4.\\n</think>\\n\\nThe answer is 4.\"}]}");
    /* pruning the last step leaves no dangling blank lines */
    assert_int_equal(pd_store_unprune(f->st, s, 1, &err), PD_OK);
    assert_int_equal(pd_store_prune(f->st, s, 2, "asap", "auto", &err), PD_OK);
    expect_record(f->st, s, PD_JSONL_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"What is 2+2?\"},"
                  "{\"role\":\"assistant\",\"content\":\"<think>\\nI add 2 and 2.\\n\\nWait, let "
                  "me check: 2+2 = 4.\\n</think>\\n\\nThe answer is 4.\"}]}");

    struct pd_annotation tag = {.whole_session = true, .tag = "keep"};
    assert_int_equal(pd_store_annotate(f->st, s + 1, &tag, NULL, &err), PD_OK);
    assert_int_equal(pd_store_annotate(f->st, s + 3, &tag, NULL, &err), PD_OK);

    char out[160];
    snprintf(out, sizeof out, "%s/sel.jsonl", f->dir);
    struct pd_export_result r;
    struct pd_export_params p = {.format = PD_JSONL_MESSAGES, .pruned_only = true};
    assert_int_equal(pd_jsonl_export_file(f->st, out, &p, &r, &err), PD_OK);
    assert_int_equal(r.n_written, 1);
    p = (struct pd_export_params){.format = PD_JSONL_SHAREGPT, .tag = "keep"};
    assert_int_equal(pd_jsonl_export_file(f->st, out, &p, &r, &err), PD_OK);
    assert_int_equal(r.n_written, 2);
    size_t n;
    char *txt = read_all(out, &n);
    assert_non_null(strstr(txt, "Capital of France?"));
    assert_null(strstr(txt, "What is 2+2?"));
    free(txt);
    int64_t ids[] = {s + 3, s + 1, s + 2};
    p = (struct pd_export_params){.format = PD_JSONL_MESSAGES, .tag = "keep",
                                  .session_ids = ids, .n_session_ids = 3};
    assert_int_equal(pd_jsonl_export_file(f->st, out, &p, &r, &err), PD_OK);
    assert_int_equal(r.n_written, 2);
    p.tag = "nothing-has-this";
    assert_int_equal(pd_jsonl_export_file(f->st, out, &p, &r, &err), PD_OK);
    assert_int_equal(r.n_written, 0);
    /* prompt-completion cannot express multi-turn or prompt-only sessions */
    p = (struct pd_export_params){.format = PD_JSONL_PROMPT_COMPLETION};
    assert_int_equal(pd_jsonl_export_file(f->st, out, &p, &r, &err), PD_OK);
    assert_int_equal(r.n_written, 5);
    assert_int_equal(r.n_skipped, 2);
    assert_non_null(strstr(r.skip_reason, "prompt-completion"));
}

static void test_export_file_is_atomic(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    char in[600], out[160];
    fixture(in, sizeof in, "sharegpt_canonical.jsonl");
    struct pd_import_result res;
    import_ok(f->st, in, &res);
    snprintf(out, sizeof out, "%s/keep.jsonl", f->dir);
    write_all(out, "old contents\n", 13);
    /* a failing export (unknown session) leaves the old file and no temporary */
    int64_t bad = 9999;
    struct pd_export_params p = {.format = PD_JSONL_MESSAGES, .session_ids = &bad,
                                 .n_session_ids = 1};
    struct pd_export_result r;
    assert_int_equal(pd_jsonl_export_file(f->st, out, &p, &r, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "9999"));
    size_t n;
    char *txt = read_all(out, &n);
    assert_string_equal(txt, "old contents\n");
    free(txt);
    DIR *d = opendir(f->dir);
    struct dirent *de;
    while ((de = readdir(d))) {
        assert_null(strstr(de->d_name, ".tmp-"));
    }
    closedir(d);
    /* a folder that does not exist: I/O error naming the path */
    char nope[200];
    snprintf(nope, sizeof nope, "%s/no/such/dir/x.jsonl", f->dir);
    p = (struct pd_export_params){.format = PD_JSONL_MESSAGES};
    assert_int_equal(pd_jsonl_export_file(f->st, nope, &p, &r, &err), PD_EIO);
    assert_non_null(strstr(err.msg, "no/such/dir"));
    /* success replaces the file and is recorded */
    assert_int_equal(pd_jsonl_export_file(f->st, out, &p, &r, &err), PD_OK);
    txt = read_all(out, &n);
    assert_non_null(strstr(txt, "Is 7 prime?"));
    free(txt);
    p.format = PD_JSONL_FORMAT_COUNT;
    assert_int_equal(pd_jsonl_export_file(f->st, out, &p, &r, &err), PD_EINVAL);
    assert_int_equal(pd_jsonl_format_parse("prompt-completion"), PD_JSONL_PROMPT_COMPLETION);
    assert_int_equal(pd_jsonl_format_parse("csv"), PD_JSONL_FORMAT_COUNT);
    assert_string_equal(pd_jsonl_format_name(PD_JSONL_PONDER), "ponder");
}

/* A live session: real tokens that carry the think markers themselves. */
static void test_export_live_tokens(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    struct pd_message m = {PD_STORE_MSG_USER, "Is 9 odd?"};
    struct pd_run_settings rs = {.temperature = 0.6f, .top_p = 0.95f, .top_k = 20,
                                 .seed = 7, .mode = "long"};
    const char *sha = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    struct pd_model_ident mi = {"tiny.gguf", 1000, sha, "qwen3"};
    int64_t model;
    assert_int_equal(pd_store_model_put(f->st, &mi, &model, &err), PD_OK);
    struct pd_session_new sn = {.model_id = model, .settings = &rs, .messages = &m,
                                .n_messages = 1, .source = "live"};
    int64_t sid;
    assert_int_equal(pd_store_session_create(f->st, &sn, &sid, &err), PD_OK);
    static const struct {
        enum pd_role role;
        const char *text;
    } toks[] = {
        {PD_ROLE_PROMPT, "<|im_start|>user\nIs 9 odd?<|im_end|>\n<|im_start|>assistant\n"},
        {PD_ROLE_THINK, "<think>"}, {PD_ROLE_THINK, "\n"},       {PD_ROLE_THINK, "9"},
        {PD_ROLE_THINK, " is"},     {PD_ROLE_INJECTED, " (hint: 9 = 2*4+1)"},
        {PD_ROLE_THINK, " odd"},    {PD_ROLE_THINK, ".\n"},     {PD_ROLE_THINK, "</think>"},
        {PD_ROLE_ANSWER, "\n\n"},   {PD_ROLE_ANSWER, "Yes"},    {PD_ROLE_ANSWER, "\xc3"},
        {PD_ROLE_ANSWER, "\xa9"},
    };
    struct pd_token_rec t[sizeof toks / sizeof toks[0]];
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        memset(&t[i], 0, sizeof t[i]);
        t[i].pos = (int64_t)i;
        t[i].id = (int32_t)(100 + i);
        t[i].role = toks[i].role;
        t[i].text = (char *)toks[i].text;
        t[i].text_len = strlen(toks[i].text);
        t[i].logprob = -0.125f * (float)i;
        t[i].entropy = 0.5f;
        t[i].n_top = 2;
        t[i].top[0].id = 1;
        t[i].top[0].logprob = -0.25f;
        t[i].top[1].id = 2;
        t[i].top[1].logprob = -INFINITY;
    }
    assert_int_equal(pd_store_tokens_append(f->st, sid, t, sizeof toks / sizeof toks[0], &err),
                     PD_OK);
    expect_record(f->st, sid, PD_JSONL_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"Is 9 odd?\"},{\"role\":"
                  "\"assistant\",\"content\":\"<think>\\n9 is (hint: 9 = 2*4+1) odd.\\n</think>"
                  "\\n\\nYes\xc3\xa9\"}]}");
    struct pd_annotation a = {.pos_begin = 3, .pos_end = 5, .tag = "hint", .note = "injected"};
    assert_int_equal(pd_store_annotate(f->st, sid, &a, NULL, &err), PD_OK);
    struct pd_step_rec st = {.index = 0, .pos_begin = 2, .pos_end = 9, .kind = PD_STEP_CONCLUDE,
                             .mean_surprisal = 0.5f, .first_surprisal = 1.0f,
                             .mean_entropy = 0.25f, .attn_received = NAN};
    assert_int_equal(pd_store_steps_put(f->st, sid, &st, 1, &err), PD_OK);

    /* the ponder record carries everything, as valid JSON */
    char *line = record(f->st, sid, PD_JSONL_PONDER);
    json_error_t je;
    json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &je);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "ponder")), 1);
    json_t *sess = json_object_get(j, "session");
    assert_string_equal(json_string_value(json_object_get(json_object_get(sess, "model"),
                                                          "arch")),
                        "qwen3");
    assert_string_equal(json_string_value(json_object_get(json_object_get(sess, "settings"),
                                                          "seed")),
                        "7");
    json_t *tokens = json_object_get(j, "tokens");
    assert_int_equal(json_array_size(tokens), sizeof toks / sizeof toks[0]);
    json_t *t5 = json_array_get(tokens, 5);
    assert_string_equal(json_string_value(json_object_get(t5, "role")), "injected");
    assert_float_equal(json_real_value(json_object_get(t5, "logprob")), -0.625, 1e-9);
    json_t *top = json_object_get(t5, "top");
    assert_int_equal(json_array_size(top), 2);
    assert_true(json_is_null(json_array_get(json_array_get(top, 1), 1))); /* -inf */
    /* a partial UTF-8 token travels as bytes */
    json_t *t11 = json_array_get(tokens, 11);
    assert_null(json_object_get(t11, "text"));
    assert_string_equal(json_string_value(json_object_get(t11, "bytes")), "ww==");
    assert_int_equal(json_array_size(json_object_get(j, "steps")), 1);
    assert_int_equal(json_array_size(json_object_get(j, "annotations")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "final")),
                        "<think>\n9 is (hint: 9 = 2*4+1) odd.\n</think>\n\nYes\xc3\xa9");
    json_decref(j);
    free(line);

    /* pruned: the step's tokens and the step leave the record; the prune is listed */
    assert_int_equal(pd_store_prune(f->st, sid, 0, "manual", "user", &err), PD_OK);
    line = record(f->st, sid, PD_JSONL_PONDER);
    j = json_loads(line, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "tokens")),
                     sizeof toks / sizeof toks[0] - 7);
    assert_int_equal(json_array_size(json_object_get(j, "steps")), 0);
    json_t *pr = json_array_get(json_object_get(j, "prunes"), 0);
    assert_string_equal(json_string_value(json_object_get(pr, "strategy")), "manual");
    assert_int_equal(json_integer_value(json_object_get(pr, "pos_end")), 9);
    json_decref(j);
    free(line);
}

/* Generated bytes that are not UTF-8: a character cut at the end is dropped, other bad
 * bytes become U+FFFD, so chat exports stay valid JSON. */
static void test_export_cleans_utf8(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    struct pd_message m = {PD_STORE_MSG_USER, "q"};
    struct pd_session_new sn = {.messages = &m, .n_messages = 1};
    int64_t sid;
    assert_int_equal(pd_store_session_create(f->st, &sn, &sid, &err), PD_OK);
    static const char *const text[] = {"a\xff", "b", "\xe2\x82"};
    struct pd_token_rec t[3];
    for (int i = 0; i < 3; i++) {
        memset(&t[i], 0, sizeof t[i]);
        t[i].pos = i;
        t[i].role = PD_ROLE_ANSWER;
        t[i].text = (char *)text[i];
        t[i].text_len = strlen(text[i]);
        t[i].logprob = t[i].entropy = NAN;
    }
    assert_int_equal(pd_store_tokens_append(f->st, sid, t, 3, &err), PD_OK);
    expect_record(f->st, sid, PD_JSONL_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
                  "\"content\":\"a\xef\xbf\xbd" "b\"}]}");
}

/* Drops the fields that differ between two copies of a session (ids, times, source). */
static json_t *comparable(const char *line)
{
    json_t *j = json_loads(line, 0, NULL);
    assert_non_null(j);
    json_t *s = json_object_get(j, "session");
    static const char *const drop[] = {"id", "created_ms", "updated_ms", "source"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) {
        json_object_del(s, drop[i]);
    }
    return j;
}

static int64_t make_rich_session(struct pd_store *st)
{
    struct pd_err err;
    struct pd_message m[2] = {{PD_STORE_MSG_SYSTEM, "sys"}, {PD_STORE_MSG_USER, "Is 9 odd?"}};
    struct pd_run_settings rs = {.temperature = 0.6f, .top_p = 0.95f, .top_k = 20,
                                 .min_p = 0.05f, .seed = 18446744073709551557ull,
                                 .mode = "short:256", .kv_policy = "h2o:128,shadow",
                                 .chat_template = "chatml-think"};
    const char *sha = "abababababababababababababababababababababababababababababababab";
    struct pd_model_ident mi = {"m.gguf", 123456, sha, "qwen2"};
    int64_t model, sid;
    assert_int_equal(pd_store_model_put(st, &mi, &model, &err), PD_OK);
    struct pd_session_new sn = {.model_id = model, .settings = &rs, .messages = m,
                                .n_messages = 2, .source = "live", .meta = "{\"run\":3}"};
    assert_int_equal(pd_store_session_create(st, &sn, &sid, &err), PD_OK);
    static const char *const text[] = {"<prompt>", "First", " step", ".\n\n", "Second",
                                       " step", ".", "</think>", "\n\nYes", "\xe2\x9c"};
    static const enum pd_role role[] = {PD_ROLE_PROMPT, PD_ROLE_THINK, PD_ROLE_THINK,
                                        PD_ROLE_THINK, PD_ROLE_THINK, PD_ROLE_THINK,
                                        PD_ROLE_THINK, PD_ROLE_THINK, PD_ROLE_ANSWER,
                                        PD_ROLE_ANSWER};
    struct pd_token_rec t[10];
    uint8_t attn[10][4 + 2 * 2 * 8];
    for (int i = 0; i < 10; i++) {
        memset(&t[i], 0, sizeof t[i]);
        t[i].pos = i;
        t[i].id = 1000 + i;
        t[i].role = role[i];
        t[i].flags = i == 0 ? PD_TOKF_FORCED : 0;
        t[i].text = (char *)text[i];
        t[i].text_len = strlen(text[i]);
        t[i].logprob = i == 0 ? NAN : -0.0625f * (float)i;
        t[i].entropy = i == 0 ? NAN : 0.25f * (float)i;
        t[i].n_top = (uint8_t)(i % 4);
        for (int k = 0; k < t[i].n_top; k++) {
            t[i].top[k].id = k * 3;
            t[i].top[k].logprob = k == 2 ? -INFINITY : -0.5f * (float)k;
        }
        if (i % 2) {
            memset(attn[i], 0, sizeof attn[i]);
            attn[i][0] = 1;
            attn[i][1] = 2;
            attn[i][2] = 2;
            float w = 0.125f * (float)(i % 8);
            uint32_t p = (uint32_t)(i - 1);
            memcpy(attn[i] + 4, &p, 4);
            memcpy(attn[i] + 8, &w, 4);
            t[i].attn = attn[i];
            t[i].attn_len = sizeof attn[i];
        }
    }
    assert_int_equal(pd_store_tokens_append(st, sid, t, 10, &err), PD_OK);
    struct pd_step_rec steps[2] = {
        {.index = 0, .pos_begin = 1, .pos_end = 4, .kind = PD_STEP_PLAN, .mean_surprisal = 1.5f,
         .first_surprisal = 2.5f, .mean_entropy = 0.75f, .attn_received = NAN},
        {.index = 1, .pos_begin = 4, .pos_end = 8, .kind = PD_STEP_CONCLUDE,
         .mean_surprisal = 0.5f, .first_surprisal = NAN, .mean_entropy = 1.0f,
         .attn_received = 0.25f},
    };
    assert_int_equal(pd_store_steps_put(st, sid, steps, 2, &err), PD_OK);
    struct pd_annotation a1 = {.whole_session = true, .tag = "gold", .note = "keep\nthis"};
    struct pd_annotation a2 = {.pos_begin = 4, .pos_end = 7, .tag = "second"};
    assert_int_equal(pd_store_annotate(st, sid, &a1, NULL, &err), PD_OK);
    assert_int_equal(pd_store_annotate(st, sid, &a2, NULL, &err), PD_OK);
    assert_int_equal(pd_store_session_finish(st, sid, &err), PD_OK);
    return sid;
}

static void test_ponder_record_roundtrip(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t sid = make_rich_session(f->st);
    char *line = record(f->st, sid, PD_JSONL_PONDER);
    /* into a second database and out again: everything but ids, times and source */
    char p2[160];
    snprintf(p2, sizeof p2, "%s/second.db", f->dir);
    struct pd_store *st2;
    assert_int_equal(pd_store_open(p2, NULL, &st2, &err), PD_OK);
    int64_t id2;
    enum pd_status rc = pd_jsonl_import_record(st2, line, strlen(line), "rec:1", &id2, &err);
    if (rc != PD_OK) {
        fail_msg("%s", err.msg);
    }
    char *line2 = record(st2, id2, PD_JSONL_PONDER);
    json_t *a = comparable(line), *b = comparable(line2);
    if (!json_equal(a, b)) {
        fail_msg("ponder round trip differs:\n%s\n%s", line, line2);
    }
    json_decref(a);
    json_decref(b);
    free(line2);
    /* the metrics and blobs really are back */
    struct pd_replay *r;
    assert_int_equal(pd_replay_open(st2, id2, &r, &err), PD_OK);
    struct pd_token_rec t[10];
    size_t got;
    assert_int_equal(pd_replay_read(r, t, 10, &got, &err), PD_OK);
    assert_int_equal(got, 10);
    assert_true(isnan(t[0].logprob));
    assert_int_equal(t[0].flags, PD_TOKF_FORCED);
    assert_int_equal(t[3].n_top, 3);
    assert_true(isinf(t[3].top[2].logprob));
    assert_int_equal(t[9].text_len, 2);
    assert_memory_equal(t[9].text, "\xe2\x9c", 2);
    assert_int_equal(t[5].attn_len, 36);
    assert_float_equal(pd_replay_info(r)->settings.min_p, 0.05, 1e-7);
    assert_true(pd_replay_info(r)->settings.seed == 18446744073709551557ull);
    assert_true(pd_replay_info(r)->finished);
    for (size_t i = 0; i < got; i++) {
        pd_token_rec_free(&t[i]);
    }
    pd_replay_close(&r);

    /* pruned: the record has a gap; import renumbers and remaps spans */
    assert_int_equal(pd_store_prune(f->st, sid, 0, "manual", "user", &err), PD_OK);
    free(line);
    line = record(f->st, sid, PD_JSONL_PONDER);
    assert_int_equal(pd_jsonl_import_record(st2, line, strlen(line), "rec:2", &id2, &err), PD_OK);
    struct pd_store_session_info in;
    assert_int_equal(pd_store_session_get(st2, id2, &in, &err), PD_OK);
    assert_int_equal(in.n_tokens, 7);
    assert_int_equal(in.n_steps, 1);
    pd_store_session_info_free(&in);
    struct pd_step_rec *steps;
    size_t n;
    assert_int_equal(pd_store_steps_get(st2, id2, &steps, &n, &err), PD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(steps[0].pos_begin, 1); /* was 4..8 */
    assert_int_equal(steps[0].pos_end, 5);
    free(steps);
    struct pd_annotation *ann;
    assert_int_equal(pd_store_annotations_get(st2, id2, &ann, &n, &err), PD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ann[1].pos_begin, 1);
    assert_int_equal(ann[1].pos_end, 4);
    pd_store_annotations_free(ann, n);
    /* the pruned trace exports the same final message from both databases */
    char *m1 = record(f->st, sid, PD_JSONL_MESSAGES);
    char *m2 = record(st2, id2, PD_JSONL_MESSAGES);
    assert_string_equal(m1, m2);
    assert_non_null(strstr(m1, "\"<think>\\nSecond step.\\n</think>\\n\\nYes\""));
    free(m1);
    free(m2);
    free(line);
    pd_store_close(&st2);
}

static void test_ponder_record_malformed(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    static const struct {
        const char *line;
        const char *reason;
    } bad[] = {
        {"{\"ponder\":2,\"session\":{},\"tokens\":[]}", "ponder: unsupported record version"},
        {"{\"ponder\":1,\"session\":[],\"tokens\":[]}", "session: expected an object"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":{}}", "tokens: expected an array"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"id\":1,\"role\":\"think\",\"text\":\"a\"}]}",
         "tokens[0]: missing"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"pos\":3,\"id\":1,\"role\":\"think\","
         "\"text\":\"a\"},{\"pos\":3,\"id\":1,\"role\":\"think\",\"text\":\"b\"}]}",
         "tokens[1].pos: positions must increase"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"pos\":0,\"id\":1,\"role\":\"robot\","
         "\"text\":\"a\"}]}",
         "tokens[0]: role"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"pos\":0,\"id\":-5,\"role\":\"think\","
         "\"text\":\"a\"}]}",
         "tokens[0]: expected an integer in range"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"pos\":0,\"id\":1,\"role\":\"think\","
         "\"text\":\"a\",\"top\":[[1,0.5]]}]}",
         "tokens[0].top[0]: logprob above 0"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"pos\":0,\"id\":1,\"role\":\"think\","
         "\"text\":\"a\",\"top\":[[1]]}]}",
         "tokens[0].top[0]: expected [token id, logprob or null(, piece)]"},
        /* alternatives' pieces (schema 5): a string or {"bytes": base64}, at most 1 KiB, one
         * text per id within a record */
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"pos\":0,\"id\":1,\"role\":\"think\","
         "\"text\":\"a\",\"top\":[[1,-1,\"x\",4]]}]}",
         "tokens[0].top[0]: expected [token id, logprob or null(, piece)]"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"pos\":0,\"id\":1,\"role\":\"think\","
         "\"text\":\"a\",\"top\":[[1,-1,7]]}]}",
         "tokens[0].top[0]: piece: expected a string or {\"bytes\": base64}"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"pos\":0,\"id\":1,\"role\":\"think\","
         "\"text\":\"a\",\"top\":[[1,-1,{\"bytes\":\"%%%\"}]]}]}",
         "tokens[0].top[0]: piece: invalid base64"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"pos\":0,\"id\":1,\"role\":\"think\","
         "\"text\":\"a\",\"top\":[[1,-1,{\"bytes\":\"YQ==\",\"x\":1}]]}]}",
         "tokens[0].top[0]: piece: expected a string"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"pos\":0,\"id\":1,\"role\":\"think\","
         "\"text\":\"a\",\"top\":[[9,-1,\"x\"]]},{\"pos\":1,\"id\":2,\"role\":\"think\","
         "\"text\":\"b\",\"top\":[[3,-1,\"z\"],[9,-2,\"y\"]]}]}",
         "tokens[1].top[1]: piece: the token id has another text elsewhere in the record"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"pos\":0,\"id\":1,\"role\":\"think\","
         "\"text\":\"a\",\"attn\":\"###\"}]}",
         "tokens[0].attn: expected base64"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"pos\":0,\"id\":1,\"role\":\"think\","
         "\"text\":\"a\",\"attn\":\"AQEBAA==\"}]}",
         "tokens[0].attn: attention blob"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"pos\":0,\"id\":1,\"role\":\"think\","
         "\"text\":\"a\",\"bytes\":\"YQ==\"}]}",
         "tokens[0].text: expected one of text"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[{\"pos\":0,\"id\":1,\"role\":\"think\","
         "\"bytes\":\"Y=Q=\"}]}",
         "tokens[0].bytes: invalid base64"},
        {"{\"ponder\":1,\"session\":{\"settings\":{\"temperature\":-1,\"top_p\":1,\"min_p\":0}},"
         "\"tokens\":[]}",
         "temperature"},
        {"{\"ponder\":1,\"session\":{\"settings\":{\"temperature\":1,\"top_p\":1,\"min_p\":0,"
         "\"seed\":-3}},\"tokens\":[]}",
         "session.settings.seed: expected a decimal string"},
        {"{\"ponder\":1,\"session\":{\"model\":{\"file_name\":\"m\",\"file_size\":1,"
         "\"sha256\":\"xyz\",\"arch\":\"llama\"}},\"tokens\":[]}",
         "sha256"},
        {"{\"ponder\":1,\"session\":{\"meta\":[1]},\"tokens\":[]}", "session.meta"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[],\"steps\":[{\"index\":0,\"pos_begin\":0,"
         "\"pos_end\":1,\"kind\":\"dream\"}]}",
         "steps[0]: expected an object with a known kind"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[],\"steps\":[{\"index\":0,\"pos_begin\":5,"
         "\"pos_end\":1,\"kind\":\"plan\"}]}",
         "steps[0]: expected an integer in range"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[],\"annotations\":[{\"tag\":\"x\","
         "\"pos_begin\":3}]}",
         "annotations[0]: span"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[],\"annotations\":[{\"tag\":\"a,b\"}]}",
         "annotations[0]: annotation: tag"},
        {"{\"ponder\":1,\"session\":{},\"tokens\":[],\"messages\":[{\"role\":\"bot\","
         "\"content\":\"x\"}]}",
         "messages[0]: unknown role"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t id;
        pd_err_clear(&err);
        enum pd_status rc =
            pd_jsonl_import_record(f->st, bad[i].line, strlen(bad[i].line), "p.jsonl:9", &id,
                                   &err);
        if (rc != PD_EFORMAT || strncmp(err.msg, "p.jsonl:9: ", 11) != 0 ||
            !strstr(err.msg, bad[i].reason)) {
            fail_msg("case %zu: rc %d, '%s' (want '%s')", i, rc, err.msg, bad[i].reason);
        }
    }
    assert_int_equal(count_sessions(f->st), 0); /* nothing half-stored */
    /* the smallest valid record */
    const char *ok = "{\"ponder\":1,\"session\":{},\"tokens\":[]}";
    int64_t id;
    assert_int_equal(pd_jsonl_import_record(f->st, ok, strlen(ok), "p.jsonl:10", &id, &err),
                     PD_OK);
}

/* Random byte mutations of valid records (chat and ponder): every result is either a
 * clean import or a FILE:LINE error; never a crash, never a half-stored session. */
static void test_mutated_records(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t rich = make_rich_session(f->st);
    char *seeds[3];
    seeds[0] = record(f->st, rich, PD_JSONL_PONDER);
    seeds[1] = record(f->st, rich, PD_JSONL_MESSAGES);
    seeds[2] = record(f->st, rich, PD_JSONL_SHAREGPT);
    size_t before = count_sessions(f->st);
    size_t n_ok = 0;
    uint32_t x = 2463534242u;
    for (int it = 0; it < 3000; it++) {
        const char *seed = seeds[it % 3];
        size_t n = strlen(seed);
        char *m = malloc(n + 1);
        memcpy(m, seed, n + 1);
        int n_mut = 1 + it % 4;
        for (int k = 0; k < n_mut && n > 0; k++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            size_t at = x % n;
            switch ((x >> 8) % 4) {
            case 0: /* random byte */
                m[at] = (char)(x >> 16);
                break;
            case 1: /* truncate */
                n = at;
                break;
            case 2: /* a structural character */
                m[at] = "{}[]\":,0-"[(x >> 16) % 9];
                break;
            default: /* a digit, to shift numbers and positions */
                m[at] = (char)('0' + (x >> 16) % 10);
                break;
            }
        }
        int64_t id;
        enum pd_status rc = pd_jsonl_import_record(f->st, m, n, "fuzz:1", &id, &err);
        if (rc == PD_OK) {
            n_ok++;
        } else if (rc != PD_EFORMAT || strncmp(err.msg, "fuzz:1: ", 8) != 0) {
            fail_msg("iteration %d: rc %d '%s'", it, rc, err.msg);
        }
        free(m);
    }
    fprintf(stderr, "mutations: %zu of 3000 records still imported\n", n_ok);
    assert_true(n_ok > 0 && n_ok < 3000);
    assert_int_equal(count_sessions(f->st), before + n_ok);
    assert_int_equal(pd_store_check(f->st, &err), PD_OK);
    /* whatever was stored reads back and exports */
    char out[160];
    snprintf(out, sizeof out, "%s/fuzz.jsonl", f->dir);
    struct pd_export_params p = {.format = PD_JSONL_PONDER};
    struct pd_export_result r;
    assert_int_equal(pd_jsonl_export_file(f->st, out, &p, &r, &err), PD_OK);
    assert_int_equal(r.n_written + r.n_skipped, before + n_ok);
    for (int i = 0; i < 3; i++) {
        free(seeds[i]);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_roundtrip_10k(void **state)
{
    struct store_fx *f = *state;
    char in[160], out[160];
    snprintf(in, sizeof in, "%s/10k.jsonl", f->dir);
    snprintf(out, sizeof out, "%s/10k.out.jsonl", f->dir);
    FILE *fp = fopen(in, "wb");
    assert_non_null(fp);
    enum { N = 10000 };
    for (int i = 0; i < N; i++) {
        json_t *m = json_array();
        if (i % 3 == 0) {
            json_array_append_new(m, json_pack("{s:s,s:s}", "role", "system", "content",
                                               "Reason step by step."));
        }
        char q[128], c[1024];
        snprintf(q, sizeof q, "Problem %d: what is %d * %d? \xe2\x9c\x93", i, i, i % 97);
        json_array_append_new(m, json_pack("{s:s,s:s}", "role", "user", "content", q));
        if (i % 10 == 9) {
            snprintf(c, sizeof c, "%d", i * (i % 97));
        } else {
            snprintf(c, sizeof c,
                     "<think>\nFirst, %d * %d.\n\nWait, check the \"carry\".\n\nSo %d.\n</think>"
                     "\n\nThe answer is %d.",
                     i, i % 97, i * (i % 97), i * (i % 97));
        }
        json_array_append_new(m, json_pack("{s:s,s:s}", "role", "assistant", "content", c));
        json_t *rec = json_pack("{s:o}", "messages", m);
        json_dumpf(rec, fp, JSON_COMPACT);
        fputc('\n', fp);
        json_decref(rec);
    }
    fclose(fp);
    struct pd_err err;
    double t0 = now_s();
    struct pd_import_result res;
    import_ok(f->st, in, &res);
    double t1 = now_s();
    assert_int_equal(res.n_imported, N);
    struct pd_export_params p = {.format = PD_JSONL_MESSAGES};
    struct pd_export_result r;
    assert_int_equal(pd_jsonl_export_file(f->st, out, &p, &r, &err), PD_OK);
    double t2 = now_s();
    assert_int_equal(r.n_written, N);
    fprintf(stderr, "10k traces: import %.2f s (%.0f/s), export %.2f s (%.0f/s)\n", t1 - t0,
            N / (t1 - t0), t2 - t1, N / (t2 - t1));
    size_t n1, n2;
    char *a = read_all(in, &n1);
    char *b = read_all(out, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    free(a);
    free(b);
    assert_int_equal(pd_store_check(f->st, &err), PD_OK);
}

int main(void)
{
    const char *root = getenv("PONDER_SOURCE_ROOT");
    snprintf(fixtures, sizeof fixtures, "%s/tests/fixtures/jsonl", root ? root : ".");
    struct stat sb;
    if (stat(fixtures, &sb) != 0) {
        /* the fixtures are in the repository: not finding them is a failure */
        fprintf(stderr, "FAIL: fixtures not found at %s (set PONDER_SOURCE_ROOT)\n", fixtures);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_messages, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_sharegpt_and_prompt_completion, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_import_shapes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_thinking_segments, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_lines, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_binary_and_empty_files, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ten_megabyte_line, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_export_pruned_and_filters, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_export_file_is_atomic, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_export_live_tokens, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_export_cleans_utf8, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ponder_record_roundtrip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ponder_record_malformed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_mutated_records, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_10k, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
