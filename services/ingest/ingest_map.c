/* Request bodies to event data: validation of every shape of SPEC §4, naming each bad field. */
#include "ingest.h"

#include "cloudevent.h"
#include "fhir_ref.h"
#include "problem.h"
#include "timefmt.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define PTR_MAX 256

/* ---- field checks: each adds an error to @p pb and returns NULL/0 when the field is bad ---- */

static void map_err(json_t *pb, const char *base, const char *field, const char *detail)
{
    char ptr[PTR_MAX];
    if (field)
        problem_pointer_join(ptr, sizeof(ptr), base, field);
    else
        snprintf(ptr, sizeof(ptr), "%s", base);
    problem_add_error(pb, ptr, detail);
}

/* Rejects members of @p obj not in @p allowed (NULL-terminated): our own shapes are strict so
 * that a misspelt optional field is reported instead of silently ignored. */
static void map_no_unknown(json_t *obj, const char *base, const char *const *allowed, json_t *pb)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, key) == 0)
                ok = 1;
        if (!ok)
            map_err(pb, base, key, "unknown field");
    }
}

/* A non-empty string member. @p required: absence is an error. */
static const char *map_str(json_t *obj, const char *base, const char *field, int required,
                           json_t *pb)
{
    json_t *v = json_object_get(obj, field);
    if (!v) {
        if (required)
            map_err(pb, base, field, "is required");
        return NULL;
    }
    if (!json_is_string(v)) {
        map_err(pb, base, field, "must be a string");
        return NULL;
    }
    if (json_string_length(v) == 0) {
        map_err(pb, base, field, "must not be empty");
        return NULL;
    }
    return json_string_value(v);
}

static const char *map_fhir_id(json_t *obj, const char *base, const char *field, int required,
                               json_t *pb)
{
    const char *s = map_str(obj, base, field, required, pb);
    if (s && !fhir_id_valid(s)) {
        map_err(pb, base, field, "must be a FHIR id: 1-64 of A-Z a-z 0-9 - .");
        return NULL;
    }
    return s;
}

static const char *map_time(json_t *obj, const char *base, const char *field, json_t *pb)
{
    const char *s = map_str(obj, base, field, 0, pb);
    if (s && !timefmt_rfc3339_parse(s, NULL)) {
        map_err(pb, base, field,
                "must be an RFC 3339 date-time with a time zone, "
                "e.g. 2026-11-26T10:00:00Z");
        return NULL;
    }
    return s;
}

static json_t *map_object(json_t *obj, const char *base, const char *field, int required,
                          json_t *pb)
{
    json_t *v = json_object_get(obj, field);
    if (!v) {
        if (required)
            map_err(pb, base, field, "is required");
        return NULL;
    }
    if (!json_is_object(v)) {
        map_err(pb, base, field, "must be an object");
        return NULL;
    }
    return v;
}

static int map_has_text(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return 1;
    return 0;
}

/* Exactly one of @p a, @p b (and @p c when not NULL) present in @p obj. @returns its name. */
static const char *map_one_of(json_t *obj, const char *base, const char *a, const char *b,
                              const char *c, json_t *pb)
{
    int n = 0;
    const char *which = NULL;
    const char *names[3] = {a, b, c};
    char detail[160];

    for (int i = 0; i < 3; i++) {
        if (names[i] && json_object_get(obj, names[i])) {
            n++;
            which = names[i];
        }
    }
    if (n == 1)
        return which;
    if (c)
        snprintf(detail, sizeof(detail), "exactly one of %s, %s or %s is required", a, b, c);
    else
        snprintf(detail, sizeof(detail), "exactly one of %s or %s is required", a, b);
    map_err(pb, base, NULL, detail);
    return NULL;
}

static void map_set_id(char *dst, size_t len, const char *id)
{
    snprintf(dst, len, "%s", id);
}

