/* pm-ingest fault: Produce requests failing with retriable and permanent broker errors. */
#include "ingest_it.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BURST_THREADS 4
#define BURST_EACH    6

static struct harness *h;
static struct harness_proc *kafka;
static char base[64];
static struct iit_log log_all;
static int next_id;

struct burst_arg {
    pthread_t tid;
    int thread;
    const char *tag;
};

static void *burst_main(void *arg)
{
    struct burst_arg *b = arg;
    struct iit_client c;

    if (iit_client_init(&c, base) != 0)
        return NULL;
    for (int i = 0; i < BURST_EACH; i++) {
        struct iit_result r;
        char id[64];
        memset(&r, 0, sizeof(r));
        snprintf(id, sizeof(id), "%s-%d-%d", b->tag, b->thread, i);
        iit_post_message(&c, id, b->thread * 10 + i, 0, 20000, &r);
        iit_log_add(&log_all, &r);
    }
    iit_client_free(&c);
    return NULL;
}

/* Retriable: the next 5 Produce requests fail with @p code while BURST_THREADS clients send;
 * librdkafka retries them (same producer id and sequence) and every request gets its 202. */
static void retriable(const char *code, const char *tag)
{
    struct burst_arg args[BURST_THREADS];
    char cmd[128];
    size_t from = log_all.n;
    long long slowest = 0;
    int ok = 0;

    snprintf(cmd, sizeof(cmd), "errors Produce 5 %s", code);
    H_CHECKF(h, harness_devbroker_cmd(kafka, cmd, NULL, 0) == 0, "%s refused", cmd);
    for (int i = 0; i < BURST_THREADS; i++) {
        args[i].thread = i;
        args[i].tag = tag;
        if (pthread_create(&args[i].tid, NULL, burst_main, &args[i]) != 0)
            args[i].tid = 0;
    }
    for (int i = 0; i < BURST_THREADS; i++)
        if (args[i].tid)
            pthread_join(args[i].tid, NULL);
    for (size_t i = from; i < log_all.n; i++) {
        const struct iit_result *r = &log_all.v[i];
        ok += r->status == 202;
        H_CHECKF(h, r->status == 202, "%s under %s: status %ld (%s)", r->id, code, r->status,
                 r->type);
        if (r->t_end - r->t_start > slowest)
            slowest = r->t_end - r->t_start;
    }
    /* Refused Produce requests cost retry backoffs (retry.backoff.ms=100; the records of
     * concurrent requests share batches, so five refusals are at least two backoffs for some
     * request): a burst answered faster than that never met the fault. */
    H_CHECKF(h, slowest >= 200, "%s: slowest request %lld ms, the errors did not happen", code,
             slowest);
    H_CHECK_INT(h, ok, BURST_THREADS * BURST_EACH);
    fprintf(stderr, "FIGURES errors Produce 5 %s: %d of %d requests 202, slowest %lld ms\n", code,
            ok, BURST_THREADS * BURST_EACH, slowest);
}

/* Permanent: the next @p count Produce requests fail with @p code. Requests are sent one at a
 * time until @p count were refused and one got its 202 again. Every refused request gets a
 * clear answer (@p want_status with its problem type) and leaves nothing on the topic. */
static void permanent(const char *code, int count, long want_status, const char *want_type,
                      const char *tag, char refused[][64], int *nrefused)
{
    struct iit_client c;
    char cmd[128];
    int bad = 0, first_bad = -1, i;
    long long t0 = harness_now_ms(), t_recovered = -1;

    if (!H_CHECK(h, iit_client_init(&c, base) == 0))
        return;
    H_CHECK_INT(h, harness_devbroker_cmd(kafka, "clear-errors Produce", NULL, 0), 0);
    snprintf(cmd, sizeof(cmd), "errors Produce %d %s", count, code);
    H_CHECKF(h, harness_devbroker_cmd(kafka, cmd, NULL, 0) == 0, "%s refused", cmd);
    for (i = 0; i < 60; i++) {
        struct iit_result r;
        char id[64];
        memset(&r, 0, sizeof(r));
        snprintf(id, sizeof(id), "%s-%d", tag, i);
        iit_post_message(&c, id, 100 + next_id++ % 8, 0, 20000, &r);
        iit_log_add(&log_all, &r);
        if (r.status == 202) {
            if (bad >= count) {
                t_recovered = harness_now_ms();
                break;
            }
            continue;
        }
        if (first_bad < 0)
            first_bad = i;
        bad++;
        if (*nrefused < 64)
            snprintf(refused[(*nrefused)++], 64, "%s", id);
        H_CHECKF(h, r.status == want_status && !strcmp(r.type, want_type),
                 "%s under %s: status %ld type '%s', expected %ld %s", id, code, r.status, r.type,
                 want_status, want_type);
        if (want_status == 503) {
            H_CHECKF(h, r.retry_after, "%s: 503 without Retry-After", id);
            /* A refusal is not a timeout: the detail must not send anyone looking for one. */
            H_CHECKF(h, !strstr(r.detail, "in time"), "%s under %s: detail '%s'", id, code,
                     r.detail);
        }
        harness_sleep_ms(200);
    }
    H_CHECKF(h, first_bad == 0, "%s: the first request after the fault was answered 202", code);
    H_CHECKF(h, bad >= count, "%s: only %d of %d requests refused", code, bad, count);
    H_CHECKF(h, t_recovered > 0, "%s: no 202 again after %d requests", code, i);
    fprintf(stderr,
            "FIGURES errors Produce %d %s: %d requests answered %ld %s, then 202 again after "
            "%lld ms\n",
            count, code, bad, want_status, want_type, t_recovered > 0 ? t_recovered - t0 : -1);
    iit_client_free(&c);
}

