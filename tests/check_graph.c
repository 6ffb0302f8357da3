/* SPDX-License-Identifier: MIT */
/* check_graph.c - ASPP (pooling, branches, projection) and sequential chains
 * against a double-precision reference built from the naive convolution.
 *
 * Tolerance: each stage sums at most a few hundred float32 products; the
 * assertion |got - ref| <= 1e-4 * sum|terms| (propagated through the stages)
 * is far above float32 accumulation error yet catches any wrong tap, offset or
 * channel order, which move results by O(sum|terms|). */
#include "autoconfig.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "graphjson.h"
#include "ref.h"
#include "runner.h"

/* Tensors the tests refer to by name from JSON ("filters": "b1"). */
struct named {
	const char *name;
	struct tensor *t;
};

static struct named table[16];
static size_t ntable;

static struct tensor *add(const char *name, int rank, int64_t a, int64_t b, int64_t c, int64_t d)
{
	int64_t dim[4] = { a, b, c, d };
	struct tensor *t;
	char err[ERR_LEN];

	ck_assert_int_eq(tensor_new(&t, rank, dim, err), 0);
	ref_fill(t->data, t->count, 1000 + ntable);
	table[ntable].name = name;
	table[ntable++].t = t;
	return t;
}

static void clear_table(void)
{
	while (ntable > 0)
		tensor_free(table[--ntable].t);
}

static int getter(void *ctx, json_t *v, const char *field, struct tensor **out, char *err)
{
	size_t i;

	if (!json_is_string(v))
		return err_set(err, -EINVAL, "missing \"%s\"", field);
	for (i = 0; i < ntable; i++)
		if (strcmp(table[i].name, json_string_value(v)) == 0) {
			struct tensor *t;

			ck_assert_int_eq(tensor_new(&t, table[i].t->rank, table[i].t->dim, err), 0);
			if (t->count > 0)
				memcpy(t->data, table[i].t->data, t->count * sizeof(float));
			*out = t;
			return 0;
		}
	return err_set(err, -ENOENT, "no tensor %s", json_string_value(v));
}

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);

	ck_assert_msg(j != NULL, "%s: %s", text, e.text);
	return j;
}

/* Double 1x1 convolution with magnitude propagation. */
static void conv1x1(const double *x, const double *xm, int64_t pixels, int64_t c,
                    const struct tensor *w, const struct tensor *bias, int relu, double *y,
                    double *ym)
{
	int64_t p, o, k, no = w->dim[3];

	for (p = 0; p < pixels; p++)
		for (o = 0; o < no; o++) {
			double s = bias ? bias->data[o] : 0, m = fabs(s);

			for (k = 0; k < c; k++) {
				s += x[p * c + k] * w->data[k * no + o];
				m += xm[p * c + k] * fabs(w->data[k * no + o]);
			}
			y[p * no + o] = relu && s < 0 ? 0 : s;
			ym[p * no + o] = m;
		}
}

static void check_close(const struct tensor *got, const double *ref, const double *mag)
{
	size_t i;

	for (i = 0; i < got->count; i++)
		ck_assert_msg(fabs(got->data[i] - ref[i]) <= 1e-4 * mag[i] + 1e-6,
		              "element %zu: got %.9g, ref %.9g (mag %.3g)", i, (double)got->data[i],
		              ref[i], mag[i]);
}

