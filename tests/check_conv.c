/* SPDX-License-Identifier: MIT */
/* check_conv.c - atrous_conv2d against the naive double-precision reference.
 *
 * Tolerance: every output is a sum of K = kh*kw*C exact products (inputs are
 * floats, products exact in double).  Float32 accumulation of K terms in any
 * order, with or without FMA, errs by at most (K + 1) * 2^-24 * sum|x*w|
 * (recursive summation bound), plus one rounding for the bias.  The test
 * asserts |got - ref| <= (K + 2) * 2^-24 * sum|x*w|: tight, and never flaky.
 */
#include "autoconfig.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "error.h"
#include "ref.h"
#include "runner.h"

static struct tensor *rand_tensor(int rank, int64_t a, int64_t b, int64_t c, int64_t d,
                                  uint64_t seed)
{
	struct tensor *t = ref_tensor(rank, a, b, c, d, seed);

	ck_assert_ptr_nonnull(t);
	return t;
}

/* Run one case through the kernel and the reference; returns cases checked. */
static void check_case(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                       int64_t o, int64_t rh, int64_t rw, enum conv_padding pad, int use_bias,
                       int relu)
{
	struct tensor *x = rand_tensor(4, n, h, w, c, (uint64_t)(n * 131 + h * 17 + kh * 5 + rh));
	struct tensor *f = rand_tensor(4, kh, kw, c, o, (uint64_t)(kw * 7 + rw * 3 + o));
	struct tensor *b = use_bias ? rand_tensor(1, o, 0, 0, 0, 99) : NULL;
	struct conv_spec spec = { rh, rw, pad, relu ? CONV_ACT_RELU : CONV_ACT_NONE,
		                  CONV_ALGO_IM2COL };
	struct tensor *y = NULL;
	double *ref = NULL, *mag = NULL;
	int64_t od[4];
	char err[ERR_LEN];
	size_t i;
	int rc;

	rc = ref_atrous2d(x->data, x->dim, f->data, f->dim, b ? b->data : NULL, rh, rw,
	                  pad == CONV_SAME, relu, &ref, &mag, od);
	if (rc < 0) {
		ck_assert_int_lt(conv_atrous2d(x, f, b, &spec, NULL, &y, err), 0);
		ck_assert_msg(strstr(err, "would be negative") != NULL, "%s", err);
		goto done;
	}
	rc = conv_atrous2d(x, f, b, &spec, NULL, &y, err);
	ck_assert_msg(rc == 0, "case n%lld h%lld w%lld k%lldx%lld r%lldx%lld: %s", (long long)n,
	              (long long)h, (long long)w, (long long)kh, (long long)kw, (long long)rh,
	              (long long)rw, err);
	ck_assert_int_eq(y->rank, 4);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(y->dim[i], od[i]);
	for (i = 0; i < y->count; i++) {
		double tol = (double)(kh * kw * c + 2) * ldexp(1.0, -24) * mag[i];

		ck_assert_msg(fabs((double)y->data[i] - ref[i]) <= tol,
		              "k%lldx%lld r%lldx%lld %s bias%d relu%d: out[%zu] = %.9g, ref %.9g, "
		              "tol %.3g",
		              (long long)kh, (long long)kw, (long long)rh, (long long)rw,
		              pad == CONV_SAME ? "SAME" : "VALID", use_bias, relu, i,
		              (double)y->data[i], ref[i], tol);
	}
done:
	free(ref);
	free(mag);
	tensor_free(y);
	tensor_free(b);
	tensor_free(f);
	tensor_free(x);
}

START_TEST(test_grid)
{
	/* kernel sizes 1-5 (even included), rates 1-6 and 11 (larger than the
	 * 7x8 map), both paddings, batch 1 and 3, odd channel counts. */
	static const int64_t rates[] = { 1, 2, 3, 4, 5, 6, 11 };
	int64_t kh = _i / 5 + 1, kw = _i % 5 + 1;
	size_t r;
	int p, nb;

	for (r = 0; r < sizeof(rates) / sizeof(rates[0]); r++)
		for (p = 0; p < 2; p++)
			for (nb = 0; nb < 2; nb++)
				check_case(nb ? 3 : 1, 7, 8, 3, kh, kw, 5, rates[r], rates[r],
				           p ? CONV_VALID : CONV_SAME, (int)(r + p) % 2,
				           (int)(r + nb) % 3 == 0);
}
END_TEST

