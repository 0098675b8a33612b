/* pm-bench-guide: the deliver workload handled as Canvas's guide protocol does it (baseline). */

/*
 * Deliberately simple, as the baseline must be: one message at a time, and for each one
 *
 *     POST /auth/token/                      a new OAuth token (client credentials)
 *     GET  /fhir/Communication/<id>          with that token
 *     POST /auth/token/                      another new token
 *     GET  /fhir/Patient/<patient id>        with that one
 *     POST <webhook>                         patient.message.v1, Standard Webhooks signed
 *
 * which is what the guide's example integration does for every notification. The message is
 * checked and the webhook body built with pm-deliver's own functions (deliver_message_check,
 * deliver_html_to_text, deliver_webhook_body), so the clinic receives exactly what pm-deliver
 * would send and the comparison is about the protocol, not the payload.
 *
 * Fair to the baseline: one libcurl easy handle is reused, so every call after the first goes
 * over the same kept-alive connection (no TCP handshake per call, which a naive script would
 * pay), and the events are read from Kafka before the clock starts (no Kafka time counted).
 *
 * The events are read from --topic with assign() (no consumer group, nothing committed), every
 * partition from its beginning, in the order the partitions deliver them; -n takes the first N.
 */
#include "cloudevent.h"
#include "deliver.h"
#include "fhir_ref.h"
#include "kafka_conf.h"
#include "log.h"
#include "webhook_sig.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#define GUIDE_HTTP_MS  15000L
#define GUIDE_READ_MS  60000 /* reading the events from Kafka */
#define GUIDE_BODY_MAX (4u * 1024 * 1024)

struct guide_opts {
    const char *sandbox; /* base URL: token at /auth/token/, FHIR at /fhir, webhook at /webhook */
    const char *topic;
    unsigned long limit; /* 0 = every event on the topic */
};

struct guide_event {
    char comm_id[65];
    char patient_id[65];
};

/* Time spent per step, summed over the run. */
struct guide_times {
    double token, fhir, webhook, local;
    unsigned long tokens, fhir_calls, webhooks, errors;
};

/* One reused easy handle and the credentials. */
struct guide_http {
    CURL *easy;
    char *body;
    size_t len, cap;
    char token_url[512], fhir_url[512], webhook_url[512];
    char *token_form; /* grant_type=client_credentials&client_id=..&client_secret=.. */
    struct webhook_key key;
};

static double guide_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t guide_on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct guide_http *h = userp;
    size_t n = size * nmemb;
    if (h->len + n + 1 > GUIDE_BODY_MAX)
        return 0;
    if (h->len + n + 1 > h->cap) {
        size_t ncap = h->cap ? h->cap : 8192;
        char *nb;
        while (ncap < h->len + n + 1)
            ncap *= 2;
        nb = realloc(h->body, ncap);
        if (!nb)
            return 0;
        h->body = nb;
        h->cap = ncap;
    }
    memcpy(h->body + h->len, data, n);
    h->len += n;
    h->body[h->len] = '\0';
    return n;
}

/* One exchange on the reused handle. @returns the HTTP status, 0 on a transport failure. */
static long guide_call(struct guide_http *h, const char *method, const char *url,
                       struct curl_slist *headers, const char *body)
{
    long status = 0;

    h->len = 0;
    if (h->body)
        h->body[0] = '\0';
    curl_easy_reset(h->easy);
    curl_easy_setopt(h->easy, CURLOPT_URL, url);
    curl_easy_setopt(h->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->easy, CURLOPT_TIMEOUT_MS, GUIDE_HTTP_MS);
    curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, guide_on_body);
    curl_easy_setopt(h->easy, CURLOPT_WRITEDATA, h);
    if (!strcmp(method, "POST")) {
        curl_easy_setopt(h->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
        curl_easy_setopt(h->easy, CURLOPT_POSTFIELDS, body);
    }
    if (curl_easy_perform(h->easy) == CURLE_OK)
        curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* A new token, as the guide asks for before every FHIR call. @returns 0 / -1. */
static int guide_token(struct guide_http *h, char *out, size_t outlen, struct guide_times *t)
{
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: "
                                                      "application/x-www-form-urlencoded");
    double t0 = guide_now_s();
    long status = guide_call(h, "POST", h->token_url, hdrs, h->token_form);
    json_t *j = status == 200 ? json_loadb(h->body, h->len, 0, NULL) : NULL;
    const char *tok = json_string_value(json_object_get(j, "access_token"));
    int rc = -1;

    t->token += guide_now_s() - t0;
    t->tokens++;
    if (tok && strlen(tok) < outlen) {
        snprintf(out, outlen, "%s", tok);
        rc = 0;
    }
    json_decref(j);
    curl_slist_free_all(hdrs);
    return rc;
}

