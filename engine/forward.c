/* forward.c - CPU forward pass: embeddings, attention with the KV cache, SwiGLU FFN,
 * output logits; batched over tokens, parallel over weight rows and attention heads. The
 * reference: a context with a device backend (backend.h) hands every eval to it. */
#include "forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "dtype.h"
#include "probe.h"
#include "sampler.h"
#include "simd.h"
#include "threadpool.h"

/* Smallest share of a parallel loop worth waking another thread for, in multiply-adds
 * (about 10-20 us of SIMD work; idle workers spin briefly, see threadpool.c). */
#define PD_POOL_GRAIN (256u * 1024u)

struct pd_ctx_params pd_ctx_default_params(void)
{
    struct pd_ctx_params p;
    memset(&p, 0, sizeof p);
    p.kv_type = PD_KV_F16;
    p.backend = PD_BACKEND_CPU;
    return p;
}

static uint32_t max_u32(uint32_t a, uint32_t b)
{
    return a > b ? a : b;
}

enum pd_status pd_ctx_open(const struct pd_model *m, const struct pd_ctx_params *pp,
                           struct pd_ctx **out, struct pd_err *err)
{
    *out = NULL;
    const struct pd_hparams *hp = &m->hp;
    struct pd_ctx_params p = pp ? *pp : pd_ctx_default_params();
    if (p.n_threads <= 0) {
        p.n_threads = pd_cpu_count();
    }
    if (p.n_ctx == 0) {
        p.n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
        if (p.n_ctx == 0) {
            return pd_err_set(err, PD_EINVAL, "the model says its context length is 0 "
                              "(%s.context_length); give a context size (--ctx N)",
                              pd_arch_name(hp->arch));
        }
    }
    if (p.n_ctx > (1u << 22)) {
        return pd_err_set(err, PD_EINVAL, "context size %u too large", p.n_ctx);
    }
    if (p.n_batch == 0) {
        p.n_batch = 64; /* prefill: each weight block loaded serves 64 tokens */
    }
    /* Keep the attention probability buffer under ~64M floats. */
    uint64_t per_tok = (uint64_t)hp->n_head * p.n_ctx;
    while (p.n_batch > 1 && per_tok * p.n_batch > (64u << 20)) {
        p.n_batch /= 2;
    }
    struct pd_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (context)");
    }
    if (p.backend == PD_BACKEND_AUTO) {
        p.backend = pd_backend_cuda_available() ? PD_BACKEND_CUDA : PD_BACKEND_CPU;
    }
    c->model = m;
    c->params = p;
    enum pd_status st;
    if ((st = pd_pool_open(p.n_threads, &c->pool, err))) {
        goto fail;
    }
    if (p.backend >= PD_BACKEND_KIND_COUNT) {
        st = pd_err_set(err, PD_EINVAL, "context: unknown backend %d", (int)p.backend);
        goto fail;
    }
    if (p.backend == PD_BACKEND_CUDA) {
        /* The device holds K/V; the context keeps the positions (kvcache.h, mirror). */
        if ((st = pd_kvcache_open_mirror(hp->n_layer, p.n_ctx, hp->n_head_kv * hp->head_dim,
                                         hp->n_head_kv * hp->head_dim_v, &c->kv, err)) ||
            (st = pd_backend_cuda_open(m, &p, c->kv, &c->backend, err))) {
            goto fail;
        }
        c->logits = pd_malloc_array(hp->n_vocab, sizeof(float));
        if (!c->logits) {
            st = pd_err_set(err, PD_ENOMEM, "out of memory (context buffers)");
            goto fail;
        }
        *out = c;
        return PD_OK;
    }
    if ((st = pd_model_pack_cpu(m, c->pool, err)) ||
        (st = pd_kvcache_open(hp->n_layer, p.n_ctx, hp->n_head_kv * hp->head_dim,
                              hp->n_head_kv * hp->head_dim_v, p.kv_type, &c->kv, err))) {
        goto fail;
    }
    uint32_t nb = p.n_batch;
    uint32_t q_dim = hp->n_head * hp->head_dim;
    uint32_t o_dim = hp->n_head * hp->head_dim_v;
    uint32_t wide = max_u32(max_u32(hp->n_embd, hp->n_ff), o_dim);
    c->x = pd_malloc_array((size_t)nb * hp->n_embd, sizeof(float));
    c->xn = pd_malloc_array((size_t)nb * wide, sizeof(float));
    c->q = pd_malloc_array((size_t)nb * q_dim, sizeof(float));
    c->k = pd_malloc_array((size_t)nb * hp->n_head_kv * hp->head_dim, sizeof(float));
    c->v = pd_malloc_array((size_t)nb * hp->n_head_kv * hp->head_dim_v, sizeof(float));
    c->att = pd_malloc_array((size_t)nb * o_dim, sizeof(float));
    c->gate = pd_malloc_array((size_t)nb * hp->n_ff, sizeof(float));
    c->up = pd_malloc_array((size_t)nb * hp->n_ff, sizeof(float));
    c->out = pd_malloc_array((size_t)nb * max_u32(hp->n_embd, hp->n_vocab), sizeof(float));
    c->xq_row_bytes = (size_t)wide * 4 + 512; /* f32 is the widest dot format */
    c->xq = pd_malloc_array(nb, c->xq_row_bytes);
    c->probs = pd_malloc_array((size_t)nb * per_tok, sizeof(float));
    c->rope = pd_malloc_array((size_t)nb * hp->n_rot, sizeof(float));
    c->logits = pd_malloc_array(hp->n_vocab, sizeof(float));
    if (!c->x || !c->xn || !c->q || !c->k || !c->v || !c->att || !c->gate || !c->up ||
        !c->out || !c->xq || !c->probs || !c->rope || !c->logits) {
        st = pd_err_set(err, PD_ENOMEM, "out of memory (context buffers)");
        goto fail;
    }
    *out = c;
    return PD_OK;
