/* SPDX-License-Identifier: MIT */
/* check_npy.c - .npy round trips and every malformed-file case. */
#include "autoconfig.h"

#include <check.h>
#include <dirent.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "npy.h"
#include "runner.h"

/* Build an .npy image: magic, version, header text (padded), then data. */
static size_t build(unsigned char *buf, int major, const char *dict, const void *data, size_t dlen)
{
	size_t pre = major == 1 ? 10 : 12, hl = strlen(dict);
	size_t total_h = (pre + hl + 1 + 63) / 64 * 64 - pre;

	memcpy(buf, "\x93NUMPY", 6);
	buf[6] = (unsigned char)major;
	buf[7] = 0;
	if (major == 1) {
		buf[8] = (unsigned char)(total_h & 0xff);
		buf[9] = (unsigned char)(total_h >> 8);
	} else {
		buf[8] = (unsigned char)(total_h & 0xff);
		buf[9] = (unsigned char)(total_h >> 8);
		buf[10] = buf[11] = 0;
	}
	memcpy(buf + pre, dict, hl);
	memset(buf + pre + hl, ' ', total_h - hl - 1);
	buf[pre + total_h - 1] = '\n';
	if (dlen)
		memcpy(buf + pre + total_h, data, dlen);
	return pre + total_h + dlen;
}

static void expect_refused(const unsigned char *buf, size_t len, const char *msg)
{
	struct tensor *t = (struct tensor *)1;
	char err[ERR_LEN] = "";

	ck_assert_int_lt(npy_parse(buf, len, &t, err), 0);
	ck_assert_ptr_null(t);
	ck_assert_msg(strstr(err, msg) != NULL, "expected \"%s\" in \"%s\"", msg, err);
}

START_TEST(test_versions)
{
	static const float v[6] = { 1, -2, 3.5f, 0, FLT_MAX, -FLT_MIN };
	unsigned char buf[512];
	struct tensor *t;
	char err[ERR_LEN];
	int major, i;

	for (major = 1; major <= 3; major++) {
		size_t len = build(buf, major,
		                   "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", v,
		                   sizeof(v));

		ck_assert_int_eq(npy_parse(buf, len, &t, err), 0);
		ck_assert_int_eq(t->rank, 2);
		ck_assert_int_eq(t->dim[0], 2);
		ck_assert_int_eq(t->dim[1], 3);
		for (i = 0; i < 6; i++)
			ck_assert_float_eq(t->data[i], v[i]);
		tensor_free(t);
	}
}
END_TEST

START_TEST(test_float64)
{
	static const double v[3] = { 0.1, -1e30, 2.5 };
	static const double bad[2] = { 1.0, 1e39 };
	unsigned char buf[512];
	struct tensor *t;
	char err[ERR_LEN];
	size_t len;

	len = build(buf, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", v,
	            sizeof(v));
	ck_assert_int_eq(npy_parse(buf, len, &t, err), 0);
	ck_assert_float_eq(t->data[0], (float)0.1);
	ck_assert_float_eq(t->data[1], (float)-1e30);
	tensor_free(t);
	len = build(buf, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", bad,
	            sizeof(bad));
	expect_refused(buf, len, "float64 element 1 (1e+39) is beyond float32 range");
}
END_TEST

START_TEST(test_malformed)
{
	static const float v[4] = { 1, 2, 3, 4 };
	unsigned char buf[512];
	size_t len;

	len = build(buf, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", v, 16);
	expect_refused(buf, len, "big-endian");
	len = build(buf, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }", v, 16);
	expect_refused(buf, len, "dtype '<i4' is not float32");
	len = build(buf, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", v, 16);
	expect_refused(buf, len, "Fortran-ordered");
	len = build(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", v, 12);
	expect_refused(buf, len, "header shape needs 16 data bytes but the file has 12");
	len = build(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", v, 16);
	expect_refused(buf, len, "header shape needs 12 data bytes but the file has 16");
	len = build(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (9999999, 2), }", v,
	            16);
	expect_refused(buf, len, "header shape needs");
	len = build(
	        buf, 1,
	        "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 8), }",
	        v, 16);
	expect_refused(buf, len, "element count overflows");
	len = build(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", v, 16);
	expect_refused(buf, len, "shape tuple is malformed");
	len = build(buf, 1, "{'descr': '<f4', 'shape': (4,), }", v, 16);
	expect_refused(buf, len, "fortran_order");
	len = build(buf, 1, "{'fortran_order': False, 'shape': (4,), }", v, 16);
	expect_refused(buf, len, "descr");
	len = build(buf, 1, "[1, 2]", v, 16);
	expect_refused(buf, len, "not a dictionary");
	len = build(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", v, 16);
	expect_refused(buf, 40, "truncated header");
	expect_refused(buf, 5, "bad magic");
	buf[6] = 4;
	expect_refused(buf, len, "unsupported .npy version 4.0");
	buf[0] = 'P';
	expect_refused(buf, len, "bad magic");
}
END_TEST

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

START_TEST(test_file_round_trip)
{
	char dir[] = "/tmp/check_npy.XXXXXX", path[256], err[ERR_LEN];
	int64_t dims[][4] = { { 2, 3, 4, 5 }, { 7, 0, 0, 0 }, { 0, 0, 0, 0 } };
	int ranks[] = { 4, 1, 0 };
	struct tensor *t, *u;
	size_t i, k;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/x.npy", dir);
	for (k = 0; k < 3; k++) {
		ck_assert_int_eq(tensor_new(&t, ranks[k], dims[k], err), 0);
		for (i = 0; i < t->count; i++)
			t->data[i] = (float)i * 0.25f - 3.0f;
		ck_assert_int_eq(npy_save(path, t, err), 0);
		ck_assert_int_eq(npy_load(path, &u, err), 0);
		ck_assert_int_eq(u->rank, t->rank);
		for (i = 0; i < (size_t)t->rank; i++)
			ck_assert_int_eq(u->dim[i], t->dim[i]);
		ck_assert_uint_eq(u->count, t->count);
		for (i = 0; i < t->count; i++)
			ck_assert_float_eq(u->data[i], t->data[i]);
		tensor_free(u);
		tensor_free(t);
	}
	ck_assert_int_eq(count_entries(dir), 1);
	/* A save into a missing directory fails and leaves nothing behind. */
	snprintf(path, sizeof(path), "%s/missing/y.npy", dir);
	ck_assert_int_eq(tensor_new(&t, 1, dims[1], err), 0);
	ck_assert_int_lt(npy_save(path, t, err), 0);
	ck_assert_msg(strstr(err, "missing/y.npy") != NULL, "%s", err);
	tensor_free(t);
	ck_assert_int_eq(count_entries(dir), 1);
	ck_assert_int_lt(npy_load(path, &u, err), 0);
	ck_assert_msg(strstr(err, "No such file") != NULL, "%s", err);
	ck_assert_int_lt(npy_load(dir, &u, err), 0);
	ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);
	snprintf(path, sizeof(path), "%s/x.npy", dir);
	unlink(path);
	rmdir(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("npy");
	TCase *tc = tcase_create("format");

	tcase_add_test(tc, test_versions);
	tcase_add_test(tc, test_float64);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_file_round_trip);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
