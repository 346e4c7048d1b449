/*
 * triggers.h - upload triggers (docs/api.md "Triggers"): a job spec or workflow body
 * submitted once per object version created under a prefix.
 *
 * Fires are found two ways: an object created through /v1/blobs (a token, a presigned URL
 * of the embedded store) writes its pending fires in the transaction of its event
 * (store_event_object); with a remote object store (--blobs s3://...), where uploads may go
 * straight to S3, the leader also lists each trigger's prefix every --trigger-scan seconds
 * and records a fire for each object committed since the trigger was made; with any store it
 * lists them once when it starts to lead (an object committed by a server killed before its
 * event was written). Either way the store's UNIQUE (trigger, uri, sha256) makes it one fire
 * per object version.
 *
 * The leader submits pending fires: each one's job or workflow is written in the same
 * transaction that marks the fire with it (store_trigger_fire_done), so a crash (kill -9)
 * anywhere leaves either a pending fire, submitted after the restart, or the submission,
 * never both and never neither. Loop thread only.
 */
#ifndef DROVER_SERVER_TRIGGERS_H
#define DROVER_SERVER_TRIGGERS_H

#include <jansson.h>

#include "common/err.h"
#include "store/store.h"

struct server;
struct triggers;

/* scan_s: how often the prefixes are listed with a remote object store. */
struct triggers *triggers_new(struct server *s, int scan_s);
/* After the committer and the offload workers are done (their callbacks use it). NULL is fine. */
void triggers_free(struct triggers *t);
/* Each second on the leader: submits pending fires; lists the prefixes when due. */
void triggers_tick(struct triggers *t, int64_t now_ms);
/* An object was created (its fires may be pending): submit them now, if this is the leader. */
void triggers_kick(struct triggers *t);
/* A schedule was made or deleted through this server: the leader (this one) reads them again
   at its next tick (others within SCHEDULES_READ_MS). */
void triggers_schedules_changed(struct triggers *t);
/* Time zone `name`, loaded once and kept (errors name the field "timezone"). Loop thread. */
struct tz;
int triggers_zone(struct triggers *t, const char *name, const struct tz **out, struct err *e);

/*
 * What fire (uri, sha256) of trigger t submits, made on the loop: the template with the
 * object set (triggers.h, docs/api.md "Triggers"), services expanded, validated. Errors name
 * the field from the top of a trigger's body ("job.command.program", "input").
 */
struct trigger_submit;
int triggers_build(struct server *s, const struct trigger_rec *t, const char *uri,
                   const char *sha256, struct trigger_submit **out, struct err *e);
void trigger_submit_free(struct trigger_submit *ts); /* NULL is fine */
/* The id of the job or workflow it submits. */
const char *trigger_submit_target(const struct trigger_submit *ts);
/* Writer thread: fire `fire` marked with what ts submits, and ts stored (within its tenant's
   max_queued: else ERR_QUOTA), in the caller's transaction; *not_pending (may be NULL): the
   fire was done already, or its trigger deleted. */
int triggers_submit_write(struct store *st, int64_t fire, struct trigger_submit *ts,
                          bool *not_pending, struct err *e);
/* Loop, once that committed: the scheduler (or the workflow's start) learns of it. */
void triggers_submit_committed(struct server *s, struct trigger_submit *ts);
/* Sets DROVER_TRIGGER_OBJECT and DROVER_TRIGGER_SHA256 in a validated spec's command.env. */
void triggers_spec_env(json_t *spec, const char *uri, const char *sha256);

#endif
