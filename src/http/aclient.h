/*
 * aclient.h - an asynchronous HTTP/JSON client: libcurl's multi interface
 * driven by a libevent loop (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION and
 * curl_multi_socket_action), for code that must never block on the network.
 *
 *     struct aclient *ac = aclient_new(base, &http);       // http: client.h config
 *     aclient_request(ac, "POST", "/v1/agents/x/poll", body, 15000, on_done, me, &req);
 *     ... event_base_dispatch(base) ...
 *     static void on_done(void *me, int rc, long status, json_t *resp, const struct err *e)
 *
 * Requests are built and their answers interpreted by client.h
 * (http_call_setup / http_call_finish), so errors are the same as for the
 * blocking client: `rc` is 0 for a 2xx answer, ERR_UNAVAILABLE with status 0
 * when the server could not be reached or the connection broke, the ERR_*
 * matching a 4xx/5xx status (with the server's message in `e`), ERR_TOOLARGE
 * for an answer over the limit.
 *
 * Ownership and lifetime:
 *   - the `struct http_client` given to aclient_new is borrowed (base URL,
 *     token, limits) and must outlive the aclient; its own easy handle is not
 *     used;
 *   - `body` is serialised at once and stays the caller's;
 *   - the callback runs exactly once per request, from the event loop, never
 *     from inside aclient_request; `resp` (the parsed answer or NULL) and `e`
 *     are borrowed for the callback's duration (json_incref to keep the answer);
 *   - a request handle is valid until its callback returns or aclient_cancel;
 *     aclient_cancel drops a request without calling its callback (an answer
 *     that the server already sent is lost);
 *   - callbacks may start and cancel requests, but must not free the aclient.
 */
#ifndef DROVER_HTTP_ACLIENT_H
#define DROVER_HTTP_ACLIENT_H

#include <event2/event.h>
#include <jansson.h>

#include "common/err.h"
#include "http/client.h"

struct aclient;
struct aclient_req;

typedef void (*aclient_cb)(void *arg, int rc, long status, json_t *resp, const struct err *e);

/* A client on `base` for the server described by `cfg` (borrowed). Aborts when out of memory. */
struct aclient *aclient_new(struct event_base *base, const struct http_client *cfg);
/* Cancels every request still open (without callbacks) and frees the client; NULL is fine. */
void aclient_free(struct aclient *c);

/*
 * Starts `method` on `path` (as for http_call_setup) with `body` (NULL for
 * none) and a limit of `timeout_ms` for the whole exchange (0: the cfg's
 * timeout). *out (when out is not NULL) gets the request's handle. Returns 0,
 * or ERR_INTERNAL / ERR_INVALID when the request could not even be built (the
 * callback is then not called).
 */
int aclient_request(struct aclient *c, const char *method, const char *path, json_t *body,
                    long timeout_ms, aclient_cb cb, void *arg, struct aclient_req **out);

/*
 * A raw transfer: `easy` was configured completely by the caller (URL, its own
 * read/write callbacks, no token unless the caller set one) and is handed over:
 * the aclient runs it on the loop and frees it after `cb` returns (or on
 * aclient_cancel / aclient_free). `cb` gets curl's result and the handle, to
 * read CURLINFO_* from. ERR_INTERNAL when curl refuses the handle (it is then
 * freed and `cb` is not called). For transfers whose body must not be held in
 * memory (file staging on the agent).
 */
typedef void (*aclient_easy_cb)(void *arg, CURLcode result, CURL *easy);
int aclient_easy(struct aclient *c, CURL *easy, aclient_easy_cb cb, void *arg,
                 struct aclient_req **out);

/* Drops a request without calling its callback. NULL is fine. */
void aclient_cancel(struct aclient_req *r);

/* Requests started and not yet completed or cancelled. */
size_t aclient_pending(const struct aclient *c);

#endif
