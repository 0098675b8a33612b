/* Standard Webhooks signatures: strict base64 keys, HMAC-SHA256 via OpenSSL, constant-time checks.
 */
#include "webhook_sig.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define WEBHOOK_SIG_PREFIX     "whsec_"
#define WEBHOOK_SIG_MAC_LEN    32 /* SHA-256 */
#define WEBHOOK_SIG_MAC_B64LEN 44 /* base64 of 32 bytes, padded */

/* Fetching an algorithm takes a global lock in OpenSSL 3; fetch HMAC once and reuse it. The
 * EVP_MAC is immutable and safe to share between threads; it lives until exit. */
static EVP_MAC *webhook_sig_hmac;
static pthread_once_t webhook_sig_once = PTHREAD_ONCE_INIT;

static pthread_key_t webhook_sig_tls;
static void webhook_sig_cache_free(void *p);

static void webhook_sig_fetch(void)
{
    webhook_sig_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    pthread_key_create(&webhook_sig_tls, webhook_sig_cache_free);
}

static int webhook_b64_char_ok(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* Strict standard base64 (padded, no whitespace). EVP_DecodeBlock itself skips surrounding
 * whitespace and counts padding as output bytes, so the input is validated here and the real
 * length derived from the '=' count. Returns 0 and the decoded length in @p outlen, or -1. */
static int webhook_b64_decode(const char *in, size_t inlen, unsigned char *out, size_t outcap,
                              size_t *outlen)
{
    unsigned char tmp[3 * ((WEBHOOK_SIG_MAX_KEY + 2) / 3) + 3];
    size_t pad = 0;
    size_t n;
    int rc = -1;

    if (inlen == 0 || inlen % 4 != 0 || inlen / 4 * 3 > sizeof(tmp))
        goto out;
    if (in[inlen - 1] == '=')
        pad = in[inlen - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < inlen - pad; i++)
        if (!webhook_b64_char_ok((unsigned char)in[i]))
            goto out;
    /* Canonical form only: the bits below the last character that padding leaves unused must be
     * zero, so exactly one text encodes a given MAC ("...1OE=" and "...1OG=" decode alike). */
    if (pad) {
        unsigned char c = (unsigned char)in[inlen - pad - 1];
        unsigned v = c >= 'a'   ? (unsigned)(c - 'a' + 26)
                     : c >= 'A' ? (unsigned)(c - 'A')
                     : c >= '0' ? (unsigned)(c - '0' + 52)
                     : c == '+' ? 62u
                                : 63u;
        if (v & (pad == 1 ? 0x3u : 0xfu))
            goto out;
    }
    n = inlen / 4 * 3 - pad;
    if (n > outcap)
        goto out;
    if (EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)inlen) != (int)(inlen / 4 * 3))
        goto out;
    memcpy(out, tmp, n);
    *outlen = n;
    rc = 0;
out:
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return rc;
}

/* HMAC-SHA256(key, id "." timestamp "." body) into @p mac. Returns 0, or -1 on an OpenSSL
 * failure. Streaming the three parts avoids copying the body. */
/* Keying HMAC costs more than hashing a 1 KB body: each thread keeps a keyed context per key
 * (a few: PM_INGEST_WEBHOOK_SECRETS lists at most a handful) and duplicates it per message.
 * The cache is freed when the thread exits. */
#define WEBHOOK_SIG_CACHE 4
struct webhook_sig_cache {
    struct {
        unsigned char key[WEBHOOK_SIG_MAX_KEY];
        size_t len;
        EVP_MAC_CTX *ctx;
    } e[WEBHOOK_SIG_CACHE];
    unsigned next;
};

static void webhook_sig_cache_free(void *p)
{
    struct webhook_sig_cache *c = p;
    for (int i = 0; i < WEBHOOK_SIG_CACHE; i++) {
        EVP_MAC_CTX_free(c->e[i].ctx);
        OPENSSL_cleanse(c->e[i].key, sizeof(c->e[i].key));
    }
    free(c);
}

