/* score.h - teacher-forced scoring of a trace with a model.
 *
 * Three jobs share one evaluation context:
 *   - build: turn a conversation plus a trace's thinking and answer text into token
 *     records (ids, roles, the exact text bytes each token covers) by rendering the
 *     model's chat template and tokenizing the whole sequence in one pass;
 *   - score: run the token ids through the model and fill every token's logprob,
 *     entropy (bits), top-k alternatives and, optionally, an attention summary blob;
 *   - answer checks: the answer's log-probability when some tokens (pruned steps) are
 *     left out, and the greedy continuation from the reasoning, used by prune
 *     verification and by the answer-sensitivity metric.
 * Token i's metrics come from the distribution after tokens [0, i) (teacher forcing), so
 * token 0 has none (NAN). The scorer keeps the ids its KV cache holds and re-evaluates
 * only from the first id that differs, so scoring variants of one trace that share a
 * prefix costs only their differing suffixes.
 *
 * Roles of built tokens (docs/analysis.md, "Scoring imported traces"): the rendered
 * template with the generation prompt is PROMPT; a think opener ponder adds ("<think>\n",
 * when the template does not open the block itself) and the closer "\n</think>" are
 * INJECTED; the thinking text is THINK; "\n\n" plus the answer is ANSWER. A token takes
 * the role of the segment holding its first byte.
 *
 * An external engine (a remote inference server) can stand in for the model: the scorer
 * then asks it for teacher-forced metrics and greedy continuations (pd_scorer_open_engine)
 * and the same build / score / answer / sensitivity functions work unchanged; only what
 * the engine reports is filled (a remote engine's entropy is an estimate, flagged with
 * PD_TOKF_ENTROPY_EST, and its attention comes only from ponder serve).
 *
 * Ownership: the scorer borrows the model and tokenizer (both must outlive it) and owns
 * its context and buffers. Token arrays from pd_score_build are owned by the caller
 * (pd_score_tokens_free). Thread-safety: one thread per scorer. */
#ifndef PD_SCORE_H
#define PD_SCORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "trace.h"
#include "chat.h"
#include "forward.h"
#include "model.h"
#include "tokenizer.h"

#define PD_SCORE_GREEDY_MAX 256

struct pd_score_params {
    struct pd_ctx_params ctx; /* n_ctx 0: min(4096, trained context) */
    uint32_t topk;            /* alternatives per token, <= PD_TOPK_MAX (default 5) */
    bool capture_attn;        /* write attention summary blobs (default true) */
    uint32_t attn_top_n;      /* positions kept per layer, 1..64 (default 8) */
};

/* The defaults listed above. */
struct pd_score_params pd_score_default_params(void);

struct pd_scorer;

/* Opens a scorer over m. tok may be NULL (then greedy decoding does not stop at an
 * end-of-generation token). PD_EINVAL for bad params (topk, attn_top_n, a model with
 * more than 255 layers when capture is on); errors of pd_ctx_open otherwise. */
enum pd_status pd_scorer_open(const struct pd_model *m, const struct pd_tok *tok,
                              const struct pd_score_params *params, struct pd_scorer **out,
                              struct pd_err *err);

/* An evaluator outside the process. Both callbacks run on the scorer's thread. */
struct pd_score_engine {
    /* Teacher-forces ids[0..n) and fills out[1..n) (out[i].id == ids[i] on entry): logprob,
     * entropy (and its flags), top-k (at most topk) and, when attn, the attention blob
     * whose positions are indices into ids. */
    enum pd_status (*teacher)(void *ud, const int32_t *ids, size_t n, uint32_t topk, bool attn,
                              struct pd_token_rec *out, struct pd_err *err);
    /* Greedy continuation of ids[0..n): at most n_max ids into out (*n_out), an
     * end-of-generation token included when it came. */
    enum pd_status (*greedy)(void *ud, const int32_t *ids, size_t n, uint32_t n_max,
                             int32_t *out, size_t *n_out, struct pd_err *err);
    void *ud;               /* borrowed; must outlive the scorer */
    uint32_t n_ctx;         /* longest sequence it takes (0: unknown, not checked) */
    uint32_t n_vocab;       /* ids are checked against it */
};

/* Opens a scorer over an external engine (params: topk, capture_attn; ctx is unused).
 * tok may be NULL. PD_EINVAL for bad params or an engine without callbacks. */
