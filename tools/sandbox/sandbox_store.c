/* pm-sandbox resource store: FHIR resources by type and id, seeded from fixtures, thread-safe. */
#include "sandbox.h"

#include "json_text.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Both maps are {"<Type>": {"<id>": resource}}; jansson objects keep insertion order, which is
 * the order searches answer in. Stored resources are never handed out: readers get deep copies,
 * so no jansson value is ever shared between threads. */
struct sandbox_store {
    pthread_mutex_t lock;
    json_t *by_type;
    json_t *baseline;
    /* {"<Type>": {"<id>": "<compact JSON of the stored resource>"}}: the read answers, made when
     * a resource is stored (fixtures: on their first read), so a read costs a copy, not a
     * serialisation; emptied by a reset. Resources with sandbox markers have none. */
    json_t *texts;
};

struct sandbox_store *sandbox_store_new(void)
{
    struct sandbox_store *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    pthread_mutex_init(&st->lock, NULL);
    st->by_type = json_object();
    st->baseline = json_object();
    st->texts = json_object();
    if (!st->by_type || !st->baseline || !st->texts) {
        sandbox_store_free(st);
        return NULL;
    }
    return st;
}

void sandbox_store_free(struct sandbox_store *st)
{
    if (!st)
        return;
    json_decref(st->by_type);
    json_decref(st->baseline);
    json_decref(st->texts);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

/* Adds a copy of @p resource to @p map (caller holds the lock or owns the map). */
static int sandbox_store_insert(json_t *map, const json_t *resource, int schedulable, char *errstr,
                                size_t errlen)
{
    const char *type = NULL, *id = NULL;
    json_error_t jerr;
    json_t *copy, *of_type;
    json_t *marker = json_object_get(resource, SANDBOX_SCHEDULABLE_KEY);

    if (!json_is_object(resource)) {
        snprintf(errstr, errlen, "a resource must be a JSON object");
        return -1;
    }
    if (json_unpack_ex((json_t *)resource, &jerr, 0, "{s:s, s:s}", "resourceType", &type, "id",
                       &id) != 0) {
        snprintf(errstr, errlen, "a resource needs string resourceType and id: %s", jerr.text);
        return -1;
    }
    if (!*type || !*id || strchr(type, '/') || strchr(id, '/')) {
        snprintf(errstr, errlen, "resourceType and id must be non-empty and without '/'");
        return -1;
    }
    if (marker && !json_is_boolean(marker)) {
        snprintf(errstr, errlen, "%s must be true or false", SANDBOX_SCHEDULABLE_KEY);
        return -1;
    }
    copy = json_deep_copy(resource);
    if (!copy) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    if (schedulable)
        json_object_set_new(copy, SANDBOX_SCHEDULABLE_KEY, json_true());
    of_type = json_object_get(map, type);
    if (!of_type) {
        of_type = json_object();
        if (!of_type || json_object_set_new(map, type, of_type) != 0) {
            json_decref(copy);
            snprintf(errstr, errlen, "out of memory");
            return -1;
        }
    }
    if (json_object_set_new(of_type, id, copy) != 0) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* @returns 1 when @p id is listed in the fixtures' schedulable_practitioners. */
static int sandbox_store_listed(const json_t *list, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), id) == 0)
            return 1;
    }
    return 0;
}

int sandbox_store_load(struct sandbox_store *st, const json_t *fixtures, char *errstr,
                       size_t errlen)
{
    json_t *resources = NULL, *schedulable = NULL, *baseline = NULL, *res;
    json_error_t jerr;
    size_t i;
    int rc = -1;

    if (json_unpack_ex((json_t *)fixtures, &jerr, 0, "{s:o, s?:o}", "resources", &resources,
                       "schedulable_practitioners", &schedulable) != 0 ||
        !json_is_array(resources) || (schedulable && !json_is_array(schedulable))) {
        snprintf(errstr, errlen,
                 "fixtures must be {\"resources\": [...], \"schedulable_practitioners\": [...]}");
        goto out;
    }
    baseline = json_object();
    if (!baseline)
        goto out;
    json_array_foreach(resources, i, res)
    {
        char why[200];
        const char *type = json_string_value(json_object_get(res, "resourceType"));
        const char *id = json_string_value(json_object_get(res, "id"));
        int sched = type && id && strcmp(type, "Practitioner") == 0 &&
                    sandbox_store_listed(schedulable, id);
        if (sandbox_store_insert(baseline, res, sched, why, sizeof(why)) != 0) {
            snprintf(errstr, errlen, "fixtures resource #%zu: %s", i, why);
            goto out;
        }
    }
    pthread_mutex_lock(&st->lock);
    json_decref(st->baseline);
    st->baseline = baseline;
    baseline = NULL; /* owned by the store now */
    pthread_mutex_unlock(&st->lock);
    sandbox_store_reset(st);
    rc = 0;
out:
    json_decref(baseline);
    return rc;
}

