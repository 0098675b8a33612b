/* Canvas FHIR client: one shared OAuth token, reads, searches, creates, OperationOutcome errors. */
#include "fhir.h"

#include "fhir_ref.h"
#include "fiber.h"
#include "http_client.h"
#include "json_load.h"
#include "json_text.h"
#include "log.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define FHIR_TOKEN_MAX  8192 /* longest access token accepted (JWTs are ~1-2 KB) */
#define FHIR_TYPE_MAX   64
#define FHIR_SECRET_ENC (3 * 1024 + 1) /* an encoded client id or secret (1 KiB raw at most) */

#define FHIR_RENEW_RETRY_MS 1000 /* after a failed renewal, the token in hand serves this long */

struct fhir_client {
    struct http_client *http;
    char *base; /* without trailing slashes */
    char *token_url;
    const char *client_id;     /* borrowed */
    const char *client_secret; /* borrowed, never logged */
    int margin_s;
    atomic_long token_requests;

    /* lock guards the token state. One thread at a time refreshes (refreshing = 1); the others
     * wait on cond until refresh_seq moves and take its outcome, success or failure, so that any
     * number of waiting callers costs one token request. A caller whose token is only due for
     * renewal, not expired, does not wait (fhir_token_get). */
    pthread_mutex_t lock;
    struct fiber_cond cond;    /* handlers wait here on their fibers */
    char *token;               /* NULL until the first success */
    uint64_t token_gen;        /* bumped with every new token; 0 = none yet */
    int64_t renew_at_ms;       /* monotonic; INT64_MAX when the answer had no expires_in */
    int64_t expires_at_ms;     /* when Canvas stops accepting it; INT64_MAX when unknown */
    int64_t renew_retry_at_ms; /* no renewal attempt before this (set when one failed) */
    int refreshing;
    uint64_t refresh_seq; /* bumped when a refresh attempt ends */
    int refresh_failed;   /* outcome of the last attempt */
    struct fhir_error refresh_err;
};

static int64_t fhir_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fhir_error_reset(struct fhir_error *err)
{
    memset(err, 0, sizeof(*err));
    err->kind = FHIR_OK;
    err->retry_after_ms = -1;
}

static void fhir_secret_free(char *s)
{
    if (!s)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

int fhir_url_encode(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    if (!outlen)
        return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        /* ASCII ranges, not isalnum(): that one depends on the locale. */
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            if (n + 1 >= outlen)
                goto toolong;
            out[n++] = (char)*p;
        } else {
            if (n + 3 >= outlen)
                goto toolong;
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    return 0;

toolong:
    out[0] = '\0';
    return -1;
}

/* A resource type as it may appear in a URL path: ASCII letters only. */
static int fhir_type_valid(const char *type)
{
    size_t n = 0;
    if (!type)
        return 0;
    for (const char *p = type; *p; p++, n++) {
        if (n >= FHIR_TYPE_MAX)
            return 0;
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
            return 0;
    }
    return n > 0;
}

/* An already-encoded query: printable ASCII without spaces or a fragment. */
static int fhir_query_valid(const char *q)
{
    for (const unsigned char *p = (const unsigned char *)q; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || *p == '#')
            return 0;
    return 1;
}

static int fhir_url_is_http(const char *url)
{
    return strncasecmp(url, "https://", 8) == 0 || strncasecmp(url, "http://", 7) == 0;
}

struct fhir_client *fhir_client_new(struct http_client *http, const struct fhir_options *opts,
                                    char *errstr, size_t errlen)
{
    struct fhir_client *f = NULL;
    size_t n;

    if (!http || !opts->base_url || !opts->token_url || !fhir_url_is_http(opts->base_url) ||
        !fhir_url_is_http(opts->token_url)) {
        snprintf(errstr, errlen, "the Canvas FHIR and token URLs must be http(s) URLs");
        return NULL;
    }
    if (!opts->client_id || !*opts->client_id || !opts->client_secret || !*opts->client_secret) {
        snprintf(errstr, errlen, "the Canvas client id and client secret are required");
        return NULL;
    }
    if (opts->refresh_margin_s < 0) {
        snprintf(errstr, errlen, "the token refresh margin must not be negative");
        return NULL;
    }
    f = calloc(1, sizeof(*f));
    if (!f)
        goto oom;
    f->http = http;
    f->client_id = opts->client_id;
    f->client_secret = opts->client_secret;
    f->margin_s = opts->refresh_margin_s ? opts->refresh_margin_s : 60;
    atomic_init(&f->token_requests, 0);
    f->base = strdup(opts->base_url);
    f->token_url = strdup(opts->token_url);
    if (!f->base || !f->token_url)
        goto oom;
    n = strlen(f->base);
    while (n > 0 && f->base[n - 1] == '/')
        f->base[--n] = '\0';
    if (pthread_mutex_init(&f->lock, NULL) != 0)
        goto oom;
    if (fiber_cond_init(&f->cond) != 0) {
        pthread_mutex_destroy(&f->lock);
        goto oom;
    }
    fhir_error_reset(&f->refresh_err);

    /* SPEC §7: plain http is accepted for local stand-ins (pm-sandbox), with a warning. */
    if (strncasecmp(f->base, "https://", 8) != 0)
        log_warn("Canvas FHIR URL is not https: use it only for local stand-ins",
                 LOG_S("variable", "PM_CANVAS_FHIR_URL"));
    if (strncasecmp(f->token_url, "https://", 8) != 0)
        log_warn("Canvas token URL is not https: use it only for local stand-ins",
                 LOG_S("variable", "PM_CANVAS_TOKEN_URL"));
    return f;

oom:
    snprintf(errstr, errlen, "out of memory");
    if (f) {
        free(f->base);
        free(f->token_url);
        free(f);
    }
    return NULL;
}

void fhir_client_free(struct fhir_client *f)
{
    if (!f)
        return;
    fhir_secret_free(f->token);
    fiber_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f->token_url);
    free(f->base);
    free(f);
}

