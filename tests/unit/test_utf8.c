/* Unit tests for utf8_decode: every length, the RFC 3629 boundaries, and each ill-formed kind. */
#include "utf8.h"
#include "unit.h"

#include <stdint.h>

/* Decodes @p s (a string literal; its length without the NUL) and returns the length, with the
 * code point in @p cp. */
static size_t dec(const char *s, size_t len, uint32_t *cp)
{
    *cp = 0xdeadbeef;
    return utf8_decode((const unsigned char *)s, len, cp);
}

int main(void)
{
    uint32_t cp;

    /* Well-formed: one to four bytes, with the smallest and largest value of each length. */
    CHECK_INT(dec("A", 1, &cp), 1);
    CHECK_INT(cp, 'A');
    CHECK_INT(dec("\x7f", 1, &cp), 1);
    CHECK_INT(cp, 0x7f);
    CHECK_INT(dec("\xc2\x80", 2, &cp), 2);
    CHECK_INT(cp, 0x80);
    CHECK_INT(dec("\xc3\xa9", 2, &cp), 2); /* é */
    CHECK_INT(cp, 0xe9);
    CHECK_INT(dec("\xdf\xbf", 2, &cp), 2);
    CHECK_INT(cp, 0x7ff);
    CHECK_INT(dec("\xe0\xa0\x80", 3, &cp), 3);
    CHECK_INT(cp, 0x800);
    CHECK_INT(dec("\xed\x9f\xbf", 3, &cp), 3); /* last before the surrogates */
    CHECK_INT(cp, 0xd7ff);
    CHECK_INT(dec("\xee\x80\x80", 3, &cp), 3); /* first after them */
    CHECK_INT(cp, 0xe000);
    CHECK_INT(dec("\xef\xbf\xbd", 3, &cp), 3);
    CHECK_INT(cp, 0xfffd);
    CHECK_INT(dec("\xf0\x90\x80\x80", 4, &cp), 4);
    CHECK_INT(cp, 0x10000);
    CHECK_INT(dec("\xf0\x9f\x98\x80", 4, &cp), 4); /* 😀 */
    CHECK_INT(cp, 0x1f600);
    CHECK_INT(dec("\xf4\x8f\xbf\xbf", 4, &cp), 4);
    CHECK_INT(cp, 0x10ffff);

    /* Only the first sequence is read; a NULL cp is allowed. */
    CHECK_INT(dec("\xc3\xa9xyz", 5, &cp), 2);
    CHECK_INT(utf8_decode((const unsigned char *)"\xe2\x82\xac", 3, NULL), 3);

    /* Ill-formed: nothing decoded, cp untouched. */
    CHECK_INT(dec("", 0, &cp), 0);
    CHECK_INT(cp, 0xdeadbeef);
    CHECK_INT(dec("\x80", 1, &cp), 0);             /* stray continuation byte */
    CHECK_INT(dec("\xbf", 1, &cp), 0);             /* stray continuation byte */
    CHECK_INT(dec("\xc0\xaf", 2, &cp), 0);         /* overlong '/' */
    CHECK_INT(dec("\xc1\xbf", 2, &cp), 0);         /* overlong */
    CHECK_INT(dec("\xe0\x80\xaf", 3, &cp), 0);     /* overlong '/' */
    CHECK_INT(dec("\xe0\x9f\xbf", 3, &cp), 0);     /* overlong U+07FF */
    CHECK_INT(dec("\xf0\x8f\xbf\xbf", 4, &cp), 0); /* overlong U+FFFF */
    CHECK_INT(dec("\xed\xa0\x80", 3, &cp), 0);     /* U+D800, a surrogate */
    CHECK_INT(dec("\xed\xbf\xbf", 3, &cp), 0);     /* U+DFFF */
    CHECK_INT(dec("\xf4\x90\x80\x80", 4, &cp), 0); /* U+110000 */
    CHECK_INT(dec("\xf5\x80\x80\x80", 4, &cp), 0); /* lead byte never used */
    CHECK_INT(dec("\xff", 1, &cp), 0);
    CHECK_INT(dec("\xc3", 1, &cp), 0);         /* cut short by len */
    CHECK_INT(dec("\xe2\x82", 2, &cp), 0);     /* cut short by len */
    CHECK_INT(dec("\xf0\x9f\x98", 3, &cp), 0); /* cut short by len */
    CHECK_INT(dec("\xc3"
                  "A",
                  2, &cp),
              0); /* not a continuation byte */
    CHECK_INT(dec("\xe2\x82"
                  "A",
                  3, &cp),
              0);
    CHECK_INT(cp, 0xdeadbeef);

    /* An unbounded length on a NUL-terminated string stops at the NUL, not past it. */
    {
        static const char cut[] = "\xe2\x82"; /* then the terminating NUL */
        CHECK_INT(utf8_decode((const unsigned char *)cut, (size_t)-1, &cp), 0);
        CHECK_INT(utf8_decode((const unsigned char *)"\xc3\xa9", (size_t)-1, &cp), 2);
        CHECK_INT(cp, 0xe9);
    }

    /* utf8_lossy: well-formed text unchanged; every stray byte one U+FFFD; cuts only between
     * characters; always terminated. */
    {
        char out[64];
        CHECK_INT(utf8_lossy(out, sizeof(out), "caf\xc3\xa9 \xe2\x82\xac"), 9);
        CHECK_STR(out, "caf\xc3\xa9 \xe2\x82\xac");
        /* a text cut inside a character, the way snprintf into a fixed buffer cuts it */
        CHECK_INT(utf8_lossy(out, sizeof(out), "422: x\xc3"), 9);
        CHECK_STR(out, "422: x\xef\xbf\xbd");
        CHECK_INT(utf8_lossy(out, sizeof(out),
                             "\xff\xfe"
                             "a"
                             "\xed\xa0\x80"),
                  16); /* a surrogate's three bytes are three stray bytes */
        CHECK_STR(out, "\xef\xbf\xbd\xef\xbf\xbd"
                       "a"
                       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
        /* room for "ab" and the NUL, not for the 2-byte character after them */
        CHECK_INT(utf8_lossy(out, 4, "ab\xc3\xa9"), 2);
        CHECK_STR(out, "ab");
        CHECK_INT(utf8_lossy(out, 5, "ab\xc3\xa9"), 4);
        CHECK_STR(out, "ab\xc3\xa9");
        CHECK_INT(utf8_lossy(out, 1, "abc"), 0);
        CHECK_STR(out, "");
        CHECK_INT(utf8_lossy(out, 0, "abc"), 0);
        /* 3 x strlen + 1 holds any input whole */
        CHECK_INT(utf8_lossy(out, 3 * 4 + 1, "\x80\x80\x80\x80"), 12);
    }

    return UNIT_DONE();
}
