/*
 * headers.h - a request's headers, however they are held: evhttp's parsed
 * headers once a request is whole (router.c), or the raw head the upload
 * filter holds before its body is read (upload.c).
 */
#ifndef DROVER_HTTP_HEADERS_H
#define DROVER_HTTP_HEADERS_H

struct http_headers {
    /* The value of header `name` (case-insensitive), or NULL when absent. A value stays
       valid as long as the headers do. */
    const char *(*get)(void *ctx, const char *name);
    void *ctx;
};

static inline const char *http_header(const struct http_headers *h, const char *name)
{
    return h->get(h->ctx, name);
}

#endif
