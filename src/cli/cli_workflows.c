/*
 * cli_workflows.c - `drover workflow submit FILE | list (ls) | status ID | cancel ID | retry ID`
 * (docs/api.md "Workflows"): status draws the graph as text, each node indented by its
 * depth (the longest path to it from a node without upstreams), with its state and its
 * upstreams; list is a table, newest first; --json prints the server's answer.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "commands.h"
#include "common/xalloc.h"

#define MAX_INDENT 32 /* levels drawn indented */
#define WORKFLOW_FILE_MAX (16 * 1024 * 1024) /* the server's limit */

static const char workflow_usage[] =
    "usage: drover workflow submit [--json] FILE|-f FILE\n"
    "       drover workflow list [--json] [--limit N | --all]\n"
    "       drover workflow status [--json] ID\n"
    "       drover workflow cancel [--json] ID\n"
    "       drover workflow retry [--json] ID\n"
    "\n"
    "Workflows: nodes (job specs) joined by depends_on and port connections, each node\n"
    "queued once its upstreams have ended as it needs (docs/api.md \"Workflows\").\n"
    "\n"
    "  submit FILE        submit the workflow in FILE (JSON; - for stdin) and show it\n"
    "      -f, --file FILE  the same (as drover submit -f)\n"
    "  list               the workflows, newest first: state and progress of each\n"
    "                     (ls is the same)\n"
    "      -n, --limit N  at most N workflows (default: one page of 20)\n"
    "      -a, --all      follow the pages to the end (or to --limit)\n"
    "  status ID          every node's state and the progress, drawn as a graph\n"
    "  cancel ID          cancel every node that has not ended\n"
    "  retry ID           rerun what failed or was cancelled, keeping what succeeded\n"
    "      --json         print the server's JSON answer\n"
    "\n"
    "examples:\n"
    "  drover workflow submit diamond.json\n"
    "  drover workflow list --all --json | jq -r '.[] | select(.state == \"failed\") | .id'\n"
    "  drover workflow status 0193a1b2-...\n"
    "  drover workflow retry 0193a1b2-...\n"
    CLI_COMMON_USAGE;

/* The depth of each node: 0 without upstreams, else 1 + its deepest upstream's. */
static long depth_of(json_t *nodes, const char *name, json_t *memo, int guard)
{
    json_t *m = json_object_get(memo, name);
    if (m) return (long)json_integer_value(m);
    long d = 0;
    size_t i;
    json_t *dep;
    if (guard > 10001) return 0; /* the server refuses cycles; never loop on a bad answer */
    json_array_foreach(json_object_get(json_object_get(nodes, name), "depends_on"), i, dep)
    {
        const char *up = json_string_value(json_object_get(dep, "node"));
        if (up && json_object_get(nodes, up)) {
            long u = depth_of(nodes, up, memo, guard + 1) + 1;
            if (u > d) d = u;
        }
    }
    json_object_set_new(memo, name, json_integer(d));
    return d;
}

struct drawn {
    const char *name;
    json_t *node;
    long depth;
    size_t at; /* its place in the answer */
};

static int by_depth(const void *a, const void *b)
{
    const struct drawn *x = a, *y = b;
    if (x->depth != y->depth) return x->depth < y->depth ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at;
}

