/* unicode.c - code point class lookup over the generated range table, and the lenient
 * UTF-8 decoder the tokenizers use on raw text. See unicode.h. */
#include "unicode.h"

#include "utf8.h"
#include "unicode_tables.h"

unsigned pd_unicode_class(uint32_t cp)
{
    size_t lo = 0;
    size_t hi = pd_unicode_ranges_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct pd_unicode_range *r = &pd_unicode_ranges[mid];
        if (cp < r->lo) {
            hi = mid;
        } else if (cp > r->hi) {
            lo = mid + 1;
        } else {
            return r->flags;
        }
    }
    return 0;
}

static bool is_cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

size_t pd_unicode_decode_lenient(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char b = u[0];
    size_t len;
    uint32_t v;
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    if ((b & 0x40) == 0) {
        len = 0; /* lone continuation byte */
    } else if ((b & 0x20) == 0) {
        len = 2;
    } else if ((b & 0x10) == 0) {
        len = 3;
    } else if ((b & 0x08) == 0) {
        len = 4;
    } else {
        len = 0;
    }
    if (len == 0 || len > n) {
        *cp = PD_UNICODE_REPLACEMENT;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if (!is_cont(u[i])) {
            *cp = PD_UNICODE_REPLACEMENT;
            return 1;
        }
    }
    if (len == 2) {
        v = ((uint32_t)(b & 0x1F) << 6) | (u[1] & 0x3Fu);
    } else if (len == 3) {
        v = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3Fu);
    } else {
        v = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
            ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3Fu);
    }
    if (v > PD_UNICODE_MAX) {
        *cp = PD_UNICODE_REPLACEMENT;
        return 1;
    }
    *cp = v;
    return len;
}

size_t pd_unicode_encode(uint32_t cp, char *out)
{
    if (cp >= 0xD800 && cp <= 0xDFFF) {
        /* Strict UTF-8 refuses surrogates; the tokenizers keep them as 3-byte sequences. */
        unsigned char *o = (unsigned char *)out;
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    return pd_utf8_encode(cp, out);
}

const char *pd_unicode_version(void)
{
    return pd_unicode_tables_version;
}
