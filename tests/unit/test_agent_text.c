/*
 * test_agent_text.c - unit tests for agent/utf8.c (ill-formed bytes become
 * U+FFFD, incomplete sequences wait for their next bytes, cuts on character
 * boundaries) and agent/progress.c (the "PERCENT [MESSAGE]" lines, the last
 * valid one of a file's tail, the file watched for appends and rewrites).
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

/* Memory the code under test allocates is freed with libc's free, not cmocka's. */
static void lib_free(void *p)
{
    free(p);
}

#include <cmocka.h>

#include "agent/progress.h"
#include "agent/utf8.h"
#include "common/buf.h"
#include "tmpdir.h"

#define R UTF8_REPLACEMENT

static void check_sanitize(const char *in, size_t n, const char *want, size_t want_len)
{
    struct buf b = BUF_INIT;
    assert_int_equal(utf8_sanitize(&b, in, n, true), n);
    assert_int_equal(b.len, want_len);
    assert_memory_equal(buf_str(&b), want, b.len);
    /* what comes out is what jansson takes */
    json_t *s = json_stringn(buf_str(&b), b.len);
    assert_non_null(s);
    json_decref(s);
    lib_free(buf_detach(&b));
}

#define CHECK(lit, want) check_sanitize(lit, sizeof(lit) - 1, want, sizeof(want) - 1)

