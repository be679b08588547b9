/* test_kvpolicy.c - analysis/kvpolicy: spec parsing/formatting (valid and corrupt
 * specs), the engine-facing vtable contract, and each policy on scripted attention traces
 * with eviction sequences worked out by hand (comments show the arithmetic), plus long
 * randomised runs compared against simple reference re-implementations kept in this file
 * (position-indexed state, one-at-a-time minimum search) instead of the policy's
 * slot-indexed arrays and sort-based selection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policies.h"
#include "kvpolicy.h"

#define NMAX 512
#define HMAX 4

/* ---- driver: one engine-side view of a policy ----------------------------------------- */

/* Attention source: weight of query position q (head h) on key position k. */
typedef double (*attn_fn)(void *ctx, int h, int64_t q, int64_t k);

struct drv {
    struct pd_kv_policy *p;
    int32_t n_layer;
    int64_t n[2];          /* slots per layer */
    int64_t pos[2][NMAX];  /* slot positions per layer */
    float rows[HMAX * NMAX * 8];
    uint8_t mask[NMAX];
};

static void drv_open(struct drv *d, const char *spec, int32_t n_layer)
{
    memset(d, 0, sizeof(*d));
    struct pd_err err;
    pd_err_clear(&err);
    enum pd_status st = pd_policy_create_str(spec, n_layer, 0, &d->p, &err);
    if (st != PD_OK) {
        fail_msg("create %s: %s", spec, err.msg);
    }
    d->n_layer = n_layer;
}

static void drv_close(struct drv *d)
{
    pd_kv_policy_close(&d->p);
    assert_null(d->p);
}

static void drv_append(struct drv *d, int32_t l, int64_t pos)
{
    assert_true(d->n[l] < NMAX);
    d->pos[l][d->n[l]++] = pos;
}

/* Decode observe of query position q on layer l (the engine's row over the view). */
static void drv_observe(struct drv *d, int32_t l, attn_fn fn, void *ctx, int n_head, int64_t q)
{
    if (d->p->ops->observe == NULL) {
        return;
    }
    for (int h = 0; h < n_head; h++) {
        for (int64_t j = 0; j < d->n[l]; j++) {
            d->rows[h * d->n[l] + j] = (float)fn(ctx, h, q, d->pos[l][j]);
        }
    }
    struct pd_err err;
    enum pd_status st = d->p->ops->observe(d->p, l, d->rows, n_head, d->n[l], d->pos[l], q,
                                           &err);
    if (st != PD_OK) {
        fail_msg("observe: %s", err.msg);
    }
}

/* Prefill rows for queries [q0, q1) over the current view (causal: k > q gets 0). */
static void drv_prefill(struct drv *d, int32_t l, attn_fn fn, void *ctx, int n_head,
                        int64_t q0, int64_t q1, int64_t prefill_end)
{
    if (d->p->ops->observe_prefill == NULL) {
        return;
    }
    int64_t nq = q1 - q0;
    int64_t n = d->n[l];
    assert_true((size_t)(n_head * nq * n) <= sizeof(d->rows) / sizeof(d->rows[0]));
    for (int h = 0; h < n_head; h++) {
        for (int64_t q = 0; q < nq; q++) {
            for (int64_t j = 0; j < n; j++) {
                int64_t k = d->pos[l][j];
                d->rows[(h * nq + q) * n + j] = k > q0 + q ? 0.0f : (float)fn(ctx, h, q0 + q, k);
            }
        }
    }
    struct pd_err err;
    enum pd_status st = d->p->ops->observe_prefill(d->p, l, d->rows, n_head, (int32_t)nq, n,
                                                   d->pos[l], q0, prefill_end, &err);
    if (st != PD_OK) {
        fail_msg("observe_prefill: %s", err.msg);
    }
}

/* select + on_evicted + compaction; writes evicted positions (ascending) to ev and returns
 * their count. */
static int64_t drv_select(struct drv *d, int32_t l, int64_t cur_pos, int64_t *ev)
{
    struct pd_err err;
    int64_t budget = pd_kv_budget_slots(&d->p->budget, cur_pos + 1);
    int64_t n_evict = -1;
    memset(d->mask, 0xAB, sizeof(d->mask));
    enum pd_status st = d->p->ops->select(d->p, l, d->n[l], d->pos[l], cur_pos, budget,
                                          d->mask, &n_evict, &err);
    if (st != PD_OK) {
        fail_msg("select: %s", err.msg);
    }
    int64_t count = 0;
    for (int64_t j = 0; j < d->n[l]; j++) {
        assert_true(d->mask[j] == 0 || d->mask[j] == 1);
        count += d->mask[j];
    }
    assert_int_equal(count, n_evict);
    if (n_evict > 0) {
        st = d->p->ops->on_evicted(d->p, l, d->n[l], d->mask, &err);
        if (st != PD_OK) {
            fail_msg("on_evicted: %s", err.msg);
        }
    }
    int64_t w = 0;
    int64_t k = 0;
    for (int64_t j = 0; j < d->n[l]; j++) {
        if (d->mask[j]) {
            if (ev != NULL) {
                ev[k] = d->pos[l][j];
            }
            k++;
        } else {
            d->pos[l][w++] = d->pos[l][j];
        }
    }
    d->n[l] = w;
    return k;
}

/* Attention given as a table: tab[q][k] for one head (and a second head in tab2). */
struct table_attn {
    const double (*tab)[8];
    const double (*tab2)[8];
};

static double table_fn(void *ctx, int h, int64_t q, int64_t k)
{
    const struct table_attn *t = ctx;
    const double (*tab)[8] = h == 0 ? t->tab : t->tab2;
    return tab[q][k];
}

static bool has_pos(const struct drv *d, int32_t l, int64_t pos)
{
    for (int64_t j = 0; j < d->n[l]; j++) {
        if (d->pos[l][j] == pos) {
            return true;
        }
    }
    return false;
}

/* ---- spec parsing --------------------------------------------------------------------- */

static bool spec_equal(const struct pd_policy_spec *a, const struct pd_policy_spec *b)
{
    return a->kind == b->kind && a->mode == b->mode && a->has_budget == b->has_budget &&
           a->budget.is_ratio == b->budget.is_ratio && a->budget.slots == b->budget.slots &&
           a->budget.ratio == b->budget.ratio && a->n_sink == b->n_sink &&
           a->n_recent == b->n_recent && a->recent_ratio == b->recent_ratio &&
           a->window == b->window && a->kernel == b->kernel && a->pool == b->pool &&
           a->agg == b->agg && a->alpha == b->alpha;
}

