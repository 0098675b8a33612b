/* Outbound HTTP: blocking calls from any thread, served by one curl multi handle on a thread of its
 * own, or, for calls from fibers, by a multi handle of the fiber's own thread. */
#include "http_client.h"

#include "fiber.h"
#include "log.h"
#include "metrics.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define HTTP_BODY_MAX        (8u * 1024 * 1024) /* larger answers fail as "response too large" */
#define HTTP_HEADERS_MAX     (256u * 1024)      /* the final answer's header block */
#define HTTP_DEFAULT_TIMEOUT 15000L
#define HTTP_DEFAULT_CONNS   512L
#define HTTP_IDLE_EASY_MAX   1024 /* idle easy handles kept for reuse; more are freed */
#define HTTP_POLL_MS         1000

/* Header list nodes kept in the call itself: libcurl only reads the list, so a request with up to
 * this many headers (plus "Expect:") allocates nothing for them. Longer lists use
 * curl_slist_append. */
#define HTTP_HDR_NODES 16

/* One call in flight. It lives on the caller's stack (a thread's or a fiber's); the client thread
 * touches it only between submission and completion (posting done, after which it must not touch
 * it again). */
struct http_xfer {
    CURL *easy;
    struct curl_slist *hdrs;                     /* the list handed to curl */
    struct curl_slist hdr_nodes[HTTP_HDR_NODES]; /* its nodes, pointing at the caller's strings */
    int hdrs_heap;                               /* hdrs came from curl_slist_append */
    CURLcode result;
    int aborted;   /* failed by http_client_free or before it reached curl */
    int too_large; /* body or header block over its cap */
    /* Posted once the call is finished. Its own event, not the client lock: the caller wakes
     * without contending with the client thread and the other callers for that lock. */
    struct fiber_event done; /* the caller waits here (a fiber or a thread) */
    struct http_xfer *next;  /* pending queue, then the thread's active list */
    struct http_xfer *prev;

    char *body;
    size_t body_len, body_cap;
    char *hdr;
    size_t hdr_len, hdr_cap;
    char errbuf[CURL_ERROR_SIZE];
};

struct http_easy_slot {
    CURL *easy;
    struct http_easy_slot *next;
};

struct http_client {
    CURLM *multi;
    /* The client thread waits on epoll for exactly the sockets curl asks for (its socket
     * callback) and on an eventfd that callers write to hand over new calls. curl only looks at
     * the sockets that are ready (curl_multi_socket_action), so hundreds of calls in flight cost
     * nothing while they wait. */
    int epfd;
    int wakefd;
    int64_t timer_at_ms; /* when curl wants its timeout action; -1 none (client thread only) */
    pthread_t thread;
    int thread_started;
    long timeout_ms;
    long connect_timeout_ms;
    long max_connections;
    char user_agent[128];

    /* 1 while the client thread waits in epoll_wait with nothing pending: set under the lock
     * after it found the pending queue empty, cleared by the first caller that queues a call
     * (that caller writes the eventfd) or by the thread when epoll_wait returns. Callers that
     * find it 0 skip the eventfd write: the thread looks at the queue before it sleeps again. */
    atomic_int sleeping;

    /* lock guards everything below. */
    pthread_mutex_t lock;
    pthread_cond_t idle; /* signalled when callers drops to 0 */
    int stopping;
    long callers;       /* threads inside http_client_do */
    int nthread_multis; /* struct http_tm alive (their threads free them when they end) */
    struct http_xfer *pending_head, *pending_tail;
    struct http_easy_slot *free_easy;
    int nfree_easy;

    /* Only the client thread touches this list. */
    struct http_xfer *active;

    struct metrics_family *m_requests;
    struct metrics_family *m_duration;
};

static pthread_once_t http_global_once = PTHREAD_ONCE_INIT;
static CURLcode http_global_rc = CURLE_OK;

