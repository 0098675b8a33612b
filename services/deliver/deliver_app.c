/* pm-deliver wiring: HTTP and FHIR clients, result producer, consumer runtime, health routes. */
#include "deliver.h"

#include "cpus.h"
#include "fhir.h"
#include "http_client.h"
#include "http_server.h"
#include "kafka_producer.h"
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum deliver_send deliver_classify(long status)
{
    if (status >= 200 && status < 300)
        return SEND_OK;
    if (status == 0 || status == 408 || status == 429 || status >= 500)
        return SEND_TRANSIENT;
    return SEND_PERMANENT;
}

static const struct consumer_handler deliver_handlers[] = {
    {"canvas.message.v1", deliver_message_handle, deliver_message_failed},
    {"patient.reply.v1", deliver_reply_handle, deliver_reply_failed},
    {"patient.questionnaire_response.v1", deliver_checkin_handle, deliver_checkin_failed},
};

static enum http_result deliver_healthz(struct http_request *req, void *arg)
{
    (void)arg;
    http_respond(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
    return HTTP_HANDLED;
}

static enum http_result deliver_readyz(struct http_request *req, void *arg)
{
    struct deliver_app *app = arg;
    char err[256];
    int ready;

    /* The lock keeps the consumer from being freed under us during a stop. */
    pthread_mutex_lock(&app->stop_lock);
    ready = !app->stopping && app->consumer && !consumer_fatal(app->consumer, err, sizeof(err)) &&
            consumer_ready(app->consumer) && kafka_producer_ready(app->producer);
    pthread_mutex_unlock(&app->stop_lock);
    if (!ready) {
        http_respond(req, 503, "application/json", "{\"status\":\"unavailable\"}", 24);
        return HTTP_HANDLED;
    }
    http_respond(req, 200, "application/json", "{\"status\":\"ready\"}", 18);
    return HTTP_HANDLED;
}

static enum http_result deliver_metrics(struct http_request *req, void *arg)
{
    struct deliver_app *app = arg;
    size_t len;
    char *text;

