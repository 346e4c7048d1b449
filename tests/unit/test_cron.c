/*
 * test_cron.c - unit tests for common/cron.c: each field's syntax, every refusal with its
 * message, next fire times across minute, hour, day, month and year boundaries (Feb 29, the
 * Vixie day-of-month / day-of-week rule, seconds), the last fire due over small and huge gaps,
 * and both functions checked against a brute-force scan matched with gmtime_r. In time zones:
 * fixed cases around DST changes (gaps, repeated hours, Lord Howe, Nuuk, Apia's lost day),
 * and both _tz functions checked against a minute-by-minute scan of wall-clock times computed
 * with tz_offset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/cron.h"
#include "common/tz.h"

#define B(n) (UINT64_C(1) << (n))

/* ms since the epoch of a UTC date and time (timegm: not cron.c's own arithmetic). */
static int64_t at(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm) * 1000;
}

static struct cron parse_ok(const char *text)
{
    struct cron c;
    struct err e = ERR_INIT;
    if (cron_parse(text, "spec.schedule", &c, &e) != 0) fail_msg("'%s' refused: %s", text, e.msg);
    return c;
}

/* Both parse, to the same schedule. */
static void assert_same(const char *a, const char *b)
{
    struct cron x = parse_ok(a), y = parse_ok(b);
    if (x.sec != y.sec || x.min != y.min || x.hour != y.hour || x.dom != y.dom || x.mon != y.mon ||
        x.dow != y.dow || x.dom_any != y.dom_any || x.dow_any != y.dow_any ||
        x.seconds != y.seconds)
        fail_msg("'%s' and '%s' differ", a, b);
}

static void assert_next(const char *text, int64_t after, int64_t want)
{
    struct cron c = parse_ok(text);
    int64_t got = cron_next(&c, after);
    if (got != want)
        fail_msg("'%s' after %lld: got %lld, want %lld", text, (long long)after, (long long)got,
                 (long long)want);
}

static void test_fields(void **state)
{
    (void)state;
    struct cron c = parse_ok("*/15 0-6/2 1,15 JAN-MAR,dec mon-FRI");
    assert_false(c.seconds);
    assert_true(c.sec == B(0));
    assert_true(c.min == (B(0) | B(15) | B(30) | B(45)));
    assert_true(c.hour == (B(0) | B(2) | B(4) | B(6)));
    assert_true(c.dom == (B(1) | B(15)));
    assert_true(c.mon == (B(1) | B(2) | B(3) | B(12)));
    assert_true(c.dow == (B(1) | B(2) | B(3) | B(4) | B(5)));
    assert_false(c.dom_any);
    assert_false(c.dow_any);

    c = parse_ok("10-50/10 5/15 * * *");
    assert_true(c.min == (B(10) | B(20) | B(30) | B(40) | B(50)));
    assert_true(c.hour == (B(5) | B(20))); /* 5/15: 5-23/15 */
    assert_true(c.dom == 0xfffffffe);
    assert_true(c.mon == 0x1ffe);
    assert_true(c.dow == 0x7f);
    assert_true(c.dom_any);
    assert_true(c.dow_any);

    c = parse_ok("0 0 ? * ?"); /* '?' is '*' in the day fields */
    assert_true(c.dom_any && c.dow_any);
    assert_true(c.dom == 0xfffffffe && c.dow == 0x7f);
    c = parse_ok("0 0 */2 * 1/2"); /* a stepped '*' still counts as '*' (Vixie) */
    assert_true(c.dom_any);
    assert_false(c.dow_any);
    assert_true(c.dom == 0xaaaaaaaa);                  /* 1, 3, ... 31 */
    assert_true(c.dow == (B(1) | B(3) | B(5) | B(0))); /* 1-7/2: 7 is Sunday */

    /* Sunday is 0 and 7, by number and by name, in ranges too */
    assert_same("0 0 * * 7", "0 0 * * 0");
    assert_same("0 0 * * SUN", "0 0 * * 0");
    assert_same("0 0 * * 5-7", "0 0 * * 0,5,6");
    assert_same("0 0 * * sat,Sun", "0 0 * * 6,0");
    assert_same("0 0 1 jan-Mar *", "0 0 1 1-3 *");
    assert_same("0 0 1 1-MAR *", "0 0 1 1,2,3 *");
    assert_same("0 0 * * MON-FRI/2", "0 0 * * 1,3,5");
    assert_same("0 0 1 */3 *", "0 0 1 1,4,7,10 *");
    assert_same("0-59 * * * *", "* * * * *");
    assert_same("1,2,3,10-12,*/30 * * * *", "0,1,2,3,10,11,12,30 * * * *");
    assert_same("59 23 31 12 6", "59 23 31 DEC SAT");
    /* fields apart by any run of spaces and tabs; the ends ignored */
    assert_same(" \t0\t\t12  *   * \t*  ", "0 12 * * *");

    /* six fields: seconds first */
    c = parse_ok("*/10 * * * * *");
    assert_true(c.seconds);
    assert_true(c.sec == (B(0) | B(10) | B(20) | B(30) | B(40) | B(50)));
    assert_true(c.min == (B(60) - 1));
    c = parse_ok("0,30 15 10 * * MON");
    assert_true(c.sec == (B(0) | B(30)));
    assert_true(c.min == B(15) && c.hour == B(10) && c.dow == B(1));
    assert_same("0 * * * * *", "0 * * * * ?");
    /* 256 bytes are taken */
    char text[300];
    memset(text, ' ', 256);
    memcpy(text, "0 0 * * *", 9);
    text[256] = '\0';
    parse_ok(text);
}

