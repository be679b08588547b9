/* test_store.c - store/: opening and identity checks, models, sessions and branches,
 * messages, tokens, blobs, steps, prunes, KV events, annotations, the replay reader, and
 * corrupt database contents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"
#include "store.h"
#include "store_blob.h"
#include "store_replay.h"
#include "store_fixture.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

STORE_FX("store")

static int64_t new_session(struct pd_store *st, const char *user)
{
    struct pd_message m[2] = {{PD_STORE_MSG_SYSTEM, "be brief"}, {PD_STORE_MSG_USER, (char *)user}};
    struct pd_run_settings rs = {.temperature = 0.6f, .top_p = 0.95f, .top_k = 20,
                                 .min_p = 0.0f, .seed = 0xFFFFFFFFFFFFFFF0ull,
                                 .mode = "long", .kv_policy = "h2o:256,shadow",
                                 .chat_template = "chatml-think"};
    struct pd_session_new sn = {.settings = &rs, .messages = m, .n_messages = 2,
                                .source = "live"};
    int64_t id = 0;
    struct pd_err err;
    assert_int_equal(pd_store_session_create(st, &sn, &id, &err), PD_OK);
    assert_true(id > 0);
    return id;
}

/* Fills token i of a synthetic trace: text "t<i> ", role by position, metrics. */
static void make_token(struct pd_token_rec *t, int64_t pos, char *textbuf, uint8_t *attn)
{
    memset(t, 0, sizeof *t);
    t->pos = pos;
    t->id = (int32_t)(pos * 7 % 32000);
    t->role = pos < 4 ? PD_ROLE_PROMPT : PD_ROLE_THINK;
    t->flags = pos < 4 ? PD_TOKF_FORCED : 0;
    t->logprob = -0.01f * (float)(pos % 100);
    t->entropy = 0.5f + 0.001f * (float)(pos % 1000);
    t->n_top = 3;
    for (int k = 0; k < 3; k++) {
        t->top[k].id = t->id + k;
        t->top[k].logprob = -0.5f * (float)k;
    }
    snprintf(textbuf, 32, "t%lld ", (long long)pos);
    t->text = textbuf;
    t->text_len = strlen(textbuf);
    if (attn) {
        /* 2 layers x 2 entries */
        memset(attn, 0, 4 + 2 * 2 * 8);
        attn[0] = 1;
        attn[1] = 2;
        attn[2] = 2;
        for (int i = 0; i < 4; i++) {
            uint32_t p = (uint32_t)(pos > 0 ? pos - 1 : 0);
            float w = 0.25f;
            memcpy(attn + 4 + i * 8, &p, 4); /* little-endian hosts only in this test */
            memcpy(attn + 8 + i * 8, &w, 4);
        }
        t->attn = attn;
        t->attn_len = 4 + 2 * 2 * 8;
    }
}

static void append_tokens(struct pd_store *st, int64_t sid, int64_t from, int64_t n, bool attn)
{
    struct pd_token_rec *t = calloc((size_t)n, sizeof *t);
    char(*text)[32] = calloc((size_t)n, 32);
    uint8_t(*blob)[40] = calloc((size_t)n, 40);
    for (int64_t i = 0; i < n; i++) {
        make_token(&t[i], from + i, text[i], attn ? blob[i] : NULL);
    }
    struct pd_err err;
    enum pd_status rc = pd_store_tokens_append(st, sid, t, (size_t)n, &err);
    if (rc != PD_OK) {
        fprintf(stderr, "%s\n", err.msg);
    }
    assert_int_equal(rc, PD_OK);
    free(t);
    free(text);
    free(blob);
}

static void test_open_creates_schema(void **state)
{
    struct store_fx *f = *state;
    assert_int_equal(pd_store_schema_version(f->st), PD_STORE_SCHEMA_VERSION);
    struct pd_err err;
    assert_int_equal(pd_store_check(f->st, &err), PD_OK);
    /* the pragmas every connection relies on */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA application_id", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(s, 0), PD_STORE_APPLICATION_ID);
    sqlite3_finalize(s);
    sqlite3_close(db);
    /* reopening is a no-op migration */
    struct pd_store *st2;
    assert_int_equal(pd_store_open(f->path, NULL, &st2, &err), PD_OK);
    assert_int_equal(pd_store_schema_version(st2), PD_STORE_SCHEMA_VERSION);
    pd_store_close(&st2);
    assert_null(st2);
    pd_store_close(&st2); /* NULL is fine */
}

static void test_open_refuses_foreign_files(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    struct pd_store *st = NULL;
    char p[200];
    /* not SQLite at all */
    snprintf(p, sizeof p, "%s/garbage.db", f->dir);
    FILE *g = fopen(p, "wb");
    for (int i = 0; i < 4096; i++) {
        fputc("ponder!"[i % 7], g);
    }
    fclose(g);
    assert_int_equal(pd_store_open(p, NULL, &st, &err), PD_EFORMAT);
    assert_null(st);
    assert_non_null(strstr(err.msg, "garbage.db"));
    /* SQLite, but another application's tables */
    snprintf(p, sizeof p, "%s/other.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(pd_store_open(p, NULL, &st, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "not a ponder database"));
    /* a ponder database from the future */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    pd_store_close(&f->st);
    assert_int_equal(pd_store_open(f->path, NULL, &st, &err), PD_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "newer"));
    /* missing file without create */
    struct pd_store_params prm = pd_store_default_params();
    prm.create = false;
    snprintf(p, sizeof p, "%s/none.db", f->dir);
    assert_int_equal(pd_store_open(p, &prm, &st, &err), PD_EIO);
    assert_int_equal(pd_store_open("", NULL, &st, &err), PD_EINVAL);
    /* restore the fixture's store for teardown */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    char restore[64];
    snprintf(restore, sizeof restore, "PRAGMA user_version = %d", PD_STORE_SCHEMA_VERSION);
    sqlite3_exec(db, restore, NULL, NULL, NULL);
    sqlite3_close(db);
    assert_int_equal(pd_store_open(f->path, NULL, &f->st, &err), PD_OK);
}

