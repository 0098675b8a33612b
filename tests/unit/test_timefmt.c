/* Unit tests for timefmt: RFC 3339 validation, the instant it denotes in UTC, and formatting. */
#include "timefmt.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static void test_valid(void)
{
    static const char *const ok[] = {
        "2026-11-26T10:00:00Z",
        "2026-11-26t10:00:00z", /* lower-case t and z */
        "2026-11-26 10:00:00Z", /* RFC 3339 §5.6 note: a space may separate */
        "2026-03-02T15:04:05.123456+00:00",
        "2026-03-02T10:04:05.1-05:00",
        "2026-03-02T10:04:05.123456789012345678901234567890Z", /* any number of digits */
        "2026-11-26T10:00:00-00:00",                           /* unknown local offset */
        "2026-11-26T10:00:00+23:59",
        "2024-02-29T00:00:00Z", /* leap day */
        "2000-02-29T12:34:56Z", /* divisible by 400: leap */
        "2016-12-31T23:59:60Z", /* leap second */
        "1970-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",      /* the first instant RFC 3339 can write */
        "0000-01-01T01:00:00+01:00", /* the same instant */
        "9999-12-31T22:59:59-01:00", /* the last one */
        "2026-01-31T00:00:00Z",
        "2026-04-30T00:00:00Z",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int v = timefmt_rfc3339_parse(ok[i], NULL);
        if (!v)
            fprintf(stderr, "expected valid: %s\n", ok[i]);
        CHECK_INT(v, 1);
    }
}

static void test_invalid(void)
{
    static const char *const bad[] = {
        "",
        "2026-11-26",           /* date only */
        "2026-11-26T10:00:00",  /* no time zone */
        "2026-11-26T10:00Z",    /* no seconds */
        "2023-02-29T00:00:00Z", /* not a leap year */
        "1900-02-29T00:00:00Z", /* divisible by 100, not 400 */
        "2026-02-30T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-01-32T00:00:00Z",
        "2026-11-26T24:00:00Z",
        "2026-11-26T10:60:00Z",
        "2026-11-26T10:00:61Z",
        "2026-11-26T10:00:00.Z",    /* fraction without digits */
        "2026-11-26T10:00:00,5Z",   /* comma fraction is ISO 8601, not RFC 3339 */
        "2026-11-26T10:00:00+0200", /* offset without colon */
        "2026-11-26T10:00:00+02",
        "2026-11-26T10:00:00+24:00",
        "2026-11-26T10:00:00+02:60",
        "2026-11-26T10:00:00+02:00:00",
        "2026-11-26T10:00:00ZZ",
        "2026-11-26T10:00:00Z ", /* trailing space */
        " 2026-11-26T10:00:00Z", /* leading space */
        "2026-11-26X10:00:00Z",
        "2026/11/26T10:00:00Z",
        "2026-11-26T10.00.00Z",
        "26-11-26T10:00:00Z",
        "2026-1-26T10:00:00Z",
        "2026-11-26T1:00:00Z",
        "20a6-11-26T10:00:00Z",
        "2026-11-26T10:00:00.123", /* fraction, no zone */
        "2026-11-26T10:00:00z+01:00",
        "+2026-11-26T10:00:00Z",
        "0000-01-01T00:00:00+01:00", /* year -1 in UTC: no RFC 3339 form */
        "9999-12-31T23:59:59-00:01", /* year 10000 in UTC */
        "yesterday at noon, roughly",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        time_t t = 12345;
        int v = timefmt_rfc3339_parse(bad[i], &t);
        if (v)
            fprintf(stderr, "expected invalid: \"%s\"\n", bad[i]);
        CHECK_INT(v, 0);
    }
}

static time_t parse(const char *s)
{
    time_t t = (time_t)-12345;
    CHECK_INT(timefmt_rfc3339_parse(s, &t), 1);
    return t;
}

