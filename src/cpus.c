/* SPDX-License-Identifier: MIT */
/* cpus.c - usable CPUs from the affinity mask and the cgroup CPU quotas
 * found through /proc/self/mountinfo and /proc/self/cgroup. */
#include "autoconfig.h"

#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpus.h"

/* The first line of a small file, without its newline; 0 or -1. */
static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	int ok;

	if (f == NULL)
		return -1;
	ok = fgets(buf, (int)len, f) != NULL;
	fclose(f);
	if (!ok)
		return -1;
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* CPUs allowed by one cgroup folder, or 0 for no limit. */
static double quota_at(const char *dir, int v2)
{
	char path[PATH_MAX], line[128];
	long long quota, period;

	if (v2) {
		snprintf(path, sizeof(path), "%s/cpu.max", dir);
		if (read_line(path, line, sizeof(line)) < 0 || strncmp(line, "max", 3) == 0 ||
		    sscanf(line, "%lld %lld", &quota, &period) != 2)
			return 0;
	} else {
		snprintf(path, sizeof(path), "%s/cpu.cfs_quota_us", dir);
		if (read_line(path, line, sizeof(line)) < 0 || sscanf(line, "%lld", &quota) != 1)
			return 0;
		snprintf(path, sizeof(path), "%s/cpu.cfs_period_us", dir);
		if (read_line(path, line, sizeof(line)) < 0 || sscanf(line, "%lld", &period) != 1)
			return 0;
	}
	return quota > 0 && period > 0 ? (double)quota / (double)period : 0;
}

/* The tightest quota from dir up to the mount point top (inclusive). */
static double quota_up(char *dir, size_t top, int v2)
{
	double best = 0, q;
	char *slash;

	for (;;) {
		q = quota_at(dir, v2);
		if (q > 0 && (best == 0 || q < best))
			best = q;
		slash = strrchr(dir, '/');
		if (slash == NULL || (size_t)(slash - dir) < top)
			return best;
		*slash = '\0';
	}
}

/* Is token a comma-separated item of list? */
static int has_option(const char *list, const char *token)
{
	size_t n = strlen(token);
	const char *p;

	for (p = list; (p = strstr(p, token)) != NULL; p += n)
		if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
			return 1;
	return 0;
}

/* This process's cgroup path in the hierarchy: v2 ("0::/x") or the v1
 * hierarchy holding the cpu controller ("4:cpu,cpuacct:/x"). */
static int cgroup_path(const char *root, int v2, char *out, size_t len)
{
	char path[PATH_MAX], line[PATH_MAX + 64];
	FILE *f;
	int found = 0;

	snprintf(path, sizeof(path), "%s/proc/self/cgroup", root);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		char *ctl = strchr(line, ':'), *p = ctl ? strchr(ctl + 1, ':') : NULL;

		if (p == NULL)
			continue;
		*p = '\0';
		p[1 + strcspn(p + 1, "\n")] = '\0';
		if (v2 ? ctl[1] == '\0' : has_option(ctl + 1, "cpu")) {
			snprintf(out, len, "%s", p + 1);
			found = 1;
		}
	}
	fclose(f);
	return found ? 0 : -1;
}

/* The quota of the cpu hierarchies mounted here, tightest first. */
static double cgroup_quota(const char *root)
{
	char path[PATH_MAX], line[2 * PATH_MAX], cg[PATH_MAX], dir[PATH_MAX];
	double best = 0, q;
	FILE *f;

	snprintf(path, sizeof(path), "%s/proc/self/mountinfo", root);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		char mroot[PATH_MAX], mpoint[PATH_MAX], fstype[64], opts[512];
		const char *dash = strstr(line, " - "), *rel;
		int v2;

		if (dash == NULL || sscanf(line, "%*s %*s %*s %4095s %4095s", mroot, mpoint) != 2 ||
		    sscanf(dash + 3, "%63s %*s %511s", fstype, opts) != 2)
			continue;
		v2 = strcmp(fstype, "cgroup2") == 0;
		if (!v2 && !(strcmp(fstype, "cgroup") == 0 && has_option(opts, "cpu")))
			continue;
		if (cgroup_path(root, v2, cg, sizeof(cg)) < 0)
			continue;
		/* Inside a container the mount's root is the container's own
		 * cgroup: the path is relative to it. */
		rel = strncmp(cg, mroot, strlen(mroot)) == 0 ? cg + strlen(mroot) : cg;
		if (strcmp(mroot, "/") == 0)
			rel = cg;
		if ((size_t)snprintf(dir, sizeof(dir), "%s%s%s%s", root, mpoint,
		                     rel[0] == '/' || rel[0] == '\0' ? "" : "/",
		                     rel) >= sizeof(dir))
			continue;
		while (strlen(dir) > 1 && dir[strlen(dir) - 1] == '/')
			dir[strlen(dir) - 1] = '\0';
		q = quota_up(dir, strlen(root) + strlen(mpoint), v2);
		if (q > 0 && (best == 0 || q < best))
			best = q;
	}
	fclose(f);
	return best;
}

void cpus_detect(const char *root, struct cpus *c)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	int n;

	memset(c, 0, sizeof(*c));
	c->online = online > 0 ? (int)online : 1;
	c->affinity = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : c->online;
	c->quota = cgroup_quota(root);
	n = c->affinity;
	if (c->quota > 0 && (int)ceil(c->quota) < n)
		n = (int)ceil(c->quota);
	c->usable = n > 0 ? n : 1;
	if (c->quota > 0)
		snprintf(c->why, sizeof(c->why), "cgroup CPU quota %.2f, affinity %d of %d online",
		         c->quota, c->affinity, c->online);
	else
		snprintf(c->why, sizeof(c->why), "no cgroup CPU quota, affinity %d of %d online",
		         c->affinity, c->online);
}
