/* test_steps.c - analysis/steps: split points (blank lines inside and across tokens,
 * markers at sentence starts), where a boundary falls, merging short fragments, the
 * span rules (THINK / INJECTED / ANSWER / PROMPT), every step-kind rule, corrupt input,
 * and the equivalence of the incremental segmenter with the batch function on many
 * random traces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "steps.h"

#define TMAX 4608

/* A trace under construction. Texts point at string literals or at the arena. */
struct trace {
    struct pd_token_rec tok[TMAX];
    size_t n;
    char arena[TMAX * 16];
    size_t arena_used;
};

static void tr_reset(struct trace *t)
{
    memset(t, 0, sizeof(*t));
}

static void tr_add_len(struct trace *t, enum pd_role role, const char *text, size_t len)
{
    assert_true(t->n < TMAX);
    assert_true(t->arena_used + len + 1 <= sizeof(t->arena));
    char *copy = t->arena + t->arena_used;
    memcpy(copy, text, len);
    copy[len] = '\0';
    t->arena_used += len + 1;
    struct pd_token_rec *r = &t->tok[t->n];
    memset(r, 0, sizeof(*r));
    r->pos = (int64_t)t->n;
    r->id = -1;
    r->role = role;
    r->text = copy;
    r->text_len = len;
    t->n++;
}

static void tr_add(struct trace *t, enum pd_role role, const char *text)
{
    tr_add_len(t, role, text, strlen(text));
}

/* Adds a NULL-terminated list of token texts with one role. */
static void tr_add_all(struct trace *t, enum pd_role role, const char *const *texts)
{
    for (size_t i = 0; texts[i] != NULL; i++) {
        tr_add(t, role, texts[i]);
    }
}

/* Batch segmentation and incremental segmentation; both must succeed and agree. */
static void segment_both(const struct trace *t, const struct pd_steps_params *p,
                         struct pd_steps_list *out)
{
    struct pd_err err;
    pd_err_clear(&err);
    pd_steps_list_init(out);
    if (pd_steps_segment(t->tok, t->n, p, out, &err) != PD_OK) {
        fail_msg("batch: %s", err.msg);
    }
    struct pd_steps_seg *seg = NULL;
    assert_int_equal(pd_steps_seg_open(p, &seg, &err), PD_OK);
    struct pd_steps_list inc;
    pd_steps_list_init(&inc);
    for (size_t i = 0; i < t->n; i++) {
        if (pd_steps_seg_feed(seg, &t->tok[i], &inc, &err) != PD_OK) {
            fail_msg("feed %zu: %s", i, err.msg);
        }
    }
    assert_int_equal(pd_steps_seg_finish(seg, &inc, &err), PD_OK);
    pd_steps_seg_close(&seg);
    assert_null(seg);
    if (inc.n != out->n) {
        fail_msg("incremental gave %zu steps, batch %zu", inc.n, out->n);
    }
    for (size_t i = 0; i < inc.n; i++) {
        const struct pd_step_rec *a = &inc.items[i];
        const struct pd_step_rec *b = &out->items[i];
        if (a->index != b->index || a->pos_begin != b->pos_begin || a->pos_end != b->pos_end ||
            a->kind != b->kind) {
            fail_msg("step %zu: incremental [%lld,%lld) kind %d, batch [%lld,%lld) kind %d", i,
                     (long long)a->pos_begin, (long long)a->pos_end, (int)a->kind,
                     (long long)b->pos_begin, (long long)b->pos_end, (int)b->kind);
        }
    }
    pd_steps_list_deinit(&inc);
}

/* Checks the steps' spans against expected [begin, end) pairs. */
static void expect_spans(const struct pd_steps_list *l, const int64_t (*spans)[2], size_t n)
{
    if (l->n != n) {
        for (size_t i = 0; i < l->n; i++) {
            print_message("  got [%lld,%lld)\n", (long long)l->items[i].pos_begin,
                          (long long)l->items[i].pos_end);
        }
        fail_msg("got %zu steps, expected %zu", l->n, n);
    }
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(l->items[i].index, (int32_t)i);
        if (l->items[i].pos_begin != spans[i][0] || l->items[i].pos_end != spans[i][1]) {
            fail_msg("step %zu: got [%lld,%lld), expected [%lld,%lld)", i,
                     (long long)l->items[i].pos_begin, (long long)l->items[i].pos_end,
                     (long long)spans[i][0], (long long)spans[i][1]);
        }
    }
}

static struct trace g_tr;

/* ---- blank lines ---------------------------------------------------------------------- */

