/* Unit tests for config: typed getters, X / X_FILE secrets, lists, listen addresses, the CLI. */
#include "config.h"
#include "unit.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECRET_VALUE "s3cr3t-Value-do-not-print"

static void report_reset(struct config_report *r)
{
    memset(r, 0, sizeof(*r));
}

/* Writes @p data to a new temporary file; returns its path in @p path (a mkstemp template). */
static int write_temp(char *path, size_t pathlen, const char *data, size_t len)
{
    snprintf(path, pathlen, "/tmp/pm-test-config-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    close(fd);
    return 0;
}

static void test_str(void)
{
    unsetenv("PM_T_STR");
    CHECK_STR(config_str("PM_T_STR", "dflt"), "dflt");
    CHECK(config_str("PM_T_STR", NULL) == NULL);
    setenv("PM_T_STR", "", 1);
    CHECK_STR(config_str("PM_T_STR", "dflt"), "dflt"); /* empty counts as unset */
    setenv("PM_T_STR", "value", 1);
    CHECK_STR(config_str("PM_T_STR", "dflt"), "value");
    unsetenv("PM_T_STR");
}

static void test_long(void)
{
    struct config_report r;

    report_reset(&r);
    unsetenv("PM_T_LONG");
    CHECK_INT(config_long("PM_T_LONG", 7, 1, 10, &r), 7);
    CHECK_INT(r.count, 0);
    setenv("PM_T_LONG", "10", 1);
    CHECK_INT(config_long("PM_T_LONG", 7, 1, 10, &r), 10);
    setenv("PM_T_LONG", "1", 1);
    CHECK_INT(config_long("PM_T_LONG", 7, 1, 10, &r), 1);
    setenv("PM_T_LONG", "-5", 1);
    CHECK_INT(config_long("PM_T_LONG", 7, -10, 10, &r), -5);
    CHECK_INT(r.count, 0);

    /* Out of range: a problem naming the variable, and the default. */
    setenv("PM_T_LONG", "11", 1);
    CHECK_INT(config_long("PM_T_LONG", 7, 1, 10, &r), 7);
    CHECK_INT(r.count, 1);
    CHECK(strstr(r.text, "PM_T_LONG") != NULL);
    setenv("PM_T_LONG", "0", 1);
    CHECK_INT(config_long("PM_T_LONG", 7, 1, 10, &r), 7);
    CHECK_INT(r.count, 2);

    /* Garbage, trailing junk, overflow. */
    static const char *const bad[] = {"abc", "12abc", "1.5", "0x10", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        report_reset(&r);
        setenv("PM_T_LONG", bad[i], 1);
        CHECK_INT(config_long("PM_T_LONG", 7, 0, 1000, &r), 7);
        CHECK_INT(r.count, 1);
    }
    unsetenv("PM_T_LONG");
}

static void test_bool(void)
{
    struct config_report r;
    static const char *const yes[] = {"1", "true", "TRUE", "yes", "On"};
    static const char *const no[] = {"0", "false", "No", "off"};

    report_reset(&r);
    unsetenv("PM_T_BOOL");
    CHECK_INT(config_bool("PM_T_BOOL", 1, &r), 1);
    CHECK_INT(config_bool("PM_T_BOOL", 0, &r), 0);
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        setenv("PM_T_BOOL", yes[i], 1);
        CHECK_INT(config_bool("PM_T_BOOL", 0, &r), 1);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        setenv("PM_T_BOOL", no[i], 1);
        CHECK_INT(config_bool("PM_T_BOOL", 1, &r), 0);
    }
    CHECK_INT(r.count, 0);
    setenv("PM_T_BOOL", "2", 1);
    CHECK_INT(config_bool("PM_T_BOOL", 0, &r), 0);
    CHECK_INT(r.count, 1);
    setenv("PM_T_BOOL", "maybe", 1);
    CHECK_INT(config_bool("PM_T_BOOL", 1, &r), 1);
    CHECK_INT(r.count, 2);
    unsetenv("PM_T_BOOL");
}

