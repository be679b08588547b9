/* unicode.h - code point classes and lenient UTF-8 decoding for the tokenizers.
 *
 * The byte-level BPE pre-tokenizers split text by code point class (letter, number,
 * white space, ...). The classes come from a generated range table (unicode_tables.c,
 * Unicode general categories plus the White_Space property); lookups are a 128-entry
 * ASCII table and a binary search above that.
 *
 * pd_unicode_decode_lenient reproduces the decoding rules the reference tokenizer applies
 * to raw input text, so that malformed input tokenizes the same way: a structurally
 * valid sequence is accepted even when overlong or a surrogate, anything else consumes
 * one byte and yields U+FFFD.
 *
 * Pure functions over static data: no allocation, thread-safe. */
#ifndef PD_UNICODE_H
#define PD_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pd_unicode_class {
    PD_UNICODE_LETTER = 1u << 0, /* general category L* (\p{L}) */
    PD_UNICODE_NUMBER = 1u << 1, /* N* (\p{N}) */
    PD_UNICODE_PUNCT = 1u << 2,  /* P* (\p{P}) */
    PD_UNICODE_SYMBOL = 1u << 3, /* S* (\p{S}) */
    PD_UNICODE_MARK = 1u << 4,   /* M* (\p{M}) */
    PD_UNICODE_SPACE = 1u << 5,  /* White_Space property (the splitters' \s) */
};

#define PD_UNICODE_MAX 0x10FFFFu
#define PD_UNICODE_REPLACEMENT 0xFFFDu

/* Class bits of cp (a set of enum pd_unicode_class); 0 for unassigned code points,
 * controls, format characters and values above PD_UNICODE_MAX. */
unsigned pd_unicode_class(uint32_t cp);

static inline bool pd_unicode_is_letter(uint32_t cp)
{
    return (pd_unicode_class(cp) & PD_UNICODE_LETTER) != 0;
}

static inline bool pd_unicode_is_number(uint32_t cp)
{
    return (pd_unicode_class(cp) & PD_UNICODE_NUMBER) != 0;
}

static inline bool pd_unicode_is_space(uint32_t cp)
{
    return (pd_unicode_class(cp) & PD_UNICODE_SPACE) != 0;
}

/* Decodes one code point from s[0..n) (n > 0) and returns the bytes consumed (1..4).
 * Accepts any lead byte with the right number of continuation bytes, without checking
 * for overlong forms or surrogates; a lone continuation byte, an invalid lead byte, a
 * truncated sequence or a value above PD_UNICODE_MAX consumes 1 byte and yields
 * PD_UNICODE_REPLACEMENT. */
size_t pd_unicode_decode_lenient(const char *s, size_t n, uint32_t *cp);

/* Encodes cp (<= PD_UNICODE_MAX, surrogates included) as UTF-8 into out (4 bytes) and
 * returns the length; 0 for cp > PD_UNICODE_MAX. */
size_t pd_unicode_encode(uint32_t cp, char *out);

/* Unicode version of the class table ("15.0.0"). */
const char *pd_unicode_version(void);

#endif
