/* problems.c - the reasoner's problem generator: questions, answers and the long, short
 * and empty thinking texts (see problems.h and docs/reasoner.md for the formats).
 *
 * DESIGN
 * - Every text is written through a bounded builder (struct tb) that records overflow
 *   instead of writing past its buffer; rz_problem_draw reports it.
 * - Each step is local on purpose: a column step names its column, reads one digit of
 *   each operand, writes one digit and the carry or borrow, and restates the result so
 *   far, so the next step only needs the previous one and the question.
 * - Draw order is part of the format: a seed must give the same problems forever, so
 *   new kinds or phrasings are added at the end of the draw sequence, never in between. */
#include "problems.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- random stream ---------------------------------------------------------------------- */

void rz_rng_seed(struct rz_rng *r, uint64_t seed)
{
    r->s = seed;
}

uint64_t rz_rng_next(struct rz_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint32_t rz_rng_below(struct rz_rng *r, uint32_t n)
{
    if (n <= 1) {
        return 0;
    }
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = rz_rng_next(r);
    } while (x >= limit);
    return (uint32_t)(x % n);
}

double rz_rng_unit(struct rz_rng *r)
{
    return (double)(rz_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* A number with exactly nd digits (no leading zero). */
static uint32_t draw_digits(struct rz_rng *r, int nd)
{
    static const uint32_t lo[] = {0, 1, 10, 100, 1000, 10000};
    return lo[nd] + rz_rng_below(r, lo[nd] * 9);
}

/* ---- names ------------------------------------------------------------------------------ */

static const char *const k_kind_names[] = {
    [RZ_ADD] = "add", [RZ_SUB] = "sub", [RZ_MUL] = "mul",
    [RZ_CMP] = "cmp", [RZ_EQ] = "eq",   [RZ_WORD] = "word",
};
_Static_assert(sizeof k_kind_names / sizeof k_kind_names[0] == RZ_KIND_COUNT,
               "one name per kind");

const char *rz_kind_name(enum rz_kind k)
{
    return (unsigned)k < RZ_KIND_COUNT ? k_kind_names[k] : NULL;
}

enum rz_kind rz_kind_parse(const char *s)
{
    for (int k = 0; s != NULL && k < RZ_KIND_COUNT; k++) {
        if (strcmp(s, k_kind_names[k]) == 0) {
            return (enum rz_kind)k;
        }
    }
    return RZ_KIND_COUNT;
}

struct rz_params rz_default_params(void)
{
    struct rz_params p = {
        .weight = {[RZ_ADD] = 18, [RZ_SUB] = 18, [RZ_MUL] = 18, [RZ_CMP] = 15, [RZ_EQ] = 15,
                   [RZ_WORD] = 16},
        .p_error = 0.1,
    };
    return p;
}

/* Column names from the ones up. */
static const char *const k_col[] = {"Ones", "Tens", "Hundreds", "Thousands", "Ten thousands"};
#define N_COL ((int)(sizeof k_col / sizeof k_col[0]))

/* ---- bounded text builder ---------------------------------------------------------------- */

struct tb {
    char *p;
    size_t cap;
    size_t len;
    bool ok;
};

static void tb_init(struct tb *t, char *p, size_t cap)
{
    t->p = p;
    t->cap = cap;
    t->len = 0;
    t->ok = cap > 0;
    if (cap > 0) {
        p[0] = '\0';
    }
}

__attribute__((format(printf, 2, 3))) static void tb_printf(struct tb *t, const char *fmt, ...)
{
    if (!t->ok) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= t->cap - t->len) {
        t->ok = false;
        t->p[t->len] = '\0';
        return;
    }
    t->len += (size_t)n;
}

/* ---- digits ------------------------------------------------------------------------------ */

static int n_digits(uint32_t v)
{
    int n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

static uint32_t pow10u(int i)
{
    uint32_t p = 1;
    while (i-- > 0) {
        p *= 10;
    }
    return p;
}

static uint32_t digit(uint32_t v, int i)
{
    while (i-- > 0) {
        v /= 10;
    }
    return v % 10;
}

/* v without its i lowest digits (0 once they are all gone): what is left of an operand
 * when column i is worked on. Each column step restates it, so the digit the step needs
 * is always the last one before the operator, right next to it. */
static uint32_t rest(uint32_t v, int i)
{
    while (i-- > 0) {
        v /= 10;
    }
    return v;
}

/* The digits written so far, most significant first (leading zeros kept): a string that
 * grows at the front. */
struct so_far {
    char d[16];
    int n;
};

static void so_far_push(struct so_far *s, uint32_t dgt)
{
    memmove(s->d + 1, s->d, (size_t)s->n + 1);
    s->d[0] = (char)('0' + dgt);
    s->n++;
}

/* ---- column steps ---------------------------------------------------------------------- */

/* Which step (if any) is written wrong first and corrected in the next paragraph. */
struct err_plan {
    int at;    /* step index, -1: none */
    int delta; /* +1 or -1 */
};

static struct err_plan plan_error(struct rz_rng *r, const struct rz_params *p, int n_steps)
{
    struct err_plan e = {-1, 1};
    if (rz_rng_unit(r) < p->p_error) {
        e.at = (int)rz_rng_below(r, (uint32_t)n_steps);
        e.delta = rz_rng_below(r, 2) ? 1 : -1;
    }
    return e;
}

/* Long addition a + b, one paragraph per column; prefix (may be "") starts each column
 * paragraph. Returns the sum. */
static uint32_t add_columns(struct tb *t, uint32_t a, uint32_t b, const char *prefix,
                            struct err_plan e, bool *had_error)
{
    int nd = n_digits(a) > n_digits(b) ? n_digits(a) : n_digits(b);
    uint32_t carry = 0;
    struct so_far sf = {{0}, 0};
    for (int i = 0; i < nd; i++) {
        uint32_t x = digit(a, i), y = digit(b, i);
        uint32_t s = x + y + carry;
        if (i == e.at) {
            uint32_t w = (e.delta < 0 && s > 0) || s == 19 ? s - 1 : s + 1;
            struct so_far wf = sf;
            so_far_push(&wf, w % 10);
            tb_printf(t, "%s%s: %u+%u: %u+%u+%u=%u. Write %u, carry %u. So far: %s.\n\n",
                      prefix, k_col[i], rest(a, i), rest(b, i), x, y, carry, w, w % 10, w / 10,
                      wf.d);
            so_far_push(&sf, s % 10);
            tb_printf(t, "Wait, that is not right. %u+%u+%u=%u, not %u. Write %u, carry %u. "
                      "So far: %s.\n\n", x, y, carry, s, w, s % 10, s / 10, sf.d);
            *had_error = true;
        } else {
            so_far_push(&sf, s % 10);
            tb_printf(t, "%s%s: %u+%u: %u+%u+%u=%u. Write %u, carry %u. So far: %s.\n\n",
                      prefix, k_col[i], rest(a, i), rest(b, i), x, y, carry, s, s % 10, s / 10,
                      sf.d);
        }
        carry = s / 10;
    }
    if (carry) {
        so_far_push(&sf, carry);
        tb_printf(t, "%sLast carry %u goes in front. So far: %s.\n\n", prefix, carry,
                  sf.d);
    }
    return a + b;
}

/* Long subtraction top - bottom (top >= bottom), one paragraph per column. */
static uint32_t sub_columns(struct tb *t, uint32_t top, uint32_t bottom, struct err_plan e,
                            bool *had_error)
{
    int nd = n_digits(top);
    uint32_t bin = 0;
    struct so_far sf = {{0}, 0};
    for (int i = 0; i < nd; i++) {
        uint32_t x = digit(top, i), y = digit(bottom, i);
        bool borrow = x < y + bin;
        uint32_t r = (borrow ? x + 10 : x) - y - bin;
        uint32_t w = r;
        if (i == e.at) {
            w = (e.delta < 0 && r > 0) || r == 9 ? r - 1 : r + 1;
        }
        for (int pass = 0; pass < (i == e.at ? 2 : 1); pass++) {
            uint32_t v = pass == 0 ? w : r;
            struct so_far vf = sf;
            so_far_push(&vf, v);
            if (pass == 1) {
                tb_printf(t, "Wait, that is not right. %u-%u-%u=%u, not %u. ",
                          borrow ? x + 10 : x, y, bin, r, w);
                *had_error = true;
            } else if (borrow) {
                tb_printf(t, "%s: %u-%u: %u<%u+%u, so borrow: %u-%u-%u=%u. ", k_col[i],
                          rest(top, i), rest(bottom, i), x, y, bin, x + 10, y, bin, v);
            } else {
                tb_printf(t, "%s: %u-%u: %u-%u-%u=%u. ", k_col[i], rest(top, i),
                          rest(bottom, i), x, y, bin, v);
            }
            tb_printf(t, "Borrow %u. So far: %s.\n\n", borrow ? 1u : 0u, vf.d);
        }
        so_far_push(&sf, r);
        bin = borrow;
    }
    return top - bottom;
}

/* Long multiplication a * m (m one digit), one paragraph per column; label (may be "")
 * starts each paragraph. Returns the product. */
static uint32_t mul_columns(struct tb *t, uint32_t a, uint32_t m, const char *label,
                            struct err_plan e, bool *had_error)
{
    int nd = n_digits(a);
    uint32_t carry = 0;
    struct so_far sf = {{0}, 0};
    for (int i = 0; i < nd; i++) {
        uint32_t x = digit(a, i);
        uint32_t p = x * m, q = p + carry;
        if (i == e.at) {
            uint32_t w = e.delta < 0 && q > 0 ? q - 1 : q + 1;
            struct so_far wf = sf;
            so_far_push(&wf, w % 10);
            tb_printf(t, "%s%s: %u*%u: %u*%u=%u, plus carry %u is %u. Write %u, carry %u. "
                      "So far: %s.\n\n", label, k_col[i], rest(a, i), m, x, m, p, carry, w,
                      w % 10, w / 10, wf.d);
            so_far_push(&sf, q % 10);
            tb_printf(t, "Wait, that is not right. %u*%u=%u, plus carry %u is %u, not %u. "
                      "Write %u, carry %u. So far: %s.\n\n", x, m, p, carry, q, w,
                      q % 10, q / 10, sf.d);
            *had_error = true;
        } else {
            so_far_push(&sf, q % 10);
            tb_printf(t, "%s%s: %u*%u: %u*%u=%u, plus carry %u is %u. Write %u, carry %u. "
                      "So far: %s.\n\n", label, k_col[i], rest(a, i), m, x, m, p, carry, q,
                      q % 10, q / 10, sf.d);
        }
        carry = q / 10;
    }
    if (carry) {
        so_far_push(&sf, carry);
        tb_printf(t, "%sLast carry %u goes in front. So far: %s.\n\n", label, carry,
                  sf.d);
    }
    return a * m;
}

/* Compact addition in one paragraph: "Ones: 3+9+0=12. Tens: ... So 113+359=472." */
static void add_inline(struct tb *t, uint32_t a, uint32_t b)
{
    int nd = n_digits(a) > n_digits(b) ? n_digits(a) : n_digits(b);
    uint32_t carry = 0;
    for (int i = 0; i < nd; i++) {
        uint32_t s = digit(a, i) + digit(b, i) + carry;
        tb_printf(t, "%s: %u+%u: %u+%u+%u=%u, write %u. ", k_col[i], rest(a, i), rest(b, i),
                  digit(a, i), digit(b, i), carry, s, s % 10);
        carry = s / 10;
    }
    if (carry) {
        tb_printf(t, "Last carry %u goes in front. ", carry);
    }
    tb_printf(t, "So %u+%u=%u.", a, b, a + b);
}

/* Compact subtraction top - bottom (top >= bottom) in one paragraph. */
static void sub_inline(struct tb *t, uint32_t top, uint32_t bottom)
{
    uint32_t bin = 0;
    for (int i = 0; i < n_digits(top); i++) {
        uint32_t x = digit(top, i), y = digit(bottom, i);
        bool borrow = x < y + bin;
        uint32_t r = (borrow ? x + 10 : x) - y - bin;
        if (borrow) {
            tb_printf(t, "%s: %u-%u: %u<%u+%u, so borrow: %u-%u-%u=%u. ", k_col[i],
                      rest(top, i), rest(bottom, i), x, y, bin, x + 10, y, bin, r);
        } else {
            tb_printf(t, "%s: %u-%u: %u-%u-%u=%u. ", k_col[i], rest(top, i), rest(bottom, i),
                      x, y, bin, r);
        }
        bin = borrow;
    }
    tb_printf(t, "So %u-%u=%u.", top, bottom, top - bottom);
}

/* Short forms: "2+9=11, 7+5+1=13, 4+3+1=8" (columns from the ones). */
static void add_short(struct tb *t, uint32_t a, uint32_t b)
{
    int nd = n_digits(a) > n_digits(b) ? n_digits(a) : n_digits(b);
    uint32_t carry = 0;
    for (int i = 0; i < nd; i++) {
        uint32_t s = digit(a, i) + digit(b, i) + carry;
        if (i == 0) {
            tb_printf(t, "%u+%u=%u", digit(a, i), digit(b, i), s);
        } else {
            tb_printf(t, ", %u+%u+%u=%u", digit(a, i), digit(b, i), carry, s);
        }
        carry = s / 10;
    }
}

static void sub_short(struct tb *t, uint32_t top, uint32_t bottom)
{
    uint32_t bin = 0;
    for (int i = 0; i < n_digits(top); i++) {
        uint32_t x = digit(top, i), y = digit(bottom, i);
        bool borrow = x < y + bin;
        uint32_t r = (borrow ? x + 10 : x) - y - bin;
        tb_printf(t, "%s%u-%u-%u=%u", i ? ", " : "", borrow ? x + 10 : x, y, bin, r);
        bin = borrow;
    }
}

static void mul_short(struct tb *t, uint32_t a, uint32_t m)
{
    uint32_t carry = 0;
    for (int i = 0; i < n_digits(a); i++) {
        uint32_t q = digit(a, i) * m + carry;
        tb_printf(t, "%s%u*%u+%u=%u", i ? ", " : "", digit(a, i), m, carry, q);
        carry = q / 10;
    }
}

/* ---- the kinds --------------------------------------------------------------------------- */

struct texts {
    struct tb q, a, at, lg, sh;
};

static void texts_init(struct texts *x, struct rz_problem *p)
{
    tb_init(&x->q, p->question, sizeof p->question);
    tb_init(&x->a, p->answer, sizeof p->answer);
    tb_init(&x->at, p->answer_text, sizeof p->answer_text);
    tb_init(&x->lg, p->think_long, sizeof p->think_long);
    tb_init(&x->sh, p->think_short, sizeof p->think_short);
}

static bool texts_ok(const struct texts *x)
{
    return x->q.ok && x->a.ok && x->at.ok && x->lg.ok && x->sh.ok;
}

static int draw_nd(struct rz_rng *r, int lo, int hi)
{
    return lo + (int)rz_rng_below(r, (uint32_t)(hi - lo + 1));
}

static void ones_check_add(struct tb *t, uint32_t a, uint32_t b, uint32_t s)
{
    uint32_t o = digit(a, 0) + digit(b, 0);
    tb_printf(t, "Wait, let me check the ones: %u+%u=%u ends in %u, and %u ends in %u. Good.",
              digit(a, 0), digit(b, 0), o, o % 10, s, s % 10);
}

/* The check of a difference d = top - bottom: adding back the ones digits gives top's. */
static void ones_check_sub(struct tb *t, uint32_t d, uint32_t bottom, uint32_t top)
{
    uint32_t o = digit(d, 0) + digit(bottom, 0);
    tb_printf(t, "Wait, let me check by adding back the ones: %u+%u=%u ends in %u, and %u ends "
              "in %u. Good.", digit(d, 0), digit(bottom, 0), o, o % 10, top, top % 10);
}

static void gen_add(struct rz_rng *r, const struct rz_params *pp, struct rz_problem *p,
                    struct texts *x)
{
    uint32_t a = draw_digits(r, draw_nd(r, 2, 4)), b = draw_digits(r, draw_nd(r, 2, 4));
    int nd = n_digits(a) > n_digits(b) ? n_digits(a) : n_digits(b);
    struct err_plan e = plan_error(r, pp, nd);
    tb_printf(&x->q, "What is %u + %u?", a, b);
    tb_printf(&x->a, "%u", a + b);
    tb_printf(&x->at, "%u + %u = %u", a, b, a + b);
    tb_printf(&x->lg, "We add %u and %u column by column, starting from the ones.\n\n", a, b);
    add_columns(&x->lg, a, b, "", e, &p->has_error);
    tb_printf(&x->lg, "So the sum is %u.\n\n", a + b);
    ones_check_add(&x->lg, a, b, a + b);
    tb_printf(&x->sh, "%u+%u: ", a, b);
    add_short(&x->sh, a, b);
    tb_printf(&x->sh, ". So %u.", a + b);
}

/* The subtraction part shared by sub and word problems: top >= bottom. */
static void sub_body(struct rz_rng *r, const struct rz_params *pp, struct rz_problem *p,
                     struct texts *x, uint32_t top, uint32_t bottom)
{
    struct err_plan e = plan_error(r, pp, n_digits(top));
    sub_columns(&x->lg, top, bottom, e, &p->has_error);
}

static void gen_sub(struct rz_rng *r, const struct rz_params *pp, struct rz_problem *p,
                    struct texts *x)
{
    uint32_t a = draw_digits(r, draw_nd(r, 2, 4)), b = draw_digits(r, draw_nd(r, 2, 4));
    if (a == b) {
        b = a + 1 + rz_rng_below(r, 9);
    }
    bool neg = a < b;
    uint32_t top = neg ? b : a, bottom = neg ? a : b, d = top - bottom;
    tb_printf(&x->q, "What is %u - %u?", a, b);
    tb_printf(&x->a, "%s%u", neg ? "-" : "", d);
    tb_printf(&x->at, "%u - %u = %s%u", a, b, neg ? "-" : "", d);
    if (neg) {
        tb_printf(&x->lg, "%u is smaller than %u, so the result is negative. We subtract %u "
                  "from %u column by column, starting from the ones, and put a minus sign in "
                  "front.\n\n", a, b, a, b);
    } else {
        tb_printf(&x->lg, "We subtract %u from %u column by column, starting from the ones."
                  "\n\n", b, a);
    }
    sub_body(r, pp, p, x, top, bottom);
    tb_printf(&x->lg, "So the difference is %s%u.\n\n", neg ? "-" : "", d);
    ones_check_sub(&x->lg, d, bottom, top);
    if (neg) {
        tb_printf(&x->sh, "%u is larger, so %u-%u=-(%u-%u). ", b, a, b, b, a);
    } else {
        tb_printf(&x->sh, "%u-%u: ", a, b);
    }
    sub_short(&x->sh, top, bottom);
    tb_printf(&x->sh, ". So %s%u.", neg ? "-" : "", d);
}

/* a * m for one digit m; the long text, check and short text. */
static void mul1_body(struct rz_rng *r, const struct rz_params *pp, struct rz_problem *p,
                      struct texts *x, uint32_t a, uint32_t m)
{
    struct err_plan e = plan_error(r, pp, n_digits(a));
    tb_printf(&x->lg, "We multiply %u by %u digit by digit, starting from the ones.\n\n", a, m);
    mul_columns(&x->lg, a, m, "", e, &p->has_error);
}

static void gen_mul(struct rz_rng *r, const struct rz_params *pp, struct rz_problem *p,
                    struct texts *x)
{
    bool two = rz_rng_below(r, 3) == 0; /* a third are 2-digit by 2-digit */
    uint32_t a = two ? draw_digits(r, 2) : draw_digits(r, draw_nd(r, 2, 3));
    uint32_t m = two ? draw_digits(r, 2) : 2 + rz_rng_below(r, 8);
    uint32_t prod = a * m;
    tb_printf(&x->q, "What is %u * %u?", a, m);
    tb_printf(&x->a, "%u", prod);
    tb_printf(&x->at, "%u * %u = %u", a, m, prod);
    if (!two) {
        mul1_body(r, pp, p, x, a, m);
        tb_printf(&x->sh, "%u*%u: ", a, m);
        mul_short(&x->sh, a, m);
    } else {
        uint32_t m0 = m % 10, m1 = m / 10;
        uint32_t p0 = a * m0, p1 = a * m1;
        struct err_plan e = plan_error(r, pp, n_digits(a));
        tb_printf(&x->lg, "We multiply %u by %u. First %u*%u, then %u*%u for the tens, then "
                  "we add the two results.\n\n", a, m, a, m0, a, m1);
        tb_printf(&x->lg, "First part: %u*%u.\n\n", a, m0);
        mul_columns(&x->lg, a, m0, "", e, &p->has_error);
        tb_printf(&x->lg, "So %u*%u=%u.\n\nSecond part: %u*%u.\n\n", a, m0, p0, a, m1);
        struct err_plan none = {-1, 1};
        mul_columns(&x->lg, a, m1, "", none, &p->has_error);
        tb_printf(&x->lg, "So %u*%u=%u, and %u*%u=%u.\n\n", a, m1, p1, a, m1 * 10, p1 * 10);
        tb_printf(&x->lg, "Now we add %u and %u column by column.\n\n", p0, p1 * 10);
        add_columns(&x->lg, p0, p1 * 10, "", none, &p->has_error);
        tb_printf(&x->sh, "%u*%u = %u*%u + %u*%u = %u + %u", a, m, a, m0, a, m1 * 10, p0,
                  p1 * 10);
    }
    tb_printf(&x->lg, "So the product is %u.\n\n", prod);
    uint32_t o = digit(a, 0) * (m % 10);
    tb_printf(&x->lg, "Wait, let me check the last digit: %u*%u=%u ends in %u, and %u ends in "
              "%u. Good.", digit(a, 0), m % 10, o, o % 10, prod, prod % 10);
    tb_printf(&x->sh, ". So %u.", prod);
}

static void gen_cmp(struct rz_rng *r, struct rz_problem *p, struct texts *x)
{
    (void)p;
    int nd = draw_nd(r, 2, 4);
    uint32_t a = draw_digits(r, nd), b;
    uint32_t form = rz_rng_below(r, 3);
    if (form == 0) {
        b = draw_digits(r, draw_nd(r, 2, 4)); /* any length */
    } else {
        /* same length, sharing a prefix of random length */
        int keep = (int)rz_rng_below(r, (uint32_t)nd);
        uint32_t div = 1;
        for (int i = 0; i < nd - keep; i++) {
            div *= 10;
        }
        uint32_t lo = keep == 0 ? div / 10 : 0;
        b = (a / div) * div + lo + rz_rng_below(r, div - lo);
    }
    if (a == b) {
        b = a == 99 || a == 999 || a == 9999 ? a - 1 : a + 1;
    }
    bool ask_larger = rz_rng_below(r, 2) == 0;
    uint32_t hi = a > b ? a : b, lo = a > b ? b : a, want = ask_larger ? hi : lo;
    const char *word = ask_larger ? "larger" : "smaller";
    tb_printf(&x->q, "Which is %s, %u or %u?", word, a, b);
    tb_printf(&x->a, "%u", want);
    tb_printf(&x->at, "The %s number is %u.", word, want);
    /* The operands are named A and B, so the conclusion copies a number from right after
     * its name ("B = 316") instead of finding which operand began with the deciding
     * digit; the remaining digits keep their leading zeros ("704" -> "04"). */
    const char *hi_name = hi == a ? "A" : "B", *want_name = want == a ? "A" : "B";
    const char *lo_name = hi == a ? "B" : "A";
    tb_printf(&x->lg, "I compare A = %u and B = %u.\n\n", a, b);
    int na = n_digits(a), nb = n_digits(b);
    if (na != nb) {
        tb_printf(&x->lg, "%u has %d digits and %u has %d digits. More digits means larger, "
                  "so %s is larger.\n\n", a, na, b, nb, hi_name);
        tb_printf(&x->lg, "So %s is larger and %s is smaller: the %s number is %s = %u.\n\n",
                  hi_name, lo_name, word, want_name, want);
        tb_printf(&x->lg, "Wait, let me check: %d digits against %d digits. Good.",
                  n_digits(hi), n_digits(lo));
        tb_printf(&x->sh, "%u vs %u: %d digits against %d digits. So %u.", a, b, na, nb, want);
        return;
    }
    tb_printf(&x->lg, "Both have %d digits, so I compare them digit by digit from the left."
              "\n\n", na);
    int i = na - 1;
    for (; i >= 0 && digit(a, i) == digit(b, i); i--) {
        tb_printf(&x->lg, "%s: %0*u and %0*u: %u and %u are equal.\n\n", k_col[i], i + 1,
                  a % pow10u(i + 1), i + 1, b % pow10u(i + 1), digit(a, i), digit(b, i));
    }
    uint32_t da = digit(a, i), db = digit(b, i);
    tb_printf(&x->lg, "%s: %0*u and %0*u: %u and %u. %u>%u, so %s is larger.\n\n", k_col[i],
              i + 1, a % pow10u(i + 1), i + 1, b % pow10u(i + 1), da, db, da > db ? da : db,
              da > db ? db : da, hi_name);
    tb_printf(&x->lg, "So %s is larger and %s is smaller: the %s number is %s = %u.\n\n",
              hi_name, lo_name, word, want_name, want);
    tb_printf(&x->lg, "Wait, let me check: the first digits that differ are %u and %u, and "
              "%u>%u. Good.", digit(hi, i), digit(lo, i), digit(hi, i), digit(lo, i));
    tb_printf(&x->sh, "%u vs %u: first difference %u>%u. So %u.", a, b, digit(hi, i),
              digit(lo, i), want);
}

static void gen_eq(struct rz_rng *r, struct rz_problem *p, struct texts *x)
{
    (void)p;
    /* x stays a single digit: the division is the times table read backwards */
    uint32_t a = 2 + rz_rng_below(r, 8), v = 1 + rz_rng_below(r, 9), b = 1 + rz_rng_below(r, 49);
    bool minus = rz_rng_below(r, 2) == 0 && a * v > b;
    uint32_t ax = a * v, c = minus ? ax - b : ax + b;
    tb_printf(&x->q, "Solve for x: %ux %c %u = %u.", a, minus ? '-' : '+', b, c);
    tb_printf(&x->a, "%u", v);
    tb_printf(&x->at, "x = %u", v);
    tb_printf(&x->lg, "I need to find x in %ux %c %u = %u.\n\n", a, minus ? '-' : '+', b, c);
    if (minus) {
        tb_printf(&x->lg, "Add %u to both sides: %ux = %u+%u.\n\n", b, a, c, b);
        tb_printf(&x->lg, "%u+%u: ", c, b);
        add_inline(&x->lg, c, b);
    } else {
        tb_printf(&x->lg, "Subtract %u from both sides: %ux = %u-%u.\n\n", b, a, c, b);
        tb_printf(&x->lg, "%u-%u: ", c, b);
        sub_inline(&x->lg, c, b);
    }
    tb_printf(&x->lg, "\n\nSo %ux = %u.\n\n", a, ax);
    tb_printf(&x->lg, "Divide both sides by %u: x = %u/%u = %u.\n\n", a, ax, a, v);
    tb_printf(&x->lg, "Wait, let me check: %u*%u=%u, and %u%c%u=%u. Good.", a, v, ax, ax,
              minus ? '-' : '+', b, c);
    tb_printf(&x->sh, "%ux = %u%c%u = %u, so x = %u/%u = %u.", a, c, minus ? '+' : '-', b, ax,
              ax, a, v);
}

static const char *const k_names[] = {"Sam", "Mia", "Tom", "Ana", "Leo", "Zoe", "Ben", "Eva"};
static const char *const k_items[] = {"apples", "marbles", "pens", "stickers",
                                      "books",  "coins",   "cards", "shells"};

static void gen_word(struct rz_rng *r, const struct rz_params *pp, struct rz_problem *p,
                     struct texts *x)
{
    const char *name = k_names[rz_rng_below(r, 8)];
    const char *item = k_items[rz_rng_below(r, 8)];
    uint32_t op = rz_rng_below(r, 3);
    if (op == 0) {
        uint32_t a = draw_digits(r, draw_nd(r, 2, 3)), b = draw_digits(r, draw_nd(r, 2, 3));
        uint32_t s = a + b;
        int nd = n_digits(a) > n_digits(b) ? n_digits(a) : n_digits(b);
        struct err_plan e = plan_error(r, pp, nd);
        tb_printf(&x->q, "%s has %u %s and gets %u more. How many %s does %s have now?", name,
                  a, item, b, item, name);
        tb_printf(&x->a, "%u", s);
        tb_printf(&x->at, "%s has %u %s now.", name, s, item);
        tb_printf(&x->lg, "This is an addition: %u+%u.\n\n", a, b);
        add_columns(&x->lg, a, b, "", e, &p->has_error);
        tb_printf(&x->lg, "So %s has %u %s now.\n\n", name, s, item);
        ones_check_add(&x->lg, a, b, s);
        tb_printf(&x->sh, "%u+%u: ", a, b);
        add_short(&x->sh, a, b);
        tb_printf(&x->sh, ". So %u.", s);
    } else if (op == 1) {
        uint32_t a = draw_digits(r, draw_nd(r, 2, 3)), b = draw_digits(r, draw_nd(r, 2, 3));
        if (a < b) {
            uint32_t t = a;
            a = b;
            b = t;
        }
        if (a == b) {
            a++;
        }
        uint32_t d = a - b;
        tb_printf(&x->q, "%s has %u %s and gives away %u of them. How many %s does %s have "
                  "left?", name, a, item, b, item, name);
        tb_printf(&x->a, "%u", d);
        tb_printf(&x->at, "%s has %u %s left.", name, d, item);
        tb_printf(&x->lg, "This is a subtraction: %u-%u.\n\n", a, b);
        sub_body(r, pp, p, x, a, b);
        tb_printf(&x->lg, "So %s has %u %s left.\n\n", name, d, item);
        ones_check_sub(&x->lg, d, b, a);
        tb_printf(&x->sh, "%u-%u: ", a, b);
        sub_short(&x->sh, a, b);
        tb_printf(&x->sh, ". So %u.", d);
    } else {
        uint32_t a = draw_digits(r, 2), m = 2 + rz_rng_below(r, 8);
        uint32_t prod = a * m;
        tb_printf(&x->q, "%s buys %u boxes of %s with %u %s in each box. How many %s does %s "
                  "buy in total?", name, m, item, a, item, item, name);
        tb_printf(&x->a, "%u", prod);
        tb_printf(&x->at, "%s buys %u %s in total.", name, prod, item);
        tb_printf(&x->lg, "This is a multiplication: %u*%u.\n\n", a, m);
        mul1_body(r, pp, p, x, a, m);
        tb_printf(&x->lg, "So %s buys %u %s in total.\n\n", name, prod, item);
        uint32_t o = digit(a, 0) * m;
        tb_printf(&x->lg, "Wait, let me check the last digit: %u*%u=%u ends in %u, and %u ends "
                  "in %u. Good.", digit(a, 0), m, o, o % 10, prod, prod % 10);
        tb_printf(&x->sh, "%u*%u: ", a, m);
        mul_short(&x->sh, a, m);
        tb_printf(&x->sh, ". So %u.", prod);
    }
}

bool rz_problem_draw_kind(struct rz_rng *r, const struct rz_params *pp, enum rz_kind k,
                          struct rz_problem *out)
{
    memset(out, 0, sizeof *out);
    out->kind = k;
    struct texts x;
    texts_init(&x, out);
    switch (k) {
    case RZ_ADD:
        gen_add(r, pp, out, &x);
        break;
    case RZ_SUB:
        gen_sub(r, pp, out, &x);
        break;
    case RZ_MUL:
        gen_mul(r, pp, out, &x);
        break;
    case RZ_CMP:
        gen_cmp(r, out, &x);
        break;
    case RZ_EQ:
        gen_eq(r, out, &x);
        break;
    case RZ_WORD:
        gen_word(r, pp, out, &x);
        break;
    default:
        return false;
    }
    return texts_ok(&x);
}

bool rz_problem_draw(struct rz_rng *r, const struct rz_params *p, struct rz_problem *out)
{
    uint32_t total = 0;
    for (int k = 0; k < RZ_KIND_COUNT; k++) {
        total += p->weight[k];
    }
    uint32_t u = rz_rng_below(r, total ? total : 1);
    int k = 0;
    while (k < RZ_KIND_COUNT - 1 && u >= p->weight[k]) {
        u -= p->weight[k];
        k++;
    }
    return rz_problem_draw_kind(r, p, (enum rz_kind)k, out);
}
