/*
 * fuzz.h - what the fuzz targets (tests/fuzz/fuzz_*.c) share.
 *
 * Each target is one libFuzzer entry point, LLVMFuzzerTestOneInput, built two ways: with
 * -DFUZZ=ON (clang) as a libFuzzer binary (scripts/fuzz.sh), and in every normal build as
 * a program that replays its corpus through replay.c (a ctest test). FUZZ_CHECK is the
 * harness's assert: it also holds in builds with NDEBUG, and it aborts, so that both
 * libFuzzer and the replay report the input.
 */
#ifndef DROVER_FUZZ_H
#define DROVER_FUZZ_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The input as a NUL-terminated string (the caller frees it); NULL when it holds a NUL. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    if (memchr(data, '\0', size)) return NULL;
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/*
 * A TZif version 2 file of one type (UTC, offset 0) and no transition, whose footer (the POSIX
 * TZ string, "CET-1CEST,M3.5.0,M10.5.0/3") gives the rule: what zic -b slim writes for a zone
 * whose rule has not changed. Into out (cap bytes); returns the length.
 */
static inline size_t fuzz_tzif_footer(const char *footer, unsigned char *out, size_t cap)
{
    size_t n = 0;
    for (int block = 0; block < 2; block++) {
        static const unsigned char head[44] = {'T', 'Z', 'i', 'f', '2', [39] = 1, [43] = 4};
        static const unsigned char type[10] = {0, 0, 0, 0, 0, 0, 'U', 'T', 'C', 0};
        if (n + sizeof(head) + sizeof(type) > cap) abort();
        memcpy(out + n, head, sizeof(head));
        memcpy(out + n + sizeof(head), type, sizeof(type));
        n += sizeof(head) + sizeof(type);
    }
    int k = snprintf((char *)out + n, cap - n, "\n%s\n", footer);
    if (k < 0 || (size_t)k >= cap - n) abort();
    return n + (size_t)k;
}

#endif
