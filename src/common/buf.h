/*
 * buf.h - a growable byte buffer, always NUL-terminated (git's strbuf, curl's dynbuf).
 *
 *   struct buf b = BUF_INIT;
 *   buf_addf(&b, "%d jobs", n);
 *   puts(b.data);
 *   buf_release(&b);
 *
 * `data` is never NULL once anything was added; an empty, untouched buffer
 * has data == NULL, so use buf_str() when a string is needed either way.
 */
#ifndef DROVER_BUF_H
#define DROVER_BUF_H

#include <stddef.h>
#include "common.h"

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

void buf_init(struct buf *b);
/* Frees the contents; the buffer may be used again. */
void buf_release(struct buf *b);
void buf_reset(struct buf *b);
void buf_grow(struct buf *b, size_t extra);
void buf_add(struct buf *b, const void *data, size_t len);
void buf_adds(struct buf *b, const char *s);
void buf_addc(struct buf *b, char c);
void buf_addf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* The contents as a string ("" when empty); borrowed. */
const char *buf_str(const struct buf *b);
/* Hands the string out (the caller frees it) and leaves the buffer empty. */
char *buf_detach(struct buf *b);

#endif
