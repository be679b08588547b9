/* modes.c - the per-family mode texts table, prompt prefills for each mode, and the
 * thinking controller (minimum thinking by "Wait", thinking budget, answer now). Rules:
 * modes.h and docs/modes.md. */
#include "modes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define END_THINK "\n</think>\n\n"
#define OFF_BLOCK "<think>\n\n</think>\n\n"
#define NOTHINK_BLOCK PD_MODES_NOTHINKING "\n</think>\n\n"

static const struct pd_modes_texts k_texts[] = {
    [PD_CHAT_FAMILY_RAW] = {
        .family = PD_CHAT_FAMILY_RAW, .native_markers = false,
        .think_open = "<think>", .think_close = "</think>", .end_think = END_THINK,
        .wait = PD_MODES_WAIT, .answer_now = PD_MODES_HARD_PREFIX END_THINK,
        .answer_now_force = PD_MODES_FORCE_PREFIX END_THINK, .speedup = PD_MODES_SPEEDUP,
        .off = PD_MODES_OFF_NOT_NEEDED, .off_block = "", .nothinking_block = NOTHINK_BLOCK,
    },
    [PD_CHAT_FAMILY_CHATML] = {
        .family = PD_CHAT_FAMILY_CHATML, .native_markers = false,
        .think_open = "<think>", .think_close = "</think>", .end_think = END_THINK,
        .wait = PD_MODES_WAIT, .answer_now = PD_MODES_HARD_PREFIX END_THINK,
        .answer_now_force = PD_MODES_FORCE_PREFIX END_THINK, .speedup = PD_MODES_SPEEDUP,
        .off = PD_MODES_OFF_NOT_NEEDED, .off_block = "", .nothinking_block = NOTHINK_BLOCK,
    },
    [PD_CHAT_FAMILY_QWEN3] = {
        .family = PD_CHAT_FAMILY_QWEN3, .native_markers = true,
        .think_open = "<think>", .think_close = "</think>", .end_think = END_THINK,
        .wait = PD_MODES_WAIT, .answer_now = PD_MODES_HARD_PREFIX END_THINK,
        .answer_now_force = PD_MODES_FORCE_PREFIX END_THINK, .speedup = PD_MODES_SPEEDUP,
        .off = PD_MODES_OFF_TEMPLATE, .off_block = OFF_BLOCK, .nothinking_block = NOTHINK_BLOCK,
    },
    [PD_CHAT_FAMILY_DEEPSEEK_R1] = {
        .family = PD_CHAT_FAMILY_DEEPSEEK_R1, .native_markers = true,
        .think_open = "<think>", .think_close = "</think>", .end_think = END_THINK,
        .wait = PD_MODES_WAIT, .answer_now = PD_MODES_HARD_PREFIX END_THINK,
        .answer_now_force = PD_MODES_FORCE_PREFIX END_THINK, .speedup = PD_MODES_SPEEDUP,
        .off = PD_MODES_OFF_PREFILL, .off_block = OFF_BLOCK, .nothinking_block = NOTHINK_BLOCK,
    },
    [PD_CHAT_FAMILY_LLAMA3] = {
        .family = PD_CHAT_FAMILY_LLAMA3, .native_markers = false,
        .think_open = "<think>", .think_close = "</think>", .end_think = END_THINK,
        .wait = PD_MODES_WAIT, .answer_now = PD_MODES_HARD_PREFIX END_THINK,
        .answer_now_force = PD_MODES_FORCE_PREFIX END_THINK, .speedup = PD_MODES_SPEEDUP,
        .off = PD_MODES_OFF_NOT_NEEDED, .off_block = "", .nothinking_block = NOTHINK_BLOCK,
    },
};
_Static_assert(sizeof k_texts / sizeof k_texts[0] == PD_CHAT_FAMILY_COUNT,
               "one mode texts row per chat family");

