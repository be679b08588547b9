/* app_actions.c - the workbench's key actions: the action table and pd_app_do. */
#include "app.h"
#include "app_internal.h"

#include <string.h>

/* ---- actions --------------------------------------------------------------------------------- */

bool pd_app_session_live(struct pd_app *a)
{
    if (a->finished && (a->error[0] || strcmp(a->finish_reason, "stopped") == 0)) {
        pd_app_msg(a, true, "the generation has ended (%s)", a->error[0] ? a->error : "stopped");
        return false;
    }
    return true; /* after an end the session waits: actions start a new leg */
}

static void act_continue(struct pd_app *a)
{
    if (!pd_app_session_live(a)) {
        return;
    }
    if (!a->finished) {
        pd_app_msg(a, false, "still generating%s", a->paused ? " (paused: space resumes)" : "");
        return;
    }
    struct pd_cmd *c = pd_app_fx_cmd(a, PD_CMD_CONTINUE);
    if (c) {
        c->budget = a->continue_n;
        if (a->continue_n) {
            pd_app_msg(a, false, "continuing for %u more tokens", a->continue_n);
        } else {
            pd_app_msg(a, false, "continuing until the end of generation");
        }
    }
}

static void act_pause(struct pd_app *a)
{
    if (a->kind == PD_APP_REPLAY) {
        if (!a->playing && a->n_visible == a->n_toks) {
            pd_app_set_visible(a, 0);
        }
        a->playing = !a->playing;
        a->play_acc = 0;
        if (a->playing) {
            a->follow = true; /* the cursor rides the playhead */
        }
        pd_app_msg(a, false, a->playing ? "playing at %.0f tok/s" : "replay paused at %.0f tok/s",
                   a->speed);
        a->dirty |= PD_DIRTY_STATUS;
        return;
    }
    if (!pd_app_session_live(a)) {
        return;
    }
    if (a->finished) {
        pd_app_msg(a, false, "the generation has ended (%s): c continues", a->finish_reason);
        return;
    }
    bool want_pause = !(a->paused || a->pause_pending);
    if (!want_pause && a->mode_pending) {
        pd_app_send_mode(a, false); /* the mode chosen while paused, before the first token */
    }
    struct pd_cmd *c = pd_app_fx_cmd(a, want_pause ? PD_CMD_PAUSE : PD_CMD_RESUME);
    if (c) {
        a->pause_pending = want_pause;
        if (!want_pause) {
            a->paused = false;
        }
        pd_app_msg(a, false, want_pause ? "pausing..." : "resuming...");
        a->dirty |= PD_DIRTY_STATUS;
    }
}

static void act_answer_now(struct pd_app *a)
{
    if (pd_app_session_live(a) && pd_app_fx_cmd(a, PD_CMD_ANSWER_NOW)) {
        pd_app_msg(a, false, "answer now: closing the thinking span");
    }
}

/* m: long -> short -> none -> long. Only the final choice reaches the session: while
 * paused it goes on resume, while running once the keys settle (pd_app_tick); passing
 * through none never ends thinking (a or :mode none does). */
static void act_mode_cycle(struct pd_app *a)
{
    if (!pd_app_session_live(a)) {
        return;
    }
    a->mode = (enum pd_think_mode)((a->mode + 1) % PD_MODE_COUNT);
    a->mode_pending = true;
    a->mode_chosen_at = a->clock;
    char m[32];
    pd_app_mode_text(a, m, sizeof m);
    pd_app_msg(a, false, "mode %s %s%s", m, a->paused ? "(applies on resume)" : "(applies now)",
               a->mode == PD_MODE_NONE ? "; thinking goes on until a or :mode none" : "");
    a->dirty |= PD_DIRTY_STATUS;
}

void pd_app_send_mode(struct pd_app *a, bool close_thinking)
{
    struct pd_cmd *c = pd_app_fx_cmd(a, PD_CMD_SET_MODE);
    if (c) {
        c->mode = a->mode;
        c->budget = a->mode == PD_MODE_SHORT ? a->short_budget : 0;
        c->close_thinking = close_thinking;
        a->mode_pending = false;
    }
}

