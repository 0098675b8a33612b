/* Integration-test harness core: test lifecycle, checks, child processes, pm-devbroker control. */
#define _XOPEN_SOURCE 700 /* nftw() */

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#ifndef PM_BIN_DIR
#error "PM_BIN_DIR must be defined (tests/integration/CMakeLists.txt sets it)"
#endif

extern char **environ;

struct harness_proc {
    struct harness_proc *next;
    struct harness *h;
    char base[64]; /* the name given to harness_proc_start */
    char name[96]; /* base, with "-<n>" when base was used before */
    char out_path[PATH_MAX];
    char err_path[PATH_MAX];
    pid_t pid;
    int stdin_fd;  /* write end of the child's stdin; -1 once closed */
    int exited;    /* reaped: status is valid */
    int status;    /* raw waitpid status */
    off_t out_off; /* where the next harness_proc_read_line starts */
};

struct harness {
    char name[64];
    char dir[PATH_MAX];
    int checks;
    int failures;
    struct harness_proc *procs; /* newest first */
};

long long harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void harness_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

char *harness_file_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;

    if (!f)
        return NULL;
    for (;;) {
        if (cap - n < 4096 + 1) {
            size_t ncap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                buf = NULL;
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
out:
    fclose(f);
    return buf;
}

/* ---- lifecycle and checks ----------------------------------------------------------------- */

struct harness *harness_init(const char *name)
{
    struct harness *h = calloc(1, sizeof(*h));
    const char *tmp = getenv("TMPDIR");

    if (!h) {
        fprintf(stderr, "harness: out of memory\n");
        exit(1);
    }
    snprintf(h->name, sizeof(h->name), "%s", name);
    if (!tmp || !*tmp)
        tmp = "/tmp";
    if (snprintf(h->dir, sizeof(h->dir), "%s/pm-it-%s-XXXXXX", tmp, name) >= (int)sizeof(h->dir) ||
        !mkdtemp(h->dir)) {
        fprintf(stderr, "harness: cannot create a temp dir under %s: %s\n", tmp, strerror(errno));
        exit(1);
    }
    /* A child that died leaves a broken stdin pipe: writes must fail, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    fprintf(stderr, "harness: test %s, temp dir %s\n", h->name, h->dir);
    return h;
}

const char *harness_dir(const struct harness *h)
{
    return h->dir;
}

char *harness_path(const struct harness *h, const char *name, char *out, size_t len)
{
    if (snprintf(out, len, "%s/%s", h->dir, name) >= (int)len) {
        if (len)
            out[0] = '\0';
        return NULL;
    }
    return out;
}

int harness_check(struct harness *h, int ok, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    h->checks++;
    if (ok)
        return 1;
    h->failures++;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 0;
}

int harness_check_int(struct harness *h, long long a, long long b, const char *expr,
                      const char *file, int line)
{
    return harness_check(h, a == b, file, line, "%s == %lld, expected %lld", expr, a, b);
}

int harness_check_str(struct harness *h, const char *a, const char *b, const char *expr,
                      const char *file, int line)
{
    return harness_check(h, a && b && strcmp(a, b) == 0, file, line,
                         "%s == \"%s\", expected \"%s\"", expr, a ? a : "(null)", b ? b : "(null)");
}

static int harness_rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "harness: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

int harness_finish(struct harness *h)
{
    const char *keep = getenv("PM_TEST_KEEP_TMP");
    int failed;
    struct harness_proc *p, *next;

    for (p = h->procs; p; p = p->next) {
        if (harness_proc_running(p)) {
            kill(p->pid, SIGKILL);
            harness_proc_wait(p, 5000);
        }
    }
    if (h->checks == 0) {
        /* A test that checked nothing cannot fail: that is a defect, not a pass. */
        fprintf(stderr, "harness: test %s made no checks\n", h->name);
        h->failures++;
    }
    failed = h->failures > 0;
    if (failed) {
        for (p = h->procs; p; p = p->next)
            harness_proc_dump(p, 40);
    }
    fprintf(stderr, "integration.%s: %d checks, %d failed\n", h->name, h->checks, h->failures);
    if (failed || (keep && !strcmp(keep, "1")))
        fprintf(stderr, "harness: kept temp dir %s (process logs are there)\n", h->dir);
    else
        nftw(h->dir, harness_rm_entry, 16, FTW_DEPTH | FTW_PHYS);

    for (p = h->procs; p; p = next) {
        next = p->next;
        if (p->stdin_fd >= 0)
            close(p->stdin_fd);
        free(p);
    }
    curl_global_cleanup();
    free(h);
    return failed ? 1 : 0;
}

/* ---- processes ----------------------------------------------------------------------------- */

/* The environment for a child: ours, with @p extra applied ("NAME=VALUE" sets, "NAME" unsets).
 * @returns a malloc'd NULL-terminated array whose strings are borrowed (environ's or extra's). */
