/* cli_plot.c - `ponder plot SESSION`: an SVG figure of a saved trace.
 *
 * Per-token surprisal (bits, bars) and entropy (bits, line) over positions, reasoning
 * steps as alternating background bands (pruned steps hatched grey), the thinking/answer
 * boundary, and KV evictions as ticks under the axis (one row per layer, enforced black,
 * shadow grey). Plain SVG 1.1 written through a temporary file and renamed. */
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
    "usage: ponder plot SESSION [--out FILE.svg] [--db F] [--width PX]\n"
    "Writes an SVG of per-token surprisal and entropy with step bands, pruned steps and\n"
    "KV evictions (default output: session-ID.svg).\n";

struct plot {
    struct pd_token_rec *toks;
    size_t n;
    const struct pd_step_rec *steps;
    size_t n_steps;
    struct pd_kv_event_rec *kv;
    size_t n_kv;
    int32_t n_layer;
};

/* The y axis never goes above this many bits: taller values (a corrupt or absurd trace)
 * are drawn clipped at the top, their true value in the bar's tooltip. */
#define YMAX_CAP 64.0
/* KV rows beyond this many layers are not drawn (a database could claim any layer). */
#define KV_ROWS_MAX 256

static double bits(float lp)
{
    return isnan(lp) ? NAN : -(double)lp / M_LN2;
}

/* Writes s as XML character data: & < > " escaped, invalid UTF-8 and the control
 * characters XML 1.0 forbids (all C0 but tab, newline, carriage return) as U+FFFD, so
 * the SVG is always well-formed. */
static void xml_text(FILE *f, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
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
}

