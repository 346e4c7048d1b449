/*
 * log.h - one event per line, with ids: "2026-11-24 12:20:59.258 info job=… created".
 *
 * The macros test the level before evaluating their arguments (Redis serverLog).
 * Logging goes to stderr; --log-format json makes each line a JSON object.
 */
#ifndef DROVER_LOG_H
#define DROVER_LOG_H

#include "common.h"

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern int log_level_current;

/* Parses "error|warn|info|debug"; -1 if unknown. */
int log_level_parse(const char *s);
void log_set_json(bool json);
void log_write(int level, const char *fmt, ...) PRINTF_LIKE(2, 3);

/*
 * A failure that repeats (a periodic read or write while the store is away): its first
 * occurrence is logged; then at most one line a minute, saying how many were left out since
 * the last; and the first success after (log_repeat_ok) logs once that it works again. One
 * struct per call site, used by one thread; zeroed to start.
 */
struct log_repeat {
    unsigned long failures; /* since the last success (0: not failing) */
    int64_t since_ms;       /* the first of them */
    int64_t last_ms;        /* the last line logged */
    unsigned long left_out; /* failures not logged since that line */
};
#define LOG_REPEAT_EVERY_MS 60000
void log_repeat_fail(struct log_repeat *r, int64_t now_ms, int level, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
/* After a success: "WHAT works again (N failures since TIME)" once, if it was failing (what
   NULL: no line, the caller logs the recovery its own way). */
void log_repeat_ok(struct log_repeat *r, const char *what);

#define log_at(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) <= log_level_current)                                                            \
            log_write((lvl), __VA_ARGS__);                                                         \
    } while (0)
#define log_error(...) log_at(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_at(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_at(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__)

#endif
