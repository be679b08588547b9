/* score.c - teacher-forced scoring of traces: building token records from text, filling
 * per-token metrics and attention summaries, answer log-probabilities under pruned
 * reasoning, greedy continuations, and per-step answer sensitivity.
 *
 * DESIGN
 * Prefix reuse.  The scorer remembers the ids its KV cache holds (cache_ids). sync_eval
 *   makes the cache hold a requested id sequence: it keeps the longest common prefix
 *   (capped so that every position whose logits the caller needs is evaluated again),
 *   truncates the cache there and evaluates the rest. Variants of one trace (a step left
 *   out, a greedy continuation) therefore cost only their differing suffixes. Positions
 *   in the cache are always contiguous indices 0..m-1: a left-out step is re-encoded, not
 *   skipped with a gap.
 * External engine.  A scorer opened with pd_scorer_open_engine has no context: scoring
 *   hands the whole id sequence to the engine's teacher callback (a remote server caches
 *   prefixes itself) and greedy decoding to its greedy callback; the bookkeeping around
 *   them (which tokens are kept, which are answer tokens, blob positions) is shared.
 * Capture.  The engine's attention capture (capture.h, summary level) is attached to the
 *   context only while pd_score_trace runs, so answer checks do not pay for it. Its blobs
 *   name context indices; they are copied into the records with the attended tokens' own
 *   positions. */
#include "score.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_blob.h"
#include "mem.h"
#include "utf8.h"
#include "capture.h"
#include "kvcache.h"
#include "metrics.h"
#include "probe.h"
#include "sampler.h"

struct pd_scorer {
    const struct pd_model *model; /* borrowed; NULL with an external engine */
    bool ext;                     /* an external engine stands in for the model */
    struct pd_score_engine eng;
    const struct pd_tok *tok;     /* borrowed, may be NULL */
    struct pd_score_params p;
    struct pd_ctx *ctx;           /* owned */
    int32_t *cache_ids;           /* owned [n_ctx]: ids the KV cache holds */
    size_t n_cache;
    bool capture;                 /* cap is initialised */
    struct pd_capture_state cap;  /* owned buffers; its hook is installed on ctx only
                                   * while pd_score_trace runs */
    pd_attn_hook_fn cap_hook;
    void *cap_hook_ud;
};

struct pd_score_params pd_score_default_params(void)
{
    struct pd_score_params p;
    memset(&p, 0, sizeof p);
    p.ctx = pd_ctx_default_params();
    p.topk = 5;
    p.capture_attn = true;
    p.attn_top_n = 8;
    return p;
}

enum pd_status pd_scorer_open(const struct pd_model *m, const struct pd_tok *tok,
                              const struct pd_score_params *params, struct pd_scorer **out,
                              struct pd_err *err)
{
    *out = NULL;
    struct pd_score_params p = params ? *params : pd_score_default_params();
    if (m == NULL) {
        return pd_err_set(err, PD_EINVAL, "scorer: no model");
    }
    if (p.topk > PD_TOPK_MAX || p.topk > m->hp.n_vocab) {
        return pd_err_set(err, PD_EINVAL, "scorer: topk %u out of range (0..%d)", p.topk,
                          PD_TOPK_MAX);
    }
    if (p.capture_attn && (p.attn_top_n < 1 || p.attn_top_n > 64)) {
        return pd_err_set(err, PD_EINVAL, "scorer: attn_top_n %u out of range (1..64)",
                          p.attn_top_n);
    }
    if (p.capture_attn && m->hp.n_layer > 255) {
        return pd_err_set(err, PD_EINVAL, "scorer: %u layers do not fit an attention "
                          "summary blob (at most 255)", m->hp.n_layer);
    }
    struct pd_scorer *s = pd_calloc(1, sizeof *s);
    if (s == NULL) {
        return pd_err_set(err, PD_ENOMEM, "scorer: out of memory");
    }
    s->model = m;
    s->tok = tok;
    s->p = p;
    enum pd_status st = pd_ctx_open(m, &p.ctx, &s->ctx, err);
    if (st != PD_OK) {
        goto fail;
    }
    s->cache_ids = pd_calloc(s->ctx->params.n_ctx, sizeof *s->cache_ids);
    if (s->cache_ids == NULL) {
        st = pd_err_set(err, PD_ENOMEM, "scorer: out of memory");
        goto fail;
    }
    if (p.capture_attn) {
        st = pd_capture_init(&s->cap, s->ctx, PD_CAPTURE_LEVEL_SUMMARY, p.attn_top_n, 0, err);
        if (st != PD_OK) {
            goto fail;
        }
        s->capture = true;
        s->cap_hook = s->ctx->attn_hook;
        s->cap_hook_ud = s->ctx->attn_hook_ud;
        s->ctx->attn_hook = NULL;
        s->ctx->attn_hook_ud = NULL;
    }
    *out = s;
    return PD_OK;
fail:
    pd_scorer_close(&s);
    return st;
}

