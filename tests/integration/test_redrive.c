/* pm-redrive against pm-devbroker: filters, dry run, refusals, records moved unchanged, pm-* gone.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CT      "application/cloudevents+json; charset=utf-8"
#define TRACE   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define DLQ     "pm.dlq"
#define MSGS    "pm.canvas.messages"
#define REPLIES "pm.patient.replies"
#define CHECKIN "pm.patient.questionnaire-responses"
#define RESULTS "pm.deliveries"
#define KA      "7c4e1f0a9b2d4e6f8a3c5b7d9e1f2a4c"
#define KB      "d05b8e2c1a7f4b39a6e0c4d2f8b1e3a7"
#define KC      "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"

static struct harness *h;
static char bootstrap[512];

/* A crafted DLQ record, as pm-deliver's runtime writes them. @p cls / @p source NULL: header
 * left out. The value names SECRET-VALUE, which pm-redrive must never print. */
static void put_dlq(int32_t partition, const char *key, const char *value, const char *cls,
                    const char *source)
{
    const char *headers[24];
    struct harness_kafka_produce req = {0};
    char err[256];
    size_t n = 0;

    headers[n++] = "content-type";
    headers[n++] = CT;
    headers[n++] = "traceparent";
    headers[n++] = TRACE;
    headers[n++] = "x-custom";
    headers[n++] = "kept";
    if (cls) {
        headers[n++] = "pm-error-class";
        headers[n++] = cls;
    }
    headers[n++] = "pm-error";
    headers[n++] = "Canvas answered 422";
    if (source) {
        headers[n++] = "pm-source-topic";
        headers[n++] = source;
    }
    headers[n++] = "pm-source-partition";
    headers[n++] = "2";
    headers[n++] = "pm-source-offset";
    headers[n++] = "52";
    headers[n++] = "pm-attempts";
    headers[n++] = "1";
    headers[n] = NULL;
    req.topic = DLQ;
    req.has_partition = 1;
    req.partition = partition;
    req.key = key;
    req.value = value;
    req.value_len = strlen(value);
    req.headers = headers;
    H_CHECKF(h, harness_kafka_produce(bootstrap, &req, NULL, NULL, err, sizeof(err)) == 0,
             "produce to the DLQ: %s", err);
}

static char *event(const char *id, const char *type, const char *key)
{
    char buf[1024];
    snprintf(buf, sizeof(buf),
             "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"test\",\"type\":\"%s\","
             "\"time\":\"2026-03-02T15:04:05Z\",\"subject\":\"Patient/%s\","
             "\"datacontenttype\":\"application/json\",\"data\":{\"patient_id\":\"%s\","
             "\"text\":\"SECRET-VALUE\"}}",
             id, type, key, key);
    return strdup(buf);
}

/* Runs pm-redrive with @p args (NULL-terminated) and waits for it. @returns its exit status;
 * its stdout and stderr in @p out / @p errout (malloc'd; the caller frees). */
