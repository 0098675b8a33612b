/* Unit tests for the write-back mapping: simple-form check-ins through a Questionnaire, the FHIR
 * form's checks, the reply Communication; exact resources and every error message. */
#include "deliver.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

#define PATIENT "b3084f7e884e4af2b7e23b1dca494abd"
#define QID     "47a408d7-9f1d-4cfd-97c7-aa810df9ed39"
#define SINGLE  "d82e29db-0cac-4b97-a5aa-9e81749686e2" /* choice, repeats false, code 228448000 */
#define MULTI   "3c2b1a09-8f7e-4d6c-b5a4-9382716a5b4c" /* choice, repeats true, code EXACT */
#define TEXT    "7eb053cd-cb2d-435f-8f55-f154645b55c4" /* text, code EXTYPE */
#define WHEN    "2026-03-02T15:04:05Z"

static json_t *examples;

static json_t *J(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
    if (!v)
        fprintf(stderr, "bad test JSON (%s): %s\n", err.text, text);
    CHECK(v != NULL);
    return v;
}

/* canvas-examples.json's Questionnaire (single choice, then text) with the multiple-choice
 * question pm-sandbox's fixture has between them: the three kinds of question Canvas knows. */
static json_t *questionnaire(void)
{
    json_t *q = json_deep_copy(json_object_get(examples, "questionnaire"));
    json_t *multi = J("{\"linkId\": \"" MULTI "\","
                      " \"code\": [{\"system\": \"http://snomed.info/sct\", \"code\": \"EXACT\"}],"
                      " \"text\": \"Which activities do you do each week?\","
                      " \"type\": \"choice\", \"repeats\": true, \"answerOption\": ["
                      "  {\"valueCoding\": {\"system\": \"http://snomed.info/sct\","
                      "   \"code\": \"EXACT_WALK\", \"display\": \"Walking\"}},"
                      "  {\"valueCoding\": {\"system\": \"http://snomed.info/sct\","
                      "   \"code\": \"EXACT_RUN\", \"display\": \"Running\"}},"
                      "  {\"valueCoding\": {\"system\": \"http://snomed.info/sct\","
                      "   \"code\": \"EXACT_SWIM\", \"display\": \"Swimming\"}},"
                      "  {\"valueCoding\": {\"system\": \"http://snomed.info/sct\","
                      "   \"code\": \"EXACT_BIKE\", \"display\": \"Cycling\"}}]}");
    json_t *items = json_object_get(q, "item");
    CHECK(json_array_size(items) == 2);
    CHECK_STR(json_string_value(json_object_get(json_array_get(items, 0), "linkId")), SINGLE);
    CHECK_STR(json_string_value(json_object_get(json_array_get(items, 1), "linkId")), TEXT);
    json_array_insert_new(items, 1, multi);
    return q;
}

/* Simple-form data with @p answers (a JSON array text). */
static json_t *simple(const char *answers)
{
    char buf[4096];
    snprintf(buf, sizeof(buf),
             "{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
             " \"answers\": %s, \"authored_at\": \"" WHEN "\"}",
             answers);
    return J(buf);
}

/* Compares, printing both on a mismatch. Does not consume either. */
static int same_json(json_t *got, json_t *want)
{
    int ok = got && want && json_equal(got, want);
    if (!ok) {
        char *g = got ? json_dumps(got, JSON_SORT_KEYS) : NULL;
        char *w = want ? json_dumps(want, JSON_SORT_KEYS) : NULL;
        fprintf(stderr, "  got:  %s\n  want: %s\n", g ? g : "(null)", w ? w : "(null)");
        free(g);
        free(w);
    }
    return ok;
}

/* same_json for an expected value built in place: @p want is consumed. */
static int same_json_new(json_t *got, json_t *want)
{
    int ok = same_json(got, want);
    json_decref(want);
    return ok;
}

