/* Unit tests for pm-sandbox's Twilio and SendGrid rules, form decoding, fault rules, the request
 * recorder and the token table. */
#include "sandbox.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);
    if (!v)
        fprintf(stderr, "bad test JSON: %s\n", jerr.text);
    return v;
}

static void test_e164_and_twilio(void)
{
    struct sandbox_twilio_error err;
    char body[1700];

    CHECK(sandbox_e164_valid("+15554320555"));
    CHECK(sandbox_e164_valid("+442071838750"));
    /* What Canvas stores: 10 digits without country code, with or without a bare '+'. */
    CHECK(!sandbox_e164_valid("5554320555"));
    CHECK(!sandbox_e164_valid("+5554320555"));
    CHECK(!sandbox_e164_valid("+1 555 432 0555"));
    CHECK(!sandbox_e164_valid("+1555432055512345"));
    CHECK(!sandbox_e164_valid("+05554320555"));
    CHECK(!sandbox_e164_valid(""));

    CHECK_INT(sandbox_twilio_validate("+15554320555", "+15550001111", "hi", &err), 0);
    CHECK_INT(sandbox_twilio_validate("5554320555", "+15550001111", "hi", &err), -1);
    CHECK_INT(err.code, 21211);
    CHECK_INT(err.status, 400);
    CHECK_STR(err.message, "Invalid 'To' Phone Number: 5554320555");
    CHECK_INT(sandbox_twilio_validate(NULL, "+15550001111", "hi", &err), -1);
    CHECK_INT(err.code, 21604);
    CHECK_INT(sandbox_twilio_validate("+15554320555", "+15550001111", "", &err), -1);
    CHECK_INT(err.code, 21602);
    CHECK_INT(sandbox_twilio_validate("+15554320555", "Clinic", "hi", &err), 0);
    memset(body, 'a', 1600);
    body[1600] = '\0';
    CHECK_INT(sandbox_twilio_validate("+15554320555", "+15550001111", body, &err), 0);
    body[1600] = 'a';
    body[1601] = '\0';
    CHECK_INT(sandbox_twilio_validate("+15554320555", "+15550001111", body, &err), -1);
    CHECK_INT(err.code, 21617);
    /* 1600 characters, not bytes: 800 two-byte characters pass. */
    for (int i = 0; i < 800; i++)
        memcpy(body + 2 * i, "\xc3\xa9", 2);
    body[1600] = '\0';
    CHECK_INT(sandbox_utf8_chars(body, 1600), 800);
    CHECK_INT(sandbox_twilio_validate("+15554320555", "+15550001111", body, &err), 0);
}

static size_t error_count(json_t *errors)
{
    return json_array_size(json_object_get(errors, "errors"));
}

static const char *error_field(json_t *errors, size_t i)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(errors, "errors"), i), "field"));
}

static void test_sendgrid(void)
{
    json_t *body, *errors;

    body = parse("{\"personalizations\":[{\"to\":[{\"email\":\"pat@example.com\"}]}],"
                 "\"from\":{\"email\":\"clinic@clinic.example\"},\"subject\":\"Hi\","
                 "\"content\":[{\"type\":\"text/plain\",\"value\":\"x\"},"
                 "{\"type\":\"text/html\",\"value\":\"<p>x</p>\"}]}");
    CHECK(sandbox_sendgrid_validate(body) == NULL);
    json_decref(body);

    /* html before plain is refused. */
    body = parse("{\"personalizations\":[{\"to\":[{\"email\":\"pat@example.com\"}]}],"
                 "\"from\":{\"email\":\"clinic@clinic.example\"},\"subject\":\"Hi\","
                 "\"content\":[{\"type\":\"text/html\",\"value\":\"<p>x</p>\"},"
                 "{\"type\":\"text/plain\",\"value\":\"x\"}]}");
    errors = sandbox_sendgrid_validate(body);
    CHECK_INT(error_count(errors), 1);
    CHECK_STR(error_field(errors, 0), "content");
    json_decref(errors);
    json_decref(body);

    /* Every problem at once, each with its field. */
    body = parse("{\"personalizations\":[{\"to\":[{\"email\":\"not-an-address\"}]}],"
                 "\"from\":{},\"content\":[]}");
    errors = sandbox_sendgrid_validate(body);
    CHECK_INT(error_count(errors), 4);
    CHECK_STR(error_field(errors, 0), "personalizations.0.to.0.email");
    CHECK_STR(error_field(errors, 1), "from.email");
    CHECK_STR(error_field(errors, 2), "subject");
    CHECK_STR(error_field(errors, 3), "content");
    json_decref(errors);
    json_decref(body);

    body = parse("{\"from\":{\"email\":\"clinic@clinic.example\"},\"subject\":\"s\","
                 "\"content\":[{\"type\":\"text/plain\",\"value\":\"x\"}]}");
    errors = sandbox_sendgrid_validate(body);
    CHECK_STR(error_field(errors, 0), "personalizations");
    json_decref(errors);
    json_decref(body);
}

