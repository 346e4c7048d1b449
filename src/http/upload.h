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
 */
#ifndef DROVER_HTTP_UPLOAD_H
#define DROVER_HTTP_UPLOAD_H

#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
 * reply): a body nobody accepted is thrown away, and once the body is over
 * the connection reads its next request. No-op for other requests.
 */
void upload_on_reply(struct uploads *u, struct evhttp_request *ev);

#endif