/* Maps @p answers through @p q and expects the error @p want, word for word. */
static void expect_map_error(json_t *q, const char *answers, const char *want)
{
    char err[512] = "";
    json_t *data = simple(answers);
    json_t *qr = deliver_checkin_map(data, q, WHEN, err, sizeof(err));
    CHECK(qr == NULL);
    CHECK_STR(err, want);
    json_decref(qr);
    json_decref(data);
}

/* ---- the mapping ---- */

static void test_map_all_kinds(void)
{
    json_t *q = questionnaire();
    char err[512] = "";
    /* Answers out of the form's order, questions by linkId and by code, two answers to the
     * multiple-choice question: one item per question, in the Questionnaire's order. */
    json_t *data =
        simple("["
               " {\"question_code\": \"EXTYPE\", \"value_string\": \"Swimming, twice a week\"},"
               " {\"link_id\": \"" SINGLE "\", \"value_code\": \"LA33-6\"},"
               " {\"question_code\": \"EXACT\", \"value_codes\": [\"EXACT_SWIM\", \"EXACT_WALK\"]},"
               " {\"link_id\": \"" MULTI "\", \"value_code\": \"EXACT_BIKE\"}"
               "]");
    json_t *want =
        J("{\"resourceType\": \"QuestionnaireResponse\","
          " \"questionnaire\": \"Questionnaire/" QID "\","
          " \"status\": \"completed\","
          " \"subject\": {\"reference\": \"Patient/" PATIENT "\"},"
          " \"author\": {\"reference\": \"Patient/" PATIENT "\"},"
          " \"authored\": \"" WHEN "\","
          " \"item\": ["
          "  {\"linkId\": \"" SINGLE "\", \"text\": \"Do you exercise on a regular basis?\","
          "   \"answer\": [{\"valueCoding\": {\"system\": \"http://snomed.info/sct\","
          "     \"code\": \"LA33-6\", \"display\": \"Yes\"}}]},"
          "  {\"linkId\": \"" MULTI "\", \"text\": \"Which activities do you do each week?\","
          "   \"answer\": ["
          "    {\"valueCoding\": {\"system\": \"http://snomed.info/sct\","
          "      \"code\": \"EXACT_SWIM\", \"display\": \"Swimming\"}},"
          "    {\"valueCoding\": {\"system\": \"http://snomed.info/sct\","
          "      \"code\": \"EXACT_WALK\", \"display\": \"Walking\"}},"
          "    {\"valueCoding\": {\"system\": \"http://snomed.info/sct\","
          "      \"code\": \"EXACT_BIKE\", \"display\": \"Cycling\"}}]},"
          "  {\"linkId\": \"" TEXT "\", \"text\": \"What type of exercise do you do?\","
          "   \"answer\": [{\"valueString\": \"Swimming, twice a week\"}]}"
          " ]}");
    json_t *qr = deliver_checkin_map(data, q, WHEN, err, sizeof(err));

    CHECK_STR(err, "");
    CHECK(same_json(qr, want));
    /* Nothing Canvas would refuse or misfile: no encounter, no id. */
    CHECK(json_object_get(qr, "encounter") == NULL);
    CHECK(json_object_get(qr, "id") == NULL);
    json_decref(qr);
    json_decref(want);
    json_decref(data);
    json_decref(q);
}

/* The same question by linkId or by its code gives the same item. */
static void test_map_code_vs_link_id(void)
{
    json_t *q = questionnaire();
    json_t *by_link = simple("[{\"link_id\": \"" SINGLE "\", \"value_code\": \"LA33-6\"}]");
    json_t *by_code = simple("[{\"question_code\": \"228448000\", \"value_code\": \"LA33-6\"}]");
    json_t *want =
        J("[{\"linkId\": \"" SINGLE "\", \"text\": \"Do you exercise on a regular basis?\","
          " \"answer\": [{\"valueCoding\": {\"system\": \"http://snomed.info/sct\","
          " \"code\": \"LA33-6\", \"display\": \"Yes\"}}]}]");
    char err[512] = "";
    json_t *a = deliver_checkin_map(by_link, q, WHEN, err, sizeof(err));
    json_t *b = deliver_checkin_map(by_code, q, WHEN, err, sizeof(err));

    CHECK(a && b && json_equal(a, b));
    CHECK(same_json(json_object_get(b, "item"), want));
    /* A linkId is not a code and a code is not a linkId. */
    expect_map_error(q, "[{\"question_code\": \"" SINGLE "\", \"value_code\": \"LA33-6\"}]",
                     "answers[0] (question_code " SINGLE "): no question of Questionnaire " QID
                     " has that code");
    expect_map_error(q, "[{\"link_id\": \"228448000\", \"value_code\": \"LA33-6\"}]",
                     "answers[0] (link_id 228448000): no such question in Questionnaire " QID);
    json_decref(a);
    json_decref(b);
    json_decref(want);
    json_decref(by_link);
    json_decref(by_code);
    json_decref(q);
}

