/* Fibers on a small pool of threads (ucontext), and condition variables and events for them. */
#define _GNU_SOURCE
#include "fiber.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define FIBER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FIBER_ASAN 1
#endif
#endif
#ifdef FIBER_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define FIBER_VALGRIND 1
#endif
#endif

/* One thread of the pool: runs its fibers as they become ready. */
struct fiber_sched {
    struct fiber_pool *pool;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct fiber *ready_head, *ready_tail; /* under lock */
    int sleeping;                          /* under lock: waiting on cond, or in epoll_wait */
    int alive;                             /* fibers not returned; the thread's own */
    ucontext_t ctx;                        /* the thread's own context, between fibers */
    /* With sources attached, the thread waits in epoll on their descriptors and on wakefd
     * (written by fiber_wake) instead of on cond. Made when the first source is attached;
     * wakefd is read by fiber_wake under lock, the rest is the thread's own. */
    int epfd, wakefd;
    struct fiber_source *sources[FIBER_SOURCES_MAX];
    int nsources;
    int runs; /* fibers run since the sources were last looked at */
#ifdef FIBER_ASAN
    const void *stack_bottom; /* the thread's stack, for switching back to it */
    size_t stack_size;
#endif
};

struct fiber {
    ucontext_t ctx;
    struct fiber_sched *sched;
    struct fiber *next; /* in a ready list or a fiber_cond's waiters: never both */
    void *map;          /* the mapping: a guard page, then the stack */
    size_t map_len;
    void *stack;
    size_t stack_size;
    int done;
#ifdef FIBER_ASAN
    void *fake_stack;
#endif
#ifdef FIBER_VALGRIND
    unsigned vg_stack_id;
#endif
};

struct fiber_pool {
    struct fiber_sched *scheds;
    int nscheds, nstarted;
    struct fiber *fibers;
    int nfibers;
    void (*fn)(void *arg);
    void *arg;
    char thread_name[16];
    pthread_mutex_t gate_lock; /* threads wait at the gate until every one of them started */
    pthread_cond_t gate_cond;
    int gate; /* 0 closed, 1 run, -1 give up (a thread could not be started) */
};

static _Thread_local struct fiber *fiber_running;
static _Thread_local struct fiber_sched *sched_self; /* on a pool thread */

/* While fibers keep a thread busy it still looks at its sources after this many. */
#define FIBER_POLL_EVERY 16

/* A FIFO of fibers through their next links: a thread's ready list or a fiber_cond's waiters. */
static void fiber_fifo_push(struct fiber **head, struct fiber **tail, struct fiber *f)
{
    f->next = NULL;
    if (*tail)
        (*tail)->next = f;
    else
        *head = f;
    *tail = f;
}

static struct fiber *fiber_fifo_pop(struct fiber **head, struct fiber **tail)
{
    struct fiber *f = *head;
    if (f) {
        *head = f->next;
        if (!*head)
            *tail = NULL;
        f->next = NULL;
    }
    return f;
}

struct fiber *fiber_current(void)
{
    return fiber_running;
}

/* ---- switching ---- */

/* Called on a fiber's stack right after the switch to it. */
static void fiber_arrived(struct fiber *f)
{
#ifdef FIBER_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &f->sched->stack_bottom, &f->sched->stack_size);
#else
    (void)f;
#endif
}

/* From the fiber to its thread's scheduler; returns when the fiber is run again. */
static void fiber_park(struct fiber *f)
{
    struct fiber_sched *s = f->sched;
#ifdef FIBER_ASAN
    __sanitizer_start_switch_fiber(f->done ? NULL : &f->fake_stack, s->stack_bottom, s->stack_size);
#endif
    swapcontext(&f->ctx, &s->ctx);
    fiber_arrived(f);
}

static void fiber_entry(void)
{
    struct fiber *f = fiber_running;
    fiber_arrived(f);
    f->sched->pool->fn(f->sched->pool->arg);
    f->done = 1;
    fiber_park(f); /* never returns: the scheduler does not run a finished fiber */
    abort();
}

