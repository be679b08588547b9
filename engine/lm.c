/* lm.c - a model, its tokenizer and chat format loaded and checked together (lm.h). */
#include "lm.h"

#include <string.h>

enum pd_status pd_lm_open(const char *path, enum pd_chat_family family, struct pd_lm *lm,
                          struct pd_err *err)
{
    memset(lm, 0, sizeof *lm);
    if ((unsigned)family > PD_CHAT_FAMILY_COUNT) {
        return pd_err_set(err, PD_EINVAL, "chat family %d out of range", (int)family);
    }
    enum pd_status st = pd_model_open(path, &lm->model, err);
    if (!st) {
        st = pd_tok_open_gguf(lm->model->gguf, &lm->tok, err);
    }
    if (!st && pd_tok_n_vocab(lm->tok) != lm->model->hp.n_vocab) {
        st = pd_err_set(err, PD_EFORMAT, "%s: tokenizer.ggml.tokens: %u tokens but token_embd "
                        "has %u rows", path, pd_tok_n_vocab(lm->tok), lm->model->hp.n_vocab);
    }
    if (!st) {
        if (family == PD_CHAT_FAMILY_COUNT) {
            st = pd_chat_detect(lm->model->gguf, &lm->chat, err);
        } else {
            pd_chat_format_default(family, &lm->chat);
        }
    }
    if (st) {
        pd_lm_close(lm);
    }
    return st;
}

void pd_lm_close(struct pd_lm *lm)
{
    pd_tok_close(&lm->tok);
    pd_model_close(&lm->model);
    memset(lm, 0, sizeof *lm);
}