long fhir_token_requests(struct fhir_client *f)
{
    return atomic_load(&f->token_requests);
}

/* --- errors --- */

/* An issue or OAuth error code is logged only when it looks like one ([a-z_-], short): the log
 * allow-list is for fixed vocabularies, and this one comes from the server. */
static int fhir_code_loggable(const char *c)
{
    size_t n = 0;
    for (; c[n]; n++)
        if (n >= 40 || !((c[n] >= 'a' && c[n] <= 'z') || c[n] == '-' || c[n] == '_'))
            return 0;
    return n > 0;
}

/* Appends Canvas's OperationOutcome issues ("<code>: <details.text>", "; "-separated) to @p msg.
 * The texts are Canvas's own wording about ids and fields, not resource content. Writes the
 * first loggable issue code into @p code. */
static void fhir_outcome_text(const struct http_reply *r, char *msg, size_t msglen, char *code,
                              size_t codelen)
{
    code[0] = '\0';
    if (r->body && r->body_len)
        fhir_outcome_describe(r->body, r->body_len, msg, msglen, code, codelen);
}

void fhir_outcome_describe(const char *body, size_t len, char *msg, size_t msglen, char *code,
                           size_t codelen)
{
    json_t *oo = NULL, *issue;
    size_t i, used = strlen(msg);
    int first = 1;
    const char *rt = NULL;

    code[0] = '\0';
    if (used >= msglen)
        return;
    oo = json_loadb(body, len, 0, NULL);
    if (json_unpack(oo, "{s:s}", "resourceType", &rt) != 0 || strcmp(rt, "OperationOutcome") != 0)
        goto out;
    json_array_foreach(json_object_get(oo, "issue"), i, issue)
    {
        const char *c = NULL, *text = NULL, *diag = NULL;
        int w;

        json_unpack(issue, "{s?s, s?{s?s}, s?s}", "code", &c, "details", "text", &text,
                    "diagnostics", &diag);
        if (!text)
            text = diag;
        if (c && !code[0] && fhir_code_loggable(c))
            snprintf(code, codelen, "%s", c);
        if (!c && !text)
            continue;
        w = snprintf(msg + used, msglen - used, "%s%s%s%s", first ? " " : "; ", c ? c : "",
                     c && text ? ": " : "", text ? text : "");
        first = 0;
        if (w < 0 || (size_t)w >= msglen - used) {
            used = msglen - 1;
            break;
        }
        used += (size_t)w;
    }
out:
    json_decref(oo);
}

