/*
 * cli.h - what the client commands (submit, status, jobs, token, ...) share:
 * parsing their options, finding the server and the token, calling it, and
 * printing results and errors.
 *
 * The server is --server URL, else $DROVER_SERVER, else DROVER_DEFAULT_SERVER.
 * The token is --token-file FILE (read as fs_read_secret reads: refused when
 * its group or others may access it), or --token T (warned against: every
 * user of the machine can read a command line; its value in argv is
 * overwritten once copied), else $DROVER_TOKEN, else, when the server is on
 * this machine (a loopback host), the admin token the server wrote to
 * <data dir>/admin.token, the data dir being --data DIR or config_default_data_dir().
 *
 * Messages go to stderr as "drover: <message>"; the return value of a command
 * is its exit code (commands.h): 0, 1 (the request was refused or the job
 * failed), 2 (usage error). With --json, each error message is instead one
 * line of JSON on stderr, {"error": {"code", "message", "field"}}, the shape
 * of the API's errors (cli_error): a refusal of the server keeps its code and
 * its other members (a quota's "limit", "tenant", "max"...), the message with
 * the CLI's context before it; exit codes are the same.
 */
#ifndef DROVER_CLI_H
#define DROVER_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>

#include "common/buf.h"
#include "common/config.h"
#include "common/err.h"
#include "http/client.h"

/* Option values for getopt_long that have no short letter. */
enum {
    CLI_OPT_SERVER = 256,
    CLI_OPT_TOKEN,
    CLI_OPT_TOKEN_FILE,
    CLI_OPT_DATA,
    CLI_OPT_JSON,
    CLI_OPT_CA_FILE,
    CLI_OPT_FIRST_FREE, /* commands number their own long-only options from here */
};

/* --json, for a command that can print the server's JSON; cli_getopt sets cli_args.json. */
#define CLI_JSON_LONG_OPTION                                                                       \
    {                                                                                              \
        "json", no_argument, NULL, CLI_OPT_JSON                                                    \
    }

/* Every client command accepts these; put them in its struct option array. */
#define CLI_COMMON_LONG_OPTIONS                                                                    \
    {"server", required_argument, NULL, CLI_OPT_SERVER},                                           \
        {"token", required_argument, NULL, CLI_OPT_TOKEN},                                         \
        {"token-file", required_argument, NULL, CLI_OPT_TOKEN_FILE},                               \
        {"data", required_argument, NULL, CLI_OPT_DATA},                                           \
        {"ca-file", required_argument, NULL, CLI_OPT_CA_FILE},                                     \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

/* The usage text's lines for the common options. */
#define CLI_COMMON_USAGE                                                                           \
    "\nconnection:\n"                                                                              \
    "      --server URL   the drover server, or a list A,B of servers sharing one database\n"   \
    "                     (the next is tried when one cannot be reached or answers 503;\n"      \
    "                     default $DROVER_SERVER, else " DROVER_DEFAULT_SERVER ")\n"              \
    "      --token-file F read the API token from file F (chmod 600; default\n"                    \
    "                     $DROVER_TOKEN; on the server's machine, the admin token in the\n"        \
    "                     data dir)\n"                                                             \
    "      --token T      the token itself: avoid it, every user of this machine can\n"            \
    "                     read a command line (ps)\n"                                              \
    "      --data DIR     the server's data dir, where admin.token is (default\n"                  \
    "                     $DROVER_DATA, else ~/.local/share/drover)\n"                             \
    "      --ca-file F    CA certificates (PEM) an https:// server's certificate may be\n"         \
    "                     signed by, beside the system's (default $DROVER_CA_FILE)\n"

struct cli_opts {
    const char *server;     /* borrowed from argv; NULL when not given */
    const char *token;      /* --token: a copy (argv's is overwritten), kept until exit */
    const char *token_file; /* --token-file */
    const char *data;
    const char *ca_file;    /* --ca-file */
};

/* What the cli_getopt family returns when the command is to go on. */
#define CLI_CONTINUE (-1)

/* A command's arguments as its options are parsed (cli_getopt). */
struct cli_args {
    int argc;
    char **argv;
    const char *usage;    /* the command's usage text: --help, usage errors */
    struct cli_opts conn; /* --server, --token, --data */
    bool json;            /* --json was given */
    int exit_code;        /* CLI_CONTINUE, or what the command returns now (--help, bad option) */
};

