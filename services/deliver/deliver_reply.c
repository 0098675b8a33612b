/* Patient replies (patient.reply.v1): find the practitioner, create the Communication in Canvas. */
#include "deliver.h"

#include "fhir.h"
#include "fhir_ref.h"
#include "timefmt.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EMAIL_MAX 254 /* longest address ingest accepts (RFC 5321 path limit) */

/* ---- shared by the write-back handlers (declared in deliver.h) ---- */

/* What survives between attempts of one write-back event. */
struct wb_state {
    char created_id[FHIR_ID_MAX + 1];      /* the resource this event created, "" before */
    char practitioner_id[FHIR_ID_MAX + 1]; /* replies: the recipient once resolved */
};

static void wb_state_free(void *p)
{
    free(p);
}

/* The app->replies key of an event: CloudEvents ids are unique per source, and the kind keeps a
 * reply and a check-in that happen to share an id apart. Printable (it is also the results'
 * pm-dedup-key header) and unambiguous: the source's length comes first. */
static void wb_key(const struct consumer_event *ev, const char *kind, char *out, size_t len)
{
    snprintf(out, len, "%s %zu %s %s", kind, strlen(ev->ce->source), ev->ce->source, ev->ce->id);
}

int deliver_writeback_begin(struct deliver_app *app, struct consumer_event *ev, const char *kind,
                            struct consumer_outcome *out)
{
    struct wb_state *st = ev->state;
    char key[1024];

    if (!st) {
        st = calloc(1, sizeof(*st));
        if (!st) {
            out->verdict = CONSUMER_RETRY;
            snprintf(out->error, sizeof(out->error), "out of memory");
            return -1;
        }
        ev->state = st;
        ev->state_free = wb_state_free;
    }
    if (!st->created_id[0]) {
        wb_key(ev, kind, key, sizeof(key));
        /* Not remembered: created_id stays "" (get writes it only when found). */
        deliver_guard_get(app->replies, key, st->created_id, sizeof(st->created_id));
        if (!st->created_id[0])
            return 0;
        log_info("event already written to Canvas: not creating it again",
                 LOG_S("event_id", ev->ce->id), LOG_S("kind", kind),
                 LOG_S("resource_id", st->created_id));
    }
    /* A repeat is reported as what it is: the same fact, "delivered" with the same provider_id
     * and, as every result of this event, the same result id ("<event id>:canvas"), so readers
     * that deduplicate on source_event_id + channel see one outcome. A "skipped" here would
     * contradict the first result under the same key. */
    wb_key(ev, kind, key, sizeof(key));
    consumer_publish_result_keyed(ev, kind, "canvas", "delivered", NULL, st->created_id, key);
    out->verdict = CONSUMER_DONE;
    out->label = "delivered";
    return 1;
}

void deliver_writeback_created(struct deliver_app *app, struct consumer_event *ev, const char *kind,
                               const char *id, struct consumer_outcome *out)
{
    struct wb_state *st = ev->state;
    char key[1024];

    /* Remembered before anything else can fail: whatever happens next, this event never
     * creates a second resource while the process runs. */
    snprintf(st->created_id, sizeof(st->created_id), "%s", id);
    wb_key(ev, kind, key, sizeof(key));
    deliver_guard_put(app->replies, key, st->created_id, strlen(st->created_id));
    consumer_publish_result_keyed(ev, kind, "canvas", "delivered", NULL, id, key);
    out->verdict = CONSUMER_DONE;
    out->label = "delivered";
}

void deliver_writeback_fhir_failure(struct consumer_outcome *out, const struct fhir_error *err)
{
    out->verdict = err->kind == FHIR_TRANSIENT ? CONSUMER_RETRY : CONSUMER_PERMANENT;
    out->retry_after_ms = err->retry_after_ms;
    /* "<METHOD> <Type>: <status> <OperationOutcome text>": Canvas's words about ids and fields. */
    snprintf(out->error, sizeof(out->error), "%s", err->message);
}

/* ---- the reply ---- */

json_t *deliver_reply_resource(const char *patient_id, const char *practitioner_id,
                               const char *text, const char *sent)
{
    char sender[FHIR_ID_MAX + 16], recipient[FHIR_ID_MAX + 16];

    snprintf(sender, sizeof(sender), "Patient/%s", patient_id);
    snprintf(recipient, sizeof(recipient), "Practitioner/%s", practitioner_id);
    return json_pack("{s:s, s:s, s:{s:s}, s:[{s:s}], s:[{s:s}], s:s*}", "resourceType",
                     "Communication", "status", "unknown", "sender", "reference", sender,
                     "recipient", "reference", recipient, "payload", "contentString", text, "sent",
                     sent);
}

static int reply_has_text(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return 1;
    return 0;
}

