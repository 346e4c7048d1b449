/*
 * tls.c - see tls.h.
 *
 * Each connection is a pipe of two bufferevents: `front` (OpenSSL over the
 * client's socket) and `back` (a Unix socket to evhttp). What one side reads
 * is appended to the other's output. When a side ends (end of file, an
 * error, a failed handshake), what it had read still goes to its partner.
 * The client gone, the pipe ends once evhttp has taken what it sent. evhttp
 * gone (its answer sent, or a refusal with a lingering close), the client
 * gets the rest of the answer, and the front lingers as linger.h says: it
 * reads and drops what the client still sends until the client closes, is
 * silent for LINGER_IDLE_S, LINGER_TIME_S have passed or LINGER_BYTES were
 * read, so that a client that sends a whole refused body before it reads
 * reads the answer instead of a reset.
 */
#include "http/tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "http/linger.h"

#define INNER_NAME "tls.sock"

struct tls_pipe {
    struct tls_front *f;
    struct bufferevent *front, *back;
    bool front_done, back_done; /* that side has ended: no more input from it */
    bool handshaken;
    struct event *linger; /* ends the lingering front after LINGER_TIME_S */
    int64_t dropped;      /* bytes read and dropped while lingering */
    LIST_ENTRY(tls_pipe) link;
};

struct tls_front {
    struct event_base *base;
    SSL_CTX *ctx;
    struct evconnlistener *lev;
    struct sockaddr_un inner;
    socklen_t inner_len;
    char *inner_path; /* the socket's real path, removed at the end */
    int inner_dir_fd; /* when the path is too long for sun_path: /proc/self/fd/N/... */
    LIST_HEAD(, tls_pipe) pipes;
    int n;
    uint64_t accepted, handshake_failures;
};

/* OpenSSL's first queued error, as text (the queue is emptied). */
static const char *ssl_reason(char *buf, size_t n)
{
    unsigned long code = ERR_get_error();
    if (!code) {
        snprintf(buf, n, "unknown reason");
    } else {
        const char *r = ERR_reason_error_string(code);
        snprintf(buf, n, "%s", r ? r : "unknown reason");
    }
    ERR_clear_error();
    return buf;
}

int tls_front_new(struct event_base *base, const char *cert_file, const char *key_file,
                  struct tls_front **out, struct err *e)
{
    char why[256];
    *out = NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) return err_set(e, ERR_INTERNAL, "cannot make a TLS context: %s",
                             ssl_reason(why, sizeof(why)));
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* a file that cannot be read: the system's words (OpenSSL 3 has none for them) */
    const char *files[2][2] = {{"tls-cert", cert_file}, {"tls-key", key_file}};
    for (int i = 0; i < 2; i++) {
        FILE *fp = fopen(files[i][1], "r");
        if (!fp) {
            err_field(e, ERR_INVALID, files[i][0], "cannot read --%s '%s': %s", files[i][0],
                      files[i][1], strerror(errno));
            SSL_CTX_free(ctx);
            return ERR_INVALID;
        }
        fclose(fp);
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        err_field(e, ERR_INVALID, "tls-cert", "cannot use --tls-cert '%s': %s", cert_file,
                  ssl_reason(why, sizeof(why)));
        SSL_CTX_free(ctx);
        return ERR_INVALID;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            err_field(e, ERR_INVALID, "tls-key",
                      "--tls-key '%s' does not belong to --tls-cert '%s'", key_file, cert_file);
        } else {
            err_field(e, ERR_INVALID, "tls-key", "cannot use --tls-key '%s': %s", key_file,
                      ssl_reason(why, sizeof(why)));
        }
        SSL_CTX_free(ctx);
        return ERR_INVALID;
    }
    struct tls_front *f = xcalloc(1, sizeof(*f));
    f->base = base;
    f->ctx = ctx;
    f->inner_dir_fd = -1;
    LIST_INIT(&f->pipes);
    *out = f;
    return 0;
}

int tls_front_inner(struct tls_front *f, const char *inner_dir, struct err *e)
{
    f->inner_path = xasprintf("%s/%s", inner_dir, INNER_NAME);
    unlink(f->inner_path); /* left by a server that was killed */
    f->inner.sun_family = AF_UNIX;
    char path[sizeof(f->inner.sun_path)];
    int n = snprintf(path, sizeof(path), "%s", f->inner_path);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        /* too long for an address: reach the folder through a descriptor of it */
        f->inner_dir_fd = open(inner_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (f->inner_dir_fd < 0)
            return err_set(e, ERR_IO, "cannot open '%s': %s", inner_dir, strerror(errno));
        snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", f->inner_dir_fd, INNER_NAME);
    }
    memcpy(f->inner.sun_path, path, strlen(path) + 1);
    f->inner_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return err_set(e, ERR_IO, "cannot make a socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&f->inner, f->inner_len) || chmod(f->inner_path, 0600) ||
        listen(fd, 1024)) {
        int rc = err_set(e, ERR_IO, "cannot listen on '%s': %s", f->inner_path, strerror(errno));
        close(fd);
        return rc;
    }
    return fd;
}

static void pipe_free(struct tls_pipe *p)
{
    LIST_REMOVE(p, link);
    p->f->n--;
    if (!p->handshaken) p->f->handshake_failures++;
    bufferevent_free(p->front);
    if (p->back) bufferevent_free(p->back);
    if (p->linger) event_free(p->linger);
    free(p);
}

static struct bufferevent *partner(struct tls_pipe *p, struct bufferevent *bev)
{
    return bev == p->front ? p->back : p->front;
}

static bool side_done(struct tls_pipe *p, struct bufferevent *bev)
{
    return bev == p->front ? p->front_done : p->back_done;
}

