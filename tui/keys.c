/* keys.c - the key binding table, lookup, help lines and the Markdown key reference. */
#include "keys.h"

#include <curses.h>
#include <stdio.h>
#include <string.h>

#define CTRL(c) ((c) & 0x1f)

static const struct pd_key_binding bindings[] = {
    {' ', "space", PD_ACT_PAUSE},
    {'a', "a", PD_ACT_ANSWER_NOW},
    {'c', "c", PD_ACT_CONTINUE},
    {'m', "m", PD_ACT_MODE_CYCLE},
    {'i', "i", PD_ACT_INJECT},
    {'b', "b", PD_ACT_BRANCH},
    {'\n', "Enter", PD_ACT_SELECT},
    {KEY_ENTER, "Enter", PD_ACT_SELECT},
    {'p', "p", PD_ACT_PRUNE},
    {'P', "P", PD_ACT_PRUNE_CONTINUE},
    {'t', "t", PD_ACT_TAG},
    {'y', "y", PD_ACT_PREFER},
    {'K', "K", PD_ACT_KV_BUDGET},
    {'d', "d", PD_ACT_DIVERGENCE},
    {'/', "/", PD_ACT_SEARCH},
    {'n', "n", PD_ACT_SEARCH_NEXT},
    {'N', "N", PD_ACT_SEARCH_PREV},
    {'[', "[", PD_ACT_STEP_PREV},
    {']', "]", PD_ACT_STEP_NEXT},
    {KEY_LEFT, "Left", PD_ACT_LEFT},
    {'h', "h", PD_ACT_LEFT},
    {KEY_RIGHT, "Right", PD_ACT_RIGHT},
    {'l', "l", PD_ACT_RIGHT},
    {KEY_UP, "Up", PD_ACT_UP},
    {'k', "k", PD_ACT_UP},
    {KEY_DOWN, "Down", PD_ACT_DOWN},
    {'j', "j", PD_ACT_DOWN},
    {KEY_PPAGE, "PgUp", PD_ACT_PAGE_UP},
    {KEY_NPAGE, "PgDn", PD_ACT_PAGE_DOWN},
    {KEY_HOME, "Home", PD_ACT_HOME},
    {'g', "g", PD_ACT_HOME},
    {KEY_END, "End", PD_ACT_END},
    {'G', "G", PD_ACT_END},
    {'\t', "Tab", PD_ACT_FOCUS_NEXT},
    {'.', ".", PD_ACT_PLAY_STEP},
    {',', ",", PD_ACT_PLAY_BACK},
    {'+', "+", PD_ACT_FASTER},
    {'-', "-", PD_ACT_SLOWER},
    {'s', "s", PD_ACT_SAVE},
    {':', ":", PD_ACT_COMMAND},
    {'?', "?", PD_ACT_HELP},
    {27, "Esc", PD_ACT_CANCEL},
    {'q', "q", PD_ACT_QUIT},
    {CTRL('c'), "Ctrl-C", PD_ACT_INTERRUPT},
    {CTRL('l'), "Ctrl-L", PD_ACT_REDRAW},
};

static const char *const action_help[PD_ACT_COUNT] = {
    [PD_ACT_NONE] = "",
    [PD_ACT_PAUSE] = "pause / resume the generation; in replay, play / pause",
    [PD_ACT_ANSWER_NOW] = "answer now: close the thinking span, let the model answer",
    [PD_ACT_CONTINUE] = "continue after the end (eog, length, context): -n more tokens",
    [PD_ACT_MODE_CYCLE] = "cycle the thinking mode: long, short, none",
    [PD_ACT_INJECT] = "inject text into the reasoning (:inject TEXT)",
    [PD_ACT_BRANCH] = "branch here: regenerate after the cursor token (parent kept)",
    [PD_ACT_PRUNE] = "prune / unprune the cursor's step",
    [PD_ACT_PRUNE_CONTINUE] = "prune the step and drop it from the model's KV cache",
    [PD_ACT_TAG] = "tag the cursor's step (:tag NAME [NOTE])",
    [PD_ACT_PREFER] = "prefer this session (branch) over its parent (:prefer [ID]; s saves)",
    [PD_ACT_KV_BUDGET] = "set the KV policy budget (:budget SLOTS)",
    [PD_ACT_DIVERGENCE] = "measure shadow-policy divergence (KL, top-1) now",
    [PD_ACT_SEARCH] = "search the trace text",
    [PD_ACT_SEARCH_NEXT] = "next match",
    [PD_ACT_SEARCH_PREV] = "previous match",
    [PD_ACT_STEP_PREV] = "previous step",
    [PD_ACT_STEP_NEXT] = "next step",
    [PD_ACT_LEFT] = "previous token",
    [PD_ACT_RIGHT] = "next token",
    [PD_ACT_UP] = "line up (inspector: previous alternative)",
    [PD_ACT_DOWN] = "line down (inspector: next alternative)",
    [PD_ACT_PAGE_UP] = "page up",
    [PD_ACT_PAGE_DOWN] = "page down",
    [PD_ACT_HOME] = "first token",
    [PD_ACT_END] = "last token and follow new ones",
    [PD_ACT_FOCUS_NEXT] = "focus the next pane",
    [PD_ACT_SELECT] = "inspector: branch with the selected alternative (steer)",
    [PD_ACT_PLAY_STEP] = "replay: one token forward",
    [PD_ACT_PLAY_BACK] = "replay: one token back",
    [PD_ACT_FASTER] = "replay: twice as fast",
    [PD_ACT_SLOWER] = "replay: half as fast",
    [PD_ACT_SAVE] = "save prunes and tags; flush the recording",
    [PD_ACT_COMMAND] = "command line (Tab completes, Up/Down history)",
    [PD_ACT_HELP] = "this help",
    [PD_ACT_CANCEL] = "close help, clear the message",
    [PD_ACT_QUIT] = "quit (asks again when there is unsaved work)",
    [PD_ACT_INTERRUPT] = "as q; quitting with unsaved work exits 130",
    [PD_ACT_REDRAW] = "redraw the screen",
};
_Static_assert(sizeof action_help / sizeof action_help[0] == PD_ACT_COUNT, "help table");

