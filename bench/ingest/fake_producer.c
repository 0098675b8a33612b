/* Bench-only stand-in for common/kafka_producer.c that acknowledges every record at once. */

/*
 * What this is for: pm-ingest-nokafka, the "HTTP ceiling" of the ingest benchmark. It is the
 * unchanged pm-ingest (services/ingest/main.c + libpmingest + libpmcommon) with only this file
 * linked in front of the static libraries. Every function of kafka_producer.h is defined here, so
 * the linker resolves them all from this object and never pulls kafka_producer.o out of
 * libpmcommon.a (if one were missing, it would pull it and fail on duplicate symbols).
 *
 * This must never be linked into a binary that serves real traffic: it answers 202 for records
 * that no broker ever saw. That is why it lives under bench/ and is not a runtime switch.
 *
 * Contract differences from the real producer, on purpose:
 *  - the callback runs synchronously inside kafka_producer_send (on the HTTP worker thread), not
 *    on a poll thread; the real producer's callback may also run before the handler returns, so
 *    the handler's suspend-before-send order covers both;
 *  - nothing is copied or kept: value and key are ignored, headers are destroyed at once;
 *  - no metadata requests: ready() is 1, and kafka_producer_handle() returns NULL.
 */
#include "kafka_producer.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

struct kafka_producer {
    int ack_timeout_ms;
    atomic_llong next_offset; /* one increasing offset for the single fake partition */
};

struct kafka_producer *kafka_producer_new(rd_kafka_conf_t *conf, int ack_timeout_ms, char *errstr,
                                          size_t errlen)
{
    struct kafka_producer *p = calloc(1, sizeof(*p));

    rd_kafka_conf_destroy(conf); /* consumed in every case, as the real one does */
    if (!p) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    p->ack_timeout_ms = ack_timeout_ms;
    atomic_init(&p->next_offset, 0);
    return p;
}

rd_kafka_resp_err_t kafka_producer_send(struct kafka_producer *p, const char *topic,
                                        const void *key, size_t keylen, const void *value,
                                        size_t len, rd_kafka_headers_t *headers, kafka_ack_fn *cb,
                                        void *opaque)
{
    struct kafka_ack ack;

    (void)key;
    (void)keylen;
    (void)value;
    (void)len;
    if (headers)
        rd_kafka_headers_destroy(headers); /* consumed in every case */
    ack.err = RD_KAFKA_RESP_ERR_NO_ERROR;
    ack.topic = topic;
    ack.partition = 0;
    ack.offset = (int64_t)atomic_fetch_add(&p->next_offset, 1);
    cb(opaque, &ack);
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

int kafka_producer_fatal(struct kafka_producer *p, char *errstr, size_t errlen)
{
    (void)p;
    (void)errstr;
    (void)errlen;
    return 0;
}

int kafka_producer_ready(struct kafka_producer *p)
{
    (void)p;
    return 1;
}

long kafka_producer_waiting(struct kafka_producer *p)
{
    (void)p;
    return 0; /* every callback has run by the time send returns */
}

rd_kafka_t *kafka_producer_handle(struct kafka_producer *p)
{
    (void)p;
    return NULL; /* there is no librdkafka handle */
}

int kafka_producer_flush(struct kafka_producer *p, int timeout_ms)
{
    (void)p;
    (void)timeout_ms;
    return 0;
}

void kafka_producer_destroy(struct kafka_producer *p, int timeout_ms)
{
    (void)timeout_ms;
    free(p);
}
