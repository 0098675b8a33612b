/* Prometheus text-format metrics: counters, gauges and histograms with labels, thread-safe. */
#ifndef PM_METRICS_H
#define PM_METRICS_H

#include <stddef.h>

struct metrics_registry;
struct metrics_family; /* one metric name with its HELP, TYPE and label names */
struct metrics_series; /* one combination of label values; stable pointer until registry free */

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

struct metrics_registry *metrics_registry_new(void);
void metrics_registry_free(struct metrics_registry *reg);

/**
 * @brief Declare a family. @p labels is a NULL-terminated list of label names (NULL = none).
 *        @p buckets (histograms only) are ascending upper bounds in the metric's unit, @p nbuckets
 *        of them; +Inf is implicit. @returns the family, owned by the registry.
 */
struct metrics_family *metrics_family_new(struct metrics_registry *reg, enum metrics_type type,
                                          const char *name, const char *help,
                                          const char *const *labels, const double *buckets,
                                          size_t nbuckets);

/**
 * @brief The series for these label values (created on first use; same count and order as the
 *        family's label names; NULL for a family without labels). Look it up once and keep the
 *        pointer on hot paths. Values are escaped as the text format requires.
 */
struct metrics_series *metrics_series_get(struct metrics_family *fam, const char *const *values);

/** @brief Shorthands for zero, one and two labels. */
struct metrics_series *metrics_series0(struct metrics_family *fam);
struct metrics_series *metrics_series1(struct metrics_family *fam, const char *v1);
struct metrics_series *metrics_series2(struct metrics_family *fam, const char *v1, const char *v2);

void metrics_inc(struct metrics_series *s);               /* counter or gauge += 1 */
void metrics_add(struct metrics_series *s, double v);     /* counter (v >= 0) or gauge += v */
void metrics_set(struct metrics_series *s, double v);     /* gauge = v */
void metrics_observe(struct metrics_series *s, double v); /* histogram */

/** @returns the current value of a counter or gauge (for tests and health decisions). */
double metrics_value(const struct metrics_series *s);

/**
 * @brief Render every family in Prometheus text exposition format 0.0.4.
 * @returns a malloc'd NUL-terminated string the caller frees, length in @p len.
 */
char *metrics_render(struct metrics_registry *reg, size_t *len);

/* Default request-duration buckets in seconds, 1 ms .. 10 s. */
extern const double metrics_duration_buckets[];
extern const size_t metrics_duration_nbuckets;

#endif
