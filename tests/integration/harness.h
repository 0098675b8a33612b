/* Integration-test harness: temp dirs, child processes, devbroker control, HTTP, Kafka, checks. */
#ifndef PM_HARNESS_H
#define PM_HARNESS_H

/*
 * An integration test is a C program that starts real processes (pm-devbroker, pm-ingest, ...)
 * and talks to them over real sockets:
 *
 *     int main(void)
 *     {
 *         struct harness *h = harness_init("ingest");
 *         char bootstrap[512];
 *         struct harness_proc *kafka = harness_devbroker_start(h, 1, 3, NULL, bootstrap,
 *                                                              sizeof(bootstrap));
 *         if (!H_CHECK(h, kafka != NULL))
 *             return harness_finish(h);
 *         ...
 *         return harness_finish(h);
 *     }
 *
 * harness_finish() kills whatever is still running, prints the tail of every process's stderr
 * when a check failed, removes the temp dir (kept and printed when a check failed, or when
 * PM_TEST_KEEP_TMP=1) and returns main's exit status. Every child also gets SIGKILL when the
 * test process dies, so a test killed by CTest's timeout leaves nothing running.
 *
 * Binaries are looked up in PM_BIN_DIR: the environment variable when set, else the compile
 * definition (the build's bin/ directory). Not thread-safe: call from the test's main thread.
 * librdkafka logging from the Kafka helpers is silent unless PM_TEST_KAFKA_LOG=1.
 */

#include <stddef.h>
#include <stdint.h>

struct harness;
struct harness_proc;

/* ---- test lifecycle and checks ---------------------------------------------------------- */

/**
 * @brief Start a test: make a temp dir "pm-it-<name>-XXXXXX" under $TMPDIR (or /tmp), ignore
 *        SIGPIPE, initialise libcurl.
 * @returns the context; never NULL (exits with status 1 when the temp dir cannot be made).
 */
struct harness *harness_init(const char *name);

/**
 * @brief End a test: stop every process still running (SIGKILL), print failures' context, clean
 *        up, free @p h.
 * @returns the exit status for main: 0 when every check passed, 1 otherwise.
 */
int harness_finish(struct harness *h);

/** @returns the test's temp dir (owned by @p h). */
const char *harness_dir(const struct harness *h);

/**
 * @brief Build "<temp dir>/<name>" into @p out.
 * @returns @p out, or NULL when it does not fit (then @p out is "").
 */
char *harness_path(const struct harness *h, const char *name, char *out, size_t len);

/**
 * @brief Record one check. A failure prints "file:line: <message>" on stderr and makes
 *        harness_finish() return 1.
 * @returns @p ok (so `if (!H_CHECK(...)) goto out;` stops a test that cannot go on).
 */
