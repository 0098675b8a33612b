/* A small thread-safe TTL cache of JSON values: insertion-ordered, oldest evicted first. */
#include "deliver.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct cache_entry {
    struct cache_entry *hnext;
    struct cache_entry *older, *newer;
    uint64_t hash;
    time_t expires;
    json_t *value;
    char key[];
};

struct deliver_cache {
    pthread_mutex_t lock;
    struct cache_entry **buckets;
    size_t nbuckets;
    size_t count, capacity;
    int ttl_s;
    struct cache_entry *oldest, *newest;
};

static uint64_t cache_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

struct deliver_cache *deliver_cache_new(size_t capacity, int ttl_s)
{
    struct deliver_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->nbuckets = 256;
    while (c->nbuckets < capacity)
        c->nbuckets <<= 1;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->capacity = capacity ? capacity : 1;
    c->ttl_s = ttl_s;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

static struct cache_entry **cache_slot(struct deliver_cache *c, const char *key, uint64_t h)
{
    struct cache_entry **pp = &c->buckets[h & (c->nbuckets - 1)];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
        pp = &(*pp)->hnext;
    return pp;
}

static void cache_remove(struct deliver_cache *c, struct cache_entry *e)
{
    struct cache_entry **pp = cache_slot(c, e->key, e->hash);
    if (*pp == e)
        *pp = e->hnext;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    c->count--;
    json_decref(e->value);
    free(e);
}

void deliver_cache_free(struct deliver_cache *c)
{
    if (!c)
        return;
    while (c->oldest)
        cache_remove(c, c->oldest);
    free(c->buckets);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

json_t *deliver_cache_get(struct deliver_cache *c, const char *key)
{
    json_t *v = NULL;
    struct cache_entry **pp;
    time_t now = time(NULL);

    pthread_mutex_lock(&c->lock);
    pp = cache_slot(c, key, cache_hash(key));
    if (*pp) {
        if ((*pp)->expires <= now)
            cache_remove(c, *pp);
        else
            v = json_incref((*pp)->value);
    }
    pthread_mutex_unlock(&c->lock);
    return v;
}

void deliver_cache_put(struct deliver_cache *c, const char *key, json_t *value)
{
    uint64_t h = cache_hash(key);
    size_t kl = strlen(key);
    struct cache_entry **pp, *e;
    time_t now = time(NULL);

    pthread_mutex_lock(&c->lock);
    pp = cache_slot(c, key, h);
    if (*pp)
        cache_remove(c, *pp);
    while (c->oldest && (c->count >= c->capacity || c->oldest->expires <= now))
        cache_remove(c, c->oldest);
    e = calloc(1, sizeof(*e) + kl + 1);
    if (e) {
        memcpy(e->key, key, kl + 1);
        e->hash = h;
        e->expires = now + c->ttl_s;
        e->value = json_incref(value);
        pp = cache_slot(c, key, h);
        *pp = e;
        e->older = c->newest;
        if (c->newest)
            c->newest->newer = e;
        else
            c->oldest = e;
        c->newest = e;
        c->count++;
    }
    pthread_mutex_unlock(&c->lock);
}
