/*
 * cli_agents.c - the commands about agents: `drover agents` (GET /v1/agents)
 * and `drover drain` (POST /v1/agents/{id-or-name}/drain).
 */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "commands.h"
#include "common/timeutil.h"

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* ---- agents ---- */

static const char agents_usage[] =
    "usage: drover agents [--json]\n"
    "\n"
    "Lists the agents the server knows: their state (up, draining, lost, left),\n"
    "free and total slots, the jobs they run, the runtimes they can run jobs in\n"
    "(native, bwrap, podman, docker), their queues and labels, and when they were\n"
    "last heard from.\n"
    "\n"
    "      --json         print the server's JSON answer\n"
    "\n"
    "examples:\n"
    "  drover agents\n"
    "  drover agents --json | jq '.[] | select(.state == \"lost\") | .name'\n"
    CLI_COMMON_USAGE;

/* "default,bio" for an array of strings; "-" when empty. */
static void join_strings(json_t *arr, struct buf *b)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (b->len) buf_addc(b, ',');
        buf_adds(b, json_is_string(v) ? json_string_value(v) : "?");
    }
}

/* "db=rfam,gpu=1" for an object of strings. */
static void join_labels(json_t *obj, struct buf *b)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (b->len) buf_addc(b, ',');
        if (json_is_string(v)) {
            buf_addf(b, "%s=%s", k, json_string_value(v));
        } else {
            char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            buf_addf(b, "%s=%s", k, s ? s : "?");
            free(s);
        }
    }
}

/* An integer field, or a count when it is an array ("running" may list jobs). */
static long long count_of(json_t *v)
{
    if (json_is_array(v)) return (long long)json_array_size(v);
    return (long long)json_integer_value(v);
}

static void print_agents_table(json_t *list)
{
    struct table *t =
        table_new(8, "name", "state", "free/slots", "running", "runtimes", "queues", "labels",
                  "last-seen"); /* free/slots: 3/4 is one slot in use, as the agent last said */
    table_align_right(t, 2);
    table_align_right(t, 3);
    table_max_width(t, 5, 40);
    table_max_width(t, 6, 40);
    int64_t now = time_now_ms();
    size_t i;
    json_t *a;
    json_array_foreach(list, i, a)
    {
        struct buf b = BUF_INIT;
        table_add(t, jstr(a, "name"));
        table_add(t, jstr(a, "state"));
        const char *state = jstr(a, "state");
        if (state && (!strcmp(state, "lost") || !strcmp(state, "left"))) /* none offered */
            table_addf(t, "-/%lld", count_of(json_object_get(a, "slots")));
        else
            table_addf(t, "%lld/%lld", count_of(json_object_get(a, "free_slots")),
                       count_of(json_object_get(a, "slots")));
        table_addf(t, "%lld", count_of(json_object_get(a, "running")));
        join_strings(json_object_get(a, "runtimes"), &b);
        table_add(t, b.data);
        buf_reset(&b);
        join_strings(json_object_get(a, "queues"), &b);
        table_add(t, b.data);
        buf_reset(&b);
        join_labels(json_object_get(a, "labels"), &b);
        table_add(t, b.data);
        buf_release(&b);
        int64_t seen;
        char age[32];
        if (cli_parse_time(jstr(a, "last_seen"), &seen)) {
            cli_format_age(now - seen, age, sizeof(age));
            table_add(t, age);
        } else {
            table_add(t, jstr(a, "last_seen"));
        }
    }
    table_print(t, stdout);
    table_free(t);
}

int cmd_agents(int argc, char **argv)
{
    struct cli_args a;
    cli_args_init(&a, argc, argv, agents_usage);
    json_t *answer = NULL;
    int rc = cli_parse_json_only(&a, NULL, NULL, NULL);
    if (rc != CLI_CONTINUE) return rc;
    rc = cli_request(&a.conn, "GET", "/v1/agents", NULL, &answer, "cannot list agents");
    if (rc == 0 && a.json)
        cli_print_json(answer);
    else if (rc == 0)
        print_agents_table(json_is_array(answer) ? answer : json_object_get(answer, "agents"));
    json_decref(answer);
    return rc;
}

/* ---- drain ---- */

static const char drain_usage[] =
    "usage: drover drain [--json] AGENT\n"
    "\n"
    "Drains an agent, given by name or id: it takes no new jobs, finishes the ones\n"
    "it runs, and exits.\n"
    "\n"
    "      --json         print the agent as the server answers it\n"
    "\n"
    "examples:\n"
    "  drover drain worker-7                        # finish its jobs, take no more, exit\n"
    CLI_COMMON_USAGE;

int cmd_drain(int argc, char **argv)
{
    struct cli_args a;
    cli_args_init(&a, argc, argv, drain_usage);
    const char *agent;
    json_t *answer = NULL;
    int rc = cli_parse_json_only(&a, "which agent? give its name or id",
                                 "the agent's name is empty", &agent);
    if (rc != CLI_CONTINUE) return rc;
    char *path = cli_path("/v1/agents/", agent, "/drain");
    rc = cli_request(&a.conn, "POST", path, NULL, &answer, "cannot drain agent '%s'", agent);
    free(path);
    if (rc == 0 && a.json)
        cli_print_json(answer);
    else if (rc == 0)
        printf("draining %s\n", agent);
    json_decref(answer);
    return rc;
}
