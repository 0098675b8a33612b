/* docs/openapi.json vs a real pm-ingest: routes, answers and problem types, both ways. */
#include "harness.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SECRET   "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define TOKEN    "openapi-token-0123456789abcdef"
#define TRACE    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
#define MAX_BODY 8192
#define SRC_DIR  PM_TESTDATA_DIR "/../.."

#define MAX_ROUTES 32
#define MAX_URNS   64

static struct harness *h;
static json_t *spec;
static char base[128];
static int seq;

/* OpenAPI's operation keys of a Path Item, and the HTTP methods they stand for. */
static const char *const oa_methods[] = {"get",     "put",  "post",  "delete",
                                         "options", "head", "patch", "trace"};
#define N_METHODS (sizeof(oa_methods) / sizeof(oa_methods[0]))

struct route {
    char method[16]; /* upper case */
    char path[128];
};

struct strset {
    char v[MAX_URNS][96];
    int n;
};

static void strset_add(struct strset *s, const char *v, size_t len)
{
    for (int i = 0; i < s->n; i++)
        if (strlen(s->v[i]) == len && !strncmp(s->v[i], v, len))
            return;
    if (s->n < MAX_URNS && len < sizeof(s->v[0])) {
        memcpy(s->v[s->n], v, len);
        s->v[s->n][len] = '\0';
        s->n++;
    }
}

static int strset_has(const struct strset *s, const char *v)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], v))
            return 1;
    return 0;
}

static void upper(char *out, size_t outlen, const char *in)
{
    size_t i = 0;
    for (; in[i] && i + 1 < outlen; i++)
        out[i] = (char)(in[i] >= 'a' && in[i] <= 'z' ? in[i] - 32 : in[i]);
    out[i] = '\0';
}

/* ---- the document: JSON pointers and $ref ---------------------------------------------- */

/* RFC 6901 pointer (without the leading '#') into @p root. @returns a borrowed node or NULL. */
static json_t *pointer_get(json_t *root, const char *ptr)
{
    json_t *cur = root;
    if (*ptr != '\0' && *ptr != '/')
        return NULL;
    while (cur && *ptr == '/') {
        char tok[256];
        size_t n = 0;
        ptr++;
        while (*ptr && *ptr != '/') {
            char c = *ptr++;
            if (c == '~') {
                if (*ptr != '0' && *ptr != '1')
                    return NULL;
                c = *ptr++ == '0' ? '~' : '/';
            }
            if (n + 1 >= sizeof(tok))
                return NULL;
            tok[n++] = c;
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end;
            long i = strtol(tok, &end, 10);
            if (end == tok || *end || i < 0)
                return NULL;
            cur = json_array_get(cur, (size_t)i);
        } else {
            return NULL;
        }
    }
    return cur;
}

/* Follows local "$ref"s ("#/components/..."). @returns the target (borrowed) or NULL. */
static json_t *deref(json_t *node)
{
    for (int i = 0; i < 16 && json_is_object(node); i++) {
        const char *ref = json_string_value(json_object_get(node, "$ref"));
        if (!ref || ref[0] != '#')
            return node;
        node = pointer_get(spec, ref + 1);
    }
    return node;
}

/* Every "$ref" resolves: local ones in the document, relative ones to a JSON file beside it. */
static void check_refs(json_t *node)
{
    const char *key;
    json_t *v;
    size_t i;

    if (json_is_array(node)) {
        json_array_foreach(node, i, v) check_refs(v);
        return;
    }
    if (!json_is_object(node))
        return;
    json_object_foreach(node, key, v)
    {
        const char *ref = json_string_value(v);
        if (strcmp(key, "$ref") != 0 || !ref) {
            check_refs(v);
            continue;
        }
        if (ref[0] == '#') {
            H_CHECKF(h, pointer_get(spec, ref + 1) != NULL,
                     "openapi.json: $ref %s resolves to "
                     "nothing",
                     ref);
        } else {
            char file[512];
            const char *frag = strchr(ref, '#');
            size_t flen = frag ? (size_t)(frag - ref) : strlen(ref);
            json_error_t jerr;
            json_t *ext;
            snprintf(file, sizeof(file), "%s/docs/%.*s", SRC_DIR, (int)flen, ref);
            ext = json_load_file(file, 0, &jerr);
            H_CHECKF(h, ext != NULL, "openapi.json: $ref %s: %s", ref, jerr.text);
            if (ext && frag)
                H_CHECKF(h, pointer_get(ext, frag + 1) != NULL,
                         "openapi.json: $ref %s: no "
                         "such fragment",
                         ref);
            json_decref(ext);
        }
    }
}

/* Every "urn:pm:problem:<name>" inside any string of @p node (descriptions included). */
static void collect_urns_json(json_t *node, struct strset *out);

static void collect_urns_text(const char *text, struct strset *out)
{
    static const char prefix[] = "urn:pm:problem:";
    const char *p = text;
    while ((p = strstr(p, prefix)) != NULL) {
        size_t n = sizeof(prefix) - 1;
        while ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= '0' && p[n] <= '9') || p[n] == '-')
            n++;
        if (n > sizeof(prefix) - 1)
            strset_add(out, p, n);
        p += n;
    }
}

