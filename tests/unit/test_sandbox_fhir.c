/* Unit tests for pm-sandbox's Canvas rules: Communication and QuestionnaireResponse validation,
 * the resource store and Canvas-shaped search bundles. */
#include "sandbox.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

#define PAT      "b3084f7e884e4af2b7e23b1dca494abd"
#define DOC      "4150cd20de8a470aa570a852859ac87e"
#define STAFF    "9cdb7a92d6614dcfa7948f2143a9f8e8"
#define QID      "47a408d7-9f1d-4cfd-97c7-aa810df9ed39"
#define Q_SINGLE "d82e29db-0cac-4b97-a5aa-9e81749686e2"
#define Q_MULTI  "3c2b1a09-8f7e-4d6c-b5a4-9382716a5b4c"
#define Q_TEXT   "7eb053cd-cb2d-435f-8f55-f154645b55c4"
#define SCT      "http://snomed.info/sct"

static struct sandbox_store *load_builtin(void)
{
    json_error_t jerr;
    char err[256];
    struct sandbox_store *st = sandbox_store_new();
    json_t *fx =
        json_loadb((const char *)sandbox_builtin_fixtures, sandbox_builtin_fixtures_len, 0, &jerr);
    CHECK(fx != NULL);
    CHECK_INT(sandbox_store_load(st, fx, err, sizeof(err)), 0);
    json_decref(fx);
    return st;
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);
    if (!v)
        fprintf(stderr, "bad test JSON: %s\n", jerr.text);
    return v;
}

/* Validates @p text as a Communication create; @returns the status (0 = valid). */
static int comm_status(struct sandbox_store *st, const char *text, struct sandbox_outcome *o)
{
    json_t *body = parse(text);
    int rc = sandbox_communication_validate(st, body, o);
    json_decref(body);
    return rc == 0 ? 0 : o->status;
}

static void test_communication(struct sandbox_store *st)
{
    struct sandbox_outcome o;
    json_t *body, *stored;

    /* The create body of canvas-examples.json: a patient reply to a practitioner. */
    CHECK_INT(comm_status(st,
                          "{\"resourceType\":\"Communication\",\"status\":\"unknown\","
                          "\"sent\":\"2026-03-02T15:04:05Z\",\"recipient\":[{\"reference\":"
                          "\"Practitioner/" STAFF "\"}],\"sender\":{\"reference\":\"Patient/" PAT
                          "\"},\"payload\":[{\"contentString\":\"Thank you!\"}]}",
                          &o),
              0);
    /* Unsupported fields are rejected, not ignored. */
    CHECK_INT(comm_status(st,
                          "{\"status\":\"unknown\",\"inResponseTo\":[{\"reference\":"
                          "\"Communication/x\"}],\"recipient\":[{\"reference\":\"Practitioner/" DOC
                          "\"}],\"sender\":{\"reference\":\"Patient/" PAT
                          "\"},\"payload\":[{\"contentString\":\"x\"}]}",
                          &o),
              400);
    CHECK(strstr(o.text, "inResponseTo") != NULL);
    CHECK_STR(o.code, "invalid");
    /* Empty strings anywhere. */
    CHECK_INT(
        comm_status(st,
                    "{\"status\":\"unknown\",\"recipient\":[{\"reference\":\"Practitioner/" DOC
                    "\"}],\"sender\":{\"reference\":\"Patient/" PAT
                    "\"},\"payload\":[{\"contentString\":\"\"}]}",
                    &o),
        400);
    CHECK_STR(o.text, "String values must be at least length 1");
    /* Missing status, two recipients, no payload. */
    CHECK_INT(comm_status(st,
                          "{\"recipient\":[{\"reference\":\"Practitioner/" DOC
                          "\"}],\"sender\":{\"reference\":\"Patient/" PAT
                          "\"},\"payload\":[{\"contentString\":\"x\"}]}",
                          &o),
              400);
    CHECK_INT(
        comm_status(st,
                    "{\"status\":\"unknown\",\"recipient\":[{\"reference\":\"Practitioner/" DOC
                    "\"},{\"reference\":\"Practitioner/" STAFF
                    "\"}],\"sender\":{\"reference\":\"Patient/" PAT
                    "\"},\"payload\":[{\"contentString\":\"x\"}]}",
                    &o),
        400);
    CHECK_INT(
        comm_status(st,
                    "{\"status\":\"unknown\",\"recipient\":[{\"reference\":\"Practitioner/" DOC
                    "\"}],\"sender\":{\"reference\":\"Patient/" PAT "\"}}",
                    &o),
        400);
    /* Patient to patient, and an unknown patient: business rules. */
    CHECK_INT(comm_status(st,
                          "{\"status\":\"unknown\",\"recipient\":[{\"reference\":\"Patient/" PAT
                          "\"}],\"sender\":{\"reference\":\"Patient/" PAT
                          "\"},\"payload\":[{\"contentString\":\"x\"}]}",
                          &o),
              422);
    CHECK_STR(o.code, "business-rule");
    CHECK_INT(
        comm_status(st,
                    "{\"status\":\"unknown\",\"recipient\":[{\"reference\":\"Practitioner/" DOC
                    "\"}],\"sender\":{\"reference\":\"Patient/0123456789abcdef0123456789abcdef"
                    "\"},\"payload\":[{\"contentString\":\"x\"}]}",
                    &o),
        422);
    CHECK(strstr(o.text, "Unknown Patient resource") != NULL);

    /* What is stored: completed, sent defaulted, reference types filled in. */
    body = parse("{\"status\":\"unknown\",\"recipient\":[{\"reference\":\"Practitioner/" DOC
                 "\"}],\"sender\":{\"reference\":\"Patient/" PAT
                 "\"},\"payload\":[{\"contentString\":\"hi\"}]}");
    stored = sandbox_communication_normalize(body, "11111111-2222-4333-8444-555555555555",
                                             "2026-03-02T15:04:05.000000+00:00");
    CHECK_STR(json_string_value(json_object_get(stored, "status")), "completed");
    CHECK_STR(json_string_value(json_object_get(stored, "sent")),
              "2026-03-02T15:04:05.000000+00:00");
    CHECK_STR(json_string_value(json_object_get(json_object_get(stored, "sender"), "type")),
              "Patient");
    CHECK(json_object_get(stored, "received") == NULL);
    json_decref(stored);
    json_decref(body);
}