static void act_inject(struct pd_app *a)
{
    if (pd_app_session_live(a)) {
        pd_app_open_cmdline(a, ':', "inject ");
    }
}

static void act_branch(struct pd_app *a)
{
    if (!pd_app_session_live(a) || a->n_visible == 0) {
        return;
    }
    struct pd_cmd *c = pd_app_fx_cmd(a, PD_CMD_BRANCH);
    if (c) {
        c->pos = a->toks[a->cursor].pos + 1;
        pd_app_msg(a, false, "branching after position %lld", (long long)a->toks[a->cursor].pos);
    }
}

static struct pd_app_step *cursor_step(struct pd_app *a)
{
    int32_t s = pd_app_step_of(a, a->cursor);
    if (s < 0 || a->n_visible == 0) {
        pd_app_msg(a, true, "the cursor is not inside a reasoning step");
        return NULL;
    }
    return &a->steps[s];
}

static void act_prune(struct pd_app *a)
{
    struct pd_app_step *s = cursor_step(a);
    if (!s) {
        return;
    }
    if (s->open) {
        pd_app_msg(a, true, "step %d is still being written; prune it when it closes",
                   s->rec.index);
        return;
    }
    s->rec.pruned = !s->rec.pruned;
    pd_app_msg(a, false, "step %d %s", s->rec.index, s->rec.pruned ? "pruned" : "restored");
    a->dirty |= PD_DIRTY_TRACE | PD_DIRTY_STEPS | PD_DIRTY_STATUS | PD_DIRTY_INSPECT;
}

static void act_prune_continue(struct pd_app *a)
{
    if (!pd_app_session_live(a)) {
        return;
    }
    struct pd_app_step *s = cursor_step(a);
    if (!s) {
        return;
    }
    if (s->open) {
        pd_app_msg(a, true, "step %d is still being written", s->rec.index);
        return;
    }
    struct pd_cmd *c = pd_app_fx_cmd(a, PD_CMD_PRUNE);
    if (c) {
        c->pos = s->rec.pos_begin;
        c->pos_end = s->rec.pos_end;
        c->reencode = false;
        s->rec.pruned = true;
        pd_app_msg(a, false, "step %d pruned; dropping it from the model's cache", s->rec.index);
        a->dirty |= PD_DIRTY_TRACE | PD_DIRTY_STEPS | PD_DIRTY_STATUS;
    }
}

static void act_tag(struct pd_app *a)
{
    if (a->n_visible > 0) {
        pd_app_open_cmdline(a, ':', "tag ");
    }
}

static void act_kv_budget(struct pd_app *a)
{
    if (pd_app_session_live(a)) {
        pd_app_open_cmdline(a, ':', "budget ");
    }
}

static void act_divergence(struct pd_app *a)
{
    if (!pd_app_session_live(a)) {
        return;
    }
    if (!a->kv_shadow) {
        pd_app_msg(a, true, "divergence needs a KV policy in shadow mode (--kv SPEC,shadow)");
        return;
    }
    if (pd_app_fx_cmd(a, PD_CMD_DIVERGENCE)) {
        pd_app_msg(a, false, "measuring shadow divergence...");
    }
}

static void act_search(struct pd_app *a)
{
    pd_app_open_cmdline(a, '/', "");
}

static void act_search_next(struct pd_app *a)
{
    if (a->n_matches == 0) {
        pd_app_msg(a, true, a->search[0] ? "/%s: no matches" : "no search (press /)%s", a->search);
        return;
    }
    pd_app_jump_to_match(a, a->match_i + 1);
}

static void act_search_prev(struct pd_app *a)
{
    if (a->n_matches == 0) {
        pd_app_msg(a, true, a->search[0] ? "/%s: no matches" : "no search (press /)%s", a->search);
        return;
    }
    pd_app_jump_to_match(a, a->match_i + a->n_matches - 1);
}

