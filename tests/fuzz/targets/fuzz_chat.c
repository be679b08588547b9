/* fuzz_chat.c - chat templates: detection on arbitrary template text and architecture
 * names, then rendering arbitrary messages with every family and think mode. Detection
 * always gives a known family; rendering succeeds on valid UTF-8 (or refuses the mode a
 * family cannot do) and leaves the output untouched on failure. */
#include <stdint.h>
#include <string.h>

#include "chat.h"
#include "fuzz_common.h"
#include "mem.h"
#include "utf8.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *s = (const char *)data;
    /* first byte: where the template ends and the architecture begins */
    size_t cut = size ? data[0] % (size + 1) : 0;
    struct pd_chat_format fmt;
    pd_chat_detect_text(s, cut, s + cut, size - cut, &fmt);
    FUZZ_CHECK((unsigned)fmt.family < PD_CHAT_FAMILY_COUNT, "a known family");
    /* the input as up to three messages split at NUL bytes, as NUL-terminated strings */
    char *copy = pd_strndup(s, size);
    if (!copy) {
        return 0;
    }
    struct pd_chat_msg msgs[3];
    size_t n = 0, at = 0;
    while (n < 3 && at <= size) {
        msgs[n].role = (enum pd_chat_role)(n % PD_CHAT_ROLE_COUNT);
        msgs[n].content = copy + at;
        at += strlen(copy + at) + 1;
        n++;
    }
    for (int f = 0; f < PD_CHAT_FAMILY_COUNT; f++) {
        struct pd_chat_format ff;
        pd_chat_format_default((enum pd_chat_family)f, &ff);
        for (int t = 0; t < PD_CHAT_THINK_COUNT; t++) {
            struct pd_buf b;
            pd_buf_init(&b);
            pd_buf_puts(&b, "x");
            struct pd_err err;
            enum pd_status st = pd_chat_render(&ff, msgs, n, true, (enum pd_chat_think)t, &b,
                                               &err);
            if (st != PD_OK) {
                FUZZ_CHECK(b.len == 1, "output untouched on failure");
                FUZZ_CHECK(err.msg[0] != '\0', "a refusal has a message");
            } else {
                FUZZ_CHECK(pd_utf8_valid(b.data, b.len), "valid UTF-8 out");
            }
            pd_buf_deinit(&b);
        }
    }
    free(copy);
    return 0;
}
