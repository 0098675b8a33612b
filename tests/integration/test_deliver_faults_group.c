/* Two pm-deliver instances in one group, one SIGKILLed mid-stream: the other takes over. */
#include "deliver_it.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Instances A and B share the group and the 4 partitions of each topic. 200 staff messages of
 * 40 patients are produced; when about 80 reached the webhook, A gets SIGKILL. Once A's session
 * times out (6 s here), B is handed A's partitions and resumes them from A's last committed
 * offsets. What users notice: nothing lost, each patient's messages first delivered in the order
 * they were written, repeats only of what A had not committed (same webhook-id).
 */

#define NPAT      40
#define PER       5
#define TOTAL     (NPAT * PER)
#define KILL_AT   80
#define NPART     4
#define NTOPICS   3 /* pm-deliver subscribes to messages, replies and questionnaire responses */
#define IN_FLIGHT "PM_DELIVER_MAX_IN_FLIGHT=4"
#define WAIT_MS   90000

static struct harness *h;

/* The count of @p p's last "partitions assigned" log line after its last revoke, or -1. */
static int assigned_now(struct harness_proc *p)
{
    char *log = harness_proc_stderr(p);
    const char *a = NULL, *r = NULL, *c;
    int n = -1;

    for (c = log; c && (c = strstr(c, "\"msg\":\"partitions assigned\"")); c++)
        a = c;
    for (c = log; c && (c = strstr(c, "\"msg\":\"partitions revoked\"")); c++)
        r = c;
    if (a && (!r || r < a) && (c = strstr(a, "\"count\":")) != NULL)
        n = (int)strtol(c + 8, NULL, 10);
    free(log);
    return n;
}

/* Patients whose "message delivered" lines @p p logged: 1 in @p out[p]. */
static void delivered_by(struct harness_proc *p, char out[NPAT])
{
    char *log = harness_proc_stderr(p);
    const char *c;

    memset(out, 0, NPAT);
    for (c = log; c && (c = strstr(c, "\"msg\":\"message delivered\"")); c++) {
        const char *end = strchr(c, '\n'), *pid = strstr(c, "\"patient_id\":\"");
        unsigned v;
        if (pid && (!end || pid < end) && sscanf(pid + 14, "%8x", &v) == 1 && v >= 0xf0000000u &&
            v < 0xf0000000u + NPAT)
            out[v - 0xf0000000u] = 1;
    }
    free(log);
}

