/* Marked PHI and secrets never reach any log, argv, environ, DLQ header or delivery result. */
#include "harness.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * One run of the whole system at PM_LOG_LEVEL=debug — pm-devbroker, pm-sandbox, pm-ingest and
 * pm-deliver (webhook, sms, email, contact category ARI) — fed with marked PHI: a Patient whose
 * names, phones, emails, address and ARI contact carry markers, staff messages whose HTML holds
 * marked text, a marked reply and a marked check-in answer. Failure paths are driven too (a
 * webhook 4xx, Twilio 503/400 and SendGrid 400 bodies quoting the phone and email, a Canvas 422
 * refusing the reply, a marked answer to a question the form does not have, a 401 after the
 * tokens expired, refused ingest requests, an unparseable and an unknown event), so that the
 * error paths log what they log. Then nothing marked may be found in any process's stdout or
 * stderr, in the pm-error headers of the DLQ, or in any delivery.result; no secret (client
 * secret, bearer token, both webhook secrets, Twilio token, SendGrid key, the OAuth token the
 * sandbox issued) in any output, any /proc/<pid>/cmdline, or the /proc/<pid>/environ of a
 * process given that secret as X_FILE (pm-deliver and pm-sandbox: all of them).
 */

/* ---- marked data ---- */

#define PATIENT "a7c31e0f5b9d4e2c8f16d0b4e9a27c55"
#define MORGAN  "4150cd20de8a470aa570a852859ac87e"
#define COMM1   "d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6"
#define COMM2   "e2f3a4b5-c6d7-4e8f-9a01-b2c3d4e5f6a7"
#define COMM3   "f3a4b5c6-d7e8-4f90-8b12-c3d4e5f6a7b8"
#define QUEST   "47a408d7-9f1d-4cfd-97c7-aa810df9ed39"
#define Q_TEXT  "7eb053cd-cb2d-435f-8f55-f154645b55c4"
#define Q_MULTI "3c2b1a09-8f7e-4d6c-b5a4-9382716a5b4c"
#define Q_ONE   "d82e29db-0cac-4b97-a5aa-9e81749686e2"

/* Every marker holds "PHIMARK" (or "phimark", in the emails): one case-insensitive search finds
 * them all, in whatever JSON, form or URL encoding a text ended up. */
#define MARK          "phimark"
#define PHONE         "5557731000"
#define PHONE_CONTACT "5557731002"
#define EMAIL         "phimark.email@example.com"
#define EMAIL_CONTACT "phimark.contact@example.com"
#define TWILIO_SID    "AC5a4db0c55a4db0c55a4db0c55a4db0c5"

/* ---- secrets ---- */

#define CLIENT_ID     "phi-client"
#define CLIENT_SECRET "cs-Zq8SECRET-client-3e1d9a77"
#define BEARER        "bt-Zq8SECRET-bearer-55f0c2a1"
#define IN_KEY        "phi-test-ingest-webhook-key-0001"
#define IN_KEY_B64    "cGhpLXRlc3QtaW5nZXN0LXdlYmhvb2sta2V5LTAwMDE="
#define IN_WHSEC      "whsec_" IN_KEY_B64
#define OUT_KEY       "phi-test-deliver-webhook-key-002"
#define OUT_KEY_B64   "cGhpLXRlc3QtZGVsaXZlci13ZWJob29rLWtleS0wMDI="
#define OUT_WHSEC     "whsec_" OUT_KEY_B64
#define TWILIO_TOKEN  "tw9c4e2b7d9a1f3e5cSECRETf00dfeed"
#define TWILIO_BASIC                                                                               \
    "QUM1YTRkYjBjNTVhNGRiMGM1NWE0ZGIwYzU1YTRkYjBjNTp0dzljNGUyYjdkOWExZjNlNWNTRUNSRVRmMDBkZmVlZA"
#define SENDGRID_KEY "SG.Zq8SECRET.sendgrid-key-b61c"

/* What must never be found, by name (a failure names the needle, never prints the text). */
struct needle {
    const char *what;
    const char *text;
};

static const struct needle phi_needles[] = {
    {"a PHI marker (name, text, reply, answer, address, email, contact)", MARK},
    {NULL, NULL},
};

static const struct needle secret_needles[] = {
    {"the Canvas client secret", CLIENT_SECRET},
    {"the ingest bearer token", BEARER},
    {"the ingest webhook secret", IN_WHSEC},
    {"the ingest webhook key (base64)", IN_KEY_B64},
    {"the ingest webhook key (raw)", IN_KEY},
    {"the deliver webhook secret", OUT_WHSEC},
    {"the deliver webhook key (base64)", OUT_KEY_B64},
    {"the deliver webhook key (raw)", OUT_KEY},
    {"the Twilio auth token", TWILIO_TOKEN},
    {"the Twilio Basic credentials", TWILIO_BASIC},
    {"the SendGrid API key", SENDGRID_KEY},
    {"a secret marker", "zq8secret"},
    {NULL, NULL},
};

/* Phone digits are searched with separators removed: 555-773-1000, (555) 773-1000, +1 555 773
 * 1000, %2B15557731000 all become ...5557731000. */
static const struct needle phone_needles[] = {
    {"the patient's phone digits", PHONE},
    {"the contact's phone digits", PHONE_CONTACT},
    {"the patient's phone, local part", "7731000"},
    {"the contact's phone, local part", "7731002"},
    {NULL, NULL},
};

static struct harness *h;
static char bootstrap[512];
static char sb[128];     /* pm-sandbox base URL */
static char ingest[128]; /* pm-ingest base URL */
static char token_prefix[8];

/* ---- searching ---- */

/* Case-insensitive memmem. @returns the offset of @p needle in @p hay, or -1. */
static long find_ci(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0 || n > len)
        return -1;
    for (size_t i = 0; i + n <= len; i++) {
        size_t j = 0;
        while (j < n && tolower((unsigned char)hay[i + j]) == tolower((unsigned char)needle[j]))
            j++;
        if (j == n)
            return (long)i;
    }
    return -1;
}

