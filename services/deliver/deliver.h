/* pm-deliver internals: configuration, the event handlers, channels and the pure mapping helpers.
 */
#ifndef PM_DELIVER_H
#define PM_DELIVER_H

#include "config.h"
#include "consumer.h"
#include "kafka_conf.h"
#include "log.h"
#include "webhook_sig.h"

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <time.h>

/* ---- configuration (deliver_config.c) ---- */

enum deliver_channel { CHANNEL_WEBHOOK = 0, CHANNEL_SMS = 1, CHANNEL_EMAIL = 2, CHANNEL_COUNT };

extern const struct config_var deliver_config_vars[];

struct deliver_config {
    struct kafka_settings kafka;
    enum log_level log_level;
    char listen_host[256];
    unsigned listen_port;
    const char *group_id;
    const char *topic_messages, *topic_replies, *topic_questionnaires;
    const char *topic_deliveries, *topic_dlq;

    char *fhir_url;  /* malloc'd: derived from PM_CANVAS_INSTANCE or given */
    char *token_url; /* malloc'd */
    const char *client_id;
    char *client_secret; /* secret */

    enum deliver_channel channels[CHANNEL_COUNT]; /* PM_DELIVER_CHANNELS, in order */
    int nchannels;

    const char *webhook_url;
    struct webhook_key webhook_key; /* PM_WEBHOOK_SECRET decoded */
    int have_webhook_key;
    const char *twilio_sid, *twilio_from, *twilio_api_url;
    char *twilio_token; /* secret */
    char *sendgrid_key; /* secret */
    const char *sendgrid_from, *sendgrid_api_url, *email_subject;

    char **contact_categories; /* PM_DELIVER_CONTACT_CATEGORIES */
    size_t ncontact_categories;
    const char *default_practitioner_id;

    int max_in_flight;
    long retry_base_ms, retry_max_ms, retry_deadline_ms;
    long http_timeout_ms;
    long drain_timeout_ms;
    int patient_cache_ttl_s;
    int history_hours;       /* PM_DELIVER_HISTORY_HOURS: results read back at start; 0 = none */
    long history_timeout_ms; /* PM_DELIVER_HISTORY_TIMEOUT_MS */
};

/** @brief Read and validate the whole configuration; problems go to @p r. */
void deliver_config_load(struct deliver_config *cfg, struct config_report *r);
void deliver_config_free(struct deliver_config *cfg);

/** @returns "webhook", "sms" or "email". */
const char *deliver_channel_name(enum deliver_channel ch);

/* ---- pure helpers (deliver_text.c, deliver_patient.c): no I/O, unit-tested ---- */

/**
 * @brief Plain text from Canvas message content, which may be HTML: tags removed, <br> and the
 *        ends of block elements (</p>, </div>, </li>, headings) become line breaks, <li> starts a
 *        "- " line, entities decoded (named ones HTML uses in messages, &#NN; and &#xHH; to UTF-8),
 *        runs of blank lines collapsed, leading/trailing white space trimmed, <script>/<style>
 *        content dropped. Text that is not HTML comes back unchanged but trimmed.
 * @returns a malloc'd string (never NULL unless out of memory).
 */
char *deliver_html_to_text(const char *content);

/** @returns 1 when @p content looks like HTML (a tag such as <p>, <br>, <div>, or an entity). */
int deliver_is_html(const char *content);

/**
 * @brief A Canvas phone value to E.164 for Twilio: 10 digits (punctuation and spaces ignored)
 *        become "+1" + digits; "1" + 10 digits becomes "+" + digits; a value already starting with
 *        "+" and 8-15 digits is kept. @returns 0, or -1 when it cannot be converted.
 */
int deliver_phone_e164(const char *value, char *out, size_t outlen);

/** A person a message goes to: the patient or one of their contacts. */
struct deliver_recipient {
    int is_contact;
    char relationship[64]; /* contact-category code, contacts only */
    char name[256];        /* contacts only (for the webhook's "contacts"); never logged */
    char phone[32];        /* E.164, "" when none */
    char email[256];       /* "" when none */
};

