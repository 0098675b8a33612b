/* Unit tests for json_writer: the same bytes as jansson's compact dump, and every failure. */
#include "json_writer.h"
#include "unit.h"

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* jansson's compact text of @p j (taken), or NULL when it refuses. */
static char *jansson_text(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

/* {"k":<s>} by the writer, or NULL. */
static char *writer_member(const char *s)
{
    struct json_writer w;
    json_writer_init(&w);
    json_writer_object_begin(&w);
    json_writer_member(&w, "k", s);
    json_writer_object_end(&w);
    return json_writer_finish(&w, NULL);
}

/* Checks that the writer and jansson agree on the string @p s: the same bytes, or both refuse. */
static void same_as_jansson(const char *s, int line)
{
    char *want = jansson_text(json_pack("{s:s}", "k", s));
    char *got = writer_member(s);
    int same = (!want && !got) || (want && got && strcmp(want, got) == 0);
    CHECK(same);
    if (!same)
        fprintf(stderr, "  line %d: writer %s, jansson %s\n", line, got ? got : "(refused)",
                want ? want : "(refused)");
    free(want);
    free(got);
}

static void test_strings(void)
{
    char all[0x80];

    same_as_jansson("", __LINE__);
    same_as_jansson("plain ascii, / and ~", __LINE__);
    same_as_jansson("quote \" backslash \\ slash /", __LINE__);
    same_as_jansson("\b\f\n\r\t", __LINE__);
    same_as_jansson("\x01\x02\x1f\x7f", __LINE__);
    same_as_jansson("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", __LINE__); /* 2, 3, 4 bytes */
    same_as_jansson("<p>Your lab results &amp; more</p>", __LINE__);
    /* Not UTF-8: both refuse (a stray continuation, a cut sequence, an overlong form, a
     * surrogate, past U+10FFFF). */
    same_as_jansson("\x80", __LINE__);
    same_as_jansson("caf\xc3", __LINE__);
    same_as_jansson("\xc0\xaf", __LINE__);
    same_as_jansson("\xed\xa0\x80", __LINE__);
    same_as_jansson("\xf4\x90\x80\x80", __LINE__);
    for (int c = 1; c < 0x80; c++)
        all[c - 1] = (char)c;
    all[0x7f] = '\0';
    same_as_jansson(all, __LINE__);

    /* Random byte strings, half of them made of valid characters only. */
    uint64_t rs = 0x9e3779b97f4a7c15ull;
    char buf[300];
    static const char *const pieces[] = {"a",    "\"",       "\\",           "\n",
                                         "\x03", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                         "/",    " ",        "\x7f",         "<br>"};
    for (int round = 0; round < 4000; round++) {
        size_t n = 0;
        rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
        size_t want = rs % 40;
        while (n < want) {
            rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
            if (round & 1) {
                const char *p = pieces[rs % (sizeof(pieces) / sizeof(pieces[0]))];
                memcpy(buf + n, p, strlen(p));
                n += strlen(p);
            } else {
                buf[n++] = (char)(1 + rs % 255);
            }
        }
        buf[n] = '\0';
        same_as_jansson(buf, __LINE__);
    }
}

static void test_documents(void)
{
    struct json_writer w;
    size_t len = 0;
    char *got, *want;

    /* Nesting, arrays, optional members, integers at both ends: the same as json_pack. */
    json_writer_init(&w);
    json_writer_object_begin(&w);
    json_writer_member(&w, "a", "1");
    json_writer_member_opt(&w, "skipped", NULL);
    json_writer_key(&w, "list");
    json_writer_array_begin(&w);
    json_writer_string(&w, "x");
    json_writer_object_begin(&w);
    json_writer_member_opt(&w, "in", "y");
    json_writer_object_end(&w);
    json_writer_array_begin(&w);
    json_writer_array_end(&w);
    json_writer_object_begin(&w);
    json_writer_object_end(&w);
    json_writer_int(&w, LLONG_MIN);
    json_writer_array_end(&w);
    json_writer_key(&w, "max");
    json_writer_int(&w, LLONG_MAX);
    json_writer_key(&w, "zero");
    json_writer_int(&w, 0);
    json_writer_member_opt(&w, "last", "z");
    json_writer_object_end(&w);
    got = json_writer_finish(&w, &len);
    want = jansson_text(json_pack("{s:s, s:[s, {s:s}, [], {}, I], s:I, s:i, s:s}", "a", "1", "list",
                                  "x", "in", "y", (json_int_t)LLONG_MIN, "max",
                                  (json_int_t)LLONG_MAX, "zero", 0, "last", "z"));
    CHECK_STR(got, want);
    CHECK_INT(len, got ? strlen(got) : 0);
    free(got);
    free(want);

    /* Past the first 1,024 bytes: the buffer grows and nothing is lost. */
    char *big = malloc(100001);
    CHECK(big != NULL);
    if (big) {
        for (size_t i = 0; i < 100000; i++)
            big[i] = (char)(i % 7 == 0 ? '"' : 'a' + i % 26);
        big[100000] = '\0';
        same_as_jansson(big, __LINE__);
        got = writer_member(big);
        CHECK_INT(got ? strlen(got) : 0, 100000 + 100000 / 7 + 1 + 8);
        free(got);
        free(big);
    }
}

static void test_failures(void)
{
    struct json_writer w;
    size_t len = 77;

    /* A required member without a value. */
    json_writer_init(&w);
    json_writer_object_begin(&w);
    json_writer_member(&w, "k", NULL);
    json_writer_object_end(&w);
    CHECK(json_writer_finish(&w, &len) == NULL);
    CHECK_INT(len, 77); /* untouched on failure */

    /* Calls after a failure do nothing; the whole document is refused. */
    json_writer_init(&w);
    json_writer_object_begin(&w);
    json_writer_member(&w, "bad", "\xff");
    json_writer_member(&w, "good", "ok");
    json_writer_object_end(&w);
    CHECK(json_writer_finish(&w, NULL) == NULL);

    /* Not closed; closed once too often; a key without its value; nothing written. */
    json_writer_init(&w);
    json_writer_object_begin(&w);
    CHECK(json_writer_finish(&w, NULL) == NULL);
    json_writer_init(&w);
    json_writer_array_begin(&w);
    json_writer_array_end(&w);
    json_writer_array_end(&w);
    CHECK(json_writer_finish(&w, NULL) == NULL);
    json_writer_init(&w);
    json_writer_object_begin(&w);
    json_writer_key(&w, "k");
    json_writer_object_end(&w);
    CHECK(json_writer_finish(&w, NULL) == NULL);
    json_writer_init(&w);
    CHECK(json_writer_finish(&w, NULL) == NULL);
    /* Calls out of order never give text that is not one JSON document. */
    for (int bad = 0; bad < 6; bad++) {
        json_writer_init(&w);
        switch (bad) {
        case 0: /* two top-level values */
            json_writer_object_begin(&w);
            json_writer_object_end(&w);
            json_writer_array_begin(&w);
            json_writer_array_end(&w);
            break;
        case 1: /* a key in an array */
            json_writer_array_begin(&w);
            json_writer_member(&w, "k", "v");
            json_writer_array_end(&w);
            break;
        case 2: /* a value in an object without its key */
            json_writer_object_begin(&w);
            json_writer_string(&w, "v");
            json_writer_object_end(&w);
            break;
        case 3: /* "}" closing an array */
            json_writer_array_begin(&w);
            json_writer_object_end(&w);
            break;
        case 4: /* a key at the top level */
            json_writer_member(&w, "k", "v");
            break;
        case 5: /* a key after a key */
            json_writer_object_begin(&w);
            json_writer_key(&w, "a");
            json_writer_key(&w, "b");
            json_writer_string(&w, "v");
            json_writer_object_end(&w);
            break;
        }
        char *s = json_writer_finish(&w, NULL);
        CHECK(s == NULL);
        if (s)
            fprintf(stderr, "  case %d gave %s\n", bad, s);
        free(s);
    }
    /* Free text cut inside a character, or with stray bytes: U+FFFD for each such byte, the
     * rest kept; NULL leaves the member out; valid text is written as member_opt writes it. */
    json_writer_init(&w);
    json_writer_object_begin(&w);
    json_writer_member_text_opt(&w, "cut", "no encontr\xc3");
    json_writer_member_text_opt(&w, "stray",
                                "a\xff\x80"
                                "b \"q\"");
    json_writer_member_text_opt(&w, "none", NULL);
    json_writer_member_text_opt(&w, "ok", "caf\xc3\xa9\n");
    json_writer_object_end(&w);
    char *lossy = json_writer_finish(&w, NULL);
    CHECK_STR(lossy, "{\"cut\":\"no encontr\xef\xbf\xbd\","
                     "\"stray\":\"a\xef\xbf\xbd\xef\xbf\xbd"
                     "b \\\"q\\\"\","
                     "\"ok\":\"caf\xc3\xa9\\n\"}");
    free(lossy);

    /* A bare string is a document (JSON_ENCODE_ANY's "\"x\""). */
    json_writer_init(&w);
    json_writer_string(&w, "x");
    char *bare = json_writer_finish(&w, NULL);
    CHECK_STR(bare, "\"x\"");
    free(bare);

    /* 64 levels are fine, 65 are refused. */
    for (int depth = 64; depth <= 65; depth++) {
        json_writer_init(&w);
        for (int i = 0; i < depth; i++)
            json_writer_array_begin(&w);
        for (int i = 0; i < depth; i++)
            json_writer_array_end(&w);
        char *s = json_writer_finish(&w, &len);
        CHECK_INT(s != NULL, depth == 64);
        if (s)
            CHECK_INT(len, 128);
        free(s);
    }
}

int main(void)
{
    test_strings();
    test_documents();
    test_failures();
    return UNIT_DONE();
}
