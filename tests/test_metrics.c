/* test_metrics.c - analysis/metrics and analysis/score.
 *
 *   test_metrics           hand-written traces: step metrics (surprisal, first-token
 *                          surprisal, entropy, attention received), the attention blob
 *                          codec, trace figures, corrupt input
 *   test_metrics stories   stories260K: per-token logprobs and step metrics against the
 *                          llama.cpp goldens in tests/golden/models/stories260K.json, trace
 *                          building from text, answer scores under left-out steps against a
 *                          recomputation, greedy continuations, sensitivity, scorer errors;
 *                          exits 77 (SKIP) when the model is absent */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"
#include "score.h"
#include "steps.h"
#include "attn_blob.h"
#include "mem.h"
#include "chat.h"
#include "forward.h"
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

#define LN2 0.69314718055994530942
#define TMAX 64

/* ---- hand-written traces ------------------------------------------------------------- */

struct trace {
    struct pd_token_rec tok[TMAX];
    size_t n;
};

/* Appends a token at position pos with logprob in bits of surprisal (NAN: unscored). */
static void add(struct trace *t, int64_t pos, enum pd_role role, const char *text,
                double bits, double entropy)
{
    assert_true(t->n < TMAX);
    struct pd_token_rec *r = &t->tok[t->n++];
    memset(r, 0, sizeof *r);
    r->pos = pos;
    r->id = -1;
    r->role = role;
    r->text = (char *)text;
    r->text_len = strlen(text);
    r->logprob = isnan(bits) ? NAN : (float)(-bits * LN2);
    r->entropy = (float)entropy;
}

static struct pd_step_rec step(int32_t index, int64_t b, int64_t e, enum pd_step_kind k)
{
    struct pd_step_rec s;
    memset(&s, 0, sizeof s);
    s.index = index;
    s.pos_begin = b;
    s.pos_end = e;
    s.kind = k;
    s.mean_surprisal = s.first_surprisal = s.mean_entropy = s.attn_received = NAN;
    return s;
}

static void free_blobs(struct trace *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->tok[i].attn);
        t->tok[i].attn = NULL;
    }
}

/* Gives token i a 2-layer blob with up to 2 entries per layer: (pos, w) pairs for layer 0
 * then layer 1; pos < 0 leaves an entry as padding. */
static void set_blob(struct trace *t, size_t i, int64_t p00, float w00, int64_t p01, float w01,
                     int64_t p10, float w10, int64_t p11, float w11)
{
    size_t len = pd_attn_blob_size(2, 2, 0);
    uint8_t *b = malloc(len);
    assert_non_null(b);
    pd_attn_blob_init(b, 2, 2);
    const int64_t pos[4] = {p00, p01, p10, p11};
    const float w[4] = {w00, w01, w10, w11};
    for (uint32_t k = 0; k < 4; k++) {
        if (pos[k] >= 0) {
            pd_attn_blob_set(b, k / 2, k % 2, (uint32_t)pos[k], w[k]);
        }
    }
    free(t->tok[i].attn);
    t->tok[i].attn = b;
    t->tok[i].attn_len = len;
}

/* prompt 0..1, step A = 2..4, step B = 5..7, answer 8 */
static void build_basic(struct trace *t)
{
    memset(t, 0, sizeof *t);
    add(t, 0, PD_ROLE_PROMPT, "Q", NAN, NAN);
    add(t, 1, PD_ROLE_PROMPT, "?", 3.0, 1.0);
    add(t, 2, PD_ROLE_THINK, "First", 4.0, 2.0);
    add(t, 3, PD_ROLE_THINK, " we", 1.0, 1.0);
    add(t, 4, PD_ROLE_THINK, ".\n\n", 1.0, 3.0);
    add(t, 5, PD_ROLE_THINK, "Wait", 6.0, 0.5);
    add(t, 6, PD_ROLE_THINK, " no", NAN, NAN);
    add(t, 7, PD_ROLE_THINK, ".", 2.0, 1.5);
    add(t, 8, PD_ROLE_ANSWER, "A", 0.5, 0.25);
}

/* The basic trace plus token 9 ("So"), with steps A = 2..4, B = 5..7, C = 9. */
static void three_steps(struct trace *t, struct pd_step_rec s[3])
{
    build_basic(t);
    add(t, 9, PD_ROLE_THINK, "So", 1.0, 1.0);
    s[0] = step(0, 2, 5, PD_STEP_PLAN);
    s[1] = step(1, 5, 8, PD_STEP_CHECK);
    s[2] = step(2, 9, 10, PD_STEP_CONCLUDE);
}

/* Token 9's top-N summary: A gets 0.2, B 0.4 + 0.6 (layer 0: 2, 5; layer 1: 7, 1). */
static void topn_blob(struct trace *t)
{
    set_blob(t, 9, 2, 0.2f, 5, 0.4f, 7, 0.6f, 1, 0.4f);
}

static void test_step_metrics(void **state)
{
    (void)state;
    struct trace t;
    build_basic(&t);
    struct pd_step_rec s[2] = {step(0, 2, 5, PD_STEP_PLAN), step(1, 5, 8, PD_STEP_BACKTRACK)};
    struct pd_step_span sp[2];
    assert_int_equal(pd_metrics_steps(t.tok, t.n, s, 2, sp, NULL), PD_OK);
    assert_int_equal(sp[0].i_begin, 2);
    assert_int_equal(sp[0].i_end, 5);
    assert_int_equal(sp[0].n_scored, 3);
    assert_int_equal(sp[1].i_begin, 5);
    assert_int_equal(sp[1].i_end, 8);
    assert_int_equal(sp[1].n_scored, 2);
    assert_float_equal(s[0].mean_surprisal, 2.0, 1e-5);   /* (4 + 1 + 1) / 3 */
    assert_float_equal(s[0].first_surprisal, 4.0, 1e-5);
    assert_float_equal(s[0].mean_entropy, 2.0, 1e-6);     /* (2 + 1 + 3) / 3 */
    assert_float_equal(s[1].mean_surprisal, 4.0, 1e-5);   /* unscored " no" skipped */
    assert_float_equal(s[1].first_surprisal, 6.0, 1e-5);
    assert_float_equal(s[1].mean_entropy, 1.0, 1e-6);
    /* no blobs anywhere: attention received is unknown */
    assert_true(isnan(s[0].attn_received));
    assert_true(isnan(s[1].attn_received));
    /* the kind and span are left alone */
    assert_int_equal(s[1].kind, PD_STEP_BACKTRACK);
    assert_int_equal(s[1].pos_end, 8);

    /* unscored first token -> NAN first surprisal; a step of unscored tokens -> NAN means */
    t.tok[5].logprob = NAN;
    t.tok[7].logprob = NAN;
    t.tok[5].entropy = NAN;
    t.tok[7].entropy = NAN;
    assert_int_equal(pd_metrics_steps(t.tok, t.n, s, 2, NULL, NULL), PD_OK);
    assert_true(isnan(s[1].first_surprisal));
    assert_true(isnan(s[1].mean_surprisal));
    assert_true(isnan(s[1].mean_entropy));
    assert_float_equal(s[0].mean_surprisal, 2.0, 1e-5);
}

