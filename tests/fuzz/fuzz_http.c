/*
 * fuzz_http.c - the request headers drover reads by hand, one per first byte (mod 3):
 *   0 Range (http_range_parse), for objects of a few sizes
 *   1 Cookie (session_cookie_get: the dashboard's session cookie)
 *   2 Origin / Sec-Fetch-Site against Host (session_check_origin), split at the first two
 *     newlines
 * Checks: a range honoured is digits and a '-', within the object and not empty; a cookie
 * value found is non-empty, fits and holds no ';'; an origin is accepted only when it is
 * http(s):// and the host.
 */
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "http/range.h"
#include "server/session.h"

static void range(const char *h)
{
    static const int64_t sizes[] = {0, 1, 10, 1000, INT64_MAX};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        int64_t off = -7, len = -7, size = sizes[i];
        int rc = http_range_parse(h, size, &off, &len);
        FUZZ_CHECK(rc >= -1 && rc <= 1);
        if (rc == 1)
            FUZZ_CHECK(off >= 0 && len >= 1 && off < size && len <= size - off);
        else
            FUZZ_CHECK(off == -7 && len == -7);
        if (rc == 0) continue;
        /* honoured: "bytes=" then digits and one '-' (RFC 9110: no sign, no blank) */
        FUZZ_CHECK(!strncmp(h, "bytes=", 6) && size > 0);
        size_t digits = strspn(h + 6, "0123456789");
        FUZZ_CHECK(h[6 + digits] == '-' &&
                   strspn(h + 7 + digits, "0123456789") == strlen(h + 7 + digits));
        FUZZ_CHECK(digits || h[7]); /* not "bytes=-" */
    }
}

static void cookie(const char *h)
{
    char out[SESSION_ID_LEN];
    memset(out, 'x', sizeof(out));
    if (!session_cookie_get(h, SESSION_COOKIE, out, sizeof(out))) return;
    size_t n = strnlen(out, sizeof(out));
    FUZZ_CHECK(n > 0 && n < sizeof(out) && !strchr(out, ';'));
    FUZZ_CHECK(strstr(h, SESSION_COOKIE "="));
}

static void origin(char *s)
{
    char *site = strchr(s, '\n'), *host = NULL;
    if (site) {
        *site++ = '\0';
        host = strchr(site, '\n');
        if (host) *host++ = '\0';
    }
    const char *o = *s ? s : NULL, *f = site && *site ? site : NULL;
    struct err e = ERR_INIT;
    int rc = session_check_origin(o, f, host, &e);
    if (rc) {
        FUZZ_CHECK(rc == ERR_DENIED && e.msg[0]);
        return;
    }
    FUZZ_CHECK(!f || !strcmp(f, "same-origin"));
    if (o) {
        const char *rest = !strncasecmp(o, "http://", 7) ? o + 7 : o + 8;
        FUZZ_CHECK(host && !strcasecmp(rest, host));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    char *s = fuzz_cstr(data + 1, size - 1);
    if (!s) return 0;
    switch (data[0] % 3) {
    case 0:
        range(s);
        break;
    case 1:
        cookie(s);
        break;
    case 2:
        origin(s);
        break;
    }
    free(s);
    return 0;
}
