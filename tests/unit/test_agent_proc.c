/*
 * test_agent_proc.c - unit tests for agent/proc.c's lists of children: a child subreaper
 * finds the orphans re-parented to it (proc_orphans_home, which reads the same file again
 * on each call) and its own children, as proc_children lists them from every thread.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Memory the code under test allocates is freed with libc's free, not cmocka's. */
static void lib_free(void *p)
{
    free(p);
}

#include <cmocka.h>

#include "agent/proc.h"

static bool listed(const pid_t *pids, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (pids[i] == pid) return true;
    return false;
}

/* The write end is held by the test only: children read the other until it closes, so they
   end with the test even if it dies before it kills them. */
static int life[2] = {-1, -1};

/* A child that waits to be killed (or for the test to end). */
static pid_t sleeper(void)
{
    if (life[0] < 0) assert_int_equal(pipe(life), 0);
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        char c;
        close(life[1]);
        while (read(life[0], &c, 1) < 0 && errno == EINTR) {
        }
        _exit(0);
    }
    return p;
}

/* A grandchild whose parent exits: an orphan, re-parented to this subreaper. Its pid. */
static pid_t orphan(void)
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t mid = fork();
    assert_true(mid >= 0);
    if (mid == 0) {
        pid_t g = sleeper();
        if (write(fd[1], &g, sizeof(g)) != (ssize_t)sizeof(g)) _exit(1);
        _exit(0);
    }
    pid_t g = 0;
    assert_int_equal(read(fd[0], &g, sizeof(g)), (ssize_t)sizeof(g));
    close(fd[0]);
    close(fd[1]);
    int status;
    assert_int_equal(waitpid(mid, &status, 0), mid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return g;
}

static void end(pid_t p)
{
    kill(p, SIGKILL);
    int status;
    while (waitpid(p, &status, 0) < 0 && errno == EINTR) {
    }
}

static void test_orphans_home(void **state)
{
    (void)state;
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    pid_t *kids;
    size_t n = proc_orphans_home(&kids);
    assert_int_equal(n, 0);
    lib_free(kids);

    pid_t child = sleeper(), g = orphan();
    n = proc_orphans_home(&kids);
    assert_int_equal(n, 2);
    assert_true(listed(kids, n, child));
    assert_true(listed(kids, n, g)); /* re-parented here */
    lib_free(kids);
    /* as proc_children lists them from every thread */
    n = proc_children(getpid(), &kids);
    assert_int_equal(n, 2);
    assert_true(listed(kids, n, child) && listed(kids, n, g));
    lib_free(kids);

    end(g); /* read again: gone once reaped */
    n = proc_orphans_home(&kids);
    assert_int_equal(n, 1);
    assert_true(listed(kids, n, child));
    lib_free(kids);

    /* more than one read's worth (4,096 bytes: 1,000 pids of 5 digits and more) */
    enum { MANY = 1000 };
    pid_t many[MANY];
    for (int i = 0; i < MANY; i++)
        many[i] = sleeper();
    n = proc_orphans_home(&kids);
    assert_int_equal(n, MANY + 1);
    for (int i = 0; i < MANY; i++)
        assert_true(listed(kids, n, many[i]));
    lib_free(kids);
    for (int i = 0; i < MANY; i++)
        end(many[i]);
    end(child);
    n = proc_orphans_home(&kids);
    assert_int_equal(n, 0);
    lib_free(kids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_orphans_home),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
