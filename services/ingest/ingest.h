/* pm-ingest internals: configuration, body mapping, duplicate detection, HTTP routes. */
#ifndef PM_INGEST_H
#define PM_INGEST_H

#include "config.h"
#include "kafka_conf.h"
#include "log.h"
#include "webhook_sig.h"

#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>

/* ---- configuration (ingest_config.c) ---- */

extern const struct config_var ingest_config_vars[];

struct ingest_config {
    struct kafka_settings kafka;
    enum log_level log_level;
    char listen_host[256];
    unsigned listen_port;
    struct webhook_key *keys; /* PM_INGEST_WEBHOOK_SECRETS, decoded */
    size_t nkeys;
    unsigned char (*token_hashes)[32]; /* SHA-256 of each PM_INGEST_BEARER_TOKENS entry */
    size_t ntokens;
    int allow_unauthenticated;
    size_t max_body_bytes;
    int ack_timeout_ms;
    unsigned threads;
    unsigned max_connections;
    unsigned connection_timeout_s;
    size_t dedup_capacity;
    int dedup_ttl_s;
    const char *topic_messages;
    const char *topic_replies;
    const char *topic_questionnaires;
};

/**
 * @brief Read and validate the whole configuration; every problem goes to @p r (the service
 *        refuses to start, and --check-config prints them, when r->count > 0).
 */
void ingest_config_load(struct ingest_config *cfg, struct config_report *r);
void ingest_config_free(struct ingest_config *cfg);

/* ---- body mapping (ingest_map.c) ---- */

enum ingest_kind { INGEST_MESSAGE, INGEST_REPLY, INGEST_QUESTIONNAIRE };

/* What a valid body becomes on Kafka. */
struct ingest_event {
    const char *type;    /* CloudEvents type */
    char patient_id[65]; /* the record key */
    char time[40];       /* CloudEvents time: the occurrence when given, else now */
    json_t *data;        /* owned; the CloudEvents data member */
};

/**
 * @brief Validate @p body for @p kind and build the event.
 * @param body borrowed; it may be modified (filled-in timestamps) and referenced by ev->data.
 * @param problem receives one {"pointer","detail"} entry per bad field (problem_add_error).
 * @returns 0 with @p ev filled (caller json_decref's ev->data), or -1 when @p problem has
 *          errors. Details name fields and rules, never the submitted values (they may be PHI).
 */
int ingest_map(enum ingest_kind kind, json_t *body, struct ingest_event *ev, json_t *problem);

/* ---- duplicate detection (ingest_dedup.c) ---- */

struct ingest_dedup;

enum ingest_dedup_state {
    DEDUP_NEW,      /* unknown id: now recorded as pending */
    DEDUP_PENDING,  /* the same id is waiting for Kafka right now */
    DEDUP_DONE,     /* already acknowledged: *out holds the first answer */
    DEDUP_CONFLICT, /* already acknowledged for a different body */
};

struct ingest_dedup_answer {
    const char *topic; /* a configured topic name (static for the process) */
    int32_t partition;
    int64_t offset;
};

/** @brief A table of at most @p capacity ids remembered for @p ttl_s seconds. */
struct ingest_dedup *ingest_dedup_new(size_t capacity, int ttl_s);
void ingest_dedup_free(struct ingest_dedup *d);

/**
 * @brief Look @p id up; an unknown id is recorded as pending with the body fingerprint @p fp.
 *        Thread-safe. The oldest entries go first when the table is full or they expire.
 */
enum ingest_dedup_state ingest_dedup_begin(struct ingest_dedup *d, const char *id,
                                           const unsigned char fp[16], time_t now,
                                           struct ingest_dedup_answer *out);

/** @brief The pending @p id was acknowledged: remember its answer. */
void ingest_dedup_complete(struct ingest_dedup *d, const char *id,
                           const struct ingest_dedup_answer *answer);

/** @brief The pending @p id was not acknowledged: forget it so a retry is produced again. */
void ingest_dedup_abort(struct ingest_dedup *d, const char *id);

/** @returns the number of ids remembered. */
size_t ingest_dedup_size(struct ingest_dedup *d);

/* ---- the service (ingest_routes.c) ---- */

struct ingest_app;

/**
 * @brief Create the producer and HTTP server from @p cfg (borrowed for the app's lifetime).
 * @returns NULL with the reason in @p errstr.
 */
struct ingest_app *ingest_app_start(const struct ingest_config *cfg, char *errstr, size_t errlen);

/** @returns the bound HTTP port. */
unsigned ingest_app_port(const struct ingest_app *app);

/** @returns non-zero after a fatal producer error (reason in @p errstr). */
int ingest_app_fatal(struct ingest_app *app, char *errstr, size_t errlen);

/**
 * @brief Graceful stop: refuse new work with 503, let every waiting request get its final answer
 *        (Kafka's acknowledgement or the ack timeout), then stop the server and flush.
 * @returns 0 when nothing was left unanswered.
 */
int ingest_app_stop(struct ingest_app *app);

#endif