/* Classifies an answer or transport failure into @p err. */
static void fhir_error_from_reply(const char *method, const char *type, int transport_rc,
                                  const struct http_reply *r, struct fhir_error *err, char *code,
                                  size_t codelen)
{
    code[0] = '\0';
    err->status = r->status;
    err->retry_after_ms = -1;
    http_reply_header(r, "fumage-correlation-id", err->correlation_id, sizeof(err->correlation_id));
    if (transport_rc != 0) {
        err->kind = FHIR_TRANSIENT;
        snprintf(err->message, sizeof(err->message), "%s %s: %s: %s", method, type,
                 r->timed_out ? "timed out" : "no answer", r->error);
        return;
    }
    err->retry_after_ms = http_reply_retry_after_ms(r);
    if (r->status == 408 || r->status == 429 || r->status >= 500)
        err->kind = FHIR_TRANSIENT;
    else
        err->kind = FHIR_PERMANENT;
    snprintf(err->message, sizeof(err->message), "%s %s: %ld", method, type, r->status);
    fhir_outcome_text(r, err->message, sizeof(err->message), code, codelen);
}

static const char *fhir_kind_str(enum fhir_error_kind k)
{
    return k == FHIR_TRANSIENT ? "transient" : k == FHIR_PERMANENT ? "permanent" : "ok";
}

/* One warn line per failed answer: ids, status, Canvas's correlation id, never bodies. @p type
 * is NULL for the token endpoint; @p err NULL for a 401 that is about to be retried. */
static void fhir_log_failure(const char *msg, const char *method, const char *type,
                             const char *resource_id, const struct http_reply *r,
                             const struct fhir_error *err, const char *code)
{
    char cid[80] = "";

    http_reply_header(r, "fumage-correlation-id", cid, sizeof(cid));
    log_warn(msg, LOG_S("target", type ? "canvas-fhir" : "canvas-token"), LOG_S("method", method),
             LOG_S("type", type), LOG_S("resource_id", resource_id),
             LOG_I("http_status", r->status), LOG_S("correlation_id", cid[0] ? cid : NULL),
             LOG_S("error_class", err ? fhir_kind_str(err->kind) : NULL),
             LOG_S("reason", code && code[0] ? code : NULL),
             LOG_S("curl_error", r->status ? NULL : r->error),
             LOG_I("retry_in_ms", err ? err->retry_after_ms : -1),
             LOG_I("duration_ms", (long long)(r->total_s * 1000)));
}

/* --- the shared token --- */

/* A token must fit in a header line: visible ASCII only. */
static int fhir_token_valid(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > FHIR_TOKEN_MAX)
        return 0;
    for (const unsigned char *p = (const unsigned char *)t; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return 0;
    return 1;
}

/* One token request. @returns 0 with a malloc'd token, its renewal and expiry times, or -1
 * with @p err filled. Called without the lock held. */