static void test_blank_line_token_boundaries(void **state)
{
    (void)state;
    struct trace *t = &g_tr;
    struct pd_steps_list l;
    /* "\n\n" as its own token and at the end of a token (".\n\n"): the next token begins
     * the new step. */
    tr_reset(t);
    static const char *const a[] = {"Okay, so I need", " to solve this.", "\n\n", "First",
                                    " compute 2+2", ".\n\n", "Wait", ", that is wrong.", NULL};
    tr_add_all(t, PD_ROLE_THINK, a);
    segment_both(t, NULL, &l);
    static const int64_t ea[][2] = {{0, 3}, {3, 6}, {6, 8}};
    expect_spans(&l, ea, 3);
    assert_int_equal(l.items[0].kind, PD_STEP_PLAN);
    assert_int_equal(l.items[2].kind, PD_STEP_BACKTRACK);
    assert_false(l.items[0].pruned);
    assert_true(isnan(l.items[0].first_surprisal));
    pd_steps_list_deinit(&l);

    /* "\n\n" at the start of a token that carries text: that token begins the step. */
    tr_reset(t);
    static const char *const b[] = {"Some text here.", "\n\nWait", ", no, that fails.", NULL};
    tr_add_all(t, PD_ROLE_THINK, b);
    segment_both(t, NULL, &l);
    static const int64_t eb[][2] = {{0, 1}, {1, 3}};
    expect_spans(&l, eb, 2);
    pd_steps_list_deinit(&l);

    /* Newlines split across tokens, whitespace-only tokens stay with the previous step. */
    tr_reset(t);
    static const char *const c[] = {"Line one is long enough.\n", "\n", "  ", "Next", " line.",
                                    NULL};
    tr_add_all(t, PD_ROLE_THINK, c);
    segment_both(t, NULL, &l);
    static const int64_t ec[][2] = {{0, 3}, {3, 5}};
    expect_spans(&l, ec, 2);
    pd_steps_list_deinit(&l);

    /* A single newline does not split; "\r\n\r\n" and three newlines do. */
    tr_reset(t);
    static const char *const d[] = {"One line of text.\n", "Another line of text.",
                                    "\r\n\r\n", "Third paragraph here.", "\n\n\n",
                                    "Fourth paragraph.", NULL};
    tr_add_all(t, PD_ROLE_THINK, d);
    segment_both(t, NULL, &l);
    static const int64_t ed[][2] = {{0, 3}, {3, 5}, {5, 6}};
    expect_spans(&l, ed, 3);
    pd_steps_list_deinit(&l);

    /* A token straddling the break (".\n\nNext") belongs to the new step. */
    tr_reset(t);
    static const char *const e[] = {"The first part is done", ".\n\nNext", " part follows.",
                                    NULL};
    tr_add_all(t, PD_ROLE_THINK, e);
    segment_both(t, NULL, &l);
    static const int64_t ee[][2] = {{0, 1}, {1, 3}};
    expect_spans(&l, ee, 2);
    pd_steps_list_deinit(&l);

    /* Trailing blank line at the very end: no empty step. */
    tr_reset(t);
    static const char *const f[] = {"Only one paragraph here.", "\n\n", NULL};
    tr_add_all(t, PD_ROLE_THINK, f);
    segment_both(t, NULL, &l);
    static const int64_t ef[][2] = {{0, 2}};
    expect_spans(&l, ef, 1);
    pd_steps_list_deinit(&l);

    /* split_blank_lines off: one step. */
    struct pd_steps_params p = pd_steps_default_params();
    p.split_blank_lines = false;
    tr_reset(t);
    tr_add_all(t, PD_ROLE_THINK, a);
    segment_both(t, &p, &l);
    static const int64_t eg[][2] = {{0, 8}};
    expect_spans(&l, eg, 1);
    pd_steps_list_deinit(&l);
}

static void test_merge_short_fragments(void **state)
{
    (void)state;
    struct trace *t = &g_tr;
    struct pd_steps_list l;
    tr_reset(t);
    /* "Hmm." (4 chars) merges into the next step; the short last step "Ok." stands. */
    static const char *const a[] = {"Hmm.", "\n\n", "Let me think about this carefully.",
                                    "\n\n", "Ok.", NULL};
    tr_add_all(t, PD_ROLE_THINK, a);
    segment_both(t, NULL, &l);
    static const int64_t ea[][2] = {{0, 4}, {4, 5}};
    expect_spans(&l, ea, 2);
    pd_steps_list_deinit(&l);
    /* min_chars 0 keeps it; min_chars counts characters, not bytes (é is 2 bytes). */
    struct pd_steps_params p = pd_steps_default_params();
    p.min_chars = 0;
    segment_both(t, &p, &l);
    static const int64_t eb[][2] = {{0, 2}, {2, 4}, {4, 5}};
    expect_spans(&l, eb, 3);
    pd_steps_list_deinit(&l);
    tr_reset(t);
    static const char *const c[] = {"\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", "\n\n",
                                    "second paragraph text", NULL};
    tr_add_all(t, PD_ROLE_THINK, c); /* 5 characters, 10 bytes */
    p.min_chars = 6;
    segment_both(t, &p, &l);
    static const int64_t ec[][2] = {{0, 3}};
    expect_spans(&l, ec, 1);
    pd_steps_list_deinit(&l);
    p.min_chars = 5;
    segment_both(t, &p, &l);
    static const int64_t ed[][2] = {{0, 2}, {2, 3}};
    expect_spans(&l, ed, 2);
    pd_steps_list_deinit(&l);
}