static char **harness_env_build(const char *const extra[])
{
    size_t n = 0, nextra = 0, k = 0;
    char **env;

    while (environ[n])
        n++;
    while (extra && extra[nextra])
        nextra++;
    env = calloc(n + nextra + 1, sizeof(*env));
    if (!env)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *e = environ[i];
        size_t nl = strcspn(e, "=");
        int overridden = 0;
        for (size_t j = 0; j < nextra && !overridden; j++) {
            size_t xl = strcspn(extra[j], "=");
            overridden = xl == nl && strncmp(e, extra[j], nl) == 0;
        }
        if (!overridden)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < nextra; j++)
        if (strchr(extra[j], '='))
            env[k++] = (char *)extra[j];
    env[k] = NULL;
    return env;
}

struct harness_proc *harness_proc_start(struct harness *h, const char *name,
                                        const char *const argv[], const char *const extra_env[])
{
    struct harness_proc *p = NULL;
    char exe[PATH_MAX];
    const char *bin_dir = getenv("PM_BIN_DIR");
    char **env = NULL;
    int pipefd[2] = {-1, -1}, out_fd = -1, err_fd = -1, same = 0;
    pid_t parent = getpid(), pid;

    if (!bin_dir || !*bin_dir)
        bin_dir = PM_BIN_DIR;
    if (strchr(argv[0], '/'))
        snprintf(exe, sizeof(exe), "%s", argv[0]);
    else if (snprintf(exe, sizeof(exe), "%s/%s", bin_dir, argv[0]) >= (int)sizeof(exe))
        exe[0] = '\0';
    if (access(exe, X_OK) != 0) {
        H_FAIL(h, "cannot run %s: %s (is it built?)", exe, strerror(errno));
        return NULL;
    }

    p = calloc(1, sizeof(*p));
    if (!p) {
        H_FAIL(h, "out of memory");
        return NULL;
    }
    p->h = h;
    p->stdin_fd = -1;
    snprintf(p->base, sizeof(p->base), "%s", name);
    for (struct harness_proc *q = h->procs; q; q = q->next)
        same += !strcmp(q->base, p->base);
    if (same)
        snprintf(p->name, sizeof(p->name), "%s-%d", p->base, same + 1);
    else
        snprintf(p->name, sizeof(p->name), "%s", p->base);
    if (snprintf(p->out_path, sizeof(p->out_path), "%s/%s.stdout", h->dir, p->name) >=
            (int)sizeof(p->out_path) ||
        snprintf(p->err_path, sizeof(p->err_path), "%s/%s.stderr", h->dir, p->name) >=
            (int)sizeof(p->err_path)) {
        H_FAIL(h, "temp dir path too long");
        goto fail;
    }

    /* Everything the child needs is prepared here: between fork and exec a process that has
     * threads (librdkafka's, from the Kafka helpers) may only make async-signal-safe calls. */
    env = harness_env_build(extra_env);
    out_fd = open(p->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    err_fd = open(p->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (!env || out_fd < 0 || err_fd < 0 || pipe(pipefd) != 0 ||
        fcntl(pipefd[0], F_SETFD, FD_CLOEXEC) != 0 || fcntl(pipefd[1], F_SETFD, FD_CLOEXEC) != 0) {
        H_FAIL(h, "cannot prepare %s: %s", p->name, strerror(errno));
        goto fail;
    }

    pid = fork();
    if (pid < 0) {
        H_FAIL(h, "fork for %s: %s", p->name, strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        static const char msg[] = "harness: exec failed\n";
        /* Die with the test, whatever kills it (CTest's timeout sends SIGKILL). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(pipefd[0], STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
            dup2(err_fd, STDERR_FILENO) < 0)
            _exit(127);
        execve(exe, (char *const *)argv, env);
        if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
            _exit(127);
        _exit(127);
    }

    p->pid = pid;
    p->stdin_fd = pipefd[1];
    pipefd[1] = -1; /* owned by p now */
    close(pipefd[0]);
    close(out_fd);
    close(err_fd);
    free(env);
    p->next = h->procs;
    h->procs = p;
    return p;

fail:
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    if (out_fd >= 0)
        close(out_fd);
    if (err_fd >= 0)
        close(err_fd);
    free(env);
    free(p);
    return NULL;
}

int harness_proc_pid(const struct harness_proc *p)
{
    return (int)p->pid;
}

int harness_proc_running(struct harness_proc *p)
{
    int st;
    if (p->exited)
        return 0;
    if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
        p->exited = 1;
        p->status = st;
    }
    return !p->exited;
}

/* Looks for a complete line at p->out_off; copies it (truncated to @p len - 1) and moves past
 * it. @returns 1 when a line was taken, 0 when none is complete yet. */
static int harness_proc_take_line(struct harness_proc *p, char *out, size_t len)
{
    char buf[4096];
    size_t copied = 0;
    off_t off = p->out_off;
    int fd = open(p->out_path, O_RDONLY | O_CLOEXEC);
    int found = 0;

    if (fd < 0)
        return 0;
    for (;;) {
        ssize_t r = pread(fd, buf, sizeof(buf), off);
        if (r <= 0)
            break;
        char *nl = memchr(buf, '\n', (size_t)r);
        size_t use = nl ? (size_t)(nl - buf) : (size_t)r;
        size_t room = len > copied + 1 ? len - copied - 1 : 0;
        memcpy(out + copied, buf, use < room ? use : room);
        copied += use < room ? use : room;
        off += (off_t)use;
        if (nl) {
            found = 1;
            p->out_off = off + 1;
            break;
        }
    }
    close(fd);
    if (len)
        out[found ? copied : 0] = '\0';
    return found;
}

int harness_proc_read_line(struct harness_proc *p, char *out, size_t len, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;

    for (;;) {
        /* Check for exit first: a line written just before exiting is still found below. */
        int gone = !harness_proc_running(p);
        if (harness_proc_take_line(p, out, len))
            return 0;
        if (gone || harness_now_ms() >= deadline)
            return -1;
        harness_sleep_ms(10);
    }
}

int harness_proc_write(struct harness_proc *p, const char *s)
{
    size_t len = strlen(s), off = 0;

    if (p->stdin_fd < 0)
        return -1;
    while (off < len) {
        ssize_t w = write(p->stdin_fd, s + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

void harness_proc_close_stdin(struct harness_proc *p)
{
    if (p->stdin_fd >= 0)
        close(p->stdin_fd);
    p->stdin_fd = -1;
}

int harness_proc_signal(struct harness_proc *p, int sig)
{
    if (!harness_proc_running(p))
        return -1;
    return kill(p->pid, sig) == 0 ? 0 : -1;
}

int harness_proc_wait(struct harness_proc *p, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;

    while (harness_proc_running(p)) {
        if (harness_now_ms() >= deadline)
            return -1;
        harness_sleep_ms(10);
    }
    if (WIFEXITED(p->status))
        return WEXITSTATUS(p->status);
    if (WIFSIGNALED(p->status))
        return 128 + WTERMSIG(p->status);
    return -1;
}

int harness_proc_stop(struct harness_proc *p, int timeout_ms)
{
    int st;

    harness_proc_signal(p, SIGTERM);
    st = harness_proc_wait(p, timeout_ms);
    if (st < 0) {
        fprintf(stderr, "harness: %s did not stop within %d ms; killing it\n", p->name, timeout_ms);
        harness_proc_signal(p, SIGKILL);
        st = harness_proc_wait(p, 5000);
    }
    return st;
}

char *harness_proc_stdout(const struct harness_proc *p)
{
    return harness_file_read(p->out_path, NULL);
}

char *harness_proc_stderr(const struct harness_proc *p)
{
    return harness_file_read(p->err_path, NULL);
}

void harness_proc_dump(const struct harness_proc *p, int lines)
{
    size_t len = 0;
    char *text = harness_file_read(p->err_path, &len);
    const char *start;
    int seen = 0;

    if (!text) {
        fprintf(stderr, "harness: no stderr for %s\n", p->name);
        return;
    }
    /* Walk back over @p lines newlines (a trailing newline does not start a line). */
    start = text + len;
    if (start > text && start[-1] == '\n')
        start--;
    while (start > text) {
        if (start[-1] == '\n' && ++seen == lines)
            break;
        start--;
    }
    fprintf(stderr, "---- %s (pid %d, %s): last %d lines of %s ----\n", p->name, (int)p->pid,
            p->exited ? "exited" : "running", lines, p->err_path);
    fprintf(stderr, "%s%s", start, (len && text[len - 1] != '\n') ? "\n" : "");
    fprintf(stderr, "---- end of %s ----\n", p->name);
    free(text);
}

/* ---- pm-devbroker ------------------------------------------------------------------------- */

struct harness_proc *harness_devbroker_start(struct harness *h, int brokers, int partitions,
                                             const char *const extra_env[], char *bootstrap,
                                             size_t len)
{
    char b[16], n[16];
    struct harness_proc *p;

    snprintf(b, sizeof(b), "%d", brokers);
    snprintf(n, sizeof(n), "%d", partitions);
    const char *const argv[] = {"pm-devbroker", "--brokers", b, "--partitions", n, NULL};
    p = harness_proc_start(h, "devbroker", argv, extra_env);
    if (!p)
        return NULL;
    /* 20 s: the mock starts in milliseconds, but sanitizer builds on a busy CI box are slow. */
    if (harness_proc_read_line(p, bootstrap, len, 20000) != 0 || !strchr(bootstrap, ':')) {
        H_FAIL(h, "pm-devbroker printed no bootstrap list (got \"%s\")", bootstrap);
        harness_proc_dump(p, 40);
        return NULL;
    }
    return p;
}

int harness_devbroker_cmd(struct harness_proc *broker, const char *cmd, char *answer, size_t len)
{
    char local[512];
    char *ans = answer ? answer : local;
    size_t anslen = answer ? len : sizeof(local);

    if (anslen)
        ans[0] = '\0';
    if (harness_proc_write(broker, cmd) != 0 || harness_proc_write(broker, "\n") != 0)
        return -1;
    if (harness_proc_read_line(broker, ans, anslen, 10000) != 0)
        return -1;
    return (!strcmp(ans, "ok") || !strncmp(ans, "ok ", 3)) ? 0 : -1;
}
