/* test_cli.c - the helpers the front ends share: the terminal filter (cli/termsafe) and the
 * progress lines of the bulk commands (cli/cli_progress). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_progress.h"
#include "mem.h"
#include "termsafe.h"

static void test_termsafe_cp(void **state)
{
    (void)state;
    assert_int_equal(pd_termsafe_cp(0x1b, 0), 0x241b);            /* ESC -> ␛ */
    assert_int_equal(pd_termsafe_cp('\n', 0), 0x240a);            /* NL -> ␊ */
    assert_int_equal(pd_termsafe_cp('\n', PD_TERMSAFE_KEEP_LINES), '\n');
    assert_int_equal(pd_termsafe_cp('\t', PD_TERMSAFE_KEEP_LINES), '\t');
    assert_int_equal(pd_termsafe_cp('\r', PD_TERMSAFE_KEEP_LINES), 0x240d);
    assert_int_equal(pd_termsafe_cp(0x7f, 0), 0x2421);
    for (uint32_t c = 0x80; c < 0xa0; c++) {
        assert_int_equal(pd_termsafe_cp(c, 0), 0xfffd); /* C1, incl. U+009B (CSI) */
    }
    assert_int_equal(pd_termsafe_cp(0xa0, 0), 0xa0);
    assert_int_equal(pd_termsafe_cp(0x202e, 0), 0xfffd); /* right-to-left override */
    assert_int_equal(pd_termsafe_cp(0x2067, 0), 0xfffd); /* right-to-left isolate */
    assert_int_equal(pd_termsafe_cp(0x2029, 0), 0x2029);
    assert_int_equal(pd_termsafe_cp(0x4e2d, 0), 0x4e2d); /* 中 */
}

static void test_termsafe_append(void **state)
{
    (void)state;
    struct pd_buf b;
    pd_buf_init(&b);
    const char in[] = "a\x1b[2Jb\xc2\x9b" "c\xff\nd\xe4\xb8\xad";
    assert_true(pd_termsafe_append(&b, in, sizeof in - 1, PD_TERMSAFE_KEEP_LINES));
    assert_string_equal(b.data, "a\xe2\x90\x9b[2Jb\xef\xbf\xbd" "c\xef\xbf\xbd\nd\xe4\xb8\xad");
    b.len = 0;
    assert_true(pd_termsafe_append(&b, "x\ny", 3, 0));
    assert_string_equal(b.data, "x\xe2\x90\x8ay");
    pd_buf_deinit(&b);
    char out[8];
    /* truncated at a code point: "ab" then ␛ (3 bytes) fits 7, the next one does not */
    assert_string_equal(pd_termsafe_str("ab\x1b\x1b", out, sizeof out), "ab\xe2\x90\x9b");
    assert_string_equal(pd_termsafe_str(NULL, out, sizeof out), "");
}


/* Runs a progress of 4 items (0.2 s each) in the given PONDER_PROGRESS mode with stderr in
 * a file; returns what was written (owned). */
static char *progress_run(const char *mode)
{
    char path[] = "/tmp/ponder-test-progress-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    setenv("PONDER_PROGRESS", mode, 1);
    struct pd_progress p;
    pd_progress_start(&p, "work", "traces", 4);
    struct timespec nap = {0, 200 * 1000 * 1000};
    for (uint64_t i = 1; i <= 4; i++) {
        nanosleep(&nap, NULL);
        pd_progress_update(&p, i, 4);
    }
    pd_progress_summary(&p, "did %d things", 4);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    unsetenv("PONDER_PROGRESS");
    FILE *f = fdopen(fd, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    unlink(path);
    return buf;
}

static void test_progress_tty(void **state)
{
    (void)state;
    char *out = progress_run("tty");
    /* one line redrawn in place: N/total, percent, rate, ETA while unfinished */
    assert_non_null(strstr(out, "\rwork [#####...............] 1/4 25% "));
    assert_non_null(strstr(out, " traces/s ETA "));
    assert_non_null(strstr(out, "] 4/4 100% "));
    assert_null(strstr(out, "4/4 100% 5.0 traces/s ETA")); /* no ETA once done */
    /* the summary erases the line and stays */
    const char *sum = strstr(out, "\r\033[Kwork: did 4 things in 0.");
    assert_non_null(sum);
    assert_non_null(strstr(sum, " s ("));
    assert_non_null(strstr(sum, " traces/s)\n"));
    assert_null(strchr(sum + 4, '\r'));
    free(out);
}

static void test_progress_lines_and_off(void **state)
{
    (void)state;
    char *out = progress_run("lines");
    assert_null(strchr(out, '\r')); /* plain lines, nothing redrawn */
    assert_null(strchr(out, '\033'));
    assert_non_null(strstr(out, "work [#####...............] 1/4 25% "));
    assert_non_null(strstr(out, "\nwork [####################] 4/4 100% "));
    assert_non_null(strstr(out, "\nwork: did 4 things in 0."));
    free(out);
    out = progress_run("off");
    assert_true(strncmp(out, "work: did 4 things in 0.", 24) == 0); /* the summary only */
    assert_null(strchr(out, '\r'));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_termsafe_cp),
        cmocka_unit_test(test_termsafe_append),
        cmocka_unit_test(test_progress_tty),
        cmocka_unit_test(test_progress_lines_and_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
