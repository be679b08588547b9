/* loop.c - poll loop, key dispatch, effects, frame pacing and latency measurement (DESIGN
 * in loop.h). */
#include "loop.h"

#include <curses.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "cmdline.h"
#include "draw.h"
#include "keys.h"
#include "layout.h"
#include "mouse.h"
#include "panes.h"
#include "term.h"

#define FRAME_S (1.0 / 30.0)

double pd_loop_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void relayout(struct pd_app *a, struct pd_layout *l)
{
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    pd_layout_compute(rows, cols, a->focus, a->help, pd_draw_overlay_lines(a), l);
    int steps_rows = l->show_steps ? l->steps.h - 2 : 0;
    pd_app_resize(a, l->trace.h - 1, l->trace.w, steps_rows, l->narrow);
}

static void handle_key(struct pd_app *a, wint_t ch, bool is_code, struct pd_layout *l)
{
    if (is_code && ch == KEY_RESIZE) {
        relayout(a, l);
        return;
    }
    if (is_code && ch == KEY_MOUSE) {
        MEVENT ev;
        if (getmouse(&ev) != OK) {
            return;
        }
        enum pd_mouse_kind k;
        if (ev.bstate & BUTTON4_PRESSED) {
            k = PD_MOUSE_WHEEL_UP;
        } else if (ev.bstate & BUTTON5_PRESSED) {
            k = PD_MOUSE_WHEEL_DOWN;
        } else if (ev.bstate & BUTTON1_PRESSED) {
            k = PD_MOUSE_CLICK;
        } else {
            return;
        }
        enum pd_pane focus = a->focus;
        pd_mouse(a, l, ev.y, ev.x, k);
        if (a->focus != focus) {
            relayout(a, l);
        }
        return;
    }
    if (a->cmd_active) {
        pd_cmdline_key(ch, is_code);
        return;
    }
    int key = (int)ch;
    if (!is_code && ch == '\r') {
        key = '\n';
    }
    enum pd_action act = pd_keys_lookup(key);
    enum pd_pane focus = a->focus;
    bool help = a->help;
    pd_app_do(a, act);
    if (a->focus != focus || a->help != help) {
        relayout(a, l); /* the narrow layout swaps steps and KV by focus */
    }
}

static void run_effects(struct pd_app *a, const struct pd_loop_source *src)
{
    struct pd_app_fx fx;
    while (pd_app_fx_pop(a, &fx)) {
        switch (fx.kind) {
        case PD_FX_CMDLINE:
            pd_cmdline_open(fx.cmdline_kind, fx.text);
            break;
        case PD_FX_QUIT:
            a->quit = true;
            break;
        case PD_FX_RERUN:
            if (a->recording && pd_app_unsaved(a)) {
                pd_app_msg(a, true, "not run again: this session's edits did not save (s "
                                    "retries; :q! quits without them)");
                break;
            }
            a->quit_discarded = pd_app_unsaved(a); /* --no-record: nowhere to keep them */
            a->rerun = true;
            a->quit = true;
            break;
        case PD_FX_SESSION:
        case PD_FX_SAVE:
        case PD_FX_BRANCHES:
        case PD_FX_DIFF:
        case PD_FX_OPEN:
            if (src->exec) {
                src->exec(src->ud, a, &fx);
            }
            break;
        default:
            break;
        }
    }
}

static void record_key_latency(struct pd_app *a, double s)
{
    double ms = s * 1000.0;
    a->stats.key_lat_ms_sum += ms;
    a->stats.key_frames++;
    if (ms > a->stats.key_lat_ms_max) {
        a->stats.key_lat_ms_max = ms;
    }
}

/* Log lines go to the ring while curses owns the screen; the newest new one is shown on
 * the message line (unless the command line is open). */
static void show_new_log(struct pd_app *a, char *last, size_t n)
{
    char line[PD_LOG_LINE_MAX];
    if (a->cmd_active || !pd_log_ring_get(0, line, sizeof line) || strcmp(line, last) == 0) {
        return;
    }
    snprintf(last, n, "%s", line);
    pd_app_msg(a, false, "log: %s", line);
}

