/*
 * test_spec.c - unit tests for job/spec.c: normalisation of valid specs, the
 * field path and code of every kind of invalid one, URI and queue-name rules.
 * Every test releases what it parses, so the suite also checks for leaks when
 * run under valgrind or built with SANITIZE=ON.
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

#include "common/buf.h"
#include "job/protocol.h"
#include "job/spec.h"

static const char seed_spec[] =
    "{"
    "  \"queue\": \"default\", \"service\": \"nhmmer\", \"name\": \"optional human name\","
    "  \"priority\": 0, \"requires\": {\"db\": \"rfam\"}, \"slots\": 1, \"delay_s\": 0,"
    "  \"timeout_s\": 600,"
    "  \"retry\": {\"max_attempts\": 3, \"backoff_s\": 1, \"max_backoff_s\": 300},"
    "  \"key\": \"optional idempotency key\", \"labels\": {\"project\": \"x\"},"
    "  \"notify_url\": \"https://example.org/hook\","
    "  \"command\": {"
    "    \"program\": \"nhmmer\","
    "    \"arguments\": ["
    "      {\"type\": \"parameter\", \"name\": \"--cpu\", \"value\": \"2\"},"
    "      {\"type\": \"input\", \"name\": \"--infile\","
    "       \"value\": \"s3://bucket/path/to/input.txt\"},"
    "      {\"type\": \"output\", \"name\": \"--outfile\","
    "       \"value\": \"s3://bucket/path/to/output.txt\"},"
    "      {\"type\": \"parameter\", \"value\": \"positional\"}"
    "    ],"
    "    \"stdin\":  {\"type\": \"pipe\", \"value\": \"raw input data\"},"
    "    \"stdout\": {\"type\": \"pipe\", \"value\": null},"
    "    \"stderr\": {\"type\": \"uri\",  \"value\": \"s3://bucket/path/to/stderr.txt\"},"
    "    \"env\": {\"OMP_NUM_THREADS\": \"2\"},"
    "    \"input\":  [\"s3://bucket/path/to/poly\"],"
    "    \"output\": [\"s3://bucket/path/to/some/output\"]"
    "  }"
    "}";

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!j)
        fail_msg("bad test json (%s): %s", jerr.text, text);
    return j;
}

/* Parses text that must be valid; the caller releases *s. */
/* Parses text into *s, its defaults then written in (spec_expand) for the checks to read;
   test_defaults checks what spec_parse leaves out. */
static void parse_ok(const char *text, struct job_spec *s)
{
    json_t *in = load(text);
    struct err e = ERR_INIT;
    int rc = spec_parse(in, NULL, s, &e);
    if (rc)
        fail_msg("spec_parse failed: %s (field %s) for %s", e.msg, e.field, text);
    spec_views(s, spec_expand(s->json));
    json_decref(in);
}

#define SHA64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SHA64_UPPER "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"

static json_t *cmd(const struct job_spec *s, const char *key)
{
    return json_object_get(json_object_get(s->json, "command"), key);
}

static json_t *arg(const struct job_spec *s, size_t i, const char *key)
{
    return json_object_get(json_array_get(cmd(s, "arguments"), i), key);
}

static void test_seed_spec(void **state)
{
    (void)state;
    json_t *in = load(seed_spec);
    json_t *copy = json_deep_copy(in);
    struct job_spec s;
    struct err e = ERR_INIT;

    assert_int_equal(spec_parse(in, NULL, &s, &e), 0);
    assert_true(json_equal(in, copy)); /* not modified */
    assert_int_equal(in->refcount, 1); /* not stolen or shared */
    json_decref(copy);
    json_decref(in); /* the output must not depend on the input */
    spec_views(&s, spec_expand(s.json));

    assert_string_equal(s.queue, "default");
    assert_string_equal(s.service, "nhmmer");
    assert_string_equal(s.name, "optional human name");
    assert_string_equal(s.key, "optional idempotency key");
    assert_int_equal(s.priority, 0);
    assert_int_equal(s.slots, 1);
    assert_int_equal(s.max_attempts, 3);
    assert_true(s.timeout_s == 600.0);
    assert_true(s.backoff_s == 1.0 && s.max_backoff_s == 300.0);
    assert_false(s.test);

    json_t *requires = json_object_get(s.json, "requires");
    assert_string_equal(json_string_value(json_object_get(requires, "db")), "rfam");
    assert_string_equal(json_string_value(cmd(&s, "program")), "nhmmer");
    assert_true(json_is_null(cmd(&s, "shell")));
    assert_int_equal(json_array_size(cmd(&s, "arguments")), 4);
    assert_string_equal(json_string_value(arg(&s, 0, "name")), "--cpu");
    assert_string_equal(json_string_value(arg(&s, 0, "value")), "2");
    assert_string_equal(json_string_value(arg(&s, 1, "type")), "input");
    assert_true(json_is_null(arg(&s, 3, "name")));
    assert_string_equal(json_string_value(arg(&s, 3, "value")), "positional");
    assert_string_equal(json_string_value(json_object_get(cmd(&s, "stdin"), "value")),
                        "raw input data");
    assert_true(json_is_null(json_object_get(cmd(&s, "stdout"), "value")));
    assert_string_equal(json_string_value(json_object_get(cmd(&s, "stderr"), "type")), "uri");
    assert_string_equal(json_string_value(json_object_get(cmd(&s, "env"), "OMP_NUM_THREADS")), "2");
    assert_int_equal(json_array_size(cmd(&s, "input")), 1);
    assert_int_equal(json_array_size(cmd(&s, "output")), 1);
    assert_true(json_is_false(json_object_get(s.json, "test")));
    spec_release(&s);
}

