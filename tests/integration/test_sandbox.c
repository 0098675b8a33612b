/* Integration test of pm-sandbox over real HTTP: Canvas auth and FHIR quirks, Twilio, SendGrid,
 * the signed webhook receiver, faults, non-blocking latency, token expiry and recording. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

#define WHSEC      "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define TWILIO_SID "AC5a4db0c55a4db0c55a4db0c55a4db0c5"
#define PAT        "b3084f7e884e4af2b7e23b1dca494abd"
#define STAFF      "9cdb7a92d6614dcfa7948f2143a9f8e8"
#define QID        "47a408d7-9f1d-4cfd-97c7-aa810df9ed39"
#define Q_SINGLE   "d82e29db-0cac-4b97-a5aa-9e81749686e2"
#define Q_TEXT     "7eb053cd-cb2d-435f-8f55-f154645b55c4"
#define TIMEOUT_MS 10000

/* Texts sent in requests that must never reach the sandbox's log. */
#define PHI_TEXT  "Thanks from the integration test"
#define PHI_PHONE "5554320555"

struct ctx {
    struct harness *h;
    struct harness_proc *proc;
    char base[128];
    char token[128];
    char auth[192]; /* "Authorization: Bearer <token>" */
};

/* One request to the sandbox; @p resp must be freed. */
static int call(struct ctx *c, const char *method, const char *path, const char *const headers[],
                const char *body, struct harness_http_response *resp)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", c->base, path);
    return harness_http(method, url, headers, body, body ? strlen(body) : 0, TIMEOUT_MS, resp);
}

static json_t *body_json(const struct harness_http_response *resp)
{
    json_error_t jerr;
    return json_loadb(resp->body, resp->body_len, JSON_DECODE_ANY, &jerr);
}

/* The first OperationOutcome issue's code and text. */
static const char *oo_code(json_t *oo)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(oo, "issue"), 0), "code"));
}

static const char *oo_text(json_t *oo)
{
    return json_string_value(json_object_get(
        json_object_get(json_array_get(json_object_get(oo, "issue"), 0), "details"), "text"));
}