static void test_parse_instant(void)
{
    CHECK_INT(parse("1970-01-01T00:00:00Z"), 0);
    CHECK_INT(parse("2026-11-26T10:00:00Z"), 1795687200);
    CHECK_INT(parse("2026-11-26t10:00:00z"), 1795687200);
    CHECK_INT(parse("2026-11-26 10:00:00Z"), 1795687200);
    /* Offsets are the local time's distance from UTC: the result is always the UTC instant. */
    CHECK_INT(parse("2026-11-26T12:00:00+02:00"), 1795687200);
    CHECK_INT(parse("2026-11-26T05:00:00-05:00"), 1795687200);
    CHECK_INT(parse("2026-11-26T15:30:00+05:30"), 1795687200);
    CHECK_INT(parse("2026-11-26T10:00:00-00:00"), 1795687200);
    CHECK_INT(parse("2026-11-27T00:00:00+14:00"), 1795687200);
    /* Fractions do not move the second. */
    CHECK_INT(parse("2026-11-26T10:00:00.999999Z"), 1795687200);
    CHECK_INT(parse("2024-02-29T00:00:00Z"), 1709164800);
    CHECK_INT(parse("2000-02-29T12:34:56Z"), 951827696);
    CHECK_INT(parse("2026-03-02T15:04:05-05:00"), 1772481845);
    /* A leap second is read as the second before it. */
    CHECK_INT(parse("2016-12-31T23:59:60Z"), 1483228799);
    /* Across a day boundary. */
    CHECK_INT(parse("2026-11-25T23:00:00-11:00"), 1795687200);

    /* The machine's time zone plays no part. */
    {
        const char *old = getenv("TZ");
        char saved[128] = "";
        if (old)
            snprintf(saved, sizeof(saved), "%s", old);
        setenv("TZ", "America/New_York", 1);
        tzset();
        CHECK_INT(parse("2026-11-26T10:00:00Z"), 1795687200);
        CHECK_INT(parse("2026-11-26T12:00:00+02:00"), 1795687200);
        setenv("TZ", "Asia/Kolkata", 1);
        tzset();
        CHECK_INT(parse("2024-02-29T00:00:00Z"), 1709164800);
        if (old)
            setenv("TZ", saved, 1);
        else
            unsetenv("TZ");
        tzset();
    }
}

static void test_format(void)
{
    char buf[64];

    timefmt_rfc3339(0, buf, sizeof(buf));
    CHECK_STR(buf, "1970-01-01T00:00:00Z");
    timefmt_rfc3339(1795687200, buf, sizeof(buf));
    CHECK_STR(buf, "2026-11-26T10:00:00Z");
    timefmt_rfc3339(1709164800, buf, sizeof(buf));
    CHECK_STR(buf, "2024-02-29T00:00:00Z");
    /* Exactly the documented minimum buffer. */
    {
        char small[21];
        timefmt_rfc3339(1795687200, small, sizeof(small));
        CHECK_STR(small, "2026-11-26T10:00:00Z");
    }
    /* Years before 1000 keep four digits (strftime's %Y would write "336"): the fuzzer found a
     * reply whose sent_at was in year 336 become an event pm-deliver could not read. */
    timefmt_rfc3339(parse("0336-11-26T10:00:00.1123+01:00"), buf, sizeof(buf));
    CHECK_STR(buf, "0336-11-26T09:00:00Z");
    timefmt_rfc3339(TIMEFMT_MIN, buf, sizeof(buf));
    CHECK_STR(buf, "0000-01-01T00:00:00Z");
    timefmt_rfc3339(TIMEFMT_MAX, buf, sizeof(buf));
    CHECK_STR(buf, "9999-12-31T23:59:59Z");
    /* Out of range: clamped, still RFC 3339. */
    timefmt_rfc3339(TIMEFMT_MIN - 86400, buf, sizeof(buf));
    CHECK_STR(buf, "0000-01-01T00:00:00Z");
    timefmt_rfc3339(TIMEFMT_MAX + 1, buf, sizeof(buf));
    CHECK_STR(buf, "9999-12-31T23:59:59Z");
    /* Round trip, over every four-digit year. */
    for (time_t t = TIMEFMT_MIN; t <= TIMEFMT_MAX; t += 86400 * 3697 + 3607) {
        time_t back = -1;
        timefmt_rfc3339(t, buf, sizeof(buf));
        CHECK(timefmt_rfc3339_parse(buf, &back) == 1 && back == t);
    }
    for (time_t t = 0; t < 4000000000LL; t += 86400 * 97 + 3607) {
        time_t back = -1;
        timefmt_rfc3339(t, buf, sizeof(buf));
        CHECK(timefmt_rfc3339_parse(buf, &back) == 1 && back == t);
    }
}

static void test_now_ms(void)
{
    char buf[40];
    struct timeval before, after;
    time_t t = 0;

    /* Bounds from the clock timefmt_now_ms reads: time(NULL) reads a coarser one that can still
     * show the previous second a few milliseconds after it (this check failed once in CI). */
    gettimeofday(&before, NULL);
    timefmt_now_ms(buf, sizeof(buf));
    gettimeofday(&after, NULL);
    CHECK_INT(strlen(buf), 24);
    CHECK(buf[19] == '.' && buf[23] == 'Z');
    CHECK_INT(timefmt_rfc3339_parse(buf, &t), 1);
    CHECK(t >= before.tv_sec && t <= after.tv_sec);
    /* Exactly the documented minimum buffer. */
    {
        char small[25];
        timefmt_now_ms(small, sizeof(small));
        CHECK_INT(strlen(small), 24);
        CHECK_INT(timefmt_rfc3339_parse(small, NULL), 1);
    }
}

int main(void)
{
    test_valid();
    test_invalid();
    test_parse_instant();
    test_format();
    test_now_ms();
    return UNIT_DONE();
}
