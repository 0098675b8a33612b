/* UTF-8 decoding shared by the logger, the HTML-to-text converter, the sandbox and the consumer. */
#include "utf8.h"

#include <string.h>

size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    size_t n;
    uint32_t v;

    if (len == 0)
        return 0;
    if (s[0] < 0x80) {
        if (cp)
            *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
        v = s[0] & 0x1fu;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        v = s[0] & 0x0fu;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        v = s[0] & 0x07u;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        /* Checked byte by byte, so a NUL (not a continuation byte) stops the reading. */
        if (i >= len || (s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3fu);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10ffff)) ||
        (v >= 0xd800 && v <= 0xdfff))
        return 0;
    if (cp)
        *cp = v;
    return n;
}

size_t utf8_lossy(char *dst, size_t dstlen, const char *src)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t out = 0;

    if (dstlen == 0)
        return 0;
    while (*p) {
        size_t n = utf8_decode(p, (size_t)-1, NULL);
        const char *from = n ? (const char *)p : "\xef\xbf\xbd";
        size_t len = n ? n : 3;
        if (out + len >= dstlen)
            break; /* no room for the whole character: cut before it */
        memcpy(dst + out, from, len);
        out += len;
        p += n ? n : 1;
    }
    dst[out] = '\0';
    return out;
}
