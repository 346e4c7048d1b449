/*
 * runtimes.c - which runtimes the agent offers (protocol.md, "runtimes").
 *
 * With --runtime: those named, each tested before the agent registers (a
 * failing test stops it, exit 1). Without: native at once, and whichever of
 * bwrap, podman (else docker) pass their test, run in the background while
 * the agent registers and takes native jobs: a test ends on SIGCHLD
 * (runner_native_reap hands it here), and the next poll tells the server.
 *
 * The tests: `bwrap ... true` (runner_bwrap.c) and `ENGINE [--engine-opt...]
 * info` (runner_container.c), with stdio on /dev/null. Until it ends, a
 * test's process is the agent's own: the sweep leaves it alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/argv.h"
#include "common/log.h"
#include "common/xalloc.h"

extern char **environ;

int agent_spawn_quiet(char *const *argv, int out, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (out < 0) {
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    } else {
        posix_spawn_file_actions_adddup2(&fa, out, 1);
        posix_spawn_file_actions_adddup2(&fa, out, 2);
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    posix_spawn_file_actions_addclosefrom_np(&fa, 3); /* sockets, the spool, jobs' pipes */
#endif
    posix_spawnattr_init(&attr);
    /* the agent ignores SIGPIPE and libevent catches others: the defaults, nothing blocked */
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawnp(pid, argv[0], &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return rc;
}

int agent_wait_exit(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Why a test failed, for the log or the error of a --runtime that does not work. */
static void test_failure(const struct runtime_test *t, char *out, size_t size)
{
    const char *name = proto_runtime_name(t->rt);
    if (t->code == -2)
        snprintf(out, size, "cannot run '%s': not installed", name);
    else if (t->rt == PROTO_RT_BWRAP)
        snprintf(out, size,
                 "bubblewrap cannot make a sandbox here (its test 'bwrap ... true' ended with "
                 "status %d): it needs user namespaces, or root",
                 t->code);
    else
        snprintf(out, size,
                 "'%s info' ends with status %d: the engine does not work here (its own "
                 "configuration, or --engine-opt, may fix that)",
                 name, t->code);
}

/* Takes in the tests that ended: bwrap when it passed, one container engine (podman first). */
static void apply(struct agent *a)
{
    bool all_done = true;
    unsigned before = a->runtimes;
    struct runtime_test *podman = NULL;
    for (size_t i = 0; i < a->ntests; i++) {
        struct runtime_test *t = &a->tests[i];
        all_done &= t->done;
        if (t->rt == PROTO_RT_PODMAN) podman = t;
    }
    for (size_t i = 0; i < a->ntests; i++) {
        struct runtime_test *t = &a->tests[i];
        if (!t->done || t->code != 0 || (a->runtimes & t->rt)) continue;
        if (t->rt == PROTO_RT_BWRAP) {
            a->runtimes |= t->rt;
        } else if (!a->engine &&
                   (t->rt == PROTO_RT_PODMAN || !podman || (podman->done && podman->code != 0))) {
            a->engine = t->eng;
            t->eng = NULL;
            a->runtimes |= t->rt;
            runner_container_offered(a->engine);
        }
    }
    if (all_done)
        for (size_t i = 0; i < a->ntests; i++) {
            runner_container_free(a->tests[i].eng);
            a->tests[i].eng = NULL;
        }
    if (a->runtimes != before && a->registered) {
        json_t *names = proto_runtimes_json(a);
        char *text = json_dumps(names, JSON_COMPACT);
        log_info("runtimes offered now: %s (the next poll tells the server)", text ? text : "?");
        free(text);
        json_decref(names);
    }
}

/* Starts the test of `rt`; a binary that is not there ends it at once (code -2). */
static void test_start(struct agent *a, unsigned rt)
{
    struct runtime_test *t = &a->tests[a->ntests++];
    memset(t, 0, sizeof(*t));
    t->rt = rt;
    char **argv;
    if (rt == PROTO_RT_BWRAP) {
        argv = runner_bwrap_test_argv();
    } else {
        t->eng = runner_container_new(a, rt);
        argv = runner_container_test_argv(t->eng);
    }
    if (agent_spawn_quiet(argv, -1, &t->pid) != 0) {
        t->done = true;
        t->code = -2;
    }
    agent_strv_free(argv);
}

int runtimes_setup(struct agent *a, struct err *e)
{
    static const unsigned tested[] = {PROTO_RT_BWRAP, PROTO_RT_PODMAN, PROTO_RT_DOCKER};
    unsigned want = a->o.runtimes_forced;
    a->runtimes = want ? want & PROTO_RT_NATIVE : PROTO_RT_NATIVE;
    if (!want && a->o.bench_noop) return 0; /* nothing runs */
    for (size_t i = 0; i < ARRAY_SIZE(tested); i++)
        if (!want || (want & tested[i])) test_start(a, tested[i]);
    if (!want) { /* the rest comes on SIGCHLD */
        for (size_t i = 0; i < a->ntests; i++) {
            char why[300];
            if (!a->tests[i].done) continue;
            test_failure(&a->tests[i], why, sizeof(why));
            log_info("runtime %s not offered: %s", proto_runtime_name(a->tests[i].rt), why);
        }
        return 0;
    }
    for (size_t i = 0; i < a->ntests; i++) {
        struct runtime_test *t = &a->tests[i];
        if (t->done) continue;
        t->code = agent_wait_exit(t->pid);
        t->done = true;
    }
    apply(a);
    for (size_t i = 0; i < a->ntests; i++) {
        char why[300];
        if (a->runtimes & a->tests[i].rt) continue;
        test_failure(&a->tests[i], why, sizeof(why));
        return err_set(e, ERR_UNAVAILABLE, "--runtime %s: %s", proto_runtime_name(a->tests[i].rt),
                       why);
    }
    return 0;
}

bool runtimes_reaped(struct agent *a, pid_t pid)
{
    for (size_t i = 0; i < a->ntests; i++) {
        struct runtime_test *t = &a->tests[i];
        if (t->done || t->pid != pid) continue;
        int status;
        pid_t r;
        while ((r = waitpid(pid, &status, WNOHANG)) < 0 && errno == EINTR) {
        }
        if (r != pid) return true;
        t->done = true;
        t->code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (t->code != 0) {
            char why[300];
            test_failure(t, why, sizeof(why));
            log_info("runtime %s not offered: %s", proto_runtime_name(t->rt), why);
        }
        apply(a);
        return true;
    }
    return false;
}

bool runtimes_owns(const struct agent *a, pid_t pid)
{
    for (size_t i = 0; i < a->ntests; i++)
        if (!a->tests[i].done && a->tests[i].pid == pid) return true;
    return false;
}

void runtimes_release(struct agent *a)
{
    for (size_t i = 0; i < a->ntests; i++) {
        runner_container_free(a->tests[i].eng);
        a->tests[i].eng = NULL;
    }
    runner_container_free(a->engine);
    a->engine = NULL;
}
