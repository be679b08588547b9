/* train.c - llama forward and backward on the CPU, AdamW, checkpoints and GGUF output for
 * the reasoner (see train.h for the DESIGN).
 *
 * Shapes: N tokens in a batch, E = n_embd, H / Hkv heads, D = head size, F = n_ff,
 * V = n_vocab; HD = H * D, KD = Hkv * D. Activation arrays are [N][width] row-major. */
#include "train.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"
#include "gemm.h"
#include "gguf.h"
#include "gguf_writer.h"

#define TR_MAX_DIM 8192u
#define TR_MAX_LAYERS 64u
#define TR_MAX_VOCAB 65536u
#define TR_MAX_CTX 8192u

enum pd_status tr_config_check(const struct tr_config *c, struct pd_err *err)
{
    if (c->n_vocab < 2 || c->n_vocab > TR_MAX_VOCAB || c->n_embd < 2 || c->n_embd > TR_MAX_DIM ||
        c->n_layer < 1 || c->n_layer > TR_MAX_LAYERS || c->n_ff < 1 || c->n_ff > TR_MAX_DIM ||
        c->n_ctx < 2 || c->n_ctx > TR_MAX_CTX) {
        return pd_err_set(err, PD_EINVAL, "model shape out of range (vocab %u, embd %u, layers "
                          "%u, ff %u, ctx %u)", c->n_vocab, c->n_embd, c->n_layer, c->n_ff,
                          c->n_ctx);
    }
    if (c->n_head < 1 || c->n_embd % c->n_head || (c->n_embd / c->n_head) % 2 ||
        c->n_head_kv < 1 || c->n_head % c->n_head_kv) {
        return pd_err_set(err, PD_EINVAL, "heads: %u heads, %u kv heads for embedding %u "
                          "(need an even head size and kv heads dividing heads)", c->n_head,
                          c->n_head_kv, c->n_embd);
    }
    if (!(c->norm_eps > 0 && c->norm_eps < 1) || !(c->rope_base > 1)) {
        return pd_err_set(err, PD_EINVAL, "norm eps %g or rope base %g out of range",
                          (double)c->norm_eps, (double)c->rope_base);
    }
    return PD_OK;
}

/* ---- tensor table and views ------------------------------------------------------------- */

static void add_tensor(struct tr_model *m, const char *name, uint32_t rows, uint32_t cols,
                       bool norm)
{
    struct tr_tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->off = m->n_params;
    t->rows = rows;
    t->cols = cols;
    t->is_norm = norm;
    t->decay = !norm;
    m->n_params += (size_t)rows * cols;
}

/* Points view v at base following the tensor table (same order as build_table). */
static void bind_view(const struct tr_model *m, float *base, struct tr_view *v)
{
    size_t k = 0;
    v->tok_embd = base + m->tensors[k++].off;
    for (uint32_t l = 0; l < m->cfg.n_layer; l++) {
        struct tr_layer_ptr *L = &v->layer[l];
        L->attn_norm = base + m->tensors[k++].off;
        L->wq = base + m->tensors[k++].off;
        L->wk = base + m->tensors[k++].off;
        L->wv = base + m->tensors[k++].off;
        L->wo = base + m->tensors[k++].off;
        L->ffn_norm = base + m->tensors[k++].off;
        L->w_gate = base + m->tensors[k++].off;
        L->w_up = base + m->tensors[k++].off;
        L->w_down = base + m->tensors[k++].off;
    }
    v->output_norm = base + m->tensors[k++].off;
}

static void build_table(struct tr_model *m)
{
    const struct tr_config *c = &m->cfg;
    uint32_t D = c->n_embd / c->n_head, HD = c->n_head * D, KD = c->n_head_kv * D;
    char n[48];
    add_tensor(m, "token_embd.weight", c->n_vocab, c->n_embd, false);
    for (uint32_t l = 0; l < c->n_layer; l++) {
#define T(suffix, r, cl, norm)                                  \
    snprintf(n, sizeof n, "blk.%u.%s", l, suffix);              \
    add_tensor(m, n, r, cl, norm)
        T("attn_norm.weight", 1, c->n_embd, true);
        T("attn_q.weight", HD, c->n_embd, false);
        T("attn_k.weight", KD, c->n_embd, false);
        T("attn_v.weight", KD, c->n_embd, false);
        T("attn_output.weight", c->n_embd, HD, false);
        T("ffn_norm.weight", 1, c->n_embd, true);
        T("ffn_gate.weight", c->n_ff, c->n_embd, false);
        T("ffn_up.weight", c->n_ff, c->n_embd, false);
        T("ffn_down.weight", c->n_embd, c->n_ff, false);
#undef T
    }
    add_tensor(m, "output_norm.weight", 1, c->n_embd, true);
}

static enum pd_status model_alloc(const struct tr_config *cfg, struct tr_model **out,
                                  struct pd_err *err)
{
    *out = NULL;
    enum pd_status st = tr_config_check(cfg, err);
    if (st) {
        return st;
    }
    struct tr_model *m = calloc(1, sizeof *m);
    if (!m) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (model)");
    }
    m->cfg = *cfg;
    m->tensors = pd_calloc(2 + 9 * (size_t)cfg->n_layer, sizeof *m->tensors);
    m->W.layer = pd_calloc(cfg->n_layer, sizeof *m->W.layer);
    m->G.layer = pd_calloc(cfg->n_layer, sizeof *m->G.layer);
    if (!m->tensors || !m->W.layer || !m->G.layer) {
        tr_model_free(&m);
        return pd_err_set(err, PD_ENOMEM, "out of memory (model)");
    }
    build_table(m);
    m->w = pd_calloc(m->n_params, sizeof *m->w);
    m->g = pd_calloc(m->n_params, sizeof *m->g);
    m->m = pd_calloc(m->n_params, sizeof *m->m);
    m->v = pd_calloc(m->n_params, sizeof *m->v);
    if (!m->w || !m->g || !m->m || !m->v) {
        tr_model_free(&m);
        return pd_err_set(err, PD_ENOMEM, "out of memory (%zu parameters)", m ? 0 : (size_t)0);
    }
    bind_view(m, m->w, &m->W);
    bind_view(m, m->g, &m->G);
    *out = m;
    return PD_OK;
}

void tr_model_free(struct tr_model **mp)
{
    if (!mp || !*mp) {
        return;
    }
    struct tr_model *m = *mp;
    free(m->tensors);
    free(m->W.layer);
    free(m->G.layer);
    free(m->w);
    free(m->g);
    free(m->m);
    free(m->v);
    free(m);
    *mp = NULL;
}