static void collect_urns_json(json_t *node, struct strset *out)
{
    const char *key;
    json_t *v;
    size_t i;
    if (json_is_string(node))
        collect_urns_text(json_string_value(node), out);
    else if (json_is_array(node))
        json_array_foreach(node, i, v) collect_urns_json(v, out);
    else if (json_is_object(node))
        json_object_foreach(node, key, v) collect_urns_json(v, out);
}

/* The problem types that appear as the "type" of an example problem document. */
static void collect_example_types(json_t *node, struct strset *out)
{
    const char *key;
    json_t *v;
    size_t i;
    if (json_is_array(node)) {
        json_array_foreach(node, i, v) collect_example_types(v, out);
    } else if (json_is_object(node)) {
        const char *t = json_string_value(json_object_get(node, "type"));
        if (t && json_is_integer(json_object_get(node, "status")) &&
            !strncmp(t, "urn:pm:problem:", 15))
            strset_add(out, t, strlen(t));
        json_object_foreach(node, key, v) collect_example_types(v, out);
    }
}

/* ---- the source: route table and problem types ----------------------------------------- */

/* Parses `static const struct http_route ingest_routes[] = { {"POST", "/path", ...}, ... };`. */
static int source_routes(struct route *out, int max)
{
    char *src = harness_file_read(SRC_DIR "/services/ingest/ingest_routes.c", NULL);
    const char *p, *end;
    int n = 0;

    if (!H_CHECKF(h, src != NULL, "cannot read services/ingest/ingest_routes.c"))
        return 0;
    p = strstr(src, "ingest_routes[] = {");
    end = p ? strstr(p, "};") : NULL;
    if (!H_CHECKF(h, p && end, "no ingest_routes[] table in ingest_routes.c")) {
        free(src);
        return 0;
    }
    while ((p = strstr(p, "{\"")) != NULL && p < end && n < max) {
        const char *m = p + 2, *mq = strchr(m, '"'), *path, *pq;
        if (!mq)
            break;
        path = mq + 1;
        while (*path == ',' || *path == ' ' || *path == '\n')
            path++;
        if (*path != '"')
            break;
        path++;
        pq = strchr(path, '"');
        if (!pq)
            break;
        snprintf(out[n].method, sizeof(out[n].method), "%.*s", (int)(mq - m), m);
        snprintf(out[n].path, sizeof(out[n].path), "%.*s", (int)(pq - path), path);
        n++;
        p = pq;
    }
    free(src);
    return n;
}

static void source_urns(const char *rel, struct strset *out)
{
    char path[512];
    char *src;
    snprintf(path, sizeof(path), "%s/%s", SRC_DIR, rel);
    src = harness_file_read(path, NULL);
    if (!H_CHECKF(h, src != NULL, "cannot read %s", rel))
        return;
    collect_urns_text(src, out);
    free(src);
}

static int spec_routes(struct route *out, int max)
{
    const char *path;
    json_t *item;
    int n = 0;
    json_object_foreach(json_object_get(spec, "paths"), path, item)
    {
        for (size_t i = 0; i < N_METHODS; i++) {
            if (!json_object_get(item, oa_methods[i]) || n >= max)
                continue;
            upper(out[n].method, sizeof(out[n].method), oa_methods[i]);
            snprintf(out[n].path, sizeof(out[n].path), "%s", path);
            n++;
        }
    }
    return n;
}

static int route_in(const struct route *set, int n, const char *method, const char *path)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(set[i].method, method) && !strcmp(set[i].path, path))
            return 1;
    return 0;
}

/* ---- HTTP ------------------------------------------------------------------------------ */

static void send_req(const char *method, const char *path, const char *const *headers,
                     const char *body, size_t len, struct harness_http_response *r)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", base, path);
    memset(r, 0, sizeof(*r));
    if (harness_http(method, url, headers, body, len, 20000, r) != 0)
        H_FAIL(h, "%s %s: no answer: %s", method, path, r->error);
}

/* Media type of an answer without parameters, lower case. */
static void media_type(const struct harness_http_response *r, char *out, size_t len)
{
    const char *ct = harness_http_header(r, "Content-Type");
    size_t n = 0;
    if (!ct)
        ct = "";
    while (ct[n] && ct[n] != ';' && ct[n] != ' ' && n + 1 < len) {
        out[n] = (char)(ct[n] >= 'A' && ct[n] <= 'Z' ? ct[n] + 32 : ct[n]);
        n++;
    }
    out[n] = '\0';
}

/* The response object documented for @p status in an operation's responses (resolved). */
static json_t *op_response(json_t *op, long status)
{
    char code[8];
    snprintf(code, sizeof(code), "%ld", status);
    return deref(json_object_get(json_object_get(op, "responses"), code));
}

static json_t *header_named(json_t *headers, const char *name)
{
    const char *key;
    json_t *v;
    json_object_foreach(headers, key, v)
    {
        if (!strcasecmp(key, name))
            return deref(v);
    }
    return NULL;
}

