/* pm-deliver through Canvas outages: 503 + Retry-After, hangs, OAuth down, tokens expiring. */
#include "deliver_it.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * One pm-deliver (webhook channel, PM_HTTP_TIMEOUT_MS=1000, retries from 200 ms up to 2 s,
 * PM_RETRY_DEADLINE_MS=120000: far above every outage here) against pm-sandbox issuing tokens
 * that live 62 s: with pm-deliver's 60 s refresh margin each token is renewed 2 s after it was
 * fetched, long before Canvas would reject it. Phases, each with its own patients:
 *
 *   warm-up      10 messages, no fault.
 *   503          Canvas FHIR answers 503 with Retry-After: 3 to everything for 15 s (an hour-long
 *                outage scaled down to keep CI fast), then recovers: 20 messages.
 *   hang         Canvas FHIR holds every request 2.5 s (past the 1 s timeout) for 6 s: 20.
 *   oauth-down   the token endpoint answers 503 for 10 s while the current token is still
 *                valid (it expires 62 s after issue): 20 messages, produced during the outage.
 *   expire-down  every token is revoked (POST /_sandbox/tokens/expire) and the token endpoint
 *                is down for 10 s: 20 messages.
 *   expire       every token is revoked with the endpoint up, then a burst of 20 messages.
 *
 * What users notice and the test asserts: every message reaches the webhook once the party is
 * back, none is dead-lettered, Retry-After is honoured, one token serves every request until
 * its renewal (no token request per FHIR request, no 401 from an expired token), one token
 * request per revocation, and deliveries go on while the OAuth endpoint alone is down.
 */

#define NPAT     70
#define PER      2
#define WAIT_MS  60000
#define TTL_S    62
#define RENEW_MS ((TTL_S - 60) * 1000)

static struct harness *h;

/* The figures of one phase, printed at the end for docs/reliability.md. */
struct phase {
    const char *name;
    int messages, delivered, duplicates;
    long long outage_ms, recovery_ms; /* recovery: fault cleared -> last message delivered */
    int fhir_requests, fhir_401, token_ok, token_failed;
    int during; /* delivered while the fault was on */
};

static struct phase phases[6];
static int nphases;

/* Counts requests of @p target after @p since with @p status (0: any) and arrival in
 * [from_ms, to_ms] (-1: unbounded). */
static int count_reqs(const char *target, long long since, long status, long long from_ms,
                      long long to_ms)
{
    char q[64];
    json_t *all, *r;
    size_t k;
    int n = 0;

    snprintf(q, sizeof(q), "target=%s", target);
    all = dit_sb_requests(q, since);
    json_array_foreach(all, k, r)
    {
        long long t = dit_req_ms(r);
        if (status && json_integer_value(json_object_get(r, "status")) != status)
            continue;
        if ((from_ms >= 0 && t < from_ms) || (to_ms >= 0 && t > to_ms))
            continue;
        n++;
    }
    json_decref(all);
    return n;
}

/* Successful token requests in the renewal period that starts with the first one at or after
 * @p from_ms: 1 when one token served everyone until it was due for renewal. */
static int tokens_for_one_expiry(long long since, long long from_ms)
{
    json_t *all = dit_sb_requests("target=token", since), *r;
    size_t k;
    long long first = -1;
    int n = 0;

    json_array_foreach(all, k, r)
    {
        long long t = dit_req_ms(r);
        if (json_integer_value(json_object_get(r, "status")) != 200 || t < from_ms)
            continue;
        if (first < 0)
            first = t;
        if (t < first + RENEW_MS - 100)
            n++;
    }
    json_decref(all);
    return n;
}

/* Deliveries of patients [p0, p0+np) x messages [0, PER) that arrived in [from, to]. */
static int delivered_between(long long since, int p0, int np, long long from, long long to)
{
    json_t *all = dit_sb_requests("target=webhook", since), *r;
    size_t k;
    int n = 0;

    json_array_foreach(all, k, r)
    {
        json_t *b = dit_req_body(r);
        long long t = dit_req_ms(r);
        int p, i;
        if (json_integer_value(json_object_get(r, "status")) == 200 &&
            dit_fleet_parse(json_string_value(json_object_get(b, "communication_id")), &p, &i) ==
                0 &&
            p >= p0 && p < p0 + np && t >= from && t <= to)
            n++;
        json_decref(b);
    }
    json_decref(all);
    return n;
}

