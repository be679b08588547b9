/* chat.c - chat prompt rendering per model family and chat-template recognition.
 *
 * DESIGN
 * - One static table row per family (traits: markers, end-of-turn text, generation
 *   prompt, think prefills) and one render function per family in a parallel table;
 *   pd_chat_render validates every message first, then calls the family's function for
 *   the conversation and appends the generation prompt and think prefill itself.
 * - The render functions reproduce the families' Jinja templates for system / user /
 *   assistant messages exactly, including their string surgery on assistant reasoning
 *   (Python split / strip semantics written out with explicit first/last searches).
 * - Detection only searches the template text for distinctive substrings; see
 *   pd_chat_detect_text in chat.h and docs/chat.md for the rules and their order.
 * - On any error the output buffer is truncated back to its length on entry. */
#include "chat.h"

#include <string.h>

#include "utf8.h"

#define THINK_OPEN "<think>"
#define THINK_CLOSE "</think>"
#define THINK_OPEN_PREFILL "<think>\n"
#define THINK_EMPTY_BLOCK "<think>\n\n</think>\n\n"

#define QWEN25_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
#define QWEN2_SYSTEM "You are a helpful assistant."

#define R1_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"           /* <｜User｜> */
#define R1_ASSISTANT "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>" /* <｜Assistant｜> */
/* <｜end▁of▁sentence｜>: fullwidth bars U+FF5C, U+2581 between the words */
#define R1_EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"

#define LLAMA_HDR_OPEN "<|start_header_id|>"
#define LLAMA_HDR_CLOSE "<|end_header_id|>\n\n"
#define LLAMA_EOT "<|eot_id|>"
/* The Llama 3.1 template's system preamble with its fallback date (date_string unset). */
#define LLAMA_DATE_HEADER "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"

static const struct pd_chat_traits k_traits[] = {
    [PD_CHAT_FAMILY_RAW] = {
        .name = "raw", .think_open = NULL, .think_close = NULL, .eot = NULL,
        .gen_prompt = "", .think_on = NULL, .think_off = NULL, .template_bos = false,
    },
    [PD_CHAT_FAMILY_CHATML] = {
        .name = "chatml", .think_open = NULL, .think_close = NULL, .eot = "<|im_end|>",
        .gen_prompt = "<|im_start|>assistant\n", .think_on = NULL, .think_off = NULL,
        .template_bos = false,
    },
    [PD_CHAT_FAMILY_QWEN3] = {
        .name = "qwen3", .think_open = THINK_OPEN, .think_close = THINK_CLOSE,
        .eot = "<|im_end|>", .gen_prompt = "<|im_start|>assistant\n",
        .think_on = "", /* enable_thinking=true adds nothing: the model opens <think> */
        .think_off = THINK_EMPTY_BLOCK, .template_bos = false,
    },
    [PD_CHAT_FAMILY_DEEPSEEK_R1] = {
        .name = "deepseek-r1", .think_open = THINK_OPEN, .think_close = THINK_CLOSE,
        .eot = R1_EOS, .gen_prompt = R1_ASSISTANT, .think_on = THINK_OPEN_PREFILL,
        .think_off = THINK_EMPTY_BLOCK, .template_bos = true,
    },
    [PD_CHAT_FAMILY_LLAMA3] = {
        .name = "llama3", .think_open = NULL, .think_close = NULL, .eot = LLAMA_EOT,
        .gen_prompt = LLAMA_HDR_OPEN "assistant" LLAMA_HDR_CLOSE, .think_on = NULL,
        .think_off = NULL, .template_bos = true,
    },
};
_Static_assert(sizeof(k_traits) / sizeof(k_traits[0]) == PD_CHAT_FAMILY_COUNT,
               "one traits row per chat family");

static const char *const k_role_names[] = {
    [PD_CHAT_ROLE_SYSTEM] = "system",
    [PD_CHAT_ROLE_USER] = "user",
    [PD_CHAT_ROLE_ASSISTANT] = "assistant",
};
_Static_assert(sizeof(k_role_names) / sizeof(k_role_names[0]) == PD_CHAT_ROLE_COUNT,
               "one name per role");

static const char *const k_think_names[] = {
    [PD_CHAT_THINK_DEFAULT] = "default",
    [PD_CHAT_THINK_ON] = "on",
    [PD_CHAT_THINK_OFF] = "off",
};
_Static_assert(sizeof(k_think_names) / sizeof(k_think_names[0]) == PD_CHAT_THINK_COUNT,
               "one name per think mode");