static void test_macros(void **state)
{
    (void)state;
    assert_same("@yearly", "0 0 1 1 *");
    assert_same("@annually", "0 0 1 1 *");
    assert_same("@monthly", "0 0 1 * *");
    assert_same("@weekly", "0 0 * * 0");
    assert_same("@daily", "0 0 * * *");
    assert_same("@midnight", "0 0 * * *");
    assert_same("@hourly", "0 * * * *");
    assert_same("  @DAILY\t", "0 0 * * *");
    assert_same("@Hourly", "0 * * * *");
    assert_next("@weekly", at(2026, 3, 4, 12, 0, 0), at(2026, 3, 8, 0, 0, 0)); /* a Sunday */
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text, *msg; /* msg: the whole message when it starts "=", else a part */
    } bad[] = {
        {"61 * * * *", "=schedule: minute field '61' is out of range 0-59"},
        {"5,61 * * * *", "=schedule: minute field '61' is out of range 0-59"},
        {"50-70 * * * *", "minute field '50-70' is out of range 0-59"},
        {"* 24 * * *", "=schedule: hour field '24' is out of range 0-23"},
        {"* * 0 * *", "=schedule: day-of-month field '0' is out of range 1-31"},
        {"* * 32 * *", "day-of-month field '32' is out of range 1-31"},
        {"* * * 13 *", "=schedule: month field '13' is out of range 1-12"},
        {"* * * 0 *", "month field '0' is out of range 1-12"},
        {"* * * * 8", "=schedule: day-of-week field '8' is out of range 0-7"},
        {"60 * * * * *", "=schedule: second field '60' is out of range 0-59"},
        {"99999999999999 * * * *", "minute field '99999999999999' is out of range"},
        {"70/5 * * * *", "minute field '70/5' is out of range"},
        {"", "=schedule: expected 5 fields (minute hour day-of-month month day-of-week) or 6 "
             "(with seconds first), got 0"},
        {"  \t ", "got 0"},
        {"* *", "got 2"},
        {"* * *", "=schedule: expected 5 fields (minute hour day-of-month month day-of-week) "
                  "or 6 (with seconds first), got 3"},
        {"* * * * * * *", "got 7"},
        {"0 0 * * * * * * * *", "got 10"},
        {"1,,2 * * * *", "=schedule: minute field '1,,2' has an empty item in its list"},
        {"1, * * * *", "minute field '1,' has an empty item"},
        {"* ,3 * * *", "hour field ',3' has an empty item"},
        {"* * * , *", "month field ',' has an empty item"},
        {"10-5 * * * *", "=schedule: minute field '10-5' is a reversed range (10 is after 5)"},
        {"* * * * FRI-SUN", "day-of-week field 'FRI-SUN' is a reversed range (5 is after 0)"},
        {"* * * DEC-JAN *", "month field 'DEC-JAN' is a reversed range"},
        {"*/0 * * * *", "=schedule: minute field '*/0' has step 0 (a step is 1 or more)"},
        {"* 1-5/0 * * *", "hour field '1-5/0' has step 0"},
        {"*/61 * * * *", "minute field '*/61' has step 61, more than the 60 values"},
        {"5x * * * *", "=schedule: minute field '5x' is not valid (expected *, N or N-M, each "
                       "with an optional /STEP, in a comma-separated list)"},
        {"1-2-3 * * * *", "minute field '1-2-3' is not valid"},
        {"*/5/2 * * * *", "minute field '*/5/2' is not valid"},
        {"1- * * * *", "minute field '1-' is not valid"},
        {"-1 * * * *", "minute field '-1' is not valid"},
        {"*/ * * * *", "minute field '*/' is not valid"},
        {"/5 * * * *", "minute field '/5' is not valid"},
        {"** * * * *", "minute field '**' is not valid"},
        {"*-5 * * * *", "minute field '*-5' is not valid"},
        {"5/15x * * * *", "minute field '5/15x' is not valid"},
        {"*/+5 * * * *", "minute field '*/+5' is not valid"},
        {"0 0 1 1 MON1", "day-of-week field 'MON1' is not valid"},
        {"MON * * * *", "minute field 'MON' is not valid"},
        {"? * * * *", "minute field '?' is not valid ('?' is only for day-of-month and "
                      "day-of-week)"},
        {"* * * ? *", "month field '?' is not valid"},
        {"* * * FOO *", "=schedule: month field 'FOO' is not a month (1-12 or JAN-DEC)"},
        {"* * * JAN-FOO *", "month field 'JAN-FOO' is not a month"},
        {"* * * JANUARY *", "month field 'JANUARY' is not a month"},
        {"* * * * MONDAY", "=schedule: day-of-week field 'MONDAY' is not a day of the week "
                           "(0-7 or SUN-SAT)"},
        {"* * * * MON-XYZ", "day-of-week field 'MON-XYZ' is not a day of the week"},
        {"* * JAN * *", "day-of-month field 'JAN' is not valid"},
        {"0 0 30 2 *", "=schedule: never fires (no date has its day-of-month in its months)"},
        {"0 0 31 2 *", "schedule: never fires"},
        {"0 0 30,31 2 *", "schedule: never fires"},
        {"0 0 31 4,6,9,11 *", "schedule: never fires"},
        {"0 0 0 31 4 */2", "schedule: never fires"}, /* '*' with a step: still AND */
        {"@reboot", "=schedule: @reboot is not supported (a schedule here needs fire times)"},
        {"@REBOOT", "@reboot is not supported"},
        {"@fortnightly", "=schedule: unknown macro '@fortnightly' (expected @yearly, "
                         "@annually, @monthly, @weekly, @daily, @midnight or @hourly)"},
        {"@", "unknown macro '@'"},
        {"@daily now", "=schedule: unexpected 'now' after @daily"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct cron c;
        memset(&c, 0xa5, sizeof(c));
        struct cron before = c;
        struct err e = ERR_INIT;
        int rc = cron_parse(bad[i].text, "spec.schedule", &c, &e);
        if (rc != ERR_INVALID) fail_msg("'%s' was taken (rc %d)", bad[i].text, rc);
        assert_int_equal(e.code, ERR_INVALID);
        assert_string_equal(e.field, "spec.schedule");
        if (strncmp(e.msg, "schedule: ", 10)) fail_msg("'%s': %s", bad[i].text, e.msg);
        const char *want = bad[i].msg;
        if (want[0] == '=' ? strcmp(e.msg, want + 1) != 0 : strstr(e.msg, want) == NULL)
            fail_msg("'%s': got \"%s\", want \"%s\"", bad[i].text, e.msg, want);
        if (memcmp(&c, &before, sizeof(c))) fail_msg("'%s': *out written", bad[i].text);
    }

    /* longer than 256 bytes */
    char text[300];
    memset(text, ' ', 257);
    memcpy(text, "0 0 * * *", 9);
    text[257] = '\0';
    struct cron c;
    struct err e = ERR_INIT;
    assert_int_equal(cron_parse(text, "s", &c, &e), ERR_INVALID);
    assert_string_equal(e.msg, "schedule: longer than 256 bytes");
    assert_string_equal(e.field, "s");
    /* e may be NULL */
    assert_int_equal(cron_parse("61 * * * *", "s", &c, NULL), ERR_INVALID);
}

