/* pm-deliver's repeat guards: a bounded, insertion-ordered memory of what was done, by key. */
#include "deliver.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * A guard holds up to 200,000 entries for a week, so an entry's size is what a busy instance's
 * memory grows by. A key is kept as the first 16 bytes of its SHA-256 (whatever its length; two
 * keys sharing them is a 2^-128 chance, far below any other way to lose a message), in a slot of
 * a ring allocated once: the ring's order is the insertion order, so the oldest entry is always
 * the next slot to be reused and no list pointers are needed. Buckets and chains are slot
 * numbers + 1 (0 = none), so the tables start zeroed and their pages are only touched as they
 * fill. Only the value is allocated per entry: a slot of 40 bytes, the value in a malloc chunk
 * and about 5 bytes of buckets, some 140 bytes for a delivered channel (measured with a UUID
 * event id and a Twilio SID) where the JSON-valued cache used before took 250.
 */

#define GUARD_DIGEST 16

struct guard_slot {
    unsigned char digest[GUARD_DIGEST];
    time_t expires;
    uint32_t hnext; /* next slot in the bucket + 1, 0 at the end */
    uint32_t vlen;
    char *value; /* vlen bytes + NUL; NULL: an empty slot (never used, evicted or expired) */
};

struct deliver_guard {
    pthread_mutex_t lock;
    struct guard_slot *slots;
    uint32_t *buckets; /* first slot + 1, 0 = empty */
    size_t capacity, nbuckets;
    size_t head;  /* the slot the next entry goes to */
    size_t used;  /* slots from the oldest up to head, holes included */
    size_t count; /* live entries */
    int ttl_s;
};

struct deliver_guard *deliver_guard_new(size_t capacity, int ttl_s)
{
    struct deliver_guard *g;

    if (capacity == 0 || capacity >= UINT32_MAX)
        return NULL;
    g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->capacity = capacity;
    g->nbuckets = 256;
    while (g->nbuckets < capacity)
        g->nbuckets <<= 1;
    g->slots = calloc(capacity, sizeof(*g->slots));
    g->buckets = calloc(g->nbuckets, sizeof(*g->buckets));
    if (!g->slots || !g->buckets) {
        free(g->slots);
        free(g->buckets);
        free(g);
        return NULL;
    }
    g->ttl_s = ttl_s;
    pthread_mutex_init(&g->lock, NULL);
    return g;
}

void deliver_guard_free(struct deliver_guard *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->capacity; i++)
        free(g->slots[i].value);
    free(g->slots);
    free(g->buckets);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

/* SHA256() fetches the digest from OpenSSL 3's provider table (a global lock and a lookup) on
 * every call, about as long as hashing the key; fetch it once. Immutable, shared, kept to exit. */
static EVP_MD *guard_sha256;
static pthread_once_t guard_sha256_once = PTHREAD_ONCE_INIT;

static void guard_sha256_fetch(void)
{
    guard_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void guard_digest(const char *key, unsigned char out[GUARD_DIGEST])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    size_t len = strlen(key);

    pthread_once(&guard_sha256_once, guard_sha256_fetch);
    if (!guard_sha256 || !EVP_Digest(key, len, md, NULL, guard_sha256, NULL))
        SHA256((const unsigned char *)key, len, md);
    memcpy(out, md, GUARD_DIGEST);
}

static uint32_t *guard_bucket(struct deliver_guard *g, const unsigned char digest[GUARD_DIGEST])
{
    uint32_t h;
    memcpy(&h, digest, sizeof(h));
    return &g->buckets[h & (g->nbuckets - 1)];
}

/* The link that points at the live slot with @p digest (its value is 0 when there is none). */
static uint32_t *guard_find(struct deliver_guard *g, const unsigned char digest[GUARD_DIGEST])
{
    uint32_t *link = guard_bucket(g, digest);
    while (*link && memcmp(g->slots[*link - 1].digest, digest, GUARD_DIGEST) != 0)
        link = &g->slots[*link - 1].hnext;
    return link;
}

/* Empties the live slot @p link points at. */
static void guard_unlink(struct deliver_guard *g, uint32_t *link)
{
    struct guard_slot *s = &g->slots[*link - 1];
    *link = s->hnext;
    s->hnext = 0;
    free(s->value);
    s->value = NULL;
    g->count--;
}

/* Frees the oldest slot of the ring (live, or the hole of an entry found expired). */
static void guard_drop_oldest(struct deliver_guard *g)
{
    size_t oldest = (g->head + g->capacity - g->used) % g->capacity;
    struct guard_slot *s = &g->slots[oldest];
    if (s->value) {
        uint32_t *link = guard_bucket(g, s->digest);
        while (*link != oldest + 1)
            link = &g->slots[*link - 1].hnext;
        guard_unlink(g, link);
    }
    g->used--;
}

long deliver_guard_get(struct deliver_guard *g, const char *key, char *buf, size_t cap)
{
    unsigned char digest[GUARD_DIGEST];
    long n = -1;
    uint32_t *link;

    guard_digest(key, digest);
    pthread_mutex_lock(&g->lock);
    link = guard_find(g, digest);
    if (*link) {
        struct guard_slot *s = &g->slots[*link - 1];
        if (s->expires <= time(NULL)) {
            guard_unlink(g, link); /* its slot stays a hole until the ring reaches it */
        } else {
            n = (long)s->vlen;
            if (cap > 0) {
                size_t k = s->vlen < cap - 1 ? s->vlen : cap - 1;
                memcpy(buf, s->value, k);
                buf[k] = '\0';
            }
        }
    }
    pthread_mutex_unlock(&g->lock);
    return n;
}

int deliver_guard_put(struct deliver_guard *g, const char *key, const char *value, size_t len)
{
    unsigned char digest[GUARD_DIGEST];
    time_t now = time(NULL);
    char *copy;
    uint32_t *link;
    struct guard_slot *s;
    size_t oldest;

    if (len >= UINT32_MAX || (copy = malloc(len + 1)) == NULL)
        return -1;
    memcpy(copy, value, len);
    copy[len] = '\0';
    guard_digest(key, digest);

    pthread_mutex_lock(&g->lock);
    link = guard_find(g, digest);
    if (*link) {
        /* Replaced in place: it keeps its place in the order, so every slot of the ring holds
         * an entry (or an expired one's hole) and the capacity is exact. */
        s = &g->slots[*link - 1];
        free(s->value);
        s->value = copy;
        s->vlen = (uint32_t)len;
        s->expires = now + g->ttl_s;
        pthread_mutex_unlock(&g->lock);
        return 0;
    }
    /* Room for one more, and whatever expired at the old end goes too. */
    while (g->used > 0) {
        oldest = (g->head + g->capacity - g->used) % g->capacity;
        if (g->used < g->capacity && g->slots[oldest].value && g->slots[oldest].expires > now)
            break;
        guard_drop_oldest(g);
    }
    s = &g->slots[g->head];
    memcpy(s->digest, digest, GUARD_DIGEST);
    s->expires = now + g->ttl_s;
    s->vlen = (uint32_t)len;
    s->value = copy;
    link = guard_bucket(g, digest);
    s->hnext = *link;
    *link = (uint32_t)g->head + 1;
    g->head = (g->head + 1) % g->capacity;
    g->used++;
    g->count++;
    pthread_mutex_unlock(&g->lock);
    return 0;
}

size_t deliver_guard_count(struct deliver_guard *g)
{
    size_t n;
    pthread_mutex_lock(&g->lock);
    n = g->count;
    pthread_mutex_unlock(&g->lock);
    return n;
}
