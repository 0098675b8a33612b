/* Unit tests for uuid: RFC 9562 version-4 format, version/variant bits, no repeats (also
 * between threads, and between a process and the child it forks). */
#include "uuid.h"
#include "unit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N 10000

static int is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int hex_value(char c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

static int cmp(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

#define NT  4
#define PER 500

static char thread_ids[NT * PER][UUID_STR_LEN];

static void *draw(void *arg)
{
    char(*out)[UUID_STR_LEN] = arg;
    for (int i = 0; i < PER; i++)
        if (uuid_v4(out[i]) != 0)
            out[i][0] = '\0';
    return NULL;
}

/* Each thread draws from its own pool: the ids of several threads never repeat. */
static void check_threads(void)
{
    pthread_t t[NT];
    int dups = 0, empty = 0;
    for (int i = 0; i < NT; i++)
        CHECK_INT(pthread_create(&t[i], NULL, draw, thread_ids[i * PER]), 0);
    for (int i = 0; i < NT; i++)
        pthread_join(t[i], NULL);
    qsort(thread_ids, NT * PER, sizeof(thread_ids[0]), cmp);
    for (int i = 0; i < NT * PER; i++) {
        empty += thread_ids[i][0] == '\0';
        dups += i > 0 && strcmp(thread_ids[i - 1], thread_ids[i]) == 0;
    }
    CHECK_INT(empty, 0);
    CHECK_INT(dups, 0);
}

/* A child forked after the parent has drawn must not hand out what the parent hands out next
 * (the bytes left in the parent's pool at the fork). */
static void check_fork(void)
{
    char first[UUID_STR_LEN], parent_next[UUID_STR_LEN], child_next[UUID_STR_LEN] = "";
    int fds[2], status = 0;
    pid_t pid;

    CHECK_INT(uuid_v4(first), 0); /* the pool now holds unused bytes */
    CHECK_INT(pipe(fds), 0);
    pid = fork();
    if (pid == 0) {
        char u[UUID_STR_LEN];
        ssize_t n = uuid_v4(u) == 0 ? write(fds[1], u, UUID_STR_LEN) : -1;
        _exit(n == UUID_STR_LEN ? 0 : 1);
    }
    CHECK(pid > 0);
    close(fds[1]);
    CHECK_INT(uuid_v4(parent_next), 0);
    CHECK_INT((int)read(fds[0], child_next, UUID_STR_LEN), UUID_STR_LEN);
    close(fds[0]);
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_INT((int)strlen(child_next), 36);
    CHECK(strcmp(parent_next, child_next) != 0);
}

int main(void)
{
    static char ids[N][UUID_STR_LEN];
    unsigned seen[36] = {0}; /* per position: bit mask of the hex digits that appeared */
    unsigned variants = 0;
    int bad_format = 0, bad_version = 0, bad_variant = 0, dups = 0;

    for (int i = 0; i < N; i++) {
        char *u = ids[i];
        memset(u, 'X', UUID_STR_LEN);
        CHECK_INT(uuid_v4(u), 0);
        if (strlen(u) != 36) {
            bad_format++;
            continue;
        }
        for (int p = 0; p < 36; p++) {
            if (p == 8 || p == 13 || p == 18 || p == 23) {
                if (u[p] != '-')
                    bad_format++;
            } else if (!is_lower_hex(u[p])) {
                bad_format++;
            } else {
                seen[p] |= 1u << hex_value(u[p]);
            }
        }
        if (u[14] != '4')
            bad_version++;
        if (!strchr("89ab", u[19]))
            bad_variant++;
        else
            variants |= 1u << (u[19] - (u[19] <= '9' ? '8' : 'a' - 2));
    }
    CHECK_INT(bad_format, 0);
    CHECK_INT(bad_version, 0); /* version 4: the 13th hex digit */
    CHECK_INT(bad_variant, 0); /* variant 10xx: the 17th hex digit is 8, 9, a or b */
    CHECK_INT(variants, 0xf);  /* ...and the two free variant bits are random */

    /* Every random position takes all 16 values over 10k draws (a stuck byte would show). */
    for (int p = 0; p < 36; p++) {
        if (p == 8 || p == 13 || p == 18 || p == 23 || p == 14 || p == 19)
            continue;
        if (seen[p] != 0xffff)
            fprintf(stderr, "position %d saw mask %#x\n", p, seen[p]);
        CHECK_INT(seen[p], 0xffff);
    }

    qsort(ids, N, sizeof(ids[0]), cmp);
    for (int i = 1; i < N; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            dups++;
    CHECK_INT(dups, 0);

    check_threads();
    check_fork();
    return UNIT_DONE();
}
