/* pm-sandbox FHIR search: the parameters Canvas supports per type, matching, paged searchset
 * bundles. */
#include "sandbox.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SANDBOX_PAGE_DEFAULT 10
#define SANDBOX_PAGE_MAX     100

static const char *const sandbox_params_communication[] = {"_id", "patient", "sender", "recipient",
                                                           NULL};
static const char *const sandbox_params_patient[] = {"_id", NULL};
static const char *const sandbox_params_practitioner[] = {
    "_id", "name", "email", "active", "include-non-schedulable-practitioners", NULL};
static const char *const sandbox_params_questionnaire[] = {
    "_id", "name", "code", "questionnaire-code", "status", NULL};
static const char *const sandbox_params_qr[] = {"_id", "patient", "subject", "questionnaire", NULL};

const char *const *sandbox_search_param_names(const char *type)
{
    if (strcmp(type, "Communication") == 0)
        return sandbox_params_communication;
    if (strcmp(type, "Patient") == 0)
        return sandbox_params_patient;
    if (strcmp(type, "Practitioner") == 0)
        return sandbox_params_practitioner;
    if (strcmp(type, "Questionnaire") == 0)
        return sandbox_params_questionnaire;
    if (strcmp(type, "QuestionnaireResponse") == 0)
        return sandbox_params_qr;
    return NULL;
}

/* --- bundles --- */

static void sandbox_bundle_link(json_t *links, const char *rel, const char *type,
                                const char *params, size_t count, size_t offset)
{
    char url[2048];
    snprintf(url, sizeof(url), "/%s?%s%s_count=%zu&_offset=%zu", type, params, params[0] ? "&" : "",
             count, offset);
    json_array_append_new(links, json_pack("{s:s, s:s}", "relation", rel, "url", url));
}

json_t *sandbox_bundle_build(const char *type, const char *params, const json_t *matches,
                             size_t count, size_t offset)
{
    size_t total = json_array_size(matches);
    json_t *bundle, *links, *entries;

    bundle = json_pack("{s:s, s:s, s:I}", "resourceType", "Bundle", "type", "searchset", "total",
                       (json_int_t)total);
    /* Canvas leaves both "link" and "entry" out of an empty result; clients must cope. */
    if (!bundle || total == 0)
        return bundle;
    if (count == 0)
        count = SANDBOX_PAGE_DEFAULT;
    links = json_array();
    sandbox_bundle_link(links, "self", type, params, count, offset);
    sandbox_bundle_link(links, "first", type, params, count, 0);
    if (offset > 0)
        sandbox_bundle_link(links, "previous", type, params, count,
                            offset > count ? offset - count : 0);
    if (offset + count < total)
        sandbox_bundle_link(links, "next", type, params, count, offset + count);
    sandbox_bundle_link(links, "last", type, params, count, ((total - 1) / count) * count);
    json_object_set_new(bundle, "link", links);

    entries = json_array();
    for (size_t i = offset; i < total && i < offset + count; i++)
        json_array_append_new(entries, json_pack("{s:O}", "resource", json_array_get(matches, i)));
    if (json_array_size(entries))
        json_object_set_new(bundle, "entry", entries);
    else
        json_decref(entries);
    return bundle;
}

/* --- matching --- */

struct sandbox_search_ctx {
    const char *type;
    const struct sandbox_search_param *params;
    size_t nparams;
};

static int sandbox_icontains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (!hay)
        return 0;
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

/* @returns 1 when @p value is one of the comma-separated items of @p list. */
static int sandbox_in_list(const char *list, const char *value)
{
    size_t vl = strlen(value);
    const char *p = list;
    while (p) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        if (l == vl && strncmp(p, value, l) == 0)
            return 1;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

/* A reference search value: "Type/id" compares both parts, a bare "id" compares the id (and
 * @p type when given). */
static int sandbox_ref_match(const char *reference, const char *value, const char *type)
{
    char rtype[64], rid[128], vtype[64], vid[128];

    if (!reference ||
        sandbox_reference_split(reference, rtype, sizeof(rtype), rid, sizeof(rid)) != 0)
        return 0;
    if (strchr(value, '/')) {
        if (sandbox_reference_split(value, vtype, sizeof(vtype), vid, sizeof(vid)) != 0)
            return 0;
        return strcmp(vtype, rtype) == 0 && strcmp(vid, rid) == 0;
    }
    return strcmp(rid, value) == 0 && (!type || strcmp(rtype, type) == 0);
}

static const char *sandbox_refstr(const json_t *ref)
{
    return json_string_value(json_object_get(ref, "reference"));
}

static int sandbox_any_recipient(const json_t *res, const char *value, const char *type)
{
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(res, "recipient"), i, r)
    {
        if (sandbox_ref_match(sandbox_refstr(r), value, type))
            return 1;
    }
    return 0;
}