static void test_default_path_and_parent_dirs(void **state)
{
    struct store_fx *f = *state;
    char buf[256], old_xdg[256] = "", old_home[256] = "";
    struct pd_err err;
    const char *x = getenv("XDG_DATA_HOME"), *h = getenv("HOME");
    if (x) {
        snprintf(old_xdg, sizeof old_xdg, "%s", x);
    }
    if (h) {
        snprintf(old_home, sizeof old_home, "%s", h);
    }
    setenv("XDG_DATA_HOME", "/data/x", 1);
    assert_int_equal(pd_store_default_path(buf, sizeof buf, &err), PD_OK);
    assert_string_equal(buf, "/data/x/ponder/ponder.db");
    setenv("XDG_DATA_HOME", "relative/ignored", 1);
    setenv("HOME", "/home/u", 1);
    assert_int_equal(pd_store_default_path(buf, sizeof buf, &err), PD_OK);
    assert_string_equal(buf, "/home/u/.local/share/ponder/ponder.db");
    assert_int_equal(pd_store_default_path(buf, 8, &err), PD_EINVAL);
    unsetenv("XDG_DATA_HOME");
    unsetenv("HOME");
    assert_int_equal(pd_store_default_path(buf, sizeof buf, &err), PD_EINVAL);
    if (*old_xdg) {
        setenv("XDG_DATA_HOME", old_xdg, 1);
    }
    if (*old_home) {
        setenv("HOME", old_home, 1);
    }
    /* create_parent_dirs makes the whole folder chain */
    char p[200];
    snprintf(p, sizeof p, "%s/a/b/c/p.db", f->dir);
    struct pd_store_params prm = pd_store_default_params();
    struct pd_store *st;
    assert_int_equal(pd_store_open(p, &prm, &st, &err), PD_EIO);
    prm.create_parent_dirs = true;
    assert_int_equal(pd_store_open(p, &prm, &st, &err), PD_OK);
    pd_store_close(&st);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
}

static void test_models(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    const char *sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    struct pd_model_ident m = {"qwen3-0.6b-q8_0.gguf", 639447424, sha, "qwen3"};
    int64_t a, b;
    assert_int_equal(pd_store_model_put(f->st, &m, &a, &err), PD_OK);
    m.file_name = "renamed.gguf";
    assert_int_equal(pd_store_model_put(f->st, &m, &b, &err), PD_OK);
    assert_int_equal(a, b); /* identity is the digest */
    m.sha256 = "0123";
    assert_int_equal(pd_store_model_put(f->st, &m, &b, &err), PD_EINVAL);
    m.sha256 = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_int_equal(pd_store_model_put(f->st, &m, &b, &err), PD_EINVAL);
    m.sha256 = sha;
    m.arch = "";
    assert_int_equal(pd_store_model_put(f->st, &m, &b, &err), PD_EINVAL);

    struct pd_session_new sn = {.model_id = a, .source = "live"};
    int64_t sid;
    assert_int_equal(pd_store_session_create(f->st, &sn, &sid, &err), PD_OK);
    struct pd_store_session_info in;
    assert_int_equal(pd_store_session_get(f->st, sid, &in, &err), PD_OK);
    assert_int_equal(in.model_id, a);
    assert_string_equal(in.model_name, "renamed.gguf");
    assert_string_equal(in.model_arch, "qwen3");
    assert_string_equal(in.model_sha256, sha);
    assert_true(in.model_size == 639447424);
    assert_false(in.has_settings);
    pd_store_session_info_free(&in);

    /* A session without a model gets one later (an imported trace, scored). */
    struct pd_session_new imp = {.model_id = 0, .source = "import"};
    int64_t sid2;
    assert_int_equal(pd_store_session_create(f->st, &imp, &sid2, &err), PD_OK);
    assert_int_equal(pd_store_session_set_model(f->st, sid2, a, &err), PD_OK);
    assert_int_equal(pd_store_session_get(f->st, sid2, &in, &err), PD_OK);
    assert_int_equal(in.model_id, a);
    pd_store_session_info_free(&in);
    assert_int_equal(pd_store_session_set_model(f->st, sid2, a + 1000, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "no model"));
    assert_int_equal(pd_store_session_set_model(f->st, sid2 + 1000, a, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "no session"));
    assert_int_equal(pd_store_session_set_model(f->st, sid2, 0, &err), PD_OK);
    assert_int_equal(pd_store_session_get(f->st, sid2, &in, &err), PD_OK);
    assert_int_equal(in.model_id, 0);
    pd_store_session_info_free(&in);
}

