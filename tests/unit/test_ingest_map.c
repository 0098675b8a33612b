/* Unit tests for ingest_map: every body shape of SPEC §4, the event data each becomes, and the
 * JSON pointers (and only pointers, never values) of every bad field. */
#include "cloudevent.h"
#include "ingest.h"
#include "problem.h"
#include "timefmt.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

static json_t *examples;

/* ---- helpers ---- */

static json_t *J(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
    if (!v)
        fprintf(stderr, "bad test JSON (%s): %s\n", err.text, text);
    CHECK(v != NULL);
    return v;
}

/* A deep copy of canvas-examples.json's @p name. */
static json_t *example(const char *name)
{
    json_t *v = json_object_get(examples, name);
    CHECK(v != NULL);
    return json_deep_copy(v);
}

/* A string of @p n copies of @p c (static buffer, one at a time). */
static const char *repeat(char c, size_t n)
{
    static char buf[256];
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

/* Short values a detail may legitimately contain because they are rule words. */
static int phi_exempt(const char *s)
{
    static const char *const words[] = {
        "completed", "MESSAGE_CREATED", "Communication", "QuestionnaireResponse", "Questionnaire",
        "Patient",   "Practitioner",    "Patient/",      "Questionnaire/",        NULL};
    for (const char *const *w = words; *w; w++)
        if (!strcmp(*w, s))
            return 1;
    return strlen(s) < 5;
}

/* Checks that no error detail quotes a string value of @p v. @returns the number quoted. */
static int values_in_details(json_t *v, json_t *errors)
{
    int n = 0;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t i;
        json_t *e;
        if (phi_exempt(s))
            return 0;
        json_array_foreach(errors, i, e)
        {
            const char *d = json_string_value(json_object_get(e, "detail"));
            if (d && strstr(d, s)) {
                fprintf(stderr, "detail \"%s\" quotes the submitted value \"%s\"\n", d, s);
                n++;
            }
        }
    } else if (json_is_object(v)) {
        const char *k;
        json_t *m;
        json_object_foreach(v, k, m) n += values_in_details(m, errors);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) n += values_in_details(m, errors);
    }
    return n;
}

static const char *kind_name(enum ingest_kind kind)
{
    return kind == INGEST_MESSAGE ? "message" : kind == INGEST_REPLY ? "reply" : "questionnaire";
}

/*
 * Maps @p body (stolen) and expects failure with exactly the error pointers in @p want (a
 * NULL-terminated multiset: order free, every one once). Also: no event data, each detail
 * non-empty and quoting no submitted value, and the body left as it was.
 */
static void expect_errors(int line, enum ingest_kind kind, json_t *body, const char *const *want)
{
    json_t *pb = problem_new(400, NULL, NULL);
    json_t *before = json_deep_copy(body);
    json_t *errors;
    struct ingest_event ev;
    size_t nwant = 0, i;
    int *used, rc, ok = 1;
    json_t *e;

    rc = ingest_map(kind, body, &ev, pb);
    errors = json_object_get(pb, "errors");
    for (nwant = 0; want[nwant]; nwant++)
        ;
    used = calloc(json_array_size(errors) + 1, sizeof(*used));

    if (rc != -1 || ev.data != NULL) {
        ok = 0;
        fprintf(stderr, "line %d: %s body accepted (rc %d)\n", line, kind_name(kind), rc);
    }
    for (size_t w = 0; w < nwant; w++) {
        int found = 0;
        json_array_foreach(errors, i, e)
        {
            const char *p = json_string_value(json_object_get(e, "pointer"));
            if (!used[i] && p && !strcmp(p, want[w])) {
                used[i] = found = 1;
                break;
            }
        }
        if (!found) {
            ok = 0;
            fprintf(stderr, "line %d: no error at \"%s\"\n", line, want[w]);
        }
    }
    json_array_foreach(errors, i, e)
    {
        const char *d = json_string_value(json_object_get(e, "detail"));
        if (!used[i]) {
            ok = 0;
            fprintf(stderr, "line %d: unexpected error at \"%s\": %s\n", line,
                    json_string_value(json_object_get(e, "pointer")), d ? d : "(none)");
        }
        if (!d || !*d) {
            ok = 0;
            fprintf(stderr, "line %d: error without detail\n", line);
        }
    }
    CHECK(ok);
    CHECK_INT(problem_error_count(pb), nwant);
    CHECK_INT(values_in_details(body, errors), 0);
    if (!json_equal(before, body)) {
        fprintf(stderr, "line %d: a refused body was modified\n", line);
        CHECK(json_equal(before, body));
    }
    if (ev.data)
        json_decref(ev.data);
    free(used);
    json_decref(before);
    json_decref(pb);
    json_decref(body);
}

#define EXPECT_ERRORS(kind, body, ...)                                                             \
    expect_errors(__LINE__, kind, body, (const char *const[]){__VA_ARGS__, NULL})
#define EXPECT_ERRORS_TEXT(kind, text, ...) EXPECT_ERRORS(kind, J(text), __VA_ARGS__)

/* Maps @p body (borrowed) and expects success. @returns 0 when it did. */
static int expect_ok(int line, enum ingest_kind kind, json_t *body, struct ingest_event *ev)
{
    json_t *pb = problem_new(400, NULL, NULL);
    int rc = ingest_map(kind, body, ev, pb);
    if (rc != 0 || !ev->data) {
        char *s = json_dumps(pb, JSON_COMPACT);
        fprintf(stderr, "line %d: %s body refused: %s\n", line, kind_name(kind), s);
        free(s);
    }
    CHECK_INT(rc, 0);
    CHECK(ev->data != NULL);
    CHECK_INT(problem_error_count(pb), 0);
    json_decref(pb);
    return rc == 0 && ev->data ? 0 : -1;
}

#define EXPECT_OK(kind, body, ev) expect_ok(__LINE__, kind, body, ev)

/* The event time is "now": valid RFC 3339 UTC with milliseconds, within the test's run. */
static void check_time_now(const struct ingest_event *ev, time_t before)
{
    time_t t = 0;
    CHECK_INT(strlen(ev->time), 24);
    CHECK_INT(timefmt_rfc3339_parse(ev->time, &t), 1);
    CHECK(t >= before && t <= time(NULL));
}

/* ---- /v1/canvas/messages (a): our own notification ---- */

