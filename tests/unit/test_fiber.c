/* Tests for common/fiber.c: fibers share a few threads, wait on events and conditions posted from
 * other threads, and the same waits work on ordinary threads. */
#define _GNU_SOURCE
#include "fiber.h"
#include "unit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAX_FIBERS 256

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- events: every fiber blocked at once on one thread, posted from another thread ---- */

struct ev_test {
    int nfibers;
    atomic_int next_id;
    atomic_int waiting; /* fibers that are about to wait on their event */
    int all_waiting;    /* the poster saw every fiber waiting before it posted */
    struct fiber_event ev[MAX_FIBERS];
    int value[MAX_FIBERS]; /* written by the poster before the post */
    int seen[MAX_FIBERS];  /* what the fiber read after its wait */
    pthread_t thread[MAX_FIBERS];
    int in_fiber[MAX_FIBERS];
};

static void ev_fiber(void *arg)
{
    struct ev_test *t = arg;
    int id = atomic_fetch_add(&t->next_id, 1);
    t->thread[id] = pthread_self();
    t->in_fiber[id] = fiber_current() != NULL;
    atomic_fetch_add(&t->waiting, 1);
    fiber_event_wait(&t->ev[id]);
    t->seen[id] = t->value[id];
}

static void *ev_poster(void *arg)
{
    struct ev_test *t = arg;
    /* Post only when every fiber is waiting: on one thread that is only possible if a wait gives
     * the thread to the next fiber. Then post in reverse order of waiting. */
    for (int i = 0; i < 5000 && atomic_load(&t->waiting) < t->nfibers; i++)
        sleep_ms(1);
    t->all_waiting = atomic_load(&t->waiting) == t->nfibers;
    for (int id = t->nfibers - 1; id >= 0; id--) {
        t->value[id] = 1000 + id;
        fiber_event_post(&t->ev[id]);
    }
    return NULL;
}

static void test_events_one_thread(int nthreads, int nfibers)
{
    static struct ev_test t;
    char err[128];
    pthread_t poster;
    struct fiber_pool *pool;
    int distinct = 0;

    memset(&t, 0, sizeof(t));
    t.nfibers = nfibers;
    for (int i = 0; i < nfibers; i++)
        CHECK_INT(fiber_event_init(&t.ev[i]), 0);
    pthread_create(&poster, NULL, ev_poster, &t);
    pool = fiber_pool_start(nthreads, nfibers, 64 * 1024, "test-fiber", ev_fiber, &t, err,
                            sizeof(err));
    CHECK(pool != NULL);
    fiber_pool_join(pool);
    pthread_join(poster, NULL);

    CHECK(t.all_waiting);
    for (int i = 0; i < nfibers; i++) {
        CHECK_INT(t.seen[i], 1000 + i);
        CHECK(t.in_fiber[i]);
        int dup = 0;
        for (int j = 0; j < i; j++)
            if (pthread_equal(t.thread[i], t.thread[j]))
                dup = 1;
        distinct += !dup;
        fiber_event_destroy(&t.ev[i]);
    }
    /* Fibers spread over exactly the threads asked for (fewer when there are fewer fibers). */
    CHECK_INT(distinct, nthreads < nfibers ? nthreads : nfibers);
}

/* ---- a condition variable: a queue fed by a thread, drained by fibers ---- */

struct cond_test {
    pthread_mutex_t lock;
    struct fiber_cond cond;
    int queue[4096];
    int head, tail;
    int quit;
    long sum;           /* under lock */
    int taken[4096];    /* how often each item was taken, under lock */
    atomic_int running; /* fibers inside their loop */
};

static void cond_fiber(void *arg)
{
    struct cond_test *t = arg;
    atomic_fetch_add(&t->running, 1);
    pthread_mutex_lock(&t->lock);
    for (;;) {
        while (!t->quit && t->head == t->tail)
            fiber_cond_wait(&t->cond, &t->lock);
        if (t->head == t->tail)
            break; /* quit and nothing left */
        int item = t->queue[t->head++];
        pthread_mutex_unlock(&t->lock);
        volatile int spin = 0; /* a little work outside the lock */
        for (int i = 0; i < 100; i++)
            spin += i;
        pthread_mutex_lock(&t->lock);
        t->sum += item;
        t->taken[item]++;
    }
    pthread_mutex_unlock(&t->lock);
}

