/*
 * cli_admin.c - administration commands: `drover token create|revoke`.
 *
 * A new token is shown once by the server; `token create` prints it alone on
 * stdout so that `DROVER_TOKEN=$(drover token create ...)` works.
 */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "commands.h"

static const char token_usage[] =
    "usage: drover token create --role client|agent|admin --name NAME [--json]\n"
    "       drover token revoke [--json] NAME\n"
    "\n"
    "Creates an API token (printed once, alone on its line) or revokes one by name.\n"
    "Needs the admin role.\n"
    "\n"
    "  -r, --role ROLE    client (jobs, blobs, reading agents and queues), agent (the\n"
    "                     agent protocol) or admin (everything)\n"
    "  -n, --name NAME    the token's name, used to revoke it\n"
    "      --json         print the server's JSON answer\n"
    "\n"
    "examples:\n"
    "  drover token create --role client --name alice\n"
    "  drover token create --role agent --name worker-7 --json | jq -r .token > agent.token\n"
    "  drover token revoke alice\n"
    CLI_COMMON_USAGE;

static int token_create(struct cli *cli, const char *role, const char *name, bool json)
{
    json_t *body = json_pack("{s:s, s:s}", "role", role, "name", name);
    json_t *answer = NULL;
    int rc = 1;
    if (!body) {
        cli_error(CLI_ERR_INVALID, "name", "the token's name must be UTF-8 text");
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
    return rc;
}

int cmd_token(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"role", required_argument, NULL, 'r'},
        {"name", required_argument, NULL, 'n'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const char *role = NULL, *name = NULL;
    int opt, rc;

    cli_json_prescan(argc, argv); /* a usage error before the subcommand's options is JSON too */
    if (argc < 2) return cli_usage_error(token_usage, "token what? 'create' or 'revoke'");
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        fputs(token_usage, stdout);
        return 0;
    }
    bool create = !strcmp(sub, "create");
    if (!create && strcmp(sub, "revoke"))
        return cli_usage_error(token_usage, "'%s' is not a token command: 'create' or 'revoke'",
                               sub);

    /* Parse what follows the subcommand, whose name takes argv[0]'s place. */
    struct cli_args a;
    cli_args_init(&a, argc - 1, argv + 1, token_usage);
    while ((opt = cli_getopt(&a, ":r:n:h", longopts)) != -1) {
        switch (opt) {
        case 'r':
            role = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        }
    }
    if (create) {
        if ((rc = cli_args_none(&a)) != CLI_CONTINUE) return rc;
        if (!role)
            return cli_usage_error(token_usage, "token create needs --role client|agent|admin");
        if (strcmp(role, "client") && strcmp(role, "agent") && strcmp(role, "admin"))
            return cli_usage_error(token_usage, "--role must be client, agent or admin, not '%s'",
                                   role);
        if (!name || !*name) return cli_usage_error(token_usage, "token create needs --name NAME");
    } else {
        if (a.exit_code != CLI_CONTINUE) return a.exit_code;
        if (role) return cli_usage_error(token_usage, "token revoke takes no --role");
        if (!name && optind < a.argc) name = a.argv[optind++];
        if ((rc = cli_args_none(&a)) != CLI_CONTINUE) return rc;
        if (!name || !*name) return cli_usage_error(token_usage, "which token? give its NAME");
    }

    struct cli cli;
    rc = 1;
    if (cli_connect(&cli, &a.conn) == 0)
        rc = create ? token_create(&cli, role, name, a.json) : token_revoke(&cli, name, a.json);
    cli_release(&cli);
    return rc;
}