static void test_parse_valid_and_roundtrip(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        const char *canon;
    } cases[] = {
        {"full", "full"},
        {"window:64", "window:64"},
        {"window:64,sinks=0,shadow", "window:64,shadow,sinks=0"},
        {"h2o:0.5", "h2o:0.5"},
        {"h2o:50%", "h2o:0.5"},
        {"h2o:1.0", "h2o:1.0"},
        {"h2o:0.1", "h2o:0.1"},
        {"h2o:128,recent=16,agg=max", "h2o:128,recent=16,agg=max"},
        {"h2o:128,recent_ratio=0.25", "h2o:128,recent_ratio=0.25"},
        {"snapkv:128,w=32,k=5", "snapkv:128"},
        {"snapkv:128,w=16,k=7,pool=max", "snapkv:128,w=16,k=7,pool=max"},
        {"tova:64", "tova:64"},
        {"tova:64,enforce", "tova:64"},
        {"lazy:128,w=32,alpha=1e-4", "lazy:128"},
        {"lazy:300,w=100,alpha=0.001,sinks=4,shadow", "lazy:300,shadow,sinks=4,w=100,alpha=0.001"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pd_policy_spec s;
        struct pd_policy_spec s2;
        struct pd_err err;
        char buf[256];
        pd_err_clear(&err);
        if (pd_policy_parse(cases[i].spec, &s, &err) != PD_OK) {
            fail_msg("%s: %s", cases[i].spec, err.msg);
        }
        assert_int_equal(pd_policy_format(&s, buf, sizeof(buf), &err), PD_OK);
        assert_string_equal(buf, cases[i].canon);
        assert_int_equal(pd_policy_parse(buf, &s2, &err), PD_OK);
        assert_true(spec_equal(&s, &s2));
    }
    /* Field values of a few specs. */
    struct pd_policy_spec s;
    assert_int_equal(pd_policy_parse("snapkv:128,w=32,k=5", &s, NULL), PD_OK);
    assert_int_equal(s.kind, PD_POLICY_SNAPKV);
    assert_false(s.budget.is_ratio);
    assert_int_equal(s.budget.slots, 128);
    assert_int_equal(s.window, 32);
    assert_int_equal(s.kernel, 5);
    assert_int_equal(s.mode, PD_KV_MODE_ENFORCE);
    assert_int_equal(pd_policy_parse("h2o:0.5,shadow", &s, NULL), PD_OK);
    assert_true(s.budget.is_ratio);
    assert_true(s.budget.ratio == 0.5);
    assert_int_equal(s.mode, PD_KV_MODE_SHADOW);
    assert_int_equal(pd_policy_parse("window:64", &s, NULL), PD_OK);
    assert_int_equal(s.n_sink, 4);
    assert_int_equal(pd_policy_parse("lazy:128,alpha=1e-3", &s, NULL), PD_OK);
    assert_true(s.alpha == 1e-3);
    assert_string_equal(pd_policy_kind_name(PD_POLICY_TOVA), "tova");
    assert_null(pd_policy_kind_name(PD_POLICY_KIND_COUNT));
    assert_int_equal(pd_policy_kind_parse("lazy"), PD_POLICY_LAZY);
    assert_int_equal(pd_policy_kind_parse("LAZY"), PD_POLICY_KIND_COUNT);
    /* Too small a buffer is reported. */
    char tiny[4];
    assert_int_equal(pd_policy_parse("window:64", &s, NULL), PD_OK);
    assert_int_equal(pd_policy_format(&s, tiny, sizeof(tiny), NULL), PD_EINVAL);
    assert_string_equal(tiny, "win");
}

