/*
 * test_tz.c - unit tests for common/tz.c: offsets of real zones at known instants (UTC, Paris,
 * New York, Lord Howe's 30-minute DST, Dublin's negative DST, Nuuk's -1:00 rule times), years
 * that only the footer covers, checked by hand and against glibc's localtime_r over two
 * centuries, a slim file made with zic against the fat system file, footers written by hand
 * (Jn, n, /time beyond 24 h, DST all year), names and files refused with their messages, and
 * truncated and corrupted files refused without a crash (run it under ASan too).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/tz.h"

#define H (INT64_C(3600) * 1000)
#define SYSTEM_ZONEINFO "/usr/share/zoneinfo"

/* ms since the epoch of a UTC date and time (timegm: not tz.c's own arithmetic). */
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

static struct tz *load_ok(const char *name)
{
    struct tz *z = NULL;
    struct err e = ERR_INIT;
    if (tz_load(name, "spec.timezone", &z, &e) != 0) fail_msg("'%s' refused: %s", name, e.msg);
    assert_non_null(z);
    assert_string_equal(tz_name(z), name);
    return z;
}

static struct tz *parse_ok(const void *data, size_t len)
{
    struct tz *z = NULL;
    struct err e = ERR_INIT;
    if (tz_parse("Test/Zone", data, len, "tz", &z, &e) != 0) fail_msg("refused: %s", e.msg);
    return z;
}

static void assert_offset(const struct tz *z, int64_t t, int want)
{
    int got = tz_offset(z, t);
    if (got != want)
        fail_msg("%s at %lld: offset %d, want %d", tz_name(z), (long long)t, got, want);
}

/* The offset changes exactly at t: want_before until t - 1 ms, want_after from t, and
 * tz_next_change finds t from before it. */
static void assert_change(const struct tz *z, int64_t t, int want_before, int want_after)
{
    assert_offset(z, t - 1, want_before);
    assert_offset(z, t, want_after);
    int64_t from[] = {t - 1, t - 1000, t - 20 * H};
    for (size_t i = 0; i < ARRAY_SIZE(from); i++) {
        int64_t got = tz_next_change(z, from[i]);
        if (got != t)
            fail_msg("%s: next change after %lld is %lld, want %lld", tz_name(z),
                     (long long)from[i], (long long)got, (long long)t);
    }
    assert_true(tz_next_change(z, t) > t);
}

static char *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot write %s: %s", path, strerror(errno));
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void with_tzdir(const char *dir)
{
    if (dir)
        assert_int_equal(setenv("TZDIR", dir, 1), 0);
    else
        assert_int_equal(unsetenv("TZDIR"), 0);
}

/* ---- TZif files written by hand ---- */

struct bytes {
    uint8_t *p;
    size_t n, cap;
};

static void put(struct bytes *b, const void *data, size_t n)
{
    if (!n) return;
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put32(struct bytes *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 4);
}

static void put64(struct bytes *b, int64_t v)
{
    put32(b, (uint32_t)((uint64_t)v >> 32));
    put32(b, (uint32_t)v);
}

struct spec {
    int version; /* 1-4 */
    size_t n;    /* transitions */
    const int64_t *at;
    const uint8_t *idx;
    size_t ntypes;
    const int32_t *utoff;
    const char *footer; /* v2+ */
    uint32_t leapcnt;
};

static void put_block(struct bytes *b, const struct spec *s, int version, int ts)
{
    put(b, "TZif", 4);
    uint8_t v = version == 1 ? 0 : (uint8_t)('0' + version), zero[15] = {0};
    put(b, &v, 1);
    put(b, zero, 15);
    uint32_t counts[6] = {0, 0, s->leapcnt, (uint32_t)s->n, (uint32_t)s->ntypes, 4};
    for (int i = 0; i < 6; i++)
        put32(b, counts[i]);
    for (size_t i = 0; i < s->n; i++)
        ts == 8 ? put64(b, s->at[i]) : put32(b, (uint32_t)(int32_t)s->at[i]);
    put(b, s->idx, s->n);
    for (size_t i = 0; i < s->ntypes; i++) {
        put32(b, (uint32_t)s->utoff[i]);
        uint8_t rest[2] = {0, 0};
        put(b, rest, 2);
    }
    put(b, "XXX", 4);
    for (uint32_t i = 0; i < s->leapcnt; i++) {
        ts == 8 ? put64(b, 78796800 + i) : put32(b, 78796800 + i);
        put32(b, i + 1);
    }
}

static struct bytes make_tzif(const struct spec *s)
{
    struct bytes b = {0};
    put_block(&b, s, s->version, 4);
    if (s->version >= 2) {
        put_block(&b, s, s->version, 8);
        put(&b, "\n", 1);
        put(&b, s->footer, strlen(s->footer));
        put(&b, "\n", 1);
    }
    return b;
}

/* A zone of one type (offset 0) and only a footer, as zic -b slim writes a fixed rule. */
static struct tz *footer_zone(const char *footer, struct err *e)
{
    int32_t utoff[] = {0};
    struct spec s = {.version = 3, .ntypes = 1, .utoff = utoff, .footer = footer};
    struct bytes b = make_tzif(&s);
    struct tz *z = NULL;
    int rc = tz_parse("Test/Footer", b.p, b.n, "tz", &z, e);
    free(b.p);
    return rc ? NULL : z;
}

