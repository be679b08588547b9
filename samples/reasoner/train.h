/* train.h - the reasoner's trainer: a llama-architecture transformer with its forward and
 * backward pass on the CPU, AdamW with a cosine schedule, checkpoints, and GGUF output.
 *
 * DESIGN
 * Model.  The llama layout ponder and llama.cpp read (engine/model.h): token embedding
 *   (tied with the output), per layer RMSNorm, q/k/v/o projections with RoPE "normal"
 *   (adjacent pairs) and grouped-query attention, RMSNorm, SwiGLU FFN; a final RMSNorm.
 *   Weights live in one flat float array in tensor-table order; gradients and the two
 *   AdamW moments are arrays of the same shape. Matrices are [rows][cols] with cols
 *   contiguous, as GGUF stores them (ne[0] = cols).
 * Numerics.  The forward pass follows ponder's engine/forward.c step by step (RMSNorm sums
 *   squares in double and rounds the mean to float; RoPE angles by repeated float
 *   multiplication; softmax with float exponentials summed in double; SiLU as
 *   g / (1 + exp(-g))), so the trainer's log-probabilities equal `ponder score` on the same
 *   tokens to about 1e-6 per token (f32 weights, f32 KV cache).
 * Batches.  A batch is a list of sequences packed back to back (no padding); matrix
 *   products run over all tokens at once, attention per sequence, each sequence starting
 *   at position 0.
 * Threads and determinism.  Matrix products (gemm.h) and the per-token, per-head and
 *   per-parameter loops split work so that every output element is computed by one thread
 *   in a fixed order; sums over tokens (norm gains, loss, gradient norm) are reduced in a
 *   fixed order on one thread or in fixed-size chunks. A seed therefore reproduces the loss
 *   curve bit for bit, whatever the thread count or timing.
 * Ownership: struct tr_model owns its arrays; struct tr_run owns its pool and buffers and
 *   borrows the model (which must outlive it).
 * Thread-safety: one thread drives a run; it uses its own pool internally. */
#ifndef TR_TRAIN_H
#define TR_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

struct pd_gguf_writer;
struct tr_pool;

struct tr_config {
    uint32_t n_vocab;
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t n_ff;
    uint32_t n_ctx;    /* longest sequence (the GGUF context_length) */
    float norm_eps;
    float rope_base;
};

/* Checks the shape rules (head size even, heads divisible, sizes bounded). */
enum pd_status tr_config_check(const struct tr_config *c, struct pd_err *err);

/* One tensor of the flat weight array. */
struct tr_tensor {
    char name[48];     /* GGUF name: "token_embd.weight", "blk.0.attn_q.weight", ... */
    size_t off;        /* first float in the flat arrays */
    uint32_t rows;     /* 1 for vectors */
    uint32_t cols;
    bool decay;        /* AdamW weight decay applies (matrices, not norm gains) */
    bool is_norm;
};

struct tr_layer_ptr {
    float *attn_norm; /* [E] */
    float *wq;        /* [H*D][E] */
    float *wk;        /* [Hkv*D][E] */
    float *wv;        /* [Hkv*D][E] */
    float *wo;        /* [E][H*D] */
    float *ffn_norm;  /* [E] */
    float *w_gate;    /* [F][E] */
    float *w_up;      /* [F][E] */
    float *w_down;    /* [E][F] */
};

/* Typed views into one flat array (weights, or gradients, or a moment). */
struct tr_view {
    float *tok_embd;           /* [V][E], also the output matrix */
    struct tr_layer_ptr *layer;/* owned by the model [n_layer] */
    float *output_norm;        /* [E] */
};

struct tr_model {
    struct tr_config cfg;
    struct tr_tensor *tensors; /* owned [n_tensors] */
    size_t n_tensors;
    size_t n_params;
    float *w;                  /* owned [n_params] weights */
    float *g;                  /* owned [n_params] gradients of the last backward */
    float *m, *v;              /* owned [n_params] AdamW moments */
    struct tr_view W, G;
    uint64_t step;             /* optimizer steps taken */
};