int harness_check(struct harness *h, int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/** @brief harness_check for two integers; the message shows both values. @returns a == b. */
int harness_check_int(struct harness *h, long long a, long long b, const char *expr,
                      const char *file, int line);

/** @brief harness_check for two strings (NULL never equals). @returns the match. */
int harness_check_str(struct harness *h, const char *a, const char *b, const char *expr,
                      const char *file, int line);

#define H_CHECK(h, cond)                                                                           \
    harness_check((h), (cond) ? 1 : 0, __FILE__, __LINE__, "CHECK failed: %s", #cond)
#define H_CHECKF(h, cond, ...) harness_check((h), (cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)
#define H_CHECK_INT(h, a, b)                                                                       \
    harness_check_int((h), (long long)(a), (long long)(b), #a, __FILE__, __LINE__)
#define H_CHECK_STR(h, a, b) harness_check_str((h), (a), (b), #a, __FILE__, __LINE__)
#define H_FAIL(h, ...)       harness_check((h), 0, __FILE__, __LINE__, __VA_ARGS__)

/** @returns milliseconds of CLOCK_MONOTONIC (for deadlines). */
long long harness_now_ms(void);

/** @brief Sleep @p ms milliseconds (EINTR-safe). */
void harness_sleep_ms(long ms);

/**
 * @brief Read a whole file (NUL-terminated; @p len may be NULL).
 * @returns a malloc'd buffer the caller frees, or NULL.
 */
char *harness_file_read(const char *path, size_t *len);

/* ---- processes -------------------------------------------------------------------------- */

/**
 * @brief Start a process: fork/exec @p argv (argv[0] without a '/' is looked up in PM_BIN_DIR)
 *        with the current environment plus @p extra_env.
 *
 * @p extra_env is NULL or a NULL-terminated list of "NAME=VALUE" (set or replace) and "NAME"
 * without '=' (unset). Stdout and stderr go to "<temp dir>/<name>.stdout" / ".stderr" (a
 * repeated @p name gets a "-2", "-3"... suffix); stdin is a pipe kept open for
 * harness_proc_write(). The child gets SIGKILL if the test process dies.
 * @returns the process (owned by @p h, valid until harness_finish), or NULL after recording a
 *          failed check.
 */
struct harness_proc *harness_proc_start(struct harness *h, const char *name,
                                        const char *const argv[], const char *const extra_env[]);

/** @returns the child's pid. */
int harness_proc_pid(const struct harness_proc *p);

/** @returns 1 while the child has not exited (reaps it when it has). */
int harness_proc_running(struct harness_proc *p);

/**
 * @brief Read the next complete stdout line (the first call returns the first line), without
 *        its newline, waiting up to @p timeout_ms for it to be written.
 * @returns 0, or -1 on timeout or when the process exited without writing one.
 */
int harness_proc_read_line(struct harness_proc *p, char *out, size_t len, int timeout_ms);

/** @brief Write @p s to the child's stdin. @returns 0, or -1 (stdin closed, child gone). */
int harness_proc_write(struct harness_proc *p, const char *s);

/** @brief Close the child's stdin (it sees EOF). */
void harness_proc_close_stdin(struct harness_proc *p);

/** @brief Send @p sig to the child. @returns 0, or -1 when it already exited. */
int harness_proc_signal(struct harness_proc *p, int sig);

/**
 * @brief Wait up to @p timeout_ms for the child to exit.
 * @returns its exit status (0..255), 128 + signal number when a signal killed it, or -1 on
 *          timeout (the child keeps running).
 */
int harness_proc_wait(struct harness_proc *p, int timeout_ms);

/**
 * @brief SIGTERM, wait up to @p timeout_ms, then SIGKILL if it is still running.
 * @returns the exit status as harness_proc_wait (137 when it had to be killed).
 */
int harness_proc_stop(struct harness_proc *p, int timeout_ms);

/** @returns the malloc'd current contents of the child's stdout (caller frees), or NULL. */
char *harness_proc_stdout(const struct harness_proc *p);

/** @returns the malloc'd current contents of the child's stderr (caller frees), or NULL. */
char *harness_proc_stderr(const struct harness_proc *p);

/** @brief Print the last @p lines lines of the child's stderr on our stderr. */
void harness_proc_dump(const struct harness_proc *p, int lines);

/* ---- pm-devbroker ----------------------------------------------------------------------- */

/**
 * @brief Start pm-devbroker with @p brokers brokers and @p partitions partitions per product
 *        topic, and wait (up to 20 s) for its bootstrap line.
 * @param extra_env as harness_proc_start (e.g. topic name overrides), may be NULL.
 * @returns the process with its bootstrap list in @p bootstrap, or NULL after a failed check.
 */
struct harness_proc *harness_devbroker_start(struct harness *h, int brokers, int partitions,
                                             const char *const extra_env[], char *bootstrap,
                                             size_t len);

/**
 * @brief Send one control command (e.g. "down all") on the devbroker's stdin and read its answer
 *        line into @p answer (may be NULL), waiting up to 10 s.
 * @returns 0 when the answer is "ok" or "ok <info>", -1 otherwise.
 */
int harness_devbroker_cmd(struct harness_proc *broker, const char *cmd, char *answer, size_t len);

/* ---- network and HTTP ------------------------------------------------------------------- */

/**
 * @brief A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
 * @returns the port, or -1.
 */
int harness_free_port(void);

struct harness_http_header {
    char *name;
    char *value;
};

/* One HTTP exchange's result; free with harness_http_response_free. */
struct harness_http_response {
    /* 0 when no answer came (then error holds libcurl's reason) */
    long status;
    /* the final response's headers (not those of a 1xx or a redirect) */
    struct harness_http_header *headers;
    size_t nheaders;
    /* NUL-terminated, never NULL after harness_http */
    char *body;
    size_t body_len;
    char error[256];
};

/**
 * @brief One request with libcurl's easy API.
 *
 * @p headers is NULL or a NULL-terminated list of "Name: value" lines; "Name:" removes a header
 * libcurl would add (e.g. "Content-Type:" for a POST without one). "Expect:" is always sent empty.
 * @p body may be NULL (no body). The whole exchange is limited to @p timeout_ms.
 * @returns 0 when an HTTP answer arrived (any status), -1 otherwise (reason in resp->error).
 *          @p resp is filled either way and must be freed.
 */
int harness_http(const char *method, const char *url, const char *const headers[], const void *body,
                 size_t body_len, long timeout_ms, struct harness_http_response *resp);

/** @returns the value of the response header @p name (case-insensitive), or NULL. */
const char *harness_http_header(const struct harness_http_response *resp, const char *name);

/** @brief Free what harness_http allocated in @p resp (not @p resp itself). */
void harness_http_response_free(struct harness_http_response *resp);

/**
 * @brief Poll GET @p url until it answers with @p want_status (0: any status) or @p timeout_ms
 *        passes.
 * @returns 0, or -1 on timeout.
 */
int harness_http_wait(const char *url, long want_status, int timeout_ms);

/* ---- Standard Webhooks ------------------------------------------------------------------ */

/* The three headers of a signed request, ready for harness_http's list. */
struct harness_webhook_headers {
    char id[192];        /* "webhook-id: ..." */
    char timestamp[64];  /* "webhook-timestamp: ..." */
    char signature[128]; /* "webhook-signature: v1,..." */
};

/**
 * @brief Sign @p body for @p secret ("whsec_..."), message id @p id and unix time @p timestamp
 *        (common/webhook_sig.h) and format the three header lines.
 * @returns 0, or -1 with a reason in @p errstr.
 */
int harness_webhook_sign(const char *secret, const char *id, long long timestamp, const void *body,
                         size_t len, struct harness_webhook_headers *out, char *errstr,
                         size_t errlen);

/* ---- Kafka ------------------------------------------------------------------------------ */

struct harness_kafka_header {
    char *name;
    char *value; /* NUL-terminated copy; NULL for a null header value */
    size_t value_len;
};

/* One consumed record; every buffer is a NUL-terminated copy, NULL for a null key/value. */
struct harness_kafka_record {
    char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
    struct harness_kafka_header *headers;
    size_t nheaders;
};

struct harness_kafka_records {
    struct harness_kafka_record *v; /* in arrival order: per partition in offset order */
    size_t n;
};

/**
 * @brief Read the records of @p topic, every partition from the beginning, with assign() (no
 *        group join). Waits for the topic to appear in metadata.
 *
 * With @p want > 0 it stops once @p want records arrived; with @p want == 0 it reads what the
 * topic holds now (until every partition reports its end). Records past @p want are not read.
 * @returns 0 when that condition was met within @p timeout_ms, -1 otherwise (what arrived is
 *          still in @p out, a reason in @p errstr). Free @p out with harness_kafka_records_free.
 */
int harness_kafka_read(const char *bootstrap, const char *topic, size_t want, int timeout_ms,
                       struct harness_kafka_records *out, char *errstr, size_t errlen);

/** @brief Free the records (not @p recs itself) and zero it. */
void harness_kafka_records_free(struct harness_kafka_records *recs);

/** @returns the value of the first header named @p name (exact match), or NULL. */
const char *harness_kafka_header(const struct harness_kafka_record *rec, const char *name);

/* What to produce; zero-initialise and fill what you need. */
struct harness_kafka_produce {
    const char *topic;
    /* 0: the partitioner chooses (by key); 1: the record goes to partition */
    int has_partition;
    int32_t partition;
    /* NULL: no key / a null value */
    const char *key;
    const void *value;
    size_t value_len;
    /* NULL or "name", "value", "name", "value", ..., NULL */
    const char *const *headers;
    /* NULL or extra producer properties "key", "value", ..., NULL (applied last) */
    const char *const *conf;
    /* delivery deadline (message.timeout.ms); 0 means 10000 */
    int timeout_ms;
};

/**
 * @brief Produce one record with a producer of its own and wait for its delivery report.
 * @returns 0 when the broker acknowledged it (partition and offset written when the pointers are
 *          not NULL), -1 on any failure, with librdkafka's error name and reason in @p errstr.
 */
int harness_kafka_produce(const char *bootstrap, const struct harness_kafka_produce *req,
                          int32_t *partition, int64_t *offset, char *errstr, size_t errlen);

/**
 * @brief Partition count of @p topic from the cluster's full metadata (never auto-creates it),
 *        retrying until metadata arrives or @p timeout_ms passes.
 * @returns the count, 0 when the cluster answered without the topic, -1 when no metadata came.
 */
int harness_kafka_partition_count(const char *bootstrap, const char *topic, int timeout_ms,
                                  char *errstr, size_t errlen);

/* ---- raw TCP (harness_socket.c) ---------------------------------------------------------- */

/* For requests curl cannot express: raw NUL bytes, headers sent one byte at a time, chunked
 * uploads past a limit, connections that never send anything. Every wait is bounded. */

/** @brief Connect to 127.0.0.1:@p port within @p timeout_ms (TCP_NODELAY). @returns fd or -1. */
int harness_sock_connect(int port, int timeout_ms);

/** @brief Send all @p len bytes. @returns 0, or -1 when the peer closed or reset. */
int harness_sock_send(int fd, const void *data, size_t len);

/** @brief harness_sock_send of a NUL-terminated string. */
int harness_sock_send_str(int fd, const char *s);

/**
 * @brief Wait up to @p timeout_ms for the peer to close the connection (EOF or reset); anything
 *        it sends meanwhile is read and dropped.
 * @returns 1 when it closed, 0 when it was still open at the deadline.
 */
int harness_sock_closed(int fd, int timeout_ms);

/**
 * @brief Read one HTTP/1.1 response (body by Content-Length, else until close) within
 *        @p timeout_ms into @p resp (as harness_http fills it; free with
 *        harness_http_response_free).
 * @returns 0, or -1 with resp->status 0 and a reason in resp->error.
 */
int harness_sock_response(int fd, int timeout_ms, struct harness_http_response *resp);

/**
 * @brief Connect, send the raw @p request bytes, read the response, close. A server that answers
 *        and closes before the whole request was sent still has its answer read.
 * @returns 0 when a response arrived, -1 otherwise (reason in resp->error).
 */
int harness_sock_request(int port, const void *request, size_t len, int timeout_ms,
                         struct harness_http_response *resp);

#endif
