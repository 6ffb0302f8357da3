/* SPDX-License-Identifier: MIT */
/* check_cpus.c - usable CPUs from fake /proc and cgroup trees: cgroup v2
 * and v1 quotas, nested limits (the tightest wins), a container's mount
 * root, no limit, malformed files. */
#include "autoconfig.h"

#include <check.h>
#include <ftw.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpus.h"
#include "runner.h"

static char root[256];

static void put(const char *rel, const char *text)
{
	char path[512], *slash;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	for (slash = strchr(path + strlen(root) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(path, 0755);
		*slash = '/';
	}
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void setup(void)
{
	snprintf(root, sizeof(root), "%s/atrousd-cpus.XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(root));
}

static void teardown(void)
{
	nftw(root, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static int affinity(void)
{
	cpu_set_t set;

	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	return CPU_COUNT(&set);
}

static int expect_usable(double quota)
{
	int a = affinity(), q = (int)ceil(quota);

	return quota > 0 && q < a ? q : a;
}

START_TEST(test_v2_nested)
{
	struct cpus c;

	put("proc/self/mountinfo", "31 23 0:28 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
	put("proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
	put("sys/fs/cgroup/kubepods/cpu.max", "max 100000\n");
	put("sys/fs/cgroup/kubepods/pod1/cpu.max", "150000 100000\n");
	put("sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "max 100000\n");
	cpus_detect(root, &c);
	ck_assert_double_eq_tol(c.quota, 1.5, 1e-9);
	ck_assert_int_eq(c.usable, expect_usable(1.5));
	ck_assert_ptr_nonnull(strstr(c.why, "cgroup CPU quota 1.50"));
}
END_TEST

START_TEST(test_v1_hybrid)
{
	struct cpus c;

	put("proc/self/mountinfo",
	    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
	    "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
	    "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
	put("proc/self/cgroup", "4:memory:/a\n2:cpu,cpuacct:/a/b\n0::/a/b\n");
	put("sys/fs/cgroup/cpu,cpuacct/a/cpu.cfs_quota_us", "300000\n");
	put("sys/fs/cgroup/cpu,cpuacct/a/cpu.cfs_period_us", "100000\n");
	put("sys/fs/cgroup/cpu,cpuacct/a/b/cpu.cfs_quota_us", "-1\n");
	put("sys/fs/cgroup/cpu,cpuacct/a/b/cpu.cfs_period_us", "100000\n");
	put("sys/fs/cgroup/memory/a/cpu.cfs_quota_us", "1000\n"); /* not the cpu hierarchy */
	cpus_detect(root, &c);
	ck_assert_double_eq_tol(c.quota, 3.0, 1e-9);
	ck_assert_int_eq(c.usable, expect_usable(3.0));
}
END_TEST

START_TEST(test_container_root)
{
	struct cpus c;

	/* The container sees its own cgroup as the mount's root. */
	put("proc/self/mountinfo",
	    "31 23 0:28 /kubepods/pod2 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
	put("proc/self/cgroup", "0::/kubepods/pod2\n");
	put("sys/fs/cgroup/cpu.max", "50000 100000\n");
	cpus_detect(root, &c);
	ck_assert_double_eq_tol(c.quota, 0.5, 1e-9);
	ck_assert_int_eq(c.usable, 1);
}
END_TEST

START_TEST(test_no_limit)
{
	struct cpus c;

	cpus_detect(root, &c); /* nothing at all under root */
	ck_assert(c.quota == 0);
	ck_assert_int_eq(c.usable, affinity());
	ck_assert_int_ge(c.online, c.affinity);
	ck_assert_ptr_nonnull(strstr(c.why, "no cgroup CPU quota"));
	put("proc/self/mountinfo", "31 23 0:28 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
	put("proc/self/cgroup", "0::/x\n");
	put("sys/fs/cgroup/x/cpu.max", "garbage\n");
	cpus_detect(root, &c);
	ck_assert(c.quota == 0);
	put("sys/fs/cgroup/x/cpu.max", "0 100000\n");
	cpus_detect(root, &c);
	ck_assert(c.quota == 0);
	ck_assert_int_eq(c.usable, affinity());
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cpus");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_v2_nested);
	tcase_add_test(tc, test_v1_hybrid);
	tcase_add_test(tc, test_container_root);
	tcase_add_test(tc, test_no_limit);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