static void test_next(void **state)
{
    (void)state;
    int64_t noon = at(2026, 3, 14, 12, 0, 0);
    /* strictly after, a whole minute */
    assert_next("* * * * *", noon, noon + 60000);
    assert_next("* * * * *", noon - 1, noon);
    assert_next("* * * * *", noon + 30500, noon + 60000);
    assert_next("* * * * *", noon + 59999, noon + 60000);
    /* minute and hour boundaries */
    assert_next("30 * * * *", at(2026, 3, 14, 12, 45, 0), at(2026, 3, 14, 13, 30, 0));
    assert_next("30 * * * *", at(2026, 3, 14, 23, 45, 0), at(2026, 3, 15, 0, 30, 0));
    assert_next("0 9-17 * * *", at(2026, 3, 14, 17, 0, 0), at(2026, 3, 15, 9, 0, 0));
    assert_next("*/20 9 * * *", at(2026, 3, 14, 9, 40, 0), at(2026, 3, 15, 9, 0, 0));
    /* day, month and year boundaries, month lengths */
    assert_next("0 0 * * *", at(2026, 12, 31, 23, 59, 0), at(2027, 1, 1, 0, 0, 0));
    assert_next("0 12 1 * *", at(2026, 1, 15, 0, 0, 0), at(2026, 2, 1, 12, 0, 0));
    assert_next("0 0 31 * *", at(2026, 4, 1, 0, 0, 0), at(2026, 5, 31, 0, 0, 0));
    assert_next("0 0 31 * *", at(2026, 5, 31, 0, 0, 0), at(2026, 7, 31, 0, 0, 0));
    assert_next("0 0 30 * *", at(2026, 1, 30, 0, 0, 0), at(2026, 3, 30, 0, 0, 0));
    assert_next("0 0 1 1 *", at(2026, 6, 1, 0, 0, 0), at(2027, 1, 1, 0, 0, 0));
    assert_next("59 23 31 12 *", at(2026, 12, 31, 23, 59, 0), at(2027, 12, 31, 23, 59, 0));
    assert_next("0 0 * 2 *", at(2026, 2, 28, 0, 0, 0), at(2027, 2, 1, 0, 0, 0));
    assert_next("0 0 * 2 *", at(2028, 2, 28, 0, 0, 0), at(2028, 2, 29, 0, 0, 0));
    /* Feb 29: leap years, and 2100 is not one (2104 is past 5 years) */
    assert_next("0 0 29 2 *", at(2027, 1, 1, 0, 0, 0), at(2028, 2, 29, 0, 0, 0));
    assert_next("0 0 29 2 *", at(2028, 2, 29, 0, 0, 0), at(2032, 2, 29, 0, 0, 0));
    assert_next("0 0 29 2 *", at(2096, 3, 1, 0, 0, 0), -1);
    assert_next("0 0 29 2 *", at(2399, 3, 1, 0, 0, 0), at(2400, 2, 29, 0, 0, 0));
    /* before 1970 */
    assert_next("0 0 1 1 *", -1, 0);
    assert_next("0 0 1 1 *", at(1969, 3, 1, 0, 0, 0), 0);
    assert_next("0 0 29 2 *", at(1900, 1, 1, 0, 0, 0), at(1904, 2, 29, 0, 0, 0));
    /* out of range */
    struct cron c = parse_ok("* * * * *");
    assert_int_equal(cron_next(&c, INT64_MAX), -1);
    assert_int_equal(cron_next(&c, INT64_MIN), -1);

    /* both day fields restricted: the 13th or a Friday */
    assert_next("0 0 13 * FRI", at(2026, 3, 13, 0, 0, 0), at(2026, 3, 20, 0, 0, 0)); /* Fri */
    assert_next("0 0 13 * FRI", at(2026, 4, 10, 0, 0, 0), at(2026, 4, 13, 0, 0, 0)); /* Mon */
    assert_next("0 0 1-7 * MON", at(2026, 3, 3, 0, 0, 0), at(2026, 3, 4, 0, 0, 0));
    assert_next("0 0 1-7 * MON", at(2026, 3, 7, 0, 0, 0), at(2026, 3, 9, 0, 0, 0));
    /* one is '*': the other alone decides */
    assert_next("0 0 13 * *", at(2026, 3, 13, 0, 0, 0), at(2026, 4, 13, 0, 0, 0));
    assert_next("0 0 * * FRI", at(2026, 3, 13, 0, 0, 0), at(2026, 3, 20, 0, 0, 0));
    assert_next("0 0 ? * FRI", at(2026, 3, 13, 0, 0, 0), at(2026, 3, 20, 0, 0, 0));
    /* '*' with a step is '*' for the rule (Vixie): odd days that are Mondays */
    assert_next("0 0 */2 * MON", at(2026, 3, 1, 0, 0, 0), at(2026, 3, 9, 0, 0, 0));
    assert_next("0 0 */2 * MON", at(2026, 3, 9, 0, 0, 0), at(2026, 3, 23, 0, 0, 0));
    /* ... but not "1-31/2", which is restricted: odd days or Mondays */
    assert_next("0 0 1-31/2 * MON", at(2026, 3, 1, 0, 0, 0), at(2026, 3, 2, 0, 0, 0));

    /* six fields: seconds */
    assert_next("*/10 * * * * *", noon + 5000, noon + 10000);
    assert_next("*/10 * * * * *", noon + 10000, noon + 20000);
    assert_next("*/10 * * * * *", noon + 50500, noon + 60000);
    assert_next("* * * * * *", noon + 999, noon + 1000);
    assert_next("* * * * * *", noon, noon + 1000);
    assert_next("30 59 23 31 12 *", at(2026, 12, 31, 23, 59, 30), at(2027, 12, 31, 23, 59, 30));
    assert_next("15 0 0 1 1 *", at(2026, 12, 31, 23, 59, 59), at(2027, 1, 1, 0, 0, 15));
    assert_next("0 0 0 29 2 *", at(2027, 1, 1, 0, 0, 0), at(2028, 2, 29, 0, 0, 0));
}

