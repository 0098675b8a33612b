/* pm-audit-trail: example consumer writing one PHI-free JSON line per product event to a file. */
#include "config.h"
#include "consumer.h"
#include "http_server.h"
#include "kafka_conf.h"
#include "kafka_producer.h"
#include "log.h"
#include "metrics.h"
#include "timefmt.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * At least once, in three rules:
 *  1. A handler answers CONSUMER_DONE only after its line is written *and fsync'd*. The runtime
 *     stores an offset only after that answer, so a committed offset always has its line on disk.
 *  2. A failed write answers CONSUMER_RETRY: the offset stays put and the runtime calls again
 *     after a backoff. The file is first cut back to where it was, so no half line remains.
 *  3. A crash between the fsync and the next offset commit (auto-commit runs every second) hands
 *     the record over again, and its line is written twice. That is the price of never losing
 *     one: every line carries topic/partition/offset, a unique key to drop repeats when reading.
 */

#define AUDIT_PROG "pm-audit-trail"
/* A disk that is full or gone is a reason to wait, not to give up: lines are retried for a week
 * (the partition waits, /metrics shows pm_audit_retries_total), never sent to the DLQ. */
#define AUDIT_RETRY_BASE_MS     1000
#define AUDIT_RETRY_MAX_MS      60000
#define AUDIT_RETRY_DEADLINE_MS (7L * 24 * 3600 * 1000)

static volatile sig_atomic_t audit_signal;

static void audit_on_signal(int sig)
{
    audit_signal = sig;
}

static const char audit_help[] =
    "Example consumer on the consumer runtime (docs/consumer-runtime.md). Appends one JSON line\n"
    "per canvas.message.v1, patient.reply.v1, patient.questionnaire_response.v1 and\n"
    "delivery.result.v1 event to PM_AUDIT_FILE, fsync'd before its offset is committed: ts,\n"
    "topic, partition, offset, key, id, type, time, subject and the event's ids; never message\n"
    "text, names, phone numbers or emails. After a crash a line may appear twice (same topic,\n"
    "partition and offset). HTTP: GET /healthz, /metrics on PM_AUDIT_LISTEN.";

static const struct config_var audit_vars[] = {
    {"PM_KAFKA_BROKERS", "localhost:9092", 0, "Kafka bootstrap servers"},
    {"PM_KAFKA_CONFIG_FILE", NULL, 0, "librdkafka properties file (key=value lines, as kcat -F)"},
    {"PM_LOG_LEVEL", "info", 0, "error | warn | info | debug"},
    {"PM_TOPIC_CANVAS_MESSAGES", CONFIG_TOPIC_MESSAGES_DEFAULT, 0,
     "topic of canvas.message.v1 events"},
    {"PM_TOPIC_PATIENT_REPLIES", CONFIG_TOPIC_REPLIES_DEFAULT, 0,
     "topic of patient.reply.v1 events"},
    {"PM_TOPIC_QUESTIONNAIRE_RESPONSES", CONFIG_TOPIC_QUESTIONNAIRES_DEFAULT, 0,
     "topic of patient.questionnaire_response.v1 events"},
    {"PM_TOPIC_DELIVERIES", CONFIG_TOPIC_DELIVERIES_DEFAULT, 0,
     "topic of delivery.result.v1 events"},
    {"PM_AUDIT_GROUP_ID", "pm-audit-trail", 0, "consumer group (its own: it sees every event)"},
    {"PM_AUDIT_FILE", NULL, 0, "file the JSON lines are appended to (required; created 0600)"},
    {"PM_AUDIT_DLQ_TOPIC", "pm.audit-trail.dlq", 0,
     "topic for records that are not product events (its own: pm.dlq is pm-deliver's)"},
    {"PM_AUDIT_LISTEN", "127.0.0.1:8082", 0, "HTTP address of /healthz and /metrics"},
    {NULL, NULL, 0, NULL},
};

