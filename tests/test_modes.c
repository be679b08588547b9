/* test_modes.c - engine/modes: the exact injected texts per family, the prompt each mode
 * starts from (rendered through engine/chat), control-token detection on a hand-made
 * vocabulary, and the thinking controller (minimum thinking by "Wait", thinking budget,
 * switching mode mid-stream, answer now). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "chat.h"
#include "gguf.h"
#include "gguf_writer.h"
#include "modes.h"
#include "tokenizer.h"

/* The protocol texts, written out here independently of modes.h. */
static const char k_end[] = "\n</think>\n\n";
static const char k_hard[] =
    "\n\nI received a request from the user to provide an answer right now. Considering the "
    "limited time by the user, I have to give the solution based on the thinking directly now."
    "\n</think>\n\n";
static const char k_force[] =
    "\n\nI received a request from the user to provide an answer right now. Considering the "
    "limited time by the user, I have to give the solution based on the thinking directly now, "
    "without further steps or explanations.\n</think>\n\n";
static const char k_speedup[] =
    "\n\nI received a request from the user to provide an answer as soon as possible. "
    "Considering the limited time by the user, I will complete my reasoning promptly and "
    "deliver the solution without delay.\n\n";

static void test_texts(void **state)
{
    (void)state;
    for (int f = 0; f < PD_CHAT_FAMILY_COUNT; f++) {
        const struct pd_modes_texts *t = pd_modes_texts((enum pd_chat_family)f);
        assert_non_null(t);
        assert_int_equal(t->family, f);
        assert_string_equal(t->think_open, "<think>");
        assert_string_equal(t->think_close, "</think>");
        assert_string_equal(t->end_think, k_end);
        assert_string_equal(t->wait, "Wait");
        assert_string_equal(t->answer_now, k_hard);
        assert_string_equal(t->answer_now_force, k_force);
        assert_string_equal(t->speedup, k_speedup);
        assert_string_equal(pd_modes_answer_now(t, false), k_hard);
        assert_string_equal(pd_modes_answer_now(t, true), k_force);
        assert_string_equal(t->nothinking_block,
                            "Okay, I think I have finished thinking.\n</think>\n\n");
        /* markers agree with engine/chat where the family has its own */
        const char *open = NULL, *close = NULL;
        if (pd_chat_think_markers((enum pd_chat_family)f, &open, &close)) {
            assert_true(t->native_markers);
            assert_string_equal(open, t->think_open);
            assert_string_equal(close, t->think_close);
        } else {
            assert_false(t->native_markers);
        }
    }
    assert_int_equal(pd_modes_texts(PD_CHAT_FAMILY_QWEN3)->off, PD_MODES_OFF_TEMPLATE);
    assert_int_equal(pd_modes_texts(PD_CHAT_FAMILY_DEEPSEEK_R1)->off, PD_MODES_OFF_PREFILL);
    assert_int_equal(pd_modes_texts(PD_CHAT_FAMILY_RAW)->off, PD_MODES_OFF_NOT_NEEDED);
    assert_string_equal(pd_modes_texts(PD_CHAT_FAMILY_DEEPSEEK_R1)->off_block,
                        "<think>\n\n</think>\n\n");
    assert_string_equal(pd_modes_texts(PD_CHAT_FAMILY_LLAMA3)->off_block, "");
    assert_null(pd_modes_texts(PD_CHAT_FAMILY_COUNT));
    assert_string_equal(pd_think_mode_name(PD_MODE_SHORT), "short");
    assert_null(pd_think_mode_name(PD_MODE_COUNT));
}

/* Renders "hi" for family f (default revision) with the prefill of mode m and compares. */
static void expect_prompt(enum pd_chat_family f, bool gen_opens_think, enum pd_think_mode m,
                          bool nothinking, const struct pd_modes_controls *c, const char *want,
                          bool open)
{
    struct pd_chat_format fmt;
    pd_chat_format_default(f, &fmt);
    fmt.gen_opens_think = gen_opens_think;
    struct pd_modes_prefill pf;
    assert_int_equal(pd_modes_prefill_for(&fmt, c, m, nothinking, &pf, NULL), PD_OK);
    struct pd_chat_msg msg = {PD_CHAT_ROLE_USER, "hi"};
    struct pd_buf b;
    pd_buf_init(&b);
    assert_int_equal(pd_chat_render(&fmt, &msg, 1, true, pf.chat_think, &b, NULL), PD_OK);
    assert_true(pd_buf_puts(&b, pf.extra));
    if (strcmp(b.data, want) != 0) {
        fail_msg("family %s mode %s: got '%s', want '%s'", pd_chat_family_name(f),
                 pd_think_mode_name(m), b.data, want);
    }
    assert_int_equal(pf.thinking_open, open);
    pd_buf_deinit(&b);
}

