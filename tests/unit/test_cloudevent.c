/* Unit tests for cloudevent: building the structured-mode envelope and the checks of decoding. */
#include "cloudevent.h"
#include "json_writer.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

/* Values that must never reach an error text (ids and subjects name patients). */
static const char *const VALUES[] = {
    "EVT-ID-7f3a",    "SRC-pm-ingest-x", "TYPE-canvas.msg", "Patient/SUBJ-PHI-9c1d",
    "DATA-PHI-hello", "TIME-not-a-time", "SPEC-0.3",        "CT-text/plain-zz"};

static char *dump(json_t *ev)
{
    char *s = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    return s;
}

static void test_build(void)
{
    json_t *data = json_pack("{s:s, s:s}", "communication_id", "c-1", "patient_id", "p-1");
    json_t *ev = cloudevent_new("id-1", "pm-ingest", CE_TYPE_CANVAS_MESSAGE, "2026-11-26T10:00:00Z",
                                "Patient/p-1", data);
    json_t *expect;

    CHECK(ev != NULL);
    expect = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s}}", "specversion", "1.0",
                       "id", "id-1", "source", "pm-ingest", "type", "canvas.message.v1", "time",
                       "2026-11-26T10:00:00Z", "subject", "Patient/p-1", "datacontenttype",
                       "application/json", "data", "communication_id", "c-1", "patient_id", "p-1");
    CHECK(json_equal(ev, expect));
    json_decref(expect);
    json_decref(ev);

    /* No subject: the attribute is left out, not null. */
    ev = cloudevent_new("id-2", "pm-ingest", CE_TYPE_PATIENT_REPLY, "2026-11-26T10:00:00Z", NULL,
                        json_object());
    CHECK(ev != NULL);
    CHECK(json_object_get(ev, "subject") == NULL);
    CHECK_INT(json_object_size(ev), 7);
    json_decref(ev);

    /* A missing required attribute fails, and data is released all the same (ASan's leak
     * check would notice otherwise). */
    CHECK(cloudevent_new(NULL, "pm-ingest", CE_TYPE_PATIENT_REPLY, "2026-11-26T10:00:00Z", NULL,
                         json_pack("{s:s}", "k", "v")) == NULL);
}

/* The envelope written as text (delivery results) is byte for byte the one cloudevent_new gives,
 * with and without a subject; a required attribute missing is refused. */
static void test_write_head(void)
{
    for (int with_subject = 0; with_subject <= 1; with_subject++) {
        const char *subject = with_subject ? "Patient/p-1" : NULL;
        struct json_writer w;
        char *want = dump(cloudevent_new(
            "id-1:webhook", "pm-deliver", CE_TYPE_DELIVERY_RESULT, "2026-11-26T10:00:00.123Z",
            subject, json_pack("{s:s, s:i}", "outcome", "delivered", "attempts", 2)));
        json_writer_init(&w);
        cloudevent_write_head(&w, "id-1:webhook", "pm-deliver", CE_TYPE_DELIVERY_RESULT,
                              "2026-11-26T10:00:00.123Z", subject);
        json_writer_object_begin(&w);
        json_writer_member(&w, "outcome", "delivered");
        json_writer_key(&w, "attempts");
        json_writer_int(&w, 2);
        json_writer_object_end(&w);
        json_writer_object_end(&w);
        char *got = json_writer_finish(&w, NULL);
        CHECK_STR(got, want);
        free(got);
        free(want);
    }
    struct json_writer w;
    json_writer_init(&w);
    cloudevent_write_head(&w, NULL, "pm-deliver", CE_TYPE_DELIVERY_RESULT, "2026-11-26T10:00:00Z",
                          NULL);
    json_writer_object_begin(&w);
    json_writer_object_end(&w);
    json_writer_object_end(&w);
    CHECK(json_writer_finish(&w, NULL) == NULL);
}

