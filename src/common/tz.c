/*
 * tz.c - see tz.h.
 *
 * A loaded zone keeps only what offsets need: the instants at which the UTC offset changes
 * (transitions that change only the abbreviation or the DST flag are dropped, so any two
 * neighbours differ), the offset before the first one (local time type 0, RFC 8536 3.2), and
 * the footer's rule, in force from the file's last transition on (or always, when the file
 * has none). A file is read whole (at most 256 KiB) and every read of it goes through a
 * cursor bounded by the bytes read, so a truncated or corrupt file is refused, never
 * over-read. The footer's rule is evaluated as tzcode does: the rule's transitions for the
 * few years around an instant, in order, the last one at or before it deciding.
 */
#include "common/tz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "common/xalloc.h"

#define TZ_NAME_MAX 64
#define TZ_FILE_MAX (256 * 1024) /* real files are under 4 KiB (fat), 1.5 KiB (slim) */
#define TZ_FOOTER_MAX 256
#define DAY_S 86400
/* RFC 9636 3.2: utoff is within [-89999, 93599] (-24:59:59 to 25:59:59). */
#define UTOFF_MIN (-89999)
#define UTOFF_MAX 93599
/* The seconds whose ms fit in an int64_t; the footer is never evaluated past them, which
 * keeps its year arithmetic far from overflow. */
#define MAX_S (INT64_MAX / 1000)

enum rule_kind {
    RULE_JULIAN1, /* Jn: day n of 1-365, Feb 29 never counted */
    RULE_JULIAN0, /* n: day n of 0-365, Feb 29 counted */
    RULE_MONTH,   /* Mm.w.d: day d (0 Sunday) of week w (5: the last) of month m */
};

struct tz_rule {
    enum rule_kind kind;
    int n, m, w, d;
    int32_t time; /* seconds after local midnight, -167 h to 167 h (RFC 8536 3.3.1) */
};

struct tz {
    char name[TZ_NAME_MAX + 1];
    int32_t off0; /* before at[0] */
    size_t n;
    int64_t *at;  /* ascending, seconds: off[i] is in force from at[i] */
    int32_t *off; /* off[i] != off[i - 1], off[0] != off0 */
    bool footer;  /* a non-empty footer, in force from footer_from on */
    bool dst;     /* ... with a DST rule (start, end); without, std_off all along */
    int64_t footer_from;
    int32_t std_off, dst_off; /* east positive, unlike the TZ string's */
    struct tz_rule start, end;
};

/* ---- dates ---- */

/* The year of a day since 1970-01-01. */
static int64_t year_from_days(int64_t days)
{
    int64_t y;
    int m, d;
    time_civil_from_days(days, &y, &m, &d);
    return y;
}

/* ---- the footer's rule ---- */

