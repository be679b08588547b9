/* app_commands.c - the workbench's `:` commands: parsing and pd_app_command. */
#include "app.h"
#include "app_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvsim.h"
#include "policies.h"

/* ---- command line -------------------------------------------------------------------------- */

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    while (*end == ' ') {
        end++;
    }
    if (errno || end == s || *end || v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

static void cmd_inject(struct pd_app *a, const char *arg)
{
    if (a->kind != PD_APP_LIVE || !pd_app_session_live(a)) {
        if (a->kind != PD_APP_LIVE) {
            pd_app_msg(a, true, "inject: needs a live model");
        }
        return;
    }
    if (!*arg) {
        pd_app_msg(a, true, "inject: nothing to inject (usage: inject TEXT)");
        return;
    }
    struct pd_cmd *c = pd_app_fx_cmd(a, PD_CMD_INJECT);
    if (c) {
        /* \n, \t and \\ are unescaped so a line can inject paragraph breaks. */
        size_t o = 0;
        for (const char *p = arg; *p && o + 1 < sizeof c->text; p++) {
            if (p[0] == '\\' && (p[1] == 'n' || p[1] == 't' || p[1] == '\\')) {
                c->text[o++] = p[1] == 'n' ? '\n' : p[1] == 't' ? '\t' : '\\';
                p++;
            } else {
                c->text[o++] = *p;
            }
        }
        c->text[o] = '\0';
        pd_app_msg(a, false, "injecting %zu bytes", o);
    }
}

static bool tag_valid(const char *t)
{
    if (!*t) {
        return false;
    }
    for (const unsigned char *p = (const unsigned char *)t; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == ',') {
            return false;
        }
    }
    return true;
}

static void cmd_tag(struct pd_app *a, const char *arg)
{
    char name[64];
    size_t n = strcspn(arg, " ");
    if (n == 0 || n >= sizeof name) {
        pd_app_msg(a, true, "tag: usage: tag NAME [NOTE] (name up to 63 bytes)");
        return;
    }
    memcpy(name, arg, n);
    name[n] = '\0';
    if (!tag_valid(name)) {
        pd_app_msg(a, true, "tag: '%s' has a comma or a control character", name);
        return;
    }
    const char *note = arg + n;
    while (*note == ' ') {
        note++;
    }
    if (a->n_visible == 0) {
        pd_app_msg(a, true, "tag: nothing to tag yet");
        return;
    }
    struct pd_app_tag t;
    memset(&t, 0, sizeof t);
    int32_t s = pd_app_step_of(a, a->cursor);
    if (s >= 0) {
        t.pos_begin = a->steps[s].rec.pos_begin;
        t.pos_end = a->steps[s].open ? (int64_t)a->n_toks : a->steps[s].rec.pos_end;
    } else {
        t.pos_begin = a->toks[a->cursor].pos;
        t.pos_end = t.pos_begin + 1;
    }
    snprintf(t.tag, sizeof t.tag, "%s", name);
    snprintf(t.note, sizeof t.note, "%s", note);
    struct pd_err e2;
    if (pd_app_push_tag(a, &t, &e2)) {
        pd_app_msg(a, true, "tag: %s", e2.msg);
        return;
    }
    pd_app_count_step_tags(a);
    if (s >= 0) {
        pd_app_msg(a, false, "tagged step %d '%s'", s, name);
    } else {
        pd_app_msg(a, false, "tagged token %lld '%s'", (long long)t.pos_begin, name);
    }
}

static void cmd_budget(struct pd_app *a, const char *arg)
{
    int64_t v;
    if (a->kind != PD_APP_LIVE) {
        pd_app_msg(a, true, "budget: needs a live model");
        return;
    }
    if (!parse_i64(arg, 1, UINT32_MAX, &v)) {
        pd_app_msg(a, true, "budget: expected a slot count >= 1, got '%s'", arg);
        return;
    }
    if (strcmp(a->kv_policy, "full") == 0) {
        pd_app_msg(a, true, "budget: no KV policy (start with --kv, e.g. h2o:64)");
        return;
    }
    struct pd_cmd *c = pd_app_session_live(a) ? pd_app_fx_cmd(a, PD_CMD_SET_BUDGET) : NULL;
    if (c) {
        c->budget = (uint32_t)v;
    }
}

/* In replay: runs the policy after the fact over the saved attention summaries and shows
 * its decisions as shadow evictions in place of the recorded ones (analysis/kvsim.h). */
