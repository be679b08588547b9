/* policies.h - KV retention policies behind the engine's policy interface.
 *
 * Owns the policy spec string ("POLICY[:BUDGET][,shadow][,key=value...]"), its parser
 * and canonical formatter, and the six policies: full, window (StreamingLLM sinks +
 * recent), h2o (heavy hitters by cumulative attention + recent), snapkv (pooled
 * observation-window scores, applied once after prefill), tova (drop the least-attended
 * slot of the current query), lazy (LazyEviction: recurrence-interval tracking, eviction
 * every w steps). Each policy implements struct pd_kv_policy_ops from engine/kvpolicy.h;
 * the engine calls it without knowing which one it has. Exact rules: docs/kv-policies.md.
 *
 * Spec grammar (case-sensitive, no spaces):
 *   spec   := name [":" budget] {"," item}
 *   name   := "full" | "window" | "h2o" | "snapkv" | "tova" | "lazy"
 *   budget := integer slots >= 1 | decimal ratio in (0,1] written with "." | percent "N%"
 *   item   := "shadow" | "enforce" | key "=" value
 * Every policy except full requires a budget; full accepts none. Keys per policy:
 *   all but full: sinks=N (protected first slots; window default 4, others 0)
 *   h2o:    recent=N (slots) or recent_ratio=R (fraction of the budget, default 0.5),
 *           agg=mean|max
 *   snapkv: w=N (observation window, default 32), k=N (odd pool kernel, default 5),
 *           pool=avg|max (default avg), agg=mean|max
 *   tova:   agg=mean|max
 *   lazy:   w=N (observation window, default 32), alpha=X (threshold in (0,1), default
 *           1e-4), agg=mean|max
 * agg defaults to mean. A key given twice, a key the policy does not take, or a value out
 * of range is an error whose message quotes the offending part of the spec.
 *
 * Thread-safety: parse/format are pure; a policy object has one owner thread. */
#ifndef PD_ANALYSIS_KVPOLICY_H
#define PD_ANALYSIS_KVPOLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "kvpolicy.h"

enum pd_policy_kind {
    PD_POLICY_FULL,
    PD_POLICY_WINDOW,
    PD_POLICY_H2O,
    PD_POLICY_SNAPKV,
    PD_POLICY_TOVA,
    PD_POLICY_LAZY,
    PD_POLICY_KIND_COUNT
};

enum pd_kv_pool {
    PD_KV_POOL_AVG,
    PD_KV_POOL_MAX,
    PD_KV_POOL_COUNT
};

/* A parsed policy spec. Plain data, no pointers. Fields a policy does not use keep their
 * defaults (see pd_policy_spec_defaults). */
struct pd_policy_spec {
    enum pd_policy_kind kind;
    enum pd_kv_mode mode;        /* "shadow" item -> PD_KV_MODE_SHADOW */
    bool has_budget;             /* false only for full */
    struct pd_kv_budget budget;
    int64_t n_sink;              /* sinks= */
    int64_t n_recent;            /* h2o recent= (slots); 0 = use recent_ratio */
    double recent_ratio;         /* h2o recent_ratio= in (0,1) */
    int64_t window;              /* snapkv / lazy w= */
    int32_t kernel;              /* snapkv k= (odd) */
    enum pd_kv_pool pool;        /* snapkv pool= */
    enum pd_kv_agg agg;          /* agg= */
    double alpha;                /* lazy alpha= */
};

/* Short lowercase name ("full", "window", ...); NULL if out of range. */
const char *pd_policy_kind_name(enum pd_policy_kind k);

/* Parses a policy name; returns PD_POLICY_KIND_COUNT if unknown. */
enum pd_policy_kind pd_policy_kind_parse(const char *s);

/* Fills *out with the defaults of policy kind k (no budget, enforce mode). */
void pd_policy_spec_defaults(enum pd_policy_kind k, struct pd_policy_spec *out);

/* Parses spec (NUL-terminated, untrusted user text) into *out. On error returns
 * PD_EINVAL, leaves *out unspecified and fills err with a message that quotes the spec
 * and names the bad part (unknown policy, missing/bad budget, unknown or duplicate key,
 * value out of range, budget too small for the protected sets). */
enum pd_status pd_policy_parse(const char *spec, struct pd_policy_spec *out,
                                 struct pd_err *err);

/* Writes the canonical spec string of *spec into out[0..out_size) (NUL-terminated):
 * name, budget, "shadow" if set, then only keys that differ from the defaults, in a fixed
 * order. Parsing the result yields an equal spec. Returns PD_EINVAL if out_size is too
 * small (out then holds a truncated string) or the spec is invalid. */
enum pd_status pd_policy_format(const struct pd_policy_spec *spec, char *out,
                                  size_t out_size, struct pd_err *err);

/* Re-checks a spec built by hand (the same range rules as the parser). */
enum pd_status pd_policy_validate(const struct pd_policy_spec *spec, struct pd_err *err);

/* Creates the policy described by spec for a model with n_layer layers (1..4096).
 * n_slots_hint (>= 0) pre-sizes per-slot state (e.g. the context length) so that
 * decoding does not allocate; 0 grows on demand. On success *out is a new policy owned by
 * the caller (release with pd_kv_policy_close from engine/kvpolicy.h). */
enum pd_status pd_policy_create(const struct pd_policy_spec *spec, int32_t n_layer,
                                  int64_t n_slots_hint, struct pd_kv_policy **out,
                                  struct pd_err *err);

/* Convenience: pd_policy_parse then pd_policy_create. */
enum pd_status pd_policy_create_str(const char *spec, int32_t n_layer, int64_t n_slots_hint,
                                      struct pd_kv_policy **out, struct pd_err *err);

#endif
