/* chat.h - chat prompt formats and thinking switches, one entry per model family.
 *
 * ponder does not run Jinja. Instead each supported family's chat template is
 * re-implemented in C, byte for byte for plain system/user/assistant conversations, and
 * a model's family is recognised from distinctive text in its `tokenizer.chat_template`
 * (falling back on `general.architecture`). docs/chat.md gives each family's exact
 * rendering, the thinking switches and the detection rules.
 *
 * Families:
 *   raw          plain completion: the messages' contents concatenated as they are
 *   chatml       ChatML as used by Qwen2 / Qwen2.5 (optional default system prompt)
 *   qwen3        Qwen3 hybrid thinking models (ChatML plus the enable_thinking switch)
 *   deepseek-r1  DeepSeek-R1-Distill (<｜User｜> / <｜Assistant｜>, fullwidth bars)
 *   llama3       Llama 3 / 3.1 header blocks (<|start_header_id|> ... <|eot_id|>)
 *
 * BOS is never part of a rendered prompt: the tokenizer adds it (pd_tok_add_bos). The
 * deepseek-r1 and llama3 templates start with the BOS token, so callers encoding for
 * those families must pass add_bos = true (traits->template_bos says so).
 *
 * Ownership: every string these functions return is static. Messages are borrowed for
 * the duration of a call. All functions are pure and thread-safe. */
#ifndef PD_CHAT_H
#define PD_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "mem.h"
#include "status.h"
#include "gguf.h"

enum pd_chat_family {
    PD_CHAT_FAMILY_RAW,
    PD_CHAT_FAMILY_CHATML,
    PD_CHAT_FAMILY_QWEN3,
    PD_CHAT_FAMILY_DEEPSEEK_R1,
    PD_CHAT_FAMILY_LLAMA3,
    PD_CHAT_FAMILY_COUNT
};

/* What the caller wants from a thinking model at the generation prompt. */
enum pd_chat_think {
    PD_CHAT_THINK_DEFAULT, /* exactly what the model's template does by default */
    PD_CHAT_THINK_ON,      /* make the model think (deepseek-r1: prefill "<think>\n") */
    PD_CHAT_THINK_OFF,     /* prefill a closed, empty think block */
    PD_CHAT_THINK_COUNT
};

enum pd_chat_role {
    PD_CHAT_ROLE_SYSTEM,
    PD_CHAT_ROLE_USER,
    PD_CHAT_ROLE_ASSISTANT,
    PD_CHAT_ROLE_COUNT
};

/* One conversation message. Assistant content may hold "<think>...</think>" reasoning;
 * each family drops or keeps it the way its template does. */
struct pd_chat_msg {
    enum pd_chat_role role;
    const char *content; /* borrowed, NUL-terminated, valid UTF-8 */
};

/* Constant facts about a family (one row of a static table). */
struct pd_chat_traits {
    const char *name;        /* "raw", "chatml", "qwen3", "deepseek-r1", "llama3" */
    const char *think_open;  /* "<think>", or NULL when the family does not think */
    const char *think_close; /* "</think>", or NULL */
    const char *eot;         /* text that ends an assistant turn, NULL for raw */
    const char *gen_prompt;  /* what add_generation_prompt appends ("" for raw) */
    const char *think_on;    /* appended after gen_prompt for PD_CHAT_THINK_ON */
    const char *think_off;   /* appended for PD_CHAT_THINK_OFF; NULL: no switch */
    bool template_bos;       /* the template starts with BOS: encode with add_bos */
};

/* A family plus the revision details that its detected template carries. */
struct pd_chat_format {
    enum pd_chat_family family;
    const char *system_default; /* static, or NULL: chatml system prompt used when the
                                 * conversation does not start with a system message */
    bool gen_opens_think;       /* qwen3 / deepseek-r1: the generation prompt itself
                                 * ends with "<think>\n" (newer R1-Distill revisions,
                                 * thinking-only ChatML models) */
    bool system_join;           /* deepseek-r1: all system messages joined by "\n\n";
                                 * false: the last system message wins */
    bool llama_date_header;     /* llama3: 3.1-style system block that opens with the
                                 * "Cutting Knowledge Date" and "Today Date" lines */
};

/* Traits of family f; NULL when f is out of range. */
const struct pd_chat_traits *pd_chat_family_traits(enum pd_chat_family f);

/* Name of f ("raw", "chatml", ...), "?" when out of range. */
const char *pd_chat_family_name(enum pd_chat_family f);

/* Parses a family name for an override flag: the names above plus the aliases
 * "qwen2", "qwen2.5" (chatml), "r1", "deepseek" (deepseek-r1), "llama-3" (llama3),
 * "none", "completion" (raw). Case-sensitive. PD_EINVAL naming s and listing the
 * accepted names when s is NULL or unknown; *out is written only on PD_OK. */
