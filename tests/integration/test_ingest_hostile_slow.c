/* pm-ingest hostile clients: idle connections and slowloris; others served, the slow ones cut. */
#include "ingest_it.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TIMEOUT_S 3   /* PM_INGEST_CONNECTION_TIMEOUT_S */
#define IDLE      200 /* connections that never send a byte */
#define LORIS     50  /* connections sending their headers one byte a second */
#define SLOWBODY  10  /* complete headers, then the body one byte a second */
#define TOKEN     "hostile-slow-token-0123456789"

struct slow_conn {
    int fd;
    int kind;         /* 0 idle, 1 slowloris, 2 slow body */
    const char *text; /* what it dribbles (NULL for idle) */
    size_t sent;
    long long t_open, t_closed; /* t_closed: 0 while open */
};

static char base[64];
static atomic_int probing;
static struct iit_log probe_log;
static long long probe_max_ms;
static int probe_bad;

/* What a well-behaved client sees meanwhile: a signed POST and a /healthz every 100 ms. */
static void *probe_main(void *arg)
{
    struct iit_client c;
    char url[96];
    (void)arg;
    snprintf(url, sizeof(url), "%s/healthz", base);
    if (iit_client_init(&c, base) != 0)
        return NULL;
    for (int i = 0; atomic_load(&probing); i++) {
        struct iit_result r;
        struct harness_http_response hr;
        char id[64];
        long long t0 = harness_now_ms(), ms;
        memset(&r, 0, sizeof(r));
        snprintf(id, sizeof(id), "slowp-%d", i);
        iit_post_message(&c, id, i % 8, i, 5000, &r);
        iit_log_add(&probe_log, &r);
        probe_bad += r.status != 202;
        harness_http("GET", url, NULL, NULL, 0, 5000, &hr);
        probe_bad += hr.status != 200;
        harness_http_response_free(&hr);
        ms = harness_now_ms() - t0;
        if (ms > probe_max_ms)
            probe_max_ms = ms;
        harness_sleep_ms(100);
    }
    iit_client_free(&c);
    return NULL;
}