static void test_defaults(void **state)
{
    (void)state;
    struct job_spec s;
    struct err e = ERR_INIT;
    json_t *in = load("{\"command\": {\"program\": \"true\"}, \"retry\": {\"backoff_s\": 5}}");
    /* what spec_parse leaves out reads as its default: the views, spec_get */
    assert_int_equal(spec_parse(in, NULL, &s, &e), 0);
    json_decref(in);
    json_t *want = load("{\"retry\": {\"backoff_s\": 5}, \"command\": {\"program\": \"true\"}}");
    assert_true(json_equal(s.json, want));
    json_decref(want);
    assert_string_equal(s.queue, "default");
    assert_int_equal(s.slots, 1);
    assert_int_equal(s.max_attempts, 3);
    assert_true(s.backoff_s == 5.0 && s.max_backoff_s == 300.0);
    assert_int_equal(json_integer_value(spec_get(s.json, "retry.on.lost")), 2);
    assert_true(json_is_null(spec_get(s.json, "retry.on")));
    assert_string_equal(json_string_value(spec_get(s.json, "command.stdout.type")), "pipe");
    assert_string_equal(json_string_value(spec_get(s.json, "notify")), "end");
    assert_null(spec_get(s.json, "no_such_field"));
    assert_null(spec_get(s.json, "command.no_such_field"));
    assert_null(spec_get(s.json, "queue.deeper"));
    spec_release(&s);

    parse_ok("{\"command\": {\"program\": \"true\"}}", &s);
    want = load("{\"queue\": \"default\", \"service\": null, \"name\": null,"
                        " \"priority\": 0, \"requires\": {}, \"slots\": 1, \"delay_s\": 0,"
                        " \"timeout_s\": null,"
                        " \"retry\": {\"max_attempts\": 3, \"backoff_s\": 1,"
                        "             \"max_backoff_s\": 300, \"on\": null},"
                        " \"resources\": {\"memory_mb\": null, \"cpus\": null,"
                        "                 \"pids\": null},"
                        " \"key\": null, \"labels\": {}, \"notify_url\": null, \"notify\": \"end\","
                        " \"retention_s\": null, \"test\": false,"
                        " \"command\": {\"program\": \"true\", \"shell\": null, \"image\": null,"
                        "   \"sandbox\": false, \"network\": null, \"arguments\": [],"
                        "   \"stdin\": {\"type\": \"pipe\", \"value\": null},"
                        "   \"stdout\": {\"type\": \"pipe\", \"value\": null},"
                        "   \"stderr\": {\"type\": \"pipe\", \"value\": null},"
                        "   \"env\": {}, \"input\": [], \"output\": []}}");
    assert_true(json_equal(s.json, want));
    json_decref(want);

    /* The output keeps the documented key order. (json_dumpb: under UNIT_TESTING cmocka
     * replaces free() in this file, so nothing jansson allocates is freed here.) */
    char text[2048];
    size_t n = json_dumpb(s.json, text, sizeof(text) - 1, JSON_COMPACT);
    assert_true(n > 0 && n < sizeof(text));
    text[n] = '\0';
    assert_non_null(strstr(text, "{\"queue\":\"default\",\"service\":null,\"name\":null,"));

    assert_string_equal(s.queue, "default");
    assert_null(s.service);
    assert_null(s.name);
    assert_null(s.key);
    assert_true(s.timeout_s == 0.0 && s.delay_s == 0.0);
    assert_int_equal(s.max_attempts, 3);
    spec_release(&s);
    assert_null(s.json);
    assert_null(s.queue);
    spec_release(&s); /* twice is harmless */
}

static void test_runtimes(void **state)
{
    (void)state;
    struct job_spec s;
    parse_ok("{\"command\": {\"program\": \"true\"}}", &s);
    assert_int_equal(spec_runtimes(s.json), PROTO_RT_NATIVE | PROTO_RT_BWRAP);
    spec_release(&s);
    parse_ok("{\"command\": {\"program\": \"true\", \"sandbox\": true, \"network\": true}}",
             &s);
    assert_true(json_is_true(cmd(&s, "sandbox")) && json_is_true(cmd(&s, "network")));
    assert_int_equal(spec_runtimes(s.json), PROTO_RT_BWRAP);
    spec_release(&s);
    parse_ok("{\"command\": {\"program\": \"sh\", \"image\": "
             "\"127.0.0.1:5000/lib/busybox:1.36@sha256:abc\"}}",
             &s);
    assert_string_equal(json_string_value(cmd(&s, "image")),
                        "127.0.0.1:5000/lib/busybox:1.36@sha256:abc");
    assert_int_equal(spec_runtimes(s.json), PROTO_RT_PODMAN | PROTO_RT_DOCKER);
    spec_release(&s);
    /* a test probe without a command: any agent */
    parse_ok("{\"test\": true}", &s);
    assert_int_equal(spec_runtimes(s.json), PROTO_RT_NATIVE | PROTO_RT_BWRAP);
    spec_release(&s);
    assert_int_equal(spec_runtimes(NULL), PROTO_RT_NATIVE | PROTO_RT_BWRAP);
}

/* resources and retry.on: every key filled in, the values kept as given. */
static void test_resources_and_retry_on(void **state)
{
    (void)state;
    struct job_spec s;
    parse_ok("{\"command\": {\"program\": \"p\"}, \"resources\": {\"memory_mb\": 64.0,"
             " \"cpus\": 0.5}, \"retry\": {\"max_attempts\": 5,"
             " \"on\": {\"exit_codes\": [3, 4.0], \"timeout\": 2}}}",
             &s);
    json_t *want = load("{\"memory_mb\": 64, \"cpus\": 0.5, \"pids\": null}");
    assert_true(json_equal(json_object_get(s.json, "resources"), want));
    json_decref(want);
    want = load("{\"exit_codes\": [3, 4], \"signal\": 0, \"timeout\": 2, \"lost\": 2,"
                " \"oom\": 0, \"error\": 0}");
    assert_true(json_equal(json_object_get(json_object_get(s.json, "retry"), "on"), want));
    json_decref(want);
    struct spec_resources r;
    spec_resources_get(s.json, &r);
    assert_int_equal(r.memory_mb, 64);
    assert_true(r.cpus == 0.5);
    assert_int_equal(r.pids, 0);
    assert_true(spec_resources_any(&r));
    spec_release(&s);

    parse_ok("{\"command\": {\"program\": \"p\"}, \"resources\": {\"pids\": 32},"
             " \"retry\": {\"on\": {}}}",
             &s);
    spec_resources_get(s.json, &r);
    assert_int_equal(r.pids, 32);
    assert_int_equal(r.memory_mb, 0);
    assert_true(r.cpus == 0);
    /* an empty retry.on retries nothing but a lost agent (twice): every other budget 0 */
    json_t *want_on = load("{\"exit_codes\": [], \"signal\": 0, \"timeout\": 0, \"lost\": 2,"
                           " \"oom\": 0, \"error\": 0}");
    assert_true(json_equal(json_object_get(json_object_get(s.json, "retry"), "on"), want_on));
    json_decref(want_on);
    spec_release(&s);

    parse_ok("{\"command\": {\"program\": \"p\"}, \"resources\": null}", &s);
    spec_resources_get(s.json, &r);
    assert_false(spec_resources_any(&r));
    spec_release(&s);
}