/**
 * @brief The patient's SMS phone: among telecom entries with system phone or sms whose
 *        has-consent extension is true, mobile ones first, then the lowest rank (absent rank
 *        last), converted to E.164. @returns 0, or -1 when none qualifies.
 */
int deliver_patient_phone(const json_t *patient, char *out, size_t outlen);

/** @brief The patient's email: the consented email with the lowest rank. @returns 0 / -1. */
int deliver_patient_email(const json_t *patient, char *out, size_t outlen);

/**
 * @brief The patient's contacts whose relationship has a coding with system
 *        http://schemas.canvasmedical.com/fhir/contact-category and a code in @p categories:
 *        name.text, the first phone (E.164; skipped when not convertible) and the first email.
 * @returns the number written to @p out (at most @p max).
 */
size_t deliver_patient_contacts(const json_t *patient, char *const *categories, size_t ncategories,
                                struct deliver_recipient *out, size_t max);

/** What a staff message is, once the Communication has been checked. */
struct deliver_message {
    char communication_id[65];
    char patient_id[65];
    char practitioner_id[65];
    char sent[64];       /* Communication.sent, "" when absent */
    const char *content; /* payload[0].contentString, borrowed from the resource */
};

/**
 * @brief Apply the SPEC §6 skip rules to a Communication for @p patient_id: the sender must be a
 *        Practitioner, a recipient must be Patient/@p patient_id, the status must not be
 *        preparation (draft) or in-progress (scheduled), and there must be text content.
 *        The emptiness test converts the content to text (deliver_html_to_text); when @p text is
 *        not NULL that text is handed out instead of being thrown away, so that the caller does
 *        not convert the same HTML twice.
 * @returns 0 with @p msg filled (deliver it), 1 when it must be skipped (@p reason is a constant
 *          such as "draft" or "sender is not a practitioner"), -1 when the resource is malformed
 *          (@p reason says how). @p text (may be NULL) is set to the malloc'd plain text on 0
 *          (the caller frees it; NULL only when out of memory) and to NULL otherwise.
 */
int deliver_message_check(const json_t *communication, const char *patient_id,
                          struct deliver_message *msg, const char **reason, char **text);

/**
 * @brief The clinic webhook body: {"type":"patient.message.v1","communication_id","patient_id",
 *        "practitioner_id","sent","text","html"? (when the content is HTML),"contacts":[…]},
 *        compact, in that order (common/json_writer.h: what json_dumps would give).
 * @returns the malloc'd text, its length in @p len (may be NULL); NULL when a string in it is not
 *          UTF-8 or memory runs out.
 */
char *deliver_webhook_body(const struct deliver_message *msg, const char *text,
                           const struct deliver_recipient *contacts, size_t ncontacts, size_t *len);

/**
 * @brief A Twilio Messages form body "To=…&From=…&Body=…" (URL-encoded; Body cut to 1600
 *        characters on a UTF-8 boundary). @returns a malloc'd string.
 */
char *deliver_twilio_form(const char *to, const char *from, const char *text);

/**
 * @brief A SendGrid v3 mail/send body with a text/plain part and a text/html part (the original
 *        HTML when the content was HTML, else the text escaped with <br>s). @returns a new ref.
 */
json_t *deliver_sendgrid_body(const char *to, const char *from, const char *subject,
                              const char *text, const char *html_or_null);

/* ---- write-back mapping (deliver_reply.c, deliver_checkin.c) ---- */

/* Pure functions first (no I/O, unit-tested). Their error strings name fields, questions (linkId
 * or code as the event gave it) and answer codes: the clinic's form, never the patient's words,
 * so they may go to the DLQ's pm-error and a delivery result's reason. */

/**
 * @brief The Communication a patient reply creates in Canvas, exactly:
 *        {"resourceType":"Communication","status":"unknown","sender":{"reference":
 *        "Patient/<patient_id>"},"recipient":[{"reference":"Practitioner/<practitioner_id>"}],
 *        "payload":[{"contentString":<text>}],"sent":<sent>}. No "received" (the reply then shows
 *        as unread in the practitioner's inbox) and none of the members Canvas does not support.
 * @param sent an RFC 3339 time, or NULL to leave "sent" out (Canvas then uses now).
 * @returns a new reference, or NULL when out of memory.
 */
