// quant.cu - conversions: activation rows to the CPU engine's dot formats (byte-identical
// to the CPU's from_f32), embedding rows, f16 operands for the prefill GEMMs, and the
// small elementwise kernels (SwiGLU, adds).
#include "pd_kint.h"

namespace PD_KNS {

// ---- activation quantisers ----------------------------------------------------------------

// F32 / F16 / BF16: one thread per element.
__global__ void k_quant_float(int type, const float *x, size_t x_stride, uint8_t *q,
                              size_t q_stride, int n)
{
    int row = blockIdx.y;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    float v = x[(size_t)row * x_stride + i];
    uint8_t *out = q + (size_t)row * q_stride;
    if (type == PD_K_F32) {
        ((float *)out)[i] = v;
    } else if (type == PD_K_F16) {
        ((uint16_t *)out)[i] = pd_dev_f32_to_f16(v);
    } else {
        ((uint16_t *)out)[i] = pd_dev_f32_to_bf16(v);
    }
}

// q8_0: one warp per 32-block, one lane per value.
__global__ void k_quant_q8_0(const float *x, size_t x_stride, uint8_t *q, size_t q_stride,
                             int n_blocks)
{
    int row = blockIdx.y;
    int lane = threadIdx.x % PD_WARP;
    int b = blockIdx.x * (blockDim.x / PD_WARP) + threadIdx.x / PD_WARP;
    bool live = b < n_blocks;
    float v = live ? x[(size_t)row * x_stride + (size_t)b * PD_DEV_QK + lane] : 0.0f;
    float amax = fmaxf(0.0f, fabsf(v)); // a NaN lane counts as 0, as in the CPU's scan
    for (int off = PD_WARP / 2; off > 0; off /= 2) {
        amax = fmaxf(amax, __shfl_xor_sync(PD_FULL_MASK, amax, off));
    }
    if (live) {
        uint8_t *blk = q + (size_t)row * q_stride + (size_t)b * PD_DEV_Q8_0_BYTES;
        uint16_t d;
        float id = pd_dev_q8_0_scale(amax, &d);
        blk[2 + lane] = (uint8_t)pd_dev_q8_0_code(v, id);
        if (lane == 0) {
            blk[0] = (uint8_t)(d & 0xFF);
            blk[1] = (uint8_t)(d >> 8);
        }
    }
}

// q8_K: one warp per 256-block; lane l holds values 8l..8l+7. The block's max is the
// signed value of largest magnitude that comes first in index order (the CPU's strict >
// scan), so the reduction breaks ties in |x| by the lower index.
__global__ void k_quant_q8_k(const float *x, size_t x_stride, uint8_t *q, size_t q_stride,
                             int n_blocks)
{
    int row = blockIdx.y;
    int lane = threadIdx.x % PD_WARP;
    int b = blockIdx.x * (blockDim.x / PD_WARP) + threadIdx.x / PD_WARP;
    bool live = b < n_blocks;
    const float *xb = x + (size_t)row * x_stride + (size_t)b * PD_DEV_QKK + 8 * lane;
    float v[8];
    float amax = 0.0f, max = 0.0f;
    int idx = 0x7FFFFFFF;
    for (int k = 0; k < 8; k++) {
        v[k] = live ? xb[k] : 0.0f;
        if (fabsf(v[k]) > amax) {
            amax = fabsf(v[k]);
            max = v[k];
            idx = 8 * lane + k;
        }
    }
    for (int off = PD_WARP / 2; off > 0; off /= 2) {
        float oa = __shfl_xor_sync(PD_FULL_MASK, amax, off);
        float om = __shfl_xor_sync(PD_FULL_MASK, max, off);
        int oi = __shfl_xor_sync(PD_FULL_MASK, idx, off);
        if (oa > amax || (oa == amax && oi < idx)) {
            amax = oa;
            max = om;
            idx = oi;
        }
    }
    bool nz = pd_dev_q8_k_live(amax);
    float iscale = nz ? pd_dev_q8_k_iscale(max) : 0.0f;
    int sum = 0;
    uint8_t *blk = q + (size_t)row * q_stride + (size_t)b * PD_DEV_Q8_K_BYTES;
    for (int k = 0; k < 8; k++) {
        int8_t c = nz ? pd_dev_q8_k_code(v[k], iscale) : (int8_t)0;
        sum += c;
        if (live) {
            blk[PD_DEV_Q8_K_QS + 8 * lane + k] = (uint8_t)c;
        }
    }
    sum += __shfl_xor_sync(PD_FULL_MASK, sum, 1); // lanes 2j, 2j+1 hold bsum j
    if (live && lane % 2 == 0) {
        int16_t s16 = (int16_t)sum;
        blk[PD_DEV_Q8_K_BSUMS + lane] = (uint8_t)((uint16_t)s16 & 0xFF);
        blk[PD_DEV_Q8_K_BSUMS + lane + 1] = (uint8_t)((uint16_t)s16 >> 8);
    }
    if (live && lane == 0) {
        uint32_t bits = pd_dev_f32_bits(nz ? 1.0f / iscale : 0.0f);
        for (int k = 0; k < 4; k++) {
            blk[k] = (uint8_t)(bits >> (8 * k));
        }
    }
}

int api_quant(int type, const float *d_x, size_t x_stride, void *d_q,
                          size_t q_stride, int n, int n_rows)
{
    if (n <= 0 || n_rows <= 0) {
        return 0;
    }
    cudaError_t e;
    if (type == PD_K_F32 || type == PD_K_F16 || type == PD_K_BF16) {
        e = pd_launch(k_quant_float, dim3(pd_kdiv_up((size_t)n, 256), (unsigned)n_rows),
                      dim3(256), 0, pd_kstream(), type, d_x, x_stride, (uint8_t *)d_q,
                      q_stride, n);
    } else if (type == PD_K_Q8_0) {
        int nb = n / PD_DEV_QK;
        e = pd_launch(k_quant_q8_0, dim3(pd_kdiv_up((size_t)nb, 8), (unsigned)n_rows),
                      dim3(256), 0, pd_kstream(), d_x, x_stride, (uint8_t *)d_q, q_stride, nb);
    } else if (type == PD_K_Q8_K) {
        int nb = n / PD_DEV_QKK;
        e = pd_launch(k_quant_q8_k, dim3(pd_kdiv_up((size_t)nb, 8), (unsigned)n_rows),
                      dim3(256), 0, pd_kstream(), d_x, x_stride, (uint8_t *)d_q, q_stride, nb);
    } else {
        e = cudaErrorInvalidValue;
    }
    return pd_kcheck(e, "quant");
}

// ---- dequantisation -----------------------------------------------------------------------

// Element i of a row of the given weight type, the CPU's dequantisation arithmetic.
__device__ __forceinline__ float pd_kdequant(int type, const uint8_t *row, int i)
{
    switch (type) {
    case PD_K_F32:
        return pd_dev_ld_f32(row + 4 * (size_t)i);
    case PD_K_F16:
        return pd_dev_ld_f16(row + 2 * (size_t)i);
    case PD_K_BF16:
        return pd_dev_bf16_to_f32((uint16_t)pd_dev_ld_u16(row + 2 * (size_t)i));
    case PD_K_Q8_0:
        return pd_dev_q8_0_value(row + (size_t)(i / 32) * PD_DEV_Q8_0_BYTES, i % 32);
    case PD_K_Q4_0:
        return pd_dev_q4_0_value(row + (size_t)(i / 32) * PD_DEV_Q4_0_BYTES, i % 32);
    case PD_K_Q4_K:
        return pd_dev_q4_k_value(row + (size_t)(i / 256) * PD_DEV_Q4_K_BYTES, i % 256);
    case PD_K_Q5_K:
        return pd_dev_q5_k_value(row + (size_t)(i / 256) * PD_DEV_Q5_K_BYTES, i % 256);
    case PD_K_Q6_K:
        return pd_dev_q6_k_value(row + (size_t)(i / 256) * PD_DEV_Q6_K_BYTES, i % 256);
    case PD_K_Q8_K: {
        const uint8_t *b = row + (size_t)(i / 256) * PD_DEV_Q8_K_BYTES;
        return pd_dev_ld_f32(b) * (float)(int8_t)b[PD_DEV_Q8_K_QS + i % 256];
    }
    default:
        return NAN;
    }
}

__global__ void k_embed(int type, const uint8_t *table, size_t row_bytes, int n_embd,
                        const int32_t *par, int id_index, float *x, size_t x_stride)
{
    int t = blockIdx.y;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_embd) {
        return;
    }
    int32_t id = par[id_index + t];
    x[(size_t)t * x_stride + i] = pd_kdequant(type, table + (size_t)id * row_bytes, i);
}

