/*
 * upload.c - see upload.h.
 *
 * Each connection's bufferevent is a filter over a socket bufferevent. The
 * filter runs http-parser over what the socket delivers, pausing at the end
 * of each head to decide, and at the end of each message:
 *
 *   C_HEAD  a head is arriving; its bytes are held back until it is whole
 *   C_PASS  a message evhttp reads itself (its bytes go through as they come)
 *   C_BODY  a diverted body: the filter stands aside; the upload takes the
 *           bytes the socket bufferevent had already read, then reads the
 *           socket itself, exactly up to the body's end, so that the next
 *           request stays in the socket for evhttp
 *   C_WAIT  the body is over; the request awaits its answer
 *   C_RAW   http-parser gave up (malformed or upgraded): everything goes to
 *           evhttp untouched and evhttp answers as it sees fit
 *   C_DEAD  refused by the filter (conn_refuse) or closed by it: input is
 *           dropped until evhttp has let go of the connection
 *
 * Beside the state, each connection has a phase that says which deadline
 * runs (conn_settle): idle (no request: idle_timeout, and the connection may
 * be closed to make room for a new one), head (header_timeout from its first
 * byte, and through a small body the check did not see), body (a checked
 * body going to evhttp: idle_s without a byte), or none (a
 * request is being answered; a diverted body has its own deadline). Requests
 * passed on and not yet answered are counted with their reserved body bytes,
 * oldest first (res[]), and given back by upload_on_end().
 *
 * evhttp stops reading once it has dispatched a request and starts again
 * after the answer, so the filter never feeds it a request while it is busy.
 * Pipelined requests that follow a diverted body in the same read are read
 * when more bytes arrive (clients that pipeline uploads are not known).
 */
#include "http/upload.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <http_parser.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <limits.h>
#include <openssl/rand.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include "common/hmap.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "http/linger.h"

#define UPLOAD_HEADER "X-Drover-Upload"
#define URL_MAX (16 * 1024)
#define READ_CHUNK (256 * 1024)
#define CLOSE_OVER (1024 * 1024) /* a refused body larger than this: close (lingering) */
#define RES_SLOTS 4              /* pipelined requests counted apart; more share the last */
#define EVICT_IDLE_MS 1000       /* a connection idle this long may be closed for a new one */

enum cstate { C_HEAD, C_PASS, C_BODY, C_WAIT, C_RAW, C_DEAD };
enum phase { PH_NONE, PH_IDLE, PH_HEAD, PH_BODY };
enum umode { U_PENDING, U_ACCEPTED, U_DISCARD };

struct upconn;

struct upload {
    struct upconn *c;
    int64_t length, remaining;
    enum umode mode;
    bool replied;
    bool expect_continue;
    bool sink_failed;
    bool paused;
    uint64_t nonce; /* in the X-Drover-Upload header evhttp sees: clients cannot guess it */
    upload_sink_fn sink;
    upload_done_fn done;
    void *arg;
};

struct upconn {
    struct uploads *u;
    struct event_base *base;
    struct bufferevent *filter, *sock;
    char id[24];
    http_parser p;
    enum cstate st;
    bool at_head_end, at_message_end;
    struct evbuffer *head; /* the head being held back */
    char url[URL_MAX];
    size_t url_len;
    bool url_long;
    struct upload up;
    struct event *rd;   /* reads a diverted body from the socket */
    struct event *wr;   /* waits for the socket to take more of an answer */
    struct event *kick; /* flushes what evhttp queued, once it has enabled writing */
    char *chunk;
    struct event *timer; /* the phase's deadline; or, at once, the refusal of a connection */
    struct event *hup;   /* the client's hang-up while a request waits for its answer */
    struct event *hup_wait; /* arms hup once a request has waited HUP_WATCH_AFTER */
    enum phase phase;
    bool over_cap; /* accepted over max_conns with none idle: refused 503 */
    bool in_idle;  /* in u->idlers */
    int64_t idle_since_ms;
    TAILQ_ENTRY(upconn) idle_link;
    struct {
        int64_t bytes; /* reserved for bodies evhttp holds */
        int nreq;      /* requests passed on, not yet answered */
    } res[RES_SLOTS];
    int nres;
    bool chunked; /* the body passing to evhttp is chunked: counted against body_limit */
    bool checked; /* its head passed the check (its token is good) */
    int64_t body_limit, body_seen;
    int linger_fd;    /* a dup of the socket that lingers once evhttp closed it, or -1 */
    char bev_key[24]; /* the filter's address, key of u->by_bev */
};

struct uploads {
    struct evhttp *http;
    struct timeval idle; /* a body that moves no byte this long is given up */
    char *prefix;
    uint64_t next_id;
    struct hmap conns;  /* id -> struct upconn */
    struct hmap by_bev; /* filter's address -> struct upconn */
    http_parser_settings settings;
    TAILQ_HEAD(, upconn) idlers; /* connections without a request, idle longest first */
    int nconns;
    struct upload_limits lim;
    struct timeval header_to, idle_to;
    int64_t reserved; /* body bytes reserved, all connections */
    upload_head_fn check;
    void *check_arg;
    struct lingers *lingers;
};

