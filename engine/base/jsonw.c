/* jsonw.c - JSON string escaping and number formatting for command output. */
#include "jsonw.h"

#include <math.h>
#include <stdio.h>

#include "utf8.h"

bool pd_json_str(struct pd_buf *b, const char *s, size_t n)
{
    bool ok = pd_buf_append(b, "\"", 1);
    size_t i = 0;
    while (ok && i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            switch (c) {
            case '"': ok = pd_buf_append(b, "\\\"", 2); break;
            case '\\': ok = pd_buf_append(b, "\\\\", 2); break;
            case '\n': ok = pd_buf_append(b, "\\n", 2); break;
            case '\r': ok = pd_buf_append(b, "\\r", 2); break;
            case '\t': ok = pd_buf_append(b, "\\t", 2); break;
            default:
                if (c < 0x20 || c == 0x7F) {
                    ok = pd_buf_printf(b, "\\u%04x", c);
                } else {
                    ok = pd_buf_append(b, s + i, 1);
                }
            }
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = pd_utf8_decode(s + i, n - i, &cp);
        if (len == 0) {
            ok = pd_buf_append(b, "\xEF\xBF\xBD", 3);
            i++;
        } else {
            ok = pd_buf_append(b, s + i, len);
            i += len;
        }
    }
    return ok && pd_buf_append(b, "\"", 1);
}

bool pd_json_num(struct pd_buf *b, double v)
{
    if (!isfinite(v)) {
        return pd_buf_puts(b, "null");
    }
    return pd_buf_printf(b, "%.9g", v);
}
