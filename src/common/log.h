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