/* Waits for the block, tallies it and fills the common figures of @p ph. */
static void phase_finish(struct phase *ph, long long mark, int p0, int np, int ni,
                         long long cleared_at)
{
    struct dit_tally t;
    json_t *ids;
    long long done_at = dit_fleet_wait(mark, p0, np, 0, ni, WAIT_MS);

    ids = dit_webhook_ids(mark);
    dit_fleet_tally(ids, p0, np, 0, ni, &t, ph->name);
    json_decref(ids);
    ph->messages = t.messages;
    ph->delivered = t.delivered;
    ph->duplicates = t.duplicates;
    /* 0 when the last one was delivered before the fault was cleared. */
    ph->recovery_ms = done_at > 0 && cleared_at > 0 ? done_at - cleared_at : -1;
    if (ph->recovery_ms < 0 && done_at > 0 && cleared_at > 0)
        ph->recovery_ms = 0;
    ph->fhir_requests = count_reqs("fhir", mark, 0, -1, -1);
    ph->fhir_401 = count_reqs("fhir", mark, 401, -1, -1);
    ph->token_ok = count_reqs("token", mark, 200, -1, -1);
    ph->token_failed = count_reqs("token", mark, 0, -1, -1) - ph->token_ok;
}

static struct phase *phase_new(const char *name)
{
    struct phase *ph = &phases[nphases++];
    memset(ph, 0, sizeof(*ph));
    ph->name = name;
    return ph;
}

/* Sleeps until the wall clock (dit_wall_ms) reaches @p until_wall. */
static void hold_until(long long until_wall)
{
    long long now;
    while ((now = dit_wall_ms()) < until_wall)
        harness_sleep_ms(until_wall - now > 200 ? 200 : (long)(until_wall - now));
}

/* ---- the phases ---- */

static void phase_warmup(void)
{
    struct phase *ph = phase_new("warm-up");
    long long mark = dit_sb_mark();
    dit_fleet_produce(0, 10, 0, 1);
    phase_finish(ph, mark, 0, 10, 1, -1);
}

/* Canvas answers 503 + Retry-After: 3 for 15 s. */
static void phase_503(void)
{
    struct phase *ph = phase_new("503+Retry-After");
    long long mark = dit_sb_mark(), start, cleared;
    json_t *all, *r;
    size_t k;
    int too_soon = 0, spaced = 0;

    dit_sb_ok("POST", "/_sandbox/faults",
              "{\"target\": \"fhir\", \"status\": 503, \"retry_after\": \"3\", \"count\": -1}");
    start = dit_wall_ms();
    dit_fleet_produce(10, 10, 0, PER);
    hold_until(start + 15000);
    dit_sb_ok("DELETE", "/_sandbox/faults", NULL);
    cleared = dit_wall_ms();
    ph->outage_ms = cleared - start;
    ph->during = delivered_between(mark, 10, 10, 0, cleared);
    H_CHECKF(h, ph->during == 0, "503: %d messages delivered while every read failed", ph->during);
    phase_finish(ph, mark, 10, 10, PER, cleared);

    /* Retry-After honoured: the attempts of one Communication are 3 s apart, although the
     * backoff alone would retry within 2 s. */
    all = dit_sb_requests("target=fhir", mark);
    for (int p = 10; p < 20; p++) {
        for (int i = 0; i < PER; i++) {
            char cid[40], path[80];
            long long last = -1;
            dit_fleet_comm(p, i, cid, sizeof(cid));
            snprintf(path, sizeof(path), "/fhir/Communication/%s", cid);
            json_array_foreach(all, k, r)
            {
                const char *rp = json_string_value(json_object_get(r, "path"));
                long long t = dit_req_ms(r);
                if (!rp || strcmp(rp, path) != 0 || t > cleared)
                    continue;
                if (last >= 0) {
                    spaced++;
                    if (t - last < 2900 && too_soon++ < 3)
                        H_FAIL(h, "503: %s retried %lld ms after a Retry-After: 3 answer", cid,
                               t - last);
                }
                last = t;
            }
        }
    }
    json_decref(all);
    H_CHECKF(h, spaced > 0, "503: no message was retried during the outage");
}

/* Canvas holds every request 2.5 s, past pm-deliver's 1 s timeout, for 6 s. */
static void phase_hang(struct harness_proc *deliver)
{
    struct phase *ph = phase_new("hang past timeout");
    long long mark = dit_sb_mark(), start, cleared;
    char *log;

    dit_sb_ok("POST", "/_sandbox/faults",
              "{\"target\": \"fhir\", \"hang_ms\": 2500, \"count\": -1}");
    start = dit_wall_ms();
    dit_fleet_produce(20, 10, 0, PER);
    hold_until(start + 6000);
    dit_sb_ok("DELETE", "/_sandbox/faults", NULL);
    cleared = dit_wall_ms();
    ph->outage_ms = cleared - start;
    ph->during = delivered_between(mark, 20, 10, 0, cleared);
    phase_finish(ph, mark, 20, 10, PER, cleared);
    log = harness_proc_stderr(deliver);
    H_CHECKF(h, log && strstr(log, "timed out"), "hang: pm-deliver logged no timeout");
    free(log);
}

