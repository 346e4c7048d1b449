/* err.c - see err.h. */
#include "err.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int code;
    int status;
    const char *api;
    const char *text;
} table[] = {
    {ERR_OK, 200, "ok", "ok"},
    {ERR_INVALID, 400, "invalid_argument", "invalid argument"},
    {ERR_UNAUTH, 401, "unauthenticated", "missing or invalid token"},
    {ERR_DENIED, 403, "permission_denied", "permission denied"},
    {ERR_NOTFOUND, 404, "not_found", "not found"},
    {ERR_METHOD, 405, "method_not_allowed", "method not allowed"},
    {ERR_CONFLICT, 409, "conflict", "conflict"},
    {ERR_TOOLARGE, 413, "too_large", "too large"},
    {ERR_UNAVAILABLE, 503, "unavailable", "unavailable"},
    {ERR_NOSPACE, 507, "insufficient_storage", "insufficient storage"},
    {ERR_INTERNAL, 500, "internal", "internal error"},
    {ERR_IO, 500, "internal", "i/o error"},
    {ERR_RANGE, 416, "range_not_satisfiable", "range not satisfiable"},
    {ERR_LENGTH, 411, "length_required", "length required"},
    {ERR_GONE, 410, "gone", "no longer available"},
    {ERR_AMBIGUOUS, 409, "ambiguous", "ambiguous"},
    {ERR_QUOTA, 429, "quota", "quota exceeded"},
    {ERR_MEDIATYPE, 415, "unsupported_media_type", "unsupported media type"},
};

static int find(int code)
{
    for (size_t i = 0; i < ARRAY_SIZE(table); i++)
        if (table[i].code == code)
            return (int)i;
    return code == ERR_INTERNAL ? 0 : find(ERR_INTERNAL); /* an unknown code is internal */
}

int err_from_http_status(int status)
{
    for (size_t i = 1; i < ARRAY_SIZE(table); i++)
        if (table[i].status == status)
            return table[i].code;
    return status >= 400 && status < 500 ? ERR_INVALID : ERR_INTERNAL;
}

int err_from_answer(int status, const char *api_code)
{
    for (size_t i = 1; api_code && i < ARRAY_SIZE(table); i++)
        if (table[i].status == status && !strcmp(table[i].api, api_code)) return table[i].code;
    return err_from_http_status(status);
}

int err_http_status(int code)
{
    return table[find(code)].status;
}

const char *err_api_code(int code)
{
    return table[find(code)].api;
}

const char *err_str(int code)
{
    return table[find(code)].text;
}

void err_clear(struct err *e)
{
    if (!e)
        return;
    e->code = 0;
    e->msg[0] = e->field[0] = '\0';
}

/*
 * A message is one line. Libraries' own messages that it quotes may hold several: libpq's
 * "... failed: Connection refused\n\tIs the server running ...?\n". Each line break with the
 * blanks around it becomes ". " between sentences (a letter or digit before, a capital
 * after) where it took two bytes or more, or else " "; the end is trimmed; any other control
 * character becomes a space. In place: what is written never passes what is read (w <= r).
 */
static void one_line(char *s)
{
    char *w = s;
    for (const char *r = s; *r;) {
        unsigned char c = (unsigned char)*r;
        if (c == '\n' || c == '\r') {
            while (w > s && (w[-1] == ' ' || w[-1] == '\t'))
                w--;
            while (*r && isspace((unsigned char)*r))
                r++;
            if (!*r || w == s)
                continue;
            if (r - w >= 2 && isalnum((unsigned char)w[-1]) && isupper((unsigned char)*r))
                *w++ = '.';
            *w++ = ' ';
            continue;
        }
        *w++ = c < 0x20 || c == 0x7f ? ' ' : (char)c;
        r++;
    }
    while (w > s && isspace((unsigned char)w[-1]))
        w--;
    *w = '\0';
}

static int vset(struct err *e, int code, const char *field, const char *fmt, va_list ap)
{
    if (!e || e->code)
        return code;
    e->code = code;
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    one_line(e->msg);
    snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
    return code;
}

int err_set(struct err *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(e, code, NULL, fmt, ap);
    va_end(ap);
    return code;
}

int err_field(struct err *e, int code, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(e, code, field, fmt, ap);
    va_end(ap);
    return code;
}
