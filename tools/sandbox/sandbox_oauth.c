/* pm-sandbox Canvas OAuth: client-credentials token endpoint and the issued-token table. */
#include "sandbox.h"

#include "http_server.h"
#include "log.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Canvas (django-oauth-toolkit) issues 30-character alphanumeric tokens. */
#define SANDBOX_TOKEN_CHARS 30
/* Above this many tokens the table drops expired ones as new ones are issued. */
#define SANDBOX_TOKEN_PRUNE_AT 4096

struct sandbox_tokens {
    pthread_mutex_t lock;
    json_t *by_token; /* {"<token>": expiry in unix seconds} */
    size_t prune_at;  /* size at which the next issue walks the table for expired tokens */
    long issued;
    long expired;
};

struct sandbox_tokens *sandbox_tokens_new(void)
{
    struct sandbox_tokens *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->by_token = json_object();
    if (!t->by_token) {
        free(t);
        return NULL;
    }
    t->prune_at = SANDBOX_TOKEN_PRUNE_AT;
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void sandbox_tokens_free(struct sandbox_tokens *t)
{
    if (!t)
        return;
    json_decref(t->by_token);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void sandbox_tokens_issue(struct sandbox_tokens *t, long ttl_s, time_t now, char *out,
                          size_t outlen)
{
    char token[SANDBOX_TOKEN_CHARS + 1];

    sandbox_random_alnum(token, SANDBOX_TOKEN_CHARS);
    pthread_mutex_lock(&t->lock);
    if (json_object_size(t->by_token) >= t->prune_at) {
        const char *key;
        json_t *exp, *tmp;
        json_object_foreach_safe(t->by_token, tmp, key, exp)
        {
            if (json_integer_value(exp) <= (json_int_t)now)
                json_object_del(t->by_token, key);
        }
        /* Walk again only once the live tokens have doubled: O(1) amortised per token even
         * when none expire (a client asking for a token per call, with long lifetimes). */
        t->prune_at = json_object_size(t->by_token) * 2;
        if (t->prune_at < SANDBOX_TOKEN_PRUNE_AT)
            t->prune_at = SANDBOX_TOKEN_PRUNE_AT;
    }
    json_object_set_new(t->by_token, token, json_integer((json_int_t)(now + ttl_s)));
    t->issued++;
    pthread_mutex_unlock(&t->lock);
    snprintf(out, outlen, "%s", token);
}

int sandbox_tokens_valid(struct sandbox_tokens *t, const char *token, time_t now)
{
    json_t *exp;
    int ok;

    pthread_mutex_lock(&t->lock);
    exp = json_object_get(t->by_token, token);
    ok = exp && json_integer_value(exp) > (json_int_t)now;
    pthread_mutex_unlock(&t->lock);
    return ok;
}

long sandbox_tokens_expire_all(struct sandbox_tokens *t)
{
    time_t now = time(NULL);
    const char *key;
    json_t *exp;
    long n = 0;

    pthread_mutex_lock(&t->lock);
    json_object_foreach(t->by_token, key, exp)
    {
        if (json_integer_value(exp) > (json_int_t)now)
            n++;
    }
    json_object_clear(t->by_token);
    t->expired += n;
    pthread_mutex_unlock(&t->lock);
    return n;
}

void sandbox_tokens_counts(struct sandbox_tokens *t, long *issued, long *expired)
{
    pthread_mutex_lock(&t->lock);
    *issued = t->issued;
    *expired = t->expired;
    pthread_mutex_unlock(&t->lock);
}

void sandbox_tokens_reset_counts(struct sandbox_tokens *t)
{
    pthread_mutex_lock(&t->lock);
    t->issued = 0;
    t->expired = 0;
    pthread_mutex_unlock(&t->lock);
}

/* Constant-time equality of two NUL-terminated strings (lengths may leak, contents do not). */
static int sandbox_secret_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    return la == lb && CRYPTO_memcmp(a, b, la) == 0;
}

/* Client credentials from an "Authorization: Basic" header (client_secret_basic), which
 * django-oauth-toolkit accepts as well as form fields. @returns 0 with malloc'd id and secret. */
static int sandbox_basic_credentials(const char *auth, char **id, char **secret)
{
    unsigned char decoded[512];
    const char *b64;
    size_t len;
    int n;
    char *colon;

    if (!auth || strncasecmp(auth, "Basic ", 6) != 0)
        return -1;
    b64 = auth + 6;
    len = strlen(b64);
    if (len == 0 || len % 4 != 0 || len / 4 * 3 >= sizeof(decoded))
        return -1;
    n = EVP_DecodeBlock(decoded, (const unsigned char *)b64, (int)len);
    if (n < 0)
        return -1;
    /* EVP_DecodeBlock counts padding as zero bytes: trim them. */
    if (len >= 1 && b64[len - 1] == '=')
        n--;
    if (len >= 2 && b64[len - 2] == '=')
        n--;
    decoded[n] = '\0';
    colon = strchr((char *)decoded, ':');
    if (!colon)
        return -1;
    *colon = '\0';
    *id = strdup((char *)decoded);
    *secret = strdup(colon + 1);
    OPENSSL_cleanse(decoded, sizeof(decoded));
    if (!*id || !*secret) {
        free(*id);
        free(*secret);
        *id = *secret = NULL;
        return -1;
    }
    return 0;
}

static void sandbox_oauth_error(struct sandbox_answer *ans, int status, const char *error,
                                const char *description)
{
    sandbox_answer_json(ans, status,
                        json_pack("{s:s, s:s*}", "error", error, "error_description", description));
}

int sandbox_oauth_handle(struct sandbox *sb, struct http_request *req, struct sandbox_answer *ans)
{
    const struct sandbox_config *cfg = sb->cfg;
    const char *ctype = http_request_header(req, "Content-Type");
    char *grant = NULL, *id = NULL, *secret = NULL;
    char token[64];
    size_t len;
    const char *body = http_request_body(req, &len);

    if (!ctype || strncasecmp(ctype, "application/x-www-form-urlencoded", 33) != 0) {
        sandbox_oauth_error(ans, 400, "invalid_request",
                            "Content-Type must be application/x-www-form-urlencoded");
        goto out;
    }
    grant = sandbox_form_get(body, len, "grant_type");
    if (!grant || strcmp(grant, "client_credentials") != 0) {
        sandbox_oauth_error(ans, 400, "unsupported_grant_type", NULL);
        goto out;
    }
    id = sandbox_form_get(body, len, "client_id");
    secret = sandbox_form_get(body, len, "client_secret");
    if (!id && !secret &&
        sandbox_basic_credentials(http_request_header(req, "Authorization"), &id, &secret) != 0)
        id = secret = NULL;
    if (!id || !secret || !sandbox_secret_equal(id, cfg->client_id) ||
        !sandbox_secret_equal(secret, cfg->client_secret)) {
        log_info("token request refused", LOG_I("http_status", 401));
        sandbox_oauth_error(ans, 401, "invalid_client", NULL);
        goto out;
    }
    sandbox_tokens_issue(sb->tokens, cfg->token_ttl_s, time(NULL), token, sizeof(token));
    sandbox_answer_json(ans, 200,
                        json_pack("{s:s, s:I, s:s, s:s}", "access_token", token, "expires_in",
                                  (json_int_t)cfg->token_ttl_s, "token_type", "Bearer", "scope",
                                  "user/*.*"));
    sandbox_answer_header(ans, "Cache-Control", "no-store");
    sandbox_answer_header(ans, "Pragma", "no-cache");
    OPENSSL_cleanse(token, sizeof(token));
    log_debug("token issued", LOG_I("expires_in", cfg->token_ttl_s));
out:
    free(grant);
    free(id);
    if (secret)
        OPENSSL_cleanse(secret, strlen(secret));
    free(secret);
    return 0;
}
