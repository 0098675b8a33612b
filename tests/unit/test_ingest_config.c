/* Unit tests for ingest_config: credentials required, secrets never echoed, _FILE variants,
 * listen address, ranges and defaults. */
#include "ingest.h"
#include "unit.h"

#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WHSEC       "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define BAD_WHSEC   "whsec_Not*Base64*Secret*Value"
#define TOKEN1      "0123456789abcdef" /* exactly 16: the shortest accepted */
#define TOKEN2      "second-bearer-token-with-length"
#define SHORT_TOKEN "Short-Tok3n-15c" /* 15 characters */

static const unsigned char WHSEC_KEY[24] = {0x31, 0xf2, 0x90, 0xf6, 0xbf, 0x06, 0x29, 0x8a,
                                            0xab, 0x4f, 0x08, 0xd4, 0x3c, 0x3f, 0x08, 0x2c,
                                            0xf6, 0x48, 0xa3, 0x62, 0xda, 0x2d, 0xa4, 0xb0};

static char tmp_paths[8][64];
static int ntmp;

static const char *temp_file(const char *text)
{
    char *path = tmp_paths[ntmp++];
    size_t len = strlen(text), off = 0;
    int fd;

    snprintf(path, sizeof(tmp_paths[0]), "/tmp/pm-test-ingest-config-XXXXXX");
    fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return "/nonexistent";
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(fd);
    return path;
}

/* Every variable the service reads, and the _FILE form of each. */
static void env_clear(void)
{
    char name[128];
    for (const struct config_var *v = ingest_config_vars; v->name; v++) {
        unsetenv(v->name);
        snprintf(name, sizeof(name), "%s_FILE", v->name);
        unsetenv(name);
    }
}

/* Loads the configuration into @p cfg; @returns the number of problems. */
static int load(struct ingest_config *cfg, struct config_report *r)
{
    memset(r, 0, sizeof(*r));
    ingest_config_load(cfg, r);
    return r->count;
}

static int report_has(const struct config_report *r, const char *s)
{
    return strstr(r->text, s) != NULL;
}

static void token_hash(const char *token, unsigned char out[32])
{
    SHA256((const unsigned char *)token, strlen(token), out);
}

static void test_defaults(void)
{
    struct ingest_config cfg;
    struct config_report r;

    env_clear();
    setenv("PM_INGEST_ALLOW_UNAUTHENTICATED", "1", 1);
    CHECK_INT(load(&cfg, &r), 0);
    if (r.count)
        fprintf(stderr, "%s", r.text);
    CHECK_INT(cfg.allow_unauthenticated, 1);
    CHECK_INT(cfg.nkeys, 0);
    CHECK_INT(cfg.ntokens, 0);
    CHECK_STR(cfg.topic_messages, "pm.canvas.messages");
    CHECK_STR(cfg.topic_replies, "pm.patient.replies");
    CHECK_STR(cfg.topic_questionnaires, "pm.patient.questionnaire-responses");
    CHECK_STR(cfg.listen_host, "0.0.0.0");
    CHECK_INT(cfg.listen_port, 8080);
    CHECK_INT(cfg.max_body_bytes, 1048576);
    CHECK_INT(cfg.ack_timeout_ms, 10000);
    CHECK_INT(cfg.threads, 2);
    CHECK_INT(cfg.max_connections, 4096);
    CHECK_INT(cfg.connection_timeout_s, 30);
    CHECK_INT(cfg.dedup_capacity, 100000);
    CHECK_INT(cfg.dedup_ttl_s, 86400);
    CHECK_INT(cfg.log_level, LOG_INFO);
    CHECK_STR(cfg.kafka.brokers, "localhost:9092");
    CHECK_INT(cfg.kafka.brokers_explicit, 0);
    CHECK(cfg.kafka.config_file == NULL);
    ingest_config_free(&cfg);
    CHECK(cfg.keys == NULL && cfg.token_hashes == NULL && cfg.nkeys == 0);

    /* The defaults in --help are the ones applied. */
    for (const struct config_var *v = ingest_config_vars; v->name; v++) {
        if (!strcmp(v->name, "PM_INGEST_DEDUP_CAPACITY"))
            CHECK_STR(v->def, "100000");
        if (!strcmp(v->name, "PM_INGEST_MAX_BODY_BYTES"))
            CHECK_STR(v->def, "1048576");
        if (!strcmp(v->name, "PM_INGEST_ACK_TIMEOUT_MS"))
            CHECK_STR(v->def, "10000");
        if (!strcmp(v->name, "PM_INGEST_WEBHOOK_SECRETS") ||
            !strcmp(v->name, "PM_INGEST_BEARER_TOKENS"))
            CHECK_INT(v->secret, 1);
    }
}

