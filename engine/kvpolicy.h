/* kvpolicy.h - the KV retention policy interface: what the engine tells a policy about a
 * layer's cache, and how the policy answers which slots to evict.
 *
 * The engine defines and calls this interface; the policies themselves (full, window, h2o,
 * snapkv, tova, lazy) live in analysis/policies.c and are built from a spec string there.
 * The engine never includes analysis headers: it receives a ready `struct pd_kv_policy *`.
 *
 * DESIGN
 * View.  For each layer the policy sees a list of slots in cache order, slot s holding the
 *   original position slot_pos[s]. Slot order is ascending position (the cache appends at
 *   the end and compacts in order). Between two calls for a layer the view changes only by
 *   (a) slots appended at the end (new tokens) and (b) removals the engine reports through
 *   on_evicted, in the same order the cache compacts. Policies keep per-slot state in that
 *   order. Any removal (policy decision, branch truncation, pruning a step) goes through
 *   on_evicted so the state stays aligned.
 * Attention rows.  `attn` is row-major [n_head][n_slots]: the softmax probabilities of the
 *   newest token's query, one row per QUERY head (GQA groups expanded), over the slots of
 *   the view (the newest token's own slot included, as the last slot). Prefill rows are
 *   [n_head][n_query][n_slots] for consecutive query positions; a query's entries for
 *   slots after its own position are 0 (causal mask). When the policy's agg is
 *   PD_KV_AGG_MEAN the engine may instead pass n_head = 1 with the head-mean row.
 * Sharing across heads.  A policy decides per layer: one position set shared by all heads
 *   of a layer (TOVA is defined that way; for h2o, snapkv and lazy the per-head scores are
 *   aggregated over the layer's query heads by mean or max, see `agg`). Per-head ragged
 *   caches are not modelled.
 * Call order per layer, enforce and shadow alike:
 *   prefill (prompt or any teacher-forced batch, possibly in chunks):
 *     append slots; if n_prefill_rows != 0: observe_prefill(rows of the batch's queries,
 *     at least the last n_prefill_rows prompt rows, in increasing position order);
 *     after the whole batch: select, then (if anything was chosen) on_evicted.
 *   each decode step: append the new token's slot; if needs_decode_attn: observe(row);
 *     select; if n_evict > 0: on_evicted with the same mask.
 * Budget.  select receives the budget already resolved to slots; the engine computes it
 *   with pd_kv_budget_slots(&p->budget, seq_len) where seq_len = cur_pos + 1 (the
 *   number of positions processed so far). The engine may change p->budget between calls
 *   (a "set budget" command). Some policies may exceed the budget by design (lazy keeps
 *   up to budget + w between evictions); select never evicts below the protected sets.
 * Modes.  PD_KV_MODE_ENFORCE: the engine compacts the cache by the mask. PD_KV_MODE_SHADOW:
 *   the engine keeps the full cache, records the decision (PD_KV_SHADOW_EVICT events) and
 *   keeps a per-layer "policy view" (the slots the policy would have retained): the rows it
 *   passes are the full-cache rows restricted to the view (not renormalised), and it
 *   applies the mask to the view and calls on_evicted as in enforce mode.
 *
 * Ownership: a policy is heap-allocated by its constructor (pd_policy_create in
 * analysis/policies.h) and owned by whoever holds the pointer (the engine session once
 * handed over); release it with pd_kv_policy_close. Thread-safety: one owner thread (the
 * engine worker); no internal locking. Array arguments are borrowed for the call only. */
#ifndef PD_KVPOLICY_H
#define PD_KVPOLICY_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

enum pd_kv_mode {
    PD_KV_MODE_ENFORCE, /* evicted slots are really dropped */
    PD_KV_MODE_SHADOW,  /* full cache kept, decisions recorded */
    PD_KV_MODE_COUNT
};

/* How per-head scores are combined into one score per slot for a layer. */
enum pd_kv_agg {
    PD_KV_AGG_MEAN,
    PD_KV_AGG_MAX,
    PD_KV_AGG_COUNT
};

/* A budget: an absolute slot count per layer, or a ratio of the sequence length. */
struct pd_kv_budget {
    bool is_ratio;
    int64_t slots;      /* when !is_ratio: slots per layer, >= 1 */
    double ratio;       /* when is_ratio: in (0, 1] */
};

/* n_prefill_rows value meaning "every query row of the prefill batch". */
#define PD_KV_ROWS_ALL INT64_MAX

struct pd_kv_policy;

