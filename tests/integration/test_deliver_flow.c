/* pm-deliver under load: per-patient order, a slow patient not stalling others, SIGTERM drain. */
#include "deliver_it.h"

#include "cpus.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 60000

#define NORDER    6 /* patients of the order check */
#define PERORDER  8 /* messages each */
#define SLOW      6 /* the slow patient's index */
#define NSLOW     4 /* its messages */
#define SLOW_MS   2000
#define DRAIN0    10 /* first index of the drain patients */
#define NDRAIN    8
#define PERDRAIN  5
#define IN_FLIGHT 4

static struct harness *h;

/* Message text and the patients' name: never in pm-deliver's log. */
static const char *const sensitive[] = {"Flow message",
                                        "for person",
                                        "Flow Person",
                                        DIT_CLIENT_SEC,
                                        DIT_TWILIO_TOK,
                                        DIT_SG_KEY,
                                        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                        "Bearer",
                                        NULL};
static char base[128];
static char kafka_props[512];

/* Invented ids: patient p is e00000pp000…, its message i is e10000pp-0000-4000-8000-<i>; all
 * messages of one patient share the prefix "e10000pp-" (for a sandbox fault by path). */
static void patient_id(int p, char *out, size_t len)
{
    snprintf(out, len, "%08x%024x", 0xe0000000u + (unsigned)p, 0u);
}

static void comm_id(int p, int i, char *out, size_t len)
{
    snprintf(out, len, "%08x-0000-4000-8000-%012x", 0xe1000000u + (unsigned)p, (unsigned)i);
}

static void event_id(int p, int i, char *out, size_t len)
{
    snprintf(out, len, "df-%02d-%02d", p, i);
}

static void seed_patient(json_t *all, int p, int n)
{
    char pid[40], cid[40], ref[64], sender[64], text[96];

    patient_id(p, pid, sizeof(pid));
    json_array_append_new(all, json_pack("{s:s, s:s, s:b, s:[{s:s}]}", "resourceType", "Patient",
                                         "id", pid, "active", 1, "name", "text", "Flow Person"));
    snprintf(ref, sizeof(ref), "Patient/%s", pid);
    snprintf(sender, sizeof(sender), "Practitioner/%s", DIT_MORGAN);
    for (int i = 0; i < n; i++) {
        comm_id(p, i, cid, sizeof(cid));
        snprintf(text, sizeof(text), "<p>Flow message %d for person %d</p>", i, p);
        json_array_append_new(all, json_pack("{s:s, s:s, s:s, s:s, s:[{s:s}], s:{s:s}, s:[{s:s}]}",
                                             "resourceType", "Communication", "id", cid, "status",
                                             "completed", "sent", "2026-03-02T16:00:00+00:00",
                                             "recipient", "reference", ref, "sender", "reference",
                                             sender, "payload", "contentString", text));
    }
}

/* Events to produce in one go (dit_messages). */
struct batch {
    char eid[64][32], pid[64][40], cid[64][40];
    const char *eids[64], *pids[64], *cids[64];
    size_t n;
};

static void batch_add(struct batch *b, int p, int i)
{
    if (!H_CHECK(h, b->n < 64))
        return;
    event_id(p, i, b->eid[b->n], sizeof(b->eid[0]));
    patient_id(p, b->pid[b->n], sizeof(b->pid[0]));
    comm_id(p, i, b->cid[b->n], sizeof(b->cid[0]));
    b->eids[b->n] = b->eid[b->n];
    b->pids[b->n] = b->pid[b->n];
    b->cids[b->n] = b->cid[b->n];
    b->n++;
}

/* Patient index and message index of a webhook request's body, or -1. */
static int webhook_of(const json_t *req, int *p, int *i)
{
    json_t *b = dit_req_body(req);
    const char *c = json_string_value(json_object_get(b, "communication_id"));
    unsigned pp, ii;
    int ok = c && sscanf(c, "%8x-0000-4000-8000-%12x", &pp, &ii) == 2 && pp >= 0xe1000000u;
    if (ok) {
        *p = (int)(pp - 0xe1000000u);
        *i = (int)ii;
    }
    json_decref(b);
    return ok ? 0 : -1;
}

