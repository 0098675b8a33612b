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

/**
 * @brief Copy the NUL-terminated @p src into @p dst (@p dstlen bytes, always NUL-terminated when
 *        dstlen > 0) as well-formed UTF-8: each byte that does not start a well-formed sequence
 *        becomes U+FFFD, and a text too long for @p dst is cut between characters. For text that
 *        leaves this process where a reader may decode it strictly (Kafka headers), when it may
 *        have been cut inside a character by a fixed-size buffer. 3 × strlen(src) + 1 bytes
 *        always hold the whole text.
 * @returns the length written.
 */
size_t utf8_lossy(char *dst, size_t dstlen, const char *src);

#endif
