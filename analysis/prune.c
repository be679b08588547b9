/* prune.c - step selection for the pruning strategies (manual, asap, redundant, budget)
 * and verification of a pruned trace by re-scoring its answer. Rules: prune.h and
 * docs/analysis.md ("Pruning"). */
#include "prune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "metrics.h"

static const char *const k_strategy_names[] = {
    [PD_PRUNE_MANUAL] = "manual",
    [PD_PRUNE_ASAP] = "asap",
    [PD_PRUNE_REDUNDANT] = "redundant",
    [PD_PRUNE_BUDGET] = "budget",
};
_Static_assert(sizeof k_strategy_names / sizeof k_strategy_names[0] == PD_PRUNE_STRATEGY_COUNT,
               "one name per pruning strategy");

const char *pd_prune_strategy_name(enum pd_prune_strategy s)
{
    return (unsigned)s < PD_PRUNE_STRATEGY_COUNT ? k_strategy_names[s] : NULL;
}

enum pd_prune_strategy pd_prune_strategy_parse(const char *s)
{
    for (int i = 0; s != NULL && i < PD_PRUNE_STRATEGY_COUNT; i++) {
        if (strcmp(s, k_strategy_names[i]) == 0) {
            return (enum pd_prune_strategy)i;
        }
    }
    return PD_PRUNE_STRATEGY_COUNT;
}

struct pd_prune_params pd_prune_default_params(enum pd_prune_strategy s)
{
    struct pd_prune_params p;
    memset(&p, 0, sizeof p);
    p.strategy = s;
    p.keep = 0.8;
    p.budget = 0;
    p.threshold = 0.6;
    p.r_min = 0.25;
    p.entropy_ref = 3.0;
    p.w_revisit = 0.5;
    return p;
}

bool pd_prune_is_anchor(const struct pd_step_rec *steps, size_t n_steps, size_t j)
{
    return j == 0 || j + 1 == n_steps || steps[j].kind == PD_STEP_CONCLUDE;
}

/* ---- word sets ------------------------------------------------------------------------ */

static bool word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c >= 0x80;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorted, de-duplicated FNV-1a hashes of the words of s[0..n). *out owned (free()). */
static bool word_set(const char *s, size_t n, uint64_t **out, size_t *n_out)
{
    size_t cap = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        cap += word_byte((unsigned char)s[i]) && (i == 0 || !word_byte((unsigned char)s[i - 1]));
    }
    uint64_t *h = pd_malloc_array(cap ? cap : 1, sizeof *h);
    if (h == NULL) {
        return false;
    }
    for (size_t i = 0; i < n;) {
        if (!word_byte((unsigned char)s[i])) {
            i++;
            continue;
        }
        uint64_t v = 1469598103934665603ull;
        while (i < n && word_byte((unsigned char)s[i])) {
            unsigned char c = (unsigned char)s[i++];
            if (c >= 'A' && c <= 'Z') {
                c = (unsigned char)(c - 'A' + 'a');
            }
            v = (v ^ c) * 1099511628211ull;
        }
        h[k++] = v;
    }
    qsort(h, k, sizeof *h, cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i < k; i++) {
        if (u == 0 || h[u - 1] != h[i]) {
            h[u++] = h[i];
        }
    }
    *out = h;
    *n_out = u;
    return true;
}

static double jaccard_sets(const uint64_t *a, size_t na, const uint64_t *b, size_t nb)
{
    if (na == 0 && nb == 0) {
        return 1.0;
    }
    size_t i = 0, j = 0, inter = 0;
    while (i < na && j < nb) {
        if (a[i] == b[j]) {
            inter++;
            i++;
            j++;
        } else if (a[i] < b[j]) {
            i++;
        } else {
            j++;
        }
    }
    return (double)inter / (double)(na + nb - inter);
}

double pd_prune_jaccard(const char *a, size_t a_len, const char *b, size_t b_len)
{
    uint64_t *sa = NULL, *sb = NULL;
    size_t na = 0, nb = 0;
    double r = NAN;
    if (word_set(a, a_len, &sa, &na) && word_set(b, b_len, &sb, &nb)) {
        r = jaccard_sets(sa, na, sb, nb);
    }
    free(sa);
    free(sb);
    return r;
}

/* ---- selection ------------------------------------------------------------------------ */

double pd_prune_difficulty(const struct pd_step_rec *steps, size_t n_steps,
                           double mean_entropy, const struct pd_prune_params *p)
{
    if (n_steps == 0) {
        return 0.0;
    }
    size_t revisit = 0;
    for (size_t j = 0; j < n_steps; j++) {
        revisit += steps[j].kind == PD_STEP_CHECK || steps[j].kind == PD_STEP_BACKTRACK;
    }
    double rev = (double)revisit / (double)n_steps;
    if (isnan(mean_entropy)) {
        return rev;
    }
    double h = mean_entropy / p->entropy_ref;
    h = h < 0.0 ? 0.0 : h > 1.0 ? 1.0 : h;
    return p->w_revisit * rev + (1.0 - p->w_revisit) * h;
}

