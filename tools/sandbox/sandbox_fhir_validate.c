/* pm-sandbox FHIR create rules: Communication and QuestionnaireResponse validated as Canvas does.
 */
#include "sandbox.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sandbox_outcome_set(struct sandbox_outcome *o, int status, const char *code, const char *fmt,
                         ...)
{
    va_list ap;
    o->status = status;
    o->code = code;
    va_start(ap, fmt);
    vsnprintf(o->text, sizeof(o->text), fmt, ap);
    va_end(ap);
}

json_t *sandbox_outcome_json(const char *code, const char *text)
{
    return json_pack("{s:s, s:[{s:s, s:s, s:{s:s}}]}", "resourceType", "OperationOutcome", "issue",
                     "severity", "error", "code", code, "details", "text", text);
}

int sandbox_reference_split(const char *ref, char *type, size_t typelen, char *id, size_t idlen)
{
    const char *slash, *tstart;
    size_t tl, il;

    if (!ref)
        return -1;
    slash = strrchr(ref, '/');
    if (!slash || slash == ref || !slash[1])
        return -1;
    tstart = slash;
    while (tstart > ref && tstart[-1] != '/')
        tstart--;
    tl = (size_t)(slash - tstart);
    il = strlen(slash + 1);
    if (tl == 0 || tl >= typelen || il >= idlen)
        return -1;
    memcpy(type, tstart, tl);
    type[tl] = '\0';
    memcpy(id, slash + 1, il + 1);
    return 0;
}

/* Appends ".key" or "[i]" to a path being built; silently truncates (the path is diagnostic). */
static void sandbox_path_push(char *path, size_t len, const char *key, long index)
{
    size_t used = strlen(path);
    if (used >= len)
        return;
    if (key)
        snprintf(path + used, len - used, "%s%s", used ? "." : "", key);
    else
        snprintf(path + used, len - used, "[%ld]", index);
}

int sandbox_json_find_empty_string(const json_t *v, char *path, size_t pathlen)
{
    size_t used = strlen(path);

    if (json_is_string(v))
        return json_string_length(v) == 0;
    if (json_is_object(v)) {
        const char *key;
        json_t *child;
        json_object_foreach((json_t *)v, key, child)
        {
            sandbox_path_push(path, pathlen, key, 0);
            if (sandbox_json_find_empty_string(child, path, pathlen))
                return 1;
            path[used] = '\0';
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child)
        {
            sandbox_path_push(path, pathlen, NULL, (long)i);
            if (sandbox_json_find_empty_string(child, path, pathlen))
                return 1;
            path[used] = '\0';
        }
    }
    return 0;
}

/* Checks the parts every create shares: an object of @p type, and no empty string anywhere. */
static int sandbox_create_common(const json_t *body, const char *type, struct sandbox_outcome *out)
{
    char path[160] = "";
    const char *rt;

    if (!json_is_object(body)) {
        sandbox_outcome_set(out, 400, "invalid", "The request body must be a %s resource", type);
        return -1;
    }
    rt = json_string_value(json_object_get(body, "resourceType"));
    if (json_object_get(body, "resourceType") && (!rt || strcmp(rt, type) != 0)) {
        sandbox_outcome_set(out, 400, "invalid", "resourceType must be '%s'", type);
        return -1;
    }
    if (sandbox_json_find_empty_string(body, path, sizeof(path))) {
        sandbox_outcome_set(out, 400, "invalid", "String values must be at least length 1");
        return -1;
    }
    return 0;
}

