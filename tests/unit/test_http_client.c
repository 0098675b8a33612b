/* Unit tests for http_client against an in-process server: round trips, errors, threads, fibers,
 * reuse. */
#include "fiber.h"
#include "http_client.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "unit.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLEEPERS 48

struct test_server {
    struct http_server *srv;
    char base[64];
    pthread_mutex_t lock;
    pthread_t sleepers[MAX_SLEEPERS];
    int nsleepers;
    atomic_int sleep_arrived;
};

static struct test_server ts;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* --- server routes --- */

static enum http_result route_echo(struct http_request *req, void *app)
{
    size_t len = 0;
    const char *body = http_request_body(req, &len);
    json_t *j;
    (void)app;

    j = json_pack(
        "{s:s, s:s, s:I, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?}", "method",
        http_request_method(req), "path", http_request_path(req), "body_len", (json_int_t)len,
        "body", len < 65536 ? body : NULL, "x_test", http_request_header(req, "X-Test"),
        "authorization", http_request_header(req, "Authorization"), "content_type",
        http_request_header(req, "Content-Type"), "expect", http_request_header(req, "Expect"),
        "user_agent", http_request_header(req, "User-Agent"), "q", http_request_query(req, "q"));
    http_respond_json(req, 200, j);
    json_decref(j);
    return HTTP_HANDLED;
}

static enum http_result route_status(struct http_request *req, void *app)
{
    long code = strtol(http_request_path(req) + strlen("/status/"), NULL, 10);
    (void)app;
    if (code < 200 || code > 599)
        code = 500;
    http_respond_header(req, "X-Custom", "  hello world  ");
    http_respond_header(req, "fumage-correlation-id", "corr-123");
    http_respond(req, (int)code, "text/plain", "status body", 11);
    return HTTP_HANDLED;
}

static enum http_result route_retry(struct http_request *req, void *app)
{
    const char *kind = http_request_path(req) + strlen("/retry/");
    char date[64];
    (void)app;

    if (strcmp(kind, "seconds") == 0) {
        http_respond_header(req, "Retry-After", "7");
    } else if (strcmp(kind, "date") == 0) {
        time_t t = time(NULL) + 120;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        http_respond_header(req, "Retry-After", date);
    } else if (strcmp(kind, "past") == 0) {
        http_respond_header(req, "Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT");
    } else if (strcmp(kind, "junk") == 0) {
        http_respond_header(req, "Retry-After", "soon");
    }
    http_respond(req, 503, "text/plain", "", 0);
    return HTTP_HANDLED;
}

struct sleeper {
    struct http_request *req;
    long ms;
};

static void *sleeper_run(void *arg)
{
    struct sleeper *s = arg;
    usleep((useconds_t)s->ms * 1000);
    http_respond(s->req, 200, "text/plain", "slept", 5);
    http_request_resume(s->req);
    free(s);
    return NULL;
}

/* Answers after ?ms= milliseconds without holding a server thread. */
static enum http_result route_sleep(struct http_request *req, void *app)
{
    const char *ms = http_request_query(req, "ms");
    struct sleeper *s = calloc(1, sizeof(*s));
    int ok = 0;
    (void)app;

    if (!s)
        return HTTP_FAIL;
    s->req = req;
    s->ms = ms ? strtol(ms, NULL, 10) : 1000;
    http_request_suspend(req);
    pthread_mutex_lock(&ts.lock);
    if (ts.nsleepers < MAX_SLEEPERS &&
        pthread_create(&ts.sleepers[ts.nsleepers], NULL, sleeper_run, s) == 0) {
        ts.nsleepers++;
        ok = 1;
    }
    pthread_mutex_unlock(&ts.lock);
    if (!ok) {
        free(s);
        http_respond(req, 500, "text/plain", "", 0);
        http_request_resume(req);
    }
    atomic_fetch_add(&ts.sleep_arrived, 1);
    return HTTP_SUSPENDED;
}

static enum http_result route_big(struct http_request *req, void *app)
{
    size_t n = 9u * 1024 * 1024;
    char *b = malloc(n);
    (void)app;
    if (!b)
        return HTTP_FAIL;
    memset(b, 'x', n);
    http_respond(req, 200, "text/plain", b, n);
    free(b);
    return HTTP_HANDLED;
}