static void test_last_due(void **state)
{
    (void)state;
    struct cron c = parse_ok("*/5 * * * *");
    int64_t t = at(2026, 3, 14, 12, 0, 0);
    assert_int_equal(cron_last_due(&c, t + 3 * 60000, t + 7 * 60000 + 30000), t + 5 * 60000);
    assert_int_equal(cron_last_due(&c, t, t + 10 * 60000), t + 10 * 60000); /* <= now */
    assert_int_equal(cron_last_due(&c, t + 5 * 60000, t + 9 * 60000), -1);  /* > after */
    assert_int_equal(cron_last_due(&c, t + 5 * 60000 - 1, t + 9 * 60000), t + 5 * 60000);
    assert_int_equal(cron_last_due(&c, t + 60000, t + 4 * 60000), -1); /* none between */
    assert_int_equal(cron_last_due(&c, t, t), -1);                     /* after >= now */
    assert_int_equal(cron_last_due(&c, t + 1, t), -1);
    assert_int_equal(cron_last_due(&c, INT64_MIN, t + 1), t);
    /* before 1970 instants are negative, and still times: only -1 says "none" */
    int64_t old = at(1953, 11, 14, 12, 0, 0);
    assert_true(old < 0);
    assert_int_equal(cron_last_due(&c, old - 60000, old + 1), old);
    assert_int_equal(cron_next(&c, old - 1), old);

    /* huge gaps: every second over 3 years, every second in January asked in December */
    c = parse_ok("* * * * * *");
    int64_t now = at(2026, 3, 14, 15, 9, 26) + 535;
    assert_int_equal(cron_last_due(&c, at(2023, 3, 14, 0, 0, 0), now), now - 535);
    assert_int_equal(cron_last_due(&c, now - 535, now), -1);
    assert_int_equal(cron_last_due(&c, now - 536, now), now - 535);
    struct cron jan = parse_ok("* * * * JAN *");
    int64_t dec = at(2026, 12, 15, 8, 0, 0);
    assert_int_equal(cron_last_due(&jan, at(2020, 1, 1, 0, 0, 0), dec),
                     at(2026, 1, 31, 23, 59, 59));
    assert_int_equal(cron_last_due(&jan, at(2026, 1, 31, 23, 59, 59), dec), -1);
    /* bounded work: a walk fire by fire would take seconds per call here */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(cron_last_due(&c, at(2023, 3, 14, 0, 0, 0), now + i),
                         (now + i) / 1000 * 1000);
        assert_int_equal(cron_last_due(&jan, 0, dec + i), at(2026, 1, 31, 23, 59, 59));
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (secs > 5) fail_msg("2000 calls took %.1f s", secs);

    /* rare schedules */
    c = parse_ok("0 0 1 1 *");
    assert_int_equal(cron_last_due(&c, at(2026, 2, 1, 0, 0, 0), at(2026, 12, 1, 0, 0, 0)), -1);
    assert_int_equal(cron_last_due(&c, at(2020, 6, 1, 0, 0, 0), at(2026, 6, 1, 0, 0, 0)),
                     at(2026, 1, 1, 0, 0, 0));
    c = parse_ok("0 0 29 2 *");
    assert_int_equal(cron_last_due(&c, at(2024, 1, 1, 0, 0, 0), at(2027, 6, 1, 0, 0, 0)),
                     at(2024, 2, 29, 0, 0, 0));
    assert_int_equal(cron_last_due(&c, at(2024, 2, 29, 0, 0, 0), at(2027, 6, 1, 0, 0, 0)), -1);
}

/* ---- against a brute-force scan ---- */

/* Independent matchers, written from the expressions' meaning, on gmtime_r's fields. */
static bool m_every7(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min % 7 == 0;
}
static bool m_fri13(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min == 0 && t->tm_hour == 0 &&
           (t->tm_mday == 13 || t->tm_wday == 5);
}
static bool m_odd_days(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min == 15 && (t->tm_hour == 3 || t->tm_hour == 15) &&
           t->tm_mday % 2 == 1;
}
static bool m_odd_mondays(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min == 0 && t->tm_hour == 12 && t->tm_mday % 2 == 1 &&
           t->tm_wday == 1;
}
static bool m_workhours(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min % 15 == 5 && t->tm_hour >= 9 && t->tm_hour <= 17 &&
           t->tm_wday >= 1 && t->tm_wday <= 5;
}
static bool m_leap_day(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min == 30 && t->tm_hour == 6 && t->tm_mon == 1 &&
           t->tm_mday == 29;
}
static bool m_first_week_or_monday(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min == 0 && t->tm_hour % 6 == 0 &&
           (t->tm_mday <= 7 || t->tm_wday == 1);
}
static bool m_hourly(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min == 0;
}
static bool m_month_end(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min == 59 && t->tm_hour == 23 && t->tm_mday >= 28 &&
           (t->tm_mon == 1 || t->tm_mon == 3 || t->tm_mon == 11);
}
static bool m_sec10(const struct tm *t)
{
    return t->tm_sec % 10 == 0;
}
static bool m_sec_midnight(const struct tm *t)
{
    return t->tm_sec == 30 && t->tm_min == 59 && t->tm_hour == 23;
}
static bool m_sec_list(const struct tm *t)
{
    return (t->tm_sec <= 5 || t->tm_sec == 50) && t->tm_min % 2 == 0;
}

struct brute {
    const char *text;
    bool (*match)(const struct tm *t);
};

/*
 * Scans [from_s, to_s) every `step` seconds, and checks cron_next from each point (and from a
 * millisecond before it) against the next match found, and cron_last_due (after the scan's
 * start) against the last one.
 */
static void check_span(const struct brute *b, int64_t from_s, int64_t to_s, int step)
{
    struct cron c = parse_ok(b->text);
    size_t cap = (size_t)((to_s - from_s) / step) + 1, n = 0;
    int64_t *fires = malloc(cap * sizeof(*fires));
    assert_non_null(fires);
    for (int64_t s = from_s; s < to_s; s += step) {
        time_t tt = (time_t)s;
        struct tm tm;
        assert_non_null(gmtime_r(&tt, &tm));
        if (b->match(&tm)) fires[n++] = s * 1000;
    }
    int64_t end_ms = to_s * 1000, start_ms = from_s * 1000;
    size_t i = 0; /* fires[i]: the first fire > p */
    int k = 0;
    for (int64_t s = from_s; s < to_s; s += step, k++) {
        for (int delta = -1; delta <= 0; delta++) {
            int64_t p = s * 1000 + delta;
            while (i < n && fires[i] <= p)
                i++;
            int64_t got = cron_next(&c, p);
            if (i < n) {
                if (got != fires[i])
                    fail_msg("'%s' next after %lld: got %lld, scan %lld", b->text, (long long)p,
                             (long long)got, (long long)fires[i]);
            } else if (got != -1 && got < end_ms) {
                fail_msg("'%s' next after %lld: got %lld, scan none before %lld", b->text,
                         (long long)p, (long long)got, (long long)end_ms);
            }
            if (k % 7 || p < start_ms) continue;
            int64_t want = i > 0 ? fires[i - 1] : -1;
            got = cron_last_due(&c, start_ms - 1, p);
            if (got != want)
                fail_msg("'%s' last due at %lld: got %lld, scan %lld", b->text, (long long)p,
                         (long long)got, (long long)want);
            if (want >= 0) assert_int_equal(cron_last_due(&c, want, p), -1);
        }
    }
    free(fires);
}

