/* SPDX-License-Identifier: MIT */
/* cpus.h - how many CPUs this process may really use: the online CPUs, the
 * affinity mask (taskset, cpusets), and the CPU quota of its cgroup and
 * every cgroup above it (cgroup v2 cpu.max, v1 cpu.cfs_quota_us /
 * cpu.cfs_period_us), as a container runtime or systemd sets them.
 *
 *	struct cpus c;
 *	cpus_detect("", &c);   // "" reads the real /proc and /sys
 *	pool_new(&pool, c.usable, ...);
 */
#ifndef ATROUSD_CPUS_H
#define ATROUSD_CPUS_H

struct cpus {
	int online;    /* sysconf(_SC_NPROCESSORS_ONLN) */
	int affinity;  /* CPUs in the affinity mask */
	double quota;  /* quota / period of the tightest cgroup, 0 when none */
	int usable;    /* min(affinity, ceil(quota)), at least 1 */
	char why[160]; /* how usable was decided, for the log */
};

/* Fill c; root prefixes every path read ("" for the real system, a test
 * folder holding proc/self/{mountinfo,cgroup} and the cgroup trees). */
void cpus_detect(const char *root, struct cpus *c);

#endif