static void test_round_trip(void)
{
    json_t *data = json_pack("{s:s, s:s, s:{s:[s]}}", "communication_id",
                             "8f2b1c7e-5d4a-4b3e-9c1f-2a6d7e8f9a0b", "patient_id",
                             "b3084f7e884e4af2b7e23b1dca494abd", "change", "fields", "x");
    json_t *copy = json_deep_copy(data);
    char *s = dump(cloudevent_new("0f8e-id", "pm-ingest", CE_TYPE_CANVAS_MESSAGE,
                                  "2026-11-26T10:00:00.123Z",
                                  "Patient/b3084f7e884e4af2b7e23b1dca494abd", data));
    struct cloudevent ce;
    char err[256] = "";

    CHECK(s != NULL);
    CHECK_INT(cloudevent_parse(s, strlen(s), &ce, err, sizeof(err)), 0);
    CHECK_STR(ce.id, "0f8e-id");
    CHECK_STR(ce.source, "pm-ingest");
    CHECK_STR(ce.type, CE_TYPE_CANVAS_MESSAGE);
    CHECK_STR(ce.time, "2026-11-26T10:00:00.123Z");
    CHECK_STR(ce.subject, "Patient/b3084f7e884e4af2b7e23b1dca494abd");
    CHECK(json_equal(ce.data, copy));
    cloudevent_clear(&ce);
    CHECK(ce.root == NULL && ce.id == NULL && ce.data == NULL);
    cloudevent_clear(&ce); /* twice is harmless */
    free(s);

    /* Without subject: decoded as NULL. Not NUL-terminated input: only len bytes are read. */
    s = dump(cloudevent_new("id-3", "kcat", CE_TYPE_QUESTIONNAIRE, "2026-11-26T10:00:00Z", NULL,
                            json_deep_copy(copy)));
    {
        size_t n = strlen(s);
        char *nonul = malloc(n);
        memcpy(nonul, s, n);
        CHECK_INT(cloudevent_parse(nonul, n, &ce, err, sizeof(err)), 0);
        CHECK(ce.subject == NULL);
        CHECK_STR(ce.source, "kcat");
        cloudevent_clear(&ce);
        free(nonul);
    }
    free(s);
    json_decref(copy);
}

static void test_parse_optional(void)
{
    struct cloudevent ce;
    char err[256];
    static const char *const ok[] = {
        /* time and datacontenttype are optional */
        "{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"b\",\"type\":\"c\",\"data\":{}}",
        "{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"b\",\"type\":\"c\","
        "\"datacontenttype\":\"application/json; charset=utf-8\",\"data\":{}}",
        "{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"b\",\"type\":\"c\","
        "\"time\":\"2026-11-26T10:00:00+01:00\",\"data\":{\"x\":1},\"extension\":\"ok\"}",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        err[0] = '\0';
        int rc = cloudevent_parse(ok[i], strlen(ok[i]), &ce, err, sizeof(err));
        if (rc)
            fprintf(stderr, "case %zu: %s\n", i, err);
        CHECK_INT(rc, 0);
        CHECK(json_is_object(ce.data));
        cloudevent_clear(&ce);
    }
    err[0] = '\0';
    CHECK_INT(cloudevent_parse(ok[0], strlen(ok[0]), &ce, err, sizeof(err)), 0);
    CHECK(ce.time == NULL && ce.subject == NULL);
    cloudevent_clear(&ce);
}

/* A valid event with @p member replaced by @p raw (JSON text), or removed when raw is NULL. */
static char *event_with(const char *member, const char *raw)
{
    json_t *ev =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s}}", "specversion", "1.0", "id",
                  "EVT-ID-7f3a", "source", "SRC-pm-ingest-x", "type", "TYPE-canvas.msg", "time",
                  "2026-11-26T10:00:00Z", "subject", "Patient/SUBJ-PHI-9c1d", "datacontenttype",
                  "application/json", "data", "text", "DATA-PHI-hello");
    if (raw)
        json_object_set_new(ev, member, json_loads(raw, JSON_DECODE_ANY, NULL));
    else
        json_object_del(ev, member);
    return dump(ev);
}

