/* json_loadb with yajl's lexer building the jansson values; jansson itself for anything unusual. */
#include "json_load.h"

#include "utf8.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yajl_parse.h>

#define JL_MAX_DEPTH  64
#define JL_NUMBER_MAX 64
#define JL_SCRATCH    4096 /* yajl's own allocations for one parse: about 2,400 bytes */
#define JL_HDR        16   /* a block's size before it; keeps blocks 16-byte aligned */

/*
 * yajl allocates its handle, lexer and buffers anew for every parse, one of them 2,048 bytes:
 * past glibc's per-thread cache, so each parse took the allocator's slow path (and its
 * consolidation of freed chunks; 4 % of pm-deliver's CPU in perf). They live only until
 * yajl_free, so they are carved from a buffer on json_load_yajl's stack; what does not fit goes
 * to malloc. Each block starts with its size, for realloc.
 */
struct jl_scratch {
    _Alignas(16) unsigned char mem[JL_SCRATCH];
    size_t used;
};

/* As integers: comparing pointers into different objects with < is undefined in C. */
static int jl_in_scratch(const struct jl_scratch *s, const void *p)
{
    uintptr_t b = (uintptr_t)p, lo = (uintptr_t)s->mem;
    return b >= lo && b - lo < sizeof(s->mem);
}

static void *jl_malloc(void *ctx, size_t n)
{
    struct jl_scratch *s = ctx;
    size_t need = JL_HDR + ((n + 15) & ~(size_t)15);
    unsigned char *b;

    if (n <= sizeof(s->mem) && need <= sizeof(s->mem) - s->used) {
        b = s->mem + s->used;
        s->used += need;
    } else if (n > (size_t)-1 - JL_HDR || (b = malloc(JL_HDR + n)) == NULL) {
        return NULL;
    }
    memcpy(b, &n, sizeof(n));
    return b + JL_HDR;
}

static void jl_free(void *ctx, void *p)
{
    if (p && !jl_in_scratch(ctx, p))
        free((unsigned char *)p - JL_HDR);
    /* scratch blocks go with the stack frame */
}

static void *jl_realloc(void *ctx, void *p, size_t n)
{
    size_t old;
    void *q;

    if (!p)
        return jl_malloc(ctx, n);
    memcpy(&old, (unsigned char *)p - JL_HDR, sizeof(old));
    if (n <= old)
        return p;
    q = jl_malloc(ctx, n);
    if (!q)
        return NULL;
    memcpy(q, p, old);
    jl_free(ctx, p);
    return q;
}

struct jl_ctx {
    json_t *root;
    json_t *stack[JL_MAX_DEPTH]; /* open containers, borrowed (their parent or root owns them) */
    unsigned depth;
    int reject_dups;
    char *key; /* the member name waiting for its value, copied (yajl reuses its buffer) */
    size_t key_len, key_cap;
    int have_key;
    yajl_handle h;
    size_t root_end; /* bytes up to the root's closing bracket */
};

/* What yajl lets through and jansson does not, or decodes differently: \u escapes (jansson
 * refuses \u0000 and lone surrogates, yajl writes "?"), and form feed and vertical tab, which
 * yajl takes as whitespace. */
