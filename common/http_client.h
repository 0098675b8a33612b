/* Outbound HTTP: blocking calls from any thread or fiber, on libcurl multi handles. */
#ifndef PM_HTTP_CLIENT_H
#define PM_HTTP_CLIENT_H

#include <stddef.h>

struct http_client;
struct metrics_registry;

struct http_client_options {
    long timeout_ms;         /* whole-request timeout, always set (PM_HTTP_TIMEOUT_MS) */
    long connect_timeout_ms; /* 0 = min(timeout_ms, 10000) */
    const char *user_agent;  /* NULL = "pm-bridge/<version>" */
    long max_connections;    /* connection cache size; 0 = 512 */
    /* When set, <prefix>_outbound_requests_total{target,status} and
     * <prefix>_outbound_request_duration_seconds{target} are kept there. */
    struct metrics_registry *metrics;
    const char *metrics_prefix; /* e.g. "pm_deliver" */
};

/* One request. Everything is borrowed for the duration of the call. */
struct http_call {
    const char *method; /* "GET", "POST", ... */
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
    const char *body;           /* may be NULL */
    size_t body_len;
    const char *basic_user; /* HTTP Basic auth when not NULL (Twilio) */
    const char *basic_password;
    long timeout_ms;    /* 0 = the client's default */
    const char *target; /* metrics label: "canvas-fhir", "canvas-token", "webhook", ... */
};

/* The answer. status 0 means no HTTP answer: see curl_code / error. */
struct http_reply {
    long status;
    int curl_code;   /* CURLcode; 0 when an HTTP answer arrived */
    int timed_out;   /* curl_code was a timeout */
    char error[256]; /* curl's message for transport failures (no request data in it) */
    char *body;      /* NUL-terminated (malloc'd), may be empty */
    size_t body_len;
    char *headers;        /* raw header block of the final answer (malloc'd) */
    double total_s;       /* time the exchange took */
    long new_connections; /* connections this call opened (0 when it reused a cached one) */
};

/** @brief Start the client thread. @returns NULL with a reason in @p errstr. */
struct http_client *http_client_new(const struct http_client_options *opts, char *errstr,
                                    size_t errlen);

/**
 * @brief Perform @p call and wait for it, from any thread; many may wait at once. TLS
 *        certificates are always verified; redirects are not followed.
 *
 * Calls from ordinary threads go to the client's own thread and its multi handle (one connection
 * cache for them all). A call from a fiber (fiber.h) is driven by the fiber's own pool thread on
 * a multi handle of that thread (a connection cache per thread, each up to max_connections),
 * which that thread watches between fibers; the fiber waits without holding up the others.
 * @returns 0 when an HTTP answer arrived (any status), -1 on a transport failure (connect,
 *          timeout, TLS...); @p out is filled either way and must be freed with http_reply_free.
 */
int http_client_do(struct http_client *c, const struct http_call *call, struct http_reply *out);

/** @brief Free what http_client_do allocated in @p r (safe on a zeroed reply). */
void http_reply_free(struct http_reply *r);

/**
 * @brief A response header's value (case-insensitive name), trimmed, copied into @p out.
 * @returns 0 when present, -1 otherwise.
 */
int http_reply_header(const struct http_reply *r, const char *name, char *out, size_t outlen);

/**
 * @brief Retry-After in milliseconds (delta-seconds or an HTTP date), or -1 when absent or
 *        unparseable. Never negative otherwise.
 */
long http_reply_retry_after_ms(const struct http_reply *r);

/**
 * @brief Stop the client thread and free. Calls waiting for the client thread fail; calls made by
 *        fibers finish on their own threads (or time out). Call it only after the fiber pools
 *        whose fibers made calls have been joined: their threads free their multi handles as they
 *        end, and this waits for that.
 */
void http_client_free(struct http_client *c);

#endif
