/* session.h - a live generation session: a worker thread runs prefill and decode, the
 * caller (TUI, headless CLI, tests) receives events and sends commands.
 *
 * DESIGN
 * Threads.  pd_session_start spawns one worker that owns every engine object of the
 *   session (context, KV cache, sampler, policy, capture buffers). The caller's thread
 *   never touches them. Events go out through a mutex-protected FIFO; each push also
 *   writes one byte to a self-pipe whose read end (pd_session_fd) the caller can poll().
 *   The FIFO is bounded (1024 events, 32 MiB of text, blobs and rows): when it is full
 *   the worker waits for the caller to take events (backpressure), so a caller that
 *   stops reading costs no memory; stop and close end the wait.
 *   Commands come in through a second mutex-protected FIFO that the worker drains between
 *   tokens, so a command never lands in the middle of a forward pass and never corrupts
 *   the cache. Pause blocks the worker on a condition variable (no busy wait); stop and
 *   close set an atomic flag the forward pass also checks between layers, so both answer
 *   within one token's time. Signals are blocked in the worker.
 * Roles.  Prompt tokens are PD_ROLE_PROMPT. Generated tokens are PD_ROLE_THINK while the
 *   thinking span is open (the chat template opened it, or the model emitted the family's
 *   open marker, or the family has no markers: then the whole completion counts as
 *   thinking until the close marker text is produced or injected) and PD_ROLE_ANSWER after
 *   it closes; the token that carries a generated open marker and the one that carries the
 *   close marker are PD_ROLE_THINK (the markers bound the span). Tokens a command or mode
 *   controller inserts are PD_ROLE_INJECTED.
 * Positions.  Every token has a position; positions only grow, except after a branch
 *   (which rewinds to the fork position) and a re-encoding prune (which renumbers the
 *   pruned sequence). Evicted or pruned slots keep the original positions of the rest.
 *
 * Ownership: the session borrows the model and tokenizer (both must outlive it) and takes
 * ownership of the KV policy passed in params (even on failure). Events returned by
 * pd_session_poll are owned by the caller and released with pd_event_free.
 * Thread-safety: every public function may be called from any one caller thread; the
 * worker is internal. */
#ifndef PD_SESSION_H
#define PD_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "trace.h"
#include "capture.h"
#include "chat.h"
#include "forward.h"
#include "kvpolicy.h"
#include "model.h"
#include "modes.h"
#include "sampler.h"
#include "tokenizer.h"

/* Optional step segmentation attached by the caller (analysis implements it): fed every
 * token in order on the worker thread; returns true when a new step begins at this token
 * and stores its first position. Borrowed; must stay valid while the session runs. */
struct pd_step_observer {
    bool (*feed)(void *ud, const struct pd_token_rec *tok, int64_t *step_begin);
    void (*reset)(void *ud, int64_t pos); /* forget tokens at positions >= pos (branch) */
    void *ud;
};

struct pd_session_params {
    struct pd_ctx_params ctx;
    struct pd_sampler_params sampling;
    uint32_t n_predict;          /* tokens to generate (0 = until end of generation);
                                  * text the user injects extends the leg by its length */
    uint32_t topk;               /* alternatives per token (<= PD_TOPK_MAX), default 5 */
    enum pd_capture_level capture; /* default summary */
    uint32_t summary_top_n;      /* positions kept per layer in the summary, default 8 */
    uint64_t full_layers;        /* bit mask of layers captured in full (0 = all) */
    struct pd_chat_format chat;  /* template; family RAW renders the prompt as is */
    enum pd_think_mode mode;     /* decided by the controller in modes.h, with the texts
                                  * of chat.family */
    uint32_t think_budget;       /* SHORT: max thinking tokens */
    uint32_t min_think;          /* LONG: an earlier end of thinking becomes "Wait" */
    struct pd_kv_policy *policy; /* owned (taken); NULL = full cache */
    struct pd_step_observer steps; /* feed == NULL: none */
    double throttle_ms;          /* sleep between tokens (demos, tests); default 0 */
    bool keep_alive;             /* the end of a generation (eog, length, context) parks
                                  * the worker instead of ending it: PD_EV_FINISHED comes
                                  * as usual, then PD_CMD_CONTINUE, an injection, a branch
                                  * or answer-now start a new leg (PD_EV_RESUMED "continue")
                                  * with its own n_predict; only stop ends the worker */
    bool no_history;             /* keep only the newest token ids and thinking states, not
                                  * every position's: memory stays flat however long the
                                  * generation runs (headless), and branch, prune,
                                  * attention recompute and re-opening a trace are refused */
    uint32_t no_history_keep;    /* with no_history: ids kept before the older half is
                                  * dropped (0: 4096; tests use a few) */
};

