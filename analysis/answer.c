/* answer.c - answer extraction and matching for evaluation (see answer.h). */
#include "answer.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Last occurrence of needle in h[0..n), or NULL. */
static const char *rfind(const char *h, size_t n, const char *needle)
{
    size_t m = needle ? strlen(needle) : 0;
    if (m == 0 || m > n) {
        return NULL;
    }
    for (size_t i = n - m + 1; i-- > 0;) {
        if (memcmp(h + i, needle, m) == 0) {
            return h + i;
        }
    }
    return NULL;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static void put(char out[PD_ANSWER_MAX], const char *s, size_t n)
{
    while (n > 0 && (s[0] == ' ' || s[0] == '\n' || s[0] == '\t' || s[0] == '\r')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' ||
                     s[n - 1] == '\r')) {
        n--;
    }
    if (n > PD_ANSWER_MAX - 1) {
        n = PD_ANSWER_MAX - 1;
    }
    memcpy(out, s, n);
    out[n] = '\0';
}

/* The content of the last \boxed{...} with balanced braces; false when there is none. */
static bool last_boxed(const char *s, size_t n, char out[PD_ANSWER_MAX])
{
    const char *b = rfind(s, n, "\\boxed{");
    while (b) {
        size_t i = (size_t)(b - s) + 7, depth = 1, start = i;
        for (; i < n && depth > 0; i++) {
            depth += s[i] == '{';
            depth -= s[i] == '}';
        }
        if (depth == 0) {
            put(out, s + start, i - 1 - start);
            return true;
        }
        b = rfind(s, (size_t)(b - s), "\\boxed{"); /* unclosed: try an earlier one */
    }
    return false;
}

/* Length of the number starting at s[i] (digits, thousands commas, decimal part). */
static size_t number_len(const char *s, size_t n, size_t i)
{
    size_t j = i;
    while (j < n && (is_digit(s[j]) || (s[j] == ',' && j + 1 < n && is_digit(s[j + 1]) &&
                                         j > i))) {
        j++;
    }
    if (j + 1 < n && s[j] == '.' && is_digit(s[j + 1])) {
        j++;
        while (j < n && is_digit(s[j])) {
            j++;
        }
    }
    return j - i;
}

static bool last_number(const char *s, size_t n, char out[PD_ANSWER_MAX])
{
    size_t best = n, best_len = 0;
    for (size_t i = 0; i < n;) {
        if (is_digit(s[i]) && (i == 0 || !is_digit(s[i - 1]))) {
            size_t l = number_len(s, n, i);
            size_t start = i;
            if (i > 0 && s[i - 1] == '-' && (i < 2 || !is_alnum(s[i - 2]))) {
                start = i - 1;
            }
            best = start;
            best_len = i + l - start;
            i += l;
        } else {
            i++;
        }
    }
    if (best == n) {
        return false;
    }
    put(out, s + best, best_len);
    return true;
}

bool pd_answer_extract(const char *text, size_t len, const char *think_open,
                       const char *think_close, char out[PD_ANSWER_MAX])
{
    out[0] = '\0';
    if (!text) {
        return false;
    }
    const char *close = rfind(text, len, think_close);
    if (close) {
        size_t skip = (size_t)(close - text) + strlen(think_close);
        text += skip;
        len -= skip;
    } else if (rfind(text, len, think_open)) {
        return false; /* thinking opened and never closed */
    }
    return last_boxed(text, len, out) || last_number(text, len, out);
}

/* Reads s as a number (commas dropped, one trailing '.' ignored). */
static bool as_number(const char *s, double *v)
{
    char buf[PD_ANSWER_MAX];
    size_t k = 0;
    for (; *s && k + 1 < sizeof buf; s++) {
        if (*s != ',') {
            buf[k++] = *s;
        }
    }
    if (*s) {
        return false;
    }
    while (k > 0 && (buf[k - 1] == ' ' || buf[k - 1] == '\n')) {
        k--;
    }
    if (k > 0 && buf[k - 1] == '.') {
        k--;
    }
    buf[k] = '\0';
    size_t i = 0;
    while (buf[i] == ' ') {
        i++;
    }
    if (!buf[i]) {
        return false;
    }
    char *end;
    *v = strtod(buf + i, &end);
    return *end == '\0' && isfinite(*v) && (is_digit(buf[i]) || buf[i] == '-' || buf[i] == '+');
}

static bool text_equal(const char *a, const char *b)
{
    char x[PD_ANSWER_MAX], y[PD_ANSWER_MAX];
    put(x, a, strlen(a));
    put(y, b, strlen(b));
    size_t n = strlen(x);
    if (n != strlen(y)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = x[i], d = y[i];
        c = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
        d = d >= 'A' && d <= 'Z' ? (char)(d + 32) : d;
        if (c != d) {
            return false;
        }
    }
    return true;
}

bool pd_answer_match(const char *extracted, const char *reference)
{
    if (!extracted || !reference || !extracted[0]) {
        return false;
    }
    const char *hash = rfind(reference, strlen(reference), "####");
    char ref[PD_ANSWER_MAX];
    const char *r = hash ? hash + 4 : reference;
    put(ref, r, strlen(r));
    double a, b;
    if (as_number(extracted, &a) && as_number(ref, &b)) {
        return a == b;
    }
    return text_equal(extracted, ref);
}
