/* pm-sandbox SendGrid v3 mail send: bearer key, body validation with SendGrid's errors, 202. */
#include "sandbox.h"

#include "http_server.h"
#include "log.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SANDBOX_SENDGRID_PATH "/sendgrid/v3/mail/send"

json_t *sandbox_sendgrid_error_json(const char *field, const char *message)
{
    return json_pack("{s:[{s:s?, s:s}]}", "errors", "field", field, "message", message);
}

static void sandbox_sg_add(json_t *errors, const char *field, const char *message)
{
    json_array_append_new(errors, json_pack("{s:s, s:s}", "field", field, "message", message));
}

/* SendGrid's address check is stricter than this; what matters here is catching an empty,
 * unfilled or obviously wrong value: one '@' with text around it, a dot in the domain, no
 * spaces or angle brackets. */
static int sandbox_email_valid(const char *s)
{
    const char *at;
    if (!s || strpbrk(s, " <>,;\t\r\n"))
        return 0;
    at = strchr(s, '@');
    if (!at || at == s || strchr(at + 1, '@') || !at[1])
        return 0;
    return strchr(at + 1, '.') && at[strlen(at) - 1] != '.';
}

/* Ranks content types as SendGrid orders them: text/plain, then text/html, then the rest. */
static int sandbox_content_rank(const char *type)
{
    if (strcasecmp(type, "text/plain") == 0)
        return 0;
    if (strcasecmp(type, "text/html") == 0)
        return 1;
    return 2;
}

static void sandbox_sg_personalizations(const json_t *pers, json_t *errors, int *all_subjects)
{
    char field[96];
    size_t i, j;
    json_t *p, *to;

    *all_subjects = json_array_size(pers) > 0;
    if (!json_is_array(pers) || json_array_size(pers) == 0) {
        sandbox_sg_add(errors, "personalizations",
                       "The personalizations field is required and must have at least one "
                       "personalization.");
        *all_subjects = 0;
        return;
    }
    json_array_foreach(pers, i, p)
    {
        json_t *tos = json_object_get(p, "to");
        if (!json_is_string(json_object_get(p, "subject")))
            *all_subjects = 0;
        if (!json_is_array(tos) || json_array_size(tos) == 0) {
            snprintf(field, sizeof(field), "personalizations.%zu.to", i);
            sandbox_sg_add(errors, field,
                           "The to array is required for all personalization objects, and must "
                           "have at least one email object with a valid email address.");
            continue;
        }
        json_array_foreach(tos, j, to)
        {
            if (!sandbox_email_valid(json_string_value(json_object_get(to, "email")))) {
                snprintf(field, sizeof(field), "personalizations.%zu.to.%zu.email", i, j);
                sandbox_sg_add(errors, field, "Does not contain a valid address.");
            }
        }
    }
}

static void sandbox_sg_content(const json_t *content, json_t *errors)
{
    char field[64];
    size_t i;
    json_t *c;
    int rank = 0, misordered = 0;

    if (!json_is_array(content) || json_array_size(content) == 0) {
        sandbox_sg_add(errors, "content",
                       "Unless a valid template_id is provided, the content parameter is "
                       "required. There must be at least one defined content block. We typically "
                       "suggest both text/plain and text/html blocks are included, but only one "
                       "block is required.");
        return;
    }
    json_array_foreach(content, i, c)
    {
        const char *type = json_string_value(json_object_get(c, "type"));
        const char *value = json_string_value(json_object_get(c, "value"));
        if (!type || !*type || strpbrk(type, ";\r\n")) {
            snprintf(field, sizeof(field), "content.%zu.type", i);
            sandbox_sg_add(errors, field,
                           "The content type cannot contain ';', or CRLF characters, and must be "
                           "at least one character in length.");
        } else {
            int r = sandbox_content_rank(type);
            misordered |= r < rank;
            if (r > rank)
                rank = r;
        }
        if (!value || !*value) {
            snprintf(field, sizeof(field), "content.%zu.value", i);
            sandbox_sg_add(errors, field,
                           "The content value must be a string at least one character in "
                           "length.");
        }
    }
    if (misordered)
        sandbox_sg_add(errors, "content",
                       "If present, text/plain content must be first, followed by text/html, "
                       "followed by any other content.");
}

