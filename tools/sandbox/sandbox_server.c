/* pm-sandbox server: the route table, and the one path every party's request takes (faults,
 * handler, correlation id, recording, latency through the timer). */
#include "sandbox.h"

#include "http_server.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define SANDBOX_MAX_BODY_BYTES (4u * 1024u * 1024u)
#define SANDBOX_CONN_LIMIT     4096
#define SANDBOX_CONN_TIMEOUT_S 120
#define SANDBOX_DRAIN_WAIT_MS  5000

/* Request headers kept in the record. The server helper looks headers up by name only, so the
 * record shows these (the ones a client of Canvas, Twilio, SendGrid or a webhook sends). */
static const char *const sandbox_recorded_headers[] = {"accept",
                                                       "authorization",
                                                       "content-type",
                                                       "content-length",
                                                       "user-agent",
                                                       "idempotency-key",
                                                       "traceparent",
                                                       "webhook-id",
                                                       "webhook-timestamp",
                                                       "webhook-signature",
                                                       "x-request-id",
                                                       "expect",
                                                       NULL};

/* Query parameters kept in the record: every one a party of the sandbox understands. */
static const char *const sandbox_recorded_query[] = {
    "_id",           "patient",
    "sender",        "recipient",
    "name",          "email",
    "active",        "include-non-schedulable-practitioners",
    "code",          "questionnaire-code",
    "status",        "subject",
    "questionnaire", "_count",
    "_offset",       NULL};

typedef int (*sandbox_party_fn)(struct sandbox *sb, struct http_request *req,
                                struct sandbox_answer *ans);

#define SANDBOX_RECORDED_HEADERS (sizeof(sandbox_recorded_headers) / sizeof(char *) - 1)
#define SANDBOX_RECORDED_QUERY   (sizeof(sandbox_recorded_query) / sizeof(char *) - 1)

/* "Bearer abcd…" (first 4 characters) or "Basic …": enough to tell tokens apart, not to use. */
static void sandbox_redact_authorization(const char *v, char *out, size_t outlen)
{
    const char *sp = strchr(v, ' ');

    if (strncasecmp(v, "Bearer ", 7) == 0) {
        const char *tok = v + 7;
        snprintf(out, outlen, "Bearer %.4s\xe2\x80\xa6", tok);
    } else if (sp && (size_t)(sp - v) < 24) {
        snprintf(out, outlen, "%.*s \xe2\x80\xa6", (int)(sp - v), v);
    } else {
        snprintf(out, outlen, "\xe2\x80\xa6");
    }
}

/* The recorded headers of @p req into @p out; @p auth holds the redacted Authorization.
 * @returns how many. */
static size_t sandbox_record_headers(struct http_request *req, struct sandbox_record_pair *out,
                                     char *auth, size_t authlen)
{
    size_t n = 0;
    for (size_t i = 0; sandbox_recorded_headers[i]; i++) {
        const char *name = sandbox_recorded_headers[i];
        const char *v = http_request_header(req, name);
        if (!v)
            continue;
        if (strcmp(name, "authorization") == 0) {
            sandbox_redact_authorization(v, auth, authlen);
            v = auth;
        }
        out[n].name = name;
        out[n++].value = v;
    }
    return n;
}

static size_t sandbox_record_query(struct http_request *req, struct sandbox_record_pair *out)
{
    size_t n = 0;
    for (size_t i = 0; sandbox_recorded_query[i]; i++) {
        const char *v = http_request_query(req, sandbox_recorded_query[i]);
        if (v) {
            out[n].name = sandbox_recorded_query[i];
            out[n++].value = v;
        }
    }
    return n;
}

/* A token request body with the client_secret value replaced: the record is readable by any
 * test, and a secret is a secret even in a sandbox. @returns a malloc'd copy. */
