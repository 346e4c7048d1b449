/*
 * router.c - see router.h.
 *
 * Lifetime: a struct http_req is made for each request and freed by the reply
 * (or by http_req_drop for a deferred request whose client went away). While
 * a request is deferred, the connection's close callback points at it, so a
 * client that hangs up marks it gone instead of leaving it dangling.
 */
#include "http/router.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/role.h"
#include "common/timeutil.h"
#include "common/hmap.h"
#include "common/xalloc.h"
#include "http/upload.h"

struct router {
    struct evhttp *http;
    const struct route *routes;
    size_t n;
    http_auth_fn auth;
    http_cookie_auth_fn cookie_auth;
    void *app;
    uint64_t next_id;
    uint64_t served;
    bool draining;
    struct http_req *current; /* the request whose handler runs now, until it is freed */
    struct uploads *uploads;
    struct hmap fixed; /* the patterns without parameters -> a route of theirs */
};

static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    struct http_req *r = arg;
    r->gone = true;
    /* libevent 2.1 detaches a request whose client hung up and leaves it to be freed by its
       owner; one still attached is freed with the connection. */
    if (r->ev && !evhttp_request_get_connection(r->ev))
        r->orphan = r->ev;
    r->ev = NULL;
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    if (r->on_gone)
        r->on_gone(r);
}

static void req_free(struct http_req *r)
{
    if (r->rt->current == r) /* answered inside its own handler */
        r->rt->current = NULL;
    evhttp_clear_headers(&r->query);
    json_decref(r->body);
    free(r->tail);
    if (r->orphan)
        evhttp_request_free(r->orphan);
    free(r);
}

void http_req_drop(struct http_req *r)
{
    req_free(r);
}

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    default: return "OTHER";
    }
}

static void access_log(struct http_req *r, int status)
{
    if (LOG_DEBUG > log_level_current || !r->ev)
        return;
    log_debug("req=%s %s %s %d %.3fms token=%s", r->id,
              method_name(evhttp_request_get_command(r->ev)), evhttp_request_get_uri(r->ev),
              status,
              (double)(time_mono_ns() - r->t0_ns) / 1e6, r->token_name[0] ? r->token_name : "-");
}

static void reply_buffer(struct http_req *r, int status, const char *content_type,
                         struct evbuffer *body)
{
    if (!r->ev) { /* gone: nobody to answer */
        req_free(r);
        return;
    }
    struct evhttp_request *ev = r->ev;
    struct evkeyvalq *h = evhttp_request_get_output_headers(ev);
    evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "X-Request-Id", r->id);
    struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
    if (evcon)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
    if (evhttp_request_get_command(ev) == EVHTTP_REQ_HEAD && body) {
        /* evhttp would write the body after a HEAD's headers: they say its length instead */
        if (!evhttp_find_header(h, "Content-Length")) {
            char n[24];
            snprintf(n, sizeof(n), "%zu", evbuffer_get_length(body));
            evhttp_add_header(h, "Content-Length", n);
        }
        evbuffer_drain(body, evbuffer_get_length(body));
    }
    access_log(r, status);
    upload_on_reply(r->rt->uploads, ev);
    upload_on_end(r->rt->uploads, ev);
    /* libevent 2.1 names these by class only ("Client Error") */
    evhttp_send_reply(ev, status,
                      status == 429   ? "Too Many Requests"
                      : status == 507 ? "Insufficient Storage"
                                      : NULL,
                      body);
    req_free(r);
}

void http_reply_bytes(struct http_req *r, int status, const char *content_type, const void *data,
                      size_t len)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, data, len);
    reply_buffer(r, status, content_type, b);
    evbuffer_free(b);
}

void http_reply_text(struct http_req *r, int status, const char *content_type, const char *text)
{
    http_reply_bytes(r, status, content_type, text, strlen(text));
}

void http_reply_json(struct http_req *r, int status, json_t *json)
{
    struct evbuffer *b = evbuffer_new();
    char *s = json_dumps(json, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(json);
    if (s) {
        size_t n = strlen(s);
        s[n] = '\n';
        evbuffer_add_reference(b, s, n + 1, (evbuffer_ref_cleanup_cb)(void (*)(void))free, NULL);
    }
    reply_buffer(r, status, "application/json", b);
    evbuffer_free(b);
}

/* Text for JSON: as it is when it is UTF-8, else with bytes over 0x7f written as \xNN. */
static json_t *text_json(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    struct buf b = BUF_INIT;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x80)
            buf_addc(&b, (char)*p);
        else
            buf_addf(&b, "\\x%02x", *p);
    }
    j = json_stringn(b.data ? b.data : "", b.len);
    buf_release(&b);
    return j;
}

