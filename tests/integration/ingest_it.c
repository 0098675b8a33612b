/* Shared steps of the pm-ingest fault tests: processes, signed client threads, exactly-once check.
 */
#include "ingest_it.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- results ---- */

void iit_log_init(struct iit_log *log)
{
    memset(log, 0, sizeof(*log));
    pthread_mutex_init(&log->lock, NULL);
}

void iit_log_add(struct iit_log *log, const struct iit_result *r)
{
    pthread_mutex_lock(&log->lock);
    if (log->n == log->cap) {
        size_t cap = log->cap ? log->cap * 2 : 256;
        struct iit_result *nv = realloc(log->v, cap * sizeof(*nv));
        if (!nv) {
            pthread_mutex_unlock(&log->lock);
            return; /* the counts will not add up: the check reports it */
        }
        log->v = nv;
        log->cap = cap;
    }
    log->v[log->n++] = *r;
    pthread_mutex_unlock(&log->lock);
}

void iit_log_free(struct iit_log *log)
{
    free(log->v);
    pthread_mutex_destroy(&log->lock);
    memset(log, 0, sizeof(*log));
}

/* ---- one client ---- */

struct iit_answer {
    struct iit_result *r;
    char *body;
    size_t len;
};

static size_t iit_on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct iit_answer *a = userp;
    size_t n = size * nmemb;
    char *nb = realloc(a->body, a->len + n + 1);
    if (!nb)
        return 0;
    memcpy(nb + a->len, data, n);
    a->body = nb;
    a->len += n;
    a->body[a->len] = '\0';
    return n;
}

static size_t iit_on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct iit_answer *a = userp;
    size_t n = size * nmemb;

    if (n >= 5 && !strncmp(data, "HTTP/", 5)) { /* a new response starts */
        a->r->retry_after = 0;
        a->r->conn_close = 0;
    } else if (n >= 12 && !strncasecmp(data, "Retry-After:", 12)) {
        a->r->retry_after = 1;
    } else if (n >= 11 && !strncasecmp(data, "Connection:", 11)) {
        const char *v = data + 11;
        while (*v == ' ')
            v++;
        a->r->conn_close = (size_t)(data + n - v) >= 5 && !strncasecmp(v, "close", 5);
    }
    return n;
}

int iit_client_init(struct iit_client *c, const char *base)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->base, sizeof(c->base), "%s", base);
    c->curl = curl_easy_init();
    return c->curl ? 0 : -1;
}

void iit_client_free(struct iit_client *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    c->curl = NULL;
}

void iit_post(struct iit_client *c, const char *path, const char *id, const char *body, size_t len,
              long timeout_ms, struct iit_result *out)
{
    struct harness_webhook_headers wh;
    struct curl_slist *hl = NULL, *nl;
    struct iit_answer a = {out, NULL, 0};
    const char *lines[5];
    char url[192], err[128];
    CURL *e = c->curl;
    CURLcode cc;
    long conns = 0;

    snprintf(out->id, sizeof(out->id), "%s", id);
    out->status = 0;
    out->curl_code = 0;
    out->duplicate = 0;
    out->type[0] = '\0';
    out->detail[0] = '\0';
    out->t_start = harness_now_ms();
    if (harness_webhook_sign(IIT_SECRET, id, (long long)time(NULL), body, len, &wh, err,
                             sizeof(err)) != 0) {
        out->curl_code = -1;
        out->t_end = harness_now_ms();
        return;
    }
    lines[0] = "Content-Type: application/json";
    lines[1] = wh.id;
    lines[2] = wh.timestamp;
    lines[3] = wh.signature;
    lines[4] = "Expect:";
    for (int i = 0; i < 5; i++) {
        nl = curl_slist_append(hl, lines[i]);
        if (!nl)
            break;
        hl = nl;
    }
    snprintf(url, sizeof(url), "%s%s", c->base, path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 5000 ? timeout_ms : 5000L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, iit_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, iit_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &a);
    cc = curl_easy_perform(e);
    out->t_end = harness_now_ms();
    out->curl_code = (int)cc;
    curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &conns);
    out->new_conns = conns;
    if (cc == CURLE_OK) {
        json_t *j = a.body ? json_loadb(a.body, a.len, 0, NULL) : NULL;
        const char *type = json_string_value(json_object_get(j, "type"));
        const char *detail = json_string_value(json_object_get(j, "detail"));
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &out->status);
        out->duplicate = json_is_true(json_object_get(j, "duplicate"));
        if (type && !strncmp(type, "urn:pm:problem:", 15))
            type += 15;
        snprintf(out->type, sizeof(out->type), "%s", type ? type : "");
        snprintf(out->detail, sizeof(out->detail), "%s", detail ? detail : "");
        json_decref(j);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hl);
    free(a.body);
}

void iit_post_message(struct iit_client *c, const char *id, int key, int seq, long timeout_ms,
                      struct iit_result *out)
{
    char body[256];
    int n =
        snprintf(body, sizeof(body),
                 "{\"communication_id\":\"%s\",\"patient_id\":\"pt%d\",\"change\":{\"seq\":%d}}",
                 id, key, seq);
    iit_post(c, "/v1/canvas/messages", id, body, (size_t)n, timeout_ms, out);
    out->key = key;
    out->seq = seq;
}

