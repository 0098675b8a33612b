/* Unit tests for deliver_patient: E.164 conversion, the consented phone and email, contacts by
 * category, and the SPEC §6 skip rules on Canvas Communications. */
#include "deliver.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

#define PATIENT_ID "b3084f7e884e4af2b7e23b1dca494abd"
#define CANVAS_BOT "5eede137ecfe4124b8b773040e33be14"
#define CONSENT(b)                                                                                 \
    "\"extension\":[{\"url\":\"http://schemas.canvasmedical.com/fhir/extensions/has-consent\","    \
    "\"valueBoolean\":" #b "}]"
#define CATEGORY(code)                                                                             \
    "\"relationship\":[{\"coding\":[{\"system\":"                                                  \
    "\"http://schemas.canvasmedical.com/fhir/contact-category\",\"code\":\"" code "\"}]}]"

static json_t *examples;

static json_t *J(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
    if (!v)
        fprintf(stderr, "bad test JSON (%s): %s\n", err.text, text);
    CHECK(v != NULL);
    return v;
}

/* A deep copy of canvas-examples.json's @p name. */
static json_t *example(const char *name)
{
    json_t *v = json_object_get(examples, name);
    CHECK(v != NULL);
    return json_deep_copy(v);
}

/* deliver_phone_e164 of @p in: @p want, or NULL for "refused". */
#define E164_IS(in, want)                                                                          \
    do {                                                                                           \
        char out_[32] = "garbage";                                                                 \
        int rc_ = deliver_phone_e164(in, out_, sizeof(out_));                                      \
        if (want) {                                                                                \
            CHECK_INT(rc_, 0);                                                                     \
            CHECK_STR(out_, (const char *)(want));                                                 \
        } else {                                                                                   \
            CHECK_INT(rc_, -1);                                                                    \
            CHECK_STR(out_, "");                                                                   \
        }                                                                                          \
    } while (0)

/* The phone deliver_patient_phone picks from a patient with @p telecom (a JSON array text). */
#define PHONE_IS(telecom, want)                                                                    \
    do {                                                                                           \
        json_t *p_ = J("{\"resourceType\":\"Patient\",\"id\":\"p\",\"telecom\":" telecom "}");     \
        char out_[32] = "garbage";                                                                 \
        int rc_ = deliver_patient_phone(p_, out_, sizeof(out_));                                   \
        CHECK_INT(rc_, (want) ? 0 : -1);                                                           \
        CHECK_STR(out_, (want) ? (const char *)(want) : "");                                       \
        json_decref(p_);                                                                           \
    } while (0)

#define EMAIL_IS(telecom, want)                                                                    \
    do {                                                                                           \
        json_t *p_ = J("{\"resourceType\":\"Patient\",\"id\":\"p\",\"telecom\":" telecom "}");     \
        char out_[256] = "garbage";                                                                \
        int rc_ = deliver_patient_email(p_, out_, sizeof(out_));                                   \
        CHECK_INT(rc_, (want) ? 0 : -1);                                                           \
        CHECK_STR(out_, (want) ? (const char *)(want) : "");                                       \
        json_decref(p_);                                                                           \
    } while (0)

/* ---- phones ---- */

