/* cmdline.c - readline's callback interface inside the curses loop (DESIGN in cmdline.h). */
#include "cmdline.h"

#include <curses.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "utf8.h"

#define HISTORY_MAX 500
#define QUEUE_MAX 64

static struct {
    struct pd_app *app;            /* borrowed */
    unsigned char q[QUEUE_MAX];    /* bytes waiting for readline */
    size_t q_head, q_len;
    bool installed;
    FILE *null_out;                /* owned: readline's output goes nowhere */
    char history[PATH_MAX];
    int n_history_start;
} C;

static void q_push(const char *s, size_t n)
{
    for (size_t i = 0; i < n && C.q_len < QUEUE_MAX; i++) {
        C.q[(C.q_head + C.q_len++) % QUEUE_MAX] = (unsigned char)s[i];
    }
}

static int my_getc(FILE *f)
{
    (void)f;
    if (C.q_len == 0) {
        return EOF;
    }
    int c = C.q[C.q_head];
    C.q_head = (C.q_head + 1) % QUEUE_MAX;
    C.q_len--;
    return c;
}

static int my_input_available(void)
{
    return C.q_len > 0;
}

static void my_redisplay(void)
{
    if (!C.app) {
        return;
    }
    snprintf(C.app->cmd_text, sizeof C.app->cmd_text, "%s", rl_line_buffer ? rl_line_buffer : "");
    size_t n = strlen(C.app->cmd_text);
    C.app->cmd_point = rl_point < 0 ? 0 : (size_t)rl_point > n ? (int)n : rl_point;
    C.app->dirty |= PD_DIRTY_CMDLINE;
}

static void noop_prep(int meta)
{
    (void)meta;
}

static void noop_deprep(void)
{
}

static void close_line(void)
{
    if (C.installed) {
        rl_callback_handler_remove();
        C.installed = false;
    }
    C.q_len = 0;
    if (C.app) {
        C.app->cmd_active = false;
        C.app->cmd_text[0] = '\0';
        C.app->cmd_point = 0;
        C.app->dirty |= PD_DIRTY_CMDLINE;
    }
}

static void on_line(char *line)
{
    struct pd_app *a = C.app;
    char kind = a ? a->cmd_kind : ':';
    char *copy = line ? strdup(line) : NULL;
    if (line && *line) {
        add_history(line);
    }
    free(line);
    close_line();
    if (a && copy) {
        if (kind == '/') {
            pd_app_search(a, copy);
        } else {
            pd_app_command(a, copy);
        }
    }
    free(copy);
}

/* ---- completion ------------------------------------------------------------------------- */

static const char *const mode_words[] = {"long", "short", "short:", "none", NULL};

static const char *const *complete_words;
static size_t complete_i;
static bool complete_tags;

static char *word_gen(const char *text, int state)
{
    if (state == 0) {
        complete_i = 0;
    }
    size_t n = strlen(text);
    if (complete_tags) {
        while (C.app && complete_i < C.app->n_tags) {
            const char *t = C.app->tags[complete_i++].tag;
            if (strncmp(t, text, n) == 0) {
                return strdup(t);
            }
        }
        return NULL;
    }
    while (complete_words && complete_words[complete_i]) {
        const char *w = complete_words[complete_i++];
        if (strncmp(w, text, n) == 0) {
            return strdup(w);
        }
    }
    return NULL;
}

static char **my_complete(const char *text, int start, int end)
{
    (void)end;
    rl_attempted_completion_over = 1;
    if (!C.app || C.app->cmd_kind != ':') {
        return NULL;
    }
    complete_tags = false;
    if (start == 0) {
        complete_words = pd_app_command_names();
    } else if (strncmp(rl_line_buffer, "mode ", 5) == 0) {
        complete_words = mode_words;
    } else if (strncmp(rl_line_buffer, "tag ", 4) == 0) {
        complete_tags = true;
    } else {
        return NULL;
    }
    return rl_completion_matches(text, word_gen);
}

static void my_display_matches(char **matches, int n, int max_len)
{
    (void)max_len;
    if (!C.app) {
        return;
    }
    char buf[256];
    size_t o = 0;
    for (int i = 1; i <= n && o + 2 < sizeof buf; i++) {
        int w = snprintf(buf + o, sizeof buf - o, "%s%s", i > 1 ? "  " : "", matches[i]);
        if (w < 0) {
            break;
        }
        o += (size_t)w;
        if (o >= sizeof buf) {
            o = sizeof buf - 1;
        }
    }
    pd_app_msg(C.app, false, "%s", buf);
}