int sandbox_store_load_file(struct sandbox_store *st, const char *path, char *errstr, size_t errlen)
{
    json_error_t jerr;
    json_t *fixtures = json_load_file(path, 0, &jerr);
    int rc;

    if (!fixtures) {
        snprintf(errstr, errlen, "%s:%d: %s", path, jerr.line, jerr.text);
        return -1;
    }
    rc = sandbox_store_load(st, fixtures, errstr, errlen);
    json_decref(fixtures);
    return rc;
}

void sandbox_store_reset(struct sandbox_store *st)
{
    pthread_mutex_lock(&st->lock);
    json_t *copy = json_deep_copy(st->baseline);
    if (copy) {
        json_decref(st->by_type);
        st->by_type = copy;
        json_object_clear(st->texts);
    }
    pthread_mutex_unlock(&st->lock);
}

/* Serialises the stored @p res (without sandbox markers: the caller checked) and keeps the text
 * as its read answer. Caller holds the lock. @returns the kept text (a borrowed string), or NULL
 * without memory (then no stale text is left either). */
static json_t *sandbox_store_text_keep(struct sandbox_store *st, const char *type, const char *id,
                                       const json_t *res)
{
    json_t *of_type = json_object_get(st->texts, type), *t = NULL;
    size_t len = 0;
    char *text = json_text_dump(res, JSON_COMPACT, &len);

    if (text && !of_type && (of_type = json_object()) != NULL &&
        json_object_set_new(st->texts, type, of_type) != 0)
        of_type = NULL;
    /* jansson writes valid UTF-8 (every stored string was checked when it was parsed), so the
     * text needs no second check. */
    if (text && of_type && (t = json_stringn_nocheck(text, len)) != NULL &&
        json_object_set_new(of_type, id, t) != 0)
        t = NULL;
    if (!t && of_type)
        json_object_del(of_type, id);
    free(text);
    return t;
}

int sandbox_store_put(struct sandbox_store *st, const json_t *resource, char *errstr, size_t errlen)
{
    int rc;
    pthread_mutex_lock(&st->lock);
    rc = sandbox_store_insert(st->by_type, resource, 0, errstr, errlen);
    if (rc == 0) {
        /* Serialised now, once: every read of it is then a copy. */
        const char *type = json_string_value(json_object_get(resource, "resourceType"));
        const char *id = json_string_value(json_object_get(resource, "id"));
        json_t *stored = json_object_get(json_object_get(st->by_type, type), id);
        if (json_object_get(stored, SANDBOX_SCHEDULABLE_KEY))
            json_object_del(json_object_get(st->texts, type), id);
        else
            sandbox_store_text_keep(st, type, id, stored);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* A copy of a stored resource as a client may see it. */
static json_t *sandbox_store_copy(const json_t *res, int keep_markers)
{
    json_t *copy = json_deep_copy(res);
    if (copy && !keep_markers)
        json_object_del(copy, SANDBOX_SCHEDULABLE_KEY);
    return copy;
}

json_t *sandbox_store_get(struct sandbox_store *st, const char *type, const char *id)
{
    json_t *out = NULL, *res;
    pthread_mutex_lock(&st->lock);
    res = json_object_get(json_object_get(st->by_type, type), id);
    if (res)
        out = sandbox_store_copy(res, 0);
    pthread_mutex_unlock(&st->lock);
    return out;
}

char *sandbox_store_get_text(struct sandbox_store *st, const char *type, const char *id,
                             size_t *len, int *found)
{
    char *text = NULL;
    json_t *res, *cached;

    pthread_mutex_lock(&st->lock);
    res = json_object_get(json_object_get(st->by_type, type), id);
    cached = res ? json_object_get(json_object_get(st->texts, type), id) : NULL;
    *found = res != NULL;
    if (!cached && res && !json_object_get(res, SANDBOX_SCHEDULABLE_KEY))
        cached = sandbox_store_text_keep(st, type, id, res); /* a fixture's first read */
    if (cached) {
        *len = json_string_length(cached);
        text = malloc(*len + 1);
        if (text)
            memcpy(text, json_string_value(cached), *len + 1);
    } else if (res) {
        json_t *copy = sandbox_store_copy(res, 0);
        text = copy ? json_text_dump(copy, JSON_COMPACT, len) : NULL;
        json_decref(copy);
    }
    pthread_mutex_unlock(&st->lock);
    return text;
}

int sandbox_store_exists(struct sandbox_store *st, const char *type, const char *id)
{
    int found;
    pthread_mutex_lock(&st->lock);
    found = json_object_get(json_object_get(st->by_type, type), id) != NULL;
    pthread_mutex_unlock(&st->lock);
    return found;
}

json_t *sandbox_store_find(struct sandbox_store *st, const char *type,
                           int (*match)(const json_t *res, void *ctx), void *ctx, int keep_markers)
{
    json_t *out = json_array();
    const char *id;
    json_t *res;

    if (!out)
        return NULL;
    pthread_mutex_lock(&st->lock);
    json_object_foreach(json_object_get(st->by_type, type), id, res)
    {
        if (match && !match(res, ctx))
            continue;
        json_array_append_new(out, sandbox_store_copy(res, keep_markers));
    }
    pthread_mutex_unlock(&st->lock);
    return out;
}