/* Names accepted by pd_chat_family_parse: canonical names first, then aliases. */
static const struct {
    const char *name;
    enum pd_chat_family family;
} k_family_names[] = {
    {"raw", PD_CHAT_FAMILY_RAW},
    {"chatml", PD_CHAT_FAMILY_CHATML},
    {"qwen3", PD_CHAT_FAMILY_QWEN3},
    {"deepseek-r1", PD_CHAT_FAMILY_DEEPSEEK_R1},
    {"llama3", PD_CHAT_FAMILY_LLAMA3},
    {"none", PD_CHAT_FAMILY_RAW},
    {"completion", PD_CHAT_FAMILY_RAW},
    {"qwen2", PD_CHAT_FAMILY_CHATML},
    {"qwen2.5", PD_CHAT_FAMILY_CHATML},
    {"r1", PD_CHAT_FAMILY_DEEPSEEK_R1},
    {"deepseek", PD_CHAT_FAMILY_DEEPSEEK_R1},
    {"llama-3", PD_CHAT_FAMILY_LLAMA3},
};

/* ---- small string helpers (bounded, no NUL needed in the haystack) ---- */

/* First occurrence of needle in h[0..n), or NULL. */
static const char *mem_find(const char *h, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    if (h == NULL || m == 0 || m > n) {
        return NULL;
    }
    for (size_t i = 0; i + m <= n; i++) {
        if (h[i] == needle[0] && memcmp(h + i, needle, m) == 0) {
            return h + i;
        }
    }
    return NULL;
}

/* Last occurrence of needle in h[0..n), or NULL. */
static const char *mem_rfind(const char *h, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    if (h == NULL || m == 0 || m > n) {
        return NULL;
    }
    for (size_t i = n - m + 1; i-- > 0;) {
        if (h[i] == needle[0] && memcmp(h + i, needle, m) == 0) {
            return h + i;
        }
    }
    return NULL;
}

static bool has_prefix(const char *s, size_t n, const char *p)
{
    size_t m = strlen(p);
    return m <= n && memcmp(s, p, m) == 0;
}

static bool has_suffix(const char *s, size_t n, const char *p)
{
    size_t m = strlen(p);
    return m <= n && memcmp(s + n - m, p, m) == 0;
}

/* A byte range of a message's content. */
struct span {
    const char *s;
    size_t n;
};

static struct span lstrip_nl(struct span x)
{
    while (x.n > 0 && x.s[0] == '\n') {
        x.s++;
        x.n--;
    }
    return x;
}

static struct span rstrip_nl(struct span x)
{
    while (x.n > 0 && x.s[x.n - 1] == '\n') {
        x.n--;
    }
    return x;
}

static bool is_ascii_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static struct span trim_space(struct span x)
{
    while (x.n > 0 && is_ascii_space(x.s[0])) {
        x.s++;
        x.n--;
    }
    while (x.n > 0 && is_ascii_space(x.s[x.n - 1])) {
        x.n--;
    }
    return x;
}

static struct span span_of(const char *s)
{
    return (struct span){s, strlen(s)};
}

/* Python's s.split(sep)[-1]: the text after the last sep (all of s when absent). */
static struct span after_last(struct span x, const char *sep)
{
    const char *p = mem_rfind(x.s, x.n, sep);
    if (p == NULL) {
        return x;
    }
    size_t skip = (size_t)(p - x.s) + strlen(sep);
    return (struct span){x.s + skip, x.n - skip};
}

/* Appends the NUL-terminated pieces in order; false on allocation failure. */
static bool put(struct pd_buf *b, const char *s)
{
    return pd_buf_puts(b, s);
}

static bool put_span(struct pd_buf *b, struct span x)
{
    return pd_buf_append(b, x.s, x.n);
}

/* ---- per-family renderers: the conversation only (no generation prompt) ---- */

typedef bool (*render_fn)(const struct pd_chat_format *fmt, const struct pd_chat_msg *msgs,
                          size_t n, struct pd_buf *out);

static bool render_raw(const struct pd_chat_format *fmt, const struct pd_chat_msg *msgs,
                       size_t n, struct pd_buf *out)
{
    (void)fmt;
    for (size_t i = 0; i < n; i++) {
        if (!put(out, msgs[i].content)) {
            return false;
        }
    }
    return true;
}

