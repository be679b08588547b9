/* term.c - curses setup/teardown, colour tiers, semantic styles (see term.h). */
#include "term.h"

#include <curses.h>
#include <langinfo.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static const char *const tier_names[PD_TIER_COUNT] = {"mono", "8", "256", "truecolor"};
_Static_assert(sizeof tier_names / sizeof tier_names[0] == PD_TIER_COUNT, "tier table");

const char *pd_tier_name(enum pd_color_tier t)
{
    return (unsigned)t < PD_TIER_COUNT ? tier_names[t] : "?";
}

enum pd_color_tier pd_term_detect_tier(const char *colorterm, const char *no_color,
                                       int n_colors, bool direct, bool can_change)
{
    if ((no_color && *no_color) || n_colors < 8) {
        return PD_TIER_MONO;
    }
    bool want_true = colorterm && (strcmp(colorterm, "truecolor") == 0 ||
                                   strcmp(colorterm, "24bit") == 0);
    if (want_true && (direct || (can_change && n_colors >= 256))) {
        return PD_TIER_TRUE;
    }
    if (n_colors >= 256) {
        return PD_TIER_256;
    }
    return PD_TIER_8;
}

/* ---- the heat scale ------------------------------------------------------------------ */

static const float heat_bits[PD_HEAT_LEVELS - 1] = {1.0f, 2.0f, 3.5f, 5.0f, 7.0f, 9.0f, 12.0f};

/* A sequential scale, dark to light, evenly spaced in lightness. */
static const uint8_t heat_rgb[PD_HEAT_LEVELS][3] = {
    {0, 0, 0},       {0x2d, 0x1e, 0x5c}, {0x5a, 0x1f, 0x7a}, {0x94, 0x2a, 0x6b},
    {0xc8, 0x3e, 0x4d}, {0xea, 0x6a, 0x2a}, {0xf7, 0xa8, 0x1e}, {0xfb, 0xe8, 0x7a},
};

int pd_heat_level(float bits)
{
    if (!(bits >= heat_bits[0])) {
        return 0;
    }
    int l = 1;
    while (l < PD_HEAT_LEVELS - 1 && bits >= heat_bits[l]) {
        l++;
    }
    return l;
}

void pd_heat_rgb(int level, uint8_t rgb[3])
{
    if (level < 0 || level >= PD_HEAT_LEVELS) {
        level = 0;
    }
    memcpy(rgb, heat_rgb[level], 3);
}

static int cube_level(int v)
{
    static const int steps[6] = {0, 95, 135, 175, 215, 255};
    int best = 0;
    for (int i = 1; i < 6; i++) {
        if (abs(steps[i] - v) < abs(steps[best] - v)) {
            best = i;
        }
    }
    return best;
}

int pd_rgb_to_xterm256(const uint8_t rgb[3])
{
    static const int steps[6] = {0, 95, 135, 175, 215, 255};
    int r = cube_level(rgb[0]), g = cube_level(rgb[1]), b = cube_level(rgb[2]);
    long dr = steps[r] - rgb[0], dg = steps[g] - rgb[1], db = steps[b] - rgb[2];
    long dcube = dr * dr + dg * dg + db * db;
    int avg = (rgb[0] + rgb[1] + rgb[2]) / 3;
    int gi = avg < 8 ? 0 : avg > 238 ? 23 : (avg - 8) / 10;
    int gv = 8 + 10 * gi;
    long dgrey = (long)(gv - rgb[0]) * (gv - rgb[0]) + (long)(gv - rgb[1]) * (gv - rgb[1]) +
                 (long)(gv - rgb[2]) * (gv - rgb[2]);
    return dgrey < dcube ? 232 + gi : 16 + 36 * r + 6 * g + b;
}

static bool dark(const uint8_t rgb[3])
{
    double l = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
    return l < 128.0;
}

/* ---- styles --------------------------------------------------------------------------- */

static struct {
    bool open;
    enum pd_color_tier tier;
    attr_t style[PD_STYLE_COUNT];
    attr_t heat[PD_HEAT_LEVELS];
    short next_pair;
    volatile sig_atomic_t signalled;
    volatile sig_atomic_t interrupts;
} T;

/* Basic-colour fallbacks for each style: fg, bg (-1 = default), extra attributes. */
struct style_def {
    short fg8, bg8;
    attr_t attr;      /* added in every tier */
    attr_t mono;      /* used instead of colour in mono */
};

