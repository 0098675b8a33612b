/* librdkafka configuration: environment, properties file, and librdkafka logs as JSON lines. */
#include "kafka_conf.h"

#include "config.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kafka_settings_from_env(struct kafka_settings *ks)
{
    const char *b = config_str("PM_KAFKA_BROKERS", NULL);
    ks->brokers = b ? b : "localhost:9092";
    ks->brokers_explicit = b != NULL;
    ks->config_file = config_str("PM_KAFKA_CONFIG_FILE", NULL);
    ks->defaults = NULL;
}

/* librdkafka's own log lines (broker state, retries) carry no message payloads. */
static void kafka_conf_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    enum log_level l = level <= 3   ? LOG_ERROR
                       : level == 4 ? LOG_WARN
                       : level <= 6 ? LOG_INFO
                                    : LOG_DEBUG;
    if (!log_enabled(l))
        return;
    log_at(l, "librdkafka", LOG_S("type", fac), LOG_S("error", buf), LOG_END);
}

int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                   size_t errlen)
{
    char err[256];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errlen, "%s: %s", key, err);
        return -1;
    }
    return 0;
}

static char *kafka_conf_trim(char *s)
{
    char *e;
    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* Applies a properties file. @returns 0, or -1 with "<file>:<line>: ..." in errstr. */
static int kafka_conf_apply_file(rd_kafka_conf_t *conf, const char *path, int *has_bootstrap,
                                 char *errstr, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;

    if (!f) {
        snprintf(errstr, errlen, "PM_KAFKA_CONFIG_FILE: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    /* getline, not a fixed buffer: a long value (a PEM, a JAAS line) must not be split into
     * a truncated property and a bogus "line" made of the rest of the value. */
    while (getline(&line, &cap, f) != -1) {
        char *s = kafka_conf_trim(line), *eq, *key, *val;
        char err[512];
        lineno++;
        if (!*s || *s == '#' || *s == '!')
            continue;
        eq = strchr(s, '=');
        if (!eq) {
            snprintf(errstr, errlen, "%s:%d: expected key=value", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        key = kafka_conf_trim(s);
        val = kafka_conf_trim(eq + 1);
        if (rd_kafka_conf_set(conf, key, val, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            /* librdkafka quotes some rejected values ("Invalid value \"x\" for ..."): those
             * may be passwords, so its text is only passed on when it does not contain it. */
            if (*val && strstr(err, val))
                snprintf(errstr, errlen, "%s:%d: %s: invalid value (not shown)", path, lineno, key);
            else
                snprintf(errstr, errlen, "%s:%d: %s: %s", path, lineno, key, err);
            rc = -1;
            break;
        }
        if (!strcmp(key, "bootstrap.servers") || !strcmp(key, "metadata.broker.list"))
            *has_bootstrap = 1;
    }
    if (line)
        memset(line, 0, cap); /* it held property values, maybe passwords */
    free(line);
    fclose(f);
    return rc;
}

rd_kafka_conf_t *kafka_conf_build(const struct kafka_settings *ks, char *errstr, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int file_bootstrap = 0;

    rd_kafka_conf_set_log_cb(conf, kafka_conf_log_cb);
    for (const char *const *d = ks->defaults; d && d[0] && d[1]; d += 2)
        if (kafka_conf_set(conf, d[0], d[1], errstr, errlen) != 0)
            goto fail;
    if (ks->config_file &&
        kafka_conf_apply_file(conf, ks->config_file, &file_bootstrap, errstr, errlen) != 0)
        goto fail;
    /* An explicit PM_KAFKA_BROKERS wins; the default only applies when the file names none. */
    if ((ks->brokers_explicit || !file_bootstrap) &&
        kafka_conf_set(conf, "bootstrap.servers", ks->brokers, errstr, errlen) != 0)
        goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

void kafka_settings_check(const struct kafka_settings *ks, struct config_report *r)
{
    char err[512];
    rd_kafka_conf_t *conf = kafka_conf_build(ks, err, sizeof(err));
    if (!conf)
        config_report_add(r, "%s", err);
    else
        rd_kafka_conf_destroy(conf);
}
