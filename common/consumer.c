/* Consumer runtime: group membership, at-least-once offsets, per-key order, retries, DLQ, results.
 */
#include "consumer.h"

#include "fiber.h"
#include "json_writer.h"
#include "kafka_conf.h"
#include "kafka_producer.h"
#include "log.h"
#include "metrics.h"
#include "timefmt.h"
#include "utf8.h"
#include "uuid.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

/*
 * How it works. One poll thread owns the rd_kafka_t consumer: it polls records, runs rebalances,
 * fires retry timers, re-sends unacknowledged results and pauses partitions when too much is
 * buffered. max_in_flight workers run the handlers: fibers on worker_threads threads (a thread
 * each by default). Everything they share is guarded by one mutex (c->lock); handlers and Kafka
 * produce calls run outside it.
 *
 * Records are grouped in key queues, one per (partition, key): only the head of a queue is ever
 * handed to a worker, which gives per-key order; distinct keys run in parallel. A record is
 * finished when its handler is done and every result/DLQ record it produced is acknowledged; it
 * is freed at once. Each partition keeps a compact ring of the offsets it handed out with a done
 * flag each; the done prefix is popped and its next offset stored (enable.auto.offset.store=
 * false), so an offset never passes an unfinished record. Because finished records cost only a
 * ring slot, a patient whose record retries for an hour holds back its partition's committed
 * offset but not the other patients' work: they go on being consumed and handled. Stored offsets
 * are committed by auto-commit, on revoke and on stop.
 */

enum cr_state { CR_QUEUED, CR_READY, CR_RUNNING, CR_BACKOFF, CR_ACKS };

struct cr_partition;
struct cr_keyq;

struct cr_record {
    rd_kafka_message_t *msg;
    struct cr_partition *part;
    struct cr_keyq *kq;
    struct cr_record *next_in_key;
    struct cr_record *prev_in_part, *next_in_part; /* the partition's live records */
    uint64_t seq;                                  /* position in the partition's offset ring */
    enum cr_state state;
    int counted_running; /* included in part->running */
    int pending_acks;
    int handler_done;
    int64_t first_attempt_us;
    struct cloudevent ce;
    int ce_ok;
    char *ce_error; /* why it is not a CloudEvent (malloc'd), or NULL */
    char *key;
    const struct consumer_handler *handler;
    struct consumer_event ev;
};

struct cr_keyq {
    struct cr_keyq *hnext;
    int dropping; /* its waiting head was dropped: freed after the sweep */
    uint64_t hash;
    struct cr_partition *part;
    struct cr_record *head, *tail;
    int64_t due_us;            /* with the head in CR_BACKOFF */
    struct cr_keyq *next_list; /* ready queue or backoff list link */
    char key[];
};

struct cr_partition {
    struct cr_partition *next;
    char *topic;
    int32_t partition;
    int revoked;    /* being revoked or gone: no new work starts; offsets may still be stored */
    int unassigned; /* handed back to the group: offsets are not stored any more */
    int running;    /* records whose handler started and that are not finished */
    struct cr_record *live; /* records held in memory (not finished), any order */
    /* Offsets handed out, in order, with a done flag each: slot i of the ring is the record
     * with seq == popped + i. Finished records keep only their slot until the prefix pops. */
    int64_t *ring_offset;
    unsigned char *ring_done;
    size_t ring_head, ring_len, ring_cap;
    uint64_t pushed, popped;
};

/* A result or DLQ record on its way to Kafka; re-sent until acknowledged. */
struct cr_send {
    struct consumer *c;
    struct cr_record *rec;
    const char *topic;
    char *key;
    char *value;
    size_t len;
    rd_kafka_headers_t *headers;
    int64_t due_us;
    struct cr_send *next;
};

#define CR_BUCKETS      4096
#define CR_MAX_TRAILING 1000000L
/* A full buffer first holds the poll thread (it stops taking records) for up to this long; only
 * a buffer still full after it pauses the partitions. See cr_hold. */
#define CR_HOLD_MAX_MS  1000
#define CR_HOLD_STEP_MS 50

struct consumer {
    struct consumer_options o;
    rd_kafka_t *rk;
    pthread_t poll_thread;
    struct fiber_pool *workers; /* max_in_flight fibers on worker_threads threads */

    pthread_mutex_t lock;
    struct fiber_cond work_cond; /* a key became ready, or workers must quit */
    pthread_cond_t idle_cond;    /* something finished */
    pthread_cond_t room_cond; /* the buffer went down to its hold mark while the poll thread held */
    struct cr_partition *partitions;
    struct cr_keyq *buckets[CR_BUCKETS];
    struct cr_keyq *ready_head, *ready_tail;
    struct cr_keyq *backoff;
    struct cr_send *resend;
    int in_flight;
    int buffered;  /* live records: not finished (waiting, running, retrying, acks) */
    long trailing; /* finished records whose offset waits behind an unfinished one */
    int pending_acks;
    int in_producer; /* sends handed to the producer whose callback has not finished */
    int paused;
    int holding;        /* the poll thread waits on room_cond */
    int64_t hold_since; /* when the buffer became full and the poll thread began to hold; 0 */
    int workers_quit;
    unsigned rand_state;

    atomic_int stopping;
    atomic_int fatal;
    atomic_int assigned;
    char fatal_reason[256];

    struct metrics_family *m_events;
    struct metrics_family *m_retries;
    struct metrics_family *m_dlq;
    struct metrics_family *m_duration;
    struct metrics_series *m_in_flight;
    struct metrics_series *m_buffered;
    struct metrics_series *m_paused;
};

/* @p ms from now on CLOCK_REALTIME, the clock pthread_cond_timedwait measures against. */
static struct timespec cr_deadline(long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static int64_t cr_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t cr_hash(const struct cr_partition *p, const char *key)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)p;
    for (; *key; key++) {
        h ^= (unsigned char)*key;
        h *= 1099511628211ULL;
    }
    return h;
}

/* The metrics label of a record's type: handled types by name, anything else "unknown" (a
 * producer must not be able to create unbounded label values). */
static const char *cr_type_label(const struct cr_record *rec)
{
    return rec->handler ? rec->handler->type : "unknown";
}

/* ---- queues (all under c->lock) ---- */

static void cr_ready_push(struct consumer *c, struct cr_keyq *kq)
{
    kq->head->state = CR_READY;
    kq->next_list = NULL;
    if (c->ready_tail)
        c->ready_tail->next_list = kq;
    else
        c->ready_head = kq;
    c->ready_tail = kq;
    fiber_cond_signal(&c->work_cond);
}