static void test_nulls_are_absent(void **state)
{
    (void)state;
    struct job_spec s;
    parse_ok("{\"queue\": null, \"priority\": null, \"retry\": null, \"labels\": null,"
             " \"command\": {\"program\": \"p\", \"stdin\": null, \"env\": null}}",
             &s);
    assert_string_equal(s.queue, "default");
    assert_int_equal(s.priority, 0);
    assert_int_equal(s.max_attempts, 3);
    assert_int_equal(json_object_size(json_object_get(s.json, "labels")), 0);
    assert_string_equal(json_string_value(json_object_get(cmd(&s, "stdin"), "type")), "pipe");
    spec_release(&s);
}

static void test_argv_shorthand(void **state)
{
    (void)state;
    struct job_spec s;
    parse_ok("{\"command\": {\"program\": \"ls\", \"argv\": [\"-l\", \"/tmp\", 3]}}", &s);
    json_t *want = load("[{\"type\": \"parameter\", \"name\": null, \"value\": \"-l\"},"
                        " {\"type\": \"parameter\", \"name\": null, \"value\": \"/tmp\"},"
                        " {\"type\": \"parameter\", \"name\": null, \"value\": \"3\"}]");
    assert_true(json_equal(cmd(&s, "arguments"), want));
    assert_null(cmd(&s, "argv"));
    json_decref(want);
    spec_release(&s);

    /* without program, argv is the whole vector: argv[0] is the program (exec, Docker) */
    parse_ok("{\"command\": {\"argv\": [\"ls\", \"-l\", 3]}}", &s);
    assert_string_equal(json_string_value(cmd(&s, "program")), "ls");
    want = load("[{\"type\": \"parameter\", \"name\": null, \"value\": \"-l\"},"
                " {\"type\": \"parameter\", \"name\": null, \"value\": \"3\"}]");
    assert_true(json_equal(cmd(&s, "arguments"), want));
    json_decref(want);
    spec_release(&s);
    parse_ok("{\"command\": {\"argv\": [\"true\"]}}", &s);
    assert_string_equal(json_string_value(cmd(&s, "program")), "true");
    assert_int_equal(json_array_size(cmd(&s, "arguments")), 0);
    spec_release(&s);
    /* a service is the program: argv stays its parameters */
    parse_ok("{\"service\": \"nhmmer\", \"command\": {\"argv\": [\"--cpu\", \"2\"]}}", &s);
    assert_string_equal(json_string_value(cmd(&s, "program")), "nhmmer");
    assert_int_equal(json_array_size(cmd(&s, "arguments")), 2);
    spec_release(&s);
}

static void test_number_parameters(void **state)
{
    (void)state;
    static const struct {
        const char *value, *want;
    } cases[] = {
        {"2", "2"},         {"-7", "-7"},   {"0", "0"},          {"1.5", "1.5"},
        {"2.0", "2"},       {"0.1", "0.1"}, {"1e300", "1e+300"}, {"true", "true"},
        {"false", "false"}, {"\"x\"", "x"}, {"\"\"", ""},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct buf b = BUF_INIT;
        struct job_spec s;
        buf_addf(&b,
                 "{\"command\": {\"program\": \"p\", \"arguments\": "
                 "[{\"type\": \"parameter\", \"name\": \"-n\", \"value\": %s}]}}",
                 cases[i].value);
        parse_ok(b.data, &s);
        assert_string_equal(json_string_value(arg(&s, 0, "value")), cases[i].want);
        assert_string_equal(json_string_value(arg(&s, 0, "name")), "-n");
        spec_release(&s);
        buf_release(&b);
    }
}

static void test_shell_and_test(void **state)
{
    (void)state;
    struct job_spec s;
    parse_ok("{\"command\": {\"shell\": \"echo hi | wc -c\"}}", &s);
    assert_true(json_is_null(cmd(&s, "program")));
    assert_string_equal(json_string_value(cmd(&s, "shell")), "echo hi | wc -c");
    assert_int_equal(json_array_size(cmd(&s, "arguments")), 0);
    spec_release(&s);

    parse_ok("{\"queue\": \"gpu.a100\", \"test\": true}", &s);
    assert_true(s.test);
    assert_string_equal(s.queue, "gpu.a100");
    assert_true(json_is_null(json_object_get(s.json, "command")));
    spec_release(&s);
}

/* Issue 13.1: a spec naming a service needs no command.program: the service is the program. */
static void test_service_is_the_program(void **state)
{
    (void)state;
    struct job_spec s;
    parse_ok("{\"service\": \"nhmmer\", \"queue\": \"bio\", \"command\": {\"arguments\": "
             "[{\"type\": \"parameter\", \"name\": \"--cpu\", \"value\": 2}]}}",
             &s);
    assert_string_equal(s.service, "nhmmer");
    assert_string_equal(json_string_value(cmd(&s, "program")), "nhmmer");
    assert_string_equal(json_string_value(arg(&s, 0, "value")), "2");
    spec_release(&s);

    /* The command may be left out altogether. */
    parse_ok("{\"service\": \"blastn\"}", &s);
    assert_string_equal(json_string_value(cmd(&s, "program")), "blastn");
    assert_int_equal(json_array_size(cmd(&s, "arguments")), 0);
    spec_release(&s);

    /* A program given explicitly wins over the service name. */
    parse_ok("{\"service\": \"nhmmer\", \"command\": {\"program\": \"/opt/hmmer/nhmmer\"}}", &s);
    assert_string_equal(json_string_value(cmd(&s, "program")), "/opt/hmmer/nhmmer");
    spec_release(&s);

    /* A shell command stays a shell command: no program is made up for it. */
    parse_ok("{\"service\": \"x\", \"command\": {\"shell\": \"echo hi\"}}", &s);
    assert_true(json_is_null(cmd(&s, "program")));
    spec_release(&s);

    /* Neither a service nor a program: refused, naming command.program. */
    json_t *in = load("{\"command\": {\"arguments\": []}}");
    struct err e = ERR_INIT;
    assert_int_equal(spec_parse(in, NULL, &s, &e), ERR_INVALID);
    assert_string_equal(e.field, "command.program");
    json_decref(in);
    in = load("{\"queue\": \"q\"}");
    err_clear(&e);
    assert_int_equal(spec_parse(in, NULL, &s, &e), ERR_INVALID);
    assert_string_equal(e.field, "command");
    json_decref(in);
}

static void test_numbers(void **state)
{
    (void)state;
    struct job_spec s;
    /* Whole floats are integers; backoff_s above the default maximum lifts the maximum. */
    parse_ok("{\"priority\": -1000.0, \"slots\": 1024, \"delay_s\": 0.5, \"timeout_s\": 2592000,"
             " \"retry\": {\"backoff_s\": 600}, \"command\": {\"program\": \"p\"}}",
             &s);
    assert_int_equal(s.priority, -1000);
    assert_true(json_is_integer(json_object_get(s.json, "priority")));
    assert_int_equal(s.slots, 1024);
    assert_true(s.delay_s == 0.5);
    assert_true(s.timeout_s == 2592000.0);
    assert_true(s.backoff_s == 600.0 && s.max_backoff_s == 600.0);
    spec_release(&s);
}

