/* Integration-test harness: read a topic with assign(), produce one record, topic metadata. */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

/* Silent unless PM_TEST_KAFKA_LOG=1: a broker taken down on purpose makes librdkafka log every
 * reconnect attempt, which would bury the test's own output. */
static void harness_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)level;
    fprintf(stderr, "harness: librdkafka %s: %s: %s\n", rd_kafka_name(rk), fac, buf);
}

/* A configuration with the bootstrap list and the harness's logging. @returns NULL with a reason
 * in @p errstr. */
static rd_kafka_conf_t *harness_kafka_conf(const char *bootstrap, char *errstr, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *verbose = getenv("PM_TEST_KAFKA_LOG");

    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, errlen) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "pm-test-harness", errstr, errlen) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (verbose && !strcmp(verbose, "1"))
        rd_kafka_conf_set_log_cb(conf, harness_kafka_log);
    else if (rd_kafka_conf_set(conf, "log_level", "0", errstr, errlen) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

/* Partition count of @p topic from a full (all topics) metadata request: asking for one topic
 * by name could auto-create it. @returns count, 0 when absent, -1 when no metadata came. */
static int harness_kafka_meta_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms,
                                         char *errstr, size_t errlen)
{
    long long deadline = harness_now_ms() + timeout_ms;

    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        long long left = deadline - harness_now_ms();
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md,
                                                    left < 100    ? 100
                                                    : left > 2000 ? 2000
                                                                  : (int)left);
        if (!err) {
            int cnt = 0;
            for (int i = 0; i < md->topic_cnt; i++)
                if (!strcmp(md->topics[i].topic, topic) && !md->topics[i].err)
                    cnt = md->topics[i].partition_cnt;
            rd_kafka_metadata_destroy(md);
            return cnt;
        }
        snprintf(errstr, errlen, "metadata: %s", rd_kafka_err2str(err));
        if (harness_now_ms() >= deadline)
            return -1;
        harness_sleep_ms(100);
    }
}

int harness_kafka_partition_count(const char *bootstrap, const char *topic, int timeout_ms,
                                  char *errstr, size_t errlen)
{
    rd_kafka_conf_t *conf = harness_kafka_conf(bootstrap, errstr, errlen);
    rd_kafka_t *rk = NULL;
    int cnt = -1;

    if (!conf)
        goto out;
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errlen);
    if (!rk)
        goto out;
    conf = NULL; /* owned by rk now */
    cnt = harness_kafka_meta_partitions(rk, topic, timeout_ms, errstr, errlen);
out:
    if (rk)
        rd_kafka_destroy(rk);
    if (conf)
        rd_kafka_conf_destroy(conf);
    return cnt;
}

/* NUL-terminated copy of @p len bytes; NULL for NULL input (or out of memory). */
static char *harness_kafka_dup(const void *data, size_t len)
{
    char *s;
    if (!data)
        return NULL;
    s = malloc(len + 1);
    if (!s)
        return NULL;
    memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

/* Appends a copy of @p m to @p out. @returns 0, or -1 when out of memory. */
static int harness_kafka_record_add(struct harness_kafka_records *out, const rd_kafka_message_t *m)
{
    struct harness_kafka_record *nv = realloc(out->v, (out->n + 1) * sizeof(*nv));
    struct harness_kafka_record *r;
    rd_kafka_headers_t *hdrs = NULL;

    if (!nv)
        return -1;
    out->v = nv;
    r = &nv[out->n];
    memset(r, 0, sizeof(*r));
    out->n++; /* counted now so harness_kafka_records_free frees a half-copied record too */
    r->topic = harness_kafka_dup(rd_kafka_topic_name(m->rkt), strlen(rd_kafka_topic_name(m->rkt)));
    r->partition = m->partition;
    r->offset = m->offset;
    r->timestamp_ms = rd_kafka_message_timestamp(m, NULL);
    r->key = harness_kafka_dup(m->key, m->key_len);
    r->key_len = m->key_len;
    r->value = harness_kafka_dup(m->payload, m->len);
    r->value_len = m->len;
    if (!r->topic || (m->key && !r->key) || (m->payload && !r->value))
        return -1;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        size_t cnt = rd_kafka_header_cnt(hdrs);
        r->headers = calloc(cnt ? cnt : 1, sizeof(*r->headers));
        if (!r->headers)
            return -1;
        for (size_t i = 0; i < cnt; i++) {
            const char *name;
            const void *val;
            size_t size;
            if (rd_kafka_header_get_all(hdrs, i, &name, &val, &size))
                break;
            r->headers[i].name = harness_kafka_dup(name, strlen(name));
            r->headers[i].value = harness_kafka_dup(val, size);
            r->headers[i].value_len = size;
            r->nheaders++;
            if (!r->headers[i].name || (val && !r->headers[i].value))
                return -1;
        }
    }
    return 0;
}