/* ---- markers -------------------------------------------------------------------------- */

static void test_marker_splits(void **state)
{
    (void)state;
    struct trace *t = &g_tr;
    struct pd_steps_list l;
    struct pd_steps_params p = pd_steps_default_params();
    p.split_markers = true;
    tr_reset(t);
    static const char *const a[] = {"We", " have", " x", " =", " 5.", " Wait", ",", " that",
                                    " is", " wrong.", " So", " the", " answer", " is", " 6.",
                                    NULL};
    tr_add_all(t, PD_ROLE_THINK, a);
    segment_both(t, &p, &l);
    static const int64_t ea[][2] = {{0, 5}, {5, 10}, {10, 15}};
    expect_spans(&l, ea, 3);
    assert_int_equal(l.items[1].kind, PD_STEP_BACKTRACK);
    assert_int_equal(l.items[2].kind, PD_STEP_CONCLUDE);
    pd_steps_list_deinit(&l);
    /* Markers off (the default): one step. */
    segment_both(t, NULL, &l);
    static const int64_t eb[][2] = {{0, 15}};
    expect_spans(&l, eb, 1);
    pd_steps_list_deinit(&l);

    static const struct {
        const char *text; /* one token per byte would also work; these are split below */
        int n_steps;
    } cases[] = {
        {"I said wait a moment and then went on.", 1},  /* not at a sentence start */
        {"Sofa prices went up a lot today. Sofa.", 1},   /* "so" needs a word boundary */
        {"First sentence is here. WAIT, caps too.", 2}, /* case-insensitive */
        {"First sentence is here. Let me see it.", 2},  /* two-word marker */
        {"First sentence is here. Let mesh it all.", 1},
        {"First sentence is here.Wait no space.", 1},   /* needs space after '.' */
        {"First sentence is here.\nwait, newline.", 2}, /* newline is a sentence start */
        {"Is this right? Hmm, maybe it is not.", 2},
        {"Great result here! Oh, and one more.", 2},
        {"Another sentence here, but it goes on.", 1},  /* after a comma: no */
        {"Long enough opening text. So", 2},            /* marker at the very end */
        {"Long enough opening text. So\xC3\xA9", 1},    /* non-ASCII continues the word */
        {"  Therefore at the start of the span.", 1},   /* at offset 0: no empty step */
        {"Actually, first. Actually, second one.", 2},
        {"Short. Alternatively we could do more. But that fails.", 2}, /* merge "Short." */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* Tokenise three ways: whole, per word (space-led), per byte. */
        for (int mode = 0; mode < 3; mode++) {
            tr_reset(t);
            const char *s = cases[i].text;
            size_t n = strlen(s);
            if (mode == 0) {
                tr_add(t, PD_ROLE_THINK, s);
            } else if (mode == 1) {
                size_t a0 = 0;
                for (size_t k = 1; k <= n; k++) {
                    if (k == n || s[k] == ' ') {
                        tr_add_len(t, PD_ROLE_THINK, s + a0, k - a0);
                        a0 = k;
                    }
                }
            } else {
                for (size_t k = 0; k < n; k++) {
                    tr_add_len(t, PD_ROLE_THINK, s + k, 1);
                }
            }
            segment_both(t, &p, &l);
            /* A single token cannot be split. */
            int want = mode == 0 ? 1 : cases[i].n_steps;
            if ((int)l.n != want) {
                fail_msg("case \"%s\" tokenisation %d: %zu steps, expected %d", s, mode, l.n,
                         want);
            }
            pd_steps_list_deinit(&l);
        }
    }
}

static void test_custom_markers(void **state)
{
    (void)state;
    struct trace *t = &g_tr;
    struct pd_steps_list l;
    static const char *const markers[] = {"however", "hold on", NULL};
    struct pd_steps_params p = pd_steps_default_params();
    p.split_markers = true;
    p.markers = markers;
    tr_reset(t);
    static const char *const a[] = {"This works fine.", " However", " it is slow.", " Wait",
                                    " here.", " Hold", " on", ", check.", NULL};
    tr_add_all(t, PD_ROLE_THINK, a);
    segment_both(t, &p, &l);
    static const int64_t ea[][2] = {{0, 1}, {1, 5}, {5, 8}};
    expect_spans(&l, ea, 3);
    pd_steps_list_deinit(&l);
}