static json_t *qr_body(const char *items)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "{\"resourceType\":\"QuestionnaireResponse\",\"questionnaire\":\"Questionnaire/" QID
             "\",\"status\":\"completed\",\"subject\":{\"reference\":\"Patient/" PAT
             "\"},\"item\":%s}",
             items);
    return parse(text);
}

static int qr_status(struct sandbox_store *st, const char *items, struct sandbox_outcome *o)
{
    json_t *body = qr_body(items);
    int rc = sandbox_qr_validate(st, body, o);
    json_decref(body);
    return rc == 0 ? 0 : o->status;
}

static void test_questionnaire_response(struct sandbox_store *st)
{
    struct sandbox_outcome o;
    json_t *body, *stored;

    CHECK_INT(
        qr_status(st,
                  "[{\"linkId\":\"" Q_SINGLE "\",\"answer\":[{\"valueCoding\":{\"system\":\"" SCT
                  "\",\"code\":\"LA33-6\",\"display\":\"Yes\"}}]},"
                  "{\"linkId\":\"" Q_MULTI "\",\"answer\":[{\"valueCoding\":{\"system\":\"" SCT
                  "\",\"code\":\"EXACT_WALK\"}},{\"valueCoding\":{\"system\":\"" SCT
                  "\",\"code\":\"EXACT_SWIM\"}}]},"
                  "{\"linkId\":\"" Q_TEXT "\",\"answer\":[{\"valueString\":\"Swimming\"}]}]",
                  &o),
        0);
    /* A code the question does not offer. */
    CHECK_INT(qr_status(st,
                        "[{\"linkId\":\"" Q_SINGLE
                        "\",\"answer\":[{\"valueCoding\":{\"system\":\"" SCT
                        "\",\"code\":\"LA99-9\"}}]}]",
                        &o),
              422);
    CHECK_STR(o.text, "Question received an invalid response option code: LA99-9");
    /* The right code in the wrong system. */
    CHECK_INT(qr_status(st,
                        "[{\"linkId\":\"" Q_SINGLE "\",\"answer\":[{\"valueCoding\":{\"system\":"
                        "\"http://loinc.org\",\"code\":\"LA33-6\"}}]}]",
                        &o),
              422);
    CHECK(strstr(o.text, "system") != NULL);
    /* Two answers to a single choice; a valueString on a choice item; a coding on a text item. */
    CHECK_INT(qr_status(st,
                        "[{\"linkId\":\"" Q_SINGLE
                        "\",\"answer\":[{\"valueCoding\":{\"system\":\"" SCT
                        "\",\"code\":\"LA33-6\"}},{\"valueCoding\":{\"system\":\"" SCT
                        "\",\"code\":\"LA32-8\"}}]}]",
                        &o),
              422);
    CHECK_INT(
        qr_status(st, "[{\"linkId\":\"" Q_SINGLE "\",\"answer\":[{\"valueString\":\"Yes\"}]}]", &o),
        422);
    CHECK_INT(qr_status(st,
                        "[{\"linkId\":\"" Q_TEXT
                        "\",\"answer\":[{\"valueCoding\":{\"system\":\"" SCT
                        "\",\"code\":\"EXTYPE_A1\"}}]}]",
                        &o),
              422);
    /* valueInteger is no answer type Canvas takes; an unknown linkId; an empty string. */
    CHECK_INT(qr_status(st, "[{\"linkId\":\"" Q_TEXT "\",\"answer\":[{\"valueInteger\":3}]}]", &o),
              422);
    CHECK_INT(qr_status(st, "[{\"linkId\":\"nope\",\"answer\":[{\"valueString\":\"x\"}]}]", &o),
              422);
    CHECK_INT(
        qr_status(st, "[{\"linkId\":\"" Q_TEXT "\",\"answer\":[{\"valueString\":\"\"}]}]", &o),
        400);

    /* Structural problems of the envelope. */
    body = parse("{\"questionnaire\":{\"reference\":\"Questionnaire/" QID
                 "\"},\"status\":\"completed\",\"subject\":{\"reference\":\"Patient/" PAT "\"}}");
    CHECK_INT(sandbox_qr_validate(st, body, &o), -1);
    CHECK_INT(o.status, 400);
    json_decref(body);
    body = parse("{\"questionnaire\":\"Questionnaire/" QID
                 "\",\"status\":\"in-progress\",\"subject\":{\"reference\":\"Patient/" PAT "\"}}");
    CHECK_INT(sandbox_qr_validate(st, body, &o), -1);
    CHECK_INT(o.status, 422);
    json_decref(body);
    body = parse("{\"questionnaire\":\"Questionnaire/00000000-0000-4000-8000-000000000000\","
                 "\"status\":\"completed\",\"subject\":{\"reference\":\"Patient/" PAT "\"}}");
    CHECK_INT(sandbox_qr_validate(st, body, &o), -1);
    CHECK_INT(o.status, 422);
    json_decref(body);
    body =
        parse("{\"questionnaire\":\"Questionnaire/" QID
              "\",\"status\":\"completed\",\"subject\":{\"reference\":\"Practitioner/" DOC "\"}}");
    CHECK_INT(sandbox_qr_validate(st, body, &o), -1);
    CHECK_INT(o.status, 422);
    json_decref(body);

    /* Stored form: author defaults to Canvas Bot. */
    body = qr_body("[]");
    stored = sandbox_qr_normalize(body, "abc", "2026-03-02T15:04:05.000000+00:00");
    CHECK_STR(json_string_value(json_object_get(json_object_get(stored, "author"), "reference")),
              "Practitioner/" SANDBOX_CANVAS_BOT_ID);
    CHECK_STR(json_string_value(json_object_get(stored, "id")), "abc");
    json_decref(stored);
    json_decref(body);
}