static const struct http_route routes[] = {
    {"GET", "/echo", route_echo, 0, NULL},     {"POST", "/echo", route_echo, 1, NULL},
    {"PUT", "/echo", route_echo, 1, NULL},     {"GET", "/status/*", route_status, 0, NULL},
    {"GET", "/retry/*", route_retry, 0, NULL}, {"GET", "/sleep", route_sleep, 0, NULL},
    {"GET", "/big", route_big, 0, NULL},
};

static int server_start(void)
{
    struct http_server_options o = {0};
    char err[256];

    pthread_mutex_init(&ts.lock, NULL);
    o.host = "127.0.0.1";
    o.port = 0;
    o.max_body_bytes = 4u * 1024 * 1024;
    o.conn_timeout_s = 30;
    o.conn_limit = 1024;
    o.threads = 4;
    o.routes = routes;
    o.nroutes = sizeof(routes) / sizeof(routes[0]);
    ts.srv = http_server_start(&o, err, sizeof(err));
    if (!ts.srv) {
        fprintf(stderr, "server: %s\n", err);
        return -1;
    }
    snprintf(ts.base, sizeof(ts.base), "http://127.0.0.1:%u", http_server_port(ts.srv));
    return 0;
}

static void server_stop(void)
{
    for (int i = 0; i < ts.nsleepers; i++)
        pthread_join(ts.sleepers[i], NULL);
    http_server_stop(ts.srv);
    pthread_mutex_destroy(&ts.lock);
}

static void url(char *out, size_t len, const char *path)
{
    snprintf(out, len, "%s%s", ts.base, path);
}

static json_t *reply_json(const struct http_reply *r)
{
    return json_loadb(r->body ? r->body : "", r->body_len, 0, NULL);
}

static const char *jstr(json_t *j, const char *key)
{
    return json_string_value(json_object_get(j, key));
}

/* --- tests --- */

static void test_round_trip(struct http_client *c)
{
    char u[128];
    const char *hdrs[] = {"X-Test: abc", "Content-Type: application/json", NULL};
    const char *body = "{\"k\":\"v\"}";
    struct http_reply r;
    json_t *j;

    url(u, sizeof(u), "/echo?q=a%20b");
    struct http_call get = {.method = "GET", .url = u, .headers = hdrs, .target = "echo"};
    CHECK_INT(http_client_do(c, &get, &r), 0);
    CHECK_INT(r.status, 200);
    CHECK_INT(r.curl_code, 0);
    CHECK(r.headers && strstr(r.headers, "HTTP/1.1 200") == r.headers);
    j = reply_json(&r);
    CHECK_STR(jstr(j, "method"), "GET");
    CHECK_STR(jstr(j, "path"), "/echo");
    CHECK_STR(jstr(j, "q"), "a b");
    CHECK_STR(jstr(j, "x_test"), "abc");
    CHECK_STR(jstr(j, "user_agent"), "pm-bridge/" PM_VERSION);
    CHECK(jstr(j, "authorization") == NULL);
    json_decref(j);
    http_reply_free(&r);

    url(u, sizeof(u), "/echo");
    struct http_call post = {.method = "POST",
                             .url = u,
                             .headers = hdrs,
                             .body = body,
                             .body_len = strlen(body),
                             .target = "echo"};
    CHECK_INT(http_client_do(c, &post, &r), 0);
    CHECK_INT(r.status, 200);
    j = reply_json(&r);
    CHECK_STR(jstr(j, "method"), "POST");
    CHECK_STR(jstr(j, "body"), body);
    CHECK_STR(jstr(j, "content_type"), "application/json");
    CHECK(jstr(j, "expect") == NULL);
    json_decref(j);
    http_reply_free(&r);

    /* Another method with a body. */
    struct http_call put = post;
    put.method = "PUT";
    CHECK_INT(http_client_do(c, &put, &r), 0);
    j = reply_json(&r);
    CHECK_STR(jstr(j, "method"), "PUT");
    CHECK_STR(jstr(j, "body"), body);
    json_decref(j);
    http_reply_free(&r);

    /* Header lists of 15 (the last one the call's own nodes hold, with "Expect:") and 20
     * (built with curl_slist_append): every header arrives, "Expect:" still suppresses. */
    for (int n = 15; n <= 20; n += 5) {
        const char *many[21];
        char names[20][32];
        for (int i = 0; i < n - 1; i++) {
            snprintf(names[i], sizeof(names[i]), "X-Filler-%d: %d", i, i);
            many[i] = names[i];
        }
        many[n - 1] = "X-Test: last-of-many";
        many[n] = NULL;
        struct http_call m = post;
        m.headers = many;
        CHECK_INT(http_client_do(c, &m, &r), 0);
        j = reply_json(&r);
        CHECK_STR(jstr(j, "x_test"), "last-of-many");
        CHECK_STR(jstr(j, "body"), body);
        CHECK(jstr(j, "expect") == NULL);
        json_decref(j);
        http_reply_free(&r);
    }

    /* HTTP Basic (Twilio). */
    struct http_call basic = {.method = "GET",
                              .url = u,
                              .basic_user = "AC123",
                              .basic_password = "s3cr3t",
                              .target = "echo"};
    CHECK_INT(http_client_do(c, &basic, &r), 0);
    j = reply_json(&r);
    CHECK_STR(jstr(j, "authorization"), "Basic QUMxMjM6czNjcjN0");
    json_decref(j);
    http_reply_free(&r);
}

