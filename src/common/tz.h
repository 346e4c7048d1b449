/*
 * tz.h - time zones from the system's tz database (TZif files, RFC 8536 / RFC 9636), for wall
 * clock schedules (cron.h) that must not depend on the process's TZ.
 *
 * glibc has no thread-safe per-zone conversion (localtime_r reads the process-wide TZ) and ICU
 * carries its own, older copy of the rules; this reads the zone files the system keeps up to
 * date. A zone is loaded once and is immutable afterwards: one struct tz may be used by any
 * number of threads at once, without locks. Nothing here reads TZ, calls tzset or keeps a
 * cache; loading the same zone twice reads its file twice.
 *
 * The file's version 2+ block (64-bit times) is used when there is one; after its last
 * transition the footer's POSIX TZ string ("CET-1CEST,M3.5.0,M10.5.0/3") gives the rule, which
 * is all that "slim" files (the tz project's default since 2020) have for recent years.
 * Offsets are whole seconds and lie within (-26 h, +26 h); instants are ms since the epoch, UTC.
 */
#ifndef DROVER_TZ_H
#define DROVER_TZ_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct tz; /* a zone's rules, immutable once loaded: safe to share between threads */

/*
 * Loads zone `name` ("Europe/Paris", "UTC", "America/New_York"): the TZif file of that name
 * under $TZDIR when it is set and not empty, else under /usr/share/zoneinfo. A name is 1-64
 * bytes of segments of [A-Za-z0-9_+-] joined by '/' (so no "." or ".." segment, no empty one,
 * no leading '/'). "UTC" is built in when its file is missing (containers without tzdata).
 * On success *out is the caller's, to release with tz_free; on failure it is not written.
 * Returns 0, or ERR_INVALID via err_field(e, ERR_INVALID, field, ...) with a message naming
 * what is wrong: "timezone: 'a/../b' is not a time zone name", "timezone: unknown time zone
 * 'Mars/Olympus'", "timezone: '/usr/share/zoneinfo/leapseconds' is not a TZif file (bad
 * magic)", "timezone: cannot read '...': <errno text>". Files with leap seconds ("right/"
 * zones) are refused (their times are not POSIX times). $TZDIR is read (getenv) at each call.
 */
int tz_load(const char *name, const char *field, struct tz **out, struct err *e);

/*
 * The same from the bytes of a TZif file (data, len: borrowed), for zones that do not come
 * from the file system and for tests. `name` (at most 64 bytes are kept) is what tz_name
 * returns and what messages call the data: "timezone: 'X' is not a TZif file (truncated data)".
 */
int tz_parse(const char *name, const void *data, size_t len, const char *field, struct tz **out,
             struct err *e);

void tz_free(struct tz *z); /* NULL is fine */

/* The name it was loaded with; lives as long as z. */
const char *tz_name(const struct tz *z);

/* The offset from UTC (seconds, east positive) in force at instant utc_ms. */
int tz_offset(const struct tz *z, int64_t utc_ms);

/*
 * The first instant after utc_ms (ms, UTC, a whole second) at which the offset changes
 * (tz_offset(z, t) != tz_offset(z, t - 1)), or INT64_MAX when it never changes again.
 * Transitions that change only the abbreviation or the DST flag are not changes. Bounded
 * work: a binary search, or the footer's rule for a few years.
 */
int64_t tz_next_change(const struct tz *z, int64_t utc_ms);

#endif
