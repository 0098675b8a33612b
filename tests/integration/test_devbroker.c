/* Integration test of pm-devbroker: bootstrap line, product topics, produce/read, faults, exit. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"

static const char *const product_topics[] = {
    "pm.canvas.messages",
    "pm.patient.replies",
    "pm.patient.questionnaire-responses",
    "pm.deliveries",
    "pm.dlq",
};

/* --help lists the topic variables and exits 0; a bad --brokers is a usage error. */
static void test_cli(struct harness *h)
{
    const char *const help[] = {"pm-devbroker", "--help", NULL};
    const char *const zero[] = {"pm-devbroker", "--brokers", "0", NULL};
    const char *const many[] = {"pm-devbroker", "--partitions", "257", NULL};
    struct harness_proc *p;
    char *out;

    p = harness_proc_start(h, "devbroker-help", help, NULL);
    if (H_CHECK(h, p != NULL)) {
        H_CHECK_INT(h, harness_proc_wait(p, 10000), 0);
        out = harness_proc_stdout(p);
        H_CHECKF(h, out && strstr(out, "PM_TOPIC_DLQ"), "--help does not list PM_TOPIC_DLQ");
        H_CHECKF(h, out && strstr(out, "--partitions"), "--help does not list --partitions");
        free(out);
    }

    p = harness_proc_start(h, "devbroker-zero", zero, NULL);
    if (H_CHECK(h, p != NULL)) {
        int st = harness_proc_wait(p, 10000);
        H_CHECKF(h, st > 0 && st < 128, "--brokers 0 exited with %d, expected a usage error", st);
        out = harness_proc_stderr(p);
        H_CHECKF(h, out && strstr(out, "--brokers"), "the error does not name --brokers");
        free(out);
    }

    p = harness_proc_start(h, "devbroker-many", many, NULL);
    if (H_CHECK(h, p != NULL)) {
        int st = harness_proc_wait(p, 10000);
        H_CHECKF(h, st > 0 && st < 128, "--partitions 257 exited with %d", st);
    }
}

/* Every product topic exists with the requested partition count. */
static void test_topics(struct harness *h, const char *bootstrap)
{
    char err[256];

    for (size_t i = 0; i < sizeof(product_topics) / sizeof(product_topics[0]); i++) {
        int n =
            harness_kafka_partition_count(bootstrap, product_topics[i], 10000, err, sizeof(err));
        H_CHECKF(h, n == 3, "topic %s has %d partitions, expected 3 (%s)", product_topics[i], n,
                 n < 0 ? err : "");
    }
}

/* One record with key, value and headers goes in and comes back out unchanged. */
static void test_roundtrip(struct harness *h, const char *bootstrap)
{
    static const char value[] = "{\"specversion\":\"1.0\",\"id\":\"evt-1\"}";
    const char *const headers[] = {"content-type", "application/cloudevents+json; charset=utf-8",
                                   "traceparent",
                                   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL};
    struct harness_kafka_produce req = {0};
    struct harness_kafka_records recs = {0};
    int32_t partition = -1;
    int64_t offset = -1;
    char err[256];

    req.topic = "pm.canvas.messages";
    req.key = "patient-123";
    req.value = value;
    req.value_len = strlen(value);
    req.headers = headers;
    req.timeout_ms = 10000;
    if (!H_CHECKF(
            h, harness_kafka_produce(bootstrap, &req, &partition, &offset, err, sizeof(err)) == 0,
            "produce failed: %s", err))
        return;
    H_CHECK(h, partition >= 0 && partition < 3);
    H_CHECK_INT(h, offset, 0);

    if (H_CHECKF(h,
                 harness_kafka_read(bootstrap, "pm.canvas.messages", 1, 15000, &recs, err,
                                    sizeof(err)) == 0,
                 "read failed: %s", err) &&
        H_CHECK_INT(h, recs.n, 1)) {
        const struct harness_kafka_record *r = &recs.v[0];
        H_CHECK_STR(h, r->topic, "pm.canvas.messages");
        H_CHECK_STR(h, r->key, "patient-123");
        H_CHECK_STR(h, r->value, value);
        H_CHECK_INT(h, r->value_len, strlen(value));
        H_CHECK_INT(h, r->partition, partition);
        H_CHECK_INT(h, r->offset, offset);
        H_CHECK_STR(h, harness_kafka_header(r, "content-type"),
                    "application/cloudevents+json; charset=utf-8");
        H_CHECK_STR(h, harness_kafka_header(r, "traceparent"), headers[3]);
        H_CHECK(h, harness_kafka_header(r, "missing") == NULL);
    }
    harness_kafka_records_free(&recs);

    /* want == 0: what the topic holds now, ending at every partition's end. */
    H_CHECKF(h, harness_kafka_read(bootstrap, "pm.dlq", 0, 15000, &recs, err, sizeof(err)) == 0,
             "reading the empty pm.dlq failed: %s", err);
    H_CHECK_INT(h, recs.n, 0);
    harness_kafka_records_free(&recs);
}