static void test_stdin_pipe_limit(void **state)
{
    (void)state;
    size_t n = SPEC_MAX_STRING + 10; /* above the string limit, allowed for stdin */
    char *data = malloc(n + 1);
    memset(data, 'a', n);
    data[n] = '\0';
    json_t *in = json_pack("{s:{s:s, s:{s:s, s:s}}}", "command", "program", "p", "stdin", "type",
                           "pipe", "value", data);
    struct job_spec s;
    struct err e = ERR_INIT;
    assert_int_equal(spec_parse(in, NULL, &s, &e), 0);
    spec_release(&s);
    json_decref(in);

    /* The same string as a parameter is refused. */
    in = json_pack("{s:{s:s, s:[s]}}", "command", "program", "p", "argv", data);
    assert_int_equal(spec_parse(in, NULL, &s, &e), ERR_INVALID);
    assert_string_equal(e.field, "command.argv[0]");
    json_decref(in);
    free(data);
}

/* Each spec is invalid, and the error names exactly this field. */
static const struct {
    const char *spec, *field;
} bad[] = {
    /* types and ranges at the top */
    {"[]", ""},
    {"{\"prioirty\": 1, \"command\": {\"program\": \"p\"}}", "prioirty"},
    {"{\"queue\": \"Default\", \"test\": true}", "queue"},
    {"{\"queue\": \"\", \"test\": true}", "queue"},
    {"{\"queue\": \"a b\", \"test\": true}", "queue"},
    {"{\"queue\": 7, \"test\": true}", "queue"},
    {"{\"queue\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
     " \"test\": true}",
     "queue"},
    {"{\"service\": \"\", \"test\": true}", "service"},
    {"{\"service\": \"a\\nb\", \"test\": true}", "service"},
    {"{\"name\": 3, \"test\": true}", "name"},
    {"{\"priority\": 1.5, \"test\": true}", "priority"},
    {"{\"priority\": true, \"test\": true}", "priority"},
    {"{\"priority\": 1001, \"test\": true}", "priority"},
    {"{\"priority\": \"1\", \"test\": true}", "priority"},
    {"{\"slots\": 0, \"test\": true}", "slots"},
    {"{\"slots\": 1025, \"test\": true}", "slots"},
    {"{\"delay_s\": -1, \"test\": true}", "delay_s"},
    {"{\"delay_s\": 31536001, \"test\": true}", "delay_s"},
    {"{\"timeout_s\": 0, \"test\": true}", "timeout_s"},
    {"{\"timeout_s\": 2592001, \"test\": true}", "timeout_s"},
    {"{\"retention_s\": 0, \"test\": true}", "retention_s"},
    {"{\"retention_s\": 315360001, \"test\": true}", "retention_s"},
    {"{\"retention_s\": 1.5, \"test\": true}", "retention_s"},
    {"{\"retention_s\": \"7d\", \"test\": true}", "retention_s"},
    {"{\"retry\": 3, \"test\": true}", "retry"},
    {"{\"retry\": {\"max_attempts\": 0}, \"test\": true}", "retry.max_attempts"},
    {"{\"retry\": {\"max_attempts\": 101}, \"test\": true}", "retry.max_attempts"},
    {"{\"retry\": {\"backoff_s\": -1}, \"test\": true}", "retry.backoff_s"},
    {"{\"retry\": {\"backoff_s\": 10, \"max_backoff_s\": 5}, \"test\": true}",
     "retry.max_backoff_s"},
    {"{\"retry\": {\"attempts\": 2}, \"test\": true}", "retry.attempts"},
    {"{\"retry\": {\"on\": 3}, \"test\": true}", "retry.on"},
    {"{\"retry\": {\"on\": [\"timeout\"]}, \"test\": true}", "retry.on"},
    {"{\"retry\": {\"on\": {\"timeouts\": 1}}, \"test\": true}", "retry.on.timeouts"},
    {"{\"retry\": {\"on\": {\"exit\": 1}}, \"test\": true}", "retry.on.exit"},
    {"{\"retry\": {\"on\": {\"timeout\": -1}}, \"test\": true}", "retry.on.timeout"},
    {"{\"retry\": {\"on\": {\"lost\": 101}}, \"test\": true}", "retry.on.lost"},
    {"{\"retry\": {\"on\": {\"oom\": 1.5}}, \"test\": true}", "retry.on.oom"},
    {"{\"retry\": {\"on\": {\"error\": \"2\"}}, \"test\": true}", "retry.on.error"},
    {"{\"retry\": {\"on\": {\"signal\": true}}, \"test\": true}", "retry.on.signal"},
    {"{\"retry\": {\"on\": {\"exit_codes\": 3}}, \"test\": true}", "retry.on.exit_codes"},
    {"{\"retry\": {\"on\": {\"exit_codes\": [3, 0]}}, \"test\": true}", "retry.on.exit_codes[1]"},
    {"{\"retry\": {\"on\": {\"exit_codes\": [256]}}, \"test\": true}", "retry.on.exit_codes[0]"},
    {"{\"retry\": {\"on\": {\"exit_codes\": [\"3\"]}}, \"test\": true}", "retry.on.exit_codes[0]"},
    {"{\"resources\": 512, \"test\": true}", "resources"},
    {"{\"resources\": {\"memory\": 512}, \"test\": true}", "resources.memory"},
    {"{\"resources\": {\"memory_mb\": 0}, \"test\": true}", "resources.memory_mb"},
    {"{\"resources\": {\"memory_mb\": 3}, \"test\": true}", "resources.memory_mb"},
    {"{\"resources\": {\"memory_mb\": 4194305}, \"test\": true}", "resources.memory_mb"},
    {"{\"resources\": {\"memory_mb\": 64.5}, \"test\": true}", "resources.memory_mb"},
    {"{\"resources\": {\"memory_mb\": \"64\"}, \"test\": true}", "resources.memory_mb"},
    {"{\"resources\": {\"cpus\": 0}, \"test\": true}", "resources.cpus"},
    {"{\"resources\": {\"cpus\": 0.001}, \"test\": true}", "resources.cpus"},
    {"{\"resources\": {\"cpus\": 1025}, \"test\": true}", "resources.cpus"},
    {"{\"resources\": {\"cpus\": \"2\"}, \"test\": true}", "resources.cpus"},
    {"{\"resources\": {\"pids\": 0}, \"test\": true}", "resources.pids"},
    {"{\"resources\": {\"pids\": -5}, \"test\": true}", "resources.pids"},
    {"{\"resources\": {\"pids\": 4194305}, \"test\": true}", "resources.pids"},
    {"{\"resources\": {\"pids\": 2.5}, \"test\": true}", "resources.pids"},
    {"{\"key\": \"\", \"test\": true}", "key"},
    {"{\"labels\": [], \"test\": true}", "labels"},
    {"{\"labels\": {\"a b\": \"x\"}, \"test\": true}", "labels.a b"},
    {"{\"labels\": {\"a\": 1}, \"test\": true}", "labels.a"},
    {"{\"requires\": {\"db\": null}, \"test\": true}", "requires.db"},
    {"{\"notify_url\": \"ftp://x/y\", \"test\": true}", "notify_url"},
    {"{\"notify_url\": \"https://\", \"test\": true}", "notify_url"},
    {"{\"test\": 1}", "test"},
    {"{\"test\": false}", "command"},
    {"{}", "command"},
    {"{\"command\": []}", "command"},
    /* command */
    {"{\"command\": {\"program\": \"p\", \"programme\": \"q\"}}", "command.programme"},
    {"{\"command\": {}}", "command.program"},
    {"{\"command\": {\"argv\": []}}", "command.argv"},
    {"{\"command\": {\"argv\": [\"\"]}}", "command.argv[0]"},
    {"{\"command\": {\"argv\": [\"a\\u0001\"]}}", "command.argv[0]"},
    {"{\"command\": {\"program\": \"p\", \"image\": \"-alpine\"}}", "command.image"},
    {"{\"command\": {\"program\": \"p\", \"image\": \"alp ine\"}}", "command.image"},
    {"{\"command\": {\"program\": \"p\", \"image\": \"\"}}", "command.image"},
    {"{\"command\": {\"program\": \"p\", \"image\": \"a\", \"sandbox\": true}}",
     "command.sandbox"},
    {"{\"command\": {\"program\": \"p\", \"sandbox\": \"yes\"}}", "command.sandbox"},
    {"{\"command\": {\"program\": \"p\", \"sandbox\": 1}}", "command.sandbox"},
    {"{\"command\": {\"program\": \"p\", \"network\": \"on\"}}", "command.network"},
    {"{\"command\": {}}", "command.program"},
    {"{\"command\": {\"program\": \"\"}}", "command.program"},
    {"{\"command\": {\"program\": \"a\\tb\"}}", "command.program"},
    {"{\"command\": {\"program\": \"p\", \"shell\": \"echo\"}}", "command.shell"},
    {"{\"command\": {\"shell\": \"echo\", \"argv\": [\"x\"]}}", "command.shell"},
    {"{\"command\": {\"shell\": \"\"}}", "command.shell"},
    {"{\"command\": {\"program\": \"p\", \"argv\": [], \"arguments\": []}}", "command.argv"},
    {"{\"command\": {\"program\": \"p\", \"argv\": \"-l\"}}", "command.argv"},
    {"{\"command\": {\"program\": \"p\", \"argv\": [\"a\", null]}}", "command.argv[1]"},
    {"{\"command\": {\"program\": \"p\", \"image\": 1}}", "command.image"},
    /* arguments */
    {"{\"command\": {\"program\": \"p\", \"arguments\": {}}}", "command.arguments"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [\"x\"]}}", "command.arguments[0]"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": ["
     " {\"type\": \"parameter\", \"value\": \"a\"}, {\"type\": \"parameter\", \"value\": \"b\"},"
     " {\"type\": \"flag\", \"value\": \"c\"}]}}",
     "command.arguments[2].type"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"value\": \"a\"}]}}",
     "command.arguments[0].type"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"parameter\","
     " \"value\": \"a\", \"kind\": 1}]}}",
     "command.arguments[0].kind"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"parameter\"}]}}",
     "command.arguments[0].value"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"parameter\","
     " \"value\": [1]}]}}",
     "command.arguments[0].value"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"parameter\", \"name\": \"\","
     " \"value\": \"a\"}]}}",
     "command.arguments[0].name"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"input\"}]}}",
     "command.arguments[0].value"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"input\","
     " \"value\": \"s3://b/../etc\"}]}}",
     "command.arguments[0].value"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"input\","
     " \"value\": \"s3://bucket//x\"}]}}",
     "command.arguments[0].value"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"input\","
     " \"value\": \"/abs\"}]}}",
     "command.arguments[0].value"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"input\","
     " \"value\": \"s3://bucket/a\\u0001b\"}]}}",
     "command.arguments[0].value"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"output\","
     " \"value\": \"https://example.org/out\"}]}}",
     "command.arguments[0].value"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"output\","
     " \"value\": \"s3://bucket/dir/\"}]}}",
     "command.arguments[0].value"},
    /* cache, sha256 */
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"parameter\","
     " \"value\": \"a\", \"cache\": true}]}}",
     "command.arguments[0].cache"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"input\","
     " \"value\": \"s3://b1/a\", \"cache\": \"yes\"}]}}",
     "command.arguments[0].cache"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"output\","
     " \"value\": \"s3://b1/a\", \"sha256\": \"" SHA64 "\"}]}}",
     "command.arguments[0].sha256"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"input\","
     " \"value\": \"s3://b1/a\", \"sha256\": \"abc\"}]}}",
     "command.arguments[0].sha256"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"input\","
     " \"value\": \"s3://b1/a\", \"sha256\": \"" SHA64 "g\"}]}}",
     "command.arguments[0].sha256"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"input\","
     " \"value\": \"s3://b1/a\", \"sha256\": 5}]}}",
     "command.arguments[0].sha256"},
    {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"input\","
     " \"value\": \"https://h/x\", \"cache\": true}]}}",
     "command.arguments[0].cache"},
    /* streams */
    {"{\"command\": {\"program\": \"p\", \"stdout\": {\"type\": \"pipe\", \"value\": \"x\"}}}",
     "command.stdout.value"},
    {"{\"command\": {\"program\": \"p\", \"stderr\": {\"type\": \"file\"}}}",
     "command.stderr.type"},
    {"{\"command\": {\"program\": \"p\", \"stdin\": {\"type\": \"uri\"}}}", "command.stdin.value"},
    {"{\"command\": {\"program\": \"p\", \"stdin\": {\"type\": \"pipe\", \"value\": 5}}}",
     "command.stdin.value"},
    {"{\"command\": {\"program\": \"p\", \"stdin\": {\"type\": \"pipe\", \"data\": \"x\"}}}",
     "command.stdin.data"},
    {"{\"command\": {\"program\": \"p\", \"stdin\": \"text\"}}", "command.stdin"},
    {"{\"command\": {\"program\": \"p\", \"stderr\": {\"type\": \"uri\","
     " \"value\": \"s3://B/x\"}}}",
     "command.stderr.value"},
    /* env, input, output */
    {"{\"command\": {\"program\": \"p\", \"env\": {\"DROVER_X\": \"1\"}}}", "command.env.DROVER_X"},
    {"{\"command\": {\"program\": \"p\", \"env\": {\"1X\": \"1\"}}}", "command.env.1X"},
    {"{\"command\": {\"program\": \"p\", \"env\": {\"A-B\": \"1\"}}}", "command.env.A-B"},
    {"{\"command\": {\"program\": \"p\", \"env\": {\"A\": 1}}}", "command.env.A"},
    {"{\"command\": {\"program\": \"p\", \"env\": [\"A=1\"]}}", "command.env"},
    {"{\"command\": {\"program\": \"p\", \"input\": \"s3://b/x/\"}}", "command.input"},
    {"{\"command\": {\"program\": \"p\", \"input\": [\"s3://bucket/ok/\", \"s3://bucket/./x\"]}}",
     "command.input[1]"},
    {"{\"command\": {\"program\": \"p\", \"input\": [\"https://example.org/\"]}}",
     "command.input[0]"},
    {"{\"command\": {\"program\": \"p\", \"output\": [\"file:///data/../etc/\"]}}",
     "command.output[0]"},
};