json_t *deliver_reply_resource(const char *patient_id, const char *practitioner_id,
                               const char *text, const char *sent);

/* A patient reply's data, checked. Pointers borrow from the data (and @p event_time). */
struct deliver_reply_req {
    const char *patient_id;
    const char *text;
    const char *practitioner_id; /* recipient.practitioner_id */
    const char *email;           /* recipient.email */
    const char *in_reply_to;
    const char *sent; /* sent_at, else the event's time, else NULL */
};

/**
 * @brief Check a patient.reply.v1 event's data: "patient_id" a FHIR id, "text" more than white
 *        space, "recipient" (optional) an object with exactly one of "practitioner_id" (a FHIR id)
 *        or "email", "in_reply_to" (optional) a FHIR id, "sent_at" (optional) RFC 3339.
 * @param event_time the event's time: "sent" when the data has no sent_at.
 * @returns 0, or -1 with the field at fault (never its value) in @p err.
 */
int deliver_reply_parse(const json_t *data, const char *event_time, struct deliver_reply_req *r,
                        char *err, size_t errlen);

/**
 * @brief Check the shape of simple-form check-in data: "patient_id" a FHIR id, "questionnaire"
 *        {"id": FHIR id} or {"code": string}, "answers" a non-empty array of objects with exactly
 *        one of "link_id" / "question_code" (non-empty strings) and exactly one of "value_string"
 *        (non-empty string), "value_code" (non-empty string), "value_codes" (non-empty array of
 *        distinct non-empty strings); "authored_at", when present, RFC 3339.
 * @returns 0, or -1 with the first problem in @p errstr, e.g. "data.answers[2]: exactly one of
 *          value_string, value_code or value_codes is required" (names, never values).
 */
int deliver_checkin_simple_check(const json_t *data, char *errstr, size_t errlen);

/**
 * @brief Map simple-form check-in data through its Questionnaire into the QuestionnaireResponse
 *        to create: {"resourceType","questionnaire":"Questionnaire/<id>","status":"completed",
 *        "subject","author" (both the Patient),"authored"?,"item":[{"linkId","text"?,"answer"}]}.
 *
 * Each answer finds its question among the Questionnaire's items by "link_id" (item.linkId) or
 * "question_code" (the one item with that code in item.code[]). Choice items take codes offered
 * in answerOption[].valueCoding, copied as {system, code, display} from the option; a
 * single-choice item (repeats absent or false) exactly one. Text items take value_string as
 * valueString. Several answers to one multiple-choice question are merged into one item; items
 * come out in the Questionnaire's order. Runs deliver_checkin_simple_check first.
 * @param authored the "authored" time (data.authored_at, or the event's time); NULL leaves it out.
 * @returns a new reference, or NULL with the problem in @p errstr, naming the answer and the
 *          question as given, e.g. "answers[1] (question_code 228448000): code LA99-9 is not an
 *          option".
 */
json_t *deliver_checkin_map(const json_t *data, const json_t *questionnaire, const char *authored,
                            char *errstr, size_t errlen);

/**
 * @brief The QuestionnaireResponse to create from FHIR-form check-in data
 *        {"patient_id","questionnaire_response"}: questionnaire "Questionnaire/<id>", subject
 *        "Patient/<patient_id>", status "completed", a non-empty item list whose answers are only
 *        valueString or valueCoding {system, code, display?}. The copy leaves out "id" and
 *        "encounter" (without one Canvas files a data-import note) and gets "author" = the
 *        Patient when it has none.
 * @returns a new reference, or NULL with the first problem in @p errstr (field names only).
 */
json_t *deliver_checkin_fhir_prepare(const json_t *data, char *errstr, size_t errlen);

/* The handlers' shared steps (deliver_reply.c): each write-back event creates at most one
 * resource while this process runs, and reports it with the same provider_id however often the
 * event comes again. */

struct deliver_app;
struct fhir_error;

