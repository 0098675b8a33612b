/* pm-deliver write-back end to end: replies and check-ins from Kafka into pm-sandbox's Canvas,
 * recipient resolution, exact FHIR bodies, results, DLQ errors, token expiry, 429/503, repeats. */
#include "harness.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHSEC         "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define TOKEN         "wb-test-token-0123456789"
#define PAT           "b3084f7e884e4af2b7e23b1dca494abd" /* Pat Example */
#define LEE           "43f1418bae9c41919203e0006761067c" /* Lee Sample */
#define MORGAN        "4150cd20de8a470aa570a852859ac87e" /* schedulable, dr.morgan@clinic.example */
#define RILEY         "3640cd20de8a470aa570a852859ac87e"
#define SAM           "9cdb7a92d6614dcfa7948f2143a9f8e8" /* not schedulable, staff@clinic.example */
#define FRONTDESK     "a1b2c3d4e5f64a7b8c9d0e1f2a3b4c5d" /* seeded: the default recipient */
#define TWIN_A        "b1b2c3d4e5f64a7b8c9d0e1f2a3b4c5d" /* seeded: two share an address */
#define TWIN_B        "c1b2c3d4e5f64a7b8c9d0e1f2a3b4c5d"
#define COMM_STAFF    "8f2b1c7e-5d4a-4b3e-9c1f-2a6d7e8f9a0b" /* Morgan -> Pat */
#define COMM_FROM_PAT "6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e" /* Pat -> Morgan */
#define COMM_TO_LEE   "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d" /* Riley -> Lee */
#define QID           "47a408d7-9f1d-4cfd-97c7-aa810df9ed39"
#define Q_SINGLE      "d82e29db-0cac-4b97-a5aa-9e81749686e2"
#define Q_MULTI       "3c2b1a09-8f7e-4d6c-b5a4-9382716a5b4c"
#define Q_TEXT        "7eb053cd-cb2d-435f-8f55-f154645b55c4"
#define SENT          "2026-03-02T15:04:05Z"
#define SNOMED        "http://snomed.info/sct"

#define T_REPLIES  "pm.patient.replies"
#define T_CHECKINS "pm.patient.questionnaire-responses"
#define T_RESULTS  "pm.deliveries"
#define T_DLQ      "pm.dlq"
#define WAIT_MS    30000

static struct harness *h;
static char bootstrap[512];
static char sb[128];              /* pm-sandbox base URL */
static char ingest[128];          /* pm-ingest base URL */
static char deliver_metrics[128]; /* /metrics of the pm-deliver started last */
static struct harness_proc *deliver;

/* Texts and addresses the test sends: none may appear in pm-deliver's log. */
static const char *const phi[] = {"Sore throat since Monday",
                                  "frontdesk@clinic.example",
                                  "staff@clinic.example",
                                  "shared@clinic.example",
                                  "nobody@clinic.example",
                                  "Cycling to work",
                                  NULL};

/* ---- pm-sandbox ---- */

/* One control or party request to pm-sandbox. @returns the parsed answer (NULL when none). */
static json_t *sb_call(const char *method, const char *path, const char *body, long *status)
{
    struct harness_http_response r = {0};
    const char *const hdr[] = {"Content-Type: application/json", NULL};
    char url[1024];
    json_t *j = NULL;

    snprintf(url, sizeof(url), "%s%s", sb, path);
    harness_http(method, url, body ? hdr : NULL, body, body ? strlen(body) : 0, 10000, &r);
    if (status)
        *status = r.status;
    if (r.body_len)
        j = json_loadb(r.body, r.body_len, JSON_DECODE_ANY, NULL);
    harness_http_response_free(&r);
    return j;
}

static void sb_ok(const char *method, const char *path, const char *body)
{
    long st = 0;
    json_t *j = sb_call(method, path, body, &st);
    H_CHECKF(h, st >= 200 && st < 300, "%s %s answered %ld", method, path, st);
    json_decref(j);
}

/* The requests recorded since the last sb_forget(), for a query such as "target=fhir&method=POST".
 * @returns the "requests" array (new reference; empty on failure). */
static json_t *sb_requests(const char *query)
{
    char path[512];
    json_t *j, *reqs;
    snprintf(path, sizeof(path), "/_sandbox/requests?%s", query);
    j = sb_call("GET", path, NULL, NULL);
    reqs = json_incref(json_object_get(j, "requests"));
    json_decref(j);
    return reqs ? reqs : json_array();
}

static void sb_forget(void)
{
    sb_ok("DELETE", "/_sandbox/requests", NULL);
}

/* The recorded request's body, parsed. */
static json_t *req_body(json_t *req)
{
    const char *b = json_string_value(json_object_get(req, "body"));
    return b ? json_loads(b, JSON_DECODE_ANY, NULL) : NULL;
}

static long req_status(json_t *reqs, size_t i)
{
    return (long)json_integer_value(json_object_get(json_array_get(reqs, i), "status"));
}

/* Milliseconds of the day of a recorded request's "ts" ("YYYY-MM-DDTHH:MM:SS.mmmZ"). */
static long req_ms(json_t *req)
{
    const char *ts = json_string_value(json_object_get(req, "ts"));
    int hh, mm, ss, ms;
    if (!ts || sscanf(ts + 11, "%2d:%2d:%2d.%3d", &hh, &mm, &ss, &ms) != 4)
        return -1;
    return ((hh * 60L + mm) * 60 + ss) * 1000 + ms;
}

/* The stored resources of @p type (GET /_sandbox/resources/<type>). @returns a new reference. */
static json_t *sb_resources(const char *type)
{
    char path[128];
    json_t *j, *list;
    snprintf(path, sizeof(path), "/_sandbox/resources/%s", type);
    j = sb_call("GET", path, NULL, NULL);
    list = json_incref(json_object_get(j, "resources"));
    json_decref(j);
    return list ? list : json_array();
}

/* The stored resource of @p type with @p id (new reference), or NULL. */
static json_t *sb_resource(const char *type, const char *id)
{
    json_t *list = sb_resources(type), *r, *found = NULL;
    size_t i;
    json_array_foreach(list, i, r)
    {
        const char *rid = json_string_value(json_object_get(r, "id"));
        if (id && rid && !strcmp(rid, id))
            found = json_incref(r);
    }
    json_decref(list);
    return found;
}

/* ---- Kafka ---- */

