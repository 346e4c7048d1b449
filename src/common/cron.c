/*
 * cron.c - see cron.h.
 *
 * A schedule is a bit set per field. cron_next breaks the time down into a proleptic
 * Gregorian UTC date (plain arithmetic, the same as gmtime_r/timegm, without time_t's range
 * or a libc call per step) and moves it forward field by field, month first: a field that
 * does not match jumps to its next allowed value and resets the fields below it. A day is
 * the only field stepped one at a time (at most 31 a month), so one call walks at most a few
 * thousand days to cover its 5-year horizon. cron_last_due finds a fire looking back in
 * growing windows and then bisects with cron_next, so a schedule of every second over years
 * costs a few dozen calls, never one per fire.
 *
 * In a time zone the same two run on wall-clock times (an instant plus its offset). A fire
 * time W happens at f(W), the first instant whose wall clock shows W or later; f never goes
 * backwards, so the first fire after instant A is f of the first match after M(A), the
 * highest wall clock time shown up to A (the clock at A unless it was set back and has not
 * caught up), and the last one up to N is f of the last match in (M(A), M(N)].
 */
#include "common/cron.h"
#include "common/timeutil.h"
#include "common/tz.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define CRON_MAX_TEXT 256
#define DAY_S 86400
/* How far cron_next looks: 5 years, whichever they are (at most 2 leap days in 5). */
#define HORIZON_S ((int64_t)(5 * 365 + 2) * DAY_S)
/* Times beyond year 9999 either way are refused, which keeps all the arithmetic far from
 * overflow. */
#define MAX_MS INT64_C(253402300799999)
/* "None" is -1, which is never a fire time (those are whole seconds): times before 1970 are
 * negative, so a result is told from none by == -1, never by its sign. */

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

struct cron_field_spec {
    const char *name; /* in messages */
    int lo, hi;
    const char *const *names; /* names[i] is lo + i */
    int n_names;
    bool question;    /* '?' allowed (the day fields) */
    const char *what; /* for an unknown name: "is not <what>" */
};

enum { F_SEC, F_MIN, F_HOUR, F_DOM, F_MON, F_DOW };

static const struct cron_field_spec specs[] = {
    [F_SEC] = {"second", 0, 59, NULL, 0, false, NULL},
    [F_MIN] = {"minute", 0, 59, NULL, 0, false, NULL},
    [F_HOUR] = {"hour", 0, 23, NULL, 0, false, NULL},
    [F_DOM] = {"day-of-month", 1, 31, NULL, 0, true, NULL},
    [F_MON] = {"month", 1, 12, month_names, 12, false, "a month (1-12 or JAN-DEC)"},
    [F_DOW] = {"day-of-week", 0, 7, day_names, 7, true, "a day of the week (0-7 or SUN-SAT)"},
};

