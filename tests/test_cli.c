/* test_cli.c - the helpers the front ends share: the terminal filter (cli/termsafe). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_termsafe_cp),
        cmocka_unit_test(test_termsafe_append),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