/* Produces one CloudEvent of @p type with @p data_text as data, key = @p patient. */
static void produce(const char *topic, const char *type, const char *id, const char *patient,
                    const char *data_text)
{
    const char *const headers[] = {"content-type", "application/cloudevents+json; charset=utf-8",
                                   NULL};
    struct harness_kafka_produce req = {0};
    char subject[96], err[512];
    json_t *data = json_loads(data_text, 0, NULL), *ce;
    char *value;

    if (!H_CHECKF(h, data != NULL, "bad test data for %s", id))
        return;
    snprintf(subject, sizeof(subject), "Patient/%s", patient);
    ce = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "specversion", "1.0", "id", id,
                   "source", "urn:pm:test-writeback", "type", type, "time", SENT, "subject",
                   subject, "datacontenttype", "application/json", "data", data);
    value = json_dumps(ce, JSON_COMPACT);
    json_decref(ce);
    req.topic = topic;
    req.key = patient;
    req.value = value;
    req.value_len = strlen(value);
    req.headers = headers;
    H_CHECKF(h, harness_kafka_produce(bootstrap, &req, NULL, NULL, err, sizeof(err)) == 0,
             "produce %s: %s", id, err);
    free(value);
}

static void reply(const char *id, const char *patient, const char *data_text)
{
    produce(T_REPLIES, "patient.reply.v1", id, patient, data_text);
}

static void checkin(const char *id, const char *patient, const char *data_text)
{
    produce(T_CHECKINS, "patient.questionnaire_response.v1", id, patient, data_text);
}

/* Records of one topic that belong to one source event. */
struct found {
    struct harness_kafka_records recs;
    const struct harness_kafka_record *rec[8];
    json_t *ce[8];
    size_t n;
};

static void found_free(struct found *f)
{
    for (size_t i = 0; i < f->n; i++)
        json_decref(f->ce[i]);
    harness_kafka_records_free(&f->recs);
    memset(f, 0, sizeof(*f));
}

/* Waits until @p topic holds @p want records about event @p id: delivery results whose
 * source_event_id is @p id (pm.deliveries), or the event itself (pm.dlq). @returns 0 or -1. */
static int wait_for(const char *topic, const char *id, size_t want, struct found *f)
{
    long long deadline = harness_now_ms() + WAIT_MS;
    int results = !strcmp(topic, T_RESULTS);
    char err[256];

    memset(f, 0, sizeof(*f));
    for (;;) {
        harness_kafka_read(bootstrap, topic, 0, 10000, &f->recs, err, sizeof(err));
        for (size_t i = 0; i < f->recs.n && f->n < 8; i++) {
            json_t *ce = json_loadb(f->recs.v[i].value, f->recs.v[i].value_len, 0, NULL);
            const char *about = results ? json_string_value(json_object_get(
                                              json_object_get(ce, "data"), "source_event_id"))
                                        : json_string_value(json_object_get(ce, "id"));
            if (about && !strcmp(about, id)) {
                f->rec[f->n] = &f->recs.v[i];
                f->ce[f->n++] = ce;
            } else {
                json_decref(ce);
            }
        }
        if (f->n >= want)
            return 0;
        if (harness_now_ms() > deadline) {
            H_FAIL(h, "%s: %zu of %zu records about %s", topic, f->n, want, id);
            return -1;
        }
        found_free(f);
        harness_sleep_ms(200);
    }
}

/* Waits for the one delivery result of @p id and checks it. @returns its provider_id (static
 * buffer) or "" when it failed. */
static const char *expect_result(const char *id, const char *kind, const char *outcome,
                                 const char *reason_part, int attempts)
{
    static char provider[128];
    struct found f;
    json_t *data;

    provider[0] = '\0';
    if (wait_for(T_RESULTS, id, 1, &f) != 0) {
        found_free(&f);
        return provider;
    }
    H_CHECK_INT(h, f.n, 1);
    data = json_object_get(f.ce[0], "data");
    H_CHECK_STR(h, f.rec[0]->key, json_string_value(json_object_get(f.ce[0], "subject")) + 8);
    H_CHECK_STR(h, json_string_value(json_object_get(f.ce[0], "type")), "delivery.result.v1");
    H_CHECK_STR(h, json_string_value(json_object_get(data, "kind")), kind);
    H_CHECK_STR(h, json_string_value(json_object_get(data, "channel")), "canvas");
    H_CHECK_STR(h, json_string_value(json_object_get(data, "outcome")), outcome);
    if (attempts > 0)
        H_CHECK_INT(h, json_integer_value(json_object_get(data, "attempts")), attempts);
    if (reason_part) {
        const char *reason = json_string_value(json_object_get(data, "reason"));
        H_CHECKF(h, reason && strstr(reason, reason_part), "%s: reason \"%s\" lacks \"%s\"", id,
                 reason ? reason : "(none)", reason_part);
        H_CHECK(h, json_object_get(data, "provider_id") == NULL);
    } else {
        H_CHECK(h, json_object_get(data, "reason") == NULL);
    }
    if (json_is_string(json_object_get(data, "provider_id")))
        snprintf(provider, sizeof(provider), "%s",
                 json_string_value(json_object_get(data, "provider_id")));
    found_free(&f);
    return provider;
}

/* Waits for event @p id on the DLQ and checks its headers; @p error is the exact pm-error, or
 * with @p partial a part of it. */
static void expect_dlq(const char *id, const char *error_class, const char *error, int partial)
{
    struct found f;
    const char *e;

    if (wait_for(T_DLQ, id, 1, &f) != 0) {
        found_free(&f);
        return;
    }
    H_CHECK_INT(h, f.n, 1);
    H_CHECK_STR(h, harness_kafka_header(f.rec[0], "pm-error-class"), error_class);
    e = harness_kafka_header(f.rec[0], "pm-error");
    if (partial)
        H_CHECKF(h, e && strstr(e, error), "%s: pm-error \"%s\" lacks \"%s\"", id, e ? e : "(none)",
                 error);
    else
        H_CHECK_STR(h, e, error);
    H_CHECK(h, harness_kafka_header(f.rec[0], "pm-source-topic") != NULL);
    H_CHECK(h, harness_kafka_header(f.rec[0], "pm-attempts") != NULL);
    found_free(&f);
}

/* ---- checks on what reached Canvas ---- */

/* Exactly one Communication create since sb_forget(), answered @p last_status after
 * @p earlier_statuses (0-terminated list of statuses of earlier attempts). @returns its body. */
static json_t *the_post(const char *type, const long *statuses, size_t n)
{
    char q[128];
    json_t *reqs, *body = NULL;

    snprintf(q, sizeof(q), "target=fhir&method=POST&path_prefix=/fhir/%s", type);
    reqs = sb_requests(q);
    if (H_CHECKF(h, json_array_size(reqs) == n, "%zu POST %s, expected %zu", json_array_size(reqs),
                 type, n)) {
        for (size_t i = 0; i < n; i++)
            H_CHECK_INT(h, req_status(reqs, i), statuses[i]);
        body = req_body(json_array_get(reqs, n - 1));
    }
    json_decref(reqs);
    return body;
}