static struct cr_keyq *cr_ready_pop(struct consumer *c)
{
    struct cr_keyq *kq = c->ready_head;
    if (kq) {
        c->ready_head = kq->next_list;
        if (!c->ready_head)
            c->ready_tail = NULL;
        kq->next_list = NULL;
    }
    return kq;
}

static struct cr_keyq **cr_kq_slot(struct consumer *c, struct cr_partition *p, const char *key,
                                   uint64_t h)
{
    struct cr_keyq **pp = &c->buckets[h % CR_BUCKETS];
    while (*pp && ((*pp)->hash != h || (*pp)->part != p || strcmp((*pp)->key, key) != 0))
        pp = &(*pp)->hnext;
    return pp;
}

static void cr_kq_free(struct consumer *c, struct cr_keyq *kq)
{
    struct cr_keyq **pp = cr_kq_slot(c, kq->part, kq->key, kq->hash);
    if (*pp == kq)
        *pp = kq->hnext;
    free(kq);
}

static void cr_record_free(struct cr_record *rec)
{
    if (rec->ev.state && rec->ev.state_free)
        rec->ev.state_free(rec->ev.state);
    cloudevent_clear(&rec->ce);
    rd_kafka_message_destroy(rec->msg);
    free(rec->ce_error);
    free(rec->key);
    free(rec);
}

/* Takes a record off its partition's live list and frees it. Under c->lock. */
static void cr_record_release(struct consumer *c, struct cr_record *rec)
{
    struct cr_partition *p = rec->part;
    if (rec->prev_in_part)
        rec->prev_in_part->next_in_part = rec->next_in_part;
    else if (p->live == rec)
        p->live = rec->next_in_part;
    if (rec->next_in_part)
        rec->next_in_part->prev_in_part = rec->prev_in_part;
    c->buffered--;
    if (c->holding && c->buffered <= c->o.max_buffered * 3 / 4)
        pthread_cond_signal(&c->room_cond);
    cr_record_free(rec);
}

/* Appends @p offset to the partition's ring. @returns its seq, or -1 without memory. */
static int cr_ring_push(struct cr_partition *p, int64_t offset, uint64_t *seq)
{
    if (p->ring_len == p->ring_cap) {
        size_t cap = p->ring_cap ? p->ring_cap * 2 : 64;
        int64_t *off = malloc(cap * sizeof(*off));
        unsigned char *done = malloc(cap);
        if (!off || !done) {
            free(off);
            free(done);
            return -1;
        }
        for (size_t i = 0; i < p->ring_len; i++) {
            off[i] = p->ring_offset[(p->ring_head + i) % p->ring_cap];
            done[i] = p->ring_done[(p->ring_head + i) % p->ring_cap];
        }
        free(p->ring_offset);
        free(p->ring_done);
        p->ring_offset = off;
        p->ring_done = done;
        p->ring_head = 0;
        p->ring_cap = cap;
    }
    p->ring_offset[(p->ring_head + p->ring_len) % p->ring_cap] = offset;
    p->ring_done[(p->ring_head + p->ring_len) % p->ring_cap] = 0;
    p->ring_len++;
    *seq = p->pushed++;
    return 0;
}

static void cr_partition_maybe_free(struct consumer *c, struct cr_partition *p)
{
    struct cr_partition **pp;
    if (!p->unassigned || p->running > 0 || p->live)
        return;
    for (pp = &c->partitions; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    for (size_t i = 0; i < p->ring_len; i++) /* finished ones that will never be stored now */
        c->trailing -= p->ring_done[(p->ring_head + i) % p->ring_cap];
    free(p->ring_offset);
    free(p->ring_done);
    free(p->topic);
    free(p);
}

/* Pops the done prefix of @p p's ring and stores the next offset. Under c->lock. */
static void cr_partition_advance(struct consumer *c, struct cr_partition *p)
{
    int64_t next = -1;
    while (p->ring_len > 0 && p->ring_done[p->ring_head]) {
        next = p->ring_offset[p->ring_head] + 1;
        p->ring_head = (p->ring_head + 1) % p->ring_cap;
        p->ring_len--;
        p->popped++;
        c->trailing--;
    }
    if (next >= 0 && !p->unassigned) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = next;
        rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, l);
        if (err)
            log_warn("offset not stored", LOG_S("topic", p->topic),
                     LOG_I("partition", p->partition), LOG_I("offset", next),
                     LOG_S("kafka_error", rd_kafka_err2name(err)));
        rd_kafka_topic_partition_list_destroy(l);
    }
    cr_partition_maybe_free(c, p);
    pthread_cond_broadcast(&c->idle_cond);
}

/* The record is finished: next of its key becomes ready, the partition may advance. */
static void cr_finish(struct consumer *c, struct cr_record *rec)
{
    struct cr_keyq *kq = rec->kq;
    struct cr_partition *p = rec->part;

    p->ring_done[(p->ring_head + (size_t)(rec->seq - p->popped)) % p->ring_cap] = 1;
    c->trailing++; /* until cr_partition_advance pops it */
    if (rec->counted_running) {
        p->running--;
        rec->counted_running = 0;
    }
    if (kq) {
        kq->head = rec->next_in_key;
        if (!kq->head)
            kq->tail = NULL;
        rec->kq = NULL;
        if (kq->head && !p->revoked && !atomic_load(&c->stopping))
            cr_ready_push(c, kq);
        else if (!kq->head)
            cr_kq_free(c, kq);
    }
    cr_record_release(c, rec);
    cr_partition_advance(c, p);
}

static void cr_drop_waiting(struct consumer *c, int all);

/* ---- producing results and DLQ records ---- */

static void cr_send_start(struct cr_send *s);

static void cr_send_free(struct cr_send *s)
{
    free(s->key);
    free(s->value);
    if (s->headers)
        rd_kafka_headers_destroy(s->headers);
    free(s);
}

static void cr_on_ack(void *opaque, const struct kafka_ack *ack)
{
    struct cr_send *s = opaque;
    struct consumer *c = s->c;

    pthread_mutex_lock(&c->lock);
    /* consumer_stop waits for this count before freeing what the callbacks touch. */
    c->in_producer--;
    if (ack->err) {
        /* Not acknowledged: the record stays unfinished and the send is tried again. */
        log_warn("result or DLQ record not acknowledged; retrying", LOG_S("topic", s->topic),
                 LOG_S("kafka_error", rd_kafka_err2name(ack->err)));
        s->due_us = cr_now_us() + 1000000;
        s->next = c->resend;
        c->resend = s;
        pthread_cond_broadcast(&c->idle_cond);
        pthread_mutex_unlock(&c->lock);
        return;
    }
    c->pending_acks--;
    if (s->rec) {
        s->rec->pending_acks--;
        if (s->rec->handler_done && s->rec->pending_acks == 0)
            cr_finish(c, s->rec);
    }
    pthread_cond_broadcast(&c->idle_cond);
    pthread_mutex_unlock(&c->lock);
    cr_send_free(s);
}

