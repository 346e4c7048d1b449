/*
 * cli_logs.c - `drover logs`: a job's captured stdout or stderr.
 *
 * GET /v1/jobs/{id}/log?stream=S&offset=N[&follow=1] (docs/api.md, docs/protocol.md).
 * The answer goes to stdout as it arrives, byte for byte (it is the job's own
 * output, so it is not sanitised), flushed after each piece; nothing is kept.
 *
 * Without -f: the server answers at most a bounded piece per request, so the
 * command asks again from where it got to until an answer is empty.
 *
 * Every request names its attempt (the job's latest without --attempt): offsets count
 * within one attempt. With -f the server streams that attempt's output until it ends. A
 * stream that ends is not taken as the end of the attempt: the server also ends its streams
 * when it shuts down, and a connection may break. So once a stream ends, what is left is
 * read as above and the job's state is checked (attempt_after): while the attempt runs, or
 * the job waits to start it, it is followed again from the byte reached, riding out a
 * server restart like `drover wait` does; once it is over and the job goes on (a retry),
 * the next attempt is followed, after a note on stderr; once the job ended, that is all.
 * The job is also checked after RECHECK_MS without output, because the server ends a
 * stream only when an agent reports the attempt's end (not when, say, a queued job is
 * cancelled).
 *
 * With --json each piece becomes one line {"attempt": A, "offset": N, "data": "..."} (N the
 * offset in attempt A's stream of its first byte), a character split between two pieces
 * being held back until it is whole, since JSON strings are UTF-8 text.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "commands.h"
#include "common/xalloc.h"

#define FOLLOW_RETRIES 6      /* consecutive failures tolerated once the server was seen */
#define CALL_TIMEOUT_MS 60000 /* a request that is not a followed stream */
#define RECHECK_MS 10000      /* a followed log silent this long: is the job still on? */
#define TAIL_FIRST 65536      /* --tail: the bytes read first for the last lines... */
#define TAIL_MAX 1048576      /* ...and at most (the server's largest tail=) */
#define TAIL_LINES_MAX 1000000

static const char logs_usage[] =
    "usage: drover logs [-f] [--stderr] [--tail N | --offset N] [--attempt N] [--json] ID\n"
    "\n"
    "Prints what a job's latest attempt (or, with --attempt, an earlier one) wrote\n"
    "to its standard output (or, with --stderr, its standard error), as captured\n"
    "by its agent. With -f it keeps printing what the job writes until the job\n"
    "ends, through its retries, a note on standard error before each next\n"
    "attempt's output (with --attempt, until that attempt ends). ID may be a\n"
    "unique prefix of the job's id (6 characters or more), or ARRAY_ID:INDEX for\n"
    "a task of a job array. A job that has not run yet has no output: a note on\n"
    "standard error says so (not with --json).\n"
    "\n"
    "  -f, --follow       wait for more output until the job ends\n"
    "  -e, --stderr       standard error instead of standard output\n"
    "  -n, --tail N       start with its last N lines (at most the last MiB of it)\n"
    "  -o, --offset N     start at byte N of the stream (default 0)\n"
    "  -a, --attempt N    the output of attempt N (1 is the first run)\n"
    "      --json         print JSON lines {\"attempt\": A, \"offset\": N, \"data\": TEXT},\n"
    "                     one per piece received; errors as JSON on stderr\n"
    "\n"
    "examples:\n"
    "  drover logs 01938c2e-7d4a                    # all of its standard output\n"
    "  drover logs -f --stderr 01938c2e-7d4a        # follow standard error until it ends\n"
    "  drover logs -f -n 20 01938c2e-7d4a           # its last 20 lines, then what comes\n"
    CLI_COMMON_USAGE;

/* --json: what is held back of a piece (an unfinished UTF-8 character) and where it starts. */
struct json_lines {
    char held[4];
    size_t nheld;
    int64_t at; /* the stream offset of held[0] (of the next line's text) */
    long attempt; /* the attempt the stream is of */
};

struct sink {
    int64_t written;       /* bytes of the stream received (and written out) by this request */
    int write_errno;       /* why writing to stdout failed, or 0 */
    struct json_lines *jl; /* NULL: the bytes as they are */
};