void pd_scorer_close(struct pd_scorer **sp)
{
    if (sp == NULL || *sp == NULL) {
        return;
    }
    struct pd_scorer *s = *sp;
    if (s->capture) {
        pd_capture_deinit(&s->cap);
    }
    pd_ctx_close(&s->ctx);
    free(s->cache_ids);
    free(s);
    *sp = NULL;
}

uint32_t pd_scorer_n_ctx(const struct pd_scorer *s)
{
    if (s->ext) {
        return s->eng.n_ctx ? s->eng.n_ctx : UINT32_MAX;
    }
    return s->ctx->params.n_ctx;
}

enum pd_status pd_scorer_open_engine(const struct pd_score_engine *e, const struct pd_tok *tok,
                                     const struct pd_score_params *params,
                                     struct pd_scorer **out, struct pd_err *err)
{
    *out = NULL;
    struct pd_score_params p = params ? *params : pd_score_default_params();
    if (e == NULL || e->teacher == NULL || e->greedy == NULL || e->n_vocab == 0) {
        return pd_err_set(err, PD_EINVAL, "scorer: an external engine needs teacher and "
                          "greedy callbacks and a vocabulary size");
    }
    if (p.topk > PD_TOPK_MAX) {
        return pd_err_set(err, PD_EINVAL, "scorer: topk %u out of range (0..%d)", p.topk,
                          PD_TOPK_MAX);
    }
    struct pd_scorer *s = pd_calloc(1, sizeof *s);
    if (s == NULL) {
        return pd_err_set(err, PD_ENOMEM, "scorer: out of memory");
    }
    s->ext = true;
    s->eng = *e;
    s->tok = tok;
    s->p = p;
    *out = s;
    return PD_OK;
}

/* ---- evaluation with prefix reuse ---------------------------------------------------- */

struct eval_wrap {
    size_t offset;        /* absolute index of the call's token 0 */
    size_t lo;            /* only indices >= lo are forwarded */
    pd_logits_fn fn;
    void *ud;
};

static void eval_wrap_fn(void *ud, size_t i, int64_t pos, const float *logits)
{
    struct eval_wrap *w = ud;
    size_t abs_i = w->offset + i;
    if (abs_i >= w->lo) {
        w->fn(w->ud, abs_i, pos, logits);
    }
}

static void cache_forget(struct pd_scorer *s)
{
    pd_ctx_reset(s->ctx);
    s->n_cache = 0;
}

/* Makes the cache hold ids[0..m) (1 <= m <= n_ctx), evaluating at least from index lo
 * (lo < m), and calls fn (if any) with the logits of every index >= lo. */