static void test_bad_specs(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        json_t *in = load(bad[i].spec);
        struct job_spec s;
        struct err e = ERR_INIT;
        int rc = spec_parse(in, NULL, &s, &e);
        if (rc != ERR_INVALID || strcmp(e.field, bad[i].field) != 0)
            fail_msg("case %zu %s: rc %d field '%s' (want '%s'): %s", i, bad[i].spec, rc, e.field,
                     bad[i].field, e.msg);
        assert_int_equal(e.code, ERR_INVALID);
        assert_null(s.json);
        assert_null(s.queue);
        /* The message names the field, and is lower case at the start. */
        assert_non_null(strstr(e.msg, e.field));
        assert_false(e.msg[0] >= 'A' && e.msg[0] <= 'Z');
        assert_int_equal(spec_parse(in, NULL, &s, NULL), ERR_INVALID); /* e is optional */
        json_decref(in);
    }
}

static void test_messages(void **state)
{
    (void)state;
    static const struct {
        const char *spec, *msg;
    } cases[] = {
        {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"parameter\","
         " \"value\": \"a\"}, {\"type\": \"parameter\", \"value\": \"b\"}, {\"type\": 3}]}}",
         "command.arguments[2].type must be one of input, parameter, output"},
        {"{\"priority\": 5000, \"test\": true}",
         "priority must be an integer between -1000 and 1000"},
        {"{\"command\": {}}", "command.program is required (or command.shell, or a service)"},
        {"{\"test\": true, \"timeout_s\": -3}",
         "timeout_s must be a number greater than 0 and at most 2592000, or null"},
        {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"input\","
         " \"value\": \"s3://b/../etc\"}]}}",
         "command.arguments[0].value must be a valid uri: the bucket must match "
         "[a-z0-9][a-z0-9.-]{1,62}"},
        {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"input\","
         " \"value\": \"s3://bb/../etc\"}]}}",
         "command.arguments[0].value must be a valid uri: the key must not contain a '..' "
         "segment"},
        {"{\"command\": {\"program\": \"p\", \"env\": {\"DROVER_JOB_ID\": \"x\"}}}",
         "command.env.DROVER_JOB_ID is reserved: names starting with DROVER_ are set by drover"},
        {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"input\","
         " \"value\": \"file:///d/x\", \"cache\": true}]}}",
         "command.arguments[0].cache needs the input's sha256 for an http(s) or file:// uri (an "
         "s3:// object's is known to the store)"},
        {"{\"command\": {\"program\": \"p\", \"arguments\": [{\"type\": \"input\","
         " \"value\": \"s3://b1/x\", \"sha256\": \"x\"}]}}",
         "command.arguments[0].sha256 must be the SHA-256 of the input's content, 64 hex digits"},
        {"[1]", "the job spec must be a json object"},
        {"{\"test\": true, \"resources\": {\"memory_mb\": 0}}",
         "resources.memory_mb must be an integer between 4 and 4194304"},
        {"{\"test\": true, \"resources\": {\"cpus\": 0}}",
         "resources.cpus must be a number of at least 0.01 and at most 1024, or null"},
        {"{\"test\": true, \"resources\": {\"mem\": 1}}",
         "unknown field 'resources.mem' (expected one of: memory_mb, cpus, pids)"},
        {"{\"test\": true, \"retry\": {\"on\": {\"exit_codes\": [0]}}}",
         "retry.on.exit_codes[0] must be an integer between 1 and 255"},
        {"{\"test\": true, \"retry\": {\"on\": {\"tiemout\": 1}}}",
         "unknown field 'retry.on.tiemout' (expected one of: exit_codes, signal, timeout, lost, "
         "oom, error)"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        json_t *in = load(cases[i].spec);
        struct job_spec s;
        struct err e = ERR_INIT;
        assert_int_equal(spec_parse(in, "", &s, &e), ERR_INVALID);
        assert_string_equal(e.msg, cases[i].msg);
        json_decref(in);
    }

    /* An unknown field is named, and the known ones listed. */
    json_t *in = load("{\"prioirty\": 1}");
    struct job_spec s;
    struct err e = ERR_INIT;
    assert_int_equal(spec_parse(in, NULL, &s, &e), ERR_INVALID);
    assert_string_equal(e.field, "prioirty");
    assert_non_null(strstr(e.msg, "unknown field 'prioirty'"));
    assert_non_null(strstr(e.msg, "priority"));
    assert_non_null(strstr(e.msg, ", command)"));
    /* where a spec may be a job array's (the API takes "array" off first), that field too */
    err_clear(&e);
    assert_int_equal(spec_parse_arrayable(in, NULL, &s, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, ", command, array)"));
    /* a command's fields are its own (no array there) */
    json_decref(in);
    in = load("{\"command\": {\"program\": \"p\", \"arry\": 1}}");
    err_clear(&e);
    assert_int_equal(spec_parse_arrayable(in, NULL, &s, &e), ERR_INVALID);
    assert_string_equal(e.field, "command.arry");
    assert_null(strstr(e.msg, "array"));
    json_decref(in);
}

static void test_cache_fields(void **state)
{
    (void)state;
    struct job_spec s;
    parse_ok("{\"command\": {\"program\": \"p\", \"arguments\": ["
             "{\"type\": \"input\", \"value\": \"s3://b1/db.fa\", \"cache\": true},"
             "{\"type\": \"input\", \"value\": \"https://h/x.fa\", \"cache\": true,"
             " \"sha256\": \"" SHA64_UPPER "\"},"
             "{\"type\": \"input\", \"value\": \"s3://b1/q\", \"cache\": null},"
             "{\"type\": \"parameter\", \"value\": \"x\"}]}}",
             &s);
    assert_true(json_is_true(arg(&s, 0, "cache")));
    assert_null(arg(&s, 0, "sha256"));
    assert_string_equal(json_string_value(arg(&s, 1, "sha256")), SHA64); /* lower case */
    assert_null(arg(&s, 2, "cache")); /* absent stays absent */
    assert_null(arg(&s, 3, "cache"));
    spec_release(&s);
}

static void test_path_prefix(void **state)
{
    (void)state;
    static const struct {
        const char *spec, *field;
    } cases[] = {
        {"{\"queue\": \"BAD\", \"test\": true}", "[3].queue"},
        {"{\"prioirty\": 1, \"test\": true}", "[3].prioirty"},
        {"{\"command\": {\"program\": \"p\", \"argv\": [{}]}}", "[3].command.argv[0]"},
        {"7", "[3]"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        json_t *in = load(cases[i].spec);
        struct job_spec s;
        struct err e = ERR_INIT;
        assert_int_equal(spec_parse(in, "[3]", &s, &e), ERR_INVALID);
        assert_string_equal(e.field, cases[i].field);
        assert_non_null(strstr(e.msg, cases[i].field));
        json_decref(in);
    }
    struct job_spec s;
    struct err e = ERR_INIT;
    json_t *in = load("{\"test\": true}");
    assert_int_equal(spec_parse(in, "[3]", &s, &e), 0);
    assert_int_equal(e.code, 0);
    spec_release(&s);
    json_decref(in);
}

static void test_limits(void **state)
{
    (void)state;
    struct job_spec s;
    struct err e = ERR_INIT;

    /* SPEC_MAX_ARGUMENTS arguments are fine, one more is not. */
    json_t *argv = json_array();
    for (int i = 0; i < SPEC_MAX_ARGUMENTS; i++)
        json_array_append_new(argv, json_integer(i));
    json_t *in = json_pack("{s:{s:s, s:O}}", "command", "program", "p", "argv", argv);
    assert_int_equal(spec_parse(in, NULL, &s, &e), 0);
    assert_int_equal(json_array_size(cmd(&s, "arguments")), SPEC_MAX_ARGUMENTS);
    spec_release(&s);
    json_decref(in);
    json_array_append_new(argv, json_string("one too many"));
    in = json_pack("{s:{s:s, s:o}}", "command", "program", "p", "argv", argv);
    assert_int_equal(spec_parse(in, NULL, &s, &e), ERR_INVALID);
    assert_string_equal(e.field, "command.argv");
    json_decref(in);

    /* Too many labels. */
    json_t *labels = json_object();
    for (int i = 0; i <= SPEC_MAX_LABELS; i++) {
        char k[16];
        snprintf(k, sizeof(k), "l%d", i);
        json_object_set_new(labels, k, json_string("v"));
    }
    in = json_pack("{s:b, s:o}", "test", 1, "labels", labels);
    err_clear(&e);
    assert_int_equal(spec_parse(in, NULL, &s, &e), ERR_INVALID);
    assert_string_equal(e.field, "labels");
    json_decref(in);

    /* A string longer than SPEC_MAX_STRING. */
    size_t n = SPEC_MAX_STRING + 1;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    in = json_pack("{s:{s:s, s:{s:s}}}", "command", "program", "p", "env", "A", big);
    err_clear(&e);
    assert_int_equal(spec_parse(in, NULL, &s, &e), ERR_INVALID);
    assert_string_equal(e.field, "command.env.A");
    json_decref(in);

    /* A long unknown key is shortened in the path, on a character boundary. */
    in = json_pack("{s:b, s:i}", "test", 1, big, 1);
    err_clear(&e);
    assert_int_equal(spec_parse(in, NULL, &s, &e), ERR_INVALID);
    assert_true(strlen(e.field) < 140);
    assert_non_null(strstr(e.field, "..."));
    json_decref(in);
    free(big);
}

static void test_uri_valid(void **state)
{
    (void)state;
    static const struct {
        const char *uri;
        bool prefix, ok;
    } cases[] = {
        {"s3://bucket/path/to/input.txt", false, true},
        {"s3://my.bucket-1/a", false, true},
        {"s3://bucket/a/b/", true, true},
        {"s3://bucket/a/b/", false, false},
        {"s3://bucket", true, true},
        {"s3://bucket/", true, true},
        {"s3://bucket", false, false},
        {"s3://bucket/", false, false},
        {"s3://b/x", false, false},        /* bucket too short */
        {"s3://-bucket/x", false, false},  /* bucket starts badly */
        {"s3://Bucket/x", false, false},   /* upper case */
        {"s3://b_ucket/x", false, false},  /* underscore */
        {"s3://bucket//x", false, false},  /* leading '/' in the key */
        {"s3://bucket/a//b", true, false}, /* empty segment */
        {"s3://bucket/../etc", false, false},
        {"s3://bucket/a/..", false, false},
        {"s3://bucket/./a", false, false},
        {"s3://bucket/a..b", false, true},
        {"s3://bucket/with space", false, true},
        {"s3://bucket/a\tb", false, false},
        {"s3://bucket/a\x7f", false, false},
        {"https://example.org/x?y=1", false, true},
        {"http://host", false, true},
        {"https://", false, false},
        {"https:///path", false, false},
        {"http://host/a b", false, false},
        {"file:///data/x", false, true},
        {"file:///data/", true, true},
        {"file://host/data", false, false},
        {"file:///data/../etc", false, false},
        {"/abs", false, false},
        {"relative/path", false, false},
        {"ftp://host/x", false, false},
        {"", false, false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const char *why = "unset";
        bool ok = spec_uri_valid(cases[i].uri, cases[i].prefix, &why);
        if (ok != cases[i].ok)
            fail_msg("case %zu '%s' prefix=%d: got %d (%s)", i, cases[i].uri, cases[i].prefix, ok,
                     why ? why : "");
        if (ok)
            assert_null(why);
        else
            assert_non_null(why);
        assert_int_equal(spec_uri_valid(cases[i].uri, cases[i].prefix, NULL), cases[i].ok);
    }
    assert_false(spec_uri_valid(NULL, false, NULL));
    const char *why;
    assert_false(spec_uri_valid("s3://bucket/../x", false, &why));
    assert_string_equal(why, "the key must not contain a '..' segment");
}

static void test_queue_name(void **state)
{
    (void)state;
    assert_true(spec_queue_name_valid("default"));
    assert_true(spec_queue_name_valid("gpu.a100_x-2"));
    assert_true(spec_queue_name_valid("0"));
    assert_true(spec_queue_name_valid(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 64 */
    assert_false(spec_queue_name_valid(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 65 */
    assert_false(spec_queue_name_valid(""));
    assert_false(spec_queue_name_valid(NULL));
    assert_false(spec_queue_name_valid("Default"));
    assert_false(spec_queue_name_valid("a/b"));
    assert_false(spec_queue_name_valid("a b"));
    assert_false(spec_queue_name_valid("caf\xc3\xa9"));
}

/* The typed view of the objects a spec names (spec_uris), in spec order, with their use. */
static void test_uris(void **state)
{
    (void)state;
    struct job_spec s;
    parse_ok(seed_spec, &s);
    assert_true(s.timeout_s == 600);
    assert_int_equal(json_object_size(s.requires), 1);
    struct spec_uri u[8];
    size_t n = spec_uris(s.json, u, 8);
    const struct {
        const char *uri;
        enum spec_uri_use use;
    } want[] = {
        {"s3://bucket/path/to/input.txt", SPEC_URI_READ},
        {"s3://bucket/path/to/output.txt", SPEC_URI_WRITE},
        {"s3://bucket/path/to/stderr.txt", SPEC_URI_WRITE},
        {"s3://bucket/path/to/poly", SPEC_URI_READ_PREFIX},
        {"s3://bucket/path/to/some/output", SPEC_URI_WRITE_PREFIX},
    };
    assert_int_equal(n, ARRAY_SIZE(want));
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(u[i].uri, want[i].uri);
        assert_int_equal(u[i].use, want[i].use);
    }
    assert_int_equal(spec_uris(s.json, u, 1), n); /* counted past max */
    spec_release(&s);
    parse_ok("{\"command\": {\"program\": \"true\"}}", &s);
    assert_int_equal(spec_uris(s.json, NULL, 0), 0);
    spec_release(&s);
}

/* Dumps v compactly into text (json_dumpb: see test_defaults about free()). */
static void dump(const json_t *v, char *text, size_t size)
{
    size_t n = json_dumpb(v, text, size - 1, JSON_COMPACT);
    assert_true(n > 0 && n < size);
    text[n] = '\0';
}

/* The stored form: defaults left out, put back byte for byte (values and key order). */
static void test_stored_form(void **state)
{
    (void)state;
    static const char *const specs[] = {
        "{\"command\": {\"program\": \"true\"}}",
        seed_spec,
        "{\"retry\": {\"backoff_s\": 500}, \"command\": {\"program\": \"x\"}}",
        "{\"retry\": {\"on\": {}}, \"command\": {\"program\": \"x\"}}",
        "{\"retry\": {\"max_attempts\": 3, \"on\": {\"exit_codes\": [2], \"lost\": 0}},"
        " \"command\": {\"program\": \"x\"}}",
        "{\"resources\": {\"memory_mb\": 64}, \"delay_s\": 0.0, \"priority\": 5,"
        " \"notify\": \"all\", \"labels\": {\"a\": \"b\"}, \"command\": {\"shell\": \"echo hi\"}}",
        "{\"queue\": \"q\", \"command\": {\"argv\": [\"/bin/echo\", 1, true], \"sandbox\": true,"
        " \"stdout\": {\"type\": \"uri\", \"value\": \"s3://bk/out\"}}}",
        "{\"test\": true}",
    };
    char whole[4096], back[4096], stored[4096];
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        struct job_spec s;
        parse_ok(specs[i], &s);
        dump(s.json, whole, sizeof(whole));
        json_t *c = spec_compact(s.json);
        dump(c, stored, sizeof(stored));
        json_t *e = spec_expand(json_deep_copy(c));
        dump(e, back, sizeof(back));
        if (strcmp(whole, back))
            fail_msg("spec %zu: stored %s came back as %s, not %s", i, stored, back, whole);
        assert_true(strlen(stored) <= strlen(whole));
        json_decref(e);
        /* a spec stored whole (before the stored form) reads as it is */
        e = spec_expand(json_deep_copy(s.json));
        dump(e, back, sizeof(back));
        assert_string_equal(back, whole);
        json_decref(e);
        if (i == 0)
            assert_string_equal(stored, "{\"command\":{\"program\":\"true\"}}");
        if (i == 3) /* retry.on {} is not its default (null): every failure class at its
                       default budget */
            assert_string_equal(stored, "{\"retry\":{\"on\":{}},\"command\":{\"program\":\"x\"}}");
        if (i == 7)
            assert_string_equal(stored, "{\"test\":true,\"command\":null}");
        json_decref(c);
        spec_release(&s);
    }
    /* what the table does not know goes through as it is; not objects are left alone */
    json_t *e = spec_expand(load("{\"command\": {\"program\": \"x\", \"later\": 1}, \"zz\": 2}"));
    assert_int_equal(json_integer_value(json_object_get(e, "zz")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(e, "command"), "later")),
                     1);
    assert_string_equal(json_string_value(json_object_get(e, "queue")), "default");
    json_decref(e);
    assert_null(spec_expand(NULL));
    assert_null(spec_compact(NULL));

    /* what GET shows (every default in, "arguments": [] for a shell job) can be submitted
       again: it is the same job */
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        struct job_spec s, again;
        parse_ok(specs[i], &s); /* s.json: the whole form */
        struct err err = ERR_INIT;
        if (spec_parse(s.json, NULL, &again, &err))
            fail_msg("spec %zu as GET shows it is refused: %s (%s)", i, err.msg, err.field);
        dump(s.json, whole, sizeof(whole));
        json_t *w = spec_expand(json_incref(again.json));
        dump(w, back, sizeof(back));
        assert_string_equal(back, whole);
        json_decref(w);
        spec_release(&again);
        spec_release(&s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_spec),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_runtimes),
        cmocka_unit_test(test_resources_and_retry_on),
        cmocka_unit_test(test_nulls_are_absent),
        cmocka_unit_test(test_argv_shorthand),
        cmocka_unit_test(test_number_parameters),
        cmocka_unit_test(test_shell_and_test),
        cmocka_unit_test(test_service_is_the_program),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_stdin_pipe_limit),
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_cache_fields),
        cmocka_unit_test(test_path_prefix),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_uri_valid),
        cmocka_unit_test(test_queue_name),
        cmocka_unit_test(test_uris),
        cmocka_unit_test(test_stored_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
