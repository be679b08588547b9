/* kvsim.c - offline KV policy simulation over saved attention summaries. */
#include "kvsim.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "attn_blob.h"
#include "mem.h"
#include "policies.h"

struct sim_layer {
    int64_t *pos;  /* [n] the policy's view, ascending */
    size_t n;
};

struct sim {
    struct pd_kv_policy *p;
    struct sim_layer *layers;
    int32_t n_layer;
    size_t cap;          /* slots per layer allocated */
    float *row;          /* [cap] */
    uint8_t *mask;       /* [cap] */
    struct pd_kv_event_rec *ev;
    size_t n_ev, cap_ev;
};

/* The sparse row of token t for layer l over the layer's view (zeros elsewhere). */
static void build_row(struct sim *s, const struct pd_token_rec *t, int32_t l)
{
    struct sim_layer *L = &s->layers[l];
    memset(s->row, 0, L->n * sizeof(float));
    struct pd_attn_view v;
    if (!t->attn || pd_attn_blob_check(t->attn, t->attn_len, &v, NULL) != PD_OK ||
        (uint32_t)l >= v.n_layer) {
        return;
    }
    for (uint32_t k = 0; k < v.n_top; k++) {
        uint32_t pos;
        float w;
        if (!pd_attn_view_entry(&v, (uint32_t)l, k, &pos, &w)) {
            continue;
        }
        /* binary search in the ascending view */
        size_t lo = 0, hi = L->n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (L->pos[mid] < (int64_t)pos) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (lo < L->n && L->pos[lo] == (int64_t)pos) {
            s->row[lo] = w;
        }
    }
}

static enum pd_status record(struct sim *s, int32_t l, int64_t slot_pos, int64_t at,
                             struct pd_err *err)
{
    struct pd_kv_event_rec *ne = pd_grow_array(s->ev, &s->cap_ev, s->n_ev + 1, sizeof *ne);
    if (!ne) {
        return pd_err_set(err, PD_ENOMEM, "out of memory (kv simulation)");
    }
    s->ev = ne;
    s->ev[s->n_ev++] = (struct pd_kv_event_rec){at, l, slot_pos, PD_KV_SHADOW_EVICT};
    return PD_OK;
}

/* Asks the policy for evictions in every layer after the token at position cur. */
static enum pd_status select_all(struct sim *s, int64_t cur, struct pd_err *err)
{
    int64_t budget = pd_kv_budget_slots(&s->p->budget, cur + 1);
    for (int32_t l = 0; l < s->n_layer; l++) {
        struct sim_layer *L = &s->layers[l];
        int64_t n_ev = 0;
        enum pd_status st = s->p->ops->select(s->p, l, (int64_t)L->n, L->pos, cur, budget,
                                              s->mask, &n_ev, err);
        if (st) {
            return st;
        }
        if (n_ev == 0) {
            continue;
        }
        if ((st = s->p->ops->on_evicted(s->p, l, (int64_t)L->n, s->mask, err))) {
            return st;
        }
        size_t w = 0;
        for (size_t k = 0; k < L->n; k++) {
            if (s->mask[k]) {
                if ((st = record(s, l, L->pos[k], cur + 1, err))) {
                    return st;
                }
            } else {
                L->pos[w++] = L->pos[k];
            }
        }
        L->n = w;
    }
    return PD_OK;
}

enum pd_status pd_kvsim_run(const char *spec, const struct pd_token_rec *toks, size_t n,
                            int32_t n_layer, struct pd_kv_event_rec **events,
                            size_t *n_events, struct pd_err *err)
{
    *events = NULL;
    *n_events = 0;
    if (n_layer < 1 || n_layer > 4096) {
        return pd_err_set(err, PD_EINVAL, "kv simulation: %d layers", n_layer);
    }
    for (size_t i = 1; i < n; i++) {
        if (toks[i].pos <= toks[i - 1].pos) {
            return pd_err_set(err, PD_EINVAL, "kv simulation: token %zu: position %lld not "
                              "after %lld", i, (long long)toks[i].pos,
                              (long long)toks[i - 1].pos);
        }
    }
    struct sim s;
    memset(&s, 0, sizeof s);
    s.n_layer = n_layer;
    s.cap = n ? n : 1;
    enum pd_status st = pd_policy_create_str(spec, n_layer, (int64_t)s.cap, &s.p, err);
    if (st) {
        return st;
    }
    s.layers = pd_calloc((size_t)n_layer, sizeof *s.layers);
    s.row = pd_malloc_array(s.cap, sizeof(float));
    s.mask = pd_malloc_array(s.cap, 1);
    bool ok = s.layers && s.row && s.mask;
    for (int32_t l = 0; ok && l < n_layer; l++) {
        ok = (s.layers[l].pos = pd_malloc_array(s.cap, sizeof(int64_t))) != NULL;
    }
    if (!ok) {
        st = pd_err_set(err, PD_ENOMEM, "out of memory (kv simulation)");
        goto done;
    }
    /* The prompt is the prefill batch. */
    size_t n_prompt = 0;
    while (n_prompt < n && toks[n_prompt].role == PD_ROLE_PROMPT) {
        n_prompt++;
    }
    int64_t prefill_end = n_prompt ? toks[n_prompt - 1].pos + 1 : 0;
    for (size_t i = 0; i < n_prompt; i++) {
        for (int32_t l = 0; l < n_layer; l++) {
            s.layers[l].pos[s.layers[l].n++] = toks[i].pos;
        }
    }
    for (size_t i = 0; i < n_prompt && s.p->n_prefill_rows != 0; i++) {
        if (s.p->n_prefill_rows != PD_KV_ROWS_ALL &&
            toks[i].pos < prefill_end - s.p->n_prefill_rows) {
            continue;
        }
        for (int32_t l = 0; l < n_layer && !st; l++) {
            build_row(&s, &toks[i], l);
            st = s.p->ops->observe_prefill(s.p, l, s.row, 1, 1, (int64_t)s.layers[l].n,
                                           s.layers[l].pos, toks[i].pos, prefill_end, err);
        }
    }
    if (!st && n_prompt) {
        st = select_all(&s, toks[n_prompt - 1].pos, err);
    }
    for (size_t i = n_prompt; i < n && !st; i++) {
        for (int32_t l = 0; l < n_layer && !st; l++) {
            struct sim_layer *L = &s.layers[l];
            L->pos[L->n++] = toks[i].pos;
            if (s.p->needs_decode_attn) {
                build_row(&s, &toks[i], l);
                st = s.p->ops->observe(s.p, l, s.row, 1, (int64_t)L->n, L->pos, toks[i].pos,
                                       err);
            }
        }
        if (!st) {
            st = select_all(&s, toks[i].pos, err);
        }
    }
    if (!st) {
        *events = s.ev;
        *n_events = s.n_ev;
        s.ev = NULL;
    }
done:
    free(s.ev);
    for (int32_t l = 0; s.layers && l < n_layer; l++) {
        free(s.layers[l].pos);
    }
    free(s.layers);
    free(s.row);
    free(s.mask);
    pd_kv_policy_close(&s.p);
    return st;
}