static int get_token(struct ctx *c, char *out, size_t len)
{
    const char *const hdr[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    struct harness_http_response r;
    json_t *j;
    int rc = -1;

    call(c, "POST", "/auth/token/", hdr,
         "grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret", &r);
    j = body_json(&r);
    if (r.status == 200 && json_is_string(json_object_get(j, "access_token"))) {
        snprintf(out, len, "%s", json_string_value(json_object_get(j, "access_token")));
        rc = 0;
    }
    json_decref(j);
    harness_http_response_free(&r);
    return rc;
}

static void test_token(struct ctx *c)
{
    struct harness *h = c->h;
    const char *const form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    const char *const js[] = {"Content-Type: application/json", NULL};
    struct harness_http_response r;
    json_t *j;

    call(c, "POST", "/auth/token/", form,
         "grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret", &r);
    H_CHECK_INT(h, r.status, 200);
    j = body_json(&r);
    H_CHECK_INT(h, json_integer_value(json_object_get(j, "expires_in")), 36000);
    H_CHECK_STR(h, json_string_value(json_object_get(j, "token_type")), "Bearer");
    H_CHECK(h, json_string_length(json_object_get(j, "access_token")) >= 20);
    json_decref(j);
    harness_http_response_free(&r);

    call(c, "POST", "/auth/token/", form,
         "grant_type=client_credentials&client_id=sandbox-client&client_secret=wrong", &r);
    H_CHECK_INT(h, r.status, 401);
    j = body_json(&r);
    H_CHECK_STR(h, json_string_value(json_object_get(j, "error")), "invalid_client");
    json_decref(j);
    harness_http_response_free(&r);

    call(c, "POST", "/auth/token/", form,
         "grant_type=password&client_id=sandbox-client&client_secret=sandbox-secret", &r);
    H_CHECK_INT(h, r.status, 400);
    j = body_json(&r);
    H_CHECK_STR(h, json_string_value(json_object_get(j, "error")), "unsupported_grant_type");
    json_decref(j);
    harness_http_response_free(&r);

    call(c, "POST", "/auth/token/", js,
         "{\"grant_type\":\"client_credentials\",\"client_id\":\"sandbox-client\"}", &r);
    H_CHECK_INT(h, r.status, 400);
    j = body_json(&r);
    H_CHECK_STR(h, json_string_value(json_object_get(j, "error")), "invalid_request");
    json_decref(j);
    harness_http_response_free(&r);
}

static void test_fhir_auth(struct ctx *c)
{
    struct harness *h = c->h;
    const char *const bad[] = {"Authorization: Bearer not-a-token", NULL};
    const char *const good[] = {c->auth, NULL};
    struct harness_http_response r;
    json_t *j;

    call(c, "GET", "/fhir/Patient/" PAT, NULL, NULL, &r);
    H_CHECK_INT(h, r.status, 401);
    j = body_json(&r);
    H_CHECK_STR(h, oo_code(j), "unknown");
    H_CHECK_STR(h, oo_text(j), "Authentication failed");
    H_CHECK(h, harness_http_header(&r, "fumage-correlation-id") != NULL);
    json_decref(j);
    harness_http_response_free(&r);

    call(c, "GET", "/fhir/Patient/" PAT, bad, NULL, &r);
    H_CHECK_INT(h, r.status, 401);
    harness_http_response_free(&r);

    call(c, "GET", "/fhir/Patient/" PAT, good, NULL, &r);
    H_CHECK_INT(h, r.status, 200);
    j = body_json(&r);
    H_CHECK_STR(h, json_string_value(json_object_get(j, "id")), PAT);
    H_CHECK_INT(h,
                strlen(harness_http_header(&r, "fumage-correlation-id")
                           ? harness_http_header(&r, "fumage-correlation-id")
                           : ""),
                36);
    json_decref(j);
    harness_http_response_free(&r);

    call(c, "GET", "/fhir/Communication/00000000-0000-0000-0000-000000000000", good, NULL, &r);
    H_CHECK_INT(h, r.status, 404);
    j = body_json(&r);
    H_CHECK_STR(h, oo_code(j), "not-found");
    H_CHECK_STR(h, oo_text(j),
                "Unknown Communication resource '00000000-0000-0000-0000-000000000000'");
    json_decref(j);
    harness_http_response_free(&r);

    call(c, "DELETE", "/fhir/Communication/8f2b1c7e-5d4a-4b3e-9c1f-2a6d7e8f9a0b", good, NULL, &r);
    H_CHECK_INT(h, r.status, 405);
    j = body_json(&r);
    H_CHECK_STR(h, oo_code(j), "not-supported");
    json_decref(j);
    harness_http_response_free(&r);
}

static void test_communication_create(struct ctx *c)
{
    struct harness *h = c->h;
    const char *const hdr[] = {c->auth, "Content-Type: application/json", NULL};
    const char *const get[] = {c->auth, NULL};
    struct harness_http_response r;
    const char *loc, *p;
    char id[64] = "", path[128];
    json_t *j;

    call(c, "POST", "/fhir/Communication", hdr,
         "{\"resourceType\":\"Communication\",\"status\":\"unknown\",\"recipient\":[{\"reference\":"
         "\"Practitioner/" STAFF "\"}],\"sender\":{\"reference\":\"Patient/" PAT
         "\"},\"payload\":[{\"contentString\":\"" PHI_TEXT "\"}]}",
         &r);
    H_CHECK_INT(h, r.status, 201);
    H_CHECK_STR(h, r.body, "null");
    loc = harness_http_header(&r, "Location");
    H_CHECKF(h,
             loc && strncmp(loc, "http://fumage-sandbox.canvasmedical.com/Communication/", 54) == 0,
             "Location is %s", loc ? loc : "(none)");
    if (loc && (p = strstr(loc, "/Communication/")) != NULL) {
        p += strlen("/Communication/");
        size_t n = strcspn(p, "/");
        if (n < sizeof(id)) {
            memcpy(id, p, n);
            id[n] = '\0';
        }
        H_CHECK(h, strstr(p, "/_history/1") != NULL);
    }
    harness_http_response_free(&r);
    H_CHECK_INT(h, strlen(id), 36);

    snprintf(path, sizeof(path), "/fhir/Communication/%s", id);
    call(c, "GET", path, get, NULL, &r);
    H_CHECK_INT(h, r.status, 200);
    j = body_json(&r);
    H_CHECK_STR(h, json_string_value(json_object_get(j, "status")), "completed");
    H_CHECK(h, json_is_string(json_object_get(j, "sent")));
    H_CHECK_STR(h,
                json_string_value(json_object_get(json_array_get(json_object_get(j, "payload"), 0),
                                                  "contentString")),
                PHI_TEXT);
    json_decref(j);
    harness_http_response_free(&r);

    /* Canvas does not support threading fields: 400, not silently dropped. */
    call(c, "POST", "/fhir/Communication", hdr,
         "{\"status\":\"unknown\",\"inResponseTo\":[{\"reference\":\"Communication/x\"}],"
         "\"recipient\":[{\"reference\":\"Practitioner/" STAFF "\"}],\"sender\":{\"reference\":"
         "\"Patient/" PAT "\"},\"payload\":[{\"contentString\":\"x\"}]}",
         &r);
    H_CHECK_INT(h, r.status, 400);
    j = body_json(&r);
    H_CHECK_STR(h, oo_code(j), "invalid");
    json_decref(j);
    harness_http_response_free(&r);
}

static void test_questionnaire_response(struct ctx *c)
{
    struct harness *h = c->h;
    const char *const hdr[] = {c->auth, "Content-Type: application/json", NULL};
    struct harness_http_response r;
    json_t *j;
    const char *head = "{\"resourceType\":\"QuestionnaireResponse\",\"questionnaire\":"
                       "\"Questionnaire/" QID "\",\"status\":\"completed\",\"subject\":"
                       "{\"reference\":\"Patient/" PAT "\"},\"item\":";
    char body[2048];

    snprintf(body, sizeof(body),
             "%s[{\"linkId\":\"" Q_SINGLE "\",\"answer\":[{\"valueCoding\":{\"system\":"
             "\"http://snomed.info/sct\",\"code\":\"LA99-9\"}}]}]}",
             head);
    call(c, "POST", "/fhir/QuestionnaireResponse", hdr, body, &r);
    H_CHECK_INT(h, r.status, 422);
    j = body_json(&r);
    H_CHECK_STR(h, oo_code(j), "business-rule");
    H_CHECK_STR(h, oo_text(j), "Question received an invalid response option code: LA99-9");
    json_decref(j);
    harness_http_response_free(&r);

    snprintf(body, sizeof(body),
             "%s[{\"linkId\":\"" Q_SINGLE "\",\"answer\":[{\"valueString\":\"Yes\"}]}]}", head);
    call(c, "POST", "/fhir/QuestionnaireResponse", hdr, body, &r);
    H_CHECK_INT(h, r.status, 422);
    harness_http_response_free(&r);

    call(c, "POST", "/fhir/QuestionnaireResponse", hdr,
         "{\"questionnaire\":{\"reference\":\"Questionnaire/" QID "\"},\"status\":\"completed\","
         "\"subject\":{\"reference\":\"Patient/" PAT "\"}}",
         &r);
    H_CHECK_INT(h, r.status, 400);
    harness_http_response_free(&r);

    snprintf(body, sizeof(body),
             "%s[{\"linkId\":\"" Q_SINGLE "\",\"answer\":[{\"valueCoding\":{\"system\":"
             "\"http://snomed.info/sct\",\"code\":\"LA33-6\",\"display\":\"Yes\"}}]},"
             "{\"linkId\":\"" Q_TEXT "\",\"answer\":[{\"valueString\":\"Swimming\"}]}]}",
             head);
    call(c, "POST", "/fhir/QuestionnaireResponse", hdr, body, &r);
    H_CHECK_INT(h, r.status, 201);
    H_CHECK_STR(h, r.body, "null");
    H_CHECK(h, harness_http_header(&r, "Location") &&
                   strstr(harness_http_header(&r, "Location"), "/QuestionnaireResponse/"));
    harness_http_response_free(&r);
}

static const char *link_url(json_t *bundle, const char *rel)
{
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(bundle, "link"), i, l)
    {
        if (strcmp(json_string_value(json_object_get(l, "relation")), rel) == 0)
            return json_string_value(json_object_get(l, "url"));
    }
    return NULL;
}

