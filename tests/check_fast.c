/* SPDX-License-Identifier: MIT */
/* check_fast.c - minimal filtering (fast.h) against the naive double
 * reference, over grid sizes 1-40, rates 1-8 and rate pairs, SAME and VALID,
 * batches, channel counts off the vector width, bias and ReLU.
 *
 * Tolerance: the direct summation bound of check_conv, (K + 2) 2^-24
 * sum|x*w| per output, widened by FAST_ERROR_SCALE (4): the transforms round
 * sums of up to 36 scaled terms, whose magnitudes the bound on sum|x*w|
 * covers only up to the transforms' norms.  Relative RMS error on wide
 * layers (C = 512) must stay within 3e-6 for every scheme pair the plan can
 * choose, which is what `auto` relies on.
 */
#include "autoconfig.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "error.h"
#include "fast.h"
#include "layer.h"
#include "ref.h"
#include "runner.h"

static struct tensor *rand_tensor(int rank, int64_t a, int64_t b, int64_t c, int64_t d,
                                  uint64_t seed)
{
	struct tensor *t = ref_tensor(rank, a, b, c, d, seed);

	ck_assert_ptr_nonnull(t);
	return t;
}

struct result {
	double worst;   /* largest |error| / direct bound */
	double rel_rms; /* sqrt(sum err^2 / sum ref^2) */
	size_t wbytes;  /* the stored layer's transformed weights */
	char algo[16];
};

/* Run one layer with the given algorithm (cache: a stored layer's weights
 * cache, else inline) against the reference; asserts the scaled bound. */
static struct result run_case(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                              int64_t o, int64_t rh, int64_t rw, enum conv_padding pad, int bias,
                              int relu, enum conv_algo algo, int cache)
{
	struct tensor *x = rand_tensor(4, n, h, w, c, (uint64_t)(n * 7 + h * 131 + w * 3 + rh));
	struct tensor *f = rand_tensor(4, kh, kw, c, o, (uint64_t)(c * 5 + o + rw));
	struct tensor *b = bias ? rand_tensor(1, o, 0, 0, 0, 17) : NULL;
	struct conv_spec s = { rh, rw, pad, relu ? CONV_ACT_RELU : CONV_ACT_NONE, algo };
	struct fast_weights *fw = NULL;
	struct conv_plan *p;
	struct tensor *y;
	struct result r = { 0, 0, 0, "" };
	double *ref = NULL, *mag = NULL, e2 = 0, r2 = 0;
	int64_t od[4], yd[4];
	char err[ERR_LEN];
	size_t i;

	ck_assert_int_eq(ref_atrous2d(x->data, x->dim, f->data, f->dim, b ? b->data : NULL, rh, rw,
	                              pad == CONV_SAME, relu, &ref, &mag, od),
	                 0);
	if (cache)
		ck_assert_int_eq(fast_weights_new(&fw, f, err), 0);
	ck_assert_msg(conv_plan_new(&p, x->dim, f, b, &s, NULL, fw, err) == 0, "%s", err);
	conv_plan_output_shape(p, yd);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(yd[i], od[i]);
	ck_assert_int_eq(tensor_new(&y, 4, yd, err), 0);
	ck_assert_int_eq(conv_plan_run(p, x->data, y->data, NULL), 0);
	strcpy(r.algo, conv_plan_algorithm(p));
	for (i = 0; i < y->count; i++) {
		double d = fabs((double)y->data[i] - ref[i]);
		double bound = (double)(kh * kw * c + 2) * ldexp(1.0, -24) * mag[i];
		double tol = (strcmp(r.algo, "fast") == 0 ? FAST_ERROR_SCALE : 1.0) * bound;

		ck_assert_msg(d <= tol,
		              "n%lld %lldx%lld c%lld k%lldx%lld o%lld r%lldx%lld %s %s: out[%zu] = "
		              "%.9g, ref %.9g, tol %.3g",
		              (long long)n, (long long)h, (long long)w, (long long)c, (long long)kh,
		              (long long)kw, (long long)o, (long long)rh, (long long)rw,
		              pad == CONV_SAME ? "SAME" : "VALID", r.algo, i, (double)y->data[i],
		              ref[i], tol);
		if (bound > 0 && d / bound > r.worst)
			r.worst = d / bound;
		e2 += d * d;
		r2 += ref[i] * ref[i];
	}
	r.rel_rms = r2 > 0 ? sqrt(e2 / r2) : 0;
	r.wbytes = fw ? fast_weights_bytes(fw) : 0;
	conv_plan_free(p);
	fast_weights_free(fw);
	free(ref);
	free(mag);
	tensor_free(y);
	tensor_free(b);
	tensor_free(f);
	tensor_free(x);
	return r;
}

