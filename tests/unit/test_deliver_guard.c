/* Unit tests for pm-deliver's repeat guards (deliver_guard.c): what is put is found again until
 * it is the oldest of a full guard or expires; a replaced entry keeps its place; long keys that
 * differ in one byte stay apart; values come back whole or visibly cut. */
#include "deliver.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int has(struct deliver_guard *g, const char *key)
{
    return deliver_guard_get(g, key, NULL, 0) >= 0;
}

static void put_str(struct deliver_guard *g, const char *key, const char *value)
{
    CHECK_INT(deliver_guard_put(g, key, value, strlen(value)), 0);
}

int main(void)
{
    struct deliver_guard *g;
    char buf[64], key[64];

    CHECK(deliver_guard_new(0, 60) == NULL);

    /* Found with its value and length; an unknown key is not. */
    g = deliver_guard_new(3, 3600);
    CHECK(g != NULL);
    CHECK_INT(deliver_guard_get(g, "c-1/sms", buf, sizeof(buf)), -1);
    put_str(g, "c-1/sms", "e-1\nSM1");
    CHECK_INT(deliver_guard_get(g, "c-1/sms", buf, sizeof(buf)), 7);
    CHECK_STR(buf, "e-1\nSM1");
    CHECK_INT(deliver_guard_get(g, "c-1/sm", buf, sizeof(buf)), -1);
    CHECK_INT(deliver_guard_get(g, "c-1/smsx", buf, sizeof(buf)), -1);
    /* An empty value is a value. */
    put_str(g, "c-2/email", "");
    CHECK_INT(deliver_guard_get(g, "c-2/email", buf, sizeof(buf)), 0);
    CHECK_STR(buf, "");

    /* A value longer than the buffer: its whole length is returned, the copy is cut and
     * terminated. */
    CHECK_INT(deliver_guard_get(g, "c-1/sms", buf, 4), 7);
    CHECK_STR(buf, "e-1");

    /* Replacing keeps one entry, with the new value, in its place in the order: with a, b, c
     * in a guard of 3, replacing b and adding d drops a; adding e then drops b. */
    deliver_guard_free(g);
    g = deliver_guard_new(3, 3600);
    put_str(g, "a", "1");
    put_str(g, "b", "2");
    put_str(g, "c", "3");
    put_str(g, "b", "4");
    CHECK_INT(deliver_guard_count(g), 3);
    CHECK_INT(deliver_guard_get(g, "b", buf, sizeof(buf)), 1);
    CHECK_STR(buf, "4");
    CHECK(has(g, "a") && has(g, "c"));
    put_str(g, "d", "5");
    CHECK(!has(g, "a"));
    CHECK(has(g, "b") && has(g, "c") && has(g, "d"));
    CHECK_INT(deliver_guard_count(g), 3);
    put_str(g, "e", "6");
    CHECK(!has(g, "b"));
    CHECK(has(g, "c") && has(g, "d") && has(g, "e"));
    CHECK_INT(deliver_guard_count(g), 3);
    deliver_guard_free(g);

    /* Expired entries are not found, and go as the next ones arrive. */
    g = deliver_guard_new(10, 0);
    put_str(g, "x", "1");
    CHECK(!has(g, "x"));
    CHECK_INT(deliver_guard_count(g), 0);
    put_str(g, "y", "2");
    put_str(g, "z", "3");
    CHECK_INT(deliver_guard_count(g), 1);
    deliver_guard_free(g);

    /* Keys of 2,000 bytes that differ only in their last byte stay apart. */
    g = deliver_guard_new(8, 3600);
    {
        char *k1 = malloc(2001), *k2 = malloc(2001);
        CHECK(k1 && k2);
        if (k1 && k2) {
            memset(k1, 'k', 2000);
            memset(k2, 'k', 2000);
            k1[2000] = k2[2000] = '\0';
            k2[1999] = 'j';
            put_str(g, k1, "one");
            CHECK(!has(g, k2));
            put_str(g, k2, "two");
            CHECK_INT(deliver_guard_get(g, k1, buf, sizeof(buf)), 3);
            CHECK_STR(buf, "one");
            CHECK_INT(deliver_guard_get(g, k2, buf, sizeof(buf)), 3);
            CHECK_STR(buf, "two");
        }
        free(k1);
        free(k2);
    }
    deliver_guard_free(g);

    /* Many times round the ring: exactly the newest 5,000 of 12,345 keys remain, each with its
     * own value. */
    g = deliver_guard_new(5000, 3600);
    for (int i = 0; i < 12345; i++) {
        char v[16];
        snprintf(key, sizeof(key), "comm-%d/webhook", i);
        snprintf(v, sizeof(v), "%d", i * 7);
        put_str(g, key, v);
    }
    CHECK_INT(deliver_guard_count(g), 5000);
    {
        int found = 0, wrong = 0, stale = 0;
        for (int i = 0; i < 12345; i++) {
            char v[16];
            long n;
            snprintf(key, sizeof(key), "comm-%d/webhook", i);
            n = deliver_guard_get(g, key, buf, sizeof(buf));
            if (i < 12345 - 5000) {
                stale += n >= 0;
                continue;
            }
            snprintf(v, sizeof(v), "%d", i * 7);
            found += n >= 0;
            wrong += n >= 0 && strcmp(buf, v) != 0;
        }
        CHECK_INT(found, 5000);
        CHECK_INT(wrong, 0);
        CHECK_INT(stale, 0);
    }
    deliver_guard_free(g);
    return UNIT_DONE();
}
