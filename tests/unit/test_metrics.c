/* Unit tests for metrics: exposition text, label escaping, histograms, exact concurrent counts. */
#include "metrics.h"
#include "unit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void test_counters(void)
{
    struct metrics_registry *reg = metrics_registry_new();
    static const char *const labels[] = {"route", "status", NULL};
    struct metrics_family *req =
        metrics_family_new(reg, METRICS_COUNTER, "pm_ingest_requests_total",
                           "HTTP requests by route and status.", labels, NULL, 0);
    struct metrics_family *up =
        metrics_family_new(reg, METRICS_COUNTER, "pm_restarts_total", "Restarts.", NULL, NULL, 0);
    struct metrics_series *a, *b, *a2;
    size_t len = 0;
    char *text;

    CHECK(reg && req && up);
    a = metrics_series2(req, "/v1/patient/replies", "202");
    b = metrics_series2(req, "/v1/canvas/messages", "400");
    a2 = metrics_series2(req, "/v1/patient/replies", "202");
    CHECK(a != NULL && b != NULL);
    CHECK(a == a2);                           /* the same label values give the same series */
    CHECK(metrics_series1(req, "x") == NULL); /* wrong label count */
    CHECK(metrics_series0(req) == NULL);

    for (int i = 0; i < 42; i++)
        metrics_inc(a);
    metrics_add(b, 2.5);
    metrics_add(b, -1);  /* counters never go down */
    metrics_set(b, 100); /* nor are they set */
    CHECK(metrics_value(a) == 42);
    CHECK(metrics_value(b) == 2.5);

    text = metrics_render(reg, &len);
    CHECK(text != NULL);
    CHECK_INT(len, strlen(text));
    CHECK_STR(text, "# HELP pm_ingest_requests_total HTTP requests by route and status.\n"
                    "# TYPE pm_ingest_requests_total counter\n"
                    "pm_ingest_requests_total{route=\"/v1/patient/replies\",status=\"202\"} 42\n"
                    "pm_ingest_requests_total{route=\"/v1/canvas/messages\",status=\"400\"} 2.5\n"
                    "# HELP pm_restarts_total Restarts.\n"
                    "# TYPE pm_restarts_total counter\n"
                    "pm_restarts_total 0\n");
    free(text);

    /* Re-declaring the same family returns it; a conflicting declaration is refused. */
    CHECK(metrics_family_new(reg, METRICS_COUNTER, "pm_ingest_requests_total", "x", labels, NULL,
                             0) == req);
    CHECK(metrics_family_new(reg, METRICS_GAUGE, "pm_ingest_requests_total", "x", labels, NULL,
                             0) == NULL);
    /* Invalid metric and label names. */
    static const char *const bad_label[] = {"0route", NULL};
    static const char *const reserved[] = {"__name", NULL};
    CHECK(metrics_family_new(reg, METRICS_COUNTER, "9bad", "x", NULL, NULL, 0) == NULL);
    CHECK(metrics_family_new(reg, METRICS_COUNTER, "bad-name", "x", NULL, NULL, 0) == NULL);
    CHECK(metrics_family_new(reg, METRICS_COUNTER, "", "x", NULL, NULL, 0) == NULL);
    CHECK(metrics_family_new(reg, METRICS_COUNTER, "ok_name", "x", bad_label, NULL, 0) == NULL);
    CHECK(metrics_family_new(reg, METRICS_COUNTER, "ok_name", "x", reserved, NULL, 0) == NULL);
    /* Nothing above was added to the output. */
    text = metrics_render(reg, NULL);
    CHECK(text && strstr(text, "ok_name") == NULL && strstr(text, "9bad") == NULL);
    free(text);

    /* NULL series are ignored rather than crashing a caller whose lookup failed. */
    metrics_inc(NULL);
    metrics_observe(NULL, 1);
    CHECK(metrics_value(NULL) == 0);
    metrics_registry_free(reg);
}

static void test_escaping(void)
{
    struct metrics_registry *reg = metrics_registry_new();
    static const char *const labels[] = {"target", NULL};
    struct metrics_family *f =
        metrics_family_new(reg, METRICS_COUNTER, "pm_x_total",
                           "Help with \\ and\nnewline and \"quotes\".", labels, NULL, 0);
    char *text;

    metrics_inc(metrics_series1(f, "a\"b\\c\nd"));
    metrics_inc(metrics_series1(f, ""));
    text = metrics_render(reg, NULL);
    /* HELP escapes backslash and newline only; label values also escape the double quote. */
    CHECK_STR(text, "# HELP pm_x_total Help with \\\\ and\\nnewline and \"quotes\".\n"
                    "# TYPE pm_x_total counter\n"
                    "pm_x_total{target=\"a\\\"b\\\\c\\nd\"} 1\n"
                    "pm_x_total{target=\"\"} 1\n");
    free(text);
    metrics_registry_free(reg);
}

