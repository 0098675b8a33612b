/* libmicrohttpd server helper: route table, capped body buffer, per-request context,
 * suspend/resume. */
#include "http_server.h"

#include "json_text.h"
#include "log.h"
#include "problem.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HTTP_MAX_HEADERS 8

/*
 * Slow clients. libmicrohttpd's connection timeout counts inactivity only: a client sending one
 * byte a second (slowloris) is never idle, so it would hold its connection (and a slot of
 * conn_limit) for as long as it likes. A watchdog thread therefore gives every request
 * conn_timeout_s to arrive complete, counted from the connection's start or from the previous
 * answer on it, and shuts down the socket of one that is late (libmicrohttpd then closes the
 * connection as if the client had gone). Once the handler runs the request is no longer timed:
 * a request suspended while waiting for Kafka is never cut.
 */
struct http_conn {
    struct http_conn *prev, *next;
    int fd;
    int64_t since_us; /* when the current request's time to arrive began */
    int reading;      /* 1 while a request is still arriving (timed), 0 once its handler ran */
    int cut;          /* shut down by the watchdog */
};

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_server_options opts;
    unsigned port;
    atomic_long active;

    pthread_mutex_t conns_lock; /* guards conns and every http_conn's fields */
    pthread_cond_t conns_cond;  /* wakes the watchdog for stopping */
    struct http_conn *conns;
    pthread_t watchdog;
    int watchdog_running;
    int stopping;
};

struct http_request {
    struct http_server *srv;
    struct MHD_Connection *conn;
    struct http_conn *hc; /* the watchdog's entry for conn; NULL when untracked */
    const struct http_route *route;
    const char *method; /* MHD's; valid until completion */
    const char *path;
    int64_t start_us;

    char *body; /* NUL-terminated; capped at max_body_bytes */
    size_t body_len;
    size_t body_cap;

    int status; /* 0 until a response is set */
    char *resp_body;
    size_t resp_len;
    char resp_ctype[96];
    char *hdr_name[HTTP_MAX_HEADERS];
    char *hdr_value[HTTP_MAX_HEADERS];
    int nhdr;

    int handler_called; /* the route handler ran (a later call is a resume) */
    int queued;         /* a response went to MHD: ignore anything that follows */
    int too_large;      /* the body grew past max_body_bytes: the rest is dropped, then 413 */

    void *user;
    void (*user_free)(void *);
};

static int64_t http_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- slow clients (see struct http_conn) --- */

/* Marks @p hc as reading a new request from now on (@p reading 1) or as done reading (0). */
static void http_conn_mark(struct http_server *srv, struct http_conn *hc, int reading)
{
    if (!hc)
        return;
    pthread_mutex_lock(&srv->conns_lock);
    hc->reading = reading;
    hc->since_us = http_now_us();
    pthread_mutex_unlock(&srv->conns_lock);
}

static void http_notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                                   enum MHD_ConnectionNotificationCode code)
{
    struct http_server *srv = cls;
    struct http_conn *hc = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        hc = ci ? calloc(1, sizeof(*hc)) : NULL;
        if (!hc)
            return; /* untracked: libmicrohttpd's idle timeout still applies */
        hc->fd = ci->connect_fd;
        hc->since_us = http_now_us();
        hc->reading = 1;
        pthread_mutex_lock(&srv->conns_lock);
        hc->next = srv->conns;
        if (srv->conns)
            srv->conns->prev = hc;
        srv->conns = hc;
        pthread_mutex_unlock(&srv->conns_lock);
        *socket_context = hc;
        return;
    }
    if (!hc)
        return;
    /* Closed: unlinked before libmicrohttpd closes the fd, so the watchdog (which shuts sockets
     * down only under conns_lock) can never touch a reused descriptor. */
    pthread_mutex_lock(&srv->conns_lock);
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        srv->conns = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    pthread_mutex_unlock(&srv->conns_lock);
    free(hc);
    *socket_context = NULL;
}

