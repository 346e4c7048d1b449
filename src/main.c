/* main.c - argv[1] picks one entry of the command table; nothing else happens here. */
#ifndef HAVE_JEMALLOC
#include <malloc.h>
#endif
#include <stdio.h>
#include <string.h>

#include "agent/guardian.h"
#include "commands.h"
#include "common/sdnotify.h"

static int completion(int argc, char **argv);

static const struct command commands[] = {
    {"server", cmd_server, "run the coordinator"},
    {"dev", cmd_dev, "a server and one local agent in one process, for trying things out"},
    {"submit", cmd_submit, "submit a job (-f SPEC.json | -- PROGRAM ARGS...)"},
    {"status", cmd_status, "show a job"},
    {"wait", cmd_wait, "wait for jobs to end; exits with the worst exit code"},
    {"events", cmd_events, "follow the server's events (job and agent changes) as they happen"},
    {"cancel", cmd_cancel, "cancel a job"},
    {"retry", cmd_retry, "run a failed or cancelled job again (one more attempt)"},
    {"workflow", cmd_workflow, "submit a workflow, list them, show, cancel or retry one"},
    {"array", cmd_array, "show a job array, cancel or retry its tasks by index range"},
    {"logs", cmd_logs, "print a job's output (-f: follow it until the job ends)"},
    {"jobs", cmd_jobs, "list jobs"},
    {"queues", cmd_queues, "list queues"},
    {"agents", cmd_agents, "list agents"},
    {"drain", cmd_drain, "drain an agent: no new jobs, then it exits"},
    {"put", cmd_put, "upload a file to the object store (FILE s3://bucket/key)"},
    {"get", cmd_get, "download an object (s3://bucket/key [FILE])"},
    {"ls", cmd_ls, "list objects (s3://bucket[/prefix])"},
    {"rm", cmd_rm, "delete objects"},
    {"trigger", cmd_trigger, "upload triggers and schedules: create, ls, update, pause, fire, rm"},
    {"service", cmd_service, "define, list, show or retire services of the hub"},
    {"token", cmd_token, "create, list or revoke API tokens"},
    {"tenant", cmd_tenant, "set or list tenants' quotas and fair-share weights"},
    {"agent", cmd_agent, "run jobs for a server on this machine"},
    {"completion", completion, "print a bash or zsh completion script (completion bash|zsh)"},
};

static int completion(int argc, char **argv)
{
    return cmd_completion(argc, argv, commands, sizeof(commands) / sizeof(commands[0]));
}

/*
 * With glibc's malloc (a build without jemalloc, CMakeLists.txt), the server's settings: a
 * batch of 1,000 specs makes and frees tens of thousands of small JSON values, and glibc's
 * default trimming and mmap thresholds gave memory back and took it again at every batch.
 * No fastbins: with them, every request of 1 KiB or more and every free of 64 KiB or more
 * first consolidated all the small chunks freed since (~15 % of the loop thread in batches;
 * bench/RESULTS.md, "Core issue, second session"). Small blocks stay cached by tcache.
 */
static void malloc_tune(const char *cmd)
{
#ifndef HAVE_JEMALLOC
    if (strcmp(cmd, "server") && strcmp(cmd, "dev")) return;
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_MMAP_THRESHOLD, 8 << 20);
    mallopt(M_MXFAST, 0);
#else
    (void)cmd;
#endif
}

static void usage(FILE *f)
{
    fprintf(f, "usage: drover <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'drover <command> --help' describes one command. With --json a client command\n"
               "prints JSON, and its errors as JSON lines on stderr; exit codes: 0 success,\n"
               "1 refused or failed, 2 usage error.\n"
               "Environment: DROVER_SERVER (default http://127.0.0.1:7070), DROVER_TOKEN,\n"
               "DROVER_CA_FILE (a CA for an https:// server).\n"
               "\n"
               "examples:\n"
               "  drover dev                             # a server and an agent, to try it\n"
               "  drover submit --wait -- echo hello\n"
               "  drover jobs --state failed\n"
               "  source <(drover completion bash)       # completion in this shell\n");
}

/* Edit distance of a and b, a swap of two neighbours counting as one edit (the "optimal
 * string alignment" distance); command names are short. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 32 || m > 32) return 99;
    size_t d[33][33];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[n][m];
}

/* The command named `name`, or NULL. */
static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(name, commands[i].name)) return &commands[i];
    return NULL;
}

/* argv[1] is no command: a short message (a typo's likely command, or where options go)
 * instead of the whole usage. Returns 2. */
static int not_a_command(int argc, char **argv)
{
    if (argv[1][0] == '-') {
        /* drover --token-file F submit: options belong to a command, after it */
        const char *cmd = NULL;
        for (int i = 2; i < argc && !cmd; i++)
            if (find_command(argv[i])) cmd = argv[i];
        fprintf(stderr, "drover: '%s' is an option: options go after the command (drover %s %s "
                        "...)\n'drover --help' lists the commands.\n",
                argv[1], cmd ? cmd : "<command>", argv[1]);
        return 2;
    }
    /* the words of other job systems' CLIs (Slurm, Celery, kubectl, docker) */
    static const char *const said[][2] = {
        {"list", "jobs"},     {"ps", "jobs"},        {"squeue", "jobs"},
        {"show", "status"},   {"describe", "status"}, {"inspect", "status"},
        {"kill", "cancel"},   {"scancel", "cancel"}, {"revoke", "cancel"},
        {"run", "submit"},    {"sbatch", "submit"},  {"rerun", "retry"},
        {"worker", "agent"},  {"workers", "agents"}, {"nodes", "agents"},
    };
    const char *best = NULL;
    for (size_t i = 0; i < sizeof(said) / sizeof(said[0]) && !best; i++)
        if (!strcmp(argv[1], said[i][0])) best = said[i][1];
    size_t best_d = best ? 0 : 3; /* at most 2 edits, and fewer than the name is long */
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        size_t d = edit_distance(argv[1], commands[i].name);
        if (d < best_d && d < strlen(commands[i].name)) {
            best = commands[i].name;
            best_d = d;
        }
    }
    fprintf(stderr, "drover: '%s' is not a command", argv[1]);
    if (best) fprintf(stderr, "; did you mean '%s'?", best);
    fprintf(stderr, "\n'drover --help' lists the commands.\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        /* what this build can do that depends on optional libraries */
        printf("drover %s%s\n", DROVER_VERSION, sdnotify_supported() ? " (systemd notify)" : "");
        return 0;
    }
    if (!strcmp(argv[1], GUARDIAN_COMMAND)) /* the agent's own helper (agent/guardian.h) */
        return cmd_agent_guardian(argc - 1, argv + 1);
    const struct command *cmd = find_command(argv[1]);
    if (!cmd) return not_a_command(argc, argv);
    malloc_tune(argv[1]);
    return cmd->fn(argc - 1, argv + 1);
}
