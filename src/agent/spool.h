/*
 * spool.h - the agent's durable records in WORK_DIR/spool/, so that nothing
 * that matters is lost when the agent or the server restarts (protocol.md,
 * "The agent's side"). One JSON file per job and attempt:
 *
 *   <job>-<attempt>.lease     written before the job starts:
 *                             {"job", "attempt", "slots", "deadline"}, and
 *                             "waiting": true for a prefetched lease that
 *                             waited for a slot (recovery gives it back
 *                             while no "run" says a process of it started);
 *                             (recovery never runs a job again: the spec is
 *                             not kept; older agents' records hold it);
 *                             rewritten once the process runs, with "run":
 *                             {"pgid", "starttime" (of the group leader,
 *                             /proc/PID/stat field 22), "boot_id",
 *                             "started_at_ms", "runtime", "container"} to find
 *                             the process group after a restart without
 *                             killing a stranger; and once the job has ended,
 *                             before its report goes, with "finished": the
 *                             `finished` report, sent again after a restart
 *                             until settled. Removed once the job is settled.
 *
 * So a job costs one file: made (a reused one renamed, below), rewritten
 * twice in place (spool_update: one write, no rename), removed (renamed to a
 * free file). A `started` report is not kept: after a restart the job ends
 * and its `finished` report says when it started. Older agents wrote more
 * files, which recovery still reads: <job>-<attempt>.started (the started
 * report with "run"), .run (the same once its report was settled) and
 * .finished (the finished report); before those, "pgid", "starttime",
 * "boot_id" and "started_at_ms" were kept in the lease record itself.
 *
 * A record is written whole or not at all: a new file renamed over it, or,
 * for spool_update, one write at offset 0 within one page of an existing file
 * (the kernel looks at a fatal signal between the pages it copies, not within
 * one). Records are not fsync'd: a record must survive the agent's own crash or kill -9, which the
 * kernel's page cache does; if the machine itself goes down, the server
 * marks the agent lost and retries its jobs, and a record lost with the
 * machine can only turn a result that was never delivered into a retry —
 * never into a second, different outcome (the server records an attempt's
 * outcome once). Syncing cost ~2 ms per job (8 fsyncs) on the benchmark
 * machine. Removals are not synced either: a settled record that comes back
 * is sent again, which the protocol allows.
 *
 * `job` must be a canonical UUID and `attempt` >= 1 (they make file names:
 * nothing a server sends can name another path); otherwise ERR_INVALID.
 */
#ifndef DROVER_AGENT_SPOOL_H
#define DROVER_AGENT_SPOOL_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"
#include "common/uuid.h"

/*
 * Removed records are not unlinked but renamed to ".free-N" (up to
 * SPOOL_FREE_MAX of them), and the next write fills one of those and renames
 * it over its record: on a busy agent no file is created or freed per record.
 * (On ext4 without a journal, creating a file skips every inode freed in the
 * last minute or more: with ~10 files made and freed per job, inode
 * allocation was a third of the agent's CPU.) A ".free-N" file is never a
 * record, whatever it holds; spool_list removes the ones a previous run left.
 * The same few names come back (N < SPOOL_FREE_MAX, last freed first used),
 * so their lookups stay in the kernel's cache.
 */
#define SPOOL_FREE_MAX 64

struct spool {
    char *dir; /* owned */
    int dirfd; /* the open folder, -1 when closed */
    unsigned free[SPOOL_FREE_MAX]; /* the N of the ".free-N" files, a stack */
    size_t nfree;
    unsigned holes[SPOOL_FREE_MAX]; /* the N < SPOOL_FREE_MAX with no such file, a stack */
    size_t nholes;
};

struct spool_key {
    char job[UUID_STR_LEN];
    int attempt;
};

/* Opens (creating it, mode 0700, with its parents) the folder `dir`. ERR_IO on failure. */
int spool_open(struct spool *s, const char *dir, struct err *e);
void spool_close(struct spool *s);

/* Writes `doc` (borrowed) as the record `kind` ("lease"; "started", "run" and "finished" were
   older agents'). ERR_IO. */
int spool_put(struct spool *s, const char *job, int attempt, const char *kind, json_t *doc,
              struct err *e);

/*
 * Reads a record: *doc gets a new reference. ERR_NOTFOUND when there is none;
 * ERR_INVALID when it is not JSON (the file is then renamed to "<name>.bad"
 * so that it is kept for a human but not read again); ERR_IO.
 */
int spool_get(struct spool *s, const char *job, int attempt, const char *kind, json_t **doc,
              struct err *e);

/*
 * Rewrites the record `kind` with `doc` (borrowed): in place, in one write, when the record
 * and its file fit in a page (SPOOL_PAGE, 4 KiB: a write within one page of the page cache
 * is not cut short by a kill), else as spool_put (also when there is none). ERR_IO.
 */
int spool_update(struct spool *s, const char *job, int attempt, const char *kind, json_t *doc,
                 struct err *e);

/* Removes a record; an absent one is not an error. */
int spool_del(struct spool *s, const char *job, int attempt, const char *kind, struct err *e);

/*
 * The (job, attempt) pairs that have at least one record, sorted (UUIDv7 ids
 * sort by time, so oldest first). Left-over temporary files are removed.
 * *keys is newly allocated (free it); ERR_IO.
 */
int spool_list(struct spool *s, struct spool_key **keys, size_t *n, struct err *e);


#endif
