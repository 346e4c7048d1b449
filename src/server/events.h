/*
 * events.h - the event stream (GET /v1/events, Server-Sent Events).
 *
 * The events themselves are written by the store, in the transaction of each
 * change (store.h); this module serves them to followers and prunes the
 * retained window.
 */
#ifndef DROVER_SERVER_EVENTS_H
#define DROVER_SERVER_EVENTS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct server;
struct events;

/* Serves followers on s's loop, keeping the newest `keep` events (pruned each minute). */
struct events *events_new(struct server *s, int64_t keep);
/* Ends every follower's stream. NULL is fine. */
void events_free(struct events *ev);
/* A batch was committed: followers get what is new. NULL is fine. */
void events_notify(struct events *ev);
/* The event as the stream shows it; a new reference. */
json_t *events_to_json(const struct event_rec *ev);
size_t events_followers(const struct events *ev);
uint64_t events_sent(const struct events *ev);

#endif
