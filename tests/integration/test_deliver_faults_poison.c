/* pm-deliver with poison events and failing patients: DLQ by policy, the rest flows on. */
#include "deliver_it.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Everything is on one partition (one of each topic), so every event sits behind the bad ones:
 *
 *   X  x0, then a record that is not JSON (key X), then x1, x2
 *   Y  a canvas.message.v1 CloudEvent whose data.communication_id is a number, then y0, y1
 *   U  a CloudEvent of an unknown type, then u0
 *   Z  z0, z1 whose Communication reads answer 404 for good, then z2
 *   W  w0 whose Communication read answers 503 for good, then w1 (PM_RETRY_DEADLINE_MS=5000)
 *   and 10 other patients with 3 messages each, interleaved with all of the above.
 *
 * Expected, as users see it: the three poison records on pm.dlq as "invalid", z0 and z1 as
 * "permanent" after one attempt, w0 as "exhausted" after its 5 s deadline, each with the value
 * unchanged and headers naming where it came from; every other message delivered exactly once
 * (same key after the poison too), the other patients not held up by W's retries, and a
 * restarted pm-deliver that finds nothing left to redo (the offsets moved past the DLQ'd ones).
 */

#define NOTHERS     10
#define PX          10 /* fleet index of X, then Y, U, Z, W */
#define PY          11
#define PU          12
#define PZ          13
#define PW          14
#define NPAT        15
#define DEADLINE    5000 /* PM_RETRY_DEADLINE_MS */
#define MAX_BACKOFF 500  /* PM_RETRY_MAX_BACKOFF_MS */
#define WAIT_MS     60000

static struct harness *h;

static const char not_json[] = "{\"specversion\": \"1.0\", \"id\": \"poison-1\", \"type\": oops";

struct produced {
    const char *what;
    int32_t partition;
    int64_t offset;
};

/* Produces fleet messages (p, i) pairs in order, one producer, acknowledged before returning. */
static void produce_list(const int (*pi)[2], size_t n)
{
    char buf[16][3][40];
    const char *e[16], *p[16], *c[16];

    if (!H_CHECK(h, n <= 16))
        return;
    for (size_t k = 0; k < n; k++) {
        dit_fleet_event(pi[k][0], pi[k][1], buf[k][0], sizeof(buf[k][0]));
        dit_fleet_patient(pi[k][0], buf[k][1], sizeof(buf[k][1]));
        dit_fleet_comm(pi[k][0], pi[k][1], buf[k][2], sizeof(buf[k][2]));
        e[k] = buf[k][0];
        p[k] = buf[k][1];
        c[k] = buf[k][2];
    }
    dit_messages(e, p, c, n);
}

/* A CloudEvent for patient @p pat: canvas.message.v1 with a numeric communication_id, or the
 * unknown type @p type with proper data. */
static char *bad_event(const char *id, const char *type, int pat, int numeric_id)
{
    char pid[40], cid[40], subject[64];
    json_t *data, *ce;
    char *v;

    dit_fleet_patient(pat, pid, sizeof(pid));
    dit_fleet_comm(pat, 99, cid, sizeof(cid));
    snprintf(subject, sizeof(subject), "Patient/%s", pid);
    data = numeric_id ? json_pack("{s:i, s:s}", "communication_id", 42, "patient_id", pid)
                      : json_pack("{s:s, s:s}", "communication_id", cid, "patient_id", pid);
    ce = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "specversion", "1.0", "id", id,
                   "source", "urn:pm:test-deliver", "type", type, "time", "2026-03-02T15:05:00Z",
                   "subject", subject, "datacontenttype", "application/json", "data", data);
    v = json_dumps(ce, JSON_COMPACT);
    json_decref(ce);
    return v;
}

/* The DLQ record whose value is exactly @p value, or NULL. */
static const struct harness_kafka_record *dlq_find(const struct harness_kafka_records *recs,
                                                   const char *value)
{
    for (size_t i = 0; i < recs->n; i++)
        if (recs->v[i].value && recs->v[i].value_len == strlen(value) &&
            !memcmp(recs->v[i].value, value, recs->v[i].value_len))
            return &recs->v[i];
    return NULL;
}

