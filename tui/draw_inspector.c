/* draw_inspector.c - the inspector: the cursor token's text, logprob, probability,
 * surprisal and entropy; the top-k alternatives as a bar chart (the produced token marked,
 * the selected one highlighted for steering); the per-layer attention strip and the
 * most-attended earlier tokens from the attention summary blob; with every head's rows of
 * the cursor token (:head), a layers x heads grid and the selected head's most attended. */
#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "utf8.h"
#include "paint.h"
#include "panes.h"
#include "term.h"

#define ATTN_LIST_MAX 8

/* Token bytes as a quoted, escaped string ("\n" shown as \n, invalid bytes as \xNN). */
static void escape(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') {
            o += (size_t)snprintf(out + o, cap - o, "\\n");
        } else if (c == '\t') {
            o += (size_t)snprintf(out + o, cap - o, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        } else if (c >= 0x80) {
            uint32_t cp;
            size_t l = pd_utf8_decode(s + i, n - i, &cp);
            if (l == 0) {
                o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
            } else {
                memcpy(out + o, s + i, l);
                o += l;
                i += l - 1;
            }
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

static void alt_name(const struct pd_app *a, int32_t id, char *out, size_t cap)
{
    size_t len;
    const char *p = pd_app_piece(a, id, &len);
    if (p) {
        char esc[64];
        escape(p, len, esc, sizeof esc);
        snprintf(out, cap, "\"%s\"", esc);
    } else {
        snprintf(out, cap, "#%d", id);
    }
}

/* Bar of v in [0, 1] over w cells with eighth-block resolution. */
static void draw_bar(int y, int x, int w, double v, unsigned long at)
{
    static const uint32_t eighths[8] = {0x258F, 0x258E, 0x258D, 0x258C,
                                        0x258B, 0x258A, 0x2589, 0x2588};
    if (!(v > 0)) {
        return;
    }
    double cells = v * w;
    int full = (int)cells;
    for (int i = 0; i < full && i < w; i++) {
        pd_draw_cp(y, x + i, 0x2588, at);
    }
    int frac = (int)((cells - full) * 8);
    if (full < w && frac > 0) {
        pd_draw_cp(y, x + full, eighths[frac - 1], at);
    }
}

struct attn_item {
    uint32_t pos;
    float w;
};

static const uint32_t shade[PD_HEAT_LEVELS] = {0x00B7, 0x2581, 0x2582, 0x2583,
                                               0x2584, 0x2585, 0x2586, 0x2588};

static int weight_level(float v)
{
    int level = !(v > 0) ? 0 : 1 + (int)(v * (PD_HEAT_LEVELS - 1) * 0.999f);
    return level >= PD_HEAT_LEVELS ? PD_HEAT_LEVELS - 1 : level;
}

/* The token at position pos (tokens are in position order; a pruned span leaves gaps). */
static const struct pd_token_rec *find_pos(const struct pd_app *a, uint32_t pos)
{
    size_t lo = 0, hi = a->n_visible;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a->toks[mid].pos < (int64_t)pos) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < a->n_visible && a->toks[lo].pos == (int64_t)pos ? &a->toks[lo] : NULL;
}

/* Layers x heads: each cell the strongest weight of that head's row (how focused it is);
 * the selected head's column is marked in the header. Returns the next free line. */
static int draw_heads(const struct pd_app *a, int y, int end, int x, int w)
{
    const struct pd_attn_rows *r = a->heads;
    if (y >= end || r->n_layer == 0) {
        return y;
    }
    int label = 5, cols = w - label;
    uint32_t nh = r->n_head < (uint32_t)(cols > 0 ? cols : 0) ? r->n_head : (uint32_t)cols;
    int used = pd_draw_printf(y, x, w, pd_term_style(PD_STYLE_DIM), "heads H0-%u, max weight",
                              r->n_head - 1);
    if (a->colour_head >= 0 && used + 8 < w) {
        pd_draw_printf(y, x + used, w - used, A_BOLD, "  H%d", (int)a->colour_head);
    }
    y++;
    /* Rows that fit, leaving the selected head's list two lines at least; when not every layer
     * fits, the rows start at the :layer one. */
    int rows = end - y - (a->colour_head >= 0 ? 2 : 0);
    rows = rows < 1 ? 1 : rows;
    uint32_t first = 0;
    if ((uint32_t)rows < r->n_layer && a->colour_layer >= 0) {
        while (first < r->n_layer && r->layers[first] < (uint32_t)a->colour_layer) {
            first++;
        }
        first = first + (uint32_t)rows > r->n_layer ? r->n_layer - (uint32_t)rows : first;
    }
    for (uint32_t li = first; li < r->n_layer && li < first + (uint32_t)rows && y < end; li++) {
        bool sel = a->colour_layer >= 0 && r->layers[li] == (uint32_t)a->colour_layer;
        pd_draw_printf(y, x, label, sel ? A_BOLD : A_NORMAL, "L%-3u", r->layers[li]);
        for (uint32_t h = 0; h < nh; h++) {
            const float *row = r->w[li] + (size_t)h * r->n_slots[li];
            float best = 0;
            for (uint32_t k = 0; k < r->n_slots[li]; k++) {
                best = row[k] > best ? row[k] : best;
            }
            int level = weight_level(best);
            unsigned long at = level ? pd_term_heat(level) : A_NORMAL;
            if ((int32_t)h == a->colour_head) {
                at |= A_REVERSE;
            }
            pd_draw_cp(y, x + label + (int)h, shade[level], at);
        }
        y++;
    }
    return y;
}

/* The selected head's strongest earlier positions, by weight. */
static int head_items(const struct pd_app *a, struct attn_item *items)
{
    int n = 0;
    size_t lim = (size_t)a->heads_pos < a->head_w_n ? (size_t)a->heads_pos : a->head_w_n;
    for (size_t p = 0; p < lim; p++) {
        float v = a->head_w[p];
        if (!(v > 0)) {
            continue;
        }
        if (n < ATTN_LIST_MAX) {
            items[n++] = (struct attn_item){(uint32_t)p, v};
        } else {
            int lo = 0;
            for (int m = 1; m < n; m++) {
                lo = items[m].w < items[lo].w ? m : lo;
            }
            if (items[lo].w < v) {
                items[lo] = (struct attn_item){(uint32_t)p, v};
            }
        }
    }
    for (int i = 1; i < n; i++) {
        for (int j = i; j > 0 && items[j].w > items[j - 1].w; j--) {
            struct attn_item tmp = items[j];
            items[j] = items[j - 1];
            items[j - 1] = tmp;
        }
    }
    return n;
}

void pd_draw_inspector(const struct pd_app *a, const struct pd_rect *r, bool focus)
{
    if (a->n_visible == 0) {
        pd_draw_title(r, " inspector", focus);
        return;
    }
    const struct pd_token_rec *t = &a->toks[a->cursor];
    char title[96];
    snprintf(title, sizeof title, " inspector  pos %lld  %s%s", (long long)t->pos,
             pd_role_name(t->role), (t->flags & PD_TOKF_FORCED) ? " forced" : "");
    pd_draw_title(r, title, focus);
    int y = r->y + 1, end = r->y + r->h, x = r->x + 1, w = r->w - 2;
    char esc[160];
    escape(t->text ? t->text : "", t->text_len, esc, sizeof esc);
    if (y < end) {
        pd_draw_printf(y++, x, w, A_BOLD, "\"%s\"  id %d", esc, t->id);
    }
    float s = pd_app_surprisal(a, a->cursor);
    if (y < end) {
        if (isnan(t->logprob)) {
            pd_draw_printf(y++, x, w, pd_term_style(PD_STYLE_DIM), "not scored (first token "
                                                                   "or imported text)");
        } else {
            int used = pd_draw_printf(y, x, w, A_NORMAL,
                                      w >= 46 ? "logprob %.3f  p %.3f  surprisal "
                                              : "lp %.3f p %.3f s ",
                                      t->logprob, exp(t->logprob));
            char sb[16];
            snprintf(sb, sizeof sb, "%.2f b", s);
            pd_draw_text(y++, x + used, w - used, sb, strlen(sb), pd_term_heat(pd_heat_level(s)));
        }
    }
    if (y < end && !isnan(t->entropy)) {
        if (t->flags & PD_TOKF_ENTROPY_EST) {
            /* a remote engine gave only its top-k: the rest of the mass is one bucket */
            pd_draw_printf(y++, x, w, A_NORMAL, "entropy ~%.2f bits (estimate: top-%u + rest)",
                           t->entropy, t->n_top);
        } else {
            pd_draw_printf(y++, x, w, A_NORMAL, "entropy %.2f bits  top-%u", t->entropy,
                           t->n_top);
        }
    }
    /* Top-k alternatives. */
    int name_w = 14, bar_w = w - name_w - 11;
    if (bar_w < 4) {
        bar_w = 4;
    }
    for (int k = 0; k < t->n_top && y < end; k++) {
        double p = exp(t->top[k].logprob);
        char name[64];
        alt_name(a, t->top[k].id, name, sizeof name);
        bool chosen = t->top[k].id == t->id;
        unsigned long at = k == a->alt_sel ? pd_term_style(PD_STYLE_SELECTED) : A_NORMAL;
        pd_draw_fill(y, x, w, at);
        pd_draw_printf(y, x, 2, at, "%s", chosen ? "\xe2\x96\xb6" : " ");
        pd_draw_text(y, x + 2, name_w - 1, name, strlen(name), at);
        draw_bar(y, x + 2 + name_w, bar_w,
                 p, pd_term_style(chosen ? PD_STYLE_BAR_CHOSEN : PD_STYLE_BAR));
        pd_draw_printf(y, x + 2 + name_w + bar_w + 1, 7, at, "%5.1f%%", p * 100.0);
        y++;
    }
    /* Attention: per-layer strip (strength of the top entry) and most-attended tokens. */
    int nl, nt;
    if (y >= end) {
        return;
    }
    if (!pd_app_attn_dims(a, a->cursor, &nl, &nt)) {
        pd_draw_printf(y++, x, w, pd_term_style(PD_STYLE_DIM),
                       a->remote ? "attention: not exposed by the remote engine"
                                 : "attention: not captured");
        return;
    }
    int lx = x + pd_draw_printf(y, x, w, A_NORMAL, "attn L0-%d ", nl - 1);
    for (int l = 0; l < nl && lx < x + w; l++) {
        uint32_t pos;
        float wt, best = 0;
        for (int k = 0; k < nt; k++) {
            if (pd_app_attn_entry(a, a->cursor, l, k, &pos, &wt) && wt > best) {
                best = wt;
            }
        }
        int level = weight_level(best);
        pd_draw_cp(y, lx++, shade[level], level ? pd_term_heat(level) : A_NORMAL);
    }
    y++;
    if (pd_app_heads_ready(a)) {
        y = draw_heads(a, y, end, x, w);
    }
    struct attn_item items[ATTN_LIST_MAX];
    int n_items = 0;
    if (a->colour_head >= 0 && pd_app_heads_ready(a) && a->head_w_n > 0) {
        n_items = head_items(a, items);
        if (y < end && n_items) {
            char what[48];
            if (a->colour_layer >= 0) {
                snprintf(what, sizeof what, "head %d, layer %d", (int)a->colour_head,
                         (int)a->colour_layer);
            } else {
                snprintf(what, sizeof what, "head %d, mean over layers", (int)a->colour_head);
            }
            pd_draw_printf(y++, x, w, pd_term_style(PD_STYLE_DIM), "most attended (%s)", what);
        }
        for (int i = 0; i < n_items && y < end; i++) {
            const struct pd_token_rec *q = find_pos(a, items[i].pos);
            char qt[64];
            escape(q && q->text ? q->text : "", q ? q->text_len : 0, qt, sizeof qt);
            pd_draw_printf(y++, x, w, A_NORMAL, "%6u %5.3f \"%s\"", items[i].pos, items[i].w, qt);
        }
        return;
    }
    /* Aggregate over layers: mean weight per earlier position. */
    for (int l = 0; l < nl; l++) {
        for (int k = 0; k < nt; k++) {
            uint32_t pos;
            float wt;
            if (!pd_app_attn_entry(a, a->cursor, l, k, &pos, &wt)) {
                continue;
            }
            wt /= (float)nl;
            int j = 0;
            while (j < n_items && items[j].pos != pos) {
                j++;
            }
            if (j < n_items) {
                items[j].w += wt;
            } else if (n_items < ATTN_LIST_MAX) {
                items[n_items++] = (struct attn_item){pos, wt};
            } else {
                int lo = 0;
                for (int m = 1; m < n_items; m++) {
                    lo = items[m].w < items[lo].w ? m : lo;
                }
                if (items[lo].w < wt) {
                    items[lo] = (struct attn_item){pos, wt};
                }
            }
        }
    }
    for (int i = 1; i < n_items; i++) {
        for (int j = i; j > 0 && items[j].w > items[j - 1].w; j--) {
            struct attn_item tmp = items[j];
            items[j] = items[j - 1];
            items[j - 1] = tmp;
        }
    }
    if (y < end && n_items) {
        pd_draw_printf(y++, x, w, pd_term_style(PD_STYLE_DIM), "most attended (mean over layers)");
    }
    for (int i = 0; i < n_items && y < end; i++) {
        const struct pd_token_rec *q = items[i].pos < a->n_toks ? &a->toks[items[i].pos] : NULL;
        char qt[64];
        escape(q && q->text ? q->text : "", q ? q->text_len : 0, qt, sizeof qt);
        pd_draw_printf(y++, x, w, A_NORMAL, "%6u %5.3f \"%s\"", items[i].pos, items[i].w, qt);
    }
}
