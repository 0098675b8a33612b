/* Random (version 4) UUIDs for event ids. */
#ifndef PM_UUID_H
#define PM_UUID_H

#define UUID_STR_LEN 37 /* 36 characters + NUL */

/** @brief Write a random RFC 9562 version-4 UUID, lower-case, into @p out. @returns 0 / -1. */
int uuid_v4(char out[UUID_STR_LEN]);

#endif
