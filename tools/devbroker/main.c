/* pm-devbroker: librdkafka's mock Kafka cluster as a process, with fault-injection controls. */

/*
 * What this is: a development and test broker. It speaks the real Kafka protocol over TCP, so
 * pm-ingest, pm-deliver, kcat and the integration tests use it exactly like a real cluster, but
 * everything lives in this process's memory.
 *
 * Limits of librdkafka's mock cluster (librdkafka 2.0.x) that users notice:
 *  - Listeners bind to 127.0.0.1 on random ports: the bootstrap list changes on every start and
 *    the broker cannot be reached from another host or container.
 *  - In memory only: everything is gone when the process exits. Each partition keeps only about
 *    5 MiB of log (older segments are dropped), so it is not a place for bulk data.
 *  - The first consumer-group join takes about 3 s (the mock's fixed rebalance delay); tests that
 *    only read should assign() partitions instead of subscribe().
 *  - No Admin API (CreateTopics, DeleteTopics, ...): the product topics are created here at start,
 *    others are auto-created by the mock on first produce/metadata request, or on request with
 *    the `create-topic` control command.
 *  - No TLS/SASL, no persistence of committed offsets across restarts, no transactions across
 *    restarts.
 *
 * Control channel (fault injection for tests): one command per line on stdin, and optionally on a
 * unix stream socket (--control PATH). Every command gets exactly one answer line on the channel
 * it came from: "ok", "ok <info>" or "error <reason>". Stdout carries the bootstrap list as its
 * first line and then only these answers; logs go to stderr as JSON lines.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "config.h"
#include "log.h"

#define DEVBROKER_PROG           "pm-devbroker"
#define DEVBROKER_MAX_BROKERS    16
#define DEVBROKER_MAX_PARTITIONS 256
#define DEVBROKER_MAX_CLIENTS    16
#define DEVBROKER_LINE_MAX       1024
#define DEVBROKER_MAX_WORDS      40
#define DEVBROKER_MAX_PUSHED     1000

/* The only global: set by the signal handler, read by the main loop. */
static volatile sig_atomic_t devbroker_stop;

/* The product topics (SPEC §3/§5), in the order --help lists them. */
static const struct config_var devbroker_vars[] = {
    {"PM_LOG_LEVEL", "info", 0, "error|warn|info|debug (debug also shows librdkafka's mock logs)"},
    {"PM_TOPIC_CANVAS_MESSAGES", CONFIG_TOPIC_MESSAGES_DEFAULT, 0, "topic created at start"},
    {"PM_TOPIC_PATIENT_REPLIES", CONFIG_TOPIC_REPLIES_DEFAULT, 0, "topic created at start"},
    {"PM_TOPIC_QUESTIONNAIRE_RESPONSES", CONFIG_TOPIC_QUESTIONNAIRES_DEFAULT, 0,
     "topic created at start"},
    {"PM_TOPIC_DELIVERIES", CONFIG_TOPIC_DELIVERIES_DEFAULT, 0, "topic created at start"},
    {"PM_TOPIC_DLQ", CONFIG_TOPIC_DLQ_DEFAULT, 0, "topic created at start"},
    {NULL, NULL, 0, NULL},
};

static const char devbroker_summary[] =
    "The embedded development Kafka broker: librdkafka's mock cluster in a process of its own,\n"
    "the real Kafka protocol over TCP on 127.0.0.1, in memory. Prints the bootstrap list as its\n"
    "first stdout line, creates the product topics, runs until SIGINT/SIGTERM.\n"
    "\n"
    "Options:\n"
    "  --brokers N            number of brokers, 1..16 (default 1)\n"
    "  --partitions N         partitions of each product topic, 1..256 (default 4);\n"
    "                         replication factor is min(3, brokers)\n"
    "  --bootstrap-file PATH  also write the bootstrap list to PATH (atomically; removed at exit)\n"
    "  --control PATH         also accept control commands on a unix stream socket at PATH\n"
    "\n"
    "Control commands (one per line on stdin or the control socket; one answer line each:\n"
    "\"ok\", \"ok <info>\" or \"error <reason>\"; broker ids are 1..N):\n"
    "  ping | bootstrap\n"
    "  down <broker|all>            up <broker|all>            rtt <broker|all> <ms>\n"
    "  leader <topic> <partition> <broker|-1>\n"
    "  errors <ApiKey> <count> <code> [code...]   next <count> requests fail, cycling codes\n"
    "  clear-errors <ApiKey>        topic-error <topic> <code>\n"
    "  create-topic <topic> <partitions>\n"
    "  ApiKey: number or Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch,\n"
    "  FindCoordinator, JoinGroup, Heartbeat, SyncGroup, InitProducerId. Codes: number or name\n"
    "  (NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS, _TRANSPORT, ...).\n"
    "\n"
    "Mock cluster limits: random loopback ports (new bootstrap list on every start), in memory\n"
    "only, about 5 MiB of log per partition, about 3 s for a consumer group's first join, no\n"
    "Admin API, no TLS/SASL. Once a group's last member has left, the next member to join waits\n"
    "for the mock's rebalance timer: session.timeout.ms - 1 s (44 s with librdkafka's default;\n"
    "real Kafka lets it in after 3 s). Consumers that are restarted against it (scripts/dev.sh's\n"
    "pm-deliver, your own) want session.timeout.ms=6000 in PM_KAFKA_CONFIG_FILE.";

