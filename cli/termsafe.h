/* termsafe.h - the one filter between untrusted text and a terminal.
 *
 * Text from models (vocabulary pieces, GGUF metadata), files (imported traces, prompts)
 * and databases can hold bytes a terminal acts on: escape sequences (ESC, U+001B), C1
 * controls (U+0080..U+009F: U+009B is a CSI on its own), bidirectional overrides that
 * reorder what is shown. Every human-readable output of ponder (the headless commands'
 * text mode, the workbench's panes) passes such text through these functions; machine
 * output (--json) stays exact, its own escaping makes it safe.
 *
 * Mapping (pd_termsafe_cp):
 *   U+0000..U+001F  -> U+2400 + cp (Control Pictures: ␀ ... ␟), except what the caller
 *                      keeps (newline and tab with PD_TERMSAFE_KEEP_LINES)
 *   U+007F          -> U+2421 (␡)
 *   U+0080..U+009F  -> U+FFFD
 *   U+202A..U+202E, U+2066..U+2069 (bidi embeddings, overrides, isolates) -> U+FFFD
 *   invalid UTF-8   -> U+FFFD per bad byte
 *   anything else   -> itself
 * Pure and thread-safe; buffers are borrowed for the call. */
#ifndef PD_TERMSAFE_H
#define PD_TERMSAFE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mem.h"

enum {
    PD_TERMSAFE_KEEP_LINES = 1u << 0, /* newline and tab pass as themselves */
};

/* The code point to show for cp (see the mapping above). */
uint32_t pd_termsafe_cp(uint32_t cp, unsigned flags);

/* Appends the safe form of s[0..n) to out; false when out cannot grow. */
bool pd_termsafe_append(struct pd_buf *out, const char *s, size_t n, unsigned flags);

/* Writes the safe form of s[0..n) to f. */
void pd_termsafe_write(FILE *f, const char *s, size_t n, unsigned flags);

/* The safe form of the NUL-terminated s in out[0..cap) (truncated at a code point, always
 * NUL-terminated); returns out, for printf arguments. s NULL gives "". */
const char *pd_termsafe_str(const char *s, char *out, size_t cap);

#endif