static const struct style_def style_defs[PD_STYLE_COUNT] = {
    [PD_STYLE_NORMAL] = {-1, -1, A_NORMAL, A_NORMAL},
    [PD_STYLE_TITLE] = {COLOR_WHITE, COLOR_BLUE, A_NORMAL, A_REVERSE},
    [PD_STYLE_TITLE_FOCUS] = {COLOR_BLACK, COLOR_CYAN, A_BOLD, A_REVERSE | A_BOLD},
    [PD_STYLE_STATUS] = {COLOR_BLACK, COLOR_WHITE, A_NORMAL, A_REVERSE},
    [PD_STYLE_STATUS_HOT] = {COLOR_WHITE, COLOR_RED, A_BOLD, A_REVERSE | A_BOLD},
    [PD_STYLE_ERROR] = {COLOR_RED, -1, A_BOLD, A_BOLD},
    [PD_STYLE_DIM] = {-1, -1, A_DIM, A_DIM},
    [PD_STYLE_MARKER] = {COLOR_CYAN, -1, A_BOLD, A_BOLD},
    [PD_STYLE_PRUNED] = {-1, -1, A_DIM, A_DIM},
    [PD_STYLE_PROMPT] = {COLOR_GREEN, -1, A_NORMAL, A_DIM},
    [PD_STYLE_INJECTED] = {COLOR_CYAN, -1, A_UNDERLINE, A_UNDERLINE},
    [PD_STYLE_CURSOR] = {-1, -1, A_REVERSE, A_REVERSE},
    [PD_STYLE_MATCH] = {COLOR_BLACK, COLOR_GREEN, A_NORMAL, A_UNDERLINE | A_BOLD},
    [PD_STYLE_SELECTED] = {-1, -1, A_REVERSE, A_REVERSE},
    [PD_STYLE_BAR] = {COLOR_BLUE, -1, A_NORMAL, A_NORMAL},
    [PD_STYLE_BAR_CHOSEN] = {COLOR_YELLOW, -1, A_BOLD, A_BOLD},
    [PD_STYLE_KV_KEPT] = {COLOR_GREEN, -1, A_NORMAL, A_NORMAL},
    [PD_STYLE_KV_EVICTED] = {COLOR_RED, -1, A_NORMAL, A_DIM},
    [PD_STYLE_KV_SINK] = {COLOR_BLUE, -1, A_BOLD, A_BOLD},
    [PD_STYLE_KV_PROTECTED] = {COLOR_CYAN, -1, A_NORMAL, A_UNDERLINE},
};
_Static_assert(sizeof style_defs / sizeof style_defs[0] == PD_STYLE_COUNT, "style table");

/* 8-colour heat: background per level, black text on the bright ones. */
static const short heat8_bg[PD_HEAT_LEVELS] = {-1,         COLOR_BLUE, COLOR_BLUE, COLOR_MAGENTA,
                                               COLOR_MAGENTA, COLOR_RED, COLOR_YELLOW,
                                               COLOR_YELLOW};
static const attr_t heat_mono[PD_HEAT_LEVELS] = {
    A_NORMAL,    A_NORMAL, A_NORMAL,          A_UNDERLINE,
    A_UNDERLINE, A_BOLD,   A_BOLD | A_UNDERLINE, A_BOLD | A_UNDERLINE | A_STANDOUT,
};

static attr_t make_pair(short fg, short bg)
{
    short p = T.next_pair;
    if (p >= COLOR_PAIRS || p > 255) {
        return A_NORMAL;
    }
    if (init_pair(p, fg, bg) == ERR) {
        return A_NORMAL;
    }
    T.next_pair++;
    return COLOR_PAIR(p);
}

/* A colour index for an RGB value in the current tier (palette entries are redefined in
 * truecolor mode without direct colour; 'slot' numbers them). */
static short rgb_color(const uint8_t rgb[3], int slot, bool direct)
{
    if (T.tier == PD_TIER_TRUE && direct) {
        return -2; /* handled by the caller with extended pairs */
    }
    if (T.tier == PD_TIER_TRUE) {
        short idx = (short)(COLORS - 1 - slot);
        init_color(idx, (short)(rgb[0] * 1000 / 255), (short)(rgb[1] * 1000 / 255),
                   (short)(rgb[2] * 1000 / 255));
        return idx;
    }
    return (short)pd_rgb_to_xterm256(rgb);
}

