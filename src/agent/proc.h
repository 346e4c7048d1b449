/*
 * proc.h - the agent's view of the process tree, read from /proc (Linux):
 * what finds and kills the processes a job left behind (runner_native.c
 * while the agent runs, jobs.c after a restart).
 *
 * A pid names a process only while that process (or its zombie) exists;
 * nothing here signals a pid without first checking that it is still the
 * process it found (its parent, or its start time), through a pidfd where
 * the kernel has them (Linux 5.3), so a recycled pid is never signalled.
 */
#ifndef DROVER_AGENT_PROC_H
#define DROVER_AGENT_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/uuid.h"

/* What /proc/PID/stat says of a process. */
struct proc_stat {
    pid_t ppid;
    char state;                   /* 'R', 'S', ..., 'Z' (zombie), 'X' (dead) */
    unsigned long long starttime; /* field 22: clock ticks after boot */
};

/* Reads /proc/PID/stat; false when the process is gone or cannot be read. */
bool proc_stat_read(pid_t pid, struct proc_stat *st);

/* The start time of process `pid` (/proc/PID/stat field 22), 0 when unknown. */
unsigned long long proc_starttime(pid_t pid);

/*
 * The children of `pid` (of all its threads), from /proc/PID/task/TID/children,
 * or a scan of /proc where the kernel has no such files. *out is allocated
 * (free it; NULL when there are none); returns how many.
 */
size_t proc_children(pid_t pid, pid_t **out);

/*
 * The children of this process's main thread, where the kernel re-parents the orphans of a
 * child subreaper (to its first live thread): as proc_children(getpid()) would list those,
 * from one read of a file kept open.
 */
size_t proc_orphans_home(pid_t **out);

/* Every process's pid (a scan of /proc). *out is allocated (free it); returns how many. */
size_t proc_all(pid_t **out);

/*
 * The job that process `pid` runs for, from DROVER_JOB_ID and DROVER_ATTEMPT in
 * its environment (as it was when it started a program: the agent gives every
 * job these, and children inherit them). False when it has none, or when the
 * environment cannot be read (another user's process).
 */
bool proc_job_env(pid_t pid, char id[UUID_STR_LEN], int *attempt);

/* The value of variable `name` in process `pid`'s environment (as it was when it started a
   program) into out (NUL-terminated); false when it has none that fits in n bytes, or the
   environment cannot be read. */
bool proc_env_get(pid_t pid, const char *name, char *out, size_t n);

/*
 * Sends `sig` to the process `root` and to all its descendants. `root` is
 * signalled only if it still is the process meant: its parent is `root_ppid`
 * (when not 0) and its start time `root_starttime` (when not 0); a
 * descendant only if its parent is the one it was found under (or this
 * process: the agent is their subreaper) and it keeps its start time until
 * signalled. Zombies are skipped. Bounded (65536 processes). Returns how many
 * live processes were signalled.
 */
size_t proc_signal_tree(pid_t root, pid_t root_ppid, unsigned long long root_starttime, int sig);

/* A job's run, as a kill of what it left finds it: its id, attempt and its leader's start
   time (0 unknown). */
struct proc_job_key {
    char id[UUID_STR_LEN];
    int attempt;
    unsigned long long starttime;
};

/*
 * Kills process group `pgid` if it is still the job's: its leader has `starttime`, or the
 * leader is gone and the group lives on (a pid is not reused while a group of that id
 * exists). True when it was signalled.
 */
bool proc_kill_group(pid_t pgid, unsigned long long starttime);

/*
 * Kills the processes of the jobs `keys` names that left their process group (setsid, a
 * double fork) and outlived their agent (its parent-death signal reaches the leaders only):
 * those whose environment names one of the jobs (DROVER_JOB_ID, DROVER_ATTEMPT) and that
 * started after its leader, with their descendants. One scan of /proc for all of them;
 * each kill is logged.
 */
void proc_kill_escaped(const struct proc_job_key *keys, size_t nkeys);

#endif
