/* wrap.c - the trace pane's line layout (see wrap.h for the rules). */
#include "wrap.h"

#include "termsafe.h"

#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "mem.h"
#include "termsafe.h"
#include "utf8.h"

#define REPLACEMENT 0xFFFDu
#define TAB_STOP 4

void pd_wrap_init(struct pd_wrap *w, int width)
{
    memset(w, 0, sizeof *w);
    w->width = width < 1 ? 1 : width;
}

void pd_wrap_deinit(struct pd_wrap *w)
{
    free(w->lines);
    memset(w, 0, sizeof *w);
}

void pd_wrap_reset(struct pd_wrap *w, int width)
{
    w->n_lines = 0;
    w->width = width < 1 ? 1 : width;
}

uint32_t pd_wrap_glyph(uint32_t cp, int col, int *width)
{
    if (cp == '\t') {
        *width = TAB_STOP - (col % TAB_STOP);
        return ' ';
    }
    uint32_t safe = pd_termsafe_cp(cp, 0); /* the one terminal filter (cli/termsafe.h) */
    if (safe != cp) {
        *width = 1;
        return safe;
    }
    int w = wcwidth((wchar_t)cp);
    if (w < 0) {
        *width = 1;
        return REPLACEMENT;
    }
    *width = w;
    return cp;
}

static const char *item_prefix(const struct pd_wrap_src *s, size_t i, size_t *len)
{
    const char *p = s->prefix ? s->prefix(s->ud, i) : NULL;
    *len = p ? strlen(p) : 0;
    return p;
}

/* One decoded code point at pos: cp, where the next one starts, whether it is a marker.
 * Returns false at the end of the data (or before an incomplete trailing sequence). */
struct decoded {
    uint32_t cp;
    struct pd_wrap_pos next;
    size_t item;
    bool in_prefix;
};

static bool decode_at(const struct pd_wrap_src *s, struct pd_wrap_pos pos, struct decoded *d)
{
    for (;;) {
        if (pos.item >= s->n) {
            return false;
        }
        size_t plen, tlen;
        const char *pre = item_prefix(s, pos.item, &plen);
        const char *text = s->bytes(s->ud, pos.item, &tlen);
        if (pos.off < plen) {
            uint32_t cp;
            size_t l = pd_utf8_decode(pre + pos.off, plen - pos.off, &cp);
            d->cp = l ? cp : REPLACEMENT;
            d->next = (struct pd_wrap_pos){pos.item, pos.off + (uint32_t)(l ? l : 1)};
            d->item = pos.item;
            d->in_prefix = true;
            return true;
        }
        if (pos.off >= plen + tlen) {
            pos.item++;
            pos.off = 0;
            continue;
        }
        size_t k = pos.off - plen;
        const unsigned char *t = (const unsigned char *)text + k;
        size_t avail = tlen - k;
        size_t need = pd_utf8_lead_len(t[0]);
        d->item = pos.item;
        d->in_prefix = false;
        d->cp = REPLACEMENT;
        d->next = (struct pd_wrap_pos){pos.item, pos.off + 1};
        if (need == 0) {
            return true;
        }
        uint32_t cp;
        if (need <= avail) {
            size_t l = pd_utf8_decode((const char *)t, need, &cp);
            if (l == need) {
                d->cp = cp;
                d->next.off = pos.off + (uint32_t)need;
            }
            return true;
        }
        /* The sequence continues in the following tokens (never across a marker). */
        char buf[4];
        size_t got = avail;
        memcpy(buf, t, avail);
        size_t j = pos.item + 1;
        size_t used_in_last = 0;
        bool blocked = false;
        while (got < need && j < s->n) {
            size_t pl, tl;
            item_prefix(s, j, &pl);
            if (pl) {
                blocked = true;
                break;
            }
            const char *tj = s->bytes(s->ud, j, &tl);
            size_t take = need - got < tl ? need - got : tl;
            memcpy(buf + got, tj, take);
            got += take;
            used_in_last = take;
            if (got < need) {
                j++;
            }
        }
        if (got < need) {
            if (!blocked && j >= s->n && pd_utf8_incomplete_tail(buf, got) == got) {
                return false; /* hold back: the rest may still arrive */
            }
            return true; /* U+FFFD for the lead byte */
        }
        size_t l = pd_utf8_decode(buf, need, &cp);
        if (l == need) {
            d->cp = cp;
            d->next = (struct pd_wrap_pos){j, (uint32_t)used_in_last};
        }
        return true;
    }
}

enum step_result { STEP_END, STEP_CELL, STEP_BREAK };

/* Takes the next cell of a line being laid out at column *col. STEP_BREAK: the cell does
 * not fit and starts the next line (pos unchanged). */
