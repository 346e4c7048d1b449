/* log.c - see log.h. Lines are written with one write(2) so concurrent threads do not interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "timeutil.h"

int log_level_current = LOG_INFO;
static bool log_json;
static const char *names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *s)
{
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (!strcmp(s, names[i]))
            return (int)i;
    return -1;
}

void log_set_json(bool json)
{
    log_json = json;
}

void log_write(int level, const char *fmt, ...)
{
    char ts[32], msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    time_format_local(time_now_ms(), ts, sizeof(ts));

    struct buf b = BUF_INIT;
    if (log_json) {
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
    } else {
        buf_addf(&b, "%s %s %s\n", ts, names[level], msg);
    }
    ssize_t rc = write(STDERR_FILENO, b.data, b.len);
    (void)rc;
    buf_release(&b);
}
