/*
 * client.c - see client.h. An HTTP/JSON call on libcurl: build the request
 * (http_call_setup), let curl run it, read the answer (http_call_finish).
 *
 * Invariants: the answer buffer never exceeds call->max_response bytes (the
 * write callback refuses more, which curl reports as CURLE_WRITE_ERROR); a
 * transport failure never reaches the user as curl's raw error text, but as
 * "cannot reach the drover server at URL: <reason>".
 */
#include "http/client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

#ifndef DROVER_VERSION
#define DROVER_VERSION "dev"
#endif

static void global_init(void)
{
    static bool done;
    if (!done) {
        /* Thread-safe since curl 7.84 when built with atomics; the CLI and the
         * agent call it from their main thread before anything else anyway. */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) die("cannot initialise libcurl");
        done = true;
    }
}

static char *ca_file; /* http_set_ca_file's, or NULL */

int http_set_ca_file(const char *path, struct err *e)
{
    const char *from = "--ca-file";
    if (!path || !*path) {
        path = getenv("DROVER_CA_FILE");
        from = "DROVER_CA_FILE";
    }
    free(ca_file);
    ca_file = NULL;
    if (!path || !*path) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return err_set(e, ERR_INVALID, "cannot read the CA file '%s' (%s): %s", path, from,
                           strerror(errno));
    fclose(f);
    ca_file = xstrdup(path);
    return 0;
}

void http_easy_tls(CURL *easy)
{
    /* beside the default CA path (the system's store), which stays */
    if (ca_file) curl_easy_setopt(easy, CURLOPT_CAINFO, ca_file);
}

bool http_host_is_loopback(const char *host)
{
    if (!host || !*host) return false;
    if (!strcasecmp(host, "localhost") || !strcasecmp(host, "localhost.")) return true;
    char tmp[64];
    size_t n = strlen(host);
    if (host[0] == '[' && n >= 2 && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n >= sizeof(tmp)) return false;
    memcpy(tmp, host, n);
    tmp[n] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, tmp, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, tmp, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return false;
}

static bool header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return false;
    return true;
}

int http_client_set_token(struct http_client *c, const char *token, struct err *e)
{
    if (token && !header_safe(token))
        return err_set(e, ERR_INVALID, "the token holds control characters");
    free(c->token);
    c->token = token && *token ? xstrdup(token) : NULL;
    return 0;
}

/* Checks and normalises one server URL into *out (owned); sets *loopback. */
static int parse_server(const char *base_url, char **out, bool *loopback, struct err *e)
{
    if (!base_url || !*base_url) return err_set(e, ERR_INVALID, "the server URL is empty");
    if (!header_safe(base_url))
        return err_set(e, ERR_INVALID, "the server URL '%s' holds control characters", base_url);
    char *url = strstr(base_url, "://") ? xstrdup(base_url) : xasprintf("http://%s", base_url);
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        url[--n] = '\0';

    int rc = 0;
    char *scheme = NULL, *host = NULL, *query = NULL;
    CURLU *u = curl_url();
    if (!u) die("out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        rc = err_set(e, ERR_INVALID, "the server URL '%s' is not a valid URL", base_url);
        goto out;
    }
    if (strcmp(scheme, "http") && strcmp(scheme, "https")) {
        rc = err_set(e, ERR_INVALID, "the server URL '%s' must start with http:// or https://",
                     base_url);
        goto out;
    }
    /* "17312" is no port but a host, an IPv4 address as a number (0.0.67.160): a token sent
       there leaves this machine */
    const char *h = strstr(url, "://") + 3;
    size_t hn = strcspn(h, ":/"), digits = strspn(h, "0123456789");
    if (hn && digits == hn) {
        rc = err_set(e, ERR_INVALID,
                     "the server URL '%s' names no host ('%.*s' is a number): give "
                     "http://HOST:PORT (a port of this machine: http://127.0.0.1:PORT)",
                     base_url, (int)hn, h);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK) {
        rc = err_set(e, ERR_INVALID, "the server URL '%s' must not have a query", base_url);
        goto out;
    }
    *loopback = http_host_is_loopback(host);
    *out = url;
    url = NULL;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(query);
    curl_url_cleanup(u);
    free(url);
    return rc;
}