static void test_parse_corrupt_specs(void **state)
{
    (void)state;
    static char long_spec[400];
    memset(long_spec, 'a', sizeof(long_spec) - 1);
    long_spec[sizeof(long_spec) - 1] = '\0';
    const struct {
        const char *spec;
        const char *needle; /* must appear in the message */
    } cases[] = {
        {"", "empty spec"},
        {"foo:1", "unknown policy \"foo\""},
        {"Window:64", "unknown policy \"Window\""},
        {"window", "missing budget"},
        {"h2o,shadow", "missing budget"},
        {"full:5", "full takes no budget"},
        {"window:", "empty budget"},
        {"window:0", "budget \"0\""},
        {"window:abc", "budget \"abc\""},
        {"window:-5", "budget \"-5\""},
        {"window:99999999999999999999", "budget \"99999999999999999999\""},
        {"h2o:1.5", "budget \"1.5\" is not a ratio"},
        {"h2o:0.0", "budget \"0.0\" is not a ratio"},
        {"h2o:0.5.5", "budget \"0.5.5\""},
        {"h2o:150%", "budget \"150%\" is not a percentage"},
        {"h2o:inf%", "budget \"inf%\""},
        {"window:64,foo=1", "unknown key \"foo\" for window (allowed: sinks)"},
        {"window:64,w=3", "unknown key \"w\" for window"},
        {"full,sinks=2", "unknown key \"sinks\" for full (allowed: none)"},
        {"snapkv:128,k=4", "bad value \"4\" for k"},
        {"snapkv:128,k=", "bad value \"\" for k"},
        {"snapkv:128,k=5,k=7", "key \"k\" given twice"},
        {"snapkv:128,pool=median", "bad value \"median\" for pool"},
        {"lazy:128,alpha=2", "bad value \"2\" for alpha"},
        {"lazy:128,alpha=nan", "bad value \"nan\" for alpha"},
        {"lazy:128,w=0", "bad value \"0\" for w"},
        {"h2o:64,recent=0", "bad value \"0\" for recent"},
        {"h2o:64,recent=8,recent_ratio=0.3", "mutually exclusive"},
        {"h2o:64,recent_ratio=1", "bad value \"1\" for recent_ratio"},
        {"tova:64,agg=median", "bad value \"median\" for agg"},
        {"window:64,,shadow", "empty item"},
        {"window:64,", "empty item"},
        {"window:64,shadow,shadow", "mode given twice"},
        {"window:64,shadow,enforce", "mode given twice"},
        {"window:64,bogus", "item \"bogus\" is not key=value"},
        {"window:3", "budget 3 is below the 5 protected slots"},
        {"snapkv:16,w=32", "budget 16 is below the 32 protected"},
        {"lazy:40,w=32,sinks=10", "budget 40 is below the 42 protected"},
        {"h2o:10,recent=8,sinks=4", "budget 10 is below the 12 protected"},
        {long_spec, "longer than 256"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pd_policy_spec s;
        struct pd_err err;
        pd_err_clear(&err);
        enum pd_status st = pd_policy_parse(cases[i].spec, &s, &err);
        if (st != PD_EINVAL || strstr(err.msg, cases[i].needle) == NULL) {
            fail_msg("spec \"%.40s\": status %d, message \"%s\" lacks \"%s\"", cases[i].spec,
                     (int)st, err.msg, cases[i].needle);
        }
        struct pd_kv_policy *p = (struct pd_kv_policy *)&s; /* poison: must become NULL */
        assert_int_equal(pd_policy_create_str(cases[i].spec, 2, 0, &p, NULL), PD_EINVAL);
        assert_null(p);
    }
    assert_int_equal(pd_policy_parse(NULL, NULL, NULL), PD_EINVAL);
}

static void test_validate_and_create_args(void **state)
{
    (void)state;
    struct pd_policy_spec s;
    struct pd_kv_policy *p = NULL;
    struct pd_err err;
    pd_policy_spec_defaults(PD_POLICY_H2O, &s);
    assert_int_equal(pd_policy_validate(&s, &err), PD_EINVAL); /* no budget */
    s.has_budget = true;
    s.budget.slots = 64;
    assert_int_equal(pd_policy_validate(&s, &err), PD_OK);
    s.kernel = 4;
    assert_int_equal(pd_policy_validate(&s, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "k=4"));
    s.kernel = 5;
    s.kind = (enum pd_policy_kind)99;
    assert_int_equal(pd_policy_validate(&s, &err), PD_EINVAL);
    s.kind = PD_POLICY_H2O;
    assert_int_equal(pd_policy_create(&s, 0, 0, &p, &err), PD_EINVAL);
    assert_int_equal(pd_policy_create(&s, 5000, 0, &p, &err), PD_EINVAL);
    assert_int_equal(pd_policy_create(&s, 4, -1, &p, &err), PD_EINVAL);
    assert_null(p);
    assert_int_equal(pd_policy_create(&s, 4, 1024, &p, &err), PD_OK); /* pre-sized */
    assert_string_equal(p->ops->name, "h2o");
    assert_int_equal(p->n_layer, 4);
    assert_true(p->needs_decode_attn);
    assert_true(p->n_prefill_rows == PD_KV_ROWS_ALL);
    assert_int_equal(p->n_recent, 32);
    pd_kv_policy_close(&p);
    assert_null(p);
    pd_kv_policy_close(&p); /* NULL is fine */
    pd_kv_policy_close(NULL);
}

static void test_budget_slots(void **state)
{
    (void)state;
    struct pd_kv_budget b = {.is_ratio = false, .slots = 64};
    assert_int_equal(pd_kv_budget_slots(&b, 1000), 64);
    b = (struct pd_kv_budget){.is_ratio = true, .ratio = 0.5};
    assert_int_equal(pd_kv_budget_slots(&b, 10), 5);
    assert_int_equal(pd_kv_budget_slots(&b, 11), 6); /* ceil */
    assert_int_equal(pd_kv_budget_slots(&b, 0), 1);  /* at least one */
    b.ratio = 1.0;
    assert_int_equal(pd_kv_budget_slots(&b, 7), 7);
}

/* ---- vtable contract ------------------------------------------------------------------ */

static void test_flags_per_policy(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        bool decode_attn;
        int64_t prefill_rows;
        int64_t n_sink;
        int64_t n_recent;
        enum pd_kv_mode mode;
    } cases[] = {
        {"full", false, 0, 0, 0, PD_KV_MODE_ENFORCE},
        {"window:64", false, 0, 4, 60, PD_KV_MODE_ENFORCE},
        {"h2o:64,recent=8,shadow", true, PD_KV_ROWS_ALL, 0, 8, PD_KV_MODE_SHADOW},
        {"snapkv:128,w=16", false, 16, 0, 16, PD_KV_MODE_ENFORCE},
        {"tova:64,sinks=2", true, 1, 2, 1, PD_KV_MODE_ENFORCE},
        {"lazy:128,w=32", true, 0, 0, 32, PD_KV_MODE_ENFORCE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pd_kv_policy *p = NULL;
        assert_int_equal(pd_policy_create_str(cases[i].spec, 3, 0, &p, NULL), PD_OK);
        assert_int_equal(p->needs_decode_attn, cases[i].decode_attn);
        assert_int_equal(p->needs_decode_attn, p->ops->observe != NULL);
        assert_true(p->n_prefill_rows == cases[i].prefill_rows);
        assert_int_equal(p->n_prefill_rows != 0, p->ops->observe_prefill != NULL);
        assert_int_equal(p->n_sink, cases[i].n_sink);
        assert_int_equal(p->n_recent, cases[i].n_recent);
        assert_int_equal(p->mode, cases[i].mode);
        assert_non_null(p->ops->select);
        assert_non_null(p->ops->on_evicted);
        pd_kv_policy_close(&p);
    }
}

static void test_bad_engine_calls(void **state)
{
    (void)state;
    struct pd_kv_policy *p = NULL;
    struct pd_err err;
    assert_int_equal(pd_policy_create_str("h2o:4,recent=1", 2, 0, &p, NULL), PD_OK);
    float row[4] = {0.25f, 0.25f, 0.25f, 0.25f};
    int64_t pos[4] = {0, 1, 2, 3};
    int64_t bad_pos[4] = {0, 2, 2, 3};
    uint8_t mask[4];
    int64_t n_evict;
    assert_int_equal(p->ops->observe(p, 2, row, 1, 4, pos, 3, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "layer 2"));
    assert_int_equal(p->ops->observe(p, -1, row, 1, 4, pos, 3, &err), PD_EINVAL);
    assert_int_equal(p->ops->observe(p, 0, NULL, 1, 4, pos, 3, &err), PD_EINVAL);
    assert_int_equal(p->ops->observe(p, 0, row, 0, 4, pos, 3, &err), PD_EINVAL);
    assert_int_equal(p->ops->observe(p, 0, row, 1, 0, pos, 3, &err), PD_EINVAL);
    assert_int_equal(p->ops->observe(p, 0, row, 1, 4, bad_pos, 3, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "slot_pos[2]"));
    row[1] = NAN;
    assert_int_equal(p->ops->observe(p, 0, row, 1, 4, pos, 3, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "element 1"));
    row[1] = -0.5f;
    assert_int_equal(p->ops->observe(p, 0, row, 1, 4, pos, 3, &err), PD_EINVAL);
    row[1] = 0.25f;
    assert_int_equal(p->ops->observe(p, 0, row, 1, 4, pos, 3, &err), PD_OK);
    /* Fewer slots than tracked without on_evicted: an engine bug, reported. */
    assert_int_equal(p->ops->observe(p, 0, row, 1, 3, pos, 3, &err), PD_EINVAL);
    assert_non_null(strstr(err.msg, "on_evicted"));
    assert_int_equal(p->ops->select(p, 0, 3, pos, 3, 4, mask, &n_evict, &err), PD_EINVAL);
    assert_int_equal(p->ops->select(p, 0, 4, pos, 3, 0, mask, &n_evict, &err), PD_EINVAL);
    assert_int_equal(p->ops->select(p, 0, 4, pos, 3, 4, NULL, &n_evict, &err), PD_EINVAL);
    assert_int_equal(p->ops->select(p, 5, 4, pos, 3, 4, mask, &n_evict, &err), PD_EINVAL);
    assert_int_equal(p->ops->on_evicted(p, 0, 2, mask, &err), PD_EINVAL);
    assert_int_equal(p->ops->select(p, 0, 4, pos, 3, 4, mask, &n_evict, &err), PD_OK);
    assert_int_equal(n_evict, 0);
    pd_kv_policy_close(&p);
}

/* ---- window --------------------------------------------------------------------------- */

static void test_window_closed_form(void **state)
{
    (void)state;
    struct drv d;
    drv_open(&d, "window:64", 1); /* sinks 4, recent 60 */
    assert_null(d.p->ops->observe);
    for (int64_t t = 0; t < 200; t++) {
        drv_append(&d, 0, t);
        int64_t ev[NMAX];
        int64_t k = drv_select(&d, 0, t, ev);
        int64_t n = t + 1;
        if (n <= 64) {
            assert_int_equal(k, 0);
            assert_int_equal(d.n[0], n);
        } else {
            assert_int_equal(k, 1);
            assert_int_equal(ev[0], n - 61); /* the slot that just left the recent window */
            assert_int_equal(d.n[0], 64);
            for (int64_t j = 0; j < 4; j++) {
                assert_int_equal(d.pos[0][j], j);
            }
            for (int64_t j = 0; j < 60; j++) {
                assert_int_equal(d.pos[0][4 + j], n - 60 + j);
            }
        }
    }
    drv_close(&d);
}

static void test_window_prompt_over_budget_and_ratio(void **state)
{
    (void)state;
    struct drv d;
    /* A 20-token prompt against window:8,sinks=2: one select after prefill drops 12. */
    drv_open(&d, "window:8,sinks=2", 1);
    for (int64_t t = 0; t < 20; t++) {
        drv_append(&d, 0, t);
    }
    int64_t ev[NMAX];
    assert_int_equal(drv_select(&d, 0, 19, ev), 12);
    for (int64_t i = 0; i < 12; i++) {
        assert_int_equal(ev[i], 2 + i);
    }
    static const int64_t kept[] = {0, 1, 14, 15, 16, 17, 18, 19};
    assert_memory_equal(d.pos[0], kept, sizeof(kept));
    drv_close(&d);
    /* Ratio budget: window:0.5 keeps ceil(n/2) slots: 4 sinks + the newest. */
    drv_open(&d, "window:0.5", 1);
    for (int64_t t = 0; t < 40; t++) {
        drv_append(&d, 0, t);
        int64_t n_before = d.n[0];
        drv_select(&d, 0, t, NULL);
        int64_t b = (t + 2) / 2; /* ceil((t + 1) / 2) */
        int64_t cap = b > 5 ? b : 5; /* never below the 4 sinks + the newest slot */
        assert_int_equal(d.n[0], n_before < cap ? n_before : cap);
    }
    assert_int_equal(d.pos[0][3], 3);
    assert_int_equal(d.pos[0][4], 40 - 16);
    drv_close(&d);
}

static void test_full_keeps_everything(void **state)
{
    (void)state;
    struct drv d;
    drv_open(&d, "full", 2);
    for (int64_t t = 0; t < 300; t++) {
        for (int32_t l = 0; l < 2; l++) {
            drv_append(&d, l, t);
            assert_int_equal(drv_select(&d, l, t, NULL), 0);
        }
    }
    assert_int_equal(d.n[0], 300);
    assert_int_equal(d.n[1], 300);
    drv_close(&d);
}

/* ---- h2o ------------------------------------------------------------------------------ */

/* Scripted rows (one head), budget 4, recent 1 => 3 heavy hitters.
 * Prefill rows q0..q3 over positions 0..3; cumulative after prefill: [2.8, 0.3, 0.7, 0.2].
 *   q4 row [.3 .0 .2 .4 | .1] -> cum 0:3.1 1:0.3 2:0.9 3:0.6 (4 recent) -> evict 1
 *   q5 over [0 2 3 4 5] rows [.2 .1 .1 .55 | .1] -> 0:3.3 2:1.0 3:0.7 4:0.65 -> evict 4
 *   q6 over [0 2 3 5 6] rows [.1 .1 .6 .1 | .1] -> 0:3.4 2:1.1 3:1.3 5:0.2 -> evict 5
 *   q7 over [0 2 3 6 7] rows [.1 .0 .0 .8 | .1] -> 0:3.5 2:1.1 3:1.3 6:0.9 -> evict 6 */
static const double k_h2o_tab[8][8] = {
    {1.0},
    {0.9, 0.1},
    {0.5, 0.1, 0.4},
    {0.4, 0.1, 0.3, 0.2},
    {0.3, 0.0, 0.2, 0.4, 0.1},
    {0.2, 0.0, 0.1, 0.1, 0.55, 0.1},
    {0.1, 0.0, 0.1, 0.6, 0.0, 0.1, 0.1},
    {0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.8, 0.1},
};

static void test_h2o_scripted(void **state)
{
    (void)state;
    struct table_attn ta = {k_h2o_tab, k_h2o_tab};
    static const int64_t expect[4] = {1, 4, 5, 6};
    /* Prefill in one block and in two blocks must give the same result. */
    for (int split = 0; split < 2; split++) {
        struct drv d;
        drv_open(&d, "h2o:4,recent=1", 1);
        for (int64_t t = 0; t < 4; t++) {
            drv_append(&d, 0, t);
        }
        if (split) {
            drv_prefill(&d, 0, table_fn, &ta, 1, 0, 2, 4);
            drv_prefill(&d, 0, table_fn, &ta, 1, 2, 4, 4);
        } else {
            drv_prefill(&d, 0, table_fn, &ta, 1, 0, 4, 4);
        }
        assert_int_equal(drv_select(&d, 0, 3, NULL), 0);
        for (int64_t t = 4; t < 8; t++) {
            int64_t ev[NMAX];
            drv_append(&d, 0, t);
            drv_observe(&d, 0, table_fn, &ta, 1, t);
            assert_int_equal(drv_select(&d, 0, t, ev), 1);
            assert_int_equal(ev[0], expect[t - 4]);
        }
        static const int64_t kept[] = {0, 2, 3, 7};
        assert_memory_equal(d.pos[0], kept, sizeof(kept));
        drv_close(&d);
    }
}

/* Two heads: head 0 = k_h2o_tab, head 1 puts all weight on the newest key (1.0 on the
 * diagonal). Per-step aggregates are accumulated.
 * mean: cum = (head-0 sums + 1)/2 for every key seen as newest:
 *   q4: 0:2.05 1:0.65 2:0.95 3:0.8 -> evict 1;  q5: 0:2.15 2:1.0 3:0.85 4:0.825 -> evict 4;
 *   q6: 2:1.05 3:1.15 5:0.6 -> evict 5;  q7: 2:1.05 3:1.15 6:0.95 -> evict 6.
 * max: prefill gives 0:2.8 1:1.2 2:1.3 3:1.0 (the diagonal 1.0 beats head 0's entry);
 *   q4 adds max(h0, 0): 0:3.1 1:1.2 2:1.5 3:1.4 -> evict 1;
 *   q5: 0:3.3 2:1.6 3:1.5 4:1.55 -> evict 3 (mean evicted 4 here);
 *   q6: 0:3.4 2:1.7 4:1.55 5:1.1 -> evict 5;  q7: 0:3.5 2:1.7 4:1.55 6:1.8 -> evict 4. */
static const double k_newest_tab[8][8] = {
    {1.0},
    {0.0, 1.0},
    {0.0, 0.0, 1.0},
    {0.0, 0.0, 0.0, 1.0},
    {0.0, 0.0, 0.0, 0.0, 1.0},
    {0.0, 0.0, 0.0, 0.0, 0.0, 1.0},
    {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0},
    {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0},
};

static void test_h2o_head_aggregation(void **state)
{
    (void)state;
    struct table_attn ta = {k_h2o_tab, k_newest_tab};
    static const int64_t expect_mean[4] = {1, 4, 5, 6};
    static const int64_t expect_max[4] = {1, 3, 5, 4};
    for (int agg = 0; agg < 2; agg++) {
        struct drv d;
        drv_open(&d, agg ? "h2o:4,recent=1,agg=max" : "h2o:4,recent=1", 1);
        for (int64_t t = 0; t < 4; t++) {
            drv_append(&d, 0, t);
        }
        drv_prefill(&d, 0, table_fn, &ta, 2, 0, 4, 4);
        drv_select(&d, 0, 3, NULL);
        for (int64_t t = 4; t < 8; t++) {
            int64_t ev[NMAX];
            drv_append(&d, 0, t);
            drv_observe(&d, 0, table_fn, &ta, 2, t);
            assert_int_equal(drv_select(&d, 0, t, ev), 1);
            assert_int_equal(ev[0], agg ? expect_max[t - 4] : expect_mean[t - 4]);
        }
        drv_close(&d);
    }
}

/* ---- tova ----------------------------------------------------------------------------- */

/* Budget 3, two heads. Rows of query 3 over [0 1 2 3]: h0 [.5 .3 .1 .1], h1 [.0 .3 .5 .2]
 * -> mean [.25 .3 .3 .15] (newest protected) -> evict 0; max [.5 .3 .5 .2] -> evict 1.
 * mean run continues: q4 over [1 2 3 4]: h0 [.1 .2 .6 .1] h1 [.1 .4 .2 .3]
 * -> mean [.1 .3 .4 .2] -> evict 1; q5 over [2 3 4 5]: h0 [.2 .1 .3 .4] h1 [.4 .1 .1 .4]
 * -> mean [.3 .1 .2 .4] -> evict 3. */
static const double k_tova_h0[8][8] = {
    {1.0},
    {0.5, 0.5},
    {0.2, 0.3, 0.5},
    {0.5, 0.3, 0.1, 0.1},
    {0.0, 0.1, 0.2, 0.6, 0.1},
    {0.0, 0.0, 0.2, 0.1, 0.3, 0.4},
};
static const double k_tova_h1[8][8] = {
    {1.0},
    {0.5, 0.5},
    {0.3, 0.3, 0.4},
    {0.0, 0.3, 0.5, 0.2},
    {0.0, 0.1, 0.4, 0.2, 0.3},
    {0.0, 0.0, 0.4, 0.1, 0.1, 0.4},
};

static void test_tova_scripted(void **state)
{
    (void)state;
    struct table_attn ta = {k_tova_h0, k_tova_h1};
    static const int64_t expect_mean[3] = {0, 1, 3};
    for (int agg = 0; agg < 2; agg++) {
        struct drv d;
        drv_open(&d, agg ? "tova:3,agg=max" : "tova:3", 1);
        for (int64_t t = 0; t < 3; t++) {
            drv_append(&d, 0, t);
        }
        drv_prefill(&d, 0, table_fn, &ta, 2, 0, 3, 3);
        assert_int_equal(drv_select(&d, 0, 2, NULL), 0);
        int64_t ev[NMAX];
        drv_append(&d, 0, 3);
        drv_observe(&d, 0, table_fn, &ta, 2, 3);
        assert_int_equal(drv_select(&d, 0, 3, ev), 1);
        assert_int_equal(ev[0], agg ? 1 : 0);
        if (agg) {
            drv_close(&d);
            continue;
        }
        for (int64_t t = 4; t < 6; t++) {
            drv_append(&d, 0, t);
            drv_observe(&d, 0, table_fn, &ta, 2, t);
            assert_int_equal(drv_select(&d, 0, t, ev), 1);
            assert_int_equal(ev[0], expect_mean[t - 3]);
        }
        static const int64_t kept[] = {2, 4, 5};
        assert_memory_equal(d.pos[0], kept, sizeof(kept));
        drv_close(&d);
    }
}

/* TOVA on a prompt longer than the budget: the last prompt query's row decides.
 * Prompt 0..4, budget 3, last row (q4) [.1 .4 .05 .15 .3] -> keep 4 (newest) + the two
 * best of 0..3 (1: .4, 3: .15) -> evict 0 and 2. */
static const double k_tova_prompt[8][8] = {
    {1.0},
    {0.5, 0.5},
    {0.3, 0.3, 0.4},
    {0.25, 0.25, 0.25, 0.25},
    {0.1, 0.4, 0.05, 0.15, 0.3},
};

static void test_tova_prompt_over_budget(void **state)
{
    (void)state;
    struct table_attn ta = {k_tova_prompt, k_tova_prompt};
    struct drv d;
    drv_open(&d, "tova:3", 1);
    for (int64_t t = 0; t < 5; t++) {
        drv_append(&d, 0, t);
    }
    drv_prefill(&d, 0, table_fn, &ta, 1, 0, 3, 5); /* rows 0..2: not the last, ignored */
    drv_prefill(&d, 0, table_fn, &ta, 1, 3, 5, 5);
    int64_t ev[NMAX];
    assert_int_equal(drv_select(&d, 0, 4, ev), 2);
    assert_int_equal(ev[0], 0);
    assert_int_equal(ev[1], 2);
    drv_close(&d);
}

/* ---- snapkv --------------------------------------------------------------------------- */

/* Prompt 0..6, budget 5, w = 2, k = 3 (one head). Window queries 5 and 6:
 *   q5 [.1 .0 .4 .0 .1 .4 .0]   q6 [.0 .3 .0 .0 .2 .1 .4]
 * window sums over the prefix 0..4: [.1 .3 .4 .0 .3]
 * avg pool k=3, zero padding 1, divide by 3: [.4/3 .8/3 .7/3 .7/3 .3/3]
 * keep budget - w = 3 of the prefix -> evict 4 (.1) and 0 (.133). (Without pooling 3 and
 * 0 would go.) Decode then falls back to recency: q7 makes 6 slots > 5 -> evict 1. */
static const double k_snap_tab[8][8] = {
    {1.0},
    {0.5, 0.5},
    {0.3, 0.3, 0.4},
    {0.25, 0.25, 0.25, 0.25},
    {0.2, 0.2, 0.2, 0.2, 0.2},
    {0.1, 0.0, 0.4, 0.0, 0.1, 0.4},
    {0.0, 0.3, 0.0, 0.0, 0.2, 0.1, 0.4},
    {0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.3},
};

static void test_snapkv_scripted(void **state)
{
    (void)state;
    struct table_attn ta = {k_snap_tab, k_snap_tab};
    for (int variant = 0; variant < 3; variant++) {
        struct drv d;
        drv_open(&d, variant == 2 ? "snapkv:5,w=2,k=3,pool=max" : "snapkv:5,w=2,k=3", 1);
        for (int64_t t = 0; t < 7; t++) {
            drv_append(&d, 0, t);
        }
        if (variant == 1) {
            /* Chunked prefill: rows 0..3 with 4 slots, then rows 4..6 with all 7. */
            d.n[0] = 4;
            drv_prefill(&d, 0, table_fn, &ta, 1, 0, 4, 7);
            d.n[0] = 7;
            drv_prefill(&d, 0, table_fn, &ta, 1, 4, 7, 7);
        } else {
            drv_prefill(&d, 0, table_fn, &ta, 1, 0, 7, 7);
        }
        int64_t ev[NMAX];
        /* max pool: [.3 .4 .4 .4 .3] -> the two .3 go: 0 and 4 as well. */
        assert_int_equal(drv_select(&d, 0, 6, ev), 2);
        assert_int_equal(ev[0], 0);
        assert_int_equal(ev[1], 4);
        static const int64_t kept[] = {1, 2, 3, 5, 6};
        assert_memory_equal(d.pos[0], kept, sizeof(kept));
        drv_append(&d, 0, 7);
        assert_int_equal(drv_select(&d, 0, 7, ev), 1);
        assert_int_equal(ev[0], 1);
        drv_close(&d);
    }
}

/* Two heads with agg: head 0 = k_snap_tab, head 1 all on key 3 for the window queries.
 * per head sums over prefix: h0 [.1 .3 .4 .0 .3], h1 [0 0 0 2 0]
 * avg pooled: h0 [.133 .267 .233 .233 .1], h1 [0 0 .667 .667 .667]
 * mean: [.067 .133 .45 .45 .383] -> evict 0, 1;  max: [.133 .267 .667 .667 .667] -> 0, 1. */
static const double k_snap_h1[8][8] = {
    {1.0},
    {0.5, 0.5},
    {0.3, 0.3, 0.4},
    {0.25, 0.25, 0.25, 0.25},
    {0.2, 0.2, 0.2, 0.2, 0.2},
    {0.0, 0.0, 0.0, 1.0, 0.0, 0.0},
    {0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0},
};

static void test_snapkv_two_heads_and_small_prompt(void **state)
{
    (void)state;
    struct table_attn ta = {k_snap_tab, k_snap_h1};
    for (int agg = 0; agg < 2; agg++) {
        struct drv d;
        drv_open(&d, agg ? "snapkv:5,w=2,k=3,agg=max" : "snapkv:5,w=2,k=3", 1);
        for (int64_t t = 0; t < 7; t++) {
            drv_append(&d, 0, t);
        }
        drv_prefill(&d, 0, table_fn, &ta, 2, 0, 7, 7);
        int64_t ev[NMAX];
        assert_int_equal(drv_select(&d, 0, 6, ev), 2);
        assert_int_equal(ev[0], 0);
        assert_int_equal(ev[1], 1);
        drv_close(&d);
    }
    /* A prompt within budget is left alone; compression is not retried in decode. */
    struct drv d;
    drv_open(&d, "snapkv:8,w=2,k=3", 1);
    for (int64_t t = 0; t < 7; t++) {
        drv_append(&d, 0, t);
    }
    drv_prefill(&d, 0, table_fn, &ta, 1, 0, 7, 7);
    assert_int_equal(drv_select(&d, 0, 6, NULL), 0);
    drv_append(&d, 0, 7);
    assert_int_equal(drv_select(&d, 0, 7, NULL), 0);
    drv_append(&d, 0, 8);
    int64_t ev[NMAX];
    assert_int_equal(drv_select(&d, 0, 8, ev), 1);
    assert_int_equal(ev[0], 0); /* recency fallback, no sinks */
    drv_close(&d);
}

/* ---- lazy ----------------------------------------------------------------------------- */

/* Budget 3, w = 2, alpha = 0.1, one head; prompt 0..2 (not observed; no compression).
 * t=1 (q3) over [0 1 2 3]: [.5 .0 .2 .3]: all slots start last=0 MRI=0; 0, 2, 3 cross
 *   alpha -> last 1, MRI 1; 1 stays (0, 0). 1 % 2 != 0: no eviction.
 * t=2 (q4) over [0..4], 4 starts (last 1, MRI 0): [.0 .0 .05 .5 .45] -> 3: last 2 MRI 1,
 *   4: last 2 MRI 1. Evict (t%2 == 0, 5 > 3): window = {3, 4}; keep 1 of {0, 1, 2}:
 *   0: s_freq 2/(1+e^0) = 1, s_due 2/(1+e^(1+1/1)) = .238 -> 1.238
 *   1: MRI 0 -> 0 + ~0 = 0;  2: same state as 0 -> 1.238 (tie: lower slot evicted first)
 *   -> evict 0 and 1.
 * t=3 (q5) over [2 3 4 5], 5 starts (2, 0): [.3 .0 .3 .4] -> 2: gap 2 -> last 3 MRI 2;
 *   4: last 3 MRI 1; 5: last 3 MRI 1. No eviction (odd).
 * t=4 (q6) over [2 3 4 5 6], 6 starts (3, 0): [.0 .2 .0 .0 .8] -> 3: gap 2 -> last 4 MRI 2;
 *   6: last 4 MRI 1. Evict: window {5, 6}; keep 1 of {2, 3, 4}:
 *   2: 2/(1+e) + 2/(1+e^(1+1/2)) = .538 + .365 = .903
 *   3: .538 + 2/(1+e^1) = 1.076;   4: 1 + 2/(1+e^2) = 1.238  -> evict 2 and 3. */
static const double k_lazy_tab[8][8] = {
    {1.0},
    {0.5, 0.5},
    {0.3, 0.3, 0.4},
    {0.5, 0.0, 0.2, 0.3},
    {0.0, 0.0, 0.05, 0.5, 0.45},
    {0.0, 0.0, 0.3, 0.0, 0.3, 0.4},
    {0.0, 0.0, 0.0, 0.2, 0.0, 0.0, 0.8},
};

static void test_lazy_scripted(void **state)
{
    (void)state;
    struct table_attn ta = {k_lazy_tab, k_lazy_tab};
    struct drv d;
    drv_open(&d, "lazy:3,w=2,alpha=0.1", 1);
    assert_null(d.p->ops->observe_prefill);
    for (int64_t t = 0; t < 3; t++) {
        drv_append(&d, 0, t);
    }
    assert_int_equal(drv_select(&d, 0, 2, NULL), 0);
    static const int64_t n_ev[4] = {0, 2, 0, 2};
    static const int64_t ev_pos[4][2] = {{0, 0}, {0, 1}, {0, 0}, {2, 3}};
    for (int64_t q = 3; q < 7; q++) {
        int64_t ev[NMAX];
        drv_append(&d, 0, q);
        drv_observe(&d, 0, table_fn, &ta, 1, q);
        int64_t k = drv_select(&d, 0, q, ev);
        assert_int_equal(k, n_ev[q - 3]);
        for (int64_t i = 0; i < k; i++) {
            assert_int_equal(ev[i], ev_pos[q - 3][i]);
        }
    }
    static const int64_t kept[] = {4, 5, 6};
    assert_memory_equal(d.pos[0], kept, sizeof(kept));
    drv_close(&d);
}

/* ---- randomised comparison with reference implementations ----------------------------- */

static uint64_t g_rng;

static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}

