/*
 * fleet.c - drover-bench-fleet: what a wake of the parked polls costs the server's loop
 * when many agents wait idle (server/fleet.c, no HTTP, no store writes).
 *
 * N agents serve a queue with no work and park a poll each; then, W times, a job becomes
 * ready on another queue (that none of them serves) and the loop runs the wake that follows:
 * each parked poll is offered work (none fits). Measured twice, in turns, ROUNDS times:
 * with the agents asking for no prefetch (the reference) and with each asking for 2 (an
 * agent whose jobs are short). Prints one JSON line per run and the ratio of the medians.
 *
 *   drover-bench-fleet [--agents N] [--wakes W] [--rounds R]
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cli/cli.h"
#include "common/timeutil.h"
#include "common/uuid.h"
#include "common/xalloc.h"
#include "job/agent.h"
#include "job/job.h"
#include "job/protocol.h"
#include "job/spec.h"
#include "server/commit.h"
#include "server/fleet.h"
#include "server/sched.h"
#include "store/store.h"
#include "commitdir.h" /* tests/unit: the store in a fresh folder, with its committer */

struct bench {
    struct event_base *base;
    struct store *reads;
    struct committer *commit;
    struct sched *sched;
    struct fleet *fleet;
    int *tags; /* the parked polls' requests: the fleet only hands these pointers back */
};

static int64_t clock_cb(void *arg)
{
    (void)arg;
    return time_now_ms();
}

static void reply_cb(void *arg, void *req, char *body, size_t len)
{
    (void)arg, (void)req, (void)len;
    free(body); /* a parked poll answered: only at the end (fleet_free) */
}

static void reply_error_cb(void *arg, void *req, const struct err *e)
{
    (void)arg, (void)req, (void)e;
}

static void job_changed_cb(void *arg, const struct job *j)
{
    (void)arg, (void)j;
}

static void die_msg(const char *what, const struct err *e)
{
    fprintf(stderr, "drover-bench-fleet: %s: %s\n", what, e ? e->msg : "failed");
    exit(1);
}

/* A fresh fleet on a store in dir (PATH_MAX bytes, made here) with n agents on queue "idle"
   (4 slots each, `prefetch` asked), each with a poll parked for an hour. */
static void setup(struct bench *b, char *dir, int n, int prefetch)
{
    struct err e = ERR_INIT;
    b->base = event_base_new();
    if (test_commit_open(dir, "drover-bench-fleet", b->base, &b->reads, &b->commit))
        die_msg("opening a store in a fresh folder", NULL); /* the reason is on stderr */
    b->sched = sched_new();
    struct fleet_deps d = {
        .base = b->base,
        .commit = b->commit,
        .reads = b->reads,
        .sched = b->sched,
        .lost_after_s = 3600,
        .deadline_grace_s = 2,
        .agent_retention_ms = 3600 * 1000,
        .now_ms = clock_cb,
        .reply = reply_cb,
        .reply_error = reply_error_cb,
        .job_changed = job_changed_cb,
        .arg = b,
    };
    b->fleet = fleet_new(&d);
    b->tags = xcalloc((size_t)n, sizeof(*b->tags));
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "idle-%d", i);
        struct agent_rec rec;
        agent_rec_init(&rec);
        uuid7_new(rec.id);
        rec.name = xstrdup(name);
        rec.labels = json_object();
        rec.queues = json_pack("[s]", "idle");
        rec.slots = 4;
        rec.runtimes = PROTO_RT_NATIVE;
        rec.owner = xstrdup("tok");
        rec.state = AGENT_UP;
        rec.last_seen = rec.registered_at = time_now_ms();
        if (fleet_may_register(b->fleet, name, "tok", NULL, &e)) die_msg("registering", &e);
        struct live_agent *a = fleet_agent_registered(b->fleet, &rec);
        a->prefetch = prefetch;
        fleet_poll(b->fleet, a, &b->tags[i], 4, NULL, 3600 * 1000);
    }
}

static void teardown(struct bench *b)
{
    fleet_free(b->fleet);
    commit_free(b->commit);
    sched_free(b->sched);
    store_close(b->reads);
    event_base_free(b->base);
    free(b->tags);
}

/* Seconds for `wakes` jobs made ready on queue "other", each with the loop turn after it. */
static double run(struct bench *b, int wakes)
{
    json_t *in = json_pack("{s:s, s:{s:s}}", "queue", "other", "command", "program", "true");
    struct job_spec spec;
    struct err e = ERR_INIT;
    if (spec_parse(in, NULL, &spec, &e)) die_msg("the spec", &e);
    json_decref(in);
    struct job *jobs = xcalloc((size_t)wakes, sizeof(*jobs));
    int64_t t0 = time_mono_ns();
    for (int i = 0; i < wakes; i++) {
        job_from_spec(&jobs[i], &spec, time_now_ms());
        fleet_job_changed(b->fleet, &jobs[i], false); /* queued: the polls wake */
        event_base_loop(b->base, EVLOOP_NONBLOCK);
    }
    double s = (double)(time_mono_ns() - t0) / 1e9;
    for (int i = 0; i < wakes; i++)
        job_release(&jobs[i]);
    free(jobs);
    spec_release(&spec);
    return s;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, c = *(const double *)y;
    return (a > c) - (a < c);
}

int main(int argc, char **argv)
{
    long agents = 1000, wakes = 200, rounds = 3;
    for (int i = 1; i < argc; i += 2) {
        long *v = !strcmp(argv[i], "--agents") ? &agents
                  : !strcmp(argv[i], "--wakes") ? &wakes
                  : !strcmp(argv[i], "--rounds") ? &rounds
                                                 : NULL;
        if (!v || i + 1 == argc) {
            fprintf(stderr, "usage: drover-bench-fleet [--agents N] [--wakes W] [--rounds R]\n");
            return 2;
        }
        if (!cli_parse_long(argv[i + 1], 1, v == &rounds ? 99 : 1000000, v)) {
            fprintf(stderr,
                    "drover-bench-fleet: %s must be a whole number from 1 to %d, not '%s'\n",
                    argv[i], v == &rounds ? 99 : 1000000, argv[i + 1]);
            return 2;
        }
    }
    double us[2][99];
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 2; k++) { /* 0: no prefetch (the reference), 1: prefetch 2 */
            char dir[PATH_MAX];
            struct bench b = {0};
            setup(&b, dir, (int)agents, k ? 2 : 0);
            double s = run(&b, (int)wakes);
            teardown(&b);
            test_commit_remove(dir);
            us[k][r] = s / wakes * 1e6;
            printf("{\"round\": %d, \"prefetch\": %d, \"agents\": %ld, \"wakes\": %ld, "
                   "\"us_per_wake\": %.1f}\n",
                   r + 1, k ? 2 : 0, agents, wakes, us[k][r]);
            fflush(stdout);
        }
    }
    qsort(us[0], (size_t)rounds, sizeof(double), cmp_double);
    qsort(us[1], (size_t)rounds, sizeof(double), cmp_double);
    double ref = us[0][rounds / 2], pre = us[1][rounds / 2];
    printf("{\"agents\": %ld, \"median_us_per_wake\": {\"no_prefetch\": %.1f, \"prefetch\": %.1f}, "
           "\"ratio\": %.2f}\n",
           agents, ref, pre, pre / ref);
    return 0;
}
