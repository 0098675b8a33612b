/* RFC 3339 date-time validation and UTC formatting. */
#include "timefmt.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

/* Reads exactly @p n digits. @returns the value or -1. */
static int timefmt_digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int timefmt_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int timefmt_rfc3339_parse(const char *s, time_t *out)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, offset = 0;
    struct tm tm;
    time_t t;
    const char *p;

    if (strlen(s) < 20)
        return 0;
    y = timefmt_digits(s, 4);
    mo = timefmt_digits(s + 5, 2);
    d = timefmt_digits(s + 8, 2);
    h = timefmt_digits(s + 11, 2);
    mi = timefmt_digits(s + 14, 2);
    sec = timefmt_digits(s + 17, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 ||
        sec > 60)
        return 0;
    if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        s[13] != ':' || s[16] != ':')
        return 0;
    if (d > mdays[mo - 1] + (mo == 2 && timefmt_leap(y)))
        return 0;
    p = s + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        offset = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh = timefmt_digits(p + 1, 2), om = timefmt_digits(p + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return 0;
        offset = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
    } else {
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec > 59 ? 59 : sec;
    t = timegm(&tm) - offset;
    /* The offset can move the instant out of the four-digit years ("0000-01-01T00:00:00+01:00"
     * is in year -1 UTC): such a time has no RFC 3339 form in UTC, so it is not accepted. */
    if (t < TIMEFMT_MIN || t > TIMEFMT_MAX)
        return 0;
    if (out)
        *out = t;
    return 1;
}

void timefmt_rfc3339(time_t t, char *buf, size_t len)
{
    struct tm tm;
    /* Four-digit years, always: strftime's %Y writes year 336 as "336", which is not RFC 3339. */
    if (t < TIMEFMT_MIN)
        t = TIMEFMT_MIN;
    else if (t > TIMEFMT_MAX)
        t = TIMEFMT_MAX;
    gmtime_r(&t, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void timefmt_now_ms(char *buf, size_t len)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}
