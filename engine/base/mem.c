/* mem.c - checked allocation helpers and the growable byte buffer. */
#include "mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void *pd_calloc(size_t n, size_t size)
{
    uint64_t total;
    if (!pd_mul(n, size, &total) || total > SIZE_MAX) {
        return NULL;
    }
    return calloc(n ? n : 1, size ? size : 1);
}

void *pd_malloc_array(size_t n, size_t size)
{
    uint64_t total;
    if (!pd_mul(n, size, &total) || total > SIZE_MAX) {
        return NULL;
    }
    return malloc(total ? (size_t)total : 1);
}

void *pd_big_alloc(size_t bytes)
{
    if (bytes == 0) {
        return NULL;
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice: ignored where unsupported */
#endif
    return p;
}

void pd_big_free(void *p, size_t bytes)
{
    if (p) {
        (void)munmap(p, bytes);
    }
}

void *pd_realloc_array(void *p, size_t n, size_t size)
{
    uint64_t total;
    if (!pd_mul(n, size, &total) || total > SIZE_MAX) {
        return NULL;
    }
    return realloc(p, total ? (size_t)total : 1);
}

void *pd_grow_array(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap && *cap > 0) {
        return p;
    }
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2) {
            return NULL;
        }
        n *= 2;
    }
    void *q = pd_realloc_array(p, n, elem);
    if (q) {
        *cap = n;
    }
    return q;
}

char *pd_strndup(const char *s, size_t n)
{
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = '\0';
    }
    return r;
}

char *pd_strdup(const char *s)
{
    return pd_strndup(s, strlen(s));
}

void pd_buf_init(struct pd_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void pd_buf_deinit(struct pd_buf *b)
{
    free(b->data);
    pd_buf_init(b);
}

static bool buf_reserve(struct pd_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1) {
        return false;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return true;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

bool pd_buf_append(struct pd_buf *b, const void *p, size_t n)
{
    if (!buf_reserve(b, n)) {
        return false;
    }
    if (n) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

bool pd_buf_puts(struct pd_buf *b, const char *s)
{
    return pd_buf_append(b, s, strlen(s));
}

bool pd_buf_printf(struct pd_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(b, (size_t)n)) {
        return false;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return true;
}

char *pd_buf_take(struct pd_buf *b)
{
    char *d = b->data;
    if (!d) {
        d = calloc(1, 1);
    }
    pd_buf_init(b);
    return d;
}
