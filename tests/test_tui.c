/* test_tui.c - the workbench's logic without a terminal: the trace line layout (wrapping,
 * wide characters, broken UTF-8 split across tokens, controls, markers, incremental
 * updates), the pane layout at every size down to 0x0, the view model fed synthetic
 * session events (steps, importance, pause/answer/branch/finish, prunes, tags, search,
 * commands, quitting with unsaved work), replay (playhead, speed, KV map by time),
 * corrupt records, the key table and the committed docs/keys.md, colour tiers and the
 * heat scale, SHA-256 test vectors, and loading / saving a session through the store
 * (segmented on load, prune and tag saved, unprune, unknown session), and the readline
 * command line fed curses key codes (editing, completion, history file, search). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curses.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "metrics.h"
#include "utf8.h"
#include "cmdline.h"
#include "keys.h"
#include "layout.h"
#include "sha256.h"
#include "store_io.h"
#include "store_vocab.h"
#include "store_labels.h"
#include "term.h"
#include "wrap.h"

/* ---- helpers ------------------------------------------------------------------------- */

struct items {
    const char *text[64];
    size_t len[64];
    const char *prefix[64];
    size_t n;
};

static const char *it_bytes(const void *ud, size_t i, size_t *len)
{
    const struct items *s = ud;
    *len = s->len[i];
    return s->text[i];
}

static const char *it_prefix(const void *ud, size_t i)
{
    const struct items *s = ud;
    return s->prefix[i];
}

static void it_add(struct items *s, const char *t)
{
    s->text[s->n] = t;
    s->len[s->n] = strlen(t);
    s->prefix[s->n] = NULL;
    s->n++;
}

static struct pd_wrap_src it_src(const struct items *s)
{
    struct pd_wrap_src src = {s->n, it_bytes, it_prefix, s};
    return src;
}

/* Line `line` as UTF-8 text (cells' glyphs; newline cells as '$'). */
static void line_text(const struct pd_wrap *w, const struct pd_wrap_src *src, size_t line,
                      char *out, size_t cap)
{
    struct pd_wrap_iter it;
    struct pd_wrap_cell c;
    size_t o = 0;
    pd_wrap_iter_line(w, src, line, &it);
    while (pd_wrap_iter_next(&it, &c)) {
        char buf[4];
        size_t n;
        if (c.newline) {
            buf[0] = '$';
            n = 1;
        } else {
            n = pd_utf8_encode(c.cp, buf);
            for (int k = 1; k < c.width && c.cp == ' ' && n + 1 < sizeof buf; k++) {
                buf[n++] = ' ';
            }
        }
        assert_true(o + n < cap);
        memcpy(out + o, buf, n);
        o += n;
    }
    out[o] = '\0';
}

/* Column width of a line. */
static int line_width(const struct pd_wrap *w, const struct pd_wrap_src *src, size_t line)
{
    struct pd_wrap_iter it;
    struct pd_wrap_cell c;
    int x = 0;
    pd_wrap_iter_line(w, src, line, &it);
    while (pd_wrap_iter_next(&it, &c)) {
        x += c.width;
    }
    return x;
}

/* ---- wrap ---------------------------------------------------------------------------- */

static void test_wrap_ascii_and_newlines(void **state)
{
    (void)state;
    struct items s = {0};
    it_add(&s, "hello ");
    it_add(&s, "world");
    it_add(&s, "\n");
    it_add(&s, "ab");
    struct pd_wrap_src src = it_src(&s);
    struct pd_wrap w;
    pd_wrap_init(&w, 8);
    assert_int_equal(pd_wrap_update(&w, &src), PD_OK);
    char buf[64];
    /* Words move down whole: "world" does not fit after "hello ". */
    assert_int_equal(w.n_lines, 3);
    line_text(&w, &src, 0, buf, sizeof buf);
    assert_string_equal(buf, "hello ");
    line_text(&w, &src, 1, buf, sizeof buf);
    assert_string_equal(buf, "world$");
    line_text(&w, &src, 2, buf, sizeof buf);
    assert_string_equal(buf, "ab");
    assert_int_equal(pd_wrap_line_of(&w, &src, 0), 0);
    assert_int_equal(pd_wrap_line_of(&w, &src, 1), 1);
    assert_int_equal(pd_wrap_line_of(&w, &src, 3), 2);
    pd_wrap_deinit(&w);
}

static void test_wrap_words(void **state)
{
    (void)state;
    struct items s = {0};
    /* Tokens that begin with their space, as BPE and SentencePiece pieces do, a word split
     * over two tokens, and a word longer than the line. */
    it_add(&s, "The");
    it_add(&s, " cat");
    it_add(&s, " sat");
    it_add(&s, " on");
    it_add(&s, " the");
    it_add(&s, " ma");
    it_add(&s, "tt");
    it_add(&s, "ress");
    it_add(&s, " abcdefghijklmnop");
    it_add(&s, " end");
    struct pd_wrap_src src = it_src(&s);
    struct pd_wrap w;
    pd_wrap_init(&w, 10);
    assert_int_equal(pd_wrap_update(&w, &src), PD_OK);
    static const char *const want[] = {"The cat ", "sat on the", "mattress ", "abcdefghij",
                                       "klmnop end"};
    char buf[64];
    assert_int_equal(w.n_lines, 5);
    for (size_t l = 0; l < 5; l++) {
        line_text(&w, &src, l, buf, sizeof buf);
        assert_string_equal(buf, want[l]);
        assert_true(line_width(&w, &src, l) <= 10);
    }
    /* Appending re-wraps only the last line and gives the same layout as wrapping all. */
    struct items t = {0};
    for (size_t i = 0; i < s.n; i++) {
        it_add(&t, s.text[i]);
    }
    struct pd_wrap w2;
    pd_wrap_init(&w2, 10);
    struct pd_wrap_src src2 = it_src(&t);
    src2.n = 0;
    for (size_t i = 0; i < t.n; i++) {
        src2.n = i + 1;
        assert_int_equal(pd_wrap_update(&w2, &src2), PD_OK);
    }
    assert_int_equal(w2.n_lines, w.n_lines);
    for (size_t l = 0; l < w.n_lines; l++) {
        assert_int_equal(w2.lines[l].item, w.lines[l].item);
        assert_int_equal(w2.lines[l].off, w.lines[l].off);
    }
    pd_wrap_deinit(&w);
    pd_wrap_deinit(&w2);
}

static void test_wrap_wide_never_straddles(void **state)
{
    (void)state;
    struct items s = {0};
    it_add(&s, "ab\xe4\xb8\xad\xe6\x96\x87x"); /* ab 中 文 x */
    struct pd_wrap_src src = it_src(&s);
    struct pd_wrap w;
    pd_wrap_init(&w, 3);
    pd_wrap_update(&w, &src);
    for (size_t l = 0; l < w.n_lines; l++) {
        assert_true(line_width(&w, &src, l) <= 3);
    }
    char buf[64];
    line_text(&w, &src, 0, buf, sizeof buf);
    assert_string_equal(buf, "ab");
    line_text(&w, &src, 1, buf, sizeof buf);
    assert_string_equal(buf, "\xe4\xb8\xad");
    /* Width 1: a wide character stands alone on its line and the wrap terminates. */
    pd_wrap_reset(&w, 1);
    pd_wrap_update(&w, &src);
    assert_int_equal(w.n_lines, 5);
    pd_wrap_deinit(&w);
}

static void test_wrap_broken_utf8(void **state)
{
    (void)state;
    struct items s = {0};
    it_add(&s, "a\xff");          /* invalid byte */
    it_add(&s, "\xe4\xb8");       /* 中 split across two tokens */
    it_add(&s, "\xad" "b");
    it_add(&s, "\xc3");           /* incomplete at the end of data: held back */
    struct pd_wrap_src src = it_src(&s);
    struct pd_wrap w;
    pd_wrap_init(&w, 40);
    pd_wrap_update(&w, &src);
    char buf[64];
    line_text(&w, &src, 0, buf, sizeof buf);
    assert_string_equal(buf, "a\xef\xbf\xbd\xe4\xb8\xad" "b");
    /* The split character belongs to the token holding its first byte. */
    struct pd_wrap_iter it;
    struct pd_wrap_cell c;
    pd_wrap_iter_line(&w, &src, 0, &it);
    size_t owners[8], k = 0;
    while (pd_wrap_iter_next(&it, &c) && k < 8) {
        owners[k++] = c.item;
    }
    assert_int_equal(k, 4);
    assert_int_equal(owners[2], 1);
    assert_int_equal(owners[3], 2);
    /* The tail completes when the next token arrives. */
    it_add(&s, "\xa9!");
    src = it_src(&s);
    pd_wrap_update(&w, &src);
    line_text(&w, &src, 0, buf, sizeof buf);
    assert_string_equal(buf, "a\xef\xbf\xbd\xe4\xb8\xad" "b\xc3\xa9!");
    /* A continuation byte that starts a token and a lead byte followed by ASCII. */
    struct items t = {0};
    it_add(&t, "\x80x\xe4y");
    src = it_src(&t);
    pd_wrap_reset(&w, 40);
    pd_wrap_update(&w, &src);
    line_text(&w, &src, 0, buf, sizeof buf);
    assert_string_equal(buf, "\xef\xbf\xbdx\xef\xbf\xbdy");
    pd_wrap_deinit(&w);
}

static void test_wrap_controls_tabs_prefix(void **state)
{
    (void)state;
    struct items s = {0};
    it_add(&s, "a\tb\x01\x7f");
    it_add(&s, "c");
    s.prefix[1] = "\xe2\x96\xb8"; /* ▸ */
    struct pd_wrap_src src = it_src(&s);
    struct pd_wrap w;
    pd_wrap_init(&w, 40);
    pd_wrap_update(&w, &src);
    char buf[64];
    line_text(&w, &src, 0, buf, sizeof buf);
    assert_string_equal(buf, "a   b\xe2\x90\x81\xe2\x90\xa1\xe2\x96\xb8" "c");
    struct pd_wrap_iter it;
    struct pd_wrap_cell c;
    pd_wrap_iter_line(&w, &src, 0, &it);
    bool saw_prefix = false;
    while (pd_wrap_iter_next(&it, &c)) {
        if (c.in_prefix) {
            saw_prefix = true;
            assert_int_equal(c.item, 1);
        }
    }
    assert_true(saw_prefix);
    int width;
    assert_int_equal(pd_wrap_glyph(0x85, 0, &width), 0xFFFD);
    assert_int_equal(pd_wrap_glyph('\t', 3, &width), ' ');
    assert_int_equal(width, 1);
    pd_wrap_deinit(&w);
}