static enum pd_status check_params(const struct pd_prune_params *p, size_t n_steps,
                                   struct pd_err *err)
{
    if ((unsigned)p->strategy >= PD_PRUNE_STRATEGY_COUNT) {
        return pd_err_set(err, PD_EINVAL, "prune: strategy %d out of range", (int)p->strategy);
    }
    if (!(p->keep > 0.0 && p->keep <= 1.0)) {
        return pd_err_set(err, PD_EINVAL, "prune: keep %g outside (0, 1]", p->keep);
    }
    if (!(p->threshold > 0.0 && p->threshold <= 1.0)) {
        return pd_err_set(err, PD_EINVAL, "prune: threshold %g outside (0, 1]", p->threshold);
    }
    if (!(p->r_min > 0.0 && p->r_min <= 1.0)) {
        return pd_err_set(err, PD_EINVAL, "prune: r_min %g outside (0, 1]", p->r_min);
    }
    if (!(p->entropy_ref > 0.0) || !isfinite(p->entropy_ref)) {
        return pd_err_set(err, PD_EINVAL, "prune: entropy_ref %g must be > 0", p->entropy_ref);
    }
    if (!(p->w_revisit >= 0.0 && p->w_revisit <= 1.0)) {
        return pd_err_set(err, PD_EINVAL, "prune: w_revisit %g outside [0, 1]", p->w_revisit);
    }
    if (p->strategy == PD_PRUNE_MANUAL) {
        if (p->manual == NULL && p->n_manual > 0) {
            return pd_err_set(err, PD_EINVAL, "prune: manual step list is NULL");
        }
        for (size_t i = 0; i < p->n_manual; i++) {
            if (p->manual[i] < 0 || (size_t)p->manual[i] >= n_steps) {
                return pd_err_set(err, PD_EINVAL, "prune: step %d does not exist (the trace "
                                  "has %zu steps)", p->manual[i], n_steps);
            }
            for (size_t k = 0; k < i; k++) {
                if (p->manual[k] == p->manual[i]) {
                    return pd_err_set(err, PD_EINVAL, "prune: step %d listed twice",
                                      p->manual[i]);
                }
            }
        }
    }
    return PD_OK;
}

struct rank {
    size_t step;
    double key;   /* removal order: ascending key, then ascending step */
};

static int cmp_rank(const void *a, const void *b)
{
    const struct rank *x = a, *y = b;
    if (x->key != y->key) {
        return x->key < y->key ? -1 : 1;
    }
    return x->step < y->step ? -1 : x->step > y->step;
}

/* Anchors kept; other steps removed in ascending order of first-token surprisal (or, when
 * !by_surprisal, latest step first) until the kept tokens are <= budget. */
static enum pd_status select_budget(const struct pd_step_span *spans, size_t n_steps,
                                    bool by_surprisal, uint64_t budget, bool *pruned,
                                    const struct pd_step_rec *steps, uint64_t total,
                                    struct pd_err *err)
{
    if (total <= budget) {
        return PD_OK;
    }
    struct rank *r = pd_calloc(n_steps ? n_steps : 1, sizeof *r);
    if (r == NULL) {
        return pd_err_set(err, PD_ENOMEM, "prune: out of memory");
    }
    size_t n_r = 0;
    for (size_t j = 0; j < n_steps; j++) {
        if (!pd_prune_is_anchor(steps, n_steps, j)) {
            r[n_r].step = j;
            r[n_r].key = by_surprisal ? (double)steps[j].first_surprisal : -(double)j;
            n_r++;
        }
    }
    qsort(r, n_r, sizeof *r, cmp_rank);
    for (size_t i = 0; i < n_r && total > budget; i++) {
        size_t j = r[i].step;
        pruned[j] = true;
        total -= spans[j].i_end - spans[j].i_begin;
    }
    free(r);
    return PD_OK;
}

static enum pd_status step_text(const struct pd_token_rec *toks, const struct pd_step_span *sp,
                                struct pd_buf *b, struct pd_err *err)
{
    b->len = 0;
    for (size_t i = sp->i_begin; i < sp->i_end; i++) {
        if (toks[i].text_len > 0 && !pd_buf_append(b, toks[i].text, toks[i].text_len)) {
            return pd_err_set(err, PD_ENOMEM, "prune: out of memory");
        }
    }
    return PD_OK;
}