void harness_kafka_records_free(struct harness_kafka_records *recs)
{
    for (size_t i = 0; i < recs->n; i++) {
        struct harness_kafka_record *r = &recs->v[i];
        for (size_t k = 0; k < r->nheaders; k++) {
            free(r->headers[k].name);
            free(r->headers[k].value);
        }
        free(r->headers);
        free(r->topic);
        free(r->key);
        free(r->value);
    }
    free(recs->v);
    recs->v = NULL;
    recs->n = 0;
}

const char *harness_kafka_header(const struct harness_kafka_record *rec, const char *name)
{
    for (size_t i = 0; i < rec->nheaders; i++)
        if (!strcmp(rec->headers[i].name, name))
            return rec->headers[i].value;
    return NULL;
}

int harness_kafka_read(const char *bootstrap, const char *topic, size_t want, int timeout_ms,
                       struct harness_kafka_records *out, char *errstr, size_t errlen)
{
    long long deadline = harness_now_ms() + timeout_ms;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    char *at_eof = NULL;
    rd_kafka_resp_err_t err;
    char group[64];
    int nparts = 0, neof = 0, done = 0, rc = -1;

    memset(out, 0, sizeof(*out));
    if (errlen)
        errstr[0] = '\0';
    conf = harness_kafka_conf(bootstrap, errstr, errlen);
    if (!conf)
        goto out;
    /* assign() needs a group.id to exist, but never joins the group: no ~3 s join in the mock,
     * and with explicit start offsets and no commits the group's offsets are never used. EOF
     * events tell "read what the topic holds now" when want is 0. */
    snprintf(group, sizeof(group), "pm-test-harness-%ld", (long)getpid());
    if (rd_kafka_conf_set(conf, "group.id", group, errstr, errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.partition.eof", want ? "false" : "true", errstr, errlen) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errlen) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", "50", errstr, errlen) != RD_KAFKA_CONF_OK)
        goto out;
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errlen);
    if (!rk)
        goto out;
    conf = NULL; /* owned by rk now */
    rd_kafka_poll_set_consumer(rk);

    /* The topic may not exist yet (a service creates it by producing): wait for it. */
    while (nparts <= 0) {
        long long left = deadline - harness_now_ms();
        nparts = harness_kafka_meta_partitions(rk, topic, left > 0 ? (int)left : 0, errstr, errlen);
        if (nparts > 0)
            break;
        if (harness_now_ms() >= deadline) {
            if (nparts == 0)
                snprintf(errstr, errlen, "topic %s does not exist", topic);
            goto out;
        }
        harness_sleep_ms(100);
    }
    parts = rd_kafka_topic_partition_list_new(nparts);
    at_eof = calloc((size_t)nparts, 1);
    if (!parts || !at_eof) {
        snprintf(errstr, errlen, "out of memory");
        goto out;
    }
    for (int i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(parts, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    err = rd_kafka_assign(rk, parts);
    if (err) {
        snprintf(errstr, errlen, "assign: %s", rd_kafka_err2str(err));
        goto out;
    }

    while (!done && harness_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < nparts && !at_eof[m->partition]) {
                at_eof[m->partition] = 1;
                done = ++neof == nparts;
            }
        } else if (m->err) {
            /* Transient (a broker down on purpose, a leader change): note it, keep reading. */
            snprintf(errstr, errlen, "consume: %s: %s", rd_kafka_err2name(m->err),
                     rd_kafka_message_errstr(m));
        } else {
            if (harness_kafka_record_add(out, m) != 0) {
                snprintf(errstr, errlen, "out of memory");
                rd_kafka_message_destroy(m);
                goto out;
            }
            done = want > 0 && out->n >= want;
        }
        rd_kafka_message_destroy(m);
    }
    if (done) {
        rc = 0;
    } else {
        size_t len = strlen(errstr);
        snprintf(errstr + len, errlen - len, "%stimed out after %d ms with %zu record(s)",
                 len ? "; " : "", timeout_ms, out->n);
    }
