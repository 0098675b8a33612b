/* Unit tests for the Canvas FHIR client against an in-process fake Canvas with Canvas's quirks. */
#include "fhir.h"
#include "fhir_ref.h"
#include "http_client.h"
#include "http_server.h"
#include "log.h"
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLIENT_ID     "pm client"
#define CLIENT_SECRET "s3cr3t&=+/ \xc3\xa9"
/* What the token endpoint must receive, byte for byte. */
#define EXPECTED_FORM                                                                              \
    "grant_type=client_credentials&client_id=pm%20client&client_secret=s3cr3t%26%3D%2B%2F%20%C3"   \
    "%A9"
#define PATIENT_ID "a1b2c3d4e5f60718293a4b5c6d7e8f90"
#define NEW_COMM   "8f14e45f-ceea-467f-a0e6-2c3b9d1f0a11"

enum token_mode { TOKEN_OK, TOKEN_503, TOKEN_401 };

struct fake_canvas {
    struct http_server *srv;
    unsigned port;
    atomic_int token_requests;
    atomic_int token_mode;
    atomic_int token_delay_ms;
    atomic_int expires_in;
    atomic_int issued;     /* number of the last token issued ("tok-<n>") */
    atomic_int valid_from; /* tokens numbered below this are rejected with 401 */
    atomic_int fhir_requests;
    atomic_int bad_requests; /* FHIR requests without the headers Canvas expects */
    atomic_int bad_forms;    /* token requests that were not the expected form */
};

static struct fake_canvas fc;

/* --- fake Canvas --- */

static void respond_oo(struct http_request *req, int status, const char *code, const char *text)
{
    json_t *oo = json_pack("{s:s, s:[{s:s, s:s, s:{s:s}}]}", "resourceType", "OperationOutcome",
                           "issue", "severity", "error", "code", code, "details", "text", text);
    http_respond_json(req, status, oo);
    json_decref(oo);
}

static enum http_result fake_token(struct http_request *req, void *app)
{
    size_t len = 0;
    const char *body = http_request_body(req, &len);
    const char *ct = http_request_header(req, "Content-Type");
    char tok[32];
    json_t *ans;
    (void)app;

    atomic_fetch_add(&fc.token_requests, 1);
    if (atomic_load(&fc.token_delay_ms))
        usleep((useconds_t)atomic_load(&fc.token_delay_ms) * 1000);
    if (!ct || strcmp(ct, "application/x-www-form-urlencoded") != 0 ||
        strcmp(body, EXPECTED_FORM) != 0) {
        atomic_fetch_add(&fc.bad_forms, 1);
        ans = json_pack("{s:s}", "error", "invalid_request");
        http_respond_json(req, 400, ans);
        json_decref(ans);
        return HTTP_HANDLED;
    }
    switch (atomic_load(&fc.token_mode)) {
    case TOKEN_503:
        http_respond_header(req, "Retry-After", "3");
        http_respond(req, 503, "text/html", "<html>down</html>", 17);
        return HTTP_HANDLED;
    case TOKEN_401:
        ans = json_pack("{s:s}", "error", "invalid_client");
        http_respond_json(req, 401, ans);
        json_decref(ans);
        return HTTP_HANDLED;
    default:
        break;
    }
    snprintf(tok, sizeof(tok), "tok-%d", atomic_fetch_add(&fc.issued, 1) + 1);
    ans = json_pack("{s:s, s:i, s:s, s:s}", "access_token", tok, "expires_in",
                    atomic_load(&fc.expires_in), "token_type", "Bearer", "scope", "system/*.*");
    http_respond_json(req, 200, ans);
    json_decref(ans);
    return HTTP_HANDLED;
}

