/* backend_cuda.c - the device engine (docs/gpu.md): the whole forward pass of a pd_ctx on a
 * CUDA device (or on the CPU emulator, running the same kernel sources), with the KV cache,
 * probes, attention capture and the KV policies' rows produced on the device. The only
 * engine file that calls kernels/ (through the provider table of pd_cuda.h).
 *
 * DESIGN
 * Weights.  Every tensor is uploaded once, in its GGUF layout, through two pinned 64 MiB
 *   staging buffers (one fills while the other transfers); nothing is dequantised.
 * Decode.  A token is one fixed sequence of kernels: parameters H2D (token, position,
 *   per-layer append slot and slot count, pending evictions), invalidate evicted slots,
 *   embed, per layer [rmsnorm, quantise to the dot format, Q/K/V products (+bias), q/k
 *   norm + RoPE + f16 KV store, split-KV attention + combine, quantise, output product
 *   adding into the residual, rmsnorm, quantise, gate/up with SwiGLU, quantise, down
 *   adding into the residual], output norm, logits, probe, optional capture, D2H of the
 *   probe record and capture outputs. Every per-token value is read by the kernels from
 *   the parameter array, so the sequence is captured once as a CUDA graph per (attention
 *   partition bucket, capture outputs) and replayed.
 * Prefill.  Batches of PREFILL_MIN tokens and more (prompts, re-encoding, teacher forcing)
 *   run as chunks of up to PREFILL_CHUNK tokens, but for their last token, which takes the
 *   decode sequence (full rows, the probe, the logits): f32 weights by SGEMM, f16/bf16 by
 *   GemmEx on the CPU's rounded activations, quantised weights by the decode matvec over
 *   8 token columns on the CPU's q8 activations, rope/attention/capture with a query
 *   dimension. A batch is therefore bit-identical to the same tokens one at a time.
 *   Summary capture and a head-mean policy's rows come from the chunks; per-head policy
 *   rows, other hooks and hidden slots send those tokens through the decode sequence.
 *   PONDER_CUDA_PREFILL=fast dequantises quantised weights to f16 for GemmEx (faster,
 *   not bit-identical); =0 turns chunks off.
 * KV cache.  Per layer [cap][n_kv_head * head_dim] f16 rows, post-RoPE, with a position
 *   per physical slot (-1: evicted). New tokens append at the layer's allocation index, so
 *   physical order stays position order. The context's struct pd_kvcache is a positions-
 *   only mirror in view order; phys[il][v] maps view slot v to its physical slot. The
 *   mirror's listener hears evictions (recorded as per-layer slot lists applied by the
 *   next token's first kernel), truncation (the allocation index moves back to the first
 *   removed slot) and clears. A layer is compacted (rows moved down in order, eagerly,
 *   outside the graph) when its allocation index reaches cap, when holes exceed 1/8 of it,
 *   or when more evictions are pending than the parameters carry.
 * Capture.  When the context's hook is capture.c's (pd_capture_hook), the device computes
 *   the summary entries (written into the blobs through the codec, attn_blob.h), step mass
 *   and cumulative attention (held on the device, pulled into
 *   the state when read), the full rows of the selected layers for the call's last token,
 *   and the policy observer's rows for the positions it asked for (head mean or per head),
 *   all from the attention kernel's own weights. Any other hook gets every head's rows, as
 *   on the CPU.
 * Probes.  The probe record (log-sum-exp, entropy, top-20, argmax) comes back with every
 *   token; the logits themselves only when asked (a logits callback, pd_ctx_logits, a
 *   non-greedy sampler, or a context that is not logits_lazy).
 * Thread-safety: one thread (the context's owner). */
#include "config.h"

#include "backend.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_blob.h"
#include "log.h"
#include "mem.h"
#include "capture.h"
#include "dtype.h"
#include "forward.h"
#include "kvcache.h"
#include "pd_cuda.h"

#define EVICT_MAX 32            /* evictions per layer carried by one token's parameters */
#define GRAPH_MAX 48
#define STAGE_BYTES (64u << 20) /* one pinned staging buffer */
#define TOPK_DEV PD_K_TOPK_MAX
#define PREFILL_MIN 16          /* shorter batches run token by token */
#define PREFILL_CHUNK 256       /* tokens per prefill chunk at most */
#define PREFILL_SCRATCH (256u << 20) /* bound on each per-chunk attention scratch */
#define PREFILL_ROWS (64u << 20)     /* bound on a chunk's policy rows (device and pinned) */
#define W_ROWS 4096             /* weight rows dequantised at a time (prefill scratch) */
#define PART PD_K_ATTN_PART

_Static_assert(PD_K_F32 == (int)PD_DTYPE_F32 && PD_K_Q6_K == (int)PD_DTYPE_Q6_K &&
                   PD_K_Q8_K == (int)PD_DTYPE_Q8_K && PD_K_TYPE_COUNT == (int)PD_DTYPE_COUNT,
               "kernel types follow enum pd_dtype");
_Static_assert(TOPK_DEV == PD_TOPK_MAX, "probe top-k size");

/* Capture outputs of one token (graph variants). */
enum {
    F_BLOB = 1, /* summary blob, step mass, cumulative attention */
    F_MEAN = 2, /* policy rows, head mean */
    F_HEAD = 4, /* rows of every head (policy with max aggregation, other hooks) */
    F_FULL = 8, /* full rows of the selected layers */
    F_HIDE = 16 /* shadow divergence: hidden slots (never graphed) */
};

struct dw {
    const void *d;    /* device bytes, GGUF layout */
    size_t row_bytes;
    int type;
    int rows, cols;
};

struct dlayer {
    struct dw wq, wk, wv, wo, gate, up, down;
    float *attn_norm, *ffn_norm, *q_norm, *k_norm, *bq, *bk, *bv; /* f32, NULL when absent */
};

struct graph_ent {
    uint32_t n_part;
    unsigned flags;
    int top_n;
    uint64_t full_mask;
    struct pd_cuda_graph *g;
};

struct cuda_backend {
    struct pd_backend base;
    const struct pd_kernels *K;      /* borrowed: static provider table */
    const struct pd_model *m;        /* borrowed */
    struct pd_kvcache *kv;           /* borrowed: the context's mirror */
    struct pd_cuda_device dev;
    struct pd_gpu_plan plan;
    bool ready;                      /* K->init succeeded */
    uint32_t cap, n_layer, n_head, n_kv, hd, hd_v, dim_k, dim_v, n_embd, n_ff, n_vocab;
    uint32_t q_dim, o_dim, n_part_max;
    float theta_scale, eps;
    /* every device allocation, freed at close */
    void **allocs;
    size_t n_allocs, cap_allocs;
    /* weights */
    struct dlayer *L;                /* owned [n_layer] */
    struct dw tok_embd, output;
    float *output_norm, *rope_freqs;
    /* KV cache */
    uint16_t *k, *v;                 /* [n_layer][cap][dim_k | dim_v] */
    int32_t *pos;                    /* [n_layer][cap] */
    uint16_t *mv_k, *mv_v;           /* compaction scratch [cap][dim] */
    int32_t *mv_pos, *mv_list;       /* [cap], [2][cap] */
    int32_t *h_mv;                   /* pinned [2][cap] */
    /* decode activations and scratch */
    float *x, *xn, *q, *kk, *vv, *att, *g, *u, *h, *logits;
    void *xq;
    float *opart, *mpart, *c;
    double *lpart;
    void *probe_scratch;
    struct pd_k_probe_out *probe_out;
    /* capture (allocated on first use) */
    float *e;                        /* [n_layer][n_head][cap] */
    struct pd_k_top *top;            /* [n_layer][64] summary entries */
    float *cum;                      /* [n_layer][cum_cap] */
    size_t cum_cap;
    int32_t *steps;                  /* [steps_cap] */
    float *smass;                    /* [n_layer][steps_cap] */
    size_t steps_cap;
    int32_t *h_steps;                /* what the device's steps hold */
    uint32_t n_steps_dev;
    float *rows_mean, *rows_head, *full;
    uint8_t *hide, *h_hide;
    /* parameters */
    int32_t *d_par, *h_par;
    size_t n_par;
    int p_token, p_pos, p_target, p_nsteps, p_slot, p_nslots, p_evict;
    /* pinned outputs */
    struct pd_k_probe_out *h_probe;
    struct pd_k_top *h_top;
    float *h_smass;
    float *h_rows;                   /* [h_rows_cap] rows handed to hooks */
    size_t h_rows_cap;
    /* staging */
    void *stage[2];
    /* mirror */
    uint32_t *n_alloc;               /* [n_layer] */
    uint32_t *phys;                  /* [n_layer][cap] */
    uint32_t *n_evict;               /* [n_layer] */
    int32_t *evict;                  /* [n_layer][EVICT_MAX] */
    bool *must_compact;              /* [n_layer] */
    /* host scratch for rows handed to hooks */
    float *hrows;                    /* [n_head][cap] */
    /* graphs */
    struct graph_ent graphs[GRAPH_MAX];
    size_t n_graphs;
    bool use_graphs;
    bool use_prefill;                /* GEMM prefill for batches (PONDER_CUDA_PREFILL=0: off) */
    bool prefill_fast;               /* PONDER_CUDA_PREFILL=fast: quantised weights by f16
                                      * GEMMs (else the multi-column matvec) */
    uint64_t nodes_last, graphs_made, compactions, launches;
    double bandwidth, gemm_flops;
    /* the last evaluated token */
    struct pd_k_probe_out last;
    bool last_valid, logits_valid;
    bool cum_dirty;
    bool cum_off;                    /* this eval's capture keeps no cum (keep_received) */
    struct pd_capture_state *cum_cs;
    /* prefill (allocated on the first batch of PREFILL_MIN tokens or more) */
    uint32_t pf_cap;                 /* tokens per chunk */
    float *pf_x, *pf_xn, *pf_q, *pf_k, *pf_v, *pf_o, *pf_g, *pf_u, *pf_h;
    uint16_t *pf_a16;                /* [pf_cap][wide] activation operand */
    uint16_t *pf_w16;                /* fast mode: dequantised weights [W_ROWS][max cols] */
    uint8_t *pf_xq;                  /* [PD_K_MV_COLS][dot row] activations, CPU's format */
    float *pf_opart, *pf_mpart, *pf_c, *pf_e;
    double *pf_lpart;
    struct pd_k_top *pf_top, *h_pf_top; /* [pf_cap][n_layer][64] */
    float *pf_smass, *h_pf_smass;    /* [pf_cap][n_layer][steps_cap] */
    size_t pf_smass_cap;             /* steps_cap they were sized for */
    int32_t *pf_tok, *h_pf_tok;      /* [pf_cap] token ids */
    float *pf_logits;                /* [pf_cap][n_vocab] */
    float *pf_rows, *h_pf_rows;      /* [pf_obs][n_layer][cap] head-mean policy rows */
    uint32_t pf_obs;                 /* tokens per chunk when policy rows are wanted (0:
                                      * none fit PREFILL_ROWS; those batches go token by
                                      * token) */
    uint64_t prefill_tokens;
    /* the activation currently quantised in xq */
    const float *xq_src;
    int xq_fmt;
};

static enum pd_status dev_fail(struct cuda_backend *b, struct pd_err *err, const char *what)
{
    return pd_err_set(err, PD_ECUDA, "cuda backend (%s): %s: %s", b->K->build, what,
                      b->K->last_error());
}

/* ---- allocation ---------------------------------------------------------------------------- */