int main(void)
{
    struct harness *h = harness_init("ingest_hostile_slow");
    struct harness_proc *kafka, *ingest;
    static struct slow_conn conns[IDLE + LORIS + SLOWBODY];
    static const char loris[] = "POST /v1/patient/replies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Content-Type: application/json\r\nAuthorization: Bearer " TOKEN
                                "\r\nContent-Length: 40\r\n\r\n";
    static const char body[] = "{\"patient_id\":\"pt1\",\"text\":\"slow body\"}";
    struct iit_topic topic = {0};
    struct iit_summary sum;
    pthread_t prober;
    char bootstrap[512];
    int n = 0, port = harness_free_port(), open_left, early = 0, late = 0, unopened = 0;
    long long t0, last_tick = 0, worst[3] = {0, 0, 0};

    kafka = harness_devbroker_start(h, 1, 4, NULL, bootstrap, sizeof(bootstrap));
    if (!H_CHECK(h, kafka != NULL))
        return harness_finish(h);
    {
        const char *env[] = {"PM_INGEST_CONNECTION_TIMEOUT_S=3", "PM_INGEST_BEARER_TOKENS=" TOKEN,
                             NULL};
        ingest = iit_ingest_start(h, bootstrap, port, env);
    }
    if (!ingest)
        return harness_finish(h);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
    iit_log_init(&probe_log);
    atomic_init(&probing, 1);

    for (int i = 0; i < IDLE + LORIS + SLOWBODY; i++) {
        struct slow_conn *c = &conns[n];
        c->kind = i < IDLE ? 0 : i < IDLE + LORIS ? 1 : 2;
        c->text = c->kind == 0 ? NULL : loris;
        c->fd = harness_sock_connect(port, 5000);
        c->t_open = harness_now_ms();
        if (c->fd < 0) {
            unopened++;
            continue;
        }
        if (c->kind == 2) /* the headers at once; then the body byte by byte */
            harness_sock_send_str(c->fd, loris);
        n++;
    }
    H_CHECK_INT(h, unopened, 0);
    if (!H_CHECK(h, pthread_create(&prober, NULL, probe_main, NULL) == 0))
        return harness_finish(h);

    /* One byte a second on every slow connection: never idle for TIMEOUT_S, never done. Stop
     * when the server has closed everything, or 4 timeouts later. */
    t0 = harness_now_ms();
    for (open_left = n; open_left > 0 && harness_now_ms() - t0 < 4000 * TIMEOUT_S;) {
        struct pollfd pfd[IDLE + LORIS + SLOWBODY];
        int map[IDLE + LORIS + SLOWBODY], np = 0;
        long long now = harness_now_ms();

        if (now - last_tick >= 1000) {
            last_tick = now;
            for (int i = 0; i < n; i++) {
                struct slow_conn *c = &conns[i];
                const char *text = c->kind == 1 ? loris : body;
                if (c->t_closed || c->kind == 0 || c->sent >= strlen(text))
                    continue;
                if (send(c->fd, text + c->sent, 1, MSG_NOSIGNAL) == 1)
                    c->sent++;
            }
        }
        for (int i = 0; i < n; i++) {
            if (conns[i].t_closed)
                continue;
            pfd[np].fd = conns[i].fd;
            pfd[np].events = POLLIN;
            map[np++] = i;
        }
        if (poll(pfd, (nfds_t)np, 100) <= 0)
            continue;
        for (int k = 0; k < np; k++) {
            struct slow_conn *c = &conns[map[k]];
            char buf[512];
            ssize_t r;
            if (!pfd[k].revents)
                continue;
            r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EINTR)))
                continue; /* an answer (none is expected): keep reading until closed */
            c->t_closed = harness_now_ms();
            open_left--;
        }
    }
    atomic_store(&probing, 0);
    pthread_join(prober, NULL);

    for (int i = 0; i < n; i++) {
        struct slow_conn *c = &conns[i];
        long long life = c->t_closed ? c->t_closed - c->t_open : -1;
        if (life > worst[c->kind])
            worst[c->kind] = life;
        /* Closed by the timeout: not before it (then something else cut it), and soon after
         * (libmicrohttpd's idle check for the idle ones, the watchdog for the slow ones). */
        if (c->t_closed && life < TIMEOUT_S * 1000 - 500 && early++ < 5)
            H_FAIL(h, "connection %d (kind %d) closed after %lld ms, before the timeout", i,
                   c->kind, life);
        if ((!c->t_closed || life > TIMEOUT_S * 1000 + 3000) && late++ < 5)
            H_FAIL(h, "connection %d (kind %d: %s, %zu bytes sent) %s", i, c->kind,
                   c->kind == 0   ? "idle"
                   : c->kind == 1 ? "slowloris"
                                  : "slow body",
                   c->sent, c->t_closed ? "closed late" : "still open after 4 timeouts");
        if (c->fd >= 0)
            close(c->fd);
    }
    H_CHECKF(h, probe_log.n >= 20 && probe_bad == 0, "well-behaved client: %zu requests, %d bad",
             probe_log.n, probe_bad);
    H_CHECKF(h, probe_max_ms < 500, "a well-behaved POST + /healthz took %lld ms", probe_max_ms);

    H_CHECK(h, harness_proc_running(ingest));
    if (iit_topic_read(h, bootstrap, IIT_TOPIC, &topic) == 0) {
        iit_check_delivery(h, &probe_log, &topic, "slowp-", &sum);
        H_CHECKF(h, (int)topic.n == sum.accepted, "%zu records for %d accepted requests", topic.n,
                 sum.accepted);
    }
    iit_topic_free(&topic);
    {
        struct iit_topic replies = {0};
        /* The slow bodies never completed: nothing of theirs was produced. */
        if (iit_topic_read(h, bootstrap, "pm.patient.replies", &replies) == 0)
            H_CHECK_INT(h, replies.n, 0);
        iit_topic_free(&replies);
    }
    fprintf(stderr,
            "FIGURES slow clients (timeout %d s): %d idle closed after at most %lld ms, %d "
            "slowloris (1 byte/s) after at most %lld ms, %d slow bodies after at most %lld ms; "
            "meanwhile %zu signed POST + /healthz pairs, slowest pair %lld ms, %d bad\n",
            TIMEOUT_S, IDLE, worst[0], LORIS, worst[1], SLOWBODY, worst[2], probe_log.n,
            probe_max_ms, probe_bad);
    harness_proc_signal(ingest, SIGTERM);
    H_CHECK_INT(h, harness_proc_wait(ingest, 20000), 0);
    iit_log_free(&probe_log);
    return harness_finish(h);
}