START_TEST(test_random_shapes)
{
	/* Random shapes, kernels (even too), rates up to beyond the map, both
	 * paddings; VALID cases that would be negative are checked as errors. */
	uint64_t r = 0x9e3779b97f4a7c15ULL + (uint64_t)_i;
	int i;

	for (i = 0; i < 40; i++) {
		int64_t v[9];
		int k;

		for (k = 0; k < 9; k++) {
			r ^= r << 13;
			r ^= r >> 7;
			r ^= r << 17;
			v[k] = (int64_t)(r % 1000);
		}
		check_case(1 + v[0] % 3, 1 + v[1] % 20, 1 + v[2] % 20, 1 + v[3] % 9, 1 + v[4] % 6,
		           1 + v[5] % 6, 1 + v[6] % 7, 1 + v[7] % 12, 1 + v[8] % 12,
		           v[0] % 2 ? CONV_VALID : CONV_SAME, (int)(v[1] % 2), (int)(v[2] % 2));
	}
}
END_TEST

START_TEST(test_asymmetric_rates)
{
	check_case(2, 9, 10, 2, 3, 2, 3, 2, 3, CONV_SAME, 1, 0);
	check_case(2, 9, 10, 2, 2, 3, 3, 1, 4, CONV_VALID, 0, 1);
	check_case(1, 5, 16, 1, 3, 3, 1, 7, 1, CONV_SAME, 0, 0);
}
END_TEST

START_TEST(test_tensorflow_grid)
{
	/* TensorFlow's testAtrousConv2DForward grid: x [2,9,W,2], W in {9,10},
	 * f [kh,kw,2,2], kh,kw in 1..3, rate 1..3, SAME and VALID. */
	int64_t w, kh, kw, r;
	int p;

	for (w = 9; w <= 10; w++)
		for (kh = 1; kh <= 3; kh++)
			for (kw = 1; kw <= 3; kw++)
				for (r = 1; r <= 3; r++)
					for (p = 0; p < 2; p++)
						check_case(2, 9, w, 2, kh, kw, 2, r, r,
						           p ? CONV_VALID : CONV_SAME, 0, 0);
}
END_TEST

START_TEST(test_tiled)
{
	/* K = 3*3*512 forces several im2col tiles per region. */
	check_case(1, 30, 30, 512, 3, 3, 64, 1, 1, CONV_SAME, 1, 1);
	check_case(1, 30, 30, 512, 3, 3, 64, 6, 6, CONV_SAME, 0, 0);
}
END_TEST

START_TEST(test_seed_example)
{
	/* value [1,28,28,3], filters [5,5,3,32], rate 2, SAME -> [1,28,28,32] */
	check_case(1, 28, 28, 3, 5, 5, 32, 2, 2, CONV_SAME, 0, 0);
}
END_TEST

START_TEST(test_valid_edges)
{
	/* H == k_eff - 1: empty output; H == k_eff: one row; H < k_eff - 1: error. */
	struct tensor *x = rand_tensor(4, 1, 8, 9, 2, 1), *f = rand_tensor(4, 3, 3, 2, 4, 2);
	struct conv_spec s = { 4, 4, CONV_VALID, CONV_ACT_NONE, CONV_ALGO_IM2COL };
	struct tensor *y = NULL;
	char err[ERR_LEN];

	ck_assert_int_eq(conv_atrous2d(x, f, NULL, &s, NULL, &y, err), 0);
	ck_assert_int_eq(y->dim[1], 0);
	ck_assert_int_eq(y->dim[2], 1);
	ck_assert_uint_eq(y->count, 0);
	tensor_free(y);
	check_case(1, 9, 9, 2, 3, 3, 4, 4, 4, CONV_VALID, 1, 0);
	s.rate_h = s.rate_w = 5;
	ck_assert_int_lt(conv_atrous2d(x, f, NULL, &s, NULL, &y, err), 0);
	ck_assert_str_eq(err, "VALID output height would be negative: input height 8 - effective "
	                      "kernel height 11 + 1 = -2");
	ck_assert_ptr_null(y);
	tensor_free(f);
	tensor_free(x);
}
END_TEST

