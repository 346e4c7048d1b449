/*
 * blob_s3.c - the "s3://BUCKET?endpoint=URL&region=R&path_style=0|1" blob backend: objects in
 * one bucket of an S3-compatible service, over libcurl, signed with AWS Signature Version 4.
 *
 * Mapping: drover's object bucket/key is the S3 object "<bucket>/<key>" of the configured S3
 * bucket. Its SHA-256 is the object's user metadata x-amz-meta-sha256 (lower-case hex).
 *
 * Invariants:
 * - Writing is all or nothing. An object of at most one part (blob_s3_part_size, 8 MiB) is
 *   one PUT of the buffered bytes. A larger one is a multipart upload of parts buffered one
 *   at a time (never the whole object) to a staging key ".drover-staging/<random>" (no
 *   drover name starts with '.', so listings never see it); at commit the upload is
 *   completed and the staging object copied in one server-side step onto the real key with
 *   its SHA-256 as metadata (S3 fixes metadata when an upload starts, before the sum is
 *   known), then removed. A failure aborts the upload or removes the staging object, so
 *   nothing becomes visible; a process that dies mid-upload leaves an incomplete multipart
 *   upload, which the bucket's AbortIncompleteMultipartUpload lifecycle rule should expire
 *   (docs/operations.md). One CopyObject holds at most 5 GiB, so larger objects are refused
 *   (ERR_TOOLARGE) while they are written.
 * - An object without x-amz-meta-sha256 (put through a presigned URL or another tool) is
 *   hashed by reading it once, and the sum is written back by copying the object onto
 *   itself, on condition that its ETag is still the one hashed (best effort: the info is
 *   right either way). This is the fs backend's metadata repair.
 * - A reader reads the ETag seen at open: its GET says If-Match, so a replaced object
 *   fails the read (ERR_IO) instead of mixing two versions. The object is streamed through a
 *   curl multi handle driven from blob_read() and paused when SPILL_MAX bytes wait unread.
 * - Each request uses its own curl easy handle, so a store serves several threads.
 * - Requests are signed here (SigV4 headers and presigned query URLs share one canonical
 *   request builder, tested against AWS's published examples), not with CURLOPT_AWS_SIGV4:
 *   the streamed request payload hash, canonical query and session token need to be exactly
 *   ours, and presigned URLs need the same code anyway.
 */
#include "blob/blob_int.h"

#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

#define S3_PART_DEFAULT ((size_t)8 << 20)
#define S3_COPY_MAX ((int64_t)5 << 30) /* bytes one CopyObject may copy */
#define S3_MAX_PARTS 10000
#define RESP_MAX ((size_t)16 << 20) /* an XML answer (a page of 1,000 keys is ~0.5 MiB) */
#define SPILL_MAX ((size_t)256 << 10)
#define CONNECT_TIMEOUT_S 10L
#define LOW_SPEED_TIME_S 60L /* a transfer moving no byte for this long fails */
#define STAGING ".drover-staging/"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

size_t blob_s3_part_size = S3_PART_DEFAULT;

struct s3_store {
    struct blob_store base;
    char *bucket;   /* the S3 bucket */
    char *endpoint; /* "scheme://host[:port]", for messages */
    char *origin;   /* "scheme://host[:port]" requests go to (the bucket's host if virtual) */
    char *host;     /* host[:port] of origin: the Host header */
    char *prefix;   /* "/bucket" (path style) or "" */
    char *region;
    char *access_key, *secret, *token; /* token may be NULL */
};

struct s3_writer {
    struct blob_writer base;
    struct s3_store *s;
    char *bucket, *key, *okey; /* okey: the S3 key */
    char *staging;             /* the multipart upload's key, once started */
    char *upload_id;           /* while a multipart upload is open */
    bool staged;               /* the staging object exists (upload completed) */
    unsigned char *part;
    size_t part_len, part_cap;
    int nparts;
    struct buf complete; /* the CompleteMultipartUpload body, part by part */
    int64_t size;
    EVP_MD_CTX *md;
    int failed;
};

struct s3_reader {
    struct blob_reader base;
    struct s3_store *s;
    char *bucket, *key, *etag;
    CURLM *multi;
    CURL *easy;
    struct curl_slist *hl;
    char *url;
    struct buf spill; /* bytes received, not yet read: [spill_pos, spill.len) */
    size_t spill_pos;
    bool started, paused, done, status_ok;
    long status;
    CURLcode result;
    struct buf errbody;
    char errbuf[CURL_ERROR_SIZE];
};

struct s3_resp {
    long status;
    struct buf body;
    bool body_cut; /* more than RESP_MAX bytes came */
    bool has_sha, has_length;
    char sha256[65];
    char etag[130];
    int64_t length;
    int64_t modified_ms;
};

/* One request: method, S3 key (NULL for the bucket), canonical query, extra signed headers. */
struct s3_req {
    const char *method;
    const char *okey;
    const char *query; /* canonical: sorted, encoded; "" for none */
    struct blob_s3_hdr hdrs[6];
    size_t nhdrs;
    const void *body;
    size_t body_len;
    bool nobody; /* HEAD */
};

static struct s3_store *s3_of(struct blob_store *bs)
{
    if (bs->ops != &blob_s3_ops) abort();
    return (struct s3_store *)bs;
}

static struct s3_writer *writer_of(struct blob_writer *w)
{
    if (w->ops != &blob_s3_ops) abort();
    return (struct s3_writer *)w;
}

static struct s3_reader *reader_of(const struct blob_reader *r)
{
    if (r->ops != &blob_s3_ops) abort();
    return (struct s3_reader *)r;
}

/* --- encoding --------------------------------------------------------------------------------- */

/* AWS's URI encoding: every byte but A-Z a-z 0-9 - . _ ~ as %XX (and '/' too unless keep_slash). */
static void uri_encode(struct buf *b, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
            buf_addc(b, (char)c);
        } else {
            char t[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_add(b, t, 3);
        }
    }
}

static void xml_escape(struct buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': buf_adds(b, "&amp;"); break;
        case '<': buf_adds(b, "&lt;"); break;
        case '>': buf_adds(b, "&gt;"); break;
        case '"': buf_adds(b, "&quot;"); break;
        default: buf_addc(b, *s);
        }
    }
}

