/*
 * test_lifecycle.c - THE rules of a job's life (job/lifecycle.h): every
 * (state, event) pair of the table, one by one, and what each allowed one
 * does to the record; the server's deadline (server/lease.h); the retry
 * budgets of retry.on, class by class.
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

#include "job/job.h"
#include "job/lifecycle.h"
#include "job/spec.h"
#include "server/lease.h"


static int apply(struct job *j, enum job_event ev, const struct attempt_end *end, int64_t now)
{
    struct job_event_args a = {.now_ms = now,
                               .agent = "w1",
                               .end = end,
                               .settle = JOB_FAILED,
                               .reason = "array",
                               .why = "1 of 2 tasks failed",
                               .progress =
                                   ev == JOB_EV_PROGRESS ? json_pack("{s:i}", "percent", 5) : NULL};
    struct err e = ERR_INIT;
    int rc = lifecycle_apply(j, ev, &a, &e);
    if (rc == ERR_CONFLICT) { /* the refusal names the state and the event */
        assert_non_null(strstr(e.msg, job_event_name(ev)));
        assert_non_null(
            strstr(e.msg, j->state == JOB_NEW ? "not submitted" : job_state_name(j->state)));
    }
    return rc;
}

/* A job of two attempts brought to `state` by allowed events only. */
static void job_in(struct job *j, int state)
{
    make_job(j, "{\"retry\": {\"max_attempts\": 2}, \"command\": {\"program\": \"x\"}}", 1000);
    struct attempt_end ok = {.reason = "exit", .has_exit_code = true, .duration_ms = 1};
    struct attempt_end bad = {
        .reason = "exit", .has_exit_code = true, .exit_code = 1, .duration_ms = 1};
    switch (state) {
    case JOB_NEW: /* as job_init leaves it before the submit */
        j->state = JOB_NEW;
        break;
    case JOB_BLOCKED: /* workflows will make them so; no event leads here yet */
        j->state = JOB_BLOCKED;
        break;
    case JOB_QUEUED:
        break;
    case JOB_LEASED:
        assert_int_equal(apply(j, JOB_EV_LEASE, NULL, 2000), 0);
        break;
    case JOB_RUNNING:
        assert_int_equal(apply(j, JOB_EV_LEASE, NULL, 2000), 0);
        assert_int_equal(apply(j, JOB_EV_START, NULL, 2100), 0);
        break;
    case JOB_SUCCEEDED:
        assert_int_equal(apply(j, JOB_EV_LEASE, NULL, 2000), 0);
        assert_int_equal(apply(j, JOB_EV_FINISH, &ok, 2200), 0);
        break;
    case JOB_FAILED:
        for (int i = 0; i < 2; i++) {
            assert_int_equal(apply(j, JOB_EV_LEASE, NULL, 2000), 0);
            assert_int_equal(apply(j, JOB_EV_FINISH, &bad, 2200), 0);
        }
        break;
    case JOB_CANCELLED:
        assert_int_equal(apply(j, JOB_EV_CANCEL, NULL, 2300), 0);
        break;
    }
    assert_int_equal(j->state, state);
}

/*
 * The record as JSON into buf (json_dumpb: under UNIT_TESTING cmocka replaces
 * free() in this file, so nothing jansson allocates is freed here).
 */
static void snapshot(const struct job *j, char *buf, size_t n)
{
    json_t *o = job_to_json(j);
    size_t len = json_dumpb(o, buf, n - 1, JSON_COMPACT | JSON_SORT_KEYS);
    assert_true(len > 0 && len < n);
    buf[len] = '\0';
    json_decref(o);
}

/* The table, written out again: for each event, the states that allow it. */
static bool expected(int state, enum job_event ev)
{
    bool held = state == JOB_LEASED || state == JOB_RUNNING;
    switch (ev) {
    case JOB_EV_SUBMIT:
        return state == JOB_NEW;
    case JOB_EV_LEASE:
        return state == JOB_QUEUED;
    case JOB_EV_UNLEASE:
        return state == JOB_LEASED;
    case JOB_EV_START:
    case JOB_EV_PROGRESS:
    case JOB_EV_FINISH:
    case JOB_EV_LOST:
    case JOB_EV_DEADLINE:
        return held;
    case JOB_EV_CANCEL:
        return state != JOB_NEW && !job_state_terminal(state);
    case JOB_EV_UNBLOCK:
    case JOB_EV_SETTLE:
        return state == JOB_BLOCKED;
    case JOB_EV_RETRY:
    case JOB_EV_REBLOCK:
        return state == JOB_FAILED || state == JOB_CANCELLED;
    case JOB_NEVENTS:
        break;
    }
    return false;
}

