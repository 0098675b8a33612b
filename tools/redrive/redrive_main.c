/* pm-redrive: puts DLQ records back on their source topic, unchanged, once the cause is fixed. */
#include "config.h"
#include "kafka_conf.h"
#include "kafka_producer.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

/*
 * What this tool promises:
 *  - A redriven record is the DLQ record's value, byte for byte, with the same key, produced to
 *    the topic its pm-source-topic header names, by an idempotent acks=all producer with the
 *    murmur2_random partitioner (like pm-ingest, so it lands on the patient's partition). Every
 *    header is kept except pm-* (the DLQ's own): content-type and traceparent travel on.
 *  - Records are moved one at a time, in DLQ order, each only after the previous one's delivery
 *    report: order per patient holds, and after a failure the output says exactly what moved.
 *  - It reads the DLQ with assign() (joining no group) and commits nothing. Kafka cannot
 *    delete records, so they stay on the DLQ: the last redriven offset is printed for the
 *    operator to write down, because running the same range again redrives them again.
 */

#define REDRIVE_PROG       "pm-redrive"
#define REDRIVE_EXIT_FAIL  1 /* Kafka or usage of the environment failed; see stderr */
#define REDRIVE_EXIT_USAGE 2
#define REDRIVE_EXIT_REFUS 3 /* everything selected moved except refused records */
#define REDRIVE_MAX_PARTS  1024

static const char redrive_help[] =
    "pm-redrive SELECTION... [--dry-run] [--allow-any-topic] [--timeout-ms N]\n"
    "\n"
    "Moves records of the dead-letter topic (PM_TOPIC_DLQ) back to the topic they came from, "
    "after\n"
    "the cause is fixed. A record moves unchanged: same key, same value, its headers without the\n"
    "pm-* ones the DLQ added; produced to its pm-source-topic (idempotent, acks=all, murmur2\n"
    "partitioner as pm-ingest), one at a time, each acknowledged before the next.\n"
    "\n"
    "Selection (the range defaults to everything the DLQ holds when pm-redrive starts; moving\n"
    "records needs at least one option below, --all for everything; --dry-run alone lists all):\n"
    "  --partition P        only partition P of the DLQ\n"
    "  --offset O           only the record at offset O (needs --partition)\n"
    "  --from-offset O      first offset to look at, inclusive\n"
    "  --to-offset O        last offset to look at, inclusive\n"
    "  --error-class C      only records whose pm-error-class is C: permanent, exhausted, invalid\n"
    "  --source-topic T     only records whose pm-source-topic is T\n"
    "  --event-id ID        only records whose CloudEvent id is ID\n"
    "  --all                every record in the range\n"
    "Actions:\n"
    "  --dry-run            list what would move (DLQ partition, offset, key, event id, error\n"
    "                       class, source topic; never the value) and produce nothing\n"
    "  --allow-any-topic    also move records whose pm-source-topic is not one of the three input\n"
    "                       topics (by default they are refused; the DLQ itself always is)\n"
    "  --timeout-ms N       give up when Kafka does not answer for N ms (default 30000)\n"
    "\n"
    "Output: one line per selected record on stdout (redriven, would-redrive or refused), then a\n"
    "summary with the last redriven offset of each DLQ partition. Records stay on the DLQ (Kafka\n"
    "cannot delete them): write the offsets down, since running the same range again redrives\n"
    "the records again. pm-deliver drops a repeat only while the process that handled the first\n"
    "copy runs (staff messages by Communication id and channel, replies and check-ins by event\n"
    "id): after a pm-deliver restart a repeated staff message is sent again by SMS and email\n"
    "(the webhook keeps its webhook-id) and a repeated reply or check-in is written to Canvas\n"
    "again.\n"
    "Exit status: 0 done, 1 failure (nothing after the failing record moved), 2 usage, 3 some\n"
    "selected records were refused (the others moved).";