static void test_credentials_required(void)
{
    struct ingest_config cfg;
    struct config_report r;

    env_clear();
    CHECK_INT(load(&cfg, &r), 1);
    CHECK(report_has(&r, "no credentials"));
    ingest_config_free(&cfg);

    setenv("PM_INGEST_ALLOW_UNAUTHENTICATED", "0", 1);
    CHECK_INT(load(&cfg, &r), 1);
    CHECK(report_has(&r, "no credentials"));
    ingest_config_free(&cfg);

    setenv("PM_INGEST_ALLOW_UNAUTHENTICATED", "maybe", 1);
    CHECK_INT(load(&cfg, &r), 2); /* not a boolean, and then still no credentials */
    CHECK(report_has(&r, "PM_INGEST_ALLOW_UNAUTHENTICATED"));
    CHECK(report_has(&r, "no credentials"));
    ingest_config_free(&cfg);

    /* Empty lists are no credentials either. */
    env_clear();
    setenv("PM_INGEST_BEARER_TOKENS", " , ,", 1);
    setenv("PM_INGEST_WEBHOOK_SECRETS", ",", 1);
    CHECK_INT(load(&cfg, &r), 1);
    CHECK(report_has(&r, "no credentials"));
    ingest_config_free(&cfg);
}

static void test_tokens(void)
{
    struct ingest_config cfg;
    struct config_report r;
    unsigned char h[32];

    env_clear();
    setenv("PM_INGEST_BEARER_TOKENS", " " TOKEN1 " ,  " TOKEN2 "  ", 1);
    CHECK_INT(load(&cfg, &r), 0);
    CHECK_INT(cfg.ntokens, 2);
    CHECK_INT(cfg.allow_unauthenticated, 0);
    if (cfg.ntokens == 2) {
        token_hash(TOKEN1, h); /* trimmed before hashing */
        CHECK(memcmp(cfg.token_hashes[0], h, 32) == 0);
        token_hash(TOKEN2, h);
        CHECK(memcmp(cfg.token_hashes[1], h, 32) == 0);
    }
    ingest_config_free(&cfg);

    /* A short token is refused (index named, token not shown), even next to a good one. */
    setenv("PM_INGEST_BEARER_TOKENS", TOKEN1 "," SHORT_TOKEN, 1);
    CHECK_INT(load(&cfg, &r), 1);
    CHECK(report_has(&r, "PM_INGEST_BEARER_TOKENS"));
    CHECK(report_has(&r, "entry 2"));
    CHECK(!report_has(&r, SHORT_TOKEN));
    CHECK(!report_has(&r, TOKEN1));
    CHECK_INT(cfg.ntokens, 1);
    ingest_config_free(&cfg);

    setenv("PM_INGEST_BEARER_TOKENS", SHORT_TOKEN, 1);
    CHECK_INT(load(&cfg, &r), 2); /* too short, and so no credentials */
    CHECK(!report_has(&r, SHORT_TOKEN));
    CHECK(report_has(&r, "no credentials"));
    ingest_config_free(&cfg);
}