static enum pd_status dalloc(struct cuda_backend *b, void **d, size_t bytes, struct pd_err *err)
{
    if (b->n_allocs == b->cap_allocs) {
        size_t nc = b->cap_allocs ? b->cap_allocs * 2 : 256;
        void **na = pd_realloc_array(b->allocs, nc, sizeof *na);
        if (!na) {
            return pd_err_set(err, PD_ENOMEM, "out of memory (cuda backend)");
        }
        b->allocs = na;
        b->cap_allocs = nc;
    }
    if (b->K->dev_alloc(d, bytes)) {
        return pd_err_set(err, PD_ENOMEM, "cuda backend: device memory: %s (%zu bytes)",
                          b->K->last_error(), bytes);
    }
    b->allocs[b->n_allocs++] = *d;
    return PD_OK;
}

/* Frees one allocation made by dalloc. */
static void dfree(struct cuda_backend *b, void *d)
{
    for (size_t i = 0; d && i < b->n_allocs; i++) {
        if (b->allocs[i] == d) {
            b->K->dev_free(d);
            b->allocs[i] = b->allocs[--b->n_allocs];
            return;
        }
    }
}

static void graphs_clear(struct cuda_backend *b)
{
    for (size_t i = 0; i < b->n_graphs; i++) {
        b->K->graph_free(&b->graphs[i].g);
    }
    b->n_graphs = 0;
}

/* ---- weight upload -------------------------------------------------------------------------- */

struct upload_state {
    const struct pd_ctx_params *p;
    uint64_t done, total;
    int cur; /* staging buffer to fill next */
};

static enum pd_status upload_bytes(struct cuda_backend *b, struct upload_state *us, void *d,
                                   const void *src, size_t bytes, struct pd_err *err)
{
    const uint8_t *s = src;
    for (size_t off = 0; off < bytes; off += STAGE_BYTES) {
        size_t n = bytes - off < STAGE_BYTES ? bytes - off : STAGE_BYTES;
        /* Fill one buffer while the other one's copy runs, then wait for that copy (which
         * also frees the buffer filled next) before queueing this one. */
        memcpy(b->stage[us->cur], s + off, n);
        if (b->K->sync() || b->K->upload((uint8_t *)d + off, b->stage[us->cur], n)) {
            return dev_fail(b, err, "weight upload");
        }
        us->cur ^= 1;
        us->done += n;
        if (us->p && us->p->progress) {
            us->p->progress(us->p->progress_ud, us->done, us->total);
        }
    }
    return PD_OK;
}

static enum pd_status upload_matrix(struct cuda_backend *b, struct upload_state *us,
                                    const struct pd_weight *w, struct dw *out,
                                    struct pd_err *err)
{
    memset(out, 0, sizeof *out);
    if (!w->data) {
        return PD_OK;
    }
    out->row_bytes = w->row_bytes;
    out->type = (int)w->type;
    out->rows = (int)w->rows;
    out->cols = (int)w->cols;
    size_t bytes = (size_t)(w->rows * w->row_bytes);
    void *d;
    enum pd_status st = dalloc(b, &d, bytes, err);
    if (!st) {
        st = upload_bytes(b, us, d, w->data, bytes, err);
    }
    out->d = d;
    return st;
}

static enum pd_status upload_vector(struct cuda_backend *b, struct upload_state *us,
                                    const struct pd_weight *w, float **out, struct pd_err *err)
{
    *out = NULL;
    if (!w->data) {
        return PD_OK;
    }
    if (w->type != PD_DTYPE_F32) {
        return pd_err_set(err, PD_EUNSUPPORTED, "cuda backend: a norm or bias tensor is %s, "
                          "not f32", pd_dtype_traits(w->type)->name);
    }
    size_t bytes = (size_t)(w->rows * w->row_bytes);
    enum pd_status st = dalloc(b, (void **)out, bytes, err);
    return st ? st : upload_bytes(b, us, *out, w->data, bytes, err);
}

static enum pd_status upload_weights(struct cuda_backend *b, const struct pd_ctx_params *p,
                                     struct pd_err *err)
{
    const struct pd_model *m = b->m;
    struct upload_state us = {p, 0, b->plan.weights, 0};
    enum pd_status st = upload_matrix(b, &us, &m->tok_embd, &b->tok_embd, err);
    if (!st && m->output.data == m->tok_embd.data) {
        b->output = b->tok_embd;
    } else if (!st) {
        st = upload_matrix(b, &us, &m->output, &b->output, err);
    }
    if (!st) {
        st = upload_vector(b, &us, &m->output_norm, &b->output_norm, err);
    }
    if (!st) {
        st = upload_vector(b, &us, &m->rope_freqs, &b->rope_freqs, err);
    }
    for (uint32_t il = 0; il < b->n_layer && !st; il++) {
        const struct pd_layer *L = &m->layers[il];
        struct dlayer *D = &b->L[il];
        if ((st = upload_vector(b, &us, &L->attn_norm, &D->attn_norm, err)) ||
            (st = upload_matrix(b, &us, &L->wq, &D->wq, err)) ||
            (st = upload_matrix(b, &us, &L->wk, &D->wk, err)) ||
            (st = upload_matrix(b, &us, &L->wv, &D->wv, err)) ||
            (st = upload_matrix(b, &us, &L->wo, &D->wo, err)) ||
            (st = upload_vector(b, &us, &L->bq, &D->bq, err)) ||
            (st = upload_vector(b, &us, &L->bk, &D->bk, err)) ||
            (st = upload_vector(b, &us, &L->bv, &D->bv, err)) ||
            (st = upload_vector(b, &us, &L->q_norm, &D->q_norm, err)) ||
            (st = upload_vector(b, &us, &L->k_norm, &D->k_norm, err)) ||
            (st = upload_vector(b, &us, &L->ffn_norm, &D->ffn_norm, err)) ||
            (st = upload_matrix(b, &us, &L->w_gate, &D->gate, err)) ||
            (st = upload_matrix(b, &us, &L->w_up, &D->up, err)) ||
            (st = upload_matrix(b, &us, &L->w_down, &D->down, err))) {
            break;
        }
    }
    if (!st && b->K->sync()) {
        st = dev_fail(b, err, "weight upload");
    }
    return st;
}

/* ---- KV mirror (listener) ----------------------------------------------------------------- */

static uint32_t *phys_of(struct cuda_backend *b, uint32_t il)
{
    return b->phys + (size_t)il * b->cap;
}

static void kv_on_evict(void *ud, uint32_t il, const uint8_t *mask, uint32_t n)
{
    struct cuda_backend *b = ud;
    uint32_t *ph = phys_of(b, il);
    uint32_t w = 0;
    for (uint32_t s = 0; s < n; s++) {
        if (!mask[s]) {
            ph[w++] = ph[s];
            continue;
        }
        if (b->n_evict[il] < EVICT_MAX) {
            b->evict[(size_t)il * EVICT_MAX + b->n_evict[il]++] = (int32_t)ph[s];
        } else {
            b->must_compact[il] = true; /* more than one token's parameters carry */
        }
    }
}

static void kv_on_truncate(void *ud, int64_t pos)
{
    struct cuda_backend *b = ud;
    for (uint32_t il = 0; il < b->n_layer; il++) {
        const struct pd_kv_layer *L = &b->kv->layers[il];
        uint32_t v = 0;
        while (v < L->n && L->pos[v] < pos) {
            v++;
        }
        if (v == L->n) {
            continue;
        }
        uint32_t first = phys_of(b, il)[v];
        b->n_alloc[il] = first; /* physical order is position order: the rest follow */
        uint32_t w = 0;
        for (uint32_t i = 0; i < b->n_evict[il]; i++) {
            int32_t s = b->evict[(size_t)il * EVICT_MAX + i];
            if ((uint32_t)s < first) {
                b->evict[(size_t)il * EVICT_MAX + w++] = s;
            }
        }
        b->n_evict[il] = w;
    }
}

static void kv_on_clear(void *ud)
{
    struct cuda_backend *b = ud;
    for (uint32_t il = 0; il < b->n_layer; il++) {
        b->n_alloc[il] = 0;
        b->n_evict[il] = 0;
        b->must_compact[il] = false;
    }
    b->last_valid = false;
    b->logits_valid = false;
}

/* Moves layer il's live rows to the front, in order (eager, outside any graph). */
static enum pd_status compact_layer(struct cuda_backend *b, uint32_t il, struct pd_err *err)
{
    const struct pd_kv_layer *L = &b->kv->layers[il];
    uint32_t *ph = phys_of(b, il);
    int n = 0;
    for (uint32_t v = 0; v < L->n; v++) {
        if (ph[v] != v) {
            b->h_mv[n] = (int32_t)ph[v];
            b->h_mv[b->cap + (uint32_t)n] = (int32_t)v;
            n++;
        }
    }
    if (n > 0) {
        uint16_t *k = b->k + (size_t)il * b->cap * b->dim_k;
        uint16_t *v = b->v + (size_t)il * b->cap * b->dim_v;
        int32_t *pos = b->pos + (size_t)il * b->cap;
        if (b->K->upload(b->mv_list, b->h_mv, (size_t)n * 4) ||
            b->K->upload(b->mv_list + b->cap, b->h_mv + b->cap, (size_t)n * 4) ||
            b->K->kv_move(k, v, pos, (int)b->dim_k, (int)b->dim_v, b->mv_list,
                          b->mv_list + b->cap, n, b->mv_k, b->mv_v, b->mv_pos) ||
            b->K->sync()) {
            return dev_fail(b, err, "kv compaction");
        }
    }
    for (uint32_t v = 0; v < L->n; v++) {
        ph[v] = v;
    }
    b->n_alloc[il] = L->n;
    b->n_evict[il] = 0;
    b->must_compact[il] = false;
    b->compactions++;
    return PD_OK;
}

/* ---- the token's kernels ------------------------------------------------------------------ */

/* The activation format a weight type's dot product takes (dtype.h). */
static int dot_fmt(int wtype)
{
    return (int)pd_dtype_traits((enum pd_dtype)wtype)->vec_dot_type;
}

/* Quantises src[0..n) into xq in fmt unless it is already there. */
static int quant_act(struct cuda_backend *b, const float *src, int n, int fmt)
{
    if (b->xq_src == src && b->xq_fmt == fmt) {
        return 0;
    }
    b->xq_src = src;
    b->xq_fmt = fmt;
    b->launches++;
    size_t rb = (size_t)pd_dtype_row_size((enum pd_dtype)fmt, (uint64_t)n);
    return b->K->quant(fmt, src, (size_t)n, b->xq, rb, n, 1);
}

static int mv_one(struct cuda_backend *b, const struct dw *w, const float *src, float *y,
                  const float *bias, int mode)
{
    if (quant_act(b, src, w->cols, dot_fmt(w->type))) {
        return -1;
    }
    struct pd_k_matvec mv;
    memset(&mv, 0, sizeof mv);
    mv.type = w->type;
    mv.cols = w->cols;
    mv.xq = b->xq;
    mv.n_mat = 1;
    mv.mode = mode;
    mv.m[0] = (struct pd_k_mat){w->d, w->row_bytes, w->rows, y, bias};
    b->launches++;
    return b->K->matvec(&mv);
}

static int run_qkv(struct cuda_backend *b, const struct dlayer *D)
{
    if (D->wq.type == D->wk.type && D->wk.type == D->wv.type) {
        if (quant_act(b, b->xn, D->wq.cols, dot_fmt(D->wq.type))) {
            return -1;
        }
        struct pd_k_matvec mv;
        memset(&mv, 0, sizeof mv);
        mv.type = D->wq.type;
        mv.cols = D->wq.cols;
        mv.xq = b->xq;
        mv.n_mat = 3;
        mv.mode = PD_K_MV_SET;
        mv.m[0] = (struct pd_k_mat){D->wq.d, D->wq.row_bytes, D->wq.rows, b->q, D->bq};
        mv.m[1] = (struct pd_k_mat){D->wk.d, D->wk.row_bytes, D->wk.rows, b->kk, D->bk};
        mv.m[2] = (struct pd_k_mat){D->wv.d, D->wv.row_bytes, D->wv.rows, b->vv, D->bv};
        b->launches++;
        return b->K->matvec(&mv);
    }
    return mv_one(b, &D->wq, b->xn, b->q, D->bq, PD_K_MV_SET) ||
           mv_one(b, &D->wk, b->xn, b->kk, D->bk, PD_K_MV_SET) ||
           mv_one(b, &D->wv, b->xn, b->vv, D->bv, PD_K_MV_SET);
}

