/*
 * cli_arrays.c - `drover array status|cancel|retry ID` (docs/api.md "Arrays"); the tasks are
 * listed by `drover jobs --array ID` (cli_jobs.c, cli_array_tasks below).
 */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "commands.h"
#include "common/buf.h"
#include "common/xalloc.h"
#include "http/client.h"

static const char array_usage[] =
    "usage: drover array status [--json] ID\n"
    "       drover array cancel [--from I] [--to J] [--json] ID\n"
    "       drover array retry [--from I] [--to J] [--json] ID\n"
    "\n"
    "Job arrays: one spec of many tasks, submitted with \"array\" in the spec\n"
    "(drover submit -f SPEC.json; docs/api.md \"Arrays\"). List the tasks with\n"
    "drover jobs --array ID.\n"
    "\n"
    "  status ID          the array's tasks counted by state\n"
    "  cancel ID          cancel the tasks that have not ended\n"
    "  retry ID           queue again the tasks that failed or were cancelled\n"
    "      --from I       the first task index of the range (default 0)\n"
    "      --to J         the last task index of the range (default the last)\n"
    "      --json         print the server's JSON answer\n"
    "\n"
    "examples:\n"
    "  drover submit -f array.json             # {\"array\": {\"count\": 1000}, \"command\": ...}\n"
    "  drover array status 0193a1b2-...\n"
    "  drover array cancel --from 500 0193a1b2-...\n"
    "  drover array retry 0193a1b2-...          # every failed or cancelled task\n"
    "  drover jobs --array 0193a1b2-... --state failed\n"
    CLI_COMMON_USAGE;

enum { OPT_FROM = CLI_OPT_FIRST_FREE, OPT_TO };

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void print_summary(json_t *a)
{
    const char *name = jstr(a, "name");
    printf("array %s", jstr(a, "id") ? jstr(a, "id") : "?");
    if (name) {
        printf(" ");
        cli_put_clean(stdout, name, strlen(name));
    }
    printf(": %s\n", jstr(a, "state") ? jstr(a, "state") : "?");
    json_t *c = json_object_get(a, "counts");
    printf("tasks: %lld/%lld succeeded",
           (long long)json_integer_value(json_object_get(c, "succeeded")),
           (long long)json_integer_value(json_object_get(c, "total")));
    static const char *const others[] = {"running", "leased", "queued", "failed", "cancelled"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        json_int_t n = json_integer_value(json_object_get(c, others[i]));
        if (n) printf(", %lld %s", (long long)n, others[i]);
    }
    printf("\nqueue: %s, kind: %s", jstr(a, "queue") ? jstr(a, "queue") : "?",
           jstr(a, "kind") ? jstr(a, "kind") : "?");
    if (jstr(a, "source")) printf(" of %s", jstr(a, "source"));
    printf("\n");
}