/* Attention as a deterministic hash of (seed, h, q, k): multiples of 1/8 in [0, 1), so
 * sums are exact and ties are common (exercising the tie rule). */
static double hash_fn(void *ctx, int h, int64_t q, int64_t k)
{
    uint64_t x = *(const uint64_t *)ctx ^ ((uint64_t)h * 0x9E3779B97F4A7C15ull) ^
                 ((uint64_t)q * 0xBF58476D1CE4E5B9ull) ^ ((uint64_t)k * 0x94D049BB133111EBull);
    x ^= x >> 31;
    x *= 0xD6E8FEB86659FD93ull;
    x ^= x >> 32;
    return (double)(x % 8) / 8.0;
}

/* Head aggregate of hash_fn at (q, k): mean (sum then divide) or max. */
static double ref_agg(uint64_t *seed, int n_head, bool max, int64_t q, int64_t k)
{
    double acc = 0.0;
    for (int h = 0; h < n_head; h++) {
        double v = hash_fn(seed, h, q, k);
        acc = max ? (h == 0 || v > acc ? v : acc) : acc + v;
    }
    return max ? acc : acc / n_head;
}

/* Reference retained set: positions ascending. */
struct ref {
    int64_t n;
    int64_t pos[NMAX];
    double score[NMAX * 2]; /* by position */
    int64_t last[NMAX * 2];
    int64_t mri[NMAX * 2];
};

