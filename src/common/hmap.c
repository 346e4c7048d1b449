/* hmap.c - see hmap.h. FNV-1a hashing; the table doubles when it holds as many entries as buckets. */
#include "common/hmap.h"

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
    m->buckets = NULL;
    m->nbuckets = 0;
    m->count = 0;
}

void hmap_release(struct hmap *m, void (*free_value)(void *))
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct hmap_entry *e = m->buckets[i];
        while (e) {
            struct hmap_entry *next = e->next;
            if (free_value)
                free_value(e->value);
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    hmap_init(m);
}

static struct hmap_entry **slot(const struct hmap *m, const char *key, size_t h)
{
    struct hmap_entry **p = &m->buckets[h & (m->nbuckets - 1)];
    while (*p && ((*p)->hash != h || strcmp((*p)->key, key)))
        p = &(*p)->next;
    return p;
}

void *hmap_get(const struct hmap *m, const char *key)
{
    if (!m->count)
        return NULL;
    struct hmap_entry *e = *slot(m, key, hash(key));
    return e ? e->value : NULL;
}

static void grow(struct hmap *m)
{
    size_t n = m->nbuckets ? m->nbuckets * 2 : 64;
    struct hmap_entry **b = xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct hmap_entry *e = m->buckets[i];
        while (e) {
            struct hmap_entry *next = e->next;
            size_t h = e->hash & (n - 1);
            e->next = b[h];
            b[h] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

void *hmap_put(struct hmap *m, const char *key, void *value)
{
    if (m->count >= m->nbuckets)
        grow(m);
    size_t h = hash(key);
    struct hmap_entry **p = slot(m, key, h);
    if (*p) {
        void *old = (*p)->value;
        (*p)->value = value;
        return old;
    }
    size_t len = strlen(key) + 1;
    struct hmap_entry *e = xmalloc(sizeof(*e) + len);
    e->key = memcpy(e + 1, key, len);
    e->value = value;
    e->next = NULL;
    e->hash = h;
    *p = e;
    m->count++;
    return NULL;
}

void *hmap_del(struct hmap *m, const char *key)
{
    if (!m->count)
        return NULL;
    struct hmap_entry **p = slot(m, key, hash(key));
    struct hmap_entry *e = *p;
    if (!e)
        return NULL;
    void *v = e->value;
    *p = e->next;
    free(e);
    m->count--;
    return v;
}

static struct hmap_entry *scan_from(const struct hmap *m, size_t i)
{
    for (; i < m->nbuckets; i++)
        if (m->buckets[i])
            return m->buckets[i];
    return NULL;
}

struct hmap_entry *hmap_first(const struct hmap *m)
{
    return scan_from(m, 0);
}

struct hmap_entry *hmap_next(const struct hmap *m, const struct hmap_entry *e)
{
    if (e->next)
        return e->next;
    return scan_from(m, (e->hash & (m->nbuckets - 1)) + 1);
}
