/*
 * test_presign.c - presigned URLs (blob/presign.h): the canonical string, and every way a
 * URL is refused (expired, tampered key or expiry, wrong method, wrong secret, malformed, a
 * binding to a job's attempt changed or dropped).
 *
 * The known-answer test pins the canonical string of presign.h: its expected HMAC was
 * computed outside drover (Python's hmac module), so a change of format cannot go unseen.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>

/*
 * Strings that the library allocated (presign_make's query, presign_url's URL) are freed
 * with libc's free(): this function is defined before cmocka.h replaces free() in this file.
 */
static void lib_free(void *p)
{
    free(p);
}

#include <cmocka.h>

#include "blob/presign.h"
#include "common/err.h"

#define SECRET "server-secret"
#define SECRET_LEN (sizeof(SECRET) - 1)
#define NOW INT64_C(1764000000)
#define KEY "dir/a b.txt"

/* Signs and splits the query back into its expiry and signature. */
static void make(const char *method, const char *key, int64_t expires, char sig[65])
{
    char *q = NULL;
    struct err e = ERR_INIT;
    int rc = presign_make(SECRET, SECRET_LEN, method, "bk", key, expires, NULL, &q, &e);
    if (rc) fail_msg("presign_make: %d (%s)", rc, e.msg);
    char want_prefix[64];
    snprintf(want_prefix, sizeof(want_prefix),
             "X-Drover-Expires=%lld&X-Drover-Signature=", (long long)expires);
    assert_true(strncmp(q, want_prefix, strlen(want_prefix)) == 0);
    assert_int_equal(strlen(q + strlen(want_prefix)), 64);
    snprintf(sig, 65, "%s", q + strlen(want_prefix));
    lib_free(q);
}

static void denied(int rc, const struct err *e, const char *why)
{
    if (rc != ERR_DENIED) fail_msg("expected ERR_DENIED, got %d (%s)", rc, e->msg);
    if (!strstr(e->msg, why)) fail_msg("message '%s' does not say '%s'", e->msg, why);
    assert_int_equal(err_http_status(rc), 403);
}

static void test_known_answer(void **state)
{
    char sig[65];
    make("GET", KEY, NOW, sig);
    assert_string_equal(sig, "a62d74c23871ff005f07c0b649b5be74c12845013cc6a79ecf56d676b9305b4e");
}

static void test_valid(void **state)
{
    char sig[65];
    struct err e = ERR_INIT;
    make("PUT", KEY, NOW + 900, sig);
    assert_int_equal(presign_check(SECRET, SECRET_LEN, "PUT", "bk", KEY, NOW + 900, sig, NOW, &e),
                     0);
    assert_int_equal(
        presign_check(SECRET, SECRET_LEN, "PUT", "bk", KEY, NOW + 900, sig, NOW + 899, &e), 0);
    /* Upper-case hex is the same signature. */
    for (char *p = sig; *p; p++)
        if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 'a' + 'A');
    assert_int_equal(presign_check(SECRET, SECRET_LEN, "PUT", "bk", KEY, NOW + 900, sig, NOW, &e),
                     0);

    /* The whole query, as the server will get it (other parameters ignored). */
    char *q = NULL;
    assert_int_equal(presign_make(SECRET, SECRET_LEN, "GET", "bk", KEY, NOW + 60, NULL, &q, &e), 0);
    char query[256];
    snprintf(query, sizeof(query), "x=1&%s", q);
    lib_free(q);
    assert_int_equal(
        presign_check_query(SECRET, SECRET_LEN, "GET", "bk", KEY, query, NOW, NULL, &e), 0);
    assert_int_equal(e.code, 0);
}

static void test_expired(void **state)
{
    char sig[65];
    struct err e = ERR_INIT;
    make("GET", KEY, NOW, sig);
    denied(presign_check(SECRET, SECRET_LEN, "GET", "bk", KEY, NOW, sig, NOW, &e), &e, "expired");
    err_clear(&e);
    denied(presign_check(SECRET, SECRET_LEN, "GET", "bk", KEY, NOW, sig, NOW + 3600, &e), &e,
           "expired");
    assert_non_null(strstr(e.msg, "bk/" KEY));
}

