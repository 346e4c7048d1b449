/* log.c - see log.h. Lines are written with one write(2) or writev(2) so concurrent threads do
   not interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "buf.h"
#include "timeutil.h"

int log_level_current = LOG_INFO;
static bool log_json;
static const char *names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *s)
{
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (!strcmp(s, names[i])) return (int)i;
    return -1;
}

void log_set_json(bool json)
{
    log_json = json;
}

/* now as time_format_local writes it ("YYYY-MM-DD HH:MM:SS.mmm"): its seconds part made
   once a second per thread (localtime_r takes a lock and converts the time zone) */
static void stamp(char out[32])
{
    static _Thread_local int64_t sec = -1;
    static _Thread_local char prefix[32];
    int64_t ms = time_now_ms();
    if (ms / 1000 != sec) {
        sec = ms / 1000;
        time_format_local(sec * 1000, prefix, sizeof(prefix));
        prefix[19] = '\0'; /* without ".000" */
    }
    memcpy(out, prefix, 19);
    out[19] = '.';
    out[20] = (char)('0' + ms % 1000 / 100);
    out[21] = (char)('0' + ms % 100 / 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = '\0';
}

static bool has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 && s[i] != '\t') return true;
    return false;
}

/* s with its line breaks and other control characters (but tabs) written as \n, \r, \xNN. */
static void escape_text(struct buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            buf_adds(b, "\\n");
        else if (c == '\r')
            buf_adds(b, "\\r");
        else if (c < 0x20 && c != '\t')
            buf_addf(b, "\\x%02x", c);
        else
            buf_addc(b, (char)c);
    }
}

void log_write(int level, const char *fmt, ...)
{
    char ts[32], msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    stamp(ts);

    if (!log_json) { /* one writev: no copy, unless the message holds control characters */
        size_t n = len < 0 ? 0 : (size_t)len < sizeof(msg) ? (size_t)len : sizeof(msg) - 1;
        struct buf esc = BUF_INIT;
        const char *text = msg;
        if (has_control(msg, n)) { /* an event is one line: what it quotes cannot add one */
            escape_text(&esc, msg, n);
            text = esc.data;
            n = esc.len;
        }
        struct iovec iov[] = {{ts, 23}, {" ", 1}, {(void *)names[level], strlen(names[level])},
                              {" ", 1}, {(void *)text, n}, {"\n", 1}};
        ssize_t rc = writev(STDERR_FILENO, iov, ARRAY_SIZE(iov));
        (void)rc;
        buf_release(&esc);
        return;
    }
    struct buf b = BUF_INIT;
    buf_addf(&b, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, names[level]);
    for (const char *p = msg; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_addf(&b, "\\%c", *p);
        else if ((unsigned char)*p < 0x20)
            buf_addf(&b, "\\u%04x", *p);
        else
            buf_addc(&b, *p);
    }
    buf_adds(&b, "\"}\n");
    ssize_t rc = write(STDERR_FILENO, b.data, b.len);
    (void)rc;
    buf_release(&b);
}

void log_repeat_fail(struct log_repeat *r, int64_t now_ms, int level, const char *fmt, ...)
{
    if (r->failures++ && now_ms - r->last_ms < LOG_REPEAT_EVERY_MS) {
        r->left_out++;
        return;
    }
    if (r->failures == 1) r->since_ms = now_ms;
    r->last_ms = now_ms;
    unsigned long left_out = r->left_out;
    r->left_out = 0;
    if (level > log_level_current) return;
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (left_out)
        log_write(level, "%s (and %lu more like it in the last minute)", msg, left_out);
    else
        log_write(level, "%s", msg);
}

void log_repeat_ok(struct log_repeat *r, const char *what)
{
    if (!r->failures) return;
    if (what) { /* NULL: the caller says it its own way */
        char since[32];
        time_format_local(r->since_ms, since, sizeof(since));
        log_info("%s works again (%lu failure%s since %s)", what, r->failures,
                 r->failures == 1 ? "" : "s", since);
    }
    *r = (struct log_repeat){0};
}