static void test_sessions_and_messages(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t sid = new_session(f->st, "What is 2+2?");
    struct pd_store_session_info in;
    assert_int_equal(pd_store_session_get(f->st, sid, &in, &err), PD_OK);
    assert_true(in.has_settings);
    assert_float_equal(in.settings.temperature, 0.6, 1e-6);
    assert_float_equal(in.settings.top_p, 0.95, 1e-6);
    assert_int_equal(in.settings.top_k, 20);
    assert_true(in.settings.seed == 0xFFFFFFFFFFFFFFF0ull);
    assert_string_equal(in.settings.mode, "long");
    assert_string_equal(in.settings.kv_policy, "h2o:256,shadow");
    assert_string_equal(in.settings.chat_template, "chatml-think");
    assert_string_equal(in.source, "live");
    assert_string_equal(in.title, "What is 2+2?");
    assert_string_equal(in.tags, "");
    assert_null(in.meta);
    assert_int_equal(in.n_tokens, 0);
    assert_false(in.finished);
    assert_true(in.created_ms > 1600000000000LL);
    pd_store_session_info_free(&in);

    struct pd_message *msgs;
    size_t n;
    assert_int_equal(pd_store_messages_get(f->st, sid, &msgs, &n, &err), PD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(msgs[0].role, PD_STORE_MSG_SYSTEM);
    assert_string_equal(msgs[0].content, "be brief");
    assert_int_equal(msgs[1].role, PD_STORE_MSG_USER);
    pd_store_messages_free(msgs, n);

    assert_int_equal(pd_store_session_finish(f->st, sid, &err), PD_OK);
    assert_int_equal(pd_store_session_get(f->st, sid, &in, &err), PD_OK);
    assert_true(in.finished);
    pd_store_session_info_free(&in);

    /* bad inputs */
    struct pd_run_settings bad = {.temperature = -1};
    struct pd_session_new sn = {.settings = &bad};
    int64_t id;
    assert_int_equal(pd_store_session_create(f->st, &sn, &id, &err), PD_EINVAL);
    sn = (struct pd_session_new){.meta = "[1,2]"};
    assert_int_equal(pd_store_session_create(f->st, &sn, &id, &err), PD_EINVAL);
    sn = (struct pd_session_new){.meta = "{\"id\":7}"};
    assert_int_equal(pd_store_session_create(f->st, &sn, &id, &err), PD_OK);
    sn = (struct pd_session_new){.fork_pos = 3};
    assert_int_equal(pd_store_session_create(f->st, &sn, &id, &err), PD_EINVAL);
    struct pd_message bm = {PD_STORE_MSG_ROLE_COUNT, "x"};
    sn = (struct pd_session_new){.messages = &bm, .n_messages = 1};
    assert_int_equal(pd_store_session_create(f->st, &sn, &id, &err), PD_EINVAL);
    assert_int_equal(pd_store_session_get(f->st, 9999, &in, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "9999"));

    struct pd_store_session_info *all;
    assert_int_equal(pd_store_session_list(f->st, &all, &n, &err), PD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(all[0].id, sid);
    assert_string_equal(all[1].meta, "{\"id\":7}");
    for (size_t i = 0; i < n; i++) {
        pd_store_session_info_free(&all[i]);
    }
    free(all);

    assert_int_equal(pd_store_session_delete(f->st, sid, &err), PD_OK);
    assert_int_equal(pd_store_session_delete(f->st, sid, &err), PD_EINVAL);
    assert_int_equal(pd_store_messages_get(f->st, sid, &msgs, &n, &err), PD_OK);
    assert_int_equal(n, 0);
    free(msgs);
}

static void test_msg_role_names(void **state)
{
    (void)state;
    for (int r = 0; r < PD_STORE_MSG_ROLE_COUNT; r++) {
        assert_int_equal(pd_store_msg_role_parse(pd_store_msg_role_name((enum pd_store_msg_role)r)), r);
    }
    assert_null(pd_store_msg_role_name(PD_STORE_MSG_ROLE_COUNT));
    assert_int_equal(pd_store_msg_role_parse("tool"), PD_STORE_MSG_ROLE_COUNT);
}

static void test_tokens_roundtrip_and_order(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t sid = new_session(f->st, "q");
    append_tokens(f->st, sid, 0, 10, true);
    append_tokens(f->st, sid, 10, 5, false);
    /* gaps, repeats and bad records are refused without storing anything */
    struct pd_token_rec t;
    char txt[32];
    make_token(&t, 16, txt, NULL);
    assert_int_equal(pd_store_tokens_append(f->st, sid, &t, 1, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "expected 15"));
    make_token(&t, 14, txt, NULL);
    assert_int_equal(pd_store_tokens_append(f->st, sid, &t, 1, &err), PD_EINVAL);
    make_token(&t, 15, txt, NULL);
    t.role = PD_ROLE_COUNT;
    assert_int_equal(pd_store_tokens_append(f->st, sid, &t, 1, &err), PD_EINVAL);
    make_token(&t, 15, txt, NULL);
    t.id = -2;
    assert_int_equal(pd_store_tokens_append(f->st, sid, &t, 1, &err), PD_EINVAL);
    make_token(&t, 15, txt, NULL);
    uint8_t badattn[12] = {1, 1, 1, 0};
    t.attn = badattn;
    t.attn_len = 11;
    assert_int_equal(pd_store_tokens_append(f->st, sid, &t, 1, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "attention blob"));
    /* a batch with a bad record in the middle stores none of it */
    struct pd_token_rec two[2];
    char tx2[2][32];
    make_token(&two[0], 15, tx2[0], NULL);
    make_token(&two[1], 17, tx2[1], NULL);
    assert_int_equal(pd_store_tokens_append(f->st, sid, two, 2, &err), PD_EINVAL);
    assert_int_equal(pd_store_tokens_append(f->st, 4242, two, 1, &err), PD_EINVAL);

    struct pd_replay *r;
    assert_int_equal(pd_replay_open(f->st, sid, &r, &err), PD_OK);
    assert_int_equal(pd_replay_length(r), 15);
    assert_int_equal(pd_replay_info(r)->n_tokens, 15);
    struct pd_token_rec out[20];
    size_t got;
    assert_int_equal(pd_replay_read(r, out, 20, &got, &err), PD_OK);
    assert_int_equal(got, 15);
    for (size_t i = 0; i < got; i++) {
        struct pd_token_rec want;
        char wt[32];
        uint8_t wa[40];
        make_token(&want, (int64_t)i, wt, i < 10 ? wa : NULL);
        assert_int_equal(out[i].pos, (int64_t)i);
        assert_int_equal(out[i].id, want.id);
        assert_int_equal(out[i].role, want.role);
        assert_int_equal(out[i].flags, want.flags);
        assert_float_equal(out[i].logprob, want.logprob, 1e-7);
        assert_float_equal(out[i].entropy, want.entropy, 1e-7);
        assert_int_equal(out[i].n_top, 3);
        assert_int_equal(out[i].top[2].id, want.top[2].id);
        assert_float_equal(out[i].top[2].logprob, -1.0, 1e-7);
        assert_int_equal(out[i].text_len, want.text_len);
        assert_memory_equal(out[i].text, want.text, want.text_len);
        if (i < 10) {
            assert_int_equal(out[i].attn_len, 36);
            assert_memory_equal(out[i].attn, wa, 36);
        } else {
            assert_null(out[i].attn);
        }
        pd_token_rec_free(&out[i]);
    }
    assert_int_equal(pd_replay_read(r, out, 20, &got, &err), PD_OK);
    assert_int_equal(got, 0);
    pd_replay_close(&r);
    assert_null(r);

    /* NaN metrics and empty text survive */
    int64_t s2 = new_session(f->st, "q2");
    memset(&t, 0, sizeof t);
    t.logprob = NAN;
    t.entropy = NAN;
    t.id = -1;
    t.flags = PD_TOKF_NO_METRICS | PD_TOKF_PRUNED; /* PRUNED is derived, not stored */
    assert_int_equal(pd_store_tokens_append(f->st, s2, &t, 1, &err), PD_OK);
    assert_int_equal(pd_replay_open(f->st, s2, &r, &err), PD_OK);
    assert_int_equal(pd_replay_read(r, out, 2, &got, &err), PD_OK);
    assert_int_equal(got, 1);
    assert_true(isnan(out[0].logprob) && isnan(out[0].entropy));
    assert_int_equal(out[0].flags, PD_TOKF_NO_METRICS);
    assert_int_equal(out[0].text_len, 0);
    assert_string_equal(out[0].text, "");
    pd_token_rec_free(&out[0]);
    pd_replay_close(&r);
}

static void test_tokens_replace(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t sid = new_session(f->st, "q");
    append_tokens(f->st, sid, 0, 6, false);
    struct pd_step_rec st = {.index = 0, .pos_begin = 4, .pos_end = 6, .kind = PD_STEP_PLAN};
    assert_int_equal(pd_store_steps_put(f->st, sid, &st, 1, &err), PD_OK);
    struct pd_annotation span = {.pos_begin = 1, .pos_end = 2, .tag = "odd"};
    struct pd_annotation whole = {.whole_session = true, .tag = "keep"};
    assert_int_equal(pd_store_annotate(f->st, sid, &span, NULL, &err), PD_OK);
    assert_int_equal(pd_store_annotate(f->st, sid, &whole, NULL, &err), PD_OK);
    append_tokens(f->st, new_session(f->st, "other"), 0, 3, false);

    /* a scoring pass: 3 real tokens replace the 6 segments */
    struct pd_token_rec t[3];
    char tx[3][32];
    for (int i = 0; i < 3; i++) {
        make_token(&t[i], i, tx[i], NULL);
    }
    assert_int_equal(pd_store_tokens_replace(f->st, sid, t, 3, &err), PD_OK);
    struct pd_store_session_info in;
    assert_int_equal(pd_store_session_get(f->st, sid, &in, &err), PD_OK);
    assert_int_equal(in.n_tokens, 3);
    assert_int_equal(in.n_steps, 0);
    assert_string_equal(in.tags, "keep");
    pd_store_session_info_free(&in);
    /* a failing replacement keeps the old rows */
    t[1].pos = 5;
    assert_int_equal(pd_store_tokens_replace(f->st, sid, t, 3, &err), PD_EINVAL);
    assert_int_equal(pd_store_session_get(f->st, sid, &in, &err), PD_OK);
    assert_int_equal(in.n_tokens, 3);
    pd_store_session_info_free(&in);
    /* sessions with branches cannot be rewritten */
    struct pd_session_new b = {.parent_id = sid, .fork_pos = 2};
    int64_t bid;
    assert_int_equal(pd_store_session_create(f->st, &b, &bid, &err), PD_OK);
    t[1].pos = 1;
    assert_int_equal(pd_store_tokens_replace(f->st, sid, t, 3, &err), PD_EINVAL);
}

static void test_topk_blob(void **state)
{
    (void)state;
    struct pd_topk top[PD_TOPK_MAX + 1];
    for (int i = 0; i <= PD_TOPK_MAX; i++) {
        top[i].id = 100 + i;
        top[i].logprob = -0.25f * (float)i;
    }
    uint8_t blob[PD_TOPK_BLOB_MAX + 8];
    assert_int_equal(pd_topk_blob_encode(top, 0, blob), 0);
    assert_int_equal(pd_topk_blob_encode(top, PD_TOPK_MAX + 1, blob), 0);
    size_t n = pd_topk_blob_encode(top, 5, blob);
    assert_int_equal(n, 4 + 5 * 8);
    /* documented layout, byte by byte */
    assert_int_equal(blob[0], 1);
    assert_int_equal(blob[1], 5);
    assert_int_equal(blob[2], 0);
    assert_int_equal(blob[4], 100);
    assert_int_equal(blob[5], 0);
    struct pd_topk got[PD_TOPK_MAX];
    uint8_t k;
    struct pd_err err;
    assert_int_equal(pd_topk_blob_decode(blob, n, got, &k, &err), PD_OK);
    assert_int_equal(k, 5);
    assert_int_equal(got[4].id, 104);
    assert_float_equal(got[4].logprob, -1.0, 0);
    /* named corrupt inputs */
    assert_int_equal(pd_topk_blob_decode(blob, 3, got, &k, &err), PD_EFORMAT);
    assert_int_equal(pd_topk_blob_decode(blob, n - 1, got, &k, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "needs"));
    blob[0] = 2;
    assert_int_equal(pd_topk_blob_decode(blob, n, got, &k, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "version"));
    blob[0] = 1;
    blob[1] = 0;
    assert_int_equal(pd_topk_blob_decode(blob, n, got, &k, &err), PD_EFORMAT);
    blob[1] = PD_TOPK_MAX + 1;
    assert_int_equal(pd_topk_blob_decode(blob, n, got, &k, &err), PD_EFORMAT);
    blob[1] = 5;
    blob[3] = 1;
    assert_int_equal(pd_topk_blob_decode(blob, n, got, &k, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "reserved"));
    blob[3] = 0;
    float nanv = NAN;
    memcpy(blob + 8, &nanv, 4);
    assert_int_equal(pd_topk_blob_decode(blob, n, got, &k, &err), PD_EFORMAT);
    blob[4] = 0xff;
    blob[5] = 0xff;
    blob[6] = 0xff;
    blob[7] = 0xff;
    assert_int_equal(pd_topk_blob_decode(blob, n, got, &k, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "negative"));
}

static void test_steps_and_prunes(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t sid = new_session(f->st, "q");
    append_tokens(f->st, sid, 0, 20, false);
    struct pd_step_rec s[3] = {
        {.index = 0, .pos_begin = 4, .pos_end = 10, .kind = PD_STEP_PLAN,
         .mean_surprisal = 1.5f, .first_surprisal = 3.0f, .mean_entropy = 0.7f,
         .attn_received = NAN},
        {.index = 1, .pos_begin = 10, .pos_end = 15, .kind = PD_STEP_CHECK,
         .mean_surprisal = 2.0f, .first_surprisal = 5.0f, .mean_entropy = 1.0f,
         .attn_received = 0.3f},
        {.index = 2, .pos_begin = 15, .pos_end = 20, .kind = PD_STEP_CONCLUDE},
    };
    assert_int_equal(pd_store_steps_put(f->st, sid, s, 3, &err), PD_OK);
    s[2].kind = PD_STEP_BACKTRACK; /* upsert by index */
    assert_int_equal(pd_store_steps_put(f->st, sid, &s[2], 1, &err), PD_OK);
    struct pd_step_rec bad = {.index = 3, .pos_begin = 5, .pos_end = 4};
    assert_int_equal(pd_store_steps_put(f->st, sid, &bad, 1, &err), PD_EINVAL);
    bad = (struct pd_step_rec){.index = 3, .kind = PD_STEP_KIND_COUNT};
    assert_int_equal(pd_store_steps_put(f->st, sid, &bad, 1, &err), PD_EINVAL);

    assert_int_equal(pd_store_prune(f->st, sid, 1, "manual", "user", &err), PD_OK);
    assert_int_equal(pd_store_prune(f->st, sid, 1, "asap:budget=64", "auto", &err), PD_OK);
    assert_int_equal(pd_store_prune(f->st, sid, 7, "manual", "user", &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "no step 7"));
    assert_int_equal(pd_store_prune(f->st, sid, 0, "", "user", &err), PD_EINVAL);
    assert_int_equal(pd_store_prune(f->st, sid, 0, "manual", "robot", &err), PD_EINVAL);

    struct pd_step_rec *got;
    size_t n;
    assert_int_equal(pd_store_steps_get(f->st, sid, &got, &n, &err), PD_OK);
    assert_int_equal(n, 3);
    /* every field back in its own place (distinct values, so a swap shows) */
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(got[i].index, s[i].index);
        assert_int_equal(got[i].pos_begin, s[i].pos_begin);
        assert_int_equal(got[i].pos_end, s[i].pos_end);
        assert_true(got[i].mean_surprisal == s[i].mean_surprisal);
        assert_true(got[i].first_surprisal == s[i].first_surprisal);
        assert_true(got[i].mean_entropy == s[i].mean_entropy);
    }
    assert_int_equal(got[2].pos_begin, 15);
    assert_int_equal(got[2].pos_end, 20);
    assert_int_equal(got[0].kind, PD_STEP_PLAN);
    assert_float_equal(got[0].first_surprisal, 3.0, 1e-6);
    assert_true(isnan(got[0].attn_received));
    assert_float_equal(got[1].attn_received, 0.3, 1e-6);
    assert_true(got[1].pruned);
    assert_false(got[0].pruned);
    assert_int_equal(got[2].kind, PD_STEP_BACKTRACK);
    free(got);

    struct pd_prune *pr;
    assert_int_equal(pd_store_prunes_get(f->st, sid, &pr, &n, &err), PD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(pr[0].step_index, 1);
    assert_int_equal(pr[0].pos_begin, 10);
    assert_int_equal(pr[0].pos_end, 15);
    assert_string_equal(pr[0].strategy, "asap:budget=64");
    assert_string_equal(pr[0].by, "auto");
    pd_store_prunes_free(pr, n);

    /* the reader flags exactly the pruned span */
    struct pd_replay *r;
    assert_int_equal(pd_replay_open(f->st, sid, &r, &err), PD_OK);
    struct pd_token_rec t[20];
    size_t got_n;
    assert_int_equal(pd_replay_read(r, t, 20, &got_n, &err), PD_OK);
    assert_int_equal(got_n, 20);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(!!(t[i].flags & PD_TOKF_PRUNED), i >= 10 && i < 15);
        pd_token_rec_free(&t[i]);
    }
    size_t ns;
    const struct pd_step_rec *rs = pd_replay_steps(r, &ns);
    assert_int_equal(ns, 3);
    assert_true(rs[1].pruned);
    pd_replay_close(&r);

    struct pd_store_session_info in;
    assert_int_equal(pd_store_session_get(f->st, sid, &in, &err), PD_OK);
    assert_int_equal(in.n_steps, 3);
    assert_int_equal(in.n_pruned, 1);
    pd_store_session_info_free(&in);

    assert_int_equal(pd_store_unprune(f->st, sid, 1, &err), PD_OK);
    assert_int_equal(pd_store_prunes_get(f->st, sid, &pr, &n, &err), PD_OK);
    assert_int_equal(n, 0);
    free(pr);
    /* re-segmenting drops the old steps and their prunes */
    assert_int_equal(pd_store_prune(f->st, sid, 2, "manual", "user", &err), PD_OK);
    assert_int_equal(pd_store_steps_replace(f->st, sid, s, 1, &err), PD_OK);
    assert_int_equal(pd_store_steps_get(f->st, sid, &got, &n, &err), PD_OK);
    assert_int_equal(n, 1);
    free(got);
    assert_int_equal(pd_store_prunes_get(f->st, sid, &pr, &n, &err), PD_OK);
    assert_int_equal(n, 0);
    free(pr);
}

/* Pruned flags with steps whose index order differs from position order, overlapping. */
static void test_pruned_flags_unsorted_spans(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t sid = new_session(f->st, "q");
    append_tokens(f->st, sid, 0, 30, false);
    struct pd_step_rec s[4] = {
        {.index = 0, .pos_begin = 20, .pos_end = 25},
        {.index = 1, .pos_begin = 0, .pos_end = 12},
        {.index = 2, .pos_begin = 3, .pos_end = 5},
        {.index = 3, .pos_begin = 8, .pos_end = 22},
    };
    assert_int_equal(pd_store_steps_put(f->st, sid, s, 4, &err), PD_OK);
    assert_int_equal(pd_store_prune(f->st, sid, 0, "manual", "user", &err), PD_OK);
    assert_int_equal(pd_store_prune(f->st, sid, 1, "manual", "user", &err), PD_OK);
    assert_int_equal(pd_store_prune(f->st, sid, 2, "manual", "user", &err), PD_OK);
    struct pd_replay *r;
    assert_int_equal(pd_replay_open(f->st, sid, &r, &err), PD_OK);
    struct pd_token_rec t[30];
    size_t got;
    assert_int_equal(pd_replay_read(r, t, 30, &got, &err), PD_OK);
    assert_int_equal(got, 30);
    for (int i = 0; i < 30; i++) {
        bool want = i < 12 || (i >= 20 && i < 25);
        if (!!(t[i].flags & PD_TOKF_PRUNED) != want) {
            fail_msg("position %d: pruned flag %d", i, !want);
        }
        pd_token_rec_free(&t[i]);
    }
    pd_replay_close(&r);
}

static void test_kv_events_and_iterator(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t sid = new_session(f->st, "q");
    append_tokens(f->st, sid, 0, 600, false);
    struct pd_kv_event_rec ev[] = {
        {.at_pos = 0, .layer = -1, .slot_pos = 0, .kind = PD_KV_SHADOW_EVICT},
        {.at_pos = 300, .layer = 2, .slot_pos = 17, .kind = PD_KV_EVICT},
        {.at_pos = 300, .layer = 3, .slot_pos = 18, .kind = PD_KV_EVICT},
        {.at_pos = 256, .layer = 0, .slot_pos = 5, .kind = PD_KV_EVICT},
        {.at_pos = 600, .layer = 1, .slot_pos = 9, .kind = PD_KV_EVICT},
    };
    assert_int_equal(pd_store_kv_append(f->st, sid, ev, 5, &err), PD_OK);
    struct pd_kv_event_rec badev = {.at_pos = 1, .layer = -2};
    assert_int_equal(pd_store_kv_append(f->st, sid, &badev, 1, &err), PD_EINVAL);
    badev = (struct pd_kv_event_rec){.at_pos = 1, .kind = PD_KV_EVENT_KIND_COUNT};
    assert_int_equal(pd_store_kv_append(f->st, sid, &badev, 1, &err), PD_EINVAL);

    struct pd_replay *r;
    assert_int_equal(pd_replay_open(f->st, sid, &r, &err), PD_OK);
    /* playback order: events at p before token p, tail events after the last token */
    int64_t next_tok = 0;
    int n_ev = 0;
    int64_t ev_seen[5];
    for (;;) {
        struct pd_replay_item it;
        assert_int_equal(pd_replay_next(r, &it, &err), PD_OK);
        if (it.kind == PD_REPLAY_END) {
            break;
        }
        if (it.kind == PD_REPLAY_TOKEN) {
            assert_int_equal(it.token.pos, next_tok);
            next_tok++;
            pd_token_rec_free(&it.token);
        } else {
            assert_int_equal(it.kv.at_pos, next_tok);
            ev_seen[n_ev++] = it.kv.slot_pos;
        }
    }
    assert_int_equal(next_tok, 600);
    assert_int_equal(n_ev, 5);
    assert_int_equal(ev_seen[0], 0);
    assert_int_equal(ev_seen[1], 5);
    assert_int_equal(ev_seen[2], 17); /* same at_pos: insertion order */
    assert_int_equal(ev_seen[3], 18);
    assert_int_equal(ev_seen[4], 9);
    struct pd_replay_item it;
    assert_int_equal(pd_replay_next(r, &it, &err), PD_OK);
    assert_int_equal(it.kind, PD_REPLAY_END);

    /* seek, then the iterator and bulk reads share the cursor */
    assert_int_equal(pd_replay_seek(r, 300, &err), PD_OK);
    assert_int_equal(pd_replay_next(r, &it, &err), PD_OK);
    assert_int_equal(it.kind, PD_REPLAY_KV_EVENT);
    assert_int_equal(it.kv.slot_pos, 17);
    assert_int_equal(pd_replay_next(r, &it, &err), PD_OK);
    assert_int_equal(pd_replay_next(r, &it, &err), PD_OK);
    assert_int_equal(it.kind, PD_REPLAY_TOKEN);
    assert_int_equal(it.token.pos, 300);
    pd_token_rec_free(&it.token);
    assert_int_equal(pd_replay_tell(r), 301);
    struct pd_token_rec t[2];
    size_t got;
    assert_int_equal(pd_replay_read(r, t, 2, &got, &err), PD_OK);
    assert_int_equal(got, 2);
    assert_int_equal(t[0].pos, 301);
    pd_token_rec_free(&t[0]);
    pd_token_rec_free(&t[1]);
    assert_int_equal(pd_replay_seek(r, 601, &err), PD_EINVAL);
    assert_int_equal(pd_replay_seek(r, -1, &err), PD_EINVAL);
    assert_int_equal(pd_replay_seek(r, 600, &err), PD_OK);
    assert_int_equal(pd_replay_read(r, t, 2, &got, &err), PD_OK);
    assert_int_equal(got, 0);

    struct pd_kv_event_rec *kv;
    size_t n;
    assert_int_equal(pd_replay_kv_events(r, 256, 301, &kv, &n, &err), PD_OK);
    assert_int_equal(n, 3);
    assert_int_equal(kv[0].slot_pos, 5);
    assert_int_equal(kv[1].layer, 2);
    assert_int_equal(kv[2].kind, PD_KV_EVICT);
    free(kv);
    pd_replay_close(&r);
}

static void test_annotations(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t sid = new_session(f->st, "q");
    append_tokens(f->st, sid, 0, 10, false);
    struct pd_annotation a = {.pos_begin = 3, .pos_end = 7, .tag = "loop",
                              .note = "repeats the check\nthree times"};
    int64_t id1, id2;
    assert_int_equal(pd_store_annotate(f->st, sid, &a, &id1, &err), PD_OK);
    struct pd_annotation w = {.whole_session = true, .tag = "good-example"};
    assert_int_equal(pd_store_annotate(f->st, sid, &w, &id2, &err), PD_OK);
    assert_int_equal(pd_store_annotate(f->st, sid, &w, NULL, &err), PD_OK);
    struct pd_annotation bad = {.pos_begin = 5, .pos_end = 4, .tag = "x"};
    assert_int_equal(pd_store_annotate(f->st, sid, &bad, NULL, &err), PD_EINVAL);
    bad = (struct pd_annotation){.whole_session = true, .tag = "a,b"};
    assert_int_equal(pd_store_annotate(f->st, sid, &bad, NULL, &err), PD_EINVAL);
    bad.tag = "";
    assert_int_equal(pd_store_annotate(f->st, sid, &bad, NULL, &err), PD_EINVAL);
    bad.tag = "bad\x01";
    assert_int_equal(pd_store_annotate(f->st, sid, &bad, NULL, &err), PD_EINVAL);
    bad.tag = "\xff\xfe";
    assert_int_equal(pd_store_annotate(f->st, sid, &bad, NULL, &err), PD_EINVAL);
    bad.tag = "ok";
    bad.note = "\xc3";
    assert_int_equal(pd_store_annotate(f->st, sid, &bad, NULL, &err), PD_EINVAL);
    assert_int_equal(pd_store_annotate(f->st, 777, &w, NULL, &err), PD_EINVAL);

    struct pd_annotation *got;
    size_t n;
    assert_int_equal(pd_store_annotations_get(f->st, sid, &got, &n, &err), PD_OK);
    assert_int_equal(n, 3);
    assert_true(got[0].whole_session);
    assert_int_equal(got[0].id, id2);
    assert_string_equal(got[0].tag, "good-example");
    assert_string_equal(got[0].note, "");
    assert_false(got[2].whole_session);
    assert_int_equal(got[2].pos_begin, 3);
    assert_int_equal(got[2].pos_end, 7);
    assert_string_equal(got[2].note, "repeats the check\nthree times");
    pd_store_annotations_free(got, n);

    struct pd_store_session_info in;
    assert_int_equal(pd_store_session_get(f->st, sid, &in, &err), PD_OK);
    assert_string_equal(in.tags, "good-example,loop");
    pd_store_session_info_free(&in);

    assert_int_equal(pd_store_annotation_delete(f->st, sid, id1, &err), PD_OK);
    assert_int_equal(pd_store_annotation_delete(f->st, sid, id1, &err), PD_EINVAL);
    assert_int_equal(pd_store_annotations_get(f->st, sid, &got, &n, &err), PD_OK);
    assert_int_equal(n, 2);
    pd_store_annotations_free(got, n);
}

static void test_branches(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    int64_t root = new_session(f->st, "q");
    append_tokens(f->st, root, 0, 50, false);
    struct pd_kv_event_rec ev[2] = {{.at_pos = 20, .slot_pos = 1}, {.at_pos = 40, .slot_pos = 2}};
    assert_int_equal(pd_store_kv_append(f->st, root, ev, 2, &err), PD_OK);
    struct pd_session_new b = {.parent_id = root, .fork_pos = 30, .source = "branch"};
    int64_t br;
    assert_int_equal(pd_store_session_create(f->st, &b, &br, &err), PD_OK);
    b.fork_pos = 51;
    int64_t bad;
    assert_int_equal(pd_store_session_create(f->st, &b, &bad, &err), PD_EINVAL);
    b.parent_id = 999;
    b.fork_pos = 0;
    assert_int_equal(pd_store_session_create(f->st, &b, &bad, &err), PD_EINVAL);

    /* the branch continues at its fork position, not before */
    struct pd_token_rec t;
    char tx[32];
    make_token(&t, 29, tx, NULL);
    assert_int_equal(pd_store_tokens_append(f->st, br, &t, 1, &err), PD_EINVAL);
    append_tokens(f->st, br, 30, 10, false);
    struct pd_kv_event_rec bev = {.at_pos = 33, .slot_pos = 3};
    assert_int_equal(pd_store_kv_append(f->st, br, &bev, 1, &err), PD_OK);
    /* a branch of the branch */
    b = (struct pd_session_new){.parent_id = br, .fork_pos = 35};
    int64_t br2;
    assert_int_equal(pd_store_session_create(f->st, &b, &br2, &err), PD_OK);
    append_tokens(f->st, br2, 35, 3, false);

    struct pd_replay *r;
    assert_int_equal(pd_replay_open(f->st, br2, &r, &err), PD_OK);
    assert_int_equal(pd_replay_length(r), 38);
    assert_int_equal(pd_replay_info(r)->parent_id, br);
    struct pd_token_rec out[64];
    size_t got;
    assert_int_equal(pd_replay_read(r, out, 64, &got, &err), PD_OK);
    assert_int_equal(got, 38);
    for (size_t i = 0; i < got; i++) {
        assert_int_equal(out[i].pos, (int64_t)i);
        pd_token_rec_free(&out[i]);
    }
    /* events: root's before 30, the branch's from 30 on */
    struct pd_kv_event_rec *kv;
    size_t n;
    assert_int_equal(pd_replay_kv_events(r, 0, 100, &kv, &n, &err), PD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(kv[0].slot_pos, 1);
    assert_int_equal(kv[1].slot_pos, 3);
    free(kv);
    pd_replay_close(&r);

    struct pd_store_session_info in;
    assert_int_equal(pd_store_session_get(f->st, br, &in, &err), PD_OK);
    assert_int_equal(in.fork_pos, 30);
    assert_int_equal(in.n_tokens, 40);
    assert_string_equal(in.title, "q"); /* the parent's conversation was copied */
    pd_store_session_info_free(&in);
    /* parents with branches cannot be deleted; leaves can */
    assert_int_equal(pd_store_session_delete(f->st, root, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "branches"));
    assert_int_equal(pd_store_session_delete(f->st, br2, &err), PD_OK);
    assert_int_equal(pd_store_session_delete(f->st, br, &err), PD_OK);
    assert_int_equal(pd_store_session_delete(f->st, root, &err), PD_OK);
    assert_int_equal(pd_store_check(f->st, &err), PD_OK);
}

static void test_transactions(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    assert_int_equal(pd_store_begin(f->st, &err), PD_OK);
    assert_int_equal(pd_store_begin(f->st, &err), PD_EINVAL);
    int64_t a = new_session(f->st, "in txn");
    append_tokens(f->st, a, 0, 3, false);
    /* a failing call inside the transaction leaves the earlier ones alone */
    struct pd_token_rec t;
    char tx[32];
    make_token(&t, 9, tx, NULL);
    assert_int_equal(pd_store_tokens_append(f->st, a, &t, 1, &err), PD_EINVAL);
    pd_store_rollback(f->st);
    struct pd_store_session_info in;
    assert_int_equal(pd_store_session_get(f->st, a, &in, &err), PD_EINVAL);
    assert_int_equal(pd_store_commit(f->st, &err), PD_EINVAL);
    assert_int_equal(pd_store_begin(f->st, &err), PD_OK);
    a = new_session(f->st, "kept");
    append_tokens(f->st, a, 0, 3, false);
    assert_int_equal(pd_store_tokens_append(f->st, a, &t, 1, &err), PD_EINVAL);
    assert_int_equal(pd_store_commit(f->st, &err), PD_OK);
    assert_int_equal(pd_store_session_get(f->st, a, &in, &err), PD_OK);
    assert_int_equal(in.n_tokens, 3);
    pd_store_session_info_free(&in);
}

/* Rewrites one column of one token row behind the store's back. */
static void poke(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, msg);
    }
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_close(db);
}

