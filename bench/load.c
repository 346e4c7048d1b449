/*
 * load.c - drover-load, a closed-loop load generator for the benchmarks in bench/.
 *
 * One thread, one epoll set, N keep-alive connections, each with exactly one
 * request outstanding: a connection sends its next request only once the
 * answer to the previous one is complete. The run is bounded twice: by the
 * number of requests (--requests) and by time (--max-seconds); whichever comes
 * first ends it, and what was done is reported either way.
 *
 * Modes:
 *   http            HTTP/1.1 requests (drover's API), non-2xx counted as errors
 *   beanstalk       beanstalkd `put` into tube "bench", expects INSERTED
 *   beanstalk-take  beanstalkd `reserve-with-timeout 0` + `delete` from tube "bench"
 *
 * The report is one line of JSON on stdout. Latency is measured per request
 * (from the first byte written to the last byte of the answer) on
 * CLOCK_MONOTONIC. Exit status: 0 when every request succeeded, 1 when any
 * failed or a connection failed, 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

/* No answer may grow beyond this; a larger one is reported as an error. */
#define MAX_RESPONSE (256u * 1024 * 1024)
#define READ_CHUNK 65536
/* After --max-seconds, requests in flight get this long to complete. */
#define GRACE_NS (5LL * 1000000000LL)

enum mode { MODE_HTTP, MODE_BEANSTALK, MODE_BEANSTALK_TAKE };

static const char *const mode_names[] = {"http", "beanstalk", "beanstalk-take"};

struct options {
    enum mode mode;
    const char *host;
    const char *port;
    long conns;
    long requests;
    double max_seconds;
    const char *method;
    const char *path;
    const char *body_file;
    const char *token;
    const char *paths_file;
    long jobs_per_request;
    long size;
    const char *tube;
    bool verbose;
};

/* Where a connection is in its exchange. */
enum conn_phase {
    PH_IDLE,    /* ready to send the next request */
    PH_SETUP,   /* beanstalk: waiting for the answer to use/watch/ignore */
    PH_REQUEST, /* waiting for the answer to the measured request */
    PH_DELETE,  /* beanstalk-take: waiting for DELETED */
    PH_CLOSED,
};

struct conn {
    int fd;
    int index;
    enum conn_phase phase;
    int setup_step;  /* beanstalk: how many setup commands were answered */
    struct buf out;  /* bytes to send */
    size_t out_off;  /* how many of them were sent */
    bool want_write; /* EPOLLOUT is registered */
    struct buf in;   /* bytes received, not yet consumed */
    size_t hdr_scan; /* http: where to resume looking for the end of the headers */
    int64_t t_start; /* when the measured request was started */
    bool reconnect;  /* http: the server said Connection: close */
};

struct state {
    struct options opt;
    int epfd;
    struct conn *conns;
    long issued;    /* requests started */
    long completed; /* requests answered (successfully or not) */
    long errors;
    long reconnects;
    bool first_error_printed;
    bool fatal;
    bool time_up;
    int64_t t0;
    int64_t t_last;   /* when the last answer arrived */
    int64_t deadline; /* stop issuing */
    int64_t *lat_ns;  /* one per completed request */
    /* http */
    char *body;
    size_t body_len;
    char **paths;
    size_t npaths;
    struct buf fixed_req; /* the request when it does not vary */
    /* beanstalk */
    char *put_data;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: drover-load http --host H --port P --conns N --requests M\n"
            "           [--method POST|GET] [--path /v1/jobs] [--body-file F] [--token T]\n"
            "           [--paths-file F] [--jobs-per-request K] [--max-seconds S]\n"
            "       drover-load beanstalk --host H --port P --conns N --requests M [--size 100]\n"
            "           [--tube bench] [--max-seconds S]\n"
            "       drover-load beanstalk-take --host H --port P --conns N --requests M\n"
            "           [--tube bench] [--max-seconds S]\n"
            "\n"
            "Closed loop: every connection keeps one request outstanding. Stops after M\n"
            "requests or S seconds (default 120), whichever comes first, and prints one\n"
            "line of JSON. Exits 1 if any request failed or a connection failed.\n");
}

