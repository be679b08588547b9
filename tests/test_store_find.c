/* test_store_find.c - store_find: session filters (tag, model, source, since, limit), the
 * full-text index (built lazily, refreshed when a session grows, dropped with the
 * session, read-only stores report staleness), search ranking and snippets, malformed
 * queries, and content hashes (equal across JSONL shapes, different for other text,
 * duplicates skipped on import unless allowed, older finished sessions hashed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "store_find.h"
#include "store_jsonl.h"
#include "store_fixture.h"

STORE_FX("find")

static int64_t import_line(struct pd_store *st, const char *line, const char *where)
{
    int64_t id = 0;
    struct pd_err err;
    if (pd_jsonl_import_record(st, line, strlen(line), where, &id, &err) != PD_OK) {
        fail_msg("%s", err.msg);
    }
    return id;
}

/* Runs a filter; returns how many sessions it selected and their ids in ids[]. */
static size_t find(struct pd_store *st, const struct pd_session_filter *flt, int64_t *ids,
                   char ***snip)
{
    struct pd_store_session_info *out = NULL;
    size_t n = 0;
    struct pd_err err;
    if (pd_store_sessions_find(st, flt, &out, snip, &n, &err) != PD_OK) {
        fail_msg("find: %s", err.msg);
    }
    for (size_t i = 0; i < n; i++) {
        ids[i] = out[i].id;
        pd_store_session_info_free(&out[i]);
    }
    free(out);
    return n;
}

static void snip_free(char **s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) {
        free(s[i]);
    }
    free(s);
}

static void test_filters(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t a = import_line(f->st, "{\"question\":\"alpha\",\"answer\":\"1\"}", "x.jsonl:1");
    int64_t b = import_line(f->st, "{\"question\":\"beta\",\"answer\":\"2\"}", "y.jsonl:1");
    int64_t c = import_line(f->st, "{\"question\":\"gamma\",\"answer\":\"3\"}", "y.jsonl:2");
    char sha[65];
    memset(sha, 'e', 64);
    sha[64] = '\0';
    struct pd_model_ident mi = {"Qwen3-0.6B-Q8_0.gguf", 1, sha, "qwen3"};
    int64_t m = 0;
    assert_int_equal(pd_store_model_put(f->st, &mi, &m, &err), PD_OK);
    assert_int_equal(pd_store_session_set_model(f->st, b, m, &err), PD_OK);
    struct pd_annotation tag = {.whole_session = true, .tag = "good"};
    assert_int_equal(pd_store_annotate(f->st, c, &tag, NULL, &err), PD_OK);
    struct pd_annotation span = {.pos_begin = 0, .pos_end = 1, .tag = "loop"};
    assert_int_equal(pd_store_annotate(f->st, a, &span, NULL, &err), PD_OK);

    int64_t ids[8];
    struct pd_session_filter all = {0};
    assert_int_equal(find(f->st, &all, ids, NULL), 3);
    assert_true(ids[0] == a && ids[1] == b && ids[2] == c); /* oldest first */
    struct pd_session_filter ft = {.tag = "good"};
    assert_int_equal(find(f->st, &ft, ids, NULL), 1);
    assert_int_equal(ids[0], c);
    ft.tag = "loop"; /* a span's tag counts too */
    assert_int_equal(find(f->st, &ft, ids, NULL), 1);
    assert_int_equal(ids[0], a);
    ft.tag = "goo"; /* tags match whole */
    assert_int_equal(find(f->st, &ft, ids, NULL), 0);
    struct pd_session_filter fm = {.model = "qwen3-0.6b"};
    assert_int_equal(find(f->st, &fm, ids, NULL), 1);
    assert_int_equal(ids[0], b);
    fm.model = "eeee"; /* a sha256 prefix */
    assert_int_equal(find(f->st, &fm, ids, NULL), 1);
    fm.model = "llama";
    assert_int_equal(find(f->st, &fm, ids, NULL), 0);
    struct pd_session_filter fs = {.source = "import:y.jsonl"};
    assert_int_equal(find(f->st, &fs, ids, NULL), 2);
    assert_true(ids[0] == b && ids[1] == c);
    fs.source = "live";
    assert_int_equal(find(f->st, &fs, ids, NULL), 0);
    struct pd_session_filter fl = {.limit = 2}; /* the newest two, oldest first */
    assert_int_equal(find(f->st, &fl, ids, NULL), 2);
    assert_true(ids[0] == b && ids[1] == c);
    /* since: move a into the past */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE sessions SET created_ms = 1000 WHERE id = %lld",
             (long long)a);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct pd_session_filter fsn = {.since_ms = 2000};
    assert_int_equal(find(f->st, &fsn, ids, NULL), 2);
    assert_true(ids[0] == b && ids[1] == c);
    /* filters combine */
    struct pd_session_filter both = {.source = "import:y", .tag = "good"};
    assert_int_equal(find(f->st, &both, ids, NULL), 1);
    assert_int_equal(ids[0], c);
}