static int same_json(json_t *got, const char *want_text)
{
    json_t *want = json_loads(want_text, 0, NULL);
    int ok = got && want && json_equal(got, want);
    if (!ok) {
        char *g = got ? json_dumps(got, JSON_SORT_KEYS) : NULL;
        char *w = want ? json_dumps(want, JSON_SORT_KEYS) : NULL;
        fprintf(stderr, "  got:  %s\n  want: %s\n", g ? g : "(null)", w ? w : "(null)");
        free(g);
        free(w);
    }
    json_decref(want);
    return ok;
}

/* No FHIR write (or, with @p any, no FHIR request at all) since sb_forget(). */
static void expect_no_fhir(int any)
{
    json_t *reqs = sb_requests(any ? "target=fhir" : "target=fhir&method=POST");
    H_CHECKF(h, json_array_size(reqs) == 0, "%zu FHIR requests reached the sandbox",
             json_array_size(reqs));
    json_decref(reqs);
}

/* One reply that must be written to @p practitioner: the exact body, the stored resource, the
 * result naming it. @returns the new Communication id (static buffer). */
static const char *expect_reply_written(const char *id, const char *patient,
                                        const char *practitioner, const char *text)
{
    static const long ok[] = {201};
    static char provider[128];
    char want[1024], ref[96];
    json_t *body, *stored;

    snprintf(provider, sizeof(provider), "%s", expect_result(id, "reply", "delivered", NULL, 1));
    body = the_post("Communication", ok, 1);
    snprintf(want, sizeof(want),
             "{\"resourceType\": \"Communication\", \"status\": \"unknown\","
             " \"sender\": {\"reference\": \"Patient/%s\"},"
             " \"recipient\": [{\"reference\": \"Practitioner/%s\"}],"
             " \"payload\": [{\"contentString\": \"%s\"}], \"sent\": \"" SENT "\"}",
             patient, practitioner, text);
    H_CHECKF(h, same_json(body, want), "%s: Communication body", id);
    stored = sb_resource("Communication", provider);
    H_CHECKF(h, stored != NULL, "%s: no Communication %s in the sandbox", id, provider);
    snprintf(ref, sizeof(ref), "Practitioner/%s", practitioner);
    H_CHECK_STR(h,
                json_string_value(json_object_get(
                    json_array_get(json_object_get(stored, "recipient"), 0), "reference")),
                ref);
    /* Left unread in the practitioner's inbox. */
    H_CHECK(h, stored && json_object_get(stored, "received") == NULL);
    json_decref(stored);
    json_decref(body);
    return provider;
}

/* ---- replies ---- */

static void test_reply_recipients(void)
{
    json_t *reqs, *q;
    const char *first;

    /* 1. recipient.practitioner_id, as given: no lookup. */
    sb_forget();
    reply("wb-reply-practitioner", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"Sore throat since Monday\","
          " \"recipient\": {\"practitioner_id\": \"" RILEY "\"}, \"sent_at\": \"" SENT "\"}");
    expect_reply_written("wb-reply-practitioner", PAT, RILEY, "Sore throat since Monday");
    reqs = sb_requests("target=fhir&method=GET");
    H_CHECK_INT(h, json_array_size(reqs), 0);
    json_decref(reqs);

    /* 2. recipient.email: Practitioner search including non-schedulable staff (Sam is not
     * schedulable, so a search without the flag would not find him). */
    sb_forget();
    reply("wb-reply-email", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"Can I get a note for work?\","
          " \"recipient\": {\"email\": \"staff@clinic.example\"}, \"sent_at\": \"" SENT "\"}");
    expect_reply_written("wb-reply-email", PAT, SAM, "Can I get a note for work?");
    reqs = sb_requests("target=fhir&method=GET&path_prefix=/fhir/Practitioner");
    if (H_CHECK_INT(h, json_array_size(reqs), 1)) {
        q = json_object_get(json_array_get(reqs, 0), "query");
        H_CHECK_STR(h, json_string_value(json_object_get(q, "email")), "staff@clinic.example");
        H_CHECK_STR(h,
                    json_string_value(json_object_get(q, "include-non-schedulable-practitioners")),
                    "true");
        H_CHECK_STR(h, json_string_value(json_object_get(json_array_get(reqs, 0), "path")),
                    "/fhir/Practitioner");
    }
    json_decref(reqs);

    /* The address is remembered (in any case): the next reply to it searches nothing. */
    sb_forget();
    reply("wb-reply-email-cached", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"Also a refill please\","
          " \"recipient\": {\"email\": \"Staff@Clinic.example\"}, \"sent_at\": \"" SENT "\"}");
    expect_reply_written("wb-reply-email-cached", PAT, SAM, "Also a refill please");
    reqs = sb_requests("target=fhir&method=GET");
    H_CHECK_INT(h, json_array_size(reqs), 0);
    json_decref(reqs);

    /* 3. in_reply_to: the sender of the staff message being answered. */
    sb_forget();
    reply("wb-reply-thread", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"Great news, thank you\","
          " \"in_reply_to\": \"" COMM_STAFF "\", \"sent_at\": \"" SENT "\"}");
    expect_reply_written("wb-reply-thread", PAT, MORGAN, "Great news, thank you");
    reqs = sb_requests("target=fhir&method=GET");
    if (H_CHECK_INT(h, json_array_size(reqs), 1))
        H_CHECK_STR(h, json_string_value(json_object_get(json_array_get(reqs, 0), "path")),
                    "/fhir/Communication/" COMM_STAFF);
    json_decref(reqs);

    /* recipient wins over in_reply_to. */
    sb_forget();
    reply("wb-reply-precedence", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"Sending to Riley instead\","
          " \"recipient\": {\"practitioner_id\": \"" RILEY "\"}, \"in_reply_to\": \"" COMM_STAFF
          "\", \"sent_at\": \"" SENT "\"}");
    expect_reply_written("wb-reply-precedence", PAT, RILEY, "Sending to Riley instead");

    /* 4. nothing named: PM_DEFAULT_PRACTITIONER_ID. Another patient, too. */
    sb_forget();
    reply("wb-reply-default", LEE,
          "{\"patient_id\": \"" LEE "\", \"text\": \"Who do I ask about billing?\","
          " \"sent_at\": \"" SENT "\"}");
    first = expect_reply_written("wb-reply-default", LEE, FRONTDESK, "Who do I ask about billing?");
    H_CHECK(h, first[0] != '\0');
}

