/* pm-sandbox: stand-in for Canvas (OAuth + FHIR), Twilio, SendGrid and the clinic webhook. */
#include "sandbox.h"

#include "config.h"
#include "http_server.h"
#include "log.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define SANDBOX_DEFAULT_TWILIO_SID "AC5a4db0c55a4db0c55a4db0c55a4db0c5"

static const struct config_var sandbox_vars[] = {
    {"PM_SANDBOX_LISTEN", "127.0.0.1:8090", 0,
     "host:port to listen on; port 0 picks a free port (the first stdout line names it)"},
    {"PM_SANDBOX_FIXTURES", "(built in: tools/sandbox/fixtures.json)", 0,
     "FHIR fixtures file {\"resources\": [...], \"schedulable_practitioners\": [...]}"},
    {"PM_SANDBOX_CLIENT_ID", "sandbox-client", 0, "Canvas OAuth client_id accepted"},
    {"PM_SANDBOX_CLIENT_SECRET", "sandbox-secret", 1, "Canvas OAuth client_secret accepted"},
    {"PM_SANDBOX_TOKEN_TTL_S", "36000", 0, "expires_in of issued access tokens, seconds"},
    {"PM_SANDBOX_WEBHOOK_SECRET", NULL, 1,
     "whsec_... : /webhook verifies Standard Webhooks signatures, 401 on bad ones"},
    {"PM_SANDBOX_TWILIO_ACCOUNT_SID", SANDBOX_DEFAULT_TWILIO_SID, 0, "Twilio AccountSid accepted"},
    {"PM_SANDBOX_TWILIO_AUTH_TOKEN", "sandbox-twilio-token", 1, "Twilio AuthToken accepted"},
    {"PM_SANDBOX_SENDGRID_API_KEY", "SG.sandbox", 1, "SendGrid API key accepted"},
    {"PM_SANDBOX_RECORD_MAX", "100000", 0,
     "requests kept for /_sandbox/requests (older ones dropped, counters kept)"},
    {"PM_SANDBOX_THREADS", "4", 0, "HTTP worker threads"},
    {"PM_LOG_LEVEL", "info", 0, "error|warn|info|debug"},
    {NULL, NULL, 0, NULL},
};

/* A secret with a built-in default: the sandbox's credentials are not secret by default, but
 * may be set like real ones (X or X_FILE). */
static char *sandbox_secret_or(const char *name, const char *def, struct config_report *r)
{
    char *v = config_secret(name, r);
    return v ? v : strdup(def);
}

static void sandbox_config_load(struct sandbox_config *cfg, enum log_level *level,
                                struct config_report *r)
{
    const char *listen = config_str("PM_SANDBOX_LISTEN", "127.0.0.1:8090");
    char err[256];
    char *whsec;

    memset(cfg, 0, sizeof(*cfg));
    if (config_parse_listen(listen, cfg->host, sizeof(cfg->host), &cfg->port, err, sizeof(err)) !=
        0)
        config_report_add(r, "PM_SANDBOX_LISTEN: %s", err);
    cfg->fixtures_path = config_str("PM_SANDBOX_FIXTURES", NULL);
    cfg->client_id = config_str("PM_SANDBOX_CLIENT_ID", "sandbox-client");
    cfg->client_secret = sandbox_secret_or("PM_SANDBOX_CLIENT_SECRET", "sandbox-secret", r);
    cfg->token_ttl_s = config_long("PM_SANDBOX_TOKEN_TTL_S", 36000, 1, 315360000, r);
    cfg->twilio_account_sid =
        config_str("PM_SANDBOX_TWILIO_ACCOUNT_SID", SANDBOX_DEFAULT_TWILIO_SID);
    cfg->twilio_auth_token =
        sandbox_secret_or("PM_SANDBOX_TWILIO_AUTH_TOKEN", "sandbox-twilio-token", r);
    cfg->sendgrid_api_key = sandbox_secret_or("PM_SANDBOX_SENDGRID_API_KEY", "SG.sandbox", r);
    cfg->record_max = config_long("PM_SANDBOX_RECORD_MAX", 100000, 1, 10000000, r);
    cfg->threads = (unsigned)config_long("PM_SANDBOX_THREADS", 4, 1, 64, r);
    whsec = config_secret("PM_SANDBOX_WEBHOOK_SECRET", r);
    if (whsec) {
        if (webhook_key_decode(whsec, &cfg->webhook_key, err, sizeof(err)) != 0)
            config_report_add(r, "PM_SANDBOX_WEBHOOK_SECRET: %s", err);
        else
            cfg->has_webhook_key = 1;
        config_secret_free(whsec);
    }
    *level = config_log_level(r);
    if (!cfg->client_secret || !cfg->twilio_auth_token || !cfg->sendgrid_api_key)
        config_report_add(r, "out of memory");
}

