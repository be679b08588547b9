/* test_base.c - engine/base: status and error record, logging ring, checked memory
 * helpers, UTF-8, trace record names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_blob.h"
#include "log.h"
#include "mem.h"
#include "status.h"
#include "trace.h"
#include "utf8.h"

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

static void test_blob_codec(void **state)
{
    (void)state;
    assert_int_equal(pd_attn_blob_size(3, 4, 0), 4 + 3 * 4 * 8);
    assert_int_equal(pd_attn_blob_size(0, 4, 0), 0);
    assert_int_equal(pd_attn_blob_size(3, 256, 0), 0);
    uint8_t b[4 + 3 * 4 * 8];
    pd_attn_blob_init(b, 3, 4);
    assert_int_equal(b[0], 1);
    assert_int_equal(b[1], 3);
    assert_int_equal(b[2], 4);
    assert_int_equal(b[3], 0);
    pd_attn_blob_set(b, 2, 1, 70000, 0.25f);
    pd_attn_blob_set(b, 0, 0, 5, 1.0f);
    /* little-endian on the wire: position 70000 = 0x00011170 */
    const uint8_t *e = b + 4 + (2 * 4 + 1) * 8;
    assert_int_equal(e[0], 0x70);
    assert_int_equal(e[1], 0x11);
    assert_int_equal(e[2], 0x01);
    assert_int_equal(e[3], 0x00);
    struct pd_attn_view v;
    assert_int_equal(pd_attn_blob_check(b, sizeof b, &v, NULL), PD_OK);
    assert_int_equal(v.n_layer, 3);
    assert_int_equal(v.n_top, 4);
    uint32_t pos;
    float w;
    pd_attn_view_get(&v, 2, 1, &pos, &w);
    assert_int_equal(pos, 70000);
    assert_true(w == 0.25f);
    pd_attn_view_get(&v, 0, 0, &pos, &w);
    assert_int_equal(pos, 5);
    assert_true(w == 1.0f);
    pd_attn_view_get(&v, 1, 3, &pos, &w);
    assert_int_equal(pos, PD_ATTN_POS_PAD);
    assert_true(w == 0.0f);
}

/* Each corrupt blob is rejected with PD_EFORMAT and a message containing `want`. */
static void expect_bad_blob(const uint8_t *b, size_t len, const char *want)
{
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_attn_view v;
    assert_int_equal(pd_attn_blob_check(b, len, &v, &err), PD_EFORMAT);
    if (strstr(err.msg, want) == NULL) {
        fail_msg("message '%s' lacks '%s'", err.msg, want);
    }
}