int main(void)
{
    char props[512], base_a[128], base_b[128], url[200];
    const char *env[] = {props,
                         IN_FLIGHT,
                         "PM_DELIVER_CHANNELS=webhook",
                         "PM_DELIVER_CONTACT_CATEGORIES",
                         "PM_LOG_LEVEL=info",
                         NULL};
    struct harness_proc *a, *b;
    struct harness_kafka_records msgs = {0}, dlq = {0};
    struct dit_tally t;
    json_t *ids, *at_kill, *map, *all, *r;
    long long deadline, t_kill, done_at, mark_kill, takeover_at = -1;
    int before = 0, na, nb, status, extra_results, part_of[NPAT], a_part[NPART] = {0};
    int a_left = 0, a_after = 0;
    char by_a[NPAT], err[256];
    size_t k;

    h = harness_init("deliver-faults-group");
    if (dit_start(h, NPART) != 0)
        return harness_finish(h);
    dit_kafka_props(props, sizeof(props));
    dit_fleet_seed(NPAT, PER);
    dit_sb_ok("POST", "/_sandbox/latency", "{\"ms\": 50}");

    /* Both members join together and split the partitions. */
    a = dit_deliver_spawn("deliver-a", NULL, env, base_a, sizeof(base_a));
    b = dit_deliver_spawn("deliver-b", NULL, env, base_b, sizeof(base_b));
    if (!H_CHECK(h, a && b))
        return harness_finish(h);
    snprintf(url, sizeof(url), "%s/readyz", base_a);
    H_CHECKF(h, harness_http_wait(url, 200, 30000) == 0, "deliver-a did not become ready");
    snprintf(url, sizeof(url), "%s/readyz", base_b);
    H_CHECKF(h, harness_http_wait(url, 200, 30000) == 0, "deliver-b did not become ready");
    deadline = harness_now_ms() + 40000;
    do {
        harness_sleep_ms(200);
        na = assigned_now(a);
        nb = assigned_now(b);
    } while (!(na > 0 && nb > 0 && na + nb == NPART * NTOPICS) && harness_now_ms() < deadline);
    if (!H_CHECKF(h, na > 0 && nb > 0 && na + nb == NPART * NTOPICS,
                  "the group did not settle: A holds %d partitions, B %d", na, nb))
        return harness_finish(h);

    dit_fleet_produce(0, NPAT, 0, PER);
    dit_fleet_wait_distinct(NPAT, PER, KILL_AT, WAIT_MS);
    t_kill = dit_wall_ms();
    harness_proc_signal(a, SIGKILL);
    status = harness_proc_wait(a, 10000);
    H_CHECKF(h, status == 128 + SIGKILL, "deliver-a exited %d, not by SIGKILL", status);
    mark_kill = dit_sb_mark();
    at_kill = dit_webhook_ids(0);
    before = dit_fleet_distinct(at_kill, NPAT, PER);

    done_at = dit_fleet_wait(0, 0, NPAT, 0, PER, WAIT_MS);
    ids = dit_webhook_ids(0);
    dit_fleet_tally(ids, 0, NPAT, 0, PER, &t, "one of two instances killed");
    /* Repeats only of what had reached the webhook before the kill: what B finished was
     * committed when its partitions were revoked for the takeover. */
    dit_fleet_dups_unexpected(ids, at_kill, NPAT, PER);
    json_decref(ids);
    json_decref(at_kill);

    /* Which partitions A held: those of the patients it delivered to. Keys map to partitions as
     * the messages topic shows. */
    H_CHECK(h, harness_kafka_read(dit_bootstrap, DIT_T_MESSAGES, TOTAL, 20000, &msgs, err,
                                  sizeof(err)) == 0);
    for (int p = 0; p < NPAT; p++)
        part_of[p] = -1;
    for (k = 0; k < msgs.n; k++) {
        unsigned v;
        if (msgs.v[k].key && sscanf(msgs.v[k].key, "%8x", &v) == 1 && v >= 0xf0000000u &&
            v < 0xf0000000u + NPAT)
            part_of[v - 0xf0000000u] = msgs.v[k].partition;
    }
    harness_kafka_records_free(&msgs);
    delivered_by(a, by_a);
    for (int p = 0; p < NPAT; p++)
        if (by_a[p] && part_of[p] >= 0 && part_of[p] < NPART)
            a_part[part_of[p]] = 1;

    /* B delivered A's unfinished work after the kill: the takeover happened. */
    all = dit_sb_requests("target=webhook", mark_kill);
    json_array_foreach(all, k, r)
    {
        json_t *body = dit_req_body(r);
        int p, i;
        if (json_integer_value(json_object_get(r, "status")) == 200 &&
            dit_fleet_parse(json_string_value(json_object_get(body, "communication_id")), &p, &i) ==
                0 &&
            p < NPAT && part_of[p] >= 0 && a_part[part_of[p]]) {
            a_after++;
            if (takeover_at < 0)
                takeover_at = dit_req_ms(r);
        }
        json_decref(body);
    }
    json_decref(all);
    for (int p = 0; p < NPAT; p++)
        if (part_of[p] >= 0 && a_part[part_of[p]])
            a_left++;
    H_CHECKF(h, a_left > 0, "A delivered to no patient before the kill");
    H_CHECKF(h, a_after > 0,
             "no message of A's partitions was delivered after A was killed: nothing taken over");
    H_CHECKF(h, assigned_now(b) == NPART * NTOPICS,
             "B holds %d partitions after the takeover, not all %d", assigned_now(b),
             NPART * NTOPICS);

    deadline = harness_now_ms() + 20000;
    for (;;) {
        int ok = 1;
        map = dit_results();
        for (int p = 0; p < NPAT && ok; p++)
            for (int i = 0; i < PER && ok; i++) {
                char eid[32];
                dit_fleet_event(p, i, eid, sizeof(eid));
                ok = json_array_size(json_object_get(map, eid)) > 0;
            }
        if (ok || harness_now_ms() > deadline)
            break;
        json_decref(map);
        harness_sleep_ms(200);
    }
    extra_results = dit_fleet_check_results(map, 0, NPAT, 0, PER, "one of two instances killed");
    json_decref(map);
    H_CHECK(h, harness_kafka_read(dit_bootstrap, DIT_T_DLQ, 0, 10000, &dlq, err, sizeof(err)) == 0);
    H_CHECKF(h, dlq.n == 0, "%zu records on %s", dlq.n, DIT_T_DLQ);
    harness_kafka_records_free(&dlq);

    fprintf(stderr,
            "deliver-faults-group: %d messages, %d delivered before A's SIGKILL, A's partitions "
            "held %d patients, %d deliveries of them after the kill; %d delivered, %d "
            "delivered twice or more (%d extra webhook requests, %d extra results); takeover "
            "%lld ms and all delivered %lld ms after the kill\n",
            t.messages, before, a_left, a_after, t.delivered, t.dup_messages, t.duplicates,
            extra_results, takeover_at > 0 ? takeover_at - t_kill : -1,
            done_at > 0 ? done_at - t_kill : -1);
    H_CHECKF(h, harness_proc_stop(b, 20000) == 0, "deliver-b did not exit 0 on SIGTERM");
    return harness_finish(h);
}
