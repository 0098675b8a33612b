/* Shared steps of the pm-ingest fault tests: processes, signed client threads, exactly-once check.
 */
#ifndef PM_INGEST_IT_H
#define PM_INGEST_IT_H

/*
 * The fault tests (test_ingest_faults_*.c) run pm-devbroker and pm-ingest, send signed
 * canvas.message.v1 notifications from client threads (one keep-alive connection each), break
 * Kafka in one way while they do, and then read the topic back and hold every answer to what
 * SPEC §4 promises:
 *   - an id answered 202 is on the topic exactly once;
 *   - an id answered 503 (or left without an answer) is there at most once per such attempt:
 *     Kafka may acknowledge after pm-ingest's deadline, which at-least-once allows;
 *   - an id refused with a 4xx is not there at all; no id shows up that nobody sent.
 * Requests carry their patient number and a per-patient sequence number in the body
 * ({"change": {"seq": n}}), so the order of one patient's records can be checked too.
 *
 * pm-devbroker checks no producer sequences (librdkafka's mock does so only for transactional
 * producers): it neither drops a retried duplicate nor refuses a sequence gap, and librdkafka
 * takes a record before such a gap as delivered. docs/reliability.md ("Broker errors on Produce")
 * says when that can pass for a lost or doubled 202 and how the tests keep clear of it.
 */

#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define IIT_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define IIT_TOPIC  "pm.canvas.messages"

/* One request and what became of it. */
struct iit_result {
    char id[64];
    int key;           /* patient number: the record key is "pt<key>" */
    int seq;           /* the patient's sequence number carried in the body */
    long status;       /* HTTP status; 0 when no answer arrived */
    int curl_code;     /* libcurl's CURLcode (0 when an answer arrived) */
    long new_conns;    /* connections libcurl opened for this request */
    int retry_after;   /* the answer carried Retry-After */
    int conn_close;    /* the answer carried Connection: close */
    int duplicate;     /* a 202 with "duplicate": true */
    char type[48];     /* problem type without "urn:pm:problem:", or "" */
    char detail[96];   /* problem detail (cut), or "" */
    long long t_start; /* harness_now_ms() when sent */
    long long t_end;   /* harness_now_ms() when answered or failed */
};

/* Results from several threads. */
struct iit_log {
    pthread_mutex_t lock;
    struct iit_result *v;
    size_t n, cap;
};

void iit_log_init(struct iit_log *log);
void iit_log_add(struct iit_log *log, const struct iit_result *r);
void iit_log_free(struct iit_log *log);

/* A client with one keep-alive connection (libcurl easy handle); one per thread. */
struct iit_client {
    void *curl;
    char base[64];
};

/** @brief @p base is "http://127.0.0.1:<port>". @returns 0, or -1. */
int iit_client_init(struct iit_client *c, const char *base);
void iit_client_free(struct iit_client *c);

/**
 * @brief POST @p body to @p path signed with IIT_SECRET as webhook-id @p id, and fill @p out
 *        (id, status, headers seen, timings; key and seq are left to the caller).
 */
void iit_post(struct iit_client *c, const char *path, const char *id, const char *body, size_t len,
              long timeout_ms, struct iit_result *out);

/** @brief iit_post of a notification for patient "pt<key>" carrying @p seq. */
void iit_post_message(struct iit_client *c, const char *id, int key, int seq, long timeout_ms,
                      struct iit_result *out);

/* A paced stream of notifications from client threads. */
struct iit_load {
    /* set by the caller */
    const char *base; /* pm-ingest base URL */
    const char *tag;  /* id prefix: ids are "<tag>-<thread>-<n>" */
    int threads;      /* 1..32 */
    double rate;      /* requests per second over all threads; a late thread sends at once */
    int keys;         /* patients used (each thread cycles through its own keys) */
    long timeout_ms;  /* per request */
    /* filled */
    struct iit_log log;
    atomic_int stop;
    pthread_t tid[32];
    int started;
};

/** @brief Start the threads. @returns 0, or -1 when none could start. */
int iit_load_start(struct iit_load *l);

/** @brief Stop the threads after their current request and join them. */
void iit_load_stop(struct iit_load *l);

/* One record of the topic, indexed by event id. */
struct iit_rec {
    char id[64];
    char key[72];
    int seq; /* data.change.seq, -1 when absent */
    int32_t partition;
    int64_t offset;
};

struct iit_topic {
    struct iit_rec *v; /* sorted by id, then partition and offset */
    size_t n;
};

/**
 * @brief Read every record of @p topic (harness_kafka_read until every partition's end).
 * @returns 0, or -1 after a failed check.
 */
int iit_topic_read(struct harness *h, const char *bootstrap, const char *topic,
                   struct iit_topic *out);
void iit_topic_free(struct iit_topic *t);

/** @returns how many records carry event id @p id. */
int iit_topic_count(const struct iit_topic *t, const char *id);

/* What a run produced, for the checks and for docs/reliability.md. */
struct iit_summary {
    int requests;
    int accepted;    /* 202 (not duplicates) */
    int duplicates;  /* 202 duplicate */
    int unavailable; /* 503 */
    int other;       /* any other status */
    int no_answer;   /* no HTTP answer */
    int lost;        /* ids answered 202 that are not on the topic */
    int extra;       /* records beyond what the answers allow */
    int late;        /* records of ids answered only 503 / nothing (allowed, at most once each) */
    int unknown;     /* records with the tag that nobody sent */
};

/**
 * @brief The exactly-once check of every request in @p log whose id starts with @p tag against
 *        @p t, with a failed check for each violation; counts go to @p s.
 */
void iit_check_delivery(struct harness *h, const struct iit_log *log, const struct iit_topic *t,
                        const char *tag, struct iit_summary *s);

/** @brief One line "<what>: requests N, 202 N, ..." on stderr (the figures the docs quote). */
void iit_summary_print(const char *what, const struct iit_summary *s);

/**
 * @brief Start pm-ingest on 127.0.0.1:@p port with IIT_SECRET and @p bootstrap; @p extra_env
 *        (NULL-terminated, may be NULL) adds or overrides variables. Waits up to 20 s for /readyz.
 * @returns the process, or NULL after a failed check.
 */
struct harness_proc *iit_ingest_start(struct harness *h, const char *bootstrap, int port,
                                      const char *const *extra_env);

/** @returns a "kB" field of /proc/<pid>/status (e.g. "VmRSS", "VmHWM"), or -1. */
long iit_proc_kb(int pid, const char *field);

#endif
