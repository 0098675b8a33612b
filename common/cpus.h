/* How many CPUs this process can use at once: affinity mask and cgroup CPU quota. */
#ifndef PM_CPUS_H
#define PM_CPUS_H

/**
 * @brief The CPUs this process can keep busy at once, 1-64: its affinity mask (a container's
 *        cpuset, taskset), capped by a cgroup CPU quota rounded up (docker --cpus, compose
 *        `cpus:`, a Kubernetes CPU limit), which the affinity mask does not show.
 */
int cpus_available(void);

/**
 * @brief The CPU quota of the cgroups listed in @p proc_cgroup (the text of /proc/self/cgroup),
 *        read below @p root (normally "/sys/fs/cgroup"): cgroup v2 `cpu.max` of the cgroup and
 *        each parent, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`; the smallest, in CPUs
 *        rounded up.
 * @returns the quota, or 0 when there is none or it cannot be read.
 */
int cpus_cgroup_quota(const char *root, const char *proc_cgroup);

#endif