/*
 * Readies `a` for cli_getopt over argv (argv[0] is the command's name); no
 * allocation. When "--json" is among the arguments before "--", messages are
 * JSON from now on, so that a usage error met while parsing is JSON too.
 */
void cli_args_init(struct cli_args *a, int argc, char **argv, const char *usage);

/* Looks for "--json" in argv[1..] before "--" and sets the message format (cli_args_init). */
void cli_json_prescan(int argc, char **argv);

/*
 * Error codes of cli_error beyond the API's own (invalid_argument, not_found,
 * conflict, permission_denied, unauthenticated, unavailable, ...), which are
 * used as they are when the server refused a request:
 */
#define CLI_ERR_USAGE "usage"              /* a usage error (exit code 2) */
#define CLI_ERR_IO "io"                    /* a local file could not be read or written */
#define CLI_ERR_TIMEOUT "timeout"          /* `wait --timeout` ran out */
#define CLI_ERR_CORRUPT "corrupt"          /* bytes sent or received do not match their SHA-256 */
#define CLI_ERR_INVALID "invalid_argument" /* bad local input (a spec file, a name) */
#define CLI_ERR_INTERNAL "internal"        /* the server's answer is not what the API says */

/*
 * Prints an error: "drover: <message>" on stderr, or with --json one line
 * {"error": {"code": code, "message": ..., "field": field or null}} on stderr
 * (bytes that are not UTF-8 become '?').
 */
void cli_error(const char *code, const char *field, const char *fmt, ...) PRINTF_LIKE(3, 4);
/*
 * A notice that changes no exit code, kind "warning" or "note": "drover: <kind>: <message>"
 * on stderr (control characters as '?': it may quote the server), or with --json one line
 * {"<kind>": {"message": ...}}.
 */
void cli_notice(const char *kind, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* cli_error with e's message, field and code (ERR_IO: "io", else the API's code for e->code). */
void cli_error_e(const struct err *e);

/*
 * getopt_long over a->argv (optstring starting with ':' or "+:" and holding
 * 'h') that does itself what every command does alike: it records the common
 * options and --json in `a`, prints the usage on stdout for -h/--help (exit
 * code 0) and the synopsis with what was wrong on stderr for an unknown option
 * or a missing value (exit code 2). Returns the command's next own option, or
 * -1 when the options are over or a->exit_code says to stop. Use it as
 *
 *     while ((opt = cli_getopt(&a, ":t:h", longopts)) != -1)
 *         ...the command's own options...
 *     if ((rc = cli_args_one(&a, CLI_JOB_ID_MISSING, CLI_JOB_ID_EMPTY, &id)) != CLI_CONTINUE)
 *         return rc;
 */
int cli_getopt(struct cli_args *a, const char *optstring, const struct option *longopts);

/*
 * After cli_getopt, for a command that takes no positional argument: returns
 * a->exit_code when parsing stopped, 2 after "unexpected argument 'x'" when
 * one is left, else CLI_CONTINUE.
 */
int cli_args_none(struct cli_args *a);

/*
 * After cli_getopt, for a command that takes one positional argument, not
 * empty (*arg, borrowed from argv): returns a->exit_code when parsing stopped,
 * 2 after the message `missing` when there is none, `empty` when it is "",
 * "unexpected argument 'x'" when there are more; else CLI_CONTINUE.
 */
int cli_args_one(struct cli_args *a, const char *missing, const char *empty, const char **arg);
/* cli_args_one's messages for the commands that take a job ID. */
#define CLI_JOB_ID_MISSING "which job? give its ID"
#define CLI_JOB_ID_EMPTY "the job ID is empty"
/* The usage error of a wait's --timeout that is not a number of seconds (%s: the value). */
#define CLI_WAIT_TIMEOUT_BAD "--timeout must be a number of seconds, not '%s'"

/*
 * The whole parsing for a command whose only option of its own is --json: the
 * cli_getopt loop, then cli_args_none (arg NULL) or cli_args_one. Returns
 * CLI_CONTINUE or the exit code.
 */
int cli_parse_json_only(struct cli_args *a, const char *missing, const char *empty,
                        const char **arg);