/* The token endpoint is down for 10 s; the current token stays valid for a minute. */
static void phase_oauth_down(void)
{
    struct phase *ph = phase_new("OAuth down, token valid");
    long long mark = dit_sb_mark(), start, cleared, produced[20];
    json_t *all, *r;
    size_t k;
    int late = 0;

    dit_sb_ok("POST", "/_sandbox/faults", "{\"target\": \"token\", \"count\": -1}");
    start = dit_wall_ms();
    /* A message every 500 ms while the endpoint is down. */
    for (int n = 0; n < 20; n++) {
        hold_until(start + 500LL * n);
        produced[n] = dit_wall_ms();
        dit_fleet_produce(30 + n % 10, 1, n / 10, 1);
    }
    hold_until(start + 10000);
    dit_sb_ok("DELETE", "/_sandbox/faults", NULL);
    cleared = dit_wall_ms();
    ph->outage_ms = cleared - start;
    ph->during = delivered_between(mark, 30, 10, 0, cleared);
    phase_finish(ph, mark, 30, 10, PER, cleared);

    /* The token in hand still works for a minute: Canvas's FHIR API is up, so messages are
     * delivered as they come, not when the token endpoint is back. */
    all = dit_sb_requests("target=webhook", mark);
    for (int n = 0; n < 20; n++) {
        char cid[40];
        long long first = -1;
        dit_fleet_comm(30 + n % 10, n / 10, cid, sizeof(cid));
        json_array_foreach(all, k, r)
        {
            if (json_integer_value(json_object_get(r, "status")) == 200 &&
                dit_req_header(r, "webhook-id") && !strcmp(dit_req_header(r, "webhook-id"), cid)) {
                first = dit_req_ms(r);
                break;
            }
        }
        if (first < 0 || first - produced[n] > 3000) {
            if (late++ < 3)
                H_FAIL(h,
                       "OAuth down: message %s produced %lld ms into the outage was delivered "
                       "%lld ms later, with a valid token in hand",
                       cid, produced[n] - start, first < 0 ? -1 : first - produced[n]);
        }
    }
    json_decref(all);
}

/* Every token revoked and the token endpoint down for 10 s. */
static void phase_expire_down(void)
{
    struct phase *ph = phase_new("tokens revoked, OAuth down");
    long long mark = dit_sb_mark(), start, cleared;
    int after;

    dit_sb_ok("POST", "/_sandbox/tokens/expire", NULL);
    dit_sb_ok("POST", "/_sandbox/faults", "{\"target\": \"token\", \"count\": -1}");
    start = dit_wall_ms();
    dit_fleet_produce(40, 10, 0, PER);
    hold_until(start + 10000);
    dit_sb_ok("DELETE", "/_sandbox/faults", NULL);
    cleared = dit_wall_ms();
    ph->outage_ms = cleared - start;
    ph->during = delivered_between(mark, 40, 10, 0, cleared);
    H_CHECKF(h, ph->during == 0, "revoked: %d messages delivered without a valid token",
             ph->during);
    phase_finish(ph, mark, 40, 10, PER, cleared);
    /* Once the endpoint is back, one token request serves everyone waiting. */
    after = tokens_for_one_expiry(mark, cleared);
    H_CHECKF(h, after == 1,
             "revoked: %d tokens fetched for one revocation once the endpoint was back", after);
}

/* Every token revoked, endpoint up, then a burst. */
static void phase_expire(void)
{
    struct phase *ph = phase_new("tokens revoked");
    long long mark = dit_sb_mark(), start;
    int in_window;

    dit_sb_ok("POST", "/_sandbox/tokens/expire", NULL);
    start = dit_wall_ms();
    dit_fleet_produce(50, 20, 0, 1);
    phase_finish(ph, mark, 50, 20, 1, start);
    in_window = tokens_for_one_expiry(mark, start);
    H_CHECKF(h, ph->fhir_401 > 0, "revoked: no request met the revoked token");
    H_CHECKF(h, in_window == 1, "revoked: %d tokens fetched for one revocation (%d 401 answers)",
             in_window, ph->fhir_401);
}

/* Over the whole run: tokens were renewed before they expired (no 401 outside the revocation
 * phases) and never twice for one lifetime. */
