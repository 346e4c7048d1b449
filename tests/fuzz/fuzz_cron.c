/*
 * fuzz_cron.c - cron schedules (a trigger's or a schedule's "schedule"): cron_parse, then
 * the fire times of what it accepts, in UTC and in a zone with DST.
 *
 * Input: the first 8 bytes are an instant (ms), the rest the schedule's text. Checks: an
 * error is ERR_INVALID with a message; cron_next is strictly after, a whole second, and
 * again after itself; cron_last_due is in (after, now]; the _tz forms hold the same bounds.
 */
#include <string.h>

#include "common/cron.h"
#include "common/tz.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct tz *zone;
    if (!zone) {
        unsigned char tzif[256];
        size_t n = fuzz_tzif_footer("CET-1CEST,M3.5.0,M10.5.0/3", tzif, sizeof(tzif));
        struct err ze = ERR_INIT;
        if (tz_parse("Europe/Paris", tzif, n, "timezone", &zone, &ze)) {
            fprintf(stderr, "fuzz_cron: the test zone does not load: %s\n", ze.msg);
            abort();
        }
    }
    if (size < 8) return 0;
    int64_t t;
    memcpy(&t, data, 8);
    /* instants the server may see: 1900..2200 */
    const int64_t lo = -2208988800000LL, span = 9467280000000LL;
    t = lo + (int64_t)((uint64_t)t % (uint64_t)span);
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
    FUZZ_CHECK(nz == -1 || nz > t);
    int64_t dz = cron_last_due_tz(&c, zone, t, now);
    FUZZ_CHECK(dz == -1 || (dz > t && dz <= now));
    FUZZ_CHECK(cron_next_tz(&c, NULL, t) == n);
    return 0;
}