/* How many bytes of s[0..n) end on a whole UTF-8 character (a cut one is left out). */
static size_t whole_utf8(const char *s, size_t n)
{
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80) continue; /* a continuation byte: look further back */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? n - back : n;
    }
    return n;
}

/* Prints {"attempt", "offset", "data"} for text[0..n); bytes that are not UTF-8 become '?'. */
static int put_json_line(long attempt, int64_t offset, char *text, size_t n)
{
    json_t *data = json_stringn(text, n);
    if (!data) {
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)text[i] >= 0x80 || !text[i]) text[i] = '?';
        data = json_stringn(text, n);
    }
    json_t *line = json_pack("{s:I, s:I, s:o}", "attempt", (json_int_t)attempt, "offset",
                             (json_int_t)offset, "data", data);
    int rc = json_dumpf(line, stdout, JSON_COMPACT) == 0 && fputc('\n', stdout) != EOF ? 0 : -1;
    json_decref(line);
    return rc;
}

/* --json: a piece of the stream as one line, less an unfinished character at its end. */
static int json_piece(struct json_lines *jl, const char *data, size_t len, bool final)
{
    char *text = xmalloc(jl->nheld + len + 1);
    memcpy(text, jl->held, jl->nheld);
    memcpy(text + jl->nheld, data, len);
    size_t n = jl->nheld + len;
    size_t whole = final ? n : whole_utf8(text, n);
    int rc = whole ? put_json_line(jl->attempt, jl->at, text, whole) : 0;
    jl->nheld = n - whole;
    memcpy(jl->held, text + whole, jl->nheld);
    jl->at += (int64_t)whole;
    free(text);
    return rc;
}

static int to_stdout(void *arg, const char *data, size_t len, struct err *e)
{
    struct sink *s = arg;
    errno = 0;
    int rc = s->jl                                 ? json_piece(s->jl, data, len, false)
             : fwrite(data, 1, len, stdout) == len ? 0
                                                   : -1;
    if (rc < 0 || fflush(stdout) == EOF) {
        s->write_errno = errno ? errno : EIO;
        return err_set(e, ERR_IO, "cannot write to standard output: %s", strerror(s->write_errno));
    }
    s->written += (int64_t)len;
    return 0;
}

static void pause_before_retry(int failures)
{
    int64_t ns = (int64_t)1000000000 << (failures - 1 < 4 ? failures - 1 : 4);
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    nanosleep(&ts, NULL);
}

/* Prints why the log could not be read; 404 says just that the job is unknown. */
static void print_failure(struct cli *cli, const struct err *e, long status, const char *id,
                          const struct sink *sink)
{
    if (sink->write_errno) {
        /* A reader that went away (`drover logs -f ID | head`) needs no message. */
        if (sink->write_errno != EPIPE) cli_error_e(e);
        return;
    }
    char what[256];
    snprintf(what, sizeof(what), "cannot read the log of job '%s'", id);
    struct err why = *e;
    cli_not_a_job(cli, id, "status", &why); /* an array's or workflow's id: where to look */
    cli_print_err(cli, &why, status, what);
}

/*
 * The job's state (into state, "" when the answer has none) and, when attempt is
 * not NULL, its attempt (0: it never started). Returns 0, or an error code with e
 * and *status set as for http_client_json.
 */
static int job_state(struct cli *cli, const char *eid, char *state, size_t n, long long *attempt,
                     long *status, struct err *e)
{
    char *path = xasprintf("/v1/jobs/%s", eid);
    json_t *job = NULL;
    long saved_timeout = cli->http.timeout_ms;
    cli->http.timeout_ms = CALL_TIMEOUT_MS;
    int rc = http_client_json(&cli->http, "GET", path, NULL, status, &job, e);
    cli->http.timeout_ms = saved_timeout;
    free(path);
    if (rc == 0) {
        json_t *j = cli_job_of(job);
        const char *s = json_string_value(json_object_get(j, "state"));
        snprintf(state, n, "%s", s ? s : "");
        if (attempt) *attempt = json_integer_value(json_object_get(j, "attempt"));
    }
    json_decref(job);
    return rc;
}

