/* json_loadb with yajl's lexer: the same jansson values and errors, several times faster. */
#ifndef PM_JSON_LOAD_H
#define PM_JSON_LOAD_H

#include <jansson.h>
#include <stddef.h>

/*
 * Why: jansson's parser copies its input a byte at a time; parsing the consumed CloudEvent and
 * the Communication read back was 30 % of pm-deliver's instructions per message (benchmarks.md,
 * finding 10). yajl's callback parser (Debian libyajl2) building the same jansson values does the
 * same work in a fifth of the time.
 *
 * jansson stays the authority: yajl takes only input whose every detail it treats the way jansson
 * does; anything else (a \u escape anywhere, a number out of range, a string that is not UTF-8 or
 * holds a control byte, nesting deeper than 64, a top-level value that is not an object or an
 * array, a duplicate key under JSON_REJECT_DUPLICATES, any syntax error) is parsed again by
 * json_loadb, so results and error messages are jansson's own. tests/unit/test_json_load.c and
 * the differential fuzz target fuzz_json_load compare the two on every input.
 */

/**
 * @brief json_loadb(@p buf, @p len, @p flags, @p error), faster for well-formed input.
 *        @p flags: 0 or JSON_REJECT_DUPLICATES take the fast path; other flags go to json_loadb.
 * @returns a new reference, or NULL with @p error (may be NULL) filled by jansson.
 */
json_t *json_load_fast(const char *buf, size_t len, size_t flags, json_error_t *error);

/**
 * @brief The fast path alone (for tests): the value json_loadb would give, or NULL when the
 *        input is not for the fast path (json_load_fast then asks json_loadb).
 */
json_t *json_load_yajl(const char *buf, size_t len, size_t flags);

#endif
