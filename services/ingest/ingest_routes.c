/* pm-ingest HTTP routes: authentication, validation, duplicate check, produce and the 202. */
#include "ingest.h"

#include "cloudevent.h"
#include "http_server.h"
#include "json_text.h"
#include "kafka_producer.h"
#include "metrics.h"
#include "problem.h"
#include "uuid.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define EVENT_ID_MAX 200

struct ingest_app {
    const struct ingest_config *cfg;
    struct http_server *http;
    struct kafka_producer *producer;
    struct ingest_dedup *dedup;
    atomic_int stopping;
    size_t max_record_bytes; /* the producer's message.max.bytes */

    struct metrics_registry *metrics;
    struct metrics_family *m_requests;
    struct metrics_family *m_duration;
    struct metrics_family *m_events;
    struct metrics_series *m_duplicates;
    struct metrics_series *m_ack_timeouts;
    struct metrics_series *m_waiting;
    struct metrics_series *m_dedup_size;
};

enum auth_state { AUTH_NONE_NEEDED, AUTH_BEARER_OK, AUTH_SIGNATURE_PENDING };

/* Per-request state, kept across suspension (http_request_set_user). */
struct ingest_req {
    struct ingest_app *app;
    struct http_request *http;
    enum ingest_kind kind;
    enum auth_state auth;
    char event_id[EVENT_ID_MAX + 1];
    int client_id; /* the id came from the client (dedup applies) */
    char retry_after[16];
};

/* ---- small helpers ---- */

static void respond_problem(struct http_request *req, int status, const char *type,
                            const char *detail, json_t *errors_from)
{
    json_t *p = problem_new(status, type, detail);
    if (errors_from) {
        json_t *errs = json_object_get(errors_from, "errors");
        if (errs)
            json_object_set(p, "errors", errs);
    }
    http_respond_problem(req, p);
    json_decref(p);
}

static void respond_header_problem(struct http_request *req, int status, const char *type,
                                   const char *header, const char *detail)
{
    json_t *p = problem_new(status, type, detail);
    json_object_set_new(p, "errors", json_pack("[{s:s, s:s}]", "header", header, "detail", detail));
    http_respond_problem(req, p);
    json_decref(p);
}

static void respond_unavailable(struct http_request *req, const char *type, const char *detail,
                                const char *retry_after)
{
    respond_problem(req, 503, type, detail, NULL);
    http_respond_header(req, "Retry-After", retry_after);
}

static void respond_unauthorized(struct ingest_app *app, struct http_request *req,
                                 const char *detail)
{
    respond_problem(req, 401, "urn:pm:problem:unauthorized", detail, NULL);
    if (app->cfg->ntokens)
        http_respond_header(req, "WWW-Authenticate", "Bearer");
}

/* application/json or any application/<x>+json, parameters allowed. */
static int content_type_is_json(const char *ct)
{
    const char *semi, *plus;
    size_t n;
    if (!ct)
        return 0;
    while (*ct == ' ')
        ct++;
    semi = strchr(ct, ';');
    n = semi ? (size_t)(semi - ct) : strlen(ct);
    while (n && ct[n - 1] == ' ')
        n--;
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
        return 1;
    if (n > 17 && strncasecmp(ct, "application/", 12) == 0) {
        plus = ct + n - 5;
        return strncasecmp(plus, "+json", 5) == 0;
    }
    return 0;
}

/* Event ids are visible ASCII; Idempotency-Key may be an RFC 8941 quoted string. */
static int event_id_take(const char *raw, char *out, size_t outlen)
{
    size_t n = strlen(raw);
    if (n >= 2 && raw[0] == '"' && raw[n - 1] == '"') {
        raw++;
        n -= 2;
    }
    if (n == 0 || n >= outlen || n > EVENT_ID_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (raw[i] < 0x21 || raw[i] > 0x7e)
            return -1;
    memcpy(out, raw, n);
    out[n] = '\0';
    return 0;
}

static int bearer_valid(const struct ingest_config *cfg, const char *token)
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    int ok = 0;
    SHA256((const unsigned char *)token, strlen(token), h);
    for (size_t i = 0; i < cfg->ntokens; i++)
        ok |= CRYPTO_memcmp(h, cfg->token_hashes[i], sizeof(h)) == 0;
    return ok;
}

static const char *topic_for(const struct ingest_config *cfg, enum ingest_kind kind)
{
    switch (kind) {
    case INGEST_MESSAGE:
        return cfg->topic_messages;
    case INGEST_REPLY:
        return cfg->topic_replies;
    case INGEST_QUESTIONNAIRE:
        break;
    }
    return cfg->topic_questionnaires;
}

