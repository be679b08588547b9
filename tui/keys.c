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
    {'u', "u", PD_ACT_ASK},
    {'b', "b", PD_ACT_BRANCH},
    {'\n', "Enter", PD_ACT_SELECT},
    {KEY_ENTER, "Enter", PD_ACT_SELECT},
    {'p', "p", PD_ACT_PRUNE},
    {'P', "P", PD_ACT_PRUNE_CONTINUE},
    {'t', "t", PD_ACT_TAG},
    {'y', "y", PD_ACT_PREFER},
    {'K', "K", PD_ACT_KV_BUDGET},
    {'d', "d", PD_ACT_DIVERGENCE},
    {'v', "v", PD_ACT_COLOUR},
    {'B', "B", PD_ACT_BRANCHES},
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
    [PD_ACT_ASK] = "after the answer: ask a follow-up question as a new user turn (:ask TEXT)",
    [PD_ACT_INJECT] = "inject text into the reasoning (:inject TEXT)",
    [PD_ACT_BRANCH] = "branch here: regenerate after the cursor token (parent kept)",
    [PD_ACT_PRUNE] = "prune / unprune the cursor's step",
    [PD_ACT_PRUNE_CONTINUE] = "prune the step and drop it from the model's KV cache",
    [PD_ACT_TAG] = "tag the cursor's step (:tag NAME [NOTE])",
    [PD_ACT_PREFER] = "prefer this session (branch) over its parent (:prefer [ID]; s saves)",
    [PD_ACT_KV_BUDGET] = "set the KV policy budget (:budget SLOTS)",
    [PD_ACT_DIVERGENCE] = "measure shadow-policy divergence (KL, top-1) now",
    [PD_ACT_BRANCHES] = "branch tree: parent, siblings, children; Enter opens, d diffs "
                        "against the parent (:branches)",
    [PD_ACT_COLOUR] = "colour the trace by surprisal, entropy, attention from the cursor, "
                      "attention received, step (:colour, :layer)",
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

/* What the abbreviations on screen mean, with their units: the ? overlay and docs/keys.md
 * show this one list. */
static const char *const glossary[][2] = {
    {"s, surprisal", "-log2 p of the token produced, in bits (heat colour in the trace)"},
    {"lp, logprob", "natural log of the token's probability, in nats"},
    {"p", "the token's probability"},
    {"entropy", "of the next-token distribution, in bits"},
    {"len", "a step's length in tokens"},
    {"1st-s", "surprisal of a step's first token, in bits"},
    {"mean", "mean surprisal over a step's scored tokens, in bits"},
    {"imp", "importance: attention mass a step receives from the tokens of later steps "
            "(head mean, averaged over layers; one layer's row sums to 1); - until a "
            "later step's token carries an attention summary"},
    {"x ~ #", "step marks: pruned, still being written, tagged"},
    {"attn L0-N", "per layer, the strongest attention weight of the cursor token"},
    {"KV used U/C", "cache entries in use / capacity; budget: the policy's slots per layer"},
    {"KL", "shadow divergence: KL of the policy's next-token distribution from the full "
           "cache's, in bits; top-1 same/DIFF"},
    {"tok/s", "decode speed over the time spent generating (pauses left out)"},
    {"-", "a number that is not defined here (unscored token, no attention summary)"},
};
#define N_GLOSSARY (sizeof glossary / sizeof glossary[0])

static size_t n_commands(void)
{
    size_t n = 0;
    for (const struct pd_app_command_info *c = pd_app_commands(); c->name; c++) {
        n += c->help != NULL;
    }
    return n;
}

static const struct pd_app_command_info *nth_command(size_t i)
{
    for (const struct pd_app_command_info *c = pd_app_commands(); c->name; c++) {
        if (c->help && i-- == 0) {
            return c;
        }
    }
    return NULL;
}

static size_t n_key_lines(void)
{
    size_t i = 0;
    while (nth_action(i) != PD_ACT_COUNT) {
        i++;
    }
    return i;
}

size_t pd_keys_help_count(void)
{
    /* keys, blank, heading, commands, blank, heading, glossary */
    return n_key_lines() + 2 + n_commands() + 2 + N_GLOSSARY;
}

