/* backend.h - the device engine behind a pd_ctx: a whole forward pass (every token of an
 * eval call) run on another device, keeping everything a context promises.
 *
 * The CPU path in forward.c is the reference and needs no backend. A backend (today the
 * CUDA one, engine/backend_cuda.c, docs/gpu.md) runs embeddings, every layer, the KV
 * cache, attention, the probes and attention capture on its device. It keeps the
 * context's struct pd_kvcache as a positions-only mirror (kvcache.h) in the same view
 * order, hears every eviction, truncation and clear through the cache's listener, feeds
 * capture.c's state directly (blobs, step mass, cumulative attention, full rows), hands the
 * policy observer the rows it asked for, and honours hide, cancel and logits callbacks.
 * Results equal the CPU's up to summation order (docs/accuracy.md, docs/gpu.md).
 *
 * Ownership: a backend is heap-allocated by its constructor and freed with
 * pd_backend_close; it borrows the model and the context's KV mirror, which must outlive
 * it. Thread-safety: one owner thread (the one driving the context). */
#ifndef PD_BACKEND_H
#define PD_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "trace.h"
#include "model.h"

enum pd_backend_kind {
    PD_BACKEND_CPU,
    PD_BACKEND_CUDA,
    PD_BACKEND_AUTO,  /* cuda when a CUDA device is present, else cpu */
    PD_BACKEND_KIND_COUNT
};

/* "cpu" / "cuda" / "auto". */
const char *pd_backend_name(enum pd_backend_kind k);
/* Parses "cpu", "cuda", "auto"; PD_BACKEND_KIND_COUNT if unknown. */
enum pd_backend_kind pd_backend_parse(const char *s);

/* Memory plan of the device engine for one model and context size (computed from the
 * GGUF's real tensor sizes before anything is allocated). */
struct pd_gpu_plan {
    uint32_t n_ctx;          /* KV slots per layer planned */
    uint64_t weights;        /* bytes of every tensor the engine uploads (256-byte padded) */
    uint64_t kv;             /* K and V f16 rows plus slot positions */
    uint64_t activations;    /* decode activations, attention and probe scratch, logits */
    uint64_t capture;        /* attention weights and capture outputs (summary level) */
    uint64_t fixed;          /* runtime context, cuBLAS workspace and the safety margin */
    uint64_t total;
    uint64_t device_free;    /* free device memory the plan was checked against */
    uint64_t per_slot;       /* bytes one more KV slot per layer costs (kv + capture) */
    uint32_t n_ctx_max;      /* largest context that fits (0: not even the weights fit) */
    bool fits;
    uint64_t token_bytes_weights; /* bytes of weights one decode token reads */
    uint64_t token_bytes_per_slot;/* plus this much per cached slot (K and V, all layers) */
};

/* Computes the plan of m at n_ctx slots against device_free bytes; fixed_bytes is the
 * runtime's own overhead (context, workspaces) and margin_bytes the headroom to keep.
 * Pure; fills *out (fits false when total > device_free, with n_ctx_max the largest
 * context that would fit). */
void pd_gpu_plan_make(const struct pd_model *m, uint32_t n_ctx, uint64_t device_free,
                      uint64_t fixed_bytes, uint64_t margin_bytes, struct pd_gpu_plan *out);

/* What a running device backend reports (ponder info / bench). */
struct pd_backend_info {
    char device[256];
    char provider[16];       /* "cuda" or "emulator" */
    int cc_major, cc_minor;
    double bandwidth;        /* bytes/s from a device copy kernel (0 until measured) */
    struct pd_gpu_plan plan;
    double gemm_flops;       /* f16 GemmEx FLOP/s on the model's shapes (0: not measured) */
    uint64_t kernels_per_token; /* nodes of the last decode graph (0 before one ran) */
    uint64_t prefill_tokens; /* tokens evaluated as prefill chunks so far */
    uint64_t graphs;         /* decode graphs instantiated so far */
    uint64_t compactions;    /* KV layer compactions so far */
};

struct pd_ctx;
struct pd_ctx_params;
struct pd_kvcache;
struct pd_backend;

struct pd_backend_ops {
    const char *name;
    /* pd_ctx_eval on the device: tokens[0..n) at positions c->n_past.., already validated
     * (ids in range, room in the cache). Same contract as pd_ctx_eval (forward.h). */
    enum pd_status (*eval)(struct pd_backend *b, struct pd_ctx *c, const int32_t *tokens,
                           size_t n, void (*logits_fn)(void *ud, size_t i, int64_t pos,
                                                       const float *logits),
                           void *ud, struct pd_err *err);
    /* Makes c->logits hold the last evaluated token's logits (downloads if needed). */
    enum pd_status (*logits)(struct pd_backend *b, struct pd_ctx *c, struct pd_err *err);
    /* The argmax of the last evaluated token's logits (lowest id on ties), or -1. */
    int32_t (*argmax)(struct pd_backend *b);
    /* pd_probe_fill of the last evaluated token's distribution for id, k alternatives. */
    enum pd_status (*probe)(struct pd_backend *b, struct pd_ctx *c, int32_t id, size_t k,
                            struct pd_token_rec *rec, struct pd_err *err);
    /* Device, plan and counters; measures the bandwidth on the first call. */
    void (*info)(struct pd_backend *b, struct pd_backend_info *out);
    void (*destroy)(struct pd_backend *b);
};

struct pd_backend {
    const struct pd_backend_ops *ops; /* borrowed: static table */
};

/* True when a CUDA device can be used (a CUDA build and a device; the emulator does not
 * count): what --backend auto asks. */
bool pd_backend_cuda_available(void);

/* Opens the CUDA engine for m with the context parameters p (n_ctx resolved), uploading
 * the weights, and attaches to the mirror cache kv (installs its listener). Runs the
 * kernels on the CPU emulator instead of a device when p->cuda_emulate is set or the
 * environment has PONDER_CUDA_EMULATE=1. Errors: PD_EUNSUPPORTED (message says why: no
 * CUDA build, no device, an unsupported shape or KV type), PD_ENOMEM when the plan does
 * not fit (the message names the largest context that would), PD_ECUDA on a device error. */
enum pd_status pd_backend_cuda_open(const struct pd_model *m, const struct pd_ctx_params *p,
                                    struct pd_kvcache *kv, struct pd_backend **out,
                                    struct pd_err *err);

/* The device and memory plan the CUDA engine would use for m with parameters p (the same
 * provider choice, checks and plan as pd_backend_cuda_open), without uploading anything;
 * measures the device bandwidth and the f16 GEMM throughput on m's shapes when measure is
 * set. *out is filled even when the plan does not fit (plan.fits false). Errors as
 * pd_backend_cuda_open's, except that a plan that does not fit is not one. */
enum pd_status pd_backend_cuda_info(const struct pd_model *m, const struct pd_ctx_params *p,
                                    bool measure, struct pd_backend_info *out,
                                    struct pd_err *err);

/* Frees *b (NULL accepted) and sets it to NULL. */
void pd_backend_close(struct pd_backend **b);

#endif
