// gemm.cu - the prefill GEMMs through cuBLAS (nvcc build only; gemm_emu.cc is the CPU
// stand-in behind the same C ABI). f16/bf16 operands with f32 accumulation
// (cublasGemmEx, CUBLAS_COMPUTE_32F) and f32 SGEMM in pedantic math (no TF32). One handle
// on the library's stream with a fixed workspace, for run-to-run reproducibility.
#include "pd_kint.h"

#include <cublas_v2.h>
#include <stdio.h>

namespace PD_KNS {

static cublasHandle_t g_blas;
static void *g_workspace;
static const size_t kWorkspace = 32u << 20;


static int blas_fail(cublasStatus_t s, const char *what)
{
    char buf[160];
    snprintf(buf, sizeof buf, "%s: cuBLAS status %d", what, (int)s);
    pd_kfail_msg(buf);
    return -1;
}

int pd_kgemm_init(void)
{
    cublasStatus_t s = cublasCreate(&g_blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        return blas_fail(s, "cublasCreate");
    }
    cublasSetStream(g_blas, pd_kstream());
    if (cudaMalloc(&g_workspace, kWorkspace) == cudaSuccess) {
        cublasSetWorkspace(g_blas, g_workspace, kWorkspace);
    }
    return 0;
}

void pd_kgemm_shutdown(void)
{
    cublasDestroy(g_blas);
    cudaFree(g_workspace);
    g_workspace = nullptr;
}

// Row-major C[n][m] = A[m][k] . B[n][k]^T is column-major C^T = op_T(A) op_N(B).
int api_gemm_f16(const uint16_t *d_a, size_t lda, const uint16_t *d_b, size_t ldb,
                             float *d_c, size_t ldc, int m, int n, int k, float beta, int bf16)
{
    const float one = 1.0f;
    cudaDataType_t t = bf16 ? CUDA_R_16BF : CUDA_R_16F;
    cublasSetMathMode(g_blas, CUBLAS_DEFAULT_MATH);
    cublasStatus_t s = cublasGemmEx(g_blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, d_a, t,
                                    (int)lda, d_b, t, (int)ldb, &beta, d_c, CUDA_R_32F, (int)ldc,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return s == CUBLAS_STATUS_SUCCESS ? 0 : blas_fail(s, "cublasGemmEx");
}

int api_gemm_f32(const float *d_a, size_t lda, const float *d_b, size_t ldb,
                             float *d_c, size_t ldc, int m, int n, int k, float beta)
{
    const float one = 1.0f;
    cublasSetMathMode(g_blas, CUBLAS_PEDANTIC_MATH);
    cublasStatus_t s = cublasSgemm(g_blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, d_a, (int)lda,
                                   d_b, (int)ldb, &beta, d_c, (int)ldc);
    return s == CUBLAS_STATUS_SUCCESS ? 0 : blas_fail(s, "cublasSgemm");
}

} // namespace PD_KNS
