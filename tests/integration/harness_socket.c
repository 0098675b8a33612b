/* Integration-test harness: raw TCP sockets for what curl cannot express (NULs, slowloris, chunks).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

int harness_sock_connect(int port, int timeout_ms)
{
    struct sockaddr_in sa;
    struct pollfd pfd;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1, err = 0, flags;
    socklen_t el = sizeof(err);

    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        pfd.fd = fd;
        pfd.events = POLLOUT;
        if (poll(&pfd, 1, timeout_ms) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0)
            goto fail;
    }
    /* Back to blocking: the helpers below bound every wait with poll(). Small writes leave at
     * once (a slowloris byte must not sit in Nagle's buffer). */
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
        goto fail;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
fail:
    close(fd);
    return -1;
}

int harness_sock_send(int fd, const void *data, size_t len)
{
    const char *p = data;
    size_t off = 0;

    while (off < len) {
        ssize_t w = send(fd, p + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

int harness_sock_send_str(int fd, const char *s)
{
    return harness_sock_send(fd, s, strlen(s));
}

int harness_sock_closed(int fd, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    char buf[4096];

    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        long long left = deadline - harness_now_ms();
        int pr = poll(&pfd, 1, left > 0 ? (int)left : 0);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return 0; /* still open at the deadline */
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
            return 1; /* EOF or reset */
    }
}

/* Parses "HTTP/1.1 <status> ..." and the header lines of @p head (NUL-terminated, without the
 * blank line) into @p resp. @returns 0, or -1 when the status line is malformed. */
static int harness_sock_parse_head(char *head, struct harness_http_response *resp)
{
    char *line = head, *next;
    char *end;
    long st;

    if (strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12)
        return -1;
    st = strtol(line + 9, &end, 10);
    if (end != line + 12 || st < 100 || st > 599)
        return -1;
    resp->status = st;
    next = strstr(line, "\r\n");
    while (next) {
        char *colon, *v;
        struct harness_http_header *nh;
        line = next + 2;
        next = strstr(line, "\r\n");
        if (next)
            *next = '\0';
        colon = strchr(line, ':');
        if (!colon)
            continue;
        v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        nh = realloc(resp->headers, (resp->nheaders + 1) * sizeof(*nh));
        if (!nh)
            return -1;
        resp->headers = nh;
        nh[resp->nheaders].name = strndup(line, (size_t)(colon - line));
        nh[resp->nheaders].value = strdup(v);
        if (!nh[resp->nheaders].name || !nh[resp->nheaders].value) {
            free(nh[resp->nheaders].name);
            free(nh[resp->nheaders].value);
            return -1;
        }
        resp->nheaders++;
    }
    return 0;
}

int harness_sock_response(int fd, int timeout_ms, struct harness_http_response *resp)
{
    long long deadline = harness_now_ms() + timeout_ms;
    char *buf = NULL, *hend = NULL;
    size_t len = 0, cap = 0, body_at = 0;
    long long want = -1; /* body length from Content-Length; -1: until close */
    int rc = -1, eof = 0;

    memset(resp, 0, sizeof(*resp));
    for (;;) {
        if (hend) {
            if (want >= 0 && (long long)(len - body_at) >= want)
                break;
            if (eof)
                break;
        } else if (eof) {
            snprintf(resp->error, sizeof(resp->error), "connection closed after %zu bytes", len);
            goto out;
        }
        long long left = deadline - harness_now_ms();
        struct pollfd pfd = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
            snprintf(resp->error, sizeof(resp->error),
                     "no complete response within %d ms (%zu "
                     "bytes)",
                     timeout_ms, len);
            goto out;
        }
        if (cap - len < 4097) {
            char *nb = realloc(buf, cap ? cap * 2 : 8192);
            if (!nb)
                goto out;
            buf = nb;
            cap = cap ? cap * 2 : 8192;
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            eof = 1;
            continue;
        }
        len += (size_t)r;
        buf[len] = '\0';
        if (!hend && (hend = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl;
            *hend = '\0';
            body_at = (size_t)(hend - buf) + 4;
            if (harness_sock_parse_head(buf, resp) != 0) {
                snprintf(resp->error, sizeof(resp->error), "malformed status line");
                goto out;
            }
            cl = harness_http_header(resp, "Content-Length");
            if (cl)
                want = strtoll(cl, NULL, 10);
        }
    }
    resp->body_len = len - body_at;
    if (want >= 0 && (long long)resp->body_len > want)
        resp->body_len = (size_t)want;
    resp->body = malloc(resp->body_len + 1);
    if (!resp->body)
        goto out;
    memcpy(resp->body, buf + body_at, resp->body_len);
    resp->body[resp->body_len] = '\0';
    rc = 0;
out:
    if (!resp->body)
        resp->body = calloc(1, 1);
    if (rc != 0)
        resp->status = 0;
    free(buf);
    return rc;
}

int harness_sock_request(int port, const void *request, size_t len, int timeout_ms,
                         struct harness_http_response *resp)
{
    int fd = harness_sock_connect(port, timeout_ms);
    int rc;

    if (fd < 0) {
        memset(resp, 0, sizeof(*resp));
        resp->body = calloc(1, 1);
        snprintf(resp->error, sizeof(resp->error), "connect: %s", strerror(errno));
        return -1;
    }
    if (harness_sock_send(fd, request, len) != 0) {
        /* The server may answer early (413, 415) and close while we still send: read it. */
        shutdown(fd, SHUT_WR);
    }
    rc = harness_sock_response(fd, timeout_ms, resp);
    close(fd);
    return rc;
}