void http_reply_err(struct http_req *r, const struct err *e)
{
    int code = e && e->code ? e->code : ERR_INTERNAL;
    const char *msg = e && e->msg[0] ? e->msg : err_str(code);
    bool failed = code == ERR_INTERNAL || code == ERR_IO || code == ERR_UNAVAILABLE;
    char said[160];
    if (failed && strstr(msg, "store '")) {
        /* a store's words (the database's, the S3 service's) name its address and user:
           they stay in the server's log */
        log_error("req=%s %s", r->id, msg);
        snprintf(said, sizeof(said), "the %s store %s (the server's log has why: request %s)",
                 strstr(msg, "blob store '") ? "object" : "job",
                 code == ERR_UNAVAILABLE ? "cannot be reached now" : "failed", r->id);
        msg = said;
    } else if (code == ERR_INTERNAL || code == ERR_IO) {
        log_error("req=%s %s", r->id, msg);
    }
    json_t *inner =
        json_pack("{s:s, s:o}", "code", err_api_code(code), "message", text_json(msg));
    if (e && e->field[0])
        json_object_set_new(inner, "field", json_string(e->field));
    http_reply_json(r, err_http_status(code), json_pack("{s:o}", "error", inner));
}

void http_reply_error(struct http_req *r, int code, const char *field, const char *fmt, ...)
{
    struct err e = ERR_INIT;
    va_list ap;
    e.code = code;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
    va_end(ap);
    snprintf(e.field, sizeof(e.field), "%s", field ? field : "");
    http_reply_err(r, &e);
}

void http_reply_start(struct http_req *r, int status, const char *content_type)
{
    if (!r->ev)
        return;
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
    evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "X-Request-Id", r->id);
    evhttp_add_header(h, "Cache-Control", "no-cache");
    access_log(r, status);
    upload_on_reply(r->rt->uploads, r->ev);
    evhttp_send_reply_start(r->ev, status, NULL);
    /* From now on evhttp owns the connection state; a hang-up must still reach us. */
    evhttp_connection_set_closecb(evhttp_request_get_connection(r->ev), on_conn_close, r);
}

void http_reply_chunk(struct http_req *r, const void *data, size_t len)
{
    if (!r->ev || !len)
        return;
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, data, len);
    evhttp_send_reply_chunk(r->ev, b);
    evbuffer_free(b);
}

void http_reply_chunk_then(struct http_req *r, struct evbuffer *b,
                           void (*sent)(struct evhttp_connection *, void *), void *arg)
{
    if (!r->ev)
        return;
    evhttp_send_reply_chunk_with_cb(r->ev, b, sent, arg);
}

void http_reply_end(struct http_req *r)
{
    if (r->ev) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(r->ev);
        if (evcon)
            evhttp_connection_set_closecb(evcon, NULL, NULL);
        upload_on_end(r->rt->uploads, r->ev);
        evhttp_send_reply_end(r->ev);
    }
    req_free(r);
}

const char *http_query(const struct http_req *r, const char *name)
{
    return evhttp_find_header(&r->query, name);
}

