/*
 * test_err_log.c - unit tests for common/err.c (a message is one line: a quoted library
 * message's line breaks are folded) and common/log.c (a text log event is one line, whatever
 * its message quotes: no forged lines).
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

/* What log_write writes to stderr for msg, captured in a temporary file. */
static char *logged(const char *msg)
{
    char path[] = "/tmp/drover-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    log_write(LOG_WARN, "req=1 %s", msg);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    static char out[4096];
    ssize_t n = pread(fd, out, sizeof(out) - 1, 0);
    close(fd);
    assert_true(n > 0);
    out[n] = '\0';
    return out;
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
