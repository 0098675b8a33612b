/* pm-sandbox request recording: a bounded ring of answered requests plus per-target/status
 * counters. */
#include "sandbox.h"

#include "json_text.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#define SANDBOX_STATUS_SLOTS 600

/* One kept request. The request's parts are copied flat into one allocation and serialised by
 * the first query that returns the entry: building and writing a JSON document per request cost
 * more than the rest of answering it, and most recorded requests are only ever counted. Later
 * queries only filter and concatenate. Everything but the ring position is touched only under
 * the recorder's lock. */
struct sandbox_record_entry {
    long long seq;
    enum sandbox_target target;
    char method[16];
    const char *path; /* in raw */
    /* until serialised */
    char *raw; /* path, pairs, body */
    const struct sandbox_record_pair *query, *headers;
    size_t nquery, nheaders;
    const char *body;
    size_t body_len;
    int status;
    int signature_valid;
    long fault_id;
    struct timeval tv;
    /* once serialised: "{...}" without "seq" */
    char *json;
    size_t json_len;
};

struct sandbox_recorder {
    pthread_mutex_t lock;
    struct sandbox_record_entry **ring;
    size_t max;
    size_t head;  /* index of the oldest kept entry */
    size_t count; /* kept entries */
    long long next_seq;
    long long total;
    long long dropped;
    long long by_target[SANDBOX_TARGET_COUNT];
    long long by_status[SANDBOX_STATUS_SLOTS];
    long long by_target_status[SANDBOX_TARGET_COUNT][SANDBOX_STATUS_SLOTS];
};