/* "down all" makes a produce fail with a delivery error; "up all" makes it work again. */
static void test_faults(struct harness *h, struct harness_proc *broker, const char *bootstrap)
{
    const char *const fast[] = {"message.timeout.ms", "2000", NULL};
    struct harness_kafka_produce req = {0};
    char ans[256], err[256];
    long long t0;
    int rc;

    req.topic = "pm.patient.replies";
    req.key = "patient-9";
    req.value = "x";
    req.value_len = 1;
    req.conf = fast;

    H_CHECKF(h, harness_devbroker_cmd(broker, "ping", ans, sizeof(ans)) == 0, "ping: %s", ans);
    H_CHECK_STR(h, ans, "ok");

    H_CHECKF(h, harness_devbroker_cmd(broker, "down all", ans, sizeof(ans)) == 0, "down: %s", ans);
    t0 = harness_now_ms();
    rc = harness_kafka_produce(bootstrap, &req, NULL, NULL, err, sizeof(err));
    H_CHECKF(h, rc != 0, "produce succeeded while every broker was down");
    H_CHECKF(h, strstr(err, "delivery failed") != NULL, "expected a delivery error, got: %s", err);
    H_CHECKF(h, harness_now_ms() - t0 < 15000, "the failing produce took %lld ms",
             harness_now_ms() - t0);

    H_CHECKF(h, harness_devbroker_cmd(broker, "up all", ans, sizeof(ans)) == 0, "up: %s", ans);
    req.timeout_ms = 10000;
    req.conf = NULL;
    rc = harness_kafka_produce(bootstrap, &req, NULL, NULL, err, sizeof(err));
    H_CHECKF(h, rc == 0, "produce after 'up all' failed: %s", err);

    /* Injected request errors: the next Produce fails with a retriable error that the producer
     * retries, so the record still arrives. */
    H_CHECKF(h,
             harness_devbroker_cmd(broker, "errors Produce 2 NOT_LEADER_FOR_PARTITION", ans,
                                   sizeof(ans)) == 0,
             "errors: %s", ans);
    rc = harness_kafka_produce(bootstrap, &req, NULL, NULL, err, sizeof(err));
    H_CHECKF(h, rc == 0, "produce after retriable injected errors failed: %s", err);
    /* A permanent error is reported as a delivery failure. */
    H_CHECKF(h,
             harness_devbroker_cmd(broker, "errors Produce 1 TOPIC_AUTHORIZATION_FAILED", ans,
                                   sizeof(ans)) == 0,
             "errors: %s", ans);
    rc = harness_kafka_produce(bootstrap, &req, NULL, NULL, err, sizeof(err));
    H_CHECKF(h, rc != 0 && strstr(err, "TOPIC_AUTHORIZATION_FAILED"),
             "expected TOPIC_AUTHORIZATION_FAILED, got rc %d: %s", rc, err);

    H_CHECKF(h, harness_devbroker_cmd(broker, "create-topic pm.extra 5", ans, sizeof(ans)) == 0,
             "create-topic: %s", ans);
    H_CHECK_INT(h, harness_kafka_partition_count(bootstrap, "pm.extra", 10000, err, sizeof(err)),
                5);

    /* clear-errors drops what is still queued: the next produce is not hit. */
    H_CHECKF(h, harness_devbroker_cmd(broker, "errors 0 5 29", ans, sizeof(ans)) == 0,
             "errors by number: %s", ans);
    H_CHECK_STR(h, ans, "ok 5");
    H_CHECKF(h, harness_devbroker_cmd(broker, "clear-errors Produce", ans, sizeof(ans)) == 0,
             "clear-errors: %s", ans);
    rc = harness_kafka_produce(bootstrap, &req, NULL, NULL, err, sizeof(err));
    H_CHECKF(h, rc == 0, "produce after clear-errors failed: %s", err);

    /* topic-error makes Metadata report the topic as failed; NO_ERROR restores it. */
    H_CHECKF(h,
             harness_devbroker_cmd(broker, "topic-error pm.extra TOPIC_AUTHORIZATION_FAILED", ans,
                                   sizeof(ans)) == 0,
             "topic-error: %s", ans);
    H_CHECK_INT(h, harness_kafka_partition_count(bootstrap, "pm.extra", 10000, err, sizeof(err)),
                0);
    H_CHECKF(h,
             harness_devbroker_cmd(broker, "topic-error pm.extra NO_ERROR", ans, sizeof(ans)) == 0,
             "topic-error NO_ERROR: %s", ans);
    H_CHECK_INT(h, harness_kafka_partition_count(bootstrap, "pm.extra", 10000, err, sizeof(err)),
                5);

    H_CHECK(h, harness_devbroker_cmd(broker, "errors Produce 1 NOT_A_CODE", ans, sizeof(ans)) != 0);
    H_CHECKF(h, !strncmp(ans, "error ", 6), "unknown code answered \"%s\"", ans);
    H_CHECK(h, harness_devbroker_cmd(broker, "frobnicate 3", ans, sizeof(ans)) != 0);
    H_CHECKF(h, !strncmp(ans, "error ", 6), "bad command answered \"%s\"", ans);
    H_CHECK(h, harness_devbroker_cmd(broker, "down 7", ans, sizeof(ans)) != 0);
    H_CHECKF(h, !strncmp(ans, "error ", 6), "unknown broker answered \"%s\"", ans);
    /* The channel still works after errors. */
    H_CHECK(h, harness_devbroker_cmd(broker, "ping", NULL, 0) == 0);
}

