/* Check-ins (patient.questionnaire_response.v1): answers mapped through the Questionnaire, then
 * the QuestionnaireResponse created in Canvas. */
#include "deliver.h"

#include "fhir.h"
#include "fhir_ref.h"
#include "timefmt.h"

#include <stdarg.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CODE_MAX 256 /* longest questionnaire code looked up (URL-encoded three times over) */

/* A code or linkId as it may appear in an error (and so in logs, the DLQ and results): codes
 * and linkIds of a Questionnaire look like "LA33-6" or a UUID; anything else the sender put
 * there could be free text (PHI), so it is not quoted. */
static const char *ck_quotable(const char *s)
{
    size_t n = 0;
    if (!s)
        return "(none)";
    for (const char *p = s; *p; p++, n++)
        if (n >= 64 || !(isalnum((unsigned char)*p) || strchr("-._:", *p)))
            return "(a value that is not shown)";
    return n ? s : "(empty)";
}

static void ck_err(char *errstr, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void ck_err(char *errstr, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errlen, fmt, ap);
    va_end(ap);
}

static int ck_nonempty(const json_t *v)
{
    return json_is_string(v) && json_string_length(v) > 0;
}

/* ---- simple form: shape ---- */

/* One answer of data.answers. @returns 0, or -1 with @p errstr naming the member. */
static int ck_answer_check(const json_t *a, size_t i, char *errstr, size_t errlen)
{
    const json_t *lid = json_object_get(a, "link_id"), *qc = json_object_get(a, "question_code");
    const json_t *vs = json_object_get(a, "value_string"), *vc = json_object_get(a, "value_code");
    const json_t *vcs = json_object_get(a, "value_codes"), *c;
    size_t j;

    if (!json_is_object(a)) {
        ck_err(errstr, errlen, "data.answers[%zu] must be an object", i);
        return -1;
    }
    if (!!lid + !!qc != 1) {
        ck_err(errstr, errlen,
               "data.answers[%zu]: exactly one of link_id or question_code is "
               "required",
               i);
        return -1;
    }
    if (!ck_nonempty(lid ? lid : qc)) {
        ck_err(errstr, errlen, "data.answers[%zu].%s must be a non-empty string", i,
               lid ? "link_id" : "question_code");
        return -1;
    }
    if (!!vs + !!vc + !!vcs != 1) {
        ck_err(errstr, errlen,
               "data.answers[%zu]: exactly one of value_string, value_code or "
               "value_codes is required",
               i);
        return -1;
    }
    if ((vs || vc) && !ck_nonempty(vs ? vs : vc)) {
        ck_err(errstr, errlen, "data.answers[%zu].%s must be a non-empty string", i,
               vs ? "value_string" : "value_code");
        return -1;
    }
    if (vcs && (!json_is_array(vcs) || json_array_size(vcs) == 0)) {
        ck_err(errstr, errlen, "data.answers[%zu].value_codes must be a non-empty array", i);
        return -1;
    }
    json_array_foreach(vcs, j, c)
    {
        if (!ck_nonempty(c)) {
            ck_err(errstr, errlen, "data.answers[%zu].value_codes[%zu] must be a non-empty string",
                   i, j);
            return -1;
        }
        for (size_t k = 0; k < j; k++) {
            if (json_equal(c, json_array_get(vcs, k))) {
                ck_err(errstr, errlen, "data.answers[%zu].value_codes[%zu] repeats an earlier code",
                       i, j);
                return -1;
            }
        }
    }
    return 0;
}

