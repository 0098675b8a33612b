/* Kafka producer wrapper: idempotent, acks=all, one callback per record with an ack deadline. */
#ifndef PM_KAFKA_PRODUCER_H
#define PM_KAFKA_PRODUCER_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

struct kafka_producer;

/* The outcome of one record: err 0 means the broker acknowledged it (acks=all) at
 * partition/offset. RD_KAFKA_RESP_ERR__TIMED_OUT means no acknowledgement arrived within the
 * deadline: the record may still be written later (at-least-once: the sender retries). */
struct kafka_ack {
    rd_kafka_resp_err_t err;
    const char *topic;
    int32_t partition;
    int64_t offset;
};

/* Called exactly once per accepted record, on the producer's poll thread. Keep it short: it
 * holds up every other acknowledgement. */
typedef void(kafka_ack_fn)(void *opaque, const struct kafka_ack *ack);

/**
 * @brief Create the producer and its poll thread.
 *
 * The delivery report is the only proof of delivery, so the producer is idempotent with
 * acks=all whatever the properties file says. @p ack_timeout_ms bounds how long a callback can
 * wait: librdkafka's message.timeout.ms alone does not bound it while a request is in flight to
 * a slow broker, so the wrapper keeps its own deadline list as well.
 *
 * @param conf consumed (owned by the producer even on failure).
 * @returns the producer, or NULL with the reason in @p errstr.
 */
struct kafka_producer *kafka_producer_new(rd_kafka_conf_t *conf, int ack_timeout_ms, char *errstr,
                                          size_t errlen);

/**
 * @brief Enqueue one record; @p cb(@p opaque, ack) follows exactly once when this returns 0.
 * @param headers consumed in every case (may be NULL).
 * @returns RD_KAFKA_RESP_ERR_NO_ERROR, or the error (RD_KAFKA_RESP_ERR__QUEUE_FULL is
 *          backpressure; RD_KAFKA_RESP_ERR__FATAL after a fatal producer error) — then @p cb is
 *          never called.
 */
rd_kafka_resp_err_t kafka_producer_send(struct kafka_producer *p, const char *topic,
                                        const void *key, size_t keylen, const void *value,
                                        size_t len, rd_kafka_headers_t *headers, kafka_ack_fn *cb,
                                        void *opaque);

/**
 * @returns non-zero once librdkafka reported a fatal error (the idempotent producer cannot
 *          guarantee order or no-duplicates any more); the reason goes to @p errstr.
 */
int kafka_producer_fatal(struct kafka_producer *p, char *errstr, size_t errlen);

/** @returns 1 when the last periodic metadata request succeeded and no fatal error occurred. */
int kafka_producer_ready(struct kafka_producer *p);

/** @returns records enqueued whose callback has not run yet. */
long kafka_producer_waiting(struct kafka_producer *p);

/** @returns the underlying handle (for metadata queries); still owned by the producer. */
rd_kafka_t *kafka_producer_handle(struct kafka_producer *p);

/**
 * @brief Wait up to @p timeout_ms for every enqueued record's delivery report; records still
 *        undelivered then are purged (their callbacks run with an error).
 * @returns 0 when everything was delivered, -1 when something had to be purged.
 */
int kafka_producer_flush(struct kafka_producer *p, int timeout_ms);

/** @brief Flush (as above, up to @p timeout_ms), stop the poll thread and free. */
void kafka_producer_destroy(struct kafka_producer *p, int timeout_ms);

#endif