void pd_app_move_to(struct pd_app *a, size_t i)
{
    a->follow = false;
    pd_app_set_cursor(a, i);
}

static void act_step_prev(struct pd_app *a)
{
    /* To the start of the cursor's step, or of the step before when already there. */
    for (size_t k = a->n_steps; k-- > 0;) {
        int64_t b = a->steps[k].rec.pos_begin;
        if (b < (int64_t)a->cursor && b < (int64_t)a->n_visible) {
            pd_app_move_to(a, (size_t)b);
            return;
        }
    }
    pd_app_msg(a, true, "no earlier step");
}

static void act_step_next(struct pd_app *a)
{
    for (size_t k = 0; k < a->n_steps; k++) {
        int64_t b = a->steps[k].rec.pos_begin;
        if (b > (int64_t)a->cursor && b < (int64_t)a->n_visible) {
            pd_app_move_to(a, (size_t)b);
            return;
        }
    }
    pd_app_msg(a, true, "no later step");
}

static void act_left(struct pd_app *a)
{
    if (a->focus == PD_PANE_INSPECT) {
        return;
    }
    if (a->cursor > 0) {
        pd_app_move_to(a, a->cursor - 1);
    }
}

static void act_right(struct pd_app *a)
{
    if (a->focus == PD_PANE_INSPECT) {
        return;
    }
    pd_app_move_to(a, a->cursor + 1);
}

/* Column of the first cell of token i on its line, and that line. */
static int cursor_col(struct pd_app *a, size_t *line)
{
    struct pd_wrap_src src = pd_app_wrap_src(a);
    *line = pd_wrap_line_of(&a->wrap, &src, a->cursor);
    struct pd_wrap_iter it;
    struct pd_wrap_cell c;
    pd_wrap_iter_line(&a->wrap, &src, *line, &it);
    int col = 0;
    while (pd_wrap_iter_next(&it, &c)) {
        if (c.item >= a->cursor && !c.in_prefix) {
            return col;
        }
        col += c.width;
    }
    return col;
}

/* The token at (line, col) or the nearest on that line. */
static bool token_at(struct pd_app *a, size_t line, int col, size_t *out)
{
    struct pd_wrap_src src = pd_app_wrap_src(a);
    struct pd_wrap_iter it;
    struct pd_wrap_cell c;
    pd_wrap_iter_line(&a->wrap, &src, line, &it);
    int x = 0;
    bool any = false;
    while (pd_wrap_iter_next(&it, &c)) {
        /* Only tokens that start on this line: a line holding just the tail of a
         * multi-line token (a blank line after "\n\n") has no token of its own. */
        if (!c.in_prefix && pd_wrap_line_of(&a->wrap, &src, c.item) == line) {
            *out = c.item;
            any = true;
            if (x + c.width > col) {
                return true;
            }
        }
        x += c.width;
    }
    return any;
}

static void move_lines(struct pd_app *a, long delta)
{
    if (a->focus == PD_PANE_INSPECT) {
        int n = a->n_visible ? a->toks[a->cursor].n_top : 0;
        if (n == 0) {
            return;
        }
        int s = a->alt_sel < 0 ? (delta > 0 ? -1 : n) : a->alt_sel;
        s += delta > 0 ? 1 : -1;
        a->alt_sel = s < 0 ? 0 : s >= n ? n - 1 : s;
        a->dirty |= PD_DIRTY_INSPECT;
        return;
    }
    if (a->focus == PD_PANE_STEPS) {
        if (delta < 0) {
            act_step_prev(a);
        } else {
            act_step_next(a);
        }
        return;
    }
    if (a->wrap.n_lines == 0 || a->n_visible == 0) {
        return;
    }
    size_t line;
    int col = cursor_col(a, &line);
    long target = (long)line + delta;
    if (target < 0) {
        target = 0;
    }
    if ((size_t)target >= a->wrap.n_lines) {
        target = (long)a->wrap.n_lines - 1;
    }
    /* Skip lines with no token cells (marker-only lines). */
    size_t tok;
    long step = delta > 0 ? 1 : -1;
    while (target >= 0 && (size_t)target < a->wrap.n_lines) {
        if (token_at(a, (size_t)target, col, &tok)) {
            if (tok < a->n_visible) {
                pd_app_move_to(a, tok);
            }
            return;
        }
        target += step;
    }
}

