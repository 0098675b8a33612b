/* pm-deliver staff messages end to end: skips, channels, retries, DLQ, token, metrics, logs. */
#include "deliver_it.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 30000

/* Fixture Communications (tools/sandbox/README.md). */
#define COMM_HTML      "8f2b1c7e-5d4a-4b3e-9c1f-2a6d7e8f9a0b" /* Morgan -> Pat, HTML */
#define COMM_DRAFT     "1c0d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
#define COMM_SCHEDULED "2e4f6a8c-0b1d-4e3f-a5b7-c9d1e3f5a7b9"
#define COMM_FROM_PAT  "6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e" /* Pat -> Morgan */
#define COMM_TO_LEE    "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d" /* Riley -> Lee, plain text */
#define TEXT_TO_LEE    "Reminder: your appointment is tomorrow at 9:00."
#define HTML_PAT       "<p>Your lab results are in &amp; look good.</p><p>See you&nbsp;soon</p>"
#define TEXT_PAT       "Your lab results are in & look good.\nSee you soon"

/* Seeded (invented): a patient whose phone Canvas shows with punctuation, and messages. */
#define QUINN     "d1a2b3c4d5e64f708192a3b4c5d6e7f8"
#define C_JORDAN  "d2000000-0000-4000-8000-000000000001"
#define C_QUINN   "d2000000-0000-4000-8000-000000000002"
#define C_RETRY   "d2000000-0000-4000-8000-000000000003"
#define C_422     "d2000000-0000-4000-8000-000000000004"
#define C_EXHAUST "d2000000-0000-4000-8000-000000000005"
#define C_AFTER   "d2000000-0000-4000-8000-000000000006"
#define C_TOKEN   "d2000000-0000-4000-8000-000000000007"
#define C_EMBED   "d2000000-0000-4000-8000-000000000008" /* never stored: only embedded */
#define C_UNKNOWN "d2000000-0000-4000-8000-0000000000ff" /* never stored: 404 */
#define T_JORDAN  "Your referral to cardiology was sent today."
#define T_QUINN   "Please call the office about your refill."
#define T_RETRY   "Your prescription is ready for pickup."
#define T_422     "Your flu shot is due next month."
#define T_EXHAUST "Bring your insurance card on Friday."
#define T_AFTER   "Your x-ray images were received."
#define T_TOKEN   "The clinic is closed on Monday."
#define T_EMBED   "Your test kit ships tomorrow."
#define C_OTHER   "d2000000-0000-4000-8000-000000000009" /* embedded: the two-instance test */
#define T_OTHER   "Your follow-up visit is confirmed."

/* Secrets given to --check-config runs: never printed. */
#define CC_CLIENT_SECRET "cc-secret-4f1e9a"
#define CC_TWILIO_TOKEN  "tw-secret-8c2d7b"
#define CC_SENDGRID_KEY  "SG.secret-5a3e0f"

static struct harness *h;
static char base[128]; /* pm-deliver's HTTP address */

/* Counts of events per metrics outcome, kept as the test goes. */
static int n_delivered, n_skipped, n_dead;

/* ---- helpers ---- */

static json_t *comm_json(const char *id, const char *sender, const char *recipient,
                         const char *status, const char *text)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:[{s:s}], s:{s:s}, s:[{s:s}]}", "resourceType",
                     "Communication", "id", id, "status", status, "sent",
                     "2026-03-02T16:00:00.000000+00:00", "recipient", "reference", recipient,
                     "sender", "reference", sender, "payload", "contentString", text);
}

static void seed(void)
{
    json_t *all = json_array();
    char *text;
    json_array_append_new(
        all, json_loads("{\"resourceType\": \"Patient\", \"id\": \"" QUINN "\", \"active\": true,"
                        " \"name\": [{\"use\": \"official\", \"family\": \"Paren\","
                        "   \"given\": [\"Quinn\"]}],"
                        " \"telecom\": ["
                        "  {\"extension\": [{\"url\": \"http://schemas.canvasmedical.com/fhir/"
                        "extensions/has-consent\", \"valueBoolean\": true}],"
                        "   \"system\": \"phone\", \"value\": \"(555) 123-4567\","
                        "   \"use\": \"mobile\", \"rank\": 1},"
                        "  {\"extension\": [{\"url\": \"http://schemas.canvasmedical.com/fhir/"
                        "extensions/has-consent\", \"valueBoolean\": true}],"
                        "   \"system\": \"email\", \"value\": \"quinn.paren@example.net\","
                        "   \"use\": \"home\", \"rank\": 1}]}",
                        0, NULL));
#define STAFF(to, id, text)                                                                        \
    json_array_append_new(                                                                         \
        all, comm_json(id, "Practitioner/" DIT_MORGAN, "Patient/" to, "completed", text))
    STAFF(DIT_JORDAN, C_JORDAN, T_JORDAN);
    STAFF(QUINN, C_QUINN, T_QUINN);
    STAFF(QUINN, C_RETRY, T_RETRY);
    STAFF(QUINN, C_422, T_422);
    STAFF(QUINN, C_EXHAUST, T_EXHAUST);
    STAFF(DIT_LEE, C_AFTER, T_AFTER);
    STAFF(DIT_LEE, C_TOKEN, T_TOKEN);
#undef STAFF
    text = json_dumps(all, JSON_COMPACT);
    H_CHECK(h, json_array_size(all) == 8 && text != NULL);
    dit_sb_ok("POST", "/_sandbox/resources", text);
    free(text);
    json_decref(all);
}

/* Waits for the 3 results (one per channel) of event @p id. @returns its list (new ref). */
static json_t *results_of(const char *id)
{
    const char *ids[] = {id};
    json_t *map = dit_wait_results(ids, 1, 3, WAIT_MS);
    json_t *list = json_incref(json_object_get(map, id));
    json_decref(map);
    H_CHECKF(h, json_array_size(list) == 3, "%s has %zu results, expected one per channel", id,
             json_array_size(list));
    return list ? list : json_array();
}

static size_t count(const char *query, long long since)
{
    json_t *r = dit_sb_requests(query, since);
    size_t n = json_array_size(r);
    json_decref(r);
    return n;
}

/* No webhook, Twilio or SendGrid request since @p mark. */
static void expect_nothing_sent(long long mark, const char *what)
{
    H_CHECKF(h, count("target=webhook", mark) == 0, "%s: a webhook request was sent", what);
    H_CHECKF(h, count("target=twilio", mark) == 0, "%s: an SMS was sent", what);
    H_CHECKF(h, count("target=sendgrid", mark) == 0, "%s: an email was sent", what);
}

