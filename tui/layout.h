/* layout.h - where each pane goes for a terminal size: a pure function of (rows, cols)
 * plus which pane has focus and whether help is open.
 *
 * Wide terminals (>= 120 columns) put the trace on the left and steps, inspector and KV
 * map stacked on the right. Narrower ones (80..119) put the trace on top and split the
 * bottom between the inspector and one shared slot that shows the steps list, or the KV
 * map while that pane has focus. The last two rows are the status bar and the command /
 * message line. Below 80x24 the layout reports too_small and only those two rows and a
 * notice are drawn. Every rectangle lies inside the screen and has non-negative size,
 * whatever the input (tested down to 0x0).
 * Pure, thread-safe. */
#ifndef PD_LAYOUT_H
#define PD_LAYOUT_H

#include <stdbool.h>

#include "app.h"

#define PD_LAYOUT_MIN_ROWS 24
#define PD_LAYOUT_MIN_COLS 80
#define PD_LAYOUT_WIDE_COLS 120

struct pd_rect {
    int y, x, h, w;
};

struct pd_layout {
    int rows, cols;
    bool too_small;
    bool narrow;            /* steps and KV share one slot */
    bool show_steps;
    bool show_kv;
    struct pd_rect trace;   /* each pane rect includes its one-row title */
    struct pd_rect steps;
    struct pd_rect inspect;
    struct pd_rect kv;
    struct pd_rect vsep;    /* vertical separator column (w 0 when none) */
    struct pd_rect status;
    struct pd_rect cmdline;
    struct pd_rect help;    /* overlay box (h 0 when help is closed) */
    bool overlay;           /* the help argument it was computed for */
    int overlay_lines;      /* and n_help_lines */
};

/* Computes the layout. n_help_lines sizes the help box. Negative sizes count as 0. */
void pd_layout_compute(int rows, int cols, enum pd_pane focus, bool help, int n_help_lines,
                       struct pd_layout *out);

/* True when r lies inside a rows x cols screen (h, w >= 0). */
bool pd_rect_inside(const struct pd_rect *r, int rows, int cols);

#endif