/* Token, then GET <fhir>/<type>/<id>. @returns the resource (new reference) or NULL. */
static json_t *guide_read(struct guide_http *h, const char *type, const char *id,
                          struct guide_times *t)
{
    char token[256], auth[300], url[700];
    struct curl_slist *hdrs = NULL;
    json_t *res = NULL;
    double t0;
    long status;

    if (guide_token(h, token, sizeof(token), t) != 0)
        return NULL;
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    snprintf(url, sizeof(url), "%s/%s/%s", h->fhir_url, type, id);
    hdrs = curl_slist_append(hdrs, auth);
    hdrs = curl_slist_append(hdrs, "Accept: application/fhir+json");
    t0 = guide_now_s();
    status = guide_call(h, "GET", url, hdrs, NULL);
    t->fhir += guide_now_s() - t0;
    t->fhir_calls++;
    if (status == 200)
        res = json_loadb(h->body, h->len, 0, NULL);
    curl_slist_free_all(hdrs);
    return res;
}

/* One message, the guide's way. @returns 0 when the webhook accepted it (or it was skipped). */
static int guide_handle(struct guide_http *h, const struct guide_event *ev, struct guide_times *t)
{
    json_t *comm = NULL, *patient = NULL;
    struct deliver_message msg;
    const char *reason = NULL;
    char *text = NULL, *s = NULL;
    char sig[128], h_id[128], h_ts[64], h_sig[160];
    struct curl_slist *hdrs = NULL;
    long long ts;
    double t0;
    long status;
    int rc = -1;

    comm = guide_read(h, "Communication", ev->comm_id, t);
    if (!comm)
        goto out;
    patient = guide_read(h, "Patient", ev->patient_id, t);
    if (!patient)
        goto out;

    t0 = guide_now_s();
    if (deliver_message_check(comm, ev->patient_id, &msg, &reason, &text) != 0) {
        rc = 0; /* skipped: nothing to send (the benchmark's data has none) */
        goto out;
    }
    s = text ? deliver_webhook_body(&msg, text, NULL, 0, NULL) : NULL;
    ts = (long long)time(NULL);
    if (!s ||
        webhook_sig_sign(&h->key, msg.communication_id, ts, s, strlen(s), sig, sizeof(sig)) != 0)
        goto out;
    snprintf(h_id, sizeof(h_id), "webhook-id: %s", msg.communication_id);
    snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %lld", ts);
    snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", sig);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, h_id);
    hdrs = curl_slist_append(hdrs, h_ts);
    hdrs = curl_slist_append(hdrs, h_sig);
    t->local += guide_now_s() - t0;

    t0 = guide_now_s();
    status = guide_call(h, "POST", h->webhook_url, hdrs, s);
    t->webhook += guide_now_s() - t0;
    t->webhooks++;
    rc = status / 100 == 2 ? 0 : -1;
out:
    if (rc != 0)
        t->errors++;
    curl_slist_free_all(hdrs);
    free(s);
    free(text);
    json_decref(patient);
    json_decref(comm);
    return rc;
}

/* ---- the events ---- */

/* Reads up to @p limit (0 = all) events from every partition of @p topic. @returns the count
 * stored in *@p out (malloc'd), or -1 with @p err filled. */
