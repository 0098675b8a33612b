/* Fibers: many blocking call chains (consumer handlers) on a few threads, and the waits they use.
 */
#ifndef PM_FIBER_H
#define PM_FIBER_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A fiber is a function with a stack of its own that runs on one thread of a pool and gives that
 * thread up only where it waits through this module: fiber_cond_wait and fiber_event_wait. Its
 * thread then runs another ready fiber of the pool, or sleeps until one is woken. So 64 handlers
 * blocked on HTTP answers cost 64 small stacks, not 64 threads that the kernel switches between.
 *
 * The rules for code that runs on a fiber:
 *  - wait only through fiber_cond_wait / fiber_event_wait (or calls built on them, such as
 *    http_client_do): a pthread_cond_wait, sem_wait or sleep holds up every fiber of the thread;
 *  - hold no mutex across such a wait other than the one fiber_cond_wait releases: another fiber
 *    of the same thread that locks it would never get it back;
 *  - thread-local data stays the thread's, shared by its fibers: use it only between waits.
 * The same waits work from ordinary threads (they block the thread), so library code built on
 * them serves both.
 */

struct fiber;
struct fiber_pool;

/**
 * @brief Start @p nthreads threads (named @p thread_name) that run @p nfibers fibers between
 *        them, each calling fn(arg) once, on its own stack of @p stack_size bytes (a guard page
 *        below). A thread ends when all its fibers have returned.
 * @returns NULL with the reason in @p errstr (nothing left running).
 */
struct fiber_pool *fiber_pool_start(int nthreads, int nfibers, size_t stack_size,
                                    const char *thread_name, void (*fn)(void *arg), void *arg,
                                    char *errstr, size_t errlen);

/** @brief Wait for every fiber to return and every thread to end, then free the pool. */
void fiber_pool_join(struct fiber_pool *pool);

/** @brief The fiber running on this thread, or NULL on an ordinary thread. */
struct fiber *fiber_current(void);

/* A condition variable for fibers and threads alike, used with a pthread mutex. */
struct fiber_cond {
    pthread_cond_t cond;       /* threads wait here */
    struct fiber *head, *tail; /* fibers waiting, oldest first; under the caller's mutex */
};

/** @returns 0, or -1 when the pthread condition cannot be made. */
int fiber_cond_init(struct fiber_cond *fc);
void fiber_cond_destroy(struct fiber_cond *fc);

/**
 * @brief Like pthread_cond_wait: release @p m, wait for a signal, take @p m again. May return
 *        without a signal (callers loop on their predicate, as with pthread_cond_wait).
 */
void fiber_cond_wait(struct fiber_cond *fc, pthread_mutex_t *m);

/** @brief Wake one waiter (the longest-waiting fiber, else a thread). Call with the mutex held. */
void fiber_cond_signal(struct fiber_cond *fc);

/** @brief Wake every waiter. Call with the mutex held. */
void fiber_cond_broadcast(struct fiber_cond *fc);

/* A one-shot event: one waiter (fiber or thread), posted once from any thread. */
struct fiber_event {
    sem_t sem;            /* a thread waits here */
    struct fiber *waiter; /* a fiber waiting, set before it announces itself in @c state */
    atomic_int state;
};

/** @returns 0, or -1 when the semaphore cannot be made. */
int fiber_event_init(struct fiber_event *ev);
void fiber_event_destroy(struct fiber_event *ev);

/** @brief Return once fiber_event_post has been called (at once if it already was). */
void fiber_event_wait(struct fiber_event *ev);

/**
 * @brief Wake the waiter. Writes made before this call are visible to it after its wait. The
 *        event may be destroyed by the waiter as soon as this is called: the poster touches it no
 *        more.
 */
void fiber_event_post(struct fiber_event *ev);

/*
 * An event source: I/O that a pool thread waits for itself, between its fibers, instead of a
 * thread of its own doing it and handing results over (the HTTP client's sockets and timer).
 *
 * A source is attached to the pool thread it is attached on and only that thread uses it: its
 * callbacks run there, in the scheduler between fibers (never inside one), and fiber_source_watch
 * and deadline_ms are for code running on that thread (its fibers or the callbacks). When the
 * thread has no ready fiber it waits in epoll for its sources' descriptors, their earliest
 * deadline and wake-ups from other threads; while fibers keep it busy it still looks at them
 * every few fibers. A thread without sources waits on a condition variable as before.
 */
struct fiber_source {
    /** A descriptor registered with fiber_source_watch is ready (EPOLLIN/EPOLLOUT/EPOLLERR/...).
     *  May be called for a descriptor the source stopped watching in the same round. */
    void (*on_ready)(struct fiber_source *src, int fd, uint32_t events);
    /** deadline_ms has passed; it was set back to -1 just before the call. */
    void (*on_timer)(struct fiber_source *src);
    /** The thread is ending (every fiber of it returned) and the source is detached: release
     *  what it holds. May call fiber_source_watch to remove descriptors (it then does nothing). */
    void (*on_exit)(struct fiber_source *src);
    /** When on_timer is due, in fiber_now_ms() time; -1 for never. The source's thread only. */
    int64_t deadline_ms;

    /* the scheduler's */
    struct fiber_sched *sched;
    int slot;
};

#define FIBER_SOURCES_MAX 8 /* per thread */

/**
 * @brief Attach @p src (callbacks set, deadline_ms -1 or a time) to the pool thread this is
 *        called on.
 * @returns 0, or -1 when this is not a pool thread, it has FIBER_SOURCES_MAX sources already, or
 *          its epoll descriptors cannot be made (the caller then does its I/O another way).
 */
int fiber_source_attach(struct fiber_source *src);

/**
 * @brief Watch @p fd for @p events (EPOLLIN, EPOLLOUT; level-triggered), or stop watching it when
 *        @p events is 0. @p added says whether the fd is watched already (add or modify).
 * @returns 0, or -1 with errno from epoll_ctl.
 */
int fiber_source_watch(struct fiber_source *src, int fd, uint32_t events, int added);

/** @brief CLOCK_MONOTONIC in milliseconds: the clock of fiber_source.deadline_ms. */
int64_t fiber_now_ms(void);

#endif
