/* Consumer runtime against a real pm-devbroker: order per key, parallelism, retries, DLQ, offsets.
 */
#include "harness.h"

#include "consumer.h"
#include "fiber.h"
#include "kafka_conf.h"
#include "kafka_producer.h"
#include "log.h"
#include "metrics.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOPIC   "t.in"
#define RESULTS "t.results"
#define DLQ     "t.dlq"
#define NKEYS   20
#define PERKEY  25

static struct harness *h;
static char bootstrap[512];

/* What the handler saw, for the checks. */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static int last_seq[NKEYS + 8];
static int order_errors;
static int calls_by_seq[4096];
static atomic_int running_now, running_max, done_fast;
static long long slow_finished_ms, fast_finished_ms;
static long long retry_times_ms[8];
static int nretry_times;
static pthread_t handler_threads[4]; /* distinct threads the handler ran on (the first 4) */
static int nhandler_threads;

/* The consumer runs its 8 workers as fibers on ONE thread (worker_threads = 1), the way
 * pm-deliver runs its handlers: every bit of parallelism below comes from handlers that wait
 * through fiber.h. A "sleep" is therefore a fiber_event that another thread posts later. */
struct wake_later {
    struct fiber_event ev;
    long ms;
};

static void *wake_later_main(void *arg)
{
    struct wake_later *w = arg;
    harness_sleep_ms(w->ms);
    fiber_event_post(&w->ev); /* touches w no more: the waiter's stack may go right after */
    return NULL;
}

static void handler_wait_ms(long ms)
{
    struct wake_later w = {.ms = ms};
    pthread_t t;
    if (fiber_event_init(&w.ev) != 0 || pthread_create(&t, NULL, wake_later_main, &w) != 0) {
        H_CHECKF(h, 0, "cannot start a timer thread");
        return;
    }
    fiber_event_wait(&w.ev);
    pthread_join(t, NULL); /* it has posted: it is on its way out */
    fiber_event_destroy(&w.ev);
}

static void handle(void *app, struct consumer_event *ev, struct consumer_outcome *out)
{
    json_t *d = ev->ce->data;
    const char *mode = json_string_value(json_object_get(d, "mode"));
    int seq = (int)json_integer_value(json_object_get(d, "seq"));
    int key = (int)json_integer_value(json_object_get(d, "k"));
    int now = atomic_fetch_add(&running_now, 1) + 1;
    (void)app;

    pthread_mutex_lock(&seen_lock);
    {
        int known = 0;
        for (int i = 0; i < nhandler_threads; i++)
            known |= pthread_equal(handler_threads[i], pthread_self());
        if (!known && nhandler_threads < 4)
            handler_threads[nhandler_threads++] = pthread_self();
    }
    if (now > atomic_load(&running_max))
        atomic_store(&running_max, now);
    if (seq >= 0 && seq < 4096)
        calls_by_seq[seq]++;
    pthread_mutex_unlock(&seen_lock);

    if (!mode)
        mode = "ok";
    if (!strncmp(mode, "sleep:", 6)) {
        handler_wait_ms(atol(mode + 6));
    } else if (!strcmp(mode, "retry2")) {
        pthread_mutex_lock(&seen_lock);
        if (nretry_times < 8)
            retry_times_ms[nretry_times++] = harness_now_ms();
        pthread_mutex_unlock(&seen_lock);
        if (ev->attempt < 3) {
            out->verdict = CONSUMER_RETRY;
            out->retry_after_ms = 400; /* the server's Retry-After beats a shorter backoff */
            snprintf(out->error, sizeof(out->error), "simulated 503");
            atomic_fetch_sub(&running_now, 1);
            return;
        }
    } else if (!strcmp(mode, "permanent")) {
        /* A long reason with non-ASCII wording, cut inside a character the way a handler's
         * snprintf of Canvas's OperationOutcome text into out->error cuts it. */
        char why[sizeof(out->error) + 8];
        size_t n = (size_t)snprintf(why, sizeof(why), "simulated 422 for event %d: ", seq);
        while (n < sizeof(out->error) - 2)
            why[n++] = 'x';
        memcpy(why + n, "\xc3\xa9", 2); /* U+00E9: only its first byte fits */
        memcpy(out->error, why, sizeof(out->error) - 1);
        out->error[sizeof(out->error) - 1] = '\0';
        out->verdict = CONSUMER_PERMANENT;
        atomic_fetch_sub(&running_now, 1);
        return;
    } else if (!strcmp(mode, "forever")) {
        out->verdict = CONSUMER_RETRY;
        snprintf(out->error, sizeof(out->error), "always 503");
        atomic_fetch_sub(&running_now, 1);
        return;
    }

    /* Per-key order: within a key, sequence numbers only grow. */
    pthread_mutex_lock(&seen_lock);
    if (key >= 0 && key < NKEYS + 8) {
        if (seq <= last_seq[key])
            order_errors++;
        last_seq[key] = seq;
    }
    pthread_mutex_unlock(&seen_lock);
    if (!strcmp(ev->key, "slow"))
        slow_finished_ms = harness_now_ms();
    else if (!strncmp(mode, "fast", 4) && atomic_fetch_add(&done_fast, 1) + 1 == 100)
        fast_finished_ms = harness_now_ms();
    consumer_publish_result(ev, "message", "webhook", "delivered", NULL, "p-1");
    out->verdict = CONSUMER_DONE;
    out->label = "delivered";
    atomic_fetch_sub(&running_now, 1);
}