/* A loose FHIR dateTime check: "YYYY", "YYYY-MM", "YYYY-MM-DD" or a full timestamp. */
static int sandbox_datetime_valid(const char *s)
{
    static const char pattern[] = "dddd-dd-ddTdd:dd";
    size_t n = strlen(s);

    if (n != 4 && n != 7 && n != 10 && n < 16)
        return 0;
    for (size_t i = 0; i < n && i < sizeof(pattern) - 1; i++) {
        if (pattern[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pattern[i])
            return 0;
    }
    return 1;
}

/* A Reference the create names: "Type/id", with an optional "type" that must agree. */
struct sandbox_ref {
    char type[64];
    char id[128];
};

static int sandbox_ref_parse(const json_t *ref, const char *field, struct sandbox_ref *r,
                             struct sandbox_outcome *out)
{
    const char *reference = json_string_value(json_object_get(ref, "reference"));
    const char *declared = json_string_value(json_object_get(ref, "type"));

    if (!json_is_object(ref) || !reference) {
        sandbox_outcome_set(out, 400, "invalid", "%s.reference is required", field);
        return -1;
    }
    if (sandbox_reference_split(reference, r->type, sizeof(r->type), r->id, sizeof(r->id)) != 0) {
        sandbox_outcome_set(out, 400, "invalid", "%s.reference must look like '<Type>/<id>'",
                            field);
        return -1;
    }
    if (declared && strcmp(declared, r->type) != 0) {
        sandbox_outcome_set(out, 400, "invalid", "%s.type does not match its reference", field);
        return -1;
    }
    return 0;
}

/* The referenced resource must exist: Canvas answers with a business rule violation. */
static int sandbox_ref_exists(struct sandbox_store *st, const struct sandbox_ref *r,
                              struct sandbox_outcome *out)
{
    if (!sandbox_store_exists(st, r->type, r->id)) {
        sandbox_outcome_set(out, 422, "business-rule", "Unknown %s resource '%s'", r->type, r->id);
        return -1;
    }
    return 0;
}

static const char *const sandbox_comm_unsupported[] = {"category", "medium",    "inResponseTo",
                                                       "partOf",   "encounter", NULL};
static const char *const sandbox_comm_statuses[] = {"preparation",      "in-progress", "not-done",
                                                    "on-hold",          "stopped",     "completed",
                                                    "entered-in-error", "unknown",     NULL};

int sandbox_communication_validate(struct sandbox_store *st, const json_t *body,
                                   struct sandbox_outcome *out)
{
    const char *status;
    json_t *recipient, *payload, *item;
    struct sandbox_ref sender, rcpt;
    size_t i;
    int known = 0;

    if (sandbox_create_common(body, "Communication", out) != 0)
        return -1;
    for (i = 0; sandbox_comm_unsupported[i]; i++) {
        if (json_object_get(body, sandbox_comm_unsupported[i])) {
            sandbox_outcome_set(out, 400, "invalid",
                                "Communication.%s is not supported by this API",
                                sandbox_comm_unsupported[i]);
            return -1;
        }
    }
    status = json_string_value(json_object_get(body, "status"));
    if (!status) {
        sandbox_outcome_set(out, 400, "invalid", "Communication.status is required");
        return -1;
    }
    for (i = 0; sandbox_comm_statuses[i]; i++)
        known |= strcmp(status, sandbox_comm_statuses[i]) == 0;
    if (!known) {
        sandbox_outcome_set(out, 400, "invalid", "Communication.status '%s' is not a valid code",
                            status);
        return -1;
    }
    if (!json_object_get(body, "sender")) {
        sandbox_outcome_set(out, 400, "invalid", "Communication.sender is required");
        return -1;
    }
    if (sandbox_ref_parse(json_object_get(body, "sender"), "Communication.sender", &sender, out))
        return -1;
    recipient = json_object_get(body, "recipient");
    if (!json_is_array(recipient) || json_array_size(recipient) != 1) {
        sandbox_outcome_set(out, 400, "invalid",
                            "Communication.recipient must contain exactly one reference");
        return -1;
    }
    if (sandbox_ref_parse(json_array_get(recipient, 0), "Communication.recipient[0]", &rcpt, out) !=
        0)
        return -1;
    payload = json_object_get(body, "payload");
    if (!json_is_array(payload) || json_array_size(payload) == 0) {
        sandbox_outcome_set(out, 400, "invalid", "Communication.payload is required");
        return -1;
    }
    json_array_foreach(payload, i, item)
    {
        if (!json_is_string(json_object_get(item, "contentString"))) {
            sandbox_outcome_set(out, 400, "invalid",
                                "Communication.payload[%zu].contentString is required", i);
            return -1;
        }
    }
    for (i = 0; i < 2; i++) {
        const char *field = i ? "received" : "sent";
        json_t *v = json_object_get(body, field);
        if (v && (!json_is_string(v) || !sandbox_datetime_valid(json_string_value(v)))) {
            sandbox_outcome_set(out, 400, "invalid", "Communication.%s is not a valid dateTime",
                                field);
            return -1;
        }
    }
    if (!((strcmp(sender.type, "Patient") == 0 && strcmp(rcpt.type, "Practitioner") == 0) ||
          (strcmp(sender.type, "Practitioner") == 0 && strcmp(rcpt.type, "Patient") == 0))) {
        sandbox_outcome_set(out, 422, "business-rule",
                            "One of sender and recipient must be a Patient and the other a "
                            "Practitioner");
        return -1;
    }
    if (sandbox_ref_exists(st, &sender, out) != 0 || sandbox_ref_exists(st, &rcpt, out) != 0)
        return -1;
    return 0;
}

/* {"reference": "Type/id", "type": "Type"} for a reference that passed sandbox_ref_parse. */
static json_t *sandbox_ref_json(const json_t *ref)
{
    struct sandbox_ref r;
    struct sandbox_outcome ignored;
    if (sandbox_ref_parse(ref, "", &r, &ignored) != 0)
        return json_deep_copy(ref);
    return json_pack("{s:s, s:s}", "reference",
                     json_string_value(json_object_get(ref, "reference")), "type", r.type);
}

json_t *sandbox_communication_normalize(const json_t *body, const char *id, const char *now)
{
    json_t *sent = json_object_get(body, "sent");
    json_t *sent_v = sent ? json_incref(sent) : json_string(now);
    json_t *payload = json_array();
    json_t *item;
    size_t i;

    json_array_foreach(json_object_get(body, "payload"), i, item)
    {
        json_array_append_new(
            payload, json_pack("{s:O}", "contentString", json_object_get(item, "contentString")));
    }
    return json_pack(
        "{s:s, s:s, s:s, s:o, s:O*, s:[o], s:o, s:o}", "resourceType", "Communication", "id", id,
        "status", "completed", "sent", sent_v, "received", json_object_get(body, "received"),
        "recipient", sandbox_ref_json(json_array_get(json_object_get(body, "recipient"), 0)),
        "sender", sandbox_ref_json(json_object_get(body, "sender")), "payload", payload);
}

/* Finds the questionnaire item with @p link_id, looking into nested groups. */
static const json_t *sandbox_q_find_item(const json_t *items, const char *link_id)
{
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        const char *lid = json_string_value(json_object_get(item, "linkId"));
        const json_t *nested;
        if (lid && strcmp(lid, link_id) == 0)
            return item;
        nested = sandbox_q_find_item(json_object_get(item, "item"), link_id);
        if (nested)
            return nested;
    }
    return NULL;
}

