/* pm-sandbox internals: targets, answers, the resource store, each party's logic, recording,
 * faults and deferred answers. The pure parts (validation, bundles, E.164) are callable from tests.
 */
#ifndef PM_SANDBOX_H
#define PM_SANDBOX_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "webhook_sig.h"

struct http_request;
struct http_server;

/* ---------------------------------------------------------------------------------------------
 * Targets: the outside parties the sandbox stands in for.
 * ------------------------------------------------------------------------------------------- */

enum sandbox_target {
    SANDBOX_TARGET_TOKEN,
    SANDBOX_TARGET_FHIR,
    SANDBOX_TARGET_TWILIO,
    SANDBOX_TARGET_SENDGRID,
    SANDBOX_TARGET_WEBHOOK,
    SANDBOX_TARGET_COUNT,
};

/** @returns "token", "fhir", "twilio", "sendgrid" or "webhook". */
const char *sandbox_target_name(enum sandbox_target t);

/** @brief Parse a target name. @returns 0, or -1 when @p name is not one. */
int sandbox_target_parse(const char *name, enum sandbox_target *out);

/* ---------------------------------------------------------------------------------------------
 * Configuration: filled once by main, read-only afterwards.
 * ------------------------------------------------------------------------------------------- */

struct sandbox_config {
    char host[256];
    unsigned port;
    const char *fixtures_path; /* NULL: the built-in demo fixtures */
    const char *client_id;
    char *client_secret; /* malloc'd */
    long token_ttl_s;
    int has_webhook_key;
    struct webhook_key webhook_key;
    const char *twilio_account_sid;
    char *twilio_auth_token; /* malloc'd */
    char *sendgrid_api_key;  /* malloc'd */
    long record_max;
    unsigned threads;
};

/* ---------------------------------------------------------------------------------------------
 * Answers: what a party decided to send back, built before it is sent (possibly later, by the
 * timer thread) so that recording, faults and latency are handled in one place.
 * ------------------------------------------------------------------------------------------- */

#define SANDBOX_MAX_HEADERS 6

struct sandbox_header {
    char name[40];
    char value[200];
};

struct sandbox_answer {
    int status;
    const char *content_type; /* a static string; NULL = no Content-Type */
    char *body;               /* malloc'd and NUL-terminated, or NULL for an empty body */
    size_t len;
    size_t nheaders;
    struct sandbox_header headers[SANDBOX_MAX_HEADERS];
};

/** @brief Set status and a compact JSON body; takes the reference to @p body (NULL = "null"). */
void sandbox_answer_json(struct sandbox_answer *a, int status, json_t *body);

/** @brief Set status and a malloc'd body, which @p a takes over (@p ctype static or NULL). */
void sandbox_answer_take(struct sandbox_answer *a, int status, const char *ctype, char *body,
                         size_t len);

/** @brief Set status and a raw body (copied; @p ctype static or NULL). */
void sandbox_answer_raw(struct sandbox_answer *a, int status, const char *ctype, const char *body,
                        size_t len);

/** @brief Add or replace a response header (silently dropped past SANDBOX_MAX_HEADERS). */
void sandbox_answer_header(struct sandbox_answer *a, const char *name, const char *value);

/** @returns the value of header @p name (case-insensitive) or NULL. */
const char *sandbox_answer_get_header(const struct sandbox_answer *a, const char *name);

/** @brief Free the body and reset to an empty answer. */
void sandbox_answer_clear(struct sandbox_answer *a);

/** @brief Hand the answer to the HTTP server (copied there). */
void sandbox_answer_send(struct http_request *req, const struct sandbox_answer *a);

/* ---------------------------------------------------------------------------------------------
 * Small helpers (sandbox_util.c).
 * ------------------------------------------------------------------------------------------- */

/** @brief A random (version 4) UUID, dashed, lower-case, into @p out (37 bytes). */
void sandbox_uuid(char out[37]);

/** @brief @p n random characters from [A-Za-z0-9] then a NUL (@p out holds n + 1 bytes). */
void sandbox_random_alnum(char *out, size_t n);

/** @brief @p n random lower-case hex digits then a NUL (@p out holds n + 1 bytes). */
void sandbox_random_hex(char *out, size_t n);

/** @brief Now as a FHIR instant with microseconds, "2026-03-02T15:04:05.123456+00:00". */
void sandbox_now_fhir(char *out, size_t len);

/** @returns milliseconds on the monotonic clock. */
int64_t sandbox_now_ms(void);