static void http_global_init(void)
{
    http_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* --- buffers filled by curl's callbacks (client thread) --- */

/* Appends @p len bytes to a NUL-terminated growing buffer capped at @p max bytes of content.
 * @returns 0, or -1 when the cap is exceeded or memory runs out. */
static int http_buf_append(char **buf, size_t *len, size_t *cap, size_t max, const char *data,
                           size_t n)
{
    if (n > max || *len > max - n)
        return -1;
    if (*len + n + 1 > *cap) {
        size_t ncap = *cap ? *cap : 1024;
        while (ncap < *len + n + 1)
            ncap *= 2;
        if (ncap > max + 1)
            ncap = max + 1;
        char *nb = realloc(*buf, ncap);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static size_t http_on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_xfer *x = userp;
    size_t n = size * nmemb;
    if (http_buf_append(&x->body, &x->body_len, &x->body_cap, HTTP_BODY_MAX, data, n) != 0) {
        x->too_large = 1;
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    }
    return n;
}

static size_t http_on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_xfer *x = userp;
    size_t n = size * nmemb;
    /* A new status line starts a new answer (after 100 Continue, or a redirect that is not
     * followed): only the final answer's headers are kept. */
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
        x->hdr_len = 0;
    if (http_buf_append(&x->hdr, &x->hdr_len, &x->hdr_cap, HTTP_HEADERS_MAX, data, n) != 0) {
        x->too_large = 1;
        return 0;
    }
    return n;
}

/* --- the client thread --- */

/* Marks @p x finished and wakes its caller. After this the thread must not touch @p x. */
static void http_xfer_complete(struct http_xfer *x, CURLcode result, int aborted)
{
    x->result = result;
    x->aborted = aborted;
    fiber_event_post(&x->done); /* orders the writes above before the caller's wait returns */
}

static void http_active_unlink(struct http_client *c, struct http_xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        c->active = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->next = x->prev = NULL;
}

/* curl's socket callback: keep epoll watching what curl wants on @p s. */
static int http_on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct http_client *c = userp;
    struct epoll_event ev;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(c->epfd, EPOLL_CTL_DEL, s, NULL);
        curl_multi_assign(c->multi, s, NULL);
        return 0;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
    ev.data.fd = s;
    if (socketp) {
        epoll_ctl(c->epfd, EPOLL_CTL_MOD, s, &ev);
    } else {
        if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, s, &ev) != 0)
            epoll_ctl(c->epfd, EPOLL_CTL_MOD, s, &ev); /* a reused descriptor */
        curl_multi_assign(c->multi, s, c);
    }
    return 0;
}

/* curl's timer callback: when to call curl_multi_socket_action(CURL_SOCKET_TIMEOUT). */
static int http_on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct http_client *c = userp;
    (void)multi;
    c->timer_at_ms = timeout_ms < 0 ? -1 : fiber_now_ms() + timeout_ms;
    return 0;
}

/* After a timeout action: the deadline to keep (@p at when the timer callback set one during the
 * action, else curl's own view). An action taken a fraction of a millisecond before curl's
 * deadline does nothing, and curl does not announce a deadline it announced before, so without
 * asking again that timer (a request's timeout, say) would be lost. */
static int64_t http_timer_after_action(CURLM *multi, int64_t at)
{
    long ms = -1;
    if (at >= 0 || curl_multi_timeout(multi, &ms) != CURLM_OK || ms < 0)
        return at;
    return fiber_now_ms() + ms;
}

static void http_wake(struct http_client *c)
{
    uint64_t one = 1;
    ssize_t n = write(c->wakefd, &one, sizeof(one));
    (void)n; /* a full counter already means "awake" */
}

static void http_finish_done(struct http_client *c)
{
    CURLMsg *msg;
    int queued;
    while ((msg = curl_multi_info_read(c->multi, &queued)) != NULL) {
        char *priv = NULL;
        struct http_xfer *x;
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result; /* msg is invalid after remove_handle */
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        x = (struct http_xfer *)(void *)priv;
        curl_multi_remove_handle(c->multi, easy);
        http_active_unlink(c, x);
        http_xfer_complete(x, result, 0);
    }
}

