/* pm-ingest: Canvas notifications, patient replies and check-ins over HTTP into Kafka. */
#include "ingest.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t ingest_signal;

static void ingest_on_signal(int sig)
{
    ingest_signal = sig;
}

static const char ingest_summary[] =
    "Receives Canvas message notifications, patient replies and questionnaire check-ins over\n"
    "authenticated HTTP and produces them to Kafka as CloudEvents, answering 202 only once Kafka\n"
    "has acknowledged the event.\n\n"
    "Routes: POST /v1/canvas/messages, POST /v1/patient/replies,\n"
    "        POST /v1/patient/questionnaire-responses, GET /healthz, /readyz, /metrics";

int main(int argc, char **argv)
{
    struct ingest_config cfg;
    struct config_report report = {0};
    struct ingest_app *app;
    struct sigaction sa;
    char err[512];
    int rc = 0;
    enum config_mode mode = config_cli(argc, argv, "pm-ingest", ingest_summary, ingest_config_vars);

    if (mode == CONFIG_MODE_EXIT_OK)
        return 0;
    if (mode == CONFIG_MODE_EXIT_USAGE)
        return 2;

    ingest_config_load(&cfg, &report);
    if (mode == CONFIG_MODE_CHECK) {
        config_report_print(&report, stdout, "pm-ingest");
        if (!report.count)
            printf("pm-ingest: configuration OK\n");
        ingest_config_free(&cfg);
        return report.count ? 1 : 0;
    }
    log_init("pm-ingest", cfg.log_level);
    if (report.count) {
        config_report_print(&report, stderr, "pm-ingest");
        log_error("refusing to start: configuration problems", LOG_I("count", report.count));
        ingest_config_free(&cfg);
        return 1;
    }
    if (cfg.nkeys == 0 && cfg.ntokens == 0)
        log_warn("accepting unauthenticated requests (PM_INGEST_ALLOW_UNAUTHENTICATED=1)");

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ingest_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    app = ingest_app_start(&cfg, err, sizeof(err));
    if (!app) {
        log_error("cannot start", LOG_S("error", err));
        ingest_config_free(&cfg);
        return 1;
    }
    log_info("pm-ingest listening", LOG_S("addr", cfg.listen_host),
             LOG_I("port", ingest_app_port(app)), LOG_S("brokers", cfg.kafka.brokers),
             LOG_S("version", PM_VERSION));

    while (!ingest_signal) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        if (ingest_app_fatal(app, err, sizeof(err))) {
            /* The idempotent producer can no longer guarantee anything: stop answering 2xx,
             * answer what waits, and exit non-zero so a supervisor restarts us. */
            log_error("stopping after a fatal Kafka error", LOG_S("kafka_error", err));
            rc = 1;
            break;
        }
        nanosleep(&ts, NULL);
    }
    if (ingest_signal)
        log_info("stopping", LOG_I("signal", ingest_signal));
    /* Requests still open here were answered 503 or are slow readers of their answer: nothing
     * that was acknowledged is lost either way. */
    if (ingest_app_stop(app) != 0)
        log_warn("some requests were still in progress at exit");
    log_info("stopped");
    ingest_config_free(&cfg);
    return rc;
}
