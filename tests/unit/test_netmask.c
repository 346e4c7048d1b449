/*
 * test_netmask.c - unit tests for common/netmask.c: address ranges parsed (bad ones named),
 * and addresses matched against them, IPv4-mapped IPv6 ones as the IPv4 address they map.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>

#include <cmocka.h>

#include "common/netmask.h"

/* Is the address `ip` (IPv4 or IPv6 text) in the list? */
static bool has(const struct netmask_list *l, const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1)
        a4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1)
        a6->sin6_family = AF_INET6;
    else
        fail_msg("bad address in the test: %s", ip);
    return netmask_list_has(l, (struct sockaddr *)&ss);
}

static void test_ranges_match(void **state)
{
    (void)state;
    struct netmask_list l = {0};
    struct err e = ERR_INIT;
    assert_int_equal(netmask_list_parse("10.0.0.0/8, 192.168.1.7 ,172.16.0.0/12,fd00::/8,"
                                        "169.254.1.1/16", "--x", &l, &e), 0);
    assert_int_equal(l.n, 5);
    assert_true(has(&l, "10.255.1.2"));
    assert_false(has(&l, "11.0.0.1"));
    assert_true(has(&l, "192.168.1.7"));
    assert_false(has(&l, "192.168.1.8")); /* one address: /32 */
    assert_true(has(&l, "172.31.255.255"));
    assert_false(has(&l, "172.32.0.0")); /* /12: a prefix not on a byte */
    assert_true(has(&l, "fd12:3456::1"));
    assert_false(has(&l, "fe80::1"));
    assert_true(has(&l, "169.254.169.254")); /* host bits of the range given are cleared */
    /* an IPv4-mapped IPv6 address is the IPv4 one */
    assert_true(has(&l, "::ffff:10.1.2.3"));
    assert_false(has(&l, "::ffff:11.1.2.3"));
    netmask_list_release(&l);

    assert_int_equal(netmask_list_parse("0.0.0.0/0,::/0", "--x", &l, &e), 0);
    assert_true(has(&l, "203.0.113.9"));
    assert_true(has(&l, "2001:db8::1"));
    struct netmask_list copy = {0};
    netmask_list_copy(&copy, &l);
    netmask_list_release(&l);
    assert_true(has(&copy, "::1"));
    netmask_list_release(&copy);

    /* a range of IPv4-mapped addresses is the IPv4 range they map: it matches them */
    assert_int_equal(netmask_list_parse("::ffff:10.0.0.0/104,::ffff:192.0.2.1", "--x", &l, &e), 0);
    assert_true(has(&l, "10.9.8.7"));
    assert_true(has(&l, "::ffff:10.9.8.7"));
    assert_true(has(&l, "192.0.2.1"));
    assert_false(has(&l, "11.0.0.1"));
    assert_false(has(&l, "::a09:807")); /* not mapped: an IPv6 address */
    netmask_list_release(&l);

    assert_int_equal(netmask_list_parse("10.0.0.0/8,,", "--x", &l, &e), 0); /* empty items */
    assert_int_equal(l.n, 1);
    netmask_list_release(&l);
    assert_int_equal(netmask_list_parse("none", "--x", &l, &e), 0);
    assert_int_equal(l.n, 0);
    assert_false(has(&l, "127.0.0.1"));
}

static void test_bad_ranges_are_named(void **state)
{
    (void)state;
    static const char *const bad[] = {"10.0.0.0/33", "300.1.1.1", "10.0.0.0/", "fd00::/129",
                                      "example.com", "10.0.0.0/-1", "/8",
                                      "1.2.3.4/8x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct netmask_list l = {0};
        struct err e = ERR_INIT;
        int rc = netmask_list_parse(bad[i], "--webhook-deny", &l, &e);
        if (rc != ERR_INVALID) fail_msg("'%s' was taken", bad[i]);
        assert_non_null(strstr(e.msg, "--webhook-deny"));
        assert_int_equal(l.n, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranges_match),
        cmocka_unit_test(test_bad_ranges_are_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
