/* pm-ingest end to end: real pm-devbroker and pm-ingest processes, signed requests, records read
 * back. */
#include "harness.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SECRET  "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define TOKEN   "test-token-0123456789abcdef"
#define PATIENT "b3084f7e884e4af2b7e23b1dca494abd"
#define COMM    "8f2b1c7e-5d4a-4b3e-9c1f-2a6d7e8f9a0b"
#define TRACE   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

static struct harness *h;
static char base[128];

/* Every id ingest answered 202 for (not duplicates), and the topic it named. */
static struct {
    char id[256];
    char topic[64];
} accepted[64];
static int naccepted;

/* Ids of requests that were refused (4xx): none of them may show up on a topic. */
static char refused[64][64];
static int nrefused;

static json_t *post(const char *path, const char *const *headers, const char *body, long *status,
                    struct harness_http_response *keep)
{
    struct harness_http_response r = {0};
    char url[256];
    json_t *j = NULL;
    snprintf(url, sizeof(url), "%s%s", base, path);
    harness_http("POST", url, headers, body, body ? strlen(body) : 0, 20000, &r);
    *status = r.status;
    if (r.body && r.body_len)
        j = json_loads(r.body, 0, NULL);
    if (keep)
        *keep = r;
    else
        harness_http_response_free(&r);
    return j;
}

/* POST signed with Standard Webhooks; @p id is the webhook-id. */
static json_t *post_signed(const char *path, const char *id, const char *body, long *status,
                           long long ts_offset)
{
    struct harness_webhook_headers wh;
    char err[128];
    const char *headers[6];
    if (harness_webhook_sign(SECRET, id, (long long)time(NULL) + ts_offset, body, strlen(body), &wh,
                             err, sizeof(err)) != 0) {
        H_FAIL(h, "signing failed: %s", err);
        *status = 0;
        return NULL;
    }
    headers[0] = "Content-Type: application/json";
    headers[1] = wh.id;
    headers[2] = wh.timestamp;
    headers[3] = wh.signature;
    headers[4] = "traceparent: " TRACE;
    headers[5] = NULL;
    return post(path, headers, body, status, NULL);
}

static json_t *post_bearer(const char *path, const char *body, long *status)
{
    const char *headers[] = {"Content-Type: application/json", "Authorization: Bearer " TOKEN,
                             NULL};
    return post(path, headers, body, status, NULL);
}

static void remember_accepted(json_t *answer, const char *want_topic)
{
    const char *id = json_string_value(json_object_get(answer, "id"));
    const char *topic = json_string_value(json_object_get(answer, "topic"));
    H_CHECK_STR(h, topic, want_topic);
    H_CHECK(h, json_is_integer(json_object_get(answer, "partition")));
    H_CHECK(h, json_is_integer(json_object_get(answer, "offset")));
    H_CHECK(h, json_object_get(answer, "duplicate") == NULL);
    if (id && topic && naccepted < 64) {
        snprintf(accepted[naccepted].id, sizeof(accepted[0].id), "%s", id);
        snprintf(accepted[naccepted].topic, sizeof(accepted[0].topic), "%s", topic);
        naccepted++;
    }
}

static void expect_problem(json_t *j, long status, long want, const char *type, const char *pointer)
{
    H_CHECK_INT(h, status, want);
    H_CHECK_STR(h, json_string_value(json_object_get(j, "type")), type);
    H_CHECK_INT(h, json_integer_value(json_object_get(j, "status")), want);
    H_CHECK(h, json_is_string(json_object_get(j, "title")));
    if (pointer) {
        json_t *e;
        size_t i;
        int found = 0;
        json_array_foreach(json_object_get(j, "errors"), i, e)
        {
            const char *p = json_string_value(json_object_get(e, "pointer"));
            if (p && !strcmp(p, pointer))
                found = 1;
        }
        H_CHECKF(h, found, "no error for pointer %s", pointer);
    }
}