int http_query_long(const struct http_req *r, const char *name, long lo, long hi, long dflt,
                    long *out, struct err *e)
{
    const char *v = http_query(r, name);
    if (!v) {
        *out = dflt;
        return 0;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return err_field(e, ERR_INVALID, name, "%s must be an integer between %ld and %ld", name,
                         lo, hi);
    *out = x;
    return 0;
}

/*
 * Matches path against pattern segment by segment; {name} takes any one
 * non-empty segment, percent-decoded into params.
 */
static bool match(const char *pattern, const char *path, struct http_req *r)
{
    int np = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        const char *close = *p == '{' ? strchr(p, '}') : NULL;
        if (close && close[-1] == '*' && !close[1]) { /* {name*}: the rest of the path */
            size_t dn;
            char *dec = evhttp_uridecode(s, 0, &dn);
            if (!dec || memchr(dec, '\0', dn)) {
                free(dec);
                return false;
            }
            free(r->tail);
            r->tail = dec;
            return true;
        }
        if (*p == '{') {
            const char *end = strchr(s, '/');
            size_t n = end ? (size_t)(end - s) : strlen(s);
            if (!n || np >= HTTP_MAX_PARAMS)
                return false;
            char raw[HTTP_PARAM_MAX * 3];
            if (n >= sizeof(raw))
                return false;
            memcpy(raw, s, n);
            raw[n] = '\0';
            size_t dn;
            char *dec = evhttp_uridecode(raw, 0, &dn);
            if (!dec)
                return false;
            bool ok = dn < HTTP_PARAM_MAX && memchr(dec, '\0', dn) == NULL;
            if (ok)
                memcpy(r->params[np++], dec, dn + 1);
            free(dec);
            if (!ok)
                return false;
            p = strchr(p, '}') + 1;
            s += n;
        } else if (*p++ != *s++) {
            return false;
        }
    }
    return !*p && !*s;
}

/* Checks the bearer token of an Authorization header against a route's roles. */
static int check_token(struct router *rt, const struct route *route, const char *h, int *role,
                       char *name, size_t n, struct err *e)
{
    if (!h || !*h)
        return err_set(e, ERR_UNAUTH, "missing token: send 'Authorization: Bearer <token>'");
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return err_set(e, ERR_UNAUTH, "the Authorization header must be 'Bearer <token>'");
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    int rc = rt->auth(rt->app, tok, role, name, n, e);
    if (rc)
        return rc;
    if (!(*role & (int)route->roles))
        return err_set(e, ERR_DENIED, "a token with role '%s' may not call %s %s", role_name(*role),
                       route->method, route->pattern);
    return 0;
}

static const char *evhttp_get(void *ctx, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(ctx), name);
}

struct http_headers http_req_headers(struct http_req *r)
{
    return (struct http_headers){evhttp_get, r->ev};
}

/* The bearer token, or without one the cookie credential, against route->roles. */
static int authenticate(struct router *rt, const struct route *route,
                        const struct http_headers *h, int *role, char *name, size_t n,
                        struct err *e)
{
    const char *authz = http_header(h, "Authorization");
    if ((!authz || !*authz) && rt->cookie_auth) {
        int rc = rt->cookie_auth(rt->app, h, route->method, role, name, n, e);
        if (rc != ERR_NOTFOUND) {
            if (!rc && !(*role & (int)route->roles))
                rc = err_set(e, ERR_DENIED, "a session of role '%s' may not call %s %s",
                             role_name(*role), route->method, route->pattern);
            return rc;
        }
    }
    return check_token(rt, route, authz, role, name, n, e);
}

int http_authenticate(struct http_req *r, unsigned roles, struct err *e)
{
    struct route route = *r->route;
    route.roles = roles;
    struct http_headers h = http_req_headers(r);
    return authenticate(r->rt, &route, &h, &r->role, r->token_name, sizeof(r->token_name), e);
}

static int too_large(struct err *e, const struct route *route, uint64_t len, size_t limit)
{
    return err_set(e, ERR_TOOLARGE,
                   "request body of %llu bytes is over the limit of %zu bytes (%zu KiB) of %s %s",
                   (unsigned long long)len, limit, limit / 1024, route->method, route->pattern);
}

/*
 * Whether parsing data would make at most HTTP_JSON_MAX_VALUES values and
 * HTTP_JSON_MAX_CONTAINERS objects and arrays: parsed, a body costs up to 75
 * times its size (16 MiB of "{}," made 1.2 GB), so it is counted first, in
 * one pass that allocates nothing. Values are counted as separators plus
 * containers, which is at least what there is.
 */
static bool json_size_ok(const char *data, size_t len)
{
    size_t values = 1, containers = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char ch = data[i];
        if (in_string) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_string = false;
        } else if (ch == '"') {
            in_string = true;
        } else if (ch == '{' || ch == '[') {
            containers++;
            values++;
        } else if (ch == ',') {
            values++;
        }
    }
    return values <= HTTP_JSON_MAX_VALUES && containers <= HTTP_JSON_MAX_CONTAINERS;
}