/* ---- span ----------------------------------------------------------------------------- */

static void test_span_rules(void **state)
{
    (void)state;
    struct trace *t = &g_tr;
    struct pd_steps_list l;
    /* prompt | think think | injected(between) | think | injected(before answer) | answer */
    tr_reset(t);
    tr_add(t, PD_ROLE_PROMPT, "<|User|>What is 2+2?<|Assistant|><think>\n"); /* 0 */
    tr_add(t, PD_ROLE_THINK, "I need to add two numbers.");                  /* 1 */
    tr_add(t, PD_ROLE_THINK, "\n\n");                                        /* 2 */
    tr_add(t, PD_ROLE_INJECTED, "Wait");                                     /* 3 */
    tr_add(t, PD_ROLE_THINK, ", is it really four?");                        /* 4 */
    tr_add(t, PD_ROLE_INJECTED, "\n\nForced text");                          /* 5 */
    tr_add(t, PD_ROLE_ANSWER, "The answer is 4.");                           /* 6 */
    segment_both(t, NULL, &l);
    static const int64_t ea[][2] = {{1, 3}, {3, 5}};
    expect_spans(&l, ea, 2);
    pd_steps_list_deinit(&l);

    /* Forced completion span: everything but the prompt, one run. */
    struct pd_steps_params p = pd_steps_default_params();
    p.span = PD_STEPS_SPAN_COMPLETION;
    segment_both(t, &p, &l);
    static const int64_t eb[][2] = {{1, 3}, {3, 5}, {5, 7}};
    expect_spans(&l, eb, 3);
    pd_steps_list_deinit(&l);

    /* No THINK tokens: the whole completion (answer and injected tokens). */
    tr_reset(t);
    tr_add(t, PD_ROLE_PROMPT, "prompt");
    tr_add(t, PD_ROLE_INJECTED, "Injected first words.");
    tr_add(t, PD_ROLE_PROMPT, "more prompt"); /* a gap: splits the span into runs */
    tr_add(t, PD_ROLE_ANSWER, "Answer paragraph one.");
    tr_add(t, PD_ROLE_ANSWER, "\n\nAnswer paragraph two.");
    segment_both(t, NULL, &l);
    static const int64_t ec[][2] = {{1, 2}, {3, 4}, {4, 5}};
    expect_spans(&l, ec, 3);
    pd_steps_list_deinit(&l);

    /* AUTO decided by the first non-injected token: leading INJECTED is outside a think
     * span; THINK resuming after ANSWER starts a new run. */
    tr_reset(t);
    tr_add(t, PD_ROLE_INJECTED, "Injected before thinking.");
    tr_add(t, PD_ROLE_THINK, "Thinking starts here.");
    tr_add(t, PD_ROLE_ANSWER, "Answer.");
    tr_add(t, PD_ROLE_THINK, "Thinking again, short");
    tr_add(t, PD_ROLE_INJECTED, " tail");
    segment_both(t, NULL, &l);
    static const int64_t ed[][2] = {{1, 2}, {3, 4}};
    expect_spans(&l, ed, 2);
    pd_steps_list_deinit(&l);

    /* Only prompt tokens, and an empty trace: no steps. */
    tr_reset(t);
    tr_add(t, PD_ROLE_PROMPT, "only a prompt");
    segment_both(t, NULL, &l);
    assert_int_equal(l.n, 0);
    pd_steps_list_deinit(&l);
    tr_reset(t);
    segment_both(t, NULL, &l);
    assert_int_equal(l.n, 0);
    pd_steps_list_deinit(&l);

    /* Non-contiguous positions are fine (strictly increasing). */
    tr_reset(t);
    tr_add(t, PD_ROLE_THINK, "Paragraph one is here.");
    tr_add(t, PD_ROLE_THINK, "\n\nParagraph two.");
    t->tok[0].pos = 10;
    t->tok[1].pos = 15;
    segment_both(t, NULL, &l);
    static const int64_t ee[][2] = {{10, 11}, {15, 16}};
    expect_spans(&l, ee, 2);
    pd_steps_list_deinit(&l);
}