int deliver_reply_parse(const json_t *data, const char *event_time, struct deliver_reply_req *r,
                        char *err, size_t errlen)
{
    json_t *recipient = NULL;
    json_t *patient = NULL, *text = NULL, *in_reply_to = NULL, *sent = NULL;
    json_error_t jerr;

    memset(r, 0, sizeof(*r));
    if (json_unpack_ex((json_t *)data, &jerr, 0, "{s?o, s?o, s?o, s?o, s?o}", "patient_id",
                       &patient, "text", &text, "recipient", &recipient, "in_reply_to",
                       &in_reply_to, "sent_at", &sent) != 0) {
        snprintf(err, errlen, "data must be an object");
        return -1;
    }
    r->patient_id = json_string_value(patient);
    if (!fhir_id_valid(r->patient_id)) {
        snprintf(err, errlen, "data.patient_id must be a FHIR id");
        return -1;
    }
    r->text = json_string_value(text);
    if (!r->text || !reply_has_text(r->text)) {
        snprintf(err, errlen, "data.text must be a string with more than white space");
        return -1;
    }
    if (recipient) {
        json_t *pid = json_object_get(recipient, "practitioner_id");
        json_t *email = json_object_get(recipient, "email");
        if (!json_is_object(recipient) || (pid && email) || (!pid && !email)) {
            snprintf(err, errlen,
                     "data.recipient must be an object with exactly one of practitioner_id or "
                     "email");
            return -1;
        }
        if (pid) {
            r->practitioner_id = json_string_value(pid);
            if (!fhir_id_valid(r->practitioner_id)) {
                snprintf(err, errlen, "data.recipient.practitioner_id must be a FHIR id");
                return -1;
            }
        } else {
            r->email = json_string_value(email);
            if (!r->email || !strchr(r->email, '@') || strlen(r->email) > EMAIL_MAX) {
                snprintf(err, errlen, "data.recipient.email must be an email address");
                return -1;
            }
        }
    }
    if (in_reply_to) {
        r->in_reply_to = json_string_value(in_reply_to);
        if (!fhir_id_valid(r->in_reply_to)) {
            snprintf(err, errlen, "data.in_reply_to must be a Communication id");
            return -1;
        }
    }
    if (sent) {
        r->sent = json_string_value(sent);
        if (!r->sent || !timefmt_rfc3339_parse(r->sent, NULL)) {
            snprintf(err, errlen, "data.sent_at must be an RFC 3339 date-time");
            return -1;
        }
    } else {
        /* pm-ingest always fills sent_at in; another producer may not: the event's time is
         * when the reply happened as far as it knew. */
        r->sent = event_time;
    }
    return 0;
}

/* The id of the one practitioner whose email is @p email (through app->practitioners).
 * @returns 0 with the id in @p id; -1 with @p out set (RETRY or PERMANENT). */
static int reply_by_email(struct deliver_app *app, const char *email, char *id, size_t idlen,
                          struct consumer_outcome *out)
{
    char key[EMAIL_MAX + 8], enc[3 * EMAIL_MAX + 1], query[3 * EMAIL_MAX + 64];
    json_t *cached, *found = NULL;
    struct fhir_error ferr;
    const char *pid;
    size_t n, i;
    int rc = -1;

    /* Addresses are matched without regard to case, as Canvas does. */
    n = strlen(email);
    memcpy(key, "email:", 6);
    for (i = 0; i < n && 6 + i < sizeof(key) - 1; i++)
        key[6 + i] = (char)tolower((unsigned char)email[i]);
    key[6 + i] = '\0';
    cached = deliver_cache_get(app->practitioners, key);
    if (json_is_string(cached)) {
        snprintf(id, idlen, "%s", json_string_value(cached));
        json_decref(cached);
        return 0;
    }
    json_decref(cached);

    if (fhir_url_encode(email, enc, sizeof(enc)) != 0) {
        out->verdict = CONSUMER_INVALID;
        snprintf(out->error, sizeof(out->error), "data.recipient.email is too long");
        goto out;
    }
    /* By default Canvas searches only schedulable clinicians; any staff member may be the
     * recipient of a reply. */
    snprintf(query, sizeof(query), "email=%s&include-non-schedulable-practitioners=true", enc);
    found = fhir_search(app->fhir, "Practitioner", query, &ferr);
    if (!found) {
        deliver_writeback_fhir_failure(out, &ferr);
        goto out;
    }
    /* The address itself stays out of errors and logs: it identifies a person. */
    if (json_array_size(found) == 0) {
        out->verdict = CONSUMER_PERMANENT;
        snprintf(out->error, sizeof(out->error), "recipient.email matches no practitioner");
        goto out;
    }
    if (json_array_size(found) > 1) {
        out->verdict = CONSUMER_PERMANENT;
        snprintf(out->error, sizeof(out->error), "recipient.email matches %zu practitioners",
                 json_array_size(found));
        goto out;
    }
    pid = json_string_value(json_object_get(json_array_get(found, 0), "id"));
    if (!fhir_id_valid(pid)) {
        out->verdict = CONSUMER_PERMANENT;
        snprintf(out->error, sizeof(out->error),
                 "GET Practitioner: the practitioner found by email has no valid id");
        goto out;
    }
    snprintf(id, idlen, "%s", pid);
    cached = json_string(pid);
    if (cached)
        deliver_cache_put(app->practitioners, key, cached);
    json_decref(cached);
    rc = 0;
out:
    json_decref(found);
    return rc;
}