static void test_step_metrics_gaps(void **state)
{
    (void)state;
    /* positions with gaps (an exported trace with pruned steps): a step whose first
     * position has no token gets no first-token surprisal; empty steps are fine */
    struct trace t;
    memset(&t, 0, sizeof t);
    add(&t, 0, PD_ROLE_PROMPT, "P", NAN, NAN);
    add(&t, 10, PD_ROLE_THINK, "a", 1.0, 1.0);
    add(&t, 11, PD_ROLE_THINK, "b", 3.0, 1.0);
    add(&t, 20, PD_ROLE_THINK, "c", 5.0, 1.0);
    struct pd_step_rec s[3] = {step(0, 10, 12, PD_STEP_PLAN), step(1, 12, 15, PD_STEP_COMPUTE),
                               step(2, 19, 21, PD_STEP_CONCLUDE)};
    struct pd_step_span sp[3];
    assert_int_equal(pd_metrics_steps(t.tok, t.n, s, 3, sp, NULL), PD_OK);
    assert_float_equal(s[0].mean_surprisal, 2.0, 1e-5);
    assert_float_equal(s[0].first_surprisal, 1.0, 1e-5);
    assert_int_equal(sp[1].i_begin, sp[1].i_end);
    assert_true(isnan(s[1].mean_surprisal));
    assert_true(isnan(s[1].first_surprisal));
    assert_float_equal(s[2].mean_surprisal, 5.0, 1e-5);
    assert_true(isnan(s[2].first_surprisal)); /* position 19 has no token */
}

static void test_attn_received(void **state)
{
    (void)state;
    struct trace t;
    build_basic(&t);
    add(&t, 9, PD_ROLE_THINK, "So", 1.0, 1.0);     /* step C = 9..10 (after the answer) */
    struct pd_step_rec s[3] = {step(0, 2, 5, PD_STEP_PLAN), step(1, 5, 8, PD_STEP_CHECK),
                               step(2, 9, 10, PD_STEP_CONCLUDE)};
    /* step B tokens (idx 5..7) look at step A (pos 2..4), at the prompt and at themselves */
    set_blob(&t, 5, 2, 0.5f, 0, 0.5f, 3, 0.25f, 5, 0.75f);  /* A gets 0.5 + 0.25 */
    set_blob(&t, 6, 4, 0.1f, -1, 0, 4, 0.3f, 6, 0.2f);       /* A gets 0.1 + 0.3 */
    /* step C token (idx 9) looks at A and B */
    topn_blob(&t);     /* A 0.2, B 0.4 + 0.6 */
    /* the answer token (idx 8) attends to A but is not in a later step: ignored */
    set_blob(&t, 8, 2, 1.0f, -1, 0, 2, 1.0f, -1, 0);
    /* a step-A token attends to itself: never counted */
    set_blob(&t, 3, 2, 0.9f, -1, 0, 2, 0.9f, -1, 0);
    assert_int_equal(pd_metrics_steps(t.tok, t.n, s, 3, NULL, NULL), PD_OK);
    /* sums over later-step tokens, averaged over the 2 layers */
    assert_float_equal(s[0].attn_received, (0.75 + 0.4 + 0.2) / 2.0, 1e-6);
    assert_float_equal(s[1].attn_received, (0.4 + 0.6) / 2.0, 1e-6);
    assert_true(isnan(s[2].attn_received)); /* no later step */

    /* only step B carries blobs: A is defined, B and C are not */
    free(t.tok[9].attn);
    t.tok[9].attn = NULL;
    t.tok[9].attn_len = 0;
    assert_int_equal(pd_metrics_steps(t.tok, t.n, s, 3, NULL, NULL), PD_OK);
    assert_float_equal(s[0].attn_received, (0.75 + 0.4) / 2.0, 1e-6);
    assert_true(isnan(s[1].attn_received));
    assert_true(isnan(s[2].attn_received));

    /* blobs exist but nobody attends to B: 0, not NAN */
    set_blob(&t, 9, 2, 0.5f, -1, 0, 3, 0.5f, -1, 0);
    assert_int_equal(pd_metrics_steps(t.tok, t.n, s, 3, NULL, NULL), PD_OK);
    assert_float_equal(s[1].attn_received, 0.0, 1e-9);
    free_blobs(&t);
}

/* Turns token i's blob into version 2 (older databases) with the given step begins and masses. */
static void add_step_masses(struct trace *t, size_t i, const int64_t *begin, const float *mass,
                            uint32_t n)
{
    size_t old = t->tok[i].attn_len;
    uint8_t *b = realloc(t->tok[i].attn, old + 4 + 8 * (size_t)n);
    assert_non_null(b);
    b[0] = 2;
    memcpy(b + old, &n, 4);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t p = (uint32_t)begin[k];
        memcpy(b + old + 4 + 8 * k, &p, 4);
        memcpy(b + old + 8 + 8 * k, &mass[k], 4);
    }
    t->tok[i].attn = b;
    t->tok[i].attn_len = old + 4 + 8 * (size_t)n;
}

/* Gives token i's blob the version-3 step section the engine writes for n known steps. */
static void add_steps_v3(struct trace *t, size_t i, const int64_t *begin, const float *mass,
                         uint32_t n)
{
    struct pd_attn_view v;
    assert_true(pd_attn_blob_layout(t->tok[i].attn, t->tok[i].attn_len, &v));
    uint32_t listed = pd_attn_blob_steps_listed(n, begin, mass, (int64_t)i);
    size_t len = pd_attn_blob_size(v.n_layer, v.n_top, listed);
    uint8_t *b = realloc(t->tok[i].attn, len);
    assert_non_null(b);
    pd_attn_blob_put_steps(b, n, begin, mass, (int64_t)i);
    t->tok[i].attn = b;
    t->tok[i].attn_len = len;
}

