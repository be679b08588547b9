// gemm_emu.cc - the CPU stand-in for gemm.cu's cuBLAS calls in the emulator build: the same
// C ABI and the same arithmetic contract (f16/bf16 operands, exact products, f32 sums;
// f32 operands for the SGEMM), summing in index order.
#include "../pd_kint.h"

namespace PD_KNS {

int pd_kgemm_init(void)
{
    return 0;
}

void pd_kgemm_shutdown(void)
{
}

int api_gemm_f16(const uint16_t *d_a, size_t lda, const uint16_t *d_b, size_t ldb,
                             float *d_c, size_t ldc, int m, int n, int k, float beta, int bf16)
{
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < m; j++) {
            float acc = 0.0f;
            const uint16_t *a = d_a + (size_t)j * lda, *b = d_b + (size_t)i * ldb;
            for (int kk = 0; kk < k; kk++) {
                float x = bf16 ? pd_dev_bf16_to_f32(a[kk]) : pd_dev_f16_to_f32(a[kk]);
                float y = bf16 ? pd_dev_bf16_to_f32(b[kk]) : pd_dev_f16_to_f32(b[kk]);
                acc += x * y;
            }
            float *c = d_c + (size_t)i * ldc + j;
            *c = beta != 0.0f ? beta * *c + acc : acc;
        }
    }
    return 0;
}

int api_gemm_f32(const float *d_a, size_t lda, const float *d_b, size_t ldb,
                             float *d_c, size_t ldc, int m, int n, int k, float beta)
{
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < m; j++) {
            float acc = 0.0f;
            const float *a = d_a + (size_t)j * lda, *b = d_b + (size_t)i * ldb;
            for (int kk = 0; kk < k; kk++) {
                acc += a[kk] * b[kk];
            }
            float *c = d_c + (size_t)i * ldc + j;
            *c = beta != 0.0f ? beta * *c + acc : acc;
        }
    }
    return 0;
}

} // namespace PD_KNS