/* The one webhook request for @p comm since @p mark, answered @p status. @returns its body. */
static json_t *one_webhook(const char *comm, long long mark, long status)
{
    json_t *reqs = dit_webhooks_for(comm, mark), *req = json_array_get(reqs, 0), *body;
    H_CHECKF(h, json_array_size(reqs) == 1, "%zu webhook requests for %s, expected 1",
             json_array_size(reqs), comm);
    H_CHECK_INT(h, json_integer_value(json_object_get(req, "status")), status);
    if (status == 200)
        H_CHECK(h, json_is_true(json_object_get(req, "signature_valid")));
    body = dit_req_body(req);
    json_decref(reqs);
    return body ? body : json_object();
}

/* The Twilio requests with @p text since @p mark: @p n of them, to the numbers in @p to. */
static void expect_sms(const char *text, long long mark, const char *const *to, size_t n)
{
    json_t *reqs = dit_twilio_for(text, mark), *r;
    size_t i;
    int seen[8] = {0};

    H_CHECKF(h, json_array_size(reqs) == n, "%zu SMS with \"%s\", expected %zu",
             json_array_size(reqs), text, n);
    json_array_foreach(reqs, i, r)
    {
        const char *form = json_string_value(json_object_get(r, "body"));
        char *got_to = dit_form_value(form, "To"), *from = dit_form_value(form, "From");
        int found = 0;
        H_CHECK_INT(h, json_integer_value(json_object_get(r, "status")), 201);
        H_CHECK_STR(h, from, DIT_TWILIO_FROM);
        H_CHECK_STR(h, json_string_value(json_object_get(r, "path")),
                    "/twilio/2010-04-01/Accounts/" DIT_TWILIO_SID "/Messages.json");
        for (size_t k = 0; k < n && k < 8; k++) {
            if (got_to && !strcmp(got_to, to[k]) && !seen[k]) {
                seen[k] = found = 1;
                break;
            }
        }
        H_CHECKF(h, found, "SMS with \"%s\" to unexpected number %s", text,
                 got_to ? got_to : "(none)");
        free(got_to);
        free(from);
    }
    json_decref(reqs);
}

/* The SendGrid requests with text/plain @p text since @p mark: @p n, to the addresses in @p to,
 * each with text/plain @p text and text/html @p html. */
static void expect_email(const char *text, const char *html, long long mark, const char *const *to,
                         size_t n)
{
    json_t *reqs = dit_sendgrid_for(text, mark), *r;
    size_t i;
    int seen[8] = {0};

    H_CHECKF(h, json_array_size(reqs) == n, "%zu emails with \"%s\", expected %zu",
             json_array_size(reqs), text, n);
    json_array_foreach(reqs, i, r)
    {
        json_t *b = dit_req_body(r);
        json_t *pers = json_object_get(b, "personalizations");
        json_t *tos = json_object_get(json_array_get(pers, 0), "to");
        json_t *content = json_object_get(b, "content");
        const char *got_to = json_string_value(json_object_get(json_array_get(tos, 0), "email"));
        int found = 0;

        H_CHECK_INT(h, json_integer_value(json_object_get(r, "status")), 202);
        H_CHECK_INT(h, json_array_size(pers), 1);
        H_CHECK_INT(h, json_array_size(tos), 1);
        H_CHECK_STR(h, json_string_value(json_object_get(json_object_get(b, "from"), "email")),
                    DIT_SG_FROM);
        H_CHECK_STR(h, json_string_value(json_object_get(b, "subject")), DIT_SUBJECT);
        H_CHECK_INT(h, json_array_size(content), 2);
        H_CHECK_STR(h, json_string_value(json_object_get(json_array_get(content, 0), "type")),
                    "text/plain");
        H_CHECK_STR(h, json_string_value(json_object_get(json_array_get(content, 0), "value")),
                    text);
        H_CHECK_STR(h, json_string_value(json_object_get(json_array_get(content, 1), "type")),
                    "text/html");
        if (html)
            H_CHECK_STR(h, json_string_value(json_object_get(json_array_get(content, 1), "value")),
                        html);
        for (size_t k = 0; k < n && k < 8; k++) {
            if (got_to && !strcmp(got_to, to[k]) && !seen[k]) {
                seen[k] = found = 1;
                break;
            }
        }
        H_CHECKF(h, found, "email with \"%s\" to unexpected address %s", text,
                 got_to ? got_to : "(none)");
        json_decref(b);
    }
    json_decref(reqs);
}

static int all_of(const char *s, const char *set, size_t len)
{
    if (!s || strlen(s) != len)
        return 0;
    return strspn(s, set) == len;
}

/* ---- 1. skip rules ---- */

static void test_skips(void)
{
    static const struct {
        const char *event, *comm, *reason;
    } cases[] = {
        {"dm-skip-draft", COMM_DRAFT, "draft"},
        {"dm-skip-scheduled", COMM_SCHEDULED, "scheduled"},
        {"dm-skip-from-patient", COMM_FROM_PAT, "sender is not a practitioner"},
        /* Riley -> Lee arriving as an event about Pat: Pat is not its recipient. */
        {"dm-skip-other-patient", COMM_TO_LEE, "recipient is not the patient"},
    };
    long long mark = dit_sb_mark();
    const char *ids[4];

    for (size_t i = 0; i < 4; i++) {
        dit_message(cases[i].event, DIT_PAT, cases[i].comm, NULL);
        ids[i] = cases[i].event;
    }
    json_decref(dit_wait_results(ids, 4, 3, WAIT_MS));
    for (size_t i = 0; i < 4; i++) {
        json_t *list = results_of(cases[i].event);
        dit_check_result(list, "webhook", "skipped", cases[i].reason, 1, cases[i].event);
        dit_check_result(list, "sms", "skipped", cases[i].reason, 1, cases[i].event);
        dit_check_result(list, "email", "skipped", cases[i].reason, 1, cases[i].event);
        json_decref(list);
        n_skipped++;
    }
    expect_nothing_sent(mark, "skipped messages");
}

/* ---- 2. the HTML fixture on every channel ---- */

/* @returns pm-deliver's pm_deliver_repeat_guard_entries{guard="messages"}, or -1. */
static long long guard_entries(void)
{
    static const char series[] = "pm_deliver_repeat_guard_entries{guard=\"messages\"} ";
    struct harness_http_response r = {0};
    char url[200];
    const char *at;
    long long v = -1;

    snprintf(url, sizeof(url), "%s/metrics", base);
    if (harness_http("GET", url, NULL, NULL, 0, 5000, &r) == 0 && r.status == 200 && r.body &&
        (at = strstr(r.body, series)) != NULL)
        v = strtoll(at + strlen(series), NULL, 10);
    harness_http_response_free(&r);
    return v;
}

