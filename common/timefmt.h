/* RFC 3339 timestamps: validation and formatting. */
#ifndef PM_TIMEFMT_H
#define PM_TIMEFMT_H

#include <stddef.h>
#include <time.h>

/* The instants RFC 3339 can write in UTC: 0000-01-01T00:00:00Z to 9999-12-31T23:59:59Z. */
#define TIMEFMT_MIN ((time_t)-62167219200LL)
#define TIMEFMT_MAX ((time_t)253402300799LL)

/**
 * @brief Check an RFC 3339 date-time: "YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)", 'T'/'t'/' ' and
 *        'Z'/'z' accepted, fields in range (leap second 60 allowed), and the instant within the
 *        four-digit years once moved to UTC.
 * @returns 1 when valid, 0 otherwise. When valid and @p out is not NULL, the instant in UTC.
 */
int timefmt_rfc3339_parse(const char *s, time_t *out);

/** @brief Format @p t as "YYYY-MM-DDTHH:MM:SSZ" (UTC, four-digit year; @p t is clamped to
 *         TIMEFMT_MIN..TIMEFMT_MAX) into @p buf (at least 21 bytes). */
void timefmt_rfc3339(time_t t, char *buf, size_t len);

/** @brief Current time with milliseconds, "YYYY-MM-DDTHH:MM:SS.mmmZ" (at least 25 bytes). */
void timefmt_now_ms(char *buf, size_t len);

#endif