static void test_open_step_and_streaming(void **state)
{
    (void)state;
    struct pd_steps_seg *seg = NULL;
    struct pd_steps_list out;
    pd_steps_list_init(&out);
    assert_int_equal(pd_steps_seg_open(NULL, &seg, NULL), PD_OK);
    int64_t b = -1;
    assert_false(pd_steps_seg_open_step(seg, &b));
    struct pd_token_rec tk;
    memset(&tk, 0, sizeof(tk));
    static const char *const texts[] = {"First paragraph text.", "\n\n", "Second", " one.",
                                        "\n\n", "Third."};
    for (int i = 0; i < 6; i++) {
        tk.pos = 100 + i;
        tk.role = PD_ROLE_THINK;
        tk.text = (char *)texts[i];
        tk.text_len = strlen(texts[i]);
        size_t before = out.n;
        assert_int_equal(pd_steps_seg_feed(seg, &tk, &out, NULL), PD_OK);
        /* A step closes exactly when the next step's first token arrives. */
        assert_int_equal(out.n - before, (i == 2 || i == 5) ? 1u : 0u);
        assert_true(pd_steps_seg_open_step(seg, &b));
        assert_int_equal(b, i < 2 ? 100 : (i < 5 ? 102 : 105));
    }
    assert_int_equal(pd_steps_seg_finish(seg, &out, NULL), PD_OK);
    assert_int_equal(out.n, 3);
    assert_int_equal(out.items[2].pos_begin, 105);
    assert_int_equal(out.items[2].pos_end, 106);
    assert_false(pd_steps_seg_open_step(seg, &b));
    /* After finish a new trace numbers from 0; positions must keep increasing. */
    tk.pos = 50;
    assert_int_equal(pd_steps_seg_feed(seg, &tk, &out, NULL), PD_EINVAL);
    tk.pos = 200;
    assert_int_equal(pd_steps_seg_feed(seg, &tk, &out, NULL), PD_OK);
    assert_int_equal(pd_steps_seg_finish(seg, &out, NULL), PD_OK);
    assert_int_equal(out.n, 4);
    assert_int_equal(out.items[3].index, 0);
    pd_steps_seg_close(&seg);
    pd_steps_seg_close(&seg);
    pd_steps_seg_close(NULL);
    pd_steps_list_deinit(&out);
}

/* ---- corrupt input -------------------------------------------------------------------- */

static void test_corrupt_tokens_and_params(void **state)
{
    (void)state;
    struct trace *t = &g_tr;
    struct pd_steps_list l;
    struct pd_err err;
    pd_steps_list_init(&l);
    /* positions not increasing */
    tr_reset(t);
    tr_add(t, PD_ROLE_THINK, "a");
    tr_add(t, PD_ROLE_THINK, "b");
    t->tok[1].pos = 0;
    assert_int_equal(pd_steps_segment(t->tok, t->n, NULL, &l, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "token 1"));
    assert_non_null(strstr(err.msg, "position 0"));
    /* the same through the segmenter, which stays usable */
    struct pd_steps_seg *seg = NULL;
    assert_int_equal(pd_steps_seg_open(NULL, &seg, &err), PD_OK);
    assert_int_equal(pd_steps_seg_feed(seg, &t->tok[0], &l, &err), PD_OK);
    assert_int_equal(pd_steps_seg_feed(seg, &t->tok[1], &l, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "token 1"));
    t->tok[1].pos = 1;
    assert_int_equal(pd_steps_seg_feed(seg, &t->tok[1], &l, &err), PD_OK);
    assert_int_equal(pd_steps_seg_feed(seg, NULL, &l, &err), PD_EINVAL);
    pd_steps_seg_close(&seg);
    /* negative position, bad role, NULL text with a length */
    t->tok[0].pos = -3;
    assert_int_equal(pd_steps_segment(t->tok, t->n, NULL, &l, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "token 0"));
    t->tok[0].pos = 0;
    t->tok[1].role = (enum pd_role)17;
    assert_int_equal(pd_steps_segment(t->tok, t->n, NULL, &l, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "role 17"));
    t->tok[1].role = PD_ROLE_THINK;
    t->tok[1].text = NULL;
    assert_int_equal(pd_steps_segment(t->tok, t->n, NULL, &l, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "text"));
    t->tok[1].text_len = 0; /* NULL text with length 0 is an empty token */
    assert_int_equal(pd_steps_segment(t->tok, t->n, NULL, &l, &err), PD_OK);
    assert_int_equal(pd_steps_segment(NULL, 3, NULL, &l, &err), PD_EINVAL);
    assert_int_equal(pd_steps_segment(t->tok, t->n, NULL, NULL, &err), PD_EINVAL);
    pd_steps_list_deinit(&l);

    /* params */
    static const char *const bad_bang[] = {"wait!", NULL};
    static const char *const bad_space[] = {" so", NULL};
    static const char *const bad_double[] = {"let  me", NULL};
    static const char *const bad_empty[] = {"", NULL};
    static const char *const bad_long[] = {"abcdefghijklmnopqrstuvwxyzabcdefgh", NULL};
    const char *many[40];
    for (int i = 0; i < 39; i++) {
        many[i] = "wait";
    }
    many[39] = NULL;
    const char *const *bad_lists[] = {bad_bang, bad_space, bad_double, bad_empty, bad_long,
                                      many};
    static const char *const needles[] = {"marker 0", "marker 0", "marker 0", "marker 0",
                                          "marker 0", "more than 32"};
    for (size_t i = 0; i < sizeof(bad_lists) / sizeof(bad_lists[0]); i++) {
        struct pd_steps_params p = pd_steps_default_params();
        p.markers = bad_lists[i];
        assert_int_equal(pd_steps_seg_open(&p, &seg, &err), PD_EINVAL);
        assert_null(seg);
        assert_non_null(strstr(err.msg, needles[i]));
        assert_int_equal(pd_steps_segment(t->tok, t->n, &p, &l, &err), PD_EINVAL);
    }
    struct pd_steps_params p = pd_steps_default_params();
    p.min_chars = -1;
    assert_int_equal(pd_steps_seg_open(&p, &seg, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "min_chars"));
    p = pd_steps_default_params();
    p.compute_density = 2.0f;
    assert_int_equal(pd_steps_seg_open(&p, &seg, &err), PD_EINVAL);
    p = pd_steps_default_params();
    p.span = PD_STEPS_SPAN_COUNT;
    assert_int_equal(pd_steps_seg_open(&p, &seg, &err), PD_EINVAL);
    assert_int_equal(pd_steps_seg_open(NULL, NULL, &err), PD_EINVAL);
}

