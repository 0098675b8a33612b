/* pm-deliver patient helpers: E.164 phones, the consented phone and email, contacts, skip rules. */
#include "deliver.h"

#include "fhir_ref.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HAS_CONSENT_URL         "http://schemas.canvasmedical.com/fhir/extensions/has-consent"
#define CONTACT_CATEGORY_SYSTEM "http://schemas.canvasmedical.com/fhir/contact-category"
#define E164_DIGITS_MAX         15

/* ---- phones and emails ---- */

/*
 * Punctuation people type in phone numbers is ignored; anything else (letters, "ext", '#',
 * a '+' after the start) makes the value unusable. A 10-digit national number must start with
 * 2-9 (NANP area codes never start with 0 or 1), and a "+" number must not start with 0.
 */
int deliver_phone_e164(const char *value, char *out, size_t outlen)
{
    char digits[E164_DIGITS_MAX + 1];
    size_t nd = 0;
    int plus = 0, started = 0;
    const char *prefix;

    if (out && outlen > 0)
        out[0] = '\0';
    if (!value || !out)
        return -1;
    for (const char *p = value; *p; p++) {
        char c = *p;
        if (c >= '0' && c <= '9') {
            if (nd >= E164_DIGITS_MAX)
                return -1;
            digits[nd++] = c;
            started = 1;
        } else if (c == '+') {
            if (started)
                return -1;
            plus = started = 1;
        } else if (c == '(' || c == ')' || c == '-' || c == '.' || c == '/') {
            started = 1;
        } else if (c != ' ' && c != '\t') {
            return -1;
        }
    }
    digits[nd] = '\0';
    if (plus) {
        if (nd < 8 || digits[0] == '0')
            return -1;
        prefix = "+";
    } else if (nd == 10 && digits[0] >= '2') {
        prefix = "+1";
    } else if (nd == 11 && digits[0] == '1' && digits[1] >= '2') {
        prefix = "+";
    } else {
        return -1;
    }
    if (strlen(prefix) + nd + 1 > outlen)
        return -1;
    memcpy(out, prefix, strlen(prefix));
    memcpy(out + strlen(prefix), digits, nd + 1);
    return 0;
}

/* 1 when the contact point's has-consent extension (the first one, if repeated) is true.
 * A contact point without it has no consent: Canvas only texts or emails consented ones. */
static int telecom_consented(const json_t *tel)
{
    const json_t *ext = json_object_get(tel, "extension");
    json_t *e;
    size_t i;

    json_array_foreach(ext, i, e)
    {
        const char *url = json_string_value(json_object_get(e, "url"));
        if (url && strcmp(url, HAS_CONSENT_URL) == 0)
            return json_is_true(json_object_get(e, "valueBoolean"));
    }
    return 0;
}

static int telecom_system_is(const json_t *tel, const char *system)
{
    const char *s = json_string_value(json_object_get(tel, "system"));
    return s && strcmp(s, system) == 0;
}

static int telecom_is_phone(const json_t *tel)
{
    return telecom_system_is(tel, "phone") || telecom_system_is(tel, "sms");
}

/* The rank, or LLONG_MAX when there is none (absent ranks sort last). */
static long long telecom_rank(const json_t *tel)
{
    const json_t *r = json_object_get(tel, "rank");
    return json_is_integer(r) ? (long long)json_integer_value(r) : LLONG_MAX;
}

/* Copies an email address when it looks like one (an '@' inside, no white space or controls)
 * and fits. @returns 0 or -1. */