static void test_reply_errors(void)
{
    /* Permanent: each goes to the DLQ with its reason, a failed result, and no write. */
    sb_forget();
    reply("wb-reply-no-such-email", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"Hello?\","
          " \"recipient\": {\"email\": \"nobody@clinic.example\"}, \"sent_at\": \"" SENT "\"}");
    expect_dlq("wb-reply-no-such-email", "permanent", "recipient.email matches no practitioner", 0);
    expect_result("wb-reply-no-such-email", "reply", "failed",
                  "recipient.email matches no practitioner", 1);
    expect_no_fhir(0);

    sb_forget();
    reply("wb-reply-twin-email", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"Hello?\","
          " \"recipient\": {\"email\": \"shared@clinic.example\"}, \"sent_at\": \"" SENT "\"}");
    expect_dlq("wb-reply-twin-email", "permanent", "recipient.email matches 2 practitioners", 0);
    expect_result("wb-reply-twin-email", "reply", "failed",
                  "recipient.email matches 2 practitioners", 1);
    expect_no_fhir(0);

    sb_forget();
    reply("wb-reply-to-own", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"Hello?\","
          " \"in_reply_to\": \"" COMM_FROM_PAT "\", \"sent_at\": \"" SENT "\"}");
    expect_dlq("wb-reply-to-own", "permanent", "in_reply_to was not sent by a practitioner", 0);
    expect_result("wb-reply-to-own", "reply", "failed",
                  "in_reply_to was not sent by a practitioner", 1);
    expect_no_fhir(0);

    sb_forget();
    reply("wb-reply-other-patient", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"Hello?\","
          " \"in_reply_to\": \"" COMM_TO_LEE "\", \"sent_at\": \"" SENT "\"}");
    expect_dlq("wb-reply-other-patient", "permanent", "in_reply_to was not sent to this patient",
               0);
    expect_no_fhir(0);

    /* in_reply_to that Canvas does not know: its 404 OperationOutcome, no write. */
    sb_forget();
    reply("wb-reply-unknown-thread", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"Hello?\","
          " \"in_reply_to\": \"00000000-0000-4000-8000-000000000000\", \"sent_at\": \"" SENT "\"}");
    expect_dlq("wb-reply-unknown-thread", "permanent",
               "GET Communication: 404 not-found: Unknown Communication resource", 1);
    expect_no_fhir(0);

    /* Canvas refuses the write (422 for an unknown practitioner): its text reaches the DLQ and
     * the result. */
    sb_forget();
    reply("wb-reply-unknown-practitioner", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"Hello?\","
          " \"recipient\": {\"practitioner_id\": \"00000000000000000000000000000000\"},"
          " \"sent_at\": \"" SENT "\"}");
    expect_dlq("wb-reply-unknown-practitioner", "permanent",
               "POST Communication: 422 business-rule: Unknown Practitioner resource "
               "'00000000000000000000000000000000'",
               0);
    expect_result("wb-reply-unknown-practitioner", "reply", "failed",
                  "Unknown Practitioner resource '00000000000000000000000000000000'", 1);

    /* Malformed data (as kcat allows): invalid, naming the field. */
    sb_forget();
    reply("wb-reply-no-text", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"   \", \"sent_at\": \"" SENT "\"}");
    expect_dlq("wb-reply-no-text", "invalid",
               "data.text must be a string with more than white space", 0);
    expect_result("wb-reply-no-text", "reply", "failed", "data.text", 1);
    reply("wb-reply-two-recipients", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"Hi\", \"recipient\": {\"practitioner_id\":"
          " \"" RILEY "\", \"email\": \"staff@clinic.example\"}, \"sent_at\": \"" SENT "\"}");
    expect_dlq("wb-reply-two-recipients", "invalid",
               "data.recipient must be an object with exactly one of practitioner_id or email", 0);
    reply("wb-reply-bad-time", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"Hi\", \"sent_at\": \"Monday\"}");
    expect_dlq("wb-reply-bad-time", "invalid", "data.sent_at must be an RFC 3339 date-time", 0);
    expect_no_fhir(1);
}

/* 401 after the token was revoked: one new token, the write succeeds, one Communication. */
static void test_reply_token_expired(void)
{
    static const long statuses[] = {401, 201};
    json_t *body, *tokens, *before, *after;

    sb_ok("POST", "/_sandbox/tokens/expire", "{}");
    sb_forget();
    before = sb_resources("Communication");
    reply("wb-reply-token", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"After the token expired\","
          " \"recipient\": {\"practitioner_id\": \"" MORGAN "\"}, \"sent_at\": \"" SENT "\"}");
    expect_result("wb-reply-token", "reply", "delivered", NULL, 1);
    body = the_post("Communication", statuses, 2);
    H_CHECK(h, body != NULL);
    json_decref(body);
    tokens = sb_requests("target=token");
    H_CHECK_INT(h, json_array_size(tokens), 1);
    json_decref(tokens);
    after = sb_resources("Communication");
    H_CHECK_INT(h, json_array_size(after), json_array_size(before) + 1);
    json_decref(before);
    json_decref(after);
}

/* 429 with Retry-After on the write: retried no sooner than asked, one Communication. */
static void test_reply_rate_limited(void)
{
    static const long statuses[] = {429, 201};
    json_t *reqs, *before, *after, *stored;
    const char *provider;

    sb_forget();
    sb_ok("POST", "/_sandbox/faults",
          "{\"target\": \"fhir\", \"method\": \"POST\", \"path_prefix\": \"/fhir/Communication\","
          " \"status\": 429, \"retry_after\": \"1\", \"count\": 1}");
    before = sb_resources("Communication");
    reply("wb-reply-429", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"Rate limited reply\","
          " \"recipient\": {\"practitioner_id\": \"" MORGAN "\"}, \"sent_at\": \"" SENT "\"}");
    provider = expect_result("wb-reply-429", "reply", "delivered", NULL, 2);
    json_decref(the_post("Communication", statuses, 2));
    reqs = sb_requests("target=fhir&method=POST");
    if (json_array_size(reqs) == 2) {
        long gap = req_ms(json_array_get(reqs, 1)) - req_ms(json_array_get(reqs, 0));
        H_CHECKF(h, gap >= 900 || gap < -3600000, "retried after %ld ms despite Retry-After: 1",
                 gap);
    }
    json_decref(reqs);
    after = sb_resources("Communication");
    H_CHECK_INT(h, json_array_size(after), json_array_size(before) + 1);
    stored = sb_resource("Communication", provider);
    H_CHECKF(h, stored != NULL, "no Communication %s in the sandbox", provider);
    json_decref(stored);
    json_decref(before);
    json_decref(after);
    sb_ok("DELETE", "/_sandbox/faults", NULL);
}

#define TWICE_DATA                                                                                 \
    "{\"patient_id\": \"" PAT "\", \"text\": \"Sent twice\","                                      \
    " \"recipient\": {\"practitioner_id\": \"" RILEY "\"},"                                        \
    " \"sent_at\": \"" SENT "\"}"

/* The same CloudEvent twice (at-least-once, a client resending): one Communication, and both
 * deliveries report it. */