static enum pd_status select_redundant(const struct pd_token_rec *toks,
                                       const struct pd_step_span *spans, size_t n_steps,
                                       double threshold, bool *pruned, struct pd_err *err)
{
    uint64_t **sets = pd_calloc(n_steps ? n_steps : 1, sizeof *sets);
    size_t *n_set = pd_calloc(n_steps ? n_steps : 1, sizeof *n_set);
    struct pd_buf b;
    pd_buf_init(&b);
    enum pd_status st = PD_OK;
    if (sets == NULL || n_set == NULL) {
        st = pd_err_set(err, PD_ENOMEM, "prune: out of memory");
        goto done;
    }
    for (size_t j = 0; j < n_steps; j++) {
        if ((st = step_text(toks, &spans[j], &b, err)) != PD_OK) {
            goto done;
        }
        if (!word_set(b.data ? b.data : "", b.len, &sets[j], &n_set[j])) {
            st = pd_err_set(err, PD_ENOMEM, "prune: out of memory");
            goto done;
        }
    }
    for (size_t j = 1; j + 1 < n_steps; j++) {
        for (size_t i = 0; i < j; i++) {
            if (!pruned[i] &&
                jaccard_sets(sets[i], n_set[i], sets[j], n_set[j]) >= threshold) {
                pruned[j] = true;
                break;
            }
        }
    }
done:
    for (size_t j = 0; sets != NULL && j < n_steps; j++) {
        free(sets[j]);
    }
    free(sets);
    free(n_set);
    pd_buf_deinit(&b);
    return st;
}

enum pd_status pd_prune_select(const struct pd_token_rec *toks, size_t n_tok,
                               struct pd_step_rec *steps, size_t n_steps,
                               const struct pd_prune_params *params,
                               struct pd_prune_result *res, struct pd_err *err)
{
    struct pd_prune_params p = params ? *params : pd_prune_default_params(PD_PRUNE_ASAP);
    memset(res, 0, sizeof *res);
    res->difficulty = NAN;
    enum pd_status st = check_params(&p, n_steps, err);
    if (st != PD_OK) {
        return st;
    }
    struct pd_step_span *spans = pd_calloc(n_steps ? n_steps : 1, sizeof *spans);
    bool *pruned = pd_calloc(n_steps ? n_steps : 1, sizeof *pruned);
    if (spans == NULL || pruned == NULL) {
        st = pd_err_set(err, PD_ENOMEM, "prune: out of memory");
        goto done;
    }
    if ((st = pd_metrics_spans(toks, n_tok, steps, n_steps, spans, err)) != PD_OK) {
        goto done;
    }
    uint64_t total = 0;
    for (size_t j = 0; j < n_steps; j++) {
        total += spans[j].i_end - spans[j].i_begin;
    }
    bool all_scored = true;
    for (size_t j = 0; j < n_steps; j++) {
        if (!pd_prune_is_anchor(steps, n_steps, j) && isnan(steps[j].first_surprisal)) {
            all_scored = false;
        }
    }
    res->budget_met = true;
    switch (p.strategy) {
    case PD_PRUNE_MANUAL:
        for (size_t i = 0; i < p.n_manual; i++) {
            pruned[p.manual[i]] = true;
        }
        snprintf(res->spec, sizeof res->spec, "manual");
        break;
    case PD_PRUNE_ASAP: {
        if (!all_scored) {
            st = pd_err_set(err, PD_EINVAL, "prune asap: a step has no first-token surprisal; "
                            "score the trace first");
            goto done;
        }
        uint64_t b = p.budget > 0 ? p.budget : (uint64_t)floor(p.keep * (double)total);
        res->budget = b;
        res->used_surprisal = true;
        if (p.budget > 0) {
            snprintf(res->spec, sizeof res->spec, "asap:budget=%llu",
                     (unsigned long long)p.budget);
        } else {
            snprintf(res->spec, sizeof res->spec, "asap:keep=%g", p.keep);
        }
        st = select_budget(spans, n_steps, true, b, pruned, steps, total, err);
        break;
    }
    case PD_PRUNE_REDUNDANT:
        snprintf(res->spec, sizeof res->spec, "redundant:threshold=%g", p.threshold);
        st = select_redundant(toks, spans, n_steps, p.threshold, pruned, err);
        break;
    case PD_PRUNE_BUDGET: {
        struct pd_trace_stats ts;
        pd_metrics_trace(toks, n_tok, steps, spans, n_steps, &ts);
        double d = pd_prune_difficulty(steps, n_steps, ts.mean_entropy, &p);
        double r = p.r_min + (1.0 - p.r_min) * d;
        uint64_t b = (uint64_t)ceil(r * (double)total);
        res->difficulty = d;
        res->budget = b;
        res->used_surprisal = all_scored;
        snprintf(res->spec, sizeof res->spec, "budget:d=%.3f,budget=%llu", d,
                 (unsigned long long)b);
        st = select_budget(spans, n_steps, all_scored, b, pruned, steps, total, err);
        break;
    }
    default:
        break;
    }
    if (st != PD_OK) {
        goto done;
    }
    res->n_steps = n_steps;
    res->tokens_before = total;
    res->tokens_after = total;
    for (size_t j = 0; j < n_steps; j++) {
        steps[j].pruned = pruned[j];
        if (pruned[j]) {
            res->n_pruned++;
            res->tokens_after -= spans[j].i_end - spans[j].i_begin;
        }
    }
    if (p.strategy == PD_PRUNE_ASAP || p.strategy == PD_PRUNE_BUDGET) {
        res->budget_met = res->tokens_after <= res->budget;
    }
done:
    free(spans);
    free(pruned);
    return st;
}

