/* model_id.c - a model's identity row in the store (model_id.h). */
#include "model_id.h"

#include <string.h>

#include "sha256.h"
#include "store_vocab.h"
#include "tokenizer.h"

static const char *piece(void *ud, int32_t id, size_t *len)
{
    return pd_tok_piece(ud, id, len);
}

enum pd_status pd_cli_model_put(struct pd_store *st, const struct pd_model *m,
                                const char *path, int64_t *id, struct pd_err *err)
{
    return pd_cli_model_put_tok(st, m, NULL, path, id, err);
}

enum pd_status pd_cli_model_put_tok(struct pd_store *st, const struct pd_model *m,
                                    const struct pd_tok *tok, const char *path, int64_t *id,
                                    struct pd_err *err)
{

    const struct pd_gguf *g = m->gguf;
    char sha[65];
    pd_sha256_hex(g->base, (size_t)g->data_offset, sha);
    const char *slash = strrchr(path, '/');
    struct pd_model_ident mi = {slash ? slash + 1 : path, g->size, sha, pd_arch_name(m->hp.arch)};
    enum pd_status rc = pd_store_model_put(st, &mi, id, err);
    bool has = false;
    if (rc == PD_OK) {
        rc = pd_store_vocab_has(st, *id, &has, err);
    }
    if (rc != PD_OK || has) {
        return rc;
    }
    /* the first session of this model in this database: keep its pieces, so that its
     * alternatives read as text without the model file */
    struct pd_tok *own = NULL;
    if (!tok) {
        rc = pd_tok_open_gguf(g, &own, err);
        tok = own;
    }
    if (rc == PD_OK) {
        rc = pd_store_vocab_put(st, *id, pd_tok_n_vocab(tok), piece, (void *)tok, err);
    }
    pd_tok_close(&own);
    return rc;
}
