/* guardian.c - see guardian.h. */
#include "agent/guardian.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/proc.h"
#include "common/log.h"
#include "common/xalloc.h"

#define GUARDIAN_FD 3
#define GUARDIAN_LOST                                                                              \
    "if the agent dies, its jobs' processes other than their leaders live on until it starts "   \
    "again"

void guardian_start(struct agent *a)
{
    int fds[2];
    a->guardian_fd = -1;
    if (pipe2(fds, O_CLOEXEC) != 0) {
        log_warn("cannot start the guardian (pipe: %s): " GUARDIAN_LOST, strerror(errno));
        return;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[0], GUARDIAN_FD); /* not close-on-exec there */
    posix_spawnattr_init(&at);
    /* a group of its own: a terminal's ^C, meant for the agent, does not reach it */
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    char group[24]; /* the agent's process group: never killed */
    snprintf(group, sizeof(group), "%d", (int)getpgrp());
    char *argv[] = {"drover", GUARDIAN_COMMAND, a->jobs_dir, group, NULL};
    /* this binary, by its path (valgrind, say, reads the link as the program's) */
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[len > 0 ? len : 0] = '\0';
    /* none of the agent's environment (its DROVER_TOKEN) but the zone its log's times are in */
    char *tz = getenv("TZ") ? xasprintf("TZ=%s", getenv("TZ")) : NULL;
    char *envp[] = {tz, NULL};
    pid_t pid;
    int rc = len > 0 ? posix_spawn(&pid, self, &fa, &at, argv, envp) : errno;
    free(tz);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(fds[0]);
    if (rc) {
        close(fds[1]);
        log_warn("cannot start the guardian (%s): " GUARDIAN_LOST, strerror(rc));
        return;
    }
    a->guardian_pid = pid;
    a->guardian_fd = fds[1];
}

bool guardian_reaped(struct agent *a, pid_t pid)
{
    if (!a->guardian_pid || pid != a->guardian_pid) return false;
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    a->guardian_pid = 0;
    if (a->guardian_fd >= 0) {
        log_error("the guardian (pid %d) ended (status %d): " GUARDIAN_LOST, (int)pid, status);
        close(a->guardian_fd);
        a->guardian_fd = -1;
    }
    return true;
}

void guardian_stop(struct agent *a)
{
    if (a->guardian_fd >= 0) close(a->guardian_fd);
    a->guardian_fd = -1;
    if (a->guardian_pid) /* it ends at once: nothing of a drained agent's jobs is left */
        while (waitpid(a->guardian_pid, NULL, 0) < 0 && errno == EINTR) {
        }
    a->guardian_pid = 0;
}

/* ---- the guardian ---- */

struct found {
    pid_t pid, pgid;
    unsigned long long starttime;
    char job[UUID_STR_LEN]; /* "" when its environment names none */
    int attempt;
    size_t killed;
};

static bool same_job(const struct found *a, const struct found *b)
{
    return !strcmp(a->job, b->job) && a->attempt == b->attempt;
}

/* The processes whose DROVER_WORK_DIR is below `dir` (other than this one); *out allocated. */
static size_t find_jobs_processes(const char *dir, struct found **out)
{
    pid_t *all;
    size_t n = proc_all(&all), nfound = 0, dlen = strlen(dir);
    struct found *f = n ? xcalloc(n, sizeof(*f)) : NULL;
    for (size_t i = 0; i < n; i++) {
        char wd[PATH_MAX];
        struct proc_stat st;
        if (all[i] == getpid() || !proc_env_get(all[i], "DROVER_WORK_DIR", wd, sizeof(wd)) ||
            strncmp(wd, dir, dlen) || wd[dlen] != '/' || !proc_stat_read(all[i], &st))
            continue;
        struct found *x = &f[nfound++];
        x->pid = all[i];
        x->pgid = getpgid(all[i]);
        x->starttime = st.starttime;
        if (!proc_job_env(all[i], x->job, &x->attempt)) x->job[0] = '\0';
    }
    free(all);
    *out = f;
    return nfound;
}

int cmd_agent_guardian(int argc, char **argv)
{
    /* it ends when its agent does, not at a signal meant for the agent */
    static const int ignored[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE};
    for (size_t i = 0; i < ARRAY_SIZE(ignored); i++)
        signal(ignored[i], SIG_IGN);
    /* nothing of the agent's but the pipe (a listening socket it had without close-on-exec
       would stay bound) */
#ifdef SYS_close_range
    syscall(SYS_close_range, GUARDIAN_FD + 1U, ~0U, 0U);
#endif
    if (argc != 3 || argv[1][0] != '/' || atoi(argv[2]) < 1 || fcntl(GUARDIAN_FD, F_GETFD) < 0) {
        fprintf(stderr, "drover %s: started by `drover agent` only (with its jobs' folder and "
                        "its pipe as descriptor %d)\n",
                GUARDIAN_COMMAND, GUARDIAN_FD);
        return 2;
    }
    pid_t agent_group = (pid_t)atoi(argv[2]);
    char buf[256];
    ssize_t r;
    while ((r = read(GUARDIAN_FD, buf, sizeof(buf))) != 0) /* nothing comes but the end */
        if (r < 0 && errno != EINTR) break;
    /* the agent is gone: what its jobs left goes too */
    struct found *f;
    size_t n = find_jobs_processes(argv[1], &f);
    for (size_t i = 0; i < n; i++) {
        f[i].killed = proc_signal_tree(f[i].pid, 0, f[i].starttime, SIGKILL);
        /* a group's members that cleared their environment (a group's id is not reused
           while it has a member); not the agent's group, nor this one's */
        if (f[i].pgid > 1 && f[i].pgid != agent_group && f[i].pgid != getpgrp())
            kill(-f[i].pgid, SIGKILL);
    }
    for (size_t i = 0; i < n; i++) { /* a line per job, at its first process */
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = same_job(&f[k], &f[i]);
        size_t killed = 0;
        for (size_t k = i; k < n && !seen; k++)
            if (same_job(&f[k], &f[i])) killed += f[k].killed;
        if (!killed) continue;
        if (f[i].job[0])
            log_warn("job=%s attempt=%d %zu of its processes survived the agent; killed",
                     f[i].job, f[i].attempt, killed);
        else
            log_warn("%zu processes of the agent's jobs (in '%s') survived the agent; killed",
                     killed, argv[1]);
    }
    free(f);
    return 0;
}
