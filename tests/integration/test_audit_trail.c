/* pm-audit-trail against pm-devbroker: one PHI-free line per event, retries, no repeats on restart.
 */
#include "harness.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define P1  "7c4e1f0a9b2d4e6f8a3c5b7d9e1f2a4c"
#define P2  "d05b8e2c1a7f4b39a6e0c4d2f8b1e3a7"
#define CT  "application/cloudevents+json; charset=utf-8"
#define DLQ "pm.audit-trail.dlq"

static struct harness *h;
static char bootstrap[512];

/* One produced event and where it landed: what its line must say. */
struct expect {
    char id[64];
    const char *topic;
    const char *type;
    const char *key;
    int32_t partition;
    int64_t offset;
    char *summary; /* the expected "summary" object, compact JSON (malloc'd) */
};

static struct expect expected[32];
static size_t nexpected;

/* Produces one CloudEvent; @p data is the JSON of its data member (PHI included on purpose). */
static void produce_event(const char *topic, const char *type, const char *key, const char *id,
                          const char *data, char *summary)
{
    const char *headers[] = {"content-type", CT, "traceparent",
                             "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", NULL};
    struct harness_kafka_produce req = {0};
    struct expect *e = &expected[nexpected++];
    char value[2048], err[256];

    snprintf(value, sizeof(value),
             "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"test\",\"type\":\"%s\","
             "\"time\":\"2026-03-02T15:04:05Z\",\"subject\":\"Patient/%s\","
             "\"datacontenttype\":\"application/json\",\"data\":%s}",
             id, type, key, data);
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->topic = topic;
    e->type = type;
    e->key = key;
    e->summary = summary;
    req.topic = topic;
    req.key = key;
    req.value = value;
    req.value_len = strlen(value);
    req.headers = headers;
    H_CHECKF(
        h, harness_kafka_produce(bootstrap, &req, &e->partition, &e->offset, err, sizeof(err)) == 0,
        "produce %s: %s", id, err);
}

/* One event of each type for @p key, ids suffixed with @p n; every PHI spot says SECRET. */
static void produce_batch(const char *key, int n)
{
    char id[64], data[1024], summary[256];

    snprintf(id, sizeof(id), "msg-%d", n);
    snprintf(data, sizeof(data),
             "{\"communication_id\":\"comm-%d\",\"patient_id\":\"%s\",\"communication\":"
             "{\"resourceType\":\"Communication\",\"id\":\"comm-%d\",\"payload\":"
             "[{\"contentString\":\"SECRET-TEXT from the doctor\"}]}}",
             n, key, n);
    snprintf(summary, sizeof(summary), "{\"communication_id\":\"comm-%d\",\"patient_id\":\"%s\"}",
             n, key);
    produce_event("pm.canvas.messages", "canvas.message.v1", key, id, data, strdup(summary));

    snprintf(id, sizeof(id), "reply-%d", n);
    snprintf(data, sizeof(data),
             "{\"patient_id\":\"%s\",\"text\":\"SECRET-TEXT my reply\",\"recipient\":"
             "{\"email\":\"SECRET-doctor@example.org\"},\"in_reply_to\":\"comm-%d\","
             "\"sent_at\":\"2026-03-02T15:04:05Z\"}",
             key, n);
    snprintf(summary, sizeof(summary), "{\"patient_id\":\"%s\",\"in_reply_to\":\"comm-%d\"}", key,
             n);
    produce_event("pm.patient.replies", "patient.reply.v1", key, id, data, strdup(summary));

    snprintf(id, sizeof(id), "qr-%d", n);
    snprintf(data, sizeof(data),
             "{\"patient_id\":\"%s\",\"questionnaire\":{\"code\":\"CHECKIN\"},\"answers\":"
             "[{\"question_code\":\"HOW\",\"value_string\":\"SECRET-TEXT answer\"}],"
             "\"authored_at\":\"2026-03-02T15:04:05Z\"}",
             key);
    snprintf(summary, sizeof(summary), "{\"patient_id\":\"%s\"}", key);
    produce_event("pm.patient.questionnaire-responses", "patient.questionnaire_response.v1", key,
                  id, data, strdup(summary));

    snprintf(id, sizeof(id), "result-%d", n);
    snprintf(data, sizeof(data),
             "{\"source_event_id\":\"msg-%d\",\"kind\":\"message\",\"channel\":\"sms\","
             "\"outcome\":\"failed\",\"reason\":\"SECRET-TEXT +15551234567\","
             "\"provider_id\":\"SM123\",\"attempts\":2}",
             n);
    snprintf(summary, sizeof(summary),
             "{\"source_event_id\":\"msg-%d\",\"kind\":\"message\",\"channel\":\"sms\","
             "\"outcome\":\"failed\"}",
             n);
    produce_event("pm.deliveries", "delivery.result.v1", key, id, data, strdup(summary));
}

