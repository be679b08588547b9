// probe.cu - the per-token probe over the full vocabulary (K13): log-sum-exp and entropy
// with double accumulators, top-k (k <= 20) and the argmax, both with the lowest id first
// on ties, and the logit of a given target id. Same quantities as engine/probe.c.
//
// DESIGN
// Two launches of up to PD_K_PROBE_BLOCKS blocks per row (about 2048 logits per block).
// Pass A: each block takes a slice of
// the vocabulary; every thread keeps a sorted register list of its k best (ascending ids
// within the thread, so an equal logit never displaces a lower id), the block merges them
// by k rounds of block argmax, and also records the slice's max. Pass B: each block reads
// the global max M from the slice maxima and sums e = exp((double)x - M) and e * (x - M)
// in double over its slice (probe.c's terms); the last block to finish (a ticket taken
// after __threadfence) merges the slices in slice order (deterministic), merges the
// top-k lists, writes the record and resets the ticket for the next launch or graph
// replay.
#include "pd_kint.h"

namespace PD_KNS {

#define PROBE_THREADS 256

struct probe_slice {
    float max;
    int32_t argmax;
    int32_t n_top;
    int32_t pad;
    double sum, wsum;
    float top_v[PD_K_TOPK_MAX];
    int32_t top_i[PD_K_TOPK_MAX];
};

static size_t probe_slices_bytes(int n_rows)
{
    return ((size_t)n_rows * PD_K_PROBE_BLOCKS * sizeof(probe_slice) + 255) & ~(size_t)255;
}

size_t api_probe_scratch_bytes(int n_rows)
{
    return probe_slices_bytes(n_rows) + (((size_t)n_rows * sizeof(unsigned) + 255) & ~(size_t)255);
}

// Slices: one per block (gridDim.x of them, at most PD_K_PROBE_BLOCKS), ascending in id.
__device__ __forceinline__ void probe_slice_range(int n_vocab, int b, int *lo, int *hi)
{
    int chunk = (n_vocab + (int)gridDim.x - 1) / (int)gridDim.x;
    *lo = b * chunk < n_vocab ? b * chunk : n_vocab;
    *hi = *lo + chunk < n_vocab ? *lo + chunk : n_vocab;
}

__global__ void __launch_bounds__(PROBE_THREADS)
    k_probe_a(const float *logits, int n_vocab, int top_k, probe_slice *slices)
{
    int row = blockIdx.y, b = blockIdx.x;
    const float *x = logits + (size_t)row * n_vocab;
    int lo, hi;
    probe_slice_range(n_vocab, b, &lo, &hi);
    float lv[PD_K_TOPK_MAX];
    int32_t li[PD_K_TOPK_MAX];
    int have = 0;
    for (int i = lo + (int)threadIdx.x; i < hi; i += blockDim.x) {
        float v = x[i];
        if (have == top_k && !pd_dev_better(v, i, lv[top_k - 1], li[top_k - 1])) {
            continue;
        }
        int j = have < top_k ? have++ : top_k - 1;
        while (j > 0 && pd_dev_better(v, i, lv[j - 1], li[j - 1])) {
            lv[j] = lv[j - 1];
            li[j] = li[j - 1];
            j--;
        }
        lv[j] = v;
        li[j] = i;
    }
    probe_slice *out = slices + (size_t)row * PD_K_PROBE_BLOCKS + b;
    // The slice's argmax: the best head of the threads' lists (top_k >= 1 always here).
    int cur = 0;
    int rounds = top_k < hi - lo ? top_k : hi - lo;
    for (int r = 0; r < rounds; r++) {
        pd_kbest mine = cur < have ? pd_kbest{lv[cur], li[cur]} : pd_kbest{0.0f, -1};
        pd_kbest w = pd_block_best(mine, pd_kbetter_probe());
        if (cur < have && li[cur] == w.id) {
            cur++;
        }
        if (threadIdx.x == 0) {
            out->top_v[r] = w.v;
            out->top_i[r] = w.id;
            if (r == 0) {
                out->max = w.v;
                out->argmax = w.id;
            }
        }
    }
    if (threadIdx.x == 0) {
        out->n_top = rounds;
        if (rounds == 0) {
            out->max = -INFINITY;
            out->argmax = -1;
        }
    }
}

__global__ void __launch_bounds__(PROBE_THREADS)
    k_probe_b(const float *logits, int n_vocab, int top_k, const int32_t *par, int target_index,
              probe_slice *slices, unsigned *tickets, pd_k_probe_out *outs)
{
    PD_SHARED(int, last_s, 1);
    PD_SHARED(int, cur_s, PD_K_PROBE_BLOCKS);
    int row = blockIdx.y, b = blockIdx.x;
    const float *x = logits + (size_t)row * n_vocab;
    probe_slice *sl = slices + (size_t)row * PD_K_PROBE_BLOCKS;
    int n_sl = (int)gridDim.x;
    float M = -INFINITY;
    for (int k = 0; k < n_sl; k++) {
        M = fmaxf(M, sl[k].max);
    }
    int lo, hi;
    probe_slice_range(n_vocab, b, &lo, &hi);
    double s = 0.0, ws = 0.0;
    for (int i = lo + (int)threadIdx.x; i < hi; i += blockDim.x) {
        double d = (double)x[i] - M;
        double e = exp(d);
        s += e;
        ws += e * d;
    }
    s = pd_block_sum(s);
    ws = pd_block_sum(ws);
    if (threadIdx.x == 0) {
        sl[b].sum = s;
        sl[b].wsum = ws;
        __threadfence();
        unsigned t = atomicAdd(&tickets[row], 1u);
        last_s[0] = t == (unsigned)n_sl - 1;
    }
    __syncthreads();
    if (!last_s[0]) {
        return; // the whole block
    }
    __threadfence();
    pd_k_probe_out *out = outs + row;
    if (threadIdx.x == 0) {
        double S = 0.0, W = 0.0;
        int32_t am = -1;
        for (int k = 0; k < n_sl; k++) {
            S += pd_ld_cg(&sl[k].sum);
            W += pd_ld_cg(&sl[k].wsum);
            if (am < 0 && sl[k].n_top > 0 && sl[k].max == M) {
                am = sl[k].argmax; // slices ascend in id: the first holder of M
            }
        }
        double ls = log(S);
        double h = ls - W / S;
        out->lse = (double)M + ls;
        out->entropy = (h < 0.0 ? 0.0 : h) / 0.69314718055994530942;
        out->max = M;
        out->argmax = am;
        int32_t t = par ? par[target_index + row] : -1;
        out->target_logit = t >= 0 && t < n_vocab ? x[t] : NAN;
        tickets[row] = 0; // ready for the next launch or replay
    }
    for (int k = threadIdx.x; k < n_sl; k += blockDim.x) {
        cur_s[k] = 0;
    }
    __syncthreads();
    int rounds = top_k < n_vocab ? top_k : n_vocab;
    for (int r = 0; r < rounds; r++) {
        pd_kbest mine = {0.0f, -1};
        int k = threadIdx.x;
        if (k < n_sl && cur_s[k] < sl[k].n_top) {
            mine = pd_kbest{sl[k].top_v[cur_s[k]], sl[k].top_i[cur_s[k]]};
        }
        pd_kbest w = pd_block_best(mine, pd_kbetter_probe());
        if (k < n_sl && mine.id >= 0 && mine.id == w.id) {
            cur_s[k]++;
        }
        if (threadIdx.x == 0) {
            out->top_id[r] = w.id;
            out->top_logit[r] = w.v;
        }
    }
    if (threadIdx.x == 0) {
        out->n_top = rounds;
    }
}

int api_probe(const float *d_logits, int n_vocab, int n_rows, int top_k,
                          const int32_t *d_par, int target_index, void *d_scratch,
                          struct pd_k_probe_out *d_out)
{
    if (n_rows <= 0) {
        return 0;
    }
    if (top_k < 1 || top_k > PD_K_TOPK_MAX || n_vocab < 1) {
        return pd_kfail(cudaErrorInvalidValue, "probe: top-k out of range");
    }
    probe_slice *slices = (probe_slice *)d_scratch;
    unsigned *tickets = (unsigned *)((uint8_t *)d_scratch + probe_slices_bytes(n_rows));
    // About 2048 logits per slice (8 per thread), at most PD_K_PROBE_BLOCKS slices.
    unsigned n_sl = pd_kdiv_up((size_t)n_vocab, 2048);
    n_sl = n_sl > PD_K_PROBE_BLOCKS ? PD_K_PROBE_BLOCKS : n_sl;
    dim3 g(n_sl, (unsigned)n_rows);
    cudaStream_t s = pd_kstream();
    if (pd_kcheck(pd_launch(k_probe_a, g, dim3(PROBE_THREADS), 0, s, d_logits, n_vocab, top_k,
                            slices),
                  "probe")) {
        return -1;
    }
    return pd_kcheck(pd_launch(k_probe_b, g, dim3(PROBE_THREADS), 0, s, d_logits, n_vocab, top_k,
                               d_par, target_index, slices, tickets, d_out),
                     "probe");
}

} // namespace PD_KNS