int http_client_init(struct http_client *c, const char *base_url, const char *token, struct err *e)
{
    memset(c, 0, sizeof(*c));
    c->connect_timeout_ms = 10000;
    c->timeout_ms = 60000;
    c->max_response = HTTP_CLIENT_MAX_RESPONSE;
    global_init();

    if (!base_url || !*base_url) return err_set(e, ERR_INVALID, "the server URL is empty");
    /* a comma-separated list: each item trimmed of blanks, none empty, at most HTTP_MAX_SERVERS */
    int rc = 0;
    c->loopback = true;
    for (const char *p = base_url;;) {
        size_t n = strcspn(p, ",");
        const char *b = p, *end = p + n;
        while (b < end && (*b == ' ' || *b == '\t'))
            b++;
        while (end > b && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (b == end) {
            rc = err_set(e, ERR_INVALID, "the server list '%s' has an empty entry", base_url);
            break;
        }
        if (c->nservers == HTTP_MAX_SERVERS) {
            rc = err_set(e, ERR_INVALID, "the server list '%s' has more than %d servers", base_url,
                         HTTP_MAX_SERVERS);
            break;
        }
        char *item = xstrndup(b, (size_t)(end - b));
        bool lo = false;
        char *url = NULL;
        rc = parse_server(item, &url, &lo, e);
        free(item);
        if (rc < 0) break;
        c->servers[c->nservers++] = url;
        c->loopback = c->loopback && lo;
        if (!p[n]) break;
        p += n + 1;
    }
    if (rc == 0) rc = http_client_set_token(c, token, e);
    if (rc < 0) {
        http_client_release(c);
        return rc;
    }
    c->base_url = c->servers[0];
    return 0;
}

bool http_client_next_server(struct http_client *c)
{
    if (c->nservers < 2) return false;
    c->current = (c->current + 1) % c->nservers;
    c->base_url = c->servers[c->current];
    return true;
}

void http_client_release(struct http_client *c)
{
    if (c->easy) curl_easy_cleanup(c->easy);
    for (size_t i = 0; i < c->nservers; i++)
        free(c->servers[i]);
    free(c->token);
    memset(c, 0, sizeof(*c));
}

char *http_escape(const char *s)
{
    global_init();
    char *q = curl_easy_escape(NULL, s, 0);
    if (!q) die("out of memory");
    char *r = xstrdup(q);
    curl_free(q);
    return r;
}

char *http_escape_path(const char *s)
{
    struct buf b = BUF_INIT;
    buf_adds(&b, ""); /* "" for an empty s, not NULL */
    for (const char *p = s;;) {
        size_t n = strcspn(p, "/");
        char *seg = xstrndup(p, n);
        char *q = http_escape(seg);
        buf_adds(&b, q);
        free(q);
        free(seg);
        if (!p[n]) break;
        buf_addc(&b, '/');
        p += n + 1;
    }
    return buf_detach(&b);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_call *call = arg;
    size_t n = size * nmemb;
    if (n > call->max_response - call->resp.len) {
        call->too_large = true;
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    buf_add(&call->resp, data, n);
    return n;
}

/* Sets an option that cannot fail for a valid handle except by lack of memory. */
#define SETOPT(h, opt, val)                                                                        \
    do {                                                                                           \
        if (curl_easy_setopt((h), (opt), (val)) != CURLE_OK) goto setopt_failed;                   \
    } while (0)

/* http_call_setup with the media types the caller accepts ("Accept: ..."). */
static int call_setup(struct http_call *call, const struct http_client *c, CURL *easy,
                      const char *method, const char *path, json_t *body, const char *accept,
                      struct err *e)
{
    memset(call, 0, sizeof(*call));
    call->easy = easy;
    call->max_response = c->max_response ? c->max_response : HTTP_CLIENT_MAX_RESPONSE;
    call->url = xasprintf("%s%s", c->base_url, path);
    if (body) {
        call->body = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!call->body) return err_set(e, ERR_INVALID, "cannot encode the request body as JSON");
    }

    struct curl_slist *h = NULL;
    h = curl_slist_append(h, accept);
    if (h && body) h = curl_slist_append(h, "Content-Type: application/json");
    if (h) h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
    if (h && c->token) {
        char *auth = xasprintf("Authorization: Bearer %s", c->token);
        struct curl_slist *h2 = curl_slist_append(h, auth);
        free(auth);
        if (!h2) curl_slist_free_all(h);
        h = h2;
    }
    if (!h) die("out of memory");
    call->headers = h;

    curl_easy_reset(easy);
    http_easy_tls(easy);
    SETOPT(easy, CURLOPT_ERRORBUFFER, call->errbuf);
    SETOPT(easy, CURLOPT_URL, call->url);
    SETOPT(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(easy, CURLOPT_NOSIGNAL, 1L);
    SETOPT(easy, CURLOPT_USERAGENT, "drover/" DROVER_VERSION);
    SETOPT(easy, CURLOPT_HTTPHEADER, call->headers);
    SETOPT(easy, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    SETOPT(easy, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    SETOPT(easy, CURLOPT_WRITEFUNCTION, on_write);
    SETOPT(easy, CURLOPT_WRITEDATA, call);
    if (c->loopback)
        SETOPT(easy, CURLOPT_NOPROXY, "*"); /* a proxy from the environment cannot reach us */

    if (call->body) {
        SETOPT(easy, CURLOPT_POSTFIELDS, call->body);
        SETOPT(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(call->body));
        if (strcmp(method, "POST")) SETOPT(easy, CURLOPT_CUSTOMREQUEST, method);
    } else if (!strcmp(method, "POST")) {
        SETOPT(easy, CURLOPT_POSTFIELDS, "");
        SETOPT(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    } else if (!strcmp(method, "GET")) {
        SETOPT(easy, CURLOPT_HTTPGET, 1L);
    } else if (!strcmp(method, "HEAD")) {
        SETOPT(easy, CURLOPT_NOBODY, 1L);
    } else {
        SETOPT(easy, CURLOPT_CUSTOMREQUEST, method);
    }
    return 0;

setopt_failed:
    return err_set(e, ERR_INTERNAL, "cannot prepare the request to %s", call->url);
}

int http_call_setup(struct http_call *call, const struct http_client *c, CURL *easy,
                    const char *method, const char *path, json_t *body, struct err *e)
{
    return call_setup(call, c, easy, method, path, body, "Accept: application/json", e);
}

void http_call_release(struct http_call *call)
{
    free(call->url);
    free(call->body);
    curl_slist_free_all(call->headers);
    buf_release(&call->resp);
    memset(call, 0, sizeof(*call));
}

/* Why a connection could not be made, in a few lower-case words. */
static const char *connect_reason(long os_errno)
{
    switch (os_errno) {
    case ECONNREFUSED:
        return "connection refused";
    case ENETUNREACH:
        return "network unreachable";
    case EHOSTUNREACH:
        return "host unreachable";
    case ETIMEDOUT:
        return "connection timed out";
    case EADDRNOTAVAIL:
        return "address not available";
    case ECONNRESET:
        return "connection reset";
    case EACCES:
    case EPERM:
        return "connection not permitted";
    default:
        return "cannot connect";
    }
}

/* curl's description of rc with a lower-case first letter, into tmp. */
static const char *curl_reason(CURLcode rc, char *tmp, size_t n)
{
    snprintf(tmp, n, "%s", curl_easy_strerror(rc));
    if (tmp[0] && isupper((unsigned char)tmp[0]) && !isupper((unsigned char)tmp[1]))
        tmp[0] = (char)tolower((unsigned char)tmp[0]);
    return tmp;
}

static int transport_error(const struct http_call *call, const struct http_client *c, CURLcode rc,
                           struct err *e)
{
    long os_errno = 0;
    curl_easy_getinfo(call->easy, CURLINFO_OS_ERRNO, &os_errno);
    const char *hint_open = c->hint ? " (" : "";
    const char *hint = c->hint ? c->hint : "";
    const char *hint_close = c->hint ? ")" : "";
    char tmp[256];
    const char *why;

    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
        why = "unknown host";
        break;
    case CURLE_COULDNT_RESOLVE_PROXY:
        why = "unknown proxy host";
        break;
    case CURLE_COULDNT_CONNECT:
        why = connect_reason(os_errno);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        if (call->connected)
            return err_set(e, ERR_UNAVAILABLE,
                           "the drover server at %s did not answer within %ld s", c->base_url,
                           (c->timeout_ms + 999) / 1000);
        why = "connection timed out";
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
        return err_set(e, ERR_UNAVAILABLE,
                       "cannot verify the TLS certificate of the drover server at %s: %s (give "
                       "the CA that signed it with --ca-file or DROVER_CA_FILE, and use the "
                       "host name the certificate is for)",
                       c->base_url, call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc));
    case CURLE_SSL_CONNECT_ERROR:
        why = call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc);
        /* OpenSSL's words for an answer that is not TLS: most likely a plain HTTP server */
        return err_set(e, ERR_UNAVAILABLE,
                       "cannot make a TLS connection to the drover server at %s: %s%s",
                       c->base_url, why,
                       strstr(why, "wrong version number") || strstr(why, "packet length too long")
                           ? " (does it serve plain HTTP? then its URL starts with http://)"
                           : "");
    case CURLE_GOT_NOTHING:
        return err_set(e, ERR_UNAVAILABLE,
                       "the drover server at %s closed the connection without answering",
                       c->base_url);
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
        if (call->connected)
            return err_set(e, ERR_UNAVAILABLE,
                           "the connection to the drover server at %s broke during the request",
                           c->base_url);
        why = "connection reset";
        break;
    default:
        why = curl_reason(rc, tmp, sizeof(tmp));
        break;
    }
    return err_set(e, ERR_UNAVAILABLE, "cannot reach the drover server at %s: %s%s%s%s",
                   c->base_url, why, hint_open, hint, hint_close);
}

int http_call_finish(struct http_call *call, const struct http_client *c, CURLcode rc, long *status,
                     json_t **resp, struct err *e)
{
    long st = 0;
    json_t *j = NULL;
    int ret = 0;
    curl_off_t connect_us = 0;

    curl_easy_getinfo(call->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
    call->connected = connect_us > 0;

    if (rc != CURLE_OK) {
        if (rc == CURLE_WRITE_ERROR && call->too_large)
            ret = err_set(e, ERR_TOOLARGE,
                          "the answer of the drover server at %s is larger than %zu MiB",
                          c->base_url, call->max_response >> 20);
        else
            ret = transport_error(call, c, rc, e);
        goto out;
    }
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &st);

    json_error_t jerr;
    if (call->resp.len > 0) /* a job's output may hold NUL */
        j = json_loadb(call->resp.data, call->resp.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

    if (st >= 200 && st < 300) {
        if (call->resp.len > 0 && !j)
            ret = err_set(e, ERR_INTERNAL,
                          "the answer of the server at %s is not JSON (%s at byte %d)", c->base_url,
                          jerr.text, jerr.position);
        goto out;
    }

    json_t *error = json_object_get(j, "error");
    ret = err_from_answer((int)st, json_string_value(json_object_get(error, "code")));
    const char *msg = json_string_value(json_object_get(error, "message"));
    const char *field = json_string_value(json_object_get(error, "field"));
    if (msg && *msg)
        err_field(e, ret, field, "%s", msg);
    else
        err_set(e, ret, "the server at %s answered %ld (%s) to %s", c->base_url, st, err_str(ret),
                call->url + strlen(c->base_url));
out:
    if (status) *status = st;
    if (resp)
        *resp = j;
    else
        json_decref(j);
    return ret;
}

/* After each server listed failed: e's message (the last one's) names the others too. */
static void note_others_tried(const struct http_client *c, struct err *e)
{
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < c->nservers; i++)
        if (i != c->current) buf_addf(&b, "%s%s", b.len ? ", " : "", c->servers[i]);
    size_t n = strlen(e->msg);
    snprintf(e->msg + n, sizeof(e->msg) - n, "; nor the other server(s) listed: %s", buf_str(&b));
    buf_release(&b);
}

bool http_try_next(const struct http_client *c, const char *method, long status)
{
    if (status == 503) return true; /* the server said it did nothing */
    if (status != 0) return false;
    /* no answer: safe to send elsewhere when it never got there, or when it only reads */
    return !c->reached || !strcmp(method, "GET") || !strcmp(method, "HEAD");
}

int http_client_json(struct http_client *c, const char *method, const char *path, json_t *body,
                     long *status, json_t **resp, struct err *e)
{
    if (status) *status = 0;
    if (resp) *resp = NULL;
    if (!c->easy && !(c->easy = curl_easy_init())) die("cannot initialise libcurl");

    int rc = 0;
    for (size_t tried = 0;; tried++) {
        long st = 0;
        struct http_call call;
        rc = http_call_setup(&call, c, c->easy, method, path, body, e);
        if (rc == 0) {
            rc = http_call_finish(&call, c, curl_easy_perform(c->easy), &st, resp, e);
            c->reached = call.connected;
        }
        http_call_release(&call);
        if (status) *status = st;
        if (rc == 0 || tried + 1 >= c->nservers || !http_try_next(c, method, st)) {
            if (rc && tried > 0 && tried + 1 >= c->nservers) /* each one listed failed */
                note_others_tried(c, e);
            break;
        }
        if (resp) {
            json_decref(*resp);
            *resp = NULL;
        }
        log_debug("%s; trying the next server", e->msg);
        err_clear(e);
        http_client_next_server(c);
    }
    return rc;
}

/* The most of a streamed call's error answer that is kept (it is a short JSON error). */
#define STREAM_ERROR_MAX ((size_t)1 << 20)

/* A 2xx body goes to the caller's function as it comes; any other is kept for its error. */
static size_t on_stream_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_call *call = arg;
    size_t n = size * nmemb;
    long st = 0;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &st);
    if (st < 200 || st >= 300) return on_write(data, size, nmemb, arg);
    if (n == 0) return 0;
    call->last_data_ns = time_mono_ns();
    call->delivered = true;
    int rc = call->chunk_fn(call->chunk_arg, data, n, call->chunk_err);
    if (rc < 0) {
        call->chunk_rc = rc;
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    return n;
}

/* curl calls this about once a second while idle: stops a call silent for too long. */
static int on_stream_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                              curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    struct http_call *call = arg;
    if (call->idle_ns > 0 && time_mono_ns() - call->last_data_ns >= call->idle_ns) {
        call->idled = true;
        return 1; /* curl stops with CURLE_ABORTED_BY_CALLBACK */
    }
    return 0;
}

