/* RFC 9457 problem documents: {"type","title","status","detail","errors":[{"pointer","detail"}]}.
 */
#ifndef PM_PROBLEM_H
#define PM_PROBLEM_H

#include <jansson.h>

/**
 * @brief A new problem document. "type" is "about:blank" unless @p type is given (then a URI
 *        from docs/http-api.md, e.g. "urn:pm:problem:invalid-body"); "title" is the status's
 *        reason phrase. @p detail may be NULL. Never put request data (PHI) in @p detail.
 * @returns a new reference (NULL only on allocation failure).
 */
json_t *problem_new(int status, const char *type, const char *detail);

/**
 * @brief Append {"pointer": @p pointer, "detail": @p detail} to the "errors" array (created on
 *        first use). @p pointer is an RFC 6901 JSON pointer into the request body ("" = whole).
 */
void problem_add_error(json_t *problem, const char *pointer, const char *detail);

/** @returns the number of entries in "errors". */
size_t problem_error_count(const json_t *problem);

/** @returns the standard reason phrase ("Bad Request"), or "Error" for an unknown status. */
const char *problem_status_title(int status);

/**
 * @brief Append an RFC 6901 reference token to a pointer, escaping '~' as "~0" and '/' as "~1".
 * @returns 0, or -1 when @p out (of @p outlen bytes) is too small (it then holds a prefix).
 */
int problem_pointer_join(char *out, size_t outlen, const char *base, const char *token);

/** @brief problem_pointer_join for an array index. */
int problem_pointer_index(char *out, size_t outlen, const char *base, size_t index);

#endif