/* The local date and time at which rule r falls in year y, as seconds since the epoch. */
static int64_t rule_local(const struct tz_rule *r, int64_t y)
{
    int64_t day;
    if (r->kind == RULE_JULIAN1) {
        day = time_days_from_civil(y, 1, 1) + r->n - 1 + (time_is_leap(y) && r->n >= 60);
    } else if (r->kind == RULE_JULIAN0) {
        day = time_days_from_civil(y, 1, 1) + r->n;
    } else {
        int64_t first = time_days_from_civil(y, r->m, 1);
        int wday = (int)((first % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
        day = first + (r->d - wday + 7) % 7 + 7 * (r->w - 1);
        while (day >= first + time_month_days(y, r->m)) /* week 5: the last such day */
            day -= 7;
    }
    return day * DAY_S + r->time;
}

struct rule_event {
    int64_t at; /* UTC seconds */
    bool dst;   /* DST starts (else ends) */
};

#define RULE_YEARS 5
#define RULE_EVENTS (2 * RULE_YEARS)

/*
 * The rule's events in years y - 2 to y + 2, in order. At a tie the end of DST sorts before
 * the start, so that DST from Jan 1 00:00 to Dec 31 24:00 (+ the DST shift) is DST all year
 * (RFC 8536 3.3.1: "EST5EDT,0/0,J365/25").
 */
static void rule_events(const struct tz *z, int64_t y, struct rule_event ev[RULE_EVENTS])
{
    for (int i = 0; i < RULE_YEARS; i++) {
        ev[2 * i] = (struct rule_event){rule_local(&z->start, y - 2 + i) - z->std_off, true};
        ev[2 * i + 1] = (struct rule_event){rule_local(&z->end, y - 2 + i) - z->dst_off, false};
    }
    for (int i = 1; i < RULE_EVENTS; i++) {
        struct rule_event x = ev[i];
        int j = i;
        for (; j > 0 && (ev[j - 1].at > x.at || (ev[j - 1].at == x.at && ev[j - 1].dst > x.dst));
             j--)
            ev[j] = ev[j - 1];
        ev[j] = x;
    }
}

/* The year that holds local standard time at instant s. */
static int64_t rule_year(const struct tz *z, int64_t s)
{
    return year_from_days(time_floor_div(s + z->std_off, DAY_S));
}

/* The footer's offset at s (at most MAX_S in magnitude, give or take a day). */
static int32_t rule_offset(const struct tz *z, int64_t s)
{
    if (!z->dst) return z->std_off;
    struct rule_event ev[RULE_EVENTS];
    rule_events(z, rule_year(z, s), ev);
    bool dst = false;
    for (int i = 0; i < RULE_EVENTS && ev[i].at <= s; i++)
        dst = ev[i].dst;
    return dst ? z->dst_off : z->std_off;
}

/* ---- offsets ---- */

/* The number of changes at or before s. */
static size_t changes_until(const struct tz *z, int64_t s)
{
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->at[mid] <= s)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int32_t offset_at(const struct tz *z, int64_t s)
{
    if (z->footer && s >= z->footer_from) return rule_offset(z, s);
    size_t i = changes_until(z, s);
    return i ? z->off[i - 1] : z->off0;
}

int tz_offset(const struct tz *z, int64_t utc_ms)
{
    return offset_at(z, time_floor_div(utc_ms, 1000));
}

/* The first second > t at which offset_at changes, or INT64_MAX. */
static int64_t next_change_s(const struct tz *z, int64_t t)
{
    if (!z->footer || t < z->footer_from) {
        size_t i = changes_until(z, t);
        if (i < z->n && (!z->footer || z->at[i] < z->footer_from)) return z->at[i];
        if (!z->footer || z->footer_from > MAX_S) return INT64_MAX;
        if (offset_at(z, z->footer_from) != offset_at(z, z->footer_from - 1)) return z->footer_from;
        t = z->footer_from;
    }
    if (!z->dst || t > MAX_S) return INT64_MAX;
    /* The rule changes nothing but at its events: try those after t, from two windows of five
     * years (a rule can leave a year without a change, DST all year leaves all of them). */
    struct rule_event ev[2 * RULE_EVENTS];
    int64_t y = rule_year(z, t);
    rule_events(z, y, ev);
    rule_events(z, y + RULE_YEARS, ev + RULE_EVENTS);
    int64_t last = t;
    for (;;) {
        int64_t c = INT64_MAX; /* the next event after `last` */
        for (size_t i = 0; i < ARRAY_SIZE(ev); i++)
            if (ev[i].at > last && ev[i].at < c) c = ev[i].at;
        if (c == INT64_MAX || c > MAX_S) return INT64_MAX;
        if (rule_offset(z, c) != rule_offset(z, c - 1)) return c;
        last = c;
    }
}

int64_t tz_next_change(const struct tz *z, int64_t utc_ms)
{
    int64_t s = next_change_s(z, time_floor_div(utc_ms, 1000));
    return s > MAX_S ? INT64_MAX : s * 1000;
}

const char *tz_name(const struct tz *z)
{
    return z->name;
}

void tz_free(struct tz *z)
{
    if (!z) return;
    free(z->at);
    free(z->off);
    free(z);
}

/* ---- the footer's TZ string ---- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* An abbreviation: 3 or more letters, or <3 or more of [A-Za-z0-9+-]>. */
static bool parse_abbr(const char **s)
{
    const char *p = *s, *from;
    if (*p == '<') {
        from = ++p;
        while (is_alpha(*p) || is_digit(*p) || *p == '+' || *p == '-')
            p++;
        if (p - from < 3 || *p != '>') return false;
        p++;
    } else {
        from = p;
        while (is_alpha(*p))
            p++;
        if (p - from < 3) return false;
    }
    *s = p;
    return true;
}

/* Up to `max` digits of a number of at most `hi`. */
static bool parse_num(const char **s, int max, int hi, int *out)
{
    const char *p = *s;
    int v = 0;
    for (; is_digit(*p) && p - *s < max; p++)
        v = v * 10 + (*p - '0');
    if (p == *s || is_digit(*p) || v > hi) return false;
    *s = p;
    *out = v;
    return true;
}

/* [+-]h[h[h]][:mm[:ss]] with hours at most max_h, in seconds. */
static bool parse_hms(const char **s, int max_h, int32_t *out)
{
    const char *p = *s;
    int sign = 1, h, m = 0, sec = 0;
    if (*p == '+' || *p == '-') sign = *p++ == '-' ? -1 : 1;
    if (!parse_num(&p, 3, max_h, &h)) return false;
    if (*p == ':') {
        p++;
        if (!parse_num(&p, 2, 59, &m)) return false;
        if (*p == ':') {
            p++;
            if (!parse_num(&p, 2, 59, &sec)) return false;
        }
    }
    *s = p;
    *out = sign * (h * 3600 + m * 60 + sec);
    return true;
}

/* Jn, n or Mm.w.d, then an optional /time (default 02:00). */
static bool parse_rule(const char **s, struct tz_rule *r)
{
    const char *p = *s;
    if (*p == 'J') {
        p++;
        r->kind = RULE_JULIAN1;
        if (!parse_num(&p, 3, 365, &r->n) || r->n < 1) return false;
    } else if (*p == 'M') {
        p++;
        r->kind = RULE_MONTH;
        if (!parse_num(&p, 2, 12, &r->m) || r->m < 1 || *p++ != '.') return false;
        if (!parse_num(&p, 1, 5, &r->w) || r->w < 1 || *p++ != '.') return false;
        if (!parse_num(&p, 1, 6, &r->d)) return false;
    } else {
        r->kind = RULE_JULIAN0;
        if (!parse_num(&p, 3, 365, &r->n)) return false;
    }
    r->time = 2 * 3600;
    if (*p == '/') {
        p++;
        if (!parse_hms(&p, 167, &r->time)) return false;
    }
    *s = p;
    return true;
}

/* std offset [dst [offset] ,rule,rule]: POSIX, with RFC 8536's 3.3.1 extensions (hours of
 * a rule's time from -167 to 167). A DST name without a rule is refused: zic never writes
 * one, and POSIX leaves its meaning to the implementation. */
static bool parse_footer(const char *s, struct tz *z)
{
    int32_t std, dst;
    if (!parse_abbr(&s) || !parse_hms(&s, 24, &std)) return false;
    z->std_off = -std; /* POSIX counts west positive */
    z->footer = true;
    if (!*s) return true;
    if (!parse_abbr(&s)) return false;
    dst = std - 3600;
    if (*s && *s != ',' && !parse_hms(&s, 24, &dst)) return false;
    z->dst_off = -dst;
    if (*s++ != ',' || !parse_rule(&s, &z->start) || *s++ != ',' || !parse_rule(&s, &z->end) || *s)
        return false;
    if (z->dst_off < UTOFF_MIN || z->dst_off > UTOFF_MAX) return false;
    z->dst = true;
    return true;
}

/* ---- TZif ---- */

struct cursor {
    const uint8_t *p;
    size_t len, off;
};

static const uint8_t *take(struct cursor *c, uint64_t n)
{
    if (n > c->len - c->off) return NULL;
    const uint8_t *p = c->p + c->off;
    c->off += (size_t)n;
    return p;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct header {
    int version; /* 1-4 */
    uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static const char *const LEAP_SECONDS = "leap seconds";

static const char *read_header(struct cursor *c, struct header *h)
{
    const uint8_t *p = take(c, 44);
    if (!p) return "truncated header";
    if (memcmp(p, "TZif", 4)) return "bad magic";
    if (p[4] == 0)
        h->version = 1;
    else if (p[4] >= '2' && p[4] <= '4')
        h->version = p[4] - '0';
    else
        return "unknown version";
    h->isutcnt = be32(p + 20);
    h->isstdcnt = be32(p + 24);
    h->leapcnt = be32(p + 28);
    h->timecnt = be32(p + 32);
    h->typecnt = be32(p + 36);
    h->charcnt = be32(p + 40);
    return NULL;
}

/* Bytes of the data block after a header, times being `ts` bytes. */
static uint64_t block_size(const struct header *h, unsigned ts)
{
    return (uint64_t)h->timecnt * (ts + 1) + (uint64_t)h->typecnt * 6 + h->charcnt +
           (uint64_t)h->leapcnt * (ts + 4) + h->isstdcnt + h->isutcnt;
}

/* The data block (RFC 8536 3.2) into z's changes. */
static const char *read_block(struct cursor *c, const struct header *h, unsigned ts, struct tz *z)
{
    if (block_size(h, ts) > c->len - c->off) return "truncated data";
    if (h->leapcnt) return LEAP_SECONDS;
    if (h->typecnt == 0 || h->typecnt > 256) return "bad number of local time types";
    if ((h->isutcnt && h->isutcnt != h->typecnt) || (h->isstdcnt && h->isstdcnt != h->typecnt))
        return "bad number of indicators";
    const uint8_t *times = take(c, (uint64_t)h->timecnt * ts);
    const uint8_t *idx = take(c, h->timecnt);
    const uint8_t *types = take(c, (uint64_t)h->typecnt * 6);
    if (!take(c, (uint64_t)h->charcnt + h->isstdcnt + h->isutcnt)) return "truncated data";

    int32_t utoff[256];
    for (uint32_t i = 0; i < h->typecnt; i++) {
        const uint8_t *t = types + 6 * i;
        utoff[i] = (int32_t)be32(t);
        if (utoff[i] < UTOFF_MIN || utoff[i] > UTOFF_MAX) return "UT offset out of range";
        if (t[4] > 1) return "bad DST flag";
        if (t[5] >= h->charcnt) return "bad abbreviation index";
    }
    z->off0 = utoff[0];
    z->at = xmalloc(((size_t)h->timecnt + 1) * sizeof(*z->at));
    z->off = xmalloc(((size_t)h->timecnt + 1) * sizeof(*z->off));
    z->n = 0;
    int32_t prev = z->off0;
    int64_t last = INT64_MIN; /* the footer takes over from the last transition */
    for (uint32_t i = 0; i < h->timecnt; i++) {
        int64_t at = ts == 8 ? be64(times + 8 * (size_t)i) : (int32_t)be32(times + 4 * (size_t)i);
        if (i > 0 && at <= last) return "transition times not ascending";
        last = at;
        if (idx[i] >= h->typecnt) return "bad local time type index";
        if (utoff[idx[i]] == prev) continue;
        prev = utoff[idx[i]];
        z->at[z->n] = at;
        z->off[z->n++] = prev;
    }
    z->footer_from = last;
    return NULL;
}

static const char *read_tzif(const uint8_t *data, size_t len, struct tz *z)
{
    struct cursor c = {data, len, 0};
    struct header h;
    const char *why = read_header(&c, &h);
    if (why) return why;
    if (h.version == 1) return read_block(&c, &h, 4, z);

    /* Version 2+: skip the 32-bit block, use the 64-bit one and the footer. */
    if (!take(&c, block_size(&h, 4))) return "truncated data";
    if ((why = read_header(&c, &h))) return why;
    if (h.version < 2) return "second header of version 1";
    if ((why = read_block(&c, &h, 8, z))) return why;
    const uint8_t *nl = take(&c, 1);
    if (!nl || *nl != '\n') return "no footer";
    const uint8_t *from = c.p + c.off, *end = memchr(from, '\n', c.len - c.off);
    if (!end) return "truncated footer";
    size_t n = (size_t)(end - from);
    if (n >= TZ_FOOTER_MAX) return "footer too long";
    char footer[TZ_FOOTER_MAX];
    memcpy(footer, from, n);
    footer[n] = '\0';
    if (strlen(footer) != n) return "bad footer";
    if (n && !parse_footer(footer, z)) return "bad footer";
    return NULL;
}

/* tz_parse, `path` naming the bytes in messages. */
static int parse_named(const char *name, const char *path, const uint8_t *data, size_t len,
                       const char *field, struct tz **out, struct err *e)
{
    struct tz *z = xcalloc(1, sizeof(*z));
    snprintf(z->name, sizeof(z->name), "%s", name);
    const char *why = read_tzif(data, len, z);
    if (why == LEAP_SECONDS) {
        tz_free(z);
        return err_field(e, ERR_INVALID, field,
                         "timezone: '%s' counts leap seconds (a \"right/\" zone), which is not "
                         "supported",
                         path);
    }
    if (why) {
        tz_free(z);
        return err_field(e, ERR_INVALID, field, "timezone: '%s' is not a TZif file (%s)", path,
                         why);
    }
    *out = z;
    return 0;
}

int tz_parse(const char *name, const void *data, size_t len, const char *field, struct tz **out,
             struct err *e)
{
    if (!name) name = "";
    return parse_named(name, name, data, len, field, out, e);
}

static bool valid_name(const char *name)
{
    size_t n = strnlen(name, TZ_NAME_MAX + 1);
    if (n == 0 || n > TZ_NAME_MAX) return false;
    bool seg_start = true;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (ch == '/') {
            if (seg_start) return false;
            seg_start = true;
        } else if (is_alpha(ch) || is_digit(ch) || ch == '_' || ch == '+' || ch == '-') {
            seg_start = false;
        } else {
            return false;
        }
    }
    return !seg_start;
}

int tz_load(const char *name, const char *field, struct tz **out, struct err *e)
{
    if (!name) name = "";
    if (!valid_name(name))
        return err_field(e, ERR_INVALID, field,
                         "timezone: '%.*s%s' is not a time zone name (1-64 bytes of letters, "
                         "digits, '_', '+' and '-', in segments joined by '/', as in "
                         "'Europe/Paris')",
                         TZ_NAME_MAX, name, strlen(name) > TZ_NAME_MAX ? "..." : "");
    const char *dir = getenv("TZDIR");
    if (!dir || !*dir) dir = "/usr/share/zoneinfo";
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return err_field(e, ERR_INVALID, field, "timezone: cannot read '%s': path too long", name);

    /* O_NONBLOCK: a FIFO put there must not block us (it is then refused, not a regular file) */
    int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    uint8_t *data = NULL;
    struct stat st;
    if (fd < 0 && (errno == ENOENT || errno == ENOTDIR)) {
        if (!strcmp(name, "UTC")) { /* no tzdata: UTC all the same */
            struct tz *z = xcalloc(1, sizeof(*z));
            snprintf(z->name, sizeof(z->name), "%s", name);
            *out = z;
            return 0;
        }
        return err_field(e, ERR_INVALID, field, "timezone: unknown time zone '%s'", name);
    }
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = err_field(e, ERR_INVALID, field, "timezone: cannot read '%s': %s", path,
                       strerror(errno));
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = err_field(e, ERR_INVALID, field,
                       "timezone: unknown time zone '%s' (a folder of time zones)", name);
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > TZ_FILE_MAX) {
        rc = err_field(e, ERR_INVALID, field, "timezone: '%s' is not a TZif file (%s)", path,
                       S_ISREG(st.st_mode) ? "larger than 256 KiB" : "not a regular file");
        goto out;
    }
    /* One byte more than its size, to notice a file that grows while read. */
    size_t cap = (size_t)st.st_size + 1, len = 0;
    data = xmalloc(cap);
    while (len < cap) {
        ssize_t got = read(fd, data + len, cap - len);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            rc = err_field(e, ERR_INVALID, field, "timezone: cannot read '%s': %s", path,
                           strerror(errno));
            goto out;
        }
        if (got == 0) break;
        len += (size_t)got;
    }
    if (len == cap) {
        rc = err_field(e, ERR_INVALID, field, "timezone: '%s' changed while being read", path);
        goto out;
    }
    rc = parse_named(name, path, data, len, field, out, e);
out:
    if (fd >= 0) close(fd);
    free(data);
    return rc;
}