/*
 * An empty log of a job that never started says nothing by itself: say on stderr
 * why there is no output (and, while it may still run, that -f waits for it).
 */
static void note_never_ran(struct cli *cli, const char *eid, const char *id)
{
    char state[32];
    long long attempt = -1;
    long status;
    struct err e = ERR_INIT;
    if (job_state(cli, eid, state, sizeof(state), &attempt, &status, &e) != 0) {
        err_clear(&e);
        return;
    }
    if (attempt != 0 || !state[0]) return;
    if (cli_job_is_terminal(state))
        cli_notice("note", "job '%s' ended (%s) before it ever ran: it has no output", id, state);
    else
        cli_notice("note",
                   "job '%s' has not started yet (it is %s): no output so far; 'drover logs -f' "
                   "waits for it",
                   id, state);
}

static int keep_piece(void *arg, const char *data, size_t len, struct err *e)
{
    struct buf *b = arg;
    (void)e;
    if (b->len + len <= TAIL_MAX) buf_add(b, data, len); /* bounded, whatever comes */
    return 0;
}

/* Where the last `lines` lines of text[0..n) start (a last line without its newline counts). */
static size_t last_lines(const char *text, size_t n, long lines)
{
    size_t at = n;
    if (at && text[at - 1] == '\n') at--; /* the last line's own newline */
    while (at > 0) {
        if (text[at - 1] == '\n' && --lines == 0) return at;
        at--;
    }
    return 0;
}

/*
 * --tail: the last `lines` lines of the stream, read from its end (tail=, a larger window
 * while it holds fewer lines, up to TAIL_MAX), into out, and *start, where in the stream
 * they begin (*clipped: fewer lines, the largest window held no more). 0, or an error with e
 * and *status set as for http_client_stream.
 */
static int fetch_last_lines(struct cli *cli, const char *eid, const char *stream, long attempt,
                            long lines, struct buf *out, int64_t *start, bool *clipped,
                            long *status, struct err *e)
{
    for (long window = TAIL_FIRST;; window = window * 8 < TAIL_MAX ? window * 8 : TAIL_MAX) {
        char pin[32] = "";
        if (attempt) snprintf(pin, sizeof(pin), "&attempt=%ld", attempt);
        char *path = xasprintf("/v1/jobs/%s/log?stream=%s&tail=%ld%s", eid, stream, window, pin);
        buf_reset(out);
        int rc = http_client_stream(&cli->http, path, 0, keep_piece, out, status, e);
        free(path);
        if (rc) return rc < 0 ? rc : err_set(e, ERR_INTERNAL, "the log's tail was cut short");
        if (cli->http.stream_at < 0)
            return err_set(e, ERR_INTERNAL, "the server did not say where the log's tail starts");
        size_t cut = last_lines(out->data, out->len, lines);
        /* fewer lines than asked, and more of the stream before them: a larger window */
        if (cut == 0 && cli->http.stream_at > 0 && window < TAIL_MAX) continue;
        *clipped = cut == 0 && cli->http.stream_at > 0;
        if (*clipped) {
            /* the largest window holds fewer lines: from its first whole one (or, in one
               line longer than it, from its first whole character) */
            const char *nl = memchr(out->data, '\n', out->len);
            if (nl && (size_t)(nl - out->data) + 1 < out->len)
                cut = (size_t)(nl - out->data) + 1;
            while (!nl && cut < 3 && cut < out->len && ((unsigned char)out->data[cut] & 0xC0) == 0x80)
                cut++;
        }
        *start = cli->http.stream_at + (int64_t)cut;
        memmove(out->data, out->data + cut, out->len - cut);
        out->len -= cut;
        return 0;
    }
}

/*
 * Followed attempt `cur`'s stream ended (or was silent a while), and what was left of it is
 * read: what to follow now (*next), from the job's state (into state). `cur` again while it
 * runs, or while the job waits to start it; the next attempt once it is over and the job
 * goes on (`chain`, else 0); 0 once the job ended.
 */
