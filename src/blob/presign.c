/*
 * presign.c - HMAC-SHA256 presigned URLs; the canonical string is defined in presign.h.
 *
 * Invariants: nothing is signed or accepted for a name blob.h refuses; a
 * signature is compared as 32 raw bytes with CRYPTO_memcmp, never with
 * strcmp, so the time taken says nothing about how much of it was right.
 */
#include "blob/presign.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "blob/blob_int.h"
#include "common/buf.h"
#include "common/xalloc.h"

/* The methods a URL may be signed for, in the canonical string's spelling. */
static const char *const methods[] = {"GET", "HEAD", "PUT", "DELETE"};

static bool method_known(const char *m)
{
    for (size_t i = 0; m && i < ARRAY_SIZE(methods); i++)
        if (!strcmp(m, methods[i])) return true;
    return false;
}

static bool is_bound(const struct presign_bind *b)
{
    return b && b->job[0];
}

/* HMAC-SHA256 of the canonical string into mac (32 bytes); bind may be NULL. */
static int sign(const void *secret, size_t secret_len, const char *method, const char *bucket,
                const char *key, int64_t expires, const struct presign_bind *bind,
                unsigned char mac[32], struct err *e)
{
    struct buf s = BUF_INIT;
    buf_addf(&s, "drover-presign-v1\n%s\n%s\n%s\n%" PRId64, method, bucket, key, expires);
    if (is_bound(bind)) buf_addf(&s, "\n%s\n%d", bind->job, bind->attempt);
    unsigned int n = 0;
    /* HMAC() wants a non-NULL key even when it is empty. */
    unsigned char *ok = HMAC(EVP_sha256(), secret_len ? secret : "", (int)secret_len,
                             (const unsigned char *)s.data, s.len, mac, &n);
    buf_release(&s);
    if (!ok || n != 32) return err_set(e, ERR_INTERNAL, "cannot compute an HMAC-SHA256");
    return 0;
}

static int check_args(const void *secret, size_t secret_len, const char *method, const char *bucket,
                      const char *key, struct err *e)
{
    if (!secret_len || secret_len > INT32_MAX)
        return err_set(e, ERR_INVALID, "presign: bad secret length %zu", secret_len);
    if (!method_known(method))
        return err_field(e, ERR_INVALID, "method",
                         "invalid method: must be GET, HEAD, PUT or DELETE");
    return blob_name_check(bucket, key, e);
}

