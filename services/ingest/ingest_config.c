/* pm-ingest configuration: the variable table (--help) and loading with validation. */
#include "ingest.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct config_var ingest_config_vars[] = {
    {"PM_KAFKA_BROKERS", "localhost:9092", 0, "Kafka bootstrap servers"},
    {"PM_KAFKA_CONFIG_FILE", NULL, 0,
     "librdkafka properties file (key=value lines, as kcat -F) for TLS/SASL"},
    {"PM_LOG_LEVEL", "info", 0, "error | warn | info | debug"},
    {"PM_TOPIC_CANVAS_MESSAGES", CONFIG_TOPIC_MESSAGES_DEFAULT, 0,
     "topic of canvas.message.v1 events"},
    {"PM_TOPIC_PATIENT_REPLIES", CONFIG_TOPIC_REPLIES_DEFAULT, 0,
     "topic of patient.reply.v1 events"},
    {"PM_TOPIC_QUESTIONNAIRE_RESPONSES", CONFIG_TOPIC_QUESTIONNAIRES_DEFAULT, 0,
     "topic of patient.questionnaire_response.v1 events"},
    {"PM_INGEST_LISTEN", "0.0.0.0:8080", 0, "HTTP listen address host:port"},
    {"PM_INGEST_WEBHOOK_SECRETS", NULL, 1,
     "comma-separated whsec_... Standard Webhooks secrets (several for rotation)"},
    {"PM_INGEST_BEARER_TOKENS", NULL, 1, "comma-separated accepted bearer tokens"},
    {"PM_INGEST_ALLOW_UNAUTHENTICATED", "0", 0,
     "1 = accept unauthenticated requests when no secret or token is set (development only)"},
    {"PM_INGEST_MAX_BODY_BYTES", "1048576", 0, "largest accepted request body"},
    {"PM_INGEST_ACK_TIMEOUT_MS", "10000", 0,
     "answer 503 when Kafka has not acknowledged a record within this time"},
    {"PM_INGEST_THREADS", "2", 0, "HTTP worker threads"},
    {"PM_INGEST_MAX_CONNECTIONS", "4096", 0, "concurrent HTTP connections"},
    {"PM_INGEST_CONNECTION_TIMEOUT_S", "30", 0, "idle or slow connections are closed after this"},
    {"PM_INGEST_DEDUP_CAPACITY", "100000", 0, "event ids remembered for duplicate detection"},
    {"PM_INGEST_DEDUP_TTL_S", "86400", 0, "how long an event id is remembered"},
    {NULL, NULL, 0, NULL},
};

static void ingest_config_secrets(struct ingest_config *cfg, struct config_report *r)
{
    char *v = config_secret("PM_INGEST_WEBHOOK_SECRETS", r);
    char **items = NULL;
    size_t n;

    if (v) {
        n = config_list_split(v, &items);
        cfg->keys = calloc(n ? n : 1, sizeof(*cfg->keys));
        for (size_t i = 0; cfg->keys && i < n; i++) {
            char err[128];
            if (webhook_key_decode(items[i], &cfg->keys[cfg->nkeys], err, sizeof(err)) != 0)
                config_report_add(r, "PM_INGEST_WEBHOOK_SECRETS: entry %zu: %s", i + 1, err);
            else
                cfg->nkeys++;
        }
        config_list_free(items, n);
        config_secret_free(v);
    }

    v = config_secret("PM_INGEST_BEARER_TOKENS", r);
    if (v) {
        n = config_list_split(v, &items);
        cfg->token_hashes = calloc(n ? n : 1, sizeof(*cfg->token_hashes));
        for (size_t i = 0; cfg->token_hashes && i < n; i++) {
            if (strlen(items[i]) < 16) {
                config_report_add(r,
                                  "PM_INGEST_BEARER_TOKENS: entry %zu is shorter than 16 "
                                  "characters",
                                  i + 1);
                continue;
            }
            /* Only a hash is kept: comparing hashes takes the same time whatever the length. */
            SHA256((const unsigned char *)items[i], strlen(items[i]),
                   cfg->token_hashes[cfg->ntokens++]);
        }
        config_list_free(items, n);
        config_secret_free(v);
    }
}

/* Producer tuning that PM_KAFKA_CONFIG_FILE may change. linger.ms: how long records wait to be
 * batched, so the floor of every acknowledgement's latency at low load; 2 ms instead of
 * librdkafka's 5 still batches at high load. */
static const char *const ingest_kafka_defaults[] = {"linger.ms", "2", NULL};

void ingest_config_load(struct ingest_config *cfg, struct config_report *r)
{
    const char *listen;
    char err[256];
    struct config_topics topics;

    memset(cfg, 0, sizeof(*cfg));
    kafka_settings_from_env(&cfg->kafka);
    cfg->kafka.defaults = ingest_kafka_defaults;
    kafka_settings_check(&cfg->kafka, r);
    cfg->log_level = config_log_level(r);

    config_topics_load(&topics);
    cfg->topic_messages = topics.messages;
    cfg->topic_replies = topics.replies;
    cfg->topic_questionnaires = topics.questionnaires;

    listen = config_str("PM_INGEST_LISTEN", "0.0.0.0:8080");
    if (config_parse_listen(listen, cfg->listen_host, sizeof(cfg->listen_host), &cfg->listen_port,
                            err, sizeof(err)) != 0)
        config_report_add(r, "PM_INGEST_LISTEN: %s", err);

    ingest_config_secrets(cfg, r);
    cfg->allow_unauthenticated = config_bool("PM_INGEST_ALLOW_UNAUTHENTICATED", 0, r);
    if (cfg->nkeys == 0 && cfg->ntokens == 0 && !cfg->allow_unauthenticated)
        config_report_add(r, "no credentials: set PM_INGEST_WEBHOOK_SECRETS or "
                             "PM_INGEST_BEARER_TOKENS (or PM_INGEST_ALLOW_UNAUTHENTICATED=1 for "
                             "local development only)");

    cfg->max_body_bytes =
        (size_t)config_long("PM_INGEST_MAX_BODY_BYTES", 1048576, 1024, 64L * 1024 * 1024, r);
    cfg->ack_timeout_ms = (int)config_long("PM_INGEST_ACK_TIMEOUT_MS", 10000, 100, 300000, r);
    cfg->threads = (unsigned)config_long("PM_INGEST_THREADS", 2, 1, 64, r);
    cfg->max_connections = (unsigned)config_long("PM_INGEST_MAX_CONNECTIONS", 4096, 1, 65536, r);
    cfg->connection_timeout_s =
        (unsigned)config_long("PM_INGEST_CONNECTION_TIMEOUT_S", 30, 1, 3600, r);
    cfg->dedup_capacity = (size_t)config_long("PM_INGEST_DEDUP_CAPACITY", 100000, 0, 10000000, r);
    cfg->dedup_ttl_s = (int)config_long("PM_INGEST_DEDUP_TTL_S", 86400, 1, 7 * 86400, r);
}

void ingest_config_free(struct ingest_config *cfg)
{
    if (cfg->keys)
        memset(cfg->keys, 0, cfg->nkeys * sizeof(*cfg->keys));
    free(cfg->keys);
    free(cfg->token_hashes);
    memset(cfg, 0, sizeof(*cfg));
}
