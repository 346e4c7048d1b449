/*
 * common.h - the few macros every drover source file may use.
 *
 * common/ depends on nothing else in src/ (and only on libc and OpenSSL).
 */
#ifndef DROVER_COMMON_H
#define DROVER_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Static functions that unit tests reach: static in the binary, visible in tests (curl UNITTEST). */
#ifdef UNIT_TESTING
#define TESTABLE
#else
#define TESTABLE static
#endif

#define PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))
#define NORETURN __attribute__((noreturn))

/* Prints "drover: <message>" to stderr and exits 1. CLI and startup only: never on a request path. */
NORETURN void die(const char *fmt, ...) PRINTF_LIKE(1, 2);

#endif