/* ---- the POST routes ---- */

/* Everything decided from headers alone, before a body byte is read: content type, credentials
 * present (and a fresh signature timestamp), the event id. */
static enum http_result ingest_on_headers(struct http_request *req, void *arg)
{
    struct ingest_app *app = arg;
    const struct ingest_config *cfg = app->cfg;
    struct ingest_req *r;
    const char *authz, *wid, *idem;

    if (strcmp(http_request_method(req), "POST") != 0)
        return HTTP_CONTINUE; /* GET routes: nothing to check up front */

    if (atomic_load(&app->stopping)) {
        respond_unavailable(req, "urn:pm:problem:shutting-down",
                            "the service is shutting down; retry on another instance", "1");
        http_respond_header(req, "Connection", "close");
        return HTTP_HANDLED;
    }
    if (!content_type_is_json(http_request_header(req, "Content-Type"))) {
        respond_header_problem(req, 415, "urn:pm:problem:unsupported-media-type", "Content-Type",
                               "the body must be application/json (or application/*+json)");
        return HTTP_HANDLED;
    }

    r = calloc(1, sizeof(*r));
    if (!r)
        return HTTP_FAIL;
    r->app = app;
    r->http = req;
    http_request_set_user(req, r, free);
    if (!strcmp(http_request_path(req), "/v1/canvas/messages"))
        r->kind = INGEST_MESSAGE;
    else if (!strcmp(http_request_path(req), "/v1/patient/replies"))
        r->kind = INGEST_REPLY;
    else
        r->kind = INGEST_QUESTIONNAIRE;

    authz = http_request_header(req, "Authorization");
    wid = http_request_header(req, "webhook-id");
    if (cfg->nkeys == 0 && cfg->ntokens == 0) {
        r->auth = AUTH_NONE_NEEDED; /* only reachable with PM_INGEST_ALLOW_UNAUTHENTICATED=1 */
    } else if (cfg->ntokens && authz && strncasecmp(authz, "Bearer ", 7) == 0 &&
               bearer_valid(cfg, authz + 7)) {
        r->auth = AUTH_BEARER_OK;
    } else if (cfg->nkeys && (wid || http_request_header(req, "webhook-signature"))) {
        /* Signed (a bearer header that did not match, e.g. added by a proxy, is not fatal when
         * the request carries a signature: the signature decides). */
        enum webhook_sig_result sr;
        if (!wid || !http_request_header(req, "webhook-timestamp") ||
            !http_request_header(req, "webhook-signature")) {
            respond_unauthorized(app, req, webhook_sig_result_str(WEBHOOK_SIG_MISSING_HEADERS));
            return HTTP_HANDLED;
        }
        sr = webhook_sig_check_timestamp(http_request_header(req, "webhook-timestamp"), time(NULL));
        if (sr != WEBHOOK_SIG_OK) {
            respond_unauthorized(app, req, webhook_sig_result_str(sr));
            return HTTP_HANDLED;
        }
        r->auth = AUTH_SIGNATURE_PENDING;
    } else if (authz && strncasecmp(authz, "Bearer ", 7) == 0) {
        respond_unauthorized(app, req, "the bearer token is not valid");
        return HTTP_HANDLED;
    } else {
        respond_unauthorized(app, req,
                             cfg->nkeys && cfg->ntokens
                                 ? "a Standard Webhooks signature or a bearer token is required"
                             : cfg->nkeys ? "a Standard Webhooks signature is required"
                                          : "a bearer token is required");
        return HTTP_HANDLED;
    }

    idem = http_request_header(req, "Idempotency-Key");
    if (wid) {
        if (event_id_take(wid, r->event_id, sizeof(r->event_id)) != 0) {
            respond_header_problem(req, 400, "urn:pm:problem:invalid-header", "webhook-id",
                                   "must be 1-200 visible ASCII characters");
            return HTTP_HANDLED;
        }
        r->client_id = 1;
    } else if (idem) {
        if (event_id_take(idem, r->event_id, sizeof(r->event_id)) != 0) {
            respond_header_problem(req, 400, "urn:pm:problem:invalid-header", "Idempotency-Key",
                                   "must be 1-200 visible ASCII characters");
            return HTTP_HANDLED;
        }
        r->client_id = 1;
    } else if (uuid_v4(r->event_id) != 0) {
        return HTTP_FAIL;
    }
    return HTTP_CONTINUE;
}