/* @p text with phone separators (space, - . ( ) + /) and "%2B" removed; caller frees. */
static char *strip_phone_separators(const char *text, size_t len, size_t *outlen)
{
    char *out = malloc(len + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '+' || c == '/')
            continue;
        if (c == '%' && i + 2 < len && text[i + 1] == '2' &&
            (text[i + 2] == 'B' || text[i + 2] == 'b')) {
            i += 2;
            continue;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

/* Counts the maximal runs of exactly 30 ASCII letters and digits: the shape of the access tokens
 * Canvas (and pm-sandbox) issue. No id the services log has that shape: FHIR ids are 32 hex
 * digits or dashed UUIDs, Twilio SIDs 34 characters. */
static int count_token_shapes(const char *text, size_t len)
{
    int found = 0;
    size_t run = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && isalnum((unsigned char)text[i])) {
            run++;
            continue;
        }
        if (run == 30)
            found++;
        run = 0;
    }
    return found;
}

/* 1 when the issued token's first characters start a run of 30 or more letters and digits. */
static int has_token_prefix_run(const char *text, size_t len)
{
    size_t pl = strlen(token_prefix);
    if (!pl)
        return 0;
    for (size_t i = 0; i + pl <= len; i++) {
        size_t run = 0;
        if ((i > 0 && isalnum((unsigned char)text[i - 1])) || memcmp(text + i, token_prefix, pl))
            continue;
        while (i + run < len && isalnum((unsigned char)text[i + run]))
            run++;
        if (run >= 30)
            return 1;
    }
    return 0;
}

/* Looks for everything that must never be found in @p text. @returns the number of kinds found
 * (0: clean), the first one's name in @p what. */
static int leak_scan(const char *text, size_t len, const char **what)
{
    size_t slen = 0;
    char *stripped = strip_phone_separators(text, len, &slen);
    int found = 0;

    *what = NULL;
#define LEAK_FOUND(name)                                                                           \
    do {                                                                                           \
        if (!found++)                                                                              \
            *what = (name);                                                                        \
    } while (0)
    for (const struct needle *n = phi_needles; n->what; n++)
        if (find_ci(text, len, n->text) >= 0)
            LEAK_FOUND(n->what);
    for (const struct needle *n = secret_needles; n->what; n++)
        if (find_ci(text, len, n->text) >= 0)
            LEAK_FOUND(n->what);
    for (const struct needle *n = phone_needles; n->what; n++)
        if (!stripped || find_ci(stripped, slen, n->text) >= 0)
            LEAK_FOUND(n->what);
    if (count_token_shapes(text, len) > 0)
        LEAK_FOUND("something shaped like a Canvas access token (30 alphanumerics)");
    if (has_token_prefix_run(text, len))
        LEAK_FOUND("the OAuth access token pm-sandbox issued");
#undef LEAK_FOUND
    free(stripped);
    return found;
}

/* One check on one text; @p where names it ("pm-deliver stderr", "DLQ record 2 header ..."). */
static void check_clean(const char *where, const char *text, size_t len)
{
    const char *what = NULL;
    int n;
    if (!text)
        return;
    n = leak_scan(text, len, &what);
    H_CHECKF(h, n == 0, "%s contains %s (%d kinds of leak in all)", where, what ? what : "?", n);
}

/* The scanner itself: it finds each kind of leak in the shapes logs would hold, and passes a
 * clean line full of ids. Without this, a scanner that finds nothing would pass every run. */
static void check_scanner(void)
{
    static const char *const dirty[] = {
        "{\"msg\":\"x\",\"error\":\"Dear PhiMark-Name-7731\"}",
        "to (555) 773-1000",
        "To=%2B15557731000&Body=hi",
        "+1 555 773 1002",
        "\"email\":\"PHIMARK.EMAIL@EXAMPLE.COM\"",
        "Authorization: Basic " TWILIO_BASIC,
        "key=" SENDGRID_KEY,
        "secret " OUT_KEY_B64,
        "\"token\":\"Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy\"",
    };
    const char *clean =
        "{\"level\":\"info\",\"patient_id\":\"" PATIENT "\",\"communication_id\":\"" COMM1
        "\",\"provider_id\":\"SM1ba981c3bf49ca446437815df1111746\",\"offset\":7731,"
        "\"ts\":\"2026-11-27T01:02:41.138Z\"}";
    const char *what;

    for (size_t i = 0; i < sizeof(dirty) / sizeof(dirty[0]); i++)
        H_CHECKF(h, leak_scan(dirty[i], strlen(dirty[i]), &what) > 0,
                 "the scanner misses leak sample %zu", i);
    H_CHECKF(h, leak_scan(clean, strlen(clean), &what) == 0, "the scanner flags a clean line (%s)",
             what ? what : "?");
}

/* ---- processes ---- */

static void write_file(const char *name, const char *content, char *path, size_t len)
{
    FILE *f;
    harness_path(h, name, path, len);
    f = fopen(path, "w");
    if (!H_CHECKF(h, f != NULL, "cannot write %s", path))
        return;
    fputs(content, f);
    fclose(f);
}

static struct harness_proc *start_sandbox(void)
{
    static char f_secret[600], f_twilio[600], f_sg[600], f_whsec[600];
    char p[512], line[256];
    const char *at;
    struct harness_proc *p_sb;

