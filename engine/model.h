/* model.h - architectures, hyperparameters and weight binding for GGUF models.
 *
 * pd_model_open opens a GGUF file (gguf.h), reads the architecture's hyperparameters from
 * its metadata and binds every tensor the forward pass needs, checking names, shapes and
 * types. Weights stay in the memory map: struct pd_weight points into it.
 *
 * Supported architectures (one row each in the table in model.c):
 *   llama  - RMSNorm, RoPE "normal" (adjacent pairs), SwiGLU, GQA
 *   qwen2  - as llama with q/k/v biases and RoPE "neox" (halves)
 *   qwen3  - as qwen2 without biases, plus per-head RMSNorm on q and k, and an explicit
 *            key/value head size that may differ from n_embd / n_head
 *
 * Packing: the CPU level's kernels may read a weight type faster in a layout of their own
 * (simd.h, pack). The first CPU context of a model (pd_model_pack_cpu) writes that copy of
 * each weight matrix once, and the file's pages of a copied matrix are handed back to the
 * system (read again from the file if anything touches them). The file's layout stays
 * where it was for everything else: the embedding rows, a device backend's upload.
 *
 * Ownership: struct pd_model owns its struct pd_gguf (and so the mapping) and the packed
 * copies; weight data pointers are borrowed from the mapping and valid until
 * pd_model_close.
 * Thread-safety: read-only after open, except that pd_model_pack_cpu fills the packed
 * copies once under the model's lock (calls from several threads are safe; contexts
 * already running never read them). */
#ifndef PD_MODEL_H
#define PD_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"
#include "dtype.h"
#include "gguf.h"

enum pd_arch {
    PD_ARCH_LLAMA,
    PD_ARCH_QWEN2,
    PD_ARCH_QWEN3,
    PD_ARCH_COUNT
};

enum pd_rope_type {
    PD_ROPE_NORM, /* rotate (x[2i], x[2i+1]) */
    PD_ROPE_NEOX, /* rotate (x[i], x[i + n_rot/2]) */
};

const char *pd_arch_name(enum pd_arch a);

struct pd_hparams {
    enum pd_arch arch;
    uint32_t n_vocab;
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t n_ff;
    uint32_t head_dim;      /* key/query head size */
    uint32_t head_dim_v;    /* value head size */
    uint32_t n_rot;         /* rotated dims per head (<= head_dim) */
    uint32_t n_ctx_train;
    float norm_eps;
    float rope_base;
    float rope_freq_scale; /* 1 / linear scaling factor; 1 when unscaled */
    enum pd_rope_type rope_type;
    bool has_qkv_bias;
    bool has_qk_norm;
    bool tied_output;       /* output.weight absent: logits use token_embd */
};

/* A 2-D weight matrix [rows][cols] in the file's layout (cols = GGUF ne[0], contiguous),
 * or a 1-D vector (rows = 1). */
struct pd_weight {
    enum pd_dtype type;
    uint64_t cols;
    uint64_t rows;
    uint64_t row_bytes;
    const uint8_t *data; /* borrowed from the mapping */
    const uint8_t *packed; /* data in the CPU level's layout, in the model's packed
                            * mapping (pd_model_pack_cpu), or NULL */
};

struct pd_layer {
    struct pd_weight attn_norm; /* [n_embd] f32 */
    struct pd_weight wq;        /* [n_head*head_dim][n_embd] */
    struct pd_weight wk;        /* [n_head_kv*head_dim][n_embd] */
    struct pd_weight wv;        /* [n_head_kv*head_dim_v][n_embd] */
    struct pd_weight wo;        /* [n_embd][n_head*head_dim_v] */
    struct pd_weight bq, bk, bv;/* qwen2 biases, f32 (rows = 1); data NULL when absent */
    struct pd_weight q_norm;    /* qwen3 [head_dim] f32; data NULL when absent */
    struct pd_weight k_norm;
    struct pd_weight ffn_norm;  /* [n_embd] */
    struct pd_weight w_gate;    /* [n_ff][n_embd] */
    struct pd_weight w_up;      /* [n_ff][n_embd] */
    struct pd_weight w_down;    /* [n_embd][n_ff] */
};

struct pd_model_pack;
struct pd_pool;

struct pd_model {
    struct pd_gguf *gguf;       /* owned */
    struct pd_hparams hp;
    struct pd_weight tok_embd;  /* [n_vocab][n_embd] */
    struct pd_weight output_norm;
    struct pd_weight output;    /* [n_vocab][n_embd]; == tok_embd when tied */
    struct pd_weight rope_freqs;/* [n_rot/2] f32 divisors of the rotation frequencies
                                 * (Llama 3.1-style long-context scaling); data NULL when
                                 * the file has none */
    struct pd_layer *layers;    /* owned [n_layer] */
    uint64_t n_params;
    uint64_t weight_bytes;
    struct pd_model_pack *pack; /* owned: the packed copies (pd_model_pack_cpu) */
};

/* Opens path, validates it and binds the weights. On failure *out is NULL and err says
 * "<path>: <field>: <problem>". */
enum pd_status pd_model_open(const char *path, struct pd_model **out, struct pd_err *err);

/* Same for an already-open GGUF, whose ownership passes to the model (even on failure). */
enum pd_status pd_model_open_gguf_take(struct pd_gguf *g, struct pd_model **out,
                                       struct pd_err *err);

/* Frees; accepts NULL; sets *m to NULL. */
void pd_model_close(struct pd_model **m);

/* Writes the packed copies of the weight matrices whose type the CPU level packs
 * (pd_simd_ops()->pack), once per model, on pool's threads; later calls return at once.
 * PONDER_PACK=0 in the environment keeps the file's layout (for comparing the two).
 * Fails only for want of memory, leaving the model as it was. */
enum pd_status pd_model_pack_cpu(const struct pd_model *m, struct pd_pool *pool,
                                 struct pd_err *err);

/* The weight matrices a CPU context multiplies by: pd_model_n_matmul of them, number 0
 * the output, then each layer's q, k, v, output, gate, up and down (i < the count). */
size_t pd_model_n_matmul(const struct pd_model *m);
const struct pd_weight *pd_model_matmul(const struct pd_model *m, size_t i);

/* Whether pd_model_pack_cpu packs weight matrices of type t in this process (the CPU
 * level has a layout for it and PONDER_PACK is not 0). */
bool pd_model_packs_type(enum pd_dtype t);

/* Converts row r of w (r < rows) to floats in out[cols]. */
void pd_weight_row_f32(const struct pd_weight *w, uint64_t r, float *out);

#endif