static void test_form(void)
{
    const char *f = "grant_type=client_credentials&client_id=a%2Bb&client_secret=x+y%26z&e=";
    char *v;

    v = sandbox_form_get(f, strlen(f), "client_id");
    CHECK_STR(v, "a+b");
    free(v);
    v = sandbox_form_get(f, strlen(f), "client_secret");
    CHECK_STR(v, "x y&z");
    free(v);
    v = sandbox_form_get(f, strlen(f), "e");
    CHECK_STR(v, "");
    free(v);
    CHECK(sandbox_form_get(f, strlen(f), "client") == NULL);
    CHECK(sandbox_form_get(f, strlen(f), "grant") == NULL);
}

static void test_faults(void)
{
    struct sandbox_faults *f = sandbox_faults_new();
    struct sandbox_fault_hit hit;
    struct sandbox_answer ans;
    char err[256];
    json_t *spec;

    spec = parse("{\"target\":\"fhir\",\"status\":503,\"retry_after\":\"2\"}");
    CHECK(sandbox_faults_add(f, spec, err, sizeof(err)) > 0);
    json_decref(spec);
    spec = parse("{\"target\":\"*\",\"path_prefix\":\"/webhook\",\"status\":500,\"count\":2}");
    CHECK(sandbox_faults_add(f, spec, err, sizeof(err)) > 0);
    json_decref(spec);
    /* A typo is refused rather than silently ignored. */
    spec = parse("{\"target\":\"fhir\",\"statuss\":503}");
    CHECK_INT(sandbox_faults_add(f, spec, err, sizeof(err)), -1);
    json_decref(spec);
    spec = parse("{\"target\":\"kafka\"}");
    CHECK_INT(sandbox_faults_add(f, spec, err, sizeof(err)), -1);
    json_decref(spec);

    /* Twilio matches nothing; FHIR takes the first rule once; the webhook rule twice. */
    CHECK_INT(sandbox_faults_take(f, SANDBOX_TARGET_TWILIO, "POST", "/twilio/x", &hit), 0);
    CHECK_INT(sandbox_faults_take(f, SANDBOX_TARGET_FHIR, "GET", "/fhir/Patient/x", &hit), 1);
    CHECK_INT(hit.status, 503);
    CHECK_STR(hit.retry_after, "2");
    sandbox_fault_hit_clear(&hit);
    CHECK_INT(sandbox_faults_take(f, SANDBOX_TARGET_FHIR, "GET", "/fhir/Patient/x", &hit), 0);
    CHECK_INT(sandbox_faults_take(f, SANDBOX_TARGET_WEBHOOK, "POST", "/webhook", &hit), 1);
    sandbox_fault_hit_clear(&hit);
    CHECK_INT(sandbox_faults_take(f, SANDBOX_TARGET_WEBHOOK, "POST", "/webhook/a", &hit), 1);
    sandbox_fault_hit_clear(&hit);
    CHECK_INT(sandbox_faults_take(f, SANDBOX_TARGET_WEBHOOK, "POST", "/webhook", &hit), 0);

    /* A latency-only rule answers normally; a hang without status too (the server makes it 504). */
    spec = parse("{\"target\":\"sendgrid\",\"latency_ms\":100,\"count\":-1}");
    CHECK(sandbox_faults_add(f, spec, err, sizeof(err)) > 0);
    json_decref(spec);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(
            sandbox_faults_take(f, SANDBOX_TARGET_SENDGRID, "POST", "/sendgrid/v3/mail/send", &hit),
            1);
        CHECK_INT(hit.status, 0);
        CHECK_INT(hit.latency_ms, 100);
        sandbox_fault_hit_clear(&hit);
    }
    sandbox_faults_clear(f);
    CHECK_INT(sandbox_faults_take(f, SANDBOX_TARGET_SENDGRID, "POST", "/", &hit), 0);

    /* Usual error bodies: Canvas's misspelt 5xx code, Twilio 20429. */
    memset(&ans, 0, sizeof(ans));
    sandbox_default_error(SANDBOX_TARGET_FHIR, 503, &ans);
    CHECK(ans.body && strstr(ans.body, "\"excepetion\"") != NULL);
    sandbox_default_error(SANDBOX_TARGET_TWILIO, 429, &ans);
    CHECK(ans.body && strstr(ans.body, "20429") != NULL);
    sandbox_answer_clear(&ans);
    sandbox_default_error(SANDBOX_TARGET_SENDGRID, 429, &ans);
    CHECK(sandbox_answer_get_header(&ans, "X-RateLimit-Reset") != NULL);
    sandbox_answer_clear(&ans);
    sandbox_faults_free(f);
}