json_t *sandbox_sendgrid_validate(const json_t *body)
{
    json_t *errors = json_array();
    json_t *from = json_object_get(body, "from");
    const char *subject = json_string_value(json_object_get(body, "subject"));
    int all_subjects = 0;

    if (!errors)
        return NULL;
    if (!json_is_object(body)) {
        json_decref(errors);
        return sandbox_sendgrid_error_json(NULL, "Bad Request");
    }
    sandbox_sg_personalizations(json_object_get(body, "personalizations"), errors, &all_subjects);
    if (!json_is_object(from) || !json_object_get(from, "email"))
        sandbox_sg_add(errors, "from.email",
                       "The from object must be provided for every email send. It is an object "
                       "that requires the email parameter, but may also contain a name "
                       "parameter.");
    else if (!sandbox_email_valid(json_string_value(json_object_get(from, "email"))))
        sandbox_sg_add(errors, "from.email", "The from email does not contain a valid address.");
    if ((!subject || !*subject) && !all_subjects &&
        !json_is_string(json_object_get(body, "template_id")))
        sandbox_sg_add(errors, "subject",
                       "The subject is required. You can get around this requirement if you use "
                       "a template with a subject defined or if every personalization has a "
                       "subject defined.");
    if (!json_is_string(json_object_get(body, "template_id")) || json_object_get(body, "content"))
        sandbox_sg_content(json_object_get(body, "content"), errors);
    if (json_array_size(errors) == 0) {
        json_decref(errors);
        return NULL;
    }
    return json_pack("{s:o}", "errors", errors);
}

/* @returns 1 when "Authorization: Bearer <key>" carries the configured key. */
static int sandbox_sendgrid_auth_ok(const struct sandbox_config *cfg, const char *auth)
{
    size_t kl = strlen(cfg->sendgrid_api_key);
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return 0;
    auth += 7;
    return strlen(auth) == kl && CRYPTO_memcmp(auth, cfg->sendgrid_api_key, kl) == 0;
}

int sandbox_sendgrid_handle(struct sandbox *sb, struct http_request *req,
                            struct sandbox_answer *ans)
{
    json_t *body = NULL, *errors = NULL;
    json_error_t jerr;
    const char *data, *ctype;
    char msgid[23];
    size_t len;

    if (strcmp(http_request_path(req), SANDBOX_SENDGRID_PATH) != 0) {
        sandbox_answer_json(ans, 404, sandbox_sendgrid_error_json(NULL, "resource not found"));
        goto out;
    }
    if (!sandbox_sendgrid_auth_ok(sb->cfg, http_request_header(req, "Authorization"))) {
        sandbox_answer_json(ans, 401,
                            sandbox_sendgrid_error_json(NULL, "The provided authorization grant "
                                                              "is invalid, expired, or revoked"));
        goto out;
    }
    if (strcmp(http_request_method(req), "POST") != 0) {
        sandbox_answer_json(ans, 405, sandbox_sendgrid_error_json(NULL, "method not allowed"));
        goto out;
    }
    ctype = http_request_header(req, "Content-Type");
    if (!ctype || strncasecmp(ctype, "application/json", 16) != 0) {
        sandbox_answer_json(ans, 415,
                            sandbox_sendgrid_error_json(NULL, "Content-Type should be "
                                                              "application/json."));
        goto out;
    }
    data = http_request_body(req, &len);
    body = json_loadb(data, len, 0, &jerr);
    if (!body) {
        sandbox_answer_json(ans, 400, sandbox_sendgrid_error_json(NULL, "Bad Request"));
        goto out;
    }
    errors = sandbox_sendgrid_validate(body);
    if (errors) {
        sandbox_answer_json(ans, 400, errors);
        errors = NULL; /* owned by the answer now */
        log_debug("sendgrid mail rejected", LOG_I("http_status", 400));
        goto out;
    }
    /* 202 with an empty body: the message id is only in the header. */
    sandbox_random_alnum(msgid, 22);
    sandbox_answer_raw(ans, 202, NULL, NULL, 0);
    sandbox_answer_header(ans, "X-Message-Id", msgid);
    log_debug("sendgrid mail accepted", LOG_I("http_status", 202));
out:
    json_decref(body);
    json_decref(errors);
    return 0;
}
