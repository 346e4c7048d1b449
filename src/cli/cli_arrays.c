/*
 * cli_arrays.c - `drover array list | status|wait|cancel|retry ID` (docs/api.md "Arrays"); the
 * tasks are listed by `drover jobs --array ID` (cli_jobs.c, cli_array_tasks below).
 */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "commands.h"
#include "common/buf.h"
#include "common/uuid.h"
#include "common/xalloc.h"
#include "http/client.h"
#include "job/array.h"

static const char array_usage[] =
    "usage: drover array list [--json] [--limit N | --all]\n"
    "       drover array status [--json] ID\n"
    "       drover array wait [--timeout S] [--json] ID\n"
    "       drover array cancel [--from I] [--to J] [--json] ID\n"
    "       drover array retry [--from I] [--to J] [--json] ID\n"
    "\n"
    "Job arrays: one spec of many tasks, submitted with \"array\" in the spec\n"
    "(drover submit -f SPEC.json; docs/api.md \"Arrays\"). List the tasks with\n"
    "drover jobs --array ID.\n"
    "\n"
    "  list               the arrays, newest first: state and tasks succeeded of each\n"
    "                     (ls is the same)\n"
    "      -n, --limit N  at most N (default 20)\n"
    "      -a, --all      all of them\n"
    "  status ID          the array's tasks counted by state\n"
    "  wait ID            wait for every task to end, printing the counts on stderr as\n"
    "                     they change, then the status; exits 0 when every task\n"
    "                     succeeded, else 1 (and after --timeout)\n"
    "      -t, --timeout S  give up after S seconds (default: as long as it takes)\n"
    "  cancel ID          cancel the tasks that have not ended\n"
    "  retry ID           queue again the tasks that failed or were cancelled\n"
    "      --from I       the first task index of the range (default 0)\n"
    "      --to J         the last task index of the range (default the last)\n"
    "      --json         print the server's JSON answer\n"
    "\n"
    "examples:\n"
    "  drover submit -f array.json             # {\"array\": {\"count\": 1000}, \"command\": ...}\n"
    "  drover array status 0193a1b2-...\n"
    "  drover array wait --timeout 3600 0193a1b2-... && echo all succeeded\n"
    "  drover array cancel --from 500 0193a1b2-...\n"
    "  drover array retry 0193a1b2-...          # every failed or cancelled task\n"
    "  drover jobs --array 0193a1b2-... --state failed\n"
    CLI_COMMON_USAGE;

enum { OPT_FROM = CLI_OPT_FIRST_FREE, OPT_TO };

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* "tasks: 3/10 succeeded, 2 running, ..." of an array's counts. */
static void counts_text(json_t *a, struct buf *b)
{
    json_t *c = json_object_get(a, "counts");
    buf_addf(b, "tasks: %lld/%lld succeeded",
             (long long)json_integer_value(json_object_get(c, "succeeded")),
             (long long)json_integer_value(json_object_get(c, "total")));
    static const char *const others[] = {"running", "leased",    "queued",
                                         "failed",  "cancelled", "archived"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        json_int_t n = json_integer_value(json_object_get(c, others[i]));
        if (n) buf_addf(b, ", %lld %s", (long long)n, others[i]);
    }
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
    struct buf b = BUF_INIT;
    counts_text(a, &b);
    fputs(b.data, stdout);
    buf_release(&b);
    printf("\nqueue: %s, kind: %s", jstr(a, "queue") ? jstr(a, "queue") : "?",
           jstr(a, "kind") ? jstr(a, "kind") : "?");
    if (jstr(a, "source")) printf(" of %s", jstr(a, "source"));
    printf("\n");
}

/* ---- wait ---- */

/*
 * Waiting follows the stream of the array's tasks (array=ID; a larger array's among its
 * queue's job events, its tasks known by their ids) with cli_wait_ended: each task's end,
 * and each cancel or retry by range, is a reason to read the array's counts again; each
 * change of them is printed on stderr.
 */
struct ar_wait {
    const char *id;
    bool all;   /* the stream is its queue's: which jobs are its tasks? */
    bool quiet; /* --json: no lines for humans */
};

/* Whether job `job` is a task of array `array` (its index read from the id, made again). */
static bool task_of(const char *array, const char *job)
{
    int64_t index = job ? array_task_index(job) : -1;
    char made[UUID_STR_LEN];
    if (index < 0) return false;
    array_task_id(array, index, made);
    return !strcmp(made, job);
}

static int ar_on_event(void *arg, int64_t seq, const char *type, json_t *ev, struct err *e)
{
    (void)seq;
    (void)e;
    struct ar_wait *w = arg;
    if (type && !strncmp(type, "array.", 6)) return CLI_FOLLOW_STOP; /* cancelled or retried */
    const char *job = jstr(ev, "job");
    if (!job || (w->all && !task_of(w->id, job))) return 0;
    return cli_job_is_terminal(jstr(ev, "state")) ? CLI_FOLLOW_STOP : 0;
}

/* The counts of the array read `now`, on stderr when they changed since `before`. */
static void ar_read(void *arg, json_t *before, json_t *now)
{
    struct ar_wait *w = arg;
    if (w->quiet) return;
    struct buf was = BUF_INIT, is = BUF_INIT;
    counts_text(before, &was);
    counts_text(now, &is);
    if (strcmp(was.data, is.data)) {
        fprintf(stderr, "array %s %s\n", w->id, is.data);
        fflush(stderr);
    }
    buf_release(&was);
    buf_release(&is);
}