/* Canvas's checks on every FHIR request. @returns 1 when it may go on, 0 when answered 401. */
static int fake_auth(struct http_request *req, int write)
{
    const char *auth = http_request_header(req, "Authorization");
    const char *accept = http_request_header(req, "Accept");
    const char *ct = http_request_header(req, "Content-Type");
    long n = -1;

    atomic_fetch_add(&fc.fhir_requests, 1);
    if (!accept || strcmp(accept, "application/json") != 0 ||
        (write && (!ct || strcmp(ct, "application/json") != 0)))
        atomic_fetch_add(&fc.bad_requests, 1);
    if (auth && strncmp(auth, "Bearer tok-", 11) == 0)
        n = strtol(auth + 11, NULL, 10);
    if (n < atomic_load(&fc.valid_from) || n > atomic_load(&fc.issued) || n <= 0) {
        http_respond_header(req, "fumage-correlation-id", "corr-401");
        respond_oo(req, 401, "unknown", "Authentication failed");
        return 0;
    }
    return 1;
}

static enum http_result fake_patient_read(struct http_request *req, void *app)
{
    const char *id = http_request_path(req) + strlen("/fhir/Patient/");
    char corr[96], text[160];
    json_t *p;
    (void)app;

    if (!fake_auth(req, 0))
        return HTTP_HANDLED;
    snprintf(corr, sizeof(corr), "corr-%s", id);
    http_respond_header(req, "fumage-correlation-id", corr);
    if (strcmp(id, "always401") == 0) {
        respond_oo(req, 401, "unknown", "Authentication failed");
        return HTTP_HANDLED;
    }
    if (strcmp(id, PATIENT_ID) == 0) {
        p = json_pack("{s:s, s:s, s:[{s:s}], s:b}", "resourceType", "Patient", "id", id, "name",
                      "text", "Jane Example", "active", 1);
        http_respond_json(req, 200, p);
        json_decref(p);
    } else if (strcmp(id, "busy") == 0) {
        http_respond_header(req, "Retry-After", "7");
        respond_oo(req, 503, "excepetion", "Service temporarily unavailable");
    } else if (strcmp(id, "limited") == 0) {
        respond_oo(req, 429, "throttled", "Too many requests");
    } else if (strcmp(id, "wrongtype") == 0) {
        p = json_pack("{s:s, s:s}", "resourceType", "Practitioner", "id", id);
        http_respond_json(req, 200, p);
        json_decref(p);
    } else if (strcmp(id, "notjson") == 0) {
        http_respond(req, 200, "text/html", "<html></html>", 13);
    } else {
        snprintf(text, sizeof(text), "Unknown Patient resource '%s'", id);
        respond_oo(req, 404, "not-found", text);
    }
    return HTTP_HANDLED;
}

static enum http_result fake_comm_search(struct http_request *req, void *app)
{
    const char *patient = http_request_query(req, "patient");
    json_t *b;
    (void)app;

    if (!fake_auth(req, 0))
        return HTTP_HANDLED;
    if (patient && strcmp(patient, "Patient/empty") == 0) {
        /* Canvas: no "entry" and no "link" at all when nothing matched. */
        b = json_pack("{s:s, s:s, s:i}", "resourceType", "Bundle", "type", "searchset", "total", 0);
    } else {
        b = json_pack("{s:s, s:s, s:i, s:[{s:s, s:s}], s:[{s:{s:s, s:s}}, {s:{s:s, s:s}}, "
                      "{s:{s:s}, s:{s:s}}]}",
                      "resourceType", "Bundle", "type", "searchset", "total", 2, "link", "relation",
                      "self", "url", "/Communication?patient=x&_count=10&_offset=0", "entry",
                      "resource", "resourceType", "Communication", "id", "c-1", "resource",
                      "resourceType", "Communication", "id", "c-2", "resource", "resourceType",
                      "OperationOutcome", "search", "mode", "outcome");
    }
    http_respond_json(req, 200, b);
    json_decref(b);
    return HTTP_HANDLED;
}

static enum http_result fake_create(struct http_request *req, void *app)
{
    const char *type = http_request_path(req) + strlen("/fhir/");
    size_t len = 0;
    const char *body = http_request_body(req, &len);
    json_t *res = json_loadb(body, len, 0, NULL), *ans;
    const char *rt = NULL;
    (void)app;

