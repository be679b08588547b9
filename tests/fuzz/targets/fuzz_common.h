/* fuzz_common.h - what the libFuzzer targets share: a loud abort when an invariant the
 * target checks fails (so libFuzzer keeps the input as a crash), and the test data paths. */
#ifndef PD_FUZZ_COMMON_H
#define PD_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond, what)                                                        \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", what, __FILE__,    \
                    __LINE__);                                                        \
            abort();                                                                  \
        }                                                                             \
    } while (0)

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif
