/* sampler.h - choosing the next token: greedy, temperature, top-k, top-p, min-p, seed.
 *
 * Order of operations: top-k, then softmax at temperature T, then top-p (smallest set
 * with cumulative probability >= p), then min-p (drop tokens below min_p times the top
 * probability), renormalise, draw with the seeded generator. temperature <= 0 is greedy
 * (argmax, lowest id on ties). The same seed and inputs give the same tokens. No step
 * sorts the vocabulary: top-k keeps a heap of the k best, top-p / min-p sort only the
 * tokens above a probability threshold that is lowered until it holds the set, and with
 * no filter the draw walks the vocabulary in id order.
 *
 * Ownership: the sampler owns a scratch array sized for the vocabulary.
 * Thread-safety: one thread per sampler. */
#ifndef PD_SAMPLER_H
#define PD_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

struct pd_sampler_params {
    float temperature; /* <= 0: greedy */
    int32_t top_k;     /* <= 0: off */
    float top_p;       /* >= 1: off */
    float min_p;       /* <= 0: off */
    uint64_t seed;
};

struct pd_sampler_params pd_sampler_default_params(void);

struct pd_sampler;

enum pd_status pd_sampler_open(const struct pd_sampler_params *p, size_t n_vocab,
                               struct pd_sampler **out, struct pd_err *err);
void pd_sampler_close(struct pd_sampler **s);

/* Picks a token from logits[n_vocab] (not modified). */
int32_t pd_sampler_sample(struct pd_sampler *s, const float *logits);

/* True when s always picks the argmax (temperature <= 0): no draw, no randomness, so a
 * backend that knows the argmax need not hand over the logits. */
bool pd_sampler_greedy(const struct pd_sampler *s);

/* Index of the largest logit (lowest index on ties). */
int32_t pd_argmax(const float *logits, size_t n);

#endif