/* ---- kinds ---------------------------------------------------------------------------- */

static void test_kind_rules(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum pd_step_kind kind;
    } cases[] = {
        /* conclude: prefixes, and \boxed anywhere */
        {"So the answer is 42.", PD_STEP_CONCLUDE},
        {"So, the answer must be 7.", PD_STEP_CONCLUDE},
        {"Therefore x equals three.", PD_STEP_CONCLUDE},
        {"Thus we are done.", PD_STEP_CONCLUDE},
        {"Hence the claim holds.", PD_STEP_CONCLUDE},
        {"**Final Answer**\nIt is 12.", PD_STEP_CONCLUDE},
        {"The final answer is blue.", PD_STEP_CONCLUDE},
        {"In conclusion, it works.", PD_STEP_CONCLUDE},
        {"Putting it together gives \\boxed{5}.", PD_STEP_CONCLUDE},
        /* check: phrases, also after interjections */
        {"Let me check: 3*4 = 12.", PD_STEP_CHECK},
        {"Let me verify this with another example.", PD_STEP_CHECK},
        {"Let me double-check the second case.", PD_STEP_CHECK},
        {"Wait, let me verify that.", PD_STEP_CHECK},
        {"But wait, let me double check.", PD_STEP_CHECK},
        {"Hmm. Let me confirm.", PD_STEP_CHECK},
        {"Actually, let's check the edge case.", PD_STEP_CHECK},
        {"To verify, plug it back in.", PD_STEP_CHECK},
        {"Double-check: the sum is right.", PD_STEP_CHECK},
        {"Checking the boundary now.", PD_STEP_CHECK},
        /* backtrack */
        {"Wait, that can't be right.", PD_STEP_BACKTRACK},
        {"But wait, the sign flips.", PD_STEP_BACKTRACK},
        {"Alternatively, use induction.", PD_STEP_BACKTRACK},
        {"Actually the set is empty.", PD_STEP_BACKTRACK},
        {"Hmm, that's not consistent.", PD_STEP_BACKTRACK},
        {"Hmm, that\xE2\x80\x99s not consistent.", PD_STEP_BACKTRACK}, /* U+2019 */
        {"No, the ratio is wrong.", PD_STEP_BACKTRACK},
        {"Hold on, I misread it.", PD_STEP_BACKTRACK},
        {"Oh wait, it is a square.", PD_STEP_BACKTRACK},
        {"I made a mistake above.", PD_STEP_BACKTRACK},
        {"WAIT. This is wrong.", PD_STEP_BACKTRACK},
        /* compute by density beats plan */
        {"Let's compute 12 * 34 = 408.", PD_STEP_COMPUTE},
        {"First, 2x + 3 = 7 so 2x = 4.", PD_STEP_COMPUTE},
        /* plan */
        {"Okay, so I need to find the area of the triangle.", PD_STEP_PLAN},
        {"First, I'll look at the constraints.", PD_STEP_PLAN},
        {"I need to figure out the pattern.", PD_STEP_PLAN},
        {"Let's think about the structure of the problem.", PD_STEP_PLAN},
        {"The problem asks for the number of ways.", PD_STEP_PLAN},
        {"  ## To solve this we use symmetry.", PD_STEP_PLAN},
        /* default compute */
        {"The triangle has sides of equal length here.", PD_STEP_COMPUTE},
        {"", PD_STEP_COMPUTE},
        /* word boundaries */
        {"Waiting is not an option here.", PD_STEP_COMPUTE},
        {"Thusly we proceed onwards.", PD_STEP_COMPUTE},
        {"Firstborn children are rare.", PD_STEP_COMPUTE},
        {"Nobody knows the final count.", PD_STEP_COMPUTE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum pd_step_kind k = pd_steps_classify(cases[i].text, strlen(cases[i].text), NULL);
        if (k != cases[i].kind) {
            fail_msg("\"%s\": kind %s, expected %s", cases[i].text, pd_step_kind_name(k),
                     pd_step_kind_name(cases[i].kind));
        }
    }
    /* compute_density 0 disables the density rule. */
    struct pd_steps_params p = pd_steps_default_params();
    p.compute_density = 0.0f;
    const char *s = "Let's compute 12 * 34 = 408.";
    assert_int_equal(pd_steps_classify(s, strlen(s), &p), PD_STEP_PLAN);
    assert_int_equal(pd_steps_classify(NULL, 5, NULL), PD_STEP_COMPUTE);
}