/* A body big enough that curl would ask for 100-continue is sent straight away. */
static void test_no_expect(struct http_client *c)
{
    char u[128];
    size_t n = 1536u * 1024;
    char *body = malloc(n);
    struct http_reply r;
    json_t *j;

    CHECK(body != NULL);
    if (!body)
        return;
    memset(body, 'a', n);
    url(u, sizeof(u), "/echo");
    struct http_call post = {.method = "POST", .url = u, .body = body, .body_len = n};
    CHECK_INT(http_client_do(c, &post, &r), 0);
    CHECK_INT(r.status, 200);
    j = reply_json(&r);
    CHECK_INT(json_integer_value(json_object_get(j, "body_len")), (long long)n);
    CHECK(jstr(j, "expect") == NULL);
    CHECK(strstr(r.headers, "100 Continue") == NULL);
    json_decref(j);
    http_reply_free(&r);
    free(body);
}

static void test_statuses_and_headers(struct http_client *c)
{
    static const long codes[] = {201, 204, 400, 404, 429, 500, 503};
    char u[128], v[64];
    struct http_reply r;

    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        char path[32];
        snprintf(path, sizeof(path), "/status/%ld", codes[i]);
        url(u, sizeof(u), path);
        struct http_call call = {.method = "GET", .url = u, .target = "status"};
        CHECK_INT(http_client_do(c, &call, &r), 0);
        CHECK_INT(r.status, codes[i]);
        CHECK_INT(r.curl_code, 0);
        CHECK_INT(r.timed_out, 0);
        if (codes[i] != 204)
            CHECK_STR(r.body, "status body");
        CHECK_INT(http_reply_header(&r, "x-custom", v, sizeof(v)), 0);
        CHECK_STR(v, "hello world");
        CHECK_INT(http_reply_header(&r, "X-CUSTOM", v, sizeof(v)), 0);
        CHECK_INT(http_reply_header(&r, "Fumage-Correlation-ID", v, sizeof(v)), 0);
        CHECK_STR(v, "corr-123");
        CHECK_INT(http_reply_header(&r, "X-Missing", v, sizeof(v)), -1);
        CHECK_INT(http_reply_header(&r, "X-Cust", v, sizeof(v)), -1); /* no prefix matches */
        CHECK_INT(http_reply_retry_after_ms(&r), -1);
        http_reply_free(&r);
    }
    /* A small output buffer truncates. */
    url(u, sizeof(u), "/status/200");
    struct http_call call = {.method = "GET", .url = u};
    CHECK_INT(http_client_do(c, &call, &r), 0);
    CHECK_INT(http_reply_header(&r, "X-Custom", v, 6), 0);
    CHECK_STR(v, "hello");
    http_reply_free(&r);
}