/* When event (p, i)'s webhook result said "delivered" (the earliest, should the event have been
 * handled twice: at least once allows it), or -1. */
static long long delivered_at(json_t *map, int p, int i)
{
    char eid[32];
    json_t *r;
    size_t k;
    long long first = -1;

    event_id(p, i, eid, sizeof(eid));
    json_array_foreach(json_object_get(map, eid), k, r)
    {
        const char *ch = json_string_value(json_object_get(r, "channel"));
        const char *outcome = json_string_value(json_object_get(r, "outcome"));
        long long t = json_integer_value(json_object_get(r, "_ts_ms"));
        if (ch && !strcmp(ch, "webhook") && outcome && !strcmp(outcome, "delivered") &&
            (first < 0 || t < first))
            first = t;
    }
    return first;
}

/* ---- 11 + 12: a backlog of interleaved patients, one of them slow ---- */

static struct harness_proc *test_order_and_slow(void)
{
    static struct batch b;
    char prefix[64], cid[40];
    char inflight[64];
    const char *env[] = {kafka_props, inflight, NULL};
    struct harness_proc *deliver;
    json_t *faults = json_array(), *map, *reqs, *r;
    size_t k;
    int next[NORDER + 1] = {0}, bad = 0;
    long long slow_last, others_last = 0;
    char *text;

    /* Every third message of the order patients is slow to read (150 ms): were two messages of
     * one patient handled at once, the one after it would overtake it. */
    for (int p = 0; p < NORDER; p++) {
        for (int i = 1; i < PERORDER; i += 3) {
            comm_id(p, i, cid, sizeof(cid));
            snprintf(prefix, sizeof(prefix), "/fhir/Communication/%s", cid);
            json_array_append_new(faults,
                                  json_pack("{s:s, s:s, s:i, s:i}", "target", "fhir", "path_prefix",
                                            prefix, "latency_ms", 150, "count", -1));
        }
    }
    /* The slow patient: every read of its messages takes SLOW_MS. */
    snprintf(prefix, sizeof(prefix), "/fhir/Communication/%08x-", 0xe1000000u + SLOW);
    json_array_append_new(faults, json_pack("{s:s, s:s, s:i, s:i}", "target", "fhir", "path_prefix",
                                            prefix, "latency_ms", SLOW_MS, "count", -1));
    text = json_dumps(faults, JSON_COMPACT);
    dit_sb_ok("POST", "/_sandbox/faults", text);
    free(text);
    json_decref(faults);

    /* The backlog is on Kafka before pm-deliver starts: the slow patient's messages first, then
     * the others interleaved (p0 m0, p1 m0, ..., p0 m1, ...). */
    for (int i = 0; i < NSLOW; i++)
        batch_add(&b, SLOW, i);
    for (int i = 0; i < PERORDER; i++)
        for (int p = 0; p < NORDER; p++)
            batch_add(&b, p, i);
    dit_messages(b.eids, b.pids, b.cids, b.n);
    snprintf(inflight, sizeof(inflight), "PM_DELIVER_MAX_IN_FLIGHT=%d", IN_FLIGHT);
    deliver = dit_deliver_start("deliver", env, base, sizeof(base), 30000);
    if (!deliver)
        return NULL;
    map = dit_wait_results(b.eids, b.n, 3, WAIT_MS);
    dit_sb_ok("DELETE", "/_sandbox/faults", NULL);