/* What an allowed event leads to from `state` (a failed attempt with one left: queued). */
static int expected_state(int state, enum job_event ev)
{
    switch (ev) {
    case JOB_EV_SUBMIT:
    case JOB_EV_UNBLOCK:
    case JOB_EV_UNLEASE:
    case JOB_EV_RETRY:
        return JOB_QUEUED;
    case JOB_EV_LEASE:
        return JOB_LEASED;
    case JOB_EV_START:
        return JOB_RUNNING;
    case JOB_EV_PROGRESS:
        return state;
    case JOB_EV_FINISH:
    case JOB_EV_LOST:
    case JOB_EV_DEADLINE:
        return JOB_QUEUED; /* attempt 1 of 2 failed: retried */
    case JOB_EV_CANCEL:
        return JOB_CANCELLED;
    case JOB_EV_REBLOCK:
        return JOB_BLOCKED;
    case JOB_EV_SETTLE:
        return JOB_FAILED; /* apply() settles as failed */
    case JOB_NEVENTS:
        break;
    }
    return -1;
}

static void test_every_pair(void **unused)
{
    (void)unused;
    struct attempt_end lost = {.reason = "lost", .duration_ms = -1};
    int pairs = 0, allowed = 0;
    for (int state = 0; state <= JOB_NEW; state++) {
        for (int ev = 0; ev < JOB_NEVENTS; ev++) {
            struct job j;
            job_in(&j, state);
            char before[8192], after[8192];
            snapshot(&j, before, sizeof(before));
            int attempt = j.attempt;
            assert_int_equal(lifecycle_allowed(state, ev), expected(state, ev));
            int rc = apply(&j, ev, &lost, 5000);
            pairs++;
            if (!expected(state, ev)) {
                assert_int_equal(rc, ERR_CONFLICT);
                snapshot(&j, after, sizeof(after));
                assert_string_equal(after, before); /* a refused event changes nothing */
                job_release(&j);
                continue;
            }
            allowed++;
            assert_true(rc == 0 || rc == LIFECYCLE_SAME);
            assert_int_equal(j.state, expected_state(state, ev));
            if (ev == JOB_EV_LEASE) assert_int_equal(j.attempt, attempt + 1);
            if (ev == JOB_EV_UNLEASE) assert_int_equal(j.attempt, attempt - 1);
            if (ev == JOB_EV_CANCEL) {
                assert_int_equal(j.finished_at, 5000);
                assert_string_equal(json_string_value(json_object_get(j.result, "reason")),
                                    "cancelled");
            }
            if (ev == JOB_EV_SETTLE) {
                assert_int_equal(j.finished_at, 5000);
                assert_string_equal(json_string_value(json_object_get(j.result, "reason")),
                                    "array");
                assert_string_equal(json_string_value(json_object_get(j.result, "error")),
                                    "1 of 2 tasks failed");
            }
            if (ev == JOB_EV_RETRY || ev == JOB_EV_REBLOCK) {
                assert_int_equal(j.attempt, attempt); /* the next lease makes the next one */
                assert_int_equal(j.run_after, 5000);
                assert_int_equal(j.finished_at, 0);
                assert_null(j.result);
                assert_null(j.agent);
            }
            job_release(&j);
        }
    }
    assert_int_equal(pairs, (JOB_NSTATES + 1) * JOB_NEVENTS);
    assert_int_equal(allowed, 1 + 1 + 1 + 2 * 5 + 4 + 1 + 2 + 2 + 1); /* the table's "ok"s */
    /* and an unknown event is refused */
    assert_false(lifecycle_allowed(JOB_QUEUED, JOB_NEVENTS));
    assert_false(lifecycle_allowed(-1, JOB_EV_CANCEL));
}

