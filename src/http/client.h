/*
 * client.h - a small HTTP/JSON client on libcurl, for the CLI and (later) the agent.
 *
 * A `struct http_client` holds what every call shares: the server's base URL,
 * the bearer token and the limits. One call is a `struct http_call`, split in
 * two halves so that the same code serves a blocking caller and an event loop:
 *
 *     http_call_setup()    builds the request on a curl easy handle
 *     (curl_easy_perform, or a curl multi handle driven by the loop)
 *     http_call_finish()   turns curl's result and the answer into status + JSON
 *
 * http_client_json() does the three steps on the client's own easy handle,
 * which it keeps between calls so that connections are reused.
 *
 * Every answer is read into memory up to `max_response` bytes (64 MiB by
 * default); a longer one fails with ERR_TOOLARGE instead of growing without bound.
 * http_client_stream() is the exception: it hands a GET's body to a callback
 * piece by piece as it arrives (a followed log), keeping none of it; and
 * http_client_transfer() streams both ways (files to and from the object store).
 *
 * Errors:
 *   - the server cannot be reached (refused, unknown host, no answer, TLS):
 *     ERR_UNAVAILABLE with *status == 0 and a message for humans:
 *     "cannot reach the drover server at http://127.0.0.1:7070: connection
 *     refused (is `drover server` running? set DROVER_SERVER)";
 *   - the server answered 4xx/5xx: the matching ERR_* code (400 → ERR_INVALID,
 *     403 → ERR_DENIED, 409 → ERR_CONFLICT, ...), with the message and field of
 *     its {"error": {"code", "message", "field"}} body in `e`, and *status and
 *     *resp set as for a success (so callers can look at the body);
 *   - the answer of a 2xx is not JSON: ERR_INTERNAL.
 */
#ifndef DROVER_HTTP_CLIENT_H
#define DROVER_HTTP_CLIENT_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"
#include "common/err.h"

#define HTTP_CLIENT_MAX_RESPONSE ((size_t)64 << 20)

#define HTTP_MAX_SERVERS 16

struct http_client {
    char *base_url;          /* the server in use: servers[current]; no trailing '/' */
    char *servers[HTTP_MAX_SERVERS]; /* the servers given, in order; owned */
    size_t nservers, current;
    char *token;             /* bearer token, NULL for none; owned */
    bool loopback;           /* the server's host is 127.x, localhost or ::1 */
    long connect_timeout_ms; /* default 10 s */
    long timeout_ms;         /* whole request; 0 = none; default 60 s */
    size_t max_response;     /* cap on an answer's body */
    const char *hint;        /* appended to "cannot reach" messages, e.g. "set DROVER_SERVER";
                                borrowed (a literal), NULL for none */
    CURL *easy;              /* http_client_json's handle, created on first use */
    bool reached;            /* the last http_client_json got a connection to the server,
                                even if it then broke: tells "down" from "dropped us" */
    int64_t stream_at;       /* the last http_client_stream answer's X-Drover-Log-Offset
                                (where in the log it starts), -1 if it had none */
};

/*
 * Prepares `c` for a server at `base_url` ("http://host:port", a path prefix
 * allowed; "host:port" is taken as http://) with `token` (NULL for none).
 * Both strings are copied. Fails with ERR_INVALID when the URL cannot be
 * parsed or the token holds characters that cannot go in a header.
 * On failure `c` needs no release (but releasing it is harmless).
 */
int http_client_init(struct http_client *c, const char *base_url, const char *token, struct err *e);
void http_client_release(struct http_client *c);

/*
 * Several servers: `base_url` may be a comma-separated list of such URLs
 * ("http://a:7070,http://b:7070"; blanks around an item are ignored, an empty
 * item or more than HTTP_MAX_SERVERS is ERR_INVALID naming the list). The
 * client uses one at a time, the first to begin with; `loopback` is true only
 * when all of them are on this machine.
 *
 * http_client_next_server() moves to the next server in the list (round),
 * returning false when there is only one. http_try_next() tells whether a
 * failed call of `method` that got `status` (0: no answer) may be sent to
 * another server: after a 503 (the server did nothing), after no connection
 * at all (c->reached false), or for a GET/HEAD whose connection broke.
 * http_client_json and http_client_stream do this themselves, trying each
 * server at most once per call and staying with the one that answered.
 */
