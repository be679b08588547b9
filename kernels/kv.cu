// kv.cu - KV cache slot operations on the device (K11, K12): invalidating evicted slots
// (their positions become -1, so attention and capture skip them) and moving rows for
// compaction. The host mirror (engine/backend_cuda.c) decides which slots; these kernels
// only apply the lists.
#include "pd_kint.h"

namespace PD_KNS {

// Block l: the evict list of layer l in d_par (count, then slots).
__global__ void k_kv_invalidate(int32_t *pos, size_t cap, const int32_t *par, int list_index,
                                int list_stride)
{
    int l = blockIdx.x;
    const int32_t *list = par + list_index + (size_t)l * list_stride;
    int n = list[0];
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        pos[(size_t)l * cap + list[1 + i]] = -1;
    }
}

int api_kv_invalidate(int32_t *d_pos, size_t cap, int n_layer, const int32_t *d_par,
                                  int list_index, int list_stride)
{
    if (n_layer <= 0) {
        return 0;
    }
    return pd_kcheck(pd_launch(k_kv_invalidate, dim3((unsigned)n_layer), dim3(64), 0,
                               pd_kstream(), d_pos, cap, d_par, list_index, list_stride),
                     "kv invalidate");
}

// Row i of the move list: gather (to_scratch) or scatter (from scratch).
__global__ void k_kv_move(uint16_t *k, uint16_t *v, int32_t *pos, int dim_k, int dim_v,
                          const int32_t *src, const int32_t *dst, uint16_t *sk, uint16_t *sv,
                          int32_t *sp, int to_scratch)
{
    int i = blockIdx.x;
    size_t from = to_scratch ? (size_t)src[i] : (size_t)i;
    size_t to = to_scratch ? (size_t)i : (size_t)dst[i];
    const uint16_t *fk = to_scratch ? k : sk;
    const uint16_t *fv = to_scratch ? v : sv;
    uint16_t *tk = to_scratch ? sk : k;
    uint16_t *tv = to_scratch ? sv : v;
    for (int d = threadIdx.x; d < dim_k; d += blockDim.x) {
        tk[to * dim_k + d] = fk[from * dim_k + d];
    }
    for (int d = threadIdx.x; d < dim_v; d += blockDim.x) {
        tv[to * dim_v + d] = fv[from * dim_v + d];
    }
    if (threadIdx.x == 0) {
        if (to_scratch) {
            sp[i] = pos[from];
        } else {
            pos[to] = sp[i];
        }
    }
}

int api_kv_move(uint16_t *d_k, uint16_t *d_v, int32_t *d_pos, int dim_k, int dim_v,
                            const int32_t *d_src, const int32_t *d_dst, int n,
                            uint16_t *d_scratch_k, uint16_t *d_scratch_v, int32_t *d_scratch_pos)
{
    if (n <= 0) {
        return 0;
    }
    cudaStream_t s = pd_kstream();
    if (pd_kcheck(pd_launch(k_kv_move, dim3((unsigned)n), dim3(128), 0, s, d_k, d_v, d_pos, dim_k,
                            dim_v, d_src, d_dst, d_scratch_k, d_scratch_v, d_scratch_pos, 1),
                  "kv move")) {
        return -1;
    }
    return pd_kcheck(pd_launch(k_kv_move, dim3((unsigned)n), dim3(128), 0, s, d_k, d_v, d_pos,
                               dim_k, dim_v, d_src, d_dst, d_scratch_k, d_scratch_v,
                               d_scratch_pos, 0),
                     "kv move");
}

} // namespace PD_KNS
