/* problems.h - the reasoner's problems: arithmetic with checkable answers and the step by
 * step traces a tiny model is trained on (samples/reasoner, docs/reasoner.md).
 *
 * A problem is drawn from a seeded random stream (struct rz_rng: splitmix64, the same
 * numbers on every machine), so a seed fixes the whole data set. Each problem carries its
 * question, its reference answer (a number, as text) and three thinking texts:
 *   long   one step per paragraph: columns with their carries or borrows and the result
 *          so far, partial products, the rearranged equation; a final self-check
 *          ("Wait, let me check ..."); optionally one wrong step followed by its
 *          correction ("Wait, that is not right. ...");
 *   short  one concise paragraph (selected by the user turn ending in " /short");
 *   none   no thinking at all (Qwen3's "/no_think" switch, or the template's
 *          thinking-off branch).
 * The answer sentence after the thinking ends with the answer's number, so the last
 * number of the answer text is the answer (what `ponder eval` extracts).
 *
 * Ownership: rz_problem holds fixed-size text buffers; nothing is heap-allocated.
 * Thread-safety: pure functions of the caller's rng state. */
#ifndef RZ_PROBLEMS_H
#define RZ_PROBLEMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* splitmix64: one 64-bit state, portable and fast. */
struct rz_rng {
    uint64_t s;
};

void rz_rng_seed(struct rz_rng *r, uint64_t seed);
uint64_t rz_rng_next(struct rz_rng *r);
/* Uniform in [0, n) for n >= 1 (rejection sampling: exact). */
uint32_t rz_rng_below(struct rz_rng *r, uint32_t n);
/* Uniform in [0, 1) with 53 random bits. */
double rz_rng_unit(struct rz_rng *r);

enum rz_kind {
    RZ_ADD,   /* a + b, 2 to 4 digits each */
    RZ_SUB,   /* a - b, 2 to 4 digits each, negative results included */
    RZ_MUL,   /* 2-3 digits times 1 digit, or 2 digits times 2 digits */
    RZ_CMP,   /* which of two numbers is larger / smaller */
    RZ_EQ,    /* a*x + b = c or a*x - b = c, solve for x (a in 2..9, x in 1..9) */
    RZ_WORD,  /* a short story around an addition, subtraction or multiplication */
    RZ_KIND_COUNT
};

/* "add", "sub", "mul", "cmp", "eq", "word"; NULL when out of range. */
const char *rz_kind_name(enum rz_kind k);
/* RZ_KIND_COUNT when unknown. */
enum rz_kind rz_kind_parse(const char *s);

#define RZ_TEXT_MAX 4096

struct rz_problem {
    enum rz_kind kind;
    char question[256];
    char answer[32];             /* the reference answer: an integer */
    char answer_text[128];       /* the sentence after the thinking */
    char think_long[RZ_TEXT_MAX];
    char think_short[512];
    bool has_error;              /* think_long holds a wrong step and its correction */
};

/* How problems are drawn. */
struct rz_params {
    uint32_t weight[RZ_KIND_COUNT]; /* relative frequency of each kind */
    double p_error;                 /* chance that the long trace has a corrected error */
};

/* The mix the shipped model is trained and evaluated on (docs/reasoner.md). */
struct rz_params rz_default_params(void);

/* Draws one problem (kind by weight) from r into *out. Returns false only if a text did
 * not fit its buffer (a bug: the ranges are chosen so that everything fits). */
bool rz_problem_draw(struct rz_rng *r, const struct rz_params *p, struct rz_problem *out);

/* Same with the kind fixed. */
bool rz_problem_draw_kind(struct rz_rng *r, const struct rz_params *p, enum rz_kind k,
                          struct rz_problem *out);

#endif
