// pd_cuda.cu - device management and the cuBLAS SGEMM behind pd_cuda.h.
#include "pd_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>

static char g_err[256];
static cudaStream_t g_stream;
static cublasHandle_t g_blas;
static int g_ready;

static int fail_cuda(cudaError_t e, const char *what)
{
    snprintf(g_err, sizeof g_err, "%s: %s", what, cudaGetErrorString(e));
    return -1;
}

static int fail_blas(cublasStatus_t s, const char *what)
{
    snprintf(g_err, sizeof g_err, "%s: cublas status %d", what, (int)s);
    return -1;
}

#define CU(call, what)                         \
    do {                                       \
        cudaError_t e_ = (call);               \
        if (e_ != cudaSuccess) {               \
            return fail_cuda(e_, what);        \
        }                                      \
    } while (0)

extern "C" int pd_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

extern "C" int pd_cuda_device_name(int dev, char *buf, size_t n)
{
    cudaDeviceProp p;
    CU(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties");
    snprintf(buf, n, "%s", p.name);
    return 0;
}

extern "C" const char *pd_cuda_last_error(void)
{
    return g_err;
}

extern "C" int pd_cuda_init(int dev)
{
    if (g_ready) {
        return 0;
    }
    CU(cudaSetDevice(dev), "cudaSetDevice");
    CU(cudaStreamCreate(&g_stream), "cudaStreamCreate");
    cublasStatus_t s = cublasCreate(&g_blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        return fail_blas(s, "cublasCreate");
    }
    cublasSetStream(g_blas, g_stream);
    cublasSetMathMode(g_blas, CUBLAS_PEDANTIC_MATH); // fp32 stays fp32 (no TF32)
    g_ready = 1;
    return 0;
}

extern "C" void pd_cuda_shutdown(void)
{
    if (g_ready) {
        cublasDestroy(g_blas);
        cudaStreamDestroy(g_stream);
        g_ready = 0;
    }
}

extern "C" int pd_cuda_malloc(void **d_ptr, size_t bytes)
{
    CU(cudaMalloc(d_ptr, bytes), "cudaMalloc");
    return 0;
}

extern "C" void pd_cuda_free(void *d_ptr)
{
    if (d_ptr) {
        cudaFree(d_ptr);
    }
}

extern "C" int pd_cuda_upload(void *d_dst, const void *src, size_t bytes)
{
    CU(cudaMemcpyAsync(d_dst, src, bytes, cudaMemcpyHostToDevice, g_stream), "upload");
    return 0;
}

extern "C" int pd_cuda_download(void *dst, const void *d_src, size_t bytes)
{
    CU(cudaMemcpyAsync(dst, d_src, bytes, cudaMemcpyDeviceToHost, g_stream), "download");
    CU(cudaStreamSynchronize(g_stream), "sync");
    return 0;
}

extern "C" int pd_cuda_sync(void)
{
    CU(cudaStreamSynchronize(g_stream), "sync");
    return 0;
}

extern "C" int pd_cuda_gemm_f32(const float *d_w, const float *d_x, float *d_y, int rows,
                                int cols, int n_tok, int x_stride, int y_stride)
{
    // Row-major W[rows][cols] is column-major W^T (cols x rows, ld cols); row-major
    // X[n_tok][x_stride] is column-major X^T (cols x n_tok, ld x_stride). Y^T = W X^T is
    // column-major rows x n_tok with ld y_stride, i.e. row-major Y[n_tok][y_stride].
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t s = cublasSgemm(g_blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, n_tok, cols, &one,
                                   d_w, cols, d_x, x_stride, &zero, d_y, y_stride);
    if (s != CUBLAS_STATUS_SUCCESS) {
        return fail_blas(s, "cublasSgemm");
    }
    return 0;
}