/* The coding comes from the answerOption as it is, not from the answer: system, code and display
 * verbatim; a member the option lacks stays absent. */
static void test_map_coding_verbatim(void)
{
    json_t *q = questionnaire();
    json_t *opts = json_object_get(json_array_get(json_object_get(q, "item"), 0), "answerOption");
    json_t *data = simple("[{\"link_id\": \"" SINGLE "\", \"value_code\": \"LA32-8\"}]");
    char err[512] = "";
    json_t *qr;

    json_object_set_new(json_object_get(json_array_get(opts, 1), "valueCoding"), "display",
                        json_string("No \xe2\x80\x94 not r\xc3\xa9gularly"));
    json_object_set_new(json_object_get(json_array_get(opts, 1), "valueCoding"), "userSelected",
                        json_true());
    qr = deliver_checkin_map(data, q, NULL, err, sizeof(err));
    CHECK(same_json_new(json_object_get(json_array_get(json_object_get(qr, "item"), 0), "answer"),
                        J("[{\"valueCoding\": {\"system\": \"http://snomed.info/sct\","
                          " \"code\": \"LA32-8\", \"display\": \"No \xe2\x80\x94 not "
                          "r\xc3\xa9gularly\"}}]")));
    /* No authored given: none sent (Canvas uses now). */
    CHECK(json_object_get(qr, "authored") == NULL);
    json_decref(qr);

    json_object_del(json_object_get(json_array_get(opts, 1), "valueCoding"), "display");
    json_object_del(json_object_get(json_array_get(opts, 1), "valueCoding"), "system");
    json_object_del(json_array_get(json_object_get(q, "item"), 0), "text");
    qr = deliver_checkin_map(data, q, WHEN, err, sizeof(err));
    CHECK(same_json_new(json_array_get(json_object_get(qr, "item"), 0),
                        J("{\"linkId\": \"" SINGLE "\", \"answer\": [{\"valueCoding\": {\"code\":"
                          " \"LA32-8\"}}]}")));
    json_decref(qr);
    json_decref(data);
    json_decref(q);
}

