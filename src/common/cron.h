/*
 * cron.h - cron schedules ("0,30 9-17 * * MON-FRI", "@daily"), parsed once into a struct, and
 * their fire times, in UTC or, with the _tz functions, in a time zone (tz.h).
 *
 * The syntax is Vixie cron's, as crontab(5), Kubernetes CronJob, Celery beat's crontab and
 * Oban Cron take it:
 *
 *     minute(0-59) hour(0-23) day-of-month(1-31) month(1-12 or JAN-DEC) day-of-week(0-7 or SUN-SAT)
 *
 * or six fields, seconds (0-59) first (the Quartz / Spring / robfig "with seconds" form). Each
 * field is a comma-separated list of `*`, `N` or `N-M`, each with an optional `/STEP`
 * (`N/STEP` is `N-max/STEP`); names are case-insensitive, 0 and 7 are both Sunday, and `?` is
 * `*` in the two day fields. Macros: @yearly @annually @monthly @weekly @daily @midnight
 * @hourly. When both day fields are restricted a day matches either (the Vixie rule); a day
 * field that begins with `*` or `?`, even with a step (as in Vixie cron), is not restricted:
 * then a day must match both fields, which leaves the other one to decide.
 */
#ifndef DROVER_CRON_H
#define DROVER_CRON_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

struct tz;

/* One bit per allowed value: bit N set when the value N matches. */
struct cron {
    uint64_t sec, min; /* 0-59; sec is just bit 0 for a five-field schedule */
    uint32_t hour;     /* 0-23 */
    uint32_t dom;      /* 1-31 */
    uint32_t mon;      /* 1-12 */
    uint8_t dow;       /* 0-6, Sunday 0 (a 7 in the text is bit 0) */
    bool dom_any;      /* the day-of-month field began with '*' or '?' */
    bool dow_any;      /* the day-of-week field began with '*' or '?' */
    bool seconds;      /* six fields: the schedule has a seconds field */
};

/*
 * Parses `text` (at most 256 bytes) into *out, which is written only on success. 0, or
 * ERR_INVALID with `field` as the error's field path and a message that names the cron field
 * and the text at fault ("schedule: minute field '61' is out of range 0-59"). A schedule that
 * never fires ("0 0 30 2 *") is refused ("schedule: never fires ..."), and so is @reboot.
 */
int cron_parse(const char *text, const char *field, struct cron *out, struct err *e);

/*
 * The first fire time strictly after `after_ms` (ms since the epoch, UTC), in ms: a whole
 * second (a whole minute for five fields). -1 when there is none within 5 years: Feb 29 from
 * March 2096 has none, 2100 not being a leap year. Bounded work: it jumps from field to field,
 * never steps second by second.
 */
int64_t cron_next(const struct cron *c, int64_t after_ms);

/*
 * The latest fire time <= now_ms that is > after_ms (the one run owed after a pause, however
 * many were missed), or -1 when there is none: after_ms >= now_ms, or no fire in between.
 * Looks back at most 5 years from now_ms. Bounded work whatever the gap (a few dozen
 * cron_next calls).
 */
int64_t cron_last_due(const struct cron *c, int64_t after_ms, int64_t now_ms);

/*
 * Time zones (tz.h). These two read the fields as wall-clock time in zone z; with z NULL they
 * are cron_next and cron_last_due (UTC). At changes of offset (DST), as cronie does:
 *  - a schedule at fixed hours fires at the first instant at which the zone's clock shows a
 *    matching time or a later one: a time the clock skips (02:30 on the night Europe/Paris
 *    goes from 02:00 to 03:00) fires once, at the first instant after the gap (03:00 local),
 *    not never, and the matching times of one gap fire once, together, then; a time the
 *    clock shows twice (02:30 when it goes back from 03:00 to 02:00) fires once, at its first
 *    occurrence;
 *  - a schedule of every hour (its hour field covers 0-23: "*\/30 * * * *", @hourly) follows
 *    the clock: it fires at each instant whose wall time matches, so the repeated hour's times
 *    fire again and the skipped hour's do not (every 30 real minutes through both nights).
 * Results are instants, ms since the epoch (UTC): strictly after after_ms for cron_next_tz,
 * within (after_ms, now_ms] for cron_last_due_tz, -1 when there is none within 5 years.
 * Bounded work: a few cron_next or cron_last_due calls on wall-clock times (one per change of
 * offset in the span, for a schedule of every hour), and a few look-ups in z.
 * The zone is only read: any number of threads may share it.
 */
int64_t cron_next_tz(const struct cron *c, const struct tz *z, int64_t after_ms);
int64_t cron_last_due_tz(const struct cron *c, const struct tz *z, int64_t after_ms,
                         int64_t now_ms);

#endif