/**
 * @brief The first value of @p name in an application/x-www-form-urlencoded body, decoded
 *        ('+' is a space, %XX a byte).
 * @returns a malloc'd string, or NULL when the field is absent.
 */
char *sandbox_form_get(const char *body, size_t len, const char *name);

/**
 * @brief Append "name=value" (value percent-encoded, '&' before it unless first) to @p buf.
 * @returns 0, or -1 when @p cap is too small.
 */
int sandbox_query_append(char *buf, size_t cap, const char *name, const char *value);

/** @returns the number of UTF-8 code points in @p s (invalid bytes count one each). */
size_t sandbox_utf8_chars(const char *s, size_t len);

/** @returns a JSON string of @p s, invalid UTF-8 bytes replaced by U+FFFD. */
json_t *sandbox_json_string_lossy(const char *s, size_t len);

/** @returns 1 when @p s starts with @p prefix. */
int sandbox_starts_with(const char *s, const char *prefix);

/* ---------------------------------------------------------------------------------------------
 * FHIR OperationOutcome results (sandbox_fhir_validate.c).
 * ------------------------------------------------------------------------------------------- */

struct sandbox_outcome {
    int status;       /* 400, 404, 405, 422, ... */
    const char *code; /* "invalid", "business-rule", "not-found", ... */
    char text[320];
};

/** @brief Fill @p o (printf-style text). */
void sandbox_outcome_set(struct sandbox_outcome *o, int status, const char *code, const char *fmt,
                         ...) __attribute__((format(printf, 4, 5)));

/** @returns a new OperationOutcome
 * {"resourceType","issue":[{"severity":"error","code","details":{"text"}}]}. */
json_t *sandbox_outcome_json(const char *code, const char *text);

/* ---------------------------------------------------------------------------------------------
 * Resource store (sandbox_store.c): FHIR resources by type and id, thread-safe. Readers get deep
 * copies, so nothing handed out is shared with another thread.
 * ------------------------------------------------------------------------------------------- */

/* Sandbox-only marker on a Practitioner: searched without include-non-schedulable-practitioners.
 * Set from the fixtures' "schedulable_practitioners" or on a seeded resource; never in answers. */
#define SANDBOX_SCHEDULABLE_KEY "_sandbox_schedulable"

struct sandbox_store;

struct sandbox_store *sandbox_store_new(void);
void sandbox_store_free(struct sandbox_store *st);

/**
 * @brief Replace the baseline with @p fixtures ({"resources":[...], "schedulable_practitioners":
 *        [...]}) and reset to it. @returns 0, or -1 with a reason in @p errstr.
 */
int sandbox_store_load(struct sandbox_store *st, const json_t *fixtures, char *errstr,
                       size_t errlen);

/** @brief sandbox_store_load from a file. */
int sandbox_store_load_file(struct sandbox_store *st, const char *path, char *errstr,
                            size_t errlen);

/** @brief Drop everything stored since the last load: back to the fixtures. */
void sandbox_store_reset(struct sandbox_store *st);

/**
 * @brief Store a copy of @p resource (needs "resourceType" and a non-empty string "id"),
 *        replacing the one with the same type and id. @returns 0, or -1 with @p errstr.
 */
int sandbox_store_put(struct sandbox_store *st, const json_t *resource, char *errstr,
                      size_t errlen);

/** @returns a deep copy of the resource without sandbox markers, or NULL when absent. */
json_t *sandbox_store_get(struct sandbox_store *st, const char *type, const char *id);

/** @returns the resource without sandbox markers as malloc'd compact JSON text (length in
 *  @p len), or NULL when absent or out of memory (@p found says which). */
char *sandbox_store_get_text(struct sandbox_store *st, const char *type, const char *id,
                             size_t *len, int *found);

/** @returns 1 when a resource of @p type with @p id is stored. */
int sandbox_store_exists(struct sandbox_store *st, const char *type, const char *id);

/**
 * @brief Every resource of @p type for which @p match returns non-zero (all when @p match is
 *        NULL), in insertion order. @p match runs under the store lock and sees the stored
 *        resource, markers included; it must not call back into the store.
 * @param keep_markers 0: markers are removed from the copies (FHIR answers).
 * @returns a new array of deep copies.
 */
json_t *sandbox_store_find(struct sandbox_store *st, const char *type,
                           int (*match)(const json_t *res, void *ctx), void *ctx, int keep_markers);