static void check_tokens(long long since, long long rev1_from, long long rev1_to,
                         long long rev2_from, long long rev2_to)
{
    json_t *all = dit_sb_requests("target=token", since), *fhir, *r;
    size_t k;
    long long prev = -1;
    int renewals = 0, bad = 0, stray_401 = 0;

    json_array_foreach(all, k, r)
    {
        long long t = dit_req_ms(r);
        int forced = (t >= rev1_from && t <= rev1_to) || (t >= rev2_from && t <= rev2_to);
        if (json_integer_value(json_object_get(r, "status")) != 200)
            continue;
        if (prev >= 0 && !forced) {
            renewals++;
            if (t - prev < RENEW_MS - 200 && bad++ < 3)
                H_FAIL(h,
                       "a token was fetched %lld ms after the previous one (renewal is due "
                       "after %d ms)",
                       t - prev, RENEW_MS);
        }
        prev = t;
    }
    json_decref(all);
    fhir = dit_sb_requests("target=fhir", since);
    json_array_foreach(fhir, k, r)
    {
        long long t = dit_req_ms(r);
        if (json_integer_value(json_object_get(r, "status")) == 401 &&
            !((t >= rev1_from && t <= rev1_to) || (t >= rev2_from && t <= rev2_to)))
            stray_401++;
    }
    json_decref(fhir);
    H_CHECKF(h, renewals >= 3, "only %d tokens renewed ahead of expiry in the run", renewals);
    H_CHECKF(h, stray_401 == 0, "%d FHIR requests met an expired token outside the revocations",
             stray_401);
    fprintf(stderr, "deliver-faults-canvas: %d tokens renewed before expiry, %d stray 401s\n",
            renewals, stray_401);
}

int main(void)
{
    const char *sb_env[] = {"PM_SANDBOX_TOKEN_TTL_S=62", NULL};
    const char *env[] = {"PM_DELIVER_CHANNELS=webhook",
                         "PM_DELIVER_CONTACT_CATEGORIES",
                         "PM_DELIVER_MAX_IN_FLIGHT=8",
                         "PM_HTTP_TIMEOUT_MS=1000",
                         "PM_RETRY_BASE_MS=200",
                         "PM_RETRY_MAX_BACKOFF_MS=2000",
                         "PM_RETRY_DEADLINE_MS=120000",
                         "PM_LOG_LEVEL=info",
                         NULL};
    struct harness_proc *deliver;
    struct harness_kafka_records dlq = {0};
    char base[128], err[256];
    long long mark0, r1_from, r1_to, r2_from, r2_to;
    json_t *map;

    h = harness_init("deliver-faults-canvas");
    if (dit_start_env(h, 4, sb_env) != 0)
        return harness_finish(h);
    dit_fleet_seed(NPAT, PER);
    mark0 = dit_sb_mark();
    deliver = dit_deliver_start("deliver", env, base, sizeof(base), 30000);
    if (!deliver)
        return harness_finish(h);

    phase_warmup();
    phase_503();
    phase_hang(deliver);
    phase_oauth_down();
    r1_from = dit_wall_ms();
    phase_expire_down();
    r1_to = dit_wall_ms();
    r2_from = dit_wall_ms();
    phase_expire();
    r2_to = dit_wall_ms();
    check_tokens(mark0, r1_from, r1_to, r2_from, r2_to);

    /* Nothing waited into the DLQ: the deadline (120 s) is far above every outage. */
    H_CHECK(h, harness_kafka_read(dit_bootstrap, DIT_T_DLQ, 0, 10000, &dlq, err, sizeof(err)) == 0);
    H_CHECKF(h, dlq.n == 0, "%zu records on %s", dlq.n, DIT_T_DLQ);
    harness_kafka_records_free(&dlq);
    map = dit_results();
    dit_fleet_check_results(map, 0, 10, 0, 1, "warm-up");
    dit_fleet_check_results(map, 10, 40, 0, PER, "outages");
    dit_fleet_check_results(map, 50, 20, 0, 1, "revoked");
    json_decref(map);

    for (int i = 0; i < nphases; i++) {
        const struct phase *ph = &phases[i];
        fprintf(stderr,
                "deliver-faults-canvas: %-28s messages %d, delivered %d (%d during the fault), "
                "duplicates %d, DLQ 0, outage %lld ms, recovery %lld ms, FHIR requests %d "
                "(%d x 401), token requests %d ok + %d failed\n",
                ph->name, ph->messages, ph->delivered, ph->during, ph->duplicates, ph->outage_ms,
                ph->recovery_ms, ph->fhir_requests, ph->fhir_401, ph->token_ok, ph->token_failed);
    }
    H_CHECKF(h, harness_proc_stop(deliver, 20000) == 0, "pm-deliver did not exit 0 on SIGTERM");
    return harness_finish(h);
}