/* Checks a DLQ record's policy headers. */
static void dlq_check(const struct harness_kafka_record *r, const char *what, const char *key_pat,
                      const char *cls, const char *error_part, const struct produced *src,
                      int min_attempts, int max_attempts)
{
    const char *v;
    char num[32];
    long attempts;

    if (!H_CHECKF(h, r != NULL, "%s: not on %s with its value unchanged", what, DIT_T_DLQ))
        return;
    H_CHECKF(h, r->key && !strcmp(r->key, key_pat), "%s: DLQ key %s", what, r->key ? r->key : "-");
    v = harness_kafka_header(r, "pm-error-class");
    H_CHECKF(h, v && !strcmp(v, cls), "%s: pm-error-class %s, expected %s", what, v ? v : "-", cls);
    v = harness_kafka_header(r, "pm-error");
    H_CHECKF(h, v && strstr(v, error_part), "%s: pm-error \"%s\" lacks \"%s\"", what, v ? v : "-",
             error_part);
    v = harness_kafka_header(r, "pm-source-topic");
    H_CHECKF(h, v && !strcmp(v, DIT_T_MESSAGES), "%s: pm-source-topic %s", what, v ? v : "-");
    snprintf(num, sizeof(num), "%d", (int)src->partition);
    v = harness_kafka_header(r, "pm-source-partition");
    H_CHECKF(h, v && !strcmp(v, num), "%s: pm-source-partition %s, expected %s", what, v ? v : "-",
             num);
    snprintf(num, sizeof(num), "%lld", (long long)src->offset);
    v = harness_kafka_header(r, "pm-source-offset");
    H_CHECKF(h, v && !strcmp(v, num), "%s: pm-source-offset %s, expected %s", what, v ? v : "-",
             num);
    v = harness_kafka_header(r, "pm-attempts");
    attempts = v ? strtol(v, NULL, 10) : -1;
    H_CHECKF(h, attempts >= min_attempts && attempts <= max_attempts,
             "%s: pm-attempts %ld, expected %d..%d", what, attempts, min_attempts, max_attempts);
    v = harness_kafka_header(r, "content-type");
    H_CHECKF(h, v && strstr(v, "application/cloudevents+json"),
             "%s: the record's own headers were not kept", what);
}

