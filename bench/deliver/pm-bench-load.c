/* pm-bench-load: seeds pm-sandbox with patients and staff messages and pre-loads their events. */

/*
 * What it does, in order:
 *  1. Generates --patients Canvas Patients and --messages staff → patient Communications (HTML
 *     content, completed, sender one of the fixture Practitioners), all invented and derived from
 *     --seed, so two runs with the same options produce byte-identical data.
 *  2. Stores them in pm-sandbox with POST /_sandbox/resources (arrays of at most LOAD_BATCH
 *     resources, well under the sandbox's 4 MiB body cap).
 *  3. Produces one canvas.message.v1 CloudEvent per Communication to --topic, key = patient id,
 *     header content-type, partitioner=murmur2_random (what pm-ingest uses), acks=all and
 *     idempotence, and waits for every delivery report: the delivery report is the only proof
 *     the event is on the topic.
 *  4. Checks the topic's watermarks: every partition must still start at offset 0 (the mock
 *     cluster drops old segments past ~5 MiB per partition) and hold the events produced.
 *
 * Event order: message m goes to patient m mod --patients; the sequence is shuffled (seeded
 * Fisher-Yates), then each patient's messages are numbered in the order they occur, so a
 * patient's messages are on the topic in the order they were sent, interleaved with everyone
 * else's as a clinic's traffic would be.
 *
 * Two shapes of event (--variant):
 *  id        data {communication_id, patient_id}: pm-ingest's shapes (a) and (c); pm-deliver
 *            reads GET /Communication/<id> for every message (one FHIR read, one OAuth token
 *            for the whole run).
 *  embedded  data {communication_id, patient_id, communication}: pm-ingest's shape (b), the bare
 *            Communication Canvas's guide protocol posts; pm-deliver needs no FHIR read.
 *
 * --ids-out FILE writes "<communication id> <patient id>" per event, in topic-production order,
 * for the benchmark's check that exactly these ids reached the webhook.
 *
 * Kafka settings come from PM_KAFKA_BROKERS / PM_KAFKA_CONFIG_FILE as for the services.
 */
#include "cloudevent.h"
#include "http_client.h"
#include "kafka_conf.h"
#include "log.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#define LOAD_BATCH     500 /* resources per POST /_sandbox/resources (~1 MiB) */
#define LOAD_HTTP_MS   60000
#define LOAD_FLUSH_MS  120000
#define LOAD_SENT_BASE 1772463845 /* 2026-03-02T15:04:05Z: the first message's "sent" */

enum load_variant { LOAD_VARIANT_ID, LOAD_VARIANT_EMBEDDED };

struct load_opts {
    const char *sandbox; /* base URL, no trailing slash */
    const char *topic;
    const char *ids_out; /* NULL: not written */
    unsigned long patients;
    unsigned long messages;
    uint64_t seed;
    enum load_variant variant;
    int skip_seed;    /* --no-seed: events only (the sandbox already holds the data) */
    int skip_produce; /* --no-produce: sandbox only */
};

/* One generated patient. */
struct load_patient {
    char id[33];
    unsigned given, family;
    unsigned next_msg; /* messages numbered so far (order on the topic) */
};

/* One generated message and its event. */
struct load_message {
    char comm_id[37];
    char event_id[37];
    unsigned long patient;
    unsigned seq; /* this patient's n-th message */
};

/* ---- deterministic data: splitmix64 ---- */

static uint64_t load_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static unsigned load_pick(uint64_t *state, unsigned n)
{
    return (unsigned)(load_rand(state) % n);
}

static void load_hex(uint64_t *state, char *out, size_t ndigits)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < ndigits; i++)
        out[i] = hex[load_rand(state) & 15];
    out[ndigits] = '\0';
}