/* ---- random equivalence ----------------------------------------------------------------- */

static uint64_t g_rng;

/* The length limit: a run without any split point closes a step every
 * PD_STEPS_MAX_TOKENS tokens (batch and incremental alike); a blank line still splits
 * where it is, and the count starts again from there. */
static void test_length_limit(void **state)
{
    (void)state;
    struct trace *t = &g_tr;
    tr_reset(t);
    for (int i = 0; i < 4500; i++) {
        tr_add(t, PD_ROLE_THINK, " the");
    }
    struct pd_steps_params p = pd_steps_default_params();
    struct pd_steps_list l;
    segment_both(t, &p, &l);
    const int64_t want[][2] = {{0, PD_STEPS_MAX_TOKENS},
                               {PD_STEPS_MAX_TOKENS, 2 * PD_STEPS_MAX_TOKENS},
                               {2 * PD_STEPS_MAX_TOKENS, 4500}};
    expect_spans(&l, want, 3);
    pd_steps_list_deinit(&l);
    tr_reset(t);
    for (int i = 0; i < 4500; i++) {
        tr_add(t, PD_ROLE_THINK, i == 100 ? ".\n\n" : " the");
    }
    segment_both(t, &p, &l);
    const int64_t want2[][2] = {{0, 101},
                                {101, 101 + PD_STEPS_MAX_TOKENS},
                                {101 + PD_STEPS_MAX_TOKENS, 101 + 2 * PD_STEPS_MAX_TOKENS},
                                {101 + 2 * PD_STEPS_MAX_TOKENS, 4500}};
    expect_spans(&l, want2, 4);
    pd_steps_list_deinit(&l);
    /* a marker in the last token before the limit is decided by the next token's first
     * byte: it splits there, before the limit would */
    tr_reset(t);
    for (int i = 0; i < 3000; i++) {
        tr_add(t, PD_ROLE_THINK, i == PD_STEPS_MAX_TOKENS - 2 ? "." : i == PD_STEPS_MAX_TOKENS - 1
                                                                    ? " Wait" : " the");
    }
    p.split_markers = true;
    segment_both(t, &p, &l);
    const int64_t want3[][2] = {{0, PD_STEPS_MAX_TOKENS - 1}, {PD_STEPS_MAX_TOKENS - 1, 3000}};
    expect_spans(&l, want3, 2);
    pd_steps_list_deinit(&l);
}

static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}

