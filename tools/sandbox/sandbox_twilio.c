/* pm-sandbox Twilio Messages API: Basic auth, E.164 and body checks, Twilio-shaped answers. */
#include "sandbox.h"

#include "http_server.h"
#include "log.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SANDBOX_TWILIO_PREFIX   "/twilio"
#define SANDBOX_TWILIO_BODY_MAX 1600

int sandbox_e164_valid(const char *s)
{
    size_t digits = 0;

    if (!s || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    for (const char *p = s + 1; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        digits++;
    }
    return digits >= 11 && digits <= 15;
}

/* A sender Twilio takes besides an E.164 number: an alphanumeric sender id (1..11 characters,
 * letters, digits and spaces, at least one letter). */
static int sandbox_alnum_sender(const char *s)
{
    size_t n = 0;
    int letter = 0;
    for (; *s; s++, n++) {
        if ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))
            letter = 1;
        else if (!((*s >= '0' && *s <= '9') || *s == ' '))
            return 0;
    }
    return letter && n >= 1 && n <= 11;
}

static void sandbox_twilio_err(struct sandbox_twilio_error *err, int status, int code,
                               const char *msg, const char *arg)
{
    err->status = status;
    err->code = code;
    snprintf(err->message, sizeof(err->message), "%s%s", msg, arg ? arg : "");
}

int sandbox_twilio_validate(const char *to, const char *from, const char *body,
                            struct sandbox_twilio_error *err)
{
    if (!to || !*to) {
        sandbox_twilio_err(err, 400, 21604, "A 'To' phone number is required.", NULL);
        return -1;
    }
    if (!from || !*from) {
        sandbox_twilio_err(err, 400, 21603, "A 'From' phone number is required.", NULL);
        return -1;
    }
    if (!body || !*body) {
        sandbox_twilio_err(err, 400, 21602, "Message body is required.", NULL);
        return -1;
    }
    /* A 10-digit national number ("5554320555") is what Canvas stores; Twilio refuses it. */
    if (!sandbox_e164_valid(to)) {
        sandbox_twilio_err(err, 400, 21211, "Invalid 'To' Phone Number: ", to);
        return -1;
    }
    if (!sandbox_e164_valid(from) && !sandbox_alnum_sender(from)) {
        sandbox_twilio_err(err, 400, 21212, "Invalid 'From' Phone Number: ", from);
        return -1;
    }
    if (sandbox_utf8_chars(body, strlen(body)) > SANDBOX_TWILIO_BODY_MAX) {
        sandbox_twilio_err(err, 400, 21617,
                           "The concatenated message body exceeds the 1600 character limit.", NULL);
        return -1;
    }
    return 0;
}

json_t *sandbox_twilio_error_json(int status, int code, const char *message)
{
    char more[96];
    snprintf(more, sizeof(more), "https://www.twilio.com/docs/errors/%d", code);
    return json_pack("{s:i, s:s, s:s, s:i}", "code", code, "message", message, "more_info", more,
                     "status", status);
}

static void sandbox_twilio_answer_error(struct sandbox_answer *ans, int status, int code,
                                        const char *message)
{
    sandbox_answer_json(ans, status, sandbox_twilio_error_json(status, code, message));
}

/* @returns 1 when "Authorization: Basic" carries exactly AccountSid:AuthToken. */
static int sandbox_twilio_auth_ok(const struct sandbox_config *cfg, const char *auth)
{
    unsigned char decoded[512];
    char expected[512];
    size_t len, elen;
    int n, ok;

    if (!auth || strncasecmp(auth, "Basic ", 6) != 0)
        return 0;
    auth += 6;
    len = strlen(auth);
    if (len == 0 || len % 4 != 0 || len / 4 * 3 >= sizeof(decoded))
        return 0;
    n = EVP_DecodeBlock(decoded, (const unsigned char *)auth, (int)len);
    if (n < 0)
        return 0;
    if (auth[len - 1] == '=')
        n--;
    if (len >= 2 && auth[len - 2] == '=')
        n--;
    snprintf(expected, sizeof(expected), "%s:%s", cfg->twilio_account_sid, cfg->twilio_auth_token);
    elen = strlen(expected);
    ok = (size_t)n == elen && CRYPTO_memcmp(decoded, expected, elen) == 0;
    OPENSSL_cleanse(decoded, sizeof(decoded));
    OPENSSL_cleanse(expected, sizeof(expected));
    return ok;
}

