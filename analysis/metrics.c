/* metrics.c - per-step metrics (surprisal, entropy, attention received). Definitions: metrics.h and docs/analysis.md ("Step metrics"). */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_blob.h"
#include "mem.h"

/* ---- sums over tokens ---------------------------------------------------------------- */

/* Surprisal (bits) and entropy sums over the scored tokens of a range. */
struct sums {
    double surprisal, entropy;
    size_t n_surprisal, n_entropy;
};

static void add_tokens(struct sums *m, const struct pd_token_rec *toks, size_t begin,
                       size_t end)
{
    for (size_t i = begin; i < end; i++) {
        if (!isnan(toks[i].logprob)) {
            m->surprisal += pd_metrics_bits(toks[i].logprob);
            m->n_surprisal++;
        }
        if (!isnan(toks[i].entropy)) {
            m->entropy += toks[i].entropy;
            m->n_entropy++;
        }
    }
}

static double mean(double sum, size_t n)
{
    return n ? sum / (double)n : NAN;
}

/* ---- spans -------------------------------------------------------------------------- */

/* First index i in toks[lo..n) with toks[i].pos >= pos (n when none). */
static size_t lower_bound(const struct pd_token_rec *toks, size_t lo, size_t n, int64_t pos)
{
    size_t hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (toks[mid].pos < pos) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Steps in order: non-negative, non-empty-or-empty spans, not overlapping. */
static enum pd_status check_steps(const struct pd_step_rec *steps, size_t n_steps,
                                  struct pd_err *err)
{
    for (size_t j = 0; j < n_steps; j++) {
        const struct pd_step_rec *s = &steps[j];
        if (s->pos_begin < 0 || s->pos_end < s->pos_begin) {
            return pd_err_set(err, PD_EINVAL, "metrics: step %zu: bad span [%lld, %lld)", j,
                              (long long)s->pos_begin, (long long)s->pos_end);
        }
        if (j > 0 && s->pos_begin < steps[j - 1].pos_end) {
            return pd_err_set(err, PD_EINVAL, "metrics: step %zu: span [%lld, %lld) overlaps "
                              "or precedes step %zu", j, (long long)s->pos_begin,
                              (long long)s->pos_end, j - 1);
        }
    }
    return PD_OK;
}

enum pd_status pd_metrics_spans(const struct pd_token_rec *toks, size_t n_tok,
                                const struct pd_step_rec *steps, size_t n_steps,
                                struct pd_step_span *spans, struct pd_err *err)
{
    if ((toks == NULL && n_tok > 0) || (steps == NULL && n_steps > 0) ||
        (spans == NULL && n_steps > 0)) {
        return pd_err_set(err, PD_EINVAL, "metrics: NULL tokens, steps or spans");
    }
    for (size_t i = 0; i < n_tok; i++) {
        if (toks[i].pos < 0 || (i > 0 && toks[i].pos <= toks[i - 1].pos)) {
            return pd_err_set(err, PD_EINVAL, "metrics: token %zu: position %lld is not above "
                              "the previous one", i, (long long)toks[i].pos);
        }
    }
    enum pd_status st = check_steps(steps, n_steps, err);
    if (st != PD_OK) {
        return st;
    }
    size_t lo = 0;
    for (size_t j = 0; j < n_steps; j++) {
        const struct pd_step_rec *s = &steps[j];
        size_t b = lower_bound(toks, lo, n_tok, s->pos_begin);
        size_t e = lower_bound(toks, b, n_tok, s->pos_end);
        size_t scored = 0;
        for (size_t i = b; i < e; i++) {
            scored += !isnan(toks[i].logprob);
        }
        spans[j] = (struct pd_step_span){b, e, scored};
        lo = e;
    }
    return PD_OK;
}

/* ---- step metrics ------------------------------------------------------------------- */

static enum pd_status check_token(const struct pd_token_rec *t, struct pd_err *err)
{
    if (!isnan(t->logprob) && (!isfinite(t->logprob) || t->logprob > 0.001f)) {
        return pd_err_set(err, PD_EFORMAT, "token at position %lld: logprob %g is not a log "
                          "probability", (long long)t->pos, (double)t->logprob);
    }
    if (!isnan(t->entropy) && (!isfinite(t->entropy) || t->entropy < 0.0f)) {
        return pd_err_set(err, PD_EFORMAT, "token at position %lld: entropy %g is not an "
                          "entropy", (long long)t->pos, (double)t->entropy);
    }
    return PD_OK;
}

/* Index of the step whose span holds pos, or n_steps when none. */
static size_t step_of_pos(const struct pd_step_rec *steps, size_t n_steps, int64_t pos)
{
    size_t lo = 0, hi = n_steps;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (steps[mid].pos_end <= pos) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < n_steps && steps[lo].pos_begin <= pos && pos < steps[lo].pos_end) {
        return lo;
    }
    return n_steps;
}

