/*
 * test_sched.c - the in-memory ready queues (server/sched.c): which job an
 * agent gets, and which agents could take a job. (What happens to a job when
 * its attempt ends: test_lifecycle.c.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>

#include <jansson.h>

#include <cmocka.h>

#include "jobtest.h"

#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/job.h"
#include "job/protocol.h"
#include "job/spec.h"
#include "server/lease.h"
#include "server/sched.h"


static size_t take(struct sched *s, const char *queues, const char *labels, int slots,
                   struct sched_job **out, size_t max)
{
    json_t *q = json_loads(queues, 0, NULL), *l = json_loads(labels, 0, NULL);
    size_t n = sched_take(s, q, l, PROTO_RT_NATIVE, slots, out, max);
    json_decref(q);
    json_decref(l);
    return n;
}

static void test_priority_then_fifo(void **state)
{
    (void)state;
    struct sched *s = sched_new();
    struct job j[5];
    const char *specs[] = {
        "{\"priority\": 0, \"command\": {\"program\": \"a\"}}",
        "{\"priority\": 5, \"command\": {\"program\": \"b\"}}",
        "{\"priority\": 0, \"command\": {\"program\": \"c\"}}",
        "{\"priority\": 5, \"command\": {\"program\": \"d\"}}",
        "{\"priority\": -3, \"command\": {\"program\": \"e\"}}",
    };
    for (int i = 0; i < 5; i++) {
        make_job(&j[i], specs[i], 0);
        sched_add(s, &j[i]);
    }
    sched_add(s, &j[0]); /* a second add is ignored */
    assert_int_equal(sched_ready_count(s, "default"), 5);
    struct sched_job *out[8];
    size_t n = take(s, "[\"default\"]", "{}", 8, out, 8);
    assert_int_equal(n, 5);
    int want[] = {1, 3, 0, 2, 4};
    for (int i = 0; i < 5; i++) {
        assert_string_equal(out[i]->id, j[want[i]].id);
        sched_job_free(out[i]);
    }
    assert_int_equal(sched_ready_count(s, "default"), 0);
    for (int i = 0; i < 5; i++)
        job_release(&j[i]);
    sched_free(s);
}

/* A job given back (sched_return) is first in its line again: ahead of those of its priority,
   not of a higher priority; a candidate put back (sched_put_back) keeps its place too. */
static void test_given_back_keeps_its_place(void **state)
{
    (void)state;
    struct sched *s = sched_new();
    struct job j[4];
    const char *specs[] = {
        "{\"command\": {\"program\": \"a\"}}",
        "{\"command\": {\"program\": \"b\"}}",
        "{\"command\": {\"program\": \"c\"}}",
        "{\"priority\": 5, \"command\": {\"program\": \"d\"}}",
    };
    for (int i = 0; i < 4; i++)
        make_job(&j[i], specs[i], 0);
    sched_add(s, &j[1]);
    sched_add(s, &j[2]);
    sched_add(s, &j[3]);
    sched_return(s, &j[0]); /* leased before b and c, given back after they were queued */
    struct sched_job *out[8];
    assert_int_equal(take(s, "[\"default\"]", "{}", 2, out, 8), 2);
    assert_string_equal(out[0]->id, j[3].id); /* a higher priority still goes first */
    assert_string_equal(out[1]->id, j[0].id);
    sched_put_back(s, out[1]); /* its lease could not be committed */
    sched_untake(s, out[0]);
    assert_int_equal(take(s, "[\"default\"]", "{}", 8, out, 8), 3);
    int want[] = {0, 1, 2};
    for (int i = 0; i < 3; i++) {
        assert_string_equal(out[i]->id, j[want[i]].id);
        sched_job_free(out[i]);
    }
    for (int i = 0; i < 4; i++)
        job_release(&j[i]);
    sched_free(s);
}

static void test_queues_requires_and_slots(void **state)
{
    (void)state;
    struct sched *s = sched_new();
    struct job a, b, c, d;
    make_job(&a, "{\"queue\": \"gpu\", \"requires\": {\"gpu\": \"a100\"}, "
                 "\"command\": {\"program\": \"x\"}}", 0);
    make_job(&b, "{\"queue\": \"gpu\", \"command\": {\"program\": \"x\"}}", 0);
    make_job(&c, "{\"queue\": \"cpu\", \"slots\": 3, \"command\": {\"program\": \"x\"}}", 0);
    make_job(&d, "{\"queue\": \"other\", \"command\": {\"program\": \"x\"}}", 0);
    sched_add(s, &a);
    sched_add(s, &b);
    sched_add(s, &c);
    sched_add(s, &d);
    struct sched_job *out[4];

    /* an agent without the label skips a and gets b; c needs 3 slots, it has 2 */
    assert_int_equal(take(s, "[\"gpu\", \"cpu\"]", "{}", 2, out, 4), 1);
    assert_string_equal(out[0]->id, b.id);
    sched_job_free(out[0]);
    /* the right label gets a; another queue is never looked at */
    assert_int_equal(take(s, "[\"gpu\"]", "{\"gpu\": \"a100\", \"x\": \"y\"}", 1, out, 4), 1);
    assert_string_equal(out[0]->id, a.id);
    sched_job_free(out[0]);
    /* slots: 3 free fits c, and nothing is left for the last slot */
    assert_int_equal(take(s, "[\"cpu\"]", "{}", 3, out, 4), 1);
    assert_string_equal(out[0]->id, c.id);
    /* put back (a lease that failed to commit): it can be taken again */
    sched_put_back(s, out[0]);
    assert_int_equal(sched_ready_count(s, "cpu"), 1);
    assert_true(sched_remove(s, c.id));
    assert_false(sched_remove(s, c.id));
    assert_int_equal(take(s, "[\"cpu\"]", "{}", 3, out, 4), 0);
    assert_int_equal(sched_ready_count(s, "other"), 1);

    job_release(&a);
    job_release(&b);
    job_release(&c);
    job_release(&d);
    sched_free(s);
}

