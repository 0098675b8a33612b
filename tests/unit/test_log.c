/* Unit tests for log: JSON lines on stderr, allow-listed fields, redaction, levels, escaping. */
#include "log.h"
#include "unit.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECRET_VALUE "whsec_c2VjcmV0LXNob3VsZC1uZXZlci1sZWFr"
#define PHONE_VALUE  "+15551234567"

static char capture_path[64];
static int capture_fd = -1;
static int saved_stderr = -1;

/* Points stderr at a fresh temporary file until capture_end(). */
static void capture_begin(void)
{
    snprintf(capture_path, sizeof(capture_path), "/tmp/pm-test-log-XXXXXX");
    capture_fd = mkstemp(capture_path);
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    dup2(capture_fd, STDERR_FILENO);
}

/* Restores stderr; returns what was written (malloc'd, NUL-terminated). */
static char *capture_end(size_t *len)
{
    char *buf = NULL;
    off_t size;

    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    size = lseek(capture_fd, 0, SEEK_END);
    buf = calloc(1, (size_t)size + 1);
    if (buf && size > 0 && pread(capture_fd, buf, (size_t)size, 0) != (ssize_t)size)
        buf[0] = '\0';
    close(capture_fd);
    unlink(capture_path);
    *len = buf ? strlen(buf) : 0;
    return buf;
}

/* Splits captured output into lines and parses each as one JSON object. Every line must parse:
 * a line that does not is a defect of its own. Returns the number of lines, objects in @p out. */
static size_t parse_lines(char *text, json_t **out, size_t max)
{
    size_t n = 0;
    char *p = text;

    while (p && *p && n < max) {
        char *nl = strchr(p, '\n');
        CHECK(nl != NULL); /* every line ends with a newline */
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        json_error_t err;
        out[n] = json_loadb(p, len, 0, &err);
        if (!out[n])
            fprintf(stderr, "log line %zu is not JSON: %s\n", n, err.text);
        CHECK(json_is_object(out[n]));
        n++;
        p = nl ? nl + 1 : NULL;
    }
    return n;
}

static const char *field(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void test_shape_and_redaction(void)
{
    json_t *lines[8] = {0};
    size_t len, n;
    char *out;

    log_init("pm-test", LOG_INFO);
    capture_begin();
    log_info("request accepted", LOG_S("event_id", "evt-1"), LOG_I("http_status", 202),
             LOG_S("topic", "pm.patient.replies"), LOG_I("partition", 3), LOG_I("offset", 42),
             LOG_S("text", SECRET_VALUE), LOG_S("phone", PHONE_VALUE),
             LOG_S("email", "jane@example.org"), LOG_S("token", SECRET_VALUE), LOG_I("age", 37));
    log_warn("no fields");
    log_error("null value", LOG_S("patient_id", NULL));
    out = capture_end(&len);
    CHECK(out != NULL);
    if (!out)
        return;

    /* Nothing outside the allow-list leaks, in any form. */
    CHECK(strstr(out, SECRET_VALUE) == NULL);
    CHECK(strstr(out, PHONE_VALUE) == NULL);
    CHECK(strstr(out, "jane@example.org") == NULL);
    CHECK(strstr(out, "\"age\":37") == NULL);

    n = parse_lines(out, lines, 8);
    CHECK_INT(n, 3);
    if (n == 3) {
        json_t *o = lines[0];
        const char *ts = field(o, "ts");
        CHECK(ts != NULL && strlen(ts) == 24 && ts[10] == 'T' && ts[23] == 'Z');
        CHECK_STR(field(o, "level"), "info");
        CHECK_STR(field(o, "svc"), "pm-test");
        CHECK_STR(field(o, "msg"), "request accepted");
        CHECK_STR(field(o, "event_id"), "evt-1");
        CHECK_INT(json_integer_value(json_object_get(o, "http_status")), 202);
        CHECK(json_is_integer(json_object_get(o, "partition")));
        CHECK_INT(json_integer_value(json_object_get(o, "offset")), 42);
        CHECK_STR(field(o, "topic"), "pm.patient.replies");
        CHECK_STR(field(o, "text"), "[redacted]");
        CHECK_STR(field(o, "phone"), "[redacted]");
        CHECK_STR(field(o, "email"), "[redacted]");
        CHECK_STR(field(o, "token"), "[redacted]");
        CHECK_STR(field(o, "age"), "[redacted]");

        CHECK_STR(field(lines[1], "level"), "warn");
        CHECK_STR(field(lines[1], "msg"), "no fields");
        CHECK_INT(json_object_size(lines[1]), 4);

        CHECK_STR(field(lines[2], "level"), "error");
        CHECK(json_is_null(json_object_get(lines[2], "patient_id")));
    }
    for (size_t i = 0; i < n; i++)
        json_decref(lines[i]);
    free(out);

    CHECK_INT(log_key_allowed("event_id"), 1);
    CHECK_INT(log_key_allowed("patient_id"), 1);
    CHECK_INT(log_key_allowed("text"), 0);
    CHECK_INT(log_key_allowed("body"), 0);
    CHECK_INT(log_key_allowed("secret"), 0);
    CHECK_INT(log_key_allowed("Event_id"), 0);
}

static void test_levels(void)
{
    json_t *lines[8] = {0};
    enum log_level lvl = LOG_ERROR;
    size_t len, n;
    char *out;

    CHECK_INT(log_level_parse("debug", &lvl), 0);
    CHECK_INT(lvl, LOG_DEBUG);
    CHECK_INT(log_level_parse("warn", &lvl), 0);
    CHECK_INT(lvl, LOG_WARN);
    CHECK_INT(log_level_parse("error", &lvl), 0);
    CHECK_INT(lvl, LOG_ERROR);
    CHECK_INT(log_level_parse("info", &lvl), 0);
    CHECK_INT(lvl, LOG_INFO);
    CHECK_INT(log_level_parse("verbose", &lvl), -1);
    CHECK_INT(log_level_parse("", &lvl), -1);
    CHECK_INT(lvl, LOG_INFO); /* untouched on failure */

    log_init("pm-test", LOG_WARN);
    CHECK(log_enabled(LOG_ERROR));
    CHECK(log_enabled(LOG_WARN));
    CHECK(!log_enabled(LOG_INFO));
    CHECK(!log_enabled(LOG_DEBUG));
    capture_begin();
    log_debug("d");
    log_info("i");
    log_warn("w");
    log_error("e");
    out = capture_end(&len);
    n = parse_lines(out, lines, 8);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(field(lines[0], "msg"), "w");
        CHECK_STR(field(lines[1], "msg"), "e");
    }
    for (size_t i = 0; i < n; i++)
        json_decref(lines[i]);
    free(out);

    log_init("pm-test", LOG_DEBUG);
    capture_begin();
    log_debug("d");
    out = capture_end(&len);
    n = parse_lines(out, lines, 8);
    CHECK_INT(n, 1);
    for (size_t i = 0; i < n; i++)
        json_decref(lines[i]);
    free(out);

    log_init("pm-test", LOG_ERROR);
    capture_begin();
    log_warn("w");
    out = capture_end(&len);
    CHECK_INT(len, 0);
    free(out);
}