/* Puts @p f on its thread's ready list and wakes the thread. From any thread. */
static void fiber_wake(struct fiber *f)
{
    struct fiber_sched *s = f->sched;
    pthread_mutex_lock(&s->lock);
    fiber_fifo_push(&s->ready_head, &s->ready_tail, f);
    if (s->sleeping) {
        s->sleeping = 0;
        if (s->wakefd >= 0) {
            uint64_t one = 1;
            ssize_t n = write(s->wakefd, &one, sizeof(one));
            (void)n; /* a full counter already means "awake" */
        } else {
            pthread_cond_signal(&s->cond);
        }
    }
    pthread_mutex_unlock(&s->lock);
}

int64_t fiber_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* epoll data of a source's descriptor: the source's slot + 1 above the fd; 0 above is wakefd. */
static uint64_t fiber_watch_key(int slot, int fd)
{
    return ((uint64_t)(uint32_t)(slot + 1) << 32) | (uint32_t)fd;
}

/* Looks at the thread's sources: waits in epoll for them, their earliest deadline or a wake-up
 * when @p block (s->sleeping was set under the lock), else only takes what is ready now. Then
 * calls on_ready for each ready descriptor and on_timer for each deadline passed. */
static void fiber_sched_poll(struct fiber_sched *s, int block)
{
    struct epoll_event evs[64];
    int timeout = block ? -1 : 0, n;
    int64_t now = fiber_now_ms();

    for (int i = 0; i < FIBER_SOURCES_MAX && timeout != 0; i++) {
        struct fiber_source *src = s->sources[i];
        if (src && src->deadline_ms >= 0) {
            int64_t left = src->deadline_ms - now;
            if (left <= 0)
                timeout = 0;
            else if (timeout < 0 || left < timeout)
                timeout = left > INT32_MAX ? INT32_MAX : (int)left;
        }
    }
    n = epoll_wait(s->epfd, evs, 64, timeout);
    if (block) {
        pthread_mutex_lock(&s->lock);
        s->sleeping = 0; /* also when woken by a descriptor: no wake-up needed while it runs */
        pthread_mutex_unlock(&s->lock);
    }
    for (int i = 0; i < n; i++) {
        uint32_t slot = (uint32_t)(evs[i].data.u64 >> 32);
        int fd = (int)(uint32_t)evs[i].data.u64;
        if (slot == 0) {
            uint64_t v;
            ssize_t r = read(s->wakefd, &v, sizeof(v));
            (void)r;
            continue;
        }
        struct fiber_source *src = s->sources[slot - 1];
        if (src)
            src->on_ready(src, fd, evs[i].events);
    }
    now = fiber_now_ms();
    for (int i = 0; i < FIBER_SOURCES_MAX; i++) {
        struct fiber_source *src = s->sources[i];
        if (src && src->deadline_ms >= 0 && src->deadline_ms <= now) {
            src->deadline_ms = -1;
            src->on_timer(src);
        }
    }
    s->runs = 0;
}

int fiber_source_attach(struct fiber_source *src)
{
    struct fiber_sched *s = sched_self;
    int slot = -1;

    if (!s || !src || !src->on_ready || !src->on_timer || !src->on_exit)
        return -1;
    for (int i = 0; i < FIBER_SOURCES_MAX && slot < 0; i++)
        if (!s->sources[i])
            slot = i;
    if (slot < 0)
        return -1;
    if (s->epfd < 0) {
        struct epoll_event ev;
        int epfd = epoll_create1(EPOLL_CLOEXEC);
        int wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.u64 = (uint32_t)wakefd;
        if (epfd < 0 || wakefd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev) != 0) {
            if (epfd >= 0)
                close(epfd);
            if (wakefd >= 0)
                close(wakefd);
            return -1;
        }
        s->epfd = epfd;
        pthread_mutex_lock(&s->lock); /* fiber_wake reads wakefd under the lock */
        s->wakefd = wakefd;
        pthread_mutex_unlock(&s->lock);
    }
    src->sched = s;
    src->slot = slot;
    s->sources[slot] = src;
    s->nsources++;
    return 0;
}

