/* cli_dataset.c - the records of `ponder export --format dpo|step-dpo|kto` (cli_dataset.h):
 * reads preferences, tags, prune checks and graded questions from the store, chooses the
 * pairs with analysis/pairs.h and hands each record to the store's dataset writer.
 *
 * Order (deterministic, so the same database and flags give the same bytes): the sources
 * in the order marked, pruned, samples (dpo) / marked, pruned (step-dpo) / reference,
 * verified (kto); within a source by session or question id. Memory: the session list's
 * ids and tags, the preference list, one question's samples and one record at a time. */
#include "cli_dataset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "mem.h"
#include "cli.h"
#include "store_jsonl.h"
#include "store_labels.h"
#include "store_replay.h"

/* ---- sources ----------------------------------------------------------------------------- */

static const struct {
    const char *name;
    unsigned bit;
    unsigned formats;   /* 1 << pd_dataset_format */
} k_sources[] = {
    {"marked", PD_CLI_SRC_MARKED, 1u << PD_DATASET_DPO | 1u << PD_DATASET_STEP_DPO},
    {"pruned", PD_CLI_SRC_PRUNED, 1u << PD_DATASET_DPO | 1u << PD_DATASET_STEP_DPO},
    {"samples", PD_CLI_SRC_SAMPLES, 1u << PD_DATASET_DPO},
    {"reference", PD_CLI_SRC_REFERENCE, 1u << PD_DATASET_KTO},
    {"verified", PD_CLI_SRC_VERIFIED, 1u << PD_DATASET_KTO},
};

unsigned pd_cli_dataset_sources_all(enum pd_dataset_format f)
{
    unsigned all = 0;
    for (size_t i = 0; i < sizeof k_sources / sizeof k_sources[0]; i++) {
        if (k_sources[i].formats & (1u << f)) {
            all |= k_sources[i].bit;
        }
    }
    return all;
}

bool pd_cli_dataset_sources_parse(enum pd_dataset_format f, const char *s, unsigned *out)
{
    *out = 0;
    if (strcmp(s, "all") == 0) {
        *out = pd_cli_dataset_sources_all(f);
        return true;
    }
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        bool hit = false;
        for (size_t i = 0; i < sizeof k_sources / sizeof k_sources[0] && !hit; i++) {
            if (strlen(k_sources[i].name) == n && strncmp(p, k_sources[i].name, n) == 0) {
                if (!(k_sources[i].formats & (1u << f))) {
                    pd_cli_fail(2, "export: source '%s' does not apply to %s", k_sources[i].name,
                                pd_dataset_format_name(f));
                    return false;
                }
                *out |= k_sources[i].bit;
                hit = true;
            }
        }
        if (!hit) {
            pd_cli_fail(2, "export: --sources: unknown source '%.*s' (marked, pruned, samples "
                           "for dpo; marked, pruned for step-dpo; reference, verified for kto)",
                        (int)n, p);
            return false;
        }
        p += n + (e != NULL);
    }
    if (*out == 0) {
        pd_cli_fail(2, "export: --sources: empty list");
        return false;
    }
    return true;
}

/* ---- the sessions ------------------------------------------------------------------------- */

struct sess {
    int64_t id;
    int64_t parent;
    int64_t fork;
    bool tag_chosen;
    bool tag_rejected;
    bool pruned;            /* has prunes */
};

struct ctx {
    struct pd_store *st;
    const struct pd_cli_dataset_opts *o;
    struct pd_dataset *d;
    struct sess *s;         /* owned, by id */
    size_t n_s;
    struct pd_err err;
};

static int cmp_sess(const void *a, const void *b)
{
    const struct sess *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static const struct sess *find(const struct ctx *c, int64_t id)
{
    struct sess key = {.id = id};
    return bsearch(&key, c->s, c->n_s, sizeof *c->s, cmp_sess);
}

static bool has_tag(const char *tags, const char *t)
{
    size_t n = strlen(t);
    for (const char *p = tags; *p;) {
        const char *e = strchr(p, ',');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == n && strncmp(p, t, n) == 0) {
            return true;
        }
        p += k + (e != NULL);
    }
    return false;
}

