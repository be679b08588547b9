/* mem.h - checked allocation and overflow-checked size arithmetic.
 *
 * Every size computed from untrusted input goes through pd_mul/pd_add, which report
 * overflow instead of wrapping. Allocation helpers return NULL on failure (never abort);
 * callers map that to PD_ENOMEM. */
#ifndef PD_MEM_H
#define PD_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* *out = a * b; returns false (and leaves *out unspecified) on overflow. */
static inline bool pd_mul(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* *out = a + b; returns false on overflow. */
static inline bool pd_add(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* calloc(n, size) with the product overflow-checked; NULL on overflow or failure. */
void *pd_calloc(size_t n, size_t size);

/* malloc(n * size) with the product overflow-checked; NULL on overflow or failure. */
void *pd_malloc_array(size_t n, size_t size);

/* realloc to n * size, overflow-checked; on failure returns NULL and p stays valid. */
void *pd_realloc_array(void *p, size_t n, size_t size);

/* Makes room for at least `need` elements of `elem` bytes in the array p of capacity
 * *cap, doubling (from 16) so appends are amortised O(1). Returns the array to use from
 * now on (p itself when it already had room) and updates *cap; on failure returns NULL,
 * and p and *cap are unchanged. Usage: `T *na = pd_grow_array(a, &cap, n + 1, sizeof *a);
 * if (!na) fail; a = na;` */
void *pd_grow_array(void *p, size_t *cap, size_t need, size_t elem);

/* `bytes` of zeroed memory in an anonymous mapping of its own, advised for transparent
 * huge pages where the system has them: for large arrays read in strides (the KV cache,
 * packed weights), where 4 KiB pages cost a TLB miss every few rows. NULL on failure or
 * for 0 bytes. Release with pd_big_free and the same size. */
void *pd_big_alloc(size_t bytes);
void pd_big_free(void *p, size_t bytes);

/* malloc'd copy of s[0..n) plus a NUL; NULL on failure. Owned by the caller. */
char *pd_strndup(const char *s, size_t n);

/* malloc'd copy of a NUL-terminated string; NULL on failure. Owned by the caller. */
char *pd_strdup(const char *s);

/* A growable byte buffer. init zeroes; deinit frees; data is owned by the buffer and
 * always NUL-terminated after a successful append (len excludes the NUL). */
struct pd_buf {
    char *data;
    size_t len;
    size_t cap;
};

void pd_buf_init(struct pd_buf *b);
void pd_buf_deinit(struct pd_buf *b);
/* Appends n bytes; returns false on allocation failure (buffer unchanged). */
bool pd_buf_append(struct pd_buf *b, const void *p, size_t n);
bool pd_buf_puts(struct pd_buf *b, const char *s);
bool pd_buf_printf(struct pd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Takes the data out of the buffer (caller owns it; the buffer is reset). */
char *pd_buf_take(struct pd_buf *b);

#endif