/* A token search value "system|code" or "code" against a list of codings. */
static int sandbox_coding_match(const json_t *codings, const char *value)
{
    const char *bar = strchr(value, '|');
    size_t i;
    json_t *c;
    json_array_foreach(codings, i, c)
    {
        const char *code = json_string_value(json_object_get(c, "code"));
        const char *system = json_string_value(json_object_get(c, "system"));
        if (!code)
            continue;
        if (!bar && strcmp(code, value) == 0)
            return 1;
        if (bar && strcmp(code, bar + 1) == 0 && system &&
            strlen(system) == (size_t)(bar - value) &&
            strncmp(system, value, (size_t)(bar - value)) == 0)
            return 1;
    }
    return 0;
}

static int sandbox_item_code_match(const json_t *items, const char *value)
{
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        if (sandbox_coding_match(json_object_get(item, "code"), value) ||
            sandbox_item_code_match(json_object_get(item, "item"), value))
            return 1;
    }
    return 0;
}

static int sandbox_name_match(const json_t *names, const char *value)
{
    size_t i, j;
    json_t *n, *g;
    json_array_foreach(names, i, n)
    {
        if (sandbox_icontains(json_string_value(json_object_get(n, "text")), value) ||
            sandbox_icontains(json_string_value(json_object_get(n, "family")), value))
            return 1;
        json_array_foreach(json_object_get(n, "given"), j, g)
        {
            if (sandbox_icontains(json_string_value(g), value))
                return 1;
        }
    }
    return 0;
}

static int sandbox_email_match(const json_t *telecoms, const char *value)
{
    size_t i;
    json_t *t;
    json_array_foreach(telecoms, i, t)
    {
        const char *system = json_string_value(json_object_get(t, "system"));
        const char *v = json_string_value(json_object_get(t, "value"));
        if (system && v && strcmp(system, "email") == 0 && strcasecmp(v, value) == 0)
            return 1;
    }
    return 0;
}

/* One parameter against one resource. */
static int sandbox_param_match(const char *type, const json_t *res, const char *name,
                               const char *value)
{
    if (strcmp(name, "_id") == 0) {
        const char *id = json_string_value(json_object_get(res, "id"));
        return id && sandbox_in_list(value, id);
    }
    if (strcmp(type, "Communication") == 0) {
        const char *sender = sandbox_refstr(json_object_get(res, "sender"));
        if (strcmp(name, "patient") == 0)
            return sandbox_ref_match(sender, value, "Patient") ||
                   sandbox_any_recipient(res, value, "Patient");
        if (strcmp(name, "sender") == 0)
            return sandbox_ref_match(sender, value, NULL);
        if (strcmp(name, "recipient") == 0)
            return sandbox_any_recipient(res, value, NULL);
    } else if (strcmp(type, "Practitioner") == 0) {
        if (strcmp(name, "name") == 0)
            return sandbox_name_match(json_object_get(res, "name"), value);
        if (strcmp(name, "email") == 0)
            return sandbox_email_match(json_object_get(res, "telecom"), value);
        /* active and include-non-schedulable-practitioners are defaults, applied below. */
        return 1;
    } else if (strcmp(type, "Questionnaire") == 0) {
        if (strcmp(name, "name") == 0)
            return sandbox_icontains(json_string_value(json_object_get(res, "name")), value);
        if (strcmp(name, "code") == 0)
            return sandbox_item_code_match(json_object_get(res, "item"), value);
        if (strcmp(name, "questionnaire-code") == 0)
            return sandbox_coding_match(json_object_get(res, "code"), value);
        if (strcmp(name, "status") == 0) {
            const char *status = json_string_value(json_object_get(res, "status"));
            return status && strcmp(status, value) == 0;
        }
    } else if (strcmp(type, "QuestionnaireResponse") == 0) {
        const char *subject = sandbox_refstr(json_object_get(res, "subject"));
        const char *q = json_string_value(json_object_get(res, "questionnaire"));
        if (strcmp(name, "patient") == 0)
            return sandbox_ref_match(subject, value, "Patient");
        if (strcmp(name, "subject") == 0)
            return sandbox_ref_match(subject, value, NULL);
        if (strcmp(name, "questionnaire") == 0)
            return sandbox_ref_match(q, value, "Questionnaire");
    }
    return 1;
}