static void cr_send_start(struct cr_send *s)
{
    struct consumer *c = s->c;
    rd_kafka_resp_err_t err;

    /* Counted before the send: the callback may run before kafka_producer_send returns. */
    pthread_mutex_lock(&c->lock);
    c->in_producer++;
    pthread_mutex_unlock(&c->lock);
    err = kafka_producer_send(c->o.producer, s->topic, s->key, strlen(s->key), s->value, s->len,
                              s->headers ? rd_kafka_headers_copy(s->headers) : NULL, cr_on_ack, s);
    if (err) {
        pthread_mutex_lock(&c->lock);
        c->in_producer--; /* refused: no callback will come */
        s->due_us = cr_now_us() + 1000000;
        s->next = c->resend;
        c->resend = s;
        pthread_mutex_unlock(&c->lock);
    }
}

/* Registers and starts one send on behalf of @p rec (NULL: not tied to a record). */
static void cr_send_new(struct consumer *c, struct cr_record *rec, const char *topic,
                        const char *key, char *value, size_t len, rd_kafka_headers_t *headers)
{
    struct cr_send *s = calloc(1, sizeof(*s));
    if (s)
        s->key = strdup(key);
    if (!s || !s->key) {
        /* Without memory the record can only stay unfinished: it is redone after a restart. */
        log_error("out of memory queueing a result record");
        free(s);
        free(value);
        if (headers)
            rd_kafka_headers_destroy(headers);
        return;
    }
    s->c = c;
    s->rec = rec;
    s->topic = topic;
    s->value = value;
    s->len = len;
    s->headers = headers;
    pthread_mutex_lock(&c->lock);
    c->pending_acks++;
    if (rec)
        rec->pending_acks++;
    pthread_mutex_unlock(&c->lock);
    cr_send_start(s);
}

void consumer_publish_result(struct consumer_event *ev, const char *kind, const char *channel,
                             const char *outcome, const char *reason, const char *provider_id)
{
    consumer_publish_result_keyed(ev, kind, channel, outcome, reason, provider_id, NULL);
}

void consumer_publish_result_keyed(struct consumer_event *ev, const char *kind, const char *channel,
                                   const char *outcome, const char *reason, const char *provider_id,
                                   const char *dedup_key)
{
    struct cr_record *rec = ev->internal;
    struct consumer *c = ev->consumer;
    char id[512], now[40];
    struct json_writer w;
    char *value;
    size_t value_len = 0;
    rd_kafka_headers_t *h;

    if (!c->o.results_topic) {
        log_error("consumer_publish_result without a results topic", LOG_S("event_id", ev->ce->id));
        return;
    }
    /* A stable id per source event and channel lets readers drop at-least-once repeats. */
    snprintf(id, sizeof(id), "%s:%s", ev->ce->id, channel);
    timefmt_now_ms(now, sizeof(now));
    json_writer_init(&w);
    cloudevent_write_head(&w, id, c->o.results_source ? c->o.results_source : "pm-consumer",
                          CE_TYPE_DELIVERY_RESULT, now, ev->ce->subject);
    json_writer_object_begin(&w);
    json_writer_member(&w, "source_event_id", ev->ce->id);
    json_writer_member(&w, "kind", kind);
    json_writer_member(&w, "channel", channel);
    json_writer_member(&w, "outcome", outcome);
    /* A reason is an error text cut into a fixed buffer, possibly inside a character of
     * Canvas's wording, and a provider id can come from a response header (SendGrid's
     * X-Message-Id): both written lossily, so that the result, which pm-deliver reads back to
     * know what it already sent, is never lost over a stray byte. */
    json_writer_member_text_opt(&w, "reason", reason);
    json_writer_member_text_opt(&w, "provider_id", provider_id);
    json_writer_key(&w, "attempts");
    json_writer_int(&w, ev->attempt);
    json_writer_object_end(&w);
    json_writer_object_end(&w);
    value = json_writer_finish(&w, &value_len);
    if (!value) {
        log_error("cannot build a delivery result", LOG_S("event_id", ev->ce->id));
        return;
    }
    h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, CE_HEADER_CONTENT_TYPE, -1, CE_CONTENT_TYPE, -1);
    if (dedup_key)
        rd_kafka_header_add(h, CONSUMER_HEADER_DEDUP_KEY, -1, dedup_key, -1);
    cr_send_new(c, rec, c->o.results_topic, ev->key, value, value_len, h);
}