/* settle ends a blocked node in the end state it is given, and only in an end state. */
static void test_settle_states(void **unused)
{
    (void)unused;
    static const int ends[] = {JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED};
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
        struct job j;
        job_in(&j, JOB_BLOCKED);
        struct job_event_args a = {.now_ms = 7000, .settle = ends[i]};
        struct err e = ERR_INIT;
        assert_int_equal(lifecycle_apply(&j, JOB_EV_SETTLE, &a, &e), 0);
        assert_int_equal(j.state, ends[i]);
        assert_int_equal(j.finished_at, 7000);
        assert_string_equal(json_string_value(json_object_get(j.result, "reason")), "error");
        assert_null(json_object_get(j.result, "error"));
        job_release(&j);
    }
    static const int not_ends[] = {JOB_BLOCKED, JOB_QUEUED, JOB_RUNNING, -1, JOB_NSTATES};
    for (size_t i = 0; i < sizeof(not_ends) / sizeof(not_ends[0]); i++) {
        struct job j;
        job_in(&j, JOB_BLOCKED);
        struct job_event_args a = {.now_ms = 7000, .settle = not_ends[i]};
        struct err e = ERR_INIT;
        assert_int_equal(lifecycle_apply(&j, JOB_EV_SETTLE, &a, &e), ERR_CONFLICT);
        assert_int_equal(j.state, JOB_BLOCKED);
        assert_null(j.result);
        job_release(&j);
    }
}

static void test_repeated_start_changes_nothing(void **unused)
{
    (void)unused;
    struct job j;
    job_in(&j, JOB_RUNNING);
    int64_t started = j.started_at;
    assert_int_equal(apply(&j, JOB_EV_START, NULL, 9999), LIFECYCLE_SAME);
    assert_int_equal(j.started_at, started);
    job_release(&j);
}

static void test_progress_is_the_attempts(void **unused)
{
    (void)unused;
    struct job j;
    job_in(&j, JOB_RUNNING);
    assert_int_equal(apply(&j, JOB_EV_PROGRESS, NULL, 3000), 0);
    assert_int_equal(json_integer_value(json_object_get(j.progress, "percent")), 5);
    /* queued for its retry, it has no progress (its event says none), nor the next lease */
    struct attempt_end lost = {.reason = "lost", .duration_ms = -1};
    assert_int_equal(apply(&j, JOB_EV_LOST, &lost, 3100), 0);
    assert_int_equal(j.state, JOB_QUEUED);
    assert_null(j.progress);
    assert_int_equal(apply(&j, JOB_EV_LEASE, NULL, 9000), 0);
    assert_null(j.progress);
    /* a refused progress still takes its value (no leak) */
    job_release(&j);
    job_in(&j, JOB_QUEUED);
    assert_int_equal(apply(&j, JOB_EV_PROGRESS, NULL, 3000), ERR_CONFLICT);
    assert_null(j.progress);
    job_release(&j);
}