struct devbroker_opts {
    int brokers;
    int partitions;
    const char *bootstrap_file; /* NULL: none */
    const char *control_path;   /* NULL: stdin only */
};

/* One control channel: stdin (answers on stdout) or one accepted socket connection. */
struct devbroker_chan {
    int fd;       /* -1: closed */
    int is_stdin; /* answers go to stdout */
    int overlong; /* the current line passed DEVBROKER_LINE_MAX: drop it, answer an error */
    size_t len;
    char buf[DEVBROKER_LINE_MAX];
};

struct devbroker {
    rd_kafka_mock_cluster_t *mc;
    int brokers;
};

static void devbroker_on_signal(int sig)
{
    (void)sig;
    devbroker_stop = 1;
}

/* librdkafka's own log lines (the dummy handle and the mock brokers): shown at debug only. They
 * carry broker addresses and topic names, never message contents. */
static void devbroker_rdkafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    if (log_enabled(LOG_DEBUG))
        log_debug("librdkafka log", LOG_S("type", fac), LOG_S("reason", buf));
}

/*
 * Pause after each mock-cluster call. librdkafka 2.0's mock thread can miss the wake-up of an
 * operation queued right after the previous one was answered (it drains its wake-up pipe after
 * serving the queue), and then serves it only at its next 1 s poll timeout: five topics created
 * back to back took 1-3 s to start. 2 ms lets the thread go back to waiting first.
 */