static void test_phone_e164(void)
{
    char small[12], fits[13];

    E164_IS("5554320555", "+15554320555");
    E164_IS("(555) 432-0555", "+15554320555");
    E164_IS("555.432.0555", "+15554320555");
    E164_IS(" 555 432 0555 ", "+15554320555");
    E164_IS("15554320555", "+15554320555");
    E164_IS("1-555-432-0555", "+15554320555");
    E164_IS("+15554320555", "+15554320555");
    E164_IS("+1 (555) 432-0555", "+15554320555");
    E164_IS("+442071838750", "+442071838750");
    E164_IS("+44 20 7183 8750", "+442071838750");
    E164_IS("+12345678", "+12345678");               /* 8 digits: the shortest kept */
    E164_IS("+123456789012345", "+123456789012345"); /* 15: the longest */
    E164_IS("555432055", NULL);                      /* 9 digits */
    E164_IS("55543205551", NULL);                    /* 11 digits not starting with 1 */
    E164_IS("555432055512", NULL);
    E164_IS("", NULL);
    E164_IS("   ", NULL);
    E164_IS("+", NULL);
    E164_IS(NULL, NULL);
    E164_IS("555-CALL-NOW", NULL);
    E164_IS("555432O555", NULL); /* letter O */
    E164_IS("5554320555 ext 12", NULL);
    E164_IS("5554320555#1", NULL);
    E164_IS("0554320555", NULL); /* NANP area codes start with 2-9 */
    E164_IS("1554320555", NULL);
    E164_IS("10554320555", NULL);
    E164_IS("+1234567", NULL);          /* 7 digits */
    E164_IS("+1234567890123456", NULL); /* 16 */
    E164_IS("+0442071838750", NULL);
    E164_IS("1+5554320555", NULL);
    E164_IS("++15554320555", NULL);
    E164_IS("(+1) 5554320555", NULL);

    /* The result must fit: "+15554320555" needs 13 bytes. */
    CHECK_INT(deliver_phone_e164("5554320555", small, sizeof(small)), -1);
    CHECK_STR(small, "");
    CHECK_INT(deliver_phone_e164("5554320555", fits, sizeof(fits)), 0);
    CHECK_STR(fits, "+15554320555");
    CHECK_INT(deliver_phone_e164("5554320555", fits, 0), -1);
}

static void test_patient_phone(void)
{
    json_t *p = example("patient");
    char out[32];

    CHECK_INT(deliver_patient_phone(p, out, sizeof(out)), 0);
    CHECK_STR(out, "+15554320555");
    json_decref(p);

    /* Mobile first, whatever the ranks: a consented mobile ranked 2 beats a home ranked 1. */
    PHONE_IS(
        "[{" CONSENT(
            true) ",\"system\":\"phone\",\"value\":\"5550000001\",\"use\":\"home\","
                  "\"rank\":1},"
                  "{" CONSENT(
                      true) ",\"system\":\"phone\",\"value\":\"5550000002\",\"use\":\"mobile\","
                            "\"rank\":2}]",
        "+15550000002");
    /* Among mobiles, the lowest rank. */
    PHONE_IS(
        "[{" CONSENT(
            true) ",\"system\":\"phone\",\"value\":\"5550000001\",\"use\":\"mobile\","
                  "\"rank\":3},"
                  "{" CONSENT(
                      true) ",\"system\":\"phone\",\"value\":\"5550000002\",\"use\":\"mobile\","
                            "\"rank\":2}]",
        "+15550000002");
    /* No mobile: the lowest rank; an absent rank sorts last. */
    PHONE_IS("[{" CONSENT(
                 true) ",\"system\":\"phone\",\"value\":\"5550000001\",\"use\":\"home\"},"
                       "{" CONSENT(
                           true) ",\"system\":\"phone\",\"value\":\"5550000002\",\"use\":\"work\","
                                 "\"rank\":5},"
                                 "{" CONSENT(true) ",\"system\":\"phone\",\"value\":\"5550000003\","
                                                   "\"use\":\"home\","
                                                   "\"rank\":4}]",
             "+15550000003");
    /* Ties keep the array's order. */
    PHONE_IS(
        "[{" CONSENT(
            true) ",\"system\":\"phone\",\"value\":\"5550000001\",\"use\":\"home\"},"
                  "{" CONSENT(
                      true) ",\"system\":\"phone\",\"value\":\"5550000002\",\"use\":\"home\"}]",
        "+15550000001");
    PHONE_IS(
        "[{" CONSENT(true) ",\"system\":\"phone\",\"value\":\"5550000001\",\"rank\":1},"
                           "{" CONSENT(
                               true) ",\"system\":\"phone\",\"value\":\"5550000002\",\"rank\":1}]",
        "+15550000001");
    /* system sms counts as a phone. */
    PHONE_IS("[{" CONSENT(true) ",\"system\":\"sms\",\"value\":\"+442071838750\"}]",
             "+442071838750");
    /* Not consented: false, the extension missing, a different url, or a non-boolean value. */
    PHONE_IS("[{" CONSENT(
                 false) ",\"system\":\"phone\",\"value\":\"5550000001\","
                        "\"use\":\"mobile\",\"rank\":1},"
                        "{" CONSENT(
                            true) ",\"system\":\"phone\",\"value\":\"5550000002\",\"use\":\"home\","
                                  "\"rank\":2}]",
             "+15550000002");
    PHONE_IS("[{\"system\":\"phone\",\"value\":\"5550000001\",\"use\":\"mobile\"}]", NULL);
    PHONE_IS(
        "[{\"extension\":[{\"url\":\"http://schemas.canvasmedical.com/fhir/extensions/"
        "has-consent/\",\"valueBoolean\":true}],\"system\":\"phone\",\"value\":\"5550000001\"}]",
        NULL);
    PHONE_IS(
        "[{\"extension\":[{\"url\":\"http://schemas.canvasmedical.com/fhir/extensions/"
        "has-consent\",\"valueBoolean\":\"true\"}],\"system\":\"phone\",\"value\":\"5550000001\"}]",
        NULL);
    /* A consented email is not a phone; a consented number that cannot be converted is passed
     * over for the next one. */
    PHONE_IS("[{" CONSENT(true) ",\"system\":\"email\",\"value\":\"a@b.example\"}]", NULL);
    PHONE_IS(
        "[{" CONSENT(
            true) ",\"system\":\"phone\",\"value\":\"555-CALL\",\"use\":\"mobile\","
                  "\"rank\":1},"
                  "{" CONSENT(
                      true) ",\"system\":\"phone\",\"value\":\"5550000002\",\"use\":\"home\"}]",
        "+15550000002");
    PHONE_IS("[]", NULL);
    PHONE_IS("null", NULL);
}

