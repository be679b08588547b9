/* forward.h - the transformer forward pass on CPU: an evaluation context per sequence.
 *
 * A pd_ctx holds everything one sequence needs besides the weights: the KV cache, the
 * scratch buffers (allocated once, sized for n_batch tokens), the thread pool, and the
 * position counter. pd_ctx_eval runs tokens through the model in batches of at most
 * n_batch, appending their K/V to the cache; token i of a call gets position
 * n_past + i. The attention of each token is over the slots retained in each layer whose
 * position is <= its own (causal), so evicted slots are simply absent.
 *
 * DESIGN: per layer, the batch's activations are converted once to the weight type's
 * dot format and every weight row is dotted with every token's row (rows split across the
 * pool's threads). Attention runs per (token, head) in parallel; the probabilities are
 * written to a [n_batch][n_head][n_ctx] buffer that the attention hook reads after each
 * layer, on the calling thread, in token order.
 *
 * Ownership: the context borrows the model (which must outlive it) and owns the rest.
 * Thread-safety: one thread drives a context; it uses its own pool internally. */
#ifndef PD_FORWARD_H
#define PD_FORWARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "status.h"
#include "kvcache.h"
#include "model.h"

struct pd_ctx_params {
    int n_threads;          /* 0 = number of CPUs */
    uint32_t n_ctx;         /* KV slots per layer (0 = min(4096, n_ctx_train)) */
    uint32_t n_batch;       /* tokens per forward batch (0 = 64) */
    enum pd_kv_type kv_type;/* default f16 */
    enum pd_backend_kind backend; /* cpu (default), cuda (the device engine, backend.h:
                                   * needs a CUDA build and a device, else pd_ctx_open
                                   * fails), or auto (cuda when a device is present) */
    bool cuda_emulate;      /* cuda on the CPU emulator (tests; PONDER_CUDA_EMULATE=1) */
    /* optional: weight upload progress of a device backend (bytes done of total) */
    void (*progress)(void *ud, uint64_t done, uint64_t total);
    void *progress_ud;
};

struct pd_ctx_params pd_ctx_default_params(void);

/* Called after each layer's attention for each token of a batch, in token order:
 * probs holds n_head rows with a stride of params.n_ctx floats (row h starts at
 * probs + h * n_ctx); entries 0..n_slots-1 of a row are valid, sum to 1 over the slots
 * the token could see, and are 0 for slots after the token's position; slot_pos[n_slots]
 * the positions. */
typedef void (*pd_attn_hook_fn)(void *ud, uint32_t layer, int64_t pos, const float *probs,
                                uint32_t n_head, uint32_t n_slots, const int64_t *slot_pos);

struct pd_pool;

/* The batch form of a pd_attn_hook_fn: one call per layer for the batch's n_tok tokens
 * (positions pos0 + t), token t's rows at probs + t * tok_stride, the rest as for the
 * per-token hook. It must have the effect of the per-token hook called for each token in
 * order; it may run per-token work on `pool` (idle during the call). */
typedef void (*pd_attn_batch_fn)(void *ud, struct pd_pool *pool, uint32_t layer,
                                 int64_t pos0, uint32_t n_tok, const float *probs,
                                 size_t tok_stride, uint32_t n_head, uint32_t n_slots,
                                 const int64_t *slot_pos);

/* Called with the logits of token i of an eval call (when requested). */
typedef void (*pd_logits_fn)(void *ud, size_t i, int64_t pos, const float *logits);