/* Kafka's answer for one record: runs on the producer's poll thread. */
static void ingest_on_ack(void *opaque, const struct kafka_ack *ack)
{
    struct ingest_req *r = opaque;
    struct ingest_app *app = r->app;
    struct http_request *req = r->http;

    if (ack->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        struct ingest_dedup_answer a = {topic_for(app->cfg, r->kind), ack->partition, ack->offset};
        json_t *body =
            json_pack("{s:s, s:s, s:i, s:I}", "id", r->event_id, "topic", a.topic, "partition",
                      (int)ack->partition, "offset", (json_int_t)ack->offset);
        if (r->client_id)
            ingest_dedup_complete(app->dedup, r->event_id, &a);
        metrics_inc(metrics_series1(app->m_events, a.topic));
        http_respond_json(req, 202, body);
        json_decref(body);
        log_debug("event acknowledged", LOG_S("event_id", r->event_id), LOG_S("topic", a.topic),
                  LOG_I("partition", ack->partition), LOG_I("offset", ack->offset));
    } else {
        if (r->client_id)
            ingest_dedup_abort(app->dedup, r->event_id);
        if (ack->err == RD_KAFKA_RESP_ERR__TIMED_OUT ||
            ack->err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT)
            metrics_inc(app->m_ack_timeouts);
        if (ack->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
            /* The broker's limit is lower than ours: retrying cannot help. */
            respond_problem(req, 413, "urn:pm:problem:payload-too-large",
                            "Kafka refused the event as too large", NULL);
        else if (ack->err > 0) /* the broker refused it (authorisation, validation): no timeout */
            respond_unavailable(req, "urn:pm:problem:kafka-unavailable",
                                "Kafka refused the event; it was not accepted", r->retry_after);
        else
            respond_unavailable(req, "urn:pm:problem:kafka-unavailable",
                                "Kafka did not acknowledge the event in time; it was not accepted",
                                r->retry_after);
        log_warn("event not acknowledged", LOG_S("event_id", r->event_id),
                 LOG_S("kafka_error", rd_kafka_err2name(ack->err)));
    }
    http_request_resume(req); /* req (and r) may be gone from here on */
}

/* Dedup fingerprint: route and exact body, so a reused id with another body is told apart. */
static void ingest_fingerprint(struct http_request *req, const char *body, size_t len,
                               unsigned char fp[16])
{
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hl = 0;
    const char *path = http_request_path(req);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(c, path, strlen(path) + 1) || !EVP_DigestUpdate(c, body, len) ||
        !EVP_DigestFinal_ex(c, h, &hl))
        memset(h, 0, sizeof(h)); /* cannot happen short of OOM; fingerprints then just match */
    EVP_MD_CTX_free(c);
    memcpy(fp, h, 16);
}

static rd_kafka_headers_t *ingest_headers(struct http_request *req)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    const char *tp = http_request_header(req, "traceparent");
    rd_kafka_header_add(h, CE_HEADER_CONTENT_TYPE, -1, CE_CONTENT_TYPE, -1);
    /* W3C trace context: "00-<32 hex>-<16 hex>-<2 hex>"; anything else is not carried. */
    if (tp && strlen(tp) == 55 && tp[2] == '-' && tp[35] == '-' && tp[52] == '-') {
        int ok = 1;
        for (int i = 0; i < 55; i++)
            if (i != 2 && i != 35 && i != 52 && !isxdigit((unsigned char)tp[i]))
                ok = 0;
        if (ok)
            rd_kafka_header_add(h, "traceparent", -1, tp, -1);
    }
    return h;
}

static enum http_result ingest_post(struct http_request *req, void *arg)
{
    struct ingest_app *app = arg;
    struct ingest_req *r = http_request_user(req);
    const struct ingest_config *cfg = app->cfg;
    struct ingest_event ev = {0};
    struct ingest_dedup_answer first;
    json_error_t jerr;
    json_t *body = NULL, *pb = NULL, *ce = NULL;
    unsigned char fp[16];
    const char *raw, *topic;
    char stackbuf[4096]; /* most events fit: no allocation for the serialised record */
    char *value = NULL;
    size_t len, value_len = 0;
    rd_kafka_resp_err_t err;
    enum http_result res = HTTP_HANDLED;