static char *sandbox_redact_form_secret(const char *body, size_t len, size_t *outlen)
{
    static const char key[] = "client_secret=", mask[] = "[redacted]";
    /* Each masked field can grow by at most the mask's length. */
    char *out = malloc(len + (len / (sizeof(key) - 1) + 1) * sizeof(mask) + 1);
    size_t o = 0, i = 0;

    if (!out)
        return NULL;
    while (i < len) {
        int at_field = i == 0 || body[i - 1] == '&';
        if (at_field && len - i >= sizeof(key) - 1 && memcmp(body + i, key, sizeof(key) - 1) == 0) {
            memcpy(out + o, key, sizeof(key) - 1);
            o += sizeof(key) - 1;
            memcpy(out + o, mask, sizeof(mask) - 1);
            o += sizeof(mask) - 1;
            while (i < len && body[i] != '&')
                i++;
            continue;
        }
        out[o++] = body[i++];
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

static void sandbox_record(struct sandbox *sb, struct http_request *req, enum sandbox_target target,
                           const struct sandbox_answer *ans, int signature_valid, long fault_id)
{
    struct sandbox_record_in in;
    struct sandbox_record_pair headers[SANDBOX_RECORDED_HEADERS], query[SANDBOX_RECORDED_QUERY];
    char auth[64];
    char *redacted = NULL;
    size_t len;
    const char *body = http_request_body(req, &len);

    if (target == SANDBOX_TARGET_TOKEN) {
        size_t rlen = 0;
        redacted = sandbox_redact_form_secret(body, len, &rlen);
        body = redacted ? redacted : "";
        len = redacted ? rlen : 0;
    }
    in = (struct sandbox_record_in){target,
                                    http_request_method(req),
                                    http_request_path(req),
                                    query,
                                    sandbox_record_query(req, query),
                                    headers,
                                    sandbox_record_headers(req, headers, auth, sizeof(auth)),
                                    body,
                                    len,
                                    ans->status,
                                    signature_valid,
                                    fault_id};
    sandbox_recorder_add(sb->recorder, &in);
    free(redacted);
}

static enum http_result sandbox_serve(struct sandbox *sb, struct http_request *req,
                                      enum sandbox_target target, sandbox_party_fn party)
{
    const char *method = http_request_method(req), *path = http_request_path(req);
    struct sandbox_answer ans;
    struct sandbox_fault_hit hit;
    long delay = atomic_load(&sb->latency_ms);
    int signature_valid = -1, hang = 0, faulted;
    char correlation[37];

    memset(&ans, 0, sizeof(ans));
    faulted = sandbox_faults_take(sb->faults, target, method, path, &hit);
    if (faulted) {
        delay += hit.latency_ms + hit.hang_ms;
        hang = hit.hang_ms > 0;
        /* The server helper cannot drop a suspended connection, so a hang ends with a gateway
         * timeout and Connection: close; a client with a shorter timeout sees only silence. */
        if (hang && !hit.status)
            hit.status = 504;
    }
    if (faulted && hit.status) {
        if (hit.body)
            sandbox_answer_raw(&ans, hit.status, hit.content_type, hit.body, hit.len);
        else
            sandbox_default_error(target, hit.status, &ans);
        if (hit.retry_after[0])
            sandbox_answer_header(&ans, "Retry-After", hit.retry_after);
        if (hang)
            sandbox_answer_header(&ans, "Connection", "close");
    } else if (target == SANDBOX_TARGET_WEBHOOK) {
        if (sandbox_webhook_handle(sb, req, &ans, &signature_valid) != 0)
            goto fail;
    } else if (party(sb, req, &ans) != 0) {
        goto fail;
    }
    if (target == SANDBOX_TARGET_FHIR) {
        sandbox_uuid(correlation);
        sandbox_answer_header(&ans, "fumage-correlation-id", correlation);
    }
    sandbox_record(sb, req, target, &ans, signature_valid, faulted ? hit.id : 0);
    if (log_enabled(LOG_DEBUG))
        log_debug("request answered", LOG_S("target", sandbox_target_name(target)),
                  LOG_S("method", method), LOG_S("path", path), LOG_I("http_status", ans.status));
    sandbox_fault_hit_clear(&hit);

    if (delay > 0) {
        /* Suspend first, then hand over: the timer may answer before this function returns. */
        http_request_suspend(req);
        if (sandbox_timer_schedule(sb->timer, req, &ans, delay) == 0)
            return HTTP_SUSPENDED;
        /* Shutting down or out of memory: answer now rather than never. */
        sandbox_answer_send(req, &ans);
        sandbox_answer_clear(&ans);
        http_request_resume(req);
        return HTTP_SUSPENDED;
    }
    sandbox_answer_send(req, &ans);
    sandbox_answer_clear(&ans);
    return HTTP_HANDLED;
fail:
    log_error("internal failure answering a request", LOG_S("target", sandbox_target_name(target)));
    sandbox_fault_hit_clear(&hit);
    sandbox_answer_clear(&ans);
    return HTTP_FAIL;
}

static int sandbox_no_party(struct sandbox *sb, struct http_request *req,
                            struct sandbox_answer *ans)
{
    (void)sb;
    (void)req;
    (void)ans;
    return -1;
}

static enum http_result sandbox_on_token(struct http_request *req, void *app)
{
    return sandbox_serve(app, req, SANDBOX_TARGET_TOKEN, sandbox_oauth_handle);
}

static enum http_result sandbox_on_fhir(struct http_request *req, void *app)
{
    return sandbox_serve(app, req, SANDBOX_TARGET_FHIR, sandbox_fhir_handle);
}

static enum http_result sandbox_on_twilio(struct http_request *req, void *app)
{
    return sandbox_serve(app, req, SANDBOX_TARGET_TWILIO, sandbox_twilio_handle);
}

static enum http_result sandbox_on_sendgrid(struct http_request *req, void *app)
{
    return sandbox_serve(app, req, SANDBOX_TARGET_SENDGRID, sandbox_sendgrid_handle);
}

static enum http_result sandbox_on_webhook(struct http_request *req, void *app)
{
    return sandbox_serve(app, req, SANDBOX_TARGET_WEBHOOK, sandbox_no_party);
}

static enum http_result sandbox_on_control(struct http_request *req, void *app)
{
    struct sandbox_answer ans;
    memset(&ans, 0, sizeof(ans));
    if (sandbox_control_handle(app, req, &ans) != 0) {
        sandbox_answer_clear(&ans);
        return HTTP_FAIL;
    }
    sandbox_answer_send(req, &ans);
    sandbox_answer_clear(&ans);
    return HTTP_HANDLED;
}

static const struct http_route sandbox_routes[] = {
    {"POST", "/auth/token/", sandbox_on_token, 1, "token"},
    {"GET", "/fhir/*", sandbox_on_fhir, 0, "fhir"},
    {"POST", "/fhir/*", sandbox_on_fhir, 1, "fhir"},
    {"PUT", "/fhir/*", sandbox_on_fhir, 1, "fhir"},
    {"PATCH", "/fhir/*", sandbox_on_fhir, 1, "fhir"},
    {"DELETE", "/fhir/*", sandbox_on_fhir, 0, "fhir"},
    {"POST", "/twilio/*", sandbox_on_twilio, 1, "twilio"},
    {"GET", "/twilio/*", sandbox_on_twilio, 0, "twilio"},
    {"POST", "/sendgrid/*", sandbox_on_sendgrid, 1, "sendgrid"},
    {"POST", "/webhook", sandbox_on_webhook, 1, "webhook"},
    {"POST", "/webhook/*", sandbox_on_webhook, 1, "webhook"},
    {"GET", "/_sandbox/*", sandbox_on_control, 0, "control"},
    {"POST", "/_sandbox/*", sandbox_on_control, 1, "control"},
    {"DELETE", "/_sandbox/*", sandbox_on_control, 0, "control"},
};

int sandbox_init(struct sandbox *sb, const struct sandbox_config *cfg, char *errstr, size_t errlen)
{
    memset(sb, 0, sizeof(*sb));
    sb->cfg = cfg;
    atomic_init(&sb->latency_ms, 0);
    sb->store = sandbox_store_new();
    sb->tokens = sandbox_tokens_new();
    sb->recorder = sandbox_recorder_new((size_t)cfg->record_max);
    sb->faults = sandbox_faults_new();
    if (!sb->store || !sb->tokens || !sb->recorder || !sb->faults) {
        snprintf(errstr, errlen, "out of memory");
        goto fail;
    }
    if (cfg->fixtures_path) {
        if (sandbox_store_load_file(sb->store, cfg->fixtures_path, errstr, errlen) != 0)
            goto fail;
    } else {
        json_error_t jerr;
        json_t *fixtures = json_loadb((const char *)sandbox_builtin_fixtures,
                                      sandbox_builtin_fixtures_len, 0, &jerr);
        int rc = fixtures ? sandbox_store_load(sb->store, fixtures, errstr, errlen) : -1;
        if (!fixtures)
            snprintf(errstr, errlen, "built-in fixtures: %s", jerr.text);
        json_decref(fixtures);
        if (rc != 0)
            goto fail;
    }
    sb->timer = sandbox_timer_start(errstr, errlen);
    if (!sb->timer)
        goto fail;
    return 0;
fail:
    sandbox_shutdown(sb);
    return -1;
}

int sandbox_listen(struct sandbox *sb, char *errstr, size_t errlen)
{
    struct http_server_options opts = {
        .host = sb->cfg->host,
        .port = sb->cfg->port,
        .max_body_bytes = SANDBOX_MAX_BODY_BYTES,
        .conn_timeout_s = SANDBOX_CONN_TIMEOUT_S,
        .conn_limit = SANDBOX_CONN_LIMIT,
        .threads = sb->cfg->threads,
        .routes = sandbox_routes,
        .nroutes = sizeof(sandbox_routes) / sizeof(sandbox_routes[0]),
        .app = sb,
    };
    sb->http = http_server_start(&opts, errstr, errlen);
    return sb->http ? 0 : -1;
}

void sandbox_shutdown(struct sandbox *sb)
{
    if (sb->http) {
        http_server_quiesce(sb->http);
        /* Delayed answers go out now; requests still arriving are answered without delay. */
        sandbox_timer_stop(sb->timer);
        for (int waited = 0; http_server_active(sb->http) > 0 && waited < SANDBOX_DRAIN_WAIT_MS;
             waited += 10)
            usleep(10000);
        http_server_stop(sb->http);
        sb->http = NULL;
    }
    sandbox_timer_free(sb->timer);
    sandbox_faults_free(sb->faults);
    sandbox_recorder_free(sb->recorder);
    sandbox_tokens_free(sb->tokens);
    sandbox_store_free(sb->store);
    sb->timer = NULL;
    sb->faults = NULL;
    sb->recorder = NULL;
    sb->tokens = NULL;
    sb->store = NULL;
}
