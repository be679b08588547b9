// test_emu.cc - the CPU emulator (kernels/emu/pd_emu.h) itself: barriers, warp operations
// with CUDA's width semantics, atomics across blocks, shared memory poison, launch checks,
// graphs, and that undefined behaviour aborts (each such case runs in a forked child).
// Runs in every schedule (PD_EMU_SCHEDULE, set by meson) and under the sanitizers.
#include "pd_kcompat.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

static int g_fail = 0;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
            g_fail = 1;                                                                      \
        }                                                                                    \
    } while (0)

// Block-wide reverse through shared memory: needs the barrier between write and read.
__global__ void k_reverse(const int *in, int *out)
{
    PD_SHARED(int, buf, 256);
    int t = threadIdx.x;
    buf[t] = in[blockIdx.x * blockDim.x + t];
    __syncthreads();
    out[blockIdx.x * blockDim.x + t] = buf[blockDim.x - 1 - t];
}

__global__ void k_shuffles(int *out)
{
    int lane = threadIdx.x % PD_WARP;
    int base = threadIdx.x * 8;
    out[base + 0] = __shfl_sync(PD_FULL_MASK, lane * 10, 3);
    out[base + 1] = __shfl_up_sync(PD_FULL_MASK, lane, 2);
    out[base + 2] = __shfl_down_sync(PD_FULL_MASK, lane, 5);
    out[base + 3] = __shfl_xor_sync(PD_FULL_MASK, lane, 1);
    out[base + 4] = __shfl_down_sync(PD_FULL_MASK, lane, 1, 8); // width 8 segments
    out[base + 5] = (int)__ballot_sync(PD_FULL_MASK, lane % 3 == 0);
    out[base + 6] = __any_sync(PD_FULL_MASK, lane == 17);
    out[base + 7] = __all_sync(PD_FULL_MASK, lane < 31);
}

// Half-warp masks: lanes 0-15 and 16-31 shuffle independently.
__global__ void k_half_masks(int *out)
{
    int lane = threadIdx.x % PD_WARP;
    unsigned mask = lane < 16 ? 0x0000FFFFu : 0xFFFF0000u;
    out[threadIdx.x] = __shfl_xor_sync(mask, lane, 4);
}

__global__ void k_atomics(int *counter, float *fsum, unsigned *umax, double *dsum)
{
    atomicAdd(counter, 1);
    atomicAdd(fsum, 0.5f);
    atomicMax(umax, blockIdx.x * blockDim.x + threadIdx.x);
    atomicAdd(dsum, 0.25);
}

__global__ void k_poison(unsigned *out)
{
    PD_SHARED(unsigned, s, 4);
    PD_DYN_SMEM(unsigned, d);
    if (threadIdx.x == 0) {
        out[0] = s[1];
        out[1] = d[3];
    }
}

__global__ void k_index(int *out)
{
    int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    out[b * (blockDim.x * blockDim.y * blockDim.z) + t] = b * 1000 + t;
}

__global__ void k_read_param(const int *par, int *out)
{
    out[threadIdx.x] = par[0] + (int)threadIdx.x;
}

// ---- undefined behaviour (children) ----

__global__ void k_exit_before_barrier(int *out)
{
    if (threadIdx.x == 5) {
        return;
    }
    __syncthreads();
    out[threadIdx.x] = 1;
}

__global__ void k_two_barriers(int *out)
{
    if (threadIdx.x < 32) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

__global__ void k_partial_warp_shuffle(int *out)
{
    int v = (int)threadIdx.x;
    if (threadIdx.x % PD_WARP < 16) {
        v = __shfl_xor_sync(PD_FULL_MASK, v, 1); // lanes 16-31 never arrive
    }
    out[threadIdx.x] = v;
}

__global__ void k_mask_missing_lane(int *out)
{
    int v = __shfl_sync(0x0000FFFFu, (int)threadIdx.x, 20); // reads lane 20, outside the mask
    out[threadIdx.x] = v;
}

#ifdef PD_EMU_TSAN
// The barrier of k_reverse left out: a race the CPU racecheck (TSan) must report.
__global__ void k_reverse_racy(const int *in, int *out)
{
    PD_SHARED(int, buf, 256);
    int t = threadIdx.x;
    buf[t] = in[t];
    out[t] = buf[blockDim.x - 1 - t];
}

static int child_races(void)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) {
            _exit(3);
        }
        int *in, *out;
        cudaMalloc(&in, 1024);
        cudaMalloc(&out, 1024);
        pd_launch(k_reverse_racy, dim3(1), dim3(256), 0, nullptr, (const int *)in, out);
        exit(0); // not _exit: TSan sets the exit status at exit

    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 66; // TSan's exit code after a report
}
#endif

