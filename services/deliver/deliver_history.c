/* What was delivered before (by earlier runs or other instances): read back from the results
 * topic at start, then followed while pm-deliver runs. */
#include "cloudevent.h"
#include "consumer.h"
#include "deliver.h"
#include "kafka_conf.h"
#include "log.h"
#include "utf8.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

static int64_t history_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t history_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The reader after its first pass: it keeps following the topic, so that what other members
 * of the group deliver from now on is known here too before partitions move. */
struct deliver_history {
    rd_kafka_t *rk;
    pthread_t thread;
    atomic_int stop;
};

/* How long one wait for Kafka may block before the stop flag is looked at again. */
#define HISTORY_STEP_MS 250

static int history_interrupted(const struct deliver_app *app)
{
    return app->interrupted && *app->interrupted;
}

/* The pm-dedup-key header of @p m, NUL-terminated into @p out; 0 when absent or too long. */
static int history_key(const rd_kafka_message_t *m, char *out, size_t outlen)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t n;

    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(h, CONSUMER_HEADER_DEDUP_KEY, &v, &n) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        !v || n == 0 || n >= outlen || memchr(v, '\0', n))
        return 0;
    memcpy(out, v, n);
    out[n] = '\0';
    return 1;
}

/* Learns one result record. @returns 1 when it named something done, else 0. */
static int history_apply(struct deliver_app *app, const rd_kafka_message_t *m, int64_t since_ms)
{
    struct cloudevent ce;
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    char key[1024], err[128];
    const char *kind = NULL, *outcome = NULL, *provider_id = NULL, *event_id = NULL;
    int learned = 0;

    if (tstype != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0 && ts < since_ms)
        return 0;
    if (!history_key(m, key, sizeof(key)))
        return 0; /* not a "delivered" result of this service: nothing to parse */
    {
        /* Known already (this process's own results, read while following): no parse. */
        if (deliver_guard_get(app->delivered, key, NULL, 0) >= 0 ||
            deliver_guard_get(app->replies, key, NULL, 0) >= 0)
            return 0;
    }
    if (cloudevent_parse(m->payload ? m->payload : "", m->len, &ce, err, sizeof(err)) != 0)
        return 0;
    if (strcmp(ce.type, CE_TYPE_DELIVERY_RESULT) == 0 &&
        json_unpack(ce.data, "{s:s, s:s, s:s, s?s}", "source_event_id", &event_id, "kind", &kind,
                    "outcome", &outcome, "provider_id", &provider_id) == 0 &&
        strcmp(outcome, "delivered") == 0) {
        if (strcmp(kind, "message") == 0) {
            deliver_delivered_put(app, key, event_id, provider_id);
            learned = 1;
        } else if ((strcmp(kind, "reply") == 0 || strcmp(kind, "questionnaire_response") == 0) &&
                   provider_id && *provider_id) {
            if (deliver_guard_put(app->replies, key, provider_id, strlen(provider_id)) == 0)
                learned = 1;
        }
    }
    cloudevent_clear(&ce);
    return learned;
}

/* Records read from the end of a partition whose broker cannot tell where the window starts. */
#define HISTORY_TAIL_MAX 200000

/* Start offsets: the first record at or after @p since_ms of each partition (Kafka's
 * offsets-for-times). Where the broker answers "none" (which a real broker says when every
 * record is older, and librdkafka's mock cluster says always) or fails, the last
 * HISTORY_TAIL_MAX records; records older than the window are skipped by timestamp. */
static void history_start_offsets(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts,
                                  int64_t since_ms, int timeout_ms)
{
    rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_copy(parts);
    rd_kafka_resp_err_t err;

    for (int i = 0; i < q->cnt; i++)
        q->elems[i].offset = since_ms;
    err = rd_kafka_offsets_for_times(rk, q, timeout_ms);
    for (int i = 0; i < parts->cnt; i++) {
        int64_t off = q->elems[i].offset;
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR || q->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR ||
            off < 0)
            parts->elems[i].offset = RD_KAFKA_OFFSET_TAIL(HISTORY_TAIL_MAX);
        else
            parts->elems[i].offset = off;
    }
    rd_kafka_topic_partition_list_destroy(q);
}