/* ---- paced load ---- */

struct iit_thread_arg {
    struct iit_load *l;
    int index;
};

static void *iit_load_main(void *arg)
{
    struct iit_thread_arg *ta = arg;
    struct iit_load *l = ta->l;
    struct iit_client c;
    int k = ta->index;
    double period_ms = 1000.0 * l->threads / l->rate; /* per thread */
    long long t0 = harness_now_ms() + (long long)(period_ms * k / l->threads);
    int keys_per_thread = l->keys > l->threads ? l->keys / l->threads : 1;
    int seqs[64] = {0};

    free(ta);
    if (iit_client_init(&c, l->base) != 0)
        return NULL;
    for (long i = 0; !atomic_load(&l->stop); i++) {
        struct iit_result r;
        char id[64];
        long long due = t0 + (long long)(period_ms * (double)i);
        int slot = (int)(i % keys_per_thread);
        int key = k * keys_per_thread + slot;

        while (!atomic_load(&l->stop) && harness_now_ms() < due)
            harness_sleep_ms(due - harness_now_ms() > 20 ? 20 : due - harness_now_ms());
        if (atomic_load(&l->stop))
            break;
        memset(&r, 0, sizeof(r));
        snprintf(id, sizeof(id), "%s-%d-%ld", l->tag, k, i);
        iit_post_message(&c, id, key, seqs[slot % 64]++, l->timeout_ms, &r);
        iit_log_add(&l->log, &r);
    }
    iit_client_free(&c);
    return NULL;
}

int iit_load_start(struct iit_load *l)
{
    iit_log_init(&l->log);
    atomic_init(&l->stop, 0);
    l->started = 0;
    if (l->threads > 32)
        l->threads = 32;
    for (int i = 0; i < l->threads; i++) {
        struct iit_thread_arg *ta = malloc(sizeof(*ta));
        if (!ta)
            break;
        ta->l = l;
        ta->index = i;
        if (pthread_create(&l->tid[i], NULL, iit_load_main, ta) != 0) {
            free(ta);
            break;
        }
        l->started++;
    }
    return l->started ? 0 : -1;
}

void iit_load_stop(struct iit_load *l)
{
    atomic_store(&l->stop, 1);
    for (int i = 0; i < l->started; i++)
        pthread_join(l->tid[i], NULL);
    l->started = 0;
}

/* ---- the topic ---- */