static NORETURN void usage_die(const char *fmt, ...) PRINTF_LIKE(1, 2);
static void usage_die(const char *fmt, ...)
{
    va_list ap;
    fputs("drover-load: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    usage(stderr);
    exit(2);
}

static long parse_long(const char *name, const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        usage_die("--%s: '%s' is not an integer in %ld..%ld", name, s, min, max);
    return v;
}

static double parse_double(const char *name, const char *s, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        usage_die("--%s: '%s' is not a number in %g..%g", name, s, min, max);
    return v;
}

/* The whole file, NUL-terminated; *len_out excludes the NUL. Dies on failure (startup). */
static char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open '%s': %s", path, strerror(errno));
    struct buf b = BUF_INIT;
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        buf_add(&b, tmp, n);
    if (ferror(f)) die("cannot read '%s'", path);
    fclose(f);
    *len_out = b.len;
    if (!b.data) return xstrdup("");
    return buf_detach(&b);
}

static void load_paths(struct state *st)
{
    size_t len;
    char *text = read_file(st->opt.paths_file, &len);
    size_t cap = 0;
    char *p = text;
    while (*p) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        size_t m = n;
        while (m > 0 && (p[m - 1] == '\r' || p[m - 1] == ' ' || p[m - 1] == '\t'))
            m--;
        if (m > 0) {
            if (st->npaths == cap) {
                cap = cap ? cap * 2 : 1024;
                st->paths = xrealloc(st->paths, cap * sizeof(*st->paths));
            }
            st->paths[st->npaths++] = xstrndup(p, m);
        }
        p += n;
        if (*p == '\n') p++;
    }
    free(text);
    if (st->npaths == 0) die("'%s' holds no paths", st->opt.paths_file);
}

