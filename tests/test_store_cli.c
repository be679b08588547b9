/* test_store_cli.c - the headless store commands through the real binary ($PONDER_BIN):
 * import, export, ls, show; exit codes (0 ok, 1 runtime error, 2 usage), error lines
 * "ponder: FILE:LINE: reason", the default database location, and a CLI round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *bin;
static char fixtures[512];
static char dir[64];

/* Runs "ponder ARGS" in dir with stdout/stderr captured; returns the exit status. */
static int run(const char *env, const char *args, char **out, char **errs)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s' %s >'%s/stdout' 2>'%s/stderr'", dir,
             env ? env : "", bin, args, dir, dir);
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    const char *names[2] = {"stdout", "stderr"};
    char **dst[2] = {out, errs};
    for (int i = 0; i < 2; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        FILE *f = fopen(p, "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *buf = malloc((size_t)n + 1);
        assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
        buf[n] = '\0';
        fclose(f);
        if (dst[i]) {
            *dst[i] = buf;
        } else {
            free(buf);
        }
    }
    return WEXITSTATUS(st);
}

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

static void test_usage_errors_exit_2(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "import --db x.db",
        "import --db",
        "import --bogus a.jsonl",
        "export --db x.db",
        "export --format csv --db x.db",
        "export --format messages --json --db x.db",
        "export --format messages --session abc --db x.db",
        "ls --db x.db extra",
        "show --db x.db",
        "show nope --db x.db",
        "show 0 --db x.db",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *err, prefix[32];
        int rc = run(NULL, bad[i], NULL, &err);
        /* usage errors name their command: "ponder import: ..." */
        snprintf(prefix, sizeof prefix, "ponder %.*s: ", (int)strcspn(bad[i], " "), bad[i]);
        if (rc != 2 || strncmp(err, prefix, strlen(prefix)) != 0) {
            fail_msg("'%s': exit %d, stderr '%s'", bad[i], rc, err);
        }
        free(err);
    }
    char *out;
    assert_int_equal(run(NULL, "import --help", &out, NULL), 0);
    assert_non_null(strstr(out, "usage: ponder import"));
    free(out);
    assert_int_equal(run(NULL, "export --help", &out, NULL), 0);
    assert_non_null(strstr(out, "--format"));
    free(out);
}

static void test_import_errors_and_exit_codes(void **state)
{
    (void)state;
    char args[1200], *out, *err;
    snprintf(args, sizeof args, "import --db e.db '%s/mixed.jsonl' '%s/malformed.jsonl'", fixtures,
             fixtures);
    assert_int_equal(run(NULL, args, &out, &err), 1);
    char want[700];
    snprintf(want, sizeof want, "ponder: %s/malformed.jsonl:2: invalid JSON", fixtures);
    assert_non_null(strstr(err, want));
    snprintf(want, sizeof want, "ponder: %s/malformed.jsonl:4: messages[0].role: unsupported",
             fixtures);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "imported 6 traces"));
    assert_non_null(strstr(err, "12 lines rejected"));
    free(out);
    free(err);
    /* a clean file exits 0; --json summarises on stdout */
    snprintf(args, sizeof args, "import --db e.db --json '%s/sharegpt_canonical.jsonl'", fixtures);
    assert_int_equal(run(NULL, args, &out, &err), 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "imported")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "rejected")), 0);
    json_decref(j);
    free(out);
    free(err);
    /* strict keeps nothing of the bad file */
    snprintf(args, sizeof args, "import --db e.db --strict '%s/malformed.jsonl'", fixtures);
    assert_int_equal(run(NULL, args, &out, &err), 1);
    assert_non_null(strstr(err, "nothing kept"));
    free(out);
    free(err);
    assert_int_equal(run(NULL, "ls --db e.db --json", &out, &err), 0);
    j = json_loads(out, 0, NULL);
    assert_true(json_is_array(j));
    assert_int_equal(json_array_size(j), 6 + 3 + 2);
    json_t *s6 = json_array_get(j, 5);
    assert_false(json_is_true(json_object_get(s6, "finished"))); /* prompt only */
    assert_string_equal(json_string_value(json_object_get(s6, "title")),
                        "only a prompt, to be generated later");
    json_decref(j);
    free(out);
    free(err);
    /* runtime errors exit 1 with the file named */
    assert_int_equal(run(NULL, "import --db e.db missing.jsonl", &out, &err), 1);
    assert_non_null(strstr(err, "ponder: missing.jsonl: cannot open"));
    free(out);
    free(err);
    assert_int_equal(run(NULL, "show 999 --db e.db", &out, &err), 1);
    assert_non_null(strstr(err, "no session 999"));
    free(out);
    free(err);
    assert_int_equal(run(NULL, "export --format messages --session 999 --db e.db", &out, &err), 1);
    free(out);
    free(err);
    char garbage[160];
    snprintf(garbage, sizeof garbage, "%s/garbage.db", dir);
    FILE *g = fopen(garbage, "wb");
    fputs("this is not a database, not at all, and it is long enough to matter......", g);
    fclose(g);
    assert_int_equal(run(NULL, "ls --db garbage.db", &out, &err), 1);
    assert_non_null(strstr(err, "garbage.db"));
    free(out);
    free(err);
}