/* @returns pm-deliver's pm_deliver_repeat_guard_entries{guard="writebacks"}, or -1. */
static long long guard_entries(void)
{
    static const char series[] = "pm_deliver_repeat_guard_entries{guard=\"writebacks\"} ";
    struct harness_http_response r = {0};
    const char *at;
    long long v = -1;

    if (harness_http("GET", deliver_metrics, NULL, NULL, 0, 5000, &r) == 0 && r.status == 200 &&
        r.body && (at = strstr(r.body, series)) != NULL)
        v = strtoll(at + strlen(series), NULL, 10);
    harness_http_response_free(&r);
    return v;
}

static void test_reply_redelivered(void)
{
    static const char data[] = TWICE_DATA;
    static const long ok[] = {201};
    struct found f;
    json_t *before, *after;
    long long guarded = guard_entries();

    sb_forget();
    before = sb_resources("Communication");
    reply("wb-reply-twice", PAT, data);
    reply("wb-reply-twice", PAT, data);
    if (wait_for(T_RESULTS, "wb-reply-twice", 2, &f) == 0) {
        /* One write remembered; the repeat added nothing. */
        H_CHECK(h, guarded >= 0);
        H_CHECK_INT(h, guard_entries(), guarded + 1);
        json_t *a = json_object_get(f.ce[0], "data"), *b = json_object_get(f.ce[1], "data");
        H_CHECK_STR(h, json_string_value(json_object_get(a, "outcome")), "delivered");
        H_CHECK_STR(h, json_string_value(json_object_get(b, "outcome")), "delivered");
        H_CHECK(h, json_is_string(json_object_get(a, "provider_id")));
        H_CHECK_STR(h, json_string_value(json_object_get(b, "provider_id")),
                    json_string_value(json_object_get(a, "provider_id")));
        H_CHECK_STR(h, json_string_value(json_object_get(f.ce[1], "id")),
                    json_string_value(json_object_get(f.ce[0], "id")));
    }
    found_free(&f);
    json_decref(the_post("Communication", ok, 1));
    after = sb_resources("Communication");
    H_CHECK_INT(h, json_array_size(after), json_array_size(before) + 1);
    json_decref(before);
    json_decref(after);
}

/* ---- check-ins ---- */

#define CODING(code, display)                                                                      \
    "{\"valueCoding\": {\"system\": \"" SNOMED "\", \"code\": \"" code                             \
    "\", \"display\": \"" display "\"}}"

static void expect_qr_written(const char *id, const long *statuses, size_t n, int attempts,
                              const char *want_body)
{
    const char *provider = expect_result(id, "questionnaire_response", "delivered", NULL, attempts);
    json_t *body = the_post("QuestionnaireResponse", statuses, n), *stored;

    H_CHECKF(h, same_json(body, want_body), "%s: QuestionnaireResponse body", id);
    stored = sb_resource("QuestionnaireResponse", provider);
    H_CHECKF(h, stored != NULL, "%s: no QuestionnaireResponse %s in the sandbox", id, provider);
    H_CHECK_STR(h, json_string_value(json_object_get(stored, "questionnaire")),
                "Questionnaire/" QID);
    json_decref(stored);
    json_decref(body);
}

static void test_checkin_simple(void)
{
    static const long ok[] = {201};
    json_t *reqs, *q;

    /* By questionnaire id, every kind of question, linkIds and codes mixed. */
    sb_forget();
    checkin("wb-checkin-by-id", PAT,
            "{\"patient_id\": \"" PAT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
            " \"answers\": ["
            "  {\"link_id\": \"" Q_TEXT "\", \"value_string\": \"Cycling to work\"},"
            "  {\"question_code\": \"228448000\", \"value_code\": \"LA32-8\"},"
            "  {\"question_code\": \"EXACT\", \"value_codes\": [\"EXACT_RUN\", \"EXACT_BIKE\"]},"
            "  {\"link_id\": \"" Q_MULTI "\", \"value_code\": \"EXACT_WALK\"}],"
            " \"authored_at\": \"" SENT "\"}");
    expect_qr_written(
        "wb-checkin-by-id", ok, 1, 1,
        "{\"resourceType\": \"QuestionnaireResponse\", \"questionnaire\": \"Questionnaire/" QID
        "\","
        " \"status\": \"completed\", \"subject\": {\"reference\": \"Patient/" PAT "\"},"
        " \"author\": {\"reference\": \"Patient/" PAT "\"}, \"authored\": \"" SENT "\","
        " \"item\": ["
        "  {\"linkId\": \"" Q_SINGLE "\", \"text\": \"Do you exercise on a regular basis?\","
        "   \"answer\": [" CODING(
            "LA32-8",
            "No") "]},"
                  "  {\"linkId\": \"" Q_MULTI
                  "\", \"text\": \"Which activities do you do each week?\","
                  "   \"answer\": [" CODING("EXACT_RUN", "Running") ", " CODING(
                      "EXACT_BIKE",
                      "Cycling") ", " CODING("EXACT_WALK",
                                             "Walking") "]},"
                                                        "  {\"linkId\": \"" Q_TEXT
                                                        "\", \"text\": \"What type of exercise do "
                                                        "you do?\","
                                                        "   \"answer\": [{\"valueString\": "
                                                        "\"Cycling to work\"}]}]}");
    reqs = sb_requests("target=fhir&method=GET");
    if (H_CHECK_INT(h, json_array_size(reqs), 1))
        H_CHECK_STR(h, json_string_value(json_object_get(json_array_get(reqs, 0), "path")),
                    "/fhir/Questionnaire/" QID);
    json_decref(reqs);

    /* By questionnaire code: a search for the active one. */
    sb_forget();
    checkin("wb-checkin-by-code", LEE,
            "{\"patient_id\": \"" LEE "\", \"questionnaire\": {\"code\": \"404684003\"},"
            " \"answers\": [{\"question_code\": \"228448000\", \"value_code\": \"LA33-6\"}],"
            " \"authored_at\": \"" SENT "\"}");
    expect_qr_written(
        "wb-checkin-by-code", ok, 1, 1,
        "{\"resourceType\": \"QuestionnaireResponse\", \"questionnaire\": \"Questionnaire/" QID
        "\","
        " \"status\": \"completed\", \"subject\": {\"reference\": \"Patient/" LEE "\"},"
        " \"author\": {\"reference\": \"Patient/" LEE "\"}, \"authored\": \"" SENT "\","
        " \"item\": [{\"linkId\": \"" Q_SINGLE "\", \"text\": \"Do you exercise on a regular "
        "basis?\", \"answer\": [" CODING("LA33-6", "Yes") "]}]}");
    reqs = sb_requests("target=fhir&method=GET&path_prefix=/fhir/Questionnaire");
    if (H_CHECK_INT(h, json_array_size(reqs), 1)) {
        q = json_object_get(json_array_get(reqs, 0), "query");
        H_CHECK_STR(h, json_string_value(json_object_get(q, "questionnaire-code")), "404684003");
        H_CHECK_STR(h, json_string_value(json_object_get(q, "status")), "active");
    }
    json_decref(reqs);
}