static void test_secret(void)
{
    struct config_report r;
    char path[64];
    char *s;

    unsetenv("PM_T_SECRET");
    unsetenv("PM_T_SECRET_FILE");

    /* Unset: NULL without a problem (whether it is required is the caller's decision). */
    report_reset(&r);
    CHECK(config_secret("PM_T_SECRET", &r) == NULL);
    CHECK_INT(r.count, 0);

    /* Direct value. */
    setenv("PM_T_SECRET", SECRET_VALUE, 1);
    s = config_secret("PM_T_SECRET", &r);
    CHECK_STR(s, SECRET_VALUE);
    config_secret_free(s);
    CHECK_INT(r.count, 0);

    /* Both set: a problem that names both variables and never the value. */
    CHECK_INT(write_temp(path, sizeof(path), SECRET_VALUE "\n", strlen(SECRET_VALUE) + 1), 0);
    setenv("PM_T_SECRET_FILE", path, 1);
    s = config_secret("PM_T_SECRET", &r);
    CHECK(s == NULL);
    CHECK_INT(r.count, 1);
    CHECK(strstr(r.text, "PM_T_SECRET_FILE") != NULL);
    CHECK(strstr(r.text, SECRET_VALUE) == NULL);

    /* From the file: one trailing newline (LF or CRLF) removed, inner content kept. */
    report_reset(&r);
    unsetenv("PM_T_SECRET");
    s = config_secret("PM_T_SECRET", &r);
    CHECK_STR(s, SECRET_VALUE);
    config_secret_free(s);
    CHECK_INT(r.count, 0);
    unlink(path);

    CHECK_INT(write_temp(path, sizeof(path), "a b\r\n", 5), 0);
    setenv("PM_T_SECRET_FILE", path, 1);
    s = config_secret("PM_T_SECRET", &r);
    CHECK_STR(s, "a b");
    config_secret_free(s);
    unlink(path);

    CHECK_INT(write_temp(path, sizeof(path), SECRET_VALUE, strlen(SECRET_VALUE)), 0);
    setenv("PM_T_SECRET_FILE", path, 1);
    s = config_secret("PM_T_SECRET", &r);
    CHECK_STR(s, SECRET_VALUE);
    config_secret_free(s);
    unlink(path);
    CHECK_INT(r.count, 0);

    /* Empty file, or only a newline: a problem. */
    CHECK_INT(write_temp(path, sizeof(path), "\n", 1), 0);
    setenv("PM_T_SECRET_FILE", path, 1);
    CHECK(config_secret("PM_T_SECRET", &r) == NULL);
    CHECK_INT(r.count, 1);
    unlink(path);

    /* Missing file: a problem naming the variable and the path. */
    report_reset(&r);
    setenv("PM_T_SECRET_FILE", "/nonexistent/pm-test-secret", 1);
    CHECK(config_secret("PM_T_SECRET", &r) == NULL);
    CHECK_INT(r.count, 1);
    CHECK(strstr(r.text, "PM_T_SECRET_FILE") != NULL);
    CHECK(strstr(r.text, "/nonexistent/pm-test-secret") != NULL);

    /* A file over the 1 MiB limit is refused (and cleaned up without overrunning the buffer). */
    report_reset(&r);
    size_t big = (1u << 20) + 4096;
    char *data = malloc(big);
    CHECK(data != NULL);
    if (data) {
        memset(data, 'x', big);
        CHECK_INT(write_temp(path, sizeof(path), data, big), 0);
        free(data);
        setenv("PM_T_SECRET_FILE", path, 1);
        CHECK(config_secret("PM_T_SECRET", &r) == NULL);
        CHECK_INT(r.count, 1);
        CHECK(strstr(r.text, "1 MiB") != NULL);
        unlink(path);
    }

    unsetenv("PM_T_SECRET_FILE");
    config_secret_free(NULL);
}

static void test_list(void)
{
    char **items;
    size_t n;

    n = config_list_split(" whsec_a , whsec_b,,  ,whsec_c ", &items);
    CHECK_INT(n, 3);
    if (n == 3) {
        CHECK_STR(items[0], "whsec_a");
        CHECK_STR(items[1], "whsec_b");
        CHECK_STR(items[2], "whsec_c");
    }
    config_list_free(items, n);

    n = config_list_split("webhook", &items);
    CHECK_INT(n, 1);
    if (n == 1)
        CHECK_STR(items[0], "webhook");
    config_list_free(items, n);

    n = config_list_split("", &items);
    CHECK_INT(n, 0);
    CHECK(items == NULL);
    n = config_list_split(" , ,", &items);
    CHECK_INT(n, 0);
    CHECK(items == NULL);
    n = config_list_split(NULL, &items);
    CHECK_INT(n, 0);
    CHECK(items == NULL);

    /* More items than the first allocation holds. */
    n = config_list_split("a,b,c,d,e,f,g,h,i", &items);
    CHECK_INT(n, 9);
    if (n == 9)
        CHECK_STR(items[8], "i");
    config_list_free(items, n);
}