static void test_search(struct ctx *c)
{
    struct harness *h = c->h;
    const char *const get[] = {c->auth, NULL};
    const char *const js[] = {"Content-Type: application/json", NULL};
    struct harness_http_response r;
    json_t *j, *seed;
    char *text;

    /* An empty result has neither entry nor link. */
    call(c, "GET", "/fhir/Communication?patient=Patient/00000000000000000000000000000000", get,
         NULL, &r);
    H_CHECK_INT(h, r.status, 200);
    j = body_json(&r);
    H_CHECK_INT(h, json_integer_value(json_object_get(j, "total")), 0);
    H_CHECK_INT(h, json_object_size(j), 3);
    H_CHECK(h, !json_object_get(j, "entry") && !json_object_get(j, "link"));
    json_decref(j);
    harness_http_response_free(&r);

    /* Seed a patient with 12 messages, then page through them 5 at a time. */
    seed = json_array();
    json_array_append_new(seed, json_pack("{s:s, s:s, s:b}", "resourceType", "Patient", "id",
                                          "aaaaaaaabbbbbbbbccccccccdddddddd", "active", 1));
    for (int i = 0; i < 12; i++) {
        char id[40];
        snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", i);
        json_array_append_new(seed, json_pack("{s:s, s:s, s:s, s:[{s:s}], s:{s:s}, s:[{s:s}]}",
                                              "resourceType", "Communication", "id", id, "status",
                                              "completed", "recipient", "reference",
                                              "Patient/aaaaaaaabbbbbbbbccccccccdddddddd", "sender",
                                              "reference", "Practitioner/" STAFF, "payload",
                                              "contentString", "seeded"));
    }
    text = json_dumps(seed, JSON_COMPACT);
    call(c, "POST", "/_sandbox/resources", js, text, &r);
    H_CHECK_INT(h, r.status, 200);
    harness_http_response_free(&r);
    free(text);
    json_decref(seed);

    call(c, "GET", "/fhir/Communication?patient=aaaaaaaabbbbbbbbccccccccdddddddd&_count=5", get,
         NULL, &r);
    j = body_json(&r);
    H_CHECK_INT(h, json_integer_value(json_object_get(j, "total")), 12);
    H_CHECK_INT(h, json_array_size(json_object_get(j, "entry")), 5);
    H_CHECK_STR(h, link_url(j, "self"),
                "/Communication?patient=aaaaaaaabbbbbbbbccccccccdddddddd&_count=5&_offset=0");
    H_CHECK_STR(h, link_url(j, "next"),
                "/Communication?patient=aaaaaaaabbbbbbbbccccccccdddddddd&_count=5&_offset=5");
    json_decref(j);
    harness_http_response_free(&r);

    call(c, "GET",
         "/fhir/Communication?patient=aaaaaaaabbbbbbbbccccccccdddddddd&_count=5&_offset=10", get,
         NULL, &r);
    j = body_json(&r);
    H_CHECK_INT(h, json_array_size(json_object_get(j, "entry")), 2);
    H_CHECK(h, link_url(j, "next") == NULL);
    json_decref(j);
    harness_http_response_free(&r);

    /* Practitioner search: only schedulable staff unless asked for everyone. */
    call(c, "GET", "/fhir/Practitioner?email=staff%40clinic.example", get, NULL, &r);
    j = body_json(&r);
    H_CHECK_INT(h, json_integer_value(json_object_get(j, "total")), 0);
    json_decref(j);
    harness_http_response_free(&r);
    call(c, "GET",
         "/fhir/Practitioner?email=staff%40clinic.example&include-non-schedulable-practitioners="
         "true",
         get, NULL, &r);
    j = body_json(&r);
    H_CHECK_INT(h, json_integer_value(json_object_get(j, "total")), 1);
    H_CHECK(h, strstr(r.body, STAFF) != NULL && strstr(r.body, "_sandbox") == NULL);
    json_decref(j);
    harness_http_response_free(&r);

    /* Reset drops the seeded resources. */
    call(c, "DELETE", "/_sandbox/resources", NULL, NULL, &r);
    H_CHECK_INT(h, r.status, 200);
    harness_http_response_free(&r);
    call(c, "GET", "/fhir/Patient/aaaaaaaabbbbbbbbccccccccdddddddd", get, NULL, &r);
    H_CHECK_INT(h, r.status, 404);
    harness_http_response_free(&r);
}

