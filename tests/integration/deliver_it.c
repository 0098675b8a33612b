/* Shared steps of the pm-deliver staff-message tests: processes, pm-sandbox, events, results. */
#include "deliver_it.h"

#include "kafka_conf.h"
#include "kafka_producer.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct harness *dit_h;
char dit_bootstrap[512];
char dit_sb[128];

/* ---- processes ---- */

int dit_start(struct harness *h, int partitions)
{
    const char *sb_argv[] = {"pm-sandbox", NULL};
    const char *sb_env[] = {"PM_SANDBOX_LISTEN=127.0.0.1:0", "PM_SANDBOX_WEBHOOK_SECRET=" DIT_WHSEC,
                            "PM_SANDBOX_FIXTURES", "PM_SANDBOX_TOKEN_TTL_S", NULL};
    struct harness_proc *kafka, *sandbox;
    char line[256];
    const char *at;

    dit_h = h;
    kafka = harness_devbroker_start(h, 1, partitions, NULL, dit_bootstrap, sizeof(dit_bootstrap));
    if (!H_CHECK(h, kafka != NULL))
        return -1;
    sandbox = harness_proc_start(h, "sandbox", sb_argv, sb_env);
    if (!H_CHECK(h, sandbox && harness_proc_read_line(sandbox, line, sizeof(line), 10000) == 0))
        return -1;
    at = strstr(line, "http://");
    if (!H_CHECKF(h, at != NULL, "pm-sandbox said: %s", line))
        return -1;
    snprintf(dit_sb, sizeof(dit_sb), "%s", at);
    return 0;
}

/* Index of the entry of @p env naming the same variable as @p e, or -1. */
static int dit_env_find(const char *const *env, size_t n, const char *e)
{
    size_t nl = strcspn(e, "=");
    for (size_t i = 0; i < n; i++)
        if (strcspn(env[i], "=") == nl && strncmp(env[i], e, nl) == 0)
            return (int)i;
    return -1;
}

struct harness_proc *dit_deliver_spawn(const char *name, const char *arg,
                                       const char *const *extra_env, char *base, size_t len)
{
    static char brokers[600], fhir[200], token[200], hook[200], twilio[200], sendgrid[200];
    char listen[64];
    const char *env[64];
    size_t n = 0;
    const char *argv[] = {"pm-deliver", arg, NULL};
    int port = harness_free_port();

    snprintf(brokers, sizeof(brokers), "PM_KAFKA_BROKERS=%s", dit_bootstrap);
    snprintf(fhir, sizeof(fhir), "PM_CANVAS_FHIR_URL=%s/fhir", dit_sb);
    snprintf(token, sizeof(token), "PM_CANVAS_TOKEN_URL=%s/auth/token/", dit_sb);
    snprintf(hook, sizeof(hook), "PM_WEBHOOK_URL=%s/webhook", dit_sb);
    snprintf(twilio, sizeof(twilio), "PM_TWILIO_API_URL=%s/twilio", dit_sb);
    snprintf(sendgrid, sizeof(sendgrid), "PM_SENDGRID_API_URL=%s/sendgrid", dit_sb);
    snprintf(listen, sizeof(listen), "PM_DELIVER_LISTEN=127.0.0.1:%d", port);
    const char *defaults[] = {brokers,
                              fhir,
                              token,
                              hook,
                              twilio,
                              sendgrid,
                              listen,
                              "PM_CANVAS_INSTANCE",
                              "PM_CANVAS_CLIENT_ID=sandbox-client",
                              "PM_CANVAS_CLIENT_SECRET=" DIT_CLIENT_SEC,
                              "PM_DELIVER_CHANNELS=webhook,sms,email",
                              "PM_WEBHOOK_SECRET=" DIT_WHSEC,
                              "PM_TWILIO_ACCOUNT_SID=" DIT_TWILIO_SID,
                              "PM_TWILIO_AUTH_TOKEN=" DIT_TWILIO_TOK,
                              "PM_TWILIO_FROM=" DIT_TWILIO_FROM,
                              "PM_SENDGRID_API_KEY=" DIT_SG_KEY,
                              "PM_SENDGRID_FROM=" DIT_SG_FROM,
                              "PM_EMAIL_SUBJECT",
                              "PM_DELIVER_CONTACT_CATEGORIES=ARI",
                              "PM_DEFAULT_PRACTITIONER_ID",
                              "PM_DELIVER_GROUP_ID=pm-deliver-it",
                              "PM_RETRY_BASE_MS=50",
                              "PM_RETRY_MAX_BACKOFF_MS=500",
                              "PM_RETRY_DEADLINE_MS=60000",
                              "PM_HTTP_TIMEOUT_MS=5000",
                              "PM_DELIVER_DRAIN_TIMEOUT_MS=15000",
                              "PM_KAFKA_CONFIG_FILE",
                              "PM_LOG_LEVEL=debug",
                              NULL};

    for (size_t i = 0; defaults[i]; i++)
        env[n++] = defaults[i];
    for (size_t i = 0; extra_env && extra_env[i] && n < 63; i++) {
        int at = dit_env_find(env, n, extra_env[i]);
        if (at >= 0)
            env[at] = extra_env[i];
        else
            env[n++] = extra_env[i];
    }
    env[n] = NULL;
    snprintf(base, len, "http://127.0.0.1:%d", port);
    return harness_proc_start(dit_h, name, argv, env);
}