static const struct config_var redrive_vars[] = {
    {"PM_KAFKA_BROKERS", "localhost:9092", 0, "Kafka bootstrap servers"},
    {"PM_KAFKA_CONFIG_FILE", NULL, 0, "librdkafka properties file (key=value lines, as kcat -F)"},
    {"PM_LOG_LEVEL", "info", 0, "error | warn | info | debug (librdkafka's messages on stderr)"},
    {"PM_TOPIC_DLQ", CONFIG_TOPIC_DLQ_DEFAULT, 0, "the dead-letter topic read"},
    {"PM_TOPIC_CANVAS_MESSAGES", CONFIG_TOPIC_MESSAGES_DEFAULT, 0,
     "input topic: records may return here"},
    {"PM_TOPIC_PATIENT_REPLIES", CONFIG_TOPIC_REPLIES_DEFAULT, 0,
     "input topic: records may return here"},
    {"PM_TOPIC_QUESTIONNAIRE_RESPONSES", CONFIG_TOPIC_QUESTIONNAIRES_DEFAULT, 0,
     "input topic: records may return here"},
    {NULL, NULL, 0, NULL},
};

struct redrive_config {
    enum log_level log_level;
    struct kafka_settings kafka;
    const char *dlq;
    const char *inputs[3];
};

/* The command line: what to select and what to do. */
struct redrive_opts {
    int32_t partition; /* -1: every partition */
    int64_t offset;    /* -1: no single record */
    int64_t from, to;  /* inclusive; -1: the oldest kept / the newest at start */
    const char *error_class, *source_topic, *event_id; /* NULL: any */
    int all, dry_run, allow_any_topic;
    long timeout_ms;
};

/* Counters for the summary, and the last redriven offset per DLQ partition (-1: none). */
struct redrive_stats {
    long read, selected, moved, refused;
    int64_t last[REDRIVE_MAX_PARTS];
};

/* One delivery report, waited for by the main thread. */
struct redrive_ack {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    struct kafka_ack ack;
};

static int redrive_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* The options that take a value, as --name V or --name=V. */
enum redrive_opt {
    OPT_PARTITION,
    OPT_OFFSET,
    OPT_FROM,
    OPT_TO,
    OPT_CLASS,
    OPT_SOURCE,
    OPT_EVENT,
    OPT_TIMEOUT,
    OPT_COUNT
};
static const char *const redrive_opt_names[OPT_COUNT] = {
    [OPT_PARTITION] = "--partition", [OPT_OFFSET] = "--offset",
    [OPT_FROM] = "--from-offset",    [OPT_TO] = "--to-offset",
    [OPT_CLASS] = "--error-class",   [OPT_SOURCE] = "--source-topic",
    [OPT_EVENT] = "--event-id",      [OPT_TIMEOUT] = "--timeout-ms",
};

/* Stores one option's value. @returns 0, or -1 with the reason in @p errstr. */
static int redrive_opt_set(struct redrive_opts *o, enum redrive_opt k, const char *val,
                           char *errstr, size_t errlen)
{
    int64_t v = 0;
    int bad = 0;

    switch (k) {
    case OPT_PARTITION:
        bad = redrive_parse_i64(val, 0, INT32_MAX, &v);
        o->partition = (int32_t)v;
        break;
    case OPT_OFFSET:
    case OPT_FROM:
    case OPT_TO:
        bad = redrive_parse_i64(val, 0, INT64_MAX - 1, &v);
        *(k == OPT_OFFSET ? &o->offset : k == OPT_FROM ? &o->from : &o->to) = v;
        break;
    case OPT_TIMEOUT:
        bad = redrive_parse_i64(val, 1, 3600000, &v);
        o->timeout_ms = (long)v;
        break;
    case OPT_CLASS:
        if (strcmp(val, "permanent") && strcmp(val, "exhausted") && strcmp(val, "invalid")) {
            snprintf(errstr, errlen, "--error-class: not permanent, exhausted or invalid");
            return -1;
        }
        o->error_class = val;
        break;
    default:
        *(k == OPT_SOURCE ? &o->source_topic : &o->event_id) = val;
        bad = !*val;
    }
    if (bad)
        snprintf(errstr, errlen, "%s: '%s' is not a valid value", redrive_opt_names[k], val);
    return bad ? -1 : 0;
}

