/* Integration-test harness: Standard Webhooks signing of a request (via common/webhook_sig.h). */
#include "harness.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "webhook_sig.h"

int harness_webhook_sign(const char *secret, const char *id, long long timestamp, const void *body,
                         size_t len, struct harness_webhook_headers *out, char *errstr,
                         size_t errlen)
{
    struct webhook_key key;
    char sig[128];
    char ts[32];
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (webhook_key_decode(secret, &key, errstr, errlen) != 0)
        goto out;
    snprintf(ts, sizeof(ts), "%lld", timestamp);
    if (webhook_sig_sign(&key, id, timestamp, body, len, sig, sizeof(sig)) != 0) {
        snprintf(errstr, errlen, "webhook_sig_sign failed");
        goto out;
    }
    if (snprintf(out->id, sizeof(out->id), "webhook-id: %s", id) >= (int)sizeof(out->id)) {
        snprintf(errstr, errlen, "webhook id too long");
        goto out;
    }
    snprintf(out->timestamp, sizeof(out->timestamp), "webhook-timestamp: %s", ts);
    snprintf(out->signature, sizeof(out->signature), "webhook-signature: %s", sig);
    rc = 0;
out:
    OPENSSL_cleanse(&key, sizeof(key));
    return rc;
}
