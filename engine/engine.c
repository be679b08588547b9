/* engine.c - build-level facts about the engine (which backends were compiled in). */
#include "config.h"

#include "engine.h"

bool pd_engine_has_cuda_build(void)
{
    return HAVE_CUDA != 0;
}
