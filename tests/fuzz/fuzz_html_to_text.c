/* libFuzzer target: deliver_html_to_text on any bytes; its output must be valid, trimmed UTF-8. */
#include "deliver.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 1 when @p s is well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF). */
static int fuzz_utf8_valid(const unsigned char *s)
{
    while (*s) {
        unsigned cp;
        size_t n;

        if (*s < 0x80) {
            s++;
            continue;
        }
        if (*s >= 0xc2 && *s <= 0xdf)
            n = 2, cp = *s & 0x1fu;
        else if (*s >= 0xe0 && *s <= 0xef)
            n = 3, cp = *s & 0x0fu;
        else if (*s >= 0xf0 && *s <= 0xf4)
            n = 4, cp = *s & 0x07u;
        else
            return 0;
        for (size_t i = 1; i < n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i] & 0x3fu);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        s += n;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1), *out;
    size_t n;

    if (!in)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0'; /* the content is a C string: everything after an embedded NUL is ignored */
    out = deliver_html_to_text(in);
    if (!out)
        abort(); /* only out of memory may give NULL, and the fuzzer's inputs are small */
    /* Invariants a caller relies on: jansson takes the text (valid UTF-8), and it is trimmed. */
    if (!fuzz_utf8_valid((const unsigned char *)out))
        abort();
    n = strlen(out);
    if (n > 0 && (strchr(" \t\n\r\v\f", out[0]) || strchr(" \t\n\r\v\f", out[n - 1])))
        abort();
    (void)deliver_is_html(in);
    free(out);
    free(in);
    return 0;
}
