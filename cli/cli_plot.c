/* cli_plot.c - `ponder plot SESSION`: an SVG figure of a saved trace.
 *
 * Per-token surprisal (bits, bars coloured by role) and entropy (bits, line) over
 * positions, with an x axis of positions, reasoning steps as alternating background bands
 * (pruned steps hatched grey), the thinking/answer boundary, a timeline of the shadow
 * policy's divergence from the full cache when the session has shadow evictions (the share
 * of the cache it would have evicted, mean over layers), and KV evictions as ticks under it
 * (one labelled row per layer, enforced black, shadow grey); a legend names every colour
 * drawn. --from/--to plot a range of positions. Plain SVG 1.1 written through a temporary
 * file and renamed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "afile.h"
#include "mem.h"
#include "utf8.h"
#include "cli.h"
#include "store.h"
#include "store_replay.h"

static const char plot_usage[] =
    "usage: ponder plot SESSION [--out FILE.svg] [--from P] [--to Q] [--width PX] [--db F]\n"
    "Writes an SVG of per-token surprisal (bars by role) and entropy (line), in bits, over\n"
    "positions, with step bands, pruned steps, the start of the answer, the shadow policy's\n"
    "divergence from the full cache (when the session has shadow evictions) and KV evictions\n"
    "per layer (default output: session-ID.svg).\n"
    "  --from P, --to Q  only positions P..Q-1 (default: the whole session)\n"
    "  --width PX        figure width, 300..20000 (default 1200)\n";

struct plot {
    struct pd_token_rec *toks;  /* positions [from, to) */
    size_t n;
    int64_t from, to;           /* the range drawn */
    const struct pd_step_rec *steps;
    size_t n_steps;
    struct pd_kv_event_rec *kv; /* every event of the session */
    size_t n_kv;
    int32_t n_layer;
    bool has_shadow;            /* some event is a shadow eviction */
};

/* The y axis never goes above this many bits: taller values (a corrupt or absurd trace)
 * are drawn clipped at the top, their true value in the bar's tooltip. */
#define YMAX_CAP 64.0
/* KV rows beyond this many layers are not drawn (a database could claim any layer). */
#define KV_ROWS_MAX 256
/* Average width of a character of the 11px (13px) font, for fitting text. */
#define CHAR_W 6.2
#define TITLE_CHAR_W 7.4

static double bits(float lp)
{
    return isnan(lp) ? NAN : -(double)lp / M_LN2;
}

/* Writes s[0..n) as XML character data: & < > " escaped, invalid UTF-8 and the control
 * characters XML 1.0 forbids (all C0 but tab, newline, carriage return) as U+FFFD, so
 * the SVG is always well-formed. At most max_cp code points: a longer text keeps
 * max_cp - 1 of them and ends in "...". */
static void xml_text_n(FILE *f, const char *s, size_t n, size_t max_cp)
{
    size_t total = 0;
    for (size_t i = 0; i < n; total++) {
        uint32_t cp;
        size_t k = pd_utf8_decode(s + i, n - i, &cp);
        i += k ? k : 1;
    }
    size_t keep = total <= max_cp ? total : (max_cp ? max_cp - 1 : 0);
    size_t cps = 0;
    for (size_t i = 0; i < n && cps < keep; cps++) {
        uint32_t cp;
        size_t k = pd_utf8_decode(s + i, n - i, &cp);
        if (k == 0 || (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r')) {
            fputs("\xEF\xBF\xBD", f);
            i += k ? k : 1;
            continue;
        }
        switch (cp) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fwrite(s + i, 1, k, f);
        }
        i += k;
    }
    if (keep < total) {
        fputs("...", f);
    }
}

static void xml_text(FILE *f, const char *s)
{
    xml_text_n(f, s, strlen(s), SIZE_MAX);
}

/* 1, 2 or 5 times a power of ten: the smallest tick step that gives at most max ticks
 * over span. */
static int64_t nice_step(double span, double max)
{
    int64_t step = 1;
    for (;;) {
        static const int mult[] = {1, 2, 5};
        for (int m = 0; m < 3; m++) {
            if (span / (double)(step * mult[m]) <= max) {
                return step * mult[m];
            }
        }
        if (step > INT64_MAX / 100) {
            return step;
        }
        step *= 10;
    }
}