/* ---- http-parser callbacks ---- */

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct upconn *c = p->data;
    if (c->url_len + n >= sizeof(c->url)) {
        c->url_long = true;
        return 0;
    }
    memcpy(c->url + c->url_len, at, n);
    c->url_len += n;
    c->url[c->url_len] = '\0';
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct upconn *c = p->data;
    c->at_head_end = true;
    http_parser_pause(p, 1);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct upconn *c = p->data;
    c->at_message_end = true;
    http_parser_pause(p, 1);
    return 0;
}

/* Body bytes passing to evhttp, counted when it is chunked (its length was not known). */
static int on_body(http_parser *p, const char *at, size_t n)
{
    struct upconn *c = p->data;
    (void)at;
    c->body_seen += (int64_t)n;
    if (c->chunked && c->body_seen > c->body_limit) http_parser_pause(p, 1);
    return 0;
}

static void parser_reset(struct upconn *c)
{
    http_parser_init(&c->p, HTTP_REQUEST);
    c->p.data = c;
    c->url_len = 0;
    c->url[0] = '\0';
    c->url_long = false;
    c->at_head_end = c->at_message_end = false;
    c->chunked = false;
    c->body_seen = 0;
}

/*
 * Whether evhttp has let go of the connection (bufferevent_free clears the
 * callbacks). libevent finalizes the bufferevent, and calls conn_free, only on
 * a later turn: until then this connection's own events may still fire, and
 * must not touch it: a deferred trigger takes and drops a reference, and the
 * second drop to zero would finalize it (and free c) a second time.
 */
static bool conn_released(const struct upconn *c)
{
    bufferevent_event_cb eventcb = NULL;
    bufferevent_getcb(c->filter, NULL, NULL, &eventcb, NULL);
    return eventcb == NULL;
}

/* ---- the connection's guards: refusals, reservations, deadlines ---- */

static bool head_header(struct upconn *c, const char *name, char *out, size_t n);

/*
 * The held head's headers for the check (http/headers.h): each value asked for is copied
 * into a slot of its own, as long as the check runs; a value longer than a slot is cut.
 */
#define HEAD_VALUES 8
#define HEAD_VALUE_MAX 4096
struct head_values {
    struct upconn *c;
    char slot[HEAD_VALUES][HEAD_VALUE_MAX];
    int used;
};

static const char *head_get(void *ctx, const char *name)
{
    struct head_values *hv = ctx;
    if (hv->used == HEAD_VALUES) return NULL; /* the check asks for fewer */
    char *out = hv->slot[hv->used];
    if (!head_header(hv->c, name, out, HEAD_VALUE_MAX)) return NULL;
    hv->used++;
    return out;
}

static void conn_settle(struct upconn *c);

/*
 * Makes evhttp let go of the connection: an end of input, as if the client had
 * closed. Input that still comes is dropped meanwhile.
 */
static void conn_close(struct upconn *c)
{
    c->st = C_DEAD;
    event_del(c->timer);
    event_del(c->hup_wait);
    if (c->hup) event_del(c->hup);
    c->phase = PH_NONE;
    if (c->in_idle) {
        TAILQ_REMOVE(&c->u->idlers, c, idle_link);
        c->in_idle = false;
    }
    bufferevent_trigger_event(c->filter, BEV_EVENT_EOF | BEV_EVENT_READING,
                              BEV_TRIG_DEFER_CALLBACKS);
}

static struct lingers *lingers_of(struct upconn *c)
{
    struct uploads *u = c->u;
    if (!u->lingers) {
        int max = u->lim.max_conns / 4;
        u->lingers = lingers_new(c->base, max < 16 ? 16 : max);
    }
    return u->lingers;
}

