/* remote_proto.h - the wire formats of the inference servers ponder talks to: building
 * request bodies and turning response bodies (whole, or one server-sent event of a
 * stream) into ponder's token records.
 *
 * Three request/response shapes cover the servers (docs/remote.md cites each field):
 *   openai    POST /v1/completions as vLLM serves it, with its extensions
 *             `return_tokens_as_token_ids` (tokens come back as "token_id:N", so
 *             alternatives keep their ids) and `echo` + `max_tokens: 0` + `logprobs`
 *             (teacher-forced scoring of the prompt); ponder serve speaks the same and
 *             adds a `ponder` object per choice (exact entropy, attention summary, KV
 *             events). Used for vLLM, ponder and other OpenAI-compatible servers.
 *   llamacpp  POST /completion (llama-server's own endpoint): `n_probs` returns every
 *             token with its id, bytes and top alternatives. It has no prompt
 *             log-probabilities, so scoring generates the tokens after the first, forced
 *             by a grammar of token ids (`root ::= <[id]> <[id]> ...`).
 *   sglang    POST /generate (SGLang's native endpoint): `return_logprob`,
 *             `top_logprobs_num`, `logprob_start_len` (0: the prompt too),
 *             `return_text_in_logprobs`; log-probabilities come as [logprob, id, text]
 *             triples.
 * Every response is untrusted: types, counts and ids are checked and a mismatch is a
 * PD_EFORMAT naming the field. A server that reports top alternatives without ids (plain
 * OpenAI text keys) gives records with n_top 0 rather than guessed ids.
 *
 * Entropy. A server reports at most k alternatives, not the distribution, so the entropy
 * of a remote token is estimated: the known probabilities (the top-k, and the chosen
 * token when it is not among them) each contribute -p log2 p and the remaining mass r
 * counts as one bucket (-r log2 r). The estimate is a lower bound of the true entropy;
 * records carrying it have PD_TOKF_ENTROPY_EST set. ponder serve sends the exact value.
 *
 * Ownership: request bodies are appended to caller-owned buffers; token records handed
 * to callbacks own their text and attention blob, and the callback may take them (set
 * the pointers to NULL). Pure functions apart from their outputs; thread-safe. */
#ifndef PD_REMOTE_PROTO_H
#define PD_REMOTE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"
#include "status.h"
#include "trace.h"

/* The servers ponder knows; each maps to one of the three shapes above. */
enum pd_remote_server {
    PD_REMOTE_PONDER,    /* ponder serve: openai shape + the ponder extension */
    PD_REMOTE_VLLM,      /* openai shape */
    PD_REMOTE_SGLANG,    /* sglang shape */
    PD_REMOTE_LLAMACPP,  /* llamacpp shape */
    PD_REMOTE_OPENAI,    /* another OpenAI-compatible server: openai shape */
    PD_REMOTE_SERVER_COUNT
};

/* "ponder", "vllm", "sglang", "llama.cpp", "openai"; "?" out of range. */
const char *pd_remote_server_name(enum pd_remote_server s);
/* Parses those names (also "llama-server", "llamacpp"); PD_EINVAL listing them. */
enum pd_status pd_remote_server_parse(const char *s, enum pd_remote_server *out,
                                      struct pd_err *err);
/* The server kind an /v1/models entry's owned_by names ("vllm", "sglang", "llamacpp",
 * "ponder"); PD_REMOTE_OPENAI for anything else. */
enum pd_remote_server pd_remote_server_from_owner(const char *owned_by);

/* What a generation request asks for. */
struct pd_rproto_gen {
    const char *model;        /* borrowed; NULL: not sent */
    const int32_t *prompt;    /* borrowed [n_prompt] token ids */
    size_t n_prompt;
    uint32_t max_tokens;      /* >= 1 */
    float temperature;        /* <= 0: greedy */
    int32_t top_k;            /* <= 0: off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off */
    uint64_t seed;
    bool has_seed;
    uint32_t topk;            /* alternatives per token (0..PD_TOPK_MAX); log-probabilities
                               * are always asked for: they carry the token ids */
    bool stream;
    bool ponder_attn;         /* ponder serve: attention summaries in the extension */
};

/* Appends the JSON body of a generation request to out and sets *path to the endpoint
 * ("/v1/completions", "/completion", "/generate"). PD_ENOMEM. */
enum pd_status pd_rproto_gen_request(enum pd_remote_server s, const struct pd_rproto_gen *g,
                                     struct pd_buf *out, const char **path,
                                     struct pd_err *err);

/* Appends the body of a teacher-forced scoring request over ids[0..n): the prompt's
 * log-probabilities with topk alternatives each and nothing generated (sglang: one token
 * generated and ignored; llama.cpp: prompt ids[0] and ids[1..n) generated under a grammar
 * that allows only them, so n must be >= 2, else PD_EINVAL). PD_ENOMEM. */
