/* libFuzzer target: every pm-ingest body mapper on any bytes (JSON parse, validation, event build).
 */
#include "cloudevent.h"
#include "ingest.h"
#include "problem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    /* The first byte picks the route, as three routes share the mapper. */
    enum ingest_kind kind = size ? (enum ingest_kind)(data[0] % 3) : INGEST_MESSAGE;
    json_t *body =
        size ? json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    json_t *pb;
    struct ingest_event ev;

    if (!body)
        return 0;
    pb = problem_new(400, "urn:pm:problem:invalid-fields", NULL);
    if (ingest_map(kind, body, &ev, pb) == 0) {
        /* An accepted body must make a well-formed event that pm-deliver can decode. */
        char err[256];
        struct cloudevent ce;
        json_t *e = cloudevent_new("fuzz", "pm-ingest", ev.type, ev.time, "Patient/x", ev.data);
        char *s = json_dumps(e, JSON_COMPACT);
        if (!s || cloudevent_parse(s, strlen(s), &ce, err, sizeof(err)) != 0 ||
            ev.patient_id[0] == '\0')
            abort();
        cloudevent_clear(&ce);
        free(s);
        json_decref(e);
    } else if (problem_error_count(pb) == 0) {
        abort(); /* a rejection always names at least one field */
    }
    json_decref(pb);
    json_decref(body);
    return 0;
}
