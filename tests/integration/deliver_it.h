/* Shared steps of the pm-deliver staff-message tests: processes, pm-sandbox, events, results. */
#ifndef PM_DELIVER_IT_H
#define PM_DELIVER_IT_H

/*
 * The staff-message tests (test_deliver_messages.c, test_deliver_flow.c) run pm-devbroker,
 * pm-sandbox (verifying webhook signatures) and pm-deliver with every channel on, produce
 * canvas.message.v1 events straight to Kafka the way pm-ingest would (key = patient id,
 * murmur2_random partitioner), and check what a user would notice: the requests pm-sandbox
 * recorded for the webhook, Twilio, SendGrid and Canvas, and the records on pm.deliveries and
 * pm.dlq. Everything here records a failed check on the test's harness instead of returning
 * errors the caller would have to test; functions returning JSON never return NULL.
 */

#include "harness.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define DIT_WHSEC       "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define DIT_CLIENT_SEC  "sandbox-secret"
#define DIT_TWILIO_SID  "AC5a4db0c55a4db0c55a4db0c55a4db0c5"
#define DIT_TWILIO_TOK  "sandbox-twilio-token"
#define DIT_TWILIO_FROM "+15550001000"
#define DIT_SG_KEY      "SG.sandbox"
#define DIT_SG_FROM     "care@clinic.example"
#define DIT_SUBJECT     "New message from your care team"

#define DIT_T_MESSAGES "pm.canvas.messages"
#define DIT_T_RESULTS  "pm.deliveries"
#define DIT_T_DLQ      "pm.dlq"

/* Fixture ids (tools/sandbox/README.md). */
#define DIT_PAT    "b3084f7e884e4af2b7e23b1dca494abd" /* Pat Example */
#define DIT_LEE    "43f1418bae9c41919203e0006761067c" /* Lee Sample: consented home phone only */
#define DIT_JORDAN "7d1e3c9a2b4f4e6a8c0d1f2e3a4b5c6d" /* phone and email without consent */
#define DIT_MORGAN "4150cd20de8a470aa570a852859ac87e"
#define DIT_RILEY  "3640cd20de8a470aa570a852859ac87e"

extern struct harness *dit_h;
extern char dit_bootstrap[512];
extern char dit_sb[128]; /* pm-sandbox base URL, "http://127.0.0.1:<port>" */

/**
 * @brief Start pm-devbroker (1 broker, @p partitions partitions per topic) and pm-sandbox with
 *        PM_SANDBOX_WEBHOOK_SECRET=DIT_WHSEC; fill dit_bootstrap and dit_sb.
 * @returns 0, or -1 after a failed check.
 */
int dit_start(struct harness *h, int partitions);

/**
 * @brief Start pm-deliver with the environment of dit_deliver_start and the one argument @p arg
 *        (may be NULL, e.g. "--check-config"), without waiting for anything.
 * @returns the process, or NULL after a failed check; @p base as for dit_deliver_start.
 */
struct harness_proc *dit_deliver_spawn(const char *name, const char *arg,
                                       const char *const *extra_env, char *base, size_t len);

/**
 * @brief Start pm-deliver against the sandbox with every channel (webhook,sms,email), contact
 *        category ARI, fast retries (base 50 ms, max 500 ms), debug logs, and wait for /readyz.
 * @param extra_env NULL or "NAME=VALUE" / "NAME" entries replacing or unsetting the defaults.
 * @param base receives "http://127.0.0.1:<port>" of its /healthz, /readyz, /metrics.
 * @param ready_ms how long to wait for /readyz 200.
 * @returns the process, or NULL after a failed check.
 */
struct harness_proc *dit_deliver_start(const char *name, const char *const *extra_env, char *base,
                                       size_t len, int ready_ms);

/* ---- pm-sandbox ---- */

/** @brief One request to pm-sandbox. @returns the parsed answer or NULL; status in @p status. */
json_t *dit_sb_call(const char *method, const char *path, const char *body, long *status);

/** @brief dit_sb_call that must answer 2xx (a failed check otherwise). */
void dit_sb_ok(const char *method, const char *path, const char *body);

/** @returns the highest sequence number pm-sandbox recorded so far (0 when none). */
long long dit_sb_mark(void);

/**
 * @brief Recorded requests after @p since, oldest first, for a query such as "target=webhook".
 * @returns the array (new reference; empty on failure).
 */