fail:
    pd_ctx_close(&c);
    return st;
}

void pd_ctx_close(struct pd_ctx **cp)
{
    if (!cp || !*cp) {
        return;
    }
    struct pd_ctx *c = *cp;
    pd_pool_close(&c->pool);
    pd_backend_close(&c->backend); /* before the mirror it listens to */
    pd_kvcache_close(&c->kv);
    free(c->x);
    free(c->xn);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->gate);
    free(c->up);
    free(c->out);
    free(c->xq);
    free(c->probs);
    free(c->rope);
    free(c->logits);
    free(c);
    *cp = NULL;
}

void pd_ctx_reset(struct pd_ctx *c)
{
    pd_kvcache_clear(c->kv);
    c->n_past = 0;
    c->has_logits = false;
}

uint32_t pd_ctx_kv_free(const struct pd_ctx *c)
{
    uint32_t most = 0;
    for (uint32_t il = 0; il < c->kv->n_layer; il++) {
        most = max_u32(most, c->kv->layers[il].n);
    }
    return c->kv->cap - most;
}

const float *pd_ctx_logits(struct pd_ctx *c)
{
    if (!c->has_logits) {
        return NULL;
    }
    if (c->backend) {
        struct pd_err err;
        if (c->backend->ops->logits(c->backend, c, &err)) {
            pd_log(PD_LOG_ERROR, "%s", err.msg);
            return NULL;
        }
    }
    return c->logits;
}

int32_t pd_ctx_argmax(struct pd_ctx *c)
{
    if (!c->has_logits) {
        return -1;
    }
    if (c->backend) {
        return c->backend->ops->argmax(c->backend);
    }
    return pd_argmax(c->logits, c->model->hp.n_vocab);
}

enum pd_status pd_ctx_probe(struct pd_ctx *c, int32_t id, size_t k, struct pd_token_rec *rec,
                            struct pd_err *err)
{
    if (!c->has_logits) {
        return pd_err_set(err, PD_EINVAL, "probe: no token evaluated yet");
    }
    if (c->backend) {
        return c->backend->ops->probe(c->backend, c, id, k, rec, err);
    }
    pd_probe_fill(c->logits, c->model->hp.n_vocab, id, k, rec);
    return PD_OK;
}

int32_t pd_ctx_sample(struct pd_ctx *c, struct pd_sampler *s)
{
    if (c->backend && pd_sampler_greedy(s)) {
        return pd_ctx_argmax(c);
    }
    const float *lg = pd_ctx_logits(c);
    return lg ? pd_sampler_sample(s, lg) : -1;
}

/* ---- matmul: Y[t][r] = W[r] . X[t] ---------------------------------------------------- */

/* Rows per work item of a weight product: the tall tiles' height, so a thread's share is
 * whole tiles. */
#define MM_ROWS 16

/* Up to three weight matrices that read the same input (q/k/v, gate/up) run as one pool
 * job over their rows end to end. */