int presign_make(const void *secret, size_t secret_len, const char *method, const char *bucket,
                 const char *key, int64_t expires_unix, const struct presign_bind *bind,
                 char **query_out, struct err *e)
{
    *query_out = NULL;
    unsigned char mac[32];
    char hex[PRESIGN_SIG_HEX + 1];
    int rc = check_args(secret, secret_len, method, bucket, key, e);
    if (rc) return rc;
    if (expires_unix < 0)
        return err_field(e, ERR_INVALID, "expires", "invalid expiry: must be unix seconds >= 0");
    if (is_bound(bind) && (!uuid_valid(bind->job) || bind->attempt < 1))
        return err_field(e, ERR_INVALID, "job",
                         "invalid binding: a job id (a UUID) and an attempt >= 1");
    if ((rc = sign(secret, secret_len, method, bucket, key, expires_unix, bind, mac, e))) return rc;
    blob_hex(mac, sizeof(mac), hex);
    if (is_bound(bind))
        *query_out = xasprintf(PRESIGN_EXPIRES_PARAM "=%" PRId64 "&" PRESIGN_JOB_PARAM
                                                     "=%s&" PRESIGN_ATTEMPT_PARAM
                                                     "=%d&" PRESIGN_SIGNATURE_PARAM "=%s",
                               expires_unix, bind->job, bind->attempt, hex);
    else
        *query_out = xasprintf(PRESIGN_EXPIRES_PARAM "=%" PRId64 "&" PRESIGN_SIGNATURE_PARAM "=%s",
                               expires_unix, hex);
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* 64 hex digits into 32 bytes; false when it is anything else. */
static bool unhex(const char *s, unsigned char out[32])
{
    if (!s || strlen(s) != PRESIGN_SIG_HEX) return false;
    for (size_t i = 0; i < 32; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

static int denied(struct err *e, const char *bucket, const char *key, const char *why)
{
    return err_set(e, ERR_DENIED, "presigned url for '%s/%s' refused: %s", bucket, key, why);
}

/* presign_check() for a URL bound to bind (NULL: not bound). */
static int check(const void *secret, size_t secret_len, const char *method, const char *bucket,
                 const char *key, int64_t expires, const struct presign_bind *bind,
                 const char *signature_hex, int64_t now_unix, struct err *e)
{
    unsigned char given[32], want[32];
    int rc = blob_name_check(bucket, key, e);
    if (rc) return rc;
    if (!secret_len || secret_len > INT32_MAX)
        return err_set(e, ERR_INVALID, "presign: bad secret length %zu", secret_len);
    if (expires < 0 || !unhex(signature_hex, given)) return denied(e, bucket, key, "bad signature");
    if (method_known(method)) {
        if ((rc = sign(secret, secret_len, method, bucket, key, expires, bind, want, e))) return rc;
        if (!CRYPTO_memcmp(given, want, sizeof(want)))
            return now_unix < expires ? 0 : denied(e, bucket, key, "expired");
    }
    /* Not for this method: was it signed for another one? */
    for (size_t i = 0; i < ARRAY_SIZE(methods); i++) {
        if (method && !strcmp(method, methods[i])) continue;
        if ((rc = sign(secret, secret_len, methods[i], bucket, key, expires, bind, want, e)))
            return rc;
        if (!CRYPTO_memcmp(given, want, sizeof(want)))
            return err_set(e, ERR_DENIED,
                           "presigned url for '%s/%s' refused: wrong method (signed for %s)",
                           bucket, key, methods[i]);
    }
    return denied(e, bucket, key, "bad signature");
}

int presign_check(const void *secret, size_t secret_len, const char *method, const char *bucket,
                  const char *key, int64_t expires, const char *signature_hex, int64_t now_unix,
                  struct err *e)
{
    return check(secret, secret_len, method, bucket, key, expires, NULL, signature_hex, now_unix,
                 e);
}

/* A decimal of 1..18 digits (so it fits an int64_t) as presign_make writes it, without
   leading zeros (one URL per grant); -1 otherwise. */
static int64_t parse_seconds(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 18 || strspn(s, "0123456789") != n || (n > 1 && s[0] == '0')) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

int presign_check_query(const void *secret, size_t secret_len, const char *method,
                        const char *bucket, const char *key, const char *query, int64_t now_unix,
                        struct presign_bind *bound, struct err *e)
{
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    int rc;
    if (bound) *bound = (struct presign_bind){"", 0};
    if (!query || evhttp_parse_query_str(query, &params) != 0) {
        rc = denied(e, bucket, key, "bad signature (the query cannot be parsed)");
    } else {
        const char *exp = evhttp_find_header(&params, PRESIGN_EXPIRES_PARAM);
        const char *sig = evhttp_find_header(&params, PRESIGN_SIGNATURE_PARAM);
        const char *job = evhttp_find_header(&params, PRESIGN_JOB_PARAM);
        const char *att = evhttp_find_header(&params, PRESIGN_ATTEMPT_PARAM);
        int64_t expires = parse_seconds(exp), attempt = parse_seconds(att);
        struct presign_bind b = {"", 0};
        if (job && uuid_valid(job) && attempt >= 1 && attempt <= INT32_MAX) {
            memcpy(b.job, job, UUID_STR_LEN);
            b.attempt = (int)attempt;
        }
        if (!sig || expires < 0)
            rc = denied(e, bucket, key,
                        "bad signature (" PRESIGN_EXPIRES_PARAM " and " PRESIGN_SIGNATURE_PARAM
                        " are needed)");
        else if ((job || att) && !b.job[0])
            rc = denied(e, bucket, key,
                        "bad signature (" PRESIGN_JOB_PARAM
                        " must be a job id and " PRESIGN_ATTEMPT_PARAM
                        " an attempt >= 1, both or neither)");
        else if (b.job[0] && !bound)
            rc = denied(e, bucket, key, "the url is bound to a job's attempt");
        else
            rc = check(secret, secret_len, method, bucket, key, expires, &b, sig, now_unix, e);
        if (bound) *bound = rc ? (struct presign_bind){"", 0} : b;
    }
    evhttp_clear_headers(&params);
    return rc;
}

char *presign_url(const char *base, const char *bucket, const char *key, const char *query)
{
    struct buf u = BUF_INIT;
    buf_addf(&u, "%s/v1/blobs/%s", base ? base : "", bucket);
    for (const char *seg = key;;) {
        size_t n = strcspn(seg, "/");
        char *enc = evhttp_uriencode(seg, (ev_ssize_t)n, 0);
        if (!enc) abort(); /* only fails when out of memory */
        buf_addc(&u, '/');
        buf_adds(&u, enc);
        free(enc);
        if (!seg[n]) break;
        seg += n + 1;
    }
    if (query) {
        buf_addc(&u, '?');
        buf_adds(&u, query);
    }
    return buf_detach(&u);
}
