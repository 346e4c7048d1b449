/*
 * sync.h - several servers on one store (STORE_CAP_SHARED, issue 11): keeping this
 * server's fleet (agents, leases, ready queues) in step with what the others commit.
 *
 * The events table is the ordered log of every change. Each commit that wrote events
 * announces itself (PostgreSQL: one NOTIFY per committed batch, store_opts.notify); a
 * handle of this server's own listens, and on an announcement (and once a second anyway,
 * which also covers an announcement lost to a reconnect) the server reads the events after
 * the last seq it has seen and, for each job they name, applies the job as the store has it
 * now (fleet_job_synced); its own events (commit_wrote_event) it skips, and those that
 * follow the last seq seen with no other server's between (commit_skip_own) it does not
 * read at all: an announcement says the newest seq committed, so a server alone on the
 * database reads nothing back. Agents are read
 * from the store once a second (fleet_agent_synced: registrations and states stored by
 * others, the newest last_seen of all servers), and the last_seen of the agents polling
 * this server is written back (fleet_flush_seen) so that the leader judges liveness on
 * what every server saw.
 *
 * Leasing needs nothing of this: store_job_lease (FOR UPDATE SKIP LOCKED and a state check)
 * never leases a job twice, and a candidate another server took is dropped.
 */
#ifndef DROVER_SERVER_SYNC_H
#define DROVER_SERVER_SYNC_H

#include "common/err.h"

struct server;
struct sync;

/*
 * Opens the listening handle on db_uri and notes the newest event: call before the fleet
 * loads, so that nothing committed after the load is missed (applying a change again is
 * harmless). s->reads must be open; s->fleet is used from the first sync_tick on.
 */
int sync_new(struct server *s, const char *db_uri, struct sync **out, struct err *e);
void sync_free(struct sync *y);
/* The server is shutting down: other servers' commits are no longer read. NULL is fine. */
void sync_stop(struct sync *y);
/* Once a second: agents, this server's last_seen of them, and the events not yet read. */
void sync_tick(struct sync *y);

#endif