/* Twilio's dates are RFC 2822: "Mon, 02 Mar 2026 15:04:05 +0000". */
static void sandbox_twilio_date(char *out, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

static void sandbox_twilio_created(const struct sandbox_config *cfg, const char *to,
                                   const char *from, const char *body, struct sandbox_answer *ans)
{
    char sid[35], date[64], uri[160], media[192];
    size_t chars = sandbox_utf8_chars(body, strlen(body));
    /* GSM-7 segments: one up to 160 characters, 153 each when concatenated. */
    size_t segments = chars <= 160 ? 1 : (chars + 152) / 153;
    char nseg[16];

    memcpy(sid, "SM", 2);
    sandbox_random_hex(sid + 2, 32);
    sandbox_twilio_date(date, sizeof(date));
    snprintf(uri, sizeof(uri), "/2010-04-01/Accounts/%s/Messages/%s.json", cfg->twilio_account_sid,
             sid);
    snprintf(media, sizeof(media), "/2010-04-01/Accounts/%s/Messages/%s/Media.json",
             cfg->twilio_account_sid, sid);
    snprintf(nseg, sizeof(nseg), "%zu", segments);
    sandbox_answer_json(
        ans, 201,
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:n, s:n, s:s, s:s, s:s, s:n, "
                  "s:n, s:n, s:s, s:s, s:{s:s}}",
                  "sid", sid, "account_sid", cfg->twilio_account_sid, "to", to, "from", from,
                  "body", body, "status", "queued", "date_created", date, "date_updated", date,
                  "direction", "outbound-api", "date_sent", "messaging_service_sid", "num_media",
                  "0", "num_segments", nseg, "api_version", "2010-04-01", "price", "error_code",
                  "error_message", "price_unit", "USD", "uri", uri, "subresource_uris", "media",
                  media));
    sandbox_answer_header(ans, "Twilio-Request-Id", sid);
}

int sandbox_twilio_handle(struct sandbox *sb, struct http_request *req, struct sandbox_answer *ans)
{
    const struct sandbox_config *cfg = sb->cfg;
    const char *path = http_request_path(req) + strlen(SANDBOX_TWILIO_PREFIX);
    char expected[256], message[320];
    char *to = NULL, *from = NULL, *text = NULL;
    struct sandbox_twilio_error err;
    const char *body;
    size_t len;

    if (!sandbox_twilio_auth_ok(cfg, http_request_header(req, "Authorization"))) {
        sandbox_twilio_answer_error(ans, 401, 20003, "Authenticate");
        sandbox_answer_header(ans, "WWW-Authenticate", "Basic realm=\"Twilio API\"");
        goto out;
    }
    snprintf(expected, sizeof(expected), "/2010-04-01/Accounts/%s/Messages.json",
             cfg->twilio_account_sid);
    if (strcmp(path, expected) != 0) {
        snprintf(message, sizeof(message), "The requested resource %s was not found", path);
        sandbox_twilio_answer_error(ans, 404, 20404, message);
        goto out;
    }
    if (strcmp(http_request_method(req), "POST") != 0) {
        sandbox_twilio_answer_error(ans, 405, 20004, "Method not allowed");
        goto out;
    }
    body = http_request_body(req, &len);
    to = sandbox_form_get(body, len, "To");
    from = sandbox_form_get(body, len, "From");
    text = sandbox_form_get(body, len, "Body");
    if (sandbox_twilio_validate(to, from, text, &err) != 0) {
        /* The message may quote a phone number: it goes to the client, never to the log. */
        sandbox_twilio_answer_error(ans, err.status, err.code, err.message);
        log_debug("twilio message rejected", LOG_I("http_status", err.status),
                  LOG_I("error", err.code));
        goto out;
    }
    sandbox_twilio_created(cfg, to, from, text, ans);
    log_debug("twilio message queued", LOG_I("http_status", 201));
out:
    free(to);
    free(from);
    free(text);
    return 0;
}