static void test_utf8_valid_kept(void **state)
{
    (void)state;
    CHECK("plain ascii\n", "plain ascii\n");
    CHECK("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
    CHECK("nul\0inside", "nul\0inside");
    CHECK("\xEF\xBF\xBF \xF4\x8F\xBF\xBF", "\xEF\xBF\xBF \xF4\x8F\xBF\xBF"); /* U+FFFF, U+10FFFF */
}

static void test_utf8_replaced(void **state)
{
    (void)state;
    CHECK("a\xFF"
          "b",
          "a" R "b");                   /* never valid */
    CHECK("\x80\x80", R R);             /* stray continuation bytes */
    CHECK("\xC0\xAF", R R);             /* overlong '/' */
    CHECK("\xE0\x80\xAF", R R R);       /* overlong, 3 bytes */
    CHECK("\xED\xA0\x80", R R R);       /* a surrogate */
    CHECK("\xF4\x90\x80\x80", R R R R); /* above U+10FFFF */
    CHECK("\xE2\x82"
          "x",
          R "x");             /* truncated sequence: one U+FFFD */
    CHECK("\xF0\x9F\x98", R); /* truncated at the very end (final) */
    CHECK("\xC3"
          "\xC3\xA9",
          R "\xC3\xA9");
}

static void test_utf8_incremental(void **state)
{
    (void)state;
    /* "é€😀" cut at every place gives the same text as in one piece */
    const char text[] = "x\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80y";
    size_t n = sizeof(text) - 1;
    for (size_t cut = 0; cut <= n; cut++) {
        struct buf b = BUF_INIT;
        char carry[8];
        size_t used = utf8_sanitize(&b, text, cut, false);
        assert_true(cut - used <= 3);
        memcpy(carry, text + used, cut - used);
        char rest[32];
        memcpy(rest, carry, cut - used);
        memcpy(rest + (cut - used), text + cut, n - cut);
        assert_int_equal(utf8_sanitize(&b, rest, cut - used + n - cut, true), cut - used + n - cut);
        assert_int_equal(b.len, n);
        assert_memory_equal(b.data, text, n);
        lib_free(buf_detach(&b));
    }
    /* an invalid byte is not held back */
    struct buf b = BUF_INIT;
    assert_int_equal(utf8_sanitize(&b, "ab\xFF", 3, false), 3);
    assert_string_equal(b.data, "ab" R);
    lib_free(buf_detach(&b));
}

static void test_utf8_cut(void **state)
{
    (void)state;
    const char *s = "ab\xE2\x82\xAC"
                    "cd"; /* a b € c d: 7 bytes */
    assert_int_equal(utf8_cut(s, 7, 10), 7);
    assert_int_equal(utf8_cut(s, 7, 2), 2);
    assert_int_equal(utf8_cut(s, 7, 3), 2);
    assert_int_equal(utf8_cut(s, 7, 4), 2);
    assert_int_equal(utf8_cut(s, 7, 5), 5);
}

static void check_line(const char *line, bool ok, double pct, const char *msg)
{
    double p = -1;
    const char *m = NULL;
    size_t mlen = 0;
    assert_int_equal(progress_parse_line(line, strlen(line), &p, &m, &mlen), ok);
    if (!ok) return;
    assert_true(p == pct);
    assert_int_equal(mlen, strlen(msg));
    assert_memory_equal(m, msg, mlen);
}

static void test_progress_lines(void **state)
{
    (void)state;
    check_line("42.5 chunk 3 of 7", true, 42.5, "chunk 3 of 7");
    check_line("100", true, 100, "");
    check_line("0", true, 0, "");
    check_line("  7\tstarting  \r", true, 7, "starting");
    check_line("12% done", true, 12, "done");
    check_line(".5", true, 0.5, "");
    check_line("101", false, 0, NULL);
    check_line("-1 x", false, 0, NULL);
    check_line("abc", false, 0, NULL);
    check_line("", false, 0, NULL);
    check_line("42abc", false, 0, NULL);
    check_line("1.2.3", false, 0, NULL);
    check_line("nan", false, 0, NULL);
    check_line("inf", false, 0, NULL);
    check_line("1e2", false, 0, NULL);
}

static void test_progress_last(void **state)
{
    (void)state;
    double p;
    char *m;
    const char *text = "10 a\n20 b\nbogus\n30\n40 partial";
    assert_true(progress_parse_last(text, strlen(text), false, false, &p, &m));
    assert_true(p == 30);
    assert_null(m);
    assert_true(progress_parse_last(text, strlen(text), false, true, &p, &m));
    assert_true(p == 40);
    assert_string_equal(m, "partial");
    lib_free(m);
    /* the first line of a tail may be the end of a longer one */
    const char *tail = "5 not really\n60 six\n";
    assert_true(progress_parse_last(tail, strlen(tail), true, false, &p, &m));
    assert_true(p == 60);
    assert_string_equal(m, "six");
    lib_free(m);
    assert_false(progress_parse_last("7 only partial", 14, true, true, &p, &m));
    assert_false(progress_parse_last("", 0, false, true, &p, &m));
    /* a message is cut at 1 KiB on a character boundary, and made valid UTF-8 */
    struct buf b = BUF_INIT;
    buf_adds(&b, "50 ");
    for (int i = 0; i < 600; i++)
        buf_adds(&b, "\xC3\xA9");
    buf_adds(&b, "\n");
    assert_true(progress_parse_last(b.data, b.len, false, false, &p, &m));
    assert_int_equal(strlen(m), 1024);
    lib_free(m);
    buf_release(&b);
    assert_true(progress_parse_last("1 \xFF\n", 5, false, false, &p, &m));
    assert_string_equal(m, R);
    lib_free(m);
}

static void write_file(const char *path, const char *text, const char *mode)
{
    FILE *f = fopen(path, mode);
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_progress_watch(void **state)
{
    (void)state;
    char dir[PATH_MAX];
    assert_non_null(test_mkdtemp(dir, sizeof(dir), "drover-test-progress"));
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/progress", dir);
    struct progress_watch w;
    progress_watch_init(&w, path);
    double p;
    char *m;
    assert_false(progress_watch_check(&w, false, &p, &m)); /* absent */
    write_file(path, "10 first\n", "w");
    assert_true(progress_watch_check(&w, false, &p, &m));
    assert_true(p == 10);
    assert_string_equal(m, "first");
    lib_free(m);
    assert_false(progress_watch_check(&w, false, &p, &m)); /* unchanged */
    write_file(path, "20 second\n", "a");
    assert_true(progress_watch_check(&w, false, &p, &m));
    assert_true(p == 20);
    lib_free(m);
    /* rewritten with a line of the same length */
    usleep(20000);
    write_file(path, "30 thirty!\n", "w");
    assert_true(progress_watch_check(&w, false, &p, &m));
    assert_true(p == 30);
    lib_free(m);
    /* an unterminated line counts at the end only */
    write_file(path, "40", "a");
    assert_true(progress_watch_check(&w, false, &p, &m)); /* changed: the last complete line */
    assert_true(p == 30);
    lib_free(m);
    assert_true(progress_watch_check(&w, true, &p, &m));
    assert_true(p == 40);
    assert_null(m);
    /* a folder (or FIFO, device) in its place is not read */
    unlink(path);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_false(progress_watch_check(&w, true, &p, &m));
    rmdir(path);
    progress_watch_release(&w);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid_kept),  cmocka_unit_test(test_utf8_replaced),
        cmocka_unit_test(test_utf8_incremental), cmocka_unit_test(test_utf8_cut),
        cmocka_unit_test(test_progress_lines),   cmocka_unit_test(test_progress_last),
        cmocka_unit_test(test_progress_watch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