/* ---------------------------------------------------------------------------------------------
 * FHIR search (sandbox_fhir_search.c).
 * ------------------------------------------------------------------------------------------- */

struct sandbox_search_param {
    const char *name;
    const char *value;
};

/** @returns the NULL-terminated search parameter names the sandbox understands for @p type
 *           (NULL when the type cannot be searched), in the order links list them. */
const char *const *sandbox_search_param_names(const char *type);

/**
 * @brief Build a Canvas-shaped searchset: relative links "/<Type>?<params>&_count=C&_offset=O"
 *        (self, first, previous and next when they exist, last) and entries for the page; an
 *        empty result is exactly {"resourceType":"Bundle","type":"searchset","total":0}.
 * @param params already-encoded search parameters without paging ("" when none).
 * @returns a new bundle.
 */
json_t *sandbox_bundle_build(const char *type, const char *params, const json_t *matches,
                             size_t count, size_t offset);

/**
 * @brief Run a search of @p type with @p params (values as received, decoded).
 * @param count_s,offset_s the _count and _offset values as received, or NULL.
 * @returns a new bundle, or NULL with @p err filled (400 invalid for bad paging values).
 */
json_t *sandbox_fhir_search(struct sandbox_store *st, const char *type,
                            const struct sandbox_search_param *params, size_t nparams,
                            const char *count_s, const char *offset_s, struct sandbox_outcome *err);

/* ---------------------------------------------------------------------------------------------
 * FHIR create validation (sandbox_fhir_validate.c): the rules Canvas applies.
 * ------------------------------------------------------------------------------------------- */

/**
 * @brief Split "Type/id" (also absolute ".../Type/id"). @returns 0 with @p type and @p id filled,
 *        or -1 when @p ref has no such shape.
 */
int sandbox_reference_split(const char *ref, char *type, size_t typelen, char *id, size_t idlen);

/**
 * @brief Find the first empty string anywhere in @p v. @returns 1 with its JSON path in
 *        @p path ("payload[0].contentString"), 0 when there is none.
 */
int sandbox_json_find_empty_string(const json_t *v, char *path, size_t pathlen);

/**
 * @brief Validate a Communication create body as Canvas does (references checked in @p st).
 * @returns 0 when valid, else -1 with @p out filled (400 invalid / 422 business-rule).
 */
int sandbox_communication_validate(struct sandbox_store *st, const json_t *body,
                                   struct sandbox_outcome *out);

/** @returns the resource Canvas stores for a valid create body: status completed, sent
 *           defaulted to @p now, reference types filled in. */
json_t *sandbox_communication_normalize(const json_t *body, const char *id, const char *now);

/**
 * @brief Check QuestionnaireResponse @p items against @p questionnaire: every linkId exists,
 *        valueString only for text items, valueCoding only for choice items and one of the
 *        item's answerOption codings (system and code), one answer unless repeats is true.
 * @returns 0 when valid, else -1 with @p out filled.
 */
int sandbox_qr_check_items(const json_t *questionnaire, const json_t *items,
                           struct sandbox_outcome *out);

/**
 * @brief Validate a QuestionnaireResponse create body (questionnaire, status, subject, author,
 *        items) against the store. @returns 0, or -1 with @p out filled.
 */
int sandbox_qr_validate(struct sandbox_store *st, const json_t *body, struct sandbox_outcome *out);

/** @returns the stored form of a valid QuestionnaireResponse: id, authored defaulted to @p now,
 *           author defaulted to Canvas Bot. */
json_t *sandbox_qr_normalize(const json_t *body, const char *id, const char *now);

#define SANDBOX_CANVAS_BOT_ID "5eede137ecfe4124b8b773040e33be14"
#define SANDBOX_LOCATION_BASE "http://fumage-sandbox.canvasmedical.com"

/* ---------------------------------------------------------------------------------------------
 * OAuth tokens (sandbox_oauth.c).
 * ------------------------------------------------------------------------------------------- */

struct sandbox_tokens;

struct sandbox_tokens *sandbox_tokens_new(void);
void sandbox_tokens_free(struct sandbox_tokens *t);

/** @brief Issue a new random token valid for @p ttl_s seconds from @p now into @p out (31+ bytes).
 */
void sandbox_tokens_issue(struct sandbox_tokens *t, long ttl_s, time_t now, char *out,
                          size_t outlen);

/** @returns 1 when @p token was issued and has neither expired nor been invalidated. */
int sandbox_tokens_valid(struct sandbox_tokens *t, const char *token, time_t now);

