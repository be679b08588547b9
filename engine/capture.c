/* capture.c - the attention hook: summaries, cumulative attention, full rows. */
#include "capture.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_blob.h"
#include "mem.h"
#include "simd.h"
#include "threadpool.h"
#include "trace.h"

static const char *const level_names[PD_CAPTURE_LEVEL_COUNT] = {"off", "summary", "full"};

const char *pd_capture_level_name(enum pd_capture_level c)
{
    return (unsigned)c < PD_CAPTURE_LEVEL_COUNT ? level_names[c] : "?";
}

enum pd_capture_level pd_capture_level_parse(const char *s)
{
    for (int i = 0; i < PD_CAPTURE_LEVEL_COUNT; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            return (enum pd_capture_level)i;
        }
    }
    return PD_CAPTURE_LEVEL_COUNT;
}

static bool grow_cum(struct pd_capture_state *cs, int64_t pos)
{
    if (pos < cs->cum_cap) {
        return true;
    }
    int64_t cap = cs->cum_cap ? cs->cum_cap : 1024;
    while (cap <= pos) {
        cap *= 2;
    }
    float *n = pd_calloc((size_t)cap * cs->n_layer, sizeof *n);
    if (!n) {
        return false;
    }
    for (uint32_t il = 0; il < cs->n_layer && cs->cum; il++) {
        memcpy(n + (size_t)il * cap, cs->cum + (size_t)il * cs->cum_cap,
               (size_t)cs->cum_cap * sizeof *n);
    }
    free(cs->cum);
    cs->cum = n;
    cs->cum_cap = cap;
    return true;
}

static bool full_wanted(const struct pd_capture_state *cs, uint32_t il)
{
    return cs->level == PD_CAPTURE_LEVEL_FULL &&
           (cs->full_layers == 0 || (il < 64 && (cs->full_layers >> il) & 1));
}

/* The shared part of a token's capture, in token order: the cumulative attention
 * received (head-mean row m) and the full rows. */
static void token_shared(struct pd_capture_state *cs, uint32_t il, int64_t pos,
                         const float *probs, const float *m, uint32_t n_head, uint32_t n_slots,
                         const int64_t *slot_pos)
{
    /* cumulative attention received, by position (a contiguous run of positions, the
     * common case without eviction, is a plain vector add) */
    int64_t max_pos = n_slots ? slot_pos[n_slots - 1] : 0;
    if (cs->keep_received && n_slots && grow_cum(cs, max_pos)) {
        float *cum = cs->cum + (size_t)il * cs->cum_cap;
        if (max_pos - slot_pos[0] == (int64_t)n_slots - 1) {
            pd_add_row(cum + slot_pos[0], m, n_slots);
        } else {
            for (uint32_t s = 0; s < n_slots; s++) {
                cum[slot_pos[s]] += m[s];
            }
        }
    }
    if (full_wanted(cs, il)) {
        for (uint32_t h = 0; h < n_head; h++) {
            memcpy(cs->full + ((size_t)il * n_head + h) * cs->n_ctx,
                   probs + (size_t)h * cs->n_ctx, n_slots * sizeof(float));
        }
        memcpy(cs->full_pos + (size_t)il * cs->n_ctx, slot_pos, n_slots * sizeof(int64_t));
        cs->full_slots[il] = n_slots;
        cs->full_token_pos = pos;
    }
}

/* The token's own part (its row of step masses and its summary blob, from its head-mean
 * row m): writes only that token's outputs, so tokens may run on different threads. */