static void *http_client_run(void *arg)
{
    struct http_client *c = arg;
    struct epoll_event events[64];

    prctl(PR_SET_NAME, "pm-http", 0, 0, 0); /* what top -H and /proc/<pid>/task show */

    for (;;) {
        struct http_xfer *batch, *x, *next;
        int stopping, running = 0, n, wait_ms = HTTP_POLL_MS;

        pthread_mutex_lock(&c->lock);
        stopping = c->stopping;
        batch = c->pending_head;
        c->pending_head = c->pending_tail = NULL;
        pthread_mutex_unlock(&c->lock);

        for (x = batch; x; x = next) {
            next = x->next;
            x->next = x->prev = NULL;
            if (stopping || curl_multi_add_handle(c->multi, x->easy) != CURLM_OK) {
                http_xfer_complete(x, CURLE_ABORTED_BY_CALLBACK, 1);
                continue;
            }
            x->next = c->active;
            if (c->active)
                c->active->prev = x;
            c->active = x;
        }
        if (stopping)
            break;

        if (c->timer_at_ms >= 0) {
            int64_t left = c->timer_at_ms - fiber_now_ms();
            wait_ms = left <= 0 ? 0 : left < HTTP_POLL_MS ? (int)left : HTTP_POLL_MS;
        }
        if (wait_ms > 0) {
            pthread_mutex_lock(&c->lock);
            if (c->pending_head || c->stopping)
                wait_ms = 0; /* queued since the batch was taken: no sleep, no wake needed */
            else
                atomic_store(&c->sleeping, 1);
            pthread_mutex_unlock(&c->lock);
        }
        n = epoll_wait(c->epfd, events, 64, wait_ms);
        atomic_store(&c->sleeping, 0);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd, flags = 0;
            if (fd == c->wakefd) {
                uint64_t v;
                ssize_t r = read(c->wakefd, &v, sizeof(v));
                (void)r;
                continue;
            }
            if (events[i].events & EPOLLIN)
                flags |= CURL_CSELECT_IN;
            if (events[i].events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (events[i].events & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
            curl_multi_socket_action(c->multi, fd, flags, &running);
        }
        if (c->timer_at_ms >= 0 && fiber_now_ms() >= c->timer_at_ms) {
            c->timer_at_ms = -1;
            curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
            c->timer_at_ms = http_timer_after_action(c->multi, c->timer_at_ms);
        }
        http_finish_done(c);
    }

    /* Stopping: calls still in progress fail; their callers recycle the easy handles. */
    while (c->active) {
        struct http_xfer *x = c->active;
        curl_multi_remove_handle(c->multi, x->easy);
        http_active_unlink(c, x);
        http_xfer_complete(x, CURLE_ABORTED_BY_CALLBACK, 1);
    }
    return NULL;
}

/* --- multi handles of fiber pool threads --- */

/* A fiber pool thread's own multi handle, for calls made from its fibers: the transfer is added,
 * driven and finished on the caller's own thread (the scheduler watches the sockets between
 * fibers), so an answer wakes its fiber without passing through the client thread and without a
 * thread switch. Only that thread touches it; it is freed when the thread ends. */
struct http_tm {
    struct fiber_source src; /* first: the callbacks get it */
    struct http_client *c;
    CURLM *multi;
    struct http_tm *next; /* the thread's list */
};

static _Thread_local struct http_tm *http_thread_multis;

static int http_tm_on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct http_tm *tm = userp;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        fiber_source_watch(&tm->src, s, 0, 1);
        curl_multi_assign(tm->multi, s, NULL);
        return 0;
    }
    fiber_source_watch(&tm->src, s,
                       ((what & CURL_POLL_IN) ? EPOLLIN : 0) |
                           ((what & CURL_POLL_OUT) ? EPOLLOUT : 0),
                       socketp != NULL);
    if (!socketp)
        curl_multi_assign(tm->multi, s, tm);
    return 0;
}

static int http_tm_on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct http_tm *tm = userp;
    (void)multi;
    tm->src.deadline_ms = timeout_ms < 0 ? -1 : fiber_now_ms() + timeout_ms;
    return 0;
}

/* Finished transfers wake their fibers (on this thread: they only become ready). */
static void http_tm_finish(struct http_tm *tm)
{
    CURLMsg *msg;
    int queued;
    while ((msg = curl_multi_info_read(tm->multi, &queued)) != NULL) {
        char *priv = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result; /* msg is invalid after remove_handle */
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        curl_multi_remove_handle(tm->multi, easy);
        http_xfer_complete((struct http_xfer *)(void *)priv, result, 0);
    }
}

static void http_tm_on_ready(struct fiber_source *src, int fd, uint32_t events)
{
    struct http_tm *tm = (struct http_tm *)(void *)src;
    int flags = 0, running = 0;
    if (events & EPOLLIN)
        flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP))
        flags |= CURL_CSELECT_ERR;
    curl_multi_socket_action(tm->multi, fd, flags, &running);
    http_tm_finish(tm);
}

