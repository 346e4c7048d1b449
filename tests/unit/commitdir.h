/*
 * commitdir.h - a real SQLite store in a fresh folder, with a handle for reads and a group
 * committer (the writer thread owns a handle of its own) on it; and its removal. Plain C,
 * no test framework: the unit tests (committest.h) and the benchmarks (bench/fleet.c) share
 * it.
 */
#ifndef DROVER_TEST_COMMITDIR_H
#define DROVER_TEST_COMMITDIR_H

#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include <event2/event.h>

#include "server/commit.h"
#include "store/store.h"
#include "tmpdir.h"

/* Removes the store's files and dir (the committer and the reads' handle closed first). */
static inline void test_commit_remove(const char *dir)
{
    static const char *const files[] = {"drover.db", "drover.db-wal", "drover.db-shm"};
    for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
        char p[PATH_MAX + 32];
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* Makes dir (PATH_MAX bytes) TMPDIR/NAME-XXXXXX and the store in it: 0, or -1 with the
   reason on stderr and nothing left behind. */
static inline int test_commit_open(char *dir, const char *name, struct event_base *base,
                                   struct store **reads, struct committer **commit)
{
    if (!test_mkdtemp(dir, PATH_MAX, name)) return -1;
    char uri[PATH_MAX + 32];
    snprintf(uri, sizeof(uri), "sqlite:%s/drover.db", dir);
    struct store_opts so = {0};
    struct store *writer;
    struct err e = ERR_INIT;
    if (store_open(uri, &so, reads, &e)) {
        fprintf(stderr, "store: %s\n", e.msg);
        test_commit_remove(dir);
        return -1;
    }
    if (store_open(uri, &so, &writer, &e)) {
        fprintf(stderr, "store: %s\n", e.msg);
        store_close(*reads);
        *reads = NULL;
        test_commit_remove(dir);
        return -1;
    }
    *commit = commit_new(base, writer);
    return 0;
}

#endif
