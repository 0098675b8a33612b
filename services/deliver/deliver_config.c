/* pm-deliver configuration: the variable table (--help) and loading with validation. */
#include "deliver.h"

#include "fhir_ref.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct config_var deliver_config_vars[] = {
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
    {"PM_TOPIC_DELIVERIES", CONFIG_TOPIC_DELIVERIES_DEFAULT, 0,
     "topic of delivery.result.v1 events"},
    {"PM_TOPIC_DLQ", CONFIG_TOPIC_DLQ_DEFAULT, 0, "dead-letter topic"},
    {"PM_DELIVER_LISTEN", "0.0.0.0:8081", 0, "HTTP address of /healthz, /readyz, /metrics"},
    {"PM_DELIVER_GROUP_ID", "pm-deliver", 0, "Kafka consumer group"},
    {"PM_CANVAS_INSTANCE", NULL, 0,
     "Canvas instance name: derives PM_CANVAS_FHIR_URL and PM_CANVAS_TOKEN_URL"},
    {"PM_CANVAS_FHIR_URL", "https://fumage-<instance>.canvasmedical.com", 0,
     "Canvas FHIR base URL"},
    {"PM_CANVAS_TOKEN_URL", "https://<instance>.canvasmedical.com/auth/token/", 0,
     "Canvas OAuth token URL"},
    {"PM_CANVAS_CLIENT_ID", NULL, 0, "Canvas OAuth client id"},
    {"PM_CANVAS_CLIENT_SECRET", NULL, 1, "Canvas OAuth client secret"},
    {"PM_DELIVER_CHANNELS", "webhook", 0, "ordered channels: webhook, sms, email"},
    {"PM_WEBHOOK_URL", NULL, 0, "clinic webhook receiving patient.message.v1 (webhook channel)"},
    {"PM_WEBHOOK_SECRET", NULL, 1, "whsec_... key signing webhook requests"},
    {"PM_TWILIO_ACCOUNT_SID", NULL, 0, "Twilio account SID (sms channel)"},
    {"PM_TWILIO_AUTH_TOKEN", NULL, 1, "Twilio auth token"},
    {"PM_TWILIO_FROM", NULL, 0, "Twilio sender number (E.164) or messaging service"},
    {"PM_TWILIO_API_URL", "https://api.twilio.com", 0, "Twilio API base URL"},
    {"PM_SENDGRID_API_KEY", NULL, 1, "SendGrid API key (email channel)"},
    {"PM_SENDGRID_FROM", NULL, 0, "sender email address"},
    {"PM_SENDGRID_API_URL", "https://api.sendgrid.com", 0, "SendGrid API base URL"},
    {"PM_EMAIL_SUBJECT", "New message from your care team", 0, "email subject"},
    {"PM_DELIVER_CONTACT_CATEGORIES", NULL, 0,
     "contact-category codes whose contacts also receive messages, e.g. ARI"},
    {"PM_DEFAULT_PRACTITIONER_ID", NULL, 0, "recipient of patient replies that name none"},
    {"PM_DELIVER_MAX_IN_FLIGHT", "64", 0, "events handled at once (different patients)"},
    {"PM_RETRY_BASE_MS", "1000", 0, "first retry backoff (exponential, full jitter)"},
    {"PM_RETRY_MAX_BACKOFF_MS", "300000", 0, "largest retry backoff"},
    {"PM_RETRY_DEADLINE_MS", "3600000", 0, "retrying stops after this; then the DLQ"},
    {"PM_HTTP_TIMEOUT_MS", "15000", 0, "timeout of every outbound HTTP request"},
    {"PM_DELIVER_DRAIN_TIMEOUT_MS", "30000", 0, "how long SIGTERM waits for work in progress"},
    {"PM_DELIVER_PATIENT_CACHE_TTL_S", "300", 0, "how long a Patient read is reused"},
    {"PM_DELIVER_HISTORY_HOURS", "168", 0,
     "hours of delivery results read back at start, so nothing done before is done again; 0 = off"},
    {"PM_DELIVER_HISTORY_TIMEOUT_MS", "120000", 0,
     "how long reading them back may take before pm-deliver starts without the rest"},
    {NULL, NULL, 0, NULL},
};

const char *deliver_channel_name(enum deliver_channel ch)
{
    switch (ch) {
    case CHANNEL_WEBHOOK:
        return "webhook";
    case CHANNEL_SMS:
        return "sms";
    case CHANNEL_EMAIL:
        return "email";
    default:
        return "unknown";
    }
}

/* "<prefix><instance><suffix>", malloc'd. */
static char *deliver_url_from_instance(const char *prefix, const char *instance, const char *suffix)
{
    size_t n = strlen(prefix) + strlen(instance) + strlen(suffix) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", prefix, instance, suffix);
    return s;
}

