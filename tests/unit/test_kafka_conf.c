/* Unit tests for kafka_conf: the properties file, bootstrap.servers precedence, error texts. */
#include "config.h"
#include "kafka_conf.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SASL_SECRET "Sup3r-Secret-SASL-pw"

static char tmp_paths[16][64];
static int ntmp;

/* Writes @p text to a new temporary file. @returns its path (removed at exit). */
static const char *props(const char *text)
{
    char *path = tmp_paths[ntmp++];
    size_t len = strlen(text), off = 0;
    int fd;

    snprintf(path, sizeof(tmp_paths[0]), "/tmp/pm-test-kafka-conf-XXXXXX");
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

/* The value librdkafka holds for @p key, into a static buffer ("" when unset). */
static const char *get(rd_kafka_conf_t *conf, const char *key)
{
    static char buf[16384];
    size_t len = sizeof(buf);
    if (rd_kafka_conf_get(conf, key, buf, &len) != RD_KAFKA_CONF_OK)
        return "(unknown key)";
    return buf;
}

static rd_kafka_conf_t *build(const char *brokers, int explicit_, const char *file, char *err,
                              size_t errlen)
{
    struct kafka_settings ks = {brokers, explicit_, file, NULL};
    err[0] = '\0';
    return kafka_conf_build(&ks, err, errlen);
}

static void test_no_file(void)
{
    char err[512];
    rd_kafka_conf_t *conf = build("localhost:9092", 0, NULL, err, sizeof(err));
    CHECK(conf != NULL);
    if (conf) {
        CHECK_STR(get(conf, "bootstrap.servers"), "localhost:9092");
        rd_kafka_conf_destroy(conf);
    }
    conf = build("k1:9092,k2:9092", 1, NULL, err, sizeof(err));
    CHECK(conf != NULL);
    if (conf) {
        CHECK_STR(get(conf, "bootstrap.servers"), "k1:9092,k2:9092");
        rd_kafka_conf_destroy(conf);
    }
}

static void test_file_syntax(void)
{
    char err[512];
    const char *path = props("# a comment\n"
                             "! also a comment\n"
                             "\n"
                             "   \t\n"
                             "   # indented comment = not a property\n"
                             "client.id=plain\n"
                             "  socket.timeout.ms   =   12345   \n"
                             "security.protocol = SASL_SSL\n"
                             "sasl.mechanisms=PLAIN\n"
                             "sasl.username\t=\tuser-1\n"
                             "sasl.password=" SASL_SECRET "\n"
                             "sasl.jaas.config.not.used.by.rdkafka.but.equals=\n"
                             "\r\n"
                             "message.timeout.ms=30000\r\n"
                             "queue.buffering.max.ms=5"); /* last line without newline */
    rd_kafka_conf_t *conf;

    /* The line with an unknown key is removed below: first check it is reported. */
    conf = build("localhost:9092", 0, path, err, sizeof(err));
    CHECK(conf == NULL);
    CHECK(strstr(err, path) != NULL);
    CHECK(strstr(err, ":12:") != NULL); /* the unknown key is on line 12 */
    CHECK(strstr(err, "sasl.jaas.config.not.used.by.rdkafka.but.equals") != NULL);
    CHECK(strstr(err, SASL_SECRET) == NULL);

    path = props("# a comment\n"
                 "! also a comment\n"
                 "\n"
                 "   \t\n"
                 "   # indented comment = not a property\n"
                 "client.id=plain\n"
                 "  socket.timeout.ms   =   12345   \n"
                 "security.protocol = SASL_SSL\n"
                 "sasl.mechanisms=PLAIN\n"
                 "sasl.username\t=\tuser-1\n"
                 "sasl.password=" SASL_SECRET "\n"
                 "client.rack=a=b==\n" /* the value may contain '=' */
                 "\r\n"
                 "message.timeout.ms=30000\r\n"
                 "queue.buffering.max.ms=5");
    conf = build("localhost:9092", 0, path, err, sizeof(err));
    if (!conf)
        fprintf(stderr, "build: %s\n", err);
    CHECK(conf != NULL);
    if (!conf)
        return;
    CHECK_STR(get(conf, "client.id"), "plain");
    CHECK_STR(get(conf, "socket.timeout.ms"), "12345");
    CHECK_STR(get(conf, "security.protocol"), "sasl_ssl");
    CHECK_STR(get(conf, "sasl.mechanisms"), "PLAIN");
    CHECK_STR(get(conf, "sasl.username"), "user-1");
    CHECK_STR(get(conf, "sasl.password"), SASL_SECRET);
    CHECK_STR(get(conf, "client.rack"), "a=b==");
    CHECK_STR(get(conf, "message.timeout.ms"), "30000");
    CHECK_STR(get(conf, "queue.buffering.max.ms"), "5");
    CHECK_STR(get(conf, "bootstrap.servers"), "localhost:9092"); /* none in the file */
    rd_kafka_conf_destroy(conf);
}

static void test_long_line(void)
{
    /* Longer than any line buffer a reader might pick: must arrive whole, and the line after
     * it must keep its number. */
    size_t n = 9000;
    char *text = malloc(n + 200), *value = malloc(n + 1), err[512];
    rd_kafka_conf_t *conf;
    const char *path;

    memset(value, 'v', n);
    value[n] = '\0';
    snprintf(text, n + 200, "client.id=%s\nno.such.property=1\n", value);
    path = props(text);
    conf = build("localhost:9092", 0, path, err, sizeof(err));
    CHECK(conf == NULL);
    CHECK(strstr(err, ":2:") != NULL);
    CHECK(strstr(err, "no.such.property") != NULL);
    if (conf)
        rd_kafka_conf_destroy(conf);

    snprintf(text, n + 200, "client.id=%s\nclient.rack=r1\n", value);
    path = props(text);
    conf = build("localhost:9092", 0, path, err, sizeof(err));
    if (!conf)
        fprintf(stderr, "build: %s\n", err);
    CHECK(conf != NULL);
    if (conf) {
        CHECK_INT(strlen(get(conf, "client.id")), n);
        CHECK_STR(get(conf, "client.rack"), "r1");
        rd_kafka_conf_destroy(conf);
    }
    free(value);
    free(text);
}

static void test_file_errors(void)
{
    char err[512];
    rd_kafka_conf_t *conf;
    const char *path;

    /* An unknown key: file and line named, the key too. */
    path = props("client.id=x\n# comment\n\nbogus.key=" SASL_SECRET "\n");
    conf = build("localhost:9092", 0, path, err, sizeof(err));
    CHECK(conf == NULL);
    CHECK(strstr(err, path) != NULL);
    CHECK(strstr(err, ":4:") != NULL);
    CHECK(strstr(err, "bogus.key") != NULL);
    CHECK(strstr(err, SASL_SECRET) == NULL);

    /* A bad value: librdkafka quotes some values in its message; ours must not. */
    path = props("security.protocol=" SASL_SECRET "\n");
    conf = build("localhost:9092", 0, path, err, sizeof(err));
    CHECK(conf == NULL);
    CHECK(strstr(err, ":1:") != NULL);
    CHECK(strstr(err, "security.protocol") != NULL);
    if (strstr(err, SASL_SECRET))
        fprintf(stderr, "value echoed: %s\n", err);
    CHECK(strstr(err, SASL_SECRET) == NULL);

    path = props("\n\nlinger.ms=-987654\n");
    conf = build("localhost:9092", 0, path, err, sizeof(err));
    CHECK(conf == NULL);
    CHECK(strstr(err, ":3:") != NULL);
    CHECK(strstr(err, "linger.ms") != NULL);
    CHECK(strstr(err, "987654") == NULL);

    /* No '=' at all. */
    path = props("client.id=x\n" SASL_SECRET "\n");
    conf = build("localhost:9092", 0, path, err, sizeof(err));
    CHECK(conf == NULL);
    CHECK(strstr(err, ":2:") != NULL);
    CHECK(strstr(err, "key=value") != NULL);
    CHECK(strstr(err, SASL_SECRET) == NULL);

    /* A file that is not there. */
    conf = build("localhost:9092", 0, "/nonexistent/pm-kafka.properties", err, sizeof(err));
    CHECK(conf == NULL);
    CHECK(strstr(err, "PM_KAFKA_CONFIG_FILE") != NULL);
    CHECK(strstr(err, "/nonexistent/pm-kafka.properties") != NULL);
}

static void test_bootstrap_precedence(void)
{
    char err[512];
    rd_kafka_conf_t *conf;
    const char *with = props("bootstrap.servers=file-broker:9093\n");
    const char *legacy = props("metadata.broker.list=legacy-broker:9094\n");
    const char *without = props("client.id=x\n");

    /* PM_KAFKA_BROKERS set explicitly beats the file. */
    conf = build("env-broker:9092", 1, with, err, sizeof(err));
    CHECK(conf != NULL);
    if (conf) {
        CHECK_STR(get(conf, "bootstrap.servers"), "env-broker:9092");
        rd_kafka_conf_destroy(conf);
    }
    /* Only the default: the file's servers win. */
    conf = build("localhost:9092", 0, with, err, sizeof(err));
    CHECK(conf != NULL);
    if (conf) {
        CHECK_STR(get(conf, "bootstrap.servers"), "file-broker:9093");
        rd_kafka_conf_destroy(conf);
    }
    /* The older name counts as naming the servers. */
    conf = build("localhost:9092", 0, legacy, err, sizeof(err));
    CHECK(conf != NULL);
    if (conf) {
        CHECK_STR(get(conf, "bootstrap.servers"), "legacy-broker:9094");
        rd_kafka_conf_destroy(conf);
    }
    /* A file without servers: the default applies. */
    conf = build("localhost:9092", 0, without, err, sizeof(err));
    CHECK(conf != NULL);
    if (conf) {
        CHECK_STR(get(conf, "bootstrap.servers"), "localhost:9092");
        rd_kafka_conf_destroy(conf);
    }
}

static void test_from_env(void)
{
    struct kafka_settings ks;
    struct config_report r;
    rd_kafka_conf_t *conf;
    char err[512];
    const char *with = props("bootstrap.servers=file-broker:9093\n");

    unsetenv("PM_KAFKA_BROKERS");
    unsetenv("PM_KAFKA_CONFIG_FILE");
    kafka_settings_from_env(&ks);
    CHECK_STR(ks.brokers, "localhost:9092");
    CHECK_INT(ks.brokers_explicit, 0);
    CHECK(ks.config_file == NULL);

    setenv("PM_KAFKA_BROKERS", "", 1); /* empty counts as unset */
    kafka_settings_from_env(&ks);
    CHECK_INT(ks.brokers_explicit, 0);

    setenv("PM_KAFKA_BROKERS", "b1:9092,b2:9092", 1);
    setenv("PM_KAFKA_CONFIG_FILE", with, 1);
    kafka_settings_from_env(&ks);
    CHECK_STR(ks.brokers, "b1:9092,b2:9092");
    CHECK_INT(ks.brokers_explicit, 1);
    CHECK_STR(ks.config_file, with);
    conf = kafka_conf_build(&ks, err, sizeof(err));
    CHECK(conf != NULL);
    if (conf) {
        CHECK_STR(get(conf, "bootstrap.servers"), "b1:9092,b2:9092");
        rd_kafka_conf_destroy(conf);
    }

    unsetenv("PM_KAFKA_BROKERS");
    kafka_settings_from_env(&ks);
    conf = kafka_conf_build(&ks, err, sizeof(err));
    CHECK(conf != NULL);
    if (conf) {
        CHECK_STR(get(conf, "bootstrap.servers"), "file-broker:9093");
        rd_kafka_conf_destroy(conf);
    }

    /* --check-config: a bad file is one problem in the report, value not echoed. */
    setenv("PM_KAFKA_CONFIG_FILE", props("ssl.endpoint.identification.algorithm=" SASL_SECRET "\n"),
           1);
    kafka_settings_from_env(&ks);
    memset(&r, 0, sizeof(r));
    kafka_settings_check(&ks, &r);
    CHECK_INT(r.count, 1);
    CHECK(strstr(r.text, ":1:") != NULL);
    CHECK(strstr(r.text, SASL_SECRET) == NULL);

    setenv("PM_KAFKA_CONFIG_FILE", with, 1);
    kafka_settings_from_env(&ks);
    memset(&r, 0, sizeof(r));
    kafka_settings_check(&ks, &r);
    CHECK_INT(r.count, 0);
    unsetenv("PM_KAFKA_CONFIG_FILE");
}

static void test_conf_set(void)
{
    char err[512] = "";
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    CHECK_INT(kafka_conf_set(conf, "acks", "all", err, sizeof(err)), 0);
    CHECK_STR(get(conf, "acks"), "-1");
    CHECK_INT(kafka_conf_set(conf, "no.such.thing", "1", err, sizeof(err)), -1);
    CHECK(strncmp(err, "no.such.thing: ", 15) == 0);
    rd_kafka_conf_destroy(conf);
}

/* A service's tuning defaults apply, and the properties file may change them. */
static void test_defaults(void)
{
    static const char *const defaults[] = {"linger.ms", "2", "client.id", "from-defaults", NULL};
    static const char *const bad[] = {"no.such.property", "1", NULL};
    struct kafka_settings ks = {"localhost:9092", 1, NULL, defaults};
    char err[512] = "";
    rd_kafka_conf_t *conf = kafka_conf_build(&ks, err, sizeof(err));

    CHECK(conf != NULL);
    if (conf) {
        CHECK_STR(get(conf, "linger.ms"), "2");
        CHECK_STR(get(conf, "client.id"), "from-defaults");
        rd_kafka_conf_destroy(conf);
    }
    ks.config_file = props("linger.ms=0\n");
    conf = kafka_conf_build(&ks, err, sizeof(err));
    CHECK(conf != NULL);
    if (conf) {
        CHECK_STR(get(conf, "linger.ms"), "0");             /* the file wins */
        CHECK_STR(get(conf, "client.id"), "from-defaults"); /* the rest stays */
        rd_kafka_conf_destroy(conf);
    }
    ks.config_file = NULL;
    ks.defaults = bad;
    CHECK(kafka_conf_build(&ks, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "no.such.property") != NULL);
}

int main(void)
{
    test_defaults();
    test_no_file();
    test_file_syntax();
    test_long_line();
    test_file_errors();
    test_bootstrap_precedence();
    test_from_env();
    test_conf_set();
    for (int i = 0; i < ntmp; i++)
        unlink(tmp_paths[i]);
    return UNIT_DONE();
}