static void test_search(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t a = import_line(f->st,
                            "{\"messages\":[{\"role\":\"user\",\"content\":\"What is 7 times 6?\"},"
                            "{\"role\":\"assistant\",\"content\":\"<think>\\nSeven sixes: "
                            "wait, let me recount the sixes.\\n</think>\\n\\n42\"}]}",
                            "s.jsonl:1");
    int64_t b = import_line(f->st,
                            "{\"question\":\"Name a colour\",\"answer\":\"blue, like the sky; "
                            "sixes are not colours\"}",
                            "s.jsonl:2");
    size_t stale = 0;
    assert_int_equal(pd_store_text_sync(f->st, &stale, &err), PD_OK);
    assert_int_equal(stale, 2);
    assert_int_equal(pd_store_text_sync(f->st, &stale, &err), PD_OK);
    assert_int_equal(stale, 0); /* nothing changed since */
    int64_t ids[8];
    char **snip = NULL;
    /* the question, the thinking and the answer are all indexed */
    struct pd_session_filter q = {.match = "recount"};
    assert_int_equal(find(f->st, &q, ids, &snip), 1);
    assert_int_equal(ids[0], a);
    assert_non_null(strstr(snip[0], "[recount]"));
    snip_free(snip, 1);
    q.match = "colour";
    assert_int_equal(find(f->st, &q, ids, NULL), 1);
    assert_int_equal(ids[0], b);
    q.match = "\"wait, let me\""; /* a phrase */
    assert_int_equal(find(f->st, &q, ids, NULL), 1);
    q.match = "sixes"; /* both; the one where it weighs more first */
    assert_int_equal(find(f->st, &q, ids, &snip), 2);
    assert_int_equal(ids[0], a);
    snip_free(snip, 2);
    q.match = "sixes";
    q.limit = 1;
    assert_int_equal(find(f->st, &q, ids, NULL), 1);
    q.limit = 0;
    /* the thinking's last word and the answer's first stay two words */
    int64_t c = import_line(f->st,
                            "{\"prompt\":\"p\",\"completion\":\"<think>\\nstep two\\n</think>"
                            "\\n\\n102\"}",
                            "s.jsonl:9");
    assert_int_equal(pd_store_text_sync(f->st, &stale, &err), PD_OK);
    q.match = "two";
    assert_int_equal(find(f->st, &q, ids, NULL), 1);
    assert_int_equal(ids[0], c);
    q.match = "102";
    assert_int_equal(find(f->st, &q, ids, NULL), 1);
    q.match = "nowhere";
    assert_int_equal(find(f->st, &q, ids, NULL), 0);
    /* a malformed query is the caller's: PD_EINVAL with the query named */
    struct pd_store_session_info *out = NULL;
    size_t n = 0;
    q.match = "\"unclosed";
    assert_int_equal(pd_store_sessions_find(f->st, &q, &out, NULL, &n, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "bad search query '\"unclosed'"));
    q.match = "a AND";
    if (pd_store_sessions_find(f->st, &q, &out, NULL, &n, &err) != PD_EINVAL) {
        fail_msg("'a AND': %s", err.msg);
    }
    /* a session that grows is indexed again */
    struct pd_token_rec t = {.pos = 0, .id = 5, .role = PD_ROLE_THINK, .text = "zebra",
                             .text_len = 5, .logprob = -1, .entropy = 1};
    struct pd_message m = {PD_STORE_MSG_USER, "animals"};
    struct pd_session_new sn = {.messages = &m, .n_messages = 1, .source = "live"};
    int64_t live = 0;
    assert_int_equal(pd_store_session_create(f->st, &sn, &live, &err), PD_OK);
    assert_int_equal(pd_store_text_sync(f->st, &stale, &err), PD_OK);
    q.match = "zebra";
    assert_int_equal(find(f->st, &q, ids, NULL), 0);
    assert_int_equal(pd_store_tokens_append(f->st, live, &t, 1, &err), PD_OK);
    assert_int_equal(pd_store_text_sync(f->st, &stale, &err), PD_OK);
    assert_int_equal(stale, 1);
    assert_int_equal(find(f->st, &q, ids, NULL), 1);
    assert_int_equal(ids[0], live);
    /* the prompt tokens (template markup) are left out: the messages stand for them */
    struct pd_token_rec p = {.pos = 1, .id = 6, .role = PD_ROLE_PROMPT, .text = "markup",
                             .text_len = 6, .logprob = -1, .entropy = 1};
    assert_int_equal(pd_store_tokens_append(f->st, live, &p, 1, &err), PD_OK);
    assert_int_equal(pd_store_text_sync(f->st, &stale, &err), PD_OK);
    q.match = "markup";
    assert_int_equal(find(f->st, &q, ids, NULL), 0);
    /* a deleted session leaves the index */
    assert_int_equal(pd_store_session_delete(f->st, live, &err), PD_OK);
    q.match = "zebra";
    assert_int_equal(find(f->st, &q, ids, NULL), 0);
    /* a read-only store reports staleness and writes nothing */
    import_line(f->st, "{\"question\":\"late\",\"answer\":\"x\"}", "s.jsonl:3");
    struct pd_store_params prm = pd_store_default_params();
    prm.read_only = true;
    struct pd_store *ro = NULL;
    assert_int_equal(pd_store_open(f->path, &prm, &ro, &err), PD_OK);
    assert_int_equal(pd_store_text_sync(ro, &stale, &err), PD_OK);
    assert_int_equal(stale, 1);
    assert_int_equal(pd_store_text_sync(ro, &stale, &err), PD_OK);
    assert_int_equal(stale, 1);
    pd_store_close(&ro);
}