static long guide_read_events(const char *topic, unsigned long limit, struct guide_event **out,
                              char *err, size_t errlen)
{
    struct kafka_settings ks;
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    const struct rd_kafka_metadata *md = NULL;
    struct guide_event *evs = NULL;
    size_t n = 0, cap = 0;
    int eofs = 0, nparts = 0;
    long rc = -1;
    double deadline;

    kafka_settings_from_env(&ks);
    conf = kafka_conf_build(&ks, err, errlen);
    if (!conf)
        return -1;
    if (kafka_conf_set(conf, "group.id", "pm-bench-guide", err, errlen) ||
        kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) ||
        kafka_conf_set(conf, "enable.partition.eof", "true", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    conf = NULL; /* owned by rk now */
    rd_kafka_poll_set_consumer(rk);
    {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        if (!e && (md->topic_cnt != 1 || md->topics[0].err))
            e = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
        if (e) {
            snprintf(err, errlen, "metadata of %s: %s", topic, rd_kafka_err2str(e));
            goto out;
        }
    }
    nparts = md->topics[0].partition_cnt;
    parts = rd_kafka_topic_partition_list_new(nparts);
    for (int i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(parts, topic, md->topics[0].partitions[i].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "assign failed");
        goto out;
    }
    deadline = guide_now_s() + GUIDE_READ_MS / 1000.0;
    while (eofs < nparts && (!limit || n < limit)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        struct cloudevent ce;
        char ce_err[200];
        const char *comm, *patient;

        if (guide_now_s() > deadline) {
            snprintf(err, errlen, "reading %s took too long (%zu events read)", topic, n);
            goto out;
        }
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eofs++;
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            snprintf(err, errlen, "consume: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            goto out;
        }
        if (cloudevent_parse(m->payload, m->len, &ce, ce_err, sizeof(ce_err)) != 0) {
            snprintf(err, errlen, "offset %lld: %s", (long long)m->offset, ce_err);
            rd_kafka_message_destroy(m);
            goto out;
        }
        comm = json_string_value(json_object_get(ce.data, "communication_id"));
        patient = json_string_value(json_object_get(ce.data, "patient_id"));
        if (fhir_id_valid(comm) && fhir_id_valid(patient)) {
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 1024;
                struct guide_event *nv = realloc(evs, ncap * sizeof(*nv));
                if (!nv) {
                    cloudevent_clear(&ce);
                    rd_kafka_message_destroy(m);
                    snprintf(err, errlen, "out of memory");
                    goto out;
                }
                evs = nv;
                cap = ncap;
            }
            snprintf(evs[n].comm_id, sizeof(evs[n].comm_id), "%s", comm);
            snprintf(evs[n].patient_id, sizeof(evs[n].patient_id), "%s", patient);
            n++;
        }
        cloudevent_clear(&ce);
        rd_kafka_message_destroy(m);
    }
    *out = evs;
    evs = NULL;
    rc = (long)n;
out:
    free(evs);
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

/* ---- command line ---- */

static void guide_usage(FILE *f)
{
    fprintf(f, "Usage: pm-bench-guide --sandbox URL [options]\n"
               "The canvas.message.v1 events on --topic handled as Canvas's guide protocol does:\n"
               "one at a time; token, GET Communication, token, GET Patient, webhook POST.\n\n"
               "  -s, --sandbox URL   pm-sandbox base URL (token /auth/token/, FHIR /fhir,\n"
               "                      webhook /webhook)\n"
               "  -n, --limit N       handle only the first N events (default: all)\n"
               "  -t, --topic T       (default pm.canvas.messages)\n"
               "  -h, --help\n\n"
               "Environment: PM_KAFKA_BROKERS, PM_KAFKA_CONFIG_FILE, PM_CANVAS_CLIENT_ID,\n"
               "PM_CANVAS_CLIENT_SECRET, PM_WEBHOOK_SECRET (whsec_...).\n"
               "The last stdout line is machine-readable: RESULT key=value ...\n");
}

static int guide_parse_args(int argc, char **argv, struct guide_opts *o)
{
    static const struct option longs[] = {
        {"sandbox", required_argument, NULL, 's'},
        {"limit", required_argument, NULL, 'n'},
        {"topic", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *end;
    int ch;

    memset(o, 0, sizeof(*o));
    o->topic = "pm.canvas.messages";
    while ((ch = getopt_long(argc, argv, "s:n:t:h", longs, NULL)) != -1) {
        switch (ch) {
        case 's':
            o->sandbox = optarg;
            break;
        case 'n':
            errno = 0;
            o->limit = strtoul(optarg, &end, 10);
            if (errno || end == optarg || *end)
                goto bad;
            break;
        case 't':
            o->topic = optarg;
            break;
        case 'h':
            guide_usage(stdout);
            exit(0);
        default:
            guide_usage(stderr);
            return -1;
        }
    }
    if (optind != argc || !o->sandbox || strncmp(o->sandbox, "http", 4) != 0)
        goto bad;
    return 0;
bad:
    fprintf(stderr, "pm-bench-guide: bad or missing option (see --help)\n");
    return -1;
}

/* The form body of a client-credentials token request (malloc'd), or NULL. */
static char *guide_token_form(CURL *easy, const char *id, const char *secret)
{
    char *eid = curl_easy_escape(easy, id, 0), *esec = curl_easy_escape(easy, secret, 0);
    char *form = NULL;
    if (eid && esec) {
        size_t n = strlen(eid) + strlen(esec) + 64;
        form = malloc(n);
        if (form)
            snprintf(form, n, "grant_type=client_credentials&client_id=%s&client_secret=%s", eid,
                     esec);
    }
    curl_free(eid);
    curl_free(esec);
    return form;
}

int main(int argc, char **argv)
{
    struct guide_opts o;
    struct guide_http h;
    struct guide_times t;
    struct guide_event *evs = NULL;
    const char *client_id = getenv("PM_CANVAS_CLIENT_ID");
    const char *client_secret = getenv("PM_CANVAS_CLIENT_SECRET");
    const char *wh_secret = getenv("PM_WEBHOOK_SECRET");
    char err[512];
    long n;
    double t0, elapsed;
    int rc = 1;

    if (guide_parse_args(argc, argv, &o) != 0)
        return 2;
    log_init("pm-bench-guide", LOG_WARN);
    memset(&h, 0, sizeof(h));
    memset(&t, 0, sizeof(t));
    if (!client_id || !client_secret || !wh_secret) {
        fprintf(stderr, "pm-bench-guide: PM_CANVAS_CLIENT_ID, PM_CANVAS_CLIENT_SECRET and "
                        "PM_WEBHOOK_SECRET are required\n");
        return 2;
    }
    if (webhook_key_decode(wh_secret, &h.key, err, sizeof(err)) != 0) {
        fprintf(stderr, "pm-bench-guide: PM_WEBHOOK_SECRET: %s\n", err);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    h.easy = curl_easy_init();
    h.token_form = h.easy ? guide_token_form(h.easy, client_id, client_secret) : NULL;
    if (!h.token_form) {
        fprintf(stderr, "pm-bench-guide: out of memory\n");
        goto out;
    }
    snprintf(h.token_url, sizeof(h.token_url), "%s/auth/token/", o.sandbox);
    snprintf(h.fhir_url, sizeof(h.fhir_url), "%s/fhir", o.sandbox);
    snprintf(h.webhook_url, sizeof(h.webhook_url), "%s/webhook", o.sandbox);

    n = guide_read_events(o.topic, o.limit, &evs, err, sizeof(err));
    if (n < 0) {
        fprintf(stderr, "pm-bench-guide: %s\n", err);
        goto out;
    }
    t0 = guide_now_s();
    for (long i = 0; i < n; i++)
        guide_handle(&h, &evs[i], &t);
    elapsed = guide_now_s() - t0;

    printf("RESULT messages=%ld elapsed_s=%.3f msg_per_s=%.1f ms_per_msg=%.3f token_requests=%lu "
           "fhir_reads=%lu webhooks=%lu errors=%lu token_ms=%.3f fhir_ms=%.3f webhook_ms=%.3f "
           "local_ms=%.3f\n",
           n, elapsed, elapsed > 0 ? (double)n / elapsed : 0.0,
           n ? elapsed * 1000 / (double)n : 0.0, t.tokens, t.fhir_calls, t.webhooks, t.errors,
           t.tokens ? t.token * 1000 / (double)t.tokens : 0.0,
           t.fhir_calls ? t.fhir * 1000 / (double)t.fhir_calls : 0.0,
           t.webhooks ? t.webhook * 1000 / (double)t.webhooks : 0.0,
           n ? t.local * 1000 / (double)n : 0.0);
    rc = t.errors ? 1 : 0;
out:
    free(evs);
    free(h.token_form);
    free(h.body);
    if (h.easy)
        curl_easy_cleanup(h.easy);
    curl_global_cleanup();
    return rc;
}