static void test_webhook_secrets(void)
{
    struct ingest_config cfg;
    struct config_report r;

    env_clear();
    setenv("PM_INGEST_WEBHOOK_SECRETS", WHSEC, 1);
    CHECK_INT(load(&cfg, &r), 0);
    CHECK_INT(cfg.nkeys, 1);
    if (cfg.nkeys == 1) {
        CHECK_INT(cfg.keys[0].len, 24);
        CHECK(memcmp(cfg.keys[0].key, WHSEC_KEY, 24) == 0);
    }
    ingest_config_free(&cfg);

    /* Several for rotation. */
    setenv("PM_INGEST_WEBHOOK_SECRETS", WHSEC ", whsec_c2Vjb25kLWtleQ==", 1);
    CHECK_INT(load(&cfg, &r), 0);
    CHECK_INT(cfg.nkeys, 2);
    if (cfg.nkeys == 2) {
        CHECK_INT(cfg.keys[1].len, 10);
        CHECK(memcmp(cfg.keys[1].key, "second-key", 10) == 0);
    }
    ingest_config_free(&cfg);

    /* A bad one is reported by position, without its text. */
    setenv("PM_INGEST_WEBHOOK_SECRETS", WHSEC "," BAD_WHSEC, 1);
    CHECK_INT(load(&cfg, &r), 1);
    CHECK(report_has(&r, "PM_INGEST_WEBHOOK_SECRETS"));
    CHECK(report_has(&r, "entry 2"));
    CHECK(!report_has(&r, "Not*Base64*Secret*Value"));
    CHECK(!report_has(&r, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    CHECK_INT(cfg.nkeys, 1);
    ingest_config_free(&cfg);

    setenv("PM_INGEST_WEBHOOK_SECRETS", "whsec_", 1);
    CHECK_INT(load(&cfg, &r), 2);
    CHECK(report_has(&r, "entry 1"));
    CHECK(report_has(&r, "no credentials"));
    ingest_config_free(&cfg);

    /* Secrets and tokens together. */
    setenv("PM_INGEST_WEBHOOK_SECRETS", WHSEC, 1);
    setenv("PM_INGEST_BEARER_TOKENS", TOKEN2, 1);
    CHECK_INT(load(&cfg, &r), 0);
    CHECK_INT(cfg.nkeys, 1);
    CHECK_INT(cfg.ntokens, 1);
    ingest_config_free(&cfg);
}

static void test_file_variants(void)
{
    struct ingest_config cfg;
    struct config_report r;
    unsigned char h[32];

    env_clear();
    setenv("PM_INGEST_BEARER_TOKENS_FILE", temp_file(TOKEN2 "\n"), 1);
    setenv("PM_INGEST_WEBHOOK_SECRETS_FILE", temp_file(WHSEC "\r\n"), 1);
    CHECK_INT(load(&cfg, &r), 0);
    if (r.count)
        fprintf(stderr, "%s", r.text);
    CHECK_INT(cfg.ntokens, 1);
    if (cfg.ntokens == 1) {
        token_hash(TOKEN2, h); /* the trailing newline is not part of the token */
        CHECK(memcmp(cfg.token_hashes[0], h, 32) == 0);
    }
    CHECK_INT(cfg.nkeys, 1);
    if (cfg.nkeys == 1)
        CHECK(memcmp(cfg.keys[0].key, WHSEC_KEY, 24) == 0);
    ingest_config_free(&cfg);

    /* A short token from a file is refused like one from the environment. */
    setenv("PM_INGEST_BEARER_TOKENS_FILE", temp_file(SHORT_TOKEN "\n"), 1);
    CHECK_INT(load(&cfg, &r), 1);
    CHECK(!report_has(&r, SHORT_TOKEN));
    ingest_config_free(&cfg);

    /* Both forms set: ambiguous, refused. */
    setenv("PM_INGEST_BEARER_TOKENS_FILE", temp_file(TOKEN2 "\n"), 1);
    setenv("PM_INGEST_BEARER_TOKENS", TOKEN1, 1);
    CHECK(load(&cfg, &r) >= 1);
    CHECK(report_has(&r, "PM_INGEST_BEARER_TOKENS_FILE"));
    CHECK(!report_has(&r, TOKEN1));
    CHECK_INT(cfg.ntokens, 0);
    ingest_config_free(&cfg);

    /* Missing and empty files. */
    env_clear();
    setenv("PM_INGEST_WEBHOOK_SECRETS_FILE", "/nonexistent/pm-whsec", 1);
    setenv("PM_INGEST_BEARER_TOKENS_FILE", temp_file(""), 1);
    CHECK_INT(load(&cfg, &r), 3); /* unreadable, empty, and so no credentials */
    CHECK(report_has(&r, "/nonexistent/pm-whsec"));
    CHECK(report_has(&r, "empty"));
    CHECK(report_has(&r, "no credentials"));
    ingest_config_free(&cfg);
}

static void test_listen(void)
{
    static const char *const bad[] = {
        "nonsense", "0.0.0.0:99999", "0.0.0.0:-1", "host:", "host:80x", "[::1]8080", "[::1"};
    struct ingest_config cfg;
    struct config_report r;

    env_clear();
    setenv("PM_INGEST_ALLOW_UNAUTHENTICATED", "1", 1);
    setenv("PM_INGEST_LISTEN", "127.0.0.1:9000", 1);
    CHECK_INT(load(&cfg, &r), 0);
    CHECK_STR(cfg.listen_host, "127.0.0.1");
    CHECK_INT(cfg.listen_port, 9000);
    ingest_config_free(&cfg);

    setenv("PM_INGEST_LISTEN", "[::1]:8443", 1);
    CHECK_INT(load(&cfg, &r), 0);
    CHECK_STR(cfg.listen_host, "::1");
    CHECK_INT(cfg.listen_port, 8443);
    ingest_config_free(&cfg);

    setenv("PM_INGEST_LISTEN", ":0", 1); /* all addresses, any free port */
    CHECK_INT(load(&cfg, &r), 0);
    CHECK_STR(cfg.listen_host, "");
    CHECK_INT(cfg.listen_port, 0);
    ingest_config_free(&cfg);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("PM_INGEST_LISTEN", bad[i], 1);
        if (load(&cfg, &r) != 1)
            fprintf(stderr, "PM_INGEST_LISTEN=%s: %d problems\n", bad[i], r.count);
        CHECK_INT(r.count, 1);
        CHECK(report_has(&r, "PM_INGEST_LISTEN"));
        ingest_config_free(&cfg);
    }
}

struct range_case {
    const char *name, *value;
};

static void test_numbers(void)
{
    static const struct range_case bad[] = {
        {"PM_INGEST_MAX_BODY_BYTES", "1023"},
        {"PM_INGEST_MAX_BODY_BYTES", "67108865"},
        {"PM_INGEST_MAX_BODY_BYTES", "1MB"},
        {"PM_INGEST_ACK_TIMEOUT_MS", "99"},
        {"PM_INGEST_ACK_TIMEOUT_MS", "300001"},
        {"PM_INGEST_ACK_TIMEOUT_MS", "-1"},
        {"PM_INGEST_THREADS", "0"},
        {"PM_INGEST_THREADS", "65"},
        {"PM_INGEST_THREADS", "two"},
        {"PM_INGEST_MAX_CONNECTIONS", "0"},
        {"PM_INGEST_MAX_CONNECTIONS", "65537"},
        {"PM_INGEST_CONNECTION_TIMEOUT_S", "0"},
        {"PM_INGEST_CONNECTION_TIMEOUT_S", "3601"},
        {"PM_INGEST_DEDUP_CAPACITY", "-1"},
        {"PM_INGEST_DEDUP_CAPACITY", "10000001"},
        {"PM_INGEST_DEDUP_TTL_S", "0"},
        {"PM_INGEST_DEDUP_TTL_S", "604801"},
        {"PM_INGEST_DEDUP_TTL_S", "99999999999999999999999"},
        {"PM_INGEST_DEDUP_TTL_S", "12 "},
        {"PM_LOG_LEVEL", "verbose"},
    };
    struct ingest_config cfg;
    struct config_report r;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        env_clear();
        setenv("PM_INGEST_ALLOW_UNAUTHENTICATED", "1", 1);
        setenv(bad[i].name, bad[i].value, 1);
        if (load(&cfg, &r) != 1)
            fprintf(stderr, "%s=%s: %d problems\n", bad[i].name, bad[i].value, r.count);
        CHECK_INT(r.count, 1);
        CHECK(report_has(&r, bad[i].name));
        /* The default stands in for the refused value. */
        CHECK_INT(cfg.max_body_bytes, 1048576);
        CHECK_INT(cfg.ack_timeout_ms, 10000);
        CHECK_INT(cfg.threads, 2);
        CHECK_INT(cfg.dedup_ttl_s, 86400);
        ingest_config_free(&cfg);
    }

    /* Limits themselves are accepted. */
    env_clear();
    setenv("PM_INGEST_ALLOW_UNAUTHENTICATED", "yes", 1);
    setenv("PM_INGEST_MAX_BODY_BYTES", "1024", 1);
    setenv("PM_INGEST_ACK_TIMEOUT_MS", "300000", 1);
    setenv("PM_INGEST_THREADS", "64", 1);
    setenv("PM_INGEST_MAX_CONNECTIONS", "1", 1);
    setenv("PM_INGEST_CONNECTION_TIMEOUT_S", "3600", 1);
    setenv("PM_INGEST_DEDUP_CAPACITY", "0", 1); /* 0 = duplicate detection off */
    setenv("PM_INGEST_DEDUP_TTL_S", "604800", 1);
    setenv("PM_LOG_LEVEL", "debug", 1);
    CHECK_INT(load(&cfg, &r), 0);
    if (r.count)
        fprintf(stderr, "%s", r.text);
    CHECK_INT(cfg.max_body_bytes, 1024);
    CHECK_INT(cfg.ack_timeout_ms, 300000);
    CHECK_INT(cfg.threads, 64);
    CHECK_INT(cfg.max_connections, 1);
    CHECK_INT(cfg.connection_timeout_s, 3600);
    CHECK_INT(cfg.dedup_capacity, 0);
    CHECK_INT(cfg.dedup_ttl_s, 604800);
    CHECK_INT(cfg.log_level, LOG_DEBUG);
    ingest_config_free(&cfg);

    /* Every problem at once, so --check-config shows them all in one run. */
    env_clear();
    setenv("PM_INGEST_BEARER_TOKENS", SHORT_TOKEN, 1);
    setenv("PM_INGEST_LISTEN", "nonsense", 1);
    setenv("PM_INGEST_THREADS", "0", 1);
    setenv("PM_INGEST_DEDUP_TTL_S", "0", 1);
    setenv("PM_LOG_LEVEL", "loud", 1);
    CHECK_INT(load(&cfg, &r), 6);
    CHECK(!report_has(&r, SHORT_TOKEN));
    ingest_config_free(&cfg);
}