struct pd_ctx {
    const struct pd_model *model;  /* borrowed */
    struct pd_ctx_params params;
    struct pd_pool *pool;          /* owned */
    struct pd_kvcache *kv;         /* owned */
    struct pd_backend *backend;    /* owned; NULL = the CPU does the weight products */
    int64_t n_past;                /* position of the next token */
    pd_attn_hook_fn attn_hook;     /* optional */
    void *attn_hook_ud;
    /* optional: the batch form of the hook attn_batch_of; the CPU pass calls it instead
     * of attn_hook while attn_hook == attn_batch_of (so code that swaps or clears
     * attn_hook needs not know of it) */
    pd_attn_batch_fn attn_batch;
    pd_attn_hook_fn attn_batch_of;
    const atomic_bool *cancel;     /* optional, borrowed: checked between layers */
    const uint8_t *const *hide;    /* optional, borrowed: hide[il][s] != 0 excludes slot s
                                    * of layer il from attention (shadow divergence) */
    /* scratch, allocated once */
    float *x;        /* [n_batch][n_embd] residual stream */
    float *xn;       /* [n_batch][max(n_embd, n_ff, o_dim)] normalised / matmul input */
    float *q;        /* [n_batch][n_head*head_dim] */
    float *k;        /* [n_batch][n_head_kv*head_dim] */
    float *v;        /* [n_batch][n_head_kv*head_dim_v] */
    float *att;      /* [n_batch][n_head*head_dim_v] */
    float *gate;     /* [n_batch][n_ff] */
    float *up;       /* [n_batch][n_ff] */
    float *out;      /* [n_batch][max(n_embd, n_vocab)] */
    void *xq;        /* [n_batch][row bytes of the widest input in any dot format] */
    size_t xq_row_bytes;
    float *probs;    /* [n_batch][n_head][n_ctx] */
    float *rope;     /* [n_batch][n_rot]: cos, sin of each rotation pair of the batch's
                      * tokens (computed in layer 0, read by every layer) */
    float *logits;   /* [n_vocab] logits of the last evaluated token (with a device
                      * backend and logits_lazy: valid after pd_ctx_logits) */
    bool has_logits;
    bool logits_lazy;/* set by callers that use pd_ctx_logits/_sample/_probe: a device
                      * backend then leaves the logits on the device */
};

/* Creates a context for m. On failure *out is NULL. With a device backend the context's
 * KV cache is a positions-only mirror (kvcache.h) and the forward pass runs on the device
 * (backend.h); everything else behaves as on the CPU. */
enum pd_status pd_ctx_open(const struct pd_model *m, const struct pd_ctx_params *p,
                           struct pd_ctx **out, struct pd_err *err);
void pd_ctx_close(struct pd_ctx **c);

/* Empties the cache and resets the position to 0. */
void pd_ctx_reset(struct pd_ctx *c);

/* Evaluates tokens[0..n) at positions n_past.. . When logits_fn is non-NULL it receives the
 * logits of every token; the last token's logits are always left in c->logits.
 * Errors: PD_EINVAL for an out-of-range token id (message names it) or a full cache;
 * PD_ECANCELLED when *c->cancel became true: the tokens of the interrupted batch are
 * removed from the cache again, so the context stays consistent (earlier batches of the
 * call stay evaluated and n_past says how far it got). */
enum pd_status pd_ctx_eval(struct pd_ctx *c, const int32_t *tokens, size_t n,
                           pd_logits_fn logits_fn, void *ud, struct pd_err *err);

/* Free KV slots left in the fullest layer. */
uint32_t pd_ctx_kv_free(const struct pd_ctx *c);

/* The last evaluated token's logits (c->logits), fetched from the device backend when they
 * were left there; NULL before any eval or on a device error (logged). */
const float *pd_ctx_logits(struct pd_ctx *c);

/* The argmax of the last evaluated token's logits (lowest id on ties); -1 before any eval
 * or on a device error. */
int32_t pd_ctx_argmax(struct pd_ctx *c);

/* pd_probe_fill of the last evaluated token's distribution (logprob of id, entropy, top-k)
 * without fetching the logits when a device backend computed the probe. */
enum pd_status pd_ctx_probe(struct pd_ctx *c, int32_t id, size_t k, struct pd_token_rec *rec,
                            struct pd_err *err);

struct pd_sampler;
/* pd_sampler_sample over the last evaluated token's logits; a greedy sampler takes the
 * device's argmax without fetching them. -1 on a device error. */
int32_t pd_ctx_sample(struct pd_ctx *c, struct pd_sampler *s);

/* The CPU reference's RMSNorm and RoPE, exposed so the GPU kernels' shared helpers can be
 * checked bit-exact against them (tests/gpu/test_gpu_host.c).
 * pd_rmsnorm: out[i] = x[i] * (1/sqrtf(mean(x^2) + eps)) * w[i], squares in float summed in
 * double; out may equal x. pd_rope_head: rotates the first n_rot dims of one head x for
 * position pos with the model's pairing and frequencies (freq_div: rope_freqs or NULL).
 * Pure, thread-safe. */
void pd_rmsnorm(float *out, const float *x, const float *w, uint32_t n, float eps);
void pd_rope_head(float *x, uint32_t n_rot, int64_t pos, const struct pd_hparams *hp,
                  const float *freq_div);

#endif