static void http_tm_on_timer_due(struct fiber_source *src)
{
    struct http_tm *tm = (struct http_tm *)(void *)src;
    int running = 0;
    curl_multi_socket_action(tm->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    tm->src.deadline_ms = http_timer_after_action(tm->multi, tm->src.deadline_ms);
    http_tm_finish(tm);
}

/* The thread ends: no call of its fibers is in progress any more. */
static void http_tm_on_exit(struct fiber_source *src)
{
    struct http_tm *tm = (struct http_tm *)(void *)src;
    struct http_client *c = tm->c;

    for (struct http_tm **p = &http_thread_multis; *p; p = &(*p)->next)
        if (*p == tm) {
            *p = tm->next;
            break;
        }
    curl_multi_cleanup(tm->multi); /* closes its cached connections */
    free(tm);
    pthread_mutex_lock(&c->lock);
    if (--c->nthread_multis == 0)
        pthread_cond_broadcast(&c->idle);
    pthread_mutex_unlock(&c->lock);
}

/* The multi handle of this thread for @p c, made on first use: NULL when the caller is not a
 * fiber (or it cannot be made), and the call goes to the client thread. */
static struct http_tm *http_tm_get(struct http_client *c)
{
    struct http_tm *tm;

    if (!fiber_current())
        return NULL;
    for (tm = http_thread_multis; tm; tm = tm->next)
        if (tm->c == c)
            return tm;
    tm = calloc(1, sizeof(*tm));
    if (!tm)
        return NULL;
    tm->c = c;
    tm->multi = curl_multi_init();
    if (!tm->multi) {
        free(tm);
        return NULL;
    }
    curl_multi_setopt(tm->multi, CURLMOPT_MAXCONNECTS, c->max_connections);
    curl_multi_setopt(tm->multi, CURLMOPT_SOCKETFUNCTION, http_tm_on_socket);
    curl_multi_setopt(tm->multi, CURLMOPT_SOCKETDATA, tm);
    curl_multi_setopt(tm->multi, CURLMOPT_TIMERFUNCTION, http_tm_on_timer);
    curl_multi_setopt(tm->multi, CURLMOPT_TIMERDATA, tm);
    tm->src.on_ready = http_tm_on_ready;
    tm->src.on_timer = http_tm_on_timer_due;
    tm->src.on_exit = http_tm_on_exit;
    tm->src.deadline_ms = -1;
    if (fiber_source_attach(&tm->src) != 0) {
        curl_multi_cleanup(tm->multi);
        free(tm);
        return NULL;
    }
    pthread_mutex_lock(&c->lock);
    c->nthread_multis++;
    pthread_mutex_unlock(&c->lock);
    tm->next = http_thread_multis;
    http_thread_multis = tm;
    return tm;
}

/* --- public API --- */

struct http_client *http_client_new(const struct http_client_options *opts, char *errstr,
                                    size_t errlen)
{
    struct http_client *c = NULL;
    int locks = 0;

    pthread_once(&http_global_once, http_global_init);
    if (http_global_rc != CURLE_OK) {
        snprintf(errstr, errlen, "curl_global_init failed: %s", curl_easy_strerror(http_global_rc));
        return NULL;
    }
    if (opts->timeout_ms < 0 || opts->connect_timeout_ms < 0 || opts->max_connections < 0) {
        snprintf(errstr, errlen, "HTTP client timeouts and connection limit must not be negative");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(errstr, errlen, "out of memory");
        goto fail;
    }
    c->epfd = c->wakefd = -1;
    c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : HTTP_DEFAULT_TIMEOUT;
    c->connect_timeout_ms = opts->connect_timeout_ms;
    if (!c->connect_timeout_ms)
        c->connect_timeout_ms = c->timeout_ms < 10000 ? c->timeout_ms : 10000;
    snprintf(c->user_agent, sizeof(c->user_agent), "%s",
             opts->user_agent ? opts->user_agent : "pm-bridge/" PM_VERSION);

    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        snprintf(errstr, errlen, "cannot create a mutex");
        goto fail;
    }
    if (pthread_cond_init(&c->idle, NULL) != 0) {
        pthread_mutex_destroy(&c->lock);
        snprintf(errstr, errlen, "cannot create a condition variable");
        goto fail;
    }
    locks = 1;

    c->multi = curl_multi_init();
    if (!c->multi) {
        snprintf(errstr, errlen, "curl_multi_init failed");
        goto fail;
    }
    c->max_connections = opts->max_connections ? opts->max_connections : HTTP_DEFAULT_CONNS;
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, c->max_connections);
    c->timer_at_ms = -1;
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    c->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->epfd < 0 || c->wakefd < 0) {
        snprintf(errstr, errlen, "cannot create the HTTP client's epoll or eventfd");
        goto fail;
    }
    {
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.fd = c->wakefd;
        epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->wakefd, &ev);
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, http_on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, http_on_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);

    if (opts->metrics) {
        static const char *const req_labels[] = {"target", "status", NULL};
        static const char *const dur_labels[] = {"target", NULL};
        const char *prefix = opts->metrics_prefix ? opts->metrics_prefix : "pm";
        char name[160];

        snprintf(name, sizeof(name), "%s_outbound_requests_total", prefix);
        c->m_requests = metrics_family_new(opts->metrics, METRICS_COUNTER, name,
                                           "Outbound HTTP requests by target and status "
                                           "(\"error\" when no answer arrived).",
                                           req_labels, NULL, 0);
        snprintf(name, sizeof(name), "%s_outbound_request_duration_seconds", prefix);
        c->m_duration = metrics_family_new(opts->metrics, METRICS_HISTOGRAM, name,
                                           "Outbound HTTP request duration by target.", dur_labels,
                                           metrics_duration_buckets, metrics_duration_nbuckets);
        if (!c->m_requests || !c->m_duration) {
            snprintf(errstr, errlen, "cannot declare the outbound request metrics (bad prefix?)");
            goto fail;
        }
    }

    if (pthread_create(&c->thread, NULL, http_client_run, c) != 0) {
        snprintf(errstr, errlen, "cannot start the HTTP client thread");
        goto fail;
    }
    c->thread_started = 1;
    return c;

