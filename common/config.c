/* Environment configuration: typed getters with validation, X_FILE secrets, shared CLI flags. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void config_report_add(struct config_report *r, const char *fmt, ...)
{
    va_list ap;
    r->count++;
    if (r->len + 2 >= sizeof(r->text))
        return;
    va_start(ap, fmt);
    int n = vsnprintf(r->text + r->len, sizeof(r->text) - r->len - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    r->len += (size_t)n;
    if (r->len > sizeof(r->text) - 2)
        r->len = sizeof(r->text) - 2;
    r->text[r->len++] = '\n';
    r->text[r->len] = '\0';
}

void config_report_print(const struct config_report *r, FILE *out, const char *prog)
{
    const char *p = r->text;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);
        fprintf(out, "%s: config: %.*s\n", prog, n, p);
        p = nl ? nl + 1 : NULL;
    }
}

const char *config_str(const char *name, const char *def)
{
    const char *v = getenv(name);
    return (v && *v) ? v : def;
}

void config_secret_free(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = 0;
    free(s);
}

static char *config_read_file(const char *path, const char *name, struct config_report *r)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;

    if (!f) {
        config_report_add(r, "%s_FILE: cannot open %s: %s", name, path, strerror(errno));
        return NULL;
    }
    for (;;) {
        if (len + 4096 + 1 > cap) {
            /* cap stays the size of buf until realloc succeeds: the fail path wipes cap bytes. */
            size_t ncap = cap ? cap * 2 : 8192;
            if (ncap > (1 << 20)) {
                config_report_add(r, "%s_FILE: %s is larger than 1 MiB", name, path);
                goto fail;
            }
            char *nb = realloc(buf, ncap);
            if (!nb)
                goto fail;
            buf = nb;
            cap = ncap;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        config_report_add(r, "%s_FILE: cannot read %s", name, path);
        goto fail;
    }
    fclose(f);
    if (!buf)
        buf = calloc(1, 1);
    buf[len] = '\0';
    /* Files written by editors or `echo` end with a newline that is not part of the secret. */
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    return buf;
fail:
    fclose(f);
    if (buf)
        memset(buf, 0, cap);
    free(buf);
    return NULL;
}

char *config_secret(const char *name, struct config_report *r)
{
    char fname[256];
    const char *direct = getenv(name);
    const char *path;
    char *v;

    snprintf(fname, sizeof(fname), "%s_FILE", name);
    path = getenv(fname);
    if (direct && *direct && path && *path) {
        config_report_add(r, "%s and %s are both set; set only one", name, fname);
        return NULL;
    }
    if (path && *path) {
        v = config_read_file(path, name, r);
        if (v && !*v) {
            config_report_add(r, "%s: file %s is empty", fname, path);
            free(v);
            return NULL;
        }
        return v;
    }
    if (direct && *direct)
        return strdup(direct);
    return NULL;
}

long config_long(const char *name, long def, long min, long max, struct config_report *r)
{
    const char *v = config_str(name, NULL);
    char *end;
    long n;

    if (!v)
        return def;
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || end == v || *end != '\0') {
        config_report_add(r, "%s: '%s' is not a whole number", name, v);
        return def;
    }
    if (n < min || n > max) {
        config_report_add(r, "%s: %ld is outside %ld..%ld", name, n, min, max);
        return def;
    }
    return n;
}

int config_bool(const char *name, int def, struct config_report *r)
{
    const char *v = config_str(name, NULL);
    if (!v)
        return def;
    if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
        return 1;
    if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off"))
        return 0;
    config_report_add(r, "%s: '%s' is not a boolean (use 1 or 0)", name, v);
    return def;
}

