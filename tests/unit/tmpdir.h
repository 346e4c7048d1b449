/*
 * tmpdir.h - a fresh folder for a unit test, under $TMPDIR (or /tmp when unset).
 */
#ifndef DROVER_TEST_TMPDIR_H
#define DROVER_TEST_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>

/* Makes the folder TMPDIR/NAME-XXXXXX (mkdtemp) into buf: buf, or NULL when it cannot. */
static inline char *test_mkdtemp(char *buf, size_t size, const char *name)
{
    const char *tmp = getenv("TMPDIR");
    if (snprintf(buf, size, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name) >= (int)size)
        return NULL;
    return mkdtemp(buf);
}

#endif
