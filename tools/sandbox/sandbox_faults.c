/* pm-sandbox fault injection: ordered rules that replace, delay or hang answers, and each party's
 * usual error bodies. */
#include "sandbox.h"

#include "json_text.h"
#include "problem.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct sandbox_fault {
    long id;
    int target; /* -1 = any ("*") */
    char method[16];
    char path_prefix[256];
    int status; /* 0 = answer normally */
    char retry_after[32];
    char *body; /* NULL = the party's usual error body */
    size_t len;
    const char *content_type;
    long count; /* remaining; -1 = until cleared */
    long latency_ms;
    long hang_ms;
    long applied;
};

struct sandbox_faults {
    pthread_mutex_t lock;
    struct sandbox_fault **rules;
    size_t n, cap;
    atomic_size_t active; /* == n, read without the lock on the hot path */
    long next_id;
};

struct sandbox_faults *sandbox_faults_new(void)
{
    struct sandbox_faults *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    atomic_init(&f->active, 0);
    f->next_id = 1;
    return f;
}

static void sandbox_fault_free(struct sandbox_fault *r)
{
    if (!r)
        return;
    free(r->body);
    free(r);
}

void sandbox_faults_clear(struct sandbox_faults *f)
{
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->n; i++)
        sandbox_fault_free(f->rules[i]);
    f->n = 0;
    atomic_store(&f->active, 0);
    pthread_mutex_unlock(&f->lock);
}

