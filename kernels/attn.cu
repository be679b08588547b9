// attn.cu - split-KV ("flash-decoding") attention for one query token over the f16 KV
// cache (K7) and the partition combine (K8).
//
// DESIGN
// Grid (partition p of PD_K_ATTN_PART slots, KV head g, query t); the block handles all G query
// heads of the group, so each K/V row is read once for the group. Logits: 8 lanes per
// slot, each lane a strided share of the head dims, reduced by shuffles; s = dot * scale
// as forward.c. Per head (one warp each): m_p = max, e = expf(s - m_p) (0 for hidden
// slots), l_p = sum of e in double. Then o_p[h][d] = sum over the partition's slots of
// e * v (one thread per output dim, all G heads in registers). The combine merges the
// partitions: M = max m_p, f_p = expf(m_p - M), S = sum l_p * f_p (double),
// o = (sum o_p * f_p) * (1/S), and c[h][p] = f_p / S so that prob = e * c for capture.
// With one partition f = 1 and prob = expf(s - M) * (float)(1/S): the CPU's expression.
// Every size that changes per token (slot count, query position) is read from d_par; a
// partition past the live slots exits before its first barrier (the whole block).
#include "pd_kint.h"

namespace PD_KNS {

#define ATTN_THREADS 128
#define ATTN_GMAX 16
#define ATTN_QMAX 4096 /* G * hd floats of queries in shared memory */

__global__ void __launch_bounds__(ATTN_THREADS) k_attn_split(pd_k_attn a)
{
    PD_SHARED(float, q_s, ATTN_QMAX);
    PD_SHARED(float, w_s, ATTN_GMAX * PD_K_ATTN_PART);
    PD_SHARED(float, m_s, ATTN_GMAX);
    PD_SHARED(double, l_s, ATTN_GMAX);
    const int PART = PD_K_ATTN_PART;
    int p = blockIdx.x, g = blockIdx.y, t = blockIdx.z;
    int G = a.n_head / a.n_head_kv, hd = a.hd, hd_v = a.hd_v;
    int n = a.d_par[a.nslots_index] + t;
    int s0 = p * PART;
    if (s0 >= n) {
        return; // the whole block: this partition holds no live slot
    }
    int32_t pos_q = a.d_par[a.pos_index] + t;
    const float *qt = a.q + (size_t)t * a.q_stride;
    float *et = a.e ? a.e + (size_t)t * a.e_tstride : nullptr;
    size_t part0 = (size_t)t * a.n_head * a.n_part; // this query's scratch
    size_t dim_k = (size_t)a.n_head_kv * hd, dim_v = (size_t)a.n_head_kv * hd_v;
    for (int i = threadIdx.x; i < G * hd; i += blockDim.x) {
        q_s[i] = qt[(size_t)g * G * hd + i];
    }
    __syncthreads();
    int l8 = threadIdx.x % 8, ks = threadIdx.x / 8;
    const int per_pass = ATTN_THREADS / 8;
    int n_loc = n - s0 < PART ? n - s0 : PART;
    for (int pass = 0; pass < (n_loc + per_pass - 1) / per_pass; pass++) {
        int sl = pass * per_pass + ks;
        int s = s0 + sl;
        bool valid = false;
        if (s < n) {
            int32_t ps = a.pos_cache[s];
            valid = ps >= 0 && ps <= pos_q && !(a.hide && a.hide[s] && ps != pos_q);
        }
        const uint16_t *krow = a.k_cache + (size_t)s * dim_k + (size_t)g * hd;
        for (int j = 0; j < G; j++) {
            float part = 0.0f;
            if (valid) {
                for (int d = l8; d < hd; d += 8) {
                    part += q_s[j * hd + d] * pd_dev_f16_to_f32(krow[d]);
                }
            }
            part += __shfl_xor_sync(PD_FULL_MASK, part, 4);
            part += __shfl_xor_sync(PD_FULL_MASK, part, 2);
            part += __shfl_xor_sync(PD_FULL_MASK, part, 1);
            if (l8 == 0) {
                w_s[j * PART + sl] = valid ? part * a.scale : -INFINITY;
            }
        }
    }
    __syncthreads();
    int lane = threadIdx.x % PD_WARP, wid = threadIdx.x / PD_WARP;
    for (int j = wid; j < G; j += ATTN_THREADS / PD_WARP) {
        int h = g * G + j;
        float m = -INFINITY;
        for (int sl = lane; sl < n_loc; sl += PD_WARP) {
            m = fmaxf(m, w_s[j * PART + sl]);
        }
        m = pd_warp_max(m);
        double l = 0.0;
        for (int sl = lane; sl < n_loc; sl += PD_WARP) {
            float e = m == -INFINITY ? 0.0f : expf(w_s[j * PART + sl] - m);
            w_s[j * PART + sl] = e;
            l += e;
            if (et && s0 + sl < n) {
                et[(size_t)h * a.e_stride + s0 + sl] = e;
            }
        }
        l = pd_warp_sum(l);
        if (lane == 0) {
            m_s[j] = m;
            l_s[j] = l;
        }
    }
    __syncthreads();
    for (int d = threadIdx.x; d < hd_v; d += blockDim.x) {
        float acc[ATTN_GMAX];
        for (int j = 0; j < G; j++) {
            acc[j] = 0.0f;
        }
        for (int sl = 0; sl < n_loc; sl++) {
            const uint16_t *vrow = a.v_cache + (size_t)(s0 + sl) * dim_v + (size_t)g * hd_v;
            float vv = pd_dev_f16_to_f32(vrow[d]);
            for (int j = 0; j < G; j++) {
                float e = w_s[j * PART + sl];
                if (e != 0.0f) { // hidden and evicted slots: their rows may hold anything
                    acc[j] += e * vv;
                }
            }
        }
        for (int j = 0; j < G; j++) {
            a.opart[(part0 + (size_t)(g * G + j) * a.n_part + p) * hd_v + d] = acc[j];
        }
    }
    if ((int)threadIdx.x < G) {
        int h = g * G + threadIdx.x;
        a.mpart[part0 + (size_t)h * a.n_part + p] = m_s[threadIdx.x];
        a.lpart[part0 + (size_t)h * a.n_part + p] = l_s[threadIdx.x];
    }
}

__global__ void __launch_bounds__(ATTN_THREADS) k_attn_combine(pd_k_attn a)
{
    const int PART = PD_K_ATTN_PART;
    int h = blockIdx.x, t = blockIdx.y;
    int n = a.d_par[a.nslots_index] + t;
    int np = (n + PART - 1) / PART;
    size_t part0 = (size_t)t * a.n_head * a.n_part;
    const float *mp = a.mpart + part0 + (size_t)h * a.n_part;
    const double *lp = a.lpart + part0 + (size_t)h * a.n_part;
    float *o_t = a.o + (size_t)t * a.o_stride;
    float *c_t = a.c + (size_t)t * a.c_tstride;
    float M = -INFINITY;
    for (int p = 0; p < np; p++) {
        M = fmaxf(M, mp[p]);
    }
    double S = 0.0;
    for (int p = 0; p < np; p++) {
        if (mp[p] != -INFINITY) {
            S += lp[p] * (double)expf(mp[p] - M);
        }
    }
    float inv = (float)(1.0 / S);
    for (int d = threadIdx.x; d < a.hd_v; d += blockDim.x) {
        float o = 0.0f;
        for (int p = 0; p < np; p++) {
            if (mp[p] != -INFINITY) {
                o += a.opart[(part0 + (size_t)h * a.n_part + p) * a.hd_v + d] * expf(mp[p] - M);
            }
        }
        o_t[(size_t)h * a.hd_v + d] = o * inv;
    }
    for (int p = threadIdx.x; p < np; p += blockDim.x) {
        float f = mp[p] == -INFINITY ? 0.0f : expf(mp[p] - M);
        c_t[(size_t)h * a.n_part + p] = f * inv;
    }
}

int api_attn_decode(const struct pd_k_attn *a)
{
    int G = a->n_head_kv > 0 ? a->n_head / a->n_head_kv : 0;
    if (G < 1 || G > ATTN_GMAX || a->n_head % a->n_head_kv || G * a->hd > ATTN_QMAX ||
        a->n_part < 1) {
        return pd_kfail(cudaErrorInvalidValue, "attention: unsupported head shape");
    }
    cudaStream_t s = pd_kstream();
    unsigned n_tok = a->n_tok > 1 ? (unsigned)a->n_tok : 1u;
    if (pd_kcheck(pd_launch(k_attn_split,
                            dim3((unsigned)a->n_part, (unsigned)a->n_head_kv, n_tok),
                            dim3(ATTN_THREADS), 0, s, *a),
                  "attention")) {
        return -1;
    }
    return pd_kcheck(pd_launch(k_attn_combine, dim3((unsigned)a->n_head, n_tok),
                               dim3(ATTN_THREADS), 0, s, *a),
                     "attention combine");
}

} // namespace PD_KNS
