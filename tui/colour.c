/* colour.c - what the trace is coloured by: surprisal (the default), entropy, attention
 * from the cursor token (one layer or the mean over layers; one head or the head mean),
 * attention received by each
 * token from all later ones, or the kind of the step a token belongs to. Each mode maps a
 * token to one of PD_APP_LEVELS levels (0: no colour) and names its levels for the legend
 * in the trace's title. View model only: the colours themselves are term.c's. */
#include "app.h"
#include "app_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "attn_blob.h"
#include "mem.h"

static const char *const mode_names[PD_COLOUR_COUNT] = {
    [PD_COLOUR_SURPRISAL] = "surprisal", [PD_COLOUR_ENTROPY] = "entropy",
    [PD_COLOUR_ATTN_FROM] = "attention",  [PD_COLOUR_ATTN_RECV] = "received",
    [PD_COLOUR_STEP] = "step",
};

/* Lower bounds of levels 1..7 per mode (bits, attention weight, attention mass). */
static const float bits_min[PD_APP_LEVELS - 1] = {1.0f, 2.0f, 3.5f, 5.0f, 7.0f, 9.0f, 12.0f};
static const float weight_min[PD_APP_LEVELS - 1] = {0.01f, 0.02f, 0.05f, 0.1f,
                                                    0.2f,  0.4f,  0.6f};
static const float mass_min[PD_APP_LEVELS - 1] = {0.05f, 0.1f, 0.2f, 0.5f, 1.0f, 2.0f, 5.0f};
static const char *const bits_labels[PD_APP_LEVELS] = {"<1", "1", "2", "3.5",
                                                       "5",  "7", "9", "12+"};
/* (attention levels 0 are left uncoloured and unlabelled) */
static const char *const weight_labels[PD_APP_LEVELS] = {NULL, ".01", ".02", ".05",
                                                         ".1", ".2",  ".4",  ".6+"};
static const char *const mass_labels[PD_APP_LEVELS] = {NULL, ".05", ".1", ".2",
                                                       ".5", "1",   "2",  "5+"};
/* Step kinds get levels far enough apart to tell them apart. */
static const int kind_level[PD_STEP_KIND_COUNT] = {
    [PD_STEP_PLAN] = 2, [PD_STEP_COMPUTE] = 4, [PD_STEP_CHECK] = 6,
    [PD_STEP_BACKTRACK] = 7, [PD_STEP_CONCLUDE] = 3,
};

const char *pd_colour_name(enum pd_colour c)
{
    return (unsigned)c < PD_COLOUR_COUNT ? mode_names[c] : NULL;
}

enum pd_colour pd_colour_parse(const char *s)
{
    for (int c = 0; c < PD_COLOUR_COUNT; c++) {
        if (strcmp(s, mode_names[c]) == 0) {
            return (enum pd_colour)c;
        }
    }
    return PD_COLOUR_COUNT;
}

static int level_of(float x, const float *min)
{
    if (!(x >= min[0])) {
        return 0;
    }
    int l = 1;
    while (l < PD_APP_LEVELS - 1 && x >= min[l]) {
        l++;
    }
    return l;
}

/* Adds token j's attention (mean over its layers, or one layer) to recv[]. */
static void add_received(struct pd_app *a, size_t j)
{
    struct pd_attn_view v;
    const struct pd_token_rec *t = &a->toks[j];
    if (!pd_attn_blob_layout(t->attn, t->attn_len, &v) || v.n_layer == 0) {
        return;
    }
    for (uint32_t l = 0; l < v.n_layer; l++) {
        if (a->colour_layer >= 0 && (uint32_t)a->colour_layer != l) {
            continue;
        }
        for (uint32_t e = 0; e < v.n_top; e++) {
            uint32_t pos;
            float w;
            if (pd_attn_view_entry(&v, l, e, &pos, &w) && pos < j && isfinite(w) && w > 0) {
                a->tok_recv[pos] += a->colour_layer >= 0 ? w : w / (float)v.n_layer;
            }
        }
    }
}

/* ---- one head (:head) ---- */

bool pd_app_heads_ready(const struct pd_app *a)
{
    return a->heads && a->n_visible > 0 && a->heads_pos == a->toks[a->cursor].pos;
}

void pd_app_heads_take(struct pd_app *a, struct pd_attn_rows *rows, int64_t pos)
{
    pd_attn_rows_free(a->heads);
    a->heads = rows;
    a->heads_pos = rows ? pos : -1;
    a->heads_gen++;
    a->dirty |= PD_DIRTY_TRACE | PD_DIRTY_INSPECT;
    if (rows && a->colour_head >= 0 && (uint32_t)a->colour_head >= rows->n_head) {
        pd_app_msg(a, true, "head %d: the model has %u heads (0-%u); back to the head mean",
                   (int)a->colour_head, rows->n_head, rows->n_head - 1);
        a->colour_head = -1;
    }
}