/* Finds the record whose CloudEvent id is @p id. */
static const struct harness_kafka_record *find_record(const struct harness_kafka_records *recs,
                                                      const char *id, json_t **ce_out)
{
    for (size_t i = 0; i < recs->n; i++) {
        json_t *ce = json_loadb(recs->v[i].value, recs->v[i].value_len, 0, NULL);
        const char *cid = json_string_value(json_object_get(ce, "id"));
        if (cid && !strcmp(cid, id)) {
            *ce_out = ce;
            return &recs->v[i];
        }
        json_decref(ce);
    }
    *ce_out = NULL;
    return NULL;
}

static int count_id(const struct harness_kafka_records *recs, const char *id)
{
    int n = 0;
    for (size_t i = 0; i < recs->n; i++) {
        json_t *ce = json_loadb(recs->v[i].value, recs->v[i].value_len, 0, NULL);
        const char *cid = json_string_value(json_object_get(ce, "id"));
        if (cid && !strcmp(cid, id))
            n++;
        json_decref(ce);
    }
    return n;
}

static void check_envelope(const struct harness_kafka_record *rec, json_t *ce, const char *type,
                           int want_trace)
{
    H_CHECK_STR(h, rec->key, PATIENT);
    H_CHECK_STR(h, harness_kafka_header(rec, "content-type"),
                "application/cloudevents+json; charset=utf-8");
    if (want_trace)
        H_CHECK_STR(h, harness_kafka_header(rec, "traceparent"), TRACE);
    H_CHECK_STR(h, json_string_value(json_object_get(ce, "specversion")), "1.0");
    H_CHECK_STR(h, json_string_value(json_object_get(ce, "source")), "pm-ingest");
    H_CHECK_STR(h, json_string_value(json_object_get(ce, "type")), type);
    H_CHECK_STR(h, json_string_value(json_object_get(ce, "subject")), "Patient/" PATIENT);
    H_CHECK_STR(h, json_string_value(json_object_get(ce, "datacontenttype")), "application/json");
    H_CHECK(h, json_is_string(json_object_get(ce, "time")));
    H_CHECK(h, json_is_object(json_object_get(ce, "data")));
}

static struct harness_proc *start_ingest(const char *bootstrap, int port, const char *ack_ms)
{
    char listen[64], brokers[600], ack[64], props[600], path[512];
    FILE *f;
    /* A small Kafka record limit, so a body under PM_INGEST_MAX_BODY_BYTES can exceed it. */
    harness_path(h, "kafka.properties", path, sizeof(path));
    f = fopen(path, "w");
    if (f) {
        fputs("# test settings\nmessage.max.bytes=3000\n", f);
        fclose(f);
    }
    snprintf(props, sizeof(props), "PM_KAFKA_CONFIG_FILE=%s", path);
    snprintf(listen, sizeof(listen), "PM_INGEST_LISTEN=127.0.0.1:%d", port);
    snprintf(brokers, sizeof(brokers), "PM_KAFKA_BROKERS=%s", bootstrap);
    snprintf(ack, sizeof(ack), "PM_INGEST_ACK_TIMEOUT_MS=%s", ack_ms);
    const char *env[] = {listen,
                         brokers,
                         ack,
                         props,
                         "PM_INGEST_WEBHOOK_SECRETS=" SECRET,
                         "PM_INGEST_BEARER_TOKENS=" TOKEN,
                         "PM_INGEST_MAX_BODY_BYTES=4096",
                         "PM_LOG_LEVEL=debug",
                         NULL};
    const char *argv[] = {"pm-ingest", NULL};
    return harness_proc_start(h, "ingest", argv, env);
}

