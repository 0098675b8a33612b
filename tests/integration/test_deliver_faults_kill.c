/* pm-deliver SIGKILLed mid-stream and restarted: nothing lost, per-patient order kept. */
#include "deliver_it.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * 200 staff messages of 40 patients (5 each) are on Kafka; pm-deliver delivers them to the
 * webhook while pm-sandbox answers every party 50 ms late. When about half have reached the
 * webhook, pm-deliver gets SIGKILL: no drain, no final commit. A new process in the same group
 * takes over from the last auto-committed offsets. What the clinic's receiver notices: every
 * message arrives, first deliveries of each patient in the order they were written, repeats only
 * of messages that were already in flight or finished-but-uncommitted at the kill, each repeat
 * carrying the same webhook-id so that it can be dropped.
 */

#define NPAT      40
#define PER       5
#define TOTAL     (NPAT * PER)
#define KILL_AT   100 /* distinct messages at the webhook before the kill */
#define IN_FLIGHT "PM_DELIVER_MAX_IN_FLIGHT=4"
#define WAIT_MS   90000

static struct harness *h;

int main(void)
{
    char props[512], base[128];
    const char *env[] = {props,
                         IN_FLIGHT,
                         "PM_DELIVER_CHANNELS=webhook",
                         "PM_DELIVER_CONTACT_CATEGORIES",
                         "PM_LOG_LEVEL=info",
                         NULL};
    struct harness_proc *deliver;
    struct harness_kafka_records dlq = {0};
    struct dit_tally t;
    json_t *ids, *at_kill, *map;
    long long t_kill, done_at, mark_kill;
    int before = 0, status, extra_results;
    char err[256];

    h = harness_init("deliver-faults-kill");
    if (dit_start(h, 4) != 0)
        return harness_finish(h);
    dit_kafka_props(props, sizeof(props));
    dit_fleet_seed(NPAT, PER);
    dit_sb_ok("POST", "/_sandbox/latency", "{\"ms\": 50}");

    deliver = dit_deliver_start("deliver", env, base, sizeof(base), 30000);
    if (!deliver)
        return harness_finish(h);
    dit_fleet_produce(0, NPAT, 0, PER);

    /* Mid-stream: about half of the messages are through. */
    dit_fleet_wait_distinct(NPAT, PER, KILL_AT, WAIT_MS);
    t_kill = dit_wall_ms();
    harness_proc_signal(deliver, SIGKILL);
    status = harness_proc_wait(deliver, 10000);
    H_CHECKF(h, status == 128 + SIGKILL, "pm-deliver exited %d, not by SIGKILL", status);
    /* Whatever reached pm-sandbox before the process died is recorded by now. */
    mark_kill = dit_sb_mark();
    at_kill = dit_webhook_ids(0);
    before = dit_fleet_distinct(at_kill, NPAT, PER);
    if (!H_CHECKF(h, before >= KILL_AT && before < TOTAL,
                  "%d of %d messages delivered at the kill: not mid-stream", before, TOTAL))
        return harness_finish(h);

    /* The same group again: it resumes from the offsets committed before the kill. */
    deliver = dit_deliver_start("deliver-restarted", env, base, sizeof(base), 40000);
    if (!deliver)
        return harness_finish(h);
    done_at = dit_fleet_wait(0, 0, NPAT, 0, PER, WAIT_MS);

    ids = dit_webhook_ids(0);
    dit_fleet_tally(ids, 0, NPAT, 0, PER, &t, "SIGKILL and restart");
    /* Repeats only of what had reached the webhook before the kill: the restarted process
     * delivers each message at most once itself. */
    dit_fleet_dups_unexpected(ids, at_kill, NPAT, PER);
    json_decref(ids);
    json_decref(at_kill);
    {
        /* Results: every event has a delivered webhook result (the restarted process publishes
         * its own for what it redid). Read once everything reached the webhook. */
        long long rdeadline = harness_now_ms() + 20000;
        for (;;) {
            int ok = 1;
            map = dit_results();
            for (int p = 0; p < NPAT && ok; p++)
                for (int i = 0; i < PER && ok; i++) {
                    char eid[32];
                    dit_fleet_event(p, i, eid, sizeof(eid));
                    ok = json_array_size(json_object_get(map, eid)) > 0;
                }
            if (ok || harness_now_ms() > rdeadline)
                break;
            json_decref(map);
            harness_sleep_ms(200);
        }
        extra_results = dit_fleet_check_results(map, 0, NPAT, 0, PER, "SIGKILL and restart");
        json_decref(map);
    }

    /* At least once, not "all over again": offsets committed before the kill hold, so only what
     * was in flight or finished since the last commit (auto-commit, 1 s) is delivered again. */
    H_CHECKF(h, t.dup_messages < before,
             "all %d messages delivered before the kill were delivered again: no offset was "
             "committed",
             before);
    H_CHECK(h, harness_kafka_read(dit_bootstrap, DIT_T_DLQ, 0, 10000, &dlq, err, sizeof(err)) == 0);
    H_CHECKF(h, dlq.n == 0, "%zu records on %s", dlq.n, DIT_T_DLQ);
    harness_kafka_records_free(&dlq);

    fprintf(stderr,
            "deliver-faults-kill: %d messages, %d delivered before SIGKILL (webhook seq <= %lld), "
            "%d delivered, %d delivered twice or more (%d extra webhook requests, %d extra "
            "results), all delivered %lld ms after the kill\n",
            t.messages, before, mark_kill, t.delivered, t.dup_messages, t.duplicates, extra_results,
            done_at > 0 ? done_at - t_kill : -1);
    H_CHECKF(h, harness_proc_stop(deliver, 20000) == 0, "pm-deliver did not exit 0 on SIGTERM");
    return harness_finish(h);
}