static void test_wrap_incremental_equals_full(void **state)
{
    (void)state;
    static const char *const words[] = {"The ", "quick", " br", "own\n\n", "fox ",
                                        "\xe4\xb8", "\xad", "jumps", " over", "\t",
                                        "the lazy dog", "."};
    struct items s = {0};
    struct pd_wrap inc, full;
    pd_wrap_init(&inc, 7);
    pd_wrap_init(&full, 7);
    for (size_t r = 0; r < 3; r++) {
        for (size_t k = 0; k < sizeof words / sizeof words[0]; k++) {
            it_add(&s, words[k]);
            struct pd_wrap_src src = it_src(&s);
            pd_wrap_update(&inc, &src);
        }
    }
    struct pd_wrap_src src = it_src(&s);
    pd_wrap_update(&full, &src);
    assert_int_equal(inc.n_lines, full.n_lines);
    for (size_t l = 0; l < full.n_lines; l++) {
        assert_int_equal(inc.lines[l].item, full.lines[l].item);
        assert_int_equal(inc.lines[l].off, full.lines[l].off);
    }
    /* Invalidate from the middle and update again: same layout. */
    pd_wrap_invalidate(&inc, 13);
    assert_true(inc.n_lines < full.n_lines);
    pd_wrap_update(&inc, &src);
    assert_int_equal(inc.n_lines, full.n_lines);
    pd_wrap_deinit(&inc);
    pd_wrap_deinit(&full);
}

/* ---- layout --------------------------------------------------------------------------- */

static bool overlap(const struct pd_rect *a, const struct pd_rect *b)
{
    if (!a->h || !a->w || !b->h || !b->w) {
        return false;
    }
    return a->x < b->x + b->w && b->x < a->x + a->w && a->y < b->y + b->h &&
           b->y < a->y + a->h;
}

static void test_layout_every_size(void **state)
{
    (void)state;
    for (int rows = -2; rows <= 70; rows++) {
        for (int cols = -2; cols <= 260; cols += (cols < 130 ? 1 : 7)) {
            for (int f = 0; f < PD_PANE_COUNT; f++) {
                struct pd_layout l;
                pd_layout_compute(rows, cols, (enum pd_pane)f, f == 1, 40, &l);
                const struct pd_rect *r[] = {&l.trace, &l.steps, &l.inspect, &l.kv,
                                             &l.vsep,  &l.status, &l.cmdline, &l.help};
                int R = rows < 0 ? 0 : rows, C = cols < 0 ? 0 : cols;
                for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
                    assert_true(pd_rect_inside(r[i], R, C));
                }
                for (size_t i = 0; i < 7; i++) {
                    for (size_t j = i + 1; j < 7; j++) {
                        assert_false(overlap(r[i], r[j]));
                    }
                }
                bool small = rows < PD_LAYOUT_MIN_ROWS || cols < PD_LAYOUT_MIN_COLS;
                assert_int_equal(l.too_small, small);
                if (!small) {
                    assert_true(l.trace.h >= 4 && l.inspect.h >= 8);
                    assert_true(l.show_steps || l.show_kv);
                    assert_int_equal(l.narrow, cols < PD_LAYOUT_WIDE_COLS);
                }
            }
        }
    }
    struct pd_layout l;
    pd_layout_compute(24, 80, PD_PANE_KV, false, 10, &l);
    assert_true(l.narrow && l.show_kv && !l.show_steps);
    pd_layout_compute(40, 120, PD_PANE_TRACE, false, 10, &l);
    assert_true(!l.narrow && l.show_kv && l.show_steps);
    assert_int_equal(l.status.y, 38);
    assert_int_equal(l.cmdline.y, 39);
}

/* ---- the view model --------------------------------------------------------------------- */

/* An attention blob: n_layer layers, 2 entries each, both pointing at `to`. */
static uint8_t *blob(int n_layer, uint32_t to, float w, size_t *len)
{
    *len = 4 + (size_t)n_layer * 2 * 8;
    uint8_t *b = calloc(1, *len);
    b[0] = 1;
    b[1] = (uint8_t)n_layer;
    b[2] = 2;
    for (int l = 0; l < n_layer; l++) {
        uint8_t *e = b + 4 + (size_t)l * 16;
        memcpy(e, &to, 4);
        memcpy(e + 4, &w, 4);
        uint32_t pad = 0xFFFFFFFFu;
        float z = 0;
        memcpy(e + 8, &pad, 4);
        memcpy(e + 12, &z, 4);
    }
    return b;
}

static void push(struct pd_app *a, enum pd_role role, const char *text, float lp, int attn_to)
{
    struct pd_token_rec t;
    memset(&t, 0, sizeof t);
    t.pos = (int64_t)a->n_toks;
    t.id = (int32_t)a->n_toks;
    t.role = role;
    t.text = strdup(text);
    t.text_len = strlen(text);
    t.logprob = lp;
    t.entropy = 1.5f;
    t.n_top = 2;
    t.top[0] = (struct pd_topk){t.id, lp};
    t.top[1] = (struct pd_topk){7, -3.0f};
    if (attn_to >= 0) {
        t.attn = blob(2, (uint32_t)attn_to, 0.5f, &t.attn_len);
    }
    struct pd_err err;
    assert_int_equal(pd_app_push_token_take(a, &t, &err), PD_OK);
    assert_null(t.text);
}

static void ev_simple(struct pd_app *a, enum pd_event_kind kind, int64_t pos, const char *text)
{
    struct pd_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    ev.pos = pos;
    snprintf(ev.text, sizeof ev.text, "%s", text ? text : "");
    struct pd_err err;
    assert_int_equal(pd_app_on_event(a, &ev, &err), PD_OK);
}

static const char *const think_text[] = {
    "Let", " me", " add", " 2", " and", " 3", ".\n\n", "2", "+", "3", "=", "5", ".\n\n",
    "Wait", ",", " check", ":", " 5", "-", "3", "=", "2", ".\n\n", "So", " 5", ".",
};

static void live_app(struct pd_app *a)
{
    struct pd_err err;
    assert_int_equal(pd_app_init(a, PD_APP_LIVE, &err), PD_OK);
    pd_app_resize(a, 10, 30, 5, false);
    push(a, PD_ROLE_PROMPT, "Q: 2+3?", NAN, -1);
    for (size_t i = 0; i < sizeof think_text / sizeof think_text[0]; i++) {
        push(a, PD_ROLE_THINK, think_text[i], i == 7 ? -9.0f : -0.1f, i > 8 ? 3 : -1);
    }
}

static void test_app_steps_and_importance(void **state)
{
    (void)state;
    struct pd_app a;
    live_app(&a);
    assert_int_equal(a.n_toks, 27);
    assert_int_equal(a.n_prompt, 1);
    /* Two closed steps ("2+3=5." is shorter than min_chars and merges into the check
     * that follows) and an open one ("So 5."). */
    assert_int_equal(a.n_steps, 3);
    assert_true(a.steps[2].open);
    assert_int_equal(a.steps[2].rec.pos_begin, 24);
    assert_false(a.steps[0].open);
    assert_int_equal(a.steps[0].rec.pos_begin, 1);
    assert_int_equal(a.steps[1].rec.pos_begin, 8);
    assert_int_equal(pd_app_step_of(&a, 9), 1);
    assert_int_equal(pd_app_step_of(&a, 0), -1);
    /* First-token surprisal of step 1 is -(-9)/ln 2. */
    assert_float_equal(a.steps[1].rec.first_surprisal, 9.0 / M_LN2, 1e-4);
    /* Tokens 9.. attend to position 3 (step 0) with weight 0.5 in both layers. */
    assert_true(a.steps[0].recv > 5.0f);
    assert_float_equal(a.steps[1].recv, 0.0f, 1e-6);
    assert_true(isnan(a.steps[2].recv)); /* no later step yet */
    assert_int_equal(a.n_layer, 2);
    /* Colour modes map tokens to levels by their own measure. */
    assert_int_equal(pd_app_colour_level(&a, 8), 7); /* surprisal 13 bits */
    pd_app_set_colour(&a, PD_COLOUR_ENTROPY);
    assert_int_equal(pd_app_colour_level(&a, 8), 1); /* entropy 1.5 bits */
    a.cursor = 20;                                     /* attends to 3 with 0.5 per layer */
    pd_app_set_colour(&a, PD_COLOUR_ATTN_FROM);
    assert_int_equal(pd_app_colour_level(&a, 3), 6);
    assert_int_equal(pd_app_colour_level(&a, 4), 0);
    assert_int_equal(pd_app_colour_level(&a, 21), 0); /* after the cursor */
    pd_app_set_colour(&a, PD_COLOUR_ATTN_RECV);
    pd_app_colour_prepare(&a);
    assert_int_equal(pd_app_colour_level(&a, 3), 7);  /* 0.5 from each of 17 tokens */
    assert_int_equal(pd_app_colour_level(&a, 2), 0);
    pd_app_set_colour(&a, PD_COLOUR_STEP);
    assert_int_not_equal(pd_app_colour_level(&a, 2), 0);
    assert_int_equal(pd_app_colour_level(&a, 0), 0); /* the prompt is in no step */
    char legend[64];
    const char *labels[PD_APP_LEVELS];
    pd_app_colour_legend(&a, legend, sizeof legend, labels);
    assert_string_equal(legend, "step");
    pd_app_set_colour(&a, PD_COLOUR_SURPRISAL);
    a.cursor = a.n_toks - 1;
    /* One definition: the workbench's importance is analyze's attn_received. */
    struct pd_step_rec recs[3];
    for (int k = 0; k < 3; k++) {
        recs[k] = a.steps[k].rec;
    }
    struct pd_err merr;
    assert_int_equal(pd_metrics_steps(a.toks, a.n_toks, recs, 3, NULL, &merr), PD_OK);
    for (int k = 0; k < 3; k++) {
        if (isnan(recs[k].attn_received)) {
            assert_true(isnan(a.steps[k].recv));
        } else {
            assert_float_equal(a.steps[k].recv, recs[k].attn_received, 1e-5);
        }
    }
    /* The trace shows a step marker before each step's first token. */
    struct pd_wrap_src src = pd_app_wrap_src(&a);
    assert_string_equal(src.prefix(src.ud, 8), "\xe2\x96\xb8");
    assert_string_equal(src.prefix(src.ud, 9), "");
    /* Finishing closes the open step, and the trace stays laid out: the whole text is
     * on lines and the last one is on screen (no later token re-wraps it). */
    ev_simple(&a, PD_EV_FINISHED, 27, "eog");
    assert_true(a.finished);
    assert_false(a.steps[a.n_steps - 1].open);
    assert_string_equal(a.finish_reason, "eog");
    assert_true(a.wrap.n_lines > 0);
    assert_int_equal(pd_wrap_line_of(&a.wrap, &src, a.n_visible - 1), a.wrap.n_lines - 1);
    assert_true(a.trace_top <= a.wrap.n_lines - 1);
    assert_true(a.trace_top + (size_t)a.trace_rows > a.wrap.n_lines - 1);
    pd_app_deinit(&a);
}