struct harness_proc *dit_deliver_start(const char *name, const char *const *extra_env, char *base,
                                       size_t len, int ready_ms)
{
    struct harness_proc *p = dit_deliver_spawn(name, NULL, extra_env, base, len);
    char url[160];

    snprintf(url, sizeof(url), "%s/readyz", base);
    if (!H_CHECKF(dit_h, p && harness_http_wait(url, 200, ready_ms) == 0, "%s did not become ready",
                  name))
        return NULL;
    return p;
}

/* ---- pm-sandbox ---- */

json_t *dit_sb_call(const char *method, const char *path, const char *body, long *status)
{
    struct harness_http_response r = {0};
    const char *const hdr[] = {"Content-Type: application/json", NULL};
    char url[1024];
    json_t *j = NULL;

    snprintf(url, sizeof(url), "%s%s", dit_sb, path);
    harness_http(method, url, body ? hdr : NULL, body, body ? strlen(body) : 0, 15000, &r);
    if (status)
        *status = r.status;
    if (r.body_len)
        j = json_loadb(r.body, r.body_len, JSON_DECODE_ANY, NULL);
    harness_http_response_free(&r);
    return j;
}

void dit_sb_ok(const char *method, const char *path, const char *body)
{
    long st = 0;
    json_t *j = dit_sb_call(method, path, body, &st);
    H_CHECKF(dit_h, st >= 200 && st < 300, "%s %s answered %ld", method, path, st);
    json_decref(j);
}

json_t *dit_sb_requests(const char *query, long long since)
{
    char path[512];
    json_t *j, *reqs;
    snprintf(path, sizeof(path), "/_sandbox/requests?since=%lld%s%s", since,
             query && *query ? "&" : "", query ? query : "");
    j = dit_sb_call("GET", path, NULL, NULL);
    reqs = json_incref(json_object_get(j, "requests"));
    json_decref(j);
    if (!json_is_array(reqs)) {
        H_FAIL(dit_h, "GET %s: no requests array", path);
        json_decref(reqs);
        return json_array();
    }
    return reqs;
}

long long dit_sb_mark(void)
{
    json_t *all = dit_sb_requests(NULL, 0);
    size_t n = json_array_size(all);
    long long seq = n ? json_integer_value(json_object_get(json_array_get(all, n - 1), "seq")) : 0;
    json_decref(all);
    return seq;
}

json_t *dit_req_body(const json_t *req)
{
    const char *b = json_string_value(json_object_get(req, "body"));
    return b ? json_loads(b, JSON_DECODE_ANY, NULL) : NULL;
}

const char *dit_req_header(const json_t *req, const char *name)
{
    return json_string_value(json_object_get(json_object_get(req, "headers"), name));
}

/* Days from 1970-01-01 to the civil date y-m-d (proleptic Gregorian). */
static long long dit_days(int y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

long long dit_req_ms(const json_t *req)
{
    const char *ts = json_string_value(json_object_get(req, "ts"));
    int y, mo, d, hh, mm, ss, ms;

    if (!ts || sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &y, &mo, &d, &hh, &mm, &ss, &ms) != 7)
        return -1;
    return ((dit_days(y, mo, d) * 24 + hh) * 60 + mm) * 60000LL + ss * 1000LL + ms;
}

