/* RFC 3339 timestamps: validation and formatting. */
#ifndef PM_TIMEFMT_H
#define PM_TIMEFMT_H

#include <stddef.h>
#include <time.h>

/**
 * @brief Check an RFC 3339 date-time: "YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)", 'T'/'t'/' ' and
 *        'Z'/'z' accepted, fields in range (leap second 60 allowed).
 * @returns 1 when valid, 0 otherwise. When valid and @p out is not NULL, the instant in UTC.
 */
int timefmt_rfc3339_parse(const char *s, time_t *out);

/** @brief Format @p t as "YYYY-MM-DDTHH:MM:SSZ" (UTC) into @p buf (at least 21 bytes). */
void timefmt_rfc3339(time_t t, char *buf, size_t len);

/** @brief Current time with milliseconds, "YYYY-MM-DDTHH:MM:SS.mmmZ" (at least 25 bytes). */
void timefmt_now_ms(char *buf, size_t len);

#endif