static void check_rejected(const char *what, const char *buf, size_t len)
{
    struct cloudevent ce;
    char err[512] = "";
    int rc = cloudevent_parse(buf, len, &ce, err, sizeof(err));

    if (rc != -1)
        fprintf(stderr, "accepted: %s\n", what);
    CHECK_INT(rc, -1);
    CHECK(err[0] != '\0');
    CHECK(ce.root == NULL && ce.data == NULL && ce.id == NULL);
    for (size_t i = 0; i < sizeof(VALUES) / sizeof(VALUES[0]); i++) {
        if (strstr(err, VALUES[i])) {
            fprintf(stderr, "%s: error text \"%s\" contains a value\n", what, err);
            CHECK(strstr(err, VALUES[i]) == NULL);
        }
    }
}

static void reject_member(const char *member, const char *raw, const char *must_name)
{
    char *s = event_with(member, raw);
    char what[128];
    struct cloudevent ce;
    char err[512] = "";

    snprintf(what, sizeof(what), "%s = %s", member, raw ? raw : "(absent)");
    check_rejected(what, s, strlen(s));
    /* The reason names the member (as a word) so an operator can find the problem. */
    cloudevent_parse(s, strlen(s), &ce, err, sizeof(err));
    if (must_name && !strstr(err, must_name))
        fprintf(stderr, "%s: \"%s\" does not name %s\n", what, err, must_name);
    CHECK(!must_name || strstr(err, must_name) != NULL);
    free(s);
}

static void test_parse_rejects(void)
{
    static const char not_json[] = "{\"id\": \"EVT-ID-7f3a\", \"data\": DATA-PHI-hello}";
    static const char trailing[] =
        "{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"b\",\"type\":\"c\",\"data\":{}} "
        "DATA-PHI-hello";
    static const char dup[] = "{\"specversion\":\"1.0\",\"id\":\"a\",\"id\":\"EVT-ID-7f3a\","
                              "\"source\":\"b\",\"type\":\"c\",\"data\":{}}";
    static const char array[] = "[\"EVT-ID-7f3a\"]";
    static const char str[] = "\"DATA-PHI-hello\"";

    check_rejected("empty", "", 0);
    check_rejected("not JSON", not_json, strlen(not_json));
    check_rejected("trailing garbage", trailing, strlen(trailing));
    check_rejected("duplicate member", dup, strlen(dup));
    check_rejected("array", array, strlen(array));
    check_rejected("string", str, strlen(str));
    check_rejected("null", "null", 4);
    check_rejected("truncated", not_json, 10);

    reject_member("specversion", "\"SPEC-0.3\"", "specversion");
    reject_member("specversion", "\"0.3\"", "specversion");
    reject_member("specversion", "1.0", "specversion");
    reject_member("specversion", NULL, "specversion");
    reject_member("id", NULL, "'id'");
    reject_member("id", "\"\"", "'id'");
    reject_member("id", "42", "'id'");
    reject_member("id", "null", "'id'");
    reject_member("source", NULL, "'source'");
    reject_member("source", "\"\"", "'source'");
    reject_member("type", NULL, "'type'");
    reject_member("type", "\"\"", "'type'");
    reject_member("type", "[\"TYPE-canvas.msg\"]", "'type'");
    reject_member("time", "\"TIME-not-a-time\"", "time");
    reject_member("time", "\"2026-11-26T10:00:00\"", "time");
    reject_member("time", "\"2023-02-29T10:00:00Z\"", "time");
    reject_member("time", "\"\"", "time");
    reject_member("time", "1795687200", "time");
    reject_member("subject", "\"\"", "'subject'");
    reject_member("subject", "7", "'subject'");
    reject_member("datacontenttype", "\"text/plain\"", "datacontenttype");
    reject_member("datacontenttype", "\"CT-text/plain-zz\"", "datacontenttype");
    reject_member("datacontenttype", "\"application/xml\"", "datacontenttype");
    reject_member("datacontenttype", "\"\"", "datacontenttype");
    reject_member("data", NULL, "data");
    reject_member("data", "null", "data");
    reject_member("data", "\"DATA-PHI-hello\"", "data");
    reject_member("data", "[\"DATA-PHI-hello\"]", "data");
    reject_member("data", "42", "data");
}

int main(void)
{
    test_build();
    test_write_head();
    test_round_trip();
    test_parse_optional();
    test_parse_rejects();
    return UNIT_DONE();
}