static bool chatml_block(struct pd_buf *out, enum pd_chat_role role, struct span content)
{
    return put(out, "<|im_start|>") && put(out, k_role_names[role]) && put(out, "\n") &&
           put_span(out, content) && put(out, "<|im_end|>\n");
}

static bool render_chatml(const struct pd_chat_format *fmt, const struct pd_chat_msg *msgs,
                          size_t n, struct pd_buf *out)
{
    if (fmt->system_default != NULL && (n == 0 || msgs[0].role != PD_CHAT_ROLE_SYSTEM)) {
        if (!chatml_block(out, PD_CHAT_ROLE_SYSTEM, span_of(fmt->system_default))) {
            return false;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!chatml_block(out, msgs[i].role, span_of(msgs[i].content))) {
            return false;
        }
    }
    return true;
}

/* Qwen3: a user message counts as the last query unless it is a wrapped tool response. */
static bool qwen3_is_query(const struct pd_chat_msg *m)
{
    if (m->role != PD_CHAT_ROLE_USER) {
        return false;
    }
    size_t len = strlen(m->content);
    return !(has_prefix(m->content, len, "<tool_response>") &&
             has_suffix(m->content, len, "</tool_response>"));
}

static bool render_qwen3(const struct pd_chat_format *fmt, const struct pd_chat_msg *msgs,
                         size_t n, struct pd_buf *out)
{
    (void)fmt;
    size_t last_query = n > 0 ? n - 1 : 0;
    for (size_t i = n; i-- > 0;) {
        if (qwen3_is_query(&msgs[i])) {
            last_query = i;
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct span content = span_of(msgs[i].content);
        if (msgs[i].role != PD_CHAT_ROLE_ASSISTANT) {
            if (!chatml_block(out, msgs[i].role, content)) {
                return false;
            }
            continue;
        }
        /* Reasoning: the text before the first </think>, newlines trimmed on the right,
         * after the last <think>, newlines trimmed on the left. The answer: the text
         * after the last </think>, newlines trimmed on the left. */
        struct span reasoning = {"", 0};
        const char *close = mem_find(content.s, content.n, THINK_CLOSE);
        if (close != NULL) {
            struct span before = {content.s, (size_t)(close - content.s)};
            reasoning = lstrip_nl(after_last(rstrip_nl(before), THINK_OPEN));
            content = lstrip_nl(after_last(content, THINK_CLOSE));
        }
        bool keep = i > last_query && (i == n - 1 || reasoning.n > 0);
        bool ok = put(out, "<|im_start|>assistant\n");
        if (keep) {
            ok = ok && put(out, "<think>\n") && put_span(out, rstrip_nl(reasoning)) &&
                 put(out, "\n</think>\n\n") && put_span(out, lstrip_nl(content));
        } else {
            ok = ok && put_span(out, content);
        }
        if (!(ok && put(out, "<|im_end|>\n"))) {
            return false;
        }
    }
    return true;
}

static bool render_deepseek_r1(const struct pd_chat_format *fmt,
                               const struct pd_chat_msg *msgs, size_t n, struct pd_buf *out)
{
    /* All system text goes first (after BOS), wherever the messages stand. */
    bool first_system = true;
    size_t last_system = n;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].role != PD_CHAT_ROLE_SYSTEM) {
            continue;
        }
        if (fmt->system_join) {
            if (!(first_system || put(out, "\n\n")) || !put(out, msgs[i].content)) {
                return false;
            }
            first_system = false;
        } else {
            last_system = i;
        }
    }
    if (!fmt->system_join && last_system < n && !put(out, msgs[last_system].content)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        bool ok = true;
        if (msgs[i].role == PD_CHAT_ROLE_USER) {
            ok = put(out, R1_USER) && put(out, msgs[i].content);
        } else if (msgs[i].role == PD_CHAT_ROLE_ASSISTANT) {
            struct span answer = after_last(span_of(msgs[i].content), THINK_CLOSE);
            ok = put(out, R1_ASSISTANT) && put_span(out, answer) && put(out, R1_EOS);
        }
        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool llama3_block(struct pd_buf *out, enum pd_chat_role role, struct span content)
{
    return put(out, LLAMA_HDR_OPEN) && put(out, k_role_names[role]) &&
           put(out, LLAMA_HDR_CLOSE) && put_span(out, trim_space(content)) &&
           put(out, LLAMA_EOT);
}

static bool render_llama3(const struct pd_chat_format *fmt, const struct pd_chat_msg *msgs,
                          size_t n, struct pd_buf *out)
{
    size_t first = 0;
    if (fmt->llama_date_header) {
        /* 3.1: a system block always comes first; it takes a leading system message. */
        struct span system = {"", 0};
        if (n > 0 && msgs[0].role == PD_CHAT_ROLE_SYSTEM) {
            system = trim_space(span_of(msgs[0].content));
            first = 1;
        }
        if (!(put(out, LLAMA_HDR_OPEN "system" LLAMA_HDR_CLOSE LLAMA_DATE_HEADER) &&
              put_span(out, system) && put(out, LLAMA_EOT))) {
            return false;
        }
    }
    for (size_t i = first; i < n; i++) {
        if (!llama3_block(out, msgs[i].role, span_of(msgs[i].content))) {
            return false;
        }
    }
    return true;
}

static const render_fn k_render[] = {
    [PD_CHAT_FAMILY_RAW] = render_raw,
    [PD_CHAT_FAMILY_CHATML] = render_chatml,
    [PD_CHAT_FAMILY_QWEN3] = render_qwen3,
    [PD_CHAT_FAMILY_DEEPSEEK_R1] = render_deepseek_r1,
    [PD_CHAT_FAMILY_LLAMA3] = render_llama3,
};
_Static_assert(sizeof(k_render) / sizeof(k_render[0]) == PD_CHAT_FAMILY_COUNT,
               "one renderer per chat family");

/* ---- public API ---- */

const struct pd_chat_traits *pd_chat_family_traits(enum pd_chat_family f)
{
    if ((unsigned)f >= PD_CHAT_FAMILY_COUNT) {
        return NULL;
    }
    return &k_traits[f];
}

const char *pd_chat_family_name(enum pd_chat_family f)
{
    const struct pd_chat_traits *t = pd_chat_family_traits(f);
    return t != NULL ? t->name : "?";
}

enum pd_status pd_chat_family_parse(const char *s, enum pd_chat_family *out,
                                    struct pd_err *err)
{
    if (s != NULL) {
        for (size_t i = 0; i < sizeof(k_family_names) / sizeof(k_family_names[0]); i++) {
            if (strcmp(s, k_family_names[i].name) == 0) {
                *out = k_family_names[i].family;
                return PD_OK;
            }
        }
    }
    return pd_err_set(err, PD_EINVAL,
                      "chat format '%s': unknown (expected raw, chatml, qwen3, deepseek-r1 "
                      "or llama3)", s != NULL ? s : "(null)");
}

enum pd_status pd_chat_think_parse(const char *s, enum pd_chat_think *out, struct pd_err *err)
{
    for (size_t i = 0; s != NULL && i < PD_CHAT_THINK_COUNT; i++) {
        if (strcmp(s, k_think_names[i]) == 0) {
            *out = (enum pd_chat_think)i;
            return PD_OK;
        }
    }
    return pd_err_set(err, PD_EINVAL, "thinking mode '%s': unknown (expected default, on "
                      "or off)", s != NULL ? s : "(null)");
}

const char *pd_chat_role_name(enum pd_chat_role r)
{
    return (unsigned)r < PD_CHAT_ROLE_COUNT ? k_role_names[r] : "?";
}

enum pd_status pd_chat_role_parse(const char *s, enum pd_chat_role *out, struct pd_err *err)
{
    for (size_t i = 0; s != NULL && i < PD_CHAT_ROLE_COUNT; i++) {
        if (strcmp(s, k_role_names[i]) == 0) {
            *out = (enum pd_chat_role)i;
            return PD_OK;
        }
    }
    return pd_err_set(err, PD_EINVAL, "role '%s': unknown (expected system, user or "
                      "assistant)", s != NULL ? s : "(null)");
}

void pd_chat_format_default(enum pd_chat_family f, struct pd_chat_format *out)
{
    *out = (struct pd_chat_format){
        .family = (unsigned)f < PD_CHAT_FAMILY_COUNT ? f : PD_CHAT_FAMILY_RAW,
        .system_default = NULL,
        .gen_opens_think = f == PD_CHAT_FAMILY_DEEPSEEK_R1,
        .system_join = false,
        .llama_date_header = false,
    };
}

static bool str_is(const char *s, size_t n, const char *lit)
{
    return s != NULL && n == strlen(lit) && memcmp(s, lit, n) == 0;
}

void pd_chat_detect_text(const char *tmpl, size_t tmpl_len, const char *arch,
                         size_t arch_len, struct pd_chat_format *out)
{
    const char *t = tmpl;
    size_t n = tmpl != NULL ? tmpl_len : 0;
    if (mem_find(t, n, R1_ASSISTANT) != NULL) {
        pd_chat_format_default(PD_CHAT_FAMILY_DEEPSEEK_R1, out);
        out->gen_opens_think = mem_find(t, n, R1_ASSISTANT THINK_OPEN) != NULL;
        out->system_join = mem_find(t, n, "is_first_sp") != NULL;
        return;
    }
    if (mem_find(t, n, "<|im_start|>") != NULL) {
        if (mem_find(t, n, "enable_thinking") != NULL) {
            pd_chat_format_default(PD_CHAT_FAMILY_QWEN3, out);
            return;
        }
        /* Thinking-only ChatML templates open the think block in the generation prompt;
         * the newline is an escape ("\\n") inside a Jinja literal or a real one. */
        if (mem_find(t, n, "assistant\\n<think>") != NULL ||
            mem_find(t, n, "assistant\n<think>") != NULL) {
            pd_chat_format_default(PD_CHAT_FAMILY_QWEN3, out);
            out->gen_opens_think = true;
            return;
        }
        pd_chat_format_default(PD_CHAT_FAMILY_CHATML, out);
        if (mem_find(t, n, QWEN25_SYSTEM) != NULL) {
            out->system_default = QWEN25_SYSTEM;
        } else if (mem_find(t, n, QWEN2_SYSTEM) != NULL) {
            out->system_default = QWEN2_SYSTEM;
        }
        return;
    }
    if (mem_find(t, n, LLAMA_HDR_OPEN) != NULL) {
        pd_chat_format_default(PD_CHAT_FAMILY_LLAMA3, out);
        out->llama_date_header = mem_find(t, n, "Cutting Knowledge Date") != NULL;
        return;
    }
    if (str_is(arch, arch_len, "qwen2")) {
        pd_chat_format_default(PD_CHAT_FAMILY_CHATML, out);
    } else if (str_is(arch, arch_len, "qwen3")) {
        pd_chat_format_default(PD_CHAT_FAMILY_QWEN3, out);
    } else {
        pd_chat_format_default(PD_CHAT_FAMILY_RAW, out);
    }
}

enum pd_status pd_chat_detect(const struct pd_gguf *g, struct pd_chat_format *out,
                              struct pd_err *err)
{
    struct pd_gguf_str tmpl = {NULL, 0};
    struct pd_gguf_str arch = {NULL, 0};
    enum pd_status st = pd_gguf_get_str(g, "tokenizer.chat_template", &tmpl, err);
    if (st != PD_OK && st != PD_EINVAL) {
        return st;
    }
    st = pd_gguf_get_str(g, "general.architecture", &arch, err);
    if (st != PD_OK && st != PD_EINVAL) {
        return st;
    }
    pd_chat_detect_text(tmpl.s, (size_t)tmpl.n, arch.s, (size_t)arch.n, out);
    return PD_OK;
}

/* Checks one message; the error names its index. */
static enum pd_status check_msg(const struct pd_chat_msg *m, size_t i, struct pd_err *err)
{
    if ((unsigned)m->role >= PD_CHAT_ROLE_COUNT) {
        return pd_err_set(err, PD_EINVAL, "message %zu: unknown role %d", i, (int)m->role);
    }
    if (m->content == NULL) {
        return pd_err_set(err, PD_EINVAL, "message %zu (%s): content is NULL", i,
                          k_role_names[m->role]);
    }
    size_t len = strlen(m->content);
    for (size_t off = 0; off < len;) {
        uint32_t cp;
        size_t k = pd_utf8_decode(m->content + off, len - off, &cp);
        if (k == 0) {
            return pd_err_set(err, PD_EINVAL, "message %zu (%s): content is not valid UTF-8 "
                              "at byte %zu", i, k_role_names[m->role], off);
        }
        off += k;
    }
    return PD_OK;
}

/* The text appended after traits->gen_prompt for think mode `think`, or NULL when the
 * family has no switch for it (the caller has validated fmt and think). */
static const char *think_prefill(const struct pd_chat_format *fmt, enum pd_chat_think think)
{
    const struct pd_chat_traits *t = &k_traits[fmt->family];
    switch (think) {
    case PD_CHAT_THINK_ON:
        if (t->think_on == NULL) {
            return NULL;
        }
        return fmt->gen_opens_think ? THINK_OPEN_PREFILL : t->think_on;
    case PD_CHAT_THINK_OFF:
        return t->think_off;
    default:
        return fmt->gen_opens_think && t->think_open != NULL ? THINK_OPEN_PREFILL : "";
    }
}

enum pd_status pd_chat_render(const struct pd_chat_format *fmt, const struct pd_chat_msg *msgs,
                              size_t n, bool add_generation_prompt, enum pd_chat_think think,
                              struct pd_buf *out, struct pd_err *err)
{
    if (fmt == NULL || out == NULL || (msgs == NULL && n > 0)) {
        return pd_err_set(err, PD_EINVAL, "chat render: %s is NULL",
                          fmt == NULL ? "format" : out == NULL ? "output" : "messages");
    }
    if ((unsigned)fmt->family >= PD_CHAT_FAMILY_COUNT) {
        return pd_err_set(err, PD_EINVAL, "chat render: family %d out of range",
                          (int)fmt->family);
    }
    if ((unsigned)think >= PD_CHAT_THINK_COUNT) {
        return pd_err_set(err, PD_EINVAL, "chat render: thinking mode %d out of range",
                          (int)think);
    }
    const char *prefill = think_prefill(fmt, think);
    if (prefill == NULL) {
        return pd_err_set(err, PD_EUNSUPPORTED, "chat format %s has no thinking switch "
                          "(thinking '%s' requested)", k_traits[fmt->family].name,
                          k_think_names[think]);
    }
    for (size_t i = 0; i < n; i++) {
        enum pd_status st = check_msg(&msgs[i], i, err);
        if (st != PD_OK) {
            return st;
        }
    }
    size_t len0 = out->len;
    bool ok = k_render[fmt->family](fmt, msgs, n, out);
    if (ok && add_generation_prompt) {
        ok = put(out, k_traits[fmt->family].gen_prompt) && put(out, prefill);
    }
    if (!ok) {
        out->len = len0;
        if (out->data != NULL) {
            out->data[len0] = '\0';
        }
        return pd_err_set(err, PD_ENOMEM, "chat render: out of memory");
    }
    return PD_OK;
}

bool pd_chat_prompt_opens_think(const struct pd_chat_format *fmt, enum pd_chat_think think)
{
    if (fmt == NULL || (unsigned)fmt->family >= PD_CHAT_FAMILY_COUNT ||
        (unsigned)think >= PD_CHAT_THINK_COUNT) {
        return false;
    }
    const char *prefill = think_prefill(fmt, think);
    return prefill != NULL && strcmp(prefill, THINK_OPEN_PREFILL) == 0;
}

bool pd_chat_think_markers(enum pd_chat_family f, const char **open, const char **close)
{
    const struct pd_chat_traits *t = pd_chat_family_traits(f);
    const char *o = t != NULL ? t->think_open : NULL;
    const char *c = t != NULL ? t->think_close : NULL;
    if (open != NULL) {
        *open = o;
    }
    if (close != NULL) {
        *close = c;
    }
    return o != NULL;
}

const char *pd_chat_eot_text(enum pd_chat_family f)
{
    const struct pd_chat_traits *t = pd_chat_family_traits(f);
    return t != NULL ? t->eot : NULL;
}

enum pd_status pd_chat_render_turn(const struct pd_chat_format *fmt, const char *text,
                                   enum pd_chat_think think, struct pd_buf *out,
                                   struct pd_err *err)
{
    /* Stand-ins no template changes mark where the earlier answer ends. */
    struct pd_chat_msg msgs[3] = {
        {PD_CHAT_ROLE_USER, "\x01"},
        {PD_CHAT_ROLE_ASSISTANT, "\x02"},
        {PD_CHAT_ROLE_USER, text},
    };
    struct pd_buf conv;
    pd_buf_init(&conv);
    enum pd_status st = pd_chat_render(fmt, msgs, 3, true, think, &conv, err);
    if (st) {
        pd_buf_deinit(&conv);
        return st;
    }
    const char *after = conv.data ? strchr(conv.data, '\x02') : NULL;
    if (!after) {
        pd_buf_deinit(&conv);
        return pd_err_set(err, PD_EUNSUPPORTED, "chat render: the %s template drops an "
                          "earlier answer, so a new turn cannot follow one",
                          pd_chat_family_name(fmt->family));
    }
    after++;
    bool ok = pd_buf_append(out, after, conv.len - (size_t)(after - conv.data));
    pd_buf_deinit(&conv);
    return ok ? PD_OK : pd_err_set(err, PD_ENOMEM, "chat render: out of memory");
}
