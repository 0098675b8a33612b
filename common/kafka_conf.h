/* librdkafka configuration shared by producers and consumers: brokers, properties file, logging. */
#ifndef PM_KAFKA_CONF_H
#define PM_KAFKA_CONF_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

struct config_var;
struct config_report;

/* What every Kafka client of the project reads from the environment (SPEC §3). */
struct kafka_settings {
    const char *brokers;     /* PM_KAFKA_BROKERS or its default */
    int brokers_explicit;    /* 1 when PM_KAFKA_BROKERS was set: it then beats the file */
    const char *config_file; /* PM_KAFKA_CONFIG_FILE or NULL */
    /* Tuning defaults of the caller's own ("key", "value", ..., NULL), applied before the file
     * so that the file may change them; NULL for none. Not for guarantees: those are set after
     * kafka_conf_build. */
    const char *const *defaults;
};

/** @brief Fill @p ks from PM_KAFKA_BROKERS / PM_KAFKA_CONFIG_FILE. */
void kafka_settings_from_env(struct kafka_settings *ks);

/**
 * @brief A new configuration: our logger, @p ks->defaults, the properties file applied
 *        (key=value lines, '#' and '!' comments, as kcat -F and the Java clients read them),
 *        bootstrap.servers from @p ks. Callers set the properties their guarantees depend on
 * *after* this, so a file cannot weaken them.
 * @returns a conf the caller owns, or NULL with the reason in @p errstr (file line number and
 *          key included; property values are not echoed since they may be SASL passwords).
 */
rd_kafka_conf_t *kafka_conf_build(const struct kafka_settings *ks, char *errstr, size_t errlen);

/** @brief rd_kafka_conf_set with the error text prefixed by the key. @returns 0 / -1. */
int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                   size_t errlen);

/** @brief Validate PM_KAFKA_* settings for --check-config (problems go to @p r). */
void kafka_settings_check(const struct kafka_settings *ks, struct config_report *r);

#endif