static int deliver_url_ok(const char *u)
{
    return u && (strncmp(u, "https://", 8) == 0 || strncmp(u, "http://", 7) == 0);
}

static void deliver_require_url(const char *name, const char *value, struct config_report *r)
{
    if (!value)
        config_report_add(r, "%s is required", name);
    else if (!deliver_url_ok(value))
        config_report_add(r, "%s must be an http:// or https:// URL", name);
}

static void deliver_config_canvas(struct deliver_config *cfg, struct config_report *r)
{
    const char *instance = config_str("PM_CANVAS_INSTANCE", NULL);
    const char *fhir = config_str("PM_CANVAS_FHIR_URL", NULL);
    const char *token = config_str("PM_CANVAS_TOKEN_URL", NULL);

    if (instance) {
        for (const char *p = instance; *p; p++) {
            if (!isalnum((unsigned char)*p) && *p != '-') {
                config_report_add(r, "PM_CANVAS_INSTANCE: only letters, digits and '-' "
                                     "(the instance part of <instance>.canvasmedical.com)");
                instance = NULL;
                break;
            }
        }
    }
    if (fhir)
        cfg->fhir_url = strdup(fhir);
    else if (instance)
        cfg->fhir_url =
            deliver_url_from_instance("https://fumage-", instance, ".canvasmedical.com");
    if (token)
        cfg->token_url = strdup(token);
    else if (instance)
        cfg->token_url =
            deliver_url_from_instance("https://", instance, ".canvasmedical.com/auth/token/");
    if (!cfg->fhir_url || !cfg->token_url)
        config_report_add(r, "set PM_CANVAS_INSTANCE, or both PM_CANVAS_FHIR_URL and "
                             "PM_CANVAS_TOKEN_URL");
    else {
        deliver_require_url("PM_CANVAS_FHIR_URL", cfg->fhir_url, r);
        deliver_require_url("PM_CANVAS_TOKEN_URL", cfg->token_url, r);
    }
    cfg->client_id = config_str("PM_CANVAS_CLIENT_ID", NULL);
    if (!cfg->client_id)
        config_report_add(r, "PM_CANVAS_CLIENT_ID is required");
    cfg->client_secret = config_secret("PM_CANVAS_CLIENT_SECRET", r);
    if (!cfg->client_secret)
        config_report_add(r, "PM_CANVAS_CLIENT_SECRET (or PM_CANVAS_CLIENT_SECRET_FILE) is "
                             "required");
}

static void deliver_config_channels(struct deliver_config *cfg, struct config_report *r)
{
    char **items = NULL;
    size_t n = config_list_split(config_str("PM_DELIVER_CHANNELS", "webhook"), &items);
    int seen[CHANNEL_COUNT] = {0};

    for (size_t i = 0; i < n; i++) {
        enum deliver_channel ch;
        if (!strcmp(items[i], "webhook"))
            ch = CHANNEL_WEBHOOK;
        else if (!strcmp(items[i], "sms"))
            ch = CHANNEL_SMS;
        else if (!strcmp(items[i], "email"))
            ch = CHANNEL_EMAIL;
        else {
            config_report_add(r, "PM_DELIVER_CHANNELS: '%s' is not webhook, sms or email",
                              items[i]);
            continue;
        }
        if (seen[ch]++) {
            config_report_add(r, "PM_DELIVER_CHANNELS: '%s' is listed twice", items[i]);
            continue;
        }
        cfg->channels[cfg->nchannels++] = ch;
    }
    config_list_free(items, n);
    if (cfg->nchannels == 0)
        config_report_add(r, "PM_DELIVER_CHANNELS names no channel");

    cfg->webhook_url = config_str("PM_WEBHOOK_URL", NULL);
    cfg->twilio_sid = config_str("PM_TWILIO_ACCOUNT_SID", NULL);
    cfg->twilio_from = config_str("PM_TWILIO_FROM", NULL);
    cfg->twilio_api_url = config_str("PM_TWILIO_API_URL", "https://api.twilio.com");
    cfg->sendgrid_from = config_str("PM_SENDGRID_FROM", NULL);
    cfg->sendgrid_api_url = config_str("PM_SENDGRID_API_URL", "https://api.sendgrid.com");
    cfg->email_subject = config_str("PM_EMAIL_SUBJECT", "New message from your care team");

    if (seen[CHANNEL_WEBHOOK]) {
        char *secret = config_secret("PM_WEBHOOK_SECRET", r);
        deliver_require_url("PM_WEBHOOK_URL", cfg->webhook_url, r);
        if (!secret) {
            config_report_add(r, "PM_WEBHOOK_SECRET is required for the webhook channel");
        } else {
            char err[128];
            if (webhook_key_decode(secret, &cfg->webhook_key, err, sizeof(err)) != 0)
                config_report_add(r, "PM_WEBHOOK_SECRET: %s", err);
            else
                cfg->have_webhook_key = 1;
        }
        config_secret_free(secret);
    }
    if (seen[CHANNEL_SMS]) {
        cfg->twilio_token = config_secret("PM_TWILIO_AUTH_TOKEN", r);
        if (!cfg->twilio_sid)
            config_report_add(r, "PM_TWILIO_ACCOUNT_SID is required for the sms channel");
        if (!cfg->twilio_token)
            config_report_add(r, "PM_TWILIO_AUTH_TOKEN is required for the sms channel");
        if (!cfg->twilio_from)
            config_report_add(r, "PM_TWILIO_FROM is required for the sms channel");
        deliver_require_url("PM_TWILIO_API_URL", cfg->twilio_api_url, r);
    }
    if (seen[CHANNEL_EMAIL]) {
        cfg->sendgrid_key = config_secret("PM_SENDGRID_API_KEY", r);
        if (!cfg->sendgrid_key)
            config_report_add(r, "PM_SENDGRID_API_KEY is required for the email channel");
        if (!cfg->sendgrid_from || !strchr(cfg->sendgrid_from, '@'))
            config_report_add(r, "PM_SENDGRID_FROM (an email address) is required for the "
                                 "email channel");
        deliver_require_url("PM_SENDGRID_API_URL", cfg->sendgrid_api_url, r);
    }
}

