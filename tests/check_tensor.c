/* SPDX-License-Identifier: MIT */
/* check_tensor.c - shape arithmetic and allocation. */
#include "autoconfig.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tensor.h"
#include "runner.h"

START_TEST(test_count)
{
	int64_t d[4] = { 2, 3, 4, 5 };
	size_t n;
	char err[ERR_LEN];

	ck_assert_int_eq(tensor_shape_count(4, d, 0, &n, err), 0);
	ck_assert_uint_eq(n, 120);
	ck_assert_int_eq(tensor_shape_count(0, d, 0, &n, err), 0);
	ck_assert_uint_eq(n, 1);
	d[2] = 0;
	ck_assert_int_eq(tensor_shape_count(4, d, 0, &n, err), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(tensor_shape_count(4, d, 100, &n, err), 0);
}
END_TEST

START_TEST(test_limits)
{
	int64_t big[3] = { 4294967296LL, 4294967296LL, 2 };
	int64_t neg[2] = { 3, -1 };
	int64_t d[2] = { 10, 11 };
	size_t n = 7;
	char err[ERR_LEN];

	ck_assert_int_lt(tensor_shape_count(3, big, 0, &n, err), 0);
	ck_assert_str_eq(err, "shape [4294967296,4294967296,2]: element count overflows");
	big[0] = 65536;
	ck_assert_int_eq(tensor_shape_count(3, big, 0, &n, err), -E2BIG);
	ck_assert_str_eq(err, "shape [65536,4294967296,2] has more than 68719476736 elements");
	big[0] = 4294967296LL;
	ck_assert_uint_eq(n, 7);
	ck_assert_int_lt(tensor_shape_count(2, neg, 0, &n, err), 0);
	ck_assert_str_eq(err, "negative dimension -1 in shape [3,-1]");
	ck_assert_int_lt(tensor_shape_count(2, d, 100, &n, err), 0);
	ck_assert_str_eq(err, "shape [10,11] has more than 100 elements");
	ck_assert_int_eq(tensor_shape_count(2, d, 110, &n, err), 0);
	ck_assert_int_lt(tensor_shape_count(TENSOR_MAX_RANK + 1, d, 0, &n, err), 0);
	/* Zero anywhere makes an empty tensor even when other dims are huge. */
	big[2] = 0;
	ck_assert_int_eq(tensor_shape_count(3, big, 0, &n, err), 0);
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(test_new)
{
	int64_t d[4] = { 1, 3, 3, 5 };
	struct tensor *t;
	char err[ERR_LEN], buf[64];
	size_t i;

	ck_assert_int_eq(tensor_new(&t, 4, d, err), 0);
	ck_assert_uint_eq((uintptr_t)t->data % TENSOR_ALIGN, 0);
	ck_assert_uint_eq(t->count, 45);
	for (i = 0; i < t->count; i++)
		ck_assert_float_eq(t->data[i], 0.0f);
	ck_assert_uint_eq(tensor_index4(t, 0, 2, 1, 4), (2 * 3 + 1) * 5 + 4);
	ck_assert_str_eq(tensor_shape_str(t->rank, t->dim, buf, sizeof(buf)), "[1,3,3,5]");
	tensor_free(t);
	d[0] = 0;
	ck_assert_int_eq(tensor_new(&t, 4, d, err), 0);
	ck_assert_ptr_null(t->data);
	tensor_free(t);
	tensor_free(NULL);
	d[0] = -2;
	ck_assert_int_lt(tensor_new(&t, 4, d, err), 0);
	ck_assert_ptr_null(t);
}
END_TEST

START_TEST(test_errors)
{
	char err[ERR_LEN];

	ck_assert_int_eq(err_set(err, -22, "bad %s %d", "thing", 3), -22);
	ck_assert_str_eq(err, "bad thing 3");
	err_prefix(err, "file %s", "x.npy");
	ck_assert_str_eq(err, "file x.npy: bad thing 3");
	ck_assert_int_eq(err_set(NULL, -5, "ignored"), -5);
}
END_TEST

START_TEST(test_view)
{
	int64_t d[4] = { 1, 2, 2, 4 };
	float *mem = tensor_alloc_aligned(2 * TENSOR_ALIGN + 16 * sizeof(float));
	struct tensor *t;
	char err[ERR_LEN];

	ck_assert_ptr_nonnull(mem);
	mem[0] = 7.0f;
	ck_assert_int_eq(tensor_view(&t, 4, d, mem, err), 0);
	ck_assert_ptr_eq(t->data, mem);
	ck_assert_uint_eq(t->count, 16);
	ck_assert_int_eq(t->borrowed, 1);
	tensor_free(t); /* the floats stay the caller's */
	ck_assert_float_eq(mem[0], 7.0f);
	ck_assert_int_eq(tensor_view(&t, 4, d, mem + 1, err), -EINVAL);
	ck_assert_ptr_null(t);
	ck_assert_ptr_nonnull(strstr(err, "aligned"));
	d[1] = -1;
	ck_assert_int_eq(tensor_view(&t, 4, d, mem, err), -EINVAL);
	free(mem);
}
END_TEST

START_TEST(test_adopt_reshape)
{
	int64_t dim[3] = { 2, 3, 4 }, flat[1] = { 24 }, wrong[2] = { 5, 5 }, bad[1] = { -1 };
	int64_t empty[1] = { 0 };
	char err[ERR_LEN];
	struct tensor *t;
	float *data = tensor_alloc_aligned(24 * sizeof(float));
	int i;

	ck_assert_ptr_nonnull(data);
	for (i = 0; i < 24; i++)
		data[i] = (float)i;
	ck_assert_int_eq(tensor_adopt(&t, 3, dim, data, err), 0);
	ck_assert_ptr_eq(t->data, data);
	ck_assert_uint_eq(t->count, 24);
	ck_assert_int_eq(t->borrowed, 0);
	ck_assert_int_eq(tensor_reshape(t, 1, flat, err), 0);
	ck_assert_int_eq(t->rank, 1);
	ck_assert_int_eq(t->dim[0], 24);
	ck_assert(t->data[23] == 23.0f);
	ck_assert_int_eq(tensor_reshape(t, 2, wrong, err), -EINVAL);
	ck_assert_str_eq(err, "cannot reshape [24] (24 elements) to [5,5] (25)");
	ck_assert_int_eq(t->rank, 1);
	tensor_free(t);
	/* A bad shape is refused and the data freed (valgrind and ASan see a
	 * leak otherwise); an empty shape frees the data at once. */
	ck_assert_int_eq(tensor_adopt(&t, 1, bad, tensor_alloc_aligned(64), err), -EINVAL);
	ck_assert_ptr_null(t);
	ck_assert_int_eq(tensor_adopt(&t, 1, empty, tensor_alloc_aligned(64), err), 0);
	ck_assert_ptr_null(t->data);
	tensor_free(t);
}
END_TEST

START_TEST(test_transpose_layout)
{
	int64_t dim[4] = { 2, 3, 5, 7 }, n, c, y, x;
	struct tensor *t, *u, *back;
	char err[ERR_LEN];
	size_t i;

	ck_assert_int_eq(tensor_new(&t, 4, dim, err), 0);
	for (i = 0; i < t->count; i++)
		t->data[i] = (float)i;
	/* t is NCHW [2,3,5,7]; u must be NHWC [2,5,7,3] with the same elements. */
	ck_assert_int_eq(tensor_transpose_layout(t, 1, &u, err), 0);
	ck_assert_int_eq(u->dim[1], 5);
	ck_assert_int_eq(u->dim[2], 7);
	ck_assert_int_eq(u->dim[3], 3);
	for (n = 0; n < 2; n++)
		for (c = 0; c < 3; c++)
			for (y = 0; y < 5; y++)
				for (x = 0; x < 7; x++)
					ck_assert(u->data[tensor_index4(u, n, y, x, c)] ==
					          t->data[tensor_index4(t, n, c, y, x)]);
	ck_assert_int_eq(tensor_transpose_layout(u, 0, &back, err), 0);
	ck_assert_int_eq(memcmp(back->dim, t->dim, sizeof(dim)), 0);
	ck_assert_int_eq(memcmp(back->data, t->data, t->count * sizeof(float)), 0);
	tensor_free(back);
	tensor_free(u);
	tensor_free(t);
	/* Empty tensors keep their shape; rank 2 is refused. */
	dim[2] = 0;
	ck_assert_int_eq(tensor_new(&t, 4, dim, err), 0);
	ck_assert_int_eq(tensor_transpose_layout(t, 1, &u, err), 0);
	ck_assert_uint_eq(u->count, 0);
	ck_assert_int_eq(u->dim[3], 3);
	tensor_free(u);
	tensor_free(t);
	ck_assert_int_eq(tensor_new(&t, 2, dim, err), 0);
	ck_assert_int_eq(tensor_transpose_layout(t, 1, &u, err), -EINVAL);
	tensor_free(t);
}
END_TEST

/* The cache of large blocks: a freed block of TENSOR_CACHE_MIN (128 KiB) or
 * more comes back for the next request it fits best (a request of at least
 * a quarter of it), its pages still written; small blocks, and blocks past
 * the bound, are freed. */
START_TEST(test_cache)
{
	const size_t mib = (size_t)1 << 20;
	struct tensor *t;
	int64_t d[1] = { 512 * 1024 }; /* 2 MiB of floats */
	float *p, *q, *big, *small;
	size_t held;
	char err[ERR_LEN];

	tensor_set_cache(16 * mib);
	ck_assert_uint_eq(tensor_cache_bytes(), 0);
	p = tensor_alloc_aligned(2 * mib);
	ck_assert_ptr_nonnull(p);
	p[0] = 42.0f;
	tensor_release(p);
	ck_assert_uint_ge(tensor_cache_bytes(), 2 * mib);
	ck_assert_uint_lt(tensor_cache_bytes(), 3 * mib);
	/* a tensor of the same size takes it (tensor_new zeroes it) */
	ck_assert_int_eq(tensor_new(&t, 1, d, err), 0);
	ck_assert_ptr_eq(t->data, p);
	ck_assert(t->data[0] == 0.0f);
	ck_assert_uint_eq(tensor_cache_bytes(), 0);
	tensor_free(t); /* back into the cache */
	big = tensor_alloc_aligned(8 * mib);
	ck_assert_ptr_nonnull(big);
	tensor_release(big);
	ck_assert_uint_ge(tensor_cache_bytes(), 10 * mib);
	/* best fit: 1.5 MiB takes the 2 MiB block, not the 8 MiB one */
	q = tensor_alloc_aligned(mib * 3 / 2);
	ck_assert_ptr_eq(q, p);
	/* with it taken, 1.5 MiB is under a quarter of 8: a fresh block */
	small = tensor_alloc_aligned(mib * 3 / 2);
	ck_assert_ptr_nonnull(small);
	ck_assert_ptr_ne(small, big);
	tensor_release(small);
	ck_assert_ptr_eq(tensor_alloc_aligned(3 * mib), big);
	tensor_release(big);
	tensor_release(q);
	held = tensor_cache_bytes();
	ck_assert_uint_ge(held, 10 * mib);
	/* past the bound: freed, the cache unchanged */
	big = tensor_alloc_aligned(12 * mib);
	ck_assert_ptr_nonnull(big);
	tensor_release(big);
	ck_assert_uint_eq(tensor_cache_bytes(), held);
	/* under TENSOR_CACHE_MIN: freed; at it: kept */
	tensor_release(tensor_alloc_aligned(TENSOR_CACHE_MIN - TENSOR_ALIGN));
	ck_assert_uint_eq(tensor_cache_bytes(), held);
	tensor_release(tensor_alloc_aligned(TENSOR_CACHE_MIN));
	ck_assert_uint_ge(tensor_cache_bytes(), held + TENSOR_CACHE_MIN);
	ck_assert_uint_lt(tensor_cache_bytes(), held + TENSOR_CACHE_MIN + 4096);
	/* the bound set to 0 empties it and keeps nothing */
	tensor_set_cache(0);
	ck_assert_uint_eq(tensor_cache_bytes(), 0);
	p = tensor_alloc_aligned(2 * mib);
	ck_assert_ptr_nonnull(p);
	tensor_release(p);
	ck_assert_uint_eq(tensor_cache_bytes(), 0);
	tensor_set_cache(TENSOR_CACHE_DEFAULT);
	tensor_release(NULL);
}
END_TEST

int main(void)

{
	Suite *s = suite_create("tensor");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_count);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_new);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_view);
	tcase_add_test(tc, test_adopt_reshape);
	tcase_add_test(tc, test_transpose_layout);
	tcase_add_test(tc, test_cache);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