static void test_html_message(void)
{
    static const char *const phones[] = {"+15554320555", "+15554320999"}; /* Pat, Dana (ARI) */
    static const char *const emails[] = {"pat.example@example.com", "dana@example.com"};
    long long mark = dit_sb_mark(), guarded = guard_entries();
    json_t *list, *body, *want, *r;
    const char *pid;

    dit_message("dm-html", DIT_PAT, COMM_HTML, NULL);
    list = results_of("dm-html");
    n_delivered++;
    /* Each delivered channel is remembered (before its result is published). */
    H_CHECK(h, guarded >= 0);
    H_CHECK_INT(h, guard_entries(), guarded + 3);
    dit_check_result(list, "webhook", "delivered", "", 1, "dm-html");
    dit_check_result(list, "sms", "delivered", "", 1, "dm-html");
    dit_check_result(list, "email", "delivered", "", 1, "dm-html");
    r = dit_result(list, "sms");
    pid = json_string_value(json_object_get(r, "provider_id"));
    H_CHECKF(h, pid && !strncmp(pid, "SM", 2) && all_of(pid + 2, "0123456789abcdef", 32),
             "sms provider_id %s is not a Twilio message sid", pid ? pid : "(none)");
    r = dit_result(list, "email");
    pid = json_string_value(json_object_get(r, "provider_id"));
    H_CHECKF(h, all_of(pid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 22),
             "email provider_id %s is not SendGrid's X-Message-Id", pid ? pid : "(none)");
    json_decref(list);

    /* The webhook: signed, webhook-id = the Communication id, exactly this body. Only the ARI
     * contact is listed (not the EMC or POA ones), with the numbers Twilio gets. */
    {
        json_t *reqs = dit_webhooks_for(COMM_HTML, mark);
        json_t *req = json_array_get(reqs, 0);
        H_CHECK_INT(h, json_array_size(reqs), 1);
        H_CHECK_INT(h, count("target=webhook", mark), 1);
        H_CHECK_STR(h, json_string_value(json_object_get(req, "path")), "/webhook");
        H_CHECK_STR(h, dit_req_header(req, "content-type"), "application/json");
        H_CHECK(h, dit_req_header(req, "webhook-timestamp") != NULL);
        json_decref(reqs);
    }
    body = one_webhook(COMM_HTML, mark, 200);
    want = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[{s:s, s:s, s:s, s:s}]}", "type",
                     "patient.message.v1", "communication_id", COMM_HTML, "patient_id", DIT_PAT,
                     "practitioner_id", DIT_MORGAN, "sent", "2026-03-02T15:04:05.123456+00:00",
                     "text", TEXT_PAT, "html", HTML_PAT, "contacts", "name", "Dana Example",
                     "relationship", "ARI", "phone", "+15554320999", "email", "dana@example.com");
    if (!H_CHECK(h, json_equal(body, want))) {
        char *got = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
        fprintf(stderr, "webhook body: %s\n", got ? got : "(none)");
        free(got);
    }
    json_decref(want);
    json_decref(body);

    /* SMS to the consented mobile (not the unconsented home phone) and the ARI contact. */
    expect_sms(TEXT_PAT, mark, phones, 2);
    H_CHECK_INT(h, count("target=twilio", mark), 2);
    /* Email to the consented address (not the unconsented one) and the ARI contact. */
    expect_email(TEXT_PAT, HTML_PAT, mark, emails, 2);
    H_CHECK_INT(h, count("target=sendgrid", mark), 2);
}

/* ---- 4. a Communication already delivered is not delivered again ---- */

static void test_repeat(void)
{
    long long mark = dit_sb_mark(), guarded = guard_entries();
    json_t *list;

    dit_message("dm-html-again", DIT_PAT, COMM_HTML, NULL);
    list = results_of("dm-html-again");
    n_skipped++;
    H_CHECK_INT(h, guard_entries(), guarded); /* a skip remembers nothing new */
    dit_check_result(list, "webhook", "skipped", "already delivered", 1, "dm-html-again");
    dit_check_result(list, "sms", "skipped", "already delivered", 1, "dm-html-again");
    dit_check_result(list, "email", "skipped", "already delivered", 1, "dm-html-again");
    json_decref(list);
    expect_nothing_sent(mark, "a repeated notification");
}

/* ---- 4b. ... nor after a restart: pm-deliver reads what it delivered back from Kafka ---- */

/* @returns the "count" of the "earlier deliveries read back" line of @p p's log,
 * or -1 when there is none. */
static long history_count(struct harness_proc *p)
{
    char *log = harness_proc_stderr(p);
    const char *at = log ? strstr(log, "earlier deliveries read back") : NULL;
    const char *n = at ? strstr(at, "\"count\":") : NULL;
    long v = n ? strtol(n + strlen("\"count\":"), NULL, 10) : -1;
    free(log);
    return v;
}

static void test_repeat_after_restart(struct harness_proc **deliver, const char *const *env,
                                      const char *const *sensitive)
{
    const char *off_env[] = {env[0], env[1], env[2], "PM_DELIVER_HISTORY_HOURS=0", NULL};
    long long mark;
    json_t *list;

    /* A new process knows nothing in memory: what it skips, it learnt from pm.deliveries. */
    H_CHECK_INT(h, harness_proc_stop(*deliver, 20000), 0);
    dit_check_log_clean(*deliver, sensitive);
    *deliver = dit_deliver_start("deliver-restarted", env, base, sizeof(base), 30000);
    if (!*deliver)
        return;
    /* Every channel of every message delivered so far, at least the three of COMM_HTML. */
    H_CHECKF(h, history_count(*deliver) >= 3, "the restarted pm-deliver read back %ld results",
             history_count(*deliver));
    mark = dit_sb_mark();
    dit_message("dm-html-restart", DIT_PAT, COMM_HTML, NULL);
    list = results_of("dm-html-restart");
    dit_check_result(list, "webhook", "skipped", "already delivered", 1, "dm-html-restart");
    dit_check_result(list, "sms", "skipped", "already delivered", 1, "dm-html-restart");
    dit_check_result(list, "email", "skipped", "already delivered", 1, "dm-html-restart");
    json_decref(list);
    expect_nothing_sent(mark, "a notification after a restart");

    /* With the read-back switched off the same notification is delivered again: the skip
     * above came from the results topic, not from anything else. */
    H_CHECK_INT(h, harness_proc_stop(*deliver, 20000), 0);
    dit_check_log_clean(*deliver, sensitive);
    *deliver = dit_deliver_start("deliver-no-history", off_env, base, sizeof(base), 30000);
    if (!*deliver)
        return;
    H_CHECK_INT(h, history_count(*deliver), -1);
    mark = dit_sb_mark();
    dit_message("dm-html-forgotten", DIT_PAT, COMM_HTML, NULL);
    list = results_of("dm-html-forgotten");
    dit_check_result(list, "webhook", "delivered", NULL, 1, "dm-html-forgotten");
    json_decref(list);
    H_CHECK_INT(h, count("target=webhook", mark), 1);
}