static size_t count_lines(const char *path)
{
    size_t n = 0;
    char *text = harness_file_read(path, NULL);
    for (char *p = text; p && *p; p++)
        n += *p == '\n';
    free(text);
    return n;
}

/* Waits up to @p timeout_ms for @p want lines, then a little longer to catch extra ones. */
static size_t wait_lines(const char *path, size_t want, int timeout_ms)
{
    long long until = harness_now_ms() + timeout_ms;
    while (count_lines(path) < want && harness_now_ms() < until)
        harness_sleep_ms(100);
    harness_sleep_ms(1500);
    return count_lines(path);
}

/* Every line is complete JSON with the right fields; each expected event has exactly one line;
 * no two lines share topic/partition/offset; no PHI anywhere in the file. */
static void check_file(const char *path)
{
    char *text = harness_file_read(path, NULL);
    int seen[32] = {0};
    char *line, *next;

    if (!H_CHECK(h, text != NULL))
        return;
    H_CHECKF(h, strstr(text, "SECRET") == NULL, "PHI in the audit file");
    H_CHECKF(h, strstr(text, "example.org") == NULL, "an email in the audit file");
    H_CHECKF(h, strstr(text, "+1555") == NULL, "a phone number in the audit file");
    for (line = text; *line; line = next) {
        char *nl = strchr(line, '\n');
        json_error_t jerr;
        json_t *j, *summary;
        size_t i;

        if (!H_CHECKF(h, nl != NULL, "last line has no newline"))
            break;
        *nl = '\0';
        next = nl + 1;
        j = json_loads(line, 0, &jerr);
        if (!H_CHECKF(h, j != NULL, "line is not JSON: %s", jerr.text))
            continue;
        const char *id = json_string_value(json_object_get(j, "id"));
        for (i = 0; i < nexpected; i++)
            if (id && !strcmp(expected[i].id, id))
                break;
        if (H_CHECKF(h, i < nexpected, "line for an unknown event id %s", id ? id : "(none)")) {
            const struct expect *e = &expected[i];
            char *got;
            seen[i]++;
            H_CHECK(h, json_is_string(json_object_get(j, "ts")));
            H_CHECK_STR(h, json_string_value(json_object_get(j, "topic")), e->topic);
            H_CHECK_INT(h, json_integer_value(json_object_get(j, "partition")), e->partition);
            H_CHECK_INT(h, json_integer_value(json_object_get(j, "offset")), e->offset);
            H_CHECK_STR(h, json_string_value(json_object_get(j, "key")), e->key);
            H_CHECK_STR(h, json_string_value(json_object_get(j, "type")), e->type);
            H_CHECK_STR(h, json_string_value(json_object_get(j, "time")), "2026-03-02T15:04:05Z");
            const char *subject = json_string_value(json_object_get(j, "subject"));
            H_CHECK(h, subject && !strncmp(subject, "Patient/", 8) && !strcmp(subject + 8, e->key));
            summary = json_object_get(j, "summary");
            got = summary ? json_dumps(summary, JSON_COMPACT) : NULL;
            H_CHECKF(h, got && !strcmp(got, e->summary), "%s: summary %s, want %s", e->id,
                     got ? got : "(none)", e->summary);
            free(got);
        }
        json_decref(j);
    }
    for (size_t i = 0; i < nexpected; i++)
        H_CHECKF(h, seen[i] == 1, "event %s has %d lines", expected[i].id, seen[i]);
    free(text);
}

/* GET /metrics of the instance on @p port. @returns the malloc'd body or NULL. */
static char *get_metrics(int port)
{
    char url[128];
    struct harness_http_response r;
    char *body = NULL;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    if (harness_http("GET", url, NULL, NULL, 0, 5000, &r) == 0 && r.status == 200)
        body = strdup(r.body);
    harness_http_response_free(&r);
    return body;
}

/* The log names ids and reasons, never what the events said. */
static void check_log(struct harness_proc *p)
{
    char *log = harness_proc_stderr(p);
    H_CHECKF(h, log && !strstr(log, "SECRET"), "PHI in the log");
    free(log);
}

static struct harness_proc *start_audit(const char *name, const char *file, const char *group,
                                        int port, const char *props)
{
    char env_brokers[600], env_file[600], env_group[128], env_listen[64], env_props[600];
    struct harness_proc *p;
    char url[128];

    snprintf(env_brokers, sizeof(env_brokers), "PM_KAFKA_BROKERS=%s", bootstrap);
    snprintf(env_file, sizeof(env_file), "PM_AUDIT_FILE=%s", file);
    snprintf(env_group, sizeof(env_group), "PM_AUDIT_GROUP_ID=%s", group);
    snprintf(env_listen, sizeof(env_listen), "PM_AUDIT_LISTEN=127.0.0.1:%d", port);
    snprintf(env_props, sizeof(env_props), "PM_KAFKA_CONFIG_FILE=%s", props);
    const char *argv[] = {"pm-audit-trail", NULL};
    const char *env[] = {env_brokers, env_file, env_group, env_listen, env_props, NULL};
    p = harness_proc_start(h, name, argv, env);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", port);
    if (p)
        H_CHECKF(h, harness_http_wait(url, 200, 10000) == 0, "%s: /healthz never answered", name);
    return p;
}

