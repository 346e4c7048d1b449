/*
 * range.c - see range.h.
 *
 * Numbers are digits only (RFC 9110's 1*DIGIT): strtoll would also take a sign and leading
 * blanks. A number too large for int64_t counts as that large (a last byte past the end is
 * cut at the end; a first byte past it cannot be satisfied).
 */
#include "http/range.h"

#include <stdbool.h>
#include <string.h>

/* The decimal number at *p (advanced past it), saturated at INT64_MAX; false without a digit. */
static bool number(const char **p, int64_t *out)
{
    const char *s = *p;
    int64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        int d = *s - '0';
        v = v > (INT64_MAX - d) / 10 ? INT64_MAX : v * 10 + d;
    }
    if (s == *p) return false;
    *p = s;
    *out = v;
    return true;
}

int http_range_parse(const char *h, int64_t size, int64_t *off, int64_t *len)
{
    /* An empty object has no byte to name: it is sent whole (empty), as web servers do. */
    if (!h || strncmp(h, "bytes=", 6) || strchr(h, ',') || size <= 0) return 0;
    const char *p = h + 6;
    int64_t a, b = -1;
    if (*p == '-') { /* the last N bytes */
        p++;
        if (!number(&p, &a) || *p) return 0;
        if (a == 0) return -1;
        *len = a < size ? a : size;
        *off = size - *len;
        return 1;
    }
    if (!number(&p, &a) || *p++ != '-') return 0;
    if (*p && (!number(&p, &b) || *p || b < a)) return 0;
    if (a >= size) return -1;
    *off = a;
    *len = (b < 0 || b >= size) ? size - a : b - a + 1;
    return 1;
}