/* The colours of the figure, named once for the marks and their legend. */
enum plot_colour {
    COL_PROMPT,
    COL_THINK,
    COL_ANSWER,
    COL_INJECTED,
    COL_ENTROPY,
    COL_STEP,
    COL_PRUNED,
    COL_ANSWER_START,
    COL_DIVERGENCE,
    COL_KV_EVICT,
    COL_KV_SHADOW,
    COL_COUNT
};

static const struct {
    const char *fill;   /* colour, or a pattern */
    char mark;          /* legend mark: 'r' box, 'l' line, 'd' dashed line */
    const char *label;
} k_colours[COL_COUNT] = {
    [COL_PROMPT] = {"#adb5bd", 'r', "surprisal: prompt"},
    [COL_THINK] = {"#1c7ed6", 'r', "thinking"},
    [COL_ANSWER] = {"#2b8a3e", 'r', "answer"},
    [COL_INJECTED] = {"#c2255c", 'r', "injected"},
    [COL_ENTROPY] = {"#e8590c", 'l', "entropy"},
    [COL_STEP] = {"#dbe7f5", 'r', "step"},
    [COL_PRUNED] = {"url(#hatch)", 'r', "pruned step"},
    [COL_ANSWER_START] = {"#2b8a3e", 'd', "answer starts"},
    [COL_DIVERGENCE] = {"#7048e8", 'l', "shadow divergence"},
    [COL_KV_EVICT] = {"#212529", 'r', "KV evicted"},
    [COL_KV_SHADOW] = {"#868e96", 'r', "KV shadow-evicted"},
};
_Static_assert(sizeof k_colours / sizeof k_colours[0] == COL_COUNT, "colour table");

static const enum plot_colour k_role_colour[PD_ROLE_COUNT] = {
    [PD_ROLE_PROMPT] = COL_PROMPT,
    [PD_ROLE_THINK] = COL_THINK,
    [PD_ROLE_ANSWER] = COL_ANSWER,
    [PD_ROLE_INJECTED] = COL_INJECTED,
};

/* Which colours the figure uses (the legend lists those). */
static void colours_used(const struct plot *p, bool used[COL_COUNT])
{
    memset(used, 0, COL_COUNT * sizeof *used);
    for (size_t i = 0; i < p->n; i++) {
        if (!isnan(p->toks[i].logprob) && p->toks[i].role < PD_ROLE_COUNT) {
            used[k_role_colour[p->toks[i].role]] = true;
        }
        used[COL_ENTROPY] |= !isnan(p->toks[i].entropy);
        used[COL_ANSWER_START] |= i > 0 && p->toks[i].role == PD_ROLE_ANSWER &&
                                  p->toks[i - 1].role != PD_ROLE_ANSWER;
    }
    for (size_t k = 0; k < p->n_steps; k++) {
        bool in = p->steps[k].pos_end > p->from && p->steps[k].pos_begin < p->to;
        used[p->steps[k].pruned ? COL_PRUNED : COL_STEP] |= in;
    }
    for (size_t e = 0; e < p->n_kv; e++) {
        bool in = p->kv[e].slot_pos >= p->from && p->kv[e].slot_pos < p->to;
        used[p->kv[e].kind == PD_KV_SHADOW_EVICT ? COL_KV_SHADOW : COL_KV_EVICT] |= in;
    }
    used[COL_DIVERGENCE] = p->has_shadow;
}

/* Lays the legend out in rows across width; draws it when f is non-NULL. Returns the
 * number of rows. */
static int legend(FILE *f, const bool used[COL_COUNT], int left, int width, int y0)
{
    double x = left;
    int rows = 1;
    for (int c = 0; c < COL_COUNT; c++) {
        if (!used[c]) {
            continue;
        }
        double w = 18 + CHAR_W * (double)strlen(k_colours[c].label) + 14;
        if (x + w > width && x > left) {
            x = left;
            rows++;
        }
        double y = y0 + (rows - 1) * 16;
        if (f && k_colours[c].mark == 'r') {
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"9\" fill=\"%s\" "
                       "stroke=\"#868e96\" stroke-width=\"0.3\"/>",
                    x, y - 8, k_colours[c].fill);
        } else if (f) {
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                       "stroke-width=\"1.5\"%s/>",
                    x, x + 12, y - 4, y - 4, k_colours[c].fill,
                    k_colours[c].mark == 'd' ? " stroke-dasharray=\"4 3\"" : "");
        }
        if (f) {
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", x + 16, y,
                    k_colours[c].label);
        }
        x += w;
    }
    return rows;
}