/* A generation that ends while its only step is open (no blank line anywhere): closing
 * that step re-lays the whole trace out, and nothing else arrives to do it. */
static void test_app_finish_single_step_keeps_text(void **state)
{
    (void)state;
    struct pd_app a;
    struct pd_err err;
    assert_int_equal(pd_app_init(&a, PD_APP_LIVE, &err), PD_OK);
    pd_app_resize(&a, 10, 30, 5, false);
    push(&a, PD_ROLE_PROMPT, "Once", NAN, -1);
    for (int i = 0; i < 40; i++) {
        push(&a, PD_ROLE_THINK, " upon a time", -0.5f, -1);
    }
    ev_simple(&a, PD_EV_FINISHED, 41, "length");
    struct pd_wrap_src src = pd_app_wrap_src(&a);
    assert_true(a.wrap.n_lines > 10);
    size_t last = pd_wrap_line_of(&a.wrap, &src, a.n_visible - 1);
    assert_true(last >= a.trace_top && last < a.trace_top + (size_t)a.trace_rows);
    pd_app_deinit(&a);
}

static bool pop_cmd(struct pd_app *a, enum pd_cmd_kind kind, struct pd_app_fx *fx)
{
    if (!pd_app_fx_pop(a, fx)) {
        return false;
    }
    return fx->kind == PD_FX_SESSION && fx->cmd.kind == kind;
}

static void test_app_live_actions(void **state)
{
    (void)state;
    struct pd_app a;
    struct pd_app_fx fx;
    live_app(&a);
    pd_app_do(&a, PD_ACT_PAUSE);
    assert_true(pop_cmd(&a, PD_CMD_PAUSE, &fx));
    assert_true(a.pause_pending);
    ev_simple(&a, PD_EV_PAUSED, 27, NULL);
    assert_true(a.paused);
    pd_app_do(&a, PD_ACT_PAUSE);
    assert_true(pop_cmd(&a, PD_CMD_RESUME, &fx));
    pd_app_do(&a, PD_ACT_ANSWER_NOW);
    assert_true(pop_cmd(&a, PD_CMD_ANSWER_NOW, &fx));
    /* m only stages the mode; it reaches the session once the keys settle. */
    pd_app_do(&a, PD_ACT_MODE_CYCLE);
    assert_false(pd_app_fx_pop(&a, &fx));
    pd_app_tick(&a, 0.1);
    assert_false(pd_app_fx_pop(&a, &fx));
    pd_app_tick(&a, 1.0);
    assert_true(pop_cmd(&a, PD_CMD_SET_MODE, &fx));
    assert_int_equal(fx.cmd.mode, PD_MODE_SHORT);
    assert_int_equal(fx.cmd.budget, 256);
    assert_false(fx.cmd.close_thinking);
    pd_app_tick(&a, 1.0);
    assert_false(pd_app_fx_pop(&a, &fx)); /* sent once */
    /* Cycling while paused: only the final choice goes, on resume, and passing through
     * none closes nothing. */
    pd_app_do(&a, PD_ACT_PAUSE);
    assert_true(pop_cmd(&a, PD_CMD_PAUSE, &fx));
    ev_simple(&a, PD_EV_PAUSED, 28, NULL);
    pd_app_do(&a, PD_ACT_MODE_CYCLE); /* short -> none */
    pd_app_do(&a, PD_ACT_MODE_CYCLE); /* none -> long */
    pd_app_tick(&a, 5.0);
    assert_false(pd_app_fx_pop(&a, &fx)); /* nothing while paused */
    pd_app_do(&a, PD_ACT_PAUSE);
    assert_true(pop_cmd(&a, PD_CMD_SET_MODE, &fx));
    assert_int_equal(fx.cmd.mode, PD_MODE_LONG);
    assert_false(fx.cmd.close_thinking);
    assert_true(pop_cmd(&a, PD_CMD_RESUME, &fx));
    /* :mode none is explicit: it ends thinking at once. */
    pd_app_command(&a, "mode none");
    assert_true(pop_cmd(&a, PD_CMD_SET_MODE, &fx));
    assert_int_equal(fx.cmd.mode, PD_MODE_NONE);
    assert_true(fx.cmd.close_thinking);
    pd_app_command(&a, "mode short");
    assert_true(pop_cmd(&a, PD_CMD_SET_MODE, &fx));
    assert_false(fx.cmd.close_thinking);
    /* :policy checks the spec and queues it for the engine side to build. */
    pd_app_command(&a, "policy h2o:16,shadow");
    assert_true(pop_cmd(&a, PD_CMD_SET_POLICY, &fx));
    assert_string_equal(fx.cmd.text, "h2o:16,shadow");
    assert_null(fx.cmd.policy);
    pd_app_command(&a, "policy h2o");
    assert_false(pd_app_fx_pop(&a, &fx)); /* a budget is required: refused, nothing queued */
    assert_non_null(strstr(a.msg, "policy"));
    /* After the end, :policy simulates over the saved summaries instead. */
    a.finished = true;
    pd_app_command(&a, "policy window:6,sinks=2");
    assert_false(pd_app_fx_pop(&a, &fx));
    assert_non_null(strstr(a.msg, "simulated"));
    assert_true(a.n_kv > 0);
    assert_true(a.kv_shadow);
    assert_int_equal(pd_app_kv_cell(&a, 0, 3), PD_KV_CELL_EVICTED);
    a.finished = false;
    struct pd_err perr;
    assert_int_equal(pd_app_set_policy(&a, "full", &perr), PD_OK); /* back as it was */
    /* Branch after the cursor token. */
    pd_app_command(&a, "goto 5");
    assert_int_equal(a.cursor, 5);
    assert_false(a.follow);
    /* Under greedy decoding a resample would repeat the parent: refused, with the way out. */
    pd_app_do(&a, PD_ACT_BRANCH);
    assert_false(pd_app_fx_pop(&a, &fx));
    assert_non_null(strstr(a.msg, ":temp"));
    /* :temp and friends check their ranges and queue what is sampled next. */
    pd_app_command(&a, "temp 101");
    assert_false(pd_app_fx_pop(&a, &fx));
    assert_non_null(strstr(a.msg, "temp: expected a number in [0, 100]"));
    pd_app_command(&a, "top-p 0");
    assert_false(pd_app_fx_pop(&a, &fx));
    pd_app_command(&a, "top-k -1");
    assert_false(pd_app_fx_pop(&a, &fx));
    pd_app_command(&a, "seed 7");
    assert_true(pop_cmd(&a, PD_CMD_SET_SAMPLING, &fx));
    assert_int_equal(fx.cmd.sampling.seed, 7);
    a.sampling = fx.cmd.sampling; /* what the live side does once the session took it */
    pd_app_command(&a, "temp 0.8");
    assert_true(pop_cmd(&a, PD_CMD_SET_SAMPLING, &fx));
    assert_float_equal(fx.cmd.sampling.temperature, 0.8, 1e-6);
    assert_int_equal(fx.cmd.sampling.seed, 7); /* the others kept */
    a.sampling = fx.cmd.sampling;
    pd_app_command(&a, "temp");
    assert_non_null(strstr(a.msg, "temp 0.8"));
    pd_app_do(&a, PD_ACT_BRANCH);
    assert_true(pop_cmd(&a, PD_CMD_BRANCH, &fx));
    assert_int_equal(fx.cmd.pos, 6);
    assert_int_equal(fx.cmd.token, -1);
    /* Steer by alternative: inspector focus, second alternative, Enter. */
    a.focus = PD_PANE_INSPECT;
    pd_app_do(&a, PD_ACT_DOWN);
    pd_app_do(&a, PD_ACT_DOWN);
    assert_int_equal(a.alt_sel, 1);
    pd_app_do(&a, PD_ACT_SELECT);
    assert_true(pop_cmd(&a, PD_CMD_BRANCH, &fx));
    assert_int_equal(fx.cmd.pos, 5);
    assert_int_equal(fx.cmd.token, 7);
    a.focus = PD_PANE_TRACE;
    /* Inject opens the command line; the command queues the text. */
    pd_app_do(&a, PD_ACT_INJECT);
    assert_true(pd_app_fx_pop(&a, &fx));
    assert_int_equal(fx.kind, PD_FX_CMDLINE);
    assert_string_equal(fx.text, "inject ");
    pd_app_command(&a, "inject Hmm, let me re-check.");
    assert_true(pop_cmd(&a, PD_CMD_INJECT, &fx));
    assert_string_equal(fx.cmd.text, "Hmm, let me re-check.");
    pd_app_command(&a, "inject a\\n\\nb\\tc\\\\d\\x");
    assert_true(pop_cmd(&a, PD_CMD_INJECT, &fx));
    assert_string_equal(fx.cmd.text, "a\n\nb\tc\\d\\x");
    /* Replay-only actions are refused with a message. */
    pd_app_do(&a, PD_ACT_FASTER);
    assert_false(pd_app_fx_pop(&a, &fx));
    assert_true(a.msg_error);
    /* Budget without a policy, bad numbers, bad modes. */
    pd_app_command(&a, "budget 12");
    assert_true(a.msg_error);
    struct pd_err err;
    assert_int_equal(pd_app_set_policy(&a, "h2o:16,shadow", &err), PD_OK);
    assert_true(a.kv_shadow);
    assert_int_equal(a.kv_budget, 16);
    assert_int_equal(a.kv_recent, 8);
    pd_app_command(&a, "budget 0");
    assert_true(a.msg_error);
    pd_app_command(&a, "budget 32");
    assert_true(pop_cmd(&a, PD_CMD_SET_BUDGET, &fx));
    assert_int_equal(fx.cmd.budget, 32);
    pd_app_command(&a, "mode sideways");
    assert_true(a.msg_error);
    pd_app_command(&a, "mode short:64");
    assert_true(pop_cmd(&a, PD_CMD_SET_MODE, &fx));
    assert_int_equal(fx.cmd.budget, 64);
    pd_app_do(&a, PD_ACT_DIVERGENCE);
    assert_true(pop_cmd(&a, PD_CMD_DIVERGENCE, &fx));
    assert_int_not_equal(pd_app_set_policy(&a, "h2o:banana", &err), PD_OK);
    pd_app_command(&a, "frobnicate now");
    assert_true(a.msg_error);
    assert_non_null(strstr(a.msg, "frobnicate"));
    /* After an end the session waits: pause says c continues; c asks for -n more tokens
     * and the continue event re-opens the trace. */
    assert_false(pd_app_fx_pop(&a, &fx));
    a.continue_n = 40;
    pd_app_do(&a, PD_ACT_CONTINUE);
    assert_false(pd_app_fx_pop(&a, &fx)); /* still generating: nothing to continue */
    ev_simple(&a, PD_EV_FINISHED, 27, "length");
    assert_non_null(strstr(a.msg, "c continues"));
    pd_app_do(&a, PD_ACT_PAUSE);
    assert_false(pd_app_fx_pop(&a, &fx));
    assert_non_null(strstr(a.msg, "c continues"));
    pd_app_do(&a, PD_ACT_CONTINUE);
    assert_true(pop_cmd(&a, PD_CMD_CONTINUE, &fx));
    assert_int_equal(fx.cmd.budget, 40);
    ev_simple(&a, PD_EV_RESUMED, 27, "continue");
    assert_false(a.finished);
    /* A stopped or failed generation takes no more commands. */
    ev_simple(&a, PD_EV_FINISHED, 27, "stopped");
    pd_app_do(&a, PD_ACT_CONTINUE);
    assert_false(pd_app_fx_pop(&a, &fx));
    assert_true(a.msg_error);
    pd_app_deinit(&a);
}