int deliver_checkin_simple_check(const json_t *data, char *errstr, size_t errlen)
{
    json_t *q = NULL, *answers = NULL, *patient = NULL, *authored = NULL, *a;
    json_error_t jerr;
    size_t i;

    if (json_unpack_ex((json_t *)data, &jerr, 0, "{s?o, s?o, s?o, s?o}", "patient_id", &patient,
                       "questionnaire", &q, "answers", &answers, "authored_at", &authored) != 0) {
        ck_err(errstr, errlen, "data must be an object");
        return -1;
    }
    if (!fhir_id_valid(json_string_value(patient))) {
        ck_err(errstr, errlen, "data.patient_id must be a FHIR id");
        return -1;
    }
    if (!json_is_object(q) || !!json_object_get(q, "id") + !!json_object_get(q, "code") != 1) {
        ck_err(errstr, errlen,
               "data.questionnaire must be an object with exactly one of id or code");
        return -1;
    }
    if (json_object_get(q, "id") && !fhir_id_valid(json_string_value(json_object_get(q, "id")))) {
        ck_err(errstr, errlen, "data.questionnaire.id must be a FHIR id");
        return -1;
    }
    if (json_object_get(q, "code") && (!ck_nonempty(json_object_get(q, "code")) ||
                                       json_string_length(json_object_get(q, "code")) > CODE_MAX)) {
        ck_err(errstr, errlen,
               "data.questionnaire.code must be a non-empty string of at most %d "
               "bytes",
               CODE_MAX);
        return -1;
    }
    if (!json_is_array(answers) || json_array_size(answers) == 0) {
        ck_err(errstr, errlen, "data.answers must be a non-empty array");
        return -1;
    }
    json_array_foreach(answers, i, a)
    {
        if (ck_answer_check(a, i, errstr, errlen) != 0)
            return -1;
    }
    if (authored &&
        (!json_is_string(authored) || !timefmt_rfc3339_parse(json_string_value(authored), NULL))) {
        ck_err(errstr, errlen, "data.authored_at must be an RFC 3339 date-time");
        return -1;
    }
    return 0;
}

/* ---- simple form: mapping through the Questionnaire ---- */

/* What the answers say about one question of the Questionnaire. */
struct ck_question {
    const json_t *item;  /* the Questionnaire item, borrowed */
    json_t *answer;      /* the answer[] being built; NULL while unanswered */
    size_t first_answer; /* index in data.answers of the first answer to it */
};

/* The question an answer names, by linkId or by item code. @returns its index, or -1 with
 * @p errstr written (prefixed by @p who). */
static long ck_find(const json_t *items, const char *link_id, const char *code, const char *qid,
                    const char *who, char *errstr, size_t errlen)
{
    const json_t *item, *c;
    long found = -1;
    size_t i, j, n = 0;

    json_array_foreach(items, i, item)
    {
        if (link_id) {
            const char *l = json_string_value(json_object_get(item, "linkId"));
            if (l && strcmp(l, link_id) == 0)
                return (long)i;
            continue;
        }
        json_array_foreach(json_object_get(item, "code"), j, c)
        {
            const char *v = json_string_value(json_object_get(c, "code"));
            if (v && strcmp(v, code) == 0) {
                found = (long)i;
                n++;
                break;
            }
        }
    }
    if (link_id)
        ck_err(errstr, errlen, "%s: no such question in Questionnaire %s", who, qid);
    else if (n == 0)
        ck_err(errstr, errlen, "%s: no question of Questionnaire %s has that code", who, qid);
    else if (n > 1)
        ck_err(errstr, errlen, "%s: %zu questions of Questionnaire %s have that code; use link_id",
               who, n, qid);
    return n == 1 ? found : -1;
}

/* The answerOption coding for @p code, as {system, code, display} copied from the option.
 * @returns a new reference, or NULL when the question does not offer the code. */
static json_t *ck_option(const json_t *item, const char *code)
{
    const json_t *opt;
    size_t i;

    json_array_foreach(json_object_get(item, "answerOption"), i, opt)
    {
        json_t *vc = json_object_get(opt, "valueCoding");
        const char *c = json_string_value(json_object_get(vc, "code"));
        if (c && strcmp(c, code) == 0)
            return json_pack("{s:O*, s:s, s:O*}", "system", json_object_get(vc, "system"), "code",
                             c, "display", json_object_get(vc, "display"));
    }
    return NULL;
}