/* The engine's summaries list only the steps a token attends to: a step left out has
 * mass 0, exactly, when the listed steps fit these steps (same first position, same
 * extents up to the token's own step), even where the recording knew more boundaries;
 * otherwise the top-N entries are used. */
static void test_attn_received_sparse_steps(void **state)
{
    (void)state;
    struct trace t;
    struct pd_step_rec s[3];
    three_steps(&t, s);
    /* top-N: A 0.2, B (0.4 + 0.6) / 2; the step section: A 0.3, B evicted (left out) */
    const int64_t begins[3] = {2, 5, 9};
    const float masses[3] = {0.3f, 0.0f, 0.1f};
    topn_blob(&t);
    add_steps_v3(&t, 9, begins, masses, 3);
    struct pd_attn_view v;
    assert_true(pd_attn_blob_layout(t.tok[9].attn, t.tok[9].attn_len, &v));
    assert_int_equal(v.n_steps, 2);
    assert_int_equal(pd_metrics_steps(t.tok, t.n, s, 3, NULL, NULL), PD_OK);
    assert_float_equal(s[0].attn_received, 0.3, 1e-6);
    assert_float_equal(s[1].attn_received, 0.0, 1e-9);
    /* the recording split B in two (both without mass): still exact */
    const int64_t split[4] = {2, 5, 7, 9};
    const float m4[4] = {0.3f, 0.0f, 0.0f, 0.1f};
    topn_blob(&t);
    add_steps_v3(&t, 9, split, m4, 4);
    assert_int_equal(pd_metrics_steps(t.tok, t.n, s, 3, NULL, NULL), PD_OK);
    assert_float_equal(s[0].attn_received, 0.3, 1e-6);
    assert_float_equal(s[1].attn_received, 0.0, 1e-9);
    /* A ended elsewhere (at 6): the listed extent does not fit, top-N entries */
    const int64_t other[3] = {2, 6, 9};
    topn_blob(&t);
    add_steps_v3(&t, 9, other, masses, 3);
    assert_int_equal(pd_metrics_steps(t.tok, t.n, s, 3, NULL, NULL), PD_OK);
    assert_float_equal(s[0].attn_received, 0.2 / 2.0, 1e-6);
    assert_float_equal(s[1].attn_received, (0.4 + 0.6) / 2.0, 1e-6);
    /* the first step began elsewhere (at 1, left out): top-N entries */
    const int64_t early[3] = {1, 5, 9};
    const float m3[3] = {0.0f, 0.5f, 0.1f};
    topn_blob(&t);
    add_steps_v3(&t, 9, early, m3, 3);
    assert_int_equal(pd_metrics_steps(t.tok, t.n, s, 3, NULL, NULL), PD_OK);
    assert_float_equal(s[0].attn_received, 0.2 / 2.0, 1e-6);
    free_blobs(&t);
}

/* Summaries that carry per-step masses for these very steps are used exactly; steps the
 * recording segmented differently fall back to the top-N entries. */
static void test_attn_received_step_mass(void **state)
{
    (void)state;
    struct trace t;
    struct pd_step_rec s[3];
    three_steps(&t, s);
    /* token 9 (step C): top-N says A 0.2, B 0.4 + 0.6; its step masses say A 0.3, B 0.5 */
    topn_blob(&t);
    const int64_t begins[3] = {2, 5, 9};
    const float masses[3] = {0.3f, 0.5f, 0.1f};
    add_step_masses(&t, 9, begins, masses, 3);
    assert_int_equal(pd_metrics_steps(t.tok, t.n, s, 3, NULL, NULL), PD_OK);
    assert_float_equal(s[0].attn_received, 0.3, 1e-6);
    assert_float_equal(s[1].attn_received, 0.5, 1e-6);
    /* the recording's second step began elsewhere: the masses do not fit these steps */
    topn_blob(&t);
    const int64_t other[3] = {2, 6, 9};
    add_step_masses(&t, 9, other, masses, 3);
    assert_int_equal(pd_metrics_steps(t.tok, t.n, s, 3, NULL, NULL), PD_OK);
    assert_float_equal(s[0].attn_received, 0.2 / 2.0, 1e-6);
    assert_float_equal(s[1].attn_received, (0.4 + 0.6) / 2.0, 1e-6);
    free_blobs(&t);
}