static void failed(void *app, struct consumer_event *ev, const char *cls, const char *error)
{
    (void)app;
    consumer_publish_result(ev, "message", "webhook", "failed", error, NULL);
    (void)cls;
}

static const struct consumer_handler handlers[] = {
    {"test.v1", handle, failed},
};

static struct consumer *start_with(struct kafka_producer *p, int in_flight, long deadline_ms,
                                   int max_buffered, struct metrics_registry *m)
{
    struct kafka_settings ks = {bootstrap, 1, NULL, NULL};
    char err[256];
    const char *topics[] = {TOPIC, NULL};
    struct consumer_options o = {0};
    struct consumer *c;

    o.conf = kafka_conf_build(&ks, err, sizeof(err));
    /* The mock cluster only lets a new member in once a member that left has timed out (it
     * ignores LeaveGroup for that), so a short session keeps the restart below quick. */
    kafka_conf_set(o.conf, "session.timeout.ms", "6000", err, sizeof(err));
    if (getenv("PM_TEST_KAFKA_DEBUG"))
        kafka_conf_set(o.conf, "debug", getenv("PM_TEST_KAFKA_DEBUG"), err, sizeof(err));
    o.group_id = "test-group";
    o.topics = topics;
    o.producer = p;
    o.dlq_topic = DLQ;
    o.results_topic = RESULTS;
    o.handlers = handlers;
    o.nhandlers = 1;
    o.max_in_flight = in_flight;
    o.worker_threads = 1;
    o.retry_base_ms = 50;
    o.retry_max_ms = 200;
    o.retry_deadline_ms = deadline_ms;
    o.drain_timeout_ms = 10000;
    o.max_buffered = max_buffered;
    o.metrics = m;
    o.metrics_prefix = "t";
    c = consumer_start(&o, err, sizeof(err));
    H_CHECKF(h, c != NULL, "consumer_start: %s", err);
    return c;
}

static struct consumer *start(struct kafka_producer *p, int in_flight, long deadline_ms)
{
    return start_with(p, in_flight, deadline_ms, 0, NULL);
}

/* A gauge's value from the rendered registry ("<name> <value>" on a line of its own). */
static double gauge(struct metrics_registry *m, const char *name)
{
    char *text = metrics_render(m, NULL), *at = text;
    size_t n = strlen(name);
    double v = -1;
    while (at && (at = strstr(at, name)) != NULL) {
        if ((at == text || at[-1] == '\n') && at[n] == ' ') {
            v = atof(at + n + 1);
            break;
        }
        at += n;
    }
    free(text);
    return v;
}

/* Handler calls so far for the events numbered [first, first + n). */
static int handled_between(int first, int n)
{
    int done = 0;
    pthread_mutex_lock(&seen_lock);
    for (int s = first; s < first + n; s++)
        done += calls_by_seq[s] > 0;
    pthread_mutex_unlock(&seen_lock);
    return done;
}

static void produce_ack(void *opaque, const struct kafka_ack *ack)
{
    atomic_int *n = opaque;
    if (ack->err == 0)
        atomic_fetch_add(n, 1);
}

