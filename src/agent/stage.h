/*
 * stage.h - a job's file staging on the agent (docs/protocol.md, "Staging"):
 * its inputs downloaded into the work folder before the process starts, its
 * outputs uploaded after it ended.
 *
 *   s3://bucket/key   drover's object store, through presigned URLs the agent
 *                     asks the server for (POST /v1/presign with the job and
 *                     attempt); the transfers carry no token
 *   http(s)://...     inputs only, fetched directly (redirects followed)
 *   file:///path      only under a folder given with --allow-path: copied in,
 *                     or out (through a temporary file renamed into place)
 *
 * Everything streams on the agent's loop (curl transfers on the agent's
 * aclient with file read/write callbacks; local copies one chunk per loop
 * turn): no object is held in memory whole, and nothing blocks the loop for
 * long. A transfer that moves nothing for --stall-timeout seconds fails.
 * One transfer at a time per job, in the spec's order.
 *
 * Local names: a file is named after the last part of its URI's key (or
 * path); stdin/stdout/stderr of type uri use STAGE_STDIN_FILE etc. Names
 * starting with ".drover-" are the agent's and never uploaded by a prefix.
 *
 * Ownership: a stage belongs to its job (agent_job.stage); stage_free aborts
 * whatever is in flight, without calling back. The `done` callback runs
 * exactly once per stage_in / stage_out that returned 0, from the loop (never
 * from inside stage_in / stage_out), and may free the stage.
 */
#ifndef DROVER_AGENT_STAGE_H
#define DROVER_AGENT_STAGE_H

#include <jansson.h>
#include <stdbool.h>

#include "common/err.h"

#define STAGE_STDIN_FILE ".drover-stdin"
#define STAGE_STDOUT_FILE ".drover-stdout"
#define STAGE_STDERR_FILE ".drover-stderr"
#define STAGE_RESERVED_PREFIX ".drover-"
#define STAGE_PRESIGN_EXPIRES_S 900

struct agent_job;
struct stage;

/* rc is 0, or an ERR_* with `error` naming the URI and the cause ("input s3://b/k: 404 not found").
 */
typedef void (*stage_done_fn)(struct agent_job *j, int rc, const char *error);

/*
 * Plans the staging of j->spec for j->work_dir: *out gets a new stage (NULL
 * when the spec needs none) and *command a new copy of the spec's command
 * whose input and output arguments are parameters holding the local paths
 * (for agent_argv_build). Fails with ERR_INVALID, e naming the URI, when a
 * URI cannot be staged here (a file:// path outside --allow-path, a URI that
 * names no file), before anything is transferred.
 */
int stage_plan(struct agent_job *j, struct stage **out, json_t **command, struct err *e);

/* True when the plan has something to download. */
bool stage_has_inputs(const struct stage *st);

/* Starts the downloads (the work folder exists). `done` follows. */
void stage_in(struct stage *st, stage_done_fn done);

/*
 * Starts the uploads: every output when `all` (the job succeeded), else only
 * stdout/stderr URIs. Returns false, calling nothing, when there is nothing to upload.
 */
bool stage_out(struct stage *st, bool all, stage_done_fn done);

/* [{"uri", "size", "sha256"}] of what was uploaded so far (borrowed). */
json_t *stage_outputs(const struct stage *st);

/* Aborts what is in flight (no callback) and frees the stage. NULL is fine. */
void stage_free(struct stage *st);

#endif
