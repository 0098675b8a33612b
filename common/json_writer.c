/* JSON text written straight into one growing buffer, jansson's compact form byte for byte. */
#include "json_writer.h"

#include "utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JW_FIRST_CAP 1024
#define JW_MAX_DEPTH 64

void json_writer_init(struct json_writer *w)
{
    memset(w, 0, sizeof(*w));
}

/* Makes room for @p n more bytes and the final NUL. */
static int jw_reserve(struct json_writer *w, size_t n)
{
    size_t want, cap;
    char *p;

    if (w->failed)
        return -1;
    if (n < w->cap - w->len) /* also true for the NUL: strictly less */
        return 0;
    if (n > ((size_t)-1 >> 2) - w->len) {
        w->failed = 1;
        return -1;
    }
    want = w->len + n + 1;
    cap = w->cap ? w->cap : JW_FIRST_CAP;
    while (cap < want)
        cap *= 2;
    p = realloc(w->buf, cap);
    if (!p) {
        w->failed = 1;
        return -1;
    }
    w->buf = p;
    w->cap = cap;
    return 0;
}

static void jw_put(struct json_writer *w, const char *s, size_t n)
{
    if (jw_reserve(w, n) == 0) {
        memcpy(w->buf + w->len, s, n);
        w->len += n;
    }
}

/* Before a key (@p key 1) or a value (0): checks that it may come here (a key only inside an
 * object, a value inside an object only after its key, one top-level value) and writes the comma
 * between members or elements. */
static void jw_separate(struct json_writer *w, int key)
{
    uint64_t bit;
    int in_object;

    if (w->failed)
        return;
    if (w->after_key) {
        w->after_key = 0; /* the value of a member: its key wrote the comma */
        if (key)
            w->failed = 1;
        return;
    }
    if (w->depth == 0) {
        if (key || w->len > 0)
            w->failed = 1; /* a key outside an object, or a second top-level value */
        return;
    }
    bit = (uint64_t)1 << (w->depth - 1);
    in_object = !(w->arrays & bit);
    if (key != in_object) {
        w->failed = 1; /* a key in an array, or a value in an object without its key */
        return;
    }
    if (w->filled & bit)
        jw_put(w, ",", 1);
    w->filled |= bit;
}

/* Writes @p s as a JSON string: escapes as jansson's dump_string does (\" \\ \b \f \n \r \t,
 * other controls as \u00XX in capitals; "/" and non-ASCII as they are). A byte that is not part
 * of a UTF-8 character is a failure, or U+FFFD when @p lossy. */
static void jw_quoted(struct json_writer *w, const char *s, int lossy)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s, *run;

    jw_put(w, "\"", 1);
    while (!w->failed) {
        run = p;
        while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p > run)
            jw_put(w, (const char *)run, (size_t)(p - run));
        if (*p == '\0')
            break;
        if (*p >= 0x80) {
            size_t n = utf8_decode(p, (size_t)-1, NULL);
            if (n == 0 && lossy) {
                jw_put(w, "\xef\xbf\xbd", 3);
                p++;
                continue;
            }
            if (n == 0) {
                w->failed = 1;
                break;
            }
            jw_put(w, (const char *)p, n);
            p += n;
            continue;
        }
        char esc[6] = {'\\', 0, '0', '0', 0, 0};
        size_t len = 2;
        switch (*p) {
        case '"':
        case '\\':
            esc[1] = (char)*p;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            len = 6;
        }
        jw_put(w, esc, len);
        p++;
    }
    jw_put(w, "\"", 1);
}

static void jw_open(struct json_writer *w, char c)
{
    uint64_t bit;

    jw_separate(w, 0);
    if (w->failed)
        return;
    if (w->depth >= JW_MAX_DEPTH) {
        w->failed = 1;
        return;
    }
    jw_put(w, &c, 1);
    w->depth++;
    bit = (uint64_t)1 << (w->depth - 1);
    w->filled &= ~bit;
    if (c == '[')
        w->arrays |= bit;
    else
        w->arrays &= ~bit;
}

static void jw_close(struct json_writer *w, char c)
{
    if (w->failed)
        return;
    /* Nothing open, the other kind open, or a key still waiting for its value. */
    if (w->depth == 0 || w->after_key ||
        !(w->arrays & ((uint64_t)1 << (w->depth - 1))) != (c == '}')) {
        w->failed = 1;
        return;
    }
    w->depth--;
    jw_put(w, &c, 1);
}

void json_writer_object_begin(struct json_writer *w)
{
    jw_open(w, '{');
}

void json_writer_object_end(struct json_writer *w)
{
    jw_close(w, '}');
}

void json_writer_array_begin(struct json_writer *w)
{
    jw_open(w, '[');
}

void json_writer_array_end(struct json_writer *w)
{
    jw_close(w, ']');
}

void json_writer_key(struct json_writer *w, const char *key)
{
    if (!key) {
        w->failed = 1;
        return;
    }
    jw_separate(w, 1);
    jw_quoted(w, key, 0);
    jw_put(w, ":", 1);
    w->after_key = 1;
}

void json_writer_string(struct json_writer *w, const char *s)
{
    if (!s) {
        w->failed = 1;
        return;
    }
    jw_separate(w, 0);
    jw_quoted(w, s, 0);
}

void json_writer_int(struct json_writer *w, long long v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", v);

    jw_separate(w, 0);
    if (n > 0 && (size_t)n < sizeof(num))
        jw_put(w, num, (size_t)n);
}

void json_writer_member(struct json_writer *w, const char *key, const char *value)
{
    if (!value) {
        w->failed = 1;
        return;
    }
    json_writer_key(w, key);
    json_writer_string(w, value);
}

void json_writer_member_opt(struct json_writer *w, const char *key, const char *value)
{
    if (value)
        json_writer_member(w, key, value);
}

void json_writer_member_text_opt(struct json_writer *w, const char *key, const char *value)
{
    if (!value)
        return;
    json_writer_key(w, key);
    jw_separate(w, 0);
    jw_quoted(w, value, 1);
}

char *json_writer_finish(struct json_writer *w, size_t *len)
{
    char *out = NULL;

    if (!w->failed && !w->after_key && w->depth == 0 && w->len > 0 && jw_reserve(w, 0) == 0) {
        w->buf[w->len] = '\0';
        out = w->buf;
        if (len)
            *len = w->len;
    } else {
        free(w->buf);
    }
    memset(w, 0, sizeof(*w));
    return out;
}
