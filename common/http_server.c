/* libmicrohttpd server helper: route table, capped body buffer, per-request context, suspend/resume. */
#include "http_server.h"

#include "log.h"
#include "problem.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HTTP_MAX_HEADERS 8

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_server_options opts;
    unsigned port;
    atomic_long active;
};

struct http_request {
    struct http_server *srv;
    struct MHD_Connection *conn;
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

    void *user;
    void (*user_free)(void *);
};

static int64_t http_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
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

void http_respond(struct http_request *req, int status, const char *content_type,
                  const char *body, size_t len)
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
    char *s = json_dumps(body, JSON_COMPACT);
    if (!s) {
        http_respond(req, 500, "text/plain", "", 0);
        return;
    }
    http_respond_owned(req, status, "application/json", s, strlen(s));
}

void http_respond_problem(struct http_request *req, const json_t *problem)
{
    json_int_t status = json_integer_value(json_object_get(problem, "status"));
    char *s = json_dumps(problem, JSON_COMPACT);
    if (!s) {
        http_respond(req, 500, "text/plain", "", 0);
        return;
    }
    http_respond_owned(req, status ? (int)status : 500, "application/problem+json", s, strlen(s));
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
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_CONTENT_LENGTH);
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
            http_respond_simple_problem(req, 404, "urn:pm:problem:not-found",
                                        "no such route");
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
                                   const char *method, const char *version,
                                   const char *upload_data, size_t *upload_data_size,
                                   void **con_cls)
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
        *con_cls = req;
        atomic_fetch_add(&srv->active, 1);
        return http_request_begin(srv, req);
    }

    if (req->queued) { /* answered early: discard whatever else the client sends */
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (*upload_data_size) {
        if (req->route->read_body &&
            http_body_append(req, upload_data, *upload_data_size) != 0) {
            *upload_data_size = 0;
            http_payload_too_large(req);
            return http_queue(req);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (req->handler_called) /* resumed: the response was set by whoever resumed us */
        return http_queue(req);

    req->handler_called = 1;
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
    atomic_init(&srv->active, 0);
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
        free(srv);
        return NULL;
    }
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;

    /* A thread pool only when asked for: libmicrohttpd warns about a pool of one. */
    struct MHD_OptionItem pool[2] = {{MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}};
    if (opts->threads > 1)
        pool[0] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)opts->threads,
                                          NULL};

    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, http_access, srv, MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, http_completed, srv, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(opts->conn_timeout_s ? opts->conn_timeout_s : 30),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(opts->conn_limit ? opts->conn_limit : 1024),
        MHD_OPTION_ARRAY, pool, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->daemon) {
        snprintf(errstr, errlen, "cannot listen on %s:%u (address in use or not permitted?)", host,
                 opts->port);
        free(srv);
        return NULL;
    }
    info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : opts->port;
    return srv;
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
    MHD_stop_daemon(srv->daemon);
    free(srv);
}