enum pd_status pd_rproto_score_request(enum pd_remote_server s, const char *model,
                                       const int32_t *ids, size_t n, uint32_t topk,
                                       bool ponder_attn, struct pd_buf *out, const char **path,
                                       struct pd_err *err);

/* Receives one token, its record owned by the callee for the call (see the file
 * comment). pos is not set; role and flags are 0 apart from PD_TOKF_ENTROPY_EST. */
typedef enum pd_status (*pd_rproto_token_fn)(void *ud, struct pd_token_rec *tok,
                                             struct pd_err *err);
/* Receives one KV event of a ponder server. */
typedef void (*pd_rproto_kv_fn)(void *ud, const struct pd_kv_event_rec *ev);

/* State of one generation response being parsed (streamed or whole). */
struct pd_rproto_stream {
    enum pd_remote_server server;
    uint32_t topk;
    uint64_t n_tokens;        /* tokens delivered so far */
    bool done;                /* the server said the generation ended */
    bool got_done_marker;     /* "[DONE]" arrived (openai shape) */
    char finish[24];          /* "stop", "length", "eos", "abort", ... ("" until done) */
    pd_rproto_token_fn on_token;
    pd_rproto_kv_fn on_kv;    /* NULL: KV events dropped */
    void *ud;
};

void pd_rproto_stream_init(struct pd_rproto_stream *st, enum pd_remote_server s,
                           uint32_t topk, pd_rproto_token_fn on_token, pd_rproto_kv_fn on_kv,
                           void *ud);

/* Parses one JSON document: a stream event's data ("[DONE]" accepted) or a whole
 * non-streaming response. Tokens go to on_token in order. Errors: PD_EFORMAT for
 * malformed JSON or fields of the wrong type (naming them), PD_EIO with the server's
 * message for an error object inside a 200 stream, what on_token returned. */
enum pd_status pd_rproto_stream_data(struct pd_rproto_stream *st, const char *data, size_t len,
                                     struct pd_err *err);

/* Parses a scoring response for ids[0..n) into out[0..n): out[i].id must match ids[i]
 * (the server saw the same tokens), logprob / top-k / entropy (estimated, or exact from
 * a ponder server) / attention blob of positions 1..n-1 are filled; out[0] keeps NAN.
 * out[] must be zeroed or hold records whose text/attn it may replace (attn is freed
 * first). PD_EFORMAT on a malformed body or a token mismatch (naming the position), and
 * for llama.cpp when other than n-1 generated tokens came back. */
enum pd_status pd_rproto_score_response(enum pd_remote_server s, const char *body, size_t len,
                                        const int32_t *ids, size_t n, uint32_t topk,
                                        struct pd_token_rec *out, struct pd_err *err);

/* Writes the message of a JSON error body (the shapes of vLLM, SGLang, llama-server,
 * FastAPI validation errors and OpenAI) into out, or a printable prefix of a body that
 * is not JSON; "" for an empty body. Control bytes are replaced. */
void pd_rproto_error_message(const char *body, size_t len, char *out, size_t cap);

/* What GET /v1/models says. */
struct pd_rproto_models {
    char model[256];          /* the first model's id (or the one matching `want`) */
    char owned_by[64];
    uint32_t max_model_len;   /* 0: not reported */
    bool found;               /* `want` (or any model when want is NULL) is listed */
    size_t n_models;
};

/* Parses a /v1/models body; want NULL picks the first model. PD_EFORMAT when it is not
 * an OpenAI list. */
enum pd_status pd_rproto_models_parse(const char *body, size_t len, const char *want,
                                      struct pd_rproto_models *out, struct pd_err *err);

/* Parses a tokenize response ({"tokens": [ids]} of vLLM, SGLang, llama-server without
 * pieces, ponder) into a malloc'd array. PD_EFORMAT otherwise. */
enum pd_status pd_rproto_tokens_parse(const char *body, size_t len, int32_t **ids, size_t *n,
                                      struct pd_err *err);

/* Parses a detokenize response: {"prompt": text} (vLLM, ponder), {"content": text}
 * (llama-server) or {"text": text}; *text malloc'd. PD_EFORMAT otherwise. */
enum pd_status pd_rproto_text_parse(const char *body, size_t len, char **text,
                                    struct pd_err *err);

/* Sets r->entropy to the estimate of the file comment and PD_TOKF_ENTROPY_EST; NAN (flag
 * clear) when r->logprob is NAN. */
void pd_rproto_entropy_estimate(struct pd_token_rec *r);

/* Base64 (RFC 4648, with padding) for the attention blobs of the ponder extension. */
bool pd_base64_encode(struct pd_buf *out, const uint8_t *p, size_t n);
/* Decodes s[0..len) into a malloc'd buffer; false on bad input or allocation failure. */
bool pd_base64_decode(const char *s, size_t len, uint8_t **out, size_t *n_out);

#endif