/* Does minimal filtering apply: 3x3 and rates within the map. */
static int applies(int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t rh, int64_t rw)
{
	return kh == 3 && kw == 3 && rh <= h && rw <= w;
}

/* Square maps of 1..40 at rates 1..8, SAME and VALID, with the fast path
 * forced: every phase-grid size from one row to 40, so every scheme and
 * every edge tile; fused (these layers are small), then in stages. */
START_TEST(test_sizes_rates)
{
	int64_t h = 1 + _i % 40, r;
	int pad;

	fast_set_fused_limit(_i < 40 ? FAST_FUSED_WEIGHTS : 0);
	for (r = 1; r <= 8; r++)
		for (pad = 0; pad < 2; pad++) {
			struct result res;

			if (pad == 1 && 2 * r >= h)
				continue; /* VALID needs 2r < h */
			res = run_case(1, h, h, 5, 3, 3, 7, r, r, pad ? CONV_VALID : CONV_SAME,
			               (int)(r & 1), (int)(h & 1), CONV_ALGO_FAST, 0);
			ck_assert_str_eq(res.algo, applies(h, h, 3, 3, r, r) ? "fast" : "im2col");
		}
}
END_TEST

/* Rate pairs and non-square maps, batch > 1, channels across the vector
 * width (on AVX-512, channels in sixteens run 16 a vector), the
 * stored-weights cache; fused, then in stages. */
START_TEST(test_pairs_batches)
{
	static const int64_t shapes[][8] = {
		/* n, h, w, c, o, rh, rw, pad(1 = VALID) */
		{ 2, 9, 14, 3, 4, 2, 3, 0 },     { 3, 17, 6, 9, 17, 4, 1, 0 },
		{ 2, 23, 23, 16, 8, 3, 7, 0 },   { 1, 40, 13, 8, 16, 8, 2, 0 },
		{ 2, 12, 31, 1, 1, 5, 6, 1 },    { 1, 33, 33, 12, 9, 6, 6, 0 },
		{ 1, 33, 33, 12, 9, 12, 12, 0 }, { 1, 33, 33, 12, 9, 18, 18, 0 },
		{ 2, 20, 11, 24, 40, 1, 1, 1 },  { 1, 2, 2, 8, 8, 1, 2, 0 },
		{ 2, 19, 21, 32, 48, 2, 3, 0 },
	};
	size_t i;
	int cache;

	/* 0: fused; 1: in stages; 2: in stages of at most 64 KiB, a few
	 * tiles each, so that groups are cut into parts */
	fast_set_fused_limit(_i == 0 ? FAST_FUSED_WEIGHTS : 0);
	fast_set_stage_limit(_i == 2 ? (size_t)64 << 10 : 0);
	for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		for (cache = 0; cache < 2; cache++) {
			const int64_t *v = shapes[i];
			struct result r = run_case(v[0], v[1], v[2], v[3], 3, 3, v[4], v[5], v[6],
			                           v[7] ? CONV_VALID : CONV_SAME, cache, !cache,
			                           CONV_ALGO_FAST, cache);

			ck_assert_str_eq(r.algo, "fast");
		}
	/* the defaults again, for the tests after this one (CK_FORK=no) */
	fast_set_fused_limit(FAST_FUSED_WEIGHTS);
	fast_set_stage_limit(0);
}
END_TEST

/* Even and other non-3x3 kernels fall back to the region plan, exact to the
 * direct bound, whatever the request asks. */
START_TEST(test_fallbacks)
{
	static const int64_t k[][2] = {
		{ 2, 2 }, { 4, 4 }, { 1, 1 }, { 5, 5 }, { 3, 1 }, { 2, 3 }
	};
	size_t i;

	for (i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
		struct result r = run_case(2, 13, 11, 6, k[i][0], k[i][1], 5, 2, 3, CONV_SAME, 1, 1,
		                           CONV_ALGO_FAST, 1);

		ck_assert_str_eq(r.algo, "im2col");
	}
	/* a rate larger than the map: only the centre tap reads data */
	ck_assert_str_eq(
	        run_case(1, 5, 5, 4, 3, 3, 4, 7, 7, CONV_SAME, 0, 0, CONV_ALGO_FAST, 0).algo,
	        "im2col");
	/* a tile of 25 products of 500000 channels would pass the stage buffer
	 * (40 MiB) */
	ck_assert_str_eq(
	        run_case(1, 3, 3, 500000, 3, 3, 1, 1, 1, CONV_SAME, 0, 0, CONV_ALGO_FAST, 1).algo,
	        "im2col");
	/* im2col asked for is im2col */
	ck_assert_str_eq(
	        run_case(1, 20, 20, 8, 3, 3, 8, 2, 2, CONV_SAME, 0, 0, CONV_ALGO_IM2COL, 1).algo,
	        "im2col");
}
END_TEST

