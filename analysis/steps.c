/* steps.c - step segmentation (batch and incremental) and step kinds.
 *
 * DESIGN
 * The two segmenters are written independently on purpose, so that the equivalence test
 * (tests/test_steps.c) checks one against the other:
 *   - batch: resolves the span with look-ahead over the whole trace, concatenates each
 *     run's text, finds split offsets with plain string scans, maps offsets to tokens and
 *     walks the candidates.
 *   - incremental: a byte-driven state machine (whitespace/newline counter, sentence
 *     context, marker matcher with bounded look-ahead) that keeps only the open step's
 *     bytes and tokens, and a queue for tokens whose span membership is not known yet
 *     (INJECTED tokens, until the next non-injected token says).
 * Both share the leaf rules: the byte classes, the marker table, the trimmed character
 * count, and the candidate rule ("close the step before token b unless it would be empty
 * or shorter than min_chars").
 * Invariant (incremental): split decisions arrive in increasing offset order, because a
 * pending marker match consists only of marker bytes (letters, space, '\'', '-') and is
 * resolved by the first other byte, before any later split point can be seen. */
#include "steps.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

#define STEPS_TOKEN_LEN_MAX PD_TEXT_ROW_MAX
#define STEPS_MIN_CHARS_MAX 100000

static const char *const k_default_markers[] = {
    "wait", "but", "alternatively", "hmm", "let me", "so", "therefore", "actually", "oh", NULL,
};

struct pd_steps_params pd_steps_default_params(void)
{
    struct pd_steps_params p;
    memset(&p, 0, sizeof(p));
    p.span = PD_STEPS_SPAN_AUTO;
    p.split_blank_lines = true;
    p.split_markers = false;
    p.min_chars = 10;
    p.markers = NULL;
    p.compute_density = 0.2f;
    return p;
}

void pd_steps_list_init(struct pd_steps_list *l)
{
    l->items = NULL;
    l->n = 0;
    l->cap = 0;
}

void pd_steps_list_deinit(struct pd_steps_list *l)
{
    free(l->items);
    pd_steps_list_init(l);
}

/* ---- shared leaf rules ----------------------------------------------------------------- */

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Horizontal whitespace: every whitespace byte except '\n'. */
static bool is_hws(unsigned char c)
{
    return is_ws(c) && c != '\n';
}

static bool is_sentence_end(unsigned char c)
{
    return c == '.' || c == '!' || c == '?';
}

/* Word bytes: ASCII letters and digits, '_', and every non-ASCII byte. */
static bool is_word(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c >= 0x80;
}

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Characters of s[0..n) after trimming whitespace at both ends; a character is a byte
 * that is not a UTF-8 continuation byte (0x80..0xBF). */
static size_t trimmed_chars(const char *s, size_t n)
{
    size_t a = 0;
    size_t b = n;
    while (a < b && is_ws((unsigned char)s[a])) {
        a++;
    }
    while (b > a && is_ws((unsigned char)s[b - 1])) {
        b--;
    }
    size_t count = 0;
    for (size_t i = a; i < b; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80 || c > 0xBF) {
            count++;
        }
    }
    return count;
}

/* A validated, lowercased marker table. */
struct marker_set {
    int n;
    char text[PD_STEPS_MARKERS_MAX][PD_STEPS_MARKER_LEN_MAX + 1];
    size_t len[PD_STEPS_MARKERS_MAX];
};

static bool marker_byte_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ' ' || c == '\'' ||
           c == '-';
}