static void test_map_errors(void)
{
    json_t *q = questionnaire();
    json_t *item;

    expect_map_error(q,
                     "[{\"link_id\": \"" MULTI "\", \"value_code\": \"EXACT_RUN\"},"
                     " {\"question_code\": \"228448000\", \"value_code\": \"LA99-9\"}]",
                     "answers[1] (question_code 228448000): code LA99-9 is not an option");
    /* What the sender put where a code belongs may be free text: it is never quoted. */
    expect_map_error(q, "[{\"question_code\": \"228448000\", \"value_code\": \"my knee hurts\"}]",
                     "answers[0] (question_code 228448000): code (a value that is not shown) is "
                     "not an option");
    expect_map_error(q, "[{\"link_id\": \"Pat Example's note\", \"value_string\": \"x\"}]",
                     "answers[0] (link_id (a value that is not shown)): no such question in "
                     "Questionnaire " QID);
    expect_map_error(q, "[{\"link_id\": \"no-such-question\", \"value_string\": \"x y z\"}]",
                     "answers[0] (link_id no-such-question): no such question in "
                     "Questionnaire " QID);
    expect_map_error(q, "[{\"question_code\": \"NOPE\", \"value_code\": \"LA33-6\"}]",
                     "answers[0] (question_code NOPE): no question of Questionnaire " QID
                     " has that code");
    expect_map_error(q, "[{\"link_id\": \"" SINGLE "\", \"value_string\": \"yes, daily\"}]",
                     "answers[0] (link_id " SINGLE "): a choice question takes value_code or "
                     "value_codes, not value_string");
    expect_map_error(q, "[{\"question_code\": \"EXACT\", \"value_string\": \"running\"}]",
                     "answers[0] (question_code EXACT): a choice question takes value_code or "
                     "value_codes, not value_string");
    expect_map_error(q, "[{\"link_id\": \"" TEXT "\", \"value_code\": \"EXTYPE_A1\"}]",
                     "answers[0] (link_id " TEXT "): a text question takes value_string, not "
                     "codes");
    expect_map_error(q, "[{\"question_code\": \"EXTYPE\", \"value_codes\": [\"EXTYPE_A1\"]}]",
                     "answers[0] (question_code EXTYPE): a text question takes value_string, not "
                     "codes");
    expect_map_error(q,
                     "[{\"link_id\": \"" SINGLE "\", \"value_codes\": [\"LA33-6\", \"LA32-8\"]}]",
                     "answers[0] (link_id " SINGLE "): a single-choice question takes exactly "
                     "one code, got 2");
    expect_map_error(q,
                     "[{\"link_id\": \"" SINGLE "\", \"value_code\": \"LA33-6\"},"
                     " {\"question_code\": \"228448000\", \"value_code\": \"LA32-8\"}]",
                     "answers[1] (question_code 228448000): the question was already answered "
                     "by answers[0] and takes a single answer");
    expect_map_error(q,
                     "[{\"link_id\": \"" TEXT "\", \"value_string\": \"one\"},"
                     " {\"link_id\": \"" TEXT "\", \"value_string\": \"two\"}]",
                     "answers[1] (link_id " TEXT "): the question was already answered by "
                     "answers[0] and takes a single answer");
    expect_map_error(
        q,
        "[{\"question_code\": \"EXACT\", \"value_codes\": [\"EXACT_RUN\", \"EXACT_WALK\"]},"
        " {\"link_id\": \"" MULTI "\", \"value_code\": \"EXACT_WALK\"}]",
        "answers[1] (link_id " MULTI "): code EXACT_WALK was already given by "
        "answers[0]");
    expect_map_error(
        q, "[{\"question_code\": \"EXACT\", \"value_codes\": [\"EXACT_RUN\", \"LA33-6\"]}]",
        "answers[0] (question_code EXACT): code LA33-6 is not an option");
    /* A text item's answerOption (Canvas puts one on every item) is not a choice. */
    expect_map_error(q, "[{\"link_id\": \"" TEXT "\", \"value_code\": \"EXTYPE_A1\"}]",
                     "answers[0] (link_id " TEXT "): a text question takes value_string, not "
                     "codes");

    /* Two questions with one code: the code cannot say which. */
    item = json_array_get(json_object_get(q, "item"), 2);
    json_array_append_new(json_object_get(item, "code"),
                          J("{\"system\": \"http://snomed.info/sct\", \"code\": \"228448000\"}"));
    expect_map_error(q, "[{\"question_code\": \"228448000\", \"value_code\": \"LA33-6\"}]",
                     "answers[0] (question_code 228448000): 2 questions of Questionnaire " QID
                     " have that code; use link_id");
    /* Types Canvas does not have. */
    json_object_set_new(item, "type", json_string("integer"));
    expect_map_error(q, "[{\"link_id\": \"" TEXT "\", \"value_string\": \"3\"}]",
                     "answers[0] (link_id " TEXT "): questions of type integer cannot be "
                     "answered (only choice and text)");
    json_decref(q);

    q = J("{\"resourceType\": \"Questionnaire\", \"id\": \"" QID "\", \"status\": \"active\"}");
    expect_map_error(q, "[{\"link_id\": \"" SINGLE "\", \"value_code\": \"LA33-6\"}]",
                     "Questionnaire " QID " has no questions");
    json_decref(q);
}

