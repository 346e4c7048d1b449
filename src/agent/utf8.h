/*
 * utf8.h - turning arbitrary bytes into valid UTF-8 text, for captured output
 * (jansson only takes valid UTF-8, and the protocol's log data is text).
 *
 * Each maximal ill-formed subpart (Unicode 15, §3.9 "U+FFFD substitution of
 * maximal subparts") becomes one U+FFFD: overlong forms, surrogates, code
 * points above U+10FFFF, stray continuation bytes and truncated sequences.
 */
#ifndef DROVER_AGENT_UTF8_H
#define DROVER_AGENT_UTF8_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

#define UTF8_REPLACEMENT "\xEF\xBF\xBD"

/*
 * Appends src[0..n) to out, ill-formed bytes replaced by U+FFFD. With `final`
 * false, a sequence that is valid so far but cut short by the end of src (at
 * most 3 bytes) is left unconsumed, for the caller to retry with more bytes;
 * with `final` true it is replaced too. Returns the bytes of src consumed.
 */
size_t utf8_sanitize(struct buf *out, const char *src, size_t n, bool final);

/*
 * The largest length <= max at which valid UTF-8 text s[0..len) may be cut
 * without splitting a character (len itself when len <= max).
 */
size_t utf8_cut(const char *s, size_t len, size_t max);

#endif