/* splitmix64 and Box-Muller: the same initial weights on every machine. */
static uint64_t init_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double init_normal(uint64_t *s)
{
    double u1 = ((double)(init_next(s) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(init_next(s) >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

enum pd_status tr_model_new(const struct tr_config *cfg, uint64_t seed, struct tr_model **out,
                            struct pd_err *err)
{
    enum pd_status st = model_alloc(cfg, out, err);
    if (st) {
        return st;
    }
    struct tr_model *m = *out;
    uint64_t s = seed;
    double resid = 0.02 / sqrt(2.0 * cfg->n_layer);
    for (size_t k = 0; k < m->n_tensors; k++) {
        const struct tr_tensor *t = &m->tensors[k];
        size_t n = (size_t)t->rows * t->cols;
        bool out_proj = strstr(t->name, "attn_output") || strstr(t->name, "ffn_down");
        double sd = out_proj ? resid : 0.02;
        for (size_t i = 0; i < n; i++) {
            m->w[t->off + i] = t->is_norm ? 1.0f : (float)(sd * init_normal(&s));
        }
    }
    return PD_OK;
}

/* ---- run buffers --------------------------------------------------------------------------- */

struct layer_act {
    float *x;     /* [N][E] layer input */
    float *xn1;   /* [N][E] attention RMSNorm output */
    float *rs1;   /* [N] 1/rms */
    float *q;     /* [N][HD] after RoPE */
    float *k;     /* [N][KD] after RoPE */
    float *v;     /* [N][KD] */
    float *o;     /* [N][HD] attention output (before wo) */
    float *xmid;  /* [N][E] after the attention residual */
    float *xn2;   /* [N][E] */
    float *rs2;   /* [N] */
    float *a;     /* [N][F] gate */
    float *b;     /* [N][F] up */
    float *h;     /* [N][F] silu(a) * b */
};

struct attn_scratch {
    float *kt;    /* [D][Lmax] */
    float *p;     /* [Lmax][Lmax] */
    float *pt;    /* [Lmax][Lmax] */
    float *dp;    /* [Lmax][Lmax] */
};

struct tr_run {
    struct tr_model *m;        /* borrowed */
    struct tr_pool *pool;      /* owned */
    size_t n_max;
    uint32_t D, HD, KD;
    float *wt;                 /* [n_params] transposed matrices (forward B operands) */
    struct layer_act *L;       /* owned [n_layer] */
    float *xf;                 /* [N][E] final residual */
    float *xnf;                /* [N][E] */
    float *rsf;                /* [N] */
    float *logits;             /* [N][V]; after backward's start, d(loss)/d(logits) */
    float *rope_cos, *rope_sin;/* [n_ctx][D/2] */
    /* backward scratch */
    float *dx, *dxmid, *dxn;   /* [N][E] */
    float *dh, *da, *db;       /* [N][F] */
    float *dq, *dk, *dv, *dout;/* [N][HD] / [N][KD] */
    struct attn_scratch *as;   /* owned [threads] */
    double *red;               /* [chunks] reduction scratch */
    double *acc_e;             /* [E] norm-gain gradient sums */
    size_t n_red;
    /* the batch of the last forward */
    size_t *order;             /* [N * Hkv] attention tasks, longest sequences first */
    int32_t *ids;              /* [N] */
    int32_t *row_tgt;          /* [N] id that row t's logits predict, -1: none */
    double *nll;               /* [N] -ln p(row_tgt[t]) */
    uint8_t *miss;             /* [N] row_tgt[t] is not the row's argmax */
    int32_t *pos;              /* [N] position within its sequence */
    size_t *seq_off, *seq_len; /* [N] */
    size_t n_tok, n_seq, n_targets;
};

static float *falloc(size_t n, bool *ok)
{
    float *p = pd_malloc_array(n ? n : 1, sizeof(float));
    *ok = *ok && p != NULL;
    return p;
}

enum pd_status tr_run_open(struct tr_model *m, size_t n_tok_max, int n_threads,
                           struct tr_run **out, struct pd_err *err)
{
    *out = NULL;
    const struct tr_config *c = &m->cfg;
    struct tr_run *r = calloc(1, sizeof *r);
    if (!r) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (run)");
    }
    r->m = m;
    r->n_max = n_tok_max;
    r->D = c->n_embd / c->n_head;
    r->HD = c->n_head * r->D;
    r->KD = c->n_head_kv * r->D;
    size_t N = n_tok_max, E = c->n_embd, F = c->n_ff, V = c->n_vocab, Lx = c->n_ctx;
    bool ok = true;
    r->pool = tr_pool_open(n_threads);
    ok = r->pool != NULL;
    r->wt = falloc(m->n_params, &ok);
    r->L = pd_calloc(c->n_layer, sizeof *r->L);
    ok = ok && r->L;
    for (uint32_t l = 0; ok && l < c->n_layer; l++) {
        struct layer_act *A = &r->L[l];
        A->x = falloc(N * E, &ok);
        A->xn1 = falloc(N * E, &ok);
        A->rs1 = falloc(N, &ok);
        A->q = falloc(N * r->HD, &ok);
        A->k = falloc(N * r->KD, &ok);
        A->v = falloc(N * r->KD, &ok);
        A->o = falloc(N * r->HD, &ok);
        A->xmid = falloc(N * E, &ok);
        A->xn2 = falloc(N * E, &ok);
        A->rs2 = falloc(N, &ok);
        A->a = falloc(N * F, &ok);
        A->b = falloc(N * F, &ok);
        A->h = falloc(N * F, &ok);
    }
    r->xf = falloc(N * E, &ok);
    r->xnf = falloc(N * E, &ok);
    r->rsf = falloc(N, &ok);
    r->logits = falloc(N * V, &ok);
    r->rope_cos = falloc(Lx * r->D / 2, &ok);
    r->rope_sin = falloc(Lx * r->D / 2, &ok);
    r->dx = falloc(N * E, &ok);
    r->dxmid = falloc(N * E, &ok);
    r->dxn = falloc(N * E, &ok);
    r->dh = falloc(N * F, &ok);
    r->da = falloc(N * F, &ok);
    r->db = falloc(N * F, &ok);
    r->dq = falloc(N * r->HD, &ok);
    r->dk = falloc(N * r->KD, &ok);
    r->dv = falloc(N * r->KD, &ok);
    r->dout = falloc(N * r->HD, &ok);
    int nt = ok ? tr_pool_threads(r->pool) : 0;
    r->as = pd_calloc((size_t)(nt > 0 ? nt : 1), sizeof *r->as);
    ok = ok && r->as;
    for (int t = 0; ok && t < nt; t++) {
        r->as[t].kt = falloc(r->D * Lx, &ok);
        r->as[t].p = falloc(Lx * Lx, &ok);
        r->as[t].pt = falloc(Lx * Lx, &ok);
        r->as[t].dp = falloc(Lx * Lx, &ok);
    }
    r->n_red = m->n_params / 4096 + 2;
    r->red = pd_calloc(r->n_red, sizeof *r->red);
    r->acc_e = pd_calloc(E, sizeof *r->acc_e);
    ok = ok && r->acc_e;
    r->order = pd_calloc(N * c->n_head_kv + 1, sizeof *r->order);
    r->ids = pd_calloc(N + 1, sizeof *r->ids);
    r->row_tgt = pd_calloc(N + 1, sizeof *r->row_tgt);
    r->nll = pd_calloc(N + 1, sizeof *r->nll);
    r->miss = pd_calloc(N + 1, 1);
    r->pos = pd_calloc(N + 1, sizeof *r->pos);
    r->seq_off = pd_calloc(N + 1, sizeof *r->seq_off);
    r->seq_len = pd_calloc(N + 1, sizeof *r->seq_len);
    ok = ok && r->red && r->order && r->ids && r->row_tgt && r->nll && r->miss && r->pos &&
         r->seq_off && r->seq_len;
    if (!ok) {
        tr_run_close(&r);
        return pd_err_set(err, PD_ENOMEM, "out of memory (run buffers for %zu tokens)", N);
    }
    /* RoPE tables, computed exactly as engine/forward.c rope_head does. */
    uint32_t half = r->D / 2;
    float theta_scale = powf(c->rope_base, -2.0f / (float)r->D);
    for (size_t p = 0; p < Lx; p++) {
        float theta = (float)p;
        for (uint32_t i = 0; i < half; i++) {
            float th = theta * 1.0f;
            r->rope_cos[p * half + i] = cosf(th);
            r->rope_sin[p * half + i] = sinf(th);
            theta *= theta_scale;
        }
    }
    *out = r;
    return PD_OK;
}

void tr_run_close(struct tr_run **rp)
{
    if (!rp || !*rp) {
        return;
    }
    struct tr_run *r = *rp;
    int nt = r->pool ? tr_pool_threads(r->pool) : 0;
    tr_pool_close(&r->pool);
    free(r->wt);
    for (uint32_t l = 0; r->L && l < r->m->cfg.n_layer; l++) {
        struct layer_act *A = &r->L[l];
        free(A->x);
        free(A->xn1);
        free(A->rs1);
        free(A->q);
        free(A->k);
        free(A->v);
        free(A->o);
        free(A->xmid);
        free(A->xn2);
        free(A->rs2);
        free(A->a);
        free(A->b);
        free(A->h);
    }
    free(r->L);
    free(r->xf);
    free(r->xnf);
    free(r->rsf);
    free(r->logits);
    free(r->rope_cos);
    free(r->rope_sin);
    free(r->dx);
    free(r->dxmid);
    free(r->dxn);
    free(r->dh);
    free(r->da);
    free(r->db);
    free(r->dq);
    free(r->dk);
    free(r->dv);
    free(r->dout);
    for (int t = 0; r->as && t < nt; t++) {
        free(r->as[t].kt);
        free(r->as[t].p);
        free(r->as[t].pt);
        free(r->as[t].dp);
    }
    free(r->as);
    free(r->red);
    free(r->acc_e);
    free(r->order);
    free(r->ids);
    free(r->row_tgt);
    free(r->nll);
    free(r->miss);
    free(r->pos);
    free(r->seq_off);
    free(r->seq_len);
    free(r);
    *rp = NULL;
}

/* ---- elementwise pieces (per token, parallel over tokens) -------------------------------- */

/* engine/forward.c rmsnorm: squares in float summed in double, mean rounded to float. */
static float rms_scale(const float *x, uint32_t n, float eps)
{
    double sum = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        sum += (double)(x[i] * x[i]);
    }
    float mean = (float)(sum / n);
    return 1.0f / sqrtf(mean + eps);
}

struct norm_job {
    const float *x;
    const float *g;
    float *y;
    float *rs;
    uint32_t n;
    float eps;
};

static void norm_rows(void *ctx, size_t t0, size_t t1, int thread)
{
    (void)thread;
    const struct norm_job *j = ctx;
    for (size_t t = t0; t < t1; t++) {
        const float *x = j->x + t * j->n;
        float *y = j->y + t * j->n;
        float s = rms_scale(x, j->n, j->eps);
        j->rs[t] = s;
        for (uint32_t i = 0; i < j->n; i++) {
            y[i] = x[i] * s * j->g[i];
        }
    }
}

static void rmsnorm_fwd(struct tr_run *r, const float *x, const float *g, float *y, float *rs)
{
    struct norm_job j = {x, g, y, rs, r->m->cfg.n_embd, r->m->cfg.norm_eps};
    tr_pool_run(r->pool, r->n_tok, norm_rows, &j);
}

struct norm_back_job {
    const float *x, *g, *rs, *dy;
    float *dx;     /* dx += norm-backward(dy) */
    uint32_t n;
};

static void norm_back_rows(void *ctx, size_t t0, size_t t1, int thread)
{
    (void)thread;
    const struct norm_back_job *j = ctx;
    for (size_t t = t0; t < t1; t++) {
        const float *x = j->x + t * j->n, *dy = j->dy + t * j->n;
        float *dx = j->dx + t * j->n;
        float s = j->rs[t];
        double dot = 0.0;
        for (uint32_t i = 0; i < j->n; i++) {
            dot += (double)dy[i] * j->g[i] * x[i];
        }
        float c = (float)(dot * s * s * s / j->n);
        for (uint32_t i = 0; i < j->n; i++) {
            dx[i] += s * dy[i] * j->g[i] - x[i] * c;
        }
    }
}

/* dx += backward of y = x * rs * g; dg = sum over tokens of dy * x * rs (token order). */
static void rmsnorm_bwd(struct tr_run *r, const float *x, const float *g, const float *rs,
                        const float *dy, float *dx, float *dg)
{
    uint32_t E = r->m->cfg.n_embd;
    struct norm_back_job j = {x, g, rs, dy, dx, E};
    tr_pool_run(r->pool, r->n_tok, norm_back_rows, &j);
    double *acc = r->acc_e;
    for (uint32_t i = 0; i < E; i++) {
        acc[i] = 0.0;
    }
    for (size_t t = 0; t < r->n_tok; t++) {
        for (uint32_t i = 0; i < E; i++) {
            acc[i] += (double)dy[t * E + i] * x[t * E + i] * rs[t];
        }
    }
    for (uint32_t i = 0; i < E; i++) {
        dg[i] = (float)acc[i];
    }
}

/* ---- linear layers ---------------------------------------------------------------------- */

/* Y[N][out] (+)= X[N][in] W^T, W [out][in] a weight matrix of the model. */
static void linear_fwd(struct tr_run *r, const float *W, size_t out, size_t in, const float *X,
                       float *Y)
{
    const float *Wt = r->wt + (W - r->m->w);
    tr_gemm(r->pool, r->n_tok, out, in, X, in, Wt, out, Y, out, false);
}

/* dX[N][in] (+)= dY[N][out] W. */
static void linear_bwd_x(struct tr_run *r, const float *W, size_t out, size_t in,
                         const float *dY, float *dX, bool acc)
{
    tr_gemm(r->pool, r->n_tok, in, out, dY, out, W, in, dX, in, acc);
}

/* dW[out][in] = dY^T X. */
static void linear_bwd_w(struct tr_run *r, float *dW, size_t out, size_t in, const float *dY,
                         const float *X)
{
    tr_gemm_at(r->pool, out, in, r->n_tok, dY, out, X, in, dW, in, false);
}

/* ---- RoPE (normal: adjacent pairs) ------------------------------------------------------- */

struct rope_job {
    const struct tr_run *r;
    float *x;
    uint32_t n_heads;
    uint32_t stride;
    bool inverse;
};

static void rope_rows(void *ctx, size_t t0, size_t t1, int thread)
{
    (void)thread;
    const struct rope_job *j = ctx;
    uint32_t half = j->r->D / 2;
    for (size_t t = t0; t < t1; t++) {
        const float *cs = j->r->rope_cos + (size_t)j->r->pos[t] * half;
        const float *sn = j->r->rope_sin + (size_t)j->r->pos[t] * half;
        for (uint32_t h = 0; h < j->n_heads; h++) {
            float *x = j->x + t * j->stride + (size_t)h * j->r->D;
            for (uint32_t i = 0; i < half; i++) {
                float x0 = x[2 * i], x1 = x[2 * i + 1];
                if (j->inverse) {
                    x[2 * i] = x0 * cs[i] + x1 * sn[i];
                    x[2 * i + 1] = -x0 * sn[i] + x1 * cs[i];
                } else {
                    x[2 * i] = x0 * cs[i] - x1 * sn[i];
                    x[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
                }
            }
        }
    }
}

static void rope(struct tr_run *r, float *x, uint32_t n_heads, bool inverse)
{
    struct rope_job j = {r, x, n_heads, n_heads * r->D, inverse};
    tr_pool_run(r->pool, r->n_tok, rope_rows, &j);
}

/* ---- attention ---------------------------------------------------------------------------- */

struct attn_job {
    struct tr_run *r;
    const struct layer_act *A;
    size_t *order;       /* [n_tasks] task ids, longest sequences first */
    size_t n_tasks;
    atomic_size_t next;
    bool backward;
};

/* Causal products, in row blocks of CB so that the zero triangle is (mostly) skipped. */
#define CB 32

/* C = A B for the entries a causal row needs: row i gets columns [0, end of its block);
 * the columns after that are left as they were (callers only read j <= i). */
static void gemm_causal_cols(size_t L, size_t K, const float *A, size_t lda, const float *B,
                             size_t ldb, float *C, size_t ldc)
{
    for (size_t i0 = 0; i0 < L; i0 += CB) {
        size_t i1 = i0 + CB < L ? i0 + CB : L;
        tr_gemm_serial(i1 - i0, i1, K, A + i0 * lda, lda, B, ldb, C + i0 * ldc, ldc, false);
    }
}

/* C (+)= A B for a lower-triangular A [L][L] (A[i][k] = 0 for k > i): row i sums k < end of
 * its block. */
static void gemm_lower(size_t L, size_t N, const float *A, size_t lda, const float *B,
                       size_t ldb, float *C, size_t ldc, bool acc)
{
    for (size_t i0 = 0; i0 < L; i0 += CB) {
        size_t i1 = i0 + CB < L ? i0 + CB : L;
        tr_gemm_serial(i1 - i0, N, i1, A + i0 * lda, lda, B, ldb, C + i0 * ldc, ldc, acc);
    }
}

/* C (+)= P^T B for a lower-triangular P [L][L] (P[k][j] = 0 for k < j), read through the
 * transposed product: row j of C sums k from the start of its block. */
static void gemm_lower_t(size_t L, size_t N, const float *P, size_t ldp, const float *B,
                         size_t ldb, float *C, size_t ldc, bool acc)
{
    for (size_t j0 = 0; j0 < L; j0 += CB) {
        size_t j1 = j0 + CB < L ? j0 + CB : L;
        tr_gemm_at_serial(j1 - j0, N, L - j0, P + j0 * ldp + j0, ldp, B + j0 * ldb, ldb,
                          C + j0 * ldc, ldc, acc);
    }
}

/* P = causal softmax(scale * Q_h K^T) for one sequence and head into as->p [L][L] (zeros
 * above the diagonal); as->kt must hold K_g^T [D][L]. */
static void attn_probs(const struct tr_run *r, const float *Qh, size_t L, struct attn_scratch *as)
{
    float scale = 1.0f / sqrtf((float)r->D);
    gemm_causal_cols(L, r->D, Qh, r->HD, as->kt, L, as->p, L);
    for (size_t i = 0; i < L; i++) {
        float *p = as->p + i * L;
        float mx = -INFINITY;
        for (size_t j = 0; j <= i; j++) {
            p[j] *= scale;
            mx = p[j] > mx ? p[j] : mx;
        }
        double sum = 0.0;
        for (size_t j = 0; j <= i; j++) {
            p[j] = expf(p[j] - mx);
            sum += p[j];
        }
        float inv = (float)(1.0 / sum);
        for (size_t j = 0; j <= i; j++) {
            p[j] *= inv;
        }
        for (size_t j = i + 1; j < L; j++) {
            p[j] = 0.0f;
        }
    }
}

static void attn_task(struct tr_run *r, const struct layer_act *A, size_t task, bool backward,
                      struct attn_scratch *as)
{
    const struct tr_config *c = &r->m->cfg;
    size_t s = task / c->n_head_kv, g = task % c->n_head_kv;
    size_t L = r->seq_len[s], t0 = r->seq_off[s];
    uint32_t group = c->n_head / c->n_head_kv, D = r->D;
    const float *Kg = A->k + t0 * r->KD + g * D;
    const float *Vg = A->v + t0 * r->KD + g * D;
    tr_transpose(L, D, Kg, r->KD, as->kt, L);
    if (!backward) {
        for (uint32_t h = (uint32_t)g * group; h < (uint32_t)(g + 1) * group; h++) {
            const float *Qh = A->q + t0 * r->HD + (size_t)h * D;
            attn_probs(r, Qh, L, as);
            float *Oh = A->o + t0 * r->HD + (size_t)h * D;
            gemm_lower(L, D, as->p, L, Vg, r->KD, Oh, r->HD, false);
        }
        return;
    }
    float scale = 1.0f / sqrtf((float)D);
    float *dKg = r->dk + t0 * r->KD + g * D, *dVg = r->dv + t0 * r->KD + g * D;
    for (size_t i = 0; i < L; i++) {
        memset(dKg + i * r->KD, 0, D * sizeof(float));
        memset(dVg + i * r->KD, 0, D * sizeof(float));
    }
    for (uint32_t h = (uint32_t)g * group; h < (uint32_t)(g + 1) * group; h++) {
        const float *Qh = A->q + t0 * r->HD + (size_t)h * D;
        const float *dOh = r->dout + t0 * r->HD + (size_t)h * D;
        float *dQh = r->dq + t0 * r->HD + (size_t)h * D;
        attn_probs(r, Qh, L, as);
        /* dP = dO_h V_g^T: V_g^T goes to pt for the product. */
        tr_transpose(L, D, Vg, r->KD, as->pt, L);
        gemm_causal_cols(L, D, dOh, r->HD, as->pt, L, as->dp, L);
        /* dV_g += P^T dO_h */
        gemm_lower_t(L, D, as->p, L, dOh, r->HD, dVg, r->KD, true);
        /* dS = P o (dP - rowsum(dP o P)), times the score scale */
        for (size_t i = 0; i < L; i++) {
            const float *p = as->p + i * L;
            float *dp = as->dp + i * L;
            double dot = 0.0;
            for (size_t j = 0; j <= i; j++) {
                dot += (double)dp[j] * p[j];
            }
            float fd = (float)dot;
            for (size_t j = 0; j <= i; j++) {
                dp[j] = p[j] * (dp[j] - fd) * scale;
            }
            for (size_t j = i + 1; j < L; j++) {
                dp[j] = 0.0f;
            }
        }
        /* dQ_h = dS K_g;  dK_g += dS^T Q_h */
        gemm_lower(L, D, as->dp, L, Kg, r->KD, dQh, r->HD, false);
        gemm_lower_t(L, D, as->dp, L, Qh, r->HD, dKg, r->KD, true);
    }
}

static void attn_worker(void *ctx, size_t i0, size_t i1, int thread)
{
    (void)i0;
    (void)i1;
    struct attn_job *j = ctx;
    for (;;) {
        size_t k = atomic_fetch_add(&j->next, 1);
        if (k >= j->n_tasks) {
            return;
        }
        attn_task(j->r, j->A, j->order[k], j->backward, &j->r->as[thread]);
    }
}

static void attention(struct tr_run *r, const struct layer_act *A, bool backward)
{
    size_t n_kv = r->m->cfg.n_head_kv;
    struct attn_job j = {r, A, r->order, r->n_seq * n_kv, 0, backward};
    /* Each task writes only its own sequence's rows, so any thread may take any task. */
    tr_pool_run(r->pool, (size_t)tr_pool_threads(r->pool), attn_worker, &j);
}

/* ---- feed-forward -------------------------------------------------------------------------- */

struct ffn_job {
    const float *a, *b, *dh;
    float *h, *da, *db;
    uint32_t F;
};

static void swiglu_rows(void *ctx, size_t t0, size_t t1, int thread)
{
    (void)thread;
    const struct ffn_job *j = ctx;
    for (size_t i = t0 * j->F; i < t1 * j->F; i++) {
        /* engine/forward.c: g / (1 + exp(-g)) * u */
        j->h[i] = j->a[i] / (1.0f + expf(-j->a[i])) * j->b[i];
    }
}

static void swiglu_back_rows(void *ctx, size_t t0, size_t t1, int thread)
{
    (void)thread;
    const struct ffn_job *j = ctx;
    for (size_t i = t0 * j->F; i < t1 * j->F; i++) {
        float a = j->a[i], sg = 1.0f / (1.0f + expf(-a));
        j->da[i] = j->dh[i] * j->b[i] * sg * (1.0f + a * (1.0f - sg));
        j->db[i] = j->dh[i] * a * sg;
    }
}

/* ---- loss ------------------------------------------------------------------------------------ */

struct loss_job {
    struct tr_run *r;
    bool grad;          /* write d(mean loss)/d(logits) over the logits */
    double inv_n;
};

static void loss_rows(void *ctx, size_t t0, size_t t1, int thread)
{
    (void)thread;
    const struct loss_job *j = ctx;
    struct tr_run *r = j->r;
    size_t V = r->m->cfg.n_vocab;
    for (size_t t = t0; t < t1; t++) {
        float *lg = r->logits + t * V;
        int32_t y = r->row_tgt[t];
        if (y < 0) {
            r->nll[t] = 0.0;
            r->miss[t] = 0;
            if (j->grad) {
                memset(lg, 0, V * sizeof *lg);
            }
            continue;
        }
        float mx = lg[0];
        for (size_t i = 1; i < V; i++) {
            mx = lg[i] > mx ? lg[i] : mx;
        }
        double sum = 0.0;
        for (size_t i = 0; i < V; i++) {
            sum += exp((double)lg[i] - mx);
        }
        double lse = mx + log(sum);
        r->nll[t] = lse - lg[y];
        r->miss[t] = mx > lg[y];
        if (j->grad) {
            for (size_t i = 0; i < V; i++) {
                double p = exp((double)lg[i] - lse);
                lg[i] = (float)((p - (i == (size_t)y ? 1.0 : 0.0)) * j->inv_n);
            }
        }
    }
}

/* ---- forward ------------------------------------------------------------------------------- */

struct copy_job {
    const float *src;
    float *dst;
    size_t width;
};

static void copy_rows(void *ctx, size_t t0, size_t t1, int thread)
{
    (void)thread;
    const struct copy_job *j = ctx;
    memcpy(j->dst + t0 * j->width, j->src + t0 * j->width, (t1 - t0) * j->width * sizeof(float));
}

struct add_job {
    const float *a, *b;
    float *y;           /* y = a + b */
    size_t width;
};

static void add_rows(void *ctx, size_t t0, size_t t1, int thread)
{
    (void)thread;
    const struct add_job *j = ctx;
    for (size_t i = t0 * j->width; i < t1 * j->width; i++) {
        j->y[i] = j->a[i] + j->b[i];
    }
}

static void add_into(struct tr_run *r, const float *a, const float *b, float *y, size_t width)
{
    struct add_job j = {a, b, y, width};
    tr_pool_run(r->pool, r->n_tok, add_rows, &j);
}

static void copy_into(struct tr_run *r, const float *src, float *dst, size_t width)
{
    struct copy_job j = {src, dst, width};
    tr_pool_run(r->pool, r->n_tok, copy_rows, &j);
}

/* Validates the batch and records it in the run (positions, targets, attention order). */
static enum pd_status set_batch(struct tr_run *r, const struct tr_batch *b, struct pd_err *err)
{
    const struct tr_config *c = &r->m->cfg;
    if (b->n_tok == 0 || b->n_tok > r->n_max) {
        return pd_err_set(err, PD_EINVAL, "batch of %zu tokens (this run holds 1 to %zu)",
                          b->n_tok, r->n_max);
    }
    size_t off = 0;
    for (size_t s = 0; s < b->n_seq; s++) {
        size_t L = b->seq_len[s];
        if (L == 0 || L > c->n_ctx || off + L > b->n_tok) {
            return pd_err_set(err, PD_EINVAL, "sequence %zu: length %zu (1 to %u, within the "
                              "batch)", s, L, c->n_ctx);
        }
        for (size_t i = 0; i < L; i++) {
            int32_t id = b->ids[off + i];
            if (id < 0 || (uint32_t)id >= c->n_vocab) {
                return pd_err_set(err, PD_EINVAL, "token %zu: id %d out of range [0, %u)",
                                  off + i, id, c->n_vocab);
            }
            r->ids[off + i] = id;
            r->pos[off + i] = (int32_t)i;
            bool target = i + 1 < L && (!b->mask || b->mask[off + i + 1]);
            r->row_tgt[off + i] = target ? b->ids[off + i + 1] : -1;
        }
        r->seq_off[s] = off;
        r->seq_len[s] = L;
        off += L;
    }
    if (off != b->n_tok) {
        return pd_err_set(err, PD_EINVAL, "sequence lengths add up to %zu, not %zu tokens", off,
                          b->n_tok);
    }
    r->n_tok = b->n_tok;
    r->n_seq = b->n_seq;
    r->n_targets = 0;
    for (size_t t = 0; t < r->n_tok; t++) {
        r->n_targets += r->row_tgt[t] >= 0;
    }
    /* Attention tasks, longest sequence first (only load balance; results do not depend
     * on the order). Insertion sort on the sequence length, stable. */
    size_t n_kv = c->n_head_kv, k = 0;
    for (size_t s = 0; s < r->n_seq; s++) {
        for (size_t g = 0; g < n_kv; g++) {
            size_t task = s * n_kv + g, at = k++;
            while (at > 0 && r->seq_len[r->order[at - 1] / n_kv] < r->seq_len[s]) {
                r->order[at] = r->order[at - 1];
                at--;
            }
            r->order[at] = task;
        }
    }
    return PD_OK;
}

enum pd_status tr_forward(struct tr_run *r, const struct tr_batch *b, struct tr_loss *loss,
                          double *lp, struct pd_err *err)
{
    enum pd_status st = set_batch(r, b, err);
    if (st) {
        return st;
    }
    const struct tr_model *m = r->m;
    const struct tr_config *c = &m->cfg;
    size_t N = r->n_tok, E = c->n_embd, F = c->n_ff, V = c->n_vocab;
    for (size_t k = 0; k < m->n_tensors; k++) {
        const struct tr_tensor *t = &m->tensors[k];
        if (!t->is_norm) {
            tr_transpose(t->rows, t->cols, m->w + t->off, t->cols, r->wt + t->off, t->rows);
        }
    }
    for (size_t t = 0; t < N; t++) {
        memcpy(r->L[0].x + t * E, m->W.tok_embd + (size_t)r->ids[t] * E, E * sizeof(float));
    }
    for (uint32_t l = 0; l < c->n_layer; l++) {
        struct layer_act *A = &r->L[l];
        const struct tr_layer_ptr *W = &m->W.layer[l];
        rmsnorm_fwd(r, A->x, W->attn_norm, A->xn1, A->rs1);
        linear_fwd(r, W->wq, r->HD, E, A->xn1, A->q);
        linear_fwd(r, W->wk, r->KD, E, A->xn1, A->k);
        linear_fwd(r, W->wv, r->KD, E, A->xn1, A->v);
        rope(r, A->q, c->n_head, false);
        rope(r, A->k, c->n_head_kv, false);
        attention(r, A, false);
        linear_fwd(r, W->wo, E, r->HD, A->o, r->dx); /* dx: scratch for the product */
        add_into(r, A->x, r->dx, A->xmid, E);
        rmsnorm_fwd(r, A->xmid, W->ffn_norm, A->xn2, A->rs2);
        linear_fwd(r, W->w_gate, F, E, A->xn2, A->a);
        linear_fwd(r, W->w_up, F, E, A->xn2, A->b);
        struct ffn_job fj = {A->a, A->b, NULL, A->h, NULL, NULL, (uint32_t)F};
        tr_pool_run(r->pool, N, swiglu_rows, &fj);
        linear_fwd(r, W->w_down, E, F, A->h, r->dx);
        add_into(r, A->xmid, r->dx, l + 1 < c->n_layer ? r->L[l + 1].x : r->xf, E);
    }
    rmsnorm_fwd(r, r->xf, m->W.output_norm, r->xnf, r->rsf);
    linear_fwd(r, m->W.tok_embd, V, E, r->xnf, r->logits);
    if (lp) {
        for (size_t s = 0; s < r->n_seq; s++) {
            size_t o = r->seq_off[s];
            lp[o] = NAN;
            for (size_t i = 1; i < r->seq_len[s]; i++) {
                const float *lg = r->logits + (o + i - 1) * V;
                float mx = lg[0];
                for (size_t k = 1; k < V; k++) {
                    mx = lg[k] > mx ? lg[k] : mx;
                }
                double sum = 0.0;
                for (size_t k = 0; k < V; k++) {
                    sum += exp((double)lg[k] - mx);
                }
                lp[o + i] = (double)lg[r->ids[o + i]] - (mx + log(sum));
            }
        }
    }
    struct loss_job lj = {r, false, 0.0};
    tr_pool_run(r->pool, N, loss_rows, &lj);
    if (loss) {
        loss->sum = 0.0;
        for (size_t t = 0; t < N; t++) {
            loss->sum += r->nll[t];
        }
        loss->n = r->n_targets;
        loss->n_miss = 0;
        loss->n_seq_exact = 0;
        for (size_t s = 0; s < r->n_seq; s++) {
            size_t m = 0;
            for (size_t i = 0; i < r->seq_len[s]; i++) {
                m += r->miss[r->seq_off[s] + i];
            }
            loss->n_miss += m;
            loss->n_seq_exact += m == 0;
        }
    }
    return PD_OK;
}

/* ---- backward ------------------------------------------------------------------------------ */

void tr_backward(struct tr_run *r)
{
    struct tr_model *m = r->m;
    const struct tr_config *c = &m->cfg;
    size_t N = r->n_tok, E = c->n_embd, F = c->n_ff, V = c->n_vocab;
    struct loss_job lj = {r, true, r->n_targets ? 1.0 / (double)r->n_targets : 0.0};
    tr_pool_run(r->pool, N, loss_rows, &lj);
    /* logits = xnf E^T with the tied embedding E */
    linear_bwd_w(r, m->G.tok_embd, V, E, r->logits, r->xnf);
    linear_bwd_x(r, m->W.tok_embd, V, E, r->logits, r->dxn, false);
    memset(r->dx, 0, N * E * sizeof(float));
    rmsnorm_bwd(r, r->xf, m->W.output_norm, r->rsf, r->dxn, r->dx, m->G.output_norm);
    for (uint32_t l = c->n_layer; l-- > 0;) {
        struct layer_act *A = &r->L[l];
        const struct tr_layer_ptr *W = &m->W.layer[l];
        struct tr_layer_ptr *G = &m->G.layer[l];
        /* x_out = xmid + h Wd^T */
        linear_bwd_x(r, W->w_down, E, F, r->dx, r->dh, false);
        linear_bwd_w(r, G->w_down, E, F, r->dx, A->h);
        struct ffn_job fj = {A->a, A->b, r->dh, NULL, r->da, r->db, (uint32_t)F};
        tr_pool_run(r->pool, N, swiglu_back_rows, &fj);
        linear_bwd_w(r, G->w_gate, F, E, r->da, A->xn2);
        linear_bwd_w(r, G->w_up, F, E, r->db, A->xn2);
        linear_bwd_x(r, W->w_gate, F, E, r->da, r->dxn, false);
        linear_bwd_x(r, W->w_up, F, E, r->db, r->dxn, true);
        copy_into(r, r->dx, r->dxmid, E);
        rmsnorm_bwd(r, A->xmid, W->ffn_norm, A->rs2, r->dxn, r->dxmid, G->ffn_norm);
        /* xmid = x + o Wo^T */
        linear_bwd_x(r, W->wo, E, r->HD, r->dxmid, r->dout, false);
        linear_bwd_w(r, G->wo, E, r->HD, r->dxmid, A->o);
        attention(r, A, true);
        rope(r, r->dq, c->n_head, true);
        rope(r, r->dk, c->n_head_kv, true);
        linear_bwd_w(r, G->wq, r->HD, E, r->dq, A->xn1);
        linear_bwd_w(r, G->wk, r->KD, E, r->dk, A->xn1);
        linear_bwd_w(r, G->wv, r->KD, E, r->dv, A->xn1);
        linear_bwd_x(r, W->wq, r->HD, E, r->dq, r->dxn, false);
        linear_bwd_x(r, W->wk, r->KD, E, r->dk, r->dxn, true);
        linear_bwd_x(r, W->wv, r->KD, E, r->dv, r->dxn, true);
        copy_into(r, r->dxmid, r->dx, E);
        rmsnorm_bwd(r, A->x, W->attn_norm, A->rs1, r->dxn, r->dx, G->attn_norm);
    }
    /* the embedding rows of the input tokens, in token order */
    for (size_t t = 0; t < N; t++) {
        float *g = m->G.tok_embd + (size_t)r->ids[t] * E;
        const float *d = r->dx + t * E;
        for (size_t i = 0; i < E; i++) {
            g[i] += d[i];
        }
    }
}

/* ---- optimizer ------------------------------------------------------------------------------ */

#define RED_CHUNK 4096

struct sq_job {
    const float *g;
    size_t n;
    double *out;
};

static void sq_chunks(void *ctx, size_t c0, size_t c1, int thread)
{
    (void)thread;
    const struct sq_job *j = ctx;
    for (size_t c = c0; c < c1; c++) {
        size_t i1 = (c + 1) * RED_CHUNK < j->n ? (c + 1) * RED_CHUNK : j->n;
        double s = 0.0;
        for (size_t i = c * RED_CHUNK; i < i1; i++) {
            s += (double)j->g[i] * j->g[i];
        }
        j->out[c] = s;
    }
}

struct adam_job {
    struct tr_model *m;
    const struct tr_adamw *o;
    float gscale;
    float bc1, bc2;       /* 1 - beta^t */
};

static void adam_tensors(void *ctx, size_t k0, size_t k1, int thread)
{
    (void)thread;
    const struct adam_job *j = ctx;
    struct tr_model *m = j->m;
    const struct tr_adamw *o = j->o;
    for (size_t k = k0; k < k1; k++) {
        const struct tr_tensor *t = &m->tensors[k];
        float decay = t->decay ? 1.0f - o->lr * o->weight_decay : 1.0f;
        size_t n = (size_t)t->rows * t->cols;
        for (size_t i = t->off; i < t->off + n; i++) {
            float g = m->g[i] * j->gscale;
            m->m[i] = o->beta1 * m->m[i] + (1.0f - o->beta1) * g;
            m->v[i] = o->beta2 * m->v[i] + (1.0f - o->beta2) * g * g;
            float mh = m->m[i] / j->bc1, vh = m->v[i] / j->bc2;
            m->w[i] = m->w[i] * decay - o->lr * mh / (sqrtf(vh) + o->eps);
        }
    }
}

double tr_adamw_step(struct tr_run *r, const struct tr_adamw *o)
{
    struct tr_model *m = r->m;
    size_t n_chunks = (m->n_params + RED_CHUNK - 1) / RED_CHUNK;
    struct sq_job sj = {m->g, m->n_params, r->red};
    tr_pool_run(r->pool, n_chunks, sq_chunks, &sj);
    double sq = 0.0;
    for (size_t c = 0; c < n_chunks; c++) {
        sq += r->red[c];
    }
    double norm = sqrt(sq);
    m->step++;
    struct adam_job aj = {m, o, 1.0f, 0, 0};
    if (o->clip > 0 && norm > o->clip) {
        aj.gscale = (float)(o->clip / norm);
    }
    aj.bc1 = (float)(1.0 - pow(o->beta1, (double)m->step));
    aj.bc2 = (float)(1.0 - pow(o->beta2, (double)m->step));
    tr_pool_run(r->pool, m->n_tensors, adam_tensors, &aj);
    return norm;
}

float tr_lr_at(uint64_t t, uint64_t n, uint64_t warmup, float lr_max, float lr_min)
{
    if (t < warmup) {
        return lr_max * (float)(t + 1) / (float)warmup;
    }
    if (n <= warmup || t >= n) {
        return lr_min;
    }
    double progress = (double)(t - warmup) / (double)(n - warmup);
    return (float)(lr_min + 0.5 * (lr_max - lr_min) * (1.0 + cos(3.141592653589793 * progress)));
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

#define CKPT_MAGIC "PDRZCKPT"
#define CKPT_VERSION 1u

struct ckpt_header {
    char magic[8];
    uint32_t version;
    uint32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    float norm_eps, rope_base;
    uint64_t step;
    uint64_t n_params;
};

enum pd_status tr_checkpoint_save(const struct tr_model *m, const char *path,
                                  struct pd_err *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        return pd_err_set(err, PD_EIO, "%s: cannot create", tmp);
    }
    struct ckpt_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CKPT_MAGIC, 8);
    h.version = CKPT_VERSION;
    h.n_vocab = m->cfg.n_vocab;
    h.n_embd = m->cfg.n_embd;
    h.n_layer = m->cfg.n_layer;
    h.n_head = m->cfg.n_head;
    h.n_head_kv = m->cfg.n_head_kv;
    h.n_ff = m->cfg.n_ff;
    h.n_ctx = m->cfg.n_ctx;
    h.norm_eps = m->cfg.norm_eps;
    h.rope_base = m->cfg.rope_base;
    h.step = m->step;
    h.n_params = m->n_params;
    bool ok = fwrite(&h, sizeof h, 1, f) == 1 &&
              fwrite(m->w, sizeof(float), m->n_params, f) == m->n_params &&
              fwrite(m->m, sizeof(float), m->n_params, f) == m->n_params &&
              fwrite(m->v, sizeof(float), m->n_params, f) == m->n_params;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return pd_err_set(err, PD_EIO, "%s: write failed", path);
    }
    return PD_OK;
}

enum pd_status tr_checkpoint_load(const char *path, struct tr_model **out, struct pd_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        return pd_err_set(err, PD_EIO, "%s: cannot open", path);
    }
    struct ckpt_header h;
    enum pd_status st = PD_OK;
    if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, CKPT_MAGIC, 8) != 0) {
        st = pd_err_set(err, PD_EFORMAT, "%s: not a trainer checkpoint (magic)", path);
    } else if (h.version != CKPT_VERSION) {
        st = pd_err_set(err, PD_EFORMAT, "%s: version %u (expected %u)", path, h.version,
                        CKPT_VERSION);
    }
    struct tr_config c = {h.n_vocab, h.n_embd, h.n_layer, h.n_head, h.n_head_kv, h.n_ff,
                          h.n_ctx, h.norm_eps, h.rope_base};
    if (!st && (st = model_alloc(&c, out, err))) {
        pd_err_prefix(err, "%s", path);
    }
    if (!st && (*out)->n_params != h.n_params) {
        st = pd_err_set(err, PD_EFORMAT, "%s: n_params %llu, the shape gives %zu", path,
                        (unsigned long long)h.n_params, (*out)->n_params);
    }
    if (!st) {
        struct tr_model *m = *out;
        size_t n = m->n_params;
        int extra = 0;
        if (fread(m->w, sizeof(float), n, f) != n || fread(m->m, sizeof(float), n, f) != n ||
            fread(m->v, sizeof(float), n, f) != n) {
            st = pd_err_set(err, PD_EFORMAT, "%s: truncated (expected %zu floats x 3)", path, n);
        } else if ((extra = fgetc(f)) != EOF) {
            st = pd_err_set(err, PD_EFORMAT, "%s: trailing bytes after the moments", path);
        }
        m->step = h.step;
    }
    fclose(f);
    if (st) {
        tr_model_free(out);
    }
    return st;
}

