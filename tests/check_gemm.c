/* SPDX-License-Identifier: MIT */
/* check_gemm.c - every GEMM kernel this processor runs (gemm.h) against a
 * double-precision loop: sizes at and around the register blocks and
 * GEMM_KC, row strides wider than the rows, nothing written outside C, and
 * the packing's padding columns (filled with NaN here) never reaching C.
 *
 * Tolerance: (k + 2) 2^-24 sum|a*b| per element, which bounds float
 * summation of k terms in any order.
 */
#include "autoconfig.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "par.h"
#include "ref.h"
#include "runner.h"

static const int64_t ms[] = { 1, 5, 6, 7, 13, 100 };
static const int64_t ns[] = { 1, 15, 16, 17, 31, 32, 33, 70 };
static const int64_t ks[] = { 0, 1, 7, 128, 129, 300 };

#define NMS (int)(sizeof(ms) / sizeof(ms[0]))
#define NNS (int)(sizeof(ns) / sizeof(ns[0]))
#define NKS (int)(sizeof(ks) / sizeof(ks[0]))

/* One product on kernel g; returns the largest error over its bound. */
static double run_case(const struct gemm_kernel *g, int64_t m, int64_t n, int64_t k, uint64_t seed)
{
	int64_t lda = k + 3, ldc = n + 5, i, j, p;
	size_t pf = gemm_packed_floats(k, n);
	float *a = malloc((size_t)(m * lda + 1) * sizeof(float));
	float *b = malloc((size_t)(k * n + 1) * sizeof(float));
	float *bp = malloc((pf + 1) * sizeof(float));
	float *c = malloc((size_t)((m + 1) * ldc) * sizeof(float));
	double worst = 0;

	ck_assert(a != NULL && b != NULL && bp != NULL && c != NULL);
	ref_fill(a, (size_t)(m * lda), seed);
	ref_fill(b, (size_t)(k * n), seed + 1);
	for (i = 0; i < (int64_t)pf; i++)
		bp[i] = NAN; /* the padding columns */
	for (i = 0; i < k; i++)
		for (j = 0; j < n; j++)
			bp[gemm_packed_at(k, i, j)] = b[i * n + j];
	for (i = 0; i < (m + 1) * ldc; i++)
		c[i] = 12345.0f; /* what must stay outside C */

	gemm_run(g, m, n, k, a, lda, bp, c, ldc);

	for (i = 0; i < m + 1; i++)
		for (j = 0; j < ldc; j++) {
			double ref = 0, mag = 0, bound, err;

			if (i == m || j >= n) {
				ck_assert_msg(c[i * ldc + j] == 12345.0f,
				              "%s %lldx%lldx%lld: wrote outside C at %lld,%lld",
				              g->name, (long long)m, (long long)n, (long long)k,
				              (long long)i, (long long)j);
				continue;
			}
			for (p = 0; p < k; p++) {
				ref += (double)a[i * lda + p] * b[p * n + j];
				mag += fabs((double)a[i * lda + p] * b[p * n + j]);
			}
			bound = (double)(k + 2) * ldexp(1, -24) * mag;
			err = fabs(c[i * ldc + j] - ref);
			ck_assert_msg(
			        isfinite(c[i * ldc + j]) && err <= bound,
			        "%s %lldx%lldx%lld: C[%lld][%lld] = %.9g, want %.9g (bound %.3g)",
			        g->name, (long long)m, (long long)n, (long long)k, (long long)i,
			        (long long)j, c[i * ldc + j], ref, bound);
			if (bound > 0 && err / bound > worst)
				worst = err / bound;
		}
	free(a);
	free(b);
	free(bp);
	free(c);
	return worst;
}

START_TEST(test_sizes)
{
	const struct gemm_kernel *const *list = gemm_kernels();
	int x, y, z, cases = 0;

	ck_assert_ptr_eq(list[0], gemm_best());
	for (; *list != NULL; list++) {
		const struct gemm_kernel *g = *list;
		double worst = 0;

		ck_assert_int_le(g->mr, 6);
		ck_assert_int_le(g->nr, 32);
		for (x = 0; x < NMS; x++)
			for (y = 0; y < NNS; y++)
				for (z = 0; z < NKS; z++) {
					double w = run_case(g, ms[x], ns[y], ks[z],
					                    (uint64_t)(x * 100 + y * 10 + z));

					worst = w > worst ? w : worst;
					cases++;
				}
		printf("# kernel %s (%d x %d): worst error %.4f x the bound\n", g->name, g->mr,
		       g->nr, worst);
	}
	ck_assert_int_ge(cases, NMS * NNS * NKS);
}
END_TEST

/* The fast path's shape: hundreds of rows, wide k and n. */
START_TEST(test_wide)
{
	const struct gemm_kernel *const *list = gemm_kernels();

	for (; *list != NULL; list++)
		run_case(*list, 289, 256, 2048, 7);
}
END_TEST

/* A raised cancellation flag: gemm_run stops between blocks of GEMM_KC
 * rows of B; raised before the call, it writes nothing; lowered again,
 * the same call computes. */
START_TEST(test_cancel)
{
	const struct gemm_kernel *g = gemm_best();
	int64_t m = 50, n = 40, k = 3 * GEMM_KC, i;
	float *a = calloc((size_t)(m * k), sizeof(float));
	float *bp = calloc(gemm_packed_floats(k, n), sizeof(float));
	float *c = malloc((size_t)(m * n) * sizeof(float));
	int flag = 1;
	const int *saved;

	ck_assert(a != NULL && bp != NULL && c != NULL);
	for (i = 0; i < m * n; i++)
		c[i] = 7.0f;
	saved = par_watch(&flag);
	ck_assert(par_cancelled());
	gemm_run(g, m, n, k, a, k, bp, c, n);
	for (i = 0; i < m * n; i++)
		ck_assert_msg(c[i] == 7.0f, "C[%lld] written after cancellation", (long long)i);
	flag = 0;
	gemm_run(g, m, n, k, a, k, bp, c, n);
	for (i = 0; i < m * n; i++)
		ck_assert_msg(c[i] == 0.0f, "C[%lld] = %g, want 0", (long long)i, c[i]);
	par_watch(saved);
	free(a);
	free(bp);
	free(c);
}
END_TEST

static Suite *gemm_suite(void)
{
	Suite *s = suite_create("gemm");
	TCase *tc = tcase_create("kernels");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_sizes);
	tcase_add_test(tc, test_wide);
	tcase_add_test(tc, test_cancel);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(gemm_suite());
}