static int dit_hex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *dit_form_value(const char *form, const char *name)
{
    size_t nl = strlen(name);
    const char *p = form;

    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t flen = end ? (size_t)(end - p) : strlen(p);
        if (flen > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            char *out = malloc(flen + 1);
            size_t o = 0;
            if (!out)
                return NULL;
            for (size_t i = nl + 1; i < flen; i++) {
                int hi, lo;
                if (p[i] == '+') {
                    out[o++] = ' ';
                } else if (p[i] == '%' && i + 2 < flen && (hi = dit_hex(p[i + 1])) >= 0 &&
                           (lo = dit_hex(p[i + 2])) >= 0) {
                    out[o++] = (char)(hi * 16 + lo);
                    i += 2;
                } else {
                    out[o++] = p[i];
                }
            }
            out[o] = '\0';
            return out;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

json_t *dit_twilio_for(const char *text, long long since)
{
    json_t *all = dit_sb_requests("target=twilio", since), *out = json_array(), *r;
    size_t i;
    json_array_foreach(all, i, r)
    {
        char *body = dit_form_value(json_string_value(json_object_get(r, "body")), "Body");
        if (body && !strcmp(body, text))
            json_array_append(out, r);
        free(body);
    }
    json_decref(all);
    return out;
}

json_t *dit_sendgrid_for(const char *text, long long since)
{
    json_t *all = dit_sb_requests("target=sendgrid", since), *out = json_array(), *r;
    size_t i;
    json_array_foreach(all, i, r)
    {
        json_t *b = dit_req_body(r);
        const char *plain = json_string_value(
            json_object_get(json_array_get(json_object_get(b, "content"), 0), "value"));
        if (plain && !strcmp(plain, text))
            json_array_append(out, r);
        json_decref(b);
    }
    json_decref(all);
    return out;
}

json_t *dit_webhooks_for(const char *comm_id, long long since)
{
    json_t *all = dit_sb_requests("target=webhook", since), *out = json_array(), *r;
    size_t i;
    json_array_foreach(all, i, r)
    {
        const char *id = dit_req_header(r, "webhook-id");
        if (id && !strcmp(id, comm_id))
            json_array_append(out, r);
    }
    json_decref(all);
    return out;
}

/* ---- Kafka ---- */

void dit_produce_raw(const char *key, const char *value, int32_t *partition, int64_t *offset)
{
    static const char *const headers[] = {"content-type",
                                          "application/cloudevents+json; charset=utf-8", NULL};
    /* pm-ingest partitions with murmur2 (the Java client's): keys land where ingest puts them. */
    static const char *const conf[] = {"partitioner", "murmur2_random", NULL};
    struct harness_kafka_produce req = {0};
    char err[512];

    req.topic = DIT_T_MESSAGES;
    req.key = key;
    req.value = value;
    req.value_len = strlen(value);
    req.headers = headers;
    req.conf = conf;
    if (partition)
        *partition = -1;
    if (offset)
        *offset = -1;
    H_CHECKF(dit_h,
             harness_kafka_produce(dit_bootstrap, &req, partition, offset, err, sizeof(err)) == 0,
             "produce for %s: %s", key, err);
}

char *dit_event_value(const char *event_id, const char *patient, const char *comm, json_t *embedded)
{
    char subject[96];
    json_t *data = json_pack("{s:s, s:s}", "communication_id", comm, "patient_id", patient), *ce;
    char *value;

    if (embedded)
        json_object_set_new(data, "communication", embedded);
    snprintf(subject, sizeof(subject), "Patient/%s", patient);
    ce = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "specversion", "1.0", "id", event_id,
                   "source", "urn:pm:test-deliver", "type", "canvas.message.v1", "time",
                   "2026-03-02T15:05:00Z", "subject", subject, "datacontenttype",
                   "application/json", "data", data);
    value = ce ? json_dumps(ce, JSON_COMPACT) : NULL;
    json_decref(ce);
    H_CHECKF(dit_h, value != NULL, "cannot build event %s", event_id);
    return value;
}

void dit_message(const char *event_id, const char *patient, const char *comm, json_t *embedded)
{
    char *value = dit_event_value(event_id, patient, comm, embedded);
    if (value)
        dit_produce_raw(patient, value, NULL, NULL);
    free(value);
}

static void dit_on_ack(void *opaque, const struct kafka_ack *ack)
{
    if (ack->err == 0)
        atomic_fetch_add((atomic_size_t *)opaque, 1);
}

void dit_messages(const char *const *event_ids, const char *const *patients,
                  const char *const *comms, size_t n)
{
    struct kafka_settings ks = {dit_bootstrap, 1, NULL, NULL};
    struct kafka_producer *p;
    atomic_size_t acked;
    char err[256];
    rd_kafka_conf_t *conf = kafka_conf_build(&ks, err, sizeof(err));

    atomic_init(&acked, 0);
    p = conf ? kafka_producer_new(conf, 30000, err, sizeof(err)) : NULL;
    if (!H_CHECKF(dit_h, p != NULL, "producer: %s", err))
        return;
    for (size_t i = 0; i < n; i++) {
        char *value = dit_event_value(event_ids[i], patients[i], comms[i], NULL);
        rd_kafka_headers_t *hd;
        if (!value)
            continue;
        hd = rd_kafka_headers_new(1);
        rd_kafka_header_add(hd, "content-type", -1, "application/cloudevents+json; charset=utf-8",
                            -1);
        /* hd is owned by the producer now, whatever the outcome. */
        H_CHECKF(dit_h,
                 kafka_producer_send(p, DIT_T_MESSAGES, patients[i], strlen(patients[i]), value,
                                     strlen(value), hd, dit_on_ack, &acked) == 0,
                 "cannot produce %s", event_ids[i]);
        free(value);
    }
    kafka_producer_flush(p, 30000);
    H_CHECKF(dit_h, atomic_load(&acked) == n, "%zu of %zu events acknowledged", atomic_load(&acked),
             n);
    kafka_producer_destroy(p, 5000);
}

json_t *dit_results_list(void)
{
    struct harness_kafka_records recs = {0};
    json_t *list = json_array();
    char err[256];

    harness_kafka_read(dit_bootstrap, DIT_T_RESULTS, 0, 10000, &recs, err, sizeof(err));
    for (size_t i = 0; i < recs.n; i++) {
        json_t *ce =
            json_loadb(recs.v[i].value ? recs.v[i].value : "", recs.v[i].value_len, 0, NULL);
        json_t *data = json_object_get(ce, "data");
        if (!json_is_string(json_object_get(data, "source_event_id"))) {
            H_FAIL(dit_h, "a record on %s is not a delivery result", DIT_T_RESULTS);
            json_decref(ce);
            continue;
        }
        H_CHECK_STR(dit_h, json_string_value(json_object_get(ce, "type")), "delivery.result.v1");
        json_object_set_new(data, "_key", json_string(recs.v[i].key ? recs.v[i].key : ""));
        json_object_set(data, "_subject", json_object_get(ce, "subject"));
        json_object_set_new(data, "_partition", json_integer(recs.v[i].partition));
        json_object_set_new(data, "_ts_ms", json_integer(recs.v[i].timestamp_ms));
        json_array_append(list, data);
        json_decref(ce);
    }
    harness_kafka_records_free(&recs);
    return list;
}

json_t *dit_results(void)
{
    json_t *all = dit_results_list(), *map = json_object(), *data;
    size_t i;

    json_array_foreach(all, i, data)
    {
        const char *src = json_string_value(json_object_get(data, "source_event_id"));
        json_t *list = json_object_get(map, src);
        if (!list) {
            list = json_array();
            json_object_set_new(map, src, list);
        }
        json_array_append(list, data);
    }
    json_decref(all);
    return map;
}

json_t *dit_wait_results(const char *const *ids, size_t n, size_t per_event, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        json_t *map = dit_results();
        size_t missing = n;
        for (size_t i = 0; i < n; i++) {
            if (json_array_size(json_object_get(map, ids[i])) >= per_event)
                missing--;
        }
        if (missing == 0)
            return map;
        if (harness_now_ms() > deadline) {
            for (size_t i = 0; i < n; i++) {
                size_t got = json_array_size(json_object_get(map, ids[i]));
                if (got < per_event) {
                    H_FAIL(dit_h, "%zu of %zu events without their results; %s has %zu of %zu",
                           missing, n, ids[i], got, per_event);
                    break;
                }
            }
            return map;
        }
        json_decref(map);
        harness_sleep_ms(150);
    }
}

