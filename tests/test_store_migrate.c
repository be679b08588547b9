/* test_store_migrate.c - store/ schema versioning: a database created at every earlier
 * version, filled with data valid at that version, upgrades to the current version with
 * its data intact; a failing migration leaves the file at its old version. */
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
#include "store_labels.h"
#include "store_replay.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/pd_migrate_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fail_msg("%s: %s", sql, msg);
    }
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* Rows a version-v database can hold, written with plain SQL as an old ponder would. */
static void fill_at_version(const char *path, int v)
{
    if (v == 0) {
        return;
    }
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec_ok(db, "PRAGMA foreign_keys = ON");
    exec_ok(db,
            "INSERT INTO models (id, file_name, file_size, sha256, arch) VALUES (1, 'm.gguf',"
            " 1234, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'llama');"
            "INSERT INTO sessions (id, model_id, source, temperature, top_p, top_k, min_p, seed,"
            " mode, n_tokens, created_ms, updated_ms) VALUES (1, 1, 'live', 0.7, 0.9, 40, 0.05,"
            " 42, 'long', 3, 1700000000000, 1700000000000);"
            "INSERT INTO messages (session_id, idx, role, content) VALUES (1, 0, 'user', 'hi');"
            "INSERT INTO tokens (session_id, pos, tok, role, flags, text, logprob, entropy, topk)"
            " VALUES (1, 0, 15, 0, 2, 'hi', NULL, NULL, NULL),"
            " (1, 1, 16, 1, 0, ' there', -0.5, 1.25, x'0101000007000000000000bf'),"
            " (1, 2, 17, 2, 0, '!', -0.25, 0.5, NULL);");
    if (v >= 2) {
        exec_ok(db,
                "INSERT INTO steps (session_id, idx, pos_begin, pos_end, kind) VALUES"
                " (1, 0, 1, 2, 1), (1, 1, 2, 3, 4);"
                "INSERT INTO prunes (session_id, step_idx, strategy, pruned_by, created_ms)"
                " VALUES (1, 0, 'manual', 'user', 1700000000001);"
                "INSERT INTO kv_events (session_id, at_pos, layer, slot_pos, kind) VALUES"
                " (1, 2, -1, 0, 0);");
    }
    if (v >= 3) {
        exec_ok(db, "INSERT INTO annotations (session_id, tag, created_ms) VALUES (1, 'seen', 1);"
                    "UPDATE sessions SET finished = 1,"
                    " meta = '{\"k\":1,\"answer\":16,\"gold\":\"x\"}' WHERE id = 1;");
    }
    sqlite3_close(db);
}

static void check_upgraded(const char *path, int from)
{
    struct pd_err err;
    struct pd_store *st;
    if (pd_store_open(path, NULL, &st, &err) != PD_OK) {
        fail_msg("version %d: %s", from, err.msg);
    }
    assert_int_equal(pd_store_schema_version(st), PD_STORE_SCHEMA_VERSION);
    assert_int_equal(pd_store_check(st, &err), PD_OK);
    struct pd_store_session_info *all;
    size_t n;
    assert_int_equal(pd_store_session_list(st, &all, &n, &err), PD_OK);
    if (from == 0) {
        assert_int_equal(n, 0);
        free(all);
        pd_store_close(&st);
        return;
    }
    assert_int_equal(n, 1);
    assert_string_equal(all[0].model_name, "m.gguf");
    assert_string_equal(all[0].title, "hi");
    assert_true(all[0].settings.seed == 42);
    assert_int_equal(all[0].settings.top_k, 40);
    assert_int_equal(all[0].n_tokens, 3);
    assert_int_equal(all[0].finished, from >= 3);
    assert_int_equal(all[0].n_steps, from >= 2 ? 2 : 0);
    assert_int_equal(all[0].n_pruned, from >= 2 ? 1 : 0);
    if (from >= 3) {
        assert_string_equal(all[0].meta, "{\"k\":1,\"answer\":16,\"gold\":\"x\"}");
        assert_string_equal(all[0].tags, "seen");
        /* version 4 takes the reference answer out of the meta of older imports */
        assert_string_equal(all[0].reference, "16");
    } else {
        assert_null(all[0].meta);
        assert_null(all[0].reference);
    }
    pd_store_session_info_free(&all[0]);
    free(all);
    struct pd_replay *r;
    assert_int_equal(pd_replay_open(st, 1, &r, &err), PD_OK);
    struct pd_token_rec t[4];
    size_t got;
    assert_int_equal(pd_replay_read(r, t, 4, &got, &err), PD_OK);
    assert_int_equal(got, 3);
    assert_string_equal(t[1].text, " there");
    assert_int_equal(t[1].n_top, 1);
    assert_int_equal(t[1].top[0].id, 7);
    assert_float_equal(t[1].top[0].logprob, -0.5, 0);
    assert_int_equal(!!(t[1].flags & PD_TOKF_PRUNED), from >= 2);
    for (size_t i = 0; i < got; i++) {
        pd_token_rec_free(&t[i]);
    }
    pd_replay_close(&r);
    /* the upgraded file takes new writes of every kind */
    struct pd_annotation a = {.whole_session = true, .tag = "after-upgrade"};
    assert_int_equal(pd_store_annotate(st, 1, &a, NULL, &err), PD_OK);
    struct pd_step_rec s = {.index = 5, .pos_begin = 0, .pos_end = 1};
    assert_int_equal(pd_store_steps_put(st, 1, &s, 1, &err), PD_OK);
    assert_int_equal(pd_store_session_finish(st, 1, &err), PD_OK);
    /* and the version 4 labels */
    struct pd_session_new sn = {.source = "after", .parent_id = 1, .fork_pos = 1};
    int64_t b = 0;
    assert_int_equal(pd_store_session_create(st, &sn, &b, &err), PD_OK);
    assert_int_equal(pd_store_prefer(st, b, 1, "better", NULL, &err), PD_OK);
    struct pd_sample_grade g = {1, "7", 1};
    assert_int_equal(pd_store_question_put(st, "[]", "7", &g, 1, NULL, &err), PD_OK);
    struct pd_prune_check_rec c = {.strategy = "manual", .greedy_same = true};
    assert_int_equal(pd_store_prune_check_put(st, 1, &c, &err), PD_OK);
    pd_store_close(&st);
}