void deliver_config_load(struct deliver_config *cfg, struct config_report *r)
{
    const char *listen;
    char err[256];
    struct config_topics topics;

    memset(cfg, 0, sizeof(*cfg));
    kafka_settings_from_env(&cfg->kafka);
    kafka_settings_check(&cfg->kafka, r);
    cfg->log_level = config_log_level(r);
    config_topics_load(&topics);
    cfg->topic_messages = topics.messages;
    cfg->topic_replies = topics.replies;
    cfg->topic_questionnaires = topics.questionnaires;
    cfg->topic_deliveries = topics.deliveries;
    cfg->topic_dlq = topics.dlq;

    listen = config_str("PM_DELIVER_LISTEN", "0.0.0.0:8081");
    if (config_parse_listen(listen, cfg->listen_host, sizeof(cfg->listen_host), &cfg->listen_port,
                            err, sizeof(err)) != 0)
        config_report_add(r, "PM_DELIVER_LISTEN: %s", err);
    cfg->group_id = config_str("PM_DELIVER_GROUP_ID", "pm-deliver");

    deliver_config_canvas(cfg, r);
    deliver_config_channels(cfg, r);

    cfg->ncontact_categories = config_list_split(config_str("PM_DELIVER_CONTACT_CATEGORIES", NULL),
                                                 &cfg->contact_categories);
    cfg->default_practitioner_id = config_str("PM_DEFAULT_PRACTITIONER_ID", NULL);
    if (cfg->default_practitioner_id && !fhir_id_valid(cfg->default_practitioner_id))
        config_report_add(r, "PM_DEFAULT_PRACTITIONER_ID is not a FHIR id");

    cfg->max_in_flight = (int)config_long("PM_DELIVER_MAX_IN_FLIGHT", 64, 1, 4096, r);
    cfg->retry_base_ms = config_long("PM_RETRY_BASE_MS", 1000, 1, 3600000, r);
    cfg->retry_max_ms = config_long("PM_RETRY_MAX_BACKOFF_MS", 300000, 1, 86400000, r);
    cfg->retry_deadline_ms = config_long("PM_RETRY_DEADLINE_MS", 3600000, 0, 7L * 86400000, r);
    if (cfg->retry_max_ms < cfg->retry_base_ms)
        config_report_add(r, "PM_RETRY_MAX_BACKOFF_MS is smaller than PM_RETRY_BASE_MS");
    cfg->http_timeout_ms = config_long("PM_HTTP_TIMEOUT_MS", 15000, 100, 600000, r);
    cfg->drain_timeout_ms = config_long("PM_DELIVER_DRAIN_TIMEOUT_MS", 30000, 0, 600000, r);
    cfg->patient_cache_ttl_s = (int)config_long("PM_DELIVER_PATIENT_CACHE_TTL_S", 300, 0, 86400, r);
    cfg->history_hours = (int)config_long("PM_DELIVER_HISTORY_HOURS", 168, 0, 8760, r);
    cfg->history_timeout_ms =
        config_long("PM_DELIVER_HISTORY_TIMEOUT_MS", 120000, 1000, 3600000, r);
}

void deliver_config_free(struct deliver_config *cfg)
{
    free(cfg->fhir_url);
    free(cfg->token_url);
    config_secret_free(cfg->client_secret);
    config_secret_free(cfg->twilio_token);
    config_secret_free(cfg->sendgrid_key);
    config_list_free(cfg->contact_categories, cfg->ncontact_categories);
    memset(cfg, 0, sizeof(*cfg));
}
