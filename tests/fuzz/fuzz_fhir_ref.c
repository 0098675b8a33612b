/* libFuzzer target: FHIR references and Location headers (Canvas creates answer with the id there).
 */
#include "fhir_ref.h"
#include "timefmt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char buf[1024], id[FHIR_ID_MAX + 1];
    if (size >= sizeof(buf))
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    if (fhir_ref_parse(buf, NULL, id, sizeof(id)) == 0 && !fhir_id_valid(id))
        abort(); /* whatever is parsed out must itself be a valid id */
    if (fhir_ref_parse(buf, "Communication", id, sizeof(id)) == 0 && !strstr(buf, id))
        abort();
    timefmt_rfc3339_parse(buf, NULL);
    return 0;
}