/* ---- 4c. ... nor by another instance that takes the patient's partition over ---- */

static int logged_event(struct harness_proc *p, const char *event_id)
{
    char *log = harness_proc_stderr(p), needle[160];
    int found;

    snprintf(needle, sizeof(needle), "\"msg\":\"message delivered\",\"event_id\":\"%s\"", event_id);
    found = log && strstr(log, needle) != NULL;
    free(log);
    return found;
}

/* A notification for C_OTHER (Riley to Lee, embedded) under event id @p event_id. */
static void message_other(const char *event_id)
{
    dit_message(
        event_id, DIT_LEE, C_OTHER,
        comm_json(C_OTHER, "Practitioner/" DIT_RILEY, "Patient/" DIT_LEE, "completed", T_OTHER));
}

/* @p list holds two results for @p channel, both "delivered" with the same provider_id. */
static void check_same_fact(json_t *list, const char *channel, const char *what)
{
    json_t *r, *seen[2] = {NULL, NULL};
    size_t i, n = 0;

    json_array_foreach(list, i, r)
    {
        const char *ch = json_string_value(json_object_get(r, "channel"));
        if (ch && strcmp(ch, channel) == 0 && n < 2)
            seen[n++] = r;
    }
    if (!H_CHECKF(h, n == 2, "%s: %zu %s results, expected 2", what, n, channel))
        return;
    for (i = 0; i < 2; i++)
        H_CHECK_STR(h, json_string_value(json_object_get(seen[i], "outcome")), "delivered");
    /* Absent (the webhook has none) on both, or the same. */
    H_CHECKF(h,
             json_object_get(seen[0], "provider_id") == json_object_get(seen[1], "provider_id") ||
                 json_equal(json_object_get(seen[0], "provider_id"),
                            json_object_get(seen[1], "provider_id")),
             "%s: the %s results name different provider ids", what, channel);
}

/* Two instances in the group. The one that owns Lee's partition delivers a message and is
 * stopped; the other takes the partition over and gets a repeat notification. It started before
 * the delivery, so only following pm.deliveries (not the read-back at start) can tell it. */
static void test_repeat_other_instance(struct harness_proc **deliver, const char *const *env,
                                       const char *const *sensitive)
{
    char base2[128];
    struct harness_proc *second, *owner, *other;
    long long mark;
    json_t *list;

    second = dit_deliver_start("deliver-second", env, base2, sizeof(base2), 30000);
    if (!second)
        return;
    /* Both are members now: the second one's /readyz answered once it had joined. */
    message_other("dm-other-1");
    list = results_of("dm-other-1");
    dit_check_result(list, "webhook", "delivered", "", 1, "dm-other-1");
    dit_check_result(list, "sms", "delivered", "", 1, "dm-other-1");
    json_decref(list);
    owner = logged_event(second, "dm-other-1") ? second : *deliver;
    other = owner == second ? *deliver : second;
    H_CHECKF(h, logged_event(owner, "dm-other-1") && !logged_event(other, "dm-other-1"),
             "exactly one instance delivered dm-other-1");

    H_CHECK_INT(h, harness_proc_stop(owner, 20000), 0);
    dit_check_log_clean(owner, sensitive);
    *deliver = other;
    if (other == second)
        snprintf(base, sizeof(base), "%s", base2);
    mark = dit_sb_mark();
    message_other("dm-other-2");
    list = results_of("dm-other-2");
    dit_check_result(list, "webhook", "skipped", "already delivered", 1, "dm-other-2");
    dit_check_result(list, "sms", "skipped", "already delivered", 1, "dm-other-2");
    json_decref(list);
    expect_nothing_sent(mark, "a notification handled by the instance that took over");
    H_CHECKF(h, logged_event(other, "dm-other-2") == 0 && !logged_event(other, "dm-other-1"),
             "the instance that took over delivered nothing");

    /* The first event itself again (as after a rebalance, or redriven): the same fact under the
     * same result id, "delivered" with the same provider_id, and still nothing sent. */
    mark = dit_sb_mark();
    message_other("dm-other-1");
    {
        const char *ids[] = {"dm-other-1"};
        json_t *map = dit_wait_results(ids, 1, 6, WAIT_MS);
        json_t *all = json_object_get(map, "dm-other-1");
        check_same_fact(all, "webhook", "dm-other-1 handled again");
        check_same_fact(all, "sms", "dm-other-1 handled again");
        json_decref(map);
    }
    expect_nothing_sent(mark, "the same event handled again");
}

/* ---- 3. an embedded Communication is not read from Canvas ---- */

static void test_embedded(void)
{
    static const char *const lee[] = {"+15554321234"};
    long long mark = dit_sb_mark();
    json_t *list, *body;

    dit_message(
        "dm-embedded", DIT_LEE, C_EMBED,
        comm_json(C_EMBED, "Practitioner/" DIT_RILEY, "Patient/" DIT_LEE, "completed", T_EMBED));
    list = results_of("dm-embedded");
    n_delivered++;
    dit_check_result(list, "webhook", "delivered", "", 1, "dm-embedded");
    dit_check_result(list, "sms", "delivered", "", 1, "dm-embedded");
    dit_check_result(list, "email", "skipped", "no consented email address", 1, "dm-embedded");
    json_decref(list);
    H_CHECKF(h, count("target=fhir&path_prefix=/fhir/Communication", mark) == 0,
             "an embedded Communication was read from Canvas");
    body = one_webhook(C_EMBED, mark, 200);
    H_CHECK_STR(h, json_string_value(json_object_get(body, "text")), T_EMBED);
    H_CHECK_STR(h, json_string_value(json_object_get(body, "practitioner_id")), DIT_RILEY);
    H_CHECK(h, json_object_get(body, "html") == NULL); /* plain content: no html member */
    H_CHECK_INT(h, json_array_size(json_object_get(body, "contacts")), 0);
    json_decref(body);
    expect_sms(T_EMBED, mark, lee, 1);
    H_CHECK_INT(h, count("target=sendgrid", mark), 0);
}

/* ---- 5. consent ---- */