/* Keeps a streamed answer's X-Drover-Log-Offset in c->stream_at. */
static size_t on_stream_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_client *c = arg;
    size_t n = size * nmemb;
    static const char name[] = "x-drover-log-offset:";
    if (n >= 5 && !strncmp(data, "HTTP/", 5)) { /* a status line (a 100 Continue's too) */
        c->stream_at = -1;
    } else if (n > sizeof(name) - 1 && n < sizeof(name) + 40 &&
               !strncasecmp(data, name, sizeof(name) - 1)) {
        char tmp[48];
        memcpy(tmp, data + sizeof(name) - 1, n - (sizeof(name) - 1));
        tmp[n - (sizeof(name) - 1)] = '\0';
        char *end;
        errno = 0;
        long long v = strtoll(tmp, &end, 10);
        while (*end == ' ' || *end == '\r' || *end == '\n')
            end++;
        if (!errno && end != tmp && !*end && v >= 0) c->stream_at = v;
    }
    return n;
}

static int stream_once(struct http_client *c, const char *path, long idle_ms, http_chunk_fn fn,
                       void *arg, long *status, struct err *e)
{
    if (status) *status = 0;
    c->stream_at = -1;
    if (!c->easy && !(c->easy = curl_easy_init())) die("cannot initialise libcurl");

    struct http_call call;
    int rc =
        call_setup(&call, c, c->easy, "GET", path, NULL, "Accept: text/plain, application/json", e);
    if (rc < 0) goto out;
    call.max_response = call.max_response < STREAM_ERROR_MAX ? call.max_response : STREAM_ERROR_MAX;
    call.chunk_fn = fn;
    call.chunk_arg = arg;
    call.chunk_err = e;
    SETOPT(c->easy, CURLOPT_WRITEFUNCTION, on_stream_write);
    SETOPT(c->easy, CURLOPT_HEADERFUNCTION, on_stream_header);
    SETOPT(c->easy, CURLOPT_HEADERDATA, c);
    SETOPT(c->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(c->easy, CURLOPT_TCP_KEEPIDLE, 30L);
    SETOPT(c->easy, CURLOPT_TCP_KEEPINTVL, 15L);
    if (idle_ms > 0) {
        call.idle_ns = (int64_t)idle_ms * 1000000;
        call.last_data_ns = time_mono_ns(); /* the wait for the headers counts as silence too */
        SETOPT(c->easy, CURLOPT_XFERINFOFUNCTION, on_stream_progress);
        SETOPT(c->easy, CURLOPT_XFERINFODATA, &call);
        SETOPT(c->easy, CURLOPT_NOPROGRESS, 0L);
    }

    CURLcode cc = curl_easy_perform(c->easy);
    if (call.chunk_rc < 0 || call.idled) {
        /* Stopped on purpose: by the caller's function (its error is the one to tell), or
         * after idle_ms of silence (not an error: the caller decides what silence means). */
        struct err ignored = ERR_INIT;
        http_call_finish(&call, c, cc, status, NULL, &ignored);
        if (call.chunk_rc < 0)
            rc = err_set(e, call.chunk_rc, "the answer of the drover server at %s was not taken",
                         c->base_url);
        else
            rc = 1;
    } else {
        rc = http_call_finish(&call, c, cc, status, NULL, e);
    }
    /* what reached `fn` came from this server: a stop of the caller's (CURLE_WRITE_ERROR, no
       status) on a reused connection (no connect time) is no failure to go elsewhere for */
    c->reached = call.connected || call.delivered;
    goto out;

setopt_failed:
    rc = err_set(e, ERR_INTERNAL, "cannot prepare the request to %s", call.url);
out:
    http_call_release(&call);
    return rc;
}

int http_client_stream(struct http_client *c, const char *path, long idle_ms, http_chunk_fn fn,
                       void *arg, long *status, struct err *e)
{
    long st = 0;
    int rc;
    /* another server only when nothing reached `fn`: no connection, or a 503 (kept apart) */
    for (size_t tried = 0;; tried++) {
        rc = stream_once(c, path, idle_ms, fn, arg, &st, e);
        if (rc >= 0 || tried + 1 >= c->nservers || !(st == 503 || (st == 0 && !c->reached)))
            break;
        log_debug("%s; trying the next server", e->msg);
        err_clear(e);
        http_client_next_server(c);
    }
    if (status) *status = st;
    return rc;
}

/* ---- http_client_transfer ---- */

static size_t on_transfer_read(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_call *call = arg;
    struct http_transfer *t = call->transfer;
    ssize_t n = t->read_fn(t->read_arg, data, size * nmemb, call->chunk_err);
    if (n < 0) {
        call->transfer_rc = (int)n;
        return CURL_READFUNC_ABORT;
    }
    return (size_t)n;
}

/* Keeps the headers the caller asked for; each new status line (a 100 Continue) starts over. */
static size_t on_transfer_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_call *call = arg;
    struct http_transfer *t = call->transfer;
    size_t n = size * nmemb;
    static const char cl[] = "content-length:", sha[] = "x-drover-sha256:";
    if (n >= 5 && !strncmp(data, "HTTP/", 5)) {
        t->content_length = -1;
        t->sha256[0] = '\0';
    } else if (n > sizeof(cl) - 1 && !strncasecmp(data, cl, sizeof(cl) - 1)) {
        char tmp[32];
        size_t len =
            n - (sizeof(cl) - 1) < sizeof(tmp) - 1 ? n - (sizeof(cl) - 1) : sizeof(tmp) - 1;
        memcpy(tmp, data + sizeof(cl) - 1, len);
        tmp[len] = '\0';
        char *end;
        errno = 0;
        long long v = strtoll(tmp, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        if (!errno && end != tmp && !*end && v >= 0) t->content_length = v;
    } else if (n > sizeof(sha) - 1 && !strncasecmp(data, sha, sizeof(sha) - 1)) {
        const char *p = data + sizeof(sha) - 1, *end = data + n;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        size_t len = 0;
        while (p + len < end && isxdigit((unsigned char)p[len]))
            len++;
        if (len == 64) {
            for (size_t i = 0; i < len; i++)
                t->sha256[i] = (char)tolower((unsigned char)p[i]);
            t->sha256[len] = '\0';
        }
    }
    return n;
}

static int on_transfer_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                                curl_off_t ulnow)
{
    (void)ultotal;
    struct http_call *call = arg;
    struct http_transfer *t = call->transfer;
    int64_t done, total;
    if (t->read_fn) {
        done = ulnow;
        total = t->upload_size;
    } else {
        done = dlnow;
        total = dltotal > 0 ? dltotal : (t->content_length > 0 ? t->content_length : 0);
    }
    int rc = t->progress_fn(t->progress_arg, done, total, call->chunk_err);
    if (rc < 0) {
        call->transfer_rc = rc;
        return 1; /* curl stops with CURLE_ABORTED_BY_CALLBACK */
    }
    return 0;
}

