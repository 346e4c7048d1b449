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
 * The random bits of ids, drawn from OpenSSL's generator a pool at a time (per thread):
 * RAND_bytes per id was ~4 % of the server's CPU in batches of submits. Not secrets (ids are
 * not credentials), only unique.
 */
#define RAND_POOL 512

static void random_bits(unsigned char *b, size_t n)
{
    static __thread unsigned char pool[RAND_POOL];
    static __thread size_t left;
    if (left < n) {
        if (RAND_bytes(pool, sizeof(pool)) != 1)
            die("cannot read random bytes for an id");
        left = sizeof(pool);
    }
    memcpy(b, pool + sizeof(pool) - left, n);
    left -= n;
}

void uuid7_new(char out[UUID_STR_LEN])
{
    unsigned char b[16];
    random_bits(b, sizeof(b));

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