int api_embed(int type, const void *d_table, size_t row_bytes, int n_embd,
                          const int32_t *d_par, int id_index, int n_tok, float *d_x,
                          size_t x_stride)
{
    if (n_tok <= 0) {
        return 0;
    }
    return pd_kcheck(pd_launch(k_embed, dim3(pd_kdiv_up((size_t)n_embd, 256), (unsigned)n_tok),
                               dim3(256), 0, pd_kstream(), type, (const uint8_t *)d_table,
                               row_bytes, n_embd, d_par, id_index, d_x, x_stride),
                     "embed");
}

__global__ void k_dequant_f16(int type, const uint8_t *w, size_t row_bytes, int cols,
                              uint16_t *out, size_t out_stride)
{
    int r = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < cols; i += gridDim.x * blockDim.x) {
        out[(size_t)r * out_stride + i] = pd_dev_f32_to_f16(pd_kdequant(type, w + (size_t)r * row_bytes, i));
    }
}

int api_dequant_f16(int type, const void *d_w, size_t row_bytes, int rows, int cols,
                                uint16_t *d_out, size_t out_stride)
{
    if (rows <= 0) {
        return 0;
    }
    unsigned gx = pd_kdiv_up((size_t)cols, 256);
    gx = gx > 16 ? 16 : gx;
    return pd_kcheck(pd_launch(k_dequant_f16, dim3(gx, (unsigned)rows), dim3(256), 0,
                               pd_kstream(), type, (const uint8_t *)d_w, row_bytes, cols, d_out,
                               out_stride),
                     "dequant_f16");
}