static enum pd_status load_sessions(struct ctx *c)
{
    struct pd_store_session_info *all = NULL;
    size_t n = 0;
    enum pd_status rc = pd_store_session_list(c->st, &all, &n, &c->err);
    if (rc != PD_OK) {
        return rc;
    }
    c->s = pd_calloc(n ? n : 1, sizeof *c->s);
    if (!c->s) {
        rc = pd_err_set(&c->err, PD_ENOMEM, "export: out of memory");
    }
    for (size_t i = 0; c->s && i < n; i++) {
        c->s[i] = (struct sess){all[i].id, all[i].parent_id, all[i].fork_pos,
                                has_tag(all[i].tags, "chosen"), has_tag(all[i].tags, "rejected"),
                                all[i].n_pruned > 0};
    }
    c->n_s = c->s ? n : 0;
    for (size_t i = 0; i < n; i++) {
        pd_store_session_info_free(&all[i]);
    }
    free(all);
    return rc; /* the list is ordered by id already */
}

/* ---- marked pairs: preferences and tags ------------------------------------------------------ */

struct mark {
    int64_t chosen;
    int64_t rejected;
};

static int cmp_mark(const void *a, const void *b)
{
    const struct mark *x = a, *y = b;
    if (x->chosen != y->chosen) {
        return (x->chosen > y->chosen) - (x->chosen < y->chosen);
    }
    return (x->rejected > y->rejected) - (x->rejected < y->rejected);
}

static bool push_mark(struct mark **m, size_t *n, size_t *cap, int64_t c, int64_t r)
{
    struct mark *g = pd_grow_array(*m, cap, *n + 1, sizeof **m);
    if (!g) {
        return false;
    }
    *m = g;
    (*m)[(*n)++] = (struct mark){c, r};
    return true;
}

/* The marked pairs: every stored preference, then the pairs the tags make (docs/export.md):
 * a branch tagged chosen over its parent (unless the parent is tagged chosen too), a
 * parent over its branch tagged rejected (unless the parent is tagged rejected too), and a
 * chosen sibling over a rejected sibling. A tag pair between two sessions that a stored
 * preference already relates (either way) is dropped: the explicit mark wins. Sorted by
 * (chosen, rejected), without duplicates. *out owned. */
static enum pd_status marked_pairs(struct ctx *c, struct mark **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    struct pd_pref *p = NULL;
    size_t n_p = 0;
    enum pd_status rc = pd_store_prefs_get(c->st, 0, &p, &n_p, &c->err);
    if (rc != PD_OK) {
        return rc;
    }
    struct mark *m = NULL, *t = NULL;
    size_t n = 0, cap = 0, n_t = 0, cap_t = 0;
    bool ok = true;
    for (size_t i = 0; ok && i < n_p; i++) {
        ok = push_mark(&m, &n, &cap, p[i].chosen_id, p[i].rejected_id);
    }
    pd_store_prefs_free(p, n_p);
    for (size_t i = 0; ok && i < c->n_s; i++) {
        const struct sess *b = &c->s[i];
        const struct sess *par = b->parent ? find(c, b->parent) : NULL;
        if (par && b->tag_chosen && !b->tag_rejected && !par->tag_chosen) {
            ok = push_mark(&t, &n_t, &cap_t, b->id, par->id);
        }
        if (ok && par && b->tag_rejected && !b->tag_chosen && !par->tag_rejected) {
            ok = push_mark(&t, &n_t, &cap_t, par->id, b->id);
        }
        for (size_t j = 0; ok && par && b->tag_chosen && !b->tag_rejected && j < c->n_s; j++) {
            const struct sess *r = &c->s[j];
            if (r->parent == b->parent && r->id != b->id && r->tag_rejected && !r->tag_chosen) {
                ok = push_mark(&t, &n_t, &cap_t, b->id, r->id);
            }
        }
    }
    if (ok && m) {
        qsort(m, n, sizeof *m, cmp_mark);
    }
    for (size_t i = 0; ok && i < n_t; i++) {
        struct mark fwd = t[i], rev = {t[i].rejected, t[i].chosen};
        bool known = (m && bsearch(&fwd, m, n, sizeof *m, cmp_mark)) ||
                     (m && bsearch(&rev, m, n, sizeof *m, cmp_mark));
        if (!known) {
            ok = push_mark(&m, &n, &cap, fwd.chosen, fwd.rejected);
        }
    }
    free(t);
    if (!ok) {
        free(m);
        return pd_err_set(&c->err, PD_ENOMEM, "export: out of memory");
    }
    if (m) {
        qsort(m, n, sizeof *m, cmp_mark);
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k == 0 || cmp_mark(&m[k - 1], &m[i]) != 0) {
            m[k++] = m[i];
        }
    }
    *out = m;
    *n_out = k;
    return PD_OK;
}