static void test_brute_force(void **state)
{
    (void)state;
    static const struct brute minutes[] = {
        {"*/7 * * * *", m_every7},
        {"0 0 13 * FRI", m_fri13},
        {"15 3,15 */2 * *", m_odd_days},
        {"0 12 */2 * MON", m_odd_mondays},
        {"5/15 9-17 * * MON-FRI", m_workhours},
        {"30 6 29 2 *", m_leap_day},
        {"0 */6 1-7 * 1", m_first_week_or_monday},
        {"@hourly", m_hourly},
    };
    /* a few days each: the end of February in a common and a leap year, a Friday the 13th,
     * the turn of a year */
    const int64_t spans[][2] = {
        {at(2026, 2, 25, 0, 0, 0), at(2026, 3, 3, 0, 0, 0)},
        {at(2028, 2, 26, 0, 0, 0), at(2028, 3, 3, 0, 0, 0)},
        {at(2026, 3, 8, 0, 0, 0), at(2026, 3, 16, 0, 0, 0)},
        {at(2026, 12, 28, 0, 0, 0), at(2027, 1, 3, 0, 0, 0)},
    };
    for (size_t i = 0; i < ARRAY_SIZE(minutes); i++) {
        for (size_t j = 0; j < ARRAY_SIZE(spans); j++)
            check_span(&minutes[i], spans[j][0] / 1000, spans[j][1] / 1000, 60);
    }
    /* days 28-31 of February, April and December: only those that exist */
    static const struct brute month_end = {"59 23 28-31 2,4,12 *", m_month_end};
    for (size_t j = 0; j < ARRAY_SIZE(spans); j++)
        check_span(&month_end, spans[j][0] / 1000, spans[j][1] / 1000, 60);
    check_span(&month_end, at(2026, 4, 27, 0, 0, 0) / 1000, at(2026, 5, 2, 0, 0, 0) / 1000, 60);

    /* six fields, second by second over a few hours */
    static const struct brute seconds[] = {
        {"*/10 * * * * *", m_sec10},
        {"30 59 23 * * *", m_sec_midnight},
        {"0-5,50 */2 * * * *", m_sec_list},
    };
    for (size_t i = 0; i < ARRAY_SIZE(seconds); i++) {
        check_span(&seconds[i], at(2026, 12, 31, 22, 0, 0) / 1000, at(2027, 1, 1, 1, 0, 0) / 1000,
                   1);
        check_span(&seconds[i], at(2028, 2, 28, 23, 0, 0) / 1000, at(2028, 2, 29, 0, 30, 0) / 1000,
                   1);
    }
}

/* ---- in time zones ---- */

static struct tz *zone(const char *name)
{
    struct tz *z = NULL;
    struct err e = ERR_INIT;
    if (tz_load(name, "spec.timezone", &z, &e) != 0) fail_msg("'%s' refused: %s", name, e.msg);
    return z;
}

static void assert_next_tz(const char *text, const struct tz *z, int64_t after, int64_t want)
{
    struct cron c = parse_ok(text);
    int64_t got = cron_next_tz(&c, z, after);
    if (got != want)
        fail_msg("'%s' in %s after %lld: got %lld, want %lld", text, z ? tz_name(z) : "NULL",
                 (long long)after, (long long)got, (long long)want);
}

/* Fires in order, each found from the one before. */
static void assert_fires_tz(const char *text, const struct tz *z, int64_t after,
                            const int64_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_next_tz(text, z, after, want[i]);
        after = want[i];
    }
}

