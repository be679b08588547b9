/* capture.h - attention capture: per-token summaries, cumulative attention received, and
 * the last token's full rows.
 *
 * A pd_capture_state is attached to a pd_ctx as its attention hook (pd_capture_attach).
 * For every evaluated token and layer it receives the softmax rows [n_head][n_slots] the
 * forward pass used and, depending on the level:
 *   summary  the head-mean row's top-N positions and weights (the per-token blob written
 *            through base/attn_blob.h), and the cumulative attention received per position and
 *            layer (head-mean), updated incrementally;
 *   full     summary, plus a copy of all heads' rows for the selected layers of the most
 *            recent token (for the live view).
 * Blobs of the tokens of the current eval call are kept until pd_capture_begin is called
 * for the next one (indexed by the token's index in the call).
 *
 * Ownership: the state owns its buffers. Thread-safety: used on the thread that drives
 * the context (the hook runs there; the batch hook hands per-token work to the context's
 * pool and returns when it is done). */
#ifndef PD_CAPTURE_H
#define PD_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "forward.h"

enum pd_capture_level {
    PD_CAPTURE_LEVEL_OFF,
    PD_CAPTURE_LEVEL_SUMMARY,
    PD_CAPTURE_LEVEL_FULL,
    PD_CAPTURE_LEVEL_COUNT
};

const char *pd_capture_level_name(enum pd_capture_level c);
/* "off" / "summary" / "full"; PD_CAPTURE_LEVEL_COUNT if unknown. */
enum pd_capture_level pd_capture_level_parse(const char *s);

/* Optional per-layer observer called from the hook with the same arguments (the session
 * uses it to feed a KV policy). */
typedef void (*pd_capture_observer_fn)(void *ud, uint32_t layer, int64_t pos,
                                       const float *probs, uint32_t n_head, uint32_t n_slots,
                                       const int64_t *slot_pos);

struct pd_capture_state {
    enum pd_capture_level level;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t top_n;          /* entries per layer in a summary */
    uint64_t full_layers;    /* bit mask (layers >= 64 never captured in full); 0 = all */
    int64_t pos0;            /* position of token 0 of the current eval call */
    size_t n_tok;            /* tokens of the current call with summaries */
    size_t cap_tok;
    uint8_t *blobs;          /* [cap_tok][blob_len] */
    size_t blob_len;         /* pd_attn_blob_size(n_layer, top_n, 0) */
    float *mean_row;         /* [n_ctx] scratch */
    float *mean_rows;        /* [n_mean_rows][n_ctx] scratch of the batch hook */
    uint32_t n_mean_rows;
    float *cum;              /* [n_layer][cum_cap] attention received by position */
    int64_t cum_cap;
    bool keep_received;      /* maintain cum (pd_capture_init: true); cleared by a session
                              * without history, where it would grow with every position
                              * and nothing reads it */
    /* full rows of the last token: [n_layer][n_head][n_ctx], valid for layers in the mask */
    float *full;
    int64_t *full_pos;       /* [n_layer][n_ctx] slot positions */
    uint32_t *full_slots;    /* [n_layer] slot counts */
    int64_t full_token_pos;  /* position of the token the full rows belong to, -1 none */
    uint32_t n_ctx;
    pd_capture_observer_fn observer;
    void *observer_ud;
    /* reasoning steps known so far (first positions, ascending) and, per token of the
     * current call, the head-mean mass on each of them averaged over layers */
    int64_t *steps;          /* [cap_steps] */
    uint32_t n_steps, cap_steps;
    float *smass;            /* [cap_smass] = [n_tok][smass_stride] */
    size_t cap_smass;
    uint32_t smass_stride;   /* n_steps when the call began */
    /* For a backend that computes attention on its own device (engine/backend_cuda.c) and
     * cannot hand over every row cheaply: the observer wants the rows of positions >=
     * observer_from of an eval call (INT64_MAX: none; 0, the default: all, as the CPU
     * delivers them) and, when observer_mean is set, accepts the head-mean row (n_head = 1,
     * the sum over heads divided by n_head) instead of every head. Set by the observer's
     * owner before each eval. */
    int64_t observer_from;
    bool observer_mean;
    /* Cumulative attention held on such a device: cum_sync, when set, brings cum up to date
     * before pd_capture_received reads it (cum_sync_ud is valid while the context that set
     * it lives); cum_forgot is the lowest position pd_capture_rewind forgot since the
     * backend last looked (INT64_MAX: none). */
    void (*cum_sync)(void *ud, struct pd_capture_state *cs);
    void *cum_sync_ud;
    int64_t cum_forgot;
};