/* Wide layers (C = 512, as DeepLab's) through each scheme pair: 1-row grids
 * (S1), 2-row (S2), F(2,3), F(3,3), F(4,3) along each axis; the relative RMS
 * error stays within 3e-6, fused and in stages. */
START_TEST(test_wide_accuracy)
{
	static const int64_t g[][4] = {
		/* h, w, rh, rw: grids of about h / rh by w / rw */
		{ 12, 12, 3, 3 }, /* 4 x 4: F4 */
		{ 15, 15, 3, 3 }, /* 5 x 5: F3 */
		{ 8, 8, 4, 4 },   /* 2 x 2: S2 */
		{ 5, 9, 5, 3 },   /* 1 x 3: S1 x F3 */
		{ 16, 6, 2, 3 },  /* 8 x 2: F4 x S2 */
		{ 6, 12, 3, 2 },  /* 2 x 6: S2 x F3 */
		{ 4, 12, 1, 4 },  /* VALID 2-row: F2 x F2 */
	};
	size_t i;

	fast_set_fused_limit(_i == 0 ? FAST_FUSED_WEIGHTS : 0);
	for (i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
		enum conv_padding pad = i == 6 ? CONV_VALID : CONV_SAME;
		struct result f = run_case(1, g[i][0], g[i][1], 512, 3, 3, 16, g[i][2], g[i][3],
		                           pad, 1, 0, CONV_ALGO_FAST, 1);

		struct result d = run_case(1, g[i][0], g[i][1], 512, 3, 3, 16, g[i][2], g[i][3],
		                           pad, 1, 0, CONV_ALGO_IM2COL, 1);

		ck_assert_str_eq(f.algo, "fast");
		printf("# %lldx%lld rate %lldx%lld, C 512: relative RMS %.3g (im2col %.3g), worst "
		       "%.4f x the direct bound\n",
		       (long long)g[i][0], (long long)g[i][1], (long long)g[i][2],
		       (long long)g[i][3], f.rel_rms, d.rel_rms, f.worst);
		ck_assert_msg(f.rel_rms <= 3e-6, "%lldx%lld rate %lldx%lld: relative RMS %.3g",
		              (long long)g[i][0], (long long)g[i][1], (long long)g[i][2],
		              (long long)g[i][3], f.rel_rms);
		ck_assert_msg(f.worst <= FAST_ERROR_SCALE / 4,
		              "%lldx%lld rate %lldx%lld: worst error %.3g of the direct bound",
		              (long long)g[i][0], (long long)g[i][1], (long long)g[i][2],
		              (long long)g[i][3], f.worst);
	}
}
END_TEST

/* Phases of one or two values: their special schemes use the fewest
 * products, but each scheme pair is a GEMM per product that reads its
 * weights.  With wide weights (384 x 384: 576 KiB a product) and few
 * tiles, an 11 x 11 map at rate 4 (grids of 3 and 2 rows) runs as one
 * F(3,3) pair, 25 weight matrices, not four pairs and 64; with narrow ones
 * (16 x 16) the specials stay. */
START_TEST(test_specials)
{
	struct result wide =
	        run_case(1, 11, 11, 384, 3, 3, 384, 4, 4, CONV_SAME, 1, 1, CONV_ALGO_FAST, 1);
	struct result narrow =
	        run_case(1, 11, 11, 16, 3, 3, 16, 4, 4, CONV_SAME, 1, 1, CONV_ALGO_FAST, 1);

	ck_assert_str_eq(wide.algo, "fast");
	ck_assert_uint_eq(wide.wbytes, (size_t)25 * 384 * 384 * sizeof(float));
	ck_assert_msg(wide.rel_rms <= 3e-6, "relative RMS %.3g", wide.rel_rms);
	ck_assert_str_eq(narrow.algo, "fast");
	ck_assert_uint_eq(narrow.wbytes, (size_t)(25 + 15 + 15 + 9) * 16 * 16 * sizeof(float));
}
END_TEST

static char warned[256];
static void note_warning(const char *msg)
{
	snprintf(warned, sizeof(warned), "%s", msg);
}

/* The budget: a cache that would pass it leaves the layer on the region
 * plan, with one warning; the bytes are counted and given back. */