/* ---- traces ------------------------------------------------------------------------------- */

/* The completion's token counts: the whole trace and with its pruned steps left out;
 * *known false when the trace is not scored (counts are not model tokens). */
static enum pd_status completion_tokens(struct ctx *c, int64_t sid, int64_t *full, int64_t *kept,
                                        bool *known)
{
    char *text = NULL;
    size_t nf = 0, nk = 0;
    bool sf = false, sk = false;
    enum pd_status rc = pd_jsonl_session_final(c->st, sid, true, &text, NULL, &nf, &sf, &c->err);
    free(text);
    text = NULL;
    if (rc == PD_OK && kept) {
        rc = pd_jsonl_session_final(c->st, sid, false, &text, NULL, &nk, &sk, &c->err);
        free(text);
    }
    *full = (int64_t)nf;
    if (kept) {
        *kept = (int64_t)nk;
    }
    *known = sf;
    return rc;
}

/* The end of session sid's thinking (pd_pairs_think_end over its tokens). */
static enum pd_status think_end(struct ctx *c, int64_t sid, int64_t *end)
{
    struct pd_replay *r = NULL;
    enum pd_status rc = pd_replay_open(c->st, sid, &r, &c->err);
    if (rc != PD_OK) {
        return rc;
    }
    *end = pd_replay_length(r);
    enum { CH = 256 };
    struct pd_token_rec *tok = pd_calloc(CH, sizeof *tok);
    bool found = false;
    rc = tok ? PD_OK : pd_err_set(&c->err, PD_ENOMEM, "export: out of memory");
    while (rc == PD_OK && !found) {
        size_t got = 0;
        rc = pd_replay_read(r, tok, CH, &got, &c->err);
        if (got > 0 && !found && pd_pairs_think_end(tok, got) < tok[got - 1].pos + 1) {
            *end = pd_pairs_think_end(tok, got);
            found = true;
        }
        for (size_t i = 0; i < got; i++) {
            pd_token_rec_free(&tok[i]);
        }
        if (got == 0) {
            break;
        }
    }
    free(tok);
    pd_replay_close(&r);
    return rc;
}

/* ---- dpo ------------------------------------------------------------------------------------ */

static enum pd_status dpo_marked(struct ctx *c)
{
    struct mark *m = NULL;
    size_t n = 0;
    enum pd_status rc = marked_pairs(c, &m, &n);
    for (size_t i = 0; rc == PD_OK && i < n; i++) {
        rc = pd_dataset_add_pair(c->d, PD_SRC_MARKED, (struct pd_dataset_side){m[i].chosen, false},
                                 (struct pd_dataset_side){m[i].rejected, false}, &c->err);
    }
    free(m);
    return rc;
}