#define R1_U "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define R1_A "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
#define QW_A "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"

static void test_prefill(void **state)
{
    (void)state;
    /* deepseek-r1, newer revision (the template opens <think>) */
    expect_prompt(PD_CHAT_FAMILY_DEEPSEEK_R1, true, PD_MODE_LONG, false, NULL,
                  R1_U "hi" R1_A "<think>\n", true);
    expect_prompt(PD_CHAT_FAMILY_DEEPSEEK_R1, true, PD_MODE_SHORT, false, NULL,
                  R1_U "hi" R1_A "<think>\n", true);
    expect_prompt(PD_CHAT_FAMILY_DEEPSEEK_R1, true, PD_MODE_NONE, false, NULL,
                  R1_U "hi" R1_A "<think>\n\n</think>\n\n", false);
    expect_prompt(PD_CHAT_FAMILY_DEEPSEEK_R1, true, PD_MODE_NONE, true, NULL,
                  R1_U "hi" R1_A "<think>\nOkay, I think I have finished thinking.\n</think>\n\n",
                  false);
    /* older revision: ON pre-fills the opener; NoThinking adds it itself */
    expect_prompt(PD_CHAT_FAMILY_DEEPSEEK_R1, false, PD_MODE_LONG, false, NULL,
                  R1_U "hi" R1_A "<think>\n", true);
    expect_prompt(PD_CHAT_FAMILY_DEEPSEEK_R1, false, PD_MODE_NONE, true, NULL,
                  R1_U "hi" R1_A "<think>\nOkay, I think I have finished thinking.\n</think>\n\n",
                  false);
    /* qwen3: the template switch; with thinking on the model opens <think> itself */
    expect_prompt(PD_CHAT_FAMILY_QWEN3, false, PD_MODE_LONG, false, NULL, QW_A, false);
    expect_prompt(PD_CHAT_FAMILY_QWEN3, false, PD_MODE_NONE, false, NULL,
                  QW_A "<think>\n\n</think>\n\n", false);
    expect_prompt(PD_CHAT_FAMILY_QWEN3, false, PD_MODE_NONE, true, NULL,
                  QW_A "<think>\nOkay, I think I have finished thinking.\n</think>\n\n", false);
    expect_prompt(PD_CHAT_FAMILY_QWEN3, true, PD_MODE_SHORT, false, NULL, QW_A "<think>\n",
                  true);
    /* families that do not think: the plain prompt in every mode */
    for (int m = 0; m < PD_MODE_COUNT; m++) {
        expect_prompt(PD_CHAT_FAMILY_RAW, false, (enum pd_think_mode)m, true, NULL, "hi", false);
        expect_prompt(PD_CHAT_FAMILY_CHATML, false, (enum pd_think_mode)m, false, NULL, QW_A,
                      false);
    }
    /* control tokens (Thinkless) win: <short> for none, <think> otherwise */
    struct pd_modes_controls c = {10, 11};
    expect_prompt(PD_CHAT_FAMILY_RAW, false, PD_MODE_NONE, false, &c, "hi<short>", false);
    expect_prompt(PD_CHAT_FAMILY_RAW, false, PD_MODE_LONG, false, &c, "hi<think>", true);
    expect_prompt(PD_CHAT_FAMILY_CHATML, false, PD_MODE_NONE, false, &c, QW_A "<short>", false);
    struct pd_modes_controls half = {-1, 11};
    expect_prompt(PD_CHAT_FAMILY_QWEN3, false, PD_MODE_NONE, false, &half,
                  QW_A "<think>\n\n</think>\n\n", false);
    /* bad arguments */
    struct pd_modes_prefill pf;
    struct pd_err err;
    assert_int_equal(pd_modes_prefill_for(NULL, NULL, PD_MODE_LONG, false, &pf, &err),
                     PD_EINVAL);
    struct pd_chat_format fmt;
    pd_chat_format_default(PD_CHAT_FAMILY_QWEN3, &fmt);
    assert_int_equal(pd_modes_prefill_for(&fmt, NULL, PD_MODE_COUNT, false, &pf, &err),
                     PD_EINVAL);
    assert_non_null(strstr(err.msg, "mode 3 out of range"));
    fmt.family = PD_CHAT_FAMILY_COUNT;
    assert_int_equal(pd_modes_prefill_for(&fmt, NULL, PD_MODE_LONG, false, &pf, &err),
                     PD_EINVAL);
}