START_TEST(test_budget)
{
	struct tensor *f = rand_tensor(4, 3, 3, 64, 64, 3);
	struct tensor *x = rand_tensor(4, 1, 16, 16, 64, 4), *y;
	struct conv_spec s = { 2, 2, CONV_SAME, CONV_ACT_NONE, CONV_ALGO_FAST };
	struct fast_weights *fw;
	struct conv_plan *p;
	size_t before = fast_total_bytes();
	char err[ERR_LEN];

	ck_assert_int_eq(fast_weights_new(&fw, f, err), 0);
	fast_set_warn(note_warning);
	fast_set_budget(before + 1000);
	ck_assert_int_eq(conv_plan_new(&p, x->dim, f, NULL, &s, NULL, fw, err), 0);
	ck_assert_str_eq(conv_plan_algorithm(p), "im2col");
	ck_assert_msg(strstr(warned, "would pass the budget") != NULL, "warning: %s", warned);
	ck_assert_uint_eq(fast_weights_bytes(fw), 0);
	conv_plan_free(p);
	fast_set_budget(FAST_DEFAULT_BUDGET);
	ck_assert_int_eq(conv_plan_new(&p, x->dim, f, NULL, &s, NULL, fw, err), 0);
	ck_assert_str_eq(conv_plan_algorithm(p), "fast");
	/* 4 x 4 grids of 8: F(4,3) both ways, 36 products of 64 x 64 */
	ck_assert_uint_eq(fast_weights_bytes(fw), 36 * 64 * 64 * sizeof(float));
	ck_assert_uint_eq(fast_total_bytes(), before + fast_weights_bytes(fw));
	ck_assert_int_eq(tensor_new(&y, 4, x->dim, err), 0);
	ck_assert_int_eq(conv_plan_run(p, x->data, y->data, NULL), 0);
	conv_plan_free(p);
	fast_weights_free(fw);
	ck_assert_uint_eq(fast_total_bytes(), before);
	tensor_free(y);
	tensor_free(x);
	tensor_free(f);
}
END_TEST

/* auto: minimal filtering for wide layers on grids of several rows, the
 * region plan where rates exceed the map or the kernel is not 3x3, the
 * direct kernel for tiny layers unless minimal filtering saves enough. */
START_TEST(test_auto_choice)
{
	ck_assert_str_eq(
	        run_case(1, 24, 24, 128, 3, 3, 128, 2, 2, CONV_SAME, 1, 1, CONV_ALGO_AUTO, 1).algo,
	        "fast");
	ck_assert_str_eq(
	        run_case(1, 33, 33, 128, 3, 3, 128, 6, 6, CONV_SAME, 1, 1, CONV_ALGO_AUTO, 1).algo,
	        "fast");
	ck_assert_str_eq(
	        run_case(1, 24, 24, 64, 5, 5, 32, 2, 2, CONV_SAME, 1, 1, CONV_ALGO_AUTO, 1).algo,
	        "im2col");
	ck_assert_str_eq(
	        run_case(1, 28, 28, 3, 5, 5, 32, 2, 2, CONV_SAME, 1, 1, CONV_ALGO_AUTO, 1).algo,
	        "direct");
	/* both small enough for the direct kernel; with 3 input channels it
	 * runs, with 32 minimal filtering does (0.63 of the region cost) */
	ck_assert_str_eq(
	        run_case(1, 28, 28, 3, 3, 3, 32, 2, 2, CONV_SAME, 1, 1, CONV_ALGO_AUTO, 1).algo,
	        "direct");
	ck_assert_str_eq(
	        run_case(1, 28, 28, 32, 3, 3, 64, 2, 2, CONV_SAME, 1, 1, CONV_ALGO_AUTO, 1).algo,
	        "fast");
	/* tiny, but nearly every tap reads padding (and padding the input for
	 * the direct kernel would take 8001 x 8001 pixels): regions */
	ck_assert_str_eq(
	        run_case(1, 2, 2, 8, 9, 9, 8, 1000, 1000, CONV_SAME, 1, 1, CONV_ALGO_AUTO, 1).algo,
	        "im2col");
	ck_assert_str_eq(
	        run_case(1, 9, 9, 256, 3, 3, 256, 12, 12, CONV_SAME, 0, 0, CONV_ALGO_AUTO, 1).algo,
	        "im2col");
}
END_TEST

static Suite *fast_suite(void)
{
	Suite *s = suite_create("fast");
	TCase *tc = tcase_create("kernel");

	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_sizes_rates, 0, 80);
	tcase_add_loop_test(tc, test_pairs_batches, 0, 3);
	tcase_add_test(tc, test_fallbacks);
	tcase_add_loop_test(tc, test_wide_accuracy, 0, 2);
	tcase_add_test(tc, test_specials);
	tcase_add_test(tc, test_budget);
	tcase_add_test(tc, test_auto_choice);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(fast_suite());
}