static enum step_result step(const struct pd_wrap_src *s, int width, struct pd_wrap_pos *pos,
                             int *col, struct pd_wrap_cell *c)
{
    struct decoded d;
    if (!decode_at(s, *pos, &d)) {
        return STEP_END;
    }
    c->item = d.item;
    c->in_prefix = d.in_prefix;
    c->newline = d.cp == '\n';
    if (c->newline) {
        c->cp = ' ';
        c->width = *col < width ? 1 : 0;
    } else {
        c->cp = pd_wrap_glyph(d.cp, *col, &c->width);
        if (*col > 0 && *col + c->width > width) {
            return STEP_BREAK;
        }
    }
    *pos = d.next;
    *col += c->width;
    return STEP_CELL;
}

static bool push_line(struct pd_wrap *w, struct pd_wrap_pos p)
{
    struct pd_wrap_pos *nl = pd_grow_array(w->lines, &w->cap, w->n_lines + 1, sizeof *nl);
    if (!nl) {
        return false;
    }
    w->lines = nl;
    w->lines[w->n_lines++] = p;
    return true;
}

enum pd_status pd_wrap_update(struct pd_wrap *w, const struct pd_wrap_src *src)
{
    struct pd_wrap_pos pos = {0, 0};
    if (w->n_lines > 0) {
        pos = w->lines[--w->n_lines];
    }
    if (!push_line(w, pos)) {
        return PD_ENOMEM;
    }
    int col = 0;
    struct pd_wrap_pos word = pos; /* where the last word on this line began */
    bool have_word = false;
    for (;;) {
        struct pd_wrap_cell c;
        enum step_result r = step(src, w->width, &pos, &col, &c);
        if (r == STEP_END) {
            break;
        }
        if (r == STEP_BREAK) {
            /* Break at a word boundary when the line has one: a space that does not fit
             * hangs off the end; otherwise the word that does not fit moves down whole.
             * A word longer than the line still breaks where the line is full. */
            struct decoded d;
            if (c.cp == ' ' && !c.in_prefix && decode_at(src, pos, &d)) {
                pos = d.next;
            } else if (have_word) {
                pos = word;
            }
            if (!push_line(w, pos)) {
                return PD_ENOMEM;
            }
            col = 0;
            have_word = false;
        } else if (c.newline) {
            if (!push_line(w, pos)) {
                return PD_ENOMEM;
            }
            col = 0;
            have_word = false;
        } else if (c.cp == ' ' && !c.in_prefix) {
            word = pos; /* the next word begins after this space */
            have_word = true;
        }
    }
    return PD_OK;
}

static int pos_cmp(struct pd_wrap_pos a, struct pd_wrap_pos b)
{
    if (a.item != b.item) {
        return a.item < b.item ? -1 : 1;
    }
    return a.off < b.off ? -1 : a.off > b.off;
}

size_t pd_wrap_line_of(const struct pd_wrap *w, const struct pd_wrap_src *src, size_t item)
{
    (void)src;
    if (w->n_lines == 0) {
        return 0;
    }
    struct pd_wrap_pos key = {item, 0};
    size_t lo = 0, hi = w->n_lines; /* last line with start <= key */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (pos_cmp(w->lines[mid], key) <= 0) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    /* A line that starts exactly at the end of item-1's bytes shows item first. */
    return lo;
}

void pd_wrap_invalidate(struct pd_wrap *w, size_t item)
{
    if (w->n_lines == 0) {
        return;
    }
    size_t l = pd_wrap_line_of(w, NULL, item);
    w->n_lines = l;
}

void pd_wrap_iter_line(const struct pd_wrap *w, const struct pd_wrap_src *src, size_t line,
                       struct pd_wrap_iter *it)
{
    memset(it, 0, sizeof *it);
    it->src = src;
    it->width = w->width;
    if (line + 1 < w->n_lines) {
        it->end = w->lines[line + 1];
        it->has_end = true;
    }
    if (line < w->n_lines) {
        it->pos = w->lines[line];
    } else {
        it->pos = (struct pd_wrap_pos){src->n, 0};
    }
    it->col = 0;
}

bool pd_wrap_iter_next(struct pd_wrap_iter *it, struct pd_wrap_cell *c)
{
    if (it->col < 0 || (it->has_end && pos_cmp(it->pos, it->end) >= 0)) {
        return false; /* the line ended (the next one starts here) */
    }
    enum step_result r = step(it->src, it->width, &it->pos, &it->col, c);
    if (r != STEP_CELL) {
        it->col = -1;
        return false;
    }
    if (c->newline) {
        it->col = -1; /* emit the newline cell, then stop */
    }
    return true;
}