    if (!fake_auth(req, 1))
        goto out;
    if (json_unpack(res, "{s:s}", "resourceType", &rt) != 0 || strcmp(rt, type) != 0) {
        respond_oo(req, 400, "invalid", "resourceType is required");
    } else if (strcmp(type, "Communication") == 0) {
        /* Canvas: 201, literal null, id only in a Location with another scheme and host. */
        http_respond_header(req, "Location",
                            "http://fumage-x.canvasmedical.com/Communication/" NEW_COMM
                            "/_history/1");
        http_respond(req, 201, "application/json", "null", 4);
    } else if (strcmp(type, "QuestionnaireResponse") == 0) {
        http_respond(req, 201, "application/json", "null", 4);
    } else if (strcmp(type, "Task") == 0) {
        ans = json_pack("{s:s, s:s}", "resourceType", "Task", "id", "task-7");
        http_respond_json(req, 201, ans);
        json_decref(ans);
    } else {
        respond_oo(req, 422, "business-rule", "Patient create is not allowed here");
    }
out:
    json_decref(res);
    return HTTP_HANDLED;
}

static const struct http_route fake_routes[] = {
    {"POST", "/auth/token/", fake_token, 1, NULL},
    {"GET", "/fhir/Patient/*", fake_patient_read, 0, NULL},
    {"GET", "/fhir/Communication", fake_comm_search, 0, NULL},
    {"POST", "/fhir/*", fake_create, 1, NULL},
};

static int fake_start(void)
{
    struct http_server_options o = {0};
    char err[256];

    atomic_init(&fc.expires_in, 36000);
    o.host = "127.0.0.1";
    o.max_body_bytes = 1 << 20;
    o.conn_timeout_s = 30;
    o.conn_limit = 512;
    o.threads = 8;
    o.routes = fake_routes;
    o.nroutes = sizeof(fake_routes) / sizeof(fake_routes[0]);
    fc.srv = http_server_start(&o, err, sizeof(err));
    if (!fc.srv) {
        fprintf(stderr, "fake canvas: %s\n", err);
        return -1;
    }
    fc.port = http_server_port(fc.srv);
    return 0;
}

/* --- helpers --- */

static struct fhir_client *client_for(struct http_client *http, const char *base_path, int margin)
{
    char base[128], tok[128], err[256];
    struct fhir_options o = {0};
    struct fhir_client *f;

    snprintf(base, sizeof(base), "http://127.0.0.1:%u%s", fc.port, base_path);
    snprintf(tok, sizeof(tok), "http://127.0.0.1:%u/auth/token/", fc.port);
    o.base_url = base;
    o.token_url = tok;
    o.client_id = CLIENT_ID;
    o.client_secret = CLIENT_SECRET;
    o.refresh_margin_s = margin;
    f = fhir_client_new(http, &o, err, sizeof(err));
    if (!f)
        fprintf(stderr, "fhir_client_new: %s\n", err);
    return f; /* base and token_url are copied */
}

