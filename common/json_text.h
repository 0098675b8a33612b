/* JSON serialisation without json_dumps's growing buffer. */
#ifndef PM_JSON_TEXT_H
#define PM_JSON_TEXT_H

#include <jansson.h>
#include <stddef.h>

/**
 * @brief Serialise @p j (jansson dump @p flags) into @p buf when the text fits in @p size bytes
 * with its NUL, else into a malloc'd buffer of exactly its size.
 * @returns @p buf or the malloc'd text (the caller frees it when it is not @p buf), NUL-terminated,
 * its length in @p len; NULL when @p j cannot be serialised or memory runs out.
 */
char *json_text_dumpb(const json_t *j, size_t flags, char *buf, size_t size, size_t *len);

/**
 * @brief Like json_dumps, but the text is written once into a stack buffer and copied into one
 * allocation of its exact size (json_dumps starts at 16 bytes and doubles, copying each time).
 * @returns the malloc'd NUL-terminated text (length in @p len when not NULL), or NULL.
 */
char *json_text_dump(const json_t *j, size_t flags, size_t *len);

#endif
