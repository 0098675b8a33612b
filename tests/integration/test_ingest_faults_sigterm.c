/* pm-ingest fault: SIGTERM under load; every request in flight gets its answer, exit 0. */
#include "ingest_it.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define THREADS 20
#define RATE    60.0 /* requests per second; with rtt 300 ms about 20 wait for Kafka at once */
#define ACK_MS  5000

int main(void)
{
    struct harness *h = harness_init("ingest_faults_sigterm");
    struct harness_proc *kafka, *ingest;
    struct iit_load load = {0};
    struct iit_topic topic = {0};
    struct iit_summary sum;
    char bootstrap[512], base[64];
    int port = harness_free_port(), in_flight = 0, in_flight_202 = 0, after_202 = 0;
    int refused = 0, shutting_down = 0, lost_answers = 0, exit_code;
    long long t_sig, t_exit;

    kafka = harness_devbroker_start(h, 1, 4, NULL, bootstrap, sizeof(bootstrap));
    if (!H_CHECK(h, kafka != NULL))
        return harness_finish(h);
    {
        const char *env[] = {"PM_INGEST_ACK_TIMEOUT_MS=5000", NULL};
        ingest = iit_ingest_start(h, bootstrap, port, env);
    }
    if (!ingest)
        return harness_finish(h);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
    /* Every acknowledgement takes 300 ms: at any moment some requests are waiting for one. */
    H_CHECK_INT(h, harness_devbroker_cmd(kafka, "rtt all 300", NULL, 0), 0);

    load.base = base;
    load.tag = "term";
    load.threads = THREADS;
    load.rate = RATE;
    load.keys = 40;
    load.timeout_ms = 30000;
    if (!H_CHECK(h, iit_load_start(&load) == 0))
        return harness_finish(h);
    harness_sleep_ms(3000);

    t_sig = harness_now_ms();
    harness_proc_signal(ingest, SIGTERM);
    exit_code = harness_proc_wait(ingest, ACK_MS + 15000);
    t_exit = harness_now_ms();
    harness_sleep_ms(500); /* the clients meet the closed port */
    iit_load_stop(&load);
    H_CHECK_INT(h, exit_code, 0);
    /* Waiting requests are answered by their acknowledgement or their ack deadline. */
    H_CHECKF(h, t_exit - t_sig < ACK_MS + 6000, "pm-ingest took %lld ms to stop", t_exit - t_sig);

    for (size_t i = 0; i < load.log.n; i++) {
        const struct iit_result *r = &load.log.v[i];
        int answered = r->status == 202 || (r->status == 503 && r->retry_after);
        if (r->t_start < t_sig && r->t_end > t_sig) {
            in_flight++;
            in_flight_202 += r->status == 202;
        }
        if (r->status == 202 && r->t_end > t_sig)
            after_202++;
        if (r->status == 503 && !strcmp(r->type, "shutting-down"))
            shutting_down++;
        if (answered)
            continue;
        /* After the listener closed, a new connection is refused: that is no lost answer. */
        if (r->status == 0 && r->curl_code == CURLE_COULDNT_CONNECT && r->t_start >= t_sig) {
            refused++;
            continue;
        }
        /* Anything else (reset, empty reply, timeout, another status) left a sender without
         * the answer it was owed. */
        if (lost_answers++ < 10)
            H_FAIL(h,
                   "%s (sent %lld ms %s SIGTERM): status %ld, curl error %d, Retry-After %d, "
                   "type '%s'",
                   r->id, r->t_start > t_sig ? r->t_start - t_sig : t_sig - r->t_start,
                   r->t_start > t_sig ? "after" : "before", r->status, r->curl_code, r->retry_after,
                   r->type);
    }
    H_CHECKF(h, in_flight >= 5, "only %d requests were in flight at SIGTERM", in_flight);
    H_CHECKF(h, in_flight_202 >= 1, "no request in flight at SIGTERM got its 202");

    if (iit_topic_read(h, bootstrap, IIT_TOPIC, &topic) == 0) {
        iit_check_delivery(h, &load.log, &topic, "term-", &sum);
        iit_summary_print("SIGTERM under 60 req/s (rtt 300 ms)", &sum);
        fprintf(stderr,
                "FIGURES SIGTERM: %d requests in flight at the signal (%d got 202); 202 after "
                "the signal %d; 503 shutting-down %d; refused connections after %d; answers "
                "lost %d; exit %d after %lld ms\n",
                in_flight, in_flight_202, after_202, shutting_down, refused, lost_answers,
                exit_code, t_exit - t_sig);
    }
    iit_topic_free(&topic);
    iit_log_free(&load.log);
    return harness_finish(h);
}
