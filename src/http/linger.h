/*
 * linger.h - closing a connection without losing the answer (nginx's lingering_close).
 *
 * A server that answers before it has read the request's body (a refusal at the
 * head, an over-limit body) and then closes the socket makes the kernel reset
 * the connection when the client's unread bytes arrive, and the client sees a
 * broken pipe instead of the answer. A lingering close sends the answer, shuts
 * the socket for writing (so the client sees the answer end), then reads and
 * throws away what the client still sends until it closes its side, it stays
 * silent for LINGER_IDLE_S, LINGER_TIME_S have passed or LINGER_BYTES were
 * read: only then is the socket closed. Memory: one small read buffer shared
 * by all.
 */
#ifndef DROVER_HTTP_LINGER_H
#define DROVER_HTTP_LINGER_H

#include <event2/event.h>
#include <stddef.h>

#define LINGER_IDLE_S 5
#define LINGER_TIME_S 30
#define LINGER_BYTES (1024 * 1024 * 1024)

struct lingers;

/* At most max sockets linger at a time (the others are closed at once). */
struct lingers *lingers_new(struct event_base *base, int max);
/* Closes every lingering socket. NULL is fine. */
void lingers_free(struct lingers *l);
/*
 * Takes fd (a connected socket, its own descriptor: a dup() when someone else
 * still holds the original) and sends answer (n bytes, copied; may be 0) then
 * lingers as above. When max sockets already linger, sends what the socket
 * takes of the answer at once and closes it.
 */
void linger_start(struct lingers *l, int fd, const void *answer, size_t n);
/* Sockets lingering now. */
int lingers_count(const struct lingers *l);

#endif