static const char *str_or_empty(json_t *j)
{
    const char *s = json_string_value(j);
    return s ? s : "";
}

static int example_is_problem(json_t *v, const char *type, long status)
{
    return v && !strcmp(str_or_empty(json_object_get(v, "type")), type) &&
           json_integer_value(json_object_get(v, "status")) == status;
}

/* 1 when an example of @p media (a Media Type Object) is a problem with @p type and @p status. */
static int media_has_problem(json_t *media, const char *type, long status)
{
    const char *key;
    json_t *e;
    if (example_is_problem(json_object_get(media, "example"), type, status))
        return 1;
    json_object_foreach(json_object_get(media, "examples"), key, e)
    {
        if (example_is_problem(json_object_get(deref(e), "value"), type, status))
            return 1;
    }
    return 0;
}

/* A documented response anywhere (components or operations) with this problem as an example. */
static json_t *response_anywhere(long status, const char *type)
{
    const char *key, *path, *m, *code;
    json_t *resp, *item, *op;
    json_object_foreach(json_object_get(json_object_get(spec, "components"), "responses"), key,
                        resp)
    {
        resp = deref(resp);
        if (media_has_problem(
                json_object_get(json_object_get(resp, "content"), "application/problem+json"), type,
                status))
            return resp;
    }
    json_object_foreach(json_object_get(spec, "paths"), path, item)
    {
        json_object_foreach(item, m, op)
        {
            json_object_foreach(json_object_get(op, "responses"), code, resp)
            {
                resp = deref(resp);
                if (media_has_problem(json_object_get(json_object_get(resp, "content"),
                                                      "application/problem+json"),
                                      type, status))
                    return resp;
            }
        }
    }
    return NULL;
}

/* ---- a small JSON Schema check for the answers' documented schemas --------------------- */

static int type_ok(const char *t, json_t *v)
{
    if (!strcmp(t, "string"))
        return json_is_string(v);
    if (!strcmp(t, "integer"))
        return json_is_integer(v);
    if (!strcmp(t, "number"))
        return json_is_number(v);
    if (!strcmp(t, "object"))
        return json_is_object(v);
    if (!strcmp(t, "array"))
        return json_is_array(v);
    if (!strcmp(t, "boolean"))
        return json_is_boolean(v);
    if (!strcmp(t, "null"))
        return json_is_null(v);
    return 0;
}

/* What the documented schemas use: type, const, enum, minimum/maximum, required, properties,
 * additionalProperties false, items, oneOf, local $ref. @returns 1 when @p v fits. */
static int schema_ok(json_t *schema, json_t *v, char *why, size_t len)
{
    const char *t, *key;
    json_t *x, *e;
    size_t i;

    schema = deref(schema);
    if (!json_is_object(schema))
        return 1;
    t = json_string_value(json_object_get(schema, "type"));
    if (t && !type_ok(t, v)) {
        snprintf(why, len, "not of type %s", t);
        return 0;
    }
    x = json_object_get(schema, "const");
    if (x && !json_equal(x, v)) {
        snprintf(why, len, "not the documented constant");
        return 0;
    }
    x = json_object_get(schema, "enum");
    if (x) {
        int any = 0;
        json_array_foreach(x, i, e) any |= json_equal(e, v);
        if (!any) {
            snprintf(why, len, "not one of the documented values");
            return 0;
        }
    }
    if (json_is_integer(v)) {
        x = json_object_get(schema, "minimum");
        if (json_is_integer(x) && json_integer_value(v) < json_integer_value(x)) {
            snprintf(why, len, "below the documented minimum");
            return 0;
        }
        x = json_object_get(schema, "maximum");
        if (json_is_integer(x) && json_integer_value(v) > json_integer_value(x)) {
            snprintf(why, len, "above the documented maximum");
            return 0;
        }
    }
    if (json_is_object(v)) {
        json_t *props = json_object_get(schema, "properties");
        json_array_foreach(json_object_get(schema, "required"), i, e)
        {
            if (!json_object_get(v, str_or_empty(e))) {
                snprintf(why, len, "member %s is missing", str_or_empty(e));
                return 0;
            }
        }
        json_object_foreach(v, key, x)
        {
            json_t *ps = json_object_get(props, key);
            if (ps && !schema_ok(ps, x, why, len))
                return 0;
            if (!ps && json_is_false(json_object_get(schema, "additionalProperties"))) {
                snprintf(why, len, "member %s is not documented", key);
                return 0;
            }
        }
    }
    if (json_is_array(v) && json_object_get(schema, "items")) {
        json_array_foreach(v, i, e)
        {
            if (!schema_ok(json_object_get(schema, "items"), e, why, len))
                return 0;
        }
    }
    x = json_object_get(schema, "oneOf");
    if (x) {
        int matches = 0;
        char tmp[256];
        json_array_foreach(x, i, e) matches += schema_ok(e, v, tmp, sizeof(tmp));
        if (matches != 1) {
            snprintf(why, len, "fits %d of the oneOf alternatives, not exactly one", matches);
            return 0;
        }
    }
    return 1;
}