/* The share of the cache the shadow policy would have evicted by sequence length `at`,
 * mean over layers: shadow evictions with at_pos <= at over n_layer * at entries. */
static double divergence_at(const struct plot *p, int64_t at, size_t *cursor, double *count)
{
    while (*cursor < p->n_kv && p->kv[*cursor].at_pos <= at) {
        const struct pd_kv_event_rec *k = &p->kv[*cursor];
        if (k->kind == PD_KV_SHADOW_EVICT) {
            *count += k->layer < 0 ? (double)(p->n_layer > 0 ? p->n_layer : 1) : 1.0;
        }
        (*cursor)++;
    }
    double cap = (double)(p->n_layer > 0 ? p->n_layer : 1) * (double)(at > 0 ? at : 1);
    double d = *count / cap;
    return d > 1.0 ? 1.0 : d;
}

static bool write_svg(FILE *f, const struct plot *p, int64_t id, const char *title, int width)
{
    const int left = 50, right = 20, top = 40, chart_h = 260;
    int kv_rows = p->n_kv ? (p->n_layer > 0 ? p->n_layer : 1) : 0;
    if (kv_rows > KV_ROWS_MAX) {
        kv_rows = KV_ROWS_MAX;
    }
    /* rows tall enough for a label each when there are few layers */
    const int kv_row_h = kv_rows == 0 ? 0 : kv_rows <= 12 ? 10 : kv_rows <= 40 ? 5 : 3;
    const int div_h = p->has_shadow ? 60 : 0;
    bool used[COL_COUNT];
    colours_used(p, used);
    int legend_rows = legend(NULL, used, left, width - right, 0);
    int axis_top = top + chart_h;                 /* x axis: ticks and labels */
    int div_top = axis_top + 52;                  /* divergence panel */
    int kv_top = div_top + (div_h ? div_h + 24 : 0);
    int legend_top = kv_top + kv_rows * kv_row_h + (kv_rows ? 24 : 4);
    int height = legend_top + legend_rows * 16 + 8;
    double w = width - left - right;
    double ymax = 1.0;
    for (size_t i = 0; i < p->n; i++) {
        double s = bits(p->toks[i].logprob), h = p->toks[i].entropy;
        if (isfinite(s) && s > ymax) {
            ymax = s;
        }
        if (isfinite(h) && h > ymax) {
            ymax = h;
        }
    }
    ymax = ymax > YMAX_CAP ? YMAX_CAP : ceil(ymax);
    /* grid every 1, 2, 5, 10, 20 or 50 bits: at most 10 lines */
    static const int steps[] = {1, 2, 5, 10, 20, 50};
    size_t g = 0;
    while (g + 1 < sizeof steps / sizeof steps[0] && ymax / steps[g] > 10) {
        g++;
    }
    int grid = steps[g];
    int64_t span = p->to > p->from ? p->to - p->from : 1;
    double dx = w / (double)span;
    int64_t pos0 = p->from;
#define X(pos) (left + ((double)((pos) - pos0)) * dx)
#define Y(v) (top + chart_h - ((v) > ymax ? ymax : (v)) / ymax * chart_h)
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"11\">\n",
            width, height);
    fprintf(f, "<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" "
               "patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">"
               "<rect width=\"6\" height=\"6\" fill=\"#eeeeee\"/>"
               "<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#bbbbbb\" "
               "stroke-width=\"2\"/></pattern></defs>\n");
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    /* the title, cut to the width: "session N, positions A-B: TITLE" */
    char head[96];
    int hl = snprintf(head, sizeof head, "session %lld, positions %lld-%lld: ", (long long)id,
                      (long long)p->from, (long long)(p->to - 1));
    double room = (width - left - right) / TITLE_CHAR_W - (hl > 0 ? hl : 0);
    fprintf(f, "<text x=\"%d\" y=\"20\" font-size=\"13\">%s", left, head);
    xml_text_n(f, title, strlen(title), room > 4 ? (size_t)room : 4);
    fprintf(f, "<title>");
    xml_text(f, title);
    fprintf(f, "</title></text>\n");
    /* step bands, clipped to the range */
    for (size_t k = 0; k < p->n_steps; k++) {
        const struct pd_step_rec *s = &p->steps[k];
        int64_t b = s->pos_begin > p->from ? s->pos_begin : p->from;
        int64_t e = s->pos_end < p->to ? s->pos_end : p->to;
        if (e <= b) {
            continue;
        }
        const char *fill = s->pruned ? k_colours[COL_PRUNED].fill
                                     : (k % 2 ? k_colours[COL_STEP].fill : "#eef4fb");
        fprintf(f, "<rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"%s\">"
                   "<title>step %d (%s)%s</title></rect>\n",
                X(b), top, (double)(e - b) * dx, chart_h, fill, s->index,
                pd_step_kind_name(s->kind) ? pd_step_kind_name(s->kind) : "?",
                s->pruned ? ", pruned" : "");
    }
    /* y grid */
    for (int v = 0; v <= (int)ymax; v += grid) {
        fprintf(f, "<line x1=\"%d\" x2=\"%.2f\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"#dddddd\"/>"
                   "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%d</text>\n",
                left, left + w, Y(v), Y(v), left - 6, Y(v) + 4, v);
    }
    fprintf(f, "<text x=\"14\" y=\"%d\" transform=\"rotate(-90 14 %d)\" "
               "text-anchor=\"middle\">bits</text>\n",
            top + chart_h / 2, top + chart_h / 2);
    /* x axis: a tick and label at every multiple of a 1-2-5 step, labels ~80px apart */
    int64_t xs = nice_step((double)span, w / 80.0 > 1 ? w / 80.0 : 1);
    fprintf(f, "<line x1=\"%d\" x2=\"%.2f\" y1=\"%d\" y2=\"%d\" stroke=\"#495057\"/>\n", left,
            left + w, axis_top, axis_top);
    for (int64_t t = (p->from + xs - 1) / xs * xs; t < p->to; t += xs) {
        fprintf(f, "<line x1=\"%.2f\" x2=\"%.2f\" y1=\"%d\" y2=\"%d\" stroke=\"#495057\"/>"
                   "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%lld</text>\n",
                X(t), X(t), axis_top, axis_top + 4, X(t), axis_top + 15, (long long)t);
        if (t > INT64_MAX - xs) {
            break;
        }
    }
    fprintf(f, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">position</text>\n",
            left + w / 2, axis_top + 29);
    /* surprisal bars, coloured by role */
    for (size_t i = 0; i < p->n; i++) {
        double s = bits(p->toks[i].logprob);
        if (isnan(s)) {
            continue;
        }
        enum pd_role role = p->toks[i].role < PD_ROLE_COUNT ? p->toks[i].role : PD_ROLE_THINK;
        fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"",
                X(p->toks[i].pos), Y(s), dx > 1.5 ? dx - 0.5 : dx, top + chart_h - Y(s),
                k_colours[k_role_colour[role]].fill);
        if (s > ymax) { /* clipped: the true value in a tooltip */
            fprintf(f, "><title>%.4g bits (clipped)</title></rect>\n", s);
        } else {
            fputs("/>\n", f);
        }
    }
    /* entropy line */
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.2\" points=\"",
            k_colours[COL_ENTROPY].fill);
    for (size_t i = 0; i < p->n; i++) {
        if (!isnan(p->toks[i].entropy)) {
            fprintf(f, "%.2f,%.2f ", X(p->toks[i].pos) + dx / 2, Y(p->toks[i].entropy));
        }
    }
    fprintf(f, "\"/>\n");
    /* thinking / answer boundary */
    for (size_t i = 1; i < p->n; i++) {
        if (p->toks[i].role == PD_ROLE_ANSWER && p->toks[i - 1].role != PD_ROLE_ANSWER) {
            fprintf(f, "<line x1=\"%.2f\" x2=\"%.2f\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" "
                       "stroke-dasharray=\"4 3\"/><text x=\"%.2f\" y=\"%d\">answer</text>\n",
                    X(p->toks[i].pos), X(p->toks[i].pos), top, top + chart_h,
                    k_colours[COL_ANSWER_START].fill, X(p->toks[i].pos) + 3, top + 12);
            break;
        }
    }
    /* shadow divergence: the share of the cache the shadow policy would have evicted */
    if (div_h) {
        size_t cur = 0;
        double count = 0, dmax = 0;
        for (int64_t t = 1; t <= p->to; t++) { /* the peak inside the range sets the scale */
            double d = divergence_at(p, t, &cur, &count);
            if (t > p->from && d > dmax) {
                dmax = d;
            }
        }
        double scale = dmax > 0 ? ceil(dmax * 100.0 / 5.0) * 5.0 / 100.0 : 0.05;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"none\" "
                   "stroke=\"#dddddd\"/>"
                   "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.0f%%</text>"
                   "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">0%%</text>"
                   "<text x=\"%d\" y=\"%d\">shadow divergence: share of the KV cache the "
                   "shadow policy would have evicted (mean over layers)</text>\n",
                left, div_top, w, div_h, left - 6, div_top + 8, scale * 100.0, left - 6,
                div_top + div_h, left, div_top - 5);
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.4\" points=\"",
                k_colours[COL_DIVERGENCE].fill);
        cur = 0;
        count = 0;
        int64_t stride = span / 2000 + 1; /* at most ~2000 points */
        for (int64_t t = 1; t <= p->to; t++) {
            double d = divergence_at(p, t, &cur, &count);
            if (t > p->from && ((t - p->from) % stride == 0 || t == p->to)) {
                fprintf(f, "%.2f,%.2f ", X(t), div_top + div_h - d / scale * div_h);
            }
        }
        fprintf(f, "\"/>\n");
    }
    /* KV evictions: one tick row per layer, labelled */
    if (kv_rows) {
        fprintf(f, "<text x=\"%d\" y=\"%d\">KV evictions by layer (position of the evicted "
                   "entry)</text>\n",
                left, kv_top - 5);
        int every = kv_row_h >= 10 ? 1 : (12 + kv_row_h - 1) / kv_row_h;
        for (int row = 0; row < kv_rows; row++) {
            if (row % every == 0 || row == kv_rows - 1) {
                fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-size=\"9\">L%d"
                           "</text>\n",
                        left - 6, kv_top + row * kv_row_h + (kv_row_h >= 9 ? 8 : 3), row);
            }
        }
    }
    for (size_t e = 0; e < p->n_kv; e++) {
        const struct pd_kv_event_rec *k = &p->kv[e];
        if (k->slot_pos < p->from || k->slot_pos >= p->to) {
            continue;
        }
        int row0 = k->layer < 0 ? 0 : k->layer, row1 = k->layer < 0 ? kv_rows - 1 : k->layer;
        if (row0 >= kv_rows) {
            continue;
        }
        fprintf(f, "<rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"%s\"/>\n",
                X(k->slot_pos), kv_top + row0 * kv_row_h, dx > 1 ? dx : 1.0,
                (row1 - row0 + 1) * kv_row_h - 1,
                k_colours[k->kind == PD_KV_SHADOW_EVICT ? COL_KV_SHADOW : COL_KV_EVICT].fill);
    }
    legend(f, used, left, width - right, legend_top + 10);
    fprintf(f, "</svg>\n");