/* Adds answer @p a (data.answers[@p i]) to its question. @returns 0, or -1 with @p errstr. */
static int ck_apply(struct ck_question *q, const json_t *a, size_t i, const char *who, char *errstr,
                    size_t errlen)
{
    const char *type = json_string_value(json_object_get(q->item, "type"));
    int repeats = json_is_true(json_object_get(q->item, "repeats"));
    const json_t *vs = json_object_get(a, "value_string"), *vc = json_object_get(a, "value_code");
    const json_t *vcs = json_object_get(a, "value_codes"), *c;
    json_t *codes = NULL;
    size_t j;
    int rc = -1;

    if (!type || (strcmp(type, "choice") != 0 && strcmp(type, "text") != 0)) {
        ck_err(errstr, errlen,
               "%s: questions of type %s cannot be answered (only choice and "
               "text)",
               who, type ? type : "(none)");
        return -1;
    }
    /* Canvas takes one answer per question except for a multiple-choice one. */
    if (q->answer && !(strcmp(type, "choice") == 0 && repeats)) {
        ck_err(errstr, errlen,
               "%s: the question was already answered by answers[%zu] and takes a "
               "single answer",
               who, q->first_answer);
        return -1;
    }
    if (!q->answer) {
        q->answer = json_array();
        q->first_answer = i;
        if (!q->answer) {
            ck_err(errstr, errlen, "out of memory");
            return -1;
        }
    }

    if (strcmp(type, "text") == 0) {
        if (!vs) {
            ck_err(errstr, errlen, "%s: a text question takes value_string, not codes", who);
            return -1;
        }
        if (json_array_append_new(q->answer, json_pack("{s:O}", "valueString", vs)) != 0) {
            ck_err(errstr, errlen, "out of memory");
            return -1;
        }
        return 0;
    }

    if (vs) {
        ck_err(errstr, errlen,
               "%s: a choice question takes value_code or value_codes, not "
               "value_string",
               who);
        return -1;
    }
    codes = vc ? json_pack("[O]", vc) : json_incref((json_t *)vcs);
    if (!codes) {
        ck_err(errstr, errlen, "out of memory");
        return -1;
    }
    if (!repeats && json_array_size(codes) != 1) {
        ck_err(errstr, errlen, "%s: a single-choice question takes exactly one code, got %zu", who,
               json_array_size(codes));
        goto out;
    }
    json_array_foreach(codes, j, c)
    {
        const char *code = json_string_value(c);
        json_t *coding = ck_option(q->item, code), *prev;
        size_t k;

        if (!coding) {
            ck_err(errstr, errlen, "%s: code %s is not an option", who, ck_quotable(code));
            goto out;
        }
        json_array_foreach(q->answer, k, prev)
        {
            if (json_equal(json_object_get(prev, "valueCoding"), coding)) {
                ck_err(errstr, errlen, "%s: code %s was already given by answers[%zu]", who,
                       ck_quotable(code), q->first_answer);
                json_decref(coding);
                goto out;
            }
        }
        if (json_array_append_new(q->answer, json_pack("{s:o}", "valueCoding", coding)) != 0) {
            ck_err(errstr, errlen, "out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(codes);
    return rc;
}

json_t *deliver_checkin_map(const json_t *data, const json_t *questionnaire, const char *authored,
                            char *errstr, size_t errlen)
{
    const json_t *items = json_object_get(questionnaire, "item"), *a;
    const char *qid = json_string_value(json_object_get(questionnaire, "id"));
    const char *patient_id = json_string_value(json_object_get(data, "patient_id"));
    struct ck_question *qs = NULL;
    json_t *out_items = NULL, *qr = NULL;
    char qref[FHIR_ID_MAX + 16], pref[FHIR_ID_MAX + 16];
    size_t nitems, i;

    if (deliver_checkin_simple_check(data, errstr, errlen) != 0)
        return NULL;
    if (!fhir_id_valid(qid)) {
        ck_err(errstr, errlen, "the Questionnaire has no valid id");
        return NULL;
    }
    nitems = json_array_size(items);
    if (nitems == 0) {
        ck_err(errstr, errlen, "Questionnaire %s has no questions", qid);
        return NULL;
    }
    qs = calloc(nitems, sizeof(*qs));
    if (!qs) {
        ck_err(errstr, errlen, "out of memory");
        return NULL;
    }
    for (i = 0; i < nitems; i++)
        qs[i].item = json_array_get(items, i);

    json_array_foreach(json_object_get(data, "answers"), i, a)
    {
        const char *link_id = json_string_value(json_object_get(a, "link_id"));
        const char *code = json_string_value(json_object_get(a, "question_code"));
        char who[160];
        long at;

        /* The question as the event named it: linkIds and codes are the clinic's form. */
        snprintf(who, sizeof(who), "answers[%zu] (%s %s)", i, link_id ? "link_id" : "question_code",
                 ck_quotable(link_id ? link_id : code));
        at = ck_find(items, link_id, code, qid, who, errstr, errlen);
        if (at < 0 || ck_apply(&qs[at], a, i, who, errstr, errlen) != 0)
            goto out;
    }

    out_items = json_array();
    if (!out_items)
        goto oom;
    for (i = 0; i < nitems; i++) {
        json_t *it;
        if (!qs[i].answer)
            continue;
        it = json_pack("{s:O, s:O*, s:O}", "linkId", json_object_get(qs[i].item, "linkId"), "text",
                       json_object_get(qs[i].item, "text"), "answer", qs[i].answer);
        if (json_array_append_new(out_items, it) != 0)
            goto oom;
    }
    snprintf(qref, sizeof(qref), "Questionnaire/%s", qid);
    snprintf(pref, sizeof(pref), "Patient/%s", patient_id);
    /* No encounter: Canvas then files the answers in a data-import note of their own. */
    qr = json_pack("{s:s, s:s, s:s, s:{s:s}, s:{s:s}, s:s*, s:O}", "resourceType",
                   "QuestionnaireResponse", "questionnaire", qref, "status", "completed", "subject",
                   "reference", pref, "author", "reference", pref, "authored", authored, "item",
                   out_items);
    if (!qr)
        goto oom;
    goto out;

oom:
    ck_err(errstr, errlen, "out of memory");
out:
    json_decref(out_items);
    for (i = 0; i < nitems; i++)
        json_decref(qs[i].answer);
    free(qs);
    return qr;
}

/* ---- FHIR form ---- */

/* The answers of one item: only what Canvas accepts. @returns 0, or -1 with @p errstr. */
static int ck_fhir_answers(const json_t *answers, size_t i, char *errstr, size_t errlen)
{
    const json_t *ans;
    size_t j;

    if (!json_is_array(answers) || json_array_size(answers) == 0) {
        ck_err(errstr, errlen,
               "data.questionnaire_response.item[%zu].answer must be a non-empty "
               "array",
               i);
        return -1;
    }
    json_array_foreach(answers, j, ans)
    {
        const json_t *vs = json_object_get(ans, "valueString");
        const json_t *vc = json_object_get(ans, "valueCoding");
        const char *key;
        json_t *v;
        size_t nvalues = 0;

        json_object_foreach((json_t *)ans, key, v)
        {
            if (strncmp(key, "value", 5) == 0)
                nvalues++;
        }
        if (!json_is_object(ans) || nvalues != 1 || (!vs && !vc)) {
            ck_err(errstr, errlen,
                   "data.questionnaire_response.item[%zu].answer[%zu] must have "
                   "exactly one value, valueString or valueCoding",
                   i, j);
            return -1;
        }
        if (vs && !ck_nonempty(vs)) {
            ck_err(errstr, errlen,
                   "data.questionnaire_response.item[%zu].answer[%zu].valueString "
                   "must be a non-empty string",
                   i, j);
            return -1;
        }
        if (vc &&
            (!json_is_object(vc) || !ck_nonempty(json_object_get(vc, "system")) ||
             !ck_nonempty(json_object_get(vc, "code")) ||
             (json_object_get(vc, "display") && !ck_nonempty(json_object_get(vc, "display"))))) {
            ck_err(errstr, errlen,
                   "data.questionnaire_response.item[%zu].answer[%zu].valueCoding "
                   "must have system and code (and display, when present) as "
                   "non-empty strings",
                   i, j);
            return -1;
        }
    }
    return 0;
}

json_t *deliver_checkin_fhir_prepare(const json_t *data, char *errstr, size_t errlen)
{
    const char *patient_id = json_string_value(json_object_get(data, "patient_id"));
    json_t *src = json_object_get(data, "questionnaire_response"), *qr = NULL, *item;
    json_t *rt = NULL, *q = NULL, *status = NULL, *subject = NULL, *authored = NULL;
    json_t *items = NULL, *author = NULL;
    char id[FHIR_ID_MAX + 1], pref[FHIR_ID_MAX + 16];
    const char *s;
    size_t i;

    if (!fhir_id_valid(patient_id)) {
        ck_err(errstr, errlen, "data.patient_id must be a FHIR id");
        return NULL;
    }
    if (!json_is_object(src)) {
        ck_err(errstr, errlen, "data.questionnaire_response must be an object");
        return NULL;
    }
    json_unpack(src, "{s?o, s?o, s?o, s?o, s?o, s?o, s?o}", "resourceType", &rt, "questionnaire",
                &q, "status", &status, "subject", &subject, "item", &items, "authored", &authored,
                "author", &author);
    if (rt &&
        (!json_is_string(rt) || strcmp(json_string_value(rt), "QuestionnaireResponse") != 0)) {
        ck_err(errstr, errlen,
               "data.questionnaire_response.resourceType must be "
               "\"QuestionnaireResponse\"");
        return NULL;
    }
    s = json_string_value(q);
    if (!s || strncmp(s, "Questionnaire/", 14) != 0 ||
        fhir_ref_parse(s, "Questionnaire", id, sizeof(id)) != 0) {
        ck_err(errstr, errlen,
               "data.questionnaire_response.questionnaire must be "
               "\"Questionnaire/<id>\"");
        return NULL;
    }
    s = json_string_value(status);
    if (!s || strcmp(s, "completed") != 0) {
        ck_err(errstr, errlen, "data.questionnaire_response.status must be \"completed\"");
        return NULL;
    }
    snprintf(pref, sizeof(pref), "Patient/%s", patient_id);
    s = json_string_value(json_object_get(subject, "reference"));
    if (!s || strcmp(s, pref) != 0) {
        ck_err(errstr, errlen,
               "data.questionnaire_response.subject.reference must be "
               "\"Patient/<data.patient_id>\"");
        return NULL;
    }
    if (authored &&
        (!json_is_string(authored) || !timefmt_rfc3339_parse(json_string_value(authored), NULL))) {
        ck_err(errstr, errlen,
               "data.questionnaire_response.authored must be an RFC 3339 "
               "date-time");
        return NULL;
    }
    if (author && !json_is_string(json_object_get(author, "reference"))) {
        ck_err(errstr, errlen, "data.questionnaire_response.author must have a reference");
        return NULL;
    }
    if (!json_is_array(items) || json_array_size(items) == 0) {
        ck_err(errstr, errlen, "data.questionnaire_response.item must be a non-empty array");
        return NULL;
    }
    json_array_foreach(items, i, item)
    {
        if (!ck_nonempty(json_object_get(item, "linkId"))) {
            ck_err(errstr, errlen,
                   "data.questionnaire_response.item[%zu].linkId must be a "
                   "non-empty string",
                   i);
            return NULL;
        }
        if (ck_fhir_answers(json_object_get(item, "answer"), i, errstr, errlen) != 0)
            return NULL;
    }

    qr = json_deep_copy(src);
    if (!qr) {
        ck_err(errstr, errlen, "out of memory");
        return NULL;
    }
    json_object_set_new(qr, "resourceType", json_string("QuestionnaireResponse"));
    json_object_del(qr, "id");
    json_object_del(qr, "encounter");
    if (!author)
        json_object_set_new(qr, "author", json_pack("{s:s}", "reference", pref));
    return qr;
}

/* ---- the handler ---- */

/* The Questionnaire a simple-form check-in names, through app->questionnaires.
 * @returns a new reference, or NULL with @p out set (RETRY or PERMANENT). */
static json_t *ck_questionnaire(struct deliver_app *app, const json_t *ref,
                                struct consumer_outcome *out)
{
    const char *id = json_string_value(json_object_get(ref, "id"));
    const char *code = json_string_value(json_object_get(ref, "code"));
    char key[CODE_MAX + 8], enc[3 * CODE_MAX + 1], query[3 * CODE_MAX + 64];
    struct fhir_error ferr;
    json_t *q, *found = NULL;

    snprintf(key, sizeof(key), "%s:%s", id ? "id" : "code", id ? id : code);
    q = deliver_cache_get(app->questionnaires, key);
    if (q)
        return q;
    if (id) {
        q = fhir_read(app->fhir, "Questionnaire", id, &ferr);
        if (!q) {
            deliver_writeback_fhir_failure(out, &ferr);
            return NULL;
        }
        deliver_cache_put(app->questionnaires, key, q);
        return q;
    }

    if (fhir_url_encode(code, enc, sizeof(enc)) != 0) {
        out->verdict = CONSUMER_INVALID;
        snprintf(out->error, sizeof(out->error), "data.questionnaire.code is too long");
        return NULL;
    }
    snprintf(query, sizeof(query), "questionnaire-code=%s&status=active", enc);
    found = fhir_search(app->fhir, "Questionnaire", query, &ferr);
    if (!found) {
        deliver_writeback_fhir_failure(out, &ferr);
        return NULL;
    }
    if (json_array_size(found) != 1) {
        out->verdict = CONSUMER_PERMANENT;
        if (json_array_size(found) == 0)
            snprintf(out->error, sizeof(out->error),
                     "questionnaire.code %.100s: no active questionnaire with that code", code);
        else
            snprintf(out->error, sizeof(out->error),
                     "questionnaire.code %.100s: %zu active questionnaires have that code; use "
                     "questionnaire.id",
                     code, json_array_size(found));
        json_decref(found);
        return NULL;
    }
    q = json_incref(json_array_get(found, 0));
    json_decref(found);
    deliver_cache_put(app->questionnaires, key, q);
    id = json_string_value(json_object_get(q, "id"));
    if (fhir_id_valid(id)) {
        snprintf(key, sizeof(key), "id:%s", id);
        deliver_cache_put(app->questionnaires, key, q);
    }
    return q;
}

void deliver_checkin_handle(void *arg, struct consumer_event *ev, struct consumer_outcome *out)
{
    struct deliver_app *app = arg;
    const json_t *data = ev->ce->data;
    int fhir_form = json_object_get(data, "questionnaire_response") != NULL;
    json_t *questionnaire = NULL, *qr = NULL;
    struct fhir_error ferr;
    const char *authored, *qid = NULL;
    char id[FHIR_ID_MAX + 1];

    /* The shape is checked before anything else: a malformed event is "invalid" even when it
     * is a repeat. */
    if (fhir_form && (json_object_get(data, "questionnaire") || json_object_get(data, "answers"))) {
        out->verdict = CONSUMER_INVALID;
        snprintf(out->error, sizeof(out->error),
                 "data must be either the FHIR form (questionnaire_response) or the simple form "
                 "(questionnaire, answers), not both");
        return;
    }
    if (fhir_form ? !(qr = deliver_checkin_fhir_prepare(data, out->error, sizeof(out->error)))
                  : deliver_checkin_simple_check(data, out->error, sizeof(out->error)) != 0) {
        out->verdict = CONSUMER_INVALID;
        return;
    }
    if (deliver_writeback_begin(app, ev, "questionnaire_response", out) != 0)
        goto out;
    if (fhir_form)
        qid = strchr(json_string_value(json_object_get(qr, "questionnaire")), '/') + 1;

    if (!fhir_form) {
        questionnaire = ck_questionnaire(app, json_object_get(data, "questionnaire"), out);
        if (!questionnaire)
            goto out;
        qid = json_string_value(json_object_get(questionnaire, "id"));
        authored = json_string_value(json_object_get(data, "authored_at"));
        if (!authored)
            authored = ev->ce->time; /* producers other than pm-ingest may leave it out */
        qr = deliver_checkin_map(data, questionnaire, authored, out->error, sizeof(out->error));
        if (!qr) {
            /* The answers do not fit the form: nothing is sent, Canvas would refuse it. */
            out->verdict = CONSUMER_PERMANENT;
            goto out;
        }
    }
    if (fhir_create(app->fhir, "QuestionnaireResponse", qr, id, sizeof(id), &ferr) != 0) {
        deliver_writeback_fhir_failure(out, &ferr);
        goto out;
    }
    log_info("check-in written to Canvas", LOG_S("event_id", ev->ce->id),
             LOG_S("patient_id", json_string_value(json_object_get(data, "patient_id"))),
             LOG_S("questionnaire_id", qid), LOG_S("resource_id", id));
    deliver_writeback_created(app, ev, "questionnaire_response", id, out);
out:
    json_decref(qr);
    json_decref(questionnaire);
}

void deliver_checkin_failed(void *arg, struct consumer_event *ev, const char *error_class,
                            const char *error)
{
    (void)arg;
    (void)error_class;
    consumer_publish_result(ev, "questionnaire_response", "canvas", "failed", error, NULL);
}