void pd_app_heads_want(struct pd_app *a)
{
    if (a->colour != PD_COLOUR_ATTN_FROM || a->colour_head < 0 || a->n_visible == 0 ||
        pd_app_heads_ready(a) || a->heads_pending) {
        return;
    }
    if (a->kind != PD_APP_LIVE || a->remote) {
        if (!a->heads_refused) {
            pd_app_msg(a, true, "head: every head's attention is recomputed by the model in "
                                "this process (%s)", a->remote ? "a remote engine has none"
                                : "ponder replay ID -m MODEL; the database keeps the head mean");
            a->heads_refused = true;
        }
        return;
    }
    if (a->follow && !a->paused && !a->finished) {
        return; /* the newest token's rows come with it under --capture full; recomputing
                 * them for every token would slow the generation down */
    }
    struct pd_cmd *c = pd_app_fx_cmd(a, PD_CMD_ATTN);
    if (c) {
        c->pos = a->toks[a->cursor].pos;
        a->heads_pending = true;
        a->dirty |= PD_DIRTY_TRACE;
    }
}

/* The selected head's weight to every position (mean over the captured layers, or the
 * one layer of :layer), from the cursor token's rows. */
static void build_head_w(struct pd_app *a)
{
    if (!pd_app_heads_ready(a)) {
        a->head_w_n = 0;
        return;
    }
    if (a->head_w_gen == a->heads_gen && a->head_w_head == a->colour_head &&
        a->head_w_layer == a->colour_layer) {
        return;
    }
    const struct pd_attn_rows *r = a->heads;
    size_t n = (size_t)a->heads_pos + 1;
    if (a->head_w_cap < n) {
        float *w = pd_realloc_array(a->head_w, n, sizeof *w);
        if (!w) {
            pd_app_msg(a, true, "out of memory (head attention)");
            a->head_w_n = 0;
            return;
        }
        a->head_w = w;
        a->head_w_cap = n;
    }
    memset(a->head_w, 0, n * sizeof *a->head_w);
    uint32_t used = 0, h = (uint32_t)a->colour_head;
    for (uint32_t li = 0; li < r->n_layer && h < r->n_head; li++) {
        if (a->colour_layer >= 0 && r->layers[li] != (uint32_t)a->colour_layer) {
            continue;
        }
        used++;
        const float *row = r->w[li] + (size_t)h * r->n_slots[li];
        for (uint32_t k = 0; k < r->n_slots[li]; k++) {
            int64_t p = r->slot_pos[li][k];
            if (p >= 0 && (size_t)p < n && isfinite(row[k])) {
                a->head_w[p] += row[k];
            }
        }
    }
    for (size_t p = 0; p < n && used > 1; p++) {
        a->head_w[p] /= (float)used;
    }
    a->head_w_n = used ? n : 0; /* 0: :layer names a layer the rows do not hold */
    a->head_w_gen = a->heads_gen;
    a->head_w_head = a->colour_head;
    a->head_w_layer = a->colour_layer;
}

void pd_app_colour_prepare(struct pd_app *a)
{
    if (a->colour == PD_COLOUR_ATTN_FROM && a->colour_head >= 0) {
        build_head_w(a);
        return;
    }
    if (a->colour != PD_COLOUR_ATTN_RECV) {
        return;
    }
    if (a->tok_recv_cap < a->cap_toks) {
        float *r = pd_realloc_array(a->tok_recv, a->cap_toks, sizeof *r);
        if (!r) {
            pd_app_msg(a, true, "out of memory (attention received)");
            a->colour = PD_COLOUR_SURPRISAL;
            return;
        }
        a->tok_recv = r;
        a->tok_recv_cap = a->cap_toks;
        a->tok_recv_for = SIZE_MAX;
    }
    if (a->tok_recv_for > a->n_visible || a->tok_recv_layer != a->colour_layer) {
        a->tok_recv_for = 0; /* the playhead went back, a branch cut, or another layer */
        a->tok_recv_layer = a->colour_layer;
    }
    if (a->tok_recv_for == 0) {
        memset(a->tok_recv, 0, a->tok_recv_cap * sizeof *a->tok_recv);
    }
    for (size_t j = a->tok_recv_for; j < a->n_visible; j++) {
        add_received(a, j);
    }
    a->tok_recv_for = a->n_visible;
}

/* The cursor token's attention to position i: one layer's weight, or the mean over layers
 * (entries outside the summary's top-N count as 0). */