static void test_escaping(void)
{
    json_t *lines[8] = {0};
    const char *tricky = "quote\" backslash\\ nl\n cr\r tab\t bell\x07 del\x7f end";
    size_t len, n;
    char *out;

    log_init("pm \"svc\"", LOG_INFO);
    capture_begin();
    log_info("msg with \"quotes\"\nand a newline", LOG_S("error", tricky),
             LOG_S("reason", "caf\xc3\xa9 \xe2\x82\xac"));
    out = capture_end(&len);
    /* One physical line despite the newlines in the values. */
    CHECK_INT(strchr(out, '\n') - out, (long long)len - 1);
    n = parse_lines(out, lines, 8);
    CHECK_INT(n, 1);
    if (n == 1) {
        CHECK_STR(field(lines[0], "svc"), "pm \"svc\"");
        CHECK_STR(field(lines[0], "msg"), "msg with \"quotes\"\nand a newline");
        CHECK_STR(field(lines[0], "error"), tricky);
        CHECK_STR(field(lines[0], "reason"), "caf\xc3\xa9 \xe2\x82\xac");
    }
    for (size_t i = 0; i < n; i++)
        json_decref(lines[i]);
    free(out);
}

/* A line stays valid JSON whatever is logged: very long values and bytes that are not UTF-8
 * (a URL-decoded request path can hold both). */
static void test_hostile_values(void)
{
    json_t *lines[8] = {0};
    char *longval = malloc(5000);
    size_t len, n;
    char *out;

    CHECK(longval != NULL);
    if (!longval)
        return;
    memset(longval, 'a', 4999);
    longval[4999] = '\0';
    log_init("pm-test", LOG_INFO);
    capture_begin();
    log_info("long", LOG_S("event_id", "evt-2"), LOG_S("path", longval), LOG_I("count", 1));
    log_info("quotes", LOG_S("event_id", "evt-3"), LOG_S("path", "\"\"\"\"\"\"\"\"\"\""));
    memset(longval, '"', 4999);
    log_info("long quotes", LOG_S("path", longval), LOG_S("event_id", "evt-4"), LOG_I("count", 1));
    log_info("not utf-8", LOG_S("path", "/v1/\xff\xfe/x\xc3"), LOG_S("error", "\xe2\x82"),
             LOG_S("reason", "ok\xc0\xafok"));
    out = capture_end(&len);
    free(longval);
    n = parse_lines(out, lines, 8);
    CHECK_INT(n, 4);
    if (n == 4) {
        CHECK_STR(field(lines[0], "msg"), "long");
        CHECK_STR(field(lines[0], "event_id"), "evt-2");
        CHECK_STR(field(lines[1], "path"), "\"\"\"\"\"\"\"\"\"\"");
        CHECK_STR(field(lines[2], "msg"), "long quotes");
        /* The field that did not fit is dropped and flagged; the ids after it are kept. */
        CHECK(json_object_get(lines[2], "path") == NULL);
        CHECK(json_is_true(json_object_get(lines[2], "truncated")));
        CHECK_STR(field(lines[2], "event_id"), "evt-4");
        CHECK_INT(json_integer_value(json_object_get(lines[2], "count")), 1);
        CHECK(json_object_get(lines[0], "path") == NULL);
        CHECK_INT(json_integer_value(json_object_get(lines[0], "count")), 1);
        CHECK(json_is_true(json_object_get(lines[0], "truncated")));
        CHECK(json_object_get(lines[1], "truncated") == NULL);
        CHECK_STR(field(lines[3], "msg"), "not utf-8");
        /* Each byte that is not part of a well-formed sequence becomes U+FFFD. */
        CHECK_STR(field(lines[3], "path"), "/v1/\xef\xbf\xbd\xef\xbf\xbd/x\xef\xbf\xbd");
        CHECK_STR(field(lines[3], "error"), "\xef\xbf\xbd\xef\xbf\xbd");
        CHECK_STR(field(lines[3], "reason"), "ok\xef\xbf\xbd\xef\xbf\xbdok");
    }
    for (size_t i = 0; i < n; i++)
        json_decref(lines[i]);
    free(out);
}

int main(void)
{
    test_shape_and_redaction();
    test_levels();
    test_escaping();
    test_hostile_values();
    return UNIT_DONE();
}