json_t *dit_result(json_t *list, const char *channel)
{
    json_t *r;
    size_t i;
    json_array_foreach(list, i, r)
    {
        const char *ch = json_string_value(json_object_get(r, "channel"));
        if (ch && !strcmp(ch, channel))
            return r;
    }
    return NULL;
}

size_t dit_result_count(json_t *list, const char *channel)
{
    json_t *r;
    size_t i, n = 0;
    json_array_foreach(list, i, r)
    {
        const char *ch = json_string_value(json_object_get(r, "channel"));
        n += ch && !strcmp(ch, channel);
    }
    return n;
}

void dit_check_result(json_t *list, const char *channel, const char *outcome, const char *reason,
                      int attempts, const char *what)
{
    json_t *r = dit_result(list, channel);
    const char *got;

    if (!H_CHECKF(dit_h, r != NULL, "%s: no %s result", what, channel))
        return;
    H_CHECKF(dit_h, dit_result_count(list, channel) == 1, "%s: %zu %s results", what,
             dit_result_count(list, channel), channel);
    got = json_string_value(json_object_get(r, "outcome"));
    H_CHECKF(dit_h, got && !strcmp(got, outcome), "%s: %s outcome %s, expected %s", what, channel,
             got ? got : "(none)", outcome);
    got = json_string_value(json_object_get(r, "reason"));
    if (reason && !*reason)
        H_CHECKF(dit_h, got == NULL, "%s: %s has reason \"%s\"", what, channel, got);
    else if (reason)
        H_CHECKF(dit_h, got && !strcmp(got, reason), "%s: %s reason \"%s\", expected \"%s\"", what,
                 channel, got ? got : "(none)", reason);
    if (attempts >= 0)
        H_CHECKF(dit_h, json_integer_value(json_object_get(r, "attempts")) == attempts,
                 "%s: %s attempts %lld, expected %d", what, channel,
                 (long long)json_integer_value(json_object_get(r, "attempts")), attempts);
    got = json_string_value(json_object_get(r, "kind"));
    H_CHECKF(dit_h, got && !strcmp(got, "message"), "%s: %s kind is not message", what, channel);
    /* Results are keyed and subject-ed like the event: per-patient order holds for them too. */
    H_CHECKF(dit_h,
             json_string_value(json_object_get(r, "_subject")) &&
                 !strncmp(json_string_value(json_object_get(r, "_subject")), "Patient/", 8) &&
                 !strcmp(json_string_value(json_object_get(r, "_subject")) + 8,
                         json_string_value(json_object_get(r, "_key"))),
             "%s: %s result key does not match its subject", what, channel);
}

