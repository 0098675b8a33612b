/* Producer wrapper: idempotent acks=all producer, poll thread, per-record callback with deadline.
 */
#include "kafka_producer.h"

#include "kafka_conf.h"
#include "log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

/* One enqueued record. Owned by librdkafka's message (its opaque) until the delivery report,
 * which frees it; the callback may run earlier, from the deadline scan. */
struct kafka_pending {
    kafka_ack_fn *cb;
    void *opaque;
    int64_t deadline_us;
    int answered; /* cb has run (deadline passed before the report) */
    int linked;   /* on the deadline list */
    struct kafka_pending *prev, *next;
};

struct kafka_producer {
    rd_kafka_t *rk;
    int ack_timeout_ms;

    /* Deadline list in enqueue order. Every record gets the same timeout, so enqueue order is
     * deadline order and the scan only ever looks at the head. */
    pthread_mutex_t lock;
    struct kafka_pending *head, *tail;
    atomic_long waiting;
    atomic_int in_callback; /* callbacks running right now (poll thread or a flushing thread) */

    pthread_t poll_thread;
    pthread_t health_thread;
    pthread_mutex_t health_lock;
    pthread_cond_t health_cond;
    atomic_int running;
    atomic_int ready;
    atomic_int fatal;
    char fatal_reason[256];
};

static int64_t kp_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void kp_unlink(struct kafka_producer *p, struct kafka_pending *k)
{
    if (!k->linked)
        return;
    if (k->prev)
        k->prev->next = k->next;
    else
        p->head = k->next;
    if (k->next)
        k->next->prev = k->prev;
    else
        p->tail = k->prev;
    k->prev = k->next = NULL;
    k->linked = 0;
}

/* Delivery report: runs on the poll thread (inside rd_kafka_poll). */
static void kp_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *conf_opaque)
{
    struct kafka_producer *p = conf_opaque;
    struct kafka_pending *k = m->_private;
    int call;
    (void)rk;

    if (!k)
        return;
    pthread_mutex_lock(&p->lock);
    kp_unlink(p, k);
    call = !k->answered;
    k->answered = 1;
    pthread_mutex_unlock(&p->lock);

    if (call) {
        struct kafka_ack ack = {m->err, rd_kafka_topic_name(m->rkt), m->partition, m->offset};
        atomic_fetch_add(&p->in_callback, 1);
        atomic_fetch_sub(&p->waiting, 1);
        k->cb(k->opaque, &ack);
        atomic_fetch_sub(&p->in_callback, 1);
    } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Acknowledged after its deadline: the sender got a 503 and will retry; the record is on
         * the topic once more than needed, which at-least-once allows. */
        log_warn("record acknowledged after the ack deadline",
                 LOG_S("topic", rd_kafka_topic_name(m->rkt)), LOG_I("partition", m->partition),
                 LOG_I("offset", m->offset));
    }
    free(k);
}

static void kp_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kafka_producer *p = opaque;

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[256];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        snprintf(p->fatal_reason, sizeof(p->fatal_reason), "%s: %s", rd_kafka_err2name(orig), buf);
        atomic_store(&p->ready, 0);
        atomic_store(&p->fatal, 1);
        log_error("fatal Kafka producer error", LOG_S("kafka_error", rd_kafka_err2name(orig)),
                  LOG_S("error", buf));
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        atomic_store(&p->ready, 0);
    log_warn("Kafka client error", LOG_S("kafka_error", rd_kafka_err2name(err)),
             LOG_S("error", reason));
}

/* Answers every record whose deadline has passed. @returns microseconds until the next one. */
static int64_t kp_scan_deadlines(struct kafka_producer *p)
{
    for (;;) {
        struct kafka_pending *k;
        int64_t now = kp_now_us();

        pthread_mutex_lock(&p->lock);
        k = p->head;
        if (!k || k->deadline_us > now) {
            int64_t wait = k ? k->deadline_us - now : INT64_MAX;
            pthread_mutex_unlock(&p->lock);
            return wait;
        }
        kp_unlink(p, k);
        k->answered = 1;
        pthread_mutex_unlock(&p->lock);

        struct kafka_ack ack = {RD_KAFKA_RESP_ERR__TIMED_OUT, NULL, -1, -1};
        atomic_fetch_add(&p->in_callback, 1);
        atomic_fetch_sub(&p->waiting, 1);
        k->cb(k->opaque, &ack); /* k itself stays until its delivery report frees it */
        atomic_fetch_sub(&p->in_callback, 1);
    }
}

