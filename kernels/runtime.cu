// runtime.cu - the runtime side of the kernel library: device queries, the stream, memory,
// graphs, timing, the bandwidth probe, and the error message. Compiled by nvcc for the GPU
// and by g++ against the emulator (pd_emu.h provides the runtime calls used here).
#include "pd_kint.h"

#include <stdio.h>
#include <string.h>

namespace PD_KNS {

static char g_err[512];
static cudaStream_t g_stream;
static int g_ready;
static cudaEvent_t g_t0, g_t1;

// gemm.cu (cuBLAS) or gemm_emu.cc (the CPU stand-in).
int pd_kgemm_init(void);
void pd_kgemm_shutdown(void);

cudaStream_t pd_kstream(void)
{
    return g_stream;
}

int pd_kfail(cudaError_t e, const char *what)
{
    snprintf(g_err, sizeof g_err, "%s: %s", what, cudaGetErrorString(e));
    return -1;
}

void pd_kfail_msg(const char *msg)
{
    snprintf(g_err, sizeof g_err, "%s", msg);
}

#define CU(call, what)                                                                       \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess) {                                                             \
            return pd_kfail(e_, what);                                                       \
        }                                                                                    \
    } while (0)

const char *api_build(void)
{
#if defined(__CUDACC__)
    return "cuda";
#else
    return "emulator";
#endif
}

int api_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

int api_device_query(int dev, struct pd_cuda_device *out)
{
    cudaDeviceProp p;
    CU(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties");
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", p.name);
    out->total_mem = p.totalGlobalMem;
    out->sm_count = p.multiProcessorCount;
    out->cc_major = p.major;
    out->cc_minor = p.minor;
#if defined(__CUDACC__)
    out->emulated = 0;
#else
    out->emulated = 1;
#endif
    return 0;
}

const char *api_last_error(void)
{
    return g_err;
}

int api_init(int dev)
{
    if (g_ready) {
        return 0;
    }
    CU(cudaSetDevice(dev), "cudaSetDevice");
    CU(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking), "cudaStreamCreate");
    CU(cudaEventCreate(&g_t0), "cudaEventCreate");
    CU(cudaEventCreate(&g_t1), "cudaEventCreate");
    if (pd_kgemm_init()) {
        return -1;
    }
    g_ready = 1;
    return 0;
}

void api_shutdown(void)
{
    if (g_ready) {
        pd_kgemm_shutdown();
        cudaEventDestroy(g_t0);
        cudaEventDestroy(g_t1);
        cudaStreamDestroy(g_stream);
        g_ready = 0;
    }
}

int api_mem_info(size_t *free_bytes, size_t *total_bytes)
{
    CU(cudaMemGetInfo(free_bytes, total_bytes), "cudaMemGetInfo");
    return 0;
}

int api_dev_alloc(void **d_ptr, size_t bytes)
{
    *d_ptr = nullptr;
    CU(cudaMalloc(d_ptr, bytes ? bytes : 1), "cudaMalloc");
    return 0;
}

void api_dev_free(void *d_ptr)
{
    if (d_ptr) {
        cudaFree(d_ptr);
    }
}

int api_host_alloc(void **h_ptr, size_t bytes)
{
    *h_ptr = nullptr;
    CU(cudaHostAlloc(h_ptr, bytes ? bytes : 1, cudaHostAllocDefault), "cudaHostAlloc");
    return 0;
}

void api_host_free(void *h_ptr)
{
    if (h_ptr) {
        cudaFreeHost(h_ptr);
    }
}

int api_upload(void *d_dst, const void *h_src, size_t bytes)
{
    CU(cudaMemcpyAsync(d_dst, h_src, bytes, cudaMemcpyHostToDevice, g_stream), "upload");
    return 0;
}

int api_download(void *h_dst, const void *d_src, size_t bytes)
{
    CU(cudaMemcpyAsync(h_dst, d_src, bytes, cudaMemcpyDeviceToHost, g_stream), "download");
    return 0;
}

int api_copy(void *d_dst, const void *d_src, size_t bytes)
{
    CU(cudaMemcpyAsync(d_dst, d_src, bytes, cudaMemcpyDeviceToDevice, g_stream), "copy");
    return 0;
}

