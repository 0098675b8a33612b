/* JSON-lines logging on stderr that cannot carry PHI: only allow-listed field names pass. */
#ifndef PM_LOG_H
#define PM_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* One structured field. Build with LOG_S / LOG_I; the list passed to log_* ends with LOG_END,
 * which the log_* macros append themselves. */
struct log_kv {
    const char *key;
    const char *s;
    long long i;
    int is_int;
};

#define LOG_S(k, v) ((struct log_kv){(k), (v), 0, 0})
#define LOG_I(k, v) ((struct log_kv){(k), NULL, (long long)(v), 1})
#define LOG_END     ((struct log_kv){NULL, NULL, 0, 0})

/**
 * @brief Set the service name written as "svc" and the minimum level. Call once at start,
 *        before other threads log.
 */
void log_init(const char *svc, enum log_level level);

/** @brief Parse "error|warn|info|debug". @returns 0, or -1 when the name is unknown. */
int log_level_parse(const char *name, enum log_level *out);

/** @returns non-zero when a line at @p level would be written (to skip building fields). */
int log_enabled(enum log_level level);

/**
 * @brief Write one line: {"ts","level","svc","msg", fields...}.
 *
 * @p msg must be a constant description, never data. Field values are written only for the
 * allow-listed keys (ids, topic/partition/offset, statuses, counts, durations, error classes);
 * any other key is written with the value "[redacted]" so that a careless call can never leak
 * message text, names, phone numbers, emails, bodies, tokens or secrets. The variadic list is
 * struct log_kv values terminated by LOG_END. Thread-safe: each line is one write(2).
 */
void log_at(enum log_level level, const char *msg, ...);

#define log_error(...) log_at(LOG_ERROR, __VA_ARGS__, LOG_END)
#define log_warn(...)  log_at(LOG_WARN, __VA_ARGS__, LOG_END)
#define log_info(...)  log_at(LOG_INFO, __VA_ARGS__, LOG_END)
#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__, LOG_END)

/** @returns 1 when @p key is on the allow-list of loggable field names. */
int log_key_allowed(const char *key);

#endif