static void map_time_or_now(struct ingest_event *ev, const char *when)
{
    time_t t;
    if (when && strlen(when) < sizeof(ev->time))
        snprintf(ev->time, sizeof(ev->time), "%s", when);
    else if (when && timefmt_rfc3339_parse(when, &t))
        /* RFC 3339 allows any number of fraction digits: rather than cut such a value into an
         * invalid CloudEvents time, give the same instant to the second, in UTC. */
        timefmt_rfc3339(t, ev->time, sizeof(ev->time));
    else
        timefmt_now_ms(ev->time, sizeof(ev->time));
}

/* ---- canvas.message.v1 ---- */

/* (a) our own notification {"communication_id","patient_id","occurred_at"?,"change"?} */
static int map_message_notification(json_t *body, struct ingest_event *ev, json_t *pb)
{
    static const char *const allowed[] = {"communication_id", "patient_id", "occurred_at", "change",
                                          NULL};
    const char *comm, *patient, *occurred;
    json_t *change;

    map_no_unknown(body, "", allowed, pb);
    comm = map_fhir_id(body, "", "communication_id", 1, pb);
    patient = map_fhir_id(body, "", "patient_id", 1, pb);
    occurred = map_time(body, "", "occurred_at", pb);
    change = map_object(body, "", "change", 0, pb);
    if (problem_error_count(pb))
        return -1;
    ev->data = json_pack("{s:s, s:s, s:O*}", "communication_id", comm, "patient_id", patient,
                         "change", change);
    map_set_id(ev->patient_id, sizeof(ev->patient_id), patient);
    map_time_or_now(ev, occurred);
    return ev->data ? 0 : -1;
}

/* The patient id of a reference member when it is "Patient/<id>"; NULL otherwise. */
static const char *map_patient_ref(json_t *ref_obj, char *id, size_t idlen)
{
    const char *ref = json_string_value(json_object_get(ref_obj, "reference"));
    if (ref && strncmp(ref, "Patient/", 8) == 0 && fhir_ref_parse(ref, "Patient", id, idlen) == 0)
        return id;
    return NULL;
}

/* (b) a bare FHIR Communication, as Canvas's guide protocol posts it */
static int map_message_communication(json_t *body, struct ingest_event *ev, json_t *pb)
{
    char pid[FHIR_ID_MAX + 1];
    const char *comm, *patient = NULL;
    json_t *recipients = json_object_get(body, "recipient"), *r;
    size_t i;

    comm = map_fhir_id(body, "", "id", 1, pb);
    if (recipients && !json_is_array(recipients))
        map_err(pb, "", "recipient", "must be an array");
    json_array_foreach(recipients, i, r)
    {
        if ((patient = map_patient_ref(r, pid, sizeof(pid))))
            break;
    }
    if (!patient)
        patient = map_patient_ref(json_object_get(body, "sender"), pid, sizeof(pid));
    if (!patient)
        patient = map_patient_ref(json_object_get(body, "subject"), pid, sizeof(pid));
    if (!patient)
        map_err(pb, "", "recipient",
                "no Patient/<id> reference among recipient, sender and "
                "subject");
    if (problem_error_count(pb))
        return -1;
    ev->data = json_pack("{s:s, s:s, s:O}", "communication_id", comm, "patient_id", patient,
                         "communication", body);
    map_set_id(ev->patient_id, sizeof(ev->patient_id), patient);
    map_time_or_now(ev, NULL);
    return ev->data ? 0 : -1;
}

/* (c) a Canvas plugin event {"type":"MESSAGE_CREATED","target":…,"context":{"patient":{"id"}}} */
static int map_message_plugin_event(json_t *body, struct ingest_event *ev, json_t *pb)
{
    const char *type = map_str(body, "", "type", 1, pb);
    json_t *target = json_object_get(body, "target");
    json_t *context = map_object(body, "", "context", 1, pb);
    json_t *patient_obj = context ? map_object(context, "/context", "patient", 1, pb) : NULL;
    const char *patient =
        patient_obj ? map_fhir_id(patient_obj, "/context/patient", "id", 1, pb) : NULL;
    const char *comm = NULL;

    if (type && strcmp(type, "MESSAGE_CREATED") != 0)
        map_err(pb, "", "type", "only MESSAGE_CREATED events are accepted on this route");
    if (!target)
        map_err(pb, "", "target", "is required");
    else if (json_is_string(target))
        comm = map_fhir_id(body, "", "target", 1, pb);
    else if (json_is_object(target))
        comm = map_fhir_id(target, "/target", "id", 1, pb);
    else
        map_err(pb, "", "target", "must be a message id or an object with an id");
    if (problem_error_count(pb))
        return -1;
    ev->data = json_pack("{s:s, s:s}", "communication_id", comm, "patient_id", patient);
    map_set_id(ev->patient_id, sizeof(ev->patient_id), patient);
    map_time_or_now(ev, NULL);
    return ev->data ? 0 : -1;
}

