/* remote.h - a client of one inference server: vLLM, SGLang, llama-server, ponder serve
 * or another OpenAI-compatible engine, reached over HTTP.
 *
 * What it does for ponder: generate from token ids with per-token log-probabilities and
 * top-k alternatives (streamed), score a token sequence teacher-forced (the prompt's
 * log-probabilities), decode greedily, tokenize, and check that the server's tokenizer
 * agrees with the local one. ponder always sends token ids, never text, so the server
 * evaluates exactly the sequence ponder built with its own chat template; the server's
 * vocabulary must therefore be the local one, which pd_remote_check_tokenizer probes.
 *
 * Failures: a server that is down or refuses, an HTTP error status (the message of its
 * JSON error body is shown), malformed or truncated JSON, a stream cut off, a timeout.
 * Requests other than streams are retried on 429, 5xx, timeouts and connection failures
 * as params.retries says, with exponential backoff and jitter; a stream is retried only
 * before its first token. pd_remote_cancel (any thread) ends a request in flight
 * promptly.
 *
 * Ownership: pd_remote_open returns an owned client (pd_remote_close); parameters are
 * copied. Token records passed to callbacks follow remote_proto.h. Thread-safety: one
 * thread uses a client (bulk work opens one per worker); pd_remote_cancel and
 * pd_remote_uncancel may be called from any thread. */
#ifndef PD_REMOTE_H
#define PD_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "trace.h"
#include "sampler.h"
#include "tokenizer.h"
#include "remote_proto.h"

struct pd_remote_params {
    const char *url;          /* base URL: "http://host:8000" ("/v1" at the end is fine) */
    const char *api_key;      /* NULL: none (the caller reads PONDER_API_KEY) */
    const char *model;        /* NULL: the server's first model */
    enum pd_remote_server server; /* PD_REMOTE_SERVER_COUNT: detect from /v1/models */
    long connect_timeout_ms;  /* 0: 10 s */
    long timeout_ms;          /* a whole non-streaming request (0: 600 s) */
    long idle_timeout_ms;     /* a stream silent this long is cut (0: 120 s) */
    uint32_t retries;         /* extra attempts for transient failures (default 0) */
    uint32_t backoff_ms;      /* first wait before a retry (0: 500 ms); doubles, <= 30 s */
};

struct pd_remote_params pd_remote_default_params(void);

struct pd_remote_info {
    enum pd_remote_server server;
    char base[512];           /* the base URL without a trailing "/" or "/v1" */
    char model[256];          /* the served model's name */
    uint32_t max_model_len;   /* 0: not reported */
};

struct pd_remote;

/* Connects to the server: GET /v1/models (a ponder, vLLM, SGLang or llama-server answers
 * it) names the model and, unless params->server says, the kind of server. Errors:
 * PD_EINVAL for a URL that is not http(s) or a model the server does not list (naming
 * the ones it has); PD_EIO for a server that cannot be reached or answers with an error
 * (with its message). */
enum pd_status pd_remote_open(const struct pd_remote_params *params, struct pd_remote **out,
                              struct pd_err *err);

/* Frees *r (NULL accepted) and sets it to NULL. */
void pd_remote_close(struct pd_remote **r);

const struct pd_remote_info *pd_remote_info(const struct pd_remote *r);

/* Ends the request in flight and fails the next ones until pd_remote_uncancel. */
void pd_remote_cancel(struct pd_remote *r);
void pd_remote_uncancel(struct pd_remote *r);

/* Transient failures retried so far (bulk summaries report them). */
uint64_t pd_remote_retries(const struct pd_remote *r);

/* One generation request. */
struct pd_remote_gen {
    const int32_t *prompt;    /* borrowed [n_prompt] */
    size_t n_prompt;
    uint32_t max_tokens;      /* >= 1 */
    struct pd_sampler_params sampling;
    uint32_t topk;            /* alternatives per token, <= PD_TOPK_MAX */
    bool stream;              /* tokens arrive as the server makes them */
    bool attn;                /* ponder serve: attention summaries */
};

struct pd_remote_gen_result {
    uint64_t n_tokens;        /* tokens delivered to on_token */
    bool done;                /* the server ended the generation (finish is set) */
    char finish[24];          /* the server's reason: "stop", "length", "eos", ... */
    double seconds;
};

/* Generates from g->prompt; each token goes to on_token in order (KV events of a ponder
 * server to on_kv, which may be NULL). Errors: those of the file comment, PD_EFORMAT for
 * a response that ends before the server said the generation ended ("cut off after N
 * tokens": the N tokens were delivered), PD_ECANCELLED, what on_token returned. res is
 * filled on success and failure. */
enum pd_status pd_remote_generate(struct pd_remote *r, const struct pd_remote_gen *g,
                                  pd_rproto_token_fn on_token, pd_rproto_kv_fn on_kv,
                                  void *ud, struct pd_remote_gen_result *res,
                                  struct pd_err *err);

/* Teacher-forces ids[0..n) (n >= 1) and fills out[1..n) with logprob, top-k (topk),
 * entropy (estimated, or exact from a ponder server) and, with attn on a ponder server,
 * attention blobs (out[0] keeps NAN). out[i].id must equal ids[i]; other fields are
 * kept. llama-server has no prompt log-probabilities: it generates ids[1..n) forced by a
 * grammar of token ids, one decoding step per token (pd_rproto_score_request). */
enum pd_status pd_remote_score(struct pd_remote *r, const int32_t *ids, size_t n,
                               uint32_t topk, bool attn, struct pd_token_rec *out,
                               struct pd_err *err);

/* Greedy continuation of ids[0..n): at most n_max ids into out, *n_out of them (the
 * server stops at its end-of-generation tokens, which are included). */
enum pd_status pd_remote_greedy(struct pd_remote *r, const int32_t *ids, size_t n,
                                uint32_t n_max, int32_t *out, size_t *n_out,
                                struct pd_err *err);

/* The server's tokenization of text (no BOS added, special-token text recognised).
 * *ids malloc'd (free()). PD_EUNSUPPORTED when the server has no tokenize endpoint. */
enum pd_status pd_remote_tokenize(struct pd_remote *r, const char *text, int32_t **ids,
                                  size_t *n, struct pd_err *err);

/* The server's text for ids[0..n) (*text malloc'd, NUL-terminated). PD_EUNSUPPORTED when
 * the server has no detokenize endpoint. */
enum pd_status pd_remote_detokenize(struct pd_remote *r, const int32_t *ids, size_t n,
                                    char **text, struct pd_err *err);

/* Tokenizes a probe text (plain words, digits, punctuation, non-ASCII letters, blank
 * lines and the thinking markers the vocabulary has) both locally and on the server;
 * PD_EFORMAT naming the first differing token when they disagree ("the server's
 * tokenizer disagrees with the local model"). A server without a tokenize endpoint
 * cannot be checked: PD_OK with *checked false. */
enum pd_status pd_remote_check_tokenizer(struct pd_remote *r, const struct pd_tok *tok,
                                         bool *checked, struct pd_err *err);

/* Parses a base URL into the normalised form of pd_remote_info.base; PD_EINVAL for
 * anything but http:// or https:// URLs. */
enum pd_status pd_remote_base_url(const char *url, char *out, size_t cap, struct pd_err *err);

#endif
