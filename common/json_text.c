/* JSON serialisation into buffers sized once. */
#include "json_text.h"

#include <stdlib.h>
#include <string.h>

#define JSON_TEXT_STACK 8192

char *json_text_dumpb(const json_t *j, size_t flags, char *buf, size_t size, size_t *len)
{
    size_t n;
    char *big;

    if (!j || !buf || size == 0)
        return NULL;
    n = json_dumpb(j, buf, size - 1, flags);
    if (n == 0)
        return NULL; /* not serialisable (json_dumpb writes at least "{}" for anything valid) */
    if (n < size) {
        buf[n] = '\0';
        if (len)
            *len = n;
        return buf;
    }
    big = malloc(n + 1);
    if (!big || json_dumpb(j, big, n, flags) != n) {
        free(big);
        return NULL;
    }
    big[n] = '\0';
    if (len)
        *len = n;
    return big;
}

char *json_text_dump(const json_t *j, size_t flags, size_t *len)
{
    char stack[JSON_TEXT_STACK];
    size_t n = 0;
    char *s = json_text_dumpb(j, flags, stack, sizeof(stack), &n);
    char *out;

    if (s != stack)
        out = s; /* NULL, or already malloc'd at its exact size */
    else if ((out = malloc(n + 1)) != NULL)
        memcpy(out, stack, n + 1);
    if (out && len)
        *len = n;
    return out;
}