    metrics_set(app->m_guard_messages, (double)deliver_guard_count(app->delivered));
    metrics_set(app->m_guard_writebacks, (double)deliver_guard_count(app->replies));
    text = metrics_render(app->metrics, &len);
    if (!text)
        return HTTP_FAIL;
    http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return HTTP_HANDLED;
}

static const struct http_route deliver_routes[] = {
    {"GET", "/healthz", deliver_healthz, 0, "/healthz"},
    {"GET", "/readyz", deliver_readyz, 0, "/readyz"},
    {"GET", "/metrics", deliver_metrics, 0, "/metrics"},
};

static void deliver_app_free(struct deliver_app *app)
{
    deliver_history_stop(app);
    if (app->server)
        http_server_stop(app->server);
    if (app->producer)
        kafka_producer_destroy(app->producer, 10000);
    fhir_client_free(app->fhir);
    if (app->http)
        http_client_free(app->http);
    deliver_cache_free(app->patients);
    deliver_guard_free(app->delivered);
    deliver_cache_free(app->practitioners);
    deliver_cache_free(app->questionnaires);
    deliver_guard_free(app->replies);
    metrics_registry_free(app->metrics);
    pthread_mutex_destroy(&app->stop_lock);
    free(app);
}

struct deliver_app *deliver_app_start(const struct deliver_config *cfg,
                                      volatile sig_atomic_t *interrupted, char *errstr,
                                      size_t errlen)
{
    struct deliver_app *app = calloc(1, sizeof(*app));
    struct http_client_options ho = {0};
    struct fhir_options fo = {0};
    struct http_server_options so = {0};
    struct consumer_options co = {0};
    rd_kafka_conf_t *conf;
    const char *topics[4];

    if (!app) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    app->cfg = cfg;
    app->interrupted = interrupted;
    pthread_mutex_init(&app->stop_lock, NULL);
    app->metrics = metrics_registry_new();
    app->patients = deliver_cache_new(10000, cfg->patient_cache_ttl_s);
    app->delivered = deliver_guard_new(200000, 7 * 86400);
    app->practitioners = deliver_cache_new(10000, 600);
    app->questionnaires = deliver_cache_new(1000, 600);
    app->replies = deliver_guard_new(200000, 7 * 86400);
    if (!app->metrics || !app->patients || !app->delivered || !app->practitioners ||
        !app->questionnaires || !app->replies) {
        snprintf(errstr, errlen, "out of memory");
        goto fail;
    }
    {
        static const char *const labels[] = {"guard", NULL};
        struct metrics_family *f = metrics_family_new(
            app->metrics, METRICS_GAUGE, "pm_deliver_repeat_guard_entries",
            "entries remembered to keep from repeating a delivery or a write-back", labels, NULL,
            0);
        app->m_guard_messages = f ? metrics_series1(f, "messages") : NULL;
        app->m_guard_writebacks = f ? metrics_series1(f, "writebacks") : NULL;
    }

    ho.timeout_ms = cfg->http_timeout_ms;
    ho.max_connections = cfg->max_in_flight * 2 + 16;
    ho.metrics = app->metrics;
    ho.metrics_prefix = "pm_deliver";
    app->http = http_client_new(&ho, errstr, errlen);
    if (!app->http)
        goto fail;

    fo.base_url = cfg->fhir_url;
    fo.token_url = cfg->token_url;
    fo.client_id = cfg->client_id;
    fo.client_secret = cfg->client_secret;
    fo.refresh_margin_s = 60;
    app->fhir = fhir_client_new(app->http, &fo, errstr, errlen);
    if (!app->fhir)
        goto fail;

    {
        /* Results and DLQ records: acknowledged (acks=all) before the source offset moves.
         * linger.ms 20 instead of librdkafka's 5: the idempotent producer allows 5 requests in
         * flight per partition, and librdkafka 2.0's broker thread spins on poll(0) while that
         * limit is reached and a batch's linger has passed. With 5 ms that happened as soon as
         * acknowledgements took 20 ms (a busy machine), and the spinning made them slower still:
         * 58,000-72,000 polls a second, some 7 % of pm-deliver's CPU in the benchmark. With
         * 20 ms they would have to take 80 ms. The cost is up to 15 ms more before a patient's
         * next event starts (it waits for the previous one's result to be acknowledged). */
        static const char *const producer_defaults[] = {"linger.ms", "20", NULL};
        struct kafka_settings ks = cfg->kafka;
        ks.defaults = producer_defaults;
        conf = kafka_conf_build(&ks, errstr, errlen);
    }
    if (!conf)
        goto fail;
    app->producer = kafka_producer_new(conf, 60000, errstr, errlen);
    if (!app->producer)
        goto fail;

    so.host = cfg->listen_host;
    so.port = cfg->listen_port;
    so.max_body_bytes = 1024;
    so.conn_timeout_s = 10;
    so.conn_limit = 64;
    so.threads = 1;
    so.routes = deliver_routes;
    so.nroutes = sizeof(deliver_routes) / sizeof(deliver_routes[0]);
    so.app = app;
    app->server = http_server_start(&so, errstr, errlen);
    if (!app->server)
        goto fail;

    {
        /* Before the first record is taken: what earlier runs delivered is not delivered again.
         * Without Kafka this start would not get far either; an incomplete read only makes
         * repeats possible again (at-least-once), so it is a warning, not a reason to stop. */
        char herr[256];
        if (deliver_history_start(app, herr, sizeof(herr)) < 0 && !(interrupted && *interrupted))
            log_warn("earlier deliveries not fully read back: a message delivered before this "
                     "start may be delivered again",
                     LOG_S("topic", cfg->topic_deliveries), LOG_S("error", herr));
    }

    {
        /* librdkafka prefetches up to 64 MiB per consumer by default. While the consumer's own
         * buffer is full that prefetch is what waits (docs/consumer-runtime.md), so it is kept to
         * 16 MiB, some 40,000 events, unless PM_KAFKA_CONFIG_FILE says otherwise. */
        static const char *const consumer_defaults[] = {"queued.max.messages.kbytes", "16384",
                                                        NULL};
        struct kafka_settings ks = cfg->kafka;
        ks.defaults = consumer_defaults;
        conf = kafka_conf_build(&ks, errstr, errlen);
    }
    if (!conf)
        goto fail;
    topics[0] = cfg->topic_messages;
    topics[1] = cfg->topic_replies;
    topics[2] = cfg->topic_questionnaires;
    topics[3] = NULL;
    co.conf = conf;
    co.group_id = cfg->group_id;
    co.topics = topics;
    co.producer = app->producer;
    co.dlq_topic = cfg->topic_dlq;
    co.results_topic = cfg->topic_deliveries;
    co.results_source = "pm-deliver";
    co.handlers = deliver_handlers;
    co.nhandlers = sizeof(deliver_handlers) / sizeof(deliver_handlers[0]);
    co.app = app;
    co.max_in_flight = cfg->max_in_flight;
    /* Handlers wait only in http_client_do and fhir_*, which give the thread to another
     * handler meanwhile: a thread per CPU it may use runs them all (common/consumer.h). */
    co.worker_threads = cpus_available();
    if (co.worker_threads > cfg->max_in_flight)
        co.worker_threads = cfg->max_in_flight;
    co.retry_base_ms = cfg->retry_base_ms;
    co.retry_max_ms = cfg->retry_max_ms;
    co.retry_deadline_ms = cfg->retry_deadline_ms;
    co.drain_timeout_ms = cfg->drain_timeout_ms;
    co.metrics = app->metrics;
    co.metrics_prefix = "pm_deliver";
    {
        /* The health server already answers: publish the consumer under the lock /readyz takes. */
        struct consumer *c = consumer_start(&co, errstr, errlen);
        if (!c)
            goto fail;
        pthread_mutex_lock(&app->stop_lock);
        app->consumer = c;
        pthread_mutex_unlock(&app->stop_lock);
    }
    log_info("pm-deliver listening", LOG_S("addr", cfg->listen_host),
             LOG_I("port", http_server_port(app->server)), LOG_S("brokers", cfg->kafka.brokers),
             LOG_S("group_id", cfg->group_id), LOG_I("worker_threads", co.worker_threads),
             LOG_S("version", PM_VERSION));
    return app;

fail:
    deliver_app_free(app);
    return NULL;
}

int deliver_app_fatal(struct deliver_app *app, char *errstr, size_t errlen)
{
    return consumer_fatal(app->consumer, errstr, errlen) ||
           kafka_producer_fatal(app->producer, errstr, errlen);
}

int deliver_app_stop(struct deliver_app *app)
{
    int rc;
    pthread_mutex_lock(&app->stop_lock);
    app->stopping = 1;
    pthread_mutex_unlock(&app->stop_lock);
    rc = consumer_stop(app->consumer);
    app->consumer = NULL;
    deliver_app_free(app);
    return rc;
}