fail:
    if (c) {
        if (c->multi)
            curl_multi_cleanup(c->multi);
        if (c->epfd >= 0)
            close(c->epfd);
        if (c->wakefd >= 0)
            close(c->wakefd);
        if (locks) {
            pthread_cond_destroy(&c->idle);
            pthread_mutex_destroy(&c->lock);
        }
        free(c);
    }
    return NULL;
}

/* Enters http_client_do: counts the caller (the client is freed only once every caller has
 * left) and takes an idle easy handle (reset) from the free list, in one lock.
 * @returns 0 with *@p e set (NULL when none was idle: the caller makes one), or -1 when the
 * client is stopping (not counted). */
static int http_enter(struct http_client *c, CURL **e)
{
    struct http_easy_slot *s = NULL;

    *e = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->stopping) {
        pthread_mutex_unlock(&c->lock);
        return -1;
    }
    c->callers++;
    s = c->free_easy;
    if (s) {
        c->free_easy = s->next;
        c->nfree_easy--;
    }
    pthread_mutex_unlock(&c->lock);
    if (s) {
        *e = s->easy;
        free(s);
    }
    return 0;
}

/* Leaves http_client_do: @p e (may be NULL) is reset and kept for the next call (its
 * connections live in the multi's cache), and the caller is no longer counted. */
static void http_leave(struct http_client *c, CURL *e)
{
    struct http_easy_slot *s = NULL;

    if (e) {
        curl_easy_reset(e);
        s = malloc(sizeof(*s));
    }
    pthread_mutex_lock(&c->lock);
    if (s && c->nfree_easy < HTTP_IDLE_EASY_MAX) {
        s->easy = e;
        s->next = c->free_easy;
        c->free_easy = s;
        c->nfree_easy++;
        e = NULL;
        s = NULL;
    }
    if (--c->callers == 0)
        pthread_cond_broadcast(&c->idle);
    pthread_mutex_unlock(&c->lock);
    free(s);
    if (e)
        curl_easy_cleanup(e);
}

