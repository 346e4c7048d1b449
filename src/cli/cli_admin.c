/*
 * cli_admin.c - administration commands: `drover token create|revoke|ls`,
 * `drover tenant set|list`.
 *
 * A new token is shown once by the server; `token create` prints it alone on
 * stdout so that `DROVER_TOKEN=$(drover token create ...)` works.
 */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "commands.h"

static const char token_usage[] =
    "usage: drover token create --role client|agent|admin --name NAME [--tenant T] [--json]\n"
    "       drover token revoke [--json] NAME\n"
    "       drover token ls [--json]\n"
    "\n"
    "Creates an API token (printed once, alone on its line), revokes one by name, or\n"
    "lists them: name, role, tenant, when made (never a secret; list is the same).\n"
    "Needs the admin role.\n"
    "\n"
    "  -r, --role ROLE    client (jobs, blobs, reading agents and queues), agent (the\n"
    "                     agent protocol) or admin (everything)\n"
    "  -n, --name NAME    the token's name, used to revoke it\n"
    "  -T, --tenant T     the tenant its jobs count against (quotas and fair share;\n"
    "                     default: one of its own, named NAME)\n"
    "      --json         print the server's JSON answer\n"
    "\n"
    "examples:\n"
    "  drover token create --role client --name alice\n"
    "  drover token create --role client --name alice-ci --tenant alice\n"
    "  drover token create --role agent --name worker-7 --json | jq -r .token > agent.token\n"
    "  drover token revoke alice\n"
    "  drover token ls\n"
    CLI_COMMON_USAGE;

static int token_create(struct cli *cli, const char *role, const char *name, const char *tenant,
                        bool json)
{
    json_t *body = json_pack("{s:s, s:s}", "role", role, "name", name);
    if (body && tenant && json_object_set_new(body, "tenant", json_string(tenant))) {
        json_decref(body);
        body = NULL;
    }
    json_t *answer = NULL;
    int rc = 1;
    if (!body) {
        cli_error(CLI_ERR_INVALID, tenant ? "tenant" : "name",
                  "the token's name and tenant must be UTF-8 text");
        return 1;
    }
    if (cli_call(cli, "POST", "/v1/tokens", body, &answer, "cannot create token '%s'", name))
        goto out;
    const char *token = json_string_value(json_object_get(answer, "token"));
    if (json) {
        cli_print_json(answer);
    } else if (token) {
        printf("%s\n", token);
    } else {
        cli_error(CLI_ERR_INTERNAL, NULL, "the server's answer holds no token");
        goto out;
    }
    rc = 0;
out:
    json_decref(answer);
    json_decref(body);
    return rc;
}

static int token_revoke(struct cli *cli, const char *name, bool json)
{
    json_t *answer = NULL;
    char *path = cli_path("/v1/tokens/", name, "");
    int rc = cli_call(cli, "DELETE", path, NULL, &answer, "cannot revoke token '%s'", name);
    free(path);
    if (rc == 0) {
        if (!json)
            printf("revoked %s\n", name);
        else if (answer)
            cli_print_json(answer);
        else
            puts("{}");
    }
    json_decref(answer);
    /* its triggers and schedules stay (a token made again under its name owns them): say so,
       as each of their fires now fails */
    json_t *list = NULL;
    size_t i, n = 0;
    json_t *t;
    if (rc == 0 && !cli_get_pages(cli, "/v1/triggers", "triggers", 0, true, &list))
        json_array_foreach(list, i, t)
        {
            const char *owner = json_string_value(json_object_get(t, "owner"));
            n += owner && !strcmp(owner, name);
        }
    if (n)
        cli_notice("note",
                   "%zu trigger(s) or schedule(s) of '%s' stay and fail to fire without its "
                   "token: make a token named '%s' again, or remove them (drover trigger ls, "
                   "drover trigger rm ID)",
                   n, name, name);
    json_decref(list);
    return rc;
}

static int token_list(struct cli *cli, bool json)
{
    json_t *answer = NULL;
    if (cli_call(cli, "GET", "/v1/tokens", NULL, &answer, "cannot list tokens")) return 1;
    if (json) {
        cli_print_json(answer);
    } else {
        struct table *t = table_new(4, "name", "role", "tenant", "created");
        size_t i;
        json_t *tok;
        json_array_foreach(json_object_get(answer, "tokens"), i, tok)
        {
            char created[32];
            cli_format_time(json_string_value(json_object_get(tok, "created_at")), false,
                            created, sizeof(created));
            table_add(t, json_string_value(json_object_get(tok, "name")));
            table_add(t, json_string_value(json_object_get(tok, "role")));
            table_add(t, json_string_value(json_object_get(tok, "tenant")));
            table_add(t, created);
        }
        table_print(t, stdout);
        table_free(t);
    }
    json_decref(answer);
    return 0;
}