static void devbroker_mock_settle(void)
{
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* Parse a whole decimal number within [min, max]. @returns 0, or -1. */
static int devbroker_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Kafka's legal topic names: 1..249 of [A-Za-z0-9._-]. */
static int devbroker_topic_valid(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 249)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/*
 * Takes our own options out of argv; the rest (for config_cli) goes to @p rest / @p nrest.
 * @returns 0, or -1 with a usage problem in @p errstr.
 */
static int devbroker_parse_args(int argc, char **argv, struct devbroker_opts *o, char **rest,
                                int *nrest, char *errstr, size_t errlen)
{
    int n = 0;

    rest[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *names[] = {"--brokers", "--partitions", "--bootstrap-file", "--control"};
        const char *val = NULL;
        int which = -1;

        for (int k = 0; k < 4; k++) {
            size_t nl = strlen(names[k]);
            if (!strcmp(a, names[k])) {
                which = k;
                if (i + 1 >= argc) {
                    snprintf(errstr, errlen, "%s needs a value", names[k]);
                    return -1;
                }
                val = argv[++i];
            } else if (!strncmp(a, names[k], nl) && a[nl] == '=') {
                which = k;
                val = a + nl + 1;
            }
            if (which >= 0)
                break;
        }
        if (which < 0) {
            rest[n++] = argv[i];
            continue;
        }
        long v;
        switch (which) {
        case 0:
            if (devbroker_parse_long(val, 1, DEVBROKER_MAX_BROKERS, &v)) {
                snprintf(errstr, errlen, "--brokers: '%s' is not a whole number in 1..%d", val,
                         DEVBROKER_MAX_BROKERS);
                return -1;
            }
            o->brokers = (int)v;
            break;
        case 1:
            if (devbroker_parse_long(val, 1, DEVBROKER_MAX_PARTITIONS, &v)) {
                snprintf(errstr, errlen, "--partitions: '%s' is not a whole number in 1..%d", val,
                         DEVBROKER_MAX_PARTITIONS);
                return -1;
            }
            o->partitions = (int)v;
            break;
        case 2:
            if (!*val) {
                snprintf(errstr, errlen, "--bootstrap-file: empty path");
                return -1;
            }
            o->bootstrap_file = val;
            break;
        default:
            if (!*val || strlen(val) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
                snprintf(errstr, errlen, "--control: path is empty or longer than %zu bytes",
                         sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
                return -1;
            }
            o->control_path = val;
            break;
        }
    }
    rest[n] = NULL;
    *nrest = n;
    return 0;
}

/* The five product topic names from the environment. @returns the number of invalid names, each
 * recorded in @p r. */
static int devbroker_topics(const char *topics[5], struct config_report *r)
{
    int bad = 0;
    for (int i = 0; i < 5; i++) {
        const struct config_var *v = &devbroker_vars[i + 1];
        topics[i] = config_str(v->name, v->def);
        if (!devbroker_topic_valid(topics[i])) {
            config_report_add(r, "%s: '%s' is not a valid Kafka topic name", v->name, topics[i]);
            bad++;
        }
    }
    return bad;
}

/* Writes "@p text\n" to @p path through a temporary file and rename(2), so a reader never sees a
 * partial file. @returns 0, or -1 with errno set. */
static int devbroker_write_atomic(const char *path, const char *text)
{
    char tmp[PATH_MAX];
    int fd = -1, rc = -1, saved;
    size_t len = strlen(text), off = 0;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto out;
        off += (size_t)w;
    }
    if (write(fd, "\n", 1) != 1)
        goto out;
    if (close(fd) != 0) {
        fd = -1;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto out;
    rc = 0;
out:
    saved = errno;
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        unlink(tmp);
    errno = saved;
    return rc;
}

/* A listening unix stream socket at @p path (a stale socket file is replaced). @returns the fd,
 * or -1 with a reason in @p errstr. */
static int devbroker_control_listen(const char *path, char *errstr, size_t errlen)
{
    struct sockaddr_un sa;
    struct stat st;
    int fd;

    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(errstr, errlen, "--control: %s exists and is not a socket", path);
            return -1;
        }
        unlink(path); /* left over from an earlier run */
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1); /* length checked when parsing options */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(errstr, errlen, "--control: socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 8) != 0) {
        snprintf(errstr, errlen, "--control: cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Request types by name, for `errors` and `clear-errors` (Kafka protocol ApiKey numbers). */
static const struct {
    const char *name;
    int key;
} devbroker_apikeys[] = {
    {"Produce", 0},         {"Fetch", 1},       {"ListOffsets", 2},      {"Metadata", 3},
    {"OffsetCommit", 8},    {"OffsetFetch", 9}, {"FindCoordinator", 10}, {"JoinGroup", 11},
    {"Heartbeat", 12},      {"LeaveGroup", 13}, {"SyncGroup", 14},       {"ApiVersions", 18},
    {"InitProducerId", 22},
};

static int devbroker_parse_apikey(const char *s, int16_t *out)
{
    long v;
    for (size_t i = 0; i < sizeof(devbroker_apikeys) / sizeof(devbroker_apikeys[0]); i++) {
        if (!strcasecmp(s, devbroker_apikeys[i].name)) {
            *out = (int16_t)devbroker_apikeys[i].key;
            return 0;
        }
    }
    if (devbroker_parse_long(s, 0, 99, &v))
        return -1;
    *out = (int16_t)v;
    return 0;
}

/* An error code by number or by librdkafka's name (with or without the RD_KAFKA_RESP_ERR_
 * prefix, any case). Only codes librdkafka knows are accepted. */
static int devbroker_parse_errcode(const char *s, rd_kafka_resp_err_t *out)
{
    const struct rd_kafka_err_desc *descs;
    size_t n;
    long v = 0;
    int by_number;
    static const char prefix[] = "RD_KAFKA_RESP_ERR_";

    if (!strncasecmp(s, prefix, sizeof(prefix) - 1))
        s += sizeof(prefix) - 1;
    /* Kafka 2.4 renamed code 6; librdkafka 2.0 still names it NOT_LEADER_FOR_PARTITION. */
    if (!strcasecmp(s, "NOT_LEADER_OR_FOLLOWER"))
        s = "NOT_LEADER_FOR_PARTITION";
    by_number = devbroker_parse_long(s, -10000, 10000, &v) == 0;
    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++) {
        if (!descs[i].name)
            continue;
        if (by_number ? (long)descs[i].code == v : !strcasecmp(descs[i].name, s)) {
            *out = descs[i].code;
            return 0;
        }
    }
    return -1;
}

/* Resolves "<id>" or "all" to a broker id range. @returns 0, or -1 with an answer in @p ans. */
static int devbroker_parse_broker(const struct devbroker *db, const char *s, int *first, int *last,
                                  char *ans, size_t anslen)
{
    long v;
    if (!strcmp(s, "all")) {
        *first = 1;
        *last = db->brokers;
        return 0;
    }
    if (devbroker_parse_long(s, 1, db->brokers, &v)) {
        snprintf(ans, anslen, "error unknown broker '%s' (brokers are 1..%d or all)", s,
                 db->brokers);
        return -1;
    }
    *first = *last = (int)v;
    return 0;
}

/* Splits @p line in place at spaces and tabs. @returns the word count (at most @p max; more
 * words make it return max + 1). */
static int devbroker_split(char *line, char **words, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r')
            *p++ = '\0';
        if (!*p)
            return n;
        if (n == max)
            return max + 1;
        words[n++] = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\r')
            p++;
    }
}

/* Runs one control command and writes its single answer line (without newline) into @p ans. */
static void devbroker_command(struct devbroker *db, char *line, char *ans, size_t anslen)
{
    char *w[DEVBROKER_MAX_WORDS];
    int n = devbroker_split(line, w, DEVBROKER_MAX_WORDS);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    int first, last;
    long v, v2;

    if (n == 0) {
        snprintf(ans, anslen, "error empty command");
        return;
    }
    if (n > DEVBROKER_MAX_WORDS) {
        snprintf(ans, anslen, "error too many words");
        return;
    }
    log_debug("control command", LOG_S("command", w[0]));

    if (!strcmp(w[0], "ping") && n == 1) {
        snprintf(ans, anslen, "ok");
    } else if (!strcmp(w[0], "bootstrap") && n == 1) {
        snprintf(ans, anslen, "ok %s", rd_kafka_mock_cluster_bootstraps(db->mc));
    } else if ((!strcmp(w[0], "down") || !strcmp(w[0], "up")) && n == 2) {
        if (devbroker_parse_broker(db, w[1], &first, &last, ans, anslen))
            return;
        /* One id at a time: "-1 = all" is not honoured by every librdkafka version. */
        for (int id = first; id <= last && !err; id++) {
            err = w[0][0] == 'd' ? rd_kafka_mock_broker_set_down(db->mc, id)
                                 : rd_kafka_mock_broker_set_up(db->mc, id);
            devbroker_mock_settle();
        }
        if (err)
            snprintf(ans, anslen, "error %s", rd_kafka_err2name(err));
        else
            snprintf(ans, anslen, "ok");
    } else if (!strcmp(w[0], "rtt") && n == 3) {
        if (devbroker_parse_broker(db, w[1], &first, &last, ans, anslen))
            return;
        if (devbroker_parse_long(w[2], 0, 600000, &v)) {
            snprintf(ans, anslen, "error rtt: '%s' is not 0..600000 ms", w[2]);
            return;
        }
        for (int id = first; id <= last && !err; id++) {
            err = rd_kafka_mock_broker_set_rtt(db->mc, id, (int)v);
            devbroker_mock_settle();
        }
        if (err)
            snprintf(ans, anslen, "error %s", rd_kafka_err2name(err));
        else
            snprintf(ans, anslen, "ok");
    } else if (!strcmp(w[0], "leader") && n == 4) {
        if (!devbroker_topic_valid(w[1])) {
            snprintf(ans, anslen, "error invalid topic name");
            return;
        }
        if (devbroker_parse_long(w[2], 0, INT32_MAX, &v)) {
            snprintf(ans, anslen, "error invalid partition '%s'", w[2]);
            return;
        }
        if (strcmp(w[3], "-1") != 0) {
            if (devbroker_parse_broker(db, w[3], &first, &last, ans, anslen))
                return;
            if (first != last) {
                snprintf(ans, anslen, "error leader needs one broker id or -1");
                return;
            }
        } else {
            first = -1;
        }
        err = rd_kafka_mock_partition_set_leader(db->mc, w[1], (int32_t)v, first);
        devbroker_mock_settle();
        if (err)
            snprintf(ans, anslen, "error %s", rd_kafka_err2name(err));
        else
            snprintf(ans, anslen, "ok");
    } else if (!strcmp(w[0], "errors") && n >= 4) {
        int16_t key;
        rd_kafka_resp_err_t codes[DEVBROKER_MAX_WORDS];
        rd_kafka_resp_err_t *arr;
        int ncodes = n - 3;

        if (devbroker_parse_apikey(w[1], &key)) {
            snprintf(ans, anslen, "error unknown ApiKey '%s'", w[1]);
            return;
        }
        if (devbroker_parse_long(w[2], 1, DEVBROKER_MAX_PUSHED, &v)) {
            snprintf(ans, anslen, "error count '%s' is not 1..%d", w[2], DEVBROKER_MAX_PUSHED);
            return;
        }
        for (int i = 0; i < ncodes; i++) {
            if (devbroker_parse_errcode(w[3 + i], &codes[i])) {
                snprintf(ans, anslen, "error unknown error code '%s'", w[3 + i]);
                return;
            }
        }
        arr = calloc((size_t)v, sizeof(*arr));
        if (!arr) {
            snprintf(ans, anslen, "error out of memory");
            return;
        }
        /* count requests fail, with the given codes in turn (repeated when fewer are given). */
        for (long i = 0; i < v; i++)
            arr[i] = codes[i % ncodes];
        rd_kafka_mock_push_request_errors_array(db->mc, key, (size_t)v, arr);
        devbroker_mock_settle();
        free(arr);
        snprintf(ans, anslen, "ok %ld", v);
    } else if (!strcmp(w[0], "clear-errors") && n == 2) {
        int16_t key;
        if (devbroker_parse_apikey(w[1], &key)) {
            snprintf(ans, anslen, "error unknown ApiKey '%s'", w[1]);
            return;
        }
        rd_kafka_mock_clear_request_errors(db->mc, key);
        devbroker_mock_settle();
        snprintf(ans, anslen, "ok");
    } else if (!strcmp(w[0], "topic-error") && n == 3) {
        if (!devbroker_topic_valid(w[1])) {
            snprintf(ans, anslen, "error invalid topic name");
            return;
        }
        if (devbroker_parse_errcode(w[2], &err)) {
            snprintf(ans, anslen, "error unknown error code '%s'", w[2]);
            return;
        }
        rd_kafka_mock_topic_set_error(db->mc, w[1], err);
        devbroker_mock_settle();
        snprintf(ans, anslen, "ok");
    } else if (!strcmp(w[0], "create-topic") && n == 3) {
        if (!devbroker_topic_valid(w[1])) {
            snprintf(ans, anslen, "error invalid topic name");
            return;
        }
        if (devbroker_parse_long(w[2], 1, DEVBROKER_MAX_PARTITIONS, &v2)) {
            snprintf(ans, anslen, "error partitions '%s' is not 1..%d", w[2],
                     DEVBROKER_MAX_PARTITIONS);
            return;
        }
        err = rd_kafka_mock_topic_create(db->mc, w[1], (int)v2, db->brokers < 3 ? db->brokers : 3);
        devbroker_mock_settle();
        if (err)
            snprintf(ans, anslen, "error %s", rd_kafka_err2name(err));
        else
            snprintf(ans, anslen, "ok");
    } else {
        snprintf(ans, anslen, "error unknown command or wrong arguments (see --help)");
    }
}

/* Writes one answer line on the channel's way back. @returns 0, or -1 when the peer is gone. */
static int devbroker_answer(const struct devbroker_chan *c, const char *ans)
{
    char line[DEVBROKER_LINE_MAX + 2];
    int n = snprintf(line, sizeof(line), "%s\n", ans);
    size_t len = n < 0 ? 0 : (size_t)n >= sizeof(line) ? sizeof(line) - 1 : (size_t)n;
    size_t off = 0;

    if (c->is_stdin) {
        if (fwrite(line, 1, len, stdout) != len || fflush(stdout) != 0)
            return -1;
        return 0;
    }
    while (off < len) {
        ssize_t w = send(c->fd, line + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

/* Reads what is available on a channel and runs every complete line. @returns 0, or -1 at EOF
 * or error (the caller closes the channel). */
static int devbroker_chan_read(struct devbroker *db, struct devbroker_chan *c)
{
    char tmp[DEVBROKER_LINE_MAX];
    ssize_t r = read(c->fd, tmp, sizeof(tmp));

    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (r <= 0)
        return -1;
    for (ssize_t i = 0; i < r; i++) {
        char ch = tmp[i];
        if (ch != '\n') {
            if (c->len + 1 < sizeof(c->buf))
                c->buf[c->len++] = ch;
            else
                c->overlong = 1;
            continue;
        }
        char ans[DEVBROKER_LINE_MAX];
        c->buf[c->len] = '\0';
        if (c->overlong)
            snprintf(ans, sizeof(ans), "error line longer than %d bytes", DEVBROKER_LINE_MAX - 1);
        else
            devbroker_command(db, c->buf, ans, sizeof(ans));
        c->len = 0;
        c->overlong = 0;
        if (devbroker_answer(c, ans) != 0 && !c->is_stdin)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct devbroker_opts opts = {1, 4, NULL, NULL};
    struct devbroker db = {NULL, 1};
    struct devbroker_chan chans[1 + DEVBROKER_MAX_CLIENTS];
    struct config_report report = {0};
    const char *topics[5];
    char **rest = NULL;
    char errstr[512];
    rd_kafka_t *rk = NULL;
    rd_kafka_conf_t *conf = NULL;
    enum log_level level = LOG_INFO;
    enum config_mode mode;
    int nrest = 0, usage_bad, listen_fd = -1, wrote_bootstrap = 0, rc = 1;
    const char *bootstraps;

    for (size_t i = 0; i < sizeof(chans) / sizeof(chans[0]); i++)
        chans[i].fd = -1;

    rest = calloc((size_t)argc + 1, sizeof(*rest));
    if (!rest) {
        fprintf(stderr, "%s: out of memory\n", DEVBROKER_PROG);
        goto out;
    }
    usage_bad = devbroker_parse_args(argc, argv, &opts, rest, &nrest, errstr, sizeof(errstr));
    if (usage_bad) {
        /* --help and --version still work next to a bad option. */
        for (int i = 1; i < argc; i++) {
            if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") ||
                !strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
                char *one[] = {argv[0], argv[i], NULL};
                config_cli(2, one, DEVBROKER_PROG, devbroker_summary, devbroker_vars);
                rc = 0;
                goto out;
            }
        }
        fprintf(stderr, "%s: %s (see --help)\n", DEVBROKER_PROG, errstr);
        rc = 2;
        goto out;
    }
    mode = config_cli(nrest, rest, DEVBROKER_PROG, devbroker_summary, devbroker_vars);
    if (mode == CONFIG_MODE_EXIT_OK) {
        rc = 0;
        goto out;
    }
    if (mode == CONFIG_MODE_EXIT_USAGE) {
        rc = 2;
        goto out;
    }

    level = config_log_level(&report);
    devbroker_topics(topics, &report);
    if (mode == CONFIG_MODE_CHECK) {
        config_report_print(&report, stdout, DEVBROKER_PROG);
        if (!report.count)
            printf("%s: configuration ok\n", DEVBROKER_PROG);
        rc = report.count ? 1 : 0;
        goto out;
    }
    if (report.count) {
        config_report_print(&report, stderr, DEVBROKER_PROG);
        goto out;
    }
    log_init(DEVBROKER_PROG, level);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = devbroker_on_signal; /* no SA_RESTART: poll() returns EINTR at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The mock cluster needs an rd_kafka_t for its bookkeeping; this producer never produces. */
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, devbroker_rdkafka_log);
    if (rd_kafka_conf_set(conf, "client.id", DEVBROKER_PROG, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
        log_error("cannot configure librdkafka", LOG_S("error", errstr));
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        log_error("cannot create librdkafka handle", LOG_S("error", errstr));
        goto out;
    }
    conf = NULL; /* owned by rk now */

    db.brokers = opts.brokers;
    db.mc = rd_kafka_mock_cluster_new(rk, opts.brokers);
    if (!db.mc) {
        log_error("cannot create mock cluster", LOG_I("brokers", opts.brokers));
        goto out;
    }
    for (int i = 0; i < 5; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(db.mc, topics[i], opts.partitions,
                                                             opts.brokers < 3 ? opts.brokers : 3);
        devbroker_mock_settle();
        if (err) {
            log_error("cannot create topic", LOG_S("topic", topics[i]),
                      LOG_S("kafka_error", rd_kafka_err2name(err)));
            goto out;
        }
    }

    if (opts.control_path) {
        listen_fd = devbroker_control_listen(opts.control_path, errstr, sizeof(errstr));
        if (listen_fd < 0) {
            log_error("cannot open control socket", LOG_S("error", errstr));
            goto out;
        }
    }

    bootstraps = rd_kafka_mock_cluster_bootstraps(db.mc);
    if (opts.bootstrap_file) {
        if (devbroker_write_atomic(opts.bootstrap_file, bootstraps) != 0) {
            log_error("cannot write bootstrap file", LOG_S("path", opts.bootstrap_file),
                      LOG_S("error", strerror(errno)));
            goto out;
        }
        wrote_bootstrap = 1;
    }
    /* The contract with whoever started us: the first stdout line is the bootstrap list. */
    printf("%s\n", bootstraps);
    fflush(stdout);
    log_info("mock cluster ready", LOG_S("addr", bootstraps), LOG_I("brokers", opts.brokers),
             LOG_I("partitions", opts.partitions));

    chans[0].fd = STDIN_FILENO;
    chans[0].is_stdin = 1;
    while (!devbroker_stop) {
        struct pollfd pfd[2 + DEVBROKER_MAX_CLIENTS];
        int map[2 + DEVBROKER_MAX_CLIENTS]; /* pfd index -> chans index, -1 = listener */
        int np = 0;

        for (int i = 0; i < 1 + DEVBROKER_MAX_CLIENTS; i++) {
            if (chans[i].fd < 0)
                continue;
            pfd[np].fd = chans[i].fd;
            pfd[np].events = POLLIN;
            map[np++] = i;
        }
        if (listen_fd >= 0) {
            pfd[np].fd = listen_fd;
            pfd[np].events = POLLIN;
            map[np++] = -1;
        }
        /* With stdin at EOF and no socket, poll() just sleeps: we run until a signal. */
        int pr = poll(pfd, (nfds_t)np, 250);
        rd_kafka_poll(rk, 0);
        if (pr <= 0)
            continue;
        for (int k = 0; k < np; k++) {
            if (!pfd[k].revents)
                continue;
            if (map[k] < 0) {
                int cfd = accept(listen_fd, NULL, NULL);
                int slot = -1;
                if (cfd < 0)
                    continue;
                for (int i = 1; i < 1 + DEVBROKER_MAX_CLIENTS && slot < 0; i++)
                    if (chans[i].fd < 0)
                        slot = i;
                if (slot < 0) {
                    struct devbroker_chan tmp = {cfd, 0, 0, 0, {0}};
                    devbroker_answer(&tmp, "error too many control connections");
                    close(cfd);
                    continue;
                }
                (void)fcntl(cfd, F_SETFD, FD_CLOEXEC);
                chans[slot].fd = cfd;
                chans[slot].is_stdin = 0;
                chans[slot].len = 0;
                chans[slot].overlong = 0;
                continue;
            }
            struct devbroker_chan *c = &chans[map[k]];
            if (devbroker_chan_read(&db, c) != 0) {
                if (!c->is_stdin)
                    close(c->fd);
                else
                    log_debug("stdin closed; running until SIGINT/SIGTERM");
                c->fd = -1;
            }
        }
    }
    log_info("stopping on signal");
    rc = 0;

out:
    for (int i = 1; i < 1 + DEVBROKER_MAX_CLIENTS; i++)
        if (chans[i].fd >= 0)
            close(chans[i].fd);
    if (listen_fd >= 0) {
        close(listen_fd);
        unlink(opts.control_path);
    }
    if (wrote_bootstrap)
        unlink(opts.bootstrap_file); /* the ports die with us: leave no stale list behind */
    if (db.mc)
        rd_kafka_mock_cluster_destroy(db.mc);
    if (rk)
        rd_kafka_destroy(rk);
    if (conf)
        rd_kafka_conf_destroy(conf);
    free(rest);
    return rc;
}