/* Removes the retained position with the lowest key among indices [lo, hi) of the set
 * (ties: the smaller position); returns it. */
static int64_t ref_remove_min(struct ref *r, int64_t lo, int64_t hi, const double *key)
{
    int64_t best = lo;
    for (int64_t i = lo + 1; i < hi; i++) {
        if (key[r->pos[i]] < key[r->pos[best]]) {
            best = i;
        }
    }
    int64_t p = r->pos[best];
    memmove(&r->pos[best], &r->pos[best + 1], (size_t)(r->n - best - 1) * sizeof(int64_t));
    r->n--;
    return p;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

enum ref_kind { REF_H2O, REF_TOVA, REF_LAZY };

/* Runs the policy and the reference side by side over n_steps decode steps after a
 * prompt of n_prompt tokens, checking the evicted set after every select. Also removes a
 * random slot now and then through on_evicted alone (like a pruned step) to check that
 * per-slot state follows the engine's compaction. */
static void run_compare(enum ref_kind kind, const char *spec, int n_head, bool agg_max,
                        int64_t n_prompt, int64_t n_steps, uint64_t seed)
{
    struct drv d;
    drv_open(&d, spec, 1);
    struct pd_policy_spec sp;
    assert_int_equal(pd_policy_parse(spec, &sp, NULL), PD_OK);
    static struct ref r;
    memset(&r, 0, sizeof(r));
    g_rng = seed * 2654435761u + 1;
    int64_t t_lazy = 0;
    for (int64_t q = 0; q < n_prompt; q++) {
        drv_append(&d, 0, q);
        r.pos[r.n++] = q;
    }
    if (kind == REF_H2O) {
        drv_prefill(&d, 0, hash_fn, &seed, n_head, 0, n_prompt, n_prompt);
        for (int64_t q = 0; q < n_prompt; q++) {
            for (int64_t k = 0; k <= q; k++) {
                r.score[k] += ref_agg(&seed, n_head, agg_max, q, k);
            }
        }
    } else if (kind == REF_TOVA) {
        drv_prefill(&d, 0, hash_fn, &seed, n_head, n_prompt - 1, n_prompt, n_prompt);
        for (int64_t k = 0; k < n_prompt; k++) {
            r.score[k] = ref_agg(&seed, n_head, agg_max, n_prompt - 1, k);
        }
    }
    for (int64_t q = n_prompt - 1; q < n_prompt + n_steps; q++) {
        if (q >= n_prompt) {
            drv_append(&d, 0, q);
            r.pos[r.n++] = q;
            drv_observe(&d, 0, hash_fn, &seed, n_head, q);
            if (kind == REF_H2O) {
                for (int64_t i = 0; i < r.n; i++) {
                    r.score[r.pos[i]] += ref_agg(&seed, n_head, agg_max, q, r.pos[i]);
                }
            } else if (kind == REF_TOVA) {
                for (int64_t i = 0; i < r.n; i++) {
                    r.score[r.pos[i]] = ref_agg(&seed, n_head, agg_max, q, r.pos[i]);
                }
            } else {
                t_lazy++;
                r.last[q] = t_lazy - 1;
                r.mri[q] = 0;
                for (int64_t i = 0; i < r.n; i++) {
                    int64_t p = r.pos[i];
                    if (ref_agg(&seed, n_head, agg_max, q, p) >= sp.alpha) {
                        int64_t gap = t_lazy - r.last[p];
                        r.last[p] = t_lazy;
                        r.mri[p] = gap > r.mri[p] ? gap : r.mri[p];
                    }
                }
            }
        }
        int64_t budget = pd_kv_budget_slots(&sp.budget, q + 1);
        int64_t expect[NMAX];
        int64_t n_expect = 0;
        if (kind == REF_H2O && r.n > budget) {
            int64_t recent = sp.n_recent > 0 ? sp.n_recent : (int64_t)floor(budget * 0.5);
            recent = recent < 1 ? 1 : recent;
            int64_t heavy = budget - sp.n_sink - recent;
            heavy = heavy < 0 ? 0 : heavy;
            while (r.n - sp.n_sink - recent > heavy) {
                expect[n_expect++] = ref_remove_min(&r, sp.n_sink, r.n - recent, r.score);
            }
        } else if (kind == REF_TOVA) {
            while (r.n > budget && r.n - 1 > sp.n_sink) {
                expect[n_expect++] = ref_remove_min(&r, sp.n_sink, r.n - 1, r.score);
            }
        } else if (kind == REF_LAZY && t_lazy > 0 && r.n > budget &&
                   t_lazy % sp.window == 0) {
            static double lscore[NMAX * 2];
            for (int64_t i = 0; i < r.n; i++) {
                int64_t p = r.pos[i];
                double m = (double)r.mri[p];
                double f = r.mri[p] == 0 ? 0.0 : 2.0 / (1.0 + exp(m - 1.0));
                double due = 2.0 / (1.0 + exp(1.0 + (double)(t_lazy - r.last[p]) / (m + 1e-5)));
                lscore[p] = f + due;
            }
            int64_t keep = budget - sp.window - sp.n_sink;
            while (r.n - sp.window - sp.n_sink > keep) {
                expect[n_expect++] = ref_remove_min(&r, sp.n_sink, r.n - sp.window, lscore);
            }
        }
        qsort(expect, (size_t)n_expect, sizeof(int64_t), cmp_i64);
        int64_t ev[NMAX];
        int64_t k = drv_select(&d, 0, q, ev);
        if (k != n_expect || memcmp(ev, expect, (size_t)k * sizeof(int64_t)) != 0) {
            fail_msg("%s seed %llu step %lld: policy evicted %lld slots (first %lld), "
                     "reference %lld (first %lld)", spec, (unsigned long long)seed,
                     (long long)q, (long long)k, (long long)(k ? ev[0] : -1),
                     (long long)n_expect, (long long)(n_expect ? expect[0] : -1));
        }
        assert_int_equal(d.n[0], r.n);
        assert_memory_equal(d.pos[0], r.pos, (size_t)r.n * sizeof(int64_t));
        /* Occasionally drop a random middle slot outside the policy (pruning). */
        if (r.n > 8 && rnd() % 17 == 0) {
            int64_t victim = 2 + (int64_t)(rnd() % (uint32_t)(r.n - 4));
            memset(d.mask, 0, sizeof(d.mask));
            d.mask[victim] = 1;
            assert_int_equal(d.p->ops->on_evicted(d.p, 0, d.n[0], d.mask, NULL), PD_OK);
            memmove(&d.pos[0][victim], &d.pos[0][victim + 1],
                    (size_t)(d.n[0] - victim - 1) * sizeof(int64_t));
            d.n[0]--;
            memmove(&r.pos[victim], &r.pos[victim + 1],
                    (size_t)(r.n - victim - 1) * sizeof(int64_t));
            r.n--;
        }
    }
    drv_close(&d);
}

static void test_random_h2o(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 12; seed++) {
        run_compare(REF_H2O, "h2o:24,recent=6", 2, false, 10, 200, seed);
        run_compare(REF_H2O, "h2o:24,sinks=2,agg=max", 4, true, 30, 200, seed);
        run_compare(REF_H2O, "h2o:0.3", 1, false, 40, 150, seed);
    }
}

