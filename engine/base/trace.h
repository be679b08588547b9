/* trace.h - the plain records of a reasoning trace.
 *
 * The engine produces these, analysis reads them, store persists them. They are plain
 * data: no pointers into engine state. Strings and blobs inside a record are owned by
 * whoever owns the record (documented per field); the helpers in trace.c free them.
 *
 * Attention summary blobs (pd_token_rec.attn) are written and read only through
 * attn_blob.h. */
#ifndef PD_TRACE_H
#define PD_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define PD_TOPK_MAX 20
/* The longest text one token record may carry (an imported paragraph is one record). */
#define PD_TEXT_ROW_MAX (1u << 20)
/* The most paragraphs (records) an imported trace's completion may have. */
#define PD_IMPORT_PARAGRAPHS_MAX 100000u

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
    PD_TOKF_ENTROPY_EST = 1u << 3, /* entropy estimated from a remote engine's top-k (the
                                    * rest of the mass as one bucket), not computed */
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
    uint8_t *attn;        /* owned: attention summary blob (attn_blob.h), or NULL */
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

void pd_token_rec_free(struct pd_token_rec *t);
void pd_run_settings_free(struct pd_run_settings *s);

#endif
