/* fuzz_model.c - the whole model load path (GGUF, hyperparameters, tensor binding,
 * tokenizer, chat detection) on arbitrary bytes, and a forward pass of two tokens when a
 * model loads: errors with messages, never a crash. Seeds: tiny models made by mkmodel. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "forward.h"
#include "fuzz_common.h"
#include "gguf.h"
#include "model.h"
#include "tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* The forward pass on the portable kernels: the fuzz build leaves the x86 kernel files
     * uninstrumented (engine/meson.build), so ASan and UBSan see only these. */
    setenv("PONDER_SIMD", "scalar", 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct pd_gguf *g = NULL;
    struct pd_err err;
    if (pd_gguf_open_mem(data, size, "fuzz.gguf", &g, &err) != PD_OK) {
        return 0;
    }
    struct pd_chat_format fmt;
    pd_chat_detect(g, &fmt, NULL);
    struct pd_tok *tok = NULL;
    if (pd_tok_open_gguf(g, &tok, &err) == PD_OK) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (pd_tok_encode(tok, "Hello <think> 12", 16, true, true, &ids, &n, NULL) == PD_OK) {
            free(ids);
        }
    }
    struct pd_model *m = NULL;
    if (pd_model_open_gguf_take(g, &m, &err) != PD_OK) { /* takes g either way */
        FUZZ_CHECK(err.msg[0] != '\0', "a refusal has a message");
        pd_tok_close(&tok);
        return 0;
    }
    /* small models only: the forward pass must then run */
    if (m->weight_bytes < (8u << 20) && m->hp.n_vocab > 1 && m->hp.n_layer <= 8) {
        struct pd_ctx_params cp = pd_ctx_default_params();
        cp.n_ctx = 16;
        cp.n_threads = 1;
        struct pd_ctx *c = NULL;
        if (pd_ctx_open(m, &cp, &c, &err) == PD_OK) {
            int32_t t[2] = {0, (int32_t)(m->hp.n_vocab - 1)};
            pd_ctx_eval(c, t, 2, NULL, NULL, &err);
            pd_ctx_close(&c);
        }
    }
    pd_model_close(&m);
    pd_tok_close(&tok);
    return 0;
}