/* ---- comparing a live answer with its documentation ------------------------------------ */

/* @p doc (a resolved Response Object, NULL when the status is not documented) documents @p r:
 * its media type, its JSON body (schema, and for a problem an example of its type), and its
 * headers (every Retry-After / WWW-Authenticate / Allow sent is declared, every required
 * declared header is sent). */
static void check_answer(json_t *doc, const struct harness_http_response *r, const char *what)
{
    static const char *const watched[] = {"Retry-After", "WWW-Authenticate", "Allow"};
    char mt[96], why[256];
    const char *key;
    json_t *media, *hv, *body;

    if (!H_CHECKF(h, doc != NULL, "%s: status %ld is not documented", what, r->status))
        return;
    media_type(r, mt, sizeof(mt));
    media = json_object_get(json_object_get(doc, "content"), mt);
    if (r->body_len || mt[0])
        H_CHECKF(h, media != NULL, "%s: a %ld answer of type %s is not documented", what, r->status,
                 mt[0] ? mt : "(none)");
    body = r->body_len ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    if (media && body) {
        H_CHECKF(h, schema_ok(json_object_get(media, "schema"), body, why, sizeof(why)),
                 "%s: the %ld answer does not fit its documented schema: %s", what, r->status, why);
        if (!strcmp(mt, "application/problem+json")) {
            const char *type = str_or_empty(json_object_get(body, "type"));
            H_CHECKF(h, media_has_problem(media, type, r->status),
                     "%s: problem %s (%ld) has no example in its documented response", what, type,
                     r->status);
        }
    }
    json_decref(body);
    for (size_t i = 0; i < sizeof(watched) / sizeof(watched[0]); i++)
        if (harness_http_header(r, watched[i]))
            H_CHECKF(h, header_named(json_object_get(doc, "headers"), watched[i]) != NULL,
                     "%s: the %ld answer has %s, its documentation does not declare it", what,
                     r->status, watched[i]);
    json_object_foreach(json_object_get(doc, "headers"), key, hv)
    {
        if (json_is_true(json_object_get(deref(hv), "required")))
            H_CHECKF(h, harness_http_header(r, key) != NULL,
                     "%s: the %ld answer lacks the documented required header %s", what, r->status,
                     key);
    }
}

static json_t *op_get(const char *path, const char *method)
{
    return json_object_get(json_object_get(json_object_get(spec, "paths"), path), method);
}

static void post_signed(const char *path, const char *ctype, const char *id, const char *body,
                        long long ts_offset, struct harness_http_response *r)
{
    struct harness_webhook_headers wh;
    char err[128], ct[160];
    const char *headers[6];

    memset(r, 0, sizeof(*r));
    if (harness_webhook_sign(SECRET, id, (long long)time(NULL) + ts_offset, body, strlen(body), &wh,
                             err, sizeof(err)) != 0) {
        H_FAIL(h, "signing failed: %s", err);
        return;
    }
    snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
    headers[0] = ct;
    headers[1] = wh.id;
    headers[2] = wh.timestamp;
    headers[3] = wh.signature;
    headers[4] = "traceparent: " TRACE;
    headers[5] = NULL;
    send_req("POST", path, headers, body, strlen(body), r);
}

/* A 202 answer: the documented schema (via check_answer), the event id and the topic. */
static void check_accepted(json_t *op, const struct harness_http_response *r, const char *want_id,
                           int duplicate, const char *what)
{
    json_t *j;
    const char *topic = json_string_value(json_object_get(op, "x-pm-topic"));

    if (!H_CHECKF(h, r->status == 202, "%s: %ld %s", what, r->status, r->body ? r->body : ""))
        return;
    check_answer(op_response(op, 202), r, what);
    j = json_loads(r->body, 0, NULL);
    H_CHECK_STR(h, json_string_value(json_object_get(j, "id")), want_id);
    if (topic)
        H_CHECK_STR(h, json_string_value(json_object_get(j, "topic")), topic);
    H_CHECKF(h,
             duplicate ? json_is_true(json_object_get(j, "duplicate"))
                       : json_object_get(j, "duplicate") == NULL,
             "%s: duplicate flag is not %d", what, duplicate);
    json_decref(j);
}

/* A refused request: the expected status and problem type, and documented on this operation. */
static void probe(json_t *op, const char *path, const char *what, const char *const *headers,
                  const char *body, size_t len, long want, const char *type)
{
    struct harness_http_response r;
    char label[256];
    json_t *j;

    snprintf(label, sizeof(label), "POST %s (%s)", path, what);
    send_req("POST", path, headers, body, len, &r);
    H_CHECKF(h, r.status == want, "%s: %ld, want %ld", label, r.status, want);
    check_answer(op_response(op, r.status), &r, label);
    j = json_loads(r.body ? r.body : "", 0, NULL);
    H_CHECKF(h, !strcmp(str_or_empty(json_object_get(j, "type")), type), "%s: type %s, want %s",
             label, str_or_empty(json_object_get(j, "type")), type);
    json_decref(j);
    harness_http_response_free(&r);
}