enum pd_status pd_chat_family_parse(const char *s, enum pd_chat_family *out,
                                    struct pd_err *err);

/* Parses "default" | "on" | "off" for a thinking flag; PD_EINVAL otherwise. */
enum pd_status pd_chat_think_parse(const char *s, enum pd_chat_think *out,
                                   struct pd_err *err);

/* Name of a role ("system", "user", "assistant"), "?" when out of range. */
const char *pd_chat_role_name(enum pd_chat_role r);

/* Parses a role name; PD_EINVAL naming s when unknown or NULL. */
enum pd_status pd_chat_role_parse(const char *s, enum pd_chat_role *out, struct pd_err *err);

/* Format used when a family is chosen by name (override flag): no default system
 * prompt, the newer deepseek-r1 revision (gen_opens_think, last system message wins),
 * llama3 without the date header. An out-of-range f gives raw. */
void pd_chat_format_default(enum pd_chat_family f, struct pd_chat_format *out);

/* Recognises a chat template from its text tmpl[0..tmpl_len) (NULL or empty: none) and
 * the architecture name arch[0..arch_len) (NULL: none). Rules, first match wins:
 *   "<｜Assistant｜>"                  deepseek-r1; gen_opens_think when the text has
 *                                      "<｜Assistant｜><think>"; system_join when it has
 *                                      "is_first_sp"
 *   "<|im_start|>" + "enable_thinking" qwen3
 *   "<|im_start|>" + "assistant\n<think>" (escaped or literal newline)
 *                                      qwen3 with gen_opens_think
 *   "<|im_start|>"                     chatml; system_default from the Qwen2.5 / Qwen2
 *                                      default system sentence when present
 *   "<|start_header_id|>"              llama3; llama_date_header when the text has
 *                                      "Cutting Knowledge Date"
 *   otherwise, by arch: "qwen2" chatml, "qwen3" qwen3, anything else raw.
 * The template is only searched, never executed; any bytes are accepted. */
void pd_chat_detect_text(const char *tmpl, size_t tmpl_len, const char *arch,
                         size_t arch_len, struct pd_chat_format *out);

/* pd_chat_detect_text over g's `tokenizer.chat_template` and `general.architecture`
 * (either may be absent). PD_EFORMAT naming g's path and the key when one is present
 * but not a string; *out is written only on PD_OK. */
enum pd_status pd_chat_detect(const struct pd_gguf *g, struct pd_chat_format *out,
                              struct pd_err *err);

/* Renders msgs[0..n) as fmt's template does and appends the text to out (BOS not
 * included). add_generation_prompt appends the assistant header, then the think prefill
 * chosen by think (see docs/chat.md). Errors, with out left exactly as it was:
 *   PD_EINVAL        fmt or out NULL, family or think out of range, msgs NULL with n > 0,
 *                    and per message ("message 3: ...") an unknown role, NULL content
 *                    or content that is not valid UTF-8 (with the byte offset)
 *   PD_EUNSUPPORTED  think ON/OFF for a family without thinking (raw, chatml, llama3)
 *   PD_ENOMEM        out could not grow */
enum pd_status pd_chat_render(const struct pd_chat_format *fmt, const struct pd_chat_msg *msgs,
                              size_t n, bool add_generation_prompt, enum pd_chat_think think,
                              struct pd_buf *out, struct pd_err *err);

/* The text that follows a finished assistant answer to start another user turn: the end
 * of the assistant's turn, the user message `text` and the generation prompt with the
 * think prefill, exactly as the template renders that stretch of a conversation (found by
 * rendering one with and one without the new turn). Appended to out; errors as
 * pd_chat_render. */
enum pd_status pd_chat_render_turn(const struct pd_chat_format *fmt, const char *text,
                                   enum pd_chat_think think, struct pd_buf *out,
                                   struct pd_err *err);

/* True when the prompt pd_chat_render makes with add_generation_prompt and think ends
 * inside an open think block, so the model's first tokens are reasoning (deepseek-r1
 * with the "<think>\n" prefill; qwen3 with gen_opens_think). False for an invalid fmt
 * or think. */
bool pd_chat_prompt_opens_think(const struct pd_chat_format *fmt, enum pd_chat_think think);

/* Sets *open / *close (either may be NULL) to f's think markers and returns true, or
 * sets them to NULL and returns false when f has none. */
bool pd_chat_think_markers(enum pd_chat_family f, const char **open, const char **close);

/* End-of-turn text of f ("<|im_end|>", "<｜end▁of▁sentence｜>", "<|eot_id|>"); NULL
 * for raw or out of range. */
const char *pd_chat_eot_text(enum pd_chat_family f);

#endif