static void test_blob_corrupt(void **state)
{
    (void)state;
    uint8_t b[4 + 2 * 2 * 8];
    pd_attn_blob_init(b, 2, 2);
    expect_bad_blob(b, 3, "3 bytes, need at least 4");
    expect_bad_blob(NULL, 0, "0 bytes");
    b[0] = 4;
    expect_bad_blob(b, sizeof b, "version 4");
    b[0] = 3; /* version 3 without its step section */
    expect_bad_blob(b, sizeof b, "step section");
    b[0] = 2; /* version 2 without its step section */
    expect_bad_blob(b, sizeof b, "step section");
    /* A well-formed version 2 blob: the entries plus two step masses. */
    uint8_t b2[sizeof b + 4 + 16];
    memcpy(b2, b, sizeof b);
    b2[0] = 2;
    uint32_t steps[5] = {2, 3, 0, 9, 0}; /* n_steps, then {begin, mass bits} pairs */
    float masses[2] = {0.25f, 0.5f};
    memcpy(&steps[2], &masses[0], 4);
    memcpy(&steps[4], &masses[1], 4);
    memcpy(b2 + sizeof b, steps, sizeof steps);
    struct pd_attn_view v2;
    struct pd_err e2;
    assert_int_equal(pd_attn_blob_check(b2, sizeof b2, &v2, &e2), PD_OK);
    assert_int_equal(v2.n_layer, 2);
    assert_true(pd_attn_view_step_mass(&v2, 1) == 0.5f);
    assert_int_equal(pd_attn_view_step_begin(&v2, 1), 9);
    assert_int_equal(v2.version, 2);
    assert_int_equal(v2.n_known, 2);
    assert_int_equal(pd_attn_view_first_step(&v2), 3);
    assert_int_equal(pd_attn_view_step_end(&v2, 0), 9);
    assert_int_equal(pd_attn_view_step_end(&v2, 1), -1); /* up to the token */
    expect_bad_blob(b2, sizeof b2 - 1, "step section");
    b[0] = 1;
    b[3] = 7;
    expect_bad_blob(b, sizeof b, "reserved byte is 7");
    b[3] = 0;
    b[1] = 0;
    expect_bad_blob(b, sizeof b, "0 layers");
    b[1] = 2;
    expect_bad_blob(b, sizeof b - 1, "but 2 layers x 2 entries need 36");
    pd_attn_blob_set(b, 1, 0, 3, NAN);
    expect_bad_blob(b, sizeof b, "layer 1 entry 0: weight nan");
    pd_attn_blob_set(b, 1, 0, 3, -0.5f);
    expect_bad_blob(b, sizeof b, "weight -0.5 outside [0, 1]");
    pd_attn_blob_set(b, 1, 0, 3, 1.5f);
    expect_bad_blob(b, sizeof b, "weight 1.5 outside");
    pd_attn_blob_set(b, 1, 0, PD_ATTN_POS_PAD, 0.5f);
    expect_bad_blob(b, sizeof b, "padding entry with weight 0.5");
    pd_attn_blob_set(b, 1, 0, PD_ATTN_POS_PAD, 0.0f);
    struct pd_attn_view v;
    assert_int_equal(pd_attn_blob_check(b, sizeof b, &v, NULL), PD_OK);
}

static void test_attn_blob_check(void **state)
{
    (void)state;
    uint8_t b[4 + 3 * 2 * 8];
    memset(b, 0, sizeof b);
    b[0] = 1;
    b[1] = 3;
    b[2] = 2;
    struct pd_err err;
    assert_int_equal(pd_attn_blob_check(b, sizeof b, NULL, &err), PD_OK);
    assert_int_equal(pd_attn_blob_check(b, sizeof b - 8, NULL, &err), PD_EFORMAT);
    assert_int_equal(pd_attn_blob_check(b, 2, NULL, &err), PD_EFORMAT);
    b[3] = 1;
    assert_int_equal(pd_attn_blob_check(b, sizeof b, NULL, &err), PD_EFORMAT);
    b[3] = 0;
    b[1] = 0;
    assert_int_equal(pd_attn_blob_check(b, 4, NULL, &err), PD_EFORMAT);
    b[1] = 3;
    float w = 2.0f;
    memcpy(b + 8, &w, 4);
    assert_int_equal(pd_attn_blob_check(b, sizeof b, NULL, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "weight"));
    w = 0.5f;
    memcpy(b + 8, &w, 4);
    memset(b + 4, 0xff, 4); /* padding position with a weight */
    assert_int_equal(pd_attn_blob_check(b, sizeof b, NULL, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "padding"));
    b[0] = 9;
    assert_int_equal(pd_attn_blob_check(b, sizeof b, NULL, &err), PD_EFORMAT);
}

/* Steps appended through the codec read back through a view: only the steps the token
 * attends to and its own one are listed, each with its extent; a mass rounded above 1 is
 * stored as 1; a blob without steps, or of a token before every step, stays version 1;
 * listed steps out of order are refused. */
