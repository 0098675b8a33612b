/* Minimal unit-test support: CHECK macros that count failures and report file:line. */
#ifndef PM_UNIT_H
#define PM_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_failures;
static int unit_checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        unit_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            unit_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long unit_a_ = (long long)(a), unit_b_ = (long long)(b);                              \
        unit_checks++;                                                                             \
        if (unit_a_ != unit_b_) {                                                                  \
            unit_failures++;                                                                       \
            fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, unit_a_, \
                    unit_b_);                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *unit_a_ = (a), *unit_b_ = (b);                                                 \
        unit_checks++;                                                                             \
        if (!unit_a_ || !unit_b_ || strcmp(unit_a_, unit_b_) != 0) {                               \
            unit_failures++;                                                                       \
            fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a,      \
                    unit_a_ ? unit_a_ : "(null)", unit_b_ ? unit_b_ : "(null)");                   \
        }                                                                                          \
    } while (0)

/* Ends main(): prints a summary and returns the exit status for CTest. */
#define UNIT_DONE()                                                                                \
    (fprintf(stderr, "%s: %d checks, %d failed\n", __FILE__, unit_checks, unit_failures),          \
     unit_failures ? 1 : 0)

#endif