int main(void)
{
    struct harness_proc *kafka, *audit, *first, *full = NULL;
    char file[512], props[512], err[256];
    int port = harness_free_port(), full_port = harness_free_port();
    struct stat st;
    FILE *f;

    h = harness_init("audit_trail");
    kafka = harness_devbroker_start(h, 1, 4, NULL, bootstrap, sizeof(bootstrap));
    if (!H_CHECK(h, kafka != NULL))
        return harness_finish(h);
    harness_path(h, "audit.jsonl", file, sizeof(file));
    harness_path(h, "kafka.properties", props, sizeof(props));
    /* The mock cluster lets a new member in only once the departed one's session timed out. */
    f = fopen(props, "w");
    if (!H_CHECK(h, f != NULL))
        return harness_finish(h);
    fputs("# shorter than the default 45 s so the restart below is quick\n"
          "session.timeout.ms=6000\n",
          f);
    fclose(f);

    /* 1. One line per event of every type, with ids only; a record that is not a CloudEvent
     *    goes to the audit DLQ, not into the file. */
    first = audit = start_audit("audit", file, "pm-audit-trail", port, props);
    if (!audit)
        return harness_finish(h);
    /* A second instance (own group) whose every write fails: lines are retried, never lost. */
    if (access("/dev/full", W_OK) == 0)
        full = start_audit("audit-full", "/dev/full", "audit-full", full_port, props);
    produce_batch(P1, 1);
    produce_batch(P2, 2);
    {
        const char *headers[] = {"content-type", CT, NULL};
        struct harness_kafka_produce req = {0};
        req.topic = "pm.patient.replies";
        req.key = P1;
        req.value = "SECRET-TEXT, not JSON";
        req.value_len = strlen(req.value);
        req.headers = headers;
        H_CHECKF(h, harness_kafka_produce(bootstrap, &req, NULL, NULL, err, sizeof(err)) == 0,
                 "produce: %s", err);
    }
    H_CHECK_INT(h, wait_lines(file, nexpected, 60000), nexpected);
    check_file(file);
    H_CHECK(h, stat(file, &st) == 0 && (st.st_mode & 0777) == 0600);
    {
        struct harness_kafka_records dlq = {0};
        int rc = harness_kafka_read(bootstrap, DLQ, 1, 30000, &dlq, err, sizeof(err));
        if (H_CHECKF(h, rc == 0 && dlq.n == 1, "audit DLQ: %s (%zu records)", err, dlq.n)) {
            H_CHECK_STR(h, harness_kafka_header(&dlq.v[0], "pm-error-class"), "invalid");
            H_CHECK_STR(h, harness_kafka_header(&dlq.v[0], "pm-source-topic"),
                        "pm.patient.replies");
        }
        harness_kafka_records_free(&dlq);
    }
    {
        char *m = get_metrics(port);
        H_CHECKF(h,
                 m && strstr(m, "pm_audit_events_total{type=\"patient.reply.v1\","
                                "outcome=\"written\"} 2"),
                 "metrics: %s", m ? m : "(none)");
        free(m);
    }
    if (full) {
        /* /dev/full refuses every write: retries are counted, nothing counts as written. */
        char *m = NULL;
        long long until = harness_now_ms() + 20000;
        do {
            free(m);
            harness_sleep_ms(200);
            m = get_metrics(full_port);
        } while ((!m || !strstr(m, "pm_audit_retries_total{")) && harness_now_ms() < until);
        H_CHECKF(h, m && strstr(m, "pm_audit_retries_total{") && !strstr(m, "\"written\""),
                 "metrics with /dev/full: %s", m ? m : "(none)");
        free(m);
        H_CHECK_INT(h, harness_proc_stop(full, 20000), 0);
    }

    /* 2. SIGTERM: exit 0 after committing. Events produced while it is down are written after
     *    the restart, and nothing already written is written again. */
    H_CHECK_INT(h, harness_proc_stop(audit, 20000), 0);
    produce_batch(P1, 3);
    audit = start_audit("audit", file, "pm-audit-trail", port, props);
    if (audit) {
        H_CHECK_INT(h, wait_lines(file, nexpected, 60000), nexpected);
        check_file(file);
        H_CHECK_INT(h, harness_proc_stop(audit, 20000), 0);
    }
    check_log(first);
    if (audit)
        check_log(audit);
    for (size_t i = 0; i < nexpected; i++)
        free(expected[i].summary);
    return harness_finish(h);
}