/* Sets every option of one call on @p x->easy. @returns 0, or -1 with a reason in @p err. */
static int http_easy_setup(struct http_client *c, const struct http_call *call, struct http_xfer *x,
                           char *err, size_t errlen)
{
    CURL *e = x->easy;
    long timeout = call->timeout_ms > 0 ? call->timeout_ms : c->timeout_ms;
    long connect_timeout = c->connect_timeout_ms < timeout ? c->connect_timeout_ms : timeout;
    int ok = 1;

    /* Expect: 100-continue would cost a round trip per POST for nothing: the servers we call
     * read small bodies anyway. */
    size_t nh = 1;
    for (const char *const *h = call->headers; h && *h; h++)
        nh++;
    if (nh <= HTTP_HDR_NODES) {
        /* The strings stay the caller's (call->headers outlives the transfer). */
        static char expect[] = "Expect:"; /* never written: libcurl only reads header lists */
        x->hdr_nodes[0].data = expect;
        for (size_t i = 1; i < nh; i++)
            x->hdr_nodes[i].data = (char *)(uintptr_t)call->headers[i - 1];
        for (size_t i = 0; i < nh; i++)
            x->hdr_nodes[i].next = i + 1 < nh ? &x->hdr_nodes[i + 1] : NULL;
        x->hdrs = &x->hdr_nodes[0];
    } else {
        x->hdrs_heap = 1;
        x->hdrs = curl_slist_append(NULL, "Expect:");
        if (!x->hdrs)
            goto oom;
        for (const char *const *h = call->headers; h && *h; h++) {
            struct curl_slist *n = curl_slist_append(x->hdrs, *h);
            if (!n)
                goto oom;
            x->hdrs = n;
        }
    }

    ok &= curl_easy_setopt(e, CURLOPT_URL, call->url) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)(void *)x) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "") == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_body) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_WRITEDATA, x) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_on_header) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_HEADERDATA, x) == CURLE_OK;
    /* Refuses an announced oversized body before reading it; the write callback catches the
     * rest (chunked or compressed answers). */
    ok &= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)HTTP_BODY_MAX) == CURLE_OK;
    if (call->basic_user) {
        ok &= curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC) == CURLE_OK;
        ok &= curl_easy_setopt(e, CURLOPT_USERNAME, call->basic_user) == CURLE_OK;
        ok &= curl_easy_setopt(e, CURLOPT_PASSWORD,
                               call->basic_password ? call->basic_password : "") == CURLE_OK;
    }

    if (strcmp(call->method, "GET") == 0 && !call->body) {
        ok &= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK;
    } else if (strcmp(call->method, "HEAD") == 0) {
        ok &= curl_easy_setopt(e, CURLOPT_NOBODY, 1L) == CURLE_OK;
    } else {
        if (call->body || strcmp(call->method, "POST") == 0) {
            /* POSTFIELDS borrows the body: the caller blocks until the transfer is over. */
            ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                                   (curl_off_t)(call->body ? call->body_len : 0)) == CURLE_OK;
            ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body ? call->body : "") == CURLE_OK;
        }
        if (strcmp(call->method, "POST") != 0)
            ok &= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, call->method) == CURLE_OK;
    }
    if (!ok) {
        snprintf(err, errlen, "cannot set up the request (unsupported option in this libcurl)");
        return -1;
    }
    return 0;

oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* Does @p hay contain @p needle (when it is long enough to mean something)? */
static int http_contains(const char *hay, const char *needle, size_t n)
{
    size_t hn = strlen(hay);
    if (!needle || n < 4 || n > hn)
        return 0;
    for (size_t i = 0; i + n <= hn; i++)
        if (memcmp(hay + i, needle, n) == 0)
            return 1;
    return 0;
}

/* curl's error texts name hosts and ports, never request data; this makes sure of it, falling
 * back to curl's generic text when the message quotes the query, a header value, the
 * credentials or the body. */
static void http_error_scrub(char *msg, size_t msglen, const struct http_call *call, CURLcode code)
{
    int leak = 0;
    const char *q = strchr(call->url, '?');

    if (q)
        leak |= http_contains(msg, q + 1, strlen(q + 1));
    leak |= call->basic_user && http_contains(msg, call->basic_user, strlen(call->basic_user));
    leak |= call->basic_password &&
            http_contains(msg, call->basic_password, strlen(call->basic_password));
    if (call->body)
        leak |= http_contains(msg, call->body, call->body_len < 32 ? call->body_len : 32);
    for (const char *const *h = call->headers; h && *h && !leak; h++) {
        const char *v = strchr(*h, ':');
        if (!v)
            continue;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        leak |= http_contains(msg, v, strlen(v));
    }
    if (leak)
        snprintf(msg, msglen, "%s", curl_easy_strerror(code));
}