static void test_app_prune_tag_quit(void **state)
{
    (void)state;
    struct pd_app a;
    struct pd_app_fx fx;
    live_app(&a);
    assert_false(pd_app_unsaved(&a));
    pd_app_command(&a, "goto 9");
    pd_app_do(&a, PD_ACT_PRUNE);
    assert_true(a.steps[1].rec.pruned);
    assert_true(pd_app_unsaved(&a));
    pd_app_do(&a, PD_ACT_PRUNE);
    assert_false(a.steps[1].rec.pruned); /* p toggles */
    pd_app_do(&a, PD_ACT_PRUNE);
    assert_true(a.steps[1].rec.pruned);
    /* The open step cannot be pruned. */
    pd_app_command(&a, "goto 25");
    pd_app_do(&a, PD_ACT_PRUNE);
    assert_false(a.steps[2].rec.pruned);
    assert_true(a.msg_error);
    /* Prune and continue sends the span to the session. */
    pd_app_command(&a, "goto 3");
    pd_app_do(&a, PD_ACT_PRUNE_CONTINUE);
    assert_true(pop_cmd(&a, PD_CMD_PRUNE, &fx));
    assert_int_equal(fx.cmd.pos, a.steps[0].rec.pos_begin);
    assert_int_equal(fx.cmd.pos_end, a.steps[0].rec.pos_end);
    assert_false(fx.cmd.reencode);
    assert_true(a.steps[0].rec.pruned);
    /* Tags: on the step; malformed names refused. */
    pd_app_command(&a, "tag arith careful check");
    assert_int_equal(a.n_tags, 1);
    assert_string_equal(a.tags[0].tag, "arith");
    assert_string_equal(a.tags[0].note, "careful check");
    assert_int_equal(a.tags[0].pos_begin, a.steps[0].rec.pos_begin);
    assert_int_equal(a.tags[0].pos_end, a.steps[0].rec.pos_end);
    assert_int_equal(a.steps[0].n_tags, 1);
    pd_app_command(&a, "tag a,b");
    assert_int_equal(a.n_tags, 1);
    assert_true(a.msg_error);
    pd_app_command(&a, "tag");
    assert_true(a.msg_error);
    /* Quit asks once, then quits. */
    pd_app_do(&a, PD_ACT_QUIT);
    assert_false(pd_app_fx_pop(&a, &fx));
    assert_true(a.quit_armed);
    pd_app_do(&a, PD_ACT_QUIT);
    assert_true(pd_app_fx_pop(&a, &fx));
    assert_int_equal(fx.kind, PD_FX_QUIT);
    /* Save queues a save; once saved, q quits at once. */
    pd_app_do(&a, PD_ACT_SAVE);
    assert_true(pd_app_fx_pop(&a, &fx));
    assert_int_equal(fx.kind, PD_FX_SAVE);
    pd_app_mark_saved(&a);
    assert_false(pd_app_unsaved(&a));
    pd_app_do(&a, PD_ACT_QUIT);
    assert_true(pd_app_fx_pop(&a, &fx));
    assert_int_equal(fx.kind, PD_FX_QUIT);
    /* Recording lag does not count: the writer commits everything on exit. */
    a.recording = true;
    a.n_committed = 3;
    assert_false(pd_app_unsaved(&a));
    pd_app_deinit(&a);
}

/* :question and :system: no text opens the command line with the current text (escaped);
 * TEXT queues a save of unsaved edits (when recording) and the rerun with the other half
 * kept; :system - drops the system message; a replay, an empty question and an unknown
 * question (a re-opened session) are refused. */
static void test_app_rerun_commands(void **state)
{
    (void)state;
    struct pd_app a;
    struct pd_app_fx fx;
    live_app(&a);
    assert_int_equal(pd_app_set_question(&a, "Why is\nthe sky blue?", "Be brief.", NULL), PD_OK);
    pd_app_command(&a, "question");
    assert_true(pd_app_fx_pop(&a, &fx));
    assert_int_equal(fx.kind, PD_FX_CMDLINE);
    assert_string_equal(fx.text, "question Why is\\nthe sky blue?");
    pd_app_command(&a, "system");
    assert_true(pd_app_fx_pop(&a, &fx));
    assert_string_equal(fx.text, "system Be brief.");
    /* with unsaved edits and a recording: save first, then rerun */
    a.recording = true;
    pd_app_command(&a, "goto 9");
    pd_app_do(&a, PD_ACT_PRUNE);
    assert_true(pd_app_unsaved(&a));
    pd_app_command(&a, "question A\\tB\\\\C");
    assert_true(pd_app_fx_pop(&a, &fx));
    assert_int_equal(fx.kind, PD_FX_SAVE);
    assert_true(pd_app_fx_pop(&a, &fx));
    assert_int_equal(fx.kind, PD_FX_RERUN);
    assert_string_equal(a.rerun_question, "A\tB\\C");
    assert_string_equal(a.rerun_system, "Be brief.");
    pd_app_mark_saved(&a);
    pd_app_command(&a, "system -");
    assert_true(pd_app_fx_pop(&a, &fx));
    assert_int_equal(fx.kind, PD_FX_RERUN);
    assert_string_equal(a.rerun_question, "Why is\nthe sky blue?");
    assert_null(a.rerun_system);
    pd_app_command(&a, "system Answer in French.");
    assert_true(pd_app_fx_pop(&a, &fx));
    assert_string_equal(a.rerun_system, "Answer in French.");
    /* a question too long for the command line is not cut */
    char big[700];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(pd_app_set_question(&a, big, NULL, NULL), PD_OK);
    a.msg_error = false;
    pd_app_command(&a, "question");
    assert_false(pd_app_fx_pop(&a, &fx));
    assert_true(a.msg_error);
    /* a re-opened session's question is not known: edit refused, TEXT still works */
    assert_int_equal(pd_app_set_question(&a, NULL, NULL, NULL), PD_OK);
    a.msg_error = false;
    pd_app_command(&a, "question");
    assert_true(a.msg_error);
    pd_app_command(&a, "system Be brief.");
    assert_false(pd_app_fx_pop(&a, &fx));
    pd_app_command(&a, "question New one");
    assert_true(pd_app_fx_pop(&a, &fx));
    assert_int_equal(fx.kind, PD_FX_RERUN);
    a.msg_error = false;
    pd_app_command(&a, "question \\");
    pd_app_command(&a, "question  ");
    pd_app_deinit(&a);
    /* replay: no model */
    struct pd_err err;
    assert_int_equal(pd_app_init(&a, PD_APP_REPLAY, &err), PD_OK);
    pd_app_command(&a, "question Why?");
    assert_false(pd_app_fx_pop(&a, &fx));
    assert_true(a.msg_error);
    assert_non_null(strstr(a.msg, "needs the model"));
    pd_app_deinit(&a);
}

/* Rows for a token at pos: layers {0, 1} (of n_layer 2), 2 heads, slots at positions
 * 0..pos; head h of layer l puts weight w(l, h) on position focus[h] and the rest evenly. */