START_TEST(test_aspp_full)
{
	const int64_t n = 2, h = 9, w = 11, c = 5;
	struct tensor *x = add("x", 4, n, h, w, c);
	struct tensor *b0 = add("b0", 4, 1, 1, c, 4), *b1 = add("b1", 4, 3, 3, c, 3);
	struct tensor *b1b = add("b1b", 1, 3, 0, 0, 0), *b2 = add("b2", 4, 3, 3, c, 2);
	struct tensor *b3 = add("b3", 4, 2, 2, c, 3), *pf = add("pf", 4, 1, 1, c, 4);
	struct tensor *pb = add("pb", 1, 4, 0, 0, 0), *jf = add("jf", 4, 1, 1, 16, 6);
	struct tensor *jb = add("jb", 1, 6, 0, 0, 0), *out = NULL;
	json_t *layer = parse(
	        "{\"type\":\"aspp\",\"image_pooling\":{\"filters\":\"pf\",\"bias\":\"pb\","
	        "\"activation\":\"relu\"},\"branches\":[{\"filters\":\"b0\",\"rate\":1},"
	        "{\"filters\":\"b1\",\"rate\":2,\"bias\":\"b1b\",\"activation\":\"relu\"},"
	        "{\"filters\":\"b2\",\"rate\":6},{\"filters\":\"b3\",\"rate\":[3,2]}],"
	        "\"projection\":{\"filters\":\"jf\",\"bias\":\"jb\",\"activation\":\"relu\"}}");
	const int64_t pix = n * h * w;
	double *cat = calloc((size_t)(pix * 16), sizeof(double));
	double *catm = calloc((size_t)(pix * 16), sizeof(double));
	double *y = calloc((size_t)(pix * 6), sizeof(double)),
	       *ym = calloc((size_t)(pix * 6), sizeof(double));
	struct tensor *bs[4] = { b0, b1, b2, b3 };
	int64_t rates[4][2] = { { 1, 1 }, { 2, 2 }, { 6, 6 }, { 3, 2 } }, od[4], off = 4, p, k, b;
	struct graph_stats st;
	struct graph *g;
	char err[ERR_LEN];

	ck_assert_int_eq(graphjson_layer(&g, layer, "atrous_conv2d", getter, NULL, err), 0);
	ck_assert_int_eq(graph_in_channels(g), c);
	ck_assert_int_eq(graph_out_channels(g), 6);
	ck_assert_int_eq(graph_output_shape(g, x->dim, 0, od, err), 0);
	ck_assert_int_eq(od[3], 6);
	ck_assert_msg(graph_run(g, x, NULL, &out, &st, err) == 0, "%s", err);
	ck_assert(st.useful_flops > 0 && st.useful_flops <= st.nominal_flops);
	/* Image pooling: mean, 1x1 conv, relu, broadcast into channels 0..3. */
	for (b = 0; b < n; b++) {
		double mean[5] = { 0 }, meanm[5], yp[4], ypm[4];

		for (p = 0; p < h * w; p++)
			for (k = 0; k < c; k++)
				mean[k] += x->data[(b * h * w + p) * c + k] / (double)(h * w);
		for (k = 0; k < c; k++)
			meanm[k] = fabs(mean[k]) + 1e-3;
		conv1x1(mean, meanm, 1, c, pf, pb, 1, yp, ypm);
		for (p = 0; p < h * w; p++)
			for (k = 0; k < 4; k++) {
				cat[((b * h * w) + p) * 16 + k] = yp[k];
				catm[((b * h * w) + p) * 16 + k] = ypm[k];
			}
	}
	for (k = 0; k < 4; k++) {
		double *r, *m;
		int64_t rd[4], o, no = bs[k]->dim[3];

		ck_assert_int_eq(ref_atrous2d(x->data, x->dim, bs[k]->data, bs[k]->dim,
		                              k == 1 ? b1b->data : NULL, rates[k][0], rates[k][1],
		                              1, k == 1, &r, &m, rd),
		                 0);
		for (p = 0; p < pix; p++)
			for (o = 0; o < no; o++) {
				cat[p * 16 + off + o] = r[p * no + o];
				catm[p * 16 + off + o] = m[p * no + o];
			}
		off += no;
		free(r);
		free(m);
	}
	conv1x1(cat, catm, pix, 16, jf, jb, 1, y, ym);
	check_close(out, y, ym);
	tensor_free(out);
	graph_free(g);
	json_decref(layer);
	free(cat);
	free(catm);
	free(y);
	free(ym);
	clear_table();
}
END_TEST