/* Enqueues one test event (kafka_producer_flush waits for them). */
static int produce(struct kafka_producer *p, const char *key, int k, int seq, const char *mode,
                   const char *raw)
{
    static atomic_int acked;
    static int sent;
    char value[512];
    rd_kafka_headers_t *hd = rd_kafka_headers_new(1);
    rd_kafka_header_add(hd, "content-type", -1, "application/cloudevents+json; charset=utf-8", -1);
    rd_kafka_header_add(hd, "x-custom", -1, "kept", -1);
    if (raw)
        snprintf(value, sizeof(value), "%s", raw);
    else
        snprintf(value, sizeof(value),
                 "{\"specversion\":\"1.0\",\"id\":\"ev-%d\",\"source\":\"test\",\"type\":"
                 "\"test.v1\",\"subject\":\"Patient/%s\",\"data\":{\"seq\":%d,\"k\":%d,"
                 "\"mode\":\"%s\"}}",
                 seq, key, seq, k, mode);
    if (kafka_producer_send(p, TOPIC, key, strlen(key), value, strlen(value), hd, produce_ack,
                            &acked) != 0)
        return -1;
    sent++;
    return sent;
}

/* Reads @p topic until @p want records are there. */
static int read_topic(const char *topic, size_t want, struct harness_kafka_records *out)
{
    char err[256];
    int rc = harness_kafka_read(bootstrap, topic, want, 60000, out, err, sizeof(err));
    H_CHECKF(h, rc == 0, "reading %s: %s (got %zu of %zu)", topic, err, out->n, want);
    return rc;
}

static const struct harness_kafka_record *find_dlq(const struct harness_kafka_records *r,
                                                   const char *needle)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].value && strstr(r->v[i].value, needle))
            return &r->v[i];
    return NULL;
}

