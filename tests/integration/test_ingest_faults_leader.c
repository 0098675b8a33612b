/* pm-ingest fault: partition leaders moved again and again during ingest; nothing lost, order kept.
 */
#include "ingest_it.h"

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATIENTS   8
#define PARTITIONS 4
#define BROKERS    3
#define RUN_MS     15000
#define PACE_MS    40 /* between one patient's notifications: ~200 req/s in all */

/* One patient's sender: each notification is sent only once the previous one got its 202 (a 503
 * is retried with the same webhook-id, as Canvas would), so its records must be in order. */
struct sender {
    pthread_t tid;
    int key;
    const char *base;
    struct iit_log *log;
    atomic_int *stop;
    int sent; /* sequence numbers acknowledged */
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    struct iit_client c;

    if (iit_client_init(&c, s->base) != 0)
        return NULL;
    for (int seq = 0; !atomic_load(s->stop);) {
        struct iit_result r;
        char id[64];
        memset(&r, 0, sizeof(r));
        snprintf(id, sizeof(id), "lead-%d-%d", s->key, seq);
        iit_post_message(&c, id, s->key, seq, 20000, &r);
        iit_log_add(s->log, &r);
        if (r.status == 202) {
            seq++;
            s->sent = seq;
            harness_sleep_ms(PACE_MS);
        } else {
            harness_sleep_ms(r.status == 503 ? 1000 : 200); /* Retry-After: 1 */
        }
    }
    iit_client_free(&c);
    return NULL;
}

/* The leader of each partition of IIT_TOPIC as the cluster reports it now (-1 when unknown): proof
 * that the moves happened, so a pass is not a run without the fault. */
static void leaders_now(const char *bootstrap, int32_t leaders[PARTITIONS])
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    const struct rd_kafka_metadata *md = NULL;

    for (int p = 0; p < PARTITIONS; p++)
        leaders[p] = -1;
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return;
    }
    if (rd_kafka_metadata(rk, 1, NULL, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int t = 0; t < md->topic_cnt; t++) {
            if (strcmp(md->topics[t].topic, IIT_TOPIC) != 0)
                continue;
            for (int p = 0; p < md->topics[t].partition_cnt; p++)
                if (md->topics[t].partitions[p].id < PARTITIONS)
                    leaders[md->topics[t].partitions[p].id] = md->topics[t].partitions[p].leader;
        }
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_destroy(rk);
}