static void test_consent(void)
{
    long long mark = dit_sb_mark();
    json_t *list, *body;

    dit_message("dm-consent", DIT_JORDAN, C_JORDAN, NULL);
    list = results_of("dm-consent");
    n_delivered++;
    dit_check_result(list, "webhook", "delivered", "", 1, "dm-consent");
    dit_check_result(list, "sms", "skipped", "no consented phone number", 1, "dm-consent");
    dit_check_result(list, "email", "skipped", "no consented email address", 1, "dm-consent");
    json_decref(list);
    body = one_webhook(C_JORDAN, mark, 200);
    H_CHECK_STR(h, json_string_value(json_object_get(body, "text")), T_JORDAN);
    json_decref(body);
    H_CHECK_INT(h, count("target=twilio", mark), 0);
    H_CHECK_INT(h, count("target=sendgrid", mark), 0);
}

/* ---- 6. phone numbers as Canvas stores them become E.164 ---- */

static void test_phones(void)
{
    static const char *const quinn[] = {"+15551234567"}, *const lee[] = {"+15554321234"};
    static const char *const quinn_mail[] = {"quinn.paren@example.net"};
    const char *ids[] = {"dm-phone-punctuated", "dm-phone-10-digits"};
    long long mark = dit_sb_mark();
    json_t *list;

    dit_message(ids[0], QUINN, C_QUINN, NULL);
    dit_message(ids[1], DIT_LEE, COMM_TO_LEE, NULL);
    json_decref(dit_wait_results(ids, 2, 3, WAIT_MS));
    list = results_of(ids[0]);
    dit_check_result(list, "webhook", "delivered", "", 1, ids[0]);
    dit_check_result(list, "sms", "delivered", "", 1, ids[0]);
    dit_check_result(list, "email", "delivered", "", 1, ids[0]);
    json_decref(list);
    list = results_of(ids[1]);
    dit_check_result(list, "webhook", "delivered", "", 1, ids[1]);
    dit_check_result(list, "sms", "delivered", "", 1, ids[1]);
    dit_check_result(list, "email", "skipped", "no consented email address", 1, ids[1]);
    json_decref(list);
    n_delivered += 2;
    expect_sms(T_QUINN, mark, quinn, 1);   /* "(555) 123-4567" */
    expect_sms(TEXT_TO_LEE, mark, lee, 1); /* "5554321234" */
    expect_email(T_QUINN, NULL, mark, quinn_mail, 1);
    H_CHECK_INT(h, count("target=twilio", mark), 2);
}

/* ---- 7. 503 with Retry-After: only the webhook is retried, after the server's delay ---- */

static void test_retry_after(void)
{
    static const char *const quinn[] = {"+15551234567"};
    static const char *const quinn_mail[] = {"quinn.paren@example.net"};
    long long mark = dit_sb_mark();
    json_t *list, *reqs, *b0, *b1;

    dit_sb_ok("POST", "/_sandbox/faults",
              "{\"target\": \"webhook\", \"status\": 503, \"retry_after\": \"1\", \"count\": 1}");
    dit_message("dm-retry-after", QUINN, C_RETRY, NULL);
    list = results_of("dm-retry-after");
    n_delivered++;
    dit_check_result(list, "webhook", "delivered", "", 2, "dm-retry-after");
    dit_check_result(list, "sms", "delivered", "", 1, "dm-retry-after");
    dit_check_result(list, "email", "delivered", "", 1, "dm-retry-after");
    json_decref(list);

    reqs = dit_webhooks_for(C_RETRY, mark);
    if (H_CHECKF(h, json_array_size(reqs) == 2, "%zu webhook requests, expected 503 then 200",
                 json_array_size(reqs))) {
        json_t *first = json_array_get(reqs, 0), *second = json_array_get(reqs, 1);
        long long gap = dit_req_ms(second) - dit_req_ms(first);
        H_CHECK_INT(h, json_integer_value(json_object_get(first, "status")), 503);
        H_CHECK(h, json_is_integer(json_object_get(first, "fault")));
        H_CHECK_INT(h, json_integer_value(json_object_get(second, "status")), 200);
        H_CHECK(h, json_is_true(json_object_get(second, "signature_valid")));
        /* Retry-After: 1 beats the 50..500 ms backoff (timestamps have ms resolution). */
        H_CHECKF(h, gap >= 990 && gap < 5000, "retried after %lld ms, Retry-After said 1 s", gap);
        /* The same message both times: the receiver can drop a repeat by webhook-id. */
        b0 = dit_req_body(first);
        b1 = dit_req_body(second);
        H_CHECK(h, b0 && b1 && json_equal(b0, b1));
        json_decref(b0);
        json_decref(b1);
    }
    json_decref(reqs);
    /* Each channel succeeds at most once: the retry does not text or email again. */
    expect_sms(T_RETRY, mark, quinn, 1);
    expect_email(T_RETRY, NULL, mark, quinn_mail, 1);
}

/* ---- 9. permanent failures: Canvas 404, webhook 422 ---- */

static void check_dlq_headers(const struct harness_kafka_record *rec, const char *error_class,
                              int32_t partition, int64_t offset, const char *attempts)
{
    char num[32];
    H_CHECK_STR(h, harness_kafka_header(rec, "pm-error-class"), error_class);
    H_CHECK_STR(h, harness_kafka_header(rec, "pm-source-topic"), DIT_T_MESSAGES);
    snprintf(num, sizeof(num), "%" PRId32, partition);
    H_CHECK_STR(h, harness_kafka_header(rec, "pm-source-partition"), num);
    snprintf(num, sizeof(num), "%" PRId64, offset);
    H_CHECK_STR(h, harness_kafka_header(rec, "pm-source-offset"), num);
    if (attempts)
        H_CHECK_STR(h, harness_kafka_header(rec, "pm-attempts"), attempts);
    H_CHECK_STR(h, harness_kafka_header(rec, "content-type"),
                "application/cloudevents+json; charset=utf-8");
}