/* The operation's security: a bearer alternative and the three Standard Webhooks headers. */
static void check_post_security(json_t *op, const char *path)
{
    json_t *schemes = json_object_get(json_object_get(spec, "components"), "securitySchemes");
    json_t *req, *scopes;
    size_t i;
    const char *name;
    int bearer = 0, webhook = 0;

    json_array_foreach(json_object_get(op, "security"), i, req)
    {
        int n = 0, hdrs = 0, is_bearer = 0;
        json_object_foreach(req, name, scopes)
        {
            json_t *s = deref(json_object_get(schemes, name));
            const char *type = str_or_empty(json_object_get(s, "type"));
            const char *hn = str_or_empty(json_object_get(s, "name"));
            n++;
            if (!strcmp(type, "http") &&
                !strcasecmp(str_or_empty(json_object_get(s, "scheme")), "bearer"))
                is_bearer = 1;
            if (!strcmp(type, "apiKey") &&
                !strcmp(str_or_empty(json_object_get(s, "in")), "header") &&
                (!strcasecmp(hn, "webhook-id") || !strcasecmp(hn, "webhook-timestamp") ||
                 !strcasecmp(hn, "webhook-signature")))
                hdrs++;
        }
        bearer |= is_bearer && n == 1;
        webhook |= hdrs == 3 && n == 3;
    }
    H_CHECKF(h, bearer, "POST %s: no bearer security requirement documented", path);
    H_CHECKF(h, webhook,
             "POST %s: no webhook-id + webhook-timestamp + webhook-signature security "
             "requirement documented",
             path);
}

static void check_header_param(json_t *op, const char *path, const char *name)
{
    json_t *p;
    size_t i;
    int found = 0;
    json_array_foreach(json_object_get(op, "parameters"), i, p)
    {
        p = deref(p);
        if (!strcmp(str_or_empty(json_object_get(p, "in")), "header") &&
            !strcasecmp(str_or_empty(json_object_get(p, "name")), name))
            found = 1;
    }
    H_CHECKF(h, found, "POST %s: header parameter %s is not documented", path, name);
}

/* For the 503 test at the end: a documented POST and a body it accepts. */
static char unavailable_path[128];
static char *unavailable_body;

static void test_post(const char *path, json_t *op)
{
    json_t *content = json_object_get(deref(json_object_get(op, "requestBody")), "content");
    const char *mt, *name;
    json_t *media, *e;
    char *first = NULL, *big;
    char idem[96], want_id[64], label[256];
    struct harness_http_response r;
    int nexamples = 0;

    check_post_security(op, path);
    check_header_param(op, path, "Idempotency-Key");
    check_header_param(op, path, "traceparent");

    /* Every documented example, signed, with its media type: 202 as documented. */
    json_object_foreach(content, mt, media)
    {
        json_object_foreach(json_object_get(media, "examples"), name, e)
        {
            char id[64];
            char *body = json_dumps(json_object_get(deref(e), "value"), JSON_COMPACT);
            if (!H_CHECKF(h, body != NULL, "POST %s: example %s has no value", path, name))
                continue;
            snprintf(id, sizeof(id), "openapi-%d", ++seq);
            snprintf(label, sizeof(label), "POST %s (%s, example %s)", path, mt, name);
            post_signed(path, mt, id, body, 0, &r);
            check_accepted(op, &r, id, 0, label);
            harness_http_response_free(&r);
            nexamples++;
            if (!first && !strcmp(mt, "application/json"))
                first = body;
            else
                free(body);
        }
    }
    H_CHECKF(h, nexamples > 0, "POST %s: no request body examples documented", path);
    if (!H_CHECKF(h, first != NULL, "POST %s: no application/json example", path))
        return;

    /* Bearer token and a quoted Idempotency-Key; the repeat is the flagged duplicate; the same
     * key with other bytes is refused. */
    snprintf(want_id, sizeof(want_id), "openapi-idem-%d", ++seq);
    snprintf(idem, sizeof(idem), "Idempotency-Key: \"%s\"", want_id);
    {
        const char *hd[] = {"Content-Type: application/json", "Authorization: Bearer " TOKEN, idem,
                            "traceparent: " TRACE, NULL};
        char *changed = malloc(strlen(first) + 2);
        snprintf(label, sizeof(label), "POST %s (bearer, Idempotency-Key)", path);
        send_req("POST", path, hd, first, strlen(first), &r);
        check_accepted(op, &r, want_id, 0, label);
        harness_http_response_free(&r);
        send_req("POST", path, hd, first, strlen(first), &r);
        check_accepted(op, &r, want_id, 1, label);
        harness_http_response_free(&r);
        if (changed) {
            snprintf(changed, strlen(first) + 2, "%s ", first);
            probe(op, path, "Idempotency-Key reused with another body", hd, changed,
                  strlen(changed), 422, "urn:pm:problem:idempotency-key-reused");
            free(changed);
        }
    }

    /* Refusals a client meets: each status and problem type documented on this operation. */
    {
        const char *none[] = {"Content-Type: application/json", NULL};
        const char *text[] = {"Content-Type: text/plain", "Authorization: Bearer " TOKEN, NULL};
        const char *json[] = {"Content-Type: application/json", "Authorization: Bearer " TOKEN,
                              NULL};
        const char *badkey[] = {"Content-Type: application/json", "Authorization: Bearer " TOKEN,
                                "Idempotency-Key: two words", NULL};
        const char *badtoken[] = {"Content-Type: application/json",
                                  "Authorization: Bearer not-a-configured-token-0000", NULL};
        char id[64];

        probe(op, path, "no credentials", none, first, strlen(first), 401,
              "urn:pm:problem:unauthorized");
        probe(op, path, "unknown bearer token", badtoken, first, strlen(first), 401,
              "urn:pm:problem:unauthorized");
        probe(op, path, "text/plain", text, first, strlen(first), 415,
              "urn:pm:problem:unsupported-media-type");
        probe(op, path, "malformed JSON", json, "{\"patient_id\":", 14, 400,
              "urn:pm:problem:invalid-json");
        probe(op, path, "empty object", json, "{}", 2, 400, "urn:pm:problem:invalid-fields");
        probe(op, path, "malformed Idempotency-Key", badkey, first, strlen(first), 400,
              "urn:pm:problem:invalid-header");

        snprintf(id, sizeof(id), "openapi-%d", ++seq);
        post_signed(path, "application/json", id, first, -1000, &r);
        H_CHECKF(h, r.status == 401, "POST %s (stale signature): %ld", path, r.status);
        snprintf(label, sizeof(label), "POST %s (stale signature)", path);
        check_answer(op_response(op, r.status), &r, label);
        harness_http_response_free(&r);

        big = malloc(MAX_BODY + 2);
        if (big) {
            memset(big, ' ', MAX_BODY + 1);
            big[0] = '{';
            big[MAX_BODY + 1] = '\0';
            probe(op, path, "over PM_INGEST_MAX_BODY_BYTES", json, big, MAX_BODY + 1, 413,
                  "urn:pm:problem:payload-too-large");
            free(big);
        }
    }

    if (!unavailable_body) {
        snprintf(unavailable_path, sizeof(unavailable_path), "%s", path);
        unavailable_body = first;
    } else {
        free(first);
    }
}

