/* answer.h - the final answer of a completion and whether it matches a reference, for
 * evaluating a model on problems with checkable answers (`ponder eval`).
 *
 * Extraction (pd_answer_extract), in order:
 *   1. the answer part: the text after the last think close marker when one is given and
 *      present; when the completion opened thinking (has the open marker) but never closed
 *      it, there is no answer; otherwise the whole completion;
 *   2. the content of the last \boxed{...} in it (braces nested), if any;
 *   3. else the last number: an optional minus sign (when not preceded by a letter or digit),
 *      digits with optional thousands commas, an optional decimal part.
 * Matching (pd_answer_match): the reference is taken after its last "####" when it has
 * one (GSM8K style), trimmed. When both the extracted answer and the reference read as
 * numbers (commas removed, a trailing '.' ignored) they match if equal as numbers;
 * otherwise they match if equal as trimmed text, ASCII case ignored.
 *
 * Thread-safety: pure functions. */
#ifndef PD_ANSWER_H
#define PD_ANSWER_H

#include <stdbool.h>
#include <stddef.h>

#define PD_ANSWER_MAX 128 /* bytes of an extracted answer, NUL included */

/* Extracts the answer of text[0..len) into out (NUL-terminated, cut at PD_ANSWER_MAX - 1
 * bytes). think_open / think_close may be NULL (a family without markers). Returns false
 * (out "") when there is no answer. */
bool pd_answer_extract(const char *text, size_t len, const char *think_open,
                       const char *think_close, char out[PD_ANSWER_MAX]);

/* True when the extracted answer matches the reference (see above). NULL never matches. */
bool pd_answer_match(const char *extracted, const char *reference);

#endif