static void test_tz_next(void **state)
{
    (void)state;
    struct tz *paris = zone("Europe/Paris");
    /* 09:00 is 08:00Z in winter (+1), 07:00Z in summer (+2) */
    assert_next_tz("0 9 * * *", paris, at(2026, 1, 10, 0, 0, 0), at(2026, 1, 10, 8, 0, 0));
    assert_next_tz("0 9 * * *", paris, at(2026, 7, 10, 0, 0, 0), at(2026, 7, 10, 7, 0, 0));
    assert_next_tz("0 9 * * *", paris, at(2026, 1, 10, 8, 0, 0), at(2026, 1, 11, 8, 0, 0));
    assert_next_tz("0 9 * * *", paris, at(2026, 3, 28, 8, 0, 0), at(2026, 3, 29, 7, 0, 0));

    /* 2026-03-29, 02:00 -> 03:00 (01:00Z): 02:30 does not exist, it fires at 03:00 (01:00Z),
     * once; the day before at 02:30 CET, the day after at 02:30 CEST */
    assert_next_tz("30 2 * * *", paris, at(2026, 3, 27, 12, 0, 0), at(2026, 3, 28, 1, 30, 0));
    assert_next_tz("30 2 * * *", paris, at(2026, 3, 28, 12, 0, 0), at(2026, 3, 29, 1, 0, 0));
    assert_next_tz("30 2 * * *", paris, at(2026, 3, 29, 1, 0, 0) - 1, at(2026, 3, 29, 1, 0, 0));
    assert_next_tz("30 2 * * *", paris, at(2026, 3, 29, 1, 0, 0), at(2026, 3, 30, 0, 30, 0));
    /* the gap's times fire together, once */
    assert_next_tz("0,15,30,45 2 * * *", paris, at(2026, 3, 29, 0, 0, 0),
                   at(2026, 3, 29, 1, 0, 0));
    assert_next_tz("0,15,30,45 2 * * *", paris, at(2026, 3, 29, 1, 0, 0),
                   at(2026, 3, 30, 0, 0, 0));
    /* 2026-10-25, 03:00 -> 02:00 (01:00Z): 02:30 fires at its first occurrence (CEST,
     * 00:30Z), not at its second (CET, 01:30Z) */
    assert_next_tz("30 2 * * *", paris, at(2026, 10, 24, 12, 0, 0), at(2026, 10, 25, 0, 30, 0));
    assert_next_tz("30 2 * * *", paris, at(2026, 10, 25, 0, 30, 0), at(2026, 10, 26, 1, 30, 0));
    assert_next_tz("30 2 * * *", paris, at(2026, 10, 25, 1, 29, 0), at(2026, 10, 26, 1, 30, 0));

    /* schedules of every hour follow the clock: every 30 minutes across the repeated hour,
     * the second 02:00 and 02:30 fire too (every 30 real minutes) */
    const int64_t fall[] = {at(2026, 10, 24, 23, 30, 0), at(2026, 10, 25, 0, 0, 0),
                            at(2026, 10, 25, 0, 30, 0),  at(2026, 10, 25, 1, 0, 0),
                            at(2026, 10, 25, 1, 30, 0),  at(2026, 10, 25, 2, 0, 0),
                            at(2026, 10, 25, 2, 30, 0)};
    assert_fires_tz("*/30 * * * *", paris, at(2026, 10, 24, 23, 0, 0), fall, ARRAY_SIZE(fall));
    const int64_t fall_hourly[] = {at(2026, 10, 24, 23, 0, 0), at(2026, 10, 25, 0, 0, 0),
                                   at(2026, 10, 25, 1, 0, 0), at(2026, 10, 25, 2, 0, 0),
                                   at(2026, 10, 25, 3, 0, 0)};
    assert_fires_tz("@hourly", paris, at(2026, 10, 24, 22, 0, 0), fall_hourly,
                    ARRAY_SIZE(fall_hourly));
    /* ... and across the gap the clock skips 02:00 and 02:30: 01:30 CET, then 03:00 CEST */
    const int64_t spring[] = {at(2026, 3, 29, 0, 30, 0), at(2026, 3, 29, 1, 0, 0),
                              at(2026, 3, 29, 1, 30, 0)};
    assert_fires_tz("*/30 * * * *", paris, at(2026, 3, 29, 0, 0, 0), spring, ARRAY_SIZE(spring));

    /* NULL and "UTC" are UTC */
    struct tz *utc = zone("UTC");
    assert_next_tz("30 2 * * *", NULL, at(2026, 3, 28, 12, 0, 0), at(2026, 3, 29, 2, 30, 0));
    assert_next_tz("30 2 * * *", utc, at(2026, 3, 28, 12, 0, 0), at(2026, 3, 29, 2, 30, 0));
    assert_next_tz("0 0 29 2 *", utc, at(2096, 3, 1, 0, 0, 0), -1);
    /* out of range, never */
    struct cron c = parse_ok("* * * * *");
    assert_int_equal(cron_next_tz(&c, paris, INT64_MAX), -1);
    assert_int_equal(cron_next_tz(&c, paris, INT64_MIN), -1);
    c = parse_ok("0 0 29 2 *");
    assert_int_equal(cron_next_tz(&c, paris, at(2096, 3, 1, 0, 0, 0)), -1);
    /* seconds */
    assert_next_tz("30 30 2 * * *", paris, at(2026, 3, 29, 0, 0, 0), at(2026, 3, 29, 1, 0, 0));
    assert_next_tz("30 30 2 * * *", paris, at(2026, 10, 25, 0, 0, 0),
                   at(2026, 10, 25, 0, 30, 30));

    /* New York: 02:00 -> 03:00 on 2026-03-08 (07:00Z), 02:00 -> 01:00 on 2026-11-01 (06:00Z) */
    struct tz *ny = zone("America/New_York");
    assert_next_tz("30 2 * * *", ny, at(2026, 3, 7, 12, 0, 0), at(2026, 3, 8, 7, 0, 0));
    assert_next_tz("30 1 * * *", ny, at(2026, 10, 31, 12, 0, 0), at(2026, 11, 1, 5, 30, 0));
    assert_next_tz("30 1 * * *", ny, at(2026, 11, 1, 5, 30, 0), at(2026, 11, 2, 6, 30, 0));

    /* Lord Howe: a gap of 30 minutes (02:00 -> 02:30, 15:30Z), and 01:30-02:00 twice */
    struct tz *lh = zone("Australia/Lord_Howe");
    assert_next_tz("15 2 * * *", lh, at(2026, 10, 3, 0, 0, 0), at(2026, 10, 3, 15, 30, 0));
    assert_next_tz("45 2 * * *", lh, at(2026, 10, 3, 0, 0, 0), at(2026, 10, 3, 15, 45, 0));
    assert_next_tz("45 1 * * *", lh, at(2026, 4, 4, 0, 0, 0), at(2026, 4, 4, 14, 45, 0));
    assert_next_tz("45 1 * * *", lh, at(2026, 4, 4, 14, 45, 0), at(2026, 4, 5, 15, 15, 0));

    /* Nuuk changes at 23:00 on Saturdays (-1:00 Sunday): 23:30 on Saturday 2026-03-28 fires
     * at 00:00 Sunday (01:00Z) */
    struct tz *nuuk = zone("America/Nuuk");
    assert_next_tz("30 23 * * *", nuuk, at(2026, 3, 28, 12, 0, 0), at(2026, 3, 29, 1, 0, 0));
    assert_next_tz("30 23 * * *", nuuk, at(2026, 3, 29, 1, 0, 0), at(2026, 3, 30, 0, 30, 0));
    assert_next_tz("30 23 * * SAT", nuuk, at(2026, 3, 28, 12, 0, 0), at(2026, 3, 29, 1, 0, 0));
    /* Saturday 2026-10-24, 24:00 -> 23:00: 23:30 fires once, at 00:30Z */
    assert_next_tz("30 23 * * *", nuuk, at(2026, 10, 24, 12, 0, 0), at(2026, 10, 25, 0, 30, 0));
    assert_next_tz("30 23 * * *", nuuk, at(2026, 10, 25, 0, 30, 0), at(2026, 10, 26, 1, 30, 0));

    /* Apia had no December 30, 2011: its noon fires at the end of the gap, 00:00 on the 31st
     * (10:00Z on the 30th) */
    struct tz *apia = zone("Pacific/Apia");
    const int64_t apia_noons[] = {at(2011, 12, 29, 22, 0, 0), at(2011, 12, 30, 10, 0, 0),
                                  at(2011, 12, 30, 22, 0, 0)};
    assert_fires_tz("0 12 * * *", apia, at(2011, 12, 29, 0, 0, 0), apia_noons,
                    ARRAY_SIZE(apia_noons));
    /* a date that the gap took fires at its end too */
    assert_next_tz("0 12 30 12 *", apia, at(2011, 12, 1, 0, 0, 0), at(2011, 12, 30, 10, 0, 0));

    /* Sao Paulo's DST began at midnight (2018-11-04 00:00 -> 01:00, 03:00Z) */
    struct tz *sp = zone("America/Sao_Paulo");
    assert_next_tz("0 0 * * *", sp, at(2018, 11, 3, 12, 0, 0), at(2018, 11, 4, 3, 0, 0));
    assert_next_tz("0 0 * * *", sp, at(2018, 11, 4, 3, 0, 0), at(2018, 11, 5, 2, 0, 0));

    tz_free(paris);
    tz_free(utc);
    tz_free(ny);
    tz_free(lh);
    tz_free(nuuk);
    tz_free(apia);
    tz_free(sp);
}

