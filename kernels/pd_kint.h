// pd_kint.h - private to kernels/: the stream and error plumbing shared by the kernel files,
// and the warp/block reductions they use. C++ (nvcc or g++ with the emulator).
#ifndef PD_KINT_H
#define PD_KINT_H

#include "pd_kcompat.h"

#include <math.h>
#include <stdint.h>

#include "pd_cuda.h"
#include "pd_quant_dev.h"

// Each provider's C++ symbols live in their own namespace, so the nvcc-built library and
// the emulator build link into one program.
#if defined(__CUDACC__)
#define PD_KNS pd_kcuda
#else
#define PD_KNS pd_kemu
#endif

namespace PD_KNS {

// The provider's stream (runtime.cu).
cudaStream_t pd_kstream(void);
// Records "what: <CUDA message>" as the last error and returns -1.
int pd_kfail(cudaError_t e, const char *what);
// Records msg as the last error.
void pd_kfail_msg(const char *msg);
// gemm.cu (cuBLAS) or emu/gemm_emu.cc (the CPU stand-in).
int pd_kgemm_init(void);
void pd_kgemm_shutdown(void);

// The table's entries (kernels/table.cu builds the struct pd_kernels from them).
const char *api_build(void);
int api_device_count(void);
int api_device_query(int dev, struct pd_cuda_device *out);
const char *api_last_error(void);
int api_init(int dev);
void api_shutdown(void);
int api_mem_info(size_t *free_bytes, size_t *total_bytes);
int api_dev_alloc(void **d_ptr, size_t bytes);
void api_dev_free(void *d_ptr);
int api_host_alloc(void **h_ptr, size_t bytes);
void api_host_free(void *h_ptr);
int api_upload(void *d_dst, const void *h_src, size_t bytes);
int api_download(void *h_dst, const void *d_src, size_t bytes);
int api_copy(void *d_dst, const void *d_src, size_t bytes);
int api_memset(void *d_dst, int byte, size_t bytes);
int api_sync(void);
int api_graph_begin(void);
int api_graph_end(struct pd_cuda_graph **g);
int api_graph_launch(struct pd_cuda_graph *g);
size_t api_graph_nodes(const struct pd_cuda_graph *g);
void api_graph_free(struct pd_cuda_graph **g);
int api_timer_start(void);
int api_timer_stop(float *ms);
int api_bandwidth(size_t bytes, int reps, double *bytes_per_s);
int api_rmsnorm(const float *d_x, size_t x_stride, const float *d_w, float *d_out,
                size_t out_stride, int n, int n_rows, float eps);
int api_quant(int dot_type, const float *d_x, size_t x_stride, void *d_q, size_t q_stride, int n,
              int n_rows);
int api_embed(int type, const void *d_table, size_t row_bytes, int n_embd, const int32_t *d_par,
              int id_index, int n_tok, float *d_x, size_t x_stride);
int api_dequant_f16(int type, const void *d_w, size_t row_bytes, int rows, int cols,
                    uint16_t *d_out, size_t out_stride);
int api_dequant_f32(int type, const void *d_w, size_t row_bytes, int rows, int cols,
                    float *d_out, size_t out_stride);
int api_round_f16(const float *d_x, size_t x_stride, uint16_t *d_out, size_t out_stride, int n,
                  int n_rows, int bf16);
int api_swiglu(const float *d_g, const float *d_u, size_t in_stride, float *d_h, size_t h_stride,
               int n, int n_rows);
int api_add(float *d_y, size_t y_stride, const float *d_x, size_t x_stride, const float *d_b,
            int n, int n_rows);
int api_matvec(const struct pd_k_matvec *mv);
int api_rope_store(const struct pd_k_rope *r);
int api_attn_decode(const struct pd_k_attn *a);
int api_capture(const struct pd_k_capture *cp);
size_t api_probe_scratch_bytes(int n_rows);
int api_probe(const float *d_logits, int n_vocab, int n_rows, int top_k, const int32_t *d_par,
              int target_index, void *d_scratch, struct pd_k_probe_out *d_out);
int api_kv_invalidate(int32_t *d_pos, size_t cap, int n_layer, const int32_t *d_par,
                      int list_index, int list_stride);
int api_kv_move(uint16_t *d_k, uint16_t *d_v, int32_t *d_pos, int dim_k, int dim_v,
                const int32_t *d_src, const int32_t *d_dst, int n, uint16_t *d_scratch_k,
                uint16_t *d_scratch_v, int32_t *d_scratch_pos);
int api_gemm_f16(const uint16_t *d_a, size_t lda, const uint16_t *d_b, size_t ldb, float *d_c,
                 size_t ldc, int m, int n, int k, float beta, int bf16);
int api_gemm_f32(const float *d_a, size_t lda, const float *d_b, size_t ldb, float *d_c,
                 size_t ldc, int m, int n, int k, float beta);

// Turns a launch result into the ABI's 0 / -1.
static inline int pd_kcheck(cudaError_t e, const char *what)
{
    return e == cudaSuccess ? 0 : pd_kfail(e, what);
}

static inline unsigned pd_kdiv_up(size_t a, size_t b)
{
    return (unsigned)((a + b - 1) / b);
}

// Load that bypasses the (incoherent) L1 cache: for data other blocks of the same launch
// wrote before a __threadfence.
template <typename T> __device__ __forceinline__ T pd_ld_cg(const T *p)
{
#if defined(__CUDA_ARCH__)
    return __ldcg(p);
#else
    return *(const volatile T *)p;
#endif
}

// ---- reductions (every thread of the warp / block must call them) -------------------------

template <typename T> __device__ __forceinline__ T pd_warp_sum(T v)
{
    for (int off = PD_WARP / 2; off > 0; off /= 2) {
        v += __shfl_xor_sync(PD_FULL_MASK, v, off);
    }
    return v;
}

template <typename T> __device__ __forceinline__ T pd_warp_max(T v)
{
    for (int off = PD_WARP / 2; off > 0; off /= 2) {
        T o = __shfl_xor_sync(PD_FULL_MASK, v, off);
        v = o > v ? o : v;
    }
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
// The order is fixed (a tree), so the result is deterministic.
template <typename T> __device__ T pd_block_sum(T v)
{
    PD_SHARED(T, red, 33);
    unsigned lane = threadIdx.x % PD_WARP, wid = threadIdx.x / PD_WARP;
    unsigned nw = blockDim.x / PD_WARP;
    v = pd_warp_sum(v);
    __syncthreads(); // red may still be read by a previous call
    if (lane == 0) {
        red[wid] = v;
    }
    __syncthreads();
    if (wid == 0) {
        T r = lane < nw ? red[lane] : T(0);
        r = pd_warp_sum(r);
        if (lane == 0) {
            red[32] = r;
        }
    }
    __syncthreads();
    return red[32];
}

// Maximum over the block (-INFINITY for an all-empty block); every thread gets it.
__device__ inline float pd_block_max(float v)
{
    PD_SHARED(float, redm, 33);
    unsigned lane = threadIdx.x % PD_WARP, wid = threadIdx.x / PD_WARP;
    unsigned nw = blockDim.x / PD_WARP;
    v = pd_warp_max(v);
    __syncthreads();
    if (lane == 0) {
        redm[wid] = v;
    }
    __syncthreads();
    if (wid == 0) {
        float r = lane < nw ? redm[lane] : -INFINITY;
        r = pd_warp_max(r);
        if (lane == 0) {
            redm[32] = r;
        }
    }
    __syncthreads();
    return redm[32];
}

// Best (value, id) pair of the block under better(a, b) ("a beats b"); ids < 0 are empty.
// Every thread gets the winner.
struct pd_kbest {
    float v;
    int32_t id;
};

template <typename Better> __device__ pd_kbest pd_warp_best(pd_kbest b, Better better)
{
    for (int off = PD_WARP / 2; off > 0; off /= 2) {
        pd_kbest o;
        o.v = __shfl_xor_sync(PD_FULL_MASK, b.v, off);
        o.id = __shfl_xor_sync(PD_FULL_MASK, b.id, off);
        if (o.id >= 0 && (b.id < 0 || better(o.v, o.id, b.v, b.id))) {
            b = o;
        }
    }
    return b;
}

template <typename Better> __device__ pd_kbest pd_block_best(pd_kbest b, Better better)
{
    PD_SHARED(pd_kbest, redb, 33);
    unsigned lane = threadIdx.x % PD_WARP, wid = threadIdx.x / PD_WARP;
    unsigned nw = blockDim.x / PD_WARP;
    b = pd_warp_best(b, better);
    __syncthreads();
    if (lane == 0) {
        redb[wid] = b;
    }
    __syncthreads();
    if (wid == 0) {
        pd_kbest r = lane < nw ? redb[lane] : pd_kbest{0.0f, -1};
        r = pd_warp_best(r, better);
        if (lane == 0) {
            redb[32] = r;
        }
    }
    __syncthreads();
    return redb[32];
}

struct pd_kbetter_probe {
    __device__ int operator()(float a, int32_t ia, float b, int32_t ib) const
    {
        return pd_dev_better(a, ia, b, ib);
    }
};

struct pd_kbetter_capture {
    __device__ int operator()(float a, int32_t ia, float b, int32_t ib) const
    {
        return pd_dev_capture_better(a, ia, b, ib);
    }
};

} // namespace PD_KNS

#endif
