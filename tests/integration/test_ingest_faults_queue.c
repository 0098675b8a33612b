/* pm-ingest fault: a slow broker and a burst of large events filling the local queue. */
#include "ingest_it.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * pm-ingest bounds what waits for Kafka to 32 MiB (queue.buffering.max.kbytes, enforced after
 * the properties file; docs/operations.md). With the broker answering every Produce request
 * 10 s late, WAVE1 concurrent requests of ~900 KB each (1 MiB is the default body limit) fill
 * that queue: the rest must get 503 + Retry-After at once (QUEUE_FULL), not wait and not pile
 * up in memory. Then WAVE2 more requests (2 connections, one after the other) are sent into the
 * full queue, and the broker recovers.
 * /healthz is probed all along; its answers are told apart by phase: filling (the burst's
 * bodies being parsed), full (overload: requests turned away), draining.
 */

#define WAVE1       48 /* x 900 KB = 43 MB: ~10 more than the queue holds */
#define WAVE2_CONNS 2
#define WAVE2_MS    3000   /* how long they keep sending into the full queue */
#define TEXT_BYTES  900000 /* the burst's bodies */
#define TEXT2_BYTES 400000 /* later ones: over the ~240 KB the full queue has left */
#define PARTITIONS  64     /* the mock keeps ~5 MiB per partition: room for every record */

static struct harness *h;
static char base[64];
static struct iit_log log_all;
enum phase { FILLING, FULL, DRAINING, DONE };
static const char *const phase_name[] = {"filling", "full", "draining"};
static atomic_int phase;
static atomic_int more; /* wave 2 keeps sending while set */
static long long probe_max_ms[3];
static int probes[3], probe_fail;

struct sender {
    pthread_t tid;
    int index;
    int count;
    int text_bytes;
    const char *tag;
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    struct iit_client c;
    size_t cap = (size_t)s->text_bytes + 128;
    char *body = malloc(cap);

    if (!body || iit_client_init(&c, base) != 0) {
        free(body);
        return NULL;
    }
    for (int i = 0; i < s->count || (s->count == 0 && atomic_load(&more)); i++) {
        struct iit_result r;
        char id[64];
        int n;
        memset(&r, 0, sizeof(r));
        snprintf(id, sizeof(id), "%s-%d-%d", s->tag, s->index, i);
        n = snprintf(body, cap, "{\"patient_id\":\"pt%d\",\"text\":\"", s->index * 100 + i);
        memset(body + n, 'x', (size_t)s->text_bytes);
        n += s->text_bytes;
        n += snprintf(body + n, cap - (size_t)n, "\"}");
        iit_post(&c, "/v1/patient/replies", id, body, (size_t)n, 60000, &r);
        iit_log_add(&log_all, &r);
    }
    iit_client_free(&c);
    free(body);
    return NULL;
}

/* GET /healthz every 50 ms on a fresh connection; the slowest answer of each phase (a probe
 * counts for the phase it started in). */
static void *probe_main(void *arg)
{
    char url[96];
    int ph;
    (void)arg;
    snprintf(url, sizeof(url), "%s/healthz", base);
    while ((ph = atomic_load(&phase)) != DONE) {
        struct harness_http_response r;
        long long t0 = harness_now_ms(), ms;
        harness_http("GET", url, NULL, NULL, 0, 10000, &r);
        ms = harness_now_ms() - t0;
        probes[ph]++;
        probe_fail += r.status != 200;
        if (ms > probe_max_ms[ph])
            probe_max_ms[ph] = ms;
        harness_http_response_free(&r);
        harness_sleep_ms(50);
    }
    return NULL;
}

/* pm_ingest_kafka_waiting from /metrics (records handed to Kafka, not yet answered), or -1. */
static long kafka_waiting(void)
{
    struct harness_http_response r;
    char url[96];
    const char *p;
    long n = -1;
    snprintf(url, sizeof(url), "%s/metrics", base);
    if (harness_http("GET", url, NULL, NULL, 0, 10000, &r) == 0 &&
        (p = strstr(r.body, "\npm_ingest_kafka_waiting ")) != NULL)
        n = strtol(p + 25, NULL, 10);
    harness_http_response_free(&r);
    return n;
}

/* Requests of @p tag answered already: 503 because the queue was full, or (on a machine slow
 * enough for the broker's 10 s to pass) 202. */
