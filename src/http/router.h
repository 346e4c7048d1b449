/*
 * router.h - dispatch of HTTP requests (libevent evhttp) to handlers.
 *
 * The router does every generic check in one place (Redis processCommand):
 * 404 / 405, authentication and role, query parameters, body size and framing,
 * JSON parsing, a request id, timing and the access log. Handlers receive a
 * parsed `struct http_req` and answer with the http_reply_* functions; they
 * never touch sockets. Transport only: no job semantics here.
 *
 * A handler returns HTTP_DONE once it has replied, or HTTP_DEFERRED when it
 * will reply later (a long-poll, a write waiting for its group commit). A
 * deferred request whose client goes away is marked `gone`, and `on_gone`
 * (if set) is called at once so the owner can stop waiting; the owner then
 * frees it with http_req_drop() — or with any reply, which frees a gone
 * request without sending anything.
 */
#ifndef DROVER_HTTP_ROUTER_H
#define DROVER_HTTP_ROUTER_H

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "http/headers.h"

enum { HTTP_DONE = 0, HTTP_DEFERRED = 1 };

/*
 * The most a JSON body may hold (413 over it, before it is parsed): 10,000
 * specs like the seed message (41 values, 14 objects and arrays each) take
 * 410,000 values and 140,000 containers.
 */
#define HTTP_JSON_MAX_VALUES (1024 * 1024)
#define HTTP_JSON_MAX_CONTAINERS (256 * 1024)

#define HTTP_MAX_PARAMS 3
#define HTTP_PARAM_MAX 256

struct http_req;
typedef int (*http_handler_fn)(struct http_req *r);

struct route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/v1/jobs/{id}/wait": {name} matches one non-empty segment;
                            a final {name*} matches the rest of the path (r->tail) */
    http_handler_fn handler;
    unsigned roles;      /* bitmask of roles allowed; 0 = no token needed */
    size_t body_limit;   /* bytes; 0 = no body accepted */
    int json_body;       /* parse the body as JSON into req->body: true, or HTTP_JSON_NUL */
    const char *query;   /* the query parameters it takes, space-separated ("": none), any
                            other, one given twice or a value with a control character
                            refused (400 naming it); NULL: not checked (but for a NUL) */
};
/* json_body: a JSON body whose strings may hold \u0000 (an agent's captured output) */
#define HTTP_JSON_NUL 2

struct http_req {
    struct evhttp_request *ev; /* NULL once replied or gone */
    const struct route *route;
    char params[HTTP_MAX_PARAMS][HTTP_PARAM_MAX]; /* {…} values in pattern order, decoded */
    char *tail;                /* the {name*} value, decoded, or NULL */
    struct evkeyvalq query;
    json_t *body;              /* parsed JSON body, or NULL */
    int role;                  /* the caller's role (0 when the route needs none) */
    char token_name[128];
    char id[16];               /* request id, for logs */
    int64_t t0_ns;
    bool gone;                 /* the client went away while deferred */
    struct evhttp_request *orphan; /* a gone request libevent left for us to free */
    void (*on_gone)(struct http_req *r);
    void *app;                 /* the router's app pointer, for handlers */
    struct router *rt;
    void *owner;               /* free for the deferring code */
};

/*
 * Authenticates a bearer token: fills *role and name, returns 0, or
 * ERR_UNAUTH. Called on the event loop thread.
 */
typedef int (*http_auth_fn)(void *app, const char *token, int *role, char *name, size_t n,
                            struct err *e);

/*
 * Authenticates a request that carries no Authorization header by another
 * credential (the dashboard's session cookie, server/session.h) from its
 * headers: fills *role and name and returns 0; ERR_NOTFOUND when the request
 * carries no such credential (the missing-token error is given then);
 * ERR_UNAUTH or ERR_DENIED (e.g. a cross-site request) otherwise. `method`
 * is the request's. Called on the event loop thread, for a whole request
 * and for the head of one whose body is judged before it is read.
 */