static void sandbox_config_free(struct sandbox_config *cfg)
{
    config_secret_free(cfg->client_secret);
    config_secret_free(cfg->twilio_auth_token);
    config_secret_free(cfg->sendgrid_api_key);
    memset(&cfg->webhook_key, 0, sizeof(cfg->webhook_key));
}

/* The benchmark holds hundreds of connections: use the hard descriptor limit, not the soft one. */
static void sandbox_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    static const char summary[] =
        "Stand-in for every outside HTTP party of the patient messaging bridge: Canvas OAuth\n"
        "(/auth/token/) and FHIR (/fhir), Twilio (/twilio), SendGrid (/sendgrid) and the clinic\n"
        "webhook (/webhook), with Canvas's quirks. Records every request and injects faults and\n"
        "latency through the control API under /_sandbox/.";
    struct config_report report;
    struct sandbox_config cfg;
    struct sandbox sb;
    enum log_level level = LOG_INFO;
    enum config_mode mode;
    sigset_t set;
    char err[512];
    int sig = 0, rc = 1;

    mode = config_cli(argc, argv, "pm-sandbox", summary, sandbox_vars);
    if (mode == CONFIG_MODE_EXIT_OK)
        return 0;
    if (mode == CONFIG_MODE_EXIT_USAGE)
        return 2;
    memset(&report, 0, sizeof(report));
    sandbox_config_load(&cfg, &level, &report);
    log_init("pm-sandbox", level);
    if (report.count == 0 && mode == CONFIG_MODE_CHECK) {
        /* The fixtures are configuration too: load them to check them. */
        struct sandbox_store *st = sandbox_store_new();
        if (cfg.fixtures_path && st &&
            sandbox_store_load_file(st, cfg.fixtures_path, err, sizeof(err)) != 0)
            config_report_add(&report, "PM_SANDBOX_FIXTURES: %s", err);
        sandbox_store_free(st);
    }
    if (report.count) {
        config_report_print(&report, stderr, "pm-sandbox");
        goto out;
    }
    if (mode == CONFIG_MODE_CHECK) {
        printf("pm-sandbox: configuration is valid\n");
        rc = 0;
        goto out;
    }

    /* Signals are taken synchronously by sigwait below; every thread inherits the mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    sandbox_raise_fd_limit();

    if (sandbox_init(&sb, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "pm-sandbox: %s\n", err);
        log_error("cannot start", LOG_S("error", err));
        goto out;
    }
    if (sandbox_listen(&sb, err, sizeof(err)) != 0) {
        fprintf(stderr, "pm-sandbox: %s\n", err);
        log_error("cannot listen", LOG_S("error", err));
        sandbox_shutdown(&sb);
        goto out;
    }
    {
        const char *shown = cfg.host;
        unsigned port = http_server_port(sb.http);
        if (!shown[0] || strcmp(shown, "0.0.0.0") == 0 || strcmp(shown, "::") == 0)
            shown = "127.0.0.1";
        printf("pm-sandbox listening on http://%s%s%s:%u\n", strchr(shown, ':') ? "[" : "", shown,
               strchr(shown, ':') ? "]" : "", port);
        fflush(stdout);
        log_info("listening", LOG_S("host", cfg.host), LOG_I("port", port),
                 LOG_S("version", PM_VERSION));
    }
    sigwait(&set, &sig);
    log_info("stopping", LOG_I("signal", sig));
    sandbox_shutdown(&sb);
    rc = 0;
out:
    sandbox_config_free(&cfg);
    return rc;
}
