/*
 * utf8.c - see utf8.h. A hand-written decoder because none of our libraries
 * exposes "replace the ill-formed parts" (jansson only refuses them).
 */
#include "agent/utf8.h"

/* Length of the sequence a lead byte starts (0: not a lead byte), and the range of the 2nd byte. */
static int lead_info(unsigned char b, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) {
        if (b == 0xE0) *lo = 0xA0; /* no overlongs */
        if (b == 0xED) *hi = 0x9F; /* no surrogates */
        return 3;
    }
    if (b >= 0xF0 && b <= 0xF4) {
        if (b == 0xF0) *lo = 0x90;
        if (b == 0xF4) *hi = 0x8F; /* at most U+10FFFF */
        return 4;
    }
    return 0;
}

size_t utf8_sanitize(struct buf *out, const char *src, size_t n, bool final)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0, run = 0; /* run: start of the valid bytes not yet copied */
    buf_grow(out, n);
    while (i < n) {
        unsigned char lo, hi;
        int len = lead_info(s[i], &lo, &hi);
        if (len == 1) {
            i++;
            continue;
        }
        size_t k = 1; /* bytes of the sequence seen valid */
        if (len > 0) {
            while (k < (size_t)len && i + k < n) {
                unsigned char b = s[i + k];
                bool ok = k == 1 ? b >= lo && b <= hi : b >= 0x80 && b <= 0xBF;
                if (!ok) break;
                k++;
            }
            if (k == (size_t)len) {
                i += k;
                continue;
            }
            if (i + k == n && !final) {
                /* valid so far, cut short by the end of the input: keep for later */
                buf_add(out, src + run, i - run);
                return i;
            }
        }
        buf_add(out, src + run, i - run);
        buf_add(out, UTF8_REPLACEMENT, 3);
        i += k; /* a bad lead byte is one subpart; a truncated sequence is all of its bytes */
        run = i;
    }
    buf_add(out, src + run, n - run);
    return n;
}

size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max) return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}