int dit_wait_dlq(const char *needle, struct harness_kafka_records *recs,
                 const struct harness_kafka_record **rec, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    char err[256];

    *rec = NULL;
    for (;;) {
        memset(recs, 0, sizeof(*recs));
        harness_kafka_read(dit_bootstrap, DIT_T_DLQ, 0, 10000, recs, err, sizeof(err));
        for (size_t i = 0; i < recs->n; i++) {
            if (recs->v[i].value && strstr(recs->v[i].value, needle)) {
                *rec = &recs->v[i];
                return 0;
            }
        }
        if (harness_now_ms() > deadline) {
            H_FAIL(dit_h, "no record containing \"%s\" on %s", needle, DIT_T_DLQ);
            return -1;
        }
        harness_kafka_records_free(recs);
        harness_sleep_ms(150);
    }
}

void dit_check_log_clean(struct harness_proc *p, const char *const *needles)
{
    char *log = p ? harness_proc_stderr(p) : NULL;
    if (!H_CHECKF(dit_h, log != NULL, "no stderr to check"))
        return;
    for (const char *const *n = needles; *n; n++)
        H_CHECKF(dit_h, strstr(log, *n) == NULL, "pm-deliver's log contains \"%s\"", *n);
    /* pm-sandbox's access tokens are 30 letters and digits; ids in the log are 32 (patients,
     * staff), 34 (Twilio sids) or dashed: a run of exactly 30 can only be a token. */
    {
        const char *c = log, *token = NULL;
        while (*c && !token) {
            size_t run = 0;
            while (isalnum((unsigned char)c[run]))
                run++;
            if (run == 30)
                token = c;
            c += run ? run : 1;
        }
        H_CHECKF(dit_h, token == NULL,
                 "pm-deliver's log holds something shaped like a token at byte %ld",
                 token ? (long)(token - log) : -1L);
    }
    free(log);
}

/* ---- fault tests: fleets of patients, restarts, tallies ---- */