static bool is_letter(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Validates params and builds the marker table. */
static enum pd_status check_params(const struct pd_steps_params *p, struct marker_set *ms,
                                   struct pd_err *err)
{
    if ((unsigned)p->span >= PD_STEPS_SPAN_COUNT) {
        return pd_err_set(err, PD_EINVAL, "steps params: span %d out of range", (int)p->span);
    }
    if (p->min_chars < 0 || p->min_chars > STEPS_MIN_CHARS_MAX) {
        return pd_err_set(err, PD_EINVAL, "steps params: min_chars %d not in [0, %d]",
                          (int)p->min_chars, STEPS_MIN_CHARS_MAX);
    }
    if (!(p->compute_density >= 0.0f && p->compute_density <= 1.0f)) {
        return pd_err_set(err, PD_EINVAL, "steps params: compute_density %g not in [0, 1]",
                          (double)p->compute_density);
    }
    const char *const *list = p->markers != NULL ? p->markers : k_default_markers;
    ms->n = 0;
    for (int i = 0; list[i] != NULL; i++) {
        if (i >= PD_STEPS_MARKERS_MAX) {
            return pd_err_set(err, PD_EINVAL, "steps params: more than %d markers",
                              PD_STEPS_MARKERS_MAX);
        }
        const char *m = list[i];
        size_t len = strlen(m);
        bool ok = len >= 1 && len <= PD_STEPS_MARKER_LEN_MAX && is_letter((unsigned char)m[0]) &&
                  is_letter((unsigned char)m[len - 1]);
        for (size_t k = 0; ok && k < len; k++) {
            ok = marker_byte_ok((unsigned char)m[k]) && !(m[k] == ' ' && m[k + 1] == ' ');
        }
        if (!ok) {
            return pd_err_set(err, PD_EINVAL,
                              "steps params: marker %d \"%.40s\" must be 1..%d ASCII letters, "
                              "single spaces, '\\'' or '-', starting and ending with a letter",
                              i, m, PD_STEPS_MARKER_LEN_MAX);
        }
        for (size_t k = 0; k < len; k++) {
            ms->text[i][k] = (char)ascii_lower((unsigned char)m[k]);
        }
        ms->text[i][len] = '\0';
        ms->len[i] = len;
        ms->n = i + 1;
    }
    return PD_OK;
}

static enum pd_status check_token(const struct pd_token_rec *t, size_t index, bool have_prev,
                                  int64_t prev_pos, struct pd_err *err)
{
    if (t == NULL) {
        return pd_err_set(err, PD_EINVAL, "steps: token %zu is NULL", index);
    }
    if ((unsigned)t->role >= PD_ROLE_COUNT) {
        return pd_err_set(err, PD_EINVAL, "steps: token %zu (pos %lld): role %d out of range",
                          index, (long long)t->pos, (int)t->role);
    }
    if (t->pos < 0 || (have_prev && t->pos <= prev_pos)) {
        return pd_err_set(err, PD_EINVAL,
                          "steps: token %zu: position %lld is negative or not above the "
                          "previous %lld", index, (long long)t->pos, (long long)prev_pos);
    }
    if ((t->text == NULL && t->text_len > 0) || t->text_len > STEPS_TOKEN_LEN_MAX) {
        return pd_err_set(err, PD_EINVAL,
                          "steps: token %zu (pos %lld): text missing or longer than %u bytes",
                          index, (long long)t->pos, STEPS_TOKEN_LEN_MAX);
    }
    return PD_OK;
}

static enum pd_status push_step(struct pd_steps_list *out, int32_t index, int64_t pos_begin,
                                int64_t pos_end, enum pd_step_kind kind, struct pd_err *err)
{
    struct pd_step_rec *items = pd_grow_array(out->items, &out->cap, out->n + 1, sizeof(*items));
    if (items == NULL) {
        return pd_err_set(err, PD_ENOMEM, "steps: out of memory for %zu steps", out->n + 1);
    }
    out->items = items;
    struct pd_step_rec *r = &out->items[out->n++];
    memset(r, 0, sizeof(*r));
    r->index = index;
    r->pos_begin = pos_begin;
    r->pos_end = pos_end;
    r->kind = kind;
    r->pruned = false;
    r->mean_surprisal = NAN;
    r->first_surprisal = NAN;
    r->mean_entropy = NAN;
    r->attn_received = NAN;
    return PD_OK;
}

/* ---- step kinds ----------------------------------------------------------------------- */

/* Prefix rules: a step's normalised opening (lowercase ASCII, whitespace runs collapsed to
 * one space, U+2019 as '\'', leading whitespace and markdown '*', '#', '_', '>', '`'
 * removed) starts with one of these, and if the prefix ends in a letter the next byte is
 * not a word byte. */
static const char *const k_conclude_prefixes[] = {
    "so the answer", "so the final answer", "so, the answer", "so the final result",
    "therefore", "thus", "hence", "final answer", "the final answer", "the answer is",
    "in conclusion", "in summary", "to summarize", "to conclude", NULL,
};

/* Check phrases, matched after stripping up to three leading interjections. */
static const char *const k_check_prefixes[] = {
    "let me check", "let me verify", "let me double-check", "let me double check",
    "let me confirm", "let me recheck", "let me re-check", "let me re-verify",
    "let me re-examine", "let me test", "let's check", "let's verify", "let's double-check",
    "let's confirm", "let us check", "let us verify", "to verify", "to check", "to confirm",
    "double-check", "double check", "checking", "verifying", "verify", "check",
    "verification", "sanity check", "i should check", "i should verify",
    "i should double-check", "we can check", "we can verify", NULL,
};

/* Interjections stripped before the check phrases: the word, an optional ',', '.', '!'
 * or ':', then a space. */
static const char *const k_interjections[] = {
    "wait", "but", "hmm", "oh", "okay", "ok", "alright", "now", "so", "well", "also",
    "actually", "and", "first", "finally", NULL,
};

static const char *const k_backtrack_prefixes[] = {
    "wait", "but wait", "oh wait", "hmm, wait", "hmm wait", "no wait", "no, wait",
    "alternatively", "actually", "hmm, that's not", "hmm, that is not", "hmm, that doesn't",
    "hmm, that does not", "hmm, that can't", "hmm, this is not", "hmm, but", "no,", "no.",
    "no!", "hold on", "oops", "oh no", "that's not right", "that's wrong",
    "that is not right", "that can't be", "this is wrong", "i made a mistake",
    "i think i made a mistake", "another approach", "another way", "on second thought",
    "let me try again", "let me try another", "let me try a different", "let me reconsider",
    "let me rethink", "let me think again", "let me start over", "let me re-evaluate", NULL,
};

static const char *const k_plan_prefixes[] = {
    "first", "firstly", "i need to", "we need to", "let's", "let us", "let me", "okay, so",
    "okay so", "ok, so", "okay, let", "alright, so", "alright, let", "the problem",
    "the question", "to solve", "my plan", "the plan", "step 1", "i'll start",
    "we are given", "we're given", "given that", "to find", "the goal", NULL,
};

#define KIND_NORM_MAX 160

/* Normalises the opening of text into out (see the prefix-rule comment). */
static size_t kind_normalise(const char *text, size_t len, char *out, size_t out_max)
{
    size_t i = 0;
    while (i < len && (is_ws((unsigned char)text[i]) || strchr("*#_>`", text[i]) != NULL)) {
        i++;
    }
    size_t n = 0;
    bool space = false;
    while (i < len && n + 1 < out_max) {
        unsigned char c = (unsigned char)text[i];
        if (is_ws(c)) {
            space = true;
            i++;
            continue;
        }
        if (space) {
            out[n++] = ' ';
            space = false;
            if (n + 1 >= out_max) {
                break;
            }
        }
        if (c == 0xE2 && i + 2 < len && (unsigned char)text[i + 1] == 0x80 &&
            (unsigned char)text[i + 2] == 0x99) {
            out[n++] = '\'';
            i += 3;
            continue;
        }
        out[n++] = (char)ascii_lower(c);
        i++;
    }
    out[n] = '\0';
    return n;
}

/* True when norm[0..n) starts with prefix p at a word boundary. */
static bool has_prefix(const char *norm, size_t n, const char *p)
{
    size_t pl = strlen(p);
    if (pl > n || memcmp(norm, p, pl) != 0) {
        return false;
    }
    if (pl < n && is_letter((unsigned char)p[pl - 1]) && is_word((unsigned char)norm[pl])) {
        return false;
    }
    return true;
}

static bool any_prefix(const char *norm, size_t n, const char *const *list)
{
    for (int i = 0; list[i] != NULL; i++) {
        if (has_prefix(norm, n, list[i])) {
            return true;
        }
    }
    return false;
}

/* Length of a leading interjection ("wait, ") in norm, or 0. */
static size_t interjection_len(const char *norm, size_t n)
{
    for (int i = 0; k_interjections[i] != NULL; i++) {
        size_t wl = strlen(k_interjections[i]);
        if (!has_prefix(norm, n, k_interjections[i])) {
            continue;
        }
        size_t j = wl;
        if (j < n && strchr(",.!:", norm[j]) != NULL) {
            j++;
        }
        if (j < n && norm[j] == ' ') {
            return j + 1;
        }
    }
    return 0;
}

static bool contains(const char *text, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= len; i++) {
        if (memcmp(text + i, needle, nl) == 0) {
            return true;
        }
    }
    return false;
}

