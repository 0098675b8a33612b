/* pm-sandbox control API under /_sandbox/: recorded requests, stats, faults, latency, tokens and
 * seeded resources. Never recorded, never faulted, never delayed. */
#include "sandbox.h"

#include "http_server.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SANDBOX_LATENCY_MAX_MS 600000

typedef void (*sandbox_control_fn)(struct sandbox *sb, struct http_request *req,
                                   struct sandbox_answer *ans);

struct sandbox_control_route {
    const char *method;
    const char *path; /* exact, or a prefix when it ends in '*' */
    sandbox_control_fn fn;
};

static void sandbox_control_error(struct sandbox_answer *ans, int status, const char *msg)
{
    sandbox_answer_json(ans, status, json_pack("{s:s}", "error", msg));
}

/* Parses the JSON body; answers 400 and returns NULL when it is not JSON. */
static json_t *sandbox_control_body(struct http_request *req, struct sandbox_answer *ans)
{
    json_error_t jerr;
    size_t len;
    const char *data = http_request_body(req, &len);
    json_t *body = json_loadb(data, len, 0, &jerr);
    char msg[256];

    if (!body) {
        snprintf(msg, sizeof(msg), "the body is not JSON: %s", jerr.text);
        sandbox_control_error(ans, 400, msg);
    }
    return body;
}

static int sandbox_control_long(const char *s, long long *out)
{
    char *end;
    errno = 0;
    *out = strtoll(s, &end, 10);
    return errno || end == s || *end ? -1 : 0;
}

static void sandbox_ctl_requests_get(struct sandbox *sb, struct http_request *req,
                                     struct sandbox_answer *ans)
{
    struct sandbox_record_filter f = {-1, NULL, NULL, 0, 0};
    const char *target = http_request_query(req, "target");
    const char *since = http_request_query(req, "since");
    const char *limit = http_request_query(req, "limit");
    enum sandbox_target t;
    long long v;
    size_t len;
    char *out;

    if (target && *target) {
        if (sandbox_target_parse(target, &t) != 0) {
            sandbox_control_error(ans, 400,
                                  "target must be token, fhir, twilio, sendgrid or webhook");
            return;
        }
        f.target = (int)t;
    }
    if (since && *since) {
        if (sandbox_control_long(since, &v) != 0) {
            sandbox_control_error(ans, 400, "since must be a sequence number");
            return;
        }
        f.since = v;
    }
    if (limit && *limit) {
        if (sandbox_control_long(limit, &v) != 0 || v < 0) {
            sandbox_control_error(ans, 400, "limit must be a whole number >= 0");
            return;
        }
        f.limit = (long)v;
    }
    f.method = http_request_query(req, "method");
    f.path_prefix = http_request_query(req, "path_prefix");
    if (f.method && !*f.method)
        f.method = NULL;
    if (f.path_prefix && !*f.path_prefix)
        f.path_prefix = NULL;
    out = sandbox_recorder_query(sb->recorder, &f, &len);
    if (!out) {
        sandbox_control_error(ans, 500, "out of memory");
        return;
    }
    sandbox_answer_clear(ans);
    ans->status = 200;
    ans->content_type = "application/json";
    ans->body = out; /* owned by the answer now */
    ans->len = len;
}

static void sandbox_ctl_requests_delete(struct sandbox *sb, struct http_request *req,
                                        struct sandbox_answer *ans)
{
    (void)req;
    sandbox_recorder_clear(sb->recorder);
    sandbox_tokens_reset_counts(sb->tokens);
    sandbox_answer_json(ans, 200, json_pack("{s:b}", "cleared", 1));
}

static void sandbox_ctl_stats(struct sandbox *sb, struct http_request *req,
                              struct sandbox_answer *ans)
{
    json_t *stats = sandbox_recorder_stats(sb->recorder);
    long issued, expired;
    (void)req;

    sandbox_tokens_counts(sb->tokens, &issued, &expired);
    json_object_set_new(stats, "tokens_issued", json_integer(issued));
    json_object_set_new(stats, "tokens_expired", json_integer(expired));
    json_object_set_new(stats, "latency_ms", json_integer(atomic_load(&sb->latency_ms)));
    json_object_set_new(stats, "delayed_pending",
                        json_integer((json_int_t)sandbox_timer_pending(sb->timer)));
    sandbox_answer_json(ans, 200, stats);
}

static void sandbox_ctl_faults_get(struct sandbox *sb, struct http_request *req,
                                   struct sandbox_answer *ans)
{
    (void)req;
    sandbox_answer_json(ans, 200, sandbox_faults_list(sb->faults));
}