static void act_up(struct pd_app *a)
{
    move_lines(a, -1);
}

static void act_down(struct pd_app *a)
{
    move_lines(a, 1);
}

static void act_page_up(struct pd_app *a)
{
    move_lines(a, -(long)(a->trace_rows > 2 ? a->trace_rows - 1 : 1));
}

static void act_page_down(struct pd_app *a)
{
    move_lines(a, (long)(a->trace_rows > 2 ? a->trace_rows - 1 : 1));
}

static void act_home(struct pd_app *a)
{
    pd_app_move_to(a, 0);
}

static void act_end(struct pd_app *a)
{
    a->follow = true;
    pd_app_set_cursor(a, a->n_visible ? a->n_visible - 1 : 0);
    pd_app_msg(a, false, "following new tokens");
}

static void act_focus_next(struct pd_app *a)
{
    a->focus = (enum pd_pane)((a->focus + 1) % PD_PANE_COUNT);
    a->dirty = PD_DIRTY_ALL;
}

static void act_select(struct pd_app *a)
{
    if (a->focus != PD_PANE_INSPECT || a->alt_sel < 0 || a->n_visible == 0) {
        pd_app_msg(a, true, "select an alternative in the inspector first (Tab, then j/k)");
        return;
    }
    if (a->kind != PD_APP_LIVE || !pd_app_session_live(a)) {
        if (a->kind != PD_APP_LIVE) {
            pd_app_msg(a, true, "steering needs a live model: ponder replay %lld -m MODEL",
                       (long long)a->session_id);
        }
        return;
    }
    const struct pd_token_rec *t = &a->toks[a->cursor];
    if (a->alt_sel >= t->n_top || t->pos < 1) {
        return;
    }
    struct pd_cmd *c = pd_app_fx_cmd(a, PD_CMD_BRANCH);
    if (c) {
        c->pos = t->pos;
        c->token = t->top[a->alt_sel].id;
        pd_app_msg(a, false, "steering: branch at %lld with alternative #%d", (long long)t->pos,
                   a->alt_sel + 1);
    }
}

static void act_play_step(struct pd_app *a)
{
    a->playing = false;
    pd_app_set_visible(a, a->n_visible + 1);
    a->follow = true;
    pd_app_set_cursor(a, a->n_visible ? a->n_visible - 1 : 0);
}

static void act_play_back(struct pd_app *a)
{
    a->playing = false;
    if (a->n_visible > 0) {
        pd_app_set_visible(a, a->n_visible - 1);
    }
}

static void act_faster(struct pd_app *a)
{
    if (a->speed < 10000) {
        a->speed *= 2;
    }
    pd_app_msg(a, false, "replay speed %.1f tok/s", a->speed);
    a->dirty |= PD_DIRTY_STATUS;
}

static void act_slower(struct pd_app *a)
{
    if (a->speed > 0.25) {
        a->speed /= 2;
    }
    pd_app_msg(a, false, "replay speed %.1f tok/s", a->speed);
    a->dirty |= PD_DIRTY_STATUS;
}

static void act_prefer(struct pd_app *a)
{
    pd_app_command(a, "prefer");
}

static void act_save(struct pd_app *a)
{
    pd_app_fx_push(a, PD_FX_SAVE);
}

static void act_command(struct pd_app *a)
{
    pd_app_open_cmdline(a, ':', "");
}