static int map_message(json_t *body, struct ingest_event *ev, json_t *pb)
{
    json_t *rt = json_object_get(body, "resourceType");
    ev->type = CE_TYPE_CANVAS_MESSAGE;
    if (rt) {
        if (!json_is_string(rt) || strcmp(json_string_value(rt), "Communication") != 0) {
            map_err(pb, "", "resourceType", "only a Communication resource is accepted");
            return -1;
        }
        return map_message_communication(body, ev, pb);
    }
    if (json_object_get(body, "type"))
        return map_message_plugin_event(body, ev, pb);
    return map_message_notification(body, ev, pb);
}

/* ---- patient.reply.v1 ---- */

static int map_email_valid(const char *s)
{
    const char *at = strchr(s, '@');
    if (!at || at == s || !at[1] || strchr(at + 1, '@') || strlen(s) > 254)
        return 0;
    for (const char *p = s; *p; p++)
        if (isspace((unsigned char)*p) || (unsigned char)*p < 0x20)
            return 0;
    return 1;
}

static int map_reply(json_t *body, struct ingest_event *ev, json_t *pb)
{
    static const char *const allowed[] = {"patient_id",  "text",    "recipient",
                                          "in_reply_to", "sent_at", NULL};
    static const char *const recipient_allowed[] = {"practitioner_id", "email", NULL};
    const char *patient, *text, *sent;
    json_t *recipient;
    char now[40];

    ev->type = CE_TYPE_PATIENT_REPLY;
    map_no_unknown(body, "", allowed, pb);
    patient = map_fhir_id(body, "", "patient_id", 1, pb);
    text = map_str(body, "", "text", 1, pb);
    if (text && !map_has_text(text))
        map_err(pb, "", "text", "must contain more than white space");
    recipient = map_object(body, "", "recipient", 0, pb);
    if (recipient) {
        const char *which;
        map_no_unknown(recipient, "/recipient", recipient_allowed, pb);
        which = map_one_of(recipient, "/recipient", "practitioner_id", "email", NULL, pb);
        if (which && !strcmp(which, "practitioner_id")) {
            map_fhir_id(recipient, "/recipient", "practitioner_id", 1, pb);
        } else if (which) {
            const char *email = map_str(recipient, "/recipient", "email", 1, pb);
            if (email && !map_email_valid(email))
                map_err(pb, "/recipient", "email", "must be an email address");
        }
    }
    map_fhir_id(body, "", "in_reply_to", 0, pb);
    sent = map_time(body, "", "sent_at", pb);
    if (problem_error_count(pb))
        return -1;

    if (!sent) {
        timefmt_now_ms(now, sizeof(now));
        json_object_set_new(body, "sent_at", json_string(now));
        sent = json_string_value(json_object_get(body, "sent_at"));
    }
    map_set_id(ev->patient_id, sizeof(ev->patient_id), patient);
    map_time_or_now(ev, sent);
    ev->data = json_incref(body);
    return 0;
}

/* ---- patient.questionnaire_response.v1 ---- */