static float attn_from_cursor(const struct pd_app *a, size_t i)
{
    if (a->n_visible == 0 || i >= a->cursor) {
        return NAN;
    }
    if (a->colour_head >= 0) {
        int64_t p = a->toks[i].pos;
        return pd_app_heads_ready(a) && p >= 0 && (size_t)p < a->head_w_n ? a->head_w[p] : NAN;
    }
    struct pd_attn_view v;
    const struct pd_token_rec *t = &a->toks[a->cursor];
    if (!pd_attn_blob_layout(t->attn, t->attn_len, &v) || v.n_layer == 0) {
        return NAN;
    }
    float sum = 0;
    for (uint32_t l = 0; l < v.n_layer; l++) {
        if (a->colour_layer >= 0 && (uint32_t)a->colour_layer != l) {
            continue;
        }
        for (uint32_t e = 0; e < v.n_top; e++) {
            uint32_t pos;
            float w;
            if (pd_attn_view_entry(&v, l, e, &pos, &w) && pos == (uint32_t)a->toks[i].pos &&
                isfinite(w)) {
                sum += w;
            }
        }
    }
    return a->colour_layer >= 0 ? sum : sum / (float)v.n_layer;
}

int pd_app_colour_level(const struct pd_app *a, size_t i)
{
    if (i >= a->n_toks) {
        return 0;
    }
    switch (a->colour) {
    case PD_COLOUR_SURPRISAL:
        return level_of(pd_app_surprisal(a, i), bits_min);
    case PD_COLOUR_ENTROPY:
        return level_of(a->toks[i].entropy, bits_min);
    case PD_COLOUR_ATTN_FROM:
        return level_of(attn_from_cursor(a, i), weight_min);
    case PD_COLOUR_ATTN_RECV:
        return a->tok_recv && i < a->tok_recv_for ? level_of(a->tok_recv[i], mass_min) : 0;
    case PD_COLOUR_STEP: {
        int32_t s = pd_app_step_of(a, i);
        return s >= 0 && (unsigned)a->steps[s].rec.kind < PD_STEP_KIND_COUNT
                   ? kind_level[a->steps[s].rec.kind]
                   : 0;
    }
    case PD_COLOUR_COUNT:
        break;
    }
    return 0;
}

void pd_app_colour_legend(const struct pd_app *a, char *title, size_t n,
                          const char *labels[PD_APP_LEVELS])
{
    char layer[24] = "";
    if (a->colour_layer >= 0) {
        snprintf(layer, sizeof layer, " L%d", (int)a->colour_layer);
    }
    for (int l = 0; l < PD_APP_LEVELS; l++) {
        labels[l] = NULL;
    }
    switch (a->colour) {
    case PD_COLOUR_SURPRISAL:
    case PD_COLOUR_ENTROPY:
        snprintf(title, n, "%s bits", mode_names[a->colour]);
        memcpy(labels, bits_labels, sizeof bits_labels);
        break;
    case PD_COLOUR_ATTN_FROM: {
        char head[40] = "";
        if (a->colour_head >= 0) {
            snprintf(head, sizeof head, " H%d%s", (int)a->colour_head,
                     pd_app_heads_ready(a) ? (a->head_w_n ? "" : " (layer not captured)")
                     : a->heads_pending ? " (computing)" : " (no rows)");
        }
        snprintf(title, n, "attn from %lld%s%s",
                 a->n_visible ? (long long)a->toks[a->cursor].pos : 0LL, layer, head);
        memcpy(labels, weight_labels, sizeof weight_labels);
        break;
    }
    case PD_COLOUR_ATTN_RECV:
        snprintf(title, n, "attn received%s", layer);
        memcpy(labels, mass_labels, sizeof mass_labels);
        break;
    case PD_COLOUR_STEP:
    case PD_COLOUR_COUNT:
        snprintf(title, n, "step");
        for (int k = 0; k < PD_STEP_KIND_COUNT; k++) {
            labels[kind_level[k]] = pd_step_kind_name((enum pd_step_kind)k);
        }
        break;
    }
}

void pd_app_set_colour(struct pd_app *a, enum pd_colour c)
{
    a->colour = c;
    a->tok_recv_for = SIZE_MAX;
    a->dirty |= PD_DIRTY_TRACE | PD_DIRTY_INSPECT;
    if (a->colour_head >= 0) {
        build_head_w(a); /* the legend says whether the rows hold the layer */
    }
    char title[64];
    const char *labels[PD_APP_LEVELS];
    pd_app_colour_legend(a, title, sizeof title, labels);
    pd_app_msg(a, false, "colour: %s", title);
    pd_app_heads_want(a); /* after the message: a refusal replaces it */
}