int cmd_token(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"role", required_argument, NULL, 'r'},
        {"name", required_argument, NULL, 'n'},
        {"tenant", required_argument, NULL, 'T'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const char *role = NULL, *name = NULL, *tenant = NULL;
    int opt, rc;

    cli_json_prescan(argc, argv); /* a usage error before the subcommand's options is JSON too */
    if (argc < 2) return cli_usage_error(token_usage, "token what? 'create', 'revoke' or 'ls'");
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        fputs(token_usage, stdout);
        return 0;
    }
    bool create = !strcmp(sub, "create"), list = !strcmp(sub, "ls") || !strcmp(sub, "list");
    if (!create && !list && strcmp(sub, "revoke"))
        return cli_usage_error(token_usage,
                               "'%s' is not a token command: 'create', 'revoke' or 'ls'", sub);

    /* Parse what follows the subcommand, whose name takes argv[0]'s place. */
    struct cli_args a;
    cli_args_init(&a, argc - 1, argv + 1, token_usage);
    while ((opt = cli_getopt(&a, ":r:n:T:h", longopts)) != -1) {
        switch (opt) {
        case 'r':
            role = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'T':
            tenant = optarg;
            break;
        }
    }
    if (list) {
        if ((rc = cli_args_none(&a)) != CLI_CONTINUE) return rc;
        if (role || name || tenant)
            return cli_usage_error(token_usage, "token ls takes no --role, --name or --tenant");
    } else if (create) {
        if ((rc = cli_args_none(&a)) != CLI_CONTINUE) return rc;
        if (!role)
            return cli_usage_error(token_usage, "token create needs --role client|agent|admin");
        if (strcmp(role, "client") && strcmp(role, "agent") && strcmp(role, "admin"))
            return cli_usage_error(token_usage, "--role must be client, agent or admin, not '%s'",
                                   role);
        if (!name || !*name) return cli_usage_error(token_usage, "token create needs --name NAME");
        if (tenant && !*tenant) return cli_usage_error(token_usage, "--tenant needs a name");
    } else {
        if (a.exit_code != CLI_CONTINUE) return a.exit_code;
        if (role) return cli_usage_error(token_usage, "token revoke takes no --role");
        if (tenant) return cli_usage_error(token_usage, "token revoke takes no --tenant");
        if (!name && optind < a.argc) name = a.argv[optind++];
        if ((rc = cli_args_none(&a)) != CLI_CONTINUE) return rc;
        if (!name || !*name) return cli_usage_error(token_usage, "which token? give its NAME");
    }

    struct cli cli;
    rc = 1;
    if (cli_connect(&cli, &a.conn) == 0)
        rc = list     ? token_list(&cli, a.json)
             : create ? token_create(&cli, role, name, tenant, a.json)
                      : token_revoke(&cli, name, a.json);
    cli_release(&cli);
    return rc;
}

/* ---- tenants ---- */

static const char tenant_usage[] =
    "usage: drover tenant set NAME [--max-running N] [--max-queued N] [--weight W] [--json]\n"
    "       drover tenant list [--json]\n"
    "\n"
    "A tenant's quotas and fair share (each token belongs to a tenant: drover token\n"
    "create --tenant). set replaces the tenant's own settings: a limit left out is\n"
    "the server's (--tenant-max-running, --tenant-max-queued), 0 is none. list shows\n"
    "the tenants with settings of their own, the limits in force and their jobs now\n"
    "(ls is the same).\n"
    "Needs the admin role.\n"
    "\n"
    "      --max-running N  jobs leased or running at a time; more wait in the queue\n"
    "      --max-queued N   jobs queued at a time; a submission past it is refused (429)\n"
    "      --weight W       its share of a queue against other tenants' (1-1000, default 1)\n"
    "      --json           print the server's JSON answer\n"
    "\n"
    "examples:\n"
    "  drover tenant set lab --max-running 20 --max-queued 100000 --weight 2\n"
    "  drover tenant set lab                  # back to the server's limits, weight 1\n"
    "  drover tenant list\n"
    CLI_COMMON_USAGE;

static const char *limit_text(json_t *v, char *buf, size_t n)
{
    if (!json_is_integer(v))
        return "-";
    snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    return buf;
}

