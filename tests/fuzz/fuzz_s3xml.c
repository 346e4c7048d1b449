/*
 * fuzz_s3xml.c - what drover reads of an S3 service's XML answers: character data with
 * entities (blob_s3_xml_text, used for keys, error codes and messages, upload ids).
 *
 * Checks: text with a NUL (which XML cannot hold) is refused, so that a key is never cut
 * short at one; a result is no longer than its input (no entity grows); text without '&'
 * comes back as it is.
 */
#include <string.h>

#include "blob/blob_int.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *t = blob_s3_xml_text((const char *)data, size);
    if (!t) {
        FUZZ_CHECK(memchr(data, '&', size) || memchr(data, '\0', size));
        return 0;
    }
    /* XML holds no NUL: one in the answer is refused, never a key cut short at it */
    FUZZ_CHECK(!memchr(data, '\0', size));
    size_t n = strlen(t);
    FUZZ_CHECK(n <= size);
    if (!memchr(data, '&', size)) FUZZ_CHECK(n == size && !memcmp(t, data, n));
    free(t);
    return 0;
}
