/* Configuration from the environment: typed getters, X_FILE secrets,
 * --help/--version/--check-config. */
#ifndef PM_CONFIG_H
#define PM_CONFIG_H

#include "log.h"

#include <stddef.h>
#include <stdio.h>

/* One variable a binary reads; a NULL-name entry ends a table. The table is what --help prints,
 * so every getenv in a service goes through a variable listed here. */
struct config_var {
    const char *name;
    const char *def; /* default shown in --help; NULL = unset */
    int secret;      /* 1: may be given as NAME_FILE, never echoed */
    const char *help;
};

/* Every problem found while reading configuration, so --check-config reports all at once. */
struct config_report {
    int count;
    size_t len;
    char text[8192];
};

/** @brief Record one problem (printf-style). Never pass a secret's value. */
void config_report_add(struct config_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** @brief Print every recorded problem, one per line, prefixed by @p prog. */
void config_report_print(const struct config_report *r, FILE *out, const char *prog);

/**
 * @brief A plain (non-secret) variable.
 * @returns the environment value when set and non-empty, else @p def (may be NULL). The pointer
 *          is the environment's or @p def: do not free.
 */
const char *config_str(const char *name, const char *def);

/**
 * @brief A secret: NAME, or the contents of the file named by NAME_FILE (one trailing newline
 *        removed). Both set, an unreadable file or an empty value is a problem in @p r.
 * @returns a malloc'd string the caller frees (and should wipe), or NULL when unset/invalid.
 */
char *config_secret(const char *name, struct config_report *r);

/**
 * @brief An integer within [min, max]; a malformed or out-of-range value is a problem in @p r
 *        and yields @p def.
 */
long config_long(const char *name, long def, long min, long max, struct config_report *r);

/** @brief "1/true/yes/on" or "0/false/no/off"; anything else is a problem in @p r. */
int config_bool(const char *name, int def, struct config_report *r);

/**
 * @brief Split a comma-separated list: items trimmed, empties dropped.
 * @returns the item count; @p items is malloc'd (free with config_list_free), NULL when none.
 */
size_t config_list_split(const char *value, char ***items);
void config_list_free(char **items, size_t n);

/**
 * @brief Parse "host:port" (IPv4 host or name, "[v6]:port", or ":port" for all addresses).
 * @returns 0, or -1 with a reason in @p errstr.
 */
int config_parse_listen(const char *value, char *host, size_t hostlen, unsigned *port, char *errstr,
                        size_t errlen);

enum config_mode {
    CONFIG_MODE_RUN,
    CONFIG_MODE_CHECK,
    CONFIG_MODE_EXIT_OK,
    CONFIG_MODE_EXIT_USAGE
};

/**
 * @brief Handle the command line every binary shares: --help (prints @p summary and every
 *        variable in @p vars with its default), --version, --check-config. Other arguments are
 *        not accepted: secrets never come from the command line.
 */
enum config_mode config_cli(int argc, char **argv, const char *prog, const char *summary,
                            const struct config_var *vars);

/** @brief Overwrite then free a secret string. NULL is fine. */
void config_secret_free(char *s);

/* The product's topics (SPEC §3): their default names, each overridable by its PM_TOPIC_*
 * variable. One definition, so that every binary and its --help agree. */
#define CONFIG_TOPIC_MESSAGES_DEFAULT       "pm.canvas.messages"
#define CONFIG_TOPIC_REPLIES_DEFAULT        "pm.patient.replies"
#define CONFIG_TOPIC_QUESTIONNAIRES_DEFAULT "pm.patient.questionnaire-responses"
#define CONFIG_TOPIC_DELIVERIES_DEFAULT     "pm.deliveries"
#define CONFIG_TOPIC_DLQ_DEFAULT            "pm.dlq"

struct config_topics {
    const char *messages;       /* PM_TOPIC_CANVAS_MESSAGES: canvas.message.v1 */
    const char *replies;        /* PM_TOPIC_PATIENT_REPLIES: patient.reply.v1 */
    const char *questionnaires; /* PM_TOPIC_QUESTIONNAIRE_RESPONSES: questionnaire.response.v1 */
    const char *deliveries;     /* PM_TOPIC_DELIVERIES: delivery.result.v1 */
    const char *dlq;            /* PM_TOPIC_DLQ: the dead-letter topic */
};

/**
 * @brief Every PM_TOPIC_* variable, or its default.
 * @returns nothing; the strings are the environment's or constants: do not free.
 */
void config_topics_load(struct config_topics *t);

/**
 * @brief PM_LOG_LEVEL: error, warn, info or debug (default info).
 * @returns the level; another value is a problem in @p r and yields LOG_INFO.
 */
enum log_level config_log_level(struct config_report *r);

#endif
