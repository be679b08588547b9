/* modes.h - long / short / no-thinking reasoning modes: the exact texts ponder injects
 * for each chat family, the prompt each mode starts from, and the thinking controller:
 * the decisions a generation loop takes while a model thinks. The live session
 * (session.c) and every headless loop use this one controller.
 *
 * Texts (docs/modes.md lists them byte for byte):
 *   end of thinking   "\n</think>\n\n" (budget forcing, arXiv 2501.19393; qwen3 and
 *                     deepseek-r1 use their own markers, families without markers the
 *                     same "<think>"/"</think>" text by ponder's convention)
 *   continue          "Wait" replaces an end of thinking that came too early (s1's
 *                     minimum thinking)
 *   answer now        the hard-interrupt prefix of "Are Large Reasoning Models
 *                     Interruptible?" (arXiv 2510.11713) followed by the end marker; the
 *                     force-answer variant adds ", without further steps or
 *                     explanations" inside the prefix
 *   speed up          the soft-interrupt text of the same paper (thinking stays open)
 *   no thinking       the family's own mechanism: qwen3's enable_thinking=false template
 *                     branch, a pre-filled closed think block for deepseek-r1, or the
 *                     "<short>" control token when the vocabulary defines "<short>" and
 *                     "<think>" (Thinkless, arXiv 2505.13379); optionally NoThinking's
 *                     "Okay, I think I have finished thinking." (arXiv 2504.09858)
 *
 * All functions are pure (the controller state is caller-owned plain data) and
 * thread-safe; every returned string is static. */
#ifndef PD_MODES_H
#define PD_MODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "chat.h"
#include "tokenizer.h"

#define PD_MODES_WAIT "Wait"
#define PD_MODES_HARD_PREFIX                                                            \
    "\n\nI received a request from the user to provide an answer right now. Considering " \
    "the limited time by the user, I have to give the solution based on the thinking "    \
    "directly now."
#define PD_MODES_FORCE_PREFIX                                                           \
    "\n\nI received a request from the user to provide an answer right now. Considering " \
    "the limited time by the user, I have to give the solution based on the thinking "    \
    "directly now, without further steps or explanations."
#define PD_MODES_SPEEDUP                                                                   \
    "\n\nI received a request from the user to provide an answer as soon as possible. "    \
    "Considering the limited time by the user, I will complete my reasoning promptly and " \
    "deliver the solution without delay.\n\n"
#define PD_MODES_NOTHINKING "Okay, I think I have finished thinking."

/* The three modes. */
enum pd_think_mode {
    PD_MODE_LONG,  /* think without limit (optionally at least min_think tokens) */
    PD_MODE_SHORT, /* think at most think_budget tokens, then the end marker is injected */
    PD_MODE_NONE,  /* no thinking: the family's own switch / a pre-filled closed block */
    PD_MODE_COUNT
};

/* "long", "short", "none"; NULL when out of range. */
const char *pd_think_mode_name(enum pd_think_mode m);

/* Parses "long", "long:MIN", "short", "short:BUDGET", "none": *budget is MIN or BUDGET
 * (short without one: 512; long without one: 0). PD_EINVAL naming the text otherwise. */
enum pd_status pd_think_mode_parse(const char *s, enum pd_think_mode *mode, uint32_t *budget,
                                   struct pd_err *err);

/* How a family turns thinking off. */
enum pd_modes_off {
    PD_MODES_OFF_TEMPLATE,   /* the chat template's switch (qwen3 enable_thinking=false) */
    PD_MODES_OFF_PREFILL,    /* a pre-filled closed think block (deepseek-r1) */
    PD_MODES_OFF_NOT_NEEDED, /* the family does not think (raw, chatml, llama3) */
    PD_MODES_OFF_COUNT
};

/* The texts of one family (one row of a static table). */
struct pd_modes_texts {
    enum pd_chat_family family;
    bool native_markers;       /* the model was trained with these think markers */
    const char *think_open;    /* "<think>" */
    const char *think_close;   /* "</think>" */
    const char *end_think;     /* injected to end thinking: "\n</think>\n\n" */
    const char *wait;          /* injected instead of an early end: "Wait" */
    const char *answer_now;    /* hard interrupt: PD_MODES_HARD_PREFIX + end_think */
    const char *answer_now_force; /* PD_MODES_FORCE_PREFIX + end_think */
    const char *speedup;       /* PD_MODES_SPEEDUP (thinking stays open) */
    enum pd_modes_off off;
    const char *off_block;     /* the closed block mode none pre-fills:
                                * "<think>\n\n</think>\n\n" ("" when not needed) */
    const char *nothinking_block; /* NoThinking variant, without the opener:
                                * "Okay, I think I have finished thinking.\n</think>\n\n" */
};

/* The row of family f, or NULL when f is out of range. */
const struct pd_modes_texts *pd_modes_texts(enum pd_chat_family f);

/* Control tokens a model defines for modes (Thinkless): ids of single tokens whose text
 * is exactly "<short>" / "<think>", -1 when absent. */
struct pd_modes_controls {
    int32_t short_id;
    int32_t think_id;
};

/* Looks the control tokens up in tok's vocabulary. */
void pd_modes_find_controls(const struct pd_tok *tok, struct pd_modes_controls *out);

/* True when the vocabulary has both "<short>" and "<think>" as single tokens: then the
 * first assistant token selects the mode and ponder pre-fills it. */
bool pd_modes_has_controls(const struct pd_modes_controls *c);

/* What to put in the prompt to start a generation in a mode. */
struct pd_modes_prefill {
    enum pd_chat_think chat_think; /* pass to pd_chat_render */
    const char *extra;             /* append after the rendered prompt ("" for nothing) */
    bool thinking_open;            /* the prompt + extra ends inside an open think block */
};

