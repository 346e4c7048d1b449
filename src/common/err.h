/*
 * err.h - error codes and the optional detail that goes with them (libuv style).
 *
 * Fallible functions return 0 or a negative ERR_* code, and when given a
 * `struct err *` fill in a message and, for validation errors, the path of the
 * offending field ("command.arguments[2].type"):
 *
 *     return err_field(e, ERR_INVALID, "priority", "priority must be between -1000 and 1000");
 *
 * `e` may be NULL everywhere. The first error set wins: a caller that adds
 * context does not overwrite the detail of the callee.
 */
#ifndef DROVER_ERR_H
#define DROVER_ERR_H

#include "common.h"

enum {
    ERR_OK = 0,
    ERR_INVALID = -1,     /* bad input: 400 invalid_argument */
    ERR_UNAUTH = -2,      /* 401 unauthenticated */
    ERR_DENIED = -3,      /* 403 permission_denied */
    ERR_NOTFOUND = -4,    /* 404 not_found */
    ERR_CONFLICT = -5,    /* 409 conflict */
    ERR_TOOLARGE = -6,    /* 413 too_large */
    ERR_UNAVAILABLE = -7, /* 503 unavailable */
    ERR_NOSPACE = -8,     /* 507 insufficient_storage */
    ERR_INTERNAL = -9,    /* 500 internal */
    ERR_METHOD = -10,     /* 405 method_not_allowed */
    ERR_IO = -11,         /* local I/O failed (CLI, startup); 500 if it reaches HTTP */
    ERR_RANGE = -12,      /* 416 range_not_satisfiable */
    ERR_LENGTH = -13,     /* 411 length_required */
    ERR_GONE = -14,       /* 410 gone: e.g. events older than the retained window */
    ERR_AMBIGUOUS = -15,  /* 409 ambiguous: a name or id prefix matches several */
    ERR_QUOTA = -16,      /* 429 quota: a tenant's limit (docs/operations.md) */
    ERR_MEDIATYPE = -17,  /* 415 unsupported_media_type: a body in a form not taken */
};

struct err {
    int code;
    char msg[512];
    char field[160];
};

#define ERR_INIT {0, "", ""}

void err_clear(struct err *e);
/* Sets code and message (unless an error is already set) and returns code. */
int err_set(struct err *e, int code, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* Like err_set, and also records the field's path. */
int err_field(struct err *e, int code, const char *field, const char *fmt, ...) PRINTF_LIKE(4, 5);

/* THE table: each code's HTTP status and API error code ("invalid_argument"). */
int err_http_status(int code);
/* The other way: the ERR_* code of an HTTP error status (an unknown 4xx is ERR_INVALID). */
int err_from_http_status(int status);
const char *err_api_code(int code);
/* The ERR_* code of an answer's {"error": {"code"}} and HTTP status: the one whose API code and
   status they are (409 is "conflict" or "ambiguous"), else err_from_http_status(status). */
int err_from_answer(int status, const char *api_code);
/* A short description of the code itself, for messages without detail. */
const char *err_str(int code);

#endif