static int fhir_token_fetch(struct fhir_client *f, char **token_out, int64_t *renew_at,
                            int64_t *expires_at, struct fhir_error *err)
{
    static const char *const headers[] = {"Content-Type: application/x-www-form-urlencoded",
                                          "Accept: application/json", NULL};
    char id_enc[FHIR_SECRET_ENC], secret_enc[FHIR_SECRET_ENC];
    char *form = NULL;
    size_t form_len;
    struct http_reply r = {0};
    json_t *ans = NULL;
    json_error_t jerr;
    const char *tok = NULL, *oauth_error = NULL;
    json_int_t expires_in = -1;
    int64_t sent_at = fhir_now_ms();
    char code[64] = "";
    int rc = -1, hrc;

    if (fhir_url_encode(f->client_id, id_enc, sizeof(id_enc)) != 0 ||
        fhir_url_encode(f->client_secret, secret_enc, sizeof(secret_enc)) != 0) {
        err->kind = FHIR_PERMANENT;
        snprintf(err->message, sizeof(err->message), "token: client id or secret too long");
        goto out;
    }
    form_len = strlen(id_enc) + strlen(secret_enc) + 64;
    form = malloc(form_len);
    if (!form) {
        err->kind = FHIR_TRANSIENT;
        snprintf(err->message, sizeof(err->message), "token: out of memory");
        goto out;
    }
    snprintf(form, form_len, "grant_type=client_credentials&client_id=%s&client_secret=%s", id_enc,
             secret_enc);

    struct http_call call = {.method = "POST",
                             .url = f->token_url,
                             .headers = headers,
                             .body = form,
                             .body_len = strlen(form),
                             .target = "canvas-token"};
    atomic_fetch_add(&f->token_requests, 1);
    hrc = http_client_do(f->http, &call, &r);
    if (hrc != 0 || r.status < 200 || r.status > 299) {
        fhir_error_from_reply("POST", "token", hrc, &r, err, code, sizeof(code));
        if (hrc == 0) {
            /* The token endpoint speaks OAuth, not FHIR: its error body is {"error": "..."},
             * a fixed vocabulary (invalid_client, ...), and nothing else of it is kept. */
            ans = json_loadb(r.body, r.body_len, 0, NULL);
            if (json_unpack(ans, "{s:s}", "error", &oauth_error) != 0 ||
                !fhir_code_loggable(oauth_error))
                oauth_error = NULL;
            if (r.status == 400 || r.status == 401) {
                err->kind = FHIR_PERMANENT;
                snprintf(err->message, sizeof(err->message),
                         "Canvas rejected the client credentials: token endpoint answered %ld%s%s",
                         r.status, oauth_error ? " " : "", oauth_error ? oauth_error : "");
            } else {
                snprintf(err->message, sizeof(err->message),
                         "Canvas token endpoint answered %ld%s%s", r.status, oauth_error ? " " : "",
                         oauth_error ? oauth_error : "");
            }
        } else {
            snprintf(err->message, sizeof(err->message), "Canvas token endpoint: %s: %s",
                     r.timed_out ? "timed out" : "no answer", r.error);
        }
        fhir_log_failure("Canvas token request failed", "POST", NULL, NULL, &r, err,
                         oauth_error ? oauth_error : code);
        goto out;
    }
    ans = json_loadb(r.body, r.body_len, 0, &jerr);
    if (!ans ||
        json_unpack_ex(ans, &jerr, 0, "{s:s, s?I}", "access_token", &tok, "expires_in",
                       &expires_in) != 0 ||
        !fhir_token_valid(tok)) {
        /* A proxy or a misrouted URL, most likely: not something a retry of this event
         * would make worse. */
        err->kind = FHIR_TRANSIENT;
        err->status = r.status;
        snprintf(err->message, sizeof(err->message),
                 "Canvas token endpoint answered %ld without a usable access_token", r.status);
        fhir_log_failure("Canvas token answer unusable", "POST", NULL, NULL, &r, err, NULL);
        goto out;
    }
    *token_out = strdup(tok);
    if (!*token_out) {
        err->kind = FHIR_TRANSIENT;
        snprintf(err->message, sizeof(err->message), "token: out of memory");
        goto out;
    }
    /* Counted from when the request left, so the margin is never eaten by the round trip. No
     * expires_in: keep it until Canvas answers 401. */
    if (expires_in >= 0) {
        *renew_at = sent_at + ((int64_t)expires_in - f->margin_s) * 1000;
        *expires_at = sent_at + (int64_t)expires_in * 1000;
    } else {
        *renew_at = INT64_MAX;
        *expires_at = INT64_MAX;
    }
    log_debug("Canvas token issued", LOG_I("expires_in", expires_in),
              LOG_I("duration_ms", (long long)(r.total_s * 1000)));
    rc = 0;

out:
    json_decref(ans); /* holds the token: jansson frees it, the reply buffer is cleansed below */
    if (r.body)
        OPENSSL_cleanse(r.body, r.body_len);
    http_reply_free(&r);
    if (form) {
        OPENSSL_cleanse(form, strlen(form));
        free(form);
    }
    OPENSSL_cleanse(secret_enc, sizeof(secret_enc));
    return rc;
}

/**
 * Copies the shared token into @p out (malloc'd) with its generation in @p gen.
 *
 * @p rejected_gen is 0 for a normal call, or the generation Canvas has just answered 401 to:
 * then a token of another generation is required. When another thread has already replaced it
 * since, that one is used without a new request; otherwise this thread (or the one already
 * refreshing) fetches one. @returns 0, or -1 with @p err filled by the shared attempt.
 *
 * A renewal (rejected_gen 0, inside the margin) is not a reason to stop working: while the
 * token in hand has not expired, callers go on using it when another thread is renewing it or
 * when a renewal failed less than FHIR_RENEW_RETRY_MS ago, and a failed renewal falls back on
 * it. So a token endpoint that is down or slow for less than the margin goes unnoticed, and costs
 * one token request per FHIR_RENEW_RETRY_MS rather than one per call.
 */