/* FHIR form: only what Canvas accepts (CANVAS.md): valueString and valueCoding answers. */
static int map_questionnaire_fhir(json_t *body, struct ingest_event *ev, json_t *pb)
{
    char pid[FHIR_ID_MAX + 1], qid[FHIR_ID_MAX + 1];
    const char *q = map_str(body, "", "questionnaire", 1, pb);
    const char *status = map_str(body, "", "status", 1, pb);
    json_t *subject = map_object(body, "", "subject", 1, pb);
    const char *subj = subject ? map_str(subject, "/subject", "reference", 1, pb) : NULL;
    json_t *items = json_object_get(body, "item"), *item;
    const char *authored = map_time(body, "", "authored", pb);
    size_t i;

    if (q && (strncmp(q, "Questionnaire/", 14) != 0 ||
              fhir_ref_parse(q, "Questionnaire", qid, sizeof(qid)) != 0))
        map_err(pb, "", "questionnaire", "must be \"Questionnaire/<id>\"");
    if (status && strcmp(status, "completed") != 0)
        map_err(pb, "", "status", "must be \"completed\" (the only status Canvas accepts)");
    if (subj && (strncmp(subj, "Patient/", 8) != 0 ||
                 fhir_ref_parse(subj, "Patient", pid, sizeof(pid)) != 0))
        map_err(pb, "/subject", "reference", "must be \"Patient/<id>\"");
    if (!items)
        map_err(pb, "", "item", "is required");
    else if (!json_is_array(items) || json_array_size(items) == 0)
        map_err(pb, "", "item", "must be a non-empty array");

    json_array_foreach(items, i, item)
    {
        char base[PTR_MAX];
        json_t *answers, *a;
        size_t j;

        problem_pointer_index(base, sizeof(base), "/item", i);
        if (!json_is_object(item)) {
            map_err(pb, base, NULL, "must be an object");
            continue;
        }
        map_str(item, base, "linkId", 1, pb);
        answers = json_object_get(item, "answer");
        if (!json_is_array(answers) || json_array_size(answers) == 0) {
            map_err(pb, base, "answer", "must be a non-empty array");
            continue;
        }
        json_array_foreach(answers, j, a)
        {
            char abase[PTR_MAX], ab2[PTR_MAX];
            const char *which;
            problem_pointer_join(ab2, sizeof(ab2), base, "answer");
            problem_pointer_index(abase, sizeof(abase), ab2, j);
            if (!json_is_object(a)) {
                map_err(pb, abase, NULL, "must be an object");
                continue;
            }
            which = map_one_of(a, abase, "valueString", "valueCoding", NULL, pb);
            if (which && !strcmp(which, "valueString")) {
                map_str(a, abase, "valueString", 1, pb);
            } else if (which) {
                char cbase[PTR_MAX];
                json_t *coding = map_object(a, abase, "valueCoding", 1, pb);
                problem_pointer_join(cbase, sizeof(cbase), abase, "valueCoding");
                if (coding) {
                    map_str(coding, cbase, "system", 1, pb);
                    map_str(coding, cbase, "code", 1, pb);
                    if (json_object_get(coding, "display"))
                        map_str(coding, cbase, "display", 0, pb);
                }
            }
        }
    }
    if (problem_error_count(pb))
        return -1;
    ev->data = json_pack("{s:s, s:O}", "patient_id", pid, "questionnaire_response", body);
    map_set_id(ev->patient_id, sizeof(ev->patient_id), pid);
    map_time_or_now(ev, authored);
    return ev->data ? 0 : -1;
}