/* The questionnaire of canvas-examples.json, checked without a store. */
static void test_qr_items_against_example(void)
{
    json_error_t jerr;
    struct sandbox_outcome o;
    json_t *ex = json_load_file(PM_TESTDATA_DIR "/canvas-examples.json", 0, &jerr);
    json_t *q = json_object_get(ex, "questionnaire");
    json_t *good =
        json_object_get(json_object_get(ex, "questionnaire_response_create_body"), "item");
    json_t *bad;

    CHECK(q != NULL);
    CHECK_INT(sandbox_qr_check_items(q, good, &o), 0);
    bad = parse("[{\"linkId\":\"" Q_SINGLE "\",\"answer\":[{\"valueCoding\":{\"system\":\"" SCT
                "\",\"code\":\"LA99-9\"}}]}]");
    CHECK_INT(sandbox_qr_check_items(q, bad, &o), -1);
    CHECK_STR(o.text, "Question received an invalid response option code: LA99-9");
    json_decref(bad);
    json_decref(ex);
}

static void test_bundle(void)
{
    json_t *matches = json_array(), *b, *links;

    b = sandbox_bundle_build("Communication", "patient=x", matches, 10, 0);
    /* Empty: exactly resourceType, type and total. */
    CHECK_INT(json_object_size(b), 3);
    CHECK_INT(json_integer_value(json_object_get(b, "total")), 0);
    CHECK(json_object_get(b, "entry") == NULL && json_object_get(b, "link") == NULL);
    json_decref(b);

    for (int i = 0; i < 25; i++)
        json_array_append_new(matches,
                              json_pack("{s:s, s:i}", "resourceType", "Communication", "n", i));
    b = sandbox_bundle_build("Communication", "patient=x", matches, 10, 10);
    CHECK_INT(json_integer_value(json_object_get(b, "total")), 25);
    CHECK_INT(json_array_size(json_object_get(b, "entry")), 10);
    CHECK_INT(
        json_integer_value(json_object_get(
            json_object_get(json_array_get(json_object_get(b, "entry"), 0), "resource"), "n")),
        10);
    links = json_object_get(b, "link");
    CHECK_STR(json_string_value(json_object_get(json_array_get(links, 0), "relation")), "self");
    CHECK_STR(json_string_value(json_object_get(json_array_get(links, 0), "url")),
              "/Communication?patient=x&_count=10&_offset=10");
    {
        int have_next = 0, have_prev = 0;
        size_t i;
        json_t *l;
        json_array_foreach(links, i, l)
        {
            const char *rel = json_string_value(json_object_get(l, "relation"));
            const char *url = json_string_value(json_object_get(l, "url"));
            if (strcmp(rel, "next") == 0) {
                have_next = 1;
                CHECK_STR(url, "/Communication?patient=x&_count=10&_offset=20");
            } else if (strcmp(rel, "previous") == 0) {
                have_prev = 1;
                CHECK_STR(url, "/Communication?patient=x&_count=10&_offset=0");
            } else if (strcmp(rel, "last") == 0) {
                CHECK_STR(url, "/Communication?patient=x&_count=10&_offset=20");
            }
        }
        CHECK(have_next && have_prev);
    }
    json_decref(b);

    /* The last page has no next link. */
    b = sandbox_bundle_build("Communication", "", matches, 10, 20);
    CHECK_INT(json_array_size(json_object_get(b, "entry")), 5);
    {
        size_t i;
        json_t *l;
        json_array_foreach(json_object_get(b, "link"), i, l)
        {
            CHECK(strcmp(json_string_value(json_object_get(l, "relation")), "next") != 0);
        }
        CHECK_STR(json_string_value(
                      json_object_get(json_array_get(json_object_get(b, "link"), 0), "url")),
                  "/Communication?_count=10&_offset=20");
    }
    json_decref(b);
    json_decref(matches);
}