int main(void)
{
    struct harness *h = harness_init("ingest_faults_leader");
    struct harness_proc *kafka, *ingest;
    struct sender senders[PATIENTS];
    struct iit_log log;
    struct iit_topic topic = {0};
    struct iit_summary sum;
    atomic_int stop;
    char bootstrap[512], base[64];
    int port = harness_free_port(), moves = 0, move_errors = 0, acked = 0;
    int32_t want[PARTITIONS] = {-1, -1, -1, -1}, got[PARTITIONS];
    long long t0, max_ms = 0;

    kafka = harness_devbroker_start(h, BROKERS, PARTITIONS, NULL, bootstrap, sizeof(bootstrap));
    if (!H_CHECK(h, kafka != NULL))
        return harness_finish(h);
    ingest = iit_ingest_start(h, bootstrap, port, NULL);
    if (!ingest)
        return harness_finish(h);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);

    iit_log_init(&log);
    atomic_init(&stop, 0);
    for (int i = 0; i < PATIENTS; i++) {
        senders[i] = (struct sender){0, i, base, &log, &stop, 0};
        if (!H_CHECK(h, pthread_create(&senders[i].tid, NULL, sender_main, &senders[i]) == 0))
            senders[i].tid = 0;
    }

    /* Every 200 ms one partition gets another leader: each partition moves every 0.8 s. */
    t0 = harness_now_ms();
    for (int i = 0; harness_now_ms() - t0 < RUN_MS; i++) {
        char cmd[96];
        int p = i % PARTITIONS, leader = 1 + (i / PARTITIONS + p) % BROKERS;
        snprintf(cmd, sizeof(cmd), "leader %s %d %d", IIT_TOPIC, p, leader);
        if (harness_devbroker_cmd(kafka, cmd, NULL, 0) == 0) {
            moves++;
            want[p] = leader;
        } else
            move_errors++;
        harness_sleep_ms(200);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < PATIENTS; i++)
        if (senders[i].tid)
            pthread_join(senders[i].tid, NULL);
    H_CHECK_INT(h, move_errors, 0);
    leaders_now(bootstrap, got);
    for (int p = 0; p < PARTITIONS; p++)
        H_CHECKF(h, got[p] == want[p], "partition %d: leader %d, moved to %d", p, (int)got[p],
                 (int)want[p]);
    H_CHECKF(h, moves >= 40, "only %d leader moves", moves);

    for (size_t i = 0; i < log.n; i++) {
        const struct iit_result *r = &log.v[i];
        H_CHECKF(h, r->status == 202 || (r->status == 503 && r->retry_after), "%s: status %ld",
                 r->id, r->status);
        if (r->status == 202 && r->t_end - r->t_start > max_ms)
            max_ms = r->t_end - r->t_start;
    }
    for (int i = 0; i < PATIENTS; i++) {
        H_CHECKF(h, senders[i].sent >= 20, "patient %d: only %d notifications acknowledged", i,
                 senders[i].sent);
        acked += senders[i].sent;
    }

    if (iit_topic_read(h, bootstrap, IIT_TOPIC, &topic) == 0) {
        iit_check_delivery(h, &log, &topic, "lead-", &sum);
        /* Per patient: one partition, sequence numbers in send order (a 503'd attempt that
         * Kafka kept anyway sits right before its own retry). */
        for (int k = 0; k < PATIENTS; k++) {
            char key[16];
            struct iit_rec *mine = calloc(topic.n ? topic.n : 1, sizeof(*mine));
            size_t n = 0;
            int ok_part = 1, ok_order = 1, seen_max = -1;
            snprintf(key, sizeof(key), "pt%d", k);
            if (!H_CHECK(h, mine != NULL))
                break;
            for (size_t i = 0; i < topic.n; i++)
                if (!strcmp(topic.v[i].key, key))
                    mine[n++] = topic.v[i];
            /* topic.v is sorted by id: order this patient's records by offset. */
            for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && mine[j - 1].offset > mine[j].offset; j--) {
                    struct iit_rec t = mine[j];
                    mine[j] = mine[j - 1];
                    mine[j - 1] = t;
                }
            for (size_t i = 0; i < n; i++) {
                ok_part &= mine[i].partition == mine[0].partition;
                if (mine[i].seq < seen_max)
                    ok_order = 0;
                if (mine[i].seq > seen_max)
                    seen_max = mine[i].seq;
                /* no gap: every sequence number up to the last one is there */
                if (i > 0 && mine[i].seq > mine[i - 1].seq + 1)
                    ok_order = 0;
            }
            H_CHECKF(h, ok_part, "patient %s: records in more than one partition", key);
            H_CHECKF(h, ok_order, "patient %s: records out of send order or with a gap", key);
            H_CHECKF(h, n > 0 && mine[0].seq == 0 && seen_max >= senders[k].sent - 1,
                     "patient %s: %zu records, last seq %d, %d acknowledged", key, n, seen_max,
                     senders[k].sent);
            free(mine);
        }
        iit_summary_print("leaders moved every 200 ms (3 brokers)", &sum);
        fprintf(stderr,
                "FIGURES leader moves: %d moves in %d ms; %d notifications of %d patients "
                "acknowledged in order; slowest 202 %lld ms\n",
                moves, RUN_MS, acked, PATIENTS, max_ms);
    }
    iit_topic_free(&topic);
    H_CHECK(h, harness_proc_running(ingest));
    harness_proc_signal(ingest, SIGTERM);
    H_CHECK_INT(h, harness_proc_wait(ingest, 20000), 0);
    iit_log_free(&log);
    return harness_finish(h);
}
