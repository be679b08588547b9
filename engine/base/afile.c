/* afile.c - atomic whole-file writes through a temporary file (afile.h). */
#include "afile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mem.h"

/* Temporary names a signal handler may have to remove: fixed slots, each 0 (free), 1
 * (being filled) or 2 (live: its name complete); the handler reads live slots only. */
#define SLOTS 16
static char slot_name[SLOTS][4200];
static atomic_int slot_state[SLOTS];

static int slot_take(const char *tmp)
{
    size_t n = strlen(tmp);
    if (n >= sizeof slot_name[0]) {
        return -1;
    }
    for (int i = 0; i < SLOTS; i++) {
        int want = 0;
        if (atomic_compare_exchange_strong(&slot_state[i], &want, 1)) {
            memcpy(slot_name[i], tmp, n + 1);
            atomic_store(&slot_state[i], 2);
            return i;
        }
    }
    return -1; /* more than SLOTS outputs at once: this one is not removed on a signal */
}

static void slot_release(int i)
{
    if (i >= 0) {
        atomic_store(&slot_state[i], 0);
    }
}

void pd_afile_unlink_all(void)
{
    for (int i = 0; i < SLOTS; i++) {
        if (atomic_load(&slot_state[i]) == 2) {
            unlink(slot_name[i]);
        }
    }
}

/* The folder part of path ("." when none). */
static void dir_of(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash) {
        snprintf(out, cap, ".");
    } else {
        slash[slash == out ? 1 : 0] = '\0';
    }
}

enum pd_status pd_afile_open(struct pd_afile *a, const char *path, struct pd_err *err)
{
    memset(a, 0, sizeof *a);
    a->slot = -1;
    size_t n = path ? strlen(path) : 0;
    if (n == 0) {
        return pd_err_set(err, PD_EINVAL, "output file name is empty");
    }
    if (path[n - 1] == '/') {
        return pd_err_set(err, PD_EINVAL, "%s: names a folder, not a file", path);
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        return pd_err_set(err, PD_EINVAL, "%s: is a folder, not a file", path);
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    a->path = pd_strdup(path);
    a->tmp = malloc(n + 32);
    if (!a->path || !a->tmp) {
        pd_afile_abort(a);
        return pd_err_set(err, PD_ENOMEM, "%s: out of memory", path);
    }
    /* "<dir>/.<base>.tmp.XXXXXX": hidden, unique, in the target's folder */
    snprintf(a->tmp, n + 32, "%s/.%s.tmp.XXXXXX", dir, base);
    int fd = mkstemp(a->tmp);
    if (fd < 0) {
        enum pd_status st = pd_err_set(err, PD_EIO, "%s: cannot create a file in %s: %s",
                                       path, dir, strerror(errno));
        free(a->tmp);
        a->tmp = NULL;
        pd_afile_abort(a);
        return st;
    }
    a->slot = slot_take(a->tmp);
    fchmod(fd, 0644); /* mkstemp makes it 0600; outputs are ordinary files */
    a->f = fdopen(fd, "wb");
    if (!a->f) {
        close(fd);
        enum pd_status st = pd_err_set(err, PD_EIO, "%s: %s", a->tmp, strerror(errno));
        pd_afile_abort(a);
        return st;
    }
    return PD_OK;
}

void pd_afile_abort(struct pd_afile *a)
{
    if (a->f) {
        fclose(a->f);
        a->f = NULL;
    }
    if (a->tmp) {
        unlink(a->tmp);
    }
    slot_release(a->slot);
    a->slot = -1;
    free(a->tmp);
    free(a->path);
    a->tmp = a->path = NULL;
}

enum pd_status pd_afile_commit(struct pd_afile *a, struct pd_err *err)
{
    enum pd_status st = PD_OK;
    if (!a->f) {
        return pd_err_set(err, PD_EINVAL, "output file is not open");
    }
    if (fflush(a->f) != 0 || ferror(a->f)) {
        st = pd_err_set(err, PD_EIO, "%s: write failed: %s", a->path, strerror(errno));
    } else if (fsync(fileno(a->f)) != 0) {
        st = pd_err_set(err, PD_EIO, "%s: fsync: %s", a->path, strerror(errno));
    }
    if (fclose(a->f) != 0 && st == PD_OK) {
        st = pd_err_set(err, PD_EIO, "%s: close: %s", a->path, strerror(errno));
    }
    a->f = NULL;
    if (st == PD_OK && rename(a->tmp, a->path) != 0) {
        st = pd_err_set(err, PD_EIO, "%s: cannot replace it: %s", a->path, strerror(errno));
    }
    if (st != PD_OK) {
        pd_afile_abort(a);
        return st;
    }
    slot_release(a->slot); /* renamed: nothing left to remove */
    a->slot = -1;
    char dir[4096];
    dir_of(a->path, dir, sizeof dir);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd); /* the rename itself reaches the disk */
        close(dfd);
    }
    free(a->tmp);
    free(a->path);
    a->tmp = a->path = NULL;
    return PD_OK;
}