static void test_checkin_fhir_form(void)
{
    static const long ok[] = {201};
    json_t *reqs;

    /* Sent as given, less the encounter, plus the Patient as author. */
    sb_forget();
    checkin("wb-checkin-fhir", PAT,
            "{\"patient_id\": \"" PAT "\", \"questionnaire_response\": {"
            " \"resourceType\": \"QuestionnaireResponse\", \"questionnaire\": \"Questionnaire/" QID
            "\", \"status\": \"completed\", \"subject\": {\"reference\": \"Patient/" PAT "\","
            " \"type\": \"Patient\"}, \"encounter\": {\"reference\": \"Encounter/unknown\"},"
            " \"authored\": \"" SENT "\", \"item\": [{\"linkId\": \"" Q_SINGLE
            "\", \"answer\": [" CODING("LA33-6", "Yes") "]}]}}");
    expect_qr_written(
        "wb-checkin-fhir", ok, 1, 1,
        "{\"resourceType\": \"QuestionnaireResponse\", \"questionnaire\": \"Questionnaire/" QID
        "\","
        " \"status\": \"completed\", \"subject\": {\"reference\": \"Patient/" PAT "\","
        " \"type\": \"Patient\"}, \"author\": {\"reference\": \"Patient/" PAT "\"},"
        " \"authored\": \"" SENT "\", \"item\": [{\"linkId\": \"" Q_SINGLE
        "\", \"answer\": [" CODING("LA33-6", "Yes") "]}]}");
    /* Nothing to look up for this form. */
    reqs = sb_requests("target=fhir&method=GET");
    H_CHECK_INT(h, json_array_size(reqs), 0);
    json_decref(reqs);
}

static void test_checkin_errors(void)
{
    /* Answers that do not fit the form: permanent, named, and nothing written (the form is
     * cached from the first check-in, so nothing at all reaches Canvas). */
    sb_forget();
    checkin("wb-checkin-bad-code", PAT,
            "{\"patient_id\": \"" PAT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
            " \"answers\": [{\"question_code\": \"EXACT\", \"value_code\": \"EXACT_RUN\"},"
            " {\"question_code\": \"228448000\", \"value_code\": \"LA99-9\"}],"
            " \"authored_at\": \"" SENT "\"}");
    expect_dlq("wb-checkin-bad-code", "permanent",
               "answers[1] (question_code 228448000): code LA99-9 is not an option", 0);
    expect_result("wb-checkin-bad-code", "questionnaire_response", "failed",
                  "answers[1] (question_code 228448000): code LA99-9 is not an option", 1);
    expect_no_fhir(1);

    sb_forget();
    checkin("wb-checkin-single-twice", PAT,
            "{\"patient_id\": \"" PAT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
            " \"answers\": [{\"link_id\": \"" Q_SINGLE "\", \"value_codes\": [\"LA33-6\", "
            "\"LA32-8\"]}], \"authored_at\": \"" SENT "\"}");
    expect_dlq("wb-checkin-single-twice", "permanent",
               "answers[0] (link_id " Q_SINGLE "): a single-choice question takes exactly one "
               "code, got 2",
               0);
    expect_no_fhir(0);

    sb_forget();
    checkin("wb-checkin-text-code", PAT,
            "{\"patient_id\": \"" PAT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
            " \"answers\": [{\"question_code\": \"EXTYPE\", \"value_code\": \"EXTYPE_A1\"}],"
            " \"authored_at\": \"" SENT "\"}");
    expect_dlq("wb-checkin-text-code", "permanent",
               "answers[0] (question_code EXTYPE): a text question takes value_string, not codes",
               0);
    expect_no_fhir(0);

    sb_forget();
    checkin("wb-checkin-unknown-question", PAT,
            "{\"patient_id\": \"" PAT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
            " \"answers\": [{\"link_id\": \"not-a-question\", \"value_string\": \"Cycling to "
            "work\"}], \"authored_at\": \"" SENT "\"}");
    expect_dlq("wb-checkin-unknown-question", "permanent",
               "answers[0] (link_id not-a-question): no such question in Questionnaire " QID, 0);
    expect_no_fhir(0);

    /* Only a retired questionnaire has this code. */
    sb_forget();
    checkin("wb-checkin-retired", PAT,
            "{\"patient_id\": \"" PAT "\", \"questionnaire\": {\"code\": \"55757-9\"},"
            " \"answers\": [{\"question_code\": \"44250-9\", \"value_code\": \"LA6568-5\"}],"
            " \"authored_at\": \"" SENT "\"}");
    expect_dlq("wb-checkin-retired", "permanent",
               "questionnaire.code 55757-9: no active questionnaire with that code", 0);
    expect_no_fhir(0);

    /* The FHIR form goes to Canvas as it is: Canvas's 422 text is the error. */
    sb_forget();
    checkin("wb-checkin-canvas-422", PAT,
            "{\"patient_id\": \"" PAT "\", \"questionnaire_response\": {"
            " \"resourceType\": \"QuestionnaireResponse\", \"questionnaire\": \"Questionnaire/" QID
            "\", \"status\": \"completed\", \"subject\": {\"reference\": \"Patient/" PAT "\"},"
            " \"item\": [{\"linkId\": \"" Q_SINGLE
            "\", \"answer\": [" CODING("LA99-9", "Maybe") "]}]}}");
    expect_dlq("wb-checkin-canvas-422", "permanent",
               "POST QuestionnaireResponse: 422 business-rule: Question received an invalid "
               "response option code: LA99-9",
               0);
    expect_result("wb-checkin-canvas-422", "questionnaire_response", "failed",
                  "Question received an invalid response option code: LA99-9", 1);

    /* Malformed: invalid, naming the field; nothing reaches Canvas. */
    sb_forget();
    checkin("wb-checkin-other-subject", PAT,
            "{\"patient_id\": \"" PAT "\", \"questionnaire_response\": {"
            " \"resourceType\": \"QuestionnaireResponse\", \"questionnaire\": \"Questionnaire/" QID
            "\", \"status\": \"completed\", \"subject\": {\"reference\": \"Patient/" LEE "\"},"
            " \"item\": [{\"linkId\": \"" Q_SINGLE
            "\", \"answer\": [" CODING("LA33-6", "Yes") "]}]}}");
    expect_dlq("wb-checkin-other-subject", "invalid",
               "data.questionnaire_response.subject.reference must be "
               "\"Patient/<data.patient_id>\"",
               0);
    expect_result("wb-checkin-other-subject", "questionnaire_response", "failed",
                  "subject.reference", 1);
    checkin("wb-checkin-no-value", PAT,
            "{\"patient_id\": \"" PAT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
            " \"answers\": [{\"link_id\": \"" Q_SINGLE "\"}], \"authored_at\": \"" SENT "\"}");
    expect_dlq("wb-checkin-no-value", "invalid",
               "data.answers[0]: exactly one of value_string, value_code or value_codes is "
               "required",
               0);
    expect_no_fhir(1);
}