static int run_ffn(struct cuda_backend *b, const struct dlayer *D)
{
    if (D->gate.type == D->up.type) {
        if (quant_act(b, b->xn, D->gate.cols, dot_fmt(D->gate.type))) {
            return -1;
        }
        struct pd_k_matvec mv;
        memset(&mv, 0, sizeof mv);
        mv.type = D->gate.type;
        mv.cols = D->gate.cols;
        mv.xq = b->xq;
        mv.n_mat = 2;
        mv.mode = PD_K_MV_SWIGLU;
        mv.m[0] = (struct pd_k_mat){D->gate.d, D->gate.row_bytes, D->gate.rows, b->h, NULL};
        mv.m[1] = (struct pd_k_mat){D->up.d, D->up.row_bytes, D->up.rows, NULL, NULL};
        b->launches++;
        if (b->K->matvec(&mv)) {
            return -1;
        }
    } else {
        b->launches++;
        if (mv_one(b, &D->gate, b->xn, b->g, NULL, PD_K_MV_SET) ||
            mv_one(b, &D->up, b->xn, b->u, NULL, PD_K_MV_SET) ||
            b->K->swiglu(b->g, b->u, b->n_ff, b->h, b->n_ff, (int)b->n_ff, 1)) {
            return -1;
        }
    }
    return mv_one(b, &D->down, b->h, b->x, NULL, PD_K_MV_ADD);
}

/* Queues every kernel of one decode token (captured into a graph or run directly). */
static int run_token(struct cuda_backend *b, uint32_t n_part, unsigned flags, int top_n,
                     uint64_t full_mask)
{
    const struct pd_kernels *K = b->K;
    b->xq_src = NULL;
    b->launches += 3;
    if (K->upload(b->d_par, b->h_par, b->n_par * sizeof(int32_t)) ||
        K->kv_invalidate(b->pos, b->cap, (int)b->n_layer, b->d_par, b->p_evict, 1 + EVICT_MAX) ||
        K->embed(b->tok_embd.type, b->tok_embd.d, b->tok_embd.row_bytes, (int)b->n_embd,
                 b->d_par, b->p_token, 1, b->x, b->n_embd)) {
        return -1;
    }
    bool capture = flags & (F_BLOB | F_MEAN | F_HEAD | F_FULL);
    for (uint32_t il = 0; il < b->n_layer; il++) {
        const struct dlayer *D = &b->L[il];
        b->launches++;
        if (K->rmsnorm(b->x, b->n_embd, D->attn_norm, b->xn, b->n_embd, (int)b->n_embd, 1,
                       b->eps)) {
            return -1;
        }
        b->xq_src = NULL;
        if (run_qkv(b, D)) {
            return -1;
        }
        struct pd_k_rope r = {b->q, b->kk, b->vv, D->q_norm, D->k_norm, b->rope_freqs,
                              b->k + (size_t)il * b->cap * b->dim_k,
                              b->v + (size_t)il * b->cap * b->dim_v,
                              b->pos + (size_t)il * b->cap, b->d_par, b->p_slot + (int)il,
                              b->p_pos, (int)b->n_head, (int)b->n_kv, (int)b->hd, (int)b->hd_v,
                              (int)b->m->hp.n_rot, b->m->hp.rope_type == PD_ROPE_NEOX,
                              b->theta_scale, b->m->hp.rope_freq_scale, b->eps};
        struct pd_k_attn a = {b->q, r.k_cache, r.v_cache, r.pos_cache,
                              (flags & F_HIDE) ? b->hide + (size_t)il * b->cap : NULL, b->d_par,
                              b->p_nslots + (int)il, b->p_pos, b->att,
                              capture ? b->e + (size_t)il * b->n_head * b->cap : NULL, b->cap,
                              b->c + (size_t)il * b->n_head * n_part, b->opart, b->mpart,
                              b->lpart, (int)b->n_head, (int)b->n_kv, (int)b->hd, (int)b->hd_v,
                              (int)n_part, 1.0f / sqrtf((float)b->hd)};
        b->launches += 3;
        if (K->rope_store(&r) || K->attn_decode(&a)) {
            return -1;
        }
        if (mv_one(b, &D->wo, b->att, b->x, NULL, PD_K_MV_ADD)) {
            return -1;
        }
        b->launches++;
        if (K->rmsnorm(b->x, b->n_embd, D->ffn_norm, b->xn, b->n_embd, (int)b->n_embd, 1, b->eps)) {
            return -1;
        }
        b->xq_src = NULL;
        if (run_ffn(b, D)) {
            return -1;
        }
    }
    b->launches++;
    if (K->rmsnorm(b->x, b->n_embd, b->output_norm, b->xn, b->n_embd, (int)b->n_embd, 1, b->eps)) {
        return -1;
    }
    b->xq_src = NULL;
    b->launches += 2;
    if (mv_one(b, &b->output, b->xn, b->logits, NULL, PD_K_MV_SET) ||
        K->probe(b->logits, (int)b->n_vocab, 1, TOPK_DEV, b->d_par, b->p_target,
                 b->probe_scratch, b->probe_out)) {
        return -1;
    }
    if (capture) {
        struct pd_k_capture cp = {b->e, b->c, b->cap, (int)n_part, b->pos, b->cap, b->d_par,
                                  b->p_nslots, b->p_nsteps, (int)b->n_layer, (int)b->n_head,
                                  (flags & F_BLOB) ? b->top : NULL, top_n,
                                  (flags & F_BLOB) && !b->cum_off ? b->cum : NULL,
                                  b->cum_cap, b->steps,
                                  (flags & F_BLOB) ? b->smass : NULL, b->steps_cap,
                                  (flags & F_MEAN) ? b->rows_mean : NULL,
                                  (flags & F_HEAD) ? b->rows_head : NULL,
                                  (flags & F_FULL) ? b->full : NULL, full_mask};
        b->launches++;
        if (K->capture(&cp)) {
            return -1;
        }
    }
    b->launches++;
    if (K->download(b->h_probe, b->probe_out, sizeof *b->h_probe)) {
        return -1;
    }
    if (flags & F_BLOB) {
        b->launches += 2;
        if (K->download(b->h_top, b->top, (size_t)b->n_layer * (size_t)top_n * sizeof *b->top) ||
            K->download(b->h_smass, b->smass, (size_t)b->n_layer * b->steps_cap * 4)) {
            return -1;
        }
    }
    return 0;
}

/* Runs one prepared token: replays (or records) its graph, or issues the kernels. */
static enum pd_status launch_token(struct cuda_backend *b, uint32_t n_part, unsigned flags,
                                   int top_n, uint64_t full_mask, struct pd_err *err)
{
    if (!b->use_graphs || (flags & F_HIDE)) {
        b->launches = 0;
        if (run_token(b, n_part, flags, top_n, full_mask)) {
            return dev_fail(b, err, "decode");
        }
        b->nodes_last = b->launches;
        return PD_OK;
    }
    struct graph_ent *ge = NULL;
    for (size_t i = 0; i < b->n_graphs; i++) {
        struct graph_ent *x = &b->graphs[i];
        if (x->n_part == n_part && x->flags == flags && x->top_n == top_n &&
            x->full_mask == full_mask) {
            ge = x;
            break;
        }
    }
    if (!ge) {
        if (b->n_graphs == GRAPH_MAX) {
            graphs_clear(b);
        }
        ge = &b->graphs[b->n_graphs];
        *ge = (struct graph_ent){n_part, flags, top_n, full_mask, NULL};
        if (b->K->graph_begin()) {
            return dev_fail(b, err, "graph capture");
        }
        int rc = run_token(b, n_part, flags, top_n, full_mask);
        if (b->K->graph_end(&ge->g) || rc) {
            b->K->graph_free(&ge->g);
            return dev_fail(b, err, "graph capture");
        }
        b->n_graphs++;
        b->graphs_made++;
    }
    b->nodes_last = b->K->graph_nodes(ge->g);
    if (b->K->graph_launch(ge->g)) {
        return dev_fail(b, err, "graph launch");
    }
    return PD_OK;
}

/* ---- capture buffers ------------------------------------------------------------------------- */

static enum pd_status ensure_f32(struct cuda_backend *b, float **p, size_t n, struct pd_err *err)
{
    if (*p) {
        return PD_OK;
    }
    graphs_clear(b); /* graphs hold the old pointers */
    return dalloc(b, (void **)p, n * sizeof(float), err);
}

static enum pd_status ensure_capture(struct cuda_backend *b, unsigned flags, struct pd_err *err)
{
    size_t lc = (size_t)b->n_layer * b->cap, lhc = lc * b->n_head;
    enum pd_status st = PD_OK;
    if (flags & (F_BLOB | F_MEAN | F_HEAD | F_FULL)) {
        st = ensure_f32(b, &b->e, lhc, err);
    }
    if (!st && (flags & F_MEAN)) {
        st = ensure_f32(b, &b->rows_mean, lc, err);
    }
    if (!st && (flags & F_HEAD)) {
        st = ensure_f32(b, &b->rows_head, lhc, err);
    }
    if (!st && (flags & F_FULL)) {
        st = ensure_f32(b, &b->full, lhc, err);
    }
    size_t rows = (flags & (F_HEAD | F_FULL)) ? lhc : (flags & F_MEAN) ? lc : 0;
    if (!st && rows > b->h_rows_cap) {
        b->K->host_free(b->h_rows);
        b->h_rows = NULL;
        b->h_rows_cap = 0;
        if (b->K->host_alloc((void **)&b->h_rows, rows * sizeof(float))) {
            return dev_fail(b, err, "host memory");
        }
        b->h_rows_cap = rows;
    }
    if (!st && (flags & F_HIDE) && !b->hide) {
        st = dalloc(b, (void **)&b->hide, lc, err);
        if (!st && b->K->host_alloc((void **)&b->h_hide, lc)) {
            st = dev_fail(b, err, "host memory");
        }
    }
    if (!st && (flags & F_BLOB) && !b->top) {
        graphs_clear(b);
        size_t bytes = (size_t)b->n_layer * 64 * sizeof *b->top;
        if ((st = dalloc(b, (void **)&b->top, bytes, err))) {
            return st;
        }
        if (b->K->host_alloc((void **)&b->h_top, bytes)) {
            return dev_fail(b, err, "host memory");
        }
    }
    return st;
}

/* Makes the device cum hold positions < need (doubling, rows copied). */
static enum pd_status grow_cum(struct cuda_backend *b, size_t need, struct pd_err *err)
{
    if (need <= b->cum_cap) {
        return PD_OK;
    }
    size_t cap = b->cum_cap ? b->cum_cap : 1024;
    while (cap < need) {
        cap *= 2;
    }
    float *n;
    enum pd_status st = dalloc(b, (void **)&n, (size_t)b->n_layer * cap * 4, err);
    if (st) {
        return st;
    }
    if (b->K->memset(n, 0, (size_t)b->n_layer * cap * 4)) {
        return dev_fail(b, err, "cum");
    }
    for (uint32_t il = 0; il < b->n_layer && b->cum; il++) {
        if (b->K->copy(n + (size_t)il * cap, b->cum + (size_t)il * b->cum_cap, b->cum_cap * 4)) {
            return dev_fail(b, err, "cum");
        }
    }
    if (b->K->sync()) {
        return dev_fail(b, err, "cum");
    }
    dfree(b, b->cum);
    b->cum = n;
    b->cum_cap = cap;
    graphs_clear(b);
    return PD_OK;
}