/* Follows the topic after the first pass until deliver_history_stop. */
static void *history_follow(void *arg)
{
    struct deliver_app *app = arg;
    struct deliver_history *hi = app->history;

    prctl(PR_SET_NAME, "pm-history", 0, 0, 0);
    while (!atomic_load(&hi->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(hi->rk, HISTORY_STEP_MS);
        if (!m)
            continue;
        if (!m->err)
            history_apply(app, m, 0);
        else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            log_debug("following delivery results", LOG_S("error", rd_kafka_err2str(m->err)));
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

void deliver_history_stop(struct deliver_app *app)
{
    struct deliver_history *hi = app->history;

    if (!hi)
        return;
    atomic_store(&hi->stop, 1);
    pthread_join(hi->thread, NULL);
    rd_kafka_assign(hi->rk, NULL);
    rd_kafka_consumer_close(hi->rk);
    rd_kafka_destroy(hi->rk);
    free(hi);
    app->history = NULL;
}

/* The value is "<event id>\n<provider id>". A provider id that is not UTF-8 (taken from a
 * provider's header) could not be published again in a result: the channel is then remembered as
 * delivered without saying by whom, so a later event is skipped and the same event too. */
void deliver_delivered_put(struct deliver_app *app, const char *key, const char *event_id,
                           const char *provider_id)
{
    size_t el = strlen(event_id), pl = provider_id ? strlen(provider_id) : 0;
    char *s;

    for (size_t i = 0, n; i < pl; i += n)
        if ((n = utf8_decode((const unsigned char *)provider_id + i, pl - i, NULL)) == 0) {
            deliver_guard_put(app->delivered, key, "", 0);
            return;
        }
    s = malloc(el + pl + 2);
    if (!s)
        return;
    memcpy(s, event_id, el);
    s[el] = '\n';
    memcpy(s + el + 1, provider_id ? provider_id : "", pl);
    s[el + 1 + pl] = '\0';
    deliver_guard_put(app->delivered, key, s, el + 1 + pl);
    free(s);
}

int deliver_delivered_by(const char *seen, const char *event_id, const char **provider_id)
{
    const char *nl = seen ? strrchr(seen, '\n') : NULL;
    size_t el = strlen(event_id);

    *provider_id = NULL;
    if (!nl || (size_t)(nl - seen) != el || memcmp(seen, event_id, el) != 0)
        return 0;
    *provider_id = nl[1] ? nl + 1 : NULL;
    return 1;
}

long deliver_history_start(struct deliver_app *app, char *errstr, size_t errlen)
{
    const struct deliver_config *cfg = app->cfg;
    const char *topic = cfg->topic_deliveries;
    int64_t since_ms = history_now_ms() - (int64_t)cfg->history_hours * 3600 * 1000;
    int64_t started = history_mono_ms(), deadline = started + cfg->history_timeout_ms;
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t err;
    char *at_end = NULL;
    long learned = 0, read = 0;
    int left = 0, rc = -1, assigned = 0;
    char kerr[256];

    if (cfg->history_hours <= 0)
        return 0;
    conf = kafka_conf_build(&cfg->kafka, errstr, errlen);
    if (!conf)
        return -1;
    /* A plain reader: partitions assigned by hand, no group membership, nothing committed. */
    if (kafka_conf_set(conf, "group.id", "pm-deliver-history", errstr, errlen) != 0 ||
        kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errlen) != 0 ||
        kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, errlen) != 0 ||
        kafka_conf_set(conf, "enable.partition.eof", "true", errstr, errlen) != 0 ||
        /* a tail longer than the partition starts at its beginning */
        kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, errlen) != 0 ||
        /* librdkafka pre-fetches up to 64 MiB by default: a few MiB keep up as well here */
        kafka_conf_set(conf, "queued.max.messages.kbytes", "4096", errstr, errlen) != 0 ||
        kafka_conf_set(conf, "client.id", "pm-deliver-history", errstr, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "cannot create a Kafka consumer: %s", kerr);
        return -1;
    }
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    /* In short steps: a SIGTERM while Kafka is away is answered at once. */
    do {
        err = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, HISTORY_STEP_MS) : RD_KAFKA_RESP_ERR__FAIL;
    } while ((err == RD_KAFKA_RESP_ERR__TIMED_OUT || err == RD_KAFKA_RESP_ERR__TRANSPORT) &&
             !history_interrupted(app) && history_mono_ms() < deadline);
    if (history_interrupted(app)) {
        snprintf(errstr, errlen, "interrupted");
        goto out;
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1) {
        snprintf(errstr, errlen, "cannot read the metadata of %s: %s", topic,
                 rd_kafka_err2str(err));
        goto out;
    }
    if (md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
        md->topics[0].partition_cnt == 0) {
        rc = 0; /* nothing was ever delivered */
        goto out;
    }
    if (md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errlen, "cannot read the metadata of %s: %s", topic,
                 rd_kafka_err2str(md->topics[0].err));
        goto out;
    }
    parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(parts, topic, md->topics[0].partitions[i].id);
    history_start_offsets(rk, parts, since_ms, (int)cfg->history_timeout_ms);
    left = parts->cnt;
    at_end = calloc((size_t)(md->topics[0].partition_cnt > 0 ? md->topics[0].partition_cnt : 1), 1);
    if (!at_end) {
        snprintf(errstr, errlen, "out of memory");
        goto out;
    }
    if (left > 0 && (err = rd_kafka_assign(rk, parts)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errlen, "cannot assign %s: %s", topic, rd_kafka_err2str(err));
        goto out;
    }
    assigned = left > 0;
    /* Until every partition reported its end once: records written after that come from this
     * run's own work (or another member's, which the group's offsets already account for). */
    while (left > 0 && history_mono_ms() < deadline && !history_interrupted(app)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, HISTORY_STEP_MS);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            int32_t p = m->partition;
            if (p >= 0 && p < md->topics[0].partition_cnt && !at_end[p]) {
                at_end[p] = 1;
                left--;
            }
        } else if (m->err) {
            log_warn("reading back earlier deliveries", LOG_S("topic", topic),
                     LOG_S("error", rd_kafka_err2str(m->err)));
        } else {
            read++;
            learned += history_apply(app, m, since_ms);
        }
        rd_kafka_message_destroy(m);
    }
    if (left > 0 && history_interrupted(app)) {
        snprintf(errstr, errlen, "interrupted");
        goto out;
    }
    if (left > 0) {
        snprintf(errstr, errlen,
                 "%s not read to its end within PM_DELIVER_HISTORY_TIMEOUT_MS (%ld records read)",
                 topic, read);
        goto out;
    }
    rc = 0;
out:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    free(at_end);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    /* Read to the end or not (timed out): the same reader goes on following the topic. */
    if (assigned && !history_interrupted(app)) {
        struct deliver_history *hi = calloc(1, sizeof(*hi));
        if (hi) {
            hi->rk = rk;
            app->history = hi;
            if (pthread_create(&hi->thread, NULL, history_follow, app) == 0) {
                rk = NULL;
            } else {
                app->history = NULL;
                free(hi);
            }
        }
    }
    if (rk) {
        if (assigned)
            rd_kafka_assign(rk, NULL);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (rc == 0)
        log_info("earlier deliveries read back", LOG_S("topic", topic), LOG_I("count", learned),
                 LOG_I("duration_ms", history_mono_ms() - started));
    return rc == 0 ? learned : -1;
}
