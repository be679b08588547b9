/* draw_help.c - the overlay box: the help (the key table's lines, keys.c, with the colour
 * legend on top), the branch tree, or a parent-vs-branch diff; each scrollable. */
#include <curses.h>
#include <stdio.h>
#include <string.h>

#include "paint.h"
#include "panes.h"
#include "keys.h"
#include "term.h"
#include "wrap.h"

static const char *one_bytes(const void *ud, size_t i, size_t *len)
{
    (void)i;
    *len = strlen(ud);
    return ud;
}

/* text wrapped to w columns, from its line `top`, in rows [y, y + h) at column x. */
static void draw_wrapped(const char *text, int y, int x, int h, int w, int top)
{
    struct pd_wrap wr;
    pd_wrap_init(&wr, w);
    struct pd_wrap_src src = {1, one_bytes, NULL, text};
    if (pd_wrap_update(&wr, &src) == PD_OK) {
        for (int row = 0; row < h && (size_t)(top + row) < wr.n_lines; row++) {
            struct pd_wrap_iter it;
            struct pd_wrap_cell c;
            pd_wrap_iter_line(&wr, &src, (size_t)(top + row), &it);
            int cx = 0, last_w = 0;
            while (pd_wrap_iter_next(&it, &c) && cx <= w) {
                if (c.width == 0) {
                    if (cx > 0 && !c.newline) {
                        pd_draw_attach(y + row, x + cx - last_w, c.cp);
                    }
                    continue;
                }
                if (cx + c.width > w) {
                    break;
                }
                pd_draw_cp(y + row, x + cx, c.cp, A_NORMAL);
                last_w = c.width;
                cx += c.width;
            }
        }
    }
    pd_wrap_deinit(&wr);
}

static void draw_box(const struct pd_rect *r, const char *title)
{
    for (int row = 0; row < r->h; row++) {
        pd_draw_fill(r->y + row, r->x, r->w, A_NORMAL);
    }
    attrset(pd_term_style(PD_STYLE_MARKER));
    mvhline(r->y, r->x, ACS_HLINE, r->w);
    mvhline(r->y + r->h - 1, r->x, ACS_HLINE, r->w);
    attrset(A_NORMAL);
    pd_draw_text(r->y, r->x + 2, r->w - 4, title, strlen(title), A_BOLD);
}

/* The branch tree: one line per session, indented by depth, the selection reversed. */
static void draw_tree(const struct pd_app *a, const struct pd_rect *r)
{
    char title[128];
    snprintf(title, sizeof title, " branches - j/k select, Enter opens, d diffs with the "
                                  "parent, Esc closes ");
    draw_box(r, title);
    int inner = r->h - 2;
    size_t top = a->tree_sel >= (size_t)inner ? a->tree_sel - (size_t)inner + 1 : 0;
    for (int row = 0; row < inner && top + (size_t)row < a->n_tree; row++) {
        const struct pd_app_branch *b = &a->tree[top + (size_t)row];
        char line[256];
        int o = snprintf(line, sizeof line, "%*s#%lld", 2 * (b->depth < 20 ? b->depth : 20), "",
                         (long long)b->id);
        if (b->parent) {
            o += snprintf(line + o, sizeof line - (size_t)o, "  from #%lld at %lld",
                          (long long)b->parent, (long long)b->fork_pos);
        }
        o += snprintf(line + o, sizeof line - (size_t)o, "  %lld tok%s%s%s%s%s",
                      (long long)b->n_tokens, b->finished ? "" : "  unfinished",
                      b->preferred ? "  chosen over parent" : "", b->tags[0] ? "  #" : "",
                      b->tags, b->id == a->session_id ? "  (shown)" : "");
        if (!b->parent && b->title[0]) {
            snprintf(line + o, sizeof line - (size_t)o, "  \"%s\"", b->title);
        }
        unsigned long at = top + (size_t)row == a->tree_sel ? A_REVERSE : A_NORMAL;
        pd_draw_fill(r->y + 1 + row, r->x + 1, r->w - 2, at);
        pd_draw_text(r->y + 1 + row, r->x + 1, r->w - 2, line, strlen(line), at);
    }
}