/**
 * @brief Start an attempt of a write-back event of @p kind ("reply" or
 *        "questionnaire_response"): allocate its per-event state on the first attempt, and when
 *        this event (CloudEvents source + id) already created its resource — in an earlier
 *        attempt, or as an earlier delivery of the same event — publish "delivered" with that id
 *        again and finish it.
 * @returns 1 when finished (@p out set to DONE), 0 when the caller goes on, -1 when out of
 *          memory (@p out set to RETRY).
 */
int deliver_writeback_begin(struct deliver_app *app, struct consumer_event *ev, const char *kind,
                            struct consumer_outcome *out);

/**
 * @brief After a successful create: remember @p id for the event (per-event state and
 *        app->replies, before anything is published), publish "delivered" with provider_id @p id,
 *        set @p out to DONE.
 */
void deliver_writeback_created(struct deliver_app *app, struct consumer_event *ev, const char *kind,
                               const char *id, struct consumer_outcome *out);

/** @brief A failed FHIR call as the attempt's verdict: RETRY (with Retry-After) or PERMANENT. */
void deliver_writeback_fhir_failure(struct consumer_outcome *out, const struct fhir_error *err);

/* ---- bounded TTL cache of JSON values by string key (deliver_cache.c) ---- */

struct deliver_cache;

/** @brief At most @p capacity entries, each kept @p ttl_s seconds (oldest evicted first). */
struct deliver_cache *deliver_cache_new(size_t capacity, int ttl_s);
void deliver_cache_free(struct deliver_cache *c);

/** @returns a new reference to the cached value, or NULL when absent or expired. Thread-safe. */
json_t *deliver_cache_get(struct deliver_cache *c, const char *key);

/** @brief Insert or replace (@p value is not stolen; the cache takes its own reference). */
void deliver_cache_put(struct deliver_cache *c, const char *key, json_t *value);

/* ---- repeat guards: bounded memory of what was done, by key (deliver_guard.c) ---- */

struct deliver_guard;

/**
 * @brief At most @p capacity entries (1 .. 2^32 - 2), each kept @p ttl_s seconds; when full the
 *        oldest goes first. Keys are kept as a 128-bit digest, values as given. NULL without
 *        memory or with a capacity out of range.
 */
struct deliver_guard *deliver_guard_new(size_t capacity, int ttl_s);
void deliver_guard_free(struct deliver_guard *g);

/**
 * @returns the length of the value remembered under @p key, or -1 when there is none or it
 *          expired. The value is copied NUL-terminated into @p buf, cut to @p cap - 1 bytes
 *          (a return of @p cap or more says it was cut); @p cap 0 only asks. Thread-safe.
 */
long deliver_guard_get(struct deliver_guard *g, const char *key, char *buf, size_t cap);

/**
 * @brief Remembers @p len bytes of @p value under @p key. An entry already there gets the new
 *        value and a new time to live but keeps its place in the order. Thread-safe.
 * @returns 0, or -1 without memory (then nothing changed).
 */
int deliver_guard_put(struct deliver_guard *g, const char *key, const char *value, size_t len);

/** @returns the number of live entries (expired ones included until they are reached). */
size_t deliver_guard_count(struct deliver_guard *g);

/* ---- the service (deliver_app.c) ---- */

struct http_client;
struct fhir_client;
struct kafka_producer;
struct metrics_registry;
struct metrics_family;
struct deliver_history;

struct deliver_app {
    const struct deliver_config *cfg;
    pthread_mutex_t stop_lock; /* guards consumer use by /readyz against deliver_app_stop */
    int stopping;
    struct http_client *http;
    struct fhir_client *fhir;
    struct kafka_producer *producer;
    struct consumer *consumer;
    struct http_server *server;
    struct metrics_registry *metrics;
    /* pm_deliver_repeat_guard_entries{guard="messages"|"writebacks"}: set at each scrape */
    struct metrics_series *m_guard_messages, *m_guard_writebacks;
    struct deliver_cache *patients; /* Patient resources by id (a few minutes) */
    /* "<communication id>/<channel>" → "<event id>\n<provider id>" of the event that delivered
     * it (deliver_delivered_put / _by) */
    struct deliver_guard *delivered;
    struct deliver_cache *practitioners;  /* practitioner id by email (replies) */
    struct deliver_cache *questionnaires; /* Questionnaire resources by "id:<id>" / "code:<c>" */
    /* "<kind> <source length> <source> <event id>" of a reply or check-in → the id of the
     * resource it created in Canvas */
    struct deliver_guard *replies;
    volatile sig_atomic_t *interrupted; /* deliver_app_start's: a stop was asked for */
    struct deliver_history *history;    /* follows the results topic (deliver_history.c) */
};