static void test_attempts_and_backoff(void **unused)
{
    (void)unused;
    struct job j;
    make_job(&j,
             "{\"timeout_s\": 10, \"retry\": {\"max_attempts\": 3, \"backoff_s\": 2, "
             "\"max_backoff_s\": 5}, \"command\": {\"program\": \"x\"}}",
             1000);
    assert_int_equal(j.state, JOB_QUEUED);
    assert_int_equal(apply(&j, JOB_EV_LEASE, NULL, 1500), 0);
    assert_int_equal(j.attempt, 1);
    assert_string_equal(j.agent, "w1");
    assert_int_equal(lease_deadline(j.timeout_s, 2000, 3000), 2000 + 10000 + 3000);
    assert_int_equal(lifecycle_backoff_ms(&j, 2), 2000);
    assert_int_equal(lifecycle_backoff_ms(&j, 3), 4000);
    assert_int_equal(lifecycle_backoff_ms(&j, 4), 5000); /* capped */

    /* a failure with attempts left: queued again after the backoff, no finish time */
    struct attempt_end fail = {
        .reason = "exit", .has_exit_code = true, .exit_code = 3, .duration_ms = 12};
    assert_int_equal(apply(&j, JOB_EV_FINISH, &fail, 5000), 0);
    assert_int_equal(j.state, JOB_QUEUED);
    assert_int_equal(j.run_after, 5000 + 2000);
    assert_null(j.agent);
    assert_int_equal(j.finished_at, 0);
    assert_int_equal(json_integer_value(json_object_get(j.result, "exit_code")), 3);
    assert_int_equal(json_array_size(j.attempts), 1);

    /* lost on the second attempt, then success on the third */
    assert_int_equal(apply(&j, JOB_EV_LEASE, NULL, 7000), 0);
    struct attempt_end lost = {.reason = "lost", .duration_ms = -1};
    assert_int_equal(apply(&j, JOB_EV_LOST, &lost, 9000), 0);
    assert_int_equal(j.state, JOB_QUEUED);
    assert_int_equal(j.run_after, 9000 + 4000);
    assert_int_equal(apply(&j, JOB_EV_LEASE, NULL, 13000), 0);
    assert_int_equal(j.attempt, 3);
    struct attempt_end ok = {.reason = "exit",
                             .has_exit_code = true,
                             .exit_code = 0,
                             .duration_ms = 5,
                             .stdout_head = "hi\n",
                             .stdout_len = 3};
    assert_int_equal(apply(&j, JOB_EV_FINISH, &ok, 14000), 0);
    assert_int_equal(j.state, JOB_SUCCEEDED);
    assert_int_equal(j.finished_at, 14000);
    assert_string_equal(json_string_value(json_object_get(j.result, "stdout")), "hi\n");
    assert_int_equal(json_array_size(j.attempts), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(j.attempts, 1), "reason")),
                        "lost");
    /* over: nothing more happens to it */
    assert_int_equal(apply(&j, JOB_EV_CANCEL, NULL, 15000), ERR_CONFLICT);
    job_release(&j);
}

static void test_attempts_run_out(void **unused)
{
    (void)unused;
    struct job j;
    make_job(&j, "{\"retry\": {\"max_attempts\": 1}, \"command\": {\"program\": \"x\"}}", 0);
    assert_int_equal(lease_deadline(j.timeout_s, 100, 3000), 0); /* no timeout, no deadline */
    assert_int_equal(apply(&j, JOB_EV_LEASE, NULL, 100), 0);
    struct attempt_end sig = {.reason = "signal", .signal = 9, .duration_ms = 1};
    assert_int_equal(apply(&j, JOB_EV_FINISH, &sig, 200), 0);
    assert_int_equal(j.state, JOB_FAILED);
    assert_int_equal(j.finished_at, 200);
    assert_int_equal(json_integer_value(json_object_get(j.result, "signal")), 9);
    assert_true(json_is_null(json_object_get(j.result, "exit_code")));
    job_release(&j);

    make_job(&j, "{\"command\": {\"program\": \"x\"}}", 0);
    assert_int_equal(apply(&j, JOB_EV_LEASE, NULL, 100), 0);
    struct attempt_end timeout = {.reason = "timeout", .duration_ms = 1};
    assert_int_equal(apply(&j, JOB_EV_DEADLINE, &timeout, 200), 0);
    assert_int_equal(j.state, JOB_QUEUED); /* a timeout is retried like any failure */
    assert_int_equal(apply(&j, JOB_EV_LEASE, NULL, 1300), 0);
    struct attempt_end cancel = {.reason = "cancelled", .duration_ms = 1};
    assert_int_equal(apply(&j, JOB_EV_FINISH, &cancel, 1400), 0);
    assert_int_equal(j.state, JOB_CANCELLED); /* a cancel is never retried */
    job_release(&j);
}

/* --- retry budgets (retry.on) ----------------------------------------------------------- */

/* Each way an attempt ends: its reason, the event that brings it, its budget's key. */
static const struct {
    const char *reason;
    enum job_event ev;
    const char *budget; /* retry.on key; NULL: never retried */
} ends[] = {
    {"exit", JOB_EV_FINISH, "exit_codes"}, {"signal", JOB_EV_FINISH, "signal"},
    {"timeout", JOB_EV_FINISH, "timeout"}, {"timeout", JOB_EV_DEADLINE, "timeout"},
    {"error", JOB_EV_FINISH, "error"},     {"oom", JOB_EV_FINISH, "oom"},
    {"lost", JOB_EV_LOST, "lost"},         {"cancelled", JOB_EV_FINISH, NULL},
};