static void test_retry_after(struct http_client *c)
{
    char u[128];
    struct http_reply r;
    long ms;

    url(u, sizeof(u), "/retry/seconds");
    struct http_call call = {.method = "GET", .url = u};
    CHECK_INT(http_client_do(c, &call, &r), 0);
    CHECK_INT(r.status, 503);
    CHECK_INT(http_reply_retry_after_ms(&r), 7000);
    http_reply_free(&r);

    url(u, sizeof(u), "/retry/date");
    CHECK_INT(http_client_do(c, &call, &r), 0);
    ms = http_reply_retry_after_ms(&r);
    CHECK(ms >= 115000 && ms <= 121000);
    http_reply_free(&r);

    url(u, sizeof(u), "/retry/past");
    CHECK_INT(http_client_do(c, &call, &r), 0);
    CHECK_INT(http_reply_retry_after_ms(&r), 0);
    http_reply_free(&r);

    url(u, sizeof(u), "/retry/junk");
    CHECK_INT(http_client_do(c, &call, &r), 0);
    CHECK_INT(http_reply_retry_after_ms(&r), -1);
    http_reply_free(&r);

    /* Parsing on a hand-made block: only the final answer's headers count. */
    {
        char block[] = "HTTP/1.1 429 Too Many Requests\r\nretry-after:  120 \r\n\r\n";
        struct http_reply h = {0};
        h.headers = block;
        CHECK_INT(http_reply_retry_after_ms(&h), 120000);
        h.headers = NULL;
        CHECK_INT(http_reply_retry_after_ms(&h), -1);
    }
}

static void test_timeout(struct http_client *c)
{
    char u[128];
    struct http_reply r;
    double t0 = now_s();

    url(u, sizeof(u), "/sleep?ms=1500");
    struct http_call call = {.method = "GET", .url = u, .timeout_ms = 200, .target = "slow"};
    CHECK_INT(http_client_do(c, &call, &r), -1);
    CHECK_INT(r.status, 0);
    CHECK_INT(r.timed_out, 1);
    CHECK_INT(r.curl_code, 28); /* CURLE_OPERATION_TIMEDOUT */
    CHECK(r.error[0] != '\0');
    CHECK(now_s() - t0 < 1.2);
    CHECK(r.body && r.body[0] == '\0');
    http_reply_free(&r);
}

/* Some port nothing listens on. */
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

static void test_refused(struct http_client *c)
{
    char u[128];
    struct http_reply r;
    const char *hdrs[] = {"Authorization: Bearer tok-secret-value", NULL};

    snprintf(u, sizeof(u), "http://127.0.0.1:%u/x?email=jane%%40example.org", closed_port());
    struct http_call call = {.method = "POST",
                             .url = u,
                             .headers = hdrs,
                             .body = "body-secret-value",
                             .body_len = 17,
                             .target = "refused"};
    CHECK_INT(http_client_do(c, &call, &r), -1);
    CHECK_INT(r.status, 0);
    CHECK_INT(r.timed_out, 0);
    CHECK_INT(r.curl_code, 7); /* CURLE_COULDNT_CONNECT */
    CHECK(r.error[0] != '\0');
    CHECK(strstr(r.error, "secret") == NULL);
    CHECK(strstr(r.error, "jane") == NULL);
    http_reply_free(&r);

    /* Only http and https. */
    struct http_call ftp = {.method = "GET", .url = "ftp://127.0.0.1/x", .target = "refused"};
    CHECK_INT(http_client_do(c, &ftp, &r), -1);
    CHECK_INT(r.status, 0);
    CHECK_INT(r.curl_code, 1); /* CURLE_UNSUPPORTED_PROTOCOL */
    http_reply_free(&r);
}

static void test_too_large(struct http_client *c)
{
    char u[128];
    struct http_reply r;

    url(u, sizeof(u), "/big");
    struct http_call call = {.method = "GET", .url = u};
    CHECK_INT(http_client_do(c, &call, &r), -1);
    CHECK_INT(r.status, 0);
    CHECK_STR(r.error, "response too large");
    CHECK(r.body && r.body_len == 0);
    http_reply_free(&r);
}

struct worker {
    struct http_client *c;
    int id;
    int ok;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    char u[128], tag[64], hdr[96];

