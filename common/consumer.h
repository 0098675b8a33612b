/* Consumer runtime: group membership, at-least-once offsets, per-key order, retries, DLQ, results.
 */
#ifndef PM_CONSUMER_H
#define PM_CONSUMER_H

#include "cloudevent.h"

#include <librdkafka/rdkafka.h>
#include <stdint.h>

struct consumer;
struct kafka_producer;
struct metrics_registry;

/* One record being handled. Valid during the handler call; @c state survives retries. */
struct consumer_event {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const char *key;             /* NUL-terminated copy of the record key ("" when none) */
    const struct cloudevent *ce; /* the decoded CloudEvent */
    int attempt;                 /* 1 on the first call, 2 on the first retry, ... */
    /* Handler-owned state kept across retries of this record (e.g. which channels already
     * succeeded). Set it with state_free; the runtime frees it after the last attempt (and the
     * failed callback, for a dead-lettered record), or when the record is dropped unfinished. */
    void *state;
    void (*state_free)(void *state);
    struct consumer *consumer;
    void *internal; /* the runtime's record; do not touch */
};

/* What the handler decided for this attempt. */
enum consumer_verdict {
    CONSUMER_DONE,      /* finished (delivered or skipped): the offset may move */
    CONSUMER_RETRY,     /* transient failure: call again after backoff (honouring retry_after) */
    CONSUMER_PERMANENT, /* will never succeed: DLQ with pm-error-class=permanent */
    CONSUMER_INVALID,   /* the event itself is malformed: DLQ with pm-error-class=invalid */
};

struct consumer_outcome {
    enum consumer_verdict verdict;
    long retry_after_ms; /* with CONSUMER_RETRY: the server's Retry-After, -1 when none */
    const char *label;   /* metrics outcome with CONSUMER_DONE: "delivered", "skipped", ... */
    char error[512];     /* pm-error for the DLQ and logs: ids and reasons, never PHI */
};

typedef void(consumer_handler_fn)(void *app, struct consumer_event *ev,
                                  struct consumer_outcome *out);

/* Called once when a record goes to the DLQ (permanent, exhausted or invalid), before the DLQ
 * record is produced, so the handler can publish "failed" delivery results for what it did not
 * finish. @p error_class is "permanent", "exhausted" or "invalid". */
typedef void(consumer_failed_fn)(void *app, struct consumer_event *ev, const char *error_class,
                                 const char *error);

struct consumer_handler {
    const char *type; /* CloudEvents type */
    consumer_handler_fn *handle;
    consumer_failed_fn *failed; /* may be NULL */
};

struct consumer_options {
    rd_kafka_conf_t *conf; /* consumed; from kafka_conf_build */
    const char *group_id;
    const char *const *topics;       /* NULL-terminated */
    struct kafka_producer *producer; /* shared, for the DLQ and results; borrowed */
    const char *dlq_topic;
    const char *results_topic;  /* may be NULL when the handlers never publish results */
    const char *results_source; /* CloudEvents "source" of results, e.g. "pm-deliver" */
    const struct consumer_handler *handlers;
    size_t nhandlers;
    void *app;
    int max_in_flight; /* records handled at once, each of a different key */
    /* Threads the max_in_flight workers share (each worker is a fiber, common/fiber.h). 0: a
     * thread per worker, so a handler may block in any way. Fewer (pm-deliver: one per CPU)
     * only when handlers wait solely through fiber.h, as http_client_do and fhir_* do: a thread
     * then runs another handler while one waits, and any other blocking call (sleep, a pthread
     * condition, a slow file) holds up every handler of its thread. */
    int worker_threads;
    long retry_base_ms; /* backoff: random(0, min(max, base * 2^(attempt-1))) */
    long retry_max_ms;
    long retry_deadline_ms;           /* from the first attempt; then DLQ with class "exhausted" */
    int max_buffered;                 /* records waiting in memory before the poll thread stops
                                         taking more (it pauses the partitions when no room is
                                         made for a second); 0 = max(16 x in-flight, 2048) */
    long drain_timeout_ms;            /* how long stop waits for records in progress */
    struct metrics_registry *metrics; /* optional */
    const char *metrics_prefix;       /* e.g. "pm_deliver" */
};

/**
 * @brief Join the group and start consuming on the runtime's own threads (a poll thread and
 *        max_in_flight workers, on worker_threads threads, that call the handlers).
 *
 * Guarantees: an offset is stored (and later committed) only once its record and every earlier
 * record of its partition are finished: handled, or acknowledged on the DLQ, with every result
 * published through consumer_publish_result acknowledged too. Records with the same
 * (topic, partition, key) are handled one at a time in offset order; different keys in parallel.
 * @returns NULL with the reason in @p errstr.
 */
struct consumer *consumer_start(struct consumer_options *opts, char *errstr, size_t errlen);

/**
 * @brief Publish a delivery.result.v1 event (key = the record's key) for @p ev. The record is
 *        not finished until Kafka acknowledged it. Call from the handler (or failed) only.
 * @param kind "message", "reply" or "questionnaire_response"
 * @param channel "webhook", "sms", "email" or "canvas"
 * @param outcome "delivered", "skipped" or "failed"
 * @param reason, provider_id may be NULL; never PHI.
 */
void consumer_publish_result(struct consumer_event *ev, const char *kind, const char *channel,
                             const char *outcome, const char *reason, const char *provider_id);

/** Record header of a result naming what it is a repeat-guard for (consumer_publish_result_keyed).
 */
#define CONSUMER_HEADER_DEDUP_KEY "pm-dedup-key"

/**
 * @brief consumer_publish_result with the record header pm-dedup-key = @p dedup_key (omitted
 *        when NULL): the handler's own key for "this was done already", so that a process that
 *        reads the results topic back (pm-deliver at start) can refuse to do it again. Opaque to
 *        everyone else; never PHI.
 */
void consumer_publish_result_keyed(struct consumer_event *ev, const char *kind, const char *channel,
                                   const char *outcome, const char *reason, const char *provider_id,
                                   const char *dedup_key);

/** @returns 1 while the consumer is a group member with an assignment (or waiting for one) and
 *          no fatal error occurred. */
int consumer_ready(struct consumer *c);

/** @returns non-zero after a fatal consumer error, reason in @p errstr. */
int consumer_fatal(struct consumer *c, char *errstr, size_t errlen);

/**
 * @brief Graceful stop: take no new records, let records in progress finish (up to
 *        drain_timeout_ms), store and commit their offsets, leave the group, free everything.
 *        Records waiting for a retry are left uncommitted: the next owner handles them.
 * @returns 0 when everything in progress finished, -1 when something was abandoned.
 */
int consumer_stop(struct consumer *c);

#endif