/* One command over the --control unix socket. @returns 0 with the answer line in @p ans. */
static int control_cmd(const char *path, const char *cmd, char *ans, size_t len)
{
    struct sockaddr_un sa;
    struct timeval tv = {10, 0};
    size_t n = 0;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0), rc = -1;

    ans[0] = '\0';
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) < 0 || send(fd, "\n", 1, MSG_NOSIGNAL) < 0)
        goto out;
    while (n + 1 < len) {
        ssize_t r = recv(fd, ans + n, 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            goto out;
        if (ans[n] == '\n')
            break;
        n++;
    }
    ans[n] = '\0';
    rc = 0;
out:
    close(fd);
    return rc;
}

/* Three brokers: bootstrap file and control socket, per-broker faults, leader moves, SIGINT. */
static void test_multi_broker(struct harness *h)
{
    char bfile[512], ctl[512], first[512], ans[256], err[256];
    char *file;
    struct harness_proc *p;
    struct harness_kafka_produce req = {0};
    int commas = 0;

    if (!H_CHECK(h, harness_path(h, "bootstrap.txt", bfile, sizeof(bfile)) != NULL) ||
        !H_CHECK(h, harness_path(h, "ctl.sock", ctl, sizeof(ctl)) != NULL))
        return;
    const char *const argv[] = {
        "pm-devbroker", "--brokers", "3", "--partitions=2", "--bootstrap-file", bfile,
        "--control",    ctl,         NULL};
    const char *const env[] = {"PM_TOPIC_DLQ=custom.dlq", "PM_LOG_LEVEL=debug", NULL};
    p = harness_proc_start(h, "devbroker3", argv, env);
    if (!H_CHECK(h, p != NULL))
        return;
    if (!H_CHECK(h, harness_proc_read_line(p, first, sizeof(first), 20000) == 0))
        return;
    for (const char *c = first; *c; c++)
        commas += *c == ',';
    H_CHECKF(h, commas == 2, "3 brokers but bootstrap list \"%s\"", first);
    file = harness_file_read(bfile, NULL);
    H_CHECKF(h, file && !strncmp(file, first, strlen(first)) && !strcmp(file + strlen(first), "\n"),
             "bootstrap file holds \"%s\", stdout said \"%s\"", file ? file : "(none)", first);
    free(file);

    H_CHECK_INT(h, harness_kafka_partition_count(first, "custom.dlq", 10000, err, sizeof(err)), 2);
    H_CHECK_INT(h, harness_kafka_partition_count(first, "pm.dlq", 10000, err, sizeof(err)), 0);

    H_CHECKF(h, control_cmd(ctl, "ping", ans, sizeof(ans)) == 0 && !strcmp(ans, "ok"),
             "control socket ping answered \"%s\"", ans);
    H_CHECKF(h,
             control_cmd(ctl, "bootstrap", ans, sizeof(ans)) == 0 && !strncmp(ans, "ok ", 3) &&
                 !strcmp(ans + 3, first),
             "control socket bootstrap answered \"%s\"", ans);
    /* Move every partition of a topic to broker 3, take broker 1 down: produce still works. */
    H_CHECKF(h,
             control_cmd(ctl, "leader pm.deliveries 0 3", ans, sizeof(ans)) == 0 &&
                 !strcmp(ans, "ok"),
             "leader answered \"%s\"", ans);
    H_CHECKF(h,
             control_cmd(ctl, "leader pm.deliveries 1 3", ans, sizeof(ans)) == 0 &&
                 !strcmp(ans, "ok"),
             "leader answered \"%s\"", ans);
    H_CHECKF(h, control_cmd(ctl, "rtt 2 5", ans, sizeof(ans)) == 0 && !strcmp(ans, "ok"),
             "rtt answered \"%s\"", ans);
    H_CHECKF(h, harness_devbroker_cmd(p, "down 1", ans, sizeof(ans)) == 0, "down 1: %s", ans);
    req.topic = "pm.deliveries";
    req.key = "k";
    req.value = "v";
    req.value_len = 1;
    req.timeout_ms = 10000;
    H_CHECKF(h, harness_kafka_produce(first, &req, NULL, NULL, err, sizeof(err)) == 0,
             "produce with broker 1 down and leaders on 3 failed: %s", err);
    H_CHECKF(h, control_cmd(ctl, "up 1", ans, sizeof(ans)) == 0 && !strcmp(ans, "ok"),
             "up 1 answered \"%s\"", ans);

    H_CHECK(h, harness_proc_signal(p, SIGINT) == 0);
    H_CHECK_INT(h, harness_proc_wait(p, 5000), 0);
    H_CHECKF(h, access(bfile, F_OK) != 0, "bootstrap file left behind after exit");
    H_CHECKF(h, access(ctl, F_OK) != 0, "control socket left behind after exit");
}

