/* Fibers: many blocking call chains (consumer handlers) on a few threads, and the waits they use.
 */
#ifndef PM_FIBER_H
#define PM_FIBER_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stddef.h>

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

#endif