static void test_twilio(struct ctx *c)
{
    struct harness *h = c->h;
    /* base64("AC5a4db0c5...:sandbox-twilio-token") and a wrong token. */
    char good[256], bad[256], path[256];
    const char *const hdr_good[] = {good, "Content-Type: application/x-www-form-urlencoded", NULL};
    const char *const hdr_bad[] = {bad, "Content-Type: application/x-www-form-urlencoded", NULL};
    struct harness_http_response r;
    json_t *j;

    snprintf(good, sizeof(good), "Authorization: Basic %s",
             "QUM1YTRkYjBjNTVhNGRiMGM1NWE0ZGIwYzU1YTRkYjBjNTpzYW5kYm94LXR3aWxpby10b2tlbg==");
    snprintf(bad, sizeof(bad), "Authorization: Basic %s",
             "QUM1YTRkYjBjNTVhNGRiMGM1NWE0ZGIwYzU1YTRkYjBjNTp3cm9uZw==");
    snprintf(path, sizeof(path), "/twilio/2010-04-01/Accounts/%s/Messages.json", TWILIO_SID);

    call(c, "POST", path, hdr_good, "To=" PHI_PHONE "&From=%2B15550001111&Body=hello", &r);
    H_CHECK_INT(h, r.status, 400);
    j = body_json(&r);
    H_CHECK_INT(h, json_integer_value(json_object_get(j, "code")), 21211);
    json_decref(j);
    harness_http_response_free(&r);

    call(c, "POST", path, hdr_good, "To=%2B1" PHI_PHONE "&From=%2B15550001111&Body=hello", &r);
    H_CHECK_INT(h, r.status, 201);
    j = body_json(&r);
    H_CHECK_STR(h, json_string_value(json_object_get(j, "status")), "queued");
    H_CHECK_STR(h, json_string_value(json_object_get(j, "to")), "+1" PHI_PHONE);
    H_CHECK(h, json_string_length(json_object_get(j, "sid")) == 34 &&
                   strncmp(json_string_value(json_object_get(j, "sid")), "SM", 2) == 0);
    json_decref(j);
    harness_http_response_free(&r);

    call(c, "POST", path, hdr_bad, "To=%2B1" PHI_PHONE "&From=%2B15550001111&Body=hello", &r);
    H_CHECK_INT(h, r.status, 401);
    j = body_json(&r);
    H_CHECK_INT(h, json_integer_value(json_object_get(j, "code")), 20003);
    json_decref(j);
    harness_http_response_free(&r);
}