struct pd_session_params pd_session_default_params(void);

enum pd_event_kind {
    PD_EV_TOKEN,      /* tok holds the token with its probe */
    PD_EV_STEP,       /* a step begins at pos */
    PD_EV_EVICT,      /* kv holds one eviction (enforced or shadow) */
    PD_EV_MODE,       /* mode / budget changed (text says how) */
    PD_EV_PAUSED,
    PD_EV_RESUMED,
    PD_EV_BRANCHED,   /* the trace continues from pos as a new branch (parent kept) */
    PD_EV_PRUNED,     /* pos..pos_end dropped (text: "cache" or "reencode") */
    PD_EV_DIVERGENCE, /* shadow divergence: kl_bits, top1_agree */
    PD_EV_ATTN,       /* recomputed full attention rows of the token at pos (rows) */
    PD_EV_FINISHED,   /* text: "eog", "length", "stopped", "context"; with keep_alive
                       * also "loaded" (pd_session_start_history re-encoded the trace) */
    PD_EV_ERROR,      /* text: the message; the worker has stopped */
    PD_EV_PROGRESS,   /* prompt encoding: pos of pos_end tokens done, at rate tok/s */
    PD_EV_KIND_COUNT
};

enum pd_cmd_kind {
    PD_CMD_PAUSE,
    PD_CMD_RESUME,
    PD_CMD_STOP,
    PD_CMD_INJECT,        /* text: inserted at the current position as PD_ROLE_INJECTED */
    PD_CMD_ANSWER_NOW,    /* close the thinking span now and let the model answer */
    PD_CMD_SET_MODE,      /* mode, budget */
    PD_CMD_SET_BUDGET,    /* KV policy budget in slots (budget) */
    PD_CMD_SET_POLICY,    /* replace the KV policy with `policy` (NULL: full cache); the new
                           * policy starts without history: it has not seen the attention
                           * of earlier tokens, and in shadow mode nothing counts as
                           * evicted yet */
    PD_CMD_BRANCH,        /* pos; token >= 0: use this token at pos instead (steer) */
    PD_CMD_PRUNE,         /* pos..pos_end dropped; reencode chooses the variant */
    PD_CMD_DIVERGENCE,    /* measure shadow divergence at the current step */
    PD_CMD_ATTN,          /* recompute all heads' attention rows of the token at pos, by
                           * re-running its prefix with a full cache (PD_EV_ATTN) */
    PD_CMD_CONTINUE,      /* keep_alive, after the end: generate budget more tokens (0: the
                           * session's n_predict); while paused: resume */
    PD_CMD_SET_SAMPLING,  /* sampling: what is sampled from now on (also in branches) */
    PD_CMD_NEW_TURN,      /* text: another user turn, rendered by the caller with
                           * pd_chat_render_turn; thinking may open again after it */
    PD_CMD_KIND_COUNT
};