/* ---- setup ------------------------------------------------------------------------------- */

static void choose_history_path(void)
{
    C.history[0] = '\0';
    const char *env = getenv("PONDER_HISTORY");
    if (env && *env) {
        snprintf(C.history, sizeof C.history, "%s", env);
        return;
    }
    char dir[PATH_MAX];
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    if (xdg && xdg[0] == '/') {
        snprintf(dir, sizeof dir, "%s/ponder", xdg);
    } else if (home && *home) {
        char state[PATH_MAX];
        snprintf(state, sizeof state, "%s/.local/state", home);
        mkdir(state, 0700); /* may exist */
        snprintf(dir, sizeof dir, "%s/.local/state/ponder", home);
        char local[PATH_MAX];
        snprintf(local, sizeof local, "%s/.local", home);
        mkdir(local, 0700);
        mkdir(state, 0700);
    } else {
        return;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return;
    }
    snprintf(C.history, sizeof C.history, "%s/history", dir);
}

const char *pd_cmdline_history_path(void)
{
    return C.history;
}

void pd_cmdline_init(struct pd_app *a)
{
    C.app = a;
    C.null_out = fopen("/dev/null", "w");
    rl_readline_name = "ponder";
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    rl_change_environment = 0;
    rl_getc_function = my_getc;
    rl_input_available_hook = my_input_available;
    rl_redisplay_function = my_redisplay;
    rl_prep_term_function = noop_prep;
    rl_deprep_term_function = noop_deprep;
    rl_instream = stdin;
    rl_outstream = C.null_out ? C.null_out : stderr;
    rl_attempted_completion_function = my_complete;
    rl_completion_display_matches_hook = my_display_matches;
    rl_initialize();
    rl_bind_keyseq("\\e[A", rl_get_previous_history);
    rl_bind_keyseq("\\e[B", rl_get_next_history);
    rl_bind_keyseq("\\e[C", rl_forward_char);
    rl_bind_keyseq("\\e[D", rl_backward_char);
    rl_bind_keyseq("\\e[3~", rl_delete);
    rl_bind_key('\t', rl_complete);
    using_history();
    stifle_history(HISTORY_MAX);
    choose_history_path();
    if (C.history[0]) {
        read_history(C.history);
    }
    C.n_history_start = history_length;
}

void pd_cmdline_deinit(void)
{
    close_line();
    if (C.history[0] && history_length > C.n_history_start) {
        write_history(C.history);
    }
    clear_history();
    if (C.null_out) {
        fclose(C.null_out);
        C.null_out = NULL;
    }
    rl_outstream = NULL;
    C.app = NULL;
}

void pd_cmdline_open(char kind, const char *init)
{
    if (!C.app) {
        return;
    }
    if (C.installed) {
        close_line();
    }
    C.app->cmd_active = true;
    C.app->cmd_kind = kind;
    C.app->msg[0] = '\0';
    rl_callback_handler_install("", on_line);
    C.installed = true;
    if (init && *init) {
        rl_insert_text(init);
    }
    my_redisplay();
}

void pd_cmdline_key(wint_t ch, bool is_code)
{
    if (!C.installed) {
        return;
    }
    if (!is_code && (ch == 27 || ch == 7)) { /* Esc, Ctrl-G */
        close_line();
        if (C.app) {
            pd_app_msg(C.app, false, "cancelled");
        }
        return;
    }
    if (is_code) {
        static const struct {
            int key;
            const char *seq;
        } map[] = {
            {KEY_UP, "\033[A"},    {KEY_DOWN, "\033[B"},  {KEY_RIGHT, "\033[C"},
            {KEY_LEFT, "\033[D"},  {KEY_DC, "\033[3~"},   {KEY_HOME, "\001"},
            {KEY_END, "\005"},     {KEY_BACKSPACE, "\177"}, {KEY_ENTER, "\r"},
        };
        bool found = false;
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
            if ((int)ch == map[i].key) {
                q_push(map[i].seq, strlen(map[i].seq));
                found = true;
            }
        }
        if (!found) {
            return;
        }
    } else if (ch == 8) {
        q_push("\177", 1);
    } else {
        char buf[4];
        size_t n = pd_utf8_encode((uint32_t)ch, buf);
        q_push(buf, n);
    }
    while (C.installed && C.q_len > 0) {
        rl_callback_read_char();
    }
}