static void parse_args(struct state *st, int argc, char **argv)
{
    struct options *o = &st->opt;
    o->host = "127.0.0.1";
    o->port = NULL;
    o->conns = 1;
    o->requests = 1000;
    o->max_seconds = 120;
    o->method = NULL;
    o->path = "/v1/jobs";
    o->jobs_per_request = 1;
    o->size = 100;
    o->tube = "bench";

    if (argc < 2) usage_die("a mode is required");
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        exit(0);
    }
    size_t m;
    for (m = 0; m < ARRAY_SIZE(mode_names); m++)
        if (!strcmp(argv[1], mode_names[m])) break;
    if (m == ARRAY_SIZE(mode_names)) usage_die("unknown mode '%s'", argv[1]);
    o->mode = (enum mode)m;

    enum {
        OPT_HOST = 256,
        OPT_PORT,
        OPT_CONNS,
        OPT_REQUESTS,
        OPT_MAXSEC,
        OPT_METHOD,
        OPT_PATH,
        OPT_BODY,
        OPT_TOKEN,
        OPT_PATHS,
        OPT_JPR,
        OPT_SIZE,
        OPT_TUBE,
        OPT_VERBOSE,
        OPT_HELP
    };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"conns", required_argument, NULL, OPT_CONNS},
        {"requests", required_argument, NULL, OPT_REQUESTS},
        {"max-seconds", required_argument, NULL, OPT_MAXSEC},
        {"method", required_argument, NULL, OPT_METHOD},
        {"path", required_argument, NULL, OPT_PATH},
        {"body-file", required_argument, NULL, OPT_BODY},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"paths-file", required_argument, NULL, OPT_PATHS},
        {"jobs-per-request", required_argument, NULL, OPT_JPR},
        {"size", required_argument, NULL, OPT_SIZE},
        {"tube", required_argument, NULL, OPT_TUBE},
        {"verbose", no_argument, NULL, OPT_VERBOSE},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_HOST:
            o->host = optarg;
            break;
        case OPT_PORT:
            o->port = optarg;
            break;
        case OPT_CONNS:
            o->conns = parse_long("conns", optarg, 1, 10000);
            break;
        case OPT_REQUESTS:
            o->requests = parse_long("requests", optarg, 1, 100000000);
            break;
        case OPT_MAXSEC:
            o->max_seconds = parse_double("max-seconds", optarg, 0.001, 86400);
            break;
        case OPT_METHOD:
            o->method = optarg;
            break;
        case OPT_PATH:
            o->path = optarg;
            break;
        case OPT_BODY:
            o->body_file = optarg;
            break;
        case OPT_TOKEN:
            o->token = optarg;
            break;
        case OPT_PATHS:
            o->paths_file = optarg;
            break;
        case OPT_JPR:
            o->jobs_per_request = parse_long("jobs-per-request", optarg, 1, 1000000);
            break;
        case OPT_SIZE:
            o->size = parse_long("size", optarg, 0, 65535);
            break;
        case OPT_TUBE:
            o->tube = optarg;
            break;
        case OPT_VERBOSE:
            o->verbose = true;
            break;
        case OPT_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc) usage_die("unexpected argument '%s'", argv[optind]);
    if (!o->port) usage_die("--port is required");
    if (o->mode == MODE_HTTP) {
        if (!o->method) o->method = o->body_file ? "POST" : "GET";
        for (const char *p = o->method; *p; p++)
            if (*p < 'A' || *p > 'Z') usage_die("--method: '%s' is not a method", o->method);
        if (o->path[0] != '/') usage_die("--path must start with '/'");
    } else {
        if (o->body_file || o->paths_file || o->token || o->method)
            usage_die("--body-file, --paths-file, --token and --method are for http mode");
        if (strlen(o->tube) > 200 || strpbrk(o->tube, " \r\n"))
            usage_die("--tube: '%s' is not a tube name", o->tube);
    }
}

/* ---- reporting ------------------------------------------------------------------ */