static void test_message_notification(void)
{
    struct ingest_event ev;
    json_t *body, *want;
    time_t before = time(NULL);
    char buf[512];

    body = J("{\"communication_id\": \"8f2b1c7e-5d4a-4b3e-9c1f-2a6d7e8f9a0b\","
             " \"patient_id\": \"b3084f7e884e4af2b7e23b1dca494abd\"}");
    if (EXPECT_OK(INGEST_MESSAGE, body, &ev) == 0) {
        CHECK_STR(ev.type, CE_TYPE_CANVAS_MESSAGE);
        CHECK_STR(ev.patient_id, "b3084f7e884e4af2b7e23b1dca494abd");
        CHECK(json_equal(ev.data, body)); /* exactly the two ids */
        CHECK_INT(json_object_size(ev.data), 2);
        check_time_now(&ev, before);
        json_decref(ev.data);
    }
    json_decref(body);

    /* occurred_at becomes the CloudEvents time as given; change is carried unchanged. */
    body = J("{\"communication_id\": \"c-1\", \"patient_id\": \"p.1\","
             " \"occurred_at\": \"2026-11-26T12:00:00+02:00\","
             " \"change\": {\"model_name\": \"messagetransmission\", \"created\": true,"
             "  \"fields\": {\"message_id\": [null, 4812]}, \"canvas_id\": 9731}}");
    want = json_deep_copy(body);
    json_object_del(want, "occurred_at");
    if (EXPECT_OK(INGEST_MESSAGE, body, &ev) == 0) {
        CHECK_STR(ev.patient_id, "p.1");
        CHECK_STR(ev.time, "2026-11-26T12:00:00+02:00");
        CHECK(json_equal(ev.data, want));
        CHECK_INT(json_object_size(ev.data), 3);
        json_decref(ev.data);
    }
    json_decref(want);
    json_decref(body);

    /* An empty change object is still an object. 64-character ids are the longest. */
    snprintf(buf, sizeof(buf),
             "{\"communication_id\": \"%s\", \"patient_id\": \"p1\", \"change\": {}}",
             repeat('c', 64));
    body = J(buf);
    if (EXPECT_OK(INGEST_MESSAGE, body, &ev) == 0) {
        CHECK(json_is_object(json_object_get(ev.data, "change")));
        json_decref(ev.data);
    }
    json_decref(body);

    /* Any number of fraction digits is RFC 3339: the event time must stay a valid one. */
    body = J("{\"communication_id\": \"c-1\", \"patient_id\": \"p1\", \"occurred_at\":"
             " \"2026-11-26T10:00:00.123456789012345678901234567890123456789Z\"}");
    if (EXPECT_OK(INGEST_MESSAGE, body, &ev) == 0) {
        time_t t = 0;
        CHECK_INT(timefmt_rfc3339_parse(ev.time, &t), 1);
        CHECK_INT(t, 1795687200);
        json_decref(ev.data);
    }
    json_decref(body);

    /* Unknown fields, with pointer escaping. */
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"communication_id\": \"c1\", \"patient_id\": \"p1\", \"extra\": 1}",
                       "/extra");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"communication_id\": \"c1\", \"patient_id\": \"p1\", \"Change\": {}}",
                       "/Change");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"communication_id\": \"c1\", \"patient_id\": \"p1\", \"a/b\": 1,"
                       " \"t~x\": 2, \"\": 3}",
                       "/a~1b", "/t~0x", "/");

    /* Ids. */
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"communication_id\": \"a/b\", \"patient_id\": \"p1\"}",
                       "/communication_id");
    snprintf(buf, sizeof(buf), "{\"communication_id\": \"%s\", \"patient_id\": \"p1\"}",
             repeat('c', 65));
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, buf, "/communication_id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"communication_id\": \"\", \"patient_id\": \"p1\"}",
                       "/communication_id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"communication_id\": 42, \"patient_id\": \"p1\"}",
                       "/communication_id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"communication_id\": \"c1\", \"patient_id\": \"p/1\"}",
                       "/patient_id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"communication_id\": \"c1\", \"patient_id\": \"Patient/p1\"}",
                       "/patient_id");
    snprintf(buf, sizeof(buf), "{\"communication_id\": \"c1\", \"patient_id\": \"%s\"}",
             repeat('p', 65));
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, buf, "/patient_id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"communication_id\": \"c1\", \"patient_id\": \"\"}",
                       "/patient_id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"communication_id\": \"c1\", \"patient_id\": 7}",
                       "/patient_id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"communication_id\": \"c1\", \"patient_id\": null}",
                       "/patient_id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"communication_id\": \"c1\", \"patient_id\": \"a b\"}",
                       "/patient_id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{}", "/communication_id", "/patient_id");

    /* occurred_at: RFC 3339 with a zone, nothing else. */
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"communication_id\": \"c1\", \"patient_id\": \"p1\","
                       " \"occurred_at\": \"2026-11-27T10:00:00\"}",
                       "/occurred_at");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"communication_id\": \"c1\", \"patient_id\": \"p1\","
                       " \"occurred_at\": \"2023-02-29T10:00:00Z\"}",
                       "/occurred_at");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"communication_id\": \"c1\", \"patient_id\": \"p1\","
                       " \"occurred_at\": \"yesterday\"}",
                       "/occurred_at");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"communication_id\": \"c1\", \"patient_id\": \"p1\","
                       " \"occurred_at\": 1795687200}",
                       "/occurred_at");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"communication_id\": \"c1\", \"patient_id\": \"p1\","
                       " \"occurred_at\": \"\"}",
                       "/occurred_at");

    /* change: an object or absent. */
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"communication_id\": \"c1\", \"patient_id\": \"p1\", \"change\": \"x\"}",
                       "/change");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"communication_id\": \"c1\", \"patient_id\": \"p1\", \"change\": []}",
                       "/change");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"communication_id\": \"c1\", \"patient_id\": \"p1\", \"change\": null}",
                       "/change");

    /* Every bad field at once. */
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"communication_id\": \"a/b\", \"patient_id\": \"\","
                       " \"occurred_at\": \"nope-not-a-time\", \"change\": 1, \"zzz\": true}",
                       "/zzz", "/communication_id", "/patient_id", "/occurred_at", "/change");
}

/* ---- /v1/canvas/messages (b): a bare FHIR Communication ---- */

