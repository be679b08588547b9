/* cli_progress.c - progress lines and summaries of the bulk commands (cli_progress.h). */
#include "cli_progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "termsafe.h"

#define REDRAW_S 0.1   /* TTY: at most ten redraws a second */
#define LINES_S 10.0   /* LINES: a line at least every 10 s ... */
#define LINES_FRAC 0.1 /* ... or every 10% */
#define BAR_W 20

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum pd_progress_mode pd_progress_mode_default(void)
{
    const char *e = getenv("PONDER_PROGRESS");
    if (e && strcmp(e, "tty") == 0) {
        return PD_PROGRESS_TTY;
    }
    if (e && strcmp(e, "lines") == 0) {
        return PD_PROGRESS_LINES;
    }
    if (e && strcmp(e, "off") == 0) {
        return PD_PROGRESS_OFF;
    }
    return isatty(STDERR_FILENO) ? PD_PROGRESS_TTY : PD_PROGRESS_OFF;
}

void pd_progress_start(struct pd_progress *p, const char *label, const char *unit,
                       uint64_t total)
{
    memset(p, 0, sizeof *p);
    p->mode = pd_progress_mode_default();
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->t0 = mono_s();
}

double pd_progress_elapsed(const struct pd_progress *p)
{
    return mono_s() - p->t0;
}

/* "12s", "3m07s", "2h05m". */
static void fmt_duration(double s, char *out, size_t n)
{
    long long t = (long long)(s + 0.5);
    if (t < 60) {
        snprintf(out, n, "%llds", t);
    } else if (t < 3600) {
        snprintf(out, n, "%lldm%02llds", t / 60, t % 60);
    } else {
        snprintf(out, n, "%lldh%02lldm", t / 3600, t / 60 % 60);
    }
}

/* A count: items as is, bytes in MB. */
static void fmt_count(const struct pd_progress *p, uint64_t v, char *out, size_t n)
{
    if (p->unit) {
        snprintf(out, n, "%llu", (unsigned long long)v);
    } else {
        snprintf(out, n, "%.1f", (double)v / 1e6);
    }
}

/* The progress text: "[###...] 45/100 45% 12.3 traces/s ETA 4s" (no label). */
static void progress_text(const struct pd_progress *p, double el, char *out, size_t n)
{
    char done[32], total[32], rate_s[48] = "", eta[48] = "", bar[BAR_W + 4] = "";
    fmt_count(p, p->done, done, sizeof done);
    fmt_count(p, p->total, total, sizeof total);
    double rate = el > 0 ? (double)p->done / el : 0;
    if (p->done > 0 && el > 0.05) {
        snprintf(rate_s, sizeof rate_s, " %.*f %s/s", p->unit ? 1 : 1,
                 p->unit ? rate : rate / 1e6, p->unit ? p->unit : "MB");
    }
    if (p->total) {
        int fill = (int)((double)p->done / (double)p->total * BAR_W);
        bar[0] = '[';
        for (int i = 0; i < BAR_W; i++) {
            bar[1 + i] = i < fill ? '#' : '.';
        }
        bar[BAR_W + 1] = ']';
        bar[BAR_W + 2] = ' ';
        bar[BAR_W + 3] = '\0';
        if (p->done > 0 && p->done < p->total && rate > 0) {
            char d[24];
            fmt_duration((double)(p->total - p->done) / rate, d, sizeof d);
            snprintf(eta, sizeof eta, " ETA %s", d);
        }
        snprintf(out, n, "%s%s/%s%s %d%%%s%s", bar, done, total, p->unit ? "" : " MB",
                 (int)(100.0 * (double)p->done / (double)p->total), rate_s, eta);
    } else {
        snprintf(out, n, "%s%s%s", done, p->unit ? "" : " MB", rate_s);
    }
}

static int term_cols(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) {
        return ws.ws_col;
    }
    return 80;
}

/* The label as one safe line (it may be a file name). */
static void label_text(const struct pd_progress *p, char *out, size_t n)
{
    pd_termsafe_str(p->label ? p->label : "", out, n);
}

void pd_progress_update(struct pd_progress *p, uint64_t done, uint64_t total)
{
    if (total) {
        p->total = total;
    }
    p->done = done;
    if (p->mode == PD_PROGRESS_OFF) {
        return;
    }
    double now = mono_s();
    bool last = p->total && done >= p->total;
    double el = now - p->t0;
    char text[256], label[128];
    if (p->mode == PD_PROGRESS_TTY) {
        if (now - p->last_draw < REDRAW_S && !last) {
            return;
        }
        progress_text(p, el, text, sizeof text);
        label_text(p, label, sizeof label);
        /* the whole line fits the terminal: the label gives way first */
        int room = term_cols() - 2 - (int)strlen(text);
        fprintf(stderr, "\r%.*s %s\033[K", room > 0 ? room : 0, label, text);
        fflush(stderr);
        p->drawn = true;
        p->last_draw = now;
        return;
    }
    double frac = p->total ? (double)done / (double)p->total : 0;
    if (now - p->last_draw < LINES_S && frac - p->last_frac < LINES_FRAC && !last) {
        return;
    }
    if (last && p->last_frac >= 1.0) {
        return;
    }
    progress_text(p, el, text, sizeof text);
    label_text(p, label, sizeof label);
    fprintf(stderr, "%s %s\n", label, text);
    fflush(stderr);
    p->last_draw = now;
    p->last_frac = last ? 1.0 : frac;
}

void pd_progress_clear(struct pd_progress *p)
{
    if (p->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->drawn = false;
    }
}

void pd_progress_summary(struct pd_progress *p, const char *fmt, ...)
{
    pd_progress_clear(p);
    char msg[1024], label[128], took[32], rate[64] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    double el = pd_progress_elapsed(p);
    if (el < 10) {
        snprintf(took, sizeof took, "%.2f s", el);
    } else {
        fmt_duration(el, took, sizeof took);
    }
    if (p->unit && p->done > 0 && el > 0) {
        snprintf(rate, sizeof rate, " (%.1f %s/s)", (double)p->done / el, p->unit);
    }
    label_text(p, label, sizeof label);
    fprintf(stderr, "%s: ", label);
    pd_termsafe_write(stderr, msg, strlen(msg), 0);
    fprintf(stderr, " in %s%s\n", took, rate);
    fflush(stderr);
}