/* Share of non-whitespace characters that are ASCII digits or one of "+-*=/^<>". */
static double math_density(const char *text, size_t len)
{
    size_t chars = 0;
    size_t math = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (is_ws(c) || (c >= 0x80 && c <= 0xBF)) {
            continue;
        }
        chars++;
        if ((c >= '0' && c <= '9') || (c != 0 && strchr("+-*=/^<>", c) != NULL)) {
            math++;
        }
    }
    return chars == 0 ? 0.0 : (double)math / (double)chars;
}

enum pd_step_kind pd_steps_classify(const char *text, size_t len,
                                    const struct pd_steps_params *params)
{
    struct pd_steps_params defaults = pd_steps_default_params();
    const struct pd_steps_params *p = params != NULL ? params : &defaults;
    if (text == NULL) {
        len = 0;
        text = "";
    }
    char norm[KIND_NORM_MAX];
    size_t n = kind_normalise(text, len, norm, sizeof(norm));
    if (contains(text, len, "\\boxed") || any_prefix(norm, n, k_conclude_prefixes)) {
        return PD_STEP_CONCLUDE;
    }
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        if (any_prefix(norm + off, n - off, k_check_prefixes)) {
            return PD_STEP_CHECK;
        }
        size_t skip = interjection_len(norm + off, n - off);
        if (skip == 0) {
            break;
        }
        off += skip;
    }
    if (any_prefix(norm, n, k_backtrack_prefixes)) {
        return PD_STEP_BACKTRACK;
    }
    if (p->compute_density > 0.0f && math_density(text, len) >= (double)p->compute_density) {
        return PD_STEP_COMPUTE;
    }
    if (any_prefix(norm, n, k_plan_prefixes)) {
        return PD_STEP_PLAN;
    }
    return PD_STEP_COMPUTE;
}

/* ---- batch ---------------------------------------------------------------------------- */