/* ---- tests ---- */

static void test_utc(void **state)
{
    (void)state;
    with_tzdir(NULL);
    const char *names[] = {"UTC", "Etc/UTC", "Etc/GMT"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        struct tz *z = load_ok(names[i]);
        int64_t t[] = {INT64_MIN,
                       -at(1900, 1, 1, 0, 0, 0),
                       0,
                       at(2026, 3, 29, 1, 0, 0),
                       at(2100, 7, 1, 0, 0, 0),
                       INT64_MAX};
        for (size_t j = 0; j < ARRAY_SIZE(t); j++)
            assert_offset(z, t[j], 0);
        assert_true(tz_next_change(z, 0) == INT64_MAX);
        assert_true(tz_next_change(z, INT64_MIN) == INT64_MAX);
        tz_free(z);
    }
    tz_free(NULL);
    /* fixed offsets, POSIX signs: Etc/GMT+5 is 5 hours west */
    struct tz *z = load_ok("Etc/GMT+5");
    assert_offset(z, at(2026, 7, 1, 0, 0, 0), -5 * 3600);
    tz_free(z);
    z = load_ok("Asia/Kolkata");
    assert_offset(z, at(2026, 7, 1, 0, 0, 0), 5 * 3600 + 1800);
    assert_true(tz_next_change(z, at(2000, 1, 1, 0, 0, 0)) == INT64_MAX);
    tz_free(z);
}

static void test_paris(void **state)
{
    (void)state;
    with_tzdir(NULL);
    struct tz *z = load_ok("Europe/Paris");
    assert_offset(z, at(2026, 1, 15, 12, 0, 0), 3600);
    assert_offset(z, at(2026, 7, 15, 12, 0, 0), 7200);
    /* 2026: last Sundays of March and October, 01:00 UTC */
    assert_change(z, at(2026, 3, 29, 1, 0, 0), 3600, 7200);
    assert_change(z, at(2026, 10, 25, 1, 0, 0), 7200, 3600);
    assert_true(tz_next_change(z, at(2026, 1, 1, 0, 0, 0)) == at(2026, 3, 29, 1, 0, 0));
    assert_true(tz_next_change(z, at(2026, 3, 29, 1, 0, 0)) == at(2026, 10, 25, 1, 0, 0));
    /* before 1970 (CET since 1940-ish, the war, PMT): the file's 64-bit data */
    assert_offset(z, at(1900, 6, 1, 0, 0, 0), 561); /* PMT, 0:09:21 */
    assert_offset(z, at(1943, 1, 1, 0, 0, 0), 3600);
    /* After 2037, only the footer "CET-1CEST,M3.5.0,M10.5.0/3" says. By hand: 2040-01-01
     * is a Sunday, so March 1 (a leap year: 31 + 29 days later) is a Thursday, March 31 a
     * Saturday and the last Sunday of March the 25th; October 1 is a Monday (214 days after
     * March 1, 4 more than 30 weeks), October 31 a Wednesday, the last Sunday the 28th. */
    assert_change(z, at(2040, 3, 25, 1, 0, 0), 3600, 7200);
    assert_change(z, at(2040, 10, 28, 1, 0, 0), 7200, 3600);
    /* 2400: a leap year that is a multiple of 400 (March 31, 2400 is a Friday) */
    assert_change(z, at(2400, 3, 26, 1, 0, 0), 3600, 7200);
    tz_free(z);
}

static void test_new_york(void **state)
{
    (void)state;
    with_tzdir(NULL);
    struct tz *z = load_ok("America/New_York");
    assert_offset(z, at(2026, 1, 15, 12, 0, 0), -5 * 3600);
    assert_offset(z, at(2026, 7, 15, 12, 0, 0), -4 * 3600);
    /* second Sunday of March, first of November, 02:00 local */
    assert_change(z, at(2026, 3, 8, 7, 0, 0), -5 * 3600, -4 * 3600);
    assert_change(z, at(2026, 11, 1, 6, 0, 0), -4 * 3600, -5 * 3600);
    /* footer: March 1, 2050 is a Tuesday, so the second Sunday is the 13th; November 1 a
     * Tuesday, the first Sunday the 6th */
    assert_change(z, at(2050, 3, 13, 7, 0, 0), -5 * 3600, -4 * 3600);
    assert_change(z, at(2050, 11, 6, 6, 0, 0), -4 * 3600, -5 * 3600);
    /* 2006: the rules before 2007 (first Sunday of April, last of October) */
    assert_change(z, at(2006, 4, 2, 7, 0, 0), -5 * 3600, -4 * 3600);
    assert_change(z, at(2006, 10, 29, 6, 0, 0), -4 * 3600, -5 * 3600);
    tz_free(z);
}