static void test_message_communication(void)
{
    struct ingest_event ev;
    json_t *body;
    time_t before = time(NULL);

    /* Staff to patient: the patient is the recipient. */
    body = example("communication_staff_to_patient_html");
    if (EXPECT_OK(INGEST_MESSAGE, body, &ev) == 0) {
        CHECK_STR(ev.type, CE_TYPE_CANVAS_MESSAGE);
        CHECK_STR(ev.patient_id, "b3084f7e884e4af2b7e23b1dca494abd");
        CHECK_INT(json_object_size(ev.data), 3);
        CHECK_STR(json_string_value(json_object_get(ev.data, "communication_id")),
                  "8f2b1c7e-5d4a-4b3e-9c1f-2a6d7e8f9a0b");
        CHECK_STR(json_string_value(json_object_get(ev.data, "patient_id")),
                  "b3084f7e884e4af2b7e23b1dca494abd");
        CHECK(json_equal(json_object_get(ev.data, "communication"),
                         json_object_get(examples, "communication_staff_to_patient_html")));
        check_time_now(&ev, before);
        json_decref(ev.data);
    }
    json_decref(body);

    /* Patient to staff: the patient is the sender. */
    body = example("communication_patient_to_staff");
    if (EXPECT_OK(INGEST_MESSAGE, body, &ev) == 0) {
        CHECK_STR(ev.patient_id, "43f1418bae9c41919203e0006761067c");
        CHECK_STR(json_string_value(json_object_get(ev.data, "communication_id")),
                  "17b7d61e-4b0e-4940-bd37-b64f5c2ae29d");
        CHECK_STR(json_string_value(json_object_get(ev.data, "patient_id")),
                  "43f1418bae9c41919203e0006761067c");
        CHECK(json_equal(json_object_get(ev.data, "communication"),
                         json_object_get(examples, "communication_patient_to_staff")));
        json_decref(ev.data);
    }
    json_decref(body);

    /* Only the subject names the patient. */
    body = J("{\"resourceType\": \"Communication\", \"id\": \"c-9\","
             " \"recipient\": [{\"reference\": \"Practitioner/x\"}],"
             " \"sender\": {\"reference\": \"Practitioner/y\"},"
             " \"subject\": {\"reference\": \"Patient/subj-1\"}}");
    if (EXPECT_OK(INGEST_MESSAGE, body, &ev) == 0) {
        CHECK_STR(ev.patient_id, "subj-1");
        CHECK_STR(json_string_value(json_object_get(ev.data, "communication_id")), "c-9");
        json_decref(ev.data);
    }
    json_decref(body);

    /* The patient among several recipients, after a malformed Patient reference. */
    body = J("{\"resourceType\": \"Communication\", \"id\": \"c-9\","
             " \"recipient\": [{\"reference\": \"Practitioner/x\"}, {\"reference\": 7},"
             "  \"junk\", {\"reference\": \"Patient/a b\"}, {\"reference\": \"Patient/p-2\"}]}");
    if (EXPECT_OK(INGEST_MESSAGE, body, &ev) == 0) {
        CHECK_STR(ev.patient_id, "p-2");
        json_decref(ev.data);
    }
    json_decref(body);

    /* Recipient before sender before subject. */
    body = J("{\"resourceType\": \"Communication\", \"id\": \"c-9\","
             " \"recipient\": [{\"reference\": \"Patient/r-1\"}],"
             " \"sender\": {\"reference\": \"Patient/s-1\"},"
             " \"subject\": {\"reference\": \"Patient/j-1\"}}");
    if (EXPECT_OK(INGEST_MESSAGE, body, &ev) == 0) {
        CHECK_STR(ev.patient_id, "r-1");
        json_decref(ev.data);
    }
    json_decref(body);
    body = J("{\"resourceType\": \"Communication\", \"id\": \"c-9\","
             " \"sender\": {\"reference\": \"Patient/s-1\"},"
             " \"subject\": {\"reference\": \"Patient/j-1\"}}");
    if (EXPECT_OK(INGEST_MESSAGE, body, &ev) == 0) {
        CHECK_STR(ev.patient_id, "s-1");
        json_decref(ev.data);
    }
    json_decref(body);

    /* No Patient reference anywhere. */
    body = example("communication_staff_to_patient_html");
    json_object_set_new(body, "recipient", J("[{\"reference\": \"Practitioner/abc\"}]"));
    EXPECT_ERRORS(INGEST_MESSAGE, body, "/recipient");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"resourceType\": \"Communication\", \"id\": \"c-1\"}",
                       "/recipient");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"resourceType\": \"Communication\", \"id\": \"c-1\","
                       " \"recipient\": [{\"reference\": \"Patient/\"}],"
                       " \"sender\": {\"reference\": \"Patient/x/\"},"
                       " \"subject\": {\"reference\": \"Group/g1\"}}",
                       "/recipient");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"resourceType\": \"Communication\", \"id\": \"c-1\","
                       " \"recipient\": [{\"reference\": \"Patients/p1\"}]}",
                       "/recipient");
    /* recipient must be an array: said, and no patient found either. */
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"resourceType\": \"Communication\", \"id\": \"c-1\","
                       " \"recipient\": {\"reference\": \"Practitioner/p1\"}}",
                       "/recipient", "/recipient");

    /* The Communication's id. */
    body = example("communication_patient_to_staff");
    json_object_del(body, "id");
    EXPECT_ERRORS(INGEST_MESSAGE, body, "/id");
    body = example("communication_patient_to_staff");
    json_object_set_new(body, "id", json_string("a/b"));
    EXPECT_ERRORS(INGEST_MESSAGE, body, "/id");
    body = example("communication_patient_to_staff");
    json_object_set_new(body, "id", json_integer(17));
    EXPECT_ERRORS(INGEST_MESSAGE, body, "/id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"resourceType\": \"Communication\"}", "/id",
                       "/recipient");

    /* Another resource type. */
    body = example("communication_patient_to_staff");
    json_object_set_new(body, "resourceType", json_string("Patient"));
    EXPECT_ERRORS(INGEST_MESSAGE, body, "/resourceType");
    EXPECT_ERRORS(INGEST_MESSAGE, example("patient"), "/resourceType");
    body = example("communication_patient_to_staff");
    json_object_set_new(body, "resourceType", json_string("communication"));
    EXPECT_ERRORS(INGEST_MESSAGE, body, "/resourceType");
    body = example("communication_patient_to_staff");
    json_object_set_new(body, "resourceType", json_integer(1));
    EXPECT_ERRORS(INGEST_MESSAGE, body, "/resourceType");
}

/* ---- /v1/canvas/messages (c): a Canvas plugin event ---- */

