/* libFuzzer target: the JSON writer against jansson. The input, cut at NUL bytes, gives the
 * member values of an object and the elements of an array inside it; the writer must give
 * exactly json_dumps(JSON_COMPACT)'s text for them, or refuse exactly when jansson does (a value
 * that is not UTF-8). */
#include "json_writer.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
