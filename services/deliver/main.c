/* pm-deliver: Kafka events to patients (webhook, SMS, email) and back into the Canvas chart. */
#include "deliver.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t deliver_signal;

static void deliver_on_signal(int sig)
{
    deliver_signal = sig;
}

static const char deliver_summary[] =
    "Consumes canvas.message.v1, patient.reply.v1 and patient.questionnaire_response.v1 events\n"
    "from Kafka (consumer group PM_DELIVER_GROUP_ID). Staff messages are read from the Canvas\n"
    "FHIR API and delivered by signed webhook, Twilio SMS and SendGrid email; patient replies are\n"
    "written back as FHIR Communication and check-ins as FHIR QuestionnaireResponse. At least\n"
    "once, in order per patient, in parallel across patients; failures retry with backoff and\n"
    "end on the DLQ; every outcome is published as delivery.result.v1.\n\n"
    "HTTP: GET /healthz, /readyz, /metrics on PM_DELIVER_LISTEN.";

int main(int argc, char **argv)
{
    struct deliver_config cfg;
    struct config_report report = {0};
    struct deliver_app *app;
    struct sigaction sa;
    char err[512];
    int rc = 0;
    enum config_mode mode =
        config_cli(argc, argv, "pm-deliver", deliver_summary, deliver_config_vars);

    if (mode == CONFIG_MODE_EXIT_OK)
        return 0;
    if (mode == CONFIG_MODE_EXIT_USAGE)
        return 2;

    deliver_config_load(&cfg, &report);
    if (mode == CONFIG_MODE_CHECK) {
        config_report_print(&report, stdout, "pm-deliver");
        if (!report.count)
            printf("pm-deliver: configuration OK\n");
        deliver_config_free(&cfg);
        return report.count ? 1 : 0;
    }
    log_init("pm-deliver", cfg.log_level);
    if (report.count) {
        config_report_print(&report, stderr, "pm-deliver");
        log_error("refusing to start: configuration problems", LOG_I("count", report.count));
        deliver_config_free(&cfg);
        return 1;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = deliver_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    app = deliver_app_start(&cfg, &deliver_signal, err, sizeof(err));
    if (!app) {
        log_error("cannot start", LOG_S("error", err));
        deliver_config_free(&cfg);
        return 1;
    }
    while (!deliver_signal) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        if (deliver_app_fatal(app, err, sizeof(err))) {
            log_error("stopping after a fatal Kafka error", LOG_S("kafka_error", err));
            rc = 1;
            break;
        }
        nanosleep(&ts, NULL);
    }
    if (deliver_signal)
        log_info("stopping: draining work in progress", LOG_I("signal", deliver_signal));
    if (deliver_app_stop(app) != 0)
        log_warn("some work was abandoned at exit; it will be redone after restart");
    log_info("stopped");
    deliver_config_free(&cfg);
    return rc;
}
