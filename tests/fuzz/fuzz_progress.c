/*
 * fuzz_progress.c - what an agent reads of a running job's own bytes: its progress file
 * ($DROVER_PROGRESS, progress_parse_last on its tail) and its output turned into the
 * protocol's UTF-8 text (utf8_sanitize, utf8_cut).
 *
 * Input: the first byte's low bits choose partial_first and final; the rest is the text.
 * Checks: a percent is within 0..100; a message is valid UTF-8 of at most
 * PROTO_PROGRESS_MESSAGE_MAX bytes (jansson takes it); sanitized output is valid UTF-8 (jansson
 * takes it), consumes everything when final and leaves at most 3 bytes otherwise, and is
 * the input itself when that was valid; a cut never splits a character.
 */
#include <jansson.h>
#include <string.h>

#include "agent/progress.h"
#include "agent/utf8.h"
#include "common/buf.h"
#include "fuzz.h"

static bool valid_utf8(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n); /* NULL for invalid UTF-8 */
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    bool partial_first = data[0] & 1, final = data[0] & 2;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;

    double percent = -1;
    char *message = NULL;
    if (progress_parse_last(text, n, partial_first, final, &percent, &message)) {
        FUZZ_CHECK(percent >= 0 && percent <= PROTO_PERCENT_MAX);
        if (message) {
            size_t ml = strlen(message);
            FUZZ_CHECK(ml <= PROTO_PROGRESS_MESSAGE_MAX && valid_utf8(message, ml));
        }
        free(message);
    }

    struct buf out = BUF_INIT;
    size_t used = utf8_sanitize(&out, text, n, final);
    FUZZ_CHECK(used <= n && (final ? used == n : n - used <= 3));
    FUZZ_CHECK(valid_utf8(out.data ? out.data : "", out.len));
    if (valid_utf8(text, n) && final) FUZZ_CHECK(out.len == n && !memcmp(out.data, text, n));
    for (size_t max = 0; max < 8 && out.len; max += 3) {
        size_t cut = utf8_cut(out.data, out.len, max);
        FUZZ_CHECK(cut <= out.len && (out.len <= max ? cut == out.len : cut <= max));
        FUZZ_CHECK(valid_utf8(out.data, cut));
    }
    buf_release(&out);
    return 0;
}
