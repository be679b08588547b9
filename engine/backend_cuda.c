/* backend_cuda.c - the GPU backend: the model's weight matrices live on the device as f32
 * (dequantised once at open) and every weight product is one cuBLAS SGEMM. The only engine
 * file that calls kernels/. Activations travel host -> device -> host per product; the
 * rest of the forward pass (norms, RoPE, attention over the KV cache, capture, probes)
 * stays on the CPU, so instrumentation and KV policies behave exactly as on the CPU path.
 * Results match the CPU backend within the quantised-activation tolerance: the GPU keeps
 * activations in f32 where the CPU rounds them to the weights' dot format. */
#include "config.h"

#include "backend.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "pd_cuda.h"

struct dev_weight {
    const uint8_t *host; /* borrowed key: the weight's data in the model's mapping */
    float *d;            /* owned device copy, [rows][cols] f32 */
    uint64_t rows, cols;
};

struct cuda_backend {
    struct pd_backend base;
    struct dev_weight *w; /* owned [n_w] */
    size_t n_w;
    size_t last;          /* index of the last hit (products come in a fixed order) */
    float *dx, *dy;       /* device activation buffers */
    size_t cap_x, cap_y;  /* floats */
};

static enum pd_status cuda_fail(struct pd_err *err, const char *what)
{
    return pd_err_set(err, PD_ECUDA, "cuda backend: %s: %s", what, pd_cuda_last_error());
}

static void cuda_destroy(struct pd_backend *b)
{
    struct cuda_backend *cb = (struct cuda_backend *)b;
    for (size_t i = 0; i < cb->n_w; i++) {
        pd_cuda_free(cb->w[i].d);
    }
    free(cb->w);
    pd_cuda_free(cb->dx);
    pd_cuda_free(cb->dy);
    free(cb);
}

static struct dev_weight *find_weight(struct cuda_backend *cb, const struct pd_weight *w)
{
    for (size_t k = 0; k < cb->n_w; k++) {
        size_t i = (cb->last + k) % cb->n_w;
        if (cb->w[i].host == w->data) {
            cb->last = (i + 1) % cb->n_w;
            return &cb->w[i];
        }
    }
    return NULL;
}

static enum pd_status grow(float **d, size_t *cap, size_t need, struct pd_err *err)
{
    if (need <= *cap) {
        return PD_OK;
    }
    pd_cuda_free(*d);
    *d = NULL;
    *cap = 0;
    if (pd_cuda_malloc((void **)d, need * sizeof(float))) {
        return cuda_fail(err, "activation buffer");
    }
    *cap = need;
    return PD_OK;
}

static enum pd_status cuda_matmul(struct pd_backend *b, const struct pd_weight *w,
                                  const float *x, size_t x_stride, float *y, size_t y_stride,
                                  uint32_t n_tok, struct pd_err *err)
{
    struct cuda_backend *cb = (struct cuda_backend *)b;
    struct dev_weight *dw = find_weight(cb, w);
    if (!dw) {
        return pd_err_set(err, PD_EUNSUPPORTED, "cuda backend: weight not on the device");
    }
    enum pd_status st;
    size_t nx = (size_t)(n_tok - 1) * x_stride + (size_t)dw->cols;
    size_t ny = (size_t)n_tok * (size_t)dw->rows;
    if ((st = grow(&cb->dx, &cb->cap_x, nx, err)) || (st = grow(&cb->dy, &cb->cap_y, ny, err))) {
        return st;
    }
    if (pd_cuda_upload(cb->dx, x, nx * sizeof(float))) {
        return cuda_fail(err, "upload");
    }
    if (pd_cuda_gemm_f32(dw->d, cb->dx, cb->dy, (int)dw->rows, (int)dw->cols, (int)n_tok,
                         (int)x_stride, (int)dw->rows)) {
        return cuda_fail(err, "gemm");
    }
    if (y_stride == dw->rows) {
        if (pd_cuda_download(y, cb->dy, ny * sizeof(float))) {
            return cuda_fail(err, "download");
        }
    } else {
        for (uint32_t t = 0; t < n_tok; t++) {
            if (pd_cuda_download(y + (size_t)t * y_stride, cb->dy + (size_t)t * dw->rows,
                                 (size_t)dw->rows * sizeof(float))) {
                return cuda_fail(err, "download");
            }
        }
    }
    return PD_OK;
}

