/* pm-ingest fault: every broker down for 10 s under a paced stream; 503s, recovery, exactly once.
 */
#include "ingest_it.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define RATE    50.0 /* requests per second, from THREADS keep-alive connections */
#define THREADS 20
#define ACK_MS  2000
#define DOWN_MS 10000

int main(void)
{
    struct harness *h = harness_init("ingest_faults_down");
    struct harness_proc *kafka, *ingest;
    struct iit_load load = {0};
    struct iit_topic topic = {0};
    struct iit_summary sum;
    char bootstrap[512], base[64];
    long long t_down_sent, t_down_ok, t_up_sent, t_recovered = -1, t_end;
    int port = harness_free_port(), before = 0, during = 0, bad_2xx = 0, bad_answer = 0;
    int slow_503 = 0, tail = 0, tail_ok = 0;

    kafka = harness_devbroker_start(h, 1, 4, NULL, bootstrap, sizeof(bootstrap));
    if (!H_CHECK(h, kafka != NULL))
        return harness_finish(h);
    {
        const char *env[] = {"PM_INGEST_ACK_TIMEOUT_MS=2000", NULL};
        ingest = iit_ingest_start(h, bootstrap, port, env);
    }
    if (!ingest)
        return harness_finish(h);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);

    load.base = base;
    load.tag = "down";
    load.threads = THREADS;
    load.rate = RATE;
    load.keys = 40;
    load.timeout_ms = 20000;
    if (!H_CHECK(h, iit_load_start(&load) == 0))
        return harness_finish(h);

    harness_sleep_ms(3000);
    t_down_sent = harness_now_ms();
    H_CHECK_INT(h, harness_devbroker_cmd(kafka, "down all", NULL, 0), 0);
    t_down_ok = harness_now_ms();
    harness_sleep_ms(DOWN_MS);
    t_up_sent = harness_now_ms();
    H_CHECK_INT(h, harness_devbroker_cmd(kafka, "up all", NULL, 0), 0);

    /* Recovery: the first 202 for a request sent after "up all". librdkafka reconnects with a
     * backoff that grew while the broker was away (reconnect.backoff.max.ms, 10 s by default). */
    for (long long until = harness_now_ms() + 30000; t_recovered < 0 && harness_now_ms() < until;) {
        harness_sleep_ms(100);
        pthread_mutex_lock(&load.log.lock);
        for (size_t i = 0; i < load.log.n; i++) {
            const struct iit_result *r = &load.log.v[i];
            if (r->status == 202 && r->t_start >= t_up_sent &&
                (t_recovered < 0 || r->t_end < t_recovered))
                t_recovered = r->t_end;
        }
        pthread_mutex_unlock(&load.log.lock);
    }
    H_CHECKF(h, t_recovered > 0, "no 202 within 30 s of \"up all\"");
    harness_sleep_ms(4000); /* a steady stream again, checked below */
    iit_load_stop(&load);
    t_end = harness_now_ms();

    for (size_t i = 0; i < load.log.n; i++) {
        const struct iit_result *r = &load.log.v[i];
        if (r->t_end < t_down_sent)
            before += r->status == 202;
        /* Sent after the brokers were down and answered before they came back: nothing can
         * have acknowledged it, so 2xx would be a lie. */
        if (r->t_start > t_down_ok && r->t_end < t_up_sent) {
            during++;
            if (r->status >= 200 && r->status < 300 && bad_2xx++ < 10)
                H_FAIL(h, "%s answered %ld while every broker was down", r->id, r->status);
        }
        if (r->status != 202 &&
            (r->status != 503 || !r->retry_after || strcmp(r->type, "kafka-unavailable") != 0)) {
            if (bad_answer++ < 10)
                H_FAIL(h,
                       "%s: status %ld (curl %d), Retry-After %d, type '%s': expected 202, "
                       "or 503 kafka-unavailable with Retry-After",
                       r->id, r->status, r->curl_code, r->retry_after, r->type);
        }
        /* A 503 comes at the ack deadline, not when librdkafka gives up. */
        if (r->status == 503 && r->t_end - r->t_start > ACK_MS + 2500 && slow_503++ < 10)
            H_FAIL(h, "%s: 503 after %lld ms (ack timeout %d ms)", r->id, r->t_end - r->t_start,
                   ACK_MS);
        /* After recovery (plus a second for requests already waiting), everything is 202. */
        if (t_recovered > 0 && r->t_start > t_recovered + 1000) {
            tail++;
            tail_ok += r->status == 202;
        }
    }
    H_CHECKF(h, before > 50, "only %d requests were acknowledged before the outage", before);
    H_CHECKF(h, during >= 40, "only %d requests were sent and answered during the outage", during);
    H_CHECKF(h, tail > 50 && tail_ok == tail, "after recovery %d of %d requests got 202", tail_ok,
             tail);

    H_CHECK(h, harness_proc_running(ingest));
    if (iit_topic_read(h, bootstrap, IIT_TOPIC, &topic) == 0) {
        iit_check_delivery(h, &load.log, &topic, "down-", &sum);
        H_CHECK(h, sum.unavailable >= 40);
        H_CHECK_INT(h, sum.no_answer, 0);
        iit_summary_print("brokers down 10 s at 50 req/s", &sum);
        fprintf(stderr,
                "FIGURES brokers down: sent-and-answered during the outage %d (2xx %d); recovery "
                "from \"up all\" to the first 202 %lld ms; run %lld ms\n",
                during, bad_2xx, t_recovered > 0 ? t_recovered - t_up_sent : -1,
                t_end - (t_down_sent - 3000));
    }
    iit_topic_free(&topic);

    harness_proc_signal(ingest, SIGTERM);
    H_CHECK_INT(h, harness_proc_wait(ingest, 20000), 0);
    iit_log_free(&load.log);
    return harness_finish(h);
}
