/* remote_session.h - a live generation streamed from a remote engine, with the events and
 * commands of a local session (engine/session.h), so the workbench and `generate` drive
 * either kind the same way.
 *
 * DESIGN
 * Threads.  pd_rsession_start spawns one worker that owns the client (remote.h) and the
 *   sequence. Events go out through a mutex-protected, bounded FIFO with a self-pipe (a
 *   consumer that stops reading stops the worker, and so the transfer), commands come in
 *   through a second FIFO, as in session.h; pd_rsession_send also cancels the
 *   request in flight so a command takes effect at once, not at the next token. Signals
 *   are blocked in the worker.
 * Requests.  The worker keeps the whole token sequence. The prompt is scored teacher-forced
 *   first (its tokens get log-probabilities and top-k like a local prefill; not on
 *   llama-server, whose scoring re-decodes the whole sequence one token at a time after
 *   every edit, so there they have none), then a streaming request generates from the
 *   sequence. Pause cancels the stream; resume, inject, answer-now, a branch (steer by
 *   alternative), a re-encoding prune and the thinking controller's injections each end
 *   the stream and send a new request whose prompt is the edited sequence (servers cache
 *   the shared prefix). Injected tokens are scored teacher-forced when the server can.
 *   Each new request uses the next seed (seed + request number) so a resumed sampling
 *   does not repeat itself.
 * What a remote engine does not give.  Entropy is estimated from the top-k (records carry
 *   PD_TOKF_ENTROPY_EST; ponder serve sends the exact value). Attention summaries come
 *   only from ponder serve (params.attn). KV policies, budgets, shadow divergence and
 *   attention recomputation are refused with a PD_EV_MODE message saying a remote engine
 *   does not expose them; a cache-only prune is done by re-encoding.
 * Failures.  A stream cut off, a server error or a timeout ends the session with
 *   PD_EV_ERROR after the tokens that arrived (they were already sent as events); nothing
 *   already recorded is lost.
 * Spans.  Every request is a span of the sequence produced with one engine, model and set
 *   of settings; pd_rsession_spans lists them for the recording.
 *
 * Ownership: pd_rsession_open takes the client (closed with the session, also on
 * failure); the tokenizer is borrowed (NULL: the server's /tokenize encodes and the
 * server's text is each token's text). Events are the caller's (pd_event_free).
 * Thread-safety: public functions from one caller thread. */
#ifndef PD_REMOTE_SESSION_H
#define PD_REMOTE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "chat.h"
#include "modes.h"
#include "sampler.h"
#include "session.h"
#include "tokenizer.h"
#include "remote.h"

struct pd_rsession_params {
    struct pd_sampler_params sampling;
    uint32_t n_predict;          /* tokens to generate (0: until the end or the context) */
    uint32_t topk;               /* alternatives per token (<= PD_TOPK_MAX), default 5 */
    struct pd_chat_format chat;  /* template; RAW uses the prompt as is */
    enum pd_think_mode mode;
    uint32_t think_budget;       /* SHORT */
    uint32_t min_think;          /* LONG */
    struct pd_step_observer steps; /* feed == NULL: none */
    bool attn;                   /* ponder serve: attention summaries per token */
    bool score_prompt;           /* teacher-force the prompt for its metrics (default true) */
    double throttle_ms;          /* pause between tokens (tests, demos) */
    bool keep_alive;             /* as a local session's (session.h): an end parks the worker
                                  * (PD_EV_FINISHED), PD_CMD_CONTINUE, an injection, a branch
                                  * or answer-now start a new leg (PD_EV_RESUMED "continue")
                                  * with its own n_predict; only stop ends it */
};

struct pd_rsession_params pd_rsession_default_params(void);

/* One request's span of the sequence: positions [pos_begin, pos_end) came from it. */
struct pd_rsession_span {
    int64_t pos_begin;
    int64_t pos_end;
    uint64_t seed;
    uint32_t request;            /* 1, 2, ... */
    struct pd_sampler_params sampling; /* the request's settings (seed included) */
};

struct pd_rsession;

/* Takes r (closed on failure too). */
enum pd_status pd_rsession_open(struct pd_remote *r, const struct pd_tok *tok,
                                const struct pd_rsession_params *p, struct pd_rsession **out,
                                struct pd_err *err);

/* Renders the user prompt with the chat template and the mode's prefill (RAW: as is),
 * encodes it (locally, or with the server's tokenizer) and starts the worker. */
enum pd_status pd_rsession_start(struct pd_rsession *s, const char *system, const char *prompt,
                                 struct pd_err *err);
/* Starts from explicit prompt tokens. */
enum pd_status pd_rsession_start_tokens(struct pd_rsession *s, const int32_t *tokens, size_t n,
                                        struct pd_err *err);

bool pd_rsession_poll(struct pd_rsession *s, struct pd_event *ev);
bool pd_rsession_wait(struct pd_rsession *s, struct pd_event *ev, int timeout_ms);
int pd_rsession_fd(const struct pd_rsession *s);
/* Queues a command (copied; a SET_POLICY's policy is closed: remote engines have none)
 * and ends the request in flight so the worker sees it. PD_EINVAL when not running. */
enum pd_status pd_rsession_send(struct pd_rsession *s, const struct pd_cmd *cmd,
                                struct pd_err *err);
bool pd_rsession_running(const struct pd_rsession *s);

/* The spans of the requests that ended so far (copied into out, at most cap; returns how
 * many there are); a request in flight is listed once it ends. */
size_t pd_rsession_spans(struct pd_rsession *s, struct pd_rsession_span *out, size_t cap);

/* The client's description (server kind, model, base URL). */
const struct pd_remote_info *pd_rsession_info(const struct pd_rsession *s);

/* Stops the worker, joins it, frees everything (the client too); NULL-safe. */
void pd_rsession_close(struct pd_rsession **s);

#endif