static void test_content_hash(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    /* one trace in three shapes */
    int64_t a = import_line(f->st,
                            "{\"messages\":[{\"role\":\"user\",\"content\":\"2+2?\"},{\"role\":"
                            "\"assistant\",\"content\":\"<think>\\nadd\\n\\nthem\\n</think>"
                            "\\n\\n4\"}]}",
                            "h.jsonl:1");
    int64_t b = import_line(f->st,
                            "{\"conversations\":[{\"from\":\"human\",\"value\":\"2+2?\"},"
                            "{\"from\":\"gpt\",\"value\":\"<think>\\nadd\\n\\nthem\\n</think>"
                            "\\n\\n4\"}]}",
                            "h.jsonl:2");
    int64_t c = import_line(f->st,
                            "{\"prompt\":\"2+2?\",\"completion\":\"<think>\\nadd\\n\\nthem\\n"
                            "</think>\\n\\n4\"}",
                            "h.jsonl:3");
    int64_t d = import_line(f->st,
                            "{\"prompt\":\"2+2?\",\"completion\":\"<think>\\nadd\\n\\nthem\\n"
                            "</think>\\n\\n5\"}",
                            "h.jsonl:4");
    /* the same text split differently between thinking and answer differs */
    int64_t e = import_line(f->st,
                            "{\"prompt\":\"2+2?\",\"completion\":\"<think>\\nadd\\n</think>"
                            "\\n\\nthem\\n\\n4\"}",
                            "h.jsonl:5");
    char ha[65], hb[65], hc[65], hd[65], he[65];
    assert_int_equal(pd_store_content_hash(f->st, a, ha, &err), PD_OK);
    assert_int_equal(pd_store_content_hash(f->st, b, hb, &err), PD_OK);
    assert_int_equal(pd_store_content_hash(f->st, c, hc, &err), PD_OK);
    assert_int_equal(pd_store_content_hash(f->st, d, hd, &err), PD_OK);
    assert_int_equal(pd_store_content_hash(f->st, e, he, &err), PD_OK);
    assert_int_equal(strlen(ha), 64);
    assert_string_equal(ha, hb);
    assert_string_equal(ha, hc);
    assert_string_not_equal(ha, hd);
    assert_string_not_equal(ha, he);
    assert_int_equal(pd_store_content_hash(f->st, 999, ha, &err), PD_EINVAL);
    int64_t dup = -1;
    assert_int_equal(pd_store_content_hash_put(f->st, a, &dup, &err), PD_OK);
    assert_int_equal(dup, 0);
    assert_int_equal(pd_store_content_hash_put(f->st, c, &dup, &err), PD_OK);
    assert_int_equal(dup, a);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

struct dups {
    size_t n;
    char where[4][64];
    int64_t of[4];
};

static void on_dup(void *ud, const char *where, int64_t id)
{
    struct dups *d = ud;
    if (d->n < 4) {
        snprintf(d->where[d->n], sizeof d->where[0], "%s", where);
        d->of[d->n] = id;
    }
    d->n++;
}

static void test_import_duplicates(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    /* a live-made session, finished: hashed by the first import that comes */
    struct pd_message m = {PD_STORE_MSG_USER, "live question"};
    struct pd_session_new sn = {.messages = &m, .n_messages = 1, .source = "live"};
    int64_t live = 0;
    assert_int_equal(pd_store_session_create(f->st, &sn, &live, &err), PD_OK);
    struct pd_token_rec t = {.pos = 0, .id = 5, .role = PD_ROLE_ANSWER, .text = "yes",
                             .text_len = 3, .logprob = -1, .entropy = 1};
    assert_int_equal(pd_store_tokens_append(f->st, live, &t, 1, &err), PD_OK);
    assert_int_equal(pd_store_session_finish(f->st, live, &err), PD_OK);
    char p[160];
    snprintf(p, sizeof p, "%s/d.jsonl", f->dir);
    write_file(p, "{\"question\":\"q1\",\"answer\":\"a\"}\n"
                  "{\"question\":\"q2\",\"answer\":\"b\"}\n"
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"q1\"},"
                  "{\"role\":\"assistant\",\"content\":\"a\"}]}\n"
                  "{\"question\":\"live question\",\"answer\":\"yes\"}\n");
    struct dups d = {0};
    struct pd_import_params prm = {.on_duplicate = on_dup, .ud = &d};
    struct pd_import_result res;
    assert_int_equal(pd_jsonl_import_file(f->st, p, &prm, &res, &err), PD_OK);
    assert_int_equal(res.n_imported, 2);
    assert_int_equal(res.n_duplicates, 2);
    assert_int_equal(d.n, 2);
    assert_non_null(strstr(d.where[0], "d.jsonl:3"));
    assert_int_equal(d.of[0], res.first_id);
    assert_non_null(strstr(d.where[1], "d.jsonl:4"));
    assert_int_equal(d.of[1], live);
    /* again: every line a duplicate, nothing added */
    memset(&d, 0, sizeof d);
    assert_int_equal(pd_jsonl_import_file(f->st, p, &prm, &res, &err), PD_OK);
    assert_int_equal(res.n_imported, 0);
    assert_int_equal(res.n_duplicates, 4);
    struct pd_store_session_info *all = NULL;
    size_t n = 0;
    assert_int_equal(pd_store_session_list(f->st, &all, &n, &err), PD_OK);
    for (size_t i = 0; i < n; i++) {
        pd_store_session_info_free(&all[i]);
    }
    free(all);
    assert_int_equal(n, 3);
    /* allowed: all kept */
    prm.allow_duplicates = true;
    assert_int_equal(pd_jsonl_import_file(f->st, p, &prm, &res, &err), PD_OK);
    assert_int_equal(res.n_imported, 4);
    assert_int_equal(res.n_duplicates, 0);
    /* strict and duplicates: skipped, the rest kept */
    prm.allow_duplicates = false;
    prm.strict = true;
    assert_int_equal(pd_jsonl_import_file(f->st, p, &prm, &res, &err), PD_OK);
    assert_int_equal(res.n_duplicates, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_filters, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_search, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_content_hash, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_import_duplicates, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