START_TEST(test_aspp_order_without_extras)
{
	/* No pooling or projection: the output is the branches' concatenation. */
	struct tensor *x = add("x", 4, 1, 6, 7, 3), *b0 = add("b0", 4, 1, 1, 3, 2);
	struct tensor *b1 = add("b1", 4, 3, 3, 3, 3), *out;
	json_t *layer = parse("{\"branches\":[{\"filters\":\"b0\",\"rate\":1},"
	                      "{\"filters\":\"b1\",\"rate\":12}]}");
	double *r0, *m0, *r1, *m1;
	int64_t rd[4], p, o;
	struct graph *g;
	char err[ERR_LEN];

	ck_assert_int_eq(graphjson_layer(&g, layer, "aspp", getter, NULL, err), 0);
	ck_assert_int_eq(graph_run(g, x, NULL, &out, NULL, err), 0);
	ck_assert_int_eq(out->dim[3], 5);
	ref_atrous2d(x->data, x->dim, b0->data, b0->dim, NULL, 1, 1, 1, 0, &r0, &m0, rd);
	ref_atrous2d(x->data, x->dim, b1->data, b1->dim, NULL, 12, 12, 1, 0, &r1, &m1, rd);
	for (p = 0; p < 42; p++)
		for (o = 0; o < 5; o++) {
			double ref = o < 2 ? r0[p * 2 + o] : r1[p * 3 + o - 2];
			double mag = o < 2 ? m0[p * 2 + o] : m1[p * 3 + o - 2];

			ck_assert(fabs(out->data[p * 5 + o] - ref) <= 1e-5 * mag + 1e-7);
		}
	free(r0);
	free(m0);
	free(r1);
	free(m1);
	tensor_free(out);
	graph_free(g);
	json_decref(layer);
	clear_table();
}
END_TEST

START_TEST(test_aspp_fused)
{
	/* Input at least GRAPH_FUSION_RATIO times wider than every branch: the
	 * centre taps run as one GEMM, the other taps accumulate, bias and ReLU
	 * come last.  Odd kernels of 1, 3 and 5, a rate beyond the map. */
	struct tensor *x = add("x", 4, 2, 7, 9, 16), *b0 = add("b0", 4, 1, 1, 16, 3);
	struct tensor *b1 = add("b1", 4, 3, 3, 16, 4), *b2 = add("b2", 4, 3, 3, 16, 2);
	struct tensor *b3 = add("b3", 4, 5, 5, 16, 3), *z0 = add("z0", 1, 3, 0, 0, 0);
	struct tensor *z2 = add("z2", 1, 2, 0, 0, 0), *out;
	json_t *layer =
	        parse("{\"branches\":[{\"filters\":\"b0\",\"rate\":1,\"bias\":\"z0\","
	              "\"activation\":\"relu\"},{\"filters\":\"b1\",\"rate\":2,\"activation\":"
	              "\"relu\"},{\"filters\":\"b2\",\"rate\":12,\"bias\":\"z2\"},{\"filters\":"
	              "\"b3\",\"rate\":1,\"activation\":\"relu\"}]}");
	struct tensor *fs[4] = { b0, b1, b2, b3 }, *bs[4] = { z0, NULL, z2, NULL };
	int64_t rates[4] = { 1, 2, 12, 1 }, rd[4], p, o, off = 0;
	int relu[4] = { 1, 1, 0, 1 }, k;
	struct graph_stats st;
	struct graph *g;
	char err[ERR_LEN];

	ck_assert_int_eq(graphjson_layer(&g, layer, "aspp", getter, NULL, err), 0);
	ck_assert_int_eq(graph_run(g, x, NULL, &out, &st, err), 0);
	ck_assert_int_eq(out->dim[3], 12);
	ck_assert(st.useful_flops > 0 && st.useful_flops <= st.nominal_flops);
	for (k = 0; k < 4; k++) {
		double *r, *m;
		int64_t no = fs[k]->dim[3];

		ck_assert_int_eq(ref_atrous2d(x->data, x->dim, fs[k]->data, fs[k]->dim,
		                              bs[k] ? bs[k]->data : NULL, rates[k], rates[k], 1,
		                              relu[k], &r, &m, rd),
		                 0);
		for (p = 0; p < 2 * 7 * 9; p++)
			for (o = 0; o < no; o++)
				ck_assert_msg(fabs(out->data[p * 12 + off + o] - r[p * no + o]) <=
				                      1e-5 * m[p * no + o] + 1e-7,
				              "branch %d pixel %lld", k, (long long)p);
		off += no;
		free(r);
		free(m);
	}
	tensor_free(out);
	graph_free(g);
	json_decref(layer);
	clear_table();
}
END_TEST

/* One layer of the naive reference, rounded to float32 as the daemon keeps
 * the tensors between layers. */
