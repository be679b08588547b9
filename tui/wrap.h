/* wrap.h - the trace pane's line layout: token bytes wrapped into screen lines.
 *
 * The trace is a sequence of items (tokens). Each item shows a short prefix (a step or
 * role marker, static UTF-8, may be "") followed by its bytes. A code point may start in
 * one token and end in the next (tokens can split UTF-8 characters), so decoding runs
 * over the concatenated bytes; the character belongs to the token holding its first byte.
 * Bytes that do not decode are shown as U+FFFD one byte at a time; control characters as
 * their Control Pictures (U+2400 + c); tabs as spaces to the next multiple of 4; '\n'
 * ends a line; lines break after a space when the line has one (a word that does not fit
 * moves to the next line whole, a space that does not fit hangs off the end), and inside
 * a word only when it is longer than the line; wide characters take two columns and never
 * straddle the right edge;
 * zero-width code points are not drawn. An incomplete sequence at the very end of the
 * data is held back until more bytes arrive.
 *
 * Lines are kept as start positions. pd_wrap_update continues from the start of the last
 * line, so appending tokens costs O(new text + one line), not O(trace).
 *
 * Pure: no curses, no I/O. Locale: uses wcwidth (the caller sets LC_CTYPE to UTF-8).
 * Ownership: struct pd_wrap owns its line array; sources are borrowed for each call. */
#ifndef PD_WRAP_H
#define PD_WRAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Where the text comes from. Callbacks return borrowed pointers valid for the call. */
struct pd_wrap_src {
    size_t n; /* items available */
    const char *(*bytes)(const void *ud, size_t i, size_t *len);
    const char *(*prefix)(const void *ud, size_t i); /* NULL callback or "": none */
    const void *ud;
};

/* A position in the display bytes: item, then offset into prefix + text. */
struct pd_wrap_pos {
    size_t item;
    uint32_t off;
};

struct pd_wrap {
    int width;                 /* columns; >= 1 */
    struct pd_wrap_pos *lines; /* owned: [n_lines] start of each line */
    size_t n_lines;
    size_t cap;
};

/* One drawn cell. */
struct pd_wrap_cell {
    uint32_t cp;      /* code point to draw (already mapped: U+FFFD, control pictures) */
    int width;        /* columns (0..4; tabs up to 4) */
    size_t item;      /* the token it belongs to */
    bool in_prefix;   /* part of the item's marker, not its text */
    bool newline;     /* a '\n' of the text: ends the line (drawn as blank when width 1) */
};

struct pd_wrap_iter {
    const struct pd_wrap_src *src;
    struct pd_wrap_pos pos;
    int col;                   /* -1 once the line has ended */
    int width;
    struct pd_wrap_pos end;    /* where the next line starts (has_end) */
    bool has_end;
};

void pd_wrap_init(struct pd_wrap *w, int width);
void pd_wrap_deinit(struct pd_wrap *w);

/* Forgets every line and sets the width (values < 1 become 1). */
void pd_wrap_reset(struct pd_wrap *w, int width);

/* Drops the lines from the one containing the start of `item` on, so the next update
 * re-wraps from there (after an item's prefix or text changed, or items were removed). */
void pd_wrap_invalidate(struct pd_wrap *w, size_t item);

/* Wraps everything in src not wrapped yet (re-wrapping the last line). PD_ENOMEM when
 * the line array cannot grow (the layout is then still consistent, just shorter). */
enum pd_status pd_wrap_update(struct pd_wrap *w, const struct pd_wrap_src *src);

/* Index of the line that holds the first cell of `item` (its prefix or text); the last
 * line when item is past the end. 0 when there are no lines. */
size_t pd_wrap_line_of(const struct pd_wrap *w, const struct pd_wrap_src *src, size_t item);

/* Starts iterating the cells of line `line` (< n_lines). */
void pd_wrap_iter_line(const struct pd_wrap *w, const struct pd_wrap_src *src, size_t line,
                       struct pd_wrap_iter *it);

/* Next cell of the line; false at the line's end. */
bool pd_wrap_iter_next(struct pd_wrap_iter *it, struct pd_wrap_cell *c);

/* Maps a decoded code point to what is drawn and its width at column col (pure):
 * controls -> Control Pictures, C1 and unprintable -> U+FFFD, tab -> spaces. */
uint32_t pd_wrap_glyph(uint32_t cp, int col, int *width);

#endif