struct mm_part {
    const struct pd_weight *w;
    float *y;
    size_t y_stride;
    size_t item0;         /* first work item of this matrix */
};

struct matmul_job {
    const struct pd_simd_ops *ops;
    const uint8_t *xq;    /* [n_tok][xq_stride] in the weights' vec_dot format */
    size_t xq_stride;
    uint32_t n_tok;
    int n_parts;
    struct mm_part part[3];
};

static void matmul_items(void *ctx, size_t i0, size_t i1)
{
    const struct matmul_job *j = ctx;
    for (int p = 0; p < j->n_parts && i0 < i1; p++) {
        const struct mm_part *mp = &j->part[p];
        size_t end = p + 1 < j->n_parts ? j->part[p + 1].item0 : (size_t)-1;
        if (i0 >= end) {
            continue;
        }
        size_t r0 = (i0 - mp->item0) * MM_ROWS;
        size_t r1 = ((i1 < end ? i1 : end) - mp->item0) * MM_ROWS;
        if (r1 > mp->w->rows) {
            r1 = mp->w->rows;
        }
        const struct pd_weight *w = mp->w;
        struct pd_gemm_args g = {w->packed ? w->packed : w->data, w->row_bytes, j->xq,
                                 j->xq_stride, mp->y, mp->y_stride, w->cols, j->n_tok,
                                 w->rows, w->packed != NULL};
        pd_simd_gemm(j->ops, mp->w->type, &g, r0, r1);
        i0 = i1 < end ? i1 : end;
    }
}

struct quant_job {
    const struct pd_dtype_traits *xt;
    const float *x;
    size_t x_stride;
    uint8_t *xq;
    size_t xq_stride;
    uint64_t cols;
};

static void quant_rows(void *ctx, size_t t0, size_t t1)
{
    const struct quant_job *j = ctx;
    for (size_t t = t0; t < t1; t++) {
        j->xt->from_f32(j->x + t * j->x_stride, j->xq + t * j->xq_stride, j->cols);
    }
}

/* Tokens per share of a per-token loop over rows of `cols` elements: a share of at least
 * STAGE_GRAIN elements is worth waking another thread for (a stage costs a few
 * nanoseconds per element; one token always stays on the caller). */
#define STAGE_GRAIN 4096u

static size_t stage_grain(uint64_t cols)
{
    return cols >= STAGE_GRAIN ? 1 : STAGE_GRAIN / cols;
}

/* The dot format shared by the n weights w[] (PD_DTYPE_COUNT when they differ). */
static enum pd_dtype dot_format(int n, const struct pd_weight *const *w)
{
    enum pd_dtype fmt = pd_simd_traits(w[0]->type)->vec_dot_type;
    for (int i = 1; i < n; i++) {
        if (pd_simd_traits(w[i]->type)->vec_dot_type != fmt) {
            return PD_DTYPE_COUNT;
        }
    }
    return fmt;
}

/* y_i[t][0..rows_i) = W_i x[t] for t < n_tok and each of the n weights w[i] (1..3, all
 * with the same columns). When `ready`, c->xq already holds x's rows in the weights' one
 * dot format (a stage converted them); otherwise the rows x (stride x_stride floats) are
 * converted here, per weight when their formats differ (rare files). */
static void matmul_n(struct pd_ctx *c, int n, const struct pd_weight *const *w,
                     float *const *y, const size_t *y_stride, const float *x,
                     size_t x_stride, uint32_t n_tok, bool ready)
{
    enum pd_dtype fmt = dot_format(n, w);
    if (fmt == PD_DTYPE_COUNT) {
        for (int k = 0; k < n; k++) {
            matmul_n(c, 1, &w[k], &y[k], &y_stride[k], x, x_stride, n_tok, false);
        }
        return;
    }
    if (!ready) {
        struct quant_job q = {pd_simd_traits(fmt), x, x_stride, c->xq, c->xq_row_bytes,
                              w[0]->cols};
        pd_pool_run(c->pool, n_tok, stage_grain(w[0]->cols), quant_rows, &q);
    }
    struct matmul_job j = {pd_simd_ops(), c->xq, c->xq_row_bytes, n_tok, n, {{0}}};
    size_t items = 0;
    for (int i = 0; i < n; i++) {
        j.part[i] = (struct mm_part){w[i], y[i], y_stride[i], items};
        items += (w[i]->rows + MM_ROWS - 1) / MM_ROWS;
    }
    /* Waking the pool costs microseconds (tens when the cores are busy): give each thread
     * at least PD_POOL_GRAIN multiply-adds. */
    size_t work_per_item = (size_t)w[0]->cols * n_tok * MM_ROWS;
    size_t grain = work_per_item >= PD_POOL_GRAIN ? 1 : PD_POOL_GRAIN / work_per_item;
    pd_pool_run(c->pool, items, grain, matmul_items, &j);
}