static void test_recorder(void)
{
    struct sandbox_recorder *r = sandbox_recorder_new(3);
    struct sandbox_record_filter all = {-1, NULL, NULL, 0, 0};
    struct sandbox_record_filter fhir = {SANDBOX_TARGET_FHIR, NULL, NULL, 0, 0};
    static const struct sandbox_record_pair q[] = {{"patient", "p1"}};
    static const struct sandbox_record_pair h[] = {{"content-type", "application/json"},
                                                   {"webhook-id", "msg_1"}};
    json_t *doc, *stats, *first;
    json_error_t jerr;
    size_t len;
    char *out;

    for (int i = 0; i < 5; i++) {
        struct sandbox_record_in in = {i % 2 ? SANDBOX_TARGET_FHIR : SANDBOX_TARGET_WEBHOOK,
                                       "POST",
                                       i % 2 ? "/fhir/Communication" : "/webhook",
                                       q,
                                       i == 4 ? 0 : 1,
                                       h,
                                       2,
                                       "{\"x\":1}",
                                       7,
                                       i % 2 ? 201 : 200,
                                       -1,
                                       0};
        CHECK_INT(sandbox_recorder_add(r, &in), i + 1);
    }
    /* Only the last three are kept, the counters count all five. */
    out = sandbox_recorder_query(r, &all, &len);
    doc = json_loadb(out, len, 0, &jerr);
    CHECK(doc != NULL);
    CHECK_INT(json_array_size(json_object_get(doc, "requests")), 3);
    CHECK_INT(json_integer_value(
                  json_object_get(json_array_get(json_object_get(doc, "requests"), 0), "seq")),
              3);
    CHECK_STR(json_string_value(
                  json_object_get(json_array_get(json_object_get(doc, "requests"), 0), "body")),
              "{\"x\":1}");
    CHECK(json_is_null(
        json_object_get(json_array_get(json_object_get(doc, "requests"), 0), "signature_valid")));
    /* Headers and query parameters come back as objects, in the order given. */
    first = json_array_get(json_object_get(doc, "requests"), 0);
    CHECK_STR(json_string_value(json_object_get(json_object_get(first, "query"), "patient")), "p1");
    CHECK_STR(json_string_value(json_object_get(json_object_get(first, "headers"), "webhook-id")),
              "msg_1");
    CHECK_STR(json_string_value(json_object_get(first, "path")), "/webhook");
    CHECK_STR(json_string_value(json_object_get(first, "method")), "POST");
    CHECK_INT(json_integer_value(json_object_get(first, "status")), 200);
    CHECK(json_object_size(
              json_object_get(json_array_get(json_object_get(doc, "requests"), 2), "query")) == 0);
    json_decref(doc);
    /* A second query answers the same text (entries are serialised once, then reused). */
    {
        size_t len2;
        char *again = sandbox_recorder_query(r, &all, &len2);
        CHECK(len2 == len && memcmp(again, out, len) == 0);
        free(again);
    }
    free(out);
    out = sandbox_recorder_query(r, &fhir, &len);
    doc = json_loadb(out, len, 0, &jerr);
    CHECK_INT(json_array_size(json_object_get(doc, "requests")), 1);
    json_decref(doc);
    free(out);
    stats = sandbox_recorder_stats(r);
    CHECK_INT(json_integer_value(json_object_get(stats, "requests_total")), 5);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(stats, "by_target"), "fhir")), 2);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(stats, "by_status"), "200")), 3);
    json_decref(stats);
    sandbox_recorder_clear(r);
    out = sandbox_recorder_query(r, &all, &len);
    CHECK_STR(out, "{\"requests\":[]}");
    free(out);
    /* Bytes that are not UTF-8 (and a NUL) in a body or a header come back as U+FFFD when the
     * entry is serialised: the answer stays valid JSON. */
    {
        static const struct sandbox_record_pair bad_h[] = {{"user-agent", "x\xc3"}};
        struct sandbox_record_in in = {SANDBOX_TARGET_WEBHOOK,
                                       "POST",
                                       "/webhook",
                                       NULL,
                                       0,
                                       bad_h,
                                       1,
                                       "a\xff\0b",
                                       4,
                                       200,
                                       1,
                                       0};
        sandbox_recorder_add(r, &in);
        out = sandbox_recorder_query(r, &all, &len);
        doc = json_loadb(out, len, 0, &jerr);
        CHECK(doc != NULL);
        first = json_array_get(json_object_get(doc, "requests"), 0);
        CHECK_STR(json_string_value(json_object_get(first, "body")), "a\xef\xbf\xbd\xef\xbf\xbd"
                                                                     "b");
        CHECK_STR(
            json_string_value(json_object_get(json_object_get(first, "headers"), "user-agent")),
            "x\xef\xbf\xbd");
        CHECK(json_is_true(json_object_get(first, "signature_valid")));
        json_decref(doc);
        free(out);
    }
    sandbox_recorder_free(r);
}