    url(u, sizeof(u), "/echo");
    for (int i = 0; i < 50; i++) {
        struct http_reply r;
        json_t *j;
        snprintf(tag, sizeof(tag), "w%d-call%d", w->id, i);
        snprintf(hdr, sizeof(hdr), "X-Test: %s", tag);
        const char *hdrs[] = {hdr, NULL};
        struct http_call call = {.method = "POST",
                                 .url = u,
                                 .headers = hdrs,
                                 .body = tag,
                                 .body_len = strlen(tag),
                                 .target = "echo"};
        if (http_client_do(w->c, &call, &r) == 0 && r.status == 200) {
            j = reply_json(&r);
            const char *b = jstr(j, "body"), *x = jstr(j, "x_test");
            if (b && x && strcmp(b, tag) == 0 && strcmp(x, tag) == 0)
                w->ok++;
            json_decref(j);
        }
        http_reply_free(&r);
    }
    return NULL;
}

static void test_concurrent(struct http_client *c)
{
    enum { NT = 64 };
    pthread_t th[NT];
    struct worker w[NT];
    int total = 0;

    for (int i = 0; i < NT; i++) {
        w[i] = (struct worker){.c = c, .id = i, .ok = 0};
        CHECK_INT(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        total += w[i].ok;
    }
    CHECK_INT(total, NT * 50);
}

/* A call made while the client thread sleeps in epoll_wait (it wakes by itself only every
 * second) is picked up at once: the caller that finds it asleep wakes it, from one thread and
 * from several at the same moment. A lost wake-up would show as a call of about a second. */
static void test_wake_from_idle(struct http_client *c)
{
    char u[128];
    int slow = 0, ok = 0;

    url(u, sizeof(u), "/echo");
    for (int i = 0; i < 12; i++) {
        struct http_reply r;
        struct http_call call = {.method = "GET", .url = u};
        double t0;
        usleep((useconds_t)(20 + 7 * i) * 1000); /* idle: the thread goes back to sleep */
        t0 = now_s();
        if (http_client_do(c, &call, &r) == 0 && r.status == 200)
            ok++;
        if (now_s() - t0 >= 0.9)
            slow++;
        http_reply_free(&r);
    }
    CHECK_INT(ok, 12);
    CHECK_INT(slow, 0);
}

/* 200 calls, GET and POST in turn, on one client: @returns how many got a 200; the connections
 * they opened are added to *@p conns. */
static int reuse_calls(struct http_client *c, long *conns)
{
    char u[128];
    int ok = 0;

    url(u, sizeof(u), "/echo");
    for (int i = 0; i < 200; i++) {
        struct http_reply r;
        struct http_call call = {.method = (i & 1) ? "POST" : "GET",
                                 .url = u,
                                 .body = (i & 1) ? "x" : NULL,
                                 .body_len = (i & 1) ? 1 : 0};
        if (http_client_do(c, &call, &r) == 0 && r.status == 200)
            ok++;
        *conns += r.new_connections;
        http_reply_free(&r);
    }
    return ok;
}

static void test_reuse(void)
{
    struct http_client_options o = {.timeout_ms = 5000};
    char err[256];
    struct http_client *c = http_client_new(&o, err, sizeof(err));
    long conns = 0;

    CHECK(c != NULL);
    if (!c)
        return;
    CHECK_INT(reuse_calls(c, &conns), 200);
    CHECK(conns >= 1 && conns <= 2);
    http_client_free(c);
}

static void test_metrics(void)
{
    struct metrics_registry *reg = metrics_registry_new();
    static const char *const req_labels[] = {"target", "status", NULL};
    struct http_client_options o = {.timeout_ms = 5000, .metrics = reg, .metrics_prefix = "t"};
    char err[256], u[128];
    struct http_client *c = http_client_new(&o, err, sizeof(err));
    struct metrics_family *fam;
    struct http_reply r;
    size_t len = 0;
    char *text;

    CHECK(c != NULL);
    if (!c) {
        metrics_registry_free(reg);
        return;
    }
    url(u, sizeof(u), "/status/404");
    struct http_call call = {.method = "GET", .url = u, .target = "canvas-fhir"};
    for (int i = 0; i < 3; i++) {
        http_client_do(c, &call, &r);
        http_reply_free(&r);
    }
    snprintf(u, sizeof(u), "http://127.0.0.1:%u/", closed_port());
    http_client_do(c, &call, &r);
    http_reply_free(&r);

    fam = metrics_family_new(reg, METRICS_COUNTER, "t_outbound_requests_total", "x", req_labels,
                             NULL, 0);
    CHECK(fam != NULL);
    CHECK(metrics_value(metrics_series2(fam, "canvas-fhir", "404")) == 3.0);
    CHECK(metrics_value(metrics_series2(fam, "canvas-fhir", "error")) == 1.0);
    text = metrics_render(reg, &len);
    CHECK(text &&
          strstr(text, "t_outbound_request_duration_seconds_count{target=\"canvas-fhir\"} 4"));
    free(text);
    http_client_free(c);
    metrics_registry_free(reg);
}

struct pending_call {
    struct http_client *c;
    int rc;
    double took;
    char error[256];
};

static void *pending_run(void *arg)
{
    struct pending_call *p = arg;
    char u[128];
    struct http_reply r;
    double t0 = now_s();

    url(u, sizeof(u), "/sleep?ms=1500");
    struct http_call call = {.method = "GET", .url = u, .timeout_ms = 5000};
    p->rc = http_client_do(p->c, &call, &r);
    p->took = now_s() - t0;
    snprintf(p->error, sizeof(p->error), "%s", r.error);
    http_reply_free(&r);
    return NULL;
}

/* http_client_free fails a call that is waiting instead of waiting for it. */
static void test_free_in_flight(void)
{
    struct http_client_options o = {.timeout_ms = 5000};
    char err[256];
    struct pending_call p = {0};
    pthread_t th;
    int before = atomic_load(&ts.sleep_arrived);

    p.c = http_client_new(&o, err, sizeof(err));
    CHECK(p.c != NULL);
    if (!p.c)
        return;
    CHECK_INT(pthread_create(&th, NULL, pending_run, &p), 0);
    for (int i = 0; i < 200 && atomic_load(&ts.sleep_arrived) == before; i++)
        usleep(10000);
    CHECK(atomic_load(&ts.sleep_arrived) > before);
    http_client_free(p.c);
    pthread_join(th, NULL);
    CHECK_INT(p.rc, -1);
    CHECK(p.took < 1.2);
    CHECK(strstr(p.error, "shutting down") != NULL);
}

/* ---- calls from fibers: driven by the fiber's own pool thread ---- */

struct fiber_calls {
    struct http_client *c, *fresh;
    atomic_int next_id;
    atomic_int ok;
    long fresh_conns;
    int fresh_ok;
    double slept_took; /* wall time of every fiber's /sleep call, all on one thread */
    int slept_ok;
};

/* Every single-call test, from one fiber; then 200 calls on a client no thread used before:
 * the thread's connection cache keeps one connection (two if the server closed one). Two
 * clients on one thread: each has its own multi handle there. */
static void fiber_suite(void *arg)
{
    struct fiber_calls *f = arg;

    test_round_trip(f->c);
    test_no_expect(f->c);
    test_statuses_and_headers(f->c);
    test_retry_after(f->c);
    test_timeout(f->c);
    test_refused(f->c);
    test_too_large(f->c);
    f->fresh_ok = reuse_calls(f->fresh, &f->fresh_conns);
}

static void fiber_worker(void *arg)
{
    struct fiber_calls *f = arg;
    struct worker w = {.c = f->c, .id = atomic_fetch_add(&f->next_id, 1)};
    worker_run(&w);
    atomic_fetch_add(&f->ok, w.ok);
}

static void fiber_sleeper(void *arg)
{
    struct fiber_calls *f = arg;
    char u[128];
    struct http_reply r;
    struct http_call call = {.method = "GET", .url = u};

    url(u, sizeof(u), "/sleep?ms=400");
    if (http_client_do(f->c, &call, &r) == 0 && r.status == 200 && strcmp(r.body, "slept") == 0)
        atomic_fetch_add(&f->ok, 1);
    http_reply_free(&r);
}

static void test_fibers(struct http_client *c)
{
    struct http_client_options o = {.timeout_ms = 5000};
    struct fiber_calls f;
    struct fiber_pool *pool;
    char err[256];
    double t0;

    memset(&f, 0, sizeof(f));
    f.c = c;
    f.fresh = http_client_new(&o, err, sizeof(err));
    CHECK(f.fresh != NULL);
    if (!f.fresh)
        return;
    pool = fiber_pool_start(1, 1, 256 * 1024, "test-fcall", fiber_suite, &f, err, sizeof(err));
    CHECK(pool != NULL);
    fiber_pool_join(pool);
    CHECK_INT(f.fresh_ok, 200);
    CHECK(f.fresh_conns >= 1 && f.fresh_conns <= 2);
    http_client_free(f.fresh); /* the pool has ended: its thread freed its multi handles */

    /* 64 fibers on 2 threads, 50 calls each, answers matched to their calls. */
    atomic_store(&f.ok, 0);
    pool = fiber_pool_start(2, 64, 128 * 1024, "test-fcall", fiber_worker, &f, err, sizeof(err));
    CHECK(pool != NULL);
    fiber_pool_join(pool);
    CHECK_INT(atomic_load(&f.ok), 64 * 50);

    /* 12 fibers on ONE thread wait for 400 ms answers at the same time: the thread serves them
     * all while they wait (one after the other would take 4.8 s). */
    atomic_store(&f.ok, 0);
    t0 = now_s();
    pool = fiber_pool_start(1, 12, 128 * 1024, "test-fcall", fiber_sleeper, &f, err, sizeof(err));
    CHECK(pool != NULL);
    fiber_pool_join(pool);
    CHECK_INT(atomic_load(&f.ok), 12);
    CHECK(now_s() - t0 < 2.0);
}

/* http_client_free called while a pool thread that made calls still runs waits for that thread to
 * end (it frees its multi handle then), and returns once it has. */
struct free_wait {
    struct http_client *c;
    struct fiber_event go_on;
    int call_ok;
    atomic_int freed;
};

static void free_wait_fiber(void *arg)
{
    struct free_wait *w = arg;
    char u[128];
    struct http_reply r;
    struct http_call call = {.method = "GET", .url = u};

    url(u, sizeof(u), "/echo");
    w->call_ok = http_client_do(w->c, &call, &r) == 0 && r.status == 200;
    http_reply_free(&r);
    fiber_event_wait(&w->go_on);
}

static void *free_wait_free(void *arg)
{
    struct free_wait *w = arg;
    http_client_free(w->c);
    atomic_store(&w->freed, 1);
    return NULL;
}

static void test_free_waits_for_pool(void)
{
    struct http_client_options o = {.timeout_ms = 5000};
    struct free_wait w;
    struct fiber_pool *pool;
    pthread_t th;
    char err[256];

    memset(&w, 0, sizeof(w));
    w.c = http_client_new(&o, err, sizeof(err));
    CHECK(w.c != NULL);
    if (!w.c || fiber_event_init(&w.go_on) != 0)
        return;
    pool = fiber_pool_start(1, 1, 128 * 1024, "test-fwait", free_wait_fiber, &w, err, sizeof(err));
    CHECK(pool != NULL);
    for (int i = 0; i < 500 && !w.call_ok; i++)
        usleep(2000);
    CHECK(w.call_ok);
    CHECK_INT(pthread_create(&th, NULL, free_wait_free, &w), 0);
    usleep(200000);
    CHECK_INT(atomic_load(&w.freed), 0); /* still waiting: the pool thread holds a multi handle */
    fiber_event_post(&w.go_on);
    fiber_pool_join(pool);
    pthread_join(th, NULL);
    CHECK_INT(atomic_load(&w.freed), 1);
    fiber_event_destroy(&w.go_on);
}

int main(void)
{
    struct http_client_options o = {.timeout_ms = 5000};
    char err[256];
    struct http_client *c;

    log_init("test_http_client", LOG_ERROR);
    if (server_start() != 0)
        return 1;
    c = http_client_new(&o, err, sizeof(err));
    CHECK(c != NULL);
    if (c) {
        test_round_trip(c);
        test_no_expect(c);
        test_statuses_and_headers(c);
        test_retry_after(c);
        test_timeout(c);
        test_refused(c);
        test_too_large(c);
        test_concurrent(c);
        test_wake_from_idle(c);
        test_concurrent(c); /* many callers again, after the thread slept */
        test_fibers(c);
        test_concurrent(c); /* threads again, after fibers used the client */
        http_client_free(c);
    }
    test_reuse();
    test_metrics();
    test_free_in_flight();
    test_free_waits_for_pool();

    {
        struct http_client_options bad = {.timeout_ms = -1};
        CHECK(http_client_new(&bad, err, sizeof(err)) == NULL);
    }
    server_stop();
    return UNIT_DONE();
}