struct sandbox_recorder *sandbox_recorder_new(size_t max)
{
    struct sandbox_recorder *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->max = max ? max : 1;
    r->ring = calloc(r->max, sizeof(*r->ring));
    if (!r->ring) {
        free(r);
        return NULL;
    }
    r->next_seq = 1;
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

static void sandbox_record_entry_free(struct sandbox_record_entry *e)
{
    if (!e)
        return;
    free(e->raw);
    free(e->json);
    free(e);
}

/* Drops every kept entry (caller holds the lock). */
static void sandbox_recorder_drop_all(struct sandbox_recorder *r)
{
    for (size_t i = 0; i < r->count; i++) {
        size_t idx = (r->head + i) % r->max;
        sandbox_record_entry_free(r->ring[idx]);
        r->ring[idx] = NULL;
    }
    r->head = 0;
    r->count = 0;
}

void sandbox_recorder_free(struct sandbox_recorder *r)
{
    if (!r)
        return;
    sandbox_recorder_drop_all(r);
    free(r->ring);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void sandbox_record_ts(const struct timeval *tv, char *out, size_t len)
{
    struct tm tm;
    char base[32];
    gmtime_r(&tv->tv_sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%03ldZ", base, (long)(tv->tv_usec / 1000));
}

/* Copies @p n pairs into @p at (pairs first, then their strings from @p str). */
static char *sandbox_record_copy_pairs(struct sandbox_record_pair *at, char *str,
                                       const struct sandbox_record_pair *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t nl = strlen(in[i].name) + 1, vl = strlen(in[i].value) + 1;
        memcpy(str, in[i].name, nl);
        at[i].name = str;
        str += nl;
        memcpy(str, in[i].value, vl);
        at[i].value = str;
        str += vl;
    }
    return str;
}

/* One flat copy of what @p in points to. @returns the entry, or NULL without memory. */
static struct sandbox_record_entry *sandbox_record_entry_new(const struct sandbox_record_in *in)
{
    struct sandbox_record_entry *e = calloc(1, sizeof(*e));
    size_t need = sizeof(struct sandbox_record_pair) * (in->nquery + in->nheaders);
    size_t strs = strlen(in->path) + 1 + in->body_len + 1;
    struct sandbox_record_pair *pairs;
    char *str;

    if (!e)
        return NULL;
    for (size_t i = 0; i < in->nquery; i++)
        strs += strlen(in->query[i].name) + strlen(in->query[i].value) + 2;
    for (size_t i = 0; i < in->nheaders; i++)
        strs += strlen(in->headers[i].name) + strlen(in->headers[i].value) + 2;
    e->raw = malloc(need + strs);
    if (!e->raw) {
        free(e);
        return NULL;
    }
    pairs = (struct sandbox_record_pair *)(void *)e->raw;
    str = e->raw + need;
    str = sandbox_record_copy_pairs(pairs, str, in->query, in->nquery);
    str = sandbox_record_copy_pairs(pairs + in->nquery, str, in->headers, in->nheaders);
    e->query = pairs;
    e->nquery = in->nquery;
    e->headers = pairs + in->nquery;
    e->nheaders = in->nheaders;
    e->path = str;
    memcpy(str, in->path, strlen(in->path) + 1);
    str += strlen(in->path) + 1;
    if (in->body_len)
        memcpy(str, in->body, in->body_len);
    str[in->body_len] = '\0';
    e->body = str;
    e->body_len = in->body_len;
    e->target = in->target;
    snprintf(e->method, sizeof(e->method), "%s", in->method);
    e->status = in->status;
    e->signature_valid = in->signature_valid;
    e->fault_id = in->fault_id;
    gettimeofday(&e->tv, NULL);
    return e;
}

static json_t *sandbox_record_pairs_json(const struct sandbox_record_pair *p, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < n; i++)
        json_object_set_new(o, p[i].name,
                            sandbox_json_string_lossy(p[i].value, strlen(p[i].value)));
    return o;
}

static int sandbox_status_slot(int status)
{
    return status > 0 && status < SANDBOX_STATUS_SLOTS ? status : 0;
}

long long sandbox_recorder_add(struct sandbox_recorder *r, const struct sandbox_record_in *in)
{
    /* Copied outside the lock; the sequence number is taken together with the ring insertion,
     * so the ring is always in seq order and "since" never skips one. */
    struct sandbox_record_entry *e = sandbox_record_entry_new(in);
    int slot = sandbox_status_slot(in->status);
    long long seq;

    pthread_mutex_lock(&r->lock);
    seq = r->next_seq++;
    r->total++;
    r->by_target[in->target]++;
    r->by_status[slot]++;
    r->by_target_status[in->target][slot]++;
    if (e) {
        e->seq = seq;
        if (r->count == r->max) {
            /* Full: the oldest goes; its counters stay. */
            sandbox_record_entry_free(r->ring[r->head]);
            r->ring[r->head] = e;
            r->head = (r->head + 1) % r->max;
            r->dropped++;
        } else {
            r->ring[(r->head + r->count) % r->max] = e;
            r->count++;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return seq;
}

static int sandbox_record_passes(const struct sandbox_record_entry *e,
                                 const struct sandbox_record_filter *f)
{
    if (f->target >= 0 && (int)e->target != f->target)
        return 0;
    if (f->method && strcasecmp(f->method, e->method) != 0)
        return 0;
    if (f->path_prefix && !sandbox_starts_with(e->path, f->path_prefix))
        return 0;
    return e->seq > f->since;
}

/* Serialises @p e if it is not yet (caller holds the lock). @returns 0, or -1 without memory. */
static int sandbox_record_text(struct sandbox_record_entry *e)
{
    char ts[40];
    json_t *doc;

    if (e->json)
        return 0;
    sandbox_record_ts(&e->tv, ts, sizeof(ts));
    doc = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:i, s:o, s:o, s:s}", "target",
                    sandbox_target_name(e->target), "method", e->method, "path", e->path, "query",
                    sandbox_record_pairs_json(e->query, e->nquery), "headers",
                    sandbox_record_pairs_json(e->headers, e->nheaders), "body",
                    sandbox_json_string_lossy(e->body, e->body_len), "status", e->status,
                    "signature_valid",
                    e->signature_valid < 0 ? json_null() : json_boolean(e->signature_valid),
                    "fault", e->fault_id ? json_integer(e->fault_id) : json_null(), "ts", ts);
    e->json = doc ? json_text_dump(doc, JSON_COMPACT, &e->json_len) : NULL;
    json_decref(doc);
    if (!e->json || e->json[0] != '{') {
        free(e->json);
        e->json = NULL;
        return -1;
    }
    /* The path stays for filtering: keep it in a block of its own, drop the rest. */
    {
        size_t pl = strlen(e->path) + 1;
        char *path = malloc(pl);
        if (path) {
            memcpy(path, e->path, pl);
            free(e->raw);
            e->raw = path;
            e->path = path;
            e->query = e->headers = NULL;
            e->nquery = e->nheaders = 0;
            e->body = NULL;
            e->body_len = 0;
        }
    }
    return 0;
}

char *sandbox_recorder_query(struct sandbox_recorder *r, const struct sandbox_record_filter *f,
                             size_t *len)
{
    static const char head[] = "{\"requests\":[", tail[] = "]}";
    size_t cap = 4096, used = 0;
    char *out = malloc(cap);
    long n = 0;

    if (!out)
        return NULL;
    memcpy(out, head, sizeof(head) - 1);
    used = sizeof(head) - 1;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->count && (f->limit <= 0 || n < f->limit); i++) {
        struct sandbox_record_entry *e = r->ring[(r->head + i) % r->max];
        if (!sandbox_record_passes(e, f) || sandbox_record_text(e) != 0)
            continue;
        char seq[40];
        int sl = snprintf(seq, sizeof(seq), "{\"seq\":%lld,", e->seq);
        size_t need = used + (size_t)sl + e->json_len + sizeof(tail) + 2;
        if (need > cap) {
            size_t ncap = cap * 2;
            char *nb;
            while (need > ncap)
                ncap *= 2;
            nb = realloc(out, ncap);
            if (!nb) {
                pthread_mutex_unlock(&r->lock);
                free(out);
                return NULL;
            }
            out = nb;
            cap = ncap;
        }
        if (n++)
            out[used++] = ',';
        /* The stored text is "{...}": the seq goes in front of its first member. */
        memcpy(out + used, seq, (size_t)sl);
        used += (size_t)sl;
        memcpy(out + used, e->json + 1, e->json_len - 1);
        used += e->json_len - 1;
    }
    pthread_mutex_unlock(&r->lock);
    memcpy(out + used, tail, sizeof(tail)); /* with its NUL */
    used += sizeof(tail) - 1;
    *len = used;
    return out;
}