static void test_not_found(void)
{
    struct harness_kafka_records dlq = {0};
    const struct harness_kafka_record *rec;
    char *value = dit_event_value("dm-404", DIT_PAT, C_UNKNOWN, NULL);
    int32_t part;
    int64_t off;
    long long mark = dit_sb_mark();
    json_t *list, *r;
    size_t i;

    dit_produce_raw(DIT_PAT, value, &part, &off);
    n_dead++;
    if (dit_wait_dlq("\"dm-404\"", &dlq, &rec, WAIT_MS) == 0) {
        const char *err = harness_kafka_header(rec, "pm-error");
        H_CHECK_STR(h, rec->value, value); /* unchanged */
        H_CHECK_STR(h, rec->key, DIT_PAT);
        check_dlq_headers(rec, "permanent", part, off, "1");
        H_CHECKF(h, err && strstr(err, "404") && strstr(err, "Communication"),
                 "pm-error \"%s\" does not say the Communication was not found (404)",
                 err ? err : "(none)");
    }
    harness_kafka_records_free(&dlq);
    list = results_of("dm-404");
    dit_check_result(list, "webhook", "failed", NULL, 1, "dm-404");
    dit_check_result(list, "sms", "failed", NULL, 1, "dm-404");
    dit_check_result(list, "email", "failed", NULL, 1, "dm-404");
    json_array_foreach(list, i, r)
    {
        const char *reason = json_string_value(json_object_get(r, "reason"));
        H_CHECKF(h, reason && strstr(reason, "404"), "failed result's reason \"%s\" hides the 404",
                 reason ? reason : "(none)");
    }
    json_decref(list);
    {
        json_t *reqs =
            dit_sb_requests("target=fhir&path_prefix=/fhir/Communication/" C_UNKNOWN, mark);
        H_CHECKF(h, json_array_size(reqs) == 1, "%zu reads of the unknown Communication",
                 json_array_size(reqs));
        H_CHECK_INT(h, json_integer_value(json_object_get(json_array_get(reqs, 0), "status")), 404);
        json_decref(reqs);
    }
    expect_nothing_sent(mark, "an unknown Communication");
    free(value);
}

static void test_webhook_422(void)
{
    static const char *const quinn[] = {"+15551234567"};
    static const char *const quinn_mail[] = {"quinn.paren@example.net"};
    struct harness_kafka_records dlq = {0};
    const struct harness_kafka_record *rec;
    char *value = dit_event_value("dm-webhook-422", QUINN, C_422, NULL);
    int32_t part;
    int64_t off;
    long long mark = dit_sb_mark();
    json_t *list, *body;
    const char *reason;

    dit_sb_ok("POST", "/_sandbox/faults",
              "{\"target\": \"webhook\", \"status\": 422, \"count\": 1}");
    dit_produce_raw(QUINN, value, &part, &off);
    n_dead++;
    if (dit_wait_dlq("\"dm-webhook-422\"", &dlq, &rec, WAIT_MS) == 0) {
        const char *err = harness_kafka_header(rec, "pm-error");
        H_CHECK_STR(h, rec->value, value);
        H_CHECK_STR(h, rec->key, QUINN);
        check_dlq_headers(rec, "permanent", part, off, "1");
        H_CHECKF(h, err && strstr(err, "422"), "pm-error \"%s\" does not name the 422",
                 err ? err : "(none)");
    }
    harness_kafka_records_free(&dlq);
    list = results_of("dm-webhook-422");
    dit_check_result(list, "webhook", "failed", NULL, 1, "dm-webhook-422");
    reason = json_string_value(json_object_get(dit_result(list, "webhook"), "reason"));
    H_CHECKF(h, reason && strstr(reason, "422"), "webhook reason \"%s\" does not name the 422",
             reason ? reason : "(none)");
    /* The other channels went out in the same attempt and stay delivered. */
    dit_check_result(list, "sms", "delivered", "", 1, "dm-webhook-422");
    dit_check_result(list, "email", "delivered", "", 1, "dm-webhook-422");
    json_decref(list);
    body = one_webhook(C_422, mark, 422);
    json_decref(body);
    expect_sms(T_422, mark, quinn, 1);
    expect_email(T_422, NULL, mark, quinn_mail, 1);
    free(value);
}

/* A webhook that never recovers: retried until PM_RETRY_DEADLINE_MS, then DLQ "exhausted";
 * SMS and email were sent once, in the first attempt, and never again. */
static void test_exhausted(void)
{
    static const char *const quinn[] = {"+15551234567"};
    static const char *const quinn_mail[] = {"quinn.paren@example.net"};
    struct harness_kafka_records dlq = {0};
    const struct harness_kafka_record *rec;
    char *value = dit_event_value("dm-exhausted", QUINN, C_EXHAUST, NULL);
    int32_t part;
    int64_t off;
    long long mark = dit_sb_mark();
    json_t *list, *reqs;
    size_t i, n503 = 0;

    dit_sb_ok("POST", "/_sandbox/faults",
              "{\"target\": \"webhook\", \"status\": 503, \"count\": -1}");
    dit_produce_raw(QUINN, value, &part, &off);
    n_dead++;
    if (dit_wait_dlq("\"dm-exhausted\"", &dlq, &rec, WAIT_MS) == 0) {
        const char *att = harness_kafka_header(rec, "pm-attempts");
        H_CHECK_STR(h, rec->value, value);
        check_dlq_headers(rec, "exhausted", part, off, NULL);
        json_t *w;
        reqs = dit_webhooks_for(C_EXHAUST, mark);
        json_array_foreach(reqs, i, w)
        {
            n503 += json_integer_value(json_object_get(w, "status")) == 503;
        }
        H_CHECKF(h, json_array_size(reqs) >= 2 && n503 == json_array_size(reqs),
                 "%zu webhook requests, %zu answered 503", json_array_size(reqs), n503);
        /* pm-attempts counts the handler's attempts: one webhook POST each. */
        H_CHECKF(h, att && strtol(att, NULL, 10) == (long)json_array_size(reqs),
                 "pm-attempts %s, webhook requests %zu", att ? att : "(none)",
                 json_array_size(reqs));
        json_decref(reqs);
    }
    harness_kafka_records_free(&dlq);
    dit_sb_ok("DELETE", "/_sandbox/faults", NULL);
    list = results_of("dm-exhausted");
    dit_check_result(list, "webhook", "failed", NULL, -1, "dm-exhausted");
    dit_check_result(list, "sms", "delivered", "", 1, "dm-exhausted");
    dit_check_result(list, "email", "delivered", "", 1, "dm-exhausted");
    json_decref(list);
    expect_sms(T_EXHAUST, mark, quinn, 1);
    expect_email(T_EXHAUST, NULL, mark, quinn_mail, 1);
    free(value);
}

/* ---- 10. unparseable and unknown events go to the DLQ; the partition flows on ---- */

