/* Version-4 UUIDs from OpenSSL's CSPRNG. */
#include "uuid.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

/* RAND_bytes has a fixed cost per call (the DRBG's locks and bookkeeping) that is several times
 * the cost of 16 bytes: each thread draws 1 KiB at a time and hands out 16 bytes per UUID.
 * A forked child empties the pool of the thread that forked (the only thread it has), so it never
 * repeats its parent's bytes. */
#define UUID_POOL 1024

static _Thread_local unsigned char uuid_pool[UUID_POOL];
static _Thread_local size_t uuid_pool_left;
static pthread_once_t uuid_once = PTHREAD_ONCE_INIT;

static void uuid_forked(void)
{
    memset(uuid_pool, 0, sizeof(uuid_pool));
    uuid_pool_left = 0;
}

static void uuid_init(void)
{
    pthread_atfork(NULL, NULL, uuid_forked);
}

static int uuid_random16(unsigned char out[16])
{
    pthread_once(&uuid_once, uuid_init);
    if (uuid_pool_left < 16) {
        if (RAND_bytes(uuid_pool, UUID_POOL) != 1)
            return -1;
        uuid_pool_left = UUID_POOL;
    }
    memcpy(out, uuid_pool + (UUID_POOL - uuid_pool_left), 16);
    /* Handed-out bytes do not stay in memory longer than needed. */
    memset(uuid_pool + (UUID_POOL - uuid_pool_left), 0, 16);
    uuid_pool_left -= 16;
    return 0;
}

int uuid_v4(char out[UUID_STR_LEN])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    size_t o = 0;

    if (uuid_random16(b) != 0)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0f];
    }
    out[o] = '\0';
    return 0;
}