/* 503 with Retry-After twice on the write: retried, then one QuestionnaireResponse. */
static void test_checkin_unavailable(void)
{
    static const long statuses[] = {503, 503, 201};
    json_t *before, *after;

    sb_forget();
    sb_ok("POST", "/_sandbox/faults",
          "{\"target\": \"fhir\", \"method\": \"POST\","
          " \"path_prefix\": \"/fhir/QuestionnaireResponse\", \"status\": 503,"
          " \"retry_after\": \"1\", \"count\": 2}");
    before = sb_resources("QuestionnaireResponse");
    checkin("wb-checkin-503", PAT,
            "{\"patient_id\": \"" PAT "\", \"questionnaire\": {\"id\": \"" QID "\"},"
            " \"answers\": [{\"link_id\": \"" Q_SINGLE "\", \"value_code\": \"LA33-6\"}],"
            " \"authored_at\": \"" SENT "\"}");
    expect_qr_written(
        "wb-checkin-503", statuses, 3, 3,
        "{\"resourceType\": \"QuestionnaireResponse\", \"questionnaire\": \"Questionnaire/" QID
        "\","
        " \"status\": \"completed\", \"subject\": {\"reference\": \"Patient/" PAT "\"},"
        " \"author\": {\"reference\": \"Patient/" PAT "\"}, \"authored\": \"" SENT "\","
        " \"item\": [{\"linkId\": \"" Q_SINGLE "\", \"text\": \"Do you exercise on a regular "
        "basis?\", \"answer\": [" CODING("LA33-6", "Yes") "]}]}");
    after = sb_resources("QuestionnaireResponse");
    H_CHECK_INT(h, json_array_size(after), json_array_size(before) + 1);
    json_decref(before);
    json_decref(after);
    sb_ok("DELETE", "/_sandbox/faults", NULL);
}

/* ---- through pm-ingest ---- */

static const char *post_ingest(const char *path, const char *key, const char *body)
{
    static char id[128];
    struct harness_http_response r = {0};
    char url[256], idem[160];
    const char *const hdr[] = {"Content-Type: application/json", "Authorization: Bearer " TOKEN,
                               idem, NULL};
    json_t *j;

    snprintf(url, sizeof(url), "%s%s", ingest, path);
    snprintf(idem, sizeof(idem), "Idempotency-Key: %s", key);
    harness_http("POST", url, hdr, body, strlen(body), 20000, &r);
    H_CHECKF(h, r.status == 202, "POST %s answered %ld: %s", path, r.status, r.body);
    j = json_loadb(r.body, r.body_len, 0, NULL);
    snprintf(id, sizeof(id), "%s",
             json_string_value(json_object_get(j, "id"))
                 ? json_string_value(json_object_get(j, "id"))
                 : "");
    json_decref(j);
    harness_http_response_free(&r);
    return id;
}

static void test_through_ingest(void)
{
    static const long ok[] = {201};
    json_t *body;

    sb_forget();
    H_CHECK_STR(h,
                post_ingest("/v1/patient/replies", "wb-ingest-reply",
                            "{\"patient_id\": \"" PAT "\", \"text\": \"Via the app\","
                            " \"recipient\": {\"email\": \"frontdesk@clinic.example\"},"
                            " \"sent_at\": \"" SENT "\"}"),
                "wb-ingest-reply");
    expect_reply_written("wb-ingest-reply", PAT, FRONTDESK, "Via the app");

    sb_forget();
    H_CHECK_STR(h,
                post_ingest("/v1/patient/questionnaire-responses", "wb-ingest-checkin",
                            "{\"patient_id\": \"" PAT "\", \"questionnaire\": {\"code\":"
                            " \"404684003\"}, \"answers\": [{\"question_code\": \"EXACT\","
                            " \"value_codes\": [\"EXACT_SWIM\"]}]}"),
                "wb-ingest-checkin");
    expect_result("wb-ingest-checkin", "questionnaire_response", "delivered", NULL, 1);
    body = the_post("QuestionnaireResponse", ok, 1);
    /* pm-ingest filled authored_at in with when it received the request. */
    H_CHECK(h, json_is_string(json_object_get(body, "authored")));
    H_CHECK(h, same_json(json_object_get(body, "item"),
                         "[{\"linkId\": \"" Q_MULTI "\", \"text\": \"Which activities do you do "
                         "each week?\", \"answer\": [" CODING("EXACT_SWIM", "Swimming") "]}]"));
    json_decref(body);
}

/* ---- processes ---- */

static struct harness_proc *start_deliver(const char *name, int with_default)
{
    char brokers[600], fhir[200], token[200], hook[200], listen[64], url[128], kconf[600];
    char path[512];
    struct harness_proc *p;
    int port = harness_free_port();
    FILE *f;

    /* A short session: the restarted instance takes the partitions over within seconds (the
     * mock cluster waits out the old member's session rather than acting on its leave). */
    harness_path(h, "kafka.properties", path, sizeof(path));
    f = fopen(path, "w");
    if (f) {
        fputs("session.timeout.ms=6000\nheartbeat.interval.ms=500\n", f);
        fclose(f);
    }
    snprintf(kconf, sizeof(kconf), "PM_KAFKA_CONFIG_FILE=%s", path);

    snprintf(brokers, sizeof(brokers), "PM_KAFKA_BROKERS=%s", bootstrap);
    snprintf(fhir, sizeof(fhir), "PM_CANVAS_FHIR_URL=%s/fhir", sb);
    snprintf(token, sizeof(token), "PM_CANVAS_TOKEN_URL=%s/auth/token/", sb);
    snprintf(hook, sizeof(hook), "PM_WEBHOOK_URL=%s/webhook", sb);
    snprintf(listen, sizeof(listen), "PM_DELIVER_LISTEN=127.0.0.1:%d", port);
    const char *env[] = {brokers,
                         kconf,
                         fhir,
                         token,
                         hook,
                         listen,
                         "PM_CANVAS_CLIENT_ID=sandbox-client",
                         "PM_CANVAS_CLIENT_SECRET=sandbox-secret",
                         "PM_DELIVER_CHANNELS=webhook",
                         "PM_WEBHOOK_SECRET=" WHSEC,
                         "PM_DELIVER_GROUP_ID=pm-deliver-writeback-test",
                         "PM_RETRY_BASE_MS=50",
                         "PM_RETRY_MAX_BACKOFF_MS=500",
                         "PM_RETRY_DEADLINE_MS=60000",
                         "PM_HTTP_TIMEOUT_MS=5000",
                         "PM_LOG_LEVEL=debug",
                         with_default ? "PM_DEFAULT_PRACTITIONER_ID=" FRONTDESK
                                      : "PM_DEFAULT_PRACTITIONER_ID",
                         "PM_CANVAS_INSTANCE",
                         NULL};
    const char *argv[] = {"pm-deliver", NULL};

