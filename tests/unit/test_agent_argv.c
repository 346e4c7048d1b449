/*
 * test_agent_argv.c - unit tests for agent/argv.c: argv built from specs
 * normalised by job/spec.c (names, positional values, argv shorthand, shell)
 * and the job's environment (the agent's token never reaches a job).
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

#include "agent/argv.h"
#include "job/spec.h"

/* The normalised spec of `text` (a new reference). */
static json_t *normalised(const char *text)
{
    json_error_t jerr;
    json_t *in = json_loads(text, 0, &jerr);
    assert_non_null(in);
    struct job_spec spec;
    struct err e = ERR_INIT;
    int rc = spec_parse(in, NULL, &spec, &e);
    if (rc) fail_msg("spec refused: %s", e.msg);
    json_t *out = json_incref(spec.json);
    spec_release(&spec);
    json_decref(in);
    return out;
}

static size_t strv_len(char **v)
{
    size_t n = 0;
    while (v[n])
        n++;
    return n;
}

static void check_argv(const char *spec_text, const char *const *want, size_t nwant)
{
    json_t *spec = normalised(spec_text);
    char **argv = NULL;
    struct err e = ERR_INIT;
    assert_int_equal(agent_argv_build(json_object_get(spec, "command"), &argv, &e), 0);
    assert_int_equal(strv_len(argv), nwant);
    for (size_t i = 0; i < nwant; i++)
        assert_string_equal(argv[i], want[i]);
    agent_strv_free(argv);
    json_decref(spec);
}

static void test_names_and_positional(void **state)
{
    (void)state;
    static const char *const want[] = {"nhmmer", "--cpu", "2",     "-E",    "0.001",
                                       "query",  "--x",   "a b;c", "$(rm)", "true"};
    check_argv("{\"command\": {\"program\": \"nhmmer\", \"arguments\": ["
               "{\"type\": \"parameter\", \"name\": \"--cpu\", \"value\": 2},"
               "{\"type\": \"parameter\", \"name\": \"-E\", \"value\": 0.001},"
               "{\"type\": \"parameter\", \"value\": \"query\"},"
               "{\"type\": \"parameter\", \"name\": \"--x\", \"value\": \"a b;c\"},"
               "{\"type\": \"parameter\", \"value\": \"$(rm)\"},"
               "{\"type\": \"parameter\", \"value\": true}]}}",
               want, sizeof(want) / sizeof(want[0]));
}

static void test_argv_shorthand_and_empty(void **state)
{
    (void)state;
    static const char *const want[] = {"echo", "hello", "", "world"};
    check_argv("{\"command\": {\"program\": \"echo\", \"argv\": [\"hello\", \"\", \"world\"]}}",
               want, 4);
    static const char *const alone[] = {"true"};
    check_argv("{\"command\": {\"program\": \"true\"}}", alone, 1);
}

static void test_shell(void **state)
{
    (void)state;
    static const char *const want[] = {"/bin/sh", "-c", "echo $HOME | wc -c"};
    check_argv("{\"command\": {\"shell\": \"echo $HOME | wc -c\"}}", want, 3);
}

static void test_argv_refuses_non_parameters(void **state)
{
    (void)state;
    json_t *cmd = json_pack("{s:s, s:[{s:s, s:n, s:s}]}", "program", "x", "arguments", "type",
                            "input", "name", "value", "s3://b/k");
    char **argv = NULL;
    struct err e = ERR_INIT;
    assert_int_equal(agent_argv_build(cmd, &argv, &e), ERR_INVALID);
    assert_null(argv);
    assert_string_equal(e.field, "command.arguments[0]");
    json_decref(cmd);
    json_t *empty = json_object();
    err_clear(&e);
    assert_int_equal(agent_argv_build(empty, &argv, &e), ERR_INVALID);
    assert_string_equal(e.field, "command.program");
    json_decref(empty);
}

static const char *env_get(char **env, const char *name)
{
    size_t n = strlen(name);
    const char *found = NULL;
    for (char **p = env; *p; p++) {
        if (!strncmp(*p, name, n) && (*p)[n] == '=') {
            assert_null(found); /* each name once */
            found = *p + n + 1;
        }
    }
    return found;
}

static void test_env(void **state)
{
    (void)state;
    char *base[] = {"PATH=/usr/bin",
                    "HOME=/root",
                    "DROVER_TOKEN=secret",
                    "NOTIFY_SOCKET=/run/systemd/notify",
                    "NOTIFY_SOCKETS=kept",
                    "OMP_NUM_THREADS=8",
                    "DROVER_JOB_ID=stale",
                    "NOEQUALS",
                    "DROVER_JOB_ID=stale too",
                    "LANG=C",
                    NULL};
    json_t *env = json_pack("{s:s, s:s}", "OMP_NUM_THREADS", "2", "LANG", "C.UTF-8");
    char *extra[] = {"DROVER_JOB_ID=0193", "DROVER_ATTEMPT=2", NULL};
    char **out = agent_env_build(base, env, extra);
    assert_string_equal(env_get(out, "PATH"), "/usr/bin");
    assert_string_equal(env_get(out, "OMP_NUM_THREADS"), "2");
    assert_string_equal(env_get(out, "LANG"), "C.UTF-8");
    assert_string_equal(env_get(out, "DROVER_JOB_ID"), "0193");
    assert_string_equal(env_get(out, "DROVER_ATTEMPT"), "2");
    assert_null(env_get(out, "DROVER_TOKEN"));
    assert_null(env_get(out, "NOTIFY_SOCKET")); /* systemd's socket is the agent's own */
    assert_string_equal(env_get(out, "NOTIFY_SOCKETS"), "kept");
    assert_null(env_get(out, "NOEQUALS"));
    assert_int_equal(strv_len(out), 7); /* one DROVER_JOB_ID, one LANG: those set replace all */
    agent_strv_free(out);
    json_decref(env);

    char **empty = agent_env_build(NULL, NULL, NULL);
    assert_non_null(empty);
    assert_null(empty[0]);
    agent_strv_free(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_positional),
        cmocka_unit_test(test_argv_shorthand_and_empty),
        cmocka_unit_test(test_shell),
        cmocka_unit_test(test_argv_refuses_non_parameters),
        cmocka_unit_test(test_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
