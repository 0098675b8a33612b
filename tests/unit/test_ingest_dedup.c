/* Unit tests for ingest_dedup: states, completion and abort, expiry, bounded size, threads. */
#include "ingest.h"
#include "unit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char FP_A[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const unsigned char FP_B[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17};

static const char TOPIC[] = "pm.canvas.messages";

static struct ingest_dedup_answer answer(int32_t partition, int64_t offset)
{
    struct ingest_dedup_answer a = {TOPIC, partition, offset};
    return a;
}

static enum ingest_dedup_state begin(struct ingest_dedup *d, const char *id,
                                     const unsigned char *fp, time_t now,
                                     struct ingest_dedup_answer *out)
{
    struct ingest_dedup_answer scratch = {NULL, -7, -7};
    return ingest_dedup_begin(d, id, fp, now, out ? out : &scratch);
}

static void test_states(void)
{
    struct ingest_dedup *d = ingest_dedup_new(100, 3600);
    struct ingest_dedup_answer a = answer(3, 42), out = {NULL, -1, -1};
    time_t now = 1000000;

    CHECK(d != NULL);
    CHECK_INT(ingest_dedup_size(d), 0);

    CHECK_INT(begin(d, "evt-1", FP_A, now, &out), DEDUP_NEW);
    CHECK_INT(ingest_dedup_size(d), 1);
    /* While the first is waiting for Kafka: pending, whatever the body. */
    CHECK_INT(begin(d, "evt-1", FP_A, now, NULL), DEDUP_PENDING);
    CHECK_INT(begin(d, "evt-1", FP_B, now, NULL), DEDUP_PENDING);
    CHECK_INT(ingest_dedup_size(d), 1);

    ingest_dedup_complete(d, "evt-1", &a);
    CHECK_INT(begin(d, "evt-1", FP_A, now + 1, &out), DEDUP_DONE);
    CHECK(out.topic == TOPIC);
    CHECK_INT(out.partition, 3);
    CHECK_INT(out.offset, 42);
    /* Same id, different body: a conflict, not a silent duplicate. */
    out.partition = -1;
    CHECK_INT(begin(d, "evt-1", FP_B, now + 1, &out), DEDUP_CONFLICT);
    CHECK_INT(ingest_dedup_size(d), 1);

    /* A second completion (or an abort) of a done id changes nothing: the first answer stays. */
    {
        struct ingest_dedup_answer other = answer(9, 999);
        ingest_dedup_complete(d, "evt-1", &other);
        ingest_dedup_abort(d, "evt-1");
        CHECK_INT(begin(d, "evt-1", FP_A, now + 2, &out), DEDUP_DONE);
        CHECK_INT(out.partition, 3);
        CHECK_INT(out.offset, 42);
    }

    /* Abort forgets a pending id: the retry is new and is produced again. */
    CHECK_INT(begin(d, "evt-2", FP_A, now, NULL), DEDUP_NEW);
    CHECK_INT(ingest_dedup_size(d), 2);
    ingest_dedup_abort(d, "evt-2");
    CHECK_INT(ingest_dedup_size(d), 1);
    CHECK_INT(begin(d, "evt-2", FP_B, now, NULL), DEDUP_NEW);
    CHECK_INT(begin(d, "evt-2", FP_B, now, NULL), DEDUP_PENDING);

    /* Unknown ids: complete and abort are no-ops. */
    ingest_dedup_complete(d, "never-seen", &a);
    ingest_dedup_abort(d, "never-seen");
    CHECK_INT(ingest_dedup_size(d), 2);
    CHECK_INT(begin(d, "never-seen", FP_A, now, NULL), DEDUP_NEW);

    /* Ids are compared exactly: prefixes and case differ. */
    CHECK_INT(begin(d, "evt-", FP_A, now, NULL), DEDUP_NEW);
    CHECK_INT(begin(d, "EVT-1", FP_A, now, NULL), DEDUP_NEW);
    CHECK_INT(begin(d, "evt-10", FP_A, now, NULL), DEDUP_NEW);
    CHECK_INT(begin(d, "", FP_A, now, NULL), DEDUP_NEW);
    CHECK_INT(begin(d, "", FP_A, now, NULL), DEDUP_PENDING);
    CHECK_INT(ingest_dedup_size(d), 7);
    ingest_dedup_free(d);
    ingest_dedup_free(NULL);
}