    /* The start line tells how many threads run the handlers: one per CPU this process may use
     * (affinity mask and cgroup quota), no more than the in-flight limit. */
    {
        char want[64];
        int n = cpus_available();
        char *log = harness_proc_stderr(deliver);
        snprintf(want, sizeof(want), "\"worker_threads\":%d,", n < IN_FLIGHT ? n : IN_FLIGHT);
        H_CHECKF(h, log && strstr(log, "pm-deliver listening") && strstr(log, want),
                 "pm-deliver's start line has %s", want);
        free(log);
    }

    /* 11. Each patient's webhook requests came in production order, each message once. */
    reqs = dit_sb_requests("target=webhook", 0);
    json_array_foreach(reqs, k, r)
    {
        int p, i;
        if (webhook_of(r, &p, &i) != 0 || p > NORDER)
            continue;
        H_CHECK_INT(h, json_integer_value(json_object_get(r, "status")), 200);
        if (i != next[p]) {
            if (bad++ < 5)
                H_FAIL(h, "patient %d: message %d reached the webhook when %d was due", p, i,
                       next[p]);
        }
        next[p] = i + 1;
    }
    json_decref(reqs);
    for (int p = 0; p < NORDER; p++)
        H_CHECKF(h, next[p] == PERORDER, "patient %d: webhook saw messages up to %d of %d", p,
                 next[p], PERORDER);
    H_CHECKF(h, next[SLOW] == NSLOW, "slow patient: webhook saw messages up to %d of %d",
             next[SLOW], NSLOW);

    /* Results, keyed by patient, are in order on their partition too. */
    {
        json_t *all = dit_results_list();
        int rnext[NORDER + 1] = {0};
        json_array_foreach(all, k, r)
        {
            const char *src = json_string_value(json_object_get(r, "source_event_id"));
            const char *ch = json_string_value(json_object_get(r, "channel"));
            int p, i;
            if (!src || !ch || strcmp(ch, "webhook") || sscanf(src, "df-%d-%d", &p, &i) != 2 ||
                p > NORDER)
                continue;
            H_CHECKF(h, i == rnext[p], "patient %d: result of message %d when %d was due", p, i,
                     rnext[p]);
            rnext[p] = i + 1;
        }
        json_decref(all);
    }

    /* 12. Every other patient's messages were done before the slow patient's last one; its own
     *     messages were handled one after another (each read takes SLOW_MS). */
    slow_last = delivered_at(map, SLOW, NSLOW - 1);
    for (int p = 0; p < NORDER; p++) {
        for (int i = 0; i < PERORDER; i++) {
            long long t = delivered_at(map, p, i);
            H_CHECKF(h, t > 0, "message %d of patient %d not delivered", i, p);
            if (t > others_last)
                others_last = t;
        }
    }
    fprintf(stderr, "deliver-flow: others done %lld ms before the slow patient's last message\n",
            slow_last - others_last);
    H_CHECKF(h, slow_last > 0 && others_last < slow_last - SLOW_MS,
             "the other patients finished at %lld, the slow one at %lld (ms since epoch)",
             others_last, slow_last);
    for (int i = 1; i < NSLOW; i++) {
        long long t1 = delivered_at(map, SLOW, i - 1), t2 = delivered_at(map, SLOW, i);
        H_CHECKF(h, t1 > 0 && t2 - t1 >= SLOW_MS - 100,
                 "slow messages %d and %d finished %lld ms apart", i - 1, i, t2 - t1);
    }
    json_decref(map);
    return deliver;
}

/* ---- 13. SIGTERM mid-stream: drained, committed, nothing lost ---- */

static struct harness_proc *test_drain(struct harness_proc *deliver)
{
    static struct batch b;
    char inflight[64];
    /* The restarted process gets a short drain timeout for test_drain_timeout. */
    const char *env[] = {kafka_props, inflight, "PM_DELIVER_DRAIN_TIMEOUT_MS=500", NULL};
    long long mark = dit_sb_mark(), deadline, t0, drain_ms;
    json_t *map, *reqs, *r;
    size_t k, done_before = 0, redone = 0;
    int status, posted[NDRAIN][PERDRAIN] = {{0}}, done_first[NDRAIN][PERDRAIN] = {{0}};
    char *log;

