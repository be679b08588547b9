/* jsonw.h - minimal JSON output helpers for machine-readable command output.
 *
 * Output only (parsing lives in store/). Strings are escaped per RFC 8259; bytes that are
 * not valid UTF-8 (a token can end inside a character) are written as U+FFFD so the
 * output is always valid JSON. Numbers that are not finite are written as null.
 * Pure functions appending to a caller-owned pd_buf; false on allocation failure. */
#ifndef PD_JSONW_H
#define PD_JSONW_H

#include <stdbool.h>
#include <stddef.h>

#include "mem.h"

/* Appends s[0..n) as a quoted JSON string. */
bool pd_json_str(struct pd_buf *b, const char *s, size_t n);
/* Appends a float with up to 9 significant digits (round-trips a float), or null. */
bool pd_json_num(struct pd_buf *b, double v);

#endif
