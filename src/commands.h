/*
 * commands.h - every `drover` subcommand, dispatched from the table in main.c.
 *
 * To add a command: write `int cmd_NAME(int argc, char **argv)` in the folder
 * it belongs to (server/, cli/, agent/), declare it here and add one line to
 * the table in main.c. argv[0] is the command's own name. The return value is
 * the process's exit code: 0 success, 1 the job failed or the request was
 * refused, 2 usage error (README.md "Scripts").
 */
#ifndef DROVER_COMMANDS_H
#define DROVER_COMMANDS_H

#include <stddef.h>

int cmd_server(int argc, char **argv);
int cmd_dev(int argc, char **argv);
int cmd_submit(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_retry(int argc, char **argv);
int cmd_workflow(int argc, char **argv);
int cmd_trigger(int argc, char **argv);
int cmd_array(int argc, char **argv);
int cmd_jobs(int argc, char **argv);
int cmd_queues(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_tenant(int argc, char **argv);
int cmd_service(int argc, char **argv);
int cmd_agent(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_agents(int argc, char **argv);
int cmd_drain(int argc, char **argv);
int cmd_put(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_rm(int argc, char **argv);

/* One line of the command table. */
struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};
/*
 * `drover completion bash|zsh`: prints a completion script for the commands
 * of `table` (main.c's); their options come from `drover CMD --help` as the
 * user completes them (cli/completion.c).
 */
int cmd_completion(int argc, char **argv, const struct command *table, size_t n);

#endif
