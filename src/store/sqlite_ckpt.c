/* sqlite_ckpt.c - a SQLite WAL checkpointed on a thread of its own (sqlite_ckpt.h). */
#include "store/sqlite_ckpt.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xalloc.h"

/* A page rewritten by many commits (the tails of the jobs, events and index b-trees) is copied
   to the database once per checkpoint: every 4,000 pages the checkpointer's CPU per durable
   submit is ~45 % less than every 1,000 (SQLite's wal_autocheckpoint); the WAL grows to ~16 MiB
   between checkpoints, one segment of its index (4,096 frames) for readers to search. */
#define CKPT_PAGES 4000
#define CKPT_BACKSTOP_PAGES 16000 /* past this the committing connection checkpoints itself */

struct sqlite_ckpt {
    sqlite3 *db; /* the thread's own connection */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool due, stop;
};

/* The writer's connection, after each commit in WAL mode (sqlite3_wal_hook). */
static int on_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct sqlite_ckpt *c = arg;
    if (pages >= CKPT_BACKSTOP_PAGES) {
        (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    } else if (pages >= CKPT_PAGES) {
        pthread_mutex_lock(&c->mu);
        if (!c->due) {
            c->due = true;
            pthread_cond_signal(&c->cv);
        }
        pthread_mutex_unlock(&c->mu);
    }
    return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
    struct sqlite_ckpt *c = arg;
    pthread_setname_np(pthread_self(), "drover-ckpt");
    /* Background work: on a busy machine the event loop and the writer, which answer
       requests, go first (nice 10, this thread only). Should it fall far behind, the
       writer checkpoints itself (CKPT_BACKSTOP_PAGES). Failing to lower it is harmless. */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->due && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->stop) break;
        c->due = false;
        pthread_mutex_unlock(&c->mu);
        int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) /* BUSY: another checkpoint runs */
            log_warn("checkpointing the store's WAL: %s", sqlite3_errmsg(c->db));
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

struct sqlite_ckpt *sqlite_ckpt_start(sqlite3 *db, const char *path, const char *pragmas,
                                      struct err *e)
{
    struct sqlite_ckpt *c = xcalloc(1, sizeof(*c));
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_busy_timeout(c->db, 10000) != SQLITE_OK ||
        (pragmas && sqlite3_exec(c->db, pragmas, NULL, NULL, NULL) != SQLITE_OK)) {
        err_set(e, ERR_IO, "cannot open the store '%s' to checkpoint it: %s", path,
                c->db ? sqlite3_errmsg(c->db) : "out of memory");
        sqlite3_close(c->db);
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->thread, NULL, ckpt_main, c) != 0) {
        err_set(e, ERR_INTERNAL, "cannot start the store's checkpoint thread");
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        sqlite3_close(c->db);
        free(c);
        return NULL;
    }
    sqlite3_wal_hook(db, on_commit, c); /* replaces SQLite's own checkpoint after commits */
    return c;
}

void sqlite_ckpt_stop(struct sqlite_ckpt *c, sqlite3 *db)
{
    if (!c) return;
    sqlite3_wal_hook(db, NULL, NULL);
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    sqlite3_close(c->db);
    free(c);
}