static void test_cond_queue(void)
{
    static struct cond_test t;
    char err[128];
    struct fiber_pool *pool;
    long want = 0;
    const int n = 4000;

    memset(&t, 0, sizeof(t));
    pthread_mutex_init(&t.lock, NULL);
    CHECK_INT(fiber_cond_init(&t.cond), 0);
    pool = fiber_pool_start(2, 32, 64 * 1024, "test-cond", cond_fiber, &t, err, sizeof(err));
    CHECK(pool != NULL);
    for (int i = 0; i < 5000 && atomic_load(&t.running) < 32; i++)
        sleep_ms(1);
    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&t.lock);
        t.queue[t.tail++] = i;
        fiber_cond_signal(&t.cond);
        pthread_mutex_unlock(&t.lock);
        want += i;
        if (i % 500 == 0)
            sleep_ms(2); /* let the fibers go back to waiting now and then */
    }
    /* Signals alone (no broadcast yet) get every item taken. */
    int drained = 0;
    for (int i = 0; i < 5000 && !drained; i++) {
        pthread_mutex_lock(&t.lock);
        drained = t.head == t.tail;
        pthread_mutex_unlock(&t.lock);
        if (!drained)
            sleep_ms(1);
    }
    CHECK(drained);
    pthread_mutex_lock(&t.lock);
    t.quit = 1;
    fiber_cond_broadcast(&t.cond);
    pthread_mutex_unlock(&t.lock);
    fiber_pool_join(pool); /* returns only if every fiber saw the broadcast */

    CHECK_INT(t.sum, want);
    int once = 1;
    for (int i = 0; i < n; i++)
        if (t.taken[i] != 1)
            once = 0;
    CHECK(once);
    fiber_cond_destroy(&t.cond);
    pthread_mutex_destroy(&t.lock);
}

/* ---- the same waits on ordinary threads ---- */

struct thread_wait {
    struct fiber_event ev;
    pthread_mutex_t lock;
    struct fiber_cond cond;
    int flag;
    int in_fiber;
};

