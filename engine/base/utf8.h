/* utf8.h - UTF-8 helpers shared by the tokenizer, store and front end.
 *
 * Tokens can end in the middle of a UTF-8 sequence; these helpers let callers find
 * complete characters and replace invalid bytes so that broken bytes are never printed.
 * Pure functions, no allocation, thread-safe. */
#ifndef PD_UTF8_H
#define PD_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length of the UTF-8 sequence that starts with byte c (1..4), or 0 if c cannot start
 * one (continuation byte or invalid lead). */
size_t pd_utf8_lead_len(unsigned char c);

/* Decodes one code point from s[0..n). On success stores it in *cp and returns the
 * sequence length (1..4). Returns 0 for invalid, overlong, surrogate or truncated
 * sequences. */
size_t pd_utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Encodes cp into out (at least 4 bytes). Returns the length, 0 for invalid cp. */
size_t pd_utf8_encode(uint32_t cp, char *out);

/* True when s[0..n) is entirely valid UTF-8. */
bool pd_utf8_valid(const char *s, size_t n);

/* Number of bytes at the end of s[0..n) that form an incomplete (but so far valid)
 * sequence prefix: 0..3. Streaming printers hold these back until more bytes arrive. */
size_t pd_utf8_incomplete_tail(const char *s, size_t n);

#endif
