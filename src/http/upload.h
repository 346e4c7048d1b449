/*
 * upload.h - request bodies streamed past evhttp.
 *
 * libevent 2.1's evhttp reads a request's whole body into memory before it
 * calls the handler. For object uploads that is not acceptable, so every
 * server connection gets a bufferevent filter (installed with
 * evhttp_set_bevcb) that frames the raw byte stream with http-parser:
 *
 *   - requests that do not match are passed to evhttp untouched;
 *   - a `PUT` whose path starts with the given prefix and which has a
 *     Content-Length has its head passed on with "Content-Length: 0" and an
 *     "X-Drover-Upload" header, and its body held back. evhttp dispatches the
 *     head at once; the handler finds the body with upload_of() and either
 *     accepts it (each piece goes to its sink on the loop thread, as it
 *     arrives, with backpressure: bytes are read from the socket only as fast
 *     as the sink takes them) or leaves it, in which case it is read and
 *     thrown away once the handler has replied.
 *
 * The next request on the connection is read only once the upload's request
 * has been answered. "Expect: 100-continue" is answered when the body is
 * accepted. A connection that breaks mid-body ends the upload with done(-1).
 *
 * The filter also guards the server's connections (uploads_set_limits):
 *
 *   - a body evhttp would read whole that is chunked or over UPLOAD_SMALL_BODY
 *     is judged at its head by the check function (route, token, size) before
 *     a byte of it is read; a refusal is answered with the JSON error and a
 *     lingering close (linger.h), so the client reads it;
 *   - the bodies evhttp holds are reserved against a budget for all
 *     connections (503 once it is spent), until their request is answered;
 *   - at most max_conns connections: at the cap the connection idle longest
 *     is closed to make room, or when none is idle the new one is answered
 *     503; a head must arrive whole within header_timeout_s, a body sent to
 *     evhttp must move within idle_s, and a connection with no request is
 *     closed after idle_timeout_s.
 */
#ifndef DROVER_HTTP_UPLOAD_H
#define DROVER_HTTP_UPLOAD_H

#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "http/headers.h"

struct uploads;
struct upload;

/*
 * Each piece of the body, in order (data is borrowed for the call): 0 to go
 * on; UPLOAD_PAUSE to stop reading until upload_resume(); negative to stop
 * the sink (the rest is read and thrown away).
 */
typedef int (*upload_sink_fn)(void *arg, const void *data, size_t len);
#define UPLOAD_PAUSE 1
/* The body has all arrived (status 0) or the connection broke (status -1; `up` is gone). */
typedef void (*upload_done_fn)(void *arg, int status);

/*
 * Installs the filter on every connection of http; bodies of PUTs under
 * path_prefix are diverted, and given up when no byte comes for idle_s.
 */
struct uploads *uploads_new(struct evhttp *http, const char *path_prefix, int idle_s);
/*
 * Ends the uploads in progress (done(-1)) and frees the registry; call before
 * evhttp_free(), while requests can still be answered.
 */
void uploads_free(struct uploads *u);

/*
 * Judges a request's head before its body is read: method, target (path and
 * query as sent), its headers and the body's length (-1: chunked). Returns 0
 * and sets *limit to the most body bytes the request may bring, or an ERR_*
 * code with e filled, which the filter answers.
 */
typedef int (*upload_head_fn)(void *arg, const char *method, const char *target,
                              const struct http_headers *headers, int64_t length, int64_t *limit,
                              struct err *e);
/* Bodies up to this size (with a Content-Length) are read without asking the check. */
#define UPLOAD_SMALL_BODY (64 * 1024)

struct upload_limits {
    int max_conns;        /* connections at a time */
    int header_timeout_s; /* a request's head arrives whole within this */
    int idle_timeout_s;   /* a connection without a request is closed after this */
    int64_t body_memory;  /* bytes of bodies evhttp may hold at a time, all connections */
};

/* Sets the limits and the head check (called on the loop thread, with arg). */
void uploads_set_limits(struct uploads *u, const struct upload_limits *lim, upload_head_fn check,
                        void *arg);
/* Connections open, sockets lingering, body bytes reserved: for /metrics and tests. */
void uploads_stats(const struct uploads *u, int *conns, int *lingering, int64_t *reserved);

/* The diverted body of request ev, or NULL when it has none (no Content-Length, or not a PUT). */
struct upload *upload_of(struct uploads *u, struct evhttp_request *ev);
/* The body's length, from the request's Content-Length. */
int64_t upload_length(const struct upload *up);
/*
 * Starts taking the body: sink() for each piece, then done() exactly once.
 * The upload must not be used after done().
 */
void upload_accept(struct upload *up, upload_sink_fn sink, upload_done_fn done, void *arg);
/* Reads on after the sink answered UPLOAD_PAUSE. */
void upload_resume(struct upload *up);
/*
 * The request of ev is being answered (the router calls this from every
 * reply, before evhttp sends it): a body nobody accepted is thrown away, and
 * once the body is over the connection reads its next request. A body too
 * large to throw away gets "Connection: close" and a lingering close.
 */
void upload_on_reply(struct uploads *u, struct evhttp_request *ev);
/*
 * The request of ev has been answered whole (a reply, or a streamed reply's
 * end): its body's reservation is given back, and its connection counts as
 * idle when nothing else is pending on it.
 */
void upload_on_end(struct uploads *u, struct evhttp_request *ev);

#endif