static struct pd_attn_rows *make_rows(int64_t pos, const int64_t focus[2])
{
    struct pd_attn_rows *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->n_layer = 2;
    r->n_head = 2;
    r->layers = calloc(2, sizeof *r->layers);
    r->n_slots = calloc(2, sizeof *r->n_slots);
    r->slot_pos = calloc(2, sizeof *r->slot_pos);
    r->w = calloc(2, sizeof *r->w);
    uint32_t n = (uint32_t)pos + 1;
    for (uint32_t l = 0; l < 2; l++) {
        r->layers[l] = l;
        r->n_slots[l] = n;
        r->slot_pos[l] = calloc(n, sizeof **r->slot_pos);
        r->w[l] = calloc(2 * (size_t)n, sizeof **r->w);
        for (uint32_t k = 0; k < n; k++) {
            r->slot_pos[l][k] = k;
        }
        for (uint32_t h = 0; h < 2; h++) {
            float peak = l == 0 ? 0.9f : 0.5f;
            for (uint32_t k = 0; k < n; k++) {
                r->w[l][h * n + k] = (1.0f - peak) / (float)(n - 1);
            }
            r->w[l][h * n + (uint32_t)focus[h]] = peak;
        }
    }
    return r;
}

/* :head N: asks the session for the cursor token's rows (not while following a running
 * generation; once at a time), colours by that head (mean over layers, or :layer's),
 * drops rows of positions a branch rewinds, refuses a head the model lacks, and a replay
 * says the rows need the model. */
static void test_app_heads(void **state)
{
    (void)state;
    struct pd_app a;
    struct pd_app_fx fx;
    live_app(&a); /* following, running */
    pd_app_command(&a, "head 1");
    assert_int_equal(a.colour, PD_COLOUR_ATTN_FROM);
    assert_int_equal(a.colour_head, 1);
    assert_false(pd_app_fx_pop(&a, &fx)); /* following a running generation: no request */
    pd_app_command(&a, "goto 20");
    assert_true(pop_cmd(&a, PD_CMD_ATTN, &fx));
    assert_int_equal(fx.cmd.pos, a.toks[20].pos);
    assert_true(a.heads_pending);
    pd_app_command(&a, "goto 19");
    assert_false(pd_app_fx_pop(&a, &fx)); /* one request at a time */
    char title[64];
    const char *labels[PD_APP_LEVELS];
    pd_app_colour_legend(&a, title, sizeof title, labels);
    assert_non_null(strstr(title, "H1 (computing)"));
    /* the answer for 20 arrives while the cursor is at 19: taken, and 19 is asked next */
    const int64_t focus20[2] = {3, 11};
    struct pd_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = PD_EV_ATTN;
    ev.pos = a.toks[20].pos;
    ev.rows = make_rows(ev.pos, focus20);
    struct pd_err err;
    assert_int_equal(pd_app_on_event(&a, &ev, &err), PD_OK);
    assert_null(ev.rows);
    assert_true(pop_cmd(&a, PD_CMD_ATTN, &fx));
    assert_int_equal(fx.cmd.pos, a.toks[19].pos);
    assert_false(pd_app_heads_ready(&a));
    pd_app_command(&a, "goto 20");
    assert_true(pd_app_heads_ready(&a));
    pd_app_colour_prepare(&a);
    /* head 1 puts (0.9 + 0.5) / 2 = 0.7 on position 11; head 0 the same on 3 */
    assert_int_equal(pd_app_colour_level(&a, 11), 7);
    assert_int_equal(pd_app_colour_level(&a, 3), 1); /* the even rest: ~0.01-0.03 */
    pd_app_command(&a, "head 0");
    pd_app_colour_prepare(&a);
    assert_int_equal(pd_app_colour_level(&a, 3), 7);
    assert_true(pd_app_colour_level(&a, 11) < 3);
    pd_app_command(&a, "layer 1"); /* 0.5 on 3 in layer 1 alone */
    pd_app_colour_prepare(&a);
    assert_int_equal(pd_app_colour_level(&a, 3), 6);
    pd_app_colour_legend(&a, title, sizeof title, labels);
    assert_string_equal(title, "attn from 20 L1 H0");
    /* later positions than the cursor are not coloured */
    assert_int_equal(pd_app_colour_level(&a, 21), 0);
    /* a head the model does not have */
    pd_app_command(&a, "head 2");
    assert_true(a.msg_error);
    assert_int_equal(a.colour_head, 0);
    /* the session refuses the recompute: the event says which command it refused, the
     * request is over and the message shown; a refusal of another command whose text
     * reads like a mode changes no mode */
    assert_true(a.heads_pending); /* the request for 19 is still out */
    memset(&ev, 0, sizeof ev);
    ev.kind = PD_EV_MODE;
    ev.refused = true;
    ev.refused_cmd = PD_CMD_ATTN;
    snprintf(ev.text, sizeof ev.text, "this session keeps no token history");
    assert_int_equal(pd_app_on_event(&a, &ev, &err), PD_OK);
    assert_false(a.heads_pending);
    assert_true(a.heads_refused);
    assert_true(a.msg_error);
    enum pd_think_mode mode = a.mode;
    ev.refused_cmd = PD_CMD_SET_MODE;
    snprintf(ev.text, sizeof ev.text, "short:100");
    assert_int_equal(pd_app_on_event(&a, &ev, &err), PD_OK);
    assert_int_equal(a.mode, mode);
    /* the head mean again: from the summaries, no rows needed */
    pd_app_command(&a, "head mean");
    assert_int_equal(a.colour_head, -1);
    /* a branch that rewinds before the rows' position drops them */
    pd_app_command(&a, "head 0");
    ev_simple(&a, PD_EV_BRANCHED, 15, "resample");
    assert_null(a.heads);
    pd_app_deinit(&a);
    /* replay: the database keeps the head mean only */
    assert_int_equal(pd_app_init(&a, PD_APP_REPLAY, &err), PD_OK);
    struct pd_token_rec t;
    memset(&t, 0, sizeof t);
    t.pos = 0;
    t.id = 1;
    t.logprob = NAN;
    t.entropy = NAN;
    assert_int_equal(pd_app_push_token_take(&a, &t, &err), PD_OK);
    pd_app_seek(&a, 1);
    pd_app_command(&a, "head 0");
    assert_false(pd_app_fx_pop(&a, &fx));
    assert_true(a.msg_error);
    assert_non_null(strstr(a.msg, "-m MODEL"));
    pd_app_deinit(&a);
}

static void test_app_search_and_moves(void **state)
{
    (void)state;
    struct pd_app a;
    live_app(&a);
    pd_app_do(&a, PD_ACT_HOME);
    assert_int_equal(a.cursor, 0);
    pd_app_search(&a, "2+3"); /* spans three tokens */
    assert_int_equal(a.n_matches, 2);
    assert_int_equal(a.cursor, 0); /* the prompt "Q: 2+3?" */
    pd_app_do(&a, PD_ACT_SEARCH_NEXT);
    assert_int_equal(a.cursor, 8);
    pd_app_do(&a, PD_ACT_SEARCH_NEXT);
    assert_int_equal(a.cursor, 0);
    pd_app_do(&a, PD_ACT_SEARCH_PREV);
    assert_int_equal(a.cursor, 8);
    pd_app_search(&a, "WAIT"); /* case-insensitive */
    assert_int_equal(a.n_matches, 1);
    assert_int_equal(a.cursor, 14);
    pd_app_search(&a, "zebra");
    assert_int_equal(a.n_matches, 0);
    assert_true(a.msg_error);
    /* Steps: ] and [ */
    pd_app_do(&a, PD_ACT_HOME);
    pd_app_do(&a, PD_ACT_STEP_NEXT);
    assert_int_equal(a.cursor, 1);
    pd_app_do(&a, PD_ACT_STEP_NEXT);
    assert_int_equal(a.cursor, 8);
    pd_app_do(&a, PD_ACT_RIGHT);
    pd_app_do(&a, PD_ACT_STEP_PREV);
    assert_int_equal(a.cursor, 8);
    pd_app_do(&a, PD_ACT_STEP_PREV);
    assert_int_equal(a.cursor, 1);
    /* Lines: down moves to a token on a later line, up to one on an earlier line. */
    pd_app_command(&a, "goto 10");
    struct pd_wrap_src ws = pd_app_wrap_src(&a);
    size_t l0 = pd_wrap_line_of(&a.wrap, &ws, a.cursor);
    pd_app_do(&a, PD_ACT_DOWN);
    size_t l1 = pd_wrap_line_of(&a.wrap, &ws, a.cursor);
    assert_true(l1 > l0);
    pd_app_do(&a, PD_ACT_UP);
    assert_true(pd_wrap_line_of(&a.wrap, &ws, a.cursor) < l1);
    pd_app_do(&a, PD_ACT_END);
    assert_int_equal(a.cursor, a.n_toks - 1);
    assert_true(a.follow);
    push(&a, PD_ROLE_ANSWER, " 5", -0.2f, -1);
    assert_int_equal(a.cursor, a.n_toks - 1); /* following */
    struct pd_wrap_src src = pd_app_wrap_src(&a);
    assert_non_null(strstr(src.prefix(src.ud, a.n_toks - 1), "answer"));
    /* Help overlay swallows movement and closes on other keys. */
    pd_app_do(&a, PD_ACT_HELP);
    assert_true(a.help);
    pd_app_do(&a, PD_ACT_DOWN);
    assert_int_equal(a.help_top, 1);
    pd_app_do(&a, PD_ACT_CANCEL);
    assert_false(a.help);
    pd_app_deinit(&a);
}