/* Produces the unchanged record to the DLQ with the SPEC's headers. Outside c->lock. */
static void cr_dead_letter(struct consumer *c, struct cr_record *rec, const char *error_class,
                           const char *error)
{
    rd_kafka_headers_t *orig = NULL, *h;
    char num[32];
    char *value;

    if (rec->handler && rec->handler->failed)
        rec->handler->failed(c->o.app, &rec->ev, error_class, error);

    if (rd_kafka_message_headers(rec->msg, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
        h = rd_kafka_headers_copy(orig);
    else
        h = rd_kafka_headers_new(6);
    rd_kafka_header_add(h, "pm-error-class", -1, error_class, -1);
    {
        /* The error may have been cut inside a character by a fixed-size buffer (a long
         * OperationOutcome text with non-ASCII wording): the header is kept well-formed UTF-8
         * for readers that decode it strictly, as the result's reason is. */
        size_t cap = 3 * strlen(error) + 1;
        char *clean = malloc(cap);
        if (clean) {
            size_t n = utf8_lossy(clean, cap, error);
            rd_kafka_header_add(h, "pm-error", -1, clean, (ssize_t)n);
            free(clean);
        } else {
            rd_kafka_header_add(h, "pm-error", -1, error, -1);
        }
    }
    rd_kafka_header_add(h, "pm-source-topic", -1, rec->part->topic, -1);
    snprintf(num, sizeof(num), "%d", (int)rec->part->partition);
    rd_kafka_header_add(h, "pm-source-partition", -1, num, -1);
    snprintf(num, sizeof(num), "%lld", (long long)rec->msg->offset);
    rd_kafka_header_add(h, "pm-source-offset", -1, num, -1);
    snprintf(num, sizeof(num), "%d", rec->ev.attempt);
    rd_kafka_header_add(h, "pm-attempts", -1, num, -1);

    value = malloc(rec->msg->len + 1);
    if (value && rec->msg->len)
        memcpy(value, rec->msg->payload, rec->msg->len);
    if (!value) {
        rd_kafka_headers_destroy(h);
        log_error("out of memory dead-lettering a record");
        return;
    }
    metrics_inc(metrics_series1(c->m_dlq, error_class));
    metrics_inc(metrics_series2(c->m_events, cr_type_label(rec),
                                strcmp(error_class, "invalid") ? "dead_lettered" : "invalid"));
    log_warn("record sent to the DLQ", LOG_S("event_id", rec->ce_ok ? rec->ce.id : NULL),
             LOG_S("topic", rec->part->topic), LOG_I("partition", rec->part->partition),
             LOG_I("offset", rec->msg->offset), LOG_S("error_class", error_class),
             LOG_S("error", error), LOG_I("attempts", rec->ev.attempt));
    cr_send_new(c, rec, c->o.dlq_topic, rec->key, value, rec->msg->len, h);
}

/* ---- workers ---- */

static long cr_backoff_ms(struct consumer *c, int attempt, long retry_after_ms)
{
    long cap = c->o.retry_base_ms;
    long delay;
    for (int i = 1; i < attempt && cap < c->o.retry_max_ms; i++)
        cap *= 2;
    if (cap > c->o.retry_max_ms)
        cap = c->o.retry_max_ms;
    /* Full jitter (random between 0 and the exponential cap) spreads retries of many keys. */
    delay = cap > 0 ? (long)(rand_r(&c->rand_state) % (unsigned long)(cap + 1)) : 0;
    if (retry_after_ms > delay)
        delay = retry_after_ms;
    return delay;
}

static void cr_run(struct consumer *c, struct cr_record *rec)
{
    struct consumer_outcome out;
    const char *dead_class = NULL;
    int64_t started = cr_now_us();

    memset(&out, 0, sizeof(out));
    out.retry_after_ms = -1;
    rec->ev.attempt++;
    if (rec->ev.attempt == 1)
        rec->first_attempt_us = started;

    if (!rec->ce_ok) {
        out.verdict = CONSUMER_INVALID;
        snprintf(out.error, sizeof(out.error), "not a CloudEvent: %s",
                 rec->ce_error ? rec->ce_error : "unknown reason");
    } else if (!rec->handler) {
        out.verdict = CONSUMER_INVALID;
        snprintf(out.error, sizeof(out.error), "unknown event type");
    } else {
        rec->handler->handle(c->o.app, &rec->ev, &out);
        metrics_observe(metrics_series1(c->m_duration, rec->handler->type),
                        (double)(cr_now_us() - started) / 1e6);
    }

    long delay = 0;
    if (out.verdict == CONSUMER_RETRY) {
        pthread_mutex_lock(&c->lock);
        delay = cr_backoff_ms(c, rec->ev.attempt, out.retry_after_ms);
        pthread_mutex_unlock(&c->lock);
        if (cr_now_us() + delay * 1000 - rec->first_attempt_us > c->o.retry_deadline_ms * 1000) {
            char e[sizeof(out.error)];
            snprintf(e, sizeof(e), "retry deadline exhausted: %s", out.error);
            snprintf(out.error, sizeof(out.error), "%s", e);
            dead_class = "exhausted";
        }
    } else if (out.verdict == CONSUMER_PERMANENT) {
        dead_class = "permanent";
    } else if (out.verdict == CONSUMER_INVALID) {
        dead_class = "invalid";
    }
    if (dead_class)
        cr_dead_letter(c, rec, dead_class, out.error);
    if (out.verdict != CONSUMER_RETRY || dead_class) {
        /* No attempt follows: the handler's state goes now, on the thread that built it (its
         * memory back to this thread's malloc arena), rather than on the delivery-report thread
         * once the results are acknowledged. */
        if (rec->ev.state && rec->ev.state_free)
            rec->ev.state_free(rec->ev.state);
        rec->ev.state = NULL;
    }

    pthread_mutex_lock(&c->lock);
    c->in_flight--;
    if (out.verdict == CONSUMER_RETRY && !dead_class) {
        struct cr_keyq *kq = rec->kq;
        metrics_inc(metrics_series1(c->m_retries, cr_type_label(rec)));
        log_info("retrying later", LOG_S("event_id", rec->ce.id), LOG_S("topic", rec->part->topic),
                 LOG_I("partition", rec->part->partition), LOG_I("offset", rec->msg->offset),
                 LOG_I("attempts", rec->ev.attempt), LOG_I("retry_in_ms", delay),
                 LOG_S("error", out.error));
        rec->state = CR_BACKOFF;
        rec->counted_running = 0;
        rec->part->running--;
        if (rec->part->revoked || atomic_load(&c->stopping)) {
            /* Nobody will run it again here: leave it unfinished for the next owner. */
            if (rec->part->revoked) {
                struct cr_partition *p = rec->part;
                cr_drop_waiting(c, 0);
                cr_partition_maybe_free(c, p);
            }
            pthread_cond_broadcast(&c->idle_cond);
        } else {
            kq->due_us = cr_now_us() + (int64_t)delay * 1000;
            kq->next_list = c->backoff;
            c->backoff = kq;
        }
    } else {
        if (!dead_class)
            metrics_inc(
                metrics_series2(c->m_events, cr_type_label(rec), out.label ? out.label : "done"));
        rec->handler_done = 1;
        rec->state = CR_ACKS;
        if (rec->pending_acks == 0)
            cr_finish(c, rec);
    }
    pthread_cond_broadcast(&c->idle_cond);
    pthread_mutex_unlock(&c->lock);
}

/* One worker: a fiber of c->workers. It waits for work (and inside the handler for HTTP
 * answers) through fiber.h, so a thread of the pool runs another worker meanwhile. */
static void cr_worker_main(void *arg)
{
    struct consumer *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        struct cr_keyq *kq;
        struct cr_record *rec;
        while (!c->workers_quit && !c->ready_head)
            fiber_cond_wait(&c->work_cond, &c->lock);
        if (c->workers_quit)
            break;
        kq = cr_ready_pop(c);
        rec = kq->head;
        rec->state = CR_RUNNING;
        rec->counted_running = 1;
        rec->part->running++;
        c->in_flight++;
        pthread_mutex_unlock(&c->lock);
        cr_run(c, rec);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
}

/* ---- the poll thread ---- */

static struct cr_partition *cr_partition_find(struct consumer *c, const char *topic, int32_t part,
                                              int create)
{
    struct cr_partition *p;
    for (p = c->partitions; p; p = p->next)
        if (!p->revoked && p->partition == part && strcmp(p->topic, topic) == 0)
            return p;
    if (!create)
        return NULL;
    p = calloc(1, sizeof(*p));
    if (!p || !(p->topic = strdup(topic))) {
        free(p);
        return NULL;
    }
    p->partition = part;
    p->next = c->partitions;
    c->partitions = p;
    return p;
}

static const struct consumer_handler *cr_handler_find(struct consumer *c, const char *type)
{
    for (size_t i = 0; i < c->o.nhandlers; i++)
        if (strcmp(c->o.handlers[i].type, type) == 0)
            return &c->o.handlers[i];
    return NULL;
}

/* Takes ownership of @p msg. */
static void cr_enqueue(struct consumer *c, rd_kafka_message_t *msg)
{
    struct cr_record *rec = calloc(1, sizeof(*rec));
    const char *topic = rd_kafka_topic_name(msg->rkt);
    struct cr_partition *p;
    struct cr_keyq **slot, *kq;
    uint64_t h;

    if (!rec) {
        rd_kafka_message_destroy(msg);
        return;
    }
    rec->msg = msg;
    rec->key = msg->key ? strndup(msg->key, msg->key_len) : strdup("");
    if (!rec->key) {
        rd_kafka_message_destroy(msg);
        free(rec);
        return;
    }
    /* Decoding happens here, outside the lock; nothing in the record is shared yet. */
    {
        char err[256];
        rec->ce_ok = cloudevent_parse(msg->payload ? msg->payload : "", msg->len, &rec->ce, err,
                                      sizeof(err)) == 0;
        if (!rec->ce_ok)
            rec->ce_error = strdup(err);
    }
    if (rec->ce_ok)
        rec->handler = cr_handler_find(c, rec->ce.type);
    rec->ev.topic = topic;
    rec->ev.partition = msg->partition;
    rec->ev.offset = msg->offset;
    rec->ev.key = rec->key;
    rec->ev.ce = &rec->ce;
    rec->ev.consumer = c;
    rec->ev.internal = rec;

    pthread_mutex_lock(&c->lock);
    p = cr_partition_find(c, topic, msg->partition, 1);
    if (!p) {
        pthread_mutex_unlock(&c->lock);
        cr_record_free(rec);
        return;
    }
    rec->part = p;
    if (cr_ring_push(p, msg->offset, &rec->seq) != 0) {
        /* Not tracked, so never stored: the partition's offset stays before it and it is
         * consumed again after a restart. Only on allocation failure. */
        log_error("out of memory tracking a record", LOG_S("topic", topic));
        pthread_mutex_unlock(&c->lock);
        cr_record_free(rec);
        return;
    }
    rec->next_in_part = p->live;
    if (p->live)
        p->live->prev_in_part = rec;
    p->live = rec;
    c->buffered++;

    h = cr_hash(p, rec->key);
    slot = cr_kq_slot(c, p, rec->key, h);
    kq = *slot;
    if (!kq) {
        size_t kl = strlen(rec->key);
        kq = calloc(1, sizeof(*kq) + kl + 1);
        if (!kq) {
            /* Stays queued in the partition forever: the offset cannot pass it, so nothing is
             * lost; the partition stalls until a restart. Only on allocation failure. */
            log_error("out of memory queueing a record", LOG_S("topic", topic));
            pthread_mutex_unlock(&c->lock);
            return;
        }
        memcpy(kq->key, rec->key, kl + 1);
        kq->hash = h;
        kq->part = p;
        *slot = kq;
    }
    rec->kq = kq;
    rec->state = CR_QUEUED;
    if (kq->tail) {
        kq->tail->next_in_key = rec;
        kq->tail = rec;
    } else {
        kq->head = kq->tail = rec;
        cr_ready_push(c, kq);
    }
    pthread_mutex_unlock(&c->lock);
}

/* Removes every not-started record of partitions matching @p pred (revoked ones, or all when
 * stopping) from the key queues and the ready/backoff lists. Under c->lock. */
static void cr_drop_waiting(struct consumer *c, int all)
{
    struct cr_keyq **pp;
    struct cr_partition *p;

    for (pp = &c->ready_head; *pp;) {
        if (all || (*pp)->part->revoked)
            *pp = (*pp)->next_list;
        else
            pp = &(*pp)->next_list;
    }
    c->ready_tail = NULL;
    for (struct cr_keyq *k = c->ready_head; k; k = k->next_list)
        c->ready_tail = k;
    for (pp = &c->backoff; *pp;) {
        if (all || (*pp)->part->revoked)
            *pp = (*pp)->next_list;
        else
            pp = &(*pp)->next_list;
    }

    struct cr_keyq *dropped = NULL;
    for (p = c->partitions; p; p = p->next) {
        struct cr_record *r, *next;
        if (!all && !p->revoked)
            continue;
        /* Keep records that are running or waiting for acks; drop the rest. The offset of a
         * dropped record is never stored (its ring slot stays not done): the next owner handles
         * it. */
        for (r = p->live; r; r = next) {
            next = r->next_in_part;
            if (r->state == CR_RUNNING || r->state == CR_ACKS) {
                r->next_in_key = NULL; /* nothing of its key runs after it here */
                if (r->kq)
                    r->kq->tail = r;
                continue;
            }
            if (r->kq && r->kq->head == r) {
                /* Records behind it still point at the queue: free it after the sweep. */
                struct cr_keyq *kq = r->kq;
                kq->head = kq->tail = NULL;
                kq->dropping = 1;
                kq->next_list = dropped;
                dropped = kq;
            }
            cr_record_release(c, r);
        }
    }
    while (dropped) {
        struct cr_keyq *kq = dropped;
        dropped = kq->next_list;
        cr_kq_free(c, kq);
    }
}

static int cr_running_in_revoked(struct consumer *c)
{
    int n = 0;
    for (struct cr_partition *p = c->partitions; p; p = p->next)
        if (p->revoked)
            n += p->running;
    return n;
}

static void cr_set_pause(struct consumer *c, int pause)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(c->rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || !a)
        return;
    if (a->cnt > 0) {
        if (pause) {
            rd_kafka_pause_partitions(c->rk, a);
        } else {
            rd_kafka_resume_partitions(c->rk, a);
            /* Why a ListOffsets after a resume: librdkafka (2.0) clears the pause on its main
             * thread, but a broker thread with nothing to fetch sleeps until its next periodic
             * wake-up (up to 1 s) before it sends the next Fetch; meanwhile the buffer drains
             * and the workers idle. A request to every leader wakes their threads at once. The
             * answer itself is not used. */
            for (int i = 0; i < a->cnt; i++)
                a->elems[i].offset = -1;               /* "latest": the cheapest lookup */
            rd_kafka_offsets_for_times(c->rk, a, 100); /* sent at once; the wait is capped */
        }
    }
    rd_kafka_topic_partition_list_destroy(a);
}

static void cr_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct consumer *c = opaque;
    int cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_info("partitions assigned", LOG_I("count", parts->cnt));
        pthread_mutex_lock(&c->lock);
        for (int i = 0; i < parts->cnt; i++)
            cr_partition_find(c, parts->elems[i].topic, parts->elems[i].partition, 1);
        pthread_mutex_unlock(&c->lock);
        if (cooperative)
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else
            rd_kafka_assign(rk, parts);
        if (c->paused)
            rd_kafka_pause_partitions(rk, parts);
        atomic_store(&c->assigned, 1);
        return;
    }

    if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        log_error("rebalance failed", LOG_S("kafka_error", rd_kafka_err2name(err)));
        rd_kafka_assign(rk, NULL);
        return;
    }

    /* Revoke: drop what has not started, give what runs a bounded time to finish (its offsets
     * get stored), then commit, so the next owner starts right after the last finished record. */
    log_info("partitions revoked", LOG_I("count", parts->cnt));
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < parts->cnt; i++) {
        struct cr_partition *p =
            cr_partition_find(c, parts->elems[i].topic, parts->elems[i].partition, 0);
        if (p)
            p->revoked = 1;
    }
    cr_drop_waiting(c, 0);
    {
        struct timespec until =
            cr_deadline(c->o.drain_timeout_ms < 30000 ? c->o.drain_timeout_ms : 30000);
        while (cr_running_in_revoked(c) > 0) {
            if (pthread_cond_timedwait(&c->idle_cond, &c->lock, &until) != 0)
                break;
        }
        if (cr_running_in_revoked(c) > 0)
            log_warn("revoked partitions still had records in progress; the next owner will "
                     "handle them again",
                     LOG_I("count", cr_running_in_revoked(c)));
    }
    pthread_mutex_unlock(&c->lock);

    /* Offsets stored by the finished records must be committed before the partitions go. */
    rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, NULL, 0); /* the stored offsets, synchronously */
    if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
        log_warn("commit on revoke failed", LOG_S("kafka_error", rd_kafka_err2name(cerr)));

    pthread_mutex_lock(&c->lock);
    for (struct cr_partition *p = c->partitions, *next; p; p = next) {
        next = p->next;
        if (p->revoked)
            p->unassigned = 1;
        cr_partition_maybe_free(c, p);
    }
    pthread_mutex_unlock(&c->lock);

    if (cooperative)
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
        rd_kafka_assign(rk, NULL);
}

