/* Unit tests for uuid: RFC 9562 version-4 format, version/variant bits, no repeats. */
#include "uuid.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

#define N 10000

static int is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int hex_value(char c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

static int cmp(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

int main(void)
{
    static char ids[N][UUID_STR_LEN];
    unsigned seen[36] = {0}; /* per position: bit mask of the hex digits that appeared */
    unsigned variants = 0;
    int bad_format = 0, bad_version = 0, bad_variant = 0, dups = 0;

    for (int i = 0; i < N; i++) {
        char *u = ids[i];
        memset(u, 'X', UUID_STR_LEN);
        CHECK_INT(uuid_v4(u), 0);
        if (strlen(u) != 36) {
            bad_format++;
            continue;
        }
        for (int p = 0; p < 36; p++) {
            if (p == 8 || p == 13 || p == 18 || p == 23) {
                if (u[p] != '-')
                    bad_format++;
            } else if (!is_lower_hex(u[p])) {
                bad_format++;
            } else {
                seen[p] |= 1u << hex_value(u[p]);
            }
        }
        if (u[14] != '4')
            bad_version++;
        if (!strchr("89ab", u[19]))
            bad_variant++;
        else
            variants |= 1u << (u[19] - (u[19] <= '9' ? '8' : 'a' - 2));
    }
    CHECK_INT(bad_format, 0);
    CHECK_INT(bad_version, 0); /* version 4: the 13th hex digit */
    CHECK_INT(bad_variant, 0); /* variant 10xx: the 17th hex digit is 8, 9, a or b */
    CHECK_INT(variants, 0xf);  /* ...and the two free variant bits are random */

    /* Every random position takes all 16 values over 10k draws (a stuck byte would show). */
    for (int p = 0; p < 36; p++) {
        if (p == 8 || p == 13 || p == 18 || p == 23 || p == 14 || p == 19)
            continue;
        if (seen[p] != 0xffff)
            fprintf(stderr, "position %d saw mask %#x\n", p, seen[p]);
        CHECK_INT(seen[p], 0xffff);
    }

    qsort(ids, N, sizeof(ids[0]), cmp);
    for (int i = 1; i < N; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            dups++;
    CHECK_INT(dups, 0);
    return UNIT_DONE();
}