    /* Every secret as X_FILE, one of them with the trailing newline `echo` leaves. */
    write_file("sb_client_secret", CLIENT_SECRET "\n", p, sizeof(p));
    snprintf(f_secret, sizeof(f_secret), "PM_SANDBOX_CLIENT_SECRET_FILE=%s", p);
    write_file("sb_twilio_token", TWILIO_TOKEN, p, sizeof(p));
    snprintf(f_twilio, sizeof(f_twilio), "PM_SANDBOX_TWILIO_AUTH_TOKEN_FILE=%s", p);
    write_file("sb_sendgrid_key", SENDGRID_KEY, p, sizeof(p));
    snprintf(f_sg, sizeof(f_sg), "PM_SANDBOX_SENDGRID_API_KEY_FILE=%s", p);
    write_file("sb_webhook_secret", OUT_WHSEC, p, sizeof(p));
    snprintf(f_whsec, sizeof(f_whsec), "PM_SANDBOX_WEBHOOK_SECRET_FILE=%s", p);

    const char *argv[] = {"pm-sandbox", NULL};
    const char *env[] = {"PM_SANDBOX_LISTEN=127.0.0.1:0",
                         "PM_SANDBOX_CLIENT_ID=" CLIENT_ID,
                         "PM_SANDBOX_TWILIO_ACCOUNT_SID=" TWILIO_SID,
                         f_secret,
                         f_twilio,
                         f_sg,
                         f_whsec,
                         "PM_SANDBOX_FIXTURES",
                         "PM_SANDBOX_TOKEN_TTL_S",
                         "PM_LOG_LEVEL=debug",
                         NULL};
    p_sb = harness_proc_start(h, "sandbox", argv, env);
    if (!H_CHECK(h, p_sb && harness_proc_read_line(p_sb, line, sizeof(line), 10000) == 0))
        return NULL;
    at = strstr(line, "http://");
    if (!H_CHECKF(h, at != NULL, "pm-sandbox said: %s", line))
        return NULL;
    snprintf(sb, sizeof(sb), "%s", at);
    return p_sb;
}

static struct harness_proc *start_ingest(void)
{
    static char listen[64], brokers[600], f_whsec[600];
    char p[512], url[200];
    int port = harness_free_port();
    struct harness_proc *pi;

    /* The bearer token in the environment (as most deployments do), the webhook secret as a
     * file: both forms are checked. */
    write_file("in_webhook_secrets", IN_WHSEC "\n", p, sizeof(p));
    snprintf(f_whsec, sizeof(f_whsec), "PM_INGEST_WEBHOOK_SECRETS_FILE=%s", p);
    snprintf(listen, sizeof(listen), "PM_INGEST_LISTEN=127.0.0.1:%d", port);
    snprintf(brokers, sizeof(brokers), "PM_KAFKA_BROKERS=%s", bootstrap);
    snprintf(ingest, sizeof(ingest), "http://127.0.0.1:%d", port);
    const char *argv[] = {"pm-ingest", NULL};
    const char *env[] = {listen,
                         brokers,
                         f_whsec,
                         "PM_INGEST_WEBHOOK_SECRETS",
                         "PM_INGEST_BEARER_TOKENS=" BEARER,
                         "PM_INGEST_ALLOW_UNAUTHENTICATED",
                         "PM_KAFKA_CONFIG_FILE",
                         "PM_LOG_LEVEL=debug",
                         NULL};
    pi = harness_proc_start(h, "ingest", argv, env);
    snprintf(url, sizeof(url), "%s/readyz", ingest);
    if (!H_CHECKF(h, pi && harness_http_wait(url, 200, 20000) == 0, "pm-ingest is not ready"))
        return NULL;
    return pi;
}

static struct harness_proc *start_deliver(void)
{
    static char brokers[600], fhir[200], tok[200], hook[200], twilio[200], sendgrid[200];
    static char listen[64], f_cs[600], f_wh[600], f_tw[600], f_sg[600];
    char p[512], url[200];
    int port = harness_free_port();
    struct harness_proc *pd;

    write_file("client_secret", CLIENT_SECRET "\n", p, sizeof(p));
    snprintf(f_cs, sizeof(f_cs), "PM_CANVAS_CLIENT_SECRET_FILE=%s", p);
    write_file("webhook_secret", OUT_WHSEC, p, sizeof(p));
    snprintf(f_wh, sizeof(f_wh), "PM_WEBHOOK_SECRET_FILE=%s", p);
    write_file("twilio_token", TWILIO_TOKEN "\n", p, sizeof(p));
    snprintf(f_tw, sizeof(f_tw), "PM_TWILIO_AUTH_TOKEN_FILE=%s", p);
    write_file("sendgrid_key", SENDGRID_KEY, p, sizeof(p));
    snprintf(f_sg, sizeof(f_sg), "PM_SENDGRID_API_KEY_FILE=%s", p);

    snprintf(brokers, sizeof(brokers), "PM_KAFKA_BROKERS=%s", bootstrap);
    snprintf(fhir, sizeof(fhir), "PM_CANVAS_FHIR_URL=%s/fhir", sb);
    snprintf(tok, sizeof(tok), "PM_CANVAS_TOKEN_URL=%s/auth/token/", sb);
    snprintf(hook, sizeof(hook), "PM_WEBHOOK_URL=%s/webhook", sb);
    snprintf(twilio, sizeof(twilio), "PM_TWILIO_API_URL=%s/twilio", sb);
    snprintf(sendgrid, sizeof(sendgrid), "PM_SENDGRID_API_URL=%s/sendgrid", sb);
    snprintf(listen, sizeof(listen), "PM_DELIVER_LISTEN=127.0.0.1:%d", port);
    const char *argv[] = {"pm-deliver", NULL};
    const char *env[] = {brokers,
                         fhir,
                         tok,
                         hook,
                         twilio,
                         sendgrid,
                         listen,
                         f_cs,
                         f_wh,
                         f_tw,
                         f_sg,
                         "PM_CANVAS_CLIENT_SECRET",
                         "PM_WEBHOOK_SECRET",
                         "PM_TWILIO_AUTH_TOKEN",
                         "PM_SENDGRID_API_KEY",
                         "PM_CANVAS_INSTANCE",
                         "PM_CANVAS_CLIENT_ID=" CLIENT_ID,
                         "PM_DELIVER_CHANNELS=webhook,sms,email",
                         "PM_TWILIO_ACCOUNT_SID=" TWILIO_SID,
                         "PM_TWILIO_FROM=+15550001000",
                         "PM_SENDGRID_FROM=care@clinic.example",
                         "PM_EMAIL_SUBJECT",
                         "PM_DELIVER_CONTACT_CATEGORIES=ARI",
                         "PM_DEFAULT_PRACTITIONER_ID",
                         "PM_DELIVER_GROUP_ID=pm-deliver-phi",
                         "PM_RETRY_BASE_MS=50",
                         "PM_RETRY_MAX_BACKOFF_MS=300",
                         "PM_RETRY_DEADLINE_MS=60000",
                         "PM_HTTP_TIMEOUT_MS=5000",
                         "PM_KAFKA_CONFIG_FILE",
                         "PM_LOG_LEVEL=debug",
                         NULL};
    pd = harness_proc_start(h, "deliver", argv, env);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", port);
    if (!H_CHECKF(h, pd && harness_http_wait(url, 200, 30000) == 0, "pm-deliver is not ready"))
        return NULL;
    return pd;
}