static void test_ttl(void)
{
    struct ingest_dedup *d = ingest_dedup_new(100, 10);
    struct ingest_dedup_answer a = answer(0, 1), out;
    time_t t0 = 50000;

    CHECK_INT(begin(d, "a", FP_A, t0, NULL), DEDUP_NEW);
    ingest_dedup_complete(d, "a", &a);
    CHECK_INT(begin(d, "b", FP_A, t0 + 5, NULL), DEDUP_NEW); /* pending, never completed */
    CHECK_INT(begin(d, "a", FP_A, t0 + 9, &out), DEDUP_DONE);
    CHECK_INT(out.offset, 1);
    CHECK_INT(ingest_dedup_size(d), 2);

    /* ttl_s after it was recorded, "a" is forgotten: the id is new again. */
    CHECK_INT(begin(d, "a", FP_A, t0 + 10, NULL), DEDUP_NEW);
    CHECK_INT(ingest_dedup_size(d), 2); /* "b" and the new "a" */
    CHECK_INT(begin(d, "b", FP_A, t0 + 14, NULL), DEDUP_PENDING);
    /* Pending ids expire too: a lost completion does not pin an id for ever. */
    CHECK_INT(begin(d, "b", FP_A, t0 + 15, NULL), DEDUP_NEW);

    /* Everything expires when time moves far ahead; the size reflects it after the next call. */
    for (int i = 0; i < 50; i++) {
        char id[16];
        snprintf(id, sizeof(id), "x%d", i);
        CHECK_INT(begin(d, id, FP_A, t0 + 19, NULL), DEDUP_NEW); /* "a" lives until t0 + 20 */
    }
    CHECK_INT(ingest_dedup_size(d), 52);
    CHECK_INT(begin(d, "late", FP_A, t0 + 1000, NULL), DEDUP_NEW);
    CHECK_INT(ingest_dedup_size(d), 1);
    ingest_dedup_free(d);
}

static void test_capacity(void)
{
    struct ingest_dedup *d = ingest_dedup_new(3, 3600);
    struct ingest_dedup_answer a = answer(1, 10), out;
    time_t now = 1000;

    CHECK_INT(begin(d, "a", FP_A, now, NULL), DEDUP_NEW);
    CHECK_INT(begin(d, "b", FP_A, now + 1, NULL), DEDUP_NEW);
    CHECK_INT(begin(d, "c", FP_A, now + 2, NULL), DEDUP_NEW);
    ingest_dedup_complete(d, "a", &a);
    ingest_dedup_complete(d, "b", &a);
    CHECK_INT(ingest_dedup_size(d), 3);

    /* Full: "d" pushes out the oldest, "a" (done or not, order of arrival decides). */
    CHECK_INT(begin(d, "d", FP_A, now + 3, NULL), DEDUP_NEW);
    CHECK_INT(ingest_dedup_size(d), 3);
    CHECK_INT(begin(d, "b", FP_A, now + 4, &out), DEDUP_DONE);
    CHECK_INT(begin(d, "c", FP_A, now + 4, NULL), DEDUP_PENDING);
    CHECK_INT(begin(d, "d", FP_A, now + 4, NULL), DEDUP_PENDING);
    CHECK_INT(ingest_dedup_size(d), 3);
    /* Looking ids up does not refresh them: "a" comes back new and pushes out "b". */
    CHECK_INT(begin(d, "a", FP_A, now + 5, NULL), DEDUP_NEW);
    CHECK_INT(begin(d, "c", FP_A, now + 5, NULL), DEDUP_PENDING);
    CHECK_INT(begin(d, "b", FP_A, now + 6, NULL), DEDUP_NEW); /* pushes out "c" */
    CHECK_INT(ingest_dedup_size(d), 3);

    /* The completion of an evicted pending id finds nothing and does nothing. */
    ingest_dedup_complete(d, "c", &a);
    ingest_dedup_abort(d, "c");
    CHECK_INT(ingest_dedup_size(d), 3);
    CHECK_INT(begin(d, "d", FP_A, now + 6, NULL), DEDUP_PENDING);
    ingest_dedup_free(d);

    /* Capacity 1: each new id replaces the last. */
    d = ingest_dedup_new(1, 3600);
    CHECK_INT(begin(d, "x", FP_A, now, NULL), DEDUP_NEW);
    CHECK_INT(begin(d, "x", FP_A, now, NULL), DEDUP_PENDING);
    CHECK_INT(begin(d, "y", FP_A, now, NULL), DEDUP_NEW);
    CHECK_INT(begin(d, "x", FP_A, now, NULL), DEDUP_NEW);
    CHECK_INT(ingest_dedup_size(d), 1);
    ingest_dedup_free(d);
}