static int answered(const char *tag)
{
    int n = 0;
    pthread_mutex_lock(&log_all.lock);
    for (size_t i = 0; i < log_all.n; i++)
        n += !strncmp(log_all.v[i].id, tag, strlen(tag)) &&
             (log_all.v[i].status == 202 ||
              (log_all.v[i].status == 503 && strstr(log_all.v[i].detail, "too many events")));
    pthread_mutex_unlock(&log_all.lock);
    return n;
}

static void wave(struct sender *s, int n, int each, int text_bytes, const char *tag)
{
    for (int i = 0; i < n; i++) {
        s[i].index = i;
        s[i].count = each;
        s[i].text_bytes = text_bytes;
        s[i].tag = tag;
        if (pthread_create(&s[i].tid, NULL, sender_main, &s[i]) != 0)
            s[i].tid = 0;
    }
}

static void wave_join(struct sender *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s[i].tid)
            pthread_join(s[i].tid, NULL);
}

int main(void)
{
    struct harness_proc *kafka, *ingest;
    struct sender w1[WAVE1], w2[WAVE2_CONNS];
    struct iit_topic topic = {0};
    struct iit_summary sum;
    pthread_t prober;
    char bootstrap[512];
    long rss0, hwm1, hwm2, rss_end, waiting = -1;
    int port = harness_free_port(), full = 0, full_w2 = 0, slow_full = 0, pid;
    long long t_rtt0;

    h = harness_init("ingest_faults_queue");
    iit_log_init(&log_all);
    atomic_init(&phase, FILLING);
    atomic_init(&more, 0);
    kafka = harness_devbroker_start(h, 1, PARTITIONS, NULL, bootstrap, sizeof(bootstrap));
    if (!H_CHECK(h, kafka != NULL))
        return harness_finish(h);
    {
        /* The sanitizer build's allocator keeps freed memory in quarantine (256 MiB by
         * default): a small one keeps the RSS figure about pm-ingest, not about ASan. */
        static char asan[512];
        const char *cur = getenv("ASAN_OPTIONS");
        snprintf(asan, sizeof(asan), "ASAN_OPTIONS=%s%squarantine_size_mb=8", cur ? cur : "",
                 cur && *cur ? ":" : "");
        const char *env[] = {"PM_INGEST_ACK_TIMEOUT_MS=20000", asan, NULL};
        ingest = iit_ingest_start(h, bootstrap, port, env);
    }
    if (!ingest)
        return harness_finish(h);
    pid = harness_proc_pid(ingest);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);

    /* Warm up (allocator arenas, librdkafka buffers) before the baseline. */
    wave(w2, 2, 1, TEXT_BYTES, "qwarm");
    wave_join(w2, 2);
    rss0 = iit_proc_kb(pid, "VmRSS");

    H_CHECK_INT(h, harness_devbroker_cmd(kafka, "rtt all 10000", NULL, 0), 0);
    if (!H_CHECK(h, pthread_create(&prober, NULL, probe_main, NULL) == 0))
        return harness_finish(h);
    wave(w1, WAVE1, 1, TEXT_BYTES, "qburst");
    /* Filled: every request of the burst is waiting for Kafka or was answered. */
    for (long long until = harness_now_ms() + 40000;; harness_sleep_ms(100)) {
        waiting = kafka_waiting();
        if (waiting + answered("qburst") >= WAVE1)
            break;
        if (harness_now_ms() > until) {
            H_FAIL(h, "the burst was not processed within 40 s (%ld waiting)", waiting);
            break;
        }
    }
    hwm1 = iit_proc_kb(pid, "VmHWM");
    atomic_store(&phase, FULL);
    atomic_store(&more, 1);
    wave(w2, WAVE2_CONNS, 0, TEXT2_BYTES, "qmore");
    harness_sleep_ms(WAVE2_MS);
    atomic_store(&more, 0);
    wave_join(w2, WAVE2_CONNS);
    hwm2 = iit_proc_kb(pid, "VmHWM");

    /* The broker recovers: what waits gets its answer (202, or 503 at the ack deadline). */
    atomic_store(&phase, DRAINING);
    H_CHECK_INT(h, harness_devbroker_cmd(kafka, "rtt all 0", NULL, 0), 0);
    t_rtt0 = harness_now_ms();
    wave_join(w1, WAVE1);
    hwm2 = iit_proc_kb(pid, "VmHWM") > hwm2 ? iit_proc_kb(pid, "VmHWM") : hwm2;
    atomic_store(&phase, DONE);
    pthread_join(prober, NULL);
    rss_end = iit_proc_kb(pid, "VmRSS");

    for (size_t i = 0; i < log_all.n; i++) {
        const struct iit_result *r = &log_all.v[i];
        int is_full = r->status == 503 && strstr(r->detail, "too many events");
        if (strncmp(r->id, "qwarm", 5) == 0)
            continue;
        H_CHECKF(h, r->status == 202 || (r->status == 503 && r->retry_after),
                 "%s: status %ld (curl %d) %s", r->id, r->status, r->curl_code, r->detail);
        if (is_full) {
            full++;
            full_w2 += !strncmp(r->id, "qmore", 5);
        }
        /* Sent into the full queue: turned away at once (Retry-After: 1), never made to wait
         * for room (the broker answers only 10 s later). */
        if (!strncmp(r->id, "qmore", 5)) {
            H_CHECKF(h, is_full, "%s: status %ld '%s' from a full queue", r->id, r->status,
                     r->detail);
            if (r->t_end - r->t_start > 2000 && slow_full++ < 5)
                H_FAIL(h, "%s: queue-full 503 after %lld ms", r->id, r->t_end - r->t_start);
        }
    }
    H_CHECKF(h, full >= 10, "only %d requests were told the queue is full", full);
    H_CHECKF(h, waiting >= 20, "only %ld events waited for Kafka", waiting);
    H_CHECKF(h, full_w2 >= 10, "only %d requests were sent into the full queue", full_w2);
    /* Requests turned away must not cost memory: sending WAVE2 more into the full queue leaves
     * the peak where the burst put it. The burst itself is bounded by the 32 MiB queue: each
     * waiting request holds its body and its record (~2 x 900 KB) until Kafka answers. */
    H_CHECKF(h, hwm2 - hwm1 < 24 * 1024, "peak RSS grew %ld KiB while the queue was full",
             hwm2 - hwm1);
    H_CHECKF(h, hwm2 - rss0 < 128 * 1024, "peak RSS %ld KiB over the baseline %ld KiB", hwm2 - rss0,
             rss0);
    H_CHECKF(h, probes[FILLING] + probes[FULL] >= 20 && probe_fail == 0,
             "/healthz: %d probes, %d not 200", probes[FILLING] + probes[FULL], probe_fail);
    /* While the queue is full and requests keep coming, liveness answers promptly: nothing
     * blocks a worker on Kafka (a producev that waited for room would stall it for seconds).
     * While the burst is being parsed it only answers: each ~900 KB body costs ~40 ms of CPU
     * (jansson) on the same two workers, which docs/reliability.md reports. */
    H_CHECKF(h, probes[FULL] >= 10 && probe_max_ms[FULL] < 200,
             "/healthz took %lld ms (of %d probes) while the queue was full", probe_max_ms[FULL],
             probes[FULL]);

    H_CHECK(h, harness_proc_running(ingest));
    if (iit_topic_read(h, bootstrap, "pm.patient.replies", &topic) == 0) {
        iit_check_delivery(h, &log_all, &topic, "q", &sum);
        iit_summary_print("queue full (rtt 10 s, 48 x 900 KB, then 400 KB requests for 3 s)", &sum);
        fprintf(stderr,
                "FIGURES queue full: %ld events waiting, %d answered 503 queue-full (%d "
                "sent into the full queue, all of them); RSS %ld KiB at rest, peak %ld KiB after "
                "the burst, %ld KiB after "
                "the overflow, %ld KiB at the end; last answer %lld ms after rtt 0\n",
                waiting, full, full_w2, rss0, hwm1, hwm2, rss_end, harness_now_ms() - t_rtt0);
        for (int p = FILLING; p <= DRAINING; p++)
            fprintf(stderr, "FIGURES queue full: /healthz while %s: %d probes, slowest %lld ms\n",
                    phase_name[p], probes[p], probe_max_ms[p]);
    }
    iit_topic_free(&topic);
    harness_proc_signal(ingest, SIGTERM);
    H_CHECK_INT(h, harness_proc_wait(ingest, 30000), 0);
    iit_log_free(&log_all);
    return harness_finish(h);
}
