/*
 * tls.h - HTTPS for the server: TLS ended in the process, in front of the plain listener.
 *
 * The server's connection guards (upload.h: bodies read straight from the
 * socket, answers written to it, lingering closes on a dup of it) work on
 * plain sockets. Rather than teach each of them TLS, a TLS front accepts the
 * public connections, runs the handshake and the records with OpenSSL
 * (libevent's bufferevent_openssl), and pipes the plain bytes of each
 * connection to evhttp over a Unix socket of its own, in the data folder
 * (mode 0700: only the server's user can connect to it). Everything behind
 * the front -- limits, timeouts, lingering, the cap on connections -- is the
 * same as without TLS; the cap and the timeouts close the inner connection,
 * and the front closes the outer one with it.
 *
 * Backpressure: a side whose partner has more than TLS_PIPE_MAX bytes
 * waiting to be written is not read until that has drained to half.
 *
 * One front per server, on the server's loop thread.
 */
#ifndef DROVER_HTTP_TLS_H
#define DROVER_HTTP_TLS_H

#include <event2/event.h>
#include <event2/listener.h>
#include <stdint.h>

#include "common/err.h"

#define TLS_PIPE_MAX (256 * 1024)
#define TLS_WRITE_STALL_S 120 /* a side that takes nothing of what it is sent this long ends */

struct tls_front;

/*
 * Loads cert_file (PEM: the certificate, then any intermediates) and key_file
 * (PEM private key) and checks that they belong together. ERR_INVALID naming
 * the file and OpenSSL's reason when they cannot be used.
 */
int tls_front_new(struct event_base *base, const char *cert_file, const char *key_file,
                  struct tls_front **out, struct err *e);
/*
 * Listens on inner_dir/tls.sock (made afresh; the folder must be private)
 * for the front's plain connections: returns the listening descriptor for
 * evhttp (evhttp_accept_socket), or a negative ERR_* with e filled.
 */
int tls_front_inner(struct tls_front *f, const char *inner_dir, struct err *e);
/* Serves TLS on lev (taken: freed with the front). */
void tls_front_listen(struct tls_front *f, struct evconnlistener *lev);
/* Stops accepting new connections; the open ones go on until they end. */
void tls_front_stop(struct tls_front *f);
/* Closes every connection and frees the front; removes the inner socket. NULL is fine. */
void tls_front_free(struct tls_front *f);

struct tls_stats {
    int conns;                     /* open TLS connections */
    uint64_t accepted;             /* connections accepted so far */
    uint64_t handshake_failures;   /* connections that ended before their handshake did */
};
void tls_front_stats(const struct tls_front *f, struct tls_stats *st);

#endif