static void test_tampered_key(void **state)
{
    char sig[65];
    struct err e = ERR_INIT;
    make("GET", KEY, NOW + 60, sig);
    denied(presign_check(SECRET, SECRET_LEN, "GET", "bk", "dir/a b.txT", NOW + 60, sig, NOW, &e),
           &e, "bad signature");
    err_clear(&e);
    denied(presign_check(SECRET, SECRET_LEN, "GET", "bk", "dir/other", NOW + 60, sig, NOW, &e), &e,
           "bad signature");
    err_clear(&e);
    denied(presign_check(SECRET, SECRET_LEN, "GET", "bk2", KEY, NOW + 60, sig, NOW, &e), &e,
           "bad signature");
}

static void test_tampered_expiry(void **state)
{
    char sig[65];
    struct err e = ERR_INIT;
    make("GET", KEY, NOW + 60, sig);
    /* Stretching an expired URL's life is a bad signature, not "expired". */
    denied(presign_check(SECRET, SECRET_LEN, "GET", "bk", KEY, NOW + 86400, sig, NOW + 120, &e), &e,
           "bad signature");
    err_clear(&e);
    denied(presign_check(SECRET, SECRET_LEN, "GET", "bk", KEY, NOW + 59, sig, NOW, &e), &e,
           "bad signature");
    err_clear(&e);
    char query[256];
    snprintf(query, sizeof(query), "X-Drover-Expires=%lld&X-Drover-Signature=%s",
             (long long)NOW + 61, sig);
    denied(presign_check_query(SECRET, SECRET_LEN, "GET", "bk", KEY, query, NOW, NULL, &e), &e,
           "bad signature");
    err_clear(&e);
    /* the same expiry written with a leading zero is not the URL that was signed */
    snprintf(query, sizeof(query), "X-Drover-Expires=0%lld&X-Drover-Signature=%s",
             (long long)NOW + 60, sig);
    denied(presign_check_query(SECRET, SECRET_LEN, "GET", "bk", KEY, query, NOW, NULL, &e), &e,
           "bad signature");
    err_clear(&e);
    snprintf(query, sizeof(query), "X-Drover-Expires=%lld&X-Drover-Signature=%s",
             (long long)NOW + 60, sig);
    assert_int_equal(presign_check_query(SECRET, SECRET_LEN, "GET", "bk", KEY, query, NOW, NULL, &e),
                     0);
}

static void test_wrong_method(void **state)
{
    char sig[65];
    struct err e = ERR_INIT;
    make("GET", KEY, NOW + 60, sig);
    denied(presign_check(SECRET, SECRET_LEN, "PUT", "bk", KEY, NOW + 60, sig, NOW, &e), &e,
           "wrong method");
    assert_non_null(strstr(e.msg, "GET"));
    err_clear(&e);
    denied(presign_check(SECRET, SECRET_LEN, "DELETE", "bk", KEY, NOW + 60, sig, NOW, &e), &e,
           "wrong method");
    err_clear(&e);
    denied(presign_check(SECRET, SECRET_LEN, "POST", "bk", KEY, NOW + 60, sig, NOW, &e), &e,
           "wrong method");
    err_clear(&e);
    denied(presign_check(SECRET, SECRET_LEN, NULL, "bk", KEY, NOW + 60, sig, NOW, &e), &e,
           "wrong method");
}

static void test_wrong_secret(void **state)
{
    char sig[65];
    struct err e = ERR_INIT;
    make("GET", KEY, NOW + 60, sig);
    denied(presign_check("server-secreT", SECRET_LEN, "GET", "bk", KEY, NOW + 60, sig, NOW, &e), &e,
           "bad signature");
    err_clear(&e);
    denied(presign_check(SECRET, SECRET_LEN - 1, "GET", "bk", KEY, NOW + 60, sig, NOW, &e), &e,
           "bad signature");
}