static void test_odd_zones(void **state)
{
    (void)state;
    with_tzdir(NULL);
    /* Lord Howe: +10:30, and +11 in summer (a 30-minute DST), changing at 02:00 local on the
     * first Sundays of October and April. */
    struct tz *z = load_ok("Australia/Lord_Howe");
    assert_offset(z, at(2026, 7, 1, 0, 0, 0), 37800);
    assert_offset(z, at(2026, 1, 1, 0, 0, 0), 39600);
    assert_change(z, at(2026, 4, 4, 15, 0, 0), 39600, 37800);   /* 02:00 +11 */
    assert_change(z, at(2026, 10, 3, 15, 30, 0), 37800, 39600); /* 02:00 +10:30 */
    /* footer "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0": October 1, 2045 is a Sunday */
    assert_change(z, at(2045, 9, 30, 15, 30, 0), 37800, 39600);
    tz_free(z);

    /* Dublin: "IST-1GMT0,M10.5.0,M3.5.0/1", a negative DST (winter is the "DST" one) */
    z = load_ok("Europe/Dublin");
    assert_offset(z, at(2026, 1, 15, 0, 0, 0), 0);
    assert_offset(z, at(2026, 7, 15, 0, 0, 0), 3600);
    assert_change(z, at(2026, 3, 29, 1, 0, 0), 0, 3600);
    assert_change(z, at(2040, 3, 25, 1, 0, 0), 0, 3600);
    assert_change(z, at(2040, 10, 28, 1, 0, 0), 3600, 0);
    assert_offset(z, at(2040, 12, 31, 23, 59, 59), 0);
    tz_free(z);

    /* Nuuk: "<-02>2<-01>,M3.5.0/-1,M10.5.0/0" (TZif version 3): DST starts at -1:00 on the
     * last Sunday of March, i.e. 23:00 on the Saturday before, and ends at 0:00 */
    z = load_ok("America/Nuuk");
    assert_change(z, at(2026, 3, 29, 1, 0, 0), -7200, -3600);
    assert_change(z, at(2026, 10, 25, 1, 0, 0), -3600, -7200);
    assert_change(z, at(2040, 3, 25, 1, 0, 0), -7200, -3600);
    assert_change(z, at(2040, 10, 28, 1, 0, 0), -3600, -7200);
    assert_offset(z, at(2020, 7, 1, 0, 0, 0), -7200); /* -03 / -02 before 2023 */
    tz_free(z);

    /* Casablanca: +01, and +00 during Ramadan, listed year by year to 2087, then "<+01>-1" */
    z = load_ok("Africa/Casablanca");
    assert_offset(z, at(2026, 7, 1, 0, 0, 0), 3600);
    assert_offset(z, at(2026, 2, 25, 0, 0, 0), 0);
    assert_offset(z, at(2095, 1, 1, 0, 0, 0), 3600);
    tz_free(z);

    /* Apia skipped December 30, 2011: -10 to +14 */
    z = load_ok("Pacific/Apia");
    assert_change(z, at(2011, 12, 30, 10, 0, 0), -36000, 50400);
    tz_free(z);
}

/* tz_offset and tz_next_change against glibc's localtime_r (TZ set, single-threaded here):
 * every few days over two centuries, and both sides of every change from 1900 to 2200. */
static void test_against_glibc(void **state)
{
    (void)state;
    with_tzdir(NULL);
    static const char *zones[] = {
        "Europe/Paris",       "America/New_York",  "Australia/Lord_Howe",  "Europe/Dublin",
        "America/Nuuk",       "Africa/Casablanca", "America/Santiago",     "Pacific/Easter",
        "Asia/Jerusalem",     "Asia/Gaza",         "Pacific/Apia",         "Pacific/Chatham",
        "Asia/Kolkata",       "America/Sao_Paulo", "Antarctica/Troll",     "Asia/Tehran",
        "America/St_Johns",   "Australia/Sydney",  "Europe/Moscow",        "Africa/Cairo",
        "Pacific/Kiritimati", "Etc/GMT-14",        "America/Scoresbysund", "Europe/London",
    };
    const char *saved = getenv("TZ");
    char *saved_tz = saved ? strdup(saved) : NULL;
    for (size_t i = 0; i < ARRAY_SIZE(zones); i++) {
        struct tz *z = load_ok(zones[i]);
        assert_int_equal(setenv("TZ", zones[i], 1), 0);
        tzset();
        int64_t from = at(1900, 1, 1, 0, 0, 0) / 1000, to = at(2200, 1, 1, 0, 0, 0) / 1000;
        for (int64_t s = from; s < to; s += 3 * 86400 + 3607) {
            time_t tt = (time_t)s;
            struct tm tm;
            assert_non_null(localtime_r(&tt, &tm));
            if (tz_offset(z, s * 1000) != tm.tm_gmtoff)
                fail_msg("%s at %lld: %d, glibc %ld", zones[i], (long long)s,
                         tz_offset(z, s * 1000), tm.tm_gmtoff);
        }
        int changes = 0;
        for (int64_t t = tz_next_change(z, from * 1000); t < to * 1000;
             t = tz_next_change(z, t), changes++) {
            assert_true(t % 1000 == 0);
            assert_true(tz_offset(z, t) != tz_offset(z, t - 1));
            for (int d = -1; d <= 0; d++) {
                time_t tt = (time_t)(t / 1000 + d);
                struct tm tm;
                assert_non_null(localtime_r(&tt, &tm));
                if (tz_offset(z, (int64_t)tt * 1000) != tm.tm_gmtoff)
                    fail_msg("%s at change %lld%+d: %d, glibc %ld", zones[i], (long long)t, d,
                             tz_offset(z, (int64_t)tt * 1000), tm.tm_gmtoff);
            }
        }
        /* glibc knows nothing this misses: the same number of its changes, hour by hour over
         * 2020-2060 */
        int64_t hourly = 0, mine = 0;
        long prev = 0;
        for (int64_t s = at(2020, 1, 1, 0, 0, 0) / 1000; s < at(2060, 1, 1, 0, 0, 0) / 1000;
             s += 3600) {
            time_t tt = (time_t)s;
            struct tm tm;
            localtime_r(&tt, &tm);
            if (s > at(2020, 1, 1, 0, 0, 0) / 1000 && tm.tm_gmtoff != prev) hourly++;
            prev = tm.tm_gmtoff;
        }
        for (int64_t t = tz_next_change(z, at(2020, 1, 1, 0, 0, 0));
             t <= at(2060, 1, 1, 0, 0, 0) - 3600000; t = tz_next_change(z, t))
            mine++;
        if (hourly != mine)
            fail_msg("%s: %lld changes 2020-2060, glibc %lld", zones[i], (long long)mine,
                     (long long)hourly);
        (void)changes;
        tz_free(z);
    }
    if (saved_tz)
        setenv("TZ", saved_tz, 1);
    else
        unsetenv("TZ");
    tzset();
    free(saved_tz);
}

