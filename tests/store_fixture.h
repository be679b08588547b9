/* store_fixture.h - a fresh store in a temporary folder for the store tests (header only,
 * included by one test file each). store_fx_open makes /tmp/pd_NAME_XXXXXX and opens
 * NAME.db in it; store_fx_close closes the store and removes the folder. STORE_FX(NAME)
 * defines the cmocka fx_setup / fx_teardown pair over a heap struct store_fx. */
#ifndef PD_STORE_FIXTURE_H
#define PD_STORE_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

struct store_fx {
    char dir[64];
    char path[128];
    struct pd_store *st;
};

static inline int store_fx_open(struct store_fx *f, const char *name)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/pd_%s_XXXXXX", name);
    if (!mkdtemp(f->dir)) {
        fprintf(stderr, "mkdtemp %s failed\n", f->dir);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/%s.db", f->dir, name);
    struct pd_err err;
    if (pd_store_open(f->path, NULL, &f->st, &err) != PD_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

static inline int store_fx_close(struct store_fx *f)
{
    pd_store_close(&f->st);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot remove %s\n", f->dir);
        return -1;
    }
    return 0;
}

#define STORE_FX(name)                                                                   \
    static int fx_setup(void **state)                                                    \
    {                                                                                    \
        struct store_fx *f = calloc(1, sizeof *f);                                       \
        if (!f || store_fx_open(f, name)) {                                              \
            free(f);                                                                     \
            return -1;                                                                   \
        }                                                                                \
        *state = f;                                                                      \
        return 0;                                                                        \
    }                                                                                    \
    static int fx_teardown(void **state)                                                 \
    {                                                                                    \
        struct store_fx *f = *state;                                                     \
        int rc = store_fx_close(f);                                                      \
        free(f);                                                                         \
        return rc;                                                                       \
    }

#endif