static void test_gauges(void)
{
    struct metrics_registry *reg = metrics_registry_new();
    struct metrics_family *f =
        metrics_family_new(reg, METRICS_GAUGE, "pm_in_flight", "Events in flight.", NULL, NULL, 0);
    struct metrics_series *s = metrics_series0(f);
    char *text;

    CHECK(s != NULL);
    CHECK(metrics_series0(f) == s);
    metrics_set(s, 10);
    metrics_add(s, -3);
    metrics_inc(s);
    CHECK(metrics_value(s) == 8);
    metrics_observe(s, 5); /* not a histogram: ignored */
    CHECK(metrics_value(s) == 8);
    text = metrics_render(reg, NULL);
    CHECK_STR(text, "# HELP pm_in_flight Events in flight.\n"
                    "# TYPE pm_in_flight gauge\n"
                    "pm_in_flight 8\n");
    free(text);

    metrics_set(s, 0.1);
    text = metrics_render(reg, NULL);
    CHECK(strstr(text, "\npm_in_flight 0.1\n") != NULL);
    free(text);
    metrics_set(s, -2);
    text = metrics_render(reg, NULL);
    CHECK(strstr(text, "\npm_in_flight -2\n") != NULL);
    free(text);
    metrics_set(s, 1e20);
    text = metrics_render(reg, NULL);
    CHECK(strstr(text, "\npm_in_flight 1e+20\n") != NULL);
    free(text);
    metrics_set(s, INFINITY);
    text = metrics_render(reg, NULL);
    CHECK(strstr(text, "\npm_in_flight +Inf\n") != NULL);
    free(text);
    metrics_set(s, 1.0 / 3.0);
    text = metrics_render(reg, NULL);
    CHECK(strstr(text, "\npm_in_flight 0.3333333333333333\n") != NULL);
    free(text);
    metrics_registry_free(reg);
}

static void test_histogram(void)
{
    struct metrics_registry *reg = metrics_registry_new();
    static const char *const labels[] = {"route", NULL};
    static const double buckets[] = {0.1, 1, 2.5};
    struct metrics_family *f =
        metrics_family_new(reg, METRICS_HISTOGRAM, "pm_request_duration_seconds",
                           "Request duration.", labels, buckets, 3);
    struct metrics_series *s = metrics_series1(f, "/healthz");
    char *text;

    CHECK(s != NULL);
    /* le is inclusive: 0.1 lands in the 0.1 bucket, 1 in the 1 bucket. */
    metrics_observe(s, 0.05);
    metrics_observe(s, 0.1);
    metrics_observe(s, 0.5);
    metrics_observe(s, 1);
    metrics_observe(s, 2);
    metrics_observe(s, 7.25);
    metrics_observe(s, 100);
    CHECK(metrics_value(s) == 7);
    text = metrics_render(reg, NULL);
    CHECK_STR(text, "# HELP pm_request_duration_seconds Request duration.\n"
                    "# TYPE pm_request_duration_seconds histogram\n"
                    "pm_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.1\"} 2\n"
                    "pm_request_duration_seconds_bucket{route=\"/healthz\",le=\"1\"} 4\n"
                    "pm_request_duration_seconds_bucket{route=\"/healthz\",le=\"2.5\"} 5\n"
                    "pm_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} 7\n"
                    "pm_request_duration_seconds_sum{route=\"/healthz\"} 110.9\n"
                    "pm_request_duration_seconds_count{route=\"/healthz\"} 7\n");
    free(text);

    /* Unlabelled histogram over the default buckets. */
    struct metrics_family *d =
        metrics_family_new(reg, METRICS_HISTOGRAM, "pm_d_seconds", "D.", NULL,
                           metrics_duration_buckets, metrics_duration_nbuckets);
    CHECK_INT(metrics_duration_nbuckets, 13);
    CHECK(metrics_duration_buckets[0] == 0.001 && metrics_duration_buckets[12] == 10);
    metrics_observe(metrics_series0(d), 0.003);
    metrics_observe(metrics_series0(d), 3);
    text = metrics_render(reg, NULL);
    CHECK(strstr(text, "pm_d_seconds_bucket{le=\"0.001\"} 0\n"
                       "pm_d_seconds_bucket{le=\"0.0025\"} 0\n"
                       "pm_d_seconds_bucket{le=\"0.005\"} 1\n") != NULL);
    CHECK(strstr(text, "pm_d_seconds_bucket{le=\"2.5\"} 1\n"
                       "pm_d_seconds_bucket{le=\"5\"} 2\n"
                       "pm_d_seconds_bucket{le=\"10\"} 2\n"
                       "pm_d_seconds_bucket{le=\"+Inf\"} 2\n"
                       "pm_d_seconds_sum 3.003\n"
                       "pm_d_seconds_count 2\n") != NULL);
    free(text);

    /* Buckets must ascend; "le" is reserved for the histogram itself. */
    static const double unsorted[] = {1, 0.5};
    static const char *const le[] = {"le", NULL};
    CHECK(metrics_family_new(reg, METRICS_HISTOGRAM, "pm_h2", "x", NULL, unsorted, 2) == NULL);
    CHECK(metrics_family_new(reg, METRICS_HISTOGRAM, "pm_h3", "x", le, buckets, 3) == NULL);
    metrics_registry_free(reg);
}

