/* libFuzzer target: the JSON writer against jansson. The input, cut at NUL bytes, gives the
 * member values of an object and the elements of an array inside it; the writer must give
 * exactly json_dumps(JSON_COMPACT)'s text for them, or refuse exactly when jansson does (a value
 * that is not UTF-8). The first piece is also written as lossy free text in a document of its
 * own, which must equal jansson's text of the piece with each byte outside a UTF-8 character
 * replaced by U+FFFD. */
#include "json_writer.h"
#include "utf8.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The reference for lossy text: @p s with each byte outside a UTF-8 character as U+FFFD. */
static char *fuzz_lossy(const char *s)
{
    size_t n = strlen(s), o = 0;
    char *out = malloc(3 * n + 1);
    if (!out)
        abort();
    for (size_t i = 0; i < n;) {
        size_t k = utf8_decode((const unsigned char *)s + i, n - i, NULL);
        if (k == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        }
    }
    out[o] = '\0';
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    struct json_writer w;
    json_t *doc = json_object(), *list = json_array();
    int refused = 0, n = 0;
    char key[16];

    if (!buf || !doc || !list)
        abort();
    memcpy(buf, data, size);
    buf[size] = '\0';

    /* The first piece as lossy free text, in a document of its own: never refused. */
    {
        char *clean = fuzz_lossy(buf);
        json_t *ref = json_pack("{s:s}", "lossy", clean);
        char *want = ref ? json_dumps(ref, JSON_COMPACT) : NULL;
        json_writer_init(&w);
        json_writer_object_begin(&w);
        json_writer_member_text_opt(&w, "lossy", buf);
        json_writer_object_end(&w);
        char *got = json_writer_finish(&w, NULL);
        if (!want || !got || strcmp(want, got) != 0)
            abort();
        free(got);
        free(want);
        json_decref(ref);
        free(clean);
    }

    json_writer_init(&w);
    json_writer_object_begin(&w);
    /* Odd pieces are object members "k<n>", even ones array elements; the array comes last. */
    for (char *p = buf; p <= buf + size && n < 64; p += strlen(p) + 1, n++) {
        json_t *s = json_string(p);
        if (!s)
            refused = 1;
        if (n % 2) {
            snprintf(key, sizeof(key), "k%d", n);
            json_writer_member(&w, key, p);
            if (s)
                json_object_set_new(doc, key, s);
        } else if (s) {
            json_array_append_new(list, s);
        }
    }
    json_writer_key(&w, "list");
    json_writer_array_begin(&w);
    n = 0;
    for (char *p = buf; p <= buf + size && n < 64; p += strlen(p) + 1, n++)
        if (n % 2 == 0)
            json_writer_string(&w, p);
    json_writer_array_end(&w);
    json_writer_object_end(&w);
    json_object_set_new(doc, "list", list);

    size_t len = 0;
    char *got = json_writer_finish(&w, &len);
    char *want = refused ? NULL : json_dumps(doc, JSON_COMPACT);
    if (refused != (got == NULL))
        abort();
    if (got && (!want || strcmp(got, want) != 0 || strlen(got) != len))
        abort();
    free(got);
    free(want);
    json_decref(doc);
    free(buf);
    return 0;
}