int pd_loop_run(struct pd_app *a, const struct pd_loop_source *src)
{
    struct pd_layout l;
    pd_cmdline_init(a);
    relayout(a, &l);
    double last_frame = 0, last_tick = pd_loop_now();
    double key_t0 = -1; /* time of the oldest key not drawn yet */
    char last_log[PD_LOG_LINE_MAX];
    if (!pd_log_ring_get(0, last_log, sizeof last_log)) {
        last_log[0] = '\0';
    }
    while (!a->quit) {
        if (pd_term_signalled()) {
            break;
        }
        if (pd_term_take_interrupt()) {
            pd_app_do(a, PD_ACT_INTERRUPT);
            run_effects(a, src);
            if (a->quit) {
                break;
            }
        }
        double now = pd_loop_now();
        int timeout = -1;
        if (a->dirty) {
            double wait = last_frame + FRAME_S - now;
            timeout = wait <= 0 ? 0 : (int)(wait * 1000.0) + 1;
        }
        if (a->playing) {
            timeout = timeout < 0 || timeout > 33 ? 33 : timeout;
        }
        bool lagging = a->recording && a->n_committed < (int64_t)a->n_toks;
        if (a->kind == PD_APP_LIVE && (!a->finished || lagging) &&
            (timeout < 0 || timeout > 500)) {
            timeout = 500; /* tok/s and recording state refresh (also while the recording
                            * commits the end of a finished generation) */
        }
        struct pollfd fds[2];
        int nfds = 0;
        fds[nfds++] = (struct pollfd){STDIN_FILENO, POLLIN, 0};
        int sfd = src->fd ? src->fd(src->ud) : -1;
        if (sfd >= 0) {
            fds[nfds++] = (struct pollfd){sfd, POLLIN, 0};
        }
        int pr = poll(fds, (nfds_t)nfds, timeout);
        if (pr < 0 && errno != EINTR) {
            pd_log(PD_LOG_ERROR, "poll: %s", "failed");
            break;
        }
        /* Keys (also after EINTR: a SIGWINCH leaves KEY_RESIZE to read). */
        wint_t ch;
        int r;
        while ((r = get_wch(&ch)) != ERR) {
            if (key_t0 < 0) {
                key_t0 = pd_loop_now();
            }
            a->stats.keys++;
            handle_key(a, ch, r == KEY_CODE_YES, &l);
            run_effects(a, src);
            if (a->quit) {
                break;
            }
        }
        if (src->pump) {
            src->pump(src->ud, a);
        }
        now = pd_loop_now();
        pd_app_tick(a, now - last_tick);
        last_tick = now;
        run_effects(a, src);
        if (a->quit) {
            break;
        }
        if (a->kind == PD_APP_LIVE && !a->finished) {
            a->dirty |= PD_DIRTY_STATUS;
        }
        show_new_log(a, last_log, sizeof last_log);
        if (key_t0 >= 0 && !a->dirty) {
            /* The keys changed nothing on screen: their effect is complete now. */
            record_key_latency(a, pd_loop_now() - key_t0);
            key_t0 = -1;
        }
        if (l.overlay != a->help || (a->help && l.overlay_lines != pd_draw_overlay_lines(a))) {
            relayout(a, &l); /* an overlay opened, closed or changed (also from effects) */
        }
        bool key_pending = key_t0 >= 0;
        if (a->dirty && (key_pending || now - last_frame >= FRAME_S)) {
            double t0 = pd_loop_now();
            pd_draw_frame(a, &l);
            double t1 = pd_loop_now();
            double ms = (t1 - t0) * 1000.0;
            a->stats.frames++;
            a->stats.draw_ms_sum += ms;
            a->stats.draw_ms_last = ms;
            if (ms > a->stats.draw_ms_max) {
                a->stats.draw_ms_max = ms;
            }
            if (key_pending) {
                record_key_latency(a, t1 - key_t0);
                key_t0 = -1;
            }
            last_frame = t1;
        }
    }
    pd_cmdline_deinit();
    return 0;
}
