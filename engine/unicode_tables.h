/* unicode_tables.h - declarations of the generated code point class table.
 *
 * engine/unicode_tables.c is written by tests/tools/gen_unicode_tables.py (do not edit it
 * by hand); engine/unicode.c is its only reader. Flag bits are the PD_UNICODE_* values in
 * unicode.h. The table is static data: read-only, thread-safe. */
#ifndef PD_UNICODE_TABLES_H
#define PD_UNICODE_TABLES_H

#include <stddef.h>
#include <stdint.h>

/* One run of code points lo..hi (inclusive) that share the class bits `flags`. */
struct pd_unicode_range {
    uint32_t lo;
    uint32_t hi;
    uint8_t flags;
};

/* Sorted by lo, non-overlapping; code points outside every range have no class bits. */
extern const struct pd_unicode_range pd_unicode_ranges[];
extern const size_t pd_unicode_ranges_count;
/* Unicode version of the data the table was generated from ("15.0.0"). */
extern const char pd_unicode_tables_version[];

#endif