int api_memset(void *d_dst, int byte, size_t bytes)
{
    CU(cudaMemsetAsync(d_dst, byte, bytes, g_stream), "memset");
    return 0;
}

int api_sync(void)
{
    CU(cudaStreamSynchronize(g_stream), "sync");
    return 0;
}

// ---- graphs ---------------------------------------------------------------------------------

// The C ABI's opaque struct pd_cuda_graph is this provider's graph_impl.
struct graph_impl {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    size_t nodes;
};

int api_graph_begin(void)
{
    CU(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal), "graph capture");
    return 0;
}

int api_graph_end(struct pd_cuda_graph **out)
{
    *out = nullptr;
    cudaGraph_t g = nullptr;
    CU(cudaStreamEndCapture(g_stream, &g), "graph capture end");
    graph_impl *pg = new graph_impl();
    pg->graph = g;
    cudaError_t e = cudaGraphInstantiate(&pg->exec, g, 0);
    if (e != cudaSuccess) {
        cudaGraphDestroy(g);
        delete pg;
        return pd_kfail(e, "graph instantiate");
    }
    cudaGraphGetNodes(g, nullptr, &pg->nodes);
    *out = reinterpret_cast<pd_cuda_graph *>(pg);
    return 0;
}

int api_graph_launch(struct pd_cuda_graph *g)
{
    CU(cudaGraphLaunch(reinterpret_cast<graph_impl *>(g)->exec, g_stream), "graph launch");
    return 0;
}

size_t api_graph_nodes(const struct pd_cuda_graph *g)
{
    return g ? reinterpret_cast<const graph_impl *>(g)->nodes : 0;
}

void api_graph_free(struct pd_cuda_graph **g)
{
    if (g && *g) {
        graph_impl *pg = reinterpret_cast<graph_impl *>(*g);
        cudaGraphExecDestroy(pg->exec);
        cudaGraphDestroy(pg->graph);
        delete pg;
        *g = nullptr;
    }
}

// ---- timing and bandwidth ---------------------------------------------------------------------

int api_timer_start(void)
{
    CU(cudaEventRecord(g_t0, g_stream), "timer");
    return 0;
}

int api_timer_stop(float *ms)
{
    CU(cudaEventRecord(g_t1, g_stream), "timer");
    CU(cudaEventSynchronize(g_t1), "timer");
    CU(cudaEventElapsedTime(ms, g_t0, g_t1), "timer");
    return 0;
}

__global__ void k_copy(const float4 *src, float4 *dst, size_t n)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        dst[i] = src[i];
    }
}

int api_bandwidth(size_t bytes, int reps, double *bytes_per_s)
{
    *bytes_per_s = 0.0;
    size_t n = bytes / sizeof(float4);
    if (n == 0 || reps < 1) {
        return pd_kfail(cudaErrorInvalidValue, "bandwidth: size");
    }
    void *a = nullptr, *b = nullptr;
    if (api_dev_alloc(&a, n * sizeof(float4)) || api_dev_alloc(&b, n * sizeof(float4))) {
        api_dev_free(a);
        return -1;
    }
    int rc = api_memset(a, 0, n * sizeof(float4));
    cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    unsigned blocks = (unsigned)(p.multiProcessorCount > 0 ? p.multiProcessorCount * 8 : 64);
    for (int r = 0; r <= reps && rc == 0; r++) { // the first run warms up
        float ms = 0.0f;
        rc = api_timer_start();
        if (rc == 0) {
            rc = pd_kcheck(pd_launch(k_copy, dim3(blocks), dim3(256), 0, g_stream,
                                     (const float4 *)a, (float4 *)b, n),
                           "bandwidth");
        }
        if (rc == 0) {
            rc = api_timer_stop(&ms);
        }
        double bw = ms > 0.0f ? 2.0 * (double)n * sizeof(float4) / (ms * 1e-3) : 0.0;
        if (rc == 0 && r > 0 && bw > *bytes_per_s) {
            *bytes_per_s = bw;
        }
    }
    api_dev_free(a);
    api_dev_free(b);
    return rc;
}

} // namespace PD_KNS
