/*
 * fuzz_cron.c - cron schedules (a trigger's or a schedule's "schedule"): cron_parse, then
 * the fire times of what it accepts, in UTC and in a zone with DST.
 *
 * Input: the first 8 bytes are an instant (ms) and a zone, the rest the schedule's text.
 * Checks: an error is ERR_INVALID with a message; cron_next is strictly after, a whole
 * second, again after itself, and what cron_last_due finds up to it; cron_last_due is in
 * (after, now] and not before the next fire; the _tz forms agree with each other the same way.
 */
#include <string.h>

#include "common/cron.h"
#include "common/tz.h"
#include "fuzz.h"

/* Zones as footers (the rule alone): DST in spring, in the south, of 30 minutes, negative
   (Europe/Dublin's winter time), none. */
static const char *const rules[] = {"CET-1CEST,M3.5.0,M10.5.0/3",
                                    "EST5EDT,M3.2.0,M11.1.0",
                                    "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
                                    "IST-1GMT0,M10.5.0,M3.5.0/1",
                                    "<-03>3",
                                    "<+0545>-5:45"};
#define NZONES (sizeof(rules) / sizeof(rules[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct tz *zones[NZONES];
    if (!zones[0]) {
        for (size_t i = 0; i < NZONES; i++) {
            unsigned char tzif[256];
            size_t n = fuzz_tzif_footer(rules[i], tzif, sizeof(tzif));
            struct err ze = ERR_INIT;
            if (tz_parse("Fuzz/Zone", tzif, n, "timezone", &zones[i], &ze)) {
                fprintf(stderr, "fuzz_cron: test zone '%s' does not load: %s\n", rules[i], ze.msg);
                abort();
            }
        }
    }
    if (size < 8) return 0;
    uint64_t raw;
    memcpy(&raw, data, 8);
    /* instants the server may see: 1900..2200; the zone from the top byte */
    const int64_t lo = -2208988800000LL, span = 9467280000000LL;
    int64_t t = lo + (int64_t)(raw % (uint64_t)span);
    const struct tz *zone = zones[(raw >> 56) % NZONES];
    char *text = fuzz_cstr(data + 8, size - 8);
    if (!text) return 0;

    struct cron c;
    struct err e = ERR_INIT;
    int rc = cron_parse(text, "schedule", &c, &e);
    free(text);
    if (rc) {
        FUZZ_CHECK(rc == ERR_INVALID && e.msg[0]);
        return 0;
    }
    int64_t unit = c.seconds ? 1000 : 60000;
    int64_t n = cron_next(&c, t);
    FUZZ_CHECK(n == -1 || (n > t && n % unit == 0));
    if (n != -1) {
        FUZZ_CHECK(cron_last_due(&c, t, n) == n); /* the only fire in (t, n] */
        int64_t n2 = cron_next(&c, n);
        FUZZ_CHECK(n2 == -1 || n2 > n);
        /* the fire just before n2 is n */
        if (n2 != -1) FUZZ_CHECK(cron_last_due(&c, t, n2 - 1) == n);
    }
    int64_t now = t + 86400000LL * 40;
    int64_t d = cron_last_due(&c, t, now);
    FUZZ_CHECK(d == -1 || (d > t && d <= now));
    if (d != -1) FUZZ_CHECK(n != -1 && n <= d);

    int64_t nz = cron_next_tz(&c, zone, t);
    FUZZ_CHECK(nz == -1 || (nz > t && nz % 1000 == 0));
    if (nz != -1) FUZZ_CHECK(cron_last_due_tz(&c, zone, t, nz) == nz);
    int64_t dz = cron_last_due_tz(&c, zone, t, now);
    FUZZ_CHECK(dz == -1 || (dz > t && dz <= now));
    if (dz != -1) FUZZ_CHECK(nz != -1 && nz <= dz);
    FUZZ_CHECK(cron_next_tz(&c, NULL, t) == n);
    return 0;
}