/* Takes our options out of argv; the rest (--help, --version, --check-config, or mistakes) goes
 * to config_cli in @p rest. @returns 0, or -1 with the reason in @p errstr. */
static int redrive_parse_args(int argc, char **argv, struct redrive_opts *o, char **rest,
                              int *nrest, char *errstr, size_t errlen)
{
    *nrest = 0;
    rest[(*nrest)++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        int k;
        if (!strcmp(a, "--all") || !strcmp(a, "--dry-run") || !strcmp(a, "--allow-any-topic")) {
            o->all |= !strcmp(a, "--all");
            o->dry_run |= !strcmp(a, "--dry-run");
            o->allow_any_topic |= !strcmp(a, "--allow-any-topic");
            continue;
        }
        for (k = 0; k < OPT_COUNT; k++) {
            size_t n = strlen(redrive_opt_names[k]);
            if (!strncmp(a, redrive_opt_names[k], n) && a[n] == '=')
                val = a + n + 1;
            else if (!strcmp(a, redrive_opt_names[k]) && i + 1 < argc)
                val = argv[++i];
            else if (!strcmp(a, redrive_opt_names[k]))
                val = ""; /* missing: rejected below */
            if (val)
                break;
        }
        if (k == OPT_COUNT)
            rest[(*nrest)++] = argv[i];
        else if (redrive_opt_set(o, (enum redrive_opt)k, val, errstr, errlen) != 0)
            return -1;
    }
    if (o->offset >= 0 && (o->partition < 0 || o->from >= 0 || o->to >= 0)) {
        snprintf(errstr, errlen, "--offset needs --partition and excludes --from/--to-offset");
        return -1;
    }
    if (o->offset >= 0)
        o->from = o->to = o->offset;
    if (o->from >= 0 && o->to >= 0 && o->from > o->to) {
        snprintf(errstr, errlen, "--from-offset is after --to-offset");
        return -1;
    }
    /* Moving the whole DLQ back is a big step: it takes an explicit --all. Listing it is not. */
    if (!o->all && !o->dry_run && o->offset < 0 && o->from < 0 && o->to < 0 && !o->error_class &&
        !o->source_topic && !o->event_id) {
        snprintf(errstr, errlen, "no selection: give --offset, a range, a filter, or --all");
        return -1;
    }
    return 0;
}

static void redrive_config_load(struct redrive_config *cfg, struct config_report *r)
{
    struct config_topics topics;

    memset(cfg, 0, sizeof(*cfg));
    cfg->log_level = config_log_level(r);
    kafka_settings_from_env(&cfg->kafka);
    kafka_settings_check(&cfg->kafka, r);
    config_topics_load(&topics);
    cfg->dlq = topics.dlq;
    cfg->inputs[0] = topics.messages;
    cfg->inputs[1] = topics.replies;
    cfg->inputs[2] = topics.questionnaires;
}

/* A header's value as a NUL-terminated copy into @p out ("" when absent). @returns 1 if present. */
static int redrive_header(rd_kafka_headers_t *hdrs, const char *name, char *out, size_t len)
{
    const void *v = NULL;
    size_t n = 0;
    out[0] = '\0';
    if (!hdrs || rd_kafka_header_get_last(hdrs, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), v ? (const char *)v : "");
    return 1;
}