static const struct pd_backend_ops cuda_ops = {"cuda", cuda_matmul, cuda_destroy};

/* Dequantises w to f32 in chunks of rows and uploads it. */
static enum pd_status upload_weight(struct cuda_backend *cb, const struct pd_weight *w,
                                    struct pd_err *err)
{
    if (!w->data || find_weight(cb, w)) {
        return PD_OK; /* absent, or already there (tied output) */
    }
    struct dev_weight *dw = &cb->w[cb->n_w];
    dw->host = w->data;
    dw->rows = w->rows;
    dw->cols = w->cols;
    uint64_t total;
    if (!pd_mul(w->rows, w->cols, &total) || total > (SIZE_MAX / sizeof(float))) {
        return pd_err_set(err, PD_EINVAL, "cuda backend: weight too large");
    }
    if (pd_cuda_malloc((void **)&dw->d, (size_t)total * sizeof(float))) {
        return cuda_fail(err, "weights");
    }
    cb->n_w++;
    uint64_t chunk = w->cols >= (1u << 20) ? 1 : (1u << 20) / w->cols; /* ~4 MiB of floats */
    float *host = pd_malloc_array((size_t)(chunk < w->rows ? chunk : w->rows) * w->cols,
                                  sizeof(float));
    if (!host) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (weight staging)");
    }
    enum pd_status st = PD_OK;
    for (uint64_t r0 = 0; r0 < w->rows && !st; r0 += chunk) {
        uint64_t n = w->rows - r0 < chunk ? w->rows - r0 : chunk;
        for (uint64_t r = 0; r < n; r++) {
            pd_weight_row_f32(w, r0 + r, host + r * w->cols);
        }
        if (pd_cuda_upload(dw->d + r0 * w->cols, host, (size_t)(n * w->cols) * sizeof(float)) ||
            pd_cuda_sync()) {
            st = cuda_fail(err, "weight upload");
        }
    }
    free(host);
    return st;
}

enum pd_status pd_backend_cuda_open(const struct pd_model *m, struct pd_backend **out,
                                    struct pd_err *err)
{
    *out = NULL;
    int n_dev = pd_cuda_device_count();
    if (n_dev <= 0) {
        return pd_err_set(err, PD_EUNSUPPORTED, "cuda backend: no CUDA device");
    }
    if (pd_cuda_init(0)) {
        return cuda_fail(err, "init");
    }
    struct cuda_backend *cb = calloc(1, sizeof *cb);
    size_t cap = (size_t)m->hp.n_layer * 7 + 1;
    if (!cb || !(cb->w = pd_calloc(cap, sizeof *cb->w))) {
        free(cb);
        return pd_err_set(err, PD_ENOMEM, "out of memory (cuda backend)");
    }
    cb->base.ops = &cuda_ops;
    enum pd_status st = PD_OK;
    for (uint32_t il = 0; il < m->hp.n_layer && !st; il++) {
        const struct pd_layer *L = &m->layers[il];
        const struct pd_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo,
                                         &L->w_gate, &L->w_up, &L->w_down};
        for (int k = 0; k < 7 && !st; k++) {
            st = upload_weight(cb, ws[k], err);
        }
    }
    if (!st) {
        st = upload_weight(cb, &m->output, err);
    }
    if (st) {
        cuda_destroy(&cb->base);
        return st;
    }
    char name[128] = "?";
    pd_cuda_device_name(0, name, sizeof name);
    pd_log(PD_LOG_INFO, "cuda backend on %s: %zu weight matrices on the device", name, cb->n_w);
    *out = &cb->base;
    return PD_OK;
}