/* `array wait` and `submit --wait` of an array: its exit code (0: every task succeeded). */
int cli_array_wait(struct cli *cli, const char *given, double timeout_s, bool json)
{
    json_t *first = NULL;
    char *path = cli_path("/v1/arrays/", given, "");
    int rc = cli_call(cli, "GET", path, NULL, &first, "cannot wait for array '%s'", given);
    if (rc) {
        free(path);
        return rc;
    }
    char *id = xstrdup(jstr(first, "id") ? jstr(first, "id") : given);
    bool all = json_integer_value(json_object_get(first, "count")) >= JOB_EVENTS_FILTER_MAX;
    char *escaped = http_escape(all ? (jstr(first, "queue") ? jstr(first, "queue") : "") : id);
    char *query = xasprintf(all ? "type=job&queue=%s" : "array=%s", escaped);
    struct ar_wait w = {.id = id, .all = all, .quiet = json};
    struct cli_wait cw = {.kind = "array", .path = path, .query = query,
                          .on_event = ar_on_event, .on_read = ar_read, .print = print_summary,
                          .arg = &w, .json = json, .last = first};
    rc = cli_wait_ended(cli, &cw, timeout_s);
    if (rc == 0) rc = strcmp(jstr(cw.last, "state") ? jstr(cw.last, "state") : "?", "succeeded");
    json_decref(cw.last);
    free(query);
    free(escaped);
    free(id);
    free(path);
    return rc ? 1 : 0;
}

static void print_list(json_t *list)
{
    struct table *t = table_new(6, "id", "name", "queue", "state", "tasks", "created");
    table_align_right(t, 4);
    table_max_width(t, 1, 40);
    size_t i;
    json_t *arr;
    json_array_foreach(list, i, arr)
    {
        json_t *c = json_object_get(arr, "counts");
        table_add(t, jstr(arr, "id"));
        table_add(t, jstr(arr, "name") ? jstr(arr, "name") : "-");
        table_add(t, jstr(arr, "queue"));
        table_add(t, jstr(arr, "state"));
        table_addf(t, "%lld/%lld", (long long)json_integer_value(json_object_get(c, "succeeded")),
                   (long long)json_integer_value(json_object_get(c, "total")));
        char at[CLI_TIME_MAX];
        table_add(t, cli_local_time(jstr(arr, "created_at"), at));
    }
    table_print(t, stdout);
    table_free(t);
}

int cmd_array(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub && (!strcmp(sub, "-h") || !strcmp(sub, "--help"))) {
        fputs(array_usage, stdout);
        return 0;
    }
    if (sub && (!strcmp(sub, "list") || !strcmp(sub, "ls")))
        return cli_list_command(argc - 1, argv + 1, array_usage, "/v1/arrays", "arrays",
                                print_list);
    bool status = sub && !strcmp(sub, "status"), cancel = sub && !strcmp(sub, "cancel");
    bool retry = sub && !strcmp(sub, "retry"), wait = sub && !strcmp(sub, "wait");
    if (!status && !cancel && !retry && !wait) {
        cli_json_prescan(argc, argv);
        return sub ? cli_usage_error(array_usage,
                                     "unknown array command '%s' (list, status, wait, cancel or "
                                     "retry)",
                                     sub)
                   : cli_usage_error(array_usage,
                                     "which array command? list, status, wait, cancel or retry");
    }
    static const struct option longopts[] = {
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        {"timeout", required_argument, NULL, 't'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc - 1, argv + 1, array_usage);
    long from = -1, to = -1;
    double timeout = -1;
    int opt, rc;
    while ((opt = cli_getopt(&a, ":t:h", longopts)) != -1) {
        if (opt == 't') {
            if (!wait) return cli_usage_error(array_usage, "--timeout is for wait");
            if (!cli_parse_seconds(optarg, &timeout))
                return cli_usage_error(array_usage, CLI_WAIT_TIMEOUT_BAD, optarg);
            continue;
        }
        long *v = opt == OPT_FROM ? &from : opt == OPT_TO ? &to : NULL;
        if (!v) continue;
        if (status || wait)
            return cli_usage_error(array_usage, "--from and --to are for cancel and retry");
        if (!cli_parse_long(optarg, 0, 1000000000, v))
            return cli_usage_error(array_usage, "--%s must be a task index (0 or more), not '%s'",
                                   opt == OPT_FROM ? "from" : "to", optarg);
    }
    const char *id;
    if ((rc = cli_args_one(&a, "which array? give its ID", "the array ID is empty", &id)) !=
        CLI_CONTINUE)
        return rc;
    if (wait) {
        struct cli cli;
        rc = cli_connect(&cli, &a.conn) ? 1 : cli_array_wait(&cli, id, timeout, a.json);
        cli_release(&cli);
        return rc;
    }
    json_t *answer = NULL;
    char *path = cli_path("/v1/arrays/", id, status ? "" : cancel ? "/cancel" : "/retry");
    json_t *body = status ? NULL : json_object();
    if (from >= 0) json_object_set_new(body, "from", json_integer(from));
    if (to >= 0) json_object_set_new(body, "to", json_integer(to));
    rc = cli_request(&a.conn, status ? "GET" : "POST", path, body, &answer, "cannot %s array '%s'",
                     sub, id);
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