int fiber_source_watch(struct fiber_source *src, int fd, uint32_t events, int added)
{
    struct fiber_sched *s = src->sched;
    struct epoll_event ev;

    if (!s || s->sources[src->slot] != src) /* detached (the thread is ending) */
        return 0;
    if (!events)
        return epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.u64 = fiber_watch_key(src->slot, fd);
    if (added)
        return epoll_ctl(s->epfd, EPOLL_CTL_MOD, fd, &ev);
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        return 0;
    return errno == EEXIST ? epoll_ctl(s->epfd, EPOLL_CTL_MOD, fd, &ev) : -1;
}

/* The thread ends: its sources are detached and told, then its epoll descriptors closed. */
static void fiber_sched_end(struct fiber_sched *s)
{
    for (int i = 0; i < FIBER_SOURCES_MAX; i++) {
        struct fiber_source *src = s->sources[i];
        if (!src)
            continue;
        s->sources[i] = NULL;
        s->nsources--;
        src->on_exit(src);
    }
    if (s->epfd >= 0) {
        close(s->epfd);
        s->epfd = -1;
    }
    pthread_mutex_lock(&s->lock);
    if (s->wakefd >= 0)
        close(s->wakefd);
    s->wakefd = -1;
    pthread_mutex_unlock(&s->lock);
}

static void *fiber_sched_main(void *arg)
{
    struct fiber_sched *s = arg;
    struct fiber_pool *pool = s->pool;
    int go;

    prctl(PR_SET_NAME, pool->thread_name, 0, 0, 0); /* what top -H and /proc/<pid>/task show */
    pthread_mutex_lock(&pool->gate_lock);
    while (pool->gate == 0)
        pthread_cond_wait(&pool->gate_cond, &pool->gate_lock);
    go = pool->gate > 0;
    pthread_mutex_unlock(&pool->gate_lock);
    if (!go)
        return NULL;

    sched_self = s;
    for (;;) {
        struct fiber *f;
        pthread_mutex_lock(&s->lock);
        if (!s->ready_head && s->alive > 0 && s->nsources > 0) {
            s->sleeping = 1;
            pthread_mutex_unlock(&s->lock);
            fiber_sched_poll(s, 1);
            continue;
        }
        while (!s->ready_head && s->alive > 0) {
            s->sleeping = 1;
            pthread_cond_wait(&s->cond, &s->lock);
        }
        s->sleeping = 0; /* also after a spurious wake-up: no signal needed while it runs */
        f = fiber_fifo_pop(&s->ready_head, &s->ready_tail);
        pthread_mutex_unlock(&s->lock);
        if (!f)
            break; /* every fiber of this thread has returned */

        fiber_running = f;
#ifdef FIBER_ASAN
        void *fake = NULL;
        __sanitizer_start_switch_fiber(&fake, f->stack, f->stack_size);
#endif
        swapcontext(&s->ctx, &f->ctx);
#ifdef FIBER_ASAN
        __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
        fiber_running = NULL;
        if (f->done)
            s->alive--;
        if (s->nsources > 0 && ++s->runs >= FIBER_POLL_EVERY)
            fiber_sched_poll(s, 0);
    }
    fiber_sched_end(s);
    sched_self = NULL;
    return NULL;
}

/* ---- the pool ---- */

static void fiber_stack_free(struct fiber *f)
{
#ifdef FIBER_VALGRIND
    if (f->stack)
        VALGRIND_STACK_DEREGISTER(f->vg_stack_id);
#endif
    if (f->map)
        munmap(f->map, f->map_len);
    f->map = f->stack = NULL;
}