static void act_help(struct pd_app *a)
{
    a->help = !a->help;
    a->help_top = 0;
    a->dirty = PD_DIRTY_ALL;
}

static void act_cancel(struct pd_app *a)
{
    if (a->help) {
        a->help = false;
        a->dirty = PD_DIRTY_ALL;
    }
    a->quit_armed = false;
    a->alt_sel = -1;
    a->msg[0] = '\0';
    a->dirty |= PD_DIRTY_CMDLINE | PD_DIRTY_INSPECT;
}

/* q and Ctrl-C: with unsaved edits the first asks, the second quits without them. */
static void quit_or_ask(struct pd_app *a, const char *key)
{
    if (pd_app_unsaved(a) && !a->quit_armed) {
        a->quit_armed = true;
        size_t prunes, tags, prefs;
        pd_app_unsaved_counts(a, &prunes, &tags, &prefs);
        pd_app_msg(a, true, "unsaved changes (%zu prune%s, %zu tag%s%s): %s again quits "
                   "without saving, s saves", prunes, prunes == 1 ? "" : "s", tags,
                   tags == 1 ? "" : "s", prefs ? ", a preference" : "", key);
        return;
    }
    a->quit_discarded = pd_app_unsaved(a);
    pd_app_fx_push(a, PD_FX_QUIT);
}

static void act_quit(struct pd_app *a)
{
    if (a->help) {
        act_help(a);
        return;
    }
    quit_or_ask(a, "q");
}

static void act_interrupt(struct pd_app *a)
{
    a->interrupted = true;
    quit_or_ask(a, "Ctrl-C");
}

static void act_redraw(struct pd_app *a)
{
    a->dirty = PD_DIRTY_ALL;
}

enum { WHERE_LIVE = 1, WHERE_REPLAY = 2, WHERE_BOTH = 3 };

struct action_info {
    const char *name;
    void (*fn)(struct pd_app *a);
    unsigned where;
};

static const struct action_info actions[PD_ACT_COUNT] = {
    [PD_ACT_NONE] = {"none", NULL, WHERE_BOTH},
    [PD_ACT_PAUSE] = {"pause", act_pause, WHERE_BOTH},
    [PD_ACT_ANSWER_NOW] = {"answer-now", act_answer_now, WHERE_LIVE},
    [PD_ACT_CONTINUE] = {"continue", act_continue, WHERE_LIVE},
    [PD_ACT_MODE_CYCLE] = {"mode-cycle", act_mode_cycle, WHERE_LIVE},
    [PD_ACT_INJECT] = {"inject", act_inject, WHERE_LIVE},
    [PD_ACT_BRANCH] = {"branch", act_branch, WHERE_LIVE},
    [PD_ACT_PRUNE] = {"prune", act_prune, WHERE_BOTH},
    [PD_ACT_PRUNE_CONTINUE] = {"prune-continue", act_prune_continue, WHERE_LIVE},
    [PD_ACT_TAG] = {"tag", act_tag, WHERE_BOTH},
    [PD_ACT_PREFER] = {"prefer", act_prefer, WHERE_BOTH},
    [PD_ACT_KV_BUDGET] = {"kv-budget", act_kv_budget, WHERE_LIVE},
    [PD_ACT_DIVERGENCE] = {"divergence", act_divergence, WHERE_LIVE},
    [PD_ACT_SEARCH] = {"search", act_search, WHERE_BOTH},
    [PD_ACT_SEARCH_NEXT] = {"search-next", act_search_next, WHERE_BOTH},
    [PD_ACT_SEARCH_PREV] = {"search-prev", act_search_prev, WHERE_BOTH},
    [PD_ACT_STEP_PREV] = {"step-prev", act_step_prev, WHERE_BOTH},
    [PD_ACT_STEP_NEXT] = {"step-next", act_step_next, WHERE_BOTH},
    [PD_ACT_LEFT] = {"left", act_left, WHERE_BOTH},
    [PD_ACT_RIGHT] = {"right", act_right, WHERE_BOTH},
    [PD_ACT_UP] = {"up", act_up, WHERE_BOTH},
    [PD_ACT_DOWN] = {"down", act_down, WHERE_BOTH},
    [PD_ACT_PAGE_UP] = {"page-up", act_page_up, WHERE_BOTH},
    [PD_ACT_PAGE_DOWN] = {"page-down", act_page_down, WHERE_BOTH},
    [PD_ACT_HOME] = {"home", act_home, WHERE_BOTH},
    [PD_ACT_END] = {"end", act_end, WHERE_BOTH},
    [PD_ACT_FOCUS_NEXT] = {"focus-next", act_focus_next, WHERE_BOTH},
    [PD_ACT_SELECT] = {"select", act_select, WHERE_BOTH},
    [PD_ACT_PLAY_STEP] = {"play-step", act_play_step, WHERE_REPLAY},
    [PD_ACT_PLAY_BACK] = {"play-back", act_play_back, WHERE_REPLAY},
    [PD_ACT_FASTER] = {"faster", act_faster, WHERE_REPLAY},
    [PD_ACT_SLOWER] = {"slower", act_slower, WHERE_REPLAY},
    [PD_ACT_SAVE] = {"save", act_save, WHERE_BOTH},
    [PD_ACT_COMMAND] = {"command", act_command, WHERE_BOTH},
    [PD_ACT_HELP] = {"help", act_help, WHERE_BOTH},
    [PD_ACT_CANCEL] = {"cancel", act_cancel, WHERE_BOTH},
    [PD_ACT_QUIT] = {"quit", act_quit, WHERE_BOTH},
    [PD_ACT_INTERRUPT] = {"interrupt", act_interrupt, WHERE_BOTH},
    [PD_ACT_REDRAW] = {"redraw", act_redraw, WHERE_BOTH},
};
_Static_assert(sizeof actions / sizeof actions[0] == PD_ACT_COUNT, "action table");

