/* Tests for common/cpus.c: cgroup CPU quotas read from fake cgroup trees (v2 and v1). */
#include "cpus.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

/* Writes @p text to root/@p rel, making the directories on the way. */
static void put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0700);
            *p = '/';
        }
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_v2(void)
{
    /* No cpu.max anywhere, or "max": no quota. */
    CHECK_INT(cpus_cgroup_quota(root, "0::/\n"), 0);
    put("v2/app/cpu.max", "max 100000\n");
    {
        char r[300];
        snprintf(r, sizeof(r), "%s/v2", root);
        CHECK_INT(cpus_cgroup_quota(r, "0::/app\n"), 0);

        /* docker --cpus=1.5: 150000 per 100000 → 2 CPUs (rounded up) */
        put("v2/app/cpu.max", "150000 100000\n");
        CHECK_INT(cpus_cgroup_quota(r, "0::/app\n"), 2);
        /* exactly 3 */
        put("v2/app/cpu.max", "300000 100000\n");
        CHECK_INT(cpus_cgroup_quota(r, "0::/app\n"), 3);
        /* below one CPU still counts as one */
        put("v2/app/cpu.max", "20000 100000\n");
        CHECK_INT(cpus_cgroup_quota(r, "0::/app\n"), 1);

        /* A parent's quota caps a child's larger one (Kubernetes pod and container). */
        put("v2/pod/cpu.max", "200000 100000\n");
        put("v2/pod/ctr/cpu.max", "800000 100000\n");
        CHECK_INT(cpus_cgroup_quota(r, "0::/pod/ctr\n"), 2);
        put("v2/pod/ctr/cpu.max", "max 100000\n");
        CHECK_INT(cpus_cgroup_quota(r, "0::/pod/ctr\n"), 2);
        put("v2/pod/cpu.max", "max 100000\n");
        put("v2/pod/ctr/cpu.max", "100000 50000\n");
        CHECK_INT(cpus_cgroup_quota(r, "0::/pod/ctr\n"), 2);

        /* Inside a container with its own cgroup namespace: "/" is the container's cgroup. */
        put("v2/cpu.max", "400000 100000\n");
        CHECK_INT(cpus_cgroup_quota(r, "0::/\n"), 4);

        /* Nonsense is no quota, not a crash. */
        put("v2/app/cpu.max", "lots\n");
        CHECK_INT(cpus_cgroup_quota(r, "0::/app\n"), 4); /* the root's 4 still applies */
        put("v2/cpu.max", "0 100000\n");
        CHECK_INT(cpus_cgroup_quota(r, "0::/app\n"), 0);
    }
}

static void test_v1(void)
{
    char r[300];
    snprintf(r, sizeof(r), "%s/v1", root);
    const char *proc = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n";

    /* The path /proc names (on the host), */
    put("v1/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "250000\n");
    put("v1/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    CHECK_INT(cpus_cgroup_quota(r, proc), 3);
    /* -1: none */
    put("v1/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n");
    CHECK_INT(cpus_cgroup_quota(r, proc), 0);
    /* or the mount's top, inside the container (the host's path is not there). */
    snprintf(r, sizeof(r), "%s/v1in", root);
    put("v1in/cpu/cpu.cfs_quota_us", "100000\n");
    put("v1in/cpu/cpu.cfs_period_us", "100000\n");
    CHECK_INT(cpus_cgroup_quota(r, "3:cpu:/docker/abc\n"), 1);
    /* "cpuset" is not "cpu"; with no cpu line the v2 line decides */
    CHECK_INT(cpus_cgroup_quota(r, "5:cpuset:/x\n"), 0);
    CHECK_INT(cpus_cgroup_quota(r, ""), 0);
    CHECK_INT(cpus_cgroup_quota(r, "garbage without colons"), 0);
}

int main(void)
{
    snprintf(root, sizeof(root), "%s/pm-test-cpus-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    CHECK(mkdtemp(root) != NULL);
    test_v2();
    test_v1();
    /* The real machine: at least one, at most 64. */
    int n = cpus_available();
    CHECK(n >= 1 && n <= 64);
    {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        CHECK_INT(system(cmd), 0);
    }
    return UNIT_DONE();
}