/* The vtable. Every function receives the policy it belongs to; layer is in [0, n_layer).
 * Functions returning enum pd_status fail with PD_EINVAL on shape/argument mismatches
 * (message names the argument) and PD_ENOMEM when growing per-slot state fails; the
 * policy's state is unchanged on failure. */
struct pd_kv_policy_ops {
    const char *name; /* borrowed, static: "full", "window", "h2o", "snapkv", "tova", "lazy" */

    /* One decode step: attn[n_head][n_slots] is the newest token's attention over the
     * layer's view; slot_pos[n_slots] the original positions; cur_pos the newest token's
     * position (normally slot_pos[n_slots-1]). n_slots must be >= the slots the policy
     * already tracks (new slots are the appended tail). NULL when the policy has no use
     * for attention (needs_decode_attn false): the engine then skips the call. */
    enum pd_status (*observe)(struct pd_kv_policy *p, int32_t layer, const float *attn,
                              int32_t n_head, int64_t n_slots, const int64_t *slot_pos,
                              int64_t cur_pos, struct pd_err *err);

    /* A block of teacher-forced query rows: attn[n_head][n_query][n_slots], rows for the
     * query positions q_pos_begin .. q_pos_begin + n_query - 1; prefill_end is one past
     * the last position of the whole batch (so a policy can tell which rows are the last
     * w). May be called several times per batch with consecutive blocks. NULL when unused
     * (n_prefill_rows == 0). */
    enum pd_status (*observe_prefill)(struct pd_kv_policy *p, int32_t layer,
                                      const float *attn, int32_t n_head, int32_t n_query,
                                      int64_t n_slots, const int64_t *slot_pos,
                                      int64_t q_pos_begin, int64_t prefill_end,
                                      struct pd_err *err);

    /* Decides which slots to evict now. evict_mask[n_slots] is written in full (1 =
     * evict, 0 = keep); *n_evict receives the count. budget is in slots (resolved).
     * Never removes per-slot state (on_evicted does); it may append default state for
     * slots it has not seen yet and advance per-layer bookkeeping such as "prefill
     * compression done". */
    enum pd_status (*select)(struct pd_kv_policy *p, int32_t layer, int64_t n_slots,
                             const int64_t *slot_pos, int64_t cur_pos, int64_t budget,
                             uint8_t *evict_mask, int64_t *n_evict, struct pd_err *err);

    /* The engine removed the slots with evict_mask[s] != 0 out of n_slots (any reason);
     * the policy compacts its per-slot state in the same order. */
    enum pd_status (*on_evicted)(struct pd_kv_policy *p, int32_t layer, int64_t n_slots,
                                 const uint8_t *evict_mask, struct pd_err *err);

    /* Frees the policy (the whole object, including the struct pd_kv_policy). */
    void (*destroy)(struct pd_kv_policy *p);
};

/* The engine-visible part of a policy. Implementations embed it as their first member. */
struct pd_kv_policy {
    const struct pd_kv_policy_ops *ops; /* borrowed: static table of the implementation */
    enum pd_kv_mode mode;        /* engine reads: enforce or shadow */
    struct pd_kv_budget budget;  /* engine resolves it per call; may be changed at runtime */
    int32_t n_layer;
    enum pd_kv_agg agg;          /* head aggregation the policy uses */
    int64_t n_sink;              /* protected: the first n_sink slots are never evicted */
    int64_t n_recent;            /* protected: the last n_recent slots are never evicted
                                  * (0 when the recent set depends on the budget; for
                                  * display only, select enforces the real rule) */
    bool needs_decode_attn;      /* observe must be called every decode step */
    int64_t n_prefill_rows;      /* 0, a row count, or PD_KV_ROWS_ALL (see observe_prefill) */
};

/* Budget in slots for a sequence of seq_len positions: b->slots, or ceil(ratio * seq_len)
 * (at least 1). Pure. */
static inline int64_t pd_kv_budget_slots(const struct pd_kv_budget *b, int64_t seq_len)
{
    if (!b->is_ratio) {
        return b->slots;
    }
    double v = ceil(b->ratio * (double)seq_len);
    if (!(v >= 1.0)) {
        return 1;
    }
    if (v >= (double)INT64_MAX) {
        return INT64_MAX;
    }
    return (int64_t)v;
}

/* Destroys *p (NULL and *p == NULL accepted) and sets *p to NULL. */
static inline void pd_kv_policy_close(struct pd_kv_policy **p)
{
    if (p != NULL && *p != NULL) {
        (*p)->ops->destroy(*p);
        *p = NULL;
    }
}

#endif
