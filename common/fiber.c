/* Fibers on a small pool of threads (ucontext), and condition variables and events for them. */
#define _GNU_SOURCE
#include "fiber.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
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
    int sleeping;                          /* under lock: waiting on cond */
    int alive;                             /* fibers not returned; the thread's own */
    ucontext_t ctx;                        /* the thread's own context, between fibers */
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
        pthread_cond_signal(&s->cond);
    }
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

    for (;;) {
        struct fiber *f;
        pthread_mutex_lock(&s->lock);
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
    }
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