/* Image jobs go to container runtimes, sandboxed ones to bwrap, plain ones to native or bwrap. */
static void test_runtimes(void **state)
{
    (void)state;
    struct sched *s = sched_new();
    struct job img, box, plain;
    make_job(&img, "{\"command\": {\"program\": \"x\", \"image\": \"bb:1\"}}", 0);
    make_job(&box, "{\"command\": {\"program\": \"x\", \"sandbox\": true}}", 0);
    make_job(&plain, "{\"command\": {\"program\": \"x\"}}", 0);
    sched_add(s, &img);
    sched_add(s, &box);
    sched_add(s, &plain);
    json_t *q = json_pack("[s]", "default"), *l = json_object();
    struct sched_job *out[4];
    /* native only: the plain job, nothing else */
    assert_int_equal(sched_take(s, q, l, PROTO_RT_NATIVE, 4, out, 4), 1);
    assert_string_equal(out[0]->id, plain.id);
    sched_put_back(s, out[0]);
    /* podman only: the image job */
    assert_false(sched_has_work(s, q, l, 0, 4)); /* no runtime: nothing */
    assert_int_equal(sched_take(s, q, l, PROTO_RT_PODMAN, 4, out, 4), 1);
    assert_string_equal(out[0]->id, img.id);
    sched_job_free(out[0]);
    /* bwrap: the sandboxed job and the plain one */
    assert_int_equal(sched_take(s, q, l, PROTO_RT_BWRAP, 4, out, 4), 2);
    assert_true(!strcmp(out[0]->id, box.id) || !strcmp(out[1]->id, box.id));
    sched_job_free(out[0]);
    sched_job_free(out[1]);
    assert_false(sched_has_work(s, q, l, PROTO_RT_ALL, 4));
    json_decref(q);
    json_decref(l);
    job_release(&img);
    job_release(&box);
    job_release(&plain);
    sched_free(s);
}

static void test_delayed_jobs_wait(void **state)
{
    (void)state;
    struct sched *s = sched_new();
    struct job j;
    int64_t now = time_now_ms();
    make_job(&j, "{\"delay_s\": 60, \"command\": {\"program\": \"x\"}}", now);
    sched_add(s, &j);
    struct sched_job *out[1];
    assert_int_equal(take(s, "[\"default\"]", "{}", 1, out, 1), 0);
    assert_int_equal(sched_tick(s, now + 59000), 0);
    assert_int_equal(sched_tick(s, now + 60000), 1);
    assert_int_equal(take(s, "[\"default\"]", "{}", 1, out, 1), 1);
    sched_job_free(out[0]);
    /* a delayed job can be cancelled too */
    struct job k;
    make_job(&k, "{\"delay_s\": 60, \"command\": {\"program\": \"x\"}}", now);
    sched_add(s, &k);
    assert_true(sched_remove(s, k.id));
    assert_int_equal(sched_tick(s, now + 120000), 0);
    job_release(&j);
    job_release(&k);
    sched_free(s);
}

/* ---- could an agent take it? (issue 13.4) ---- */

/* Counts agents "QUEUES|LABELS|SLOTS[|RUNTIMES];..." (JSON arrays and objects; RUNTIMES a
 * number of PROTO_RT_* bits, native when absent) against a job spec. */
static void fit_job(struct sched_fit *fit, struct job *j, const char *spec, const char *agents)
{
    make_job(j, spec, time_now_ms());
    sched_fit_init(fit, j->queue, json_object_get(j->spec, "requires"), j->slots,
                   spec_runtimes(j->spec));
    char list[1024];
    assert_true(strlen(agents) < sizeof(list));
    snprintf(list, sizeof(list), "%s", agents);
    for (char *a = list, *end; *a; a = end) {
        end = strchr(a, ';');
        end = end ? (*end = '\0', end + 1) : a + strlen(a);
        char *bar1 = strchr(a, '|'), *bar2 = bar1 ? strchr(bar1 + 1, '|') : NULL;
        assert_non_null(bar2);
        *bar1 = *bar2 = '\0';
        json_t *q = json_loads(a, 0, NULL), *l = json_loads(bar1 + 1, 0, NULL);
        assert_non_null(q);
        assert_non_null(l);
        char *bar3 = strchr(bar2 + 1, '|');
        unsigned rt = bar3 ? (unsigned)strtoul(bar3 + 1, NULL, 10) : PROTO_RT_NATIVE;
        sched_fit_add(fit, q, l, (int)strtol(bar2 + 1, NULL, 10), rt);
        json_decref(q);
        json_decref(l);
    }
}

