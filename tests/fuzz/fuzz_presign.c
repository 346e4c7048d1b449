/*
 * fuzz_presign.c - presigned URLs as the server checks them: the query string of a request
 * on /v1/blobs/{bucket}/{key} (presign_check_query), and URLs it signs itself.
 *
 * Input: the query string. Checks: a query not made with the secret is refused with
 * ERR_DENIED (never accepted: the fuzzer does not know the secret), and *bound is cleared;
 * a URL signed for the object, with the input's bytes as extra parameters in front, is
 * accepted for its method and refused for another one.
 */
#include <string.h>

#include "blob/presign.h"
#include "fuzz.h"

static const char secret[] = "fuzz-secret-fuzz-secret-fuzz-sec";
#define NOW 1700000000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *query = fuzz_cstr(data, size);
    if (!query) return 0;
    struct presign_bind b = {"x", 7};
    struct err e = ERR_INIT;
    int rc = presign_check_query(secret, sizeof(secret) - 1, "GET", "bucket", "dir/key", query, NOW,
                                 &b, &e);
    FUZZ_CHECK(rc == ERR_DENIED && e.msg[0] && b.job[0] == '\0' && b.attempt == 0);
    rc = presign_check_query(secret, sizeof(secret) - 1, "GET", "bucket", "dir/key", query, NOW,
                             NULL, &e);
    FUZZ_CHECK(rc == ERR_DENIED);

    /* a good URL with the input's parameters in front: the ones it signs come last */
    char *signed_q = NULL;
    struct presign_bind bind = {"01936f0e-7c1a-7abc-8def-0123456789ab", 3};
    rc = presign_make(secret, sizeof(secret) - 1, "PUT", "bucket", "dir/key", NOW + 60, &bind,
                      &signed_q, &e);
    FUZZ_CHECK(rc == 0);
    /* what the input adds must not name a signed parameter (that would be a different URL) */
    if (!strstr(query, "X-Drover") && !strstr(query, "x-drover") && !strchr(query, '#') &&
        strlen(query) < 2000) {
        size_t n = strlen(query) + strlen(signed_q) + 2;
        char *full = malloc(n);
        snprintf(full, n, "%s%s%s", query, *query ? "&" : "", signed_q);
        struct presign_bind got;
        struct err e2 = ERR_INIT;
        int ok = presign_check_query(secret, sizeof(secret) - 1, "PUT", "bucket", "dir/key", full,
                                     NOW, &got, &e2);
        /* libevent may refuse the query as a whole (then nothing is accepted) */
        if (ok == 0)
            FUZZ_CHECK(!strcmp(got.job, bind.job) && got.attempt == 3);
        else
            FUZZ_CHECK(ok == ERR_DENIED);
        FUZZ_CHECK(presign_check_query(secret, sizeof(secret) - 1, "GET", "bucket", "dir/key", full,
                                       NOW, &got, &e2) == ERR_DENIED);
        free(full);
    }
    free(signed_q);
    free(query);
    return 0;
}