    snprintf(inflight, sizeof(inflight), "PM_DELIVER_MAX_IN_FLIGHT=%d", IN_FLIGHT);
    dit_sb_ok("POST", "/_sandbox/latency", "{\"ms\": 300}");
    for (int i = 0; i < PERDRAIN; i++)
        for (int d = 0; d < NDRAIN; d++)
            batch_add(&b, DRAIN0 + d, i);
    dit_messages(b.eids, b.pids, b.cids, b.n);
    /* Mid-stream: some messages are through, most are not. */
    deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        reqs = dit_sb_requests("target=webhook", mark);
        if (json_array_size(reqs) >= 6 || harness_now_ms() > deadline)
            break;
        json_decref(reqs);
        harness_sleep_ms(50);
    }
    t0 = harness_now_ms();
    harness_proc_signal(deliver, SIGTERM);
    status = harness_proc_wait(deliver, 20000);
    H_CHECKF(h, status == 0, "pm-deliver exited %d after SIGTERM", status);
    /* PM_DELIVER_DRAIN_TIMEOUT_MS is 15 s; 4 messages in flight need about a second. */
    drain_ms = harness_now_ms() - t0;
    H_CHECKF(h, drain_ms < 15000, "draining took %lld ms", drain_ms);
    dit_check_log_clean(deliver, sensitive);
    log = harness_proc_stderr(deliver);
    H_CHECKF(h, log && !strstr(log, "abandoned") && !strstr(log, "records in progress"),
             "pm-deliver abandoned work in progress at SIGTERM");
    free(log);

    map = dit_results();
    for (int d = 0; d < NDRAIN; d++)
        for (int i = 0; i < PERDRAIN; i++)
            if (delivered_at(map, DRAIN0 + d, i) > 0) {
                done_first[d][i] = 1;
                done_before++;
            }
    json_decref(map);
    H_CHECKF(h, done_before > 0 && done_before < b.n,
             "%zu of %zu messages were delivered before SIGTERM: not mid-stream", done_before, b.n);
    /* Drained: a message whose webhook request had gone out when SIGTERM came was finished,
     * its results published, before the process exited. */
    json_array_foreach(reqs, k, r)
    {
        int p, i;
        if (webhook_of(r, &p, &i) == 0 && p >= DRAIN0 && p < DRAIN0 + NDRAIN && i < PERDRAIN)
            H_CHECKF(h, done_first[p - DRAIN0][i],
                     "message %d of drain patient %d was in flight at SIGTERM and not finished", i,
                     p - DRAIN0);
    }
    json_decref(reqs);

    /* The same group again: it takes over from the committed offsets. */
    dit_sb_ok("POST", "/_sandbox/latency", "{\"ms\": 0}");
    deliver = dit_deliver_start("deliver-restarted", env, base, sizeof(base), 40000);
    if (!deliver)
        return NULL;
    map = dit_wait_results(b.eids, b.n, 3, WAIT_MS);
    for (int d = 0; d < NDRAIN; d++)
        for (int i = 0; i < PERDRAIN; i++)
            H_CHECKF(h, delivered_at(map, DRAIN0 + d, i) > 0,
                     "message %d of drain patient %d was lost", i, d);
    json_decref(map);

    reqs = dit_sb_requests("target=webhook", mark);
    json_array_foreach(reqs, k, r)
    {
        int p, i;
        if (webhook_of(r, &p, &i) != 0 || p < DRAIN0 || p >= DRAIN0 + NDRAIN || i >= PERDRAIN)
            continue;
        if (json_integer_value(json_object_get(r, "status")) == 200)
            posted[p - DRAIN0][i]++;
    }
    json_decref(reqs);
    for (int d = 0; d < NDRAIN; d++) {
        for (int i = 0; i < PERDRAIN; i++) {
            H_CHECKF(h, posted[d][i] >= 1,
                     "message %d of drain patient %d never reached the webhook", i, d);
            if (done_first[d][i] && posted[d][i] > 1)
                redone++;
        }
    }
    /* At least once, but what was finished and committed at SIGTERM is not redone wholesale:
     * only records behind an unfinished one on their partition may come again. */
    fprintf(stderr,
            "deliver-flow: drained in %lld ms; %zu of %zu delivered before SIGTERM, %zu "
            "of them again after the restart\n",
            drain_ms, done_before, b.n, redone);
    H_CHECKF(h, redone < done_before,
             "%zu of the %zu messages finished before SIGTERM were delivered again after the "
             "restart",
             redone, done_before);
    return deliver;
}

