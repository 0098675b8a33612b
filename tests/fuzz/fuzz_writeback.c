/* libFuzzer target: pm-deliver's write-back of events any Kafka producer may write: check-ins
 * (simple form through a Questionnaire, FHIR form) and patient replies (the data checks and the
 * Communication built from them).
 *
 * Input: a JSON document. [data, questionnaire] maps data through that Questionnaire; anything
 * else is data, mapped through a fixed Questionnaire with the three kinds of question Canvas
 * knows (single choice, multiple choice, text). Checked on every input: an answer is either a
 * QuestionnaireResponse of the documented shape whose items are questions of the Questionnaire,
 * or NULL with a reason; a reason never quotes a value_string or a reply text that contains '~'
 * (the seeds' marker for "the patient's words": error texts may name fields, questions and
 * codes, never what a patient wrote); an accepted reply has a valid patient id and a text, and
 * its Communication carries the text unchanged. */
#include "deliver.h"
#include "fhir_ref.h"
#include "timefmt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fixed_questionnaire[] =
    "{\"resourceType\":\"Questionnaire\",\"id\":\"47a408d7-9f1d-4cfd-97c7-aa810df9ed39\","
    "\"status\":\"active\",\"item\":["
    "{\"linkId\":\"single\",\"code\":[{\"system\":\"http://snomed.info/sct\","
    "\"code\":\"228448000\"}],\"text\":\"Exercise?\",\"type\":\"choice\",\"repeats\":false,"
    "\"answerOption\":[{\"valueCoding\":{\"system\":\"http://snomed.info/sct\","
    "\"code\":\"LA33-6\",\"display\":\"Yes\"}},{\"valueCoding\":{\"system\":"
    "\"http://snomed.info/sct\",\"code\":\"LA32-8\",\"display\":\"No\"}}]},"
    "{\"linkId\":\"multi\",\"code\":[{\"system\":\"http://snomed.info/sct\",\"code\":\"EXACT\"}],"
    "\"type\":\"choice\",\"repeats\":true,\"answerOption\":["
    "{\"valueCoding\":{\"system\":\"http://snomed.info/sct\",\"code\":\"EXACT_WALK\"}},"
    "{\"valueCoding\":{\"system\":\"http://snomed.info/sct\",\"code\":\"EXACT_RUN\"}}]},"
    "{\"linkId\":\"text\",\"code\":[{\"system\":\"http://snomed.info/sct\",\"code\":\"EXTYPE\"}],"
    "\"type\":\"text\"}]}";

/* Does @p questionnaire have an item with @p link_id (at the top level, where the mapping
 * looks)? */
static int has_item(const json_t *questionnaire, const char *link_id)
{
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(questionnaire, "item"), i, item)
    {
        const char *l = json_string_value(json_object_get(item, "linkId"));
        if (l && strcmp(l, link_id) == 0)
            return 1;
    }
    return 0;
}

/* Aborts when @p err quotes a marked value_string of @p d's answers. */
static void check_no_words(const json_t *d, const char *err)
{
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(d, "answers"), i, a)
    {
        const char *v = json_string_value(json_object_get(a, "value_string"));
        if (v && strlen(v) >= 4 && strchr(v, '~') && strstr(err, v))
            abort();
    }
}

static void check_response(const json_t *qr, const json_t *questionnaire, int simple)
{
    size_t i;
    json_t *item;
    const char *rt = json_string_value(json_object_get(qr, "resourceType"));
    const char *status = json_string_value(json_object_get(qr, "status"));
    const char *author =
        json_string_value(json_object_get(json_object_get(qr, "author"), "reference"));

    if (!rt || strcmp(rt, "QuestionnaireResponse") != 0 || !status ||
        strcmp(status, "completed") != 0 || !author || strncmp(author, "Patient/", 8) != 0)
        abort();
    if (json_object_get(qr, "id") || json_object_get(qr, "encounter"))
        abort(); /* never sent to Canvas */
    if (!json_is_array(json_object_get(qr, "item")) ||
        json_array_size(json_object_get(qr, "item")) == 0)
        abort();
    json_array_foreach(json_object_get(qr, "item"), i, item)
    {
        const char *l = json_string_value(json_object_get(item, "linkId"));
        if (!l || (simple && !has_item(questionnaire, l)))
            abort();
        if (json_array_size(json_object_get(item, "answer")) == 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *fixed;
    json_t *in = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    json_t *d, *q, *qr, *reply;
    char err[512];

    if (!fixed && !(fixed = json_loads(fixed_questionnaire, 0, NULL)))
        abort();
    if (!in)
        return 0;
    if (json_is_array(in) && json_array_size(in) == 2) {
        d = json_array_get(in, 0);
        q = json_array_get(in, 1);
    } else {
        d = in;
        q = fixed;
    }

    err[0] = '\0';
    if (deliver_checkin_simple_check(d, err, sizeof(err)) != 0) {
        if (!err[0])
            abort();
        check_no_words(d, err);
    }
    err[0] = '\0';
    qr = deliver_checkin_map(d, q, "2026-03-02T15:04:05Z", err, sizeof(err));
    if (qr) {
        check_response(qr, q, 1);
    } else {
        if (!err[0])
            abort(); /* a rejection always says why */
        check_no_words(d, err);
    }
    json_decref(qr);

    err[0] = '\0';
    qr = deliver_checkin_fhir_prepare(d, err, sizeof(err));
    if (qr)
        check_response(qr, q, 0);
    else if (!err[0])
        abort();
    json_decref(qr);

    /* A patient reply with the same data. */
    {
        struct deliver_reply_req r;
        err[0] = '\0';
        if (deliver_reply_parse(d, "2026-03-02T15:04:05Z", &r, err, sizeof(err)) == 0) {
            const char *got;
            if (!fhir_id_valid(r.patient_id) || !r.text || !r.sent ||
                (r.practitioner_id && r.email) ||
                (r.practitioner_id && !fhir_id_valid(r.practitioner_id)) ||
                (r.in_reply_to && !fhir_id_valid(r.in_reply_to)) ||
                !timefmt_rfc3339_parse(r.sent, NULL))
                abort();
            reply = deliver_reply_resource(r.patient_id, "aaaabbbbccccddddeeeeffff00001111", r.text,
                                           r.sent);
            if (!reply)
                abort();
            got = json_string_value(json_object_get(
                json_array_get(json_object_get(reply, "payload"), 0), "contentString"));
            if (!got || strcmp(got, r.text) != 0 || json_object_get(reply, "received"))
                abort();
            json_decref(reply);
        } else {
            const char *text = json_string_value(json_object_get(d, "text"));
            if (!err[0] || (text && strlen(text) >= 4 && strchr(text, '~') && strstr(err, text)))
                abort();
        }
    }
    json_decref(in);
    return 0;
}