/* ---- HTTP ---- */

static json_t *http_json(const char *method, const char *url, const char *const *headers,
                         const char *body, long *status)
{
    struct harness_http_response r = {0};
    json_t *j = NULL;
    harness_http(method, url, headers, body, body ? strlen(body) : 0, 15000, &r);
    *status = r.status;
    if (r.body_len)
        j = json_loadb(r.body, r.body_len, JSON_DECODE_ANY, NULL);
    harness_http_response_free(&r);
    return j;
}

/* A control call to pm-sandbox that must answer 2xx; @p body is stolen. */
static void sandbox_ok(const char *method, const char *path, json_t *body)
{
    const char *const hdr[] = {"Content-Type: application/json", NULL};
    char url[300];
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    long st = 0;
    snprintf(url, sizeof(url), "%s%s", sb, path);
    json_decref(http_json(method, url, s ? hdr : NULL, s, &st));
    H_CHECKF(h, st >= 200 && st < 300, "%s %s answered %ld", method, path, st);
    free(s);
    json_decref(body);
}

/* POSTs @p body (stolen) to pm-ingest, signed (Standard Webhooks) or with the bearer token, and
 * checks the status; the answer's event id goes to @p id_out ("" when there is none). */
static void ingest_post(const char *path, json_t *body, int signed_request, long want, char *id_out,
                        size_t id_len)
{
    char url[300], err[128];
    char *s = json_dumps(body, JSON_COMPACT);
    struct harness_webhook_headers wh;
    const char *headers[5] = {"Content-Type: application/json", NULL, NULL, NULL, NULL};
    long st = 0;
    json_t *answer;
    static int seq;

    json_decref(body);
    if (!H_CHECK(h, s != NULL))
        return;
    if (signed_request) {
        char msg_id[64];
        snprintf(msg_id, sizeof(msg_id), "msg_phi_%d_%ld", ++seq, (long)time(NULL));
        if (!H_CHECKF(h,
                      harness_webhook_sign(IN_WHSEC, msg_id, (long long)time(NULL), s, strlen(s),
                                           &wh, err, sizeof(err)) == 0,
                      "signing: %s", err)) {
            free(s);
            return;
        }
        headers[1] = wh.id;
        headers[2] = wh.timestamp;
        headers[3] = wh.signature;
    } else {
        headers[1] = "Authorization: Bearer " BEARER;
    }
    snprintf(url, sizeof(url), "%s%s", ingest, path);
    answer = http_json("POST", url, headers, s, &st);
    H_CHECKF(h, st == want, "POST %s answered %ld, expected %ld", path, st, want);
    if (id_out) {
        const char *id = json_string_value(json_object_get(answer, "id"));
        snprintf(id_out, id_len, "%s", id ? id : "");
    }
    json_decref(answer);
    free(s);
}

/* A request that must be refused, with markers in the body and in a wrong bearer token. */
static void ingest_refused(const char *path, const char *auth, const char *body, long want)
{
    char url[300];
    const char *headers[] = {"Content-Type: application/json", auth, NULL};
    long st = 0;
    snprintf(url, sizeof(url), "%s%s", ingest, path);
    json_decref(http_json("POST", url, headers, body, &st));
    H_CHECKF(h, st == want, "POST %s (refused) answered %ld, expected %ld", path, st, want);
}

/* ---- Kafka ---- */

static void produce(const char *topic, const char *key, const char *value)
{
    static const char *const headers[] = {"content-type",
                                          "application/cloudevents+json; charset=utf-8", NULL};
    struct harness_kafka_produce req = {0};
    char err[512];
    req.topic = topic;
    req.key = key;
    req.value = value;
    req.value_len = strlen(value);
    req.headers = headers;
    H_CHECKF(h, harness_kafka_produce(bootstrap, &req, NULL, NULL, err, sizeof(err)) == 0,
             "produce to %s: %s", topic, err);
}

/* Number of delivery results on pm.deliveries for @p source_event_id in @p recs. */
static size_t results_for(const struct harness_kafka_records *recs, const char *source_event_id)
{
    size_t n = 0;
    for (size_t i = 0; i < recs->n; i++) {
        json_t *ce =
            json_loadb(recs->v[i].value ? recs->v[i].value : "", recs->v[i].value_len, 0, NULL);
        const char *src =
            json_string_value(json_object_get(json_object_get(ce, "data"), "source_event_id"));
        if (src && !strcmp(src, source_event_id))
            n++;
        json_decref(ce);
    }
    return n;
}

