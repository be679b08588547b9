/* model_id.c - a model's identity row in the store (model_id.h). */
#include "model_id.h"

#include <string.h>

#include "sha256.h"

enum pd_status pd_cli_model_put(struct pd_store *st, const struct pd_model *m,
                                const char *path, int64_t *id, struct pd_err *err)
{
    return pd_cli_model_put_tok(st, m, NULL, path, id, err);
}

enum pd_status pd_cli_model_put_tok(struct pd_store *st, const struct pd_model *m,
                                    const struct pd_tok *tok, const char *path, int64_t *id,
                                    struct pd_err *err)
{
    (void)tok;
    const struct pd_gguf *g = m->gguf;
    char sha[65];
    pd_sha256_hex(g->base, (size_t)g->data_offset, sha);
    const char *slash = strrchr(path, '/');
    struct pd_model_ident mi = {slash ? slash + 1 : path, g->size, sha, pd_arch_name(m->hp.arch)};
    return pd_store_model_put(st, &mi, id, err);
}