/* True when a marker of ms starts at T[s] (sentence start and word boundary included). */
static bool batch_marker_at(const char *T, size_t n, size_t s, const struct marker_set *ms)
{
    size_t i = s;
    while (i > 0 && is_hws((unsigned char)T[i - 1])) {
        i--;
    }
    /* i is now one past the previous non-horizontal-whitespace byte (or 0). */
    bool start = i == 0 || T[i - 1] == '\n' || (is_sentence_end((unsigned char)T[i - 1]) &&
                                                 i < s);
    if (!start) {
        return false;
    }
    for (int m = 0; m < ms->n; m++) {
        size_t ml = ms->len[m];
        if (s + ml > n) {
            continue;
        }
        bool eq = true;
        for (size_t k = 0; eq && k < ml; k++) {
            eq = ascii_lower((unsigned char)T[s + k]) == (unsigned char)ms->text[m][k];
        }
        if (eq && (s + ml == n || !is_word((unsigned char)T[s + ml]))) {
            return true;
        }
    }
    return false;
}

/* Segments one run toks[idx[0..n_run)] (all in the span, no gap inside). */
static enum pd_status batch_run(const struct pd_token_rec *toks, const size_t *idx,
                                size_t n_run, const struct pd_steps_params *p,
                                const struct marker_set *ms, struct pd_steps_list *out,
                                int32_t *next_index, struct pd_err *err)
{
    enum pd_status st = PD_OK;
    size_t *off = pd_malloc_array(n_run + 1, sizeof(size_t));
    size_t *cand = pd_malloc_array(n_run, sizeof(size_t));
    struct pd_buf T;
    pd_buf_init(&T);
    if (off == NULL || cand == NULL) {
        st = pd_err_set(err, PD_ENOMEM, "steps: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_run; i++) {
        const struct pd_token_rec *t = &toks[idx[i]];
        off[i] = T.len;
        if (t->text_len > 0 && !pd_buf_append(&T, t->text, t->text_len)) {
            st = pd_err_set(err, PD_ENOMEM, "steps: out of memory");
            goto done;
        }
    }
    off[n_run] = T.len;
    const char *text = T.data != NULL ? T.data : "";
    size_t n = T.len;
    /* Candidate tokens in increasing order (offsets are visited in order). */
    size_t n_cand = 0;
    size_t tok = 0;
    size_t nl = 0;
    bool in_ws = false;
    for (size_t s = 0; s < n; s++) {
        unsigned char c = (unsigned char)text[s];
        if (is_ws(c)) {
            in_ws = true;
            nl += c == '\n';
            continue;
        }
        bool split = (p->split_blank_lines && in_ws && nl >= 2) ||
                     (p->split_markers && batch_marker_at(text, n, s, ms));
        in_ws = false;
        nl = 0;
        if (!split) {
            continue;
        }
        while (off[tok + 1] <= s) { /* the token containing byte s */
            tok++;
        }
        if (n_cand == 0 || cand[n_cand - 1] != tok) {
            cand[n_cand++] = tok;
        }
    }
    /* Boundaries are tried in token order: the candidates, and every token at which the
     * open step holds PD_STEPS_MAX_TOKENS tokens or more (the length limit). */
    size_t begin = 0, ci = 0;
    for (size_t b = 1; b < n_run && st == PD_OK; b++) {
        while (ci < n_cand && cand[ci] < b) {
            ci++;
        }
        bool natural = ci < n_cand && cand[ci] == b;
        if ((!natural && b - begin < PD_STEPS_MAX_TOKENS) ||
            trimmed_chars(text + off[begin], off[b] - off[begin]) < (size_t)p->min_chars) {
            continue;
        }
        enum pd_step_kind kind = pd_steps_classify(text + off[begin], off[b] - off[begin], p);
        st = push_step(out, (*next_index)++, toks[idx[begin]].pos, toks[idx[b - 1]].pos + 1,
                       kind, err);
        begin = b;
    }
    if (st == PD_OK && begin < n_run) {
        enum pd_step_kind kind = pd_steps_classify(text + off[begin], n - off[begin], p);
        st = push_step(out, (*next_index)++, toks[idx[begin]].pos,
                       toks[idx[n_run - 1]].pos + 1, kind, err);
    }
done:
    free(off);
    free(cand);
    pd_buf_deinit(&T);
    return st;
}

enum pd_status pd_steps_segment(const struct pd_token_rec *toks, size_t n_tok,
                                const struct pd_steps_params *params,
                                struct pd_steps_list *out, struct pd_err *err)
{
    struct pd_steps_params defaults = pd_steps_default_params();
    const struct pd_steps_params *p = params != NULL ? params : &defaults;
    struct marker_set ms;
    if (out == NULL || (toks == NULL && n_tok > 0)) {
        return pd_err_set(err, PD_EINVAL, "steps: NULL tokens or output list");
    }
    enum pd_status st = check_params(p, &ms, err);
    for (size_t i = 0; i < n_tok && st == PD_OK; i++) {
        st = check_token(&toks[i], i, i > 0, i > 0 ? toks[i - 1].pos : 0, err);
    }
    if (st != PD_OK || n_tok == 0) {
        return st;
    }
    enum pd_steps_span span = p->span;
    for (size_t i = 0; i < n_tok && span == PD_STEPS_SPAN_AUTO; i++) {
        if (toks[i].role == PD_ROLE_THINK) {
            span = PD_STEPS_SPAN_THINK;
        } else if (toks[i].role == PD_ROLE_ANSWER) {
            span = PD_STEPS_SPAN_COMPLETION;
        }
    }
    if (span == PD_STEPS_SPAN_AUTO) {
        span = PD_STEPS_SPAN_COMPLETION;
    }
    /* in_span[i]; for THINK, an INJECTED token needs THINK as its nearest non-injected
     * neighbour on both sides (left pass then right pass). */
    bool *in_span = pd_calloc(n_tok, sizeof(bool));
    size_t *idx = pd_malloc_array(n_tok, sizeof(size_t));
    if (in_span == NULL || idx == NULL) {
        free(in_span);
        free(idx);
        return pd_err_set(err, PD_ENOMEM, "steps: out of memory for %zu tokens", n_tok);
    }
    if (span == PD_STEPS_SPAN_COMPLETION) {
        for (size_t i = 0; i < n_tok; i++) {
            in_span[i] = toks[i].role != PD_ROLE_PROMPT;
        }
    } else {
        bool left_think = false;
        for (size_t i = 0; i < n_tok; i++) {
            if (toks[i].role == PD_ROLE_INJECTED) {
                in_span[i] = left_think;
            } else {
                left_think = toks[i].role == PD_ROLE_THINK;
                in_span[i] = left_think;
            }
        }
        bool right_think = false;
        for (size_t i = n_tok; i-- > 0;) {
            if (toks[i].role == PD_ROLE_INJECTED) {
                in_span[i] = in_span[i] && right_think;
            } else {
                right_think = toks[i].role == PD_ROLE_THINK;
            }
        }
    }
    int32_t next_index = 0;
    size_t i = 0;
    while (i < n_tok && st == PD_OK) {
        if (!in_span[i]) {
            i++;
            continue;
        }
        size_t n_run = 0;
        while (i < n_tok && in_span[i]) {
            idx[n_run++] = i++;
        }
        st = batch_run(toks, idx, n_run, p, &ms, out, &next_index, err);
    }
    free(in_span);
    free(idx);
    return st;
}

/* ---- incremental ---------------------------------------------------------------------- */

enum seg_mode { MODE_UNDECIDED, MODE_THINK, MODE_COMPLETION };

/* Sentence context before the next byte: what the last non-horizontal-whitespace byte of
 * the run was. */
enum seg_ctx {
    CTX_START,    /* none yet in this run */
    CTX_NL,       /* '\n' */
    CTX_PUNCT,    /* '.', '!' or '?' with nothing after it yet */
    CTX_PUNCT_SP, /* '.', '!' or '?' followed by horizontal whitespace */
    CTX_OTHER
};

/* A token held back until its span membership is known. */
struct held_tok {
    int64_t pos;
    enum pd_role role;
    char *text; /* owned copy */
    size_t len;
};

struct held_queue {
    struct held_tok *items; /* owned: [n] */
    size_t n;
    size_t cap;
};

struct pd_steps_seg {
    struct pd_steps_params params;
    struct marker_set ms;
    enum seg_mode mode;
    bool have_prev;
    int64_t prev_pos;
    size_t n_fed;
    bool prev_think;            /* THINK mode: the last non-injected token was THINK */
    struct held_queue undecided; /* AUTO: tokens since the first INJECTED, mode unknown */
    struct held_queue pending;   /* THINK: INJECTED tokens after a THINK token */
    /* run state */
    bool in_run;
    enum seg_ctx ctx;
    bool in_ws;
    size_t ws_nl;
    bool m_active;     /* a marker match is in progress */
    size_t m_tok;      /* run token index holding the marker's first byte */
    uint32_t m_alive;  /* markers still matching */
    size_t m_k;        /* bytes matched so far */
    size_t run_off;    /* bytes of the run fed so far */
    size_t n_run_tok;  /* tokens of the run fed so far */
    /* open step: tokens tok_base .. tok_base + n_tok - 1 of the run, bytes from step_off */
    size_t tok_base;
    size_t n_tok;
    size_t cap_tok;
    int64_t *tok_pos;  /* owned: [cap_tok] */
    size_t *tok_off;   /* owned: [cap_tok] run offsets */
    size_t step_off;
    struct pd_buf text; /* the open step's bytes */
    bool force_pending;  /* the length limit waits for an undecided marker match */
    size_t force_from;   /* ... from this run token on */
    int32_t next_index;
};

static void held_clear(struct held_queue *q)
{
    for (size_t i = 0; i < q->n; i++) {
        free(q->items[i].text);
    }
    q->n = 0;
}

static void held_free(struct held_queue *q)
{
    held_clear(q);
    free(q->items);
    q->items = NULL;
    q->cap = 0;
}

static enum pd_status held_push(struct held_queue *q, int64_t pos, enum pd_role role,
                                const char *text, size_t len, struct pd_err *err)
{
    struct held_tok *items = pd_grow_array(q->items, &q->cap, q->n + 1, sizeof(*items));
    if (items == NULL) {
        return pd_err_set(err, PD_ENOMEM, "steps: out of memory");
    }
    q->items = items;
    char *copy = pd_strndup(len > 0 ? text : "", len);
    if (copy == NULL) {
        return pd_err_set(err, PD_ENOMEM, "steps: out of memory");
    }
    q->items[q->n++] = (struct held_tok){.pos = pos, .role = role, .text = copy, .len = len};
    return PD_OK;
}

enum pd_status pd_steps_seg_open(const struct pd_steps_params *params,
                                 struct pd_steps_seg **out, struct pd_err *err)
{
    if (out == NULL) {
        return pd_err_set(err, PD_EINVAL, "steps: NULL out");
    }
    *out = NULL;
    struct pd_steps_params defaults = pd_steps_default_params();
    const struct pd_steps_params *p = params != NULL ? params : &defaults;
    struct pd_steps_seg *s = pd_calloc(1, sizeof(*s));
    if (s == NULL) {
        return pd_err_set(err, PD_ENOMEM, "steps: out of memory");
    }
    enum pd_status st = check_params(p, &s->ms, err);
    if (st != PD_OK) {
        free(s);
        return st;
    }
    s->params = *p;
    s->params.markers = NULL; /* the copied table in ms is used from here on */
    s->mode = p->span == PD_STEPS_SPAN_THINK        ? MODE_THINK
              : p->span == PD_STEPS_SPAN_COMPLETION ? MODE_COMPLETION
                                                    : MODE_UNDECIDED;
    pd_buf_init(&s->text);
    *out = s;
    return PD_OK;
}

void pd_steps_seg_close(struct pd_steps_seg **sp)
{
    if (sp == NULL || *sp == NULL) {
        return;
    }
    struct pd_steps_seg *s = *sp;
    held_free(&s->undecided);
    held_free(&s->pending);
    free(s->tok_pos);
    free(s->tok_off);
    pd_buf_deinit(&s->text);
    free(s);
    *sp = NULL;
}

bool pd_steps_seg_open_step(const struct pd_steps_seg *s, int64_t *pos_begin)
{
    if (s == NULL || !s->in_run || s->n_tok == 0) {
        return false;
    }
    if (pos_begin != NULL) {
        *pos_begin = s->tok_pos[0];
    }
    return true;
}

/* Closes the open step before run token b (candidate rule). */
static enum pd_status seg_candidate(struct pd_steps_seg *s, size_t b,
                                    struct pd_steps_list *out, struct pd_err *err)
{
    if (b <= s->tok_base) {
        return PD_OK;
    }
    size_t k = b - s->tok_base; /* tokens in the closing step */
    size_t nbytes = s->tok_off[k] - s->step_off;
    if (trimmed_chars(s->text.data, nbytes) < (size_t)s->params.min_chars) {
        return PD_OK;
    }
    enum pd_step_kind kind = pd_steps_classify(s->text.data, nbytes, &s->params);
    enum pd_status st = push_step(out, s->next_index, s->tok_pos[0], s->tok_pos[k - 1] + 1,
                                  kind, err);
    if (st != PD_OK) {
        return st;
    }
    s->next_index++;
    memmove(s->tok_pos, s->tok_pos + k, (s->n_tok - k) * sizeof(*s->tok_pos));
    memmove(s->tok_off, s->tok_off + k, (s->n_tok - k) * sizeof(*s->tok_off));
    s->n_tok -= k;
    s->tok_base = b;
    memmove(s->text.data, s->text.data + nbytes, s->text.len - nbytes);
    s->text.len -= nbytes;
    s->text.data[s->text.len] = '\0';
    s->step_off += nbytes;
    return PD_OK;
}

/* The length limit at run tokens from..to (the first that closes the open step, which
 * must hold at least PD_STEPS_MAX_TOKENS tokens before it; min_chars still applies). */
static enum pd_status seg_force(struct pd_steps_seg *s, size_t from, size_t to,
                                struct pd_steps_list *out, struct pd_err *err)
{
    for (size_t b = from; b <= to; b++) {
        if (b <= s->tok_base || b - s->tok_base < PD_STEPS_MAX_TOKENS) {
            continue;
        }
        size_t base = s->tok_base;
        enum pd_status st = seg_candidate(s, b, out, err);
        if (st != PD_OK || s->tok_base != base) {
            return st;
        }
    }
    return PD_OK;
}

/* A marker match was decided: a length limit that waited for it applies now. */
static enum pd_status seg_force_pending(struct pd_steps_seg *s, size_t tok,
                                        struct pd_steps_list *out, struct pd_err *err)
{
    if (!s->force_pending || s->m_active) {
        return PD_OK;
    }
    s->force_pending = false;
    return seg_force(s, s->force_from, tok, out, err);
}

/* One byte of the run, inside run token `tok`. */
static enum pd_status seg_byte(struct pd_steps_seg *s, unsigned char c, size_t tok,
                               struct pd_steps_list *out, struct pd_err *err)
{
    enum pd_status st = PD_OK;
    const struct marker_set *ms = &s->ms;
    /* 1. Advance a marker match; a completed marker followed by a non-word byte splits. */
    if (s->m_active) {
        bool matched = false;
        for (int m = 0; m < ms->n; m++) {
            if ((s->m_alive & (1u << m)) && s->m_k == ms->len[m] && !is_word(c)) {
                matched = true;
            }
        }
        if (matched) {
            s->m_active = false;
            st = seg_candidate(s, s->m_tok, out, err);
            if (st == PD_OK) {
                st = seg_force_pending(s, tok, out, err);
            }
            if (st != PD_OK) {
                return st;
            }
        } else {
            for (int m = 0; m < ms->n; m++) {
                if ((s->m_alive & (1u << m)) == 0) {
                    continue;
                }
                if (s->m_k == ms->len[m] ||
                    ascii_lower(c) != (unsigned char)ms->text[m][s->m_k]) {
                    s->m_alive &= ~(1u << m);
                }
            }
            s->m_k++;
            s->m_active = s->m_alive != 0;
            st = seg_force_pending(s, tok, out, err);
            if (st != PD_OK) {
                return st;
            }
        }
    }
    bool ws = is_ws(c);
    /* 2. A word at a sentence start may begin a marker. */
    if (!ws && s->params.split_markers && !s->m_active &&
        (s->ctx == CTX_START || s->ctx == CTX_NL || s->ctx == CTX_PUNCT_SP)) {
        uint32_t alive = 0;
        for (int m = 0; m < ms->n; m++) {
            if ((unsigned char)ms->text[m][0] == ascii_lower(c)) {
                alive |= 1u << m;
            }
        }
        if (alive != 0) {
            s->m_active = true;
            s->m_alive = alive;
            s->m_k = 1;
            s->m_tok = tok;
        }
    }
    /* 3. Blank lines: the first non-whitespace byte after >= 2 newlines splits. */
    if (!ws) {
        if (s->params.split_blank_lines && s->in_ws && s->ws_nl >= 2) {
            st = seg_candidate(s, tok, out, err);
        }
        s->in_ws = false;
        s->ws_nl = 0;
    } else {
        s->in_ws = true;
        s->ws_nl += c == '\n';
    }
    /* 4. Sentence context. */
    if (c == '\n') {
        s->ctx = CTX_NL;
    } else if (is_hws(c)) {
        if (s->ctx == CTX_PUNCT) {
            s->ctx = CTX_PUNCT_SP;
        }
    } else if (is_sentence_end(c)) {
        s->ctx = CTX_PUNCT;
    } else {
        s->ctx = CTX_OTHER;
    }
    return st;
}

/* Appends a span token to the current run (opening one if needed). */
static enum pd_status seg_run_token(struct pd_steps_seg *s, int64_t pos, const char *text,
                                    size_t len, struct pd_steps_list *out, struct pd_err *err)
{
    if (!s->in_run) {
        s->in_run = true;
        s->ctx = CTX_START;
        s->in_ws = false;
        s->ws_nl = 0;
        s->m_active = false;
        s->run_off = 0;
        s->n_run_tok = 0;
        s->tok_base = 0;
        s->n_tok = 0;
        s->step_off = 0;
        s->text.len = 0;
        s->force_pending = false;
    }
    if (s->n_tok == s->cap_tok) {
        size_t cap = s->cap_tok ? s->cap_tok * 2 : 64;
        int64_t *tp = pd_realloc_array(s->tok_pos, cap, sizeof(*tp));
        if (tp == NULL) {
            return pd_err_set(err, PD_ENOMEM, "steps: out of memory");
        }
        s->tok_pos = tp;
        size_t *to = pd_realloc_array(s->tok_off, cap, sizeof(*to));
        if (to == NULL) {
            return pd_err_set(err, PD_ENOMEM, "steps: out of memory");
        }
        s->tok_off = to;
        s->cap_tok = cap;
    }
    if (!pd_buf_append(&s->text, len > 0 ? text : "", len)) {
        return pd_err_set(err, PD_ENOMEM, "steps: out of memory");
    }
    s->tok_pos[s->n_tok] = pos;
    s->tok_off[s->n_tok] = s->run_off;
    s->n_tok++;
    size_t tok = s->n_run_tok++;
    if (s->n_tok > PD_STEPS_MAX_TOKENS) {
        /* length limit: the open step ends before this token (docs/analysis.md); while a
         * marker match is undecided it may split earlier, so the limit waits for it */
        if (s->m_active) {
            if (!s->force_pending) {
                s->force_pending = true;
                s->force_from = tok;
            }
        } else {
            enum pd_status st = seg_force(s, tok, tok, out, err);
            if (st != PD_OK) {
                return st;
            }
        }
    }
    for (size_t i = 0; i < len; i++) {
        enum pd_status st = seg_byte(s, (unsigned char)text[i], tok, out, err);
        if (st != PD_OK) {
            return st;
        }
    }
    s->run_off += len;
    return PD_OK;
}

/* Ends the current run: resolves a marker match at the end, emits the last step. */
static enum pd_status seg_end_run(struct pd_steps_seg *s, struct pd_steps_list *out,
                                  struct pd_err *err)
{
    if (!s->in_run) {
        return PD_OK;
    }
    enum pd_status st = PD_OK;
    if (s->m_active) {
        bool matched = false;
        for (int m = 0; m < s->ms.n; m++) {
            if ((s->m_alive & (1u << m)) && s->m_k == s->ms.len[m]) {
                matched = true;
            }
        }
        s->m_active = false;
        if (matched) {
            st = seg_candidate(s, s->m_tok, out, err);
        }
        if (st == PD_OK && s->n_run_tok > 0) {
            st = seg_force_pending(s, s->n_run_tok - 1, out, err);
        }
    }
    s->force_pending = false;
    if (st == PD_OK && s->n_tok > 0) {
        enum pd_step_kind kind = pd_steps_classify(s->text.data, s->text.len, &s->params);
        st = push_step(out, s->next_index, s->tok_pos[0], s->tok_pos[s->n_tok - 1] + 1, kind,
                       err);
        if (st == PD_OK) {
            s->next_index++;
        }
    }
    s->in_run = false;
    s->n_tok = 0;
    s->text.len = 0;
    return st;
}

/* Routes a token once the span mode is known. */
static enum pd_status seg_route(struct pd_steps_seg *s, int64_t pos, enum pd_role role,
                                const char *text, size_t len, struct pd_steps_list *out,
                                struct pd_err *err)
{
    enum pd_status st = PD_OK;
    if (s->mode == MODE_COMPLETION) {
        if (role == PD_ROLE_PROMPT) {
            return seg_end_run(s, out, err);
        }
        return seg_run_token(s, pos, text, len, out, err);
    }
    /* MODE_THINK */
    if (role == PD_ROLE_INJECTED) {
        if (s->prev_think) {
            return held_push(&s->pending, pos, role, text, len, err);
        }
        return seg_end_run(s, out, err);
    }
    if (role == PD_ROLE_THINK) {
        for (size_t i = 0; i < s->pending.n && st == PD_OK; i++) {
            const struct held_tok *h = &s->pending.items[i];
            st = seg_run_token(s, h->pos, h->text, h->len, out, err);
        }
        held_clear(&s->pending);
        s->prev_think = true;
        if (st == PD_OK) {
            st = seg_run_token(s, pos, text, len, out, err);
        }
        return st;
    }
    held_clear(&s->pending); /* INJECTED tokens not followed by THINK: outside the span */
    s->prev_think = false;
    return seg_end_run(s, out, err);
}

static enum pd_status seg_replay_undecided(struct pd_steps_seg *s, struct pd_steps_list *out,
                                           struct pd_err *err)
{
    enum pd_status st = PD_OK;
    for (size_t i = 0; i < s->undecided.n && st == PD_OK; i++) {
        const struct held_tok *h = &s->undecided.items[i];
        st = seg_route(s, h->pos, h->role, h->text, h->len, out, err);
    }
    held_clear(&s->undecided);
    return st;
}

enum pd_status pd_steps_seg_feed(struct pd_steps_seg *s, const struct pd_token_rec *tok,
                                 struct pd_steps_list *out, struct pd_err *err)
{
    if (s == NULL || out == NULL) {
        return pd_err_set(err, PD_EINVAL, "steps: NULL segmenter or output list");
    }
    enum pd_status st = check_token(tok, s->n_fed, s->have_prev, s->prev_pos, err);
    if (st != PD_OK) {
        return st;
    }
    s->n_fed++;
    s->have_prev = true;
    s->prev_pos = tok->pos;
    if (s->mode == MODE_UNDECIDED) {
        if (tok->role == PD_ROLE_THINK || tok->role == PD_ROLE_ANSWER) {
            s->mode = tok->role == PD_ROLE_THINK ? MODE_THINK : MODE_COMPLETION;
            st = seg_replay_undecided(s, out, err);
        } else if (tok->role == PD_ROLE_INJECTED || s->undecided.n > 0) {
            return held_push(&s->undecided, tok->pos, tok->role, tok->text, tok->text_len,
                             err);
        } else {
            return PD_OK; /* a PROMPT token before anything else: outside the span */
        }
    }
    if (st != PD_OK) {
        return st;
    }
    return seg_route(s, tok->pos, tok->role, tok->text, tok->text_len, out, err);
}

enum pd_status pd_steps_seg_finish(struct pd_steps_seg *s, struct pd_steps_list *out,
                                   struct pd_err *err)
{
    if (s == NULL || out == NULL) {
        return pd_err_set(err, PD_EINVAL, "steps: NULL segmenter or output list");
    }
    enum pd_status st = PD_OK;
    if (s->mode == MODE_UNDECIDED) {
        s->mode = MODE_COMPLETION;
        st = seg_replay_undecided(s, out, err);
    }
    held_clear(&s->pending);
    if (st == PD_OK) {
        st = seg_end_run(s, out, err);
    }
    /* A new trace starts from the configured span mode with fresh numbering. */
    s->mode = s->params.span == PD_STEPS_SPAN_THINK        ? MODE_THINK
              : s->params.span == PD_STEPS_SPAN_COMPLETION ? MODE_COMPLETION
                                                           : MODE_UNDECIDED;
    s->prev_think = false;
    s->next_index = 0;
    return st;
}
