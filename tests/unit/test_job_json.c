/*
 * test_job_json.c - job_json_dump (job/job.c), the store's JSON writer, writes
 * exactly what jansson's json_dumps(JSON_COMPACT | JSON_ENCODE_ANY) writes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>

#include <jansson.h>

/* Both strings come from the library: freed with libc's free(). */
static void lib_free(void *p)
{
    free(p);
}

#include <cmocka.h>

#include "job/job.h"

static void same(const json_t *v)
{
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    char *got = job_json_dump(v);
    assert_non_null(want);
    assert_non_null(got);
    if (strcmp(want, got)) fail_msg("job_json_dump wrote\n%s\njansson writes\n%s", got, want);
    lib_free(want);
    lib_free(got);
}

static void test_values(void **state)
{
    (void)state;
    assert_null(job_json_dump(NULL));
    const char *texts[] = {
        "{}",
        "[]",
        "{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"},\"z\":\"\"}",
        "{\"queue\":\"default\",\"priority\":0,\"timeout_s\":600.0,\"retry\":{\"max_attempts\":3,"
        "\"backoff_s\":1.0,\"max_backoff_s\":300.0},\"command\":{\"program\":\"/bin/true\","
        "\"arguments\":[{\"type\":\"parameter\",\"value\":\"x\"}]}}",
        "[0.1,1.5,-0.0,1e20,1e-5,1.5e300,-2.5e-300,123456789.125,3.0,100.0,1e16,1e17,0.5]",
        "[9223372036854775807,-9223372036854775807,0,-1]",
        "\"quotes \\\" backslash \\\\ slash / tab \\t newline \\n cr \\r bs \\b ff \\f\"",
        "\"unicode \\u00e9 \\u4e2d \\ud83d\\ude00 and \\u2028\"",
        "\"nul \\u0000 in the middle, del \\u007f, \\u0001\\u001f\"",
        "{\"k\\\"ey\\n\":\"v\"}",
        "42",
        "null",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(*texts); i++) {
        json_error_t je;
        json_t *v = json_loads(texts[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!v) fail_msg("bad test JSON %s: %s", texts[i], je.text);
        same(v);
        json_decref(v);
    }
    /* every control character and ASCII byte, alone and between others */
    for (int c = 1; c < 0x80; c++) {
        char s[4] = {'a', (char)c, 'b', 0};
        json_t *v = json_string(s);
        same(v);
        json_decref(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