static void expect_read_fails(struct pd_store *st, int64_t sid, const char *what)
{
    struct pd_err err;
    struct pd_replay *r;
    enum pd_status rc = pd_replay_open(st, sid, &r, &err);
    if (rc == PD_OK) {
        struct pd_token_rec t[16];
        size_t got = 0;
        rc = pd_replay_read(r, t, 16, &got, &err);
        for (size_t i = 0; i < got; i++) {
            pd_token_rec_free(&t[i]);
        }
        pd_replay_close(&r);
    }
    assert_int_equal(rc, PD_EFORMAT);
    if (!strstr(err.msg, what)) {
        fail_msg("'%s' does not mention '%s'", err.msg, what);
    }
}

static void test_corrupt_rows(void **state)
{
    struct store_fx *f = *state;
    int64_t sid = new_session(f->st, "q");
    append_tokens(f->st, sid, 0, 8, true);
    char sql[256];
    snprintf(sql, sizeof sql,
             "UPDATE tokens SET topk = x'0105' WHERE session_id = %lld AND pos = 3",
             (long long)sid);
    poke(f->path, sql);
    expect_read_fails(f->st, sid, "top-k blob");
    snprintf(sql, sizeof sql,
             "UPDATE tokens SET topk = NULL, attn = x'01020200'"
             " WHERE session_id = %lld AND pos = 3",
             (long long)sid);
    poke(f->path, sql);
    expect_read_fails(f->st, sid, "attention blob");
    snprintf(sql, sizeof sql,
             "UPDATE tokens SET attn = NULL WHERE session_id = %lld AND pos = 3;"
             "PRAGMA ignore_check_constraints = 1;"
             "UPDATE tokens SET role = 9 WHERE session_id = %lld AND pos = 4",
             (long long)sid, (long long)sid);
    poke(f->path, sql);
    expect_read_fails(f->st, sid, "pos 4");
    snprintf(sql, sizeof sql,
             "UPDATE tokens SET role = 1 WHERE session_id = %lld AND pos = 4;"
             "DELETE FROM tokens WHERE session_id = %lld AND pos = 5",
             (long long)sid, (long long)sid);
    poke(f->path, sql);
    expect_read_fails(f->st, sid, "position 5 missing");
    /* a branch chain that loops */
    int64_t b;
    struct pd_session_new sn = {.parent_id = sid, .fork_pos = 2};
    struct pd_err err;
    assert_int_equal(pd_store_session_create(f->st, &sn, &b, &err), PD_OK);
    snprintf(sql, sizeof sql,
             "PRAGMA foreign_keys = OFF; UPDATE sessions SET parent_id = %lld, fork_pos = 1"
             " WHERE id = %lld",
             (long long)b, (long long)sid);
    poke(f->path, sql);
    struct pd_replay *r;
    assert_int_equal(pd_replay_open(f->st, b, &r, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "cycle"));
    /* a bad step kind */
    snprintf(sql, sizeof sql,
             "PRAGMA ignore_check_constraints = 1;"
             "INSERT INTO steps (session_id, idx, pos_begin, pos_end, kind)"
             " VALUES (%lld, 0, 0, 1, 42)",
             (long long)b);
    poke(f->path, sql);
    struct pd_step_rec *steps;
    size_t n;
    assert_int_equal(pd_store_steps_get(f->st, b, &steps, &n, &err), PD_EFORMAT);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A 100k-token session opens and yields its first screen fast: the (session, pos)
 * index is used, the cost does not grow with the session. */
static void test_replay_long_session_fast(void **state)
{
    struct store_fx *f = *state;
    struct pd_err err;
    /* other sessions before and after, so the index has to do the work */
    int64_t other = new_session(f->st, "noise");
    append_tokens(f->st, other, 0, 5000, false);
    int64_t sid = new_session(f->st, "long");
    enum { N = 100000, B = 5000 };
    for (int64_t i = 0; i < N; i += B) {
        append_tokens(f->st, sid, i, B, true);
    }
    pd_store_close(&f->st);
    assert_int_equal(pd_store_open(f->path, NULL, &f->st, &err), PD_OK);
    double t0 = now_ms();
    struct pd_replay *r;
    assert_int_equal(pd_replay_open(f->st, sid, &r, &err), PD_OK);
    struct pd_token_rec *t = calloc(2000, sizeof *t);
    size_t got;
    assert_int_equal(pd_replay_read(r, t, 2000, &got, &err), PD_OK);
    double dt = now_ms() - t0;
    assert_int_equal(got, 2000);
    assert_int_equal(pd_replay_length(r), N);
    assert_int_equal(t[1999].pos, 1999);
    for (size_t i = 0; i < got; i++) {
        pd_token_rec_free(&t[i]);
    }
    /* seeking to the end is as cheap as the start */
    double t1 = now_ms();
    assert_int_equal(pd_replay_seek(r, N - 2000, &err), PD_OK);
    assert_int_equal(pd_replay_read(r, t, 2000, &got, &err), PD_OK);
    double dt_seek = now_ms() - t1;
    assert_int_equal(got, 2000);
    assert_int_equal(t[0].pos, N - 2000);
    for (size_t i = 0; i < got; i++) {
        pd_token_rec_free(&t[i]);
    }
    free(t);
    pd_replay_close(&r);
    double limit = SANITIZED ? 1000.0 : 100.0;
    fprintf(stderr, "replay: open + first 2000 of %d tokens: %.1f ms; seek + 2000: %.1f ms\n",
            N, dt, dt_seek);
    assert_true(dt < limit);
    assert_true(dt_seek < limit);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_schema, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_foreign_files, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_default_path_and_parent_dirs, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_models, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sessions_and_messages, fx_setup, fx_teardown),
        cmocka_unit_test(test_msg_role_names),
        cmocka_unit_test_setup_teardown(test_tokens_roundtrip_and_order, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tokens_replace, fx_setup, fx_teardown),
        cmocka_unit_test(test_topk_blob),
        cmocka_unit_test_setup_teardown(test_steps_and_prunes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pruned_flags_unsorted_spans, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_kv_events_and_iterator, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_annotations, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_branches, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_transactions, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_rows, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_replay_long_session_fast, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
