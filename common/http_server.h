/* HTTP server helper over libmicrohttpd: route table, capped body, per-request context,
 * suspend/resume. */
#ifndef PM_HTTP_SERVER_H
#define PM_HTTP_SERVER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct http_server;
struct http_request; /* owned by the server from first byte to completion */

enum http_result {
    HTTP_HANDLED,   /* a response was set with http_respond_*: send it now */
    HTTP_SUSPENDED, /* http_request_suspend() was called; another thread will respond + resume */
    HTTP_FAIL,      /* internal failure: the connection is closed without an answer */
    HTTP_CONTINUE,  /* on_headers only: nothing to answer yet, read the body and call the route */
};

typedef enum http_result (*http_handler_fn)(struct http_request *req, void *app);

struct http_route {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* exact path, or a prefix when it ends in a star: "/Patient/" + star */
    http_handler_fn fn;
    int read_body;    /* 1: the body is buffered (up to max_body_bytes) before fn is called */
    const char *name; /* label for metrics and logs; the path when NULL */
};

struct http_server_options {
    const char *host; /* bind address; NULL or "" or "0.0.0.0" = all IPv4 addresses */
    unsigned port;    /* 0 = any free port (see http_server_port) */
    size_t max_body_bytes;
    unsigned
        conn_timeout_s;  /* idle/slow connections are closed after this; suspended ones are not */
    unsigned conn_limit; /* concurrent connections; more are refused */
    unsigned threads;    /* worker threads (epoll each); 0 = 1 */
    const struct http_route *routes;
    size_t nroutes;
    void *app; /* passed to every handler and hook */
    /* Optional: called once the headers are in, before any body byte is read, for a matched
     * route. Return HTTP_HANDLED after http_respond_* to answer early (auth, content type),
     * HTTP_CONTINUE to go on, HTTP_FAIL to close the connection. */
    enum http_result (*on_headers)(struct http_request *req, void *app);
    /* Optional: called when a request is finished (answered or aborted), for metrics. */
    void (*on_complete)(struct http_request *req, void *app);
};

/** @brief Start listening with worker threads. @returns NULL with a reason in @p errstr. */
struct http_server *http_server_start(const struct http_server_options *opts, char *errstr,
                                      size_t errlen);

/** @brief The port actually bound (useful with port 0). */
unsigned http_server_port(const struct http_server *srv);

/** @brief Stop accepting new connections; requests already in progress continue. */
void http_server_quiesce(struct http_server *srv);

/** @returns the number of requests that are in progress (accepted, not yet completed). */
long http_server_active(const struct http_server *srv);

/** @brief Stop and free. Every suspended request must have been resumed first. */
void http_server_stop(struct http_server *srv);

/* --- request accessors (valid until completion) --- */
const char *http_request_method(const struct http_request *req);
const char *http_request_path(const struct http_request *req);
/** @returns the route's name ("unmatched" when no route matched). */
const char *http_request_route(const struct http_request *req);
/** @returns a request header (case-insensitive name) or NULL. */
const char *http_request_header(struct http_request *req, const char *name);
/** @returns a query-string argument (decoded) or NULL. */
const char *http_request_query(struct http_request *req, const char *name);
/** @returns the buffered body (NUL-terminated for convenience; may contain NULs) and its length. */
const char *http_request_body(const struct http_request *req, size_t *len);
/** @returns the status set by http_respond_* (0 while none). */
int http_request_status(const struct http_request *req);
/** @returns microseconds since the request's first byte. */
int64_t http_request_elapsed_us(const struct http_request *req);

/** @brief Attach handler state that survives suspend/resume; @p free_fn runs at completion. */
void http_request_set_user(struct http_request *req, void *user, void (*free_fn)(void *));
void *http_request_user(const struct http_request *req);

/* --- answering: these copy what they are given; the last call before queueing wins --- */

/** @brief Add a response header (up to 8 per request). */
void http_respond_header(struct http_request *req, const char *name, const char *value);
/** @brief Set status, content type and body (copied). */
void http_respond(struct http_request *req, int status, const char *content_type, const char *body,
                  size_t len);
/** @brief Set status and a JSON body (serialised compactly; @p body is not consumed). */
void http_respond_json(struct http_request *req, int status, const json_t *body);
/** @brief Set an RFC 9457 problem document (application/problem+json); @p problem not consumed. */
void http_respond_problem(struct http_request *req, const json_t *problem);

/**
 * @brief Suspend the connection: no thread waits; it is resumed by http_request_resume.
 *
 * Call it from the handler *before* starting the asynchronous work whose completion resumes
 * it, so that completion can never race ahead of the suspension. Then return HTTP_SUSPENDED.
 */
void http_request_suspend(struct http_request *req);

/**
 * @brief Resume a suspended request whose response has been set; any thread may call it.
 *        The request may be completed and freed at once: do not touch @p req afterwards.
 */
void http_request_resume(struct http_request *req);

#endif