/* Bytes shown on a terminal: printable ASCII kept, anything else '?', at most @p len - 1. */
static const char *redrive_printable(const void *p, size_t n, char *out, size_t len)
{
    size_t i;
    if (!p)
        return "-";
    for (i = 0; i < n && i + 1 < len; i++) {
        unsigned char c = ((const unsigned char *)p)[i];
        out[i] = c > 0x20 && c < 0x7f && c != '"' ? (char)c : '?';
    }
    out[i] = '\0';
    return i ? out : "-";
}

static void redrive_on_ack(void *opaque, const struct kafka_ack *ack)
{
    struct redrive_ack *w = opaque;
    pthread_mutex_lock(&w->lock);
    w->ack = *ack;
    w->ack.topic = NULL; /* points into librdkafka's message: not valid after we return */
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Produces @p m's key and value to @p topic with its non-pm-* headers and waits for the delivery
 * report. @returns 0 with the new partition/offset in @p w->ack, or -1 (reason on stderr). */
static int redrive_produce(struct kafka_producer *p, const rd_kafka_message_t *m, const char *topic,
                           struct redrive_ack *w)
{
    rd_kafka_headers_t *orig = NULL, *hdrs;
    const char *name;
    const void *val;
    size_t size;
    rd_kafka_resp_err_t err;

    if (rd_kafka_message_headers(m, &orig) != RD_KAFKA_RESP_ERR_NO_ERROR)
        orig = NULL;
    hdrs = rd_kafka_headers_new(orig ? rd_kafka_header_cnt(orig) : 1);
    for (size_t i = 0; orig && !rd_kafka_header_get_all(orig, i, &name, &val, &size); i++)
        if (strncmp(name, "pm-", 3) != 0)
            rd_kafka_header_add(hdrs, name, -1, val, val ? (ssize_t)size : 0);
    w->done = 0;
    err = kafka_producer_send(p, topic, m->key, m->key_len, m->payload, m->len, hdrs,
                              redrive_on_ack, w);
    hdrs = NULL; /* consumed in every case */
    if (err) {
        fprintf(stderr, "%s: cannot produce to %s: %s\n", REDRIVE_PROG, topic,
                rd_kafka_err2str(err));
        return -1;
    }
    pthread_mutex_lock(&w->lock);
    while (!w->done)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    if (w->ack.err) {
        /* A timeout means "unknown": the record may still be written. Say so. */
        fprintf(stderr, "%s: %s did not acknowledge the record: %s%s\n", REDRIVE_PROG, topic,
                rd_kafka_err2str(w->ack.err),
                w->ack.err == RD_KAFKA_RESP_ERR__TIMED_OUT ? " (it may still arrive)" : "");
        return -1;
    }
    return 0;
}

/* Decides one DLQ record's fate and acts on it. @returns 0, or -1 when producing failed. */
static int redrive_one(const struct redrive_config *cfg, const struct redrive_opts *o,
                       struct kafka_producer *p, struct redrive_ack *w, rd_kafka_message_t *m,
                       struct redrive_stats *st)
{
    rd_kafka_headers_t *hdrs = NULL;
    char cls[64], src[256], key[128], idbuf[256], desc[1024];
    const char *id = NULL, *refuse = NULL;
    json_t *ce = m->payload ? json_loadb(m->payload, m->len, 0, NULL) : NULL;
    int has_src, rc = 0;

    st->read++;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        hdrs = NULL;
    redrive_header(hdrs, "pm-error-class", cls, sizeof(cls));
    has_src = redrive_header(hdrs, "pm-source-topic", src, sizeof(src)) && src[0];
    id = json_string_value(json_object_get(ce, "id"));
    if ((o->error_class && strcmp(cls, o->error_class)) ||
        (o->source_topic && strcmp(src, o->source_topic)) ||
        (o->event_id && (!id || strcmp(id, o->event_id))))
        goto out; /* not selected */
    st->selected++;

    if (!has_src)
        refuse = "no pm-source-topic header";
    else if (!strcmp(src, cfg->dlq))
        refuse = "pm-source-topic is the DLQ itself";
    else if (!o->allow_any_topic && strcmp(src, cfg->inputs[0]) && strcmp(src, cfg->inputs[1]) &&
             strcmp(src, cfg->inputs[2]))
        refuse = "pm-source-topic is not an input topic (see --allow-any-topic)";
    snprintf(desc, sizeof(desc),
             "partition=%" PRId32 " offset=%" PRId64 " key=%s event_id=%s error_class=%s "
             "source_topic=%s",
             m->partition, m->offset, redrive_printable(m->key, m->key_len, key, sizeof(key)),
             redrive_printable(id, id ? strlen(id) : 0, idbuf, sizeof(idbuf)), cls[0] ? cls : "-",
             has_src ? src : "-");
    if (refuse) {
        printf("refused %s reason=\"%s\"\n", desc, refuse);
        st->refused++;
    } else if (o->dry_run) {
        printf("would-redrive %s\n", desc);
    } else if (redrive_produce(p, m, src, w) == 0) {
        printf("redriven %s to_partition=%" PRId32 " to_offset=%" PRId64 "\n", desc,
               w->ack.partition, w->ack.offset);
        st->moved++;
        st->last[m->partition] = m->offset;
    } else {
        printf("failed %s\n", desc);
        rc = -1;
    }
    fflush(stdout);
out:
    json_decref(ce);
    return rc;
}

/* Assigns the selected range of every DLQ partition; @p end gets each partition's stop offset
 * (exclusive; -1 when it has nothing to read). @returns the partitions to read, or -1. */
static int redrive_assign(rd_kafka_t *rk, const struct redrive_config *cfg,
                          const struct redrive_opts *o, int64_t *end)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *list = NULL;
    rd_kafka_resp_err_t err;
    int nparts = -1, todo = -1;

    /* All topics: asking for pm.dlq by name could auto-create it on some clusters. */
    err = rd_kafka_metadata(rk, 1, NULL, &md, (int)o->timeout_ms);
    if (err) {
        fprintf(stderr, "%s: no metadata from Kafka: %s\n", REDRIVE_PROG, rd_kafka_err2str(err));
        goto out;
    }
    for (int i = 0; i < md->topic_cnt; i++)
        if (!strcmp(md->topics[i].topic, cfg->dlq) && !md->topics[i].err)
            nparts = md->topics[i].partition_cnt;
    if (nparts <= 0 || nparts > REDRIVE_MAX_PARTS || o->partition >= nparts) {
        if (nparts <= 0)
            fprintf(stderr, "%s: topic %s not found\n", REDRIVE_PROG, cfg->dlq);
        else
            fprintf(stderr, "%s: %s has %d partitions; not %" PRId32 "\n", REDRIVE_PROG, cfg->dlq,
                    nparts, o->partition);
        goto out;
    }
    list = rd_kafka_topic_partition_list_new(nparts);
    todo = 0;
    for (int32_t part = 0; part < nparts; part++) {
        int64_t lo, hi, from, to;
        end[part] = -1;
        if (o->partition >= 0 && part != o->partition)
            continue;
        err = rd_kafka_query_watermark_offsets(rk, cfg->dlq, part, &lo, &hi, (int)o->timeout_ms);
        if (err) {
            fprintf(stderr, "%s: %s partition %" PRId32 ": %s\n", REDRIVE_PROG, cfg->dlq, part,
                    rd_kafka_err2str(err));
            todo = -1;
            goto out;
        }
        if (o->from >= 0 && o->from < lo)
            fprintf(stderr,
                    "%s: %s partition %" PRId32 " starts at offset %" PRId64
                    " (older records were deleted by retention)\n",
                    REDRIVE_PROG, cfg->dlq, part, lo);
        from = o->from > lo ? o->from : lo;
        to = o->to >= 0 && o->to + 1 < hi ? o->to + 1 : hi; /* records added later stay put */
        if (from >= to)
            continue;
        rd_kafka_topic_partition_list_add(list, cfg->dlq, part)->offset = from;
        end[part] = to;
        todo++;
    }
    if (todo > 0 && (err = rd_kafka_assign(rk, list)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "%s: assign: %s\n", REDRIVE_PROG, rd_kafka_err2str(err));
        todo = -1;
    }
out:
    if (list)
        rd_kafka_topic_partition_list_destroy(list);
    if (md)
        rd_kafka_metadata_destroy(md);
    return todo;
}