static void cr_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct consumer *c = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[200];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        snprintf(c->fatal_reason, sizeof(c->fatal_reason), "%s: %s", rd_kafka_err2name(orig), buf);
        atomic_store(&c->fatal, 1);
        log_error("fatal Kafka consumer error", LOG_S("kafka_error", rd_kafka_err2name(orig)),
                  LOG_S("error", buf));
        return;
    }
    log_warn("Kafka consumer error", LOG_S("kafka_error", rd_kafka_err2name(err)),
             LOG_S("error", reason));
}

/* Fires due retries and re-sends; pauses or resumes on the buffer level. */
static void cr_timers(struct consumer *c)
{
    int64_t now = cr_now_us();
    struct cr_send *due = NULL;
    int want_pause;

    pthread_mutex_lock(&c->lock);
    for (struct cr_keyq **pp = &c->backoff; *pp;) {
        struct cr_keyq *kq = *pp;
        if (kq->due_us <= now) {
            *pp = kq->next_list;
            cr_ready_push(c, kq);
        } else {
            pp = &kq->next_list;
        }
    }
    for (struct cr_send **sp = &c->resend; *sp;) {
        struct cr_send *s = *sp;
        if (s->due_us <= now) {
            *sp = s->next;
            s->next = due;
            due = s;
        } else {
            sp = &s->next;
        }
    }
    /* Two bounds: records in memory, and finished records whose offsets wait behind an
     * unfinished one (a few bytes each, so the cap is high; past it, something has been stuck
     * for a very long time and consuming on would only grow what a restart has to redo). */
    if ((c->buffered >= c->o.max_buffered && c->hold_since &&
         now - c->hold_since >= CR_HOLD_MAX_MS * 1000) ||
        c->trailing >= CR_MAX_TRAILING)
        want_pause = 1;
    else if (c->buffered <= c->o.max_buffered / 2 && c->trailing <= CR_MAX_TRAILING / 2)
        want_pause = 0;
    else
        want_pause = -1;
    metrics_set(c->m_in_flight, c->in_flight);
    metrics_set(c->m_buffered, c->buffered);
    pthread_mutex_unlock(&c->lock);

    while (due) {
        struct cr_send *s = due;
        due = s->next;
        cr_send_start(s);
    }
    /* Backpressure: partitions are paused, not left unpolled, so group membership and
     * max.poll.interval.ms are never at risk however slow the handlers are. */
    if (want_pause == 1 && !c->paused) {
        c->paused = 1;
        metrics_set(c->m_paused, 1);
        cr_set_pause(c, 1);
        log_debug("buffer full: partitions paused", LOG_I("count", c->buffered),
                  LOG_I("limit", c->trailing));
    } else if (want_pause == 0 && c->paused) {
        c->paused = 0;
        metrics_set(c->m_paused, 0);
        cr_set_pause(c, 0);
        log_debug("partitions resumed", LOG_I("count", c->buffered));
    }
}