static void test_app_branch_and_events(void **state)
{
    (void)state;
    struct pd_app a;
    live_app(&a);
    struct pd_kv_event_rec kv = {20, -1, 4, PD_KV_EVICT};
    struct pd_err err;
    assert_int_equal(pd_app_push_kv(&a, &kv, &err), PD_OK);
    assert_int_equal(pd_app_kv_cell(&a, 1, 4), PD_KV_CELL_EVICTED);
    assert_int_equal(pd_app_kv_cell(&a, 0, 5), PD_KV_CELL_KEPT);
    ev_simple(&a, PD_EV_BRANCHED, 10, "resample");
    assert_int_equal(a.n_toks, 10);
    assert_int_equal(a.n_visible, 10);
    assert_int_equal(a.n_branches, 1);
    assert_int_equal(a.n_kv, 0); /* the event happened after the fork */
    assert_int_equal(pd_app_kv_cell(&a, 1, 4), PD_KV_CELL_KEPT);
    assert_int_equal(a.n_steps, 2);
    assert_true(a.steps[1].open);
    push(&a, PD_ROLE_THINK, "1", -0.3f, -1);
    assert_int_equal(a.toks[10].pos, 10);
    struct pd_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = PD_EV_DIVERGENCE;
    ev.kl_bits = 0.25;
    ev.top1_agree = true;
    ev.kv_used = 7;
    ev.kv_cap = 64;
    assert_int_equal(pd_app_on_event(&a, &ev, &err), PD_OK);
    assert_true(a.has_div);
    assert_float_equal(a.div_kl_bits, 0.25, 1e-9);
    assert_int_equal(a.kv_used, 7);
    ev_simple(&a, PD_EV_MODE, 11, "short:100");
    assert_int_equal(a.mode, PD_MODE_SHORT);
    assert_int_equal(a.short_budget, 100);
    /* Prune-and-continue drops a span from the cache: the map shows it pruned, not
     * evicted, and a branch before its end cuts it there. */
    memset(&ev, 0, sizeof ev);
    ev.kind = PD_EV_PRUNED;
    ev.pos = 2;
    ev.pos_end = 5;
    snprintf(ev.text, sizeof ev.text, "cache");
    assert_int_equal(pd_app_on_event(&a, &ev, &err), PD_OK);
    assert_int_equal(pd_app_kv_cell(&a, 0, 2), PD_KV_CELL_PRUNED);
    assert_int_equal(pd_app_kv_cell(&a, 1, 4), PD_KV_CELL_PRUNED);
    assert_int_equal(pd_app_kv_cell(&a, 0, 5), PD_KV_CELL_KEPT);
    assert_int_equal(pd_app_kv_cell(&a, 0, 1), PD_KV_CELL_KEPT);
    ev_simple(&a, PD_EV_BRANCHED, 4, "resample");
    assert_int_equal(a.n_drops, 1);
    assert_int_equal(a.drops[0].end, 4);
    assert_int_equal(pd_app_kv_cell(&a, 0, 3), PD_KV_CELL_PRUNED);
    ev_simple(&a, PD_EV_BRANCHED, 2, "resample");
    assert_int_equal(a.n_drops, 0);
    /* A new budget (K, :budget) reaches the policy text the KV pane's title shows. */
    assert_int_equal(pd_app_set_policy(&a, "h2o:16,recent=4", &err), PD_OK);
    ev_simple(&a, PD_EV_MODE, 2, "kv budget 8");
    assert_int_equal(a.kv_budget, 8);
    assert_non_null(strstr(a.kv_policy, "h2o:8"));
    assert_null(strstr(a.kv_policy, "16"));
    ev_simple(&a, PD_EV_ERROR, 11, "boom");
    assert_true(a.finished);
    assert_string_equal(a.error, "boom");
    pd_app_deinit(&a);
}

static void test_app_corrupt_records(void **state)
{
    (void)state;
    struct pd_app a;
    struct pd_err err;
    assert_int_equal(pd_app_init(&a, PD_APP_REPLAY, &err), PD_OK);
    struct pd_token_rec t;
    memset(&t, 0, sizeof t);
    t.pos = 3; /* gap: expected 0 */
    t.text = strdup("x");
    t.text_len = 1;
    assert_int_equal(pd_app_push_token_take(&a, &t, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "position 3"));
    assert_null(t.text); /* freed, not leaked */
    memset(&t, 0, sizeof t);
    t.role = (enum pd_role)9;
    assert_int_equal(pd_app_push_token_take(&a, &t, &err), PD_EFORMAT);
    memset(&t, 0, sizeof t);
    t.n_top = PD_TOPK_MAX + 1;
    assert_int_equal(pd_app_push_token_take(&a, &t, &err), PD_EFORMAT);
    memset(&t, 0, sizeof t);
    t.text_len = 5; /* length without bytes */
    assert_int_equal(pd_app_push_token_take(&a, &t, &err), PD_EFORMAT);
    /* A malformed attention blob is ignored, not trusted. */
    memset(&t, 0, sizeof t);
    t.text = strdup("ok");
    t.text_len = 2;
    t.attn = blob(2, 0, 0.5f, &t.attn_len);
    t.attn_len -= 3;
    t.logprob = NAN;
    assert_int_equal(pd_app_push_token_take(&a, &t, &err), PD_OK);
    int nl, nt;
    assert_false(pd_app_attn_dims(&a, 0, &nl, &nt));
    /* An attention entry pointing at or after its own token is rejected. */
    memset(&t, 0, sizeof t);
    t.pos = 1;
    t.text = strdup("ab");
    t.text_len = 2;
    t.attn = blob(1, 5, 0.5f, &t.attn_len);
    assert_int_equal(pd_app_push_token_take(&a, &t, &err), PD_OK);
    uint32_t pos;
    float w;
    assert_true(pd_app_attn_dims(&a, 1, &nl, &nt));
    assert_false(pd_app_attn_entry(&a, 1, 0, 0, &pos, &w));
    /* Steps out of order, overlapping, or past the trace. */
    struct pd_step_rec s = {1, 0, 1, PD_STEP_PLAN, false, NAN, NAN, NAN, NAN};
    assert_int_equal(pd_app_push_step(&a, &s, &err), PD_EFORMAT);
    s.index = 0;
    s.kind = (enum pd_step_kind)42;
    assert_int_equal(pd_app_push_step(&a, &s, &err), PD_EFORMAT);
    s.kind = PD_STEP_PLAN;
    s.pos_end = 9;
    assert_int_equal(pd_app_push_step(&a, &s, &err), PD_OK);
    assert_int_equal(pd_app_finish_load(&a, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "past the trace"));
    struct pd_kv_event_rec kv = {1, -2, 0, PD_KV_EVICT};
    assert_int_equal(pd_app_push_kv(&a, &kv, &err), PD_EFORMAT);
    struct pd_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = (enum pd_event_kind)77;
    assert_int_equal(pd_app_on_event(&a, &ev, &err), PD_EFORMAT);
    assert_non_null(strstr(err.msg, "77"));
    kv.layer = 0;
    kv.kind = (enum pd_kv_event_kind)7;
    assert_int_equal(pd_app_push_kv(&a, &kv, &err), PD_EFORMAT);
    pd_app_deinit(&a);
}

static void test_app_replay(void **state)
{
    (void)state;
    struct pd_app a;
    struct pd_err err;
    assert_int_equal(pd_app_init(&a, PD_APP_REPLAY, &err), PD_OK);
    pd_app_resize(&a, 10, 40, 5, false);
    for (int i = 0; i < 40; i++) {
        push(&a, i < 4 ? PD_ROLE_PROMPT : PD_ROLE_THINK, i % 10 == 9 ? ".\n\n" : " w", -1.0f,
             i > 4 ? 2 : -1);
    }
    struct pd_kv_event_rec kv = {20, 1, 6, PD_KV_SHADOW_EVICT};
    assert_int_equal(pd_app_push_kv(&a, &kv, &err), PD_OK);
    assert_int_equal(pd_app_set_policy(&a, "window:10,sinks=2", &err), PD_OK);
    assert_int_equal(pd_app_finish_load(&a, &err), PD_OK);
    assert_true(a.n_steps >= 3); /* segmented on load: none were stored */
    assert_false(a.steps[0].in_db);
    assert_int_equal(a.n_visible, 0);
    pd_app_seek(&a, 40);
    assert_int_equal(a.n_visible, 40);
    assert_int_equal(pd_app_kv_cell(&a, 1, 6), PD_KV_CELL_EVICTED);
    assert_int_equal(pd_app_kv_cell(&a, 0, 6), PD_KV_CELL_KEPT);
    assert_int_equal(pd_app_kv_cell(&a, 0, 1), PD_KV_CELL_SINK);
    assert_int_equal(pd_app_kv_cell(&a, 0, 39), PD_KV_CELL_PROTECTED);
    assert_int_equal(pd_app_kv_cell(&a, 0, 40), PD_KV_CELL_NONE);
    /* Seeking back before the event undoes it. */
    pd_app_command(&a, "seek 15");
    assert_int_equal(a.n_visible, 15);
    assert_int_equal(pd_app_kv_cell(&a, 1, 6), PD_KV_CELL_KEPT);
    pd_app_seek(&a, 25);
    assert_int_equal(pd_app_kv_cell(&a, 1, 6), PD_KV_CELL_EVICTED);
    /* Play from the end restarts; the clock advances speed * dt tokens. */
    pd_app_seek(&a, 40);
    pd_app_do(&a, PD_ACT_PAUSE);
    assert_true(a.playing);
    assert_int_equal(a.n_visible, 0);
    pd_app_command(&a, "speed 100");
    pd_app_tick(&a, 0.105);
    assert_int_equal(a.n_visible, 10);
    pd_app_tick(&a, 10.0);
    assert_int_equal(a.n_visible, 40);
    assert_false(a.playing); /* stops at the end */
    pd_app_do(&a, PD_ACT_PLAY_BACK);
    assert_int_equal(a.n_visible, 39);
    pd_app_do(&a, PD_ACT_PLAY_STEP);
    assert_int_equal(a.n_visible, 40);
    assert_int_equal(a.cursor, 39);
    pd_app_command(&a, "speed 0");
    assert_true(a.msg_error);
    pd_app_command(&a, "seek 41");
    assert_true(a.msg_error);
    /* Live-only actions are refused in replay. */
    struct pd_app_fx fx;
    pd_app_do(&a, PD_ACT_ANSWER_NOW);
    assert_false(pd_app_fx_pop(&a, &fx));
    assert_non_null(strstr(a.msg, "replay"));
    pd_app_command(&a, "inject x");
    assert_false(pd_app_fx_pop(&a, &fx));
    pd_app_deinit(&a);
}

/* ---- keys ---------------------------------------------------------------------------- */

