/*
 * fuzz_text.c - the small text parsers of outside values, one per first byte (mod 6):
 *   0 time_parse_rfc3339 (times the API writes, read back by the CLI and the triggers)
 *   1 uuid_valid (ids in paths and bodies) and array_is_task_id
 *   2 retention_duration_parse (--retention, --queue-retention: "90", "15m", "7d")
 *   3 spec_uri_valid and spec_input_file_name (every URI of a spec)
 *   4 cli_s3_parse (the CLI's s3://bucket/key arguments)
 *   5 workflow_attempt_uri (a connection's output URI, per attempt)
 * Checks: what is accepted is what the documented form says, and comes back the same when
 * written out again.
 */
#include <ctype.h>
#include <string.h>

#include "cli/cli.h"
#include "common/timeutil.h"
#include "common/uuid.h"
#include "fuzz.h"
#include "job/array.h"
#include "job/spec.h"
#include "job/workflow.h"
#include "server/retention.h"

static void rfc3339(const char *s)
{
    int64_t ms;
    if (!time_parse_rfc3339(s, &ms)) return;
    /* YYYY-MM-DDTHH:MM:SS[.fff...]Z: written back with exactly three digits of fraction */
    char out[64];
    time_format_rfc3339(ms, out, sizeof(out));
    int64_t back;
    FUZZ_CHECK(time_parse_rfc3339(out, &back) && back == ms);
    size_t n = strlen(s);
    FUZZ_CHECK(n >= 20 && !memcmp(s, out, 19));
}

static void uuid(const char *s)
{
    bool ok = uuid_valid(s);
    size_t n = strlen(s);
    bool want = n == 36;
    for (size_t i = 0; want && i < 36; i++)
        want = (i == 8 || i == 13 || i == 18 || i == 23) ? s[i] == '-'
                                                         : isxdigit((unsigned char)s[i]) != 0;
    FUZZ_CHECK(ok == want);
    if (ok && array_is_task_id(s)) FUZZ_CHECK(s[14] == '8');
}

static void duration(const char *s)
{
    int64_t ms = -1;
    if (retention_duration_parse(s, &ms)) return;
    FUZZ_CHECK(ms > 0 && ms <= 10LL * 366 * 86400 * 1000 && ms % 1000 == 0);
    FUZZ_CHECK(isdigit((unsigned char)s[0]));
}

static void uri(const char *s)
{
    for (int prefix = 0; prefix < 2; prefix++) {
        const char *why = NULL;
        bool ok = spec_uri_valid(s, prefix, &why);
        FUZZ_CHECK(ok ? why == NULL : why != NULL && why[0]);
        if (!ok) continue;
        for (const char *p = s; *p; p++)
            FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
        if (prefix) continue;
        const char *name = NULL;
        size_t n = spec_input_file_name(s, &name);
        if (n) {
            FUZZ_CHECK(name >= s && name + n <= s + strlen(s));
            FUZZ_CHECK(!memchr(name, '/', n));
        }
    }
}

static void s3(const char *s)
{
    for (int prefix = 0; prefix < 2; prefix++) {
        struct cli_s3_uri u = {0};
        struct err e = ERR_INIT;
        int rc = cli_s3_parse(s, prefix, &u, &e);
        if (rc) {
            FUZZ_CHECK(rc == ERR_INVALID && e.msg[0]);
            continue;
        }
        FUZZ_CHECK(u.bucket && u.key);
        if (!prefix) FUZZ_CHECK(spec_uri_valid(s, false, NULL));
        cli_s3_release(&u);
    }
}

static void attempt_uri(const char *s)
{
    for (int attempt = 1; attempt <= 3; attempt += 2) {
        char *u = workflow_attempt_uri(s, attempt);
        if (!u) continue;
        FUZZ_CHECK(spec_uri_valid(u, false, NULL));
        FUZZ_CHECK(strstr(u, attempt == 1 ? "/attempt-1/" : "/attempt-3/"));
        free(u);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    char *s = fuzz_cstr(data + 1, size - 1);
    if (!s) return 0;
    switch (data[0] % 6) {
    case 0:
        rfc3339(s);
        break;
    case 1:
        uuid(s);
        break;
    case 2:
        duration(s);
        break;
    case 3:
        uri(s);
        break;
    case 4:
        s3(s);
        break;
    case 5:
        attempt_uri(s);
        break;
    }
    free(s);
    return 0;
}
