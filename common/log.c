/* JSON-lines logger: one write(2) per line, allow-listed field names only (see log.h). */
#include "log.h"

#include "utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_svc = "pm";
static enum log_level log_min = LOG_INFO;

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

/* Field names that may carry a value. Everything here is an identifier, a count, a status or a
 * fixed vocabulary chosen by our own code: never free text from a request or a resource. */
static const char *const log_allowed_keys[] = {
    "event_id",
    "communication_id",
    "patient_id",
    "practitioner_id",
    "questionnaire_id",
    "resource_id",
    "topic",
    "partition",
    "offset",
    "status",
    "http_status",
    "correlation_id",
    "route",
    "method",
    "attempts",
    "channel",
    "outcome",
    "reason",
    "error",
    "error_class",
    "kafka_error",
    "curl_error",
    "addr",
    "port",
    "count",
    "duration_ms",
    "type",
    "kind",
    "target",
    "version",
    "brokers",
    "group_id",
    "member_id",
    "retry_in_ms",
    "in_flight",
    "worker_threads",
    "limit",
    "pid",
    "signal",
    "variable",
    "host",
    "problem",
    "pointer",
    "key_count",
    "partitions",
    "bytes",
    "source_event_id",
    "provider_id",
    "expires_in",
    "path",
    "command",
};

int log_key_allowed(const char *key)
{
    for (size_t i = 0; i < sizeof(log_allowed_keys) / sizeof(log_allowed_keys[0]); i++)
        if (strcmp(key, log_allowed_keys[i]) == 0)
            return 1;
    return 0;
}

void log_init(const char *svc, enum log_level level)
{
    log_svc = svc;
    log_min = level;
}

int log_level_parse(const char *name, enum log_level *out)
{
    for (int i = 0; i <= LOG_DEBUG; i++) {
        if (strcmp(name, log_level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

int log_enabled(enum log_level level)
{
    return level <= log_min;
}

/* Appends @p s JSON-escaped. Returns the new length, never past @p cap - 1. Bytes that are not
 * UTF-8 (a URL-decoded path can hold any) become U+FFFD so that the line stays valid JSON. */
static size_t log_put_escaped(char *buf, size_t len, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)s; *p && len + 7 < cap; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)c;
        } else if (c == '\n') {
            buf[len++] = '\\';
            buf[len++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            buf[len++] = '\\';
            buf[len++] = 'u';
            buf[len++] = '0';
            buf[len++] = '0';
            buf[len++] = hex[c >> 4];
            buf[len++] = hex[c & 15];
        } else if (c >= 0x80) {
            size_t n = utf8_decode(p, (size_t)-1, NULL);
            if (n == 0) {
                memcpy(buf + len, "\\ufffd", 6);
                len += 6;
            } else {
                memcpy(buf + len, p, n); /* n <= 4 < 7 */
                len += n;
                p += n - 1;
            }
        } else {
            buf[len++] = (char)c;
        }
    }
    return len;
}

static size_t log_put_raw(char *buf, size_t len, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (len + 1 >= cap)
        return len;
    if (len + n >= cap)
        n = cap - len - 1;
    memcpy(buf + len, s, n);
    return len + n;
}

void log_at(enum log_level level, const char *msg, ...)
{
    if (level > log_min)
        return;

    char buf[2048];
    /* Room for ',"truncated":true' and "}\n" stays free, so a line is always whole JSON. */
    static const char truncated[] = ",\"truncated\":true";
    size_t cap = sizeof(buf) - 2 - (sizeof(truncated) - 1);
    size_t len = 0;
    int dropped = 0;
    struct timeval tv;
    struct tm tm;
    char ts[128]; /* sized for any int fields, so -Wformat-truncation has nothing to flag */

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long)(tv.tv_usec / 1000));

    len = log_put_raw(buf, len, cap, "{\"ts\":\"");
    len = log_put_raw(buf, len, cap, ts);
    len = log_put_raw(buf, len, cap, "\",\"level\":\"");
    len = log_put_raw(buf, len, cap, log_level_names[level]);
    len = log_put_raw(buf, len, cap, "\",\"svc\":\"");
    len = log_put_escaped(buf, len, cap, log_svc);
    len = log_put_raw(buf, len, cap, "\",\"msg\":\"");
    len = log_put_escaped(buf, len, cap, msg);
    len = log_put_raw(buf, len, cap, "\"");

    va_list ap;
    va_start(ap, msg);
    for (;;) {
        struct log_kv kv = va_arg(ap, struct log_kv);
        size_t mark = len;
        if (!kv.key)
            break;
        len = log_put_raw(buf, len, cap, ",\"");
        len = log_put_escaped(buf, len, cap, kv.key);
        len = log_put_raw(buf, len, cap, "\":");
        if (!log_key_allowed(kv.key)) {
            len = log_put_raw(buf, len, cap, "\"[redacted]\"");
        } else if (kv.is_int) {
            char num[32];
            snprintf(num, sizeof(num), "%lld", kv.i);
            len = log_put_raw(buf, len, cap, num);
        } else if (!kv.s) {
            len = log_put_raw(buf, len, cap, "null");
        } else {
            len = log_put_raw(buf, len, cap, "\"");
            len = log_put_escaped(buf, len, cap, kv.s);
            len = log_put_raw(buf, len, cap, "\"");
        }
        /* A field that may not have fit is dropped whole rather than cut mid-string; the
         * shorter ones after it (usually the ids) still get their chance. */
        if (len + 7 >= cap) {
            len = mark;
            dropped = 1;
        }
    }
    va_end(ap);
    if (dropped)
        len = log_put_raw(buf, len, sizeof(buf) - 2, truncated);

    buf[len++] = '}';
    buf[len++] = '\n';
    /* One write per line keeps lines whole when several threads log at once. */
    ssize_t w = write(STDERR_FILENO, buf, len);
    (void)w;
}