static void test_keys_table(void **state)
{
    (void)state;
    size_t n;
    const struct pd_key_binding *t = pd_keys_table(&n);
    assert_true(n > 30);
    for (size_t i = 0; i < n; i++) {
        assert_true(t[i].act > PD_ACT_NONE && t[i].act < PD_ACT_COUNT);
        assert_true(strlen(pd_keys_action_help(t[i].act)) > 3);
        assert_int_equal(pd_keys_lookup(t[i].key), t[i].act);
        for (size_t j = i + 1; j < n; j++) {
            assert_int_not_equal(t[i].key, t[j].key);
        }
    }
    /* Every action except none has a key; every action has a name. */
    for (int a = 1; a < PD_ACT_COUNT; a++) {
        bool bound = false;
        for (size_t i = 0; i < n; i++) {
            bound |= t[i].act == (enum pd_action)a;
        }
        assert_true(bound);
        assert_non_null(pd_action_name((enum pd_action)a));
    }
    assert_int_equal(pd_keys_lookup(' '), PD_ACT_PAUSE);
    assert_int_equal(pd_keys_lookup('a'), PD_ACT_ANSWER_NOW);
    assert_int_equal(pd_keys_lookup('Z'), PD_ACT_NONE);
    char line[256];
    assert_true(pd_keys_help_line(0, line, sizeof line));
    assert_non_null(strstr(line, "space"));
    assert_false(pd_keys_help_line(pd_keys_help_count(), line, sizeof line));
    /* The help lists the commands and explains the columns with units. */
    bool has_temp = false, has_imp = false;
    for (size_t i = 0; pd_keys_help_line(i, line, sizeof line); i++) {
        has_temp |= strstr(line, ":temp T") != NULL;
        has_imp |= strncmp(line, "imp ", 4) == 0 && strstr(line, "attention mass") != NULL;
    }
    assert_true(has_temp);
    assert_true(has_imp);
    /* The hint bar: keys for the pane and state, whole pairs only, help and quit kept. */
    struct pd_app a;
    struct pd_err err;
    assert_int_equal(pd_app_init(&a, PD_APP_REPLAY, &err), PD_OK);
    char hint[256];
    pd_keys_hint(&a, hint, sizeof hint, 200);
    assert_non_null(strstr(hint, "space play"));
    assert_non_null(strstr(hint, "? help  q quit"));
    size_t hn = pd_keys_hint(&a, hint, sizeof hint, 20);
    assert_true(hn <= 20);
    assert_string_equal(hint, "? help  q quit");
    a.focus = PD_PANE_INSPECT;
    pd_keys_hint(&a, hint, sizeof hint, 200);
    assert_true(strncmp(hint, "j/k alternative", 15) == 0);
    assert_null(strstr(hint, "steer")); /* steering needs a live model */
    /* Messages fade after MSG_TTL_S; errors stay until the next key or message. */
    pd_app_msg(&a, false, "hello");
    pd_app_tick(&a, MSG_TTL_S / 2);
    assert_string_equal(a.msg, "hello");
    pd_app_tick(&a, MSG_TTL_S);
    assert_string_equal(a.msg, "");
    pd_app_msg(&a, true, "bad");
    pd_app_tick(&a, 2 * MSG_TTL_S);
    assert_string_equal(a.msg, "bad");
    pd_app_deinit(&a);
}