static void token_summary(struct pd_capture_state *cs, uint32_t il, int64_t pos,
                          const float *m, uint32_t n_slots, const int64_t *slot_pos)
{
    /* top-N of the head-mean row into the token's blob (insertion into a short sorted
     * list; an entry must beat the current N-th to get in) */
    size_t ti = (size_t)(pos - cs->pos0);
    if (ti < cs->n_tok && cs->smass_stride > 0) {
        /* mass per step: slots and step starts are both ascending, one merge pass */
        float *sm = cs->smass + ti * cs->smass_stride;
        float per_layer = 1.0f / (float)cs->n_layer;
        /* start at the step of the oldest slot (binary search: a long run knows thousands
         * of steps, and the slots an eviction policy keeps may all be recent) */
        uint32_t k = 0, hi = cs->smass_stride;
        while (n_slots > 0 && k + 1 < hi) {
            uint32_t mid = k + (hi - k) / 2;
            if (cs->steps[mid] <= slot_pos[0]) {
                k = mid;
            } else {
                hi = mid;
            }
        }
        /* step by step: the run of slots inside step k added in slot order in a register
         * (the same float additions as one sm[k] += per slot, without a store and a
         * reload between them); slots before the first step count nowhere */
        uint32_t s = 0;
        while (s < n_slots) {
            while (k + 1 < cs->smass_stride && slot_pos[s] >= cs->steps[k + 1]) {
                k++;
            }
            int64_t end = k + 1 < cs->smass_stride ? cs->steps[k + 1] : INT64_MAX;
            while (s < n_slots && slot_pos[s] < cs->steps[k]) {
                s++;
            }
            float acc = sm[k];
            for (; s < n_slots && slot_pos[s] < end; s++) {
                acc += m[s] * per_layer;
            }
            sm[k] = acc;
        }
    }
    if (ti < cs->n_tok) {
        uint8_t *blob = cs->blobs + ti * cs->blob_len;
        uint32_t have = 0;
        uint32_t best_s[64];
        float floor_w = 0.0f;
        /* Newest slots first: attention leans to recent tokens, so the list fills with
         * large weights early and most older slots fail the floor test at once. Walking
         * down, an equal weight has the lower index and goes first (ties: lower
         * position first, as documented). */
        for (uint32_t s = n_slots; s-- > 0;) {
            float w = m[s];
            if (w <= 0.0f || (have == cs->top_n && w < floor_w)) {
                continue;
            }
            uint32_t j = have < cs->top_n ? have++ : cs->top_n - 1;
            while (j > 0 && m[best_s[j - 1]] <= w) {
                best_s[j] = best_s[j - 1];
                j--;
            }
            best_s[j] = s;
            if (have == cs->top_n) {
                floor_w = m[best_s[have - 1]];
            }
        }
        for (uint32_t k = 0; k < have; k++) {
            pd_attn_blob_set(blob, il, k, (uint32_t)slot_pos[best_s[k]], m[best_s[k]]);
        }
    }
}

void pd_capture_hook(void *ud, uint32_t il, int64_t pos, const float *probs, uint32_t n_head,
                     uint32_t n_slots, const int64_t *slot_pos)
{
    struct pd_capture_state *cs = ud;
    if (cs->observer) {
        cs->observer(cs->observer_ud, il, pos, probs, n_head, n_slots, slot_pos);
    }
    if (cs->level == PD_CAPTURE_LEVEL_OFF) {
        return;
    }
    float *m = cs->mean_row;
    pd_simd_head_mean(pd_simd_ops(), m, probs, cs->n_ctx, n_head, n_slots);
    token_shared(cs, il, pos, probs, m, n_head, n_slots, slot_pos);
    token_summary(cs, il, pos, m, n_slots, slot_pos);
}

struct batch_job {
    struct pd_capture_state *cs;
    uint32_t il;
    int64_t pos0;
    const float *probs;
    size_t tok_stride;
    uint32_t n_head, n_slots;
    const int64_t *slot_pos;
};

/* Tokens [t0, t1) of a batch chunk (t relative to the chunk): head-mean rows into
 * mean_rows and each token's own summary. */
static void batch_tokens(void *ctx, size_t t0, size_t t1)
{
    const struct batch_job *j = ctx;
    struct pd_capture_state *cs = j->cs;
    for (size_t t = t0; t < t1; t++) {
        float *m = cs->mean_rows + t * cs->n_ctx;
        pd_simd_head_mean(pd_simd_ops(), m, j->probs + t * j->tok_stride, cs->n_ctx,
                          j->n_head, j->n_slots);
        token_summary(cs, j->il, j->pos0 + (int64_t)t, m, j->n_slots, j->slot_pos);
    }
}

