/*
 * fuzz_tz.c - time zones: TZif data (tz_parse, with its POSIX TZ footer), and zone names
 * (tz_load, which turns a name into a path under the zone folder).
 *
 * Input: first byte 'N': the rest is a zone name for tz_load; else the rest is TZif data
 * (first byte 'F': the rest is only a footer, put in a minimal v2 file).
 * Checks: refusals are ERR_INVALID naming the field; a name that loads has no "." or ".."
 * segment and no leading '/'; a zone's offsets lie within (-26 h, +26 h), its next change is
 * a whole second after the instant, at which the offset does change, and lookups before and
 * after agree with it.
 */
#include <string.h>

#include "common/tz.h"
#include "fuzz.h"

static void probe(const struct tz *z)
{
    static const int64_t at[] = {
        INT64_MIN / 2,   -2208988800000LL,  -1,           0, 1, 1711846800000LL, 1729990800000LL,
        4102444800000LL, 253402300800000LL, INT64_MAX / 2};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        int off = tz_offset(z, at[i]);
        FUZZ_CHECK(off > -26 * 3600 && off < 26 * 3600);
        int64_t n = tz_next_change(z, at[i]);
        if (n == INT64_MAX) continue;
        FUZZ_CHECK(n > at[i] && n % 1000 == 0);
        FUZZ_CHECK(tz_offset(z, n) != tz_offset(z, n - 1));
        /* nothing changes in between */
        if (n - at[i] > 1) FUZZ_CHECK(tz_offset(z, n - 1) == off);
    }
    FUZZ_CHECK(tz_name(z) != NULL);
}

static int dotted(const char *name)
{
    if (name[0] == '/') return 1;
    for (const char *p = name; *p;) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) return 1;
        p += n + (end ? 1 : 0);
        if (end && !*p) return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    struct tz *z = NULL;
    struct err e = ERR_INIT;
    int rc;
    if (data[0] == 'N') {
        char *name = fuzz_cstr(data + 1, size - 1);
        if (!name) return 0;
        rc = tz_load(name, "timezone", &z, &e);
        if (!rc) FUZZ_CHECK(!dotted(name) && strlen(name) <= 64);
        free(name);
    } else if (data[0] == 'F') {
        char *footer = fuzz_cstr(data + 1, size - 1);
        if (!footer || size > 300) {
            free(footer);
            return 0;
        }
        unsigned char tzif[512];
        size_t n = fuzz_tzif_footer(footer, tzif, sizeof(tzif));
        free(footer);
        rc = tz_parse("Fuzz/Footer", tzif, n, "timezone", &z, &e);
    } else {
        rc = tz_parse("Fuzz/Data", data + 1, size - 1, "timezone", &z, &e);
    }
    if (rc) {
        FUZZ_CHECK(rc == ERR_INVALID && e.msg[0] && !strcmp(e.field, "timezone") && !z);
        return 0;
    }
    probe(z);
    tz_free(z);
    return 0;
}