static void test_sendgrid(struct ctx *c)
{
    struct harness *h = c->h;
    const char *const hdr[] = {"Authorization: Bearer SG.sandbox", "Content-Type: application/json",
                               NULL};
    const char *const wrong[] = {"Authorization: Bearer SG.other", "Content-Type: application/json",
                                 NULL};
    const char *const text[] = {"Authorization: Bearer SG.sandbox", "Content-Type: text/plain",
                                NULL};
    const char *mail = "{\"personalizations\":[{\"to\":[{\"email\":\"pat@example.com\"}]}],"
                       "\"from\":{\"email\":\"clinic@clinic.example\"},\"subject\":\"Hi\","
                       "\"content\":[{\"type\":\"text/plain\",\"value\":\"x\"},"
                       "{\"type\":\"text/html\",\"value\":\"<p>x</p>\"}]}";
    struct harness_http_response r;
    json_t *j;

    call(c, "POST", "/sendgrid/v3/mail/send", hdr, mail, &r);
    H_CHECK_INT(h, r.status, 202);
    H_CHECK_INT(h, r.body_len, 0);
    H_CHECK(h, harness_http_header(&r, "X-Message-Id") != NULL);
    harness_http_response_free(&r);

    call(c, "POST", "/sendgrid/v3/mail/send", wrong, mail, &r);
    H_CHECK_INT(h, r.status, 401);
    harness_http_response_free(&r);

    call(c, "POST", "/sendgrid/v3/mail/send", text, mail, &r);
    H_CHECK_INT(h, r.status, 415);
    harness_http_response_free(&r);

    call(c, "POST", "/sendgrid/v3/mail/send", hdr,
         "{\"personalizations\":[{\"to\":[{\"email\":\"pat@example.com\"}]}],\"from\":{\"email\":"
         "\"clinic@clinic.example\"},\"subject\":\"Hi\",\"content\":[{\"type\":\"text/html\","
         "\"value\":\"<p>x</p>\"},{\"type\":\"text/plain\",\"value\":\"x\"}]}",
         &r);
    H_CHECK_INT(h, r.status, 400);
    j = body_json(&r);
    H_CHECK_STR(h,
                json_string_value(
                    json_object_get(json_array_get(json_object_get(j, "errors"), 0), "field")),
                "content");
    json_decref(j);
    harness_http_response_free(&r);
}

/* The recorded requests for a query string ("target=webhook"), parsed. */
static json_t *recorded(struct ctx *c, const char *query)
{
    struct harness_http_response r;
    char path[512];
    json_t *j;
    snprintf(path, sizeof(path), "/_sandbox/requests?%s", query);
    call(c, "GET", path, NULL, NULL, &r);
    j = body_json(&r);
    harness_http_response_free(&r);
    return json_object_get(j, "requests") ? j : (json_decref(j), NULL);
}