    raw = http_request_body(req, &len);
    if (atomic_load(&app->stopping)) {
        respond_unavailable(req, "urn:pm:problem:shutting-down",
                            "the service is shutting down; retry on another instance", "1");
        goto out;
    }
    if (r->auth == AUTH_SIGNATURE_PENDING) {
        enum webhook_sig_result sr =
            webhook_sig_verify(cfg->keys, cfg->nkeys, http_request_header(req, "webhook-id"),
                               http_request_header(req, "webhook-timestamp"),
                               http_request_header(req, "webhook-signature"), raw, len, time(NULL));
        if (sr != WEBHOOK_SIG_OK) {
            respond_unauthorized(app, req, webhook_sig_result_str(sr));
            goto out;
        }
    }

    body = json_loadb(raw, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!body) {
        char detail[256];
        /* jansson's text can quote the offending input: the client sent it, so it goes back to
         * the client only, never to a log. */
        snprintf(detail, sizeof(detail), "the body is not valid JSON (line %d, column %d): %s",
                 jerr.line, jerr.column, jerr.text);
        respond_problem(req, 400, "urn:pm:problem:invalid-json", detail, NULL);
        goto out;
    }
    pb = problem_new(400, "urn:pm:problem:invalid-fields", NULL);
    if (ingest_map(r->kind, body, &ev, pb) != 0) {
        respond_problem(req, 400, "urn:pm:problem:invalid-fields",
                        "the body has invalid fields; see errors", pb);
        goto out;
    }

    topic = topic_for(cfg, r->kind);
    if (r->client_id) {
        ingest_fingerprint(req, raw, len, fp);
        switch (ingest_dedup_begin(app->dedup, r->event_id, fp, time(NULL), &first)) {
        case DEDUP_NEW:
            break;
        case DEDUP_DONE: {
            json_t *a = json_pack("{s:s, s:s, s:i, s:I, s:b}", "id", r->event_id, "topic",
                                  first.topic, "partition", (int)first.partition, "offset",
                                  (json_int_t)first.offset, "duplicate", 1);
            metrics_inc(app->m_duplicates);
            http_respond_json(req, 202, a);
            json_decref(a);
            goto out;
        }
        case DEDUP_CONFLICT:
            respond_header_problem(req, 422, "urn:pm:problem:idempotency-key-reused",
                                   http_request_header(req, "webhook-id") ? "webhook-id"
                                                                          : "Idempotency-Key",
                                   "this event id was already used for a different body");
            goto out;
        case DEDUP_PENDING:
            respond_unavailable(req, "urn:pm:problem:in-progress",
                                "an event with this id is waiting for Kafka; retry shortly", "1");
            goto out;
        }
    }

    {
        char subject[80];
        snprintf(subject, sizeof(subject), "Patient/%s", ev.patient_id);
        ce = cloudevent_new(r->event_id, "pm-ingest", ev.type, ev.time, subject, ev.data);
        ev.data = NULL; /* owned by ce now */
    }
    value = ce ? json_text_dumpb(ce, JSON_COMPACT, stackbuf, sizeof(stackbuf), &value_len) : NULL;
    if (!value) {
        if (r->client_id)
            ingest_dedup_abort(app->dedup, r->event_id);
        res = HTTP_FAIL;
        goto out;
    }
    /* A body within PM_INGEST_MAX_BODY_BYTES can still make a record Kafka refuses (the envelope
     * adds a few hundred bytes): say so now, rather than a 503 that no retry could cure. The 512
     * bytes cover the key, headers and record overhead. */
    if (value_len + strlen(ev.patient_id) + 512 > app->max_record_bytes) {
        char detail[160];
        if (r->client_id)
            ingest_dedup_abort(app->dedup, r->event_id);
        snprintf(detail, sizeof(detail),
                 "the event built from this body exceeds Kafka's record limit of %zu bytes",
                 app->max_record_bytes);
        respond_problem(req, 413, "urn:pm:problem:payload-too-large", detail, NULL);
        goto out;
    }

    /* Why 202 waits for the delivery report: the report is the only proof that Kafka (acks=all,
     * idempotent) holds the event. Suspend first, so the report can never race ahead of it; no
     * thread waits meanwhile. */
    snprintf(r->retry_after, sizeof(r->retry_after), "%d", cfg->ack_timeout_ms >= 5000 ? 5 : 1);
    http_request_suspend(req);
    err = kafka_producer_send(app->producer, topic, ev.patient_id, strlen(ev.patient_id), value,
                              value_len, ingest_headers(req), ingest_on_ack, r);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (r->client_id)
            ingest_dedup_abort(app->dedup, r->event_id);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            respond_unavailable(req, "urn:pm:problem:kafka-unavailable",
                                "too many events are waiting for Kafka; retry shortly", "1");
        else if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
            respond_problem(req, 413, "urn:pm:problem:payload-too-large",
                            "the event exceeds Kafka's record limit", NULL);
        else
            respond_unavailable(req, "urn:pm:problem:kafka-unavailable",
                                "the event could not be handed to Kafka", r->retry_after);
        log_warn("event not enqueued", LOG_S("event_id", r->event_id),
                 LOG_S("kafka_error", rd_kafka_err2name(err)));
        http_request_resume(req);
    }
    res = HTTP_SUSPENDED;