/** @brief Invalidate every token issued so far. @returns how many were still valid. */
long sandbox_tokens_expire_all(struct sandbox_tokens *t);

/** @brief Counters since start (or the last reset). */
void sandbox_tokens_counts(struct sandbox_tokens *t, long *issued, long *expired);
void sandbox_tokens_reset_counts(struct sandbox_tokens *t);

/* ---------------------------------------------------------------------------------------------
 * Twilio (sandbox_twilio.c) and SendGrid (sandbox_sendgrid.c) validation.
 * ------------------------------------------------------------------------------------------- */

/** @returns 1 when @p s is E.164 as Twilio takes it: '+', then 11 to 15 digits, no leading 0. */
int sandbox_e164_valid(const char *s);

struct sandbox_twilio_error {
    int status;
    int code;
    char message[256];
};

/**
 * @brief Validate the Messages create fields (NULL = absent).
 * @returns 0, or -1 with the error Twilio answers (21604, 21603, 21602, 21211, 21212, 21617).
 */
int sandbox_twilio_validate(const char *to, const char *from, const char *body,
                            struct sandbox_twilio_error *err);

/** @returns Twilio's error document {"code","message","more_info","status"}. */
json_t *sandbox_twilio_error_json(int status, int code, const char *message);

/**
 * @brief Validate a SendGrid v3 mail send body.
 * @returns NULL when valid, else a new {"errors":[{"field","message"}...]} listing every problem.
 */
json_t *sandbox_sendgrid_validate(const json_t *body);

/** @returns {"errors":[{"field": @p field or null, "message": @p message}]}. */
json_t *sandbox_sendgrid_error_json(const char *field, const char *message);

/* ---------------------------------------------------------------------------------------------
 * Recording (sandbox_record.c): a bounded ring of requests plus counters.
 * ------------------------------------------------------------------------------------------- */

struct sandbox_recorder;

/* A recorded name and value (a header or a query parameter); both copied by the recorder. */
struct sandbox_record_pair {
    const char *name;
    const char *value;
};

struct sandbox_record_in {
    enum sandbox_target target;
    const char *method;
    const char *path;
    const struct sandbox_record_pair *query; /* nquery pairs */
    size_t nquery;
    const struct sandbox_record_pair *headers; /* names lower-case, Authorization redacted */
    size_t nheaders;
    const char *body;
    size_t body_len;
    int status;
    int signature_valid; /* 1, 0, or -1 = not checked (null) */
    long fault_id;       /* 0 = none */
};

struct sandbox_record_filter {
    int target; /* -1 = any */
    const char *method;
    const char *path_prefix;
    long long since; /* seq > since */
    long limit;      /* 0 = no limit */
};

struct sandbox_recorder *sandbox_recorder_new(size_t max);
void sandbox_recorder_free(struct sandbox_recorder *r);

/** @brief Record one answered request. @returns its sequence number (from 1, never reused). */
long long sandbox_recorder_add(struct sandbox_recorder *r, const struct sandbox_record_in *in);

/** @returns a malloc'd JSON text {"requests":[...]} of the kept requests that pass @p f. */
char *sandbox_recorder_query(struct sandbox_recorder *r, const struct sandbox_record_filter *f,
                             size_t *len);

/** @returns a new object: totals per target, per status and per target and status. */
json_t *sandbox_recorder_stats(struct sandbox_recorder *r);

/** @brief Drop every kept request and zero the counters (sequence numbers keep growing). */
void sandbox_recorder_clear(struct sandbox_recorder *r);

/* ---------------------------------------------------------------------------------------------
 * Faults (sandbox_faults.c): ordered rules that replace or delay answers.
 * ------------------------------------------------------------------------------------------- */

struct sandbox_faults;

/* What a matched rule asks for; copied out of the rule so the lock is not held. */
struct sandbox_fault_hit {
    long id;
    int status; /* 0: answer normally (after the delays) */
    char retry_after[32];
    char *body; /* malloc'd or NULL = the party's usual error body */
    size_t len;
    const char *content_type;
    long latency_ms;
    long hang_ms;
};

struct sandbox_faults *sandbox_faults_new(void);
void sandbox_faults_free(struct sandbox_faults *f);

/** @brief Parse and append a rule. @returns its id (> 0), or -1 with a reason in @p errstr. */
long sandbox_faults_add(struct sandbox_faults *f, const json_t *spec, char *errstr, size_t errlen);

