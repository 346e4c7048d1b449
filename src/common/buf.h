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
/*
 * A path into a JSON document, for error messages ("command.arguments[2].value"):
 * buf_path_key appends ".key" (no dot at the start; a key longer than 128 bytes is
 * cut at a whole UTF-8 character and marked "..."), buf_path_index "[i]"; both
 * return the length that buf_path_cut goes back to.
 */
size_t buf_path_key(struct buf *b, const char *key);
size_t buf_path_index(struct buf *b, size_t i);
void buf_path_cut(struct buf *b, size_t mark);
/* The contents as a string ("" when empty); borrowed. */
const char *buf_str(const struct buf *b);
/* Hands the string out (the caller frees it) and leaves the buffer empty. */
char *buf_detach(struct buf *b);

#endif
