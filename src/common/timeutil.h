/* timeutil.h - clocks and the RFC 3339 format of the API ("2026-11-24T12:20:59.258Z"). */
#ifndef DROVER_TIMEUTIL_H
#define DROVER_TIMEUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wall clock, milliseconds since the epoch. */
int64_t time_now_ms(void);
/* Monotonic clock, nanoseconds. */
int64_t time_mono_ns(void);
/* RFC 3339 UTC with milliseconds into out (at least 25 bytes). */
void time_format_rfc3339(int64_t ms, char *out, size_t n);
/* The other way: "YYYY-MM-DDTHH:MM:SS[.fff]Z" (UTC only) into ms; false when malformed or
   when the date or time does not exist (2026-02-29, 24:00:00). */
bool time_parse_rfc3339(const char *s, int64_t *ms);

/*
 * The proleptic Gregorian calendar in integers (Howard Hinnant's algorithms), for any year
 * an int64_t holds, without time_t's limits or a libc call: the days since 1970-01-01 of a
 * date, the date of such a day, leap years, months' lengths, and a division rounding down.
 */
int64_t time_days_from_civil(int64_t y, int m, int d);
void time_civil_from_days(int64_t days, int64_t *y, int *m, int *d);
bool time_is_leap(int64_t y);
int time_month_days(int64_t y, int m); /* 28-31 */
int64_t time_floor_div(int64_t a, int64_t b);
/* Local "YYYY-MM-DD HH:MM:SS.mmm" for logs. */
void time_format_local(int64_t ms, char *out, size_t n);

#endif
