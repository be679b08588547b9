// capture.cu - attention capture from the decode attention's weights (K9 + K10 in one
// kernel): per layer the head-mean row's top-N entries (for the summary blob), the
// cumulative attention received by position, the mass on each reasoning step, policy rows
// (head mean or per head) and full rows for the selected layers.
//
// DESIGN
// One block per (layer, query) walks the layer's slots in chunks of 256 (one slot per
// thread), so
// every merge happens inside one block and needs no second kernel. prob(h, s) =
// e[h][s] * c[h][s / PART] (attn.cu); the head mean is summed over heads in ascending
// order in float and multiplied by 1/n_head, as capture.c does; the policy's mean divides
// by n_head, as session.c does. Top-N: a running list in shared memory; per chunk, rounds
// of block argmax over the chunk's slots that beat the list's last entry (weight
// descending, position ascending: capture.c's order, ties to the lower position), at most
// N rounds and usually one. Step mass: slots ascend in position, so their step indices
// ascend too; a warp-level segmented scan sums each step's run and thread 0 adds the runs
// to the layer's row in slot order (deterministic). cum[l][pos] += mean needs no atomics
// (a position occupies one slot of a layer).
#include "pd_kint.h"

namespace PD_KNS {

#define CAP_THREADS 256
#define CAP_TOPN_MAX 64

// Index of the last step whose first position is <= pos, or -1.
__device__ __forceinline__ int cap_step_of(const int32_t *steps, int n, int32_t pos)
{
    int lo = 0, hi = n; // first index with steps[i] > pos
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (steps[mid] <= pos) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo - 1;
}

__global__ void __launch_bounds__(CAP_THREADS) k_capture(pd_k_capture cp)
{
    PD_SHARED(float, top_w, CAP_TOPN_MAX);
    PD_SHARED(int32_t, top_p, CAP_TOPN_MAX);
    PD_SHARED(int, have_s, 1);
    PD_SHARED(unsigned, seg_mask, CAP_THREADS / PD_WARP);
    PD_SHARED(int, seg_k, CAP_THREADS);
    PD_SHARED(float, seg_v, CAP_THREADS);
    const int PART = PD_K_ATTN_PART;
    int l = blockIdx.x, t = blockIdx.y;
    int tid = threadIdx.x, lane = tid % PD_WARP, wid = tid / PD_WARP;
    int n = cp.d_par[cp.nslots_index + l] + t;
    int n_steps = cp.smass ? cp.d_par[cp.nsteps_index] : 0;
    const int32_t *pos = cp.pos_cache + (size_t)l * cp.cap;
    const float *e = cp.e + (size_t)t * cp.e_tstride;
    const float *c = cp.c + (size_t)t * cp.c_tstride;
    pd_k_top *top_out = cp.top ? cp.top + (size_t)t * cp.top_tstride : nullptr;
    float *smass = cp.smass ? cp.smass + (size_t)t * cp.smass_tstride : nullptr;
    float *rows_mean = cp.rows_mean ? cp.rows_mean + (size_t)t * cp.rows_tstride : nullptr;
    bool shared_cum = gridDim.y > 1; // several queries add to the same positions
    int nh = cp.n_head;
    float inv_nh = 1.0f / (float)nh;
    float per_layer = 1.0f / (float)(cp.n_layer_total > 0 ? cp.n_layer_total : cp.n_layer);
    bool full_l = cp.full && (cp.full_mask == ~(uint64_t)0 || (l < 64 && ((cp.full_mask >> l) & 1)));
    int top_n = cp.top_n;
    for (int k = tid; k < n_steps; k += blockDim.x) {
        smass[(size_t)l * cp.steps_cap + k] = 0.0f;
    }
    if (tid == 0) {
        have_s[0] = 0;
    }
    __syncthreads();
    for (int base = 0; base < n; base += CAP_THREADS) {
        int s = base + tid;
        bool live = s < n;
        int32_t ps = live ? pos[s] : -1;
        bool valid = live && ps >= 0;
        float sum = 0.0f;
        for (int h = 0; h < nh; h++) {
            float prob = 0.0f;
            if (valid) {
                size_t lh = (size_t)l * nh + h;
                prob = e[lh * cp.e_stride + s] * c[lh * cp.n_part + s / PART];
            }
            sum += prob;
            if (live && cp.rows_head) {
                cp.rows_head[((size_t)l * nh + h) * cp.cap + s] = prob;
            }
            if (live && full_l) {
                cp.full[((size_t)l * nh + h) * cp.cap + s] = prob;
            }
        }
        float mean = sum * inv_nh;
        if (live && rows_mean) {
            rows_mean[(size_t)l * cp.cap + s] = sum / (float)nh;
        }
        if (valid && cp.cum && (size_t)ps < cp.cum_cap) {
            if (shared_cum) {
                atomicAdd(&cp.cum[(size_t)l * cp.cum_cap + ps], mean);
            } else {
                cp.cum[(size_t)l * cp.cum_cap + ps] += mean;
            }
        }
        if (n_steps > 0) {
            int k = valid ? cap_step_of(cp.steps, n_steps, ps) : -1;
            float v = k >= 0 ? mean * per_layer : 0.0f;
            // Evicted slots (k = -1, v = 0) take the step of the slot before them, so the
            // keys ascend along the warp and each step is one run.
            for (int off = 1; off < PD_WARP; off *= 2) {
                int ku = __shfl_up_sync(PD_FULL_MASK, k, off);
                if (lane >= off && ku > k) {
                    k = ku;
                }
            }
            for (int off = 1; off < PD_WARP; off *= 2) {
                float vu = __shfl_up_sync(PD_FULL_MASK, v, off);
                int ku = __shfl_up_sync(PD_FULL_MASK, k, off);
                if (lane >= off && ku == k) {
                    v += vu;
                }
            }
            int kd = __shfl_down_sync(PD_FULL_MASK, k, 1);
            bool end = k >= 0 && (lane == PD_WARP - 1 || kd != k);
            unsigned bal = __ballot_sync(PD_FULL_MASK, end);
            if (lane == 0) {
                seg_mask[wid] = bal;
            }
            seg_k[tid] = k;
            seg_v[tid] = v;
            __syncthreads();
            if (tid == 0) {
                for (int w = 0; w < CAP_THREADS / PD_WARP; w++) {
                    unsigned m = seg_mask[w];
                    while (m) {
                        int b = __ffs((int)m) - 1;
                        m &= m - 1;
                        int tt = w * PD_WARP + b;
                        smass[(size_t)l * cp.steps_cap + seg_k[tt]] += seg_v[tt];
                    }
                }
            }
        }
        if (top_out) {
            bool cand = valid && mean > 0.0f;
            bool taken = false;
            for (int r = 0; r < top_n; r++) {
                int have = have_s[0];
                bool mine = cand && !taken &&
                            (have < top_n ||
                             pd_dev_capture_better(mean, ps, top_w[have - 1], top_p[have - 1]));
                pd_kbest b = pd_block_best(pd_kbest{mine ? mean : 0.0f, mine ? ps : -1},
                                           pd_kbetter_capture());
                if (b.id < 0) {
                    break; // the whole block: nothing in this chunk beats the list
                }
                if (mine && ps == b.id) {
                    taken = true;
                }
                if (tid == 0) {
                    int j = have < top_n ? have : top_n - 1;
                    while (j > 0 && pd_dev_capture_better(b.v, b.id, top_w[j - 1], top_p[j - 1])) {
                        top_w[j] = top_w[j - 1];
                        top_p[j] = top_p[j - 1];
                        j--;
                    }
                    top_w[j] = b.v;
                    top_p[j] = b.id;
                    if (have < top_n) {
                        have_s[0] = have + 1;
                    }
                }
                __syncthreads();
            }
        }
        __syncthreads(); // seg_* and the list are reused by the next chunk
    }
    if (top_out) {
        int have = have_s[0];
        for (int k = tid; k < top_n; k += blockDim.x) {
            pd_k_top *ent = top_out + (size_t)l * top_n + k;
            ent->pos = k < have ? (uint32_t)top_p[k] : 0xFFFFFFFFu;
            ent->weight = k < have ? top_w[k] : 0.0f;
        }
    }
}

int api_capture(const struct pd_k_capture *cp)
{
    if (cp->top && (cp->top_n < 1 || cp->top_n > CAP_TOPN_MAX)) {
        return pd_kfail(cudaErrorInvalidValue, "capture: top-N out of range");
    }
    if (cp->n_layer <= 0) {
        return 0;
    }
    unsigned n_tok = cp->n_tok > 1 ? (unsigned)cp->n_tok : 1u;
    if (n_tok > 1 && ((cp->rows_mean && cp->rows_tstride == 0) || cp->rows_head || cp->full)) {
        return pd_kfail(cudaErrorInvalidValue, "capture: rows for several queries");
    }
    return pd_kcheck(pd_launch(k_capture, dim3((unsigned)cp->n_layer, n_tok), dim3(CAP_THREADS), 0,
                               pd_kstream(), *cp),
                     "capture");
}

} // namespace PD_KNS
