/* Unit tests for json_load_fast: jansson's values and jansson's errors, on the fast path and off.
 */
#include "json_load.h"
#include "unit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Checks that json_load_fast and json_loadb agree on @p len bytes at @p s with @p flags: equal
 * values, or both NULL with the same error text and position. */
static void same(const char *s, size_t len, size_t flags, int line)
{
    json_error_t e1, e2;
    json_t *fast = json_load_fast(s, len, flags, &e1);
    json_t *ref = json_loadb(s, len, flags, &e2);
    int ok;

    if (fast && ref)
        ok = json_equal(fast, ref);
    else
        ok = !fast && !ref && strcmp(e1.text, e2.text) == 0 && e1.line == e2.line &&
             e1.column == e2.column && e1.position == e2.position;
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "  line %d: fast %s, jansson %s (%s / %s)\n", line, fast ? "ok" : "NULL",
                ref ? "ok" : "NULL", fast ? "" : e1.text, ref ? "" : e2.text);
    json_decref(fast);
    json_decref(ref);
}

#define SAME(lit)          same(lit, sizeof(lit) - 1, 0, __LINE__)
#define SAME_DUPS(lit)     same(lit, sizeof(lit) - 1, JSON_REJECT_DUPLICATES, __LINE__)
#define SAME_FLAGS(lit, f) same(lit, sizeof(lit) - 1, f, __LINE__)

/* The fast path is taken for what pm-deliver reads, and not for what it leaves to jansson. */
static void fast_path(const char *s, int want_taken, size_t flags, int line)
{
    json_t *v = json_load_yajl(s, strlen(s), flags);
    CHECK_INT(v != NULL, want_taken);
    if ((v != NULL) != want_taken)
        fprintf(stderr, "  line %d: fast path %s\n", line, v ? "taken" : "not taken");
    json_decref(v);
}

static void test_fast_path_taken(void)
{
    fast_path("{\"specversion\":\"1.0\",\"id\":\"e-1\",\"data\":{\"communication_id\":\"c\"}}", 1,
              JSON_REJECT_DUPLICATES, __LINE__);
    fast_path("{\"resourceType\":\"Communication\",\"payload\":[{\"contentString\":\"<p>a\\nb "
              "caf\xc3\xa9</p>\"}],\"n\":1.5}",
              1, 0, __LINE__);
    fast_path("[\"a\\\\u\"]", 1, 0, __LINE__);
    fast_path("[\"\\u00e9\"]", 0, 0, __LINE__);
    fast_path("[\f1]", 0, 0, __LINE__);
    fast_path("[\"\xed\xa0\x80\"]", 0, 0, __LINE__);
    fast_path("[99999999999999999999]", 0, 0, __LINE__);
    fast_path("{\"a\":1,\"a\":2}", 0, JSON_REJECT_DUPLICATES, __LINE__);
    fast_path("{\"a\":1,\"a\":2}", 1, 0, __LINE__);
    fast_path("1", 0, 0, __LINE__);
    fast_path("[1]", 0, JSON_DECODE_ANY, __LINE__);
}