enum pd_status pd_scorer_open_engine(const struct pd_score_engine *e, const struct pd_tok *tok,
                                     const struct pd_score_params *params,
                                     struct pd_scorer **out, struct pd_err *err);

/* Frees *s (NULL and *s == NULL accepted) and sets *s to NULL. */
void pd_scorer_close(struct pd_scorer **s);

/* KV slots of the scorer's context: the longest sequence it can score. */
uint32_t pd_scorer_n_ctx(const struct pd_scorer *s);

/* What pd_score_build turns into tokens. All pointers borrowed for the call. */
struct pd_score_input {
    const struct pd_chat_msg *msgs; /* the conversation before the trace */
    size_t n_msgs;
    bool has_think;                 /* the trace has a thinking block (maybe empty) */
    const char *think;              /* thinking text (no markers), may be NULL if len 0 */
    size_t think_len;
    const char *answer;             /* answer text, may be NULL if len 0 */
    size_t answer_len;
};

/* Builds the token records of a trace for fmt and tok (see the file comment). Positions
 * are 0..n-1, flags PD_TOKF_FORCED, metrics NAN, texts owned by the records. Errors:
 * PD_EINVAL for texts that are not valid UTF-8 (message names the field) and chat render
 * errors; PD_EFORMAT when the tokenizer's pieces cannot be aligned with the text (the
 * message names the token); PD_ENOMEM. On failure *out is NULL and *n_out 0. */
enum pd_status pd_score_build(const struct pd_tok *tok, const struct pd_chat_format *fmt,
                              const struct pd_score_input *in, struct pd_token_rec **out,
                              size_t *n_out, struct pd_err *err);

/* Frees each record's text and blob, then the array; NULL accepted. */
void pd_score_tokens_free(struct pd_token_rec *toks, size_t n);

/* Teacher-forces toks[0..n) (their ids) and fills logprob, entropy, top-k (k from the
 * params) and, when capture is on, the attention blob of every token (token 0: NAN and no
 * top-k; its blob still records its attention). Clears PD_TOKF_NO_METRICS. Blob
 * positions are the tokens' own pos values. Errors: PD_EINVAL when a token has no id or
 * one out of the vocabulary (naming its position) or the trace does not fit the context;
 * PD_ENOMEM; errors of the forward pass. On error the records may be partly filled. */
enum pd_status pd_score_trace(struct pd_scorer *s, struct pd_token_rec *toks, size_t n,
                              struct pd_err *err);

/* The answer of a trace under a subset of its tokens. */
struct pd_score_answer {
    size_t i_answer;          /* index in toks of the first kept ANSWER token (n if none) */
    size_t n_answer;          /* kept ANSWER tokens whose logprob was summed */
    double logprob;           /* sum of ln p(answer token | kept tokens before it), nats */
    size_t n_greedy;          /* greedy tokens produced (<= requested) */
    int32_t greedy[PD_SCORE_GREEDY_MAX]; /* greedy ids from the kept prefix before i_answer */
};

/* Scores the ANSWER tokens of toks[0..n) with the tokens i where drop[i] != 0 left out
 * (drop may be NULL: nothing dropped; dropped ANSWER tokens are not summed), then decodes
 * n_greedy (<= PD_SCORE_GREEDY_MAX) tokens greedily from the kept tokens before the first
 * kept ANSWER token, stopping after an end-of-generation token. The kept tokens take
 * contiguous positions 0.. (the sequence is re-encoded, not cached with gaps). PD_EINVAL
 * when no kept ANSWER token has a kept token before it, a token has no id, or the kept
 * sequence plus n_greedy does not fit the context. */
enum pd_status pd_score_answer(struct pd_scorer *s, const struct pd_token_rec *toks, size_t n,
                               const uint8_t *drop, uint32_t n_greedy,
                               struct pd_score_answer *out, struct pd_err *err);

/* Answer sensitivity of each step: out[j] = logprob(answer | all tokens) -
 * logprob(answer | all tokens but step j's), nats (positive: removing the step makes the
 * answer less likely). steps must be in order and non-overlapping (their spans are read
 * from toks by position); a step with no tokens gets 0. *lp_full (may be NULL) receives
 * the full-trace answer logprob. Errors as pd_score_answer. */
enum pd_status pd_score_sensitivity(struct pd_scorer *s, const struct pd_token_rec *toks,
                                    size_t n, const struct pd_step_rec *steps, size_t n_steps,
                                    double *out, double *lp_full, struct pd_err *err);

#endif
