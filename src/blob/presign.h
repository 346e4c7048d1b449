/*
 * presign.h - presigned URLs: one method on one object until an expiry, no token needed.
 *
 * A URL is signed with HMAC-SHA256 under the server's secret. The signature
 * covers this canonical string, bytes exactly as shown, fields joined by a
 * line feed (0x0a) and no line feed at the end:
 *
 *     drover-presign-v1
 *     <METHOD>        "GET", "HEAD", "PUT" or "DELETE", upper case
 *     <bucket>        as stored (blob.h rules)
 *     <key>           as stored: decoded, not URL-encoded
 *     <expires>       unix seconds, decimal, no sign, no leading zeros ("0" for zero)
 *
 * and, for a URL bound to one attempt of a job (an agent's URL, struct
 * presign_bind), two more lines:
 *
 *     <job>           the job's id, a canonical lower-case UUID
 *     <attempt>       decimal, 1 to INT_MAX, no sign, no leading zeros
 *
 * Bucket and key cannot hold control characters (blob.h), so no field can run
 * into the next, and a bound string (7 lines) is never an unbound one (5). The
 * URL carries the expiry, the binding and the signature in its query:
 *
 *     /v1/blobs/<bucket>/<key, each segment URL-encoded>
 *         ?X-Drover-Expires=<expires>[&X-Drover-Job=<job>&X-Drover-Attempt=<attempt>]
 *          &X-Drover-Signature=<hex>
 *
 * This module checks the signature only: whether the attempt a URL is bound to
 * is still the live one is for its caller to check (the server's lease table).
 *
 * where <hex> is the 64 lower-case hex digits of the HMAC (either case is
 * accepted back). The method is not in the URL: it is part of what is signed,
 * so a URL signed for GET does not work for PUT.
 *
 * Errors: ERR_INVALID for bad arguments (names, method, expiry); ERR_DENIED
 * when a URL is refused, the message saying "expired", "bad signature" or
 * "wrong method". Comparisons of signatures take constant time.
 */
#ifndef DROVER_PRESIGN_H
#define DROVER_PRESIGN_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/uuid.h"

#define PRESIGN_EXPIRES_PARAM "X-Drover-Expires"
#define PRESIGN_SIGNATURE_PARAM "X-Drover-Signature"
#define PRESIGN_JOB_PARAM "X-Drover-Job"
#define PRESIGN_ATTEMPT_PARAM "X-Drover-Attempt"
#define PRESIGN_SIG_HEX 64

/* What a URL is bound to besides its object: one attempt of one job. */
struct presign_bind {
    char job[UUID_STR_LEN]; /* "" when the URL is not bound */
    int attempt;            /* >= 1 when bound */
};

/*
 * Signs `method` on bucket/key until `expires_unix` (seconds, >= 0) with the
 * secret (secret_len bytes, borrowed), bound to `bind` unless it is NULL or
 * its job is "", and sets *query_out to "X-Drover-Expires=<expires>[&X-Drover-Job=
 * <job>&X-Drover-Attempt=<n>]&X-Drover-Signature=<hex>", the caller's to free().
 * ERR_INVALID for a bad name, method, expiry or binding.
 */
int presign_make(const void *secret, size_t secret_len, const char *method, const char *bucket,
                 const char *key, int64_t expires_unix, const struct presign_bind *bind,
                 char **query_out, struct err *e);

/*
 * Checks a request made with `method` on bucket/key carrying `expires` and
 * `signature_hex` (from the URL's query) of a URL that is not bound (below for
 * bound ones) at time now_unix: 0 when the URL was
 * signed with this secret for exactly that method, object and expiry and
 * now_unix < expires. Else ERR_DENIED: "bad signature" (wrong secret, object or
 * expiry, or a malformed signature), "wrong method" (a good signature for
 * another method), "expired" (checked after the signature, so a forged expiry
 * reads as a bad signature). ERR_INVALID for a bad name.
 */
int presign_check(const void *secret, size_t secret_len, const char *method, const char *bucket,
                  const char *key, int64_t expires, const char *signature_hex, int64_t now_unix,
                  struct err *e);

/*
 * presign_check() on a raw query string ("a=1&X-Drover-Expires=...&..."; the
 * part after '?', parsed with libevent), bound URLs included: the binding is
 * part of what is checked, and *bound gets it (job "" for an unbound URL).
 * With bound NULL a bound URL is refused (ERR_DENIED "bound to a job's
 * attempt"): a caller that cannot check the attempt must not take it. A
 * missing or malformed parameter (X-Drover-Job without X-Drover-Attempt, ...)
 * is ERR_DENIED "bad signature".
 */
int presign_check_query(const void *secret, size_t secret_len, const char *method,
                        const char *bucket, const char *key, const char *query, int64_t now_unix,
                        struct presign_bind *bound, struct err *e);

/*
 * The path of an object's URL, "/v1/blobs/<bucket>/<key>", each key segment
 * URL-encoded (libevent's evhttp_uriencode; '/' between segments kept), with
 * `base` ("http://host:port", may be "" or NULL) in front and, when `query` is
 * not NULL, "?" and the query after. Returns a string the caller frees().
 */
char *presign_url(const char *base, const char *bucket, const char *key, const char *query);

#endif
