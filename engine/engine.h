/* engine.h - build-level facts about the engine. Pure, thread-safe. */
#ifndef PD_ENGINE_H
#define PD_ENGINE_H

#include <stdbool.h>

/* True when the CUDA backend was compiled into this binary (a device may still be absent). */
bool pd_engine_has_cuda_build(void);

#endif
