/* test_base.c - engine/base: status and error record, logging ring, checked memory
 * helpers, UTF-8, trace record names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/status.h"
#include "base/trace.h"
#include "base/utf8.h"

static void test_err_set_and_prefix(void **state)
{
    (void)state;
    struct pd_err err;
    pd_err_clear(&err);
    assert_int_equal(err.status, PD_OK);
    assert_int_equal(pd_err_set(&err, PD_EFORMAT, "field %s: bad", "n_kv"), PD_EFORMAT);
    assert_string_equal(err.msg, "field n_kv: bad");
    pd_err_prefix(&err, "%s", "m.gguf");
    assert_string_equal(err.msg, "m.gguf: field n_kv: bad");
    assert_int_equal(pd_err_set(NULL, PD_EIO, "x"), PD_EIO); /* NULL err is allowed */
    assert_string_equal(pd_status_str(PD_ENOMEM), "out of memory");
}

static void test_overflow_checks(void **state)
{
    (void)state;
    uint64_t r;
    assert_true(pd_mul(1u << 20, 1u << 20, &r));
    assert_true(r == (1ull << 40));
    assert_false(pd_mul(UINT64_MAX / 2 + 1, 2, &r));
    assert_false(pd_add(UINT64_MAX, 1, &r));
    assert_null(pd_malloc_array(SIZE_MAX / 2, 4));
    assert_null(pd_calloc(SIZE_MAX / 8, 16));
}

static void test_buf(void **state)
{
    (void)state;
    struct pd_buf b;
    pd_buf_init(&b);
    for (int i = 0; i < 1000; i++) {
        assert_true(pd_buf_printf(&b, "%d,", i % 10));
    }
    assert_int_equal(b.len, 2000);
    assert_int_equal(b.data[b.len], '\0');
    assert_memory_equal(b.data, "0,1,2,", 6);
    char *s = pd_buf_take(&b);
    assert_null(b.data);
    assert_int_equal(strlen(s), 2000);
    free(s);
    pd_buf_deinit(&b);
}

static void test_grow_array(void **state)
{
    (void)state;
    int *a = NULL;
    size_t cap = 0;
    for (int i = 0; i < 1000; i++) {
        int *na = pd_grow_array(a, &cap, (size_t)i + 1, sizeof *a);
        assert_non_null(na);
        a = na;
        a[i] = i;
        assert_true(cap >= (size_t)i + 1);
    }
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(a[i], i);
    }
    assert_int_equal(cap, 1024); /* doubling from 16 */
    assert_ptr_equal(pd_grow_array(a, &cap, 10, sizeof *a), a); /* room already: same array */
    /* An impossible size fails and leaves the array and its capacity as they were. */
    assert_null(pd_grow_array(a, &cap, SIZE_MAX / 2, sizeof *a));
    assert_int_equal(cap, 1024);
    assert_int_equal(a[999], 999);
    free(a);
}

static void test_utf8(void **state)
{
    (void)state;
    uint32_t cp;
    assert_int_equal(pd_utf8_decode("\xE4\xB8\xAD", 3, &cp), 3);
    assert_int_equal(cp, 0x4E2D);
    assert_int_equal(pd_utf8_decode("\xF0\x9F\x98\x80", 4, &cp), 4);
    assert_int_equal(cp, 0x1F600);
    assert_int_equal(pd_utf8_decode("\xC0\x80", 2, &cp), 0);       /* overlong */
    assert_int_equal(pd_utf8_decode("\xED\xA0\x80", 3, &cp), 0);   /* surrogate */
    assert_int_equal(pd_utf8_decode("\xE4\xB8", 2, &cp), 0);       /* truncated */
    assert_true(pd_utf8_valid("h\xC3\xA9llo", 6));
    assert_false(pd_utf8_valid("\xFF", 1));
    assert_int_equal(pd_utf8_incomplete_tail("ab\xE4\xB8", 4), 2);
    assert_int_equal(pd_utf8_incomplete_tail("ab\xE4\xB8\xAD", 5), 0);
    assert_int_equal(pd_utf8_incomplete_tail("ab\xF0", 3), 1);
    assert_int_equal(pd_utf8_incomplete_tail("abc", 3), 0);
    char out[4];
    assert_int_equal(pd_utf8_encode(0x1F600, out), 4);
    assert_memory_equal(out, "\xF0\x9F\x98\x80", 4);
    assert_int_equal(pd_utf8_encode(0xD800, out), 0);
}

static void test_log_ring(void **state)
{
    (void)state;
    pd_log_set_stderr(0);
    pd_log_set_level(PD_LOG_INFO);
    pd_log(PD_LOG_DEBUG, "dropped");
    pd_log(PD_LOG_INFO, "kept %d", 7);
    char line[PD_LOG_LINE_MAX];
    assert_true(pd_log_ring_get(0, line, sizeof line));
    assert_string_equal(line, "info: kept 7");
    assert_false(pd_log_ring_get(5, line, sizeof line));
}

static void test_trace_names(void **state)
{
    (void)state;
    for (int r = 0; r < PD_ROLE_COUNT; r++) {
        assert_int_equal(pd_role_parse(pd_role_name((enum pd_role)r)), r);
    }
    assert_int_equal(pd_role_parse("bogus"), PD_ROLE_COUNT);
    for (int k = 0; k < PD_STEP_KIND_COUNT; k++) {
        assert_int_equal(pd_step_kind_parse(pd_step_kind_name((enum pd_step_kind)k)), k);
    }
    assert_null(pd_step_kind_name(PD_STEP_KIND_COUNT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_set_and_prefix),
        cmocka_unit_test(test_overflow_checks),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_grow_array),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_log_ring),
        cmocka_unit_test(test_trace_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