static void test_tokens(void)
{
    struct sandbox_tokens *t = sandbox_tokens_new();
    time_t now = time(NULL);
    char a[64], b[64];
    long issued, expired;

    sandbox_tokens_issue(t, 10, now, a, sizeof(a));
    sandbox_tokens_issue(t, 10, now, b, sizeof(b));
    CHECK_INT(strlen(a), 30);
    CHECK(strcmp(a, b) != 0);
    CHECK(sandbox_tokens_valid(t, a, now + 5));
    CHECK(!sandbox_tokens_valid(t, a, now + 10)); /* expired by TTL */
    CHECK(!sandbox_tokens_valid(t, "nope", now));
    /* The control API's expiry invalidates every token issued so far. */
    CHECK_INT(sandbox_tokens_expire_all(t), 2);
    CHECK(!sandbox_tokens_valid(t, b, now));
    sandbox_tokens_counts(t, &issued, &expired);
    CHECK_INT(issued, 2);
    CHECK_INT(expired, 2);

    /* Past the pruning threshold live tokens stay valid and expired ones stay invalid, however
     * many are issued (a token per call, as Canvas's guide protocol does). */
    {
        char first_short[64], first_long[64], tok[64];
        sandbox_tokens_issue(t, 1, now, first_short, sizeof(first_short));
        sandbox_tokens_issue(t, 36000, now, first_long, sizeof(first_long));
        for (int i = 0; i < 20000; i++)
            sandbox_tokens_issue(t, i % 2 ? 1 : 36000, now + 2 + i / 1000, tok, sizeof(tok));
        CHECK(sandbox_tokens_valid(t, first_long, now + 30));
        CHECK(!sandbox_tokens_valid(t, first_short, now + 30));
        CHECK(sandbox_tokens_valid(t, tok, now + 21)); /* the last: 1 s from now + 21 */
        sandbox_tokens_counts(t, &issued, &expired);
        CHECK_INT(issued, 20004);
    }
    sandbox_tokens_free(t);
}

static void test_util(void)
{
    char buf[64] = "";
    json_t *s;

    CHECK_INT(sandbox_query_append(buf, sizeof(buf), "email", "staff@clinic.example"), 0);
    CHECK_INT(sandbox_query_append(buf, sizeof(buf), "_id", "a,b"), 0);
    CHECK_STR(buf, "email=staff%40clinic.example&_id=a%2Cb");
    s = sandbox_json_string_lossy("a\xff"
                                  "b",
                                  3);
    CHECK_STR(json_string_value(s), "a\xef\xbf\xbd"
                                    "b");
    json_decref(s);
}

int main(void)
{
    test_e164_and_twilio();
    test_sendgrid();
    test_form();
    test_faults();
    test_recorder();
    test_tokens();
    test_util();
    return UNIT_DONE();
}