static void sandbox_ctl_faults_post(struct sandbox *sb, struct http_request *req,
                                    struct sandbox_answer *ans)
{
    json_t *body = sandbox_control_body(req, ans);
    json_t *ids = NULL, *spec;
    char err[256], msg[300];
    size_t i;
    long id;

    if (!body)
        return;
    if (json_is_object(body)) {
        id = sandbox_faults_add(sb->faults, body, err, sizeof(err));
        if (id < 0) {
            snprintf(msg, sizeof(msg), "bad fault rule: %s", err);
            sandbox_control_error(ans, 400, msg);
        } else {
            sandbox_answer_json(ans, 201, json_pack("{s:I}", "id", (json_int_t)id));
        }
        goto out;
    }
    if (!json_is_array(body)) {
        sandbox_control_error(ans, 400, "a fault rule is an object (or an array of them)");
        goto out;
    }
    ids = json_array();
    json_array_foreach(body, i, spec)
    {
        id = sandbox_faults_add(sb->faults, spec, err, sizeof(err));
        if (id < 0) {
            snprintf(msg, sizeof(msg), "bad fault rule #%zu (earlier ones were added): %s", i, err);
            sandbox_control_error(ans, 400, msg);
            goto out;
        }
        json_array_append_new(ids, json_integer(id));
    }
    sandbox_answer_json(ans, 201, json_pack("{s:O}", "ids", ids));
out:
    json_decref(ids);
    json_decref(body);
}

static void sandbox_ctl_faults_delete(struct sandbox *sb, struct http_request *req,
                                      struct sandbox_answer *ans)
{
    (void)req;
    sandbox_faults_clear(sb->faults);
    sandbox_answer_json(ans, 200, json_pack("{s:b}", "cleared", 1));
}

static void sandbox_ctl_latency_get(struct sandbox *sb, struct http_request *req,
                                    struct sandbox_answer *ans)
{
    (void)req;
    sandbox_answer_json(ans, 200,
                        json_pack("{s:I}", "ms", (json_int_t)atomic_load(&sb->latency_ms)));
}

static void sandbox_ctl_latency_post(struct sandbox *sb, struct http_request *req,
                                     struct sandbox_answer *ans)
{
    json_t *body = sandbox_control_body(req, ans);
    json_int_t ms;
    json_error_t jerr;

    if (!body)
        return;
    if (json_unpack_ex(body, &jerr, JSON_STRICT, "{s:I}", "ms", &ms) != 0 || ms < 0 ||
        ms > SANDBOX_LATENCY_MAX_MS) {
        sandbox_control_error(ans, 400, "expected {\"ms\": 0..600000}");
        goto out;
    }
    atomic_store(&sb->latency_ms, (long)ms);
    log_info("latency set", LOG_I("duration_ms", ms));
    sandbox_answer_json(ans, 200, json_pack("{s:I}", "ms", ms));
out:
    json_decref(body);
}

static void sandbox_ctl_tokens_expire(struct sandbox *sb, struct http_request *req,
                                      struct sandbox_answer *ans)
{
    long n = sandbox_tokens_expire_all(sb->tokens);
    (void)req;
    log_info("tokens expired", LOG_I("count", n));
    sandbox_answer_json(ans, 200, json_pack("{s:i}", "expired", (int)n));
}

/* A resource the store will take: an object with non-empty string resourceType and id. */
static int sandbox_ctl_resource_ok(const json_t *res)
{
    const char *type = json_string_value(json_object_get(res, "resourceType"));
    const char *id = json_string_value(json_object_get(res, "id"));
    return json_is_object(res) && type && *type && id && *id;
}

static void sandbox_ctl_resources_post(struct sandbox *sb, struct http_request *req,
                                       struct sandbox_answer *ans)
{
    json_t *body = sandbox_control_body(req, ans);
    json_t *list = NULL, *stored = NULL, *res;
    char err[256], msg[320];
    size_t i;