/* The 2xx body of a transfer goes to the caller's function; any other is kept. */
static size_t on_transfer_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_call *call = arg;
    if (call->transfer->write_fn) return on_stream_write(data, size, nmemb, arg);
    return on_write(data, size, nmemb, arg);
}

int http_client_transfer(struct http_client *c, struct http_transfer *t, struct err *e)
{
    t->status = 0;
    t->resp = NULL;
    t->content_length = -1;
    t->sha256[0] = '\0';
    if (!c->easy && !(c->easy = curl_easy_init())) die("cannot initialise libcurl");

    struct http_call call;
    int rc = call_setup(&call, c, c->easy, t->method, t->path, NULL,
                        t->write_fn ? "Accept: */*" : "Accept: application/json", e);
    if (rc < 0) goto out;
    call.transfer = t;
    call.chunk_fn = t->write_fn;
    call.chunk_arg = t->write_arg;
    call.chunk_err = e;
    if (t->write_fn)
        call.max_response =
            call.max_response < STREAM_ERROR_MAX ? call.max_response : STREAM_ERROR_MAX;
    SETOPT(c->easy, CURLOPT_WRITEFUNCTION, on_transfer_write);
    SETOPT(c->easy, CURLOPT_HEADERFUNCTION, on_transfer_header);
    SETOPT(c->easy, CURLOPT_HEADERDATA, &call);
    /* No limit on the whole: a large file takes as long as it takes; a stall is the limit. */
    SETOPT(c->easy, CURLOPT_TIMEOUT_MS, 0L);
    SETOPT(c->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    SETOPT(c->easy, CURLOPT_LOW_SPEED_TIME, c->timeout_ms > 0 ? (c->timeout_ms + 999) / 1000 : 60L);
    SETOPT(c->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(c->easy, CURLOPT_TCP_KEEPIDLE, 30L);
    SETOPT(c->easy, CURLOPT_TCP_KEEPINTVL, 15L);
    if (t->read_fn) {
        struct curl_slist *h =
            curl_slist_append(call.headers, "Content-Type: application/octet-stream");
        if (!h) die("out of memory");
        call.headers = h;
        SETOPT(c->easy, CURLOPT_UPLOAD, 1L);
        SETOPT(c->easy, CURLOPT_READFUNCTION, on_transfer_read);
        SETOPT(c->easy, CURLOPT_READDATA, &call);
        SETOPT(c->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)t->upload_size);
        if (strcmp(t->method, "PUT")) SETOPT(c->easy, CURLOPT_CUSTOMREQUEST, t->method);
    }
    if (t->progress_fn) {
        SETOPT(c->easy, CURLOPT_XFERINFOFUNCTION, on_transfer_progress);
        SETOPT(c->easy, CURLOPT_XFERINFODATA, &call);
        SETOPT(c->easy, CURLOPT_NOPROGRESS, 0L);
    }

    CURLcode cc = curl_easy_perform(c->easy);
    if (call.chunk_rc < 0 || call.transfer_rc < 0) {
        /* Stopped by a callback of the caller's: its error is the one to tell. */
        struct err ignored = ERR_INIT;
        http_call_finish(&call, c, cc, &t->status, NULL, &ignored);
        rc = call.chunk_rc < 0 ? call.chunk_rc : call.transfer_rc;
        err_set(e, rc, "the transfer with the drover server at %s was stopped", c->base_url);
    } else {
        long st = 0;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &st);
        /* A server that refuses an upload answers before it has read the body and may
         * close the connection while curl still sends: its answer is what matters. */
        if ((cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR) && st >= 400 && call.resp.len > 0)
            cc = CURLE_OK;
        curl_off_t connect_us = 0;
        curl_easy_getinfo(c->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
        if (cc == CURLE_OPERATION_TIMEDOUT && connect_us > 0) {
            struct err ignored = ERR_INIT;
            http_call_finish(&call, c, cc, &t->status, NULL, &ignored);
            rc = err_set(
                e, ERR_UNAVAILABLE,
                "the transfer with the drover server at %s stalled: nothing moved for %ld s",
                c->base_url, c->timeout_ms > 0 ? (c->timeout_ms + 999) / 1000 : 60L);
        } else {
            rc = http_call_finish(&call, c, cc, &t->status, &t->resp, e);
        }
    }
    c->reached = call.connected;
    goto out;

setopt_failed:
    rc = err_set(e, ERR_INTERNAL, "cannot prepare the request to %s", call.url);
out:
    http_call_release(&call);
    return rc;
}
