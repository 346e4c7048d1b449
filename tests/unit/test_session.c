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

static void test_sessions(void **state)
{
    struct sessions *ss = sessions_new();
    struct err e = ERR_INIT;
    char id[SESSION_ID_LEN], id2[SESSION_ID_LEN];
    const struct session *s = sessions_create(ss, "drv_tok", ROLE_CLIENT, "alice", 1000, id, &e);
    assert_non_null(s);
    assert_int_equal(strlen(id), 64);
    assert_int_equal(strlen(s->csrf), 64);
    assert_string_not_equal(id, s->csrf);
    assert_string_equal(s->token, "drv_tok");
    assert_string_equal(s->name, "alice");
    assert_int_equal(s->expires_ms, 1000 + (int64_t)SESSION_TTL_S * 1000);
    assert_ptr_equal(sessions_find(ss, id, 2000), s);
    assert_null(sessions_find(ss, "0000", 2000));

    assert_non_null(sessions_create(ss, "drv_tok", ROLE_CLIENT, "alice", 2000, id2, &e));
    assert_string_not_equal(id, id2);
    assert_int_equal(sessions_count(ss), 2);
    sessions_delete(ss, id2);
    assert_null(sessions_find(ss, id2, 2000));
    sessions_delete(ss, id2); /* twice: nothing */
    assert_int_equal(sessions_count(ss), 1);

    /* Expired: not found, and forgotten. */
    assert_null(sessions_find(ss, id, 1000 + (int64_t)SESSION_TTL_S * 1000));
    assert_int_equal(sessions_count(ss), 0);
    sessions_free(ss);
    sessions_free(NULL);
}

static void test_sessions_cap(void **state)
{
    struct sessions *ss = sessions_new();
    struct err e = ERR_INIT;
    char id[SESSION_ID_LEN];
    char name[32];
    for (int i = 0; i < SESSIONS_MAX; i++) {
        snprintf(name, sizeof(name), "token-%d", i % (SESSIONS_MAX / SESSIONS_PER_TOKEN + 1));
        assert_non_null(sessions_create(ss, "t", ROLE_ADMIN, name, 0, id, &e));
    }
    assert_int_equal(sessions_count(ss), SESSIONS_MAX);
    assert_null(sessions_create(ss, "t", ROLE_ADMIN, "a", 1, id, &e));
    assert_int_equal(e.code, ERR_UNAVAILABLE);
    /* Once they have expired, a sign-in forgets them and succeeds. */
    assert_non_null(
        sessions_create(ss, "t", ROLE_ADMIN, "a", (int64_t)SESSION_TTL_S * 1000, id, &e));
    assert_int_equal(sessions_count(ss), 1);
    sessions_free(ss);
}

static void test_sessions_per_token(void **state)
{
    struct sessions *ss = sessions_new();
    struct err e = ERR_INIT;
    char first[SESSION_ID_LEN], second[SESSION_ID_LEN], id[SESSION_ID_LEN], other[SESSION_ID_LEN];
    assert_non_null(sessions_create(ss, "t", ROLE_CLIENT, "alice", 0, first, &e));
    assert_non_null(sessions_create(ss, "t", ROLE_CLIENT, "alice", 1, second, &e));
    assert_non_null(sessions_create(ss, "u", ROLE_CLIENT, "bob", 1, other, &e));
    for (int i = 2; i < SESSIONS_PER_TOKEN; i++)
        assert_non_null(sessions_create(ss, "t", ROLE_CLIENT, "alice", i, id, &e));
    assert_int_equal(sessions_count(ss), SESSIONS_PER_TOKEN + 1);
    assert_non_null(sessions_find(ss, first, 100));
    /* One more of alice's: her oldest ends, bob's stays. */
    assert_non_null(sessions_create(ss, "t", ROLE_CLIENT, "alice", 100, id, &e));
    assert_int_equal(sessions_count(ss), SESSIONS_PER_TOKEN + 1);
    assert_null(sessions_find(ss, first, 100));
    assert_non_null(sessions_find(ss, second, 100));
    assert_non_null(sessions_find(ss, other, 100));
    sessions_free(ss);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_get),         cmocka_unit_test(test_check_origin),
        cmocka_unit_test(test_sessions),           cmocka_unit_test(test_sessions_cap),
        cmocka_unit_test(test_sessions_per_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
