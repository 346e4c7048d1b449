/*
 * protocol.h - the agent protocol's vocabulary (docs/protocol.md), written once
 * for both of its sides: the server (server/api_agents.c, fleet.c, lease.c)
 * and the agent (agent/). Report types, the reasons an attempt ends, the
 * stream names, and every limit one side checks and the other relies on.
 * Neither side spells a wire name or such a limit again.
 *
 * The enums are what the code carries; the names are what the wire carries.
 * The *_name() functions never fail for a value of their enum (a value out of
 * range gives "unknown"); the *_parse() functions return -1 for a name that
 * is not one of theirs (or NULL), so a caller refuses it.
 */
#ifndef DROVER_JOB_PROTOCOL_H
#define DROVER_JOB_PROTOCOL_H

#include <stdbool.h>
#include <stdint.h>

/* ---- limits ---- */

#define PROTO_REPORTS_MAX 10000           /* reports in one reports request */
#define PROTO_RUNNING_MAX 100000          /* entries of a "running" list (register, poll) */
#define PROTO_LOG_CHUNK_MAX (256 * 1024)  /* bytes of a log report's data */
#define PROTO_STREAM_MAX (64u << 20)      /* bytes the server keeps per stream and attempt */
#define PROTO_RESULT_STDOUT_MAX (1 << 20) /* bytes of stdout copied into the job's result */
#define PROTO_PERCENT_MAX 100             /* a progress report's percent, from 0 */
#define PROTO_PROGRESS_MESSAGE_MAX 1024   /* bytes of a progress report's message */
#define PROTO_ERROR_MAX (64 * 1024)       /* bytes of a finished report's error text */
#define PROTO_ATTEMPT_MAX INT32_MAX       /* attempts count from 1 */
#define PROTO_PID_MAX INT32_MAX           /* a started report's pid, from 1 */
#define PROTO_EXIT_CODE_MAX 255           /* a finished report's exit_code, from 0 */
#define PROTO_SIGNAL_MAX 64               /* a finished report's signal, from 1 */
#define PROTO_DURATION_MS_MAX (10LL * 365 * 24 * 3600 * 1000) /* ten years (of 365 days) */
/* a started (or finished) report's started_ms_ago, from 0: as long as a run may last */
#define PROTO_STARTED_AGO_MS_MAX PROTO_DURATION_MS_MAX
#define PROTO_SHA256_HEX_LEN 64                               /* an output's sha256, in hex */
#define PROTO_NAME_MAX 64             /* an agent's name: [A-Za-z0-9._-]{1,64} */
#define PROTO_INSTANCE_MAX 128        /* an agent's instance: [A-Za-z0-9._-]{1,128} */
#define PROTO_QUEUES_MAX 64           /* queues an agent takes work from */
#define PROTO_SLOTS_MAX 1024          /* an agent's slots, and a job's */
/* an agent's prefetch (poll, reports): the slots' worth of jobs it may hold beyond its slots,
   at most this many times its slots (Celery's default prefetch multiplier) */
#define PROTO_PREFETCH_PER_SLOT_MAX 4
#define PROTO_HEARTBEAT_S_DEFAULT 5   /* the server's --heartbeat */
#define PROTO_LOST_AFTER_S_DEFAULT 15 /* the server's --lost-after */
#define PROTO_CACHED_MAX 256          /* entries of a "cached" list (register, poll) */
#define PROTO_CACHED_URI_MAX 4096     /* bytes of a "cached" entry's uri */

/* ---- report types: the "type" of a report ---- */

enum proto_report {
    PROTO_REPORT_STARTED,  /* "started": the process runs */
    PROTO_REPORT_LOG,      /* "log": a chunk of stdout or stderr */
    PROTO_REPORT_PROGRESS, /* "progress": percent and message */
    PROTO_REPORT_FINISHED, /* "finished": the attempt ended */
    PROTO_REPORT_RELEASED, /* "released": a prefetched lease given back before it started */
};
/* (The counts are not enum values, so that a switch over one names only real values.) */
#define PROTO_REPORT_COUNT (PROTO_REPORT_RELEASED + 1)
const char *proto_report_name(enum proto_report t);
/* The type named `name`, or -1. */
int proto_report_parse(const char *name);

/* ---- why an attempt ended: the "reason" of a finished report, result and attempts ---- */

enum proto_reason {
    PROTO_REASON_EXIT,      /* "exit": the process exited (exit_code) */
    PROTO_REASON_SIGNAL,    /* "signal": a signal ended it (signal) */
    PROTO_REASON_TIMEOUT,   /* "timeout": killed after timeout_s (or past the server's deadline) */
    PROTO_REASON_CANCELLED, /* "cancelled": killed on request */
    PROTO_REASON_ERROR,     /* "error": staging or start failed, or the agent stopped or left */
    PROTO_REASON_OOM,       /* "oom": killed for memory (over resources.memory_mb; a container
                               the engine killed) */
    PROTO_REASON_LOST,      /* "lost": the agent stopped answering or never got the lease;
                               written by the server only */
};
#define PROTO_REASON_COUNT (PROTO_REASON_LOST + 1)
/* The reasons an agent reports are those before PROTO_REASON_LOST. */
#define PROTO_AGENT_REASONS PROTO_REASON_LOST

const char *proto_reason_name(enum proto_reason r);
/* The reason named `name` (lost included), or -1. */
int proto_reason_parse(const char *name);
/* True for a reason an agent may send in a finished report (not lost). */
static inline bool proto_reason_from_agent(int r)
{
    return r >= 0 && r < PROTO_AGENT_REASONS;
}

/* ---- runtimes: how an agent can run jobs (register and poll: "runtimes") ---- */

enum proto_runtime {
    PROTO_RT_NATIVE = 1, /* "native": a process on the agent's host */
    PROTO_RT_BWRAP = 2,  /* "bwrap": in a bubblewrap sandbox */
    PROTO_RT_PODMAN = 4, /* "podman": in a container, through the podman CLI */
    PROTO_RT_DOCKER = 8, /* "docker": in a container, through the docker CLI */
};
#define PROTO_RT_ALL 15u
#define PROTO_RT_CONTAINER (PROTO_RT_PODMAN | PROTO_RT_DOCKER)
/* The name of one runtime bit ("native", ...), or "unknown". */
const char *proto_runtime_name(unsigned rt);
/* The runtime bit named `name`, or 0. */
unsigned proto_runtime_parse(const char *name);

/* ---- captured streams: the "stream" of a log report ---- */

enum proto_stream {
    PROTO_STREAM_STDOUT, /* "stdout"; also the store's stream number 0 */
    PROTO_STREAM_STDERR, /* "stderr"; 1 */
};
#define PROTO_STREAM_COUNT (PROTO_STREAM_STDERR + 1)
const char *proto_stream_name(enum proto_stream s);
/* The stream named `name`, or -1. */
int proto_stream_parse(const char *name);

#endif