/* Parent and branch side by side from the fork. */
static void draw_diff(const struct pd_app *a, const struct pd_rect *r)
{
    char title[128];
    snprintf(title, sizeof title, " #%lld (parent) vs #%lld (branch) from position %lld - "
                                  "j/k scroll, Esc closes ",
             (long long)a->diff_id[0], (long long)a->diff_id[1], (long long)a->diff_fork);
    draw_box(r, title);
    int colw = (r->w - 3) / 2;
    if (colw < 4 || r->h < 4) {
        return;
    }
    int y = r->y + 1, h = r->h - 3;
    char head[64];
    snprintf(head, sizeof head, "parent #%lld", (long long)a->diff_id[0]);
    pd_draw_text(y, r->x + 1, colw, head, strlen(head), pd_term_style(PD_STYLE_DIM));
    snprintf(head, sizeof head, "branch #%lld", (long long)a->diff_id[1]);
    pd_draw_text(y, r->x + 2 + colw, colw, head, strlen(head), pd_term_style(PD_STYLE_DIM));
    attrset(pd_term_style(PD_STYLE_DIM));
    mvvline(y, r->x + 1 + colw, ACS_VLINE, h + 1);
    attrset(A_NORMAL);
    int top = a->help_top > 0 ? a->help_top : 0;
    draw_wrapped(a->diff_text[0] ? a->diff_text[0] : "", y + 1, r->x + 1, h, colw, top);
    draw_wrapped(a->diff_text[1] ? a->diff_text[1] : "", y + 1, r->x + 2 + colw, h, colw, top);
}

void pd_draw_help(const struct pd_app *a, const struct pd_rect *r)
{
    if (r->h < 3 || r->w < 10) {
        return;
    }
    if (a->overlay == PD_OVERLAY_BRANCHES) {
        draw_tree(a, r);
        return;
    }
    if (a->overlay == PD_OVERLAY_DIFF) {
        draw_diff(a, r);
        return;
    }
    for (int row = 0; row < r->h; row++) {
        pd_draw_fill(r->y + row, r->x, r->w, A_NORMAL);
    }
    attrset(pd_term_style(PD_STYLE_MARKER));
    mvhline(r->y, r->x, ACS_HLINE, r->w);
    mvhline(r->y + r->h - 1, r->x, ACS_HLINE, r->w);
    attrset(A_NORMAL);
    char title[96];
    snprintf(title, sizeof title, " keys (%s) - Esc or ? closes, j/k scroll ",
             a->kind == PD_APP_LIVE ? "live" : "replay");
    pd_draw_text(r->y, r->x + 2, r->w - 4, title, strlen(title), A_BOLD);
    int inner = r->h - 2;
    int y = r->y + 1;
    /* Legend line. */
    char legend[160];
    snprintf(legend, sizeof legend, "colours: %s; prompt, injected, pruned (dim), match, cursor",
             pd_tier_name(pd_term_tier()));
    pd_draw_text(y, r->x + 1, r->w - 2, legend, strlen(legend), pd_term_style(PD_STYLE_DIM));
    y++;
    inner--;
    size_t n = pd_keys_help_count();
    size_t top = a->help_top > 0 ? (size_t)a->help_top : 0;
    if (top + (size_t)inner > n) {
        top = n > (size_t)inner ? n - (size_t)inner : 0;
    }
    for (int row = 0; row < inner; row++) {
        char line[256];
        if (!pd_keys_help_line(top + (size_t)row, line, sizeof line)) {
            break;
        }
        pd_draw_text(y + row, r->x + 1, r->w - 2, line, strlen(line), A_NORMAL);
    }
}

int pd_draw_overlay_lines(const struct pd_app *a)
{
    switch (a->overlay) {
    case PD_OVERLAY_BRANCHES:
        return (int)a->n_tree + 1;
    case PD_OVERLAY_DIFF:
        return 1000; /* as tall as the screen allows */
    case PD_OVERLAY_HELP:
        break;
    }
    return (int)pd_keys_help_count();
}