/* Leases and ends j the same way until it is terminal; returns the retries (bounded). */
static int retries_until_end(struct job *j, size_t k, int exit_code)
{
    struct attempt_end end = {.reason = ends[k].reason,
                              .has_exit_code = !strcmp(ends[k].reason, "exit"),
                              .exit_code = exit_code,
                              .signal = !strcmp(ends[k].reason, "signal") ? 9 : 0,
                              .duration_ms = 1};
    int64_t now = 10000;
    for (int n = 0; n < 200; n++) {
        assert_int_equal(apply(j, JOB_EV_LEASE, NULL, now), 0);
        assert_int_equal(apply(j, ends[k].ev, &end, now + 10), 0);
        if (job_state_terminal(j->state)) return n;
        assert_int_equal(j->state, JOB_QUEUED);
        now = j->run_after;
    }
    fail_msg("%s: still retried after 200 attempts", ends[k].reason);
    return -1;
}

/* The retries used, from the job's record ("retries"), of class `name`. */
static json_int_t used(const struct job *j, const char *name)
{
    json_t *o = job_to_json(j);
    json_int_t n = json_integer_value(json_object_get(json_object_get(o, "retries"), name));
    json_decref(o);
    return n;
}

/* Every class with every kind of policy: none, its own budget, another's, capped by attempts. */
static void test_retry_budgets_pair_by_pair(void **unused)
{
    (void)unused;
    char spec[512];
    for (size_t k = 0; k < ARRAY_SIZE(ends); k++) {
        const char *b = ends[k].budget;
        bool never = !b;
        bool exit_end = b && !strcmp(b, "exit_codes");
        struct job j;

        /* no retry.on: every bad end retried while attempts remain (as before budgets) */
        make_job(&j, "{\"retry\": {\"max_attempts\": 4}, \"command\": {\"program\": \"x\"}}", 0);
        assert_int_equal(retries_until_end(&j, k, 3), never ? 0 : 3);
        assert_int_equal(j.state, never ? JOB_CANCELLED : JOB_FAILED);
        if (!never) assert_int_equal(used(&j, ends[k].reason), 3);
        job_release(&j);

        /* its own budget of 2 (exit: its code listed), attempts to spare */
        snprintf(spec, sizeof(spec),
                 "{\"retry\": {\"max_attempts\": %d, \"on\": {\"%s\": %s}}, "
                 "\"command\": {\"program\": \"x\"}}",
                 exit_end ? 3 : 10, b ? b : "error", exit_end ? "[5, 3]" : "2");
        make_job(&j, spec, 0);
        assert_int_equal(retries_until_end(&j, k, 3), never ? 0 : 2);
        if (!never) assert_int_equal(used(&j, ends[k].reason), 2);
        job_release(&j);

        /* only another class has a budget (exit: other codes listed): not retried, but for
         * lost, whose budget is 2 unless given */
        bool lost = !strcmp(ends[k].reason, "lost");
        snprintf(spec, sizeof(spec),
                 "{\"retry\": {\"max_attempts\": 10, \"on\": {\"%s\": %s}}, "
                 "\"command\": {\"program\": \"x\"}}",
                 exit_end                 ? "exit_codes"
                 : b && !strcmp(b, "oom") ? "timeout"
                                          : "oom",
                 exit_end ? "[1, 2, 4]" : "5");
        make_job(&j, spec, 0);
        assert_int_equal(retries_until_end(&j, k, 3), lost ? 2 : 0);
        assert_int_equal(j.state, never ? JOB_CANCELLED : JOB_FAILED);
        job_release(&j);

        /* a budget of 0 given: not retried */
        snprintf(spec, sizeof(spec),
                 "{\"retry\": {\"max_attempts\": 10, \"on\": {\"%s\": %s}}, "
                 "\"command\": {\"program\": \"x\"}}",
                 b ? b : "error", exit_end ? "[]" : "0");
        make_job(&j, spec, 0);
        assert_int_equal(retries_until_end(&j, k, 3), 0);
        job_release(&j);

        /* a budget above the attempts left: max_attempts still bounds it */
        snprintf(spec, sizeof(spec),
                 "{\"retry\": {\"max_attempts\": 3, \"on\": {\"%s\": %s}}, "
                 "\"command\": {\"program\": \"x\"}}",
                 b ? b : "error", exit_end ? "[3]" : "50");
        make_job(&j, spec, 0);
        assert_int_equal(retries_until_end(&j, k, 3), never ? 0 : 2);
        job_release(&j);
    }
}

