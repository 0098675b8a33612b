/* Standard Webhooks signatures (HMAC-SHA256 over "id.timestamp.body"), verify and sign. */
#ifndef PM_WEBHOOK_SIG_H
#define PM_WEBHOOK_SIG_H

#include <stddef.h>
#include <time.h>

#define WEBHOOK_SIG_TOLERANCE_S 300
#define WEBHOOK_SIG_MAX_KEY     64

/* One decoded signing key (the base64 part of "whsec_..."). */
struct webhook_key {
    unsigned char key[WEBHOOK_SIG_MAX_KEY];
    size_t len;
};

/* Why a verification failed; callers answer 401 for every one but log/explain them apart. */
enum webhook_sig_result {
    WEBHOOK_SIG_OK = 0,
    WEBHOOK_SIG_MISSING_HEADERS, /* id, timestamp or signature absent or empty */
    WEBHOOK_SIG_BAD_TIMESTAMP,   /* not a whole number of seconds */
    WEBHOOK_SIG_STALE_TIMESTAMP, /* outside +-300 s of now */
    WEBHOOK_SIG_NO_V1,           /* no "v1,<sig>" entry in the header */
    WEBHOOK_SIG_MISMATCH,        /* v1 entries present, none matches any key */
};

/**
 * @brief Decode a "whsec_<base64>" secret (the prefix is optional, as in the Standard Webhooks
 *        libraries). @returns 0, or -1 with a reason in @p errstr (never the secret itself).
 */
int webhook_key_decode(const char *secret, struct webhook_key *out, char *errstr, size_t errlen);

/**
 * @brief Verify a request: the timestamp within WEBHOOK_SIG_TOLERANCE_S of @p now, then any
 *        space-separated "v1,<base64>" entry of @p signature_header equal (constant time) to
 *        HMAC-SHA256(key, id "." timestamp "." body) for any of the @p nkeys keys.
 */
enum webhook_sig_result webhook_sig_verify(const struct webhook_key *keys, size_t nkeys,
                                           const char *id, const char *timestamp,
                                           const char *signature_header, const void *body,
                                           size_t len, time_t now);

/**
 * @brief Only the timestamp check of webhook_sig_verify (for rejecting before the body is read).
 */
enum webhook_sig_result webhook_sig_check_timestamp(const char *timestamp, time_t now);

/** @returns a short constant explanation of @p r for a problem "detail". */
const char *webhook_sig_result_str(enum webhook_sig_result r);

/**
 * @brief Compute the "v1,<base64>" signature header value for an outbound request.
 * @returns 0, or -1 when @p out (of @p outlen bytes; 64 is enough) is too small.
 */
int webhook_sig_sign(const struct webhook_key *key, const char *id, long long timestamp,
                     const void *body, size_t len, char *out, size_t outlen);

#endif