static int read_body(struct http_req *r, struct err *e)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->ev);
    size_t len = evbuffer_get_length(in);
    if (len > r->route->body_limit)
        return too_large(e, r->route, len, r->route->body_limit);
    if (!r->route->json_body)
        return 0;
    /* gzip and the like are not decoded: jansson would call them malformed at line 1 */
    const char *enc = evhttp_find_header(evhttp_request_get_input_headers(r->ev),
                                         "Content-Encoding");
    if (enc && strcasecmp(enc, "identity"))
        return err_set(e, ERR_MEDIATYPE,
                       "Content-Encoding '%s' is not accepted: %s %s takes its JSON body as it "
                       "is, not encoded",
                       enc, r->route->method, r->route->pattern);
    if (!len)
        return err_set(e, ERR_INVALID, "a JSON request body is required");
    json_error_t je;
    const char *data = (const char *)evbuffer_pullup(in, -1);
    if (!json_size_ok(data, len))
        return err_set(e, ERR_TOOLARGE,
                       "the JSON body holds more than %d values or %d objects and arrays, the "
                       "most a request may",
                       HTTP_JSON_MAX_VALUES, HTTP_JSON_MAX_CONTAINERS);
    size_t flags = JSON_REJECT_DUPLICATES;
    if (r->route->json_body == HTTP_JSON_NUL) flags |= JSON_ALLOW_NUL;
    r->body = json_loadb(data, len, flags, &je);
    return r->body ? 0 : http_json_malformed(e, &je);
}

int http_json_malformed(struct err *e, const json_error_t *je)
{
    /* jansson names its flag where a user needs to hear what is wrong */
    const char *why = strstr(je->text, "JSON_ALLOW_NUL")
                          ? "\\u0000 (a NUL character) is not allowed in a string"
                          : je->text;
    return err_set(e, ERR_INVALID, "malformed JSON at line %d, column %d: %s", je->line,
                   je->column, why);
}

/*
 * Sets r->route (and its parameters) for method and path: 0, ERR_NOTFOUND or ERR_METHOD
 * (`allow`, when not NULL, then holds the path's methods, as the Allow header lists them).
 * HEAD takes a GET route where no HEAD route is written: the answer's headers without its
 * body (RFC 9110 9.3.2; reply_buffer drops it, evhttp drops a stream's chunks).
 */
static int find_route(struct router *rt, const char *method, const char *path, struct http_req *r,
                      struct buf *allow, struct err *e)
{
    bool path_known = false, head = !strcmp(method, "HEAD"), has_get = false, has_head = false;
    const struct route *get = NULL;
    char params[HTTP_MAX_PARAMS][HTTP_PARAM_MAX];
    char *tail = NULL;
    /* A path some route writes without parameters is theirs alone: GET /v1/jobs/cancel is
       405 (POST only), not the job 'cancel' of GET /v1/jobs/{id}. */
    bool fixed = hmap_get(&rt->fixed, path) != NULL;
    for (size_t i = 0; i < rt->n; i++) {
        if (fixed ? strcmp(rt->routes[i].pattern, path) : !match(rt->routes[i].pattern, path, r))
            continue;
        if (!strcmp(rt->routes[i].method, method)) {
            r->route = &rt->routes[i];
            free(tail);
            return 0;
        }
        bool is_get = !strcmp(rt->routes[i].method, "GET");
        if (head && is_get && !get) { /* kept: a HEAD route of the path may follow */
            get = &rt->routes[i];
            memcpy(params, r->params, sizeof(params));
            tail = r->tail ? xstrdup(r->tail) : NULL;
        }
        has_get |= is_get;
        has_head |= !strcmp(rt->routes[i].method, "HEAD");
        if (allow) buf_addf(allow, "%s%s", path_known ? ", " : "", rt->routes[i].method);
        path_known = true;
    }
    if (allow && has_get && !has_head) buf_adds(allow, ", HEAD");
    if (get) {
        r->route = get;
        memcpy(r->params, params, sizeof(params));
        free(r->tail);
        r->tail = tail;
        return 0;
    }
    free(tail);
    if (path_known)
        return err_set(e, ERR_METHOD, "method %s is not allowed on '%s'", method, path);
    return err_set(e, ERR_NOTFOUND, "no such endpoint: %s '%s'", method, path);
}

/* Is `word` one of the space-separated words of `list`? */
static bool word_in(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; n && *p; p += strcspn(p, " "), p += *p == ' ')
        if (strcspn(p, " ") == n && !strncmp(p, word, n)) return true;
    return false;
}

