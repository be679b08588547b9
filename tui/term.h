/* term.h - curses setup and teardown, colour tiers and the semantic styles panes use.
 *
 * Colour tiers, chosen once at start:
 *   truecolor  COLORTERM is "truecolor" or "24bit": exact RGB through a direct-colour
 *              terminfo entry, or by redefining palette entries when the terminal allows
 *              it (restored at exit); otherwise falls back to 256
 *   256        the terminal has >= 256 colours: nearest xterm-cube colours
 *   8          basic colours
 *   mono       NO_COLOR is set (any value but empty) or the terminal has no colours:
 *              bold / underline / dim / reverse only
 * Surprisal is drawn on an 8-level perceptual scale (level 0 = unremarkable, drawn
 * plain; 1..7 a sequential dark-purple -> red -> orange -> pale-yellow background with
 * black or white text chosen by luminance). Panes ask for semantic styles (enum
 * pd_style), never for raw colours, so every tier degrades the same way.
 *
 * Exit paths: pd_term_open installs handlers so the terminal is restored on normal exit
 * (atexit), SIGTERM/SIGHUP (a flag the loop reads: pd_term_signalled) and on
 * crashes (SIGSEGV, SIGBUS, SIGFPE, SIGABRT: endwin, then the default action). While
 * curses owns the screen, log lines stop going to stderr (they stay in the log ring).
 * SIGINT (Ctrl-C) is a key like q, not an exit path: pd_term_take_interrupt.
 * Thread-safety: UI thread only (curses is global). */
#ifndef PD_TERM_H
#define PD_TERM_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"

enum pd_color_tier {
    PD_TIER_MONO,
    PD_TIER_8,
    PD_TIER_256,
    PD_TIER_TRUE,
    PD_TIER_COUNT
};

/* "mono", "8", "256", "truecolor". */
const char *pd_tier_name(enum pd_color_tier t);

/* Pure: the tier for these environment values (NULL = unset) and terminal abilities. */
enum pd_color_tier pd_term_detect_tier(const char *colorterm, const char *no_color,
                                       int n_colors, bool direct, bool can_change);

enum pd_style {
    PD_STYLE_NORMAL,
    PD_STYLE_TITLE,        /* pane title */
    PD_STYLE_TITLE_FOCUS,  /* title of the focused pane */
    PD_STYLE_STATUS,       /* status bar */
    PD_STYLE_STATUS_HOT,   /* status bar highlights (paused, recording) */
    PD_STYLE_ERROR,        /* error messages */
    PD_STYLE_DIM,          /* secondary text */
    PD_STYLE_MARKER,       /* step / role markers in the trace */
    PD_STYLE_PRUNED,       /* tokens of pruned steps */
    PD_STYLE_PROMPT,       /* prompt tokens */
    PD_STYLE_INJECTED,     /* injected tokens */
    PD_STYLE_CURSOR,       /* the selected token */
    PD_STYLE_MATCH,        /* search matches */
    PD_STYLE_SELECTED,     /* selected row in a list */
    PD_STYLE_BAR,          /* top-k bars */
    PD_STYLE_BAR_CHOSEN,   /* the bar of the token actually produced */
    PD_STYLE_KV_KEPT,
    PD_STYLE_KV_EVICTED,
    PD_STYLE_KV_SINK,
    PD_STYLE_KV_PROTECTED,
    PD_STYLE_COUNT
};

#define PD_HEAT_LEVELS 8

/* Pure: surprisal level 0..7 for bits (NAN -> 0). Thresholds 1, 2, 3.5, 5, 7, 9, 12. */
int pd_heat_level(float bits);
/* Pure: the RGB of a heat level's background (level 0: none, all zero). */
void pd_heat_rgb(int level, uint8_t rgb[3]);
/* Pure: nearest xterm-256 colour index to an RGB value (cube and grey ramp). */
int pd_rgb_to_xterm256(const uint8_t rgb[3]);

/* Starts curses (locale from the environment, cbreak, no echo, keypad, invisible cursor,
 * colours) and installs the exit-path handlers. PD_EIO when there is no terminal. */
enum pd_status pd_term_open(struct pd_err *err);
/* Restores the terminal; safe to call twice and from the handlers. */
void pd_term_close(void);
/* The tier in use. */
enum pd_color_tier pd_term_tier(void);
/* A curses attribute (with colour pair) for a style / a heat level. */
unsigned long pd_term_style(enum pd_style s);
unsigned long pd_term_heat(int level);
/* Set by SIGTERM/SIGHUP; the loop ends (asking nothing) when it reads it. */
bool pd_term_signalled(void);
/* True once for each Ctrl-C (SIGINT) since the last call: the loop treats it like q
 * (asks when there are unsaved edits; a second one quits). */
bool pd_term_take_interrupt(void);

#endif
