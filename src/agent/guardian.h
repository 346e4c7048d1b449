/*
 * guardian.h - what kills a job's processes when its agent dies (kill -9 included).
 *
 * A job's leader gets SIGKILL when the agent dies (PR_SET_PDEATHSIG, runner_native.c), but
 * that signal reaches no other process: a shell's children, what the job daemonised, a
 * container's processes. So the agent starts, before any job, a process of its own: the
 * drover binary again, as `drover agent-guardian JOBS_DIR AGENT_PGID` (nothing of its
 * memory), holding the read end of a pipe whose only writer is the agent. Nothing is
 * written: when the agent exits or dies, the guardian reads the pipe's end and kills every
 * process whose environment puts it in a work folder of the agent's (DROVER_WORK_DIR below
 * JOBS_DIR: every job's processes have it, unless they cleared their environment), with its
 * descendants and its process group (never the agent's own), then exits. Nothing of it costs
 * anything per job. The agent started again on its work folder does what it can from its
 * spool too (jobs_recover), for a guardian that died with it; a job's cgroups (resources)
 * hold even what cleared its environment.
 */
#ifndef DROVER_AGENT_GUARDIAN_H
#define DROVER_AGENT_GUARDIAN_H

#include <stdbool.h>
#include <sys/types.h>

struct agent;

#define GUARDIAN_COMMAND "agent-guardian"

/* Starts the guardian (a failure is logged: the agent runs on without one). */
void guardian_start(struct agent *a);
/* SIGCHLD: true when `pid` was the guardian (then it is reaped, and its loss logged). */
bool guardian_reaped(struct agent *a, pid_t pid);
/* At the agent's exit: the guardian reads the pipe's end (and kills what the jobs left). */
void guardian_stop(struct agent *a);

/* `drover agent-guardian JOBS_DIR AGENT_PGID`, started by guardian_start with the pipe as
   descriptor 3. */
int cmd_agent_guardian(int argc, char **argv);

#endif