#undef X
#undef Y
    return !ferror(f);
}

int pd_cli_plot(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(plot_usage, stdout);
            return 0;
        }
    }
    const char *db = NULL, *out = NULL, *sid_s = NULL, *v = NULL;
    long long width = 1200, sid = 0, from = 0, to = -1;
    bool bad = false;
    struct pd_argv a = {argc, argv, 1, "plot"};
    while (a.i < argc) {
        if (pd_arg_match(&a, "--db", NULL, &db, &bad) || pd_arg_match(&a, "--out", "-o", &out, &bad)) {
        } else if (pd_arg_match(&a, "--width", NULL, &v, &bad)) {
            if (!bad && !pd_arg_long("plot", "--width", v, 300, 20000, &width)) {
                return 2;
            }
        } else if (pd_arg_match(&a, "--from", NULL, &v, &bad)) {
            if (!bad && !pd_arg_long("plot", "--from", v, 0, INT64_MAX - 1, &from)) {
                return 2;
            }
        } else if (pd_arg_match(&a, "--to", NULL, &v, &bad)) {
            if (!bad && !pd_arg_long("plot", "--to", v, 1, INT64_MAX, &to)) {
                return 2;
            }
        } else if (argv[a.i][0] != '-' && !sid_s) {
            sid_s = argv[a.i++];
        } else {
            return pd_cli_fail(2, "plot: unknown option '%s'", argv[a.i]);
        }
        if (bad) {
            return 2;
        }
    }
    if (!sid_s || !pd_arg_long("plot", "SESSION", sid_s, 1, INT64_MAX, &sid)) {
        return pd_cli_fail(2, "plot: a session id is required (see 'ponder ls')");
    }
    if (to >= 0 && to <= from) {
        return pd_cli_fail(2, "plot: --to %lld is not after --from %lld", to, from);
    }
    struct pd_store *st = pd_cli_open_db(db, PD_CLI_DB_READ);
    if (!st) {
        return 1;
    }
    struct pd_err err;
    struct pd_replay *r = NULL;
    struct plot p;
    memset(&p, 0, sizeof p);
    int rc = 0;
    char path[4096];
    struct pd_afile af = {.slot = -1};
    if (pd_replay_open(st, sid, &r, &err)) {
        pd_cli_print_err(&err);
        rc = 1;
        goto done;
    }
    int64_t len = pd_replay_length(r);
    if (len > 0 && from >= len) {
        rc = pd_cli_fail(1, "plot: --from %lld is past the end of session %lld (%lld tokens)",
                         from, sid, (long long)len);
        goto done;
    }
    p.from = from;
    p.to = to < 0 || to > len ? len : to;
    if (p.to <= p.from) {
        p.to = p.from + 1; /* an empty session: an empty axis of one position */
    }
    int64_t want = len > 0 ? p.to - p.from : 0;
    p.toks = pd_calloc(want ? (size_t)want : 1, sizeof *p.toks);
    if (!p.toks) {
        rc = pd_cli_fail(1, "plot: out of memory");
        goto done;
    }
    if (want > 0 && pd_replay_seek(r, p.from, &err)) {
        pd_cli_print_err(&err);
        rc = 1;
        goto done;
    }
    size_t got = 0;
    while (p.n < (size_t)want) {
        enum pd_status rs = pd_replay_read(r, p.toks + p.n, (size_t)want - p.n, &got, &err);
        p.n += got; /* filled also on error: freed at done */
        if (rs != PD_OK) {
            pd_cli_print_err(&err);
            rc = 1;
            goto done;
        }
        if (got == 0) {
            break;
        }
    }
    p.steps = pd_replay_steps(r, &p.n_steps);
    if (pd_replay_kv_events(r, 0, len + 1, &p.kv, &p.n_kv, &err)) {
        pd_cli_print_err(&err);
        rc = 1;
        goto done;
    }
    for (size_t e = 0; e < p.n_kv; e++) {
        if (p.kv[e].layer + 1 > p.n_layer) {
            p.n_layer = p.kv[e].layer + 1;
        }
        p.has_shadow |= p.kv[e].kind == PD_KV_SHADOW_EVICT;
    }
    snprintf(path, sizeof path, "%s", out ? out : "");
    if (!out) {
        snprintf(path, sizeof path, "session-%lld.svg", sid);
    }
    const struct pd_store_session_info *info = pd_replay_info(r);
    if (pd_afile_open(&af, path, &err)) {
        pd_cli_print_err(&err);
        rc = 1;
        goto done;
    }
    if (!write_svg(af.f, &p, sid, info->title ? info->title : "", (int)width)) {
        pd_afile_abort(&af);
        rc = pd_cli_fail(1, "plot: %s: cannot write", path);
        goto done;
    }
    if (pd_afile_commit(&af, &err)) {
        pd_cli_print_err(&err);
        rc = 1;
        goto done;
    }
    fprintf(stderr, "wrote %s (%zu tokens, %zu steps, %zu KV events)\n", path, p.n, p.n_steps,
            p.n_kv);
done:
    for (size_t i = 0; i < p.n; i++) {
        pd_token_rec_free(&p.toks[i]);
    }
    free(p.toks);
    free(p.kv);
    pd_replay_close(&r);
    pd_store_close(&st);
    return rc;
}
