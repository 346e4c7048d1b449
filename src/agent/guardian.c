/* guardian.c - see guardian.h. */
#include "agent/guardian.h"

#include <errno.h>
#include <fcntl.h>
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
#define GUARDIAN_LINE_MAX 128

void guardian_start(struct agent *a)
{
    int fds[2];
    a->guardian_fd = -1;
    if (pipe2(fds, O_CLOEXEC) != 0) {
        log_warn("cannot start the guardian (pipe: %s): if the agent dies, its jobs' processes "
                 "other than their leaders live on until it starts again",
                 strerror(errno));
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
    char *argv[] = {"drover", GUARDIAN_COMMAND, NULL};
    /* this binary, by its path (valgrind, say, reads the link as the program's) */
    char self[4096];
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
        log_warn("cannot start the guardian (%s): if the agent dies, its jobs' processes other "
                 "than their leaders live on until it starts again",
                 strerror(rc));
        return;
    }
    a->guardian_pid = pid;
    a->guardian_fd = fds[1];
}

static void tell(struct agent *a, const char *line, size_t n)
{
    if (a->guardian_fd < 0) return;
    ssize_t w;
    while ((w = write(a->guardian_fd, line, n)) < 0 && errno == EINTR) {
    } /* a line is shorter than PIPE_BUF: written whole or not at all */
    if (w == (ssize_t)n) return;
    log_error("cannot write to the guardian (%s): if the agent dies, its jobs' processes other "
              "than their leaders live on until it starts again",
              w < 0 ? strerror(errno) : "a short write");
    close(a->guardian_fd);
    a->guardian_fd = -1;
}

void guardian_job_started(struct agent *a, pid_t pgid, unsigned long long starttime,
                          const char *job, int attempt)
{
    char line[GUARDIAN_LINE_MAX];
    int n = snprintf(line, sizeof(line), "+ %d %llu %s %d\n", (int)pgid, starttime, job, attempt);
    tell(a, line, (size_t)n);
}

void guardian_job_ended(struct agent *a, pid_t pgid)
{
    char line[GUARDIAN_LINE_MAX];
    int n = snprintf(line, sizeof(line), "- %d\n", (int)pgid);
    tell(a, line, (size_t)n);
}

bool guardian_reaped(struct agent *a, pid_t pid)
{
    if (!a->guardian_pid || pid != a->guardian_pid) return false;
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    a->guardian_pid = 0;
    if (a->guardian_fd >= 0) {
        log_error("the guardian (pid %d) ended (status %d): if the agent dies, its jobs' "
                  "processes other than their leaders live on until it starts again",
                  (int)pid, status);
        close(a->guardian_fd);
        a->guardian_fd = -1;
    }
    return true;
}

void guardian_stop(struct agent *a)
{
    if (a->guardian_fd >= 0) close(a->guardian_fd);
    a->guardian_fd = -1;
    if (a->guardian_pid) /* it ends at once: nothing is listed after a drained agent */
        while (waitpid(a->guardian_pid, NULL, 0) < 0 && errno == EINTR) {
        }
    a->guardian_pid = 0;
}

/* ---- the guardian ---- */

struct guarded {
    pid_t pgid;
    struct proc_job_key key;
};

int cmd_agent_guardian(int argc, char **argv)
{
    (void)argc, (void)argv;
    /* it ends when its agent does, not at a signal meant for the agent */
    static const int ignored[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE};
    for (size_t i = 0; i < ARRAY_SIZE(ignored); i++)
        signal(ignored[i], SIG_IGN);
    /* nothing of the agent's but the pipe (a listening socket it had without close-on-exec
       would stay bound) */
#ifdef SYS_close_range
    syscall(SYS_close_range, GUARDIAN_FD + 1U, ~0U, 0U);
#endif
    FILE *in = fdopen(GUARDIAN_FD, "r");
    if (!in) {
        fprintf(stderr, "drover %s: descriptor %d is not the agent's pipe: it is started by "
                        "`drover agent` only\n",
                GUARDIAN_COMMAND, GUARDIAN_FD);
        return 2;
    }
    struct guarded *g = NULL;
    size_t n = 0, cap = 0;
    char line[GUARDIAN_LINE_MAX];
    while (fgets(line, sizeof(line), in)) {
        int pgid = 0, attempt = 0;
        unsigned long long start = 0;
        char id[UUID_STR_LEN] = "";
        if (sscanf(line, "+ %d %llu %36s %d", &pgid, &start, id, &attempt) == 4 && pgid > 1) {
            if (n == cap) g = xrealloc(g, (cap = cap ? 2 * cap : 16) * sizeof(*g));
            g[n].pgid = pgid;
            g[n].key.starttime = start;
            g[n].key.attempt = attempt;
            snprintf(g[n].key.id, sizeof(g[n].key.id), "%s", id);
            n++;
        } else if (sscanf(line, "- %d", &pgid) == 1) {
            for (size_t i = 0; i < n; i++)
                if (g[i].pgid == pgid) {
                    g[i] = g[--n];
                    break;
                }
        }
    }
    /* the agent is gone: what it left running goes too */
    struct proc_job_key *keys = n ? xcalloc(n, sizeof(*keys)) : NULL;
    for (size_t i = 0; i < n; i++) {
        keys[i] = g[i].key;
        if (proc_kill_group(g[i].pgid, g[i].key.starttime))
            log_warn("job=%s attempt=%d its processes (group %d) survived the agent; killed",
                     g[i].key.id, g[i].key.attempt, (int)g[i].pgid);
    }
    proc_kill_escaped(keys, n);
    free(keys);
    free(g);
    fclose(in);
    return 0;
}