int cmd_array(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub && (!strcmp(sub, "-h") || !strcmp(sub, "--help"))) {
        fputs(array_usage, stdout);
        return 0;
    }
    bool status = sub && !strcmp(sub, "status"), cancel = sub && !strcmp(sub, "cancel");
    bool retry = sub && !strcmp(sub, "retry");
    if (!status && !cancel && !retry) {
        cli_json_prescan(argc, argv);
        return sub ? cli_usage_error(array_usage,
                                     "unknown array command '%s' (status, cancel or retry)", sub)
                   : cli_usage_error(array_usage, "which array command? status, cancel or retry");
    }
    static const struct option longopts[] = {
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc - 1, argv + 1, array_usage);
    long from = -1, to = -1;
    int opt, rc;
    while ((opt = cli_getopt(&a, ":h", longopts)) != -1) {
        long *v = opt == OPT_FROM ? &from : opt == OPT_TO ? &to : NULL;
        if (!v) continue;
        if (status)
            return cli_usage_error(array_usage, "--from and --to are for cancel and retry");
        if (!cli_parse_long(optarg, 0, 1000000000, v))
            return cli_usage_error(array_usage, "--%s must be a task index (0 or more), not '%s'",
                                   opt == OPT_FROM ? "from" : "to", optarg);
    }
    const char *id;
    if ((rc = cli_args_one(&a, "which array? give its ID", "the array ID is empty", &id)) !=
        CLI_CONTINUE)
        return rc;
    json_t *answer = NULL;
    char *path = cli_path("/v1/arrays/", id, status ? "" : cancel ? "/cancel" : "/retry");
    json_t *body = status ? NULL : json_object();
    if (from >= 0) json_object_set_new(body, "from", json_integer(from));
    if (to >= 0) json_object_set_new(body, "to", json_integer(to));
    char what[512];
    snprintf(what, sizeof(what), "cannot %s array '%s'", sub, id);
    rc = cli_request_whole_id(&a.conn, status ? "GET" : "POST", path, body, "array", id, &answer,
                              what);
    free(path);
    json_decref(body);
    if (rc == 0 && a.json)
        cli_print_json(answer);
    else if (rc == 0 && status)
        print_summary(answer);
    else if (rc == 0)
        printf("%lld task(s) %s\n",
               (long long)json_integer_value(
                   json_object_get(answer, cancel ? "cancelled" : "retried")),
               cancel ? "cancelled" : "queued again");
    json_decref(answer);
    return rc;
}

static void print_tasks_table(json_t *list)
{
    struct table *t = table_new(6, "index", "state", "job", "attempt", "agent", "exit");
    table_align_right(t, 0);
    size_t i;
    json_t *task;
    json_array_foreach(list, i, task)
    {
        table_addf(t, "%lld", (long long)json_integer_value(json_object_get(task, "index")));
        table_add(t, jstr(task, "state") ? jstr(task, "state") : "?");
        table_add(t, jstr(task, "job") ? jstr(task, "job") : "-");
        table_addf(t, "%lld", (long long)json_integer_value(json_object_get(task, "attempt")));
        table_add(t, jstr(task, "agent") ? jstr(task, "agent") : "-");
        json_t *code = json_object_get(json_object_get(task, "result"), "exit_code");
        if (json_is_integer(code))
            table_addf(t, "%lld", (long long)json_integer_value(code));
        else
            table_add(t, "-");
    }
    table_print(t, stdout);
    table_free(t);
}

int cli_array_tasks(struct cli *cli, const char *id, const char *state, long from, long to,
                    long limit, bool all, bool json)
{
    json_t *list = json_array();
    long next = from >= 0 ? from : 0;
    bool more = false;
    int rc = 1;
    for (;;) {
        struct buf path = BUF_INIT;
        char *base = cli_path("/v1/arrays/", id, "/tasks");
        buf_addf(&path, "%s?from=%ld", base, next);
        free(base);
        if (to >= 0) buf_addf(&path, "&to=%ld", to);
        if (state) {
            char *s = http_escape(state);
            buf_addf(&path, "&state=%s", s);
            free(s);
        }
        long left = limit ? limit - (long)json_array_size(list) : 1000;
        buf_addf(&path, "&limit=%ld", left < 1000 ? left : 1000);
        json_t *page = NULL;
        int r = cli_call(cli, "GET", path.data, NULL, &page, "cannot list the tasks of array '%s'",
                         id);
        buf_release(&path);
        if (r) goto out;
        json_array_extend(list, json_object_get(page, "tasks"));
        json_t *nf = json_object_get(page, "next_from");
        more = json_is_integer(nf);
        if (more) next = (long)json_integer_value(nf);
        json_decref(page);
        if (!all || !more || (limit && (long)json_array_size(list) >= limit)) break;
    }
    if (json) {
        cli_print_json(list);
    } else {
        print_tasks_table(list);
        if (more && !all && !(limit && (long)json_array_size(list) >= limit))
            fprintf(stderr, "drover: more tasks follow; --all lists them all (or --from %ld)\n",
                    next);
    }
    rc = 0;
out:
    json_decref(list);
    return rc;
}