static void *thread_cond_waiter(void *arg)
{
    struct thread_wait *w = arg;
    w->in_fiber = fiber_current() != NULL;
    pthread_mutex_lock(&w->lock);
    while (!w->flag)
        fiber_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void *thread_event_poster(void *arg)
{
    struct thread_wait *w = arg;
    sleep_ms(50);
    fiber_event_post(&w->ev);
    return NULL;
}

static void test_plain_threads(void)
{
    struct thread_wait w;
    pthread_t th;
    struct timespec a, b;

    memset(&w, 0, sizeof(w));
    CHECK(fiber_current() == NULL);

    /* Posted before the wait: the wait returns at once. */
    CHECK_INT(fiber_event_init(&w.ev), 0);
    fiber_event_post(&w.ev);
    fiber_event_wait(&w.ev);
    fiber_event_destroy(&w.ev);

    /* Posted from another thread 50 ms later: the wait blocks until then. */
    CHECK_INT(fiber_event_init(&w.ev), 0);
    clock_gettime(CLOCK_MONOTONIC, &a);
    pthread_create(&th, NULL, thread_event_poster, &w);
    fiber_event_wait(&w.ev);
    clock_gettime(CLOCK_MONOTONIC, &b);
    pthread_join(th, NULL);
    fiber_event_destroy(&w.ev);
    CHECK((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 >= 40);

    /* A thread waiting on a fiber_cond is woken by a signal. */
    pthread_mutex_init(&w.lock, NULL);
    CHECK_INT(fiber_cond_init(&w.cond), 0);
    pthread_create(&th, NULL, thread_cond_waiter, &w);
    sleep_ms(20);
    pthread_mutex_lock(&w.lock);
    w.flag = 1;
    fiber_cond_signal(&w.cond);
    pthread_mutex_unlock(&w.lock);
    pthread_join(th, NULL); /* hangs (and the test times out) if the signal was lost */
    CHECK(!w.in_fiber);
    fiber_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
}

/* ---- a deep stack, and bad arguments ---- */

static int deep_result;

static int deep(int n)
{
    volatile char pad[1024];
    pad[0] = (char)n;
    pad[sizeof(pad) - 1] = (char)n;
    return n == 0 ? pad[0] : deep(n - 1) + (pad[sizeof(pad) - 1] != (char)n);
}

static void deep_fiber(void *arg)
{
    (void)arg;
    deep_result = deep(150) + 1; /* about 150 KiB of a 256 KiB stack */
}

static void never_run(void *arg)
{
    (void)arg;
}

static void test_stack_and_arguments(void)
{
    char err[128] = "";
    struct fiber_pool *pool =
        fiber_pool_start(1, 1, 256 * 1024, "test-deep", deep_fiber, NULL, err, sizeof(err));
    CHECK(pool != NULL);
    fiber_pool_join(pool);
    CHECK_INT(deep_result, 1);

    CHECK(fiber_pool_start(0, 4, 65536, "x", never_run, NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "at least one thread") != NULL);
    err[0] = '\0';
    CHECK(fiber_pool_start(2, 0, 65536, "x", never_run, NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "at least one thread") != NULL);
    fiber_pool_join(NULL); /* a no-op */
}

/* ---- event sources: descriptors and deadlines watched by the pool thread itself ---- */

struct src_test {
    struct fiber_source src;
    struct fiber_source extra[FIBER_SOURCES_MAX];
    int pipefd[2];
    struct fiber_event ev_timer, ev_data;
    atomic_int phase; /* 1: fiber waits for data while idle; 2: fibers busy, data comes */
    atomic_int next_id;
    int timer_calls, ready_calls, exit_calls, cb_in_fiber, cb_other_thread;
    int64_t deadline_set, timer_at;
    int got_busy; /* on_ready saw the byte written while the fibers kept the thread busy */
    long pings;   /* turns taken meanwhile */
    int attach_rc, attach_over_rc, extra_rc;
    pthread_t pool_thread;
    pthread_mutex_t lock;
    struct fiber_cond cond;
    int turn;
};

static void src_cb_check(struct src_test *t)
{
    t->cb_in_fiber |= fiber_current() != NULL;
    t->cb_other_thread |= !pthread_equal(pthread_self(), t->pool_thread);
}

static void src_on_ready(struct fiber_source *src, int fd, uint32_t events)
{
    struct src_test *t = (struct src_test *)(void *)src;
    char b;
    src_cb_check(t);
    if (fd != t->pipefd[0] || !(events & EPOLLIN) || read(fd, &b, 1) != 1)
        return;
    t->ready_calls++;
    if (b == '1')
        fiber_event_post(&t->ev_data);
    else
        t->got_busy = 1;
}

static void src_on_timer(struct fiber_source *src)
{
    struct src_test *t = (struct src_test *)(void *)src;
    src_cb_check(t);
    t->timer_calls++;
    t->timer_at = fiber_now_ms();
    fiber_event_post(&t->ev_timer);
}

static void src_noop_exit(struct fiber_source *src)
{
    (void)src;
}

static struct src_test *src_t; /* the exit callbacks of the extra sources find the test here */

static void src_count_exit(struct fiber_source *src)
{
    (void)src;
    src_cb_check(src_t);
    src_t->exit_calls++;
    /* removing a descriptor after detach is a no-op, not an error */
    if (fiber_source_watch(src, src_t->pipefd[0], 0, 1) != 0)
        src_t->exit_calls += 100;
}

static void src_noop_ready(struct fiber_source *src, int fd, uint32_t events)
{
    (void)src;
    (void)fd;
    (void)events;
}

static void src_noop_timer(struct fiber_source *src)
{
    (void)src;
}

static void src_fiber(void *arg)
{
    struct src_test *t = arg;
    int id = atomic_fetch_add(&t->next_id, 1);

    if (id == 0) {
        t->pool_thread = pthread_self();
        t->src.on_ready = src_on_ready;
        t->src.on_timer = src_on_timer;
        t->src.on_exit = src_count_exit;
        t->deadline_set = fiber_now_ms() + 40;
        t->src.deadline_ms = t->deadline_set;
        t->attach_rc = fiber_source_attach(&t->src);
        t->attach_rc |= fiber_source_watch(&t->src, t->pipefd[0], EPOLLIN, 0);
        /* fill the thread's slots: one more is refused */
        for (int i = 0; i < FIBER_SOURCES_MAX - 1; i++) {
            t->extra[i].on_ready = src_noop_ready;
            t->extra[i].on_timer = src_noop_timer;
            t->extra[i].on_exit = src_count_exit;
            t->extra[i].deadline_ms = -1;
            t->extra_rc |= fiber_source_attach(&t->extra[i]);
        }
        t->extra[FIBER_SOURCES_MAX - 1] = t->extra[0];
        t->attach_over_rc = fiber_source_attach(&t->extra[FIBER_SOURCES_MAX - 1]);

        fiber_event_wait(&t->ev_timer); /* the thread is idle: fiber 1 waits for its turn */
        atomic_store(&t->phase, 1);
        fiber_event_wait(&t->ev_data); /* idle again, until the writer's first byte */
        atomic_store(&t->phase, 2);
    }
    /* Both fibers take turns until on_ready has seen the second byte: the ready list is never
     * empty, so only the thread's look at its sources every few fibers can deliver it. */
    pthread_mutex_lock(&t->lock);
    for (;;) {
        while (t->turn != id && !t->got_busy && t->pings < 50000000)
            fiber_cond_wait(&t->cond, &t->lock);
        if (t->got_busy || t->pings >= 50000000)
            break;
        t->pings++;
        t->turn = !id;
        fiber_cond_signal(&t->cond);
    }
    fiber_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    if (id == 0)
        fiber_source_watch(&t->src, t->pipefd[0], 0, 1);
}

static void *src_writer(void *arg)
{
    struct src_test *t = arg;
    while (atomic_load(&t->phase) < 1)
        sleep_ms(1);
    sleep_ms(30);
    if (write(t->pipefd[1], "1", 1) != 1)
        return NULL;
    while (atomic_load(&t->phase) < 2)
        sleep_ms(1);
    sleep_ms(30);
    if (write(t->pipefd[1], "2", 1) != 1)
        return NULL;
    return NULL;
}

static void test_sources(void)
{
    static struct src_test t;
    struct fiber_source plain = {.on_ready = src_noop_ready,
                                 .on_timer = src_noop_timer,
                                 .on_exit = src_noop_exit,
                                 .deadline_ms = -1};
    char err[128];
    pthread_t writer;
    struct fiber_pool *pool;

    memset(&t, 0, sizeof(t));
    src_t = &t;
    CHECK_INT(pipe(t.pipefd), 0);
    CHECK_INT(fiber_event_init(&t.ev_timer), 0);
    CHECK_INT(fiber_event_init(&t.ev_data), 0);
    pthread_mutex_init(&t.lock, NULL);
    CHECK_INT(fiber_cond_init(&t.cond), 0);
    CHECK_INT(fiber_source_attach(&plain), -1); /* not a pool thread */

    CHECK_INT(pthread_create(&writer, NULL, src_writer, &t), 0);
    pool = fiber_pool_start(1, 2, 64 * 1024, "test-src", src_fiber, &t, err, sizeof(err));
    CHECK(pool != NULL);
    fiber_pool_join(pool);
    atomic_store(&t.phase, 2); /* the writer ends even when a phase was never reached */
    pthread_join(writer, NULL);

    CHECK_INT(t.attach_rc, 0);
    CHECK_INT(t.extra_rc, 0);
    CHECK_INT(t.attach_over_rc, -1);
    CHECK_INT(t.timer_calls, 1);
    CHECK(t.timer_at >= t.deadline_set);
    CHECK_INT(t.ready_calls, 2);
    CHECK_INT(t.got_busy, 1);
    CHECK(t.pings > 0 && t.pings < 50000000);
    CHECK_INT(t.exit_calls, FIBER_SOURCES_MAX); /* each attached source told once, at the end */
    CHECK_INT(t.cb_in_fiber, 0);
    CHECK_INT(t.cb_other_thread, 0);

    fiber_cond_destroy(&t.cond);
    pthread_mutex_destroy(&t.lock);
    fiber_event_destroy(&t.ev_timer);
    fiber_event_destroy(&t.ev_data);
    close(t.pipefd[0]);
    close(t.pipefd[1]);
}

int main(void)
{
    test_events_one_thread(1, 64);  /* 64 waits at once on one thread */
    test_events_one_thread(2, 200); /* spread over two threads */
    test_events_one_thread(8, 3);   /* more threads asked for than fibers */
    test_cond_queue();
    test_plain_threads();
    test_stack_and_arguments();
    test_sources();
    return UNIT_DONE();
}