START_TEST(test_empty_value)
{
	struct tensor *x = rand_tensor(4, 0, 5, 5, 3, 1), *f = rand_tensor(4, 3, 3, 3, 2, 2);
	struct conv_spec s = { 2, 2, CONV_SAME, CONV_ACT_NONE, CONV_ALGO_IM2COL };
	struct tensor *y = NULL;
	char err[ERR_LEN];

	ck_assert_int_eq(conv_atrous2d(x, f, NULL, &s, NULL, &y, err), 0);
	ck_assert_int_eq(y->dim[0], 0);
	ck_assert_int_eq(y->dim[3], 2);
	ck_assert_uint_eq(y->count, 0);
	tensor_free(y);
	tensor_free(f);
	tensor_free(x);
}
END_TEST

static void expect_error(const struct tensor *x, const struct tensor *f, const struct tensor *b,
                         struct conv_spec s, const char *msg)
{
	struct tensor *y = NULL;
	char err[ERR_LEN] = "";

	ck_assert_int_lt(conv_atrous2d(x, f, b, &s, NULL, &y, err), 0);
	ck_assert_ptr_null(y);
	ck_assert_msg(strstr(err, msg) != NULL, "expected \"%s\" in \"%s\"", msg, err);
}

START_TEST(test_errors)
{
	struct tensor *x = rand_tensor(4, 1, 5, 5, 3, 1), *f = rand_tensor(4, 3, 3, 3, 2, 2);
	struct tensor *f4 = rand_tensor(4, 3, 3, 4, 2, 3), *x3 = rand_tensor(3, 5, 5, 3, 0, 4);
	struct tensor *f3 = rand_tensor(3, 3, 3, 3, 0, 5), *b = rand_tensor(1, 3, 0, 0, 0, 6);
	struct tensor *f0 = rand_tensor(4, 3, 0, 3, 2, 7);
	struct conv_spec ok = { 1, 1, CONV_SAME, CONV_ACT_NONE, CONV_ALGO_IM2COL }, s;

	expect_error(x, f4, NULL, ok, "filters in_channels 4 != value channels 3");
	expect_error(x3, f, NULL, ok, "value must be rank 4 (NHWC), got shape [5,5,3]");
	expect_error(x, f3, NULL, ok, "filters must be rank 4");
	expect_error(x, f0, NULL, ok, "filters shape [3,0,3,2] has a zero dimension");
	expect_error(x, f, b, ok, "bias shape [3] != [2] (filters out_channels)");
	s = ok;
	s.rate_h = s.rate_w = 0;
	expect_error(x, f, NULL, s, "rate must be >= 1, got 0");
	s.rate_h = -3;
	s.rate_w = 2;
	expect_error(x, f, NULL, s, "rate must be >= 1, got [-3, 2]");
	s.rate_h = s.rate_w = (int64_t)CONV_MAX_RATE + 1;
	expect_error(x, f, NULL, s, "exceeds the maximum");
	s = ok;
	s.padding = CONV_VALID;
	s.rate_h = s.rate_w = 3;
	expect_error(x, f, NULL, s, "VALID output height would be negative");
	tensor_free(f0);
	tensor_free(b);
	tensor_free(f3);
	tensor_free(x3);
	tensor_free(f4);
	tensor_free(f);
	tensor_free(x);
}
END_TEST

START_TEST(test_parse)
{
	enum conv_padding p;
	enum conv_act a;
	char err[ERR_LEN];

	ck_assert_int_eq(conv_parse_padding("SAME", &p, err), 0);
	ck_assert_int_eq(p, CONV_SAME);
	ck_assert_int_eq(conv_parse_padding("VALID", &p, err), 0);
	ck_assert_int_eq(p, CONV_VALID);
	ck_assert_int_lt(conv_parse_padding("same", &p, err), 0);
	ck_assert_str_eq(err, "padding must be \"SAME\" or \"VALID\", got \"same\"");
	ck_assert_int_lt(conv_parse_padding("EXPLICIT", &p, err), 0);
	ck_assert_int_eq(conv_parse_activation("relu", &a, err), 0);
	ck_assert_int_eq(a, CONV_ACT_RELU);
	ck_assert_int_lt(conv_parse_activation("gelu", &a, err), 0);
}
END_TEST