static const char *sandbox_param_value(const struct sandbox_search_ctx *c, const char *name)
{
    for (size_t i = 0; i < c->nparams; i++)
        if (strcmp(c->params[i].name, name) == 0)
            return c->params[i].value;
    return NULL;
}

static int sandbox_search_match(const json_t *res, void *ctx)
{
    const struct sandbox_search_ctx *c = ctx;

    for (size_t i = 0; i < c->nparams; i++)
        if (!sandbox_param_match(c->type, res, c->params[i].name, c->params[i].value))
            return 0;
    if (strcmp(c->type, "Practitioner") == 0) {
        /* Canvas searches only active, schedulable staff unless asked otherwise. */
        const char *active = sandbox_param_value(c, "active");
        const char *all = sandbox_param_value(c, "include-non-schedulable-practitioners");
        int is_active = !json_is_false(json_object_get(res, "active"));
        if (active ? (strcmp(active, "true") == 0) != is_active : !is_active)
            return 0;
        if (!(all && strcmp(all, "true") == 0) &&
            !json_is_true(json_object_get(res, SANDBOX_SCHEDULABLE_KEY)))
            return 0;
    }
    return 1;
}

/* Parses a paging value: a whole number in [min, LONG_MAX]. */
static int sandbox_paging_value(const char *s, long min, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min)
        return -1;
    *out = v;
    return 0;
}

json_t *sandbox_fhir_search(struct sandbox_store *st, const char *type,
                            const struct sandbox_search_param *params, size_t nparams,
                            const char *count_s, const char *offset_s, struct sandbox_outcome *err)
{
    const char *const *names = sandbox_search_param_names(type);
    struct sandbox_search_ctx ctx = {type, params, nparams};
    long count = SANDBOX_PAGE_DEFAULT, offset = 0;
    char link_params[1536] = "";
    json_t *matches, *bundle;
    const char *active;

    if (!names) {
        sandbox_outcome_set(err, 405, "not-supported", "Search is not supported for %s", type);
        return NULL;
    }
    if (count_s && sandbox_paging_value(count_s, 1, &count) != 0) {
        sandbox_outcome_set(err, 400, "invalid", "_count must be a positive whole number");
        return NULL;
    }
    if (offset_s && sandbox_paging_value(offset_s, 0, &offset) != 0) {
        sandbox_outcome_set(err, 400, "invalid", "_offset must be a whole number >= 0");
        return NULL;
    }
    if (count > SANDBOX_PAGE_MAX)
        count = SANDBOX_PAGE_MAX;
    active = sandbox_param_value(&ctx, "active");
    if (strcmp(type, "Practitioner") == 0 && active && strcmp(active, "true") != 0 &&
        strcmp(active, "false") != 0) {
        sandbox_outcome_set(err, 400, "invalid", "active must be true or false");
        return NULL;
    }
    /* Links repeat the parameters in the sandbox's fixed order: the server helper does not
     * expose the raw query string, and the order carries no meaning. */
    for (size_t i = 0; names[i]; i++) {
        const char *v = sandbox_param_value(&ctx, names[i]);
        if (v && sandbox_query_append(link_params, sizeof(link_params), names[i], v) != 0) {
            sandbox_outcome_set(err, 400, "invalid", "search parameters are too long");
            return NULL;
        }
    }
    matches = sandbox_store_find(st, type, sandbox_search_match, &ctx, 0);
    if (!matches) {
        sandbox_outcome_set(err, 500, "excepetion", "Internal server error");
        return NULL;
    }
    bundle = sandbox_bundle_build(type, link_params, matches, (size_t)count, (size_t)offset);
    json_decref(matches);
    if (!bundle)
        sandbox_outcome_set(err, 500, "excepetion", "Internal server error");
    return bundle;
}