/* The prefill for mode m with format fmt (and the model's control tokens, which may be
 * NULL). nothinking selects the NoThinking text for mode none on families with markers.
 * Rules (docs/modes.md): controls present -> "<short>" (none) / "<think>" (long, short)
 * after the default prompt; qwen3 / deepseek-r1 -> chat think OFF (none, or the
 * NoThinking block after an opened / added "<think>\n") / ON (long, short); families
 * without thinking -> the default prompt for every mode. PD_EINVAL when fmt is NULL or
 * its family or m is out of range. */
enum pd_status pd_modes_prefill_for(const struct pd_chat_format *fmt,
                                    const struct pd_modes_controls *controls,
                                    enum pd_think_mode m, bool nothinking,
                                    struct pd_modes_prefill *out, struct pd_err *err);

/* Controller state for one generation: caller-owned plain data. */
struct pd_modes_state {
    enum pd_think_mode mode;
    uint32_t min_think;     /* long: an end of thinking before this many tokens becomes
                             * "Wait" (0: off) */
    uint32_t max_waits;     /* long: at most this many replacements (0: no limit) */
    uint32_t think_budget;  /* short: thinking tokens allowed (>= 1) */
    uint32_t n_waits;       /* replacements made so far */
    bool closed;            /* thinking has ended (the caller clears it when thinking opens
                             * again, e.g. after a branch back into it) */
    bool none_closes;       /* mode none ends an open thinking span (set by pd_modes_set
                             * when asked; a mode none chosen by cycling leaves it open) */
};

/* A state for mode m with its parameters (min_think / think_budget; unused ones 0). */
struct pd_modes_state pd_modes_state_init(enum pd_think_mode m, uint32_t min_think,
                                          uint32_t max_waits, uint32_t think_budget);

enum pd_modes_action {
    PD_MODES_ACT_NONE,          /* carry on */
    PD_MODES_ACT_REPLACE_CLOSE, /* drop the end of thinking just produced, inject text */
    PD_MODES_ACT_CLOSE,         /* inject text (the end marker) now */
    PD_MODES_ACT_COUNT
};

struct pd_modes_decision {
    enum pd_modes_action action;
    const char *text;           /* static text to inject, NULL for ACT_NONE */
};

/* Called by the generation loop after each token generated while thinking is open:
 * n_think counts the thinking tokens so far (this one included), model_closed says this
 * token ended thinking (it produced the close marker). Rules, in order:
 *   already closed                                  -> NONE
 *   model_closed, long, n_think < min_think, waits left -> REPLACE_CLOSE "Wait" (n_waits++)
 *   model_closed                                    -> NONE, state closed
 *   none (switched mid-stream, closing asked)       -> CLOSE end_think, closed
 *   short and n_think >= think_budget               -> CLOSE end_think, closed
 *   otherwise                                       -> NONE
 * A mode change mid-stream goes through pd_modes_set; the next call applies it. */
struct pd_modes_decision pd_modes_on_think_token(struct pd_modes_state *st,
                                                 const struct pd_modes_texts *t,
                                                 uint32_t n_think, bool model_closed);

/* Changes the mode mid-stream: m with its parameter (long: the minimum thinking, 0 for
 * none; short: the budget, 0 for the default 512; none: ignored). For none, close says
 * whether an open thinking span is to end (true: the next thinking token closes it;
 * false: the mode is noted and thinking goes on). */
void pd_modes_set(struct pd_modes_state *st, enum pd_think_mode m, uint32_t param, bool close);

/* The text that ends thinking at once on the user's "answer now": the hard-interrupt
 * text (force: the force-answer variant). */
const char *pd_modes_answer_now(const struct pd_modes_texts *t, bool force);

/* True when text[0..len) contains the family's close marker: the loop's model_closed
 * test. Pass the tail of the thinking text that ends with the new token (at least the
 * marker's length plus the token), so a marker split over several tokens is found. */
bool pd_modes_text_closes(const struct pd_modes_texts *t, const char *text, size_t len);

/* ---- the thinking state of a token stream ------------------------------------------- */

#define PD_THINK_TAIL 64

/* Whether thinking is open after the latest token, whether it has closed once, how many
 * thinking tokens came, and the stream's last bytes (so a marker split over tokens is
 * found). The live session and the remote session each keep one; plain data, zeroed to
 * start, caller-owned. */
struct pd_think_state {
    bool open;
    bool closed_once;
    uint32_t n_think;
    char tail[PD_THINK_TAIL];
    size_t tail_len;
};

/* Adds a token's text (NULL with len 0 accepted): x's close marker ends open thinking
 * (closed_once), its open marker opens thinking that never closed. Returns true when this
 * text opened it. n_think is the caller's to count. */
bool pd_think_feed(struct pd_think_state *t, const struct pd_modes_texts *x, const char *text,
                   size_t len);

/* A thinking state in 32 bits (bit 31 open, bit 30 closed once, 30 bits of n_think), the
 * form sessions keep per position to restore on a branch or prune; and back (the tail
 * starts empty). */
static inline uint32_t pd_think_word(bool open, bool closed_once, uint32_t n_think)
{
    return (open ? 1u << 31 : 0) | (closed_once ? 1u << 30 : 0) | (n_think & 0x3FFFFFFFu);
}
static inline uint32_t pd_think_pack(const struct pd_think_state *t)
{
    return pd_think_word(t->open, t->closed_once, t->n_think);
}
void pd_think_unpack(struct pd_think_state *t, uint32_t v);

#endif