static void test_keys_doc_matches(void **state)
{
    (void)state;
    const char *root = getenv("PONDER_SOURCE_ROOT");
    if (!root) {
        fail_msg("PONDER_SOURCE_ROOT is not set (meson test sets it)");
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/keys.md", root);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char doc[1 << 16];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    struct pd_buf b;
    pd_buf_init(&b);
    assert_true(pd_keys_markdown(&b));
    if (strcmp(doc, b.data) != 0) {
        fprintf(stderr, "docs/keys.md is stale: run 'ponder keys --markdown > docs/keys.md'\n");
    }
    assert_string_equal(doc, b.data);
    pd_buf_deinit(&b);
}

/* ---- colours, sha256 ---------------------------------------------------------------------- */

static void test_term_tiers_and_heat(void **state)
{
    (void)state;
    assert_int_equal(pd_term_detect_tier("truecolor", "1", 256, true, true), PD_TIER_MONO);
    assert_int_equal(pd_term_detect_tier("truecolor", "", 1 << 24, true, false), PD_TIER_TRUE);
    assert_int_equal(pd_term_detect_tier("24bit", NULL, 256, false, true), PD_TIER_TRUE);
    assert_int_equal(pd_term_detect_tier("truecolor", NULL, 256, false, false), PD_TIER_256);
    assert_int_equal(pd_term_detect_tier(NULL, NULL, 256, false, true), PD_TIER_256);
    assert_int_equal(pd_term_detect_tier(NULL, NULL, 8, false, false), PD_TIER_8);
    assert_int_equal(pd_term_detect_tier(NULL, NULL, 0, false, false), PD_TIER_MONO);
    assert_int_equal(pd_heat_level(NAN), 0);
    assert_int_equal(pd_heat_level(0.5f), 0);
    assert_int_equal(pd_heat_level(1.0f), 1);
    assert_int_equal(pd_heat_level(4.0f), 3);
    assert_int_equal(pd_heat_level(100.0f), 7);
    /* The scale gets lighter level by level (perceptual ordering). */
    double prev = -1;
    for (int l = 1; l < PD_HEAT_LEVELS; l++) {
        uint8_t c[3];
        pd_heat_rgb(l, c);
        double lum = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
        assert_true(lum > prev);
        prev = lum;
    }
    uint8_t black[3] = {0, 0, 0}, white[3] = {255, 255, 255}, grey[3] = {128, 128, 128};
    uint8_t red[3] = {255, 0, 0};
    assert_int_equal(pd_rgb_to_xterm256(black), 16);
    assert_int_equal(pd_rgb_to_xterm256(white), 231);
    assert_int_equal(pd_rgb_to_xterm256(red), 196);
    assert_int_equal(pd_rgb_to_xterm256(grey), 244);
}

static void test_sha256_vectors(void **state)
{
    (void)state;
    char hex[65];
    pd_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    pd_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    pd_sha256_hex(m, strlen(m), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}


/* ---- store round trip ----------------------------------------------------------------- */

/* Piece i of a test vocabulary: "v<i>". */
static const char *vocab_piece(void *ud, int32_t id, size_t *len)
{
    static char buf[16];
    (void)ud;
    *len = (size_t)snprintf(buf, sizeof buf, "v%d", (int)id);
    return buf;
}

static void test_store_io_round_trip(void **state)
{
    (void)state;
    char path[] = "/tmp/ponder-test-tui-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_store *st = NULL;
    assert_int_equal(pd_store_open(path, NULL, &st, &err), PD_OK);
    struct pd_message msg = {PD_STORE_MSG_USER, "Q"};
    struct pd_session_new sn = {0, NULL, &msg, 1, "test", NULL, 0, 0};
    int64_t id = 0;
    assert_int_equal(pd_store_session_create(st, &sn, &id, &err), PD_OK);
    static const char *const texts[] = {"Q", "First", " idea", ".\n\n", "Second", " idea",
                                        " here", ".", "\n\n", "Third", " thought", " now"};
    struct pd_token_rec toks[12];
    memset(toks, 0, sizeof toks);
    for (int i = 0; i < 12; i++) {
        toks[i].pos = i;
        toks[i].id = i;
        toks[i].role = i == 0 ? PD_ROLE_PROMPT : PD_ROLE_THINK;
        toks[i].text = (char *)texts[i];
        toks[i].text_len = strlen(texts[i]);
        toks[i].logprob = -0.5f;
        toks[i].entropy = 1.0f;
        if (i > 2) {
            toks[i].attn = blob(2, 1, 0.25f, &toks[i].attn_len);
        }
    }
    assert_int_equal(pd_store_tokens_append(st, id, toks, 12, &err), PD_OK);
    for (int i = 0; i < 12; i++) {
        free(toks[i].attn);
    }
    struct pd_kv_event_rec kv = {6, 0, 2, PD_KV_EVICT};
    assert_int_equal(pd_store_kv_append(st, id, &kv, 1, &err), PD_OK);

    struct pd_app a;
    assert_int_equal(pd_app_init(&a, PD_APP_REPLAY, &err), PD_OK);
    assert_int_equal(pd_io_load(st, id, &a, &err), PD_OK);
    size_t plen = 0;
    assert_null(pd_app_piece(&a, 3, &plen)); /* no model, no imported pieces: ids only */
    assert_int_equal(a.n_toks, 12);
    assert_int_equal(a.n_visible, 12);
    assert_int_equal(a.n_layer, 2);
    assert_int_equal(a.n_steps, 3); /* segmented on load */
    assert_false(a.steps[0].in_db);
    assert_true(a.steps[0].recv > 0.0f); /* later steps attend to position 1 */
    assert_int_equal(pd_app_kv_cell(&a, 0, 2), PD_KV_CELL_EVICTED);
    assert_int_equal(pd_app_kv_cell(&a, 1, 2), PD_KV_CELL_KEPT);
    pd_app_command(&a, "goto 5");
    pd_app_do(&a, PD_ACT_PRUNE);
    pd_app_command(&a, "tag dup repeats the first");
    assert_true(pd_app_unsaved(&a));
    assert_int_equal(pd_io_save(st, id, &a, &err), PD_OK);
    assert_false(pd_app_unsaved(&a));
    assert_true(a.tags[0].id > 0);
    pd_app_deinit(&a);

    assert_int_equal(pd_app_init(&a, PD_APP_REPLAY, &err), PD_OK);
    assert_int_equal(pd_io_load(st, id, &a, &err), PD_OK);
    assert_int_equal(a.n_steps, 3);
    assert_true(a.steps[0].in_db);
    assert_true(a.steps[1].rec.pruned);
    assert_true(a.steps[1].pruned_saved);
    assert_true(a.toks[5].flags & PD_TOKF_PRUNED);
    assert_int_equal(a.n_tags, 1);
    assert_string_equal(a.tags[0].tag, "dup");
    assert_string_equal(a.tags[0].note, "repeats the first");
    assert_int_equal(a.steps[1].n_tags, 1);
    /* Unprune and save again. */
    pd_app_command(&a, "goto 5");
    pd_app_do(&a, PD_ACT_PRUNE);
    assert_int_equal(pd_io_save(st, id, &a, &err), PD_OK);
    pd_app_deinit(&a);
    assert_int_equal(pd_app_init(&a, PD_APP_REPLAY, &err), PD_OK);
    assert_int_equal(pd_io_load(st, id, &a, &err), PD_OK);
    assert_false(a.steps[1].rec.pruned);
    pd_app_deinit(&a);

    /* Alternatives read as pieces: those an import kept, then the model's vocabulary. */
    struct pd_piece pc = {3, " three", 6};
    assert_int_equal(pd_store_pieces_put(st, id, &pc, 1, &err), PD_OK);
    struct pd_model_ident mi = {"m.gguf", 1,
                                "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
                                "llama"};
    int64_t mid = 0;
    assert_int_equal(pd_store_model_put(st, &mi, &mid, &err), PD_OK);
    assert_int_equal(pd_store_vocab_put(st, mid, 12, vocab_piece, NULL, &err), PD_OK);
    assert_int_equal(pd_store_session_set_model(st, id, mid, &err), PD_OK);
    assert_int_equal(pd_app_init(&a, PD_APP_REPLAY, &err), PD_OK);
    assert_int_equal(pd_io_load(st, id, &a, &err), PD_OK);
    const char *pcs = pd_app_piece(&a, 3, &plen);
    assert_non_null(pcs);
    assert_int_equal(plen, 6);
    assert_memory_equal(pcs, " three", 6);
    pcs = pd_app_piece(&a, 7, &plen);
    assert_non_null(pcs);
    assert_memory_equal(pcs, "v7", plen);
    assert_null(pd_app_piece(&a, 12, &plen));
    pd_app_deinit(&a);

    /* An unknown session: the message names the database and the session. */
    assert_int_equal(pd_app_init(&a, PD_APP_REPLAY, &err), PD_OK);
    assert_int_not_equal(pd_io_load(st, 999, &a, &err), PD_OK);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "999"));
    pd_app_deinit(&a);
    pd_store_close(&st);
    char side[64];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

/* :prefer and y: kept until a save like prunes and tags, written as a preference, loaded
 * back with the session. */
static void test_store_io_prefer(void **state)
{
    (void)state;
    char path[] = "/tmp/ponder-test-pref-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    struct pd_err err;
    pd_err_clear(&err);
    struct pd_store *st = NULL;
    assert_int_equal(pd_store_open(path, NULL, &st, &err), PD_OK);
    struct pd_message msg = {PD_STORE_MSG_USER, "Q"};
    struct pd_session_new sn = {.messages = &msg, .n_messages = 1, .source = "test"};
    int64_t root = 0, br = 0, other = 0;
    assert_int_equal(pd_store_session_create(st, &sn, &root, &err), PD_OK);
    assert_int_equal(pd_store_session_create(st, &sn, &other, &err), PD_OK);
    struct pd_token_rec t = {.pos = 0, .id = 1, .role = PD_ROLE_PROMPT, .text = "Q",
                             .text_len = 1, .logprob = NAN, .entropy = NAN};
    assert_int_equal(pd_store_tokens_append(st, root, &t, 1, &err), PD_OK);
    struct pd_session_new bn = {.source = "test", .parent_id = root, .fork_pos = 1};
    assert_int_equal(pd_store_session_create(st, &bn, &br, &err), PD_OK);

    struct pd_app a;
    assert_int_equal(pd_app_init(&a, PD_APP_REPLAY, &err), PD_OK);
    assert_int_equal(pd_io_load(st, root, &a, &err), PD_OK);
    pd_app_do(&a, PD_ACT_PREFER); /* a root has no parent to beat */
    assert_true(a.msg_error);
    assert_non_null(strstr(a.msg, "not a branch"));
    assert_int_equal(a.pref_over, 0);
    pd_app_command(&a, "prefer x");
    assert_true(a.msg_error);
    pd_app_command(&a, "prefer 1");
    assert_non_null(strstr(a.msg, "itself"));
    pd_app_deinit(&a);

    assert_int_equal(pd_app_init(&a, PD_APP_REPLAY, &err), PD_OK);
    assert_int_equal(pd_io_load(st, br, &a, &err), PD_OK);
    assert_int_equal(a.parent_id, root);
    pd_app_do(&a, PD_ACT_PREFER);
    assert_false(a.msg_error);
    assert_int_equal(a.pref_over, root);
    assert_true(pd_app_unsaved(&a));
    assert_int_equal(pd_io_save(st, br, &a, &err), PD_OK);
    assert_false(pd_app_unsaved(&a));
    struct pd_pref *p = NULL;
    size_t n = 0;
    assert_int_equal(pd_store_prefs_get(st, 0, &p, &n, &err), PD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(p[0].chosen_id, br);
    assert_int_equal(p[0].rejected_id, root);
    pd_store_prefs_free(p, n);
    /* over a named session instead; the store refuses nothing here (same conversation) */
    pd_app_command(&a, "prefer 2");
    assert_int_equal(a.pref_over, other);
    assert_int_equal(pd_io_save(st, br, &a, &err), PD_OK);
    pd_app_deinit(&a);
    assert_int_equal(pd_app_init(&a, PD_APP_REPLAY, &err), PD_OK);
    assert_int_equal(pd_io_load(st, br, &a, &err), PD_OK);
    assert_int_equal(a.pref_over, root); /* the first of its marks, by session */
    assert_true(a.pref_saved);
    assert_false(pd_app_unsaved(&a));
    pd_app_deinit(&a);
    pd_store_close(&st);
    char side[64];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

/* ---- command line (readline glue, no terminal) ------------------------------------------- */

static void type(const char *s)
{
    for (; *s; s++) {
        pd_cmdline_key((wint_t)(unsigned char)*s, false);
    }
}

static void test_cmdline_readline(void **state)
{
    (void)state;
    char hist[] = "/tmp/ponder-test-hist-XXXXXX";
    int fd = mkstemp(hist);
    assert_true(fd >= 0);
    close(fd);
    setenv("PONDER_HISTORY", hist, 1);
    struct pd_app a;
    live_app(&a);
    pd_cmdline_init(&a);
    assert_string_equal(pd_cmdline_history_path(), hist);
    /* Editing with the curses key codes: "gto 2", Home, Right, "o" -> "goto 2". */
    pd_cmdline_open(':', "");
    assert_true(a.cmd_active);
    type("gto 2");
    assert_string_equal(a.cmd_text, "gto 2");
    assert_int_equal(a.cmd_point, 5);
    pd_cmdline_key(KEY_HOME, true);
    assert_int_equal(a.cmd_point, 0);
    pd_cmdline_key(KEY_RIGHT, true);
    type("o");
    assert_string_equal(a.cmd_text, "goto 2");
    pd_cmdline_key(KEY_BACKSPACE, true);
    type("3");
    assert_string_equal(a.cmd_text, "g3to 2"); /* Backspace deleted before the point */
    pd_cmdline_key(KEY_LEFT, true);
    pd_cmdline_key(KEY_DC, true);
    type("o");
    pd_cmdline_key(KEY_END, true);
    pd_cmdline_key(KEY_BACKSPACE, true);
    type("3");
    assert_string_equal(a.cmd_text, "goto 3");
    pd_cmdline_key('\r', false);
    assert_false(a.cmd_active);
    assert_int_equal(a.cursor, 3);
    /* Initial text, Tab completion of a command and of a mode. */
    pd_cmdline_open(':', "mo");
    pd_cmdline_key('\t', false);
    assert_string_equal(a.cmd_text, "mode ");
    type("no");
    pd_cmdline_key('\t', false);
    assert_string_equal(a.cmd_text, "mode none ");
    /* Esc cancels without running anything. */
    pd_cmdline_key(27, false);
    assert_false(a.cmd_active);
    struct pd_app_fx fx;
    assert_false(pd_app_fx_pop(&a, &fx));
    /* History: Up recalls the last line. */
    pd_cmdline_open(':', "");
    pd_cmdline_key(KEY_UP, true);
    assert_string_equal(a.cmd_text, "goto 3");
    pd_cmdline_key(7, false); /* Ctrl-G cancels too */
    assert_false(a.cmd_active);
    /* '/' lines search. */
    pd_cmdline_open('/', "");
    type("check");
    pd_cmdline_key(KEY_ENTER, true);
    assert_int_equal(a.n_matches, 1);
    assert_int_equal(a.cursor, 16);
    pd_cmdline_deinit();
    FILE *f = fopen(hist, "r");
    assert_non_null(f);
    char line[256], all[1024] = "";
    while (fgets(line, sizeof line, f)) {
        strncat(all, line, sizeof all - strlen(all) - 1);
    }
    fclose(f);
    assert_non_null(strstr(all, "goto 3\n"));
    assert_non_null(strstr(all, "check\n"));
    unlink(hist);
    unsetenv("PONDER_HISTORY");
    pd_app_deinit(&a);
}

int main(void)
{
    setlocale(LC_ALL, "C.UTF-8");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrap_ascii_and_newlines),
        cmocka_unit_test(test_wrap_words),
        cmocka_unit_test(test_wrap_wide_never_straddles),
        cmocka_unit_test(test_wrap_broken_utf8),
        cmocka_unit_test(test_wrap_controls_tabs_prefix),
        cmocka_unit_test(test_wrap_incremental_equals_full),
        cmocka_unit_test(test_layout_every_size),
        cmocka_unit_test(test_app_steps_and_importance),
        cmocka_unit_test(test_app_finish_single_step_keeps_text),
        cmocka_unit_test(test_app_live_actions),
        cmocka_unit_test(test_app_prune_tag_quit),
        cmocka_unit_test(test_app_rerun_commands),
        cmocka_unit_test(test_app_heads),
        cmocka_unit_test(test_app_search_and_moves),
        cmocka_unit_test(test_app_branch_and_events),
        cmocka_unit_test(test_app_corrupt_records),
        cmocka_unit_test(test_app_replay),
        cmocka_unit_test(test_keys_table),
        cmocka_unit_test(test_keys_doc_matches),
        cmocka_unit_test(test_term_tiers_and_heat),
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_store_io_round_trip),
        cmocka_unit_test(test_store_io_prefer),
        cmocka_unit_test(test_cmdline_readline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