static const char *const k_mode_names[] = {
    [PD_MODE_LONG] = "long",
    [PD_MODE_SHORT] = "short",
    [PD_MODE_NONE] = "none",
};
_Static_assert(sizeof k_mode_names / sizeof k_mode_names[0] == PD_MODE_COUNT,
               "one name per mode");

#define SHORT_BUDGET_DEFAULT 512

const char *pd_think_mode_name(enum pd_think_mode m)
{
    return (unsigned)m < PD_MODE_COUNT ? k_mode_names[m] : NULL;
}

enum pd_status pd_think_mode_parse(const char *s, enum pd_think_mode *mode, uint32_t *budget,
                                   struct pd_err *err)
{
    const char *colon = strchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : strlen(s);
    for (int i = 0; i < PD_MODE_COUNT; i++) {
        if (strlen(k_mode_names[i]) == n && strncmp(s, k_mode_names[i], n) == 0) {
            *mode = (enum pd_think_mode)i;
            *budget = 0;
            if (colon) {
                char *end;
                errno = 0;
                unsigned long v = strtoul(colon + 1, &end, 10);
                if (i == PD_MODE_NONE || errno || end == colon + 1 || *end || v > (1u << 24)) {
                    break;
                }
                *budget = (uint32_t)v;
            } else if (i == PD_MODE_SHORT) {
                *budget = SHORT_BUDGET_DEFAULT;
            }
            return PD_OK;
        }
    }
    return pd_err_set(err, PD_EINVAL, "mode '%s': expected long[:MIN], short[:BUDGET] or none",
                      s);
}

const struct pd_modes_texts *pd_modes_texts(enum pd_chat_family f)
{
    return (unsigned)f < PD_CHAT_FAMILY_COUNT ? &k_texts[f] : NULL;
}

void pd_modes_find_controls(const struct pd_tok *tok, struct pd_modes_controls *out)
{
    out->short_id = -1;
    out->think_id = -1;
    if (tok == NULL) {
        return;
    }
    out->short_id = pd_tok_find(tok, "<short>", 7);
    out->think_id = pd_tok_find(tok, "<think>", 7);
}

bool pd_modes_has_controls(const struct pd_modes_controls *c)
{
    return c != NULL && c->short_id >= 0 && c->think_id >= 0;
}

enum pd_status pd_modes_prefill_for(const struct pd_chat_format *fmt,
                                    const struct pd_modes_controls *controls,
                                    enum pd_think_mode m, bool nothinking,
                                    struct pd_modes_prefill *out, struct pd_err *err)
{
    if (fmt == NULL || (unsigned)fmt->family >= PD_CHAT_FAMILY_COUNT) {
        return pd_err_set(err, PD_EINVAL, "modes: bad chat format");
    }
    if ((unsigned)m >= PD_MODE_COUNT) {
        return pd_err_set(err, PD_EINVAL, "modes: mode %d out of range", (int)m);
    }
    const struct pd_modes_texts *t = &k_texts[fmt->family];
    out->chat_think = PD_CHAT_THINK_DEFAULT;
    out->extra = "";
    out->thinking_open = false;
    if (pd_modes_has_controls(controls)) {
        out->extra = m == PD_MODE_NONE ? "<short>" : "<think>";
        out->thinking_open = m != PD_MODE_NONE;
        return PD_OK;
    }
    if (t->off == PD_MODES_OFF_NOT_NEEDED) {
        return PD_OK;
    }
    if (m != PD_MODE_NONE) {
        out->chat_think = PD_CHAT_THINK_ON;
        out->thinking_open = pd_chat_prompt_opens_think(fmt, PD_CHAT_THINK_ON);
        return PD_OK;
    }
    if (!nothinking) {
        out->chat_think = PD_CHAT_THINK_OFF;
        return PD_OK;
    }
    /* NoThinking: the default prompt, an opener when it has none, then the block */
    out->extra = pd_chat_prompt_opens_think(fmt, PD_CHAT_THINK_DEFAULT)
                     ? NOTHINK_BLOCK
                     : "<think>\n" NOTHINK_BLOCK;
    return PD_OK;
}