bool http_client_next_server(struct http_client *c);
bool http_try_next(const struct http_client *c, const char *method, long status);
/* Replaces the bearer token (NULL for none); ERR_INVALID if it cannot go in a header. */
int http_client_set_token(struct http_client *c, const char *token, struct err *e);

/*
 * Called with each piece of a streamed answer's body as it arrives (see
 * http_client_stream). Returns 0 to go on, or a negative ERR_* code (with `e`
 * set) to stop the transfer; http_client_stream then returns that code.
 */
typedef int (*http_chunk_fn)(void *arg, const char *data, size_t len, struct err *e);

/*
 * One request and its answer. Fields are private to client.c; callers only
 * embed it, call setup, run `easy`, call finish and release.
 */
struct http_call {
    CURL *easy; /* borrowed from the caller */
    char *url;
    char *body; /* the serialised request body, or NULL */
    struct curl_slist *headers;
    struct buf resp;
    size_t max_response;
    bool too_large;
    bool connected; /* set by http_call_finish: a connection to the server was made */
    /* http_client_stream only: where a 2xx body goes, and why the transfer stopped */
    http_chunk_fn chunk_fn;
    void *chunk_arg;
    struct err *chunk_err;
    int chunk_rc;
    int64_t idle_ns, last_data_ns; /* stop after idle_ns without data (0: never) */
    bool delivered;                 /* a piece of a 2xx body went to chunk_fn */
    bool idled;
    struct http_transfer *transfer; /* http_client_transfer only */
    int transfer_rc;                /* why a read or progress callback stopped it */
    char errbuf[CURL_ERROR_SIZE];   /* curl's words for a failure (TLS verification) */
};

/*
 * Configures `easy` (reset first) for `method` on the client's base URL +
 * `path` ("/v1/jobs?state=queued", already escaped; see http_escape) with
 * `body` serialised as JSON (NULL for none; borrowed). The call keeps what
 * curl needs until http_call_release, which is due after a failed setup too.
 */
int http_call_setup(struct http_call *call, const struct http_client *c, CURL *easy,
                    const char *method, const char *path, json_t *body, struct err *e);

/*
 * Interprets curl's result `rc` for a finished call: sets *status (0 when no
 * HTTP answer came) and *resp (the parsed JSON answer, a new reference the
 * caller owns, or NULL when the body was empty or not JSON). Returns 0 for a
 * 2xx answer, else an error as described at the top of this file.
 */
int http_call_finish(struct http_call *call, const struct http_client *c, CURLcode rc, long *status,
                     json_t **resp, struct err *e);
void http_call_release(struct http_call *call);

/*
 * A blocking call: setup, perform, finish. `status` and `resp` may be NULL
 * when the caller does not want them.
 */
int http_client_json(struct http_client *c, const char *method, const char *path, json_t *body,
                     long *status, json_t **resp, struct err *e);

/*
 * A blocking GET of `path` whose 2xx body is not kept but handed to `fn` piece
 * by piece as it arrives, for answers that are long or never end until the
 * server says so (a followed log). The whole call is bounded by c->timeout_ms
 * as usual (set it to 0 for none); TCP keep-alive is on, so a server that
 * vanished without closing the connection is noticed.
 *
 * Returns 0 when the answer ended (it was 2xx), 1 when `idle_ms` > 0 and
 * nothing came for that long (the call is then stopped: what silence means,
 * and whether to ask again, is the caller's business), or an error.
 *
 * Errors are those of http_client_json: ERR_UNAVAILABLE with *status == 0
 * when the server cannot be reached ("cannot reach the drover server at
 * ...") or the connection broke ("... broke during the request", c->reached
 * telling the two apart); a non-2xx answer is not given to `fn` but read (up
 * to 1 MiB) and turned into the matching ERR_* code with the message and
 * field of its JSON error. `status` may be NULL.
 */