/* Moves what bev read to its partner; stops reading bev while the partner is full. */
static void on_read(struct bufferevent *bev, void *arg)
{
    struct tls_pipe *p = arg;
    struct bufferevent *to = partner(p, bev);
    struct evbuffer *in = bufferevent_get_input(bev);
    if (side_done(p, to)) { /* nobody to take it: the front lingers */
        p->dropped += (int64_t)evbuffer_get_length(in);
        evbuffer_drain(in, evbuffer_get_length(in));
        if (p->dropped > LINGER_BYTES) pipe_free(p);
        return;
    }
    struct evbuffer *out = bufferevent_get_output(to);
    evbuffer_add_buffer(out, in);
    if (evbuffer_get_length(out) >= TLS_PIPE_MAX) bufferevent_disable(bev, EV_READ);
}

/* bev's output drained to half: its partner may be read again, or the pipe is over. */
static void on_write(struct bufferevent *bev, void *arg)
{
    struct tls_pipe *p = arg;
    struct bufferevent *from = partner(p, bev);
    if (bev == p->back && p->front_done) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) pipe_free(p);
        return;
    }
    if (side_done(p, from)) return; /* the front lingers: its events end it */
    if (!(bufferevent_get_enabled(from) & EV_READ)) bufferevent_enable(from, EV_READ);
}

static void on_linger_over(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    pipe_free(arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct tls_pipe *p = arg;
    if (what & BEV_EVENT_CONNECTED) { /* the back's connect, or the front's handshake */
        if (bev == p->front) p->handshaken = true;
        return;
    }
    if (bev == p->front) {
        if (what & BEV_EVENT_ERROR) {
            char why[256];
            unsigned long code = bufferevent_get_openssl_error(bev);
            if (code) ERR_error_string_n(code, why, sizeof(why));
            log_debug("tls: connection %s: %s", p->handshaken ? "ended" : "refused in handshake",
                      code ? why : "closed");
        }
        /* the client is gone: the pipe ends once evhttp has taken what it sent */
        p->front_done = true;
        if (!p->back_done) on_read(p->front, p);
        if (p->back_done || evbuffer_get_length(bufferevent_get_output(p->back)) == 0) {
            pipe_free(p);
            return;
        }
        bufferevent_disable(p->front, EV_READ | EV_WRITE);
        bufferevent_disable(p->back, EV_READ);
        return;
    }
    /* evhttp is gone: the client gets the rest of the answer, and the front lingers */
    p->back_done = true;
    if (!p->front_done) on_read(p->back, p);
    bufferevent_disable(p->back, EV_READ | EV_WRITE);
    if (p->front_done) {
        pipe_free(p);
        return;
    }
    struct timeval idle = {LINGER_IDLE_S, 0}, all = {LINGER_TIME_S, 0};
    bufferevent_set_timeouts(p->front, &idle, &idle);
    bufferevent_enable(p->front, EV_READ | EV_WRITE);
    p->linger = evtimer_new(p->f->base, on_linger_over, p);
    evtimer_add(p->linger, &all);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct tls_front *f = arg;
    (void)lev, (void)sa, (void)salen;
    SSL *ssl = SSL_new(f->ctx);
    if (!ssl) {
        close(fd);
        return;
    }
    struct tls_pipe *p = xcalloc(1, sizeof(*p));
    p->f = f;
    p->front = bufferevent_openssl_socket_new(f->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                              BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!p->front) { /* the bufferevent did not take ssl and fd */
        SSL_free(ssl);
        close(fd);
        free(p);
        return;
    }
    LIST_INSERT_HEAD(&f->pipes, p, link);
    f->n++;
    f->accepted++;
    p->back = bufferevent_socket_new(f->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!p->back || bufferevent_socket_connect(p->back, (struct sockaddr *)&f->inner,
                                               (int)f->inner_len)) {
        log_warn("tls: cannot pass a connection on to the server: %s", strerror(errno));
        p->handshaken = true; /* not the client's failure */
        pipe_free(p);
        return;
    }
    /* a peer that takes no byte of its answer for this long is given up */
    struct timeval stall = {TLS_WRITE_STALL_S, 0};
    bufferevent_set_timeouts(p->front, NULL, &stall);
    bufferevent_set_timeouts(p->back, NULL, &stall);
    bufferevent_setwatermark(p->front, EV_WRITE, TLS_PIPE_MAX / 2, 0);
    bufferevent_setwatermark(p->back, EV_WRITE, TLS_PIPE_MAX / 2, 0);
    bufferevent_setcb(p->front, on_read, on_write, on_event, p);
    bufferevent_setcb(p->back, on_read, on_write, on_event, p);
    bufferevent_enable(p->front, EV_READ | EV_WRITE);
    bufferevent_enable(p->back, EV_READ | EV_WRITE);
}

void tls_front_listen(struct tls_front *f, struct evconnlistener *lev)
{
    f->lev = lev;
    evconnlistener_set_cb(lev, on_accept, f);
}

void tls_front_stop(struct tls_front *f)
{
    if (f && f->lev) {
        evconnlistener_free(f->lev);
        f->lev = NULL;
    }
}

void tls_front_free(struct tls_front *f)
{
    if (!f) return;
    tls_front_stop(f);
    while (!LIST_EMPTY(&f->pipes)) {
        struct tls_pipe *p = LIST_FIRST(&f->pipes);
        p->handshaken = true;
        pipe_free(p);
    }
    if (f->inner_path) unlink(f->inner_path);
    free(f->inner_path);
    if (f->inner_dir_fd >= 0) close(f->inner_dir_fd);
    SSL_CTX_free(f->ctx);
    free(f);
}

void tls_front_stats(const struct tls_front *f, struct tls_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (!f) return;
    st->conns = f->n;
    st->accepted = f->accepted;
    st->handshake_failures = f->handshake_failures;
}