/* The first key of @p answer that is a value[x], counting them into @p n. */
static const char *sandbox_answer_value_key(const json_t *answer, size_t *n)
{
    const char *key, *first = NULL;
    json_t *v;
    *n = 0;
    json_object_foreach((json_t *)answer, key, v)
    {
        if (sandbox_starts_with(key, "value")) {
            if (!first)
                first = key;
            (*n)++;
        }
    }
    return first;
}

/* One valueCoding against the item's answerOption codings. */
static int sandbox_qr_check_coding(const json_t *qitem, const json_t *coding,
                                   struct sandbox_outcome *out)
{
    const char *code = json_string_value(json_object_get(coding, "code"));
    const char *system = json_string_value(json_object_get(coding, "system"));
    json_t *opt;
    size_t i;
    int code_seen = 0;

    if (!json_is_object(coding) || !code) {
        sandbox_outcome_set(out, 400, "invalid", "valueCoding.code is required");
        return -1;
    }
    json_array_foreach(json_object_get(qitem, "answerOption"), i, opt)
    {
        json_t *vc = json_object_get(opt, "valueCoding");
        const char *ocode = json_string_value(json_object_get(vc, "code"));
        const char *osys = json_string_value(json_object_get(vc, "system"));
        if (!ocode || strcmp(ocode, code) != 0)
            continue;
        code_seen = 1;
        if (system && osys && strcmp(system, osys) == 0)
            return 0;
    }
    if (code_seen) {
        sandbox_outcome_set(out, 422, "business-rule",
                            "Question received an invalid response option system: %s",
                            system ? system : "(none)");
        return -1;
    }
    sandbox_outcome_set(out, 422, "business-rule",
                        "Question received an invalid response option code: %s", code);
    return -1;
}

