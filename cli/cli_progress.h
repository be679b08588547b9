/* cli_progress.h - progress of the bulk commands (score --in/--all, analyze, prune,
 * import, export, generate --in) on stderr, and the summary line each ends with.
 *
 * On a terminal one line is redrawn in place (carriage return, at most ~10 times a
 * second): "label [####......] 450/1000 45% 12.3 traces/s ETA 44s". Elsewhere nothing is
 * drawn, so logs and pipes stay clean; the summary line ("label: what in 3.2 s (4.1
 * traces/s)") is printed either way. PONDER_PROGRESS overrides the choice: "tty" draws the
 * redrawn line even when stderr is not a terminal (tests, `script` sessions), "lines"
 * prints a plain line every 10% or 10 s (batch logs), "off" draws nothing. Nothing ever goes
 * to stdout, so --json output is untouched.
 *
 * Ownership: label and unit are borrowed for the life of the struct. Thread-safety: one
 * thread (the command's). */
#ifndef PD_CLI_PROGRESS_H
#define PD_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

enum pd_progress_mode {
    PD_PROGRESS_OFF,    /* draw nothing (the summary is still printed) */
    PD_PROGRESS_TTY,    /* one line redrawn with \r */
    PD_PROGRESS_LINES,  /* a plain line now and then */
    PD_PROGRESS_MODE_COUNT
};

struct pd_progress {
    enum pd_progress_mode mode;
    const char *label;      /* borrowed: the command, e.g. "score" */
    const char *unit;       /* borrowed: "traces", "sessions"; NULL counts bytes */
    uint64_t total;         /* 0: unknown */
    uint64_t done;
    double t0;              /* monotonic seconds at start */
    double last_draw;       /* of the last redraw / plain line */
    double last_frac;       /* LINES: the fraction done at the last line */
    bool drawn;             /* TTY: a line is on screen */
};

/* The mode for this process: PONDER_PROGRESS when set to tty, lines or off, else TTY when
 * stderr is a terminal, else OFF. */
enum pd_progress_mode pd_progress_mode_default(void);

/* Starts the clock; total 0 when unknown (the line then shows the count and rate only). */
void pd_progress_start(struct pd_progress *p, const char *label, const char *unit,
                       uint64_t total);

/* Records progress (done of total; total 0 keeps the known one) and redraws when due.
 * The last update (done == total) always draws. */
void pd_progress_update(struct pd_progress *p, uint64_t done, uint64_t total);

/* Erases the redrawn line, before other stderr output (an error message). */
void pd_progress_clear(struct pd_progress *p);

/* Seconds since pd_progress_start. */
double pd_progress_elapsed(const struct pd_progress *p);

/* Clears the line and prints the summary "label: <fmt...> in T s (R unit/s)" on stderr (the
 * rate when a unit is set and anything was done). */
void pd_progress_summary(struct pd_progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