/* The outcome of the result of @p source_event_id on @p channel, or NULL. */
static const char *result_outcome(const struct harness_kafka_records *recs,
                                  const char *source_event_id, const char *channel, char *out,
                                  size_t len)
{
    for (size_t i = 0; i < recs->n; i++) {
        json_t *ce =
            json_loadb(recs->v[i].value ? recs->v[i].value : "", recs->v[i].value_len, 0, NULL);
        json_t *data = json_object_get(ce, "data");
        const char *src = json_string_value(json_object_get(data, "source_event_id"));
        const char *ch = json_string_value(json_object_get(data, "channel"));
        const char *oc = json_string_value(json_object_get(data, "outcome"));
        if (src && ch && oc && !strcmp(src, source_event_id) && !strcmp(ch, channel)) {
            snprintf(out, len, "%s", oc);
            json_decref(ce);
            return out;
        }
        json_decref(ce);
    }
    return NULL;
}

/* Waits until every id in @p ids has @p counts[i] results, reading pm.deliveries into @p recs. */
static int wait_results(const char *const *ids, const size_t *counts, size_t n,
                        struct harness_kafka_records *recs, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    char err[256];
    for (;;) {
        size_t done = 0;
        harness_kafka_records_free(recs);
        harness_kafka_read(bootstrap, "pm.deliveries", 0, 10000, recs, err, sizeof(err));
        for (size_t i = 0; i < n; i++)
            if (results_for(recs, ids[i]) >= counts[i])
                done++;
        if (done == n)
            return 0;
        if (harness_now_ms() > deadline) {
            for (size_t i = 0; i < n; i++)
                H_CHECKF(h, results_for(recs, ids[i]) >= counts[i], "event %s: %zu results of %zu",
                         ids[i], results_for(recs, ids[i]), counts[i]);
            return -1;
        }
        harness_sleep_ms(200);
    }
}

/* ---- the marked data ---- */

static json_t *consent(int yes)
{
    return json_pack("[{s:s, s:b}]", "url",
                     "http://schemas.canvasmedical.com/fhir/extensions/has-consent", "valueBoolean",
                     yes);
}

static json_t *marked_patient(void)
{
    return json_pack(
        "{s:s, s:s, s:b, s:[{s:s, s:s, s:[s, s]}], s:s, s:s,"
        " s:[{s:s, s:o, s:s, s:s, s:s, s:i}, {s:s, s:o, s:s, s:s, s:s, s:i},"
        "    {s:s, s:o, s:s, s:s, s:s, s:i}],"
        " s:[{s:s, s:[s], s:s, s:s, s:s}],"
        " s:[{s:s, s:{s:s}, s:[{s:[{s:s, s:s, s:s}]}], s:[{s:s, s:s}, {s:s, s:s}]}]}",
        "resourceType", "Patient", "id", PATIENT, "active", 1, "name", "use", "official", "family",
        "PHIMARK-NAME-7731", "given", "PHIMARK-GIVEN", "PHIMARK-MIDDLE", "gender", "female",
        "birthDate", "1977-03-31", "telecom", "id", "b1f0c2d3-0000-4000-8000-000000000001",
        "extension", consent(1), "system", "phone", "value", PHONE, "use", "mobile", "rank", 1,
        "id", "b1f0c2d3-0000-4000-8000-000000000002", "extension", consent(1), "system", "email",
        "value", EMAIL, "use", "work", "rank", 1, "id", "b1f0c2d3-0000-4000-8000-000000000003",
        "extension", consent(0), "system", "phone", "value", "(555) 773-1000", "use", "home",
        "rank", 2, "address", "use", "home", "line", "1 PHIMARK-ADDRESS Street", "city",
        "PHIMARK-CITY", "state", "IL", "postalCode", "62701", "contact", "id",
        "c0a81cb4-7f97-429d-b0d8-4c4f067b1100", "name", "text", "PHIMARK-CONTACT-NAME",
        "relationship", "coding", "system",
        "http://schemas.canvasmedical.com/fhir/contact-category", "code", "ARI", "display",
        "Authorized for release of information", "telecom", "system", "phone", "value",
        "555-773-1002", "system", "email", "value", EMAIL_CONTACT);
}

static json_t *marked_communication(const char *id, const char *status, const char *html)
{
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:[{s:s, s:s}], s:{s:s, s:s}, s:[{s:s}]}", "resourceType",
        "Communication", "id", id, "status", status, "sent", "2026-03-02T15:04:05.123456+00:00",
        "recipient", "reference", "Patient/" PATIENT, "type", "Patient", "sender", "reference",
        "Practitioner/" MORGAN, "type", "Practitioner", "payload", "contentString", html);
}

static void add_fault(json_t *rule)
{
    sandbox_ok("POST", "/_sandbox/faults", rule);
}

/* The failure paths of the second round, consumed once each, in this order. */
static void add_faults(void)
{
    add_fault(json_pack("{s:s, s:i, s:{s:s}}", "target", "webhook", "status", 400, "body", "error",
                        "cannot deliver to PHIMARK-NAME-7731 at 555-773-1000"));
    add_fault(json_pack("{s:s, s:i, s:{s:i, s:s, s:i}}", "target", "twilio", "status", 503, "body",
                        "code", 20503, "message", "Service unavailable sending to +15557731000",
                        "status", 503));
    /* Three 400s: the contact's in the first attempt and in the retry, the patient's in the
     * retry; whichever way round, the sms channel ends failed. */
    add_fault(json_pack("{s:s, s:i, s:i, s:{s:i, s:s, s:s, s:i}}", "target", "twilio", "status",
                        400, "count", 3, "body", "code", 21211, "message",
                        "The 'To' number +15557731000 is not a valid phone number.", "more_info",
                        "https://www.twilio.com/docs/errors/21211", "status", 400));
    add_fault(json_pack("{s:s, s:i, s:{s:[{s:s, s:s}]}}", "target", "sendgrid", "status", 400,
                        "body", "errors", "field", "personalizations.0.to.0.email", "message",
                        "Does not contain a valid address: " EMAIL));
    /* Canvas refuses the reply the way it documents (ids and codes in its text). */
    add_fault(json_pack("{s:s, s:s, s:s, s:i, s:{s:s, s:[{s:s, s:s, s:{s:s}}]}}", "target", "fhir",
                        "method", "POST", "path_prefix", "/fhir/Communication", "status", 422,
                        "body", "resourceType", "OperationOutcome", "issue", "severity", "error",
                        "code", "business-rule", "details", "text",
                        "Unknown Practitioner resource '" MORGAN "'"));
}

