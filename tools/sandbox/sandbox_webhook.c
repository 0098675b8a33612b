/* pm-sandbox clinic webhook receiver: records deliveries, verifies Standard Webhooks signatures. */
#include "sandbox.h"

#include "http_server.h"
#include "log.h"

#include <stdlib.h>

/* The answer to an accepted delivery, the same every time: no JSON to build per request. */
static const char sandbox_webhook_received[] = "{\"received\":true}";

static void sandbox_webhook_accept(struct sandbox_answer *ans)
{
    sandbox_answer_raw(ans, 200, "application/json", sandbox_webhook_received,
                       sizeof(sandbox_webhook_received) - 1);
}

int sandbox_webhook_handle(struct sandbox *sb, struct http_request *req, struct sandbox_answer *ans,
                           int *signature_valid)
{
    const struct sandbox_config *cfg = sb->cfg;
    enum webhook_sig_result r;
    const char *body;
    size_t len;

    if (!cfg->has_webhook_key) {
        sandbox_webhook_accept(ans);
        return 0;
    }
    body = http_request_body(req, &len);
    r = webhook_sig_verify(&cfg->webhook_key, 1, http_request_header(req, "webhook-id"),
                           http_request_header(req, "webhook-timestamp"),
                           http_request_header(req, "webhook-signature"), body, len, time(NULL));
    *signature_valid = r == WEBHOOK_SIG_OK;
    if (r != WEBHOOK_SIG_OK) {
        log_info("webhook signature rejected", LOG_S("reason", webhook_sig_result_str(r)),
                 LOG_I("http_status", 401));
        sandbox_answer_json(
            ans, 401, json_pack("{s:b, s:s}", "received", 0, "error", webhook_sig_result_str(r)));
        return 0;
    }
    sandbox_webhook_accept(ans);
    return 0;
}