static void *http_watchdog_main(void *arg)
{
    struct http_server *srv = arg;
    prctl(PR_SET_NAME, "pm-watchdog", 0, 0, 0);
    int64_t limit_us = (int64_t)srv->opts.conn_timeout_s * 1000000;
    int64_t tick_us = limit_us / 8 < 250000 ? limit_us / 8 : 250000;

    pthread_mutex_lock(&srv->conns_lock);
    while (!srv->stopping) {
        int64_t now = http_now_us();
        struct timespec until;
        for (struct http_conn *hc = srv->conns; hc; hc = hc->next) {
            if (hc->reading && !hc->cut && now - hc->since_us > limit_us) {
                shutdown(hc->fd, SHUT_RDWR);
                hc->cut = 1;
            }
        }
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)(tick_us % 1000000) * 1000;
        until.tv_sec += (time_t)(tick_us / 1000000) + until.tv_nsec / 1000000000;
        until.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&srv->conns_cond, &srv->conns_lock, &until);
    }
    pthread_mutex_unlock(&srv->conns_lock);
    return NULL;
}

/* --- response building --- */

static void http_response_clear_headers(struct http_request *req)
{
    for (int i = 0; i < req->nhdr; i++) {
        free(req->hdr_name[i]);
        free(req->hdr_value[i]);
    }
    req->nhdr = 0;
}

void http_respond_header(struct http_request *req, const char *name, const char *value)
{
    if (req->nhdr >= HTTP_MAX_HEADERS)
        return;
    req->hdr_name[req->nhdr] = strdup(name);
    req->hdr_value[req->nhdr] = strdup(value);
    if (!req->hdr_name[req->nhdr] || !req->hdr_value[req->nhdr]) {
        free(req->hdr_name[req->nhdr]);
        free(req->hdr_value[req->nhdr]);
        return;
    }
    req->nhdr++;
}

void http_respond(struct http_request *req, int status, const char *content_type, const char *body,
                  size_t len)
{
    free(req->resp_body);
    req->resp_body = NULL;
    req->resp_len = 0;
    if (len) {
        req->resp_body = malloc(len);
        if (!req->resp_body) {
            status = 500;
            len = 0;
        } else {
            memcpy(req->resp_body, body, len);
        }
    }
    req->resp_len = len;
    req->status = status;
    snprintf(req->resp_ctype, sizeof(req->resp_ctype), "%s", content_type ? content_type : "");
}

/* Takes ownership of @p body (malloc'd). */
static void http_respond_owned(struct http_request *req, int status, const char *content_type,
                               char *body, size_t len)
{
    free(req->resp_body);
    req->resp_body = body;
    req->resp_len = len;
    req->status = status;
    snprintf(req->resp_ctype, sizeof(req->resp_ctype), "%s", content_type);
}

void http_respond_json(struct http_request *req, int status, const json_t *body)
{
    size_t len = 0;
    char *s = json_text_dump(body, JSON_COMPACT, &len);
    if (!s) {
        http_respond(req, 500, "text/plain", "", 0);
        return;
    }
    http_respond_owned(req, status, "application/json", s, len);
}

void http_respond_problem(struct http_request *req, const json_t *problem)
{
    json_int_t status = json_integer_value(json_object_get(problem, "status"));
    size_t len = 0;
    char *s = json_text_dump(problem, JSON_COMPACT, &len);
    if (!s) {
        http_respond(req, 500, "text/plain", "", 0);
        return;
    }
    http_respond_owned(req, status ? (int)status : 500, "application/problem+json", s, len);
}

/* Answers with a problem document built here (no request data in it). */
static void http_respond_simple_problem(struct http_request *req, int status, const char *type,
                                        const char *detail)
{
    json_t *p = problem_new(status, type, detail);
    if (p)
        http_respond_problem(req, p);
    else
        http_respond(req, status, "text/plain", "", 0);
    json_decref(p);
}