static struct tensor *ref_layer_f32(const struct tensor *x, const struct tensor *f, int64_t rh,
                                    int64_t rw, int same, int relu)
{
	struct tensor *t;
	double *r, *m;
	int64_t rd[4];
	char err[ERR_LEN];
	size_t i;

	ck_assert_int_eq(ref_atrous2d(x->data, x->dim, f->data, f->dim, NULL, rh, rw, same, relu,
	                              &r, &m, rd),
	                 0);
	ck_assert_int_eq(tensor_new(&t, 4, rd, err), 0);
	for (i = 0; i < t->count; i++)
		t->data[i] = (float)r[i];
	free(r);
	free(m);
	return t;
}

START_TEST(test_sequential)
{
	struct tensor *x = add("x", 4, 2, 10, 9, 3), *f1 = add("f1", 4, 3, 3, 3, 4);
	struct tensor *f2 = add("f2", 4, 3, 3, 4, 5), *f3 = add("f3", 4, 2, 3, 5, 2), *out;
	struct tensor *t1, *t2;
	json_t *layers = parse("[{\"filters\":\"f1\",\"rate\":2,\"padding\":\"SAME\","
	                       "\"activation\":\"relu\"},{\"type\":\"atrous_conv2d\",\"filters\":"
	                       "\"f2\",\"rate\":2,\"padding\":\"SAME\"},{\"filters\":\"f3\","
	                       "\"rate\":[2,1],\"padding\":\"VALID\"}]");
	double *r, *m;
	int64_t od[4], rd[4];
	struct graph *g;
	char err[ERR_LEN];
	size_t i;

	ck_assert_int_eq(graphjson_layers(&g, layers, getter, NULL, err), 0);
	ck_assert_int_eq(graph_output_shape(g, x->dim, 0, od, err), 0);
	ck_assert_int_eq(od[1], 8);
	ck_assert_int_eq(od[2], 7);
	ck_assert_int_eq(graph_run(g, x, NULL, &out, NULL, err), 0);
	/* Reference: the chain through the naive kernel, rounding to float32
	 * between layers as the daemon does. */
	t1 = ref_layer_f32(x, f1, 2, 2, 1, 1);
	t2 = ref_layer_f32(t1, f2, 2, 2, 1, 0);
	ck_assert_int_eq(
	        ref_atrous2d(t2->data, t2->dim, f3->data, f3->dim, NULL, 2, 1, 0, 0, &r, &m, rd),
	        0);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(out->dim[i], rd[i]);
	for (i = 0; i < out->count; i++)
		ck_assert(fabs(out->data[i] - r[i]) <= 1e-5 * m[i] + 1e-7);
	free(r);
	free(m);
	tensor_free(t1);
	tensor_free(t2);
	tensor_free(out);
	graph_free(g);
	json_decref(layers);
	clear_table();
}
END_TEST

static void expect_parse_error(const char *text, int sequential, const char *msg)
{
	json_t *j = parse(text);
	struct graph *g = (struct graph *)1;
	char err[ERR_LEN] = "";
	int rc = sequential ? graphjson_layers(&g, j, getter, NULL, err)
	                    : graphjson_layer(&g, j, "atrous_conv2d", getter, NULL, err);

	ck_assert_int_lt(rc, 0);
	ck_assert_ptr_null(g);
	ck_assert_msg(strstr(err, msg) != NULL, "expected \"%s\" in \"%s\"", msg, err);
	json_decref(j);
}

static void expect_shape_error(const char *text, const int64_t vdim[4], int64_t max, int code,
                               const char *msg)
{
	json_t *j = parse(text);
	struct graph *g;
	int64_t od[4];
	char err[ERR_LEN] = "";

	ck_assert_int_eq(json_is_array(j) ? graphjson_layers(&g, j, getter, NULL, err)
	                                  : graphjson_layer(&g, j, "aspp", getter, NULL, err),
	                 0);
	ck_assert_msg(graph_output_shape(g, vdim, max, od, err) == code, "%s: %s", text, err);
	ck_assert_msg(strstr(err, msg) != NULL, "expected \"%s\" in \"%s\"", msg, err);
	graph_free(g);
	json_decref(j);
}