/*
 * Handles getopt_long's '?' and ':' answers (opterr = 0, optstring starting
 * with ':' or "+:"): prints what was wrong and the synopsis on stderr; returns 2.
 */
int cli_bad_option(int opt, char **argv, const char *usage);
/*
 * Prints "drover: <message>" and the synopsis of `usage` (its lines up to the
 * first blank one, which begin "usage: drover CMD") on stderr; returns 2.
 * With --json: the message alone, as cli_error with the code "usage".
 */
int cli_usage_error(const char *usage, const char *fmt, ...) PRINTF_LIKE(2, 3);

struct cli {
    struct http_client http;
    char *token_file;         /* the admin.token the token was read from, or NULL; owned */
    const char *token_source; /* "--token", "DROVER_TOKEN", "file" or NULL (no token) */
    long status;              /* the HTTP status of the last cli_call's answer */
};

/*
 * Finds the server and the token as described at the top of this file and
 * prepares cli->http. Returns 0, or prints the reason and returns 1 (release
 * is harmless then).
 */
int cli_connect(struct cli *cli, const struct cli_opts *o);
void cli_release(struct cli *cli);

/*
 * Calls the server (see http_client_json). On failure prints
 * "drover: <what>: <why>" (just "<why>" when the server could not be reached)
 * and returns 1; *resp is then NULL. `what` is a printf format saying what
 * failed ("cannot cancel job '%s'"). On success *resp is the answer (the
 * caller owns it; NULL for an empty body) and the return is 0.
 */
int cli_call(struct cli *cli, const char *method, const char *path, json_t *body, json_t **resp,
             const char *what, ...) PRINTF_LIKE(6, 7);

/*
 * For a command that makes one request: cli_connect with `o`, cli_call and
 * cli_release. Returns 0 or 1 (after printing why) as cli_call; *resp as there.
 */
int cli_request(const struct cli_opts *o, const char *method, const char *path, json_t *body,
                json_t **resp, const char *what, ...) PRINTF_LIKE(6, 7);

/*
 * A listing read page by page: GET path?limit=&after= (the answer's array under `key`, its
 * cursor "next") until `limit` items (0: one page of 20; with `all`, every page). 0 with
 * *list the items, or 1 after saying why (*list NULL).
 */
int cli_get_pages(struct cli *cli, const char *path, const char *key, long limit, bool all,
                  json_t **list);
/*
 * A listing subcommand (`workflow list`, `array list`): its options (--limit N, --all,
 * --json and the connection's) from argv, then cli_get_pages of `path` and `key`, printed by
 * `print` (or as JSON). Its exit code.
 */
int cli_list_command(int argc, char **argv, const char *usage, const char *path,
                     const char *key, void (*print)(json_t *list));

/*
 * After job `id` was not found (e->code ERR_NOTFOUND, else nothing is done):
 * when `id` is a job array's or a workflow's, adds to e's message where to look
 * instead, the subcommand `sub` of `drover array` or `drover workflow`:
 * "job 'x' not found; 'x' is a job array: drover array status x".
 */
void cli_not_a_job(struct cli *cli, const char *id, const char *sub, struct err *e);

/* prefix + `id` URL-escaped + suffix ("/v1/jobs/", id, "/cancel"); the caller frees it. */
char *cli_path(const char *prefix, const char *id, const char *suffix);

/* True for the states a job does not leave: succeeded, failed, cancelled. */
bool cli_job_is_terminal(const char *state);
/* The job in a server's answer: some wrap it ({"job": {...}}), some are it (borrowed). */
json_t *cli_job_of(json_t *answer);

/*
 * Prints "drover: <what>: <e's message>" with hints for 401 and 403 and the
 * field (cli_error). When the message already names the subject that `what`
 * ends with ("cannot cancel job 'x'" and "job 'x' is already cancelled"), the
 * subject is not said twice: "cannot cancel: job 'x' is already cancelled",
 * and a not_found message stands alone ("job 'x' not found").
 */
void cli_print_err(const struct cli *cli, const struct err *e, long status, const char *what);

/* Prints s[0..n), which may hold anything, so that it cannot drive the terminal: control
   characters but tab become '?'. NULL s prints nothing. */
void cli_put_clean(FILE *f, const char *s, size_t n);

/* Pretty-prints `j` and a newline on stdout. */
void cli_print_json(json_t *j);

