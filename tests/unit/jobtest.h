/*
 * jobtest.h - what the unit tests of jobs share: a queued job made the real
 * way (spec text -> spec_parse -> job_from_spec). Include after cmocka.h.
 */
#ifndef DROVER_TEST_JOBTEST_H
#define DROVER_TEST_JOBTEST_H

#include <jansson.h>

#include "job/job.h"
#include "job/spec.h"

static inline void make_job(struct job *j, const char *spec_text, int64_t now)
{
    json_error_t je;
    json_t *in = json_loads(spec_text, 0, &je);
    assert_non_null(in);
    struct job_spec spec;
    struct err e = ERR_INIT;
    assert_int_equal(spec_parse(in, NULL, &spec, &e), 0);
    job_from_spec(j, &spec, now);
    spec_release(&spec);
    json_decref(in);
}

#endif