static void test_disabled(void)
{
    struct ingest_dedup *d = ingest_dedup_new(0, 3600);
    struct ingest_dedup_answer a = answer(1, 10);

    CHECK(d != NULL);
    for (int i = 0; i < 3; i++)
        CHECK_INT(begin(d, "same", FP_A, 1000, NULL), DEDUP_NEW);
    ingest_dedup_complete(d, "same", &a);
    CHECK_INT(begin(d, "same", FP_A, 1000, NULL), DEDUP_NEW);
    ingest_dedup_abort(d, "same");
    CHECK_INT(ingest_dedup_size(d), 0);
    ingest_dedup_free(d);
}

static void test_many(void)
{
    enum { MANY = 100000, CAP = 1000 };
    struct ingest_dedup *d = ingest_dedup_new(CAP, 86400);
    struct ingest_dedup_answer out;
    char id[32];
    size_t max_size = 0;
    int wrong = 0;

    for (int i = 0; i < MANY; i++) {
        struct ingest_dedup_answer a = answer(i % 7, i);
        snprintf(id, sizeof(id), "evt-%d", i);
        if (begin(d, id, FP_A, 1000 + i / 100, NULL) != DEDUP_NEW)
            wrong++;
        if (i % 3 == 0)
            ingest_dedup_complete(d, id, &a);
        if (ingest_dedup_size(d) > max_size)
            max_size = ingest_dedup_size(d);
    }
    CHECK_INT(wrong, 0);
    CHECK_INT(max_size, CAP);
    CHECK_INT(ingest_dedup_size(d), CAP);

    /* The newest CAP ids are remembered with their answers; older ones are gone. Checked from
     * newest to oldest so that the re-inserted old ids do not push out the ones still to check. */
    wrong = 0;
    for (int i = MANY - 1; i >= MANY - CAP; i--) {
        enum ingest_dedup_state st;
        snprintf(id, sizeof(id), "evt-%d", i);
        out.offset = -1;
        st = begin(d, id, FP_A, 2000, &out);
        if (i % 3 == 0 ? (st != DEDUP_DONE || out.offset != i || out.partition != i % 7)
                       : st != DEDUP_PENDING)
            wrong++;
    }
    CHECK_INT(wrong, 0);
    for (int i = 0; i < MANY - CAP; i += 997) {
        snprintf(id, sizeof(id), "evt-%d", i);
        if (begin(d, id, FP_A, 2000, NULL) != DEDUP_NEW)
            wrong++;
    }
    CHECK_INT(wrong, 0);
    CHECK_INT(ingest_dedup_size(d), CAP);
    ingest_dedup_free(d);

    /* A table as large as the id count keeps them all, then lets them all expire. */
    d = ingest_dedup_new(MANY, 60);
    for (int i = 0; i < MANY; i++) {
        snprintf(id, sizeof(id), "id-%d", i);
        if (begin(d, id, FP_A, 5000, NULL) != DEDUP_NEW)
            wrong++;
        if (i % 2)
            ingest_dedup_abort(d, id);
    }
    CHECK_INT(wrong, 0);
    CHECK_INT(ingest_dedup_size(d), MANY / 2);
    for (int i = 0; i < MANY; i += 2) {
        snprintf(id, sizeof(id), "id-%d", i);
        if (begin(d, id, FP_A, 5030, NULL) != DEDUP_PENDING)
            wrong++;
    }
    CHECK_INT(wrong, 0);
    CHECK_INT(begin(d, "fresh", FP_A, 5060, NULL), DEDUP_NEW);
    CHECK_INT(ingest_dedup_size(d), 1);
    ingest_dedup_free(d);
}