static void test_blob_steps(void **state)
{
    (void)state;
    size_t len = pd_attn_blob_size(2, 3, 2);
    assert_int_equal(len, 4 + 2 * 3 * 8 + 12 + 2 * 12);
    assert_int_equal(pd_attn_blob_size(2, 3, PD_ATTN_STEPS_MAX + 1), 0);
    uint8_t b[4 + 2 * 3 * 8 + 12 + 2 * 12];
    pd_attn_blob_init(b, 2, 3);
    pd_attn_blob_set(b, 1, 2, 7, 0.125f);
    pd_attn_blob_put_steps(b, 0, NULL, NULL, 5);
    assert_int_equal(b[0], 1);
    struct pd_attn_view v;
    assert_true(pd_attn_blob_layout(b, pd_attn_blob_size(2, 3, 0), &v));
    assert_int_equal(v.n_steps, 0);
    assert_int_equal(pd_attn_view_first_step(&v), -1);
    /* four steps known; the token (position 30) is in the third, the second has no mass
     * (all its slots evicted), the fourth begins after the token */
    const int64_t begin[4] = {3, 10, 20, 70000};
    const float mass[4] = {0.25f, 0.0f, 1.0004f, 0.0f};
    assert_int_equal(pd_attn_blob_steps_listed(4, begin, mass, 2), 0);
    pd_attn_blob_put_steps(b, 4, begin, mass, 2); /* before every step: nothing */
    assert_int_equal(b[0], 1);
    assert_int_equal(pd_attn_blob_steps_listed(4, begin, mass, 30), 2);
    pd_attn_blob_put_steps(b, 4, begin, mass, 30);
    assert_int_equal(b[0], 3);
    assert_false(pd_attn_blob_layout(b, len - 1, &v));
    assert_int_equal(pd_attn_blob_check(b, len, &v, NULL), PD_OK);
    assert_int_equal(v.n_layer, 2);
    assert_int_equal(v.n_top, 3);
    assert_int_equal(v.version, 3);
    assert_int_equal(v.n_known, 4);
    assert_int_equal(v.n_steps, 2);
    assert_int_equal(pd_attn_view_first_step(&v), 3);
    assert_int_equal(pd_attn_view_step_begin(&v, 0), 3);
    assert_int_equal(pd_attn_view_step_end(&v, 0), 10);
    assert_true(pd_attn_view_step_mass(&v, 0) == 0.25f);
    assert_int_equal(pd_attn_view_step_begin(&v, 1), 20);
    assert_int_equal(pd_attn_view_step_end(&v, 1), 31);
    assert_true(pd_attn_view_step_mass(&v, 1) == 1.0f);
    /* the token's own step is listed even with no mass */
    const float none[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    assert_int_equal(pd_attn_blob_steps_listed(4, begin, none, 12), 1);
    /* listed steps that overlap are refused */
    uint8_t bad[sizeof b];
    memcpy(bad, b, sizeof b);
    size_t sec = 4 + 2 * 3 * 8 + 12;
    bad[sec + 4] = 25; /* step 0 now ends at 25, past step 1's begin (20) */
    struct pd_err err;
    assert_int_equal(pd_attn_blob_check(bad, sizeof bad, NULL, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "out of order"));
    memcpy(bad, b, sizeof b);
    bad[sec] = 2; /* step 0 begins before the first step (3) */
    assert_int_equal(pd_attn_blob_check(bad, sizeof bad, NULL, &err), PD_EFORMAT);
    uint32_t pos;
    float w;
    assert_true(pd_attn_view_entry(&v, 1, 2, &pos, &w));
    assert_int_equal(pos, 7);
    assert_true(w == 0.125f);
    assert_false(pd_attn_view_entry(&v, 1, 1, &pos, &w)); /* padding */
    assert_false(pd_attn_view_entry(&v, 2, 0, &pos, &w)); /* no layer 2 */
    assert_false(pd_attn_view_entry(&v, 0, 3, &pos, &w)); /* no entry 3 */
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
        cmocka_unit_test(test_blob_codec),
        cmocka_unit_test(test_blob_corrupt),
        cmocka_unit_test(test_attn_blob_check),
        cmocka_unit_test(test_blob_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