static void print_tenants(json_t *answer)
{
    char a[32], b[32], c[32], d[32], w[32];
    json_t *defaults = json_object_get(answer, "defaults");
    printf("%-20s %12s %12s %7s %9s %9s\n", "TENANT", "MAX_RUNNING", "MAX_QUEUED", "WEIGHT",
           "RUNNING", "QUEUED");
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(answer, "tenants"), i, t)
    {
        printf("%-20s %12s %12s %7s %9s %9s\n",
               json_string_value(json_object_get(t, "name")),
               limit_text(json_object_get(t, "max_running"), a, sizeof(a)),
               limit_text(json_object_get(t, "max_queued"), b, sizeof(b)),
               limit_text(json_object_get(t, "weight"), w, sizeof(w)),
               limit_text(json_object_get(t, "running"), c, sizeof(c)),
               limit_text(json_object_get(t, "queued"), d, sizeof(d)));
    }
    printf("other tenants: max_running %s, max_queued %s (the server's; - is none)\n",
           limit_text(json_object_get(defaults, "max_running"), a, sizeof(a)),
           limit_text(json_object_get(defaults, "max_queued"), b, sizeof(b)));
}

/* A number option (lo..max; 0 is no limit) into the body; -1 after a usage error. */
static int number_opt(json_t *body, const char *key, const char *opt, const char *v, long lo,
                      long max)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || end == v || n < lo || n > max) {
        cli_usage_error(tenant_usage, "--%s must be a whole number from %ld%s to %ld, not '%s'",
                        opt, lo, lo ? "" : " (no limit)", max, v);
        return -1;
    }
    json_object_set_new(body, key, json_integer(n));
    return 0;
}

int cmd_tenant(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"max-running", required_argument, NULL, 'R'},
        {"max-queued", required_argument, NULL, 'Q'},
        {"weight", required_argument, NULL, 'W'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    int opt, rc;
    cli_json_prescan(argc, argv);
    if (argc < 2) return cli_usage_error(tenant_usage, "tenant what? 'set' or 'list'");
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        fputs(tenant_usage, stdout);
        return 0;
    }
    bool set = !strcmp(sub, "set");
    if (!set && strcmp(sub, "list") && strcmp(sub, "ls"))
        return cli_usage_error(tenant_usage, "'%s' is not a tenant command: 'set' or 'list'", sub);
    struct cli_args a;
    cli_args_init(&a, argc - 1, argv + 1, tenant_usage);
    json_t *body = json_object();
    bool bad = false;
    while ((opt = cli_getopt(&a, ":h", longopts)) != -1) {
        if (bad) continue;
        if (!set) {
            bad = true;
            cli_usage_error(tenant_usage, "tenant %s takes no --%s", sub,
                            opt == 'R' ? "max-running" : opt == 'Q' ? "max-queued" : "weight");
            continue;
        }
        switch (opt) {
        case 'R': bad = number_opt(body, "max_running", "max-running", optarg, 0, 10000000); break;
        case 'Q': bad = number_opt(body, "max_queued", "max-queued", optarg, 0, 10000000); break;
        case 'W': bad = number_opt(body, "weight", "weight", optarg, 1, 1000); break;
        }
    }
    const char *name = NULL;
    if (bad) {
        json_decref(body);
        return 2;
    }
    if (a.exit_code != CLI_CONTINUE) {
        json_decref(body);
        return a.exit_code;
    }
    rc = set ? cli_args_one(&a, "which tenant? give its NAME", "the tenant's NAME is empty", &name)
             : cli_args_none(&a);
    if (rc != CLI_CONTINUE) {
        json_decref(body);
        return rc;
    }
    struct cli cli;
    json_t *answer = NULL;
    rc = 1;
    if (cli_connect(&cli, &a.conn) == 0) {
        char *path = set ? cli_path("/v1/tenants/", name, "") : NULL;
        rc = set ? cli_call(&cli, "PUT", path, body, &answer, "cannot set tenant '%s'", name)
                 : cli_call(&cli, "GET", "/v1/tenants", NULL, &answer, "cannot list tenants");
        free(path);
        if (!rc && a.json)
            cli_print_json(answer);
        else if (!rc && set) {
            char r[32], q[32];
            printf("%s: max_running %s, max_queued %s, weight %lld (- is no limit)\n", name,
                   limit_text(json_object_get(answer, "max_running"), r, sizeof(r)),
                   limit_text(json_object_get(answer, "max_queued"), q, sizeof(q)),
                   (long long)json_integer_value(json_object_get(answer, "weight")));
        }
        else if (!rc)
            print_tenants(answer);
    }
    json_decref(answer);
    json_decref(body);
    cli_release(&cli);
    return rc;
}