static void print_graph(json_t *w)
{
    const char *id = json_string_value(json_object_get(w, "id"));
    const char *name = json_string_value(json_object_get(w, "name"));
    json_t *progress = json_object_get(w, "progress"), *nodes = json_object_get(w, "nodes");
    printf("workflow %s", id ? id : "?");
    if (name) {
        printf(" ");
        cli_put_clean(stdout, name, strlen(name));
    }
    printf(": %s\n", json_string_value(json_object_get(w, "state")) ?: "?");
    printf("progress: %lld/%lld succeeded",
           (long long)json_integer_value(json_object_get(progress, "succeeded")),
           (long long)json_integer_value(json_object_get(progress, "total")));
    static const char *const others[] = {"running", "leased", "queued", "blocked", "failed",
                                         "cancelled"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        json_int_t n = json_integer_value(json_object_get(progress, others[i]));
        if (n) printf(", %lld %s", (long long)n, others[i]);
    }
    printf("\n");
    json_t *memo = json_object();
    size_t n = json_object_size(nodes), at = 0;
    struct drawn *order = xcalloc(n + 1, sizeof(*order));
    const char *k;
    json_t *v;
    json_object_foreach(nodes, k, v)
    {
        order[at] = (struct drawn){k, v, depth_of(nodes, k, memo, 0), at};
        at++;
    }
    qsort(order, n, sizeof(*order), by_depth); /* level by level, each in the answer's order */
    for (size_t o = 0; o < n; o++) {
        k = order[o].name;
        v = order[o].node;
        long level = order[o].depth;
        if (level > MAX_INDENT) /* deeper: the level said, not drawn */
            printf("%*s└─(level %ld) ", 2 * MAX_INDENT, "", level);
        else
            printf("%*s%s ", (int)(2 * level), "", level ? "└─" : "●");
        cli_put_clean(stdout, k, strlen(k));
        const char *state = json_string_value(json_object_get(v, "state"));
        printf("  [%s]", state ? state : "?");
        json_t *counts = json_object_get(v, "counts"); /* a fan-out node's tasks */
        if (counts) {
            printf("  tasks %lld/%lld succeeded",
                   (long long)json_integer_value(json_object_get(counts, "succeeded")),
                   (long long)json_integer_value(json_object_get(counts, "total")));
            for (size_t t = 0; t < sizeof(others) / sizeof(others[0]); t++) {
                json_int_t c = json_integer_value(json_object_get(counts, others[t]));
                if (c) printf(", %lld %s", (long long)c, others[t]);
            }
        }
        size_t i;
        json_t *dep;
        json_array_foreach(json_object_get(v, "depends_on"), i, dep)
        {
            const char *up = json_string_value(json_object_get(dep, "node"));
            const char *on = json_string_value(json_object_get(dep, "on"));
            printf("%s", i ? ", " : "  after ");
            cli_put_clean(stdout, up ? up : "?", up ? strlen(up) : 1);
            if (on && !strcmp(on, "any")) printf(" (any end)");
        }
        printf("\n");
    }
    free(order);
    json_decref(memo);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(w, "connections"), i, c)
    {
        const char *from = json_string_value(json_object_get(c, "from"));
        const char *to = json_string_value(json_object_get(c, "to"));
        if (!i) printf("connections:\n");
        printf("  ");
        cli_put_clean(stdout, from ? from : "?", from ? strlen(from) : 1);
        printf(" -> ");
        cli_put_clean(stdout, to ? to : "?", to ? strlen(to) : 1);
        printf("\n");
    }
}

static void print_list(json_t *list)
{
    struct table *t = table_new(5, "id", "name", "state", "progress", "created");
    table_align_right(t, 3);
    table_max_width(t, 1, 40);
    size_t i;
    json_t *w;
    json_array_foreach(list, i, w)
    {
        json_t *p = json_object_get(w, "progress");
        table_add(t, json_string_value(json_object_get(w, "id")));
        table_add(t, json_string_value(json_object_get(w, "name")));
        table_add(t, json_string_value(json_object_get(w, "state")));
        table_addf(t, "%lld/%lld", (long long)json_integer_value(json_object_get(p, "succeeded")),
                   (long long)json_integer_value(json_object_get(p, "total")));
        char at[CLI_TIME_MAX];
        table_add(t, cli_local_time(json_string_value(json_object_get(w, "created_at")), at));
    }
    table_print(t, stdout);
    table_free(t);
}

