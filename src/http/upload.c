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
 *   C_DEAD  refused at its head (refuse_anonymous_body): input is dropped
 *
 * evhttp stops reading once it has dispatched a request and starts again
 * after the answer, so the filter never feeds it a request while it is busy.
 * Pipelined requests that follow a diverted body in the same read are read
 * when more bytes arrive (clients that pipeline uploads are not known).
 */
#include "http/upload.h"

#include <errno.h>
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

#include <openssl/rand.h>
#include <sys/socket.h>
#include <time.h>

#include "common/hmap.h"
#include "common/log.h"
#include "common/xalloc.h"

#define UPLOAD_HEADER "X-Drover-Upload"
#define URL_MAX (16 * 1024)
#define READ_CHUNK (256 * 1024)
#define CLOSE_OVER (1024 * 1024) /* a refused body larger than this closes the connection */


enum cstate { C_HEAD, C_PASS, C_BODY, C_WAIT, C_RAW, C_DEAD };
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
};

struct uploads {
    struct evhttp *http;
    struct timeval idle; /* a body that moves no byte this long is given up */
    char *prefix;
    uint64_t next_id;
    struct hmap conns; /* id -> struct upconn */
    http_parser_settings settings;
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

static void parser_reset(struct upconn *c)
{
    http_parser_init(&c->p, HTTP_REQUEST);
    c->p.data = c;
    c->url_len = 0;
    c->url[0] = '\0';
    c->url_long = false;
    c->at_head_end = c->at_message_end = false;
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
    if (c->st != C_BODY || up->mode == U_PENDING || up->paused) {
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

/* The head is whole: divert its body or let it through. */
/* A header of the held head, case-insensitively at a line's start. */
static bool head_has(struct upconn *c, const char *needle)
{
    size_t len = evbuffer_get_length(c->head), k = strlen(needle);
    const char *h = (const char *)evbuffer_pullup(c->head, -1);
    for (size_t i = 0; i + k <= len; i++)
        if (h[i] == '\n' && !strncasecmp(h + i, needle, k)) return true;
    return false;
}

/*
 * evhttp reads a body whole before the router sees the token: a large body
 * from a client that sends no credentials is refused here, at its head, and
 * the connection closed, so nobody can make the server buffer megabytes
 * without a token.
 */
#define ANON_BODY_MAX (64 * 1024)

static bool refuse_anonymous_body(struct upconn *c)
{
    const http_parser *p = &c->p;
    bool big = (p->flags & F_CHUNKED) ||
               ((p->flags & F_CONTENTLENGTH) && p->content_length > ANON_BODY_MAX);
    if (!big || head_has(c, "\nauthorization:") || strstr(c->url, "X-Drover-Signature="))
        return false;
    static const char body[] =
        "{\"error\":{\"code\":\"unauthenticated\",\"message\":\"missing token: send "
        "'Authorization: Bearer <token>' (a body over 64 KiB needs one before it is read)\"}}\n";
    char resp[512];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                     "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
                     sizeof(body) - 1, body);
    int fd = bufferevent_getfd(c->sock);
    ssize_t w = write(fd, resp, (size_t)n); /* small: the socket's buffer takes it */
    (void)w;
    shutdown(fd, SHUT_RDWR); /* evhttp sees the end and frees the connection */
    return true;
}

static void head_done(struct upconn *c, struct evbuffer *src, struct evbuffer *dst)
{
    if (!wants_divert(c) && refuse_anonymous_body(c)) {
        evbuffer_drain(c->head, evbuffer_get_length(c->head));
        evbuffer_drain(src, evbuffer_get_length(src));
        c->st = C_DEAD;
        return;
    }
    if (!wants_divert(c)) {
        evbuffer_add_buffer(dst, c->head);
        c->st = C_PASS;
        http_parser_pause(&c->p, 0);
        return;
    }
    evbuffer_drain(src, 1); /* the head's last line feed, which the parser had not taken */
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
        } else if (err != HPE_OK || c->p.upgrade) {
            /* Not HTTP we can frame: evhttp sees it all and answers for itself. */
            evbuffer_add_buffer(dst, c->head);
            c->st = C_RAW;
        }
    }
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
    if (c->u) hmap_del(&c->u->conns, c->id);
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
    snprintf(c->id, sizeof(c->id), "%" PRIu64, ++u->next_id);
    c->head = evbuffer_new();
    parser_reset(c);
    c->sock = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    c->filter = c->sock ? bufferevent_filter_new(c->sock, in_filter, out_filter,
                                                 BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS,
                                                 conn_free, c)
                        : NULL;
    c->kick = event_new(base, -1, 0, on_writable, c);
    if (!c->sock || !c->filter) {
        log_error("cannot set up a connection's buffers");
        if (c->sock) bufferevent_free(c->sock);
        evbuffer_free(c->head);
        event_free(c->kick);
        free(c);
        return NULL;
    }
    evbuffer_add_cb(bufferevent_get_output(c->filter), on_output_added, c);
    hmap_put(&u->conns, c->id, c);
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
        if (c->st == C_BODY && c->up.mode == U_ACCEPTED) {
            c->up.mode = U_DISCARD;
            c->up.done(c->up.arg, -1);
        }
    }
    hmap_release(&u->conns, NULL);
    free(u->prefix);
    free(u);
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