/*
 * ERR_INVALID naming the first query parameter whose value, as evhttp decodes it (keys it
 * leaves as sent), holds a NUL, or with `ctl` any control character (below 0x20, 0x7f). A
 * decoded NUL ends the value evhttp keeps, unseen: `name=keep%00x` would filter by "keep".
 */
static int check_query_bytes(const char *q, bool ctl, struct err *e)
{
    int rc = 0;
    for (const char *p = q; *p && !rc; p += strcspn(p, "&"), p += *p == '&') {
        size_t len = strcspn(p, "&"), klen = strcspn(p, "=");
        if (klen >= len) continue;
        char *value = xstrndup(p + klen + 1, len - klen - 1);
        size_t n = 0;
        unsigned char *dec = (unsigned char *)evhttp_uridecode(value, 1, &n);
        for (size_t i = 0; dec && i < n && !rc; i++) {
            if (dec[i] && !(ctl && (dec[i] < 0x20 || dec[i] == 0x7f))) continue;
            char *key = xstrndup(p, klen);
            rc = err_field(e, ERR_INVALID, key,
                           "query parameter '%s' holds a control character (0x%02x), which no "
                           "value may",
                           key, dec[i]);
            free(key);
        }
        free(dec);
        free(value);
    }
    return rc;
}

/*
 * 0 when every query parameter is one the route takes, once, and no value holds a control
 * character; else ERR_INVALID naming the first that is not. A second copy would go unseen
 * (evhttp finds the first: `state=failed&state=succeeded` would read the failed jobs only).
 * Routes that check no parameters (objects: presigned URLs, S3 clients) are refused only a
 * NUL, which no value of theirs can mean.
 */
static int check_query(const struct http_req *r, const char *q, struct err *e)
{
    const char *takes = r->route->query;
    if (!takes) return q ? check_query_bytes(q, false, e) : 0;
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, &r->query, next)
    {
        /* the ones before are known and unlike: at most as many as the route takes */
        for (const struct evkeyval *k = TAILQ_FIRST(&r->query); k != kv; k = TAILQ_NEXT(k, next))
            if (!strcmp(k->key, kv->key))
                return err_field(e, ERR_INVALID, kv->key,
                                 "query parameter '%s' is given twice: it is taken once",
                                 kv->key);
        if (word_in(takes, kv->key)) continue;
        struct buf list = BUF_INIT; /* "a, b, c" */
        for (const char *t = takes; *t; t++)
            *t == ' ' ? buf_adds(&list, ", ") : buf_addc(&list, *t);
        int rc = err_field(e, ERR_INVALID, kv->key, "unknown parameter '%s': %s %s takes %s%s",
                           kv->key, r->route->method, r->route->pattern,
                           *takes ? "only " : "no query parameter", buf_str(&list));
        buf_release(&list);
        return rc;
    }
    return q ? check_query_bytes(q, true, e) : 0;
}

int router_check_head(void *arg, const char *method, const char *target,
                      const struct http_headers *headers, int64_t length, int64_t *limit,
                      struct err *e)
{
    struct router *rt = arg;
    if (rt->draining)
        return err_set(e, ERR_UNAVAILABLE, "the server is shutting down");
    struct evhttp_uri *uri = evhttp_uri_parse_with_flags(target, 0);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path) {
        if (uri)
            evhttp_uri_free(uri);
        return err_set(e, ERR_INVALID, "malformed request target");
    }
    struct http_req *r = xcalloc(1, sizeof(*r)); /* for the route's parameters only */
    int rc = find_route(rt, method, *path ? path : "/", r, NULL, e);
    if (!rc) {
        const struct route *route = r->route;
        /* A route that needs no token takes no large body evhttp would hold: the one that
           takes large bodies (an object's PUT) has them streamed to its handler. */
        size_t max = route->roles || route->body_limit < UPLOAD_SMALL_BODY ? route->body_limit
                                                                           : UPLOAD_SMALL_BODY;
        int role;
        char name[128];
        if (route->roles) rc = authenticate(rt, route, headers, &role, name, sizeof(name), e);
        if (!rc && length > (int64_t)max)
            rc = too_large(e, route, (uint64_t)length, max);
        *limit = (int64_t)max;
    }
    free(r->tail);
    free(r);
    evhttp_uri_free(uri);
    return rc;
}

