/* FHIR ids and references ("Patient/<id>") as Canvas uses them. */
#ifndef PM_FHIR_REF_H
#define PM_FHIR_REF_H

#include <stddef.h>

#define FHIR_ID_MAX 64

/** @returns 1 when @p id matches FHIR's id grammar [A-Za-z0-9\-.]{1,64}, else 0. */
int fhir_id_valid(const char *id);

/**
 * @brief Split a relative reference "<Type>/<id>" (an absolute URL ending in "/<Type>/<id>",
 *        optionally followed by "/_history/<n>", is accepted too).
 * @param want_type when not NULL, the type must equal it.
 * @returns 0 with the id copied into @p id (FHIR_ID_MAX + 1 bytes), or -1.
 */
int fhir_ref_parse(const char *ref, const char *want_type, char *id, size_t idlen);

#endif