const struct pd_key_binding *pd_keys_table(size_t *n)
{
    *n = sizeof bindings / sizeof bindings[0];
    return bindings;
}

enum pd_action pd_keys_lookup(int key)
{
    for (size_t i = 0; i < sizeof bindings / sizeof bindings[0]; i++) {
        if (bindings[i].key == key) {
            return bindings[i].act;
        }
    }
    return PD_ACT_NONE;
}

const char *pd_keys_action_help(enum pd_action act)
{
    return (unsigned)act < PD_ACT_COUNT ? action_help[act] : "";
}

/* The i-th distinct action in table order, or PD_ACT_COUNT. */
static enum pd_action nth_action(size_t i)
{
    size_t n = sizeof bindings / sizeof bindings[0];
    bool seen[PD_ACT_COUNT] = {false};
    size_t k = 0;
    for (size_t b = 0; b < n; b++) {
        enum pd_action a = bindings[b].act;
        if (seen[a]) {
            continue;
        }
        seen[a] = true;
        if (k++ == i) {
            return a;
        }
    }
    return PD_ACT_COUNT;
}

/* Distinct labels of act's keys joined by sep. */
static void key_labels(enum pd_action act, const char *sep, const char *quote, char *buf,
                       size_t n)
{
    size_t n_b = sizeof bindings / sizeof bindings[0];
    size_t o = 0;
    buf[0] = '\0';
    for (size_t b = 0; b < n_b; b++) {
        if (bindings[b].act != act) {
            continue;
        }
        bool dup = false;
        for (size_t c = 0; c < b; c++) {
            if (bindings[c].act == act && strcmp(bindings[c].label, bindings[b].label) == 0) {
                dup = true;
            }
        }
        if (dup) {
            continue;
        }
        int w = snprintf(buf + o, n - o, "%s%s%s%s", o ? sep : "", quote, bindings[b].label,
                         quote);
        if (w < 0 || (size_t)w >= n - o) {
            return;
        }
        o += (size_t)w;
    }
}

static const char *where_note(enum pd_action act)
{
    bool live = pd_action_allowed(act, PD_APP_LIVE);
    bool replay = pd_action_allowed(act, PD_APP_REPLAY);
    return live && replay ? "" : live ? "live" : "replay";
}

size_t pd_keys_help_count(void)
{
    size_t i = 0;
    while (nth_action(i) != PD_ACT_COUNT) {
        i++;
    }
    return i;
}

bool pd_keys_help_line(size_t i, char *buf, size_t n)
{
    enum pd_action act = nth_action(i);
    if (act == PD_ACT_COUNT) {
        return false;
    }
    char keys[64];
    key_labels(act, " ", "", keys, sizeof keys);
    const char *w = where_note(act);
    snprintf(buf, n, "%-14s %s%s%s%s", keys, action_help[act], *w ? " (" : "", w, *w ? ")" : "");
    return true;
}

bool pd_keys_markdown(struct pd_buf *out)
{
    bool ok = pd_buf_puts(out,
                          "# ponder key bindings\n"
                          "\n"
                          "Generated from the key table in `tui/keys.c` by `ponder keys "
                          "--markdown`;\n"
                          "do not edit by hand (`tests/test_tui.c` checks that this file "
                          "matches).\n"
                          "The `?` overlay in the workbench shows the same table.\n"
                          "\n"
                          "| keys | action | what it does | works in |\n"
                          "|---|---|---|---|\n");
    for (size_t i = 0; ok; i++) {
        enum pd_action act = nth_action(i);
        if (act == PD_ACT_COUNT) {
            break;
        }
        char keys[128];
        key_labels(act, " ", "`", keys, sizeof keys);
        const char *w = where_note(act);
        ok = pd_buf_printf(out, "| %s | %s | %s | %s |\n", keys, pd_action_name(act),
                           action_help[act], *w ? w : "live and replay");
    }
    const char *const *cmds = pd_app_command_names();
    ok = ok && pd_buf_puts(out, "\n## Commands (`:`)\n\n");
    for (size_t i = 0; ok && cmds[i]; i++) {
        ok = pd_buf_printf(out, "%s`%s`", i ? ", " : "", cmds[i]);
    }
    ok = ok && pd_buf_puts(out,
                           "\n\n"
                           "`inject TEXT`, `tag NAME [NOTE]`, `budget SLOTS`, `policy SPEC`, "
                           "`mode long|short[:N]|none`, `goto POS`, `seek N`, `speed TOK/S`, "
                           "`save` (`w`), `quit` (`q`; `q!` without asking; `wq`), `prune`, "
                           "`branch`, `divergence`, `stats` (key latency and draw cost), "
                           "`help`. A line starting with `/` searches.\n");
    return ok;
}