out:
    if (value != stackbuf)
        free(value);
    json_decref(ce);
    json_decref(ev.data);
    json_decref(pb);
    json_decref(body);
    return res;
}

/* ---- operational routes ---- */

static enum http_result ingest_healthz(struct http_request *req, void *arg)
{
    (void)arg;
    http_respond(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
    return HTTP_HANDLED;
}

static enum http_result ingest_readyz(struct http_request *req, void *arg)
{
    struct ingest_app *app = arg;
    char err[256];
    if (atomic_load(&app->stopping) || kafka_producer_fatal(app->producer, err, sizeof(err)) ||
        !kafka_producer_ready(app->producer)) {
        http_respond(req, 503, "application/json", "{\"status\":\"unavailable\"}", 24);
        return HTTP_HANDLED;
    }
    http_respond(req, 200, "application/json", "{\"status\":\"ready\"}", 18);
    return HTTP_HANDLED;
}

static enum http_result ingest_metrics(struct http_request *req, void *arg)
{
    struct ingest_app *app = arg;
    size_t len;
    char *text;

    metrics_set(app->m_waiting, (double)kafka_producer_waiting(app->producer));
    metrics_set(app->m_dedup_size, (double)ingest_dedup_size(app->dedup));
    text = metrics_render(app->metrics, &len);
    if (!text)
        return HTTP_FAIL;
    http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return HTTP_HANDLED;
}

static void ingest_on_complete(struct http_request *req, void *arg)
{
    struct ingest_app *app = arg;
    char status[8];
    const char *route = http_request_route(req);
    int st = http_request_status(req);

    if (st)
        snprintf(status, sizeof(status), "%d", st);
    else
        snprintf(status, sizeof(status), "aborted");
    metrics_inc(metrics_series2(app->m_requests, route, status));
    metrics_observe(metrics_series1(app->m_duration, route),
                    (double)http_request_elapsed_us(req) / 1e6);
    log_debug("request", LOG_S("method", http_request_method(req)), LOG_S("route", route),
              LOG_I("http_status", st), LOG_I("duration_ms", http_request_elapsed_us(req) / 1000));
}

static const struct http_route ingest_routes[] = {
    {"POST", "/v1/canvas/messages", ingest_post, 1, "/v1/canvas/messages"},
    {"POST", "/v1/patient/replies", ingest_post, 1, "/v1/patient/replies"},
    {"POST", "/v1/patient/questionnaire-responses", ingest_post, 1,
     "/v1/patient/questionnaire-responses"},
    {"GET", "/healthz", ingest_healthz, 0, "/healthz"},
    {"GET", "/readyz", ingest_readyz, 0, "/readyz"},
    {"GET", "/metrics", ingest_metrics, 0, "/metrics"},
};

static void ingest_metrics_init(struct ingest_app *app)
{
    static const char *const route_status[] = {"route", "status", NULL};
    static const char *const route[] = {"route", NULL};
    static const char *const topic[] = {"topic", NULL};
    struct metrics_registry *m = metrics_registry_new();

    app->metrics = m;
    app->m_requests =
        metrics_family_new(m, METRICS_COUNTER, "pm_ingest_requests_total",
                           "HTTP requests by route and answered status", route_status, NULL, 0);
    app->m_duration = metrics_family_new(
        m, METRICS_HISTOGRAM, "pm_ingest_request_duration_seconds",
        "time from the first byte of a request to its answer, Kafka acknowledgement included",
        route, metrics_duration_buckets, metrics_duration_nbuckets);
    app->m_events = metrics_family_new(m, METRICS_COUNTER, "pm_ingest_events_produced_total",
                                       "events acknowledged by Kafka", topic, NULL, 0);
    app->m_duplicates = metrics_series0(
        metrics_family_new(m, METRICS_COUNTER, "pm_ingest_duplicates_total",
                           "requests answered from the duplicate table", NULL, NULL, 0));
    app->m_ack_timeouts = metrics_series0(metrics_family_new(
        m, METRICS_COUNTER, "pm_ingest_ack_timeouts_total",
        "events Kafka did not acknowledge within the ack timeout", NULL, NULL, 0));
    app->m_waiting = metrics_series0(
        metrics_family_new(m, METRICS_GAUGE, "pm_ingest_kafka_waiting",
                           "events handed to Kafka and not yet acknowledged", NULL, NULL, 0));
    app->m_dedup_size = metrics_series0(
        metrics_family_new(m, METRICS_GAUGE, "pm_ingest_dedup_entries",
                           "event ids remembered for duplicate detection", NULL, NULL, 0));
    for (size_t i = 0; i < sizeof(ingest_routes) / sizeof(ingest_routes[0]); i++)
        metrics_series1(app->m_duration, ingest_routes[i].name);
}

struct ingest_app *ingest_app_start(const struct ingest_config *cfg, char *errstr, size_t errlen)
{
    struct ingest_app *app = calloc(1, sizeof(*app));
    struct http_server_options o = {0};
    rd_kafka_conf_t *conf;