static void report_error(struct state *st, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void report_error(struct state *st, const char *fmt, ...)
{
    st->errors++;
    if (st->first_error_printed && !st->opt.verbose) return;
    st->first_error_printed = true;
    va_list ap;
    fputs("drover-load: first error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void fatal(struct state *st, struct conn *c, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void fatal(struct state *st, struct conn *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "drover-load: connection %d: ", c ? c->index : -1);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    st->fatal = true;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values, in milliseconds. */
static double pct_ms(const int64_t *v, long n, double p)
{
    if (n <= 0) return 0;
    long rank = (long)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)v[rank - 1] / 1e6;
}

static void print_report(struct state *st)
{
    long n = st->completed;
    qsort(st->lat_ns, (size_t)n, sizeof(*st->lat_ns), cmp_i64);
    double secs = n > 0 ? (double)(st->t_last - st->t0) / 1e9 : 0;
    double per_s = secs > 0 ? (double)n / secs : 0;
    double jobs_s =
        secs > 0 ? (double)(n - st->errors) * (double)st->opt.jobs_per_request / secs : 0;
    double mean = 0;
    for (long i = 0; i < n; i++)
        mean += (double)st->lat_ns[i];
    mean = n > 0 ? mean / (double)n / 1e6 : 0;
    printf("{\"mode\":\"%s\",\"conns\":%ld,\"requests\":%ld,\"requested\":%ld,\"errors\":%ld,"
           "\"seconds\":%.3f,\"per_s\":%.1f,\"jobs_per_s\":%.1f,\"mean_ms\":%.3f,"
           "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
           "\"time_limited\":%s,\"reconnects\":%ld,\"failed\":%s}\n",
           mode_names[st->opt.mode], st->opt.conns, n, st->opt.requests, st->errors, secs, per_s,
           jobs_s, mean, pct_ms(st->lat_ns, n, 50), pct_ms(st->lat_ns, n, 90),
           pct_ms(st->lat_ns, n, 99), n > 0 ? (double)st->lat_ns[n - 1] / 1e6 : 0,
           st->time_up ? "true" : "false", st->reconnects, st->fatal ? "true" : "false");
    fflush(stdout);
}

/* ---- connections ---------------------------------------------------------------- */

static int connect_to(const struct options *o, char *why, size_t whylen)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(o->host, o->port, &hints, &res);
    if (rc != 0) {
        snprintf(why, whylen, "cannot resolve '%s' port '%s': %s", o->host, o->port,
                 gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        /* A blocking connect: the targets are on this host, and connecting is not measured. */
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        snprintf(why, whylen, "cannot connect to %s:%s: %s", o->host, o->port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        snprintf(why, whylen, "fcntl: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int conn_open(struct state *st, struct conn *c)
{
    char why[512] = "connection failed";
    c->fd = connect_to(&st->opt, why, sizeof(why));
    if (c->fd < 0) {
        fatal(st, c, "%s", why);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(st->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        fatal(st, c, "epoll_ctl: %s", strerror(errno));
        return -1;
    }
    c->want_write = false;
    buf_reset(&c->in);
    buf_reset(&c->out);
    c->out_off = 0;
    c->hdr_scan = 0;
    c->reconnect = false;
    c->setup_step = 0;
    c->phase = PH_IDLE;
    return 0;
}

static void conn_close(struct state *st, struct conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(st->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->phase = PH_CLOSED;
}

static void set_want_write(struct state *st, struct conn *c, bool on)
{
    if (c->want_write == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0u), .data.ptr = c};
    if (epoll_ctl(st->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        fatal(st, c, "epoll_ctl: %s", strerror(errno));
        return;
    }
    c->want_write = on;
}

/* Sends what it can of c->out; registers for EPOLLOUT when the socket is full. */
static void conn_flush(struct state *st, struct conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_want_write(st, c, true);
            return;
        }
        fatal(st, c, "send: %s", n < 0 ? strerror(errno) : "wrote nothing");
        return;
    }
    buf_reset(&c->out);
    c->out_off = 0;
    set_want_write(st, c, false);
}

static void conn_consume(struct conn *c, size_t n)
{
    if (n >= c->in.len) {
        buf_reset(&c->in);
    } else {
        memmove(c->in.data, c->in.data + n, c->in.len - n);
        c->in.len -= n;
        c->in.data[c->in.len] = '\0';
    }
    c->hdr_scan = 0;
}

/* ---- requests ------------------------------------------------------------------- */

static void http_build(struct state *st, struct buf *b, const char *path)
{
    const struct options *o = &st->opt;
    buf_addf(b, "%s %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: drover-load\r\n", o->method, path,
             o->host, o->port);
    if (o->token) buf_addf(b, "Authorization: Bearer %s\r\n", o->token);
    if (st->body) {
        buf_addf(b, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", st->body_len);
        buf_add(b, st->body, st->body_len);
    } else if (strcmp(o->method, "GET") && strcmp(o->method, "HEAD")) {
        buf_adds(b, "Content-Length: 0\r\n\r\n");
    } else {
        buf_adds(b, "\r\n");
    }
}

static void send_line(struct state *st, struct conn *c, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void send_line(struct state *st, struct conn *c, const char *fmt, ...)
{
    va_list ap;
    char line[512];
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        fatal(st, c, "command too long");
        return;
    }
    buf_add(&c->out, line, (size_t)n);
    conn_flush(st, c);
}

/* beanstalk setup: `use` for put, `watch` + `ignore default` for take. */
static void beanstalk_setup_next(struct state *st, struct conn *c)
{
    c->phase = PH_SETUP;
    if (st->opt.mode == MODE_BEANSTALK)
        send_line(st, c, "use %s\r\n", st->opt.tube);
    else if (c->setup_step == 0)
        send_line(st, c, "watch %s\r\n", st->opt.tube);
    else
        send_line(st, c, "ignore default\r\n");
}

static bool beanstalk_setup_done(const struct state *st, const struct conn *c)
{
    if (!strcmp(st->opt.tube, "default")) return c->setup_step >= 1;
    return c->setup_step >= (st->opt.mode == MODE_BEANSTALK ? 1 : 2);
}

/* Starts the next measured request on an idle connection, if the run is not over. */
static void conn_issue(struct state *st, struct conn *c)
{
    if (st->fatal || c->phase != PH_IDLE) return;
    if (st->opt.mode != MODE_HTTP && !beanstalk_setup_done(st, c)) {
        beanstalk_setup_next(st, c);
        return;
    }
    if (st->issued >= st->opt.requests || st->time_up) return;
    if (time_mono_ns() >= st->deadline) {
        st->time_up = true;
        return;
    }
    long seq = st->issued++;
    c->phase = PH_REQUEST;
    c->t_start = time_mono_ns();
    switch (st->opt.mode) {
    case MODE_HTTP:
        if (st->npaths) {
            http_build(st, &c->out, st->paths[(size_t)seq % st->npaths]);
        } else {
            buf_add(&c->out, st->fixed_req.data, st->fixed_req.len);
        }
        conn_flush(st, c);
        break;
    case MODE_BEANSTALK:
        buf_addf(&c->out, "put 0 0 60 %ld\r\n", st->opt.size);
        buf_add(&c->out, st->put_data, (size_t)st->opt.size);
        buf_adds(&c->out, "\r\n");
        conn_flush(st, c);
        break;
    case MODE_BEANSTALK_TAKE:
        send_line(st, c, "reserve-with-timeout 0\r\n");
        break;
    }
}

static void request_done(struct state *st, struct conn *c)
{
    int64_t now = time_mono_ns();
    st->lat_ns[st->completed++] = now - c->t_start;
    st->t_last = now;
    c->phase = PH_IDLE;
}

/* ---- answers -------------------------------------------------------------------- */

/* Case-insensitive search for a header's value among the header lines [hdr, end). */
static const char *header_value(const char *hdr, const char *end, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *p = hdr;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nlen && !strncasecmp(p, name, nlen) && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            const char *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        p = eol + 1;
    }
    return NULL;
}

static bool value_has_token(const char *v, size_t vlen, const char *token)
{
    size_t tlen = strlen(token);
    for (size_t i = 0; i + tlen <= vlen; i++)
        if (!strncasecmp(v + i, token, tlen)) return true;
    return false;
}

/*
 * Parses a chunked body at p[0..len). Returns the bytes the body takes
 * (through the final CRLF) when it is complete, 0 when more is needed, -1
 * when it is malformed. *body_len receives the decoded length.
 */
static long chunked_length(const char *p, size_t len, size_t *body_len)
{
    size_t off = 0, total = 0;
    for (;;) {
        const char *eol = memchr(p + off, '\n', len - off);
        if (!eol) return 0;
        char *end;
        errno = 0;
        unsigned long long sz = strtoull(p + off, &end, 16);
        if (errno || end == p + off || sz > MAX_RESPONSE) return -1;
        off = (size_t)(eol - p) + 1;
        if (sz == 0) {
            /* Trailers until an empty line. */
            for (;;) {
                const char *e2 = memchr(p + off, '\n', len - off);
                if (!e2) return 0;
                size_t linelen = (size_t)(e2 - (p + off));
                off = (size_t)(e2 - p) + 1;
                if (linelen == 0 || (linelen == 1 && p[off - 2] == '\r')) {
                    *body_len = total;
                    return (long)off;
                }
            }
        }
        if (len - off < sz + 2) return 0;
        off += sz;
        if (p[off] == '\r') off++;
        if (off >= len) return 0;
        if (p[off] != '\n') return -1;
        off++;
        total += sz;
    }
}

/* Handles a complete HTTP answer if there is one; returns true if one was consumed. */
static bool http_try_answer(struct state *st, struct conn *c)
{
    if (c->phase != PH_REQUEST) {
        fatal(st, c, "unexpected bytes from the server: %.80s", c->in.data);
        return false;
    }
    size_t from = c->hdr_scan;
    char *hend = NULL;
    if (c->in.len >= 4) {
        const char *found = memmem(c->in.data + from, c->in.len - from, "\r\n\r\n", 4);
        if (found)
            hend = (char *)found;
        else
            c->hdr_scan = c->in.len - 3;
    }
    if (!hend) {
        if (c->in.len > 1024 * 1024) fatal(st, c, "response headers larger than 1 MiB");
        return false;
    }
    const char *data = c->in.data;
    size_t hlen = (size_t)(hend - data) + 4;
    if (strncmp(data, "HTTP/1.", 7) || hlen < 12) {
        fatal(st, c, "not an HTTP/1.x response: %.80s", data);
        return false;
    }
    char *end;
    long status = strtol(data + 9, &end, 10);
    if (end != data + 12 || status < 100 || status > 599) {
        fatal(st, c, "bad status line: %.80s", data);
        return false;
    }
    const char *hdr = memchr(data, '\n', hlen);
    hdr = hdr ? hdr + 1 : data + hlen;
    size_t vlen;
    const char *v;
    size_t body_off = hlen, body_len = 0, total;
    if (status == 204 || status == 304 || (status >= 100 && status < 200) ||
        !strcmp(st->opt.method, "HEAD")) {
        total = hlen;
    } else if ((v = header_value(hdr, hend + 2, "Transfer-Encoding", &vlen)) &&
               value_has_token(v, vlen, "chunked")) {
        long n = chunked_length(data + hlen, c->in.len - hlen, &body_len);
        if (n < 0) {
            fatal(st, c, "malformed chunked body");
            return false;
        }
        if (n == 0) {
            if (c->in.len > MAX_RESPONSE)
                fatal(st, c, "response larger than %u bytes", MAX_RESPONSE);
            return false;
        }
        total = hlen + (size_t)n;
    } else if ((v = header_value(hdr, hend + 2, "Content-Length", &vlen))) {
        errno = 0;
        unsigned long long cl = strtoull(v, &end, 10);
        if (errno || end != v + vlen || cl > MAX_RESPONSE) {
            fatal(st, c, "bad Content-Length '%.*s'", (int)vlen, v);
            return false;
        }
        body_len = (size_t)cl;
        total = hlen + body_len;
        if (c->in.len < total) return false;
    } else {
        fatal(st, c,
              "status %ld response without Content-Length or chunked encoding "
              "(read-until-close is not supported)",
              status);
        return false;
    }
    if (status >= 100 && status < 200) {
        /* An interim answer (100 Continue): the real one follows. */
        conn_consume(c, total);
        return true;
    }
    if ((v = header_value(hdr, hend + 2, "Connection", &vlen)) && value_has_token(v, vlen, "close"))
        c->reconnect = true;
    if (!strncmp(data + 5, "1.0", 3) && !((v = header_value(hdr, hend + 2, "Connection", &vlen)) &&
                                          value_has_token(v, vlen, "keep-alive")))
        c->reconnect = true;
    request_done(st, c);
    if (status < 200 || status > 299) {
        bool chunked = body_off + body_len != total;
        if (chunked)
            report_error(st, "HTTP %ld (chunked body of %zu bytes)", status, body_len);
        else
            report_error(st, "HTTP %ld: %.*s", status, (int)(body_len > 2000 ? 2000 : body_len),
                         data + body_off);
    }
    conn_consume(c, total);
    if (c->reconnect) {
        conn_close(st, c);
        st->reconnects++;
        if (conn_open(st, c) < 0) return false;
    }
    return true;
}

/* Handles one complete beanstalk answer line (and its data) if there is one. */
static bool beanstalk_try_answer(struct state *st, struct conn *c)
{
    const char *data = c->in.data;
    const char *eol = memmem(data, c->in.len, "\r\n", 2);
    if (!eol) {
        if (c->in.len > 4096) fatal(st, c, "answer line longer than 4 KiB");
        return false;
    }
    size_t linelen = (size_t)(eol - data);
    size_t total = linelen + 2;
    char line[256];
    snprintf(line, sizeof(line), "%.*s", (int)(linelen < 255 ? linelen : 255), data);

    switch (c->phase) {
    case PH_SETUP:
        if (strncmp(line, st->opt.mode == MODE_BEANSTALK ? "USING " : "WATCHING ",
                    st->opt.mode == MODE_BEANSTALK ? 6 : 9)) {
            fatal(st, c, "setup refused: %s", line);
            return false;
        }
        c->setup_step++;
        c->phase = PH_IDLE;
        break;
    case PH_REQUEST:
        if (st->opt.mode == MODE_BEANSTALK) {
            request_done(st, c);
            if (strncmp(line, "INSERTED ", 9)) report_error(st, "put: %s", line);
            break;
        }
        if (!strncmp(line, "RESERVED ", 9)) {
            char *end;
            errno = 0;
            unsigned long long id = strtoull(line + 9, &end, 10);
            unsigned long long bytes = *end == ' ' ? strtoull(end + 1, &end, 10) : 0;
            if (errno || *end) {
                fatal(st, c, "bad RESERVED line: %s", line);
                return false;
            }
            if (c->in.len < total + bytes + 2)
                return false; /* the job's data is not all here yet */
            total += (size_t)bytes + 2;
            c->phase = PH_DELETE;
            conn_consume(c, total);
            send_line(st, c, "delete %llu\r\n", id);
            return true;
        }
        request_done(st, c);
        report_error(st, "reserve-with-timeout 0: %s%s", line,
                     !strcmp(line, "TIMED_OUT") ? " (the tube is empty)" : "");
        break;
    case PH_DELETE:
        request_done(st, c);
        if (strcmp(line, "DELETED")) report_error(st, "delete: %s", line);
        break;
    default:
        fatal(st, c, "unexpected answer: %s", line);
        return false;
    }
    conn_consume(c, total);
    return true;
}

/* Reads what is there and handles every complete answer. */
static void conn_read(struct state *st, struct conn *c)
{
    for (;;) {
        buf_grow(&c->in, READ_CHUNK);
        ssize_t n = recv(c->fd, c->in.data + c->in.len, READ_CHUNK, 0);
        if (n > 0) {
            c->in.len += (size_t)n;
            c->in.data[c->in.len] = '\0';
            if ((size_t)n < READ_CHUNK) break;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        /* EOF or a reset. */
        if (c->phase == PH_IDLE && c->in.len == 0 && st->opt.mode == MODE_HTTP) {
            /* The server dropped an idle keep-alive connection: open another. */
            conn_close(st, c);
            st->reconnects++;
            if (conn_open(st, c) == 0) conn_issue(st, c);
            return;
        }
        fatal(st, c, "the server closed the connection%s%s",
              n < 0 ? ": " : (c->phase == PH_IDLE ? "" : " with a request outstanding"),
              n < 0 ? strerror(errno) : "");
        conn_close(st, c);
        return;
    }
    while (c->in.len > 0 && !st->fatal && c->fd >= 0) {
        bool got = st->opt.mode == MODE_HTTP ? http_try_answer(st, c) : beanstalk_try_answer(st, c);
        if (!got) break;
        if (c->phase == PH_IDLE) conn_issue(st, c);
    }
}

/* ---- main ----------------------------------------------------------------------- */

static bool all_idle(const struct state *st)
{
    for (long i = 0; i < st->opt.conns; i++) {
        enum conn_phase ph = st->conns[i].phase;
        if (ph != PH_IDLE && ph != PH_CLOSED) return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    struct state st;
    memset(&st, 0, sizeof(st));
    parse_args(&st, argc, argv);
    signal(SIGPIPE, SIG_IGN);

    if (st.opt.mode == MODE_HTTP) {
        if (st.opt.body_file) st.body = read_file(st.opt.body_file, &st.body_len);
        if (st.opt.paths_file)
            load_paths(&st);
        else
            http_build(&st, &st.fixed_req, st.opt.path);
    } else if (st.opt.mode == MODE_BEANSTALK) {
        st.put_data = xmalloc((size_t)st.opt.size + 1);
        for (long i = 0; i < st.opt.size; i++)
            st.put_data[i] = (char)('a' + i % 26);
        st.put_data[st.opt.size] = '\0';
    }
    st.lat_ns = xcalloc((size_t)st.opt.requests, sizeof(*st.lat_ns));

    st.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (st.epfd < 0) die("epoll_create1: %s", strerror(errno));
    st.conns = xcalloc((size_t)st.opt.conns, sizeof(*st.conns));
    for (long i = 0; i < st.opt.conns; i++) {
        st.conns[i].fd = -1;
        st.conns[i].index = (int)i;
        if (conn_open(&st, &st.conns[i]) < 0) {
            print_report(&st);
            return 1;
        }
    }

    st.t0 = time_mono_ns();
    st.t_last = st.t0;
    st.deadline = st.t0 + (int64_t)(st.opt.max_seconds * 1e9);
    for (long i = 0; i < st.opt.conns && !st.fatal; i++)
        conn_issue(&st, &st.conns[i]);

    struct epoll_event evs[256];
    while (!st.fatal) {
        int64_t now = time_mono_ns();
        if (now >= st.deadline && !st.time_up && st.completed < st.opt.requests) st.time_up = true;
        bool idle = all_idle(&st);
        if (idle && (st.issued >= st.opt.requests || st.time_up)) break;
        int64_t wake = st.time_up ? st.deadline + GRACE_NS : st.deadline;
        if (now >= wake) {
            fprintf(stderr, "drover-load: requests still outstanding %.0f s after --max-seconds\n",
                    (double)GRACE_NS / 1e9);
            st.fatal = true;
            break;
        }
        int timeout_ms = (int)((wake - now) / 1000000) + 1;
        int n = epoll_wait(st.epfd, evs, (int)ARRAY_SIZE(evs), timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n && !st.fatal; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->fd < 0) continue;
            if (evs[i].events & EPOLLOUT) conn_flush(&st, c);
            if (!st.fatal && c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                conn_read(&st, c);
        }
        /* Connections that went idle while the run was not over yet, e.g. after setup. */
        for (long i = 0; i < st.opt.conns && !st.fatal; i++)
            if (st.conns[i].phase == PH_IDLE) conn_issue(&st, &st.conns[i]);
    }
    if (st.time_up)
        fprintf(stderr, "drover-load: stopped by --max-seconds %g after %ld of %ld requests\n",
                st.opt.max_seconds, st.completed, st.opt.requests);

    print_report(&st);
    int rc = 0;
    if (st.fatal) rc = 1;
    if (st.errors > 0) {
        fprintf(stderr, "drover-load: %ld of %ld requests failed\n", st.errors, st.completed);
        rc = 1;
    }

    for (long i = 0; i < st.opt.conns; i++) {
        conn_close(&st, &st.conns[i]);
        buf_release(&st.conns[i].in);
        buf_release(&st.conns[i].out);
    }
    close(st.epfd);
    free(st.conns);
    free(st.lat_ns);
    free(st.body);
    free(st.put_data);
    for (size_t i = 0; i < st.npaths; i++)
        free(st.paths[i]);
    free(st.paths);
    buf_release(&st.fixed_req);
    return rc;
}