static int fhir_token_get(struct fhir_client *f, uint64_t rejected_gen, char **out, uint64_t *gen,
                          struct fhir_error *err)
{
    int rc = -1;

    pthread_mutex_lock(&f->lock);
    for (;;) {
        int64_t now = fhir_now_ms();
        int in_hand = !rejected_gen && f->token && now < f->expires_at_ms;

        if (f->token && f->token_gen != rejected_gen && (rejected_gen || now < f->renew_at_ms))
            break; /* usable */
        if (in_hand && (f->refreshing || now < f->renew_retry_at_ms))
            break; /* renewal due, but someone is at it or it just failed: still valid */
        if (f->refreshing) {
            uint64_t seq = f->refresh_seq;
            while (f->refresh_seq == seq)
                fiber_cond_wait(&f->cond, &f->lock);
            if (f->refresh_failed) {
                *err = f->refresh_err;
                goto out;
            }
            /* Fresh from the refresh we waited for: use it even if expires_in was shorter
             * than the margin, or every waiter would start a refresh of its own. */
            if (f->token)
                break;
            continue;
        }

        f->refreshing = 1;
        pthread_mutex_unlock(&f->lock);
        char *tok = NULL;
        int64_t renew_at = 0, expires_at = 0;
        struct fhir_error ferr;
        fhir_error_reset(&ferr);
        int frc = fhir_token_fetch(f, &tok, &renew_at, &expires_at, &ferr);
        pthread_mutex_lock(&f->lock);

        f->refreshing = 0;
        f->refresh_seq++;
        f->refresh_failed = frc != 0;
        f->refresh_err = ferr;
        if (frc == 0) {
            fhir_secret_free(f->token);
            f->token = tok;
            f->token_gen++;
            f->renew_at_ms = renew_at;
            f->expires_at_ms = expires_at;
        }
        fiber_cond_broadcast(&f->cond);
        if (frc != 0 && in_hand && fhir_now_ms() < f->expires_at_ms) {
            f->renew_retry_at_ms = fhir_now_ms() + FHIR_RENEW_RETRY_MS;
            break; /* the renewal failed; the token in hand still works */
        }
        if (frc != 0) {
            *err = ferr;
            goto out;
        }
        break;
    }
    *out = strdup(f->token);
    if (!*out) {
        err->kind = FHIR_TRANSIENT;
        snprintf(err->message, sizeof(err->message), "token: out of memory");
        goto out;
    }
    *gen = f->token_gen;
    rc = 0;
out:
    pthread_mutex_unlock(&f->lock);
    return rc;
}

/* --- requests --- */

/**
 * One FHIR exchange with the shared token; a 401 costs one token refresh and one retry.
 * @returns 0 for a 2xx answer (left in @p r for the caller to free), or -1 with @p err filled
 *          and logged (@p r freed).
 */
static int fhir_exchange(struct fhir_client *f, const char *method, const char *type,
                         const char *resource_id, const char *url, const char *body,
                         struct http_reply *r, struct fhir_error *err)
{
    char *token = NULL, *auth = NULL;
    uint64_t gen = 0;
    int rc = -1, hrc = -1;
    char code[64] = "";

    memset(r, 0, sizeof(*r));
    if (fhir_token_get(f, 0, &token, &gen, err) != 0)
        goto out;
    for (int attempt = 0;; attempt++) {
        size_t alen = strlen(token) + 32;
        const char *headers[4];
        size_t nh = 0;

        auth = malloc(alen);
        if (!auth) {
            err->kind = FHIR_TRANSIENT;
            snprintf(err->message, sizeof(err->message), "%s %s: out of memory", method, type);
            goto out;
        }
        snprintf(auth, alen, "Authorization: Bearer %s", token);
        headers[nh++] = auth;
        headers[nh++] = "Accept: application/json";
        if (body)
            headers[nh++] = "Content-Type: application/json";
        headers[nh] = NULL;

        struct http_call call = {.method = method,
                                 .url = url,
                                 .headers = headers,
                                 .body = body,
                                 .body_len = body ? strlen(body) : 0,
                                 .target = "canvas-fhir"};
        hrc = http_client_do(f->http, &call, r);
        fhir_secret_free(auth);
        auth = NULL;
        if (hrc == 0 && r->status == 401 && attempt == 0) {
            fhir_log_failure("Canvas rejected the access token: refreshing it once", method, type,
                             resource_id, r, NULL, NULL);
            http_reply_free(r);
            fhir_secret_free(token);
            token = NULL;
            if (fhir_token_get(f, gen, &token, &gen, err) != 0)
                goto out;
            continue;
        }
        break;
    }
    if (hrc == 0 && r->status >= 200 && r->status <= 299) {
        char cid[80] = "";
        http_reply_header(r, "fumage-correlation-id", cid, sizeof(cid));
        log_debug("Canvas request done", LOG_S("method", method), LOG_S("type", type),
                  LOG_S("resource_id", resource_id), LOG_I("http_status", r->status),
                  LOG_S("correlation_id", cid[0] ? cid : NULL),
                  LOG_I("duration_ms", (long long)(r->total_s * 1000)));
        rc = 0;
        goto out;
    }
    fhir_error_from_reply(method, type, hrc, r, err, code, sizeof(code));
    fhir_log_failure("Canvas request failed", method, type, resource_id, r, err, code);

out:
    if (rc != 0)
        http_reply_free(r);
    fhir_secret_free(token);
    return rc;
}