/* The answers to one question. */
static int sandbox_qr_check_answers(const json_t *qitem, const char *link_id, const json_t *answers,
                                    struct sandbox_outcome *out)
{
    const char *qtype = json_string_value(json_object_get(qitem, "type"));
    int choice = qtype && strcmp(qtype, "choice") == 0;
    int repeats = json_is_true(json_object_get(qitem, "repeats"));
    json_t *answer;
    size_t i, n;

    if (!answers)
        return 0;
    if (!json_is_array(answers)) {
        sandbox_outcome_set(out, 400, "invalid",
                            "QuestionnaireResponse.item.answer must be a "
                            "list");
        return -1;
    }
    if (json_array_size(answers) > 1 && !(choice && repeats)) {
        sandbox_outcome_set(out, 422, "business-rule",
                            "Question '%s' accepts a single response, received %zu", link_id,
                            json_array_size(answers));
        return -1;
    }
    json_array_foreach(answers, i, answer)
    {
        const char *key = json_is_object(answer) ? sandbox_answer_value_key(answer, &n) : NULL;
        if (!key || n != 1) {
            sandbox_outcome_set(out, 400, "invalid",
                                "Each answer must have exactly one value[x] element");
            return -1;
        }
        if (strcmp(key, "valueString") == 0 && !choice) {
            if (!json_is_string(json_object_get(answer, key))) {
                sandbox_outcome_set(out, 400, "invalid", "valueString must be a string");
                return -1;
            }
        } else if (strcmp(key, "valueCoding") == 0 && choice) {
            if (sandbox_qr_check_coding(qitem, json_object_get(answer, key), out) != 0)
                return -1;
        } else {
            sandbox_outcome_set(out, 422, "business-rule",
                                "Question received an invalid response type: %s (question '%s' "
                                "is of type %s)",
                                key, link_id, qtype ? qtype : "unknown");
            return -1;
        }
    }
    return 0;
}

int sandbox_qr_check_items(const json_t *questionnaire, const json_t *items,
                           struct sandbox_outcome *out)
{
    const json_t *qitems = json_object_get(questionnaire, "item");
    const char *qid = json_string_value(json_object_get(questionnaire, "id"));
    json_t *item, *seen = NULL;
    size_t i;
    int rc = -1;

    if (!items)
        return 0;
    if (!json_is_array(items)) {
        sandbox_outcome_set(out, 400, "invalid", "QuestionnaireResponse.item must be a list");
        return -1;
    }
    seen = json_object();
    json_array_foreach(items, i, item)
    {
        const char *link_id = json_string_value(json_object_get(item, "linkId"));
        const json_t *qitem;
        if (!json_is_object(item) || !link_id) {
            sandbox_outcome_set(out, 400, "invalid",
                                "QuestionnaireResponse.item[%zu].linkId is required", i);
            goto out;
        }
        qitem = sandbox_q_find_item(qitems, link_id);
        if (!qitem) {
            sandbox_outcome_set(out, 422, "business-rule",
                                "Question '%s' is not part of Questionnaire '%s'", link_id,
                                qid ? qid : "");
            goto out;
        }
        if (json_object_get(seen, link_id)) {
            sandbox_outcome_set(out, 422, "business-rule", "Question '%s' is answered twice",
                                link_id);
            goto out;
        }
        json_object_set_new(seen, link_id, json_true());
        if (sandbox_qr_check_answers(qitem, link_id, json_object_get(item, "answer"), out) != 0)
            goto out;
    }
    rc = 0;
out:
    json_decref(seen);
    return rc;
}

