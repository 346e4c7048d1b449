/*
 * test_protocol.c - unit tests for job/protocol.c: every wire name of the agent
 * protocol's enums (report types, reasons, streams) parses back to its value,
 * names are distinct, and anything else is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "job/protocol.h"

struct table {
    const char *(*name)(int v);
    int (*parse)(const char *name);
    int count;
};

static const char *report_name(int v)
{
    return proto_report_name((enum proto_report)v);
}
static const char *reason_name(int v)
{
    return proto_reason_name((enum proto_reason)v);
}
static const char *stream_name(int v)
{
    return proto_stream_name((enum proto_stream)v);
}

static const struct table reports = {report_name, proto_report_parse, PROTO_REPORT_COUNT};
static const struct table reasons = {reason_name, proto_reason_parse, PROTO_REASON_COUNT};
static const struct table streams = {stream_name, proto_stream_parse, PROTO_STREAM_COUNT};

/* Every value has a name of its own that parses back to it; out of range is "unknown". */
static void check_round_trip(const struct table *t)
{
    for (int v = 0; v < t->count; v++) {
        const char *n = t->name(v);
        assert_non_null(n);
        assert_string_not_equal(n, "unknown");
        assert_int_equal(t->parse(n), v);
        for (int w = 0; w < v; w++)
            assert_string_not_equal(t->name(w), n);
    }
    assert_string_equal(t->name(-1), "unknown");
    assert_string_equal(t->name(t->count), "unknown");
}

/* Names that are not the table's: absent, empty, other case, prefixes, suffixes, others'. */
static void check_refused(const struct table *t, const char *const *others)
{
    assert_int_equal(t->parse(NULL), -1);
    assert_int_equal(t->parse(""), -1);
    assert_int_equal(t->parse("unknown"), -1);
    for (int v = 0; v < t->count; v++) {
        const char *n = t->name(v);
        char s[64];
        size_t len = strlen(n);
        assert_true(len + 2 < sizeof(s));
        memcpy(s, n, len + 1);
        s[0] = (char)(s[0] - 'a' + 'A'); /* "Exit" */
        assert_int_equal(t->parse(s), -1);
        memcpy(s, n, len - 1); /* "exi" */
        s[len - 1] = '\0';
        assert_int_equal(t->parse(s), -1);
        memcpy(s, n, len); /* "exit " */
        memcpy(s + len, " ", 2);
        assert_int_equal(t->parse(s), -1);
    }
    for (size_t i = 0; others[i]; i++)
        assert_int_equal(t->parse(others[i]), -1);
}

/* The wire names as docs/protocol.md writes them: a change here is a protocol change. */
static void test_reports(void **state)
{
    (void)state;
    check_round_trip(&reports);
    assert_int_equal(PROTO_REPORT_COUNT, 5);
    assert_int_equal(proto_report_parse("started"), PROTO_REPORT_STARTED);
    assert_int_equal(proto_report_parse("log"), PROTO_REPORT_LOG);
    assert_int_equal(proto_report_parse("progress"), PROTO_REPORT_PROGRESS);
    assert_int_equal(proto_report_parse("finished"), PROTO_REPORT_FINISHED);
    assert_int_equal(proto_report_parse("released"), PROTO_REPORT_RELEASED);
    static const char *const others[] = {"exit", "stdout", "lease", "run", NULL};
    check_refused(&reports, others);
}

static void test_reasons(void **state)
{
    (void)state;
    check_round_trip(&reasons);
    assert_int_equal(PROTO_REASON_COUNT, 7);
    assert_int_equal(proto_reason_parse("exit"), PROTO_REASON_EXIT);
    assert_int_equal(proto_reason_parse("signal"), PROTO_REASON_SIGNAL);
    assert_int_equal(proto_reason_parse("timeout"), PROTO_REASON_TIMEOUT);
    assert_int_equal(proto_reason_parse("cancelled"), PROTO_REASON_CANCELLED);
    assert_int_equal(proto_reason_parse("error"), PROTO_REASON_ERROR);
    assert_int_equal(proto_reason_parse("oom"), PROTO_REASON_OOM);
    assert_int_equal(proto_reason_parse("lost"), PROTO_REASON_LOST);
    static const char *const others[] = {"canceled", "finished", "stderr", NULL};
    check_refused(&reasons, others);
}

/* An agent sends every reason but lost, which the server alone writes. */
static void test_agent_reasons(void **state)
{
    (void)state;
    for (int r = 0; r < PROTO_REASON_COUNT; r++)
        assert_int_equal(proto_reason_from_agent(r), r != PROTO_REASON_LOST);
    assert_false(proto_reason_from_agent(-1));
    assert_false(proto_reason_from_agent(PROTO_REASON_COUNT));
    assert_int_equal(PROTO_AGENT_REASONS, 6);
}

static void test_runtimes(void **state)
{
    (void)state;
    static const char *const names[] = {"native", "bwrap", "podman", "docker"};
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(proto_runtime_parse(names[i]), 1u << i);
        assert_string_equal(proto_runtime_name(1u << i), names[i]);
    }
    assert_int_equal(PROTO_RT_ALL, 15);
    assert_int_equal(proto_runtime_parse("kvm"), 0);
    assert_int_equal(proto_runtime_parse(NULL), 0);
    assert_string_equal(proto_runtime_name(PROTO_RT_CONTAINER), "unknown");
}

static void test_streams(void **state)
{
    (void)state;
    check_round_trip(&streams);
    assert_int_equal(PROTO_STREAM_COUNT, 2);
    /* the store numbers streams this way (store.h) */
    assert_int_equal(proto_stream_parse("stdout"), 0);
    assert_int_equal(proto_stream_parse("stderr"), 1);
    static const char *const others[] = {"stdin", "log", NULL};
    check_refused(&streams, others);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reports),
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_agent_reasons),
        cmocka_unit_test(test_runtimes),
        cmocka_unit_test(test_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
