/* pm-loadgen: closed-loop HTTP/1.1 load for pm-ingest with signed ~1 KB notifications. */

/*
 * Why not wrk: Standard Webhooks signatures need a unique webhook-id, a fresh timestamp and an
 * HMAC-SHA256 over the whole body for every request. A repeated id is answered from pm-ingest's
 * duplicate table without producing anything, so replaying one signed request would measure the
 * wrong path. wrk's Lua cannot compute the HMAC at these rates.
 *
 * Model: each of N keep-alive connections has exactly one request in flight (closed loop); a new
 * request is built, signed and written as soon as the previous answer is complete. Connections
 * are spread over -t threads, one epoll loop each. Latency is taken from just before the write of
 * the request to the last byte of its answer, and recorded in a log-linear histogram with 1 us
 * resolution below 2 ms and 1/1024 relative precision above (as HdrHistogram with 3 digits).
 *
 * Phases: warm-up (-w s: answers counted in the run totals, not in the figures), measurement (-d
 * s: answers completing in this window make the figures), drain (no new requests; waits up to
 * --drain s for every answer still outstanding so the run's 2xx total is exact). The run's 2xx
 * total is what the benchmark compares with the records on the Kafka topic.
 *
 * Secrets come from the environment, never the command line: PM_LOADGEN_WEBHOOK_SECRET
 * (whsec_...) for signatures, PM_LOADGEN_BEARER_TOKEN for --auth bearer.
 */
#include "webhook_sig.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LG_REQ_MAX      (64 * 1024)
#define LG_RESP_HDR_MAX 8192
#define LG_HDR_ROOM     1024 /* request line and headers */
#define LG_MAX_EVENTS   256

/* ---- latency histogram: exact below 2048 us, then 1024 sub-buckets per power of two ---- */

#define HIST_SUB_BITS 10
#define HIST_SUB      (1 << HIST_SUB_BITS) /* 1024 */
#define HIST_EXACT    (2 * HIST_SUB)       /* values below this have their own bucket */
#define HIST_MAX_MSB  40                   /* about 12 days in us: nothing gets near */
#define HIST_BUCKETS  (HIST_EXACT + (HIST_MAX_MSB - HIST_SUB_BITS) * HIST_SUB)

struct lg_hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
};

static int lg_msb(uint64_t v)
{
    int n = 0;
    while (v >>= 1)
        n++;
    return n;
}

static size_t lg_hist_index(uint64_t v)
{
    int msb, shift;
    if (v < HIST_EXACT)
        return (size_t)v;
    msb = lg_msb(v);
    if (msb >= HIST_MAX_MSB)
        return HIST_BUCKETS - 1;
    shift = msb - HIST_SUB_BITS;
    return HIST_EXACT + (size_t)(msb - HIST_SUB_BITS - 1) * HIST_SUB +
           (size_t)((v >> shift) - HIST_SUB);
}

/* The highest value that lands in bucket @p i (what a percentile is reported as). */
static uint64_t lg_hist_upper(size_t i)
{
    size_t k;
    int shift;
    if (i < HIST_EXACT)
        return i;
    k = i - HIST_EXACT;
    shift = (int)(k / HIST_SUB) + 1;
    return (((uint64_t)(k % HIST_SUB + HIST_SUB) + 1) << shift) - 1;
}

