/*
 * hmap.h - a string-keyed hash map of pointers (open addressing with linear
 * probing, grows by doubling).
 *
 * Keys are copied; values are borrowed (the map never frees them unless
 * hmap_release is given a function to). Not thread-safe.
 */
#ifndef DROVER_HMAP_H
#define DROVER_HMAP_H

#include <stddef.h>

struct hmap_entry {
    char *key; /* the entry's own copy, in the same allocation */
    void *value;
    size_t hash; /* of key */
};

/* The table holds each entry's hash beside it: a probe reads an entry only when its hash
   matches (a miss, as when a new key goes in, reads none). */
struct hmap_slot {
    size_t hash;
    struct hmap_entry *e; /* NULL: free */
};

struct hmap {
    struct hmap_slot *slots;
    size_t nslots; /* 0 or a power of two, at least twice count */
    size_t count;
};

void hmap_init(struct hmap *m);
/* Frees the entries, and each value with free_value when not NULL. */
void hmap_release(struct hmap *m, void (*free_value)(void *));
void *hmap_get(const struct hmap *m, const char *key);
/* Sets key to value; returns the value it replaces, or NULL. */
void *hmap_put(struct hmap *m, const char *key, void *value);
/* Removes key; returns its value, or NULL when absent. */
void *hmap_del(struct hmap *m, const char *key);

/* Iteration: for (it = hmap_first(m); it; it = hmap_next(m, it)) — no changes meanwhile. */
struct hmap_entry *hmap_first(const struct hmap *m);
struct hmap_entry *hmap_next(const struct hmap *m, const struct hmap_entry *e);

#endif