int main(void)
{
    struct harness *h = harness_init("devbroker");
    struct harness_proc *broker;
    char bootstrap[512];
    long long t0;
    char *out;

    test_cli(h);

    broker = harness_devbroker_start(h, 1, 3, NULL, bootstrap, sizeof(bootstrap));
    if (!H_CHECK(h, broker != NULL))
        return harness_finish(h);
    H_CHECKF(h, !strncmp(bootstrap, "127.0.0.1:", 10), "bootstrap list \"%s\"", bootstrap);
    H_CHECKF(h, strchr(bootstrap, ' ') == NULL, "bootstrap list \"%s\" has spaces", bootstrap);

    test_topics(h, bootstrap);
    test_roundtrip(h, bootstrap);
    test_faults(h, broker, bootstrap);
    test_multi_broker(h);

    t0 = harness_now_ms();
    H_CHECK(h, harness_proc_signal(broker, SIGTERM) == 0);
    H_CHECK_INT(h, harness_proc_wait(broker, 5000), 0);
    H_CHECKF(h, harness_now_ms() - t0 < 3000, "SIGTERM took %lld ms", harness_now_ms() - t0);

    /* Stdout holds the bootstrap list and one answer per command, nothing else. */
    out = harness_proc_stdout(broker);
    H_CHECKF(h,
             out && !strncmp(out, bootstrap, strlen(bootstrap)) && out[strlen(bootstrap)] == '\n',
             "stdout does not start with the bootstrap line");
    free(out);

    return harness_finish(h);
}
