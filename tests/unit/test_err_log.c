/*
 * test_err_log.c - unit tests for common/err.c (a message is one line: a quoted library
 * message's line breaks are folded) and common/log.c (a text log event is one line, whatever
 * its message quotes: no forged lines; a repeating failure logged once a minute at most,
 * with how many were left out, and its end once).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/log.h"

static void folded(const char *in, const char *want)
{
    struct err e = ERR_INIT;
    assert_int_equal(err_set(&e, ERR_UNAVAILABLE, "store: %s", in), ERR_UNAVAILABLE);
    assert_string_equal(e.msg, want);
}

static void test_err_is_one_line(void **state)
{
    (void)state;
    /* libpq's messages, as PQerrorMessage gives them */
    folded("connection to server at \"127.0.0.1\", port 5432 failed: Connection refused\n"
           "\tIs the server running on that host and accepting TCP/IP connections?\n",
           "store: connection to server at \"127.0.0.1\", port 5432 failed: Connection refused. "
           "Is the server running on that host and accepting TCP/IP connections?");
    folded("server closed the connection unexpectedly\n"
           "\tThis probably means the server terminated abnormally\n"
           "\tbefore or while processing the request.\n",
           "store: server closed the connection unexpectedly. This probably means the server "
           "terminated abnormally before or while processing the request.");
    folded("a:\n\n  b\r\nc", "store: a: b c");
    /* one byte of line break has room for one of space: never more written than read */
    folded("first\nSecond\nThird line\nFourth", "store: first Second Third line Fourth");
    folded("x\nY", "store: x Y");
    folded("\n\nLeading", "store: Leading");
    folded("bell\a and tab\there", "store: bell  and tab here");
    folded("trailing  \n\t \n", "store: trailing");
    folded("FATAL:  as it is", "store: FATAL:  as it is");

    struct err e = ERR_INIT; /* a field's message too */
    err_field(&e, ERR_INVALID, "spec.name", "bad\nname");
    assert_string_equal(e.msg, "bad name");
    assert_string_equal(e.field, "spec.name");
    /* the first error is kept: a second does not touch it */
    err_set(&e, ERR_INTERNAL, "second\n");
    assert_string_equal(e.msg, "bad name");
}

/* stderr into a temporary file, until captured_end. */
static int capture_fd = -1, saved_fd = -1;

static void capture(void)
{
    FILE *f = tmpfile(); /* no name: gone when closed */
    assert_non_null(f);
    capture_fd = dup(fileno(f));
    fclose(f);
    assert_true(capture_fd >= 0);
    saved_fd = dup(STDERR_FILENO);
    assert_true(saved_fd >= 0);
    assert_int_equal(dup2(capture_fd, STDERR_FILENO), STDERR_FILENO);
}

/* What was written to stderr since capture() ("" for nothing). */
static char *captured_end(void)
{
    assert_int_equal(dup2(saved_fd, STDERR_FILENO), STDERR_FILENO);
    close(saved_fd);
    static char out[8192];
    ssize_t n = pread(capture_fd, out, sizeof(out) - 1, 0);
    close(capture_fd);
    assert_true(n >= 0);
    out[n] = '\0';
    return out;
}

/* What log_write writes to stderr for msg. */
static char *logged(const char *msg)
{
    capture();
    log_write(LOG_WARN, "req=1 %s", msg);
    char *out = captured_end();
    assert_true(out[0] != '\0');
    return out;
}

/* The lines of text without their time stamps ("YYYY-MM-DD HH:MM:SS.mmm "), in out. */
static void unstamped(const char *text, char *out, size_t n)
{
    size_t w = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        assert_true(end - line > 24);
        size_t len = (size_t)(end + 1 - (line + 24));
        assert_true(w + len < n);
        memcpy(out + w, line + 24, len);
        w += len;
        line = end + 1;
    }
    out[w] = '\0';
}

static void test_repeated_failures_are_logged_once_a_minute(void **state)
{
    (void)state;
    log_set_json(false);
    struct log_repeat r = {0};
    char lines[4096];

    capture();
    log_repeat_ok(&r, "reading x"); /* never failed: nothing */
    log_repeat_fail(&r, 1000, LOG_WARN, "cannot read x: %s", "down");
    log_repeat_fail(&r, 2000, LOG_WARN, "cannot read x: %s", "down");
    log_repeat_fail(&r, 60999, LOG_WARN, "cannot read x: %s", "down");
    log_repeat_fail(&r, 61000, LOG_WARN, "cannot read x: %s", "still down");
    log_repeat_fail(&r, 62000, LOG_WARN, "cannot read x: %s", "down");
    log_repeat_ok(&r, "reading x");
    log_repeat_ok(&r, "reading x"); /* once */
    log_repeat_fail(&r, 63000, LOG_ERROR, "cannot read x: %s", "again"); /* a new episode */
    log_repeat_ok(&r, NULL); /* ended without a line */
    log_repeat_ok(&r, "reading x");
    unstamped(captured_end(), lines, sizeof(lines));
    assert_true(strncmp(lines,
                        "warn cannot read x: down\n"
                        "warn cannot read x: still down (and 2 more like it in the last minute)\n"
                        "info reading x works again (5 failures since ",
                        strlen("warn cannot read x: down\n"
                               "warn cannot read x: still down (and 2 more like it in the last "
                               "minute)\n"
                               "info reading x works again (5 failures since ")) == 0);
    const char *rest = strstr(lines, "works again (5 failures since ");
    assert_non_null(rest);
    rest = strchr(rest, '\n');
    assert_non_null(rest);
    assert_string_equal(rest, "\nerror cannot read x: again\n");

    /* below the log level: counted, not written */
    int level = log_level_current;
    log_level_current = LOG_ERROR;
    capture();
    log_repeat_fail(&r, 100000, LOG_WARN, "cannot read y");
    log_repeat_fail(&r, 100001, LOG_WARN, "cannot read y");
    log_level_current = level;
    log_repeat_ok(&r, "reading y");
    unstamped(captured_end(), lines, sizeof(lines));
    assert_true(strncmp(lines, "info reading y works again (2 failures since ", 45) == 0);
}

static void test_text_log_event_is_one_line(void **state)
{
    (void)state;
    log_set_json(false);
    const char *line = logged("name 'x'\n2026-01-01 00:00:00.000 info forged\r\x01 end\tok");
    /* "YYYY-MM-DD HH:MM:SS.mmm warn " then the message, escaped, and one newline */
    assert_true(strlen(line) > 29);
    assert_string_equal(line + 24,
                        "warn req=1 name 'x'\\n2026-01-01 00:00:00.000 info forged\\r\\x01 "
                        "end\tok\n");
    assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);

    line = logged("plain"); /* the usual case, unchanged */
    assert_string_equal(line + 24, "warn req=1 plain\n");

    log_set_json(true); /* JSON lines escape as JSON does */
    line = logged("a\nb");
    assert_non_null(strstr(line, "\"msg\":\"req=1 a\\u000ab\"}\n"));
    assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);
    log_set_json(false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_is_one_line),
        cmocka_unit_test(test_text_log_event_is_one_line),
        cmocka_unit_test(test_repeated_failures_are_logged_once_a_minute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