static void *kp_poll_main(void *arg)
{
    struct kafka_producer *p = arg;
    prctl(PR_SET_NAME, "pm-produce", 0, 0, 0);
    while (atomic_load(&p->running)) {
        int64_t wait_us = kp_scan_deadlines(p);
        int wait_ms = wait_us > 100000 ? 100 : (int)(wait_us / 1000) + 1;
        rd_kafka_poll(p->rk, wait_ms);
    }
    return NULL;
}

/* Readiness: a metadata request (brokers only) every two seconds, off the poll thread so a
 * slow broker never delays delivery reports. */
static void *kp_health_main(void *arg)
{
    struct kafka_producer *p = arg;
    prctl(PR_SET_NAME, "pm-kafka-health", 0, 0, 0);
    pthread_mutex_lock(&p->health_lock);
    while (atomic_load(&p->running)) {
        const struct rd_kafka_metadata *md = NULL;
        struct timespec until;

        pthread_mutex_unlock(&p->health_lock);
        rd_kafka_resp_err_t err = rd_kafka_metadata(p->rk, 0, NULL, &md, 2000);
        if (md)
            rd_kafka_metadata_destroy(md);
        atomic_store(&p->ready, err == RD_KAFKA_RESP_ERR_NO_ERROR && !atomic_load(&p->fatal));
        pthread_mutex_lock(&p->health_lock);

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 2;
        if (atomic_load(&p->running))
            pthread_cond_timedwait(&p->health_cond, &p->health_lock, &until);
    }
    pthread_mutex_unlock(&p->health_lock);
    return NULL;
}

struct kafka_producer *kafka_producer_new(rd_kafka_conf_t *conf, int ack_timeout_ms, char *errstr,
                                          size_t errlen)
{
    struct kafka_producer *p = calloc(1, sizeof(*p));
    char timeout[32];

    if (!p) {
        snprintf(errstr, errlen, "out of memory");
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    p->ack_timeout_ms = ack_timeout_ms;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->health_lock, NULL);
    pthread_cond_init(&p->health_cond, NULL);
    atomic_init(&p->waiting, 0);
    atomic_init(&p->in_callback, 0);
    atomic_init(&p->running, 1);
    atomic_init(&p->ready, 0);
    atomic_init(&p->fatal, 0);

    /* What the guarantees rest on; set after the properties file so it cannot weaken them.
     * murmur2_random: the Java client's partitioner, so records keyed by patient land in the same
     * partition whichever client produced them. */
    snprintf(timeout, sizeof(timeout), "%d", ack_timeout_ms);
    if (kafka_conf_set(conf, "enable.idempotence", "true", errstr, errlen) ||
        kafka_conf_set(conf, "acks", "all", errstr, errlen) ||
        kafka_conf_set(conf, "message.timeout.ms", timeout, errstr, errlen) ||
        kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, errlen)) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, kp_dr_cb);
    rd_kafka_conf_set_error_cb(conf, kp_error_cb);
    rd_kafka_conf_set_opaque(conf, p);

    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errlen);
    if (!p->rk) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    conf = NULL; /* owned by rk now */

    if (pthread_create(&p->poll_thread, NULL, kp_poll_main, p) != 0) {
        snprintf(errstr, errlen, "cannot start the Kafka poll thread");
        goto fail_rk;
    }
    if (pthread_create(&p->health_thread, NULL, kp_health_main, p) != 0) {
        snprintf(errstr, errlen, "cannot start the Kafka health thread");
        atomic_store(&p->running, 0);
        pthread_join(p->poll_thread, NULL);
        goto fail_rk;
    }
    return p;

fail_rk:
    rd_kafka_destroy(p->rk);
fail:
    pthread_cond_destroy(&p->health_cond);
    pthread_mutex_destroy(&p->health_lock);
    pthread_mutex_destroy(&p->lock);
    free(p);
    return NULL;
}