/* ---- elementwise pieces ---------------------------------------------------------------- */

void pd_rmsnorm(float *out, const float *x, const float *w, uint32_t n, float eps)
{
    /* Squares in float summed in double (in pd_sum16_tree's order), the mean rounded to
     * float. */
    float mean = (float)(pd_simd_sum_sq(pd_simd_ops(), x, n) / n);
    float scale = 1.0f / sqrtf(mean + eps);
    /* out may be x (the q/k norms run in place): each block of 16 goes through a local,
     * so the compiler vectorises the loop without proving the rows apart */
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float t[16];
        for (int j = 0; j < 16; j++) {
            t[j] = x[i + j] * scale * w[i + j];
        }
        memcpy(out + i, t, sizeof t);
    }
    for (; i < n; i++) {
        out[i] = x[i] * scale * w[i];
    }
}

/* The rotation of position pos: cs_sn[2 i], cs_sn[2 i + 1] = cos, sin of theta_i for
 * i < n_rot / 2. Angles follow the GGUF/GGML convention: theta_i = pos * base^(-2i/n_rot)
 * / freq_div[i] * freq_scale, the power computed by repeated multiplication in float,
 * freq_div from rope_freqs.weight (1 when absent). */
/* Largest rotated dimension count (rope.dimension_count <= key_length <= 4096, model.c). */
#define PD_ROT_MAX 4096