static int child_aborts(void (*fn)(void))
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) {
            _exit(3);
        }
        fn();
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static int *g_buf;

static void ub_exit_before_barrier(void)
{
    pd_launch(k_exit_before_barrier, dim3(1), dim3(64), 0, nullptr, g_buf);
}
static void ub_two_barriers(void)
{
    pd_launch(k_two_barriers, dim3(1), dim3(64), 0, nullptr, g_buf);
}
static void ub_partial_warp_shuffle(void)
{
    pd_launch(k_partial_warp_shuffle, dim3(1), dim3(32), 0, nullptr, g_buf);
}
static void ub_mask_missing_lane(void)
{
    pd_launch(k_mask_missing_lane, dim3(1), dim3(16), 0, nullptr, g_buf);
}
static void ub_malloc_in_capture(void)
{
    cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeRelaxed);
    void *p;
    cudaMalloc(&p, 16);
}

int main(void)
{
#ifdef PD_EMU_TSAN
    // First, while the process has one thread (TSan is blind in the child of a
    // multi-threaded fork).
    CHECK(child_races());
#endif
    // barrier
    {
        const int n = 3 * 256;
        int *in, *out;
        cudaMalloc(&in, n * sizeof(int));
        cudaMalloc(&out, n * sizeof(int));
        for (int i = 0; i < n; i++) {
            in[i] = i;
        }
        CHECK(pd_launch(k_reverse, dim3(3), dim3(256), 0, nullptr, in, out) == cudaSuccess);
        for (int b = 0; b < 3; b++) {
            for (int t = 0; t < 256; t++) {
                CHECK(out[b * 256 + t] == b * 256 + 255 - t);
            }
        }
        cudaFree(in);
        cudaFree(out);
    }
    // warp operations
    {
        int *out;
        cudaMalloc(&out, 64 * 8 * sizeof(int));
        CHECK(pd_launch(k_shuffles, dim3(1), dim3(64), 0, nullptr, out) == cudaSuccess);
        unsigned ballot = 0;
        for (int l = 0; l < 32; l++) {
            ballot |= (l % 3 == 0) ? 1u << l : 0u;
        }
        for (int t = 0; t < 64; t++) {
            int l = t % 32;
            const int *o = out + t * 8;
            CHECK(o[0] == 30);
            CHECK(o[1] == (l >= 2 ? l - 2 : l));
            CHECK(o[2] == (l + 5 < 32 ? l + 5 : l));
            CHECK(o[3] == (l ^ 1));
            CHECK(o[4] == ((l % 8) + 1 < 8 ? l + 1 : l));
            CHECK((unsigned)o[5] == ballot);
            CHECK(o[6] == 1);
            CHECK(o[7] == 0);
        }
        CHECK(pd_launch(k_half_masks, dim3(1), dim3(32), 0, nullptr, out) == cudaSuccess);
        for (int l = 0; l < 32; l++) {
            CHECK(out[l] == (l ^ 4));
        }
        cudaFree(out);
    }
    // atomics across blocks (blocks run on several OS threads)
    {
        int *c;
        float *f;
        unsigned *m;
        double *d;
        cudaMalloc(&c, 4);
        cudaMalloc(&f, 4);
        cudaMalloc(&m, 4);
        cudaMalloc(&d, 8);
        *c = 0;
        *f = 0.0f;
        *m = 0;
        *d = 0.0;
        CHECK(pd_launch(k_atomics, dim3(40), dim3(64), 0, nullptr, c, f, m, d) == cudaSuccess);
        CHECK(*c == 40 * 64);
        CHECK(*f == 0.5f * 40 * 64);
        CHECK(*m == 40 * 64 - 1);
        CHECK(*d == 0.25 * 40 * 64);
        cudaFree(c);
        cudaFree(f);
        cudaFree(m);
        cudaFree(d);
    }
    // poison and indexing
    {
        unsigned *out;
        cudaMalloc(&out, 8);
        CHECK(out[0] == 0xFFFFFFFFu); // fresh device memory
        CHECK(pd_launch(k_poison, dim3(1), dim3(32), 64, nullptr, out) == cudaSuccess);
        CHECK(out[0] == 0xFFFFFFFFu && out[1] == 0xFFFFFFFFu);
        cudaFree(out);
        int *idx;
        cudaMalloc(&idx, 2 * 3 * 2 * 4 * 2 * 2 * sizeof(int));
        CHECK(pd_launch(k_index, dim3(2, 3, 2), dim3(4, 2, 2), 0, nullptr, idx) == cudaSuccess);
        for (int b = 0; b < 12; b++) {
            for (int t = 0; t < 16; t++) {
                CHECK(idx[b * 16 + t] == b * 1000 + t);
            }
        }
        cudaFree(idx);
    }
    // launch checks
    {
        int *out;
        cudaMalloc(&out, 4096);
        CHECK(pd_launch(k_read_param, dim3(1), dim3(1025), 0, nullptr, (const int *)out, out) ==
              cudaErrorInvalidConfiguration);
        CHECK(pd_launch(k_read_param, dim3(0), dim3(32), 0, nullptr, (const int *)out, out) ==
              cudaErrorInvalidConfiguration);
        CHECK(pd_launch(k_poison, dim3(1), dim3(32), 64 * 1024, nullptr, (unsigned *)out) ==
              cudaErrorInvalidValue);
        CHECK(cudaFuncSetAttribute(k_poison, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   64 * 1024) == cudaSuccess);
        CHECK(pd_launch(k_poison, dim3(1), dim3(32), 64 * 1024, nullptr, (unsigned *)out) ==
              cudaSuccess);
        cudaGetLastError();
        cudaFree(out);
    }
    // graphs replay with the values in device memory at launch time
    {
        int *par, *out;
        cudaMalloc(&par, 4);
        cudaMalloc(&out, 32 * sizeof(int));
        int host = 7;
        cudaGraph_t g = nullptr;
        cudaGraphExec_t ex = nullptr;
        CHECK(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeRelaxed) == cudaSuccess);
        cudaMemcpyAsync(par, &host, 4, cudaMemcpyHostToDevice, nullptr);
        pd_launch(k_read_param, dim3(1), dim3(32), 0, nullptr, (const int *)par, out);
        CHECK(cudaStreamEndCapture(nullptr, &g) == cudaSuccess);
        CHECK(out[0] == -1); // nothing ran during the capture
        cudaGraphInstantiate(&ex, g, 0);
        size_t nodes = 0;
        cudaGraphGetNodes(g, nullptr, &nodes);
        CHECK(nodes == 2);
        for (host = 7; host < 10; host++) {
            cudaGraphLaunch(ex, nullptr);
            CHECK(out[31] == host + 31);
        }
        cudaGraphExecDestroy(ex);
        cudaGraphDestroy(g);
        cudaFree(par);
        cudaFree(out);
    }
    // undefined behaviour aborts
    cudaMalloc(&g_buf, 4096);
    CHECK(child_aborts(ub_exit_before_barrier));
    CHECK(child_aborts(ub_two_barriers));
    CHECK(child_aborts(ub_partial_warp_shuffle));
    CHECK(child_aborts(ub_mask_missing_lane));
    CHECK(child_aborts(ub_malloc_in_capture));
    cudaFree(g_buf);
    printf("emulator self-test (%s schedule): %s\n",
           getenv("PD_EMU_SCHEDULE") ? getenv("PD_EMU_SCHEDULE") : "rr", g_fail ? "FAIL" : "ok");
    return g_fail;
}
