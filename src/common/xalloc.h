/*
 * xalloc.h - allocation that aborts when memory runs out.
 *
 * Running out of memory is not an error drover recovers from; running out
 * because a client asked for too much is, and is prevented by caps on every
 * buffer the network feeds (see http/router.h), not here.
 */
#ifndef DROVER_XALLOC_H
#define DROVER_XALLOC_H

#include <stddef.h>
#include "common.h"

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* A newly allocated formatted string; the caller frees it. */
char *xasprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);

#endif