static void test_controls(void **state)
{
    (void)state;
    static const char *const toks[] = {"<unk>",   "<s>",     "</s>",
                                       "<short>", "<think>", "\xe2\x96\x81\x61"};
    const int32_t types[] = {2, 3, 3, 4, 4, 1};
    const float scores[] = {0, 0, 0, 0, 0, -1};
    struct pd_gguf_writer *w = NULL;
    assert_int_equal(pd_gguf_writer_open(&w, NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_str(w, "general.architecture", "llama", NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama", NULL), PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 6, NULL),
                     PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", PD_GGUF_INT32, types,
                                            6, NULL),
                     PD_OK);
    assert_int_equal(pd_gguf_writer_add_arr(w, "tokenizer.ggml.scores", PD_GGUF_FLOAT32, scores,
                                            6, NULL),
                     PD_OK);
    void *mem = NULL;
    size_t len = 0;
    assert_int_equal(pd_gguf_writer_write_mem(w, &mem, &len, NULL), PD_OK);
    pd_gguf_writer_close(&w);
    struct pd_gguf *g = NULL;
    struct pd_tok *t = NULL;
    struct pd_err err;
    pd_err_clear(&err);
    assert_int_equal(pd_gguf_open_mem(mem, len, "tiny.gguf", &g, &err), PD_OK);
    if (pd_tok_open_gguf(g, &t, &err) != PD_OK) {
        fail_msg("%s", err.msg);
    }
    struct pd_modes_controls c;
    pd_modes_find_controls(t, &c);
    assert_int_equal(c.short_id, 3);
    assert_int_equal(c.think_id, 4);
    assert_true(pd_modes_has_controls(&c));
    pd_modes_find_controls(NULL, &c);
    assert_int_equal(c.short_id, -1);
    assert_false(pd_modes_has_controls(&c));
    assert_false(pd_modes_has_controls(NULL));
    pd_tok_close(&t);
    pd_gguf_close(&g);
    free(mem);
}

static void test_controller_long(void **state)
{
    (void)state;
    const struct pd_modes_texts *t = pd_modes_texts(PD_CHAT_FAMILY_QWEN3);
    /* minimum thinking 100, at most 2 "Wait"s */
    struct pd_modes_state s = pd_modes_state_init(PD_MODE_LONG, 100, 2, 0);
    struct pd_modes_decision d = pd_modes_on_think_token(&s, t, 10, false);
    assert_int_equal(d.action, PD_MODES_ACT_NONE);
    assert_null(d.text);
    d = pd_modes_on_think_token(&s, t, 40, true);
    assert_int_equal(d.action, PD_MODES_ACT_REPLACE_CLOSE);
    assert_string_equal(d.text, "Wait");
    assert_int_equal(s.n_waits, 1);
    assert_false(s.closed);
    d = pd_modes_on_think_token(&s, t, 60, true);
    assert_int_equal(d.action, PD_MODES_ACT_REPLACE_CLOSE);
    /* out of waits: the third early close stands */
    d = pd_modes_on_think_token(&s, t, 70, true);
    assert_int_equal(d.action, PD_MODES_ACT_NONE);
    assert_true(s.closed);
    d = pd_modes_on_think_token(&s, t, 71, false);
    assert_int_equal(d.action, PD_MODES_ACT_NONE);
    /* unlimited waits; a close at or after the minimum stands */
    s = pd_modes_state_init(PD_MODE_LONG, 100, 0, 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(pd_modes_on_think_token(&s, t, 50, true).action,
                         PD_MODES_ACT_REPLACE_CLOSE);
    }
    assert_int_equal(pd_modes_on_think_token(&s, t, 100, true).action, PD_MODES_ACT_NONE);
    assert_true(s.closed);
    /* long without a minimum never interferes */
    s = pd_modes_state_init(PD_MODE_LONG, 0, 0, 0);
    assert_int_equal(pd_modes_on_think_token(&s, t, 1, true).action, PD_MODES_ACT_NONE);
    assert_int_equal(pd_modes_on_think_token(&s, NULL, 1, false).action,
                     PD_MODES_ACT_NONE);
}

static void test_controller_short_and_switch(void **state)
{
    (void)state;
    const struct pd_modes_texts *t = pd_modes_texts(PD_CHAT_FAMILY_DEEPSEEK_R1);
    struct pd_modes_state s = pd_modes_state_init(PD_MODE_SHORT, 0, 0, 8);
    for (uint32_t i = 1; i < 8; i++) {
        assert_int_equal(pd_modes_on_think_token(&s, t, i, false).action, PD_MODES_ACT_NONE);
    }
    struct pd_modes_decision d = pd_modes_on_think_token(&s, t, 8, false);
    assert_int_equal(d.action, PD_MODES_ACT_CLOSE);
    assert_string_equal(d.text, k_end);
    assert_true(s.closed);
    assert_int_equal(pd_modes_on_think_token(&s, t, 9, false).action, PD_MODES_ACT_NONE);
    /* the model closing by itself within the budget: nothing to do */
    s = pd_modes_state_init(PD_MODE_SHORT, 0, 0, 8);
    assert_int_equal(pd_modes_on_think_token(&s, t, 3, true).action, PD_MODES_ACT_NONE);
    assert_true(s.closed);
    /* long -> short mid-stream with a budget already exceeded: closes at the next token */
    s = pd_modes_state_init(PD_MODE_LONG, 0, 0, 0);
    assert_int_equal(pd_modes_on_think_token(&s, t, 300, false).action, PD_MODES_ACT_NONE);
    pd_modes_set(&s, PD_MODE_SHORT, 100, false);
    d = pd_modes_on_think_token(&s, t, 301, false);
    assert_int_equal(d.action, PD_MODES_ACT_CLOSE);
    assert_string_equal(d.text, k_end);
    /* switching to none closes at once */
    s = pd_modes_state_init(PD_MODE_LONG, 50, 0, 0);
    pd_modes_set(&s, PD_MODE_NONE, 0, true);
    d = pd_modes_on_think_token(&s, t, 2, false);
    assert_int_equal(d.action, PD_MODES_ACT_CLOSE);
    assert_string_equal(d.text, k_end);
    /* none without closing asked (cycling through it): thinking goes on */
    s = pd_modes_state_init(PD_MODE_LONG, 0, 0, 0);
    pd_modes_set(&s, PD_MODE_NONE, 0, false);
    assert_int_equal(pd_modes_on_think_token(&s, t, 2, false).action, PD_MODES_ACT_NONE);
    assert_false(s.closed);
}

static void test_text_closes(void **state)
{
    (void)state;
    const struct pd_modes_texts *t = pd_modes_texts(PD_CHAT_FAMILY_RAW);
    assert_true(pd_modes_text_closes(t, "done.\n</think>", 14));
    assert_true(pd_modes_text_closes(t, "</think>", 8));
    assert_false(pd_modes_text_closes(t, "</think", 7));
    assert_false(pd_modes_text_closes(t, "<think>", 7));
    assert_false(pd_modes_text_closes(t, NULL, 0));
    /* a closer split over tokens is found in the tail the loop passes */
    const char *tail = "x </thi" "nk>";
    assert_true(pd_modes_text_closes(t, tail, strlen(tail)));
}

/* Mode specs as --mode and :mode take them. */
static void test_mode_parse(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        enum pd_think_mode mode;
        uint32_t budget;
    } ok[] = {
        {"long", PD_MODE_LONG, 0},      {"long:300", PD_MODE_LONG, 300},
        {"short", PD_MODE_SHORT, 512},  {"short:64", PD_MODE_SHORT, 64},
        {"none", PD_MODE_NONE, 0},      {"short:16777216", PD_MODE_SHORT, 16777216},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        enum pd_think_mode m = PD_MODE_COUNT;
        uint32_t b = 99;
        struct pd_err err;
        assert_int_equal(pd_think_mode_parse(ok[i].spec, &m, &b, &err), PD_OK);
        assert_int_equal(m, ok[i].mode);
        assert_int_equal(b, ok[i].budget);
    }
    static const char *const bad[] = {"none:5", "short:", "short:x", "medium", "longer",
                                      "short:16777217", "short:-1", "", ":5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum pd_think_mode m;
        uint32_t b;
        struct pd_err err;
        pd_err_clear(&err);
        assert_int_equal(pd_think_mode_parse(bad[i], &m, &b, &err), PD_EINVAL);
        if (strstr(err.msg, "expected long[:MIN], short[:BUDGET] or none") == NULL) {
            fail_msg("'%s': message '%s'", bad[i], err.msg);
        }
    }
}