static void test_patient_email(void)
{
    json_t *p = example("patient");
    char out[256];

    CHECK_INT(deliver_patient_email(p, out, sizeof(out)), 0);
    CHECK_STR(out, "pat.example@example.com");
    json_decref(p);

    EMAIL_IS("[{" CONSENT(
                 true) ",\"system\":\"email\",\"value\":\"second@x.example\",\"rank\":2},"
                       "{" CONSENT(
                           true) ",\"system\":\"email\",\"value\":\"first@x.example\",\"rank\":1}]",
             "first@x.example");
    EMAIL_IS(
        "[{" CONSENT(
            true) ",\"system\":\"email\",\"value\":\"norank@x.example\"},"
                  "{" CONSENT(
                      true) ",\"system\":\"email\",\"value\":\"ranked@x.example\",\"rank\":9}]",
        "ranked@x.example");
    EMAIL_IS(
        "[{" CONSENT(true) ",\"system\":\"email\",\"value\":\"a@x.example\"},"
                           "{" CONSENT(true) ",\"system\":\"email\",\"value\":\"b@x.example\"}]",
        "a@x.example");
    EMAIL_IS("[{" CONSENT(
                 false) ",\"system\":\"email\",\"value\":\"no@x.example\",\"rank\":1},"
                        "{" CONSENT(
                            true) ",\"system\":\"email\",\"value\":\"yes@x.example\",\"rank\":2}]",
             "yes@x.example");
    EMAIL_IS("[{\"system\":\"email\",\"value\":\"noext@x.example\"}]", NULL);
    EMAIL_IS("[{" CONSENT(true) ",\"system\":\"phone\",\"value\":\"5550000001\"}]", NULL);
    /* Values that are not addresses are passed over. */
    EMAIL_IS(
        "[{" CONSENT(true) ",\"system\":\"email\",\"value\":\"not an email\",\"rank\":1},"
                           "{" CONSENT(
                               true) ",\"system\":\"email\",\"value\":\"@x.example\",\"rank\":1},"
                                     "{" CONSENT(true) ",\"system\":\"email\",\"value\":\"ok@x."
                                                       "example\",\"rank\":3}]",
        "ok@x.example");
    EMAIL_IS("[]", NULL);
}

/* ---- contacts ---- */

