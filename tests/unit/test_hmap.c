/*
 * test_hmap.c - the hash map (common/hmap.c) against a plain array of the
 * same keys: puts, replacements, gets and removals in a fixed pseudo-random
 * order over a key space small enough for long probe runs and wrap-arounds,
 * with iteration checked to visit each entry once.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>

#include <cmocka.h>

#include "common/hmap.h"

#define KEYS 3000

static uint64_t rnd_state = 88172645463325252ull;

static uint64_t rnd(void) /* xorshift64: the same sequence every run */
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

static int values[KEYS]; /* the map's values point here: &values[k] is key k's */

static int key_set; /* keys of different sets hash to different slots */

static void key_of(int k, char *out, size_t n)
{
    snprintf(out, n, "job-%d-%d", key_set, k);
}

/* Every key: in the map exactly when the model says, with its value; the count agrees. */
static void check(const struct hmap *m, const bool *in, int nkeys)
{
    size_t count = 0;
    for (int k = 0; k < nkeys; k++) {
        char key[32];
        key_of(k, key, sizeof(key));
        void *v = hmap_get(m, key);
        if (in[k] ? v != &values[k] : v != NULL)
            fail_msg("key %s: %p, expected %p", key, v, in[k] ? (void *)&values[k] : NULL);
        count += in[k];
    }
    assert_int_equal(m->count, count);
    bool *seen = calloc(KEYS, sizeof(*seen));
    size_t visited = 0;
    for (struct hmap_entry *e = hmap_first(m); e; e = hmap_next(m, e)) {
        int k = (int)((int *)e->value - values);
        assert_true(k >= 0 && k < KEYS && in[k] && !seen[k]);
        char key[32];
        key_of(k, key, sizeof(key));
        assert_string_equal(e->key, key);
        seen[k] = true;
        visited++;
    }
    assert_int_equal(visited, count);
    free(seen);
}

/* nkeys <= KEYS: few keys keep the table small, where runs often wrap past its end */
static void agrees_with_a_model(int nkeys, int rounds)
{
    struct hmap m;
    hmap_init(&m);
    assert_null(hmap_get(&m, "absent"));
    assert_null(hmap_del(&m, "absent"));
    assert_null(hmap_first(&m));
    bool in[KEYS] = {false};
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < 2 * nkeys && i < 2000; i++) {
            int k = (int)(rnd() % (uint64_t)nkeys);
            char key[32];
            key_of(k, key, sizeof(key));
            /* grow in the early rounds, shrink in the later ones: long runs of removals */
            bool put = rnd() % 100 < (round < rounds / 2 ? 70u : 30u);
            if (put) {
                void *old = hmap_put(&m, key, &values[k]);
                assert_ptr_equal(old, in[k] ? &values[k] : NULL);
                in[k] = true;
            } else {
                void *old = hmap_del(&m, key);
                assert_ptr_equal(old, in[k] ? &values[k] : NULL);
                in[k] = false;
            }
        }
        check(&m, in, nkeys);
    }
    hmap_release(&m, NULL);
    assert_int_equal(m.count, 0);
    assert_null(hmap_get(&m, "job-0-1"));
}

static void test_map_agrees_with_a_model(void **state)
{
    agrees_with_a_model(KEYS, 40);
}

static void test_a_small_map_agrees_with_a_model(void **state)
{
    for (key_set = 1; key_set <= 100; key_set++) /* runs that wrap past the table's end */
        agrees_with_a_model(40, 40);
    key_set = 0;
}

static int freed;

static void count_free(void *v)
{
    freed++;
}

static void test_release_frees_each_value_once(void **state)
{
    struct hmap m;
    hmap_init(&m);
    for (int k = 0; k < 500; k++) {
        char key[32];
        key_of(k, key, sizeof(key));
        hmap_put(&m, key, &values[k]);
    }
    for (int k = 0; k < 500; k += 2) {
        char key[32];
        key_of(k, key, sizeof(key));
        assert_ptr_equal(hmap_del(&m, key), &values[k]);
    }
    freed = 0;
    hmap_release(&m, count_free);
    assert_int_equal(freed, 250);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_agrees_with_a_model),
        cmocka_unit_test(test_a_small_map_agrees_with_a_model),
        cmocka_unit_test(test_release_frees_each_value_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
