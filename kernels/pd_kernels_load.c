/* pd_kernels_load.c - pd_kernels_cuda(): the CUDA provider, loaded on first use.
 *
 * The nvcc-built kernels, cudart and cuBLAS live in a module of their own (ponder-cuda.so)
 * that ponder opens only when a context asks for the device engine (or the automatic
 * choice asks whether a GPU is there). Linked into the program, the CUDA libraries cost
 * every command ~0.5 s of start-up (their static initialisers), a `ponder --version` or a
 * replay included, and the program would not start at all where they are not installed.
 * In a ponder built without CUDA there is no module: pd_kernels_cuda() returns NULL and
 * pd_kernels_cuda_why() says so. */
#include "pd_cuda.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct pd_kernels *loaded;
static char why[PATH_MAX + 512];

#if HAVE_CUDA_MODULE
/* $PONDER_CUDA_MODULE when set (and only it); else the first that exists of: kernels/ of
 * the build folder holding this program (at 0-2 levels up: ponder, tests/, tests/gpu/),
 * then where meson installs it relative to the program (<exe>/../LIBDIR/ponder) and by its
 * configured path. Candidates are relative to the program, not to the folder it was built
 * in, so a build folder copied elsewhere still finds its module. */
static void module_path(char *out, size_t n)
{
    const char *env = getenv("PONDER_CUDA_MODULE");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[l > 0 ? l : 0] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
        *slash = '\0';
        static const char *const rel[] = {"/kernels/", "/../kernels/", "/../../kernels/",
                                          "/../" PD_CUDA_MODULE_LIBDIR "/ponder/"};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            snprintf(out, n, "%.3800s%sponder-cuda.so", exe, rel[i]);
            if (access(out, R_OK) == 0) {
                return;
            }
        }
    }
    snprintf(out, n, "%s", PD_CUDA_MODULE_INSTALLED);
}

static void load(void)
{
    char path[PATH_MAX];
    module_path(path, sizeof path);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, sizeof why, "cannot load the CUDA module: %s (PONDER_CUDA_MODULE names "
                                  "it)", e ? e : path);
        return;
    }
    const struct pd_kernels *(*entry)(void);
    *(void **)&entry = dlsym(h, "pd_kernels_cuda_module");
    if (!entry) {
        snprintf(why, sizeof why, "%s: no pd_kernels_cuda_module entry", path);
        dlclose(h);
        return;
    }
    loaded = entry(); /* the module stays loaded for the program's life */
}
#else
static void load(void)
{
    snprintf(why, sizeof why, "this ponder was built without CUDA (-Dcuda=disabled or no "
                              "toolkit found)");
}
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;

const struct pd_kernels *pd_kernels_cuda(void)
{
    pthread_once(&once, load);
    return loaded;
}

const char *pd_kernels_cuda_why(void)
{
    pthread_once(&once, load);
    return loaded ? "" : why;
}