void sandbox_faults_free(struct sandbox_faults *f)
{
    if (!f)
        return;
    sandbox_faults_clear(f);
    free(f->rules);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

/* Fills the body of a rule from "body": a string is sent as is, anything else as JSON. */
static int sandbox_fault_body(struct sandbox_fault *r, const json_t *body)
{
    if (json_is_string(body)) {
        json_error_t jerr;
        json_t *parsed;
        r->len = json_string_length(body);
        r->body = malloc(r->len + 1);
        if (!r->body)
            return -1;
        memcpy(r->body, json_string_value(body), r->len + 1);
        parsed = json_loadb(r->body, r->len, JSON_DECODE_ANY, &jerr);
        r->content_type = parsed ? "application/json" : "text/plain; charset=utf-8";
        json_decref(parsed);
        return 0;
    }
    r->body = json_text_dump(body, JSON_COMPACT | JSON_ENCODE_ANY, &r->len);
    if (!r->body)
        return -1;
    r->content_type = "application/json";
    return 0;
}

long sandbox_faults_add(struct sandbox_faults *f, const json_t *spec, char *errstr, size_t errlen)
{
    const char *target = NULL, *method = NULL, *prefix = NULL;
    json_t *status = NULL, *retry = NULL, *body = NULL;
    json_int_t count = 1, latency = 0, hang = 0;
    struct sandbox_fault *r = NULL;
    enum sandbox_target t;
    json_error_t jerr;
    long id = -1;

    /* Strict: a misspelled key is an error, not a rule that silently does something else. */
    if (json_unpack_ex((json_t *)spec, &jerr, JSON_STRICT,
                       "{s:s, s?:s, s?:s, s?:o, s?:o, s?:o, s?:I, s?:I, s?:I}", "target", &target,
                       "method", &method, "path_prefix", &prefix, "status", &status, "retry_after",
                       &retry, "body", &body, "count", &count, "latency_ms", &latency, "hang_ms",
                       &hang) != 0) {
        snprintf(errstr, errlen, "%s", jerr.text);
        goto out;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(errstr, errlen, "out of memory");
        goto out;
    }
    if (strcmp(target, "*") == 0) {
        r->target = -1;
    } else if (sandbox_target_parse(target, &t) == 0) {
        r->target = (int)t;
    } else {
        snprintf(errstr, errlen, "target must be token, fhir, twilio, sendgrid, webhook or *");
        goto out;
    }
    if ((method && strlen(method) >= sizeof(r->method)) ||
        (prefix && strlen(prefix) >= sizeof(r->path_prefix))) {
        snprintf(errstr, errlen, "method or path_prefix is too long");
        goto out;
    }
    snprintf(r->method, sizeof(r->method), "%s", method ? method : "");
    snprintf(r->path_prefix, sizeof(r->path_prefix), "%s", prefix ? prefix : "");
    if (status && (!json_is_integer(status) || json_integer_value(status) < 100 ||
                   json_integer_value(status) > 599)) {
        snprintf(errstr, errlen, "status must be an HTTP status 100..599");
        goto out;
    }
    if (count == 0 || count < -1 || latency < 0 || hang < 0 || latency > 3600000 ||
        hang > 3600000) {
        snprintf(errstr, errlen, "count must be -1 or >= 1; latency_ms and hang_ms 0..3600000");
        goto out;
    }
    /* A rule that only delays answers normally; any other rule answers 503 unless told. */
    if (status)
        r->status = (int)json_integer_value(status);
    else
        r->status = (latency || hang) ? 0 : 503;
    if (retry) {
        if (json_is_string(retry) && json_string_length(retry) < sizeof(r->retry_after))
            snprintf(r->retry_after, sizeof(r->retry_after), "%s", json_string_value(retry));
        else if (json_is_integer(retry) && json_integer_value(retry) >= 0)
            snprintf(r->retry_after, sizeof(r->retry_after), "%lld",
                     (long long)json_integer_value(retry));
        else {
            snprintf(errstr, errlen, "retry_after must be a short string or a number");
            goto out;
        }
    }
    if (body && sandbox_fault_body(r, body) != 0) {
        snprintf(errstr, errlen, "out of memory");
        goto out;
    }
    r->count = (long)count;
    r->latency_ms = (long)latency;
    r->hang_ms = (long)hang;

    pthread_mutex_lock(&f->lock);
    if (f->n == f->cap) {
        size_t ncap = f->cap ? f->cap * 2 : 8;
        struct sandbox_fault **nr = realloc(f->rules, ncap * sizeof(*nr));
        if (!nr) {
            pthread_mutex_unlock(&f->lock);
            snprintf(errstr, errlen, "out of memory");
            goto out;
        }
        f->rules = nr;
        f->cap = ncap;
    }
    r->id = f->next_id++;
    id = r->id;
    f->rules[f->n++] = r;
    r = NULL; /* owned by the list now */
    atomic_store(&f->active, f->n);
    pthread_mutex_unlock(&f->lock);
out:
    sandbox_fault_free(r);
    return id;
}

static int sandbox_fault_matches(const struct sandbox_fault *r, enum sandbox_target target,
                                 const char *method, const char *path)
{
    if (r->target >= 0 && r->target != (int)target)
        return 0;
    if (r->method[0] && strcasecmp(r->method, method) != 0)
        return 0;
    return !r->path_prefix[0] || sandbox_starts_with(path, r->path_prefix);
}

int sandbox_faults_take(struct sandbox_faults *f, enum sandbox_target target, const char *method,
                        const char *path, struct sandbox_fault_hit *hit)
{
    int found = 0;

    memset(hit, 0, sizeof(*hit));
    if (atomic_load(&f->active) == 0)
        return 0;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->n; i++) {
        struct sandbox_fault *r = f->rules[i];
        if (!sandbox_fault_matches(r, target, method, path))
            continue;
        hit->id = r->id;
        hit->status = r->status;
        memcpy(hit->retry_after, r->retry_after, sizeof(hit->retry_after));
        if (r->body) {
            hit->body = malloc(r->len + 1);
            if (hit->body) {
                memcpy(hit->body, r->body, r->len + 1);
                hit->len = r->len;
            }
        }
        hit->content_type = r->content_type;
        hit->latency_ms = r->latency_ms;
        hit->hang_ms = r->hang_ms;
        r->applied++;
        if (r->count > 0 && --r->count == 0) {
            sandbox_fault_free(r);
            memmove(&f->rules[i], &f->rules[i + 1], (f->n - i - 1) * sizeof(*f->rules));
            f->n--;
            atomic_store(&f->active, f->n);
        }
        found = 1;
        break;
    }
    pthread_mutex_unlock(&f->lock);
    return found;
}

void sandbox_fault_hit_clear(struct sandbox_fault_hit *hit)
{
    free(hit->body);
    memset(hit, 0, sizeof(*hit));
}

json_t *sandbox_faults_list(struct sandbox_faults *f)
{
    json_t *list = json_array();

    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->n; i++) {
        const struct sandbox_fault *r = f->rules[i];
        json_array_append_new(
            list, json_pack("{s:I, s:s, s:s?, s:s?, s:o, s:s?, s:o, s:I, s:I, s:I, s:I}", "id",
                            (json_int_t)r->id, "target",
                            r->target < 0 ? "*" : sandbox_target_name(r->target), "method",
                            r->method[0] ? r->method : NULL, "path_prefix",
                            r->path_prefix[0] ? r->path_prefix : NULL, "status",
                            r->status ? json_integer(r->status) : json_null(), "retry_after",
                            r->retry_after[0] ? r->retry_after : NULL, "body",
                            r->body ? json_stringn(r->body, r->len) : json_null(), "count",
                            (json_int_t)r->count, "latency_ms", (json_int_t)r->latency_ms,
                            "hang_ms", (json_int_t)r->hang_ms, "applied", (json_int_t)r->applied));
    }
    pthread_mutex_unlock(&f->lock);
    return json_pack("{s:o}", "faults", list);
}

