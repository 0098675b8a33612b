/* pm-sandbox Canvas FHIR API: bearer check, read, search and create routed under /fhir. */
#include "sandbox.h"

#include "http_server.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SANDBOX_FHIR_PREFIX "/fhir/"

void sandbox_fhir_error(struct sandbox_answer *a, int status, const char *code, const char *text)
{
    sandbox_answer_json(a, status, sandbox_outcome_json(code, text));
}

static void sandbox_fhir_outcome(struct sandbox_answer *a, const struct sandbox_outcome *o)
{
    sandbox_fhir_error(a, o->status, o->code, o->text);
}

/* @returns 1 when the request carries "Authorization: Bearer <issued, unexpired token>". */
static int sandbox_fhir_authorized(struct sandbox *sb, struct http_request *req)
{
    const char *auth = http_request_header(req, "Authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return 0;
    auth += 7;
    while (*auth == ' ')
        auth++;
    return *auth && sandbox_tokens_valid(sb->tokens, auth, time(NULL));
}

/* The parts of "/fhir/<Type>[/<id>[/_history/<v>]]". */
struct sandbox_fhir_path {
    char type[64];
    char id[128];
    int has_id;
    int valid;
};

static void sandbox_fhir_path_parse(const char *path, struct sandbox_fhir_path *p)
{
    char buf[512];
    char *segs[5];
    int n = 0;
    size_t len;
    char *s;

    memset(p, 0, sizeof(*p));
    snprintf(buf, sizeof(buf), "%s", path + strlen(SANDBOX_FHIR_PREFIX));
    len = strlen(buf);
    if (len && buf[len - 1] == '/')
        buf[--len] = '\0';
    s = buf;
    while (s && n < 5) {
        segs[n++] = s;
        s = strchr(s, '/');
        if (s)
            *s++ = '\0';
    }
    if (s || n == 0 || n == 3 || !segs[0][0])
        return;
    if (n == 4 && (strcmp(segs[2], "_history") != 0 || !segs[3][0]))
        return;
    for (const char *c = segs[0]; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z')))
            return;
    if (strlen(segs[0]) >= sizeof(p->type) || (n >= 2 && strlen(segs[1]) >= sizeof(p->id)))
        return;
    snprintf(p->type, sizeof(p->type), "%s", segs[0]);
    if (n >= 2) {
        if (!segs[1][0])
            return;
        snprintf(p->id, sizeof(p->id), "%s", segs[1]);
        p->has_id = 1;
    }
    p->valid = 1;
}

static void sandbox_fhir_read(struct sandbox *sb, const struct sandbox_fhir_path *p,
                              struct sandbox_answer *ans)
{
    size_t len = 0;
    int found = 0;
    char *res = sandbox_store_get_text(sb->store, p->type, p->id, &len, &found);
    char text[256];

    if (!found) {
        snprintf(text, sizeof(text), "Unknown %s resource '%s'", p->type, p->id);
        sandbox_fhir_error(ans, 404, "not-found", text);
        return;
    }
    if (!res) {
        sandbox_answer_raw(ans, 500, NULL, NULL, 0);
        return;
    }
    sandbox_answer_take(ans, 200, "application/json", res, len);
}

static void sandbox_fhir_search_answer(struct sandbox *sb, struct http_request *req,
                                       const struct sandbox_fhir_path *p,
                                       struct sandbox_answer *ans)
{
    const char *const *names = sandbox_search_param_names(p->type);
    struct sandbox_search_param params[16];
    struct sandbox_outcome err;
    size_t n = 0;
    json_t *bundle;

    for (size_t i = 0; names && names[i] && n < 16; i++) {
        const char *v = http_request_query(req, names[i]);
        if (v && *v)
            params[n++] = (struct sandbox_search_param){names[i], v};
    }
    bundle = sandbox_fhir_search(sb->store, p->type, params, n, http_request_query(req, "_count"),
                                 http_request_query(req, "_offset"), &err);
    if (!bundle) {
        sandbox_fhir_outcome(ans, &err);
        return;
    }
    sandbox_answer_json(ans, 200, bundle);
}

static int sandbox_fhir_json_ctype(const char *ctype)
{
    return ctype && (strncasecmp(ctype, "application/json", 16) == 0 ||
                     strncasecmp(ctype, "application/fhir+json", 21) == 0);
}

static int sandbox_fhir_create(struct sandbox *sb, struct http_request *req,
                               const struct sandbox_fhir_path *p, struct sandbox_answer *ans)
{
    int is_comm = strcmp(p->type, "Communication") == 0;
    int is_qr = strcmp(p->type, "QuestionnaireResponse") == 0;
    json_t *body = NULL, *stored = NULL;
    json_error_t jerr;
    struct sandbox_outcome err;
    char id[37], now[48], location[200], why[160];
    const char *data;
    size_t len;
    int rc = 0;

    if (!is_comm && !is_qr) {
        snprintf(why, sizeof(why), "Create is not supported for %s", p->type);
        sandbox_fhir_error(ans, 405, "not-supported", why);
        goto out;
    }
    if (!sandbox_fhir_json_ctype(http_request_header(req, "Content-Type"))) {
        sandbox_fhir_error(ans, 415, "not-supported", "Content-Type must be application/json");
        goto out;
    }
    data = http_request_body(req, &len);
    body = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!body) {
        sandbox_fhir_error(ans, 400, "invalid", "The request body is not valid JSON");
        goto out;
    }
    if ((is_comm ? sandbox_communication_validate(sb->store, body, &err)
                 : sandbox_qr_validate(sb->store, body, &err)) != 0) {
        sandbox_fhir_outcome(ans, &err);
        log_debug("create rejected", LOG_S("type", p->type), LOG_I("http_status", err.status));
        goto out;
    }
    sandbox_uuid(id);
    sandbox_now_fhir(now, sizeof(now));
    stored = is_comm ? sandbox_communication_normalize(body, id, now)
                     : sandbox_qr_normalize(body, id, now);
    if (!stored || sandbox_store_put(sb->store, stored, why, sizeof(why)) != 0) {
        rc = -1;
        goto out;
    }
    /* Canvas answers a create with 201 and the JSON literal null; the id is only in Location,
     * whose scheme and host need not be the ones the client called. */
    snprintf(location, sizeof(location), "%s/%s/%s/_history/1", SANDBOX_LOCATION_BASE, p->type, id);
    sandbox_answer_json(ans, 201, NULL);
    sandbox_answer_header(ans, "Location", location);
    log_info("resource created", LOG_S("type", p->type), LOG_S("resource_id", id));
out:
    json_decref(body);
    json_decref(stored);
    return rc;
}

int sandbox_fhir_handle(struct sandbox *sb, struct http_request *req, struct sandbox_answer *ans)
{
    const char *method = http_request_method(req);
    struct sandbox_fhir_path p;
    char text[200];

    /* Canvas authenticates before it looks at the path. */
    if (!sandbox_fhir_authorized(sb, req)) {
        sandbox_fhir_error(ans, 401, "unknown", "Authentication failed");
        return 0;
    }
    sandbox_fhir_path_parse(http_request_path(req), &p);
    if (!p.valid) {
        sandbox_fhir_error(ans, 404, "not-found", "Unknown resource path");
        return 0;
    }
    if (strcmp(method, "GET") == 0) {
        if (p.has_id)
            sandbox_fhir_read(sb, &p, ans);
        else
            sandbox_fhir_search_answer(sb, req, &p, ans);
        return 0;
    }
    if (strcmp(method, "POST") == 0 && !p.has_id)
        return sandbox_fhir_create(sb, req, &p, ans);
    snprintf(text, sizeof(text), "Operation %s is not supported on %s", method, p.type);
    sandbox_fhir_error(ans, 405, "not-supported", text);
    return 0;
}