struct pd_event {
    enum pd_event_kind kind;
    int64_t pos;
    int64_t pos_end;
    struct pd_token_rec tok;      /* PD_EV_TOKEN: owned text/attn */
    struct pd_kv_event_rec kv;    /* PD_EV_EVICT */
    struct pd_attn_rows *rows;    /* PD_EV_TOKEN with capture full, PD_EV_ATTN: owned */
    double kl_bits;               /* PD_EV_DIVERGENCE */
    bool top1_agree;
    double tok_per_s;             /* decode speed so far */
    double rate;                  /* PD_EV_PROGRESS: prompt tokens per second */
    uint32_t kv_used;             /* slots in the fullest layer */
    uint32_t kv_cap;
    bool refused;                 /* PD_EV_MODE: a command was refused; text says why */
    enum pd_cmd_kind refused_cmd; /* which kind of command (when refused) */
    char text[256];
};

/* Frees the event's owned parts (token text, blob, rows); the struct itself is the
 * caller's. */
void pd_event_free(struct pd_event *ev);


struct pd_cmd {
    enum pd_cmd_kind kind;
    int64_t pos;
    int64_t pos_end;
    int32_t token;
    enum pd_think_mode mode;
    uint32_t budget;
    bool reencode;
    bool close_thinking;         /* PD_CMD_SET_MODE to none: end an open thinking span (an
                                  * explicit choice; cycling through none does not) */
    struct pd_kv_policy *policy; /* PD_CMD_SET_POLICY: ownership passes to the session when
                                  * pd_session_send returns PD_OK */
    struct pd_sampler_params sampling; /* PD_CMD_SET_SAMPLING */
    char text[1024];
};

struct pd_session;

/* Creates a session over a loaded model and tokenizer. Takes ownership of params->policy.
 * The worker does not run until pd_session_start. */
enum pd_status pd_session_open(const struct pd_model *m, const struct pd_tok *tok,
                               const struct pd_session_params *params,
                               struct pd_session **out, struct pd_err *err);

/* Re-opens a saved trace: the worker encodes ids[0..n) without emitting their tokens (a
 * PD_EV_PROGRESS stream instead), restores the thinking state each token had from roles
 * (enum pd_role per token), and parks as after an end (PD_EV_FINISHED "loaded"; the
 * session must have keep_alive). Branching at any position, continuing and every other
 * command then work as in a session that generated the trace. */
enum pd_status pd_session_start_history(struct pd_session *s, const int32_t *ids,
                                        const uint8_t *roles, size_t n, struct pd_err *err);
/* Renders the user prompt with the chat template (family RAW: used as is) and starts the
 * worker. system may be NULL. */
enum pd_status pd_session_start(struct pd_session *s, const char *system, const char *prompt,
                                struct pd_err *err);

/* Starts the worker from explicit prompt tokens (no template). */
enum pd_status pd_session_start_tokens(struct pd_session *s, const int32_t *tokens, size_t n,
                                       struct pd_err *err);

/* Takes the next event if there is one (non-blocking). Returns false when empty. */
bool pd_session_poll(struct pd_session *s, struct pd_event *ev);

/* Events waiting in the queue and the bytes they hold (for tests and status). */
void pd_session_queued(struct pd_session *s, size_t *n_events, size_t *bytes);

/* Waits up to timeout_ms (-1 = forever) for the next event. */
bool pd_session_wait(struct pd_session *s, struct pd_event *ev, int timeout_ms);

/* Read end of the wake pipe: readable when events are queued. Drained by poll/wait. */
int pd_session_fd(const struct pd_session *s);

/* Queues a command for the worker (copies it). PD_EINVAL when the session is not
 * running. */
enum pd_status pd_session_send(struct pd_session *s, const struct pd_cmd *cmd,
                               struct pd_err *err);

/* True while the worker thread runs (paused counts as running). */
bool pd_session_running(const struct pd_session *s);

/* Stops the worker (if running), joins it, frees everything; NULL-safe; NULLs *s. */
void pd_session_close(struct pd_session **s);

#endif