/* ---- /proc ---- */

/* Checks /proc/<pid>/cmdline, and environ too when @p environ_clean (every secret of that
 * process was given as X_FILE). */
static void check_proc(struct harness_proc *p, const char *name, int environ_clean)
{
    char path[64];
    size_t len = 0;
    char *buf;
    char where[96];

    if (!p)
        return;
    snprintf(path, sizeof(path), "/proc/%d/cmdline", harness_proc_pid(p));
    buf = harness_file_read(path, &len);
    snprintf(where, sizeof(where), "%s /proc/<pid>/cmdline", name);
    if (H_CHECKF(h, buf != NULL, "cannot read %s of %s", path, name))
        check_clean(where, buf, len);
    free(buf);
    snprintf(path, sizeof(path), "/proc/%d/environ", harness_proc_pid(p));
    buf = harness_file_read(path, &len);
    if (H_CHECKF(h, buf != NULL, "cannot read %s of %s", path, name)) {
        /* The environment names the secret files, never their contents. */
        H_CHECKF(h, !environ_clean || find_ci(buf, len, "_FILE=") >= 0,
                 "%s runs without X_FILE variables", name);
        if (environ_clean) {
            snprintf(where, sizeof(where), "%s /proc/<pid>/environ", name);
            for (const struct needle *n = secret_needles; n->what; n++)
                H_CHECKF(h, find_ci(buf, len, n->text) < 0, "%s contains %s", where, n->what);
        }
    }
    free(buf);
}

/* ---- the run ---- */

static void check_output(struct harness_proc *p, const char *name)
{
    char where[96];
    char *s;
    if (!p)
        return;
    s = harness_proc_stderr(p);
    snprintf(where, sizeof(where), "%s stderr", name);
    H_CHECKF(h, s != NULL, "no stderr of %s", name);
    if (s)
        check_clean(where, s, strlen(s));
    free(s);
    s = harness_proc_stdout(p);
    snprintf(where, sizeof(where), "%s stdout", name);
    if (s)
        check_clean(where, s, strlen(s));
    free(s);
}

/* Learns the first characters of the token pm-deliver used (pm-sandbox records them). */
static void learn_token_prefix(void)
{
    char url[300];
    long st = 0;
    json_t *j, *r;
    size_t i;
    snprintf(url, sizeof(url), "%s/_sandbox/requests?target=fhir", sb);
    j = http_json("GET", url, NULL, NULL, &st);
    json_array_foreach(json_object_get(j, "requests"), i, r)
    {
        const char *a =
            json_string_value(json_object_get(json_object_get(r, "headers"), "authorization"));
        if (a && strncmp(a, "Bearer ", 7) == 0 && strlen(a) >= 11) {
            memcpy(token_prefix, a + 7, 4);
            token_prefix[4] = '\0';
            break;
        }
    }
    json_decref(j);
    H_CHECKF(h, token_prefix[0] != '\0', "pm-sandbox recorded no FHIR request with a token");
}

/* What shows the first round worked: every channel to both people, with the X_FILE secrets. */
static void check_first_round(const struct harness_kafka_records *res, const char *m1,
                              const char *r1, const char *q1)
{
    char url[300], oc[32];
    long st = 0;
    json_t *stats;
    static const char *const channels[] = {"webhook", "sms", "email"};

    for (size_t i = 0; i < 3; i++) {
        const char *o = result_outcome(res, m1, channels[i], oc, sizeof(oc));
        H_CHECKF(h, o && !strcmp(o, "delivered"), "message %s: %s is %s", m1, channels[i],
                 o ? o : "missing");
    }
    H_CHECKF(h, result_outcome(res, r1, "canvas", oc, sizeof(oc)) && !strcmp(oc, "delivered"),
             "reply not written to Canvas");
    H_CHECKF(h, result_outcome(res, q1, "canvas", oc, sizeof(oc)) && !strcmp(oc, "delivered"),
             "check-in not written to Canvas");
    /* Twilio and SendGrid took the patient and the ARI contact: 2 accepted sends each. */
    snprintf(url, sizeof(url), "%s/_sandbox/stats", sb);
    stats = http_json("GET", url, NULL, NULL, &st);
    json_t *by = json_object_get(stats, "by_target_status");
    H_CHECKF(h, json_integer_value(json_object_get(json_object_get(by, "twilio"), "201")) >= 2,
             "Twilio did not accept 2 messages");
    H_CHECKF(h, json_integer_value(json_object_get(json_object_get(by, "sendgrid"), "202")) >= 2,
             "SendGrid did not accept 2 mails");
    H_CHECKF(h, json_integer_value(json_object_get(json_object_get(by, "webhook"), "200")) >= 1,
             "the webhook did not accept the signed message");
    json_decref(stats);
}

static void check_dlq(const char *const *want_ids, size_t n)
{
    struct harness_kafka_records recs = {0};
    char err[256], where[160];
    long long deadline = harness_now_ms() + 30000;
    size_t found = 0;

    for (;;) {
        harness_kafka_records_free(&recs);
        harness_kafka_read(bootstrap, "pm.dlq", 0, 10000, &recs, err, sizeof(err));
        found = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t r = 0; r < recs.n; r++)
                if (recs.v[r].value && strstr(recs.v[r].value, want_ids[i])) {
                    found++;
                    break;
                }
        if (found == n || harness_now_ms() > deadline)
            break;
        harness_sleep_ms(200);
    }
    H_CHECKF(h, found == n, "%zu of the %zu dead-lettered events are on pm.dlq", found, n);
    for (size_t r = 0; r < recs.n; r++) {
        const struct harness_kafka_record *rec = &recs.v[r];
        H_CHECKF(h, harness_kafka_header(rec, "pm-error") != NULL, "DLQ record %zu has no pm-error",
                 r);
        for (size_t k = 0; k < rec->nheaders; k++) {
            const struct harness_kafka_header *hd = &rec->headers[k];
            snprintf(where, sizeof(where), "DLQ record %zu header %s", r, hd->name);
            if (hd->value)
                check_clean(where, hd->value, hd->value_len);
        }
        snprintf(where, sizeof(where), "DLQ record %zu key", r);
        if (rec->key)
            check_clean(where, rec->key, rec->key_len);
    }
    harness_kafka_records_free(&recs);
}

