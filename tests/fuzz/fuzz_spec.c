/*
 * fuzz_spec.c - job specs as POST /v1/jobs takes them: JSON text (duplicate keys refused,
 * as the router does) into spec_parse, a top-level array as a batch ("[i]" paths).
 *
 * Checks: an error is ERR_INVALID with a message; the input is not modified; a parsed spec's
 * views are in their ranges; its normalised form parses again to itself, also after a trip
 * through JSON text (what the store keeps); the stored form (spec_compact) expands to what
 * the whole one expands to; the whole form (what GET shows) submitted again is the same job;
 * the helpers that read a normalised spec do not crash on it.
 */
#include <jansson.h>

#include "fuzz.h"
#include "job/protocol.h"
#include "job/spec.h"

static void check_parsed(const struct job_spec *s)
{
    FUZZ_CHECK(json_is_object(s->json));
    FUZZ_CHECK(s->queue && spec_queue_name_valid(s->queue));
    FUZZ_CHECK(s->priority >= -1000 && s->priority <= 1000);
    FUZZ_CHECK(s->slots >= 1 && s->slots <= PROTO_SLOTS_MAX);
    FUZZ_CHECK(s->max_attempts >= 1 && s->max_attempts <= SPEC_ATTEMPTS_MAX);
    FUZZ_CHECK(s->delay_s >= 0 && s->timeout_s >= 0);
    FUZZ_CHECK(s->retention_s >= 0 && s->retention_s <= SPEC_RETENTION_MAX_S);
    FUZZ_CHECK(!s->requires || json_is_object(s->requires));

    /* normalising is idempotent */
    struct job_spec again;
    struct err e = ERR_INIT;
    int rc = spec_parse(s->json, NULL, &again, &e);
    if (rc) fprintf(stderr, "normalised spec refused: %s (%s)\n", e.msg, e.field);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(json_equal(again.json, s->json));
    spec_release(&again);

    /* through text, as stored */
    char *text = json_dumps(s->json, JSON_COMPACT);
    FUZZ_CHECK(text);
    json_t *back = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    FUZZ_CHECK(back && json_equal(back, s->json));
    json_decref(back);
    free(text);

    /* the stored form comes back as the whole one */
    json_t *c = spec_compact(s->json);
    json_t *from_c = spec_expand(json_deep_copy(c));
    json_t *from_whole = spec_expand(json_deep_copy(s->json));
    FUZZ_CHECK(json_equal(from_c, from_whole));
    /* what GET shows (every default written in), submitted again, is the same job */
    struct job_spec resubmitted;
    rc = spec_parse(from_whole, NULL, &resubmitted, &e);
    if (rc) fprintf(stderr, "the expanded spec is refused: %s (%s)\n", e.msg, e.field);
    FUZZ_CHECK(rc == 0);
    json_t *again_whole = spec_expand(json_deep_copy(resubmitted.json));
    FUZZ_CHECK(json_equal(again_whole, from_whole));
    json_decref(again_whole);
    spec_release(&resubmitted);
    FUZZ_CHECK(spec_get(s->json, "slots") && spec_get(s->json, "queue"));
    json_decref(c);
    json_decref(from_c);
    json_decref(from_whole);

    struct spec_uri uris[8];
    size_t n = spec_uris(s->json, uris, 8);
    for (size_t i = 0; i < n && i < 8; i++)
        FUZZ_CHECK(uris[i].uri);
    (void)spec_runtimes(s->json);
    struct spec_resources r;
    spec_resources_get(s->json, &r);
    FUZZ_CHECK(r.memory_mb >= 0 && r.cpus >= 0 && r.pids >= 0);
    json_t *command = json_object_get(s->json, "command");
    struct spec_clash clash;
    /* spec_parse refuses a clash, so a parsed spec has none */
    FUZZ_CHECK(!spec_input_clash(json_object_get(command, "arguments"), &clash));
}

static void one(json_t *in, const char *path)
{
    json_t *copy = json_deep_copy(in);
    struct job_spec s;
    struct err e = ERR_INIT;
    int rc = spec_parse(in, path, &s, &e);
    FUZZ_CHECK(json_equal(copy, in));
    json_decref(copy);
    if (rc) {
        FUZZ_CHECK(rc == ERR_INVALID && e.code == ERR_INVALID && e.msg[0]);
        return;
    }
    check_parsed(&s);
    spec_release(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *in = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!in) return 0;
    if (json_is_array(in)) {
        size_t i;
        json_t *v;
        json_array_foreach(in, i, v)
        {
            char path[32];
            snprintf(path, sizeof(path), "[%zu]", i);
            one(v, path);
            if (i >= 8) break;
        }
    } else {
        one(in, NULL);
    }
    json_decref(in);
    return 0;
}