static void http_metrics_record(struct http_client *c, const struct http_call *call, long status,
                                double total_s)
{
    const char *target = call->target ? call->target : "other";
    char st[16];

    if (!c->m_requests)
        return;
    if (status > 0)
        snprintf(st, sizeof(st), "%ld", status);
    else
        snprintf(st, sizeof(st), "error");
    metrics_inc(metrics_series2(c->m_requests, target, st));
    metrics_observe(metrics_series1(c->m_duration, target), total_s);
}

static double http_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int http_client_do(struct http_client *c, const struct http_call *call, struct http_reply *out)
{
    struct http_xfer x;
    struct http_tm *tm;
    int rc = -1, counted = 0, sem = 0, queued = 0, wake = 0;
    double started = http_now_s();
    char setup_err[128];

    memset(out, 0, sizeof(*out));
    memset(&x, 0, sizeof(x));

    counted = http_enter(c, &x.easy) == 0;
    if (!counted) {
        out->curl_code = CURLE_ABORTED_BY_CALLBACK;
        snprintf(out->error, sizeof(out->error), "the HTTP client is shutting down");
        goto out;
    }
    if (!call->method || !call->url) {
        out->curl_code = CURLE_BAD_FUNCTION_ARGUMENT;
        snprintf(out->error, sizeof(out->error), "request without method or URL");
        goto out;
    }
    if (fiber_event_init(&x.done) != 0) {
        out->curl_code = CURLE_OUT_OF_MEMORY;
        snprintf(out->error, sizeof(out->error), "cannot create a semaphore");
        goto out;
    }
    sem = 1;
    if (!x.easy)
        x.easy = curl_easy_init();
    if (!x.easy) {
        out->curl_code = CURLE_OUT_OF_MEMORY;
        snprintf(out->error, sizeof(out->error), "curl_easy_init failed");
        goto out;
    }
    if (http_easy_setup(c, call, &x, setup_err, sizeof(setup_err)) != 0) {
        out->curl_code = CURLE_FAILED_INIT;
        snprintf(out->error, sizeof(out->error), "%s", setup_err);
        goto out;
    }

    tm = http_tm_get(c);
    if (tm) {
        /* curl asks for a timeout action at once; the thread takes it after this fiber waits,
         * together with whatever its other fibers added meanwhile. */
        if (curl_multi_add_handle(tm->multi, x.easy) != CURLM_OK) {
            out->curl_code = CURLE_FAILED_INIT;
            snprintf(out->error, sizeof(out->error), "cannot start the request");
            goto out;
        }
        queued = 1;
    } else {
        pthread_mutex_lock(&c->lock);
        if (c->stopping) {
            x.aborted = 1;
            x.result = CURLE_ABORTED_BY_CALLBACK;
        } else {
            queued = 1;
            if (c->pending_tail)
                c->pending_tail->next = &x;
            else
                c->pending_head = &x;
            c->pending_tail = &x;
            wake = atomic_exchange(&c->sleeping, 0);
        }
        pthread_mutex_unlock(&c->lock);
        /* The client lives until every caller has left (http_client_free waits for them). */
        if (wake)
            http_wake(c);
    }

    if (queued)
        fiber_event_wait(&x.done);

    curl_easy_getinfo(x.easy, CURLINFO_NUM_CONNECTS, &out->new_connections);
    if (x.aborted) {
        out->curl_code = CURLE_ABORTED_BY_CALLBACK;
        snprintf(out->error, sizeof(out->error), "the HTTP client is shutting down");
        goto out;
    }
    out->total_s = http_now_s() - started;
    if (x.too_large || x.result == CURLE_FILESIZE_EXCEEDED) {
        out->curl_code = CURLE_FILESIZE_EXCEEDED;
        snprintf(out->error, sizeof(out->error), "response too large");
        goto out;
    }
    if (x.result != CURLE_OK) {
        out->curl_code = (int)x.result;
        out->timed_out = x.result == CURLE_OPERATION_TIMEDOUT;
        snprintf(out->error, sizeof(out->error), "%s",
                 x.errbuf[0] ? x.errbuf : curl_easy_strerror(x.result));
        /* curl ends some messages with a newline */
        out->error[strcspn(out->error, "\r\n")] = '\0';
        http_error_scrub(out->error, sizeof(out->error), call, x.result);
        goto out;
    }
    curl_easy_getinfo(x.easy, CURLINFO_RESPONSE_CODE, &out->status);
    if (out->status <= 0) {
        out->status = 0;
        out->curl_code = CURLE_WEIRD_SERVER_REPLY;
        snprintf(out->error, sizeof(out->error), "no HTTP status in the answer");
        goto out;
    }
    out->body = x.body;
    out->body_len = x.body_len;
    out->headers = x.hdr;
    x.body = x.hdr = NULL; /* owned by out now */
    rc = 0;

out:
    if (rc != 0)
        out->status = 0;
    if (!out->body) {
        out->body = calloc(1, 1);
        out->body_len = 0;
    }
    if (!out->headers)
        out->headers = calloc(1, 1);
    if (counted && !out->total_s)
        out->total_s = http_now_s() - started;
    if (counted && !x.aborted)
        http_metrics_record(c, call, out->status, out->total_s);
    free(x.body);
    free(x.hdr);
    if (x.hdrs_heap)
        curl_slist_free_all(x.hdrs);
    if (sem)
        fiber_event_destroy(&x.done);
    if (counted)
        http_leave(c, x.easy);
    return rc;
}