int dit_start_env(struct harness *h, int partitions, const char *const *sandbox_env)
{
    const char *sb_argv[] = {"pm-sandbox", NULL};
    const char *env[16];
    struct harness_proc *kafka, *sandbox;
    char line[256];
    const char *at;
    size_t n = 0;

    dit_h = h;
    kafka = harness_devbroker_start(h, 1, partitions, NULL, dit_bootstrap, sizeof(dit_bootstrap));
    if (!H_CHECK(h, kafka != NULL))
        return -1;
    env[n++] = "PM_SANDBOX_LISTEN=127.0.0.1:0";
    env[n++] = "PM_SANDBOX_WEBHOOK_SECRET=" DIT_WHSEC;
    env[n++] = "PM_SANDBOX_FIXTURES";
    env[n++] = "PM_SANDBOX_TOKEN_TTL_S";
    for (size_t i = 0; sandbox_env && sandbox_env[i] && n < 15; i++)
        env[n++] = sandbox_env[i]; /* later entries replace earlier ones */
    env[n] = NULL;
    sandbox = harness_proc_start(h, "sandbox", sb_argv, env);
    if (!H_CHECK(h, sandbox && harness_proc_read_line(sandbox, line, sizeof(line), 10000) == 0))
        return -1;
    at = strstr(line, "http://");
    if (!H_CHECKF(h, at != NULL, "pm-sandbox said: %s", line))
        return -1;
    snprintf(dit_sb, sizeof(dit_sb), "%s", at);
    return 0;
}

void dit_kafka_props(char *env, size_t len)
{
    char path[400];
    FILE *f;

    env[0] = '\0';
    harness_path(dit_h, "kafka.properties", path, sizeof(path));
    f = fopen(path, "w");
    if (!H_CHECKF(dit_h, f != NULL, "cannot write %s", path))
        return;
    fputs("# pm-deliver instances that are killed or restarted: a member that left is replaced\n"
          "# once its session timed out\nsession.timeout.ms=6000\nheartbeat.interval.ms=1000\n",
          f);
    H_CHECK(dit_h, fclose(f) == 0);
    snprintf(env, len, "PM_KAFKA_CONFIG_FILE=%s", path);
}

void dit_fleet_patient(int p, char *out, size_t len)
{
    snprintf(out, len, "%08x%024x", 0xf0000000u + (unsigned)p, 0u);
}

void dit_fleet_comm(int p, int i, char *out, size_t len)
{
    snprintf(out, len, "%08x-0000-4000-8000-%012x", 0xf1000000u + (unsigned)p, (unsigned)i);
}

void dit_fleet_event(int p, int i, char *out, size_t len)
{
    snprintf(out, len, "ff-%03d-%03d", p, i);
}

int dit_fleet_parse(const char *comm_id, int *p, int *i)
{
    unsigned pp, ii;
    char again[40];

    if (!comm_id || sscanf(comm_id, "%8x-0000-4000-8000-%12x", &pp, &ii) != 2 || pp < 0xf1000000u ||
        pp > 0xf100ffffu)
        return -1;
    dit_fleet_comm((int)(pp - 0xf1000000u), (int)ii, again, sizeof(again));
    if (strcmp(again, comm_id) != 0)
        return -1;
    *p = (int)(pp - 0xf1000000u);
    *i = (int)ii;
    return 0;
}

void dit_fleet_seed(int np, int per)
{
    json_t *all = json_array();
    char pid[40], cid[40], ref[64], sender[64], text[96], *body;

    snprintf(sender, sizeof(sender), "Practitioner/%s", DIT_MORGAN);
    for (int p = 0; p < np; p++) {
        dit_fleet_patient(p, pid, sizeof(pid));
        json_array_append_new(all,
                              json_pack("{s:s, s:s, s:b, s:[{s:s}]}", "resourceType", "Patient",
                                        "id", pid, "active", 1, "name", "text", "Fleet Person"));
        snprintf(ref, sizeof(ref), "Patient/%s", pid);
        for (int i = 0; i < per; i++) {
            dit_fleet_comm(p, i, cid, sizeof(cid));
            snprintf(text, sizeof(text), "<p>Fleet message %d for person %d</p>", i, p);
            json_array_append_new(
                all, json_pack("{s:s, s:s, s:s, s:s, s:[{s:s}], s:{s:s}, s:[{s:s}]}",
                               "resourceType", "Communication", "id", cid, "status", "completed",
                               "sent", "2026-03-02T16:00:00+00:00", "recipient", "reference", ref,
                               "sender", "reference", sender, "payload", "contentString", text));
        }
    }
    body = json_dumps(all, JSON_COMPACT);
    H_CHECK(dit_h, body != NULL);
    if (body)
        dit_sb_ok("POST", "/_sandbox/resources", body);
    free(body);
    json_decref(all);
}

