/* pm-sandbox answers: a response decided by a party, kept until it is sent (now or later). */
#include "sandbox.h"

#include "json_text.h"
#include "http_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void sandbox_answer_clear(struct sandbox_answer *a)
{
    free(a->body);
    memset(a, 0, sizeof(*a));
}

void sandbox_answer_take(struct sandbox_answer *a, int status, const char *ctype, char *body,
                         size_t len)
{
    free(a->body);
    a->body = body;
    a->len = body ? len : 0;
    a->status = status;
    a->content_type = ctype;
}

void sandbox_answer_raw(struct sandbox_answer *a, int status, const char *ctype, const char *body,
                        size_t len)
{
    free(a->body);
    a->body = NULL;
    a->len = 0;
    a->status = status;
    a->content_type = ctype;
    if (body && len) {
        a->body = malloc(len + 1);
        if (!a->body) {
            /* Nothing sensible can be sent without the body: say so the way a server would. */
            a->status = 500;
            a->content_type = NULL;
            return;
        }
        memcpy(a->body, body, len);
        a->body[len] = '\0';
        a->len = len;
    }
}

void sandbox_answer_json(struct sandbox_answer *a, int status, json_t *body)
{
    char *s;
    size_t len = 0;

    if (!body) {
        /* Canvas answers a successful create with the JSON literal null. */
        sandbox_answer_raw(a, status, "application/json", "null", 4);
        return;
    }
    s = json_text_dump(body, JSON_COMPACT | JSON_ENCODE_ANY, &len);
    json_decref(body);
    if (!s) {
        sandbox_answer_raw(a, 500, NULL, NULL, 0);
        return;
    }
    free(a->body);
    a->body = s;
    a->len = len;
    a->status = status;
    a->content_type = "application/json";
}

void sandbox_answer_header(struct sandbox_answer *a, const char *name, const char *value)
{
    size_t i;

    for (i = 0; i < a->nheaders; i++)
        if (strcasecmp(a->headers[i].name, name) == 0)
            break;
    if (i == SANDBOX_MAX_HEADERS)
        return;
    snprintf(a->headers[i].name, sizeof(a->headers[i].name), "%s", name);
    snprintf(a->headers[i].value, sizeof(a->headers[i].value), "%s", value);
    if (i == a->nheaders)
        a->nheaders++;
}

const char *sandbox_answer_get_header(const struct sandbox_answer *a, const char *name)
{
    for (size_t i = 0; i < a->nheaders; i++)
        if (strcasecmp(a->headers[i].name, name) == 0)
            return a->headers[i].value;
    return NULL;
}

void sandbox_answer_send(struct http_request *req, const struct sandbox_answer *a)
{
    http_respond(req, a->status, a->content_type ? a->content_type : "", a->body ? a->body : "",
                 a->len);
    for (size_t i = 0; i < a->nheaders; i++)
        http_respond_header(req, a->headers[i].name, a->headers[i].value);
}
