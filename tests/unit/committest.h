/*
 * committest.h - what the unit tests of the group committer's users share: a
 * real SQLite file in a fresh folder, with a handle for reads and a committer
 * (the writer thread owns a handle of its own) on it (commitdir.h), and a pump of
 * the loop until the committer is idle. Include after cmocka.h.
 */
#ifndef DROVER_TEST_COMMITTEST_H
#define DROVER_TEST_COMMITTEST_H

#include <event2/event.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "commitdir.h"
#include "server/commit.h"

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

#endif