/* *has: the session has a current prune check and is not graded wrong (a shorter wrong
 * trace is nothing to prefer); *pass: that check passes the rule. */
static enum pd_status prune_passes(struct ctx *c, int64_t sid, bool *has, bool *pass)
{
    struct pd_prune_check_rec chk;
    struct pd_session_grade g;
    bool found = false;
    enum pd_status rc = pd_store_session_grade(c->st, sid, &g, &c->err);
    bool wrong = rc == PD_OK && g.correct == 0;
    if (rc == PD_OK) {
        pd_store_session_grade_free(&g);
        rc = pd_store_prune_check_get(c->st, sid, &chk, &found, &c->err);
    }
    *has = rc == PD_OK && found && chk.current && !wrong;
    *pass = *has && pd_verify_passes(&c->o->rule, chk.greedy_same, chk.logprob_full,
                                     chk.logprob_pruned);
    if (found) {
        pd_store_prune_check_free(&chk);
    }
    return rc;
}

static enum pd_status dpo_pruned(struct ctx *c)
{
    enum pd_status rc = PD_OK;
    for (size_t i = 0; rc == PD_OK && i < c->n_s; i++) {
        if (!c->s[i].pruned) {
            continue;
        }
        int64_t sid = c->s[i].id, full = 0, kept = 0;
        bool has = false, pass = false, known = false;
        rc = prune_passes(c, sid, &has, &pass);
        if (rc == PD_OK && pass) {
            rc = completion_tokens(c, sid, &full, &kept, &known);
        }
        if (rc == PD_OK && pass && kept < full &&
            pd_pairs_saving(kept, full) >= c->o->min_saving) {
            rc = pd_dataset_add_pair(c->d, PD_SRC_PRUNED, (struct pd_dataset_side){sid, true},
                                     (struct pd_dataset_side){sid, false}, &c->err);
        }
    }
    return rc;
}

static enum pd_status dpo_samples(struct ctx *c)
{
    int64_t *q = NULL;
    size_t n_q = 0;
    enum pd_status rc = pd_store_question_ids(c->st, &q, &n_q, &c->err);
    for (size_t k = 0; rc == PD_OK && k < n_q; k++) {
        struct pd_sample *s = NULL;
        size_t n = 0;
        rc = pd_store_question_samples(c->st, q[k], &s, &n, &c->err);
        struct pd_pair_sample *ps = pd_calloc(n ? n : 1, sizeof *ps);
        struct pd_pair *pairs = pd_calloc(n ? n : 1, sizeof *pairs);
        if (rc == PD_OK && (!ps || !pairs)) {
            rc = pd_err_set(&c->err, PD_ENOMEM, "export: out of memory");
        }
        for (size_t i = 0; rc == PD_OK && i < n; i++) {
            int64_t full = 0;
            bool known = false;
            ps[i].id = s[i].session_id;
            ps[i].correct = s[i].correct;
            rc = completion_tokens(c, s[i].session_id, &full, NULL, &known);
            ps[i].tokens = known ? full : -1;
        }
        bool oom = false;
        size_t np = rc == PD_OK ? pd_pairs_from_samples(ps, n, c->o->pair_modes,
                                                        c->o->min_saving, pairs, &oom)
                                : 0;
        if (rc == PD_OK && oom) {
            rc = pd_err_set(&c->err, PD_ENOMEM, "export: out of memory");
        }
        for (size_t i = 0; rc == PD_OK && i < np; i++) {
            enum pd_dataset_source src = pairs[i].kind == PD_PAIR_LENGTH ? PD_SRC_LENGTH
                                                                         : PD_SRC_CORRECTNESS;
            rc = pd_dataset_add_pair(c->d, src, (struct pd_dataset_side){pairs[i].chosen, false},
                                     (struct pd_dataset_side){pairs[i].rejected, false},
                                     &c->err);
        }
        free(ps);
        free(pairs);
        free(s);
    }
    free(q);
    return rc;
}