START_TEST(test_overflow)
{
	/* Shape arithmetic only: conv_output_shape never touches data. */
	struct tensor f = { 4, { (int64_t)1 << 40, 1, 3, 2 }, 1, NULL, 0 };
	struct conv_spec s = { CONV_MAX_RATE, 1, CONV_SAME, CONV_ACT_NONE, CONV_ALGO_IM2COL };
	int64_t vd[4] = { 1, 5, 5, 3 }, od[4];
	char err[ERR_LEN];

	ck_assert_int_lt(conv_output_shape(vd, &f, NULL, &s, od, err), 0);
	ck_assert_msg(strstr(err, "overflows") != NULL, "%s", err);
	vd[1] = vd[2] = (int64_t)1 << 30;
	f.dim[0] = 1;
	ck_assert_int_lt(conv_output_shape(vd, &f, NULL, &s, od, err), 0);
	ck_assert_msg(strstr(err, "more than") != NULL, "%s", err);
}
END_TEST

START_TEST(test_regions_skip_padding)
{
	/* Rate >= map: only the centre tap reads input, so useful FLOPs equal a
	 * 1x1 convolution's, and the output equals it. */
	struct tensor *x = rand_tensor(4, 1, 6, 6, 4, 1), *f = rand_tensor(4, 3, 3, 4, 3, 2);
	struct conv_spec s = { 6, 6, CONV_SAME, CONV_ACT_NONE, CONV_ALGO_IM2COL };
	struct conv_plan *p;
	double useful, nominal;
	char err[ERR_LEN];

	ck_assert_int_eq(conv_plan_new(&p, x->dim, f, NULL, &s, NULL, NULL, err), 0);
	conv_plan_flops(p, &useful, &nominal);
	ck_assert_double_eq(useful, 2.0 * 36 * 4 * 3);
	ck_assert_double_eq(nominal, 2.0 * 36 * 9 * 4 * 3);
	conv_plan_free(p);
	check_case(1, 6, 6, 4, 3, 3, 3, 6, 6, CONV_SAME, 1, 0);
	tensor_free(f);
	tensor_free(x);
}
END_TEST

START_TEST(test_layout)
{
	/* Writing into a channel slice of a wider tensor leaves the rest alone. */
	struct tensor *x = rand_tensor(4, 2, 5, 6, 3, 1), *f = rand_tensor(4, 3, 2, 3, 4, 2);
	struct conv_spec s = { 2, 1, CONV_SAME, CONV_ACT_NONE, CONV_ALGO_IM2COL };
	struct conv_out_layout lay = { .channel_offset = 3, .pixel_stride = 10 };
	struct tensor *y, *wide;
	struct conv_plan *p;
	int64_t wd[4] = { 2, 5, 6, 10 };
	char err[ERR_LEN];
	size_t i;

	ck_assert_int_eq(conv_atrous2d(x, f, NULL, &s, NULL, &y, err), 0);
	ck_assert_int_eq(tensor_new(&wide, 4, wd, err), 0);
	for (i = 0; i < wide->count; i++)
		wide->data[i] = 42.0f;
	ck_assert_int_eq(conv_plan_new(&p, x->dim, f, NULL, &s, &lay, NULL, err), 0);
	ck_assert_int_eq(conv_plan_run(p, x->data, wide->data, NULL), 0);
	conv_plan_free(p);
	for (i = 0; i < wide->count; i++) {
		size_t px = i / 10, ch = i % 10;

		if (ch >= 3 && ch < 7)
			ck_assert_float_eq(wide->data[i], y->data[px * 4 + ch - 3]);
		else
			ck_assert_float_eq(wide->data[i], 42.0f);
	}
	lay.channel_offset = 7;
	ck_assert_int_lt(conv_plan_new(&p, x->dim, f, NULL, &s, &lay, NULL, err), 0);
	conv_plan_free(p);
	tensor_free(wide);
	tensor_free(y);
	tensor_free(f);
	tensor_free(x);
}
END_TEST

