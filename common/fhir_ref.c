/* FHIR id grammar and "<Type>/<id>" reference parsing (also Location headers with _history). */
#include "fhir_ref.h"

#include <ctype.h>
#include <string.h>

int fhir_id_valid(const char *id)
{
    size_t n = 0;
    if (!id)
        return 0;
    for (const char *p = id; *p; p++, n++) {
        if (n >= FHIR_ID_MAX)
            return 0;
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
            return 0;
    }
    return n > 0;
}

int fhir_ref_parse(const char *ref, const char *want_type, char *id, size_t idlen)
{
    const char *end, *slash, *type;
    size_t n, tn;

    if (!ref || !*ref)
        return -1;
    end = ref + strlen(ref);
    /* ".../<Type>/<id>/_history/<n>": drop the version part first (it must be an id itself).
     * A trailing '/' is not part of the grammar: "Patient/x/" is refused, not read as x. */
    {
        const char *h = strstr(ref, "/_history/");
        if (h) {
            if (!fhir_id_valid(h + 10))
                return -1;
            end = h;
        }
    }
    slash = end;
    while (slash > ref && slash[-1] != '/')
        slash--;
    n = (size_t)(end - slash);
    if (n == 0 || n >= idlen || slash == ref)
        return -1;
    type = slash - 1; /* the '/' before the id */
    while (type > ref && type[-1] != '/')
        type--;
    tn = (size_t)(slash - 1 - type);
    if (tn == 0)
        return -1;
    if (want_type && (strlen(want_type) != tn || strncmp(type, want_type, tn) != 0))
        return -1;
    memcpy(id, slash, n);
    id[n] = '\0';
    return fhir_id_valid(id) ? 0 : -1;
}