int http_client_stream(struct http_client *c, const char *path, long idle_ms, http_chunk_fn fn,
                       void *arg, long *status, struct err *e);

/*
 * Gives up to `len` bytes of a request body (see struct http_transfer) in
 * `buf`. Returns how many (0 only when the body is over), or a negative ERR_*
 * code with `e` set to stop the transfer, which then fails with that error.
 */
typedef ssize_t (*http_read_fn)(void *arg, char *buf, size_t len, struct err *e);

/*
 * Told how far a transfer got: `done` of `total` bytes (total 0 when not
 * known) of the request body when there is one, else of the answer's. Called
 * when data moves and about once a second when it does not. Returns 0 to go
 * on, or a negative ERR_* code with `e` set to stop the transfer (an
 * interrupt), which then fails with that error.
 */
typedef int (*http_progress_fn)(void *arg, int64_t done, int64_t total, struct err *e);

/*
 * A request whose body, or whose answer's body, may be larger than memory:
 * a file going to or coming from the object store. The caller fills in the
 * request half (zero the rest) and calls http_client_transfer.
 */
struct http_transfer {
    /* the request */
    const char *method;   /* "GET", "PUT", "HEAD", "DELETE", ... */
    const char *path;     /* escaped, as for http_client_json */
    http_read_fn read_fn; /* the body, exactly upload_size bytes; NULL for none */
    void *read_arg;
    int64_t upload_size;    /* sent as Content-Length */
    http_chunk_fn write_fn; /* where a 2xx answer's body goes, piece by piece; NULL:
                               it is read as JSON into `resp` (up to c->max_response) */
    void *write_arg;
    http_progress_fn progress_fn; /* NULL for none */
    void *progress_arg;
    /* the answer */
    long status;            /* 0 when no HTTP answer came */
    json_t *resp;           /* the JSON answer (a 2xx without write_fn, or any error's body);
                               the caller owns it (json_decref), NULL for none */
    int64_t content_length; /* the answer's Content-Length, -1 when it had none */
    char sha256[65];        /* the answer's X-Drover-Sha256 header (lower-case hex), "" if none */
};

/*
 * A blocking request that streams its body from t->read_fn and its answer's
 * body to t->write_fn, never holding either whole in memory. There is no
 * limit on the whole call's time; it fails instead when no byte moves for
 * c->timeout_ms (ERR_UNAVAILABLE, "... stalled"). TCP keep-alive is on.
 *
 * Returns 0 for a 2xx answer, else the errors of http_client_json, or the
 * error a callback returned (its `e` kept). A non-2xx answer's body is not
 * given to write_fn but read (up to 1 MiB) for its error message.
 */
int http_client_transfer(struct http_client *c, struct http_transfer *t, struct err *e);

/* `s` escaped for a URL path segment or query value; the caller frees it. */
char *http_escape(const char *s);
/* `s` escaped segment by segment, its '/' kept: an object key in a path. The caller frees it. */
char *http_escape_path(const char *s);

/* True when `host` names the local machine: 127.0.0.0/8, localhost, ::1. */
bool http_host_is_loopback(const char *host);

/*
 * TLS: servers are verified against the system's CA store, plus the CA
 * certificates (PEM) of one file when one is given: `path`, else
 * $DROVER_CA_FILE when set and not empty (path NULL). Process-wide, for every
 * request made after it (the CLI's, the agent's and its transfers'). Returns
 * ERR_INVALID when the file cannot be read, naming it.
 */
int http_set_ca_file(const char *path, struct err *e);
/* Makes easy verify TLS servers as http_set_ca_file says (for handles set up elsewhere). */
void http_easy_tls(CURL *easy);

#endif
