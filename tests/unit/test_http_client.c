/*
 * test_http_client.c - unit tests for http/client.c's server list: parsing of
 * --server / DROVER_SERVER ("A,B"), going round it, and when a failed call may
 * be sent to the next server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>

#include <cmocka.h>

#include "http/client.h"

static void one_server(void **state)
{
    (void)state;
    struct http_client c;
    struct err e = ERR_INIT;
    assert_int_equal(http_client_init(&c, "127.0.0.1:7070/", NULL, &e), 0);
    assert_int_equal(c.nservers, 1);
    assert_string_equal(c.base_url, "http://127.0.0.1:7070");
    assert_true(c.loopback);
    assert_false(http_client_next_server(&c)); /* nowhere else to go */
    assert_string_equal(c.base_url, "http://127.0.0.1:7070");
    http_client_release(&c);
}

static void list_in_order_and_round(void **state)
{
    (void)state;
    struct http_client c;
    struct err e = ERR_INIT;
    assert_int_equal(
        http_client_init(&c, " http://127.0.0.1:1 , https://example.org/prefix/,localhost:3",
                         "tok", &e),
        0);
    assert_int_equal(c.nservers, 3);
    assert_string_equal(c.servers[0], "http://127.0.0.1:1");
    assert_string_equal(c.servers[1], "https://example.org/prefix");
    assert_string_equal(c.servers[2], "http://localhost:3");
    assert_string_equal(c.base_url, "http://127.0.0.1:1");
    assert_false(c.loopback); /* one of them is not on this machine */
    assert_true(http_client_next_server(&c));
    assert_string_equal(c.base_url, "https://example.org/prefix");
    assert_true(http_client_next_server(&c));
    assert_string_equal(c.base_url, "http://localhost:3");
    assert_true(http_client_next_server(&c));
    assert_string_equal(c.base_url, "http://127.0.0.1:1"); /* round again */
    http_client_release(&c);

    assert_int_equal(http_client_init(&c, "127.0.0.1:1,[::1]:2", NULL, &e), 0);
    assert_true(c.loopback);
    http_client_release(&c);
}

static void bad_lists(void **state)
{
    (void)state;
    static const struct {
        const char *list, *says;
    } cases[] = {
        {"", "empty"},
        {"http://a:1,", "empty entry"},
        {",http://a:1", "empty entry"},
        {"http://a:1, ,http://b:2", "empty entry"},
        {"http://a:1,ftp://b:2", "'ftp://b:2' must start with http"},
        {"http://a:1,http://b:2/?x=1", "must not have a query"},
        {"http://a:1,http://b\n:2", "control characters"},
        {"a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9,a:10,a:11,a:12,a:13,a:14,a:15,a:16,a:17",
         "more than 16 servers"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_client c;
        struct err e = ERR_INIT;
        assert_int_equal(http_client_init(&c, cases[i].list, NULL, &e), ERR_INVALID);
        if (!strstr(e.msg, cases[i].says)) fail_msg("'%s': got '%s'", cases[i].list, e.msg);
        assert_int_equal(c.nservers, 0); /* nothing half-made is left */
        http_client_release(&c);
    }
}

static void when_to_try_the_next(void **state)
{
    (void)state;
    struct http_client c;
    struct err e = ERR_INIT;
    assert_int_equal(http_client_init(&c, "a:1,b:2", NULL, &e), 0);
    c.reached = false; /* never connected: nothing was done, whatever the method */
    assert_true(http_try_next(&c, "POST", 0));
    assert_true(http_try_next(&c, "GET", 0));
    c.reached = true; /* connected, then no answer: the server may have done it */
    assert_false(http_try_next(&c, "POST", 0));
    assert_false(http_try_next(&c, "DELETE", 0));
    assert_true(http_try_next(&c, "GET", 0));
    assert_true(http_try_next(&c, "POST", 503)); /* the server says it did nothing */
    assert_false(http_try_next(&c, "POST", 500));
    assert_false(http_try_next(&c, "GET", 404));
    assert_false(http_try_next(&c, "GET", 200));
    http_client_release(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_server),
        cmocka_unit_test(list_in_order_and_round),
        cmocka_unit_test(bad_lists),
        cmocka_unit_test(when_to_try_the_next),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