    p = harness_proc_start(h, name, argv, env);
    snprintf(deliver_metrics, sizeof(deliver_metrics), "http://127.0.0.1:%d/metrics", port);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", port);
    if (!H_CHECKF(h, p && harness_http_wait(url, 200, 30000) == 0, "%s not ready", name))
        return NULL;
    return p;
}

/* Stopped without a default recipient, a reply that names nobody cannot be filed. */
static void test_reply_no_recipient(void)
{
    H_CHECK_INT(h, harness_proc_stop(deliver, 20000), 0);
    deliver = start_deliver("deliver-nodefault", 0);
    if (!deliver)
        return;
    sb_forget();
    reply("wb-reply-nobody", PAT,
          "{\"patient_id\": \"" PAT "\", \"text\": \"To whom it may concern\","
          " \"sent_at\": \"" SENT "\"}");
    expect_dlq("wb-reply-nobody", "permanent",
               "no recipient: set recipient, in_reply_to or PM_DEFAULT_PRACTITIONER_ID", 0);
    expect_result("wb-reply-nobody", "reply", "failed", "no recipient", 1);
    expect_no_fhir(1);
}

/* The same CloudEvent a third time, to a pm-deliver started after the first two: it learnt from
 * pm.deliveries that the reply was written, so it reports the same Communication and creates
 * none. */
static void test_reply_redelivered_after_restart(void)
{
    struct found f;
    json_t *before, *after;

    if (!deliver)
        return;
    sb_forget();
    before = sb_resources("Communication");
    reply("wb-reply-twice", PAT, TWICE_DATA);
    if (wait_for(T_RESULTS, "wb-reply-twice", 3, &f) == 0) {
        json_t *a = json_object_get(f.ce[0], "data"), *c = json_object_get(f.ce[2], "data");
        H_CHECK_STR(h, json_string_value(json_object_get(c, "outcome")), "delivered");
        H_CHECK(h, json_is_string(json_object_get(a, "provider_id")));
        H_CHECK_STR(h, json_string_value(json_object_get(c, "provider_id")),
                    json_string_value(json_object_get(a, "provider_id")));
    }
    found_free(&f);
    expect_no_fhir(0);
    after = sb_resources("Communication");
    H_CHECK_INT(h, json_array_size(after), json_array_size(before));
    json_decref(before);
    json_decref(after);
}

/* No reply text, answer text or address in pm-deliver's log, at any level. */
static void test_no_phi_logged(struct harness_proc *const *procs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *log = procs[i] ? harness_proc_stderr(procs[i]) : NULL;
        for (const char *const *p = phi; log && *p; p++)
            H_CHECKF(h, strstr(log, *p) == NULL, "pm-deliver logged \"%s\"", *p);
        free(log);
    }
}

int main(void)
{
    const char *sb_argv[] = {"pm-sandbox", NULL};
    const char *sb_env[] = {"PM_SANDBOX_LISTEN=127.0.0.1:0", "PM_SANDBOX_WEBHOOK_SECRET=" WHSEC,
                            "PM_SANDBOX_FIXTURES", NULL};
    const char *ing_argv[] = {"pm-ingest", NULL};
    struct harness_proc *kafka, *sandbox, *ing, *first;
    char line[256], brokers[600], listen[64], url[160];
    const char *at;
    int port;

    h = harness_init("deliver-writeback");
    kafka = harness_devbroker_start(h, 1, 4, NULL, bootstrap, sizeof(bootstrap));
    if (!H_CHECK(h, kafka != NULL))
        return harness_finish(h);
    sandbox = harness_proc_start(h, "sandbox", sb_argv, sb_env);
    if (!H_CHECK(h, sandbox && harness_proc_read_line(sandbox, line, sizeof(line), 10000) == 0))
        return harness_finish(h);
    at = strstr(line, "http://");
    if (!H_CHECKF(h, at != NULL, "sandbox said: %s", line))
        return harness_finish(h);
    snprintf(sb, sizeof(sb), "%s", at);

    /* Staff for the recipient paths: a default recipient, two people sharing an address. */
    sb_ok("POST", "/_sandbox/resources",
          "[{\"resourceType\": \"Practitioner\", \"id\": \"" FRONTDESK "\", \"active\": true,"
          "  \"name\": [{\"use\": \"usual\", \"text\": \"Front Desk\"}],"
          "  \"telecom\": [{\"system\": \"email\", \"value\": \"frontdesk@clinic.example\"}]},"
          " {\"resourceType\": \"Practitioner\", \"id\": \"" TWIN_A "\", \"active\": true,"
          "  \"name\": [{\"text\": \"Alex Twin\"}],"
          "  \"telecom\": [{\"system\": \"email\", \"value\": \"shared@clinic.example\"}]},"
          " {\"resourceType\": \"Practitioner\", \"id\": \"" TWIN_B "\", \"active\": true,"
          "  \"name\": [{\"text\": \"Blair Twin\"}],"
          "  \"telecom\": [{\"system\": \"email\", \"value\": \"shared@clinic.example\"}]}]");

    port = harness_free_port();
    snprintf(ingest, sizeof(ingest), "http://127.0.0.1:%d", port);
    snprintf(brokers, sizeof(brokers), "PM_KAFKA_BROKERS=%s", bootstrap);
    snprintf(listen, sizeof(listen), "PM_INGEST_LISTEN=127.0.0.1:%d", port);
    {
        const char *env[] = {brokers, listen, "PM_INGEST_BEARER_TOKENS=" TOKEN, NULL};
        ing = harness_proc_start(h, "ingest", ing_argv, env);
    }
    snprintf(url, sizeof(url), "%s/readyz", ingest);
    if (!H_CHECK(h, ing && harness_http_wait(url, 200, 20000) == 0))
        return harness_finish(h);

    first = deliver = start_deliver("deliver", 1);
    if (!deliver)
        return harness_finish(h);

    test_reply_recipients();
    test_reply_errors();
    test_reply_token_expired();
    test_reply_rate_limited();
    test_reply_redelivered();
    test_checkin_simple();
    test_checkin_fhir_form();
    test_checkin_errors();
    test_checkin_unavailable();
    test_through_ingest();
    test_reply_no_recipient();
    test_reply_redelivered_after_restart();
    /* A clean stop (drained, committed; under the sanitizers: nothing leaked). */
    if (deliver)
        H_CHECK_INT(h, harness_proc_stop(deliver, 20000), 0);
    {
        struct harness_proc *procs[] = {first, deliver};
        test_no_phi_logged(procs, 2);
    }
    return harness_finish(h);
}