static int iit_rec_cmp(const void *a, const void *b)
{
    const struct iit_rec *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    if (c)
        return c;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int iit_topic_read(struct harness *h, const char *bootstrap, const char *topic,
                   struct iit_topic *out)
{
    struct harness_kafka_records recs = {0};
    char err[256];
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (!H_CHECKF(h, harness_kafka_read(bootstrap, topic, 0, 30000, &recs, err, sizeof(err)) == 0,
                  "reading %s: %s", topic, err))
        rc = -1;
    out->v = calloc(recs.n ? recs.n : 1, sizeof(*out->v));
    if (!out->v) {
        harness_kafka_records_free(&recs);
        return -1;
    }
    for (size_t i = 0; i < recs.n; i++) {
        struct iit_rec *r = &out->v[out->n++];
        json_t *ce =
            json_loadb(recs.v[i].value ? recs.v[i].value : "", recs.v[i].value_len, 0, NULL);
        json_t *seq =
            json_object_get(json_object_get(json_object_get(ce, "data"), "change"), "seq");
        const char *id = json_string_value(json_object_get(ce, "id"));
        snprintf(r->id, sizeof(r->id), "%s", id ? id : "");
        snprintf(r->key, sizeof(r->key), "%s", recs.v[i].key ? recs.v[i].key : "");
        r->seq = json_is_integer(seq) ? (int)json_integer_value(seq) : -1;
        r->partition = recs.v[i].partition;
        r->offset = recs.v[i].offset;
        json_decref(ce);
    }
    harness_kafka_records_free(&recs);
    qsort(out->v, out->n, sizeof(*out->v), iit_rec_cmp);
    return rc;
}

void iit_topic_free(struct iit_topic *t)
{
    free(t->v);
    memset(t, 0, sizeof(*t));
}

/* Index of the first record with @p id, or t->n. */
static size_t iit_topic_find(const struct iit_topic *t, const char *id)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(t->v[mid].id, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int iit_topic_count(const struct iit_topic *t, const char *id)
{
    int n = 0;
    for (size_t i = iit_topic_find(t, id); i < t->n && !strcmp(t->v[i].id, id); i++)
        n++;
    return n;
}

/* ---- the exactly-once check ---- */

static int iit_result_cmp(const void *a, const void *b)
{
    return strcmp(((const struct iit_result *)a)->id, ((const struct iit_result *)b)->id);
}

void iit_check_delivery(struct harness *h, const struct iit_log *log, const struct iit_topic *t,
                        const char *tag, struct iit_summary *s)
{
    size_t taglen = strlen(tag), n = 0;
    struct iit_result *v = calloc(log->n ? log->n : 1, sizeof(*v));
    int reported = 0;

    memset(s, 0, sizeof(*s));
    if (!H_CHECK(h, v != NULL))
        return;
    for (size_t i = 0; i < log->n; i++)
        if (!strncmp(log->v[i].id, tag, taglen))
            v[n++] = log->v[i];
    qsort(v, n, sizeof(*v), iit_result_cmp);

    /* Every attempt of one id together: a retry of a 503 reuses its id. */
    for (size_t i = 0; i < n;) {
        size_t j = i;
        int acc = 0, dups = 0, maybe = 0, refused = 0, count;
        for (; j < n && !strcmp(v[j].id, v[i].id); j++) {
            s->requests++;
            if (v[j].status == 202 && v[j].duplicate) {
                dups++;
                s->duplicates++;
            } else if (v[j].status == 202) {
                acc++;
                s->accepted++;
            } else if (v[j].status == 503) {
                maybe++;
                s->unavailable++;
            } else if (v[j].status == 0) {
                maybe++;
                s->no_answer++;
            } else {
                refused++;
                s->other++;
            }
        }
        count = iit_topic_count(t, v[i].id);
        if (acc > 0 && count == 0) {
            s->lost++;
            if (reported++ < 20)
                H_FAIL(h, "id %s was answered 202 but is not on the topic", v[i].id);
        }
        H_CHECKF(h, acc <= 1, "id %s was answered 202 (not as a duplicate) %d times", v[i].id, acc);
        if (count > (acc ? 1 : 0) + maybe) {
            s->extra += count - ((acc ? 1 : 0) + maybe);
            if (reported++ < 20)
                H_FAIL(h,
                       "id %s is on the topic %d times (202 x%d, 503/no answer x%d, other "
                       "x%d): more than its answers allow",
                       v[i].id, count, acc, maybe, refused);
        }
        if (!acc && count > 0)
            s->late += count;
        i = j;
    }
    for (size_t i = 0; i < t->n; i++) {
        struct iit_result key;
        if (strncmp(t->v[i].id, tag, taglen) != 0)
            continue;
        snprintf(key.id, sizeof(key.id), "%s", t->v[i].id);
        if (!bsearch(&key, v, n, sizeof(*v), iit_result_cmp)) {
            s->unknown++;
            if (reported++ < 20)
                H_FAIL(h, "record %s[%d]@%lld has id %s, which no request carried", IIT_TOPIC,
                       (int)t->v[i].partition, (long long)t->v[i].offset, t->v[i].id);
        }
    }
    H_CHECKF(h, (size_t)s->requests == n, "log holds %zu results", n);
    free(v);
}

void iit_summary_print(const char *what, const struct iit_summary *s)
{
    fprintf(stderr,
            "FIGURES %s: requests %d, 202 %d, 202-duplicate %d, 503 %d, other %d, no answer %d; "
            "lost %d, extra %d, late records of 503'd ids %d, unknown %d\n",
            what, s->requests, s->accepted, s->duplicates, s->unavailable, s->other, s->no_answer,
            s->lost, s->extra, s->late, s->unknown);
}

/* ---- processes ---- */

struct harness_proc *iit_ingest_start(struct harness *h, const char *bootstrap, int port,
                                      const char *const *extra_env)
{
    char listen[64], brokers[600], url[128];
    const char *defaults[] = {listen, brokers, "PM_INGEST_WEBHOOK_SECRETS=" IIT_SECRET,
                              "PM_LOG_LEVEL=info", NULL};
    const char *env[48];
    const char *argv[] = {"pm-ingest", NULL};
    struct harness_proc *p;
    size_t n = 0;

    snprintf(listen, sizeof(listen), "PM_INGEST_LISTEN=127.0.0.1:%d", port);
    snprintf(brokers, sizeof(brokers), "PM_KAFKA_BROKERS=%s", bootstrap);
    for (size_t i = 0; defaults[i]; i++) {
        size_t nl = strcspn(defaults[i], "=");
        int overridden = 0;
        for (size_t k = 0; extra_env && extra_env[k]; k++)
            overridden |=
                strcspn(extra_env[k], "=") == nl && !strncmp(extra_env[k], defaults[i], nl);
        if (!overridden)
            env[n++] = defaults[i];
    }
    for (size_t k = 0; extra_env && extra_env[k] && n < sizeof(env) / sizeof(env[0]) - 1; k++)
        env[n++] = extra_env[k];
    env[n] = NULL;
    p = harness_proc_start(h, "ingest", argv, env);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", port);
    if (!p || !H_CHECKF(h, harness_http_wait(url, 200, 20000) == 0, "pm-ingest not ready"))
        return NULL;
    return p;
}

long iit_proc_kb(int pid, const char *field)
{
    char path[64], line[256];
    size_t fl = strlen(field);
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, field, fl) && line[fl] == ':') {
            kb = strtol(line + fl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}