/* `workflow list`: the pages of GET /v1/workflows, up to `limit` (0: one page, or all). */
static int workflow_list(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"limit", required_argument, NULL, 'n'},
        {"all", no_argument, NULL, 'a'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc, argv, workflow_usage);
    long limit = 0;
    bool all = false;
    int opt, rc;
    while ((opt = cli_getopt(&a, ":n:ah", longopts)) != -1) {
        if (opt == 'a')
            all = true;
        else if (!cli_parse_long(optarg, 1, 1000000000, &limit))
            return cli_usage_error(workflow_usage, "--limit must be a positive integer, not '%s'",
                                   optarg);
    }
    if ((rc = cli_args_none(&a)) != CLI_CONTINUE) return rc;
    struct cli cli;
    if (cli_connect(&cli, &a.conn)) {
        cli_release(&cli);
        return 1;
    }
    json_t *list = json_array();
    char *after = NULL;
    for (;;) {
        long want = limit ? limit - (long)json_array_size(list) : all ? 100 : 20;
        struct buf path = BUF_INIT;
        buf_addf(&path, "/v1/workflows?limit=%ld", want > 100 ? 100 : want);
        if (after) buf_addf(&path, "&after=%s", after);
        json_t *answer = NULL;
        rc = cli_call(&cli, "GET", buf_str(&path), NULL, &answer, "cannot list workflows");
        buf_release(&path);
        if (rc) break;
        json_array_extend(list, json_object_get(answer, "workflows"));
        const char *next = json_string_value(json_object_get(answer, "next"));
        free(after);
        after = next && *next ? xstrdup(next) : NULL;
        json_decref(answer);
        if (!after || (!all && !limit) || (limit && (long)json_array_size(list) >= limit)) break;
    }
    free(after);
    if (rc == 0 && a.json)
        cli_print_json(list);
    else if (rc == 0)
        print_list(list);
    json_decref(list);
    cli_release(&cli);
    return rc;
}

/* submit's arguments: its file, given alone or with -f (as drover submit takes a spec). */
static int parse_submit(struct cli_args *a, const char **file)
{
    static const struct option longopts[] = {
        {"file", required_argument, NULL, 'f'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const char *f = NULL;
    int opt;
    while ((opt = cli_getopt(a, ":f:h", longopts)) != -1) {
        if (f) return cli_usage_error(workflow_usage, "give one workflow file");
        f = optarg;
    }
    if (!f)
        return cli_args_one(a, "which file? give the workflow's JSON file",
                            "the file name is empty", file);
    if (a->exit_code != CLI_CONTINUE) return a->exit_code;
    if (optind < a->argc)
        return cli_usage_error(workflow_usage, "give one workflow file, not -f %s and '%s'", f,
                               a->argv[optind]);
    if (!*f) return cli_usage_error(workflow_usage, "the file name is empty");
    *file = f;
    return CLI_CONTINUE;
}

int cmd_workflow(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub && (!strcmp(sub, "-h") || !strcmp(sub, "--help"))) {
        fputs(workflow_usage, stdout);
        return 0;
    }
    bool submit = sub && !strcmp(sub, "submit"), status = sub && !strcmp(sub, "status");
    bool cancel = sub && !strcmp(sub, "cancel"), retry = sub && !strcmp(sub, "retry");
    if (sub && (!strcmp(sub, "list") || !strcmp(sub, "ls")))
        return workflow_list(argc - 1, argv + 1);
    if (!submit && !status && !cancel && !retry) {
        cli_json_prescan(argc, argv);
        return sub ? cli_usage_error(workflow_usage, "unknown workflow command '%s' (submit, "
                                                     "list, status, cancel or retry)", sub)
                   : cli_usage_error(workflow_usage, "which workflow command? submit, list, "
                                                     "status, cancel or retry");
    }
    struct cli_args a;
    cli_args_init(&a, argc - 1, argv + 1, workflow_usage);
    const char *arg;
    int rc = submit ? parse_submit(&a, &arg)
                    : cli_parse_json_only(&a, "which workflow? give its ID",
                                          "the workflow ID is empty", &arg);
    if (rc != CLI_CONTINUE) return rc;
    json_t *answer = NULL;
    if (submit) {
        struct err e = ERR_INIT;
        json_t *body = cli_load_json(arg, WORKFLOW_FILE_MAX, &e);
        if (!body) {
            cli_error_e(&e);
            return 1;
        }
        rc = cli_request(&a.conn, "POST", "/v1/workflows", body, &answer,
                         "cannot submit workflow '%s'", arg);
        json_decref(body);
    } else {
        char *path = cli_path("/v1/workflows/", arg, status ? "" : cancel ? "/cancel" : "/retry");
        char what[512];
        snprintf(what, sizeof(what), "cannot %s workflow '%s'", sub, arg);
        rc = cli_request_whole_id(&a.conn, status ? "GET" : "POST", path, NULL, "workflow", arg,
                                  &answer, what);
        free(path);
    }
    if (rc == 0 && a.json)
        cli_print_json(answer);
    else if (rc == 0)
        print_graph(answer);
    json_decref(answer);
    return rc;
}