static int attempt_after(struct cli *cli, const char *eid, long cur, bool chain, long *next,
                         char *state, size_t n, long *status, struct err *e)
{
    long long latest = 0;
    int rc = job_state(cli, eid, state, n, &latest, status, e);
    if (rc) return rc;
    bool runs = !strcmp(state, "leased") || !strcmp(state, "running");
    if (latest > cur || (latest == cur && !runs && !cli_job_is_terminal(state)))
        *next = chain ? cur + 1 : 0; /* it is over: a later one runs, or is to come */
    else if (cli_job_is_terminal(state))
        *next = 0;
    else
        *next = cur; /* it runs, or is still to start */
    return 0;
}

static int show_log(struct cli *cli, const char *id, const char *stream, int64_t offset,
                    long tail, long attempt, bool follow, bool json)
{
    char pin[32] = ""; /* "&attempt=N" */
    char *eid = http_escape(id);
    int failures = 0, ends = 0;
    bool seen = false; /* the server answered once: a failure now may be a restart */
    bool following = follow;
    bool chain = follow && !attempt; /* on through the job's retries, attempt after attempt */
    bool quiet_end = false;          /* the last followed stream ended at once, with nothing */
    int64_t total = 0;               /* bytes received, all attempts */
    int rc = 0;
    struct json_lines jl = {.at = offset};

    /* Every request names its attempt: an offset counts within one (the latest one, without
       --attempt), and a stream followed again after a pause or a restart goes on there. */
    if (!attempt) {
        char state[32];
        long long latest = 0;
        long status = 0;
        struct err e = ERR_INIT;
        if (job_state(cli, eid, state, sizeof(state), &latest, &status, &e)) {
            struct sink none = {0};
            print_failure(cli, &e, status, id, &none);
            free(eid);
            return 1;
        }
        if (!latest && (!follow || cli_job_is_terminal(state))) goto out; /* it never ran */
        attempt = latest ? latest : 1; /* -f before its first run: the server waits for it */
        if (!latest) tail = 0;         /* nothing to take the last lines of yet */
    }
    jl.attempt = attempt;

    if (tail) { /* the last lines first, then on from their end as for --offset */
        struct buf text = BUF_INIT;
        struct err e = ERR_INIT;
        long status = 0;
        struct sink sink = {.jl = json ? &jl : NULL};
        bool clipped = false;
        rc = fetch_last_lines(cli, eid, stream, attempt, tail, &text, &offset, &clipped, &status,
                              &e);
        if (!rc && clipped)
            cli_notice("note",
                       "the last %ld lines of job '%s' are more than its last %d KiB: from byte "
                       "%lld on ('--offset 0' reads all of it)",
                       tail, id, TAIL_MAX / 1024, (long long)offset);
        jl.at = offset;
        if (!rc && text.len) rc = to_stdout(&sink, text.data, text.len, &e);
        offset += sink.written;
        total += sink.written;
        buf_release(&text);
        if (rc) {
            print_failure(cli, &e, status, id, &sink);
            free(eid);
            return 1;
        }
    }

    if (follow) cli->http.timeout_ms = 0; /* a followed log lasts as long as the job */
    for (;;) {
        struct err e = ERR_INIT;
        long status = 0;
        struct sink sink = {.jl = json ? &jl : NULL};
        snprintf(pin, sizeof(pin), "&attempt=%ld", attempt);
        char *path = xasprintf("/v1/jobs/%s/log?stream=%s&offset=%lld%s%s", eid, stream,
                               (long long)offset, pin, follow ? "&follow=1" : "");
        int r = http_client_stream(&cli->http, path, follow ? RECHECK_MS : 0, to_stdout, &sink,
                                   &status, &e);
        free(path);
        offset += sink.written;
        total += sink.written;
        seen = seen || cli->http.reached;

        if (r >= 0 && follow) {
            /* The stream ended: because the attempt did, or because the server is going away?
             * Or it was silent for a while (r == 1): has the job ended without the server
             * telling its followers? Read what may be left beyond its last piece, then see. */
            quiet_end = r == 0 && sink.written == 0;
            follow = false;
            cli->http.timeout_ms = CALL_TIMEOUT_MS;
            continue;
        }
        if (r < 0 && following && status == 404 && !strcmp(e.field, "attempt")) {
            r = 0; /* an attempt not begun has nothing, and the job did not wait for it */
            err_clear(&e);
        }
        long next = 0;
        char state[32] = "";
        if (r >= 0 && sink.written == 0 && following)
            r = attempt_after(cli, eid, attempt, chain, &next, state, sizeof(state), &status, &e);
        if (r < 0) {
            bool transient =
                !sink.write_errno && ((status == 0 && e.code == ERR_UNAVAILABLE) || status == 503);
            if (following && seen && transient && ++failures <= FOLLOW_RETRIES) {
                pause_before_retry(failures);
                continue; /* the rest again, from the byte reached, then see again */
            }
            print_failure(cli, &e, status, id, &sink);
            rc = 1;
            break;
        }
        failures = 0;
        if (sink.written > 0) continue;
        if (!next) break; /* all of it */
        if (next == attempt) { /* not over: the server ended the stream (a restart?) */
            if (quiet_end && ++ends > FOLLOW_RETRIES) {
                cli_error(CLI_ERR_INTERNAL, NULL,
                          "the server keeps ending the log of job '%s' though it is still %s", id,
                          state);
                rc = 1;
                break;
            }
            if (quiet_end)
                pause_before_retry(ends);
            else
                ends = 0;
        } else {
            ends = 0;
            if (jl.nheld && json_piece(&jl, "", 0, true)) { /* a character cut at its end */
                rc = 1;
                break;
            }
            if (!json) /* on stderr: stdout stays the job's own bytes */
                cli_notice("note", "attempt %ld of job '%s' is over; attempt %ld follows",
                           attempt, id, next);
            attempt = jl.attempt = next;
            offset = jl.at = 0;
        }
        follow = true;
        cli->http.timeout_ms = 0;
    }
    if (rc == 0 && jl.nheld) json_piece(&jl, "", 0, true); /* a character cut at the end */
out:
    if (rc == 0 && !json && total == 0 && offset == 0) note_never_ran(cli, eid, id);
    free(eid);
    return rc;
}