/* A version 4 UUID, dashed, lower case (Canvas's Communication ids look like this). */
static void load_uuid(uint64_t *state, char out[37])
{
    uint64_t a = load_rand(state), b = load_rand(state);
    a = (a & ~0xF000ULL) | 0x4000ULL;                        /* version 4 */
    b = (b & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL; /* variant 10 */
    snprintf(out, 37, "%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%012" PRIx64,
             a >> 32, (a >> 16) & 0xFFFF, a & 0xFFFF, b >> 48, (uint64_t)(b & 0xFFFFFFFFFFFFULL));
}

/* ---- invented content ---- */

static const char *const load_given[] = {"Avery",  "Blake", "Casey",   "Drew",   "Emery",  "Finley",
                                         "Harper", "Jamie", "Kendall", "Logan",  "Morgan", "Parker",
                                         "Quinn",  "Reese", "Rowan",   "Sawyer", "Taylor", "Wren"};
static const char *const load_family[] = {
    "Abbott", "Bishop", "Carver",   "Dalton",    "Ellison",   "Fairfax", "Garland",
    "Hollis", "Ingram", "Jessup",   "Kessler",   "Lindqvist", "Marlowe", "Norwood",
    "Okafor", "Pruitt", "Quintero", "Rasmussen", "Sterling",  "Thorne"};
static const char *const load_city[][3] = {{"Springfield", "IL", "627"}, {"Riverton", "WY", "825"},
                                           {"Fairview", "OR", "970"},    {"Madison", "WI", "537"},
                                           {"Greenville", "SC", "296"},  {"Franklin", "TN", "370"}};

/* The fixture Practitioners (tools/sandbox/README.md): the staff who write to patients. */
static const char *const load_senders[] = {"4150cd20de8a470aa570a852859ac87e",
                                           "3640cd20de8a470aa570a852859ac87e",
                                           "9cdb7a92d6614dcfa7948f2143a9f8e8"};
static const char *const load_signoff[] = {"Dr. Morgan Clinician", "Riley, RN", "Sam, front desk"};

static const char *const load_opening[] = {"Hi", "Hello", "Good morning", "Dear"};
static const char *const load_body[] = {
    "<p>Your lab results from last week are in &amp; everything looks within the normal "
    "range. No action is needed on your part.</p>",
    "<p>This is a reminder that your annual physical is scheduled for <strong>next "
    "Tuesday at 9:30&nbsp;AM</strong>. Please arrive 15 minutes early to complete "
    "check-in.</p>",
    "<p>We received your refill request. The prescription was sent to your pharmacy this "
    "afternoon; it is usually ready within 24&nbsp;hours.</p>",
    "<p>Your blood pressure readings over the last month average 128/82, which is a nice "
    "improvement. Keep taking your medication as prescribed &amp; keep logging readings.</p>",
    "<p>Before your procedure:</p><ul><li>Nothing to eat after midnight</li><li>Clear "
    "liquids are fine until 6&nbsp;AM</li><li>Bring a list of your current "
    "medications</li></ul>",
    "<p>Your imaging report has been reviewed. I would like to go over it with you in person; "
    "please call the office at (555) 010-0199 to book a 20-minute visit.</p>",
    "<p>Thanks for completing the check-in questionnaire. Based on your answers we would like "
    "to adjust your exercise plan slightly &mdash; details are in the attached care plan.</p>",
    "<p>Flu shots are now available at the clinic. Walk-ins are welcome Monday&ndash;Friday "
    "between 8&nbsp;AM and 4&nbsp;PM.</p>",
    "<p>Your insurance pre-authorization was approved. You can go ahead and schedule the "
    "physical therapy sessions (6 visits) at your convenience.</p>",
    "<p>Please remember to fast for 8 hours before tomorrow&#39;s blood draw.<br>Water and "
    "black coffee are OK.</p>",
};
/* Closings end with the sender's name and "</p>". */
static const char *const load_closing[] = {
    "<p>Let us know if you have any questions.</p><p>Best,<br>",
    "<p>Reply here any time if something changes.</p><p>&mdash; ",
    "<p>Take care,<br>",
};

/* The HTML content of a message to @p p from load_senders[@p sender], into @p out. */
static void load_html(uint64_t *rs, const struct load_patient *p, unsigned sender, char *out,
                      size_t len)
{
    size_t used;
    unsigned nbody = 1 + load_pick(rs, 3), first = load_pick(rs, 10);

    /* Bounded: the longest combination is under 1 KB, and snprintf truncates beyond @p len. */
    snprintf(out, len, "<p>%s %s,</p>", load_opening[load_pick(rs, 4)], load_given[p->given]);
    for (unsigned i = 0; i < nbody; i++) {
        used = strlen(out);
        snprintf(out + used, len - used, "%s", load_body[(first + i * 3) % 10]);
    }
    used = strlen(out);
    snprintf(out + used, len - used, "%s%s</p>", load_closing[load_pick(rs, 3)],
             load_signoff[sender]);
}

static json_t *load_patient_resource(uint64_t *rs, const struct load_patient *p, unsigned long i)
{
    const char *const *city = load_city[load_pick(rs, 6)];
    char phone[16], email[128], tel_id1[37], tel_id2[37], birth[16], street[64], zip[8];
    char bs[2] = {load_pick(rs, 2) ? 'F' : 'M', '\0'};

    snprintf(phone, sizeof(phone), "555%07lu", 1000000 + i);
    snprintf(email, sizeof(email), "%s.%s.%lu@example.com", load_given[p->given],
             load_family[p->family], i);
    for (char *c = email; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    load_uuid(rs, tel_id1);
    load_uuid(rs, tel_id2);
    snprintf(birth, sizeof(birth), "%u-%02u-%02u", 1940 + load_pick(rs, 65), 1 + load_pick(rs, 12),
             1 + load_pick(rs, 28));
    snprintf(street, sizeof(street), "%u %s Street", 1 + load_pick(rs, 999),
             load_family[load_pick(rs, 20)]);
    snprintf(zip, sizeof(zip), "%s%02u", city[2], load_pick(rs, 100));
    return json_pack(
        "{s:s, s:s, s:[{s:s, s:s}], s:b, s:[{s:s, s:s, s:[s]}], s:s, s:s,"
        " s:[{s:s, s:[{s:s, s:b}], s:s, s:s, s:s, s:i},"
        "    {s:s, s:[{s:s, s:b}], s:s, s:s, s:s, s:i}],"
        " s:[{s:s, s:[s], s:s, s:s, s:s, s:s}]}",
        "resourceType", "Patient", "id", p->id, "extension", "url",
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode", bs,
        "active", 1, "name", "use", "official", "family", load_family[p->family], "given",
        load_given[p->given], "gender", bs[0] == 'F' ? "female" : "male", "birthDate", birth,
        "telecom", "id", tel_id1, "extension", "url",
        "http://schemas.canvasmedical.com/fhir/extensions/has-consent", "valueBoolean", 1, "system",
        "phone", "value", phone, "use", "mobile", "rank", 1, "id", tel_id2, "extension", "url",
        "http://schemas.canvasmedical.com/fhir/extensions/has-consent", "valueBoolean", 1, "system",
        "email", "value", email, "use", "home", "rank", 1, "address", "use", "home", "line", street,
        "city", city[0], "state", city[1], "postalCode", zip, "country", "US");
}

/* "sent" of the n-th message overall: one every few seconds from LOAD_SENT_BASE. */
static void load_sent(unsigned long n, char *out, size_t len)
{
    time_t t = (time_t)LOAD_SENT_BASE + (time_t)(n * 7);
    struct tm tm;
    char base[32];
    gmtime_r(&t, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%06lu+00:00", base, (n * 104729) % 1000000);
}

static json_t *load_communication(uint64_t *rs, const struct load_message *m,
                                  const struct load_patient *p, unsigned long n)
{
    unsigned sender = load_pick(rs, 3);
    char html[2048], sent[48], to[48], from[48];

    load_html(rs, p, sender, html, sizeof(html));
    load_sent(n, sent, sizeof(sent));
    snprintf(to, sizeof(to), "Patient/%s", p->id);
    snprintf(from, sizeof(from), "Practitioner/%s", load_senders[sender]);
    return json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:s}], s:{s:s, s:s}, s:[{s:s}]}",
                     "resourceType", "Communication", "id", m->comm_id, "status", "completed",
                     "sent", sent, "recipient", "reference", to, "type", "Patient", "sender",
                     "reference", from, "type", "Practitioner", "payload", "contentString", html);
}