static void test_incremental_equals_batch(void **state)
{
    (void)state;
    static const char *const pieces[] = {
        "Wait", "wait", "But", "but wait", "So", "so", "Let me", "let me", "Hmm", "Oh", "Ok",
        "Actually", "Alternatively", "Therefore", "the", "answer", "is", "x", "=", "42",
        "3*4", "check", "verify", "\\boxed{7}", "First", "Let's", "No,", ".", ",", "!", "?",
        " ", " ", " ", "  ", "\n", "\n", "\n\n", "\n\n\n", "\r\n", "\t", "\xC3\xA9",
        "\xE2\x80\x99", "Sofa", "Letme", "mesh", "I", "need", "to", "Okay, so",
    };
    const size_t n_pieces = sizeof(pieces) / sizeof(pieces[0]);
    static char text[8192];
    static const char *const custom[] = {"answer is", "x", "no", NULL};
    struct trace *t = &g_tr;
    g_rng = 0x9E3779B97F4A7C15ull;
    for (int iter = 0; iter < 1500; iter++) {
        /* Random text from pieces (spaces between words most of the time). */
        size_t len = 0;
        int n_words = 5 + (int)(rnd() % 120);
        for (int w = 0; w < n_words; w++) {
            const char *pc = pieces[rnd() % n_pieces];
            size_t pl = strlen(pc);
            if (len + pl + 2 >= sizeof(text)) {
                break;
            }
            memcpy(text + len, pc, pl);
            len += pl;
            if (rnd() % 3 != 0) {
                text[len++] = ' ';
            }
        }
        /* Random cut points (also inside UTF-8 sequences) and roles. */
        tr_reset(t);
        size_t a = 0;
        int role_mode = (int)(rnd() % 4);
        while (a < len) {
            size_t k = 1 + rnd() % 6;
            if (rnd() % 10 == 0) {
                k = 0; /* empty token */
            }
            if (a + k > len) {
                k = len - a;
            }
            enum pd_role role = PD_ROLE_THINK;
            uint32_t r = rnd() % 20;
            if (role_mode == 1) {
                role = r < 2 ? PD_ROLE_INJECTED : (r < 3 ? PD_ROLE_ANSWER : PD_ROLE_THINK);
            } else if (role_mode == 2) {
                role = r < 3 ? PD_ROLE_INJECTED
                             : (r < 5 ? PD_ROLE_PROMPT : (r < 14 ? PD_ROLE_ANSWER
                                                                 : PD_ROLE_THINK));
            } else if (role_mode == 3) {
                role = r < 4 ? PD_ROLE_INJECTED : (r < 6 ? PD_ROLE_PROMPT : PD_ROLE_ANSWER);
            }
            tr_add_len(t, role, text + a, k);
            t->tok[t->n - 1].pos = (int64_t)(t->n - 1) * 2 + (int64_t)(rnd() % 2);
            a += k;
        }
        struct pd_steps_params p = pd_steps_default_params();
        p.split_markers = rnd() % 3 != 0;
        p.split_blank_lines = rnd() % 5 != 0;
        static const int32_t mins[] = {0, 1, 10, 10, 25};
        p.min_chars = mins[rnd() % 5];
        p.span = (enum pd_steps_span)(rnd() % PD_STEPS_SPAN_COUNT);
        if (rnd() % 4 == 0) {
            p.markers = custom;
        }
        struct pd_steps_list l;
        segment_both(t, &p, &l);
        /* Invariants: ordered, non-empty, disjoint, on token positions. */
        for (size_t i = 0; i < l.n; i++) {
            assert_true(l.items[i].pos_begin < l.items[i].pos_end);
            if (i > 0) {
                assert_true(l.items[i - 1].pos_end <= l.items[i].pos_begin);
            }
        }
        pd_steps_list_deinit(&l);
    }
}

/* The length limit among random split points (markers on and off, tokens that hold
 * markers undecided across the limit): incremental and batch agree on runs of 4,500
 * tokens. */
static void test_length_limit_random(void **state)
{
    (void)state;
    static const char *const pieces[] = {
        " the", " so", " Wait", " wait", ". So", ". Wait", " but", ", but", " x", " 42",
        ".", " ", "", "\n", "\n\n", " Let me", " let", " me", " Hmm", "Hm", "m",
    };
    const size_t n_pieces = sizeof(pieces) / sizeof(pieces[0]);
    struct trace *t = &g_tr;
    g_rng = 0x2545F4914F6CDD1Dull;
    for (int iter = 0; iter < 40; iter++) {
        tr_reset(t);
        /* mostly words; blank lines rare or absent so that the limit matters */
        uint32_t blank_every = iter % 2 ? 0 : 1500;
        for (int i = 0; i < 4500; i++) {
            const char *pc = pieces[rnd() % n_pieces];
            if (strcmp(pc, "\n\n") == 0 && (blank_every == 0 || rnd() % blank_every != 0)) {
                pc = " the";
            }
            tr_add(t, PD_ROLE_THINK, pc);
        }
        struct pd_steps_params p = pd_steps_default_params();
        p.split_markers = iter % 4 < 2;
        struct pd_steps_list l;
        segment_both(t, &p, &l);
        assert_true(l.n >= 3);
        for (size_t i = 0; i < l.n; i++) {
            assert_true(l.items[i].pos_end - l.items[i].pos_begin <= PD_STEPS_MAX_TOKENS);
        }
        pd_steps_list_deinit(&l);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blank_line_token_boundaries),
        cmocka_unit_test(test_merge_short_fragments),
        cmocka_unit_test(test_marker_splits),
        cmocka_unit_test(test_custom_markers),
        cmocka_unit_test(test_span_rules),
        cmocka_unit_test(test_open_step_and_streaming),
        cmocka_unit_test(test_corrupt_tokens_and_params),
        cmocka_unit_test(test_kind_rules),
        cmocka_unit_test(test_incremental_equals_batch),
        cmocka_unit_test(test_length_limit),
        cmocka_unit_test(test_length_limit_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
