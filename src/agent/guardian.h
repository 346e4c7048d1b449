/*
 * guardian.h - what kills a job's processes when its agent dies (kill -9 included).
 *
 * A job's leader gets SIGKILL when the agent dies (PR_SET_PDEATHSIG, runner_native.c), but
 * that signal reaches no other process: a shell's children, what the job daemonised. So
 * the agent starts, before any job, a process of its own: the drover binary again, as
 * `drover agent-guardian` (nothing of the agent's memory), holding the read end of a pipe
 * whose only writer is the agent. The agent writes a line as each job starts
 * ("+ PGID STARTTIME JOB ATTEMPT") and ends ("- PGID"). When the agent exits or dies, the
 * guardian reads the pipe's end, kills each job still listed (its process group, and the
 * processes that left it and whose environment names the job: proc_kill_escaped), and
 * exits. The agent started again on its work folder does the same from its spool
 * (jobs_recover), for a guardian that died with it.
 */
#ifndef DROVER_AGENT_GUARDIAN_H
#define DROVER_AGENT_GUARDIAN_H

#include <stdbool.h>
#include <sys/types.h>

struct agent;

#define GUARDIAN_COMMAND "agent-guardian"

/* Starts the guardian (a failure is logged: the agent runs on without one). */
void guardian_start(struct agent *a);
/* A job's process group started, or ended (its leader reaped, the group killed). */
void guardian_job_started(struct agent *a, pid_t pgid, unsigned long long starttime,
                          const char *job, int attempt);
void guardian_job_ended(struct agent *a, pid_t pgid);
/* SIGCHLD: true when `pid` was the guardian (then it is reaped, and its loss logged). */
bool guardian_reaped(struct agent *a, pid_t pid);
/* At the agent's exit: the guardian reads the pipe's end (and kills what is still listed). */
void guardian_stop(struct agent *a);

/* `drover agent-guardian`, started by guardian_start with the pipe as descriptor 3. */
int cmd_agent_guardian(int argc, char **argv);

#endif