static json_t *search(struct sandbox_store *st, const char *type,
                      const struct sandbox_search_param *p, size_t n, const char *count)
{
    struct sandbox_outcome o;
    json_t *b = sandbox_fhir_search(st, type, p, n, count, NULL, &o);
    if (!b)
        fprintf(stderr, "search failed: %d %s\n", o.status, o.text);
    return b;
}

static void test_search(struct sandbox_store *st)
{
    struct sandbox_search_param email = {"email", "staff@clinic.example"};
    struct sandbox_search_param all[2] = {{"email", "staff@clinic.example"},
                                          {"include-non-schedulable-practitioners", "true"}};
    struct sandbox_search_param pat = {"patient", "Patient/" PAT};
    struct sandbox_search_param qcode = {"questionnaire-code", "404684003"};
    struct sandbox_search_param icode = {"code", "EXTYPE"};
    struct sandbox_outcome o;
    json_t *b;
    char *text;

    /* A non-schedulable practitioner is found only with include-non-schedulable-practitioners. */
    b = search(st, "Practitioner", &email, 1, NULL);
    CHECK_INT(json_integer_value(json_object_get(b, "total")), 0);
    json_decref(b);
    b = search(st, "Practitioner", all, 2, NULL);
    CHECK_INT(json_integer_value(json_object_get(b, "total")), 1);
    CHECK_STR(
        json_string_value(json_object_get(json_array_get(json_object_get(b, "link"), 0), "url")),
        "/Practitioner?email=staff%40clinic.example&include-non-schedulable-practitioners="
        "true&_count=10&_offset=0");
    text = json_dumps(b, 0);
    CHECK(text && strstr(text, SANDBOX_SCHEDULABLE_KEY) == NULL);
    free(text);
    json_decref(b);

    /* The demo patient has several communications; paging with _count=2. */
    b = search(st, "Communication", &pat, 1, "2");
    CHECK(json_integer_value(json_object_get(b, "total")) >= 4);
    CHECK_INT(json_array_size(json_object_get(b, "entry")), 2);
    json_decref(b);

    b = search(st, "Questionnaire", &qcode, 1, NULL);
    CHECK_INT(json_integer_value(json_object_get(b, "total")), 1);
    json_decref(b);
    b = search(st, "Questionnaire", &icode, 1, NULL);
    CHECK_INT(json_integer_value(json_object_get(b, "total")), 1);
    json_decref(b);

    /* Bad paging values are 400; _count above 100 is capped. */
    CHECK(sandbox_fhir_search(st, "Communication", NULL, 0, "zero", NULL, &o) == NULL);
    CHECK_INT(o.status, 400);
    b = search(st, "Communication", NULL, 0, "500");
    CHECK(strstr(json_string_value(
                     json_object_get(json_array_get(json_object_get(b, "link"), 0), "url")),
                 "_count=100") != NULL);
    json_decref(b);
}

