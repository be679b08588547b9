/* layout.c - pane rectangles for a terminal size (rules in layout.h). */
#include "layout.h"

#include <string.h>

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static struct pd_rect rect(int y, int x, int h, int w)
{
    struct pd_rect r = {y, x, h < 0 ? 0 : h, w < 0 ? 0 : w};
    return r;
}

bool pd_rect_inside(const struct pd_rect *r, int rows, int cols)
{
    if (r->h < 0 || r->w < 0) {
        return false;
    }
    if (r->h == 0 || r->w == 0) {
        return true;
    }
    return r->y >= 0 && r->x >= 0 && r->y + r->h <= rows && r->x + r->w <= cols;
}

void pd_layout_compute(int rows, int cols, enum pd_pane focus, bool help, int n_help_lines,
                       struct pd_layout *out)
{
    memset(out, 0, sizeof *out);
    rows = rows < 0 ? 0 : rows;
    cols = cols < 0 ? 0 : cols;
    out->rows = rows;
    out->cols = cols;
    if (rows >= 1) {
        out->cmdline = rect(rows - 1, 0, 1, cols);
    }
    if (rows >= 2) {
        out->status = rect(rows - 2, 0, 1, cols);
    }
    if (rows < PD_LAYOUT_MIN_ROWS || cols < PD_LAYOUT_MIN_COLS) {
        out->too_small = true;
        return;
    }
    int body = rows - 2;
    if (cols >= PD_LAYOUT_WIDE_COLS) {
        int side = clampi(cols * 2 / 5, 44, 72);
        int tw = cols - side - 1;
        out->trace = rect(0, 0, body, tw);
        out->vsep = rect(0, tw, body, 1);
        int sx = tw + 1;
        int steps_h = clampi(body * 3 / 10, 5, body);
        int kv_h = clampi(body * 3 / 10, 6, body);
        int insp_h = body - steps_h - kv_h;
        if (insp_h < 8) {
            /* Give the inspector at least 8 rows, shrinking steps and KV evenly. */
            int need = 8 - insp_h;
            steps_h -= need / 2;
            kv_h -= need - need / 2;
            insp_h = 8;
        }
        out->steps = rect(0, sx, steps_h, side);
        out->inspect = rect(steps_h, sx, insp_h, side);
        out->kv = rect(steps_h + insp_h, sx, kv_h, side);
        out->show_steps = out->show_kv = true;
    } else {
        out->narrow = true;
        int bottom = clampi(body * 45 / 100, 10, 16);
        int th = body - bottom;
        out->trace = rect(0, 0, th, cols);
        int lw = cols / 2;
        struct pd_rect slot = rect(th, 0, bottom, lw);
        out->vsep = rect(th, lw, bottom, 1);
        out->inspect = rect(th, lw + 1, bottom, cols - lw - 1);
        if (focus == PD_PANE_KV) {
            out->kv = slot;
            out->show_kv = true;
        } else {
            out->steps = slot;
            out->show_steps = true;
        }
    }
    out->overlay = help;
    out->overlay_lines = n_help_lines;
    if (help) {
        int w = clampi(cols - 4, 0, 84);
        int h = clampi(n_help_lines + 4, 0, rows - 2);
        out->help = rect((rows - h) / 2, (cols - w) / 2, h, w);
    }
}