START_TEST(test_skip_center_accumulate)
{
	/* Centre tap computed separately + the other taps accumulated + bias and
	 * ReLU afterwards == the whole convolution (the ASPP fusion contract). */
	static const int64_t ks[] = { 1, 3, 5 }, rates[] = { 1, 2, 5, 40 };
	size_t a, b;

	for (a = 0; a < 3; a++)
		for (b = 0; b < 4; b++) {
			int64_t k = ks[a], r = rates[b];
			struct tensor *x = rand_tensor(4, 2, 9, 11, 3, (uint64_t)(k + r));
			struct tensor *f = rand_tensor(4, k, k, 3, 4, (uint64_t)(k * r));
			struct tensor *bias = rand_tensor(1, 4, 0, 0, 0, 5), *center, *y;
			struct conv_spec s1 = { 1, 1, CONV_SAME, CONV_ACT_NONE, CONV_ALGO_IM2COL };
			struct conv_spec s = { r, r, CONV_SAME, CONV_ACT_RELU, CONV_ALGO_IM2COL };
			struct conv_out_layout lay = { .channel_offset = 2,
				                       .pixel_stride = 7,
				                       .accumulate = 1,
				                       .skip_center = 1 };
			int64_t cd[4] = { 1, 1, 3, 4 }, wd[4] = { 2, 9, 11, 7 }, px, o;
			double *ref, *mag;
			int64_t od[4];
			struct tensor *wide;
			struct conv_plan *p;
			char err[ERR_LEN];

			/* centre = the 1x1 filter at the middle tap */
			ck_assert_int_eq(tensor_new(&center, 4, cd, err), 0);
			memcpy(center->data, f->data + ((k / 2) * k + k / 2) * 12,
			       12 * sizeof(float));
			ck_assert_int_eq(conv_atrous2d(x, center, NULL, &s1, NULL, &y, err), 0);
			ck_assert_int_eq(tensor_new(&wide, 4, wd, err), 0);
			for (px = 0; px < 2 * 9 * 11; px++)
				for (o = 0; o < 4; o++)
					wide->data[px * 7 + 2 + o] = y->data[px * 4 + o];
			ck_assert_int_eq(conv_plan_new(&p, x->dim, f, NULL, &s, &lay, NULL, err),
			                 0);
			ck_assert_int_eq(conv_plan_run(p, x->data, wide->data, NULL), 0);
			conv_plan_free(p);
			for (px = 0; px < 2 * 9 * 11; px++)
				conv_bias_act(wide->data + px * 7 + 2, bias->data, 4,
				              CONV_ACT_RELU);
			ck_assert_int_eq(ref_atrous2d(x->data, x->dim, f->data, f->dim, bias->data,
			                              r, r, 1, 1, &ref, &mag, od),
			                 0);
			for (px = 0; px < 2 * 9 * 11; px++)
				for (o = 0; o < 4; o++)
					ck_assert_msg(
					        fabs(wide->data[px * 7 + 2 + o] -
					             ref[px * 4 + o]) <=
					                (double)(k * k * 3 + 3) * ldexp(1.0, -24) *
					                                mag[px * 4 + o] +
					                        1e-7,
					        "k %lld rate %lld pixel %lld o %lld: %g vs %g",
					        (long long)k, (long long)r, (long long)px,
					        (long long)o, (double)wide->data[px * 7 + 2 + o],
					        ref[px * 4 + o]);
			free(ref);
			free(mag);
			tensor_free(wide);
			tensor_free(y);
			tensor_free(center);
			tensor_free(bias);
			tensor_free(f);
			tensor_free(x);
		}
}
END_TEST

/* The direct kernel (tiny convolutions under auto): every kernel size and
 * parity, SAME and VALID, batches, output channels in one to eight vectors
 * of 8 (on AVX-512, multiples of 16 run 16 a vector: one to four of those,
 * and the others 8), bias and ReLU, written into a wider layout; within
 * the direct summation bound.  Rates past the map leave most taps in
 * padding: the region plan runs those, as it must. */