static void test_cli(void)
{
    const char *argv_help[] = {"pm-ingest", "--help", NULL};
    const char *argv_check[] = {"pm-ingest", "--check-config", NULL};
    const char *argv_run[] = {"pm-ingest", NULL};
    const char *no_creds[] = {"PM_INGEST_WEBHOOK_SECRETS", "PM_INGEST_BEARER_TOKENS",
                              "PM_INGEST_ALLOW_UNAUTHENTICATED", "PM_INGEST_LISTEN=127.0.0.1:1",
                              NULL};
    const char *bad_secret[] = {"PM_INGEST_WEBHOOK_SECRETS=whsec_!!!notbase64!!!", NULL};
    struct harness_proc *p;
    char *out;

    p = harness_proc_start(h, "help", argv_help, NULL);
    H_CHECK_INT(h, harness_proc_wait(p, 5000), 0);
    out = harness_proc_stdout(p);
    H_CHECK(h, out && strstr(out, "PM_INGEST_ACK_TIMEOUT_MS") && strstr(out, "10000"));
    H_CHECK(h, out && strstr(out, "PM_INGEST_WEBHOOK_SECRETS") && strstr(out, "_FILE"));
    free(out);

    /* No credentials and no explicit opt-out: refuses to start, says why. */
    p = harness_proc_start(h, "nocreds", argv_run, no_creds);
    H_CHECK_INT(h, harness_proc_wait(p, 5000), 1);
    out = harness_proc_stderr(p);
    H_CHECK(h, out && strstr(out, "PM_INGEST_ALLOW_UNAUTHENTICATED"));
    free(out);

    p = harness_proc_start(h, "checkbad", argv_check, bad_secret);
    H_CHECK_INT(h, harness_proc_wait(p, 5000), 1);
    out = harness_proc_stdout(p);
    H_CHECK(h, out && strstr(out, "PM_INGEST_WEBHOOK_SECRETS"));
    H_CHECK(h, out && !strstr(out, "notbase64")); /* the secret is never echoed */
    free(out);
}

