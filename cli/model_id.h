/* model_id.h - a model's identity in the store: what the workbench and the analysis
 * commands record as "the model that produced (or scored) this session".
 *
 * Ownership: every argument is borrowed for the call. Thread-safety: the store's owner
 * thread. */
#ifndef PD_MODEL_ID_H
#define PD_MODEL_ID_H

#include <stdint.h>

#include "base/status.h"
#include "model.h"
#include "store.h"

/* Puts the model's identity (file base name, size, sha256 of the GGUF header and tensor
 * table, architecture) into the store and returns its row in *id; the first time in a
 * database also the model's vocabulary (store_vocab.h, read from the GGUF's tokenizer),
 * so saved alternatives show as text without the model. */
enum pd_status pd_cli_model_put(struct pd_store *st, const struct pd_model *m,
                                const char *path, int64_t *id, struct pd_err *err);

struct pd_tok;

/* The same, given the model's tokenizer (borrowed; NULL: pd_cli_model_put). */
enum pd_status pd_cli_model_put_tok(struct pd_store *st, const struct pd_model *m,
                                    const struct pd_tok *tok, const char *path, int64_t *id,
                                    struct pd_err *err);

#endif