out:
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    free(at_eof);
    return rc;
}

/* Delivery report for one produced record; filled by the dr_msg_cb. */
struct harness_kafka_dr {
    int done;
    rd_kafka_resp_err_t err;
    int32_t partition;
    int64_t offset;
};

static void harness_kafka_on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct harness_kafka_dr *dr = m->_private; /* the record's opaque */
    (void)rk;
    (void)opaque;
    dr->done = 1;
    dr->err = m->err;
    dr->partition = m->partition;
    dr->offset = m->offset;
}

int harness_kafka_produce(const char *bootstrap, const struct harness_kafka_produce *req,
                          int32_t *partition, int64_t *offset, char *errstr, size_t errlen)
{
    struct harness_kafka_dr dr = {0, RD_KAFKA_RESP_ERR_NO_ERROR, -1, -1};
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t err;
    char tmo[32], val[32];
    size_t vlen = sizeof(val);
    long long deadline;
    long msg_timeout;
    int rc = -1;

    if (errlen)
        errstr[0] = '\0';
    conf = harness_kafka_conf(bootstrap, errstr, errlen);
    if (!conf)
        goto out;
    snprintf(tmo, sizeof(tmo), "%d", req->timeout_ms > 0 ? req->timeout_ms : 10000);
    if (rd_kafka_conf_set(conf, "message.timeout.ms", tmo, errstr, errlen) != RD_KAFKA_CONF_OK)
        goto out;
    for (size_t i = 0; req->conf && req->conf[i] && req->conf[i + 1]; i += 2)
        if (rd_kafka_conf_set(conf, req->conf[i], req->conf[i + 1], errstr, errlen) !=
            RD_KAFKA_CONF_OK)
            goto out;
    /* The deadline follows the effective message.timeout.ms (req->conf may have set it). */
    if (rd_kafka_conf_get(conf, "message.timeout.ms", val, &vlen) != RD_KAFKA_CONF_OK)
        goto out;
    errno = 0;
    msg_timeout = strtol(val, NULL, 10);
    if (errno || msg_timeout <= 0)
        msg_timeout = 300000;
    rd_kafka_conf_set_dr_msg_cb(conf, harness_kafka_on_dr);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errlen);
    if (!rk)
        goto out;
    conf = NULL; /* owned by rk now */

    hdrs = rd_kafka_headers_new(8);
    for (size_t i = 0; req->headers && req->headers[i] && req->headers[i + 1]; i += 2)
        rd_kafka_header_add(hdrs, req->headers[i], -1, req->headers[i + 1], -1);
    err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(req->topic),
        RD_KAFKA_V_PARTITION(req->has_partition ? req->partition : RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_KEY(req->key, req->key ? strlen(req->key) : 0),
        RD_KAFKA_V_VALUE((void *)req->value, req->value ? req->value_len : 0),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(&dr),
        RD_KAFKA_V_END);
    if (err) {
        snprintf(errstr, errlen, "produce: %s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
        goto out;
    }
    hdrs = NULL; /* owned by the record now */

    /* The delivery report is the only proof; it comes by message.timeout.ms at the latest. */
    deadline = harness_now_ms() + msg_timeout + 10000;
    while (!dr.done && harness_now_ms() < deadline)
        rd_kafka_poll(rk, 100);
    if (!dr.done) {
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(rk, 0);
        snprintf(errstr, errlen, "no delivery report within %ld ms", msg_timeout + 10000);
        goto out;
    }
    if (dr.err) {
        snprintf(errstr, errlen, "delivery failed: %s: %s", rd_kafka_err2name(dr.err),
                 rd_kafka_err2str(dr.err));
        goto out;
    }
    if (partition)
        *partition = dr.partition;
    if (offset)
        *offset = dr.offset;
    rc = 0;
out:
    if (hdrs)
        rd_kafka_headers_destroy(hdrs);
    if (rk)
        rd_kafka_destroy(rk);
    if (conf)
        rd_kafka_conf_destroy(conf);
    return rc;
}