const char *pd_action_name(enum pd_action act)
{
    return (unsigned)act < PD_ACT_COUNT ? actions[act].name : NULL;
}

bool pd_action_allowed(enum pd_action act, enum pd_app_kind kind)
{
    if ((unsigned)act >= PD_ACT_COUNT) {
        return false;
    }
    return (actions[act].where & (kind == PD_APP_LIVE ? WHERE_LIVE : WHERE_REPLAY)) != 0;
}

void pd_app_do(struct pd_app *a, enum pd_action act)
{
    if ((unsigned)act >= PD_ACT_COUNT || !actions[act].fn) {
        return;
    }
    if (act != PD_ACT_QUIT && act != PD_ACT_INTERRUPT && act != PD_ACT_CANCEL) {
        a->quit_armed = false;
    }
    if (a->help && act != PD_ACT_HELP && act != PD_ACT_QUIT && act != PD_ACT_INTERRUPT &&
        act != PD_ACT_CANCEL &&
        act != PD_ACT_REDRAW) {
        /* In the help overlay, movement keys scroll it; everything else closes it. */
        if (act == PD_ACT_DOWN || act == PD_ACT_PAGE_DOWN) {
            a->help_top += act == PD_ACT_DOWN ? 1 : 10;
            a->dirty |= PD_DIRTY_HELP;
            return;
        }
        if (act == PD_ACT_UP || act == PD_ACT_PAGE_UP) {
            a->help_top -= act == PD_ACT_UP ? 1 : 10;
            if (a->help_top < 0) {
                a->help_top = 0;
            }
            a->dirty |= PD_DIRTY_HELP;
            return;
        }
        a->help = false;
        a->dirty = PD_DIRTY_ALL;
    }
    if (!pd_action_allowed(act, a->kind)) {
        pd_app_msg(a, true, "%s: %s", actions[act].name,
                   a->kind == PD_APP_REPLAY ? "needs a live model (this is a replay)"
                                            : "only in replay");
        return;
    }
    actions[act].fn(a);
}

