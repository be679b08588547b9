/* pairs.c - grading, the verification rule, sample pairs and step forks (pairs.h). */
#include "pairs.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

/* ---- grading ---------------------------------------------------------------------------- */

/* The content of the last \boxed{...} of s (braces balanced) into out; false when none. */
static bool last_boxed(const char *s, char out[PD_ANSWER_MAX])
{
    const char *b = NULL;
    for (const char *p = strstr(s, "\\boxed{"); p; p = strstr(p + 1, "\\boxed{")) {
        b = p;
    }
    if (!b) {
        return false;
    }
    const char *start = b + 7, *q = start;
    int depth = 1;
    for (; *q && depth > 0; q++) {
        depth += *q == '{';
        depth -= *q == '}';
    }
    if (depth != 0) {
        return false;
    }
    size_t n = (size_t)(q - 1 - start);
    if (n > PD_ANSWER_MAX - 1) {
        n = PD_ANSWER_MAX - 1;
    }
    memcpy(out, start, n);
    out[n] = '\0';
    return true;
}

int pd_pairs_grade(const char *completion, size_t len, const char *reference,
                   char answer[PD_ANSWER_MAX])
{
    answer[0] = '\0';
    if (!reference || !*reference) {
        return -1;
    }
    if (!pd_answer_extract(completion, len, "<think>", "</think>", answer)) {
        return 0;
    }
    char boxed[PD_ANSWER_MAX];
    const char *ref = last_boxed(reference, boxed) ? boxed : reference;
    return pd_answer_match(answer, ref) ? 1 : 0;
}

/* ---- verification rule --------------------------------------------------------------------- */

enum pd_status pd_verify_rule_parse(const char *s, struct pd_verify_rule *out,
                                    struct pd_err *err)
{
    out->kind = PD_VERIFY_GREEDY;
    out->max_drop = 0;
    if (s && strcmp(s, "greedy") == 0) {
        return PD_OK;
    }
    if (s && strncmp(s, "logprob", 7) == 0 && (s[7] == '\0' || s[7] == ':')) {
        out->kind = PD_VERIFY_LOGPROB;
        if (s[7] == '\0') {
            return PD_OK;
        }
        char *end;
        errno = 0;
        double v = strtod(s + 8, &end);
        if (errno == 0 && end != s + 8 && *end == '\0' && isfinite(v) && v >= 0) {
            out->max_drop = v;
            return PD_OK;
        }
    }
    return pd_err_set(err, PD_EINVAL,
                      "verification rule '%s': expected greedy or logprob:D (D >= 0 nats)",
                      s ? s : "");
}

bool pd_verify_passes(const struct pd_verify_rule *r, bool greedy_same, double lp_with,
                      double lp_without)
{
    if (r->kind == PD_VERIFY_GREEDY) {
        return greedy_same;
    }
    return isfinite(lp_with) && isfinite(lp_without) && lp_without >= lp_with - r->max_drop;
}

/* ---- samples ----------------------------------------------------------------------------- */

bool pd_pairs_mode_parse(const char *s, unsigned *modes)
{
    static const struct {
        const char *name;
        unsigned modes;
    } t[] = {{"correctness", PD_PAIRS_CORRECTNESS},
             {"length", PD_PAIRS_LENGTH},
             {"both", PD_PAIRS_BOTH}};
    for (size_t i = 0; s && i < sizeof t / sizeof t[0]; i++) {
        if (strcmp(s, t[i].name) == 0) {
            *modes = t[i].modes;
            return true;
        }
    }
    return false;
}

double pd_pairs_saving(int64_t shorter, int64_t longer)
{
    return longer > 0 ? 1.0 - (double)shorter / (double)longer : 0.0;
}

/* Correct samples: known lengths first, shortest first, then by id. */
static int cmp_by_length(const void *a, const void *b)
{
    const struct pd_pair_sample *x = a, *y = b;
    bool kx = x->tokens >= 0, ky = y->tokens >= 0;
    if (kx != ky) {
        return kx ? -1 : 1;
    }
    if (kx && x->tokens != y->tokens) {
        return x->tokens < y->tokens ? -1 : 1;
    }
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_by_id(const void *a, const void *b)
{
    const struct pd_pair_sample *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

size_t pd_pairs_from_samples(const struct pd_pair_sample *s, size_t n, unsigned modes,
                             double min_saving, struct pd_pair *out, bool *oom)
{
    *oom = false;
    if (n == 0) {
        return 0;
    }
    struct pd_pair_sample *good = pd_malloc_array(n, sizeof *good);
    struct pd_pair_sample *bad = pd_malloc_array(n, sizeof *bad);
    if (!good || !bad) {
        free(good);
        free(bad);
        *oom = true;
        return 0;
    }
    size_t n_good = 0, n_bad = 0, n_out = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i].correct == 1) {
            good[n_good++] = s[i];
        } else if (s[i].correct == 0) {
            bad[n_bad++] = s[i];
        }
    }
    qsort(good, n_good, sizeof *good, cmp_by_length);
    qsort(bad, n_bad, sizeof *bad, cmp_by_id);
    if (modes & PD_PAIRS_CORRECTNESS) {
        for (size_t i = 0; i < n_good && i < n_bad; i++) {
            out[n_out++] = (struct pd_pair){good[i].id, bad[i].id, PD_PAIR_CORRECTNESS};
        }
    }
    if (modes & PD_PAIRS_LENGTH) {
        size_t known = 0;
        while (known < n_good && good[known].tokens >= 0) {
            known++;
        }
        for (size_t i = 0, j = known; j > 0 && i < j - 1; i++, j--) {
            const struct pd_pair_sample *a = &good[i], *b = &good[j - 1];
            if (a->tokens >= b->tokens || pd_pairs_saving(a->tokens, b->tokens) < min_saving) {
                break; /* inner pairs are closer still */
            }
            out[n_out++] = (struct pd_pair){a->id, b->id, PD_PAIR_LENGTH};
        }
    }
    free(good);
    free(bad);
    return n_out;
}

/* ---- step forks ----------------------------------------------------------------------------- */

int32_t pd_pairs_step_at(const struct pd_step_rec *steps, size_t n, int64_t pos)
{
    for (size_t i = 0; i < n; i++) {
        if (steps[i].pos_begin == pos) {
            return (int32_t)i;
        }
    }
    return -1;
}

int64_t pd_pairs_next_step_end(const struct pd_step_rec *steps, size_t n, int64_t pos,
                               int64_t think_end)
{
    int64_t end = think_end;
    for (size_t i = 0; i < n; i++) {
        if (steps[i].pos_begin > pos && steps[i].pos_begin < end) {
            end = steps[i].pos_begin;
        }
    }
    return end;
}

int64_t pd_pairs_think_end(const struct pd_token_rec *toks, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (toks[i].role == PD_ROLE_ANSWER) {
            return toks[i].pos;
        }
    }
    return n > 0 ? toks[n - 1].pos + 1 : 0;
}