static uint32_t rnd32(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

/* The accumulator fed a trace in pieces of any size gives pd_metrics_steps' values bit
 * for bit: random traces of 400 tokens with gaps, unscored tokens, version-1 summaries
 * and version-3 ones with step masses (some fitting the steps, some not), cut at random
 * points; and it refuses positions that do not increase across pieces. */
static void test_metrics_acc_pieces(void **state)
{
    (void)state;
    enum { N = 400, NS = 12 };
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int trial = 0; trial < 20; trial++) {
        struct pd_token_rec *tok = calloc(N, sizeof *tok);
        assert_non_null(tok);
        int64_t pos = 0;
        for (size_t i = 0; i < N; i++) {
            pos += 1 + (rnd32(&rng) % 5 == 0);
            tok[i].pos = pos;
            tok[i].role = PD_ROLE_THINK;
            tok[i].logprob = rnd32(&rng) % 7 == 0 ? NAN : -(float)(rnd32(&rng) % 1000) / 100.0f;
            tok[i].entropy = rnd32(&rng) % 9 == 0 ? NAN : (float)(rnd32(&rng) % 500) / 100.0f;
        }
        /* steps: NS spans with gaps between some of them */
        struct pd_step_rec st[NS], whole[NS], piece[NS];
        int64_t b = tok[5].pos;
        int64_t begins[NS];
        for (int j = 0; j < NS; j++) {
            int64_t e = b + 20 + rnd32(&rng) % 30;
            st[j] = step(j, b, e, PD_STEP_PLAN);
            begins[j] = b;
            b = e + (rnd32(&rng) % 3 == 0 ? 2 : 0);
        }
        for (size_t i = 0; i < N; i++) {
            if (rnd32(&rng) % 3 == 0) {
                continue;
            }
            size_t len = pd_attn_blob_size(2, 2, 0);
            uint8_t *blob = malloc(len);
            assert_non_null(blob);
            pd_attn_blob_init(blob, 2, 2);
            for (uint32_t e = 0; e < 4; e++) {
                uint32_t p = (uint32_t)(tok[i].pos * (rnd32(&rng) % 100) / 100);
                pd_attn_blob_set(blob, e / 2, e % 2, p, (float)(rnd32(&rng) % 100) / 400.0f);
            }
            tok[i].attn = blob;
            tok[i].attn_len = len;
            if (rnd32(&rng) % 2 == 0) { /* a version-3 section over the steps known so far */
                float mass[NS];
                uint32_t known = 0;
                int64_t own_b[NS];
                for (int j = 0; j < NS && begins[j] <= tok[i].pos; j++) {
                    own_b[j] = begins[j] + (rnd32(&rng) % 8 == 0); /* some do not fit */
                    mass[j] = rnd32(&rng) % 3 == 0 ? 0.0f : (float)(rnd32(&rng) % 100) / 1000.0f;
                    known++;
                }
                uint32_t listed =
                    known ? pd_attn_blob_steps_listed(known, own_b, mass, tok[i].pos) : 0;
                if (listed) {
                    size_t l3 = pd_attn_blob_size(2, 2, listed);
                    uint8_t *b3 = realloc(blob, l3);
                    assert_non_null(b3);
                    pd_attn_blob_put_steps(b3, known, own_b, mass, tok[i].pos);
                    tok[i].attn = b3;
                    tok[i].attn_len = l3;
                }
            }
        }
        memcpy(whole, st, sizeof st);
        memcpy(piece, st, sizeof st);
        struct pd_err err;
        assert_int_equal(pd_metrics_steps(tok, N, whole, NS, NULL, &err), PD_OK);
        struct pd_metrics_acc *a = NULL;
        assert_int_equal(pd_metrics_acc_open(piece, NS, &a, &err), PD_OK);
        for (size_t i = 0; i < N;) {
            size_t n = 1 + rnd32(&rng) % 60;
            n = n > N - i ? N - i : n;
            assert_int_equal(pd_metrics_acc_add(a, tok + i, n, &err), PD_OK);
            i += n;
        }
        pd_metrics_acc_finish(a, piece);
        pd_metrics_acc_close(&a);
        assert_null(a);
        assert_memory_equal(whole, piece, sizeof whole);
        int defined = 0;
        for (int j = 0; j < NS; j++) {
            defined += !isnan(whole[j].attn_received) && whole[j].attn_received > 0.0f;
        }
        assert_true(defined > 0);
        /* a piece that goes back */
        assert_int_equal(pd_metrics_acc_open(piece, NS, &a, &err), PD_OK);
        assert_int_equal(pd_metrics_acc_add(a, tok, 10, &err), PD_OK);
        assert_int_equal(pd_metrics_acc_add(a, tok + 5, 3, &err), PD_EINVAL);
        assert_non_null(strstr(err.msg, "token 10: position"));
        pd_metrics_acc_close(&a);
        for (size_t i = 0; i < N; i++) {
            free(tok[i].attn);
        }
        free(tok);
    }
}

static void expect_err(struct trace *t, struct pd_step_rec *s, size_t n_steps,
                       enum pd_status want, const char *msg)
{
    struct pd_step_rec before[8];
    memcpy(before, s, n_steps * sizeof *s);
    struct pd_err err;
    pd_err_clear(&err);
    assert_int_equal(pd_metrics_steps(t->tok, t->n, s, n_steps, NULL, &err), want);
    if (strstr(err.msg, msg) == NULL) {
        fail_msg("message '%s' lacks '%s'", err.msg, msg);
    }
    /* the steps are left unchanged on error */
    assert_memory_equal(before, s, n_steps * sizeof *s);
}

static void test_metrics_corrupt(void **state)
{
    (void)state;
    struct trace t;
    build_basic(&t);
    struct pd_step_rec s[2] = {step(0, 2, 5, PD_STEP_PLAN), step(1, 5, 8, PD_STEP_CHECK)};
    /* positions not increasing */
    t.tok[4].pos = 3;
    expect_err(&t, s, 2, PD_EINVAL, "token 4: position 3 is not above the previous one");
    t.tok[4].pos = 4;
    /* overlapping / inverted steps */
    s[1].pos_begin = 4;
    expect_err(&t, s, 2, PD_EINVAL, "step 1: span [4, 8) overlaps");
    s[1].pos_begin = 9;
    expect_err(&t, s, 2, PD_EINVAL, "step 1: bad span [9, 8)");
    s[1].pos_begin = 5;
    /* a positive logprob, an infinite one, a negative entropy */
    t.tok[3].logprob = 0.5f;
    expect_err(&t, s, 2, PD_EFORMAT, "position 3: logprob 0.5 is not a log probability");
    t.tok[3].logprob = -INFINITY;
    expect_err(&t, s, 2, PD_EFORMAT, "position 3: logprob -inf");
    t.tok[3].logprob = -1.0f;
    t.tok[6].entropy = -2.0f;
    expect_err(&t, s, 2, PD_EFORMAT, "position 6: entropy -2 is not an entropy");
    t.tok[6].entropy = NAN;
    /* a malformed blob on a step token */
    uint8_t bad[5] = {1, 1, 1, 0, 0};
    t.tok[7].attn = bad;
    t.tok[7].attn_len = sizeof bad;
    expect_err(&t, s, 2, PD_EFORMAT, "token at position 7: attention blob: 5 bytes");
    t.tok[7].attn = NULL;
    t.tok[7].attn_len = 0;
    /* NULL arrays */
    struct pd_err err;
    assert_int_equal(pd_metrics_spans(NULL, 3, s, 2, NULL, &err), PD_EINVAL);
    assert_int_equal(pd_metrics_steps(t.tok, t.n, s, 2, NULL, NULL), PD_OK);
}