/* The warnings joined with " / ", for comparing. */
static void assert_warnings(const struct sched_fit *fit, const char *want)
{
    json_t *w = sched_fit_warnings(fit);
    char got[1024] = "";
    size_t i;
    json_t *v;
    json_array_foreach(w, i, v)
    {
        size_t n = strlen(got);
        snprintf(got + n, sizeof(got) - n, "%s%s", i ? " / " : "", json_string_value(v));
    }
    json_decref(w);
    assert_string_equal(got, want);
}

static void test_fit_warnings(void **state)
{
    (void)state;
    static const struct {
        const char *spec, *agents;
        int listeners;
        const char *warnings;
    } cases[] = {
        /* nobody up */
        {"{\"queue\": \"bio\", \"command\": {\"program\": \"p\"}}", "", 0,
         "queue 'bio' has no listening agent (no agent is up)"},
        /* agents, none on the queue */
        {"{\"queue\": \"bio\", \"command\": {\"program\": \"p\"}}",
         "[\"default\"]|{}|4;[\"x\"]|{}|2", 0, "queue 'bio' has no listening agent"},
        /* fits one of two */
        {"{\"queue\": \"bio\", \"command\": {\"program\": \"p\"}}",
         "[\"default\",\"bio\"]|{}|4;[\"x\"]|{}|2", 1, ""},
        /* labels nobody has */
        {"{\"queue\": \"bio\", \"requires\": {\"db\": \"rfam\"}, \"command\": {\"program\": "
         "\"p\"}}",
         "[\"bio\"]|{\"db\":\"pfam\"}|8", 0, "no agent has labels db=rfam"},
        /* labels an agent of another queue has */
        {"{\"queue\": \"bio\", \"requires\": {\"db\": \"rfam\", \"gpu\": \"1\"}, "
         "\"command\": {\"program\": \"p\"}}",
         "[\"bio\"]|{}|8;[\"other\"]|{\"db\":\"rfam\",\"gpu\":\"1\"}|8", 0,
         "no agent serving queue 'bio' has labels db=rfam,gpu=1"},
        /* too many slots */
        {"{\"queue\": \"bio\", \"slots\": 16, \"command\": {\"program\": \"p\"}}",
         "[\"bio\"]|{}|8;[\"bio\"]|{}|4;[\"x\"]|{}|32", 0,
         "slots 16 exceeds the largest agent's 8"},
        /* all three: no queue, no labels, slots against every agent */
        {"{\"queue\": \"bio\", \"slots\": 16, \"requires\": {\"db\": \"rfam\"}, "
         "\"command\": {\"program\": \"p\"}}",
         "[\"x\"]|{}|8", 0,
         "queue 'bio' has no listening agent / no agent has labels db=rfam / slots 16 exceeds "
         "the largest agent's 8"},
        /* slots and labels fit on different agents only: the labelled one is too small */
        {"{\"queue\": \"bio\", \"slots\": 4, \"requires\": {\"db\": \"rfam\"}, "
         "\"command\": {\"program\": \"p\"}}",
         "[\"bio\"]|{\"db\":\"rfam\"}|2;[\"bio\"]|{}|8", 0,
         "slots 4 exceeds the largest agent's 2"},
        /* an image: only agents with a container runtime listen */
        {"{\"queue\": \"bio\", \"command\": {\"program\": \"p\", \"image\": \"bb\"}}",
         "[\"bio\"]|{}|8|3;[\"x\"]|{}|8|4", 0,
         "no agent serving queue 'bio' has a container runtime (podman or docker) for "
         "command.image"},
        {"{\"queue\": \"bio\", \"command\": {\"program\": \"p\", \"image\": \"bb\"}}",
         "[\"bio\"]|{}|8|3;[\"bio\"]|{}|8|5;[\"bio\"]|{}|8|8", 2, ""},
        /* a sandbox: only agents with bwrap */
        {"{\"queue\": \"bio\", \"command\": {\"program\": \"p\", \"sandbox\": true}}",
         "[\"bio\"]|{}|8|1;[\"bio\"]|{}|8|4", 0,
         "no agent serving queue 'bio' has bubblewrap (bwrap) for command.sandbox"},
        {"{\"queue\": \"bio\", \"command\": {\"program\": \"p\", \"sandbox\": true}}",
         "[\"bio\"]|{}|8|1;[\"bio\"]|{}|8|2", 1, ""},
        /* a plain job: native or bwrap, not a container-only agent */
        {"{\"queue\": \"bio\", \"command\": {\"program\": \"p\"}}",
         "[\"bio\"]|{}|8|4;[\"bio\"]|{}|8|2", 1, ""},
        {"{\"queue\": \"bio\", \"command\": {\"program\": \"p\"}}", "[\"bio\"]|{}|8|4", 0,
         "no agent serving queue 'bio' has a runtime for jobs without an image (native or "
         "bwrap)"},
        /* two listeners */
        {"{\"queue\": \"bio\", \"slots\": 4, \"requires\": {\"db\": \"rfam\"}, "
         "\"command\": {\"program\": \"p\"}}",
         "[\"bio\"]|{\"db\":\"rfam\",\"x\":\"y\"}|4;[\"a\",\"bio\"]|{\"db\":\"rfam\"}|8;[\"bio\"]|{"
         "}|8",
         2, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sched_fit fit;
        struct job j;
        fit_job(&fit, &j, cases[i].spec, cases[i].agents);
        if (fit.listeners != cases[i].listeners)
            fail_msg("case %zu: %d listeners, want %d", i, fit.listeners, cases[i].listeners);
        assert_warnings(&fit, cases[i].warnings);
        job_release(&j);
    }

    /* A queue alone (slots 0): every agent up serving it listens. */
    struct sched_fit fit;
    json_t *q = json_loads("[\"bio\"]", 0, NULL), *l = json_object();
    sched_fit_init(&fit, "bio", NULL, 0, 0);
    sched_fit_add(&fit, q, l, 1, PROTO_RT_NATIVE);
    sched_fit_add(&fit, q, l, 64, PROTO_RT_PODMAN);
    assert_int_equal(fit.listeners, 2);
    json_decref(q);
    json_decref(l);
}

static void test_waiting(void **state)
{
    (void)state;
    int64_t now; /* read after each job is made: a job is due from its creation (run_after) */
    struct sched_fit fit;
    struct job j;

    fit_job(&fit, &j, "{\"queue\": \"bio\", \"command\": {\"program\": \"p\"}}", "");
    now = time_now_ms();
    json_t *w = sched_waiting_json(&j, &fit, now);
    assert_string_equal(json_string_value(json_object_get(w, "reason")), "no_agent");
    assert_string_equal(json_string_value(json_object_get(w, "message")),
                        "no agent can take it: queue 'bio' has no listening agent (no agent "
                        "is up)");
    assert_true(json_is_null(json_object_get(w, "until")));
    assert_int_equal(json_integer_value(json_object_get(w, "listeners")), 0);
    json_decref(w);
    j.state = JOB_RUNNING; /* only a queued job waits */
    w = sched_waiting_json(&j, &fit, now);
    assert_true(json_is_null(w));
    json_decref(w);
    job_release(&j);

    fit_job(&fit, &j, "{\"queue\": \"bio\", \"command\": {\"program\": \"p\"}}",
            "[\"bio\"]|{}|1;[\"bio\"]|{}|1");
    now = time_now_ms();
    w = sched_waiting_json(&j, &fit, now);
    assert_string_equal(json_string_value(json_object_get(w, "reason")), "busy");
    assert_non_null(strstr(json_string_value(json_object_get(w, "message")), "2 agents could"));
    json_decref(w);
    job_release(&j);

    fit_job(&fit, &j, "{\"delay_s\": 60, \"command\": {\"program\": \"p\"}}", "[\"default\"]|{}|1");
    now = time_now_ms();
    w = sched_waiting_json(&j, &fit, now);
    assert_string_equal(json_string_value(json_object_get(w, "reason")), "delayed");
    assert_non_null(strstr(json_string_value(json_object_get(w, "message")), "delayed until "));
    assert_true(json_is_string(json_object_get(w, "until")));
    json_decref(w);
    j.attempt = 1; /* requeued after a failed attempt, with a backoff */
    w = sched_waiting_json(&j, &fit, now);
    assert_string_equal(json_string_value(json_object_get(w, "reason")), "retry_backoff");
    assert_non_null(strstr(json_string_value(json_object_get(w, "message")), "attempt 1 failed"));
    json_decref(w);
    w = sched_waiting_json(&j, &fit, j.run_after); /* due now: the agents decide */
    assert_string_equal(json_string_value(json_object_get(w, "reason")), "busy");
    json_decref(w);
    job_release(&j);
}

/* A paused queue: none of its jobs is taken, the others' are; resumed, they go again. */
#define T_PAUSED 1700000000000LL
static void test_paused_queue(void **state)
{
    (void)state;
    struct sched *s = sched_new();
    struct job a, b;
    make_job(&a, "{\"queue\": \"bio\", \"priority\": 9, \"command\": {\"program\": \"x\"}}",
             0);
    make_job(&b, "{\"queue\": \"cpu\", \"command\": {\"program\": \"x\"}}", 0);
    sched_add(s, &a);
    sched_add(s, &b);
    struct sched_job *out[4];
    assert_int_equal(sched_queue_paused(s, "bio"), 0);
    sched_queue_pause(s, "bio", T_PAUSED);
    sched_queue_pause(s, "idle", T_PAUSED + 1); /* a queue without jobs may be paused */
    assert_int_equal(sched_queue_paused(s, "bio"), T_PAUSED);
    json_t *bio = json_pack("[s]", "bio"), *none = json_object();
    assert_false(sched_has_work(s, bio, none, PROTO_RT_ALL, 4));
    json_decref(bio);
    json_decref(none);
    /* the higher priority is in the paused queue: the other queue's job comes */
    assert_int_equal(take(s, "[\"bio\", \"cpu\"]", "{}", 4, out, 4), 1);
    assert_string_equal(out[0]->id, b.id);
    sched_job_free(out[0]);
    assert_int_equal(take(s, "[\"bio\"]", "{}", 4, out, 4), 0);
    assert_int_equal(sched_ready_count(s, "bio"), 1); /* still queued here */

    /* its fit says so first, agents or not; its waiting reason is "paused" */
    struct sched_fit fit;
    struct job j;
    fit_job(&fit, &j, "{\"queue\": \"bio\", \"command\": {\"program\": \"p\"}}",
            "[\"bio\"]|{}|1");
    fit.paused_at = sched_queue_paused(s, "bio");
    assert_warnings(&fit, "queue 'bio' is paused");
    json_t *w = sched_waiting_json(&j, &fit, time_now_ms());
    assert_string_equal(json_string_value(json_object_get(w, "reason")), "paused");
    assert_non_null(strstr(json_string_value(json_object_get(w, "message")),
                           "its queue 'bio' is paused (since "));
    json_decref(w);
    job_release(&j);

    sched_queue_pause(s, "bio", 0); /* resumed */
    assert_int_equal(sched_queue_paused(s, "bio"), 0);
    assert_int_equal(sched_queue_paused(s, "idle"), T_PAUSED + 1);
    sched_queue_resume_all(s);
    assert_int_equal(sched_queue_paused(s, "idle"), 0);
    assert_int_equal(take(s, "[\"bio\"]", "{}", 4, out, 4), 1);
    assert_string_equal(out[0]->id, a.id);
    sched_job_free(out[0]);
    job_release(&a);
    job_release(&b);
    sched_free(s);
}

/* ---- the input-cache preference ---- */

struct other_agent {
    json_t *queues, *labels, *have;
    int free_slots;
    int asked;
};

static bool other_has_it(void *arg, const struct sched_job *sj)
{
    struct other_agent *o = arg;
    o->asked++;
    return sched_could_take(sj, o->queues, o->labels, PROTO_RT_NATIVE, o->free_slots, o->have);
}

#define DB_SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_cache_preference(void **state)
{
    (void)state;
    struct sched *s = sched_new();
    struct job cached, plain;
    make_job(&cached, "{\"command\": {\"program\": \"nhmmer\", \"arguments\": ["
                      "{\"type\": \"input\", \"value\": \"s3://refs/db.fa\", \"cache\": true}]}}",
             0);
    make_job(&plain, "{\"command\": {\"program\": \"x\", \"arguments\": ["
                     "{\"type\": \"input\", \"value\": \"s3://refs/q.fa\"}]}}",
             0);
    sched_add(s, &cached);
    sched_add(s, &plain);

    /* the keys a job's cached inputs give, and an agent's list as a set */
    json_t *keys = sched_cache_keys(cached.spec);
    assert_int_equal(json_array_size(keys), 1);
    assert_string_equal(json_string_value(json_array_get(keys, 0)), "uri:s3://refs/db.fa");
    json_decref(keys);
    assert_null(sched_cache_keys(plain.spec));
    json_t *sha_spec = json_loads("{\"command\": {\"arguments\": [{\"type\": \"input\", "
                                  "\"value\": \"https://h/x\", \"sha256\": \"" DB_SHA "\"}]}}",
                                  0, NULL);
    keys = sched_cache_keys(sha_spec);
    assert_int_equal(json_array_size(keys), 2);
    assert_string_equal(json_string_value(json_array_get(keys, 0)), "sha256:" DB_SHA);
    json_decref(keys);
    json_decref(sha_spec);
    sha_spec = json_loads("{\"command\": {\"arguments\": [{\"type\": \"input\", \"value\": "
                          "\"https://h/x\", \"sha256\": \"" DB_SHA "\", \"cache\": false}]}}",
                          0, NULL);
    assert_null(sched_cache_keys(sha_spec)); /* cache: false: not cached, no preference */
    json_decref(sha_spec);
    json_t *list = json_loads("[{\"sha256\": \"" DB_SHA "\", \"uri\": \"s3://refs/db.fa\"}]", 0,
                              NULL);
    json_t *have = sched_cache_set(list);
    json_decref(list);
    assert_non_null(json_object_get(have, "sha256:" DB_SHA));
    assert_non_null(json_object_get(have, "uri:s3://refs/db.fa"));

    struct other_agent o = {json_pack("[s]", "default"), json_object(), have, 1, 0};
    json_t *q = json_pack("[s]", "default"), *l = json_object();
    int64_t now = time_now_ms();
    struct sched_pref pref = {NULL, other_has_it, &o, now};
    struct sched_job *out[4];

    /* an agent without the object gets the plain job only: the cached one waits for o */
    size_t n = sched_take_pref(s, q, l, PROTO_RT_NATIVE, 2, &pref, out, 4);
    assert_int_equal(n, 1);
    assert_string_equal(out[0]->id, plain.id);
    sched_job_free(out[0]);
    assert_true(o.asked > 0);
    assert_int_equal(sched_ready_count(s, "default"), 1);

    /* o has no free slot, serves another queue, or lacks a required label: no wait */
    o.free_slots = 0;
    assert_true(sched_has_work(s, q, l, PROTO_RT_NATIVE, 1));
    n = sched_take_pref(s, q, l, PROTO_RT_NATIVE, 1, &pref, out, 1);
    assert_int_equal(n, 1);
    sched_put_back(s, out[0]);
    o.free_slots = 1;
    json_decref(o.queues);
    o.queues = json_pack("[s]", "other");
    n = sched_take_pref(s, q, l, PROTO_RT_NATIVE, 1, &pref, out, 1);
    assert_int_equal(n, 1);
    sched_put_back(s, out[0]);
    json_decref(o.queues);
    o.queues = json_pack("[s]", "default");

    /* the wait is bounded: past SCHED_CACHE_WAIT_MS any agent takes it, and sched_tick says
     * so once (the server then offers it to the parked polls) */
    n = sched_take_pref(s, q, l, PROTO_RT_NATIVE, 1, &pref, out, 1);
    assert_int_equal(n, 0);
    assert_int_equal(sched_tick(s, now + 10), 0);
    assert_int_equal(sched_tick(s, now + SCHED_CACHE_WAIT_MS + 1000), 1);
    assert_int_equal(sched_tick(s, now + SCHED_CACHE_WAIT_MS + 2000), 0);
    pref.now_ms = now + SCHED_CACHE_WAIT_MS + 1000;
    n = sched_take_pref(s, q, l, PROTO_RT_NATIVE, 1, &pref, out, 1);
    assert_int_equal(n, 1);
    sched_put_back(s, out[0]);

    /* the agent that has it takes it at once, without asking about others */
    pref.now_ms = now;
    pref.have = have;
    o.asked = 0;
    n = sched_take_pref(s, q, l, PROTO_RT_NATIVE, 1, &pref, out, 1);
    assert_int_equal(n, 1);
    assert_string_equal(out[0]->id, cached.id);
    assert_int_equal(o.asked, 0);
    sched_job_free(out[0]);

    json_decref(q);
    json_decref(l);
    json_decref(o.queues);
    json_decref(o.labels);
    json_decref(have);
    job_release(&cached);
    job_release(&plain);
    sched_free(s);
}

/* ---- tenants: fair share and max_running ---- */

/* n jobs of tenant t (copies in sched), into j (the caller releases them). */
static void add_tenant_jobs(struct sched *s, struct job *j, size_t n, const char *t)
{
    for (size_t i = 0; i < n; i++) {
        make_job(&j[i], "{\"command\": {\"program\": \"x\"}}", 0);
        j[i].tenant = xstrdup(t);
        sched_add(s, &j[i]);
    }
}

/* Takes up to max jobs one at a time (each is held: never released), counting tenant a's. */
static size_t take_one_by_one(struct sched *s, size_t max, char *order)
{
    size_t n = 0;
    struct sched_job *out[1];
    while (n < max && take(s, "[\"default\"]", "{}", 1, out, 1) == 1) {
        order[n++] = out[0]->tenant[0];
        sched_job_free(out[0]);
    }
    order[n] = '\0';
    return n;
}

static void test_fair_share(void **state)
{
    (void)state;
    struct sched *s = sched_new();
    static struct job a[1000], b[10];
    add_tenant_jobs(s, a, 1000, "a"); /* a queues many first ... */
    add_tenant_jobs(s, b, 10, "b");   /* ... b a few later */
    char order[64];
    assert_int_equal(take_one_by_one(s, 20, order), 20);
    /* b's jobs do not wait for a's backlog: the two take turns (a first: its job is older) */
    assert_string_equal(order, "abababababababababab");
    assert_int_equal(sched_tenant_held(s, "a"), 10);
    assert_int_equal(sched_tenant_held(s, "b"), 10);
    assert_int_equal(take_one_by_one(s, 5, order), 5);
    assert_string_equal(order, "aaaaa"); /* b has none left */
    assert_int_equal(sched_ready_count(s, "default"), 985);
    for (int i = 0; i < 1000; i++)
        job_release(&a[i]);
    for (int i = 0; i < 10; i++)
        job_release(&b[i]);
    sched_free(s);
}

/* One slot, each job ending before the next is taken: the tenants still take turns. */
static void test_fair_share_one_slot(void **state)
{
    (void)state;
    struct sched *s = sched_new();
    static struct job a[100], b[3];
    add_tenant_jobs(s, a, 100, "a");
    add_tenant_jobs(s, b, 3, "b");
    char order[16];
    struct sched_job *out[1];
    size_t n = 0;
    while (n < 10 && take(s, "[\"default\"]", "{}", 1, out, 1) == 1) {
        order[n++] = out[0]->tenant[0];
        sched_release(s, out[0]->tenant, out[0]->queue); /* its lease ended */
        sched_job_free(out[0]);
    }
    order[n] = '\0';
    assert_string_equal(order, "abababaaaa");
    for (int i = 0; i < 100; i++)
        job_release(&a[i]);
    for (int i = 0; i < 3; i++)
        job_release(&b[i]);
    sched_free(s);
}

static void test_fair_share_weight_and_fifo(void **state)
{
    (void)state;
    struct sched *s = sched_new();
    static struct job a[100], b[100];
    sched_tenant_set(s, "a", -1, 3);
    add_tenant_jobs(s, a, 100, "a");
    add_tenant_jobs(s, b, 100, "b");
    struct sched_job *out[40];
    size_t n = take(s, "[\"default\"]", "{}", 40, out, 40);
    assert_int_equal(n, 40);
    int na = 0, ia = 0, ib = 0;
    for (size_t i = 0; i < n; i++) {
        /* FIFO within a tenant */
        if (out[i]->tenant[0] == 'a') assert_string_equal(out[i]->id, a[ia++].id);
        else assert_string_equal(out[i]->id, b[ib++].id);
        na += out[i]->tenant[0] == 'a';
        sched_job_free(out[i]);
    }
    assert_int_equal(na, 30); /* weight 3 to 1 */
    /* priority still comes first: a high-priority job of b goes before a's */
    struct job hi;
    make_job(&hi, "{\"priority\": 5, \"command\": {\"program\": \"x\"}}", 0);
    hi.tenant = xstrdup("b");
    sched_add(s, &hi);
    assert_int_equal(take(s, "[\"default\"]", "{}", 1, out, 1), 1);
    assert_string_equal(out[0]->id, hi.id);
    sched_job_free(out[0]);
    job_release(&hi);
    for (int i = 0; i < 100; i++) {
        job_release(&a[i]);
        job_release(&b[i]);
    }
    sched_free(s);
}

/* sched_queue_limits_each: adds each limit to *arg. */
static void count_limit(void *arg, const char *queue, int max_running)
{
    (void)queue;
    *(int *)arg += max_running;
}

/*
 * A queue's max_running: at most that many of its jobs held, whatever their tenants and
 * however many slots ask; another queue goes on; a release frees one; loads (sched_hold)
 * count; 0 lifts it.
 */
static void test_queue_max_running(void **state)
{
    (void)state;
    struct sched *s = sched_new();
    struct job a[4], b[4], o[2];
    add_tenant_jobs(s, a, 4, "a");
    add_tenant_jobs(s, b, 4, "b");
    for (int i = 0; i < 2; i++) {
        make_job(&o[i], "{\"queue\": \"other\", \"command\": {\"program\": \"x\"}}", 0);
        sched_add(s, &o[i]);
    }
    sched_queue_limit(s, "default", 3);
    assert_int_equal(sched_queue_max_running(s, "default"), 3);
    assert_int_equal(sched_queue_max_running(s, "other"), 0);
    struct sched_job *out[10], *more[10];
    size_t n = take(s, "[\"default\", \"other\"]", "{}", 10, out, 10);
    assert_int_equal(n, 5); /* 3 of default (both tenants), then other's 2 */
    int def = 0;
    for (size_t i = 0; i < n; i++)
        def += !strcmp(out[i]->queue, "default");
    assert_int_equal(def, 3);
    assert_int_equal(sched_queue_held(s, "default"), 3);
    assert_int_equal(take(s, "[\"default\"]", "{}", 10, more, 10), 0);
    /* a lease of default ends: one more may go */
    size_t k = 0;
    while (strcmp(out[k]->queue, "default"))
        k++;
    assert_true(sched_release(s, out[k]->tenant, "default")); /* it was at its limit */
    assert_int_equal(take(s, "[\"default\"]", "{}", 10, more, 10), 1);
    sched_job_free(more[0]);
    /* a lease loaded at start counts too */
    sched_release(s, "a", "default");
    sched_hold(s, "a", "default");
    assert_int_equal(take(s, "[\"default\"]", "{}", 10, more, 10), 0);
    /* lifted: the rest go */
    sched_queue_limit(s, "default", 0);
    assert_int_equal(take(s, "[\"default\"]", "{}", 10, more, 10), 4);
    int listed = 0;
    sched_queue_limit(s, "other", 7);
    sched_queue_limits_each(s, count_limit, &listed);
    assert_int_equal(listed, 7);
    sched_queue_unlimit_all(s);
    assert_int_equal(sched_queue_max_running(s, "other"), 0);
    for (size_t i = 0; i < 4; i++)
        sched_job_free(more[i]);
    for (size_t i = 0; i < n; i++)
        sched_job_free(out[i]);
    for (int i = 0; i < 4; i++) {
        job_release(&a[i]);
        job_release(&b[i]);
    }
    for (int i = 0; i < 2; i++)
        job_release(&o[i]);
    sched_free(s);
}

static void test_tenant_max_running(void **state)
{
    (void)state;
    struct sched *s = sched_new();
    struct job a[10], b[3], c[2];
    sched_tenant_set(s, "a", 2, 1);
    sched_tenant_default(s, 1); /* b and c: one at a time; a keeps its own */
    add_tenant_jobs(s, a, 10, "a");
    add_tenant_jobs(s, b, 3, "b");
    add_tenant_jobs(s, c, 2, "c");
    sched_tenant_set(s, "c", 0, 1); /* c: none */
    struct sched_job *out[16];
    size_t n = take(s, "[\"default\"]", "{}", 16, out, 16);
    int count[3] = {0};
    for (size_t i = 0; i < n; i++)
        count[out[i]->tenant[0] - 'a']++;
    assert_int_equal(count[0], 2);
    assert_int_equal(count[1], 1);
    assert_int_equal(count[2], 2);
    assert_int_equal(n, 5);
    assert_int_equal(sched_tenant_held(s, "a"), 2);
    /* nothing more while they hold their limits */
    json_t *qs = json_pack("[s]", "default");
    assert_false(sched_has_work(s, qs, NULL, PROTO_RT_NATIVE, 4));
    json_decref(qs);
    struct sched_job *more[4];
    assert_int_equal(take(s, "[\"default\"]", "{}", 4, more, 4), 0);
    /* a lease of a ends: a may have one more */
    sched_release(s, "a", "default");
    assert_int_equal(take(s, "[\"default\"]", "{}", 4, more, 4), 1);
    assert_string_equal(more[0]->tenant, "a");
    /* put back (the lease was not committed): no longer held, and ready again */
    sched_put_back(s, more[0]);
    assert_int_equal(sched_tenant_held(s, "a"), 1);
    assert_int_equal(take(s, "[\"default\"]", "{}", 4, more, 4), 1);
    /* untaken (cancelled meanwhile): no longer held, and gone */
    sched_untake(s, more[0]);
    assert_int_equal(sched_tenant_held(s, "a"), 1);
    for (size_t i = 0; i < n; i++)
        sched_job_free(out[i]);
    for (int i = 0; i < 10; i++) job_release(&a[i]);
    for (int i = 0; i < 3; i++) job_release(&b[i]);
    for (int i = 0; i < 2; i++) job_release(&c[i]);
    sched_free(s);
}

/* An array is one entry standing for its tasks: taken one by one, put back into it. */
static void test_array_entry(void **state)
{
    (void)state;
    struct sched *s = sched_new();
    struct job tmpl, hi;
    make_job(&tmpl, "{\"priority\": 1, \"command\": {\"program\": \"a\"}}", 0);
    make_job(&hi, "{\"priority\": 9, \"command\": {\"program\": \"b\"}}", 0);
    const char *arr = "01a23c54-dcc5-761a-afcb-1c548816b18d";
    sched_add_array(s, arr, &tmpl, 1000000);
    assert_int_equal(sched_ready_count(s, "default"), 1); /* one entry, not a million */
    sched_add(s, &hi);
    struct sched_job *out[4];
    assert_int_equal(take(s, "[\"default\"]", "{}", 4, out, 4), 4);
    assert_string_equal(out[0]->id, hi.id); /* priority first */
    for (int i = 1; i < 4; i++) {
        assert_string_equal(out[i]->id, arr);
        assert_true(out[i]->array);
        assert_int_equal(out[i]->remaining, 1);
    }
    sched_job_free(out[0]);
    sched_put_back(s, out[1]); /* back into the array's entry */
    sched_untake(s, out[2]);
    sched_untake(s, out[3]);
    /* a new count from the store; 2 left: the second take empties the entry */
    sched_add_array(s, arr, &tmpl, 2);
    assert_int_equal(take(s, "[\"default\"]", "{}", 4, out, 4), 2);
    assert_int_equal(sched_ready_count(s, "default"), 0);
    sched_put_back(s, out[0]); /* the entry is gone: the task is the entry again */
    assert_int_equal(sched_ready_count(s, "default"), 1);
    sched_untake(s, out[1]);
    assert_true(sched_remove(s, arr));
    assert_int_equal(sched_ready_count(s, "default"), 0);
    sched_add_array(s, arr, &tmpl, 0); /* nothing left: no entry */
    assert_int_equal(sched_ready_count(s, "default"), 0);
    job_release(&tmpl);
    job_release(&hi);
    sched_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_priority_then_fifo),
        cmocka_unit_test(test_given_back_keeps_its_place),
        cmocka_unit_test(test_queues_requires_and_slots),
        cmocka_unit_test(test_paused_queue),
        cmocka_unit_test(test_runtimes),
        cmocka_unit_test(test_delayed_jobs_wait),
        cmocka_unit_test(test_fit_warnings),
        cmocka_unit_test(test_waiting),
        cmocka_unit_test(test_cache_preference),
        cmocka_unit_test(test_fair_share),
        cmocka_unit_test(test_fair_share_one_slot),
        cmocka_unit_test(test_fair_share_weight_and_fifo),
        cmocka_unit_test(test_tenant_max_running),
        cmocka_unit_test(test_queue_max_running),
        cmocka_unit_test(test_array_entry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
