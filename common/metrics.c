/* Prometheus metrics registry: lock-free updates on atomics, text exposition format 0.0.4 render.
 */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double metrics_duration_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                           0.25,  0.5,    1,     2.5,  5,     10};
const size_t metrics_duration_nbuckets =
    sizeof(metrics_duration_buckets) / sizeof(metrics_duration_buckets[0]);

/* One label combination. Values are updated with atomics only, so the hot path never takes a
 * lock; the registry mutex guards the lists (lookup, creation, render). */
struct metrics_series {
    struct metrics_family *fam;
    char **values;            /* raw label values, for lookup */
    char *labels;             /* rendered and escaped: a="x",b="y" ("" without labels) */
    _Atomic uint64_t value;   /* counter/gauge: bits of a double; histogram: bits of the sum */
    _Atomic uint64_t *counts; /* histogram: per-bucket (not cumulative), nbuckets + 1 for +Inf */
};

struct metrics_family {
    struct metrics_registry *reg;
    enum metrics_type type;
    char *name;
    char *help;
    char **labels;
    size_t nlabels;
    double *buckets;
    size_t nbuckets;
    struct metrics_series **series; /* creation order */
    size_t nseries, capseries;
};

struct metrics_registry {
    pthread_mutex_t lock;
    struct metrics_family **fams; /* registration order */
    size_t nfams, capfams;
};

static double metrics_bits_to_double(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

static uint64_t metrics_double_to_bits(double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof(bits));
    return bits;
}

/* C11 has no fetch_add for floating types: a compare-exchange loop on the bits is exact under
 * contention (every increment lands once) and stays lock-free on 64-bit targets. */
static void metrics_atomic_add(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    uint64_t upd;
    do {
        upd = metrics_double_to_bits(metrics_bits_to_double(old) + v);
    } while (!atomic_compare_exchange_weak_explicit(a, &old, upd, memory_order_relaxed,
                                                    memory_order_relaxed));
}

static int metrics_name_ok(const char *s, int allow_colon)
{
    if (!s || !*s)
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                    (allow_colon && c == ':');
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

static void metrics_strv_free(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void metrics_series_free(struct metrics_series *s, size_t nlabels)
{
    if (!s)
        return;
    metrics_strv_free(s->values, nlabels);
    free(s->labels);
    free((void *)s->counts);
    free(s);
}

static void metrics_family_free(struct metrics_family *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nseries; i++)
        metrics_series_free(f->series[i], f->nlabels);
    free(f->series);
    free(f->buckets);
    metrics_strv_free(f->labels, f->nlabels);
    free(f->help);
    free(f->name);
    free(f);
}

struct metrics_registry *metrics_registry_new(void)
{
    struct metrics_registry *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return NULL;
    if (pthread_mutex_init(&reg->lock, NULL) != 0) {
        free(reg);
        return NULL;
    }
    return reg;
}

void metrics_registry_free(struct metrics_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->nfams; i++)
        metrics_family_free(reg->fams[i]);
    free(reg->fams);
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

/* A growable output buffer; on allocation failure it sets failed and ignores further output. */
struct metrics_buf {
    char *p;
    size_t len, cap;
    int failed;
};

static void metrics_buf_reserve(struct metrics_buf *b, size_t extra)
{
    if (b->failed || b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) {
        b->failed = 1;
        return;
    }
    b->p = np;
    b->cap = cap;
}

static void metrics_buf_put(struct metrics_buf *b, const char *s, size_t n)
{
    metrics_buf_reserve(b, n);
    if (b->failed)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void metrics_buf_str(struct metrics_buf *b, const char *s)
{
    metrics_buf_put(b, s, strlen(s));
}

/* Escapes as the text format requires: backslash and newline always, the double quote only
 * inside label values (@p quote). */
static void metrics_buf_escaped(struct metrics_buf *b, const char *s, int quote)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            metrics_buf_put(b, "\\\\", 2);
        else if (*p == '\n')
            metrics_buf_put(b, "\\n", 2);
        else if (quote && *p == '"')
            metrics_buf_put(b, "\\\"", 2);
        else
            metrics_buf_put(b, p, 1);
    }
}