int main(void)
{
    struct harness_proc *kafka;
    struct kafka_producer *prod;
    struct kafka_settings ks;
    struct consumer *c;
    char err[256];
    int seq = 0;

    h = harness_init("consumer");
    log_init("test-consumer", getenv("PM_TEST_LOG") ? LOG_DEBUG : LOG_ERROR);
    kafka = harness_devbroker_start(h, 1, 4, NULL, bootstrap, sizeof(bootstrap));
    if (!H_CHECK(h, kafka != NULL))
        return harness_finish(h);
    ks.brokers = bootstrap;
    ks.brokers_explicit = 1;
    ks.config_file = NULL;
    ks.defaults = NULL;
    prod = kafka_producer_new(kafka_conf_build(&ks, err, sizeof(err)), 30000, err, sizeof(err));
    if (!H_CHECKF(h, prod != NULL, "producer: %s", err))
        return harness_finish(h);
    for (int i = 0; i < NKEYS + 8; i++)
        last_seq[i] = -1;

    /* 1. Order per key with parallelism: 20 keys x 25 events, up to 8 at once. A slow key (5
     *    events of 1 s) must not hold up 100 fast events of other keys. */
    for (int i = 0; i < PERKEY; i++) {
        for (int k = 0; k < NKEYS; k++) {
            char key[16];
            snprintf(key, sizeof(key), "key-%02d", k);
            produce(prod, key, k, seq++, (i * 7 + k) % 5 == 0 ? "sleep:20" : "ok", NULL);
        }
    }
    int first_batch = seq;
    for (int i = 0; i < 5; i++)
        produce(prod, "slow", NKEYS, seq++, "sleep:1000", NULL);
    for (int i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof(key), "fast-%03d", i);
        produce(prod, key, -1, 100000 + i, "fast", NULL); /* distinct keys: no order check */
    }
    kafka_producer_flush(prod, 10000);

    long long t0 = harness_now_ms();
    c = start(prod, 8, 2000);
    if (!c)
        return harness_finish(h);
    {
        struct harness_kafka_records res = {0};
        read_topic(RESULTS, (size_t)first_batch + 5 + 100, &res);
        H_CHECK_INT(h, order_errors, 0);
        for (int s = 0; s < first_batch; s++)
            H_CHECKF(h, calls_by_seq[s] == 1, "event %d handled %d times", s, calls_by_seq[s]);
        H_CHECKF(h, atomic_load(&running_max) > 1 && atomic_load(&running_max) <= 8,
                 "max concurrency %d", atomic_load(&running_max));
        /* ... all of it on one thread: the waits gave the thread to the other fibers. */
        H_CHECK_INT(h, nhandler_threads, 1);
        /* The 100 fast events finished long before the slow key's 5 s of work. */
        H_CHECKF(h, fast_finished_ms > 0 && fast_finished_ms < slow_finished_ms - 2000,
                 "fast done at +%lld ms, slow at +%lld ms", fast_finished_ms - t0,
                 slow_finished_ms - t0);
        /* Results: key kept, delivery.result.v1 shape. */
        if (res.n > 0) {
            json_t *ce = json_loadb(res.v[0].value, res.v[0].value_len, 0, NULL);
            json_t *d = json_object_get(ce, "data");
            H_CHECK_STR(h, json_string_value(json_object_get(ce, "type")), "delivery.result.v1");
            H_CHECK_STR(h, json_string_value(json_object_get(d, "outcome")), "delivered");
            H_CHECK_STR(h, json_string_value(json_object_get(d, "provider_id")), "p-1");
            H_CHECK_INT(h, json_integer_value(json_object_get(d, "attempts")), 1);
            H_CHECK(h, json_is_string(json_object_get(d, "source_event_id")));
            json_decref(ce);
        }
        harness_kafka_records_free(&res);
    }

    /* 2. Retries honour Retry-After; permanent, invalid, unknown-type and exhausted records go
     *    to the DLQ with the SPEC's headers, unchanged, and the partition flows on. */
    int retry_seq = seq;
    produce(prod, "key-00", 0, seq++, "retry2", NULL);
    int perm_seq = seq;
    produce(prod, "key-01", 1, seq++, "permanent", NULL);
    produce(prod, "key-02", 2, seq++, "forever", NULL);
    produce(prod, "key-03", 3, seq++, NULL, "this is not json");
    produce(prod, "key-04", 4, seq++, NULL,
            "{\"specversion\":\"1.0\",\"id\":\"unknown-1\",\"source\":\"x\",\"type\":"
            "\"nobody.handles.v1\",\"data\":{}}");
    int after_seq = seq;
    produce(prod, "key-01", 1, seq++, "ok", NULL); /* same key as the permanent one: flows on */
    kafka_producer_flush(prod, 10000);
    {
        struct harness_kafka_records dlq = {0}, res = {0};
        const struct harness_kafka_record *r;
        read_topic(DLQ, 4, &dlq);
        r = find_dlq(&dlq, "\"permanent\"");
        if (H_CHECK(h, r != NULL)) {
            char want[64];
            const char *perr = harness_kafka_header(r, "pm-error");
            H_CHECK_STR(h, harness_kafka_header(r, "pm-error-class"), "permanent");
            snprintf(want, sizeof(want), "simulated 422 for event %d: xxx", perm_seq);
            H_CHECK(h, perr && strncmp(perr, want, strlen(want)) == 0);
            /* The reason was cut inside a character: the header stays well-formed UTF-8, the
             * stray byte written as U+FFFD (511 bytes in, 513 out). */
            size_t pl = perr ? strlen(perr) : 0;
            H_CHECK_INT(h, pl, 510 + 3);
            H_CHECK(h, pl >= 4 && memcmp(perr + pl - 4, "x\xef\xbf\xbd", 4) == 0);
            H_CHECK_STR(h, harness_kafka_header(r, "pm-source-topic"), TOPIC);
            H_CHECK(h, harness_kafka_header(r, "pm-source-partition") != NULL);
            H_CHECK(h, harness_kafka_header(r, "pm-source-offset") != NULL);
            H_CHECK_STR(h, harness_kafka_header(r, "pm-attempts"), "1");
            H_CHECK_STR(h, harness_kafka_header(r, "x-custom"), "kept");
            H_CHECK_STR(h, r->key, "key-01");
        }
        r = find_dlq(&dlq, "this is not json");
        if (H_CHECK(h, r != NULL)) {
            H_CHECK_STR(h, harness_kafka_header(r, "pm-error-class"), "invalid");
            H_CHECK_STR(h, r->value, "this is not json"); /* value unchanged */
        }
        r = find_dlq(&dlq, "nobody.handles.v1");
        if (H_CHECK(h, r != NULL))
            H_CHECK_STR(h, harness_kafka_header(r, "pm-error-class"), "invalid");
        r = find_dlq(&dlq, "\"forever\"");
        if (H_CHECK(h, r != NULL)) {
            const char *att = harness_kafka_header(r, "pm-attempts");
            H_CHECK_STR(h, harness_kafka_header(r, "pm-error-class"), "exhausted");
            H_CHECK(h, att && atoi(att) >= 2);
        }
        harness_kafka_records_free(&dlq);

        /* The retried event was handled 3 times, the waits honouring Retry-After (400 ms). */
        read_topic(RESULTS, (size_t)first_batch + 105 + 4, &res);
        /* The permanent failure's result is there although its reason was cut inside a
         * character: valid JSON, the reason kept up to the cut, which became U+FFFD. */
        {
            char needle[64];
            const struct harness_kafka_record *fr;
            snprintf(needle, sizeof(needle), "\"reason\":\"simulated 422 for event %d: ", perm_seq);
            fr = find_dlq(&res, needle);
            if (H_CHECK(h, fr != NULL)) {
                json_t *doc = json_loads(fr->value, 0, NULL);
                const char *reason =
                    json_string_value(json_object_get(json_object_get(doc, "data"), "reason"));
                size_t rl = reason ? strlen(reason) : 0;
                H_CHECK(h, doc != NULL);
                H_CHECK_INT(h, rl, 510 + 3);
                H_CHECK(h, rl >= 4 && memcmp(reason + rl - 4, "x\xef\xbf\xbd", 4) == 0);
                H_CHECK_STR(
                    h, json_string_value(json_object_get(json_object_get(doc, "data"), "outcome")),
                    "failed");
                json_decref(doc);
            }
        }
        H_CHECK_INT(h, calls_by_seq[retry_seq], 3);
        H_CHECK(h, nretry_times == 3 && retry_times_ms[1] - retry_times_ms[0] >= 390 &&
                       retry_times_ms[2] - retry_times_ms[1] >= 390);
        H_CHECK_INT(h, calls_by_seq[after_seq], 1);
        harness_kafka_records_free(&res);
    }

    /* 3. Stop: everything finished is committed; a new member of the group starts after it. */
    H_CHECK_INT(h, consumer_stop(c), 0);
    int before = calls_by_seq[after_seq];
    int restart_seq = seq;
    produce(prod, "key-05", 5, seq++, "ok", NULL);
    kafka_producer_flush(prod, 10000);
    c = start(prod, 4, 2000);
    if (c) {
        long long until = harness_now_ms() + 30000;
        while (calls_by_seq[restart_seq] == 0 && harness_now_ms() < until)
            harness_sleep_ms(50);
        H_CHECK_INT(h, calls_by_seq[restart_seq], 1);
        harness_sleep_ms(500);
        H_CHECK_INT(h, calls_by_seq[after_seq], before); /* not handled again */
        for (int s = 0; s < first_batch; s++)
            H_CHECKF(h, calls_by_seq[s] == 1, "event %d handled %d times after restart", s,
                     calls_by_seq[s]);
        H_CHECK_INT(h, consumer_stop(c), 0);
    }

    /* 4. A failing patient does not stall the others, even far past the in-memory buffer
     *    (16 x in-flight = 32 records here): its partition's committed offset waits, the other
     *    patients' records do not. */
    c = start(prod, 2, 60000);
    if (c) {
        int stuck_seq = seq, done = 0;
        long long until;
        produce(prod, "stuck", NKEYS + 7, seq++, "forever", NULL);
        int first_other = seq;
        for (int i = 0; i < 300; i++) {
            char key[16];
            snprintf(key, sizeof(key), "other-%03d", i);
            produce(prod, key, -1, seq++, "ok", NULL);
        }
        kafka_producer_flush(prod, 10000);
        until = harness_now_ms() + 30000;
        while (harness_now_ms() < until) {
            done = 0;
            pthread_mutex_lock(&seen_lock);
            for (int s2 = first_other; s2 < first_other + 300; s2++)
                done += calls_by_seq[s2] > 0;
            pthread_mutex_unlock(&seen_lock);
            if (done == 300)
                break;
            harness_sleep_ms(100);
        }
        H_CHECKF(h, done == 300, "only %d of 300 other patients' records were handled", done);
        /* The others may all be done before the stuck record's first backoff (at most 50 ms
         * here) has run out: wait for its retry rather than race it. */
        until = harness_now_ms() + 5000;
        for (int runs = 0; runs < 2 && harness_now_ms() < until;) {
            pthread_mutex_lock(&seen_lock);
            runs = calls_by_seq[stuck_seq];
            pthread_mutex_unlock(&seen_lock);
            if (runs < 2)
                harness_sleep_ms(20);
        }
        H_CHECKF(h, calls_by_seq[stuck_seq] >= 2, "the stuck record ran %d times",
                 calls_by_seq[stuck_seq]);
        consumer_stop(c); /* the stuck record is abandoned uncommitted: the next owner retries */
    }

    /* 5. Backpressure (buffer of 8, 2 at a time). a) A full buffer that keeps draining only
     *    holds the poll thread: the partitions are never paused (pausing makes librdkafka drop
     *    and refetch what it had prefetched, and the workers ran dry meanwhile), and no more
     *    than the buffer is taken. b) A buffer that stays full (both workers stuck for 2.5 s)
     *    pauses the partitions after about a second, and they are resumed once it drains. */
    struct metrics_registry *m = metrics_registry_new();
    c = m ? start_with(prod, 2, 60000, 8, m) : NULL;
    if (c) {
        int first = seq, done = 0, ever_paused = 0;
        double most = 0;
        long long until;
        for (int i = 0; i < 80; i++) {
            char key[16];
            snprintf(key, sizeof(key), "bp-%03d", i);
            produce(prod, key, -1, seq++, "sleep:15", NULL); /* 80 x 15 ms / 2: 0.6 s */
        }
        kafka_producer_flush(prod, 10000);
        until = harness_now_ms() + 30000;
        while (harness_now_ms() < until && (done = handled_between(first, 80)) < 80) {
            double b = gauge(m, "t_buffered");
            most = b > most ? b : most;
            ever_paused |= gauge(m, "t_paused") == 1;
            harness_sleep_ms(5);
        }
        H_CHECKF(h, done == 80, "only %d of 80 records were handled", done);
        H_CHECKF(h, !ever_paused, "partitions were paused while the buffer kept draining");
        H_CHECKF(h, most >= 6 && most <= 9, "at most %.0f records were buffered (limit 8)", most);

        int stuck_first = seq;
        long long filled_ms = 0, paused_ms = 0, resumed_ms = 0;
        produce(prod, "bp-stuck-a", -1, seq++, "sleep:2500", NULL);
        produce(prod, "bp-stuck-b", -1, seq++, "sleep:2500", NULL);
        for (int i = 0; i < 20; i++) {
            char key[16];
            snprintf(key, sizeof(key), "bp-wait-%02d", i);
            produce(prod, key, -1, seq++, "ok", NULL);
        }
        kafka_producer_flush(prod, 10000);
        most = 0;
        until = harness_now_ms() + 30000;
        while (harness_now_ms() < until && (done = handled_between(stuck_first, 22)) < 22) {
            double b = gauge(m, "t_buffered"), p = gauge(m, "t_paused");
            most = b > most ? b : most;
            if (!filled_ms && b >= 8)
                filled_ms = harness_now_ms();
            if (!paused_ms && p == 1)
                paused_ms = harness_now_ms();
            if (paused_ms && !resumed_ms && p == 0)
                resumed_ms = harness_now_ms();
            harness_sleep_ms(5);
        }
        /* When the pause took the last record in, everything is handled before the resume,
         * which follows once the buffer has drained to half (within one 50 ms poll). */
        until = harness_now_ms() + 2000;
        while (paused_ms && !resumed_ms && harness_now_ms() < until) {
            if (gauge(m, "t_paused") == 0)
                resumed_ms = harness_now_ms();
            else
                harness_sleep_ms(5);
        }
        H_CHECKF(h, done == 22, "only %d of 22 records were handled after the stall", done);
        H_CHECKF(h, filled_ms && paused_ms, "the buffer was %s full and the partitions %s paused",
                 filled_ms ? "" : "never", paused_ms ? "" : "never");
        H_CHECKF(h, !paused_ms || (paused_ms - filled_ms >= 500 && paused_ms - filled_ms <= 2400),
                 "paused %lld ms after the buffer filled (expected about 1,000)",
                 paused_ms - filled_ms);
        H_CHECKF(h, resumed_ms > 0, "the partitions were not resumed");
        H_CHECKF(h, most <= 9, "%.0f records were buffered (limit 8)", most);
        H_CHECK_INT(h, consumer_stop(c), 0);
    }
    metrics_registry_free(m);
    kafka_producer_destroy(prod, 5000);
    return harness_finish(h);
}
