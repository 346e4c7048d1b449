/*
 * limits.h - the resource limits of a job the agent runs itself (native, and
 * sandbox jobs, which wrap the same spawn): the spec's resources.memory_mb,
 * cpus and pids (job/spec.h).
 *
 * How they are enforced is decided once, at start (limits_init), from what
 * the machine offers, best first:
 *   cgroup2  a delegated cgroup v2 subtree: the agent's own cgroup has the
 *            memory, pids and cpu controllers and the agent may enable them
 *            below it (memory.max, pids.max, cpu.max; OOM kills counted in
 *            memory.events);
 *   cgroup1  cgroup v1 hierarchies (memory, pids, cpu) in which the agent may
 *            create groups below its own, which needs root as a rule
 *            (memory.limit_in_bytes, pids.max, cpu.cfs_quota_us; OOM kills
 *            counted in memory.oom_control);
 *   rlimit   setrlimit in the job's process: RLIMIT_AS for memory_mb (each
 *            process's address space, not the job's resident memory, and not
 *            its children together). cpus and pids cannot be enforced so:
 *            RLIMIT_CPU caps CPU seconds, not a share of the CPUs, and
 *            RLIMIT_NPROC counts all of a user's processes (and binds no root).
 * A limit the chosen way cannot enforce is named in the agent's log, for the
 * agent at start and for each job that asks for it; the job runs without it.
 *
 * The cgroups: the agent makes them only below the cgroup it runs in (read
 * from /proc/self/cgroup, for each controller), as OWN/drover-INSTANCE/JOB-ATTEMPT
 * (INSTANCE: the work folder's identity, so a restarted agent finds what the
 * one before left). A job that asks for any limit gets a group in each usable
 * controller; a job that asks for none gets none (no cost). The group is
 * also how every process of the job is found and killed, whatever it did to
 * leave its process group. Groups are removed when the job ends, and at start
 * (limits_recover) what a previous run left is killed and removed.
 */
#ifndef DROVER_AGENT_LIMITS_H
#define DROVER_AGENT_LIMITS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "job/spec.h"

enum limits_mech { LIMITS_NONE, LIMITS_RLIMIT, LIMITS_CGROUP1, LIMITS_CGROUP2 };
/* The controllers, each for one limit. */
enum limits_ctl { LIMITS_MEMORY, LIMITS_PIDS, LIMITS_CPU, LIMITS_NCTL };

struct limits {
    enum limits_mech mech;            /* the best way found */
    enum limits_mech by[LIMITS_NCTL]; /* how each limit is enforced (NONE: it is not) */
    char *own[LIMITS_NCTL];           /* cgroups: the agent's own group, per controller */
    char *base[LIMITS_NCTL];          /* own/drover-INSTANCE: where job groups go */
    char *base_rel[LIMITS_NCTL];      /* base as /proc/PID/cgroup shows it */
    char *why;                        /* why no cgroup is used (for the log), or NULL */
    int groups;                       /* job groups that exist now */
};

/* A job's groups and limits, from limits_job_prepare to limits_job_release. */
struct limits_job {
    bool active;               /* prepared: some limit asked for */
    char *dir[LIMITS_NCTL];    /* its group per controller (NULL: none) */
    char *rel[LIMITS_NCTL];    /* the same as /proc/PID/cgroup shows it */
    int procs_fd[LIMITS_NCTL]; /* cgroup.procs, open until the process has joined */
    uint64_t rlimit_as;        /* bytes, 0 = none */
    bool removed;
};

/*
 * Decides how limits are enforced. `mode`: "auto" (the best found), "cgroup" (a cgroup
 * way, else ERR_INVALID with why), "rlimit" or "none". `instance` names the agent's groups.
 * Touches nothing outside the agent's own cgroups. 0 or ERR_INVALID.
 */
int limits_init(struct limits *l, const char *mode, const char *instance, struct err *e);
void limits_release(struct limits *l);
const char *limits_mech_name(enum limits_mech m);
/* {"mechanism", "memory_mb", "cpus", "pids"}: each the name of a way, or "none"; new ref. */
json_t *limits_json(const struct limits *l);
/* One line for the log at start: how each limit is enforced, and what cannot be. */
char *limits_describe(const struct limits *l); /* caller frees */

/* Kills the processes in the groups a previous run left below base and removes them. */
void limits_recover(struct limits *l);

/*
 * Prepares `lj` for a job asking for `r` (nothing when it asks for none): makes its groups
 * (named `name`), writes the limits and opens cgroup.procs for the child to join. The names
 * of the limits this agent cannot enforce go into *unenforced (caller frees; NULL: none).
 * ERR_IO naming the file that failed (lj released).
 */
int limits_job_prepare(struct limits *l, struct limits_job *lj, const char *name,
                       const struct spec_resources *r, char **unenforced, struct err *e);
/*
 * In the child between fork and exec (system calls only): joins the groups and sets the
 * rlimits. 0, or -1 with errno.
 */
int limits_job_child(const struct limits_job *lj);
/* In the agent after the spawn (it worked or not): closes what the child needed. */
void limits_job_spawned(struct limits_job *lj);
/*
 * Sends `sig` to every process in the job's group, each once; returns how many were
 * signalled, or -1 when the job has no group (the caller signals its process group).
 */
ssize_t limits_job_signal(const struct limits_job *lj, int sig);
/* Whether the kernel killed a process of the job for memory (its OOM counter). */
bool limits_job_oom(const struct limits_job *lj);
/* How many forks of the job its pids limit refused (pids.events "max"), 0 without a group. */
long long limits_job_pids_refused(const struct limits_job *lj);
/*
 * Kills what is left in the job's groups and removes them. True when they are gone (or there
 * were none); false when a group could not be removed yet (try again later). `final`: tries
 * for a while, then forgets the groups whatever happened (logged; limits_recover at the
 * next start removes them) and frees lj's contents. Idempotent.
 */
bool limits_job_release(struct limits *l, struct limits_job *lj, bool final);

/*
 * The readers of /proc/self/cgroup and /proc/self/mountinfo, given the file (for tests).
 * limits_own_path: the path of the group in the v1 hierarchy that has controller `ctl`, or
 * (ctl NULL) in the v2 one, as `cgroup` (/proc/PID/cgroup's format) lists it.
 * limits_group_dir: where that group's folder is, from the mount table `mountinfo`: the
 * mount of type `fstype` ("cgroup" with `ctl` among its options, or "cgroup2") whose root
 * holds `path`. Both return NULL when there is none; the caller frees.
 */
char *limits_own_path(const char *cgroup, const char *ctl);
char *limits_group_dir(const char *mountinfo, const char *fstype, const char *ctl,
                       const char *path);

#endif