static void test_get(const char *path, json_t *op)
{
    struct harness_http_response r;
    char label[160];
    json_t *sec = json_object_get(op, "security");

    snprintf(label, sizeof(label), "GET %s", path);
    H_CHECKF(h, !sec || json_array_size(sec) == 0,
             "%s answers without credentials, but its documentation requires some", label);
    send_req("GET", path, NULL, NULL, 0, &r);
    H_CHECKF(h, r.status == 200, "%s: %ld", label, r.status);
    check_answer(op_response(op, r.status), &r, label);
    harness_http_response_free(&r);
}

/* Every documented path and method, called for real. */
static void test_documented(void)
{
    const char *path, *m;
    json_t *item, *op;
    json_object_foreach(json_object_get(spec, "paths"), path, item)
    {
        json_object_foreach(item, m, op)
        {
            if (!strcmp(m, "get"))
                test_get(path, op);
            else if (!strcmp(m, "post"))
                test_post(path, op);
            else if (strcmp(m, "parameters") && strcmp(m, "summary") && strcmp(m, "description"))
                H_FAIL(h, "docs/openapi.json: %s %s: this test has no probe for that method", m,
                       path);
        }
    }
}

/* Methods a path does not document get 405 with Allow = the documented ones; unknown paths 404. */
static void test_undocumented(void)
{
    static const char *const probes[] = {"GET",   "POST",    "PUT", "DELETE",
                                         "PATCH", "OPTIONS", "HEAD"};
    static const char *const unknown[] = {"/",          "/v1",          "/v1/",
                                          "/v1/canvas", "/v1/patient",  "/v2/canvas/messages",
                                          "/health",    "/metrics.txt", "/v1/patient/reply"};
    json_t *paths = json_object_get(spec, "paths");
    const char *path;
    json_t *item;
    struct harness_http_response r;
    char label[256], variant[160];

    json_object_foreach(paths, path, item)
    {
        char documented[N_METHODS][16];
        int nd = 0;
        for (size_t i = 0; i < N_METHODS; i++)
            if (json_object_get(item, oa_methods[i]))
                upper(documented[nd++], sizeof(documented[0]), oa_methods[i]);

        for (size_t p = 0; p < sizeof(probes) / sizeof(probes[0]); p++) {
            const char *allow;
            int listed = 0, ok = 1;
            int documented_here = 0;
            for (int i = 0; i < nd; i++)
                documented_here |= !strcmp(documented[i], probes[p]);
            if (documented_here)
                continue;
            snprintf(label, sizeof(label), "%s %s (undocumented method)", probes[p], path);
            send_req(probes[p], path, NULL, NULL, 0, &r);
            H_CHECKF(h, r.status == 405, "%s: %ld, want 405", label, r.status);
            allow = harness_http_header(&r, "Allow");
            if (H_CHECKF(h, allow != NULL, "%s: no Allow header", label)) {
                /* Allow names exactly the documented methods. */
                const char *s = allow;
                while (*s) {
                    char tok[16];
                    size_t n = 0;
                    int known = 0;
                    while (*s == ' ' || *s == ',')
                        s++;
                    while (s[n] && s[n] != ',' && s[n] != ' ' && n + 1 < sizeof(tok)) {
                        tok[n] = s[n];
                        n++;
                    }
                    tok[n] = '\0';
                    s += n;
                    while (*s && *s != ',')
                        s++;
                    if (!n)
                        continue;
                    for (int i = 0; i < nd; i++)
                        known |= !strcmp(documented[i], tok);
                    ok &= known;
                    listed++;
                }
                H_CHECKF(h, ok && listed == nd, "%s: Allow: %s, but documented are %d method(s)",
                         label, allow, nd);
            }
            if (strcmp(probes[p], "HEAD") != 0) {
                json_t *j = json_loads(r.body ? r.body : "", 0, NULL);
                check_answer(response_anywhere(405, str_or_empty(json_object_get(j, "type"))), &r,
                             label);
                json_decref(j);
            }
            harness_http_response_free(&r);
        }

        /* Near misses of a documented path are not routes. */
        for (int v = 0; v < 3; v++) {
            if (v == 0)
                snprintf(variant, sizeof(variant), "%s/", path);
            else if (v == 1)
                snprintf(variant, sizeof(variant), "%s/x", path);
            else
                snprintf(variant, sizeof(variant), "%.*s", (int)strlen(path) - 1, path);
            if (json_object_get(paths, variant))
                continue;
            for (int i = 0; i < nd; i++) {
                json_t *j;
                snprintf(label, sizeof(label), "%s %s (undocumented path)", documented[i], variant);
                send_req(documented[i], variant, NULL, NULL, 0, &r);
                H_CHECKF(h, r.status == 404, "%s: %ld, want 404", label, r.status);
                j = json_loads(r.body ? r.body : "", 0, NULL);
                check_answer(response_anywhere(404, str_or_empty(json_object_get(j, "type"))), &r,
                             label);
                json_decref(j);
                harness_http_response_free(&r);
            }
        }
    }

    for (size_t u = 0; u < sizeof(unknown) / sizeof(unknown[0]); u++) {
        if (json_object_get(paths, unknown[u]))
            continue;
        for (int m = 0; m < 2; m++) {
            json_t *j;
            const char *method = m ? "POST" : "GET";
            snprintf(label, sizeof(label), "%s %s (undocumented path)", method, unknown[u]);
            send_req(method, unknown[u], NULL, NULL, 0, &r);
            H_CHECKF(h, r.status == 404, "%s: %ld, want 404", label, r.status);
            j = json_loads(r.body ? r.body : "", 0, NULL);
            check_answer(response_anywhere(404, str_or_empty(json_object_get(j, "type"))), &r,
                         label);
            json_decref(j);
            harness_http_response_free(&r);
        }
    }
}