static void test_malformed(void **state)
{
    char sig[65];
    struct err e = ERR_INIT;
    make("GET", KEY, NOW + 60, sig);
    char bad[80];
    const char *const sigs[] = {"", "abc", "zz", NULL};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        denied(presign_check(SECRET, SECRET_LEN, "GET", "bk", KEY, NOW + 60, sigs[i], NOW, &e), &e,
               "bad signature");
        err_clear(&e);
    }
    snprintf(bad, sizeof(bad), "%sa", sig); /* 65 digits */
    denied(presign_check(SECRET, SECRET_LEN, "GET", "bk", KEY, NOW + 60, bad, NOW, &e), &e,
           "bad signature");
    err_clear(&e);
    snprintf(bad, sizeof(bad), "%s", sig);
    bad[10] = 'g';
    denied(presign_check(SECRET, SECRET_LEN, "GET", "bk", KEY, NOW + 60, bad, NOW, &e), &e,
           "bad signature");
    err_clear(&e);

    const char *const queries[] = {
        "",
        "X-Drover-Expires=1764000060",
        "X-Drover-Signature=00",
        "X-Drover-Expires=-5&X-Drover-Signature=00",
        "X-Drover-Expires=12x&X-Drover-Signature=00",
        "X-Drover-Expires=99999999999999999999&X-Drover-Signature=00",
        NULL,
    };
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        denied(presign_check_query(SECRET, SECRET_LEN, "GET", "bk", KEY, queries[i], NOW, NULL, &e),
               &e, "bad signature");
        err_clear(&e);
    }

    /* Nothing is signed for a bad name, method or expiry, nor with no secret. */
    char *q = (char *)1;
    assert_int_equal(presign_make(SECRET, SECRET_LEN, "GET", "bk", "../x", NOW, NULL, &q, &e),
                     ERR_INVALID);
    assert_string_equal(e.field, "key");
    assert_null(q);
    err_clear(&e);
    assert_int_equal(presign_make(SECRET, SECRET_LEN, "get", "bk", KEY, NOW, NULL, &q, &e),
                     ERR_INVALID);
    assert_string_equal(e.field, "method");
    err_clear(&e);
    assert_int_equal(presign_make(SECRET, SECRET_LEN, "GET", "bk", KEY, -1, NULL, &q, &e),
                     ERR_INVALID);
    err_clear(&e);
    assert_int_equal(presign_make(SECRET, 0, "GET", "bk", KEY, NOW, NULL, &q, &e), ERR_INVALID);
    err_clear(&e);
    assert_int_equal(presign_check(SECRET, SECRET_LEN, "GET", "bk", "a//b", NOW, sig, NOW, &e),
                     ERR_INVALID);
}

#define JOB "01938c2e-0000-7000-8000-000000000001"

/*
 * A URL bound to a job's attempt (an agent's): the binding is in the query and signed (its
 * known answer computed outside drover too), handed back to the caller to check, and cannot
 * be dropped, changed or taken by a caller that does not check it.
 */
