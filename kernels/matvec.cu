// matvec.cu - decode matrix-vector products reading GGUF blocks directly (K4).
//
// DESIGN
// One block of 32..128 threads (enough to cover the row in one step) per output row (for
// SwiGLU: per row of the gate/up pair). A
// quantised row is covered by groups of PD_DEV_LANES_* lanes, one weight block per group
// per step; each lane forms exact integer partial sums with dp4a (pd_quant_dev.h), the
// group adds them with shuffles (exact), and the group's first lane applies the block's
// float combine in the CPU's order, so every block's contribution is bit-identical to
// engine/quant.c's vec_dot; the float block results are then summed by a fixed tree.
// Float weights (F32/F16/BF16) are dotted with the activation in the same format, 8
// elements per lane per step. The loop runs the same number of steps in every lane of a
// warp (lanes past the row's end contribute zero), so the shuffles always see full warps.
// Epilogues: bias, the residual add (y += W x, one thread reads and writes y[r]) and
// SwiGLU of the gate/up pair, written as forward.c writes them.
#include "pd_kint.h"

namespace PD_KNS {

#define MV_THREADS 128

template <int TYPE> struct mv_block;
template <> struct mv_block<PD_K_Q8_0> {
    enum { W = PD_DEV_Q8_0_BYTES, X = PD_DEV_Q8_0_BYTES, N = PD_DEV_QK, L = PD_DEV_LANES_Q8_0 };
};
template <> struct mv_block<PD_K_Q4_0> {
    enum { W = PD_DEV_Q4_0_BYTES, X = PD_DEV_Q8_0_BYTES, N = PD_DEV_QK, L = PD_DEV_LANES_Q4_0 };
};
template <> struct mv_block<PD_K_Q4_K> {
    enum { W = PD_DEV_Q4_K_BYTES, X = PD_DEV_Q8_K_BYTES, N = PD_DEV_QKK, L = PD_DEV_LANES_KQ };
};
template <> struct mv_block<PD_K_Q5_K> {
    enum { W = PD_DEV_Q5_K_BYTES, X = PD_DEV_Q8_K_BYTES, N = PD_DEV_QKK, L = PD_DEV_LANES_KQ };
};
template <> struct mv_block<PD_K_Q6_K> {
    enum { W = PD_DEV_Q6_K_BYTES, X = PD_DEV_Q8_K_BYTES, N = PD_DEV_QKK, L = PD_DEV_LANES_KQ };
};

// Lane t's integer partial sums of block (w, x).
template <int TYPE>
__device__ __forceinline__ void mv_lane(const uint8_t *w, const uint8_t *x, int t, int32_t *is,
                                        int32_t *ms)
{
    if constexpr (TYPE == PD_K_Q8_0) {
        *is += pd_dev_q8_0_lane(w, x, t);
    } else if constexpr (TYPE == PD_K_Q4_0) {
        *is += pd_dev_q4_0_lane(w, x, t);
    } else if constexpr (TYPE == PD_K_Q4_K) {
        pd_dev_q4_k_lane(w, x, t, is, ms);
    } else if constexpr (TYPE == PD_K_Q5_K) {
        pd_dev_q5_k_lane(w, x, t, is, ms);
    } else {
        *is += pd_dev_q6_k_lane(w, x, t);
    }
}

template <int TYPE>
__device__ __forceinline__ float mv_combine(const uint8_t *w, const uint8_t *x, int32_t is,
                                            int32_t ms)
{
    if constexpr (TYPE == PD_K_Q8_0 || TYPE == PD_K_Q4_0) {
        return pd_dev_q8_0_combine(w, x, is);
    } else if constexpr (TYPE == PD_K_Q4_K || TYPE == PD_K_Q5_K) {
        return pd_dev_q4_k_combine(w, x, is, ms);
    } else {
        return pd_dev_q6_k_combine(w, x, is);
    }
}

// Quantised row dot(s): one or two weight rows against nc activation columns. Column c's
// arithmetic is the same whatever nc is (its own integer sums, combines and sums).
template <int TYPE>
__device__ __forceinline__ void mv_quant_rows(const uint8_t *w0, const uint8_t *w1,
                                              const uint8_t *xq, size_t xq_stride, int nc,
                                              int cols, float *acc0, float *acc1)
{
    typedef mv_block<TYPE> B;
    int nb = cols / B::N;
    int t = threadIdx.x % B::L, g = threadIdx.x / B::L;
    const int n_groups = (int)blockDim.x / B::L;
    for (int b0 = 0; b0 < nb; b0 += n_groups) {
        int b = b0 + g;
        bool live = b < nb;
        for (int c = 0; c < nc; c++) {
            const uint8_t *x = xq + (size_t)c * xq_stride + (size_t)b * B::X;
            int32_t is0 = 0, ms0 = 0, is1 = 0, ms1 = 0;
            if (live) {
                mv_lane<TYPE>(w0 + (size_t)b * B::W, x, t, &is0, &ms0);
                if (w1) {
                    mv_lane<TYPE>(w1 + (size_t)b * B::W, x, t, &is1, &ms1);
                }
            }
            for (int off = B::L / 2; off > 0; off /= 2) {
                is0 += __shfl_xor_sync(PD_FULL_MASK, is0, off);
                ms0 += __shfl_xor_sync(PD_FULL_MASK, ms0, off);
                is1 += __shfl_xor_sync(PD_FULL_MASK, is1, off);
                ms1 += __shfl_xor_sync(PD_FULL_MASK, ms1, off);
            }
            if (live && t == 0) {
                acc0[c] += mv_combine<TYPE>(w0 + (size_t)b * B::W, x, is0, ms0);
                if (w1) {
                    acc1[c] += mv_combine<TYPE>(w1 + (size_t)b * B::W, x, is1, ms1);
                }
            }
        }
    }
}

template <int TYPE>
__device__ __forceinline__ float mv_float_elem(const uint8_t *p, int i)
{
    if constexpr (TYPE == PD_K_F32) {
        return pd_dev_ld_f32(p + 4 * (size_t)i);
    } else if constexpr (TYPE == PD_K_F16) {
        return pd_dev_ld_f16(p + 2 * (size_t)i);
    } else {
        return pd_dev_bf16_to_f32((uint16_t)pd_dev_ld_u16(p + 2 * (size_t)i));
    }
}

// Float row dot(s): lanes take 8 consecutive elements per step.
template <int TYPE>
__device__ __forceinline__ void mv_float_rows(const uint8_t *w0, const uint8_t *w1,
                                              const uint8_t *xq, size_t xq_stride, int nc,
                                              int cols, float *acc0, float *acc1)
{
    for (int base = 8 * (int)threadIdx.x; base < cols; base += 8 * (int)blockDim.x) {
        int end = base + 8 < cols ? base + 8 : cols;
        for (int c = 0; c < nc; c++) {
            const uint8_t *x = xq + (size_t)c * xq_stride;
            for (int i = base; i < end; i++) {
                float xv = mv_float_elem<TYPE>(x, i);
                acc0[c] += mv_float_elem<TYPE>(w0, i) * xv;
                if (w1) {
                    acc1[c] += mv_float_elem<TYPE>(w1, i) * xv;
                }
            }
        }
    }
}

template <int TYPE> __global__ void __launch_bounds__(MV_THREADS) k_matvec(pd_k_matvec mv)
{
    int r = blockIdx.x;
    int mi = 0;
    if (mv.mode != PD_K_MV_SWIGLU) {
        while (mi < mv.n_mat - 1 && r >= mv.m[mi].rows) {
            r -= mv.m[mi].rows;
            mi++;
        }
    }
    const pd_k_mat &M = mv.m[mi];
    const uint8_t *w0 = (const uint8_t *)M.w + (size_t)r * M.row_bytes;
    const uint8_t *w1 = mv.mode == PD_K_MV_SWIGLU
                            ? (const uint8_t *)mv.m[1].w + (size_t)r * mv.m[1].row_bytes
                            : nullptr;
    const uint8_t *xq = (const uint8_t *)mv.xq;
    int nc = mv.n_col > 1 ? mv.n_col : 1;
    float acc0[PD_K_MV_COLS], acc1[PD_K_MV_COLS];
    for (int c = 0; c < PD_K_MV_COLS; c++) {
        acc0[c] = 0.0f;
        acc1[c] = 0.0f;
    }
    if constexpr (TYPE == PD_K_F32 || TYPE == PD_K_F16 || TYPE == PD_K_BF16) {
        mv_float_rows<TYPE>(w0, w1, xq, mv.xq_stride, nc, mv.cols, acc0, acc1);
    } else {
        mv_quant_rows<TYPE>(w0, w1, xq, mv.xq_stride, nc, mv.cols, acc0, acc1);
    }
    for (int c = 0; c < nc; c++) {
        float a0 = pd_block_sum(acc0[c]);
        float a1 = w1 ? pd_block_sum(acc1[c]) : 0.0f;
        if (threadIdx.x == 0) {
            float *y = M.y + (size_t)c * mv.y_stride;
            if (mv.mode == PD_K_MV_SWIGLU) {
                y[r] = a0 / (1.0f + expf(-a0)) * a1;
            } else if (mv.mode == PD_K_MV_ADD) {
                y[r] = y[r] + a0;
            } else {
                y[r] = M.bias ? a0 + M.bias[r] : a0;
            }
        }
    }
}

int api_matvec(const struct pd_k_matvec *mv)
{
    if (mv->n_mat < 1 || mv->n_mat > 3 || (mv->mode == PD_K_MV_SWIGLU && mv->n_mat != 2) ||
        mv->n_col > PD_K_MV_COLS) {
        return pd_kfail(cudaErrorInvalidValue, "matvec: bad matrix count");
    }
    unsigned rows = 0;
    if (mv->mode == PD_K_MV_SWIGLU) {
        rows = (unsigned)mv->m[0].rows;
    } else {
        for (int i = 0; i < mv->n_mat; i++) {
            rows += (unsigned)mv->m[i].rows;
        }
    }
    if (rows == 0) {
        return 0;
    }
    // Threads: enough lanes to cover the row in one step, 32..128.
    int bs = mv->type == PD_K_Q8_0 || mv->type == PD_K_Q4_0 ? PD_DEV_QK
             : mv->type >= PD_K_Q4_K                         ? PD_DEV_QKK
                                                             : 8;
    int lanes = mv->type == PD_K_Q8_0 || mv->type == PD_K_Q4_0 ? PD_DEV_LANES_Q8_0
                : mv->type >= PD_K_Q4_K                         ? PD_DEV_LANES_KQ
                                                                : 1;
    int need = (mv->cols + bs - 1) / bs * lanes;
    int threads = need <= 32 ? 32 : need <= 64 ? 64 : MV_THREADS;
    dim3 g(rows), b((unsigned)threads);
    cudaStream_t s = pd_kstream();
    cudaError_t e;
    switch (mv->type) {
    case PD_K_F32:
        e = pd_launch(k_matvec<PD_K_F32>, g, b, 0, s, *mv);
        break;
    case PD_K_F16:
        e = pd_launch(k_matvec<PD_K_F16>, g, b, 0, s, *mv);
        break;
    case PD_K_BF16:
        e = pd_launch(k_matvec<PD_K_BF16>, g, b, 0, s, *mv);
        break;
    case PD_K_Q8_0:
        e = pd_launch(k_matvec<PD_K_Q8_0>, g, b, 0, s, *mv);
        break;
    case PD_K_Q4_0:
        e = pd_launch(k_matvec<PD_K_Q4_0>, g, b, 0, s, *mv);
        break;
    case PD_K_Q4_K:
        e = pd_launch(k_matvec<PD_K_Q4_K>, g, b, 0, s, *mv);
        break;
    case PD_K_Q5_K:
        e = pd_launch(k_matvec<PD_K_Q5_K>, g, b, 0, s, *mv);
        break;
    case PD_K_Q6_K:
        e = pd_launch(k_matvec<PD_K_Q6_K>, g, b, 0, s, *mv);
        break;
    default:
        e = cudaErrorInvalidValue;
    }
    return pd_kcheck(e, "matvec");
}

} // namespace PD_KNS