static void test_message_plugin(void)
{
    struct ingest_event ev;
    json_t *body, *want;
    time_t before = time(NULL);

    body = J("{\"type\": \"MESSAGE_CREATED\", \"target\": \"6e2f9a1c-3b7d-4c5e-9f8a-1d2b3c4e5f60\","
             " \"context\": {\"patient\": {\"id\": \"7c4e1f0a9b2d4e6f8a3c5b7d9e1f2a4c\"}}}");
    want = J("{\"communication_id\": \"6e2f9a1c-3b7d-4c5e-9f8a-1d2b3c4e5f60\","
             " \"patient_id\": \"7c4e1f0a9b2d4e6f8a3c5b7d9e1f2a4c\"}");
    if (EXPECT_OK(INGEST_MESSAGE, body, &ev) == 0) {
        CHECK_STR(ev.type, CE_TYPE_CANVAS_MESSAGE);
        CHECK_STR(ev.patient_id, "7c4e1f0a9b2d4e6f8a3c5b7d9e1f2a4c");
        CHECK(json_equal(ev.data, want));
        check_time_now(&ev, before);
        json_decref(ev.data);
    }
    json_decref(body);

    /* target as {"id"}; other members of the event (Canvas sends more) are ignored. */
    body =
        J("{\"type\": \"MESSAGE_CREATED\", \"id\": \"evt-1\","
          " \"target\": {\"id\": \"6e2f9a1c-3b7d-4c5e-9f8a-1d2b3c4e5f60\", \"type\": \"Message\"},"
          " \"context\": {\"patient\": {\"id\": \"7c4e1f0a9b2d4e6f8a3c5b7d9e1f2a4c\"},"
          "  \"user\": {\"id\": \"u1\"}}}");
    if (EXPECT_OK(INGEST_MESSAGE, body, &ev) == 0) {
        CHECK(json_equal(ev.data, want));
        json_decref(ev.data);
    }
    json_decref(body);
    json_decref(want);

#define PLUGIN_CTX ", \"context\": {\"patient\": {\"id\": \"p1\"}}}"
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"type\": \"MESSAGE_UPDATED\", \"target\": \"m1\"" PLUGIN_CTX, "/type");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"type\": \"message_created\", \"target\": \"m1\"" PLUGIN_CTX, "/type");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"type\": 7, \"target\": \"m1\"" PLUGIN_CTX, "/type");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"type\": \"\", \"target\": \"m1\"" PLUGIN_CTX, "/type");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"type\": \"MESSAGE_CREATED\"" PLUGIN_CTX, "/target");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"type\": \"MESSAGE_CREATED\", \"target\": 5" PLUGIN_CTX,
                       "/target");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"type\": \"MESSAGE_CREATED\", \"target\": []" PLUGIN_CTX,
                       "/target");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"type\": \"MESSAGE_CREATED\", \"target\": \"m/1\"" PLUGIN_CTX, "/target");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"type\": \"MESSAGE_CREATED\", \"target\": \"\"" PLUGIN_CTX, "/target");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"type\": \"MESSAGE_CREATED\", \"target\": {}" PLUGIN_CTX,
                       "/target/id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"type\": \"MESSAGE_CREATED\", \"target\": {\"id\": 12}" PLUGIN_CTX,
                       "/target/id");
#undef PLUGIN_CTX

    /* The patient in the context. */
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"type\": \"MESSAGE_CREATED\", \"target\": \"m1\","
                       " \"context\": {\"patient\": {}}}",
                       "/context/patient/id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"type\": \"MESSAGE_CREATED\", \"target\": \"m1\","
                       " \"context\": {\"patient\": {\"key\": \"p1\"}}}",
                       "/context/patient/id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"type\": \"MESSAGE_CREATED\", \"target\": \"m1\","
                       " \"context\": {\"patient\": {\"id\": \"Patient/p1\"}}}",
                       "/context/patient/id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"type\": \"MESSAGE_CREATED\", \"target\": \"m1\","
                       " \"context\": {\"patient\": {\"id\": 5}}}",
                       "/context/patient/id");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"type\": \"MESSAGE_CREATED\", \"target\": \"m1\", \"context\": {}}",
                       "/context/patient");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"type\": \"MESSAGE_CREATED\", \"target\": \"m1\","
                       " \"context\": {\"patient\": \"p1\"}}",
                       "/context/patient");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE, "{\"type\": \"MESSAGE_CREATED\", \"target\": \"m1\"}",
                       "/context");
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"type\": \"MESSAGE_CREATED\", \"target\": \"m1\", \"context\": [1]}",
                       "/context");

    /* Every bad field at once. */
    EXPECT_ERRORS_TEXT(INGEST_MESSAGE,
                       "{\"type\": \"MESSAGE_DELETED\", \"target\": {},"
                       " \"context\": {\"patient\": {}}}",
                       "/type", "/target/id", "/context/patient/id");
}

/* ---- /v1/patient/replies ---- */