static bool write_svg(FILE *f, const struct plot *p, int64_t id, const char *title, int width)
{
    const int left = 50, right = 20, top = 40, chart_h = 260;
    int kv_rows = p->n_kv ? (p->n_layer > 0 ? p->n_layer : 1) : 0;
    if (kv_rows > KV_ROWS_MAX) {
        kv_rows = KV_ROWS_MAX;
    }
    const int kv_row_h = 4;
    int height = top + chart_h + 40 + kv_rows * kv_row_h + 30;
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
    double dx = p->n ? w / (double)p->n : w;
    int64_t pos0 = p->n ? p->toks[0].pos : 0;
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
    fprintf(f, "<text x=\"%d\" y=\"20\" font-size=\"13\">session %lld: ", left, (long long)id);
    xml_text(f, title);
    fprintf(f, "</text>\n");
    /* step bands */
    for (size_t k = 0; k < p->n_steps; k++) {
        const struct pd_step_rec *s = &p->steps[k];
        const char *fill = s->pruned ? "url(#hatch)" : (k % 2 ? "#eef4fb" : "#f7fafd");
        fprintf(f, "<rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"%s\">"
                   "<title>step %d (%s)%s</title></rect>\n",
                X(s->pos_begin), top, (double)(s->pos_end - s->pos_begin) * dx, chart_h, fill,
                s->index, pd_step_kind_name(s->kind) ? pd_step_kind_name(s->kind) : "?",
                s->pruned ? ", pruned" : "");
    }
    /* axes and grid */
    for (int v = 0; v <= (int)ymax; v += grid) {
        fprintf(f, "<line x1=\"%d\" x2=\"%.2f\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"#dddddd\"/>"
                   "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%d</text>\n",
                left, left + w, Y(v), Y(v), left - 6, Y(v) + 4, v);
    }
    fprintf(f, "<text x=\"14\" y=\"%d\" transform=\"rotate(-90 14 %d)\" "
               "text-anchor=\"middle\">bits</text>\n",
            top + chart_h / 2, top + chart_h / 2);
    /* surprisal bars, coloured by role */
    for (size_t i = 0; i < p->n; i++) {
        double s = bits(p->toks[i].logprob);
        if (isnan(s)) {
            continue;
        }
        const char *col = p->toks[i].role == PD_ROLE_ANSWER     ? "#2b8a3e"
                          : p->toks[i].role == PD_ROLE_INJECTED ? "#c2255c"
                          : p->toks[i].role == PD_ROLE_PROMPT   ? "#adb5bd"
                                                                : "#1c7ed6";
        fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"",
                X(p->toks[i].pos), Y(s), dx > 1.5 ? dx - 0.5 : dx, top + chart_h - Y(s), col);
        if (s > ymax) { /* clipped: the true value in a tooltip */
            fprintf(f, "><title>%.4g bits (clipped)</title></rect>\n", s);
        } else {
            fputs("/>\n", f);
        }
    }
    /* entropy line */
    fprintf(f, "<polyline fill=\"none\" stroke=\"#e8590c\" stroke-width=\"1.2\" points=\"");
    for (size_t i = 0; i < p->n; i++) {
        if (!isnan(p->toks[i].entropy)) {
            fprintf(f, "%.2f,%.2f ", X(p->toks[i].pos) + dx / 2, Y(p->toks[i].entropy));
        }
    }
    fprintf(f, "\"/>\n");
    /* thinking / answer boundary */
    for (size_t i = 1; i < p->n; i++) {
        if (p->toks[i].role == PD_ROLE_ANSWER && p->toks[i - 1].role != PD_ROLE_ANSWER) {
            fprintf(f, "<line x1=\"%.2f\" x2=\"%.2f\" y1=\"%d\" y2=\"%d\" stroke=\"#2b8a3e\" "
                       "stroke-dasharray=\"4 3\"/><text x=\"%.2f\" y=\"%d\">answer</text>\n",
                    X(p->toks[i].pos), X(p->toks[i].pos), top, top + chart_h,
                    X(p->toks[i].pos) + 3, top + 12);
            break;
        }
    }
    /* KV evictions: one tick row per layer under the chart */
    int kv_top = top + chart_h + 30;
    if (p->n_kv) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">KV</text>\n", left - 6,
                kv_top + kv_rows * kv_row_h / 2 + 4);
    }
    for (size_t e = 0; e < p->n_kv; e++) {
        const struct pd_kv_event_rec *k = &p->kv[e];
        int row = k->layer < 0 ? 0 : k->layer;
        if (row >= kv_rows) {
            continue;
        }
        fprintf(f, "<rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"%s\"/>\n",
                X(k->slot_pos), kv_top + row * kv_row_h, dx > 1 ? dx : 1.0, kv_row_h - 1,
                k->kind == PD_KV_SHADOW_EVICT ? "#868e96" : "#212529");
    }
    /* legend */
    int ly = height - 10;
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"8\" fill=\"#1c7ed6\"/>"
               "<text x=\"%d\" y=\"%d\">surprisal (thinking)</text>"
               "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"8\" fill=\"#2b8a3e\"/>"
               "<text x=\"%d\" y=\"%d\">answer</text>"
               "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"#e8590c\"/>"
               "<text x=\"%d\" y=\"%d\">entropy</text>"
               "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"8\" fill=\"url(#hatch)\"/>"
               "<text x=\"%d\" y=\"%d\">pruned step</text>\n",
            left, ly - 8, left + 14, ly, left + 150, ly - 8, left + 164, ly, left + 230,
            left + 244, ly - 4, ly - 4, left + 248, ly, left + 310, ly - 8, left + 324, ly);
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
    long long width = 1200, sid = 0;
    bool bad = false;
    struct pd_argv a = {argc, argv, 1, "plot"};
    while (a.i < argc) {
        if (pd_arg_match(&a, "--db", NULL, &db, &bad) || pd_arg_match(&a, "--out", "-o", &out, &bad)) {
        } else if (pd_arg_match(&a, "--width", NULL, &v, &bad)) {
            if (!bad && !pd_arg_long("plot", "--width", v, 300, 20000, &width)) {
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
    p.toks = pd_calloc(len ? (size_t)len : 1, sizeof *p.toks);
    if (!p.toks) {
        rc = pd_cli_fail(1, "plot: out of memory");
        goto done;
    }
    size_t got;
    do {
        enum pd_status rs = pd_replay_read(r, p.toks + p.n, (size_t)len - p.n, &got, &err);
        p.n += got; /* filled also on error: freed at done */
        if (rs != PD_OK) {
            pd_cli_print_err(&err);
            rc = 1;
            goto done;
        }
    } while (got > 0 && p.n < (size_t)len);
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
