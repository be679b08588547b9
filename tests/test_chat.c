/* test_chat.c - engine/chat: exact prompt text per family (hand-written expectations and
 * goldens rendered from the real chat templates by a Jinja engine, see
 * tests/golden/chat/make_chat_goldens.mjs), template detection over in-memory GGUFs,
 * thinking switches, parsers, and rejection of bad messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "gguf.h"
#include "gguf_writer.h"

#define R1_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define R1_ASSISTANT "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
#define R1_EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"

#define U(s) {PD_CHAT_ROLE_USER, (s)}
#define A(s) {PD_CHAT_ROLE_ASSISTANT, (s)}
#define S(s) {PD_CHAT_ROLE_SYSTEM, (s)}
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Renders and compares with the expected text; prints both on mismatch. */
static void expect_render(const struct pd_chat_format *fmt, const struct pd_chat_msg *msgs,
                          size_t n, bool gen, enum pd_chat_think think, const char *want)
{
    struct pd_buf b;
    pd_buf_init(&b);
    struct pd_err err = {0};
    enum pd_status rc = pd_chat_render(fmt, msgs, n, gen, think, &b, &err);
    if (rc != PD_OK) {
        print_error("render failed: %s\n", err.msg);
    }
    assert_int_equal(rc, PD_OK);
    const char *got = b.data != NULL ? b.data : "";
    if (strcmp(got, want) != 0) {
        print_error("family %s gen %d think %d\n got: [%s]\nwant: [%s]\n",
                    pd_chat_family_name(fmt->family), gen, (int)think, got, want);
    }
    assert_string_equal(got, want);
    pd_buf_deinit(&b);
}

static struct pd_chat_format fmt_of(enum pd_chat_family f)
{
    struct pd_chat_format fmt;
    pd_chat_format_default(f, &fmt);
    return fmt;
}

/* ---- exact renderings, family by family ---- */

static void test_raw(void **state)
{
    (void)state;
    struct pd_chat_format f = fmt_of(PD_CHAT_FAMILY_RAW);
    const struct pd_chat_msg m[] = {S("Once"), U(" upon"), A(" a time")};
    expect_render(&f, m, N_OF(m), true, PD_CHAT_THINK_DEFAULT, "Once upon a time");
    expect_render(&f, m, 1, false, PD_CHAT_THINK_DEFAULT, "Once");
    expect_render(&f, NULL, 0, true, PD_CHAT_THINK_DEFAULT, "");
}