static void test_tz_last_due(void **state)
{
    (void)state;
    struct tz *paris = zone("Europe/Paris");
    struct cron c = parse_ok("30 2 * * *");
    /* the gap's 02:30 is due from 03:00 (01:00Z) */
    assert_int_equal(cron_last_due_tz(&c, paris, at(2026, 3, 28, 12, 0, 0),
                                      at(2026, 3, 29, 1, 0, 0)),
                     at(2026, 3, 29, 1, 0, 0));
    assert_int_equal(cron_last_due_tz(&c, paris, at(2026, 3, 28, 12, 0, 0),
                                      at(2026, 3, 29, 1, 0, 0) - 1),
                     -1);
    assert_int_equal(cron_last_due_tz(&c, paris, at(2026, 3, 28, 0, 0, 0),
                                      at(2026, 3, 29, 0, 59, 0)),
                     at(2026, 3, 28, 1, 30, 0));
    /* the repeated 02:30 is due once */
    assert_int_equal(cron_last_due_tz(&c, paris, at(2026, 10, 24, 12, 0, 0),
                                      at(2026, 10, 25, 1, 45, 0)),
                     at(2026, 10, 25, 0, 30, 0));
    assert_int_equal(cron_last_due_tz(&c, paris, at(2026, 10, 25, 0, 30, 0),
                                      at(2026, 10, 25, 1, 45, 0)),
                     -1);
    assert_int_equal(cron_last_due_tz(&c, paris, at(2026, 10, 25, 0, 30, 0),
                                      at(2026, 10, 26, 1, 30, 0)),
                     at(2026, 10, 26, 1, 30, 0));
    /* a gap's several times: one fire */
    c = parse_ok("*/15 2 * * *");
    assert_int_equal(cron_last_due_tz(&c, paris, at(2026, 3, 28, 23, 0, 0),
                                      at(2026, 3, 29, 5, 0, 0)),
                     at(2026, 3, 29, 1, 0, 0));
    assert_int_equal(cron_last_due_tz(&c, paris, at(2026, 3, 29, 1, 0, 0),
                                      at(2026, 3, 29, 23, 0, 0)),
                     -1);
    /* months: summer time */
    c = parse_ok("0 9 * * *");
    assert_int_equal(
        cron_last_due_tz(&c, paris, at(2026, 1, 1, 0, 0, 0), at(2026, 7, 10, 12, 0, 0)),
        at(2026, 7, 10, 7, 0, 0));
    assert_int_equal(
        cron_last_due_tz(&c, paris, at(2026, 1, 1, 0, 0, 0), at(2026, 7, 10, 6, 59, 0)),
        at(2026, 7, 9, 7, 0, 0));
    assert_int_equal(
        cron_last_due_tz(&c, paris, INT64_MIN, at(2026, 1, 10, 8, 0, 0)),
        at(2026, 1, 10, 8, 0, 0));
    assert_int_equal(cron_last_due_tz(&c, paris, at(2026, 1, 10, 8, 0, 0),
                                      at(2026, 1, 10, 8, 0, 0)),
                     -1);
    /* NULL is UTC */
    assert_int_equal(cron_last_due_tz(&c, NULL, at(2026, 1, 1, 0, 0, 0),
                                      at(2026, 7, 10, 12, 0, 0)),
                     at(2026, 7, 10, 9, 0, 0));

    /* bounded work, whatever the gap */
    c = parse_ok("* * * * * *");
    struct cron jan = parse_ok("* * * * JAN *");
    int64_t now = at(2026, 10, 25, 1, 30, 0) + 535; /* in the repeated hour */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 1000; i++) {
        /* every second follows the clock through the repeated hour too */
        int64_t second = (now + i) / 1000 * 1000;
        assert_int_equal(cron_last_due_tz(&c, paris, at(2023, 3, 14, 0, 0, 0), now + i), second);
        assert_int_equal(cron_last_due_tz(&jan, paris, 0, now + i), at(2026, 1, 31, 22, 59, 59));
        assert_int_equal(cron_next_tz(&c, paris, now + i), second + 1000);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (secs > 5) fail_msg("3000 calls took %.1f s", secs);
    tz_free(paris);
}

/* Matchers of wall-clock times (gmtime_r of the wall clock's seconds). */
static bool m_0230(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min == 30 && t->tm_hour == 2;
}
static bool m_half_hours(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min % 30 == 0;
}
static bool m_quarters_at_2(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min % 15 == 0 && t->tm_hour == 2;
}
static bool m_midnight(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min == 0 && t->tm_hour == 0;
}
static bool m_sat_2330(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min == 30 && t->tm_hour == 23 && t->tm_wday == 6;
}
static bool m_noon(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min == 0 && t->tm_hour == 12;
}
static bool m_sunday_early(const struct tm *t)
{
    return t->tm_sec == 0 && t->tm_min % 7 == 0 && t->tm_hour >= 1 && t->tm_hour <= 3 &&
           t->tm_wday == 0;
}
static bool m_sec20(const struct tm *t)
{
    return t->tm_sec % 20 == 0;
}
static bool m_sec_0230(const struct tm *t)
{
    return t->tm_sec == 30 && t->tm_min == 30 && t->tm_hour == 2;
}

