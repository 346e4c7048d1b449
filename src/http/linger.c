/*
 * linger.c - see linger.h.
 *
 * Each lingering socket has one persistent event: readable (read and drop), or
 * writable while the answer is not all out, with LINGER_IDLE_S as its timeout.
 * The socket is closed by linger_end(), once, which unlinks and frees it.
 */
#include "http/linger.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "common/xalloc.h"

struct lingerer {
    struct lingers *l;
    int fd;
    struct event *ev;
    struct evbuffer *out; /* the answer's part not yet sent */
    int64_t until_ms;
    int64_t read;
    LIST_ENTRY(lingerer) link;
};

struct lingers {
    struct event_base *base;
    int max, n;
    LIST_HEAD(, lingerer) all;
};

static char sink[64 * 1024]; /* what lingering sockets read goes here, unread */

static void linger_end(struct lingerer *g)
{
    LIST_REMOVE(g, link);
    g->l->n--;
    event_free(g->ev);
    evbuffer_free(g->out);
    close(g->fd);
    free(g);
}

static void on_event(evutil_socket_t fd, short what, void *arg);

static void linger_wait(struct lingerer *g, short what)
{
    struct timeval idle = {LINGER_IDLE_S, 0};
    event_del(g->ev);
    event_assign(g->ev, g->l->base, g->fd, what | EV_PERSIST, on_event, g);
    event_add(g->ev, &idle);
}

/* Sends what the socket takes of the answer; once it is all out, ends the writing side. */
static int linger_flush(struct lingerer *g)
{
    while (evbuffer_get_length(g->out)) {
        int n = evbuffer_write(g->out, g->fd);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 1;
        if (n <= 0) return -1;
    }
    shutdown(g->fd, SHUT_WR);
    return 0;
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    struct lingerer *g = arg;
    if ((what & EV_TIMEOUT) || time_mono_ns() / 1000000 >= g->until_ms) {
        linger_end(g);
        return;
    }
    if (what & EV_WRITE) {
        int rc = linger_flush(g);
        if (rc < 0)
            linger_end(g);
        else if (rc == 0)
            linger_wait(g, EV_READ);
        return;
    }
    ssize_t n = read(fd, sink, sizeof(sink));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0 || (g->read += n) >= LINGER_BYTES) { /* the client closed, or enough */
        linger_end(g);
        return;
    }
    struct timeval idle = {LINGER_IDLE_S, 0};
    event_add(g->ev, &idle); /* restarts the idle timeout */
}

struct lingers *lingers_new(struct event_base *base, int max)
{
    struct lingers *l = xcalloc(1, sizeof(*l));
    l->base = base;
    l->max = max;
    LIST_INIT(&l->all);
    return l;
}

void lingers_free(struct lingers *l)
{
    if (!l) return;
    while (!LIST_EMPTY(&l->all))
        linger_end(LIST_FIRST(&l->all));
    free(l);
}

int lingers_count(const struct lingers *l)
{
    return l->n;
}

void linger_start(struct lingers *l, int fd, const void *answer, size_t n)
{
    if (l->n >= l->max) {
        ssize_t w = write(fd, answer, n); /* best effort: the socket's buffer takes most */
        (void)w;
        close(fd);
        return;
    }
    struct lingerer *g = xcalloc(1, sizeof(*g));
    g->l = l;
    g->fd = fd;
    g->out = evbuffer_new();
    evbuffer_add(g->out, answer, n);
    g->until_ms = time_mono_ns() / 1000000 + LINGER_TIME_S * 1000;
    g->ev = event_new(l->base, fd, EV_READ | EV_PERSIST, on_event, g);
    LIST_INSERT_HEAD(&l->all, g, link);
    l->n++;
    evutil_make_socket_nonblocking(fd);
    int rc = linger_flush(g);
    if (rc < 0)
        linger_end(g);
    else
        linger_wait(g, rc ? EV_WRITE : EV_READ);
}
