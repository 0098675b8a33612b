/* Canvas FHIR client: OAuth client-credentials token sharing, reads, searches, creates, errors. */
#ifndef PM_FHIR_H
#define PM_FHIR_H

#include <jansson.h>
#include <stddef.h>

struct http_client;
struct fhir_client;

struct fhir_options {
    const char *base_url;      /* PM_CANVAS_FHIR_URL, no trailing slash needed */
    const char *token_url;     /* PM_CANVAS_TOKEN_URL */
    const char *client_id;     /* borrowed for the client's lifetime */
    const char *client_secret; /* borrowed; never logged */
    int refresh_margin_s;      /* renew this long before expires_in runs out (default 60) */
};

/* How a failed call should be treated by the caller (SPEC §6 "Outcomes"). */
enum fhir_error_kind {
    FHIR_OK = 0,
    FHIR_TRANSIENT, /* 408, 429, 5xx, timeouts, connection errors, token endpoint unavailable */
    FHIR_PERMANENT, /* other 4xx (after one token refresh on 401) */
};

struct fhir_error {
    enum fhir_error_kind kind;
    long status;             /* HTTP status, 0 for transport failures */
    long retry_after_ms;     /* from Retry-After, -1 when none */
    char correlation_id[80]; /* Canvas's fumage-correlation-id of the failed answer */
    char message[512];       /* "<METHOD> <Type>: <status> <OperationOutcome text>" — no PHI */
};

/**
 * @brief A client sharing @p http. One token is fetched on first use and reused until
 *        refresh_margin_s before it expires; concurrent callers share a single refresh.
 * @returns NULL with a reason in @p errstr.
 */
struct fhir_client *fhir_client_new(struct http_client *http, const struct fhir_options *opts,
                                    char *errstr, size_t errlen);
/** @brief Free the client (the http_client it uses is the caller's). Safe on NULL. */
void fhir_client_free(struct fhir_client *f);

/**
 * @brief GET <base>/<type>/<id>.
 * @returns the resource (new reference) or NULL with @p err filled.
 */
json_t *fhir_read(struct fhir_client *f, const char *type, const char *id, struct fhir_error *err);

/**
 * @brief GET <base>/<type>?<query> (query already URL-encoded, without '?').
 * @returns a JSON array of the entries' resources (empty when the bundle has no "entry"), or
 *          NULL with @p err filled. Only the first page is read (callers ask for small results).
 */
json_t *fhir_search(struct fhir_client *f, const char *type, const char *query,
                    struct fhir_error *err);

/**
 * @brief POST <base>/<type> with @p resource. Canvas answers 201 with the literal body null and
 *        the id only in Location (".../<type>/<id>/_history/1", any scheme/host).
 * @returns 0 with the new id in @p id_out, or -1 with @p err filled (a 201 without a parsable
 *          Location is a permanent error).
 */
int fhir_create(struct fhir_client *f, const char *type, const json_t *resource, char *id_out,
                size_t idlen, struct fhir_error *err);

/**
 * @brief The resources of a search Bundle's entries (search.mode "outcome" entries left out);
 *        a Bundle without "entry" — Canvas's empty result — gives an empty array.
 * @returns a new array, or NULL with a constant reason in @p why when @p body is not a Bundle.
 */
json_t *fhir_bundle_resources(const char *body, size_t len, const char **why);

/**
 * @brief Append an OperationOutcome's issues (" <code>: <details.text>", "; "-separated) to the
 *        NUL-terminated @p msg (of @p msglen bytes); the first issue code made only of a-z, '-'
 *        and '_' goes to @p code. Anything that is not an OperationOutcome appends nothing.
 */
void fhir_outcome_describe(const char *body, size_t len, char *msg, size_t msglen, char *code,
                           size_t codelen);

/** @returns how many token requests this client has made (metrics, tests). */
long fhir_token_requests(struct fhir_client *f);

/**
 * @brief URL-encode @p s (RFC 3986 unreserved characters kept) into @p out.
 * @returns 0, or -1 when @p out is too small.
 */
int fhir_url_encode(const char *s, char *out, size_t outlen);

#endif