static int jl_input_plain(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;

    if (memchr(buf, '\f', len) || memchr(buf, '\v', len))
        return 0;
    while ((p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
        if (p + 1 < end && p[1] == 'u')
            return 0;
        p += 2; /* an escape is two bytes; "\\\\u" is a backslash and a 'u' */
        if (p >= end)
            break;
    }
    return 1;
}

/* A decoded string or key (no \u escapes reach here): yajl checks UTF-8 less strictly than
 * jansson (it takes overlong forms, surrogates and values past U+10FFFF). Control bytes from
 * escapes such as \n are fine; NUL cannot occur without \u0000. */
static int jl_utf8_ok(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = utf8_decode(s + i, len - i, NULL);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

/* Hands @p v (taken, even on failure) to the open container or makes it the root. */
static int jl_add(struct jl_ctx *c, json_t *v)
{
    json_t *parent;

    if (!v)
        return 0;
    if (c->depth == 0) {
        if (c->root) {
            json_decref(v);
            return 0;
        }
        c->root = v;
        return 1;
    }
    parent = c->stack[c->depth - 1];
    if (json_is_object(parent)) {
        if (!c->have_key ||
            (c->reject_dups && json_object_getn(parent, c->key, c->key_len) != NULL)) {
            json_decref(v);
            return 0; /* a duplicate: json_loadb words the error */
        }
        c->have_key = 0;
        return json_object_setn_new_nocheck(parent, c->key, c->key_len, v) == 0;
    }
    return json_array_append_new(parent, v) == 0;
}

static int jl_null(void *ctx)
{
    return jl_add(ctx, json_null());
}

static int jl_boolean(void *ctx, int v)
{
    return jl_add(ctx, json_boolean(v));
}

/* Numbers as jansson reads them: an integer unless there is '.', 'e' or 'E'; an integer out of
 * json_int_t's range and a real that overflows are errors (left to json_loadb to word). */
static int jl_number(void *ctx, const char *s, size_t len)
{
    char num[JL_NUMBER_MAX];
    char *end;

    if (len == 0 || len >= sizeof(num))
        return 0;
    memcpy(num, s, len);
    num[len] = '\0';
    errno = 0;
    if (memchr(num, '.', len) || memchr(num, 'e', len) || memchr(num, 'E', len)) {
        double d = strtod(num, &end);
        if (*end != '\0' || ((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE))
            return 0;
        return jl_add(ctx, json_real(d));
    }
    long long v = strtoll(num, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return 0;
    return jl_add(ctx, json_integer((json_int_t)v));
}

static int jl_string(void *ctx, const unsigned char *s, size_t len)
{
    if (!jl_utf8_ok(s, len))
        return 0;
    return jl_add(ctx, json_stringn_nocheck((const char *)s, len));
}

static int jl_open(struct jl_ctx *c, json_t *container)
{
    if (!container)
        return 0;
    if (c->depth >= JL_MAX_DEPTH) {
        json_decref(container);
        return 0; /* deeper than anything we read: json_loadb takes it (its limit is 2048) */
    }
    if (!jl_add(c, container))
        return 0;
    c->stack[c->depth++] = container;
    return 1;
}

static int jl_start_map(void *ctx)
{
    return jl_open(ctx, json_object());
}

static int jl_start_array(void *ctx)
{
    return jl_open(ctx, json_array());
}

static int jl_end(void *ctx)
{
    struct jl_ctx *c = ctx;
    if (c->depth == 0)
        return 0;
    if (--c->depth == 0)
        c->root_end = yajl_get_bytes_consumed(c->h);
    return 1;
}

static int jl_map_key(void *ctx, const unsigned char *s, size_t len)
{
    struct jl_ctx *c = ctx;

    if (!jl_utf8_ok(s, len))
        return 0;
    if (len + 1 > c->key_cap) {
        size_t cap = c->key_cap ? c->key_cap : 64;
        char *k;
        while (cap < len + 1)
            cap *= 2;
        k = realloc(c->key, cap);
        if (!k)
            return 0;
        c->key = k;
        c->key_cap = cap;
    }
    memcpy(c->key, s, len);
    c->key[len] = '\0';
    c->key_len = len;
    c->have_key = 1;
    return 1;
}

static const yajl_callbacks jl_callbacks = {
    jl_null,      jl_boolean, NULL,   NULL,           jl_number, jl_string,
    jl_start_map, jl_map_key, jl_end, jl_start_array, jl_end,
};

json_t *json_load_yajl(const char *buf, size_t len, size_t flags)
{
    struct jl_ctx c;
    struct jl_scratch scratch;
    yajl_alloc_funcs af = {jl_malloc, jl_realloc, jl_free, &scratch};
    yajl_handle h;
    int ok;

    if ((flags & ~(size_t)JSON_REJECT_DUPLICATES) != 0 || !buf || len == 0 ||
        !jl_input_plain(buf, len))
        return NULL;
    memset(&c, 0, sizeof(c));
    c.reject_dups = (flags & JSON_REJECT_DUPLICATES) != 0;
    scratch.used = 0;
    h = yajl_alloc(&jl_callbacks, &af, &c);
    if (!h)
        return NULL;
    c.h = h;
    ok = yajl_parse(h, (const unsigned char *)buf, len) == yajl_status_ok &&
         yajl_complete_parse(h) == yajl_status_ok && c.depth == 0 &&
         (json_is_object(c.root) || json_is_array(c.root)) && c.root_end <= len;
    /* yajl 2.1 lets an unfinished token after the value pass ("{}\"["): only whitespace, as
     * jansson reads it, may follow. */
    for (size_t i = ok ? c.root_end : len; i < len; i++)
        if (buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\n' && buf[i] != '\r')
            ok = 0;
    yajl_free(h);
    free(c.key);
    if (ok)
        return c.root;
    json_decref(c.root);
    return NULL;
}

json_t *json_load_fast(const char *buf, size_t len, size_t flags, json_error_t *error)
{
    json_t *v = json_load_yajl(buf, len, flags);
    /* Not for the fast path (or not JSON): jansson's result and error message. */
    return v ? v : json_loadb(buf, len, flags, error);
}
