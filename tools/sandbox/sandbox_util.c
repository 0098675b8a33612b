/* pm-sandbox helpers: target names, random ids, clocks, form and query encoding, UTF-8 handling. */
#include "sandbox.h"

#include "utf8.h"
#include "uuid.h"

#include <curl/curl.h>
#include <microhttpd.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static const char *const sandbox_target_names[SANDBOX_TARGET_COUNT] = {"token", "fhir", "twilio",
                                                                       "sendgrid", "webhook"};

const char *sandbox_target_name(enum sandbox_target t)
{
    return (unsigned)t < SANDBOX_TARGET_COUNT ? sandbox_target_names[t] : "unknown";
}

int sandbox_target_parse(const char *name, enum sandbox_target *out)
{
    for (int i = 0; i < SANDBOX_TARGET_COUNT; i++) {
        if (strcmp(name, sandbox_target_names[i]) == 0) {
            *out = (enum sandbox_target)i;
            return 0;
        }
    }
    return -1;
}

/* RAND_bytes only fails when the generator cannot be seeded: then the process is unusable for
 * anything that needs unique ids, and aborting is more honest than handing out duplicates. */
static void sandbox_random_bytes(unsigned char *buf, size_t n)
{
    if (RAND_bytes(buf, (int)n) != 1)
        abort();
}

void sandbox_uuid(char out[37])
{
    if (uuid_v4(out) != 0) /* the generator cannot be seeded: see sandbox_random_bytes */
        abort();
}

void sandbox_random_alnum(char *out, size_t n)
{
    static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char b[64];
    size_t i = 0;

    while (i < n) {
        sandbox_random_bytes(b, sizeof(b));
        /* 62 * 4 = 248: bytes above it are dropped so every character is equally likely. */
        for (size_t j = 0; j < sizeof(b) && i < n; j++)
            if (b[j] < 248)
                out[i++] = set[b[j] % 62];
    }
    out[n] = '\0';
}

void sandbox_random_hex(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[32];
    size_t i = 0;

    while (i < n) {
        sandbox_random_bytes(b, sizeof(b));
        for (size_t j = 0; j < sizeof(b) && i < n; j++)
            out[i++] = hex[b[j] & 0x0f];
    }
    out[n] = '\0';
}

void sandbox_now_fhir(char *out, size_t len)
{
    struct timeval tv;
    struct tm tm;
    char base[32];

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%06ld+00:00", base, (long)tv.tv_usec);
}

int64_t sandbox_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *sandbox_form_get(const char *body, size_t len, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = body, *end = body + len;

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *fend = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(fend - p));
        const char *kend = eq ? eq : fend;

        /* Field names here are plain ASCII, so they are compared without decoding. */
        if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : fend;
            size_t vlen = (size_t)(fend - v);
            char *out = malloc(vlen + 1);
            if (!out)
                return NULL;
            for (size_t i = 0; i < vlen; i++)
                out[i] = v[i] == '+' ? ' ' : v[i];
            out[vlen] = '\0';
            /* MHD's decoder: %XX to bytes in place, the same one that decodes query strings. */
            MHD_http_unescape(out);
            return out;
        }
        p = fend + 1;
    }
    return NULL;
}

int sandbox_query_append(char *buf, size_t cap, const char *name, const char *value)
{
    size_t used = strlen(buf);
    /* curl_easy_escape ignores its handle since 7.82 and encodes all but unreserved characters,
     * as Canvas's links show ("staff%40clinic.example"). */
    char *enc = curl_easy_escape(NULL, value, 0);
    int n;

    if (!enc)
        return -1;
    n = snprintf(buf + used, cap - used, "%s%s=%s", used ? "&" : "", name, enc);
    curl_free(enc);
    if (n < 0 || (size_t)n >= cap - used) {
        buf[used] = '\0';
        return -1;
    }
    return 0;
}

size_t sandbox_utf8_chars(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, chars = 0;

    while (i < len) {
        size_t n = utf8_decode(p + i, len - i, NULL);
        i += n ? n : 1;
        chars++;
    }
    return chars;
}

json_t *sandbox_json_string_lossy(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    json_t *out = json_stringn(s, len);
    char *buf;
    size_t i = 0, o = 0;

    if (out || !s)
        return out ? out : json_string("");
    /* Invalid UTF-8 or an embedded NUL: rebuild with U+FFFD (3 bytes) for every bad byte. */
    buf = malloc(len * 3 + 1);
    if (!buf)
        return json_string("");
    while (i < len) {
        size_t n = p[i] ? utf8_decode(p + i, len - i, NULL) : 0;
        if (n) {
            memcpy(buf + o, p + i, n);
            o += n;
            i += n;
        } else {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out = json_stringn(buf, o);
    free(buf);
    return out ? out : json_string("");
}

int sandbox_starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}