json_t *dit_sb_requests(const char *query, long long since);

/** @returns a recorded request's body parsed as JSON (new reference) or NULL. */
json_t *dit_req_body(const json_t *req);

/** @returns a recorded request's header (borrowed) or NULL. */
const char *dit_req_header(const json_t *req, const char *name);

/** @returns the recorded arrival time of a request in ms since the epoch, or -1. */
long long dit_req_ms(const json_t *req);

/**
 * @brief The value of field @p name in a form-encoded body, %XX and '+' decoded.
 * @returns a malloc'd string, or NULL when absent.
 */
char *dit_form_value(const char *form, const char *name);

/** @returns the recorded Twilio requests after @p since whose decoded Body is @p text. */
json_t *dit_twilio_for(const char *text, long long since);

/** @returns the recorded SendGrid requests after @p since whose text/plain part is @p text. */
json_t *dit_sendgrid_for(const char *text, long long since);

/** @returns the recorded webhook requests after @p since with webhook-id @p comm_id. */
json_t *dit_webhooks_for(const char *comm_id, long long since);

/* ---- Kafka ---- */

/**
 * @brief Produce one record to pm.canvas.messages as pm-ingest would: key @p key, header
 *        content-type application/cloudevents+json, partitioner murmur2_random.
 * @param partition, offset receive where it landed (may be NULL; -1 on failure).
 */
void dit_produce_raw(const char *key, const char *value, int32_t *partition, int64_t *offset);

/**
 * @brief The canvas.message.v1 CloudEvent @p event_id for @p patient and @p comm, with
 *        @p embedded (stolen; may be NULL) as data.communication.
 * @returns the compact JSON text (malloc'd), or NULL.
 */
char *dit_event_value(const char *event_id, const char *patient, const char *comm,
                      json_t *embedded);

/** @brief Produce dit_event_value(...) with key @p patient. */
void dit_message(const char *event_id, const char *patient, const char *comm, json_t *embedded);

/**
 * @brief Produce @p n canvas.message.v1 events (event_ids[i], patients[i], comms[i]) in this
 *        order with one producer (idempotent, acks=all, murmur2_random, as pm-ingest's), and
 *        wait until every one is acknowledged: a backlog lands on Kafka within milliseconds.
 */
void dit_messages(const char *const *event_ids, const char *const *patients,
                  const char *const *comms, size_t n);

/**
 * @brief Every delivery.result.v1 on pm.deliveries in topic order (per partition by offset):
 *        [data, ...], each data object also carrying "_key" (the record key), "_subject",
 *        "_partition" and "_ts_ms" (the record timestamp). @returns a new reference.
 */
json_t *dit_results_list(void);

/**
 * @brief Every delivery.result.v1 on pm.deliveries, grouped: {"<source_event_id>": [data, ...]}
 *        with the members of dit_results_list. @returns a new reference (empty object on failure).
 */
json_t *dit_results(void);

/**
 * @brief Poll pm.deliveries until each of @p ids has at least @p per_event results, or
 *        @p timeout_ms passes (a failed check naming the first incomplete id).
 * @returns dit_results() as last read (new reference).
 */
json_t *dit_wait_results(const char *const *ids, size_t n, size_t per_event, int timeout_ms);

/** @returns the first result for @p channel in @p list (borrowed), or NULL. */
json_t *dit_result(json_t *list, const char *channel);

/** @returns how many results for @p channel @p list holds. */
size_t dit_result_count(json_t *list, const char *channel);

/**
 * @brief Check that @p list holds exactly one result for @p channel, with outcome @p outcome,
 *        reason @p reason (exact; "" means none; NULL leaves it unchecked) and @p attempts
 *        (unchecked when < 0); @p what names the event in failure messages.
 */
void dit_check_result(json_t *list, const char *channel, const char *outcome, const char *reason,
                      int attempts, const char *what);

/**
 * @brief Poll pm.dlq until a record whose value contains @p needle arrives.
 * @returns 0 with the records in @p recs (free them) and the match in @p rec, or -1.
 */
int dit_wait_dlq(const char *needle, struct harness_kafka_records *recs,
                 const struct harness_kafka_record **rec, int timeout_ms);

/**
 * @brief Check that none of @p needles (NULL-terminated) appears in @p p's stderr.
 */
void dit_check_log_clean(struct harness_proc *p, const char *const *needles);

/* ---- fault tests (test_deliver_faults_*.c): fleets of patients, restarts, tallies ---- */