/* Formats a sample value: integers without exponent or decimals, others in the shortest form
 * that reads back to the same double, and the text format's +Inf / -Inf / NaN. */
static void metrics_format_number(char *out, size_t outlen, double v)
{
    if (isnan(v)) {
        snprintf(out, outlen, "NaN");
    } else if (isinf(v)) {
        snprintf(out, outlen, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 9007199254740992.0) { /* 2^53: exact integers */
        snprintf(out, outlen, "%.0f", v == 0 ? 0.0 : v);        /* no "-0" */
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, outlen, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

static void metrics_buf_number(struct metrics_buf *b, double v)
{
    char num[40];
    metrics_format_number(num, sizeof(num), v);
    metrics_buf_str(b, num);
}

static char *metrics_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Creates a series (caller holds the registry lock). Returns NULL on allocation failure. */
static struct metrics_series *metrics_series_create(struct metrics_family *fam,
                                                    const char *const *values)
{
    struct metrics_series *s = calloc(1, sizeof(*s));
    struct metrics_buf lb = {0};

    if (!s)
        goto fail;
    s->fam = fam;
    if (fam->nlabels) {
        s->values = calloc(fam->nlabels, sizeof(*s->values));
        if (!s->values)
            goto fail;
        for (size_t i = 0; i < fam->nlabels; i++) {
            s->values[i] = metrics_strdup(values[i]);
            if (!s->values[i])
                goto fail;
            if (i)
                metrics_buf_put(&lb, ",", 1);
            metrics_buf_str(&lb, fam->labels[i]);
            metrics_buf_put(&lb, "=\"", 2);
            metrics_buf_escaped(&lb, values[i], 1);
            metrics_buf_put(&lb, "\"", 1);
        }
        if (lb.failed)
            goto fail;
        s->labels = lb.p;
        lb.p = NULL; /* owned by s now */
    } else {
        s->labels = metrics_strdup("");
        if (!s->labels)
            goto fail;
    }
    atomic_init(&s->value, metrics_double_to_bits(0.0));
    if (fam->type == METRICS_HISTOGRAM) {
        s->counts = calloc(fam->nbuckets + 1, sizeof(*s->counts));
        if (!s->counts)
            goto fail;
        for (size_t i = 0; i <= fam->nbuckets; i++)
            atomic_init(&s->counts[i], 0);
    }
    if (fam->nseries == fam->capseries) {
        size_t cap = fam->capseries ? fam->capseries * 2 : 8;
        struct metrics_series **ns = realloc(fam->series, cap * sizeof(*ns));
        if (!ns)
            goto fail;
        fam->series = ns;
        fam->capseries = cap;
    }
    fam->series[fam->nseries++] = s;
    return s;
fail:
    free(lb.p);
    metrics_series_free(s, fam->nlabels);
    return NULL;
}

struct metrics_family *metrics_family_new(struct metrics_registry *reg, enum metrics_type type,
                                          const char *name, const char *help,
                                          const char *const *labels, const double *buckets,
                                          size_t nbuckets)
{
    struct metrics_family *f = NULL;
    size_t nlabels = 0;

    if (!reg || !metrics_name_ok(name, 1))
        return NULL;
    if (type != METRICS_COUNTER && type != METRICS_GAUGE && type != METRICS_HISTOGRAM)
        return NULL;
    for (; labels && labels[nlabels]; nlabels++) {
        /* "le" is the histogram's own label; "__" names are reserved by Prometheus. */
        if (!metrics_name_ok(labels[nlabels], 0) || strncmp(labels[nlabels], "__", 2) == 0 ||
            (type == METRICS_HISTOGRAM && strcmp(labels[nlabels], "le") == 0))
            return NULL;
    }
    if (type == METRICS_HISTOGRAM) {
        if (nbuckets > 0 && !buckets)
            return NULL;
        for (size_t i = 0; i < nbuckets; i++)
            if (isnan(buckets[i]) || isinf(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
                return NULL;
    } else {
        nbuckets = 0;
    }

    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->nfams; i++) {
        if (strcmp(reg->fams[i]->name, name) == 0) {
            /* Registering the same metric twice hands back the first declaration when it
             * agrees; a conflicting one is refused rather than rendering a broken exposition. */
            f = reg->fams[i];
            if (f->type != type || f->nlabels != nlabels)
                f = NULL;
            goto out;
        }
    }
    f = calloc(1, sizeof(*f));
    if (!f)
        goto out;
    f->reg = reg;
    f->type = type;
    f->name = metrics_strdup(name);
    f->help = metrics_strdup(help ? help : "");
    if (!f->name || !f->help)
        goto fail;
    if (nlabels) {
        f->labels = calloc(nlabels, sizeof(*f->labels));
        if (!f->labels)
            goto fail;
        for (f->nlabels = 0; f->nlabels < nlabels; f->nlabels++) {
            f->labels[f->nlabels] = metrics_strdup(labels[f->nlabels]);
            if (!f->labels[f->nlabels])
                goto fail;
        }
    }
    if (nbuckets) {
        f->buckets = malloc(nbuckets * sizeof(*f->buckets));
        if (!f->buckets)
            goto fail;
        memcpy(f->buckets, buckets, nbuckets * sizeof(*f->buckets));
        f->nbuckets = nbuckets;
    }
    /* A family without labels has exactly one series; it exists (at 0) from the start, as
     * Prometheus expects of an unlabelled counter. */
    if (nlabels == 0 && !metrics_series_create(f, NULL))
        goto fail;
    if (reg->nfams == reg->capfams) {
        size_t cap = reg->capfams ? reg->capfams * 2 : 16;
        struct metrics_family **nf = realloc(reg->fams, cap * sizeof(*nf));
        if (!nf)
            goto fail;
        reg->fams = nf;
        reg->capfams = cap;
    }
    reg->fams[reg->nfams++] = f;
    goto out;
fail:
    metrics_family_free(f);
    f = NULL;
out:
    pthread_mutex_unlock(&reg->lock);
    return f;
}

struct metrics_series *metrics_series_get(struct metrics_family *fam, const char *const *values)
{
    struct metrics_series *s = NULL;

    if (!fam)
        return NULL;
    if (fam->nlabels && !values)
        return NULL;
    for (size_t i = 0; i < fam->nlabels; i++)
        if (!values[i])
            return NULL;

    pthread_mutex_lock(&fam->reg->lock);
    for (size_t i = 0; i < fam->nseries; i++) {
        size_t j = 0;
        while (j < fam->nlabels && strcmp(fam->series[i]->values[j], values[j]) == 0)
            j++;
        if (j == fam->nlabels) {
            s = fam->series[i];
            goto out;
        }
    }
    s = metrics_series_create(fam, values);
out:
    pthread_mutex_unlock(&fam->reg->lock);
    return s;
}

struct metrics_series *metrics_series0(struct metrics_family *fam)
{
    return metrics_series_get(fam, NULL);
}

struct metrics_series *metrics_series1(struct metrics_family *fam, const char *v1)
{
    const char *v[] = {v1, NULL};
    if (fam && fam->nlabels != 1)
        return NULL;
    return metrics_series_get(fam, v);
}

struct metrics_series *metrics_series2(struct metrics_family *fam, const char *v1, const char *v2)
{
    const char *v[] = {v1, v2, NULL};
    if (fam && fam->nlabels != 2)
        return NULL;
    return metrics_series_get(fam, v);
}

void metrics_inc(struct metrics_series *s)
{
    metrics_add(s, 1.0);
}

void metrics_add(struct metrics_series *s, double v)
{
    if (!s || s->fam->type == METRICS_HISTOGRAM)
        return;
    /* Counters only go up; a negative or NaN add is a caller bug that would break rate(). */
    if (s->fam->type == METRICS_COUNTER && !(v >= 0))
        return;
    metrics_atomic_add(&s->value, v);
}

void metrics_set(struct metrics_series *s, double v)
{
    if (!s || s->fam->type != METRICS_GAUGE)
        return;
    atomic_store_explicit(&s->value, metrics_double_to_bits(v), memory_order_relaxed);
}

void metrics_observe(struct metrics_series *s, double v)
{
    size_t i;

    if (!s || s->fam->type != METRICS_HISTOGRAM)
        return;
    /* Bucket i counts le=buckets[i] (upper bound inclusive); NaN falls through to +Inf. */
    for (i = 0; i < s->fam->nbuckets; i++)
        if (v <= s->fam->buckets[i])
            break;
    atomic_fetch_add_explicit(&s->counts[i], 1, memory_order_relaxed);
    metrics_atomic_add(&s->value, v);
}

double metrics_value(const struct metrics_series *s)
{
    if (!s)
        return 0;
    if (s->fam->type == METRICS_HISTOGRAM) {
        /* For a histogram: the number of observations. */
        uint64_t n = 0;
        for (size_t i = 0; i <= s->fam->nbuckets; i++)
            n += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
        return (double)n;
    }
    return metrics_bits_to_double(atomic_load_explicit(&s->value, memory_order_relaxed));
}

/* name{labels[,extra]} value\n, braces omitted when there is no label at all. */
static void metrics_render_sample(struct metrics_buf *b, const char *name, const char *suffix,
                                  const char *labels, const char *extra, double v)
{
    metrics_buf_str(b, name);
    metrics_buf_str(b, suffix);
    if (*labels || extra) {
        metrics_buf_put(b, "{", 1);
        metrics_buf_str(b, labels);
        if (extra) {
            if (*labels)
                metrics_buf_put(b, ",", 1);
            metrics_buf_str(b, extra);
        }
        metrics_buf_put(b, "}", 1);
    }
    metrics_buf_put(b, " ", 1);
    metrics_buf_number(b, v);
    metrics_buf_put(b, "\n", 1);
}

static void metrics_render_histogram(struct metrics_buf *b, const struct metrics_family *f,
                                     const struct metrics_series *s)
{
    uint64_t cum = 0;
    char le[64];
    char num[40];

    /* Buckets are stored apart and summed here so that the exposition is cumulative and the
     * +Inf bucket always equals _count within one render. */
    for (size_t i = 0; i <= f->nbuckets; i++) {
        cum += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
        if (i < f->nbuckets)
            metrics_format_number(num, sizeof(num), f->buckets[i]);
        else
            snprintf(num, sizeof(num), "+Inf");
        snprintf(le, sizeof(le), "le=\"%s\"", num);
        metrics_render_sample(b, f->name, "_bucket", s->labels, le, (double)cum);
    }
    metrics_render_sample(
        b, f->name, "_sum", s->labels, NULL,
        metrics_bits_to_double(atomic_load_explicit(&s->value, memory_order_relaxed)));
    metrics_render_sample(b, f->name, "_count", s->labels, NULL, (double)cum);
}

char *metrics_render(struct metrics_registry *reg, size_t *len)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    struct metrics_buf b = {0};

    if (len)
        *len = 0;
    if (!reg)
        return NULL;
    metrics_buf_reserve(&b, 0); /* an empty registry still yields "" */
    if (!b.failed)
        b.p[0] = '\0';
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->nfams; i++) {
        const struct metrics_family *f = reg->fams[i];
        metrics_buf_str(&b, "# HELP ");
        metrics_buf_str(&b, f->name);
        metrics_buf_put(&b, " ", 1);
        metrics_buf_escaped(&b, f->help, 0);
        metrics_buf_str(&b, "\n# TYPE ");
        metrics_buf_str(&b, f->name);
        metrics_buf_put(&b, " ", 1);
        metrics_buf_str(&b, type_names[f->type]);
        metrics_buf_put(&b, "\n", 1);
        for (size_t j = 0; j < f->nseries; j++) {
            const struct metrics_series *s = f->series[j];
            if (f->type == METRICS_HISTOGRAM)
                metrics_render_histogram(&b, f, s);
            else
                metrics_render_sample(&b, f->name, "", s->labels, NULL, metrics_value(s));
        }
    }
    pthread_mutex_unlock(&reg->lock);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}