static const struct {
    const char *name;
    const char *expansion;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* ---- parsing ---- */

/*
 * A value at *p: digits, or (for a field with names) exactly a name. Returns 0 and moves *p
 * past it; 1 for letters that are not a name; -1 when there is no value at all.
 */
static int parse_value(const struct cron_field_spec *f, const char **p, int *out)
{
    const char *s = *p;
    if (*s >= '0' && *s <= '9') {
        int v = 0;
        for (; *s >= '0' && *s <= '9'; s++)
            if (v < 10000) v = v * 10 + (*s - '0'); /* large stays large, without overflow */
        *out = v;
        *p = s;
        return 0;
    }
    size_t n = 0;
    while ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z'))
        n++;
    if (!n) return -1;
    for (int i = 0; i < f->n_names; i++) {
        if (n == strlen(f->names[i]) && !strncasecmp(s, f->names[i], n)) {
            *out = f->lo + i;
            *p = s + n;
            return 0;
        }
    }
    return 1;
}

/* One list item ("*", "5", "1-5", "*" "/15", "10-50/10", "5/15", "MON-FRI") into *bits. */
static int parse_item(const struct cron_field_spec *f, const char *item, uint64_t *bits,
                      const char *field, struct err *e)
{
    const char *p = item;
    int a, b, step = 1;
    if (*p == '*' || (*p == '?' && f->question)) {
        a = f->lo;
        b = f->hi;
        p++;
    } else if (*p == '?') {
        return err_field(e, ERR_INVALID, field,
                         "schedule: %s field '%s' is not valid ('?' is only for day-of-month and "
                         "day-of-week)",
                         f->name, item);
    } else {
        int rc = parse_value(f, &p, &a);
        if (rc > 0) goto unknown_name;
        if (rc < 0) goto bad;
        b = a;
        if (*p == '-') {
            p++;
            rc = parse_value(f, &p, &b);
            if (rc > 0) goto unknown_name;
            if (rc < 0) goto bad;
        } else if (*p == '/') {
            b = f->hi; /* "N/STEP": from N to the field's end */
        }
    }
    if (*p == '/') {
        p++;
        if (*p < '0' || *p > '9') goto bad;
        step = 0;
        for (; *p >= '0' && *p <= '9'; p++)
            if (step < 10000) step = step * 10 + (*p - '0');
        if (step == 0)
            return err_field(e, ERR_INVALID, field,
                             "schedule: %s field '%s' has step 0 (a step is 1 or more)", f->name,
                             item);
        /* Vixie takes any step; one past the field's span is a mistake (*\/61 for minutes). */
        if (step > f->hi - f->lo + 1)
            return err_field(e, ERR_INVALID, field,
                             "schedule: %s field '%s' has step %d, more than the %d values of "
                             "the field",
                             f->name, item, step, f->hi - f->lo + 1);
    }
    if (*p) goto bad;
    if (a < f->lo || a > f->hi || b < f->lo || b > f->hi)
        return err_field(e, ERR_INVALID, field, "schedule: %s field '%s' is out of range %d-%d",
                         f->name, item, f->lo, f->hi);
    if (a > b)
        return err_field(e, ERR_INVALID, field,
                         "schedule: %s field '%s' is a reversed range (%d is after %d)", f->name,
                         item, a, b);
    for (int v = a; v <= b; v += step)
        *bits |= UINT64_C(1) << v;
    return 0;

unknown_name:
    if (f->what)
        return err_field(e, ERR_INVALID, field, "schedule: %s field '%s' is not %s", f->name, item,
                         f->what);
bad:
    return err_field(e, ERR_INVALID, field,
                     "schedule: %s field '%s' is not valid (expected *, N or N-M, each with an "
                     "optional /STEP, in a comma-separated list)",
                     f->name, item);
}

/* A whole field, a comma-separated list (modified in place: the commas become NULs). */
static int parse_field(const struct cron_field_spec *f, char *text, uint64_t *bits, bool *any,
                       const char *field, struct err *e)
{
    /* Vixie's rule (cronie entry.c): a day field whose first character is '*' sets DOM_STAR /
     * DOW_STAR, whatever follows ("*" "/2" too), and a day then has to match both day fields
     * (the starred one matches every day when it is a plain '*'). Only when neither is starred
     * does a day match either field. robfig/cron differs here (a step clears its star bit);
     * crontab is the reference users know. */
    *any = text[0] == '*' || (text[0] == '?' && f->question);
    *bits = 0;
    char whole[CRON_MAX_TEXT + 1];
    snprintf(whole, sizeof(whole), "%s", text);
    for (char *item = text;;) {
        char *comma = strchr(item, ',');
        if (comma) *comma = '\0';
        if (!*item)
            return err_field(e, ERR_INVALID, field,
                             "schedule: %s field '%s' has an empty item in its list", f->name,
                             whole);
        int rc = parse_item(f, item, bits, field, e);
        if (rc) return rc;
        if (!comma) break;
        item = comma + 1;
    }
    return 0;
}

int cron_parse(const char *text, const char *field, struct cron *out, struct err *e)
{
    char buf[CRON_MAX_TEXT + 1];
    if (!text) text = "";
    if (strnlen(text, CRON_MAX_TEXT + 1) > CRON_MAX_TEXT)
        return err_field(e, ERR_INVALID, field, "schedule: longer than %d bytes", CRON_MAX_TEXT);
    snprintf(buf, sizeof(buf), "%s", text);

    char *tok[7];
    int n = 0;
    for (char *p = buf;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p) break;
        if (n < (int)ARRAY_SIZE(tok)) tok[n] = p;
        n++;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (*p) *p++ = '\0';
    }

    if (n >= 1 && tok[0][0] == '@') {
        if (!strcasecmp(tok[0], "@reboot"))
            return err_field(e, ERR_INVALID, field,
                             "schedule: @reboot is not supported (a schedule here needs fire "
                             "times)");
        for (size_t i = 0; i < ARRAY_SIZE(macros); i++) {
            if (strcasecmp(tok[0], macros[i].name)) continue;
            if (n > 1)
                return err_field(e, ERR_INVALID, field, "schedule: unexpected '%s' after %s",
                                 tok[1], tok[0]);
            return cron_parse(macros[i].expansion, field, out, e);
        }
        return err_field(e, ERR_INVALID, field,
                         "schedule: unknown macro '%s' (expected @yearly, @annually, @monthly, "
                         "@weekly, @daily, @midnight or @hourly)",
                         tok[0]);
    }
    if (n != 5 && n != 6)
        return err_field(e, ERR_INVALID, field,
                         "schedule: expected 5 fields (minute hour day-of-month month "
                         "day-of-week) or 6 (with seconds first), got %d",
                         n);

    struct cron c = {0};
    uint64_t bits[6] = {0};
    bool any[6] = {0};
    int first = n == 6 ? F_SEC : F_MIN;
    for (int i = first; i <= F_DOW; i++) {
        int rc = parse_field(&specs[i], tok[i - first], &bits[i], &any[i], field, e);
        if (rc) return rc;
    }
    c.seconds = n == 6;
    c.sec = c.seconds ? bits[F_SEC] : 1;
    c.min = bits[F_MIN];
    c.hour = (uint32_t)bits[F_HOUR];
    c.dom = (uint32_t)bits[F_DOM];
    c.mon = (uint32_t)bits[F_MON];
    c.dow = (uint8_t)((bits[F_DOW] | bits[F_DOW] >> 7) & 0x7f); /* 7 is Sunday, 0 */
    c.dom_any = any[F_DOM];
    c.dow_any = any[F_DOW];
    /* Only days can fail to exist (Feb 30, Apr 31); from 1970 the 5 years include a Feb 29. */
    if (cron_next(&c, 0) == -1)
        return err_field(e, ERR_INVALID, field,
                         "schedule: never fires (no date has its day-of-month in its months)");
    *out = c;
    return 0;
}