/* Hands the stored response to MHD. @returns MHD_YES/MHD_NO as the access handler must. */
static enum MHD_Result http_queue(struct http_request *req)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (!req->status) /* a handler said HANDLED without answering: a bug, not a client error */
        http_respond_simple_problem(req, 500, NULL, "no response was produced");
    resp = MHD_create_response_from_buffer(req->resp_len, req->resp_body, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        return MHD_NO;
    req->resp_body = NULL; /* owned by resp now */
    if (req->resp_ctype[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, req->resp_ctype);
    for (int i = 0; i < req->nhdr; i++)
        MHD_add_response_header(resp, req->hdr_name[i], req->hdr_value[i]);
    http_response_clear_headers(req);
    ret = MHD_queue_response(req->conn, (unsigned)req->status, resp);
    MHD_destroy_response(resp);
    req->queued = 1;
    return ret;
}

/* --- request accessors --- */

const char *http_request_method(const struct http_request *req)
{
    return req->method;
}

const char *http_request_path(const struct http_request *req)
{
    return req->path;
}

const char *http_request_route(const struct http_request *req)
{
    if (!req->route)
        return "unmatched";
    return req->route->name ? req->route->name : req->route->path;
}

const char *http_request_header(struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_request_query(struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_request_body(const struct http_request *req, size_t *len)
{
    *len = req->body_len;
    return req->body ? req->body : "";
}

int http_request_status(const struct http_request *req)
{
    return req->status;
}

int64_t http_request_elapsed_us(const struct http_request *req)
{
    return http_now_us() - req->start_us;
}

void http_request_set_user(struct http_request *req, void *user, void (*free_fn)(void *))
{
    req->user = user;
    req->user_free = free_fn;
}

void *http_request_user(const struct http_request *req)
{
    return req->user;
}

void http_request_suspend(struct http_request *req)
{
    MHD_suspend_connection(req->conn);
}

void http_request_resume(struct http_request *req)
{
    MHD_resume_connection(req->conn);
}

/* --- routing --- */

static int http_path_matches(const char *pattern, const char *path)
{
    size_t n = strlen(pattern);
    if (n && pattern[n - 1] == '*')
        return strncmp(pattern, path, n - 1) == 0;
    return strcmp(pattern, path) == 0;
}

/* Finds the route for method+path; when only the path matches, fills @p allow for a 405. */
static const struct http_route *http_route_find(const struct http_server *srv, const char *method,
                                                const char *path, char *allow, size_t allowlen)
{
    size_t used = 0;
    allow[0] = '\0';
    for (size_t i = 0; i < srv->opts.nroutes; i++) {
        const struct http_route *r = &srv->opts.routes[i];
        if (!http_path_matches(r->path, path))
            continue;
        if (strcmp(r->method, method) == 0)
            return r;
        if (!strstr(allow, r->method)) {
            int n = snprintf(allow + used, allowlen - used, "%s%s", used ? ", " : "", r->method);
            if (n > 0 && (size_t)n < allowlen - used)
                used += (size_t)n;
        }
    }
    return NULL;
}

/* Content-Length, when present and well-formed; -1 otherwise. */
static long long http_content_length(struct MHD_Connection *conn)
{
    const char *v =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    char *end;
    long long n;
    if (!v || !*v)
        return -1;
    n = strtoll(v, &end, 10);
    if (*end || n < 0)
        return -1;
    return n;
}

static int http_body_append(struct http_request *req, const char *data, size_t len)
{
    size_t max = req->srv->opts.max_body_bytes;
    if (req->body_len + len > max)
        return -1;
    if (req->body_len + len + 1 > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 4096;
        while (cap < req->body_len + len + 1)
            cap *= 2;
        if (cap > max + 1)
            cap = max + 1;
        char *nb = realloc(req->body, cap);
        if (!nb)
            return -1;
        req->body = nb;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, len);
    req->body_len += len;
    req->body[req->body_len] = '\0';
    return 0;
}

static void http_payload_too_large(struct http_request *req)
{
    char detail[128];
    snprintf(detail, sizeof(detail), "the body is larger than the limit of %zu bytes",
             req->srv->opts.max_body_bytes);
    http_respond_simple_problem(req, 413, "urn:pm:problem:payload-too-large", detail);
    /* The rest of the upload is not read: the connection cannot be reused. */
    http_respond_header(req, "Connection", "close");
}

/* First callback of a request: match the route and decide anything that needs no body. */
static enum MHD_Result http_request_begin(struct http_server *srv, struct http_request *req)
{
    char allow[128];

    req->route = http_route_find(srv, req->method, req->path, allow, sizeof(allow));
    if (!req->route) {
        if (allow[0]) {
            http_respond_simple_problem(req, 405, "urn:pm:problem:method-not-allowed",
                                        "this method is not allowed on this path");
            http_respond_header(req, "Allow", allow);
        } else {
            http_respond_simple_problem(req, 404, "urn:pm:problem:not-found", "no such route");
        }
        return http_queue(req);
    }
    if (req->route->read_body) {
        long long cl = http_content_length(req->conn);
        /* Decided from Content-Length before reading, so an oversized upload is never buffered
         * (and a client using Expect: 100-continue never sends it). */
        if (cl >= 0 && (unsigned long long)cl > srv->opts.max_body_bytes) {
            http_payload_too_large(req);
            return http_queue(req);
        }
        if (cl > 0) {
            req->body = malloc((size_t)cl + 1);
            if (!req->body)
                return MHD_NO;
            req->body_cap = (size_t)cl + 1;
            req->body[0] = '\0';
        }
    }
    if (srv->opts.on_headers) {
        enum http_result r = srv->opts.on_headers(req, srv->opts.app);
        if (r == HTTP_FAIL)
            return MHD_NO;
        if (r == HTTP_HANDLED)
            return http_queue(req);
    }
    return MHD_YES;
}

static enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    struct http_server *srv = cls;
    struct http_request *req = *con_cls;
    (void)version;

    if (!req) {
        req = calloc(1, sizeof(*req));
        if (!req)
            return MHD_NO;
        req->srv = srv;
        req->conn = conn;
        req->method = method;
        req->path = url;
        req->start_us = http_now_us();
        {
            const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
            req->hc = ci ? ci->socket_context : NULL;
        }
        *con_cls = req;
        atomic_fetch_add(&srv->active, 1);
        return http_request_begin(srv, req);
    }

    if (req->queued) { /* answered early: discard whatever else the client sends */
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (*upload_data_size) {
        if (req->route->read_body && !req->too_large &&
            http_body_append(req, upload_data, *upload_data_size) != 0) {
            /* Only a chunked upload gets here (a Content-Length over the limit was answered
             * before the body). libmicrohttpd takes a response only before the body or after
             * all of it, so the buffer goes now, the rest is read and dropped, and the 413
             * follows the last chunk; the slow-client watchdog cuts one that never ends. */
            req->too_large = 1;
            free(req->body);
            req->body = NULL;
            req->body_len = req->body_cap = 0;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->too_large) {
        http_payload_too_large(req);
        return http_queue(req);
    }

    if (req->handler_called) /* resumed: the response was set by whoever resumed us */
        return http_queue(req);

    req->handler_called = 1;
    http_conn_mark(srv, req->hc, 0); /* all of it arrived in time */
    switch (req->route->fn(req, srv->opts.app)) {
    case HTTP_HANDLED:
        return http_queue(req);
    case HTTP_SUSPENDED:
        return MHD_YES;
    case HTTP_FAIL:
    case HTTP_CONTINUE:
    default:
        return MHD_NO;
    }
}

static void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct http_request *req = *con_cls;
    (void)conn;
    (void)toe;

    if (!req)
        return;
    http_conn_mark(srv, req->hc, 1); /* the next request on this connection starts its clock */
    if (srv->opts.on_complete)
        srv->opts.on_complete(req, srv->opts.app);
    if (req->user_free)
        req->user_free(req->user);
    http_response_clear_headers(req);
    free(req->resp_body);
    free(req->body);
    free(req);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->active, 1);
}

/* MHD's own diagnostics: only the format string is logged, never formatted request data. */
static void http_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    (void)ap;
    log_debug("libmicrohttpd", LOG_S("error", fmt));
}

struct http_server *http_server_start(const struct http_server_options *opts, char *errstr,
                                      size_t errlen)
{
    struct http_server *srv = calloc(1, sizeof(*srv));
    struct addrinfo hints, *ai = NULL;
    char portstr[16];
    const char *host = opts->host;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    const union MHD_DaemonInfo *info;
    int rc;

    if (!srv) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    srv->opts = *opts;
    if (!srv->opts.conn_timeout_s)
        srv->opts.conn_timeout_s = 30;
    atomic_init(&srv->active, 0);
    pthread_mutex_init(&srv->conns_lock, NULL);
    pthread_cond_init(&srv->conns_cond, NULL);
    if (!host || !*host)
        host = "0.0.0.0";

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof(portstr), "%u", opts->port);
    rc = getaddrinfo(host, portstr, &hints, &ai);
    if (rc != 0 || !ai) {
        snprintf(errstr, errlen, "cannot resolve listen address %s: %s", host, gai_strerror(rc));
        goto fail;
    }
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;

    /* A thread pool only when asked for: libmicrohttpd warns about a pool of one. */
    struct MHD_OptionItem pool[2] = {{MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}};
    if (opts->threads > 1)
        pool[0] =
            (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)opts->threads, NULL};

    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, http_access, srv, MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED, http_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, http_notify_connection, srv, MHD_OPTION_CONNECTION_TIMEOUT,
        srv->opts.conn_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(opts->conn_limit ? opts->conn_limit : 1024),
        /* 16 KiB per connection (headers and libmicrohttpd's own buffers; bodies are ours) instead
         * of the 32 KiB default that is cleared for every keep-alive request. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
        /* No SO_REUSEPORT: a second process on the same port must fail to start, not silently
         * take half of the connections. SO_REUSEADDR (libmicrohttpd's default) still allows a
         * quick restart. */
        MHD_OPTION_ARRAY, pool, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->daemon) {
        snprintf(errstr, errlen, "cannot listen on %s:%u (address in use or not permitted?)", host,
                 opts->port);
        goto fail;
    }
    if (pthread_create(&srv->watchdog, NULL, http_watchdog_main, srv) != 0) {
        snprintf(errstr, errlen, "cannot start the slow-client watchdog thread");
        MHD_stop_daemon(srv->daemon);
        goto fail;
    }
    srv->watchdog_running = 1;
    info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : opts->port;
    return srv;

fail:
    pthread_cond_destroy(&srv->conns_cond);
    pthread_mutex_destroy(&srv->conns_lock);
    free(srv);
    return NULL;
}

unsigned http_server_port(const struct http_server *srv)
{
    return srv->port;
}

void http_server_quiesce(struct http_server *srv)
{
    MHD_socket s = MHD_quiesce_daemon(srv->daemon);
    if (s != MHD_INVALID_SOCKET)
        close(s);
}

long http_server_active(const struct http_server *srv)
{
    return atomic_load(&((struct http_server *)srv)->active);
}

void http_server_stop(struct http_server *srv)
{
    if (!srv)
        return;
    if (srv->watchdog_running) {
        pthread_mutex_lock(&srv->conns_lock);
        srv->stopping = 1;
        pthread_cond_signal(&srv->conns_cond);
        pthread_mutex_unlock(&srv->conns_lock);
        pthread_join(srv->watchdog, NULL);
    }
    MHD_stop_daemon(srv->daemon); /* closes what is left; each close unlinks its http_conn */
    pthread_cond_destroy(&srv->conns_cond);
    pthread_mutex_destroy(&srv->conns_lock);
    free(srv);
}
