/* Self-test of the integration harness: child processes, HTTP client, webhook signing. */
#include <microhttpd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ---- child processes ------------------------------------------------------------------------ */

static void test_processes(struct harness *h)
{
    /* extra_env sets PM_H_A and unsets PM_H_B, which this process has. */
    const char *const env_argv[] = {
        "/bin/sh", "-c",
        "echo \"A=$PM_H_A\"; echo \"B=${PM_H_B-unset}\"; echo \"C=$PM_H_C\"; "
        "echo oops >&2; read line; echo \"got $line\"; exit 7",
        NULL};
    const char *const env[] = {"PM_H_A=one two", "PM_H_B", NULL};
    const char *const silent[] = {"/bin/sh", "-c", "exec sleep 30", NULL};
    const char *const long_line[] = {"/bin/sh", "-c", "echo abcdefgh; echo next", NULL};
    const char *const quick[] = {"/bin/sh", "-c", "printf partial; exit 3", NULL};
    const char *const stubborn[] = {"/bin/sh", "-c",
                                    "trap '' TERM; echo ready; while :; do sleep 0.1; done", NULL};
    struct harness_proc *p;
    char line[256];
    char *err;
    long long t0;

    setenv("PM_H_B", "inherited", 1);
    setenv("PM_H_C", "kept", 1);
    p = harness_proc_start(h, "env", env_argv, env);
    if (H_CHECK(h, p != NULL)) {
        H_CHECK(h, harness_proc_pid(p) > 0);
        H_CHECK(h, harness_proc_read_line(p, line, sizeof(line), 5000) == 0);
        H_CHECK_STR(h, line, "A=one two");
        H_CHECK(h, harness_proc_read_line(p, line, sizeof(line), 5000) == 0);
        H_CHECK_STR(h, line, "B=unset");
        H_CHECK(h, harness_proc_read_line(p, line, sizeof(line), 5000) == 0);
        H_CHECK_STR(h, line, "C=kept");
        H_CHECK(h, harness_proc_write(p, "hello\n") == 0);
        H_CHECK(h, harness_proc_read_line(p, line, sizeof(line), 5000) == 0);
        H_CHECK_STR(h, line, "got hello");
        H_CHECK_INT(h, harness_proc_wait(p, 5000), 7);
        H_CHECK(h, !harness_proc_running(p));
        err = harness_proc_stderr(p);
        H_CHECK_STR(h, err, "oops\n");
        free(err);
        /* Every line was read: nothing more comes. */
        H_CHECK(h, harness_proc_read_line(p, line, sizeof(line), 100) != 0);
    }

    /* A line longer than the buffer is cut, not split: the next read gets the next line. */
    p = harness_proc_start(h, "long", long_line, NULL);
    if (H_CHECK(h, p != NULL)) {
        H_CHECK(h, harness_proc_read_line(p, line, 4, 5000) == 0);
        H_CHECK_STR(h, line, "abc");
        H_CHECK(h, harness_proc_read_line(p, line, sizeof(line), 5000) == 0);
        H_CHECK_STR(h, line, "next");
    }

    /* No line within the timeout: -1 after about the timeout, and the process keeps running. */
    p = harness_proc_start(h, "silent", silent, NULL);
    if (H_CHECK(h, p != NULL)) {
        t0 = harness_now_ms();
        H_CHECK(h, harness_proc_read_line(p, line, sizeof(line), 300) != 0);
        H_CHECKF(h, harness_now_ms() - t0 >= 280 && harness_now_ms() - t0 < 3000,
                 "read_line timeout took %lld ms", harness_now_ms() - t0);
        H_CHECK(h, harness_proc_running(p));
        H_CHECK_INT(h, harness_proc_wait(p, 100), -1);
        H_CHECK_INT(h, harness_proc_stop(p, 5000), 128 + SIGTERM);
    }

    /* A process that exits without a newline: read_line gives up at once, not at the timeout. */
    p = harness_proc_start(h, "quick", quick, NULL);
    if (H_CHECK(h, p != NULL)) {
        t0 = harness_now_ms();
        H_CHECK(h, harness_proc_read_line(p, line, sizeof(line), 10000) != 0);
        H_CHECKF(h, harness_now_ms() - t0 < 5000, "read_line waited %lld ms for a dead process",
                 harness_now_ms() - t0);
        H_CHECK_INT(h, harness_proc_wait(p, 5000), 3);
        H_CHECK(h, harness_proc_signal(p, SIGTERM) != 0);
        H_CHECK(h, harness_proc_write(p, "x\n") != 0);
    }

    /* SIGTERM ignored: harness_proc_stop falls back to SIGKILL. */
    p = harness_proc_start(h, "stubborn", stubborn, NULL);
    if (H_CHECK(h, p != NULL)) {
        H_CHECK(h, harness_proc_read_line(p, line, sizeof(line), 5000) == 0);
        H_CHECK_INT(h, harness_proc_stop(p, 300), 128 + SIGKILL);
    }

    /* The same name twice gets separate log files. */
    p = harness_proc_start(h, "env", env_argv, env);
    if (H_CHECK(h, p != NULL)) {
        char path[600];
        harness_proc_close_stdin(p);
        H_CHECK(h, harness_proc_read_line(p, line, sizeof(line), 5000) == 0);
        H_CHECK_STR(h, line, "A=one two");
        harness_proc_wait(p, 5000);
        H_CHECK(h, harness_path(h, "env-2.stdout", path, sizeof(path)) != NULL);
        char *out = harness_file_read(path, NULL);
        H_CHECKF(h, out && strstr(out, "got \n"), "env-2.stdout: %s", out ? out : "(missing)");
        free(out);
    }
}