static void test_contacts(void)
{
    json_t *p = example("patient");
    char *ari[] = {"ARI"}, *emc[] = {"EMC"}, *both[] = {"EMC", "ARI"}, *lower[] = {"ari"};
    char *ari_poa[] = {"ARI", "POA"};
    struct deliver_recipient r[4];

    /* The example's contact has both ARI and EMC codings. */
    CHECK_INT(deliver_patient_contacts(p, ari, 1, r, 4), 1);
    CHECK_INT(r[0].is_contact, 1);
    CHECK_STR(r[0].relationship, "ARI");
    CHECK_STR(r[0].name, "Dana Example");
    CHECK_STR(r[0].phone, "+15554320999");
    CHECK_STR(r[0].email, "dana@example.com");
    CHECK_INT(deliver_patient_contacts(p, emc, 1, r, 4), 1);
    CHECK_STR(r[0].relationship, "EMC");
    /* Several listed: the contact's first matching coding names the relationship. */
    CHECK_INT(deliver_patient_contacts(p, both, 2, r, 4), 1);
    CHECK_STR(r[0].relationship, "ARI");
    /* Codes are case-sensitive; nothing listed, nothing sent. */
    CHECK_INT(deliver_patient_contacts(p, lower, 1, r, 4), 0);
    CHECK_INT(deliver_patient_contacts(p, ari, 0, r, 4), 0);
    CHECK_INT(deliver_patient_contacts(p, ari, 1, r, 0), 0);
    json_decref(p);

    p = J("{\"resourceType\":\"Patient\",\"id\":\"p\",\"contact\":["
          /* 0: ARI, name from given + family, first phone unusable, second email ignored */
          "{\"name\":{\"given\":[\"Ana\",\"Maria\"],\"family\":\"Lopez\"}," CATEGORY(
              "ARI") ","
                     "\"telecom\":[{\"system\":\"email\",\"value\":\"ana@x.example\"},"
                     "{\"system\":\"phone\",\"value\":\"555-CALL\"},"
                     "{\"system\":\"phone\",\"value\":\"5550000009\"},"
                     "{\"system\":\"email\",\"value\":\"other@x.example\"}]},"
                     /* 1: emergency contact only: not listed */
                     "{\"name\":{\"text\":\"Em Ergency\"}," CATEGORY(
                         "EMC") ","
                                "\"telecom\":[{\"system\":\"phone\",\"value\":\"5550000008\"}]},"
                                /* 2: POA with no telecom at all: still listed (for the webhook) */
                                "{\"name\":{\"text\":\"Pow Attorney\"}," CATEGORY(
                                    "POA") "},"
                                           /* 3: right code, wrong system */
                                           "{\"name\":{\"text\":\"Wrong "
                                           "System\"},\"relationship\":[{\"coding\":[{\"system\":"
                                           "\"http://terminology.hl7.org/CodeSystem/"
                                           "v2-0131\",\"code\":\"ARI\"}]}]},"
                                           /* 4: sms counts as a phone; no name */
                                           "{" CATEGORY("ARI") ",\"telecom\":[{\"system\":\"sms\","
                                                               "\"value\":\"15550000007\"}]}"
                                                               "]}");
    CHECK_INT(deliver_patient_contacts(p, ari_poa, 2, r, 4), 3);
    CHECK_STR(r[0].name, "Ana Maria Lopez");
    CHECK_STR(r[0].relationship, "ARI");
    CHECK_STR(r[0].phone, "");
    CHECK_STR(r[0].email, "ana@x.example");
    CHECK_STR(r[1].name, "Pow Attorney");
    CHECK_STR(r[1].relationship, "POA");
    CHECK_STR(r[1].phone, "");
    CHECK_STR(r[1].email, "");
    CHECK_STR(r[2].name, "");
    CHECK_STR(r[2].phone, "+15550000007");
    /* At most max. */
    CHECK_INT(deliver_patient_contacts(p, ari_poa, 2, r, 2), 2);
    CHECK_STR(r[1].name, "Pow Attorney");
    json_decref(p);

    /* A long name is cut on a character boundary. */
    {
        char longname[600];
        char doc[800];
        for (size_t i = 0; i < 299; i++)
            memcpy(longname + 2 * i, "\xc3\xa9", 2);
        longname[598] = '\0';
        snprintf(doc, sizeof(doc),
                 "{\"contact\":[{\"name\":{\"text\":\"%s\"}," CATEGORY("ARI") "}]}", longname);
        p = J(doc);
        CHECK_INT(deliver_patient_contacts(p, ari, 1, r, 4), 1);
        CHECK_INT(strlen(r[0].name), 254);
        json_decref(p);
    }
}

/* ---- the Communication ---- */