static void test_reply(void)
{
    struct ingest_event ev;
    json_t *body;
    time_t before = time(NULL);
    char buf[512];

    /* sent_at filled in when absent: the data is the body plus sent_at, and the event time. */
    body = J("{\"patient_id\": \"b3084f7e884e4af2b7e23b1dca494abd\", \"text\": \"Thanks!\"}");
    if (EXPECT_OK(INGEST_REPLY, body, &ev) == 0) {
        const char *sent = json_string_value(json_object_get(ev.data, "sent_at"));
        json_t *want = J("{\"patient_id\": \"b3084f7e884e4af2b7e23b1dca494abd\","
                         " \"text\": \"Thanks!\"}");
        CHECK_STR(ev.type, CE_TYPE_PATIENT_REPLY);
        CHECK_STR(ev.patient_id, "b3084f7e884e4af2b7e23b1dca494abd");
        CHECK(sent != NULL);
        CHECK(sent && timefmt_rfc3339_parse(sent, NULL) == 1);
        CHECK_STR(ev.time, sent);
        check_time_now(&ev, before);
        json_object_set_new(want, "sent_at", json_string(sent ? sent : ""));
        CHECK(json_equal(ev.data, want));
        json_decref(want);
        json_decref(ev.data);
    }
    json_decref(body);

    /* sent_at kept when given; every optional member. */
    body = J("{\"patient_id\": \"p1\", \"text\": \"  I will be there \\n\","
             " \"recipient\": {\"practitioner_id\": \"9cdb7a92d6614dcfa7948f2143a9f8e8\"},"
             " \"in_reply_to\": \"8f2b1c7e-5d4a-4b3e-9c1f-2a6d7e8f9a0b\","
             " \"sent_at\": \"2026-03-02T16:21:40-05:00\"}");
    {
        json_t *want = json_deep_copy(body);
        if (EXPECT_OK(INGEST_REPLY, body, &ev) == 0) {
            CHECK_STR(ev.time, "2026-03-02T16:21:40-05:00");
            CHECK(json_equal(ev.data, want));
            json_decref(ev.data);
        }
        json_decref(want);
    }
    json_decref(body);

    body = J("{\"patient_id\": \"p1\", \"text\": \"hi\","
             " \"recipient\": {\"email\": \"staff@clinic.example\"}}");
    if (EXPECT_OK(INGEST_REPLY, body, &ev) == 0) {
        CHECK_STR(
            json_string_value(json_object_get(json_object_get(ev.data, "recipient"), "email")),
            "staff@clinic.example");
        json_decref(ev.data);
    }
    json_decref(body);

    /* Required members. */
    EXPECT_ERRORS_TEXT(INGEST_REPLY, "{}", "/patient_id", "/text");
    EXPECT_ERRORS_TEXT(INGEST_REPLY, "{\"text\": \"hello\"}", "/patient_id");
    EXPECT_ERRORS_TEXT(INGEST_REPLY, "{\"patient_id\": \"p1\"}", "/text");

    /* text. */
    EXPECT_ERRORS_TEXT(INGEST_REPLY, "{\"patient_id\": \"p1\", \"text\": \"   \\n\\t \\r\"}",
                       "/text");
    EXPECT_ERRORS_TEXT(INGEST_REPLY, "{\"patient_id\": \"p1\", \"text\": \"\"}", "/text");
    EXPECT_ERRORS_TEXT(INGEST_REPLY, "{\"patient_id\": \"p1\", \"text\": 5}", "/text");
    EXPECT_ERRORS_TEXT(INGEST_REPLY, "{\"patient_id\": \"p1\", \"text\": null}", "/text");
    EXPECT_ERRORS_TEXT(INGEST_REPLY, "{\"patient_id\": \"p1\", \"text\": [\"a\"]}", "/text");

    /* patient_id. */
    EXPECT_ERRORS_TEXT(INGEST_REPLY, "{\"patient_id\": \"Patient/p1\", \"text\": \"hello\"}",
                       "/patient_id");
    snprintf(buf, sizeof(buf), "{\"patient_id\": \"%s\", \"text\": \"hello\"}", repeat('9', 65));
    EXPECT_ERRORS_TEXT(INGEST_REPLY, buf, "/patient_id");
    EXPECT_ERRORS_TEXT(INGEST_REPLY, "{\"patient_id\": 1234, \"text\": \"hello\"}", "/patient_id");

    /* recipient: exactly one of practitioner_id and email. */
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\", \"recipient\":"
                       " {\"practitioner_id\": \"x1\", \"email\": \"staff@clinic.example\"}}",
                       "/recipient");
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\", \"recipient\": {}}",
                       "/recipient");
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\", \"recipient\": \"x1\"}",
                       "/recipient");
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\", \"recipient\": null}",
                       "/recipient");
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\", \"recipient\":"
                       " {\"practitioner_id\": \"Practitioner/x1\"}}",
                       "/recipient/practitioner_id");
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\", \"recipient\":"
                       " {\"practitioner_id\": \"\"}}",
                       "/recipient/practitioner_id");
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\", \"recipient\":"
                       " {\"email\": \"staff@clinic.example\", \"phone\": \"+15550001111\"}}",
                       "/recipient/phone");
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\", \"recipient\":"
                       " {\"name\": \"Sam\"}}",
                       "/recipient/name", "/recipient");
    {
        static const char *const bad_emails[] = {
            "\"not-an-email\"",
            "\"a@b@clinic.example\"",
            "\"@clinic.example\"",
            "\"staff@\"",
            "\"sta ff@clinic.example\"",
            "\"staff@clinic.example \"",
            "\"staff@clinic\\texample\"",
            "\"\"",
            "5",
            "null",
        };
        for (size_t i = 0; i < sizeof(bad_emails) / sizeof(bad_emails[0]); i++) {
            snprintf(buf, sizeof(buf),
                     "{\"patient_id\": \"p1\", \"text\": \"hi\", \"recipient\": {\"email\": %s}}",
                     bad_emails[i]);
            EXPECT_ERRORS_TEXT(INGEST_REPLY, buf, "/recipient/email");
        }
    }

    /* in_reply_to: a Communication id. */
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\","
                       " \"in_reply_to\": \"Communication/c1\"}",
                       "/in_reply_to");
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\", \"in_reply_to\": \"\"}",
                       "/in_reply_to");
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\", \"in_reply_to\": 99}",
                       "/in_reply_to");
    snprintf(buf, sizeof(buf),
             "{\"patient_id\": \"p1\", \"text\": \"hi\", \"in_reply_to\": \"%s\"}",
             repeat('c', 65));
    EXPECT_ERRORS_TEXT(INGEST_REPLY, buf, "/in_reply_to");

    /* sent_at. */
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\","
                       " \"sent_at\": \"2026-03-02T16:21\"}",
                       "/sent_at");
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\", \"sent_at\": 1772481845}",
                       "/sent_at");

    /* Unknown members. */
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\", \"sentAt\": \"x\"}", "/sentAt");
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"p1\", \"text\": \"hi\", \"attachments\": [],"
                       " \"~/\": 1}",
                       "/attachments", "/~0~1");

    /* Every bad field at once, and the body is left without a sent_at. */
    EXPECT_ERRORS_TEXT(INGEST_REPLY,
                       "{\"patient_id\": \"bad/id\", \"text\": \"  \","
                       " \"recipient\": {\"email\": \"nope\", \"fax\": 1},"
                       " \"in_reply_to\": \"\", \"sent_at\": \"never-ever\", \"extra\": []}",
                       "/extra", "/patient_id", "/text", "/recipient/fax", "/recipient/email",
                       "/in_reply_to", "/sent_at");
}

/* ---- no PHI in errors ---- */

/* @returns 1 when the serialized problem contains @p s anywhere. */
static int problem_mentions(enum ingest_kind kind, const char *text, const char *s)
{
    json_t *body = J(text), *pb = problem_new(400, NULL, NULL);
    struct ingest_event ev;
    char *dumped;
    int found;

    CHECK_INT(ingest_map(kind, body, &ev, pb), -1);
    CHECK(problem_error_count(pb) > 0);
    dumped = json_dumps(pb, JSON_COMPACT);
    found = dumped && strstr(dumped, s) != NULL;
    if (found)
        fprintf(stderr, "problem quotes \"%s\": %s\n", s, dumped);
    free(dumped);
    json_decref(pb);
    json_decref(body);
    return found;
}