START_TEST(test_direct)
{
	static const int64_t k[][2] = {
		{ 1, 1 }, { 2, 2 }, { 3, 3 }, { 5, 5 }, { 4, 3 }, { 3, 2 }
	};
	static const int64_t r[][2] = { { 1, 1 }, { 2, 2 }, { 3, 1 }, { 9, 9 } };
	int64_t ki = _i % 6, ri = _i / 6 % 4, o = 8 * (1 + _i % 8);
	enum conv_padding pad = _i / 24 ? CONV_VALID : CONV_SAME;
	struct tensor *x = rand_tensor(4, 2, 11, 13, 3, (uint64_t)_i + 5);
	struct tensor *f = rand_tensor(4, k[ki][0], k[ki][1], 3, o, (uint64_t)_i + 6);
	struct tensor *b = rand_tensor(1, o, 0, 0, 0, 7), *y;
	struct conv_spec s = { r[ri][0], r[ri][1], pad, _i & 1 ? CONV_ACT_RELU : CONV_ACT_NONE,
		               CONV_ALGO_AUTO };
	struct conv_out_layout lay = { 5, o + 7, 0, 0 };
	struct conv_plan *p;
	double *ref, *mag, useful, nominal;
	int64_t od[4], px, c;
	char err[ERR_LEN];

	if (ref_atrous2d(x->data, x->dim, f->data, f->dim, b->data, r[ri][0], r[ri][1],
	                 pad == CONV_SAME, _i & 1, &ref, &mag, od) < 0) {
		ck_assert_int_lt(conv_plan_new(&p, x->dim, f, b, &s, &lay, NULL, err), 0);
		goto done;
	}
	ck_assert_msg(conv_plan_new(&p, x->dim, f, b, &s, &lay, NULL, err) == 0, "%s", err);
	conv_plan_flops(p, &useful, &nominal);
	/* direct computes every tap: not when most read padding (rate 9) */
	ck_assert_str_eq(conv_plan_algorithm(p), useful >= nominal / 2 ? "direct" : "im2col");
	od[3] = o + 7;
	ck_assert_int_eq(tensor_new(&y, 4, od, err), 0);
	ck_assert_int_eq(conv_plan_run(p, x->data, y->data, NULL), 0);
	for (px = 0; px < od[0] * od[1] * od[2]; px++)
		for (c = 0; c < o + 7; c++) {
			double got = y->data[px * (o + 7) + c];

			if (c < 5 || c >= 5 + o) {
				ck_assert_msg(got == 0,
				              "pixel %lld channel %lld outside the layout: %g",
				              (long long)px, (long long)c, got);
				continue;
			}
			ck_assert_msg(fabs(got - ref[px * o + c - 5]) <=
			                      (double)(k[ki][0] * k[ki][1] * 3 + 2) *
			                              ldexp(1.0, -24) * mag[px * o + c - 5],
			              "k%lldx%lld r%lldx%lld: pixel %lld o %lld: %.9g vs %.9g",
			              (long long)k[ki][0], (long long)k[ki][1], (long long)r[ri][0],
			              (long long)r[ri][1], (long long)px, (long long)(c - 5), got,
			              ref[px * o + c - 5]);
		}
	conv_plan_free(p);
	tensor_free(y);
	free(ref);
	free(mag);
done:
	tensor_free(b);
	tensor_free(f);
	tensor_free(x);
}
END_TEST

static Suite *conv_suite(void)
{
	Suite *s = suite_create("conv");
	TCase *tc = tcase_create("kernel");

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_grid, 0, 25);
	tcase_add_loop_test(tc, test_random_shapes, 0, 5);
	tcase_add_test(tc, test_asymmetric_rates);
	tcase_add_test(tc, test_tensorflow_grid);
	tcase_add_test(tc, test_tiled);
	tcase_add_test(tc, test_seed_example);
	tcase_add_test(tc, test_valid_edges);
	tcase_add_test(tc, test_empty_value);
	tcase_add_test(tc, test_regions_skip_padding);
	tcase_add_test(tc, test_layout);
	tcase_add_test(tc, test_skip_center_accumulate);
	tcase_add_loop_test(tc, test_direct, 0, 48);
	suite_add_tcase(s, tc);
	tc = tcase_create("errors");
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_parse);
	tcase_add_test(tc, test_overflow);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(conv_suite());
}