void dit_fleet_produce(int p0, int np, int i0, int ni)
{
    size_t n = (size_t)np * (size_t)ni, k = 0;
    char(*buf)[3][40] = calloc(n ? n : 1, sizeof(*buf));
    const char **eids = calloc(n ? n : 1, sizeof(*eids));
    const char **pids = calloc(n ? n : 1, sizeof(*pids));
    const char **cids = calloc(n ? n : 1, sizeof(*cids));

    if (H_CHECK(dit_h, buf && eids && pids && cids)) {
        for (int i = i0; i < i0 + ni; i++) {
            for (int p = p0; p < p0 + np; p++, k++) {
                dit_fleet_event(p, i, buf[k][0], sizeof(buf[k][0]));
                dit_fleet_patient(p, buf[k][1], sizeof(buf[k][1]));
                dit_fleet_comm(p, i, buf[k][2], sizeof(buf[k][2]));
                eids[k] = buf[k][0];
                pids[k] = buf[k][1];
                cids[k] = buf[k][2];
            }
        }
        dit_messages(eids, pids, cids, n);
    }
    free(cids);
    free(pids);
    free(eids);
    free(buf);
}

json_t *dit_webhook_ids(long long since)
{
    json_t *all = dit_sb_requests("target=webhook", since), *out = json_array(), *r;
    size_t i;
    int bad = 0;

    json_array_foreach(all, i, r)
    {
        json_t *b;
        const char *id = dit_req_header(r, "webhook-id"), *comm;
        if (json_integer_value(json_object_get(r, "status")) != 200)
            continue;
        b = dit_req_body(r);
        comm = json_string_value(json_object_get(b, "communication_id"));
        if (!id || !comm || strcmp(id, comm) != 0) {
            if (bad++ < 3)
                H_FAIL(dit_h, "webhook request with webhook-id %s for Communication %s",
                       id ? id : "(none)", comm ? comm : "(none)");
        } else {
            json_array_append_new(out, json_string(comm));
        }
        json_decref(b);
    }
    json_decref(all);
    return out;
}

void dit_fleet_tally(const json_t *ids, int p0, int np, int i0, int ni, struct dit_tally *t,
                     const char *what)
{
    int *count = calloc((size_t)np * (size_t)ni + 1, sizeof(*count));
    int *next = calloc((size_t)np + 1, sizeof(*next));
    json_t *v;
    size_t k;
    int missing = 0;

    memset(t, 0, sizeof(*t));
    t->messages = np * ni;
    if (!H_CHECK(dit_h, count && next))
        goto out;
    for (int p = 0; p < np; p++)
        next[p] = i0;
    json_array_foreach(ids, k, v)
    {
        int p, i;
        if (dit_fleet_parse(json_string_value(v), &p, &i) != 0 || p < p0 || p >= p0 + np ||
            i < i0 || i >= i0 + ni)
            continue;
        if (count[(p - p0) * ni + (i - i0)]++ > 0) {
            t->duplicates++;
            if (count[(p - p0) * ni + (i - i0)] == 2)
                t->dup_messages++;
            continue;
        }
        t->delivered++;
        /* The first delivery of each message, per patient, in production order. */
        if (i != next[p - p0] && t->order_errors++ < 3)
            H_FAIL(dit_h, "%s: patient %d's message %d was first delivered when %d was due", what,
                   p, i, next[p - p0]);
        if (i >= next[p - p0])
            next[p - p0] = i + 1;
    }
    for (int p = p0; p < p0 + np; p++)
        for (int i = i0; i < i0 + ni; i++)
            if (!count[(p - p0) * ni + (i - i0)] && missing++ < 3)
                H_FAIL(dit_h, "%s: message %d of patient %d never reached the webhook", what, i, p);
    H_CHECKF(dit_h, t->delivered == t->messages, "%s: %d of %d messages reached the webhook", what,
             t->delivered, t->messages);
out:
    free(next);
    free(count);
}