static void simulate_policy(struct pd_app *a, const char *spec)
{
    struct pd_kv_event_rec *ev = NULL;
    size_t n_ev = 0;
    struct pd_err e2;
    int32_t n_layer = a->n_layer > 0 ? a->n_layer : 1;
    if (pd_kvsim_run(spec, a->toks, a->n_toks, n_layer, &ev, &n_ev, &e2)) {
        pd_app_msg(a, true, "policy: %s", e2.msg);
        return;
    }
    free(a->kv);
    a->kv = ev;
    a->n_kv = a->cap_kv = n_ev;
    a->kv_map_applied = a->n_kv + 1; /* forces pd_app_kv_sync to rebuild the map */
    if (pd_app_set_policy(a, spec, &e2) == PD_OK) {
        a->kv_shadow = true;
    }
    pd_app_kv_sync(a);
    a->dirty |= PD_DIRTY_KV | PD_DIRTY_STATUS;
    pd_app_msg(a, false, "policy %s simulated over the saved attention summaries: %zu evictions",
               spec, n_ev);
}

/* :policy SPEC - live: replace the KV policy (the engine side builds it); replay:
 * simulate it over the saved summaries. */
static void cmd_policy(struct pd_app *a, const char *arg)
{
    struct pd_policy_spec sp;
    struct pd_err e2;
    if (pd_policy_parse(arg, &sp, &e2)) {
        pd_app_msg(a, true, "policy: %s", e2.msg);
        return;
    }
    if (a->kind != PD_APP_LIVE || a->finished) {
        simulate_policy(a, arg); /* a finished live run is a trace like a replay */
        return;
    }
    struct pd_cmd *c = pd_app_fx_cmd(a, PD_CMD_SET_POLICY);
    if (c) {
        snprintf(c->text, sizeof c->text, "%s", arg);
    }
}

static void cmd_mode(struct pd_app *a, const char *arg)
{
    enum pd_think_mode m;
    uint32_t budget = 0;
    struct pd_err e2;
    if (a->kind != PD_APP_LIVE) {
        pd_app_msg(a, true, "mode: needs a live model");
        return;
    }
    if (pd_think_mode_parse(arg, &m, &budget, &e2)) {
        pd_app_msg(a, true, "mode: %s", e2.msg);
        return;
    }
    if (!pd_app_session_live(a)) {
        return;
    }
    if (m == PD_MODE_SHORT && budget) {
        a->short_budget = budget;
    }
    a->mode = m;
    /* an explicit :mode goes at once (queued commands run in order, also while paused);
     * :mode none ends an open thinking span */
    pd_app_send_mode(a, m == PD_MODE_NONE);
    a->dirty |= PD_DIRTY_STATUS;
}

static void cmd_goto(struct pd_app *a, const char *arg)
{
    int64_t v;
    if (a->n_visible == 0 || !parse_i64(arg, 0, (int64_t)a->n_visible - 1, &v)) {
        pd_app_msg(a, true, "goto: expected a position in [0, %zu)", a->n_visible);
        return;
    }
    pd_app_move_to(a, (size_t)v);
}

static void cmd_seek(struct pd_app *a, const char *arg)
{
    int64_t v;
    if (a->kind != PD_APP_REPLAY) {
        pd_app_msg(a, true, "seek: only in replay");
        return;
    }
    if (!parse_i64(arg, 0, (int64_t)a->n_toks, &v)) {
        pd_app_msg(a, true, "seek: expected a token count in [0, %zu]", a->n_toks);
        return;
    }
    pd_app_set_visible(a, (size_t)v);
    pd_app_msg(a, false, "at %zu of %zu tokens", a->n_visible, a->n_toks);
}

static void cmd_speed(struct pd_app *a, const char *arg)
{
    char *end;
    double v = strtod(arg, &end);
    if (a->kind != PD_APP_REPLAY) {
        pd_app_msg(a, true, "speed: only in replay");
        return;
    }
    if (end == arg || *end || !(v >= 0.25 && v <= 10000)) {
        pd_app_msg(a, true, "speed: expected tokens per second in [0.25, 10000], got '%s'", arg);
        return;
    }
    a->speed = v;
    a->dirty |= PD_DIRTY_STATUS;
    pd_app_msg(a, false, "replay speed %.1f tok/s", v);
}

static void cmd_save(struct pd_app *a, const char *arg)
{
    (void)arg;
    pd_app_do(a, PD_ACT_SAVE);
}

static void cmd_quit(struct pd_app *a, const char *arg)
{
    (void)arg;
    pd_app_do(a, PD_ACT_QUIT);
}

static void cmd_quit_force(struct pd_app *a, const char *arg)
{
    (void)arg;
    pd_app_fx_push(a, PD_FX_QUIT);
}