/* The last transition time of a v2+ TZif file (its 64-bit block), INT64_MIN when none. */
static int64_t last_transition(const uint8_t *d, size_t len)
{
    assert_true(len >= 44);
#define BE32(p) ((uint32_t)(p)[0] << 24 | (uint32_t)(p)[1] << 16 | (uint32_t)(p)[2] << 8 | (p)[3])
    uint32_t c[6];
    for (int i = 0; i < 6; i++)
        c[i] = BE32(d + 20 + 4 * i);
    size_t off = 44 + (size_t)c[3] * 5 + (size_t)c[4] * 6 + c[5] + (size_t)c[2] * 8 + c[1] + c[0];
    assert_true(off + 44 <= len);
    const uint8_t *h = d + off;
    uint32_t timecnt = BE32(h + 32);
    if (!timecnt) return INT64_MIN;
    const uint8_t *p = h + 44 + 8 * (size_t)(timecnt - 1);
    return (int64_t)((uint64_t)BE32(p) << 32 | BE32(p + 4));
#undef BE32
}

static char tmpdir[64];

static int make_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_tz.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    with_tzdir(NULL);
    return system(cmd) == 0 ? 0 : -1;
}

/* zic -b slim, from tzdata's rules (abridged: nothing before 1977 in Paris, 1967 in New York),
 * to check that a file with no transitions after 1996 or 2007 reads as the fat one does. */
static const char slim_source[] =
    "Rule EU 1977 1980 - Apr Sun>=1 1:00u 1:00 S\n"
    "Rule EU 1977 only - Sep lastSun 1:00u 0 -\n"
    "Rule EU 1978 only - Oct 1 1:00u 0 -\n"
    "Rule EU 1979 1995 - Sep lastSun 1:00u 0 -\n"
    "Rule EU 1981 max - Mar lastSun 1:00u 1:00 S\n"
    "Rule EU 1996 max - Oct lastSun 1:00u 0 -\n"
    "Zone Europe/Paris 0:09:21 - LMT 1891 Mar 16\n"
    "  0:09:21 - PMT 1911 Mar 11\n"
    "  1:00 EU CE%sT\n"
    "Rule US 1967 2006 - Oct lastSun 2:00 0 S\n"
    "Rule US 1967 1973 - Apr lastSun 2:00 1:00 D\n"
    "Rule US 1974 only - Jan 6 2:00 1:00 D\n"
    "Rule US 1975 only - Feb lastSun 2:00 1:00 D\n"
    "Rule US 1976 1986 - Apr lastSun 2:00 1:00 D\n"
    "Rule US 1987 2006 - Apr Sun>=1 2:00 1:00 D\n"
    "Rule US 2007 max - Mar Sun>=8 2:00 1:00 D\n"
    "Rule US 2007 max - Nov Sun>=1 2:00 0 S\n"
    "Zone America/New_York -4:56:02 - LMT 1883 Nov 18 17:00u\n"
    "  -5:00 US E%sT\n"
    /* Nuuk since 2024: the EU rules at 1:00u are -1:00 and 0:00 local (TZif version 3) */
    "Zone America/Nuuk -2:00 EU -02/-01\n";

