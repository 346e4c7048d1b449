/*
 * fuzz_stage.c - what an agent makes of a leased job's spec before anything runs: the staging
 * plan (stage_plan: which object goes to which file of the work folder), then argv and the
 * environment (agent_argv_build, agent_env_build). Input: the spec as JSON.
 *
 * Checks: a refusal is ERR_INVALID with a message; every input and output argument becomes a
 * parameter naming one file directly in the work folder, never "." or "..", never a name of
 * the agent's own (".drover-..."); argv starts with the program (or /bin/sh -c); the
 * environment is "NAME=VALUE" strings.
 */
#include <jansson.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/argv.h"
#include "agent/stage.h"
#include "fuzz.h"

#define WORK "/work/job-1"

static void check_file(const char *path, bool stream)
{
    FUZZ_CHECK(path && !strncmp(path, WORK "/", strlen(WORK) + 1));
    const char *name = path + strlen(WORK) + 1;
    FUZZ_CHECK(*name && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, ".."));
    if (!stream) FUZZ_CHECK(strncmp(name, STAGE_RESERVED_PREFIX, strlen(STAGE_RESERVED_PREFIX)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *spec = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(spec)) {
        json_decref(spec);
        return 0;
    }
    static char *allow[] = {"/srv/drover-fuzz-allowed"};
    struct agent a;
    memset(&a, 0, sizeof(a));
    a.o.allow_paths = allow;
    a.o.nallow_paths = 1;
    struct agent_job j;
    memset(&j, 0, sizeof(j));
    j.a = &a;
    j.spec = spec;
    j.work_dir = WORK;
    json_t *before = json_deep_copy(spec);

    struct stage *st = NULL;
    json_t *command = NULL;
    struct err e = ERR_INIT;
    int rc = stage_plan(&j, &st, &command, &e);
    FUZZ_CHECK(json_equal(before, spec)); /* the plan works on a copy */
    if (rc) {
        FUZZ_CHECK(rc == ERR_INVALID && e.msg[0] && !st && !command);
        goto out;
    }
    FUZZ_CHECK(command);
    json_t *given = json_object_get(json_object_get(spec, "command"), "arguments");
    size_t i;
    json_t *arg;
    json_array_foreach(given, i, arg)
    {
        const char *type = json_string_value(json_object_get(arg, "type"));
        if (!type || (strcmp(type, "input") && strcmp(type, "output"))) continue;
        json_t *now = json_array_get(json_object_get(command, "arguments"), i);
        FUZZ_CHECK(!strcmp(json_string_value(json_object_get(now, "type")), "parameter"));
        check_file(json_string_value(json_object_get(now, "value")), false);
    }
    char **argv = NULL;
    struct err ae = ERR_INIT;
    if (!agent_argv_build(command, &argv, &ae)) {
        FUZZ_CHECK(argv && argv[0]);
        const char *shell = json_string_value(json_object_get(command, "shell"));
        if (shell)
            FUZZ_CHECK(!strcmp(argv[0], "/bin/sh") && !strcmp(argv[2], shell));
        else
            FUZZ_CHECK(!strcmp(argv[0], json_string_value(json_object_get(command, "program"))));
        agent_strv_free(argv);
    } else {
        FUZZ_CHECK(!argv && ae.code == ERR_INVALID);
    }
    char *base[] = {"PATH=/usr/bin:/bin", "DROVER_TOKEN=secret", "HOME=/root", NULL};
    char *extra[] = {"DROVER_JOB_ID=x", NULL};
    char **env = agent_env_build(base, json_object_get(command, "env"), extra);
    for (char **p = env; *p; p++) {
        FUZZ_CHECK(strchr(*p, '='));
        FUZZ_CHECK(strcmp(*p, "DROVER_TOKEN=secret")); /* the agent's own token stays its own */
    }
    agent_strv_free(env);
out:
    stage_free(st);
    json_decref(command);
    json_decref(before);
    json_decref(spec);
    return 0;
}