static unsigned closed_port(void)
{
    struct sockaddr_in a = {0};
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    unsigned port = 1;

    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* --- tests --- */

static void test_url_encode(void)
{
    char out[64];

    CHECK_INT(fhir_url_encode("AZaz09-._~", out, sizeof(out)), 0);
    CHECK_STR(out, "AZaz09-._~");
    CHECK_INT(fhir_url_encode("a b&c=d/e?f+g%h@\xc3\xa9", out, sizeof(out)), 0);
    CHECK_STR(out, "a%20b%26c%3Dd%2Fe%3Ff%2Bg%25h%40%C3%A9");
    CHECK_INT(fhir_url_encode("", out, sizeof(out)), 0);
    CHECK_STR(out, "");
    CHECK_INT(fhir_url_encode("abc", out, 4), 0);
    CHECK_STR(out, "abc");
    CHECK_INT(fhir_url_encode("abc", out, 3), -1);
    CHECK_INT(fhir_url_encode("a b", out, 5), -1); /* "a%20b" needs 6 */
    CHECK_INT(fhir_url_encode("a b", out, 6), 0);
}

static void test_new_rejects(struct http_client *http)
{
    struct fhir_options o = {.base_url = "ftp://x/fhir",
                             .token_url = "https://x/auth/token/",
                             .client_id = "id",
                             .client_secret = "secret"};
    char err[256];

    CHECK(fhir_client_new(http, &o, err, sizeof(err)) == NULL);
    o.base_url = "https://x";
    o.client_secret = "";
    CHECK(fhir_client_new(http, &o, err, sizeof(err)) == NULL);
    o.client_secret = NULL;
    CHECK(fhir_client_new(http, &o, err, sizeof(err)) == NULL);
}

struct reader {
    struct fhir_client *f;
    atomic_int *left;
    pthread_barrier_t *start;
    int ok;
    int failed;
    const char *id;
};

static void *reader_run(void *arg)
{
    struct reader *r = arg;

    pthread_barrier_wait(r->start); /* all threads ask at once */
    while (atomic_fetch_sub(r->left, 1) > 0) {
        struct fhir_error err;
        json_t *p = fhir_read(r->f, "Patient", r->id, &err);
        if (p && err.kind == FHIR_OK &&
            strcmp(json_string_value(json_object_get(p, "id")), r->id) == 0)
            r->ok++;
        else
            r->failed++;
        json_decref(p);
    }
    return NULL;
}

/* Runs @p total reads of @p id from 16 threads; @returns how many succeeded. */
static int read_concurrently(struct fhir_client *f, const char *id, int total)
{
    enum { NT = 16 };
    pthread_t th[NT];
    struct reader rd[NT];
    atomic_int left;
    pthread_barrier_t start;
    int ok = 0;

    atomic_init(&left, total);
    pthread_barrier_init(&start, NULL, NT);
    for (int i = 0; i < NT; i++) {
        rd[i] = (struct reader){.f = f, .left = &left, .start = &start, .id = id};
        pthread_create(&th[i], NULL, reader_run, &rd[i]);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        ok += rd[i].ok;
    }
    pthread_barrier_destroy(&start);
    return ok;
}

static void test_one_token_for_all(struct http_client *http)
{
    struct fhir_client *f = client_for(http, "/fhir", 0);
    int t0 = atomic_load(&fc.token_requests), r0 = atomic_load(&fc.fhir_requests);

    CHECK(f != NULL);
    if (!f)
        return;
    /* A slow token endpoint: every thread arrives while the first refresh is in flight. */
    atomic_store(&fc.token_delay_ms, 200);
    CHECK_INT(read_concurrently(f, PATIENT_ID, 100), 100);
    atomic_store(&fc.token_delay_ms, 0);
    CHECK_INT(atomic_load(&fc.token_requests) - t0, 1);
    CHECK_INT(fhir_token_requests(f), 1);
    CHECK_INT(atomic_load(&fc.fhir_requests) - r0, 100);

    /* Canvas revokes the token: 16 threads get a 401 at about the same time, one new token. */
    t0 = atomic_load(&fc.token_requests);
    atomic_store(&fc.valid_from, atomic_load(&fc.issued) + 1);
    atomic_store(&fc.token_delay_ms, 100);
    CHECK_INT(read_concurrently(f, PATIENT_ID, 32), 32);
    atomic_store(&fc.token_delay_ms, 0);
    CHECK_INT(atomic_load(&fc.token_requests) - t0, 1);
    fhir_client_free(f);
}

static void test_reads_and_errors(struct fhir_client *f)
{
    struct fhir_error err;
    json_t *p;
    int t0, r0;

    /* The client holds a token... */
    p = fhir_read(f, "Patient", PATIENT_ID, &err);
    CHECK(p != NULL);
    json_decref(p);
    CHECK_INT(fhir_token_requests(f), 1);

    /* ...that Canvas stops accepting. 401 once: exactly one refresh and one retry. */
    t0 = atomic_load(&fc.token_requests);
    r0 = atomic_load(&fc.fhir_requests);
    atomic_store(&fc.valid_from, atomic_load(&fc.issued) + 1);
    p = fhir_read(f, "Patient", PATIENT_ID, &err);
    CHECK(p != NULL);
    CHECK_INT(err.kind, FHIR_OK);
    CHECK_STR(json_string_value(json_object_get(p, "resourceType")), "Patient");
    json_decref(p);
    CHECK_INT(atomic_load(&fc.token_requests) - t0, 1);
    CHECK_INT(atomic_load(&fc.fhir_requests) - r0, 2);

    /* 401 twice: permanent after one refresh and one retry. */
    t0 = atomic_load(&fc.token_requests);
    r0 = atomic_load(&fc.fhir_requests);
    p = fhir_read(f, "Patient", "always401", &err);
    CHECK(p == NULL);
    CHECK_INT(err.kind, FHIR_PERMANENT);
    CHECK_INT(err.status, 401);
    CHECK_STR(err.message, "GET Patient: 401 unknown: Authentication failed");
    CHECK_INT(atomic_load(&fc.token_requests) - t0, 1);
    CHECK_INT(atomic_load(&fc.fhir_requests) - r0, 2);

    /* From here the token stays valid: no more token requests. */
    t0 = atomic_load(&fc.token_requests);

    p = fhir_read(f, "Patient", "busy", &err);
    CHECK(p == NULL);
    CHECK_INT(err.kind, FHIR_TRANSIENT);
    CHECK_INT(err.status, 503);
    CHECK_INT(err.retry_after_ms, 7000);
    CHECK_STR(err.correlation_id, "corr-busy");
    CHECK_STR(err.message, "GET Patient: 503 excepetion: Service temporarily unavailable");

    p = fhir_read(f, "Patient", "limited", &err);
    CHECK(p == NULL);
    CHECK_INT(err.kind, FHIR_TRANSIENT);
    CHECK_INT(err.status, 429);
    CHECK_INT(err.retry_after_ms, -1);

    p = fhir_read(f, "Patient", "missing", &err);
    CHECK(p == NULL);
    CHECK_INT(err.kind, FHIR_PERMANENT);
    CHECK_INT(err.status, 404);
    CHECK_STR(err.message, "GET Patient: 404 not-found: Unknown Patient resource 'missing'");
    CHECK_STR(err.correlation_id, "corr-missing");

    p = fhir_read(f, "Patient", "wrongtype", &err);
    CHECK(p == NULL);
    CHECK_INT(err.kind, FHIR_PERMANENT);
    CHECK_INT(err.status, 200);

    p = fhir_read(f, "Patient", "notjson", &err);
    CHECK(p == NULL);
    CHECK_INT(err.kind, FHIR_PERMANENT);

    /* Bad ids and types never reach Canvas. */
    r0 = atomic_load(&fc.fhir_requests);
    CHECK(fhir_read(f, "Patient", "../Practitioner/x", &err) == NULL);
    CHECK_INT(err.kind, FHIR_PERMANENT);
    CHECK(fhir_read(f, "Patient", "", &err) == NULL);
    CHECK(fhir_read(f, "Pat/ient", "abc", &err) == NULL);
    CHECK_INT(err.kind, FHIR_PERMANENT);
    CHECK(fhir_search(f, "Communication", "patient=a b", &err) == NULL);
    CHECK_INT(err.kind, FHIR_PERMANENT);
    CHECK_INT(atomic_load(&fc.fhir_requests) - r0, 0);

    CHECK_INT(atomic_load(&fc.token_requests) - t0, 0);
}

static void test_search(struct fhir_client *f)
{
    struct fhir_error err;
    json_t *a;

    a = fhir_search(f, "Communication", "patient=Patient%2Fempty", &err);
    CHECK(a != NULL && json_is_array(a));
    CHECK_INT(json_array_size(a), 0);
    CHECK_INT(err.kind, FHIR_OK);
    json_decref(a);

    a = fhir_search(f, "Communication", "patient=Patient%2Fx&_count=10", &err);
    CHECK(a != NULL);
    CHECK_INT(json_array_size(a), 2); /* the "outcome" entry is not a result */
    CHECK_STR(json_string_value(json_object_get(json_array_get(a, 1), "id")), "c-2");
    json_decref(a);
}

static void test_create(struct fhir_client *f)
{
    struct fhir_error err;
    char id[FHIR_ID_MAX + 1];
    json_t *comm = json_pack(
        "{s:s, s:s, s:{s:s}, s:[{s:s}], s:[{s:s}]}", "resourceType", "Communication", "status",
        "unknown", "sender", "reference", "Patient/" PATIENT_ID, "recipient", "reference",
        "Practitioner/5eede137ecfe4124b8b773040e33be14", "payload", "contentString", "Hi there");
    json_t *qr =
        json_pack("{s:s, s:s}", "resourceType", "QuestionnaireResponse", "status", "completed");
    json_t *task = json_pack("{s:s}", "resourceType", "Task");
    json_t *pat = json_pack("{s:s}", "resourceType", "Patient");

    CHECK_INT(fhir_create(f, "Communication", comm, id, sizeof(id), &err), 0);
    CHECK_STR(id, NEW_COMM);
    CHECK_INT(err.kind, FHIR_OK);

    CHECK_INT(fhir_create(f, "Communication", comm, id, 8, &err), -1); /* id does not fit */
    CHECK_INT(err.kind, FHIR_PERMANENT);

    CHECK_INT(fhir_create(f, "QuestionnaireResponse", qr, id, sizeof(id), &err), -1);
    CHECK_INT(err.kind, FHIR_PERMANENT);
    CHECK_INT(err.status, 201);
    CHECK(strstr(err.message, "created but no id in Location") != NULL);

    CHECK_INT(fhir_create(f, "Task", task, id, sizeof(id), &err), 0);
    CHECK_STR(id, "task-7");

    CHECK_INT(fhir_create(f, "Patient", pat, id, sizeof(id), &err), -1);
    CHECK_INT(err.kind, FHIR_PERMANENT);
    CHECK_INT(err.status, 422);
    CHECK_STR(err.message, "POST Patient: 422 business-rule: Patient create is not allowed here");

    /* The resourceType must match the endpoint: refused before any request. */
    CHECK_INT(fhir_create(f, "Task", pat, id, sizeof(id), &err), -1);
    CHECK_INT(err.kind, FHIR_PERMANENT);
    CHECK_INT(err.status, 0);

    json_decref(comm);
    json_decref(qr);
    json_decref(task);
    json_decref(pat);
}

static void test_token_expiry(struct http_client *http)
{
    struct fhir_client *f = client_for(http, "/fhir", 60);
    struct fhir_error err;
    json_t *p;

    CHECK(f != NULL);
    if (!f)
        return;
    atomic_store(&fc.expires_in, 61); /* usable for one second with a 60 s margin */
    for (int i = 0; i < 3; i++) {
        p = fhir_read(f, "Patient", PATIENT_ID, &err);
        CHECK(p != NULL);
        json_decref(p);
    }
    CHECK_INT(fhir_token_requests(f), 1);
    usleep(1100 * 1000);
    p = fhir_read(f, "Patient", PATIENT_ID, &err);
    CHECK(p != NULL);
    json_decref(p);
    CHECK_INT(fhir_token_requests(f), 2);

    /* A token that is already inside the margin serves the call that fetched it only. */
    atomic_store(&fc.expires_in, 30);
    usleep(1100 * 1000); /* the 61 s token is past its renewal time now */
    for (int i = 1; i <= 2; i++) {
        p = fhir_read(f, "Patient", PATIENT_ID, &err);
        CHECK(p != NULL);
        json_decref(p);
        CHECK_INT(fhir_token_requests(f), 2 + i);
    }
    atomic_store(&fc.expires_in, 36000);
    fhir_client_free(f);
}

/* A renewal that fails while the token in hand is still valid: the work goes on with that token,
 * and the endpoint is asked again only after a pause, not on every call. */
static void test_token_renewal_outage(struct http_client *http)
{
    struct fhir_client *f = client_for(http, "/fhir", 60);
    struct fhir_error err;
    int t0;
    json_t *p;

    CHECK(f != NULL);
    if (!f)
        return;
    atomic_store(&fc.expires_in, 61); /* renewal due after one second, valid for a minute */
    p = fhir_read(f, "Patient", PATIENT_ID, &err);
    CHECK(p != NULL);
    json_decref(p);
    usleep(1100 * 1000);
    atomic_store(&fc.token_mode, TOKEN_503);
    t0 = atomic_load(&fc.token_requests);
    for (int i = 0; i < 5; i++) {
        p = fhir_read(f, "Patient", PATIENT_ID, &err);
        CHECK(p != NULL);
        json_decref(p);
    }
    CHECK_INT(atomic_load(&fc.token_requests) - t0, 1); /* one attempt, then a pause */
    CHECK_INT(read_concurrently(f, PATIENT_ID, 16), 16);
    CHECK_INT(atomic_load(&fc.token_requests) - t0, 1);
    usleep(1100 * 1000);
    atomic_store(&fc.token_mode, TOKEN_OK);
    p = fhir_read(f, "Patient", PATIENT_ID, &err); /* the pause is over: renewed now */
    CHECK(p != NULL);
    json_decref(p);
    CHECK_INT(atomic_load(&fc.token_requests) - t0, 2);
    atomic_store(&fc.expires_in, 36000);
    fhir_client_free(f);
}

static void test_token_failures(struct http_client *http)
{
    struct fhir_client *f = client_for(http, "/fhir/", 0); /* trailing slash is fine */
    struct fhir_error err;
    int r0 = atomic_load(&fc.fhir_requests), t0;
    json_t *p;

    CHECK(f != NULL);
    if (!f)
        return;
    /* Token endpoint unavailable: transient with its Retry-After, no FHIR request. */
    atomic_store(&fc.token_mode, TOKEN_503);
    p = fhir_read(f, "Patient", PATIENT_ID, &err);
    CHECK(p == NULL);
    CHECK_INT(err.kind, FHIR_TRANSIENT);
    CHECK_INT(err.status, 503);
    CHECK_INT(err.retry_after_ms, 3000);
    CHECK_INT(atomic_load(&fc.fhir_requests) - r0, 0);

    /* Sixteen callers waiting for one failing refresh share its failure. */
    t0 = atomic_load(&fc.token_requests);
    atomic_store(&fc.token_delay_ms, 300);
    CHECK_INT(read_concurrently(f, PATIENT_ID, 16), 0);
    atomic_store(&fc.token_delay_ms, 0);
    CHECK_INT(atomic_load(&fc.token_requests) - t0, 1);

    /* Credentials rejected: permanent. */
    atomic_store(&fc.token_mode, TOKEN_401);
    p = fhir_read(f, "Patient", PATIENT_ID, &err);
    CHECK(p == NULL);
    CHECK_INT(err.kind, FHIR_PERMANENT);
    CHECK(strstr(err.message, "Canvas rejected the client credentials") != NULL);
    CHECK(strstr(err.message, "invalid_client") != NULL);

    /* Back up: the same client recovers, and the base with a trailing slash works. */
    atomic_store(&fc.token_mode, TOKEN_OK);
    p = fhir_read(f, "Patient", PATIENT_ID, &err);
    CHECK(p != NULL);
    json_decref(p);
    fhir_client_free(f);
}

static void test_transport_failure(struct http_client *http)
{
    char base[128], tok[128], err_s[256];
    struct fhir_options o = {0};
    struct fhir_client *f;
    struct fhir_error err;

    snprintf(base, sizeof(base), "http://127.0.0.1:%u/fhir", closed_port());
    snprintf(tok, sizeof(tok), "http://127.0.0.1:%u/auth/token/", fc.port);
    o.base_url = base;
    o.token_url = tok;
    o.client_id = CLIENT_ID;
    o.client_secret = CLIENT_SECRET;
    f = fhir_client_new(http, &o, err_s, sizeof(err_s));
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK(fhir_read(f, "Patient", PATIENT_ID, &err) == NULL);
    CHECK_INT(err.kind, FHIR_TRANSIENT);
    CHECK_INT(err.status, 0);
    CHECK(strstr(err.message, "GET Patient: no answer") == err.message);

    /* And an unreachable token endpoint. */
    fhir_client_free(f);
    snprintf(tok, sizeof(tok), "http://127.0.0.1:%u/auth/token/", closed_port());
    f = fhir_client_new(http, &o, err_s, sizeof(err_s));
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK(fhir_read(f, "Patient", PATIENT_ID, &err) == NULL);
    CHECK_INT(err.kind, FHIR_TRANSIENT);
    CHECK_INT(err.status, 0);
    fhir_client_free(f);
}

/* What the logs may and may not hold, read back from the captured stderr. */
static void check_logs(const char *logs)
{
    CHECK(strstr(logs, "s3cr3t") == NULL);
    CHECK(strstr(logs, "s3cr3t%26") == NULL);
    CHECK(strstr(logs, "tok-") == NULL);
    CHECK(strstr(logs, "Bearer") == NULL);
    CHECK(strstr(logs, "Jane") == NULL);
    CHECK(strstr(logs, "Hi there") == NULL);
    CHECK(strstr(logs, "[redacted]") == NULL); /* every key used is allow-listed */
    CHECK(strstr(logs, "\"http_status\":404") != NULL);
    CHECK(strstr(logs, "\"correlation_id\":\"corr-missing\"") != NULL);
    CHECK(strstr(logs, "\"correlation_id\":\"corr-401\"") != NULL);
    CHECK(strstr(logs, "\"resource_id\":\"missing\"") != NULL);
    CHECK(strstr(logs, "\"type\":\"Patient\"") != NULL);
    CHECK(strstr(logs, "PM_CANVAS_FHIR_URL") != NULL); /* the plain-http warning */
}

int main(void)
{
    struct http_client_options ho = {.timeout_ms = 5000};
    char err[256];
    struct http_client *http = NULL;
    struct fhir_client *f = NULL;
    FILE *cap = tmpfile();
    int saved = dup(STDERR_FILENO);
    char *logs = NULL;
    long n;

    if (fake_start() != 0 || !cap || saved < 0)
        return 1;
    /* Logs (and failed CHECK lines) go to a file for the duration; see check_logs. */
    fflush(stderr);
    dup2(fileno(cap), STDERR_FILENO);
    log_init("test_fhir", LOG_DEBUG);

    http = http_client_new(&ho, err, sizeof(err));
    CHECK(http != NULL);
    if (http) {
        test_url_encode();
        test_new_rejects(http);
        test_one_token_for_all(http);
        f = client_for(http, "/fhir", 0);
        CHECK(f != NULL);
        if (f) {
            test_reads_and_errors(f);
            test_search(f);
            test_create(f);
            fhir_client_free(f);
        }
        test_token_expiry(http);
        test_token_renewal_outage(http);
        test_token_failures(http);
        test_transport_failure(http);
        http_client_free(http);
    }
    CHECK_INT(atomic_load(&fc.bad_requests), 0);
    CHECK_INT(atomic_load(&fc.bad_forms), 0);

    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    fseek(cap, 0, SEEK_END);
    n = ftell(cap);
    rewind(cap);
    logs = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
    if (logs && n > 0 && fread(logs, 1, (size_t)n, cap) != (size_t)n)
        logs[0] = '\0';
    fclose(cap);
    if (logs) {
        /* Show what is not a log line (CHECK failures) on the real stderr. */
        for (char *line = logs, *nl; *line; line = nl + 1) {
            nl = strchr(line, '\n');
            if (!nl)
                nl = line + strlen(line) - 1;
            if (line[0] != '{' || getenv("TEST_SHOW_LOGS"))
                fprintf(stderr, "%.*s\n", (int)(nl - line), line);
            if (!nl[1])
                break;
        }
        check_logs(logs);
    }
    CHECK(logs != NULL);
    free(logs);
    http_server_stop(fc.srv);
    return UNIT_DONE();
}