static void test_slim(void **state)
{
    (void)state;
    /* Debian's zic is in libc-bin, in /usr/sbin, which a user's PATH may lack */
    const char *zic = NULL, *candidates[] = {"/usr/sbin/zic", "/usr/bin/zic", "/sbin/zic"};
    for (size_t i = 0; i < ARRAY_SIZE(candidates) && !zic; i++)
        if (access(candidates[i], X_OK) == 0) zic = candidates[i];
    if (!zic && system("command -v zic >/dev/null 2>&1") == 0) zic = "zic";
    if (!zic) {
        print_message("zic is not installed (Debian: package libc-bin): slim files not tested\n");
        skip();
    }
    char src[128], dir[128], cmd[512];
    snprintf(src, sizeof(src), "%s/slim.zi", tmpdir);
    snprintf(dir, sizeof(dir), "%s/slim", tmpdir);
    write_file(src, slim_source, strlen(slim_source));
    snprintf(cmd, sizeof(cmd), "%s -b slim -d '%s' '%s'", zic, dir, src);
    assert_int_equal(system(cmd), 0);

    static const struct {
        const char *name;
        int from_year;
        const char *footer;
    } zones[] = {
        {"Europe/Paris", 2020, "CET-1CEST,M3.5.0,M10.5.0/3"},
        {"America/New_York", 2020, "EST5EDT,M3.2.0,M11.1.0"},
        {"America/Nuuk", 2025, "<-02>2<-01>,M3.5.0/-1,M10.5.0/0"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(zones); i++) {
        with_tzdir(NULL);
        struct tz *fat = load_ok(zones[i].name);
        with_tzdir(dir);
        struct tz *slim = load_ok(zones[i].name);
        /* slim it is: its transitions end long before, the footer says the rest */
        char path[256];
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", dir, zones[i].name);
        uint8_t *data = (uint8_t *)read_whole(path, &len);
        assert_non_null(data);
        assert_true(last_transition(data, len) < at(2008, 1, 1, 0, 0, 0) / 1000);
        const char *footer = zones[i].footer;
        assert_memory_equal(data + len - strlen(footer) - 1, footer, strlen(footer));
        free(data);
        int changes = 0;
        for (int64_t t = at(zones[i].from_year, 1, 1, 0, 0, 0); t < at(2060, 1, 1, 0, 0, 0);
             t += H) {
            if (tz_offset(slim, t) != tz_offset(fat, t))
                fail_msg("%s at %lld: slim %d, fat %d", zones[i].name, (long long)t,
                         tz_offset(slim, t), tz_offset(fat, t));
            int64_t next = tz_next_change(slim, t);
            if (next != tz_next_change(fat, t))
                fail_msg("%s after %lld: next change slim %lld, fat %lld", zones[i].name,
                         (long long)t, (long long)next, (long long)tz_next_change(fat, t));
            changes += next <= t + H;
        }
        assert_int_equal(changes, 2 * (2060 - zones[i].from_year));
        tz_free(fat);
        tz_free(slim);
    }
    with_tzdir(NULL);
}

static void test_footers(void **state)
{
    (void)state;
    struct err e = ERR_INIT;
    /* no transitions: the footer all along, before 1970 too */
    struct tz *z = footer_zone("EST5EDT,M3.2.0,M11.1.0", &e);
    assert_non_null(z);
    assert_offset(z, at(1950, 1, 1, 0, 0, 0), -5 * 3600);
    assert_change(z, at(1950, 3, 12, 7, 0, 0), -5 * 3600, -4 * 3600);
    assert_change(z, at(2026, 11, 1, 6, 0, 0), -4 * 3600, -5 * 3600);
    tz_free(z);

    /* quoted names, minutes, no DST */
    z = footer_zone("<+0545>-5:45", &e);
    assert_offset(z, at(2026, 1, 1, 0, 0, 0), 5 * 3600 + 45 * 60);
    assert_true(tz_next_change(z, 0) == INT64_MAX);
    tz_free(z);

    /* DST all year (RFC 8536 3.3.1): from Jan 1 00:00 to Dec 31 24:00 + 1 h */
    z = footer_zone("EST5EDT,0/0,J365/25", &e);
    assert_non_null(z);
    for (int64_t t = at(2020, 1, 1, 0, 0, 0); t < at(2030, 1, 1, 0, 0, 0); t += 7 * H + 1234)
        assert_offset(z, t, -4 * 3600);
    assert_offset(z, at(2028, 1, 1, 5, 0, 0), -4 * 3600);
    assert_offset(z, at(2028, 1, 1, 5, 0, 0) - 1, -4 * 3600);
    assert_true(tz_next_change(z, at(2026, 1, 1, 0, 0, 0)) == INT64_MAX);
    tz_free(z);
    /* the same, DST being behind standard time (tzfile(5)) */
    z = footer_zone("XXX3EDT4,0/0,J365/23", &e);
    assert_non_null(z);
    assert_offset(z, at(2027, 1, 1, 3, 0, 0), -4 * 3600);
    assert_offset(z, at(2027, 6, 1, 3, 0, 0), -4 * 3600);
    assert_true(tz_next_change(z, at(2026, 1, 1, 0, 0, 0)) == INT64_MAX);
    tz_free(z);

    /* Jn never counts Feb 29: J60 is March 1, J300 October 27 (273 days to the end of
     * September). +1 / +2, starting at 00:00 local standard time, ending at 02:00 DST. */
    z = footer_zone("AAA-1BBB,J60/0,J300", &e);
    assert_non_null(z);
    assert_change(z, at(2028, 2, 29, 23, 0, 0), 3600, 7200); /* 2028 is a leap year */
    assert_change(z, at(2027, 2, 28, 23, 0, 0), 3600, 7200);
    assert_change(z, at(2028, 10, 27, 0, 0, 0), 7200, 3600);
    tz_free(z);
    /* n counts it, from 0: day 59 is Feb 29 in a leap year, March 1 otherwise; day 365 is
     * Dec 31 in a leap year and Jan 1 of the next otherwise */
    z = footer_zone("AAA-1BBB-3,59/0,365/0", &e);
    assert_non_null(z);
    assert_change(z, at(2028, 2, 28, 23, 0, 0), 3600, 3 * 3600);
    assert_change(z, at(2027, 2, 28, 23, 0, 0), 3600, 3 * 3600);
    assert_change(z, at(2028, 12, 30, 21, 0, 0), 3 * 3600, 3600);
    assert_change(z, at(2027, 12, 31, 21, 0, 0), 3 * 3600, 3600);
    tz_free(z);

    /* times beyond 24 h and negative ones, with minutes and seconds: DST from the second
     * Sunday of March at 26:30 (Monday 02:30 local, -03) to the first Sunday of November at
     * -1:15:30 (Saturday 22:44:30 local, -02) */
    z = footer_zone("<-03>3<-02>,M3.2.0/26:30,M11.1.0/-1:15:30", &e);
    assert_non_null(z);
    /* 2027: March 14 and November 7 are Sundays */
    assert_change(z, at(2027, 3, 15, 5, 30, 0), -3 * 3600, -2 * 3600);
    assert_change(z, at(2027, 11, 7, 0, 44, 30), -2 * 3600, -3 * 3600);
    tz_free(z);
    /* the hours' limit, 167 */
    z = footer_zone("AAA0BBB,M1.1.0/167,M12.5.0/-167", &e);
    assert_non_null(z);
    tz_free(z);

    /* the fifth week is the last: February 2026 has four Sundays */
    z = footer_zone("AAA0BBB,M2.5.0/0,M6.5.6/0", &e);
    assert_non_null(z);
    assert_change(z, at(2026, 2, 22, 0, 0, 0), 0, 3600);
    assert_change(z, at(2026, 6, 26, 23, 0, 0), 3600, 0); /* Saturday June 27, 00:00 DST */
    tz_free(z);

    /* refused */
    static const char *bad[] = {
        "CET-1CEST", /* a DST name without a rule */
        "CET",
        "CE-1",
        "<CE>-1",
        "<CET-1",
        "CET-25",
        "CET-1:60",
        "CET-1CEST,M3.5.0",
        "CET-1CEST,M13.1.0,M10.5.0",
        "CET-1CEST,M3.6.0,M10.5.0",
        "CET-1CEST,M3.5.7,M10.5.0",
        "CET-1CEST,M3.0.0,M10.5.0",
        "CET-1CEST,M3.5.0/168,M10.5.0",
        "CET-1CEST,J0,J300",
        "CET-1CEST,J366,J300",
        "CET-1CEST,366,300",
        "CET-1CEST,M3.5.0,M10.5.0,",
        "CET-1CEST,M3.5.0,M10.5.0x",
        "CET-1 ",
        "CET-1CEST-25,M3.5.0,M10.5.0",
        "C\tT-1",
        "1CET",
        "CET-1CEST,M3.5.0/,M10.5.0",
        "CET-1CEST,M3.5.0/2:,M10.5.0",
        "CET-0001",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct err e2 = ERR_INIT;
        z = footer_zone(bad[i], &e2);
        if (z) fail_msg("footer '%s' was taken", bad[i]);
        assert_int_equal(e2.code, ERR_INVALID);
        assert_string_equal(e2.field, "tz");
        assert_string_equal(e2.msg, "timezone: 'Test/Footer' is not a TZif file (bad footer)");
    }
}

static void test_versions(void **state)
{
    (void)state;
    /* the same transitions in versions 1 to 4; version 1 has no footer: the last type stays */
    int64_t ats[] = {-2000000000, 0, 1000000000, 2000000000};
    uint8_t idx[] = {1, 2, 1, 2};
    int32_t utoff[] = {561, 3600, 7200};
    for (int v = 1; v <= 4; v++) {
        struct spec s = {v, 4, ats, idx, 3, utoff, "", 0};
        struct bytes b = make_tzif(&s);
        struct tz *z = parse_ok(b.p, b.n);
        assert_offset(z, -2000000000LL * 1000 - 1, 561);
        assert_change(z, -2000000000LL * 1000, 561, 3600);
        assert_change(z, 0, 3600, 7200);
        assert_change(z, 1000000000LL * 1000, 7200, 3600);
        assert_offset(z, INT64_MAX, 7200);
        assert_true(tz_next_change(z, 2000000000LL * 1000) == INT64_MAX);
        tz_free(z);
        free(b.p);
    }
    /* transitions to the same offset are not changes; with a footer, it decides after the
     * last transition, even one that changes nothing */
    int64_t ats2[] = {0, 100, 200, at(2030, 1, 1, 0, 0, 0) / 1000};
    uint8_t idx2[] = {1, 2, 1, 1};
    int32_t utoff2[] = {3600, 3600, 7200};
    struct spec s = {2, 4, ats2, idx2, 3, utoff2, "AAA-1BBB,M3.5.0,M10.5.0/3", 0};
    struct bytes b = make_tzif(&s);
    struct tz *z = parse_ok(b.p, b.n);
    assert_true(tz_next_change(z, -1000000) == 100000);
    assert_true(tz_next_change(z, 100000) == 200000);
    assert_true(tz_next_change(z, 200000) == at(2030, 3, 31, 1, 0, 0));
    assert_offset(z, at(2030, 7, 1, 0, 0, 0), 7200);
    tz_free(z);
    free(b.p);
    /* 64-bit times beyond the 32-bit range, and at the ends of int64 (the big bang zic writes
     * at -2^59, and worse) */
    int64_t ats3[] = {INT64_MIN, -(INT64_C(1) << 59), INT64_C(1) << 40, INT64_MAX};
    uint8_t idx3[] = {1, 0, 1, 0};
    int32_t utoff3[] = {0, 3600};
    struct spec s3 = {2, 4, ats3, idx3, 2, utoff3, "", 0};
    b = make_tzif(&s3);
    z = parse_ok(b.p, b.n);
    assert_offset(z, INT64_MIN, 0); /* -2^59 s is long before -2^63 ms */
    assert_offset(z, 0, 0);
    assert_offset(z, INT64_MAX, 3600);
    assert_true(tz_next_change(z, INT64_MIN) == (INT64_C(1) << 40) * 1000);
    assert_true(tz_next_change(z, 0) == (INT64_C(1) << 40) * 1000);
    assert_true(tz_next_change(z, INT64_C(1) << 50) == INT64_MAX); /* INT64_MAX s: past ms */
    tz_free(z);
    free(b.p);
}

static void expect_refused(const char *name, const char *want)
{
    struct tz *z = (struct tz *)&z; /* not written on failure */
    struct tz *before = z;
    struct err e = ERR_INIT;
    int rc = tz_load(name, "spec.timezone", &z, &e);
    if (rc != ERR_INVALID) fail_msg("'%s' was taken (rc %d)", name ? name : "(null)", rc);
    assert_ptr_equal(z, before);
    assert_int_equal(e.code, ERR_INVALID);
    assert_string_equal(e.field, "spec.timezone");
    if (want[0] == '=' ? strcmp(e.msg, want + 1) != 0 : strstr(e.msg, want) == NULL)
        fail_msg("'%s': got \"%s\", want \"%s\"", name ? name : "(null)", e.msg, want);
}

static void test_refusals(void **state)
{
    (void)state;
    with_tzdir(NULL);
    static const char *not_names[] = {
        "",
        "/etc/passwd",
        "a/../b",
        "..",
        ".",
        "Europe/",
        "Europe//Paris",
        "/Europe/Paris",
        "Europe/./Paris",
        "a b",
        "Europe/Paris\n",
        "zone.tab",
        "Europe\\Paris",
        "~root",
        "0123456789012345678901234567890123456789012345678901234567890123x",
    };
    for (size_t i = 0; i < ARRAY_SIZE(not_names); i++)
        expect_refused(not_names[i], "is not a time zone name");
    expect_refused("a/../b",
                   "=timezone: 'a/../b' is not a time zone name (1-64 bytes of letters, digits, "
                   "'_', '+' and '-', in segments joined by '/', as in 'Europe/Paris')");
    expect_refused(NULL, "timezone: '' is not a time zone name");
    expect_refused("0123456789012345678901234567890123456789012345678901234567890123x",
                   "timezone: '0123456789012345678901234567890123456789012345678901234567890123"
                   "...' is not");
    /* 64 bytes is a name (that is not a zone) */
    expect_refused("Abcdefghijklmnopqrstuvwxyz/abcdefghijklmnopqrstuvwxyz/abcdefghij",
                   "=timezone: unknown time zone "
                   "'Abcdefghijklmnopqrstuvwxyz/abcdefghijklmnopqrstuvwxyz/abcdefghij'");
    expect_refused("Mars/Olympus", "=timezone: unknown time zone 'Mars/Olympus'");
    expect_refused("Europe/Paris/x", "=timezone: unknown time zone 'Europe/Paris/x'");
    expect_refused("Europe", "=timezone: unknown time zone 'Europe' (a folder of time zones)");
    expect_refused("europe/paris", "unknown time zone 'europe/paris'");
    struct stat st;
    if (stat(SYSTEM_ZONEINFO "/right/UTC", &st) == 0)
        expect_refused("right/UTC", "=timezone: '" SYSTEM_ZONEINFO "/right/UTC' counts leap "
                                    "seconds (a \"right/\" zone), which is not supported");

    /* files of our own under $TZDIR */
    char dir[128], path[256];
    snprintf(dir, sizeof(dir), "%s/zones", tmpdir);
    snprintf(path, sizeof(path), "%s/Bad", dir);
    assert_int_equal(mkdir(dir, 0700) == 0 || errno == EEXIST, 1);
    assert_int_equal(mkdir(path, 0700) == 0 || errno == EEXIST, 1);
    with_tzdir(dir);
    snprintf(path, sizeof(path), "%s/Bad/Text", dir);
    write_file(path, "Europe/Paris\n", 13);
    char want[512];
    snprintf(want, sizeof(want), "=timezone: '%s/Bad/Text' is not a TZif file (truncated header)",
             dir);
    expect_refused("Bad/Text", want);
    snprintf(path, sizeof(path), "%s/Bad/Empty", dir);
    write_file(path, "", 0);
    expect_refused("Bad/Empty", "is not a TZif file (truncated header)");
    snprintf(path, sizeof(path), "%s/Bad/Magic", dir);
    write_file(path, "TZjf2000000000000000000000000000000000000000000000000", 52);
    expect_refused("Bad/Magic", "is not a TZif file (bad magic)");
    int64_t ats[] = {0};
    uint8_t idx[] = {0};
    int32_t utoff[] = {0};
    struct spec leap = {2, 1, ats, idx, 1, utoff, "UTC0", 2};
    struct bytes b = make_tzif(&leap);
    snprintf(path, sizeof(path), "%s/Bad/Leap", dir);
    write_file(path, b.p, b.n);
    free(b.p);
    expect_refused("Bad/Leap", "counts leap seconds");
    snprintf(path, sizeof(path), "%s/Bad/Fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    expect_refused("Bad/Fifo", "is not a TZif file (not a regular file)");
    /* an unknown zone under $TZDIR, even one the system has; UTC is built in */
    expect_refused("Europe/Paris", "=timezone: unknown time zone 'Europe/Paris'");
    struct tz *z = load_ok("UTC");
    assert_offset(z, at(2026, 7, 1, 0, 0, 0), 0);
    tz_free(z);
    /* an empty $TZDIR is the system's */
    with_tzdir("");
    z = load_ok("Europe/Paris");
    tz_free(z);
    with_tzdir(NULL);
    /* e may be NULL */
    assert_int_equal(tz_load("Mars/Olympus", "f", &z, NULL), ERR_INVALID);
}

/* Checks what a zone that parsed says, so that ASan and UBSan see it used. */
static void probe(const struct tz *z)
{
    static const int64_t t[] = {INT64_MIN, -1, 0, INT64_C(1774746000000), INT64_C(4102444800000),
                                INT64_MAX};
    for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
        int off = tz_offset(z, t[i]);
        assert_true(off > -26 * 3600 && off < 26 * 3600);
        int64_t next = t[i], prev = t[i];
        for (int k = 0; k < 4 && next != INT64_MAX; k++) {
            next = tz_next_change(z, prev);
            assert_true(next > prev);
            prev = next;
        }
    }
}

/* Every truncation is refused; every byte flipped is refused or gives a sane zone. */
static void fuzz(const char *what, const uint8_t *data, size_t len)
{
    size_t refused = 0, taken = 0;
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exactly n: ASan sees any over-read */
        assert_non_null(copy);
        memcpy(copy, data, n);
        struct tz *z = NULL;
        struct err e = ERR_INIT;
        int rc = tz_parse("Fuzz", copy, n, "tz", &z, &e);
        if (rc != ERR_INVALID) fail_msg("%s cut at %zu bytes of %zu: taken", what, n, len);
        assert_null(z);
        assert_string_equal(e.field, "tz");
        free(copy);
    }
    static const uint8_t masks[] = {0x01, 0x10, 0x80, 0xff};
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    for (size_t i = 0; i < len; i++) {
        for (size_t m = 0; m < ARRAY_SIZE(masks); m++) {
            memcpy(copy, data, len);
            copy[i] ^= masks[m];
            struct tz *z = NULL;
            struct err e = ERR_INIT;
            int rc = tz_parse("Fuzz", copy, len, "tz", &z, &e);
            if (rc == 0) {
                probe(z);
                tz_free(z);
                taken++;
            } else {
                assert_int_equal(rc, ERR_INVALID);
                assert_null(z);
                refused++;
            }
        }
    }
    free(copy);
    print_message("%s: %zu bytes, %zu flips taken, %zu refused\n", what, len, taken, refused);
}