/* ---- threads ---- */

enum { THREADS = 4, OPS = 40000, SHARED = 500, THREAD_CAP = 2000 };

struct worker {
    struct ingest_dedup *d;
    int n;
    int own_wrong; /* an id only this thread uses behaved unlike the single-threaded rules */
    size_t max_size;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct ingest_dedup_answer a = answer(w->n, 0), out;
    char id[48];
    unsigned seed = (unsigned)w->n * 2654435761u + 1;

    for (int i = 0; i < OPS; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = seed >> 8;
        time_t now = 100000 + i / 1000;
        if (r % 4 == 0) {
            /* Ids shared with every thread: any state is possible, nothing may crash. */
            snprintf(id, sizeof(id), "shared-%u", (r >> 4) % SHARED);
            enum ingest_dedup_state st = begin(w->d, id, (r & 16) ? FP_A : FP_B, now, &out);
            if (st == DEDUP_NEW) {
                if (r & 32)
                    ingest_dedup_complete(w->d, id, &a);
                else
                    ingest_dedup_abort(w->d, id);
            }
        } else {
            /* Ids of this thread alone: a fresh id is new; right after, it is pending. */
            snprintf(id, sizeof(id), "t%d-%d", w->n, i);
            if (begin(w->d, id, FP_A, now, NULL) != DEDUP_NEW)
                w->own_wrong++;
            if (begin(w->d, id, FP_A, now, NULL) == DEDUP_NEW)
                w->own_wrong++;
            a.offset = i;
            if (r % 3 == 0)
                ingest_dedup_abort(w->d, id);
            else
                ingest_dedup_complete(w->d, id, &a);
        }
        size_t s = ingest_dedup_size(w->d);
        if (s > w->max_size)
            w->max_size = s;
    }
    return NULL;
}

static void test_threads(void)
{
    struct ingest_dedup *d = ingest_dedup_new(THREAD_CAP, 30);
    pthread_t th[THREADS];
    struct worker w[THREADS];

    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].d = d;
        w[i].n = i;
        CHECK_INT(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        /* Between a thread's two calls another thread may evict its id (table full), so the
         * second call can legitimately say NEW; that must stay rare with 2000 slots. */
        CHECK(w[i].own_wrong < OPS / 100);
        CHECK(w[i].max_size <= THREAD_CAP);
    }
    CHECK(ingest_dedup_size(d) <= THREAD_CAP);

    /* Still consistent afterwards: a fresh id goes through the whole cycle. */
    {
        struct ingest_dedup_answer a = answer(2, 77), out;
        CHECK_INT(begin(d, "after", FP_A, 200000, NULL), DEDUP_NEW);
        CHECK_INT(ingest_dedup_size(d), 1); /* everything else expired */
        ingest_dedup_complete(d, "after", &a);
        CHECK_INT(begin(d, "after", FP_A, 200001, &out), DEDUP_DONE);
        CHECK_INT(out.offset, 77);
    }
    ingest_dedup_free(d);
}

int main(void)
{
    test_states();
    test_ttl();
    test_capacity();
    test_disabled();
    test_many();
    test_threads();
    return UNIT_DONE();
}
