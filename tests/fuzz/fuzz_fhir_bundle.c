/* libFuzzer target: Canvas answers pm-deliver parses (search Bundles, OperationOutcome errors). */
#include "fhir.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = NULL;
    char msg[512] = "GET Patient: 404", code[64];
    json_t *list = fhir_bundle_resources((const char *)data, size, &why);

    if (list) {
        size_t i;
        json_t *r;
        json_array_foreach(list, i, r)
        {
            if (!json_is_object(r))
                abort(); /* only resources come out */
        }
        json_decref(list);
    } else if (!why) {
        abort(); /* a rejection says why */
    }
    fhir_outcome_describe((const char *)data, size, msg, sizeof(msg), code, sizeof(code));
    if (strlen(msg) >= sizeof(msg) || strncmp(msg, "GET Patient: 404", 16) != 0)
        abort(); /* appends within bounds, never rewrites what was there */
    for (const char *c = code; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || *c == '-' || *c == '_'))
            abort(); /* the code is safe to log */
    return 0;
}