/* ---- the shape of simple-form data ---- */

static void expect_shape_error(const char *data_text, const char *want)
{
    char err[512] = "";
    json_t *data = J(data_text);
    json_t *q = questionnaire();
    json_t *qr;

    CHECK_INT(deliver_checkin_simple_check(data, err, sizeof(err)), -1);
    CHECK_STR(err, want);
    /* The mapping refuses it the same way. */
    err[0] = '\0';
    qr = deliver_checkin_map(data, q, WHEN, err, sizeof(err));
    CHECK(qr == NULL);
    CHECK_STR(err, want);
    json_decref(qr);
    json_decref(q);
    json_decref(data);
}

static void test_simple_shape(void)
{
    char err[512] = "";
    json_t *ok = simple("[{\"link_id\": \"" SINGLE "\", \"value_code\": \"LA33-6\"}]");
    CHECK_INT(deliver_checkin_simple_check(ok, err, sizeof(err)), 0);
    json_decref(ok);
    ok = J("{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"code\": \"404684003\"},"
           " \"answers\": [{\"question_code\": \"EXACT\", \"value_codes\": [\"EXACT_RUN\"]}]}");
    CHECK_INT(deliver_checkin_simple_check(ok, err, sizeof(err)), 0);
    json_decref(ok);

    expect_shape_error("[]", "data must be an object");
    expect_shape_error("{\"questionnaire\": {\"id\": \"" QID "\"}, \"answers\": [{\"link_id\": "
                       "\"a\", \"value_string\": \"b\"}]}",
                       "data.patient_id must be a FHIR id");
    expect_shape_error("{\"patient_id\": \"not an id!\", \"questionnaire\": {\"id\": \"" QID "\"},"
                       " \"answers\": [{\"link_id\": \"a\", \"value_string\": \"b\"}]}",
                       "data.patient_id must be a FHIR id");
    expect_shape_error("{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"id\": \"" QID "\","
                       " \"code\": \"x\"}, \"answers\": [{\"link_id\": \"a\", \"value_string\": "
                       "\"b\"}]}",
                       "data.questionnaire must be an object with exactly one of id or code");
    expect_shape_error("{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"id\": \"a b\"},"
                       " \"answers\": [{\"link_id\": \"a\", \"value_string\": \"b\"}]}",
                       "data.questionnaire.id must be a FHIR id");
    expect_shape_error("{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"code\": \"\"},"
                       " \"answers\": [{\"link_id\": \"a\", \"value_string\": \"b\"}]}",
                       "data.questionnaire.code must be a non-empty string of at most 256 bytes");
    expect_shape_error("{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
                       " \"answers\": []}",
                       "data.answers must be a non-empty array");
    expect_shape_error("{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
                       " \"answers\": [\"yes\"]}",
                       "data.answers[0] must be an object");
    expect_shape_error("{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
                       " \"answers\": [{\"link_id\": \"a\", \"question_code\": \"b\","
                       " \"value_string\": \"c\"}]}",
                       "data.answers[0]: exactly one of link_id or question_code is required");
    expect_shape_error("{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
                       " \"answers\": [{\"link_id\": \"a\", \"value_code\": \"b\"},"
                       " {\"question_code\": 7, \"value_string\": \"c\"}]}",
                       "data.answers[1].question_code must be a non-empty string");
    expect_shape_error("{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
                       " \"answers\": [{\"link_id\": \"a\"}]}",
                       "data.answers[0]: exactly one of value_string, value_code or value_codes "
                       "is required");
    expect_shape_error("{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
                       " \"answers\": [{\"link_id\": \"a\", \"value_string\": \"\"}]}",
                       "data.answers[0].value_string must be a non-empty string");
    expect_shape_error("{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
                       " \"answers\": [{\"link_id\": \"a\", \"value_codes\": \"b\"}]}",
                       "data.answers[0].value_codes must be a non-empty array");
    expect_shape_error("{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
                       " \"answers\": [{\"link_id\": \"a\", \"value_codes\": [\"b\", 1]}]}",
                       "data.answers[0].value_codes[1] must be a non-empty string");
    expect_shape_error("{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
                       " \"answers\": [{\"link_id\": \"a\", \"value_codes\": [\"b\", \"b\"]}]}",
                       "data.answers[0].value_codes[1] repeats an earlier code");
    expect_shape_error("{\"patient_id\": \"" PATIENT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
                       " \"answers\": [{\"link_id\": \"a\", \"value_string\": \"b\"}],"
                       " \"authored_at\": \"yesterday\"}",
                       "data.authored_at must be an RFC 3339 date-time");
}

