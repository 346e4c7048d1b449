/*
 * uuid.h - UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits.
 *
 * Ids made by one process are strictly increasing, also within one
 * millisecond (the 12-bit rand_a field is used as a counter, RFC 9562
 * method 1), so sorting by id sorts by creation.
 */
#ifndef DROVER_UUID_H
#define DROVER_UUID_H

#include <stdbool.h>

#define UUID_STR_LEN 37 /* 36 characters and the NUL */

/* Writes a new lower-case UUIDv7 into out. Thread-safe. */
void uuid7_new(char out[UUID_STR_LEN]);
/* True when s is a UUID in canonical 8-4-4-4-12 hex form. */
bool uuid_valid(const char *s);

#endif
