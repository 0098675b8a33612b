/* UTF-8 (RFC 3629) decoding: one well-formed sequence at a time. */
#ifndef PM_UTF8_H
#define PM_UTF8_H

#include <stddef.h>
#include <stdint.h>

/**
 * @brief Decode the sequence at @p s, reading at most @p len bytes.
 * @returns its length (1-4) with the code point in @p cp (may be NULL), or 0 when the bytes are
 *          not well-formed UTF-8: a stray continuation byte, an overlong form, a surrogate, a
 *          value past U+10FFFF or a sequence cut short. Never reads past a byte that is not a
 *          continuation byte, so a NUL-terminated string is safe with len = (size_t)-1.
 */
size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);

#endif
