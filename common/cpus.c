/* How many CPUs this process can use at once: affinity mask and cgroup CPU quota. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "cpus.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CPUS_MAX 64

/* Reads the first line of @p dir/@p name into @p buf. @returns 0, or -1. */
static int cpus_read(const char *dir, const char *name, char *buf, size_t len)
{
    char path[PATH_MAX];
    FILE *f;
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);

    if (n < 0 || (size_t)n >= sizeof(path))
        return -1;
    f = fopen(path, "re");
    if (!f)
        return -1;
    if (!fgets(buf, (int)len, f)) {
        fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

/* quota / period rounded up, or 0 for no quota (quota < 0) or nonsense. */
static int cpus_ratio(long long quota, long long period)
{
    if (quota <= 0 || period <= 0)
        return 0;
    long long n = (quota + period - 1) / period;
    return n > CPUS_MAX ? CPUS_MAX : (int)n;
}

/* cgroup v2: "max 100000" or "<quota> <period>" in cpu.max of the cgroup at @p path and of each
 * parent; the smallest. */
static int cpus_v2(const char *root, const char *path)
{
    char dir[PATH_MAX], buf[128];
    int best = 0;
    size_t rootlen = strlen(root);
    int n = snprintf(dir, sizeof(dir), "%s%s", root, path);

    if (n < 0 || (size_t)n >= sizeof(dir))
        return 0;
    for (;;) {
        size_t len = strlen(dir);
        while (len > rootlen && dir[len - 1] == '/') /* "…/x/" and the root's "/" */
            dir[--len] = '\0';
        if (cpus_read(dir, "cpu.max", buf, sizeof(buf)) == 0 && strncmp(buf, "max", 3) != 0) {
            char *end;
            long long quota = strtoll(buf, &end, 10), period = 100000;
            if (end != buf && *end == ' ')
                period = strtoll(end + 1, NULL, 10);
            int cpus = end != buf ? cpus_ratio(quota, period) : 0;
            if (cpus > 0 && (best == 0 || cpus < best))
                best = cpus;
        }
        char *slash = strrchr(dir + rootlen, '/');
        if (len <= rootlen || !slash)
            break;
        *slash = '\0'; /* the parent; the root itself last */
    }
    return best;
}

/* cgroup v1: cpu.cfs_quota_us (-1 for none) and cpu.cfs_period_us of the cpu controller's
 * cgroup, looked for at the path /proc names and, inside a container (where that path is the
 * host's), at the mount's top. */
static int cpus_v1(const char *root, const char *path)
{
    static const char *const mounts[] = {"cpu", "cpu,cpuacct", "cpuacct,cpu"};
    char dir[PATH_MAX], q[64], p[64];

    for (int at_top = 0; at_top < 2; at_top++)
        for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++) {
            int n = snprintf(dir, sizeof(dir), "%s/%s%s", root, mounts[i], at_top ? "" : path);
            if (n < 0 || (size_t)n >= sizeof(dir))
                continue;
            if (cpus_read(dir, "cpu.cfs_quota_us", q, sizeof(q)) == 0 &&
                cpus_read(dir, "cpu.cfs_period_us", p, sizeof(p)) == 0)
                return cpus_ratio(strtoll(q, NULL, 10), strtoll(p, NULL, 10));
        }
    return 0;
}

/* Does the comma-separated controller list [@p s, @p end) name "cpu"? */
static int cpus_has_cpu(const char *s, const char *end)
{
    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *item_end = comma ? comma : end;
        if (item_end - s == 3 && strncmp(s, "cpu", 3) == 0)
            return 1;
        s = item_end + 1;
    }
    return 0;
}

int cpus_cgroup_quota(const char *root, const char *proc_cgroup)
{
    const char *line = proc_cgroup;

    while (line && *line) {
        const char *eol = strchr(line, '\n');
        const char *end = eol ? eol : line + strlen(line);
        const char *c1 = memchr(line, ':', (size_t)(end - line));
        const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
        char path[PATH_MAX];
        size_t plen;

        if (c2 && (plen = (size_t)(end - c2 - 1)) < sizeof(path) && c2[1] == '/') {
            memcpy(path, c2 + 1, plen);
            path[plen] = '\0';
            if (c1 == line + 1 && line[0] == '0' && c2 == c1 + 1) /* "0::/path": v2 */
                return cpus_v2(root, path);
            if (cpus_has_cpu(c1 + 1, c2))
                return cpus_v1(root, path);
        }
        line = eol ? eol + 1 : NULL;
    }
    return 0;
}

int cpus_available(void)
{
    cpu_set_t set;
    long n = 0;
    char buf[4096];
    FILE *f;

    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n < 1)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    f = fopen("/proc/self/cgroup", "re");
    if (f) {
        size_t len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = '\0';
        int quota = cpus_cgroup_quota("/sys/fs/cgroup", buf);
        if (quota > 0 && quota < n)
            n = quota;
    }
    return n < 1 ? 1 : n > CPUS_MAX ? CPUS_MAX : (int)n;
}