/* ---- HTTP client ---------------------------------------------------------------------------- */

struct echo_ctx {
    char *body;
    size_t len;
};

/* An echo server: status from "/status/<n>" (else 200), body "<method> <url>\n<request body>",
 * request headers reflected as X-Method, X-Content-Type, X-Custom. "/slow" answers after 1.5 s. */
static enum MHD_Result echo_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_size, void **con_cls)
{
    struct echo_ctx *ctx = *con_cls;
    struct MHD_Response *resp;
    const char *ct, *custom;
    unsigned status = 200;
    enum MHD_Result ret;
    size_t n;
    char *out;

    (void)cls;
    (void)version;
    if (!ctx) {
        ctx = calloc(1, sizeof(*ctx));
        if (!ctx)
            return MHD_NO;
        *con_cls = ctx;
        return MHD_YES;
    }
    if (*upload_size) {
        char *nb = realloc(ctx->body, ctx->len + *upload_size);
        if (!nb)
            return MHD_NO;
        memcpy(nb + ctx->len, upload_data, *upload_size);
        ctx->body = nb;
        ctx->len += *upload_size;
        *upload_size = 0;
        return MHD_YES;
    }
    if (!strncmp(url, "/status/", 8))
        status = (unsigned)strtoul(url + 8, NULL, 10);
    if (!strcmp(url, "/slow"))
        harness_sleep_ms(1500);
    n = strlen(method) + strlen(url) + ctx->len + 3;
    out = malloc(n);
    if (!out)
        return MHD_NO;
    snprintf(out, n, "%s %s\n", method, url);
    memcpy(out + strlen(out), ctx->body ? ctx->body : "", ctx->len);
    resp = MHD_create_response_from_buffer(strlen(method) + strlen(url) + 2 + ctx->len, out,
                                           MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(out);
        return MHD_NO;
    }
    ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    custom = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Custom");
    MHD_add_response_header(resp, "X-Method", method);
    MHD_add_response_header(resp, "X-Content-Type", ct ? ct : "(none)");
    if (custom)
        MHD_add_response_header(resp, "X-Custom", custom);
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void echo_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
    struct echo_ctx *ctx = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (ctx) {
        free(ctx->body);
        free(ctx);
    }
    *con_cls = NULL;
}