static int64_t redrive_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads every assigned range to its end, handing each record to redrive_one.
 * @returns 0, or -1 on a failed produce (nothing after it was moved) or when the DLQ made no
 *          progress for timeout_ms. */
static int redrive_run(rd_kafka_t *rk, const struct redrive_config *cfg,
                       const struct redrive_opts *o, struct kafka_producer *p, int64_t *end,
                       int todo, struct redrive_stats *st)
{
    struct redrive_ack w;
    int64_t progress = redrive_now_ms();
    int rc = 0;

    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    while (todo > 0 && rc == 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        int32_t part = m ? m->partition : -1;
        int64_t next = -1;

        if (part < 0 || part >= REDRIVE_MAX_PARTS) {
            part = -1;
        } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            next = m->offset;
        } else if (m->err) {
            /* librdkafka retries by itself; only a long silence (below) ends the run. */
            fprintf(stderr, "%s: reading %s: %s\n", REDRIVE_PROG, cfg->dlq,
                    rd_kafka_message_errstr(m));
        } else {
            if (m->offset < end[part])
                rc = redrive_one(cfg, o, p, &w, m, st);
            next = m->offset + 1;
        }
        /* A partition is finished once its position reaches the end taken at the start. */
        if (next >= 0 && end[part] >= 0) {
            progress = redrive_now_ms();
            if (next >= end[part]) {
                end[part] = -1;
                todo--;
            }
        } else if (redrive_now_ms() - progress > o->timeout_ms) {
            fprintf(stderr, "%s: no progress reading %s for %ld ms; stopping\n", REDRIVE_PROG,
                    cfg->dlq, o->timeout_ms);
            rc = -1;
        }
        if (m)
            rd_kafka_message_destroy(m);
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return rc;
}