static void test_listen(void)
{
    char host[64];
    char err[128];
    unsigned port = 0;

    CHECK_INT(config_parse_listen("0.0.0.0:8080", host, sizeof(host), &port, err, sizeof(err)), 0);
    CHECK_STR(host, "0.0.0.0");
    CHECK_INT(port, 8080);
    CHECK_INT(config_parse_listen("localhost:1", host, sizeof(host), &port, err, sizeof(err)), 0);
    CHECK_STR(host, "localhost");
    CHECK_INT(port, 1);
    CHECK_INT(config_parse_listen("[::1]:8081", host, sizeof(host), &port, err, sizeof(err)), 0);
    CHECK_STR(host, "::1");
    CHECK_INT(port, 8081);
    CHECK_INT(config_parse_listen("[::]:0", host, sizeof(host), &port, err, sizeof(err)), 0);
    CHECK_STR(host, "::");
    CHECK_INT(port, 0);
    CHECK_INT(config_parse_listen(":9000", host, sizeof(host), &port, err, sizeof(err)), 0);
    CHECK_STR(host, "");
    CHECK_INT(port, 9000);

    static const char *const bad[] = {
        "8080",  "host:",     "host:abc", "host:65536", "host:-1",
        "[::1]", "[::1]8080", "[::1:80",  "host:80x",   "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        int rc = config_parse_listen(bad[i], host, sizeof(host), &port, err, sizeof(err));
        if (rc != -1)
            fprintf(stderr, "listen address '%s' was accepted\n", bad[i]);
        CHECK_INT(rc, -1);
        CHECK(err[0] != '\0');
    }

    /* A host longer than the caller's buffer is refused, not truncated. */
    char small[4];
    CHECK_INT(config_parse_listen("example.org:80", small, sizeof(small), &port, err, sizeof(err)),
              -1);
}

/* Runs config_cli with stdout and stderr captured into one temporary file; returns the mode. */
static enum config_mode run_cli(int argc, char **argv, char *out, size_t outlen)
{
    static const struct config_var vars[] = {
        {"PM_T_LISTEN", "0.0.0.0:8080", 0, "Address to listen on"},
        {"PM_T_TOKEN", NULL, 1, "A secret"},
        {NULL, NULL, 0, NULL},
    };
    char path[64];
    enum config_mode mode;

    out[0] = '\0';
    if (write_temp(path, sizeof(path), "", 0) != 0)
        return (enum config_mode) - 1;
    int fd = open(path, O_WRONLY | O_TRUNC);
    int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO);
    fflush(stdout);
    fflush(stderr);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    mode = config_cli(argc, argv, "pm-test", "Test binary.", vars);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved_out);
    close(saved_err);
    close(fd);

    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(out, 1, outlen - 1, f);
        out[n] = '\0';
        fclose(f);
    }
    unlink(path);
    return mode;
}

static void test_cli(void)
{
    char out[4096];
    char prog[] = "pm-test";
    char help[] = "--help";
    char version[] = "--version";
    char check[] = "--check-config";
    char secret_arg[] = "--token=" SECRET_VALUE;

    char *argv0[] = {prog, NULL};
    CHECK_INT(run_cli(1, argv0, out, sizeof(out)), CONFIG_MODE_RUN);

    char *argv1[] = {prog, help, NULL};
    CHECK_INT(run_cli(2, argv1, out, sizeof(out)), CONFIG_MODE_EXIT_OK);
    CHECK(strstr(out, "PM_T_LISTEN") != NULL);
    CHECK(strstr(out, "0.0.0.0:8080") != NULL);
    CHECK(strstr(out, "PM_T_TOKEN") != NULL);
    CHECK(strstr(out, "Test binary.") != NULL);

    char *argv2[] = {prog, version, NULL};
    CHECK_INT(run_cli(2, argv2, out, sizeof(out)), CONFIG_MODE_EXIT_OK);
    CHECK(strstr(out, PM_VERSION) != NULL);

    char *argv3[] = {prog, check, NULL};
    CHECK_INT(run_cli(2, argv3, out, sizeof(out)), CONFIG_MODE_CHECK);

    /* An unknown argument is a usage error and is not echoed: it may be a misplaced secret. */
    char *argv4[] = {prog, secret_arg, NULL};
    CHECK_INT(run_cli(2, argv4, out, sizeof(out)), CONFIG_MODE_EXIT_USAGE);
    CHECK(out[0] != '\0');
    CHECK(strstr(out, SECRET_VALUE) == NULL);
    char *argv5[] = {prog, check, secret_arg, NULL};
    CHECK_INT(run_cli(3, argv5, out, sizeof(out)), CONFIG_MODE_EXIT_USAGE);
    CHECK(strstr(out, SECRET_VALUE) == NULL);
}