/* Simple form: {"patient_id","questionnaire":{"id"}|{"code"},"answers":[…],"authored_at"?} */
static int map_questionnaire_simple(json_t *body, struct ingest_event *ev, json_t *pb)
{
    static const char *const allowed[] = {"patient_id", "questionnaire", "answers", "authored_at",
                                          NULL};
    static const char *const q_allowed[] = {"id", "code", NULL};
    static const char *const a_allowed[] = {"link_id",    "question_code", "value_string",
                                            "value_code", "value_codes",   NULL};
    const char *patient, *authored;
    json_t *q, *answers, *a;
    char now[40];
    size_t i;

    map_no_unknown(body, "", allowed, pb);
    patient = map_fhir_id(body, "", "patient_id", 1, pb);
    q = map_object(body, "", "questionnaire", 1, pb);
    if (q) {
        const char *which;
        map_no_unknown(q, "/questionnaire", q_allowed, pb);
        which = map_one_of(q, "/questionnaire", "id", "code", NULL, pb);
        if (which && !strcmp(which, "id"))
            map_fhir_id(q, "/questionnaire", "id", 1, pb);
        else if (which)
            map_str(q, "/questionnaire", "code", 1, pb);
    }
    answers = json_object_get(body, "answers");
    if (!answers)
        map_err(pb, "", "answers", "is required");
    else if (!json_is_array(answers) || json_array_size(answers) == 0)
        map_err(pb, "", "answers", "must be a non-empty array");
    json_array_foreach(answers, i, a)
    {
        char base[PTR_MAX];
        const char *which;
        problem_pointer_index(base, sizeof(base), "/answers", i);
        if (!json_is_object(a)) {
            map_err(pb, base, NULL, "must be an object");
            continue;
        }
        map_no_unknown(a, base, a_allowed, pb);
        which = map_one_of(a, base, "link_id", "question_code", NULL, pb);
        if (which)
            map_str(a, base, which, 1, pb);
        which = map_one_of(a, base, "value_string", "value_code", "value_codes", pb);
        if (which && strcmp(which, "value_codes") != 0) {
            map_str(a, base, which, 1, pb);
        } else if (which) {
            json_t *codes = json_object_get(a, "value_codes"), *c;
            char cbase[PTR_MAX];
            size_t j;
            problem_pointer_join(cbase, sizeof(cbase), base, "value_codes");
            if (!json_is_array(codes) || json_array_size(codes) == 0) {
                map_err(pb, cbase, NULL, "must be a non-empty array of codes");
                continue;
            }
            json_array_foreach(codes, j, c)
            {
                char ibase[PTR_MAX];
                problem_pointer_index(ibase, sizeof(ibase), cbase, j);
                if (!json_is_string(c) || json_string_length(c) == 0) {
                    map_err(pb, ibase, NULL, "must be a non-empty string");
                    continue;
                }
                for (size_t k = 0; k < j; k++) {
                    if (json_equal(c, json_array_get(codes, k))) {
                        map_err(pb, ibase, NULL, "repeats an earlier code");
                        break; /* one error per bad entry, however many copies precede it */
                    }
                }
            }
        }
    }
    authored = map_time(body, "", "authored_at", pb);
    if (problem_error_count(pb))
        return -1;

    if (!authored) {
        timefmt_now_ms(now, sizeof(now));
        json_object_set_new(body, "authored_at", json_string(now));
        authored = json_string_value(json_object_get(body, "authored_at"));
    }
    map_set_id(ev->patient_id, sizeof(ev->patient_id), patient);
    map_time_or_now(ev, authored);
    ev->data = json_incref(body);
    return 0;
}

static int map_questionnaire(json_t *body, struct ingest_event *ev, json_t *pb)
{
    json_t *rt = json_object_get(body, "resourceType");
    ev->type = CE_TYPE_QUESTIONNAIRE;
    if (rt) {
        if (!json_is_string(rt) || strcmp(json_string_value(rt), "QuestionnaireResponse") != 0) {
            map_err(pb, "", "resourceType", "only a QuestionnaireResponse resource is accepted");
            return -1;
        }
        return map_questionnaire_fhir(body, ev, pb);
    }
    return map_questionnaire_simple(body, ev, pb);
}

int ingest_map(enum ingest_kind kind, json_t *body, struct ingest_event *ev, json_t *problem)
{
    memset(ev, 0, sizeof(*ev));
    if (!json_is_object(body)) {
        problem_add_error(problem, "", "the body must be a JSON object");
        return -1;
    }
    switch (kind) {
    case INGEST_MESSAGE:
        return map_message(body, ev, problem);
    case INGEST_REPLY:
        return map_reply(body, ev, problem);
    case INGEST_QUESTIONNAIRE:
        return map_questionnaire(body, ev, problem);
    }
    return -1;
}