static void test_invalid(void)
{
    static const char not_json[] = "this is not json {";
    static const char unknown[] =
        "{\"specversion\":\"1.0\",\"id\":\"dm-unknown-type\",\"source\":\"urn:pm:test-deliver\","
        "\"type\":\"canvas.unknown.v1\",\"subject\":\"Patient/" DIT_LEE "\",\"data\":{}}";
    struct harness_kafka_records dlq = {0};
    const struct harness_kafka_record *rec;
    char *value = dit_event_value("dm-after-invalid", DIT_LEE, C_AFTER, NULL);
    int32_t p1, p2, p3;
    int64_t o1, o2, o3;
    long long mark = dit_sb_mark();
    json_t *list, *body;

    dit_produce_raw(DIT_LEE, not_json, &p1, &o1);
    dit_produce_raw(DIT_LEE, unknown, &p2, &o2);
    dit_produce_raw(DIT_LEE, value, &p3, &o3);
    H_CHECKF(h, p1 == p2 && p2 == p3 && o1 < o2 && o2 < o3,
             "one patient's records landed on partitions %d, %d, %d", p1, p2, p3);

    if (dit_wait_dlq(not_json, &dlq, &rec, WAIT_MS) == 0) {
        H_CHECK_STR(h, rec->value, not_json);
        H_CHECK_STR(h, rec->key, DIT_LEE);
        check_dlq_headers(rec, "invalid", p1, o1, "1");
        H_CHECK(h, harness_kafka_header(rec, "pm-error") != NULL);
    }
    harness_kafka_records_free(&dlq);
    if (dit_wait_dlq("\"dm-unknown-type\"", &dlq, &rec, WAIT_MS) == 0) {
        H_CHECK_STR(h, rec->value, unknown);
        check_dlq_headers(rec, "invalid", p2, o2, "1");
    }
    harness_kafka_records_free(&dlq);

    list = results_of("dm-after-invalid");
    n_delivered++;
    dit_check_result(list, "webhook", "delivered", "", 1, "dm-after-invalid");
    dit_check_result(list, "sms", "delivered", "", 1, "dm-after-invalid");
    dit_check_result(list, "email", "skipped", "no consented email address", 1, "dm-after-invalid");
    json_decref(list);
    body = one_webhook(C_AFTER, mark, 200);
    H_CHECK_STR(h, json_string_value(json_object_get(body, "text")), T_AFTER);
    json_decref(body);
    free(value);
}

/* ---- 8. one token for the whole run; a 401 costs one refresh ---- */

static void test_token(void)
{
    long long mark;
    json_t *stats, *reqs, *r, *list;
    size_t i, n401 = 0;

    /* Every message so far (and their Patient reads) used the first token. */
    reqs = dit_sb_requests("target=token", 0);
    H_CHECKF(h, json_array_size(reqs) == 1, "%zu token requests before any expiry, expected 1",
             json_array_size(reqs));
    json_decref(reqs);
    stats = dit_sb_call("GET", "/_sandbox/stats", NULL, NULL);
    H_CHECK_INT(h, json_integer_value(json_object_get(stats, "tokens_issued")), 1);
    H_CHECKF(h,
             json_integer_value(json_object_get(json_object_get(stats, "by_target"), "fhir")) >= 15,
             "only %lld FHIR requests so far",
             (long long)json_integer_value(
                 json_object_get(json_object_get(stats, "by_target"), "fhir")));
    json_decref(stats);

    dit_sb_ok("POST", "/_sandbox/tokens/expire", NULL);
    mark = dit_sb_mark();
    dit_message("dm-token", DIT_LEE, C_TOKEN, NULL);
    list = results_of("dm-token");
    n_delivered++;
    dit_check_result(list, "webhook", "delivered", "", 1, "dm-token");
    dit_check_result(list, "sms", "delivered", "", 1, "dm-token");
    json_decref(list);

    reqs = dit_sb_requests("target=fhir", mark);
    json_array_foreach(reqs, i, r)
    {
        if (json_integer_value(json_object_get(r, "status")) == 401) {
            n401++;
            H_CHECK_STR(h, json_string_value(json_object_get(r, "path")),
                        "/fhir/Communication/" C_TOKEN);
        }
    }
    H_CHECKF(h, n401 == 1, "%zu FHIR answers 401 after the expiry, expected 1", n401);
    r = json_array_get(reqs, json_array_size(reqs) - 1);
    H_CHECK_STR(h, json_string_value(json_object_get(r, "path")), "/fhir/Communication/" C_TOKEN);
    H_CHECK_INT(h, json_integer_value(json_object_get(r, "status")), 200);
    json_decref(reqs);
    reqs = dit_sb_requests("target=token", mark);
    H_CHECKF(h, json_array_size(reqs) == 1, "%zu token requests after the expiry, expected 1",
             json_array_size(reqs));
    H_CHECK_INT(h, json_integer_value(json_object_get(json_array_get(reqs, 0), "status")), 200);
    json_decref(reqs);
}

/* ---- 14. health, metrics, configuration check ---- */

static long long metric(const char *text, const char *series)
{
    const char *at = text ? strstr(text, series) : NULL;
    if (!at)
        return -1;
    return strtoll(at + strlen(series), NULL, 10);
}

static long long sb_count(json_t *stats, const char *target, const char *status)
{
    return json_integer_value(json_object_get(
        json_object_get(json_object_get(stats, "by_target_status"), target), status));
}

static void test_health_metrics(void)
{
    struct harness_http_response r = {0};
    char url[200];
    json_t *stats;

    snprintf(url, sizeof(url), "%s/healthz", base);
    harness_http("GET", url, NULL, NULL, 0, 5000, &r);
    H_CHECK_INT(h, r.status, 200);
    harness_http_response_free(&r);
    snprintf(url, sizeof(url), "%s/readyz", base);
    harness_http("GET", url, NULL, NULL, 0, 5000, &r);
    H_CHECK_INT(h, r.status, 200);
    harness_http_response_free(&r);

    snprintf(url, sizeof(url), "%s/metrics", base);
    harness_http("GET", url, NULL, NULL, 0, 5000, &r);
    H_CHECK_INT(h, r.status, 200);
    stats = dit_sb_call("GET", "/_sandbox/stats", NULL, NULL);
#define EVENTS(outcome)                                                                            \
    "pm_deliver_events_total{type=\"canvas.message.v1\",outcome=\"" outcome "\"} "
#define OUT(t, s) "pm_deliver_outbound_requests_total{target=\"" t "\",status=\"" s "\"} "
    H_CHECK_INT(h, metric(r.body, EVENTS("delivered")), n_delivered);
    H_CHECK_INT(h, metric(r.body, EVENTS("skipped")), n_skipped);
    H_CHECK_INT(h, metric(r.body, EVENTS("dead_lettered")), n_dead);
    /* Not JSON and the unknown type: counted, with a bounded type label. */
    H_CHECK_INT(h, metric(r.body, "pm_deliver_events_total{type=\"unknown\",outcome=\"invalid\"} "),
                2);
    H_CHECK_INT(h, metric(r.body, "pm_deliver_dlq_total{class=\"permanent\"} "), 2);
    H_CHECK_INT(h, metric(r.body, "pm_deliver_dlq_total{class=\"exhausted\"} "), 1);
    H_CHECK_INT(h, metric(r.body, "pm_deliver_dlq_total{class=\"invalid\"} "), 2);
    /* What pm-deliver counted is what the parties saw. */
    H_CHECK_INT(h, metric(r.body, OUT("webhook", "200")), sb_count(stats, "webhook", "200"));
    H_CHECK_INT(h, metric(r.body, OUT("webhook", "503")), sb_count(stats, "webhook", "503"));
    H_CHECK_INT(h, metric(r.body, OUT("webhook", "422")), 1);
    H_CHECK_INT(h, metric(r.body, OUT("twilio", "201")), sb_count(stats, "twilio", "201"));
    H_CHECK_INT(h, metric(r.body, OUT("sendgrid", "202")), sb_count(stats, "sendgrid", "202"));
    H_CHECK_INT(h, metric(r.body, OUT("canvas-fhir", "200")), sb_count(stats, "fhir", "200"));
    H_CHECK_INT(h, metric(r.body, OUT("canvas-fhir", "404")), 1);
    H_CHECK_INT(h, metric(r.body, OUT("canvas-fhir", "401")), 1);
    H_CHECK_INT(h, metric(r.body, OUT("canvas-token", "200")), 2);
    /* This process remembers what it read back and delivered (counted exactly in sections 2
     * and 4); nothing was written back to Canvas here. */
    H_CHECK(h, metric(r.body, "pm_deliver_repeat_guard_entries{guard=\"messages\"} ") >= 3);
    H_CHECK_INT(h, metric(r.body, "pm_deliver_repeat_guard_entries{guard=\"writebacks\"} "), 0);
#undef EVENTS
#undef OUT
    H_CHECK(h, sb_count(stats, "webhook", "200") >= 8 && sb_count(stats, "twilio", "201") >= 8);
    json_decref(stats);
    harness_http_response_free(&r);
}

