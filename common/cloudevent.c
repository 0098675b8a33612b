/* CloudEvents 1.0 structured-mode envelope: building on ingest, checked decoding on deliver. */
#include "cloudevent.h"

#include "json_load.h"
#include "json_writer.h"
#include "timefmt.h"

#include <stdio.h>
#include <string.h>

json_t *cloudevent_new(const char *id, const char *source, const char *type, const char *time,
                       const char *subject, json_t *data)
{
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s*, s:s, s:o}", "specversion", "1.0", "id",
                           id, "source", source, "type", type, "time", time, "subject", subject,
                           "datacontenttype", "application/json", "data", data);
    return ev; /* json_pack's "o" steals data even when packing fails */
}

void cloudevent_write_head(struct json_writer *w, const char *id, const char *source,
                           const char *type, const char *time, const char *subject)
{
    json_writer_object_begin(w);
    json_writer_member(w, "specversion", "1.0");
    json_writer_member(w, "id", id);
    json_writer_member(w, "source", source);
    json_writer_member(w, "type", type);
    json_writer_member(w, "time", time);
    json_writer_member_opt(w, "subject", subject);
    json_writer_member(w, "datacontenttype", "application/json");
    json_writer_key(w, "data");
}

static const char *ce_str(json_t *root, const char *name, int required, char *errstr, size_t errlen,
                          int *bad)
{
    json_t *v = json_object_get(root, name);
    if (!v) {
        if (required) {
            snprintf(errstr, errlen, "CloudEvents attribute '%s' is missing", name);
            *bad = 1;
        }
        return NULL;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        snprintf(errstr, errlen, "CloudEvents attribute '%s' is not a non-empty string", name);
        *bad = 1;
        return NULL;
    }
    return json_string_value(v);
}

int cloudevent_parse(const void *buf, size_t len, struct cloudevent *ce, char *errstr,
                     size_t errlen)
{
    json_error_t jerr;
    const char *specversion, *dct = NULL;
    int bad = 0;

    memset(ce, 0, sizeof(*ce));
    ce->root = json_load_fast(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!ce->root) {
        snprintf(errstr, errlen, "not JSON (line %d column %d)", jerr.line, jerr.column);
        return -1;
    }
    if (!json_is_object(ce->root)) {
        snprintf(errstr, errlen, "not a JSON object");
        goto fail;
    }
    specversion = ce_str(ce->root, "specversion", 1, errstr, errlen, &bad);
    if (bad)
        goto fail;
    if (strcmp(specversion, "1.0") != 0) {
        snprintf(errstr, errlen, "specversion is not 1.0");
        goto fail;
    }
    ce->id = ce_str(ce->root, "id", 1, errstr, errlen, &bad);
    if (!bad)
        ce->source = ce_str(ce->root, "source", 1, errstr, errlen, &bad);
    if (!bad)
        ce->type = ce_str(ce->root, "type", 1, errstr, errlen, &bad);
    if (!bad)
        ce->time = ce_str(ce->root, "time", 0, errstr, errlen, &bad);
    if (!bad)
        ce->subject = ce_str(ce->root, "subject", 0, errstr, errlen, &bad);
    if (!bad)
        dct = ce_str(ce->root, "datacontenttype", 0, errstr, errlen, &bad);
    if (bad)
        goto fail;
    if (ce->time && !timefmt_rfc3339_parse(ce->time, NULL)) {
        snprintf(errstr, errlen, "CloudEvents attribute 'time' is not RFC 3339");
        goto fail;
    }
    if (dct && strncmp(dct, "application/json", 16) != 0) {
        snprintf(errstr, errlen, "datacontenttype is not application/json");
        goto fail;
    }
    ce->data = json_object_get(ce->root, "data");
    if (!json_is_object(ce->data)) {
        snprintf(errstr, errlen, "data is missing or not a JSON object");
        goto fail;
    }
    return 0;
fail:
    cloudevent_clear(ce);
    return -1;
}

void cloudevent_clear(struct cloudevent *ce)
{
    json_decref(ce->root);
    memset(ce, 0, sizeof(*ce));
}