/* ---- pm-sandbox ---- */

/* POSTs @p arr (an array of resources) to /_sandbox/resources. @returns 0 / -1 (err filled). */
static int load_sandbox_post(struct http_client *http, const char *base, json_t *arr, char *err,
                             size_t errlen)
{
    char url[512];
    char *body = json_dumps(arr, JSON_COMPACT);
    struct http_reply rep = {0};
    const char *headers[] = {"Content-Type: application/json", NULL};
    int rc = -1;

    if (!body) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(url, sizeof(url), "%s/_sandbox/resources", base);
    struct http_call call = {.method = "POST",
                             .url = url,
                             .headers = headers,
                             .body = body,
                             .body_len = strlen(body),
                             .target = "sandbox"};
    if (http_client_do(http, &call, &rep) != 0)
        snprintf(err, errlen, "POST %s: %s", url, rep.error);
    else if (rep.status / 100 != 2)
        snprintf(err, errlen, "POST %s: HTTP %ld: %.200s", url, rep.status, rep.body);
    else
        rc = 0;
    http_reply_free(&rep);
    free(body);
    return rc;
}

/* Appends @p res (stolen) to the batch; sends the batch when full or @p flush. */
static int load_batch_add(struct http_client *http, const char *base, json_t *batch, json_t *res,
                          int flush, char *err, size_t errlen)
{
    if (res && json_array_append_new(batch, res) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (json_array_size(batch) == 0 || (!flush && json_array_size(batch) < LOAD_BATCH))
        return 0;
    if (load_sandbox_post(http, base, batch, err, errlen) != 0)
        return -1;
    json_array_clear(batch);
    return 0;
}

/* ---- Kafka ---- */

struct load_dr {
    unsigned long delivered;
    unsigned long failed;
    rd_kafka_resp_err_t first_err;
};

static void load_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct load_dr *dr = opaque;
    (void)rk;
    if (m->err) {
        if (!dr->failed++)
            dr->first_err = m->err;
    } else {
        dr->delivered++;
    }
}

