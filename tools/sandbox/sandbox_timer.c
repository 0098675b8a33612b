/* pm-sandbox deferred answers: a min-heap of (deadline, suspended request) served by one thread,
 * so added latency never holds a worker thread. */
#include "sandbox.h"

#include "http_server.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sandbox_timer_entry {
    int64_t deadline_ms; /* monotonic */
    uint64_t order;      /* FIFO among equal deadlines */
    struct http_request *req;
    struct sandbox_answer ans;
};

struct sandbox_timer {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC */
    pthread_t thread;
    int stop;
    struct sandbox_timer_entry **heap;
    size_t n, cap;
    uint64_t order;
};

static int sandbox_timer_before(const struct sandbox_timer_entry *a,
                                const struct sandbox_timer_entry *b)
{
    return a->deadline_ms < b->deadline_ms ||
           (a->deadline_ms == b->deadline_ms && a->order < b->order);
}

static void sandbox_heap_swap(struct sandbox_timer_entry **h, size_t i, size_t j)
{
    struct sandbox_timer_entry *tmp = h[i];
    h[i] = h[j];
    h[j] = tmp;
}

static void sandbox_heap_up(struct sandbox_timer *t, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!sandbox_timer_before(t->heap[i], t->heap[parent]))
            break;
        sandbox_heap_swap(t->heap, i, parent);
        i = parent;
    }
}

static void sandbox_heap_down(struct sandbox_timer *t, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < t->n && sandbox_timer_before(t->heap[l], t->heap[m]))
            m = l;
        if (r < t->n && sandbox_timer_before(t->heap[r], t->heap[m]))
            m = r;
        if (m == i)
            return;
        sandbox_heap_swap(t->heap, i, m);
        i = m;
    }
}

/* Removes and returns the earliest entry (caller holds the lock; the heap is not empty). */
static struct sandbox_timer_entry *sandbox_heap_pop(struct sandbox_timer *t)
{
    struct sandbox_timer_entry *top = t->heap[0];
    t->heap[0] = t->heap[--t->n];
    if (t->n)
        sandbox_heap_down(t, 0);
    return top;
}

/* Sends the answer and resumes the request; the request may be freed at once after. */
static void sandbox_timer_fire(struct sandbox_timer_entry *e)
{
    sandbox_answer_send(e->req, &e->ans);
    sandbox_answer_clear(&e->ans);
    http_request_resume(e->req);
    free(e);
}

static void *sandbox_timer_main(void *arg)
{
    struct sandbox_timer *t = arg;

    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        if (t->n == 0) {
            pthread_cond_wait(&t->cond, &t->lock);
            continue;
        }
        int64_t now = sandbox_now_ms();
        if (t->heap[0]->deadline_ms <= now) {
            struct sandbox_timer_entry *e = sandbox_heap_pop(t);
            /* Answering takes the server's locks: never do it while holding ours. */
            pthread_mutex_unlock(&t->lock);
            sandbox_timer_fire(e);
            pthread_mutex_lock(&t->lock);
            continue;
        }
        struct timespec ts = {(time_t)(t->heap[0]->deadline_ms / 1000),
                              (long)(t->heap[0]->deadline_ms % 1000) * 1000000L};
        pthread_cond_timedwait(&t->cond, &t->lock, &ts);
    }
    /* Stopping: whatever still waits is answered now, so the server can be stopped. */
    while (t->n) {
        struct sandbox_timer_entry *e = sandbox_heap_pop(t);
        pthread_mutex_unlock(&t->lock);
        sandbox_timer_fire(e);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

struct sandbox_timer *sandbox_timer_start(char *errstr, size_t errlen)
{
    struct sandbox_timer *t = calloc(1, sizeof(*t));
    pthread_condattr_t attr;
    int rc;

    if (!t) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &attr);
    pthread_condattr_destroy(&attr);
    rc = pthread_create(&t->thread, NULL, sandbox_timer_main, t);
    if (rc != 0) {
        snprintf(errstr, errlen, "cannot start the timer thread: %s", strerror(rc));
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
    }
    return t;
}

int sandbox_timer_schedule(struct sandbox_timer *t, struct http_request *req,
                           struct sandbox_answer *ans, long delay_ms)
{
    struct sandbox_timer_entry *e = malloc(sizeof(*e));

    if (!e)
        return -1;
    e->deadline_ms = sandbox_now_ms() + delay_ms;
    e->req = req;
    e->ans = *ans;
    memset(ans, 0, sizeof(*ans)); /* the body belongs to the entry now */

    pthread_mutex_lock(&t->lock);
    if (t->stop) { /* shutting down: the caller answers at once */
        pthread_mutex_unlock(&t->lock);
        *ans = e->ans;
        free(e);
        return -1;
    }
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 256;
        struct sandbox_timer_entry **nh = realloc(t->heap, ncap * sizeof(*nh));
        if (!nh) {
            pthread_mutex_unlock(&t->lock);
            *ans = e->ans;
            free(e);
            return -1;
        }
        t->heap = nh;
        t->cap = ncap;
    }
    e->order = t->order++;
    t->heap[t->n++] = e;
    sandbox_heap_up(t, t->n - 1);
    /* Only a new earliest deadline changes how long the thread should sleep. */
    if (t->heap[0] == e)
        pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

size_t sandbox_timer_pending(struct sandbox_timer *t)
{
    size_t n;
    pthread_mutex_lock(&t->lock);
    n = t->n;
    pthread_mutex_unlock(&t->lock);
    return n;
}

void sandbox_timer_stop(struct sandbox_timer *t)
{
    int joined;
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    joined = t->stop;
    t->stop = 1;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    if (!joined)
        pthread_join(t->thread, NULL);
}

void sandbox_timer_free(struct sandbox_timer *t)
{
    if (!t)
        return;
    sandbox_timer_stop(t);
    free(t->heap);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