    if (!body)
        return;
    list = json_is_array(body) ? json_incref(body) : json_pack("[O]", body);
    /* All or nothing: check every resource before storing any. */
    json_array_foreach(list, i, res)
    {
        if (!sandbox_ctl_resource_ok(res)) {
            snprintf(msg, sizeof(msg), "resource #%zu needs a non-empty string resourceType and id",
                     i);
            sandbox_control_error(ans, 400, msg);
            goto out;
        }
    }
    stored = json_array();
    json_array_foreach(list, i, res)
    {
        if (sandbox_store_put(sb->store, res, err, sizeof(err)) != 0) {
            snprintf(msg, sizeof(msg), "resource #%zu: %s", i, err);
            sandbox_control_error(ans, 400, msg);
            goto out;
        }
        json_array_append_new(stored, json_pack("{s:O, s:O}", "resourceType",
                                                json_object_get(res, "resourceType"), "id",
                                                json_object_get(res, "id")));
    }
    log_info("resources stored", LOG_I("count", json_array_size(stored)));
    sandbox_answer_json(ans, 200, json_pack("{s:O}", "stored", stored));
out:
    json_decref(stored);
    json_decref(list);
    json_decref(body);
}

static void sandbox_ctl_resources_get(struct sandbox *sb, struct http_request *req,
                                      struct sandbox_answer *ans)
{
    const char *type = http_request_path(req) + strlen("/_sandbox/resources/");
    json_t *list;

    if (!*type || strchr(type, '/')) {
        sandbox_control_error(ans, 404, "use /_sandbox/resources/<ResourceType>");
        return;
    }
    list = sandbox_store_find(sb->store, type, NULL, NULL, 1);
    if (!list) {
        sandbox_control_error(ans, 500, "out of memory");
        return;
    }
    sandbox_answer_json(ans, 200, json_pack("{s:o}", "resources", list));
}

static void sandbox_ctl_resources_delete(struct sandbox *sb, struct http_request *req,
                                         struct sandbox_answer *ans)
{
    (void)req;
    sandbox_store_reset(sb->store);
    log_info("resources reset to the fixtures");
    sandbox_answer_json(ans, 200, json_pack("{s:b}", "reset", 1));
}

static void sandbox_ctl_health(struct sandbox *sb, struct http_request *req,
                               struct sandbox_answer *ans)
{
    (void)sb;
    (void)req;
    sandbox_answer_json(ans, 200, json_pack("{s:s}", "status", "ok"));
}

static const struct sandbox_control_route sandbox_control_routes[] = {
    {"GET", "/_sandbox/requests", sandbox_ctl_requests_get},
    {"DELETE", "/_sandbox/requests", sandbox_ctl_requests_delete},
    {"GET", "/_sandbox/stats", sandbox_ctl_stats},
    {"GET", "/_sandbox/faults", sandbox_ctl_faults_get},
    {"POST", "/_sandbox/faults", sandbox_ctl_faults_post},
    {"DELETE", "/_sandbox/faults", sandbox_ctl_faults_delete},
    {"GET", "/_sandbox/latency", sandbox_ctl_latency_get},
    {"POST", "/_sandbox/latency", sandbox_ctl_latency_post},
    {"POST", "/_sandbox/tokens/expire", sandbox_ctl_tokens_expire},
    {"POST", "/_sandbox/resources", sandbox_ctl_resources_post},
    {"DELETE", "/_sandbox/resources", sandbox_ctl_resources_delete},
    {"GET", "/_sandbox/resources/*", sandbox_ctl_resources_get},
    {"GET", "/_sandbox/healthz", sandbox_ctl_health},
};

static int sandbox_control_path_matches(const char *pattern, const char *path)
{
    size_t n = strlen(pattern);
    if (n && pattern[n - 1] == '*')
        return strncmp(pattern, path, n - 1) == 0;
    return strcmp(pattern, path) == 0;
}

int sandbox_control_handle(struct sandbox *sb, struct http_request *req, struct sandbox_answer *ans)
{
    const char *method = http_request_method(req), *path = http_request_path(req);
    char allow[64] = "";
    size_t used = 0;

    for (size_t i = 0; i < sizeof(sandbox_control_routes) / sizeof(sandbox_control_routes[0]);
         i++) {
        const struct sandbox_control_route *r = &sandbox_control_routes[i];
        if (!sandbox_control_path_matches(r->path, path))
            continue;
        if (strcmp(r->method, method) == 0) {
            r->fn(sb, req, ans);
            return 0;
        }
        int n = snprintf(allow + used, sizeof(allow) - used, "%s%s", used ? ", " : "", r->method);
        if (n > 0 && (size_t)n < sizeof(allow) - used)
            used += (size_t)n;
    }
    if (used) {
        sandbox_control_error(ans, 405, "method not allowed here");
        sandbox_answer_header(ans, "Allow", allow);
    } else {
        sandbox_control_error(ans, 404, "no such control endpoint");
    }
    return 0;
}
