/* fuzz_replay.c - database replay on arbitrary database files: the bytes become a file,
 * opened read-only; every session in it is listed and read back through the replay
 * reader, and its ponder record written. A corrupt file or row is refused with a
 * message, never a crash. Seeds: small databases ponder wrote. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "store.h"
#include "store_jsonl.h"
#include "store_replay.h"

static char g_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(g_path, sizeof g_path, "/tmp/pd-fuzz-replay-%ld.db", (long)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    int fd = open(g_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FUZZ_CHECK(fd >= 0, "a scratch file");
    FUZZ_CHECK(write(fd, data, size) == (ssize_t)size, "written");
    close(fd);
    struct pd_store_params p = pd_store_default_params();
    p.read_only = true;
    struct pd_store *st = NULL;
    struct pd_err err;
    if (pd_store_open(g_path, &p, &st, &err) != PD_OK) {
        FUZZ_CHECK(err.msg[0] != '\0', "a refusal has a message");
        unlink(g_path);
        return 0;
    }
    struct pd_store_session_info *list = NULL;
    size_t n = 0;
    if (pd_store_session_list(st, &list, &n, &err) == PD_OK) {
        for (size_t i = 0; i < n && i < 16; i++) {
            struct pd_replay *r = NULL;
            if (pd_replay_open(st, list[i].id, &r, &err) == PD_OK) {
                struct pd_token_rec tok[64];
                size_t got = 0;
                enum pd_status rs;
                do {
                    got = 0;
                    rs = pd_replay_read(r, tok, 64, &got, &err);
                    for (size_t k = 0; k < got; k++) { /* filled also on error */
                        pd_token_rec_free(&tok[k]);
                    }
                } while (rs == PD_OK && got > 0);
                pd_replay_close(&r);
            }
            FILE *out = fopen("/dev/null", "w");
            pd_jsonl_session_write(st, list[i].id, PD_JSONL_PONDER, out, &err);
            fclose(out);
        }
        for (size_t i = 0; i < n; i++) {
            pd_store_session_info_free(&list[i]);
        }
        free(list);
    }
    pd_store_close(&st);
    unlink(g_path);
    return 0;
}