typedef int (*http_cookie_auth_fn)(void *app, const struct http_headers *h, const char *method,
                                   int *role, char *name, size_t n, struct err *e);

/* A whole request's headers (evhttp's), for as long as r is answered. */
struct http_headers http_req_headers(struct http_req *r);

struct router;
struct uploads;

struct router *router_new(struct evhttp *http, const struct route *routes, size_t n,
                          http_auth_fn auth, void *app);
void router_free(struct router *rt);
/* Requests answered so far and deferred requests still open (for /metrics and shutdown). */
uint64_t router_served(const struct router *rt);

/*
 * Draining: every new request is answered 503 unavailable ("shutting down").
 * Requests already deferred are not affected.
 */
void router_set_draining(struct router *rt, bool draining);

/*
 * Judges a request's head before its body is read (an upload_head_fn of
 * upload.h, arg being the router): the route (404, 405), the bearer token (or
 * the cookie credential) and role when the route needs one (401, 403), and
 * the body's length against the route's limit (413); a route that needs no
 * token takes at most UPLOAD_SMALL_BODY bytes this way. 503 while draining.
 */
int router_check_head(void *arg, const char *method, const char *target,
                      const struct http_headers *headers, int64_t length, int64_t *limit,
                      struct err *e);

/* Sets the fallback of requests without a bearer token (NULL: none). */
void router_set_cookie_auth(struct router *rt, http_cookie_auth_fn fn);

/* Tells the router of the upload filter (upload.h), which hears of every reply. */
void router_set_uploads(struct router *rt, struct uploads *u);
/*
 * Checks the request's bearer token (or, without one, the cookie_auth
 * credential) against roles; the router calls it for routes that need a
 * token, handlers for routes that need none but may take one (roles 0 in
 * the table): 0, ERR_UNAUTH or ERR_DENIED. Fills r->role and r->token_name.
 */
int http_authenticate(struct http_req *r, unsigned roles, struct err *e);

/* ERR_INVALID for a body jansson could not parse: where, and why in a user's words. */
int http_json_malformed(struct err *e, const json_error_t *je);

/* Query parameter, or NULL. */
const char *http_query(const struct http_req *r, const char *name);
/*
 * Integer query parameter `name` within [lo, hi] into *out (absent: dflt); ERR_INVALID naming
 * it ("limit must be an integer between 1 and 1000") otherwise.
 */
int http_query_long(const struct http_req *r, const char *name, long lo, long hi, long dflt,
                    long *out, struct err *e);

/* Replies (each frees the request). json is stolen. */
void http_reply_json(struct http_req *r, int status, json_t *json);
void http_reply_text(struct http_req *r, int status, const char *content_type, const char *text);
void http_reply_bytes(struct http_req *r, int status, const char *content_type, const void *data,
                      size_t len);
/* {"error": {"code", "message", "field"}} with the status of e->code. */
void http_reply_err(struct http_req *r, const struct err *e);
void http_reply_error(struct http_req *r, int code, const char *field, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
/*
 * A streamed answer (chunked): start, any number of chunks, end (which frees
 * the request). The request stays deferred meanwhile; if the client goes
 * away, `gone` is set and on_gone runs as for any deferred request.
 */
void http_reply_start(struct http_req *r, int status, const char *content_type);
void http_reply_chunk(struct http_req *r, const void *data, size_t len);
void http_reply_end(struct http_req *r);
/*
 * A chunk of a streamed answer (b's contents are moved out) with sent(evcon,
 * arg) called once it has left, to pace large answers. With Content-Length
 * set before http_reply_start() the answer is not chunk-encoded.
 */
void http_reply_chunk_then(struct http_req *r, struct evbuffer *b,
                           void (*sent)(struct evhttp_connection *, void *), void *arg);
/* Frees a request that is gone without replying. */
void http_req_drop(struct http_req *r);

#endif