static void test_store(struct sandbox_store *st)
{
    char err[256];
    json_t *res = json_pack("{s:s, s:s, s:b}", "resourceType", "Practitioner", "id",
                            "aaaabbbbccccddddeeeeffff00001111", SANDBOX_SCHEDULABLE_KEY, 1);
    json_t *got;

    CHECK_INT(sandbox_store_put(st, res, err, sizeof(err)), 0);
    got = sandbox_store_get(st, "Practitioner", "aaaabbbbccccddddeeeeffff00001111");
    CHECK(got && json_object_get(got, SANDBOX_SCHEDULABLE_KEY) == NULL);
    json_decref(got);
    json_decref(res);
    res = json_pack("{s:s}", "resourceType", "Patient");
    CHECK_INT(sandbox_store_put(st, res, err, sizeof(err)), -1);
    json_decref(res);
    /* Reset returns to the fixtures. */
    sandbox_store_reset(st);
    CHECK(!sandbox_store_exists(st, "Practitioner", "aaaabbbbccccddddeeeeffff00001111"));
    CHECK(sandbox_store_exists(st, "Practitioner", SANDBOX_CANVAS_BOT_ID));
}

/* A read answers the stored resource's text; the text kept for later reads follows every
 * store and reset (never a stale version). */
static void test_store_text(struct sandbox_store *st)
{
    char err[256], *text;
    size_t len = 0;
    int found = 0;
    const char *pid = "cafe0000cafe0000cafe0000cafe0000";
    json_t *res =
        json_pack("{s:s, s:s, s:s}", "resourceType", "Patient", "id", pid, "gender", "female");

    text = sandbox_store_get_text(st, "Patient", "nope", &len, &found);
    CHECK(text == NULL && !found);
    CHECK_INT(sandbox_store_put(st, res, err, sizeof(err)), 0);
    for (int round = 0; round < 2; round++) { /* serialised, then from the kept text */
        text = sandbox_store_get_text(st, "Patient", pid, &len, &found);
        CHECK(found);
        CHECK_STR(text, "{\"resourceType\":\"Patient\",\"id\":\"cafe0000cafe0000cafe0000cafe0000\","
                        "\"gender\":\"female\"}");
        CHECK_INT(len, strlen(text));
        free(text);
    }
    json_object_set_new(res, "gender", json_string("male"));
    CHECK_INT(sandbox_store_put(st, res, err, sizeof(err)), 0);
    text = sandbox_store_get_text(st, "Patient", pid, &len, &found);
    CHECK(text && strstr(text, "\"male\"") != NULL);
    free(text);
    sandbox_store_reset(st);
    text = sandbox_store_get_text(st, "Patient", pid, &len, &found);
    CHECK(text == NULL && !found);
    /* A schedulable Practitioner's sandbox marker never shows, on the first read or later. */
    for (int round = 0; round < 2; round++) {
        text = sandbox_store_get_text(st, "Practitioner", "4150cd20de8a470aa570a852859ac87e", &len,
                                      &found);
        CHECK(text && found && strstr(text, "4150cd20de8a470aa570a852859ac87e") != NULL);
        CHECK(text && strstr(text, SANDBOX_SCHEDULABLE_KEY) == NULL);
        free(text);
    }
    json_decref(res);
}

int main(void)
{
    struct sandbox_store *st = load_builtin();
    char t[64], i[128];

    CHECK_INT(sandbox_reference_split("Patient/abc", t, sizeof(t), i, sizeof(i)), 0);
    CHECK_STR(t, "Patient");
    CHECK_STR(i, "abc");
    CHECK_INT(sandbox_reference_split("abc", t, sizeof(t), i, sizeof(i)), -1);

    test_communication(st);
    test_store_text(st);
    test_questionnaire_response(st);
    test_qr_items_against_example();
    test_bundle();
    test_search(st);
    test_store(st);
    sandbox_store_free(st);
    return UNIT_DONE();
}