static void test_fuzz(void **state)
{
    (void)state;
    static const char *files[] = {"Europe/Paris", "America/New_York", "America/Nuuk",
                                  "Australia/Lord_Howe", "UTC"};
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        char path[256];
        size_t len;
        snprintf(path, sizeof(path), SYSTEM_ZONEINFO "/%s", files[i]);
        uint8_t *data = (uint8_t *)read_whole(path, &len);
        if (!data) fail_msg("cannot read %s", path);
        struct tz *z = parse_ok(data, len);
        tz_free(z);
        fuzz(files[i], data, len);
        free(data);
    }
    char path[256];
    size_t len;
    snprintf(path, sizeof(path), "%s/slim/Europe/Paris", tmpdir);
    uint8_t *data = (uint8_t *)read_whole(path, &len);
    if (data) { /* made by test_slim */
        fuzz("slim Europe/Paris", data, len);
        free(data);
    }
    int64_t ats[] = {-2000000000, 0, 1000000000};
    uint8_t idx[] = {1, 2, 1};
    int32_t utoff[] = {561, 3600, 7200};
    struct spec v1 = {1, 3, ats, idx, 3, utoff, "", 0};
    struct bytes b = make_tzif(&v1);
    fuzz("version 1", b.p, b.n);
    free(b.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utc),           cmocka_unit_test(test_paris),
        cmocka_unit_test(test_new_york),      cmocka_unit_test(test_odd_zones),
        cmocka_unit_test(test_against_glibc), cmocka_unit_test(test_slim),
        cmocka_unit_test(test_footers),       cmocka_unit_test(test_versions),
        cmocka_unit_test(test_refusals),      cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