/* Allocates a model for cfg with weights drawn from seed: matrices N(0, 0.02), the
 * residual outputs (attn_output, ffn_down) N(0, 0.02 / sqrt(2 n_layer)), norm gains 1,
 * moments 0. */
enum pd_status tr_model_new(const struct tr_config *cfg, uint64_t seed, struct tr_model **out,
                            struct pd_err *err);
void tr_model_free(struct tr_model **m);

/* Loads an f32 llama GGUF with a tied output (no output.weight): the trainer's own
 * output. Moments start at 0 and step at 0. PD_EFORMAT / PD_EUNSUPPORTED name the key or
 * tensor. */
enum pd_status tr_model_load_gguf(const char *path, struct tr_model **out, struct pd_err *err);

/* A batch: sequences packed back to back. mask[i] != 0 marks ids[i] as a target predicted
 * from the tokens before it in its sequence (mask of a sequence's first token is ignored). */
struct tr_batch {
    const int32_t *ids;      /* borrowed [n_tok] */
    const uint8_t *mask;     /* borrowed [n_tok]; NULL: every token but the first of each
                              * sequence */
    size_t n_tok;
    const size_t *seq_len;   /* borrowed [n_seq] */
    size_t n_seq;
};

/* Buffers for batches of up to n_tok_max tokens and sequences of up to cfg.n_ctx. */
struct tr_run;

enum pd_status tr_run_open(struct tr_model *m, size_t n_tok_max, int n_threads,
                           struct tr_run **out, struct pd_err *err);
void tr_run_close(struct tr_run **r);

struct tr_loss {
    double sum;        /* sum of -ln p(target) over the targets, nats */
    size_t n;          /* targets */
    size_t n_miss;     /* targets that are not the most likely token (greedy would differ) */
    size_t n_seq_exact;/* sequences without a miss: greedy decoding reproduces their targets */
};

/* Forward pass: loss over the batch's targets. lp (may be NULL) receives ln p(ids[i] |
 * ids before it) for every token of the batch (NAN for each sequence's first token).
 * PD_EINVAL for a batch too large, an id out of range, or a sequence longer than n_ctx. */
enum pd_status tr_forward(struct tr_run *r, const struct tr_batch *b, struct tr_loss *loss,
                          double *lp, struct pd_err *err);

/* Backward pass of the last forward: model->g = d(mean loss)/d(weights). */
void tr_backward(struct tr_run *r);

struct tr_adamw {
    float lr;
    float beta1, beta2, eps;
    float weight_decay;
    float clip;        /* global gradient norm limit (0: none) */
};

/* One AdamW step on model->g (clipped first): t = ++step,
 *   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
 *   w = w (1 - lr wd) - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * (wd only for tensors with decay). Returns the gradient norm before clipping. */
double tr_adamw_step(struct tr_run *r, const struct tr_adamw *o);

/* Learning rate at step t (0-based) of n: linear warmup over `warmup` steps to lr_max, then
 * cosine decay to lr_min at step n. */
float tr_lr_at(uint64_t t, uint64_t n, uint64_t warmup, float lr_max, float lr_min);

/* Checkpoint: config, step, weights and moments, written atomically (temp + rename). */
enum pd_status tr_checkpoint_save(const struct tr_model *m, const char *path,
                                  struct pd_err *err);
enum pd_status tr_checkpoint_load(const char *path, struct tr_model **out, struct pd_err *err);

enum tr_wtype {
    TR_WTYPE_F32,
    TR_WTYPE_Q8_0,
    TR_WTYPE_COUNT
};

/* Adds the model's llama.* metadata and tensors (matrices as wtype, norms f32) to w. The
 * caller adds the tokenizer metadata and general.* keys. */
enum pd_status tr_model_write_tensors(const struct tr_model *m, enum tr_wtype wtype,
                                      struct pd_gguf_writer *w, struct pd_err *err);

#endif