/*
 * The fires by a scan, every `step` seconds, of the wall clock (the instant plus tz_offset):
 * a wall time that matches fires at the first step at which the clock shows it or a later
 * time. So the times a gap skips fire when it ends, together, and the times a clock set back
 * shows again fire nothing. With `clock` (a schedule of every hour) a step fires when the
 * time its clock shows matches, whatever it showed before. Offsets and changes are whole
 * minutes, so steps of 1 or 60 s see every change.
 */
static size_t scan_tz(const struct brute *b, const struct tz *z, int64_t from_s, int64_t to_s,
                      int step, bool clock, int64_t *fires)
{
    int64_t shown = INT64_MIN; /* the highest wall time shown so far */
    for (int64_t s = from_s - 3 * 86400; s < from_s; s += step) {
        int64_t w = s + tz_offset(z, s * 1000);
        if (w > shown) shown = w;
    }
    size_t n = 0;
    for (int64_t s = from_s; s < to_s; s += step) {
        int64_t w = s + tz_offset(z, s * 1000);
        bool fire = false;
        for (int64_t v = clock ? w : shown + step; v <= w && !fire; v += step) {
            time_t tt = (time_t)v;
            struct tm tm;
            assert_non_null(gmtime_r(&tt, &tm));
            fire = b->match(&tm);
        }
        if (w > shown) shown = w;
        if (fire) fires[n++] = s * 1000;
    }
    return n;
}

/* cron_next_tz from every step of the span (and a ms before), cron_last_due_tz from every
 * 7th, against the scan. */
static void check_tz_span(const struct brute *b, const struct tz *z, int64_t from_s,
                          int64_t to_s, int step)
{
    struct cron c = parse_ok(b->text);
    size_t cap = (size_t)((to_s - from_s) / step) + 1;
    int64_t *fires = malloc(cap * sizeof(*fires));
    assert_non_null(fires);
    size_t n = scan_tz(b, z, from_s, to_s, step, (c.hour & 0xffffffu) == 0xffffffu, fires);
    int64_t end_ms = to_s * 1000, start_ms = from_s * 1000;
    size_t i = 0;
    int k = 0;
    for (int64_t s = from_s; s < to_s; s += step, k++) {
        for (int delta = -1; delta <= 0; delta++) {
            int64_t p = s * 1000 + delta;
            while (i < n && fires[i] <= p)
                i++;
            int64_t got = cron_next_tz(&c, z, p);
            if (i < n) {
                if (got != fires[i])
                    fail_msg("'%s' in %s next after %lld: got %lld, scan %lld", b->text,
                             tz_name(z), (long long)p, (long long)got, (long long)fires[i]);
            } else if (got != -1 && got < end_ms) {
                fail_msg("'%s' in %s next after %lld: got %lld, scan none before %lld", b->text,
                         tz_name(z), (long long)p, (long long)got, (long long)end_ms);
            }
            if (k % 7 || p < start_ms) continue;
            int64_t want = i > 0 ? fires[i - 1] : -1;
            got = cron_last_due_tz(&c, z, start_ms - 1, p);
            if (got != want)
                fail_msg("'%s' in %s last due at %lld: got %lld, scan %lld", b->text,
                         tz_name(z), (long long)p, (long long)got, (long long)want);
            if (want >= 0) assert_int_equal(cron_last_due_tz(&c, z, want, p), -1);
        }
    }
    free(fires);
}

static void test_tz_brute_force(void **state)
{
    (void)state;
    static const struct brute minutes[] = {
        {"30 2 * * *", m_0230},
        {"*/30 * * * *", m_half_hours},
        {"@hourly", m_hourly},
        {"*/15 2 * * *", m_quarters_at_2},
        {"0 0 * * *", m_midnight},
        {"30 23 * * SAT", m_sat_2330},
        {"0 12 * * *", m_noon},
        {"*/7 1-3 * * SUN", m_sunday_early},
    };
    /* zones, and a year from which their next two changes are looked at */
    static const struct {
        const char *name;
        int year, month;
    } zones[] = {
        {"Europe/Paris", 2026, 1},      {"America/New_York", 2026, 1},
        {"Australia/Lord_Howe", 2026, 1}, {"America/Nuuk", 2026, 1},
        {"Europe/Dublin", 2026, 1},     {"America/Sao_Paulo", 2018, 1},
        {"Pacific/Apia", 2011, 6},      {"Asia/Kolkata", 2026, 3},
    };
    for (size_t zi = 0; zi < ARRAY_SIZE(zones); zi++) {
        struct tz *z = zone(zones[zi].name);
        int64_t t = at(zones[zi].year, zones[zi].month, 1, 0, 0, 0), changes[2];
        for (int j = 0; j < 2; j++) {
            int64_t next = tz_next_change(z, t);
            changes[j] = next == INT64_MAX ? at(zones[zi].year, 3, 29, 1, 0, 0) : next;
            t = changes[j];
        }
        for (int j = 0; j < 2; j++) {
            int64_t from = changes[j] / 1000 - 36 * 3600, to = changes[j] / 1000 + 36 * 3600;
            from -= from % 60;
            for (size_t i = 0; i < ARRAY_SIZE(minutes); i++)
                check_tz_span(&minutes[i], z, from, to, 60);
        }
        tz_free(z);
    }
    /* seconds, second by second over a few hours around Paris's changes */
    static const struct brute seconds[] = {
        {"*/20 * * * * *", m_sec20},
        {"30 30 2 * * *", m_sec_0230},
    };
    struct tz *paris = zone("Europe/Paris");
    const int64_t paris_changes[] = {at(2026, 3, 29, 1, 0, 0), at(2026, 10, 25, 1, 0, 0)};
    for (size_t j = 0; j < ARRAY_SIZE(paris_changes); j++)
        for (size_t i = 0; i < ARRAY_SIZE(seconds); i++)
            check_tz_span(&seconds[i], paris, paris_changes[j] / 1000 - 2 * 3600,
                          paris_changes[j] / 1000 + 2 * 3600, 1);
    tz_free(paris);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),       cmocka_unit_test(test_macros),
        cmocka_unit_test(test_refusals),     cmocka_unit_test(test_next),
        cmocka_unit_test(test_last_due),     cmocka_unit_test(test_brute_force),
        cmocka_unit_test(test_tz_next),      cmocka_unit_test(test_tz_last_due),
        cmocka_unit_test(test_tz_brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
