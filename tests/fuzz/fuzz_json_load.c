/* libFuzzer target: json_load_fast against json_loadb, with and without JSON_REJECT_DUPLICATES:
 * equal values, or both refusing with the same error text and position. The first input byte
 * picks the flags. */
#include "json_load.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t e1, e2;
    size_t flags;
    json_t *fast, *ref;

    if (size == 0)
        return 0;
    flags = (data[0] & 1) ? JSON_REJECT_DUPLICATES : 0;
    data++;
    size--;
    fast = json_load_fast((const char *)data, size, flags, &e1);
    ref = json_loadb((const char *)data, size, flags, &e2);
    if ((fast == NULL) != (ref == NULL))
        abort();
    if (fast && !json_equal(fast, ref))
        abort();
    if (!fast && (strcmp(e1.text, e2.text) != 0 || e1.position != e2.position))
        abort();
    json_decref(fast);
    json_decref(ref);
    return 0;
}