/* ---- the FHIR form ---- */

static void expect_fhir_error(json_t *data, const char *want)
{
    char err[512] = "";
    json_t *qr = deliver_checkin_fhir_prepare(data, err, sizeof(err));
    CHECK(qr == NULL);
    CHECK_STR(err, want);
    json_decref(qr);
}

static void test_fhir_form(void)
{
    json_t *resource =
        json_deep_copy(json_object_get(examples, "questionnaire_response_create_body"));
    json_t *data = json_pack("{s:s, s:o}", "patient_id", PATIENT, "questionnaire_response",
                             json_deep_copy(resource));
    json_t *src = json_object_get(data, "questionnaire_response");
    json_t *want, *qr, *answer;
    char err[512] = "";

    /* Sent as it came when it is what Canvas accepts. */
    qr = deliver_checkin_fhir_prepare(data, err, sizeof(err));
    CHECK(same_json(qr, resource));
    json_decref(qr);

    /* encounter and id dropped, author = the Patient added when absent. */
    json_object_set_new(src, "encounter", J("{\"reference\": \"Encounter/abc\"}"));
    json_object_set_new(src, "id", json_string("client-chosen"));
    json_object_del(src, "author");
    want = json_deep_copy(resource);
    json_object_set_new(want, "author", J("{\"reference\": \"Patient/" PATIENT "\"}"));
    qr = deliver_checkin_fhir_prepare(data, err, sizeof(err));
    CHECK(same_json(qr, want));
    json_decref(qr);
    json_decref(want);
    /* the event itself is left as it was */
    CHECK(json_object_get(src, "encounter") != NULL);
    json_object_del(src, "encounter");
    json_object_del(src, "id");

    json_object_set_new(src, "subject",
                        J("{\"reference\": \"Patient/43f1418bae9c41919203e0006761067c\"}"));
    expect_fhir_error(data, "data.questionnaire_response.subject.reference must be "
                            "\"Patient/<data.patient_id>\"");
    json_object_set_new(src, "subject", J("{\"reference\": \"Practitioner/" PATIENT "\"}"));
    expect_fhir_error(data, "data.questionnaire_response.subject.reference must be "
                            "\"Patient/<data.patient_id>\"");
    json_object_set(src, "subject", json_object_get(resource, "subject"));

    json_object_set_new(src, "questionnaire", J("{\"reference\": \"Questionnaire/" QID "\"}"));
    expect_fhir_error(data, "data.questionnaire_response.questionnaire must be "
                            "\"Questionnaire/<id>\"");
    json_object_set_new(src, "questionnaire", json_string("Patient/" QID));
    expect_fhir_error(data, "data.questionnaire_response.questionnaire must be "
                            "\"Questionnaire/<id>\"");
    json_object_set(src, "questionnaire", json_object_get(resource, "questionnaire"));

    json_object_set_new(src, "status", json_string("in-progress"));
    expect_fhir_error(data, "data.questionnaire_response.status must be \"completed\"");
    json_object_set_new(src, "status", json_string("completed"));

    json_object_set_new(src, "resourceType", json_string("Communication"));
    expect_fhir_error(data, "data.questionnaire_response.resourceType must be "
                            "\"QuestionnaireResponse\"");
    json_object_set_new(src, "resourceType", json_string("QuestionnaireResponse"));

    json_object_set_new(src, "authored", json_string("2026-03-02"));
    expect_fhir_error(data, "data.questionnaire_response.authored must be an RFC 3339 date-time");
    json_object_set(src, "authored", json_object_get(resource, "authored"));

    answer = json_array_get(
        json_object_get(json_array_get(json_object_get(src, "item"), 1), "answer"), 0);
    json_object_del(answer, "valueString");
    json_object_set_new(answer, "valueInteger", json_integer(3));
    expect_fhir_error(data, "data.questionnaire_response.item[1].answer[0] must have exactly one "
                            "value, valueString or valueCoding");
    json_object_set_new(answer, "valueString", json_string("Swimming"));
    expect_fhir_error(data, "data.questionnaire_response.item[1].answer[0] must have exactly one "
                            "value, valueString or valueCoding");
    json_object_del(answer, "valueInteger");
    json_object_set_new(answer, "valueString", json_string(""));
    expect_fhir_error(data, "data.questionnaire_response.item[1].answer[0].valueString must be a "
                            "non-empty string");
    json_object_set_new(answer, "valueString", json_string("Swimming"));

    answer = json_array_get(
        json_object_get(json_array_get(json_object_get(src, "item"), 0), "answer"), 0);
    json_object_del(json_object_get(answer, "valueCoding"), "system");
    expect_fhir_error(data, "data.questionnaire_response.item[0].answer[0].valueCoding must have "
                            "system and code (and display, when present) as non-empty strings");
    json_object_set_new(answer, "valueCoding",
                        J("{\"system\": \"http://snomed.info/sct\", \"code\": \"LA33-6\"}"));
    qr = deliver_checkin_fhir_prepare(data, err, sizeof(err));
    CHECK(qr != NULL); /* display is optional */
    json_decref(qr);

    json_object_set_new(src, "item", json_array());
    expect_fhir_error(data, "data.questionnaire_response.item must be a non-empty array");
    json_object_set_new(src, "item", J("[{\"answer\": [{\"valueString\": \"x\"}]}]"));
    expect_fhir_error(data, "data.questionnaire_response.item[0].linkId must be a non-empty "
                            "string");
    json_object_set_new(src, "item", J("[{\"linkId\": \"" TEXT "\", \"answer\": []}]"));
    expect_fhir_error(data, "data.questionnaire_response.item[0].answer must be a non-empty "
                            "array");

    json_object_set_new(data, "patient_id", json_string("bad id"));
    expect_fhir_error(data, "data.patient_id must be a FHIR id");
    json_object_set_new(data, "patient_id", json_string(PATIENT));
    json_object_set_new(data, "questionnaire_response", json_string("{}"));
    expect_fhir_error(data, "data.questionnaire_response must be an object");

    json_decref(data);
    json_decref(resource);
}

/* ---- the reply Communication ---- */

static void test_reply_resource(void)
{
    json_t *want =
        json_deep_copy(json_object_get(examples, "communication_create_body_patient_reply"));
    json_t *got = deliver_reply_resource(PATIENT, "9cdb7a92d6614dcfa7948f2143a9f8e8", "Thank you!",
                                         "2026-03-02T15:04:05Z");
    CHECK(same_json(got, want));
    json_decref(got);
    json_object_del(want, "sent");
    got = deliver_reply_resource(PATIENT, "9cdb7a92d6614dcfa7948f2143a9f8e8", "Thank you!", NULL);
    CHECK(same_json(got, want));
    json_decref(got);
    json_decref(want);
}

int main(void)
{
    json_error_t err;
    examples = json_load_file(PM_TESTDATA_DIR "/canvas-examples.json", 0, &err);
    if (!examples) {
        fprintf(stderr, "canvas-examples.json: %s\n", err.text);
        return 1;
    }
    test_map_all_kinds();
    test_map_code_vs_link_id();
    test_map_coding_verbatim();
    test_map_errors();
    test_simple_shape();
    test_fhir_form();
    test_reply_resource();
    json_decref(examples);
    return UNIT_DONE();
}
