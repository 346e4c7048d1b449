/*
 * spawn.c - drover-spawn: the machine's bare process start rate, the reference for running
 * jobs. N threads, each in a loop: posix_spawn the program (default /bin/true, no
 * arguments, this process's environment, nothing else set up), then waitpid for it. The
 * run is bounded twice: by the number of processes in all (--count) and by time
 * (--max-seconds); whichever comes first ends it.
 *
 *   drover-spawn [--threads 2] [--count 20000] [--max-seconds 60] [--program /bin/true]
 *
 * Prints one line of JSON on stdout: threads, spawned, errors, seconds, per_s,
 * time_limited. Exit status: 0 when every process started and exited 0, 1 otherwise,
 * 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct run {
    const char *program;
    long count;
    int64_t deadline_ns;
    atomic_long claimed; /* processes handed out to the threads */
    atomic_long spawned; /* processes started and reaped */
    atomic_long errors;  /* failed to start, or exited other than 0 */
    atomic_bool time_up;
    char first_error[256];
    pthread_mutex_t lock;
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void note_error(struct run *r, const char *what, int code)
{
    atomic_fetch_add(&r->errors, 1);
    pthread_mutex_lock(&r->lock);
    if (!r->first_error[0])
        snprintf(r->first_error, sizeof(r->first_error), "%s: %s", what,
                 code >= 0 ? strerror(code) : "exited other than 0");
    pthread_mutex_unlock(&r->lock);
}

static void *spawner(void *arg)
{
    struct run *r = arg;
    char *argv[] = {(char *)r->program, NULL};
    for (;;) {
        if (mono_ns() >= r->deadline_ns) {
            atomic_store(&r->time_up, true);
            break;
        }
        if (atomic_fetch_add(&r->claimed, 1) >= r->count) break;
        pid_t pid;
        int rc = posix_spawn(&pid, r->program, NULL, NULL, argv, environ);
        if (rc != 0) {
            note_error(r, "posix_spawn", rc);
            continue;
        }
        int status;
        pid_t w;
        while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
        }
        if (w != pid) {
            note_error(r, "waitpid", errno);
            continue;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) note_error(r, r->program, -1);
        atomic_fetch_add(&r->spawned, 1);
    }
    return NULL;
}

static void usage(FILE *f)
{
    fputs("usage: drover-spawn [--threads N] [--count M] [--max-seconds S] [--program PATH]\n"
          "\n"
          "N threads (default 2) each posix_spawn PATH (default /bin/true) and wait for it,\n"
          "in a loop, until M processes in all (default 20000) or S seconds (default 60).\n"
          "Prints one line of JSON.\n",
          f);
}

static bool parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"threads", required_argument, NULL, 't'},
        {"count", required_argument, NULL, 'n'},
        {"max-seconds", required_argument, NULL, 's'},
        {"program", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long threads = 2, count = 20000, max_s = 60;
    const char *program = "/bin/true";
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (!parse_long(optarg, 1, 256, &threads)) goto bad;
            break;
        case 'n':
            if (!parse_long(optarg, 1, 100000000, &count)) goto bad;
            break;
        case 's':
            if (!parse_long(optarg, 1, 86400, &max_s)) goto bad;
            break;
        case 'p':
            program = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            goto bad;
        }
    }
    if (optind < argc) goto bad;

    struct run r;
    memset(&r, 0, sizeof(r));
    r.program = program;
    r.count = count;
    atomic_init(&r.claimed, 0);
    atomic_init(&r.spawned, 0);
    atomic_init(&r.errors, 0);
    atomic_init(&r.time_up, false);
    pthread_mutex_init(&r.lock, NULL);
    pthread_t *tids = calloc((size_t)threads, sizeof(*tids));
    if (!tids) return 1;
    int64_t t0 = mono_ns();
    r.deadline_ns = t0 + (int64_t)max_s * 1000000000;
    long started = 0;
    for (long i = 0; i < threads; i++) {
        int rc = pthread_create(&tids[i], NULL, spawner, &r);
        if (rc != 0) {
            fprintf(stderr, "drover-spawn: pthread_create: %s\n", strerror(rc));
            break;
        }
        started++;
    }
    for (long i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    double secs = (double)(mono_ns() - t0) / 1e9;
    long spawned = atomic_load(&r.spawned), errors = atomic_load(&r.errors);
    printf("{\"threads\": %ld, \"spawned\": %ld, \"errors\": %ld, "
           "\"seconds\": %.3f, \"per_s\": %.1f, \"time_limited\": %s}\n",
           started, spawned, errors, secs, secs > 0 ? (double)spawned / secs : 0.0,
           atomic_load(&r.time_up) ? "true" : "false");
    if (r.first_error[0]) fprintf(stderr, "drover-spawn: first error: %s\n", r.first_error);
    free(tids);
    pthread_mutex_destroy(&r.lock);
    return errors || started != threads ? 1 : 0;
bad:
    usage(stderr);
    return 2;
}