/* Kafka away: the 503 of a POST and of /readyz are the documented ones; back: the same event id
 * is accepted, as the 503 documentation promises. */
static void test_unavailable(struct harness_proc *kafka)
{
    struct harness_http_response r;
    json_t *op = op_get(unavailable_path, "post"), *ready = op_get("/readyz", "get");
    char answer[256], url[256], id[64], label[256];

    if (!unavailable_body || !H_CHECK(h, op && ready))
        return;
    snprintf(url, sizeof(url), "%s/readyz", base);
    snprintf(id, sizeof(id), "openapi-%d", ++seq);
    if (!H_CHECK_INT(h, harness_devbroker_cmd(kafka, "down all", answer, sizeof(answer)), 0))
        return;

    snprintf(label, sizeof(label), "POST %s (Kafka down)", unavailable_path);
    post_signed(unavailable_path, "application/json", id, unavailable_body, 0, &r);
    H_CHECKF(h, r.status == 503, "%s: %ld, want 503", label, r.status);
    check_answer(op_response(op, r.status), &r, label);
    /* PM_INGEST_ACK_TIMEOUT_MS=2000 is under 5 s: the documented Retry-After is 1. */
    H_CHECK_STR(h, harness_http_header(&r, "Retry-After"), "1");
    harness_http_response_free(&r);

    H_CHECK_INT(h, harness_http_wait(url, 503, 15000), 0);
    send_req("GET", "/readyz", NULL, NULL, 0, &r);
    H_CHECK_INT(h, r.status, 503);
    check_answer(op_response(ready, r.status), &r, "GET /readyz (Kafka down)");
    harness_http_response_free(&r);

    H_CHECK_INT(h, harness_devbroker_cmd(kafka, "up all", answer, sizeof(answer)), 0);
    H_CHECK_INT(h, harness_http_wait(url, 200, 30000), 0);
    snprintf(label, sizeof(label), "POST %s (retry after 503)", unavailable_path);
    post_signed(unavailable_path, "application/json", id, unavailable_body, 0, &r);
    check_accepted(op, &r, id, 0, label);
    harness_http_response_free(&r);
}