/* A summary with steps carries the token's attention mass on each step it attends to
 * (attn_blob.h: a step left out has mass 0). When its steps are these steps, the masses
 * are exact and credit steps 0..k-1 directly: the first step begins at the same
 * position, and every listed step before step k's first position is one of steps[0..k)
 * with the same extent (it ends where the next of these steps begins), so the steps left
 * out cover exactly what the summary's left-out steps covered and have mass 0. Returns
 * false (use the top-N entries) otherwise, e.g. for a trace segmented with other
 * parameters. */
static bool walk_step_mass(const struct pd_attn_view *v, const struct pd_step_rec *steps,
                           size_t k, double *attn)
{
    size_t j = 0;
    uint32_t e = 0;
    for (; e < v->n_steps; e++) {
        int64_t b = pd_attn_view_step_begin(v, e);
        if (b >= steps[k].pos_begin) {
            break;
        }
        while (j < k && steps[j].pos_begin < b) {
            j++;
        }
        if (j == k || steps[j].pos_begin != b ||
            pd_attn_view_step_end(v, e) != steps[j + 1].pos_begin) {
            return false;
        }
        if (attn) {
            attn[j] += pd_attn_view_step_mass(v, e);
        }
    }
    /* the token's own step is always listed: it must be step k */
    return e < v->n_steps && pd_attn_view_step_begin(v, e) == steps[k].pos_begin;
}

static bool exact_step_mass(const struct pd_attn_view *v, const struct pd_step_rec *steps,
                            size_t k, double *attn)
{
    if (v->n_steps == 0 || pd_attn_view_first_step(v) != steps[0].pos_begin ||
        !walk_step_mass(v, steps, k, NULL)) {
        return false;
    }
    return walk_step_mass(v, steps, k, attn);
}

/* Credits to attn[0..k) what one token of step k pays to earlier steps. */
static void credit(const struct pd_attn_view *v, const struct pd_step_rec *steps, size_t k,
                   double *attn)
{
    if (exact_step_mass(v, steps, k, attn)) {
        return;
    }
    for (uint32_t l = 0; l < v->n_layer; l++) {
        for (uint32_t e = 0; e < v->n_top; e++) {
            uint32_t pos;
            float w;
            if (!pd_attn_view_entry(v, l, e, &pos, &w)) {
                continue;
            }
            size_t j = step_of_pos(steps, k, (int64_t)pos);
            if (j < k) {
                attn[j] += (double)w / v->n_layer;
            }
        }
    }
}

bool pd_metrics_credit(const uint8_t *blob, size_t len, const struct pd_step_rec *steps,
                       size_t k, double *attn)
{
    struct pd_attn_view v;
    if (blob == NULL || len == 0 || !pd_attn_blob_layout(blob, len, &v)) {
        return false;
    }
    credit(&v, steps, k, attn);
    return true;
}

/* ---- the accumulator: a trace in pieces ---------------------------------------------- */

/* Per-step running sums. */
struct acc_step {
    struct sums m;
    float first_surprisal;
};

struct pd_metrics_acc {
    const struct pd_step_rec *steps; /* borrowed: [n_steps] */
    size_t n_steps;
    struct acc_step *per;            /* owned: [n_steps] */
    double *attn;                    /* owned: [n_steps] */
    size_t k;                        /* the first step not yet ended before the last token */
    size_t k_last_blob;              /* latest step with a blob-carrying token, or SIZE_MAX */
    size_t n_seen;                   /* tokens added */
    int64_t last_pos;
};

enum pd_status pd_metrics_acc_open(const struct pd_step_rec *steps, size_t n_steps,
                                   struct pd_metrics_acc **out, struct pd_err *err)
{
    *out = NULL;
    if (steps == NULL && n_steps > 0) {
        return pd_err_set(err, PD_EINVAL, "metrics: NULL steps");
    }
    enum pd_status st = check_steps(steps, n_steps, err);
    if (st != PD_OK) {
        return st;
    }
    struct pd_metrics_acc *a = pd_calloc(1, sizeof *a);
    size_t n = n_steps ? n_steps : 1;
    if (a == NULL || (a->per = pd_calloc(n, sizeof *a->per)) == NULL ||
        (a->attn = pd_calloc(n, sizeof *a->attn)) == NULL) {
        pd_metrics_acc_close(&a);
        return pd_err_set(err, PD_ENOMEM, "metrics: out of memory");
    }
    for (size_t j = 0; j < n_steps; j++) {
        a->per[j].first_surprisal = NAN;
    }
    a->steps = steps;
    a->n_steps = n_steps;
    a->k_last_blob = SIZE_MAX;
    a->last_pos = -1;
    *out = a;
    return PD_OK;
}

