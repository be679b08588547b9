/* lm.h - a language model ready to use: the weights, their tokenizer and the chat format.
 *
 * Every front end that loads a model (the workbench, generate/score/info, the analysis
 * commands) goes through pd_lm_open, so the same checks run everywhere: the GGUF and its
 * tensors (model.h), the tokenizer (tokenizer.h), the vocabulary size against the
 * embedding rows, and the chat format (named by the caller or detected from the file).
 *
 * Ownership: pd_lm_open fills a caller-owned struct whose model and tokenizer it owns;
 * pd_lm_close frees them. Thread-safety: the loaded objects are read-only after opening
 * and may be shared by threads that only read them. */
#ifndef PD_LM_H
#define PD_LM_H

#include "status.h"
#include "chat.h"
#include "model.h"
#include "tokenizer.h"

struct pd_lm {
    struct pd_model *model;      /* owned */
    struct pd_tok *tok;          /* owned */
    struct pd_chat_format chat;  /* the caller's family, or detected */
};

/* Opens the GGUF at path with its tokenizer. family PD_CHAT_FAMILY_COUNT detects the chat
 * format from the file (pd_chat_detect); any other value takes that family's default
 * format. Errors (lm zeroed): whatever pd_model_open / pd_tok_open_gguf / pd_chat_detect
 * report, and PD_EFORMAT naming the path when the tokenizer's vocabulary and the embedding
 * rows differ. */
enum pd_status pd_lm_open(const char *path, enum pd_chat_family family, struct pd_lm *lm,
                          struct pd_err *err);

/* Frees what pd_lm_open loaded (a zeroed or half-open struct is fine) and zeroes lm. */
void pd_lm_close(struct pd_lm *lm);

#endif