static void test_no_phi(void)
{
    CHECK(!problem_mentions(INGEST_REPLY,
                            "{\"patient_id\": \"bad/id\", \"text\": \"SECRET-PHI-TEXT\"}",
                            "SECRET-PHI-TEXT"));
    CHECK(!problem_mentions(INGEST_REPLY, "{\"patient_id\": \"SECRET/PHI-ID\", \"text\": \"x\"}",
                            "SECRET"));
    CHECK(!problem_mentions(INGEST_REPLY,
                            "{\"patient_id\": \"p1\", \"text\": \"SECRET-PHI-TEXT\","
                            " \"recipient\": {\"email\": \"SECRET-PHI-EMAIL\"}}",
                            "SECRET"));
    CHECK(!problem_mentions(INGEST_REPLY,
                            "{\"patient_id\": \"p1\", \"text\": \"x\","
                            " \"sent_at\": \"SECRET-PHI-DATE\"}",
                            "SECRET"));
    CHECK(!problem_mentions(INGEST_MESSAGE,
                            "{\"communication_id\": \"SECRET PHI\", \"patient_id\": \"p1\","
                            " \"occurred_at\": \"SECRET-PHI-TIME\"}",
                            "SECRET"));
    CHECK(!problem_mentions(INGEST_MESSAGE,
                            "{\"resourceType\": \"Communication\", \"id\": \"c1\","
                            " \"recipient\": [{\"reference\": \"Practitioner/x\"}],"
                            " \"payload\": [{\"contentString\": \"SECRET-PHI-CONTENT\"}]}",
                            "SECRET"));
    CHECK(!problem_mentions(INGEST_MESSAGE,
                            "{\"type\": \"SECRET-PHI-TYPE\", \"target\": \"SECRET/PHI\","
                            " \"context\": {\"patient\": {\"id\": \"SECRET PHI\"}}}",
                            "SECRET"));
    CHECK(!problem_mentions(INGEST_QUESTIONNAIRE,
                            "{\"patient_id\": \"bad/id\", \"questionnaire\": {\"code\": \"Q\"},"
                            " \"answers\": [{\"link_id\": \"l1\","
                            " \"value_string\": \"SECRET-PHI-ANSWER\"},"
                            " {\"link_id\": \"l2\", \"value_codes\": [\"SECRET-PHI-CODE\","
                            " \"SECRET-PHI-CODE\"]}]}",
                            "SECRET"));
    CHECK(!problem_mentions(INGEST_QUESTIONNAIRE,
                            "{\"resourceType\": \"QuestionnaireResponse\","
                            " \"questionnaire\": \"SECRET-PHI-Q\", \"status\": \"SECRET-PHI-S\","
                            " \"subject\": {\"reference\": \"SECRET-PHI-SUBJ\"},"
                            " \"item\": [{\"linkId\": \"l1\", \"answer\":"
                            " [{\"valueString\": \"SECRET-PHI-ANSWER\", \"valueCoding\": {}}]}]}",
                            "SECRET"));
}

/* ---- /v1/patient/questionnaire-responses: FHIR form ---- */

static json_t *qr(void)
{
    return example("questionnaire_response_create_body");
}

/* The answer object at item[i].answer[j] of @p body (borrowed). */
static json_t *qr_answer(json_t *body, size_t i, size_t j)
{
    return json_array_get(
        json_object_get(json_array_get(json_object_get(body, "item"), i), "answer"), j);
}

