/* backend.c - backend names, the common close, and the device memory planner (pure: the
 * sizes come from the model's tensors, nothing is allocated). */
#include "config.h"

#include "backend.h"

#include <string.h>

static const char *const names[PD_BACKEND_KIND_COUNT] = {"cpu", "cuda", "auto"};
_Static_assert(sizeof names / sizeof names[0] == PD_BACKEND_KIND_COUNT, "backend names");

const char *pd_backend_name(enum pd_backend_kind k)
{
    return (unsigned)k < PD_BACKEND_KIND_COUNT ? names[k] : "?";
}

enum pd_backend_kind pd_backend_parse(const char *s)
{
    for (int i = 0; i < PD_BACKEND_KIND_COUNT; i++) {
        if (strcmp(s, names[i]) == 0) {
            return (enum pd_backend_kind)i;
        }
    }
    return PD_BACKEND_KIND_COUNT;
}

void pd_backend_close(struct pd_backend **b)
{
    if (b && *b) {
        (*b)->ops->destroy(*b);
        *b = NULL;
    }
}

/* ---- memory plan ------------------------------------------------------------------------ */

#define PLAN_ALIGN 256u
#define PLAN_PART 256u /* slots per attention partition (kernels/pd_cuda.h PD_K_ATTN_PART) */

static uint64_t padded(uint64_t bytes)
{
    return (bytes + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN;
}

static uint64_t tensor_bytes(const struct pd_weight *w)
{
    return w->data ? padded(w->rows * w->row_bytes) : 0;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* Bytes of everything the engine uploads: every tensor once (a tied output shares the
 * embedding table). */
static uint64_t plan_weights(const struct pd_model *m)
{
    uint64_t w = tensor_bytes(&m->tok_embd) + tensor_bytes(&m->output_norm) +
                 tensor_bytes(&m->rope_freqs);
    if (m->output.data != m->tok_embd.data) {
        w += tensor_bytes(&m->output);
    }
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        const struct pd_layer *L = &m->layers[il];
        const struct pd_weight *t[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo,
                                       &L->bq, &L->bk, &L->bv, &L->q_norm, &L->k_norm,
                                       &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            w += tensor_bytes(t[i]);
        }
    }
    return w;
}

/* Bytes one decode token reads: every matrix and vector once, one embedding row (the whole
 * table when it is also the output). */
static uint64_t plan_token_weights(const struct pd_model *m)
{
    uint64_t w = plan_weights(m) - tensor_bytes(&m->tok_embd);
    if (m->output.data == m->tok_embd.data) {
        w += m->tok_embd.rows * m->tok_embd.row_bytes;
    } else {
        w += m->tok_embd.row_bytes;
    }
    return w;
}

static void plan_sizes(const struct pd_model *m, uint32_t n_ctx, uint64_t *kv, uint64_t *act,
                       uint64_t *cap)
{
    const struct pd_hparams *hp = &m->hp;
    uint64_t L = hp->n_layer, H = hp->n_head;
    uint64_t dim_k = (uint64_t)hp->n_head_kv * hp->head_dim;
    uint64_t dim_v = (uint64_t)hp->n_head_kv * hp->head_dim_v;
    uint64_t n_part = (n_ctx + PLAN_PART - 1) / PLAN_PART;
    uint64_t wide = max_u64(max_u64(hp->n_embd, hp->n_ff), H * hp->head_dim_v);
    *kv = padded(L * n_ctx * (dim_k + dim_v) * 2) * 1 + padded(L * n_ctx * 4);
    *act = padded(hp->n_embd * 4) * 2 + padded(wide * 4) * 2 + padded(H * hp->head_dim * 4) +
           padded(dim_k * 4) + padded(dim_v * 4) + padded(H * hp->head_dim_v * 4) +
           padded((uint64_t)hp->n_ff * 4) * 3 + padded(wide * 4 + 512) +
           padded((uint64_t)hp->n_vocab * 4) + padded(H * n_part * hp->head_dim_v * 4) +
           padded(H * n_part * 4) + padded(H * n_part * 8) + padded(L * H * n_part * 4) +
           (1u << 20) /* probe scratch, parameters, pinned mirrors */;
    *cap = padded(L * H * n_ctx * 4) + padded(L * n_ctx * 4) + padded(L * 64 * 8) +
           padded(L * max_u64(n_ctx, 1024) * 4);
}

void pd_gpu_plan_make(const struct pd_model *m, uint32_t n_ctx, uint64_t device_free,
                      uint64_t fixed_bytes, uint64_t margin_bytes, struct pd_gpu_plan *out)
{
    memset(out, 0, sizeof *out);
    out->n_ctx = n_ctx;
    out->weights = plan_weights(m);
    plan_sizes(m, n_ctx, &out->kv, &out->activations, &out->capture);
    out->fixed = fixed_bytes + margin_bytes;
    out->total = out->weights + out->kv + out->activations + out->capture + out->fixed;
    out->device_free = device_free;
    out->fits = out->total <= device_free;
    uint64_t kv1, act1, cap1, kv2, act2, cap2;
    plan_sizes(m, 1024, &kv1, &act1, &cap1);
    plan_sizes(m, 2048, &kv2, &act2, &cap2);
    out->per_slot = ((kv2 + cap2) - (kv1 + cap1)) / 1024;
    /* the largest context that fits: total grows monotonically with n_ctx */
    uint64_t lo = 0, hi = 1u << 22;
    while (lo < hi) {
        uint64_t mid = (lo + hi + 1) / 2;
        uint64_t kv, act, cap;
        plan_sizes(m, (uint32_t)mid, &kv, &act, &cap);
        if (out->weights + kv + act + cap + out->fixed <= device_free) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    out->n_ctx_max = (uint32_t)lo;
    const struct pd_hparams *hp = &m->hp;
    out->token_bytes_weights = plan_token_weights(m);
    out->token_bytes_per_slot = (uint64_t)hp->n_layer * hp->n_head_kv *
                                (hp->head_dim + hp->head_dim_v) * 2;
}