static enum pd_status sync_eval(struct pd_scorer *s, const int32_t *ids, size_t m, size_t lo,
                                pd_logits_fn fn, void *ud, struct pd_err *err)
{
    size_t k = 0;
    while (k < s->n_cache && k < m && s->cache_ids[k] == ids[k]) {
        k++;
    }
    if (k > lo) {
        k = lo;
    }
    if (k == 0) {
        cache_forget(s);
    } else if (k < s->n_cache) {
        pd_kvcache_truncate(s->ctx->kv, (int64_t)k);
        s->ctx->n_past = (int64_t)k;
        s->n_cache = k;
    }
    struct eval_wrap w = {k, lo, fn, ud};
    enum pd_status st = pd_ctx_eval(s->ctx, ids + k, m - k, fn ? eval_wrap_fn : NULL, &w, err);
    if (st != PD_OK) {
        cache_forget(s);
        return st;
    }
    memcpy(s->cache_ids + k, ids + k, (m - k) * sizeof *ids);
    s->n_cache = m;
    return PD_OK;
}

static enum pd_status check_ids(const struct pd_scorer *s, const struct pd_token_rec *toks,
                                size_t n, struct pd_err *err)
{
    uint32_t n_vocab = s->ext ? s->eng.n_vocab : s->model->hp.n_vocab;
    for (size_t i = 0; i < n; i++) {
        if (toks[i].id < 0 || (uint32_t)toks[i].id >= n_vocab) {
            return pd_err_set(err, PD_EINVAL, "token at position %lld has %s id %d; scoring "
                              "needs the model's token ids", (long long)toks[i].pos,
                              toks[i].id < 0 ? "no" : "an out-of-vocabulary", toks[i].id);
        }
    }
    return PD_OK;
}

/* ---- scoring ------------------------------------------------------------------------ */

struct trace_cb {
    struct pd_scorer *s;
    struct pd_token_rec *toks;
    size_t n;
};

static void trace_logits(void *ud, size_t i, int64_t pos, const float *logits)
{
    (void)pos;
    struct trace_cb *c = ud;
    if (i + 1 < c->n) {
        struct pd_token_rec *t = &c->toks[i + 1];
        pd_probe_fill(logits, c->s->model->hp.n_vocab, t->id, c->s->p.topk, t);
    }
}

/* A copy of blob src (positions are indices into toks) with each attended index rewritten
 * as that token's own position, into *out (malloc'd). */
static enum pd_status blob_remap(const uint8_t *src, size_t src_len, size_t i,
                                 const struct pd_token_rec *toks, size_t n, uint8_t **out,
                                 struct pd_err *err)
{
    *out = NULL;
    struct pd_attn_view sv;
    if (src == NULL || !pd_attn_blob_layout(src, src_len, &sv)) {
        return pd_err_set(err, PD_EINVAL, "scorer: no attention summary for token %zu", i);
    }
    size_t len = pd_attn_blob_size(sv.n_layer, sv.n_top, 0);
    uint8_t *b = malloc(len);
    if (b == NULL) {
        return pd_err_set(err, PD_ENOMEM, "scorer: out of memory");
    }
    pd_attn_blob_init(b, sv.n_layer, sv.n_top);
    for (uint32_t l = 0; l < sv.n_layer; l++) {
        for (uint32_t k = 0; k < sv.n_top; k++) {
            uint32_t idx;
            float w;
            if (!pd_attn_view_entry(&sv, l, k, &idx, &w)) {
                continue;
            }
            if (idx >= n || toks[idx].pos >= (int64_t)PD_ATTN_POS_PAD) {
                free(b);
                return pd_err_set(err, PD_EINVAL, "scorer: token %zu attends to index %u "
                                  "outside the trace", i, idx);
            }
            pd_attn_blob_set(b, l, k, (uint32_t)toks[idx].pos, w > 1.0f ? 1.0f : w);
        }
    }
    *out = b;
    return PD_OK;
}

/* Copies the capture's blob of each token into its record, rewriting the attended
 * positions (context indices) as the tokens' own positions. */
