/*
 * offload.h - slow calls (fsync of an uploaded object, S3 requests) run on a
 * worker thread so that the event loop never waits on a disk or the network.
 *
 * offload_run(o, work, done, arg): work(arg) runs on one of a few worker
 * threads, then done(arg) on the loop thread. Jobs may run at the same time
 * and end in any order: a caller keeps at most one job of its own in flight
 * (an upload writes its next piece once the last is done).
 */
#ifndef DROVER_SERVER_OFFLOAD_H
#define DROVER_SERVER_OFFLOAD_H

#include <event2/event.h>
#include <stdbool.h>

struct offload;
typedef void (*offload_fn)(void *arg);

struct offload *offload_new(struct event_base *base);
/* Waits for the jobs in flight, runs their done() callbacks, and frees (NULL is fine). */
void offload_free(struct offload *o);
void offload_run(struct offload *o, offload_fn work, offload_fn done, void *arg);
/* True when no job is queued or running. */
bool offload_idle(const struct offload *o);

#endif