static int email_copy(const char *value, char *out, size_t outlen)
{
    size_t n;
    const char *at;

    if (!value || !(at = strchr(value, '@')) || at == value || at[1] == '\0')
        return -1;
    for (const char *p = value; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return -1;
    n = strlen(value);
    if (n + 1 > outlen)
        return -1;
    memcpy(out, value, n + 1);
    return 0;
}

/* Copies at most outlen-1 bytes of @p s, cut before a UTF-8 sequence that does not fit. */
static void utf8_copy(char *out, size_t outlen, const char *s)
{
    size_t n = strlen(s);

    if (outlen == 0)
        return;
    if (n >= outlen) {
        n = outlen - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--; /* s[n] is the first byte left out: back up to a sequence start */
    }
    memcpy(out, s, n);
    out[n] = '\0';
}

int deliver_patient_phone(const json_t *patient, char *out, size_t outlen)
{
    const json_t *telecom = json_object_get(patient, "telecom");
    json_t *tel;
    size_t i;
    int found = 0, best_mobile = 0;
    long long best_rank = 0;
    char e164[32];

    if (out && outlen > 0)
        out[0] = '\0';
    if (!out || outlen == 0)
        return -1;
    /* Mobile before any other use, then the lowest rank; equal ones keep the array's order.
     * A consented number that cannot be converted is passed over for the next best. */
    json_array_foreach(telecom, i, tel)
    {
        const char *use = json_string_value(json_object_get(tel, "use"));
        int mobile = use && strcmp(use, "mobile") == 0;
        long long rank = telecom_rank(tel);

        if (!telecom_is_phone(tel) || !telecom_consented(tel) ||
            deliver_phone_e164(json_string_value(json_object_get(tel, "value")), e164,
                               sizeof(e164)) != 0 ||
            strlen(e164) >= outlen)
            continue;
        if (found && (best_mobile > mobile || (best_mobile == mobile && best_rank <= rank)))
            continue;
        found = 1;
        best_mobile = mobile;
        best_rank = rank;
        memcpy(out, e164, strlen(e164) + 1);
    }
    return found ? 0 : -1;
}

int deliver_patient_email(const json_t *patient, char *out, size_t outlen)
{
    const json_t *telecom = json_object_get(patient, "telecom");
    json_t *tel;
    size_t i;
    int found = 0;
    long long best_rank = 0;

    if (out && outlen > 0)
        out[0] = '\0';
    if (!out || outlen == 0)
        return -1;
    json_array_foreach(telecom, i, tel)
    {
        long long rank = telecom_rank(tel);

        if (!telecom_system_is(tel, "email") || !telecom_consented(tel) ||
            (found && best_rank <= rank))
            continue;
        if (email_copy(json_string_value(json_object_get(tel, "value")), out, outlen) != 0) {
            continue;
        }
        found = 1;
        best_rank = rank;
    }
    return found ? 0 : -1;
}

/* ---- contacts ---- */

/* The first contact-category code of @p contact that is in @p categories, or NULL. */
static const char *contact_category(const json_t *contact, char *const *categories,
                                    size_t ncategories)
{
    json_t *rel, *coding;
    size_t i, j;

    json_array_foreach(json_object_get(contact, "relationship"), i, rel)
    {
        json_array_foreach(json_object_get(rel, "coding"), j, coding)
        {
            const char *system = json_string_value(json_object_get(coding, "system"));
            const char *code = json_string_value(json_object_get(coding, "code"));
            if (!system || !code || strcmp(system, CONTACT_CATEGORY_SYSTEM) != 0)
                continue;
            for (size_t k = 0; k < ncategories; k++)
                if (categories[k] && strcmp(categories[k], code) == 0)
                    return code;
        }
    }
    return NULL;
}

/* name.text, else the given names and the family name joined by spaces. */
static void contact_name(const json_t *contact, char *out, size_t outlen)
{
    const json_t *name = json_object_get(contact, "name");
    const char *text, *family;
    char buf[512];
    size_t len = 0;
    json_t *g;
    size_t i;

    out[0] = '\0';
    if (json_is_array(name))
        name = json_array_get(name, 0); /* HumanName is 0..1 here; tolerate a list */
    text = json_string_value(json_object_get(name, "text"));
    if (text && *text) {
        utf8_copy(out, outlen, text);
        return;
    }
    buf[0] = '\0';
    json_array_foreach(json_object_get(name, "given"), i, g)
    {
        const char *s = json_string_value(g);
        if (s && *s && len < sizeof(buf) - 1) {
            utf8_copy(buf + len, sizeof(buf) - len, len ? " " : "");
            len = strlen(buf);
            utf8_copy(buf + len, sizeof(buf) - len, s);
            len = strlen(buf);
        }
    }
    family = json_string_value(json_object_get(name, "family"));
    if (family && *family && len < sizeof(buf) - 1) {
        utf8_copy(buf + len, sizeof(buf) - len, len ? " " : "");
        len = strlen(buf);
        utf8_copy(buf + len, sizeof(buf) - len, family);
    }
    utf8_copy(out, outlen, buf);
}

size_t deliver_patient_contacts(const json_t *patient, char *const *categories, size_t ncategories,
                                struct deliver_recipient *out, size_t max)
{
    json_t *contact;
    size_t i, n = 0;

    if (!out || !categories)
        return 0;
    json_array_foreach(json_object_get(patient, "contact"), i, contact)
    {
        struct deliver_recipient *r;
        const char *code;
        int have_phone = 0, have_email = 0;
        json_t *tel;
        size_t j;

        if (n >= max)
            break;
        code = contact_category(contact, categories, ncategories);
        if (!code || strlen(code) >= sizeof(r->relationship))
            continue;
        r = &out[n];
        memset(r, 0, sizeof(*r));
        r->is_contact = 1;
        memcpy(r->relationship, code, strlen(code) + 1);
        contact_name(contact, r->name, sizeof(r->name));
        /* Only the first phone and the first email are the contact's: one that is unusable
         * leaves the contact without, rather than falling back to a later entry. Canvas has no
         * consent flag for contacts; listing the category is the clinic's decision. */
        json_array_foreach(json_object_get(contact, "telecom"), j, tel)
        {
            const char *value = json_string_value(json_object_get(tel, "value"));
            if (!have_phone && telecom_is_phone(tel)) {
                have_phone = 1;
                if (deliver_phone_e164(value, r->phone, sizeof(r->phone)) != 0)
                    r->phone[0] = '\0';
            } else if (!have_email && telecom_system_is(tel, "email")) {
                have_email = 1;
                if (email_copy(value, r->email, sizeof(r->email)) != 0)
                    r->email[0] = '\0';
            }
        }
        n++;
    }
    return n;
}

/* ---- the Communication ---- */

/* Copies a FHIR id (at most 64 characters, so it fits the 65-byte fields). */
static int id_copy(char *out, size_t outlen, const char *id)
{
    size_t n;

    if (!fhir_id_valid(id) || (n = strlen(id)) >= outlen)
        return -1;
    memcpy(out, id, n + 1);
    return 0;
}

/* 1 when one of the Communication's recipients is Patient/@p patient_id. */
static int recipient_is_patient(const json_t *comm, const char *patient_id)
{
    json_t *r;
    size_t i;
    char id[FHIR_ID_MAX + 1];

    json_array_foreach(json_object_get(comm, "recipient"), i, r)
    {
        const char *ref = json_string_value(json_object_get(r, "reference"));
        if (ref && fhir_ref_parse(ref, "Patient", id, sizeof(id)) == 0 &&
            strcmp(id, patient_id) == 0)
            return 1;
    }
    return 0;
}

/*
 * The order of the rules decides which reason a message that breaks several gets: malformed
 * first, then sender, recipient, status, content. A status other than preparation and
 * in-progress, or none, is delivered (Canvas reads completed and unknown for sent messages).
 * Content whose text is empty once converted ("<p><br></p>") is "no text content" too: Twilio
 * refuses an empty Body.
 */
int deliver_message_check(const json_t *communication, const char *patient_id,
                          struct deliver_message *msg, const char **reason, char **text_out)
{
    const char *unused, *type, *ref, *status, *sent, *content;
    const json_t *payload;

    if (!reason)
        reason = &unused;
    *reason = NULL;
    if (text_out)
        *text_out = NULL;
    if (!msg) {
        *reason = "no message to fill";
        return -1;
    }
    memset(msg, 0, sizeof(*msg));
    if (!json_is_object(communication)) {
        *reason = "not a JSON object";
        return -1;
    }
    type = json_string_value(json_object_get(communication, "resourceType"));
    if (!type || strcmp(type, "Communication") != 0) {
        *reason = "resourceType is not Communication";
        return -1;
    }
    if (id_copy(msg->communication_id, sizeof(msg->communication_id),
                json_string_value(json_object_get(communication, "id"))) != 0) {
        *reason = "id is missing or not a FHIR id";
        return -1;
    }
    if (id_copy(msg->patient_id, sizeof(msg->patient_id), patient_id) != 0) {
        *reason = "patient id is not a FHIR id";
        return -1;
    }

    ref = json_string_value(json_object_get(json_object_get(communication, "sender"), "reference"));
    if (!ref || fhir_ref_parse(ref, "Practitioner", msg->practitioner_id,
                               sizeof(msg->practitioner_id)) != 0) {
        msg->practitioner_id[0] = '\0';
        *reason = "sender is not a practitioner";
        return 1;
    }
    if (!recipient_is_patient(communication, patient_id)) {
        *reason = "recipient is not the patient";
        return 1;
    }
    status = json_string_value(json_object_get(communication, "status"));
    if (status && strcmp(status, "preparation") == 0) {
        *reason = "draft";
        return 1;
    }
    if (status && strcmp(status, "in-progress") == 0) {
        *reason = "scheduled";
        return 1;
    }

    payload = json_array_get(json_object_get(communication, "payload"), 0);
    content = json_string_value(json_object_get(payload, "contentString"));
    if (!content || !*content) {
        *reason = "no text content";
        return 1;
    }
    {
        /* Out of memory here is not a verdict on the message: deliver, and let the caller's
         * own conversion fail and retry. */
        char *text = deliver_html_to_text(content);
        if (text && !*text) {
            free(text);
            *reason = "no text content";
            return 1;
        }
        if (text_out)
            *text_out = text; /* owned by the caller now */
        else
            free(text);
    }
    msg->content = content;

    sent = json_string_value(json_object_get(communication, "sent"));
    if (sent && strlen(sent) < sizeof(msg->sent))
        memcpy(msg->sent, sent, strlen(sent) + 1);
    return 0;
}
