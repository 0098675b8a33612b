/* RFC 9457 problem documents built with jansson, and RFC 6901 pointers naming bad fields. */
#include "problem.h"

#include <stdio.h>
#include <string.h>

const char *problem_status_title(int status)
{
    /* Reason phrases as registered by RFC 9110 (and RFC 6585 for 428/429/431). */
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Error";
    }
}

json_t *problem_new(int status, const char *type, const char *detail)
{
    json_error_t err;

    /* "s*" leaves "detail" out when it is NULL instead of failing the whole pack. */
    return json_pack_ex(&err, 0, "{s:s, s:s, s:i, s:s*}", "type",
                        (type && *type) ? type : "about:blank", "title",
                        problem_status_title(status), "status", status, "detail", detail);
}

void problem_add_error(json_t *problem, const char *pointer, const char *detail)
{
    json_t *errors;

    if (!json_is_object(problem))
        return;
    errors = json_object_get(problem, "errors");
    if (!json_is_array(errors)) {
        errors = json_array();
        if (!errors || json_object_set_new(problem, "errors", errors) != 0)
            return;
        /* borrowed from here on: owned by problem */
    }
    json_array_append_new(errors, json_pack("{s:s, s:s}", "pointer", pointer ? pointer : "",
                                            "detail", detail ? detail : ""));
}

size_t problem_error_count(const json_t *problem)
{
    /* json_object_get takes a non-const object but does not modify it. */
    const json_t *errors = json_object_get((json_t *)problem, "errors");
    return json_is_array(errors) ? json_array_size(errors) : 0;
}

int problem_pointer_join(char *out, size_t outlen, const char *base, const char *token)
{
    size_t len;

    if (!out || outlen == 0)
        return -1;
    if (!base)
        base = "";
    len = strlen(base);
    if (len >= outlen) {
        memmove(out, base, outlen - 1);
        out[outlen - 1] = '\0';
        return -1;
    }
    /* memmove: callers may extend a pointer in place (out == base). */
    memmove(out, base, len);
    out[len] = '\0';
    if (len + 1 >= outlen)
        return -1;
    out[len++] = '/';
    out[len] = '\0';
    for (const char *p = token ? token : ""; *p; p++) {
        const char *esc = *p == '~' ? "~0" : *p == '/' ? "~1" : NULL;
        size_t n = esc ? 2 : 1;
        if (len + n >= outlen)
            return -1;
        if (esc) {
            out[len++] = esc[0];
            out[len++] = esc[1];
        } else {
            out[len++] = *p;
        }
        out[len] = '\0';
    }
    return 0;
}

int problem_pointer_index(char *out, size_t outlen, const char *base, size_t index)
{
    char token[24];

    snprintf(token, sizeof(token), "%zu", index);
    return problem_pointer_join(out, outlen, base, token);
}