static void test_random_tova(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 12; seed++) {
        run_compare(REF_TOVA, "tova:16", 2, false, 8, 200, seed);
        run_compare(REF_TOVA, "tova:16,sinks=3,agg=max", 4, true, 40, 200, seed);
        run_compare(REF_TOVA, "tova:0.25", 1, false, 20, 150, seed);
    }
}

static void test_random_lazy(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 12; seed++) {
        run_compare(REF_LAZY, "lazy:24,w=6,alpha=0.3", 2, false, 10, 200, seed);
        run_compare(REF_LAZY, "lazy:30,w=5,alpha=0.6,sinks=2,agg=max", 4, true, 20, 200, seed);
        run_compare(REF_LAZY, "lazy:16,w=1,alpha=0.125", 1, false, 5, 120, seed);
    }
}

/* Layers are independent: the same policy object, different rows per layer. */
static void test_layers_independent(void **state)
{
    (void)state;
    struct table_attn a0 = {k_h2o_tab, k_h2o_tab};
    struct table_attn a1 = {k_newest_tab, k_newest_tab};
    struct drv d;
    drv_open(&d, "h2o:4,recent=1", 2);
    for (int64_t t = 0; t < 4; t++) {
        drv_append(&d, 0, t);
        drv_append(&d, 1, t);
    }
    drv_prefill(&d, 0, table_fn, &a0, 1, 0, 4, 4);
    drv_prefill(&d, 1, table_fn, &a1, 1, 0, 4, 4);
    int64_t ev0[NMAX];
    int64_t ev1[NMAX];
    drv_append(&d, 0, 4);
    drv_append(&d, 1, 4);
    drv_observe(&d, 0, table_fn, &a0, 1, 4);
    drv_observe(&d, 1, table_fn, &a1, 1, 4);
    assert_int_equal(drv_select(&d, 0, 4, ev0), 1);
    assert_int_equal(drv_select(&d, 1, 4, ev1), 1);
    assert_int_equal(ev0[0], 1);
    /* Layer 1: cum [1 1 1 1 | 1] for 0..3 -> tie -> lowest slot (position 0). */
    assert_int_equal(ev1[0], 0);
    assert_true(has_pos(&d, 1, 1));
    drv_close(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid_and_roundtrip),
        cmocka_unit_test(test_parse_corrupt_specs),
        cmocka_unit_test(test_validate_and_create_args),
        cmocka_unit_test(test_budget_slots),
        cmocka_unit_test(test_flags_per_policy),
        cmocka_unit_test(test_bad_engine_calls),
        cmocka_unit_test(test_window_closed_form),
        cmocka_unit_test(test_window_prompt_over_budget_and_ratio),
        cmocka_unit_test(test_full_keeps_everything),
        cmocka_unit_test(test_h2o_scripted),
        cmocka_unit_test(test_h2o_head_aggregation),
        cmocka_unit_test(test_tova_scripted),
        cmocka_unit_test(test_tova_prompt_over_budget),
        cmocka_unit_test(test_snapkv_scripted),
        cmocka_unit_test(test_snapkv_two_heads_and_small_prompt),
        cmocka_unit_test(test_lazy_scripted),
        cmocka_unit_test(test_random_h2o),
        cmocka_unit_test(test_random_tova),
        cmocka_unit_test(test_random_lazy),
        cmocka_unit_test(test_layers_independent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