static void test_report(void)
{
    struct config_report r;
    char buf[512];

    report_reset(&r);
    config_report_add(&r, "%s: first", "PM_A");
    config_report_add(&r, "%s: second", "PM_B");
    CHECK_INT(r.count, 2);
    FILE *f = fmemopen(buf, sizeof(buf), "w");
    CHECK(f != NULL);
    if (f) {
        config_report_print(&r, f, "pm-x");
        fclose(f);
        CHECK_STR(buf, "pm-x: config: PM_A: first\npm-x: config: PM_B: second\n");
    }

    /* Many problems: counted, text capped without overflow. */
    report_reset(&r);
    for (int i = 0; i < 1000; i++)
        config_report_add(&r, "PM_VAR_%d: a long enough problem description to fill things up", i);
    CHECK_INT(r.count, 1000);
    CHECK(r.len < sizeof(r.text));
    CHECK_INT(strlen(r.text), r.len);
}

static void test_topics_and_level(void)
{
    struct config_topics t;
    struct config_report r;
    static const char *const vars[] = {"PM_TOPIC_CANVAS_MESSAGES", "PM_TOPIC_PATIENT_REPLIES",
                                       "PM_TOPIC_QUESTIONNAIRE_RESPONSES", "PM_TOPIC_DELIVERIES",
                                       "PM_TOPIC_DLQ"};

    /* Unset (or empty): the SPEC §3 names. */
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    setenv("PM_TOPIC_DLQ", "", 1);
    config_topics_load(&t);
    CHECK_STR(t.messages, "pm.canvas.messages");
    CHECK_STR(t.replies, "pm.patient.replies");
    CHECK_STR(t.questionnaires, "pm.patient.questionnaire-responses");
    CHECK_STR(t.deliveries, "pm.deliveries");
    CHECK_STR(t.dlq, "pm.dlq");

    /* Each variable moves its own topic only. */
    setenv("PM_TOPIC_PATIENT_REPLIES", "clinic-a.replies", 1);
    setenv("PM_TOPIC_DLQ", "clinic-a.dlq", 1);
    config_topics_load(&t);
    CHECK_STR(t.messages, "pm.canvas.messages");
    CHECK_STR(t.replies, "clinic-a.replies");
    CHECK_STR(t.dlq, "clinic-a.dlq");
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);

    /* PM_LOG_LEVEL: the four names, info by default, a typo reported and info used. */
    report_reset(&r);
    unsetenv("PM_LOG_LEVEL");
    CHECK_INT(config_log_level(&r), LOG_INFO);
    setenv("PM_LOG_LEVEL", "debug", 1);
    CHECK_INT(config_log_level(&r), LOG_DEBUG);
    setenv("PM_LOG_LEVEL", "error", 1);
    CHECK_INT(config_log_level(&r), LOG_ERROR);
    CHECK_INT(r.count, 0);
    setenv("PM_LOG_LEVEL", "verbose", 1);
    CHECK_INT(config_log_level(&r), LOG_INFO);
    CHECK_INT(r.count, 1);
    CHECK(strstr(r.text, "PM_LOG_LEVEL: 'verbose' is not error, warn, info or debug") != NULL);
    unsetenv("PM_LOG_LEVEL");
}

int main(void)
{
    test_topics_and_level();
    test_str();
    test_long();
    test_bool();
    test_secret();
    test_list();
    test_listen();
    test_cli();
    test_report();
    return UNIT_DONE();
}