void pd_capture_hook_batch(void *ud, struct pd_pool *pool, uint32_t il, int64_t pos0,
                           uint32_t n_tok, const float *probs, size_t tok_stride,
                           uint32_t n_head, uint32_t n_slots, const int64_t *slot_pos)
{
    struct pd_capture_state *cs = ud;
    if (cs->level == PD_CAPTURE_LEVEL_OFF || !cs->mean_rows || !pool) {
        for (uint32_t t = 0; t < n_tok; t++) {
            pd_capture_hook(ud, il, pos0 + t, probs + t * tok_stride, n_head, n_slots,
                            slot_pos);
        }
        return;
    }
    /* per chunk of mean_rows tokens: the tokens' own work in parallel, then the shared
     * part and the observer in token order */
    for (uint32_t c0 = 0; c0 < n_tok; c0 += cs->n_mean_rows) {
        uint32_t nc = n_tok - c0 < cs->n_mean_rows ? n_tok - c0 : cs->n_mean_rows;
        const float *pc = probs + (size_t)c0 * tok_stride;
        struct batch_job j = {cs, il, pos0 + c0, pc, tok_stride, n_head, n_slots, slot_pos};
        size_t work = (size_t)n_head * n_slots + 1;
        pd_pool_run(pool, nc, work >= 16384 ? 1 : 16384 / work, batch_tokens, &j);
        for (uint32_t t = 0; t < nc; t++) {
            const float *pt = pc + (size_t)t * tok_stride;
            if (cs->observer) {
                cs->observer(cs->observer_ud, il, pos0 + c0 + t, pt, n_head, n_slots, slot_pos);
            }
            token_shared(cs, il, pos0 + c0 + t, pt, cs->mean_rows + (size_t)t * cs->n_ctx,
                         n_head, n_slots, slot_pos);
        }
    }
}

enum pd_status pd_capture_init(struct pd_capture_state *cs, struct pd_ctx *ctx,
                               enum pd_capture_level level, uint32_t top_n,
                               uint64_t full_layers, struct pd_err *err)
{
    memset(cs, 0, sizeof *cs);
    const struct pd_hparams *hp = &ctx->model->hp;
    if (level >= PD_CAPTURE_LEVEL_COUNT || top_n < 1 || top_n > 64 || hp->n_layer > 255) {
        return pd_err_set(err, PD_EINVAL, "capture: level/top-N out of range (top-N 1..64)");
    }
    cs->level = level;
    cs->n_layer = hp->n_layer;
    cs->n_head = hp->n_head;
    cs->top_n = top_n;
    cs->full_layers = full_layers;
    cs->n_ctx = ctx->params.n_ctx;
    cs->blob_len = pd_attn_blob_size(hp->n_layer, top_n, 0);
    cs->full_token_pos = -1;
    cs->cum_forgot = INT64_MAX;
    cs->keep_received = true;
    cs->mean_row = pd_malloc_array(cs->n_ctx, sizeof(float));
    /* a batch's head-mean rows, for the batch hook (tokens in chunks of this many) */
    cs->n_mean_rows = ctx->params.n_batch ? ctx->params.n_batch : 64;
    cs->mean_rows = pd_malloc_array((size_t)cs->n_mean_rows * cs->n_ctx, sizeof(float));
    if (!cs->mean_row || !cs->mean_rows || !grow_cum(cs, 0)) {
        pd_capture_deinit(cs);
        return pd_err_set(err, PD_ENOMEM, "out of memory (capture)");
    }
    if (level == PD_CAPTURE_LEVEL_FULL) {
        cs->full = pd_malloc_array((size_t)hp->n_layer * hp->n_head, (size_t)cs->n_ctx * 4);
        cs->full_pos = pd_malloc_array((size_t)hp->n_layer * cs->n_ctx, sizeof(int64_t));
        cs->full_slots = pd_calloc(hp->n_layer, sizeof(uint32_t));
        if (!cs->full || !cs->full_pos || !cs->full_slots) {
            pd_capture_deinit(cs);
            return pd_err_set(err, PD_ENOMEM, "out of memory (full capture)");
        }
    }
    ctx->attn_hook = pd_capture_hook;
    ctx->attn_hook_ud = cs;
    ctx->attn_batch = pd_capture_hook_batch;
    ctx->attn_batch_of = pd_capture_hook;
    return PD_OK;
}

void pd_capture_deinit(struct pd_capture_state *cs)
{
    free(cs->blobs);
    free(cs->mean_row);
    free(cs->mean_rows);
    free(cs->cum);
    free(cs->full);
    free(cs->full_pos);
    free(cs->full_slots);
    free(cs->steps);
    free(cs->smass);
    memset(cs, 0, sizeof *cs);
}