static void test_http(struct harness *h)
{
    struct harness_http_response r;
    struct MHD_Daemon *d = NULL;
    struct sockaddr_in sa;
    char base[64], url[128];
    int port = harness_free_port();
    int dead_port = harness_free_port();
    long long t0;

    if (!H_CHECK(h, port > 0 && dead_port > 0))
        return;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
                         (uint16_t)port, NULL, NULL, echo_handler, NULL, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, echo_completed, NULL,
                         MHD_OPTION_END);
    if (!H_CHECKF(h, d != NULL, "cannot start the echo server on port %d", port))
        return;
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);

    snprintf(url, sizeof(url), "%s/status/204", base);
    H_CHECK(h, harness_http_wait(url, 204, 5000) == 0);
    H_CHECK(h, harness_http_wait(url, 0, 5000) == 0);

    {
        static const char body[] = "{\"a\": 1}";
        const char *const hdrs[] = {"Content-Type: application/json", "X-Custom: abc def", NULL};
        snprintf(url, sizeof(url), "%s/status/201", base);
        H_CHECK(h, harness_http("POST", url, hdrs, body, strlen(body), 5000, &r) == 0);
        H_CHECK_INT(h, r.status, 201);
        H_CHECK_STR(h, harness_http_header(&r, "x-method"), "POST");
        H_CHECK_STR(h, harness_http_header(&r, "X-CONTENT-TYPE"), "application/json");
        H_CHECK_STR(h, harness_http_header(&r, "X-Custom"), "abc def");
        H_CHECK(h, harness_http_header(&r, "X-Absent") == NULL);
        H_CHECK_STR(h, r.body, "POST /status/201\n{\"a\": 1}");
        H_CHECK_INT(h, r.body_len, strlen("POST /status/201\n{\"a\": 1}"));
        harness_http_response_free(&r);
    }
    {
        /* "Content-Type:" removes the form type libcurl would add to a POST. */
        const char *const hdrs[] = {"Content-Type:", NULL};
        snprintf(url, sizeof(url), "%s/x", base);
        H_CHECK(h, harness_http("POST", url, hdrs, "abc", 3, 5000, &r) == 0);
        H_CHECK_INT(h, r.status, 200);
        H_CHECK_STR(h, harness_http_header(&r, "X-Content-Type"), "(none)");
        H_CHECK_STR(h, r.body, "POST /x\nabc");
        harness_http_response_free(&r);
    }
    snprintf(url, sizeof(url), "%s/status/404", base);
    H_CHECK(h, harness_http("GET", url, NULL, NULL, 0, 5000, &r) == 0);
    H_CHECK_INT(h, r.status, 404);
    H_CHECK_STR(h, r.body, "GET /status/404\n");
    harness_http_response_free(&r);

    H_CHECK(h, harness_http("PUT", url, NULL, "zz", 2, 5000, &r) == 0);
    H_CHECK_STR(h, harness_http_header(&r, "X-Method"), "PUT");
    H_CHECK_STR(h, r.body, "PUT /status/404\nzz");
    harness_http_response_free(&r);

    H_CHECK(h, harness_http("DELETE", url, NULL, NULL, 0, 5000, &r) == 0);
    H_CHECK_STR(h, harness_http_header(&r, "X-Method"), "DELETE");
    harness_http_response_free(&r);

    /* The timeout holds: no status, a reason. */
    snprintf(url, sizeof(url), "%s/slow", base);
    t0 = harness_now_ms();
    H_CHECK(h, harness_http("GET", url, NULL, NULL, 0, 300, &r) != 0);
    H_CHECKF(h, harness_now_ms() - t0 < 1400, "a 300 ms request took %lld ms",
             harness_now_ms() - t0);
    H_CHECK_INT(h, r.status, 0);
    H_CHECK(h, r.error[0] != '\0');
    H_CHECK(h, r.body != NULL && r.body_len == 0);
    harness_http_response_free(&r);

    /* Nothing listens: the wait gives up at its deadline. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", dead_port);
    t0 = harness_now_ms();
    H_CHECK(h, harness_http_wait(url, 0, 300) != 0);
    H_CHECKF(h, harness_now_ms() - t0 < 3000, "http_wait on a dead port took %lld ms",
             harness_now_ms() - t0);

    MHD_stop_daemon(d);
}

/* ---- Standard Webhooks ---------------------------------------------------------------------- */

static void test_webhook(struct harness *h)
{
    /* The published Standard Webhooks example (also in tests/testdata/webhook-signatures.json). */
    static const char body[] = "{\"test\": 2432232314}";
    struct harness_webhook_headers wh;
    char err[256];

    H_CHECKF(h,
             harness_webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                  "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body),
                                  &wh, err, sizeof(err)) == 0,
             "sign: %s", err);
    H_CHECK_STR(h, wh.id, "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek");
    H_CHECK_STR(h, wh.timestamp, "webhook-timestamp: 1614265330");
    H_CHECK_STR(h, wh.signature,
                "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    H_CHECK(h, harness_webhook_sign("whsec_!!!", "id", 1, body, strlen(body), &wh, err,
                                    sizeof(err)) != 0);
}

int main(void)
{
    struct harness *h = harness_init("harness");
    char path[600];

    H_CHECK(h, harness_path(h, "x", path, sizeof(path)) != NULL);
    H_CHECK(h, !strncmp(path, harness_dir(h), strlen(harness_dir(h))));
    test_processes(h);
    test_http(h);
    test_webhook(h);
    return harness_finish(h);
}
