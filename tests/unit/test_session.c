/*
 * test_session.c - unit tests for server/session.c: the Cookie header's
 * parsing, the same-origin check of state-changing calls, and sessions made,
 * found, expired and deleted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>

#include <cmocka.h>

#include "common/role.h"
#include "server/session.h"

static void test_cookie_get(void **state)
{
    char v[65];
    assert_true(session_cookie_get("drover_session=abc", "drover_session", v, sizeof(v)));
    assert_string_equal(v, "abc");
    assert_true(
        session_cookie_get("a=1; drover_session=xyz ; b=2", "drover_session", v, sizeof(v)));
    assert_string_equal(v, "xyz");
    assert_true(
        session_cookie_get("x_drover_session=1;drover_session=2", "drover_session", v, sizeof(v)));
    assert_string_equal(v, "2");
    assert_false(session_cookie_get("", "drover_session", v, sizeof(v)));
    assert_false(session_cookie_get("drover_session=", "drover_session", v, sizeof(v)));
    assert_false(session_cookie_get("drover_session", "drover_session", v, sizeof(v)));
    assert_false(session_cookie_get("drover_sessionx=1", "drover_session", v, sizeof(v)));
    assert_false(session_cookie_get("other=drover_session=1", "drover_session", v, sizeof(v)));
    char big[200];
    memset(big, 'a', sizeof(big));
    memcpy(big, "drover_session=", 15);
    big[sizeof(big) - 1] = '\0';
    assert_false(session_cookie_get(big, "drover_session", v, sizeof(v))); /* too long */
}

/* session_check_origin with a fresh struct err (the first error set in one is kept). */
static struct err oe;
static int check(const char *origin, const char *site, const char *host)
{
    oe = (struct err)ERR_INIT;
    return session_check_origin(origin, site, host, &oe);
}

static void test_check_origin(void **state)
{
    const char *host = "127.0.0.1:7070";
    assert_int_equal(check(NULL, NULL, host), 0);
    assert_int_equal(check("http://127.0.0.1:7070", "same-origin", host), 0);
    assert_int_equal(check("https://127.0.0.1:7070", NULL, host), 0);
    assert_int_equal(check(NULL, "same-site", host), ERR_DENIED);
    assert_non_null(strstr(oe.msg, "same-site"));
    assert_int_equal(check(NULL, "cross-site", host), ERR_DENIED);
    assert_int_equal(check(NULL, "none", host), ERR_DENIED);
    assert_int_equal(check("http://evil.test", NULL, host), ERR_DENIED);
    assert_non_null(strstr(oe.msg, "evil.test"));
    assert_int_equal(check("null", NULL, host), ERR_DENIED);
    assert_int_equal(check("http://127.0.0.1:7071", NULL, host), ERR_DENIED);
    assert_int_equal(check("http://127.0.0.1:7070.evil", NULL, host), ERR_DENIED);
    assert_int_equal(check("ftp://127.0.0.1:7070", NULL, host), ERR_DENIED);
    assert_int_equal(check("http://127.0.0.1:7070", NULL, NULL), ERR_DENIED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_get),
        cmocka_unit_test(test_check_origin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