/* A party hanging at shutdown: the drain timeout (500 ms here) passes with messages in flight.
 * pm-deliver says it abandoned them (their offsets are not committed: the next owner redoes
 * them) and still exits cleanly, whatever the late answers bring. */
static void test_drain_timeout(struct harness_proc *deliver)
{
    static struct batch b;
    long long mark = dit_sb_mark(), deadline;
    json_t *reqs = NULL;
    int status;
    char *log;

    dit_sb_ok("POST", "/_sandbox/faults",
              "{\"target\": \"webhook\", \"latency_ms\": 2500, \"count\": -1}");
    for (int d = 0; d < IN_FLIGHT; d++)
        batch_add(&b, DRAIN0 + d, PERDRAIN);
    dit_messages(b.eids, b.pids, b.cids, b.n);
    deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        reqs = dit_sb_requests("target=webhook", mark);
        if (json_array_size(reqs) >= b.n || harness_now_ms() > deadline)
            break;
        json_decref(reqs);
        harness_sleep_ms(50);
    }
    H_CHECKF(h, json_array_size(reqs) == b.n, "%zu of %zu webhook requests in flight",
             json_array_size(reqs), b.n);
    json_decref(reqs);
    harness_proc_signal(deliver, SIGTERM);
    status = harness_proc_wait(deliver, 20000);
    H_CHECKF(h, status == 0, "pm-deliver exited %d after SIGTERM with work in flight", status);
    log = harness_proc_stderr(deliver);
    H_CHECKF(h, log && strstr(log, "abandoned"), "pm-deliver did not say it abandoned work");
    free(log);
    dit_check_log_clean(deliver, sensitive);
    dit_sb_ok("DELETE", "/_sandbox/faults", NULL);
}

int main(void)
{
    json_t *all = json_array();
    struct harness_proc *deliver;
    char path[400], *text;
    FILE *f;

    h = dit_h = harness_init("deliver-flow");
    if (dit_start(h, 4) != 0)
        return harness_finish(h);

    /* The mock cluster replaces a member that left only once its session timed out: a short
     * session keeps the restart below quick. */
    harness_path(h, "kafka.properties", path, sizeof(path));
    f = fopen(path, "w");
    if (!H_CHECK(h, f != NULL))
        return harness_finish(h);
    fputs("# pm-deliver in the flow test\nsession.timeout.ms=6000\n", f);
    fclose(f);
    snprintf(kafka_props, sizeof(kafka_props), "PM_KAFKA_CONFIG_FILE=%s", path);

    for (int p = 0; p < NORDER; p++)
        seed_patient(all, p, PERORDER);
    seed_patient(all, SLOW, NSLOW);
    for (int d = 0; d < NDRAIN; d++)
        seed_patient(all, DRAIN0 + d, PERDRAIN + 1);
    text = json_dumps(all, JSON_COMPACT);
    dit_sb_ok("POST", "/_sandbox/resources", text);
    free(text);
    json_decref(all);

    deliver = test_order_and_slow();
    if (deliver)
        deliver = test_drain(deliver);
    if (deliver)
        test_drain_timeout(deliver);
    return harness_finish(h);
}