static void lg_hist_record(struct lg_hist *h, uint64_t v)
{
    h->count[lg_hist_index(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

static void lg_hist_merge(struct lg_hist *into, const struct lg_hist *from)
{
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        into->count[i] += from->count[i];
    into->total += from->total;
    if (from->max > into->max)
        into->max = from->max;
}

/* @returns the value at quantile @p q (0..1]: the smallest bucket holding ceil(q*total). */
static uint64_t lg_hist_quantile(const struct lg_hist *h, double q)
{
    uint64_t want, seen = 0;
    if (!h->total)
        return 0;
    want = (uint64_t)(q * (double)h->total + 0.999999);
    if (want < 1)
        want = 1;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= want) {
            uint64_t u = lg_hist_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

/* ---- options ---- */

enum lg_auth { LG_AUTH_SIGNATURE, LG_AUTH_BEARER };

struct lg_opts {
    char host[256];
    char port[16];
    const char *path;
    int connections;
    int threads;
    double duration_s;
    double warmup_s;
    double drain_s;
    size_t body_size;
    unsigned long patients;
    enum lg_auth auth;
    const char *label;
    int print_body;
    struct webhook_key key;
    const char *bearer;
};

/* ---- per-connection and per-thread state ---- */

enum lg_state { LG_IDLE, LG_CONNECTING, LG_WRITING, LG_READING, LG_RETRY };

struct lg_conn {
    int fd;
    enum lg_state state;
    int index; /* within its thread */
    int64_t retry_at_us;
    int64_t sent_us;
    char *req;
    size_t req_len, req_off;
    char resp[LG_RESP_HDR_MAX + 1];
    size_t resp_len;
    int hdr_done;
    int status;
    int close_after; /* the answer said Connection: close */
    size_t hdr_len;  /* bytes of resp that are the head; the rest is the start of the body */
    long long body_left;
};

struct lg_thread {
    const struct lg_opts *o;
    const struct addrinfo *ai;
    int id;
    int nconns;
    struct lg_conn *conns;
    int ep;
    pthread_t tid;
    uint64_t seq;
    uint64_t rng;
    char *body; /* scratch: the body being built */

    /* whole run */
    uint64_t run_2xx;
    uint64_t run_answers;
    /* measurement window */
    struct lg_hist hist;
    uint64_t win_status[600];
    uint64_t win_answers;
    uint64_t win_2xx;
    /* problems */
    uint64_t connect_errors;
    uint64_t conn_lost; /* closed or failed with a request outstanding */
    uint64_t proto_errors;
    uint64_t unanswered; /* still outstanding when the drain ended */
    int shown;           /* non-2xx answers already shown on stderr */
};

/* Shared run clock (CLOCK_MONOTONIC us), set before the threads start. */
static int64_t lg_t0, lg_t_measure, lg_t_end, lg_t_drain_end;
static char lg_run_id[17];

static int64_t lg_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* splitmix64: cheap deterministic ids and patient picks; nothing here needs real randomness. */
static uint64_t lg_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* ---- the request ---- */

static const char lg_filler[] =
    "Hello, this is a message from your care team. Your recent lab results are available in the "
    "patient portal and look good overall; please remember to bring your medication list to your "
    "next visit. If you have questions about fasting before the blood draw or about your new "
    "prescription, reply to this message and a nurse will get back to you within one business "
    "day. For urgent matters call the clinic or dial emergency services. ";

/* Writes the notification body (shape (a) of SPEC 4, its change padded so the whole body is
 * @p size bytes) into @p out (room for size + 1 bytes at least). @returns its length. */
static size_t lg_body_build(struct lg_thread *t, char *out, size_t outlen, uint64_t seq)
{
    static const char tail[] = "\"]}}}";
    const struct lg_opts *o = t->o;
    uint64_t pick = lg_mix(t->rng++) % o->patients;
    uint64_t pa = lg_mix(pick), pb = lg_mix(pick ^ 0x5bd1e995ULL);
    uint64_t c1 = lg_mix(seq ^ ((uint64_t)t->id << 48)), c2 = lg_mix(c1);
    char when[32];
    struct tm tm;
    time_t now = time(NULL);
    size_t len, pad, fl = sizeof(lg_filler) - 1;
    int n;

    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* Fixed-width ids, so everything but the padding has the same length every time. */
    n = snprintf(out, outlen,
                 "{\"communication_id\":\"%08x-%04x-4%03x-8%03x-%012llx\",\"patient_id\":"
                 "\"%016llx%016llx\",\"occurred_at\":\"%s\",\"change\":{\"model\":\"Message\","
                 "\"action\":\"created\",\"fields\":{\"sender\":[null,"
                 "\"Practitioner/4150cd20de8a470aa570a852859ac87e\"],\"recipient\":[null,"
                 "\"Patient/%016llx%016llx\"],\"read\":[null,false],\"content\":[null,\"",
                 (unsigned)(c1 >> 32), (unsigned)(c1 >> 16) & 0xffffu, (unsigned)c1 & 0xfffu,
                 (unsigned)(c2 >> 52), (unsigned long long)(c2 & 0xffffffffffffULL),
                 (unsigned long long)pa, (unsigned long long)pb, when, (unsigned long long)pa,
                 (unsigned long long)pb);
    if (n <= 0 || (size_t)n + sizeof(tail) > outlen)
        return 0;
    len = (size_t)n;
    pad = o->body_size > len + sizeof(tail) - 1 ? o->body_size - len - (sizeof(tail) - 1) : 0;
    if (pad > outlen - len - sizeof(tail))
        pad = outlen - len - sizeof(tail);
    /* The message text: the filler, repeated as often as needed (memcpy, not printf: this
     * runs for every request on the machine being measured). */
    while (pad) {
        size_t k = pad < fl ? pad : fl;
        memcpy(out + len, lg_filler, k);
        len += k;
        pad -= k;
    }
    memcpy(out + len, tail, sizeof(tail)); /* with its NUL */
    return len + sizeof(tail) - 1;
}

/* Builds the whole next request of @p c (headers and signed body) into c->req. */
static int lg_request_build(struct lg_thread *t, struct lg_conn *c)
{
    const struct lg_opts *o = t->o;
    uint64_t seq = t->seq++;
    char id[96], sig[128];
    long long ts = (long long)time(NULL);
    size_t blen = lg_body_build(t, t->body, o->body_size + LG_HDR_ROOM, seq);
    int n;

    snprintf(id, sizeof(id), "msg_%s_%d_%d_%llu", lg_run_id, t->id, c->index,
             (unsigned long long)seq);
    if (o->auth == LG_AUTH_SIGNATURE) {
        if (webhook_sig_sign(&o->key, id, ts, t->body, blen, sig, sizeof(sig)) != 0)
            return -1;
        n = snprintf(c->req, LG_REQ_MAX,
                     "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nwebhook-id: %s\r\nwebhook-timestamp: %lld\r\n"
                     "webhook-signature: %s\r\n\r\n",
                     o->path, o->host, o->port, blen, id, ts, sig);
    } else {
        n = snprintf(c->req, LG_REQ_MAX,
                     "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nAuthorization: Bearer %s\r\n"
                     "Idempotency-Key: %s\r\n\r\n",
                     o->path, o->host, o->port, blen, o->bearer, id);
    }
    if (n <= 0 || (size_t)n + blen > LG_REQ_MAX)
        return -1;
    memcpy(c->req + n, t->body, blen);
    c->req_len = (size_t)n + blen;
    c->req_off = 0;
    return 0;
}

/* ---- connection handling ---- */

static void lg_conn_close(struct lg_thread *t, struct lg_conn *c, int64_t now)
{
    if (c->fd >= 0) {
        epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = LG_RETRY;
    c->retry_at_us = now;
}

static int lg_conn_open(struct lg_thread *t, struct lg_conn *c)
{
    struct epoll_event ev;
    int one = 1;
    int fd = socket(t->ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, t->ai->ai_addr, t->ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->state = LG_CONNECTING;
    ev.events = EPOLLOUT | EPOLLIN;
    ev.data.ptr = c;
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

static void lg_set_events(struct lg_thread *t, struct lg_conn *c, uint32_t events)
{
    struct epoll_event ev;
    ev.events = events;
    ev.data.ptr = c;
    epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes what is left of the request. @returns 0 (done or would block), -1 on error. */
static int lg_conn_write(struct lg_thread *t, struct lg_conn *c)
{
    while (c->req_off < c->req_len) {
        ssize_t w = send(c->fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (c->state != LG_WRITING) {
                    c->state = LG_WRITING;
                    lg_set_events(t, c, EPOLLIN | EPOLLOUT);
                }
                return 0;
            }
            return -1;
        }
        c->req_off += (size_t)w;
    }
    if (c->state == LG_WRITING)
        lg_set_events(t, c, EPOLLIN);
    c->state = LG_READING;
    c->resp_len = 0;
    c->hdr_done = 0;
    c->status = 0;
    c->close_after = 0;
    c->body_left = 0;
    return 0;
}

/* Starts the next request on an idle connection, unless the run is past its measuring end. */
static void lg_conn_next(struct lg_thread *t, struct lg_conn *c, int64_t now)
{
    if (now >= lg_t_end) {
        c->state = LG_IDLE;
        return;
    }
    if (lg_request_build(t, c) != 0) {
        fprintf(stderr, "pm-loadgen: cannot build a request (body too large?)\n");
        exit(2);
    }
    c->sent_us = lg_now_us();
    c->state = LG_READING; /* lg_conn_write switches to WRITING if it has to wait */
    if (lg_conn_write(t, c) != 0) {
        t->conn_lost++;
        lg_conn_close(t, c, now);
    }
}

/* Case-insensitive search for header @p name in the header block; @returns its value or NULL. */
static const char *lg_header(const char *hdrs, const char *name)
{
    size_t n = strlen(name);
    const char *p = strstr(hdrs, "\r\n");
    while (p && p[2] != '\r') {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            p += n + 1;
            while (*p == ' ' || *p == '\t')
                p++;
            return p;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

static void lg_answer_done(struct lg_thread *t, struct lg_conn *c, int64_t now)
{
    int ok = c->status >= 200 && c->status < 300;

    t->run_answers++;
    if (ok)
        t->run_2xx++;
    else if (t->shown < 3) {
        /* The first few refusals, so a misconfigured run explains itself: the status and the
         * start of the problem document (whatever arrived with the head). */
        t->shown++;
        fprintf(stderr, "pm-loadgen: thread %d got %d: %.*s\n", t->id, c->status,
                (int)(c->resp_len > c->hdr_len ? c->resp_len - c->hdr_len : 0),
                c->resp + c->hdr_len);
    }
    if (now >= lg_t_measure && now < lg_t_end) {
        t->win_answers++;
        t->win_status[c->status > 0 && c->status < 600 ? c->status : 0]++;
        if (ok) {
            t->win_2xx++;
            lg_hist_record(&t->hist, (uint64_t)(now - c->sent_us));
        }
    }
    if (c->close_after) {
        lg_conn_close(t, c, now);
        return;
    }
    lg_conn_next(t, c, now);
}

/* Parses the status line and headers once they are complete. @returns 1 when parsed, 0 when
 * more bytes are needed, -1 on a protocol error. */
static int lg_parse_head(struct lg_conn *c)
{
    char *end;
    const char *v;
    size_t hdr_len;

    c->resp[c->resp_len] = '\0';
    end = strstr(c->resp, "\r\n\r\n");
    if (!end)
        return c->resp_len >= LG_RESP_HDR_MAX ? -1 : 0;
    hdr_len = (size_t)(end - c->resp) + 4;
    c->hdr_len = hdr_len;
    end[2] = '\0'; /* keep the last header's CRLF for lg_header */
    if (strncmp(c->resp, "HTTP/1.", 7) != 0 || c->resp_len < 12)
        return -1;
    c->status = (int)strtol(c->resp + 9, NULL, 10);
    v = lg_header(c->resp, "Content-Length");
    if (!v)
        return -1; /* pm-ingest always sends one; chunked answers are not expected */
    c->body_left = strtoll(v, NULL, 10) - (long long)(c->resp_len - hdr_len);
    v = lg_header(c->resp, "Connection");
    c->close_after = v && strncasecmp(v, "close", 5) == 0;
    c->hdr_done = 1;
    return 1;
}

static void lg_conn_read(struct lg_thread *t, struct lg_conn *c, int64_t now)
{
    for (;;) {
        char sink[16384];
        char *buf;
        size_t room;
        ssize_t r;

        if (!c->hdr_done) {
            buf = c->resp + c->resp_len;
            room = LG_RESP_HDR_MAX - c->resp_len;
        } else {
            buf = sink;
            room = sizeof(sink);
        }
        r = recv(c->fd, buf, room, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) { /* closed or failed */
            if (c->state == LG_READING)
                t->conn_lost++;
            lg_conn_close(t, c, now);
            return;
        }
        if (c->state != LG_READING) { /* bytes nobody asked for */
            t->proto_errors++;
            lg_conn_close(t, c, now);
            return;
        }
        if (!c->hdr_done) {
            int h;
            c->resp_len += (size_t)r;
            h = lg_parse_head(c);
            if (h < 0) {
                t->proto_errors++;
                lg_conn_close(t, c, now);
                return;
            }
            if (h == 0)
                continue;
        } else {
            c->body_left -= r;
        }
        if (c->body_left == 0) {
            lg_answer_done(t, c, lg_now_us());
            return; /* one request in flight: nothing more can be waiting */
        }
        if (c->body_left < 0) {
            t->proto_errors++;
            lg_conn_close(t, c, now);
            return;
        }
    }
}

static void lg_conn_event(struct lg_thread *t, struct lg_conn *c, uint32_t events, int64_t now)
{
    if (c->state == LG_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if ((events & (EPOLLERR | EPOLLHUP)) ||
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err) {
            t->connect_errors++;
            lg_conn_close(t, c, now);
            c->retry_at_us = now + 100000; /* the server is not there: do not spin */
            return;
        }
        lg_set_events(t, c, EPOLLIN);
        lg_conn_next(t, c, now);
        return;
    }
    if ((events & EPOLLOUT) && c->state == LG_WRITING) {
        if (lg_conn_write(t, c) != 0) {
            t->conn_lost++;
            lg_conn_close(t, c, now);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        lg_conn_read(t, c, now);
}

static void *lg_thread_main(void *arg)
{
    struct lg_thread *t = arg;
    struct epoll_event evs[LG_MAX_EVENTS];

    for (int i = 0; i < t->nconns; i++) {
        t->conns[i].fd = -1;
        t->conns[i].index = i;
        t->conns[i].state = LG_RETRY;
        t->conns[i].retry_at_us = 0;
    }
    for (;;) {
        int64_t now = lg_now_us();
        int busy = 0, n;

        for (int i = 0; i < t->nconns; i++) {
            struct lg_conn *c = &t->conns[i];
            if (c->state == LG_RETRY && now < lg_t_end && now >= c->retry_at_us) {
                if (lg_conn_open(t, c) != 0) {
                    t->connect_errors++;
                    c->retry_at_us = now + 100000;
                }
            }
            if (c->state == LG_CONNECTING || c->state == LG_WRITING || c->state == LG_READING)
                busy++;
        }
        if (now >= lg_t_end && (!busy || now >= lg_t_drain_end)) {
            for (int i = 0; i < t->nconns; i++) {
                struct lg_conn *c = &t->conns[i];
                if (c->state == LG_WRITING || c->state == LG_READING)
                    t->unanswered++;
                if (c->fd >= 0)
                    close(c->fd);
            }
            return NULL;
        }
        n = epoll_wait(t->ep, evs, LG_MAX_EVENTS, 20);
        if (n < 0 && errno != EINTR) {
            perror("pm-loadgen: epoll_wait");
            exit(2);
        }
        now = lg_now_us();
        for (int i = 0; i < n; i++)
            lg_conn_event(t, evs[i].data.ptr, evs[i].events, now);
    }
}

/* ---- command line ---- */

static void lg_usage(FILE *f)
{
    fprintf(f,
            "Usage: pm-loadgen [options]\n"
            "Closed-loop HTTP/1.1 load for pm-ingest: keep-alive connections, one request in\n"
            "flight each, ~1 KB Canvas message notifications (SPEC 4 shape (a)), each with a\n"
            "fresh webhook-id and timestamp and its own Standard Webhooks signature.\n\n"
            "  -a, --addr HOST:PORT     pm-ingest address (default 127.0.0.1:8080)\n"
            "  -P, --path PATH          route (default /v1/canvas/messages)\n"
            "  -c, --connections N      connections (default 64)\n"
            "  -t, --threads N          threads, one epoll loop each (default 1)\n"
            "  -d, --duration S         measured seconds (default 20)\n"
            "  -w, --warmup S           seconds before measuring (default 5)\n"
            "      --drain S            after the run, wait this long for outstanding answers\n"
            "                           (default 15; longer than the ack timeout)\n"
            "  -s, --size BYTES         body size (default 1024)\n"
            "  -k, --patients N         distinct patient ids (default 10000)\n"
            "      --auth signature|bearer  (default signature)\n"
            "  -l, --label TEXT         label for the RESULT line\n"
            "      --print-body         print one body (for a fixed-body tool such as wrk), exit\n"
            "  -h, --help\n\n"
            "Environment: PM_LOADGEN_WEBHOOK_SECRET (whsec_..., for signatures),\n"
            "PM_LOADGEN_BEARER_TOKEN (for --auth bearer; sent with a unique Idempotency-Key).\n"
            "The last stdout line is machine-readable: RESULT key=value ...\n");
}

static int lg_parse_num(const char *s, double min, double max, double *out)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int lg_parse_args(int argc, char **argv, struct lg_opts *o)
{
    static const struct option longs[] = {
        {"addr", required_argument, NULL, 'a'},        {"path", required_argument, NULL, 'P'},
        {"connections", required_argument, NULL, 'c'}, {"threads", required_argument, NULL, 't'},
        {"duration", required_argument, NULL, 'd'},    {"warmup", required_argument, NULL, 'w'},
        {"drain", required_argument, NULL, 'D'},       {"size", required_argument, NULL, 's'},
        {"patients", required_argument, NULL, 'k'},    {"auth", required_argument, NULL, 'A'},
        {"label", required_argument, NULL, 'l'},       {"help", no_argument, NULL, 'h'},
        {"print-body", no_argument, NULL, 'B'},        {NULL, 0, NULL, 0},
    };
    const char *addr = "127.0.0.1:8080";
    const char *colon;
    double v;
    int ch;

    o->path = "/v1/canvas/messages";
    o->connections = 64;
    o->threads = 1;
    o->duration_s = 20;
    o->warmup_s = 5;
    o->drain_s = 15;
    o->body_size = 1024;
    o->patients = 10000;
    o->auth = LG_AUTH_SIGNATURE;
    o->label = "";
    while ((ch = getopt_long(argc, argv, "a:P:c:t:d:w:s:k:l:h", longs, NULL)) != -1) {
        switch (ch) {
        case 'a':
            addr = optarg;
            break;
        case 'P':
            o->path = optarg;
            break;
        case 'c':
            if (lg_parse_num(optarg, 1, 60000, &v))
                goto bad;
            o->connections = (int)v;
            break;
        case 't':
            if (lg_parse_num(optarg, 1, 64, &v))
                goto bad;
            o->threads = (int)v;
            break;
        case 'd':
            if (lg_parse_num(optarg, 0.1, 86400, &o->duration_s))
                goto bad;
            break;
        case 'w':
            if (lg_parse_num(optarg, 0, 86400, &o->warmup_s))
                goto bad;
            break;
        case 'D':
            if (lg_parse_num(optarg, 0, 3600, &o->drain_s))
                goto bad;
            break;
        case 's':
            if (lg_parse_num(optarg, 200, LG_REQ_MAX - LG_HDR_ROOM - 1, &v))
                goto bad;
            o->body_size = (size_t)v;
            break;
        case 'k':
            if (lg_parse_num(optarg, 1, 1e12, &v))
                goto bad;
            o->patients = (unsigned long)v;
            break;
        case 'A':
            if (!strcmp(optarg, "signature"))
                o->auth = LG_AUTH_SIGNATURE;
            else if (!strcmp(optarg, "bearer"))
                o->auth = LG_AUTH_BEARER;
            else
                goto bad;
            break;
        case 'l':
            o->label = optarg;
            break;
        case 'B':
            o->print_body = 1;
            break;
        case 'h':
            lg_usage(stdout);
            exit(0);
        default:
            lg_usage(stderr);
            return -1;
        }
    }
    if (optind != argc)
        goto bad;
    if (o->threads > o->connections)
        o->threads = o->connections;
    colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(o->host) ||
        strlen(colon + 1) >= sizeof(o->port) || !colon[1]) {
        fprintf(stderr, "pm-loadgen: --addr must be HOST:PORT\n");
        return -1;
    }
    memcpy(o->host, addr, (size_t)(colon - addr));
    o->host[colon - addr] = '\0';
    snprintf(o->port, sizeof(o->port), "%s", colon + 1);
    return 0;
bad:
    fprintf(stderr, "pm-loadgen: bad option value (see --help)\n");
    return -1;
}

static int lg_load_credentials(struct lg_opts *o)
{
    char err[128];
    if (o->auth == LG_AUTH_BEARER) {
        o->bearer = getenv("PM_LOADGEN_BEARER_TOKEN");
        if (!o->bearer || !*o->bearer) {
            fprintf(stderr, "pm-loadgen: --auth bearer needs PM_LOADGEN_BEARER_TOKEN\n");
            return -1;
        }
        return 0;
    }
    const char *secret = getenv("PM_LOADGEN_WEBHOOK_SECRET");
    if (!secret || !*secret) {
        fprintf(stderr, "pm-loadgen: signatures need PM_LOADGEN_WEBHOOK_SECRET (whsec_...)\n");
        return -1;
    }
    if (webhook_key_decode(secret, &o->key, err, sizeof(err)) != 0) {
        fprintf(stderr, "pm-loadgen: PM_LOADGEN_WEBHOOK_SECRET: %s\n", err);
        return -1;
    }
    return 0;
}

/* ---- report ---- */

static void lg_report(const struct lg_opts *o, struct lg_thread *ts, double window_s)
{
    static struct lg_hist h; /* large: not on the stack */
    uint64_t status[600] = {0};
    uint64_t answers = 0, ok = 0, run_2xx = 0, run_answers = 0, conn_err = 0, lost = 0, proto = 0,
             unanswered = 0, non2xx;
    uint64_t p50, p90, p99, p999;
    char non2xx_list[512] = "";
    size_t used = 0;

    for (int i = 0; i < o->threads; i++) {
        struct lg_thread *t = &ts[i];
        lg_hist_merge(&h, &t->hist);
        for (int s = 0; s < 600; s++)
            status[s] += t->win_status[s];
        answers += t->win_answers;
        ok += t->win_2xx;
        run_2xx += t->run_2xx;
        run_answers += t->run_answers;
        conn_err += t->connect_errors;
        lost += t->conn_lost;
        proto += t->proto_errors;
        unanswered += t->unanswered;
    }
    non2xx = answers - ok;
    for (int s = 0; s < 600; s++) {
        if (!status[s] || (s >= 200 && s < 300))
            continue;
        int n = snprintf(non2xx_list + used, sizeof(non2xx_list) - used, "%s%d:%llu",
                         used ? "," : "", s, (unsigned long long)status[s]);
        if (n > 0 && (size_t)n < sizeof(non2xx_list) - used)
            used += (size_t)n;
    }
    p50 = lg_hist_quantile(&h, 0.50);
    p90 = lg_hist_quantile(&h, 0.90);
    p99 = lg_hist_quantile(&h, 0.99);
    p999 = lg_hist_quantile(&h, 0.999);

    printf("pm-loadgen %s: %d connections on %d thread(s), POST %s, %zu-byte bodies, %s auth\n",
           o->label, o->connections, o->threads, o->path, o->body_size,
           o->auth == LG_AUTH_SIGNATURE ? "signature" : "bearer");
    printf("  window %.1f s after %.1f s warm-up: %llu answers, %llu 2xx, %llu non-2xx%s%s\n",
           window_s, o->warmup_s, (unsigned long long)answers, (unsigned long long)ok,
           (unsigned long long)non2xx, used ? " " : "", non2xx_list);
    printf("  acknowledged: %.0f req/s\n", (double)ok / window_s);
    printf("  latency of 2xx (us): p50 %llu  p90 %llu  p99 %llu  p99.9 %llu  max %llu\n",
           (unsigned long long)p50, (unsigned long long)p90, (unsigned long long)p99,
           (unsigned long long)p999, (unsigned long long)h.max);
    printf("  whole run (warm-up, window, drain): %llu answers, %llu 2xx; unanswered at the end "
           "%llu; connect errors %llu, connections lost mid-request %llu, protocol errors %llu\n",
           (unsigned long long)run_answers, (unsigned long long)run_2xx,
           (unsigned long long)unanswered, (unsigned long long)conn_err, (unsigned long long)lost,
           (unsigned long long)proto);
    printf("RESULT label=%s conns=%d threads=%d window_s=%.3f rps=%.0f p50_us=%llu p90_us=%llu "
           "p99_us=%llu p999_us=%llu max_us=%llu ok=%llu non2xx=%llu non2xx_by_status=%s "
           "run_2xx=%llu run_answers=%llu unanswered=%llu connect_errors=%llu conn_lost=%llu "
           "proto_errors=%llu\n",
           *o->label ? o->label : "-", o->connections, o->threads, window_s, (double)ok / window_s,
           (unsigned long long)p50, (unsigned long long)p90, (unsigned long long)p99,
           (unsigned long long)p999, (unsigned long long)h.max, (unsigned long long)ok,
           (unsigned long long)non2xx, used ? non2xx_list : "-", (unsigned long long)run_2xx,
           (unsigned long long)run_answers, (unsigned long long)unanswered,
           (unsigned long long)conn_err, (unsigned long long)lost, (unsigned long long)proto);
}

int main(int argc, char **argv)
{
    struct lg_opts o;
    struct addrinfo hints, *ai = NULL;
    struct lg_thread *ts;
    int rc, per, extra;

    memset(&o, 0, sizeof(o));
    if (lg_parse_args(argc, argv, &o) != 0)
        return 2;
    if (o.print_body) {
        struct lg_thread t;
        char *b = malloc(o.body_size + LG_HDR_ROOM);
        memset(&t, 0, sizeof(t));
        t.o = &o;
        if (!b)
            return 2;
        fwrite(b, 1, lg_body_build(&t, b, o.body_size + LG_HDR_ROOM, 0), stdout);
        putchar('\n');
        free(b);
        return 0;
    }
    if (lg_load_credentials(&o) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(o.host, o.port, &hints, &ai);
    if (rc != 0 || !ai) {
        fprintf(stderr, "pm-loadgen: cannot resolve %s: %s\n", o.host, gai_strerror(rc));
        return 2;
    }

    /* Ids unique across runs: the server's duplicate table must never answer one of ours. */
    snprintf(lg_run_id, sizeof(lg_run_id), "%016llx",
             (unsigned long long)lg_mix((uint64_t)lg_now_us() ^ ((uint64_t)getpid() << 32)));

    ts = calloc((size_t)o.threads, sizeof(*ts));
    if (!ts)
        return 2;
    per = o.connections / o.threads;
    extra = o.connections % o.threads;
    lg_t0 = lg_now_us();
    lg_t_measure = lg_t0 + (int64_t)(o.warmup_s * 1e6);
    lg_t_end = lg_t_measure + (int64_t)(o.duration_s * 1e6);
    lg_t_drain_end = lg_t_end + (int64_t)(o.drain_s * 1e6);
    for (int i = 0; i < o.threads; i++) {
        struct lg_thread *t = &ts[i];
        t->o = &o;
        t->ai = ai;
        t->id = i;
        t->rng = lg_mix((uint64_t)i + 1);
        t->nconns = per + (i < extra ? 1 : 0);
        t->conns = calloc((size_t)t->nconns, sizeof(*t->conns));
        t->body = malloc(o.body_size + LG_HDR_ROOM);
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        if (!t->conns || !t->body || t->ep < 0)
            return 2;
        for (int k = 0; k < t->nconns; k++) {
            t->conns[k].req = malloc(LG_REQ_MAX);
            if (!t->conns[k].req)
                return 2;
        }
        if (pthread_create(&t->tid, NULL, lg_thread_main, t) != 0) {
            fprintf(stderr, "pm-loadgen: cannot start a thread\n");
            return 2;
        }
    }
    for (int i = 0; i < o.threads; i++)
        pthread_join(ts[i].tid, NULL);

    lg_report(&o, ts, o.duration_s);
    fflush(stdout);

    for (int i = 0; i < o.threads; i++) {
        for (int k = 0; k < ts[i].nconns; k++)
            free(ts[i].conns[k].req);
        free(ts[i].conns);
        free(ts[i].body);
        close(ts[i].ep);
    }
    free(ts);
    freeaddrinfo(ai);
    return 0;
}