/* ---- step-dpo ------------------------------------------------------------------------------ */

/* The next step of session x after position fork: x's step that begins at fork, to its
 * end; without one, from fork to x's next step begin or the end of its thinking. */
static enum pd_status next_step(struct ctx *c, int64_t x, int64_t fork, struct pd_dataset_span *out)
{
    struct pd_step_rec *steps = NULL;
    size_t n = 0;
    int64_t te = 0;
    enum pd_status rc = pd_store_steps_get(c->st, x, &steps, &n, &c->err);
    if (rc == PD_OK) {
        rc = think_end(c, x, &te);
    }
    if (rc == PD_OK) {
        int32_t k = pd_pairs_step_at(steps, n, fork);
        int64_t end = k >= 0 && steps[k].pos_end < te ? steps[k].pos_end
                      : k >= 0                        ? te
                                                      : pd_pairs_next_step_end(steps, n, fork, te);
        *out = (struct pd_dataset_span){x, fork, end};
    }
    free(steps);
    return rc;
}

static enum pd_status step_marked(struct ctx *c, uint64_t *n_not_fork)
{
    struct mark *m = NULL;
    size_t n = 0;
    enum pd_status rc = marked_pairs(c, &m, &n);
    for (size_t i = 0; rc == PD_OK && i < n; i++) {
        const struct sess *ch = find(c, m[i].chosen), *rj = find(c, m[i].rejected);
        int64_t base = 0, fork = 0;
        if (ch && rj && ch->parent == rj->id) {
            base = rj->id;
            fork = ch->fork;
        } else if (ch && rj && rj->parent == ch->id) {
            base = ch->id;
            fork = rj->fork;
        } else if (ch && rj && ch->parent && ch->parent == rj->parent && ch->fork == rj->fork) {
            base = ch->parent;
            fork = ch->fork;
        }
        struct pd_step_rec *steps = NULL;
        size_t ns = 0;
        int32_t k = -1;
        if (base) {
            rc = pd_store_steps_get(c->st, base, &steps, &ns, &c->err);
            k = rc == PD_OK ? pd_pairs_step_at(steps, ns, fork) : -1;
        }
        if (rc == PD_OK && k < 0) {
            (*n_not_fork)++; /* not two continuations parting at a step boundary */
        } else if (rc == PD_OK) {
            struct pd_dataset_step s = {.prompt_of = base, .prefix = {base, 0, fork},
                                        .step_index = steps[k].index};
            rc = next_step(c, ch->id, fork, &s.chosen);
            if (rc == PD_OK) {
                rc = next_step(c, rj->id, fork, &s.rejected);
            }
            if (rc == PD_OK) {
                rc = pd_dataset_add_step(c->d, PD_SRC_MARKED, &s, &c->err);
            }
        }
        free(steps);
    }
    free(m);
    return rc;
}

static int cmp_step_pos(const void *a, const void *b)
{
    const struct pd_step_rec *x = a, *y = b;
    return (x->pos_begin > y->pos_begin) - (x->pos_begin < y->pos_begin);
}