/* Appends code point cp as UTF-8; false for one XML cannot hold. */
static bool add_utf8(struct buf *b, unsigned long cp)
{
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    char t[4];
    size_t n;
    if (cp < 0x80) {
        t[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        t[0] = (char)(0xC0 | cp >> 6);
        t[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        t[0] = (char)(0xE0 | cp >> 12);
        t[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        t[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        t[0] = (char)(0xF0 | cp >> 18);
        t[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        t[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        t[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_add(b, t, n);
    return true;
}

/*
 * Decodes XML character data s[0..n) (the five named entities and &#N; / &#xH;) into a
 * new string; NULL when an entity is malformed or unknown, or on a NUL (XML has none: a
 * key must not come back cut short at one).
 */
char *blob_s3_xml_text(const char *s, size_t n)
{
    struct buf b = BUF_INIT;
    buf_add(&b, "", 0);
    for (size_t i = 0; i < n;) {
        if (s[i] == '\0') {
            buf_release(&b);
            return NULL;
        }
        if (s[i] != '&') {
            buf_addc(&b, s[i++]);
            continue;
        }
        const char *semi = memchr(s + i, ';', n - i);
        size_t len = semi ? (size_t)(semi - (s + i)) + 1 : 0;
        static const struct {
            const char *name;
            char c;
        } named[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
        bool done = false;
        for (size_t k = 0; semi && k < ARRAY_SIZE(named) && !done; k++)
            if (len == strlen(named[k].name) && !memcmp(s + i, named[k].name, len)) {
                buf_addc(&b, named[k].c);
                done = true;
            }
        if (!done && semi && len > 3 && s[i + 1] == '#') {
            bool hexa = s[i + 2] == 'x';
            const char *d = s + i + (hexa ? 3 : 2);
            size_t dn = (size_t)(semi - d);
            unsigned long cp = 0;
            bool ok = dn > 0 && dn <= 8;
            for (size_t k = 0; ok && k < dn; k++) {
                int v = isdigit((unsigned char)d[k])                 ? d[k] - '0'
                        : hexa && isxdigit((unsigned char)d[k]) ? (tolower((unsigned char)d[k]) - 'a' + 10)
                                                                     : -1;
                ok = v >= 0;
                cp = cp * (hexa ? 16 : 10) + (unsigned long)(v < 0 ? 0 : v);
            }
            done = ok && add_utf8(&b, cp);
        }
        if (!done) {
            buf_release(&b);
            return NULL;
        }
        i += len;
    }
    return buf_detach(&b);
}

/* The text of the first <tag>...</tag> within [s, end), decoded; NULL when absent or bad. */
static char *xml_get(const char *s, const char *end, const char *tag, const char **after)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    size_t on = strlen(open), cn = strlen(close);
    for (const char *p = s; p + on <= end; p++) {
        if (memcmp(p, open, on)) continue;
        const char *v = p + on;
        for (const char *q = v; q + cn <= end; q++)
            if (!memcmp(q, close, cn)) {
                if (after) *after = q + cn;
                return blob_s3_xml_text(v, (size_t)(q - v));
            }
        return NULL;
    }
    return NULL;
}

/* --- signing ---------------------------------------------------------------------------------- */

static void sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char sum[32];
    unsigned int len = 0;
    EVP_Digest(data, n, sum, &len, EVP_sha256(), NULL);
    blob_hex(sum, sizeof(sum), out);
}

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int n = 0;
    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &n);
}

static void amz_dates(time_t when, char date[9], char stamp[17])
{
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(stamp, 17, "%Y%m%dT%H%M%SZ", &tm);
    memcpy(date, stamp, 8);
    date[8] = '\0';
}

/* The hex signature of the canonical request `creq` made at `stamp` (its day is `date`). */
static void sign_request(const struct blob_s3_cred *c, const char *date, const char *stamp,
                         const char *creq, char sig[65])
{
    char creq_hash[65];
    sha256_hex(creq, strlen(creq), creq_hash);
    char *sts = xasprintf("AWS4-HMAC-SHA256\n%s\n%s/%s/s3/aws4_request\n%s", stamp, date,
                          c->region, creq_hash);
    char *k0 = xasprintf("AWS4%s", c->secret);
    unsigned char k[32], mac[32];
    hmac(k0, strlen(k0), date, k);
    hmac(k, 32, c->region, k);
    hmac(k, 32, "s3", k);
    hmac(k, 32, "aws4_request", k);
    hmac(k, 32, sts, mac);
    blob_hex(mac, sizeof(mac), sig);
    OPENSSL_cleanse(k0, strlen(k0));
    OPENSSL_cleanse(k, sizeof(k));
    free(k0);
    free(sts);
}

static int hdr_cmp(const void *a, const void *b)
{
    return strcmp(((const struct blob_s3_hdr *)a)->name, ((const struct blob_s3_hdr *)b)->name);
}

char *blob_s3_authorization(const struct blob_s3_cred *c, const char *method, const char *path,
                            const char *query, const struct blob_s3_hdr *hdrs, size_t n,
                            const char *payload_hash, time_t when)
{
    char date[9], stamp[17], sig[65];
    amz_dates(when, date, stamp);
    struct blob_s3_hdr *h = xmalloc((n ? n : 1) * sizeof(*h));
    memcpy(h, hdrs, n * sizeof(*h));
    qsort(h, n, sizeof(*h), hdr_cmp);
    struct buf creq = BUF_INIT, names = BUF_INIT;
    buf_addf(&creq, "%s\n%s\n%s\n", method, path, query ? query : "");
    for (size_t i = 0; i < n; i++) {
        buf_addf(&creq, "%s:%s\n", h[i].name, h[i].value);
        buf_addf(&names, "%s%s", i ? ";" : "", h[i].name);
    }
    buf_addf(&creq, "\n%s\n%s", buf_str(&names), payload_hash);
    sign_request(c, date, stamp, buf_str(&creq), sig);
    char *auth = xasprintf("AWS4-HMAC-SHA256 Credential=%s/%s/%s/s3/aws4_request, "
                           "SignedHeaders=%s, Signature=%s",
                           c->access_key, date, c->region, buf_str(&names), sig);
    buf_release(&creq);
    buf_release(&names);
    free(h);
    return auth;
}

char *blob_s3_presign_url(const struct blob_s3_cred *c, const char *method, const char *origin,
                          const char *host, const char *path, int64_t expires_s, time_t when)
{
    char date[9], stamp[17], sig[65];
    amz_dates(when, date, stamp);
    struct buf q = BUF_INIT, cred = BUF_INIT, creq = BUF_INIT;
    buf_addf(&cred, "%s/%s/%s/s3/aws4_request", c->access_key, date, c->region);
    /* In canonical (byte) order. */
    buf_adds(&q, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
    uri_encode(&q, buf_str(&cred), false);
    buf_addf(&q, "&X-Amz-Date=%s&X-Amz-Expires=%" PRId64, stamp, expires_s);
    if (c->token) {
        buf_adds(&q, "&X-Amz-Security-Token=");
        uri_encode(&q, c->token, false);
    }
    buf_adds(&q, "&X-Amz-SignedHeaders=host");
    buf_addf(&creq, "%s\n%s\n%s\nhost:%s\n\nhost\nUNSIGNED-PAYLOAD", method, path, buf_str(&q),
             host);
    sign_request(c, date, stamp, buf_str(&creq), sig);
    char *url = xasprintf("%s%s?%s&X-Amz-Signature=%s", origin, path, buf_str(&q), sig);
    buf_release(&q);
    buf_release(&cred);
    buf_release(&creq);
    return url;
}

/* --- requests --------------------------------------------------------------------------------- */

static void cred_of(const struct s3_store *s, struct blob_s3_cred *c)
{
    *c = (struct blob_s3_cred){s->access_key, s->secret, s->token, s->region};
}

/* The path of an S3 key (or of the bucket when okey is NULL), encoded. */
static char *key_path(const struct s3_store *s, const char *okey)
{
    struct buf p = BUF_INIT;
    buf_adds(&p, s->prefix);
    buf_addc(&p, '/');
    if (okey) uri_encode(&p, okey, true);
    return buf_detach(&p);
}

static char *obj_key(const char *bucket, const char *key)
{
    return xasprintf("%s/%s", bucket, key);
}

/* "Sat, 01 Jan 2000 00:00:00 GMT" or "2000-01-01T00:00:00.000Z" to ms; -1 if neither. */
static int64_t parse_time(const char *s)
{
    struct tm tm = {0};
    const char *rest = strptime(s, "%a, %d %b %Y %H:%M:%S", &tm);
    int64_t ms = 0;
    if (!rest) {
        memset(&tm, 0, sizeof(tm));
        rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!rest) return -1;
        if (rest[0] == '.' && isdigit((unsigned char)rest[1]))
            for (int i = 1, scale = 100; i <= 3 && isdigit((unsigned char)rest[i]); i++, scale /= 10)
                ms += (rest[i] - '0') * scale;
    }
    time_t t = timegm(&tm);
    return t < 0 ? -1 : (int64_t)t * 1000 + ms;
}

static size_t body_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    struct s3_resp *rp = arg;
    size_t n = size * nmemb;
    if (rp->body.len + n > RESP_MAX)
        rp->body_cut = true;
    else
        buf_add(&rp->body, data, n);
    return n;
}

/* Copies a header's value (trimmed) into out (cap bytes); false when it is not `name`. */
static bool header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(line, name, nl) || line[nl] != ':') return false;
    const char *v = line + nl + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t len = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    memcpy(out, v, len);
    out[len] = '\0';
    return true;
}

static bool is_hex64(const char *s)
{
    if (strlen(s) != 64) return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return false;
    return true;
}

static size_t header_cb(char *line, size_t size, size_t nmemb, void *arg)
{
    struct s3_resp *rp = arg;
    size_t n = size * nmemb;
    char v[130];
    if (n >= 5 && !strncmp(line, "HTTP/", 5)) { /* a new response (after a 100 Continue) */
        rp->has_sha = rp->has_length = false;
        rp->etag[0] = '\0';
        rp->modified_ms = -1;
    } else if (header_value(line, n, "x-amz-meta-sha256", v, sizeof(v))) {
        for (char *p = v; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        rp->has_sha = is_hex64(v);
        if (rp->has_sha) memcpy(rp->sha256, v, 65);
    } else if (header_value(line, n, "etag", v, sizeof(v))) {
        memcpy(rp->etag, v, sizeof(rp->etag));
    } else if (header_value(line, n, "last-modified", v, sizeof(v))) {
        rp->modified_ms = parse_time(v);
    } else if (header_value(line, n, "content-length", v, sizeof(v))) {
        char *end;
        errno = 0;
        long long len = strtoll(v, &end, 10);
        rp->has_length = !errno && end != v && !*end && len >= 0;
        rp->length = len;
    }
    return n;
}

/*
 * A curl easy handle for rq, signed: URL, headers (the Host header is set to the one
 * signed). *hl and *url are the caller's to free after the transfer.
 */
static CURL *prepare(struct s3_store *s, const struct s3_req *rq, struct curl_slist **hl,
                     char **url)
{
    char payload[65], stamp[17], date[9];
    time_t now = time(NULL);
    amz_dates(now, date, stamp);
    if (rq->body_len)
        sha256_hex(rq->body, rq->body_len, payload);
    else
        memcpy(payload, EMPTY_SHA256, 65);

    struct blob_s3_hdr h[ARRAY_SIZE(rq->hdrs) + 4];
    size_t n = 0;
    h[n++] = (struct blob_s3_hdr){"host", s->host};
    h[n++] = (struct blob_s3_hdr){"x-amz-content-sha256", payload};
    h[n++] = (struct blob_s3_hdr){"x-amz-date", stamp};
    if (s->token) h[n++] = (struct blob_s3_hdr){"x-amz-security-token", s->token};
    for (size_t i = 0; i < rq->nhdrs; i++)
        h[n++] = rq->hdrs[i];

    char *path = key_path(s, rq->okey);
    struct blob_s3_cred c;
    cred_of(s, &c);
    char *auth = blob_s3_authorization(&c, rq->method, path, rq->query, h, n, payload, now);
    *url = xasprintf("%s%s%s%s", s->origin, path, rq->query && *rq->query ? "?" : "",
                     rq->query ? rq->query : "");
    free(path);

    struct curl_slist *l = NULL;
    for (size_t i = 0; i < n; i++) {
        char *line = xasprintf("%s: %s", h[i].name, h[i].value);
        l = curl_slist_append(l, line);
        free(line);
    }
    char *line = xasprintf("Authorization: %s", auth);
    l = curl_slist_append(l, line);
    l = curl_slist_append(l, "Expect:");
    l = curl_slist_append(l, "Content-Type:");
    free(line);
    free(auth);
    if (!l) abort();
    *hl = l;

    CURL *c2 = curl_easy_init();
    if (!c2) abort();
    curl_easy_setopt(c2, CURLOPT_URL, *url);
    curl_easy_setopt(c2, CURLOPT_HTTPHEADER, l);
    curl_easy_setopt(c2, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c2, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(c2, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c2, CURLOPT_LOW_SPEED_TIME, LOW_SPEED_TIME_S);
    curl_easy_setopt(c2, CURLOPT_PROTOCOLS_STR, "http,https");
    if (rq->nobody) {
        curl_easy_setopt(c2, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(rq->method, "POST")) {
        curl_easy_setopt(c2, CURLOPT_POST, 1L);
        curl_easy_setopt(c2, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
        curl_easy_setopt(c2, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
    } else if (!strcmp(rq->method, "PUT")) {
        /* POSTFIELDS sends the buffer as it is, with a Content-Length; the method is PUT. */
        curl_easy_setopt(c2, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
        curl_easy_setopt(c2, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        curl_easy_setopt(c2, CURLOPT_CUSTOMREQUEST, "PUT");
    } else if (strcmp(rq->method, "GET")) {
        curl_easy_setopt(c2, CURLOPT_CUSTOMREQUEST, rq->method);
    }
    return c2;
}

/* "S3 <what>: HTTP 403 AccessDenied: <message>" style detail of a failed answer. */
static void s3_detail(const struct s3_resp *rp, char *out, size_t cap)
{
    const char *b = rp->body.data ? rp->body.data : "";
    const char *end = b + rp->body.len;
    char *code = xml_get(b, end, "Code", NULL), *msg = xml_get(b, end, "Message", NULL);
    snprintf(out, cap, "HTTP %ld%s%s%s%s", rp->status, code ? " " : "", code ? code : "",
             msg ? ": " : "", msg ? msg : "");
    free(code);
    free(msg);
}

static bool has_code(const struct s3_resp *rp, const char *code)
{
    const char *b = rp->body.data ? rp->body.data : "";
    char *c = xml_get(b, b + rp->body.len, "Code", NULL);
    bool yes = c && !strcmp(c, code);
    free(c);
    return yes;
}

/*
 * The error for a failed request: a network failure (cc) names the endpoint and is
 * ERR_UNAVAILABLE (503: try again later), as is a 5xx of S3's (SlowDown, an outage); 404 is
 * ERR_NOTFOUND for an object (bucket and key given), a full bucket or too large an entity
 * ERR_NOSPACE, anything else ERR_IO with S3's code and message.
 */
static int s3_fail(struct s3_store *s, const char *what, CURLcode cc, const char *errbuf,
                   const struct s3_resp *rp, const char *bucket, const char *key, struct err *e)
{
    if (cc != CURLE_OK)
        return err_set(e, ERR_UNAVAILABLE, "S3 endpoint '%s': %s: %s", s->endpoint, what,
                       errbuf && *errbuf ? errbuf : curl_easy_strerror(cc));
    char detail[400];
    s3_detail(rp, detail, sizeof(detail));
    if (rp->status == 404 && has_code(rp, "NoSuchBucket"))
        return err_set(e, ERR_IO, "S3 bucket '%s' at '%s' does not exist (%s: %s)", s->bucket,
                       s->endpoint, what, detail);
    if (rp->status == 404 && key) return err_set(e, ERR_NOTFOUND, "object '%s/%s' not found", bucket, key);
    if (key && (rp->status == 507 || has_code(rp, "EntityTooLarge") ||
                has_code(rp, "QuotaExceeded") || has_code(rp, "ServiceQuotaExceeded")))
        return err_set(e, ERR_NOSPACE, "no space left to store object '%s/%s' (S3 %s: %s)", bucket,
                       key, what, detail);
    return err_set(e, rp->status >= 500 && rp->status != 507 ? ERR_UNAVAILABLE : ERR_IO,
                   "S3 endpoint '%s': %s failed: %s", s->endpoint, what, detail);
}

static void resp_release(struct s3_resp *rp)
{
    buf_release(&rp->body);
}

/*
 * Runs rq to the end and fills *rp. 0 when the answer is 2xx without an <Error> body
 * (CompleteMultipartUpload and CopyObject may fail with a 200); else s3_fail().
 */
static int s3_call(struct s3_store *s, const struct s3_req *rq, struct s3_resp *rp,
                   const char *what, const char *bucket, const char *key, struct err *e)
{
    *rp = (struct s3_resp){.body = BUF_INIT, .modified_ms = -1};
    struct curl_slist *hl = NULL;
    char *url = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    CURL *c = prepare(s, rq, &hl, &url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, rp);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, rp);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &rp->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    free(url);
    bool error_body = rp->body.len && strstr(buf_str(&rp->body), "<Error>");
    if (cc == CURLE_OK && rp->status >= 200 && rp->status < 300 && !error_body && !rp->body_cut)
        return 0;
    if (cc == CURLE_OK && rp->body_cut)
        return err_set(e, ERR_IO, "S3 endpoint '%s': %s: the answer is larger than %zu bytes",
                       s->endpoint, what, RESP_MAX);
    return s3_fail(s, what, cc, errbuf, rp, bucket, key, e);
}

/* --- store ------------------------------------------------------------------------------------ */

static void s3_close(struct blob_store *bs)
{
    struct s3_store *s = s3_of(bs);
    free(s->bucket);
    free(s->endpoint);
    free(s->origin);
    free(s->host);
    free(s->prefix);
    free(s->region);
    free(s->access_key);
    if (s->secret) OPENSSL_cleanse(s->secret, strlen(s->secret));
    free(s->secret);
    free(s->token);
    free(s);
}

static void curl_init_once(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) abort();
}

static bool s3_bucket_valid(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63 || !isalnum((unsigned char)b[0]) || !isalnum((unsigned char)b[n - 1]))
        return false;
    for (const char *p = b; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '.' || *p == '-'))
            return false;
    return true;
}

static bool region_valid(const char *r)
{
    size_t n = strlen(r);
    return n >= 1 && n <= 32 && strspn(r, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

static int bad_uri(struct err *e, const char *uri, const char *why)
{
    return err_set(e, ERR_INVALID,
                   "blob store '%s': %s (expected s3://BUCKET?endpoint=URL&region=R&path_style=0|1)",
                   uri, why);
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int s3_open(const char *uri, struct blob_store **out, struct err *e)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, curl_init_once);
    const char *rest = uri + strlen("s3://");
    size_t bn = strcspn(rest, "?/");
    char *bucket = xstrndup(rest, bn);
    const char *q = rest[bn] == '?' ? rest + bn + 1 : NULL;
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    struct s3_store *s = NULL;
    int rc = 0;
    char why[200];
    if (rest[bn] == '/' && rest[bn + 1] && rest[bn + 1] != '?') {
        rc = bad_uri(e, uri, "no path may follow the bucket");
        goto out;
    }
    if (rest[bn] == '/') q = rest[bn + 1] == '?' ? rest + bn + 2 : NULL;
    if (!s3_bucket_valid(bucket)) {
        rc = bad_uri(e, uri, "the S3 bucket must match [a-z0-9][a-z0-9.-]{1,61}[a-z0-9]");
        goto out;
    }
    if (q && evhttp_parse_query_str(q, &params) != 0) {
        rc = bad_uri(e, uri, "the query cannot be parsed");
        goto out;
    }
    const char *endpoint = NULL, *region = NULL, *path_style = NULL;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, &params, next)
    {
        if (!strcmp(kv->key, "endpoint"))
            endpoint = kv->value;
        else if (!strcmp(kv->key, "region"))
            region = kv->value;
        else if (!strcmp(kv->key, "path_style"))
            path_style = kv->value;
        else {
            snprintf(why, sizeof(why), "unknown option '%.60s'", kv->key);
            rc = bad_uri(e, uri, why);
            goto out;
        }
    }
    if (!region) region = env("AWS_REGION");
    if (!region) region = env("AWS_DEFAULT_REGION");
    if (!region) region = "us-east-1";
    if (!region_valid(region)) {
        rc = bad_uri(e, uri, "the region must be letters, digits and '-' (like us-east-1)");
        goto out;
    }
    if (path_style && strcmp(path_style, "0") && strcmp(path_style, "1")) {
        rc = bad_uri(e, uri, "path_style must be 0 or 1");
        goto out;
    }
    bool path = path_style ? !strcmp(path_style, "1") : endpoint != NULL;
    char *ep = endpoint ? xstrdup(endpoint) : xasprintf("https://s3.%s.amazonaws.com", region);
    size_t epn = strlen(ep);
    while (epn && ep[epn - 1] == '/')
        ep[--epn] = '\0';
    const char *scheme_end = strstr(ep, "://");
    const char *hostp = scheme_end ? scheme_end + 3 : NULL;
    bool ok_scheme = scheme_end && (!strncmp(ep, "http://", 7) || !strncmp(ep, "https://", 8));
    if (!ok_scheme || !*hostp || strpbrk(hostp, "/?#@ ") || strlen(ep) > 512) {
        free(ep);
        rc = bad_uri(e, uri, "the endpoint must be http://HOST[:PORT] or https://HOST[:PORT]");
        goto out;
    }
    const char *ak = env("AWS_ACCESS_KEY_ID"), *sk = env("AWS_SECRET_ACCESS_KEY");
    if (!ak || !sk) {
        free(ep);
        rc = err_set(e, ERR_INVALID,
                     "blob store '%s': no S3 credentials: the environment variable %s is not set",
                     uri, !ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY");
        goto out;
    }

    s = xcalloc(1, sizeof(*s));
    s->base.ops = &blob_s3_ops;
    s->bucket = bucket;
    bucket = NULL;
    s->endpoint = ep;
    size_t scheme_len = (size_t)(hostp - ep);
    if (path) {
        s->origin = xstrdup(ep);
        s->host = xstrdup(hostp);
        s->prefix = xasprintf("/%s", s->bucket);
    } else {
        s->host = xasprintf("%s.%s", s->bucket, hostp);
        s->origin = xasprintf("%.*s%s", (int)scheme_len, ep, s->host);
        s->prefix = xstrdup("");
    }
    s->region = xstrdup(region);
    s->access_key = xstrdup(ak);
    s->secret = xstrdup(sk);
    s->token = env("AWS_SESSION_TOKEN") ? xstrdup(env("AWS_SESSION_TOKEN")) : NULL;
    *out = &s->base;
out:
    evhttp_clear_headers(&params);
    free(bucket);
    return rc;
}

/* --- head and metadata repair ----------------------------------------------------------------- */

static int reader_start(struct s3_store *s, struct s3_reader *r, int64_t off, int64_t end);
static ssize_t s3_read(struct blob_reader *br, void *buf, size_t n, struct err *e);
static void reader_free(struct s3_reader *r);

static int head_raw(struct s3_store *s, const char *bucket, const char *key, struct s3_resp *rp,
                    struct err *e)
{
    char *okey = obj_key(bucket, key);
    struct s3_req rq = {.method = "HEAD", .okey = okey, .query = "", .nobody = true};
    char *what = xasprintf("HEAD of object '%s/%s'", bucket, key);
    int rc = s3_call(s, &rq, rp, what, bucket, key, e);
    if (!rc && (!rp->has_length || !rp->etag[0]))
        rc = err_set(e, ERR_IO, "S3 endpoint '%s': %s: no Content-Length or ETag in the answer",
                     s->endpoint, what);
    free(what);
    free(okey);
    return rc;
}

/* Copies the object onto itself with its SHA-256 as metadata, if its ETag is still etag. */
static void meta_save(struct s3_store *s, const char *bucket, const char *key, const char *etag,
                      const char *sha)
{
    char *okey = obj_key(bucket, key);
    struct buf src = BUF_INIT;
    buf_addf(&src, "/%s/", s->bucket);
    uri_encode(&src, okey, true);
    struct s3_req rq = {.method = "PUT", .okey = okey, .query = ""};
    rq.hdrs[rq.nhdrs++] = (struct blob_s3_hdr){"x-amz-copy-source", buf_str(&src)};
    rq.hdrs[rq.nhdrs++] = (struct blob_s3_hdr){"x-amz-copy-source-if-match", etag};
    rq.hdrs[rq.nhdrs++] = (struct blob_s3_hdr){"x-amz-meta-sha256", sha};
    rq.hdrs[rq.nhdrs++] = (struct blob_s3_hdr){"x-amz-metadata-directive", "REPLACE"};
    struct s3_resp rp;
    struct err e2 = ERR_INIT;
    if (s3_call(s, &rq, &rp, "metadata copy", bucket, key, &e2))
        log_warn("blobs: SHA-256 of '%s/%s' not saved in S3, to be computed again: %s", bucket, key,
                 e2.msg);
    resp_release(&rp);
    buf_release(&src);
    free(okey);
}

/*
 * The object's info; its ETag into etag (130 bytes) when not NULL. An object without the
 * SHA-256 metadata is hashed (read once) and the sum saved (see the top of the file).
 */
static int object_info(struct s3_store *s, const char *bucket, const char *key,
                       struct blob_info *info, char *etag, struct err *e)
{
    struct s3_resp rp;
    int rc = head_raw(s, bucket, key, &rp, e);
    if (rc) goto out;
    info->size = rp.length;
    info->modified_ms = rp.modified_ms >= 0 ? rp.modified_ms : 0;
    if (etag) memcpy(etag, rp.etag, sizeof(rp.etag));
    if (rp.has_sha) {
        memcpy(info->sha256, rp.sha256, 65);
        goto out;
    }
    /* Hash it, reading only that version (If-Match). */
    struct s3_reader *r = xcalloc(1, sizeof(*r));
    r->base = (struct blob_reader){&blob_s3_ops, 0, rp.length, 0};
    r->s = s;
    r->bucket = xstrdup(bucket);
    r->key = xstrdup(key);
    r->etag = xstrdup(rp.etag);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) abort();
    unsigned char *chunk = xmalloc(64 << 10);
    while (!rc && r->base.pos < r->base.end) {
        int64_t left = r->base.end - r->base.pos;
        ssize_t got = s3_read(&r->base, chunk, left < (64 << 10) ? (size_t)left : (64 << 10), e);
        if (got < 0)
            rc = (int)got;
        else if (got == 0)
            rc = err_set(e, ERR_IO, "object '%s/%s' ended before its %lld bytes while hashing it",
                         bucket, key, (long long)rp.length);
        else {
            EVP_DigestUpdate(md, chunk, (size_t)got);
            r->base.pos += got;
        }
    }
    if (!rc) {
        unsigned char sum[32];
        EVP_DigestFinal_ex(md, sum, NULL);
        blob_hex(sum, sizeof(sum), info->sha256);
        meta_save(s, bucket, key, rp.etag, info->sha256);
    }
    free(chunk);
    EVP_MD_CTX_free(md);
    reader_free(r);
out:
    resp_release(&rp);
    return rc;
}

static int s3_head(struct blob_store *bs, const char *bucket, const char *key,
                   struct blob_info *info, struct err *e)
{
    return object_info(s3_of(bs), bucket, key, info, NULL, e);
}

static int s3_del(struct blob_store *bs, const char *bucket, const char *key, struct err *e)
{
    struct s3_store *s = s3_of(bs);
    struct s3_resp rp;
    int rc = head_raw(s, bucket, key, &rp, e); /* S3 answers 204 for a missing key too */
    resp_release(&rp);
    if (rc) return rc;
    char *okey = obj_key(bucket, key);
    char *what = xasprintf("delete of object '%s/%s'", bucket, key);
    struct s3_req rq = {.method = "DELETE", .okey = okey, .query = ""};
    rc = s3_call(s, &rq, &rp, what, bucket, key, e);
    resp_release(&rp);
    free(what);
    free(okey);
    return rc;
}

/* --- writing ---------------------------------------------------------------------------------- */

static void writer_free(struct s3_writer *w)
{
    EVP_MD_CTX_free(w->md);
    free(w->bucket);
    free(w->key);
    free(w->okey);
    free(w->staging);
    free(w->upload_id);
    free(w->part);
    buf_release(&w->complete);
    free(w);
}

/* Undoes what the upload left on S3: an open multipart upload, or the staging object. */
static void writer_cleanup(struct s3_writer *w)
{
    struct s3_resp rp;
    struct err e2 = ERR_INIT;
    if (w->upload_id) {
        struct buf q = BUF_INIT;
        buf_adds(&q, "uploadId=");
        uri_encode(&q, w->upload_id, false);
        struct s3_req rq = {.method = "DELETE", .okey = w->staging, .query = buf_str(&q)};
        if (s3_call(w->s, &rq, &rp, "abort of a multipart upload", NULL, NULL, &e2))
            log_warn("blobs: the multipart upload of '%s/%s' was not aborted: %s", w->bucket,
                     w->key, e2.msg);
        resp_release(&rp);
        buf_release(&q);
        free(w->upload_id);
        w->upload_id = NULL;
    }
    if (w->staged) {
        struct s3_req rq = {.method = "DELETE", .okey = w->staging, .query = ""};
        if (s3_call(w->s, &rq, &rp, "removal of a staging object", NULL, NULL, &e2))
            log_warn("blobs: staging object '%s' of '%s/%s' not removed: %s", w->staging,
                     w->bucket, w->key, e2.msg);
        resp_release(&rp);
        w->staged = false;
    }
}

static int writer_fail(struct s3_writer *w, int rc)
{
    writer_cleanup(w);
    w->failed = rc;
    free(w->part);
    w->part = NULL;
    w->part_len = w->part_cap = 0;
    return rc;
}

static int s3_put_begin(struct blob_store *bs, const char *bucket, const char *key,
                        struct blob_writer **out, struct err *e)
{
    struct s3_store *s = s3_of(bs);
    struct s3_writer *w = xcalloc(1, sizeof(*w));
    w->base.ops = &blob_s3_ops;
    w->s = s;
    w->bucket = xstrdup(bucket);
    w->key = xstrdup(key);
    w->okey = obj_key(bucket, key);
    w->part_cap = blob_s3_part_size ? blob_s3_part_size : S3_PART_DEFAULT;
    w->part = xmalloc(w->part_cap);
    w->md = EVP_MD_CTX_new();
    if (!w->md || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
        writer_free(w);
        return err_set(e, ERR_INTERNAL, "cannot start a SHA-256 digest");
    }
    *out = &w->base;
    return 0;
}

/* Starts the multipart upload to a new staging key. */
static int upload_start(struct s3_writer *w, struct err *e)
{
    unsigned char rnd[16];
    char hex[33];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) return err_set(e, ERR_INTERNAL, "no random bytes");
    blob_hex(rnd, sizeof(rnd), hex);
    w->staging = xasprintf(STAGING "%s", hex);
    struct s3_req rq = {.method = "POST", .okey = w->staging, .query = "uploads="};
    struct s3_resp rp;
    char *what = xasprintf("start of the multipart upload of object '%s/%s'", w->bucket, w->key);
    int rc = s3_call(w->s, &rq, &rp, what, w->bucket, w->key, e);
    if (!rc) {
        const char *b = buf_str(&rp.body);
        w->upload_id = xml_get(b, b + rp.body.len, "UploadId", NULL);
        if (!w->upload_id || !*w->upload_id)
            rc = err_set(e, ERR_IO, "S3 endpoint '%s': %s: no UploadId in the answer",
                         w->s->endpoint, what);
    }
    buf_addf(&w->complete, "<CompleteMultipartUpload>");
    resp_release(&rp);
    free(what);
    return rc;
}

/* Uploads the buffered bytes as the next part. */
static int part_flush(struct s3_writer *w, struct err *e)
{
    int rc = 0;
    if (!w->upload_id && (rc = upload_start(w, e))) return rc;
    if (w->nparts == S3_MAX_PARTS)
        return err_set(e, ERR_TOOLARGE, "object '%s/%s' needs more than %d parts", w->bucket,
                       w->key, S3_MAX_PARTS);
    int num = w->nparts + 1;
    struct buf q = BUF_INIT;
    buf_addf(&q, "partNumber=%d&uploadId=", num);
    uri_encode(&q, w->upload_id, false);
    struct s3_req rq = {.method = "PUT", .okey = w->staging, .query = buf_str(&q),
                        .body = w->part, .body_len = w->part_len};
    struct s3_resp rp;
    char *what = xasprintf("upload of part %d of object '%s/%s'", num, w->bucket, w->key);
    rc = s3_call(w->s, &rq, &rp, what, w->bucket, w->key, e);
    if (!rc && !rp.etag[0])
        rc = err_set(e, ERR_IO, "S3 endpoint '%s': %s: no ETag in the answer", w->s->endpoint,
                     what);
    if (!rc) {
        buf_addf(&w->complete, "<Part><PartNumber>%d</PartNumber><ETag>", num);
        xml_escape(&w->complete, rp.etag);
        buf_adds(&w->complete, "</ETag></Part>");
        w->nparts = num;
        w->part_len = 0;
    }
    resp_release(&rp);
    buf_release(&q);
    free(what);
    return rc;
}

static int dead(struct s3_writer *w, struct err *e)
{
    return err_set(e, w->failed, "the upload of object '%s/%s' already failed", w->bucket, w->key);
}

static int s3_put_write(struct blob_writer *bw, const void *data, size_t len, struct err *e)
{
    struct s3_writer *w = writer_of(bw);
    if (w->failed) return dead(w, e);
    if ((uint64_t)w->size + len > (uint64_t)S3_COPY_MAX)
        return writer_fail(w, err_set(e, ERR_TOOLARGE,
                                      "object '%s/%s' is larger than the S3 backend's limit of "
                                      "5 GiB",
                                      w->bucket, w->key));
    EVP_DigestUpdate(w->md, data, len);
    w->size += (int64_t)len;
    const unsigned char *p = data;
    while (len) {
        size_t n = w->part_cap - w->part_len < len ? w->part_cap - w->part_len : len;
        memcpy(w->part + w->part_len, p, n);
        w->part_len += n;
        p += n;
        len -= n;
        if (w->part_len == w->part_cap) {
            int rc = part_flush(w, e);
            if (rc) return writer_fail(w, rc);
        }
    }
    return 0;
}

/* Completes the multipart upload and copies the staging object onto the real key. */
static int multipart_finish(struct s3_writer *w, const char *sha, struct err *e)
{
    int rc = 0;
    if (w->part_len && (rc = part_flush(w, e))) return rc;
    buf_adds(&w->complete, "</CompleteMultipartUpload>");
    struct buf q = BUF_INIT, src = BUF_INIT;
    buf_adds(&q, "uploadId=");
    uri_encode(&q, w->upload_id, false);
    struct s3_req rq = {.method = "POST", .okey = w->staging, .query = buf_str(&q),
                        .body = w->complete.data, .body_len = w->complete.len};
    struct s3_resp rp;
    char *what = xasprintf("completion of the multipart upload of object '%s/%s'", w->bucket,
                           w->key);
    rc = s3_call(w->s, &rq, &rp, what, w->bucket, w->key, e);
    resp_release(&rp);
    free(what);
    buf_release(&q);
    if (rc) return rc;
    free(w->upload_id);
    w->upload_id = NULL;
    w->staged = true;

    buf_addf(&src, "/%s/", w->s->bucket);
    uri_encode(&src, w->staging, true);
    struct s3_req cp = {.method = "PUT", .okey = w->okey, .query = ""};
    cp.hdrs[cp.nhdrs++] = (struct blob_s3_hdr){"x-amz-copy-source", buf_str(&src)};
    cp.hdrs[cp.nhdrs++] = (struct blob_s3_hdr){"x-amz-meta-sha256", sha};
    cp.hdrs[cp.nhdrs++] = (struct blob_s3_hdr){"x-amz-metadata-directive", "REPLACE"};
    what = xasprintf("copy of the staged upload onto object '%s/%s'", w->bucket, w->key);
    rc = s3_call(w->s, &cp, &rp, what, w->bucket, w->key, e);
    resp_release(&rp);
    free(what);
    buf_release(&src);
    if (!rc) writer_cleanup(w); /* the staging object goes */
    return rc;
}

static int s3_put_commit(struct blob_writer *bw, struct blob_info *out, struct err *e)
{
    struct s3_writer *w = writer_of(bw);
    int rc = 0;
    if (w->failed) {
        rc = dead(w, e);
        goto out;
    }
    unsigned char sum[32];
    char sha[65];
    EVP_DigestFinal_ex(w->md, sum, NULL);
    blob_hex(sum, sizeof(sum), sha);
    if (w->nparts == 0) {
        struct s3_req rq = {.method = "PUT", .okey = w->okey, .query = "", .body = w->part,
                            .body_len = w->part_len};
        rq.hdrs[rq.nhdrs++] = (struct blob_s3_hdr){"x-amz-meta-sha256", sha};
        struct s3_resp rp;
        char *what = xasprintf("upload of object '%s/%s'", w->bucket, w->key);
        rc = s3_call(w->s, &rq, &rp, what, w->bucket, w->key, e);
        resp_release(&rp);
        free(what);
    } else {
        rc = multipart_finish(w, sha, e);
    }
    if (rc) {
        writer_cleanup(w);
        goto out;
    }
    *out = (struct blob_info){.size = w->size, .modified_ms = time_now_ms()};
    memcpy(out->sha256, sha, 65);
    /* What head and list will say (S3 keeps whole seconds), unless it changed meanwhile. */
    struct s3_resp rp;
    struct err e2 = ERR_INIT;
    if (!head_raw(w->s, w->bucket, w->key, &rp, &e2) && rp.has_sha && !strcmp(rp.sha256, sha) &&
        rp.modified_ms >= 0)
        out->modified_ms = rp.modified_ms;
    resp_release(&rp);
out:
    writer_free(w);
    return rc;
}

static void s3_put_abort(struct blob_writer *bw)
{
    struct s3_writer *w = writer_of(bw);
    writer_cleanup(w);
    writer_free(w);
}

/* --- reading ---------------------------------------------------------------------------------- */

static void reader_free(struct s3_reader *r)
{
    if (r->easy) {
        if (r->multi) curl_multi_remove_handle(r->multi, r->easy);
        curl_easy_cleanup(r->easy);
    }
    if (r->multi) curl_multi_cleanup(r->multi);
    curl_slist_free_all(r->hl);
    free(r->url);
    buf_release(&r->spill);
    buf_release(&r->errbody);
    free(r->bucket);
    free(r->key);
    free(r->etag);
    free(r);
}

static size_t reader_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    struct s3_reader *r = arg;
    size_t n = size * nmemb;
    if (!r->status) {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
        r->status_ok = r->status == 206 || (r->status == 200 && r->base.off == 0);
    }
    if (!r->status_ok) {
        if (r->errbody.len + n <= RESP_MAX) buf_add(&r->errbody, data, n);
        return n;
    }
    if (r->spill.len - r->spill_pos >= SPILL_MAX) {
        r->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (r->spill_pos == r->spill.len) { /* all read: start over at the front */
        r->spill.len = 0;
        r->spill_pos = 0;
    }
    buf_add(&r->spill, data, n);
    return n;
}

/* Starts the GET of bytes [off, end) of the version r->etag. */
static int reader_start(struct s3_store *s, struct s3_reader *r, int64_t off, int64_t end)
{
    char *okey = obj_key(r->bucket, r->key);
    char range[64];
    snprintf(range, sizeof(range), "bytes=%" PRId64 "-%" PRId64, off, end - 1);
    struct s3_req rq = {.method = "GET", .okey = okey, .query = ""};
    rq.hdrs[rq.nhdrs++] = (struct blob_s3_hdr){"if-match", r->etag};
    rq.hdrs[rq.nhdrs++] = (struct blob_s3_hdr){"range", range};
    r->easy = prepare(s, &rq, &r->hl, &r->url);
    free(okey);
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, reader_cb);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
    r->multi = curl_multi_init();
    if (!r->multi || curl_multi_add_handle(r->multi, r->easy) != CURLM_OK) abort();
    r->started = true;
    return 0;
}

static int s3_read_open(struct blob_store *bs, const char *bucket, const char *key, int64_t off,
                        int64_t len, struct blob_reader **out, struct blob_info *info,
                        struct err *e)
{
    struct s3_store *s = s3_of(bs);
    char etag[130];
    int64_t end;
    int rc = object_info(s, bucket, key, info, etag, e);
    if (rc) return rc;
    rc = blob_range_resolve(bucket, key, info->size, off, len, &end, e);
    if (rc) return rc;
    struct s3_reader *r = xcalloc(1, sizeof(*r));
    r->base = (struct blob_reader){&blob_s3_ops, off, end, off};
    r->s = s;
    r->bucket = xstrdup(bucket);
    r->key = xstrdup(key);
    r->etag = xstrdup(etag);
    *out = &r->base;
    return 0;
}

static ssize_t s3_read(struct blob_reader *br, void *buf, size_t n, struct err *e)
{
    struct s3_reader *r = reader_of(br);
    if (!r->started) reader_start(r->s, r, r->base.pos, r->base.end);
    for (;;) {
        size_t avail = r->spill.len - r->spill_pos;
        if (avail) {
            size_t k = avail < n ? avail : n;
            memcpy(buf, r->spill.data + r->spill_pos, k);
            r->spill_pos += k;
            return (ssize_t)k;
        }
        if (r->done) {
            char what[160];
            snprintf(what, sizeof(what), "read of object '%.60s/%.60s'", r->bucket, r->key);
            if (r->result != CURLE_OK || !r->status_ok) {
                if (r->status == 412 && r->result == CURLE_OK)
                    return err_set(e, ERR_IO, "object '%s/%s' was replaced while being read",
                                   r->bucket, r->key);
                struct s3_resp rp = {.status = r->status, .body = r->errbody};
                return s3_fail(r->s, what, r->result, r->errbuf, &rp, r->bucket, r->key, e);
            }
            return 0; /* ended early: the wrapper reports it */
        }
        if (r->paused) {
            r->paused = false;
            curl_easy_pause(r->easy, CURLPAUSE_CONT); /* may deliver data at once */
            continue;
        }
        int running = 0;
        CURLMcode mc = curl_multi_perform(r->multi, &running);
        if (mc != CURLM_OK)
            return err_set(e, ERR_IO, "S3 endpoint '%s': %s", r->s->endpoint,
                           curl_multi_strerror(mc));
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(r->multi, &left)))
            if (msg->msg == CURLMSG_DONE) {
                r->done = true;
                r->result = msg->data.result;
                if (!r->status) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
                if (r->status != 200 && r->status != 206) r->status_ok = false;
            }
        if (r->spill.len == r->spill_pos && !r->done && !r->paused)
            curl_multi_poll(r->multi, NULL, 0, 1000, NULL);
    }
}

static int s3_reader_fd(const struct blob_reader *br)
{
    (void)reader_of(br);
    return -1;
}

static void s3_read_close(struct blob_reader *br)
{
    reader_free(reader_of(br));
}

/* --- listing ---------------------------------------------------------------------------------- */

/* Whether a ListObjectsV2 answer says more follows (IsTruncated). */
static bool listing_truncated(const char *b, const char *end)
{
    char *trunc = xml_get(b, end, "IsTruncated", NULL);
    bool truncated = trunc && !strcmp(trunc, "true");
    free(trunc);
    return truncated;
}

static int s3_list(struct blob_store *bs, const char *bucket, const char *prefix, const char *after,
                   size_t limit, struct blob_list *out, struct err *e)
{
    struct s3_store *s = s3_of(bs);
    char *full_prefix = xasprintf("%s/%s", bucket, prefix);
    size_t strip = strlen(bucket) + 1;
    struct buf q = BUF_INIT;
    buf_addf(&q, "list-type=2&max-keys=%zu&prefix=", limit);
    uri_encode(&q, full_prefix, false);
    if (*after) {
        char *sa = obj_key(bucket, after);
        buf_adds(&q, "&start-after=");
        uri_encode(&q, sa, false);
        free(sa);
    }
    struct s3_req rq = {.method = "GET", .okey = NULL, .query = buf_str(&q)};
    struct s3_resp rp;
    char *what = xasprintf("listing of bucket '%s'", bucket);
    int rc = s3_call(s, &rq, &rp, what, NULL, NULL, e);
    size_t cap = 0;
    if (rc) goto out;
    const char *b = buf_str(&rp.body), *end = b + rp.body.len;
    bool truncated = listing_truncated(b, end);
    for (const char *p = b, *next; (p = strstr(p, "<Contents>")) && p < end; p = next) {
        const char *cend = strstr(p, "</Contents>");
        if (!cend) {
            rc = err_set(e, ERR_IO, "S3 endpoint '%s': %s: the answer is cut", s->endpoint, what);
            goto out;
        }
        next = cend + 11;
        char *okey = xml_get(p, cend, "Key", NULL);
        if (!okey || strncmp(okey, full_prefix, strlen(full_prefix)) || !okey[strip]) {
            rc = err_set(e, ERR_IO, "S3 endpoint '%s': %s: a key is missing or outside the prefix",
                         s->endpoint, what);
            free(okey);
            goto out;
        }
        struct blob_info info;
        struct err e2 = ERR_INIT;
        if (blob_name_check(bucket, okey + strip, NULL)) { /* put by another tool: not ours */
            free(okey);
            continue;
        }
        int hrc = object_info(s, bucket, okey + strip, &info, NULL, &e2);
        if (hrc == ERR_NOTFOUND) { /* deleted since the listing */
            free(okey);
            continue;
        }
        if (hrc) {
            free(okey);
            rc = err_set(e, hrc, "%s", e2.msg);
            goto out;
        }
        if (out->n == cap) {
            cap = cap ? 2 * cap : 16;
            out->items = xrealloc(out->items, cap * sizeof(*out->items));
        }
        out->items[out->n++] = (struct blob_entry){xstrdup(okey + strip), info};
        free(okey);
    }
    if (truncated) {
        char *last = NULL;
        /* The cursor is the last key S3 listed, even if it was dropped above. */
        for (const char *p = b, *nx; (p = strstr(p, "<Key>")) && p < end; p = nx) {
            char *k = xml_get(p, end, "Key", &nx);
            if (!k) break;
            free(last);
            last = k;
        }
        if (last && strlen(last) > strip) out->next = xstrdup(last + strip);
        free(last);
    }
out:
    resp_release(&rp);
    buf_release(&q);
    free(what);
    free(full_prefix);
    return rc;
}

/* --- presigning ------------------------------------------------------------------------------- */

static int s3_presign(struct blob_store *bs, const char *method, const char *bucket,
                      const char *key, int64_t expires_s, char **url, struct err *e)
{
    struct s3_store *s = s3_of(bs);
    char *okey = obj_key(bucket, key);
    char *path = key_path(s, okey);
    struct blob_s3_cred c;
    cred_of(s, &c);
    *url = blob_s3_presign_url(&c, method, s->origin, s->host, path, expires_s, time(NULL));
    free(path);
    free(okey);
    return 0;
}

/*
 * drover's buckets are the first parts of the S3 bucket's keys ("<bucket>/<key>"): listed
 * with the delimiter '/', they are its CommonPrefixes. The page after `after` starts after
 * every key under "<after>/" (U+FFFF sorts after what a key holds).
 */
static int s3_buckets(struct blob_store *bs, const char *after, size_t limit,
                      struct blob_list *out, struct err *e)
{
    struct s3_store *s = s3_of(bs);
    struct buf q = BUF_INIT;
    buf_addf(&q, "delimiter=%%2F&list-type=2&max-keys=%zu", limit);
    if (*after) {
        char *sa = xasprintf("%s/\xef\xbf\xbf", after);
        buf_adds(&q, "&start-after=");
        uri_encode(&q, sa, false);
        free(sa);
    }
    struct s3_req rq = {.method = "GET", .okey = NULL, .query = buf_str(&q)};
    struct s3_resp rp;
    int rc = s3_call(s, &rq, &rp, "listing of the buckets", NULL, NULL, e);
    size_t cap = 0;
    if (rc) goto out;
    const char *b = buf_str(&rp.body), *end = b + rp.body.len;
    bool truncated = listing_truncated(b, end);
    char *last = NULL;
    for (const char *p = b, *next; (p = strstr(p, "<CommonPrefixes>")) && p < end; p = next) {
        const char *cend = strstr(p, "</CommonPrefixes>");
        if (!cend) {
            rc = err_set(e, ERR_IO, "S3 endpoint '%s': listing of the buckets: the answer is cut",
                         s->endpoint);
            break;
        }
        next = cend + 17;
        char *prefix = xml_get(p, cend, "Prefix", NULL);
        size_t n = prefix ? strlen(prefix) : 0;
        if (n < 2 || prefix[n - 1] != '/') {
            free(prefix);
            continue;
        }
        prefix[n - 1] = '\0';
        free(last);
        last = xstrdup(prefix);
        if (blob_bucket_check(prefix, NULL)) { /* put there by another tool: not ours */
            free(prefix);
            continue;
        }
        if (out->n == cap) {
            cap = cap ? 2 * cap : 16;
            out->items = xrealloc(out->items, cap * sizeof(*out->items));
        }
        out->items[out->n++] = (struct blob_entry){.key = prefix};
    }
    if (!rc && truncated && last) out->next = last; /* S3's last, even if dropped above */
    else free(last);
out:
    resp_release(&rp);
    buf_release(&q);
    return rc;
}

const struct blob_ops blob_s3_ops = {
    .scheme = "s3",
    .caps = BLOB_CAP_PRESIGN_NATIVE | BLOB_CAP_RANGE | BLOB_CAP_REMOTE,
    .open = s3_open,
    .close = s3_close,
    .put_begin = s3_put_begin,
    .put_write = s3_put_write,
    .put_commit = s3_put_commit,
    .put_abort = s3_put_abort,
    .read_open = s3_read_open,
    .read = s3_read,
    .reader_fd = s3_reader_fd,
    .read_close = s3_read_close,
    .head = s3_head,
    .del = s3_del,
    .list = s3_list,
    .buckets = s3_buckets,
    .presign = s3_presign,
};