/* Fails @p err permanently before any request: a caller bug or bad data, not Canvas's answer. */
static void fhir_error_local(struct fhir_error *err, const char *method, const char *type,
                             const char *what)
{
    err->kind = FHIR_PERMANENT;
    snprintf(err->message, sizeof(err->message), "%s %s: %s", method,
             fhir_type_valid(type) ? type : "?", what);
}

/* A 2xx answer that is not what FHIR promises: permanent, with Canvas's correlation id. */
static void fhir_error_shape(struct fhir_error *err, const struct http_reply *r, const char *method,
                             const char *type, const char *resource_id, const char *what)
{
    err->kind = FHIR_PERMANENT;
    err->status = r->status;
    http_reply_header(r, "fumage-correlation-id", err->correlation_id, sizeof(err->correlation_id));
    snprintf(err->message, sizeof(err->message), "%s %s: %ld %s", method, type, r->status, what);
    fhir_log_failure("Canvas answer not usable", method, type, resource_id, r, err, NULL);
}

json_t *fhir_read(struct fhir_client *f, const char *type, const char *id, struct fhir_error *err)
{
    struct fhir_error local;
    struct http_reply r = {0};
    json_t *res = NULL, *ret = NULL;
    const char *rt = NULL;
    char *url = NULL;
    size_t len;

    if (!err)
        err = &local;
    fhir_error_reset(err);
    if (!fhir_type_valid(type) || !fhir_id_valid(id)) {
        fhir_error_local(err, "GET", type, "invalid resource type or id");
        goto out;
    }
    len = strlen(f->base) + strlen(type) + strlen(id) + 3;
    url = malloc(len);
    if (!url) {
        fhir_error_local(err, "GET", type, "out of memory");
        err->kind = FHIR_TRANSIENT;
        goto out;
    }
    snprintf(url, len, "%s/%s/%s", f->base, type, id);
    if (fhir_exchange(f, "GET", type, id, url, NULL, &r, err) != 0)
        goto out;
    res = json_load_fast(r.body, r.body_len, 0, NULL);
    if (json_unpack(res, "{s:s}", "resourceType", &rt) != 0 || strcmp(rt, type) != 0) {
        fhir_error_shape(err, &r, "GET", type, id, "answer is not a resource of this type");
        goto out;
    }
    ret = res;
    res = NULL; /* owned by the caller now */

out:
    json_decref(res);
    http_reply_free(&r);
    free(url);
    return ret;
}

json_t *fhir_search(struct fhir_client *f, const char *type, const char *query,
                    struct fhir_error *err)
{
    struct fhir_error local;
    struct http_reply r = {0};
    json_t *ret = NULL;
    char *url = NULL;
    size_t len;

    if (!err)
        err = &local;
    fhir_error_reset(err);
    if (!query)
        query = "";
    if (!fhir_type_valid(type) || !fhir_query_valid(query)) {
        fhir_error_local(err, "GET", type, "invalid resource type or query");
        goto out;
    }
    len = strlen(f->base) + strlen(type) + strlen(query) + 3;
    url = malloc(len);
    if (!url) {
        fhir_error_local(err, "GET", type, "out of memory");
        err->kind = FHIR_TRANSIENT;
        goto out;
    }
    snprintf(url, len, "%s/%s%s%s", f->base, type, query[0] ? "?" : "", query);
    if (fhir_exchange(f, "GET", type, NULL, url, NULL, &r, err) != 0)
        goto out;

