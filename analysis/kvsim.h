/* kvsim.h - run a KV retention policy after the fact over a saved trace.
 *
 * A saved session keeps, per token, an attention summary: for every layer the head-mean
 * row's top-N (position, weight) entries (engine/base/trace.h). kvsim replays the trace
 * through a policy built from a spec string ("h2o:64", "window:128", ...), feeding it
 * those sparse rows (weights outside the saved top-N count as 0), and records which
 * positions the policy would have evicted and when. Prompt tokens form the prefill batch
 * (observe_prefill, one select after it); every later token is a decode step (observe,
 * select). The result is a shadow simulation: the real run's attention came from the full
 * cache, and a policy that drops what the top-N did not record may decide differently
 * than it would have live (documented in docs/kv-policies.md).
 *
 * Ownership: inputs are borrowed for the call; the event list is owned by the caller.
 * Thread-safety: reentrant. */
#ifndef PD_KVSIM_H
#define PD_KVSIM_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "trace.h"

/* Simulates `spec` over toks[0..n) (positions increasing; tokens without a summary blob
 * contribute rows of zeros) for a model with n_layer layers. On success *events is a
 * malloc'd array of *n_events shadow evictions (kind PD_KV_SHADOW_EVICT, in order),
 * owned by the caller (free()). PD_EINVAL names a bad spec or input. */
enum pd_status pd_kvsim_run(const char *spec, const struct pd_token_rec *toks, size_t n,
                            int32_t n_layer, struct pd_kv_event_rec **events,
                            size_t *n_events, struct pd_err *err);

#endif