struct worker_arg {
    struct metrics_family *fam;
    struct metrics_series *shared;
    struct metrics_series *hist;
    int n;
};

static void *worker(void *p)
{
    struct worker_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        metrics_inc(a->shared);
        metrics_observe(a->hist, 0.5);
        /* Lookups and creation race with increments and renders. */
        if (i % 1000 == 0) {
            char v[16];
            snprintf(v, sizeof(v), "%d", i / 1000 % 7);
            metrics_inc(metrics_series1(a->fam, v));
        }
    }
    return NULL;
}

static void *renderer(void *p)
{
    struct metrics_registry *reg = p;
    for (int i = 0; i < 50; i++)
        free(metrics_render(reg, NULL));
    return NULL;
}

static void test_concurrency(void)
{
    struct metrics_registry *reg = metrics_registry_new();
    static const char *const labels[] = {"k", NULL};
    struct metrics_family *c =
        metrics_family_new(reg, METRICS_COUNTER, "pm_c_total", "C.", NULL, NULL, 0);
    struct metrics_family *byk =
        metrics_family_new(reg, METRICS_COUNTER, "pm_k_total", "K.", labels, NULL, 0);
    struct metrics_family *h =
        metrics_family_new(reg, METRICS_HISTOGRAM, "pm_h_seconds", "H.", NULL,
                           metrics_duration_buckets, metrics_duration_nbuckets);
    struct worker_arg arg = {byk, metrics_series0(c), metrics_series0(h), 100000};
    pthread_t t[4], r;

    for (int i = 0; i < 4; i++)
        CHECK_INT(pthread_create(&t[i], NULL, worker, &arg), 0);
    CHECK_INT(pthread_create(&r, NULL, renderer, reg), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    pthread_join(r, NULL);

    CHECK(metrics_value(arg.shared) == 400000);
    CHECK(metrics_value(arg.hist) == 400000);
    double total = 0;
    for (int k = 0; k < 7; k++) {
        char v[4];
        snprintf(v, sizeof(v), "%d", k);
        total += metrics_value(metrics_series1(byk, v));
    }
    CHECK(total == 400);

    char *text = metrics_render(reg, NULL);
    CHECK(strstr(text, "\npm_c_total 400000\n") != NULL);
    CHECK(strstr(text, "\npm_h_seconds_bucket{le=\"0.25\"} 0\n") != NULL);
    CHECK(strstr(text, "\npm_h_seconds_bucket{le=\"0.5\"} 400000\n") != NULL);
    CHECK(strstr(text, "\npm_h_seconds_bucket{le=\"+Inf\"} 400000\n") != NULL);
    CHECK(strstr(text, "\npm_h_seconds_sum 200000\n") != NULL);
    CHECK(strstr(text, "\npm_h_seconds_count 400000\n") != NULL);
    /* Seven label values, each one series, in the order they were first seen. */
    CHECK(strstr(text, "pm_k_total{k=\"0\"}") != NULL && strstr(text, "pm_k_total{k=\"6\"}"));
    free(text);
    metrics_registry_free(reg);
}

static void test_empty(void)
{
    struct metrics_registry *reg = metrics_registry_new();
    size_t len = 99;
    char *text = metrics_render(reg, &len);
    CHECK_STR(text, "");
    CHECK_INT(len, 0);
    free(text);

    /* A labelled family with no series yet renders its HELP and TYPE only. */
    static const char *const labels[] = {"a", NULL};
    metrics_family_new(reg, METRICS_COUNTER, "pm_e_total", "E.", labels, NULL, 0);
    text = metrics_render(reg, NULL);
    CHECK_STR(text, "# HELP pm_e_total E.\n# TYPE pm_e_total counter\n");
    free(text);
    metrics_registry_free(reg);
    metrics_registry_free(NULL);
}

int main(void)
{
    test_counters();
    test_escaping();
    test_gauges();
    test_histogram();
    test_concurrency();
    test_empty();
    return UNIT_DONE();
}
