/*
 * committest.h - what the unit tests of the group committer's users share: a
 * real SQLite file in a fresh folder, with a handle for reads and a committer
 * (the writer thread owns a handle of its own) on it. Include after cmocka.h.
 */
#ifndef DROVER_TEST_COMMITTEST_H
#define DROVER_TEST_COMMITTEST_H

#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/timeutil.h"
#include "server/commit.h"
#include "store/store.h"
#include "tmpdir.h"

/* Makes dir (PATH_MAX bytes) TMPDIR/NAME-XXXXXX and the store in it: 0, or -1 with the
   reason on stderr. */
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
        return -1;
    }
    if (store_open(uri, &so, &writer, &e)) {
        fprintf(stderr, "store: %s\n", e.msg);
        store_close(*reads);
        *reads = NULL;
        return -1;
    }
    *commit = commit_new(base, writer);
    return 0;
}

/* Runs the loop until the committer has handed back every write, and three more turns
   set off nothing new; fails the test after 10 s. */
static inline void test_commit_pump(struct event_base *base, struct committer *commit)
{
    int64_t until = time_now_ms() + 10000;
    int idle_turns = 0;
    for (int i = 0; i < 100000 && time_now_ms() < until; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (commit_idle(commit)) {
            if (++idle_turns == 3) return;
        } else {
            idle_turns = 0;
            usleep(200);
        }
    }
    fail_msg("the committer did not hand back its writes within 10 s");
}

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

#endif
