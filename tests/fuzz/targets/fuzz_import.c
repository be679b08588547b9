/* fuzz_import.c - the JSONL importer on arbitrary lines, into a fresh in-memory database:
 * a line imports or is refused with a message naming it; an imported session exports as
 * a ponder record that imports again and exports to the same bytes. */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "store.h"
#include "store_jsonl.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* A new empty database file on tmpfs (unlinked first: each input starts from nothing). */
static struct pd_store *fresh(int which)
{
    char path[96];
    snprintf(path, sizeof path, "/dev/shm/pd-fuzz-import-%ld-%d.db", (long)getpid(), which);
    const char *side[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char p[112];
        snprintf(p, sizeof p, "%s%s", path, side[i]);
        unlink(p);
    }
    struct pd_store *st = NULL;
    struct pd_err err;
    if (pd_store_open(path, NULL, &st, &err) != PD_OK) {
        fprintf(stderr, "fuzz_import: %s\n", err.msg);
        FUZZ_CHECK(0, "a scratch database");
    }
    return st;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size > (1u << 20)) {
        return 0;
    }
    struct pd_store *st = fresh(0);
    struct pd_err err;
    int64_t id = 0;
    if (pd_jsonl_import_record(st, (const char *)data, size, "fuzz:1", &id, &err) != PD_OK) {
        FUZZ_CHECK(strncmp(err.msg, "fuzz:1", 6) == 0, "the refusal names the line");
        pd_store_close(&st);
        return 0;
    }
    char *a = NULL, *b = NULL;
    FUZZ_CHECK(pd_jsonl_session_record(st, id, PD_JSONL_PONDER, &a, &err) == PD_OK,
               "an imported session exports");
    struct pd_store *st2 = fresh(1);
    int64_t id2 = 0;
    if (pd_jsonl_import_record(st2, a, strlen(a), "fuzz:re", &id2, &err) != PD_OK) {
        fprintf(stderr, "re-import failed: %s\n", err.msg);
        FUZZ_CHECK(0, "its export imports again");
    }
    FUZZ_CHECK(pd_jsonl_session_record(st2, id2, PD_JSONL_PONDER, &b, &err) == PD_OK,
               "the re-import exports");
    /* the session's id and times differ; everything from "messages" on is the same */
    const char *ma = strstr(a, ",\"messages\":"), *mb = strstr(b, ",\"messages\":");
    FUZZ_CHECK(ma && mb && strcmp(ma, mb) == 0, "export, import, export is stable");
    free(a);
    free(b);
    pd_store_close(&st2);
    pd_store_close(&st);
    return 0;
}