/** @brief dit_start with extra pm-sandbox environment (e.g. "PM_SANDBOX_TOKEN_TTL_S=72"). */
int dit_start_env(struct harness *h, int partitions, const char *const *sandbox_env);

/**
 * @brief Write a librdkafka properties file for pm-deliver instances that are killed or
 *        restarted (session.timeout.ms=6000, heartbeat.interval.ms=1000: the mock cluster
 *        replaces a member that left only once its session timed out) and fill @p env with
 *        "PM_KAFKA_CONFIG_FILE=<path>".
 */
void dit_kafka_props(char *env, size_t len);

/* A fleet of invented patients: patient p is "f00000pp" + 24 zeros, its message i the
 * Communication "f10000pp-0000-4000-8000-<i>" (all of one patient share "f10000pp-"), carried by
 * the event "ff-<p>-<i>". */
void dit_fleet_patient(int p, char *out, size_t len);
void dit_fleet_comm(int p, int i, char *out, size_t len);
void dit_fleet_event(int p, int i, char *out, size_t len);

/** @returns 0 with patient and message index of fleet Communication @p comm_id, else -1. */
int dit_fleet_parse(const char *comm_id, int *p, int *i);

/** @brief Store patients 0..@p np-1 in pm-sandbox, each with @p per staff messages (HTML). */
void dit_fleet_seed(int np, int per);

/**
 * @brief Produce messages @p i0..@p i0+@p ni-1 of patients @p p0..@p p0+@p np-1 interleaved
 *        (p0 m0, p1 m0, ..., p0 m1, ...) with dit_messages: per patient in message order.
 */
void dit_fleet_produce(int p0, int np, int i0, int ni);

/**
 * @brief The Communication ids of the webhook requests pm-sandbox answered 200 after @p since,
 *        in arrival order (a failed check for any whose webhook-id is not the body's
 *        communication_id: receivers deduplicate on it). @returns a new reference.
 */
json_t *dit_webhook_ids(long long since);

/* What the webhook saw of a block of fleet messages. */
struct dit_tally {
    int messages;     /* in the block */
    int delivered;    /* distinct ones that reached the webhook */
    int duplicates;   /* webhook deliveries beyond each message's first */
    int dup_messages; /* messages delivered more than once */
    int order_errors; /* first deliveries out of production order, per patient */
};

/**
 * @brief Tally @p ids (dit_webhook_ids) over messages @p i0..+@p ni of patients @p p0..+@p np
 *        and check that every one reached the webhook and that, per patient, first deliveries
 *        came in production order (failed checks name the first few offenders; @p what names
 *        the scenario).
 */
void dit_fleet_tally(const json_t *ids, int p0, int np, int i0, int ni, struct dit_tally *t,
                     const char *what);

/**
 * @brief Check that each event of the block has a delivered webhook result on pm.deliveries.
 * @returns how many results beyond one per event were published (at-least-once repeats).
 */
int dit_fleet_check_results(json_t *map, int p0, int np, int i0, int ni, const char *what);

/**
 * @brief Poll until every message of the block reached the webhook (after @p since) or
 *        @p timeout_ms passed. @returns the wall-clock ms (pm-sandbox's clock) of the arrival
 *        that completed the block, or -1 on timeout (no check recorded: the caller tallies).
 */
long long dit_fleet_wait(long long since, int p0, int np, int i0, int ni, int timeout_ms);

/** @returns how many distinct messages of patients 0..@p np-1 (0..@p per-1 each) @p ids holds. */
int dit_fleet_distinct(const json_t *ids, int np, int per);

/**
 * @brief Poll the webhook every 50 ms until at least @p at_least distinct messages of the fleet
 *        (dit_fleet_distinct) arrived or @p timeout_ms passed: the moment to strike mid-stream.
 * @returns the last count seen.
 */
int dit_fleet_wait_distinct(int np, int per, int at_least, int timeout_ms);

/**
 * @brief Check that every message @p all (dit_webhook_ids) holds more than once is one that
 *        @p before (the same, taken when the fault struck) holds: at-least-once repeats only of
 *        what was delivered before it. @returns how many were not (each a failed check).
 */
int dit_fleet_dups_unexpected(const json_t *all, const json_t *before, int np, int per);

/** @returns the wall clock in ms since the epoch (comparable with dit_req_ms). */
long long dit_wall_ms(void);

#endif