/* Every delivery.result is ids and vocabulary: its whole value, key and headers are checked. */
static void check_results(const struct harness_kafka_records *res)
{
    char where[160];
    int reasons = 0;
    for (size_t r = 0; r < res->n; r++) {
        const struct harness_kafka_record *rec = &res->v[r];
        json_t *ce = json_loadb(rec->value ? rec->value : "", rec->value_len, 0, NULL);
        const char *reason =
            json_string_value(json_object_get(json_object_get(ce, "data"), "reason"));
        if (reason && *reason)
            reasons++;
        json_decref(ce);
        snprintf(where, sizeof(where), "delivery.result record %zu", r);
        if (rec->value)
            check_clean(where, rec->value, rec->value_len);
        for (size_t k = 0; k < rec->nheaders; k++)
            if (rec->headers[k].value)
                check_clean(where, rec->headers[k].value, rec->headers[k].value_len);
    }
    /* The failures below all carry a reason: the check above had something to look at. */
    H_CHECKF(h, reasons >= 5, "only %d delivery results carry a reason", reasons);
}

int main(void)
{
    struct harness_proc *broker, *sandbox, *ingest_p, *deliver;
    struct harness_kafka_records res = {0};
    char m1[128] = "", r1[128] = "", q1[128] = "", m2[128] = "", r2[128] = "", q2[128] = "";
    char m3[128] = "";
    char oc[32];
    const char *const broker_env[] = {"PM_LOG_LEVEL=debug", NULL};

    h = harness_init("phi_leaks");
    broker = harness_devbroker_start(h, 1, 2, broker_env, bootstrap, sizeof(bootstrap));
    if (!H_CHECK(h, broker != NULL))
        return harness_finish(h);
    sandbox = start_sandbox();
    if (!sandbox)
        return harness_finish(h);
    sandbox_ok("POST", "/_sandbox/resources",
               json_pack("[o, o, o]", marked_patient(),
                         marked_communication(COMM3, "preparation",
                                              "<p>PHIMARK-DRAFT for PHIMARK-GIVEN</p>"),
                         marked_communication(COMM1, "completed",
                                              "<p>Dear PHIMARK-GIVEN, PHIMARK-TEXT: your "
                                              "results &amp; PHIMARK-TEXT-B.</p>")));
    ingest_p = start_ingest();
    deliver = start_deliver();
    if (!ingest_p || !deliver)
        return harness_finish(h);

    /* Round 1: everything succeeds. A notification (shape a, signed), a reply and a check-in
     * (bearer). */
    ingest_post("/v1/canvas/messages",
                json_pack("{s:s, s:s}", "communication_id", COMM1, "patient_id", PATIENT), 1, 202,
                m1, sizeof(m1));
    ingest_post("/v1/patient/replies",
                json_pack("{s:s, s:s, s:{s:s}, s:s}", "patient_id", PATIENT, "text",
                          "PHIMARK-REPLY: call me at 555-773-1000 or " EMAIL, "recipient",
                          "practitioner_id", MORGAN, "in_reply_to", COMM1),
                0, 202, r1, sizeof(r1));
    ingest_post("/v1/patient/questionnaire-responses",
                json_pack("{s:s, s:{s:s}, s:[{s:s, s:s}, {s:s, s:[s]}]}", "patient_id", PATIENT,
                          "questionnaire", "id", QUEST, "answers", "link_id", Q_TEXT,
                          "value_string", "PHIMARK-ANSWER: swimming with PHIMARK-NAME-7731",
                          "link_id", Q_ONE, "value_codes", "LA33-6"),
                0, 202, q1, sizeof(q1));
    {
        const char *ids[] = {m1, r1, q1};
        const size_t counts[] = {3, 1, 1};
        wait_results(ids, counts, 3, &res, 40000);
        check_first_round(&res, m1, r1, q1);
    }
    learn_token_prefix();
    check_scanner();

    /* Round 2: failures. Expired tokens (a 401 and one refresh when the draft is read), then the
     * faults; an embedded Communication (shape b); a draft (a plugin event, shape c: skipped); a
     * reply Canvas refuses; a marked answer to an unknown question; refused ingest requests; an
     * unparseable and an unknown-type record. */
    sandbox_ok("POST", "/_sandbox/tokens/expire", NULL);
    add_faults();
    ingest_post("/v1/canvas/messages",
                marked_communication(COMM2, "completed",
                                     "<p>PHIMARK-TEXT-2 for PHIMARK-NAME-7731 &lt;"
                                     "phimark.email@example.com&gt;</p>"),
                1, 202, m2, sizeof(m2));
    ingest_post("/v1/canvas/messages",
                json_pack("{s:s, s:{s:s}, s:{s:{s:s}}}", "type", "MESSAGE_CREATED", "target", "id",
                          COMM3, "context", "patient", "id", PATIENT),
                1, 202, m3, sizeof(m3));
    ingest_post("/v1/patient/replies",
                json_pack("{s:s, s:s, s:{s:s}}", "patient_id", PATIENT, "text",
                          "PHIMARK-REPLY-2 from 5557731000", "recipient", "practitioner_id",
                          MORGAN),
                0, 202, r2, sizeof(r2));
    ingest_post("/v1/patient/questionnaire-responses",
                json_pack("{s:s, s:{s:s}, s:[{s:s, s:[s]}, {s:s, s:s}]}", "patient_id", PATIENT,
                          "questionnaire", "id", QUEST, "answers", "link_id", Q_MULTI,
                          "value_codes", "EXACT_SWIM", "link_id", "no-such-question",
                          "value_string", "PHIMARK-ANSWER-2 and 5557731000"),
                0, 202, q2, sizeof(q2));
    ingest_refused("/v1/patient/replies", "Authorization: Bearer PHIMARK-WRONG-TOKEN",
                   "{\"patient_id\": \"" PATIENT "\", \"text\": \"PHIMARK-REPLY-X\"}", 401);
    ingest_refused("/v1/patient/replies", "Authorization: Bearer " BEARER,
                   "{\"patient_id\": \"PHIMARK-NOT-AN-ID\", \"text\": 5557731000, "
                   "\"recipient\": {\"email\": \"" EMAIL "\"}}",
                   400);
    ingest_refused("/v1/patient/replies", "Authorization: Bearer " BEARER,
                   "{\"patient_id\": \"PHIMARK-broken json", 400);
    produce("pm.canvas.messages", PATIENT,
            "{\"specversion\": \"1.0\", \"id\": \"phi-invalid-1\", \"note\": \"PHIMARK-INVALID "
            "5557731000\", \"data\": {\"text\": PHIMARK-BAREWORD}}");
    produce("pm.canvas.messages", PATIENT,
            "{\"specversion\": \"1.0\", \"id\": \"phi-unknown-1\", \"source\": \"test\", "
            "\"type\": \"patient.PHIMARK.v1\", \"time\": \"2026-03-02T15:04:05Z\", "
            "\"subject\": \"Patient/" PATIENT "\", \"datacontenttype\": \"application/json\", "
            "\"data\": {\"text\": \"PHIMARK-UNKNOWN\", \"email\": \"" EMAIL "\"}}");
    {
        const char *ids[] = {m2, r2, q2, m3};
        const size_t counts[] = {3, 1, 1, 1};
        wait_results(ids, counts, 4, &res, 40000);
        H_CHECKF(h, result_outcome(&res, m2, "webhook", oc, sizeof(oc)) && !strcmp(oc, "failed"),
                 "the webhook 400 did not fail the webhook channel");
        H_CHECKF(h, result_outcome(&res, m2, "sms", oc, sizeof(oc)) && !strcmp(oc, "failed"),
                 "the Twilio 400 did not fail the sms channel");
        H_CHECKF(h, result_outcome(&res, m2, "email", oc, sizeof(oc)) && !strcmp(oc, "failed"),
                 "the SendGrid 400 did not fail the email channel");
        H_CHECKF(h, result_outcome(&res, r2, "canvas", oc, sizeof(oc)) && !strcmp(oc, "failed"),
                 "Canvas's 400 did not fail the reply");
        H_CHECKF(h, result_outcome(&res, q2, "canvas", oc, sizeof(oc)) && !strcmp(oc, "failed"),
                 "the unknown question did not fail the check-in");
        H_CHECKF(h, result_outcome(&res, m3, "webhook", oc, sizeof(oc)) && !strcmp(oc, "skipped"),
                 "the draft was not skipped");
    }
    {
        const char *dlq_ids[] = {COMM2, "PHIMARK-REPLY-2", "PHIMARK-ANSWER-2", "phi-invalid-1",
                                 "phi-unknown-1"};
        check_dlq(dlq_ids, 5);
    }
    check_results(&res);
    harness_kafka_records_free(&res);

    /* While everything runs: argv never, and environ not when the secret came as a file. */
    check_proc(broker, "pm-devbroker", 0);
    check_proc(sandbox, "pm-sandbox", 1);
    check_proc(ingest_p, "pm-ingest", 0);
    check_proc(deliver, "pm-deliver", 1);
    {
        /* pm-ingest had its webhook secret as a file: that one is not in its environment. */
        char path[64];
        size_t len = 0;
        char *env;
        snprintf(path, sizeof(path), "/proc/%d/environ", harness_proc_pid(ingest_p));
        env = harness_file_read(path, &len);
        H_CHECKF(h, env && find_ci(env, len, IN_KEY_B64) < 0,
                 "pm-ingest's environment holds the webhook secret given as a file");
        H_CHECKF(h, env && find_ci(env, len, BEARER) >= 0,
                 "pm-ingest's environment lacks the bearer token (the check above is blind)");
        free(env);
    }

    /* Stop in order (shutdown logs count too), then read every output. */
    H_CHECK_INT(h, harness_proc_stop(deliver, 20000), 0);
    H_CHECK_INT(h, harness_proc_stop(ingest_p, 15000), 0);
    H_CHECK_INT(h, harness_proc_stop(sandbox, 10000), 0);
    harness_proc_stop(broker, 10000);
    {
        /* The debug level was really on, and the error paths really logged. */
        char *e = harness_proc_stderr(deliver);
        H_CHECKF(h, e && strstr(e, "\"level\":\"debug\""), "pm-deliver logged nothing at debug");
        H_CHECKF(h, e && strstr(e, "record sent to the DLQ"), "pm-deliver logged no DLQ record");
        H_CHECKF(h, e && strstr(e, "retrying later"), "pm-deliver logged no retry");
        H_CHECKF(h, e && strstr(e, "\"http_status\":401"), "pm-deliver met no 401");
        free(e);
        e = harness_proc_stderr(ingest_p);
        H_CHECKF(h, e && strstr(e, "\"level\":\"debug\""), "pm-ingest logged nothing at debug");
        free(e);
    }
    check_output(broker, "pm-devbroker");
    check_output(sandbox, "pm-sandbox");
    check_output(ingest_p, "pm-ingest");
    check_output(deliver, "pm-deliver");
    return harness_finish(h);
}