bool pd_keys_help_line(size_t i, char *buf, size_t n)
{
    size_t nk = n_key_lines(), nc = n_commands();
    if (i < nk) {
        enum pd_action act = nth_action(i);
        char keys[64];
        key_labels(act, " ", "", keys, sizeof keys);
        const char *w = where_note(act);
        snprintf(buf, n, "%-14s %s%s%s%s", keys, action_help[act], *w ? " (" : "", w,
                 *w ? ")" : "");
        return true;
    }
    i -= nk;
    if (i < 2 + nc) {
        const struct pd_app_command_info *c = i >= 2 ? nth_command(i - 2) : NULL;
        if (c) {
            snprintf(buf, n, ":%-24s %s", c->usage, c->help);
        } else {
            snprintf(buf, n, "%s", i == 1 ? "commands (: opens the command line, Tab completes)"
                                          : "");
        }
        return true;
    }
    i -= 2 + nc;
    if (i < 2 + N_GLOSSARY) {
        if (i >= 2) {
            snprintf(buf, n, "%-14s %s", glossary[i - 2][0], glossary[i - 2][1]);
        } else {
            snprintf(buf, n, "%s", i == 1 ? "columns and units" : "");
        }
        return true;
    }
    return false;
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
    ok = ok && pd_buf_puts(out, "\n## Commands (`:`)\n\n"
                                "| command | what it does |\n|---|---|\n");
    for (size_t i = 0; ok && nth_command(i); i++) {
        const struct pd_app_command_info *c = nth_command(i);
        ok = pd_buf_puts(out, "| `");
        for (const char *u = c->usage; ok && *u; u++) { /* a | inside a cell is escaped */
            ok = *u == '|' ? pd_buf_puts(out, "\\|") : pd_buf_printf(out, "%c", *u);
        }
        ok = ok && pd_buf_printf(out, "` | %s |\n", c->help);
    }
    ok = ok && pd_buf_puts(out, "\nAliases: `w` (save), `q` (quit). A line starting with `/` "
                                "searches.\n\n## Columns and units\n\n"
                                "| on screen | meaning |\n|---|---|\n");
    for (size_t i = 0; ok && i < N_GLOSSARY; i++) {
        ok = pd_buf_printf(out, "| `%s` | %s |\n", glossary[i][0], glossary[i][1]);
    }
    return ok;
}

/* The first key bound to act ("space", "a", ...). */
static const char *first_label(enum pd_action act)
{
    for (size_t b = 0; b < sizeof bindings / sizeof bindings[0]; b++) {
        if (bindings[b].act == act) {
            return bindings[b].label;
        }
    }
    return "?";
}

struct hint {
    enum pd_action act;
    const char *what;
    const char *key; /* NULL: the action's first key */
};

size_t pd_keys_hint(const struct pd_app *a, char *buf, size_t n, int width)
{
    struct hint h[16];
    size_t k = 0;
#define HINT(act_, what_)                                                                     \
    do {                                                                                      \
        if (k < sizeof h / sizeof h[0]) {                                                     \
            h[k++] = (struct hint){(act_), (what_), NULL};                                    \
        }                                                                                     \
    } while (0)
    bool live = a->kind == PD_APP_LIVE;
    /* What the focused pane is for comes first, then the state's main actions. */
    switch (a->focus) {
    case PD_PANE_INSPECT:
        HINT(PD_ACT_DOWN, "alternative");
        h[k - 1].key = "j/k";
        if (live) {
            HINT(PD_ACT_SELECT, "steer");
        }
        break;
    case PD_PANE_STEPS:
        HINT(PD_ACT_STEP_NEXT, "step");
        h[k - 1].key = "[/]";
        HINT(PD_ACT_PRUNE, "prune");
        if (live) {
            HINT(PD_ACT_PRUNE_CONTINUE, "drop from cache");
        }
        HINT(PD_ACT_TAG, "tag");
        break;
    case PD_PANE_KV:
        if (live) {
            HINT(PD_ACT_KV_BUDGET, "budget");
            HINT(PD_ACT_DIVERGENCE, "divergence");
        }
        break;
    case PD_PANE_TRACE:
    case PD_PANE_COUNT:
        break;
    }
    if (!live) {
        HINT(PD_ACT_PAUSE, a->playing ? "pause" : "play");
        HINT(PD_ACT_PLAY_STEP, "step");
        HINT(PD_ACT_FASTER, "faster");
    } else if (a->finished && !a->error[0]) {
        HINT(PD_ACT_CONTINUE, "continue");
        HINT(PD_ACT_ASK, "ask");
        HINT(PD_ACT_BRANCH, "branch");
        HINT(PD_ACT_INJECT, "inject");
    } else if (!a->finished) {
        HINT(PD_ACT_PAUSE, a->paused ? "resume" : "pause");
        HINT(PD_ACT_ANSWER_NOW, "answer now");
        HINT(PD_ACT_MODE_CYCLE, "mode");
        HINT(PD_ACT_INJECT, "inject");
        HINT(PD_ACT_BRANCH, "branch");
    }
    HINT(PD_ACT_COLOUR, "colour");
    HINT(PD_ACT_FOCUS_NEXT, "pane");
    HINT(PD_ACT_SEARCH, "search");
    HINT(PD_ACT_COMMAND, "command");
    HINT(PD_ACT_HELP, "help");
    HINT(PD_ACT_QUIT, "quit");
#undef HINT
    /* Whole pairs only, as many as fit; help and quit are kept when anything is. */
    size_t o = 0;
    buf[0] = '\0';
    size_t tail = 0;
    for (size_t i = k - 2; i < k; i++) {
        tail += strlen(h[i].key ? h[i].key : first_label(h[i].act)) + strlen(h[i].what) + 3;
    }
    for (size_t i = 0; i < k; i++) {
        char pair[48];
        int w = snprintf(pair, sizeof pair, "%s%s %s", o ? "  " : "",
                         h[i].key ? h[i].key : first_label(h[i].act), h[i].what);
        size_t reserve = i < k - 2 ? tail : 0;
        if (w < 0 || (int)(o + (size_t)w + reserve) > width || o + (size_t)w >= n) {
            if (i < k - 2) {
                continue; /* skip this one, keep room for help and quit */
            }
            break;
        }
        memcpy(buf + o, pair, (size_t)w + 1);
        o += (size_t)w;
    }
    return o;
}
