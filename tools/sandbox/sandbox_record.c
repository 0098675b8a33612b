/* pm-sandbox request recording: a bounded ring of answered requests plus per-target/status
 * counters. */
#include "sandbox.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#define SANDBOX_STATUS_SLOTS 600

/* One kept request, serialised once when recorded: queries only filter and concatenate. */
struct sandbox_record_entry {
    long long seq;
    enum sandbox_target target;
    char method[16];
    char *path;
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
    free(e->path);
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

static void sandbox_record_ts(char *out, size_t len)
{
    struct timeval tv;
    struct tm tm;
    char base[32];
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%03ldZ", base, (long)(tv.tv_usec / 1000));
}

static int sandbox_status_slot(int status)
{
    return status > 0 && status < SANDBOX_STATUS_SLOTS ? status : 0;
}

long long sandbox_recorder_add(struct sandbox_recorder *r, const struct sandbox_record_in *in)
{
    struct sandbox_record_entry *e = calloc(1, sizeof(*e));
    char ts[40];
    json_t *doc;
    int slot = sandbox_status_slot(in->status);
    long long seq;

    /* Serialised outside the lock, without "seq": the sequence number is taken together with
     * the ring insertion, so the ring is always in seq order and "since" never skips one. */
    sandbox_record_ts(ts, sizeof(ts));
    doc = json_pack("{s:s, s:s, s:s, s:O?, s:O?, s:o, s:i, s:o, s:o, s:s}", "target",
                    sandbox_target_name(in->target), "method", in->method, "path", in->path,
                    "query", in->query, "headers", in->headers, "body",
                    sandbox_json_string_lossy(in->body, in->body_len), "status", in->status,
                    "signature_valid",
                    in->signature_valid < 0 ? json_null() : json_boolean(in->signature_valid),
                    "fault", in->fault_id ? json_integer(in->fault_id) : json_null(), "ts", ts);
    if (e) {
        e->target = in->target;
        snprintf(e->method, sizeof(e->method), "%s", in->method);
        e->path = strdup(in->path);
        e->json = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        if (!e->path || !e->json || e->json[0] != '{') {
            sandbox_record_entry_free(e);
            e = NULL;
        } else {
            e->json_len = strlen(e->json);
        }
    }
    json_decref(doc);

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
        const struct sandbox_record_entry *e = r->ring[(r->head + i) % r->max];
        if (!sandbox_record_passes(e, f))
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