static void test_trace_stats(void **state)
{
    (void)state;
    struct trace t;
    build_basic(&t);
    struct pd_step_rec s[2] = {step(0, 2, 5, PD_STEP_PLAN), step(1, 5, 8, PD_STEP_CHECK)};
    struct pd_step_span sp[2];
    assert_int_equal(pd_metrics_steps(t.tok, t.n, s, 2, sp, NULL), PD_OK);
    struct pd_trace_stats ts;
    pd_metrics_trace(t.tok, t.n, s, sp, 2, &ts);
    assert_int_equal(ts.n_tokens, 9);
    assert_int_equal(ts.n_role[PD_ROLE_PROMPT], 2);
    assert_int_equal(ts.n_role[PD_ROLE_THINK], 6);
    assert_int_equal(ts.n_role[PD_ROLE_ANSWER], 1);
    assert_int_equal(ts.n_scored, 7);
    assert_int_equal(ts.n_step_tokens, 6);
    assert_int_equal(ts.n_steps, 2);
    assert_int_equal(ts.n_kind[PD_STEP_PLAN], 1);
    assert_int_equal(ts.n_kind[PD_STEP_CHECK], 1);
    assert_float_equal(ts.mean_surprisal, (4 + 1 + 1 + 6 + 2) / 5.0, 1e-5);
    assert_float_equal(ts.mean_entropy, (2 + 1 + 3 + 0.5 + 1.5) / 5.0, 1e-6);
    pd_metrics_trace(t.tok, t.n, s, sp, 0, &ts);
    assert_true(isnan(ts.mean_surprisal));
    assert_int_equal(ts.n_step_tokens, 0);
}

/* Segmentation and metrics together on a hand-written trace. */
static void test_segment_then_metrics(void **state)
{
    (void)state;
    struct trace t;
    memset(&t, 0, sizeof t);
    add(&t, 0, PD_ROLE_PROMPT, "Q?", NAN, NAN);
    add(&t, 1, PD_ROLE_THINK, "Let", 2.0, 1.0);
    add(&t, 2, PD_ROLE_THINK, " me think about it.", 1.0, 1.0);
    add(&t, 3, PD_ROLE_THINK, "\n\n", 0.5, 1.0);
    add(&t, 4, PD_ROLE_THINK, "Wait", 7.0, 2.0);
    add(&t, 5, PD_ROLE_THINK, ", that is wrong.", 1.0, 2.0);
    add(&t, 6, PD_ROLE_ANSWER, "42", 1.0, 1.0);
    struct pd_steps_list l;
    pd_steps_list_init(&l);
    assert_int_equal(pd_steps_segment(t.tok, t.n, NULL, &l, NULL), PD_OK);
    assert_int_equal(l.n, 2);
    assert_int_equal(pd_metrics_steps(t.tok, t.n, l.items, l.n, NULL, NULL), PD_OK);
    assert_int_equal(l.items[0].kind, PD_STEP_PLAN);
    assert_float_equal(l.items[0].first_surprisal, 2.0, 1e-5);
    assert_float_equal(l.items[0].mean_surprisal, 3.5 / 3.0, 1e-5);
    assert_int_equal(l.items[1].kind, PD_STEP_BACKTRACK);
    assert_float_equal(l.items[1].first_surprisal, 7.0, 1e-5);
    assert_float_equal(l.items[1].mean_entropy, 2.0, 1e-6);
    pd_steps_list_deinit(&l);
}

/* ---- stories260K ---------------------------------------------------------------------- */

static char *model_path(void)
{
    const char *dir = getenv("PONDER_TEST_MODELS");
    const char *root = getenv("PONDER_SOURCE_ROOT");
    char p[4096];
    if (dir && *dir) {
        snprintf(p, sizeof p, "%s/stories260K.gguf", dir);
        if (access(p, R_OK) == 0) {
            return pd_strdup(p);
        }
    }
    snprintf(p, sizeof p, "%s/../shared/models/stories260K.gguf", root && *root ? root : ".");
    return access(p, R_OK) == 0 ? pd_strdup(p) : NULL;
}

struct stories {
    struct pd_model *m;
    struct pd_tok *tok;
};

static int stories_setup(void **state)
{
    char *p = model_path();
    assert_non_null(p);
    struct stories *s = calloc(1, sizeof *s);
    assert_int_equal(pd_model_open(p, &s->m, NULL), PD_OK);
    assert_int_equal(pd_tok_open_gguf(s->m->gguf, &s->tok, NULL), PD_OK);
    free(p);
    *state = s;
    return 0;
}

static int stories_teardown(void **state)
{
    struct stories *s = *state;
    pd_tok_close(&s->tok);
    pd_model_close(&s->m);
    free(s);
    return 0;
}

static struct pd_scorer *open_scorer(const struct stories *s, uint32_t n_ctx)
{
    struct pd_score_params p = pd_score_default_params();
    p.ctx.kv_type = PD_KV_F32; /* the goldens were made with an f32 cache */
    p.ctx.n_ctx = n_ctx;
    p.ctx.n_threads = 2;
    struct pd_scorer *sc = NULL;
    struct pd_err err;
    pd_err_clear(&err);
    if (pd_scorer_open(s->m, s->tok, &p, &sc, &err) != PD_OK) {
        fail_msg("scorer: %s", err.msg);
    }
    return sc;
}

static json_t *load_golden(void)
{
    const char *root = getenv("PONDER_SOURCE_ROOT");
    char p[4096];
    snprintf(p, sizeof p, "%s/tests/golden/models/stories260K.json", root && *root ? root : ".");
    json_error_t je;
    json_t *g = json_load_file(p, 0, &je);
    if (!g) {
        fail_msg("%s: %s", p, je.text);
    }
    return g;
}

/* Per-token logprobs from the scorer against llama.cpp's, and step metrics computed from
 * the scored tokens against the same metrics computed from llama.cpp's logprobs. */
