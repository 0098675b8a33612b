/* CloudEvents 1.0 structured-mode JSON: the envelope of every record on the product topics. */
#ifndef PM_CLOUDEVENT_H
#define PM_CLOUDEVENT_H

#include <jansson.h>
#include <stddef.h>

#define CE_TYPE_CANVAS_MESSAGE  "canvas.message.v1"
#define CE_TYPE_PATIENT_REPLY   "patient.reply.v1"
#define CE_TYPE_QUESTIONNAIRE   "patient.questionnaire_response.v1"
#define CE_TYPE_DELIVERY_RESULT "delivery.result.v1"
#define CE_CONTENT_TYPE         "application/cloudevents+json; charset=utf-8"
#define CE_HEADER_CONTENT_TYPE  "content-type"

/**
 * @brief Build {"specversion":"1.0","id","source","type","time","subject",
 *        "datacontenttype":"application/json","data"}. @p subject may be NULL.
 * @param data stolen (its reference is handed to the event, even on failure).
 * @returns a new reference, or NULL on allocation failure.
 */
json_t *cloudevent_new(const char *id, const char *source, const char *type, const char *time,
                       const char *subject, json_t *data);

struct json_writer;

/**
 * @brief The same envelope as cloudevent_new, written as text: "{" and the attributes in the same
 *        order, up to and including the key "data". The caller writes the data object next and
 *        then closes the envelope with json_writer_object_end.
 */
void cloudevent_write_head(struct json_writer *w, const char *id, const char *source,
                           const char *type, const char *time, const char *subject);

/* A decoded event. Pointers refer into @c root and live until cloudevent_clear. */
struct cloudevent {
    json_t *root;
    const char *id;
    const char *source;
    const char *type;
    const char *time;    /* may be NULL (optional in CloudEvents) */
    const char *subject; /* may be NULL */
    json_t *data;        /* borrowed from root; an object */
};

/**
 * @brief Decode and check a structured-mode event: valid JSON object, specversion "1.0",
 *        non-empty id/source/type strings, time (when present) RFC 3339, datacontenttype (when
 *        present) JSON, data an object.
 * @returns 0, or -1 with a reason in @p errstr that names the member but never its value.
 */
int cloudevent_parse(const void *buf, size_t len, struct cloudevent *ce, char *errstr,
                     size_t errlen);

void cloudevent_clear(struct cloudevent *ce);

#endif