static void cmd_wq(struct pd_app *a, const char *arg)
{
    (void)arg;
    pd_app_do(a, PD_ACT_SAVE);
    pd_app_fx_push(a, PD_FX_QUIT);
}

static void cmd_prune(struct pd_app *a, const char *arg)
{
    (void)arg;
    pd_app_do(a, PD_ACT_PRUNE);
}

static void cmd_branch(struct pd_app *a, const char *arg)
{
    (void)arg;
    if (a->kind == PD_APP_LIVE) {
        pd_app_do(a, PD_ACT_BRANCH);
    } else {
        pd_app_msg(a, true, "branch: needs a live model");
    }
}

static void cmd_divergence(struct pd_app *a, const char *arg)
{
    (void)arg;
    if (a->kind == PD_APP_LIVE) {
        pd_app_do(a, PD_ACT_DIVERGENCE);
    } else {
        pd_app_msg(a, true, "divergence: needs a live model");
    }
}

/* prefer [ID]: this session is chosen over session ID (default: its parent). Kept here
 * until a save writes it (store_io.c), like prunes and tags. */
static void cmd_prefer(struct pd_app *a, const char *arg)
{
    int64_t over = a->parent_id;
    if (*arg && !parse_i64(arg, 1, INT64_MAX, &over)) {
        pd_app_msg(a, true, "prefer: expected a session id, got '%.40s'", arg);
        return;
    }
    if (a->session_id == 0) {
        pd_app_msg(a, true, "prefer: this session is not recorded");
        return;
    }
    if (over == 0) {
        pd_app_msg(a, true, "prefer: session %lld is not a branch; name the session it beats: "
                   ":prefer ID", (long long)a->session_id);
        return;
    }
    if (over == a->session_id) {
        pd_app_msg(a, true, "prefer: a session cannot be preferred over itself");
        return;
    }
    a->pref_over = over;
    a->pref_saved = false;
    a->dirty |= PD_DIRTY_STATUS;
    pd_app_msg(a, false, "session %lld chosen over %lld (s saves)", (long long)a->session_id,
               (long long)over);
}

static void cmd_stats(struct pd_app *a, const char *arg)
{
    (void)arg;
    const struct pd_app_stats *s = &a->stats;
    pd_app_msg(a, false,
               "frames %llu, draw %.2f ms mean / %.2f max; keys %llu, key->frame %.2f ms mean "
               "/ %.2f max",
               (unsigned long long)s->frames, s->frames ? s->draw_ms_sum / (double)s->frames : 0,
               s->draw_ms_max, (unsigned long long)s->keys,
               s->key_frames ? s->key_lat_ms_sum / (double)s->key_frames : 0, s->key_lat_ms_max);
}

static void cmd_help(struct pd_app *a, const char *arg)
{
    (void)arg;
    if (!a->help) {
        pd_app_do(a, PD_ACT_HELP);
    }
}

struct command_info {
    const char *name;
    void (*fn)(struct pd_app *a, const char *arg);
};

static const struct command_info commands[] = {
    {"inject", cmd_inject},     {"tag", cmd_tag},         {"budget", cmd_budget},
    {"policy", cmd_policy},
    {"mode", cmd_mode},         {"goto", cmd_goto},       {"seek", cmd_seek},
    {"speed", cmd_speed},       {"save", cmd_save},       {"w", cmd_save},
    {"quit", cmd_quit},         {"q", cmd_quit},          {"q!", cmd_quit_force},
    {"wq", cmd_wq},             {"prune", cmd_prune},     {"branch", cmd_branch},
    {"divergence", cmd_divergence}, {"stats", cmd_stats}, {"help", cmd_help},
    {"prefer", cmd_prefer},
    {NULL, NULL},
};

void pd_app_command(struct pd_app *a, const char *line)
{
    while (*line == ' ' || *line == ':') {
        line++;
    }
    if (!*line) {
        return;
    }
    size_t n = strcspn(line, " ");
    const char *arg = line + n;
    while (*arg == ' ') {
        arg++;
    }
    for (const struct command_info *c = commands; c->name; c++) {
        if (strlen(c->name) == n && strncmp(line, c->name, n) == 0) {
            c->fn(a, arg);
            return;
        }
    }
    pd_app_msg(a, true, "unknown command '%.*s' (? for help)", (int)(n > 40 ? 40 : n), line);
}

static const char *const command_names[] = {
    "inject", "tag", "budget", "policy", "mode", "goto", "seek", "speed", "save", "quit", "q!",
    "wq", "prune", "branch", "divergence", "stats", "help", "prefer", NULL,
};

const char *const *pd_app_command_names(void)
{
    return command_names;
}