static const char *status_text(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

/*
 * Answers the request whose head (or part of whose body) was read with the JSON
 * error of e, before evhttp has seen anything of it, and closes lingering: the
 * answer goes out on a dup of the socket, which lingers (linger.h) while
 * evhttp closes its own descriptor.
 */
static void conn_refuse(struct upconn *c, const struct err *e)
{
    int status = err_http_status(e->code);
    json_t *inner = json_pack("{s:s, s:s}", "code", err_api_code(e->code), "message",
                              e->msg[0] ? e->msg : err_str(e->code));
    if (inner && e->field[0]) json_object_set_new(inner, "field", json_string(e->field));
    json_t *j = json_pack("{s:o*}", "error", inner);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    struct evbuffer *a = evbuffer_new();
    evbuffer_add_printf(a,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Connection: close\r\nContent-Length: %zu\r\n\r\n%s\n",
                        status, status_text(status), body ? strlen(body) + 1 : 1, body ? body : "");
    free(body);
    size_t n = evbuffer_get_length(a);
    const void *data = evbuffer_pullup(a, -1);
    int fd = bufferevent_getfd(c->sock);
    int dup_fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    log_debug("connection %s: refused: %d %s", c->id, status, e->msg);
    if (dup_fd >= 0) {
        linger_start(lingers_of(c), dup_fd, data, n);
    } else if (fd >= 0) { /* no descriptor to spare: the answer, and an abrupt close */
        ssize_t w = write(fd, data, n);
        (void)w;
        shutdown(fd, SHUT_RDWR);
    }
    evbuffer_free(a);
    evbuffer_drain(c->head, evbuffer_get_length(c->head));
    conn_close(c);
}

/* Counts a request passed on, with the body bytes evhttp will hold for it: false over budget. */
static bool res_push(struct upconn *c, int64_t bytes)
{
    struct uploads *u = c->u;
    if (bytes > 0 && u->reserved + bytes > u->lim.body_memory) return false;
    u->reserved += bytes;
    if (c->nres < RES_SLOTS) {
        c->res[c->nres].bytes = bytes;
        c->res[c->nres++].nreq = 1;
    } else { /* held until the last of them is answered */
        c->res[RES_SLOTS - 1].bytes += bytes;
        c->res[RES_SLOTS - 1].nreq++;
    }
    return true;
}

/* The oldest request passed on has been answered. */
static void res_pop(struct upconn *c)
{
    if (!c->nres) return;
    if (--c->res[0].nreq > 0) return;
    c->u->reserved -= c->res[0].bytes;
    memmove(c->res, c->res + 1, sizeof(c->res[0]) * (size_t)(c->nres - 1));
    c->nres--;
}

static void res_release(struct upconn *c)
{
    while (c->nres)
        res_pop(c);
}

static bool conn_pending(const struct upconn *c)
{
    return c->nres > 0;
}

static void conn_phase(struct upconn *c, enum phase ph)
{
    struct uploads *u = c->u;
    if (c->in_idle && ph != PH_IDLE) {
        TAILQ_REMOVE(&u->idlers, c, idle_link);
        c->in_idle = false;
    }
    if (ph == c->phase && ph != PH_BODY) return; /* a body's deadline restarts with each byte */
    c->phase = ph;
    switch (ph) {
    case PH_NONE:
        event_del(c->timer);
        break;
    case PH_IDLE:
        TAILQ_INSERT_TAIL(&u->idlers, c, idle_link);
        c->in_idle = true;
        c->idle_since_ms = time_mono_ns() / 1000000;
        if (u->idle_to.tv_sec)
            event_add(c->timer, &u->idle_to);
        else
            event_del(c->timer);
        break;
    case PH_HEAD:
        if (u->header_to.tv_sec)
            event_add(c->timer, &u->header_to);
        else
            event_del(c->timer);
        break;
    case PH_BODY:
        event_add(c->timer, &u->idle);
        break;
    }
}

/*
 * While a request waits for its answer (a long-poll may wait an hour) evhttp
 * reads nothing, so a client that hangs up would hold its descriptor and its
 * place under the cap until then: its hang-up is watched for (EPOLLRDHUP).
 */
static void on_hangup(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *c = arg;
    (void)fd;
    (void)what;
    if (!c->u || c->st != C_HEAD || !c->nres || conn_released(c)) return;
    log_debug("connection %s: the client hung up while its request was pending", c->id);
    conn_close(c);
}

/*
 * The watch is armed only once a request has waited HUP_WATCH_AFTER: most answers
 * (a submit's group commit) come sooner, and arming and disarming it are two epoll_ctl
 * calls per request (~4 % of the loop's time under single submits). A long-poll is
 * watched from then on, as before.
 */
static const struct timeval HUP_WATCH_AFTER = {0, 50 * 1000};

static bool conn_waits(const struct upconn *c)
{
    return c->u && c->st == C_HEAD && c->nres > 0 && !c->over_cap;
}

static void on_hup_wait(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *c = arg;
    (void)fd;
    (void)what;
    if (!conn_waits(c) || conn_released(c)) return;
    int sfd = bufferevent_getfd(c->sock);
    if (!c->hup && sfd >= 0) c->hup = event_new(c->base, sfd, EV_CLOSED, on_hangup, c);
    if (c->hup) event_add(c->hup, NULL);
}

static void conn_watch_hangup(struct upconn *c, bool on)
{
    if (!on) {
        event_del(c->hup_wait);
        if (c->hup) event_del(c->hup);
    } else if (!(c->hup && event_pending(c->hup, EV_CLOSED, NULL)) &&
               !event_pending(c->hup_wait, EV_TIMEOUT, NULL)) {
        event_add(c->hup_wait, &HUP_WATCH_AFTER);
    }
}

/* Puts the connection in the phase its state says. */
static void conn_settle(struct upconn *c)
{
    if (!c->u || c->st == C_DEAD || c->over_cap) {
        event_del(c->hup_wait);
        if (c->hup) event_del(c->hup);
        return;
    }
    conn_watch_hangup(c, c->st == C_HEAD && c->nres > 0);
    enum phase ph = PH_NONE;
    if (c->st == C_HEAD && !conn_pending(c))
        ph = evbuffer_get_length(c->head) ? PH_HEAD : PH_IDLE;
    else if (c->st == C_PASS && c->p.flags & (F_CHUNKED | F_CONTENTLENGTH))
        /* A small body nobody has vouched for is due with its head: dribbling it would hold
           the connection as a slow head does. One whose token is good may take its time. */
        ph = c->checked ? PH_BODY : c->phase == PH_HEAD ? PH_HEAD : PH_BODY;
    conn_phase(c, ph);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *c = arg;
    (void)fd;
    (void)what;
    if (!c->u || conn_released(c)) return;
    if (c->over_cap) { /* its input is dropped (C_DEAD) until this answer */
        c->over_cap = false;
        struct err e = ERR_INIT;
        err_set(&e, ERR_UNAVAILABLE, "the server has too many connections (%d): try again later",
                c->u->lim.max_conns);
        conn_refuse(c, &e);
        return;
    }
    if (c->st == C_DEAD) return;
    log_debug("connection %s: closed, %s", c->id,
              c->phase == PH_IDLE   ? "idle too long"
              : c->phase == PH_HEAD ? "its request's head did not arrive in time"
                                    : "its request's body stalled");
    conn_close(c);
}

/*
 * Closes the connection idle longest whose answers have all gone out: false
 * when none is, or none for EVICT_IDLE_MS (a client that just connected, or
 * just had an answer, is likely to send its request now).
 */
static bool evict_idle(struct uploads *u)
{
    struct upconn *c;
    int64_t now = time_mono_ns() / 1000000;
    TAILQ_FOREACH(c, &u->idlers, idle_link)
    {
        if (now - c->idle_since_ms < EVICT_IDLE_MS) break; /* the others came later */
        if (evbuffer_get_length(bufferevent_get_output(c->filter))) continue;
        log_debug("connection %s: closed to make room for a new one", c->id);
        conn_close(c);
        return true;
    }
    return false;
}

/*
 * A head that evhttp will read the body of: judged by the check when its body
 * is chunked or large, and its body reserved. False when it was refused.
 */
static bool head_admit(struct upconn *c)
{
    struct uploads *u = c->u;
    const http_parser *p = &c->p;
    struct err e = ERR_INIT;
    int rc = 0;
    c->chunked = p->flags & F_CHUNKED;
    int64_t len = c->chunked                                ? -1
                  : !(p->flags & F_CONTENTLENGTH)           ? 0
                  : p->content_length > (uint64_t)INT64_MAX ? INT64_MAX
                                                            : (int64_t)p->content_length;
    int64_t limit = len < 0 ? UPLOAD_SMALL_BODY : len;
    if (c->chunked && p->method == HTTP_PUT && !strncmp(c->url, u->prefix, strlen(u->prefix))) {
        /* Bodies under the prefix are streamed, which needs their length. */
        rc = err_set(&e, ERR_LENGTH, "an object's PUT needs a Content-Length header (chunked "
                                     "bodies are not accepted)");
    } else if ((len < 0 || len > UPLOAD_SMALL_BODY) && u->check) {
        if (c->url_long) {
            rc = err_set(&e, ERR_INVALID, "the request's target is over %d bytes", URL_MAX);
        } else {
            struct head_values *hv = xcalloc(1, sizeof(*hv));
            hv->c = c;
            struct http_headers h = {head_get, hv};
            rc = u->check(u->check_arg, http_method_str((enum http_method)p->method), c->url, &h,
                          len, &limit, &e);
            free(hv);
        }
    }
    c->body_limit = limit;
    c->checked = u->check && (len < 0 || len > UPLOAD_SMALL_BODY) && !rc;
    c->body_seen = 0;
    if (!rc && !res_push(c, len < 0 ? limit : len))
        rc = err_set(&e, ERR_UNAVAILABLE,
                     "the server holds %" PRId64 " MiB of request bodies, its most: try again "
                     "later",
                     u->lim.body_memory >> 20);
    if (!rc) return true;
    conn_refuse(c, &e);
    return false;
}

/* ---- the diverted body ---- */

static void body_finish(struct upconn *c);

/*
 * The upload's request is over: frame the next one. Bytes of it may already
 * wait in the socket's buffer (a pipelining client): have the filter look at
 * them on a later turn, once evhttp is writing the answer (it ignores input
 * then, and picks it up when it is done).
 */
static void next_request(struct upconn *c)
{
    c->st = C_HEAD;
    parser_reset(c);
    conn_settle(c);
    if (evbuffer_get_length(bufferevent_get_input(c->sock)))
        bufferevent_trigger(c->sock, EV_READ,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/* Hands n bytes to the sink, or drops them when nobody takes the body. */
static void body_feed(struct upconn *c, const char *data, size_t n)
{
    struct upload *up = &c->up;
    up->remaining -= (int64_t)n;
    if (up->mode != U_ACCEPTED || up->sink_failed) return;
    int rc = up->sink(up->arg, data, n);
    if (rc == UPLOAD_PAUSE)
        up->paused = true;
    else if (rc)
        up->sink_failed = true; /* the rest is thrown away; done() still comes at the end */
}

/* Takes what the socket bufferevent already read, then reads the socket itself. */
static void body_pump(struct upconn *c)
{
    struct upload *up = &c->up;
    struct evbuffer *in = bufferevent_get_input(c->sock);
    while (up->remaining > 0 && !up->paused && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
        size_t n = v.iov_len < (size_t)up->remaining ? v.iov_len : (size_t)up->remaining;
        body_feed(c, v.iov_base, n);
        evbuffer_drain(in, n);
    }
    if (up->paused) {
        event_del(c->rd);
        return;
    }
    if (up->remaining == 0) {
        body_finish(c);
        return;
    }
    event_add(c->rd, &c->u->idle);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *c = arg;
    struct upload *up = &c->up;
    if (c->st != C_BODY || up->mode == U_PENDING || up->paused || conn_released(c)) {
        event_del(c->rd); /* level-triggered: it would fire again at once */
        return;
    }
    if (up->remaining == 0 || evbuffer_get_length(bufferevent_get_input(c->sock)) > 0) {
        body_pump(c);
        return;
    }
    size_t want = up->remaining < READ_CHUNK ? (size_t)up->remaining : READ_CHUNK;
    ssize_t n = (what & EV_TIMEOUT) ? -2 : read(fd, c->chunk, want);
    if (n == -1 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        /* The client went away mid-body: evhttp learns of it when it answers. */
        event_del(c->rd);
        log_debug("upload %s: %s %" PRId64 " bytes before the body's end", c->id,
                  n == -2 ? "no byte came in time" : "the connection ended",
                  up->remaining);
        c->st = C_RAW; /* nothing more can be framed here: the answer closes the connection */
        if (up->mode == U_ACCEPTED) {
            up->mode = U_DISCARD;
            up->done(up->arg, -1);
        }
        return;
    }
    body_feed(c, c->chunk, (size_t)n);
    if (up->paused)
        event_del(c->rd);
    else if (up->remaining == 0)
        body_finish(c);
}

static void body_finish(struct upconn *c)
{
    struct upload *up = &c->up;
    event_del(c->rd);
    free(c->chunk);
    c->chunk = NULL;
    bufferevent_enable(c->sock, EV_READ);
    c->st = C_WAIT;
    if (up->mode == U_ACCEPTED) {
        up->mode = U_DISCARD; /* from here on the handler owns nothing of it */
        up->done(up->arg, 0);
    }
    /* done() may have answered already */
    if (c->st == C_WAIT && up->replied) next_request(c);
}

static void body_start(struct upconn *c)
{
    if (!c->chunk) c->chunk = xmalloc(READ_CHUNK);
    body_pump(c);
}

/* ---- the filter ---- */

static bool header_is(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);
    return n > k && line[k] == ':' && !strncasecmp(line, name, k);
}

/*
 * Rewrites the held head (without its last line feed) for evhttp: no body,
 * and the upload's id in a header. Client-sent copies of the headers it sets
 * are dropped.
 */
static void head_rewrite(struct upconn *c, struct evbuffer *dst)
{
    size_t len = evbuffer_get_length(c->head);
    char *h = (char *)evbuffer_pullup(c->head, -1);
    size_t i = 0;
    bool first = true, dropping = false;
    while (i < len) {
        char *nl = memchr(h + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - h) : len;
        size_t n = end - i;
        if (n && h[i + n - 1] == '\r') n--;
        const char *line = h + i;
        i = end + 1;
        if (!n) /* the blank line that ends the head */
            break;
        bool cont = line[0] == ' ' || line[0] == '\t';
        if (!first && !cont)
            dropping = header_is(line, n, "content-length") || header_is(line, n, "expect") ||
                       header_is(line, n, UPLOAD_HEADER) || header_is(line, n, "transfer-encoding");
        first = false;
        if (dropping) continue;
        evbuffer_add(dst, line, n);
        evbuffer_add(dst, "\r\n", 2);
    }
    evbuffer_add_printf(dst, "Content-Length: 0\r\n" UPLOAD_HEADER ": %s.%016" PRIx64 "\r\n\r\n",
                        c->id, c->up.nonce);
    evbuffer_drain(c->head, len);
}

static bool wants_divert(struct upconn *c)
{
    const http_parser *p = &c->p;
    size_t n = strlen(c->u->prefix);
    return p->method == HTTP_PUT && !p->upgrade && !c->url_long && (p->flags & F_CONTENTLENGTH) &&
           !(p->flags & F_CHUNKED) && p->content_length <= (uint64_t)INT64_MAX &&
           !strncmp(c->url, c->u->prefix, n);
}

/* The value of header `name` in the held head, trimmed, into out: false ("") when absent. */
static bool head_header(struct upconn *c, const char *name, char *out, size_t n)
{
    size_t len = evbuffer_get_length(c->head), k = strlen(name);
    const char *h = (const char *)evbuffer_pullup(c->head, -1);
    out[0] = '\0';
    for (size_t i = 0; i + k + 2 < len; i++) {
        if (h[i] != '\n' || strncasecmp(h + i + 1, name, k) || h[i + 1 + k] != ':') continue;
        const char *v = h + i + 2 + k, *end = h + len;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        const char *e = memchr(v, '\n', (size_t)(end - v));
        if (!e) e = end;
        while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            e--;
        size_t m = (size_t)(e - v) < n ? (size_t)(e - v) : n - 1;
        memcpy(out, v, m);
        out[m] = '\0';
        return true;
    }
    return false;
}

static bool expects_continue(struct upconn *c)
{
    size_t len = evbuffer_get_length(c->head);
    const char *h = (const char *)evbuffer_pullup(c->head, -1);
    static const char needle[] = "\nexpect:";
    for (size_t i = 0; i + sizeof(needle) - 1 <= len; i++) {
        if (strncasecmp(h + i, needle, sizeof(needle) - 1)) continue;
        const char *v = h + i + sizeof(needle) - 1;
        while (v < h + len && (*v == ' ' || *v == '\t'))
            v++;
        return (size_t)(h + len - v) >= 12 && !strncasecmp(v, "100-continue", 12);
    }
    return false;
}

/* The head is whole: divert its body, let it through, or refuse it. */
static void head_done(struct upconn *c, struct evbuffer *src, struct evbuffer *dst)
{
    if (!wants_divert(c)) {
        if (!head_admit(c)) {
            evbuffer_drain(src, evbuffer_get_length(src));
            return;
        }
        evbuffer_add_buffer(dst, c->head);
        c->st = C_PASS;
        http_parser_pause(&c->p, 0);
        return;
    }
    evbuffer_drain(src, 1); /* the head's last line feed, which the parser had not taken */
    res_push(c, 0);         /* its body is not held: the upload reads it */
    struct upload *up = &c->up;
    memset(up, 0, sizeof(*up));
    up->c = c;
    up->length = up->remaining = (int64_t)c->p.content_length;
    up->mode = U_PENDING;
    up->expect_continue = expects_continue(c) && (c->p.http_major > 1 || c->p.http_minor >= 1);
    if (RAND_bytes((unsigned char *)&up->nonce, sizeof(up->nonce)) != 1)
        up->nonce = (uint64_t)(uintptr_t)c ^ (uint64_t)time(NULL) ^ ((uint64_t)rand() << 32);
    head_rewrite(c, dst);
    c->st = C_BODY;
    bufferevent_disable(c->sock, EV_READ); /* the body is read by body_pump from now on */
}

static enum bufferevent_filter_result in_filter(struct evbuffer *src, struct evbuffer *dst,
                                                ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                void *ctx)
{
    struct upconn *c = ctx;
    (void)limit;
    (void)mode;
    bool progress = false;
    if (!c->u) /* the server is being freed */
        c->st = C_RAW;
    else if (c->phase == PH_IDLE && evbuffer_get_length(src)) /* a head begins: its deadline */
        conn_phase(c, PH_HEAD);
    while (evbuffer_get_length(src) > 0) {
        if (c->st == C_RAW) {
            evbuffer_add_buffer(dst, src);
            return BEV_OK;
        }
        if (c->st == C_DEAD) {
            evbuffer_drain(src, evbuffer_get_length(src));
            return BEV_NEED_MORE;
        }
        if (c->st != C_HEAD && c->st != C_PASS) break;
        struct evbuffer_iovec v;
        if (evbuffer_peek(src, -1, NULL, &v, 1) < 1) break;
        size_t n = http_parser_execute(&c->p, &c->u->settings, v.iov_base, v.iov_len);
        enum http_errno err = HTTP_PARSER_ERRNO(&c->p);
        if (c->st == C_HEAD)
            evbuffer_remove_buffer(src, c->head, n);
        else
            evbuffer_remove_buffer(src, dst, n);
        progress = true;
        if (err == HPE_PAUSED && c->at_head_end) {
            c->at_head_end = false;
            head_done(c, src, dst);
        } else if (err == HPE_PAUSED && c->at_message_end) {
            parser_reset(c);
            c->st = C_HEAD;
        } else if (err == HPE_PAUSED && c->st == C_PASS && c->chunked) {
            struct err e = ERR_INIT;
            err_set(&e, ERR_TOOLARGE, "request body is over the limit of %" PRId64 " bytes",
                    c->body_limit);
            conn_refuse(c, &e);
        } else if (err != HPE_OK || c->p.upgrade) {
            /* Not HTTP we can frame: evhttp sees it all and answers for itself. */
            evbuffer_add_buffer(dst, c->head);
            c->st = C_RAW;
        }
    }
    if (progress) conn_settle(c);
    return progress ? BEV_OK : BEV_NEED_MORE;
}

/*
 * Answers go from evhttp's buffer straight to the socket, not through the
 * socket bufferevent: the filter tells evhttp its output has drained as soon
 * as the filter has moved it on, so anything still queued below would be
 * lost when evhttp closes a connection after its answer.
 */
static void on_writable(evutil_socket_t fd, short what, void *arg);

static enum bufferevent_filter_result out_filter(struct evbuffer *src, struct evbuffer *dst,
                                                 ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                 void *ctx)
{
    struct upconn *c = ctx;
    (void)dst;
    (void)limit;
    (void)mode;
    if (!evbuffer_get_length(src)) return BEV_NEED_MORE;
    int n = evbuffer_write(src, bufferevent_getfd(c->sock));
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        bufferevent_trigger_event(c->filter, BEV_EVENT_ERROR | BEV_EVENT_WRITING,
                                  BEV_TRIG_DEFER_CALLBACKS);
        return BEV_ERROR;
    }
    if (evbuffer_get_length(src)) {
        if (!c->wr)
            c->wr = event_new(bufferevent_get_base(c->sock), bufferevent_getfd(c->sock), EV_WRITE,
                              on_writable, c);
        event_add(c->wr, NULL);
    }
    return n > 0 ? BEV_OK : BEV_NEED_MORE;
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *c = arg;
    (void)fd;
    (void)what;
    if (conn_released(c)) return;
    bufferevent_flush(c->filter, EV_WRITE, BEV_NORMAL);
}

/*
 * libevent 2.1's filter passes output on when it is added, but only while
 * writing is enabled, and evhttp adds an answer before it enables writing:
 * without this the answer would wait for the next event on the socket. So
 * every addition schedules a flush for when the current callback is over.
 * The filter's callbacks are deferred too, so evhttp's "drained" callback
 * runs after evhttp has set it.
 */
static void on_output_added(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    struct upconn *c = arg;
    (void)b;
    if (info->n_added) event_active(c->kick, 0, 0);
}

static void conn_free(void *ctx)
{
    struct upconn *c = ctx;
    struct upload *up = &c->up;
    if (c->st == C_BODY && up->mode == U_ACCEPTED) up->done(up->arg, -1);
    if (c->u) {
        res_release(c);
        if (c->in_idle) TAILQ_REMOVE(&c->u->idlers, c, idle_link);
        c->u->nconns--;
        hmap_del(&c->u->conns, c->id);
        hmap_del(&c->u->by_bev, c->bev_key);
    }
    if (c->linger_fd >= 0) { /* evhttp has sent the answer and closed its descriptor */
        if (c->u)
            linger_start(lingers_of(c), c->linger_fd, NULL, 0);
        else
            close(c->linger_fd);
    }
    event_free(c->timer);
    event_free(c->hup_wait);
    if (c->hup) event_free(c->hup);
    if (c->rd) event_free(c->rd);
    if (c->wr) event_free(c->wr);
    event_free(c->kick);
    free(c->chunk);
    evbuffer_free(c->head);
    free(c);
}

static struct bufferevent *on_new_conn(struct event_base *base, void *arg)
{
    struct uploads *u = arg;
    struct upconn *c = xcalloc(1, sizeof(*c));
    c->u = u;
    c->base = base;
    c->linger_fd = -1;
    snprintf(c->id, sizeof(c->id), "%" PRIu64, ++u->next_id);
    c->head = evbuffer_new();
    parser_reset(c);
    c->sock = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    c->filter = c->sock ? bufferevent_filter_new(c->sock, in_filter, out_filter,
                                                 BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS,
                                                 conn_free, c)
                        : NULL;
    c->kick = event_new(base, -1, 0, on_writable, c);
    c->hup_wait = event_new(base, -1, 0, on_hup_wait, c);
    if (!c->sock || !c->filter) {
        log_error("cannot set up a connection's buffers");
        if (c->sock) bufferevent_free(c->sock);
        evbuffer_free(c->head);
        event_free(c->kick);
        event_free(c->hup_wait);
        free(c);
        return NULL;
    }
    evbuffer_add_cb(bufferevent_get_output(c->filter), on_output_added, c);
    hmap_put(&u->conns, c->id, c);
    snprintf(c->bev_key, sizeof(c->bev_key), "%p", (void *)c->filter);
    hmap_put(&u->by_bev, c->bev_key, c);
    c->timer = event_new(base, -1, 0, on_timer, c);
    if (++u->nconns > u->lim.max_conns && !evict_idle(u)) {
        /* Refused once evhttp has given it its socket: on the loop's next turn. */
        c->over_cap = true;
        c->st = C_DEAD;
        event_active(c->timer, EV_TIMEOUT, 0);
    }
    conn_settle(c);
    return c->filter;
}

/* ---- the handlers' side ---- */

struct uploads *uploads_new(struct evhttp *http, const char *path_prefix, int idle_s)
{
    struct uploads *u = xcalloc(1, sizeof(*u));
    u->http = http;
    u->idle.tv_sec = idle_s;
    u->prefix = xstrdup(path_prefix);
    hmap_init(&u->conns);
    hmap_init(&u->by_bev);
    TAILQ_INIT(&u->idlers);
    u->lim.max_conns = INT_MAX;
    u->lim.body_memory = INT64_MAX;
    u->settings.on_body = on_body;
    u->settings.on_url = on_url;
    u->settings.on_headers_complete = on_headers_complete;
    u->settings.on_message_complete = on_message_complete;
    evhttp_set_bevcb(http, on_new_conn, u);
    return u;
}

void uploads_free(struct uploads *u)
{
    if (!u) return;
    /* Connections are finalized later by the event base: they forget the registry, and
       uploads in progress end now, while their requests can still be answered. */
    for (struct hmap_entry *e = hmap_first(&u->conns); e; e = hmap_next(&u->conns, e)) {
        struct upconn *c = e->value;
        c->u = NULL;
        c->in_idle = false;
        if (c->st == C_BODY && c->up.mode == U_ACCEPTED) {
            c->up.mode = U_DISCARD;
            c->up.done(c->up.arg, -1);
        }
    }
    hmap_release(&u->conns, NULL);
    hmap_release(&u->by_bev, NULL);
    lingers_free(u->lingers);
    free(u->prefix);
    free(u);
}

void uploads_set_limits(struct uploads *u, const struct upload_limits *lim, upload_head_fn check,
                        void *arg)
{
    u->lim = *lim;
    u->header_to.tv_sec = lim->header_timeout_s;
    u->idle_to.tv_sec = lim->idle_timeout_s;
    u->check = check;
    u->check_arg = arg;
}

void uploads_stats(const struct uploads *u, int *conns, int *lingering, int64_t *reserved)
{
    *conns = u->nconns;
    *lingering = u->lingers ? lingers_count(u->lingers) : 0;
    *reserved = u->reserved;
}

/* The connection of a request, diverted or not. */
static struct upconn *conn_by_request(struct uploads *u, struct evhttp_request *ev)
{
    struct evhttp_connection *evcon = u && ev ? evhttp_request_get_connection(ev) : NULL;
    if (!evcon) return NULL;
    char key[24];
    snprintf(key, sizeof(key), "%p", (void *)evhttp_connection_get_bufferevent(evcon));
    return hmap_get(&u->by_bev, key);
}

void upload_on_end(struct uploads *u, struct evhttp_request *ev)
{
    struct upconn *c = conn_by_request(u, ev);
    if (!c) return;
    res_pop(c);
    conn_settle(c);
}

static struct upconn *conn_of(struct uploads *u, struct evhttp_request *ev)
{
    if (!u || !ev) return NULL;
    const char *id = evhttp_find_header(evhttp_request_get_input_headers(ev), UPLOAD_HEADER);
    struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
    if (!id || !evcon) return NULL;
    /* "<connection>.<nonce>": a client's own copy of the header names nothing. */
    char cid[24];
    const char *dot = strchr(id, '.');
    if (!dot || (size_t)(dot - id) >= sizeof(cid)) return NULL;
    memcpy(cid, id, (size_t)(dot - id));
    cid[dot - id] = '\0';
    struct upconn *c = hmap_get(&u->conns, cid);
    if (!c || c->filter != evhttp_connection_get_bufferevent(evcon) ||
        (c->st != C_BODY && c->st != C_WAIT && c->st != C_RAW) || !c->up.nonce ||
        strtoull(dot + 1, NULL, 16) != c->up.nonce || strlen(dot + 1) != 16)
        return NULL;
    return c;
}

struct upload *upload_of(struct uploads *u, struct evhttp_request *ev)
{
    struct upconn *c = conn_of(u, ev);
    return c && c->st == C_BODY && c->up.mode == U_PENDING ? &c->up : NULL;
}

int64_t upload_length(const struct upload *up)
{
    return up->length;
}

void upload_accept(struct upload *up, upload_sink_fn sink, upload_done_fn done, void *arg)
{
    struct upconn *c = up->c;
    up->sink = sink;
    up->done = done;
    up->arg = arg;
    up->mode = U_ACCEPTED;
    if (!c->rd)
        c->rd = event_new(bufferevent_get_base(c->sock), bufferevent_getfd(c->sock),
                          EV_READ | EV_PERSIST, on_readable, c);
    if (up->expect_continue && up->remaining > 0) {
        /* Nothing else is being written now: the answer comes after the body. */
        struct evbuffer *b = bufferevent_get_output(c->filter);
        evbuffer_add(b, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        bufferevent_enable(c->filter, EV_WRITE);
    }
    if (!c->chunk) c->chunk = xmalloc(READ_CHUNK);
    /* Start on the next turn of the loop, outside the handler. Add before activating: an
       active event is not put in the I/O map by event_add. */
    event_add(c->rd, &c->u->idle);
    event_active(c->rd, EV_READ, 0);
}

void upload_resume(struct upload *up)
{
    up->paused = false;
    event_add(up->c->rd, &up->c->u->idle);
    event_active(up->c->rd, EV_READ, 0);
}

void upload_on_reply(struct uploads *u, struct evhttp_request *ev)
{
    struct upconn *c = conn_of(u, ev);
    if (!c) return;
    struct upload *up = &c->up;
    up->replied = true;
    struct evkeyvalq *out = evhttp_request_get_output_headers(ev);
    if (c->st == C_RAW) { /* the body broke off: nothing more can be framed here */
        evhttp_add_header(out, "Connection", "close");
        return;
    }
    if (c->st == C_WAIT) {
        next_request(c);
        return;
    }
    if (up->mode != U_PENDING) /* accepted: the body's end moves it on */
        return;
    /* Nobody took the body: throw it away, or hang up when there is much of it, or when the
       client waits for a 100 Continue that will not come (it may never send the body). */
    up->mode = U_DISCARD;
    if (up->remaining > CLOSE_OVER || (up->expect_continue && up->remaining > 0)) {
        evhttp_add_header(out, "Connection", "close");
        c->st = C_RAW;
        /* Once evhttp has sent the answer and closed, a dup of the socket lingers, so that
           a client still sending the body reads the answer instead of a reset. */
        int fd = bufferevent_getfd(c->sock);
        if (c->linger_fd < 0 && fd >= 0) c->linger_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        return;
    }
    if (!c->rd)
        c->rd = event_new(bufferevent_get_base(c->sock), bufferevent_getfd(c->sock),
                          EV_READ | EV_PERSIST, on_readable, c);
    if (up->remaining == 0) {
        body_finish(c);
        return;
    }
    body_start(c);
}
