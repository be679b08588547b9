/* backend.h - the matrix-product backend a forward pass may hand its weight products to.
 *
 * The CPU path in forward.c is the reference and always available. A backend takes the
 * products of the weight matrices (Y = W X for a batch of activation rows); everything
 * else (norms, RoPE, attention, the KV cache, capture) stays on the CPU, so probes,
 * policies and capture work unchanged. A backend may decline a product (PD_EUNSUPPORTED),
 * and the CPU computes it.
 *
 * Ownership: a backend is heap-allocated by its constructor and freed with
 * pd_backend_close; it keeps device copies of the model's weights and borrows the model,
 * which must outlive it. Thread-safety: one owner thread (the one driving the context). */
#ifndef PD_BACKEND_H
#define PD_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"
#include "model.h"

enum pd_backend_kind {
    PD_BACKEND_CPU,
    PD_BACKEND_CUDA,
    PD_BACKEND_KIND_COUNT
};

/* "cpu" / "cuda". */
const char *pd_backend_name(enum pd_backend_kind k);
/* Parses "cpu", "cuda"; PD_BACKEND_KIND_COUNT if unknown. */
enum pd_backend_kind pd_backend_parse(const char *s);

struct pd_backend;

struct pd_backend_ops {
    const char *name;
    /* y[t][0..rows) = W x[t] for t < n_tok (row strides in floats). */
    enum pd_status (*matmul)(struct pd_backend *b, const struct pd_weight *w, const float *x,
                             size_t x_stride, float *y, size_t y_stride, uint32_t n_tok,
                             struct pd_err *err);
    void (*destroy)(struct pd_backend *b);
};

struct pd_backend {
    const struct pd_backend_ops *ops; /* borrowed: static table */
};

/* Opens a GPU backend for m: PD_EUNSUPPORTED (message says why) when ponder was built
 * without CUDA or no device is present; PD_ECUDA on a device error. */
enum pd_status pd_backend_cuda_open(const struct pd_model *m, struct pd_backend **out,
                                    struct pd_err *err);

/* Frees *b (NULL accepted) and sets it to NULL. */
void pd_backend_close(struct pd_backend **b);

#endif