/* ---- fire times ---- */

/* The smallest value >= from whose bit is set, or -1. */
static int next_bit(uint64_t bits, int from)
{
    if (from > 63) return -1;
    uint64_t rest = bits & (~UINT64_C(0) << from);
    return rest ? __builtin_ctzll(rest) : -1;
}

static bool day_matches(const struct cron *c, int64_t y, int m, int d)
{
    int wday = (int)((time_days_from_civil(y, m, d) % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
    bool dom = c->dom >> d & 1, dow = c->dow >> wday & 1;
    if (c->dom_any || c->dow_any) return dom && dow; /* see parse_field */
    return dom || dow;
}

int64_t cron_next(const struct cron *c, int64_t after_ms)
{
    if (after_ms < -MAX_MS || after_ms > MAX_MS) return -1;
    int64_t after_s = time_floor_div(after_ms, 1000);
    int64_t t = after_s + 1; /* fire times are whole seconds */
    int64_t days = time_floor_div(t, DAY_S), rest = t - days * DAY_S;
    int64_t y;
    int m, d, h = (int)(rest / 3600), mi = (int)(rest / 60 % 60), s = (int)(rest % 60);
    time_civil_from_days(days, &y, &m, &d);
    int64_t last_year = y + 6; /* past the horizon whatever the date */

    for (;;) {
        if (y > last_year) return -1;
        if (!(c->mon >> m & 1)) {
            int nm = next_bit(c->mon, m + 1);
            if (nm < 0) {
                y++;
                nm = next_bit(c->mon, 1);
                if (nm < 0) return -1; /* no month at all: not from cron_parse */
            }
            m = nm;
            d = 1;
            h = mi = s = 0;
            continue;
        }
        int nh = day_matches(c, y, m, d) ? next_bit(c->hour, h) : -1;
        if (nh >= 0 && nh != h) {
            h = nh;
            mi = s = 0;
        }
        int nmi = nh >= 0 ? next_bit(c->min, mi) : -1;
        if (nmi >= 0 && nmi != mi) {
            mi = nmi;
            s = 0;
        }
        int ns = nmi >= 0 ? next_bit(c->sec, s) : -1;
        if (ns >= 0) {
            s = ns;
            break;
        }
        /* Nothing left at this level: carry into the one above, lower ones from zero. */
        s = 0;
        if (nh >= 0 && nmi >= 0 && ++mi < 60) continue;
        mi = 0;
        if (nh >= 0 && ++h < 24) continue;
        h = 0;
        if (++d <= time_month_days(y, m)) continue;
        d = 1;
        if (++m <= 12) continue;
        m = 1;
        y++;
    }
    int64_t fire = time_days_from_civil(y, m, d) * DAY_S + h * 3600 + mi * 60 + s;
    return fire - after_s > HORIZON_S ? -1 : fire * 1000;
}

int64_t cron_last_due(const struct cron *c, int64_t after_ms, int64_t now_ms)
{
    static const int64_t windows_s[] = {1, 60, 3600, DAY_S, 31 * DAY_S, 366 * DAY_S, HORIZON_S};
    if (after_ms >= now_ms || now_ms < -MAX_MS || now_ms > MAX_MS) return -1;
    /* lo: a fire is in (lo, now]; the smallest window back from now that has one. */
    int64_t lo = -1;
    bool found = false;
    for (size_t i = 0; i < ARRAY_SIZE(windows_s) && !found; i++) {
        lo = now_ms - windows_s[i] * 1000;
        bool last = lo <= after_ms;
        if (last) lo = after_ms;
        int64_t t = cron_next(c, lo);
        found = t != -1 && t <= now_ms;
        if (last && !found) return -1;
    }
    if (!found) return -1;
    /* hi: none is in (hi, now]. Halve [lo, hi] until it holds a single whole second: the one
     * fire it holds is the latest. Walking forward fire by fire could take millions of steps
     * (every second in January, asked in December). */
    int64_t hi = now_ms;
    while (hi - lo > 1000) {
        int64_t mid = lo + (hi - lo) / 2;
        int64_t t = cron_next(c, mid);
        if (t != -1 && t <= now_ms)
            lo = mid;
        else
            hi = mid;
    }
    return cron_next(c, lo);
}

/* ---- in a time zone ---- */

/* Offsets are within 26 hours either way (tz.h): the clock shows W only at instants within
 * 26 hours of W, and it can fall back by at most 52 hours. */
#define TZ_SPAN_MS (INT64_C(26) * 3600 * 1000)
/* Changes of offset looked at per call; real zones have at most a few in 52 hours. */
#define TZ_MAX_CHANGES 64

static int64_t wall_at(const struct tz *z, int64_t t)
{
    return t + (int64_t)tz_offset(z, t) * 1000;
}

/* M(t): the highest wall clock time shown at or before instant t. */
static int64_t wall_reached(const struct tz *z, int64_t t)
{
    int64_t w = wall_at(z, t), p = t - 2 * TZ_SPAN_MS;
    for (int i = 0; i < TZ_MAX_CHANGES; i++) {
        int64_t change = tz_next_change(z, p);
        if (change > t) break;
        int64_t before = wall_at(z, change - 1); /* the clock just before it was set */
        if (before > w) w = before;
        p = change;
    }
    return w;
}

/* f(w): the first instant whose wall clock shows w or later; -1 past TZ_MAX_CHANGES. */
static int64_t first_reaching(const struct tz *z, int64_t w)
{
    int64_t p = w - TZ_SPAN_MS;
    for (int i = 0; i < TZ_MAX_CHANGES; i++) {
        int64_t off = (int64_t)tz_offset(z, p) * 1000, end = tz_next_change(z, p);
        /* The offset holds on [p, end), where the clock shows p + off to end - 1 + off. */
        int64_t t = w - off > p ? w - off : p;
        if (t < end) return t;
        p = end;
    }
    return -1;
}

/*
 * A schedule of every hour follows the clock: it fires at each instant whose wall time
 * matches, so a repeated hour's times fire again and a gap's do not, as an interval's would.
 * The offset holds on segments between changes: within one the wall time is the instant
 * plus that offset, so cron_next and cron_last_due on wall times answer for it.
 */
#define ALL_HOURS 0xffffffu
#define CLOCK_SEGMENTS 64 /* changes of offset looked at per call: 5 years have ~10 */

static int64_t clock_next(const struct cron *c, const struct tz *z, int64_t after_ms)
{
    int64_t p = after_ms, from = wall_at(z, after_ms);
    for (int i = 0; i < CLOCK_SEGMENTS; i++) {
        int64_t off = (int64_t)tz_offset(z, p) * 1000, end = tz_next_change(z, p);
        int64_t w = cron_next(c, from);
        if (w == -1) return -1;
        if (end == INT64_MAX || w - off < end) return w - off;
        p = end; /* on in the next segment: from the wall time its first instant shows */
        from = wall_at(z, end) - 1;
    }
    return -1;
}

static int64_t clock_last_due(const struct cron *c, const struct tz *z, int64_t after_ms,
                              int64_t now_ms)
{
    int64_t start[CLOCK_SEGMENTS]; /* the segments' first instants, oldest first */
    int n = 0;
    if (after_ms < now_ms - (HORIZON_S + DAY_S) * 1000) /* cron_last_due looks no further */
        after_ms = now_ms - (HORIZON_S + DAY_S) * 1000;
    start[n++] = after_ms + 1;
    for (int64_t ch = tz_next_change(z, after_ms); ch <= now_ms; ch = tz_next_change(z, ch)) {
        if (n == CLOCK_SEGMENTS) { /* the oldest go: cron_last_due looks back 5 years only */
            memmove(start, start + 1, (CLOCK_SEGMENTS - 1) * sizeof(*start));
            n--;
        }
        start[n++] = ch;
    }
    int64_t hi = now_ms;
    for (int i = n - 1; i >= 0; i--) {
        int64_t off = (int64_t)tz_offset(z, start[i]) * 1000;
        int64_t w = cron_last_due(c, start[i] - 1 + off, hi + off);
        if (w != -1) return w - off;
        hi = start[i] - 1;
    }
    return -1;
}

int64_t cron_next_tz(const struct cron *c, const struct tz *z, int64_t after_ms)
{
    if (!z) return cron_next(c, after_ms);
    if (after_ms < -MAX_MS || after_ms > MAX_MS) return -1;
    if ((c->hour & ALL_HOURS) == ALL_HOURS) return clock_next(c, z, after_ms);
    int64_t w = cron_next(c, wall_reached(z, after_ms));
    return w == -1 ? -1 : first_reaching(z, w);
}

int64_t cron_last_due_tz(const struct cron *c, const struct tz *z, int64_t after_ms, int64_t now_ms)
{
    if (!z) return cron_last_due(c, after_ms, now_ms);
    if (after_ms >= now_ms || now_ms < -MAX_MS || now_ms > MAX_MS) return -1;
    if ((c->hour & ALL_HOURS) == ALL_HOURS) return clock_last_due(c, z, after_ms, now_ms);
    int64_t from = after_ms < -MAX_MS ? after_ms : wall_reached(z, after_ms);
    int64_t w = cron_last_due(c, from, wall_reached(z, now_ms));
    return w == -1 ? -1 : first_reaching(z, w);
}
