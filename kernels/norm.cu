// norm.cu - RMSNorm (K3) and the per-head q/k norm + RoPE + KV store of a decode token (K6).
// Arithmetic as forward.c: squares in float summed in double, mean rounded to float,
// x * (1/sqrtf(mean + eps)) * w; RoPE angles by repeated float multiplication
// (pd_dev_rope_theta) and the rotation without contraction; K/V rounded to f16 (RNE).
#include "pd_kint.h"

namespace PD_KNS {

#define NORM_THREADS 256

__global__ void __launch_bounds__(NORM_THREADS)
    k_rmsnorm(const float *x, size_t x_stride, const float *w, float *out, size_t out_stride,
              int n, float eps)
{
    const float *xr = x + (size_t)blockIdx.x * x_stride;
    float *o = out + (size_t)blockIdx.x * out_stride;
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        s += (double)(xr[i] * xr[i]);
    }
    s = pd_block_sum(s);
    float mean = (float)(s / n);
    float scale = 1.0f / sqrtf(mean + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        o[i] = xr[i] * scale * w[i];
    }
}

int api_rmsnorm(const float *d_x, size_t x_stride, const float *d_w, float *d_out,
                            size_t out_stride, int n, int n_rows, float eps)
{
    if (n_rows <= 0) {
        return 0;
    }
    return pd_kcheck(pd_launch(k_rmsnorm, dim3((unsigned)n_rows), dim3(NORM_THREADS), 0,
                               pd_kstream(), d_x, x_stride, d_w, d_out, out_stride, n, eps),
                     "rmsnorm");
}

#define ROPE_THREADS 128
#define ROPE_HD_MAX 512

// Block (h, t): token t's query head h (in place) for h < n_head, its key/value head
// g = h - n_head (stored) otherwise.
__global__ void __launch_bounds__(ROPE_THREADS) k_rope_store(pd_k_rope r)
{
    PD_SHARED(float, v, ROPE_HD_MAX);
    int h = blockIdx.x, t = blockIdx.y;
    bool is_q = h < r.n_head;
    int g = h - r.n_head;
    int hd = r.hd;
    float *q = r.q + (size_t)t * r.q_stride;
    const float *k = r.k + (size_t)t * r.k_stride;
    const float *vin = r.v + (size_t)t * r.v_stride;
    const float *src = is_q ? q + (size_t)h * hd : k + (size_t)g * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        v[d] = src[d];
    }
    __syncthreads();
    const float *nw = is_q ? r.q_norm : r.k_norm;
    if (nw) {
        double s = 0.0;
        for (int d = threadIdx.x; d < hd; d += blockDim.x) {
            s += (double)(v[d] * v[d]);
        }
        s = pd_block_sum(s);
        float mean = (float)(s / hd);
        float scale = 1.0f / sqrtf(mean + r.eps);
        for (int d = threadIdx.x; d < hd; d += blockDim.x) {
            v[d] = v[d] * scale * nw[d];
        }
        __syncthreads();
    }
    int32_t pos = r.d_par[r.pos_index] + t;
    int half = r.n_rot / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float th = pd_dev_rope_theta(pos, i, r.theta_scale, r.freq_div ? r.freq_div[i] : 0.0f,
                                     r.freq_scale);
        int a = r.neox ? i : 2 * i;
        int b = r.neox ? i + half : 2 * i + 1;
        pd_dev_rope_rotate(&v[a], &v[b], th);
    }
    __syncthreads();
    if (is_q) {
        for (int d = threadIdx.x; d < hd; d += blockDim.x) {
            q[(size_t)h * hd + d] = v[d];
        }
        return;
    }
    int32_t slot = r.d_par[r.slot_index] + t;
    size_t dim_k = (size_t)r.n_head_kv * hd, dim_v = (size_t)r.n_head_kv * r.hd_v;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        r.k_cache[(size_t)slot * dim_k + (size_t)g * hd + d] = pd_dev_f32_to_f16(v[d]);
    }
    for (int d = threadIdx.x; d < r.hd_v; d += blockDim.x) {
        r.v_cache[(size_t)slot * dim_v + (size_t)g * r.hd_v + d] =
            pd_dev_f32_to_f16(vin[(size_t)g * r.hd_v + d]);
    }
    if (g == 0 && threadIdx.x == 0) {
        r.pos_cache[slot] = pos;
    }
}

int api_rope_store(const struct pd_k_rope *r)
{
    if (r->hd > ROPE_HD_MAX || r->hd_v > ROPE_HD_MAX || r->n_rot > r->hd || (r->n_rot & 1)) {
        return pd_kfail(cudaErrorInvalidValue, "rope_store: head size");
    }
    unsigned n_tok = r->n_tok > 1 ? (unsigned)r->n_tok : 1u;
    return pd_kcheck(pd_launch(k_rope_store, dim3((unsigned)(r->n_head + r->n_head_kv), n_tok),
                               dim3(ROPE_THREADS), 0, pd_kstream(), *r),
                     "rope_store");
}

} // namespace PD_KNS
