/* cmdline.h - the ':' and '/' command line: GNU readline's callback interface driven from
 * the poll loop, with its display redirected into the app (draw_cmdline.c paints it).
 *
 * DESIGN
 * Readline never touches the terminal here: its terminal preparation, signal handling and
 * output are switched off; keys from curses are fed to it byte by byte through
 * rl_getc_function (curses key codes become the escape sequences readline binds: arrows,
 * Home/End, Delete, Backspace); its redisplay hook copies the line buffer and point into
 * app->cmd_text / cmd_point and sets the dirty bit. Enter hands the line to
 * pd_app_command (':') or pd_app_search ('/'); Esc or Ctrl-G cancels. Tab completes
 * command names, mode names and existing tag names; several matches are listed on the
 * message line. History persists in $PONDER_HISTORY, else $XDG_STATE_HOME/ponder/history,
 * else ~/.local/state/ponder/history (500 lines).
 * Thread-safety: UI thread only (readline is global). One app at a time. */
#ifndef PD_CMDLINE_H
#define PD_CMDLINE_H

#include <stdbool.h>
#include <wchar.h>

#include "app.h"

/* Sets readline up for app a (borrowed until pd_cmdline_deinit) and loads the history. */
void pd_cmdline_init(struct pd_app *a);
/* Saves the history and detaches readline. */
void pd_cmdline_deinit(void);
/* Opens the line with kind ':' or '/' and initial text. */
void pd_cmdline_open(char kind, const char *init);
/* Feeds one key (is_code: a curses KEY_* code rather than a character). */
void pd_cmdline_key(wint_t ch, bool is_code);
/* The history file path chosen (for messages), or "" when none could be made. */
const char *pd_cmdline_history_path(void);

#endif
