/* keys.h - the key binding table: one row per key, read by the dispatcher, the help
 * overlay and the generated key reference (docs/keys.md), so the three never disagree.
 *
 * Ownership: the table and all strings are static. Thread-safety: read-only. */
#ifndef PD_KEYS_H
#define PD_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "app.h"
#include "mem.h"

struct pd_key_binding {
    int key;              /* curses key code or character */
    const char *label;    /* how the key is written in help ("space", "Left", "h", ...) */
    enum pd_action act;
};

/* The table, n entries. */
const struct pd_key_binding *pd_keys_table(size_t *n);

/* The action bound to key (PD_ACT_NONE when unbound). */
enum pd_action pd_keys_lookup(int key);

/* One sentence about what an action does (static). */
const char *pd_keys_action_help(enum pd_action act);

/* Help overlay lines: for each action that has keys, in table order, the keys joined by
 * " " padded to a column, then the help text, then "(live)"/"(replay)" when the action
 * only works in one kind; then the `:` commands with their usage; then what every
 * abbreviated column and number means, with its unit. Writes line i into buf; returns
 * false past the last line. Line 0 is the first binding, not a title. */
bool pd_keys_help_line(size_t i, char *buf, size_t n);

/* The hint bar (htop-style): "key what" pairs for the focused pane and the run state,
 * then colour, pane, search, command, help and quit, as many whole pairs as fit in width
 * columns (help and quit kept). Writes buf (n bytes); returns its length. */
size_t pd_keys_hint(const struct pd_app *a, char *buf, size_t n, int width);

/* Number of help lines. */
size_t pd_keys_help_count(void);

/* The key reference as Markdown (docs/keys.md is this output). false on allocation
 * failure. */
bool pd_keys_markdown(struct pd_buf *out);

#endif