int sandbox_qr_validate(struct sandbox_store *st, const json_t *body, struct sandbox_outcome *out)
{
    const char *qref, *status;
    char qtype[64], qid[128];
    struct sandbox_ref subject, author;
    json_t *questionnaire = NULL, *v;
    int rc = -1;

    if (sandbox_create_common(body, "QuestionnaireResponse", out) != 0)
        return -1;
    v = json_object_get(body, "questionnaire");
    qref = json_string_value(v);
    if (!qref) {
        sandbox_outcome_set(out, 400, "invalid",
                            "QuestionnaireResponse.questionnaire is required as the string "
                            "'Questionnaire/<id>'");
        return -1;
    }
    if (!sandbox_starts_with(qref, "Questionnaire/") ||
        sandbox_reference_split(qref, qtype, sizeof(qtype), qid, sizeof(qid)) != 0 ||
        strcmp(qtype, "Questionnaire") != 0 || strchr(qid, '/')) {
        sandbox_outcome_set(out, 400, "invalid",
                            "QuestionnaireResponse.questionnaire must look like "
                            "'Questionnaire/<id>'");
        return -1;
    }
    status = json_string_value(json_object_get(body, "status"));
    if (!status) {
        sandbox_outcome_set(out, 400, "invalid", "QuestionnaireResponse.status is required");
        return -1;
    }
    if (strcmp(status, "completed") != 0) {
        sandbox_outcome_set(out, 422, "business-rule",
                            "QuestionnaireResponse.status must be 'completed'");
        return -1;
    }
    if (!json_object_get(body, "subject")) {
        sandbox_outcome_set(out, 400, "invalid", "QuestionnaireResponse.subject is required");
        return -1;
    }
    if (sandbox_ref_parse(json_object_get(body, "subject"), "QuestionnaireResponse.subject",
                          &subject, out) != 0)
        return -1;
    if (strcmp(subject.type, "Patient") != 0) {
        sandbox_outcome_set(out, 422, "business-rule",
                            "QuestionnaireResponse.subject must reference a Patient");
        return -1;
    }
    if (sandbox_ref_exists(st, &subject, out) != 0)
        return -1;
    if (json_object_get(body, "author")) {
        if (sandbox_ref_parse(json_object_get(body, "author"), "QuestionnaireResponse.author",
                              &author, out) != 0)
            return -1;
        if (strcmp(author.type, "Patient") != 0 && strcmp(author.type, "Practitioner") != 0) {
            sandbox_outcome_set(out, 422, "business-rule",
                                "QuestionnaireResponse.author must reference a Patient or a "
                                "Practitioner");
            return -1;
        }
        if (sandbox_ref_exists(st, &author, out) != 0)
            return -1;
    }
    /* Canvas resolves the encounter; the sandbox knows only Encounters that a test seeded. */
    if (json_object_get(body, "encounter")) {
        struct sandbox_ref enc;
        if (sandbox_ref_parse(json_object_get(body, "encounter"), "QuestionnaireResponse.encounter",
                              &enc, out) != 0 ||
            sandbox_ref_exists(st, &enc, out) != 0)
            return -1;
    }
    if (json_object_get(body, "authored") &&
        (!json_is_string(json_object_get(body, "authored")) ||
         !sandbox_datetime_valid(json_string_value(json_object_get(body, "authored"))))) {
        sandbox_outcome_set(out, 400, "invalid",
                            "QuestionnaireResponse.authored is not a valid dateTime");
        return -1;
    }
    questionnaire = sandbox_store_get(st, "Questionnaire", qid);
    if (!questionnaire) {
        sandbox_outcome_set(out, 422, "business-rule", "Unknown Questionnaire resource '%s'", qid);
        goto out;
    }
    if (sandbox_qr_check_items(questionnaire, json_object_get(body, "item"), out) != 0)
        goto out;
    rc = 0;
out:
    json_decref(questionnaire);
    return rc;
}

json_t *sandbox_qr_normalize(const json_t *body, const char *id, const char *now)
{
    json_t *qr = json_deep_copy(body);
    json_t *subject;

    if (!qr)
        return NULL;
    json_object_set_new(qr, "resourceType", json_string("QuestionnaireResponse"));
    json_object_set_new(qr, "id", json_string(id));
    subject = json_object_get(body, "subject");
    json_object_set_new(qr, "subject", sandbox_ref_json(subject));
    if (json_object_get(body, "author"))
        json_object_set_new(qr, "author", sandbox_ref_json(json_object_get(body, "author")));
    else
        json_object_set_new(qr, "author",
                            json_pack("{s:s, s:s}", "reference",
                                      "Practitioner/" SANDBOX_CANVAS_BOT_ID, "type",
                                      "Practitioner"));
    if (!json_object_get(qr, "authored"))
        json_object_set_new(qr, "authored", json_string(now));
    return qr;
}