static void test_webhook(struct ctx *c)
{
    struct harness *h = c->h;
    const char *body = "{\"type\":\"patient.message.v1\",\"communication_id\":\"x\"}";
    struct harness_webhook_headers wh;
    struct harness_http_response r;
    char err[256];
    json_t *rec, *reqs;

    if (!H_CHECK(h, harness_webhook_sign(WHSEC, "msg_1", (long long)time(NULL), body, strlen(body),
                                         &wh, err, sizeof(err)) == 0))
        return;
    {
        const char *const hdr[] = {wh.id, wh.timestamp, wh.signature,
                                   "Content-Type: application/json", NULL};
        call(c, "POST", "/webhook", hdr, body, &r);
        H_CHECK_INT(h, r.status, 200);
        H_CHECK_STR(h, r.body, "{\"received\":true}");
        harness_http_response_free(&r);
        /* The same signature over another body does not verify. */
        call(c, "POST", "/webhook/clinic-a", hdr, "{\"tampered\":true}", &r);
        H_CHECK_INT(h, r.status, 401);
        harness_http_response_free(&r);
    }
    call(c, "POST", "/webhook", NULL, body, &r);
    H_CHECK_INT(h, r.status, 401);
    harness_http_response_free(&r);

    rec = recorded(c, "target=webhook");
    reqs = json_object_get(rec, "requests");
    H_CHECK_INT(h, json_array_size(reqs), 3);
    H_CHECK(h, json_is_true(json_object_get(json_array_get(reqs, 0), "signature_valid")));
    H_CHECK(h, json_is_false(json_object_get(json_array_get(reqs, 1), "signature_valid")));
    H_CHECK_STR(h, json_string_value(json_object_get(json_array_get(reqs, 1), "path")),
                "/webhook/clinic-a");
    H_CHECK_STR(h, json_string_value(json_object_get(json_array_get(reqs, 0), "body")), body);
    H_CHECK_STR(h,
                json_string_value(json_object_get(
                    json_object_get(json_array_get(reqs, 0), "headers"), "webhook-id")),
                "msg_1");
    json_decref(rec);
}

static void test_faults(struct ctx *c)
{
    struct harness *h = c->h;
    const char *const get[] = {c->auth, NULL};
    const char *const js[] = {"Content-Type: application/json", NULL};
    struct harness_http_response r;
    long long t0;
    json_t *j;

    call(c, "POST", "/_sandbox/faults", js,
         "{\"target\":\"fhir\",\"status\":503,\"retry_after\":\"2\"}", &r);
    H_CHECK_INT(h, r.status, 201);
    harness_http_response_free(&r);

    call(c, "GET", "/fhir/Patient/" PAT, get, NULL, &r);
    H_CHECK_INT(h, r.status, 503);
    H_CHECK_STR(h, harness_http_header(&r, "Retry-After"), "2");
    j = body_json(&r);
    H_CHECK_STR(h, oo_code(j), "excepetion");
    json_decref(j);
    harness_http_response_free(&r);
    call(c, "GET", "/fhir/Patient/" PAT, get, NULL, &r);
    H_CHECK_INT(h, r.status, 200);
    harness_http_response_free(&r);

    /* Twilio's 429 body by default; the control API itself is never faulted. */
    call(c, "POST", "/_sandbox/faults", js, "{\"target\":\"*\",\"status\":429,\"count\":-1}", &r);
    H_CHECK_INT(h, r.status, 201);
    harness_http_response_free(&r);
    call(c, "POST", "/twilio/2010-04-01/Accounts/" TWILIO_SID "/Messages.json", NULL, "To=x", &r);
    H_CHECK_INT(h, r.status, 429);
    j = body_json(&r);
    H_CHECK_INT(h, json_integer_value(json_object_get(j, "code")), 20429);
    json_decref(j);
    harness_http_response_free(&r);
    call(c, "GET", "/_sandbox/faults", NULL, NULL, &r);
    H_CHECK_INT(h, r.status, 200);
    harness_http_response_free(&r);
    call(c, "DELETE", "/_sandbox/faults", NULL, NULL, &r);
    H_CHECK_INT(h, r.status, 200);
    harness_http_response_free(&r);

    /* A hang outlasts a short client timeout. */
    call(c, "POST", "/_sandbox/faults", js, "{\"target\":\"fhir\",\"hang_ms\":1500}", &r);
    harness_http_response_free(&r);
    {
        char url[256];
        snprintf(url, sizeof(url), "%s/fhir/Patient/" PAT, c->base);
        t0 = harness_now_ms();
        harness_http("GET", url, get, NULL, 0, 300, &r);
        H_CHECKF(h, r.status == 0, "a hanging request was answered with %ld", r.status);
        H_CHECK(h, harness_now_ms() - t0 < 1000);
        harness_http_response_free(&r);
    }
    call(c, "GET", "/fhir/Patient/" PAT, get, NULL, &r);
    H_CHECK_INT(h, r.status, 200);
    harness_http_response_free(&r);
}