int cmd_logs(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"follow", no_argument, NULL, 'f'},
        {"stderr", no_argument, NULL, 'e'},
        {"offset", required_argument, NULL, 'o'},
        {"tail", required_argument, NULL, 'n'},
        CLI_JSON_LONG_OPTION,
        {"attempt", required_argument, NULL, 'a'},
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc, argv, logs_usage);
    struct cli cli;
    bool follow = false, err_stream = false;
    long offset = -1, attempt = 0, tail = 0;
    const char *id;
    int opt, rc;

    while ((opt = cli_getopt(&a, ":feo:n:a:h", longopts)) != -1) {
        switch (opt) {
        case 'f':
            follow = true;
            break;
        case 'e':
            err_stream = true;
            break;
        case 'o':
            if (!cli_parse_long(optarg, 0, LONG_MAX, &offset))
                return cli_usage_error(
                    logs_usage, "--offset must be a byte offset (0 or more), not '%s'", optarg);
            break;
        case 'n':
            if (!cli_parse_long(optarg, 1, TAIL_LINES_MAX, &tail))
                return cli_usage_error(logs_usage,
                                       "--tail must be a number of lines (1 to %d), not '%s'",
                                       TAIL_LINES_MAX, optarg);
            break;
        case 'a':
            if (!cli_parse_long(optarg, 1, INT_MAX, &attempt))
                return cli_usage_error(logs_usage,
                                       "--attempt must be an attempt number (1 or more), not '%s'",
                                       optarg);
            break;
        }
    }
    if (tail && offset >= 0)
        return cli_usage_error(logs_usage, "give --tail or --offset, not both");
    if ((rc = cli_args_one(&a, CLI_JOB_ID_MISSING, CLI_JOB_ID_EMPTY, &id)) != CLI_CONTINUE)
        return rc;

    rc = 1;
    if (cli_connect(&cli, &a.conn) == 0)
        rc = show_log(&cli, id, err_stream ? "stderr" : "stdout", offset < 0 ? 0 : offset, tail,
                      attempt, follow, a.json);
    cli_release(&cli);
    return rc;
}
