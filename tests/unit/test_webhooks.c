/* test_webhooks.c - the webhook deliverer's retry schedule (webhooks.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "server/webhooks.h"

static void test_backoff_doubles_up_to_an_hour(void **state)
{
    (void)state;
    assert_int_equal(webhook_backoff_ms(0), 1000); /* before any try: as after the first */
    assert_int_equal(webhook_backoff_ms(1), 1000);
    assert_int_equal(webhook_backoff_ms(2), 2000);
    assert_int_equal(webhook_backoff_ms(3), 4000);
    assert_int_equal(webhook_backoff_ms(12), 2048000);
    assert_int_equal(webhook_backoff_ms(13), 3600000);
    assert_int_equal(webhook_backoff_ms(64), 3600000);
    assert_int_equal(webhook_backoff_ms(1000000), 3600000);
}

static void test_tries_span_more_than_a_day_before_giving_up(void **state)
{
    (void)state;
    /* deliveries are given up WEBHOOK_GIVE_UP_MS after their event: at least 24 h of tries */
    assert_true(WEBHOOK_GIVE_UP_MS >= 24LL * 3600 * 1000);
    int64_t t = 0;
    int tries = 0;
    while (t <= WEBHOOK_GIVE_UP_MS && tries < 1000)
        t += webhook_backoff_ms(++tries);
    /* about 11 tries in the first hour, then one an hour */
    assert_in_range(tries, 30, 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_doubles_up_to_an_hour),
        cmocka_unit_test(test_tries_span_more_than_a_day_before_giving_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