static enum pd_status step_pruned(struct ctx *c)
{
    enum pd_status rc = PD_OK;
    for (size_t i = 0; rc == PD_OK && i < c->n_s; i++) {
        int64_t sid = c->s[i].id;
        struct pd_step_check_rec *chk = NULL;
        size_t n_chk = 0;
        rc = pd_store_step_checks_get(c->st, sid, &chk, &n_chk, &c->err);
        struct pd_step_rec *steps = NULL;
        size_t ns = 0;
        struct pd_session_grade g = {0};
        if (rc == PD_OK && n_chk > 0) {
            rc = pd_store_steps_get(c->st, sid, &steps, &ns, &c->err);
        }
        if (rc == PD_OK && n_chk > 0) {
            rc = pd_store_session_grade(c->st, sid, &g, &c->err);
        }
        if (steps) {
            qsort(steps, ns, sizeof *steps, cmp_step_pos);
        }
        /* a trace graded wrong teaches nothing by keeping its steps */
        for (size_t k = 0; rc == PD_OK && g.correct != 0 && k < n_chk; k++) {
            if (pd_verify_passes(&c->o->rule, chk[k].greedy_same, chk[k].logprob_full,
                                 chk[k].logprob_without)) {
                continue; /* removing the step kept the answer */
            }
            size_t j = 0;
            while (j < ns && steps[j].index != chk[k].step_index) {
                j++;
            }
            if (j + 1 >= ns) {
                continue; /* no step follows it */
            }
            struct pd_dataset_step s = {
                .prompt_of = sid,
                .prefix = {sid, 0, steps[j].pos_begin},
                .chosen = {sid, steps[j].pos_begin, steps[j].pos_end},
                .rejected = {sid, steps[j + 1].pos_begin, steps[j + 1].pos_end},
                .step_index = steps[j].index};
            rc = pd_dataset_add_step(c->d, PD_SRC_PRUNED_STEP, &s, &c->err);
        }
        pd_store_session_grade_free(&g);
        free(steps);
        free(chk);
    }
    return rc;
}

/* ---- kto ----------------------------------------------------------------------------------- */

static enum pd_status kto_reference(struct ctx *c)
{
    int64_t *q = NULL;
    size_t n_q = 0;
    enum pd_status rc = pd_store_question_ids(c->st, &q, &n_q, &c->err);
    for (size_t k = 0; rc == PD_OK && k < n_q; k++) {
        struct pd_sample *s = NULL;
        size_t n = 0;
        rc = pd_store_question_samples(c->st, q[k], &s, &n, &c->err);
        for (size_t i = 0; rc == PD_OK && i < n; i++) {
            if (s[i].correct >= 0) {
                rc = pd_dataset_add_unpaired(c->d, PD_SRC_REFERENCE,
                                             (struct pd_dataset_side){s[i].session_id, false},
                                             s[i].correct == 1, &c->err);
            }
        }
        free(s);
    }
    free(q);
    return rc;
}

static enum pd_status kto_verified(struct ctx *c)
{
    enum pd_status rc = PD_OK;
    for (size_t i = 0; rc == PD_OK && i < c->n_s; i++) {
        bool has = false, pass = false;
        if (c->s[i].pruned) {
            rc = prune_passes(c, c->s[i].id, &has, &pass);
        }
        if (rc == PD_OK && has) {
            rc = pd_dataset_add_unpaired(c->d, PD_SRC_VERIFIED,
                                         (struct pd_dataset_side){c->s[i].id, true}, pass,
                                         &c->err);
        }
    }
    return rc;
}

/* ---- the command ---------------------------------------------------------------------------- */

static bool summary_json(const struct pd_cli_dataset_opts *o, const struct pd_dataset_result *r,
                         uint64_t n_not_fork)
{
    struct pd_buf b;
    pd_buf_init(&b);
    bool ok = pd_buf_printf(&b, "{\"format\":\"%s\",\"written\":%llu,\"skipped\":%llu,"
                                "\"filtered\":%llu,\"not_at_step\":%llu,\"out\":",
                            pd_dataset_format_name(o->dp.format),
                            (unsigned long long)r->n_written, (unsigned long long)r->n_skipped,
                            (unsigned long long)r->n_filtered, (unsigned long long)n_not_fork) &&
              pd_json_str(&b, o->out, strlen(o->out)) && pd_buf_puts(&b, ",\"sources\":{");
    for (int i = 0, k = 0; ok && i < PD_SRC_COUNT; i++) {
        if (r->per_source[i]) {
            ok = pd_buf_printf(&b, "%s\"%s\":%llu", k++ ? "," : "",
                               pd_dataset_source_name((enum pd_dataset_source)i),
                               (unsigned long long)r->per_source[i]);
        }
    }
    ok = ok && pd_buf_puts(&b, "},\"skip_reason\":") &&
         pd_json_str(&b, r->skip_reason, strlen(r->skip_reason)) && pd_buf_puts(&b, "}");
    if (ok) {
        puts(b.data);
    }
    pd_buf_deinit(&b);
    return ok;
}