/* ---- GGUF ---------------------------------------------------------------------------------- */

enum pd_status tr_model_write_tensors(const struct tr_model *m, enum tr_wtype wtype,
                                      struct pd_gguf_writer *w, struct pd_err *err)
{
    const struct tr_config *c = &m->cfg;
    enum pd_status st;
#define KU32(key, val)                                                      \
    if ((st = pd_gguf_writer_add_u32(w, "llama." key, (val), err))) {       \
        return st;                                                          \
    }
#define KF32(key, val)                                                      \
    if ((st = pd_gguf_writer_add_f32(w, "llama." key, (val), err))) {       \
        return st;                                                          \
    }
    KU32("context_length", c->n_ctx);
    KU32("embedding_length", c->n_embd);
    KU32("block_count", c->n_layer);
    KU32("feed_forward_length", c->n_ff);
    KU32("attention.head_count", c->n_head);
    KU32("attention.head_count_kv", c->n_head_kv);
    KU32("rope.dimension_count", c->n_embd / c->n_head);
    KU32("vocab_size", c->n_vocab);
    KF32("attention.layer_norm_rms_epsilon", c->norm_eps);
    KF32("rope.freq_base", c->rope_base);
#undef KU32
#undef KF32
    /* general.file_type: 0 all F32, 7 mostly Q8_0 (llama.cpp's llama_ftype). */
    if ((st = pd_gguf_writer_add_u32(w, "general.file_type", wtype == TR_WTYPE_Q8_0 ? 7 : 0,
                                     err))) {
        return st;
    }
    for (size_t k = 0; k < m->n_tensors; k++) {
        const struct tr_tensor *t = &m->tensors[k];
        uint64_t ne[2] = {t->cols, t->rows};
        bool q8 = wtype == TR_WTYPE_Q8_0 && !t->is_norm && t->cols % 32 == 0;
        st = pd_gguf_writer_add_tensor_f32(w, t->name, t->is_norm ? 1 : 2, ne,
                                           q8 ? PD_DTYPE_Q8_0 : PD_DTYPE_F32, m->w + t->off, err);
        if (st) {
            return st;
        }
    }
    return PD_OK;
}