/* What needs no process: the document's shape, its $refs, routes and problem types vs source. */
static void test_static(void)
{
    struct route src[MAX_ROUTES], doc[MAX_ROUTES];
    struct strset code_urns, doc_urns, example_urns;
    const char *oa = json_string_value(json_object_get(spec, "openapi"));
    int nsrc, ndoc;

    memset(&code_urns, 0, sizeof(code_urns));
    memset(&doc_urns, 0, sizeof(doc_urns));
    memset(&example_urns, 0, sizeof(example_urns));
    H_CHECKF(h, oa && !strncmp(oa, "3.1.", 4), "docs/openapi.json: \"openapi\" is not 3.1.x");
    check_refs(spec);

    nsrc = source_routes(src, MAX_ROUTES);
    ndoc = spec_routes(doc, MAX_ROUTES);
    for (int i = 0; i < nsrc; i++)
        H_CHECKF(h, route_in(doc, ndoc, src[i].method, src[i].path),
                 "route %s %s (services/ingest/ingest_routes.c) is not in docs/openapi.json",
                 src[i].method, src[i].path);
    for (int i = 0; i < ndoc; i++)
        H_CHECKF(h, route_in(src, nsrc, doc[i].method, doc[i].path),
                 "docs/openapi.json documents %s %s, which ingest_routes.c does not route",
                 doc[i].method, doc[i].path);

    source_urns("services/ingest/ingest_routes.c", &code_urns);
    source_urns("common/http_server.c", &code_urns);
    H_CHECKF(h, code_urns.n > 0, "no urn:pm:problem: types found in the source");
    collect_urns_json(spec, &doc_urns);
    collect_example_types(spec, &example_urns);
    for (int i = 0; i < code_urns.n; i++)
        H_CHECKF(h, strset_has(&example_urns, code_urns.v[i]),
                 "problem type %s (source) has no example problem in docs/openapi.json",
                 code_urns.v[i]);
    for (int i = 0; i < doc_urns.n; i++)
        H_CHECKF(h, strset_has(&code_urns, doc_urns.v[i]),
                 "docs/openapi.json names problem type %s, which pm-ingest never answers",
                 doc_urns.v[i]);
}

/* info.version is the version of the pm-ingest it describes. */
static void test_version(void)
{
    const char *argv[] = {"pm-ingest", "--version", NULL};
    const char *want = json_string_value(json_object_get(json_object_get(spec, "info"), "version"));
    struct harness_proc *p = harness_proc_start(h, "version", argv, NULL);
    char line[128] = "";

    if (!p)
        return;
    harness_proc_read_line(p, line, sizeof(line), 5000);
    harness_proc_wait(p, 5000);
    H_CHECKF(h, want && !strcmp(line + (strncmp(line, "pm-ingest ", 10) ? 0 : 10), want),
             "docs/openapi.json info.version %s, but pm-ingest --version says \"%s\"",
             want ? want : "(none)", line);
}

int main(void)
{
    char bootstrap[512], url[256], listen[64], brokers[600];
    struct harness_proc *kafka, *ingest;
    json_error_t jerr;
    int port;

    h = harness_init("openapi");
    spec = json_load_file(SRC_DIR "/docs/openapi.json", JSON_REJECT_DUPLICATES, &jerr);
    if (!H_CHECKF(h, spec != NULL, "docs/openapi.json: line %d: %s", jerr.line, jerr.text))
        return harness_finish(h);
    test_static();
    test_version();

    kafka = harness_devbroker_start(h, 1, 4, NULL, bootstrap, sizeof(bootstrap));
    if (!H_CHECK(h, kafka != NULL))
        goto out;
    port = harness_free_port();
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
    snprintf(listen, sizeof(listen), "PM_INGEST_LISTEN=127.0.0.1:%d", port);
    snprintf(brokers, sizeof(brokers), "PM_KAFKA_BROKERS=%s", bootstrap);
    {
        const char *env[] = {listen,
                             brokers,
                             "PM_INGEST_WEBHOOK_SECRETS=" SECRET,
                             "PM_INGEST_BEARER_TOKENS=" TOKEN,
                             "PM_INGEST_MAX_BODY_BYTES=8192",
                             "PM_INGEST_ACK_TIMEOUT_MS=2000",
                             "PM_LOG_LEVEL=debug",
                             "PM_KAFKA_CONFIG_FILE",
                             "PM_INGEST_ALLOW_UNAUTHENTICATED",
                             "PM_TOPIC_CANVAS_MESSAGES",
                             "PM_TOPIC_PATIENT_REPLIES",
                             "PM_TOPIC_QUESTIONNAIRE_RESPONSES",
                             NULL};
        const char *argv[] = {"pm-ingest", NULL};
        ingest = harness_proc_start(h, "ingest", argv, env);
    }
    snprintf(url, sizeof(url), "%s/readyz", base);
    if (!H_CHECK(h, ingest && harness_http_wait(url, 200, 20000) == 0))
        goto out;

    test_documented();
    test_undocumented();
    test_unavailable(kafka);

out:
    free(unavailable_body);
    json_decref(spec);
    return harness_finish(h);
}
