/* pd_cuda.h - C ABI over ponder's CUDA kernels and cuBLAS.
 *
 * Only engine/backend_cuda.c includes this header. All pointers named d_* are device
 * pointers; functions return 0 on success and a negative value on a CUDA/cuBLAS error,
 * with a message retrievable through pd_cuda_last_error(). Functions run on the calling
 * thread's current device and the library's stream; they are not thread-safe (the engine
 * worker owns the GPU). */
#ifndef PD_CUDA_H
#define PD_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 when there is no driver or no device. */
int pd_cuda_device_count(void);
/* Writes the device's name into buf. */
int pd_cuda_device_name(int dev, char *buf, size_t n);
/* Last error message (static storage, overwritten by the next failure). */
const char *pd_cuda_last_error(void);

/* Initialises the stream and cuBLAS handle on device dev. */
int pd_cuda_init(int dev);
void pd_cuda_shutdown(void);

int pd_cuda_malloc(void **d_ptr, size_t bytes);
void pd_cuda_free(void *d_ptr);
int pd_cuda_upload(void *d_dst, const void *src, size_t bytes);
int pd_cuda_download(void *dst, const void *d_src, size_t bytes);
int pd_cuda_sync(void);

/* Y[t][r] = sum_c W[r][c] * X[t][c] for t < n_tok, r < rows: row-major f32 matrices with
 * row strides x_stride / y_stride (in floats), through one cuBLAS SGEMM (full fp32
 * math, no TF32). */
int pd_cuda_gemm_f32(const float *d_w, const float *d_x, float *d_y, int rows, int cols,
                     int n_tok, int x_stride, int y_stride);

#ifdef __cplusplus
}
#endif

#endif
