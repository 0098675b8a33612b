/* libFuzzer target: Standard Webhooks verification with attacker-controlled headers and body. */
#include "webhook_sig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct webhook_key key;
    static int ready;
    char buf[4096];
    char *id, *ts, *sig, *body;
    char err[128];

    if (!ready) {
        webhook_key_decode("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &key, err, sizeof(err));
        ready = 1;
    }
    if (size >= sizeof(buf))
        return 0;
    /* Input: id \n timestamp \n signature-header \n body */
    memcpy(buf, data, size);
    buf[size] = '\0';
    id = buf;
    ts = strchr(id, '\n');
    if (!ts)
        return 0;
    *ts++ = '\0';
    sig = strchr(ts, '\n');
    if (!sig)
        return 0;
    *sig++ = '\0';
    body = strchr(sig, '\n');
    if (!body)
        return 0;
    *body++ = '\0';
    enum webhook_sig_result r =
        webhook_sig_verify(&key, 1, id, ts, sig, body, size - (size_t)(body - buf), 1614265330);
    /* A valid signature must be exactly what signing produces (no lucky acceptance). */
    if (r == WEBHOOK_SIG_OK) {
        char want[128];
        if (webhook_sig_sign(&key, id, strtoll(ts, NULL, 10), body, size - (size_t)(body - buf),
                             want, sizeof(want)) != 0 ||
            !strstr(sig, want + 3))
            abort();
    }
    webhook_sig_check_timestamp(ts, 1614265330);
    return 0;
}