static void rope_angles(float *cs_sn, uint32_t n_rot, int64_t pos, const struct pd_hparams *hp,
                        const float *freq_div)
{
    float theta_scale = powf(hp->rope_base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (uint32_t i = 0; i < n_rot / 2; i++) {
        float th = (freq_div ? theta / freq_div[i] : theta) * hp->rope_freq_scale;
        cs_sn[2 * i] = cosf(th);
        cs_sn[2 * i + 1] = sinf(th);
        theta *= theta_scale;
    }
}

/* Rotates the first n_rot dims of one head x by the angles of rope_angles. */
static void rope_apply(float *x, uint32_t n_rot, const float *cs_sn, enum pd_rope_type type)
{
    uint32_t half = n_rot / 2;
    for (uint32_t i = 0; i < half; i++) {
        float cs = cs_sn[2 * i], sn = cs_sn[2 * i + 1];
        float *a, *b;
        if (type == PD_ROPE_NORM) {
            a = &x[2 * i];
            b = &x[2 * i + 1];
        } else {
            a = &x[i];
            b = &x[i + half];
        }
        float x0 = *a, x1 = *b;
        *a = x0 * cs - x1 * sn;
        *b = x0 * sn + x1 * cs;
    }
}

void pd_rope_head(float *x, uint32_t n_rot, int64_t pos, const struct pd_hparams *hp,
                  const float *freq_div)
{
    float cs_sn[PD_ROT_MAX];
    rope_angles(cs_sn, n_rot, pos, hp, freq_div);
    rope_apply(x, n_rot, cs_sn, hp->rope_type);
}

static const float *wf32(const struct pd_weight *w)
{
    return (const float *)w->data;
}

static const float *wf32_or_null(const struct pd_weight *w)
{
    return w->data ? (const float *)w->data : NULL;
}

/* ---- attention ------------------------------------------------------------------------- */

/* Query tokens per attention work item: with the query heads of one KV head, about 32
 * queries share each block of K rows the kernel widens. */
#define ATT_QUERIES 32
/* Most queries in one call of the kernel (a GQA group larger than this is split). */
#define ATT_QUERIES_MAX 256

struct attn_block_job {
    struct pd_ctx *c;
    uint32_t il;
    uint32_t n_tok;
    int64_t pos0;
    uint32_t tok_per_item;
    uint32_t n_tblocks;
    const struct pd_simd_ops *ops;
};

/* Items are (KV head, block of query tokens). Later tokens see more slots, so the blocks
 * are visited from both ends (0, last, 1, last - 1, ...): any contiguous run of items, as
 * the pool hands them out, holds a fair mix of cheap and dear ones. */
static void attn_blocks(void *ctx, size_t i0, size_t i1)
{
    const struct attn_block_job *j = ctx;
    struct pd_ctx *c = j->c;
    const struct pd_hparams *hp = &c->model->hp;
    const struct pd_kv_layer *L = &c->kv->layers[j->il];
    uint32_t group = hp->n_head / hp->n_head_kv;
    uint32_t q_dim = hp->n_head * hp->head_dim;
    uint32_t o_dim = hp->n_head * hp->head_dim_v;
    bool f16 = c->kv->type == PD_KV_F16;
    size_t esz = f16 ? 2 : 4;
    /* heads per call: the whole group, or parts of it small enough for the arrays (a
     * group over ATT_QUERIES has one token per item) */
    _Static_assert(ATT_QUERIES <= ATT_QUERIES_MAX, "an item's tokens fit the arrays");
    uint32_t hc = group * j->tok_per_item <= ATT_QUERIES_MAX ? group
                                                              : ATT_QUERIES_MAX / j->tok_per_item;
    const float *qp[ATT_QUERIES_MAX];
    float *pp[ATT_QUERIES_MAX];
    float *op[ATT_QUERIES_MAX];
    uint32_t nv[ATT_QUERIES_MAX];
    int64_t qpos[ATT_QUERIES_MAX];
    for (size_t item = i0; item < i1; item++) {
        uint32_t kvh = (uint32_t)(item % hp->n_head_kv);
        uint32_t zz = (uint32_t)(item / hp->n_head_kv);
        uint32_t blk = zz % 2 == 0 ? zz / 2 : j->n_tblocks - 1 - zz / 2;
        uint32_t t0 = blk * j->tok_per_item;
        uint32_t t1 = t0 + j->tok_per_item < j->n_tok ? t0 + j->tok_per_item : j->n_tok;
        for (uint32_t h0 = kvh * group; h0 < (kvh + 1) * group; h0 += hc) {
            uint32_t h1 = h0 + hc < (kvh + 1) * group ? h0 + hc : (kvh + 1) * group;
            uint32_t nq = 0, n_vis = 0;
            for (uint32_t t = t0; t < t1; t++) {
                int64_t pos = j->pos0 + t;
                /* slots are sorted by position: the visible ones are a prefix */
                while (n_vis < L->n && L->pos[n_vis] <= pos) {
                    n_vis++;
                }
                for (uint32_t h = h0; h < h1; h++) {
                    qp[nq] = c->q + (size_t)t * q_dim + (size_t)h * hp->head_dim;
                    pp[nq] = c->probs + ((size_t)t * hp->n_head + h) * c->params.n_ctx;
                    op[nq] = c->att + (size_t)t * o_dim + (size_t)h * hp->head_dim_v;
                    nv[nq] = n_vis;
                    qpos[nq] = pos;
                    nq++;
                }
            }
            struct pd_attn_args a = {
                nq, qp, pp, op, nv,
                (const uint8_t *)L->k + (size_t)kvh * hp->head_dim * esz,
                (const uint8_t *)L->v + (size_t)kvh * hp->head_dim_v * esz,
                c->kv->dim_k, c->kv->dim_v, hp->head_dim, hp->head_dim_v,
                1.0f / sqrtf((float)hp->head_dim), f16,
                c->hide ? c->hide[j->il] : NULL, L->pos, qpos,
            };
            pd_simd_attn(j->ops, &a);
            for (uint32_t i = 0; i < nq; i++) {
                /* the hook's rows are 0 past the token's position */
                memset(pp[i] + nv[i], 0, (L->n - nv[i]) * sizeof(float));
            }
        }
    }
}

/* Attention of the batch's tokens in layer il (their K/V already appended). */
static void attention(struct pd_ctx *c, uint32_t il, uint32_t n_tok, int64_t pos0)
{
    const struct pd_hparams *hp = &c->model->hp;
    size_t n_slots = c->kv->layers[il].n;
    uint32_t group = hp->n_head / hp->n_head_kv;
    uint32_t per = ATT_QUERIES / group > 0 ? ATT_QUERIES / group : 1;
    uint32_t n_tb = (n_tok + per - 1) / per;
    struct attn_block_job j = {c, il, n_tok, pos0, per, n_tb, pd_simd_ops()};
    size_t work = (n_slots + 1) * (hp->head_dim + hp->head_dim_v) * per * group;
    size_t grain = work >= PD_POOL_GRAIN ? 1 : PD_POOL_GRAIN / work;
    pd_pool_run(c->pool, (size_t)n_tb * hp->n_head_kv, grain, attn_blocks, &j);
}

/* ---- per-token stages ------------------------------------------------------------------ */

/* The work between two weight products is per token: a stage runs it over the batch's
 * tokens in parallel and leaves each token's next matrix input in the dot format in c->xq,
 * so no thread waits on a serial loop between the products. */
enum stage_kind {
    STAGE_NORM,     /* xn[i] = rmsnorm(x[t]) */
    STAGE_ADD_NORM, /* x[t] += out[t]; xn[i] = rmsnorm(x[t]) */
    STAGE_SWIGLU,   /* xn[i] = silu(gate[t]) * up[t] */
    STAGE_ATT,      /* the input is att[t] as it is */
};

struct stage_job {
    struct pd_ctx *c;
    enum stage_kind kind;
    const float *norm_w;                /* STAGE_NORM, STAGE_ADD_NORM */
    uint32_t t_first;                   /* token of row 0 (the output stage skips some) */
    const struct pd_dtype_traits *xt;   /* the input's dot format; NULL: leave it in f32 */
};

static void stage_rows(void *ctx, size_t i0, size_t i1)
{
    const struct stage_job *j = ctx;
    struct pd_ctx *c = j->c;
    const struct pd_hparams *hp = &c->model->hp;
    uint32_t E = hp->n_embd;
    uint32_t o_dim = hp->n_head * hp->head_dim_v;
    size_t wide = max_u32(max_u32(E, hp->n_ff), o_dim);
    for (size_t i = i0; i < i1; i++) {
        size_t t = j->t_first + i;
        float *x = c->x + t * E;
        float *xn = c->xn + i * wide;
        const float *in = xn;
        uint32_t cols = E;
        switch (j->kind) {
        case STAGE_ADD_NORM: {
            pd_add_row(x, c->out + t * E, E);
        }
            /* fall through */
        case STAGE_NORM:
            pd_rmsnorm(xn, x, j->norm_w, E, hp->norm_eps);
            break;
        case STAGE_SWIGLU: {
            const float *g = c->gate + t * hp->n_ff;
            const float *u = c->up + t * hp->n_ff;
            pd_simd_swiglu(pd_simd_ops(), xn, g, u, hp->n_ff);
            cols = hp->n_ff;
            break;
        }
        case STAGE_ATT:
            in = c->att + t * o_dim;
            cols = o_dim;
            break;
        }
        if (j->xt) {
            j->xt->from_f32(in, (uint8_t *)c->xq + i * c->xq_row_bytes, cols);
        }
    }
}

/* Runs a stage over n rows; fmt is the dot format of the weights that read them next
 * (PD_DTYPE_COUNT: several, the product converts them itself). */
static void stage(struct pd_ctx *c, enum stage_kind kind, const float *norm_w,
                  uint32_t t_first, uint32_t n, enum pd_dtype fmt)
{
    const struct pd_hparams *hp = &c->model->hp;
    struct stage_job j = {c, kind, norm_w, t_first,
                          fmt == PD_DTYPE_COUNT ? NULL : pd_simd_traits(fmt)};
    uint32_t cols = kind == STAGE_SWIGLU ? hp->n_ff : hp->n_embd;
    pd_pool_run(c->pool, n, stage_grain(cols), stage_rows, &j);
}

/* Per token: the q/k/v biases, the q/k norms and the rotation of every head, then K and V
 * stored in the cache slots the batch reserved (slot0 + t). Token t's angles are computed
 * in layer 0 and read again by the later layers (c->rope). */
struct qkv_job {
    struct pd_ctx *c;
    const struct pd_layer *L;
    uint32_t il;
    int64_t pos0;
    uint32_t slot0;
};

static void qkv_rows(void *ctx, size_t t0, size_t t1)
{
    const struct qkv_job *j = ctx;
    struct pd_ctx *c = j->c;
    const struct pd_model *m = c->model;
    const struct pd_hparams *hp = &m->hp;
    const struct pd_layer *L = j->L;
    uint32_t q_dim = hp->n_head * hp->head_dim;
    uint32_t k_dim = hp->n_head_kv * hp->head_dim;
    uint32_t v_dim = hp->n_head_kv * hp->head_dim_v;
    for (size_t t = t0; t < t1; t++) {
        float *q = c->q + t * q_dim;
        float *k = c->k + t * k_dim;
        float *v = c->v + t * v_dim;
        float *rot = c->rope + t * hp->n_rot;
        if (j->il == 0) {
            rope_angles(rot, hp->n_rot, j->pos0 + (int64_t)t, hp, wf32_or_null(&m->rope_freqs));
        }
        if (L->bq.data) {
            for (uint32_t i = 0; i < q_dim; i++) {
                q[i] += wf32(&L->bq)[i];
            }
            for (uint32_t i = 0; i < k_dim; i++) {
                k[i] += wf32(&L->bk)[i];
            }
            for (uint32_t i = 0; i < v_dim; i++) {
                v[i] += wf32(&L->bv)[i];
            }
        }
        for (uint32_t h = 0; h < hp->n_head; h++) {
            float *qh = q + (size_t)h * hp->head_dim;
            if (L->q_norm.data) {
                pd_rmsnorm(qh, qh, wf32(&L->q_norm), hp->head_dim, hp->norm_eps);
            }
            rope_apply(qh, hp->n_rot, rot, hp->rope_type);
        }
        for (uint32_t h = 0; h < hp->n_head_kv; h++) {
            float *kh = k + (size_t)h * hp->head_dim;
            if (L->k_norm.data) {
                pd_rmsnorm(kh, kh, wf32(&L->k_norm), hp->head_dim, hp->norm_eps);
            }
            rope_apply(kh, hp->n_rot, rot, hp->rope_type);
        }
        pd_kvcache_put(c->kv, j->il, j->slot0 + (uint32_t)t, k, v);
    }
}

/* ---- the batch forward ----------------------------------------------------------------- */

/* y = W x for the tokens whose rows a stage left in c->xq (or, for mixed dot formats,
 * whose f32 rows are x, stride x_stride). */
static void product(struct pd_ctx *c, int n, const struct pd_weight *const *w,
                    float *const *y, const size_t *ys, const float *x, size_t x_stride,
                    uint32_t n_tok)
{
    matmul_n(c, n, w, y, ys, x, x_stride, n_tok, dot_format(n, w) != PD_DTYPE_COUNT);
}

static enum pd_status eval_batch(struct pd_ctx *c, const int32_t *tokens, uint32_t n_tok,
                                 pd_logits_fn logits_fn, void *ud, bool last_batch,
                                 struct pd_err *err)
{
    const struct pd_model *m = c->model;
    const struct pd_hparams *hp = &m->hp;
    uint32_t E = hp->n_embd;
    uint32_t q_dim = hp->n_head * hp->head_dim;
    uint32_t k_dim = hp->n_head_kv * hp->head_dim;
    uint32_t v_dim = hp->n_head_kv * hp->head_dim_v;
    uint32_t o_dim = hp->n_head * hp->head_dim_v;
    uint32_t wide = max_u32(max_u32(E, hp->n_ff), o_dim);
    int64_t pos0 = c->n_past;
    enum pd_status st;

    for (uint32_t t = 0; t < n_tok; t++) {
        pd_weight_row_f32(&m->tok_embd, (uint64_t)tokens[t], c->x + (size_t)t * E);
    }
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const struct pd_layer *L = &m->layers[il];
        if (c->cancel && atomic_load(c->cancel)) {
            pd_kvcache_truncate(c->kv, pos0);
            return pd_err_set(err, PD_ECANCELLED, "cancelled");
        }
        const struct pd_weight *wqkv[3] = {&L->wq, &L->wk, &L->wv};
        const struct pd_weight *wo[1] = {&L->wo};
        const struct pd_weight *wgu[2] = {&L->w_gate, &L->w_up};
        const struct pd_weight *wdown[1] = {&L->w_down};
        /* the previous layer's FFN output joins the residual here */
        stage(c, il == 0 ? STAGE_NORM : STAGE_ADD_NORM, wf32(&L->attn_norm), 0, n_tok,
              dot_format(3, wqkv));
        float *y_qkv[3] = {c->q, c->k, c->v};
        size_t ys_qkv[3] = {q_dim, k_dim, v_dim};
        product(c, 3, wqkv, y_qkv, ys_qkv, c->xn, wide, n_tok);
        uint32_t slot0;
        if ((st = pd_kvcache_reserve(c->kv, il, pos0, n_tok, &slot0, err))) {
            pd_kvcache_truncate(c->kv, pos0);
            return st;
        }
        struct qkv_job qj = {c, L, il, pos0, slot0};
        pd_pool_run(c->pool, n_tok, stage_grain(q_dim + k_dim), qkv_rows, &qj);
        attention(c, il, n_tok, pos0);
        if (c->attn_hook && c->attn_batch && c->attn_batch_of == c->attn_hook) {
            const struct pd_kv_layer *KL = &c->kv->layers[il];
            c->attn_batch(c->attn_hook_ud, c->pool, il, pos0, n_tok, c->probs,
                          (size_t)hp->n_head * c->params.n_ctx, hp->n_head, KL->n, KL->pos);
        } else if (c->attn_hook) {
            const struct pd_kv_layer *KL = &c->kv->layers[il];
            for (uint32_t t = 0; t < n_tok; t++) {
                c->attn_hook(c->attn_hook_ud, il, pos0 + t,
                             c->probs + (size_t)t * hp->n_head * c->params.n_ctx, hp->n_head,
                             KL->n, KL->pos);
            }
        }
        stage(c, STAGE_ATT, NULL, 0, n_tok, dot_format(1, wo));
        float *y_o[1] = {c->out};
        size_t ys_e[1] = {E};
        product(c, 1, wo, y_o, ys_e, c->att, o_dim, n_tok);
        stage(c, STAGE_ADD_NORM, wf32(&L->ffn_norm), 0, n_tok, dot_format(2, wgu));
        float *y_gu[2] = {c->gate, c->up};
        size_t ys_gu[2] = {hp->n_ff, hp->n_ff};
        product(c, 2, wgu, y_gu, ys_gu, c->xn, wide, n_tok);
        stage(c, STAGE_SWIGLU, NULL, 0, n_tok, dot_format(1, wdown));
        product(c, 1, wdown, y_o, ys_e, c->xn, wide, n_tok);
    }
    /* Output: logits for every token when asked, else only for the batch's last token
     * (the last layer's FFN output joins the residual of those tokens only). */
    uint32_t first = logits_fn ? 0 : n_tok - 1;
    uint32_t n_out = n_tok - first;
    if (!logits_fn && !last_batch) {
        n_out = 0;
    }
    if (n_out > 0) {
        const struct pd_weight *wout[1] = {&m->output};
        stage(c, STAGE_ADD_NORM, wf32(&m->output_norm), first, n_out, dot_format(1, wout));
        float *y[1] = {c->out};
        size_t ys[1] = {hp->n_vocab};
        product(c, 1, wout, y, ys, c->xn, wide, n_out);
        for (uint32_t t = 0; t < n_out; t++) {
            const float *lg = c->out + (size_t)t * hp->n_vocab;
            if (logits_fn) {
                logits_fn(ud, 0, pos0 + first + t, lg);
            }
        }
        memcpy(c->logits, c->out + (size_t)(n_out - 1) * hp->n_vocab,
               hp->n_vocab * sizeof(float));
        c->has_logits = true;
    }
    c->n_past += n_tok;
    return PD_OK;
}