/**
 * @brief Match the rules in order; the first matching one is consumed once (removed when its
 *        count reaches 0). @returns 1 with @p hit filled (free with sandbox_fault_hit_clear).
 */
int sandbox_faults_take(struct sandbox_faults *f, enum sandbox_target target, const char *method,
                        const char *path, struct sandbox_fault_hit *hit);

void sandbox_fault_hit_clear(struct sandbox_fault_hit *hit);

/** @returns a new {"faults":[...]} with each rule's remaining count and times applied. */
json_t *sandbox_faults_list(struct sandbox_faults *f);

void sandbox_faults_clear(struct sandbox_faults *f);

/** @brief Fill @p a with the party's usual error answer for @p status (OperationOutcome with
 *         "excepetion" for Canvas 5xx, Twilio code 20429 for 429, ...). */
void sandbox_default_error(enum sandbox_target target, int status, struct sandbox_answer *a);

/* ---------------------------------------------------------------------------------------------
 * Deferred answers (sandbox_timer.c): one thread answers suspended requests at their deadline.
 * ------------------------------------------------------------------------------------------- */

struct sandbox_timer;

struct sandbox_timer *sandbox_timer_start(char *errstr, size_t errlen);

/**
 * @brief Answer @p req (already suspended by the caller) with @p ans after @p delay_ms. The
 *        answer's body moves to the timer (@p ans is left empty).
 * @returns 0, or -1 (out of memory) with @p ans untouched: then answer at once.
 */
int sandbox_timer_schedule(struct sandbox_timer *t, struct http_request *req,
                           struct sandbox_answer *ans, long delay_ms);

/** @returns how many answers are waiting. */
size_t sandbox_timer_pending(struct sandbox_timer *t);

/** @brief Send every waiting answer now and stop the thread; later schedules fail (answer at
 *         once). Idempotent. */
void sandbox_timer_stop(struct sandbox_timer *t);

/** @brief sandbox_timer_stop, then free. */
void sandbox_timer_free(struct sandbox_timer *t);

/* ---------------------------------------------------------------------------------------------
 * The running sandbox (sandbox_server.c) and each party's request handling.
 * ------------------------------------------------------------------------------------------- */

struct sandbox {
    const struct sandbox_config *cfg;
    struct sandbox_store *store;
    struct sandbox_tokens *tokens;
    struct sandbox_recorder *recorder;
    struct sandbox_faults *faults;
    struct sandbox_timer *timer;
    struct http_server *http;
    atomic_long latency_ms;
};

/** @brief Create the parts and load the fixtures. @returns 0, or -1 with @p errstr. */
int sandbox_init(struct sandbox *sb, const struct sandbox_config *cfg, char *errstr, size_t errlen);

/** @brief Start listening. @returns 0, or -1 with @p errstr. */
int sandbox_listen(struct sandbox *sb, char *errstr, size_t errlen);

/** @brief Stop listening, answer whatever waits, free everything. */
void sandbox_shutdown(struct sandbox *sb);

/* Each party fills @p ans for a request. @returns 0, or -1 on an internal failure (the
 * connection is then closed). */
int sandbox_oauth_handle(struct sandbox *sb, struct http_request *req, struct sandbox_answer *ans);
int sandbox_fhir_handle(struct sandbox *sb, struct http_request *req, struct sandbox_answer *ans);
int sandbox_twilio_handle(struct sandbox *sb, struct http_request *req, struct sandbox_answer *ans);
int sandbox_sendgrid_handle(struct sandbox *sb, struct http_request *req,
                            struct sandbox_answer *ans);
/** @param signature_valid set to 1/0 when a signature was checked, left -1 otherwise. */
int sandbox_webhook_handle(struct sandbox *sb, struct http_request *req, struct sandbox_answer *ans,
                           int *signature_valid);

/** @brief A FHIR error answer: OperationOutcome with @p code and @p text. */
void sandbox_fhir_error(struct sandbox_answer *a, int status, const char *code, const char *text);

/**
 * @brief The control API (sandbox_control.c): every method under /_sandbox/, dispatched on its
 *        own table. Never recorded, never subject to faults or latency. An http_handler_fn.
 */
int sandbox_control_handle(struct sandbox *sb, struct http_request *req,
                           struct sandbox_answer *ans);

/** @brief The built-in demo fixtures (generated from tools/sandbox/fixtures.json). */
extern const unsigned char sandbox_builtin_fixtures[];
extern const size_t sandbox_builtin_fixtures_len;

#endif