/* Uploads the steps known when the call began (cs->steps[0..smass_stride)). */
static enum pd_status sync_steps(struct cuda_backend *b, const struct pd_capture_state *cs,
                                 struct pd_err *err)
{
    uint32_t n = cs->smass_stride;
    bool same = n == b->n_steps_dev;
    for (uint32_t k = 0; same && k < n; k++) {
        same = b->h_steps[k] == (int32_t)cs->steps[k];
    }
    if (same && b->steps) {
        return PD_OK;
    }
    if (n > b->steps_cap || !b->steps) {
        size_t cap = b->steps_cap ? b->steps_cap : 64;
        while (cap < n) {
            cap *= 2;
        }
        graphs_clear(b);
        dfree(b, b->steps);
        dfree(b, b->smass);
        b->K->host_free(b->h_smass);
        b->h_smass = NULL;
        int32_t *hs = pd_realloc_array(b->h_steps, cap, sizeof *hs);
        if (!hs) {
            return pd_err_set(err, PD_ENOMEM, "out of memory (steps)");
        }
        b->h_steps = hs;
        enum pd_status st;
        if ((st = dalloc(b, (void **)&b->steps, cap * 4, err)) ||
            (st = dalloc(b, (void **)&b->smass, (size_t)b->n_layer * cap * 4, err))) {
            return st;
        }
        if (b->K->host_alloc((void **)&b->h_smass, (size_t)b->n_layer * cap * 4)) {
            return dev_fail(b, err, "host memory");
        }
        b->steps_cap = cap;
    }
    for (uint32_t k = 0; k < n; k++) {
        b->h_steps[k] = (int32_t)cs->steps[k];
    }
    b->n_steps_dev = n;
    if (n && (b->K->upload(b->steps, b->h_steps, (size_t)n * 4) || b->K->sync())) {
        return dev_fail(b, err, "steps");
    }
    return PD_OK;
}

static void cum_sync(void *ud, struct pd_capture_state *cs)
{
    struct cuda_backend *b = ud;
    if (!b->cum_dirty || b->cum_cs != cs || !b->cum) {
        return;
    }
    if ((size_t)cs->cum_cap < b->cum_cap) {
        float *n = pd_calloc((size_t)cs->n_layer * b->cum_cap, sizeof *n);
        if (!n) {
            return;
        }
        free(cs->cum);
        cs->cum = n;
        cs->cum_cap = (int64_t)b->cum_cap;
    }
    for (uint32_t il = 0; il < cs->n_layer; il++) {
        float *row = cs->cum + (size_t)il * (size_t)cs->cum_cap;
        memset(row, 0, (size_t)cs->cum_cap * sizeof *row);
        if (b->K->download(row, b->cum + (size_t)il * b->cum_cap, b->cum_cap * 4)) {
            pd_log(PD_LOG_ERROR, "cuda backend: cum: %s", b->K->last_error());
            return;
        }
    }
    if (b->K->sync() == 0) {
        b->cum_dirty = false;
    }
}

/* Takes over cs's cumulative attention: fresh state, or rows forgotten since last time. */
static enum pd_status attach_cum(struct cuda_backend *b, struct pd_capture_state *cs,
                                 struct pd_err *err)
{
    enum pd_status st = grow_cum(b, 1024, err);
    if (st) {
        return st;
    }
    if (cs->cum_sync != cum_sync || cs->cum_sync_ud != b || b->cum_cs != cs) {
        if (b->K->memset(b->cum, 0, (size_t)b->n_layer * b->cum_cap * 4)) {
            return dev_fail(b, err, "cum");
        }
        cs->cum_sync = cum_sync;
        cs->cum_sync_ud = b;
        cs->cum_forgot = INT64_MAX;
        b->cum_cs = cs;
    } else if (cs->cum_forgot != INT64_MAX) {
        size_t p = cs->cum_forgot < 0 ? 0 : (size_t)cs->cum_forgot;
        for (uint32_t il = 0; il < b->n_layer && p < b->cum_cap; il++) {
            if (b->K->memset(b->cum + (size_t)il * b->cum_cap + p, 0, (b->cum_cap - p) * 4)) {
                return dev_fail(b, err, "cum");
            }
        }
        cs->cum_forgot = INT64_MAX;
    }
    b->cum_dirty = true;
    return PD_OK;
}

/* ---- handing rows to hooks ------------------------------------------------------------------- */

/* rows [n_layer][nh][cap] (physical slots) downloaded into h_rows; for each layer, the
 * view's rows go to fn with a stride of n_ctx, as the CPU's hook receives them. */
static enum pd_status deliver_rows(struct cuda_backend *b, const struct pd_ctx *c,
                                   const float *d_rows, uint32_t nh, int64_t pos,
                                   void (*fn)(void *, uint32_t, int64_t, const float *, uint32_t,
                                              uint32_t, const int64_t *),
                                   void *ud, struct pd_err *err)
{
    size_t per_layer = (size_t)nh * b->cap;
    if (b->K->download(b->h_rows, d_rows, (size_t)b->n_layer * per_layer * 4) || b->K->sync()) {
        return dev_fail(b, err, "attention rows");
    }
    size_t stride = c->params.n_ctx;
    for (uint32_t il = 0; il < b->n_layer; il++) {
        const struct pd_kv_layer *L = &b->kv->layers[il];
        const uint32_t *ph = phys_of(b, il);
        for (uint32_t h = 0; h < nh; h++) {
            const float *src = b->h_rows + (size_t)il * per_layer + (size_t)h * b->cap;
            float *dst = b->hrows + (size_t)h * stride;
            for (uint32_t v = 0; v < L->n; v++) {
                dst[v] = src[ph[v]];
            }
        }
        fn(ud, il, pos, b->hrows, nh, L->n, L->pos);
    }
    return PD_OK;
}

/* Copies the full rows of the call's last token into the capture state. */
static enum pd_status deliver_full(struct cuda_backend *b, struct pd_capture_state *cs,
                                   int64_t pos, struct pd_err *err)
{
    size_t per_layer = (size_t)b->n_head * b->cap;
    if (b->K->download(b->h_rows, b->full, (size_t)b->n_layer * per_layer * 4) || b->K->sync()) {
        return dev_fail(b, err, "full rows");
    }
    for (uint32_t il = 0; il < b->n_layer; il++) {
        if (!(cs->full_layers == 0 || (il < 64 && (cs->full_layers >> il) & 1))) {
            continue;
        }
        const struct pd_kv_layer *L = &b->kv->layers[il];
        const uint32_t *ph = phys_of(b, il);
        for (uint32_t h = 0; h < b->n_head; h++) {
            const float *src = b->h_rows + (size_t)il * per_layer + (size_t)h * b->cap;
            float *dst = cs->full + ((size_t)il * b->n_head + h) * cs->n_ctx;
            for (uint32_t v = 0; v < L->n; v++) {
                dst[v] = src[ph[v]];
            }
        }
        memcpy(cs->full_pos + (size_t)il * cs->n_ctx, L->pos, L->n * sizeof(int64_t));
        cs->full_slots[il] = L->n;
        cs->full_token_pos = pos;
    }
    return PD_OK;
}

/* ---- eval ---------------------------------------------------------------------------------- */

static uint32_t bucket_parts(const struct cuda_backend *b, uint32_t max_slots)
{
    uint32_t bucket = PART;
    while (bucket < max_slots) {
        bucket *= 2;
    }
    uint32_t n_part = bucket / PART;
    return n_part < b->n_part_max ? n_part : b->n_part_max;
}

/* Fills the parameters for a token at pos and picks the attention bucket; compacts first
 * where needed. */
static enum pd_status prep_token(struct cuda_backend *b, int32_t token, int64_t pos,
                                 int32_t target, uint32_t n_steps, uint32_t *n_part,
                                 struct pd_err *err)
{
    uint32_t max_slots = 1;
    for (uint32_t il = 0; il < b->n_layer; il++) {
        uint32_t n_view = b->kv->layers[il].n;
        uint32_t holes = b->n_alloc[il] - n_view;
        if (b->must_compact[il] || b->n_alloc[il] >= b->cap ||
            (holes >= 32 && holes * 8 > b->n_alloc[il])) {
            enum pd_status st = compact_layer(b, il, err);
            if (st) {
                return st;
            }
        }
        uint32_t slot = b->n_alloc[il];
        b->h_par[b->p_slot + (int)il] = (int32_t)slot;
        b->h_par[b->p_nslots + (int)il] = (int32_t)slot + 1;
        int32_t *list = b->h_par + b->p_evict + (size_t)il * (1 + EVICT_MAX);
        list[0] = (int32_t)b->n_evict[il];
        memcpy(list + 1, b->evict + (size_t)il * EVICT_MAX, b->n_evict[il] * sizeof(int32_t));
        if (slot + 1 > max_slots) {
            max_slots = slot + 1;
        }
    }
    b->h_par[b->p_token] = token;
    b->h_par[b->p_pos] = (int32_t)pos;
    b->h_par[b->p_target] = target;
    b->h_par[b->p_nsteps] = (int32_t)n_steps;
    *n_part = bucket_parts(b, max_slots);
    return PD_OK;
}

/* The token ran: its slots join the mirror; the evictions it carried are done. */
static enum pd_status commit_token(struct cuda_backend *b, int64_t pos, struct pd_err *err)
{
    for (uint32_t il = 0; il < b->n_layer; il++) {
        uint32_t slot = b->n_alloc[il]++;
        phys_of(b, il)[b->kv->layers[il].n] = slot;
        b->n_evict[il] = 0;
        enum pd_status st = pd_kvcache_append(b->kv, il, pos, NULL, NULL, err);
        if (st) {
            return st;
        }
    }
    return PD_OK;
}

static enum pd_status upload_hide(struct cuda_backend *b, const struct pd_ctx *c,
                                  struct pd_err *err)
{
    memset(b->h_hide, 0, (size_t)b->n_layer * b->cap);
    for (uint32_t il = 0; il < b->n_layer; il++) {
        const struct pd_kv_layer *L = &b->kv->layers[il];
        const uint32_t *ph = phys_of(b, il);
        for (uint32_t v = 0; v < L->n; v++) {
            b->h_hide[(size_t)il * b->cap + ph[v]] = c->hide[il][v] ? 1 : 0;
        }
    }
    if (b->K->upload(b->hide, b->h_hide, (size_t)b->n_layer * b->cap) || b->K->sync()) {
        return dev_fail(b, err, "hide mask");
    }
    return PD_OK;
}

/* ---- prefill: GEMMs over a chunk of tokens ---------------------------------------------- */

/* Allocates the prefill buffers (once; those of capture and of policy rows when first
 * needed). */
