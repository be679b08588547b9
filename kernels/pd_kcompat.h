// pd_kcompat.h - what every kernel file includes first: the CUDA toolkit under nvcc, the
// CPU emulator (emu/pd_emu.h) otherwise, and the few spellings kernel code uses so that
// one source compiles both ways (docs/gpu.md, "kernel rules").
//
//   pd_launch(k, grid, block, smem, stream, args...)  launch (returns the launch error)
//   PD_SHARED(T, name, n)                             block-shared array T name[n]
//   PD_DYN_SMEM(T, name)                              T *name = the dynamic shared memory
//   PD_WARP                                           32 (never warpSize)
#ifndef PD_KCOMPAT_H
#define PD_KCOMPAT_H

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#include <utility>

#define PD_SHARED(T, name, count) __shared__ T name[count]
#define PD_DYN_SMEM(T, name)                                                                 \
    extern __shared__ __align__(16) unsigned char pd_dyn_smem_[];                            \
    T *name = reinterpret_cast<T *>(pd_dyn_smem_)

template <typename... P, typename... A>
static inline cudaError_t pd_launch(void (*k)(P...), dim3 g, dim3 b, size_t smem,
                                    cudaStream_t s, A &&...args)
{
    static_assert(sizeof...(P) == sizeof...(A), "kernel argument count");
    k<<<g, b, smem, s>>>(std::forward<A>(args)...);
    return cudaGetLastError();
}
#else
#include "emu/pd_emu.h"
#endif

#define PD_WARP 32
#define PD_FULL_MASK 0xFFFFFFFFu

#endif
