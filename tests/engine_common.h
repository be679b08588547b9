/* engine_common.h - helpers shared by the engine tests: temp dirs, running mkmodel,
 * locating the shared test models. Header-only (static functions) for test programs. */
#ifndef PD_TEST_ENGINE_COMMON_H
#define PD_TEST_ENGINE_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs mkmodel with the given arguments (NULL-terminated) writing out; returns 0 on
 * success. The tool's path comes from $PONDER_MKMODEL (set by meson). */
static inline int test_mkmodel(const char *const *args, const char *out)
{
    const char *tool = getenv("PONDER_MKMODEL");
    if (!tool) {
        fprintf(stderr, "PONDER_MKMODEL is not set\n");
        return -1;
    }
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)tool;
    for (int i = 0; args[i] && n < 28; i++) {
        argv[n++] = (char *)args[i];
    }
    argv[n++] = "--out";
    argv[n++] = (char *)out;
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        execv(tool, argv);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
        return -1;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Path of a file in the shared models folder, or NULL when absent (caller frees). */
static inline char *test_shared_model(const char *name)
{
    const char *dir = getenv("PONDER_TEST_MODELS");
    char buf[4096];
    if (dir && *dir) {
        snprintf(buf, sizeof buf, "%s/%s", dir, name);
    } else {
        const char *root = getenv("PONDER_SOURCE_ROOT");
        snprintf(buf, sizeof buf, "%s/../shared/models/%s", root ? root : ".", name);
    }
    if (access(buf, R_OK) != 0) {
        return NULL;
    }
    return strdup(buf);
}

/* A fresh temporary directory (caller frees the string; files are left for the OS). */
static inline char *test_tmpdir(void)
{
    char tmpl[] = "/tmp/ponder-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

#endif