static void test_golden_metrics(void **state)
{
    struct stories *s = *state;
    json_t *g = load_golden();
    json_t *ids = json_object_get(g, "tokens");
    json_t *gpos = json_object_get(g, "positions");
    size_t n = json_array_size(ids);
    size_t n_prompt = json_array_size(json_object_get(g, "prompt_tokens"));
    assert_true(n > 100 && n_prompt > 1);
    struct pd_token_rec *t = pd_calloc(n, sizeof *t);
    double *gold = pd_calloc(n, sizeof *gold);
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        t[i].id = (int32_t)json_integer_value(json_array_get(ids, i));
        const char *piece = pd_tok_piece(s->tok, t[i].id, &len);
        t[i].text = pd_strndup(i == 0 ? "" : piece, i == 0 ? 0 : len);
        t[i].text_len = i == 0 ? 0 : len;
        t[i].pos = (int64_t)i;
        t[i].role = i < n_prompt ? PD_ROLE_PROMPT : PD_ROLE_THINK;
        gold[i] = NAN;
    }
    for (size_t k = 0; k < json_array_size(gpos); k++) {
        json_t *e = json_array_get(gpos, k);
        size_t p = (size_t)json_integer_value(json_object_get(e, "pos"));
        assert_true(p < n);
        assert_int_equal(json_integer_value(json_object_get(e, "token")), t[p].id);
        gold[p] = json_real_value(json_object_get(e, "logprob"));
    }
    struct pd_scorer *sc = open_scorer(s, 0);
    struct pd_err err;
    pd_err_clear(&err);
    assert_int_equal(pd_score_trace(sc, t, n, &err), PD_OK);
    assert_true(isnan(t[0].logprob));
    for (size_t i = 1; i < n; i++) {
        if (fabs(t[i].logprob - gold[i]) > 1e-3) {
            fail_msg("position %zu: logprob %.6f, llama.cpp %.6f", i, (double)t[i].logprob,
                     gold[i]);
        }
        assert_true(t[i].entropy >= 0.0f && isfinite(t[i].entropy));
        assert_int_equal(t[i].n_top, 5);
        json_t *top = json_object_get(json_array_get(gpos, i - 1), "top");
        double l0 = json_real_value(json_array_get(json_array_get(top, 0), 1));
        double l1 = json_real_value(json_array_get(json_array_get(top, 1), 1));
        if (l0 - l1 > 1e-3) {
            assert_int_equal(t[i].top[0].id,
                             json_integer_value(json_array_get(json_array_get(top, 0), 0)));
        }
        assert_non_null(t[i].attn);
        struct pd_attn_view v;
        assert_int_equal(pd_attn_blob_check(t[i].attn, t[i].attn_len, &v, NULL), PD_OK);
        assert_int_equal(v.n_layer, s->m->hp.n_layer);
    }
    /* segment the greedy story at sentences opening with these words, fill metrics */
    static const char *const markers[] = {"She", "Lily", "One day", NULL};
    struct pd_steps_params sp = pd_steps_default_params();
    sp.split_markers = true;
    sp.markers = markers;
    struct pd_steps_list l;
    pd_steps_list_init(&l);
    assert_int_equal(pd_steps_segment(t, n, &sp, &l, NULL), PD_OK);
    assert_true(l.n >= 3);
    struct pd_step_span *spans = pd_calloc(l.n, sizeof *spans);
    assert_int_equal(pd_metrics_steps(t, n, l.items, l.n, spans, &err), PD_OK);
    for (size_t j = 0; j < l.n; j++) {
        double sum = 0;
        size_t cnt = 0;
        for (size_t i = spans[j].i_begin; i < spans[j].i_end; i++) {
            sum += -gold[i] / LN2;
            cnt++;
        }
        assert_true(cnt > 0);
        assert_float_equal(l.items[j].mean_surprisal, sum / (double)cnt, 2e-3);
        assert_float_equal(l.items[j].first_surprisal, -gold[spans[j].i_begin] / LN2, 2e-3);
        assert_true(l.items[j].mean_entropy > 0.0f);
        if (j + 1 < l.n) {
            assert_true(l.items[j].attn_received >= 0.0f);
        } else {
            assert_true(isnan(l.items[j].attn_received));
        }
    }
    free(spans);
    pd_steps_list_deinit(&l);
    pd_scorer_close(&sc);
    pd_score_tokens_free(t, n);
    free(gold);
    json_decref(g);
}

static void concat(const struct pd_token_rec *t, size_t n, struct pd_buf *b)
{
    b->len = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(pd_buf_append(b, t[i].text, t[i].text_len));
    }
    assert_true(pd_buf_append(b, "", 0));
}

/* Checks the texts of role r concatenate to want. */
static void expect_role_text(const struct pd_token_rec *t, size_t n, enum pd_role r,
                             const char *want)
{
    struct pd_buf b;
    pd_buf_init(&b);
    assert_true(pd_buf_append(&b, "", 0));
    for (size_t i = 0; i < n; i++) {
        if (t[i].role == r) {
            assert_true(pd_buf_append(&b, t[i].text, t[i].text_len));
        }
    }
    assert_string_equal(b.data, want);
    pd_buf_deinit(&b);
}