int dit_fleet_check_results(json_t *map, int p0, int np, int i0, int ni, const char *what)
{
    int extra = 0, bad = 0;

    for (int p = p0; p < p0 + np; p++) {
        for (int i = i0; i < i0 + ni; i++) {
            char eid[32];
            json_t *list, *r;
            size_t k;
            int delivered = 0, n = 0;

            dit_fleet_event(p, i, eid, sizeof(eid));
            list = json_object_get(map, eid);
            json_array_foreach(list, k, r)
            {
                const char *ch = json_string_value(json_object_get(r, "channel"));
                const char *oc = json_string_value(json_object_get(r, "outcome"));
                if (!ch || strcmp(ch, "webhook") != 0)
                    continue;
                n++;
                delivered += oc && !strcmp(oc, "delivered");
            }
            if (n > 1)
                extra += n - 1;
            if (!delivered && bad++ < 3)
                H_FAIL(dit_h, "%s: event %s has no delivered webhook result (%d results)", what,
                       eid, n);
        }
    }
    return extra;
}

long long dit_fleet_wait(long long since, int p0, int np, int i0, int ni, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    size_t n = (size_t)np * (size_t)ni;
    char *seen = calloc(n + 1, 1);
    long long done_at = -1;

    if (!H_CHECK(dit_h, seen != NULL))
        return -1;
    while (done_at < 0) {
        json_t *all = dit_sb_requests("target=webhook", since), *r;
        size_t k, have = 0;
        memset(seen, 0, n);
        json_array_foreach(all, k, r)
        {
            json_t *b;
            int p, i;
            if (json_integer_value(json_object_get(r, "status")) != 200)
                continue;
            b = dit_req_body(r);
            if (dit_fleet_parse(json_string_value(json_object_get(b, "communication_id")), &p,
                                &i) == 0 &&
                p >= p0 && p < p0 + np && i >= i0 && i < i0 + ni &&
                !seen[(p - p0) * ni + (i - i0)]) {
                seen[(p - p0) * ni + (i - i0)] = 1;
                if (++have == n)
                    done_at = dit_req_ms(r);
            }
            json_decref(b);
        }
        json_decref(all);
        if (done_at >= 0 || harness_now_ms() > deadline)
            break;
        harness_sleep_ms(100);
    }
    free(seen);
    return done_at;
}

long long dit_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int dit_fleet_distinct(const json_t *ids, int np, int per)
{
    char *seen = calloc((size_t)np * (size_t)per + 1, 1);
    json_t *v;
    size_t k;
    int n = 0;

    if (!H_CHECK(dit_h, seen != NULL))
        return 0;
    json_array_foreach(ids, k, v)
    {
        int p, i;
        if (dit_fleet_parse(json_string_value(v), &p, &i) == 0 && p < np && i < per &&
            !seen[p * per + i]) {
            seen[p * per + i] = 1;
            n++;
        }
    }
    free(seen);
    return n;
}

int dit_fleet_wait_distinct(int np, int per, int at_least, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    int n;

    for (;;) {
        json_t *ids = dit_webhook_ids(0);
        n = dit_fleet_distinct(ids, np, per);
        json_decref(ids);
        if (n >= at_least || harness_now_ms() > deadline)
            return n;
        harness_sleep_ms(50);
    }
}

int dit_fleet_dups_unexpected(const json_t *all, const json_t *before, int np, int per)
{
    char *count = calloc((size_t)np * (size_t)per + 1, 1);
    char *early = calloc((size_t)np * (size_t)per + 1, 1);
    json_t *v;
    size_t k;
    int n = 0;

    if (!H_CHECK(dit_h, count && early)) {
        free(count);
        free(early);
        return 0;
    }
    json_array_foreach(before, k, v)
    {
        int p, i;
        if (dit_fleet_parse(json_string_value(v), &p, &i) == 0 && p < np && i < per)
            early[p * per + i] = 1;
    }
    json_array_foreach(all, k, v)
    {
        int p, i;
        if (dit_fleet_parse(json_string_value(v), &p, &i) != 0 || p >= np || i >= per)
            continue;
        if (count[p * per + i] < 2)
            count[p * per + i]++;
        if (count[p * per + i] == 2 && !early[p * per + i]) {
            count[p * per + i] = 3; /* counted once */
            if (n++ < 3)
                H_FAIL(dit_h,
                       "message %d of patient %d was delivered twice, not having been "
                       "delivered before the fault",
                       i, p);
        }
    }
    free(early);
    free(count);
    return n;
}