int main(void)
{
    struct harness_proc *ingest;
    struct iit_topic topic = {0};
    struct iit_summary sum;
    char bootstrap[512], refused[64][64];
    int nrefused = 0, port = harness_free_port();

    h = harness_init("ingest_faults_errors");
    iit_log_init(&log_all);
    kafka = harness_devbroker_start(h, 1, 4, NULL, bootstrap, sizeof(bootstrap));
    if (!H_CHECK(h, kafka != NULL))
        return harness_finish(h);
    {
        /* One Produce request in flight: pm-devbroker's mock checks no producer sequences, so
         * with several in flight a request sent after a refused one is appended across the gap
         * (a real broker answers OUT_OF_ORDER_SEQUENCE_NUMBER), and librdkafka then takes the
         * refused record as implicitly acknowledged: a 202 for a record that is not there.
         * docs/reliability.md, "Broker errors on Produce". */
        static char props[600];
        char path[512];
        FILE *f;
        harness_path(h, "kafka.properties", path, sizeof(path));
        f = fopen(path, "w");
        if (f) {
            fputs("max.in.flight.requests.per.connection=1\n", f);
            fclose(f);
        }
        snprintf(props, sizeof(props), "PM_KAFKA_CONFIG_FILE=%s", path);
        const char *env[] = {"PM_INGEST_ACK_TIMEOUT_MS=5000", props, NULL};
        ingest = iit_ingest_start(h, bootstrap, port, env);
    }
    if (!ingest)
        return harness_finish(h);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);

    retriable("NOT_LEADER_OR_FOLLOWER", "errl");
    retriable("REQUEST_TIMED_OUT", "errt");
    retriable("NOT_ENOUGH_REPLICAS", "errr");

    /* Kafka refused the record: no retry of ours can change that, and the sender must not be
     * told 2xx. An authorisation or validation refusal is the service's problem, not the
     * client's: 503 with Retry-After (the sender retries once the operator fixed it). A record
     * over the broker's size limit will never fit: 413. */
    permanent("TOPIC_AUTHORIZATION_FAILED", 3, 503, "kafka-unavailable", "erra", refused,
              &nrefused);
    permanent("INVALID_RECORD", 3, 503, "kafka-unavailable", "erri", refused, &nrefused);
    permanent("MSG_SIZE_TOO_LARGE", 2, 413, "payload-too-large", "errs", refused, &nrefused);

    /* Nothing fatal happened to the idempotent producer: still serving, still ready. */
    H_CHECK(h, harness_proc_running(ingest));
    {
        char url[128];
        snprintf(url, sizeof(url), "%s/readyz", base);
        H_CHECK_INT(h, harness_http_wait(url, 200, 10000), 0);
    }

    if (iit_topic_read(h, bootstrap, IIT_TOPIC, &topic) == 0) {
        iit_check_delivery(h, &log_all, &topic, "err", &sum);
        for (int i = 0; i < nrefused; i++)
            H_CHECKF(h, iit_topic_count(&topic, refused[i]) == 0,
                     "refused request %s was produced anyway", refused[i]);
        iit_summary_print("retriable and permanent Produce errors", &sum);
    }
    iit_topic_free(&topic);
    harness_proc_signal(ingest, SIGTERM);
    H_CHECK_INT(h, harness_proc_wait(ingest, 20000), 0);
    iit_log_free(&log_all);
    return harness_finish(h);
}
