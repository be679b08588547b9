/* data.c - rendering a problem as a Qwen3 chat sample and tokenizing it (see data.h). */
#include "data.h"

#include <stdlib.h>
#include <string.h>

#include "modes.h"
#include "chat.h"

static const char *const k_style_names[] = {
    [RZ_STYLE_LONG] = "long",           [RZ_STYLE_LONG_SWITCH] = "long-switch",
    [RZ_STYLE_SHORT] = "short",         [RZ_STYLE_NONE_SWITCH] = "none-switch",
    [RZ_STYLE_NONE_TMPL] = "none-tmpl", [RZ_STYLE_ANSWER_NOW] = "answer-now",
    [RZ_STYLE_BUDGET] = "budget",
};
_Static_assert(sizeof k_style_names / sizeof k_style_names[0] == RZ_STYLE_COUNT,
               "one name per style");

const char *rz_style_name(enum rz_style s)
{
    return (unsigned)s < RZ_STYLE_COUNT ? k_style_names[s] : "?";
}

struct rz_mix rz_default_mix(void)
{
    struct rz_mix m = {{
        [RZ_STYLE_LONG] = 70,      [RZ_STYLE_LONG_SWITCH] = 4, [RZ_STYLE_SHORT] = 10,
        [RZ_STYLE_NONE_SWITCH] = 3, [RZ_STYLE_NONE_TMPL] = 3,  [RZ_STYLE_ANSWER_NOW] = 6,
        [RZ_STYLE_BUDGET] = 4,
    }};
    return m;
}

enum rz_style rz_mix_draw(struct rz_rng *r, const struct rz_mix *m)
{
    uint32_t total = 0;
    for (int s = 0; s < RZ_STYLE_COUNT; s++) {
        total += m->weight[s];
    }
    uint32_t u = rz_rng_below(r, total ? total : 1);
    int s = 0;
    while (s < RZ_STYLE_COUNT - 1 && u >= m->weight[s]) {
        u -= m->weight[s];
        s++;
    }
    return (enum rz_style)s;
}

void rz_pieces_init(struct rz_pieces *x)
{
    memset(x, 0, sizeof *x);
    for (int i = 0; i < RZ_PIECES_MAX; i++) {
        pd_buf_init(&x->p[i].text);
    }
}

void rz_pieces_deinit(struct rz_pieces *x)
{
    for (int i = 0; i < RZ_PIECES_MAX; i++) {
        pd_buf_deinit(&x->p[i].text);
    }
    x->n = 0;
}

static struct pd_buf *piece(struct rz_pieces *x, bool trained)
{
    struct rz_piece *p = &x->p[x->n++];
    p->trained = trained;
    return &p->text;
}

bool rz_user_text(const struct rz_problem *p, enum rz_style st, struct pd_buf *out)
{
    const char *sw = st == RZ_STYLE_LONG_SWITCH   ? RZ_SWITCH_THINK
                     : st == RZ_STYLE_SHORT       ? RZ_SWITCH_SHORT
                     : st == RZ_STYLE_NONE_SWITCH ? RZ_SWITCH_NO_THINK
                                                  : NULL;
    return pd_buf_puts(out, p->question) && (!sw || (pd_buf_puts(out, " ") &&
                                                     pd_buf_puts(out, sw)));
}

/* A cut place in text: a byte offset in [1, len) right before a space or newline (a
 * pre-tokenizer boundary), uniform over those. */
static size_t cut_place(const char *text, struct rz_rng *r)
{
    size_t len = strlen(text), n = 0;
    for (size_t i = 1; i < len; i++) {
        n += text[i] == ' ' || text[i] == '\n';
    }
    if (n == 0) {
        return len;
    }
    uint32_t k = rz_rng_below(r, (uint32_t)n);
    for (size_t i = 1; i < len; i++) {
        if ((text[i] == ' ' || text[i] == '\n') && k-- == 0) {
            return i;
        }
    }
    return len;
}