static enum pd_status take_blobs(struct pd_scorer *s, struct pd_token_rec *toks, size_t n,
                                 struct pd_err *err)
{
    uint32_t n_layer = s->model->hp.n_layer, n_top = s->p.attn_top_n;
    size_t len = pd_attn_blob_size(n_layer, n_top, 0);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *src = pd_capture_blob(&s->cap, i);
        if (len != s->cap.blob_len) {
            return pd_err_set(err, PD_EINVAL, "scorer: no attention summary for token %zu", i);
        }
        enum pd_status st = blob_remap(src, s->cap.blob_len, i, toks, n, &toks[i].attn, err);
        if (st != PD_OK) {
            return st;
        }
        toks[i].attn_len = len;
    }
    return PD_OK;
}

/* pd_score_trace through an external engine: its records, blob positions remapped. */
static enum pd_status ext_trace(struct pd_scorer *s, struct pd_token_rec *toks,
                                const int32_t *ids, size_t n, struct pd_err *err)
{
    struct pd_token_rec *tmp = pd_calloc(n, sizeof *tmp);
    if (tmp == NULL) {
        return pd_err_set(err, PD_ENOMEM, "scorer: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        tmp[i].pos = (int64_t)i;
        tmp[i].id = ids[i];
        tmp[i].logprob = NAN;
        tmp[i].entropy = NAN;
    }
    enum pd_status st = s->eng.teacher(s->eng.ud, ids, n, s->p.topk, s->p.capture_attn, tmp,
                                       err);
    for (size_t i = 0; st == PD_OK && i < n; i++) {
        struct pd_token_rec *t = &toks[i];
        if (i > 0) {
            t->logprob = tmp[i].logprob;
            t->entropy = tmp[i].entropy;
            t->n_top = tmp[i].n_top;
            memcpy(t->top, tmp[i].top, sizeof t->top);
            t->flags = (t->flags & ~(uint32_t)PD_TOKF_ENTROPY_EST) |
                       (tmp[i].flags & PD_TOKF_ENTROPY_EST);
        }
        if (s->p.capture_attn && tmp[i].attn) {
            st = blob_remap(tmp[i].attn, tmp[i].attn_len, i, toks, n, &t->attn, err);
            t->attn_len = t->attn ? tmp[i].attn_len : 0;
        }
    }
    pd_score_tokens_free(tmp, n);
    return st;
}

enum pd_status pd_score_trace(struct pd_scorer *s, struct pd_token_rec *toks, size_t n,
                              struct pd_err *err)
{
    if (n == 0) {
        return PD_OK;
    }
    enum pd_status st = check_ids(s, toks, n, err);
    if (st != PD_OK) {
        return st;
    }
    if (n > pd_scorer_n_ctx(s)) {
        return pd_err_set(err, PD_EINVAL, "trace of %zu tokens does not fit the context "
                          "(%u slots)", n, pd_scorer_n_ctx(s));
    }
    int32_t *ids = pd_malloc_array(n, sizeof *ids);
    if (ids == NULL) {
        return pd_err_set(err, PD_ENOMEM, "scorer: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        struct pd_token_rec *t = &toks[i];
        ids[i] = t->id;
        t->logprob = NAN;
        t->entropy = NAN;
        t->n_top = 0;
        t->flags &= ~(uint32_t)(PD_TOKF_NO_METRICS | PD_TOKF_ENTROPY_EST);
        free(t->attn);
        t->attn = NULL;
        t->attn_len = 0;
    }
    if (s->ext) {
        st = ext_trace(s, toks, ids, n, err);
        free(ids);
        return st;
    }
    struct trace_cb cb = {s, toks, n};
    if (s->capture) {
        pd_capture_rewind(&s->cap, 0);
        if ((st = pd_capture_begin(&s->cap, 0, n, err)) != PD_OK) {
            free(ids);
            return st;
        }
        s->ctx->attn_hook = s->cap_hook;
        s->ctx->attn_hook_ud = s->cap_hook_ud;
    }
    /* lo = 0: every token's attention and every next-token distribution are needed, so
     * the evaluation starts at position 0, which is where the capture call begins */
    st = sync_eval(s, ids, n, 0, trace_logits, &cb, err);
    s->ctx->attn_hook = NULL;
    s->ctx->attn_hook_ud = NULL;
    if (st == PD_OK && s->capture) {
        st = take_blobs(s, toks, n, err);
    }
    free(ids);
    return st;
}

/* ---- answers -------------------------------------------------------------------------- */

struct answer_cb {
    const struct pd_scorer *s;
    const int32_t *ids;
    const uint8_t *is_answer; /* [m] */
    size_t m;
    double sum;
    size_t count;
};

static void answer_logits(void *ud, size_t i, int64_t pos, const float *logits)
{
    (void)pos;
    struct answer_cb *c = ud;
    if (i + 1 < c->m && c->is_answer[i + 1]) {
        struct pd_dist_stats st = pd_probe_stats(logits, c->s->model->hp.n_vocab);
        c->sum += pd_probe_logprob(logits, st, c->ids[i + 1]);
        c->count++;
    }
}

/* pd_score_answer's work through an external engine: the kept sequence ids[0..m)
 * teacher-forced for the answer positions, greedy from ids[0..ka). */
static enum pd_status ext_answer(struct pd_scorer *s, const int32_t *ids,
                                 const uint8_t *is_answer, size_t m, size_t ka,
                                 uint32_t n_greedy, struct pd_score_answer *out,
                                 struct pd_err *err)
{
    struct pd_token_rec *tmp = pd_calloc(m, sizeof *tmp);
    if (tmp == NULL) {
        return pd_err_set(err, PD_ENOMEM, "scorer: out of memory");
    }
    for (size_t i = 0; i < m; i++) {
        tmp[i].pos = (int64_t)i;
        tmp[i].id = ids[i];
        tmp[i].logprob = NAN;
        tmp[i].entropy = NAN;
    }
    enum pd_status st = s->eng.teacher(s->eng.ud, ids, m, 0, false, tmp, err);
    for (size_t i = 1; st == PD_OK && i < m; i++) {
        if (is_answer[i]) {
            if (isnan(tmp[i].logprob)) {
                st = pd_err_set(err, PD_EFORMAT, "scorer: the engine gave no logprob for "
                                "answer token %zu", i);
                break;
            }
            out->logprob += tmp[i].logprob;
            out->n_answer++;
        }
    }
    pd_score_tokens_free(tmp, m);
    if (st == PD_OK && n_greedy > 0) {
        size_t got = 0;
        st = s->eng.greedy(s->eng.ud, ids, ka, n_greedy, out->greedy, &got, err);
        out->n_greedy = got;
        /* as the local decoder: stop after an end-of-generation token */
        for (size_t g = 0; s->tok != NULL && g < out->n_greedy; g++) {
            if (pd_tok_is_eog(s->tok, out->greedy[g])) {
                out->n_greedy = g + 1;
                break;
            }
        }
    }
    return st;
}

enum pd_status pd_score_answer(struct pd_scorer *s, const struct pd_token_rec *toks, size_t n,
                               const uint8_t *drop, uint32_t n_greedy,
                               struct pd_score_answer *out, struct pd_err *err)
{
    memset(out, 0, sizeof *out);
    out->i_answer = n;
    if (n_greedy > PD_SCORE_GREEDY_MAX) {
        return pd_err_set(err, PD_EINVAL, "scorer: %u greedy tokens requested (at most %d)",
                          n_greedy, PD_SCORE_GREEDY_MAX);
    }
    enum pd_status st = check_ids(s, toks, n, err);
    if (st != PD_OK) {
        return st;
    }
    int32_t *ids = pd_malloc_array(n ? n : 1, sizeof *ids);
    uint8_t *is_answer = pd_calloc(n ? n : 1, 1);
    if (ids == NULL || is_answer == NULL) {
        free(ids);
        free(is_answer);
        return pd_err_set(err, PD_ENOMEM, "scorer: out of memory");
    }
    size_t m = 0, ka = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        if (drop != NULL && drop[i]) {
            continue;
        }
        if (toks[i].role == PD_ROLE_ANSWER) {
            is_answer[m] = 1;
            if (ka == SIZE_MAX) {
                ka = m;
                out->i_answer = i;
            }
        }
        ids[m++] = toks[i].id;
    }
    if (ka == SIZE_MAX || ka == 0) {
        st = pd_err_set(err, PD_EINVAL, "trace has %s", ka == 0 ? "no tokens before its "
                        "answer" : "no answer tokens");
        goto done;
    }
    if (m > pd_scorer_n_ctx(s) || ka + n_greedy > pd_scorer_n_ctx(s)) {
        st = pd_err_set(err, PD_EINVAL, "trace of %zu tokens (+%u greedy) does not fit the "
                        "context (%u slots)", m, n_greedy, pd_scorer_n_ctx(s));
        goto done;
    }
    if (s->ext) {
        st = ext_answer(s, ids, is_answer, m, ka, n_greedy, out, err);
        goto done;
    }
    struct answer_cb cb = {s, ids, is_answer, m, 0.0, 0};
    if ((st = sync_eval(s, ids, m, ka - 1, answer_logits, &cb, err)) != PD_OK) {
        goto done;
    }
    out->logprob = cb.sum;
    out->n_answer = cb.count;
    if (n_greedy == 0) {
        goto done;
    }
    /* greedy from the reasoning: the cache must end at ka - 1 with its logits fresh */
    if ((st = sync_eval(s, ids, ka, ka - 1, NULL, NULL, err)) != PD_OK) {
        goto done;
    }
    for (uint32_t g = 0; g < n_greedy; g++) {
        int32_t next = pd_argmax(s->ctx->logits, s->model->hp.n_vocab);
        out->greedy[out->n_greedy++] = next;
        if ((s->tok != NULL && pd_tok_is_eog(s->tok, next)) || g + 1 == n_greedy) {
            break;
        }
        if ((st = pd_ctx_eval(s->ctx, &next, 1, NULL, NULL, err)) != PD_OK) {
            cache_forget(s);
            goto done;
        }
        s->cache_ids[s->n_cache++] = next;
    }
done:
    free(ids);
    free(is_answer);
    return st;
}

enum pd_status pd_score_sensitivity(struct pd_scorer *s, const struct pd_token_rec *toks,
                                    size_t n, const struct pd_step_rec *steps, size_t n_steps,
                                    double *out, double *lp_full, struct pd_err *err)
{
    struct pd_step_span *spans = pd_calloc(n_steps ? n_steps : 1, sizeof *spans);
    uint8_t *drop = pd_calloc(n ? n : 1, 1);
    enum pd_status st = PD_OK;
    if (spans == NULL || drop == NULL) {
        st = pd_err_set(err, PD_ENOMEM, "scorer: out of memory");
        goto done;
    }
    if ((st = pd_metrics_spans(toks, n, steps, n_steps, spans, err)) != PD_OK) {
        goto done;
    }
    struct pd_score_answer full;
    if ((st = pd_score_answer(s, toks, n, NULL, 0, &full, err)) != PD_OK) {
        goto done;
    }
    if (lp_full != NULL) {
        *lp_full = full.logprob;
    }
    for (size_t j = 0; j < n_steps; j++) {
        out[j] = 0.0;
        if (spans[j].i_end == spans[j].i_begin) {
            continue;
        }
        memset(drop + spans[j].i_begin, 1, spans[j].i_end - spans[j].i_begin);
        struct pd_score_answer part;
        st = pd_score_answer(s, toks, n, drop, 0, &part, err);
        memset(drop + spans[j].i_begin, 0, spans[j].i_end - spans[j].i_begin);
        if (st != PD_OK) {
            pd_err_prefix(err, "step %zu", j);
            goto done;
        }
        out[j] = full.logprob - part.logprob;
    }
done:
    free(spans);
    free(drop);
    return st;
}

/* ---- building token records from text ----------------------------------------------- */

struct segment {
    size_t begin, end;    /* byte range in the full text */
    enum pd_role role;
};

enum { SEG_MAX = 5 };

static bool seg_add(struct pd_buf *text, struct segment *segs, size_t *n_segs, const char *s,
                    size_t len, enum pd_role role)
{
    size_t b = text->len;
    if (len > 0 && !pd_buf_append(text, s, len)) {
        return false;
    }
    segs[(*n_segs)++] = (struct segment){b, text->len, role};
    return true;
}

static enum pd_role role_at(const struct segment *segs, size_t n_segs, size_t off)
{
    for (size_t i = 0; i < n_segs; i++) {
        if (off >= segs[i].begin && off < segs[i].end) {
            return segs[i].role;
        }
    }
    /* past the end (a zero-length token at the very end): the last non-empty segment */
    for (size_t i = n_segs; i > 0; i--) {
        if (segs[i - 1].end > segs[i - 1].begin) {
            return segs[i - 1].role;
        }
    }
    return PD_ROLE_PROMPT;
}

void pd_score_tokens_free(struct pd_token_rec *toks, size_t n)
{
    if (toks == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        pd_token_rec_free(&toks[i]);
    }
    free(toks);
}

/* Renders the prompt for in's conversation: thinking ON (or OFF for a trace without
 * thinking) when the family has a switch, the template's default otherwise. */
static enum pd_status render_prompt(const struct pd_chat_format *fmt,
                                    const struct pd_score_input *in, struct pd_buf *out,
                                    bool *opens_think, struct pd_err *err)
{
    enum pd_chat_think think = in->has_think ? PD_CHAT_THINK_ON : PD_CHAT_THINK_OFF;
    const struct pd_chat_traits *tr = pd_chat_family_traits(fmt->family);
    if (tr == NULL || tr->think_open == NULL) {
        think = PD_CHAT_THINK_DEFAULT;
    }
    enum pd_status st = pd_chat_render(fmt, in->msgs, in->n_msgs, true, think, out, err);
    if (st == PD_EUNSUPPORTED) {
        think = PD_CHAT_THINK_DEFAULT;
        st = pd_chat_render(fmt, in->msgs, in->n_msgs, true, think, out, err);
    }
    *opens_think = st == PD_OK && pd_chat_prompt_opens_think(fmt, think);
    return st;
}

enum pd_status pd_score_build(const struct pd_tok *tok, const struct pd_chat_format *fmt,
                              const struct pd_score_input *in, struct pd_token_rec **out,
                              size_t *n_out, struct pd_err *err)
{
    *out = NULL;
    *n_out = 0;
    if ((in->think == NULL && in->think_len > 0) || (in->answer == NULL && in->answer_len > 0)) {
        return pd_err_set(err, PD_EINVAL, "score build: NULL thinking or answer text");
    }
    if (in->think_len > 0 && !pd_utf8_valid(in->think, in->think_len)) {
        return pd_err_set(err, PD_EINVAL, "score build: thinking text is not valid UTF-8");
    }
    if (in->answer_len > 0 && !pd_utf8_valid(in->answer, in->answer_len)) {
        return pd_err_set(err, PD_EINVAL, "score build: answer text is not valid UTF-8");
    }
    struct pd_buf text;
    pd_buf_init(&text);
    struct segment segs[SEG_MAX];
    size_t n_segs = 0;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    struct pd_token_rec *toks = NULL;
    bool opens = false;
    enum pd_status st = render_prompt(fmt, in, &text, &opens, err);
    if (st != PD_OK) {
        goto fail;
    }
    segs[n_segs++] = (struct segment){0, text.len, PD_ROLE_PROMPT};
    const char *open = NULL, *close = NULL;
    if (!pd_chat_think_markers(fmt->family, &open, &close)) {
        open = "<think>";
        close = "</think>";
    }
    bool ok = true;
    if (in->has_think) {
        if (!opens) {
            ok = ok && pd_buf_puts(&text, open) && pd_buf_puts(&text, "\n");
            segs[n_segs++] = (struct segment){segs[0].end, text.len, PD_ROLE_INJECTED};
        }
        ok = ok && seg_add(&text, segs, &n_segs, in->think, in->think_len, PD_ROLE_THINK);
        size_t b = text.len;
        ok = ok && pd_buf_puts(&text, "\n") && pd_buf_puts(&text, close);
        segs[n_segs++] = (struct segment){b, text.len, PD_ROLE_INJECTED};
        b = text.len;
        ok = ok && pd_buf_puts(&text, "\n\n") &&
             (in->answer_len == 0 || pd_buf_append(&text, in->answer, in->answer_len));
        segs[n_segs++] = (struct segment){b, text.len, PD_ROLE_ANSWER};
    } else {
        ok = ok && seg_add(&text, segs, &n_segs, in->answer, in->answer_len, PD_ROLE_ANSWER);
    }
    if (!ok) {
        st = pd_err_set(err, PD_ENOMEM, "score build: out of memory");
        goto fail;
    }
    const struct pd_chat_traits *tr = pd_chat_family_traits(fmt->family);
    bool add_bos = pd_tok_add_bos(tok) || (tr != NULL && tr->template_bos);
    if (add_bos && pd_tok_bos(tok) < 0) {
        add_bos = false;
    }
    if ((st = pd_tok_encode(tok, text.data ? text.data : "", text.len, add_bos, true, &ids,
                            &n_ids, err)) != PD_OK) {
        goto fail;
    }
    toks = pd_calloc(n_ids ? n_ids : 1, sizeof *toks);
    if (toks == NULL) {
        st = pd_err_set(err, PD_ENOMEM, "score build: out of memory");
        goto fail;
    }
    /* Align pieces with the text: a piece matches the bytes at the cursor, or (SPM) is
     * one inserted space followed by them; the added BOS and empty pieces take no bytes. */
    size_t cur = 0;
    for (size_t i = 0; i < n_ids; i++) {
        size_t plen = 0;
        const char *piece = pd_tok_piece(tok, ids[i], &plen);
        size_t take;
        if (plen > 0 && plen <= text.len - cur && memcmp(text.data + cur, piece, plen) == 0) {
            take = plen;
        } else if (plen > 0 && piece[0] == ' ' && plen - 1 <= text.len - cur &&
                   memcmp(text.data + cur, piece + 1, plen - 1) == 0) {
            take = plen - 1;
        } else if (plen == 0 || (i == 0 && add_bos && ids[i] == pd_tok_bos(tok))) {
            take = 0;
        } else {
            st = pd_err_set(err, PD_EFORMAT, "score build: token %zu (id %d) does not match "
                            "the text at byte %zu", i, ids[i], cur);
            goto fail;
        }
        struct pd_token_rec *t = &toks[i];
        t->pos = (int64_t)i;
        t->id = ids[i];
        t->role = role_at(segs, n_segs, cur);
        t->flags = PD_TOKF_FORCED;
        t->logprob = NAN;
        t->entropy = NAN;
        t->text = pd_strndup(text.data ? text.data + cur : "", take);
        t->text_len = take;
        if (t->text == NULL) {
            st = pd_err_set(err, PD_ENOMEM, "score build: out of memory");
            goto fail;
        }
        cur += take;
    }
    if (cur != text.len) {
        st = pd_err_set(err, PD_EFORMAT, "score build: tokens cover %zu of %zu bytes", cur,
                        text.len);
        goto fail;
    }
    free(ids);
    pd_buf_deinit(&text);
    *out = toks;
    *n_out = n_ids;
    return PD_OK;
fail:
    pd_score_tokens_free(toks, n_ids);
    free(ids);
    pd_buf_deinit(&text);
    return st;
}