static void fiber_pool_free(struct fiber_pool *pool)
{
    for (int i = 0; i < pool->nfibers; i++)
        fiber_stack_free(&pool->fibers[i]);
    for (int i = 0; i < pool->nscheds; i++) {
        pthread_mutex_destroy(&pool->scheds[i].lock);
        pthread_cond_destroy(&pool->scheds[i].cond);
    }
    pthread_mutex_destroy(&pool->gate_lock);
    pthread_cond_destroy(&pool->gate_cond);
    free(pool->fibers);
    free(pool->scheds);
    free(pool);
}

static int fiber_make(struct fiber *f, struct fiber_sched *s, size_t stack_size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t size = (stack_size + page - 1) / page * page;

    f->sched = s;
    f->map_len = size + page;
    f->map = mmap(NULL, f->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                  -1, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return -1;
    }
    if (mprotect(f->map, page, PROT_NONE) != 0) /* a stack overflow faults instead of writing on */
        return -1;
    f->stack = (char *)f->map + page;
    f->stack_size = size;
#ifdef FIBER_VALGRIND
    f->vg_stack_id = VALGRIND_STACK_REGISTER(f->stack, (char *)f->stack + size);
#endif
    if (getcontext(&f->ctx) != 0)
        return -1;
    f->ctx.uc_stack.ss_sp = f->stack;
    f->ctx.uc_stack.ss_size = size;
    f->ctx.uc_link = NULL; /* fiber_entry never returns */
    makecontext(&f->ctx, fiber_entry, 0);
    return 0;
}

struct fiber_pool *fiber_pool_start(int nthreads, int nfibers, size_t stack_size,
                                    const char *thread_name, void (*fn)(void *arg), void *arg,
                                    char *errstr, size_t errlen)
{
    struct fiber_pool *pool;

    if (nthreads < 1 || nfibers < 1 || !fn) {
        snprintf(errstr, errlen, "a fiber pool needs at least one thread and one fiber");
        return NULL;
    }
    if (nthreads > nfibers)
        nthreads = nfibers;
    pool = calloc(1, sizeof(*pool));
    if (!pool) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    pool->fn = fn;
    pool->arg = arg;
    snprintf(pool->thread_name, sizeof(pool->thread_name), "%s", thread_name ? thread_name : "");
    pthread_mutex_init(&pool->gate_lock, NULL);
    pthread_cond_init(&pool->gate_cond, NULL);
    pool->scheds = calloc((size_t)nthreads, sizeof(*pool->scheds));
    pool->fibers = calloc((size_t)nfibers, sizeof(*pool->fibers));
    if (!pool->scheds || !pool->fibers) {
        snprintf(errstr, errlen, "out of memory");
        fiber_pool_free(pool);
        return NULL;
    }
    for (int i = 0; i < nthreads; i++) {
        struct fiber_sched *s = &pool->scheds[i];
        s->pool = pool;
        s->epfd = s->wakefd = -1;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
        pool->nscheds++;
    }
    /* Fiber i runs on thread i mod nthreads; all start ready. */
    for (int i = 0; i < nfibers; i++) {
        struct fiber *f = &pool->fibers[i];
        struct fiber_sched *s = &pool->scheds[i % nthreads];
        pool->nfibers++;
        if (fiber_make(f, s, stack_size) != 0) {
            snprintf(errstr, errlen, "cannot make a fiber stack: %s", strerror(errno));
            fiber_pool_free(pool);
            return NULL;
        }
        fiber_fifo_push(&s->ready_head, &s->ready_tail, f);
        s->alive++;
    }
    for (int i = 0; i < nthreads; i++) {
        pthread_attr_t attr;
        int rc;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024); /* the scheduler loop only */
        rc = pthread_create(&pool->scheds[i].thread, &attr, fiber_sched_main, &pool->scheds[i]);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            snprintf(errstr, errlen, "cannot start a thread: %s", strerror(rc));
            break;
        }
        pool->nstarted++;
    }
    pthread_mutex_lock(&pool->gate_lock);
    pool->gate = pool->nstarted == nthreads ? 1 : -1;
    pthread_cond_broadcast(&pool->gate_cond);
    pthread_mutex_unlock(&pool->gate_lock);
    if (pool->gate < 0) {
        for (int i = 0; i < pool->nstarted; i++)
            pthread_join(pool->scheds[i].thread, NULL);
        fiber_pool_free(pool);
        return NULL;
    }
    return pool;
}