/* Read once at start, then read-only. */
struct audit_config {
    enum log_level log_level;
    struct kafka_settings kafka;
    const char *topics[5]; /* NULL-terminated */
    const char *group_id;
    const char *file;
    const char *dlq_topic;
    char listen_host[256];
    unsigned listen_port;
};

/* What the handlers share. Handlers of different keys run on several worker threads at once. */
struct audit {
    int fd;
    pthread_mutex_t lock; /* one line's write + fsync (or cut back) happens as a whole */
};

static void audit_config_load(struct audit_config *cfg, struct config_report *r)
{
    const char *listen = config_str("PM_AUDIT_LISTEN", "127.0.0.1:8082");
    char err[256];
    struct config_topics topics;

    memset(cfg, 0, sizeof(*cfg));
    cfg->log_level = config_log_level(r);
    kafka_settings_from_env(&cfg->kafka);
    kafka_settings_check(&cfg->kafka, r);
    config_topics_load(&topics);
    cfg->topics[0] = topics.messages;
    cfg->topics[1] = topics.replies;
    cfg->topics[2] = topics.questionnaires;
    cfg->topics[3] = topics.deliveries;
    cfg->group_id = config_str("PM_AUDIT_GROUP_ID", "pm-audit-trail");
    cfg->dlq_topic = config_str("PM_AUDIT_DLQ_TOPIC", "pm.audit-trail.dlq");
    cfg->file = config_str("PM_AUDIT_FILE", NULL);
    if (!cfg->file)
        config_report_add(r, "PM_AUDIT_FILE is required");
    if (config_parse_listen(listen, cfg->listen_host, sizeof(cfg->listen_host), &cfg->listen_port,
                            err, sizeof(err)) != 0)
        config_report_add(r, "PM_AUDIT_LISTEN: %s", err);
}

/* The string members @p ids of @p data, copied. Only identifiers are ever named here, so message
 * text, names, phone numbers and emails cannot reach the file. @returns a new object or NULL. */
static json_t *audit_summary(json_t *data, const char *const *ids)
{
    json_t *s = json_object();
    for (; s && *ids; ids++) {
        json_t *v = json_object_get(data, *ids);
        if (json_is_string(v))
            json_object_set_new(s, *ids, json_stringn(json_string_value(v), json_string_length(v)));
    }
    return s;
}

/* Appends @p len bytes (one line with its newline) and fsyncs. On failure the file is cut back to
 * its old end, so a retry never writes after half a line (and after a failed fsync the kernel may
 * have dropped the data: writing it again is the only safe way). @returns 0, or -1 with errno. */