/* A keyed template context for @p key in this thread, or NULL. Owned by the thread's cache. */
static EVP_MAC_CTX *webhook_sig_keyed(const struct webhook_key *key)
{
    struct webhook_sig_cache *c = pthread_getspecific(webhook_sig_tls);
    char digest[] = "SHA256";
    OSSL_PARAM params[2];
    EVP_MAC_CTX *ctx;
    unsigned slot;

    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c || pthread_setspecific(webhook_sig_tls, c) != 0) {
            free(c);
            return NULL;
        }
    }
    for (int i = 0; i < WEBHOOK_SIG_CACHE; i++)
        if (c->e[i].ctx && c->e[i].len == key->len && !memcmp(c->e[i].key, key->key, key->len))
            return c->e[i].ctx;
    ctx = EVP_MAC_CTX_new(webhook_sig_hmac);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (!ctx || !EVP_MAC_init(ctx, key->key, key->len, params)) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    slot = c->next++ % WEBHOOK_SIG_CACHE;
    EVP_MAC_CTX_free(c->e[slot].ctx);
    memcpy(c->e[slot].key, key->key, key->len);
    c->e[slot].len = key->len;
    c->e[slot].ctx = ctx;
    return ctx;
}

/* HMAC-SHA256(key, id "." timestamp "." body) into @p mac. Returns 0, or -1 on an OpenSSL
 * failure. Streaming the three parts avoids copying the body. */