static void test_score_build(void **state)
{
    struct stories *s = *state;
    struct pd_chat_msg msgs[1] = {{PD_CHAT_ROLE_USER, "Tom has 3 cats."}};
    const char *think = "Let me count.\n\nSo 3.";
    struct pd_score_input in = {msgs, 1, true, think, strlen(think), "Three.", 6};
    struct pd_chat_format f;
    struct pd_token_rec *t = NULL;
    size_t n = 0;
    struct pd_buf b;
    pd_buf_init(&b);

    /* raw: the prompt is the message; ponder adds the think markers (INJECTED) */
    pd_chat_format_default(PD_CHAT_FAMILY_RAW, &f);
    assert_int_equal(pd_score_build(s->tok, &f, &in, &t, &n, NULL), PD_OK);
    concat(t, n, &b);
    assert_string_equal(b.data, "Tom has 3 cats.<think>\nLet me count.\n\nSo 3.\n</think>\n\n"
                                "Three.");
    assert_int_equal(t[0].id, pd_tok_bos(s->tok));
    assert_int_equal(t[0].text_len, 0);
    expect_role_text(t, n, PD_ROLE_PROMPT, "Tom has 3 cats.");
    expect_role_text(t, n, PD_ROLE_INJECTED, "<think>\n\n</think>");
    expect_role_text(t, n, PD_ROLE_THINK, think);
    expect_role_text(t, n, PD_ROLE_ANSWER, "\n\nThree.");
    /* the ids are exactly the tokenization of the whole text */
    int32_t *ids = NULL;
    size_t n_ids = 0;
    assert_int_equal(pd_tok_encode(s->tok, b.data, b.len, true, true, &ids, &n_ids, NULL), PD_OK);
    assert_int_equal(n_ids, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ids[i], t[i].id);
        assert_int_equal(t[i].pos, (int64_t)i);
        assert_true(t[i].flags & PD_TOKF_FORCED);
        assert_true(isnan(t[i].logprob));
    }
    free(ids);
    pd_score_tokens_free(t, n);

    /* deepseek-r1 (newer revision): the template opens the think block itself */
    pd_chat_format_default(PD_CHAT_FAMILY_DEEPSEEK_R1, &f);
    assert_int_equal(pd_score_build(s->tok, &f, &in, &t, &n, NULL), PD_OK);
    struct pd_buf prompt;
    pd_buf_init(&prompt);
    assert_int_equal(pd_chat_render(&f, msgs, 1, true, PD_CHAT_THINK_ON, &prompt, NULL), PD_OK);
    expect_role_text(t, n, PD_ROLE_PROMPT, prompt.data);
    expect_role_text(t, n, PD_ROLE_INJECTED, "\n</think>");
    expect_role_text(t, n, PD_ROLE_THINK, think);
    pd_score_tokens_free(t, n);

    /* no thinking on a thinking family: the template's closed empty block, answer only */
    struct pd_score_input in2 = {msgs, 1, false, NULL, 0, "Three.", 6};
    prompt.len = 0;
    assert_int_equal(pd_chat_render(&f, msgs, 1, true, PD_CHAT_THINK_OFF, &prompt, NULL), PD_OK);
    assert_int_equal(pd_score_build(s->tok, &f, &in2, &t, &n, NULL), PD_OK);
    expect_role_text(t, n, PD_ROLE_PROMPT, prompt.data);
    expect_role_text(t, n, PD_ROLE_ANSWER, "Three.");
    expect_role_text(t, n, PD_ROLE_THINK, "");
    pd_score_tokens_free(t, n);

    /* qwen3: thinking ON adds nothing, so ponder adds the opener */
    pd_chat_format_default(PD_CHAT_FAMILY_QWEN3, &f);
    assert_int_equal(pd_score_build(s->tok, &f, &in, &t, &n, NULL), PD_OK);
    expect_role_text(t, n, PD_ROLE_INJECTED, "<think>\n\n</think>");
    pd_score_tokens_free(t, n);

    /* bad input */
    struct pd_err err;
    struct pd_score_input bad = {msgs, 1, true, "\xff\xfe", 2, "x", 1};
    assert_int_equal(pd_score_build(s->tok, &f, &bad, &t, &n, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "thinking text is not valid UTF-8"));
    assert_null(t);
    assert_int_equal(n, 0);
    struct pd_score_input bad2 = {msgs, 1, true, "ok", 2, "\xc3", 1};
    assert_int_equal(pd_score_build(s->tok, &f, &bad2, &t, &n, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "answer text is not valid UTF-8"));
    struct pd_chat_msg badmsg[1] = {{PD_CHAT_ROLE_USER, "\x80"}};
    struct pd_score_input bad3 = {badmsg, 1, true, "ok", 2, "x", 1};
    assert_int_equal(pd_score_build(s->tok, &f, &bad3, &t, &n, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "message 0"));
    pd_buf_deinit(&prompt);
    pd_buf_deinit(&b);
}

/* A built, scored trace with steps, shared by the answer tests. */
struct built {
    struct pd_token_rec *t;
    size_t n;
    struct pd_steps_list steps;
};

static void build_scored(const struct stories *s, struct pd_scorer *sc, struct built *out)
{
    struct pd_chat_msg msgs[1] = {{PD_CHAT_ROLE_USER, "Lily has 3 bags with 4 candies each."}};
    const char *think = "First, 3 bags of 4 is 12 candies.\n\nWait, let me check: 4 + 4 + 4 "
                        "= 12.\n\nShe was happy and she played.\n\nSo the answer is 12.";
    const char *ans = "Lily has 12 candies.";
    struct pd_score_input in = {msgs, 1, true, think, strlen(think), ans, strlen(ans)};
    struct pd_chat_format f;
    pd_chat_format_default(PD_CHAT_FAMILY_RAW, &f);
    assert_int_equal(pd_score_build(s->tok, &f, &in, &out->t, &out->n, NULL), PD_OK);
    assert_int_equal(pd_score_trace(sc, out->t, out->n, NULL), PD_OK);
    pd_steps_list_init(&out->steps);
    assert_int_equal(pd_steps_segment(out->t, out->n, NULL, &out->steps, NULL), PD_OK);
    assert_int_equal(out->steps.n, 4);
}

static void built_free(struct built *b)
{
    pd_score_tokens_free(b->t, b->n);
    pd_steps_list_deinit(&b->steps);
}

/* Answer logprob of the kept tokens, recomputed from scratch with a fresh scorer. */
static double answer_from_scratch(const struct stories *s, const struct built *b,
                                  const uint8_t *drop)
{
    struct pd_token_rec *k = pd_calloc(b->n, sizeof *k);
    size_t m = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (!drop || !drop[i]) {
            k[m] = b->t[i];
            k[m].text = NULL;
            k[m].attn = NULL;
            k[m].pos = (int64_t)m;
            m++;
        }
    }
    struct pd_scorer *sc = open_scorer(s, 0);
    assert_int_equal(pd_score_trace(sc, k, m, NULL), PD_OK);
    double sum = 0;
    for (size_t i = 1; i < m; i++) {
        if (k[i].role == PD_ROLE_ANSWER) {
            sum += k[i].logprob;
        }
    }
    pd_scorer_close(&sc);
    pd_score_tokens_free(k, m);
    return sum;
}

