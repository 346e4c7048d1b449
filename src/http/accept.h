/*
 * accept.h - a listener that survives running out of file descriptors.
 *
 * When accept() fails with EMFILE or ENFILE, libevent's listener logs it and
 * tries again at once: the pending connection stays in the backlog, the
 * socket stays readable, and the loop spins at 100 % CPU writing the same
 * line millions of times. Guarded, a failed accept instead: closes a spare
 * descriptor kept for this, accepts the pending connection and closes it at
 * once (its client sees the connection end instead of a hang), opens the
 * spare again, and pauses accepting for ACCEPT_PAUSE_MS. The log line is
 * written at most once per ACCEPT_LOG_S seconds, with the count since.
 */
#ifndef DROVER_HTTP_ACCEPT_H
#define DROVER_HTTP_ACCEPT_H

#include <event2/listener.h>

#define ACCEPT_PAUSE_MS 100
#define ACCEPT_LOG_S 10

struct accept_guard;

/* Guards lev (borrowed: free the guard before the listener). */
struct accept_guard *accept_guard_new(struct evconnlistener *lev);
/* NULL is fine. */
void accept_guard_free(struct accept_guard *g);

#endif