static void cr_poll_once(struct consumer *c, int timeout_ms, int take)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout_ms);
    if (!m)
        return;
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            log_warn("consumer error", LOG_S("kafka_error", rd_kafka_err2name(m->err)),
                     LOG_S("topic", m->rkt ? rd_kafka_topic_name(m->rkt) : NULL),
                     LOG_I("partition", m->partition));
        rd_kafka_message_destroy(m);
        return;
    }
    if (take)
        cr_enqueue(c, m);
    else
        rd_kafka_message_destroy(m); /* stopping: not stored, so it is consumed again later */
}

/*
 * Backpressure, first step. With the buffer full the poll thread stops taking records and waits
 * (CR_HOLD_STEP_MS at a time) until the workers have brought it down to three quarters; the
 * partitions stay as they are, so what librdkafka has fetched meanwhile is taken at once.
 * Pausing instead would drop that prefetch: librdkafka 2.0 discards a paused partition's fetch
 * queue and fetches it again after the resume, which took 200-300 ms against pm-devbroker, long
 * enough for the workers to run dry (measured: 8 stalls of 50-190 ms, a fifth of a 20,000
 * message benchmark run). Only a buffer that stays full for CR_HOLD_MAX_MS (handlers stuck or
 * retrying) gets the partitions paused by cr_timers, so that consumer_poll runs again: that
 * bounds how late a rebalance is served, far inside max.poll.interval.ms.
 *
 * @returns 1 when it held (the caller runs the timers and comes back), 0 to poll.
 */