/*
 * Reads the whole of `path` ("-" for stdin) into `out`, up to `max` bytes.
 * Returns 0, or ERR_IO / ERR_TOOLARGE with e set ("cannot read 'x': no such file").
 */
int cli_read_file(const char *path, size_t max, struct buf *out, struct err *e);

/*
 * Reads and parses the JSON file `path` ("-" for stdin; at most `max` bytes)
 * that a user gives (a spec, a definition): an object or an array. A key given
 * twice in one object is refused, as the API refuses it. Returns the JSON (the
 * caller's), or NULL with e set: ERR_IO / ERR_TOOLARGE (cli_read_file), or
 * ERR_INVALID naming the file and where ("'x.json' is not valid JSON: line 2,
 * column 10: ...", "'x.json' has the key 'command' twice in one object ...").
 */
json_t *cli_load_json(const char *path, size_t max, struct err *e);

/*
 * `drover jobs --array ID` (cli_arrays.c): the array's tasks from..to (-1: from the first, to
 * the last) in `state` (NULL: any), at most `limit` (0: one page; `all`: every page), as a
 * table or JSON. 0, or 1 when the server refused (the message printed).
 */
int cli_array_tasks(struct cli *cli, const char *id, const char *state, long from, long to,
                    long limit, bool all, bool json);
/*
 * `drover array wait ID` and `drover submit --wait` of an array (cli_arrays.c): follows the
 * array until every task ended or `timeout_s` (< 0: none) ran out, its counts on stderr as
 * they change, then prints it. 0 when every task succeeded, else 1.
 */
int cli_array_wait(struct cli *cli, const char *id, double timeout_s, bool json);

/* ---- the event stream (cli_events.c) ---- */

/* What an on_event or on_start callback returns to end cli_follow with 0. */
#define CLI_FOLLOW_STOP (-100)
/* What cli_follow returns when its timeout ran out. */
#define CLI_FOLLOW_TIMEOUT (-101)

struct cli_follow {
    const char *query; /* "job=ID,ID&queue=Q&type=job", escaped, or NULL */
    int64_t since;     /* the last seq seen; -1 for "from now on", set from the server's word */
    /* Each (re)connection, once the server said where its stream starts; NULL for none. */
    int (*on_start)(void *arg, struct err *e);
    /* Each event (its "data" object), in order, each once. */
    int (*on_event)(void *arg, int64_t seq, const char *type, json_t *data, struct err *e);
    void *arg;
    long status; /* the HTTP status of a refusal (cli_print_err) */
};

/*
 * Follows GET /v1/events?QUERY&since=SEQ, calling f->on_event for each event
 * until a callback returns CLI_FOLLOW_STOP (then 0) or another error (that
 * error), or `timeout_s` (< 0: none) runs out (CLI_FOLLOW_TIMEOUT). A dropped
 * connection or a server restart is ridden out by connecting again from the
 * last seq seen (a few times in a row at most); a refusal is returned with e
 * set (ERR_GONE when the events after f->since are no longer kept).
 */
int cli_follow(struct cli *cli, struct cli_follow *f, double timeout_s, struct err *e);
/*
 * Waiting for a workflow or an array to end (cli_wait_ended): follow the stream's `query`
 * from where it starts, read the object at `path` (GET) then and whenever on_event returns
 * CLI_FOLLOW_STOP (at most every 200 ms), until its "state" is no longer "running".
 */
struct cli_wait {
    const char *kind;  /* "workflow" or "array", for the messages */
    const char *path;  /* the object's GET */
    const char *query; /* the stream's filter, escaped */
    /* Each event; CLI_FOLLOW_STOP when the object should be read again. */
    int (*on_event)(void *arg, int64_t seq, const char *type, json_t *data, struct err *e);
    /* Each read after the first: `now`, and `before`, the read it replaces (both borrowed). */
    void (*on_read)(void *arg, json_t *before, json_t *now);
    void (*print)(json_t *obj); /* the object for people, printed at the end */
    void *arg;
    bool json;    /* print the object as JSON at the end instead */
    json_t *last; /* in: the first read (given to it); out: the last one (the caller's) */
};
/*
 * Waits until the object ended or `timeout_s` (< 0: none) ran out, then prints it as last
 * read. 0 once it ended; 1 after the timeout (said on stderr, the object printed) or after
 * printing why it cannot wait.
 */
