/* Integration-test harness: free loopback ports and a libcurl easy HTTP client. */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

int harness_free_port(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = -1;

    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0; /* the kernel picks a free one */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* The body accumulates here; always NUL-terminated. */
static size_t harness_http_on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct harness_http_response *r = userp;
    size_t n = size * nmemb;
    char *nb = realloc(r->body, r->body_len + n + 1);

    if (!nb)
        return 0; /* makes libcurl fail the transfer */
    memcpy(nb + r->body_len, data, n);
    r->body = nb;
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return n;
}

static void harness_http_headers_clear(struct harness_http_response *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    r->headers = NULL;
    r->nheaders = 0;
}

/* One header line per call. A status line starts a new response (after a 1xx or a redirect),
 * so only the final response's headers are kept. */
static size_t harness_http_on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct harness_http_response *r = userp;
    size_t n = size * nmemb, len = n;
    const char *colon;
    const char *v;
    struct harness_http_header *nh;

    while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n'))
        len--;
    if (len >= 5 && !strncmp(data, "HTTP/", 5)) {
        harness_http_headers_clear(r);
        return n;
    }
    colon = memchr(data, ':', len);
    if (!colon)
        return n;
    v = colon + 1;
    while (v < data + len && (*v == ' ' || *v == '\t'))
        v++;
    nh = realloc(r->headers, (r->nheaders + 1) * sizeof(*nh));
    if (!nh)
        return 0;
    r->headers = nh;
    nh[r->nheaders].name = strndup(data, (size_t)(colon - data));
    nh[r->nheaders].value = strndup(v, (size_t)(data + len - v));
    if (!nh[r->nheaders].name || !nh[r->nheaders].value) {
        free(nh[r->nheaders].name);
        free(nh[r->nheaders].value);
        return 0;
    }
    r->nheaders++;
    return n;
}

int harness_http(const char *method, const char *url, const char *const headers[], const void *body,
                 size_t body_len, long timeout_ms, struct harness_http_response *resp)
{
    CURL *c = NULL;
    struct curl_slist *hl = NULL, *nl;
    CURLcode cc;
    int rc = -1;

    memset(resp, 0, sizeof(*resp));
    resp->body = calloc(1, 1);
    if (!resp->body) {
        snprintf(resp->error, sizeof(resp->error), "out of memory");
        goto out;
    }
    c = curl_easy_init();
    if (!c) {
        snprintf(resp->error, sizeof(resp->error), "curl_easy_init failed");
        goto out;
    }
    /* No "Expect: 100-continue" round trip: tests measure the service, not curl's waiting. */
    hl = curl_slist_append(NULL, "Expect:");
    for (size_t i = 0; hl && headers && headers[i]; i++) {
        nl = curl_slist_append(hl, headers[i]);
        if (!nl) {
            curl_slist_free_all(hl);
            hl = NULL;
            break;
        }
        hl = nl;
    }
    if (!hl) {
        snprintf(resp->error, sizeof(resp->error), "out of memory");
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, resp->error);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, harness_http_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, harness_http_on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, resp);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    } else if (!strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH")) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    }
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);

    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        if (!resp->error[0])
            snprintf(resp->error, sizeof(resp->error), "%s", curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    rc = 0;
out:
    if (c)
        curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    return rc;
}

const char *harness_http_header(const struct harness_http_response *resp, const char *name)
{
    for (size_t i = 0; i < resp->nheaders; i++)
        if (!strcasecmp(resp->headers[i].name, name))
            return resp->headers[i].value;
    return NULL;
}

void harness_http_response_free(struct harness_http_response *resp)
{
    harness_http_headers_clear(resp);
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

int harness_http_wait(const char *url, long want_status, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;

    for (;;) {
        struct harness_http_response r;
        int ok = harness_http("GET", url, NULL, NULL, 0, 1000, &r) == 0 &&
                 (want_status == 0 || r.status == want_status);
        harness_http_response_free(&r);
        if (ok)
            return 0;
        if (harness_now_ms() >= deadline)
            return -1;
        harness_sleep_ms(50);
    }
}