struct logits_fwd {
    pd_logits_fn fn;
    void *ud;
    size_t base; /* index of the batch's first token within the eval call */
    int64_t pos_base;
};

static void logits_forward(void *ud, size_t i, int64_t pos, const float *logits)
{
    (void)i;
    struct logits_fwd *f = ud;
    f->fn(f->ud, f->base + (size_t)(pos - f->pos_base), pos, logits);
}

enum pd_status pd_ctx_eval(struct pd_ctx *c, const int32_t *tokens, size_t n,
                           pd_logits_fn logits_fn, void *ud, struct pd_err *err)
{
    const struct pd_hparams *hp = &c->model->hp;
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= hp->n_vocab) {
            return pd_err_set(err, PD_EINVAL, "token %d at index %zu: out of range [0, %u)",
                              tokens[i], i, hp->n_vocab);
        }
    }
    if (n > pd_ctx_kv_free(c)) {
        return pd_err_set(err, PD_EINVAL,
                          "context full: %zu more tokens do not fit (%u slots free of %u)", n,
                          pd_ctx_kv_free(c), c->kv->cap);
    }
    if (c->backend) {
        return n ? c->backend->ops->eval(c->backend, c, tokens, n, logits_fn, ud, err) : PD_OK;
    }
    size_t done = 0;
    while (done < n) {
        uint32_t nb = (uint32_t)((n - done) < c->params.n_batch ? (n - done) : c->params.n_batch);
        struct logits_fwd f = {logits_fn, ud, done, c->n_past};
        enum pd_status st = eval_batch(c, tokens + done, nb, logits_fn ? logits_forward : NULL,
                                       &f, done + nb == n, err);
        if (st) {
            return st;
        }
        done += nb;
    }
    return PD_OK;
}