static int webhook_sig_mac(const struct webhook_key *key, const char *id, const char *timestamp,
                           const void *body, size_t len, unsigned char mac[WEBHOOK_SIG_MAC_LEN])
{
    EVP_MAC_CTX *keyed, *ctx = NULL;
    size_t maclen = 0;
    int rc = -1;

    pthread_once(&webhook_sig_once, webhook_sig_fetch);
    if (!webhook_sig_hmac || key->len == 0 || key->len > WEBHOOK_SIG_MAX_KEY)
        goto out;
    keyed = webhook_sig_keyed(key);
    ctx = keyed ? EVP_MAC_CTX_dup(keyed) : NULL;
    if (!ctx)
        goto out;
    if (!EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(ctx, (const unsigned char *)timestamp, strlen(timestamp)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        (len > 0 && !EVP_MAC_update(ctx, body, len)))
        goto out;
    if (!EVP_MAC_final(ctx, mac, &maclen, WEBHOOK_SIG_MAC_LEN) || maclen != WEBHOOK_SIG_MAC_LEN)
        goto out;
    rc = 0;
out:
    EVP_MAC_CTX_free(ctx);
    return rc;
}

int webhook_key_decode(const char *secret, struct webhook_key *out, char *errstr, size_t errlen)
{
    size_t n;

    memset(out, 0, sizeof(*out));
    if (!secret || !*secret) {
        snprintf(errstr, errlen, "webhook secret is empty");
        return -1;
    }
    if (strncmp(secret, WEBHOOK_SIG_PREFIX, strlen(WEBHOOK_SIG_PREFIX)) == 0)
        secret += strlen(WEBHOOK_SIG_PREFIX);
    n = strlen(secret);
    if (n == 0) {
        snprintf(errstr, errlen, "webhook secret has nothing after the whsec_ prefix");
        return -1;
    }
    /* Only lengths and classes are reported: the secret itself never reaches an error text. */
    if (n > 4 * ((WEBHOOK_SIG_MAX_KEY + 2) / 3)) {
        snprintf(errstr, errlen, "webhook secret decodes to more than %d bytes",
                 WEBHOOK_SIG_MAX_KEY);
        return -1;
    }
    if (webhook_b64_decode(secret, n, out->key, sizeof(out->key), &out->len) != 0 ||
        out->len == 0) {
        OPENSSL_cleanse(out, sizeof(*out));
        snprintf(errstr, errlen,
                 "webhook secret is not valid base64 (expected whsec_ followed by padded "
                 "standard base64 of 1..%d bytes)",
                 WEBHOOK_SIG_MAX_KEY);
        return -1;
    }
    return 0;
}

/* Parses a whole number of unix seconds: digits only (no sign, space or fraction). */
static int webhook_sig_parse_timestamp(const char *timestamp, long long *out)
{
    char *end;
    long long ts;

    if (!timestamp || !*timestamp || strlen(timestamp) > 19)
        return -1;
    for (const char *p = timestamp; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    errno = 0;
    ts = strtoll(timestamp, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *out = ts;
    return 0;
}

enum webhook_sig_result webhook_sig_check_timestamp(const char *timestamp, time_t now)
{
    long long ts;
    long long n = (long long)now;
    unsigned long long diff;

    if (!timestamp || !*timestamp)
        return WEBHOOK_SIG_MISSING_HEADERS;
    if (webhook_sig_parse_timestamp(timestamp, &ts) != 0)
        return WEBHOOK_SIG_BAD_TIMESTAMP;
    /* ts >= 0, so the true difference always fits in an unsigned long long. */
    diff = ts >= n ? (unsigned long long)ts - (unsigned long long)n
                   : (unsigned long long)n - (unsigned long long)ts;
    if (diff > WEBHOOK_SIG_TOLERANCE_S)
        return WEBHOOK_SIG_STALE_TIMESTAMP;
    return WEBHOOK_SIG_OK;
}

/* Compares one "v1," entry (its base64 part, @p len chars) with @p mac in constant time. */
static int webhook_sig_entry_matches(const char *b64, size_t len,
                                     const unsigned char mac[WEBHOOK_SIG_MAC_LEN])
{
    unsigned char got[WEBHOOK_SIG_MAC_LEN];
    size_t n = 0;

    if (len != WEBHOOK_SIG_MAC_B64LEN)
        return 0;
    if (webhook_b64_decode(b64, len, got, sizeof(got), &n) != 0 || n != WEBHOOK_SIG_MAC_LEN)
        return 0;
    return CRYPTO_memcmp(got, mac, WEBHOOK_SIG_MAC_LEN) == 0;
}

enum webhook_sig_result webhook_sig_verify(const struct webhook_key *keys, size_t nkeys,
                                           const char *id, const char *timestamp,
                                           const char *signature_header, const void *body,
                                           size_t len, time_t now)
{
    unsigned char mac[WEBHOOK_SIG_MAC_LEN];
    enum webhook_sig_result r;
    int have_v1 = 0;

    if (!id || !*id || !timestamp || !*timestamp || !signature_header || !*signature_header)
        return WEBHOOK_SIG_MISSING_HEADERS;
    r = webhook_sig_check_timestamp(timestamp, now);
    if (r != WEBHOOK_SIG_OK)
        return r;

    /* Entries are space separated; versions other than v1 are skipped so that senders can add
     * new schemes without breaking us. */
    for (const char *p = signature_header; *p;) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *e = p;
        while (*e && *e != ' ' && *e != '\t')
            e++;
        if (e - p >= 3 && strncmp(p, "v1,", 3) == 0)
            have_v1 = 1;
        p = e;
    }
    if (!have_v1)
        return WEBHOOK_SIG_NO_V1;

    r = WEBHOOK_SIG_MISMATCH;
    for (size_t k = 0; k < nkeys && r != WEBHOOK_SIG_OK; k++) {
        if (webhook_sig_mac(&keys[k], id, timestamp, body, len, mac) != 0)
            continue;
        for (const char *p = signature_header; *p && r != WEBHOOK_SIG_OK;) {
            while (*p == ' ' || *p == '\t')
                p++;
            const char *e = p;
            while (*e && *e != ' ' && *e != '\t')
                e++;
            if (e - p >= 3 && strncmp(p, "v1,", 3) == 0 &&
                webhook_sig_entry_matches(p + 3, (size_t)(e - p - 3), mac))
                r = WEBHOOK_SIG_OK;
            p = e;
        }
    }
    OPENSSL_cleanse(mac, sizeof(mac));
    return r;
}

const char *webhook_sig_result_str(enum webhook_sig_result r)
{
    switch (r) {
    case WEBHOOK_SIG_OK:
        return "signature valid";
    case WEBHOOK_SIG_MISSING_HEADERS:
        return "webhook-id, webhook-timestamp or webhook-signature header missing";
    case WEBHOOK_SIG_BAD_TIMESTAMP:
        return "webhook-timestamp is not a whole number of unix seconds";
    case WEBHOOK_SIG_STALE_TIMESTAMP:
        return "webhook-timestamp is more than 300 seconds away from the server clock";
    case WEBHOOK_SIG_NO_V1:
        return "webhook-signature has no v1 signature";
    case WEBHOOK_SIG_MISMATCH:
        return "no webhook signature matches";
    }
    return "unknown signature error";
}

int webhook_sig_sign(const struct webhook_key *key, const char *id, long long timestamp,
                     const void *body, size_t len, char *out, size_t outlen)
{
    unsigned char mac[WEBHOOK_SIG_MAC_LEN];
    char b64[WEBHOOK_SIG_MAC_B64LEN + 1];
    char ts[24];
    int rc = -1;

    if (!out || outlen < 3 + WEBHOOK_SIG_MAC_B64LEN + 1 || timestamp < 0)
        goto out;
    snprintf(ts, sizeof(ts), "%lld", timestamp);
    if (webhook_sig_mac(key, id, ts, body, len, mac) != 0)
        goto out;
    if (EVP_EncodeBlock((unsigned char *)b64, mac, WEBHOOK_SIG_MAC_LEN) != WEBHOOK_SIG_MAC_B64LEN)
        goto out;
    snprintf(out, outlen, "v1,%s", b64);
    rc = 0;
out:
    OPENSSL_cleanse(mac, sizeof(mac));
    return rc;
}
