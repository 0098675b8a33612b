/* Unit tests for fhir_ref: the FHIR id grammar and "<Type>/<id>" references (relative, absolute,
 * versioned). */
#include "fhir_ref.h"
#include "unit.h"

#include <string.h>

static void test_id_valid(void)
{
    char id64[65], id65[66];

    memset(id64, 'a', 64);
    id64[64] = '\0';
    memset(id65, 'b', 65);
    id65[65] = '\0';

    CHECK_INT(fhir_id_valid("a"), 1);
    CHECK_INT(fhir_id_valid("b3084f7e884e4af2b7e23b1dca494abd"), 1);
    CHECK_INT(fhir_id_valid("8f2b1c7e-5d4a-4b3e-9c1f-2a6d7e8f9a0b"), 1);
    CHECK_INT(fhir_id_valid("A.b-C.9"), 1);
    CHECK_INT(fhir_id_valid("-"), 1);
    CHECK_INT(fhir_id_valid(id64), 1);
    CHECK_INT(fhir_id_valid(id65), 0);
    CHECK_INT(fhir_id_valid(""), 0);
    CHECK_INT(fhir_id_valid(NULL), 0);
    CHECK_INT(fhir_id_valid("a/b"), 0);
    CHECK_INT(fhir_id_valid("Patient/x"), 0);
    CHECK_INT(fhir_id_valid("a b"), 0);
    CHECK_INT(fhir_id_valid(" a"), 0);
    CHECK_INT(fhir_id_valid("a\n"), 0);
    CHECK_INT(fhir_id_valid("a_b"), 0);
    CHECK_INT(fhir_id_valid("a:b"), 0);
    CHECK_INT(fhir_id_valid("a%2Fb"), 0);
    CHECK_INT(fhir_id_valid("caf\xc3\xa9"), 0); /* UTF-8 letters are not in the grammar */
}

/* Parses @p ref and returns the id, or NULL when refused. */
static const char *ref(const char *r, const char *want)
{
    static char id[FHIR_ID_MAX + 1];
    memset(id, 'Z', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    return fhir_ref_parse(r, want, id, sizeof(id)) == 0 ? id : NULL;
}

static void test_ref_valid(void)
{
    char buf[128];
    char id64[65];

    CHECK_STR(ref("Patient/x", "Patient"), "x");
    CHECK_STR(ref("Patient/x", NULL), "x");
    CHECK_STR(ref("Patient/b3084f7e884e4af2b7e23b1dca494abd", "Patient"),
              "b3084f7e884e4af2b7e23b1dca494abd");
    CHECK_STR(ref("Questionnaire/47a408d7-9f1d-4cfd-97c7-aa810df9ed39", "Questionnaire"),
              "47a408d7-9f1d-4cfd-97c7-aa810df9ed39");
    /* Canvas's Location header after a create. */
    CHECK_STR(ref("http://fumage-example.canvasmedical.com/Communication/"
                  "0b9c8d7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e/_history/1",
                  "Communication"),
              "0b9c8d7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e");
    CHECK_STR(ref("https://fumage-example.canvasmedical.com/Communication/abc", "Communication"),
              "abc");
    CHECK_STR(ref("https://host/fhir/r4/Patient/p-1", "Patient"), "p-1");
    CHECK_STR(ref("Patient/p-1/_history/7", "Patient"), "p-1");

    memset(id64, '7', 64);
    id64[64] = '\0';
    snprintf(buf, sizeof(buf), "Patient/%s", id64);
    CHECK_STR(ref(buf, "Patient"), id64);
}

static void test_ref_invalid(void)
{
    char buf[128];
    char id65[66], id[FHIR_ID_MAX + 1];

    CHECK(ref("", "Patient") == NULL);
    CHECK(ref(NULL, "Patient") == NULL);
    CHECK(ref("x", NULL) == NULL);  /* no type */
    CHECK(ref("/x", NULL) == NULL); /* empty type */
    CHECK(ref("Patient", "Patient") == NULL);
    CHECK(ref("Patient/", "Patient") == NULL);   /* empty id */
    CHECK(ref("Patient/x/", "Patient") == NULL); /* trailing slash */
    CHECK(ref("Patient//", "Patient") == NULL);
    CHECK(ref("Patient/x//", NULL) == NULL);
    CHECK(ref("Practitioner/x", "Patient") == NULL); /* wrong type */
    CHECK(ref("patient/x", "Patient") == NULL);      /* types are case-sensitive */
    CHECK(ref("Patients/x", "Patient") == NULL);
    CHECK(ref("xPatient/x", "Patient") == NULL);
    CHECK(ref("Patien/x", "Patient") == NULL);
    CHECK(ref("Patient/a b", "Patient") == NULL);
    CHECK(ref("Patient/a_b", "Patient") == NULL);
    CHECK(ref("Patient/x?y=1", "Patient") == NULL);
    CHECK(ref("Patient/x#frag", "Patient") == NULL);
    CHECK(ref("http://host/Practitioner/abc/_history/1", "Communication") == NULL);
    CHECK(ref("http://host/Communication/abc/_history/", "Communication") == NULL);
    CHECK(ref("http://host/Communication/abc/_history/1/", "Communication") == NULL);
    CHECK(ref("http://host/Communication/abc/_history/1/x", "Communication") == NULL);
    CHECK(ref("Patient/_history/1", "Patient") == NULL);

    memset(id65, 'b', 65);
    id65[65] = '\0';
    snprintf(buf, sizeof(buf), "Patient/%s", id65);
    CHECK(ref(buf, "Patient") == NULL); /* 65 characters */

    /* A buffer too small for the id is a refusal, not an overflow. */
    CHECK_INT(fhir_ref_parse("Patient/abcdef", "Patient", id, 4), -1);
    CHECK_INT(fhir_ref_parse("Patient/abc", "Patient", id, 4), 0);
    CHECK_STR(id, "abc");
}

int main(void)
{
    test_id_valid();
    test_ref_valid();
    test_ref_invalid();
    return UNIT_DONE();
}
