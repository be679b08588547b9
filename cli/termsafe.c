/* termsafe.c - untrusted text made safe for a terminal (termsafe.h). */
#include "termsafe.h"

#include <string.h>

#include "utf8.h"

#define REPLACEMENT 0xFFFDu

uint32_t pd_termsafe_cp(uint32_t cp, unsigned flags)
{
    if ((cp == '\n' || cp == '\t') && (flags & PD_TERMSAFE_KEEP_LINES)) {
        return cp;
    }
    if (cp < 0x20) {
        return 0x2400u + cp;
    }
    if (cp == 0x7f) {
        return 0x2421u;
    }
    if ((cp >= 0x80 && cp < 0xa0) || (cp >= 0x202a && cp <= 0x202e) ||
        (cp >= 0x2066 && cp <= 0x2069)) {
        return REPLACEMENT;
    }
    return cp;
}

/* Calls emit(ud, bytes, len) for each piece of the safe form of s[0..n). */
static bool each_piece(const char *s, size_t n, unsigned flags,
                       bool (*emit)(void *ud, const char *p, size_t len), void *ud)
{
    size_t i = 0, run = 0; /* s[run..i) is a run of bytes that pass unchanged */
    while (i < n) {
        uint32_t cp;
        size_t k = pd_utf8_decode(s + i, n - i, &cp);
        uint32_t safe = k ? pd_termsafe_cp(cp, flags) : REPLACEMENT;
        if (k && safe == cp) {
            i += k;
            continue;
        }
        if (i > run && !emit(ud, s + run, i - run)) {
            return false;
        }
        char enc[4];
        size_t m = pd_utf8_encode(safe, enc);
        if (!emit(ud, enc, m)) {
            return false;
        }
        i += k ? k : 1;
        run = i;
    }
    return i == run || emit(ud, s + run, i - run);
}

static bool emit_buf(void *ud, const char *p, size_t len)
{
    return pd_buf_append(ud, p, len);
}

static bool emit_file(void *ud, const char *p, size_t len)
{
    return fwrite(p, 1, len, ud) == len;
}

bool pd_termsafe_append(struct pd_buf *out, const char *s, size_t n, unsigned flags)
{
    return each_piece(s ? s : "", s ? n : 0, flags, emit_buf, out);
}

void pd_termsafe_write(FILE *f, const char *s, size_t n, unsigned flags)
{
    each_piece(s ? s : "", s ? n : 0, flags, emit_file, f);
}

struct cap_buf {
    char *out;
    size_t cap, len;
};

static bool emit_cap(void *ud, const char *p, size_t len)
{
    struct cap_buf *c = ud;
    if (c->len + len + 1 > c->cap) {
        /* keep whole code points only: cut p at the last lead byte that fits */
        size_t room = c->cap - c->len - 1;
        while (room > 0 && ((unsigned char)p[room] & 0xC0) == 0x80) {
            room--;
        }
        memcpy(c->out + c->len, p, room);
        c->len += room;
        return false;
    }
    memcpy(c->out + c->len, p, len);
    c->len += len;
    return true;
}

const char *pd_termsafe_str(const char *s, char *out, size_t cap)
{
    if (cap == 0) {
        return "";
    }
    struct cap_buf c = {out, cap, 0};
    if (s) {
        each_piece(s, strlen(s), 0, emit_cap, &c);
    }
    out[c.len] = '\0';
    return out;
}