    if (!app) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    app->cfg = cfg;
    atomic_init(&app->stopping, 0);
    ingest_metrics_init(app);
    app->dedup = ingest_dedup_new(cfg->dedup_capacity, cfg->dedup_ttl_s);
    if (!app->dedup) {
        snprintf(errstr, errlen, "out of memory");
        goto fail;
    }

    conf = kafka_conf_build(&cfg->kafka, errstr, errlen);
    if (!conf)
        goto fail;
    /* Bounded memory: when this much waits for Kafka, new requests get 503 (backpressure). */
    if (kafka_conf_set(conf, "queue.buffering.max.kbytes", "32768", errstr, errlen) ||
        kafka_conf_set(conf, "queue.buffering.max.messages", "100000", errstr, errlen)) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    {
        char v[32];
        size_t vl = sizeof(v);
        app->max_record_bytes = 1000000;
        if (rd_kafka_conf_get(conf, "message.max.bytes", v, &vl) == RD_KAFKA_CONF_OK)
            app->max_record_bytes = (size_t)strtoull(v, NULL, 10);
    }
    app->producer = kafka_producer_new(conf, cfg->ack_timeout_ms, errstr, errlen);
    conf = NULL; /* owned by the producer now */
    if (!app->producer)
        goto fail;

    o.host = cfg->listen_host;
    o.port = cfg->listen_port;
    o.max_body_bytes = cfg->max_body_bytes;
    o.conn_timeout_s = cfg->connection_timeout_s;
    o.conn_limit = cfg->max_connections;
    o.threads = cfg->threads;
    o.routes = ingest_routes;
    o.nroutes = sizeof(ingest_routes) / sizeof(ingest_routes[0]);
    o.app = app;
    o.on_headers = ingest_on_headers;
    o.on_complete = ingest_on_complete;
    app->http = http_server_start(&o, errstr, errlen);
    if (!app->http)
        goto fail;
    return app;

fail:
    if (app->producer)
        kafka_producer_destroy(app->producer, 0);
    ingest_dedup_free(app->dedup);
    metrics_registry_free(app->metrics);
    free(app);
    return NULL;
}

unsigned ingest_app_port(const struct ingest_app *app)
{
    return http_server_port(app->http);
}

int ingest_app_fatal(struct ingest_app *app, char *errstr, size_t errlen)
{
    return kafka_producer_fatal(app->producer, errstr, errlen);
}

int ingest_app_stop(struct ingest_app *app)
{
    int rc = 0;
    long waited_ms = 0, limit_ms = app->cfg->ack_timeout_ms + 5000L;

    /* New requests on open connections get 503 "shutting down"; new connections are refused. */
    atomic_store(&app->stopping, 1);
    http_server_quiesce(app->http);

    /* Every request in progress gets its final answer: its delivery report, or its ack deadline
     * (the producer's poll thread keeps serving both), and the answer leaves before the sockets
     * close. No request can stay suspended past the ack deadline, so after this loop none is. */
    while (http_server_active(app->http) > 0 && waited_ms < limit_ms) {
        usleep(10000);
        waited_ms += 10;
    }
    if (http_server_active(app->http) > 0)
        rc = -1;
    http_server_stop(app->http);
    kafka_producer_destroy(app->producer, 1000);
    ingest_dedup_free(app->dedup);
    metrics_registry_free(app->metrics);
    free(app);
    return rc;
}