    {
        const char *why = NULL;
        ret = fhir_bundle_resources(r.body, r.body_len, &why);
        if (!ret)
            fhir_error_shape(err, &r, "GET", type, NULL, why);
    }

out:
    http_reply_free(&r);
    free(url);
    return ret;
}

json_t *fhir_bundle_resources(const char *body, size_t len, const char **why)
{
    json_t *bundle = json_load_fast(body, len, 0, NULL), *entries, *entry, *list = NULL;
    const char *rt = NULL;
    size_t i;

    *why = "answer is not a Bundle";
    if (json_unpack(bundle, "{s:s}", "resourceType", &rt) != 0 || strcmp(rt, "Bundle") != 0)
        goto out;
    /* Canvas leaves out "entry" (and "link") altogether when nothing matched. */
    entries = json_object_get(bundle, "entry");
    if (entries && !json_is_array(entries)) {
        *why = "Bundle entry is not an array";
        goto out;
    }
    list = json_array();
    json_array_foreach(entries, i, entry)
    {
        json_t *res = json_object_get(entry, "resource");
        const char *mode = NULL;

        json_unpack(entry, "{s:{s:s}}", "search", "mode", &mode);
        if (!json_is_object(res) || (mode && strcmp(mode, "outcome") == 0))
            continue;
        if (!list || json_array_append(list, res) != 0) {
            *why = "out of memory";
            json_decref(list);
            list = NULL;
            goto out;
        }
    }
out:
    json_decref(bundle);
    return list;
}

int fhir_create(struct fhir_client *f, const char *type, const json_t *resource, char *id_out,
                size_t idlen, struct fhir_error *err)
{
    struct fhir_error local;
    struct http_reply r = {0};
    json_t *answer = NULL;
    char *url = NULL, *body = NULL;
    char location[1024], id[FHIR_ID_MAX + 1] = "";
    const char *rt = NULL, *body_id = NULL;
    size_t len;
    int rc = -1;

    if (!err)
        err = &local;
    fhir_error_reset(err);
    if (idlen)
        id_out[0] = '\0';
    if (!fhir_type_valid(type) || !json_is_object(resource)) {
        fhir_error_local(err, "POST", type, "invalid resource type or resource");
        goto out;
    }
    rt = json_string_value(json_object_get(resource, "resourceType"));
    if (rt && strcmp(rt, type) != 0) {
        fhir_error_local(err, "POST", type, "resourceType does not match the endpoint");
        goto out;
    }
    body = json_text_dump(resource, JSON_COMPACT, NULL);
    len = strlen(f->base) + strlen(type) + 2;
    url = malloc(len);
    if (!body || !url) {
        fhir_error_local(err, "POST", type, "out of memory");
        err->kind = FHIR_TRANSIENT;
        goto out;
    }
    snprintf(url, len, "%s/%s", f->base, type);
    if (fhir_exchange(f, "POST", type, NULL, url, body, &r, err) != 0)
        goto out;

    /* Canvas: 201, body `null`, the id only in Location ("<any base>/<type>/<id>/_history/1").
     * A server that returns the resource instead is accepted too. */
    if (http_reply_header(&r, "Location", location, sizeof(location)) != 0 ||
        fhir_ref_parse(location, type, id, sizeof(id)) != 0) {
        id[0] = '\0';
        answer = json_loadb(r.body, r.body_len, JSON_DECODE_ANY, NULL);
        if (json_unpack(answer, "{s:s}", "id", &body_id) == 0 && fhir_id_valid(body_id))
            snprintf(id, sizeof(id), "%s", body_id);
    }
    if (!id[0]) {
        fhir_error_shape(err, &r, "POST", type, NULL, "created but no id in Location");
        goto out;
    }
    if (strlen(id) >= idlen) {
        fhir_error_shape(err, &r, "POST", type, id, "created but the id does not fit");
        goto out;
    }
    snprintf(id_out, idlen, "%s", id);
    log_debug("Canvas resource created", LOG_S("type", type), LOG_S("resource_id", id));
    rc = 0;

out:
    json_decref(answer);
    http_reply_free(&r);
    free(url);
    if (body) {
        /* the resource holds message text */
        OPENSSL_cleanse(body, strlen(body));
        free(body);
    }
    return rc;
}