void http_reply_free(struct http_reply *r)
{
    if (!r)
        return;
    free(r->body);
    free(r->headers);
    r->body = NULL;
    r->headers = NULL;
    r->body_len = 0;
}

int http_reply_header(const struct http_reply *r, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    const char *line;

    if (!r || !r->headers || !outlen)
        return -1;
    for (line = r->headers; *line;) {
        const char *eol = strchr(line, '\n');
        const char *end = eol ? eol : line + strlen(line);

        if ((size_t)(end - line) > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
                end--;
            size_t n = (size_t)(end - v);
            if (n >= outlen)
                n = outlen - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return 0;
        }
        if (!eol)
            break;
        line = eol + 1;
    }
    return -1;
}

long http_reply_retry_after_ms(const struct http_reply *r)
{
    char v[128];
    const char *p;

    if (http_reply_header(r, "Retry-After", v, sizeof(v)) != 0 || !v[0])
        return -1;
    for (p = v; *p >= '0' && *p <= '9'; p++)
        ;
    if (!*p) { /* delta-seconds */
        long long secs = 0;
        for (p = v; *p; p++) {
            secs = secs * 10 + (*p - '0');
            if (secs > LONG_MAX / 1000)
                return LONG_MAX / 1000 * 1000;
        }
        return (long)(secs * 1000);
    }
    time_t when = curl_getdate(v, NULL);
    if (when == (time_t)-1)
        return -1;
    time_t now = time(NULL);
    if (when <= now)
        return 0;
    if ((long long)(when - now) > LONG_MAX / 1000)
        return LONG_MAX / 1000 * 1000;
    return (long)(when - now) * 1000;
}

void http_client_free(struct http_client *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_mutex_unlock(&c->lock);
    if (c->thread_started) {
        http_wake(c);
        pthread_join(c->thread, NULL);
    }
    /* Every call waiting for the client thread has been failed; wait until their threads have
     * left http_client_do (they still recycle easy handles), and until the fiber pool threads
     * that made calls have ended (they free their multi handles then). */
    pthread_mutex_lock(&c->lock);
    for (int warned = 0; c->callers > 0 || c->nthread_multis > 0;) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until); /* the condition's clock */
        until.tv_sec += 10;
        if (pthread_cond_timedwait(&c->idle, &c->lock, &until) == ETIMEDOUT && !warned &&
            c->nthread_multis > 0) {
            /* a caller bug (http_client.h): say what the wait is for rather than hang silently */
            log_warn("HTTP client freed while fiber threads that used it still run; waiting for "
                     "them to end",
                     LOG_I("count", c->nthread_multis));
            warned = 1;
        }
    }
    pthread_mutex_unlock(&c->lock);

    while (c->free_easy) {
        struct http_easy_slot *s = c->free_easy;
        c->free_easy = s->next;
        curl_easy_cleanup(s->easy);
        free(s);
    }
    curl_multi_cleanup(c->multi);
    close(c->epfd);
    close(c->wakefd);
    pthread_cond_destroy(&c->idle);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