static enum pd_status ensure_prefill(struct cuda_backend *b, bool capture, bool rows,
                                     struct pd_err *err)
{
    enum pd_status st;
    if (!b->pf_x) {
        uint32_t wide = b->n_embd > b->n_ff ? b->n_embd : b->n_ff;
        wide = wide > b->o_dim ? wide : b->o_dim;
        size_t per_q = (size_t)b->n_head * b->n_part_max;
        /* chunk: at most PREFILL_CHUNK, and attention scratch under PREFILL_SCRATCH each */
        size_t t = PREFILL_CHUNK;
        while (t > 16 && (t * per_q * b->hd_v * 4 > PREFILL_SCRATCH ||
                          t * b->n_head * b->cap * 4 > PREFILL_SCRATCH ||
                          t * b->n_vocab * 4 > PREFILL_SCRATCH)) {
            t /= 2;
        }
        b->pf_cap = (uint32_t)t;
        size_t per_row = (size_t)b->n_layer * b->cap * 4;
        while (t >= PREFILL_MIN && t * per_row > PREFILL_ROWS) {
            t /= 2;
        }
        b->pf_obs = t >= PREFILL_MIN ? (uint32_t)t : 0;
        t = b->pf_cap;
        size_t w16 = (size_t)W_ROWS * wide; /* a slice of any matrix (cols <= wide) */
        if ((st = dalloc(b, (void **)&b->pf_x, t * b->n_embd * 4, err)) ||
            (st = dalloc(b, (void **)&b->pf_xn, t * wide * 4, err)) ||
            (st = dalloc(b, (void **)&b->pf_q, t * b->q_dim * 4, err)) ||
            (st = dalloc(b, (void **)&b->pf_k, t * b->dim_k * 4, err)) ||
            (st = dalloc(b, (void **)&b->pf_v, t * b->dim_v * 4, err)) ||
            (st = dalloc(b, (void **)&b->pf_o, t * b->o_dim * 4, err)) ||
            (st = dalloc(b, (void **)&b->pf_g, t * b->n_ff * 4, err)) ||
            (st = dalloc(b, (void **)&b->pf_u, t * b->n_ff * 4, err)) ||
            (st = dalloc(b, (void **)&b->pf_h, t * b->n_ff * 4, err)) ||
            (st = dalloc(b, (void **)&b->pf_a16, t * wide * 2, err)) ||
            (b->prefill_fast && (st = dalloc(b, (void **)&b->pf_w16, w16 * 2, err))) ||
            (st = dalloc(b, (void **)&b->pf_xq, PD_K_MV_COLS * ((size_t)wide * 4 + 512), err)) ||
            (st = dalloc(b, (void **)&b->pf_opart, t * per_q * b->hd_v * 4, err)) ||
            (st = dalloc(b, (void **)&b->pf_mpart, t * per_q * 4, err)) ||
            (st = dalloc(b, (void **)&b->pf_lpart, t * per_q * 8, err)) ||
            (st = dalloc(b, (void **)&b->pf_c, t * per_q * 4, err)) ||
            (st = dalloc(b, (void **)&b->pf_tok, t * 4, err)) ||
            (st = dalloc(b, (void **)&b->pf_logits, t * b->n_vocab * 4, err))) {
            return st;
        }
        if (b->K->host_alloc((void **)&b->h_pf_tok, t * 4)) {
            return dev_fail(b, err, "host memory");
        }
    }
    if ((capture || rows) && !b->pf_e &&
        (st = dalloc(b, (void **)&b->pf_e, (size_t)b->pf_cap * b->n_head * b->cap * 4, err))) {
        return st;
    }
    if (rows && b->pf_obs && !b->pf_rows) {
        size_t bytes = (size_t)b->pf_obs * b->n_layer * b->cap * 4;
        if ((st = dalloc(b, (void **)&b->pf_rows, bytes, err))) {
            return st;
        }
        if (b->K->host_alloc((void **)&b->h_pf_rows, bytes)) {
            return dev_fail(b, err, "host memory");
        }
    }
    if (capture && !b->pf_top) {
        size_t t = b->pf_cap;
        if ((st = dalloc(b, (void **)&b->pf_top, t * b->n_layer * 64 * sizeof *b->pf_top, err))) {
            return st;
        }
        if (b->K->host_alloc((void **)&b->h_pf_top, t * b->n_layer * 64 * sizeof *b->pf_top)) {
            return dev_fail(b, err, "host memory");
        }
    }
    if (capture && b->pf_smass_cap != b->steps_cap) {
        dfree(b, b->pf_smass);
        b->K->host_free(b->h_pf_smass);
        b->h_pf_smass = NULL;
        size_t bytes = (size_t)b->pf_cap * b->n_layer * b->steps_cap * 4;
        if ((st = dalloc(b, (void **)&b->pf_smass, bytes, err))) {
            return st;
        }
        if (b->K->host_alloc((void **)&b->h_pf_smass, bytes)) {
            return dev_fail(b, err, "host memory");
        }
        b->pf_smass_cap = b->steps_cap;
    }
    return PD_OK;
}

/* y[t][r0..r0+rows) (= or += with beta 1) W x[t] for t < T: the weight products of a
 * chunk. F32 weights: SGEMM on f32 activations. F16/BF16: GemmEx on the weights as stored
 * and the activations rounded to the same format (the CPU's dot format: exact products).
 * Quantised (default): the decode matvec over up to PD_K_MV_COLS tokens per launch, on
 * activations quantised to the CPU's dot format: every output bit-identical to evaluating
 * the tokens one at a time (the weights are read T / PD_K_MV_COLS times). Quantised, fast
 * (PONDER_CUDA_PREFILL=fast): the weights dequantised to f16 in slices of W_ROWS rows and
 * f16 activations, GemmEx on tensor cores (llama.cpp's choice; it differs from the CPU by the
 * CPU's q8 rounding of the activations, ~0.1 logprob on ponder's random test models). */
static int gemm_w(struct cuda_backend *b, const struct dw *w, int r0, int rows, const float *x,
                  size_t ldx, int T, float *y, size_t ldy, float beta)
{
    const struct pd_kernels *K = b->K;
    int cols = w->cols;
    if (w->type == PD_K_F32) {
        return K->gemm_f32((const float *)w->d + (size_t)r0 * cols, (size_t)cols, x, ldx, y, ldy,
                           rows, T, cols, beta);
    }
    int bf16 = w->type == PD_K_BF16;
    if (w->type == PD_K_F16 || bf16) {
        return K->round_f16(x, ldx, b->pf_a16, (size_t)cols, cols, T, bf16) ||
               K->gemm_f16((const uint16_t *)w->d + (size_t)r0 * cols, (size_t)cols, b->pf_a16,
                           (size_t)cols, y, ldy, rows, T, cols, beta, bf16);
    }
    if (!b->prefill_fast) {
        int fmt = dot_fmt(w->type);
        size_t rb = (size_t)pd_dtype_row_size((enum pd_dtype)fmt, (uint64_t)cols);
        for (int c0 = 0; c0 < T; c0 += PD_K_MV_COLS) {
            int nc = T - c0 < PD_K_MV_COLS ? T - c0 : PD_K_MV_COLS;
            struct pd_k_matvec mv;
            memset(&mv, 0, sizeof mv);
            mv.type = w->type;
            mv.cols = cols;
            mv.xq = b->pf_xq;
            mv.n_mat = 1;
            mv.mode = beta != 0.0f ? PD_K_MV_ADD : PD_K_MV_SET;
            mv.m[0] = (struct pd_k_mat){(const uint8_t *)w->d + (size_t)r0 * w->row_bytes,
                                        w->row_bytes, rows, y + (size_t)c0 * ldy, NULL};
            mv.n_col = nc;
            mv.xq_stride = rb;
            mv.y_stride = ldy;
            if (K->quant(fmt, x + (size_t)c0 * ldx, ldx, b->pf_xq, rb, cols, nc) ||
                K->matvec(&mv)) {
                return -1;
            }
        }
        return 0;
    }
    if (K->round_f16(x, ldx, b->pf_a16, (size_t)cols, cols, T, 0)) {
        return -1;
    }
    for (int s0 = 0; s0 < rows; s0 += W_ROWS) {
        int n = rows - s0 < W_ROWS ? rows - s0 : W_ROWS;
        const uint8_t *src = (const uint8_t *)w->d + (size_t)(r0 + s0) * w->row_bytes;
        if (K->dequant_f16(w->type, src, w->row_bytes, n, cols, b->pf_w16, (size_t)cols) ||
            K->gemm_f16(b->pf_w16, (size_t)cols, b->pf_a16, (size_t)cols, y + s0, ldy, n, T, cols,
                        beta, 0)) {
            return -1;
        }
    }
    return 0;
}

static int gemm_bias(struct cuda_backend *b, const struct dw *w, const float *bias,
                     const float *x, size_t ldx, int T, float *y)
{
    if (gemm_w(b, w, 0, w->rows, x, ldx, T, y, (size_t)w->rows, 0.0f)) {
        return -1;
    }
    return bias ? b->K->add(y, (size_t)w->rows, NULL, 0, bias, w->rows, T) : 0;
}

/* Runs tokens[0..T) (T <= pf_cap) through every layer with GEMMs; their K/V join the cache,
 * capture entries go to pf_top/pf_smass, with rows (T <= pf_obs) every token's head-mean
 * policy rows to pf_rows, and with want_logits every token's logits to pf_logits. The
 * parameters (slots, evictions, position) are already in h_par. */
static int run_prefill(struct cuda_backend *b, int T, uint32_t n_part, bool capture, bool rows,
                       int top_n, bool want_logits)
{
    const struct pd_kernels *K = b->K;
    size_t E = b->n_embd;
    uint32_t wide = b->n_embd > b->n_ff ? b->n_embd : b->n_ff;
    wide = wide > b->o_dim ? wide : b->o_dim;
    if (K->upload(b->d_par, b->h_par, b->n_par * sizeof(int32_t)) ||
        K->upload(b->pf_tok, b->h_pf_tok, (size_t)T * 4) ||
        K->kv_invalidate(b->pos, b->cap, (int)b->n_layer, b->d_par, b->p_evict, 1 + EVICT_MAX) ||
        K->embed(b->tok_embd.type, b->tok_embd.d, b->tok_embd.row_bytes, (int)E, b->pf_tok, 0, T,
                 b->pf_x, E)) {
        return -1;
    }
    for (uint32_t il = 0; il < b->n_layer; il++) {
        const struct dlayer *D = &b->L[il];
        if (K->rmsnorm(b->pf_x, E, D->attn_norm, b->pf_xn, wide, (int)E, T, b->eps) ||
            gemm_bias(b, &D->wq, D->bq, b->pf_xn, wide, T, b->pf_q) ||
            gemm_bias(b, &D->wk, D->bk, b->pf_xn, wide, T, b->pf_k) ||
            gemm_bias(b, &D->wv, D->bv, b->pf_xn, wide, T, b->pf_v)) {
            return -1;
        }
        struct pd_k_rope r = {b->pf_q, b->pf_k, b->pf_v, D->q_norm, D->k_norm, b->rope_freqs,
                              b->k + (size_t)il * b->cap * b->dim_k,
                              b->v + (size_t)il * b->cap * b->dim_v,
                              b->pos + (size_t)il * b->cap, b->d_par, b->p_slot + (int)il,
                              b->p_pos, (int)b->n_head, (int)b->n_kv, (int)b->hd, (int)b->hd_v,
                              (int)b->m->hp.n_rot, b->m->hp.rope_type == PD_ROPE_NEOX,
                              b->theta_scale, b->m->hp.rope_freq_scale, b->eps, T, b->q_dim,
                              b->dim_k, b->dim_v};
        size_t c_t = (size_t)b->n_head * n_part;
        struct pd_k_attn a = {b->pf_q, r.k_cache, r.v_cache, r.pos_cache, NULL, b->d_par,
                              b->p_nslots + (int)il, b->p_pos, b->pf_o,
                              capture || rows ? b->pf_e : NULL, b->cap, b->pf_c, b->pf_opart,
                              b->pf_mpart, b->pf_lpart, (int)b->n_head, (int)b->n_kv,
                              (int)b->hd, (int)b->hd_v, (int)n_part,
                              1.0f / sqrtf((float)b->hd), T, b->q_dim, b->o_dim,
                              (size_t)b->n_head * b->cap, c_t};
        if (K->rope_store(&r) || K->attn_decode(&a)) {
            return -1;
        }
        if (capture || rows) {
            struct pd_k_capture cp = {b->pf_e, b->pf_c, b->cap, (int)n_part,
                                      b->pos + (size_t)il * b->cap, b->cap, b->d_par,
                                      b->p_nslots + (int)il, b->p_nsteps, 1, (int)b->n_head,
                                      NULL, top_n, NULL, b->cum_cap, b->steps, NULL,
                                      b->steps_cap, NULL, NULL, NULL, 0, T,
                                      (size_t)b->n_head * b->cap, c_t,
                                      (size_t)b->n_layer * (size_t)top_n,
                                      (size_t)b->n_layer * b->steps_cap, (int)b->n_layer, 0};
            if (capture) {
                cp.top = b->pf_top + (size_t)il * (size_t)top_n;
                cp.cum = b->cum_off ? NULL : b->cum + (size_t)il * b->cum_cap;
                cp.smass = b->pf_smass + (size_t)il * b->steps_cap;
            }
            if (rows) {
                cp.rows_mean = b->pf_rows + (size_t)il * b->cap;
                cp.rows_tstride = (size_t)b->n_layer * b->cap;
            }
            if (K->capture(&cp)) {
                return -1;
            }
        }
        if (gemm_w(b, &D->wo, 0, D->wo.rows, b->pf_o, b->o_dim, T, b->pf_x, E, 1.0f) ||
            K->rmsnorm(b->pf_x, E, D->ffn_norm, b->pf_xn, wide, (int)E, T, b->eps) ||
            gemm_w(b, &D->gate, 0, D->gate.rows, b->pf_xn, wide, T, b->pf_g, b->n_ff, 0.0f) ||
            gemm_w(b, &D->up, 0, D->up.rows, b->pf_xn, wide, T, b->pf_u, b->n_ff, 0.0f) ||
            K->swiglu(b->pf_g, b->pf_u, b->n_ff, b->pf_h, b->n_ff, (int)b->n_ff, T) ||
            gemm_w(b, &D->down, 0, D->down.rows, b->pf_h, b->n_ff, T, b->pf_x, E, 1.0f)) {
            return -1;
        }
    }
    if (!want_logits) {
        return 0;
    }
    if (K->rmsnorm(b->pf_x, E, b->output_norm, b->pf_xn, wide, (int)E, T, b->eps)) {
        return -1;
    }
    return gemm_w(b, &b->output, 0, b->output.rows, b->pf_xn, wide, T, b->pf_logits,
                  b->n_vocab, 0.0f);
}