size_t config_list_split(const char *value, char ***items)
{
    size_t n = 0, cap = 0;
    char **out = NULL;
    const char *p = value;

    *items = NULL;
    while (p && *p) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *b = p, *e = end;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (e > b) {
            if (n == cap) {
                cap = cap ? cap * 2 : 4;
                char **no = realloc(out, cap * sizeof(*out));
                if (!no)
                    break;
                out = no;
            }
            out[n] = strndup(b, (size_t)(e - b));
            if (!out[n])
                break;
            n++;
        }
        p = comma ? comma + 1 : NULL;
    }
    *items = out;
    return n;
}

void config_list_free(char **items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        config_secret_free(items[i]);
    free(items);
}

int config_parse_listen(const char *value, char *host, size_t hostlen, unsigned *port, char *errstr,
                        size_t errlen)
{
    const char *colon;
    const char *h = value;
    size_t hl;
    char *end;
    long p;

    if (value[0] == '[') {
        const char *rb = strchr(value, ']');
        if (!rb || rb[1] != ':') {
            snprintf(errstr, errlen, "'%s' is not [ipv6]:port", value);
            return -1;
        }
        h = value + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(value, ':');
        if (!colon) {
            snprintf(errstr, errlen, "'%s' is not host:port", value);
            return -1;
        }
        hl = (size_t)(colon - value);
    }
    if (hl >= hostlen) {
        snprintf(errstr, errlen, "host in '%s' is too long", value);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 0 || p > 65535) {
        snprintf(errstr, errlen, "port in '%s' is not 0..65535", value);
        return -1;
    }
    *port = (unsigned)p;
    return 0;
}

enum config_mode config_cli(int argc, char **argv, const char *prog, const char *summary,
                            const struct config_var *vars)
{
    enum config_mode mode = CONFIG_MODE_RUN;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("Usage: %s [--help | --version | --check-config]\n\n%s\n\n", prog, summary);
            printf("Configuration comes from the environment. A secret variable X may be given\n"
                   "as X_FILE, the path of a file holding it; secrets are never accepted on the\n"
                   "command line.\n\n");
            printf("Environment variables:\n");
            for (const struct config_var *v = vars; v->name; v++) {
                printf("  %-34s %s%s\n", v->name, v->help, v->secret ? " (secret; or _FILE)" : "");
                printf("  %-34s default: %s\n", "", v->def ? v->def : "(unset)");
            }
            return CONFIG_MODE_EXIT_OK;
        } else if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
            printf("%s %s\n", prog, PM_VERSION);
            return CONFIG_MODE_EXIT_OK;
        } else if (!strcmp(argv[i], "--check-config")) {
            mode = CONFIG_MODE_CHECK;
        } else {
            /* The argument is not echoed: it might be a secret typed in the wrong place. */
            fprintf(stderr, "%s: unknown argument #%d (see --help)\n", prog, i);
            return CONFIG_MODE_EXIT_USAGE;
        }
    }
    return mode;
}

void config_topics_load(struct config_topics *t)
{
    t->messages = config_str("PM_TOPIC_CANVAS_MESSAGES", CONFIG_TOPIC_MESSAGES_DEFAULT);
    t->replies = config_str("PM_TOPIC_PATIENT_REPLIES", CONFIG_TOPIC_REPLIES_DEFAULT);
    t->questionnaires =
        config_str("PM_TOPIC_QUESTIONNAIRE_RESPONSES", CONFIG_TOPIC_QUESTIONNAIRES_DEFAULT);
    t->deliveries = config_str("PM_TOPIC_DELIVERIES", CONFIG_TOPIC_DELIVERIES_DEFAULT);
    t->dlq = config_str("PM_TOPIC_DLQ", CONFIG_TOPIC_DLQ_DEFAULT);
}

enum log_level config_log_level(struct config_report *r)
{
    const char *v = config_str("PM_LOG_LEVEL", "info");
    enum log_level level;

    if (log_level_parse(v, &level) != 0) {
        /* Not a secret: the value is echoed so that the operator sees the typo. */
        config_report_add(r, "PM_LOG_LEVEL: '%s' is not error, warn, info or debug", v);
        return LOG_INFO;
    }
    return level;
}