rd_kafka_resp_err_t kafka_producer_send(struct kafka_producer *p, const char *topic,
                                        const void *key, size_t keylen, const void *value,
                                        size_t len, rd_kafka_headers_t *headers, kafka_ack_fn *cb,
                                        void *opaque)
{
    struct kafka_pending *k;
    rd_kafka_resp_err_t err;

    if (atomic_load(&p->fatal)) {
        if (headers)
            rd_kafka_headers_destroy(headers);
        return RD_KAFKA_RESP_ERR__FATAL;
    }
    k = calloc(1, sizeof(*k));
    if (!k) {
        if (headers)
            rd_kafka_headers_destroy(headers);
        return RD_KAFKA_RESP_ERR__FAIL;
    }
    k->cb = cb;
    k->opaque = opaque;

    /* Linked before producing, so a delivery report can never arrive for an unknown record. */
    pthread_mutex_lock(&p->lock);
    k->deadline_us = kp_now_us() + (int64_t)p->ack_timeout_ms * 1000;
    k->prev = p->tail;
    if (p->tail)
        p->tail->next = k;
    else
        p->head = k;
    p->tail = k;
    k->linked = 1;
    pthread_mutex_unlock(&p->lock);
    atomic_fetch_add(&p->waiting, 1);

    err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
                            RD_KAFKA_V_VALUE((void *)value, len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers),
                            RD_KAFKA_V_OPAQUE(k), RD_KAFKA_V_END);
    if (err) {
        int answered;
        if (headers)
            rd_kafka_headers_destroy(headers); /* not consumed on failure */
        pthread_mutex_lock(&p->lock);
        kp_unlink(p, k);
        answered = k->answered;
        pthread_mutex_unlock(&p->lock);
        free(k);
        if (answered) /* only with a deadline shorter than producev itself: cb has run */
            return RD_KAFKA_RESP_ERR_NO_ERROR;
        atomic_fetch_sub(&p->waiting, 1);
        return err;
    }
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

int kafka_producer_fatal(struct kafka_producer *p, char *errstr, size_t errlen)
{
    if (!atomic_load(&p->fatal))
        return 0;
    snprintf(errstr, errlen, "%s", p->fatal_reason);
    return 1;
}

int kafka_producer_ready(struct kafka_producer *p)
{
    return atomic_load(&p->ready) && !atomic_load(&p->fatal);
}

long kafka_producer_waiting(struct kafka_producer *p)
{
    return atomic_load(&p->waiting);
}

rd_kafka_t *kafka_producer_handle(struct kafka_producer *p)
{
    return p->rk;
}

/* rd_kafka_flush returns once every report was served, but the poll thread may still be inside
 * a callback it took: wait for those to finish too. */
static void kp_wait_callbacks(struct kafka_producer *p)
{
    for (int i = 0; i < 5000 && atomic_load(&p->in_callback) > 0; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

int kafka_producer_flush(struct kafka_producer *p, int timeout_ms)
{
    /* rd_kafka_flush serves delivery reports itself; the poll thread may serve some too. */
    if (rd_kafka_flush(p->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_outq_len(p->rk) == 0) {
        kp_wait_callbacks(p);
        return 0;
    }
    /* Purged records get their delivery report (an error) from the second flush, so every
     * callback has run when this returns. */
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(p->rk, 1000);
    kp_wait_callbacks(p);
    return -1;
}

void kafka_producer_destroy(struct kafka_producer *p, int timeout_ms)
{
    if (!p)
        return;
    if (kafka_producer_flush(p, timeout_ms) != 0)
        log_warn("records left unacknowledged at shutdown were purged");
    pthread_mutex_lock(&p->health_lock);
    atomic_store(&p->running, 0);
    pthread_cond_broadcast(&p->health_cond);
    pthread_mutex_unlock(&p->health_lock);
    pthread_join(p->poll_thread, NULL);
    pthread_join(p->health_thread, NULL);
    /* Whatever is still on the deadline list gets its answer before the handle goes away. */
    rd_kafka_poll(p->rk, 0);
    rd_kafka_destroy(p->rk);
    pthread_cond_destroy(&p->health_cond);
    pthread_mutex_destroy(&p->health_lock);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
