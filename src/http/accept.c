/*
 * accept.c - see accept.h.
 *
 * libevent calls a listener's error callback with the listener's user data,
 * which is evhttp's: the guards are found by their listener in `guards` (one
 * per server in the process; loop threads only).
 */
#include "http/accept.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

struct accept_guard {
    struct evconnlistener *lev;
    struct event *resume;
    int spare; /* a descriptor given up when there is none left */
    int64_t last_log_ms;
    uint64_t failures; /* since the last log line */
};

#define GUARDS_MAX 8
static struct accept_guard *guards[GUARDS_MAX];

static int spare_open(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct accept_guard *g = arg;
    (void)fd;
    (void)what;
    if (g->spare < 0) g->spare = spare_open();
    evconnlistener_enable(g->lev);
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    int err = errno;
    struct accept_guard *g = NULL;
    (void)arg;
    for (int i = 0; i < GUARDS_MAX && !g; i++)
        if (guards[i] && guards[i]->lev == lev) g = guards[i];
    if (!g) return;
    g->failures++;
    int64_t now = time_mono_ns() / 1000000;
    if (!g->last_log_ms || now - g->last_log_ms >= ACCEPT_LOG_S * 1000) {
        log_warn("cannot accept connections: %s (%llu times since the last report); pausing "
                 "%d ms",
                 strerror(err), (unsigned long long)g->failures, ACCEPT_PAUSE_MS);
        g->last_log_ms = now;
        g->failures = 0;
    }
    if ((err == EMFILE || err == ENFILE) && g->spare >= 0) {
        close(g->spare);
        int fd = accept(evconnlistener_get_fd(lev), NULL, NULL);
        if (fd >= 0) close(fd);
        g->spare = spare_open();
    }
    evconnlistener_disable(lev);
    struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};
    event_add(g->resume, &pause);
}

struct accept_guard *accept_guard_new(struct evconnlistener *lev)
{
    struct accept_guard *g = xcalloc(1, sizeof(*g));
    g->lev = lev;
    g->spare = spare_open();
    g->resume = evtimer_new(evconnlistener_get_base(lev), on_resume, g);
    for (int i = 0; i < GUARDS_MAX; i++)
        if (!guards[i]) {
            guards[i] = g;
            evconnlistener_set_error_cb(lev, on_accept_error);
            break;
        }
    return g;
}

void accept_guard_free(struct accept_guard *g)
{
    if (!g) return;
    for (int i = 0; i < GUARDS_MAX; i++)
        if (guards[i] == g) {
            guards[i] = NULL;
            evconnlistener_set_error_cb(g->lev, NULL);
        }
    event_free(g->resume);
    if (g->spare >= 0) close(g->spare);
    free(g);
}