static size_t discard(char *data, size_t size, size_t n, void *user)
{
    (void)data;
    (void)user;
    return size * n;
}

/* 20 concurrent FHIR reads with 200 ms added latency: they overlap instead of queueing. */
static void test_latency(struct ctx *c)
{
    struct harness *h = c->h;
    const char *const js[] = {"Content-Type: application/json", NULL};
    struct harness_http_response r;
    CURLM *multi = curl_multi_init();
    CURL *easy[20];
    struct curl_slist *hl = curl_slist_append(NULL, c->auth);
    char url[256];
    long long t0, elapsed;
    int running = 0, ok = 0;

    call(c, "POST", "/_sandbox/latency", js, "{\"ms\":200}", &r);
    H_CHECK_INT(h, r.status, 200);
    harness_http_response_free(&r);

    snprintf(url, sizeof(url), "%s/fhir/Patient/" PAT, c->base);
    for (int i = 0; i < 20; i++) {
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard);
        curl_multi_add_handle(multi, easy[i]);
    }
    t0 = harness_now_ms();
    do {
        curl_multi_perform(multi, &running);
        if (running)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    } while (running);
    elapsed = harness_now_ms() - t0;
    for (int i = 0; i < 20; i++) {
        long status = 0;
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &status);
        ok += status == 200;
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_multi_cleanup(multi);
    curl_slist_free_all(hl);
    H_CHECK_INT(h, ok, 20);
    H_CHECKF(h, elapsed >= 200 && elapsed < 1500,
             "20 concurrent requests with 200 ms latency took %lld ms", elapsed);

    /* The control API is never delayed. */
    t0 = harness_now_ms();
    call(c, "GET", "/_sandbox/stats", NULL, NULL, &r);
    H_CHECK(h, harness_now_ms() - t0 < 150);
    harness_http_response_free(&r);
    call(c, "POST", "/_sandbox/latency", js, "{\"ms\":0}", &r);
    harness_http_response_free(&r);
}

static void test_token_expiry(struct ctx *c)
{
    struct harness *h = c->h;
    const char *const get[] = {c->auth, NULL};
    struct harness_http_response r;

    call(c, "POST", "/_sandbox/tokens/expire", NULL, NULL, &r);
    H_CHECK_INT(h, r.status, 200);
    harness_http_response_free(&r);
    call(c, "GET", "/fhir/Patient/" PAT, get, NULL, &r);
    H_CHECK_INT(h, r.status, 401);
    harness_http_response_free(&r);
    /* A fresh token works again. */
    if (H_CHECK(h, get_token(c, c->token, sizeof(c->token)) == 0)) {
        snprintf(c->auth, sizeof(c->auth), "Authorization: Bearer %s", c->token);
        call(c, "GET", "/fhir/Patient/" PAT, get, NULL, &r);
        H_CHECK_INT(h, r.status, 200);
        harness_http_response_free(&r);
    }
}