void fiber_pool_join(struct fiber_pool *pool)
{
    if (!pool)
        return;
    for (int i = 0; i < pool->nstarted; i++)
        pthread_join(pool->scheds[i].thread, NULL);
    fiber_pool_free(pool);
}

/* ---- condition variables ---- */

int fiber_cond_init(struct fiber_cond *fc)
{
    fc->head = fc->tail = NULL;
    return pthread_cond_init(&fc->cond, NULL) == 0 ? 0 : -1;
}

void fiber_cond_destroy(struct fiber_cond *fc)
{
    pthread_cond_destroy(&fc->cond);
}

void fiber_cond_wait(struct fiber_cond *fc, pthread_mutex_t *m)
{
    struct fiber *f = fiber_running;
    if (!f) {
        pthread_cond_wait(&fc->cond, m);
        return;
    }
    fiber_fifo_push(&fc->head, &fc->tail, f);
    /* A signal between the unlock and the switch puts this fiber on its thread's ready list;
     * only this thread runs it, and not before the switch below. */
    pthread_mutex_unlock(m);
    fiber_park(f);
    pthread_mutex_lock(m);
}

void fiber_cond_signal(struct fiber_cond *fc)
{
    struct fiber *f = fiber_fifo_pop(&fc->head, &fc->tail);
    if (f)
        fiber_wake(f);
    else
        pthread_cond_signal(&fc->cond);
}

void fiber_cond_broadcast(struct fiber_cond *fc)
{
    struct fiber *f;
    while ((f = fiber_fifo_pop(&fc->head, &fc->tail)))
        fiber_wake(f);
    pthread_cond_broadcast(&fc->cond);
}

/* ---- one-shot events ---- */

enum { FIBER_EV_IDLE, FIBER_EV_FIBER_WAITS, FIBER_EV_THREAD_WAITS, FIBER_EV_POSTED };

int fiber_event_init(struct fiber_event *ev)
{
    ev->waiter = NULL;
    atomic_init(&ev->state, FIBER_EV_IDLE);
    return sem_init(&ev->sem, 0, 0) == 0 ? 0 : -1;
}

void fiber_event_destroy(struct fiber_event *ev)
{
    sem_destroy(&ev->sem);
}

void fiber_event_wait(struct fiber_event *ev)
{
    struct fiber *f = fiber_running;
    if (f) {
        ev->waiter = f;
        if (atomic_exchange(&ev->state, FIBER_EV_FIBER_WAITS) == FIBER_EV_POSTED)
            return;
        fiber_park(f); /* the post's wake puts it on the ready list once */
        return;
    }
    if (atomic_exchange(&ev->state, FIBER_EV_THREAD_WAITS) == FIBER_EV_POSTED)
        return;
    while (sem_wait(&ev->sem) != 0)
        ; /* EINTR: a signal handler ran; the event is still to come */
}

void fiber_event_post(struct fiber_event *ev)
{
    /* Whoever comes second acts: a waiter that finds the event posted returns at once; a post
     * that finds a waiter wakes it, and then touches the event no more. */
    int prev = atomic_exchange(&ev->state, FIBER_EV_POSTED);
    if (prev == FIBER_EV_FIBER_WAITS)
        fiber_wake(ev->waiter);
    else if (prev == FIBER_EV_THREAD_WAITS)
        sem_post(&ev->sem);
}