static void test_score_answer(void **state)
{
    struct stories *s = *state;
    struct pd_scorer *sc = open_scorer(s, 0);
    struct built b;
    build_scored(s, sc, &b);
    double from_trace = 0;
    size_t n_ans = 0, first_ans = b.n;
    for (size_t i = 0; i < b.n; i++) {
        if (b.t[i].role == PD_ROLE_ANSWER) {
            from_trace += b.t[i].logprob;
            n_ans++;
            first_ans = first_ans < i ? first_ans : i;
        }
    }
    struct pd_score_answer *a = calloc(1, sizeof *a);
    assert_int_equal(pd_score_answer(sc, b.t, b.n, NULL, 8, a, NULL), PD_OK);
    assert_int_equal(a->n_answer, n_ans);
    assert_int_equal(a->i_answer, first_ans);
    assert_float_equal(a->logprob, from_trace, 1e-3);
    /* greedy from the reasoning, recomputed with a plain context */
    struct pd_ctx_params cp = pd_ctx_default_params();
    cp.kv_type = PD_KV_F32;
    cp.n_threads = 2;
    struct pd_ctx *c = NULL;
    assert_int_equal(pd_ctx_open(s->m, &cp, &c, NULL), PD_OK);
    int32_t *ids = pd_calloc(b.n, sizeof *ids);
    for (size_t i = 0; i < b.n; i++) {
        ids[i] = b.t[i].id;
    }
    assert_int_equal(pd_ctx_eval(c, ids, first_ans, NULL, NULL, NULL), PD_OK);
    assert_int_equal(a->n_greedy, 8);
    for (size_t g = 0; g < 8; g++) {
        int32_t next = pd_argmax(c->logits, s->m->hp.n_vocab);
        assert_int_equal(a->greedy[g], next);
        assert_int_equal(pd_ctx_eval(c, &next, 1, NULL, NULL, NULL), PD_OK);
    }
    pd_ctx_close(&c);
    free(ids);

    /* leave out step 2 (the off-topic one), then step 1: prefix reuse must give the same
     * numbers as scoring the shortened sequence from scratch */
    uint8_t *drop = pd_calloc(b.n, 1);
    for (size_t j = 2; j >= 1; j--) {
        memset(drop, 0, b.n);
        for (size_t i = 0; i < b.n; i++) {
            drop[i] = b.t[i].pos >= b.steps.items[j].pos_begin &&
                      b.t[i].pos < b.steps.items[j].pos_end;
        }
        assert_int_equal(pd_score_answer(sc, b.t, b.n, drop, 4, a, NULL), PD_OK);
        assert_float_equal(a->logprob, answer_from_scratch(s, &b, drop), 1e-3);
        assert_int_equal(a->n_answer, n_ans);
    }
    /* sensitivity = full - without the step */
    double sens[4], full;
    assert_int_equal(pd_score_sensitivity(sc, b.t, b.n, b.steps.items, 4, sens, &full, NULL),
                     PD_OK);
    assert_float_equal(full, from_trace, 1e-3);
    assert_float_equal(sens[1], full - a->logprob, 1e-3); /* a: step 1 left out, above */
    for (size_t j = 0; j < 4; j++) {
        assert_true(isfinite(sens[j]));
    }
    free(drop);
    free(a);
    built_free(&b);
    pd_scorer_close(&sc);
}

static void test_score_errors(void **state)
{
    struct stories *s = *state;
    struct pd_scorer *sc = open_scorer(s, 0);
    struct built b;
    build_scored(s, sc, &b);
    struct pd_err err;
    struct pd_score_answer *a = calloc(1, sizeof *a);
    /* a token without an id */
    int32_t saved = b.t[7].id;
    b.t[7].id = -1;
    assert_int_equal(pd_score_trace(sc, b.t, b.n, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "position 7 has no id"));
    assert_int_equal(pd_score_answer(sc, b.t, b.n, NULL, 0, a, &err), PD_EINVAL);
    b.t[7].id = (int32_t)s->m->hp.n_vocab;
    assert_int_equal(pd_score_trace(sc, b.t, b.n, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "out-of-vocabulary"));
    b.t[7].id = saved;
    /* too many greedy tokens; no answer left */
    assert_int_equal(pd_score_answer(sc, b.t, b.n, NULL, PD_SCORE_GREEDY_MAX + 1, a, &err),
                     PD_EINVAL);
    uint8_t *drop = pd_calloc(b.n, 1);
    for (size_t i = 0; i < b.n; i++) {
        drop[i] = b.t[i].role == PD_ROLE_ANSWER;
    }
    assert_int_equal(pd_score_answer(sc, b.t, b.n, drop, 0, a, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "no answer tokens"));
    free(drop);
    /* the scorer still works after errors */
    assert_int_equal(pd_score_answer(sc, b.t, b.n, NULL, 2, a, NULL), PD_OK);
    pd_scorer_close(&sc);
    /* a context too small for the trace */
    sc = open_scorer(s, 32);
    assert_int_equal(pd_scorer_n_ctx(sc), 32);
    assert_int_equal(pd_score_trace(sc, b.t, b.n, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "does not fit the context (32 slots)"));
    assert_int_equal(pd_score_answer(sc, b.t, b.n, NULL, 0, a, &err), PD_EINVAL);
    pd_scorer_close(&sc);
    /* bad params */
    struct pd_score_params p = pd_score_default_params();
    p.topk = PD_TOPK_MAX + 1;
    assert_int_equal(pd_scorer_open(s->m, s->tok, &p, &sc, &err), PD_EINVAL);
    assert_null(sc);
    p = pd_score_default_params();
    p.attn_top_n = 0;
    assert_int_equal(pd_scorer_open(s->m, s->tok, &p, &sc, &err), PD_EINVAL);
    p.capture_attn = false; /* top_n does not matter without capture */
    assert_int_equal(pd_scorer_open(s->m, s->tok, &p, &sc, &err), PD_OK);
    assert_int_equal(pd_score_trace(sc, b.t, b.n, NULL), PD_OK);
    assert_null(b.t[3].attn);
    pd_scorer_close(&sc);
    pd_scorer_close(&sc); /* NULL-safe */
    free(a);
    built_free(&b);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "stories") == 0) {
        char *p = model_path();
        if (!p) {
            fprintf(stderr, "SKIP: stories260K.gguf not found (set PONDER_TEST_MODELS or put "
                            "it in ../shared/models)\n");
            return 77;
        }
        free(p);
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_golden_metrics),
            cmocka_unit_test(test_score_build),
            cmocka_unit_test(test_score_answer),
            cmocka_unit_test(test_score_errors),
        };
        return cmocka_run_group_tests(tests, stories_setup, stories_teardown);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_metrics),
        cmocka_unit_test(test_step_metrics_gaps),
        cmocka_unit_test(test_attn_received),
        cmocka_unit_test(test_attn_received_step_mass),
        cmocka_unit_test(test_attn_received_sparse_steps),
        cmocka_unit_test(test_metrics_acc_pieces),
        cmocka_unit_test(test_metrics_corrupt),
        cmocka_unit_test(test_trace_stats),
        cmocka_unit_test(test_segment_then_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
