/*
 * range.h - the Range header of a GET (RFC 9110 14.2), as drover honours it: one byte range
 * ("bytes=A-B", "bytes=A-", "bytes=-N"), or the whole representation.
 */
#ifndef DROVER_HTTP_RANGE_H
#define DROVER_HTTP_RANGE_H

#include <stdint.h>

/*
 * Header value h (NULL: none) for a representation of `size` bytes: 1 and the window
 * *off, *len (within the size, len >= 1), 0 when there is none or it is not one honoured
 * (several ranges, another unit, a malformed one: then the whole is sent, as RFC 9110
 * allows; also for an empty representation, as web servers do), -1 when it cannot be
 * satisfied (416).
 */
int http_range_parse(const char *h, int64_t size, int64_t *off, int64_t *len);

#endif