enum pd_status pd_capture_begin(struct pd_capture_state *cs, int64_t pos0, size_t n,
                                struct pd_err *err)
{
    cs->pos0 = pos0;
    cs->n_tok = 0;
    cs->smass_stride = 0;
    if (cs->level == PD_CAPTURE_LEVEL_OFF) {
        return PD_OK;
    }
    if (cs->n_steps > 0) {
        uint64_t need;
        if (!pd_mul(n, cs->n_steps, &need) || need > SIZE_MAX / sizeof(float)) {
            return pd_err_set(err, PD_ENOMEM, "capture: too many step masses");
        }
        if (need > cs->cap_smass) {
            float *f = pd_realloc_array(cs->smass, (size_t)need, sizeof *f);
            if (!f) {
                return pd_err_set(err, PD_ENOMEM, "out of memory (step masses)");
            }
            cs->smass = f;
            cs->cap_smass = (size_t)need;
        }
        memset(cs->smass, 0, (size_t)need * sizeof(float));
        cs->smass_stride = cs->n_steps;
    }
    if (n > cs->cap_tok) {
        uint8_t *b = pd_realloc_array(cs->blobs, n, cs->blob_len);
        if (!b) {
            return pd_err_set(err, PD_ENOMEM, "out of memory (capture blobs)");
        }
        cs->blobs = b;
        cs->cap_tok = n;
    }
    for (size_t i = 0; i < n; i++) {
        pd_attn_blob_init(cs->blobs + i * cs->blob_len, cs->n_layer, cs->top_n);
    }
    cs->n_tok = n;
    return PD_OK;
}

const uint8_t *pd_capture_blob(const struct pd_capture_state *cs, size_t i)
{
    if (cs->level == PD_CAPTURE_LEVEL_OFF || i >= cs->n_tok) {
        return NULL;
    }
    return cs->blobs + i * cs->blob_len;
}

float pd_capture_received(const struct pd_capture_state *cs, uint32_t il, int64_t pos)
{
    if (cs->cum_sync) {
        /* cum is a cache of the device's array: filling it does not change the state */
        cs->cum_sync(cs->cum_sync_ud, (struct pd_capture_state *)cs);
    }
    if (!cs->keep_received) {
        return NAN;
    }
    if (il >= cs->n_layer || pos < 0 || pos >= cs->cum_cap) {
        return 0.0f;
    }
    return cs->cum[(size_t)il * cs->cum_cap + pos];
}

enum pd_status pd_capture_add_step(struct pd_capture_state *cs, int64_t pos,
                                   struct pd_err *err)
{
    if (cs->n_steps > 0 && pos <= cs->steps[cs->n_steps - 1]) {
        return pd_err_set(err, PD_EINVAL, "capture: step at %lld not after %lld",
                          (long long)pos, (long long)cs->steps[cs->n_steps - 1]);
    }
    if (cs->n_steps == cs->cap_steps) {
        uint32_t nc = cs->cap_steps ? cs->cap_steps * 2 : 64;
        int64_t *ns = pd_realloc_array(cs->steps, nc, sizeof *ns);
        if (!ns) {
            return pd_err_set(err, PD_ENOMEM, "out of memory (steps)");
        }
        cs->steps = ns;
        cs->cap_steps = nc;
    }
    cs->steps[cs->n_steps++] = pos;
    return PD_OK;
}

const float *pd_capture_step_mass(const struct pd_capture_state *cs, size_t i, uint32_t *n)
{
    if (cs->level == PD_CAPTURE_LEVEL_OFF || i >= cs->n_tok || cs->smass_stride == 0) {
        *n = 0;
        return NULL;
    }
    *n = cs->smass_stride;
    return cs->smass + i * cs->smass_stride;
}

void pd_capture_rewind(struct pd_capture_state *cs, int64_t pos)
{
    if (pos < 0) {
        pos = 0;
    }
    if (pos < cs->cum_forgot) {
        cs->cum_forgot = pos;
    }
    while (cs->n_steps > 0 && cs->steps[cs->n_steps - 1] >= pos) {
        cs->n_steps--;
    }
    for (uint32_t il = 0; il < cs->n_layer && pos < cs->cum_cap; il++) {
        memset(cs->cum + (size_t)il * cs->cum_cap + pos, 0,
               (size_t)(cs->cum_cap - pos) * sizeof(float));
    }
}

