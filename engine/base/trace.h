/* trace.h - the plain records of a reasoning trace.
 *
 * The engine produces these, analysis reads them, store persists them. They are plain
 * data: no pointers into engine state. Strings and blobs inside a record are owned by
 * whoever owns the record (documented per field); the helpers in trace.c free them.
 *
 * Attention summary blob (little-endian), one per token when capture is `summary` or
 * `full`:
 *   u8  version (1, or 2 when the step section below follows)
 *   u8  n_layer
 *   u8  n_top              entries kept per layer (head-mean row, highest weights)
 *   u8  reserved (=0)
 *   then n_layer times:  n_top times { u32 position; f32 weight }
 *   (entries with weight 0 and position 0xFFFFFFFF pad rows shorter than n_top)
 *   version 2 only:      u32 n_steps; n_steps times { u32 begin; f32 mass }
 *   (the reasoning steps known when the token was evaluated, in order: step k covers
 *   positions begin[k] .. begin[k+1]-1 (the last one up to the token itself); mass[k] is
 *   the head-mean row's total weight on those positions, averaged over layers; positions
 *   before the first step count for none)
 * Size = 4 + n_layer * n_top * 8, plus 4 + 8 * n_steps for version 2. */
#ifndef PD_TRACE_H
#define PD_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define PD_TOPK_MAX 20

#define PD_ATTN_BLOB_VERSION 1      /* written without steps; 2 adds the step section */
#define PD_ATTN_BLOB_HEADER 4
#define PD_ATTN_BLOB_ENTRY 8
#define PD_ATTN_POS_PAD 0xFFFFFFFFu /* position of a padding entry */

enum pd_role {
    PD_ROLE_PROMPT,   /* template + user text, teacher-forced */
    PD_ROLE_THINK,    /* generated inside the thinking span */
    PD_ROLE_ANSWER,   /* generated after the thinking span */
    PD_ROLE_INJECTED, /* inserted by the researcher or a mode controller */
    PD_ROLE_COUNT
};

/* Short lowercase name ("prompt", "think", "answer", "injected"); NULL if out of range. */
const char *pd_role_name(enum pd_role r);
/* Parses a role name; returns PD_ROLE_COUNT if unknown. */
enum pd_role pd_role_parse(const char *s);

struct pd_topk {
    int32_t id;
    float logprob; /* natural log */
};

/* Token flags (bit set). */
enum {
    PD_TOKF_PRUNED = 1u << 0,  /* belongs to a pruned step */
    PD_TOKF_FORCED = 1u << 1,  /* teacher-forced rather than sampled */
    PD_TOKF_NO_METRICS = 1u << 2, /* imported, not scored yet */
};

struct pd_token_rec {
    int64_t pos;          /* position in the sequence, 0-based */
    int32_t id;           /* token id, -1 when unknown (imported text) */
    enum pd_role role;
    uint32_t flags;       /* PD_TOKF_* */
    float logprob;        /* ln p(token | prefix); NAN when not scored */
    float entropy;        /* bits, raw distribution; NAN when not scored */
    uint8_t n_top;        /* valid entries in top[] */
    struct pd_topk top[PD_TOPK_MAX];
    char *text;           /* owned: token bytes (may be partial UTF-8), NUL-terminated */
    size_t text_len;
    uint8_t *attn;        /* owned: attention summary blob (layout above), or NULL */
    size_t attn_len;
};

enum pd_step_kind {
    PD_STEP_PLAN,
    PD_STEP_COMPUTE,
    PD_STEP_CHECK,
    PD_STEP_BACKTRACK,
    PD_STEP_CONCLUDE,
    PD_STEP_KIND_COUNT
};

const char *pd_step_kind_name(enum pd_step_kind k);
enum pd_step_kind pd_step_kind_parse(const char *s);

struct pd_step_rec {
    int32_t index;        /* 0-based within the trace */
    int64_t pos_begin;    /* first token position */
    int64_t pos_end;      /* one past the last token position */
    enum pd_step_kind kind;
    bool pruned;
    float mean_surprisal;       /* bits */
    float first_surprisal;      /* bits */
    float mean_entropy;         /* bits */
    float attn_received;        /* from later steps; NAN when unknown */
};

enum pd_kv_event_kind {
    PD_KV_EVICT,
    PD_KV_SHADOW_EVICT,   /* decided by a shadow policy; nothing dropped */
    PD_KV_EVENT_KIND_COUNT
};

struct pd_kv_event_rec {
    int64_t at_pos;       /* sequence length when the event happened */
    int32_t layer;        /* -1: all layers */
    int64_t slot_pos;     /* original position of the evicted entry */
    enum pd_kv_event_kind kind;
};

/* Sampling and control settings of a run, stored with a session. Strings owned. */
struct pd_run_settings {
    float temperature;    /* 0 = greedy */
    float top_p;
    int32_t top_k;
    float min_p;
    uint64_t seed;
    char *mode;           /* "long", "short:512", "none" */
    char *kv_policy;      /* "full", "window:64,shadow", ... */
    char *chat_template;  /* template name */
};

/* Checks an attention blob's header and length (version 1 or 2, n_layer and n_top >= 1,
 * reserved byte 0, the exact size for the version; n_steps <= 1<<20) and reports its
 * dimensions; false when inconsistent. Does not look at the entries' values. */
bool pd_attn_blob_layout(const uint8_t *blob, size_t len, uint32_t *n_layer, uint32_t *n_top,
                         uint32_t *n_steps);

/* Checks a whole attention blob: its layout (pd_attn_blob_layout), every weight and step
 * mass finite and in [0, 1] (with 1e-3 slack for rounding), padding entries of weight 0.
 * PD_EFORMAT with a message naming the first bad field otherwise. */
enum pd_status pd_attn_blob_check(const uint8_t *blob, size_t len, struct pd_err *err);

/* Step k (k < n_steps) of a blob that pd_attn_blob_layout accepted: its mass, and the
 * position it begins at. */
float pd_attn_blob_step_mass(const uint8_t *blob, uint32_t k);
int64_t pd_attn_blob_step_begin(const uint8_t *blob, uint32_t k);

void pd_token_rec_free(struct pd_token_rec *t);
void pd_run_settings_free(struct pd_run_settings *s);

#endif