/* Evaluates tokens[0..n) (n <= pf_cap) as one prefill chunk at the context's position and
 * feeds the capture state and the logits callback as a token-by-token run would. With
 * `observe` (n <= pf_obs, head-mean rows wanted) the policy observer receives the rows of
 * the chunk's positions >= cs->observer_from, layer by layer and in position order, each
 * over the slots its query sees (those before it and its own), as the token path hands
 * them over. Per-head rows and full rows are never asked of a chunk: the caller runs
 * those tokens one by one. */
static enum pd_status prefill_chunk(struct cuda_backend *b, struct pd_ctx *c,
                                    struct pd_capture_state *cs, bool observe,
                                    const int32_t *tokens, size_t n, size_t i0,
                                    void (*logits_fn)(void *, size_t, int64_t, const float *),
                                    void *ud, int top_n, struct pd_err *err)
{
    bool capture = cs && cs->level != PD_CAPTURE_LEVEL_OFF;
    enum pd_status st = ensure_prefill(b, capture, observe, err);
    if (st) {
        return st;
    }
    int64_t pos0 = c->n_past;
    if (capture && !b->cum_off && (st = grow_cum(b, (size_t)pos0 + n + 1, err))) {
        return st;
    }
    /* room for n slots in every layer, then the chunk's parameters */
    uint32_t max_slots = 1;
    for (uint32_t il = 0; il < b->n_layer; il++) {
        uint32_t holes = b->n_alloc[il] - b->kv->layers[il].n;
        if (b->must_compact[il] || b->n_alloc[il] + n > b->cap ||
            (holes >= 32 && holes * 8 > b->n_alloc[il])) {
            if ((st = compact_layer(b, il, err))) {
                return st;
            }
        }
        uint32_t slot0 = b->n_alloc[il];
        b->h_par[b->p_slot + (int)il] = (int32_t)slot0;
        b->h_par[b->p_nslots + (int)il] = (int32_t)slot0 + 1;
        int32_t *list = b->h_par + b->p_evict + (size_t)il * (1 + EVICT_MAX);
        list[0] = (int32_t)b->n_evict[il];
        memcpy(list + 1, b->evict + (size_t)il * EVICT_MAX, b->n_evict[il] * sizeof(int32_t));
        max_slots = slot0 + (uint32_t)n > max_slots ? slot0 + (uint32_t)n : max_slots;
    }
    b->h_par[b->p_pos] = (int32_t)pos0;
    b->h_par[b->p_nsteps] = capture ? (int32_t)cs->smass_stride : 0;
    memcpy(b->h_pf_tok, tokens, n * sizeof *tokens);
    uint32_t n_part = bucket_parts(b, max_slots);
    if (run_prefill(b, (int)n, n_part, capture, observe, top_n, logits_fn != NULL)) {
        return dev_fail(b, err, "prefill");
    }
    if (observe && b->K->download(b->h_pf_rows, b->pf_rows, n * b->n_layer * b->cap * 4)) {
        return dev_fail(b, err, "prefill rows");
    }
    if (capture &&
        (b->K->download(b->h_pf_top, b->pf_top,
                        n * b->n_layer * (size_t)top_n * sizeof *b->pf_top) ||
         b->K->download(b->h_pf_smass, b->pf_smass, n * b->n_layer * b->steps_cap * 4))) {
        return dev_fail(b, err, "prefill capture");
    }
    if (b->K->sync()) {
        return dev_fail(b, err, "prefill");
    }
    for (size_t t = 0; t < n; t++) {
        if ((st = commit_token(b, pos0 + (int64_t)t, err))) {
            return st;
        }
    }
    b->prefill_tokens += n;
    if (observe) {
        for (uint32_t il = 0; il < b->n_layer; il++) {
            const struct pd_kv_layer *L = &b->kv->layers[il];
            const uint32_t *ph = phys_of(b, il);
            uint32_t n_before = L->n - (uint32_t)n; /* the chunk's slots are the last n */
            for (size_t t = 0; t < n; t++) {
                int64_t pos = pos0 + (int64_t)t;
                if (pos < cs->observer_from) {
                    continue;
                }
                const float *src = b->h_pf_rows + (t * b->n_layer + il) * b->cap;
                uint32_t nv = n_before + (uint32_t)t + 1;
                for (uint32_t v = 0; v < nv; v++) {
                    b->hrows[v] = src[ph[v]];
                }
                cs->observer(cs->observer_ud, il, pos, b->hrows, 1, nv, L->pos);
            }
        }
    }
    if (capture) {
        b->cum_dirty = true;
        for (size_t t = 0; t < n; t++) {
            int64_t pos = pos0 + (int64_t)t;
            size_t ti = (size_t)(pos - cs->pos0);
            if (pos < cs->pos0 || ti >= cs->n_tok) {
                continue;
            }
            uint8_t *blob = cs->blobs + ti * cs->blob_len;
            const struct pd_k_top *tt = b->h_pf_top + t * b->n_layer * (size_t)top_n;
            for (uint32_t il = 0; il < b->n_layer; il++) {
                for (int k = 0; k < top_n; k++) {
                    const struct pd_k_top *e = tt + (size_t)il * (size_t)top_n + k;
                    if (e->pos != PD_ATTN_POS_PAD) {
                        pd_attn_blob_set(blob, il, (uint32_t)k, e->pos, e->weight);
                    }
                }
            }
            const float *sm = b->h_pf_smass + t * b->n_layer * b->steps_cap;
            for (uint32_t k = 0; k < cs->smass_stride; k++) {
                float acc = 0.0f;
                for (uint32_t il = 0; il < b->n_layer; il++) {
                    acc += sm[(size_t)il * b->steps_cap + k];
                }
                cs->smass[ti * cs->smass_stride + k] = acc;
            }
        }
    }
    if (logits_fn) {
        for (size_t t = 0; t < n; t++) {
            if (b->K->download(c->logits, b->pf_logits + t * b->n_vocab, (size_t)b->n_vocab * 4) ||
                b->K->sync()) {
                return dev_fail(b, err, "logits");
            }
            logits_fn(ud, i0 + t, pos0 + (int64_t)t, c->logits);
        }
    }
    c->n_past += (int64_t)n;
    return PD_OK;
}

static enum pd_status cuda_eval(struct pd_backend *bb, struct pd_ctx *c, const int32_t *tokens,
                                size_t n,
                                void (*logits_fn)(void *, size_t, int64_t, const float *),
                                void *ud, struct pd_err *err)
{
    struct cuda_backend *b = (struct cuda_backend *)bb;
    struct pd_capture_state *cs = c->attn_hook == pd_capture_hook ? c->attn_hook_ud : NULL;
    pd_attn_hook_fn other_hook = c->attn_hook && !cs ? c->attn_hook : NULL;
    enum pd_status st = PD_OK;
    unsigned base_flags = 0;
    int top_n = 1;
    uint64_t full_mask = 0;
    if (cs && cs->level != PD_CAPTURE_LEVEL_OFF) {
        base_flags |= F_BLOB;
        top_n = (int)cs->top_n;
        if (cs->level == PD_CAPTURE_LEVEL_FULL) {
            full_mask = cs->full_layers ? cs->full_layers : ~(uint64_t)0;
        }
    }
    if (other_hook) {
        base_flags |= F_HEAD;
    }
    if (c->hide) {
        base_flags |= F_HIDE;
    }
    unsigned want = base_flags | (full_mask ? F_FULL : 0);
    if (cs && cs->observer) {
        want |= cs->observer_mean ? F_MEAN : F_HEAD;
    }
    if ((st = ensure_capture(b, want, err))) {
        return st;
    }
    b->cum_off = cs && !cs->keep_received;
    if (base_flags & F_BLOB) {
        if ((!b->cum_off && (st = attach_cum(b, cs, err))) || (st = sync_steps(b, cs, err))) {
            return st;
        }
    }
    if ((base_flags & F_HIDE) && (st = upload_hide(b, c, err))) {
        return st;
    }
    b->logits_valid = false;
    /* Batches: GEMM chunks for every token but the last (which takes the decode path: it
     * hands over full rows, the probe and the logits). Policy rows come from the chunks
     * when the policy takes head means and a chunk's rows fit PREFILL_ROWS; otherwise the
     * tokens whose rows are wanted go token by token too. Other hooks and hidden slots:
     * token by token. */
    size_t n_gemm = 0;
    bool chunk_rows = false;
    if (n >= PREFILL_MIN && !other_hook && !c->hide && b->use_prefill) {
        if ((st = ensure_prefill(b, false, false, err))) {
            return st;
        }
        n_gemm = n - 1;
        if (cs && cs->observer && cs->observer_from < c->n_past + (int64_t)n_gemm) {
            chunk_rows = cs->observer_mean && b->pf_obs > 0;
            if (!chunk_rows) {
                int64_t k = cs->observer_from - c->n_past;
                n_gemm = k > 0 ? (size_t)k : 0;
            }
        }
        if (n_gemm < PREFILL_MIN) {
            n_gemm = 0;
        }
    }
    size_t i = 0;
    while (i < n_gemm) {
        if (c->cancel && atomic_load(c->cancel)) {
            return pd_err_set(err, PD_ECANCELLED, "cancelled");
        }
        size_t cap = chunk_rows ? b->pf_obs : b->pf_cap;
        size_t m = n_gemm - i < cap ? n_gemm - i : cap;
        bool observe = chunk_rows && cs->observer_from < c->n_past + (int64_t)m;
        if ((st = prefill_chunk(b, c, cs, observe, tokens + i, m, i, logits_fn, ud, top_n,
                                err))) {
            return st;
        }
        c->has_logits = logits_fn != NULL;
        b->logits_valid = false;
        b->last_valid = false;
        i += m;
    }
    for (; i < n; i++) {
        if (c->cancel && atomic_load(c->cancel)) {
            return pd_err_set(err, PD_ECANCELLED, "cancelled");
        }
        int64_t pos = c->n_past;
        bool last = i + 1 == n;
        unsigned flags = base_flags;
        if (last && full_mask) {
            flags |= F_FULL;
        }
        bool observe = cs && cs->observer && pos >= cs->observer_from;
        if (observe) {
            flags |= cs->observer_mean ? F_MEAN : F_HEAD;
        }
        if ((flags & F_BLOB) && !b->cum_off && (st = grow_cum(b, (size_t)pos + 1, err))) {
            return st;
        }
        uint32_t n_part;
        int32_t target = i + 1 < n ? tokens[i + 1] : -1;
        uint32_t n_steps = (flags & F_BLOB) ? cs->smass_stride : 0;
        if ((st = prep_token(b, tokens[i], pos, target, n_steps, &n_part, err)) ||
            (st = launch_token(b, n_part, flags, top_n, full_mask, err))) {
            return st;
        }
        if (b->K->sync()) {
            return dev_fail(b, err, "decode");
        }
        if ((st = commit_token(b, pos, err))) {
            return st;
        }
        b->last = *b->h_probe;
        b->last_valid = true;
        c->n_past++;
        if (cs) {
            size_t ti = (size_t)(pos - cs->pos0);
            if ((flags & F_BLOB) && pos >= cs->pos0 && ti < cs->n_tok) {
                uint8_t *blob = cs->blobs + ti * cs->blob_len;
                for (uint32_t il = 0; il < b->n_layer; il++) {
                    for (int k = 0; k < top_n; k++) {
                        const struct pd_k_top *e = b->h_top + (size_t)il * (size_t)top_n + k;
                        if (e->pos != PD_ATTN_POS_PAD) { /* begin() wrote the padding */
                            pd_attn_blob_set(blob, il, (uint32_t)k, e->pos, e->weight);
                        }
                    }
                }
                for (uint32_t k = 0; k < cs->smass_stride; k++) {
                    float acc = 0.0f;
                    for (uint32_t il = 0; il < b->n_layer; il++) {
                        acc += b->h_smass[(size_t)il * b->steps_cap + k];
                    }
                    cs->smass[ti * cs->smass_stride + k] = acc;
                }
            }
            if (observe) {
                st = deliver_rows(b, c, cs->observer_mean ? b->rows_mean : b->rows_head,
                                  cs->observer_mean ? 1 : b->n_head, pos, cs->observer,
                                  cs->observer_ud, err);
            }
            if (!st && (flags & F_FULL)) {
                st = deliver_full(b, cs, pos, err);
            }
        } else if (other_hook) {
            st = deliver_rows(b, c, b->rows_head, b->n_head, pos, other_hook, c->attn_hook_ud,
                              err);
        }
        if (st) {
            return st;
        }
        if (logits_fn || (last && !c->logits_lazy)) {
            if (b->K->download(c->logits, b->logits, (size_t)b->n_vocab * 4) || b->K->sync()) {
                return dev_fail(b, err, "logits");
            }
            b->logits_valid = true;
            if (logits_fn) {
                logits_fn(ud, i, pos, c->logits);
            }
        }
        c->has_logits = true;
    }
    return PD_OK;
}