static void test_chatml(void **state)
{
    (void)state;
    struct pd_chat_format f = fmt_of(PD_CHAT_FAMILY_CHATML);
    const struct pd_chat_msg one[] = {U("What is 2+3?")};
    expect_render(&f, one, 1, true, PD_CHAT_THINK_DEFAULT,
                  "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n");
    /* Qwen2.5's default system prompt, used only when no system message leads. */
    f.system_default = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
    expect_render(&f, one, 1, true, PD_CHAT_THINK_DEFAULT,
                  "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a "
                  "helpful assistant.<|im_end|>\n"
                  "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n");
    const struct pd_chat_msg sys[] = {S("Be brief."), U("Hi"), A("<think>x</think>Hello")};
    expect_render(&f, sys, N_OF(sys), false, PD_CHAT_THINK_DEFAULT,
                  "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                  "<|im_start|>assistant\n<think>x</think>Hello<|im_end|>\n");
}

static void test_qwen3(void **state)
{
    (void)state;
    struct pd_chat_format f = fmt_of(PD_CHAT_FAMILY_QWEN3);
    const struct pd_chat_msg one[] = {U("What is 2+3?")};
    const char *base = "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n";
    expect_render(&f, one, 1, true, PD_CHAT_THINK_DEFAULT, base);
    expect_render(&f, one, 1, true, PD_CHAT_THINK_ON, base);
    expect_render(&f, one, 1, true, PD_CHAT_THINK_OFF,
                  "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
                  "<think>\n\n</think>\n\n");
    /* No default system prompt; a system message is a ChatML block. */
    const struct pd_chat_msg sys[] = {S("Be brief."), U("Hi")};
    expect_render(&f, sys, 2, true, PD_CHAT_THINK_DEFAULT,
                  "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                  "<|im_start|>assistant\n");
    /* History before the last user query loses its reasoning. */
    const struct pd_chat_msg multi[] = {
        U("Hi"), A("<think>\nThe user greets me.\n</think>\n\nHello!"), U("Solve 1+1."),
    };
    expect_render(&f, multi, N_OF(multi), true, PD_CHAT_THINK_DEFAULT,
                  "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
                  "<|im_start|>user\nSolve 1+1.<|im_end|>\n<|im_start|>assistant\n");
    /* The last assistant turn after the last query keeps it (empty block if none). */
    const struct pd_chat_msg last[] = {U("Solve."), A("<think>\n1+1=2\n\n</think>\n\n2")};
    expect_render(&f, last, 2, false, PD_CHAT_THINK_DEFAULT,
                  "<|im_start|>user\nSolve.<|im_end|>\n"
                  "<|im_start|>assistant\n<think>\n1+1=2\n</think>\n\n2<|im_end|>\n");
    const struct pd_chat_msg plain[] = {U("Hi"), A("Hello")};
    expect_render(&f, plain, 2, false, PD_CHAT_THINK_DEFAULT,
                  "<|im_start|>user\nHi<|im_end|>\n"
                  "<|im_start|>assistant\n<think>\n\n</think>\n\nHello<|im_end|>\n");
    /* Without a user message no assistant turn follows the "last query". */
    const struct pd_chat_msg nouser[] = {A("<think>r</think>\n\nx")};
    expect_render(&f, nouser, 1, false, PD_CHAT_THINK_DEFAULT,
                  "<|im_start|>assistant\nx<|im_end|>\n");
    /* A thinking-only ChatML template opens the block itself. */
    f.gen_opens_think = true;
    expect_render(&f, one, 1, true, PD_CHAT_THINK_DEFAULT,
                  "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n<think>\n");
    expect_render(&f, one, 1, true, PD_CHAT_THINK_ON,
                  "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n<think>\n");
    expect_render(&f, one, 1, true, PD_CHAT_THINK_OFF,
                  "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
                  "<think>\n\n</think>\n\n");
}

static void test_deepseek_r1(void **state)
{
    (void)state;
    struct pd_chat_format f = fmt_of(PD_CHAT_FAMILY_DEEPSEEK_R1);
    assert_true(f.gen_opens_think);
    const struct pd_chat_msg one[] = {U("What is 2+3?")};
    expect_render(&f, one, 1, true, PD_CHAT_THINK_DEFAULT,
                  R1_USER "What is 2+3?" R1_ASSISTANT "<think>\n");
    expect_render(&f, one, 1, true, PD_CHAT_THINK_ON,
                  R1_USER "What is 2+3?" R1_ASSISTANT "<think>\n");
    expect_render(&f, one, 1, true, PD_CHAT_THINK_OFF,
                  R1_USER "What is 2+3?" R1_ASSISTANT "<think>\n\n</think>\n\n");
    /* Older revision: the generation prompt stops at the assistant marker. */
    f.gen_opens_think = false;
    expect_render(&f, one, 1, true, PD_CHAT_THINK_DEFAULT, R1_USER "What is 2+3?" R1_ASSISTANT);
    expect_render(&f, one, 1, true, PD_CHAT_THINK_ON,
                  R1_USER "What is 2+3?" R1_ASSISTANT "<think>\n");
    expect_render(&f, one, 1, true, PD_CHAT_THINK_OFF,
                  R1_USER "What is 2+3?" R1_ASSISTANT "<think>\n\n</think>\n\n");
    /* System text goes first, the last one wins; history keeps only what follows the
     * last </think>, unstripped. */
    f.gen_opens_think = true;
    const struct pd_chat_msg multi[] = {
        S("Rule one."), U("Hi"), A("<think>\ngreeting\n</think>\n\nHello!"), S("Rule two."),
        U("And now?"),
    };
    expect_render(&f, multi, N_OF(multi), true, PD_CHAT_THINK_DEFAULT,
                  "Rule two." R1_USER "Hi" R1_ASSISTANT "\n\nHello!" R1_EOS R1_USER "And now?"
                  R1_ASSISTANT "<think>\n");
    f.system_join = true;
    expect_render(&f, multi, N_OF(multi), false, PD_CHAT_THINK_DEFAULT,
                  "Rule one.\n\nRule two." R1_USER "Hi" R1_ASSISTANT "\n\nHello!" R1_EOS
                  R1_USER "And now?");
}

static void test_llama3(void **state)
{
    (void)state;
    struct pd_chat_format f = fmt_of(PD_CHAT_FAMILY_LLAMA3);
    const struct pd_chat_msg m[] = {S(" Be brief.\n"), U("  Hi \n")};
    expect_render(&f, m, 2, true, PD_CHAT_THINK_DEFAULT,
                  "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    f.llama_date_header = true;
    expect_render(&f, m, 2, true, PD_CHAT_THINK_DEFAULT,
                  "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
                  "December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect_render(&f, m + 1, 1, false, PD_CHAT_THINK_DEFAULT,
                  "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
                  "December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

/* Rendering appends: earlier buffer content is kept. */
/* The stretch after an answer that starts another user turn, per family. */
static void expect_turn(enum pd_chat_family fam, enum pd_chat_think think, const char *want)
{
    struct pd_chat_format f = fmt_of(fam);
    struct pd_buf b;
    pd_buf_init(&b);
    struct pd_err err = {0};
    assert_int_equal(pd_chat_render_turn(&f, "And 3+4?", think, &b, &err), PD_OK);
    if (strcmp(b.data ? b.data : "", want) != 0) {
        print_error("family %s\n got: [%s]\nwant: [%s]\n", pd_chat_family_name(fam),
                    b.data ? b.data : "", want);
    }
    assert_string_equal(b.data ? b.data : "", want);
    pd_buf_deinit(&b);
}

static void test_render_turn(void **state)
{
    (void)state;
    expect_turn(PD_CHAT_FAMILY_RAW, PD_CHAT_THINK_DEFAULT, "And 3+4?");
    expect_turn(PD_CHAT_FAMILY_CHATML, PD_CHAT_THINK_DEFAULT,
                "<|im_end|>\n<|im_start|>user\nAnd 3+4?<|im_end|>\n<|im_start|>assistant\n");
    expect_turn(PD_CHAT_FAMILY_QWEN3, PD_CHAT_THINK_OFF,
                "<|im_end|>\n<|im_start|>user\nAnd 3+4?<|im_end|>\n<|im_start|>assistant\n"
                "<think>\n\n</think>\n\n");
    expect_turn(PD_CHAT_FAMILY_DEEPSEEK_R1, PD_CHAT_THINK_DEFAULT,
                R1_EOS R1_USER "And 3+4?" R1_ASSISTANT "<think>\n");
    expect_turn(PD_CHAT_FAMILY_LLAMA3, PD_CHAT_THINK_DEFAULT,
                "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnd 3+4?<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void test_render_appends(void **state)
{
    (void)state;
    struct pd_chat_format f = fmt_of(PD_CHAT_FAMILY_QWEN3);
    struct pd_buf b;
    pd_buf_init(&b);
    assert_true(pd_buf_puts(&b, "PREFIX|"));
    const struct pd_chat_msg m[] = {U("x")};
    assert_int_equal(pd_chat_render(&f, m, 1, true, PD_CHAT_THINK_DEFAULT, &b, NULL), PD_OK);
    assert_string_equal(b.data, "PREFIX|<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n");
    pd_buf_deinit(&b);
}

/* ---- traits, markers, parsers ---- */

static void test_traits_and_markers(void **state)
{
    (void)state;
    const char *open = "x";
    const char *close = "x";
    assert_true(pd_chat_think_markers(PD_CHAT_FAMILY_QWEN3, &open, &close));
    assert_string_equal(open, "<think>");
    assert_string_equal(close, "</think>");
    assert_true(pd_chat_think_markers(PD_CHAT_FAMILY_DEEPSEEK_R1, &open, NULL));
    assert_string_equal(open, "<think>");
    assert_false(pd_chat_think_markers(PD_CHAT_FAMILY_CHATML, &open, &close));
    assert_null(open);
    assert_null(close);
    assert_false(pd_chat_think_markers(PD_CHAT_FAMILY_COUNT, &open, &close));

    assert_string_equal(pd_chat_eot_text(PD_CHAT_FAMILY_CHATML), "<|im_end|>");
    assert_string_equal(pd_chat_eot_text(PD_CHAT_FAMILY_QWEN3), "<|im_end|>");
    assert_string_equal(pd_chat_eot_text(PD_CHAT_FAMILY_DEEPSEEK_R1), R1_EOS);
    assert_string_equal(pd_chat_eot_text(PD_CHAT_FAMILY_LLAMA3), "<|eot_id|>");
    assert_null(pd_chat_eot_text(PD_CHAT_FAMILY_RAW));
    assert_null(pd_chat_eot_text((enum pd_chat_family)99));

    assert_true(pd_chat_family_traits(PD_CHAT_FAMILY_DEEPSEEK_R1)->template_bos);
    assert_false(pd_chat_family_traits(PD_CHAT_FAMILY_QWEN3)->template_bos);
    assert_null(pd_chat_family_traits(PD_CHAT_FAMILY_COUNT));
    assert_string_equal(pd_chat_family_name((enum pd_chat_family)-1), "?");

    struct pd_chat_format f = fmt_of(PD_CHAT_FAMILY_DEEPSEEK_R1);
    assert_true(pd_chat_prompt_opens_think(&f, PD_CHAT_THINK_DEFAULT));
    assert_true(pd_chat_prompt_opens_think(&f, PD_CHAT_THINK_ON));
    assert_false(pd_chat_prompt_opens_think(&f, PD_CHAT_THINK_OFF));
    f.gen_opens_think = false;
    assert_false(pd_chat_prompt_opens_think(&f, PD_CHAT_THINK_DEFAULT));
    assert_true(pd_chat_prompt_opens_think(&f, PD_CHAT_THINK_ON));
    f = fmt_of(PD_CHAT_FAMILY_QWEN3);
    assert_false(pd_chat_prompt_opens_think(&f, PD_CHAT_THINK_DEFAULT));
    assert_false(pd_chat_prompt_opens_think(&f, PD_CHAT_THINK_ON));
    f = fmt_of(PD_CHAT_FAMILY_CHATML);
    assert_false(pd_chat_prompt_opens_think(&f, PD_CHAT_THINK_ON));
    assert_false(pd_chat_prompt_opens_think(NULL, PD_CHAT_THINK_ON));
    assert_false(pd_chat_prompt_opens_think(&f, PD_CHAT_THINK_COUNT));
}

static void test_parsers(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        enum pd_chat_family f;
    } ok[] = {
        {"raw", PD_CHAT_FAMILY_RAW}, {"chatml", PD_CHAT_FAMILY_CHATML},
        {"qwen3", PD_CHAT_FAMILY_QWEN3}, {"deepseek-r1", PD_CHAT_FAMILY_DEEPSEEK_R1},
        {"llama3", PD_CHAT_FAMILY_LLAMA3}, {"qwen2.5", PD_CHAT_FAMILY_CHATML},
        {"r1", PD_CHAT_FAMILY_DEEPSEEK_R1}, {"completion", PD_CHAT_FAMILY_RAW},
    };
    for (size_t i = 0; i < N_OF(ok); i++) {
        enum pd_chat_family f = PD_CHAT_FAMILY_COUNT;
        assert_int_equal(pd_chat_family_parse(ok[i].s, &f, NULL), PD_OK);
        assert_int_equal(f, ok[i].f);
    }
    for (int f = 0; f < PD_CHAT_FAMILY_COUNT; f++) {
        enum pd_chat_family back = PD_CHAT_FAMILY_COUNT;
        assert_int_equal(pd_chat_family_parse(pd_chat_family_name(f), &back, NULL), PD_OK);
        assert_int_equal(back, f);
    }
    struct pd_err err = {0};
    enum pd_chat_family f = PD_CHAT_FAMILY_LLAMA3;
    assert_int_equal(pd_chat_family_parse("ChatML", &f, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "'ChatML'"));
    assert_non_null(strstr(err.msg, "deepseek-r1"));
    assert_int_equal(f, PD_CHAT_FAMILY_LLAMA3);
    assert_int_equal(pd_chat_family_parse(NULL, &f, &err), PD_EINVAL);

    enum pd_chat_think t = PD_CHAT_THINK_COUNT;
    assert_int_equal(pd_chat_think_parse("off", &t, NULL), PD_OK);
    assert_int_equal(t, PD_CHAT_THINK_OFF);
    assert_int_equal(pd_chat_think_parse("default", &t, NULL), PD_OK);
    assert_int_equal(t, PD_CHAT_THINK_DEFAULT);
    assert_int_equal(pd_chat_think_parse("maybe", &t, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "'maybe'"));

    enum pd_chat_role r = PD_CHAT_ROLE_COUNT;
    assert_int_equal(pd_chat_role_parse("assistant", &r, NULL), PD_OK);
    assert_int_equal(r, PD_CHAT_ROLE_ASSISTANT);
    assert_int_equal(pd_chat_role_parse("tool", &r, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "'tool'"));
    assert_string_equal(pd_chat_role_name(PD_CHAT_ROLE_SYSTEM), "system");
    assert_string_equal(pd_chat_role_name(PD_CHAT_ROLE_COUNT), "?");
}

/* ---- bad input ---- */

/* Renders into a buffer holding "keep" and checks the status, that err.msg contains
 * `needle`, and that the buffer is unchanged. */
static void expect_reject(const struct pd_chat_format *fmt, const struct pd_chat_msg *msgs,
                          size_t n, enum pd_chat_think think, enum pd_status want,
                          const char *needle)
{
    struct pd_buf b;
    pd_buf_init(&b);
    assert_true(pd_buf_puts(&b, "keep"));
    struct pd_err err = {0};
    enum pd_status rc = pd_chat_render(fmt, msgs, n, true, think, &b, &err);
    assert_int_equal(rc, want);
    if (strstr(err.msg, needle) == NULL) {
        print_error("message [%s] lacks [%s]\n", err.msg, needle);
    }
    assert_non_null(strstr(err.msg, needle));
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "keep");
    pd_buf_deinit(&b);
}

static void test_bad_messages(void **state)
{
    (void)state;
    for (int fam = 0; fam < PD_CHAT_FAMILY_COUNT; fam++) {
        struct pd_chat_format f = fmt_of(fam);
        const struct pd_chat_msg role[] = {U("ok"), {(enum pd_chat_role)7, "x"}};
        expect_reject(&f, role, 2, PD_CHAT_THINK_DEFAULT, PD_EINVAL,
                      "message 1: unknown role 7");
        const struct pd_chat_msg neg[] = {{(enum pd_chat_role)-1, "x"}};
        expect_reject(&f, neg, 1, PD_CHAT_THINK_DEFAULT, PD_EINVAL, "message 0: unknown role");
        const struct pd_chat_msg null_content[] = {U("ok"), A("fine"), U(NULL)};
        expect_reject(&f, null_content, 3, PD_CHAT_THINK_DEFAULT, PD_EINVAL,
                      "message 2 (user): content is NULL");
        /* Invalid UTF-8: stray continuation, overlong, surrogate, truncated. */
        const struct pd_chat_msg cont[] = {S("ab\x80")};
        expect_reject(&f, cont, 1, PD_CHAT_THINK_DEFAULT, PD_EINVAL,
                      "message 0 (system): content is not valid UTF-8 at byte 2");
        const struct pd_chat_msg overlong[] = {U("a"), A("\xc0\xaf")};
        expect_reject(&f, overlong, 2, PD_CHAT_THINK_DEFAULT, PD_EINVAL,
                      "message 1 (assistant): content is not valid UTF-8 at byte 0");
        const struct pd_chat_msg surrogate[] = {U("x\xed\xa0\x80")};
        expect_reject(&f, surrogate, 1, PD_CHAT_THINK_DEFAULT, PD_EINVAL, "at byte 1");
        const struct pd_chat_msg trunc[] = {U("\xe4\xbd")};
        expect_reject(&f, trunc, 1, PD_CHAT_THINK_DEFAULT, PD_EINVAL, "at byte 0");
        expect_reject(&f, NULL, 1, PD_CHAT_THINK_DEFAULT, PD_EINVAL, "messages is NULL");
        expect_reject(&f, role, 1, (enum pd_chat_think)3, PD_EINVAL,
                      "thinking mode 3 out of range");
    }
    struct pd_chat_format bad = fmt_of(PD_CHAT_FAMILY_QWEN3);
    bad.family = (enum pd_chat_family)42;
    const struct pd_chat_msg m[] = {U("x")};
    expect_reject(&bad, m, 1, PD_CHAT_THINK_DEFAULT, PD_EINVAL, "family 42 out of range");
    expect_reject(NULL, m, 1, PD_CHAT_THINK_DEFAULT, PD_EINVAL, "format is NULL");
    struct pd_err err = {0};
    struct pd_chat_format ok = fmt_of(PD_CHAT_FAMILY_QWEN3);
    assert_int_equal(pd_chat_render(&ok, m, 1, true, PD_CHAT_THINK_DEFAULT, NULL, &err),
                     PD_EINVAL);
    assert_non_null(strstr(err.msg, "output is NULL"));
    /* Families without thinking refuse an explicit switch. */
    static const enum pd_chat_family nothink[] = {
        PD_CHAT_FAMILY_RAW, PD_CHAT_FAMILY_CHATML, PD_CHAT_FAMILY_LLAMA3,
    };
    for (size_t i = 0; i < N_OF(nothink); i++) {
        struct pd_chat_format f = fmt_of(nothink[i]);
        expect_reject(&f, m, 1, PD_CHAT_THINK_OFF, PD_EUNSUPPORTED, "no thinking switch");
        expect_reject(&f, m, 1, PD_CHAT_THINK_ON, PD_EUNSUPPORTED, "'on'");
    }
}

/* ---- detection ---- */

/* Builds an in-memory GGUF with the given chat template and architecture (either may be
 * NULL), opens it and detects. The buffer must outlive the pd_gguf, so both are freed
 * here. Returns the status. */
static enum pd_status detect_gguf(const char *tmpl, size_t tmpl_len, const char *arch,
                                  struct pd_chat_format *out, struct pd_err *err)
{
    struct pd_gguf_writer *w = NULL;
    assert_int_equal(pd_gguf_writer_open(&w, NULL), PD_OK);
    if (arch != NULL) {
        assert_int_equal(pd_gguf_writer_add_str(w, "general.architecture", arch, NULL), PD_OK);
    }
    if (tmpl != NULL) {
        assert_int_equal(pd_gguf_writer_add_str_n(w, "tokenizer.chat_template", tmpl, tmpl_len,
                                                  NULL), PD_OK);
    }
    void *buf = NULL;
    size_t len = 0;
    assert_int_equal(pd_gguf_writer_write_mem(w, &buf, &len, NULL), PD_OK);
    pd_gguf_writer_close(&w);
    struct pd_gguf *g = NULL;
    struct pd_err gerr = {0};
    enum pd_status rc = pd_gguf_open_mem(buf, len, "chat.gguf", &g, &gerr);
    if (rc != PD_OK) {
        print_error("%s\n", gerr.msg);
    }
    assert_int_equal(rc, PD_OK);
    rc = pd_chat_detect(g, out, err);
    pd_gguf_close(&g);
    free(buf);
    return rc;
}

static struct pd_chat_format detect_ok(const char *tmpl, const char *arch)
{
    struct pd_chat_format f;
    memset(&f, 0xff, sizeof f);
    assert_int_equal(detect_gguf(tmpl, tmpl != NULL ? strlen(tmpl) : 0, arch, &f, NULL), PD_OK);
    return f;
}

static void test_detect_excerpts(void **state)
{
    (void)state;
    /* Excerpts of real templates, just the parts the rules look at. */
    struct pd_chat_format f = detect_ok(
        "{% if add_generation_prompt and not ns.is_tool %}{{'" R1_ASSISTANT "<think>\\n'}}"
        "{% endif %}", "qwen2");
    assert_int_equal(f.family, PD_CHAT_FAMILY_DEEPSEEK_R1);
    assert_true(f.gen_opens_think);
    assert_false(f.system_join);
    f = detect_ok("{% set ns = namespace(is_first_sp=true) %}{{'" R1_USER "' + content + '"
                  R1_ASSISTANT "'}}", "qwen3");
    assert_int_equal(f.family, PD_CHAT_FAMILY_DEEPSEEK_R1);
    assert_false(f.gen_opens_think);
    assert_true(f.system_join);
    /* Thinking-only ChatML: the generation prompt opens the block. */
    f = detect_ok("{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}"
                  "{%- endif %}", "qwen3");
    assert_int_equal(f.family, PD_CHAT_FAMILY_QWEN3);
    assert_true(f.gen_opens_think);
    f = detect_ok("{{ '<|im_start|>assistant\n<think>\n' }}", NULL);
    assert_int_equal(f.family, PD_CHAT_FAMILY_QWEN3);
    assert_true(f.gen_opens_think);
    f = detect_ok("{{'<|im_start|>' + message['role'] + '\\n' + message['content']}}", NULL);
    assert_int_equal(f.family, PD_CHAT_FAMILY_CHATML);
    assert_null(f.system_default);
    /* No template, or one no rule knows: the architecture decides. */
    f = detect_ok(NULL, "qwen2");
    assert_int_equal(f.family, PD_CHAT_FAMILY_CHATML);
    assert_null(f.system_default);
    f = detect_ok("{{ messages }}", "qwen3");
    assert_int_equal(f.family, PD_CHAT_FAMILY_QWEN3);
    assert_false(f.gen_opens_think);
    f = detect_ok(NULL, "llama");
    assert_int_equal(f.family, PD_CHAT_FAMILY_RAW);
    f = detect_ok(NULL, "qwen");
    assert_int_equal(f.family, PD_CHAT_FAMILY_RAW);
    f = detect_ok(NULL, NULL);
    assert_int_equal(f.family, PD_CHAT_FAMILY_RAW);
    f = detect_ok("", "qwen2x");
    assert_int_equal(f.family, PD_CHAT_FAMILY_RAW);
    /* Any bytes are searched safely, including NULs and invalid UTF-8. */
    static const char junk[] = "\xff\x00<|start_header_id|>\x80";
    assert_int_equal(detect_gguf(junk, sizeof junk - 1, NULL, &f, NULL), PD_OK);
    assert_int_equal(f.family, PD_CHAT_FAMILY_LLAMA3);
    assert_false(f.llama_date_header);
    /* The text-only entry point. */
    pd_chat_detect_text(NULL, 5, "qwen3", 5, &f);
    assert_int_equal(f.family, PD_CHAT_FAMILY_QWEN3);
    pd_chat_detect_text("<|im_start|>", 12, "qwen3", 4, &f);
    assert_int_equal(f.family, PD_CHAT_FAMILY_CHATML);
    pd_chat_detect_text("<|im_start|>", 11, "qwen3", 4, &f);
    assert_int_equal(f.family, PD_CHAT_FAMILY_RAW);
}

/* Metadata of the wrong type is a format error naming the file and key. */
static void test_detect_bad_metadata(void **state)
{
    (void)state;
    static const char *const keys[] = {"tokenizer.chat_template", "general.architecture"};
    for (size_t i = 0; i < N_OF(keys); i++) {
        struct pd_gguf_writer *w = NULL;
        assert_int_equal(pd_gguf_writer_open(&w, NULL), PD_OK);
        assert_int_equal(pd_gguf_writer_add_u32(w, keys[i], 7, NULL), PD_OK);
        void *buf = NULL;
        size_t len = 0;
        assert_int_equal(pd_gguf_writer_write_mem(w, &buf, &len, NULL), PD_OK);
        pd_gguf_writer_close(&w);
        struct pd_gguf *g = NULL;
        assert_int_equal(pd_gguf_open_mem(buf, len, "bad.gguf", &g, NULL), PD_OK);
        struct pd_chat_format f = fmt_of(PD_CHAT_FAMILY_LLAMA3);
        struct pd_err err = {0};
        assert_int_equal(pd_chat_detect(g, &f, &err), PD_EFORMAT);
        assert_non_null(strstr(err.msg, "bad.gguf"));
        assert_non_null(strstr(err.msg, keys[i]));
        assert_int_equal(f.family, PD_CHAT_FAMILY_LLAMA3); /* untouched */
        pd_gguf_close(&g);
        free(buf);
    }
}

/* ---- goldens rendered from the real templates ---- */

static json_t *load_goldens(void)
{
    const char *root = getenv("PONDER_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/golden/chat/chat_goldens.json",
             root != NULL ? root : ".");
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (j == NULL) {
        print_error("%s: %s (line %d)\n", path, jerr.text, jerr.line);
    }
    assert_non_null(j);
    return j;
}

static enum pd_chat_role role_of(const char *s)
{
    enum pd_chat_role r;
    assert_int_equal(pd_chat_role_parse(s, &r, NULL), PD_OK);
    return r;
}

static void test_goldens(void **state)
{
    (void)state;
    json_t *j = load_goldens();
    json_t *templates = json_object_get(j, "templates");
    json_t *convs = json_object_get(j, "conversations");
    json_t *cases = json_object_get(j, "cases");
    assert_true(json_is_object(templates) && json_is_object(convs) && json_is_array(cases));
    size_t n_checked = 0;
    const char *tname;
    json_t *t;
    json_object_foreach(templates, tname, t) {
        /* Detection from the full template text in a GGUF. */
        const char *text = json_string_value(json_object_get(t, "text"));
        const char *arch = json_string_value(json_object_get(t, "arch"));
        json_t *expect = json_object_get(t, "expect");
        assert_non_null(text);
        struct pd_chat_format f;
        assert_int_equal(detect_gguf(text, strlen(text), arch, &f, NULL), PD_OK);
        const char *want_family = json_string_value(json_object_get(expect, "family"));
        if (strcmp(pd_chat_family_name(f.family), want_family) != 0) {
            print_error("template %s: detected %s, want %s\n", tname,
                        pd_chat_family_name(f.family), want_family);
        }
        assert_string_equal(pd_chat_family_name(f.family), want_family);
        json_t *sd = json_object_get(expect, "system_default");
        if (json_is_string(sd)) {
            assert_non_null(f.system_default);
            assert_string_equal(f.system_default, json_string_value(sd));
        } else {
            assert_null(f.system_default);
        }
        assert_int_equal(f.gen_opens_think,
                         json_is_true(json_object_get(expect, "gen_opens_think")));
        assert_int_equal(f.system_join, json_is_true(json_object_get(expect, "system_join")));
        assert_int_equal(f.llama_date_header,
                         json_is_true(json_object_get(expect, "llama_date_header")));

        /* Every case rendered with this template. */
        size_t i;
        json_t *c;
        json_array_foreach(cases, i, c) {
            if (strcmp(json_string_value(json_object_get(c, "template")), tname) != 0) {
                continue;
            }
            const char *cname = json_string_value(json_object_get(c, "conversation"));
            json_t *conv = json_object_get(convs, cname);
            assert_true(json_is_array(conv));
            size_t n = json_array_size(conv);
            struct pd_chat_msg msgs[16];
            assert_true(n <= N_OF(msgs));
            for (size_t k = 0; k < n; k++) {
                json_t *m = json_array_get(conv, k);
                msgs[k].role = role_of(json_string_value(json_object_get(m, "role")));
                msgs[k].content = json_string_value(json_object_get(m, "content"));
            }
            enum pd_chat_think think;
            assert_int_equal(pd_chat_think_parse(json_string_value(json_object_get(c, "think")),
                                                 &think, NULL), PD_OK);
            bool gen = json_is_true(json_object_get(c, "add_generation_prompt"));
            const char *want = json_string_value(json_object_get(c, "text"));
            struct pd_buf b;
            pd_buf_init(&b);
            struct pd_err err = {0};
            assert_int_equal(pd_chat_render(&f, msgs, n, gen, think, &b, &err), PD_OK);
            const char *got = b.data != NULL ? b.data : "";
            if (strcmp(got, want) != 0) {
                print_error("template %s, conversation %s, gen %d, think %s:\n got: [%s]\n"
                            "want: [%s]\n", tname, cname, gen,
                            json_string_value(json_object_get(c, "think")), got, want);
            }
            assert_string_equal(got, want);
            pd_buf_deinit(&b);
            n_checked++;
        }
    }
    assert_true(n_checked >= 200);
    json_decref(j);
}

/* ---- a real file: stories260K has no chat template and a llama architecture ---- */

static void test_detect_stories260k(void **state)
{
    (void)state;
    const char *root = getenv("PONDER_SOURCE_ROOT");
    const char *dir = getenv("PONDER_TEST_MODELS");
    char path[4096];
    snprintf(path, sizeof path, "%s/stories260K.gguf", dir != NULL && dir[0] ? dir : "");
    if (dir == NULL || !dir[0] || access(path, R_OK) != 0) {
        snprintf(path, sizeof path, "%s/../shared/models/stories260K.gguf",
                 root != NULL ? root : ".");
    }
    assert_int_equal(access(path, R_OK), 0); /* main checked it is there */
    struct pd_gguf *g = NULL;
    assert_int_equal(pd_gguf_open(path, &g, NULL), PD_OK);
    struct pd_chat_format f = fmt_of(PD_CHAT_FAMILY_QWEN3);
    assert_int_equal(pd_chat_detect(g, &f, NULL), PD_OK);
    assert_int_equal(f.family, PD_CHAT_FAMILY_RAW);
    pd_gguf_close(&g);
}

/* True when stories260K.gguf is where the tests look for it. */
static bool have_stories(void)
{
    const char *root = getenv("PONDER_SOURCE_ROOT");
    const char *dir = getenv("PONDER_TEST_MODELS");
    char path[4096];
    snprintf(path, sizeof path, "%s/stories260K.gguf", dir != NULL && dir[0] ? dir : "");
    if (dir != NULL && dir[0] && access(path, R_OK) == 0) {
        return true;
    }
    snprintf(path, sizeof path, "%s/../shared/models/stories260K.gguf", root ? root : ".");
    return access(path, R_OK) == 0;
}

/* `test_chat stories` runs only the stories260K check (meson test chat_stories), which
 * exits 77 (SKIP) when the model is absent; without arguments, everything else. */
int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "stories") == 0) {
        if (!have_stories()) {
            fprintf(stderr, "SKIP: stories260K.gguf not found (set PONDER_TEST_MODELS or put "
                            "it in ../shared/models)\n");
            return 77;
        }
        const struct CMUnitTest st[] = {cmocka_unit_test(test_detect_stories260k)};
        return cmocka_run_group_tests(st, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_chatml),
        cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_deepseek_r1),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_render_appends),
        cmocka_unit_test(test_render_turn),
        cmocka_unit_test(test_traits_and_markers),
        cmocka_unit_test(test_parsers),
        cmocka_unit_test(test_bad_messages),
        cmocka_unit_test(test_detect_excerpts),
        cmocka_unit_test(test_detect_bad_metadata),
        cmocka_unit_test(test_goldens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