/* The staff example with @p key set to @p value (a JSON text; NULL removes the key). */
static json_t *staff_with(const char *key, const char *value)
{
    json_t *c = example("communication_staff_to_patient_html");
    if (value)
        json_object_set_new(c, key, J(value));
    else
        json_object_del(c, key);
    return c;
}

#define VERDICT_IS(comm, rc, why)                                                                  \
    do {                                                                                           \
        json_t *c_ = (comm);                                                                       \
        struct deliver_message m_;                                                                 \
        const char *r_ = "unset";                                                                  \
        CHECK_INT(deliver_message_check(c_, PATIENT_ID, &m_, &r_, NULL), rc);                      \
        if (why)                                                                                   \
            CHECK_STR(r_, (const char *)(why));                                                    \
        else                                                                                       \
            CHECK(r_ == NULL);                                                                     \
        json_decref(c_);                                                                           \
    } while (0)

static void test_message_check(void)
{
    struct deliver_message m;
    const char *reason = "unset";
    json_t *c;
    char long_id[80];

    /* The HTML staff message is delivered. */
    c = example("communication_staff_to_patient_html");
    CHECK_INT(deliver_message_check(c, PATIENT_ID, &m, &reason, NULL), 0);
    CHECK(reason == NULL);
    CHECK_STR(m.communication_id, "8f2b1c7e-5d4a-4b3e-9c1f-2a6d7e8f9a0b");
    CHECK_STR(m.patient_id, PATIENT_ID);
    CHECK_STR(m.practitioner_id, "4150cd20de8a470aa570a852859ac87e");
    CHECK_STR(m.sent, "2026-03-02T15:04:05.123456+00:00");
    CHECK_STR(m.content, "<p>Your lab results are in &amp; look good.</p><p>See you&nbsp;soon</p>");
    json_decref(c);

    /* The examples that must be skipped. */
    VERDICT_IS(example("communication_draft"), 1, "draft");
    {
        /* The patient's own message: recipient is a practitioner, sender the patient. */
        json_t *pc = example("communication_patient_to_staff");
        CHECK_INT(deliver_message_check(pc, "43f1418bae9c41919203e0006761067c", &m, &reason, NULL),
                  1);
        CHECK_STR(reason, "sender is not a practitioner");
        json_decref(pc);
    }
    VERDICT_IS(staff_with("status", "\"in-progress\""), 1, "scheduled");
    VERDICT_IS(staff_with("status", "\"preparation\""), 1, "draft");

    /* Canvas Bot is a practitioner: its messages go out. */
    c = staff_with("sender", "{\"reference\":\"Practitioner/" CANVAS_BOT "\","
                             "\"type\":\"Practitioner\"}");
    CHECK_INT(deliver_message_check(c, PATIENT_ID, &m, &reason, NULL), 0);
    CHECK_STR(m.practitioner_id, CANVAS_BOT);
    json_decref(c);

    /* Other statuses are delivered, a missing one too. */
    VERDICT_IS(staff_with("status", "\"unknown\""), 0, NULL);
    VERDICT_IS(staff_with("status", NULL), 0, NULL);

    /* Sender and recipient. */
    VERDICT_IS(staff_with("sender", "{\"reference\":\"Patient/" PATIENT_ID "\"}"), 1,
               "sender is not a practitioner");
    VERDICT_IS(staff_with("sender", NULL), 1, "sender is not a practitioner");
    VERDICT_IS(staff_with("sender", "{\"reference\":\"Practitioner/\"}"), 1,
               "sender is not a practitioner");
    VERDICT_IS(staff_with("recipient", "[{\"reference\":\"Patient/someoneelse\"}]"), 1,
               "recipient is not the patient");
    VERDICT_IS(staff_with("recipient", "[{\"reference\":\"Practitioner/" PATIENT_ID "\"}]"), 1,
               "recipient is not the patient");
    VERDICT_IS(staff_with("recipient", NULL), 1, "recipient is not the patient");
    VERDICT_IS(staff_with("recipient", "[{\"reference\":\"Practitioner/x\"},"
                                       "{\"reference\":\"https://fumage-x.canvasmedical.com/"
                                       "Patient/" PATIENT_ID "\"}]"),
               0, NULL);
    /* The sender rule comes first: a draft from a patient is "sender is not a practitioner". */
    c = staff_with("status", "\"preparation\"");
    json_object_set_new(c, "sender", J("{\"reference\":\"Patient/" PATIENT_ID "\"}"));
    VERDICT_IS(c, 1, "sender is not a practitioner");

    /* Content. */
    VERDICT_IS(staff_with("payload", NULL), 1, "no text content");
    VERDICT_IS(staff_with("payload", "[]"), 1, "no text content");
    VERDICT_IS(staff_with("payload", "[{\"contentString\":\"\"}]"), 1, "no text content");
    VERDICT_IS(staff_with("payload", "[{\"contentString\":\"<p><br></p>\"}]"), 1,
               "no text content");
    VERDICT_IS(staff_with("payload", "[{\"contentString\":\"  \\n \"}]"), 1, "no text content");
    VERDICT_IS(staff_with("payload", "[{\"contentAttachment\":{}}]"), 1, "no text content");

    /* sent is optional. */
    c = staff_with("sent", NULL);
    CHECK_INT(deliver_message_check(c, PATIENT_ID, &m, &reason, NULL), 0);
    CHECK_STR(m.sent, "");
    json_decref(c);

    /* Malformed. */
    VERDICT_IS(J("[]"), -1, "not a JSON object");
    VERDICT_IS(staff_with("resourceType", "\"Patient\""), -1, "resourceType is not Communication");
    VERDICT_IS(staff_with("resourceType", NULL), -1, "resourceType is not Communication");
    VERDICT_IS(staff_with("id", NULL), -1, "id is missing or not a FHIR id");
    VERDICT_IS(staff_with("id", "42"), -1, "id is missing or not a FHIR id");
    VERDICT_IS(staff_with("id", "\"has space\""), -1, "id is missing or not a FHIR id");
    long_id[0] = '"';
    memset(long_id + 1, 'a', 65); /* 65 characters: one too many */
    long_id[66] = '"';
    long_id[67] = '\0';
    VERDICT_IS(staff_with("id", long_id), -1, "id is missing or not a FHIR id");
    long_id[65] = '"'; /* 64 characters: the longest FHIR id fits */
    long_id[66] = '\0';
    VERDICT_IS(staff_with("id", long_id), 0, NULL);
    CHECK_INT(deliver_message_check(NULL, PATIENT_ID, &m, &reason, NULL), -1);
    c = example("communication_staff_to_patient_html");
    CHECK_INT(deliver_message_check(c, NULL, &m, &reason, NULL), -1);
    CHECK_STR(reason, "patient id is not a FHIR id");
    CHECK_INT(deliver_message_check(c, PATIENT_ID, &m, NULL, NULL), 0);
    {
        /* The text the check converted is handed out: the same as a conversion of its own. */
        char *text = (char *)"unset", *again = deliver_html_to_text(m.content);
        CHECK_INT(deliver_message_check(c, PATIENT_ID, &m, &reason, &text), 0);
        CHECK(text != NULL && again != NULL);
        if (text && again)
            CHECK_STR(text, again);
        free(text);
        free(again);
        /* Nothing is handed out for a skip or a malformed resource. */
        text = (char *)"unset";
        CHECK_INT(deliver_message_check(c, "someoneelse", &m, &reason, &text), 1);
        CHECK(text == NULL);
        text = (char *)"unset";
        CHECK_INT(deliver_message_check(c, NULL, &m, &reason, &text), -1);
        CHECK(text == NULL);
    }
    json_decref(c);
    c = staff_with("payload", "[{\"contentString\":\"<p><br></p>\"}]");
    {
        char *text = (char *)"unset";
        CHECK_INT(deliver_message_check(c, PATIENT_ID, &m, &reason, &text), 1);
        CHECK_STR(reason, "no text content");
        CHECK(text == NULL);
    }
    json_decref(c);
}

int main(void)
{
    json_error_t err;

    examples = json_load_file(PM_TESTDATA_DIR "/canvas-examples.json", 0, &err);
    if (!examples) {
        fprintf(stderr, "canvas-examples.json: %s\n", err.text);
        return 1;
    }
    test_phone_e164();
    test_patient_phone();
    test_patient_email();
    test_contacts();
    test_message_check();
    json_decref(examples);
    return UNIT_DONE();
}