/* A mid-stream change keeps the other mode's parameter and fills short's default. */
static void test_modes_set(void **state)
{
    (void)state;
    struct pd_modes_state s = pd_modes_state_init(PD_MODE_LONG, 0, 0, 0);
    pd_modes_set(&s, PD_MODE_SHORT, 0, false);
    assert_int_equal(s.mode, PD_MODE_SHORT);
    assert_int_equal(s.think_budget, 512);
    pd_modes_set(&s, PD_MODE_SHORT, 64, false);
    assert_int_equal(s.think_budget, 64);
    pd_modes_set(&s, PD_MODE_LONG, 30, false);
    assert_int_equal(s.mode, PD_MODE_LONG);
    assert_int_equal(s.min_think, 30);
    assert_int_equal(s.think_budget, 64);
    pd_modes_set(&s, PD_MODE_NONE, 7, false);
    assert_int_equal(s.mode, PD_MODE_NONE);
    assert_int_equal(s.min_think, 30);
    assert_int_equal(s.think_budget, 64);
}

/* The thinking state of a stream: markers found across token boundaries, thinking opens
 * only when it never closed, closes only when open; the 32-bit form round-trips (the tail
 * starts empty). */
static void test_think_state(void **state)
{
    (void)state;
    const struct pd_modes_texts *x = pd_modes_texts(PD_CHAT_FAMILY_QWEN3);
    struct pd_think_state t;
    memset(&t, 0, sizeof t);
    assert_false(pd_think_feed(&t, x, "<th", 3));
    assert_false(t.open);
    assert_true(pd_think_feed(&t, x, "ink>", 4)); /* split over two tokens */
    assert_true(t.open);
    t.n_think = 5;
    assert_false(pd_think_feed(&t, x, NULL, 0));
    assert_false(pd_think_feed(&t, x, "so</", 4));
    assert_true(t.open);
    assert_false(pd_think_feed(&t, x, "think>", 6));
    assert_false(t.open);
    assert_true(t.closed_once);
    assert_false(pd_think_feed(&t, x, "<think>", 7)); /* once closed, it stays closed */
    assert_false(t.open);
    /* a text longer than the tail keeps its last bytes */
    char big[200];
    memset(big, 'a', sizeof big);
    memcpy(big + sizeof big - 8, "</think>", 8);
    struct pd_think_state u;
    memset(&u, 0, sizeof u);
    u.open = true;
    pd_think_feed(&u, x, big, sizeof big);
    assert_false(u.open);
    assert_int_equal(u.tail_len, PD_THINK_TAIL);
    uint32_t w = pd_think_pack(&t);
    assert_int_equal(w, pd_think_word(false, true, 5));
    struct pd_think_state r;
    memset(&r, 0x5a, sizeof r);
    pd_think_unpack(&r, w);
    assert_false(r.open);
    assert_true(r.closed_once);
    assert_int_equal(r.n_think, 5);
    assert_int_equal(r.tail_len, 0);
    pd_think_unpack(&r, pd_think_word(true, false, 0x3FFFFFFFu));
    assert_true(r.open);
    assert_false(r.closed_once);
    assert_int_equal(r.n_think, 0x3FFFFFFFu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_texts),
        cmocka_unit_test(test_prefill),
        cmocka_unit_test(test_controls),
        cmocka_unit_test(test_controller_long),
        cmocka_unit_test(test_controller_short_and_switch),
        cmocka_unit_test(test_text_closes),
        cmocka_unit_test(test_mode_parse),
        cmocka_unit_test(test_modes_set),
        cmocka_unit_test(test_think_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