int main(void)
{
    char bootstrap[512], url[256], body[2048];
    struct harness_proc *kafka, *ingest;
    struct harness_kafka_records recs = {0};
    struct harness_http_response resp = {0};
    long st;
    json_t *j;
    int port;

    h = harness_init("ingest");
    test_cli();

    kafka = harness_devbroker_start(h, 1, 4, NULL, bootstrap, sizeof(bootstrap));
    if (!H_CHECK(h, kafka != NULL))
        return harness_finish(h);
    port = harness_free_port();
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
    ingest = start_ingest(bootstrap, port, "3000");
    snprintf(url, sizeof(url), "%s/readyz", base);
    if (!H_CHECK(h, ingest && harness_http_wait(url, 200, 20000) == 0))
        return harness_finish(h);

    /* --- every accepted shape: 202 with where the record went --- */
    snprintf(body, sizeof(body),
             "{\"communication_id\":\"%s\",\"patient_id\":\"%s\","
             "\"occurred_at\":\"2026-11-26T10:00:00Z\",\"change\":{\"model_name\":"
             "\"messagetransmission\",\"fields\":{\"message_id\":[null,123]}}}",
             COMM, PATIENT);
    j = post_signed("/v1/canvas/messages", "msg_notification_1", body, &st, 0);
    H_CHECK_INT(h, st, 202);
    H_CHECK_STR(h, json_string_value(json_object_get(j, "id")), "msg_notification_1");
    remember_accepted(j, "pm.canvas.messages");
    {
        json_int_t first_partition = json_integer_value(json_object_get(j, "partition"));
        json_int_t first_offset = json_integer_value(json_object_get(j, "offset"));
        json_decref(j);

        /* The same webhook-id again: the first answer, flagged, and nothing produced. */
        j = post_signed("/v1/canvas/messages", "msg_notification_1", body, &st, 0);
        H_CHECK_INT(h, st, 202);
        H_CHECK(h, json_is_true(json_object_get(j, "duplicate")));
        H_CHECK_INT(h, json_integer_value(json_object_get(j, "partition")), first_partition);
        H_CHECK_INT(h, json_integer_value(json_object_get(j, "offset")), first_offset);
        json_decref(j);
    }
    /* The same id with another body is a client error, not a silent duplicate. */
    j = post_signed("/v1/canvas/messages", "msg_notification_1",
                    "{\"communication_id\":\"other\",\"patient_id\":\"" PATIENT "\"}", &st, 0);
    expect_problem(j, st, 422, "urn:pm:problem:idempotency-key-reused", NULL);
    json_decref(j);

    snprintf(body, sizeof(body),
             "{\"resourceType\":\"Communication\",\"id\":\"%s\",\"status\":\"completed\","
             "\"recipient\":[{\"reference\":\"Patient/%s\",\"type\":\"Patient\"}],"
             "\"sender\":{\"reference\":\"Practitioner/4150cd20de8a470aa570a852859ac87e\"},"
             "\"payload\":[{\"contentString\":\"<p>hello</p>\"}]}",
             COMM, PATIENT);
    j = post_bearer("/v1/canvas/messages", body, &st);
    H_CHECK_INT(h, st, 202);
    remember_accepted(j, "pm.canvas.messages");
    json_decref(j);

    j = post_bearer("/v1/canvas/messages",
                    "{\"type\":\"MESSAGE_CREATED\",\"target\":{\"id\":\"" COMM "\"},"
                    "\"context\":{\"patient\":{\"id\":\"" PATIENT "\"}}}",
                    &st);
    H_CHECK_INT(h, st, 202);
    remember_accepted(j, "pm.canvas.messages");
    json_decref(j);

    j = post_signed("/v1/patient/replies", "msg_reply_1",
                    "{\"patient_id\":\"" PATIENT "\",\"text\":\"Thank you!\","
                    "\"recipient\":{\"email\":\"staff@clinic.example\"}}",
                    &st, 0);
    H_CHECK_INT(h, st, 202);
    remember_accepted(j, "pm.patient.replies");
    json_decref(j);

    j = post_bearer("/v1/patient/questionnaire-responses",
                    "{\"resourceType\":\"QuestionnaireResponse\",\"questionnaire\":"
                    "\"Questionnaire/47a408d7-9f1d-4cfd-97c7-aa810df9ed39\",\"status\":"
                    "\"completed\",\"subject\":{\"reference\":\"Patient/" PATIENT "\"},"
                    "\"item\":[{\"linkId\":\"d82e29db-0cac-4b97-a5aa-9e81749686e2\",\"answer\":"
                    "[{\"valueCoding\":{\"system\":\"http://snomed.info/sct\",\"code\":"
                    "\"LA33-6\",\"display\":\"Yes\"}}]}]}",
                    &st);
    H_CHECK_INT(h, st, 202);
    remember_accepted(j, "pm.patient.questionnaire-responses");
    json_decref(j);

    {
        const char *headers[] = {"Content-Type: application/json; charset=utf-8",
                                 "Authorization: Bearer " TOKEN, "Idempotency-Key: \"checkin-1\"",
                                 NULL};
        j = post("/v1/patient/questionnaire-responses", headers,
                 "{\"patient_id\":\"" PATIENT "\",\"questionnaire\":{\"code\":\"404684003\"},"
                 "\"answers\":[{\"question_code\":\"228448000\",\"value_code\":\"LA33-6\"}]}",
                 &st, NULL);
        H_CHECK_INT(h, st, 202);
        H_CHECK_STR(h, json_string_value(json_object_get(j, "id")), "checkin-1");
        remember_accepted(j, "pm.patient.questionnaire-responses");
        json_decref(j);
    }

    /* --- rejected requests: clear problems, nothing produced --- */
    {
        const char *unsigned_hdrs[] = {"Content-Type: application/json", NULL};
        const char *bad_token[] = {"Content-Type: application/json",
                                   "Authorization: Bearer wrong-token-0123456789", NULL};
        const char *text_plain[] = {"Content-Type: text/plain", "Authorization: Bearer " TOKEN,
                                    NULL};
        const char *ok_msg = "{\"communication_id\":\"" COMM "\",\"patient_id\":\"" PATIENT "\"}";
        char big[8192];

        j = post("/v1/canvas/messages", unsigned_hdrs, ok_msg, &st, NULL);
        expect_problem(j, st, 401, "urn:pm:problem:unauthorized", NULL);
        json_decref(j);
        j = post("/v1/canvas/messages", bad_token, ok_msg, &st, &resp);
        expect_problem(j, st, 401, "urn:pm:problem:unauthorized", NULL);
        H_CHECK_STR(h, harness_http_header(&resp, "WWW-Authenticate"), "Bearer");
        harness_http_response_free(&resp);
        json_decref(j);
        j = post_signed("/v1/canvas/messages", "msg_stale", ok_msg, &st, -301);
        expect_problem(j, st, 401, "urn:pm:problem:unauthorized", NULL);
        json_decref(j);
        j = post_signed("/v1/canvas/messages", "msg_future", ok_msg, &st, 301);
        expect_problem(j, st, 401, "urn:pm:problem:unauthorized", NULL);
        json_decref(j);
        {
            /* A valid signature over another body (re-serialised JSON) does not verify. */
            struct harness_webhook_headers wh;
            char err[64];
            harness_webhook_sign(SECRET, "msg_reserialised", (long long)time(NULL), ok_msg,
                                 strlen(ok_msg), &wh, err, sizeof(err));
            const char *hdrs[] = {"Content-Type: application/json", wh.id, wh.timestamp,
                                  wh.signature, NULL};
            j = post("/v1/canvas/messages", hdrs,
                     "{\"communication_id\": \"" COMM "\", \"patient_id\": \"" PATIENT "\"}", &st,
                     NULL);
            expect_problem(j, st, 401, "urn:pm:problem:unauthorized", NULL);
            json_decref(j);
            snprintf(refused[nrefused++], sizeof(refused[0]), "msg_reserialised");
        }
        {
            /* A valid signature decides even when a proxy added a bearer header we don't know. */
            struct harness_webhook_headers wh;
            char err[64];
            harness_webhook_sign(SECRET, "msg_sig_and_bearer", (long long)time(NULL), ok_msg,
                                 strlen(ok_msg), &wh, err, sizeof(err));
            const char *hdrs[] = {"Content-Type: application/json",
                                  wh.id,
                                  wh.timestamp,
                                  wh.signature,
                                  "Authorization: Bearer proxy-token-0000000000",
                                  NULL};
            j = post("/v1/canvas/messages", hdrs, ok_msg, &st, NULL);
            H_CHECK_INT(h, st, 202);
            remember_accepted(j, "pm.canvas.messages");
            json_decref(j);
        }
        snprintf(refused[nrefused++], sizeof(refused[0]), "msg_stale");
        snprintf(refused[nrefused++], sizeof(refused[0]), "msg_future");

        j = post_signed("/v1/canvas/messages", "msg_badjson", "{\"communication_id\":", &st, 0);
        expect_problem(j, st, 400, "urn:pm:problem:invalid-json", NULL);
        json_decref(j);
        snprintf(refused[nrefused++], sizeof(refused[0]), "msg_badjson");

        j = post_signed(
            "/v1/patient/replies", "msg_badfields",
            "{\"patient_id\":\"not/a/fhir/id\",\"text\":\"  \",\"sent_at\":\"yesterday\","
            "\"extra\":1}",
            &st, 0);
        expect_problem(j, st, 400, "urn:pm:problem:invalid-fields", "/patient_id");
        expect_problem(j, st, 400, "urn:pm:problem:invalid-fields", "/text");
        expect_problem(j, st, 400, "urn:pm:problem:invalid-fields", "/sent_at");
        expect_problem(j, st, 400, "urn:pm:problem:invalid-fields", "/extra");
        json_decref(j);
        snprintf(refused[nrefused++], sizeof(refused[0]), "msg_badfields");

        j = post_signed("/v1/patient/questionnaire-responses", "msg_badqr",
                        "{\"patient_id\":\"" PATIENT "\",\"questionnaire\":{\"id\":\"q\","
                        "\"code\":\"c\"},\"answers\":[{\"link_id\":\"a\"}]}",
                        &st, 0);
        expect_problem(j, st, 400, "urn:pm:problem:invalid-fields", "/questionnaire");
        expect_problem(j, st, 400, "urn:pm:problem:invalid-fields", "/answers/0");
        json_decref(j);
        snprintf(refused[nrefused++], sizeof(refused[0]), "msg_badqr");

        j = post("/v1/canvas/messages", text_plain, ok_msg, &st, NULL);
        expect_problem(j, st, 415, "urn:pm:problem:unsupported-media-type", NULL);
        json_decref(j);

        /* Over PM_INGEST_MAX_BODY_BYTES=4096: 413 decided from Content-Length. */
        memset(big, ' ', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        memcpy(big, "{\"communication_id\":\"x\"", 23);
        j = post_bearer("/v1/canvas/messages", big, &st);
        expect_problem(j, st, 413, "urn:pm:problem:payload-too-large", NULL);
        json_decref(j);

        /* Within the body limit (4096) but over Kafka's record limit (3000): 413 that says so,
         * not a 503 that no retry could cure. */
        {
            char reply[3600];
            int n = snprintf(reply, sizeof(reply), "{\"patient_id\":\"" PATIENT "\",\"text\":\"");
            memset(reply + n, 'x', 3300);
            snprintf(reply + n + 3300, sizeof(reply) - (size_t)n - 3300, "\"}");
            j = post_signed("/v1/patient/replies", "msg_too_big_for_kafka", reply, &st, 0);
            expect_problem(j, st, 413, "urn:pm:problem:payload-too-large", NULL);
            const char *detail = json_string_value(json_object_get(j, "detail"));
            H_CHECK(h, detail && strstr(detail, "record limit"));
            json_decref(j);
            snprintf(refused[nrefused++], sizeof(refused[0]), "msg_too_big_for_kafka");
        }

        snprintf(url, sizeof(url), "%s/v1/unknown", base);
        harness_http("GET", url, NULL, NULL, 0, 5000, &resp);
        H_CHECK_INT(h, resp.status, 404);
        H_CHECK_STR(h, harness_http_header(&resp, "Content-Type"), "application/problem+json");
        harness_http_response_free(&resp);
        snprintf(url, sizeof(url), "%s/v1/patient/replies", base);
        harness_http("GET", url, NULL, NULL, 0, 5000, &resp);
        H_CHECK_INT(h, resp.status, 405);
        H_CHECK_STR(h, harness_http_header(&resp, "Allow"), "POST");
        harness_http_response_free(&resp);
    }

    /* --- operational routes --- */
    snprintf(url, sizeof(url), "%s/healthz", base);
    H_CHECK_INT(h, harness_http_wait(url, 200, 2000), 0);
    snprintf(url, sizeof(url), "%s/metrics", base);
    harness_http("GET", url, NULL, NULL, 0, 5000, &resp);
    H_CHECK_INT(h, resp.status, 200);
    H_CHECK(h, resp.body && strstr(resp.body, "pm_ingest_requests_total{route=\"/v1/canvas/"
                                              "messages\",status=\"202\"} 5"));
    H_CHECK(h, resp.body && strstr(resp.body, "pm_ingest_request_duration_seconds_bucket"));
    harness_http_response_free(&resp);

    /* --- what reached Kafka: exactly one record per accepted request --- */
    {
        static const char *const topics[] = {"pm.canvas.messages", "pm.patient.replies",
                                             "pm.patient.questionnaire-responses"};
        static const int want[] = {4, 1, 2};
        char err[256];
        for (int t = 0; t < 3; t++) {
            struct harness_kafka_records r = {0};
            H_CHECKF(h,
                     harness_kafka_read(bootstrap, topics[t], 0, 15000, &r, err, sizeof(err)) == 0,
                     "read %s: %s", topics[t], err);
            H_CHECKF(h, (int)r.n == want[t], "%s holds %zu records, expected %d", topics[t], r.n,
                     want[t]);
            for (int i = 0; i < naccepted; i++) {
                if (strcmp(accepted[i].topic, topics[t]) != 0)
                    continue;
                H_CHECKF(h, count_id(&r, accepted[i].id) == 1, "%s: id %s appears %d times",
                         topics[t], accepted[i].id, count_id(&r, accepted[i].id));
            }
            for (int i = 0; i < nrefused; i++)
                H_CHECKF(h, count_id(&r, refused[i]) == 0, "refused id %s was produced",
                         refused[i]);
            if (t == 0) {
                json_t *ce;
                const struct harness_kafka_record *rec = find_record(&r, "msg_notification_1", &ce);
                if (H_CHECK(h, rec != NULL)) {
                    json_t *data = json_object_get(ce, "data");
                    check_envelope(rec, ce, "canvas.message.v1", 1);
                    H_CHECK_STR(h, json_string_value(json_object_get(ce, "time")),
                                "2026-11-26T10:00:00Z");
                    H_CHECK_STR(h, json_string_value(json_object_get(data, "communication_id")),
                                COMM);
                    H_CHECK_STR(h, json_string_value(json_object_get(data, "patient_id")), PATIENT);
                    H_CHECK(h, json_is_object(json_object_get(data, "change")));
                    H_CHECK_INT(h, json_object_size(data), 3);
                    json_decref(ce);
                }
            }
            if (t == 1) {
                json_t *ce;
                const struct harness_kafka_record *rec = find_record(&r, "msg_reply_1", &ce);
                if (H_CHECK(h, rec != NULL)) {
                    json_t *data = json_object_get(ce, "data");
                    check_envelope(rec, ce, "patient.reply.v1", 1);
                    H_CHECK_STR(h, json_string_value(json_object_get(data, "text")), "Thank you!");
                    H_CHECK(h, json_is_string(json_object_get(data, "sent_at")));
                    json_decref(ce);
                }
            }
            if (t == 2) {
                json_t *ce;
                const struct harness_kafka_record *rec = find_record(&r, "checkin-1", &ce);
                if (H_CHECK(h, rec != NULL)) {
                    check_envelope(rec, ce, "patient.questionnaire_response.v1", 0);
                    H_CHECK(h, json_is_string(
                                   json_object_get(json_object_get(ce, "data"), "authored_at")));
                    json_decref(ce);
                }
            }
            harness_kafka_records_free(&r);
        }
    }

    /* --- Kafka away: 503 with Retry-After, never 202; back: 202 again --- */
    {
        char answer[128];
        long long t0;
        H_CHECK_INT(h, harness_devbroker_cmd(kafka, "down all", answer, sizeof(answer)), 0);
        t0 = harness_now_ms();
        j = post_signed("/v1/canvas/messages", "msg_while_down",
                        "{\"communication_id\":\"" COMM "\",\"patient_id\":\"" PATIENT "\"}", &st,
                        0);
        H_CHECK_INT(h, st, 503);
        H_CHECK_STR(h, json_string_value(json_object_get(j, "type")),
                    "urn:pm:problem:kafka-unavailable");
        /* PM_INGEST_ACK_TIMEOUT_MS=3000: answered close to it, not when librdkafka gives up. */
        H_CHECKF(h, harness_now_ms() - t0 < 6000, "503 took %lld ms", harness_now_ms() - t0);
        json_decref(j);
        snprintf(url, sizeof(url), "%s/readyz", base);
        H_CHECK_INT(h, harness_http_wait(url, 503, 15000), 0);

        H_CHECK_INT(h, harness_devbroker_cmd(kafka, "up all", answer, sizeof(answer)), 0);
        H_CHECK_INT(h, harness_http_wait(url, 200, 30000), 0);
        j = post_signed("/v1/canvas/messages", "msg_after_up",
                        "{\"communication_id\":\"" COMM "\",\"patient_id\":\"" PATIENT "\"}", &st,
                        0);
        H_CHECK_INT(h, st, 202);
        json_decref(j);

        /* The broker process gone entirely: still 503, never 202. */
        harness_proc_stop(kafka, 5000);
        j = post_signed("/v1/canvas/messages", "msg_broker_gone",
                        "{\"communication_id\":\"" COMM "\",\"patient_id\":\"" PATIENT "\"}", &st,
                        0);
        H_CHECK_INT(h, st, 503);
        json_decref(j);
    }

    /* --- SIGTERM: a clean exit --- */
    harness_proc_signal(ingest, SIGTERM);
    H_CHECK_INT(h, harness_proc_wait(ingest, 15000), 0);
    {
        /* No PHI in the debug log: message text and the change payload never appear. */
        char *log = harness_proc_stderr(ingest);
        H_CHECK(h, log && !strstr(log, "Thank you!"));
        H_CHECK(h, log && !strstr(log, "hello"));
        H_CHECK(h, log && !strstr(log, TOKEN));
        free(log);
    }
    harness_kafka_records_free(&recs);
    return harness_finish(h);
}