/* ---- probes and logits --------------------------------------------------------------------- */

static enum pd_status cuda_logits(struct pd_backend *bb, struct pd_ctx *c, struct pd_err *err)
{
    struct cuda_backend *b = (struct cuda_backend *)bb;
    if (b->logits_valid || !b->last_valid) {
        return PD_OK;
    }
    if (b->K->download(c->logits, b->logits, (size_t)b->n_vocab * 4) || b->K->sync()) {
        return dev_fail(b, err, "logits");
    }
    b->logits_valid = true;
    return PD_OK;
}

static int32_t cuda_argmax(struct pd_backend *bb)
{
    struct cuda_backend *b = (struct cuda_backend *)bb;
    return b->last_valid ? b->last.argmax : -1;
}

static enum pd_status cuda_probe(struct pd_backend *bb, struct pd_ctx *c, int32_t id, size_t k,
                                 struct pd_token_rec *rec, struct pd_err *err)
{
    struct cuda_backend *b = (struct cuda_backend *)bb;
    if (!b->last_valid) {
        return pd_err_set(err, PD_EINVAL, "cuda backend: no token evaluated yet");
    }
    const struct pd_k_probe_out *p = &b->last;
    float logit = NAN;
    for (int j = 0; j < p->n_top; j++) {
        if (p->top_id[j] == id) {
            logit = p->top_logit[j];
            break;
        }
    }
    if (isnan(logit) && b->logits_valid) {
        logit = c->logits[id];
    } else if (isnan(logit)) {
        if (b->K->download(&logit, b->logits + id, 4) || b->K->sync()) {
            return dev_fail(b, err, "logit");
        }
    }
    if (k > PD_TOPK_MAX) {
        k = PD_TOPK_MAX;
    }
    if (k > (size_t)p->n_top) {
        k = (size_t)p->n_top;
    }
    rec->id = id;
    rec->logprob = (float)((double)logit - p->lse);
    rec->entropy = (float)p->entropy;
    rec->n_top = (uint8_t)k;
    for (size_t j = 0; j < k; j++) {
        rec->top[j].id = p->top_id[j];
        rec->top[j].logprob = (float)((double)p->top_logit[j] - p->lse);
    }
    return PD_OK;
}

/* ---- info, close, open ----------------------------------------------------------------------- */

/* f16 GemmEx throughput on the model's largest layer shape (gate/up: n_ff x n_embd) over
 * 512 tokens: the reference for the prefill target. 0 when the device memory is short. */
static double measure_gemm(const struct pd_kernels *K, const struct pd_model *m)
{
    int M = (int)m->hp.n_ff, N = 512, Kd = (int)m->hp.n_embd;
    void *a = NULL, *bm = NULL, *c = NULL;
    double best = 0.0;
    if (K->dev_alloc(&a, (size_t)M * Kd * 2) || K->dev_alloc(&bm, (size_t)N * Kd * 2) ||
        K->dev_alloc(&c, (size_t)N * M * 4) || K->memset(a, 0, (size_t)M * Kd * 2) ||
        K->memset(bm, 0, (size_t)N * Kd * 2)) {
        goto done;
    }
    for (int r = 0; r < 4; r++) { /* the first run warms up */
        float ms = 0.0f;
        if (K->timer_start() ||
            K->gemm_f16(a, (size_t)Kd, bm, (size_t)Kd, c, (size_t)M, M, N, Kd, 0.0f, 0) ||
            K->timer_stop(&ms)) {
            break;
        }
        double f = ms > 0.0f ? 2.0 * M * N * (double)Kd / (ms * 1e-3) : 0.0;
        if (r > 0 && f > best) {
            best = f;
        }
    }
done:
    K->dev_free(a);
    K->dev_free(bm);
    K->dev_free(c);
    return best;
}

static void cuda_info(struct pd_backend *bb, struct pd_backend_info *out)
{
    struct cuda_backend *b = (struct cuda_backend *)bb;
    memset(out, 0, sizeof *out);
    snprintf(out->device, sizeof out->device, "%s", b->dev.name);
    snprintf(out->provider, sizeof out->provider, "%s", b->K->build);
    out->cc_major = b->dev.cc_major;
    out->cc_minor = b->dev.cc_minor;
    if (b->bandwidth == 0.0) {
        size_t bytes = b->dev.emulated ? (16u << 20) : (512u << 20);
        double bw = 0.0;
        if (b->K->bandwidth(bytes, b->dev.emulated ? 2 : 5, &bw) == 0) {
            b->bandwidth = bw;
        }
    }
    out->bandwidth = b->bandwidth;
    if (b->gemm_flops == 0.0) {
        b->gemm_flops = measure_gemm(b->K, b->m);
    }
    out->gemm_flops = b->gemm_flops;
    out->prefill_tokens = b->prefill_tokens;
    out->plan = b->plan;
    out->kernels_per_token = b->nodes_last;
    out->graphs = b->graphs_made;
    out->compactions = b->compactions;
}

static void cuda_destroy(struct pd_backend *bb)
{
    struct cuda_backend *b = (struct cuda_backend *)bb;
    if (b->kv && b->kv->listener.ud == b) {
        memset(&b->kv->listener, 0, sizeof b->kv->listener);
    }
    if (b->cum_cs && b->cum_cs->cum_sync_ud == b) {
        /* the state may outlive us; it keeps what it last pulled */
        b->cum_cs = NULL;
    }
    if (b->ready) {
        graphs_clear(b);
        b->K->sync();
        for (size_t i = 0; i < b->n_allocs; i++) {
            b->K->dev_free(b->allocs[i]);
        }
        b->K->host_free(b->stage[0]);
        b->K->host_free(b->stage[1]);
        b->K->host_free(b->h_par);
        b->K->host_free(b->h_probe);
        b->K->host_free(b->h_top);
        b->K->host_free(b->h_smass);
        b->K->host_free(b->h_rows);
        b->K->host_free(b->h_hide);
        b->K->host_free(b->h_mv);
        b->K->host_free(b->h_pf_tok);
        b->K->host_free(b->h_pf_top);
        b->K->host_free(b->h_pf_smass);
        b->K->host_free(b->h_pf_rows);
    }
    free(b->allocs);
    free(b->L);
    free(b->n_alloc);
    free(b->phys);
    free(b->n_evict);
    free(b->evict);
    free(b->must_compact);
    free(b->hrows);
    free(b->h_steps);
    free(b);
}

static const struct pd_backend_ops cuda_ops = {"cuda", cuda_eval, cuda_logits, cuda_argmax,
                                               cuda_probe, cuda_info, cuda_destroy};

static bool want_emulator(const struct pd_ctx_params *p)
{
    const char *e = getenv("PONDER_CUDA_EMULATE");
    return p->cuda_emulate || (e && strcmp(e, "1") == 0);
}

bool pd_backend_cuda_available(void)
{
    const struct pd_kernels *k = pd_kernels_cuda();
    return k && k->device_count() > 0;
}

static enum pd_status check_shape(const struct pd_model *m, struct pd_err *err)
{
    const struct pd_hparams *hp = &m->hp;
    uint32_t G = hp->n_head_kv ? hp->n_head / hp->n_head_kv : 0;
    if (G < 1 || G > 16 || hp->n_head % hp->n_head_kv || G * hp->head_dim > 4096 ||
        hp->head_dim > 256 || hp->head_dim_v > 256 || hp->n_rot > hp->head_dim ||
        (hp->n_rot & 1)) {
        return pd_err_set(err, PD_EUNSUPPORTED,
                          "cuda backend: unsupported head shape (%u query heads over %u KV "
                          "heads of %u): at most 16 query heads per KV head, head size <= 256",
                          hp->n_head, hp->n_head_kv, hp->head_dim);
    }
    return PD_OK;
}

/* The kernels read the types of pd_cuda.h up to q8_K; q5_0, q4_1 and q5_1 run on the CPU
 * only. */
static enum pd_status check_type(const struct pd_weight *w, const char *what, uint32_t il,
                                 struct pd_err *err)
{
    if (!w->data || (int)w->type <= PD_K_Q8_K) {
        return PD_OK;
    }
    char name[64];
    if (il == UINT32_MAX) {
        snprintf(name, sizeof name, "%s", what);
    } else {
        snprintf(name, sizeof name, "blk.%u.%s", il, what);
    }
    return pd_err_set(err, PD_EUNSUPPORTED,
                      "cuda backend: %s weights are not read on the device (%s.weight); the "
                      "CPU engine runs this model (--backend cpu)",
                      pd_dtype_traits(w->type)->name, name);
}