struct pd_modes_state pd_modes_state_init(enum pd_think_mode m, uint32_t min_think,
                                          uint32_t max_waits, uint32_t think_budget)
{
    struct pd_modes_state s;
    memset(&s, 0, sizeof s);
    s.mode = m;
    s.min_think = min_think;
    s.max_waits = max_waits;
    s.think_budget = think_budget;
    s.none_closes = m == PD_MODE_NONE;
    return s;
}

struct pd_modes_decision pd_modes_on_think_token(struct pd_modes_state *st,
                                                 const struct pd_modes_texts *t,
                                                 uint32_t n_think, bool model_closed)
{
    struct pd_modes_decision d = {PD_MODES_ACT_NONE, NULL};
    if (st->closed || t == NULL) {
        return d;
    }
    if (model_closed) {
        if (st->mode == PD_MODE_LONG && n_think < st->min_think &&
            (st->max_waits == 0 || st->n_waits < st->max_waits)) {
            st->n_waits++;
            d.action = PD_MODES_ACT_REPLACE_CLOSE;
            d.text = t->wait;
            return d;
        }
        st->closed = true;
        return d;
    }
    if ((st->mode == PD_MODE_NONE && st->none_closes) ||
        (st->mode == PD_MODE_SHORT && n_think >= st->think_budget)) {
        st->closed = true;
        d.action = PD_MODES_ACT_CLOSE;
        d.text = t->end_think;
    }
    return d;
}

void pd_modes_set(struct pd_modes_state *st, enum pd_think_mode m, uint32_t param, bool close)
{
    st->mode = m;
    st->none_closes = m == PD_MODE_NONE && close;
    if (m == PD_MODE_SHORT) {
        st->think_budget = param ? param : SHORT_BUDGET_DEFAULT;
    } else if (m == PD_MODE_LONG) {
        st->min_think = param;
    }
}

const char *pd_modes_answer_now(const struct pd_modes_texts *t, bool force)
{
    return force ? t->answer_now_force : t->answer_now;
}

bool pd_modes_text_closes(const struct pd_modes_texts *t, const char *text, size_t len)
{
    size_t k = strlen(t->think_close);
    if (text == NULL || len < k) {
        return false;
    }
    for (size_t i = 0; i + k <= len; i++) {
        if (memcmp(text + i, t->think_close, k) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- the thinking state of a token stream ------------------------------------------- */

static bool tail_ends_with(const struct pd_think_state *t, const char *m)
{
    size_t n = m ? strlen(m) : 0;
    return n > 0 && t->tail_len >= n && memcmp(t->tail + t->tail_len - n, m, n) == 0;
}

bool pd_think_feed(struct pd_think_state *t, const struct pd_modes_texts *x, const char *text,
                   size_t len)
{
    if (text && len >= PD_THINK_TAIL) {
        memcpy(t->tail, text + len - PD_THINK_TAIL, PD_THINK_TAIL);
        t->tail_len = PD_THINK_TAIL;
    } else if (text && len > 0) {
        if (t->tail_len + len > PD_THINK_TAIL) {
            size_t drop = t->tail_len + len - PD_THINK_TAIL;
            memmove(t->tail, t->tail + drop, t->tail_len - drop);
            t->tail_len -= drop;
        }
        memcpy(t->tail + t->tail_len, text, len);
        t->tail_len += len;
    }
    if (t->open && tail_ends_with(t, x->think_close)) {
        t->open = false;
        t->closed_once = true;
    } else if (!t->open && !t->closed_once && tail_ends_with(t, x->think_open)) {
        t->open = true;
        return true;
    }
    return false;
}

void pd_think_unpack(struct pd_think_state *t, uint32_t v)
{
    t->open = (v >> 31) & 1;
    t->closed_once = (v >> 30) & 1;
    t->n_think = v & 0x3FFFFFFFu;
    t->tail_len = 0;
}
