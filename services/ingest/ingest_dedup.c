/* Bounded memory of recent event ids: a chained hash table plus an insertion-order list. */
#include "ingest.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { ENTRY_PENDING, ENTRY_DONE };

struct dedup_entry {
    struct dedup_entry *hnext;         /* hash chain */
    struct dedup_entry *older, *newer; /* insertion order: expiry and eviction */
    uint64_t hash;
    time_t inserted;
    unsigned char fp[16];
    int state;
    struct ingest_dedup_answer answer;
    char id[]; /* NUL-terminated */
};

struct ingest_dedup {
    pthread_mutex_t lock;
    struct dedup_entry **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    size_t capacity;
    int ttl_s;
    struct dedup_entry *oldest, *newest;
};

/* FNV-1a: ids are short and chosen by authenticated senders, so a simple hash is enough. */
static uint64_t dedup_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

struct ingest_dedup *ingest_dedup_new(size_t capacity, int ttl_s)
{
    struct ingest_dedup *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->nbuckets = 1024;
    while (d->nbuckets < capacity)
        d->nbuckets <<= 1;
    d->buckets = calloc(d->nbuckets, sizeof(*d->buckets));
    if (!d->buckets) {
        free(d);
        return NULL;
    }
    d->capacity = capacity;
    d->ttl_s = ttl_s;
    pthread_mutex_init(&d->lock, NULL);
    return d;
}

static struct dedup_entry **dedup_slot(struct ingest_dedup *d, const char *id, uint64_t h)
{
    struct dedup_entry **pp = &d->buckets[h & (d->nbuckets - 1)];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->id, id) != 0))
        pp = &(*pp)->hnext;
    return pp;
}

/* Unlinks @p e from its chain and the order list and frees it. */
static void dedup_remove(struct ingest_dedup *d, struct dedup_entry *e)
{
    struct dedup_entry **pp = dedup_slot(d, e->id, e->hash);
    if (*pp == e)
        *pp = e->hnext;
    if (e->older)
        e->older->newer = e->newer;
    else
        d->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        d->newest = e->older;
    d->count--;
    free(e);
}

void ingest_dedup_free(struct ingest_dedup *d)
{
    if (!d)
        return;
    while (d->oldest)
        dedup_remove(d, d->oldest);
    free(d->buckets);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

enum ingest_dedup_state ingest_dedup_begin(struct ingest_dedup *d, const char *id,
                                           const unsigned char fp[16], time_t now,
                                           struct ingest_dedup_answer *out)
{
    enum ingest_dedup_state st = DEDUP_NEW;
    uint64_t h = dedup_hash(id);
    struct dedup_entry **pp, *e;
    size_t idlen = strlen(id);

    if (d->capacity == 0)
        return DEDUP_NEW;
    pthread_mutex_lock(&d->lock);
    while (d->oldest && d->oldest->inserted + d->ttl_s <= now)
        dedup_remove(d, d->oldest);

    pp = dedup_slot(d, id, h);
    if (*pp) {
        e = *pp;
        if (e->state == ENTRY_PENDING)
            st = DEDUP_PENDING;
        else if (memcmp(e->fp, fp, sizeof(e->fp)) != 0)
            st = DEDUP_CONFLICT;
        else {
            st = DEDUP_DONE;
            *out = e->answer;
        }
        goto out;
    }

    /* Full: the oldest id goes first. A pending one evicted here simply loses its protection
     * against a concurrent duplicate; its completion finds nothing and does nothing. */
    if (d->count >= d->capacity && d->oldest)
        dedup_remove(d, d->oldest);
    e = calloc(1, sizeof(*e) + idlen + 1);
    if (!e)
        goto out; /* without memory the id is not remembered; the event is still produced */
    memcpy(e->id, id, idlen + 1);
    e->hash = h;
    e->inserted = now;
    memcpy(e->fp, fp, sizeof(e->fp));
    e->state = ENTRY_PENDING;
    pp = dedup_slot(d, id, h); /* the eviction above may have changed the chain */
    *pp = e;
    e->older = d->newest;
    if (d->newest)
        d->newest->newer = e;
    else
        d->oldest = e;
    d->newest = e;
    d->count++;
out:
    pthread_mutex_unlock(&d->lock);
    return st;
}

void ingest_dedup_complete(struct ingest_dedup *d, const char *id,
                           const struct ingest_dedup_answer *answer)
{
    struct dedup_entry **pp;
    if (d->capacity == 0)
        return;
    pthread_mutex_lock(&d->lock);
    pp = dedup_slot(d, id, dedup_hash(id));
    if (*pp && (*pp)->state == ENTRY_PENDING) {
        (*pp)->state = ENTRY_DONE;
        (*pp)->answer = *answer;
    }
    pthread_mutex_unlock(&d->lock);
}

void ingest_dedup_abort(struct ingest_dedup *d, const char *id)
{
    struct dedup_entry **pp;
    if (d->capacity == 0)
        return;
    pthread_mutex_lock(&d->lock);
    pp = dedup_slot(d, id, dedup_hash(id));
    if (*pp && (*pp)->state == ENTRY_PENDING)
        dedup_remove(d, *pp);
    pthread_mutex_unlock(&d->lock);
}

size_t ingest_dedup_size(struct ingest_dedup *d)
{
    size_t n;
    pthread_mutex_lock(&d->lock);
    n = d->count;
    pthread_mutex_unlock(&d->lock);
    return n;
}