json_t *sandbox_recorder_stats(struct sandbox_recorder *r)
{
    json_t *by_target = json_object(), *by_status = json_object(), *by_ts = json_object();
    json_t *stats;
    char key[8];

    pthread_mutex_lock(&r->lock);
    for (int t = 0; t < SANDBOX_TARGET_COUNT; t++) {
        json_t *per = json_object();
        json_object_set_new(by_target, sandbox_target_name(t), json_integer(r->by_target[t]));
        for (int s = 0; s < SANDBOX_STATUS_SLOTS; s++) {
            if (!r->by_target_status[t][s])
                continue;
            snprintf(key, sizeof(key), "%d", s);
            json_object_set_new(per, key, json_integer(r->by_target_status[t][s]));
        }
        json_object_set_new(by_ts, sandbox_target_name(t), per);
    }
    for (int s = 0; s < SANDBOX_STATUS_SLOTS; s++) {
        if (!r->by_status[s])
            continue;
        snprintf(key, sizeof(key), "%d", s);
        json_object_set_new(by_status, key, json_integer(r->by_status[s]));
    }
    stats = json_pack("{s:I, s:I, s:I, s:o, s:o, s:o}", "requests_total", (json_int_t)r->total,
                      "recorded", (json_int_t)r->count, "dropped", (json_int_t)r->dropped,
                      "by_target", by_target, "by_status", by_status, "by_target_status", by_ts);
    pthread_mutex_unlock(&r->lock);
    return stats;
}

void sandbox_recorder_clear(struct sandbox_recorder *r)
{
    pthread_mutex_lock(&r->lock);
    sandbox_recorder_drop_all(r);
    r->total = 0;
    r->dropped = 0;
    memset(r->by_target, 0, sizeof(r->by_target));
    memset(r->by_status, 0, sizeof(r->by_status));
    memset(r->by_target_status, 0, sizeof(r->by_target_status));
    pthread_mutex_unlock(&r->lock);
}