static int redrive(const char *const *args, char **out, char **errout)
{
    static int runs;
    char name[32], env_brokers[600];
    const char *argv[16];
    const char *env[] = {env_brokers, "PM_LOG_LEVEL=warn", NULL};
    struct harness_proc *p;
    size_t n = 0;
    int rc;

    snprintf(name, sizeof(name), "redrive-%d", ++runs);
    snprintf(env_brokers, sizeof(env_brokers), "PM_KAFKA_BROKERS=%s", bootstrap);
    argv[n++] = "pm-redrive";
    for (; *args && n < 15; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    p = harness_proc_start(h, name, argv, env);
    if (!p)
        return -1;
    rc = harness_proc_wait(p, 60000);
    *out = harness_proc_stdout(p);
    *errout = harness_proc_stderr(p);
    if (!*out)
        *out = strdup("");
    if (!*errout)
        *errout = strdup("");
    return rc;
}

/* Reads everything @p topic holds now. */
static void read_all(const char *topic, struct harness_kafka_records *recs)
{
    char err[256];
    H_CHECKF(h, harness_kafka_read(bootstrap, topic, 0, 30000, recs, err, sizeof(err)) == 0,
             "reading %s: %s", topic, err);
}

static size_t topic_count(const char *topic)
{
    struct harness_kafka_records r = {0};
    size_t n;
    read_all(topic, &r);
    n = r.n;
    harness_kafka_records_free(&r);
    return n;
}

/* The record moved unchanged: key and value as on the DLQ, the other headers kept, no pm-*. */
static void check_moved(const struct harness_kafka_record *r, const char *key, const char *value)
{
    H_CHECK_STR(h, r->key, key);
    H_CHECK_STR(h, r->value, value);
    H_CHECK_STR(h, harness_kafka_header(r, "content-type"), CT);
    H_CHECK_STR(h, harness_kafka_header(r, "traceparent"), TRACE);
    H_CHECK_STR(h, harness_kafka_header(r, "x-custom"), "kept");
    H_CHECK_INT(h, r->nheaders, 3);
    for (size_t i = 0; i < r->nheaders; i++)
        H_CHECKF(h, strncmp(r->headers[i].name, "pm-", 3) != 0, "header %s kept",
                 r->headers[i].name);
}

/* The partition a murmur2 producer (pm-ingest, the Java client) picks for @p key. */
static int32_t murmur2_partition(const char *topic, const char *key)
{
    const char *conf[] = {"partitioner", "murmur2_random", NULL};
    struct harness_kafka_produce req = {0};
    int32_t part = -1;
    char err[256];
    req.topic = topic;
    req.key = key;
    req.value = "{}";
    req.value_len = 2;
    req.conf = conf;
    H_CHECKF(h, harness_kafka_produce(bootstrap, &req, &part, NULL, err, sizeof(err)) == 0,
             "reference produce: %s", err);
    return part;
}

int main(void)
{
    struct harness_proc *kafka;
    struct harness_kafka_records r = {0};
    char *va = event("ev-A", "patient.reply.v1", KA), *vb = event("ev-B", "canvas.message.v1", KB);
    char *vd = event("ev-D", "patient.reply.v1", KB), *ve = event("ev-E", "delivery.result.v1", KA);
    char *vf = event("ev-F", "patient.reply.v1", KA), *vg = event("ev-G", "patient.reply.v1", KC);
    const char *vc = "SECRET-VALUE, not JSON {";
    char *out = NULL, *err = NULL;
    int32_t part_a = -1, part_g = -1;

    h = harness_init("redrive");
    kafka = harness_devbroker_start(h, 1, 4, NULL, bootstrap, sizeof(bootstrap));
    if (!H_CHECK(h, kafka != NULL))
        return harness_finish(h);
    put_dlq(0, KA, va, "permanent", REPLIES); /* 0/0 */
    put_dlq(0, KB, vb, "exhausted", MSGS);    /* 0/1 */
    put_dlq(0, KA, vc, "invalid", CHECKIN);   /* 0/2 */
    put_dlq(0, KB, vd, "permanent", NULL);    /* 0/3: no pm-source-topic */
    put_dlq(0, KA, ve, "permanent", RESULTS); /* 0/4: not an input topic */
    put_dlq(0, KA, vf, "permanent", DLQ);     /* 0/5: the DLQ itself */
    put_dlq(1, KC, vg, "permanent", REPLIES); /* 1/0 */

    /* 1. --dry-run lists every selected record without its value and moves nothing. */
    {
        const char *args[] = {"--dry-run", NULL};
        H_CHECK_INT(h, redrive(args, &out, &err), 3); /* three are refused */
        H_CHECKF(h,
                 strstr(out, "would-redrive partition=0 offset=0 key=" KA
                             " event_id=ev-A error_class=permanent source_topic=" REPLIES),
                 "dry run output: %s", out);
        H_CHECK(h, strstr(out, "would-redrive partition=0 offset=1 ") != NULL);
        H_CHECK(h, strstr(out, "would-redrive partition=0 offset=2 key=" KA
                               " event_id=- error_class=invalid") != NULL);
        H_CHECK(h, strstr(out, "refused partition=0 offset=3 ") != NULL);
        H_CHECK(h, strstr(out, "refused partition=0 offset=4 ") != NULL);
        H_CHECK(h, strstr(out, "refused partition=0 offset=5 ") != NULL);
        H_CHECK(h, strstr(out, "would-redrive partition=1 offset=0 ") != NULL);
        H_CHECKF(h, strstr(out, "7 records read, 7 selected, 4 would be redriven") != NULL,
                 "summary: %s", out);
        H_CHECK(h, !strstr(out, "SECRET") && !strstr(err, "SECRET"));
        free(out);
        free(err);
        H_CHECK_INT(h,
                    topic_count(MSGS) + topic_count(REPLIES) + topic_count(CHECKIN) +
                        topic_count(RESULTS),
                    0);
    }

    /* 2. Usage: nothing selected, or --offset without --partition, is refused before any
     *    Kafka work. */
    {
        const char *none[] = {NULL};
        const char *no_part[] = {"--offset", "0", NULL};
        H_CHECK_INT(h, redrive(none, &out, &err), 2);
        free(out);
        free(err);
        H_CHECK_INT(h, redrive(no_part, &out, &err), 2);
        free(out);
        free(err);
    }

    /* 3. One record by partition and offset: same key and value, content-type, traceparent and
     *    other headers kept, pm-* stripped; the last redriven offset and the warning printed. */
    {
        const char *args[] = {"--partition", "0", "--offset", "0", NULL};
        H_CHECK_INT(h, redrive(args, &out, &err), 0);
        H_CHECKF(h, strstr(out, "redriven partition=0 offset=0 ") != NULL, "output: %s", out);
        H_CHECKF(h, strstr(out, "last redriven pm.dlq offsets: partition 0 offset 0") != NULL,
                 "output: %s", out);
        H_CHECKF(h, strstr(err, "redrives them again") != NULL, "stderr: %s", err);
        free(out);
        free(err);
        read_all(REPLIES, &r);
        if (H_CHECK_INT(h, r.n, 1)) {
            check_moved(&r.v[0], KA, va);
            part_a = r.v[0].partition;
        }
        harness_kafka_records_free(&r);
    }

    /* 4. By error class, by event id and by source topic: exactly the matching records. */
    {
        const char *by_class[] = {"--error-class", "exhausted", NULL};
        const char *by_id[] = {"--event-id", "ev-G", NULL};
        const char *by_source[] = {"--source-topic", CHECKIN, NULL};
        H_CHECK_INT(h, redrive(by_class, &out, &err), 0);
        H_CHECK(h, strstr(out, "1 selected, 1 redriven, 0 refused") != NULL);
        free(out);
        free(err);
        read_all(MSGS, &r);
        if (H_CHECK_INT(h, r.n, 1))
            check_moved(&r.v[0], KB, vb);
        harness_kafka_records_free(&r);

        H_CHECK_INT(h, redrive(by_id, &out, &err), 0);
        H_CHECKF(h, strstr(out, "last redriven pm.dlq offsets: partition 1 offset 0") != NULL,
                 "output: %s", out);
        free(out);
        free(err);
        read_all(REPLIES, &r);
        if (H_CHECK_INT(h, r.n, 2)) {
            check_moved(&r.v[r.v[0].key && !strcmp(r.v[0].key, KC) ? 0 : 1], KC, vg);
            part_g = r.v[r.v[0].key && !strcmp(r.v[0].key, KC) ? 0 : 1].partition;
        }
        harness_kafka_records_free(&r);

        H_CHECK_INT(h, redrive(by_source, &out, &err), 0);
        free(out);
        free(err);
        read_all(CHECKIN, &r);
        if (H_CHECK_INT(h, r.n, 1))
            check_moved(&r.v[0], KA, vc); /* not JSON: still moved byte for byte */
        harness_kafka_records_free(&r);
    }

    /* 5. Refusals: no pm-source-topic, a topic that is not an input, the DLQ itself. With
     *    --allow-any-topic only the second moves. */
    {
        const char *range[] = {"--partition", "0", "--from-offset", "3", "--to-offset", "5", NULL};
        const char *any[] = {"--partition", "0", "--from-offset",     "3",
                             "--to-offset", "5", "--allow-any-topic", NULL};
        H_CHECK_INT(h, redrive(range, &out, &err), 3);
        H_CHECKF(h, strstr(out, "3 selected, 0 redriven, 3 refused") != NULL, "output: %s", out);
        H_CHECK(h, strstr(out, "reason=\"no pm-source-topic header\"") != NULL);
        H_CHECK(h, strstr(out, "reason=\"pm-source-topic is the DLQ itself\"") != NULL);
        free(out);
        free(err);
        H_CHECK_INT(h, topic_count(RESULTS), 0);
        H_CHECK_INT(h, redrive(any, &out, &err), 3);
        H_CHECKF(h, strstr(out, "3 selected, 1 redriven, 2 refused") != NULL, "output: %s", out);
        free(out);
        free(err);
        read_all(RESULTS, &r);
        if (H_CHECK_INT(h, r.n, 1))
            check_moved(&r.v[0], KA, ve);
        harness_kafka_records_free(&r);
    }

    /* 6. Nothing else moved, the DLQ still holds everything, and redriven records sit on the
     *    partition a murmur2 producer such as pm-ingest picks for their key. */
    H_CHECK_INT(h, topic_count(MSGS), 1);
    H_CHECK_INT(h, topic_count(REPLIES), 2);
    H_CHECK_INT(h, topic_count(CHECKIN), 1);
    H_CHECK_INT(h, topic_count(DLQ), 7);
    H_CHECK_INT(h, murmur2_partition(REPLIES, KA), part_a);
    H_CHECK_INT(h, murmur2_partition(REPLIES, KC), part_g);

    free(va);
    free(vb);
    free(vd);
    free(ve);
    free(vf);
    free(vg);
    return harness_finish(h);
}