enum pd_status pd_prune_token_mask(const struct pd_token_rec *toks, size_t n_tok,
                                   const struct pd_step_rec *steps, size_t n_steps,
                                   uint8_t *drop, struct pd_err *err)
{
    struct pd_step_span *spans = pd_calloc(n_steps ? n_steps : 1, sizeof *spans);
    if (spans == NULL) {
        return pd_err_set(err, PD_ENOMEM, "prune: out of memory");
    }
    enum pd_status st = pd_metrics_spans(toks, n_tok, steps, n_steps, spans, err);
    if (st == PD_OK) {
        memset(drop, 0, n_tok);
        for (size_t j = 0; j < n_steps; j++) {
            if (steps[j].pruned && spans[j].i_end > spans[j].i_begin) {
                memset(drop + spans[j].i_begin, 1, spans[j].i_end - spans[j].i_begin);
            }
        }
    }
    free(spans);
    return st;
}

/* Equal on the first n tokens, where a sequence that ended counts as different from one
 * that goes on. */
static bool same_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool ha = i < na, hb = i < nb;
        if (ha != hb || (ha && a[i] != b[i])) {
            return false;
        }
        if (!ha) {
            break;
        }
    }
    return true;
}

enum pd_status pd_prune_verify(struct pd_scorer *s, const struct pd_token_rec *toks,
                               size_t n_tok, const struct pd_step_rec *steps, size_t n_steps,
                               uint32_t n_greedy, struct pd_prune_check *out,
                               struct pd_err *err)
{
    memset(out, 0, sizeof *out);
    uint8_t *drop = pd_calloc(n_tok ? n_tok : 1, 1);
    int32_t *trace_answer = pd_malloc_array(n_tok ? n_tok : 1, sizeof *trace_answer);
    struct pd_score_answer *full = pd_calloc(1, sizeof *full);
    struct pd_score_answer *part = pd_calloc(1, sizeof *part);
    enum pd_status st = PD_OK;
    if (drop == NULL || trace_answer == NULL || full == NULL || part == NULL) {
        st = pd_err_set(err, PD_ENOMEM, "prune verify: out of memory");
        goto done;
    }
    if ((st = pd_prune_token_mask(toks, n_tok, steps, n_steps, drop, err)) != PD_OK) {
        goto done;
    }
    size_t n_trace_answer = 0;
    for (size_t i = 0; i < n_tok; i++) {
        if (toks[i].role == PD_ROLE_ANSWER && !drop[i]) {
            trace_answer[n_trace_answer++] = toks[i].id;
        }
    }
    if ((st = pd_score_answer(s, toks, n_tok, NULL, n_greedy, full, err)) != PD_OK) {
        pd_err_prefix(err, "full trace");
        goto done;
    }
    if ((st = pd_score_answer(s, toks, n_tok, drop, n_greedy, part, err)) != PD_OK) {
        pd_err_prefix(err, "pruned trace");
        goto done;
    }
    out->n_answer = part->n_answer;
    out->logprob_full = full->logprob;
    out->logprob_pruned = part->logprob;
    out->delta = part->logprob - full->logprob;
    out->n_compare = n_greedy < n_trace_answer ? n_greedy : n_trace_answer;
    out->greedy_same = same_prefix(full->greedy, full->n_greedy, part->greedy, part->n_greedy,
                                   out->n_compare);
    out->greedy_full_matches = same_prefix(full->greedy, full->n_greedy, trace_answer,
                                           n_trace_answer, out->n_compare);
    out->greedy_pruned_matches = same_prefix(part->greedy, part->n_greedy, trace_answer,
                                             n_trace_answer, out->n_compare);
    out->n_greedy = part->n_greedy;
    memcpy(out->greedy_pruned, part->greedy, part->n_greedy * sizeof *part->greedy);
    out->n_greedy_full = full->n_greedy;
    memcpy(out->greedy_full, full->greedy, full->n_greedy * sizeof *full->greedy);
done:
    free(drop);
    free(trace_answer);
    free(full);
    free(part);
    return st;
}