void pd_metrics_acc_close(struct pd_metrics_acc **ap)
{
    struct pd_metrics_acc *a = ap ? *ap : NULL;
    if (a == NULL) {
        return;
    }
    free(a->per);
    free(a->attn);
    free(a);
    *ap = NULL;
}

enum pd_status pd_metrics_acc_add(struct pd_metrics_acc *a, const struct pd_token_rec *toks,
                                  size_t n_tok, struct pd_err *err)
{
    if (toks == NULL && n_tok > 0) {
        return pd_err_set(err, PD_EINVAL, "metrics: NULL tokens");
    }
    for (size_t i = 0; i < n_tok; i++, a->n_seen++) {
        const struct pd_token_rec *t = &toks[i];
        if (t->pos < 0 || t->pos <= a->last_pos) {
            return pd_err_set(err, PD_EINVAL, "metrics: token %zu: position %lld is not above "
                              "the previous one", a->n_seen, (long long)t->pos);
        }
        a->last_pos = t->pos;
        while (a->k < a->n_steps && a->steps[a->k].pos_end <= t->pos) {
            a->k++;
        }
        size_t k = a->k;
        if (k == a->n_steps || t->pos < a->steps[k].pos_begin) {
            continue; /* outside every step */
        }
        enum pd_status st = check_token(t, err);
        if (st != PD_OK) {
            return st;
        }
        struct acc_step *ps = &a->per[k];
        add_tokens(&ps->m, t, 0, 1);
        if (t->pos == a->steps[k].pos_begin && !isnan(t->logprob)) {
            ps->first_surprisal = (float)pd_metrics_bits(t->logprob);
        }
        if (t->attn == NULL || t->attn_len == 0) {
            continue;
        }
        struct pd_attn_view v;
        if ((st = pd_attn_blob_check(t->attn, t->attn_len, &v, err)) != PD_OK) {
            pd_err_prefix(err, "token at position %lld", (long long)t->pos);
            return st;
        }
        a->k_last_blob = k;
        credit(&v, a->steps, k, a->attn);
    }
    return PD_OK;
}

void pd_metrics_acc_finish(const struct pd_metrics_acc *a, struct pd_step_rec *steps)
{
    for (size_t j = 0; j < a->n_steps; j++) {
        struct pd_step_rec *s = &steps[j];
        const struct acc_step *ps = &a->per[j];
        s->mean_surprisal = (float)mean(ps->m.surprisal, ps->m.n_surprisal);
        s->mean_entropy = (float)mean(ps->m.entropy, ps->m.n_entropy);
        s->first_surprisal = ps->first_surprisal;
        s->attn_received =
            (a->k_last_blob != SIZE_MAX && j < a->k_last_blob) ? (float)a->attn[j] : NAN;
    }
}

enum pd_status pd_metrics_steps(const struct pd_token_rec *toks, size_t n_tok,
                                struct pd_step_rec *steps, size_t n_steps,
                                struct pd_step_span *spans, struct pd_err *err)
{
    struct pd_step_span *own = NULL;
    struct pd_metrics_acc *a = NULL;
    enum pd_status st = PD_OK;
    if (spans == NULL && n_steps > 0) {
        own = pd_calloc(n_steps, sizeof *own);
        if (own == NULL) {
            return pd_err_set(err, PD_ENOMEM, "metrics: out of memory");
        }
        spans = own;
    }
    if ((st = pd_metrics_spans(toks, n_tok, steps, n_steps, spans, err)) == PD_OK &&
        (st = pd_metrics_acc_open(steps, n_steps, &a, err)) == PD_OK &&
        (st = pd_metrics_acc_add(a, toks, n_tok, err)) == PD_OK) {
        pd_metrics_acc_finish(a, steps);
    }
    pd_metrics_acc_close(&a);
    free(own);
    return st;
}

void pd_metrics_trace(const struct pd_token_rec *toks, size_t n_tok,
                      const struct pd_step_rec *steps, const struct pd_step_span *spans,
                      size_t n_steps, struct pd_trace_stats *out)
{
    memset(out, 0, sizeof *out);
    out->n_tokens = n_tok;
    out->n_steps = n_steps;
    for (size_t i = 0; i < n_tok; i++) {
        if ((unsigned)toks[i].role < PD_ROLE_COUNT) {
            out->n_role[toks[i].role]++;
        }
        out->n_scored += !isnan(toks[i].logprob);
    }
    struct sums m = {0};
    for (size_t j = 0; j < n_steps; j++) {
        if ((unsigned)steps[j].kind < PD_STEP_KIND_COUNT) {
            out->n_kind[steps[j].kind]++;
        }
        out->n_step_tokens += spans[j].i_end - spans[j].i_begin;
        add_tokens(&m, toks, spans[j].i_begin, spans[j].i_end);
    }
    out->mean_surprisal = mean(m.surprisal, m.n_surprisal);
    out->mean_entropy = mean(m.entropy, m.n_entropy);
}
