/* afile.h - files written whole or not at all.
 *
 * An export, a plot or any other output file is written to a temporary file created next
 * to it (same folder, so the final rename is atomic): mkstemp's O_CREAT|O_EXCL never
 * opens an existing name, so a planted symlink or file is never followed or overwritten,
 * and the name is unpredictable. pd_afile_commit flushes, fsyncs the file, renames it over
 * the target and fsyncs the folder; any failure, pd_afile_abort, or a SIGINT/SIGTERM
 * (through pd_afile_unlink_all, which the program's signal handler calls) removes the
 * temporary file, so an interrupted write leaves the old target (or nothing) behind.
 *
 * Ownership: the struct is the caller's; its FILE and names are owned until commit or
 * abort. Thread-safety: each afile belongs to one thread; the registry of open temporary
 * names is safe to walk from a signal handler (fixed slots, atomic states). */
#ifndef PD_AFILE_H
#define PD_AFILE_H

#include <stdio.h>

#include "status.h"

struct pd_afile {
    FILE *f;        /* write here */
    char *path;     /* owned: the target */
    char *tmp;      /* owned: the temporary file next to it */
    int slot;       /* registry slot for signal cleanup, -1 when none was free */
};

/* Creates the temporary file for path (its folder must exist). PD_EINVAL for an empty
 * path or one naming a folder, PD_EIO naming the folder when it cannot be created there. */
enum pd_status pd_afile_open(struct pd_afile *a, const char *path, struct pd_err *err);

/* Flushes, fsyncs, closes and renames the temporary file over the target, then fsyncs the
 * folder. On failure the temporary file is removed and PD_EIO names what failed (a full
 * disk shows here). The afile is finished either way. */
enum pd_status pd_afile_commit(struct pd_afile *a, struct pd_err *err);

/* Closes and removes the temporary file (a finished or zeroed afile is fine). */
void pd_afile_abort(struct pd_afile *a);

/* Removes every temporary file still open in this process. Async-signal-safe: for a
 * SIGINT/SIGTERM handler, which then lets the signal end the process. */
void pd_afile_unlink_all(void);

#endif