/**
 * @brief Reads the last cfg->history_hours of the results topic back, up to where it ended when
 *        this began: every "delivered" result with a pm-dedup-key header goes into
 *        app->delivered (messages) or app->replies (write-backs), so that a restarted process,
 *        or one that took over partitions, does not deliver or create again what was done
 *        before. Records older than the window are skipped. Then a thread ("pm-history")
 *        goes on following the topic, so that what other members of the group deliver later is
 *        known here too when their partitions move (app->history; deliver_history_stop).
 * @returns the number of such results, or -1 with the reason in @p errstr (Kafka unreachable
 *          or the topic not read to its end within cfg->history_timeout_ms).
 */
long deliver_history_start(struct deliver_app *app, char *errstr, size_t errlen);

/** @brief Stops following the results topic (no-op when not started). */
void deliver_history_stop(struct deliver_app *app);

/**
 * @brief Remember in app->delivered that the event @p event_id delivered @p key
 *        ("<Communication id>/<channel>") with @p provider_id (may be NULL or ""): a later event
 *        for it is skipped, the same event handled again reports "delivered" again.
 */
void deliver_delivered_put(struct deliver_app *app, const char *key, const char *event_id,
                           const char *provider_id);

/**
 * @brief Did the event @p event_id deliver what @p seen (an app->delivered value) records?
 * @returns 1 with *@p provider_id set (pointing into @p seen; NULL when none), else 0.
 */
int deliver_delivered_by(const char *seen, const char *event_id, const char **provider_id);

/**
 * @brief Start everything: HTTP clients, producer, consumer, health server. NULL on failure.
 * @param interrupted set by the caller's signal handler: reading earlier deliveries back (which
 *        may wait for Kafka) gives up when it turns non-zero. May be NULL.
 */
struct deliver_app *deliver_app_start(const struct deliver_config *cfg,
                                      volatile sig_atomic_t *interrupted, char *errstr,
                                      size_t errlen);

/** @returns non-zero after a fatal Kafka error (reason in @p errstr). */
int deliver_app_fatal(struct deliver_app *app, char *errstr, size_t errlen);

/** @brief Drain, commit, stop. @returns 0 when nothing in progress was abandoned. */
int deliver_app_stop(struct deliver_app *app);

/* ---- handlers (deliver_message.c, deliver_reply.c, deliver_checkin.c) ---- */

void deliver_message_handle(void *app, struct consumer_event *ev, struct consumer_outcome *out);
void deliver_message_failed(void *app, struct consumer_event *ev, const char *error_class,
                            const char *error);
void deliver_reply_handle(void *app, struct consumer_event *ev, struct consumer_outcome *out);
void deliver_reply_failed(void *app, struct consumer_event *ev, const char *error_class,
                          const char *error);
void deliver_checkin_handle(void *app, struct consumer_event *ev, struct consumer_outcome *out);
void deliver_checkin_failed(void *app, struct consumer_event *ev, const char *error_class,
                            const char *error);

/* How an outbound call went, in the consumer's terms. */
enum deliver_send {
    SEND_OK,        /* accepted by the provider */
    SEND_TRANSIENT, /* 408, 429, 5xx, transport: retry later */
    SEND_PERMANENT, /* any other 4xx: will not succeed */
};

/** @brief Classify an HTTP answer (status 0 = transport failure) per SPEC §6 "Outcomes". */
enum deliver_send deliver_classify(long status);

#endif