static int cr_hold(struct consumer *c)
{
    int held = 0;

    pthread_mutex_lock(&c->lock);
    if (!c->paused && c->buffered >= c->o.max_buffered) {
        int64_t now = cr_now_us();
        if (!c->hold_since)
            c->hold_since = now;
        if (now - c->hold_since < CR_HOLD_MAX_MS * 1000) {
            struct timespec until = cr_deadline(CR_HOLD_STEP_MS);
            c->holding = 1;
            while (!atomic_load(&c->stopping) && c->buffered > c->o.max_buffered * 3 / 4)
                if (pthread_cond_timedwait(&c->room_cond, &c->lock, &until) != 0)
                    break;
            c->holding = 0;
            held = 1;
        }
    }
    if (c->buffered < c->o.max_buffered)
        c->hold_since = 0; /* the workers made room: not stuck */
    pthread_mutex_unlock(&c->lock);
    return held;
}

static void *cr_poll_main(void *arg)
{
    struct consumer *c = arg;
    prctl(PR_SET_NAME, "pm-consume", 0, 0, 0);
    while (!atomic_load(&c->stopping)) {
        if (!cr_hold(c))
            cr_poll_once(c, 50, 1);
        cr_timers(c);
    }
    return NULL;
}

static void cr_metrics_init(struct consumer *c)
{
    static const char *const type_outcome[] = {"type", "outcome", NULL};
    static const char *const type[] = {"type", NULL};
    static const char *const cls[] = {"class", NULL};
    char name[128];
    const char *px = c->o.metrics_prefix ? c->o.metrics_prefix : "pm_consumer";
    struct metrics_registry *m = c->o.metrics;

    if (!m)
        return;
    snprintf(name, sizeof(name), "%s_events_total", px);
    c->m_events =
        metrics_family_new(m, METRICS_COUNTER, name, "records finished, by event type and outcome",
                           type_outcome, NULL, 0);
    snprintf(name, sizeof(name), "%s_retries_total", px);
    c->m_retries = metrics_family_new(m, METRICS_COUNTER, name,
                                      "handler attempts that will be retried", type, NULL, 0);
    snprintf(name, sizeof(name), "%s_dlq_total", px);
    c->m_dlq = metrics_family_new(m, METRICS_COUNTER, name, "records sent to the DLQ, by class",
                                  cls, NULL, 0);
    snprintf(name, sizeof(name), "%s_handler_duration_seconds", px);
    c->m_duration = metrics_family_new(m, METRICS_HISTOGRAM, name, "time one handler attempt took",
                                       type, metrics_duration_buckets, metrics_duration_nbuckets);
    snprintf(name, sizeof(name), "%s_in_flight", px);
    c->m_in_flight = metrics_series0(
        metrics_family_new(m, METRICS_GAUGE, name, "records being handled now", NULL, NULL, 0));
    snprintf(name, sizeof(name), "%s_buffered", px);
    c->m_buffered = metrics_series0(
        metrics_family_new(m, METRICS_GAUGE, name,
                           "records held in memory (handled, waiting or retrying)", NULL, NULL, 0));
    snprintf(name, sizeof(name), "%s_paused", px);
    c->m_paused = metrics_series0(metrics_family_new(
        m, METRICS_GAUGE, name,
        "1 while the partitions are paused: the buffer stayed full for a second", NULL, NULL, 0));
}

struct consumer *consumer_start(struct consumer_options *opts, char *errstr, size_t errlen)
{
    struct consumer *c = calloc(1, sizeof(*c));
    rd_kafka_conf_t *conf = opts->conf;
    rd_kafka_topic_partition_list_t *topics = NULL;
    rd_kafka_resp_err_t err;

    opts->conf = NULL; /* consumed */
    if (!c) {
        snprintf(errstr, errlen, "out of memory");
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    c->o = *opts;
    c->o.conf = NULL;
    if (c->o.max_in_flight < 1)
        c->o.max_in_flight = 1;
    if (c->o.worker_threads <= 0 || c->o.worker_threads > c->o.max_in_flight)
        c->o.worker_threads = c->o.max_in_flight;
    /* Records waiting in memory cost their message (~1-2 KB) each: enough of them that a
     * resume (librdkafka refetches 0.5-1 s after it) never starves the workers. */
    if (c->o.max_buffered <= 0)
        c->o.max_buffered = 16 * c->o.max_in_flight < 2048 ? 2048 : 16 * c->o.max_in_flight;
    c->rand_state = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)c;
    pthread_mutex_init(&c->lock, NULL);
    fiber_cond_init(&c->work_cond);
    pthread_cond_init(&c->idle_cond, NULL);
    pthread_cond_init(&c->room_cond, NULL);
    cr_metrics_init(c);

    /* The at-least-once contract: we store offsets ourselves, only for finished records;
     * auto-commit then commits only what was stored. A new group starts at the beginning so
     * that nothing produced before the first deployment is skipped. */
    if (kafka_conf_set(conf, "group.id", opts->group_id, errstr, errlen) ||
        kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, errlen) ||
        kafka_conf_set(conf, "enable.auto.commit", "true", errstr, errlen) ||
        kafka_conf_set(conf, "auto.commit.interval.ms", "1000", errstr, errlen) ||
        kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, errlen) ||
        kafka_conf_set(conf, "enable.partition.eof", "false", errstr, errlen)) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    rd_kafka_conf_set_rebalance_cb(conf, cr_rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, cr_error_cb);
    rd_kafka_conf_set_opaque(conf, c);

    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errlen);
    if (!c->rk) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    conf = NULL; /* owned by rk now */
    rd_kafka_poll_set_consumer(c->rk);

    topics = rd_kafka_topic_partition_list_new(4);
    for (const char *const *t = opts->topics; *t; t++)
        rd_kafka_topic_partition_list_add(topics, *t, RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        snprintf(errstr, errlen, "subscribe failed: %s", rd_kafka_err2str(err));
        goto fail_rk;
    }

    /* Workers are fibers. With fewer threads than workers (pm-deliver: one per CPU), a thread
     * runs another handler while one waits for an HTTP answer, instead of the kernel switching
     * between a thread per handler (benchmarks.md, finding 11). Stacks are mapped, not touched:
     * 512 KiB each costs address space, and memory only as deep as a handler goes. */
    {
        char ferr[128];
        c->workers = fiber_pool_start(c->o.worker_threads, c->o.max_in_flight, 512 * 1024,
                                      "pm-worker", cr_worker_main, c, ferr, sizeof(ferr));
        if (!c->workers) {
            snprintf(errstr, errlen, "cannot start the consumer's workers: %s", ferr);
            goto fail_rk;
        }
    }
    if (pthread_create(&c->poll_thread, NULL, cr_poll_main, c) != 0) {
        snprintf(errstr, errlen, "cannot start the consumer threads");
        pthread_mutex_lock(&c->lock);
        c->workers_quit = 1;
        fiber_cond_broadcast(&c->work_cond);
        pthread_mutex_unlock(&c->lock);
        fiber_pool_join(c->workers);
        goto fail_rk;
    }
    log_info("consumer started", LOG_S("group_id", opts->group_id),
             LOG_I("in_flight", c->o.max_in_flight));
    return c;