static void test_cli_round_trip_and_show(void **state)
{
    (void)state;
    char args[1200], *out, *err;
    snprintf(args, sizeof args, "import --db r.db '%s/messages_canonical.jsonl'", fixtures);
    assert_int_equal(run(NULL, args, &out, &err), 0);
    free(out);
    free(err);
    assert_int_equal(run(NULL, "export --db r.db --format messages --out r.jsonl", &out, &err), 0);
    assert_non_null(strstr(err, "exported 7 traces to r.jsonl"));
    free(out);
    free(err);
    char p[700];
    snprintf(p, sizeof p, "%s/messages_canonical.jsonl", fixtures);
    char *want = slurp(p);
    snprintf(p, sizeof p, "%s/r.jsonl", dir);
    char *got = slurp(p);
    assert_string_equal(got, want);
    free(got);
    /* stdout carries the same bytes */
    assert_int_equal(run(NULL, "export --db r.db --format messages", &out, &err), 0);
    assert_string_equal(out, want);
    free(out);
    free(err);
    free(want);
    assert_int_equal(run(NULL, "show 1 --db r.db", &out, &err), 0);
    assert_non_null(strstr(out, "== user ==\nWhat is 2+2?"));
    assert_non_null(strstr(out, "== think (from 1) ==\nI add 2 and 2."));
    assert_non_null(strstr(out, "== answer (from 4) ==\nThe answer is 4."));
    free(out);
    free(err);
    assert_int_equal(run(NULL, "show 1 --json --db r.db", &out, &err), 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "tokens")), 5);
    json_decref(j);
    free(out);
    free(err);
    assert_int_equal(run(NULL, "ls --db r.db", &out, &err), 0);
    assert_non_null(strstr(out, "What is 2+2?"));
    free(out);
    free(err);
}

static void test_default_database_location(void **state)
{
    (void)state;
    char env[200], *out, *err;
    snprintf(env, sizeof env, "XDG_DATA_HOME='%s/xdg'", dir);
    char args[700];
    snprintf(args, sizeof args, "import '%s/sharegpt_canonical.jsonl'", fixtures);
    assert_int_equal(run(env, args, &out, &err), 0);
    free(out);
    free(err);
    char p[200];
    snprintf(p, sizeof p, "%s/xdg/ponder/ponder.db", dir);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(run(env, "ls --json", &out, &err), 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_int_equal(json_array_size(j), 2);
    json_decref(j);
    free(out);
    free(err);
}

int main(void)
{
    bin = getenv("PONDER_BIN");
    const char *root = getenv("PONDER_SOURCE_ROOT");
    if (!bin || !root || access(bin, X_OK) != 0) {
        /* meson test always sets both: a missing one is a broken setup, not an absence */
        fprintf(stderr, "FAIL: PONDER_BIN / PONDER_SOURCE_ROOT not set or not runnable "
                        "(run through meson test)\n");
        return 1;
    }
    snprintf(fixtures, sizeof fixtures, "%s/tests/fixtures/jsonl", root);
    snprintf(dir, sizeof dir, "/tmp/pd_cli_XXXXXX");
    if (!mkdtemp(dir)) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_errors_exit_2),
        cmocka_unit_test(test_import_errors_and_exit_codes),
        cmocka_unit_test(test_cli_round_trip_and_show),
        cmocka_unit_test(test_default_database_location),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot remove %s\n", dir);
    }
    return rc;
}