static enum pd_status check_types(const struct pd_model *m, struct pd_err *err)
{
    enum pd_status st;
    if ((st = check_type(&m->tok_embd, "token_embd", UINT32_MAX, err)) ||
        (st = check_type(&m->output, "output", UINT32_MAX, err))) {
        return st;
    }
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        const struct pd_layer *L = &m->layers[il];
        if ((st = check_type(&L->wq, "attn_q", il, err)) ||
            (st = check_type(&L->wk, "attn_k", il, err)) ||
            (st = check_type(&L->wv, "attn_v", il, err)) ||
            (st = check_type(&L->wo, "attn_output", il, err)) ||
            (st = check_type(&L->w_gate, "ffn_gate", il, err)) ||
            (st = check_type(&L->w_up, "ffn_up", il, err)) ||
            (st = check_type(&L->w_down, "ffn_down", il, err))) {
            return st;
        }
    }
    return PD_OK;
}

static enum pd_status alloc_state(struct cuda_backend *b, struct pd_err *err)
{
    const struct pd_kernels *K = b->K;
    size_t L = b->n_layer, cap = b->cap;
    uint32_t wide = b->n_embd > b->n_ff ? b->n_embd : b->n_ff;
    wide = wide > b->o_dim ? wide : b->o_dim;
    enum pd_status st;
    if ((st = dalloc(b, (void **)&b->k, L * cap * b->dim_k * 2, err)) ||
        (st = dalloc(b, (void **)&b->v, L * cap * b->dim_v * 2, err)) ||
        (st = dalloc(b, (void **)&b->pos, L * cap * 4, err)) ||
        (st = dalloc(b, (void **)&b->mv_k, cap * b->dim_k * 2, err)) ||
        (st = dalloc(b, (void **)&b->mv_v, cap * b->dim_v * 2, err)) ||
        (st = dalloc(b, (void **)&b->mv_pos, cap * 4, err)) ||
        (st = dalloc(b, (void **)&b->mv_list, 2 * cap * 4, err)) ||
        (st = dalloc(b, (void **)&b->x, b->n_embd * 4, err)) ||
        (st = dalloc(b, (void **)&b->xn, (size_t)wide * 4, err)) ||
        (st = dalloc(b, (void **)&b->q, b->q_dim * 4, err)) ||
        (st = dalloc(b, (void **)&b->kk, b->dim_k * 4, err)) ||
        (st = dalloc(b, (void **)&b->vv, b->dim_v * 4, err)) ||
        (st = dalloc(b, (void **)&b->att, b->o_dim * 4, err)) ||
        (st = dalloc(b, (void **)&b->g, b->n_ff * 4, err)) ||
        (st = dalloc(b, (void **)&b->u, b->n_ff * 4, err)) ||
        (st = dalloc(b, (void **)&b->h, b->n_ff * 4, err)) ||
        (st = dalloc(b, (void **)&b->logits, b->n_vocab * 4, err)) ||
        (st = dalloc(b, &b->xq, (size_t)wide * 4 + 512, err)) ||
        (st = dalloc(b, (void **)&b->opart, (size_t)b->n_head * b->n_part_max * b->hd_v * 4,
                     err)) ||
        (st = dalloc(b, (void **)&b->mpart, (size_t)b->n_head * b->n_part_max * 4, err)) ||
        (st = dalloc(b, (void **)&b->lpart, (size_t)b->n_head * b->n_part_max * 8, err)) ||
        (st = dalloc(b, (void **)&b->c, L * b->n_head * b->n_part_max * 4, err)) ||
        (st = dalloc(b, &b->probe_scratch, K->probe_scratch_bytes(1), err)) ||
        (st = dalloc(b, (void **)&b->probe_out, sizeof *b->probe_out, err))) {
        return st;
    }
    b->p_token = 0;
    b->p_pos = 1;
    b->p_target = 2;
    b->p_nsteps = 3;
    b->p_slot = 8;
    b->p_nslots = 8 + (int)L;
    b->p_evict = 8 + 2 * (int)L;
    b->n_par = (size_t)b->p_evict + L * (1 + EVICT_MAX);
    if ((st = dalloc(b, (void **)&b->d_par, b->n_par * 4, err))) {
        return st;
    }
    if (K->host_alloc(&b->stage[0], STAGE_BYTES) || K->host_alloc(&b->stage[1], STAGE_BYTES) ||
        K->host_alloc((void **)&b->h_par, b->n_par * 4) ||
        K->host_alloc((void **)&b->h_probe, sizeof *b->h_probe) ||
        K->host_alloc((void **)&b->h_mv, 2 * cap * 4)) {
        return dev_fail(b, err, "pinned host memory");
    }
    memset(b->h_par, 0, b->n_par * 4);
    if (K->memset(b->probe_scratch, 0, K->probe_scratch_bytes(1)) ||
        K->memset(b->pos, 0xFF, L * cap * 4) || K->sync()) {
        return dev_fail(b, err, "init");
    }
    b->n_alloc = pd_calloc(L, sizeof *b->n_alloc);
    b->phys = pd_malloc_array(L * cap, sizeof *b->phys);
    b->n_evict = pd_calloc(L, sizeof *b->n_evict);
    b->evict = pd_malloc_array(L * EVICT_MAX, sizeof *b->evict);
    b->must_compact = pd_calloc(L, sizeof *b->must_compact);
    b->hrows = pd_malloc_array((size_t)b->n_head * cap, sizeof *b->hrows);
    if (!b->n_alloc || !b->phys || !b->n_evict || !b->evict || !b->must_compact || !b->hrows) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (cuda backend)");
    }
    return PD_OK;
}

/* The provider for p, after the checks every open makes. */
static enum pd_status pick_provider(const struct pd_model *m, const struct pd_ctx_params *p,
                                    const struct pd_kernels **out, struct pd_err *err)
{
    const struct pd_kernels *K = want_emulator(p) ? pd_kernels_emu() : pd_kernels_cuda();
    *out = K;
    if (!K) {
        return pd_err_set(err, PD_EUNSUPPORTED,
                          "cuda backend: %s; PONDER_CUDA_EMULATE=1 runs the kernels on the CPU",
                          pd_kernels_cuda_why());
    }
    if (K->device_count() <= 0) {
        return pd_err_set(err, PD_EUNSUPPORTED, "cuda backend: no CUDA device");
    }
    if (p->kv_type != PD_KV_F16) {
        return pd_err_set(err, PD_EUNSUPPORTED,
                          "cuda backend: the device KV cache is f16 (--kv-type f16)");
    }
    enum pd_status st = check_shape(m, err);
    return st ? st : check_types(m, err);
}

/* The plan of m at p->n_ctx on the initialised provider's device 0. */
static enum pd_status make_plan(const struct pd_kernels *K, const struct pd_model *m,
                                uint32_t n_ctx, struct pd_cuda_device *dev,
                                struct pd_gpu_plan *plan, struct pd_err *err)
{
    size_t free_b = 0, total_b = 0;
    if (K->init(0) || K->device_query(0, dev) || K->mem_info(&free_b, &total_b)) {
        return pd_err_set(err, PD_ECUDA, "cuda backend (%s): init: %s", K->build,
                          K->last_error());
    }
    /* On a device: the runtime's workspaces and 1 GiB of headroom (docs/gpu.md). */
    uint64_t fixed = dev->emulated ? 0 : (96ull << 20);
    uint64_t margin = dev->emulated ? 0 : (1ull << 30);
    pd_gpu_plan_make(m, n_ctx, free_b, fixed, margin, plan);
    return PD_OK;
}

enum pd_status pd_backend_cuda_info(const struct pd_model *m, const struct pd_ctx_params *p,
                                    bool measure, struct pd_backend_info *out,
                                    struct pd_err *err)
{
    memset(out, 0, sizeof *out);
    const struct pd_kernels *K;
    struct pd_cuda_device dev;
    enum pd_status st = pick_provider(m, p, &K, err);
    if (!st) {
        st = make_plan(K, m, p->n_ctx, &dev, &out->plan, err);
    }
    if (st) {
        return st;
    }
    snprintf(out->device, sizeof out->device, "%s", dev.name);
    snprintf(out->provider, sizeof out->provider, "%s", K->build);
    out->cc_major = dev.cc_major;
    out->cc_minor = dev.cc_minor;
    if (measure) {
        size_t bytes = dev.emulated ? (16u << 20) : (512u << 20);
        if (K->bandwidth(bytes, dev.emulated ? 2 : 5, &out->bandwidth)) {
            out->bandwidth = 0.0;
        }
        out->gemm_flops = measure_gemm(K, m);
    }
    return PD_OK;
}

enum pd_status pd_backend_cuda_open(const struct pd_model *m, const struct pd_ctx_params *p,
                                    struct pd_kvcache *kv, struct pd_backend **out,
                                    struct pd_err *err)
{
    *out = NULL;
    const struct pd_kernels *K;
    enum pd_status st = pick_provider(m, p, &K, err);
    if (st) {
        return st;
    }
    struct cuda_backend *b = calloc(1, sizeof *b);
    if (!b) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (cuda backend)");
    }
    b->base.ops = &cuda_ops;
    b->K = K;
    b->m = m;
    b->kv = kv;
    const struct pd_hparams *hp = &m->hp;
    b->cap = p->n_ctx;
    b->n_layer = hp->n_layer;
    b->n_head = hp->n_head;
    b->n_kv = hp->n_head_kv;
    b->hd = hp->head_dim;
    b->hd_v = hp->head_dim_v;
    b->dim_k = hp->n_head_kv * hp->head_dim;
    b->dim_v = hp->n_head_kv * hp->head_dim_v;
    b->n_embd = hp->n_embd;
    b->n_ff = hp->n_ff;
    b->n_vocab = hp->n_vocab;
    b->q_dim = hp->n_head * hp->head_dim;
    b->o_dim = hp->n_head * hp->head_dim_v;
    b->n_part_max = (b->cap + PART - 1) / PART;
    b->theta_scale = powf(hp->rope_base, -2.0f / (float)hp->n_rot);
    b->eps = hp->norm_eps;
    const char *g = getenv("PONDER_CUDA_GRAPHS");
    b->use_graphs = !(g && strcmp(g, "0") == 0);
    g = getenv("PONDER_CUDA_PREFILL");
    b->use_prefill = !(g && strcmp(g, "0") == 0);
    b->prefill_fast = g && strcmp(g, "fast") == 0;
    b->L = pd_calloc(hp->n_layer, sizeof *b->L);
    if (!b->L) {
        st = pd_err_set(err, PD_ENOMEM, "out of memory (cuda backend)");
        goto fail;
    }
    if ((st = make_plan(K, m, b->cap, &b->dev, &b->plan, err))) {
        goto fail;
    }
    b->ready = true;
    size_t free_b = b->plan.device_free;
    if (!b->plan.fits) {
        st = pd_err_set(err, PD_ENOMEM,
                        "cuda backend: %s has %.2f GiB free; the model at %u context slots "
                        "needs %.2f GiB (weights %.2f, KV %.2f); the largest context that fits "
                        "is %u (--ctx), or use --backend cpu",
                        b->dev.name, (double)free_b / (1 << 30), b->cap,
                        (double)b->plan.total / (1 << 30), (double)b->plan.weights / (1 << 30),
                        (double)b->plan.kv / (1 << 30), b->plan.n_ctx_max);
        goto fail;
    }
    if ((st = alloc_state(b, err)) || (st = upload_weights(b, p, err))) {
        goto fail;
    }
    kv->listener = (struct pd_kv_listener){kv_on_evict, kv_on_truncate, kv_on_clear, b};
    pd_log(PD_LOG_INFO, "cuda backend (%s) on %s: %.2f GiB of weights, %u context slots",
           K->build, b->dev.name, (double)b->plan.weights / (1 << 30), b->cap);
    *out = &b->base;
    return PD_OK;
fail:
    b->kv = NULL;
    cuda_destroy(&b->base);
    return st;
}