static void redrive_summary(const struct redrive_config *cfg, const struct redrive_opts *o,
                            const struct redrive_stats *st)
{
    int any = 0;
    printf("%s: %s: %ld records read, %ld selected, %ld %s, %ld refused\n", REDRIVE_PROG, cfg->dlq,
           st->read, st->selected, o->dry_run ? st->selected - st->refused : st->moved,
           o->dry_run ? "would be redriven (dry run)" : "redriven", st->refused);
    for (int i = 0; i < REDRIVE_MAX_PARTS; i++) {
        if (st->last[i] < 0)
            continue;
        if (!any)
            printf("%s: last redriven %s offsets:", REDRIVE_PROG, cfg->dlq);
        printf("%s partition %d offset %" PRId64, any ? "," : "", i, st->last[i]);
        any = 1;
    }
    if (any) {
        printf("\n");
        fprintf(stderr,
                "%s: warning: the records stay on %s (Kafka cannot delete them). Write down the "
                "offsets above: running pm-redrive over the same range again redrives them "
                "again. pm-deliver drops a repeat only while the process that handled the first "
                "copy runs; after a pm-deliver restart a repeated staff message is sent again by "
                "SMS and email, and a repeated reply or check-in is written to Canvas twice.\n",
                REDRIVE_PROG, cfg->dlq);
    }
}