static rd_kafka_t *load_producer_new(struct load_dr *dr, char *err, size_t errlen)
{
    struct kafka_settings ks;
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;

    kafka_settings_from_env(&ks);
    conf = kafka_conf_build(&ks, err, errlen);
    if (!conf)
        return NULL;
    /* As pm-ingest: murmur2 like the Java client, so a patient's events share a partition with
     * everything else keyed by that patient; acks=all + idempotence, the delivery report is
     * the proof. */
    if (kafka_conf_set(conf, "partitioner", "murmur2_random", err, errlen) ||
        kafka_conf_set(conf, "enable.idempotence", "true", err, errlen) ||
        kafka_conf_set(conf, "acks", "all", err, errlen) ||
        kafka_conf_set(conf, "linger.ms", "20", err, errlen) ||
        kafka_conf_set(conf, "message.timeout.ms", "60000", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, load_on_delivery);
    rd_kafka_conf_set_opaque(conf, dr);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk; /* conf is owned by rk when it was created */
}

/* Produces one record, waiting (serving delivery reports) while the local queue is full. */
static int load_produce(rd_kafka_t *rk, const char *topic, const char *key, const char *value,
                        char *err, size_t errlen)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE((void *)value, strlen(value)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADER(CE_HEADER_CONTENT_TYPE, CE_CONTENT_TYPE, -1), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_poll(rk, 0);
            return 0;
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            snprintf(err, errlen, "produce to %s: %s", topic, rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(rk, 100); /* backpressure: serve delivery reports, then try again */
    }
}

/* Sums the partitions' (high - low) and checks every low watermark is 0. @returns 0 / -1. */
static int load_watermarks(rd_kafka_t *rk, const char *topic, long long *records, int *nparts,
                           char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e;
    int rc = -1;

    *records = 0;
    *nparts = 0;
    if (!rkt) {
        snprintf(err, errlen, "topic handle: %s", rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    if (!e && (md->topic_cnt != 1 || md->topics[0].err))
        e = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    if (e) {
        snprintf(err, errlen, "metadata of %s: %s", topic, rd_kafka_err2str(e));
        goto out;
    }
    for (int i = 0; i < md->topics[0].partition_cnt; i++) {
        int32_t part = md->topics[0].partitions[i].id;
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(rk, topic, part, &lo, &hi, 10000);
        if (e) {
            snprintf(err, errlen, "watermarks of %s [%d]: %s", topic, (int)part,
                     rd_kafka_err2str(e));
            goto out;
        }
        if (lo != 0) {
            snprintf(err, errlen,
                     "%s [%d] starts at offset %lld: the broker dropped old records (too much "
                     "data per partition for the mock cluster)",
                     topic, (int)part, (long long)lo);
            goto out;
        }
        *records += hi - lo;
        (*nparts)++;
    }
    rc = 0;
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

/* ---- command line ---- */

static void load_usage(FILE *f)
{
    fprintf(f,
            "Usage: pm-bench-load --sandbox URL [options]\n"
            "Seeds pm-sandbox with invented Canvas Patients and staff -> patient Communications\n"
            "(HTML) and pre-loads one canvas.message.v1 event per Communication into Kafka,\n"
            "waiting for every delivery report.\n\n"
            "  -s, --sandbox URL      pm-sandbox base URL, e.g. http://127.0.0.1:18090\n"
            "  -p, --patients N       patients (default 1000)\n"
            "  -m, --messages N       Communications and events (default 10000)\n"
            "  -v, --variant V        id (data names the Communication: one FHIR read per\n"
            "                         message) or embedded (data carries it) (default id)\n"
            "  -t, --topic T          (default pm.canvas.messages)\n"
            "      --seed N           data generator seed (default 1)\n"
            "      --ids-out FILE     write \"<communication id> <patient id>\" per event\n"
            "      --no-seed          produce only (the sandbox already holds the data)\n"
            "      --no-produce       seed the sandbox only\n"
            "  -h, --help\n\n"
            "Environment: PM_KAFKA_BROKERS, PM_KAFKA_CONFIG_FILE (as the services).\n"
            "The last stdout line is machine-readable: RESULT key=value ...\n");
}

static int load_parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = (unsigned long)v;
    return 0;
}

static int load_parse_args(int argc, char **argv, struct load_opts *o)
{
    static const struct option longs[] = {
        {"sandbox", required_argument, NULL, 's'},
        {"patients", required_argument, NULL, 'p'},
        {"messages", required_argument, NULL, 'm'},
        {"variant", required_argument, NULL, 'v'},
        {"topic", required_argument, NULL, 't'},
        {"seed", required_argument, NULL, 'S'},
        {"ids-out", required_argument, NULL, 'I'},
        {"no-seed", no_argument, NULL, 'N'},
        {"no-produce", no_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned long v;
    int ch;

    memset(o, 0, sizeof(*o));
    o->topic = "pm.canvas.messages";
    o->patients = 1000;
    o->messages = 10000;
    o->seed = 1;
    o->variant = LOAD_VARIANT_ID;
    while ((ch = getopt_long(argc, argv, "s:p:m:v:t:h", longs, NULL)) != -1) {
        switch (ch) {
        case 's':
            o->sandbox = optarg;
            break;
        case 'p':
            if (load_parse_ulong(optarg, 1, 10000000, &o->patients))
                goto bad;
            break;
        case 'm':
            if (load_parse_ulong(optarg, 1, 100000000, &o->messages))
                goto bad;
            break;
        case 'v':
            if (!strcmp(optarg, "id"))
                o->variant = LOAD_VARIANT_ID;
            else if (!strcmp(optarg, "embedded"))
                o->variant = LOAD_VARIANT_EMBEDDED;
            else
                goto bad;
            break;
        case 't':
            o->topic = optarg;
            break;
        case 'S':
            if (load_parse_ulong(optarg, 0, ~0UL, &v))
                goto bad;
            o->seed = v;
            break;
        case 'I':
            o->ids_out = optarg;
            break;
        case 'N':
            o->skip_seed = 1;
            break;
        case 'P':
            o->skip_produce = 1;
            break;
        case 'h':
            load_usage(stdout);
            exit(0);
        default:
            load_usage(stderr);
            return -1;
        }
    }
    if (optind != argc)
        goto bad;
    if (!o->skip_seed && (!o->sandbox || (strncmp(o->sandbox, "http://", 7) != 0 &&
                                          strncmp(o->sandbox, "https://", 8) != 0))) {
        fprintf(stderr, "pm-bench-load: --sandbox must be the sandbox's http:// base URL\n");
        return -1;
    }
    return 0;
bad:
    fprintf(stderr, "pm-bench-load: bad option value (see --help)\n");
    return -1;
}

static double load_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    struct load_opts o;
    struct load_patient *patients = NULL;
    struct load_message *msgs = NULL;
    struct http_client *http = NULL;
    struct http_client_options ho = {.timeout_ms = LOAD_HTTP_MS};
    struct load_dr dr = {0};
    rd_kafka_t *rk = NULL;
    json_t *batch = NULL;
    FILE *ids = NULL;
    uint64_t rs;
    char err[512];
    double t0, t_seed = 0, t_produce = 0;
    unsigned long long value_bytes = 0;
    long long on_topic = 0;
    int nparts = 0, rc = 1;

    if (load_parse_args(argc, argv, &o) != 0)
        return 2;
    log_init("pm-bench-load", LOG_WARN);
    patients = calloc(o.patients, sizeof(*patients));
    msgs = calloc(o.messages, sizeof(*msgs));
    batch = json_array();
    if (!patients || !msgs || !batch) {
        fprintf(stderr, "pm-bench-load: out of memory\n");
        goto out;
    }

    /* Identities first, from their own stream, so they do not depend on content choices. */
    rs = o.seed * 0x100000001B3ULL + 1;
    for (unsigned long i = 0; i < o.patients; i++) {
        load_hex(&rs, patients[i].id, 32);
        patients[i].given = load_pick(&rs, sizeof(load_given) / sizeof(load_given[0]));
        patients[i].family = load_pick(&rs, sizeof(load_family) / sizeof(load_family[0]));
    }
    for (unsigned long m = 0; m < o.messages; m++) {
        load_uuid(&rs, msgs[m].comm_id);
        load_uuid(&rs, msgs[m].event_id);
        msgs[m].patient = m % o.patients;
    }
    for (unsigned long m = o.messages; m > 1; m--) { /* Fisher-Yates over the topic order */
        unsigned long j = (unsigned long)(load_rand(&rs) % m);
        struct load_message tmp = msgs[m - 1];
        msgs[m - 1] = msgs[j];
        msgs[j] = tmp;
    }
    for (unsigned long m = 0; m < o.messages; m++)
        msgs[m].seq = patients[msgs[m].patient].next_msg++;

    if (!o.skip_seed) {
        http = http_client_new(&ho, err, sizeof(err));
        if (!http)
            goto fail;
        t0 = load_now_s();
        rs = o.seed * 0x100000001B3ULL + 2;
        for (unsigned long i = 0; i < o.patients; i++) {
            json_t *p = load_patient_resource(&rs, &patients[i], i);
            if (!p || load_batch_add(http, o.sandbox, batch, p, 0, err, sizeof(err)) != 0)
                goto fail;
        }
        if (load_batch_add(http, o.sandbox, batch, NULL, 1, err, sizeof(err)) != 0)
            goto fail;
        t_seed = load_now_s() - t0;
    }

    if (!o.skip_produce) {
        rk = load_producer_new(&dr, err, sizeof(err));
        if (!rk)
            goto fail;
    }
    if (o.ids_out && !(ids = fopen(o.ids_out, "w"))) {
        snprintf(err, sizeof(err), "%s: %s", o.ids_out, strerror(errno));
        goto fail;
    }

    /* Communications are generated in topic order; the sandbox gets them in batches as they
     * are made, the events right after the sandbox has acknowledged them. */
    t0 = load_now_s();
    rs = o.seed * 0x100000001B3ULL + 3;
    {
        unsigned long sent_from = 0;
        json_t **comms = calloc(LOAD_BATCH, sizeof(*comms));
        if (!comms) {
            snprintf(err, sizeof(err), "out of memory");
            goto fail;
        }
        for (unsigned long m = 0; m < o.messages; m++) {
            const struct load_patient *p = &patients[msgs[m].patient];
            json_t *c = load_communication(&rs, &msgs[m], p, m);
            size_t k = m - sent_from;

            if (!c) {
                snprintf(err, sizeof(err), "out of memory");
                goto fail_comms;
            }
            comms[k] = c;
            if (k + 1 < LOAD_BATCH && m + 1 < o.messages)
                continue;
            /* A full batch: store it, then produce its events. */
            for (size_t i = 0; i <= k && !o.skip_seed; i++)
                json_array_append(batch, comms[i]);
            if (!o.skip_seed &&
                load_batch_add(http, o.sandbox, batch, NULL, 1, err, sizeof(err)) != 0)
                goto fail_comms;
            for (size_t i = 0; i <= k && rk; i++) {
                const struct load_message *mm = &msgs[sent_from + i];
                const struct load_patient *pp = &patients[mm->patient];
                char subject[48], time_s[48];
                json_t *data, *ce;
                char *value;
                int prc;

                snprintf(subject, sizeof(subject), "Patient/%s", pp->id);
                load_sent(sent_from + i, time_s, sizeof(time_s));
                data = json_pack("{s:s, s:s, s:O*}", "communication_id", mm->comm_id, "patient_id",
                                 pp->id, "communication",
                                 o.variant == LOAD_VARIANT_EMBEDDED ? comms[i] : NULL);
                ce = cloudevent_new(mm->event_id, "urn:pm-bench:deliver", CE_TYPE_CANVAS_MESSAGE,
                                    time_s, subject, data);
                value = ce ? json_dumps(ce, JSON_COMPACT) : NULL;
                json_decref(ce);
                if (!value) {
                    snprintf(err, sizeof(err), "out of memory");
                    goto fail_comms;
                }
                value_bytes += strlen(value);
                prc = load_produce(rk, o.topic, pp->id, value, err, sizeof(err));
                free(value);
                if (prc != 0)
                    goto fail_comms;
            }
            for (size_t i = 0; i <= k; i++) {
                if (ids)
                    fprintf(ids, "%s %s\n", msgs[sent_from + i].comm_id,
                            patients[msgs[sent_from + i].patient].id);
                json_decref(comms[i]);
                comms[i] = NULL;
            }
            sent_from = m + 1;
        }
        free(comms);
        goto produced;
    fail_comms:
        for (size_t i = 0; i < LOAD_BATCH; i++)
            json_decref(comms[i]);
        free(comms);
        goto fail;
    }
produced:
    if (rk) {
        rd_kafka_resp_err_t fe = rd_kafka_flush(rk, LOAD_FLUSH_MS);
        if (fe || dr.failed || dr.delivered != o.messages) {
            snprintf(err, sizeof(err),
                     "%lu of %lu events acknowledged, %lu failed (first error: %s)%s", dr.delivered,
                     o.messages, dr.failed, rd_kafka_err2str(dr.first_err),
                     fe ? "; flush timed out" : "");
            goto fail;
        }
        t_produce = load_now_s() - t0;
        if (load_watermarks(rk, o.topic, &on_topic, &nparts, err, sizeof(err)) != 0)
            goto fail;
    }
    if (ids && fclose(ids) != 0) {
        ids = NULL;
        snprintf(err, sizeof(err), "%s: write failed", o.ids_out);
        goto fail;
    }
    ids = NULL;
    printf("RESULT variant=%s patients=%lu communications=%lu events=%lu acknowledged=%lu "
           "on_topic=%lld partitions=%d event_bytes_avg=%.0f seed_patients_s=%.2f "
           "load_messages_s=%.2f\n",
           o.variant == LOAD_VARIANT_ID ? "id" : "embedded", o.patients, o.messages,
           rk ? o.messages : 0, dr.delivered, on_topic, nparts,
           o.messages ? (double)value_bytes / (double)o.messages : 0.0, t_seed, t_produce);
    rc = 0;
    goto out;

fail:
    fprintf(stderr, "pm-bench-load: %s\n", err);
out:
    if (ids)
        fclose(ids);
    if (rk)
        rd_kafka_destroy(rk);
    if (http)
        http_client_free(http);
    json_decref(batch);
    free(msgs);
    free(patients);
    return rc;
}