START_TEST(test_errors)
{
	int64_t v5[4] = { 1, 8, 8, 5 };

	add("f55", 4, 3, 3, 5, 5);
	add("f56", 4, 3, 3, 5, 6);
	add("f33", 4, 3, 3, 3, 3);
	add("p", 4, 3, 3, 5, 2);
	add("j", 4, 1, 1, 10, 2);
	add("bias4", 1, 4, 0, 0, 0);
	add("zero", 4, 3, 0, 5, 2);
	expect_parse_error("{\"filters\":\"f55\",\"padding\":\"SAME\"}", 0, "missing \"rate\"");
	expect_parse_error("{\"filters\":\"f55\",\"rate\":1}", 0, "missing \"padding\"");
	expect_parse_error("{\"filters\":\"f55\",\"rate\":0,\"padding\":\"SAME\"}", 0,
	                   "rate must be >= 1, got 0");
	expect_parse_error("{\"filters\":\"f55\",\"rate\":1.5,\"padding\":\"SAME\"}", 0,
	                   "\"rate\" must be an integer");
	expect_parse_error("{\"filters\":\"f55\",\"rate\":1,\"padding\":\"same\"}", 0,
	                   "padding must be \"SAME\" or \"VALID\", got \"same\"");
	expect_parse_error(
	        "{\"filters\":\"f55\",\"rate\":1,\"padding\":\"SAME\",\"bias\":\"bias4\"}", 0,
	        "bias shape [4] != [5]");
	expect_parse_error("{\"filters\":\"zero\",\"rate\":1,\"padding\":\"SAME\"}", 0,
	                   "zero dimension");
	expect_parse_error("{\"filters\":\"f55\",\"rate\":1,\"padding\":\"SAME\",\"strides\":2}", 0,
	                   "unknown key \"strides\"");
	expect_parse_error("{\"type\":\"deconv\"}", 0, "unknown layer type \"deconv\"");
	expect_parse_error("{\"type\":\"aspp\",\"branches\":[]}", 0, "non-empty array");
	expect_parse_error("{\"type\":\"aspp\",\"branches\":[{\"filters\":\"f55\",\"rate\":2,"
	                   "\"padding\":\"VALID\"}]}",
	                   0, "branches[0]: ASPP branches use \"SAME\" padding");
	expect_parse_error("{\"type\":\"aspp\",\"branches\":[{\"filters\":\"f55\",\"rate\":2}],"
	                   "\"image_pooling\":{\"filters\":\"p\"}}",
	                   0, "image_pooling: filters must be 1x1");
	expect_parse_error("[]", 1, "non-empty array");
	expect_parse_error("[{\"filters\":\"f55\",\"rate\":1,\"padding\":\"SAME\"},{\"rate\":1,"
	                   "\"padding\":\"SAME\"}]",
	                   1, "layers[1]: missing \"filters\"");
	expect_shape_error("[{\"filters\":\"f56\",\"rate\":1,\"padding\":\"SAME\"},{\"filters\":"
	                   "\"f55\",\"rate\":1,\"padding\":\"SAME\"}]",
	                   v5, 0, -EINVAL, "layers[1]: filters in_channels 5 != value channels 6");
	expect_shape_error("{\"branches\":[{\"filters\":\"f55\",\"rate\":2},{\"filters\":\"f56\","
	                   "\"rate\":4}],\"projection\":{\"filters\":\"j\"}}",
	                   v5, 0, -EINVAL,
	                   "projection: filters in_channels 10 != value channels 11");
	expect_shape_error("{\"branches\":[{\"filters\":\"f33\",\"rate\":2}]}", v5, 0, -EINVAL,
	                   "branches[0]: filters in_channels 3 != value channels 5");
	expect_shape_error("[{\"filters\":\"f55\",\"rate\":5,\"padding\":\"VALID\"}]", v5, 0,
	                   -EINVAL, "VALID output height would be negative");
	expect_shape_error("{\"branches\":[{\"filters\":\"f55\",\"rate\":2},{\"filters\":\"f56\","
	                   "\"rate\":4}]}",
	                   v5, 500, -E2BIG, "more than 500 elements");
	clear_table();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("graph");
	TCase *tc = tcase_create("graph");

	tcase_add_test(tc, test_aspp_full);
	tcase_add_test(tc, test_aspp_order_without_extras);
	tcase_add_test(tc, test_aspp_fused);
	tcase_add_test(tc, test_sequential);
	tcase_add_test(tc, test_errors);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