static void test_cases(void)
{
    /* What the fast path takes. */
    SAME("{\"resourceType\":\"Communication\",\"id\":\"c-1\",\"payload\":[{\"contentString\":"
         "\"<p>Hi &amp; caf\xc3\xa9\\n\\t\\\"q\\\" \\\\ \\/</p>\"}],\"n\":[0,-0,1.5,-2e3,1E+2,"
         "9223372036854775807,-9223372036854775808,1e-400],\"b\":[true,false,null],\"o\":{}}");
    SAME("[]");
    SAME("  [ 1 , 2 ]\r\n");
    SAME_DUPS("{\"a\":1,\"b\":{\"a\":2}}");
    SAME("{\"a\":1,\"a\":2}"); /* without the flag: the last one wins, in the first one's place */
    /* What it leaves to jansson, which must answer exactly as itself. */
    SAME_DUPS("{\"a\":1,\"a\":2}");
    SAME("[\"\\u00e9\\ud83d\\ude00\"]");
    SAME("[\"\\u0000\"]");
    SAME("[\"\\ud800\"]");
    SAME("[\"a\\\\u\"]"); /* an escaped backslash and a 'u': still the fast path */
    SAME("[\f1]");
    SAME("[\v1]");
    SAME("[\"\xc0\xaf\"]");
    SAME("[\"\xed\xa0\x80\"]");
    SAME("[\"\xf4\x90\x80\x80\"]");
    SAME("[\"\xe0\x80\x80\"]");
    SAME("{\"\xed\xa0\x80\":1}");
    SAME("[99999999999999999999]");
    SAME("[-99999999999999999999]");
    SAME("[1e400]");
    SAME("[-1e400]");
    SAME("1");
    SAME("\"x\"");
    SAME("");
    SAME(" ");
    SAME("[1,]");
    SAME("[1] x");
    SAME("[1][2]");
    SAME("{\"f\":{}}\"["); /* an unfinished token after the value: yajl 2.1 lets it pass */
    SAME("{\"f\":{}} \"");
    SAME("[1]\n\t \r");
    SAME("[01]");
    SAME("[\"a\x01\"]");
    SAME("[\"a\0b\"]");
    SAME("\xef\xbb\xbf[1]");
    SAME("{\"a\" 1}");
    SAME("[1/*c*/]");
    SAME("[NaN]");
    SAME("{\"a\":[1,{\"b\":");
    SAME_FLAGS("1", JSON_DECODE_ANY); /* other flags: jansson directly */
    /* Nesting: 64 levels on the fast path, 65 and 3,000 through jansson (its limit 2048). */
    for (int depth = 64; depth <= 3000; depth += (depth == 64 ? 1 : 2935)) {
        char *deep = malloc((size_t)depth * 2 + 1);
        CHECK(deep != NULL);
        if (!deep)
            continue;
        for (int i = 0; i < depth; i++) {
            deep[i] = '[';
            deep[2 * depth - 1 - i] = ']';
        }
        same(deep, (size_t)depth * 2, 0, __LINE__);
        free(deep);
    }
    /* Long strings with escapes: yajl's buffers grow past the scratch space on the stack
     * (reallocated from it into the heap, then in the heap). */
    for (size_t total = 1000; total <= 200000; total *= 14) {
        char *big = malloc(total + 8);
        size_t n = 0;
        CHECK(big != NULL);
        if (!big)
            continue;
        big[n++] = '[';
        big[n++] = '"';
        while (n < total) {
            if (n % 11) {
                big[n] = (char)('a' + n % 26);
                n++;
            } else {
                big[n++] = '\\';
                big[n++] = 'n';
            }
        }
        big[n++] = '"';
        big[n++] = ']';
        json_t *v = json_load_yajl(big, n, 0);
        CHECK(v != NULL); /* the fast path, whatever the size */
        json_decref(v);
        same(big, n, 0, __LINE__);
        free(big);
    }
    /* Not NUL-terminated: only len bytes are read. */
    char nonul[3] = {'[', ']', '['};
    same(nonul, 2, 0, __LINE__);
}

/* Random documents from JSON-ish pieces, and random bytes: the two always agree. */
static void test_random(void)
{
    static const char *const pieces[] = {"{",
                                         "}",
                                         "[",
                                         "]",
                                         ",",
                                         ":",
                                         "\"k\"",
                                         "\"v\"",
                                         "1",
                                         "-0.5",
                                         "1e5",
                                         "true",
                                         "null",
                                         " ",
                                         "\"\\n\"",
                                         "\"\\u0041\"",
                                         "\"\xc3\xa9\"",
                                         "\"\xed\xa0\x80\"",
                                         "\\",
                                         "\f",
                                         "99999999999999999999",
                                         "\"\\\\\"",
                                         "\"a\"",
                                         "0",
                                         "[]",
                                         "{}"};
    uint64_t rs = 0x2545f4914f6cdd1dull;
    char buf[512];

    for (int round = 0; round < 20000; round++) {
        size_t n = 0;
        rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
        size_t want = 1 + rs % 24;
        for (size_t i = 0; i < want; i++) {
            rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
            if (round % 4 == 3) {
                buf[n++] = (char)(rs & 0xff);
            } else {
                const char *p = pieces[rs % (sizeof(pieces) / sizeof(pieces[0]))];
                memcpy(buf + n, p, strlen(p));
                n += strlen(p);
            }
        }
        same(buf, n, (round & 1) ? JSON_REJECT_DUPLICATES : 0, __LINE__);
    }
}

int main(void)
{
    test_fast_path_taken();
    test_cases();
    test_random();
    return UNIT_DONE();
}