/* --- each party's usual error answer --- */

static void sandbox_default_fhir(int status, struct sandbox_answer *a)
{
    const char *code = "invalid", *text = "Bad request";
    if (status >= 500) {
        code = "excepetion"; /* sic: Canvas spells it so */
        text = "Internal server error";
    } else if (status == 401) {
        code = "unknown";
        text = "Authentication failed";
    } else if (status == 403) {
        code = "forbidden";
        text = "Forbidden";
    } else if (status == 404) {
        code = "not-found";
        text = "Not found";
    } else if (status == 405) {
        code = "not-supported";
        text = "Operation not supported";
    } else if (status == 422) {
        code = "business-rule";
        text = "Business rule violation";
    } else if (status == 429) {
        code = "throttled";
        text = "Too many requests";
    }
    sandbox_fhir_error(a, status, code, text);
}

static void sandbox_default_html(int status, struct sandbox_answer *a)
{
    char html[512];
    int n;
    if (status == 500)
        /* What Django answers with DEBUG off. */
        n = snprintf(html, sizeof(html),
                     "<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Server Error "
                     "(500)</title>\n</head>\n<body>\n  <h1>Server Error (500)</h1><p></p>\n"
                     "</body>\n</html>\n");
    else
        /* What a proxy in front of it answers. */
        n = snprintf(html, sizeof(html),
                     "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d "
                     "%s</h1></center>\r\n</body>\r\n</html>\r\n",
                     status, problem_status_title(status), status, problem_status_title(status));
    sandbox_answer_raw(a, status, "text/html", html, n > 0 ? (size_t)n : 0);
}

static void sandbox_default_token(int status, struct sandbox_answer *a)
{
    const char *error = NULL;
    if (status == 400)
        error = "invalid_request";
    else if (status == 401)
        error = "invalid_client";
    else if (status == 403)
        error = "access_denied";
    if (error)
        sandbox_answer_json(a, status, json_pack("{s:s}", "error", error));
    else
        sandbox_default_html(status, a);
}

static void sandbox_default_twilio(int status, struct sandbox_answer *a)
{
    int code = 20001;
    const char *msg = "Bad Request";
    if (status == 401) {
        code = 20003;
        msg = "Authenticate";
    } else if (status == 404) {
        code = 20404;
        msg = "The requested resource was not found";
    } else if (status == 429) {
        code = 20429;
        msg = "Too Many Requests";
    } else if (status == 503) {
        code = 20503;
        msg = "Service Unavailable";
    } else if (status >= 500) {
        code = 20500;
        msg = "Internal Server Error";
    }
    sandbox_answer_json(a, status, sandbox_twilio_error_json(status, code, msg));
}

static void sandbox_default_sendgrid(int status, struct sandbox_answer *a)
{
    const char *msg = "Bad Request";
    if (status == 401) {
        msg = "The provided authorization grant is invalid, expired, or revoked";
    } else if (status == 403) {
        msg = "access forbidden";
    } else if (status == 413) {
        msg = "content too large";
    } else if (status == 429) {
        char reset[24];
        msg = "too many requests";
        snprintf(reset, sizeof(reset), "%lld", (long long)time(NULL) + 60);
        sandbox_answer_header(a, "X-RateLimit-Limit", "600");
        sandbox_answer_header(a, "X-RateLimit-Remaining", "0");
        sandbox_answer_header(a, "X-RateLimit-Reset", reset);
    } else if (status >= 500) {
        msg = "An internal server error occurred.";
    }
    sandbox_answer_json(a, status, sandbox_sendgrid_error_json(NULL, msg));
}

void sandbox_default_error(enum sandbox_target target, int status, struct sandbox_answer *a)
{
    switch (target) {
    case SANDBOX_TARGET_FHIR:
        sandbox_default_fhir(status, a);
        break;
    case SANDBOX_TARGET_TOKEN:
        sandbox_default_token(status, a);
        break;
    case SANDBOX_TARGET_TWILIO:
        sandbox_default_twilio(status, a);
        break;
    case SANDBOX_TARGET_SENDGRID:
        sandbox_default_sendgrid(status, a);
        break;
    case SANDBOX_TARGET_WEBHOOK:
    case SANDBOX_TARGET_COUNT:
    default:
        sandbox_answer_json(
            a, status,
            json_pack("{s:b, s:s}", "received", 0, "error", problem_status_title(status)));
        break;
    }
}