/* --check-config: names what is missing or wrong, never prints a secret value. */
static void test_check_config(void)
{
    static const char *const secrets[] = {CC_CLIENT_SECRET,   CC_TWILIO_TOKEN,
                                          CC_SENDGRID_KEY,    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                          "notbase64-7e6d5c", NULL};
    const char *missing[] = {"PM_WEBHOOK_SECRET", "PM_CANVAS_CLIENT_SECRET=" CC_CLIENT_SECRET,
                             "PM_TWILIO_AUTH_TOKEN=" CC_TWILIO_TOKEN,
                             "PM_SENDGRID_API_KEY=" CC_SENDGRID_KEY, NULL};
    const char *bad[] = {
        "PM_WEBHOOK_SECRET=whsec_!!!notbase64-7e6d5c", "PM_CANVAS_CLIENT_SECRET=" CC_CLIENT_SECRET,
        "PM_TWILIO_AUTH_TOKEN=" CC_TWILIO_TOKEN, "PM_SENDGRID_API_KEY=" CC_SENDGRID_KEY, NULL};
    const char *good[] = {"PM_CANVAS_CLIENT_SECRET=" CC_CLIENT_SECRET,
                          "PM_TWILIO_AUTH_TOKEN=" CC_TWILIO_TOKEN,
                          "PM_SENDGRID_API_KEY=" CC_SENDGRID_KEY, NULL};
    const struct {
        const char *name;
        const char *const *env;
        int status;
        const char *want;
    } runs[] = {
        {"check-missing", missing, 1, "PM_WEBHOOK_SECRET"},
        {"check-bad", bad, 1, "PM_WEBHOOK_SECRET"},
        {"check-good", good, 0, "configuration OK"},
    };
    char ignored[128];

    for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
        struct harness_proc *p = dit_deliver_spawn(runs[i].name, "--check-config", runs[i].env,
                                                   ignored, sizeof(ignored));
        char *out, *err;
        if (!p)
            continue;
        H_CHECKF(h, harness_proc_wait(p, 10000) == runs[i].status, "%s: exit status", runs[i].name);
        out = harness_proc_stdout(p);
        err = harness_proc_stderr(p);
        H_CHECKF(h, out && strstr(out, runs[i].want), "%s: output does not mention %s",
                 runs[i].name, runs[i].want);
        /* One problem, one line: the variable at fault and nothing else. */
        if (runs[i].status == 1)
            H_CHECKF(h, out && strchr(out, '\n') == out + strlen(out) - 1,
                     "%s: more than the one problem reported: %s", runs[i].name, out);
        for (const char *const *s = secrets; *s; s++)
            H_CHECKF(h, !(out && strstr(out, *s)) && !(err && strstr(err, *s)),
                     "%s printed the secret %s", runs[i].name, *s);
        free(out);
        free(err);
    }
}

int main(void)
{
    /* Message texts, names, numbers and addresses of the fixtures and of this test, and every
     * secret: none may appear in pm-deliver's debug log. */
    static const char *const sensitive[] = {
        "lab results",  "See you",      T_JORDAN,
        T_QUINN,        T_RETRY,        T_422,
        T_EXHAUST,      T_AFTER,        T_TOKEN,
        T_EMBED,        T_OTHER,        "appointment is tomorrow",
        "Pat Example",  "\"Pat\"",      "Dana",
        "Robin",        "Casey",        "Jordan",
        "Nocontact",    "Quinn",        "Paren",
        "Lee Sample",   "5554320",      "555432",
        "123-4567",     "5551234567",   "@example.com",
        "@example.net", "pat.example",  DIT_CLIENT_SEC,
        DIT_TWILIO_TOK, DIT_SG_KEY,     "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "Bearer",       "access_token", NULL};
    struct harness_proc *deliver;
    char props[512]; /* a 6 s session: the restarts at the end wait for the old member to go */
    const char *env[] = {"PM_RETRY_DEADLINE_MS=3000", "PM_DELIVER_MAX_IN_FLIGHT=4", props, NULL};

    h = dit_h = harness_init("deliver-messages");
    if (dit_start(h, 4) != 0)
        return harness_finish(h);
    dit_kafka_props(props, sizeof(props));
    test_check_config();
    seed();
    deliver = dit_deliver_start("deliver", env, base, sizeof(base), 30000);
    if (!deliver)
        return harness_finish(h);

    test_skips();
    test_html_message();
    test_repeat();
    test_embedded();
    test_consent();
    test_phones();
    test_retry_after();
    test_not_found();
    test_webhook_422();
    test_exhausted();
    test_invalid();
    test_token();
    test_health_metrics();
    test_repeat_other_instance(&deliver, env, sensitive);
    test_repeat_after_restart(&deliver, env, sensitive);

    if (deliver) {
        H_CHECK_INT(h, harness_proc_stop(deliver, 20000), 0);
        dit_check_log_clean(deliver, sensitive);
    }
    return harness_finish(h);
}