fail_rk:
    rd_kafka_consumer_close(c->rk);
    rd_kafka_destroy(c->rk);
fail:
    pthread_cond_destroy(&c->idle_cond);
    pthread_cond_destroy(&c->room_cond);
    fiber_cond_destroy(&c->work_cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
    return NULL;
}

int consumer_ready(struct consumer *c)
{
    char *member;
    int ok;
    if (atomic_load(&c->fatal) || atomic_load(&c->stopping))
        return 0;
    member = rd_kafka_memberid(c->rk);
    ok = member && *member;
    rd_kafka_mem_free(c->rk, member);
    return ok;
}

int consumer_fatal(struct consumer *c, char *errstr, size_t errlen)
{
    if (!atomic_load(&c->fatal))
        return 0;
    snprintf(errstr, errlen, "%s", c->fatal_reason);
    return 1;
}

/* Leaves the group and destroys the handle. rd_kafka_consumer_close() can block for up to
 * session.timeout.ms when the coordinator is unreachable (a broker stopped first): close
 * asynchronously and give it CR_CLOSE_TIMEOUT_MS; the offsets are already committed, so skipping
 * the goodbye only makes the group wait for our session to time out. */
#define CR_CLOSE_TIMEOUT_MS 10000
static void cr_close(struct consumer *c)
{
    rd_kafka_queue_t *q = rd_kafka_queue_new(c->rk);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(c->rk, q);
    int closed = 0;

    if (e) {
        log_warn("leaving the consumer group failed", LOG_S("error", rd_kafka_error_string(e)));
        rd_kafka_error_destroy(e);
    } else {
        int64_t deadline = cr_now_us() + (int64_t)CR_CLOSE_TIMEOUT_MS * 1000;
        while (!(closed = rd_kafka_consumer_closed(c->rk)) && cr_now_us() < deadline)
            rd_kafka_queue_poll_callback(q, 100); /* serves the final rebalance callback */
        if (!closed)
            log_warn("leaving the consumer group timed out; the group will notice at the "
                     "session timeout",
                     LOG_I("duration_ms", CR_CLOSE_TIMEOUT_MS));
    }
    rd_kafka_queue_destroy(q);
    if (closed)
        rd_kafka_destroy(c->rk);
    else
        rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

int consumer_stop(struct consumer *c)
{
    int64_t deadline;
    int rc = 0, left;

    atomic_store(&c->stopping, 1);
    pthread_join(c->poll_thread, NULL);

    /* Drain: nothing new starts; what runs finishes and is acknowledged. The poll loop keeps
     * the group membership alive meanwhile (records it returns are dropped, not stored). */
    cr_set_pause(c, 1);
    pthread_mutex_lock(&c->lock);
    cr_drop_waiting(c, 1);
    pthread_mutex_unlock(&c->lock);
    deadline = cr_now_us() + c->o.drain_timeout_ms * 1000;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        left = c->in_flight + c->pending_acks;
        pthread_mutex_unlock(&c->lock);
        if (left == 0 || cr_now_us() >= deadline)
            break;
        cr_poll_once(c, 20, 0);
        cr_timers(c); /* re-sends of results still count as work in progress */
    }
    if (left > 0) {
        log_warn("stopping with records in progress; they will be handled again after restart",
                 LOG_I("count", left));
        rc = -1;
    }

    /* A handler still running at the drain deadline finishes here, and may publish results on
     * its way out: the join comes before the flush below. */
    pthread_mutex_lock(&c->lock);
    c->workers_quit = 1;
    fiber_cond_broadcast(&c->work_cond);
    pthread_mutex_unlock(&c->lock);
    fiber_pool_join(c->workers);
    c->workers = NULL;

    /* Results and DLQ records still in the producer get their callback now (purged ones with
     * an error), while the consumer and the records they point at still exist. The flush can
     * return while the producer's poll thread is still inside a callback: wait for those too. */
    pthread_mutex_lock(&c->lock);
    if (c->in_producer > 0) {
        struct timespec until;
        pthread_mutex_unlock(&c->lock);
        kafka_producer_flush(c->o.producer, 2000);
        until = cr_deadline(5000);
        pthread_mutex_lock(&c->lock);
        while (c->in_producer > 0)
            if (pthread_cond_timedwait(&c->idle_cond, &c->lock, &until) != 0)
                break;
        if (c->in_producer > 0)
            log_error("result or DLQ records still unanswered by the producer at stop",
                      LOG_I("count", c->in_producer));
    }
    pthread_mutex_unlock(&c->lock);

    {
        rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 0);
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
            log_warn("final commit failed", LOG_S("kafka_error", rd_kafka_err2name(err)));
    }
    /* Every message is destroyed before close, as librdkafka requires. Partitions go through
     * cr_partition_maybe_free when their last record is freed. */
    pthread_mutex_lock(&c->lock);
    for (struct cr_partition *p = c->partitions; p; p = p->next) {
        p->revoked = 1;
        p->unassigned = 1;
    }
    cr_drop_waiting(c, 1);
    while (c->partitions) {
        struct cr_partition *p = c->partitions;
        while (p->live) {
            struct cr_record *r = p->live;
            if (r->kq && r->kq->head == r)
                cr_kq_free(c, r->kq);
            cr_record_release(c, r);
        }
        c->partitions = p->next;
        free(p->ring_offset);
        free(p->ring_done);
        free(p->topic);
        free(p);
    }
    while (c->resend) {
        struct cr_send *s = c->resend;
        c->resend = s->next;
        cr_send_free(s);
    }
    pthread_mutex_unlock(&c->lock);

    cr_close(c);
    pthread_cond_destroy(&c->idle_cond);
    pthread_cond_destroy(&c->room_cond);
    fiber_cond_destroy(&c->work_cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
    return rc;
}
