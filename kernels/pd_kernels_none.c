/* pd_kernels_none.c - the CUDA provider of a ponder built without CUDA: there is none. */
#include "pd_cuda.h"

const struct pd_kernels *pd_kernels_cuda(void)
{
    return NULL;
}