static void test_questionnaire_fhir(void)
{
    struct ingest_event ev;
    json_t *body, *a;
    time_t before = time(NULL);

    body = qr();
    if (EXPECT_OK(INGEST_QUESTIONNAIRE, body, &ev) == 0) {
        CHECK_STR(ev.type, CE_TYPE_QUESTIONNAIRE);
        CHECK_STR(ev.patient_id, "b3084f7e884e4af2b7e23b1dca494abd");
        CHECK_STR(ev.time, "2026-03-02T15:04:05Z"); /* authored */
        CHECK_INT(json_object_size(ev.data), 2);
        CHECK_STR(json_string_value(json_object_get(ev.data, "patient_id")),
                  "b3084f7e884e4af2b7e23b1dca494abd");
        CHECK(json_equal(json_object_get(ev.data, "questionnaire_response"),
                         json_object_get(examples, "questionnaire_response_create_body")));
        json_decref(ev.data);
    }
    json_decref(body);

    /* Without authored: the time is now, and nothing is added to the resource. */
    body = qr();
    json_object_del(body, "authored");
    if (EXPECT_OK(INGEST_QUESTIONNAIRE, body, &ev) == 0) {
        check_time_now(&ev, before);
        CHECK(json_object_get(json_object_get(ev.data, "questionnaire_response"), "authored") ==
              NULL);
        json_decref(ev.data);
    }
    json_decref(body);

    /* questionnaire: "Questionnaire/<id>". */
    {
        static const char *const bad[] = {"47a408d7-9f1d-4cfd-97c7-aa810df9ed39",
                                          "Patient/47a408d7",
                                          "Questionnaire/",
                                          "Questionnaire/a b",
                                          "questionnaire/q1",
                                          "Questionnaire/q1/",
                                          ""};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            body = qr();
            json_object_set_new(body, "questionnaire", json_string(bad[i]));
            EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/questionnaire");
        }
    }
    body = qr();
    json_object_del(body, "questionnaire");
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/questionnaire");
    body = qr();
    json_object_set_new(body, "questionnaire", J("{\"reference\": \"Questionnaire/q1\"}"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/questionnaire");

    /* status: completed only. */
    body = qr();
    json_object_set_new(body, "status", json_string("in-progress"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/status");
    body = qr();
    json_object_set_new(body, "status", json_string("Completed"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/status");
    body = qr();
    json_object_del(body, "status");
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/status");

    /* subject: a Patient reference. */
    body = qr();
    json_object_set_new(body, "subject", J("{\"reference\": \"Practitioner/x1\"}"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/subject/reference");
    body = qr();
    json_object_set_new(body, "subject", J("{\"reference\": \"Patient/\"}"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/subject/reference");
    body = qr();
    json_object_set_new(body, "subject",
                        J("{\"reference\": \"b3084f7e884e4af2b7e23b1dca494abd\"}"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/subject/reference");
    body = qr();
    json_object_set_new(body, "subject", J("{\"type\": \"Patient\"}"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/subject/reference");
    body = qr();
    json_object_set_new(body, "subject", json_string("Patient/b3084f7e884e4af2b7e23b1dca494abd"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/subject");
    body = qr();
    json_object_del(body, "subject");
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/subject");

    /* item: a non-empty array of objects with a linkId and answers. */
    body = qr();
    json_object_set_new(body, "item", json_array());
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item");
    body = qr();
    json_object_del(body, "item");
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item");
    body = qr();
    json_object_set_new(body, "item", J("{\"linkId\": \"x\"}"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item");
    body = qr();
    json_array_append_new(json_object_get(body, "item"), json_string("x"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item/2");
    body = qr();
    json_object_del(json_array_get(json_object_get(body, "item"), 0), "linkId");
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item/0/linkId");
    body = qr();
    json_object_set_new(json_array_get(json_object_get(body, "item"), 1), "answer", json_array());
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item/1/answer");
    body = qr();
    json_object_del(json_array_get(json_object_get(body, "item"), 0), "answer");
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item/0/answer");

    /* answers: exactly one of valueString and valueCoding. */
    body = qr();
    json_object_set_new(qr_answer(body, 1, 0), "valueCoding",
                        J("{\"system\": \"http://snomed.info/sct\", \"code\": \"LA33-6\"}"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item/1/answer/0");
    body = qr();
    a = qr_answer(body, 0, 0);
    json_object_del(a, "valueCoding");
    json_object_set_new(a, "valueInteger", json_integer(3));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item/0/answer/0");
    body = qr();
    json_array_append_new(
        json_object_get(json_array_get(json_object_get(body, "item"), 1), "answer"),
        json_integer(5));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item/1/answer/1");
    body = qr();
    json_object_set_new(qr_answer(body, 1, 0), "valueString", json_string(""));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item/1/answer/0/valueString");

    /* valueCoding needs a system and a code. */
    body = qr();
    json_object_del(json_object_get(qr_answer(body, 0, 0), "valueCoding"), "code");
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item/0/answer/0/valueCoding/code");
    body = qr();
    json_object_del(json_object_get(qr_answer(body, 0, 0), "valueCoding"), "system");
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item/0/answer/0/valueCoding/system");
    body = qr();
    json_object_set_new(qr_answer(body, 0, 0), "valueCoding", J("{\"display\": \"Yes\"}"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item/0/answer/0/valueCoding/system",
                  "/item/0/answer/0/valueCoding/code");
    body = qr();
    json_object_set_new(qr_answer(body, 0, 0), "valueCoding",
                        J("{\"system\": \"http://snomed.info/sct\", \"code\": \"\"}"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item/0/answer/0/valueCoding/code");
    body = qr();
    json_object_set_new(qr_answer(body, 0, 0), "valueCoding", json_string("LA33-6"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/item/0/answer/0/valueCoding");

    /* authored, and the resource type. */
    body = qr();
    json_object_set_new(body, "authored", json_string("2026-03-02T15:04:05"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/authored");
    body = qr();
    json_object_set_new(body, "resourceType", json_string("Questionnaire"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/resourceType");
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, example("questionnaire"), "/resourceType");
    body = qr();
    json_object_set_new(body, "resourceType", json_null());
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/resourceType");

    /* Every bad field at once. */
    body = qr();
    json_object_set_new(body, "questionnaire", json_string("q1"));
    json_object_set_new(body, "status", json_string("amended"));
    json_object_set_new(body, "subject", J("{\"reference\": \"Group/g1\"}"));
    json_object_set_new(qr_answer(body, 1, 0), "valueCoding", J("{\"code\": \"x\"}"));
    json_object_del(json_object_get(qr_answer(body, 0, 0), "valueCoding"), "code");
    json_object_set_new(body, "authored", json_string("later"));
    EXPECT_ERRORS(INGEST_QUESTIONNAIRE, body, "/questionnaire", "/status", "/subject/reference",
                  "/authored", "/item/0/answer/0/valueCoding/code", "/item/1/answer/0");
}

/* ---- /v1/patient/questionnaire-responses: simple form ---- */

#define SIMPLE_HEAD "{\"patient_id\": \"p1\", \"questionnaire\": {\"id\": \"q-1\"}, "
#define A_OK        "{\"link_id\": \"l0\", \"value_string\": \"ok\"}"

static void test_questionnaire_simple(void)
{
    struct ingest_event ev;
    json_t *body;
    time_t before = time(NULL);

    body = J("{\"patient_id\": \"7c4e1f0a9b2d4e6f8a3c5b7d9e1f2a4c\","
             " \"questionnaire\": {\"id\": \"9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a\"},"
             " \"answers\": [{\"link_id\": \"l1\", \"value_string\": \"Swimming\"},"
             "  {\"question_code\": \"228448000\", \"value_code\": \"LA33-6\"},"
             "  {\"link_id\": \"l3\", \"value_codes\": [\"a\", \"b\", \"c\"]}]}");
    {
        json_t *want = json_deep_copy(body);
        if (EXPECT_OK(INGEST_QUESTIONNAIRE, body, &ev) == 0) {
            const char *at = json_string_value(json_object_get(ev.data, "authored_at"));
            CHECK_STR(ev.type, CE_TYPE_QUESTIONNAIRE);
            CHECK_STR(ev.patient_id, "7c4e1f0a9b2d4e6f8a3c5b7d9e1f2a4c");
            CHECK(at != NULL);
            CHECK_STR(ev.time, at);
            check_time_now(&ev, before);
            json_object_set_new(want, "authored_at", json_string(at ? at : ""));
            CHECK(json_equal(ev.data, want)); /* the simple form itself, authored_at filled */
            json_decref(ev.data);
        }
        json_decref(want);
    }
    json_decref(body);

    body = J("{\"patient_id\": \"p1\", \"questionnaire\": {\"code\": \"PRE-VISIT-CHECKIN\"},"
             " \"answers\": [" A_OK "], \"authored_at\": \"2026-03-03T13:40:00Z\"}");
    {
        json_t *want = json_deep_copy(body);
        if (EXPECT_OK(INGEST_QUESTIONNAIRE, body, &ev) == 0) {
            CHECK_STR(ev.time, "2026-03-03T13:40:00Z");
            CHECK(json_equal(ev.data, want));
            json_decref(ev.data);
        }
        json_decref(want);
    }
    json_decref(body);

    /* questionnaire: exactly one of id and code. */
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       "{\"patient_id\": \"p1\", \"questionnaire\": {}, \"answers\": [" A_OK "]}",
                       "/questionnaire");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       "{\"patient_id\": \"p1\", \"questionnaire\": {\"id\": \"q1\", \"code\": "
                       "\"C\"}, \"answers\": [" A_OK "]}",
                       "/questionnaire");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       "{\"patient_id\": \"p1\", \"questionnaire\": {\"id\": \"Questionnaire/q1\"},"
                       " \"answers\": [" A_OK "]}",
                       "/questionnaire/id");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       "{\"patient_id\": \"p1\", \"questionnaire\": {\"code\": \"\"},"
                       " \"answers\": [" A_OK "]}",
                       "/questionnaire/code");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       "{\"patient_id\": \"p1\", \"questionnaire\": {\"id\": \"q1\", \"name\": "
                       "\"Exercise\"}, \"answers\": [" A_OK "]}",
                       "/questionnaire/name");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       "{\"patient_id\": \"p1\", \"questionnaire\": \"q1\", \"answers\": [" A_OK
                       "]}",
                       "/questionnaire");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE, "{\"patient_id\": \"p1\", \"answers\": [" A_OK "]}",
                       "/questionnaire");

    /* answers: a non-empty array of objects. */
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE, SIMPLE_HEAD "\"answers\": []}", "/answers");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE, SIMPLE_HEAD "\"answers\": {}}", "/answers");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE, SIMPLE_HEAD "\"answers\": \"x\"}", "/answers");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       "{\"patient_id\": \"p1\", \"questionnaire\": {\"id\": \"q-1\"}}",
                       "/answers");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE, SIMPLE_HEAD "\"answers\": [" A_OK ", 5]}",
                       "/answers/1");

    /* Each answer: exactly one of link_id and question_code... */
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [{\"link_id\": \"l\", \"question_code\": \"q\","
                                   " \"value_string\": \"v\"}]}",
                       "/answers/0");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [{\"value_string\": \"v\"}]}", "/answers/0");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [{\"link_id\": \"\", \"value_string\": \"v\"}]}",
                       "/answers/0/link_id");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [" A_OK ", {\"question_code\": 4,"
                                   " \"value_code\": \"v\"}]}",
                       "/answers/1/question_code");
    /* ...and exactly one of value_string, value_code and value_codes. */
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE, SIMPLE_HEAD "\"answers\": [{\"link_id\": \"l\"}]}",
                       "/answers/0");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [{\"link_id\": \"l\", \"value_string\": \"v\","
                                   " \"value_code\": \"c\"}]}",
                       "/answers/0");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [{\"link_id\": \"l\", \"value_code\": \"c\","
                                   " \"value_codes\": [\"c\"]}]}",
                       "/answers/0");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [{\"link_id\": \"l\", \"value_string\": \"v\","
                                   " \"value_code\": \"c\", \"value_codes\": [\"c\"]}]}",
                       "/answers/0");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [{\"link_id\": \"l\", \"value_code\": \"\"}]}",
                       "/answers/0/value_code");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [{\"link_id\": \"l\", \"value_string\": 3}]}",
                       "/answers/0/value_string");
    /* FHIR spellings in the simple form are unknown members (and leave no value). */
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [{\"link_id\": \"l\", \"valueString\": \"v\"}]}",
                       "/answers/0/valueString", "/answers/0");

    /* value_codes: a non-empty array of distinct non-empty strings. */
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [" A_OK ", {\"link_id\": \"l\","
                                   " \"value_codes\": []}]}",
                       "/answers/1/value_codes");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [" A_OK ", {\"link_id\": \"l\","
                                   " \"value_codes\": \"a\"}]}",
                       "/answers/1/value_codes");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [" A_OK ", {\"link_id\": \"l\","
                                   " \"value_codes\": [\"a\", \"a\"]}]}",
                       "/answers/1/value_codes/1");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [" A_OK ", {\"link_id\": \"l\","
                                   " \"value_codes\": [5, \"a\"]}]}",
                       "/answers/1/value_codes/0");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [" A_OK ", {\"link_id\": \"l\","
                                   " \"value_codes\": [\"a\", \"\", null]}]}",
                       "/answers/1/value_codes/1", "/answers/1/value_codes/2");
    /* Each repeat is reported once, however many copies come before it. */
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [" A_OK ", {\"link_id\": \"l\","
                                   " \"value_codes\": [\"a\", \"b\", \"a\", \"a\"]}]}",
                       "/answers/1/value_codes/2", "/answers/1/value_codes/3");

    /* authored_at, patient_id, unknown members. */
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [" A_OK "], \"authored_at\": \"2026-03-03\"}",
                       "/authored_at");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [" A_OK
                                   "], \"authored\": \"2026-03-03T13:40:00Z\"}",
                       "/authored");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       "{\"questionnaire\": {\"id\": \"q-1\"}, \"answers\": [" A_OK "]}",
                       "/patient_id");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       "{\"patient_id\": \"Patient/p1\", \"questionnaire\": {\"id\": \"q-1\"},"
                       " \"answers\": [" A_OK "]}",
                       "/patient_id");
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       SIMPLE_HEAD "\"answers\": [{\"link_id\": \"l\", \"value_string\": \"v\","
                                   " \"note\": \"x\"}]}",
                       "/answers/0/note");

    /* Every bad field at once, across several answers. */
    EXPECT_ERRORS_TEXT(INGEST_QUESTIONNAIRE,
                       "{\"patient_id\": \"\", \"questionnaire\": {\"id\": \"a/b\"},"
                       " \"answers\": [" A_OK ", {\"value_code\": \"c\"},"
                       "  {\"link_id\": \"l\", \"value_codes\": [\"x\", \"x\"], \"extra\": 1}],"
                       " \"authored_at\": \"soon\", \"source\": \"app\"}",
                       "/source", "/patient_id", "/questionnaire/id", "/answers/1",
                       "/answers/2/extra", "/answers/2/value_codes/1", "/authored_at");
}

/* ---- bodies that are not objects ---- */

static void test_not_object(void)
{
    static const char *const bodies[] = {"[]",  "[{\"patient_id\": \"p1\"}]", "\"x\"", "5", "null",
                                         "true"};
    for (int k = INGEST_MESSAGE; k <= INGEST_QUESTIONNAIRE; k++)
        for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
            EXPECT_ERRORS_TEXT((enum ingest_kind)k, bodies[i], "");
}

int main(void)
{
    json_error_t err;
    examples = json_load_file(PM_TESTDATA_DIR "/canvas-examples.json", 0, &err);
    if (!examples) {
        fprintf(stderr, "canvas-examples.json: %s\n", err.text);
        return 1;
    }
    test_message_notification();
    test_message_communication();
    test_message_plugin();
    test_reply();
    test_no_phi();
    test_questionnaire_fhir();
    test_questionnaire_simple();
    test_not_object();
    json_decref(examples);
    return UNIT_DONE();
}
