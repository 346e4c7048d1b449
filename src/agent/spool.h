/*
 * spool.h - the agent's durable records in WORK_DIR/spool/, so that nothing
 * that matters is lost when the agent or the server restarts (protocol.md,
 * "The agent's side"). One record per job and attempt, named
 * "<job>-<attempt>.lease":
 *
 *   written before the job starts: {"job", "attempt", "slots", "deadline"},
 *   and "waiting": true for a prefetched lease that waited for a slot
 *   (recovery gives it back while no "run" says a process of it started);
 *   (recovery never runs a job again: the spec is not kept; older agents'
 *   records hold it); rewritten once the process runs, with "run": {"pgid",
 *   "starttime" (of the group leader, /proc/PID/stat field 22), "boot_id",
 *   "started_at_ms", "runtime", "container"} to find the process group after
 *   a restart without killing a stranger; and once the job has ended, before
 *   its report goes, with "finished": the `finished` report, sent again after
 *   a restart until settled. Removed once the job is settled.
 *
 * The records live in one append-only file, WORK_DIR/spool/journal: each write
 * or removal appends one line, `{"job", "attempt", "kind", "doc"}` or
 * `{"job", "attempt", "kind", "del": true}`, in one write(2); the last line
 * about a record is its state. So a job costs four small appends and no file
 * made, renamed or removed (a file per record, rewritten in place and renamed
 * to and from free names, cost the agent ~25 us of CPU per job, a sixth of
 * it). The records that hold are also kept in memory; once the journal has
 * grown past SPOOL_COMPACT_MIN and four times what they take, it is written
 * anew with only them (a new file renamed over it), as it is at every open.
 *
 * A kill cuts at most the last line (the one being appended, whose write never
 * returned: nothing was done on it): at open a last line without its newline is
 * dropped. A line in the middle that is not a record (the file damaged) is
 * skipped with a warning, and the journal as it was is kept as journal.bad for a
 * human. Records are not fsync'd: a record must survive the agent's own crash
 * or kill -9, which the kernel's page cache does; if the machine itself goes
 * down, the server marks the agent lost and retries its jobs, and a record
 * lost with the machine can only turn a result that was never delivered into a
 * retry — never into a second, different outcome (the server records an
 * attempt's outcome once). Syncing cost ~2 ms per job (8 fsyncs) on the
 * benchmark machine. A settled record that comes back is sent again, which the
 * protocol allows.
 *
 * Older agents kept a file per record (<job>-<attempt>.lease, and before that
 * .started, .run and .finished records of their own): spool_open reads those
 * into the journal and removes them (a file that is not JSON is renamed to
 * "<name>.bad" and skipped), with the ".free-N" and ".*.tmp" files they left.
 *
 * `job` must be a canonical UUID and `attempt` >= 1; otherwise ERR_INVALID.
 */
#ifndef DROVER_AGENT_SPOOL_H
#define DROVER_AGENT_SPOOL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/hmap.h"
#include "common/uuid.h"

/* a journal past this size is written anew once it is four times its records */
#define SPOOL_COMPACT_MIN (1 << 20)

struct spool {
    char *dir;        /* owned */
    int dirfd;        /* the open folder, -1 when closed */
    int fd;           /* the journal, opened for appending; -1 when closed */
    size_t size;      /* of the journal, in bytes */
    size_t live;      /* what the records that hold take of it */
    struct hmap recs; /* "<job>-<attempt>.<kind>" -> its journal line (owned), newline included */
    bool holding;     /* spool_hold: removals wait in held */
    struct buf held;  /* their lines */
};

struct spool_key {
    char job[UUID_STR_LEN];
    int attempt;
};

/* Opens (creating it, mode 0700, with its parents) the folder `dir` and reads its records
   (older agents' files included, above). ERR_IO on failure. */
int spool_open(struct spool *s, const char *dir, struct err *e);
void spool_close(struct spool *s);

/* Writes (or rewrites) `doc` (borrowed) as the record `kind` ("lease"; "started", "run" and
   "finished" were older agents'). ERR_IO, and the record is as it was. */
int spool_put(struct spool *s, const char *job, int attempt, const char *kind, json_t *doc,
              struct err *e);

/*
 * Sets doc's member `key` (a-z and _) to `value` (both borrowed) and writes the record as
 * spool_put would: a member doc did not have is added to the line last written for it
 * (dumping only `value`), as a dump of doc would place it.
 */
int spool_put_member(struct spool *s, const char *job, int attempt, const char *kind, json_t *doc,
                     const char *key, json_t *value, struct err *e);

/* Reads a record: *doc gets a new reference. ERR_NOTFOUND when there is none. */
int spool_get(struct spool *s, const char *job, int attempt, const char *kind, json_t **doc,
              struct err *e);

/* Removes a record; an absent one is not an error. */
int spool_del(struct spool *s, const char *job, int attempt, const char *kind, struct err *e);

/*
 * Removals from spool_hold to spool_flush are appended together by spool_flush (or by
 * a spool_put meanwhile, before its own line): one write for the jobs a report
 * settled. A removal a crash lost only sends a settled record again. ERR_IO.
 */
void spool_hold(struct spool *s);
int spool_flush(struct spool *s, struct err *e);

/*
 * The (job, attempt) pairs that have at least one record, sorted (UUIDv7 ids
 * sort by time, so oldest first). *keys is newly allocated (free it).
 */
int spool_list(struct spool *s, struct spool_key **keys, size_t *n, struct err *e);

#endif
