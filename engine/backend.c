/* backend.c - backend names and the common close; the CUDA constructor lives in
 * backend_cuda.c (built with CUDA) or is the stub below that says it is not built. */
#include "config.h"

#include "backend.h"

#include <string.h>

static const char *const names[PD_BACKEND_KIND_COUNT] = {"cpu", "cuda"};
_Static_assert(sizeof names / sizeof names[0] == PD_BACKEND_KIND_COUNT, "backend names");

const char *pd_backend_name(enum pd_backend_kind k)
{
    return (unsigned)k < PD_BACKEND_KIND_COUNT ? names[k] : "?";
}

enum pd_backend_kind pd_backend_parse(const char *s)
{
    for (int i = 0; i < PD_BACKEND_KIND_COUNT; i++) {
        if (strcmp(s, names[i]) == 0) {
            return (enum pd_backend_kind)i;
        }
    }
    return PD_BACKEND_KIND_COUNT;
}

void pd_backend_close(struct pd_backend **b)
{
    if (b && *b) {
        (*b)->ops->destroy(*b);
        *b = NULL;
    }
}

#if !HAVE_CUDA
enum pd_status pd_backend_cuda_open(const struct pd_model *m, struct pd_backend **out,
                                    struct pd_err *err)
{
    (void)m;
    *out = NULL;
    return pd_err_set(err, PD_EUNSUPPORTED,
                      "cuda backend: this ponder was built without CUDA (-Dcuda=disabled or "
                      "no toolkit found)");
}
#endif