static void test_recording(struct ctx *c)
{
    struct harness *h = c->h;
    struct harness_http_response r;
    json_t *rec, *reqs, *stats, *first;
    long long last_seq;
    char q[64];
    const char *auth;

    rec = recorded(c, "target=twilio");
    reqs = json_object_get(rec, "requests");
    H_CHECK(h, json_array_size(reqs) >= 3);
    first = json_array_get(reqs, 0);
    /* The request shows what the client sent (a phone number too); credentials are redacted. */
    H_CHECK(h, strstr(json_string_value(json_object_get(first, "body")), PHI_PHONE) != NULL);
    auth = json_string_value(json_object_get(json_object_get(first, "headers"), "authorization"));
    H_CHECKF(h, auth && strncmp(auth, "Basic ", 6) == 0 && !strstr(auth, "QUM1"),
             "authorization recorded as %s", auth ? auth : "(none)");
    H_CHECK_INT(h, json_integer_value(json_object_get(first, "status")), 400);
    json_decref(rec);

    rec = recorded(c, "target=token");
    reqs = json_object_get(rec, "requests");
    H_CHECK(h, json_array_size(reqs) >= 1);
    H_CHECK(h, !strstr(json_string_value(json_object_get(json_array_get(reqs, 0), "body")),
                       "sandbox-secret"));
    json_decref(rec);

    rec = recorded(c, "method=POST&path_prefix=/fhir/Communication");
    reqs = json_object_get(rec, "requests");
    H_CHECK_INT(h, json_array_size(reqs), 2);
    json_decref(rec);

    rec = recorded(c, "target=fhir");
    reqs = json_object_get(rec, "requests");
    last_seq =
        json_integer_value(json_object_get(json_array_get(reqs, json_array_size(reqs) - 1), "seq"));
    json_decref(rec);
    snprintf(q, sizeof(q), "since=%lld", last_seq);
    rec = recorded(c, q);
    H_CHECK_INT(h, json_array_size(json_object_get(rec, "requests")), 0);
    json_decref(rec);

    call(c, "GET", "/_sandbox/stats", NULL, NULL, &r);
    stats = body_json(&r);
    H_CHECK(h,
            json_integer_value(json_object_get(json_object_get(stats, "by_target"), "fhir")) > 20);
    H_CHECK(h, json_integer_value(json_object_get(stats, "tokens_issued")) >= 2);
    H_CHECK_INT(h, json_integer_value(json_object_get(stats, "tokens_expired")), 2);
    json_decref(stats);
    harness_http_response_free(&r);

    call(c, "DELETE", "/_sandbox/requests", NULL, NULL, &r);
    H_CHECK_INT(h, r.status, 200);
    harness_http_response_free(&r);
    rec = recorded(c, "");
    H_CHECK_INT(h, json_array_size(json_object_get(rec, "requests")), 0);
    json_decref(rec);
}

int main(void)
{
    struct harness *h = harness_init("sandbox");
    const char *const argv[] = {"pm-sandbox", NULL};
    const char *const env[] = {"PM_SANDBOX_LISTEN=127.0.0.1:0", "PM_SANDBOX_WEBHOOK_SECRET=" WHSEC,
                               "PM_LOG_LEVEL=debug", "PM_SANDBOX_FIXTURES", NULL};
    struct ctx c = {h, NULL, "", "", ""};
    char line[256];
    const char *url;
    char *log;

    c.proc = harness_proc_start(h, "sandbox", argv, env);
    if (!H_CHECK(h, c.proc != NULL))
        return harness_finish(h);
    if (!H_CHECK(h, harness_proc_read_line(c.proc, line, sizeof(line), 10000) == 0))
        return harness_finish(h);
    url = strstr(line, "http://");
    if (!H_CHECKF(h, strncmp(line, "pm-sandbox listening on http://127.0.0.1:", 41) == 0 && url,
                  "first line: %s", line))
        return harness_finish(h);
    snprintf(c.base, sizeof(c.base), "%s", url);

    test_token(&c);
    if (!H_CHECK(h, get_token(&c, c.token, sizeof(c.token)) == 0))
        return harness_finish(h);
    snprintf(c.auth, sizeof(c.auth), "Authorization: Bearer %s", c.token);
    test_fhir_auth(&c);
    test_communication_create(&c);
    test_questionnaire_response(&c);
    test_search(&c);
    test_twilio(&c);
    test_sendgrid(&c);
    test_webhook(&c);
    test_faults(&c);
    test_latency(&c);
    test_token_expiry(&c);
    test_recording(&c);

    /* SIGTERM: a clean exit, and nothing of what was sent in the log, even at debug level. */
    H_CHECK_INT(h, harness_proc_stop(c.proc, 10000), 0);
    log = harness_proc_stderr(c.proc);
    H_CHECK(h, log != NULL);
    H_CHECKF(h, log && !strstr(log, PHI_TEXT), "message text in the sandbox log");
    H_CHECKF(h, log && !strstr(log, PHI_PHONE), "phone number in the sandbox log");
    H_CHECKF(h, log && !strstr(log, c.token), "token in the sandbox log");
    H_CHECKF(h, log && !strstr(log, "sandbox-secret"), "secret in the sandbox log");
    free(log);
    return harness_finish(h);
}