/* The practitioner who sent Communication @p comm_id to @p patient_id.
 * @returns 0 with the id in @p id; -1 with @p out set. */
static int reply_by_thread(struct deliver_app *app, const char *comm_id, const char *patient_id,
                           char *id, size_t idlen, struct consumer_outcome *out)
{
    struct fhir_error ferr;
    json_t *comm = fhir_read(app->fhir, "Communication", comm_id, &ferr), *r;
    char pid[FHIR_ID_MAX + 1];
    const char *sender = NULL;
    int to_patient = 0, rc = -1;
    size_t i;

    if (!comm) {
        deliver_writeback_fhir_failure(out, &ferr);
        return -1;
    }
    json_unpack(comm, "{s:{s:s}}", "sender", "reference", &sender);
    if (!sender || strncmp(sender, "Practitioner/", 13) != 0 ||
        fhir_ref_parse(sender, "Practitioner", id, idlen) != 0) {
        out->verdict = CONSUMER_PERMANENT;
        snprintf(out->error, sizeof(out->error), "in_reply_to was not sent by a practitioner");
        goto out;
    }
    /* A patient answers only messages addressed to them: anything else is a wrong id, and
     * filing the reply would put it in an unrelated conversation. */
    json_array_foreach(json_object_get(comm, "recipient"), i, r)
    {
        const char *ref = json_string_value(json_object_get(r, "reference"));
        if (ref && strncmp(ref, "Patient/", 8) == 0 &&
            fhir_ref_parse(ref, "Patient", pid, sizeof(pid)) == 0 && strcmp(pid, patient_id) == 0)
            to_patient = 1;
    }
    if (!to_patient) {
        out->verdict = CONSUMER_PERMANENT;
        snprintf(out->error, sizeof(out->error), "in_reply_to was not sent to this patient");
        goto out;
    }
    rc = 0;
out:
    json_decref(comm);
    return rc;
}

/* Recipient resolution, in the order of SPEC §6: recipient.practitioner_id, recipient.email,
 * the sender of in_reply_to, PM_DEFAULT_PRACTITIONER_ID. The first one the event names decides:
 * a recipient that cannot be found is an error, never a reason to try the next. */
static int reply_recipient(struct deliver_app *app, const struct deliver_reply_req *r, char *id,
                           size_t idlen, struct consumer_outcome *out)
{
    const char *dflt = app->cfg->default_practitioner_id;

    if (r->practitioner_id) {
        snprintf(id, idlen, "%s", r->practitioner_id);
        return 0;
    }
    if (r->email)
        return reply_by_email(app, r->email, id, idlen, out);
    if (r->in_reply_to)
        return reply_by_thread(app, r->in_reply_to, r->patient_id, id, idlen, out);
    if (dflt && *dflt) {
        snprintf(id, idlen, "%s", dflt);
        return 0;
    }
    out->verdict = CONSUMER_PERMANENT;
    snprintf(out->error, sizeof(out->error),
             "no recipient: set recipient, in_reply_to or PM_DEFAULT_PRACTITIONER_ID");
    return -1;
}

void deliver_reply_handle(void *arg, struct consumer_event *ev, struct consumer_outcome *out)
{
    struct deliver_app *app = arg;
    struct deliver_reply_req req;
    struct wb_state *st;
    struct fhir_error ferr;
    json_t *resource = NULL;
    char id[FHIR_ID_MAX + 1];

    if (deliver_reply_parse(ev->ce->data, ev->ce->time, &req, out->error, sizeof(out->error)) !=
        0) {
        out->verdict = CONSUMER_INVALID;
        return;
    }
    if (deliver_writeback_begin(app, ev, "reply", out) != 0)
        return;
    st = ev->state;

    if (!st->practitioner_id[0] &&
        reply_recipient(app, &req, st->practitioner_id, sizeof(st->practitioner_id), out) != 0) {
        st->practitioner_id[0] = '\0';
        return;
    }
    resource = deliver_reply_resource(req.patient_id, st->practitioner_id, req.text, req.sent);
    if (!resource) {
        out->verdict = CONSUMER_RETRY;
        snprintf(out->error, sizeof(out->error), "out of memory");
        return;
    }
    if (fhir_create(app->fhir, "Communication", resource, id, sizeof(id), &ferr) != 0) {
        deliver_writeback_fhir_failure(out, &ferr);
        goto out;
    }
    log_info("reply written to Canvas", LOG_S("event_id", ev->ce->id),
             LOG_S("patient_id", req.patient_id), LOG_S("practitioner_id", st->practitioner_id),
             LOG_S("communication_id", id));
    deliver_writeback_created(app, ev, "reply", id, out);
out:
    json_decref(resource);
}

void deliver_reply_failed(void *arg, struct consumer_event *ev, const char *error_class,
                          const char *error)
{
    (void)arg;
    (void)error_class;
    consumer_publish_result(ev, "reply", "canvas", "failed", error, NULL);
}