static void test_topics_and_kafka(void)
{
    struct ingest_config cfg;
    struct config_report r;

    env_clear();
    setenv("PM_INGEST_ALLOW_UNAUTHENTICATED", "1", 1);
    setenv("PM_TOPIC_CANVAS_MESSAGES", "t.messages", 1);
    setenv("PM_TOPIC_PATIENT_REPLIES", "t.replies", 1);
    setenv("PM_TOPIC_QUESTIONNAIRE_RESPONSES", "t.qr", 1);
    setenv("PM_KAFKA_BROKERS", "k1:9092", 1);
    CHECK_INT(load(&cfg, &r), 0);
    CHECK_STR(cfg.topic_messages, "t.messages");
    CHECK_STR(cfg.topic_replies, "t.replies");
    CHECK_STR(cfg.topic_questionnaires, "t.qr");
    CHECK_STR(cfg.kafka.brokers, "k1:9092");
    CHECK_INT(cfg.kafka.brokers_explicit, 1);
    ingest_config_free(&cfg);

    /* A Kafka properties file with an unknown property is a configuration problem. */
    setenv("PM_KAFKA_CONFIG_FILE", temp_file("# tls\nno.such.property=1\n"), 1);
    CHECK_INT(load(&cfg, &r), 1);
    CHECK(report_has(&r, ":2:"));
    ingest_config_free(&cfg);
    env_clear();
}

int main(void)
{
    test_defaults();
    test_credentials_required();
    test_tokens();
    test_webhook_secrets();
    test_file_variants();
    test_listen();
    test_numbers();
    test_topics_and_kafka();
    for (int i = 0; i < ntmp; i++)
        unlink(tmp_paths[i]);
    return UNIT_DONE();
}
