/* remote_serve.h - ponder serve: ponder's engine behind the subset of the OpenAI-compatible
 * HTTP API that ponder's own client uses (and vLLM serves), so a workbench on one machine
 * can drive a ponder engine on another with full instrumentation.
 *
 * Endpoints (docs/remote.md gives the fields):
 *   GET  /health                 {"status": "ok"}
 *   GET  /v1/models              the one model, owned_by "ponder", with max_model_len
 *   POST /tokenize, /detokenize  vLLM's shapes ({"prompt"} or llama-server's {"content"})
 *   POST /v1/completions         prompt as text or token ids; max_tokens, temperature,
 *                                top_p, top_k, min_p, seed; stream (server-sent events);
 *                                logprobs (<= 20) with return_tokens_as_token_ids; echo
 *                                (with max_tokens 0: teacher-forced scoring of the
 *                                prompt), prompt_logprobs (max_tokens 0 only)
 *   POST /v1/chat/completions    messages rendered with the model's chat template
 *                                (ponder's C templates), streamed or whole, logprobs
 * Each choice carries a `ponder` object: per token its id, exact entropy (bits) and, when
 * the request asks {"ponder": {"attn": true}}, the attention summary blob (base64 of the
 * attn_blob.h layout); per chunk the KV events of the server's KV policy (`--kv`).
 *
 * Limits: one sequence runs on the engine at a time; up to queue_max further requests
 * wait their turn in arrival order and any beyond that get 429. Request bodies above
 * max_body get 413, prompts that do not fit the context 400. With an API key set, every
 * request must carry "Authorization: Bearer KEY" (compared in constant time) or gets
 * 401. Binds to 127.0.0.1 unless told otherwise.
 *
 * Ownership: the server borrows the model and tokenizer (they must outlive it); policies
 * made by make_policy are owned by the generation they are made for. Thread-safety:
 * libmicrohttpd runs one thread per connection; the engine lock serialises model use;
 * pd_serve_open / pd_serve_close belong to one thread. */
#ifndef PD_REMOTE_SERVE_H
#define PD_REMOTE_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "chat.h"
#include "forward.h"
#include "kvpolicy.h"
#include "model.h"
#include "tokenizer.h"

struct pd_serve_params {
    const char *host;           /* address to bind (default "127.0.0.1") */
    uint16_t port;              /* 0: any free port (pd_serve_port tells which) */
    const char *api_key;        /* NULL or "": no authentication */
    const char *model_name;     /* the id /v1/models reports (required) */
    size_t max_body;            /* request body bound (0: 8 MiB) */
    uint32_t queue_max;         /* requests waiting beyond the running one (default 8) */
    uint32_t attn_top_n;        /* summary entries per layer (0: 8) */
    struct pd_ctx_params ctx;   /* threads, context (n_ctx 0: the model's default), KV type,
                                 * backend */
    struct pd_chat_format chat; /* template for /v1/chat/completions */
    /* A KV policy for each generation (NULL: full cache); policy_name describes it. */
    struct pd_kv_policy *(*make_policy)(void *ud);
    void *policy_ud;
    const char *policy_name;
    double throttle_ms;         /* pause between generated tokens (demos, tests); 0 */
};

struct pd_serve_params pd_serve_default_params(void);

/* Request counters (for the log and tests). */
struct pd_serve_stats {
    uint64_t requests;
    uint64_t rejected_busy;     /* 429 */
    uint64_t rejected_auth;     /* 401 */
    uint64_t tokens_out;        /* tokens sent (generated and scored) */
};

struct pd_serve;

/* Starts serving m (with tok) on host:port in background threads. Errors: PD_EINVAL for
 * a bad host or params, PD_EIO when the address cannot be bound (naming it). */
enum pd_status pd_serve_open(const struct pd_model *m, const struct pd_tok *tok,
                             const struct pd_serve_params *p, struct pd_serve **out,
                             struct pd_err *err);

/* The port actually bound. */
uint16_t pd_serve_port(const struct pd_serve *s);
/* The context length every request is held to. */
uint32_t pd_serve_n_ctx(const struct pd_serve *s);

void pd_serve_stats(struct pd_serve *s, struct pd_serve_stats *out);

/* Stops accepting, ends the requests in flight, frees everything; NULL-safe; NULLs *s. */
void pd_serve_close(struct pd_serve **s);

/* Constant-time comparison of two NUL-terminated secrets: the time depends on the
 * lengths, not on where they differ. */
bool pd_serve_secret_eq(const char *a, const char *b);

#endif
