/* libFuzzer target: the CloudEvents decoder pm-deliver runs on every record it consumes. */
#include "cloudevent.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cloudevent ce;
    char err[256];
    if (cloudevent_parse(data, size, &ce, err, sizeof(err)) == 0) {
        if (!ce.id || !ce.type || !ce.source || !json_is_object(ce.data))
            abort();
        cloudevent_clear(&ce);
    } else if (!err[0]) {
        abort(); /* a rejection always says why */
    }
    return 0;
}
