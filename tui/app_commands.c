/* app_commands.c - the workbench's `:` commands: parsing and pd_app_command. */
#include "app.h"
#include "app_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
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

/* The command line is one line: \n, \t and \\ stand for a line break, a tab and a
 * backslash in text typed into it (inject, question, system). unescape writes at most n
 * bytes with the terminator and returns the length; escape returns false when the text
 * does not fit. */
static size_t unescape(const char *s, char *out, size_t n)
{
    size_t o = 0;
    for (const char *p = s; *p && o + 1 < n; p++) {
        if (p[0] == '\\' && (p[1] == 'n' || p[1] == 't' || p[1] == '\\')) {
            out[o++] = p[1] == 'n' ? '\n' : p[1] == 't' ? '\t' : '\\';
            p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
    return o;
}

static bool escape(const char *s, char *out, size_t n)
{
    size_t o = 0;
    for (const char *p = s; *p; p++) {
        const char *e = *p == '\n' ? "\\n" : *p == '\t' ? "\\t" : *p == '\\' ? "\\\\" : NULL;
        size_t k = e ? 2 : 1;
        if (o + k + 1 > n) {
            return false;
        }
        if (e) {
            memcpy(out + o, e, 2);
        } else {
            out[o] = *p;
        }
        o += k;
    }
    out[o] = '\0';
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
        size_t o = unescape(arg, c->text, sizeof c->text);
        pd_app_msg(a, false, "injecting %zu bytes", o);
    }
}

/* ask TEXT: another user turn after the answer (the model's chat template renders it). */
static void cmd_ask(struct pd_app *a, const char *arg)
{
    if (a->kind != PD_APP_LIVE || !pd_app_session_live(a)) {
        if (a->kind != PD_APP_LIVE) {
            pd_app_msg(a, true, "ask: needs a live model");
        }
        return;
    }
    if (!a->finished) {
        pd_app_msg(a, true, "ask: the model is still answering (a answers now; after the end "
                            ":ask asks again)");
        return;
    }
    if (!*arg) {
        pd_app_msg(a, true, "ask: nothing to ask (usage: ask TEXT)");
        return;
    }
    struct pd_cmd *c = pd_app_fx_cmd(a, PD_CMD_NEW_TURN);
    if (c) {
        snprintf(c->text, sizeof c->text, "%s", arg);
        pd_app_msg(a, false, "asking: %s", arg);
    }
}

/* question [TEXT] / system [TEXT|-]: ask again as a new session with the same model and
 * settings. Without TEXT the command line opens with the current text to edit. Unsaved
 * prunes and tags are saved to this session first (with --no-record there is nowhere to
 * keep them, and they go with the run). */
static void rerun(struct pd_app *a, const char *name, const char *arg)
{
    bool sys = strcmp(name, "system") == 0;
    if (a->kind != PD_APP_LIVE) {
        pd_app_msg(a, true, "%s: needs the model (ponder replay ID -m MODEL re-opens this "
                            "session with one)", name);
        return;
    }
    if (!*arg) {
        const char *cur = sys ? a->system : a->question;
        if (!sys && !cur) {
            pd_app_msg(a, true, "question: this re-opened session's question is not loaded; "
                                ":question TEXT asks a new one");
            return;
        }
        char line[sizeof a->fx[0].text];
        int k = snprintf(line, sizeof line, "%s ", name);
        if (!escape(cur ? cur : "", line + k, sizeof line - (size_t)k)) {
            pd_app_msg(a, true, "%s: the text (%zu bytes) is longer than the command line; "
                                ":%s TEXT replaces it", name, strlen(cur), name);
            return;
        }
        pd_app_open_cmdline(a, ':', line);
        return;
    }
    size_t n = strlen(arg) + 1;
    char *text = malloc(n);
    if (!text) {
        pd_app_msg(a, true, "%s: out of memory", name);
        return;
    }
    unescape(arg, text, n);
    if (sys && strcmp(text, "-") == 0) {
        text[0] = '\0';
    }
    const char *q = sys ? a->question : text;
    const char *sy = sys ? (text[0] ? text : NULL) : a->system;
    if (!q || !q[0]) {
        pd_app_msg(a, true, q ? "question: the question is empty"
                              : "system: this re-opened session's question is not loaded; "
                                ":question TEXT asks a new one");
        free(text);
        return;
    }
    char *nq = strdup(q);
    char *ns = sy ? strdup(sy) : NULL;
    free(text);
    if (!nq || (sy && !ns)) {
        free(nq);
        free(ns);
        pd_app_msg(a, true, "%s: out of memory", name);
        return;
    }
    free(a->rerun_question);
    free(a->rerun_system);
    a->rerun_question = nq;
    a->rerun_system = ns;
    if (a->recording && pd_app_unsaved(a)) {
        pd_app_fx_push(a, PD_FX_SAVE);
    }
    pd_app_fx_push(a, PD_FX_RERUN);
}

static void cmd_question(struct pd_app *a, const char *arg)
{
    rerun(a, "question", arg);
}

static void cmd_system(struct pd_app *a, const char *arg)
{
    rerun(a, "system", arg);
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

/* temp, top-p, top-k, min-p, seed: what the session samples from now on, in this session
 * and the branches made after; the same ranges as run's options. */
static void cmd_sampling(struct pd_app *a, const char *name, const char *arg)
{
    if (a->kind != PD_APP_LIVE) {
        pd_app_msg(a, true, "%s: needs a live model", name);
        return;
    }
    struct pd_sampler_params sp = a->sampling;
    if (!*arg) {
        pd_app_msg(a, false, "sampling: temp %g top-k %d top-p %g min-p %g seed %llu%s",
                   (double)sp.temperature, (int)sp.top_k, (double)sp.top_p, (double)sp.min_p,
                   (unsigned long long)sp.seed, sp.temperature <= 0 ? " (greedy)" : "");
        return;
    }
    char *end;
    errno = 0;
    double d = strtod(arg, &end);
    bool num = end != arg && !*end && errno == 0 && isfinite(d);
    int64_t v = 0;
    if (strcmp(name, "temp") == 0 && num && d >= 0 && d <= 100) {
        sp.temperature = (float)d;
    } else if (strcmp(name, "top-p") == 0 && num && d > 0 && d <= 1) {
        sp.top_p = (float)d;
    } else if (strcmp(name, "min-p") == 0 && num && d >= 0 && d <= 1) {
        sp.min_p = (float)d;
    } else if (strcmp(name, "top-k") == 0 && parse_i64(arg, 0, 1 << 24, &v)) {
        sp.top_k = (int32_t)v;
    } else if (strcmp(name, "seed") == 0 && parse_i64(arg, 0, INT64_MAX, &v)) {
        sp.seed = (uint64_t)v;
    } else {
        static const char *const range[][2] = {
            {"temp", "a number in [0, 100] (0: greedy)"}, {"top-p", "a number in (0, 1]"},
            {"min-p", "a number in [0, 1]"},            {"top-k", "an integer in [0, 16777216] (0: off)"},
            {"seed", "an integer >= 0"},
        };
        const char *want = "";
        for (size_t i = 0; i < sizeof range / sizeof range[0]; i++) {
            if (strcmp(range[i][0], name) == 0) {
                want = range[i][1];
            }
        }
        pd_app_msg(a, true, "%s: expected %s, got '%s'", name, want, arg);
        return;
    }
    struct pd_cmd *c = pd_app_session_live(a) ? pd_app_fx_cmd(a, PD_CMD_SET_SAMPLING) : NULL;
    if (c) {
        c->sampling = sp;
    }
}

static void cmd_temp(struct pd_app *a, const char *arg)
{
    cmd_sampling(a, "temp", arg);
}

static void cmd_top_p(struct pd_app *a, const char *arg)
{
    cmd_sampling(a, "top-p", arg);
}

static void cmd_top_k(struct pd_app *a, const char *arg)
{
    cmd_sampling(a, "top-k", arg);
}

static void cmd_min_p(struct pd_app *a, const char *arg)
{
    cmd_sampling(a, "min-p", arg);
}

static void cmd_seed(struct pd_app *a, const char *arg)
{
    cmd_sampling(a, "seed", arg);
}

static void cmd_colour(struct pd_app *a, const char *arg)
{
    enum pd_colour c = pd_colour_parse(arg);
    if (c == PD_COLOUR_COUNT) {
        pd_app_msg(a, true, "colour: expected surprisal, entropy, attention, received or step, "
                            "got '%s'", arg);
        return;
    }
    pd_app_set_colour(a, c);
}

static void cmd_layer(struct pd_app *a, const char *arg)
{
    int64_t v;
    int nl = a->n_layer > 0 ? a->n_layer : 1;
    if (strcmp(arg, "all") == 0) {
        v = -1;
    } else if (!parse_i64(arg, 0, nl - 1, &v)) {
        pd_app_msg(a, true, "layer: expected all or a layer in [0, %d], got '%s'", nl - 1, arg);
        return;
    }
    a->colour_layer = (int32_t)v;
    if (a->colour != PD_COLOUR_ATTN_FROM && a->colour != PD_COLOUR_ATTN_RECV) {
        a->colour = PD_COLOUR_ATTN_FROM;
    }
    pd_app_set_colour(a, a->colour);
}

/* head N|mean: attention from the cursor by one head (every head's rows of the cursor
 * token, recomputed by the model), or the head mean from the summaries. */
static void cmd_head(struct pd_app *a, const char *arg)
{
    int64_t v;
    int64_t hi = a->heads && a->heads->n_head ? (int64_t)a->heads->n_head - 1 : 4095;
    if (strcmp(arg, "mean") == 0) {
        v = -1;
    } else if (!parse_i64(arg, 0, hi, &v)) {
        pd_app_msg(a, true, "head: expected mean or a head in [0, %lld], got '%s'",
                   (long long)hi, arg);
        return;
    }
    a->colour_head = (int32_t)v;
    a->heads_refused = false;
    pd_app_set_colour(a, PD_COLOUR_ATTN_FROM);
}

static void cmd_branches(struct pd_app *a, const char *arg)
{
    (void)arg;
    pd_app_do(a, PD_ACT_BRANCHES);
}

static void cmd_diff(struct pd_app *a, const char *arg)
{
    int64_t id = a->session_id;
    if (*arg && !parse_i64(arg, 1, INT64_MAX, &id)) {
        pd_app_msg(a, true, "diff: expected a session id, got '%s'", arg);
        return;
    }
    if (id <= 0) {
        pd_app_msg(a, true, "diff: this session is not recorded");
        return;
    }
    struct pd_app_fx *fx = pd_app_fx_push(a, PD_FX_DIFF);
    if (fx) {
        fx->id = id;
    }
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

/* The command table: the one place a command's name, usage and help live (the ? overlay,
 * `ponder keys --markdown` and Tab completion read it). An alias has no help. */
static const struct pd_app_command_info commands[] = {
    {"inject", cmd_inject, "inject TEXT", "insert TEXT into the reasoning (live)"},
    {"ask", cmd_ask, "ask TEXT",
     "after the answer: another user turn, in the model's chat template (live)"},
    {"question", cmd_question, "question [TEXT]",
     "ask TEXT as a new session (same model, settings); no TEXT: edit the question (live)"},
    {"system", cmd_system, "system [TEXT|-]",
     "run the question again with system message TEXT (- none); no TEXT: edit it (live)"},
    {"tag", cmd_tag, "tag NAME [NOTE]", "tag the cursor's step"},
    {"prune", cmd_prune, "prune", "prune / unprune the cursor's step (as p)"},
    {"branch", cmd_branch, "branch", "branch after the cursor token (as b; live)"},
    {"mode", cmd_mode, "mode long|short[:N]|none",
     "thinking mode from now on; none ends thinking at once (live)"},
    {"temp", cmd_temp, "temp T", "sampling temperature, 0 = greedy; no T shows all (live)"},
    {"top-p", cmd_top_p, "top-p P", "nucleus sampling mass in (0, 1] (live)"},
    {"top-k", cmd_top_k, "top-k K", "sample from the K most likely tokens, 0 = off (live)"},
    {"min-p", cmd_min_p, "min-p P", "drop tokens below P x the top probability (live)"},
    {"seed", cmd_seed, "seed S", "sampler seed (live)"},
    {"budget", cmd_budget, "budget SLOTS", "KV policy budget in slots per layer (live)"},
    {"policy", cmd_policy, "policy SPEC",
     "KV policy (docs/kv-policies.md); in replay: simulate it over the saved summaries"},
    {"divergence", cmd_divergence, "divergence", "measure shadow-policy divergence now (as d)"},
    {"colour", cmd_colour, "colour surprisal|entropy|attention|received|step",
     "what the trace is coloured by (v cycles)"},
    {"branches", cmd_branches, "branches", "the branch tree (as B)"},
    {"diff", cmd_diff, "diff [ID]", "session ID (default: this one) against its parent"},
    {"layer", cmd_layer, "layer N|all", "attention colours: one layer, or the mean over all"},
    {"head", cmd_head, "head N|mean",
     "attention from the cursor by one head (recomputed by the model), or the head mean"},
    {"prefer", cmd_prefer, "prefer [ID]", "prefer this session over ID (default: its parent)"},
    {"goto", cmd_goto, "goto POS", "move the cursor to token POS"},
    {"seek", cmd_seek, "seek N", "replay: show the first N tokens"},
    {"speed", cmd_speed, "speed TOK/S", "replay: tokens per second"},
    {"save", cmd_save, "save", "save prunes and tags; flush the recording (as s)"},
    {"w", cmd_save, NULL, NULL},
    {"quit", cmd_quit, "quit", "quit, asking when there is unsaved work"},
    {"q", cmd_quit, NULL, NULL},
    {"q!", cmd_quit_force, "q!", "quit without saving"},
    {"wq", cmd_wq, "wq", "save, then quit"},
    {"stats", cmd_stats, "stats", "key latency and draw cost"},
    {"help", cmd_help, "help", "the key, command and column help (as ?)"},
    {NULL, NULL, NULL, NULL},
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
    for (const struct pd_app_command_info *c = commands; c->name; c++) {
        if (strlen(c->name) == n && strncmp(line, c->name, n) == 0) {
            c->fn(a, arg);
            return;
        }
    }
    pd_app_msg(a, true, "unknown command '%.*s' (:help lists them)", (int)(n > 40 ? 40 : n),
               line);
}

const struct pd_app_command_info *pd_app_commands(void)
{
    return commands;
}

const char *const *pd_app_command_names(void)
{
    static const char *names[sizeof commands / sizeof commands[0]];
    if (!names[0]) {
        for (size_t i = 0; commands[i].name; i++) {
            names[i] = commands[i].name;
        }
    }
    return names;
}