int main(void)
{
    char props[512], base[128], err[256], fault[256], cid[40], key[40], *ev_data, *ev_type;
    const char *env[] = {props,
                         "PM_DELIVER_CHANNELS=webhook",
                         "PM_DELIVER_CONTACT_CATEGORIES",
                         "PM_DELIVER_MAX_IN_FLIGHT=4",
                         "PM_RETRY_BASE_MS=100",
                         "PM_RETRY_MAX_BACKOFF_MS=500",
                         "PM_RETRY_DEADLINE_MS=5000",
                         "PM_LOG_LEVEL=info",
                         NULL};
    struct harness_proc *deliver;
    struct harness_kafka_records dlq = {0}, dlq2 = {0};
    const struct harness_kafka_record *rec;
    struct produced p_notjson = {"not JSON", -1, -1}, p_data = {"invalid data", -1, -1},
                    p_type = {"unknown type", -1, -1}, src;
    json_t *ids, *map, *all, *r;
    size_t k;
    long long t_start, w0_dlq_ms = -1, others_last = 0, w1_at = -1, mark;
    int delivered[NPAT][3] = {{0}}, status, fails = 0;

    h = harness_init("deliver-faults-poison");
    if (dit_start(h, 1) != 0)
        return harness_finish(h);
    dit_kafka_props(props, sizeof(props));
    dit_fleet_seed(NPAT, 3);

    /* Z's first two messages fail for good (404), W's first for as long as it is retried. */
    for (int i = 0; i < 2; i++) {
        dit_fleet_comm(PZ, i, cid, sizeof(cid));
        snprintf(fault, sizeof(fault),
                 "{\"target\": \"fhir\", \"path_prefix\": \"/fhir/Communication/%s\", "
                 "\"status\": 404, \"count\": -1}",
                 cid);
        dit_sb_ok("POST", "/_sandbox/faults", fault);
    }
    dit_fleet_comm(PW, 0, cid, sizeof(cid));
    snprintf(fault, sizeof(fault),
             "{\"target\": \"fhir\", \"path_prefix\": \"/fhir/Communication/%s\", \"count\": -1}",
             cid);
    dit_sb_ok("POST", "/_sandbox/faults", fault);

    deliver = dit_deliver_start("deliver", env, base, sizeof(base), 30000);
    if (!deliver)
        return harness_finish(h);
    t_start = dit_wall_ms();

    /* Production order, all on partition 0. */
    {
        int first[NOTHERS + 1][2];
        for (int p = 0; p < NOTHERS; p++) {
            first[p][0] = p;
            first[p][1] = 0;
        }
        first[NOTHERS][0] = PX;
        first[NOTHERS][1] = 0;
        produce_list((const int(*)[2])first, NOTHERS + 1);
    }
    dit_fleet_patient(PX, key, sizeof(key));
    dit_produce_raw(key, not_json, &p_notjson.partition, &p_notjson.offset);
    ev_data = bad_event("poison-data", "canvas.message.v1", PY, 1);
    dit_fleet_patient(PY, key, sizeof(key));
    dit_produce_raw(key, ev_data, &p_data.partition, &p_data.offset);
    ev_type = bad_event("poison-type", "canvas.message.v9", PU, 0);
    dit_fleet_patient(PU, key, sizeof(key));
    dit_produce_raw(key, ev_type, &p_type.partition, &p_type.offset);
    {
        static const int zw[][2] = {{PZ, 0}, {PW, 0}};
        produce_list(zw, 2);
    }
    for (int i = 1; i < 3; i++) {
        int more[NOTHERS + 5][2];
        size_t n = 0;
        for (int p = 0; p < NOTHERS; p++) {
            more[n][0] = p;
            more[n++][1] = i;
        }
        more[n][0] = PX;
        more[n++][1] = i;
        more[n][0] = PY;
        more[n++][1] = i - 1;
        if (i == 1) {
            more[n][0] = PU;
            more[n++][1] = 0;
            more[n][0] = PW;
            more[n++][1] = 1;
        }
        more[n][0] = PZ;
        more[n++][1] = i;
        produce_list((const int(*)[2])more, n);
    }

    /* Wait for the 38 deliveries and the 6 DLQ records. */
    {
        long long deadline = harness_now_ms() + WAIT_MS;
        for (;;) {
            int n = 0;
            harness_kafka_records_free(&dlq);
            ids = dit_webhook_ids(0);
            n = json_array_size(ids) >= 38;
            json_decref(ids);
            harness_kafka_read(dit_bootstrap, DIT_T_DLQ, 0, 10000, &dlq, err, sizeof(err));
            if ((n && dlq.n >= 6) || harness_now_ms() > deadline)
                break;
            harness_sleep_ms(200);
        }
    }
    H_CHECKF(h, dlq.n == 6, "%zu records on %s, expected 6", dlq.n, DIT_T_DLQ);

    /* The three poison records: invalid, value unchanged, after one look. */
    dit_fleet_patient(PX, key, sizeof(key));
    dlq_check(dlq_find(&dlq, not_json), "not JSON", key, "invalid", "not a CloudEvent: not JSON",
              &p_notjson, 1, 1);
    dit_fleet_patient(PY, key, sizeof(key));
    dlq_check(dlq_find(&dlq, ev_data), "invalid data", key, "invalid", "communication_id", &p_data,
              1, 1);
    dit_fleet_patient(PU, key, sizeof(key));
    dlq_check(dlq_find(&dlq, ev_type), "unknown type", key, "invalid", "unknown event type",
              &p_type, 1, 1);

    /* Z: permanent after one attempt; W: exhausted after its deadline. Their values are what
     * was produced (found by event id), their offsets those on the messages topic. */
    {
        struct harness_kafka_records msgs = {0};
        H_CHECK(h, harness_kafka_read(dit_bootstrap, DIT_T_MESSAGES, 0, 10000, &msgs, err,
                                      sizeof(err)) == 0);
        for (size_t m = 0; m < msgs.n; m++) {
            const char *v = msgs.v[m].value;
            const char *which = NULL, *cls = NULL, *part = NULL;
            int lo = 1, hi = 1, pat = -1;
            if (!v)
                continue;
            if (strstr(v, "\"ff-013-000\"") || strstr(v, "\"ff-013-001\"")) {
                which = strstr(v, "\"ff-013-000\"") ? "z0" : "z1";
                cls = "permanent";
                part = "404";
                pat = PZ;
            } else if (strstr(v, "\"ff-014-000\"")) {
                which = "w0";
                cls = "exhausted";
                part = "retry deadline exhausted";
                lo = 2;
                hi = 1000;
                pat = PW;
            }
            if (!which)
                continue;
            src.what = which;
            src.partition = msgs.v[m].partition;
            src.offset = msgs.v[m].offset;
            rec = dlq_find(&dlq, v);
            dit_fleet_patient(pat, key, sizeof(key));
            dlq_check(rec, which, key, cls, part, &src, lo, hi);
            if (rec && pat == PW)
                w0_dlq_ms = rec->timestamp_ms;
        }
        harness_kafka_records_free(&msgs);
    }
    /* Given up when the next retry would pass the deadline: at most one backoff early. */
    H_CHECKF(h, w0_dlq_ms - t_start >= DEADLINE - MAX_BACKOFF,
             "w0 was dead-lettered %lld ms after the start, before its %d ms deadline",
             w0_dlq_ms - t_start, DEADLINE);

    /* Every other message delivered exactly once; none of the failed ones. */
    all = dit_sb_requests("target=webhook", 0);
    json_array_foreach(all, k, r)
    {
        json_t *b = dit_req_body(r);
        int p, i;
        if (json_integer_value(json_object_get(r, "status")) == 200 &&
            dit_fleet_parse(json_string_value(json_object_get(b, "communication_id")), &p, &i) ==
                0 &&
            p < NPAT && i < 3) {
            delivered[p][i]++;
            if (p < NOTHERS && dit_req_ms(r) > others_last)
                others_last = dit_req_ms(r);
            if (p == PW && i == 1)
                w1_at = dit_req_ms(r);
        }
        json_decref(b);
    }
    json_decref(all);
    for (int p = 0; p < NPAT; p++) {
        for (int i = 0; i < 3; i++) {
            int want = 1;
            if ((p == PZ && i < 2) || (p == PW && i == 0) || (p == PY && i == 2) ||
                (p == PU && i > 0) || (p == PW && i == 2))
                want = 0;
            if (delivered[p][i] != want && fails++ < 5)
                H_FAIL(h, "patient %d message %d reached the webhook %d times, expected %d", p, i,
                       delivered[p][i], want);
        }
    }
    /* W's retries held up nobody: the other patients were done before w0 was given up; w1 came
     * only after w0 was finished (per-patient order). */
    H_CHECKF(h, others_last > 0 && others_last < w0_dlq_ms,
             "the other patients finished %lld ms after w0 was dead-lettered",
             others_last - w0_dlq_ms);
    H_CHECKF(h, w1_at >= w0_dlq_ms, "w1 reached the webhook %lld ms before w0 was dead-lettered",
             w0_dlq_ms - w1_at);

    /* Results: "failed" for what went to the DLQ after the handler saw it. */
    map = dit_results();
    {
        const char *failed_events[] = {"ff-013-000", "ff-013-001", "ff-014-000", "poison-data"};
        for (size_t i = 0; i < 4; i++)
            dit_check_result(json_object_get(map, failed_events[i]), "webhook", "failed", NULL, -1,
                             failed_events[i]);
    }
    json_decref(map);

    /* Restart: the committed offsets are past every DLQ'd record, so nothing is redone. */
    mark = dit_sb_mark();
    status = harness_proc_stop(deliver, 20000);
    H_CHECKF(h, status == 0, "pm-deliver exited %d after SIGTERM", status);
    deliver = dit_deliver_start("deliver-restarted", env, base, sizeof(base), 40000);
    if (deliver) {
        long long deadline = harness_now_ms() + 30000;
        char *log = NULL;
        while (harness_now_ms() < deadline) {
            free(log);
            log = harness_proc_stderr(deliver);
            if (log && strstr(log, "\"msg\":\"partitions assigned\""))
                break;
            harness_sleep_ms(200);
        }
        H_CHECKF(h, log && strstr(log, "\"msg\":\"partitions assigned\""),
                 "the restarted pm-deliver got no partitions");
        free(log);
        harness_sleep_ms(3000);
        all = dit_sb_requests(NULL, mark);
        H_CHECKF(h, json_array_size(all) == 0,
                 "the restarted pm-deliver made %zu requests: it redid finished work",
                 json_array_size(all));
        json_decref(all);
        H_CHECK(h, harness_kafka_read(dit_bootstrap, DIT_T_DLQ, 0, 10000, &dlq2, err,
                                      sizeof(err)) == 0);
        H_CHECKF(h, dlq2.n == dlq.n, "%zu DLQ records after the restart, %zu before", dlq2.n,
                 dlq.n);
        harness_kafka_records_free(&dlq2);
        H_CHECKF(h, harness_proc_stop(deliver, 20000) == 0,
                 "the restarted pm-deliver did not exit 0 on SIGTERM");
    }

    fprintf(stderr,
            "deliver-faults-poison: 44 events (3 poison, 2 permanent, 1 exhausted, 38 good): "
            "%zu on the DLQ, others done %lld ms before w0 was dead-lettered (%lld ms after the "
            "start; deadline %d ms)\n",
            dlq.n, w0_dlq_ms - others_last, w0_dlq_ms - t_start, DEADLINE);
    harness_kafka_records_free(&dlq);
    free(ev_data);
    free(ev_type);
    return harness_finish(h);
}