/* Budgets are counted apart: a timeout's retries leave the oom budget whole, and back. */
static void test_retry_budgets_are_separate(void **unused)
{
    (void)unused;
    struct job j;
    make_job(&j,
             "{\"retry\": {\"max_attempts\": 10, \"backoff_s\": 0, \"on\": {\"timeout\": 1, "
             "\"oom\": 2, \"exit_codes\": [3]}}, \"command\": {\"program\": \"x\"}}",
             0);
    struct attempt_end timeout = {.reason = "timeout", .duration_ms = 1};
    struct attempt_end oom = {.reason = "oom", .signal = 9, .duration_ms = 1};
    struct attempt_end exit3 = {.reason = "exit", .has_exit_code = true, .exit_code = 3};
    struct attempt_end exit4 = {.reason = "exit", .has_exit_code = true, .exit_code = 4};
    const struct attempt_end *seq[] = {&oom, &timeout, &exit3, &oom, &exit3};
    for (size_t i = 0; i < ARRAY_SIZE(seq); i++) {
        assert_int_equal(apply(&j, JOB_EV_LEASE, NULL, 100 * (int64_t)i), 0);
        assert_int_equal(apply(&j, JOB_EV_FINISH, seq[i], 100 * (int64_t)i + 10), 0);
        assert_int_equal(j.state, JOB_QUEUED);
    }
    assert_int_equal(used(&j, "oom"), 2);
    assert_int_equal(used(&j, "timeout"), 1);
    assert_int_equal(used(&j, "exit"), 2);
    assert_int_equal(used(&j, "lost"), 0);
    /* the oom budget is spent: a third oom ends it */
    assert_int_equal(apply(&j, JOB_EV_LEASE, NULL, 1000), 0);
    assert_int_equal(apply(&j, JOB_EV_FINISH, &oom, 1010), 0);
    assert_int_equal(j.state, JOB_FAILED);
    assert_string_equal(json_string_value(json_object_get(j.result, "reason")), "oom");
    assert_int_equal(json_integer_value(json_object_get(j.result, "signal")), 9);
    assert_int_equal(used(&j, "oom"), 2); /* the last end was not retried */
    job_release(&j);

    /* an exit code not listed fails at once, the listed one is retried */
    make_job(&j, "{\"retry\": {\"on\": {\"exit_codes\": [3]}}, \"command\": {\"program\": \"x\"}}",
             0);
    assert_int_equal(apply(&j, JOB_EV_LEASE, NULL, 0), 0);
    assert_int_equal(apply(&j, JOB_EV_FINISH, &exit3, 10), 0);
    assert_int_equal(j.state, JOB_QUEUED);
    assert_int_equal(apply(&j, JOB_EV_LEASE, NULL, 5000), 0);
    assert_int_equal(apply(&j, JOB_EV_FINISH, &exit4, 5010), 0);
    assert_int_equal(j.state, JOB_FAILED);
    assert_int_equal(used(&j, "exit"), 1);
    job_release(&j);

    /* a retry granted, then the job cancelled while it waits for it: the retry was used */
    make_job(&j, "{\"retry\": {\"on\": {\"timeout\": 1}}, \"command\": {\"program\": \"x\"}}",
             0);
    assert_int_equal(apply(&j, JOB_EV_LEASE, NULL, 0), 0);
    assert_int_equal(apply(&j, JOB_EV_DEADLINE, &timeout, 10), 0);
    assert_int_equal(j.state, JOB_QUEUED);
    assert_int_equal(used(&j, "timeout"), 1);
    assert_int_equal(apply(&j, JOB_EV_CANCEL, NULL, 20), 0);
    assert_int_equal(used(&j, "timeout"), 1);
    job_release(&j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_pair),
        cmocka_unit_test(test_repeated_start_changes_nothing),
        cmocka_unit_test(test_settle_states),
        cmocka_unit_test(test_progress_is_the_attempts),
        cmocka_unit_test(test_attempts_and_backoff),
        cmocka_unit_test(test_attempts_run_out),
        cmocka_unit_test(test_retry_budgets_pair_by_pair),
        cmocka_unit_test(test_retry_budgets_are_separate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