int pd_cli_dataset_export(struct pd_store *st, const struct pd_cli_dataset_opts *o)
{
    struct ctx c = {.st = st, .o = o};
    pd_err_clear(&c.err);
    enum pd_status rc = pd_dataset_open(st, o->out, stdout, &o->dp, &c.d, &c.err);
    uint64_t n_not_fork = 0;
    if (rc == PD_OK) {
        rc = load_sessions(&c);
    }
    switch (o->dp.format) {
    case PD_DATASET_DPO:
        if (rc == PD_OK && (o->sources & PD_CLI_SRC_MARKED)) {
            rc = dpo_marked(&c);
        }
        if (rc == PD_OK && (o->sources & PD_CLI_SRC_PRUNED)) {
            rc = dpo_pruned(&c);
        }
        if (rc == PD_OK && (o->sources & PD_CLI_SRC_SAMPLES)) {
            rc = dpo_samples(&c);
        }
        break;
    case PD_DATASET_STEP_DPO:
        if (rc == PD_OK && (o->sources & PD_CLI_SRC_MARKED)) {
            rc = step_marked(&c, &n_not_fork);
        }
        if (rc == PD_OK && (o->sources & PD_CLI_SRC_PRUNED)) {
            rc = step_pruned(&c);
        }
        break;
    default:
        if (rc == PD_OK && (o->sources & PD_CLI_SRC_REFERENCE)) {
            rc = kto_reference(&c);
        }
        if (rc == PD_OK && (o->sources & PD_CLI_SRC_VERIFIED)) {
            rc = kto_verified(&c);
        }
        break;
    }
    if (rc == PD_OK) {
        rc = pd_dataset_commit(c.d, &c.err);
    }
    int status = 0;
    if (rc != PD_OK) {
        pd_cli_print_err(&c.err);
        status = 1;
    } else {
        const struct pd_dataset_result *r = pd_dataset_result(c.d);
        if (o->json) {
            if (!summary_json(o, r, n_not_fork)) {
                status = pd_cli_fail(1, "export: out of memory");
            }
        } else {
            fprintf(stderr, "exported %llu %s record%s to %s", (unsigned long long)r->n_written,
                    pd_dataset_format_name(o->dp.format), r->n_written == 1 ? "" : "s",
                    o->out ? o->out : "stdout");
            for (int i = 0, k = 0; i < PD_SRC_COUNT; i++) {
                if (r->per_source[i]) {
                    fprintf(stderr, "%s%s %llu", k++ ? ", " : " (",
                            pd_dataset_source_name((enum pd_dataset_source)i),
                            (unsigned long long)r->per_source[i]);
                }
            }
            fprintf(stderr, "%s", r->n_written ? ")" : "");
            if (r->n_skipped) {
                fprintf(stderr, "; %llu skipped, e.g. %s", (unsigned long long)r->n_skipped,
                        r->skip_reason);
            }
            if (r->n_filtered) {
                fprintf(stderr, "; %llu left out by the filters",
                        (unsigned long long)r->n_filtered);
            }
            if (n_not_fork) {
                fprintf(stderr, "; %llu marked pair%s not parting at a step boundary",
                        (unsigned long long)n_not_fork, n_not_fork == 1 ? "" : "s");
            }
            fputc('\n', stderr);
        }
    }
    pd_dataset_close(&c.d);
    free(c.s);
    return status;
}