void pd_attn_rows_free(struct pd_attn_rows *r)
{
    if (!r) {
        return;
    }
    for (uint32_t i = 0; i < r->n_layer; i++) {
        free(r->slot_pos[i]);
        free(r->w[i]);
    }
    free(r->layers);
    free(r->n_slots);
    free(r->slot_pos);
    free(r->w);
    free(r);
}

struct pd_attn_rows *pd_capture_copy_rows(const struct pd_capture_state *cs)
{
    if (cs->level != PD_CAPTURE_LEVEL_FULL || cs->full_token_pos < 0) {
        return NULL;
    }
    struct pd_attn_rows *r = calloc(1, sizeof *r);
    if (!r) {
        return NULL;
    }
    uint32_t n = 0;
    for (uint32_t il = 0; il < cs->n_layer; il++) {
        if (cs->full_layers == 0 || (il < 64 && (cs->full_layers >> il) & 1)) {
            n++;
        }
    }
    r->n_head = cs->n_head;
    r->layers = calloc(n ? n : 1, sizeof *r->layers);
    r->n_slots = calloc(n ? n : 1, sizeof *r->n_slots);
    r->slot_pos = calloc(n ? n : 1, sizeof *r->slot_pos);
    r->w = calloc(n ? n : 1, sizeof *r->w);
    if (!r->layers || !r->n_slots || !r->slot_pos || !r->w) {
        pd_attn_rows_free(r);
        return NULL;
    }
    for (uint32_t il = 0; il < cs->n_layer; il++) {
        if (!(cs->full_layers == 0 || (il < 64 && (cs->full_layers >> il) & 1))) {
            continue;
        }
        uint32_t ns = cs->full_slots[il];
        uint32_t k = r->n_layer;
        r->layers[k] = il;
        r->n_slots[k] = ns;
        r->slot_pos[k] = pd_malloc_array(ns ? ns : 1, sizeof(int64_t));
        r->w[k] = pd_malloc_array((size_t)cs->n_head * (ns ? ns : 1), sizeof(float));
        r->n_layer++;
        if (!r->slot_pos[k] || !r->w[k]) {
            pd_attn_rows_free(r);
            return NULL;
        }
        memcpy(r->slot_pos[k], cs->full_pos + (size_t)il * cs->n_ctx, ns * sizeof(int64_t));
        for (uint32_t h = 0; h < cs->n_head; h++) {
            memcpy(r->w[k] + (size_t)h * ns, cs->full + ((size_t)il * cs->n_head + h) * cs->n_ctx,
                   ns * sizeof(float));
        }
    }
    return r;
}

enum pd_status pd_capture_recompute(const struct pd_model *m, const int32_t *tokens, size_t n,
                                    int n_threads, uint64_t layers, struct pd_attn_rows **out,
                                    struct pd_err *err)
{
    *out = NULL;
    if (n == 0 || n > (1u << 22)) {
        return pd_err_set(err, PD_EINVAL, "attention: nothing to recompute");
    }
    struct pd_ctx_params p = pd_ctx_default_params();
    p.n_threads = n_threads;
    p.n_ctx = (uint32_t)n;
    p.kv_type = PD_KV_F32;
    struct pd_ctx *ctx = NULL;
    struct pd_capture_state cs;
    enum pd_status st = pd_ctx_open(m, &p, &ctx, err);
    if (st) {
        return st;
    }
    if ((st = pd_capture_init(&cs, ctx, PD_CAPTURE_LEVEL_FULL, 1, layers, err))) {
        pd_ctx_close(&ctx);
        return st;
    }
    if (!(st = pd_capture_begin(&cs, 0, n, err)) &&
        !(st = pd_ctx_eval(ctx, tokens, n, NULL, NULL, err))) {
        *out = pd_capture_copy_rows(&cs);
        if (!*out) {
            st = pd_err_set(err, PD_ENOMEM, "out of memory (attention rows)");
        }
    }
    pd_capture_deinit(&cs);
    pd_ctx_close(&ctx);
    return st;
}
