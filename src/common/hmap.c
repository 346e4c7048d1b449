/*
 * hmap.c - see hmap.h. FNV-1a hashing; linear probing in a table kept at most half
 * full; removal shifts the entries after it back (no tombstones).
 */
#include "common/hmap.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

static size_t hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void hmap_init(struct hmap *m)
{
    m->slots = NULL;
    m->nslots = 0;
    m->count = 0;
}

void hmap_release(struct hmap *m, void (*free_value)(void *))
{
    for (size_t i = 0; i < m->nslots; i++) {
        struct hmap_entry *e = m->slots[i].e;
        if (!e)
            continue;
        if (free_value)
            free_value(e->value);
        free(e);
    }
    free(m->slots);
    hmap_init(m);
}

/* The slot of key (hash h), or the free slot where it would go. m->nslots > 0. */
static size_t find(const struct hmap *m, const char *key, size_t h)
{
    size_t mask = m->nslots - 1, i = h & mask;
    while (m->slots[i].e && (m->slots[i].hash != h || strcmp(m->slots[i].e->key, key)))
        i = (i + 1) & mask;
    return i;
}

void *hmap_get(const struct hmap *m, const char *key)
{
    if (!m->count)
        return NULL;
    struct hmap_entry *e = m->slots[find(m, key, hash(key))].e;
    return e ? e->value : NULL;
}

static void grow(struct hmap *m)
{
    size_t n = m->nslots ? m->nslots * 2 : 64, mask = n - 1;
    struct hmap_slot *t = xcalloc(n, sizeof(*t));
    for (size_t i = 0; i < m->nslots; i++) {
        if (!m->slots[i].e)
            continue;
        size_t j = m->slots[i].hash & mask;
        while (t[j].e)
            j = (j + 1) & mask;
        t[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = t;
    m->nslots = n;
}

void *hmap_put(struct hmap *m, const char *key, void *value)
{
    if (2 * (m->count + 1) > m->nslots)
        grow(m);
    size_t h = hash(key), i = find(m, key, h);
    if (m->slots[i].e) {
        void *old = m->slots[i].e->value;
        m->slots[i].e->value = value;
        return old;
    }
    size_t len = strlen(key) + 1;
    struct hmap_entry *e = xmalloc(sizeof(*e) + len);
    e->key = memcpy(e + 1, key, len);
    e->value = value;
    e->hash = h;
    m->slots[i].hash = h;
    m->slots[i].e = e;
    m->count++;
    return NULL;
}

void *hmap_del(struct hmap *m, const char *key)
{
    if (!m->count)
        return NULL;
    size_t i = find(m, key, hash(key)), mask = m->nslots - 1;
    struct hmap_entry *e = m->slots[i].e;
    if (!e)
        return NULL;
    void *v = e->value;
    free(e);
    m->count--;
    /* The entries after the hole that could sit in it (their home slot is not between the
       hole and them, cyclically) move back into it, one after the other. */
    for (size_t j = (i + 1) & mask; m->slots[j].e; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        m->slots[i] = m->slots[j];
        i = j;
    }
    m->slots[i].e = NULL;
    return v;
}

static struct hmap_entry *scan_from(const struct hmap *m, size_t i)
{
    for (; i < m->nslots; i++)
        if (m->slots[i].e)
            return m->slots[i].e;
    return NULL;
}

struct hmap_entry *hmap_first(const struct hmap *m)
{
    return scan_from(m, 0);
}

struct hmap_entry *hmap_next(const struct hmap *m, const struct hmap_entry *e)
{
    size_t mask = m->nslots - 1, i = e->hash & mask;
    while (m->slots[i].e != e) /* e is in the table: its probe reaches it */
        i = (i + 1) & mask;
    return scan_from(m, i + 1);
}