/* The schema text of a database, for comparing an upgraded file with a fresh one. */
static char *schema_of(const char *path)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT group_concat(type || ' ' || name || ' ' ||"
                                        " coalesce(sql, ''), char(10)) FROM"
                                        " (SELECT * FROM sqlite_schema ORDER BY type, name)",
                                        -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    char *r = strdup((const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
    return r;
}

static void test_upgrade_from_every_version(void **state)
{
    (void)state;
    char fresh[128];
    snprintf(fresh, sizeof fresh, "%s/fresh.db", dir);
    struct pd_err err;
    struct pd_store *st;
    assert_int_equal(pd_store_open(fresh, NULL, &st, &err), PD_OK);
    pd_store_close(&st);
    char *want = schema_of(fresh);
    for (int v = 0; v < PD_STORE_SCHEMA_VERSION; v++) {
        char path[128];
        snprintf(path, sizeof path, "%s/v%d.db", dir, v);
        if (v == 0) {
            /* version 0: an empty SQLite file */
            sqlite3 *db;
            assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
            exec_ok(db, "PRAGMA user_version = 0; VACUUM");
            sqlite3_close(db);
        } else {
            struct pd_store_params p = pd_store_default_params();
            p.target_version = v;
            assert_int_equal(pd_store_open(path, &p, &st, &err), PD_OK);
            assert_int_equal(pd_store_schema_version(st), v);
            pd_store_close(&st);
        }
        fill_at_version(path, v);
        check_upgraded(path, v);
        char *got = schema_of(path);
        assert_string_equal(got, want);
        free(got);
    }
    free(want);
}

static void test_failed_migration_keeps_old_version(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/broken.db", dir);
    struct pd_err err;
    struct pd_store *st;
    struct pd_store_params p = pd_store_default_params();
    p.target_version = 1;
    assert_int_equal(pd_store_open(path, &p, &st, &err), PD_OK);
    pd_store_close(&st);
    fill_at_version(path, 1);
    /* someone created a table migration 2 needs to create */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec_ok(db, "CREATE TABLE prunes (x)");
    sqlite3_close(db);
    assert_int_equal(pd_store_open(path, NULL, &st, &err), PD_EDB);
    assert_null(st);
    assert_non_null(strstr(err.msg, "migration 2"));
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), 1);
    /* nothing of migration 2 is left behind */
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'steps'"), 0);
    exec_ok(db, "DROP TABLE prunes");
    sqlite3_close(db);
    assert_int_equal(pd_store_open(path, NULL, &st, &err), PD_OK);
    assert_int_equal(pd_store_schema_version(st), PD_STORE_SCHEMA_VERSION);
    pd_store_close(&st);
    p.target_version = PD_STORE_SCHEMA_VERSION + 1;
    assert_int_equal(pd_store_open(path, &p, &st, &err), PD_EINVAL);
    p.target_version = -1;
    assert_int_equal(pd_store_open(path, &p, &st, &err), PD_EINVAL);
}

static void test_two_connections_migrate_once(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/twice.db", dir);
    struct pd_err err;
    struct pd_store *a, *b;
    struct pd_store_params p = pd_store_default_params();
    p.target_version = 1;
    assert_int_equal(pd_store_open(path, &p, &a, &err), PD_OK);
    /* b upgrades the file while a is open at version 1 */
    assert_int_equal(pd_store_open(path, NULL, &b, &err), PD_OK);
    assert_int_equal(pd_store_schema_version(b), PD_STORE_SCHEMA_VERSION);
    pd_store_close(&a);
    /* a later open of an up-to-date file runs nothing */
    assert_int_equal(pd_store_open(path, NULL, &a, &err), PD_OK);
    pd_store_close(&a);
    pd_store_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upgrade_from_every_version),
        cmocka_unit_test(test_failed_migration_keeps_old_version),
        cmocka_unit_test(test_two_connections_migrate_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