static void test_bound(void **state)
{
    struct err e = ERR_INIT;
    struct presign_bind bind = {JOB, 2}, got;
    char *q = NULL;
    assert_int_equal(presign_make(SECRET, SECRET_LEN, "PUT", "bk", KEY, NOW + 900, &bind, &q, &e),
                     0);
    assert_string_equal(q, "X-Drover-Expires=1764000900&X-Drover-Job=" JOB "&X-Drover-Attempt=2"
                           "&X-Drover-Signature="
                           "33e14743ed170a8eaeeb9276d228da6bc5411beb91f8343d675b2af844208052");
    assert_int_equal(presign_check_query(SECRET, SECRET_LEN, "PUT", "bk", KEY, q, NOW, &got, &e),
                     0);
    assert_string_equal(got.job, JOB);
    assert_int_equal(got.attempt, 2);
    /* a caller that cannot check the attempt does not take it */
    denied(presign_check_query(SECRET, SECRET_LEN, "PUT", "bk", KEY, q, NOW, NULL, &e), &e,
           "bound to a job's attempt");
    err_clear(&e);
    /* expiry still applies */
    denied(presign_check_query(SECRET, SECRET_LEN, "PUT", "bk", KEY, q, NOW + 900, &got, &e), &e,
           "expired");
    assert_string_equal(got.job, "");
    err_clear(&e);
    char sig[65];
    snprintf(sig, sizeof(sig), "%s", strstr(q, "Signature=") + strlen("Signature="));
    lib_free(q);
    char forged[512];
    const char *const changed[] = {
        "X-Drover-Expires=1764000900&X-Drover-Job=" JOB "&X-Drover-Attempt=3", /* next attempt */
        "X-Drover-Expires=1764000900&X-Drover-Job=01938c2e-0000-7000-8000-000000000002"
        "&X-Drover-Attempt=2",                           /* another job */
        "X-Drover-Expires=1764000900",                   /* unbound */
        "X-Drover-Expires=1764000900&X-Drover-Job=" JOB, /* half */
        "X-Drover-Expires=1764000900&X-Drover-Job=" JOB "&X-Drover-Attempt=0",
        "X-Drover-Expires=1764000900&X-Drover-Job=x&X-Drover-Attempt=2",
        "X-Drover-Expires=1764000900&X-Drover-Job=" JOB "&X-Drover-Attempt=4294967298",
    };
    for (size_t i = 0; i < sizeof(changed) / sizeof(changed[0]); i++) {
        snprintf(forged, sizeof(forged), "%s&X-Drover-Signature=%s", changed[i], sig);
        denied(presign_check_query(SECRET, SECRET_LEN, "PUT", "bk", KEY, forged, NOW, &got, &e), &e,
               "bad signature");
        assert_string_equal(got.job, "");
        err_clear(&e);
    }
    /* an unbound URL says so */
    assert_int_equal(presign_make(SECRET, SECRET_LEN, "GET", "bk", KEY, NOW + 60, NULL, &q, &e), 0);
    got.job[0] = 'x';
    assert_int_equal(presign_check_query(SECRET, SECRET_LEN, "GET", "bk", KEY, q, NOW, &got, &e),
                     0);
    assert_string_equal(got.job, "");
    lib_free(q);
    /* nothing is bound to a job that is not an id, or to attempt 0 */
    q = (char *)1;
    struct presign_bind bad = {"not-a-job", 1};
    assert_int_equal(presign_make(SECRET, SECRET_LEN, "GET", "bk", KEY, NOW, &bad, &q, &e),
                     ERR_INVALID);
    assert_null(q);
    err_clear(&e);
    bind.attempt = 0;
    assert_int_equal(presign_make(SECRET, SECRET_LEN, "GET", "bk", KEY, NOW, &bind, &q, &e),
                     ERR_INVALID);
}

static void test_url(void **state)
{
    char *u = presign_url("http://127.0.0.1:7070", "bk", "dir/a b+c%.txt", "X=1");
    assert_string_equal(u, "http://127.0.0.1:7070/v1/blobs/bk/dir/a%20b%2Bc%25.txt?X=1");
    lib_free(u);
    u = presign_url(NULL, "bk", "ünï/?#&", NULL);
    assert_string_equal(u, "/v1/blobs/bk/%C3%BCn%C3%AF/%3F%23%26");
    lib_free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer),    cmocka_unit_test(test_valid),
        cmocka_unit_test(test_expired),         cmocka_unit_test(test_tampered_key),
        cmocka_unit_test(test_tampered_expiry), cmocka_unit_test(test_wrong_method),
        cmocka_unit_test(test_wrong_secret),    cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_bound),           cmocka_unit_test(test_url),
    };
    return cmocka_run_group_tests_name("presign", tests, NULL, NULL);
}