__global__ void k_dequant_f32(int type, const uint8_t *w, size_t row_bytes, int cols, float *out,
                              size_t out_stride)
{
    int r = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < cols; i += gridDim.x * blockDim.x) {
        out[(size_t)r * out_stride + i] = pd_kdequant(type, w + (size_t)r * row_bytes, i);
    }
}

int api_dequant_f32(int type, const void *d_w, size_t row_bytes, int rows, int cols, float *d_out,
                    size_t out_stride)
{
    if (rows <= 0) {
        return 0;
    }
    unsigned gx = pd_kdiv_up((size_t)cols, 256);
    gx = gx > 16 ? 16 : gx;
    return pd_kcheck(pd_launch(k_dequant_f32, dim3(gx, (unsigned)rows), dim3(256), 0,
                               pd_kstream(), type, (const uint8_t *)d_w, row_bytes, cols, d_out,
                               out_stride),
                     "dequant_f32");
}

// ---- elementwise ------------------------------------------------------------------------

__global__ void k_round_f16(const float *x, size_t x_stride, uint16_t *out, size_t out_stride,
                            int n, int bf16)
{
    int r = blockIdx.y;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = x[(size_t)r * x_stride + i];
        out[(size_t)r * out_stride + i] = bf16 ? pd_dev_f32_to_bf16(v) : pd_dev_f32_to_f16(v);
    }
}

int api_round_f16(const float *d_x, size_t x_stride, uint16_t *d_out,
                              size_t out_stride, int n, int n_rows, int bf16)
{
    if (n_rows <= 0) {
        return 0;
    }
    return pd_kcheck(pd_launch(k_round_f16, dim3(pd_kdiv_up((size_t)n, 256), (unsigned)n_rows),
                               dim3(256), 0, pd_kstream(), d_x, x_stride, d_out, out_stride, n,
                               bf16),
                     "round_f16");
}

__global__ void k_swiglu(const float *g, const float *u, size_t in_stride, float *h,
                         size_t h_stride, int n)
{
    int r = blockIdx.y;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float gv = g[(size_t)r * in_stride + i];
        h[(size_t)r * h_stride + i] = gv / (1.0f + expf(-gv)) * u[(size_t)r * in_stride + i];
    }
}

int api_swiglu(const float *d_g, const float *d_u, size_t in_stride, float *d_h,
                           size_t h_stride, int n, int n_rows)
{
    if (n_rows <= 0) {
        return 0;
    }
    return pd_kcheck(pd_launch(k_swiglu, dim3(pd_kdiv_up((size_t)n, 256), (unsigned)n_rows),
                               dim3(256), 0, pd_kstream(), d_g, d_u, in_stride, d_h, h_stride,
                               n),
                     "swiglu");
}

__global__ void k_add(float *y, size_t y_stride, const float *x, size_t x_stride,
                      const float *b, int n)
{
    int r = blockIdx.y;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = y[(size_t)r * y_stride + i];
        if (x) {
            v += x[(size_t)r * x_stride + i];
        }
        if (b) {
            v += b[i];
        }
        y[(size_t)r * y_stride + i] = v;
    }
}

int api_add(float *d_y, size_t y_stride, const float *d_x, size_t x_stride,
                        const float *d_b, int n, int n_rows)
{
    if (n_rows <= 0) {
        return 0;
    }
    return pd_kcheck(pd_launch(k_add, dim3(pd_kdiv_up((size_t)n, 256), (unsigned)n_rows),
                               dim3(256), 0, pd_kstream(), d_y, y_stride, d_x, x_stride, d_b, n),
                     "add");
}

} // namespace PD_KNS