static void setup_styles(bool direct)
{
    T.next_pair = 1;
    for (int s = 0; s < PD_STYLE_COUNT; s++) {
        const struct style_def *d = &style_defs[s];
        if (T.tier == PD_TIER_MONO) {
            T.style[s] = d->mono;
        } else if (d->fg8 == -1 && d->bg8 == -1) {
            T.style[s] = d->attr;
        } else {
            T.style[s] = make_pair(d->fg8, d->bg8) | d->attr;
        }
    }
    T.heat[0] = A_NORMAL;
    for (int l = 1; l < PD_HEAT_LEVELS; l++) {
        if (T.tier == PD_TIER_MONO) {
            T.heat[l] = heat_mono[l];
            continue;
        }
        if (T.tier == PD_TIER_8) {
            short fg = heat8_bg[l] == COLOR_YELLOW ? COLOR_BLACK : COLOR_WHITE;
            T.heat[l] = make_pair(fg, heat8_bg[l]);
            continue;
        }
        short bg = rgb_color(heat_rgb[l], l, direct);
        if (bg == -2) {
            int p = T.next_pair++;
            int rgbv = (heat_rgb[l][0] << 16) | (heat_rgb[l][1] << 8) | heat_rgb[l][2];
            int fgv = dark(heat_rgb[l]) ? 0xffffff : 0x000000;
            if (p < 256 && init_extended_pair(p, fgv, rgbv) != ERR) {
                T.heat[l] = COLOR_PAIR(p);
            } else {
                T.heat[l] = A_REVERSE;
            }
            continue;
        }
        short fg = dark(heat_rgb[l]) ? 15 : 16;
        T.heat[l] = make_pair(fg, bg);
    }
}

/* ---- exit paths -------------------------------------------------------------------------- */

static void on_quit_signal(int sig)
{
    (void)sig;
    T.signalled = 1;
}

static void on_interrupt(int sig)
{
    (void)sig;
    T.interrupts = 1;
}

static void on_crash(int sig)
{
    if (T.open) {
        endwin();
        T.open = false;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void at_exit(void)
{
    pd_term_close();
}

bool pd_term_signalled(void)
{
    return T.signalled != 0;
}

bool pd_term_take_interrupt(void)
{
    if (!T.interrupts) {
        return false;
    }
    T.interrupts = 0;
    return true;
}

enum pd_status pd_term_open(struct pd_err *err)
{
    if (T.open) {
        return PD_OK;
    }
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        return pd_err_set(err, PD_EIO, "the workbench needs a terminal (stdin and stdout)");
    }
    setlocale(LC_ALL, "");
    /* Token text is UTF-8 whatever the user's locale; without a UTF-8 LC_CTYPE curses
     * could not draw it (wide characters, box drawing). */
    const char *cs = nl_langinfo(CODESET);
    if (!cs || strcmp(cs, "UTF-8") != 0) {
        if (!setlocale(LC_CTYPE, "C.UTF-8")) {
            pd_log(PD_LOG_WARN, "no UTF-8 locale (LC_CTYPE): non-ASCII text may not show");
        }
    }
    static bool registered;
    if (!registered) {
        atexit(at_exit);
        registered = true;
    }
    if (!newterm(NULL, stdout, stdin)) {
        return pd_err_set(err, PD_EIO, "cannot start curses for TERM=%s",
                          getenv("TERM") ? getenv("TERM") : "(unset)");
    }
    T.open = true;
    pd_log_set_stderr(0);
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    set_escdelay(25);
    curs_set(0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_quit_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = on_interrupt;
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_crash;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGFPE, &sa, NULL);
    sigaction(SIGABRT, &sa, NULL);

    bool has = has_colors();
    if (has) {
        start_color();
        use_default_colors();
    }
    bool direct = has && COLORS >= (1 << 24);
    T.tier = pd_term_detect_tier(getenv("COLORTERM"), getenv("NO_COLOR"), has ? COLORS : 0,
                                 direct, has && can_change_color());
    if (T.tier == PD_TIER_256 && getenv("COLORTERM") &&
        (strcmp(getenv("COLORTERM"), "truecolor") == 0 ||
         strcmp(getenv("COLORTERM"), "24bit") == 0)) {
        pd_log(PD_LOG_INFO, "COLORTERM asks for truecolor but TERM=%s has no direct colour "
                            "and fixed palette; using 256 colours",
               getenv("TERM") ? getenv("TERM") : "");
    }
    setup_styles(direct);
    return PD_OK;
}

void pd_term_close(void)
{
    if (!T.open) {
        return;
    }
    T.open = false;
    curs_set(1);
    endwin();
    pd_log_set_stderr(1);
}

enum pd_color_tier pd_term_tier(void)
{
    return T.tier;
}

unsigned long pd_term_style(enum pd_style s)
{
    return (unsigned)s < PD_STYLE_COUNT ? T.style[s] : A_NORMAL;
}

unsigned long pd_term_heat(int level)
{
    return level > 0 && level < PD_HEAT_LEVELS ? T.heat[level] : A_NORMAL;
}