static enum pd_status gguf_u32(const struct pd_gguf *g, const char *key, uint32_t *out,
                               struct pd_err *err)
{
    enum pd_status st = pd_gguf_get_u32(g, key, out, err);
    return st == PD_EINVAL ? pd_err_set(err, PD_EFORMAT, "%s: missing", key) : st;
}

enum pd_status tr_model_load_gguf(const char *path, struct tr_model **out, struct pd_err *err)
{
    *out = NULL;
    struct pd_gguf *g = NULL;
    enum pd_status st = pd_gguf_open(path, &g, err);
    if (st) {
        return st;
    }
    struct tr_config c = {0};
    struct pd_gguf_str arch;
    if ((st = pd_gguf_get_str(g, "general.architecture", &arch, err)) ||
        !pd_gguf_str_eq(arch, "llama")) {
        st = st ? st : pd_err_set(err, PD_EUNSUPPORTED, "general.architecture: not llama");
        goto done;
    }
    const struct pd_gguf_tensor *te = pd_gguf_find_tensor(g, "token_embd.weight");
    if (!te || te->n_dims != 2) {
        st = pd_err_set(err, PD_EFORMAT, "tensor 'token_embd.weight': missing or not 2-D");
        goto done;
    }
    c.n_vocab = (uint32_t)te->ne[1];
    c.n_head_kv = 0;
    c.norm_eps = 1e-5f;
    c.rope_base = 10000.0f;
    if ((st = gguf_u32(g, "llama.embedding_length", &c.n_embd, err)) ||
        (st = gguf_u32(g, "llama.block_count", &c.n_layer, err)) ||
        (st = gguf_u32(g, "llama.feed_forward_length", &c.n_ff, err)) ||
        (st = gguf_u32(g, "llama.attention.head_count", &c.n_head, err)) ||
        (st = gguf_u32(g, "llama.context_length", &c.n_ctx, err))) {
        goto done;
    }
    c.n_head_kv = c.n_head;
    /* optional keys: absent (PD_EINVAL) keeps the default */
    st = pd_gguf_get_u32(g, "llama.attention.head_count_kv", &c.n_head_kv, err);
    if (st == PD_OK || st == PD_EINVAL) {
        st = pd_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &c.norm_eps, err);
    }
    if (st == PD_OK || st == PD_EINVAL) {
        st = pd_gguf_get_f32(g, "llama.rope.freq_base", &c.rope_base, err);
    }
    if (st != PD_OK && st != PD_EINVAL) {
        goto done;
    }
    if (pd_gguf_find_tensor(g, "output.weight")) {
        st = pd_err_set(err, PD_EUNSUPPORTED, "tensor 'output.weight': only a tied output "
                        "(no output.weight) is supported by the trainer");
        goto done;
    }
    if ((st = model_alloc(&c, out, err))) {
        goto done;
    }
    for (size_t k = 0; k < (*out)->n_tensors; k++) {
        const struct tr_tensor *t = &(*out)->tensors[k];
        const struct pd_gguf_tensor *gt = pd_gguf_find_tensor(g, t->name);
        if (!gt || gt->type != PD_DTYPE_F32 || gt->ne[0] != t->cols ||
            gt->ne[1] * gt->ne[2] * gt->ne[3] != t->rows) {
            st = pd_err_set(err, PD_EFORMAT, "tensor '%s': missing, not f32, or not [%u x %u]",
                            t->name, t->cols, t->rows);
            goto done;
        }
        memcpy((*out)->w + t->off, gt->data, (size_t)t->rows * t->cols * sizeof(float));
    }
    st = PD_OK;
done:
    if (st) {
        pd_err_prefix(err, "%s", path);
        tr_model_free(out);
    }
    pd_gguf_close(&g);
    return st;
}
