/* uuid.c - see uuid.h. */
#include "uuid.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <openssl/rand.h>

#include "common.h"
#include "timeutil.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t last_ms;
static unsigned counter; /* 12 bits */

/*
 * Random bytes for ids, drawn from RAND_bytes 64 ids at a time: each call of
 * it costs as much as the rest of making an id (~0.8 us of a batch of 1,000
 * submits per job). Per thread; a forked child drops what its parent drew,
 * so that the two never hand out the same bytes.
 */
#define POOL_IDS 64
static __thread unsigned char pool[POOL_IDS * 16];
static __thread size_t pool_left; /* bytes not handed out yet, at the pool's end */
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_drop(void)
{
    explicit_bzero(pool, sizeof(pool));
    pool_left = 0;
}

static void pool_setup(void)
{
    pthread_atfork(NULL, NULL, pool_drop);
}

static void random16(unsigned char b[16])
{
    if (!pool_left) {
        pthread_once(&pool_once, pool_setup);
        if (RAND_bytes(pool, sizeof(pool)) != 1)
            die("cannot read random bytes for an id");
        pool_left = sizeof(pool);
    }
    unsigned char *p = pool + sizeof(pool) - pool_left;
    memcpy(b, p, 16);
    memset(p, 0, 16); /* handed out: not kept */
    pool_left -= 16;
}

void uuid7_new(char out[UUID_STR_LEN])
{
    unsigned char b[16];
    random16(b);

    pthread_mutex_lock(&lock);
    int64_t ms = time_now_ms();
    if (ms <= last_ms) {
        if (++counter > 0xfff) { /* 4096 ids in one ms: borrow the next millisecond */
            last_ms++;
            counter = 0;
        }
        ms = last_ms;
    } else {
        last_ms = ms;
        counter = (b[6] & 0x07) << 8 | b[7]; /* random start, room to count up */
    }
    unsigned c = counter;
    pthread_mutex_unlock(&lock);

    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)((uint64_t)ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (c >> 8));
    b[7] = (unsigned char)(c & 0xff);
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    static const char hex[] = "0123456789abcdef"; /* by hand: snprintf showed in profiles */
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

bool uuid_valid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}
