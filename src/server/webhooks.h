/*
 * webhooks.h - delivering a job's events to its notify_url.
 *
 * The store writes each delivery into an outbox in the transaction of the
 * event (store.h, store_webhook_*), so a delivery exists exactly when its
 * event was committed, and survives a crash. A thread of its own reads what
 * is due, POSTs it (several at once, each bounded in time) and hands the
 * outcomes to the event loop, which records them through the group
 * committer: a delivered one leaves the outbox, a failed one is tried again
 * later with exponential backoff, for WEBHOOK_GIVE_UP_MS after its event.
 * Neither the loop nor the committer ever waits for a receiver.
 *
 * A delivery is at-least-once: its id is the same on every try (receivers
 * drop repeats by it). Each POST is signed (docs/api.md "Webhooks"):
 *   X-Drover-Signature: sha256=HEX(HMAC-SHA256(secret, TIMESTAMP "." BODY))
 */
#ifndef DROVER_SERVER_WEBHOOKS_H
#define DROVER_SERVER_WEBHOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/netmask.h"

struct server;
struct webhooks;

#define WEBHOOK_GIVE_UP_MS (25LL * 3600 * 1000) /* retried for at least 24 hours */
#define WEBHOOK_TIMEOUT_MS 10000                /* one POST, connection included */
#define WEBHOOK_BATCH 16                        /* deliveries in flight at once */

/* The wait before try number `tries` + 1 (tries >= 1 made): 1 s doubling, at most 1 h. */
int64_t webhook_backoff_ms(int tries);

/*
 * Starts the deliverer for s: a thread with its own store handle on db_uri,
 * signing with `secret` (len bytes). A receiver is reached only at an address in `allow`
 * and not in `deny` (both copied), checked at each connection after the host is resolved:
 * a refused try fails, and is tried again later as any failed try is, its error naming
 * the address.
 */
int webhooks_start(struct server *s, const char *db_uri, const unsigned char *secret, size_t len,
                   const struct netmask_list *allow, const struct netmask_list *deny,
                   struct webhooks **out, struct err *e);
/* Paused: nothing is delivered (this server is not the leader). Thread: loop. NULL is fine. */
void webhooks_set_paused(struct webhooks *w, bool paused);
/* A batch was committed: deliveries may have been queued. Thread: loop. NULL is fine. */
void webhooks_kick(struct webhooks *w);
/*
 * Stops the thread (deliveries in flight are abandoned; they stay in the
 * outbox and go out after a restart). Idempotent; NULL is fine.
 */
void webhooks_stop(struct webhooks *w);
/* Frees what is left (after webhooks_stop and after the committer is gone). NULL is fine. */
void webhooks_free(struct webhooks *w);

struct webhook_stats {
    uint64_t delivered; /* answered 2xx */
    uint64_t failed;    /* tries that failed */
    uint64_t dropped;   /* given up after WEBHOOK_GIVE_UP_MS */
};
void webhooks_get_stats(struct webhooks *w, struct webhook_stats *out);

#endif