int cli_wait_ended(struct cli *cli, struct cli_wait *w, double timeout_s);

/* One line for an event: "SEQ TIME job ID STATE attempt N on AGENT ..."; brief: "ID STATE ...". */
void cli_print_event(FILE *out, json_t *ev, bool brief);

/* ---- objects (cli_blobs.c) ---- */

/* An s3://bucket/key URI in its parts; both strings owned. */
struct cli_s3_uri {
    char *bucket;
    char *key; /* "" for none (s3://bucket or s3://bucket/) */
};

/*
 * Splits `uri` as "s3://bucket[/key]". With `prefix` the key may be empty,
 * end in '/' or be any start of a key (a listing's prefix); without, it must
 * name an object by the rules of spec_uri_valid. Returns 0, or ERR_INVALID
 * with a message naming the URI and what is wrong with it.
 */
int cli_s3_parse(const char *uri, bool prefix, struct cli_s3_uri *out, struct err *e);
void cli_s3_release(struct cli_s3_uri *u);

/*
 * Uploads the local file `path` (an open descriptor `fd` of it, read from its
 * current offset to its end; `size` bytes) to the object `uri`, streamed,
 * with a progress bar on a terminal; checks the SHA-256 the server answers
 * against the bytes sent. `name` is how messages call the file. On success
 * *answer (may be NULL) is the server's {"uri", "size", "sha256"}, the
 * caller's. Returns 0, or 1 after printing why ("drover: cannot upload ...").
 */
int cli_blob_upload_fd(struct cli *cli, int fd, int64_t size, const char *name, const char *uri,
                       json_t **answer);

/*
 * Opens a local file to upload, for cli_blob_upload_fd: a regular file is
 * opened as it is; "-" (standard input), a pipe or a device is first copied to
 * an unnamed temporary file so that its size is known. Returns the descriptor
 * (the caller closes it) with *size set, or -1 after setting `e`
 * ("cannot read 'x': no such file or directory", "'x' is a folder").
 */
int cli_blob_open_local(const char *path, int64_t *size, struct err *e);

/*
 * Downloads the object `uri` (s3://bucket/key) into `file`: NULL for the key's
 * last part in the current folder, a folder to go into it, "-" for standard
 * output. A file is written beside the target under a temporary name and
 * renamed over it once every byte came and the SHA-256 matched: a failure
 * leaves the target as it was. With `info` (may be NULL), *info is
 * {"uri", "path", "size", "sha256"} of what was written, the caller's.
 * Returns 0, or 1 after printing why.
 */
int cli_blob_get(struct cli *cli, const char *uri, const char *file, json_t **info);

/* Parses a decimal integer in [min, max] (the whole string); false if it is not one. */
bool cli_parse_long(const char *s, long min, long max, long *out);
/* Parses a finite number >= 0 of seconds; false if it is not one. */
bool cli_parse_seconds(const char *s, double *out);

/* An RFC 3339 time of the API as local "YYYY-MM-DD HH:MM:SS" (with_ms: ".mmm"); "-" for NULL. */
void cli_format_time(const char *rfc3339, bool with_ms, char *out, size_t n);
/* The same, without ms, into buf (CLI_TIME_MAX bytes), which it returns; NULL for NULL: every
   time a table or a line shows is local, as drover jobs shows it. */
#define CLI_TIME_MAX 40
const char *cli_local_time(const char *rfc3339, char *buf);
/* A server's message with each RFC 3339 UTC time in it ("delayed until 2026-12-07T18:42:05.591Z")
   as cli_local_time shows it; the caller frees it. NULL for NULL. */
char *cli_local_times_in(const char *text);
/* An RFC 3339 UTC time of the API as milliseconds since the epoch; false if it is not one. */
bool cli_parse_time(const char *rfc3339, int64_t *ms);
/* How long ago, for humans: "3s ago", "5m ago", "2h ago" (to 48 h), "3d ago"; < 0 is "0s ago". */
void cli_format_age(int64_t ms, char *out, size_t n);
/* A duration for humans: "12ms", "3.4s", "2m05s", "1h02m". */
void cli_format_duration(int64_t ms, char *out, size_t n);

#endif