static int audit_append(struct audit *a, const char *buf, size_t len)
{
    size_t done = 0;
    int rc = -1, saved;
    off_t end;

    pthread_mutex_lock(&a->lock);
    end = lseek(a->fd, 0, SEEK_END); /* O_APPEND writes land here: we hold the only writer */
    while (done < len) {
        ssize_t n = write(a->fd, buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto out;
        done += (size_t)n;
    }
    if (fsync(a->fd) == 0)
        rc = 0;
out:
    saved = errno;
    if (rc != 0 && done > 0 && end >= 0 && ftruncate(a->fd, end) != 0)
        log_warn("cannot cut back a partly written audit line", LOG_I("bytes", (long long)end));
    pthread_mutex_unlock(&a->lock);
    errno = saved;
    return rc;
}

/* What every handler does: build the line, make it durable, then (and only then) say DONE. */
static void audit_record(struct audit *a, struct consumer_event *ev, struct consumer_outcome *out,
                         const char *const *ids)
{
    char now[40], reason[128];
    json_t *line;
    char *buf = NULL;
    size_t n = 0;

    timefmt_now_ms(now, sizeof(now));
    line = json_pack("{s:s, s:s, s:i, s:I, s:s, s:s, s:s, s:s*, s:s*, s:o}", "ts", now, "topic",
                     ev->topic, "partition", (int)ev->partition, "offset", (json_int_t)ev->offset,
                     "key", ev->key, "id", ev->ce->id, "type", ev->ce->type, "time", ev->ce->time,
                     "subject", ev->ce->subject, "summary", audit_summary(ev->ce->data, ids));
    if (line)
        n = json_dumpb(line, NULL, 0, JSON_COMPACT);
    if (n > 0 && (buf = malloc(n + 1)) != NULL && json_dumpb(line, buf, n, JSON_COMPACT) == n) {
        buf[n] = '\n';
        if (audit_append(a, buf, n + 1) == 0) {
            out->verdict = CONSUMER_DONE; /* durable: the offset may move past this record */
            out->label = "written";
            goto out;
        }
        if (strerror_r(errno, reason, sizeof(reason)) != 0)
            snprintf(reason, sizeof(reason), "errno %d", errno);
    } else {
        snprintf(reason, sizeof(reason), "out of memory");
    }
    /* Transient by nature (disk full, NFS away): keep the offset, try again after a backoff. */
    out->verdict = CONSUMER_RETRY;
    out->retry_after_ms = -1;
    snprintf(out->error, sizeof(out->error), "audit line not written: %s", reason);
out:
    free(buf);
    json_decref(line);
}

/* One handler per type: each names the ids of its data worth keeping. */
static void audit_on_message(void *app, struct consumer_event *ev, struct consumer_outcome *out)
{
    static const char *const ids[] = {"communication_id", "patient_id", NULL};
    audit_record(app, ev, out, ids);
}

static void audit_on_reply(void *app, struct consumer_event *ev, struct consumer_outcome *out)
{
    static const char *const ids[] = {"patient_id", "in_reply_to", NULL}; /* never "text" */
    audit_record(app, ev, out, ids);
}

static void audit_on_checkin(void *app, struct consumer_event *ev, struct consumer_outcome *out)
{
    static const char *const ids[] = {"patient_id", NULL}; /* never the answers */
    audit_record(app, ev, out, ids);
}

static void audit_on_result(void *app, struct consumer_event *ev, struct consumer_outcome *out)
{
    static const char *const ids[] = {"source_event_id", "kind", "channel", "outcome", NULL};
    audit_record(app, ev, out, ids);
}

static const struct consumer_handler audit_handlers[] = {
    {CE_TYPE_CANVAS_MESSAGE, audit_on_message, NULL},
    {CE_TYPE_PATIENT_REPLY, audit_on_reply, NULL},
    {CE_TYPE_QUESTIONNAIRE, audit_on_checkin, NULL},
    {CE_TYPE_DELIVERY_RESULT, audit_on_result, NULL},
};

static enum http_result audit_healthz(struct http_request *req, void *arg)
{
    (void)arg;
    http_respond(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
    return HTTP_HANDLED;
}

static enum http_result audit_metrics(struct http_request *req, void *arg)
{
    size_t len;
    char *text = metrics_render(arg, &len);
    if (!text)
        return HTTP_FAIL;
    http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return HTTP_HANDLED;
}

static const struct http_route audit_routes[] = {
    {"GET", "/healthz", audit_healthz, 0, "/healthz"},
    {"GET", "/metrics", audit_metrics, 0, "/metrics"},
};

int main(int argc, char **argv)
{
    struct audit_config cfg;
    struct config_report report = {0};
    struct audit audit = {.fd = -1};
    struct metrics_registry *metrics = NULL;
    struct kafka_producer *producer = NULL;
    struct http_server *server = NULL;
    struct consumer *consumer = NULL;
    struct http_server_options so = {0};
    struct consumer_options co = {0};
    struct sigaction sa;
    rd_kafka_conf_t *conf;
    char err[512];
    int rc = 1;
    enum config_mode mode = config_cli(argc, argv, AUDIT_PROG, audit_help, audit_vars);

    if (mode == CONFIG_MODE_EXIT_OK)
        return 0;
    if (mode == CONFIG_MODE_EXIT_USAGE)
        return 2;
    audit_config_load(&cfg, &report);
    if (mode == CONFIG_MODE_CHECK) {
        config_report_print(&report, stdout, AUDIT_PROG);
        if (!report.count)
            printf("%s: configuration OK\n", AUDIT_PROG);
        return report.count ? 1 : 0;
    }
    log_init(AUDIT_PROG, cfg.log_level);
    if (report.count) {
        config_report_print(&report, stderr, AUDIT_PROG);
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = audit_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&audit.lock, NULL);

    /* 0600: which patient had which event when is health data in its own right. */
    audit.fd = open(cfg.file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (audit.fd < 0) {
        log_error("cannot open PM_AUDIT_FILE", LOG_S("path", cfg.file),
                  LOG_S("error", strerror(errno)));
        goto out;
    }
    metrics = metrics_registry_new();
    if (!metrics)
        goto out;
    /* The runtime produces DLQ records through this producer; an offset moves past such a record
     * only once Kafka acknowledged it. */
    conf = kafka_conf_build(&cfg.kafka, err, sizeof(err));
    if (!conf || !(producer = kafka_producer_new(conf, 30000, err, sizeof(err)))) {
        log_error("cannot create the Kafka producer", LOG_S("error", err));
        goto out;
    }
    so.host = cfg.listen_host;
    so.port = cfg.listen_port;
    so.max_body_bytes = 1024;
    so.conn_timeout_s = 10;
    so.conn_limit = 16;
    so.routes = audit_routes;
    so.nroutes = sizeof(audit_routes) / sizeof(audit_routes[0]);
    so.app = metrics;
    if (!(server = http_server_start(&so, err, sizeof(err)))) {
        log_error("cannot start the HTTP server", LOG_S("error", err));
        goto out;
    }

    if (!(conf = kafka_conf_build(&cfg.kafka, err, sizeof(err)))) {
        log_error("bad Kafka configuration", LOG_S("error", err));
        goto out;
    }
    co.conf = conf;             /* consumed by consumer_start */
    co.group_id = cfg.group_id; /* a group of our own: every event, taken from nobody */
    co.topics = cfg.topics;
    co.producer = producer;
    co.dlq_topic = cfg.dlq_topic;
    co.results_topic = NULL; /* this consumer publishes no delivery results */
    co.handlers = audit_handlers;
    co.nhandlers = sizeof(audit_handlers) / sizeof(audit_handlers[0]);
    co.app = &audit;
    co.max_in_flight = 4; /* lines are serialised by the lock; a few workers hide the JSON work */
    co.retry_base_ms = AUDIT_RETRY_BASE_MS;
    co.retry_max_ms = AUDIT_RETRY_MAX_MS;
    co.retry_deadline_ms = AUDIT_RETRY_DEADLINE_MS;
    co.drain_timeout_ms = 10000;
    co.metrics = metrics;
    co.metrics_prefix = "pm_audit";
    if (!(consumer = consumer_start(&co, err, sizeof(err)))) {
        log_error("cannot start the consumer", LOG_S("error", err));
        goto out;
    }
    log_info("pm-audit-trail running", LOG_S("group_id", cfg.group_id),
             LOG_S("brokers", cfg.kafka.brokers), LOG_I("port", http_server_port(server)));

    while (!audit_signal) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        if (consumer_fatal(consumer, err, sizeof(err)) ||
            kafka_producer_fatal(producer, err, sizeof(err))) {
            log_error("stopping after a fatal Kafka error", LOG_S("kafka_error", err));
            goto out;
        }
        nanosleep(&ts, NULL);
    }
    log_info("stopping: finishing lines in progress", LOG_I("signal", audit_signal));
    rc = 0;

out:
    /* Reverse order. consumer_stop lets running handlers finish, then commits what is durable;
     * records waiting for a retry stay uncommitted and are read again at the next start. */
    if (consumer && consumer_stop(consumer) != 0)
        log_warn("some events were left unwritten; they are read again at the next start");
    http_server_stop(server);
    kafka_producer_destroy(producer, 10000);
    metrics_registry_free(metrics);
    if (audit.fd >= 0)
        close(audit.fd);
    pthread_mutex_destroy(&audit.lock);
    return rc;
}
