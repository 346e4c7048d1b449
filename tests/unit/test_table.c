/*
 * test_table.c - unit tests for cli/table.c: aligned columns, and lines cut at a terminal's
 * width (counted in characters, not bytes) with "…" at the cut.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>

/* Memory open_memstream allocates is freed with libc's free, not cmocka's. */
static void lib_free(void *p)
{
    free(p);
}

#include <cmocka.h>

#include "cli/table.h"

/* What table_print_cut writes for t at cols, as a string (the caller's). */
static char *printed(const struct table *t, size_t cols)
{
    char *data = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&data, &len);
    assert_non_null(f);
    table_print_cut(t, f, cols);
    fclose(f);
    return data;
}

static struct table *sample(void)
{
    struct table *t = table_new(3, "id", "state", "name");
    table_add(t, "0193");
    table_add(t, "running");
    table_add(t, "a rather long name for a job");
    table_add(t, "0194");
    table_add(t, "queued");
    table_add(t, "\xc3\xa9t\xc3\xa9"); /* "été": 3 characters, 5 bytes */
    return t;
}

static void test_not_cut(void **state)
{
    (void)state;
    struct table *t = sample();
    char *out = printed(t, 0);
    assert_string_equal(out, "ID    STATE    NAME\n"
                             "0193  running  a rather long name for a job\n"
                             "0194  queued   \xc3\xa9t\xc3\xa9\n");
    lib_free(out);
    out = printed(t, 44); /* exactly wide enough */
    assert_non_null(strstr(out, "a rather long name for a job\n"));
    lib_free(out);
    table_free(t);
}

static void test_cut_at_width(void **state)
{
    (void)state;
    struct table *t = sample();
    char *out = printed(t, 20);
    assert_string_equal(out, "ID    STATE    NAME\n"
                             "0193  running  a ra\xe2\x80\xa6\n"
                             "0194  queued   \xc3\xa9t\xc3\xa9\n");
    lib_free(out);
    out = printed(t, 17); /* the cut falls inside "été": on a character boundary */
    assert_string_equal(out, "ID    STATE    N\xe2\x80\xa6\n"
                             "0193  running  a\xe2\x80\xa6\n"
                             "0194  queued   \xc3\xa9\xe2\x80\xa6\n");
    lib_free(out);
    table_free(t);
}

static void test_not_a_terminal(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(table_term_width(f), 0);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_cut),
        cmocka_unit_test(test_cut_at_width),
        cmocka_unit_test(test_not_a_terminal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