int main(int argc, char **argv)
{
    struct redrive_opts o = {
        .partition = -1, .offset = -1, .from = -1, .to = -1, .timeout_ms = 30000};
    struct redrive_config cfg;
    struct config_report report = {0};
    struct redrive_stats *st = NULL;
    struct kafka_producer *producer = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_conf_t *conf = NULL;
    int64_t *end = NULL;
    char **rest = calloc((size_t)argc + 1, sizeof(*rest));
    char err[512];
    int nrest = 0, todo, rc = REDRIVE_EXIT_FAIL;
    enum config_mode mode;

    if (!rest)
        return REDRIVE_EXIT_FAIL;
    err[0] = '\0';
    /* Usage errors wait until --help had its chance: "pm-redrive --help" needs no selection. */
    int bad = redrive_parse_args(argc, argv, &o, rest, &nrest, err, sizeof(err));
    mode = config_cli(nrest, rest, REDRIVE_PROG, redrive_help, redrive_vars);
    if (mode == CONFIG_MODE_EXIT_OK || mode == CONFIG_MODE_EXIT_USAGE) {
        rc = mode == CONFIG_MODE_EXIT_OK ? 0 : REDRIVE_EXIT_USAGE;
        goto out;
    }
    redrive_config_load(&cfg, &report);
    if (mode == CONFIG_MODE_CHECK) {
        config_report_print(&report, stdout, REDRIVE_PROG);
        if (!report.count)
            printf("%s: configuration OK\n", REDRIVE_PROG);
        rc = report.count ? 1 : 0;
        goto out;
    }
    if (bad) {
        fprintf(stderr, "%s: %s (see --help)\n", REDRIVE_PROG, err);
        rc = REDRIVE_EXIT_USAGE;
        goto out;
    }
    log_init(REDRIVE_PROG, cfg.log_level);
    if (report.count) {
        config_report_print(&report, stderr, REDRIVE_PROG);
        goto out;
    }
    st = calloc(1, sizeof(*st));
    end = calloc(REDRIVE_MAX_PARTS, sizeof(*end));
    if (!st || !end)
        goto out;
    for (int i = 0; i < REDRIVE_MAX_PARTS; i++)
        st->last[i] = end[i] = -1;

    /* The reader: assign() needs a group.id but never joins the group, and nothing is
     * committed; an end-of-partition event says when a partition is read to its end. */
    if (!(conf = kafka_conf_build(&cfg.kafka, err, sizeof(err))) ||
        kafka_conf_set(conf, "client.id", REDRIVE_PROG, err, sizeof(err)) ||
        kafka_conf_set(conf, "group.id", REDRIVE_PROG, err, sizeof(err)) ||
        kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) ||
        kafka_conf_set(conf, "enable.auto.offset.store", "false", err, sizeof(err)) ||
        kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err))) {
        fprintf(stderr, "%s: Kafka configuration: %s\n", REDRIVE_PROG, err);
        goto out;
    }
    if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)))) {
        fprintf(stderr, "%s: %s\n", REDRIVE_PROG, err);
        goto out;
    }
    conf = NULL; /* owned by rk now */
    rd_kafka_poll_set_consumer(rk);
    if (!o.dry_run) {
        /* idempotent, acks=all, murmur2_random: kafka_producer_new sets them after the file */
        rd_kafka_conf_t *pconf = kafka_conf_build(&cfg.kafka, err, sizeof(err));
        if (!pconf ||
            !(producer = kafka_producer_new(pconf, (int)o.timeout_ms, err, sizeof(err)))) {
            fprintf(stderr, "%s: producer: %s\n", REDRIVE_PROG, err);
            goto out;
        }
    }
    todo = redrive_assign(rk, &cfg, &o, end);
    if (todo < 0)
        goto out;
    rc = redrive_run(rk, &cfg, &o, producer, end, todo, st) == 0 ? 0 : REDRIVE_EXIT_FAIL;
    redrive_summary(&cfg, &o, st);
    if (rc == 0 && st->refused > 0)
        rc = REDRIVE_EXIT_REFUS;

out:
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (conf)
        rd_kafka_conf_destroy(conf);
    kafka_producer_destroy(producer, 5000);
    free(end);
    free(st);
    free(rest);
    return rc;
}