enum pd_status rz_render(const struct rz_problem *p, enum rz_style st, struct rz_rng *r,
                         struct rz_pieces *x, struct pd_err *err)
{
    if ((unsigned)st >= RZ_STYLE_COUNT) {
        return pd_err_set(err, PD_EINVAL, "style %d out of range", (int)st);
    }
    for (int i = 0; i < RZ_PIECES_MAX; i++) {
        x->p[i].text.len = 0;
    }
    x->n = 0;
    struct pd_buf user;
    pd_buf_init(&user);
    if (!rz_user_text(p, st, &user)) {
        pd_buf_deinit(&user);
        return pd_err_set(err, PD_ENOMEM, "out of memory");
    }
    struct pd_chat_format fmt;
    pd_chat_format_default(PD_CHAT_FAMILY_QWEN3, &fmt);
    struct pd_chat_msg msg = {PD_CHAT_ROLE_USER, user.data};
    enum pd_chat_think think = st == RZ_STYLE_NONE_TMPL ? PD_CHAT_THINK_OFF
                                                        : PD_CHAT_THINK_DEFAULT;
    enum pd_status rc = pd_chat_render(&fmt, &msg, 1, true, think, piece(x, false), err);
    pd_buf_deinit(&user);
    if (rc != PD_OK) {
        return rc;
    }
    const struct pd_modes_texts *mt = pd_modes_texts(PD_CHAT_FAMILY_QWEN3);
    struct pd_buf *g = piece(x, true);
    bool ok = true;
    switch (st) {
    case RZ_STYLE_LONG:
    case RZ_STYLE_LONG_SWITCH:
    case RZ_STYLE_SHORT:
        ok = pd_buf_puts(g, "<think>\n") &&
             pd_buf_puts(g, st == RZ_STYLE_SHORT ? p->think_short : p->think_long) &&
             pd_buf_puts(g, "\n</think>\n\n");
        break;
    case RZ_STYLE_NONE_SWITCH:
        ok = pd_buf_puts(g, "<think>\n\n</think>\n\n");
        break;
    case RZ_STYLE_NONE_TMPL:
        break;
    case RZ_STYLE_ANSWER_NOW:
    case RZ_STYLE_BUDGET: {
        size_t cut = cut_place(p->think_long, r);
        ok = pd_buf_puts(g, "<think>\n") && pd_buf_append(g, p->think_long, cut) &&
             pd_buf_puts(piece(x, false), st == RZ_STYLE_ANSWER_NOW ? mt->answer_now
                                                                    : mt->end_think);
        g = piece(x, true);
        break;
    }
    default:
        break;
    }
    ok = ok && pd_buf_puts(g, p->answer_text) && pd_buf_puts(g, "<|im_end|>");
    return ok ? PD_OK : pd_err_set(err, PD_ENOMEM, "out of memory");
}

void rz_sample_init(struct rz_sample *s)
{
    memset(s, 0, sizeof *s);
}

void rz_sample_deinit(struct rz_sample *s)
{
    free(s->ids);
    free(s->mask);
    memset(s, 0, sizeof *s);
}

enum pd_status rz_encode(const struct pd_tok *tok, const struct rz_pieces *x,
                         struct rz_sample *s, struct pd_err *err)
{
    s->n = 0;
    for (int i = 0; i < x->n; i++) {
        const struct pd_buf *b = &x->p[i].text;
        int32_t *ids = NULL;
        size_t n = 0;
        enum pd_status rc = pd_tok_encode(tok, b->data ? b->data : "", b->len, false, true,
                                          &ids, &n, err);
        if (rc != PD_OK) {
            return rc;
        }
        if (s->n + n > s->cap) {
            size_t cap = (s->n + n) * 2;
            int32_t *ni = pd_realloc_array(s->ids, cap, sizeof *ni);
            if (ni) {
                s->ids = ni;
            }
            uint8_t *nm = ni ? pd_realloc_array(s->mask, cap, 1) : NULL;
            if (nm) {
                s->mask = nm;
            }
            if (!ni || !nm) {
                free(ids);
                return pd_err_set(err, PD_ENOMEM, "out of memory");
            }
            s->cap = cap;
        }
        for (size_t k = 0; k < n; k++) {
            s->ids[s->n + k] = ids[k];
            s->mask[s->n + k] = x->p[i].trained && s->n + k > 0;
        }
        s->n += n;
        free(ids);
    }
    return PD_OK;
}
