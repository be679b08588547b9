/* draw_kv.c - the KV pane: a layers x positions retention map (kept / evicted / sink /
 * protected recent window) as of the playhead, step boundaries and the cursor marked on a
 * ruler, policy and budget, shadow divergence on its own line, and a legend. Positions (and
 * layers, when there are more than rows) are binned; a bin shows the share of evicted
 * entries. Spans that prune-and-continue dropped from the cache show as pruned, apart from
 * evictions. A replay has no cache to ask, so its header counts what the map keeps. */
#include <curses.h>
#include <stdio.h>
#include <string.h>

#include "paint.h"
#include "panes.h"
#include "term.h"

void pd_draw_kv(const struct pd_app *a, const struct pd_rect *r, bool focus)
{
    char title[160];
    snprintf(title, sizeof title, " KV  %s%s  %zu events", a->kv_policy,
             a->kv_shadow && !strstr(a->kv_policy, "shadow") ? " (shadow)" : "", a->n_kv);
    pd_draw_title(r, title, focus);
    int y = r->y + 1, end = r->y + r->h, x = r->x + 1, w = r->w - 2;
    if (y < end) {
        char info[160];
        int o;
        if (a->kv_cap > 0) {
            o = snprintf(info, sizeof info, "used %u/%u", a->kv_used, a->kv_cap);
        } else {
            /* A replay has no cache to ask: count what the map keeps at the playhead. */
            size_t kept = 0, cells = 0;
            int nl = a->n_layer > 0 ? a->n_layer : 1;
            for (int l = 0; l < nl; l++) {
                for (size_t p = 0; p < a->n_visible; p++) {
                    enum pd_kv_cell c = pd_app_kv_cell(a, l, (int64_t)p);
                    cells++;
                    kept += c != PD_KV_CELL_EVICTED && c != PD_KV_CELL_PRUNED;
                }
            }
            o = snprintf(info, sizeof info, "kept %zu/%zu per layer", kept / (size_t)nl,
                         cells / (size_t)nl);
        }
        if (a->kv_shadow) {
            o += snprintf(info + o, sizeof info - (size_t)o, " (shadow: full cache)");
        }
        if (a->kv_budget) {
            snprintf(info + o, sizeof info - (size_t)o, "  budget %lld", (long long)a->kv_budget);
        }
        pd_draw_text(y++, x, w, info, strlen(info), A_NORMAL);
    }
    /* Shadow divergence has a line of its own, so it always fits. */
    if (y < end && a->kv_shadow && (a->has_div || a->kv_cap > 0)) {
        char div[96];
        if (a->has_div) {
            snprintf(div, sizeof div, "divergence KL %.3f bits, top-1 %s", a->div_kl_bits,
                     a->div_top1 ? "same" : "DIFF");
        } else {
            snprintf(div, sizeof div, "divergence: press d");
        }
        pd_draw_text(y++, x, w, div, strlen(div),
                     a->has_div && !a->div_top1 ? pd_term_style(PD_STYLE_STATUS_HOT) : A_NORMAL);
    }
    if (y < end) {
        int lx = x;
        static const struct {
            uint32_t cp;
            enum pd_style st;
            const char *label;
        } legend[] = {
            {0x2588, PD_STYLE_KV_KEPT, "kept "},
            {0x2591, PD_STYLE_KV_EVICTED, "evicted "},
            {0x2592, PD_STYLE_KV_EVICTED, "part "},
            {0x25B2, PD_STYLE_KV_SINK, "sink "},
            {0x2593, PD_STYLE_KV_PROTECTED, "recent "},
            {'x', PD_STYLE_PRUNED, "pruned"},
        };
        for (size_t i = 0; i < sizeof legend / sizeof legend[0] && lx + 8 < x + w; i++) {
            pd_draw_cp(y, lx++, legend[i].cp, pd_term_style(legend[i].st));
            lx += pd_draw_text(y, lx, x + w - lx, legend[i].label, strlen(legend[i].label),
                               pd_term_style(PD_STYLE_DIM));
        }
        y++;
    }
    int label_w = 4;
    int map_w = w - label_w;
    if (y >= end || map_w < 4 || a->n_visible == 0) {
        return;
    }
    size_t n = a->n_visible;
    size_t ppc = (n + (size_t)map_w - 1) / (size_t)map_w; /* positions per column */
    if (ppc == 0) {
        ppc = 1;
    }
    int cols = (int)((n + ppc - 1) / ppc);
    /* Ruler: step starts '|', pruned step starts 'x', the cursor 'v'. */
    pd_draw_printf(y, x, label_w, pd_term_style(PD_STYLE_DIM), "pos");
    for (size_t k = 0; k < a->n_steps; k++) {
        int64_t b = a->steps[k].rec.pos_begin;
        if (b >= (int64_t)n) {
            break;
        }
        int c = (int)((size_t)b / ppc);
        pd_draw_cp(y, x + label_w + c, a->steps[k].rec.pruned ? 'x' : '|',
                   pd_term_style(PD_STYLE_MARKER));
    }
    pd_draw_cp(y, x + label_w + (int)(a->cursor / ppc), 'v', A_BOLD);
    y++;
    int rows = end - y;
    if (rows <= 0) {
        return;
    }
    int nl = a->n_layer > 0 ? a->n_layer : 1;
    int lpr = (nl + rows - 1) / rows; /* layers per row */
    for (int row = 0; row * lpr < nl && y < end; row++, y++) {
        int l0 = row * lpr, l1 = l0 + lpr < nl ? l0 + lpr : nl;
        pd_draw_printf(y, x, label_w, pd_term_style(PD_STYLE_DIM), "L%-2d", l0);
        for (int c = 0; c < cols; c++) {
            size_t p0 = (size_t)c * ppc, p1 = p0 + ppc < n ? p0 + ppc : n;
            size_t tot = 0, ev = 0, sink = 0, prot = 0, pruned = 0;
            for (int l = l0; l < l1; l++) {
                for (size_t p = p0; p < p1; p++) {
                    enum pd_kv_cell cell = pd_app_kv_cell(a, l, (int64_t)p);
                    if (cell == PD_KV_CELL_PRUNED) {
                        pruned++; /* dropped by P: neither kept nor evicted */
                        continue;
                    }
                    tot++;
                    ev += cell == PD_KV_CELL_EVICTED;
                    sink += cell == PD_KV_CELL_SINK;
                    prot += cell == PD_KV_CELL_PROTECTED;
                }
            }
            uint32_t cp;
            enum pd_style st;
            if (tot == 0) {
                cp = pruned ? 'x' : ' ';
                st = PD_STYLE_PRUNED;
            } else if (ev == tot) {
                cp = 0x2591;
                st = PD_STYLE_KV_EVICTED;
            } else if (ev > 0) {
                cp = 0x2592;
                st = PD_STYLE_KV_EVICTED;
            } else if (sink > 0) {
                cp = 0x25B2;
                st = PD_STYLE_KV_SINK;
            } else if (prot > 0) {
                cp = 0x2593;
                st = PD_STYLE_KV_PROTECTED;
            } else {
                cp = 0x2588;
                st = PD_STYLE_KV_KEPT;
            }
            pd_draw_cp(y, x + label_w + c, cp, pd_term_style(st));
        }
    }
}
