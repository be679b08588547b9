/* fuzz_gguf.c - the GGUF reader on arbitrary bytes: opens or fails with a message, never
 * crashes; an accepted file's tensors all lie inside it. */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "gguf.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct pd_gguf *g = NULL;
    struct pd_err err;
    if (pd_gguf_open_mem(data, size, "fuzz.gguf", &g, &err) != PD_OK) {
        FUZZ_CHECK(err.msg[0] != '\0', "a refusal has a message");
        return 0;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct pd_gguf_tensor *t = &g->tensors[i];
        const uint8_t *d = t->data;
        FUZZ_CHECK(d >= g->base + g->data_offset && d <= g->base + g->size &&
                       t->size <= (uint64_t)(g->base + g->size - d),
                   "tensor data inside the file");
    }
    pd_gguf_close(&g);
    return 0;
}