/*
 * A second Content-Length header (same value or not): evhttp frames the body by the first,
 * and a proxy in front may have framed it by the other, leaving the rest to be read as a
 * request of its own (request smuggling). The upload filter's parser refuses such a head and
 * lets it through unjudged, so it is refused here, and the connection closed after the answer
 * so that nothing after the body is read.
 */
static int check_framing(struct evhttp_request *ev, struct err *e)
{
    const char *first = NULL;
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(ev), next)
    {
        if (strcasecmp(kv->key, "Content-Length")) continue;
        if (!first) {
            first = kv->value;
            continue;
        }
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Connection", "close");
        return err_set(e, ERR_INVALID,
                       "the request has two Content-Length headers ('%s', '%s'): it may have one",
                       first, kv->value);
    }
    return 0;
}

static void on_request(struct evhttp_request *ev, void *arg)
{
    struct router *rt = arg;
    struct http_req *r = xcalloc(1, sizeof(*r));
    struct err e = ERR_INIT;
    r->ev = ev;
    r->rt = rt;
    r->app = rt->app;
    r->t0_ns = time_mono_ns();
    TAILQ_INIT(&r->query);
    snprintf(r->id, sizeof(r->id), "%08llx", (unsigned long long)++rt->next_id);
    rt->served++;

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    if (!path || !*path)
        path = "/";
    if (check_framing(ev, &e)) {
        http_reply_err(r, &e);
        return;
    }
    if (q && evhttp_parse_query_str(q, &r->query) != 0) {
        http_reply_error(r, ERR_INVALID, NULL, "malformed query string");
        return;
    }
    if (rt->draining) {
        http_reply_error(r, ERR_UNAVAILABLE, NULL, "the server is shutting down");
        return;
    }
    const char *method = method_name(evhttp_request_get_command(ev));
    struct buf allow = BUF_INIT;
    if (find_route(rt, method, path, r, &allow, &e)) {
        if (e.code == ERR_METHOD) /* RFC 9110: a 405 lists what the path takes */
            evhttp_add_header(evhttp_request_get_output_headers(ev), "Allow", buf_str(&allow));
        buf_release(&allow);
        http_reply_err(r, &e);
        return;
    }
    buf_release(&allow);
    if ((r->route->roles && http_authenticate(r, r->route->roles, &e)) || check_query(r, q, &e) ||
        read_body(r, &e)) {
        http_reply_err(r, &e);
        return;
    }
    /* A handler that defers may still have answered (and freed r) before returning. */
    rt->current = r;
    int rc = r->route->handler(r);
    if (rt->current == r && rc == HTTP_DEFERRED && r->ev) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
        evhttp_connection_set_closecb(evcon, on_conn_close, r);
    }
    rt->current = NULL;
}

struct router *router_new(struct evhttp *http, const struct route *routes, size_t n,
                          http_auth_fn auth, void *app)
{
    struct router *rt = xcalloc(1, sizeof(*rt));
    rt->http = http;
    rt->routes = routes;
    rt->n = n;
    rt->auth = auth;
    rt->app = app;
    hmap_init(&rt->fixed);
    for (size_t i = 0; i < n; i++)
        if (!strchr(routes[i].pattern, '{'))
            hmap_put(&rt->fixed, routes[i].pattern, (void *)&routes[i]);
    size_t max_body = 0;
    for (size_t i = 0; i < n; i++)
        if (routes[i].body_limit > max_body)
            max_body = routes[i].body_limit;
    /* Bodies over every route's limit are refused by evhttp before they are read whole. */
    evhttp_set_max_body_size(http, (ev_ssize_t)max_body + 1);
    evhttp_set_max_headers_size(http, 64 * 1024);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(http, on_request, rt);
    return rt;
}

void router_free(struct router *rt)
{
    if (!rt) return;
    hmap_release(&rt->fixed, NULL);
    free(rt);
}

void router_set_cookie_auth(struct router *rt, http_cookie_auth_fn fn)
{
    rt->cookie_auth = fn;
}

void router_set_uploads(struct router *rt, struct uploads *u)
{
    rt->uploads = u;
}

void router_set_draining(struct router *rt, bool draining)
{
    rt->draining = draining;
}

uint64_t router_served(const struct router *rt)
{
    return rt->served;
}