/* All heads' attention rows of one token for a set of layers. */
struct pd_attn_rows {
    uint32_t n_layer;     /* captured layers */
    uint32_t *layers;     /* [n_layer] layer indices */
    uint32_t n_head;
    uint32_t *n_slots;    /* [n_layer] */
    int64_t **slot_pos;   /* [n_layer][n_slots[i]] */
    float **w;            /* [n_layer][n_head * n_slots[i]] row-major by head */
};

void pd_attn_rows_free(struct pd_attn_rows *r);

/* Copies the last token's full rows out of cs (level FULL); NULL when there are none or
 * allocation fails. Owned by the caller (pd_attn_rows_free). */
struct pd_attn_rows *pd_capture_copy_rows(const struct pd_capture_state *cs);

/* Recomputes the attention rows of the last of tokens[0..n) by running the whole prefix
 * through a fresh context with a full cache (no eviction) and full capture of the layers
 * in `layers` (0 = all). *out is owned by the caller. */
enum pd_status pd_capture_recompute(const struct pd_model *m, const int32_t *tokens, size_t n,
                                    int n_threads, uint64_t layers, struct pd_attn_rows **out,
                                    struct pd_err *err);

/* The attention hook pd_capture_init installs (ud = the capture state): exported so a
 * backend that computes capture on its own device can recognise the state it feeds, and
 * so tests can feed it rows directly. */
void pd_capture_hook(void *ud, uint32_t layer, int64_t pos, const float *probs,
                     uint32_t n_head, uint32_t n_slots, const int64_t *slot_pos);

/* The batch form of pd_capture_hook, which pd_capture_init installs beside it: the
 * tokens' head-mean rows, step masses and summaries run on the pool, the cumulative
 * attention, full rows and the observer in token order on the calling thread. */
void pd_capture_hook_batch(void *ud, struct pd_pool *pool, uint32_t layer, int64_t pos0,
                           uint32_t n_tok, const float *probs, size_t tok_stride,
                           uint32_t n_head, uint32_t n_slots, const int64_t *slot_pos);

/* Sets up a capture state for ctx's model and context size and installs the hook on ctx.
 * level OFF still installs the hook when an observer is set (policies need the rows). */
enum pd_status pd_capture_init(struct pd_capture_state *cs, struct pd_ctx *ctx,
                               enum pd_capture_level level, uint32_t top_n,
                               uint64_t full_layers, struct pd_err *err);
void pd_capture_deinit(struct pd_capture_state *cs);

/* Starts a new eval call of n tokens at position pos0 (grows the blob buffer). */
enum pd_status pd_capture_begin(struct pd_capture_state *cs, int64_t pos0, size_t n,
                                struct pd_err *err);

/* The summary blob of token i of the current call (NULL when level is OFF). */
const uint8_t *pd_capture_blob(const struct pd_capture_state *cs, size_t i);

/* Attention received by position pos in layer il so far (head-mean, summed over queries);
 * NAN when keep_received is off. */
float pd_capture_received(const struct pd_capture_state *cs, uint32_t il, int64_t pos);

/* Forgets cumulative attention and steps for positions >= pos (branch / rewind). */
void pd_capture_rewind(struct pd_capture_state *cs, int64_t pos);

/* A reasoning step begins at pos (after every known step); tokens evaluated from the next
 * call on get its share of their attention in their summary. */
enum pd_status pd_capture_add_step(struct pd_capture_state *cs, int64_t pos,
                                   struct pd_err *err);

/* Token i of the current call: the mass per known step (*n of them, 0 when none or
 * capture is off); borrowed until the next pd_capture_begin. */
const float *pd_capture_step_mass(const struct pd_capture_state *cs, size_t i, uint32_t *n);

#endif
